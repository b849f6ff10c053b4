#!/usr/bin/env bash
# `make bench`: our SFU and Janus 1.1.2 (Debian) side by side, in a private network
# namespace that loadgen makes itself (`--netns`: lo + veth fqb0 10.99.0.1; no packet
# can leave it). Each scenario starts a fresh server (Janus: only the videoroom plugin
# and the WebSocket transport, config in a temp folder), servers alternate and swap
# order every run, medians over BENCH_RUNS runs. On a machine with ≥ 2 cores loadgen
# is pinned to CPU 0 and the servers to CPU 1 (taskset). Then the criterion floor.
#
#   scripts/bench.sh                       # default set, 3 runs, 10 s windows
#   BENCH_SCENARIOS=1x2,10x4 BENCH_RUNS=1 scripts/bench.sh
#   BENCH_FLOOR=0 scripts/bench.sh         # skip the criterion floor
#   BENCH_OUT=/tmp/b BENCH_SERVERS=janus scripts/bench.sh
#   BENCH_JOIN=0 scripts/bench.sh          # skip the Chromium join-time step
#   BENCH_JOIN_SAMPLES=5 BENCH_JOIN_SERVERS=ours scripts/bench.sh
#   BENCH_BASELINE_BIN=/tmp/old/fengqiao scripts/bench.sh   # before/after: adds server `base`
#   BENCH_RAMP=0 scripts/bench.sh          # skip the ramp (default: rooms x 4 until a bound breaks)
# Results: bench/results/*.json (per run) + summary.json; see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh bench
SCEN=${BENCH_SCENARIOS:-1x2,10x4,25x4,1x12,1to50,1to20}
SECS=${BENCH_SECONDS:-10}
RUNS=${BENCH_RUNS:-3}
SERVERS=${BENCH_SERVERS:-ours,janus}
base=()
if [ -n "${BENCH_BASELINE_BIN:-}" ]; then
  base=(--baseline-bin "$BENCH_BASELINE_BIN") SERVERS="$SERVERS,base"
fi
OUT=${BENCH_OUT:-bench/results}
nice -n 10 cargo build --release -p fengqiao -p fengqiao-bench
pin_lg=() pin_srv=()
if [ "$(nproc)" -ge 2 ]; then
  pin_lg=(taskset -c 0) pin_srv=(--server-cpus 1)
fi
echo "bench: $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes'), $(date -u +%FT%TZ)"
mkdir -p "$OUT"
"${pin_lg[@]}" ./target/release/loadgen --netns --server "$SERVERS" "${pin_srv[@]}" \
  --server-bin target/release/fengqiao "${base[@]}" --scenario "$SCEN" --seconds "$SECS" --runs "$RUNS" --out "$OUT"
echo "bench: load after: $(cut -d' ' -f1-3 /proc/loadavg)"
# The ramp: R rooms x BENCH_RAMP participants, R growing until loss >= 0.5 % or
# p99 >= 20 ms (twice), each server in turn; writes $OUT/ramp.json.
if [ "${BENCH_RAMP:-4}" != 0 ]; then
  "${pin_lg[@]}" ./target/release/loadgen --netns --server "${BENCH_SERVERS:-ours,janus}" "${pin_srv[@]}" \
    --server-bin target/release/fengqiao --ramp "${BENCH_RAMP:-4}" --ramp-max-rooms 60 --seconds "$SECS" --out "$OUT"
  echo "bench: load after the ramp: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
# Chromium join → first decoded frame (tests/browser/join_time.rs, in the browser
# harness's own namespace), ours (release binary) and Janus alternating, BENCH_JOIN_SAMPLES
# each. Bounded (its own 900 s sampling budget, then `timeout`); a failure is reported
# and the rest goes on. BENCH_JOIN=0 skips it.
join_status=0
if [ "${BENCH_JOIN:-1}" = 1 ]; then
  if nice -n 10 cargo test -p fengqiao --test browser --no-run; then
    echo "bench: chromium join time, load $(cut -d' ' -f1-3 /proc/loadavg)"
    FQ_BROWSER_CASES=join_time FQ_JOIN_SERVERS="${BENCH_JOIN_SERVERS:-ours,janus}" \
      FQ_JOIN_SAMPLES="${BENCH_JOIN_SAMPLES:-20}" FQ_JOIN_SERVER_BIN="$PWD/target/release/fengqiao" \
      FQ_JOIN_OUT="$(realpath -m "$OUT")/chromium-join.json" \
      timeout -k 30 1200 cargo test -p fengqiao --test browser || join_status=$?
  else
    join_status=$?
  fi
  [ "$join_status" = 0 ] || echo "bench: chromium join time FAILED (exit $join_status), see above; going on" >&2
fi
if [ "${BENCH_FLOOR:-1}" = 1 ]; then
  nice -n 10 cargo bench -p fengqiao-floor --bench floor -- --warm-up-time 1 --measurement-time 3
fi
[ "$join_status" = 0 ] || { echo "bench: the chromium join-time step failed" >&2; exit 1; }
