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
# Results: bench/results/*.json (per run) + summary.json; see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh bench
SCEN=${BENCH_SCENARIOS:-1x2,10x4,25x4,1x12,1to50,1to20}
SECS=${BENCH_SECONDS:-10}
RUNS=${BENCH_RUNS:-3}
SERVERS=${BENCH_SERVERS:-ours,janus}
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
  --server-bin target/release/fengqiao --scenario "$SCEN" --seconds "$SECS" --runs "$RUNS" --out "$OUT"
echo "bench: load after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${BENCH_FLOOR:-1}" = 1 ]; then
  nice -n 10 cargo bench -p fengqiao-floor --bench floor -- --warm-up-time 1 --measurement-time 3
fi
