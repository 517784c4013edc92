#!/usr/bin/env bash
# Starts a server as the README says (`serve`, default settings) on a fresh database and a
# free port, mints accounts with the CLI, runs every example (run-all.sh) twice, as a user
# may, and stops the server. Used by .ci/run.
#   ci-smoke.sh            a temporary SQLite file
#   ci-smoke.sh postgres   a temporary database on COACHFIT_TEST_POSTGRES_URL's server
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
server_pid=
pg_admin=${COACHFIT_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_db=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [ -n "$pg_db" ] && psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)"
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --locked --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/debug/coachfit"
if [ "${1:-sqlite}" = postgres ]; then
  pg_db="coachfit_smoke_$$_$RANDOM"
  psql -q "$pg_admin" -c "CREATE DATABASE $pg_db"
  export COACHFIT_DATABASE_URL="${pg_admin%/*}/$pg_db"
else
  export COACHFIT_DATABASE_URL="sqlite://$work/coachfit.db"
fi
export ADMIN_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

"$bin" migrate
coach=$("$bin" admin create-coach --name "CI Coach")
export COACH_TOKEN=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["coach_token"])' <<<"$coach")
coach_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["coach_id"])' <<<"$coach")
client=$("$bin" admin create-client --coach-id "$coach_id")
export DEVICE_TOKEN=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["device_token"])' <<<"$client")
export USER_ID=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["user_id"])' <<<"$client")

COACHFIT_ADMIN_TOKEN=$ADMIN_TOKEN "$bin" serve --listen 127.0.0.1:0 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*coachfit listening addr=\([0-9.:]*\).*/\1/p' "$work/server.log" | head -1)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "${addr:-}" ] || { echo "server did not start:"; cat "$work/server.log"; exit 1; }
export COACHFIT_ADDR=$addr

bash "$root/grpcurl-examples/run-all.sh"
echo "-- again: every example is safe to run twice"
bash "$root/grpcurl-examples/run-all.sh"
"$bin" verify
kill "$server_pid" && wait "$server_pid"
server_pid=
