#!/usr/bin/env bash
# Validates infra/k8s offline: every manifest against the Kubernetes API schemas bundled in
# `kubernetes-validate` (pinned, in a virtualenv under target/tools; strict: unknown fields
# fail), the kustomization's resource list, and the ConfigMap's settings by loading them
# into the real binaries (`tokend check-config`, `projector check-config`). First it checks
# that the validator does reject a broken manifest, so a green run means something.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
k8s="$root/infra/k8s"
version=1.33.0 # the Kubernetes API version the manifests target
venv="$root/target/tools/k8s-venv-1"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0 pyyaml==6.0.3
fi
validate() { "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$@"; }

broken="$(mktemp --suffix=.yaml)"
trap 'rm -f "$broken"' EXIT
sed 's/readinessProbe:/readinesProbe:/' "$k8s/tokend.yaml" > "$broken"
if validate "$broken" > /dev/null 2>&1; then
  echo "validate-k8s: the validator accepted a misspelt field; it checks nothing" >&2
  exit 1
fi

# The kustomization's resources, each validated.
mapfile -t resources < <("$venv/bin/python" - "$k8s/kustomization.yaml" <<'PY'
import sys, yaml
for r in yaml.safe_load(open(sys.argv[1]))["resources"]:
    print(r)
PY
)
for r in "${resources[@]}"; do
  [ -f "$k8s/$r" ] || { echo "validate-k8s: $r is listed but missing" >&2; exit 1; }
done
(cd "$k8s" && validate "${resources[@]}")

# The settings, as the binaries read them.
mapfile -t settings < <("$venv/bin/python" - "$k8s/config.yaml" <<'PY'
import sys, yaml
for k, v in yaml.safe_load(open(sys.argv[1]))["data"].items():
    print(f"{k}={v}")
PY
)
cd "$root"
cargo build -q --locked -p tokend -p tokend-projector
env -i PATH="$PATH" "${settings[@]}" target/debug/tokend check-config
env -i PATH="$PATH" "${settings[@]}" target/debug/projector check-config
echo "validate-k8s: ${#resources[@]} files valid for Kubernetes $version; settings load"
