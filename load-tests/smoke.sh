#!/usr/bin/env bash
# Every scenario for a few seconds against the embedded target (debug build), at low rates:
# the suite cannot rot (run by infra/scripts/test.sh). A scenario whose thresholds fail, or
# with a wrong answer, fails this.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for scenario in issue validate introspect password revoke mixed; do
  rate=100
  [ "$scenario" = password ] && rate=10
  "$here/run.sh" "$scenario" --target embedded --debug --rate "$rate" --duration 3s 2>&1 |
    grep -E "^$scenario on|requests:|latency:|wrong answers:|crossed|k6 itself" || true
  status=${PIPESTATUS[0]}
  [ "$status" -eq 0 ] || { echo "load-test smoke: $scenario failed ($status)" >&2; exit 1; }
done
SAMPLES=20 "$here/run.sh" probe --target embedded --debug 2>&1 | grep -E "propagation|rejected|answered"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "load-test smoke: the propagation probe failed" >&2; exit 1; }
echo "load-test smoke: every scenario and the probe passed"
