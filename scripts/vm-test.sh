#!/usr/bin/env bash
# The real-initiator test: the Linux kernel's AoE driver, in a qemu (TCG) guest, formats,
# fills and checks an ext4 filesystem on an xblade export.
#
#   sudo ./scripts/vm-test.sh                # one NIC
#   sudo ./scripts/vm-test.sh --multipath    # two NICs, one of them taken down mid-write
#
# A throwaway network namespace holds a tap device; xblade serves a sparse 256 MiB image on
# it as e1.0 and qemu joins the guest's only NIC (virtio-net) to it. The guest (Debian 12
# kernel, busybox, e2fsprogs; see tests/vm/) loads aoe.ko, discovers e1.0, runs mkfs.ext4,
# mounts it, writes files, records their sha256, unmounts, runs e2fsck -f -n (must be clean),
# remounts, checks every sum and prints XBLADE-VM-RESULT: PASS|FAIL. The host then checks the
# marker, the daemon's summary (reads and writes served, no errors, clean exit), and the image
# file itself (e2fsck -f -n, and each file's sha256 read back with debugfs).
# Prints "vm-test: PASS" last and exits 0, or exits non-zero with the evidence.
#
# --multipath (or XBLADE_VM_MULTIPATH=1): AoE multipath. Two taps in the namespace, the guest
# gets two virtio-net NICs (distinct MACs), and xblade serves e1.0 on both from a generated
# config file (xblade --config), answering on each tap with that tap's MAC. The guest's aoe.ko
# must list both NICs in /sys/block/etherd!e1.0/netif, and both paths must have carried writes
# (aoe's per-target debugfs counters) when, half-way through the writes, the guest prints
# "XBVM-LINK-DOWN MAC": the host then takes that NIC's tap down (ip link set TAP down) and the
# guest writes on until the driver has given up on that path and moved its frames to the other
# one. The rest (fsck, checksums in the guest and on the host) is as above; the host also
# checks that xblade exported e1.0 on both taps and that both served requests.
#
# Environment:
#   XBLADE_BIN          xblade binary to test (default: build release, then target/release/xblade)
#   XBLADE_VM_CACHE     cache for the kernel, busybox and initramfs (default: target/vm-cache)
#   XBLADE_VM_TIMEOUT   seconds the guest may run (default 240)
#   XBLADE_VM_XDP_MODE  xblade --xdp-mode (default auto)
#   XBLADE_VM_PCAP      write every frame of the guest's NIC, both ways, to this pcap file
#                       (multipath: one file per NIC, FILE without .pcap + .nicN.pcap)
#   XBLADE_VM_MULTIPATH 1: the same as --multipath
#   XBLADE_VM_KEEP      keep the work dir (console log, daemon log, image) in this directory
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
MULTIPATH=${XBLADE_VM_MULTIPATH:-0}
for arg in "$@"; do
    case "$arg" in
        --multipath) MULTIPATH=1 ;;
        *) die "unknown argument '$arg' (usage: vm-test.sh [--multipath])" ;;
    esac
done
case "$MULTIPATH" in 0 | 1) ;; *) die "XBLADE_VM_MULTIPATH=$MULTIPATH: use 0 or 1" ;; esac
need_root "vm-test.sh"

TIMEOUT=${XBLADE_VM_TIMEOUT:-240}
XDP_MODE=${XBLADE_VM_XDP_MODE:-auto}
SHELF=1 SLOT=0
IMAGE_MIB=256
MARKER="XBLADE-VM-RESULT:"
STARTED=$SECONDS

ID="xbvm$$"
NS="$ID"
# The guest's NIC i is joined to TAPS[i] and has the MAC guest_mac i.
if [ "$MULTIPATH" -eq 1 ]; then
    TAPS=("${ID}tapa" "${ID}tapb")
else
    TAPS=("${ID}tap")
