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
# A clean clone (CI) gains nothing from incremental state: it would add ~1.3 GB to the
# ~2.8 GB the test build writes, on a disk that once filled up under a CI run.
[ -n "${CI:-}" ] && export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
echo "test: building (dev profile, all tests)"
cargo build --workspace --tests --locked
echo "test: running"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# No doc-tests: every crate's examples are tests of their own.
set +e
scripts/with-postgres.sh cargo test --workspace --locked --lib --bins --tests 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
scripts/test-deb.sh || rc=1  # the .deb from the dev build above, installed into a throwaway root
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .* ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
# The browser suite runs without libtest and prints its own "N passed, N failed".
bp=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | awk '{p+=$1; f+=$3} END {print p+0, f+0}')
passed=$((passed + ${bp% *})); failed=$((failed + ${bp#* }))
echo "test: make test took $(( $(date +%s) - start )) s"
echo "$passed passed, $failed failed"
exit "$rc"
