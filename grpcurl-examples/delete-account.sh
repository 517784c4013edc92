#!/usr/bin/env bash
# DeleteAccount: a client leaves. A new client pairs (as in pairing-flow.sh), reports a day,
# then deletes their account from the app: everything stored of them is gone, and their
# token with it (a retry is refused UNAUTHENTICATED).
set -euo pipefail
. "$(dirname "$0")/env.sh"
json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

token=$(pair_new_client "Leaving client" | json deviceToken)
call "$token" coachfit.v1.IngestService/IngestSteps <<JSON
{"samples": [{"date": "$DAY", "total_steps": 2500, "observed_at": "${DAY}T20:00:00Z"}]}
JSON
call "$token" coachfit.v1.PrivacyService/DeleteAccount <<<'{}'
if retried=$(call "$token" coachfit.v1.PrivacyService/DeleteAccount <<<'{}' 2>&1); then
  echo "a retry with the deleted account's token was answered: $retried"
  exit 1
fi
echo "the retry is refused: $(grep -o 'Code: [A-Za-z]*' <<<"$retried")"
