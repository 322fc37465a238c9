#!/usr/bin/env bash
# Builds the test images with no container registry: the Debian base is made with debootstrap
# from this machine's own apt mirror (read at run time), then standard Dockerfiles build on it
# with the host network. Skips images that exist (FORCE=1 rebuilds).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

have() { [ "${FORCE:-0}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

mirror() {
  # The first Debian (non-security) URI of the machine's apt sources.
  local uri
  uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v security | sed -E 's/^URIs:[[:space:]]*//; s/^deb (\[[^]]*\] )?//' \
    | awk '{print $1}' | grep -i debian | head -n 1 || true)
  [ -n "$uri" ] || { echo "no Debian mirror found in the apt sources" >&2; exit 1; }
  echo "$uri"
}

if ! have debian:bookworm-slim; then
  command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  rootfs=$(mktemp -d)
  echo "Making debian:bookworm-slim with debootstrap..."
  debootstrap --variant=minbase bookworm "$rootfs" "$(mirror)" >/dev/null
  tar -C "$rootfs" -c . | docker import - debian:bookworm-slim >/dev/null
  rm -rf "$rootfs"
fi

if ! have tokend-test/redis:7; then
  docker build -q --network host -t tokend-test/redis:7 -f "$here/redis.Dockerfile" "$here" >/dev/null
fi

if ! have tokend-test/kafka:3.9; then
  "$root/infra/kafka/fetch-jars.sh"
  docker build -q --network host -t tokend-test/kafka:3.9 -f "$here/kafka.Dockerfile" "$root/infra/kafka" >/dev/null
fi
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'tokend-test|bookworm-slim'
