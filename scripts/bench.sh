#!/usr/bin/env bash
# Benchmarks xblade against vblade (the baseline, measured in the same run) on one veth
# pair between two throwaway network namespaces, with the same image and the same load
# generator (xblade-bench), and prints one table: IOPS, MB/s, p50/p99/p99.9 latency, target
# CPU time per request, and the xblade/vblade ratio. Also the two ceilings that bound any
# ratio: raw fio on the disk (for the O_DIRECT cases; twice: with CPU 0 idle, and with CPU 0
# as busy as the load generator keeps it during xblade's run, since this VM's emulated disk
# completes more slowly while the other vCPU runs) and the load generator against
# xblade-responder, which answers at once from no storage (for the tmpfs and MTU 9000
# cases); the null backend, 1 vs 2 queues, what each fast-path mechanism buys
# (ablations), the CPU per request of every target sleeping when idle (cpu), the same
# load spread over many exports of one process (exports), and the
# previous build side by side with this one (--compare-bin).
#
#   sudo ./scripts/bench.sh [--quick] [--repeat N] [--duration S] [--out DIR] [--only GROUPS]
#                           [--compare-bin PATH] [--kinds KINDS] [--qds LIST]
#                           [--export-counts LIST] [--gen-spin-us US] [--scrape-metrics]
#
#   --quick        one repetition of 2 s runs (a smoke run, not numbers to quote)
#   --repeat N     repetitions of every case (default 3; the table shows the median and the
#                  spread, min..max)
#   --duration S   measured seconds per run (default 5; 1 s warm-up before each)
#   --out DIR      where JSON results, the table and the latency CDF plot go
#                  (default results/bench-DATE); a new or empty directory (a non-empty one
#                  is refused: another run's results there would spoil this run's report)
#   --only GROUPS  comma-separated subset of: tmpfs,qd1,disk,null,jumbo,queues,ablation,
#                  cpu,exports,napi (default: all of them). cpu: the CPU each target
#                  spends per request when every one of them sleeps as soon as it has no
#                  work: vblade (it always does), xblade --spin-us 0 (event mode) and the
#                  zero-work responder --spin-us 0, answering with zeros (ceiling) and
#                  from a populated RAM copy of the image (ceiling-ram), tmpfs reads and
#                  writes at QD 16, the four interleaved in every repetition; the
#                  responders' figures are the least any target can spend here (the
#                  kernel's send and, on veth, the initiator's receive run on the
#                  target's CPU; ceiling-ram also moves the data). napi: AF_XDP
#                  preferred busy polling (--napi-busy-poll-us 20 --napi-busy-poll-budget 64) against the same
#                  binary without it, at xblade's default wait (spin 50 us) and with
#                  --busy-poll, tmpfs reads and writes at QD 1 and 16, the four
#                  configurations interleaved in every repetition
#   --compare-bin PATH  another xblade binary (e.g. a build of the previous main) run as
#                  target kind xblade-prev in the tmpfs, disk and jumbo groups, with the
#                  same command line, right before xblade in every repetition (prev,
#                  current, prev, current, ...); the report puts the two side by side
#   --kinds KINDS  only these target kinds in the tmpfs, disk and jumbo groups
#                  (comma-separated: vblade,xblade-prev,xblade,ceiling,ceiling-ram,
#                  ceiling-xdp,fio,fio-contended,fio-net; default all). ceiling and ceiling-ram
#                  are the tmpfs and jumbo groups' ceilings: xblade-responder (AF_PACKET)
#                  answering at once with zeros (no data moved), and the same answering
#                  from a populated RAM image of the tmpfs image's size
#                  (xblade-responder --ram --populate: the data copied from memory of
#                  its own, as any target that serves an image must). ceiling-xdp is
#                  xblade itself with the null backend (null: of the image's size, same
#                  command line): AF_XDP copy mode on veth with no storage work, the most
#                  xblade's network path can do here (on veth the target's receive runs
#                  on the generator's CPU, and AF_XDP's costs more than AF_PACKET's). E.g. --kinds xblade-prev,xblade for a regression check
#                  alone. fio and fio-contended are the disk group's ceilings, run right
#                  after the targets in every repetition: raw fio on CPU 1 (the target's)
#                  with CPU 0 idle, and the same fio while CPU 0 carries a duty-cycled
#                  busy loop, for fio's whole run, at the busy fraction CPU 0 had during
#                  the xblade run of the same case and repetition (so fio-contended needs
#                  xblade). Every run records CPU 0's busy fraction (cpu0_busy_frac, from
#                  /proc/stat) and the table shows it (CPU0), so the two can be compared.
#                  fio-net: the same fio while the link carries the traffic of xblade's
#                  run of the same case and repetition, without the disk: the generator
#                  (CPU 0, QD 64, --max-iops at xblade's IOPS, reads or writes as the case)
#                  against xblade --spin-us 0 on the null backend, on CPU 1 with fio, as
#                  xblade's own CPU carries the network work next to its disk I/O (needs
#                  xblade too). The report gives the rate the traffic reached; below
#                  xblade's, the disk had less to contend with than in xblade's run. fio
#                  shares CPU 1 with the network work there, as xblade's disk I/O does:
#                  like with like, not an upper bound for a leaner disk client. Every
#                  disk-group run also records what the block layer counted over it
#                  (/sys/class/block/DEV/stat: requests, their time, the time-weighted
#                  queue), and the report shows the disk's mean time and depth per run
#   --qds LIST     queue depths of the tmpfs and disk groups (default 1,16,64)
#   --export-counts LIST  exports group: numbers of exports (default 1,8,64). One xblade
#                  process from a generated --config file (pin = false, frames 4096, one
#                  tmpfs image of 64 MiB / N per export, allocated, so every export is
#                  mapped); the generator spreads the same total QD (16 and 64) round
#                  robin over them, over all of each image (64 MiB in all), so only the
#                  number of exports changes
#   --gen-spin-us US  the load generator polls its receive ring this long after the last
#                  reply before it sleeps in ppoll (default 50; 0 sleeps at once). It has
#                  CPU 0 to itself, so its wake-ups stay out of every target's latency.
#                  The same for every target; the queues group, where generators share
#                  the CPUs with xblade's workers, always uses 0
#   --disk-gen-spin-us US  the same for the disk group and the disk ablations only
#                  (default: --gen-spin-us). With the default, the generator sleeps
#                  between the disk's completions and its wake-ups lengthen every round
#                  trip (the report's "outside" column); e.g. 100000 keeps it polling while
#                  its requests are on the disk: CPU 0 is then fully busy, which slows the
#                  disk too, and fio-contended is loaded to match
#   --scrape-metrics  in the tmpfs, disk and jumbo groups, also run target kind
#                  xblade-scraped right after xblade in every repetition: the same binary and
#                  command line plus --metrics-listen 127.0.0.1:0, with curl fetching
#                  /metrics once a second (from the target namespace, on CPU 0 with the
#                  load generator) for the whole time it runs. Every measured run records
#                  how many scrapes succeeded in its window, and fails below one per second
#                  minus one. The report puts the two side by side (scraped/plain ratio)
#
# Environment: XBLADE_BENCH_DISK_DIR (default /var/tmp) holds the disk image,
# XBLADE_BENCH_SHM_DIR (default /dev/shm) the tmpfs image (e.g. a tmpfs mounted
# huge=within_size, whose mapping xblade's mmap engine then gets in 2 MiB pages),
# XBLADE_BENCH_STALLS_S (default 2) how long xblade-stalls measures the machine's own stalls
# before each repetition of QD 1 cases (tmpfs, disk, qd1 groups; the report's QD 1 stall
# table).
#
# Settings recorded with every number: queue depth, request size (sectors per frame at the
# MTU), read/write, the generator's spin, CPU placement (target on CPU 1, load on CPU 0),
# and what the target itself reported: xblade's XDP mode ("xdp=" in its log) and AF_XDP
# bind mode ("bind_mode="), its command line (batch, frames, busy-poll: xblade's defaults,
# in settings.json's xblade_help, unless given there); per run in target_reported, for the
# whole run in settings.json. Target CPU per request is the target's user + system ticks
# (/proc/PID/stat) between the start and the end of the measured window, read by
# xblade-bench --target-pid, over the requests completed in that window. Before the
# measured runs against each target (vblade, xblade; not the instant responder or the null
# backend), a 1 s xblade-bench --verify pass must find every read's data correct. The run
# stops with no table if that pass or any generator fails, if a run has errors (timeouts,
# ATA/AoE errors, bad replies, verify failures, unanswered requests) or if a run or a
# repetition is missing; the table shows both counts (err, reps). The binaries are copied
# into OUT/bin before the first run, so a rebuild in the tree during the run changes
# nothing; every run's JSON also has the target's memory after the run (VmRSS, VmHWM,
# VmPin, VmLck from /proc/PID/status). Target kind xblade runs with a control socket
# (--control, in OUT/runs), and each of its runs' JSON has target_split: xblade's own
# latency of the requests of that run (warm-up included; the difference of two
# `xbladectl --json stats` readings, taken on CPU 0 before and after the generator): end
# to end (RX ring to TX ring), the disk's part (submission to completion) and xblade's
# (the rest), each with count, mean, p50 and p99; the log prints it per run and the
# report a table of its medians, with xblade's share of the end-to-end p50 and mean.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

