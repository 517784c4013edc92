#!/usr/bin/env bash
# IngestWorkouts: two workouts, then the deletion of one of them.
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$DEVICE_TOKEN" coachfit.v1.IngestService/IngestWorkouts <<JSON
{
  "time_zone": "America/New_York",
  "workouts": [
    {"workout_id": "hk-run-$DAY", "workout_type": "running",
     "start_time": "${DAY}T12:00:00Z", "end_time": "${DAY}T12:45:00Z", "duration_seconds": 2700,
     "active_energy_kcal": 480, "distance_meters": 7200, "avg_heart_rate": 152, "max_heart_rate": 178,
     "source_device": "Apple Watch", "observed_at": "${DAY}T13:00:00Z"},
    {"workout_id": "hk-walk-$DAY", "workout_type": "walking",
     "start_time": "${DAY}T18:00:00Z", "end_time": "${DAY}T18:20:00Z", "duration_seconds": 1200,
     "source_device": "iPhone", "observed_at": "${DAY}T18:30:00Z"}
  ]
}
JSON
call "$DEVICE_TOKEN" coachfit.v1.IngestService/IngestWorkouts <<JSON
{"deleted_workout_ids": ["hk-walk-$DAY"]}
JSON
