#!/usr/bin/env bash
# IngestSleep: no date, so the night belongs to the local day of sleep_end.
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$DEVICE_TOKEN" coachfit.v1.IngestService/IngestSleep <<JSON
{
  "time_zone": "America/New_York",
  "sessions": [
    {"total_sleep_minutes": 420, "in_bed_minutes": 450, "awake_minutes": 30,
     "core_minutes": 220, "deep_minutes": 90, "rem_minutes": 110,
     "sleep_start": "${DAY}T03:30:00Z", "sleep_end": "${DAY}T11:00:00Z",
     "observed_at": "${DAY}T11:05:00Z", "source_devices": ["Apple Watch"]}
  ]
}
JSON