REPEAT=3 DURATION=5 WARMUP=1 OUT="" ONLY="tmpfs,qd1,disk,null,jumbo,queues,ablation,cpu,exports,napi" GEN_SPIN_US=50
DISK_GEN_SPIN_US=""
COMPARE_BIN="" KINDS="vblade,xblade-prev,xblade,ceiling,ceiling-ram,ceiling-xdp,fio,fio-contended,fio-net" QDS="1,16,64" EXPORT_COUNTS="1,8,64"
SCRAPE_METRICS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) REPEAT=1 DURATION=2 ;;
        --repeat) REPEAT=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --out) OUT=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --gen-spin-us) GEN_SPIN_US=$2; shift ;;
        --disk-gen-spin-us) DISK_GEN_SPIN_US=$2; shift ;;
        --compare-bin) COMPARE_BIN=$2; shift ;;
        --kinds) KINDS=$2; shift ;;
        --qds) QDS=$2; shift ;;
        --export-counts) EXPORT_COUNTS=$2; shift ;;
        --scrape-metrics) SCRAPE_METRICS=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
need_root "bench.sh"
DISK_GEN_SPIN_US=${DISK_GEN_SPIN_US:-$GEN_SPIN_US}
want() { [[ ",$ONLY," == *",$1,"* ]]; }
kind_wanted() { [[ ",$KINDS," == *",$1,"* ]]; }
for g in ${ONLY//,/ }; do
    case $g in tmpfs|qd1|disk|null|jumbo|queues|ablation|cpu|exports|napi) ;; *) die "unknown group $g (see --help)" ;; esac
done
for k in ${KINDS//,/ }; do
    case $k in vblade|xblade-prev|xblade|ceiling|ceiling-ram|ceiling-xdp|fio|fio-contended|fio-net) ;; *) die "unknown target kind $k (see --help)" ;; esac
done
if want disk && kind_wanted fio-contended && ! kind_wanted xblade; then
    die "--kinds fio-contended loads CPU 0 as busy as it was in the xblade run of the same case: add xblade to --kinds"
fi
if want disk && kind_wanted fio-net && ! kind_wanted xblade; then
    die "--kinds fio-net runs the network traffic of the xblade run of the same case: add xblade to --kinds"
