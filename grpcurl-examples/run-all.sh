#!/usr/bin/env bash
# Runs every example against a running server and checks what each answers.
# Needs COACHFIT_ADDR, DEVICE_TOKEN, COACH_TOKEN, USER_ID and ADMIN_TOKEN (see env.sh).
set -euo pipefail
here=$(dirname "$0")
. "$here/env.sh"

expect() { # expect SCRIPT PATTERN…: runs the script; each pattern must appear in its output
  local script=$1 out
  shift
  out=$("$here/$script") || { echo "FAIL $script exited non-zero"; echo "$out"; return 1; }
  for pattern in "$@"; do
    grep -q -- "$pattern" <<<"$out" || { echo "FAIL $script: no '$pattern' in:"; echo "$out"; return 1; }
  done
  echo "ok   $script"
}

expect health.sh "coachfit.v1.IngestService" "grpc.reflection" '"status": "SERVING"'
expect ingest-steps.sh '"accepted": 1'
expect ingest-sleep.sh '"accepted": 1'
expect ingest-workouts.sh '"accepted": 2'
expect ingest-body-metrics.sh '"accepted": 2'
expect record-manual-entry.sh '"steps": 10000' '"SOURCE_MANUAL"'
expect get-entry.sh '"steps": 10000' '"overridden": true' '"sleepMinutes": 420' '"count": 1'
expect list-entries.sh "\"date\": \"$DAY\""
expect explain-entry.sh '"winningEventIds"' '"kind": "manual"'
expect stream-entries.sh '"update"' '"heartbeat"' "\"date\": \"$DAY\""
expect pairing-flow.sh '"deviceToken"' '"coachId"' '"accepted": 1' '"revoked": 1'
expect recompute-day.sh '"steps": 10000'
expect rebuild-projections.sh '"daysRebuilt"'
expect create-coach.sh '"coachToken"'
# Running it all again is safe: every item is now a duplicate.
expect ingest-steps.sh '"duplicates": 1'
echo "all grpcurl examples passed"
