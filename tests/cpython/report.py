#!/usr/bin/env python3
"""Reads what tests/cpython/run.sh left in its results directory and reports it.

    report.py failed RUN_DIR         ids of the tests that failed or errored, one a line
    report.py meshes MESHD_LOG       "pairs rounds pids": meshes meshd made (see below)
    report.py table DIR MODE...      the per-module table and every failure; exit 1 if a
                                     module failed under the shim

DIR holds one directory per test module, with one directory per mode (glibc, shim,
meshd) holding `rc` (python -m test's exit status), `log` (its output), `junit.xml`
(its --junit-xml file, absent if the run crashed or timed out) and, for meshd,
`meshd.log`.  Failures are read from the log (the runs use -W, which prints unittest's
verbose listing for a failed module; subtest failures appear only there) and from the
junit file.
Tests that failed under glibc are in MODULE/glibc-failed (the shim runs ignore them);
MODE/recheck/ is the run under glibc of the tests that failed under the shim, MODE/rerun/
the same tests rerun alone under the shim.
This script runs under glibc (the harness never preloads it).
"""
import os
import re
import sys
import xml.etree.ElementTree as ET

LOG_TAIL_LINES = 60


SEPARATOR = "=" * 70
RULE = "-" * 70
# unittest's heading of one failure: "FAIL: test_x (test.test_mod.Class.test_x) [(subtest params)]"
HEADING = re.compile(r"^(FAIL|ERROR): \S+ \(([^)\s]+)\)(.*)$")


def failures_in_log(log_path):
    """[(name, kind, text)] from the failure listing unittest prints in verbose mode (-W
    prints it for a module that failed); subtest failures appear only there."""
    out = []
    blocks = read(log_path).split(SEPARATOR + "\n")
    for block in blocks[1:]:
        lines = block.splitlines()
        m = HEADING.match(lines[0]) if lines else None
        if not m:
            continue
        # The heading, the docstring's first line if the test has one, a rule, the
        # traceback; after the last failure another rule and "Ran N tests".
        start = lines.index(RULE) + 1 if RULE in lines[1:3] else 1
        body = []
        for line in lines[start:]:
            if line == RULE:
                break
            body.append(line)
        name = m.group(2) + m.group(3)
        kind = "failure" if m.group(1) == "FAIL" else "error"  # junit's words
        out.append((name, kind, "\n".join(body).rstrip()))
    return out


def failures_in_junit(xml_path):
    """[(name, kind, text)] of the failed and errored tests in a --junit-xml file, or None
    if there is none (the run crashed or timed out before writing it)."""
    out = []
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return None
    for case in root.iter("testcase"):
        for kind in ("failure", "error"):
            el = case.find(kind)
            if el is not None:
                out.append((case.get("name", "?"), kind, (el.text or el.get("message") or "").rstrip()))
    return out


def failures(run_dir):
    """Every failure of the run in run_dir: the log's listing, and the junit file's entries
    the log lacks (one per test id)."""
    found = failures_in_log(os.path.join(run_dir, "log"))
    seen = {test_id(n) for n, _, _ in found}
    for name, kind, text in failures_in_junit(os.path.join(run_dir, "junit.xml")) or []:
        if test_id(name) not in seen:
            found.append((name, kind, text))
            seen.add(test_id(name))
    return found


def test_id(name):
    """The pattern --ignorefile/--matchfile take for a junit name: a subtest's name is its
    test's id followed by " (params)"."""
    return name.split(" ", 1)[0]


def read(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def meshes(log_path):
    """Sums meshd's "pid P: [automatic ]round N: M/K pairs meshed" lines: pairs meshed,
    rounds that meshed something, processes that had something meshed."""
    pairs = rounds = 0
    pids = set()
    pat = re.compile(r"pid (\d+): (?:automatic )?round \d+: (\d+)/\d+ pairs meshed")
    for line in read(log_path).splitlines():
        m = pat.search(line)
        if m and int(m.group(2)) > 0:
            pairs += int(m.group(2))
            rounds += 1
            pids.add(m.group(1))
    return pairs, rounds, len(pids)


def log_tail(path):
    lines = read(path).splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])


