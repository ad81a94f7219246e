#!/usr/bin/env bash
# Builds the Debian package xblade_VERSION_ARCH.deb (and xblade-dbgsym_VERSION_ARCH.ddeb with
# the binaries' debug info): release binaries, man pages and shell completions generated from
# the clap definitions (xblade-assets, into packaging/generated), then `cargo deb`. Installs
# cargo-deb (pinned in scripts/lib.sh) and the Debian tools it needs when missing. Prints the
# .deb's path as the last line of standard output.
#
#   ./scripts/package.sh [OUTDIR]      # default OUTDIR: target/debian
#   sudo dpkg -i "$(./scripts/package.sh | tail -n 1)"
#
# The binaries name the git revision they are built from (xblade --version); outside a git
# checkout set XBLADE_GIT_REV. The pages' date is the commit's (or SOURCE_DATE_EPOCH's).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
OUT_DIR=$(realpath -m "${1:-$REPO/target/debian}")
cd "$REPO"

TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
GENERATED=$REPO/packaging/generated

ensure_packages "${XBLADE_BUILD_PACKAGES[@]}" "${XBLADE_PACKAGE_PACKAGES[@]}"
find_cargo
ensure_cargo_deb

log "building xblade, xbladectl and xblade-assets (release)"
cargo_run build --release --locked -p xblade -p xblade-assets >&2

if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    page_date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%F)
elif ! page_date=$(git -C "$REPO" log -1 --format=%cs 2>/dev/null); then
    page_date=$(date -u +%F)
fi
log "generating man pages and completions into packaging/generated"
"$TARGET_DIR/release/xblade-assets" --date "$page_date" "$GENERATED"

log "cargo deb"
# cargo deb prints the path of each package it writes: the .ddeb's, then the .deb's.
written=$(cargo_run deb -p xblade --no-build --locked --dbgsym --output "$OUT_DIR")
deb=$(printf '%s\n' "$written" | grep '\.deb$' | tail -n 1) || true
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
    die "cargo deb wrote no .deb (it printed: $written)"
fi
printf '%s\n' "$written" | grep -v '\.deb$' | sed 's/^/also built /' >&2 || true
echo "$deb"
