#!/usr/bin/env python3
"""Separates the worker's per-request work from its per-pass work, and scales a measured
cost split to a saturated worker (docs/PERFORMANCE.md, "Per request and per pass").

    pass_fit.py INSTR_SUMMARY... [--cost-split COST_SPLIT_SUMMARY...]

INSTR_SUMMARY is the summary.txt of scripts/instr-count.sh: per operation and queue depth,
the worker's userspace instructions per request and its loop passes per request (calls of
Worker::refill, once per pass). Each pass of the worker's loop does some work whatever it
carries (ring index loads and stores, a clock read, the fill ring, the TX kick), and each
request some work of its own (parse, decide, plan, complete, encode). So, per request:

    instructions = r + p * (passes / requests)

With two or more queue depths per operation this fits r (per request) and p (per pass) by
least squares and prints both, with each point's residual.

COST_SPLIT_SUMMARY is the summary.txt of scripts/cost-split.sh. For each of its event-mode
cases (`event-OP-qdN`: the worker sleeps when idle, so its userspace is work, not polling)
it reads xblade's own userspace U (µs per request, median and lowest), the system calls
per request and the projection's kick cost, and estimates U for a saturated worker that
carries the projection's batch (64 requests) in every pass:

    passes per request, measured  pi = sendto + io_uring_enter per request
    U_saturated = U * (r + p / 64) / (r + p * pi)

pi is a lower bound of the passes (each pass that transmits makes one sendto, each pass
that sleeps one io_uring_enter; under callgrind passes / sendto is 1.01), so the factor
errs towards a larger U_saturated. It assumes a per-pass instruction costs the time a
per-request one does; a pass's clock read (rdtsc through the vDSO) costs more cycles per
instruction than the rest, so the per-pass share of the time is, if anything, larger than
its share of the instructions, and the estimate again errs towards a larger U_saturated.
"""
import re
import statistics
import sys

BATCH = 64  # requests per pass of a saturated worker: --batch 64, as cost_split.py's PROJ_BATCH


def parse_instr(paths):
    """{op: [(qd, passes_per_request, instructions_per_request)]} from instr-count summaries."""
    points = {}
    for path in paths:
        op = qd = requests = instr = None
        for line in open(path):
            m = re.match(r"^## (\w+), QD (\d+): (\d+) requests", line)
            if m:
                op, qd, requests, instr = m.group(1), int(m.group(2)), int(m.group(3)), None
                continue
            m = re.match(r"^instructions per request: (\d+)", line)
            if m and op:
                instr = int(m.group(1))
                continue
            m = re.match(r"^loop passes: (\d+), requests per pass", line)
            if m and op and instr is not None:
                points.setdefault(op, []).append((qd, int(m.group(1)) / requests, instr))
                op = None
    return points


def fit(points):
    """Least-squares line instructions = r + p * passes_per_request; (r, p)."""
    xs = [x for _, x, _ in points]
    ys = [y for _, _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    p = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - p * mx, p


def parse_cost_split(paths):
    """[(path, case, op, qd, U median, U lowest, passes per request, kick µs)] of event-mode
    cases."""
    cases = []
    for path in paths:
        case = None
        for line in open(path):
            m = re.match(r"^## (event-(\w+)-qd(\d+)):", line)
            if m:
                case, op, qd = m.group(1), m.group(2), int(m.group(3))
                calls = None
                continue
            if case is None:
                continue
            m = re.match(r"^syscalls per request \(median\): (.*)$", line)
            if m:
                calls = dict((k, float(v)) for k, v in re.findall(r"(\w+) ([\d.]+)", m.group(1)))
                continue
            m = re.match(r"^projection: own userspace U ([\d.]+) µs/req \(([\d.]+)\.\.[\d.]+\).*= ([\d.]+) µs/req$", line)
            if m and calls is not None:
                passes = calls.get("sendto", 0.0) + calls.get("io_uring_enter", 0.0)
                cases.append((path, case, op, qd, float(m.group(1)), float(m.group(2)), passes,
                              float(m.group(3))))
                case = None
    return cases


def main(argv):
    if "--cost-split" in argv:
        i = argv.index("--cost-split")
        instr_paths, cost_paths = argv[:i], argv[i + 1:]
    else:
        instr_paths, cost_paths = argv, []
    if not instr_paths:
        sys.exit(__doc__)
    points = parse_instr(instr_paths)
    if not points:
        sys.exit("pass_fit: no '## OP, QD N' block with a 'loop passes' line in "
                 + ", ".join(instr_paths) + " (made by an instr-count.sh older than the pass count?)")
    fits = {}
    print("# Per request and per pass: instructions = r + p * passes/request (worker thread, userspace)")
    for op, pts in sorted(points.items()):
        pts.sort()
        f = fit(pts)
        if f is None:
            print(f"{op}: one point only (QD {pts[0][0]}): no fit; run instr-count.sh at another --qd")
            continue
        r, p = f
        fits[op] = f
        print(f"{op}: r = {r:.0f} per request, p = {p:.0f} per pass; saturated ({BATCH} per pass): {r + p / BATCH:.0f} per request")
        for qd, x, y in pts:
            model = r + p * x
            print(f"  QD {qd:>3}: {1 / x:6.2f} requests per pass, {y} per request, fit {model:.0f} ({100 * (y - model) / model:+.1f} %)")
    if not cost_paths:
        return
    print()
    print(f"# Saturated worker ({BATCH} requests per pass): U scaled by (r + p/{BATCH}) / (r + p * passes/request)")
    print("instr/µs: the instructions the worker executed per request at the measured passes per")
    print("request, over U: the rate this VM ran xblade's code at in that run (no clock assumed)")
    print(f"{'case':<18} {'passes/req':>10} {'factor':>7} {'U med':>7} {'instr/µs':>8} {'U sat':>7} {'kick':>6} {'T':>7} {'M req/s':>8}   lowest: {'U sat':>7} {'M req/s':>8}")
    shown = None
    for path, case, op, qd, u_med, u_low, passes, kick in parse_cost_split(cost_paths):
        if path != shown:
            print(f"-- {path}")
            shown = path
        if op not in fits:
            print(f"{case:<18} no instruction fit for {op}")
            continue
        r, p = fits[op]
        factor = (r + p / BATCH) / (r + p * passes)
        sat, sat_low = u_med * factor, u_low * factor
        t, t_low = sat + kick, sat_low + kick
        rate = (r + p * passes) / u_med
        print(f"{case:<18} {passes:>10.3f} {factor:>7.3f} {u_med:>7.3f} {rate:>8.0f} {sat:>7.3f} {kick:>6.3f} {t:>7.3f} {1 / t:>8.2f}   "
              f"        {sat_low:>7.3f} {1 / t_low:>8.2f}")
    for op, (r, p) in sorted(fits.items()):
        # 3 M requests per second leaves 1/3 µs per request, of which the kick takes its share.
        print(f"3 M {op}s per second (T = 0.333 µs, kick 0.013) need {(r + p / BATCH) / (1 / 3 - 0.013):.0f} instr/µs")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except OSError as e:
        sys.exit(f"pass_fit: {e.filename}: {e.strerror}")