fi
TAP=${TAPS[0]}
guest_mac() { printf '52:54:00:a0:e1:%02x\n' "$1"; }
# Where XBLADE_VM_PCAP's frames of NIC i go.
pcap_file() {
    if [ "$MULTIPATH" -eq 1 ]; then echo "${XBLADE_VM_PCAP%.pcap}.nic$1.pcap"; else echo "$XBLADE_VM_PCAP"; fi
}
LINK_DOWN_TAP="" # multipath: the tap the host took down when the guest asked
WORK=$(mktemp -d /tmp/xblade-vm.XXXXXX)
QEMU_PID="" DAEMON_PID="" DAEMON_RC="" SUMMARY_SHOWN=0 NS_CREATED=0
DAEMON_HUNG=0
stop_daemon() { # SIGTERM, then up to 15 s for the summary; SIGKILL after that
    if [ -n "$DAEMON_PID" ]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$DAEMON_PID" 2>/dev/null; then
            DAEMON_HUNG=1
            kill -KILL "$DAEMON_PID" 2>/dev/null || true
        fi
        DAEMON_RC=0
        wait "$DAEMON_PID" 2>/dev/null || DAEMON_RC=$?
        DAEMON_PID=""
    fi
}
cleanup() {
    local rc=$?
    set +e
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill -TERM "$QEMU_PID"
        for _ in $(seq 20); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$QEMU_PID" 2>/dev/null
        wait "$QEMU_PID" 2>/dev/null
    fi
    stop_daemon
    if [ "$SUMMARY_SHOWN" -eq 0 ] && [ -s "$WORK/xblade.out" ]; then
        echo "xblade output:" >&2
        sed 's/^/  xblade| /' "$WORK/xblade.out" >&2
    fi
    [ "$NS_CREATED" -eq 1 ] && ip netns del "$NS" 2>/dev/null
    if [ -n "${XBLADE_VM_KEEP:-}" ]; then
        mkdir -p "$XBLADE_VM_KEEP"
        cp -a "$WORK/." "$XBLADE_VM_KEEP/" && echo "vm-test: work files kept in $XBLADE_VM_KEEP" >&2
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

elapsed() { echo "$((SECONDS - STARTED))s"; }
fail() {
    printf 'vm-test: FAIL: %s\n' "$*"
    exit 1
}

# --- what the test needs -----------------------------------------------------------------------
# Like lib.sh's ensure_packages, without Recommends: qemu-system-x86's pull in ~140 more
# packages (GTK, gstreamer, mesa) that a headless TCG guest never uses.
ensure_packages_lean() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]} (without recommends)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}
ensure_packages_lean qemu-system-x86 e2fsprogs iproute2
if [ -n "${XBLADE_BIN:-}" ]; then
    XBLADE=$XBLADE_BIN
    [ -x "$XBLADE" ] || die "XBLADE_BIN=$XBLADE_BIN: no such executable (build it: cargo build --release -p xblade)"
else
    build_release
fi
log "[$(elapsed)] guest: kernel and initramfs (cache: ${XBLADE_VM_CACHE:-$REPO/target/vm-cache})"
mapfile -t guest < <("$REPO/tests/vm/build-guest.sh")
KERNEL=${guest[0]:-} INITRD=${guest[1]:-}
[ -s "$KERNEL" ] && [ -s "$INITRD" ] || die "tests/vm/build-guest.sh gave no kernel/initramfs"
CACHE_DIR=$(dirname "$INITRD")
log "[$(elapsed)] guest kernel: $(cat "$(dirname "$KERNEL")/PACKAGE"); $(cat "$CACHE_DIR/busybox.PACKAGE" 2>/dev/null); e2fsprogs $(dpkg-query -W -f='${Version}' e2fsprogs)"

# --- lab: a namespace with a tap (two for multipath), xblade on it ------------------------------
if [ "$MULTIPATH" -eq 1 ]; then
    log "[$(elapsed)] lab: namespace $NS, taps ${TAPS[*]} (MTU 1500)"
