#!/usr/bin/env bash
# GetEntry: the folded day, with provenance per field.
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$COACH_TOKEN" coachfit.v1.EntryService/GetEntry <<JSON
{"user_id": "$USER_ID", "date": "$DAY"}
JSON
