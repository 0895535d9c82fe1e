#!/usr/bin/env bash
# Writ as replicas on loopback against PostgreSQL: three authorization servers, two revocation
# services and a Security Token Service, each a separate process. What docs/replicas.md walks
# through, as a script (tested by tests/it/replicas.rs).
#
#   deploy/replicas.sh start   # starts them, waits until each is ready, prints the endpoints
#   deploy/replicas.sh stop    # stops them (SIGTERM), waits for each to exit
#
# Settings (environment):
#   WRIT            the writ binary                       (default: writ on the PATH)
#   WRIT_STORE      the database URL                      (default: the local test database)
#   WRIT_STORE_SCHEMA  prefix of the services' schemas    (default: writ)
#   BASE            where state, logs and pid files go    (default: ./writ-replicas)
#   AUTHZ_PORTS     three gRPC,HTTP,admin triples         (default: 7400,7401,7402 7403,7404,7405 ...)
#   REVOCATION_PORTS  two ports                           (default: 7420 7421)
#   STS_PORTS       gRPC,HTTP                             (default: 7410,7411)
#   ISSUER, STS_ISSUER  the URLs clients reach them at    (default: https://127.0.0.1:7401 ...)
# Every wait is bounded (READY_SECONDS, default 30).
set -euo pipefail

WRIT=${WRIT:-writ}
export WRIT_STORE=${WRIT_STORE:-postgres://postgres@127.0.0.1:5432/test}
SCHEMA=${WRIT_STORE_SCHEMA:-writ}
BASE=${BASE:-writ-replicas}
AUTHZ_PORTS=${AUTHZ_PORTS:-"7400,7401,7402 7403,7404,7405 7406,7407,7408"}
REVOCATION_PORTS=${REVOCATION_PORTS:-"7420 7421"}
STS_PORTS=${STS_PORTS:-"7410,7411"}
ISSUER=${ISSUER:-https://127.0.0.1:7401}
STS_ISSUER=${STS_ISSUER:-https://127.0.0.1:7411}
READY_SECONDS=${READY_SECONDS:-30}
SHARED="$BASE/shared"

die() { echo "replicas.sh: $*" >&2; exit 1; }

# Reads one string field of a JSON file written by writ (flat, no escapes in these values).
field() { sed -n "s/.*\"$2\": *\"\([^\"]*\)\".*/\1/p" "$1" | head -n 1; }

# Flags every process shares: the database, one certificate, one key-encryption key.
common() {
  echo --store-schema "$SCHEMA" \
    --tls-cert "$SHARED/server.pem" --tls-key "$SHARED/server-key.pem" \
    --peer-ca "$SHARED/ca.pem" \
    --key-encryption-key-file "$SHARED/key-encryption.key" \
    --ops-listen 127.0.0.1:0
}

# start_one NAME SERVICE FLAGS...: starts `writ serve SERVICE` in BASE/NAME and waits for its
# endpoints.json (written once it serves).
start_one() {
  local name=$1 service=$2; shift 2
  local dir="$BASE/$name"
  mkdir -p "$dir"
  rm -f "$dir/endpoints.json"
  # shellcheck disable=SC2046
  nohup "$WRIT" serve "$service" $(common) --data-dir "$dir" "$@" \
    >"$dir/stdout.log" 2>"$dir/stderr.log" </dev/null &
  echo $! >"$dir/pid"
  local deadline=$((SECONDS + READY_SECONDS))
  until [ -s "$dir/endpoints.json" ]; do
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || die "$name exited: $(tail -n 5 "$dir/stderr.log")"
    [ $SECONDS -lt $deadline ] || die "$name not serving within ${READY_SECONDS}s"
    sleep 0.1
  done
  echo "$name serving ($(field "$dir/endpoints.json" "${service}_grpc"))"
}

# ready NAME: waits until its /readyz answers 200 (its store answers, its feed has synced). An
# authorization server is only ready once the revocation service it follows is up.
ready() {
  local ops; ops=$(field "$BASE/$1/endpoints.json" ops)
  local deadline=$((SECONDS + READY_SECONDS))
  until curl -fsS "$ops/readyz" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$1 not ready within ${READY_SECONDS}s: $(curl -sS "$ops/readyz" 2>&1)"
    sleep 0.1
  done
  echo "$1 ready"
}

start() {
  mkdir -p "$BASE"
  "$WRIT" cluster-init --dir "$SHARED" >/dev/null
  local revocation_urls="" port
  for port in $REVOCATION_PORTS; do
    revocation_urls="$revocation_urls${revocation_urls:+,}https://127.0.0.1:$port"
  done

  # The first authorization server alone: it creates the signing keys and the admin credential.
  local i=0 triple grpc http admin
  for triple in $AUTHZ_PORTS; do
    i=$((i + 1))
    IFS=, read -r grpc http admin <<<"$triple"
    start_one "authz-$i" authz --authz-port "$grpc" --authz-http-port "$http" \
      --admin-port "$admin" --gateway-port 0 --gateway-http-port 0 --authz-mtls-port 0 \
      --issuer "$ISSUER" --revocation-url "$revocation_urls"
  done
  local authz_grpc authz_admin
  authz_grpc=$(field "$BASE/authz-1/endpoints.json" authz_grpc)
  authz_admin=$(field "$BASE/authz-1/endpoints.json" authz_admin)

  i=0
  for port in $REVOCATION_PORTS; do
    i=$((i + 1))
    start_one "revocation-$i" revocation --revocation-port "$port" --authz-url "$authz_grpc"
  done

  # The STS's own client: it follows the feed and reads callers and policies, nothing more.
  local created secret
  if ! created=$("$WRIT" admin --admin-server "$authz_admin" \
      --server "$authz_grpc" --ca "$SHARED/ca.pem" --data-dir "$BASE/authz-1" \
      client create --id sts --grant client_credentials \
      --scope writ.revocation.watch --scope writ.admin.authenticate_client \
      --scope writ.admin.read --audience writ-revocation --audience writ-admin 2>&1); then
    case "$created" in
      *already_exists*|*AlreadyExists*) created=$("$WRIT" admin \
          --admin-server "$authz_admin" --server "$authz_grpc" --ca "$SHARED/ca.pem" \
          --data-dir "$BASE/authz-1" client rotate-secret sts) ;;
      *) die "creating the STS's client: $created" ;;
    esac
  fi
  secret=$(printf '%s\n' "$created" | sed -n 's/.*"client_secret": *"\([^"]*\)".*/\1/p')
  [ -n "$secret" ] || die "no secret for the STS's client"
  local sts_grpc sts_http
  IFS=, read -r sts_grpc sts_http <<<"$STS_PORTS"
  WRIT_STS_CLIENT_SECRET=$secret start_one sts sts --sts-port "$sts_grpc" \
    --sts-http-port "$sts_http" --sts-issuer "$STS_ISSUER" --sts-client-id sts \
    --authz-url "$authz_grpc" --authz-admin-url "$authz_admin" \
    --revocation-url "$revocation_urls"
  local dir
  for dir in "$BASE"/*/; do
    [ -e "$dir/pid" ] && ready "$(basename "$dir")"
  done
  echo "admin credential: $BASE/authz-1/admin.token; CA: $SHARED/ca.pem"
}

stop() {
  local pidfile pid deadline
  for pidfile in "$BASE"/*/pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pidfile in "$BASE"/*/pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    deadline=$((SECONDS + READY_SECONDS))
    while kill -0 "$pid" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
      sleep 0.1
    done
    rm -f "$pidfile"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop" ;;
esac
