#!/usr/bin/env bash
# GetPriorityRule (a coach, or admin): the rule every instance folds with, its version (0,
# left out of the JSON, is the built-in default: coach, manual, healthkit, strava), who set
# it and whether every day has been re-folded under it.
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$COACH_TOKEN" coachfit.v1.AdminService/GetPriorityRule <<<'{}'
