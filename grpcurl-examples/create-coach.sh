#!/usr/bin/env bash
# CreateCoach (admin): a new coach and their token (shown once).
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$ADMIN_TOKEN" coachfit.v1.AdminService/CreateCoach <<JSON
{"name": "Coach Example"}
JSON
