#!/usr/bin/env bash
# IngestSteps: the day's HealthKit step total as of observed_at (device token).
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$DEVICE_TOKEN" coachfit.v1.IngestService/IngestSteps <<JSON
{
  "time_zone": "America/New_York",
  "samples": [
    {"date": "$DAY", "total_steps": 8432, "observed_at": "${DAY}T22:00:00Z",
     "source_devices": ["iPhone"], "idempotency_key": "steps-$DAY-22"}
  ]
}
JSON
