#!/usr/bin/env bash
# Installs the Debian packages Fengqiao needs, skipping what is present.
#   scripts/deps.sh run    build + run the server
#   scripts/deps.sh test   everything `make test` uses (browsers, PostgreSQL, netns tools)
#   scripts/deps.sh bench  what `make bench` uses (Janus, perf, valgrind, netns tools)
set -euo pipefail
what=${1:-run}

run_pkgs=(pkg-config ca-certificates
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  xorriso   # disc export (docs/disc.md): `fengqiao export` / `burn`
  gstreamer1.0-plugins-ugly gstreamer1.0-x fonts-noto-cjk)  # `fengqiao render`: x264enc, textoverlay, CJK names
test_pkgs=(chromium chromium-driver firefox-esr fonts-wqy-microhei iproute2 util-linux postgresql
  dpkg-dev systemd  # scripts/test-deb.sh: cargo deb ($auto Depends), systemd-analyze verify
  genisoimage p7zip-full  # tests/disc.rs: isoinfo and 7z, ISO readers independent of xorriso
  espeak-ng  # tests/browser: a speech WAV as Chromium's fake microphone (recording correlation)
  gstreamer1.0-libav  # tests/render.rs: avdec_h264 decodes the review video (openh264dec is baseline only)
  janus)            # bench/tests/smoke.rs: one tiny scenario against Janus 1.1.2's videoroom
bench_pkgs=(janus iproute2 util-linux linux-perf valgrind  # scripts/bench.sh (make bench)
  chromium chromium-driver)  # its join-time step (tests/browser/join_time.rs)

pkgs=("${run_pkgs[@]}")
[ "$what" = test ] && pkgs+=("${test_pkgs[@]}")
[ "$what" = bench ] && pkgs+=("${bench_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "deps: all ${#pkgs[@]} packages present"
fi

if [ "$what" = test ] && ! command -v geckodriver >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/geckodriver" ]; then
  echo "deps: cargo install geckodriver"
  cargo install --quiet --locked geckodriver
fi

if [ "$what" = test ] && ! command -v cargo-deb >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-deb" ]; then
  echo "deps: cargo install cargo-deb"
  cargo install --quiet --locked cargo-deb
fi
