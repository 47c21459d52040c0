"""latency.py: the redis-latency section of bench/frag's report (report.py imports it).

Parses redis-benchmark 7's plain output (bench-MODE.txt of every run, MODES below): per
test ("====== SET ======"), the "throughput summary", the "latency summary" (its p50 and
p99 are the histogram's own) and, for p99.9, which the summary lacks, the "Latency by
percentile distribution" lines ("99.902% <= 1.239 milliseconds (cumulative count N)"):
redis-benchmark prints an HdrHistogram's percentile iteration (50, 75, 87.5, ... 99.902,
99.951 ...), so p99.9 is the latency of the first line at or above 99.9%: the smallest
printed latency that at least 99.9% of requests did not exceed (an upper bound, the same
in both columns).
"""
import json
import os
import re
import statistics

BASELINE, MESHD, ROUNDS = "libmesh-nomeshd", "libmesh+meshd", "libmesh+rounds"
# The baseline's configuration run again, alternated with the others: its ratios to the
# baseline are what two identical columns differ by in this run (A/A), the resolution
# against which the others' ratios are to be read.
AA = "libmesh-nomeshd-2"
COLUMNS = (BASELINE, AA, MESHD, ROUNDS)
# The benchmarks of a run, in the order run.sh runs them: file suffix -> how it ran.  rate
# (redisrate.c: a fixed rate, open loop) leaves most of the machine idle, so that meshd's
# default policy compacts during it; c1 (redis-benchmark, one client) keeps about one CPU
# of two busy, the policy's threshold; P1 and P16 (50 clients) keep both CPUs busy.  Runs
# from before rate or c1 have no bench-MODE.txt: their cells are left out.  rate's
# throughput is the rate asked for unless Redis falls behind it.
MODES = ("rate", "c1", "P1", "P16")
MODE_ARGS = {"rate": "at a fixed rate", "c1": "-c 1", "P1": "-P 1", "P16": "-P 16"}
TESTS = ("SET", "GET")
PERCENTILES = (50.0, 99.0, 99.9)
# Issue 13: p99 and p99.9 within 1.2x of the run without meshd, throughput within 5%.
TARGET_LATENCY_RATIO, TARGET_THROUGHPUT_RATIO = 1.2, 0.95

TEST_RE = re.compile(r"====== (\S+) ======")
PCT_RE = re.compile(r"^\s*([0-9.]+)% <= ([0-9.]+) milliseconds")
SUMMARY_COLUMNS = ("avg", "min", "p50", "p95", "p99", "max")
RPS_RE = re.compile(r"throughput summary: ([0-9.]+) requests per second")


def parse_benchmark(path):
    """{test: {"rps": x, "p50": ms, "p99": ms, "p99.9": ms}} of one redis-benchmark run."""
    out, test, section, points, header = {}, None, None, [], None
    with open(path, errors="replace") as f:
        text = f.read().replace("\r", "\n")
    for line in text.splitlines():
        m = TEST_RE.search(line)
        if m:
            test, section, points = m.group(1), None, []
            out[test] = {}
            continue
        if test is None:
            continue
        if line.startswith("Latency by percentile distribution"):
            section = "pct"
        elif line.startswith("Cumulative distribution"):
            section = None
            at = [ms for pct, ms in points if pct >= 99.9]
            out[test]["p99.9"] = at[0] if at else None
        elif line.split() == list(SUMMARY_COLUMNS):
            header = line.split()
        elif header:
            try:
                values = [float(v) for v in line.split()]
            except ValueError:
                values = []
            if len(values) == len(header):
                out[test]["p50"], out[test]["p99"] = values[2], values[4]
            header = None
        elif section == "pct":
            m = PCT_RE.match(line)
            if m:
                points.append((float(m.group(1)), float(m.group(2))))
        m = RPS_RE.search(line)
        if m:
            out[test]["rps"] = float(m.group(1))
    return out


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, spec):
    return "-" if v is None else spec % v


def ratio(v, base):
    return None if v is None or not base else v / base


def verdict(r, limit, higher_is_better=False):
    if r is None:
        return "-"
    ok = r >= limit if higher_is_better else r <= limit
    return "**%.2fx** %s" % (r, "met" if ok else "MISSED")


def cells(runs, a):
    """{(pipeline, test, key): median} over the good runs of column a."""
    rs = [r for r in runs if r.get("allocator") == a and r.get("ok") == "1"]
    out = {}
    for p in MODES:
        parsed = [parse_benchmark(os.path.join(r["dir"], "bench-%s.txt" % p)) for r in rs
                  if os.path.exists(os.path.join(r["dir"], "bench-%s.txt" % p))]
        for t in TESTS:
            for k in ("rps",) + tuple("p%g" % q for q in PERCENTILES):
                out[p, t, k] = median([x.get(t, {}).get(k) for x in parsed])
    return out, len(rs)


