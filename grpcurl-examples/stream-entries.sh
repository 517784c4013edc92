#!/usr/bin/env bash
# StreamEntries: every entry of the coach's clients after position 0 and, with
# include_clients, each client as the roster shows them; then live changes and heartbeats.
# Resume later with the last position you saw. Ends after STREAM_SECONDS (default
# 7: long enough for a heartbeat at the server's default 5 s interval).
set -euo pipefail
. "$(dirname "$0")/env.sh"
status=0
errors=$(mktemp)
call "$COACH_TOKEN" coachfit.v1.EntryService/StreamEntries -max-time "${STREAM_SECONDS:-7}" 2>"$errors" <<JSON || status=$?
{"after_position": "${AFTER_POSITION:-0}", "include_clients": true}
JSON
# grpcurl exits 64 + the gRPC code; 68 is DEADLINE_EXCEEDED, the end we asked for.
if [ "$status" -ne 0 ] && [ "$status" -ne 68 ]; then cat "$errors" >&2; fi
rm -f "$errors"
[ "$status" -eq 0 ] || [ "$status" -eq 68 ]
