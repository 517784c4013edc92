#!/usr/bin/env bash
# RecordManualEntry: the coach corrects the client's steps and logs nutrition.
set -euo pipefail
. "$(dirname "$0")/env.sh"
call "$COACH_TOKEN" coachfit.v1.EntryService/RecordManualEntry <<JSON
{"user_id": "$USER_ID", "date": "$DAY", "idempotency_key": "coach-fix-$DAY",
 "values": {"steps": 10000, "calories": 2150, "protein_grams": 140, "notes": "Pedometer was off after lunch"}}
JSON
