#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine of this kind, then runs all of it:
# formatting, clippy with -D warnings, and every test (unit, in-process HTTP, integration).
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf '\n==> %s\n' "$*"; }

step "Toolchain"
cargo --version
rustc --version

step "Formatting"
cargo fmt --all -- --check

step "Clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Tests"
cargo test --workspace --locked
