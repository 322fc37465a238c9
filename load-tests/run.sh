#!/usr/bin/env bash
# Runs one load-test scenario against a target it brings up and tears down itself.
#   load-tests/run.sh SCENARIO [--target embedded|cluster] [--rate N] [--duration 20s] [--ramp] [--debug]
#                              [--no-build]  (use the binaries already built)
# SCENARIO: issue, validate, introspect, password, revoke, mixed (load-tests/k6/*.js), or
# probe: the revocation-propagation probe (load-tests/probe), which no load tool measures.
# Targets: embedded (one release-built node, its own data directory) or cluster
# (infra/scripts/local-stack.sh in a fresh directory: Redis, Kafka, a projector, two nodes).
# Rate limiting is off on the target. k6 (pinned, installed by install-k6.sh) shows its
# progress; the JSON summary goes to load-tests/out/SCENARIO-TARGET-TIME.json, and the CPU k6
# itself used is printed (it shares the machine with the target). Every server listens on
# 127.0.0.1; the run is bounded by its duration.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scenario="${1:?usage: $0 SCENARIO [--target embedded|cluster] [--rate N] [--duration D] [--debug]}"
shift
target=embedded profile=release build=yes
k6_env=()
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="$2"; shift 2 ;;
    --rate) k6_env+=(-e "RATE=$2"); shift 2 ;;
    --duration) k6_env+=(-e "DURATION=$2"); shift 2 ;;
    --ramp) k6_env+=(-e "RAMP=1"); shift ;;
    --debug) profile=debug; shift ;;
    --no-build) build=no; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
script="$root/load-tests/k6/$scenario.js"
[ "$scenario" = probe ] || [ -f "$script" ] || { echo "no scenario $scenario (load-tests/k6/*.js, or probe)" >&2; exit 2; }
flag=(); [ "$profile" = release ] && flag=(--release)
cargo_build() { [ "$build" = no ] || (cd "$root" && cargo build -q "${flag[@]}" "$@"); }
work="$(mktemp -d)"
pids=()
teardown() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ "$target" != cluster ] || LOCAL_STACK_DIR="$work/stack" "$root/infra/scripts/local-stack.sh" stop >/dev/null
  rm -rf "$work"
}
trap teardown EXIT

. "$root/load-tests/lib.sh"

export TOKEND_RATE_LIMIT__ENABLED=false TOKEND_GRANTS__PASSWORD=true
case "$target" in
  embedded)
    cargo_build -p tokend
    port=$((20000 + RANDOM % 10000))
    log="$work/tokend.log"
    TOKEND_SERVER__LISTEN_ADDR="127.0.0.1:$port" TOKEND_STORAGE__DATA_DIR="$work/node" TOKEND_SEED__DEMO=true \
      "$root/target/$profile/tokend" >"$log" 2>&1 &
    pids+=($!)
    targets="http://127.0.0.1:$port"
    ready "$targets" "$log"
    ;;
  cluster)
    LOCAL_STACK_DIR="$work/stack" "$root/infra/scripts/local-stack.sh" start >/dev/null
    log="$work/stack/tokend-1.log"
    targets="http://127.0.0.1:8081,http://127.0.0.1:8082"
    ready http://127.0.0.1:8081 "$log"
    ready http://127.0.0.1:8082 "$work/stack/tokend-2.log"
    ;;
  *) echo "target is embedded or cluster" >&2; exit 2 ;;
esac

mkdir -p "$root/load-tests/out"
summary="$root/load-tests/out/$scenario-$target-$(date -u +%Y%m%dT%H%M%SZ).json"
if [ "$scenario" = probe ]; then
  cargo_build -p tokend-propagation-probe
  nodes="$targets"; [ "$target" = embedded ] && nodes="$targets,$targets" # one node checks itself
  CLIENT_SECRET="$(field client_secret "$log")" "$root/target/$profile/propagation-probe"     --nodes "$nodes" --client-id "$(field client_id "$log")" --samples "${SAMPLES:-200}" --json "$summary"
  echo "summary: $summary"
  exit 0
fi
k6="$("$root/load-tests/install-k6.sh")"
/usr/bin/time -f "k6 itself used %U s user + %S s system CPU (%P of one core)" \
  "$k6" run --no-usage-report \
  -e TARGETS="$targets" -e CLIENT_ID="$(field client_id "$log")" -e CLIENT_SECRET="$(field client_secret "$log")" \
  -e PASSWORD="$(field password "$log")" -e SCENARIO="$scenario" -e TARGET="$target" -e SUMMARY="$summary" \
  "${k6_env[@]}" "$script"
echo "summary: $summary"
