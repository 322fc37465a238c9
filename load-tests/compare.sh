#!/usr/bin/env bash
# The headline figures, side by side with the comparison targets measured in the same run:
#   load-tests/compare.sh [--duration 10] [--connections 64] [--targets embedded,cluster]
#                         [--samples 200] [--no-build] [--debug] [--strict]
# Builds and starts, on 127.0.0.1 only: the bare reference (reference-server: sign only, verify
# only), the seed tutorial's service (load-tests/targets/seed_app.py under gunicorn, two
# workers), an embedded node, then the local cluster stack (Redis, Kafka, a projector, two
# nodes) and the example resource server (the SDK), with the bare verifier measured again
# beside them on the nodes' own tokens just before each validation figure (the report sets a
# figure beside the reference measured last before it). Drives each with loadgen (closed model: as fast as answered, over keep-alive
# connections, after a 2 s warm-up), records the CPU the generator and the target used, runs
# the propagation probe on the cluster, and writes load-tests/out/compare-TIME/: one JSON per
# run, report.md (a table with "× bare" and "× seed" columns) and SVG plots. --strict fails
# the run (after the report) when any answer failed or was wrong (the CI smoke uses it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
duration=10 connections=64 samples=200 build=yes profile=release which=embedded,cluster strict=()
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --targets) which="$2"; shift 2 ;;
    --samples) samples="$2"; shift 2 ;;
    --no-build) build=no; shift ;;
    --debug) profile=debug; shift ;;
    --strict) strict=(--strict); shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
flag=(); [ "$profile" = release ] && flag=(--release)
if [ "$build" = yes ]; then
  (cd "$root" && cargo build -q "${flag[@]}" -p tokend -p tokend-projector -p tokend-resource-server -p tokend-loadgen -p tokend-propagation-probe)
fi
bin="$root/target/$profile"
venv="$("$root/load-tests/targets/install-seed.sh")"
out="$root/load-tests/out/compare-$(date -u +%Y%m%dT%H%M%SZ)"
work="$(mktemp -d)"
mkdir -p "$out"
pids=()
stack=no
teardown() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ "$stack" = no ] || LOCAL_STACK_DIR="$work/stack" "$root/infra/scripts/local-stack.sh" stop >/dev/null
  rm -rf "$work"
}
trap teardown EXIT

port() { echo $((20000 + RANDOM % 20000)); }
. "$root/load-tests/lib.sh"
runs=()
measure() { # measure NAME SCENARIO PIDS ARGS...: one loadgen run, its JSON kept for the report
  local name="$1" scenario="$2" watch="$3"
  shift 3
  local w=()
  for p in $watch; do w+=(--watch-pid "$p"); done
  "$bin/loadgen" run --scenario "$scenario" --label "$name" --duration "$duration" \
    --connections "$connections" "${w[@]}" --json "$out/$name.json" "$@"
  runs+=("$out/$name.json")
}

# The references, measured first (idle while the rest runs).
ref_port=$(port)
"$bin/reference-server" --listen "127.0.0.1:$ref_port" >"$work/reference.log" 2>&1 &
pids+=($!); ref_pid=$!
seed_port=$(port)
# One secret for both workers (each would otherwise draw its own and refuse the other's tokens).
export SEED_JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
(cd "$root/load-tests/targets" && exec "$venv/bin/gunicorn" --bind "127.0.0.1:$seed_port" \
  --workers 2 --worker-class gthread --threads 8 --keep-alive 5 seed_app:app) >"$work/seed.log" 2>&1 &
pids+=($!); seed_pid=$!
ready "http://127.0.0.1:$ref_port" "$work/reference.log"
ready "http://127.0.0.1:$seed_port" "$work/seed.log"
seed_all="$seed_pid $(pgrep -P "$seed_pid" | tr '\n' ' ')"
measure bare-sign sign "$ref_pid" --target "http://127.0.0.1:$ref_port"
measure bare-verify verify "$ref_pid" --target "http://127.0.0.1:$ref_port"
measure seed-login seed-login "$seed_all" --target "http://127.0.0.1:$seed_port"
measure seed-data seed-data "$seed_all" --target "http://127.0.0.1:$seed_port"

export TOKEND_RATE_LIMIT__ENABLED=false
# An embedded node; with NOCACHE=1 it keeps no verified tokens (each validation checks the
# signature, as for tokens never seen before).
embedded() { # embedded SUFFIX [NOCACHE]
  local port log=$work/tokend$1.log
  port=$(port)
  TOKEND_SERVER__LISTEN_ADDR="127.0.0.1:$port" TOKEND_STORAGE__DATA_DIR="$work/node$1" TOKEND_SEED__DEMO=true \
    env ${2:+TOKEND_TOKENS__VERIFIED_TOKENS=$2} "$bin/tokend" >"$log" 2>&1 &
  pids+=($!); node_pid=$!
  node="http://127.0.0.1:$port"
  ready "$node" "$log"
  export CLIENT_ID="$(field client_id "$log")" CLIENT_SECRET="$(field client_secret "$log")"
}
if [[ ",$which," == *",embedded,"* ]]; then
  embedded ""
  rss_before=$(awk '/^VmRSS/ { print $2 }' "/proc/$node_pid/status")
  measure embedded-issue issue "$node_pid" --target "$node"
  rss_after=$(awk '/^VmRSS/ { print $2 }' "/proc/$node_pid/status")
  # Every token issued in the run is still active (15 min lifetime): the growth of the node's
  # resident memory over the tokens issued (warm-up included) bounds what one costs.
  issued=$(curl -fs "$node/metrics" | awk '/^tokend_tokens_issued_total/ { s += $2 } END { print s + 0 }')
  echo "embedded node RSS: ${rss_before} kB idle, ${rss_after} kB after ${issued} tokens issued" \
    "($(( (rss_after - rss_before) * 1024 / (issued > 0 ? issued : 1) )) bytes per active token)" | tee "$out/embedded-memory.txt"
  measure embedded-validate validate "$node_pid" --target "$node"
  measure embedded-introspect introspect "$node_pid" --target "$node"
  kill "$node_pid"
  embedded -nocache 0
  measure embedded-validate-uncached validate "$node_pid" --target "$node"
  measure embedded-introspect-uncached introspect "$node_pid" --target "$node"
  kill "$node_pid"
