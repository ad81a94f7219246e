#!/usr/bin/env python3
"""Summarises a scripts/bench.sh run: one table (median and min..max over repetitions),
ratios xblade/vblade measured in the same run, summary.json, and a latency CDF plot (SVG).
With an exports group, a table of the same load over 1..N exports of one process (IOPS
relative to one export, memory); with --compare-bin, the previous build (xblade-prev) and
this one side by side; with --scrape-metrics, xblade with /metrics scraped every second
(xblade-scraped) and without, side by side. On the disk, two ceilings: raw fio with CPU 0
idle (fio) and with CPU 0 as busy as the load generator kept it in xblade's run of the same
case (fio-contended, the fair one: this VM's disk is slower while the other vCPU runs); the
table's CPU0 column is CPU 0's busy fraction during each run, to compare them. With a cpu
group, the CPU per request of vblade, xblade in event mode and the zero-work responder in
event mode at QD 16, with their ratios (the responder's against vblade's is the floor).

    python3 scripts/bench_report.py RESULTS_DIR

Refuses (exit 1, a list of problems on stderr, no table, no summary.json) a run in which
any measurement has errors (timeouts, ATA/AoE errors, bad replies, verify failures,
unanswered requests, an interrupted run, a fio error), a run bench.sh expected
(runs/expected.txt) has no readable JSON, or a case has fewer or more repetitions than
settings.json's "repeat", or a run of a case with fio-contended has no CPU 0 busy fraction
(cpu0_busy_frac). The table prints both: err (errors over all repetitions) and reps
(repetitions).
"""
import json
import math
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

def load_runs(runs_dir, problems):
    """{(case, target): [metrics per repetition]}; unreadable files go to problems."""
    table = defaultdict(list)
    for path in sorted(runs_dir.glob("*.json")):
        name = path.stem
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            problems.append(f"{path.name}: not valid JSON ({e})")
            continue
        if name.startswith("queues"):
            m = re.match(r"^(queues\d+-read-qd32x2)-gen(\d+)-(\d+)$", name)
            if m:
                table[(m.group(1), "xblade", m.group(3))].append(bench_metrics(data))
            continue
        if name.startswith("ablation-"):
            m = re.match(r"^(ablation-(?:disk-)?(?:read|write)-qd\d+)-(.+)-(\d+)$", name)
            if m:
                table[(m.group(1), m.group(2), m.group(3))].append(bench_metrics(data))
            continue
        m = re.match(r"^(.+-qd\d+)-(vblade|xblade-prev|xblade-scraped|xblade|fio-contended|fio-net|fio|ceiling-ram|ceiling-xdp|ceiling)-(\d+)$", name)
        if not m:
            continue
        metrics = fio_metrics(data) if m.group(2).startswith("fio") else bench_metrics(data)
        table[(m.group(1), m.group(2), m.group(3))].append(metrics)
    # Two load generators in one repetition add up (queues cases).
    merged = defaultdict(list)
    for (case, target, _rep), parts in table.items():
        if len(parts) == 1:
            merged[(case, target)].append(parts[0])
        else:
            merged[(case, target)].append({
                "iops": sum(p["iops"] for p in parts),
                "mb_s": sum(p["mb_s"] for p in parts),
                "p50_us": max(p["p50_us"] for p in parts),
                "p99_us": max(p["p99_us"] for p in parts),
                "p999_us": max(p["p999_us"] for p in parts),
                "cpu_us": None,
                "retransmits": sum(p["retransmits"] for p in parts),
                "errors": sum(p["errors"] for p in parts),
                "cdf": [],
                "rss_kib": None, "hwm_kib": None, "pin_kib": None,
                "balance": None, "exports": None, "cpu0_busy_frac": None,
            })
    return merged


