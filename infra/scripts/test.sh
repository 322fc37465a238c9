#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine of this kind (build dependencies of
# rdkafka's bundled librdkafka, Debian's Chromium and ChromeDriver for the browser test,
# Debian's Prometheus and promtool for the observability test, the Docker engine without a
# bridge, the locally built Kafka and Redis images, Jaeger v2 built from its Go module as the
# trace backend and the OpenTelemetry Collector, k6 for the load tests), then runs all of it:
# formatting, clippy with -D warnings, every test (unit, in-process HTTP, and the integration
# tests against real Kafka and Redis), and a smoke run of the load-test suite.
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf '\n==> %s\n' "$*"; }
# Free disk, printed between the heavy steps: a run that fails for lack of space says where.
disk() { df -h --output=avail,target . | tail -1 | awk '{print "disk: " $1 " free on " $2}'; }

# CI builds the workspace once: incremental caches (about 3 GB) would only take disk.
export CARGO_INCREMENTAL=0
disk

step "System packages"
need=()
for pkg in cmake pkg-config libssl-dev zlib1g-dev libcurl4-openssl-dev debootstrap chromium chromium-driver prometheus; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  # No package may start a service (Prometheus's would listen on every interface): the tests
  # start their own, on 127.0.0.1.
  policy=/usr/sbin/policy-rc.d
  added_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  [ -z "$added_policy" ] || rm -f "$policy"
fi
echo "ok"

step "Docker engine (no bridge; containers use the host network on 127.0.0.1)"
infra/docker/install-docker.sh

step "Test images (Debian base by debootstrap, Redis, Kafka from Maven Central jars)"
infra/docker/build-images.sh

cleanup() { docker rm -f $(docker ps -aq --filter label=tokend-test=1) >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

step "Jaeger v2 (trace backend and OpenTelemetry Collector of the telemetry tests), built once from its Go module"
infra/scripts/install-jaeger.sh

step "k6 (the load-test suite's generator), installed once with Go"
load-tests/install-k6.sh

disk
step "Toolchain"
cargo --version
rustc --version

step "Formatting"
cargo fmt --all -- --check

step "Clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

disk
step "Tests"
# A hard limit over the whole run: each integration test has its own (it stops its
# binary with the test's name); this catches a hang outside any test body.
timeout --kill-after=30 2400 cargo test --workspace --locked
cleanup # the test binaries' shared brokers live as long as their process; none is needed now

step "Kubernetes manifests (infra/k8s), validated offline"
timeout --kill-after=10 600 infra/scripts/validate-k8s.sh

disk
step "Load-test smoke (every scenario for seconds against an embedded node)"
timeout --kill-after=10 900 load-tests/smoke.sh
disk
