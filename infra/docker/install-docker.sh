#!/usr/bin/env bash
# Installs Debian's Docker engine when missing and starts it without a bridge network, so no
# container ever gets a private-range address: every test container uses the host network and
# listens on 127.0.0.1. Idempotent.
set -euo pipefail
if ! command -v dockerd >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if docker info >/dev/null 2>&1; then
  exit 0
fi
nohup dockerd --bridge=none --iptables=false --ip-masq=false >/var/log/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "Docker engine up."
    exit 0
  fi
  sleep 1
done
echo "dockerd did not come up; see /var/log/dockerd.log" >&2
exit 1
