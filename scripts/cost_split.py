#!/usr/bin/env python3
"""Classifies a target's perf samples into who pays for them, for scripts/cost-split.sh.

    cost_split.py run PERF_SCRIPT_TXT BENCH_JSON SYSCALLS_TXT META_JSON OUT_JSON
        one run: prints its table, writes OUT_JSON
    cost_split.py summary OUT_JSON...
        median and spread (min..max) of the runs of each case, and the projection inputs
    cost_split.py markdown OUT_JSON...
        the same medians as two markdown tables (the split, and xblade's own share)

PERF_SCRIPT_TXT is `perf script -F tid,period,ip,sym,dso` of a `perf record -e cpu-clock -g
-p PID` of the target: one block per sample, a header line "TID PERIOD" and the call chain,
leaf first, one "ADDR SYMBOL (DSO)" line per frame. Every sample is weighted by its period
(ns of CPU). Shares are of the target's sampled CPU; µs per request multiplies a share by the
target's CPU per request measured from /proc (utime + stime over the generator's measured
window, xblade-bench --target-pid), so the buckets add up to that figure.

The buckets (first rule that matches wins, in this order):

  a  userspace: the leaf frame is not in the kernel. Split by the leaf symbol:
     a.clock      clock_gettime / Instant::now (the spin window, latency stamps, counters)
     a.worker     the worker loop (worker::run, Worker::serve/receive/transmit/refill/...)
     a.target     protocol: parse and decide (xblade_target::, aoe_proto::, decide*)
     a.planner    I/O planning and completion (worker::io, worker::plan, finish_io, merge)
     a.ring       AF_XDP and io_uring ring code (xsk::, uring::, io_uring::, ring)
     a.stats      counting (stats::, hdrhistogram, counters, latency histograms)
     a.libc       libc (memcpy/memset, syscall stubs), a.other: everything else (listed)
  c  XDP / AF_XDP receive run on the target's own time: a frame of the XDP program
     (bpf_prog_*), generic XDP (do_xdp_generic, netif_receive_generic_xdp) or the XSK
     receive (xsk_generic_rcv, __xsk_rcv, xsk_rcv, __xsk_map_redirect) anywhere in the stack
  b  copy-mode AF_XDP transmit inside our sendto (what a zero-copy NIC removes). A kernel
     sample under xsk_sendmsg / __xsk_generic_xmit that is not entry/exit code:
     b.peer-rx    the peer's receive that veth runs inside our sendto: softirq and
                  backlog processing (net_rx_action, process_backlog, __netif_receive_skb*),
                  the generator's AF_PACKET ring (tpacket_rcv, packet_rcv) and the skb's
                  free at the end of it
     b.xmit       the rest: skb allocation, copy of the frame into it, __dev_direct_xmit,
                  veth_xmit, destructor (xsk_destruct_skb), ring bookkeeping
  d  syscalls and sleeping (a zero-copy NIC keeps these, per batch rather than per frame):
     d.entry      the leaf is syscall entry/exit code (entry_SYSCALL_64*, do_syscall_64,
                  syscall_exit_*, exit_to_user_mode*, __x64_sys_* stubs, __sys_sendto's
                  own socket lookup, fpu restore, rseq)
     d.uring      under io_uring_enter (submission, task work, completion wait), not sched
     d.sched      the scheduler and wake-ups (schedule, __schedule, finish_task_switch,
                  try_to_wake_up, idle entry) wherever they are called from
     d.poll       poll on the socket (xsk_poll, do_sys_poll, io_poll_*)
  e  other kernel: interrupts, timers, page faults, anything not above (listed)
"""
import json
import re
import statistics
import sys
from collections import defaultdict

KERNEL_DSO = "[kernel.kallsyms]"

