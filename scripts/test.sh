#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, rustdoc, the stock
# binaries (integration tests start them as separate processes), then unit and
# integration tests. Needs only a Rust toolchain with rustfmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."

# One shared target directory outside the checkout, so that CI runs and local
# builds reuse each other's artifacts.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ballista-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "rustdoc of the framework (missing docs are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p ballista-framework --quiet

step "build the stock binaries"
cargo build --workspace --bins

step "unit and integration tests"
cargo test --workspace

step "all tests passed"
