#!/usr/bin/env bash
# The retry contract, checked with a client that is not ours: Python grpcio loads
# docs/service-config.json as is, and sends one step total to a `serve` on PostgreSQL while
# the feed counter row is locked by another session, so the write transaction (the token
# lookup has passed, the events are inserted) stalls until the server's statement timeout
# (10 s) and is rolled back: the attempt is answered UNAVAILABLE (with RetryInfo and
# grpc-retry-pushback-ms 1 s). The lock is then released; grpcio retries by the service
# config, the call succeeds, and the report is stored exactly once. (With a 1 s pushback
# and 5 attempts inside the 30 s deadline, grpcio itself rides out a short outage; the app's
# own queue covers longer ones.)
# Used by .ci/run; installs grpcio and grpcio-tools (pip) when missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
pg_admin=${COACHFIT_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_db="coachfit_retry_$$_$RANDOM"
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)"
  rm -rf "$work"
}
trap cleanup EXIT

python3 -c 'import grpc, grpc_tools' 2>/dev/null || python3 -m pip install --quiet grpcio grpcio-tools
python3 -m grpc_tools.protoc -I "$root/proto" --python_out="$work" --grpc_python_out="$work" \
  "$root"/proto/coachfit/v1/*.proto

cargo build --locked --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/debug/coachfit"
psql -q "$pg_admin" -c "CREATE DATABASE $pg_db"
export COACHFIT_DATABASE_URL="${pg_admin%/*}/$pg_db"
"$bin" migrate
coach_id=$("$bin" admin create-coach --name "Retry Coach" | python3 -c 'import json,sys; print(json.load(sys.stdin)["coach_id"])')
token=$("$bin" admin create-client --coach-id "$coach_id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["device_token"])')

"$bin" serve --listen 127.0.0.1:0 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*addr=\([0-9.:]*\).*/\1/p' "$work/server.log" | head -1)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "serve did not start"; cat "$work/server.log"; exit 1; }

echo "== another session locks the feed counter row"
PGAPPNAME=coachfit_retry_locker psql -q "${pg_admin%/*}/$pg_db" \
  -c "BEGIN; LOCK TABLE feed_position IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120); COMMIT;" >/dev/null 2>&1 &
locker_pid=$!
for _ in $(seq 1 50); do
  held=$(psql -qtA "$pg_admin" -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
    WHERE a.application_name = 'coachfit_retry_locker' AND l.mode = 'AccessExclusiveLock' AND l.granted")
  [ "$held" -ge 1 ] && break
  sleep 0.1
done
python3 "$root/tests/clients/grpcio_retry.py" "$addr" "$token" "$root/docs/service-config.json" "$work" >"$work/client.out" 2>&1 &
client_pid=$!
for _ in $(seq 1 300); do
  grep -q "IngestSteps.*database unavailable" "$work/server.log" && break
  sleep 0.1
done
echo "== the lock is released"
psql -q "$pg_admin" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
  WHERE application_name = 'coachfit_retry_locker'" >/dev/null
wait "$locker_pid" 2>/dev/null || true
wait "$client_pid" || { echo "FAIL: grpcio call failed:"; cat "$work/client.out"; grep -i "unavailable" "$work/server.log" | head; exit 1; }
cat "$work/client.out"
grep -q "accepted=1 duplicates=0\|accepted=0 duplicates=1" "$work/client.out" \
  || { echo "FAIL: unexpected answer"; exit 1; }
refused=$(grep -c "IngestSteps.*database unavailable" "$work/server.log" || true)
[ "$refused" -ge 1 ] || { echo "FAIL: no attempt was answered UNAVAILABLE, so nothing was retried"; exit 1; }
stored=$(psql -qtA "${pg_admin%/*}/$pg_db" -c "SELECT count(*) FROM events WHERE day = '2026-03-01'")
[ "$stored" = 1 ] || { echo "FAIL: $stored events stored, expected exactly 1"; exit 1; }
echo "retry contract holds: grpcio retried after $refused UNAVAILABLE answer(s) and the report is stored once"