# Assumptions of the projection to a zero-copy NIC (not measurable on veth): requests per
# TX kick at saturation (the worker's RX batch, --batch 64); what the driver's
# ndo_xsk_wakeup adds to a kick's syscall (a doorbell or NAPI schedule; generous); and the
# driver's per-frame work (RX + XDP program + XSK redirect, TX post + completion) when its
# NAPI runs on the worker's core, from the 20-30 Mpps per core AF_XDP zero-copy reaches
# for RX and for TX alone (about 0.04 µs each).
PROJ_BATCH = 64
PROJ_WAKEUP_US = 0.5
PROJ_NAPI_US = 0.08

# Userspace, by leaf symbol (regexes, first match wins).
USER_RULES = [
    ("a.clock", r"clock_gettime|Instant>?::(now|elapsed)|Timespec>?::now|now_ns"),
    ("a.stats", r"hdrhistogram|stats::|LatencyHistogram|Counters|histogram"),
    ("a.target", r"xblade_target::|aoe_proto::|decide|::parse|Header|target::"),
    ("a.planner", r"worker::io::|worker::plan::|finish_io|complete_io|Mergeable|merge|InFlight|backend::"),
    ("a.ring", r"xsk::|uring::|io_uring::|Ring|ring::|FramePool|FrameMap|frames::"),
    ("a.worker", r"worker::|Worker"),
    ("a.libc", r"^__mem|^mem|__libc_|^syscall$|__GI_|^_?_?poll|libc"),
]
# Kernel: frames anywhere in the stack.
XDP_RX = re.compile(r"^bpf_prog_|^do_xdp_generic|^netif_receive_generic_xdp|^xsk_generic_rcv|^__xsk_rcv|^xsk_rcv|^__xsk_map_redirect|^xdp_do_generic_redirect|^bpf_xdp_redirect_map")
SENDTO_XSK = re.compile(r"^xsk_sendmsg$|^__xsk_generic_xmit$|^xsk_generic_xmit$")
PEER_RX = re.compile(r"^net_rx_action$|^process_backlog$|^__netif_receive_skb|^tpacket_rcv$|^packet_rcv$|^handle_softirqs$|^__napi_poll$|^do_softirq")
ENTRY_LEAF = re.compile(r"^entry_SYSCALL_64|^do_syscall_64$|^syscall_exit|^exit_to_user_mode|^__x64_sys_|^syscall_return_via_sysret|^restore_fpregs|^switch_fpu|^fpregs_|^arch_exit_to_user|^__sys_sendto$|^__sys_recvfrom$|^x64_sys_call$|^__rseq|^rseq_")
SCHED = re.compile(r"^schedule$|^__schedule$|^finish_task_switch|^try_to_wake_up$|^pick_next_task|^__switch_to|^do_idle$|^schedule_hrtimeout|^dequeue_task|^enqueue_task|^psi_|^update_curr|^ttwu_")
URING = re.compile(r"io_uring_enter|^io_submit_sqes|^io_cqring_wait|^io_run_task_work|^tctx_task_work|^io_uring_|^__io_")
POLL = re.compile(r"^xsk_poll$|^do_sys_poll$|^__x64_sys_ppoll|^__x64_sys_poll|^io_poll_|^io_arm_poll")

BUCKET_NAMES = {
    "a": "userspace xblade (its own work: stays with a zero-copy NIC)",
    "a.worker": "worker loop (serve, receive, transmit, refill, reap)",
    "a.target": "target: parse and decide",
    "a.planner": "I/O planning and completion (null backend)",
    "a.ring": "AF_XDP / io_uring ring code, frame pool",
    "a.stats": "stats counting (counters, latency histograms)",
    "a.clock": "clock reads (spin window, latency stamps)",
    "a.libc": "libc (mem*, syscall stubs)",
    "a.other": "other userspace",
    "b": "kernel copy-mode AF_XDP TX inside sendto (a zero-copy NIC removes it)",
    "b.xmit": "skb alloc, copy, __dev_direct_xmit, veth_xmit, skb destructor",
    "b.peer-rx": "peer receive run by veth inside our sendto (softirq, tpacket_rcv)",
    "c": "kernel XDP / AF_XDP receive on the target's time",
    "d": "syscalls, io_uring, sleeping and wake-ups",
    "d.entry": "syscall entry/exit",
    "d.uring": "io_uring_enter (submit, task work, wait)",
    "d.sched": "scheduler, sleep and wake-up",
    "d.poll": "poll on the socket",
    "e": "other kernel (interrupts, timers, faults, ...)",
}
ORDER = ["a", "a.worker", "a.target", "a.planner", "a.ring", "a.stats", "a.clock", "a.libc",
         "a.other", "b", "b.xmit", "b.peer-rx", "c", "d", "d.entry", "d.uring", "d.sched",
         "d.poll", "e"]


