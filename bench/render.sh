#!/usr/bin/env bash
# Review-video render speed (issue 3): `fengqiao render` on a 4-participant
# session (cameras 640×480 VP8 15 fps + Opus tones, made by the ignored test
# `make_bench_session` in tests/render.rs), output 1280×720 25 fps H.264 +
# AAC (the defaults). Prints seconds of session per second of wall time
# (× real time) and the CPU the render used.
#
#   bench/render.sh                                       # 60 s session, release binary
#   RENDER_BENCH_SECONDS=120 bench/render.sh
#   RENDER_PRESETS="veryfast ultrafast" bench/render.sh   # x264 speed presets, rendered in
#                                                         # turn from the same session
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${RENDER_BENCH_SECONDS:-60}
presets=${RENDER_PRESETS:-veryfast}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

nice -n 10 cargo build --release -q -p fengqiao
echo "making a ${secs} s session with 4 participants in $work ..."
RENDER_BENCH_DIR=$work RENDER_BENCH_SECONDS=$secs nice -n 10 cargo test -q -p fengqiao --test render -- \
  --ignored --exact make_bench_session >"$work/make.log" 2>&1 || { cat "$work/make.log"; exit 1; }
session=$work/data/sessions/bench
dur_ms=$(python3 -c "
import json, datetime
t = lambda s: datetime.datetime.strptime(s, '%Y-%m-%dT%H:%M:%S.%fZ')
es = [json.loads(l) for l in open('$session/manifest.jsonl')]
st = [e['t'] for e in es if e['type'] == 'start'][0]; sp = [e['t'] for e in es if e['type'] == 'stop'][-1]
print(int((t(sp) - t(st)).total_seconds() * 1000))")

for preset in $presets; do
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  TIMEFORMAT='%R %U %S'
  { time FENGQIAO_DATA_DIR=$work/data ./target/release/fengqiao render "$session" --preset "$preset" \
      >/dev/null 2>"$work/err"; } 2>"$work/time" || { cat "$work/err"; exit 1; }
  read -r wall user sys <"$work/time"
  size=$(stat -c %s "$session/review/main.mp4")
  python3 -c "
import sys
dur, wall, user, sy, size, preset = $dur_ms / 1000, $wall, $user, $sys, $size, '$preset'
print(f'render: {dur:.2f} s session, 4 participants, 1280x720 25 fps, x264 preset {preset}')
print(f'  wall {wall:.2f} s -> {dur / wall:.2f}x real time; CPU user {user:.2f} s + sys {sy:.2f} s = {(user + sy) / wall:.2f} cores busy')
print(f'  main.mp4 {size / 1e6:.1f} MB')"
  echo "  load average before this render: $load"
done
echo "machine: $(nproc) cores; date $(date -u +%FT%TZ)," \
  "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
