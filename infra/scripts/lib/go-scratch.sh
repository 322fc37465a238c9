# Sourced by the scripts that build a Go tool once (Jaeger, k6). The Go build and module caches
# go to a scratch directory that is removed on exit, so a build leaves only its binary behind:
# the caches come to about 5 GB, which a CI machine's disk cannot spare beside the Rust build.
go_scratch=$(mktemp -d)
export GOCACHE="$go_scratch/cache" GOMODCACHE="$go_scratch/mod"
go_scratch_cleanup() {
  go clean -modcache >/dev/null 2>&1 || true # module files are read-only; go removes them
  rm -rf "$go_scratch"
}
trap go_scratch_cleanup EXIT
