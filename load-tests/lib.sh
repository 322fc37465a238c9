# Shell helpers shared by run.sh and compare.sh (sourced).

# ready URL LOG: waits (2 minutes at most) until URL/readyz answers; else shows LOG and exits.
ready() {
  for _ in $(seq 1 240); do
    curl -fs "$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "$1 did not become ready; its log:" >&2
  tail -20 "$2" >&2
  exit 1
}

# field NAME LOG: a value of the demo block a node prints at its first start (client_id, …).
field() { awk -v k="$1" '$1 == k { print $2; exit }' "$2"; }
