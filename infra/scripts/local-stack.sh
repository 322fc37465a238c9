#!/usr/bin/env bash
# A local cluster without Docker, all on 127.0.0.1: Redis, Kafka (KRaft, from the pinned Maven
# jars), one projector and two token nodes sharing one sealed key set.
#   infra/scripts/local-stack.sh start   # builds (release), starts, prints the endpoints
#   infra/scripts/local-stack.sh stop
# Ports: Redis 16379, Kafka 19092 (controller 19093), tokend 8081 and 8082, projector metrics
# 9464. State lives in .local-stack/ (delete it to start over), or in LOCAL_STACK_DIR. Settings
# in the environment (TOKEND_*, PROJECTOR_*) reach the services.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
run="${LOCAL_STACK_DIR:-$root/.local-stack}"
mkdir -p "$run"

stop() {
  for f in "$run"/*.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  echo "Local stack stopped."
}

wait_for() { # wait_for NAME LOGFILE PATTERN
  for _ in $(seq 1 120); do
    grep -q "$3" "$2" 2>/dev/null && return 0
    sleep 0.5
  done
  echo "$1 did not start; see $2" >&2
  exit 1
}

start() {
  command -v redis-server >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  }
  "$root/infra/kafka/fetch-jars.sh"
  (cd "$root" && cargo build --release -q -p tokend -p tokend-projector)

  redis-server --bind 127.0.0.1 --port 16379 --save "" --appendonly no \
    >"$run/redis.log" 2>&1 & echo $! >"$run/redis.pid"
  "$root/infra/kafka/run-kafka.sh" "$run/kafka" 19092 19093 >"$run/kafka.log" 2>&1 &
  echo $! >"$run/kafka.pid"
  wait_for Kafka "$run/kafka.log" "Kafka Server started"

  [ -f "$run/kek" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$run/kek"
  export TOKEND_STORAGE__BACKEND=cluster
  export TOKEND_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19092 TOKEND_REDIS__URL=redis://127.0.0.1:16379
  export TOKEND_KEYS__KEK_FILE="$run/kek" TOKEND_TOKENS__ISSUER=http://127.0.0.1:8081
  export TOKEND_ADMIN__TOKEN=local-admin-token TOKEND_GRANTS__PASSWORD=true
  export PROJECTOR_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19092 PROJECTOR_REDIS__URL=redis://127.0.0.1:16379
  # One broker here: one copy of each record (production defaults are 3 copies, 2 in sync).
  export TOKEND_KAFKA__REPLICATION_FACTOR=1 TOKEND_KAFKA__MIN_INSYNC_REPLICAS=1
  export PROJECTOR_KAFKA__REPLICATION_FACTOR=1 PROJECTOR_KAFKA__MIN_INSYNC_REPLICAS=1

  "$root/target/release/projector" >"$run/projector.log" 2>&1 & echo $! >"$run/projector.pid"
  TOKEND_SEED__DEMO=true TOKEND_SERVER__LISTEN_ADDR=127.0.0.1:8081 TOKEND_STORAGE__DATA_DIR="$run/tokend-1" \
    "$root/target/release/tokend" >"$run/tokend-1.log" 2>&1 & echo $! >"$run/tokend-1.pid"
  wait_for tokend-1 "$run/tokend-1.log" "Token node listening"
  TOKEND_SERVER__LISTEN_ADDR=127.0.0.1:8082 TOKEND_STORAGE__DATA_DIR="$run/tokend-2" \
    "$root/target/release/tokend" >"$run/tokend-2.log" 2>&1 & echo $! >"$run/tokend-2.pid"
  wait_for tokend-2 "$run/tokend-2.log" "Token node listening"
  echo "Local stack up: tokend http://127.0.0.1:8081 and http://127.0.0.1:8082, Kafka 127.0.0.1:19092,"
  echo "Redis 127.0.0.1:16379, projector metrics http://127.0.0.1:9464/metrics. Logs in $run."
  grep -A6 "shown this once" "$run/tokend-1.log" || echo "(demo client created on an earlier start)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