def bench_metrics(report):
    res = report["results"]["all"]
    lat = res.get("latency") or {}
    errors = report.get("errors", {})
    mem = report.get("target_mem") or {}
    balance = report.get("balance") or {}
    return {
        "rss_kib": mem.get("VmRSS_kib"),
        "hwm_kib": mem.get("VmHWM_kib"),
        "pin_kib": mem.get("VmPin_kib"),
        "balance": balance.get("max_over_min"),
        "exports": (report.get("config") or {}).get("exports", 1),
        # CPU 0's busy fraction while the generator ran (bench.sh: cpu0_busy_frac).
        "cpu0_busy_frac": report.get("cpu0_busy_frac"),
        "iops": res["iops"],
        "mb_s": res["mb_per_s"],
        "p50_us": lat.get("p50_ns", 0) / 1e3,
        "p99_us": lat.get("p99_ns", 0) / 1e3,
        "p999_us": lat.get("p99_9_ns", 0) / 1e3,
        # Requests slower than the median by more than 10 us, per second (xblade-bench's
        # delayed_ops): at QD 1, the step the machine's stalls put in the tail.
        "delayed_per_s": (lat["delayed_ops"] / report["results"]["seconds"]
                          if "delayed_ops" in lat and report["results"].get("seconds") else None),
        # The p99 of the other requests: the target's own tail with the stalls set aside.
        "p99_undelayed_us": lat["p99_undelayed_ns"] / 1e3 if "p99_undelayed_ns" in lat else None,
        "cpu_us": (report.get("target_cpu") or {}).get("us_per_request"),
        # What the disk's block layer counted over the run (bench.sh, disk group only).
        "block_layer": report.get("block_layer"),
        # xblade's own latency split of the run (bench.sh: target_split), when it has one.
        "split": report.get("target_split"),
        "retransmits": errors.get("retransmits", 0),
        "timeouts": errors.get("timeouts", 0),
        "errors": sum(errors.get(k, 0) for k in ("timeouts", "ata_errors", "aoe_errors", "bad_replies", "verify_failures"))
        + report.get("abandoned", 0) + (1 if report.get("interrupted") else 0),
        "cdf": res.get("cdf") or [
            [q, lat.get(k, 0)] for q, k in ((0.5, "p50_ns"), (0.9, "p90_ns"), (0.99, "p99_ns"), (0.999, "p99_9_ns"))
        ],
    }


def fio_metrics(report):
    job = report["jobs"][0]
    side = job["read"] if job["read"]["iops"] > 0 else job["write"]
    pct = side.get("clat_ns", {}).get("percentile", {})
    return {
        "iops": side["iops"],
        "mb_s": side["bw_bytes"] / 1e6,
        "p50_us": pct.get("50.000000", 0) / 1e3,
        "p99_us": pct.get("99.000000", 0) / 1e3,
        "p999_us": pct.get("99.900000", 0) / 1e3,
        "cpu_us": None,
        "retransmits": 0,
        "errors": 1 if job.get("error") else 0,
        "cdf": [],
        "rss_kib": None, "hwm_kib": None, "pin_kib": None,
        "balance": None, "exports": None,
        # CPU 0's busy fraction while fio ran (bench.sh adds it; loaded or idle).
        "cpu0_busy_frac": report.get("cpu0_busy_frac"),
        "block_layer": report.get("block_layer"),
        # fio-net: the network traffic next to fio (its target rate and the rate reached).
        "net_load": report.get("net_load"),
    }


# How far (absolute) CPU 0's busy fraction in a fio run may be from the one meant (the
# xblade run's for fio-contended, none for fio) before the report warns.
CPU0_BUSY_TOLERANCE = 0.10


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values):
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return ""
    return f" [{min(values):.0f}..{max(values):.0f}]"


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def pct(fraction):
    return "-" if fraction is None else f"{fraction * 100:.0f}%"


def case_key(case):
    m = re.match(r"^(.*?)(\d*)-(read|write)-qd(\d+)", case)
    if not m:
        return (case, 0, "", 0)
    return (m.group(1), int(m.group(2) or 0), m.group(3), int(m.group(4)))


def mib(kib):
    return "-" if kib is None else f"{kib / 1024:.1f}"


def exports_table(summary, runs):
    """The exports group: the same total load over 1..N exports of one xblade process."""
    rows = {}
    for case in summary:
        m = re.match(r"^exports(\d+)-(read|write)-qd(\d+)$", case)
        if m and "xblade" in summary[case]:
            rows[(m.group(2), int(m.group(3)), int(m.group(1)))] = case
    if not rows:
        return []
    lines = ["", "Many exports: the same total load over N exports of one xblade process (tmpfs, "
             "1 KiB requests, MTU 1500, one veth link, 1 RX queue = one worker and one UMEM "
             "for all; total span 64 MiB = 64 MiB / N per export; each new request to the next "
             "export in turn)",
             f"{'op':5} {'QD':>3} {'exports':>7} {'IOPS median [min..max]':>28} {'vs 1':>6} "
             f"{'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} {'CPU us/req':>10} {'RSS MiB':>8} "
             f"{'VmPin MiB':>9} {'max/min':>8} {'retx':>5}"]
    lines.append("-" * len(lines[-1]))
    for (op, qd, n) in sorted(rows):
        case = rows[(op, qd, n)]
        row = summary[case]["xblade"]
        reps = runs[(case, "xblade")]
        one = summary.get(rows.get((op, qd, 1), ""), {}).get("xblade")
        ratio = row["iops"] / one["iops"] if one and one["iops"] else None
        row["vs_one_export"] = ratio
        row["rss_kib"] = med([r["rss_kib"] for r in reps])
        row["pin_kib"] = med([r["pin_kib"] for r in reps])
        row["balance"] = med([r["balance"] for r in reps])
        iops = f"{row['iops']:.0f}{spread([r['iops'] for r in reps])}"
        lines.append(f"{op:5} {qd:>3} {n:>7} {iops:>28} {fmt(ratio, 3):>6} {fmt(row['p50_us']):>8} "
                     f"{fmt(row['p99_us']):>8} {fmt(row['p999_us']):>9} {fmt(row['cpu_us'], 2):>10} "
                     f"{mib(row['rss_kib']):>8} {mib(row['pin_kib']):>9} {fmt(row['balance'], 3):>8} "
                     f"{row['retransmits']:>5}")
    lines.append("vs 1: IOPS over the 1-export case of the same op and QD (medians); max/min: "
                 "highest over lowest per-export IOPS in a run (median over runs); RSS and "
                 "VmPin of the target after the run (median)")
    return lines


