#!/usr/bin/env bash
# grpc.health.v1.Health/Check and the services reflection lists (no token needed).
set -euo pipefail
. "$(dirname "$0")/env.sh"
"$GRPCURL" -plaintext "$COACHFIT_ADDR" list
"$GRPCURL" -plaintext -d '{}' "$COACHFIT_ADDR" grpc.health.v1.Health/Check