else
    log "[$(elapsed)] lab: namespace $NS, tap $TAP (MTU 1500)"
fi
ip netns add "$NS" || die "cannot create network namespace $NS"
NS_CREATED=1
ip -n "$NS" link set lo up
for tap in "${TAPS[@]}"; do
    ip netns exec "$NS" ip tuntap add dev "$tap" mode tap
    ip -n "$NS" link set "$tap" mtu 1500 up
    # Keep the link quiet: no IPv6 autoconfiguration traffic from the host side of the tap.
    ip netns exec "$NS" sysctl -qw "net.ipv6.conf.$tap.disable_ipv6=1" || true
done

IMAGE="$WORK/disk.img"
truncate -s "${IMAGE_MIB}M" "$IMAGE"
SECTORS=$((IMAGE_MIB * 2048))
if [ "$MULTIPATH" -eq 1 ]; then
    # One export on both taps: each answers with its own MAC, which is AoE multipath.
    CONFIG="$WORK/xblade.toml"
    mkdir -p "$WORK/state"
    {
        echo "[defaults]"
        echo "control = \"$WORK/control.sock\""
        echo "state_dir = \"$WORK/state\""
        echo "xdp_mode = \"$XDP_MODE\""
        echo
        echo "[[export]]"
        echo "shelf = $SHELF"
        echo "slot = $SLOT"
        echo "file = \"$IMAGE\""
        printf 'interfaces = [%s]\n' "$(printf '"%s", ' "${TAPS[@]}" | sed 's/, $//')"
    } >"$CONFIG"
    log "[$(elapsed)] starting: xblade --config $CONFIG (${IMAGE_MIB} MiB, sparse):"
    sed 's/^/  config| /' "$CONFIG" >&2
    XBLADE_ARGS=(--config "$CONFIG")
    STARTED_RE=' ready( |$)' # after the "exporting ... iface=TAP" line of every tap
else
    log "[$(elapsed)] starting: xblade --xdp-mode $XDP_MODE $SHELF $SLOT $TAP $IMAGE (${IMAGE_MIB} MiB, sparse)"
    XBLADE_ARGS=(--xdp-mode "$XDP_MODE" "$SHELF" "$SLOT" "$TAP" "$IMAGE")
    STARTED_RE='exporting'
fi
ip netns exec "$NS" "$XBLADE" "${XBLADE_ARGS[@]}" >"$WORK/xblade.out" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do
    grep -Eq "$STARTED_RE" "$WORK/xblade.out" 2>/dev/null && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { wait "$DAEMON_PID" || true; DAEMON_PID=""; fail "xblade exited during start-up"; }
    sleep 0.1
done
grep -Eq "$STARTED_RE" "$WORK/xblade.out" || fail "xblade did not start serving within 10 s"
XDP_USED=$({ grep -o 'xdp=[a-z]*' "$WORK/xblade.out" | head -n 1 | cut -d= -f2; } || true)
BIND=$({ grep -o 'bind_mode=[a-z-]*' "$WORK/xblade.out" | head -n 1 | cut -d= -f2; } || true)
if [ "$MULTIPATH" -eq 1 ]; then
    served=()
    for tap in "${TAPS[@]}"; do
        mac=$({ grep "exporting .* as e$SHELF\.$SLOT .*iface=$tap " "$WORK/xblade.out" | grep -o 'mac=[0-9a-f:]*' | head -n 1 | cut -d= -f2; } || true)
        [ -n "$mac" ] || fail "xblade is ready but logged no 'exporting ... as e$SHELF.$SLOT ... iface=$tap'"
        served+=("$tap (mac $mac)")
    done
    log "[$(elapsed)] xblade serving e$SHELF.$SLOT on ${served[*]}: XDP ${XDP_USED:-?} mode, AF_XDP bind ${BIND:-?}"
