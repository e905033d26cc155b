#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, rustdoc, the stock
# binaries (integration tests start them as separate processes), the
# S3-compatible test server, the Python client libraries, DataFusion's
# sqllogictest files, then unit and integration tests. Needs a Rust toolchain
# with rustfmt and clippy, Python 3 with pip and venv (for moto_server and the
# Python client tests), curl, apt-get (Debian's chromium and prometheus, for
# the web UI and metrics tests; as root or with sudo), and network access to
# crates.io, PyPI and Debian's mirrors on the first run.
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

step "start the S3-compatible test servers (moto_server on loopback)"
# Pinned so that a moto release cannot change what the tests see.
python3 -m pip install --quiet --disable-pip-version-check 'moto[server]==5.2.1'
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
moto_logs="$CARGO_TARGET_DIR/moto"
mkdir -p "$moto_logs"
s3_port=$(free_port)
python3 -m moto.server -H 127.0.0.1 -p "$s3_port" >"$moto_logs/permissive.log" 2>&1 &
s3_pid=$!
# The second server checks credentials and knows none: every key is wrong.
strict_port=$(free_port)
INITIAL_NO_AUTH_ACTION_COUNT=0 python3 -m moto.server -H 127.0.0.1 -p "$strict_port" \
    >"$moto_logs/strict.log" 2>&1 &
strict_pid=$!
trap 'kill "$s3_pid" "$strict_pid" 2>/dev/null || true' EXIT
for port in "$s3_port" "$strict_port"; do
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$port/moto-api/"; then continue 2; fi
        sleep 0.1
    done
    echo "moto_server on port $port did not start; its log:" >&2
    cat "$moto_logs"/*.log >&2
    exit 1
done
export TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export TEST_S3_STRICT_ENDPOINT="http://127.0.0.1:$strict_port"
# Its request log: tests check which requests reached the server.
export TEST_S3_LOG="$moto_logs/permissive.log"
echo "S3 test server at $TEST_S3_ENDPOINT (credential-checking one at $TEST_S3_STRICT_ENDPOINT)"

step "Python clients: ADBC Flight SQL driver, pyarrow, pandas, polars, pytest (PyPI, pinned)"
# A virtual environment of its own, so that the pinned versions never clash
# with what the machine has; re-running only checks them.
venv="$CARGO_TARGET_DIR/python-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r python/requirements.txt \
    -r python/ui_tests/requirements.txt
export BALLISTA_TEST_PYTHON="$venv/bin/python"

step "operations tools: Chromium (web UI tests) and promtool (metrics), from Debian"
# Installed once; later runs only check they are there. Playwright drives
# this Chromium (no browser download), promtool checks /metrics.
if ! command -v chromium >/dev/null || ! command -v promtool >/dev/null; then
    as_root=()
    if [ "$(id -u)" != 0 ]; then as_root=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium prometheus >/dev/null
fi
chromium --version
promtool --version 2>&1 | head -1

step "DataFusion's sqllogictest files (crates.io, checksum-verified)"
scripts/fetch-slt.sh

step "unit and integration tests"
# Every test binary runs even after one fails, so that one run shows every failure.
cargo test --workspace --no-fail-fast

step "all tests passed"
