"""report.py OUT "WORKLOADS" "ALLOCATORS": the report and plots of bench/frag/run.sh.

Reads OUT/runs/*/result (key=value lines), rss.csv and meshd-stats.json of every run and
OUT/machine.txt; writes OUT/report.md and one gnuplot script per workload (OUT/NAME.gp,
which run.sh renders to OUT/NAME.png).  Cells are medians over repetitions.
"""
import json
import os
import statistics
import sys

BASELINE = "jemalloc"
MESHD_COLUMNS = ("libmesh+meshd", "libmesh+policy")
TITLES = {
    "redis-lru": "Redis as an LRU cache (Mesh paper 6.2.2)",
    "redis-del": "Redis, 75% of keys deleted",
    "robson": "Robson-style fragmenter",
    "python": "Python building and dropping structures",
}
TIME_LABEL = {
    "redis-lru": "insertion",
    "redis-del": "load + delete",
    "robson": "work",
    "python": "work",
}
# Redis LRU RSS after idle / jemalloc (target, stretch), time / jemalloc, barrier (us).
TARGET_RSS, STRETCH_RSS, TARGET_TIME, TARGET_BARRIER_US = 0.61, 0.55, 1.05, 5000


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


def main():
    out, workloads, allocators = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
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

    # Summary: RSS after idle, ratio to jemalloc.
    md += ["## RSS after idle, ratio to jemalloc (lower is better)", ""]
    md += ["| workload | " + " | ".join(allocators) + " |",
           "|---|" + "---:|" * len(allocators)]
    for w in workloads:
        base = metric(w, BASELINE, "rss_idle_kib")
        cells = []
        for a in allocators:
            v = metric(w, a, "rss_idle_kib")
            if failed(w, a):
                cells.append("FAIL")
            elif v is None:
                cells.append("-")
            else:
                r = ratio(v, base)
                cells.append("%s (%s)" % (mib(v), "%.2fx" % r if r else "-"))
        md.append("| %s | %s |" % (w, " | ".join(cells)))
    md.append("")

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
        mesh = [r for col in MESHD_COLUMNS for r in cell_runs(w, col) if r.get("ok") == "1" and "meshd" in r]
        if mesh:
            md += ["meshd's view at the end of the idle phase:", "",
                   "| column | rep | heap | live | meshes | released | rounds | barrier max (one pair) | longest round (sum of its barriers) | pairs refused for the mapping budget | RSS: shmem (arena + span table) / span table / file / anon |",
                   "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
            for r in mesh:
                s = r["meshd"]
                md.append("| %s | %s | %s | %s | %d | %s | %s | %s us | %s | %s | %s / %s / %s / %s |" % (
                    r["allocator"], r["rep"], mib(s["heap_bytes"] / 1024), mib(s["live_bytes"] / 1024), s["meshes"],
                    mib(s["released_bytes"] / 1024), r.get("mesh_rounds", "-"),
                    r.get("barrier_max_us", "-"),
                    "-" if num(r, "round_barrier_max_us") is None else "%.1f ms" % (num(r, "round_barrier_max_us") / 1000),
                    r.get("budget_refusals", "-"),
                    mib(num(r, "rssshmem_kib")), mib(num(r, "spans_rss_kib")),
                    mib(num(r, "rssfile_kib")), mib(num(r, "rssanon_kib"))))
            md.append("")
        plots[w] = [(a, os.path.join(out, "runs", "%s.%s.1" % (w, a), "rss.csv")) for a in allocators]

    # Targets.
    md += ["## Targets", ""]
    lru_ok = "redis-lru" in workloads
    if lru_ok:
        j = metric("redis-lru", BASELINE, "rss_idle_kib")
        for a in MESHD_COLUMNS:
            m = metric("redis-lru", a, "rss_idle_kib")
            r = ratio(m, j)
            if r is not None:
                md.append("- Redis LRU RSS after idle, %s / jemalloc = %s / %s = **%.2fx**: "
                          "target <= %.2fx %s; stretch <= %.2fx %s" % (
                              a, mib(m), mib(j), r, TARGET_RSS, "MET" if r <= TARGET_RSS else "MISSED",
                              STRETCH_RSS, "MET" if r <= STRETCH_RSS else "MISSED"))
        jt = metric("redis-lru", BASELINE, "time_s", timing=True)
        for a in MESHD_COLUMNS + ("libmesh",):
            t = metric("redis-lru", a, "time_s", timing=True)
            rt = ratio(t, jt)
            if rt is not None:
                md.append("- Redis LRU insertion time, %s / jemalloc = %.2f s / %.2f s = **%.2fx**: "
                          "target <= %.2fx %s" % (a, t, jt, rt, TARGET_TIME,
                                                  "MET" if rt <= TARGET_TIME else "MISSED"))
    bmax = [num(r, "barrier_max_us") for r in runs if r.get("allocator") in MESHD_COLUMNS]
    bmax = [b for b in bmax if b is not None]
    if bmax:
        md.append("- longest barrier hold over all runs with meshd (meshd log, \"max N us\": one pair's "
                  "write barrier): **%.0f us**: target <= %d us %s" % (
                      max(bmax), TARGET_BARRIER_US, "MET" if max(bmax) <= TARGET_BARRIER_US else "MISSED"))
    rmax = [num(r, "round_barrier_max_us") for r in runs if r.get("allocator") in MESHD_COLUMNS]
    rmax = [b for b in rmax if b is not None]
    if rmax:
        md.append("- for reference, the longest sum of barrier holds in one round (\"barrier total\"; pairs "
                  "are protected one at a time, so no single write waits for the sum): %.1f ms" % (max(rmax) / 1000))
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
