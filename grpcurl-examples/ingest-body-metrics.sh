#!/usr/bin/env bash
# IngestBodyMetrics: pounds are stored as kilograms.
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$DEVICE_TOKEN" coachfit.v1.IngestService/IngestBodyMetrics <<JSON
{
  "time_zone": "America/New_York",
  "metrics": [
    {"type": "BODY_METRIC_TYPE_WEIGHT", "value": 172.4, "unit": "UNIT_LB", "measured_at": "${DAY}T12:30:00Z"},
    {"type": "BODY_METRIC_TYPE_BODY_FAT_PERCENTAGE", "value": 19.5, "unit": "UNIT_PERCENT", "measured_at": "${DAY}T12:30:00Z"}
  ]
}
JSON
