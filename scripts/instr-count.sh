#!/usr/bin/env bash
# Instructions xblade's worker executes per request, counted by valgrind's callgrind: a
# count that does not depend on the machine's noise, its caches or the veth work in the
# kernel (callgrind sees userspace only). Pairs with scripts/cost-split.sh, which measures
# time: time per request over instructions per request is the cycles per instruction this
# machine gave xblade's own code.
#
#   sudo ./scripts/instr-count.sh [--qd N] [--ops LIST] [--duration S] [--xblade PATH]
#                                 [--bench PATH] [--out DIR] [-- XBLADE OPTIONS...]
#
#   --qd N          the generator's queue depth (default 16)
#   --ops LIST      read, write or both (default read,write), one xblade per op
#   --duration S    measured seconds (default 10; 1 s warm-up before)
#   --xblade PATH   the xblade binary (default target/release/xblade of this tree)
#   --bench PATH    the xblade-bench binary (default target/release/xblade-bench)
#   --out DIR       where the logs go (default results/instr-count-DATE)
#   -- OPTIONS      more xblade options (default --spin-us 0: event mode, so no
#                   instruction is idle polling)
#
# Per op: a fresh pair of namespaces and a veth pair (unique names, removed on every
# exit); xblade on CPU 1 under `valgrind --tool=callgrind --toggle-collect=xblade::worker::run`
# (only the worker thread's instructions, from its start), exporting null:1G (no storage
# work); xblade-bench on CPU 0, 1 KiB random requests at the QD. Once the generator is done,
# `callgrind_control --dump` writes the counts and xblade is killed (under valgrind it does
# not see SIGTERM). Requests: every reply the generator received (warm-up and discovery
# included, as the counts are). Prints instructions per request in total and for the
# functions that execute the most of them (exclusive counts; inlined code counts in its
# caller). Valgrind slows xblade down about tenfold, so its batches are larger than at
# full speed: per-batch work (a system call, a clock read) is spread over more requests.
# It also prints the worker's loop passes (calls of Worker::refill, once per pass) and the
# requests per pass: runs at two queue depths separate the per-request instructions from
# the per-pass ones (scripts/pass_fit.py; docs/PERFORMANCE.md, "Per request and per pass").
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

QD=16 OPS=read,write DURATION=10 WARMUP=1 OUT=""
XBLADE="$REPO/target/release/xblade" BENCH="$REPO/target/release/xblade-bench"
XBLADE_OPTS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --qd) QD=$2; shift ;;
        --ops) OPS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --xblade) XBLADE=$2; shift ;;
        --bench) BENCH=$2; shift ;;
        --out) OUT=$2; shift ;;
        --) shift; XBLADE_OPTS=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
