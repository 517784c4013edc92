# Shared settings for the examples; source it. Override any of these from the environment.
#   COACHFIT_ADDR   host:port of a running server (default 127.0.0.1:50051)
#   DEVICE_TOKEN    a client's device token   (coachfit admin create-client)
#   COACH_TOKEN     that client's coach token (coachfit admin create-coach)
#   USER_ID         the client's user id
#   ADMIN_TOKEN     the server's COACHFIT_ADMIN_TOKEN
#   DAY             the day the examples write (default 2026-03-02)
: "${COACHFIT_ADDR:=127.0.0.1:50051}"
: "${DAY:=2026-03-02}"
GRPCURL=${GRPCURL:-grpcurl}

# call TOKEN METHOD [grpcurl args…] — JSON request body on stdin.
call() {
  local token=$1 method=$2
  shift 2
  "$GRPCURL" -plaintext -H "authorization: Bearer ${token}" -d @ "$@" "$COACHFIT_ADDR" "$method"
}
