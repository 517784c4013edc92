#!/usr/bin/env bash
# SetPriorityRule (admin): stores the next version of the source-priority rule, in force for
# every write on every instance from its commit on, and re-folds every day under it. Here:
# a coach's correction still wins every field, and for steps HealthKit beats the client's
# own entries. Setting the rule already in force (this script run again) stores nothing and
# re-folds nothing. (`coachfit priority set FILE` does the same from the command line.)
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$ADMIN_TOKEN" coachfit.v1.AdminService/SetPriorityRule <<'JSON'
{"rule": {"fields": {"steps": {"sources": ["SOURCE_COACH", "SOURCE_HEALTHKIT", "SOURCE_MANUAL"]}}}}
JSON
