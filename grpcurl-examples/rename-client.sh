#!/usr/bin/env bash
# RenameClient (the client's coach, or an admin): the name the coach knows the client by.
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$COACH_TOKEN" coachfit.v1.RosterService/RenameClient <<JSON
{"user_id": "$USER_ID", "display_name": "Ana (marathon block)"}
JSON
