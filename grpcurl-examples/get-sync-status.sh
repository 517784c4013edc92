#!/usr/bin/env bash
# GetSyncStatus (device): what the server has stored from this phone, per kind.
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$DEVICE_TOKEN" coachfit.v1.RosterService/GetSyncStatus <<<'{}'
