#!/usr/bin/env bash
# Runs one projector benchmark against real Kafka and Redis on a clean box: test containers
# left by earlier runs (an idle Kafka is a JVM) are removed before and after, since they skew
# the figures. Usage: bench/run.sh projection|propagation  (env: EVENTS, ISSUE_RATE, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
clean() { docker rm -f $(docker ps -aq --filter label=tokend-test=1) >/dev/null 2>&1 || true; }
trap clean EXIT
clean
cargo bench -p tokend-projector --bench "${1:?usage: bench/run.sh projection|propagation}"