def compare_table(summary, runs, base="xblade-prev", other="xblade",
                  title="Single export: previous build (xblade-prev) and this one (xblade), same run, "
                        "interleaved per repetition",
                  labels=("prev", "current", "cur/prev", "prev/cur"), key="ratio_xblade_prev"):
    """--compare-bin: the previous build and this one, same cases, interleaved per repetition
    (and the same for --scrape-metrics: plain xblade and xblade scraped every second)."""
    cases = sorted((c for c, t in summary.items() if other in t and base in t), key=case_key)
    if not cases:
        return []
    b, o, ratio_label, pair = labels
    lines = ["", title,
             f"{'case':20} {b + ' IOPS [min..max]':>26} {o + ' IOPS [min..max]':>26} {ratio_label:>8} "
             f"{'p99 us ' + pair:>16} {'CPU us/req ' + pair:>20} {'RSS MiB ' + pair:>17} {'retx':>9}"]
    lines.append("-" * len(lines[-1]))
    for case in cases:
        p, c = summary[case][base], summary[case][other]
        pr, cr = runs[(case, base)], runs[(case, other)]
        ratio = c["iops"] / p["iops"] if p["iops"] else None
        summary[case][key] = ratio
        prss, crss = med([r["rss_kib"] for r in pr]), med([r["rss_kib"] for r in cr])
        lines.append(f"{case:20} {p['iops']:>11.0f}{spread([r['iops'] for r in pr]):>15} "
                     f"{c['iops']:>11.0f}{spread([r['iops'] for r in cr]):>15} {fmt(ratio, 3):>8} "
                     f"{fmt(p['p99_us']) + ' / ' + fmt(c['p99_us']):>16} "
                     f"{fmt(p['cpu_us'], 2) + ' / ' + fmt(c['cpu_us'], 2):>20} "
                     f"{mib(prss) + ' / ' + mib(crss):>17} {str(p['retransmits']) + '/' + str(c['retransmits']):>9}")
    return lines


def split_table(summary, runs):
    """xblade's own latency split (target_split of its runs: RX ring to TX ring end to end,
    the disk's part from submission to completion, xblade's part the rest), medians over
    the repetitions; the last columns are xblade's part over the end-to-end time (p50 and
    mean). Only cases whose every xblade run has disk requests.

    Then, from the generator's side: the closed loop keeps QD requests out, so its mean
    round trip is QD / IOPS (Little's law); "outside" is that minus xblade's RX-to-TX mean
    (the veth hops and the generator, its wake-ups included), and "disk holds" the disk's
    mean time over the round trip: the share of the QD the disk actually has, which bounds
    the IOPS against fio's at the full QD."""
    cases = sorted((c for (c, t), reps in runs.items() if t == "xblade"
                    and all(r.get("split") and r["split"]["disk"]["count"] for r in reps)), key=case_key)
    if not cases:
        return []
    lines = ["", "xblade's own latency split (end to end = RX ring to TX ring; disk = submission to "
                 "completion; xblade = the rest), medians of the repetitions",
             f"{'case':20} {'e2e p50/p99 us':>16} {'disk p50/p99 us':>16} {'xblade p50/p99 us':>18} "
             f"{'xblade/e2e p50':>15} {'xblade/e2e mean':>16} {'round trip us':>14} {'outside us':>11} {'disk holds':>11}"]
    lines.append("-" * len(lines[-1]))
    for case in cases:
        reps = [r["split"] for r in runs[(case, "xblade")]]
        m = {part: {k: med([r[part][k] for r in reps]) / 1e3 for k in ("p50_ns", "p99_ns", "mean_ns")}
             for part in ("end_to_end", "disk", "xblade")}
        p50_share = med([r["xblade"]["p50_ns"] / r["end_to_end"]["p50_ns"] for r in reps if r["end_to_end"]["p50_ns"]])
        mean_share = med([r["xblade"]["mean_ns"] / r["end_to_end"]["mean_ns"] for r in reps if r["end_to_end"]["mean_ns"]])
        # A case without one QD in its name (none has a split today) gets no round trip.
        qd_match = re.search(r"-qd(\d+)$", case)
        qd = int(qd_match.group(1)) if qd_match else 0
        loops = [(qd / r["iops"] * 1e6, r["split"]) for r in runs[(case, "xblade")] if r["iops"] and qd]
        round_trip = med([rt for rt, _ in loops]) if loops else None
        outside = med([rt - sp["end_to_end"]["mean_ns"] / 1e3 for rt, sp in loops]) if loops else None
        disk_holds = med([sp["disk"]["mean_ns"] / 1e3 / rt for rt, sp in loops]) if loops else None
        summary[case]["xblade"]["split"] = {**m, "xblade_share_p50": p50_share, "xblade_share_mean": mean_share,
                                            "round_trip_mean_us": round_trip, "outside_mean_us": outside,
                                            "disk_share_of_qd": disk_holds}
        pair = lambda part: f"{fmt(m[part]['p50_ns'])} / {fmt(m[part]['p99_ns'])}"
        lines.append(f"{case:20} {pair('end_to_end'):>16} {pair('disk'):>16} {pair('xblade'):>18} "
                     f"{fmt(p50_share and p50_share * 100) + ' %':>15} {fmt(mean_share and mean_share * 100) + ' %':>16} "
                     f"{fmt(round_trip):>14} {fmt(outside):>11} {fmt(disk_holds and disk_holds * 100) + ' %':>11}")
    return lines


