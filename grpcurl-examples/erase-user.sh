#!/usr/bin/env bash
# EraseUser (admin): erases a user and everything stored of them; erasing again is not an
# error ("erased": false). Here a client created for the purpose.
set -euo pipefail
. "$(dirname "$0")/env.sh"
json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

user=$(pair_new_client "Erased client" | json userId)
call "$ADMIN_TOKEN" coachfit.v1.PrivacyService/EraseUser <<<"{\"user_id\": \"$user\"}"
call "$ADMIN_TOKEN" coachfit.v1.PrivacyService/EraseUser <<<"{\"user_id\": \"$user\"}"
