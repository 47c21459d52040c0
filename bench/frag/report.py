"""report.py OUT "WORKLOADS" "ALLOCATORS": the report and plots of bench/frag/run.sh.

Reads OUT/runs/*/result (key=value lines), events, rss.csv and meshd-stats.json of every
run (and redis-latency's bench-MODE.txt, stats-MODE-*.json and rounds-MODE.log) and
OUT/machine.txt; writes OUT/report.md and one gnuplot script per workload (OUT/NAME.gp,
which run.sh renders to OUT/NAME.png).  Cells are medians over repetitions.
"""
import json
import os
import statistics
import sys

import latency

BASELINE = "jemalloc"
MESHD_COLUMNS = ("libmesh+meshd", "libmesh+rounds")
POLICY_COLUMN = "libmesh+meshd"  # meshd's default policy: the product as a service runs it
TITLES = {
    "redis-lru": "Redis as an LRU cache (Mesh paper 6.2.2)",
    "redis-del": "Redis, 75% of keys deleted",
    "robson": "Robson-style fragmenter",
    "python": "Python building and dropping structures",
    "redis-latency": "Redis latency under redis-benchmark while meshd compacts",
}
# Issue 13's targets, libmesh+meshd (default policy) / jemalloc, RSS after idle.
TARGET_IDLE_RATIO = {"redis-lru": 0.78, "redis-del": 0.85, "robson": 0.5}
SETTLE_BAND = 0.05  # "within 5% of the final RSS"
TARGET_HOLD_P99_US, TARGET_HOLD_MAX_US = 1000, 5000
TIME_LABEL = {
    "redis-lru": "insertion",
    "redis-del": "load + delete",
    "robson": "work",
    "python": "work",
}
# Redis LRU insertion time / jemalloc.
TARGET_TIME = 1.05


def read_result(path):
    r = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            r[k] = v
    return r


def num(r, key):
    try:
        v = float(r.get(key, ""))
    except ValueError:
        return None
    return None if v < 0 else v


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def mib(kib):
    return "-" if kib is None else "%.1f MiB" % (kib / 1024)


def ratio(v, base):
    return None if v is None or not base else v / base


def with_ratio(text, r):
    return text if r is None else "%s (%.2fx)" % (text, r)


def idle_of(runs, w):
    """The idle seconds the runs of workload w used (as run.sh noted them), or "-"."""
    vals = sorted({r.get("idle_s") for r in runs if r.get("workload") == w and r.get("idle_s")})
    return "/".join(vals) if vals else "-"


def read_events(d):
    """{mark: seconds on rss.csv's clock} of one run (the first of each mark)."""
    ev = {}
    try:
        with open(os.path.join(d, "events")) as f:
            for line in f:
                t, _, name = line.strip().partition(" ")
                ev.setdefault(name, float(t))
    except (OSError, ValueError):
        pass
    return ev


def settle_seconds(r):
    """Seconds from the start of the idle phase until RSS stays within SETTLE_BAND of the
    RSS after idle (the value at its end) for good; 0 if it already was at the start; None
    without samples.  Sampled every 0.25 s, so it is good to about that."""
    ev = read_events(r["dir"])
    final = num(r, "rss_idle_kib")
    if "idle" not in ev or "end" not in ev or not final:
        return None
    samples = []
    try:
        with open(os.path.join(r["dir"], "rss.csv")) as f:
            next(f)
            for line in f:
                t, rss = line.split(",")[:2]
                t = float(t)
                if ev["idle"] <= t <= ev["end"]:
                    samples.append((t, float(rss)))
    except (OSError, ValueError, StopIteration):
        return None
    if not samples:
        return None
    since = ev["idle"]
    for t, rss in samples:
        if abs(rss - final) > SETTLE_BAND * final:
            since = None
        elif since is None:
            since = t
    return None if since is None else since - ev["idle"]