def parse_samples(path):
    """Yields (period_ns, [(symbol, dso), ...] leaf first)."""
    period, frames = None, []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                if period is not None:
                    yield period, frames
                period, frames = None, []
                continue
            if not line.startswith("\t"):
                # A sample's header: "TID PERIOD" (the TID right-aligned: may start with
                # spaces); call chain frames start with a tab.
                if period is not None:
                    yield period, frames
                period, frames = int(line.split()[-1]), []
                continue
            m = re.match(r"\s*([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$", line)
            if m:
                sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(2))
                frames.append((sym, m.group(3)))
    if period is not None:
        yield period, frames


def classify(frames):
    """(bucket, leaf symbol) of one sample."""
    if not frames:
        return "e", "[no stack]"
    leaf, dso = frames[0]
    if dso != KERNEL_DSO:
        for bucket, rx in USER_RULES:
            if re.search(rx, leaf) or (bucket == "a.libc" and "libc" in dso):
                return bucket, leaf
        if "vdso" in dso:
            return "a.clock", leaf
        return "a.other", leaf
    syms = [s for s, d in frames if d == KERNEL_DSO]
    if any(XDP_RX.search(s) for s in syms):
        return "c", leaf
    if ENTRY_LEAF.search(leaf):
        return "d.entry", leaf
    if SCHED.search(leaf) or any(SCHED.search(s) for s in syms[:12]) and not any(SENDTO_XSK.search(s) for s in syms):
        return "d.sched", leaf
    if any(SENDTO_XSK.search(s) for s in syms):
        return ("b.peer-rx" if any(PEER_RX.search(s) for s in syms) else "b.xmit"), leaf
    if any(URING.search(s) for s in syms):
        return "d.uring", leaf
    if any(POLL.search(s) for s in syms):
        return "d.poll", leaf
    return "e", leaf


def run(perf_txt, bench_json, syscalls_txt, meta_json, out_json):
    bench = json.load(open(bench_json))
    meta = json.load(open(meta_json))
    cpu = bench["target_cpu"]
    res = bench["results"]["all"]
    ops, iops = res["ops"], res["iops"]
    us_per_req = cpu["us_per_request"]
    by_bucket = defaultdict(int)
    by_sym = defaultdict(lambda: defaultdict(int))
    total = 0
    for period, frames in parse_samples(perf_txt):
        bucket, sym = classify(frames)
        by_bucket[bucket] += period
        by_sym[bucket][sym] += period
        total += period
    if total == 0:
        sys.exit(f"{perf_txt}: no samples")
    for top in "abde":
        by_bucket[top] = sum(v for k, v in by_bucket.items() if k.startswith(top + "."))
    syscalls = {}
    for line in open(syscalls_txt):
        m = re.match(r"\s*([\d,]+)\s+syscalls:sys_enter_(\w+)", line)
        if m:
            syscalls[m.group(2)] = int(m.group(1).replace(",", ""))
    perf_s = meta["perf_seconds"]
    reqs_in_perf = iops * perf_s
    out = {
        "case": meta["case"], "rep": meta["rep"], "meta": meta,
        "iops": iops, "ops": ops, "target_cpu_s": cpu["seconds"],
        "us_per_request_proc": us_per_req,
        "perf_cpu_s": total / 1e9, "perf_seconds": perf_s,
        "us_per_request_perf": total / 1e3 / reqs_in_perf if reqs_in_perf else None,
        "share": {k: by_bucket[k] / total for k in ORDER},
        "us": {k: by_bucket[k] / total * us_per_req for k in ORDER},
        "top_symbols": {k: sorted(((s, v / total) for s, v in d.items()), key=lambda x: -x[1])[:8]
                        for k, d in by_sym.items()},
        "syscalls_per_request": {k: v / reqs_in_perf for k, v in syscalls.items()} if reqs_in_perf else {},
        "latency_p50_us": (res.get("latency") or {}).get("p50_ns", 0) / 1e3,
    }
    json.dump(out, open(out_json, "w"), indent=1)
    print_run(out)


