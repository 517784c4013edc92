#!/usr/bin/env bash
# RecomputeDay (admin): re-fold one day from its events.
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$ADMIN_TOKEN" coachfit.v1.AdminService/RecomputeDay <<JSON
{"user_id": "$USER_ID", "date": "$DAY"}
JSON