else
    log "[$(elapsed)] xblade serving e$SHELF.$SLOT on $TAP: XDP ${XDP_USED:-?} mode, AF_XDP bind ${BIND:-?}"
fi

# --- the guest -----------------------------------------------------------------------------------
GUEST_DEADLINE=$((TIMEOUT > 30 ? TIMEOUT - 15 : TIMEOUT))
APPEND="console=ttyS0 quiet panic=-1 xbvm.shelf=$SHELF xbvm.slot=$SLOT xbvm.sectors=$SECTORS xbvm.deadline=$GUEST_DEADLINE"
[ "$MULTIPATH" -eq 1 ] && APPEND+=" xbvm.nics=${#TAPS[@]}"
QEMU=(qemu-system-x86_64 -accel tcg -machine pc -cpu max -m 512 -smp 1
    -nodefaults -no-user-config -display none -monitor none -no-reboot
    -serial "file:$WORK/console.log"
    -kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND")
for i in "${!TAPS[@]}"; do
    QEMU+=(-netdev "tap,id=n$i,ifname=${TAPS[$i]},script=no,downscript=no"
        -device "virtio-net-pci,netdev=n$i,mac=$(guest_mac "$i"),romfile=")
done
if [ -n "${XBLADE_VM_PCAP:-}" ]; then
    for i in "${!TAPS[@]}"; do
        QEMU+=(-object "filter-dump,id=dump$i,netdev=n$i,file=$(pcap_file "$i")")
    done
fi
log "[$(elapsed)] booting the guest (qemu TCG, timeout ${TIMEOUT}s)"
: >"$WORK/console.log"
ip netns exec "$NS" "${QEMU[@]}" </dev/null >"$WORK/qemu.out" 2>&1 &
QEMU_PID=$!

# Stream the serial console while the guest runs.
shown=0
show_console() {
    local lines
    lines=$(wc -l <"$WORK/console.log")
    if [ "$lines" -gt "$shown" ]; then
        sed -n "$((shown + 1)),${lines}p" "$WORK/console.log" | tr -d '\r' \
            | { grep -v '^XBVM-SUM ' || true; } | sed 's/^/  guest| /'
        shown=$lines
    fi
}
# Multipath: when the guest prints "XBVM-LINK-DOWN MAC", take the tap of that NIC down.
take_link_down() {
    local mac i
    mac=$(tr -d '\r' <"$WORK/console.log" | sed -n 's/^XBVM-LINK-DOWN //p' | head -n 1)
    [ -n "$mac" ] || return 0
    LINK_DOWN_TAP="?"
    for i in "${!TAPS[@]}"; do
        if [ "$(guest_mac "$i")" = "$mac" ]; then
            if ip -n "$NS" link set "${TAPS[$i]}" down; then
                LINK_DOWN_TAP=${TAPS[$i]}
                log "[$(elapsed)] host: the guest asked; took ${TAPS[$i]} (the path of its NIC $mac) down"
            else
                log "[$(elapsed)] host: ip -n $NS link set ${TAPS[$i]} down failed"
            fi
            return 0
        fi
    done
    log "[$(elapsed)] host: the guest asked to take down the path of NIC $mac, which is none of ours"
}
POLL=1
[ "$MULTIPATH" -eq 1 ] && POLL=0.2 # take the link down promptly, while the guest writes
deadline=$((SECONDS + TIMEOUT))
timed_out=0
while kill -0 "$QEMU_PID" 2>/dev/null; do
    show_console
    if [ "$MULTIPATH" -eq 1 ] && [ -z "$LINK_DOWN_TAP" ]; then take_link_down; fi
    if [ "$SECONDS" -ge "$deadline" ]; then timed_out=1; break; fi
    sleep "$POLL"
done
show_console
if [ "$timed_out" -eq 1 ]; then
    kill -KILL "$QEMU_PID" 2>/dev/null || true
fi
QEMU_RC=0
wait "$QEMU_PID" || QEMU_RC=$?
QEMU_PID=""
[ -s "$WORK/qemu.out" ] && sed 's/^/  qemu| /' "$WORK/qemu.out"
log "[$(elapsed)] guest stopped (qemu exit $QEMU_RC)"
for i in "${!TAPS[@]}"; do
    [ -n "${XBLADE_VM_PCAP:-}" ] || break
    pcap=$(pcap_file "$i")
    [ -s "$pcap" ] || continue
    # qemu before 8.1 dumps each frame with the tap's 12-byte virtio-net header in front.
    qv=$(qemu-system-x86_64 --version | grep -o 'version [0-9]*\.[0-9]*' | cut -d' ' -f2)
    if [ "${qv%%.*}" -lt 8 ] || [ "$qv" = 8.0 ]; then
        if command -v editcap >/dev/null 2>&1; then
            editcap -C 12 "$pcap" "$pcap.tmp" && mv "$pcap.tmp" "$pcap"
        else
            log "note: $pcap has a 12-byte virtio-net header before each frame (editcap -C 12 strips it)"
        fi
    fi
    if [ "$MULTIPATH" -eq 1 ]; then
        log "frames of the guest's NIC $i ($(guest_mac "$i"), ${TAPS[$i]}; both ways): $pcap"
    else
        log "frames of the guest's NIC (both ways): $pcap"
    fi
done

# --- verdict -------------------------------------------------------------------------------------
stop_daemon
SUMMARY_SHOWN=1
log "xblade exit $DAEMON_RC; its output:"
sed 's/^/  xblade| /' "$WORK/xblade.out"

problems=()
[ "$timed_out" -eq 0 ] || problems+=("the guest did not finish within ${TIMEOUT}s")
result=$(tr -d '\r' <"$WORK/console.log" | sed -n "s/^$MARKER //p" | tail -n 1)
case "$result" in
    PASS) ;;
    FAIL) problems+=("the guest reported FAIL (see its console above)") ;;
    *) problems+=("the guest printed no $MARKER line") ;;
