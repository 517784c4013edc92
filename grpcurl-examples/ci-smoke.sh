#!/usr/bin/env bash
# Starts a server on a fresh SQLite database and a free port, mints accounts with the CLI,
# runs every example (run-all.sh), and stops the server. Used by .ci/run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --locked --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/debug/coachfit"
export COACHFIT_DATABASE_URL="sqlite://$work/coachfit.db"
export ADMIN_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

"$bin" migrate
coach=$("$bin" admin create-coach --name "CI Coach")
export COACH_TOKEN=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["coach_token"])' <<<"$coach")
coach_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["coach_id"])' <<<"$coach")
client=$("$bin" admin create-client --coach-id "$coach_id")
export DEVICE_TOKEN=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["device_token"])' <<<"$client")
export USER_ID=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["user_id"])' <<<"$client")

COACHFIT_ADMIN_TOKEN=$ADMIN_TOKEN COACHFIT_HEARTBEAT_SECS=1 RUST_LOG=info "$bin" serve --listen 127.0.0.1:0 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*coachfit listening addr=\([0-9.:]*\).*/\1/p' "$work/server.log" | head -1)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "${addr:-}" ] || { echo "server did not start:"; cat "$work/server.log"; exit 1; }
export COACHFIT_ADDR=$addr

bash "$root/grpcurl-examples/run-all.sh"
"$bin" verify
