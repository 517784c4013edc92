#!/usr/bin/env bash
# RebuildProjections (admin): re-fold every day of one user (omit user_id for everyone).
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$ADMIN_TOKEN" coachfit.v1.AdminService/RebuildProjections <<JSON
{"user_id": "$USER_ID"}
JSON
