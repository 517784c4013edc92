#!/usr/bin/env bash
# Runs every example against a running server and checks what each answers. Safe to run
# any number of times: a report sent again is a duplicate, and the checks accept that.
# Needs COACHFIT_ADDR, DEVICE_TOKEN, COACH_TOKEN and USER_ID; the admin examples also
# ADMIN_TOKEN (see env.sh; `source coachfit-demo.env` after `coachfit demo` sets them all).
set -euo pipefail
here=$(dirname "$0")
. "$here/env.sh"

expect() { # expect SCRIPT PATTERN…: runs the script; each pattern (an extended regex) must appear
  local script=$1 out
  shift
  out=$("$here/$script" 2>&1) || { echo "FAIL $script exited non-zero"; echo "$out"; return 1; }
  # A passing example prints no error (grpcurl prints "ERROR:" for any failed call).
  ! grep -q "^ERROR:" <<<"$out" || { echo "FAIL $script printed an error:"; echo "$out"; return 1; }
  for pattern in "$@"; do
    grep -Eq -- "$pattern" <<<"$out" || { echo "FAIL $script: no '$pattern' in:"; echo "$out"; return 1; }
  done
  echo "ok   $script"
}

for needed in DEVICE_TOKEN COACH_TOKEN USER_ID; do
  [ -n "${!needed:-}" ] || { echo "$needed is not set: see grpcurl-examples/env.sh"; exit 1; }
done

expect health.sh "coachfit.v1.IngestService" "grpc.reflection" '"status": "SERVING"'
expect ingest-steps.sh '"(accepted|duplicates)": 1'
expect ingest-sleep.sh '"(accepted|duplicates)": 1'
expect ingest-workouts.sh '"(accepted|duplicates)": 2'
expect ingest-body-metrics.sh '"(accepted|duplicates)": 2'
expect record-manual-entry.sh '"steps": 10000' '"SOURCE_COACH"'
expect get-entry.sh '"steps": 10000' '"overridden": true' '"sleepMinutes": 420' '"count": 1'
expect list-entries.sh "\"date\": \"$DAY\""
expect explain-entry.sh '"winningEventIds"' '"kind": "manual"'
# Heartbeats come only while a stream is idle; under the demo's trickle it never is.
expect stream-entries.sh '"update"' "\"date\": \"$DAY\"" '"client"' '"staleAt"'
expect errors.sh '"code": 3' '"fieldViolations"' '"field": ?"date"'
expect rename-client.sh '^\{\}$|^\{$'
expect list-clients.sh '"displayName": "Ana \(marathon block\)"' '"kind": "steps"' '"lastSyncedAt"'
expect get-sync-status.sh '"kind": "steps"' '"lastSyncedAt"'
expect pairing-flow.sh '"deviceToken"' '"coachId"' '"accepted": 1' '"revoked": 1'
expect export-user-data.sh '"format": "coachfit-export"' '"event"' '"entry"' "\"date\": \"$DAY\""
expect list-access-log.sh '"accessor": "coach:' '"rpc": "GetEntry"' "\"detail\": \"$DAY\"" '"peer": "127.0.0.1"'
expect delete-account.sh '"erasedAt"' 'the retry is refused: Code: Unauthenticated'
if [ -n "$ADMIN_TOKEN" ]; then
  expect recompute-day.sh '"steps": 10000'
  expect rebuild-projections.sh '"daysRebuilt"'
  expect create-coach.sh '"coachToken"'
  expect rotate-coach-token.sh '"coachToken"'
  expect revoke-coach.sh '"tokensRevoked": 1'
  expect set-priority-rule.sh '"version": "[0-9]+"'
  expect erase-user.sh '"erased": true' '"position": "[0-9]+"' '^\{\}$|^\{$'
  expect get-priority-rule.sh '"version": "[0-9]+"' '"SOURCE_HEALTHKIT"' '"applied": true' '"setBy": "admin"'
else
  echo "skip the admin examples: no ADMIN_TOKEN (or COACHFIT_ADMIN_TOKEN) is set"
fi
# Running it all again is safe: every item is now a duplicate.
expect ingest-steps.sh '"duplicates": 1'
echo "all grpcurl examples passed"
