#!/usr/bin/env bash
# `make test`: installs what the tests need, builds once (dev profile), then runs
# every test — unit, in-process end to end, case service on SQLite and PostgreSQL,
# and the real-browser tests (Chromium, Firefox ESR) inside a private network
# namespace — and prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/deps.sh test
export CARGO_TERM_COLOR=never PATH="$HOME/.cargo/bin:$PATH"
echo "test: building (dev profile, all tests)"
cargo build --workspace --tests --locked
echo "test: running"
scripts/with-postgres.sh cargo test --workspace --locked
echo "test: make test took $(( $(date +%s) - start )) s"
