#!/usr/bin/env bash
# Builds Jaeger v2 from its Go module, once (the binary is cached under the ignored
# target/tools/). It is an OpenTelemetry Collector distribution, and the tests use it twice: as
# the trace backend they send OTLP to and read back through its query API, and as the collector
# that runs infra/observability/otel-collector.yaml. Go modules come through the machine's
# module proxy. (`go install` refuses this module because its go.mod has replace directives,
# so it is built in a copy of the module.)
set -euo pipefail
cd "$(dirname "$0")/../.."
version=1.76.0
out="$PWD/target/tools/jaeger-$version/jaeger"
if [ -x "$out" ]; then
  echo "cached: $out"
  exit 0
fi
command -v go >/dev/null || { echo "Go is needed to build Jaeger (go 1.26 is on these machines)" >&2; exit 1; }
source infra/scripts/lib/go-scratch.sh
dir=$(go mod download -json "github.com/jaegertracing/jaeger@v$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "go mod download gave no module directory" >&2; exit 1; }
build="$go_scratch/jaeger" # removed with the caches
mkdir -p "$build"
cp -r "$dir"/. "$build"
chmod -R u+w "$build"
mkdir -p "$(dirname "$out")"
(cd "$build" && go build -trimpath -o "$out.tmp" ./cmd/jaeger)
mv "$out.tmp" "$out"
echo "built: $out"