def block_table(summary, runs):
    """The disk as its block layer counted it over each run (bench.sh's block_layer, from
    /sys/class/block/DEV/stat): requests per second, their mean time from the request's
    start to its completion (the scheduler's queue and the device), and the mean number in
    flight (time_in_queue over the seconds). Medians of the repetitions. Warm-up included,
    and for the targets the verify pass's tail is not: the window is the generator's."""
    rows = []
    for (case, target), reps in sorted(runs.items(), key=lambda kv: (case_key(kv[0][0]), kv[0][1])):
        blocks = [r.get("block_layer") for r in reps]
        if not blocks or any(not b or not b["requests"] or b["seconds"] <= 0 for b in blocks):
            continue
        m = {"iops": med([b["requests"] / b["seconds"] for b in blocks]),
             "mean_us": med([1e3 * b["ticks_ms"] / b["requests"] for b in blocks]),
             "depth": med([b["time_in_queue_ms"] / 1e3 / b["seconds"] for b in blocks])}
        summary.setdefault(case, {}).setdefault(target, {})["block_layer"] = m
        rows.append(f"{case:20} {target:14} {m['iops']:>10.0f} {fmt(m['mean_us']):>9} {m['depth']:>7.1f}")
    if not rows:
        return []
    head = f"{'case':20} {'target':14} {'req/s':>10} {'mean us':>9} {'depth':>7}"
    return ["", "the disk as its block layer counted it (request start to completion), medians of the repetitions",
            head, "-" * len(head)] + rows


def quantile_us(cdf, q):
    """The latency at quantile q (a point of xblade-bench's cdf), in us, or None."""
    for point_q, ns in cdf:
        if abs(point_q - q) < 1e-9:
            return ns / 1e3
    return None


