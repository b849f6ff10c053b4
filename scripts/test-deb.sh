#!/usr/bin/env bash
# Builds the Debian package from the dev-profile binary that `make test` already
# built (no release build), installs it into a throwaway root with `dpkg --root`,
# and checks that the files, the unit, the conffile and the Depends field are where
# docs/deploy.md says, and that `systemd-analyze verify` accepts the unit.
# Fails (non-zero exit) on the first problem.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }

command -v cargo-deb >/dev/null || fail "cargo-deb missing (scripts/deps.sh test installs it)"
[ -x target/debug/fengqiao ] || cargo build --locked --bin fengqiao

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --profile dev: the target/release/fengqiao asset is taken from target/debug.
deb=$(cargo deb --no-build --profile dev --strip --fast --output "$work" 2>"$work/cargo-deb.log" | tail -n1) ||
  { cat "$work/cargo-deb.log" >&2; fail "cargo deb"; }
[ -f "$deb" ] || { cat "$work/cargo-deb.log" >&2; fail "no .deb at '$deb'"; }
echo "test-deb: built $deb"

# Control fields.
info=$(dpkg-deb -f "$deb")
echo "$info" | grep -q '^Package: fengqiao$' || fail "Package field: $info"
deps=$(dpkg-deb -f "$deb" Depends)
for p in libgstreamer1.0-0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad xorriso libc6; do
  echo "$deps" | tr ',' '\n' | sed 's/^ *//; s/ .*//' | grep -qx "$p" || fail "Depends lacks $p: $deps"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/fengqiao/fengqiao.toml ||
  fail "/etc/fengqiao/fengqiao.toml is not a conffile"

# Install into a throwaway root. The package has no maintainer scripts, so dpkg
# needs no base system there; the runtime dependencies are not in that root.
root="$work/root"
mkdir -p "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/info"
touch "$root/var/lib/dpkg/status"
dpkg --root="$root" --force-depends --force-not-root --log=/dev/null -i "$deb" >"$work/dpkg.log" 2>&1 ||
  { cat "$work/dpkg.log" >&2; fail "dpkg --root -i"; }
dpkg --root="$root" -s fengqiao | grep -q '^Status: install ok installed$' || fail "not installed"

for f in usr/bin/fengqiao usr/lib/systemd/system/fengqiao.service etc/fengqiao/fengqiao.toml \
  usr/share/doc/fengqiao/configuration.md usr/share/doc/fengqiao/deploy.md usr/share/doc/fengqiao/README.md; do
  [ -f "$root/$f" ] || fail "/$f not installed"
done
[ -x "$root/usr/bin/fengqiao" ] || fail "/usr/bin/fengqiao not executable"
unit="$root/usr/lib/systemd/system/fengqiao.service"
grep -qx 'ExecStart=/usr/bin/fengqiao serve --config /etc/fengqiao/fengqiao.toml' "$unit" || fail "ExecStart"
for k in DynamicUser=yes StateDirectory=fengqiao ConfigurationDirectory=fengqiao ProtectSystem=strict \
  NoNewPrivileges=yes PrivateTmp=yes; do
  grep -qx "$k" "$unit" || fail "unit lacks $k"
done

# The installed binary runs, and the packaged config is print-default with the
# packaged data folder, and loads.
"$root/usr/bin/fengqiao" --version >/dev/null || fail "fengqiao --version"
grep -qx 'data_dir = "/var/lib/fengqiao"' "$root/etc/fengqiao/fengqiao.toml" || fail "packaged data_dir"
diff <("$root/usr/bin/fengqiao" config print-default | grep -v '^data_dir = \|^# Unit: path\. ') \
  <(grep -v '^data_dir = \|^# Unit: path\. ' "$root/etc/fengqiao/fengqiao.toml" | sed '1,4d') ||
  fail "packaging/fengqiao.toml drifted from 'fengqiao config print-default' (regenerate it)"
FENGQIAO_DATA_DIR="$work/data" "$root/usr/bin/fengqiao" db migrate --config "$root/etc/fengqiao/fengqiao.toml" \
  >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log" >&2; fail "the packaged config does not load"; }

# systemd accepts the unit, verified inside the throwaway root (so ExecStart is the
# installed binary), with the host's targets copied in for its dependencies.
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (apt install systemd)"
cp -n /usr/lib/systemd/system/*.target "$root/usr/lib/systemd/system/"
systemd-analyze verify --root="$root" /usr/lib/systemd/system/fengqiao.service >"$work/verify.log" 2>&1 ||
  { cat "$work/verify.log" >&2; fail "systemd-analyze verify"; }
if grep -i 'fengqiao.service' "$work/verify.log"; then fail "systemd-analyze verify warned about the unit"; fi
echo "test-deb: ok ($(basename "$deb"): files, conffile, unit, Depends, systemd-analyze verify)"
