#!/usr/bin/env bash
# Export a disk image over AoE with xblade, or (with no arguments) run a self-contained demo.
#
#   sudo ./scripts/run.sh IFACE IMAGE [SHELF [SLOT]] [-- XBLADE_OPTIONS...]
#   sudo ./scripts/run.sh            # demo on a throwaway veth pair with a generated image
#
# Installs what the build needs (clang, libbpf-dev) when missing, builds release, and runs
# xblade in the foreground; Ctrl-C stops it cleanly and prints a summary.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

case "${1:-}" in
    -h|--help) usage 0 ;;
esac

if [ $# -eq 0 ]; then
    exec "$REPO/scripts/demo.sh"
fi

[ $# -ge 2 ] || usage 2
IFACE=$1 IMAGE=$2
shift 2
SHELF=1 SLOT=0
if [ $# -gt 0 ] && [ "$1" != "--" ]; then SHELF=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != "--" ]; then SLOT=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi

need_root "run.sh"
[ -e "/sys/class/net/$IFACE" ] || die "no such network interface '$IFACE' (see: ip link)"
[ -e "$IMAGE" ] || die "$IMAGE: no such file (create one with: truncate -s 1G $IMAGE)"
build_release
log "exporting $IMAGE as e$SHELF.$SLOT on $IFACE (Ctrl-C to stop)"
exec "$XBLADE" "$@" "$SHELF" "$SLOT" "$IFACE" "$IMAGE"
