#!/usr/bin/env bash
# The self-contained demo behind `sudo ./scripts/run.sh` with no arguments: a veth pair
# between two throwaway network namespaces, a sparse image, xblade serving it on one end,
# and a client on the other that discovers, identifies, writes and reads back. Everything
# it creates is removed on exit, however it exits.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
need_root "the demo"

ID="xbd$$"
NS_T="$ID-t" NS_C="$ID-c" IF_T="${ID}t" IF_C="${ID}c"
WORK=$(mktemp -d /tmp/xblade-demo.XXXXXX)
DAEMON_PID=""
cleanup() {
    set +e
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null
    fi
    ip netns del "$NS_T" 2>/dev/null
    ip netns del "$NS_C" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

build_release

log "lab: namespaces $NS_T and $NS_C joined by veth $IF_T <-> $IF_C"
ip netns add "$NS_T"
ip netns add "$NS_C"
ip link add "$IF_T" netns "$NS_T" type veth peer name "$IF_C" netns "$NS_C"
ip -n "$NS_T" link set "$IF_T" up
ip -n "$NS_C" link set "$IF_C" up

IMAGE="$WORK/disk.img"
truncate -s 256M "$IMAGE"
log "image: $IMAGE (256 MiB, sparse)"

log "starting: xblade 1 0 $IF_T $IMAGE"
ip netns exec "$NS_T" "$XBLADE" --stats-interval 0 1 0 "$IF_T" "$IMAGE" &
DAEMON_PID=$!
client() { ip netns exec "$NS_C" "$XBLADE_CLIENT" --shelf 1 --slot 0 "$IF_C" "$@"; }
for _ in $(seq 50); do
    client discover >/dev/null 2>&1 && break
    kill -0 "$DAEMON_PID" 2>/dev/null || die "xblade exited during start-up"
    sleep 0.2
done

log "client: discover"
client discover
log "client: identify"
client identify
if command -v aoeping >/dev/null 2>&1; then
    log "aoeping (Debian aoetools) sees it too:"
    ip netns exec "$NS_C" aoeping -v 1 0 "$IF_C" | grep found
fi

log "client: write 1 MiB of random data at LBA 2048, then read it back"
head -c 1048576 /dev/urandom >"$WORK/data"
client write --lba 2048 --input "$WORK/data"
client read --lba 2048 --sectors 2048 --output "$WORK/back"
if cmp -s "$WORK/data" "$WORK/back"; then
    log "read back $(stat -c %s "$WORK/back") bytes: identical ($(sha256sum <"$WORK/back" | cut -c1-16)...)"
else
    die "read-back differs from what was written"
fi
log "client: verify 200 random writes (including the last sector)"
client verify --count 200

log "stopping xblade (SIGTERM): it finishes in-flight I/O and prints its summary"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID"
DAEMON_PID=""
log "demo done; cleaning up"
