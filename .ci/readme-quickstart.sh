#!/usr/bin/env bash
# Runs the README's quickstart verbatim: its first command block (the demo, in the
# background) and its second (the client's commands, in this shell), as a new user pastes
# them. Extracted from README.md itself, so the README cannot drift from what works.
set -euo pipefail
cd "$(dirname "$0")/.."
blocks=$(mktemp -d)
python3 - "$blocks" <<'PY'
import pathlib, re, sys
readme = pathlib.Path("README.md").read_text()
section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
found = re.findall(r"```sh\n(.*?)```", section, re.S)
assert len(found) == 2, f"expected the server block and the client block, found {len(found)}"
for i, block in enumerate(found):
    pathlib.Path(sys.argv[1], f"{i}.sh").write_text(block)
PY
rm -f coachfit-demo.env
server_pid=
cleanup() {
  local status=$?
  if [ -n "$server_pid" ]; then
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$blocks" coachfit-demo.env
  exit "$status"
}
trap cleanup EXIT

echo "-- $(cat "$blocks/0.sh")"
setsid bash "$blocks/0.sh" >"$blocks/server.out" 2>"$blocks/server.err" &
server_pid=$!
for _ in $(seq 1 600); do
  [ -s coachfit-demo.env ] && break
  kill -0 "$server_pid" 2>/dev/null || { echo "the demo exited:"; cat "$blocks/server.err"; exit 1; }
  sleep 1
done
[ -s coachfit-demo.env ] || { echo "the demo wrote no coachfit-demo.env"; cat "$blocks/server.err"; exit 1; }
cat "$blocks/server.out"

echo "-- the client block"
bash -euo pipefail "$blocks/1.sh"
echo "README quickstart passed verbatim"