def print_run(r):
    print(f"## {r['case']} rep {r['rep']}: {r['iops']:.0f} req/s, target CPU {r['us_per_request_proc']:.3f} µs/req "
          f"from /proc ({r['target_cpu_s']:.2f} s), {r['us_per_request_perf']:.3f} µs/req from perf "
          f"({r['perf_cpu_s']:.2f} s sampled in {r['perf_seconds']:.1f} s), p50 {r['latency_p50_us']:.0f} µs")
    print(f"{'bucket':<10} {'what':<70} {'% CPU':>7} {'µs/req':>8}")
    for k in ORDER:
        indent = "  " if "." in k else ""
        print(f"{indent + k:<10} {BUCKET_NAMES[k]:<70} {100 * r['share'][k]:>6.1f}% {r['us'][k]:>8.3f}")
    print("syscalls per request: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(r["syscalls_per_request"].items()) if v > 0))
    print("top symbols per bucket (% of the target's CPU; the 'other' buckets are what no rule names):")
    for k in ORDER:
        if k in r["top_symbols"] and r["share"][k] > 0.005:
            print(f"  {k}: " + "; ".join(f"{s} {100 * v:.1f}%" for s, v in r["top_symbols"][k][:6]))
    print()


def spread(values):
    return statistics.median(values), min(values), max(values)


def summary(paths):
    runs = [json.load(open(p)) for p in paths]
    cases = defaultdict(list)
    for r in runs:
        cases[r["case"]].append(r)
    print("# Summary: median (min..max) over repetitions; µs per request of the target's CPU")
    print()
    for case, rs in cases.items():
        m = rs[0]["meta"]
        print(f"## {case}: {len(rs)} repetitions; {m['settings']}")
        iops = spread([r["iops"] for r in rs])
        us = spread([r["us_per_request_proc"] for r in rs])
        print(f"req/s {iops[0]:.0f} ({iops[1]:.0f}..{iops[2]:.0f}); target CPU {us[0]:.3f} µs/req "
              f"({us[1]:.3f}..{us[2]:.3f}) from /proc; from perf "
              f"{statistics.median([r['us_per_request_perf'] for r in rs]):.3f}")
        print(f"{'bucket':<10} {'what':<70} {'% CPU':>18} {'µs/req':>22}")
        for k in ORDER:
            sh = spread([100 * r["share"][k] for r in rs])
            u = spread([r["us"][k] for r in rs])
            indent = "  " if "." in k else ""
            print(f"{indent + k:<10} {BUCKET_NAMES[k]:<70} {sh[0]:>5.1f} ({sh[1]:>4.1f}..{sh[2]:>4.1f}) "
                  f"{u[0]:>7.3f} ({u[1]:.3f}..{u[2]:.3f})")
        sc = defaultdict(list)
        for r in rs:
            for k, v in r["syscalls_per_request"].items():
                sc[k].append(v)
        print("syscalls per request (median): " + ", ".join(
            f"{k} {statistics.median(v):.3f}" for k, v in sorted(sc.items()) if statistics.median(v) > 0))
        # The projection (docs/PERFORMANCE.md, "What xblade itself costs"): xblade's own
        # userspace U, measured; plus one TX kick (sendto) per batch of PROJ_BATCH requests,
        # costing the syscall entry/exit measured here per syscall (E) plus an assumed
        # driver wake-up (PROJ_WAKEUP_US); plus, when the NIC's NAPI runs on the same core,
        # an assumed PROJ_NAPI_US per request.
        own = spread([r["us"]["a"] for r in rs])
        calls = [sum(r["syscalls_per_request"].values()) for r in rs]
        entry_per_call = statistics.median(
            [r["us"]["d.entry"] / c for r, c in zip(rs, calls) if c > 0] or [0.0])
        kick = (entry_per_call + PROJ_WAKEUP_US) / PROJ_BATCH
        print(f"projection: own userspace U {own[0]:.3f} µs/req ({own[1]:.3f}..{own[2]:.3f}); "
              f"syscall entry/exit E {entry_per_call:.3f} µs per syscall; kick (E + {PROJ_WAKEUP_US}) / "
              f"{PROJ_BATCH} = {kick:.3f} µs/req")
        for label, u in (("median", own[0]), ("lowest", own[1])):
            t_a = u + kick
            t_b = t_a + PROJ_NAPI_US
            print(f"  {label}: NAPI on other cores {t_a:.3f} µs/req = {1 / t_a:.2f} M req/s per core; "
                  f"NAPI on the same core (+{PROJ_NAPI_US}) {t_b:.3f} µs/req = {1 / t_b:.2f} M req/s per core")
        print()


def markdown(paths):
    runs = [json.load(open(p)) for p in paths]
    cases = defaultdict(list)
    for r in runs:
        cases[r["case"]].append(r)

    def med(rs, f):
        v = [f(r) for r in rs]
        return statistics.median(v), min(v), max(v)

    def cell(t, fmt="{:.2f}"):
        return f"{fmt.format(t[0])} ({fmt.format(t[1])}..{fmt.format(t[2])})"

    print("| case | reps | req/s | target CPU µs/req (/proc) | a: xblade userspace | b.xmit: skb, copy, veth_xmit "
          "| b.peer-rx: peer's receive in our sendto | c: XDP/XSK receive | d: syscalls, io_uring, sleep | e: other kernel "
          "| sendto per request |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case, rs in cases.items():
        row = [case, str(len(rs)), cell(med(rs, lambda r: r["iops"] / 1e3), "{:.0f}k"),
               cell(med(rs, lambda r: r["us_per_request_proc"]))]
        for k in ["a", "b.xmit", "b.peer-rx", "c", "d", "e"]:
            u = med(rs, lambda r: r["us"][k])
            sh = med(rs, lambda r: 100 * r["share"][k])
            row.append(f"{u[0]:.3f} ({u[1]:.3f}..{u[2]:.3f}), {sh[0]:.0f}%")
        row.append(f"{med(rs, lambda r: r['syscalls_per_request'].get('sendto', 0))[0]:.3f}")
        print("| " + " | ".join(row) + " |")
    print()
    keys = ["a.target", "a.planner", "a.worker", "a.libc", "a.ring", "a.stats", "a.clock", "a.other"]
    print("| case | a: all | " + " | ".join(k + ": " + BUCKET_NAMES[k] for k in keys) + " |")
    print("|---|---:|" + "---:|" * len(keys))
    for case, rs in cases.items():
        row = [case, cell(med(rs, lambda r: r["us"]["a"]), "{:.3f}")]
        for k in keys:
            row.append(f"{med(rs, lambda r: r['us'][k])[0]:.3f}")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "run" and len(sys.argv) == 7:
        run(*sys.argv[2:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "summary":
        summary(sys.argv[2:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "markdown":
        markdown(sys.argv[2:])
    else:
        sys.exit(__doc__)
