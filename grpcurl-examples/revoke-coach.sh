#!/usr/bin/env bash
# RevokeCoach (admin): every token of a coach is refused from the next call on; their
# clients and data stay. This revokes a coach made for the example (CreateCoach) first.
set -euo pipefail
. "$(dirname "$0")/env.sh"
coach=$(call "$ADMIN_TOKEN" coachfit.v1.AdminService/CreateCoach <<<'{"name": "Coach Leaving"}')
coach_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["coachId"])' <<<"$coach")
call "$ADMIN_TOKEN" coachfit.v1.AdminService/RevokeCoach <<JSON
{"coach_id": "$coach_id"}
JSON
