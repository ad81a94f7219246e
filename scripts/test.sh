#!/usr/bin/env bash
# Runs every test: formatting, clippy, unit tests, and the root integration tests in
# network namespaces (veth pairs the tests create and remove; vblade and aoetools as
# reference peers), and builds the Debian package that tests/package.rs checks and installs
# into a throwaway root. Installs what the tests need when missing (cargo-deb included).
#
#   sudo ./scripts/test.sh
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
cd "$REPO"

need_root "test.sh"
ensure_packages "${XBLADE_BUILD_PACKAGES[@]}" "${XBLADE_PACKAGE_PACKAGES[@]}" \
    vblade aoetools tshark btrfs-progs kmod strace systemd man-db passwd
find_cargo
ensure_cargo_deb

log "cargo fmt --check"
cargo_run fmt --all -- --check
log "cargo clippy -D warnings"
cargo_run clippy --workspace --all-targets --locked -- -D warnings
log "building release binaries (integration tests run them)"
cargo_run build --release --locked -p xblade -p aoe-initiator
log "building the Debian package (tests/package.rs checks it)"
XBLADE_DEB=$("$REPO/scripts/package.sh" | tail -n 1)
export XBLADE_DEB
log "cargo test (unit + namespace integration tests)"
LOG=$(mktemp /tmp/xblade-test.XXXXXX)
trap 'rm -f "$LOG"' EXIT
set +e
XBLADE_BIN="$REPO/target/release/xblade" cargo_run test --workspace --all-targets --locked -- --test-threads=2 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run: the sum of every test binary's result line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$LOG"
exit "$status"