def stalls_table(out, summary, runs):
    """QD 1 and the machine's own stalls. xblade-stalls ran on both CPUs, idle otherwise,
    before each repetition of the group's QD 1 cases (runs/stalls-GROUP-REP.json); each
    stall of at least 10 us on the CPU that holds the request in flight delays it by that
    much. Per target: requests per second delayed by more than 10 us past the median
    (delayed_ops) and their share of all requests. When the share is above 1 %, the p99 is
    inside the step the stalls make, whatever the target; the p97 is below it, and so is
    the p99 of the requests that were not delayed (p99_undelayed). Where every target has
    about the same delayed requests per second, near the stalls' rate, those are the
    machine's; then the xblade/vblade ratio of the undelayed p99 is the targets' own."""
    per_group = defaultdict(list)
    for path in sorted((out / "runs").glob("stalls-*.json")):
        m = re.match(r"^stalls-(.+)-(\d+)$", path.stem)
        try:
            cpus = json.loads(path.read_text())["cpus"]
        except (OSError, ValueError, KeyError):
            continue
        if m:
            per_group[m.group(1)].append({c["cpu"]: c for c in cpus})
    rows = []
    for case in sorted(summary, key=case_key):
        key = case_key(case)
        if key[3] != 1:
            continue
        group = key[0] + (str(key[1]) if key[1] else "")
        group = re.sub(r"(busypoll|event)$", "", group)
        for target, row in summary[case].items():
            if not isinstance(row, dict) or "iops" not in row:
                continue
            reps = runs.get((case, target), [])
            delayed = med([r.get("delayed_per_s") for r in reps])
            if delayed is None or not row["iops"]:
                continue
            share = delayed / row["iops"]
            p97 = med([quantile_us(r["cdf"], 0.97) for r in reps])
            undelayed = med([r.get("p99_undelayed_us") for r in reps])
            row["delayed_per_s"] = delayed
            row["delayed_share"] = share
            row["p97_us"] = p97
            row["p99_undelayed_us"] = undelayed
            rows.append((group, f"{case:24} {target:12} {row['iops']:>9.0f} {fmt(row['p50_us']):>7} {fmt(p97):>7} "
                                f"{fmt(row['p99_us']):>7} {delayed:>10.0f} {share * 100:>8.2f}% {fmt(undelayed):>14}"))
        pair = summary[case]
        if pair.get("xblade", {}).get("p99_undelayed_us") and pair.get("vblade", {}).get("p99_undelayed_us"):
            r = pair["xblade"]["p99_undelayed_us"] / pair["vblade"]["p99_undelayed_us"]
            pair["ratio_xblade_vblade"]["p99_undelayed"] = r
            rows.append((group, f"{'':24} {'xblade/vblade':12} {'':9} {'':7} {'':7} "
                                f"{fmt(pair['ratio_xblade_vblade']['p99'], 2) + 'x':>7} {'':10} {'':9} {r:>13.2f}x"))
    if not rows:
        return []
    head = (f"{'case':24} {'target':12} {'IOPS':>9} {'p50 us':>7} {'p97 us':>7} {'p99 us':>7} "
            f"{'delayed/s':>10} {'delayed':>9} {'p99 undelayed':>14}")
    lines = ["", "QD 1 and the machine's stalls: requests delayed more than 10 us past the median "
             "(per second, share of all; medians of the repetitions). Above 1 %, the p99 is in the "
             "stalls' step whatever the target", head, "-" * len(head)]
    lines += [line for _, line in rows]
    for group in sorted({g for g, _ in rows}):
        reps = per_group.get(group, [])
        if not reps:
            continue
        cells = []
        stalls = {}
        for cpu in sorted({c for rep in reps for c in rep}):
            values = [rep[cpu]["stalls_at_least_10us_per_s"] for rep in reps if cpu in rep]
            lost = [rep[cpu]["lost_frac"] for rep in reps if cpu in rep]
            stalls[str(cpu)] = {"stalls_at_least_10us_per_s": med(values), "lost_frac": med(lost)}
            cells.append(f"CPU {cpu} {med(values):.0f}/s{spread(values)} (time lost {med(lost) * 100:.1f} %)")
        summary.setdefault("stalls", {})[group] = stalls
        lines.append(f"stalls >= 10 us, group {group}, measured idle before each repetition: " + "; ".join(cells))
    return lines


# Buffer count vblade advertises in its Query Config reply (Debian's vblade 25).
VBLADE_BUFFERS = 16


def cpu_table(summary, runs):
    """The cpu group: CPU per request at QD 16 with every target sleeping when idle, and the
    ratios against vblade. The responders' are the floor any target has on this link: with
    zeros (ceiling), and moving the image's data from RAM (ceiling-ram)."""
    lines = []
    kinds = ("vblade", "xblade", "ceiling", "ceiling-ram")
    for op in ("read", "write"):
        case = f"cpu-{op}-qd16"
        pair = summary.get(case, {})
        if not all(t in pair and pair[t]["cpu_us"] for t in kinds):
            continue
        if not lines:
            lines += ["", "CPU per request at QD 16, every target sleeping as soon as it has no work "
                      "(cpu group; median [min..max] us of the target's utime + stime):",
                      f"{'case':16} {'vblade':>20} {'xblade event':>20} {'responder':>20} {'responder-ram':>20} "
                      f"{'xblade/vblade':>14} {'resp./vblade':>13} {'resp-ram/vblade':>16} {'xblade/resp-ram':>16}"]
        cells = []
        for t in kinds:
            values = [r["cpu_us"] for r in runs[(case, t)] if r["cpu_us"] is not None]
            cells.append(f"{pair[t]['cpu_us']:.2f} [{min(values):.2f}..{max(values):.2f}]")
        v, x, c, cr = (pair[t]["cpu_us"] for t in kinds)
        pair["cpu_ratio"] = {"xblade_vblade": x / v, "ceiling_vblade": c / v,
                             "ceiling_ram_vblade": cr / v, "xblade_ceiling_ram": x / cr}
        lines.append(f"{case:16} {cells[0]:>20} {cells[1]:>20} {cells[2]:>20} {cells[3]:>20} "
                     f"{x / v:>13.2f}x {c / v:>12.2f}x {cr / v:>15.2f}x {x / cr:>15.2f}x")
    return lines