fi

# The local cluster stack, twice: as configured, then with no verified-token cache.
cluster() { # cluster SUFFIX
  stack=yes
  LOCAL_STACK_DIR="$work/stack" "$root/infra/scripts/local-stack.sh" start >/dev/null
  ready http://127.0.0.1:8081 "$work/stack/tokend-1.log"
  ready http://127.0.0.1:8082 "$work/stack/tokend-2.log"
  export CLIENT_ID="$(field client_id "$work/stack/tokend-1.log")" CLIENT_SECRET="$(field client_secret "$work/stack/tokend-1.log")"
  validator="$(cat "$work/stack/tokend-2.pid") $(cat "$work/stack/redis.pid")"
  # The bare reference again, beside the running stack and with the very tokens the nodes are
  # measured with: each validation below is set beside the one measured last before it.
  local bare_port bare_pid suffix="$1"
  bare_port=$(port)
  "$bin/reference-server" --listen "127.0.0.1:$bare_port" --jwks http://127.0.0.1:8081/.well-known/jwks.json \
    >"$work/reference$1.log" 2>&1 &
  pids+=($!); bare_pid=$!
  ready "http://127.0.0.1:$bare_port" "$work/reference$1.log"
  bare() { measure "bare-verify-cluster$suffix$1" verify-issued "$bare_pid" --target "http://127.0.0.1:$bare_port" --issuer http://127.0.0.1:8081; }
  bare ""
  # Validation on a node that did not issue the tokens.
  measure "cluster-validate$1" validate "$validator" --target http://127.0.0.1:8082 --issuer http://127.0.0.1:8081
  measure "cluster-introspect$1" introspect "$validator" --target http://127.0.0.1:8082 --issuer http://127.0.0.1:8081
  # The example resource server: the SDK, with its own revocation mirror (and, like the
  # nodes, without a verified-token cache in the -uncached run).
  local rs_port rs_pid
  rs_port=$(port)
  RS_ISSUER=http://127.0.0.1:8081 RS_REDIS_URL=redis://127.0.0.1:16379 RS_LISTEN_ADDR="127.0.0.1:$rs_port" \
    RS_VERIFIED_TOKENS="${TOKEND_TOKENS__VERIFIED_TOKENS:-10000}" \
    "$bin/resource-server" >"$work/resource-server$1.log" 2>&1 &
  pids+=($!); rs_pid=$!
  ready "http://127.0.0.1:$rs_port" "$work/resource-server$1.log"
  bare -2
  measure "resource-server-validate$1" resource-data "$rs_pid $(cat "$work/stack/redis.pid")" \
    --target "http://127.0.0.1:$rs_port" --issuer http://127.0.0.1:8081
  kill "$rs_pid" "$bare_pid"
}
stop_cluster() { # and wait (30 s at most) until its processes are gone and their ports free
  local gone=($(cat "$work"/stack/*.pid))
  LOCAL_STACK_DIR="$work/stack" "$root/infra/scripts/local-stack.sh" stop >/dev/null
  for _ in $(seq 1 60); do
    kill -0 "${gone[@]}" 2>/dev/null || break
    sleep 0.5
  done
  rm -rf "$work/stack"
  stack=no
}
if [[ ",$which," == *",cluster,"* ]]; then
  cluster ""
  # Kafka's JVM compiles its produce path during the first tens of seconds (cold, it spent
  # 150 µs of CPU per record; warm, 40): warm it up as a running cluster would be.
  "$bin/loadgen" run --scenario issue --label warm-up --duration 20 --warmup 0 \
    --target http://127.0.0.1:8081 --target http://127.0.0.1:8082 >/dev/null
  everything="$(cat "$work"/stack/*.pid | tr '\n' ' ')"
  measure cluster-issue issue "$everything" --target http://127.0.0.1:8081 --target http://127.0.0.1:8082
  "$bin/propagation-probe" --nodes http://127.0.0.1:8081,http://127.0.0.1:8082 --client-id "$CLIENT_ID" \
    --samples "$samples" --json "$out/probe.json"
  stop_cluster
  TOKEND_TOKENS__VERIFIED_TOKENS=0 cluster -uncached
  stop_cluster
fi

probe=()
[ -f "$out/probe.json" ] && probe=(--probe "$out/probe.json")
note="Run $(date -u +%Y-%m-%dT%H:%MZ), commit $(cd "$root" && git rev-parse --short HEAD), $(nproc) cores \
($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $profile build: \
\`load-tests/compare.sh --duration $duration --connections $connections --targets $which\`; \
generator: loadgen, one thread, on the same cores.
$(cat "$out/embedded-memory.txt" 2>/dev/null || true)"
"$bin/loadgen" report --out "$out" --note "$note" "${strict[@]}" "${probe[@]}" "${runs[@]}"
echo "report: $out/report.md"