def floor_kib(r):
    """What perfect compaction would leave resident, for a run with meshd's stats: the live
    bytes libmesh reports plus the program's own non-heap memory (file-backed and anonymous
    RSS: its binary, libraries, stacks, libmesh's metadata) plus the span table's RSS."""
    s = r.get("meshd")
    parts = [num(r, "rssfile_kib"), num(r, "rssanon_kib"), num(r, "spans_rss_kib")]
    if not s or "live_bytes" not in s or any(p is None for p in parts):
        return None
    return s["live_bytes"] / 1024 + sum(parts)


def holds(r):
    """(holds, p99 us, max us, holds over 1 ms) from meshctl stats, each None when meshd does
    not report it."""
    s = r.get("meshd") or {}
    return s.get("holds"), s.get("hold_p99_us"), s.get("hold_max_us"), s.get("holds_over_1ms")


def slow_share(r):
    """The share of a run's holds that lasted over 1 ms, or None when not reported."""
    n, _, _, slow = holds(r)
    return None if n is None or slow is None else (slow / n if n else 0.0)


def main():
    out, all_workloads, allocators = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
    workloads = [w for w in all_workloads if w != "redis-latency"]
    runs = []
    for name in sorted(os.listdir(os.path.join(out, "runs"))):
        d = os.path.join(out, "runs", name)
        if not os.path.exists(os.path.join(d, "result")):
            continue
        r = read_result(os.path.join(d, "result"))
        r["dir"] = d
        stats = os.path.join(d, "meshd-stats.json")
        if os.path.exists(stats):
            try:
                with open(stats) as f:
                    r["meshd"] = json.load(f)
            except ValueError:
                pass
        runs.append(r)

    def cell_runs(w, a, timing=False):
        sel = [r for r in runs if r["workload"] == w and r["allocator"] == a]
        return sel if timing else [r for r in sel if r.get("timing_only") == "0"]

    def failed(w, a):
        return any(r.get("ok") != "1" for r in cell_runs(w, a, timing=True))

    def metric(w, a, key, timing=False):
        sel = [r for r in cell_runs(w, a, timing) if r.get("ok") == "1"]
        return median([num(r, key) for r in sel])

    def live_bytes(w, a):
        """Live data: Redis's used_memory, robson's own count, for python what libmesh
        (the only allocator that can tell) saw live in the libmesh+meshd run."""
        if w.startswith("redis"):
            return metric(w, a, "used_memory")
        if w == "robson":
            return metric(w, a, "live_bytes")
        if w == "python":
            for col in MESHD_COLUMNS:
                sel = [r for r in cell_runs(w, col) if r.get("ok") == "1" and "meshd" in r]
                if sel:
                    return median([r["meshd"].get("live_bytes") for r in sel])
        return None

    machine = open(os.path.join(out, "machine.txt")).read().strip().splitlines()
    failures = [l for l in open(os.path.join(out, "failures.txt")).read().splitlines() if l]
    skipped_path = os.path.join(out, "skipped.txt")
    skipped = [l for l in open(skipped_path).read().splitlines() if l] if os.path.exists(skipped_path) else []

    md = ["# Fragmentation benchmarks (`bench/frag/run.sh`)", ""]
    md += ["- " + l for l in machine]
    md += ["- every cell: the median over the runs of that (workload, allocator); "
           "(N.NNx) is the ratio to jemalloc in the same run", ""]

    def settle(w, a):
        return median([settle_seconds(r) for r in cell_runs(w, a) if r.get("ok") == "1"])

    def floor(w):
        """The workload's floor: the median over the meshd columns' runs (the same program
        and data in each; only they know the live bytes)."""
        return median([floor_kib(r) for col in MESHD_COLUMNS for r in cell_runs(w, col)
                       if r.get("ok") == "1"])

    if workloads:
        # Summary: RSS after idle, ratio to jemalloc, time to settle.
        md += ["## RSS after idle, ratio to jemalloc (lower is better), seconds from idle to within 5% of it", ""]
        md += ["RSS after idle is VmRSS a fixed time after the work ended (%s); the seconds are from the "
               "end of the work until RSS stays within 5%% of that value for good (0.0: it already was)." % (
                   ", ".join("%s %s s" % (w, idle_of(runs, w)) for w in workloads)), ""]
        md += ["| workload | " + " | ".join(allocators) + " | floor |",
               "|---|" + "---:|" * (len(allocators) + 1)]
        for w in workloads:
            base = metric(w, BASELINE, "rss_idle_kib")
            fl = floor(w)
            cells = []
            for a in allocators:
                v = metric(w, a, "rss_idle_kib")
                if failed(w, a):
                    cells.append("FAIL")
                elif v is None:
                    cells.append("-")
                else:
                    r = ratio(v, base)
                    st = settle(w, a)
                    cells.append("%s (%s), %s" % (mib(v), "%.2fx" % r if r else "-",
                                                  "-" if st is None else "%.1f s" % st))
            cells.append("-" if fl is None else mib(fl) if not base else "%s (%.2fx)" % (mib(fl), fl / base))
            md.append("| %s | %s |" % (w, " | ".join(cells)))
        md.append("")
        md += ["**floor**: what perfect compaction allows: live bytes (libmesh's count, via `meshctl stats`) "
               "+ the program's own non-heap RSS (file-backed and anonymous) + libmesh's span table, from "
               "the meshd columns' runs; (N.NNx) is its ratio to jemalloc.", ""]

        # The meshd columns: holds and the distance from the floor.
        mesh_cols = [a for a in MESHD_COLUMNS if a in allocators]
        if mesh_cols:
            md += ["## meshd: barrier holds and distance from the floor", ""]
            md += ["| workload | column | holds | over 1 ms | hold p99 | hold max | RSS after idle | floor | above the floor |",
                   "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
            for w in workloads:
                for a in mesh_cols:
                    for r in [r for r in cell_runs(w, a) if r.get("ok") == "1"]:
                        n, p99, mx, slow = holds(r)
                        v, fl = num(r, "rss_idle_kib"), floor_kib(r)
                        md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                            w, a, "n/a" if n is None else n,
                            "n/a" if slow_share(r) is None else "%d (%.2f%%)" % (slow, 100 * slow_share(r)),
                            "n/a" if p99 is None else "%s us" % p99, "n/a" if mx is None else "%s us" % mx,
                            mib(v), mib(fl),
                            "-" if v is None or fl is None else "%s (%.2fx)" % (mib(v - fl), v / fl)))
            md += ["", "holds: `meshctl stats PID --json`'s `holds`, `holds_over_1ms` (exact: under 1% of the "
                   "holds is a p99 under 1 ms), `hold_p99_us` (the upper bound of its power-of-two bucket), "
                   "`hold_max_us` at the end of the idle phase; n/a where this meshd does not report them.", ""]

    plots = {}
    for w in workloads:
        md += ["## %s (`%s`)" % (TITLES[w], w), ""]
        md += ["| allocator | peak RSS | RSS after idle | PSS after idle | %s time | its CPU time | RSS/live after idle | live | minor faults | checked |"
               % TIME_LABEL[w], "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        bpeak = metric(w, BASELINE, "peak_kib")
        bidle = metric(w, BASELINE, "rss_idle_kib")
        bpss = metric(w, BASELINE, "pss_kib")
        btime = metric(w, BASELINE, "time_s", timing=True)
        bcpu = metric(w, BASELINE, "cpu_s", timing=True)
        for a in allocators:
            if not cell_runs(w, a, timing=True):
                continue
            if failed(w, a):
                md.append("| %s | FAIL | FAIL | FAIL | FAIL | - | - | - | - | see Failures |" % a)
                continue
            peak = metric(w, a, "peak_kib")
            idle = metric(w, a, "rss_idle_kib")
            pss = metric(w, a, "pss_kib")
            t = metric(w, a, "time_s", timing=True)
            times = [num(r, "time_s") for r in cell_runs(w, a, timing=True) if num(r, "time_s") is not None]
            cpu = metric(w, a, "cpu_s", timing=True)
            live = live_bytes(w, a)
            rl = "%.2fx" % (idle * 1024 / live) if idle and live else "-"
            faults = metric(w, a, "minflt")
            checked = [r.get("verified", "") for r in cell_runs(w, a)][:1]
            extra = ""
            if w.startswith("redis"):
                sel = cell_runs(w, a)
                keys = median([num(r, "keys") for r in sel])
                alloc = median([num(r, "allocator_allocated") for r in sel])
                extra = "; %d keys; jemalloc's own count: %s" % (keys or 0, mib(alloc / 1024) if alloc is not None else "-")
            md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s%s |" % (
                a,
                with_ratio(mib(peak), ratio(peak, bpeak)),
                with_ratio(mib(idle), ratio(idle, bidle)),
                with_ratio(mib(pss), ratio(pss, bpss)),
                with_ratio("-" if t is None else "%.2f s" % t, ratio(t, btime)) + (
                    "" if len(times) <= 1 else " [%d runs: %.2f-%.2f]" % (len(times), min(times), max(times))),
                with_ratio("-" if cpu is None else "%.2f s" % cpu, ratio(cpu, bcpu)),
                rl,
                mib(live / 1024) if live else "-",
                "-" if faults is None else "%.0fk" % (faults / 1000),
                "; ".join(checked), extra))
        md.append("")
        def table_share(r):
            """The span table's RSS, and its share of the process's RSS after idle (issue 16)."""
            t, rss = num(r, "spans_rss_kib"), num(r, "rss_idle_kib")
            return mib(t) + ("" if t is None or not rss else " (%.1f%%)" % (100.0 * t / rss))

        mesh = [r for col in MESHD_COLUMNS for r in cell_runs(w, col) if r.get("ok") == "1" and "meshd" in r]
        if mesh:
            md += ["meshd's view at the end of the idle phase:", "",
                   "| column | rep | heap | live | meshes | released | rounds | barrier max (one pair) | longest round (sum of its barriers) | pairs refused for the mapping budget | RSS: shmem (arena + span table) / span table (its share of the RSS after idle) / file / anon |",
                   "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
            for r in mesh:
                s = r["meshd"]
                md.append("| %s | %s | %s | %s | %d | %s | %s | %s us | %s | %s | %s / %s / %s / %s |" % (
                    r["allocator"], r["rep"], mib(s["heap_bytes"] / 1024), mib(s["live_bytes"] / 1024), s["meshes"],
                    mib(s["released_bytes"] / 1024), r.get("mesh_rounds", "-"),
                    r.get("barrier_max_us", "-"),
                    "-" if num(r, "round_barrier_max_us") is None else "%.1f ms" % (num(r, "round_barrier_max_us") / 1000),
                    r.get("budget_refusals", "-"),
                    mib(num(r, "rssshmem_kib")), table_share(r),
                    mib(num(r, "rssfile_kib")), mib(num(r, "rssanon_kib"))))
            md.append("")
        plots[w] = [(a, os.path.join(out, "runs", "%s.%s.1" % (w, a), "rss.csv")) for a in allocators]

    if "redis-latency" in all_workloads:
        md += ["## %s (`redis-latency`)" % TITLES["redis-latency"], ""]
        md += latency.section([r for r in runs if r["workload"] == "redis-latency"])

    # Targets (issue 13): the default policy's column.
    md += ["## Targets", ""]
    for w, limit in TARGET_IDLE_RATIO.items():
        if w not in workloads:
            continue
        j = metric(w, BASELINE, "rss_idle_kib")
        m = metric(w, POLICY_COLUMN, "rss_idle_kib")
        r = ratio(m, j)
        if r is not None:
            md.append("- %s RSS after idle, %s / jemalloc = %s / %s = **%.2fx**: target <= %.2fx %s; "
                      "settled %s after the work" % (
                          w, POLICY_COLUMN, mib(m), mib(j), r, limit, "met" if r <= limit else "MISSED",
                          "-" if settle(w, POLICY_COLUMN) is None else "%.1f s" % settle(w, POLICY_COLUMN)))
    if "redis-lru" in workloads:
        jt = metric("redis-lru", BASELINE, "time_s", timing=True)
        for a in MESHD_COLUMNS + ("libmesh",):
            t = metric("redis-lru", a, "time_s", timing=True)
            rt = ratio(t, jt)
            if rt is not None:
                md.append("- Redis LRU insertion time, %s / jemalloc = %.2f s / %.2f s = **%.2fx**: "
                          "target <= %.2fx %s" % (a, t, jt, rt, TARGET_TIME,
                                                  "MET" if rt <= TARGET_TIME else "MISSED"))
    pol = [r for r in runs if r.get("allocator") == POLICY_COLUMN and r.get("ok") == "1"]
    p99s = [holds(r)[1] for r in pol if holds(r)[1] is not None]
    maxes = [holds(r)[2] for r in pol if holds(r)[2] is not None]
    shares = [slow_share(r) for r in pol if slow_share(r) is not None]
    if shares:
        md.append("- holds over 1 ms (worst run of %s): **%.2f%%** of its holds: p99 under 1 ms needs "
                  "under 1%%: %s" % (POLICY_COLUMN, 100 * max(shares), "met" if max(shares) < 0.01 else "MISSED"))
    if p99s:
        md.append("- hold p99 (worst run of %s): **%s us**: target < %d us %s; hold max: **%s us**: "
                  "target < %d us %s" % (
                      POLICY_COLUMN, max(p99s), TARGET_HOLD_P99_US,
                      "met" if max(p99s) < TARGET_HOLD_P99_US else "MISSED", max(maxes) if maxes else "-",
                      TARGET_HOLD_MAX_US, "met" if maxes and max(maxes) < TARGET_HOLD_MAX_US else "MISSED"))
    else:
        md.append("- holds p99/max: n/a (this meshd's `meshctl stats --json` has no `hold_p99_us`)")
    bmax = [num(r, "barrier_max_us") for r in runs if r.get("allocator") in MESHD_COLUMNS]
    bmax = [b for b in bmax if b is not None]
    if bmax:
        md.append("- longest barrier in meshd's round log over all runs with meshd (\"max N us\": one "
                  "pair's write barrier): %.0f us" % max(bmax))
    rmax = [num(r, "round_barrier_max_us") for r in runs if r.get("allocator") in MESHD_COLUMNS]
    rmax = [b for b in rmax if b is not None]
    if rmax:
        md.append("- for reference, the longest sum of barrier holds in one round (\"barrier total\"; pairs "
                  "are protected one at a time, so no single write waits for the sum): %.1f ms" % (max(rmax) / 1000))
    if "redis-latency" in all_workloads:
        md += latency.targets([r for r in runs if r["workload"] == "redis-latency"])
    md.append("")

    md += ["## Failures", ""]
    md += ["- " + f for f in failures] if failures else ["none"]
    if skipped:
        md += ["", "Left out: " + ", ".join(skipped)]
    md += ["", "Plots: " + ", ".join("`%s.png`" % w for w in workloads), ""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(md))

    for w, series in plots.items():
        lines = [l for l in (
            "'%s' every ::1 using 1:($2/1024) with lines lw 2 title '%s'" % (csv_path, a)
            if os.path.exists(csv_path) else None for a, csv_path in series) if l]
        if not lines:
            continue
        with open(os.path.join(out, w + ".gp"), "w") as f:
            f.write("set terminal pngcairo size 1000,600 font ',11'\n")
            f.write("set output '%s'\n" % os.path.join(out, w + ".png"))
            f.write("set datafile separator ','\n")
            f.write("set title '%s: RSS over time'\n" % TITLES[w])
            f.write("set xlabel 'seconds since the program started'\n")
            f.write("set ylabel 'RSS (MiB)'\n")
            f.write("set yrange [0:*]\nset grid\nset key outside right top\n")
            f.write("plot " + ", \\\n     ".join(lines) + "\n")


if __name__ == "__main__":
    main()