def check(out, runs, problems):
    """Every expected run has a JSON, no run has errors, every case has all repetitions."""
    expected_file = out / "runs" / "expected.txt"
    if not expected_file.exists():
        problems.append(f"{expected_file}: missing (bench.sh lists every run it starts there)")
    else:
        for name in dict.fromkeys(expected_file.read_text().split()):
            if not (out / "runs" / f"{name}.json").is_file():
                problems.append(f"run {name}: no JSON (runs/{name}.json)")
    try:
        repeat = int(json.loads((out / "settings.json").read_text())["repeat"])
    except (OSError, ValueError, KeyError) as e:
        problems.append(f"settings.json: no repeat count ({e})")
        repeat = None
    # The contended fio ceiling is fair only if CPU 0 is as busy as in xblade's run: in its
    # cases, every run must say how busy CPU 0 was.
    contended_cases = {case for case, target in runs if target == "fio-contended"}
    for (case, target), reps in sorted(runs.items()):
        if repeat is not None and len(reps) != repeat:
            problems.append(f"{case} {target}: {len(reps)} repetitions, expected {repeat}")
        if target == "fio-net" and any(not r.get("net_load") for r in reps):
            problems.append(f"{case} fio-net: a run without the network load's record (net_load): "
                            "fio-net is fio next to that traffic; re-run with this bench.sh")
        if case in contended_cases and any(r["cpu0_busy_frac"] is None for r in reps):
            problems.append(f"{case} {target}: a run without CPU 0's busy fraction (cpu0_busy_frac), "
                            "which the fio-contended ceiling is compared by; re-run with this bench.sh")
        errors = sum(r["errors"] for r in reps)
        # The baseline's own overload: vblade advertises 16 buffers and drops what exceeds
        # them; above QD 16 some requests then use up every retransmission. Those timeouts
        # are vblade's result (shown in the err column), not a failed measurement; any other
        # error of vblade's, and any error of another target, still refuses the table.
        qd = int(re.search(r"qd(\d+)", case).group(1)) if re.search(r"qd(\d+)", case) else 0
        if target == "vblade" and qd > VBLADE_BUFFERS:
            errors -= sum(r.get("timeouts", 0) for r in reps)
        if errors:
            problems.append(f"{case} {target}: {errors} errors (timeouts, ATA/AoE errors, bad replies, "
                            "verify failures, unanswered requests or an interrupted run)")
    if not runs:
        problems.append("no runs at all")