def cpu_waits_during(d, p):
    """Times meshd logged "no CPU to spare" (a round not started, or its next request held
    back: meshd/policy.h) during benchmark mode p of run d; None without meshd-MODE.log."""
    path = os.path.join(d, "meshd-%s.log" % p)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return sum("no CPU to spare" in l for l in f)


def rounds_during(d, p):
    """(rounds, pairs meshed, KiB released) meshd logged during benchmark mode p of run d."""
    n = meshed = released = 0
    path = os.path.join(d, "rounds-%s.log" % p)
    if os.path.exists(path):
        with open(path) as f:
            for l in f:
                # meshd/rounds.c: "round N: M/K pairs meshed in R requests over S s, B KiB
                # released, ..." (the "in R requests over S s" part since rounds are paced)
                m = re.search(r"(\d+)/\d+ pairs meshed(?: in \d+ requests over [\d.]+ s)?, (\d+) KiB released", l)
                if m:
                    n += 1
                    meshed += int(m.group(1))
                    released += int(m.group(2))
    return n, meshed, released


def section(runs):
    """The report's lines for redis-latency, from its runs (dicts with "allocator",
    "ok", "dir", "rep" and run.sh's notes)."""
    md = []
    if not runs:
        return md
    base, nbase = cells(runs, BASELINE)
    md += ["Redis (Debian's redis-server, preloaded with libmesh) with redis-benchmark's keyspace "
           "(so that its SETs replace values) and delete-heavy Redis's dataset (load, then DEL of 75%%: "
           "a fragmented heap), then at once SET then GET: at a fixed rate, open loop, one connection "
           "(`redisrate`, bench/frag/redisrate.c: a lightly loaded server, most of the machine idle, when meshd's "
           "default policy compacts; latency from when a request was due, so stalls count for every request "
           "they delay; its throughput is the rate unless Redis falls behind), then redis-benchmark with one client "
           "(`-c 1`: about one CPU of two busy, meshd's min_spare_cpu threshold), then 50 clients not pipelined and with `-P 16` "
           "(both CPUs busy). Columns: **%s**: no meshd listening (the shim's control "
           "thread retries with backoff), the baseline; **%s**: the same again (A/A: its ratios are "
           "this run's noise); **%s**: meshd's default policy; **%s**: "
           "explicit `meshctl mesh` rounds every few seconds while the benchmark runs, so that "
           "compaction certainly overlaps the requests. Runs alternate; cells are medians; "
           "latencies in ms; ratios to %s (targets: throughput >= %.2fx, p99 and p99.9 <= %.1fx)." % (
               BASELINE, AA, MESHD, ROUNDS, BASELINE, TARGET_THROUGHPUT_RATIO, TARGET_LATENCY_RATIO), ""]
    md += ["| test | column | good runs | rps | p50 | p99 | p99.9 | throughput ratio | p99 ratio | p99.9 ratio |",
           "|---|---|---:|---:|---:|---:|---:|---|---|---|"]
    for p in MODES:
        for t in TESTS:
            for a in COLUMNS:
                c, n = (base, nbase) if a == BASELINE else cells(runs, a)
                if not n or c[p, t, "rps"] is None:
                    continue
                row = ["%s %s" % (t, MODE_ARGS[p]), a, "%d" % n, fmt(c[p, t, "rps"], "%.0f")]
                row += [fmt(c[p, t, "p%g" % q], "%.3f") for q in PERCENTILES]
                if a == BASELINE:
                    row += ["", "", ""]
                else:
                    row.append(verdict(ratio(c[p, t, "rps"], base[p, t, "rps"]),
                                       TARGET_THROUGHPUT_RATIO, higher_is_better=True))
                    row += [verdict(ratio(c[p, t, k], base[p, t, k]), TARGET_LATENCY_RATIO)
                            for k in ("p99", "p99.9")]
                md.append("| " + " | ".join(row) + " |")
    md.append("")

    # What meshd did while each benchmark ran: without it, a good latency proves nothing.
    md += ["What meshd did during the benchmarks (from its log and `meshctl stats`; holds n/a where "
           "this meshd does not report them; meshes during: `meshctl stats` before the first benchmark and after the last, "
           "which counts the pairs of rounds still running; waits for CPU: meshd's \"no CPU to spare\" lines, "
           "a round not started or its next request held back, min_spare_cpu):", "",
           "| column | rep | rounds during " + " / ".join(MODE_ARGS[p] for p in MODES) +
           " | pairs meshed during each | in all | meshes during | waits for CPU | released | holds during | of them over 1 ms | hold p99 | hold max | RSS loaded -> end |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        if r.get("allocator") not in (MESHD, ROUNDS):
            continue
        d = r["dir"]
        per = [rounds_during(d, p) for p in MODES]
        present = [p for p in MODES if os.path.exists(os.path.join(d, "bench-%s.txt" % p))] or list(MODES)
        first = load_json(os.path.join(d, "stats-%s-start.json" % present[0])) or {}
        last = load_json(os.path.join(d, "stats-%s-end.json" % present[-1])) or {}
        holds = meshes = slow = "n/a"
        if "holds" in last:
            holds = "%d" % (last["holds"] - first.get("holds", 0))
        if "holds_over_1ms" in last:
            n_slow = last["holds_over_1ms"] - first.get("holds_over_1ms", 0)
            n_all = last["holds"] - first.get("holds", 0)
            slow = "%d (%.2f%%)" % (n_slow, 100.0 * n_slow / n_all) if n_all else "%d" % n_slow
        if "meshes" in last:
            meshes = "%d" % (last["meshes"] - first.get("meshes", 0))
        waits = [cpu_waits_during(d, p) for p in present]
        waits = "n/a" if None in waits else "%d" % sum(waits)
        md.append("| %s | %s | %s | %s | %d | %s | %s | %.1f MiB | %s | %s | %s | %s | %s -> %s |" % (
            r["allocator"], r.get("rep", "?"), " / ".join("%d" % x[0] for x in per),
            " / ".join("%d" % x[1] for x in per), sum(x[1] for x in per),
            meshes, waits, sum(x[2] for x in per) / 1024.0, holds, slow,
            "%s us" % last["hold_p99_us"] if "hold_p99_us" in last else "n/a",
            "%s us" % last["hold_max_us"] if "hold_max_us" in last else "n/a",
            mib(r.get("rss_loaded_kib")), mib(r.get("rss_idle_kib"))))
    md.append("")

    # What the requests ran next to: Redis's own minor faults and the machine's IPIs.
    counted = [r for r in runs if r.get("ok") == "1" and any("minflt_%s" % p in r for p in MODES)]
    if counted:
        cols = [a for a in COLUMNS if any(r.get("allocator") == a for r in counted)]
        md += ["Redis's minor page faults, the machine's IPIs (function-call and TLB-shootdown "
               "interrupts of /proc/interrupts, all CPUs) and Redis's TLB flushes (perf's count of "
               "the tlb:tlb_flush tracepoint for its threads; a flush that reaches other CPUs "
               "counts twice, locally and as sent) during each benchmark, medians over the runs: "
               "pages meshing remapped or punched fault back in, and each change to the process's "
               "mappings flushes the TLBs of the CPUs it runs on.  A guest whose hypervisor "
               "does the flushing counts no IPI at all, but its flushes: read them with the "
               "machine's page-table stall line above (bench/frag/ptstall.c).", "",
               "| benchmark | " + " | ".join("%s faults | %s IPIs | %s TLB flushes" % (a, a, a) for a in cols) + " |",
               "|---|" + "---:|---:|---:|" * len(cols)]
        for p in MODES:
            row = [MODE_ARGS[p]]
            for a in cols:
                for k in ("minflt", "ipis", "tlbflush"):
                    vals = [int(r["%s_%s" % (k, p)]) for r in counted
                            if r.get("allocator") == a and "%s_%s" % (k, p) in r
                            and int(r["%s_%s" % (k, p)]) >= 0]
                    row.append("%.0f" % median(vals) if vals else "")
            if any(row[1:]):
                md.append("| " + " | ".join(row) + " |")
        md.append("")
    return md


def mib(kib):
    try:
        return "%.1f MiB" % (float(kib) / 1024)
    except (TypeError, ValueError):
        return "-"


def targets(runs):
    """Target lines, one per compared column: the worst ratio over SET/GET x MODES."""
    base, nbase = cells(runs, BASELINE)
    lines = []
    for a in (AA, MESHD, ROUNDS):
        c, n = cells(runs, a)
        if not n or not nbase:
            continue
        worst = {}
        for p in MODES:
            for t in TESTS:
                for k in ("rps", "p99", "p99.9"):
                    r = ratio(c[p, t, k], base[p, t, k])
                    if r is not None and (k not in worst or (r < worst[k] if k == "rps" else r > worst[k])):
                        worst[k] = r
        rounds = sum(rounds_during(r["dir"], p)[0] for r in runs
                     if r.get("allocator") == a and r.get("ok") == "1" for p in MODES)
        what = ("the same configuration: A/A, the noise of this run"
                if a == AA else "%d rounds of meshd overlapped the benchmarks" % rounds)
        lines.append("- Redis under redis-benchmark, %s / %s, worst of SET/GET x %s: throughput %s, "
                     "p99 %s, p99.9 %s (%s)" % (
                         a, BASELINE, "/".join(MODE_ARGS[p] for p in MODES),
                         verdict(worst.get("rps"), TARGET_THROUGHPUT_RATIO, True),
                         verdict(worst.get("p99"), TARGET_LATENCY_RATIO),
                         verdict(worst.get("p99.9"), TARGET_LATENCY_RATIO), what))
    return lines