fi
# Results of another run in the same directory would make the report refuse this run's
# table (their runs are not in this run's expected.txt, or add repetitions): refuse now.
if [ -n "$OUT" ] && [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
    die "--out $OUT is not empty (another run's results?): give a new or empty directory, or leave --out out for results/bench-DATE"
fi
if [ -n "$COMPARE_BIN" ]; then
    [ -x "$COMPARE_BIN" ] || die "--compare-bin $COMPARE_BIN: not an executable"
fi
QDS=${QDS//,/ } EXPORT_COUNTS=${EXPORT_COUNTS//,/ }

ensure_packages "${XBLADE_BUILD_PACKAGES[@]}" vblade fio python3
[ "$SCRAPE_METRICS" = 1 ] && ensure_packages curl
find_cargo
log "building release binaries"
cargo_run build --release --locked -p xblade -p xblade-bench
OUT=${OUT:-$REPO/results/bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/runs" "$OUT/bin"
# Copies: other work in the tree may rebuild target/release while this runs.
for b in xblade xbladectl xblade-bench xblade-responder xblade-stalls; do
    cp "$REPO/target/release/$b" "$OUT/bin/$b"
done
XBLADE="$OUT/bin/xblade"
XBLADECTL="$OUT/bin/xbladectl"
BENCH="$OUT/bin/xblade-bench"
RESPONDER="$OUT/bin/xblade-responder"
STALLS="$OUT/bin/xblade-stalls"
XBLADE_PREV=""
if [ -n "$COMPARE_BIN" ]; then
    cp "$COMPARE_BIN" "$OUT/bin/xblade-prev"
    XBLADE_PREV="$OUT/bin/xblade-prev"
fi

ID="xbb$$"
NS_T="$ID-t" NS_C="$ID-c" IF_T="${ID}t" IF_C="${ID}c"
# XBLADE_BENCH_SHM_DIR: another tmpfs for the tmpfs image (e.g. one mounted huge=within_size).
SHM_IMG="${XBLADE_BENCH_SHM_DIR:-/dev/shm}/xblade-bench-$$.img"
DISK_DIR=${XBLADE_BENCH_DISK_DIR:-/var/tmp}
DISK_IMG="$DISK_DIR/xblade-bench-$$.img"
# The exports group: one image per export, /dev/shm/xblade-bench-PID-eN.img.
EXPORT_IMG_PREFIX="/dev/shm/xblade-bench-$$-e"
TARGET_PID="" TARGET_LOG=/dev/null SCRAPER_PID="" SCRAPES="" TARGET_CONTROL="" CPU0_LOAD_PID="" NET_LOAD_PID=""
cleanup() {
    set +e
    stop_cpu0_load
    [ -n "$NET_LOAD_PID" ] && kill "$NET_LOAD_PID" 2>/dev/null
    stop_target
    ip netns del "$NS_T" 2>/dev/null
    ip netns del "$NS_C" 2>/dev/null
    rm -f "$SHM_IMG" "$DISK_IMG" "$EXPORT_IMG_PREFIX"*.img
}
trap cleanup EXIT
# Ctrl-C or kill: stop here (the EXIT trap cleans up). A trap that only cleaned up would let
# the script carry on with the next run once the current command returned, and end with 0.
trap 'exit 130' INT
trap 'exit 143' TERM

# make_lab MTU RXQUEUES
make_lab() {
    veth_lab "$NS_T" "$NS_C" "$IF_T" "$IF_C" "$1" "$2"
    # Loopback, for the metrics endpoint (--scrape-metrics).
    ip -n "$NS_T" link set lo up
    # XPS on the client: a frame sent from CPU n leaves on TX queue n (veth delivers it
    # on the peer's RX queue n).
    if [ "$RXQ_NOW" -ge 2 ]; then
        ip netns exec "$NS_C" sh -c "echo 1 > /sys/class/net/$IF_C/queues/tx-0/xps_cpus; echo 2 > /sys/class/net/$IF_C/queues/tx-1/xps_cpus"
    fi
}
lab() { RXQ_NOW=$2; make_lab "$1" "$2"; }

stop_target() {
    if [ -n "$SCRAPER_PID" ]; then
        kill "$SCRAPER_PID" 2>/dev/null
        wait "$SCRAPER_PID" 2>/dev/null || true
    fi
    SCRAPER_PID="" SCRAPES=""
    if [ -n "$TARGET_PID" ] && kill -0 "$TARGET_PID" 2>/dev/null; then
        kill -TERM "$TARGET_PID"
        wait "$TARGET_PID" 2>/dev/null || true
    fi
    TARGET_PID="" TARGET_CONTROL=""
}

# cpu0_jiffies: CPU 0's "BUSY TOTAL" jiffies so far, from /proc/stat. Busy is everything but
# idle and iowait (user, nice, system, irq, softirq, steal); guest and guest_nice are left
# out of the sum, the kernel already counts them in user and nice.
cpu0_jiffies() {
    awk '$1 == "cpu0" { total = $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; print total - $5 - $6, total }' /proc/stat
}

# block_reading: "SECONDS FIELDS..." of the disk image's block device now (its
# /sys/class/block/DEV/stat, as Documentation/block/stat.rst names them: reads, read merges,
# read sectors, read ticks ms, writes, ..., in flight, io_ticks ms, time_in_queue ms), or
# nothing outside the disk group (BLOCK_STAT empty).
BLOCK_STAT=""
block_reading() {
    [ -n "$BLOCK_STAT" ] || return 0
    echo "$(date +%s.%N) $(cat "$BLOCK_STAT")"
}

# block_layer_json BEFORE AFTER: what the block layer counted between two block_reading
# results, as JSON (null without them): the seconds, the requests completed and their
# summed time (reads and writes), and time_in_queue (the time-weighted number of requests
# in flight: over the seconds, the disk's mean depth).
block_layer_json() {
    if [ -z "$1" ] || [ -z "$2" ]; then echo null; return 0; fi
    awk -v before="$1" -v after="$2" 'BEGIN {
        nb = split(before, b); na = split(after, a)
        if (nb < 12 || na < 12 || a[1] <= b[1]) { print "null"; exit }
        printf "{\"seconds\": %.3f, \"requests\": %d, \"ticks_ms\": %d, \"time_in_queue_ms\": %d}\n",
            a[1] - b[1], (a[2] - b[2]) + (a[6] - b[6]), (a[5] - b[5]) + (a[9] - b[9]), a[12] - b[12] }'
}

# cpu0_busy_frac BEFORE AFTER: CPU 0's busy fraction between two cpu0_jiffies readings
# (0.0000 to 1.0000).
cpu0_busy_frac() {
    awk -v before="$1" -v after="$2" 'BEGIN {
        split(before, b); split(after, a)
        if (a[2] <= b[2]) { print "cpu0_busy_frac: no time passed between the readings" > "/dev/stderr"; exit 1 }
        printf "%.4f\n", (a[1] - b[1]) / (a[2] - b[2]) }'
}

# start_cpu0_load FRACTION: the load on CPU 0 under which fio-contended measures the disk,
# standing in for the load generator during xblade's disk run of the same case (the
# emulated virtio disk completes more slowly while the other vCPU runs). Measured here on
# 2026-12-03 (1 KiB, QD16 and 64, --gen-spin-us 50, machine otherwise idle): CPU 0 is only
# 33-49 % busy during xblade's disk runs, not 100 % (the generator sleeps in ppoll once no
# reply came for 50 us, and the disk's replies come in bursts), so a pure busy loop would
# overstate the contention: fio 1 KiB random reads QD16 on CPU 1 that day gave 54k-67k
# IOPS with CPU 0 idle, 44k-58k with a pure busy loop, 52k-62k with CPU 0 held at 37-44 %
# (the disk drifts between runs by about as much). So CPU 0 is held at FRACTION (the busy
# fraction measured in that xblade run, the same count as cpu0_jiffies): spin 100 us at a
# time (the order of the generator's own stretches: it spins 50 us past its last reply),
# sleep in between, with the spin share of each 0.1 s paced to a duty that a feedback
# loop moves every 0.1 s by half of what CPU 0's measured busy fraction so far is off
# FRACTION. The feedback takes in what else runs there (the kernel's own work, about 5 %
# even with fio alone, and the wake-ups the sleeps cost): a fixed duty cycle at FRACTION
# came out 7-10 points above it, this 1-3.4 points above. It sleeps about 2k times a
# second, the generator during xblade's disk runs 1.4k-4.2k (voluntary context switches).
# No network, no I/O. The fio-contended run records what CPU 0 really did (cpu0_busy_frac)
# next to the xblade run's.
# stop_cpu0_load ends it; so does cleanup, on every exit path. Its command line names it:
# `pgrep -af cpu0-load`.
CPU0_LOAD_PY='
import sys, time
target = float(sys.argv[1])
burst_s = 100e-6
window_s = 0.1

def cpu0_jiffies():
    """CPU 0 busy and total jiffies, counted as bench.sh cpu0_jiffies counts them."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith("cpu0 "):
                v = [int(x) for x in line.split()[1:9]]
                return sum(v) - v[3] - v[4], sum(v)

busy0, total0 = cpu0_jiffies()
duty = target
window_start = time.perf_counter()
spun_s = 0.0
while True:
    began = now = time.perf_counter()
    while now - began < burst_s or spun_s + (now - began) < duty * (now - window_start):
        now = time.perf_counter()
    spun_s += now - began
    time.sleep(burst_s * (1 - duty) / duty)
    if now - window_start >= window_s:
        busy, total = cpu0_jiffies()
        if total > total0:
            duty = min(1.0, max(0.01, duty + 0.5 * (target - (busy - busy0) / (total - total0))))
        window_start, spun_s = time.perf_counter(), 0.0
'
start_cpu0_load() {
    awk -v f="$1" 'BEGIN { exit !(f > 0 && f <= 1) }' \
        || die "CPU 0 load: busy fraction $1 is not in (0, 1] (the xblade run it copies measured no load?)"
    taskset -c 0 python3 -c "$CPU0_LOAD_PY" "$1" xblade-bench-cpu0-load &
    CPU0_LOAD_PID=$!
}

stop_cpu0_load() {
    if [ -n "$CPU0_LOAD_PID" ]; then
        kill "$CPU0_LOAD_PID" 2>/dev/null || true
        wait "$CPU0_LOAD_PID" 2>/dev/null || true
    fi
    CPU0_LOAD_PID=""
}

# target_stats: `xbladectl --json stats` of the running xblade (one with a control socket,
# TARGET_CONTROL), read on CPU 0 with the load generator.
target_stats() {
    taskset -c 0 "$XBLADECTL" --socket "$TARGET_CONTROL" --json stats 2>/dev/null || echo null
}

# start_target LOGFILE CPUS COMMAND... (in the target namespace, on CPUS)
start_target() {
    local log=$1 cpus=$2
    shift 2
    ip netns exec "$NS_T" taskset -c "$cpus" "$@" >"$log" 2>&1 &
    TARGET_PID=$! TARGET_LOG=$log
    for _ in $(seq 100); do
        if grep -q "exporting" "$log" 2>/dev/null; then return 0; fi
        case "$1" in *vblade*) sleep 0.5; return 0 ;; esac
        kill -0 "$TARGET_PID" 2>/dev/null || { cat "$log" >&2; die "target exited: $*"; }
        sleep 0.05
    done
    die "target did not come up: $*"
}

# start_ram_responder LOGFILE IMAGE [OPTION...]: the ceiling-ram target on CPU 1, the
# responder answering from a populated RAM image of IMAGE's size (options go before the
# interface, e.g. --spin-us 0).
start_ram_responder() {
    local log=$1 image=$2
    shift 2
    start_target "$log" 1 "$RESPONDER" "$@" --shelf 1 --slot 0 \
        --ram --populate --size-sectors $(( $(stat -c %s "$image") / 512 )) "$IF_T"
}

# start_scraper BASE: fetches http://ADDR/metrics of the running xblade (the address it
# logged) once a second, from the target namespace on CPU 0, until stop_target; BASE.scrapes
# holds the count of successful scrapes so far.
start_scraper() {
    local base=$1 addr=""
    for _ in $(seq 100); do
        addr=$(sed -n 's|.*metrics listening on http://\([^/]*\)/metrics.*|\1|p' "$TARGET_LOG" | head -n 1)
        [ -n "$addr" ] && break
        sleep 0.05
    done
    [ -n "$addr" ] || die "no metrics address in $TARGET_LOG"
    SCRAPES="$base.scrapes"
    echo 0 >"$SCRAPES"
    # shellcheck disable=SC2016 # expanded by the inner bash
    ip netns exec "$NS_T" taskset -c 0 bash -c 'n=0
        while :; do
            if curl -sf -o /dev/null --max-time 2 "http://$1/metrics"; then n=$((n + 1)); echo "$n" >"$2"; fi
            sleep 1
        done' scraper "$addr" "$SCRAPES" &
    SCRAPER_PID=$!
}

# scrapes: successful scrapes so far of the running scraper (0 without one).
scrapes() { if [ -n "$SCRAPES" ]; then cat "$SCRAPES"; else echo 0; fi; }

# target_mem PID: the target's memory as JSON, in KiB (VmRSS, VmHWM, VmPin, VmLck).
target_mem() {
    [ -r "/proc/$1/status" ] || { echo '{}'; return 0; }
    awk 'BEGIN { printf "{" } /^(VmRSS|VmHWM|VmPin|VmLck):/ { sub(":", "", $1); printf "%s\"%s_kib\": %d", sep, $1, $2; sep = ", " }
         END { printf "}" }' "/proc/$1/status" 2>/dev/null
}

# target_reported LOG PID: what the target said about itself, as JSON: from xblade's log the
# XDP mode ("xdp=native" in "exporting"), the AF_XDP bind mode ("bind_mode=copy" in "worker
# serving"), the sectors per frame and the I/O engine; and the command line it was started
# with (/proc/PID/cmdline: batch, frames, ... are xblade's defaults unless given there).
target_reported() {
    python3 - "$1" "$2" <<'PY'
import json, re, sys
log, pid = sys.argv[1], sys.argv[2]
out = {}
try:
    text = open(log, errors="replace").read()
except OSError:
    text = ""
for key, pattern in (("xdp", r" xdp=(\S+)"), ("bind_mode", r" bind_mode=(\S+)"),
                     ("sectors_per_frame", r" sectors_per_frame=(\d+)"), ("io", r" io=(.+)$")):
    values = sorted(set(re.findall(pattern, text, re.M)))
    if values:
        out[key] = values if len(values) > 1 else values[0]
try:
    out["cmdline"] = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").rstrip("\0").split("\0")
except OSError:
    pass
print(json.dumps(out))
PY
}

# verify_pass NAME [EXTRA BENCH ARGS...]: before the measured runs against a target, one
# short (1 s, no warm-up) --verify pass with half reads, half writes at QD 16: every read
# must return data that was written there. Any error (verify failure, timeout, ATA/AoE
# error, bad reply, unanswered request) or a failed generator stops the benchmark. Not for
# targets without storage (the instant responder, the null backend). JSON in runs/verify/.
verify_pass() {
    local name=$1
    shift
    mkdir -p "$OUT/runs/verify"
    local json="$OUT/runs/verify/$name.json" rc=0
    ip netns exec "$NS_C" taskset -c 0 "$BENCH" --iface "$IF_C" --shelf 1 --slot 0 \
        --queue-depth 16 --read-pct 50 --warmup-s 0 --duration-s 1 --verify \
        --quiet --json "$json" "$@" >/dev/null 2>"$OUT/runs/verify/$name.err" || rc=$?
    [ "$rc" -eq 0 ] || die "verify pass $name: xblade-bench --verify exited $rc: $(tail -n 3 "$OUT/runs/verify/$name.err" | tr '\n' ' ')"
    python3 - "$json" "$name" <<'PY' || die "verify pass $name failed; stopping before the measured runs"
import json, sys
path, name = sys.argv[1], sys.argv[2]
r = json.load(open(path))
e = r["errors"]
bad = {k: e.get(k, 0) for k in ("timeouts", "ata_errors", "aoe_errors", "bad_replies", "verify_failures") if e.get(k, 0)}
if r.get("abandoned"):
    bad["abandoned"] = r["abandoned"]
ops = r["results"]["all"]["ops"]
if bad or ops == 0:
    print(f"verify pass {name}: {ops} requests, errors {bad}; first failures: {r.get('failures', [])[:3]}", file=sys.stderr)
    sys.exit(1)
PY
    log "verify pass $name: ok"
}

# run_bench NAME TARGETKIND QD READPCT [EXTRA BENCH ARGS...]: one measured run of the load
# generator on CPU 0 against the running target; JSON into runs/, with the target's CPU time
# in the measured window (xblade-bench --target-pid reads /proc/PID/stat at its start and
# end), its memory after the run, what it reported about itself and CPU 0's busy fraction
# while the generator ran (cpu0_busy_frac: the contention fio-contended has to match, on the
# disk). A failed generator or
# a missing JSON stops the benchmark. Every expected run is listed in runs/expected.txt, so
# the report can refuse a missing one.
run_bench() {
    local name=$1 kind=$2 qd=$3 rpct=$4
    shift 4
    local json="$OUT/runs/$name.json" rc=0 scrapes_before split_before=null split_after=null cpu0_before cpu0_busy block_before block_layer
    echo "$name" >>"$OUT/runs/expected.txt"
    scrapes_before=$(scrapes)
    [ -n "$TARGET_CONTROL" ] && split_before=$(target_stats)
    cpu0_before=$(cpu0_jiffies)
    block_before=$(block_reading)
    ip netns exec "$NS_C" taskset -c 0 "$BENCH" --iface "$IF_C" --shelf 1 --slot 0 \
        --queue-depth "$qd" --read-pct "$rpct" --warmup-s "$WARMUP" --duration-s "$DURATION" \
        --spin-us "$GEN_SPIN_US" --target-pid "$TARGET_PID" --quiet --json "$json" "$@" \
        >/dev/null 2>"$OUT/runs/$name.err" || rc=$?
    cpu0_busy=$(cpu0_busy_frac "$cpu0_before" "$(cpu0_jiffies)") || die "$name: cannot measure CPU 0's busy fraction"
    block_layer=$(block_layer_json "$block_before" "$(block_reading)")
    [ "$rc" -eq 0 ] || die "$name: xblade-bench exited $rc ($(tail -n 3 "$OUT/runs/$name.err" | tr '\n' ' ')); stopping, no table is made from a failed run"
    [ -s "$json" ] || die "$name: xblade-bench wrote no JSON ($json)"
    [ -n "$TARGET_CONTROL" ] && split_after=$(target_stats)
    python3 - "$json" "$kind" "$(target_mem "$TARGET_PID")" "$(target_reported "$TARGET_LOG" "$TARGET_PID")" \
        "$(( $(scrapes) - scrapes_before ))" "$WARMUP" "$DURATION" "$split_before" "$split_after" "$cpu0_busy" \
        "$block_layer" <<'PY' || die "$name: cannot complete $json"
import json, math, sys
path, kind = sys.argv[1], sys.argv[2]
report = json.load(open(path))
before, after = json.loads(sys.argv[8]), json.loads(sys.argv[9])
if before and after:
    # The target's own latency split over the run (warm-up included): the difference of
    # two `xbladectl stats` readings, quantiles as the daemon computes them (upper bound of
    # the bucket holding rank ceil(q * count): at most 12.5 % above the exact value).
    def delta(field):
        b = {bound: n for bound, n in before["exports"][0][field]["buckets"]}
        return [(bound, n - b.get(bound, 0)) for bound, n in after["exports"][0][field]["buckets"]]
    def quantile(buckets, q):
        total = sum(n for _, n in buckets)
        rank, seen = max(1, math.ceil(q * total)), 0
        for bound, n in buckets:
            seen += n
            if seen >= rank:
                return bound
        return 0
    split = {}
    for key, field in (("end_to_end", "latency"), ("disk", "disk_latency"), ("xblade", "xblade_latency")):
        buckets = delta(field)
        count = sum(n for _, n in buckets)
        sum_ns = after["exports"][0][field]["sum_ns"] - before["exports"][0][field]["sum_ns"]
        split[key] = {"count": count, "mean_ns": sum_ns // max(count, 1),
                      "p50_ns": quantile(buckets, 0.5), "p99_ns": quantile(buckets, 0.99)}
    report["target_split"] = split
    us = lambda part, q: split[part][q] / 1000
    print(f"  {kind} split: {split['disk']['count']} disk requests; end to end p50 {us('end_to_end', 'p50_ns'):.1f} us, "
          f"p99 {us('end_to_end', 'p99_ns'):.1f} us; disk p50 {us('disk', 'p50_ns'):.1f} us, p99 {us('disk', 'p99_ns'):.1f} us; "
          f"xblade p50 {us('xblade', 'p50_ns'):.1f} us, p99 {us('xblade', 'p99_ns'):.1f} us", file=sys.stderr)
cpu = report.get("target_cpu")
if cpu is None:
    sys.exit(f"{path}: no target_cpu (xblade-bench --target-pid)")
cpu["kind"] = kind
report["target_mem"] = json.loads(sys.argv[3])
report["target_reported"] = json.loads(sys.argv[4])
report["cpu0_busy_frac"] = float(sys.argv[10])
report["block_layer"] = json.loads(sys.argv[11])
if kind == "xblade-scraped":
    scrapes, seconds = int(sys.argv[5]), int(sys.argv[6]) + int(sys.argv[7])
    report["metrics_scrapes"] = scrapes
    if scrapes < seconds - 1:
        sys.exit(f"{path}: only {scrapes} successful scrapes of /metrics in {seconds} s")
json.dump(report, open(path, "w"), indent=1)
PY
}

# fio_run NAME RW QD BS [CPU0_LOAD_FRACTION]: raw fio io_uring O_DIRECT on the disk image,
# CPU 1. With a fraction, CPU 0 carries a load that keeps it that busy (start_cpu0_load)
# from before fio starts until it has ended, warm-up included. The JSON gets CPU 0's busy
# fraction over fio's run (cpu0_busy_frac) and the load's target (cpu0_load_frac, or null).
fio_run() {
    local name=$1 rw=$2 qd=$3 bs=$4 load_frac=${5:-} json="$OUT/runs/$1.json" cpu0_before cpu0_busy block_before block_layer
    echo "$name" >>"$OUT/runs/expected.txt"
    if [ -n "$load_frac" ]; then start_cpu0_load "$load_frac"; fi
    cpu0_before=$(cpu0_jiffies)
    block_before=$(block_reading)
    taskset -c 1 fio --name=raw --filename="$DISK_IMG" --direct=1 --ioengine=io_uring \
        --rw="$rw" --bs="$bs" --iodepth="$qd" --runtime="$DURATION" --ramp_time="$WARMUP" \
        --time_based --norandommap --randrepeat=0 --output-format=json \
        --output="$json" >/dev/null || die "$name: fio failed"
    cpu0_busy=$(cpu0_busy_frac "$cpu0_before" "$(cpu0_jiffies)") || die "$name: cannot measure CPU 0's busy fraction"
    block_layer=$(block_layer_json "$block_before" "$(block_reading)")
    stop_cpu0_load
    python3 - "$json" "$cpu0_busy" "${load_frac:-null}" "$block_layer" <<'PY' || die "$name: cannot add cpu0_busy_frac to $json"
import json, sys
path = sys.argv[1]
report = json.load(open(path))
report["cpu0_busy_frac"] = float(sys.argv[2])
report["cpu0_load_frac"] = json.loads(sys.argv[3])
report["block_layer"] = json.loads(sys.argv[4])
json.dump(report, open(path, "w"), indent=1)
PY
}

# fio_net_run NAME RW QD BS RATE READPCT IMAGE: fio_run while the link carries RATE
# requests per second (READPCT reads) without the disk: xblade-bench on CPU 0 (QD 64,
# --max-iops RATE) against xblade --spin-us 0 on the null backend (IMAGE's size) on CPU 1,
# next to fio. The load starts 1 s before fio (its warm-up) and ends 1 s after; the JSON
# gets its target and the rate it reached over fio's run (net_load). CPU 1 carries the
# network work and fio, as xblade's CPU carries its network work and its disk I/O: fio got
# 42-50 % of CPU 1 in the runs of 2026-12-03 (56-77 % in fio-contended), at about 10 us of
# CPU per I/O. So fio-net compares like with like (the same work on the same CPUs, the
# disk under the same traffic); it is not an upper bound for a leaner disk client.
FIO_NET_QD=64
STALLS_S=${XBLADE_BENCH_STALLS_S:-2}
fio_net_run() {
    local name=$1 rw=$2 qd=$3 bs=$4 rate=$5 rpct=$6 image=$7 net="$OUT/runs/$1.net.json" rc=0
    start_target "$OUT/runs/$name.net.log" 1 "$XBLADE" "${XBLADE_ARGS[@]}" --spin-us 0 1 0 "$IF_T" \
        "null:$(( $(stat -c %s "$image") / 1048576 ))M"
    ip netns exec "$NS_C" taskset -c 0 "$BENCH" --iface "$IF_C" --shelf 1 --slot 0 \
        --queue-depth "$FIO_NET_QD" --max-iops "$rate" --read-pct "$rpct" --warmup-s 1 \
        --duration-s "$(awk -v w="$WARMUP" -v d="$DURATION" 'BEGIN { print w + d + 1 }')" \
        --quiet --json "$net" >/dev/null 2>"$OUT/runs/$name.net.err" &
    NET_LOAD_PID=$!
    sleep 1
    fio_run "$name" "$rw" "$qd" "$bs"
    wait "$NET_LOAD_PID" || rc=$?
    NET_LOAD_PID=""
    stop_target
    [ "$rc" -eq 0 ] || die "$name: the network load (xblade-bench) exited $rc ($(tail -n 3 "$OUT/runs/$name.net.err" | tr '\n' ' '))"
    python3 - "$OUT/runs/$name.json" "$net" "$rate" "$FIO_NET_QD" <<'PY' || die "$name: cannot add net_load to its JSON"
import json, sys
path, net = sys.argv[1], json.load(open(sys.argv[2]))
report = json.load(open(path))
report["net_load"] = {"target_iops": float(sys.argv[3]), "queue_depth": int(sys.argv[4]),
                      "achieved_iops": net["results"]["all"]["iops"]}
json.dump(report, open(path, "w"), indent=1)
PY
}

# cpu0_busy_of JSON: the cpu0_busy_frac a run recorded.
cpu0_busy_of() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cpu0_busy_frac"])' "$1" \
        || die "no cpu0_busy_frac in $1"
}

XBLADE_ARGS=(--no-state --no-pin)
# cases_for GROUP IMAGE VBLADE_FLAGS(comma) QDS [EXTRA KINDS]: vblade, xblade-prev (with
# --compare-bin) and xblade, one after the other, at every QD, reads then writes. The
# extra kinds add, in the same repetition (so a drift of the machine over time hits all
# alike), the bound on every ratio over vblade: "ceiling" runs xblade-responder, which
# answers at once from no storage (the load generator's own limit), "ceiling-ram" the same
# answering from a populated RAM image as large as IMAGE (the data moved, nothing else),
# "ceiling-xdp" xblade with the null backend (its AF_XDP path alone); "fio" runs raw fio on
# the image (the disk's own limit) with CPU 0 idle, "fio-contended" the same with CPU 0
# busy, as the load generator keeps it during the targets' runs. --kinds leaves some out.
# The machine's own stalls, right before a repetition of QD 1 cases: xblade-stalls spins on
# both CPUs (nothing else running) for STALLS_S seconds and counts the gaps in its clock
# reads. At QD 1 each stall on the CPU holding the request delays it, so the report puts
# these per second next to every target's delayed requests per second (delayed_ops).
stalls_run() {
    local name=$1
    "$STALLS" --cpus 0,1 --duration-s "$STALLS_S" --json "$OUT/runs/stalls-$name.json" \
        >"$OUT/runs/stalls-$name.txt" 2>&1 || die "xblade-stalls $name failed: $(tail -n 2 "$OUT/runs/stalls-$name.txt")"
    log "stalls $name: $(grep -o 'stalls >= 10 us: [0-9]*/s' "$OUT/runs/stalls-$name.txt" | tr '\n' ' ')"
}

cases_for() {
    local group=$1 image=$2 vflags=$3 qds=$4 extra=${5:-}
    local kinds=vblade
    [ -n "$XBLADE_PREV" ] && kinds="$kinds xblade-prev"
    kinds="$kinds xblade"
    [ "$SCRAPE_METRICS" = 1 ] && kinds="$kinds xblade-scraped"
    kinds="$kinds $extra"
    for rep in $(seq "$REPEAT"); do
        if [[ " $qds " == *" 1 "* ]]; then stalls_run "$group-$rep"; fi
        for target in $kinds; do
            kind_wanted "${target%-scraped}" || continue
            if [ "$target" = fio-net ]; then
                for qd in $qds; do
                    for op in read write; do
                        local rate rpct=100; [ $op = write ] && rpct=0
                        rate=$(python3 -c 'import json, sys; print(round(json.load(open(sys.argv[1]))["results"]["all"]["iops"]))' \
                            "$OUT/runs/$group-$op-qd$qd-xblade-$rep.json") || die "no xblade IOPS for $group-$op-qd$qd-fio-net-$rep"
                        fio_net_run "$group-$op-qd$qd-$target-$rep" "rand$op" "$qd" 1k "$rate" "$rpct" "$image"
                    done
                done
                continue
            fi
            if [ "$target" = fio ] || [ "$target" = fio-contended ]; then
                for qd in $qds; do
                    for op in read write; do
                        # fio-contended: CPU 0 as busy as in this case's xblade run, just before.
                        local load_frac=""
                        if [ "$target" = fio-contended ]; then
                            load_frac=$(cpu0_busy_of "$OUT/runs/$group-$op-qd$qd-xblade-$rep.json")
                        fi
                        fio_run "$group-$op-qd$qd-$target-$rep" "rand$op" "$qd" 1k "$load_frac"
                    done
                done
                continue
            fi
            case $target in
                vblade)
                    # shellcheck disable=SC2086
                    start_target "$OUT/runs/$group-vblade-$rep.log" 1 vblade ${vflags//,/ } 1 0 "$IF_T" "$image" ;;
                xblade)
                    # A control socket (no per-request cost: the control thread's poll) so
                    # that every run records xblade's own latency split (target_split).
                    TARGET_CONTROL="$OUT/runs/$group-xblade-$rep.sock"
                    start_target "$OUT/runs/$group-xblade-$rep.log" 1 "$XBLADE" "${XBLADE_ARGS[@]}" --control "$TARGET_CONTROL" 1 0 "$IF_T" "$image" ;;
                xblade-scraped)
                    start_target "$OUT/runs/$group-xblade-scraped-$rep.log" 1 "$XBLADE" "${XBLADE_ARGS[@]}" --metrics-listen 127.0.0.1:0 1 0 "$IF_T" "$image"
                    start_scraper "$OUT/runs/$group-xblade-scraped-$rep" ;;
                xblade-prev)
                    start_target "$OUT/runs/$group-xblade-prev-$rep.log" 1 "$XBLADE_PREV" "${XBLADE_ARGS[@]}" 1 0 "$IF_T" "$image" ;;
                ceiling)
                    start_target "$OUT/runs/$group-ceiling-$rep.log" 1 "$RESPONDER" --shelf 1 --slot 0 "$IF_T" ;;
                ceiling-ram)
                    start_ram_responder "$OUT/runs/$group-ceiling-ram-$rep.log" "$image" ;;
                ceiling-xdp)
                    start_target "$OUT/runs/$group-ceiling-xdp-$rep.log" 1 "$XBLADE" "${XBLADE_ARGS[@]}" 1 0 "$IF_T" \
                        "null:$(( $(stat -c %s "$image") / 1048576 ))M" ;;
            esac
            # The instant responder and the null backend store nothing: no data to verify.
            case $target in ceiling|ceiling-xdp) ;; *) verify_pass "$group-$target-$rep" ;; esac
            for qd in $qds; do
                for op in read write; do
                    local rpct=100; [ $op = write ] && rpct=0
                    run_bench "$group-$op-qd$qd-$target-$rep" "$target" "$qd" "$rpct"
                done
            done
            stop_target
        done
    done
}

bin_id() { if [ -n "$1" ]; then echo "$("$1" --version) sha256 $(sha256sum "$1" | cut -c1-16)"; fi; }
cat >"$OUT/settings.json" <<JSON
{"date": "$(date -Is)", "kernel": "$(uname -r)", "cpus": $(nproc),
 "tree": "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')",
 "xblade_binary": "$(bin_id "$XBLADE")", "xblade_prev_binary": "$(bin_id "$XBLADE_PREV")",
 "compare_bin": "$COMPARE_BIN", "kinds": "$KINDS", "scrape_metrics": $([ "$SCRAPE_METRICS" = 1 ] && echo true || echo false), "qds": "$QDS", "export_counts": "$EXPORT_COUNTS",
 "load_at_start": "$(cut -d' ' -f1-3 /proc/loadavg)",
 "cpu_model": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')",
 "repeat": $REPEAT, "duration_s": $DURATION, "warmup_s": $WARMUP,
 "placement": "target taskset CPU 1 (xblade --no-pin), load generator taskset CPU 0",
 "fio_contended_load": "fio on CPU 1 while CPU 0 runs a duty-cycled busy loop (100 us bursts) at the busy fraction CPU 0 had in the xblade run of the same case and repetition, warm-up included",
 "stalls": "xblade-stalls --cpus 0,1 --duration-s $STALLS_S before each repetition of QD 1 cases, both CPUs otherwise idle: gaps of at least 10 us in back-to-back CLOCK_MONOTONIC reads, per second per CPU",
 "fio_net_load": "fio on CPU 1 while xblade-bench (CPU 0, QD $FIO_NET_QD, --max-iops at the IOPS of the xblade run of the same case and repetition) drives xblade --spin-us 0 on the null backend (CPU 1, next to fio)",
 "xblade": "$("$XBLADE" --version)", "vblade": "$(dpkg-query -W -f='${Version}' vblade)",
 "xblade_help": $(python3 -c 'import json, sys; print(json.dumps(sys.stdin.read()))' < <("$XBLADE" --help 2>&1)),
 "generator_spin_us": $GEN_SPIN_US, "disk_generator_spin_us": $DISK_GEN_SPIN_US,
 "tmpfs_image": "$SHM_IMG", "disk_image": "$DISK_IMG"}
JSON

if want tmpfs || want qd1 || want null || want jumbo || want queues || want ablation || want cpu || want napi; then
    log "tmpfs image: 512 MiB, allocated"
    dd if=/dev/zero of="$SHM_IMG" bs=1M count=512 status=none
fi

if want tmpfs; then
    log "tmpfs: vblade vs xblade, reads and writes at QD 1, 16, 64 (MTU 1500)"
    lab 1500 1
    cases_for tmpfs "$SHM_IMG" "" "$QDS" "ceiling ceiling-ram ceiling-xdp"
fi

if want qd1; then
    # The tmpfs group has QD 1 with xblade's default (adaptive spin). Here its two other
    # wait strategies, each against the same vblade runs: busy-poll (a core kept busy) and
    # pure event mode (--spin-us 0: sleep in io_uring_enter as soon as there is no work).
    log "latency at QD 1, tmpfs: vblade, xblade --busy-poll, xblade --spin-us 0 (event mode)"
    lab 1500 1
    for rep in $(seq "$REPEAT"); do
        stalls_run "qd1-$rep"
        start_target "$OUT/runs/qd1-vblade-$rep.log" 1 vblade 1 0 "$IF_T" "$SHM_IMG"
        verify_pass "qd1-vblade-$rep"
        for op in read write; do
            rpct=100; [ $op = write ] && rpct=0
            run_bench "qd1busypoll-$op-qd1-vblade-$rep" vblade 1 "$rpct"
            cp "$OUT/runs/qd1busypoll-$op-qd1-vblade-$rep.json" "$OUT/runs/qd1event-$op-qd1-vblade-$rep.json"
            echo "qd1event-$op-qd1-vblade-$rep" >>"$OUT/runs/expected.txt"
        done
        stop_target
        for variant in "busypoll:--busy-poll" "event:--spin-us 0"; do
            name=${variant%%:*} flags=${variant#*:}
            # shellcheck disable=SC2086
            start_target "$OUT/runs/qd1$name-xblade-$rep.log" 1 "$XBLADE" "${XBLADE_ARGS[@]}" $flags 1 0 "$IF_T" "$SHM_IMG"
            verify_pass "qd1$name-xblade-$rep"
            run_bench "qd1$name-read-qd1-xblade-$rep" xblade 1 100
            run_bench "qd1$name-write-qd1-xblade-$rep" xblade 1 0
            stop_target
        done
    done
fi

if want disk; then
    log "disk: vblade -d vs xblade (O_DIRECT) on $DISK_DIR, and raw fio as the ceiling (CPU 0 idle, and busy)"
    dd if=/dev/zero of="$DISK_IMG" bs=1M count=1024 oflag=direct status=none
    lab 1500 1
    # The generator polls for the disk's completions instead of sleeping (--disk-gen-spin-us).
    GEN_SPIN_US_DEFAULT=$GEN_SPIN_US GEN_SPIN_US=$DISK_GEN_SPIN_US
    # What the block layer counts for the image's device (a partition has its own stat).
    disk_dev=$(findmnt -no SOURCE --target "$DISK_DIR" 2>/dev/null || true)
    BLOCK_STAT="/sys/class/block/$(basename "${disk_dev:-none}")/stat"
    [ -r "$BLOCK_STAT" ] || { log "no block device statistics for $DISK_DIR ($disk_dev): the disk table will lack them"; BLOCK_STAT=""; }
    cases_for disk "$DISK_IMG" "-d" "$QDS" "fio fio-contended fio-net"
    BLOCK_STAT=""
    GEN_SPIN_US=$GEN_SPIN_US_DEFAULT
fi

if want null; then
    log "null backend: the network path alone"
    lab 1500 1
    for rep in $(seq "$REPEAT"); do
        # The null backend stores nothing: no data to verify (its runs still fail on errors).
        start_target "$OUT/runs/null-xblade-$rep.log" 1 "$XBLADE" "${XBLADE_ARGS[@]}" 1 0 "$IF_T" null:1G
        for qd in 1 64; do
            run_bench "null-read-qd$qd-xblade-$rep" xblade "$qd" 100
            run_bench "null-write-qd$qd-xblade-$rep" xblade "$qd" 0
        done
        stop_target
    done
fi

if want jumbo; then
    log "MTU 9000: 17 sectors per frame"
    lab 9000 1
    cases_for jumbo "$SHM_IMG" "" "16" "ceiling ceiling-ram ceiling-xdp"
fi

if want queues; then
    log "xblade with 1 and 2 RX queues (two load generators, one per CPU)"
    for queues in 1 2; do
        lab 1500 "$queues"
        for rep in $(seq "$REPEAT"); do
            ip netns exec "$NS_T" "$XBLADE" --no-state 1 0 "$IF_T" "$SHM_IMG" >"$OUT/runs/queues$queues-$rep.log" 2>&1 &
            TARGET_PID=$! TARGET_LOG="$OUT/runs/queues$queues-$rep.log"
            for _ in $(seq 100); do grep -q exporting "$TARGET_LOG" && break; sleep 0.05; done
            grep -q exporting "$TARGET_LOG" || die "xblade (queues $queues) did not come up"
            verify_pass "queues$queues-xblade-$rep"
            gens=()
            for cpu in 0 1; do
                gen="queues$queues-read-qd32x2-gen$cpu-$rep"
                echo "$gen" >>"$OUT/runs/expected.txt"
                ip netns exec "$NS_C" taskset -c "$cpu" "$BENCH" --iface "$IF_C" --shelf 1 --slot 0 \
                    --queue-depth 32 --read-pct 100 --warmup-s "$WARMUP" --duration-s "$DURATION" --seed $((cpu + 1)) --spin-us 0 \
                    --quiet --json "$OUT/runs/$gen.json" >/dev/null 2>"$OUT/runs/$gen.err" &
                gens+=($!)
            done
            for g in "${gens[@]}"; do
                rc=0
                wait "$g" || rc=$?
                [ "$rc" -eq 0 ] || die "queues $queues: a load generator exited $rc (see $OUT/runs/queues$queues-*-$rep.err); stopping, no table is made from a failed run"
            done
            sleep 0.5
            stop_target
        done
    done
fi

if want ablation; then
    log "ablations: xblade tmpfs reads and writes, QD 64 (and 16 for event mode), one mechanism switched off at a time"
    lab 1500 1
    variants=("default:" "batch1:--batch 1" "busypoll:--busy-poll" "event-mode:--spin-us 0" "no-need-wakeup:--tune-no-need-wakeup"
              "uring-engine:--io-engine uring" "no-merge:--tune-no-merge" "no-fill-cap:--tune-no-fill-cap" "unpinned:UNPINNED")
    for rep in $(seq "$REPEAT"); do
        for v in "${variants[@]}"; do
            name=${v%%:*} flags=${v#*:}
            cpus=1
            if [ "$flags" = UNPINNED ]; then flags="" cpus=0,1; fi
            # shellcheck disable=SC2086
            start_target "$OUT/runs/ablation-$name-$rep.log" "$cpus" "$XBLADE" "${XBLADE_ARGS[@]}" $flags 1 0 "$IF_T" "$SHM_IMG"
            verify_pass "ablation-$name-$rep"
            run_bench "ablation-read-qd64-$name-$rep" xblade 64 100
            run_bench "ablation-write-qd64-$name-$rep" xblade 64 0
            # Event mode's cost at QD 16, against vblade's in the tmpfs group (issue #10's
            # CPU goal), with the default next to it.
            if [ "$name" = default ] || [ "$name" = event-mode ]; then
                run_bench "ablation-read-qd16-$name-$rep" xblade 16 100
                run_bench "ablation-write-qd16-$name-$rep" xblade 16 0
            fi
            stop_target
        done
    done
fi

if want cpu; then
    # Issue #10's CPU goal (xblade in event mode at QD 16: at most 0.4x vblade's CPU per
    # request) and its floor: the responder, which answers from a hot buffer with no
    # storage work, also sleeping as soon as it has nothing to do (--spin-us 0). Every
    # target's reply is sent by the kernel on the target's CPU, and on veth that send runs
    # the initiator's receive too, so no target can spend less than the responder does.
    log "cpu: vblade, xblade --spin-us 0 and the responders --spin-us 0, tmpfs, QD 16"
    lab 1500 1
    for rep in $(seq "$REPEAT"); do
        for target in vblade xblade ceiling ceiling-ram; do
            case $target in
                vblade) start_target "$OUT/runs/cpu-vblade-$rep.log" 1 vblade 1 0 "$IF_T" "$SHM_IMG" ;;
                xblade) start_target "$OUT/runs/cpu-xblade-$rep.log" 1 "$XBLADE" "${XBLADE_ARGS[@]}" --spin-us 0 1 0 "$IF_T" "$SHM_IMG" ;;
                ceiling) start_target "$OUT/runs/cpu-ceiling-$rep.log" 1 "$RESPONDER" --spin-us 0 --shelf 1 --slot 0 "$IF_T" ;;
                ceiling-ram) start_ram_responder "$OUT/runs/cpu-ceiling-ram-$rep.log" "$SHM_IMG" --spin-us 0 ;;
            esac
            [ "$target" = ceiling ] || verify_pass "cpu-$target-$rep"
            run_bench "cpu-read-qd16-$target-$rep" "$target" 16 100
            run_bench "cpu-write-qd16-$target-$rep" "$target" 16 0
            stop_target
        done
    done
fi

if want napi; then
    # On veth the sockets are copy mode, which since Linux 6.13 has no NAPI id: the option
    # then only adds the worker's recvfrom per loop pass. This measures what that costs
    # here; on a zero-copy NIC it is where the NAPI poll runs (docs/PERFORMANCE.md).
    log "napi busy polling: xblade with and without --napi-busy-poll-us, tmpfs, QD 1 and 16"
    lab 1500 1
    variants=("default:" "napi:--napi-busy-poll-us 20 --napi-busy-poll-budget 64"
              "busypoll:--busy-poll" "busypoll-napi:--busy-poll --napi-busy-poll-us 20 --napi-busy-poll-budget 64")
    for rep in $(seq "$REPEAT"); do
        for v in "${variants[@]}"; do
            name=${v%%:*} flags=${v#*:}
            # shellcheck disable=SC2086
            start_target "$OUT/runs/napi-$name-$rep.log" 1 "$XBLADE" "${XBLADE_ARGS[@]}" $flags 1 0 "$IF_T" "$SHM_IMG"
            verify_pass "napi-$name-$rep"
            for qd in 1 16; do
                run_bench "ablation-read-qd$qd-$name-$rep" xblade "$qd" 100
                run_bench "ablation-write-qd$qd-$name-$rep" xblade "$qd" 0
            done
            stop_target
        done
    done
fi

if want ablation && want disk; then
    log "ablations on the disk image (io_uring path): QD 64 reads"
    lab 1500 1
    GEN_SPIN_US_DEFAULT=$GEN_SPIN_US GEN_SPIN_US=$DISK_GEN_SPIN_US
    for rep in $(seq "$REPEAT"); do
        for v in "default:" "event-mode:--spin-us 0" "no-fixed:--tune-no-fixed" "no-defer-taskrun:--tune-no-defer-taskrun" "no-merge:--tune-no-merge"; do
            name=${v%%:*} flags=${v#*:}
            # shellcheck disable=SC2086
            start_target "$OUT/runs/diskablation-$name-$rep.log" 1 "$XBLADE" "${XBLADE_ARGS[@]}" $flags 1 0 "$IF_T" "$DISK_IMG"
            verify_pass "diskablation-$name-$rep"
            run_bench "ablation-disk-read-qd64-$name-$rep" xblade 64 100
            stop_target
        done
    done
    GEN_SPIN_US=$GEN_SPIN_US_DEFAULT
fi

if want exports; then
    # The same total load over 1, 8 and 64 exports of one xblade process on one interface
    # (one veth link, one RX queue, so one worker and one UMEM for all exports). With N
    # exports, each has a tmpfs image of its own of 64 MiB / N, fully allocated (so the
    # data is 64 MiB in every case, and every export gets the same engine: auto maps a
    # memory-backed file only when it has no holes); the generator spans the whole of
    # each and sends each new request to the next export in turn.
    EXPORT_TOTAL_SECTORS=$(( 64 * 2048 ))
    log "exports: tmpfs, $EXPORT_COUNTS exports in one process, QD 16 and 64 in all (MTU 1500)"
    for n in $EXPORT_COUNTS; do
        for ((i = 0; i < n; i++)); do
            # shellcheck disable=SC2017 # the generator's span is EXPORT_TOTAL_SECTORS / n
            fallocate -l $(( EXPORT_TOTAL_SECTORS / n * 512 )) "$EXPORT_IMG_PREFIX$n-$i.img"
        done
    done
    lab 1500 1
    for rep in $(seq "$REPEAT"); do
        for n in $EXPORT_COUNTS; do
            dir="$OUT/runs/exports$n-$rep"
            mkdir -p "$dir/state"
            {
                printf '[defaults]\ncontrol = "%s"\nstate_dir = "%s"\n' "$dir/control.sock" "$dir/state"
                printf 'pin = false\nframes = 4096\nbatch = 64\nbusy_poll = false\n'
                for ((i = 0; i < n; i++)); do
                    printf '\n[[export]]\nshelf = 1\nslot = %d\nfile = "%s"\ninterfaces = ["%s"]\n' \
                        "$i" "$EXPORT_IMG_PREFIX$n-$i.img" "$IF_T"
                done
            } >"$dir/xblade.toml"
            start_target "$OUT/runs/exports$n-xblade-$rep.log" 1 "$XBLADE" --config "$dir/xblade.toml"
            # One `exporting` line per export: all of them are served.
            for _ in $(seq 200); do
                [ "$(grep -c exporting "$OUT/runs/exports$n-xblade-$rep.log")" -ge "$n" ] && break
                sleep 0.05
            done
            [ "$(grep -c exporting "$OUT/runs/exports$n-xblade-$rep.log")" -ge "$n" ] || die "xblade did not export $n exports"
            target_mem "$TARGET_PID" >"$OUT/runs/exports$n-mem-start-$rep.txt"
            verify_pass "exports$n-xblade-$rep" --exports "$n" --span-sectors $(( EXPORT_TOTAL_SECTORS / n ))
            for qd in 16 64; do
                for op in read write; do
                    rpct=100; [ $op = write ] && rpct=0
                    run_bench "exports$n-$op-qd$qd-xblade-$rep" xblade "$qd" "$rpct" \
                        --exports "$n" --span-sectors $(( EXPORT_TOTAL_SECTORS / n ))
                done
            done
            stop_target
        done
    done
    rm -f "$EXPORT_IMG_PREFIX"*.img
fi

# What the targets reported (XDP mode, bind mode, sectors per frame, I/O engine, command
# line), gathered from every run, into settings.json: not what this script assumes.
python3 - "$OUT" <<'PY' || die "cannot add the targets' reported settings to settings.json"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
settings = json.loads((out / "settings.json").read_text())
seen = {}
for path in sorted((out / "runs").glob("*.json")):
    try:
        rep = json.loads(path.read_text()).get("target_reported")
    except (ValueError, AttributeError):
        continue
    if not rep:
        continue
    kind = (json.loads(path.read_text()).get("target_cpu") or {}).get("kind", "?")
    for key, value in rep.items():
        if key == "cmdline":
            value = " ".join(value)
        values = value if isinstance(value, list) else [value]
        seen.setdefault(kind, {}).setdefault(key, set()).update(values)
settings["target_reported"] = {k: {f: sorted(v) for f, v in d.items()} for k, d in seen.items()}
(out / "settings.json").write_text(json.dumps(settings, indent=1) + "\n")
PY

log "report"
# The report refuses (non-zero, no table) a run with errors, a missing JSON or a missing
# repetition; then this run has failed.
rm -f "$OUT/table.txt"
python3 "$REPO/scripts/bench_report.py" "$OUT" >"$OUT/table.txt.partial" \
    || { rm -f "$OUT/table.txt.partial"; die "no table: the report found errors, missing runs or missing repetitions (above)"; }
mv "$OUT/table.txt.partial" "$OUT/table.txt"
cat "$OUT/table.txt"
log "results in $OUT (table.txt, summary.json, latency-cdf.svg, runs/)"