def main():
    out = Path(sys.argv[1])
    problems = []
    runs = load_runs(out / "runs", problems)
    check(out, runs, problems)
    if problems:
        print(f"bench_report: no table from {out}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        sys.exit(1)
    summary = {}
    lines = []
    header = f"{'case':28} {'target':17} {'IOPS median [min..max]':>30} {'MB/s':>8} {'p50 us':>9} {'p99 us':>9} {'p99.9 us':>9} {'CPU us/req':>10} {'CPU0':>5} {'retx':>6} {'err':>4} {'reps':>4}"
    lines.append(header)
    lines.append("-" * len(header))
    cases = sorted({case for case, _ in runs}, key=case_key)
    for case in cases:
        targets = sorted({t for c, t in runs if c == case}, key=lambda t: ({"vblade": 0, "xblade-prev": 1, "xblade": 2, "xblade-scraped": 3, "fio": 4, "fio-contended": 5, "fio-net": 5.5, "ceiling": 6, "ceiling-ram": 7, "ceiling-xdp": 8}.get(t, 9 if t != "default" else 0), t))
        for target in targets:
            reps = runs[(case, target)]
            row = {k: med([r[k] for r in reps]) for k in ("iops", "mb_s", "p50_us", "p99_us", "p999_us", "cpu_us", "cpu0_busy_frac")}
            row["retransmits"] = sum(r["retransmits"] for r in reps)
            row["errors"] = sum(r["errors"] for r in reps)
            row["iops_spread"] = [min(r["iops"] for r in reps), max(r["iops"] for r in reps)]
            row["repetitions"] = len(reps)
            summary.setdefault(case, {})[target] = row
            iops = f"{row['iops']:.0f}{spread([r['iops'] for r in reps])}"
            lines.append(f"{case:28} {target:17} {iops:>30} {fmt(row['mb_s']):>8} {fmt(row['p50_us']):>9} {fmt(row['p99_us']):>9} {fmt(row['p999_us']):>9} {fmt(row['cpu_us'], 2):>10} {pct(row['cpu0_busy_frac']):>5} {row['retransmits']:>6} {row['errors']:>4} {row['repetitions']:>4}")
        pair = summary[case]
        if "xblade" in pair and "vblade" in pair and pair["vblade"]["iops"]:
            x, v = pair["xblade"], pair["vblade"]
            ratio = {"iops": x["iops"] / v["iops"], "p99": (x["p99_us"] / v["p99_us"]) if v["p99_us"] else None}
            pair["ratio_xblade_vblade"] = ratio
            lines.append(f"{'':28} {'xblade/vblade':17} {ratio['iops']:>29.2f}x {'':8} {'':9} {fmt(ratio['p99'], 2) + 'x':>9}")
        # The disk's ceiling: first fio with CPU 0 as busy as in xblade's run (the fair one:
        # this VM's disk is slower then), then plain fio with CPU 0 idle; CPU 0's busy
        # fractions (medians) next to them, which say whether each run had the load it claims.
        if "xblade" in pair and "fio-contended" in pair and pair["fio-contended"]["iops"]:
            r = pair["xblade"]["iops"] / pair["fio-contended"]["iops"]
            pair["ratio_xblade_fio_contended"] = r
            busy = f"CPU 0 busy: xblade {pct(pair['xblade']['cpu0_busy_frac'])}, fio {pct(pair['fio-contended']['cpu0_busy_frac'])}"
            lines.append(f"{'':28} {'xblade/fio (contended)':22} {r:>24.2f}x  ({busy})")
        # fio next to the network traffic of xblade's run (no disk behind it): the disk and
        # the target's CPU contended as in xblade's run; the rate the traffic reached next
        # to it (below xblade's IOPS, fio had less to contend with than xblade had).
        if "xblade" in pair and "fio-net" in pair and pair["fio-net"]["iops"]:
            r = pair["xblade"]["iops"] / pair["fio-net"]["iops"]
            pair["ratio_xblade_fio_net"] = r
            reached = med([(x.get("net_load") or {}).get("achieved_iops") for x in runs[(case, "fio-net")]])
            pair["fio-net"]["net_load_achieved_iops"] = reached
            lines.append(f"{'':28} {'xblade/fio (network)':22} {r:>24.2f}x  (traffic next to fio: "
                         f"{fmt(reached)} req/s, xblade made {pair['xblade']['iops']:.0f})")
        if "xblade" in pair and "fio" in pair and pair["fio"]["iops"]:
            r = pair["xblade"]["iops"] / pair["fio"]["iops"]
            pair["ratio_xblade_fio"] = r
            lines.append(f"{'':28} {'xblade/raw fio':22} {r:>24.2f}x  (CPU 0 idle: busy {pct(pair['fio']['cpu0_busy_frac'])})")
        # Another load on the machine shows as CPU 0 busier than meant (bench.sh's load holds
        # CPU 0 within a few points of the xblade run's fraction on an otherwise idle machine).
        off = [f"{label} {pct(got)} where {pct(want)} was meant" for label, got, want in (
            ("fio-contended", (pair.get("fio-contended") or {}).get("cpu0_busy_frac"),
             (pair.get("xblade") or {}).get("cpu0_busy_frac")),
            ("fio", (pair.get("fio") or {}).get("cpu0_busy_frac"), 0.0))
            if got is not None and want is not None and abs(got - want) > CPU0_BUSY_TOLERANCE]
        if off:
            lines.append(f"{'':28} warning: CPU 0 not as meant ({'; '.join(off)}): another load on "
                         "the machine? Then the disk ceilings here are not the ones claimed")
        # The most any target could show against vblade in this run: the disk's own rate
        # (fio, either) or the load generator's own rate (the instant responder), over vblade's.
        for bound, key, label in (("fio-contended", "ratio_fio_contended_vblade", "fio (contended)/vblade"),
                                  ("fio", "ratio_fio_vblade", "raw fio/vblade"),
                                  ("ceiling", "ratio_ceiling_vblade", "ceiling/vblade")):
            if bound in pair and "vblade" in pair and pair["vblade"]["iops"]:
                r = pair[bound]["iops"] / pair["vblade"]["iops"]
                pair[key] = r
                lines.append(f"{'':28} {label:22} {r:>24.2f}x  (the most any target can show here)")
        if "xblade" in pair and "ceiling" in pair and pair["ceiling"]["iops"]:
            r = pair["xblade"]["iops"] / pair["ceiling"]["iops"]
            pair["ratio_xblade_ceiling"] = r
            lines.append(f"{'':28} {'xblade/ceiling':17} {r:>29.2f}x")
        # The responder that moves the data (a populated RAM image): what serving real data
        # costs on this link, before any storage work.
        if "xblade" in pair and "ceiling-ram" in pair and pair["ceiling-ram"]["iops"]:
            r = pair["xblade"]["iops"] / pair["ceiling-ram"]["iops"]
            pair["ratio_xblade_ceiling_ram"] = r
            lines.append(f"{'':28} {'xblade/ceiling-ram':17} {r:>29.2f}x")
        # xblade's own network path with no storage work (the null backend): what is left
        # between the two responders and xblade is AF_XDP copy mode on veth, not storage.
        if "xblade" in pair and "ceiling-xdp" in pair and pair["ceiling-xdp"]["iops"]:
            r = pair["xblade"]["iops"] / pair["ceiling-xdp"]["iops"]
            pair["ratio_xblade_ceiling_xdp"] = r
            lines.append(f"{'':28} {'xblade/ceiling-xdp':17} {r:>29.2f}x")
            if "ceiling" in pair and pair["ceiling"]["iops"]:
                r = pair["ceiling-xdp"]["iops"] / pair["ceiling"]["iops"]
                pair["ratio_ceiling_xdp_ceiling"] = r
                lines.append(f"{'':28} {'ceiling-xdp/ceiling':19} {r:>27.2f}x  (AF_XDP copy mode vs AF_PACKET on veth)")
        # The load generator's CPU per request: when CPU 0 is saturated, it bounds the rate,
        # and on veth it includes the target's receive (XDP and the UMEM copy, or AF_PACKET's).
        gen = [(t, pair[t]) for t in ("xblade", "ceiling", "ceiling-ram", "ceiling-xdp")
               if t in pair and pair[t].get("cpu0_busy_frac") is not None and pair[t]["iops"]]
        if len(gen) > 1:
            per_req = ", ".join(f"{t} {1e6 * row['cpu0_busy_frac'] / row['iops']:.2f}" for t, row in gen)
            pair["cpu0_us_per_req"] = {t: 1e6 * row["cpu0_busy_frac"] / row["iops"] for t, row in gen}
            lines.append(f"{'':28} CPU 0 (generator) us/req: {per_req}")
        if case.startswith("ablation") and "default" in pair:
            base = pair["default"]["iops"]
            for target, row in pair.items():
                if isinstance(row, dict) and "iops" in row and target != "default" and base:
                    row["vs_default"] = row["iops"] / base
    print("\n".join(lines))
    abl = [(c, t, r) for c, rows in summary.items() if c.startswith("ablation") for t, r in rows.items() if isinstance(r, dict) and "vs_default" in r]
    if abl:
        print("\nablations (IOPS relative to the default configuration):")
        for c, t, r in abl:
            print(f"  {c:28} {t:18} {r['vs_default']:.2f}x")
    scraped = compare_table(
        summary, runs, base="xblade", other="xblade-scraped",
        title="/metrics scraped every second (xblade-scraped) and not (xblade), same binary, "
              "same run, interleaved per repetition",
        labels=("plain", "scraped", "scr/plain", "plain/scr"), key="ratio_scraped_plain")
    for extra in (exports_table(summary, runs), compare_table(summary, runs), scraped,
                  split_table(summary, runs), block_table(summary, runs), cpu_table(summary, runs),
                  stalls_table(out, summary, runs)):
        if extra:
            print("\n".join(extra))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    write_cdf(out, runs)


def write_cdf(out, runs):
    """Latency CDF (log-scale x) of xblade and vblade for the tmpfs read cases."""
    series = []
    colors = {"vblade": "#d95f02", "xblade": "#1b9e77"}
    dashes = {1: "", 16: "6,3", 64: "2,2"}
    for (case, target), reps in sorted(runs.items()):
        m = re.match(r"^tmpfs-read-qd(\d+)$", case)
        if not m or target not in colors or not reps:
            continue
        best = sorted(reps, key=lambda r: r["iops"])[len(reps) // 2]
        points = [(ns / 1e3, q) for q, ns in best["cdf"] if ns > 0 and q < 1.0]
        if points:
            series.append((f"{target} QD{m.group(1)}", colors[target], dashes.get(int(m.group(1)), ""), points))
    if not series:
        return
    width, height, left, bottom, top, right = 760, 440, 70, 50, 30, 190
    xs = [x for _, _, _, pts in series for x, _ in pts]
    lo, hi = math.log10(max(min(xs), 1.0)), math.log10(max(xs) * 1.2)
    hi = max(hi, lo + 1)
    def px(us):
        return left + (math.log10(max(us, 10 ** lo)) - lo) / (hi - lo) * (width - left - right)
    # y: "nines" (0.9 -> 1, 0.99 -> 2, 0.999 -> 3, 0.9999 -> 4), so the tail is visible.
    max_nines = 4.0
    def nines(q):
        return min(-math.log10(max(1 - q, 10 ** -max_nines)), max_nines)
    def py(q):
        return top + (1 - nines(q) / max_nines) * (height - top - bottom)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14">Request latency CDF, tmpfs image, reads (xblade-bench, same veth pair)</text>']
    for decade in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            us = m * 10 ** decade
            if 10 ** lo <= us <= 10 ** hi:
                x = px(us)
                svg.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#eee"/>')
                svg.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">{us:g}</text>')
    for q in (0, 0.5, 0.9, 0.99, 0.999, 0.9999):
        y = py(q)
        svg.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#eee"/>')
        svg.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{q:g}</text>')
    svg.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">latency (µs, log scale)</text>')
    svg.append(f'<text x="16" y="{(top + height - bottom) / 2}" transform="rotate(-90 16 {(top + height - bottom) / 2})" text-anchor="middle">fraction of requests (nines scale)</text>')
    for i, (label, color, dash, points) in enumerate(series):
        path = " ".join(f"{'M' if j == 0 else 'L'}{px(x):.1f},{py(q):.1f}" for j, (x, q) in enumerate(sorted(points)))
        svg.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>')
        ly = top + 14 + 18 * i
        svg.append(f'<line x1="{width - right + 12}" y1="{ly}" x2="{width - right + 40}" y2="{ly}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>')
        svg.append(f'<text x="{width - right + 46}" y="{ly + 4}">{label}</text>')
    svg.append("</svg>")
    (out / "latency-cdf.svg").write_text("\n".join(svg))


if __name__ == "__main__":
    main()
