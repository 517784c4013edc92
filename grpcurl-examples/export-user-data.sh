#!/usr/bin/env bash
# ExportUserData: everything stored of the client, as their coach asks for it: a header
# (format and version), every event as stored, then every entry. `coachfit export` writes
# the same as JSON Lines or CSV.
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$COACH_TOKEN" coachfit.v1.PrivacyService/ExportUserData <<JSON
{"user_id": "$USER_ID"}
JSON
