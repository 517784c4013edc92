#!/usr/bin/env bash
# The whole test suite (the README's test command): the Rust tests (unit, property, and the
# behavioural suite on SQLite and PostgreSQL), then the dashboard end to end in Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test
bash tests/dashboard.sh
