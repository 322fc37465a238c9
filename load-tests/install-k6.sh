#!/usr/bin/env bash
# Installs the pinned k6 with the machine's Go into target/tools/ (once; about 2 min the first
# time). Prints the binary's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version=1.8.1
dir="$root/target/tools/k6-$version"
if [ ! -x "$dir/k6" ]; then
  command -v go >/dev/null || { echo "Go is needed to install k6 (go 1.26 is on these machines)" >&2; exit 1; }
  source "$root/infra/scripts/lib/go-scratch.sh"
  GOBIN="$dir" go install "go.k6.io/k6@v$version" >&2
fi
echo "$dir/k6"
