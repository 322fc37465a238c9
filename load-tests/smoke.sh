#!/usr/bin/env bash
# Every scenario for a few seconds against the embedded target (debug build), at low rates, and
# the propagation probe for 20 samples, and compare.sh for a second per run (embedded only): the
# suite cannot rot (run by infra/scripts/test.sh).
# A scenario whose thresholds fail, or with a wrong answer, fails this, with its output.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

run() { # run NAME ARGS...: one run.sh call, its summary lines shown, all of it on failure
  local name="$1"
  shift
  if ! "$here/run.sh" "$@" >"$out" 2>&1; then
    tail -40 "$out" >&2
    echo "load-test smoke: $name failed" >&2
    exit 1
  fi
  grep -E " on embedded$|requests:|latency:|wrong answers:|k6 itself|propagation|rejected|answered" "$out" || true
}

# One build up front (a feature set other than the test build's may mean minutes of compiling).
(cd "$here/.." && cargo build -p tokend -p tokend-propagation-probe -p tokend-loadgen)

for scenario in issue validate introspect password revoke mixed; do
  rate=100
  [ "$scenario" = password ] && rate=10
  run "$scenario" "$scenario" --target embedded --debug --no-build --rate "$rate" --duration 3s
done
SAMPLES=20 run probe probe --target embedded --debug --no-build
# The Rust generator, the reference targets (bare sign/verify, the seed service) and the
# report, a second per run; any failed or wrong answer fails it.
if ! "$here/compare.sh" --debug --no-build --duration 1 --targets embedded --strict >"$out" 2>&1; then
  tail -40 "$out" >&2
  echo "load-test smoke: compare.sh failed" >&2
  exit 1
fi
grep -E "answers/s|report:" "$out" || true
echo "load-test smoke: every scenario and the probe passed"
