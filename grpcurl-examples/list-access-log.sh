#!/usr/bin/env bash
# ListAccessLog: who read the client's health data, newest first. The coach reads a day,
# then the client's device asks (a device reads its own log; an admin reads anyone's,
# with "user_id"; a coach reads none).
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$COACH_TOKEN" coachfit.v1.EntryService/GetEntry <<JSON >/dev/null
{"user_id": "$USER_ID", "date": "$DAY"}
JSON
call "$DEVICE_TOKEN" coachfit.v1.PrivacyService/ListAccessLog <<JSON
{"page_size": 3}
JSON
