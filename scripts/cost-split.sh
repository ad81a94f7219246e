#!/usr/bin/env bash
# What xblade itself costs per request: splits the target's CPU per request into the
# kernel's share (veth, skb, copy-mode AF_XDP: what a zero-copy NIC removes) and xblade's
# own (parse, decide, plan, complete, ring work), with perf, on the null backend.
#
#   sudo ./scripts/cost-split.sh [--qd LIST] [--ops LIST] [--duration S] [--repeat N]
#                                [--variants LIST] [--xblade PATH] [--bench PATH] [--out DIR]
#
#   --qd LIST       queue depths, comma-separated (default 64)
#   --ops LIST      read, write or both (default read,write: reads, then writes)
#   --duration S    measured seconds per run (default 5; 1 s warm-up before)
#   --repeat N      repetitions of every case (default 3; the summary shows the median and
#                   the spread, min..max)
#   --variants LIST which xblade command lines: default (xblade's defaults: adaptive spin,
#                   --spin-us 50) and/or event (--spin-us 0: sleeps as soon as there is no
#                   work, so no userspace sample is idle polling) (default: default,event)
#   --xblade PATH   the xblade binary (default target/release/xblade of this tree)
#   --bench PATH    the xblade-bench binary (default target/release/xblade-bench)
#   --keep-perf     keep every run's perf.data (for perf annotate / perf report); they are
#                   large, so by default they are removed once classified
#   --out DIR       where the logs go (default results/cost-split-DATE); the binaries are
#                   copied into DIR/bin first, so a rebuild during the run changes nothing
#
# Per run: a fresh pair of namespaces and one veth pair with one queue each, MTU 1500
# (unique names, removed on every exit); xblade on CPU 1 (`taskset -c 1`, --no-state
# --no-pin) exporting null:1G (reads zeros, discards writes: no storage work at all);
# xblade-bench on CPU 0 (1 KiB random requests, closed loop at the QD, --spin-us 50 as in
# bench.sh). Over the generator's measured window:
#   - the target's CPU per request: utime + stime from /proc/PID/stat at the window's start
#     and end (xblade-bench --target-pid), over the requests completed in it;
#   - `perf record -e cpu-clock -F 4999 -g -p PID` (only the target's threads; this VM has
#     no hardware PMU, so cpu-clock sampling; kernel stacks are exact, userspace is
#     classified by its leaf symbol), from 0.2 s after the window opens to 0.2 s before
#     it closes;
#   - `perf stat -e syscalls:sys_enter_*` for sendto, io_uring_enter, poll, ppoll, recvfrom
#     on the same PID and window: syscalls per request.
# scripts/cost_split.py classifies every sample (its docstring is the symbol -> bucket
# mapping) and prints a table per run: % of the target's sampled CPU and µs per request
# (share x the /proc figure), with the top symbols of every bucket, the "other" ones
# included, so nothing is hidden; then a summary over the repetitions.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

QDS=64 OPS=read,write DURATION=5 WARMUP=1 REPEAT=3 VARIANTS=default,event OUT=""
XBLADE="$REPO/target/release/xblade" BENCH="$REPO/target/release/xblade-bench"
GEN_SPIN_US=50 FREQ=4999 KEEP_PERF=0
while [ $# -gt 0 ]; do
    case "$1" in
        --qd) QDS=$2; shift ;;
        --ops) OPS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        --variants) VARIANTS=$2; shift ;;
        --xblade) XBLADE=$2; shift ;;
        --bench) BENCH=$2; shift ;;
        --out) OUT=$2; shift ;;
        --keep-perf) KEEP_PERF=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