def judge(module_dir, mode):
    """(status, details, notes) for one module under one shim mode."""
    run = os.path.join(module_dir, mode)
    rc = read(os.path.join(run, "rc")).strip()
    if not rc:
        return "NOT RUN", [], []
    notes = []
    if "(env changed)" in read(os.path.join(run, "log")):
        notes.append("%s: python -m test reported 'env changed' (see its log)" % mode)
    if rc == "0":
        return "PASS", [], notes
    failed = failures(run)
    if not failed:
        reason = "python -m test exited %s without a failed test in its junit file " \
                 "(crash or timeout?); the end of its output:" % rc
        return "FAIL", [(mode + ": whole module", "crash", reason + "\n" + log_tail(os.path.join(run, "log")))], notes
    # Tests that failed again when rerun alone under glibc are not the shim's doing, nor are
    # those that passed when rerun alone under the shim (flaky on a loaded machine); a rerun
    # that crashed without naming a failed test counts every one as failed again.
    again = failures(os.path.join(run, "recheck"))
    glibc_too = {test_id(n) for n, _, _ in again}
    rerun_dir = os.path.join(run, "rerun")
    rerun_rc = read(os.path.join(rerun_dir, "rc")).strip()
    rerun_failed = failures(rerun_dir)
    shim_again = {test_id(n) for n, _, _ in rerun_failed}
    rerun_crashed = rerun_rc not in ("", "0") and not rerun_failed
    details = []
    for name, kind, text in failed:
        if test_id(name) in glibc_too:
            notes.append("%s: %s failed, but also under glibc when rerun alone: not counted" % (mode, name))
        elif rerun_rc == "0" or (rerun_rc and not rerun_crashed and test_id(name) not in shim_again):
            notes.append("%s: %s failed, but passed when rerun alone under the shim (flaky under "
                         "load?): not counted" % (mode, name))
        else:
            details.append((mode + ": " + name, kind, text))
    if not details:
        return "PASS", [], notes
    return "FAIL", details, notes


def table(results, modes):
    modules = sorted(d for d in os.listdir(results) if os.path.isdir(os.path.join(results, d)))
    shim_modes = [m for m in modes if m != "glibc"]
    header = ["module"] + modes + (["meshes (pairs/rounds/pids)"] if "meshd" in modes else []) + \
        ["excluded (fail under glibc)", "seconds (%s)" % "/".join(modes)]
    rows, all_details, all_notes = [], [], []
    bad = False
    total_pairs = 0
    for mod in modules:
        mdir = os.path.join(results, mod)
        row = [mod]
        excluded = [l for l in read(os.path.join(mdir, "glibc-failed")).splitlines() if l.strip()]
        glibc_rc = read(os.path.join(mdir, "glibc", "rc")).strip()
        module_excluded = False
        for mode in modes:
            if mode == "glibc":
                if not glibc_rc:
                    row.append("NOT RUN")
                elif glibc_rc == "0":
                    row.append("PASS")
                elif excluded:
                    row.append("PASS*")
                else:
                    row.append("FAIL")
                    module_excluded = True
                    all_notes.append("%s fails under glibc as a whole (exit %s): not run under the shim, "
                                     "the end of its output:\n%s" % (mod, glibc_rc, log_tail(os.path.join(mdir, "glibc", "log"))))
                continue
            if module_excluded:
                row.append("excluded")
                continue
            status, details, notes = judge(mdir, mode)
            row.append(status)
            all_details += [(mod,) + d for d in details]
            all_notes += [mod + ": " + n for n in notes]
            if status != "PASS":
                bad = True
        if "meshd" in modes:
            p, r, n = meshes(os.path.join(mdir, "meshd", "meshd.log"))
            total_pairs += p
            row.append("%d/%d/%d" % (p, r, n))
        row.append(str(len(excluded)))
        row.append("/".join(read(os.path.join(mdir, m, "seconds")).strip() or "-" for m in modes))
        rows.append(row)
        for t in excluded:
            all_notes.append("%s: %s fails under glibc: excluded from the shim runs" % (mod, t))

    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join("%%-%ds" % w for w in widths)
    print(fmt % tuple(header))
    for r in rows:
        print(fmt % tuple(r))
    print("(PASS* = passed once the tests that fail under glibc were left out)")
    if "meshd" in modes:
        print("meshd mode: %d pairs meshed in all (meshd's log: pairs meshed / rounds that meshed / "
              "processes meshed)" % total_pairs)
        if total_pairs == 0 and shim_modes:
            print("FAIL: meshd meshed nothing during the meshd runs: they proved nothing")
            bad = True
    for n in all_notes:
        print("note: " + n)
    for mod, name, kind, text in all_details:
        print("\n==== FAIL %s %s (%s)" % (mod, name, kind))
        print(text)
    return 1 if bad else 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "failed":
        got = failures(argv[1])
        for name in sorted({test_id(n) for n, _, _ in got}):
            print(name)
        return 0
    if len(argv) == 2 and argv[0] == "meshes":
        print("%d %d %d" % meshes(argv[1]))
        return 0
    if len(argv) >= 3 and argv[0] == "table":
        return table(argv[1], argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
