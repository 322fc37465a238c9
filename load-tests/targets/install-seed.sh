#!/usr/bin/env bash
# Installs the seed comparison target's Python packages (pinned) into a virtualenv under
# target/tools, once, and prints the virtualenv's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/tools/seed-venv-1"
if [ ! -x "$venv/bin/gunicorn" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check \
    flask==3.1.3 flask-jwt-extended==4.7.4 gunicorn==27.0.1 >&2
fi
echo "$venv"
