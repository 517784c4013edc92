# Shared settings for the examples; source it. Override any of these from the environment.
#   COACHFIT_ADDR   host:port of a running server (default 127.0.0.1:50051)
#   DEVICE_TOKEN    a client's device token   (coachfit admin create-client)
#   COACH_TOKEN     that client's coach token (coachfit admin create-coach)
#   USER_ID         the client's user id
#   ADMIN_TOKEN     the server's admin token (default: COACHFIT_ADMIN_TOKEN, as the README
#                   sets it for `serve`; `coachfit demo` prints it)
#   DAY             the day the examples write (default 2026-03-02)
# `coachfit demo` writes all of them to coachfit-demo.env: `source coachfit-demo.env`.
: "${COACHFIT_ADDR:=127.0.0.1:50051}"
: "${ADMIN_TOKEN:=${COACHFIT_ADMIN_TOKEN:-}}"
: "${DAY:=2026-03-02}"
GRPCURL=${GRPCURL:-grpcurl}

# call TOKEN METHOD [grpcurl args…] — JSON request body on stdin.
call() {
  local token=$1 method=$2
  shift 2
  "$GRPCURL" -plaintext -H "authorization: Bearer ${token}" -d @ "$@" "$COACHFIT_ADDR" "$method"
}

# pair_new_client NAME — a new client of COACH_TOKEN's coach, paired as the app does;
# prints RedeemPairingCode's answer (userId, deviceToken, …).
pair_new_client() {
  local code
  code=$(call "$COACH_TOKEN" coachfit.v1.PairingService/CreatePairingCode <<<"{\"display_name\": \"$1\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["code"])')
  "$GRPCURL" -plaintext -d "{\"code\": \"$code\", \"device_name\": \"iPhone\"}" \
    "$COACHFIT_ADDR" coachfit.v1.PairingService/RedeemPairingCode
}
