#!/usr/bin/env bash
# What a bad request gets: INVALID_ARGUMENT with google.rpc.BadRequest field violations,
# printed as JSON by `-format-error` (the server describes the error details in reflection).
set -euo pipefail
. "$(dirname "$0")/env.sh"
status=0
call "$DEVICE_TOKEN" coachfit.v1.EntryService/GetEntry -format-error <<<'{"date": "2026-02-30"}' 2>&1 || status=$?
# grpcurl exits 64 + the gRPC code; 67 is INVALID_ARGUMENT, the answer this example asks for.
[ "$status" -eq 67 ]