need_root "cost-split.sh"
for b in "$XBLADE" "$BENCH"; do [ -x "$b" ] || die "$b: not an executable (build with cargo build --release -p xblade -p xblade-bench, or pass --xblade/--bench)"; done
command -v perf >/dev/null || die "perf not found (apt-get install linux-perf)"
[ "$DURATION" -ge 2 ] || die "--duration must be at least 2 s (perf records the window minus 0.4 s)"
for op in ${OPS//,/ }; do case $op in read|write) ;; *) die "unknown op $op (read, write)" ;; esac; done
for v in ${VARIANTS//,/ }; do case $v in default|event) ;; *) die "unknown variant $v (default, event)" ;; esac; done
OUT=${OUT:-$REPO/results/cost-split-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/runs" "$OUT/bin"
# Copies: a rebuild of the tree during the run then changes nothing.
cp "$XBLADE" "$OUT/bin/xblade"
cp "$BENCH" "$OUT/bin/xblade-bench"
XBLADE_SRC=$XBLADE BENCH_SRC=$BENCH
XBLADE="$OUT/bin/xblade" BENCH="$OUT/bin/xblade-bench"

ID="xcs$$"
NS_T="$ID-t" NS_C="$ID-c" IF_T="${ID}t" IF_C="${ID}c"
TARGET_PID=""
cleanup() {
    set +e
    if [ -n "$TARGET_PID" ] && kill -0 "$TARGET_PID" 2>/dev/null; then
        kill -TERM "$TARGET_PID"
        wait "$TARGET_PID" 2>/dev/null
    fi
    ip netns del "$NS_T" 2>/dev/null
    ip netns del "$NS_C" 2>/dev/null
}
trap cleanup EXIT INT TERM

# The lab: as bench.sh's, with one queue, MTU 1500.
make_lab() { veth_lab "$NS_T" "$NS_C" "$IF_T" "$IF_C" 1500 1; }

start_xblade() {
    local log=$1
    shift
    ip netns exec "$NS_T" taskset -c 1 "$XBLADE" --no-state --no-pin "$@" 1 0 "$IF_T" null:1G >"$log" 2>&1 &
    TARGET_PID=$!
    for _ in $(seq 100); do
        grep -q exporting "$log" 2>/dev/null && return 0
        kill -0 "$TARGET_PID" 2>/dev/null || { cat "$log" >&2; die "xblade exited"; }
        sleep 0.05
    done
    die "xblade did not come up (see $log)"
}

stop_xblade() {
    kill -TERM "$TARGET_PID"
    wait "$TARGET_PID" 2>/dev/null || true
    TARGET_PID=""
}

# measure NAME QD READPCT SETTINGS REP
measure() {
    local name=$1 qd=$2 rpct=$3 settings=$4 rep=$5 base="$OUT/runs/$1-$5" rc=0
    local perf_s
    perf_s=$(python3 -c "print($DURATION - 0.4)")
    ip netns exec "$NS_C" taskset -c 0 "$BENCH" --iface "$IF_C" --shelf 1 --slot 0 \
        --queue-depth "$qd" --read-pct "$rpct" --warmup-s "$WARMUP" --duration-s "$DURATION" \
        --spin-us "$GEN_SPIN_US" --target-pid "$TARGET_PID" --quiet --json "$base.bench.json" \
        >/dev/null 2>"$base.bench.err" &
    local gen=$!
    # The generator's window opens after discovery (milliseconds) and the warm-up.
    sleep "$(python3 -c "print($WARMUP + 0.2)")"
    perf record -q -e cpu-clock -F "$FREQ" -g -p "$TARGET_PID" -o "$base.perf.data" -- sleep "$perf_s" 2>"$base.perf.err" &
    local rec=$!
    perf stat -x, -e syscalls:sys_enter_sendto,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_poll,syscalls:sys_enter_ppoll,syscalls:sys_enter_recvfrom \
        -p "$TARGET_PID" -- sleep "$perf_s" 2>"$base.syscalls.csv" >/dev/null &
    local st=$!
    wait "$rec" || die "$name: perf record failed ($(cat "$base.perf.err"))"
    wait "$st" || die "$name: perf stat failed ($(cat "$base.syscalls.csv"))"
    wait "$gen" || rc=$?
    [ "$rc" -eq 0 ] || die "$name: xblade-bench exited $rc ($(tail -n 3 "$base.bench.err" | tr '\n' ' '))"
    # "COUNT,,syscalls:sys_enter_X,..." -> "COUNT syscalls:sys_enter_X"
    awk -F, '/syscalls:/ { print $1, $3 }' "$base.syscalls.csv" >"$base.syscalls.txt"
    perf script -i "$base.perf.data" -F tid,period,ip,sym,dso 2>/dev/null >"$base.perf.txt"
    python3 - "$base.meta.json" "$name" "$rep" "$perf_s" "$settings" <<'PY'
import json, sys
path, case, rep, perf_s, settings = sys.argv[1:]
json.dump({"case": case, "rep": int(rep), "perf_seconds": float(perf_s), "settings": settings}, open(path, "w"))
PY
    python3 "$REPO/scripts/cost_split.py" run "$base.perf.txt" "$base.bench.json" "$base.syscalls.txt" \
        "$base.meta.json" "$base.split.json" | tee -a "$OUT/runs.txt"
    rm -f "$base.perf.txt"
    [ "$KEEP_PERF" -eq 1 ] || rm -f "$base.perf.data"
}

{
    echo "date: $(date -Is); kernel $(uname -r); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
    echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "xblade: $("$XBLADE" --version) sha256 $(sha256sum "$XBLADE" | cut -c1-16) (copied from $XBLADE_SRC)"
    echo "xblade-bench: sha256 $(sha256sum "$BENCH" | cut -c1-16) (copied from $BENCH_SRC)"
    echo "tree: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)"
    echo "qds=$QDS ops=$OPS duration=${DURATION}s warmup=${WARMUP}s repeat=$REPEAT variants=$VARIANTS perf -F $FREQ"
} | tee "$OUT/settings.txt"

make_lab
for rep in $(seq "$REPEAT"); do
    for variant in ${VARIANTS//,/ }; do
        flags=()
        [ "$variant" = event ] && flags=(--spin-us 0)
        log="$OUT/runs/xblade-$variant-$rep.log"
        start_xblade "$log" "${flags[@]}"
        # What xblade itself reported: XDP attach mode, AF_XDP bind mode, batch, frames.
        reported=$(grep -o -E '(xdp|xdp_mode|bind_mode|mode|frames|batch|spin_us|busy_poll|need_wakeup|engine|io_engine)=[^ ]+' "$log" | sort -u | tr '\n' ' ')
        settings="xblade ${flags[*]:-(defaults)} null:1G, CPU 1; generator CPU 0 spin 50 us; 1 KiB random; reported: $reported"
        for qd in ${QDS//,/ }; do
            for op in ${OPS//,/ }; do
                rpct=100; [ "$op" = write ] && rpct=0
                measure "$variant-$op-qd$qd" "$qd" "$rpct" "$settings" "$rep"
            done
        done
        stop_xblade
    done
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/settings.txt"
python3 "$REPO/scripts/cost_split.py" summary "$OUT"/runs/*.split.json | tee "$OUT/summary.txt"
log "logs in $OUT (settings.txt, runs.txt, summary.txt, runs/)"