esac
[ "$DAEMON_HUNG" -eq 0 ] || problems+=("xblade did not exit within 15 s of SIGTERM (killed)")
[ "${DAEMON_RC:-1}" -eq 0 ] || problems+=("xblade exited with status $DAEMON_RC")

# The daemon's summary: "requests N (reads N, writes N, ...)" and "errors ata N, aoe N,
# disk i/o N"; every count must be there (summary_problems in lib.sh: a missing count is a
# problem, never a 0).
while IFS= read -r p; do
    [ -z "$p" ] || problems+=("$p")
done < <(summary_problems "$WORK/xblade.out")
summary_problems "$WORK/xblade.out" >/dev/null # again in this shell, for SUMMARY_*
reads=$SUMMARY_READS writes=$SUMMARY_WRITES ata_err=$SUMMARY_ATA aoe_err=$SUMMARY_AOE io_err=$SUMMARY_IO
if grep -q ' ERROR ' "$WORK/xblade.out"; then
    problems+=("xblade logged errors: $(grep ' ERROR ' "$WORK/xblade.out" | head -n 3 | tr '\n' ' ')")
fi
if [ "$MULTIPATH" -eq 1 ]; then
    console() { tr -d '\r' <"$WORK/console.log"; }
    case "$LINK_DOWN_TAP" in
        "") problems+=("the guest never asked for a link to go down (no XBVM-LINK-DOWN line)") ;;
        "?") problems+=("no tap was taken down (see above)") ;;
    esac
    netif=$({ console | sed -n 's/^XBVM-NETIF //p' | tail -n 1; } || true)
    if [ "$(echo "$netif" | tr ',' '\n' | grep -c .)" -ne "${#TAPS[@]}" ]; then
        problems+=("the guest's /sys/block/etherd!e$SHELF.$SLOT/netif is '${netif:-not printed}', not ${#TAPS[@]} interfaces")
    fi
    # "queues  q0: N requests; q0: M requests;": one RX queue per tap here.
    per_queue=$({ sed -n '/^xblade summary/,$p' "$WORK/xblade.out" | grep -o 'q[0-9]*: [0-9]* requests' | awk '{print $2}' | tr '\n' ' '; } || true)
    read -ra per_queue_n <<<"$per_queue"
    if [ "${#per_queue_n[@]}" -ne "${#TAPS[@]}" ]; then
        problems+=("xblade's summary lists ${#per_queue_n[@]} queues (${per_queue:-none}), expected one per tap (${#TAPS[@]})")
    else
        for n in "${per_queue_n[@]}"; do
            [ "$n" -gt 0 ] || problems+=("a tap's worker served no requests (per-queue requests: $per_queue)")
        done
    fi
    failover=$({ console | grep -o 'failover: .* chunks of .*' | tail -n 1; } || true)
