#!/usr/bin/env bash
# ExplainEntry: the day's events and which one each field's value came from.
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$COACH_TOKEN" coachfit.v1.EntryService/ExplainEntry <<JSON
{"user_id": "$USER_ID", "date": "$DAY"}
JSON
