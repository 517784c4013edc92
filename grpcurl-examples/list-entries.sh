#!/usr/bin/env bash
# ListEntries: a date range, a page at a time (pass next_page_token as page_token).
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$DEVICE_TOKEN" coachfit.v1.EntryService/ListEntries <<JSON
{"start_date": "2026-03-01", "end_date": "2026-03-31", "page_size": 7}
JSON
