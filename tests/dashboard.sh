#!/usr/bin/env bash
# The coach's dashboard end to end: Playwright drives Debian's Chromium (installed here when
# missing; Playwright never downloads a browser) against `coachfit serve` on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "-- installing Debian's chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
cargo build --locked --quiet --bin coachfit
cd web
[ -d node_modules ] || npm ci --no-audit --no-fund
CHROMIUM_PATH=$(command -v chromium) npx playwright test