fi
# Warnings (e.g. frames the AF_XDP socket dropped: the initiator retransmits) don't fail the
# test, but they are worth a look.
{ grep ' WARN ' "$WORK/xblade.out" | head -n 5 | sed 's/^/vm-test: note: xblade warned: /'; } || true

# The image file itself: a clean filesystem holding exactly what the guest wrote.
if [ "$result" = PASS ]; then
    log "[$(elapsed)] host: e2fsck -f -n on the image file"
    if e2fsck -f -n "$IMAGE" >"$WORK/e2fsck.out" 2>&1; then
        tail -n 1 "$WORK/e2fsck.out" | sed 's/^/  host| /'
    else
        sed 's/^/  host| /' "$WORK/e2fsck.out"
        problems+=("e2fsck -f -n on the host's image file is not clean")
    fi
    tr -d '\r' <"$WORK/console.log" | sed -n 's/^XBVM-SUM //p' >"$WORK/sums"
    nsums=$(wc -l <"$WORK/sums")
    bad=0
    while read -r sum path; do
        got=$(debugfs -R "cat /${path#./}" "$IMAGE" 2>/dev/null | sha256sum | cut -d' ' -f1)
        if [ "$got" != "$sum" ]; then
            bad=$((bad + 1))
            echo "  host| ${path#./}: sha256 $got in the image, the guest wrote $sum"
        fi
    done <"$WORK/sums"
    if [ "$nsums" -eq 0 ]; then
        problems+=("the guest printed no checksums")
    elif [ "$bad" -gt 0 ]; then
        problems+=("$bad of $nsums files in the host's image differ from what the guest wrote")
    else
        log "host: all $nsums files in the image match the guest's sha256sums (debugfs)"
    fi
fi

log "[$(elapsed)] summary: guest ${result:-no result}; xblade XDP ${XDP_USED:-?}, reads ${reads:-?}, writes ${writes:-?}, errors ata ${ata_err:-?} aoe ${aoe_err:-?} disk i/o ${io_err:-?}"
if [ "$MULTIPATH" -eq 1 ]; then
    log "multipath: netif ${netif:-?}; requests per tap ${per_queue:-?}; ${LINK_DOWN_TAP:-no tap} taken down; ${failover:-no failover line from the guest}"
fi
if [ ${#problems[@]} -gt 0 ]; then
    for p in "${problems[@]}"; do echo "vm-test: problem: $p"; done
    fail "${#problems[@]} problem(s) (in $(elapsed))"
fi
if [ "$MULTIPATH" -eq 1 ]; then
    echo "vm-test: PASS (Linux aoe initiator, multipath: ext4 on e$SHELF.$SLOT over ${#TAPS[@]} paths, XDP $XDP_USED, $LINK_DOWN_TAP taken down mid-write, in $(elapsed))"
else
    echo "vm-test: PASS (Linux aoe initiator, ext4 on e$SHELF.$SLOT over XDP $XDP_USED, in $(elapsed))"
fi
