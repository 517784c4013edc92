#!/usr/bin/env bash
# RotateCoachToken: a coach's new token (shown once); every earlier one is refused from the
# next call on. A coach rotates their own (empty coach_id); an admin may name any coach.
# So as not to end COACH_TOKEN, this makes a coach of its own (CreateCoach, admin) first.
set -euo pipefail
. "$(dirname "$0")/env.sh"
coach=$(call "$ADMIN_TOKEN" coachfit.v1.AdminService/CreateCoach <<<'{"name": "Coach Rotating"}')
token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["coachToken"])' <<<"$coach")
call "$token" coachfit.v1.AdminService/RotateCoachToken <<<'{}'
