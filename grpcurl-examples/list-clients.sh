#!/usr/bin/env bash
# ListClients (coach): every client with their devices, when each last synced, the newest
# observation per kind, the last day with data and whether they went stale.
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$COACH_TOKEN" coachfit.v1.RosterService/ListClients <<<'{}'