[ ${#XBLADE_OPTS[@]} -gt 0 ] || XBLADE_OPTS=(--spin-us 0)
need_root "instr-count.sh"
for b in "$XBLADE" "$BENCH"; do [ -x "$b" ] || die "$b: not an executable (build with cargo build --release -p xblade -p xblade-bench, or pass --xblade/--bench)"; done
if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
    die "valgrind not found (apt-get install valgrind)"
fi
for op in ${OPS//,/ }; do case $op in read|write) ;; *) die "unknown op $op (read, write)" ;; esac; done
OUT=${OUT:-$REPO/results/instr-count-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

ID="xic$$"
NS_T="$ID-t" NS_C="$ID-c" IF_T="${ID}t" IF_C="${ID}c"
VG_PID=""
cleanup() {
    set +e
    [ -n "$VG_PID" ] && kill -KILL "$VG_PID" 2>/dev/null
    ip netns del "$NS_T" 2>/dev/null
    ip netns del "$NS_C" 2>/dev/null
}
trap cleanup EXIT INT TERM

{
    echo "date: $(date -Is); kernel $(uname -r); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
    echo "xblade: $("$XBLADE" --version) sha256 $(sha256sum "$XBLADE" | cut -c1-16) ($XBLADE)"
    echo "tree: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
    echo "qd=$QD ops=$OPS duration=${DURATION}s warmup=${WARMUP}s xblade options: ${XBLADE_OPTS[*]} null:1G; $(valgrind --version)"
} | tee "$OUT/settings.txt"

for op in ${OPS//,/ }; do
    rpct=100; [ "$op" = write ] && rpct=0
    # Names of its own for every op's lab.
    ID="xic$$${op:0:1}" NS_T="$ID-t" NS_C="$ID-c" IF_T="${ID}t" IF_C="${ID}c"
    veth_lab "$NS_T" "$NS_C" "$IF_T" "$IF_C" 1500 1
    log "$op: xblade under callgrind, QD $QD"
    # Valgrind's start-up (reading the debug info) takes seconds, sometimes tens of them.
    # It can also hang for good: valgrind 3.19 keeps its lock on the guest's threads while
    # one sleeps in io_uring_enter, so a worker that goes to sleep (event mode, nothing
    # to do yet) before the main thread has finished setting up stops the main thread
    # (seen: main waiting on valgrind's pipe lock, the worker in io_cqring_wait, no
    # "exporting" line). Such a start is killed and made again, up to 3 times.
    for attempt in 1 2 3; do
        ip netns exec "$NS_T" taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$OUT/$op.callgrind" \
            --toggle-collect='xblade::worker::run' "$XBLADE" --no-state --no-pin "${XBLADE_OPTS[@]}" 1 0 "$IF_T" null:1G \
            >"$OUT/$op.xblade.log" 2>&1 &
        VG_PID=$!
        for _ in $(seq 90); do grep -q exporting "$OUT/$op.xblade.log" && break; sleep 0.5; done
        grep -q exporting "$OUT/$op.xblade.log" && break
        log "$op: xblade did not come up under valgrind in 45 s (attempt $attempt; the start-up hang above): again"
        kill -KILL "$VG_PID" 2>/dev/null || true
        wait "$VG_PID" 2>/dev/null || true
        VG_PID=""
    done
    grep -q exporting "$OUT/$op.xblade.log" || die "xblade did not come up under valgrind (see $OUT/$op.xblade.log)"
    ip netns exec "$NS_C" taskset -c 0 "$BENCH" --iface "$IF_C" --shelf 1 --slot 0 --queue-depth "$QD" \
        --read-pct "$rpct" --warmup-s "$WARMUP" --duration-s "$DURATION" --quiet --json "$OUT/$op.bench.json" \
        >/dev/null 2>"$OUT/$op.bench.err" || die "$op: xblade-bench failed ($(tail -n 3 "$OUT/$op.bench.err" | tr '\n' ' '))"
    timeout 60 callgrind_control --dump "$VG_PID" >/dev/null || die "$op: callgrind_control --dump failed"
    kill -KILL "$VG_PID" 2>/dev/null || true
    wait "$VG_PID" 2>/dev/null || true
    VG_PID=""
    # This op's lab goes now: the next op makes one with names of its own.
    ip netns del "$NS_T" 2>/dev/null || true
    ip netns del "$NS_C" 2>/dev/null || true
    # One dump per `callgrind_control --dump`: OP.callgrind.1 (the file without a suffix
    # is what valgrind writes at exit, which a killed valgrind never does).
    dump="$OUT/$op.callgrind.1"
    [ -s "$dump" ] || die "$op: callgrind wrote no dump ($dump)"
    callgrind_annotate --auto=no "$dump" >"$OUT/$op.annotate.txt" 2>/dev/null
    python3 - "$OUT/$op.annotate.txt" "$OUT/$op.bench.json" "$op" "$QD" "$dump" <<'PY' | tee -a "$OUT/summary.txt"
import json, re, sys
annotate, bench, op, qd, dump = sys.argv[1:]
report = json.load(open(bench))
requests = report["io"]["frames_received"]
errors = sum(v for v in report["errors"].values())
total, rows, in_table = None, [], False
for line in open(annotate):
    m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
    if not m:
        continue
    count = int(m.group(1).replace(",", ""))
    what = m.group(2)
    if what.startswith("PROGRAM TOTALS"):
        total = count
        continue
    # "file:function [object]": keep the function, shortened.
    fn = what.split(":", 1)[1] if ":" in what else what
    fn = re.sub(r" \[.*\]$", "", fn)
    rows.append((count, fn))
if total is None or not requests:
    sys.exit(f"{op}: no totals in {annotate} or no requests in {bench}")
print(f"## {op}, QD {qd}: {requests} requests (generator replies, warm-up included), {errors} generator errors")
print(f"instructions per request: {total / requests:.0f}  (worker thread, userspace; {total} in all)")
# Loop passes: calls of Worker::refill, which every pass of the worker's loop makes once
# (read from the dump's call records: "cfn=(id) name" names a callee, "calls=N" counts).
names, passes, callee = {}, 0, None
for line in open(dump, errors="replace"):
    m = re.match(r"^c?fn=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
    if m:
        if m.group(2):
            names[m.group(1)] = m.group(2)
        callee = names.get(m.group(1)) if line.startswith("cfn=") else None
        continue
    m = re.match(r"^calls=(\d+) ", line)
    if m and callee is not None and callee.endswith("Worker::refill"):
        passes += int(m.group(1))
if passes:
    print(f"loop passes: {passes}, requests per pass {requests / passes:.2f} (per-pass work is spread over these)")
merged = {}
for count, fn in rows:
    merged[fn] = merged.get(fn, 0) + count
for fn, count in sorted(merged.items(), key=lambda kv: -kv[1])[:20]:
    print(f"  {count / requests:8.1f}  {fn[:110]}")
print()
PY
done
log "logs in $OUT (settings.txt, summary.txt, *.annotate.txt, *.callgrind.*)"
