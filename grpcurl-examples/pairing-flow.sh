#!/usr/bin/env bash
# The whole pairing flow: the coach makes a code for a new client, the app redeems it (no
# token needed) and gets a device token, ingests with it, and finally the device revokes itself.
set -euo pipefail
. "$(dirname "$0")/env.sh"
json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

created=$(call "$COACH_TOKEN" coachfit.v1.PairingService/CreatePairingCode <<<'{}')
echo "$created"
code=$(json code <<<"$created")

# Case-insensitive: the client types it in lower case.
lower=$(tr 'A-Z' 'a-z' <<<"$code")
paired=$("$GRPCURL" -plaintext -d "{\"code\": \"$lower\", \"device_name\": \"Ana's iPhone\"}" \
  "$COACHFIT_ADDR" coachfit.v1.PairingService/RedeemPairingCode)
echo "$paired"
token=$(json deviceToken <<<"$paired")

call "$token" coachfit.v1.IngestService/IngestSteps <<JSON
{"samples": [{"date": "$DAY", "total_steps": 4321, "observed_at": "${DAY}T20:00:00Z"}]}
JSON
call "$token" coachfit.v1.PairingService/RevokeDevice <<<'{}'
