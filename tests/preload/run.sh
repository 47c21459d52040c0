#!/usr/bin/env bash
# Preload suite: real programs from Debian's packages, each run once under glibc
# and once with LD_PRELOAD=$MESH_LIB.  Both runs must give byte-identical stdout,
# identical stderr (after removing the shim's stats lines) and the same exit
# status, and the preloaded run must prove that the shim was mapped and used.
#
#   MESH_LIB=/abs/libmesh.so bash tests/preload/run.sh [CASE...]
#
# Cases: python3 perl pipelines sqlite3 git gcc sort redis (default: all).
#
# Environment:
#   MESH_LIB            absolute path of the library to preload (required).
#   MESH_PROG_DIR       directory of the helper programs built from tests/prog/
#                       (passed through to the cases; none uses it yet).
#   PRELOAD_TIMEOUT     seconds allowed per program run (default 600: only a hang
#                       may run into it, never a loaded machine).
#   PRELOAD_KEEP=1      keep the temporary directory (both runs' files) for a look.
#   PRELOAD_SKIP_PROOF=1
#                       ONLY for testing this suite's plumbing with a stand-in
#                       allocator that does not print libmesh stats lines, e.g.
#                       MESH_LIB=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2.  It
#                       skips the "libmesh: stats pid=" checks; the checks that the
#                       library is mapped (preflight, redis-server's maps) still
#                       run.  Never set it in CI: by default proof is required.
#
# Proof that the shim was used: the preloaded run sets MESH_SHOW_STATS to an
# absolute file name; the shim appends one line "libmesh: stats pid=<pid>
# spans=<n> ..." there when a process exits normally (MESH_SHOW_STATS=1 would
# write it to stderr, where coreutils have already closed it).  Lines found on
# stderr count too, and are removed before stderr is compared.  The preloaded
# run must produce at least one line, one for every pid the case recorded (the
# top-level program, plus programs a case script started with `marked`, see
# cases/lib.sh), and, when lines carry "spans=", some spans value > 0.
# redis-server additionally must have $MESH_LIB in /proc/<pid>/maps while it runs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CASES_DIR=$HERE/cases
ALL_CASES=(python3 perl pipelines sqlite3 git gcc sort redis)
CASE_TIMEOUT=${PRELOAD_TIMEOUT:-600}
STATS_RE='^libmesh: stats pid='
CLEAN_PATH=/usr/sbin:/usr/bin:/sbin:/bin
SKIP_PROOF=${PRELOAD_SKIP_PROOF:-0}

die() {
    echo "preload: $*" >&2
    exit 2
}

if [[ -z ${MESH_LIB:-} ]]; then
    die "set MESH_LIB to the absolute path of libmesh.so"
fi
[[ $MESH_LIB == /* ]] || die "MESH_LIB must be an absolute path: $MESH_LIB"
[[ -f $MESH_LIB && -r $MESH_LIB ]] || die "MESH_LIB is not a readable file: $MESH_LIB"
MESH_LIB_REAL=$(realpath "$MESH_LIB")
MESH_PROG_DIR=${MESH_PROG_DIR:-}

selected=()
if (($# > 0)); then
    for arg in "$@"; do
        case " ${ALL_CASES[*]} " in
        *" $arg "*) selected+=("$arg") ;;
        *) die "unknown case '$arg' (cases: ${ALL_CASES[*]})" ;;
        esac
    done
else
    selected=("${ALL_CASES[@]}")
fi

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/mesh-preload.XXXXXX")
cleanup() {
    local pid
    if [[ -s $ROOT/running ]]; then
        pid=$(<"$ROOT/running")
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [[ ${PRELOAD_KEEP:-0} == 1 ]]; then
        echo "preload: kept $ROOT"
    else
        rm -rf "$ROOT"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Preflight: the loader must actually map the library (a library that cannot be
# preloaded is only warned about by ld.so, and every program would then pass).
if ! env LD_PRELOAD="$MESH_LIB" grep -qF -- "$MESH_LIB_REAL" /proc/self/maps \
    2>"$ROOT/preflight.err"; then
    cat "$ROOT/preflight.err" >&2
    die "LD_PRELOAD=$MESH_LIB does not map $MESH_LIB_REAL into a process"
fi

# A signal in the middle of a case: stop the running program (timeout forwards
# the signal to the program's process group) and tell the main loop.  Without
# this, bash would finish the case and carry on after a Ctrl-C.
on_signal() {
    local pid=
    trap - INT TERM HUP
    : >"$ROOT/interrupted"
    if [[ -s $ROOT/running ]]; then
        pid=$(<"$ROOT/running")
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        : >"$ROOT/running"
    fi
    exit 130
}

# ---------------------------------------------------------------------------
# Running one program twice and comparing.  These functions run inside the
# per-case subshell; CASE_DIR is that case's directory, failures are collected
# in $CASE_DIR/reasons and details go to stdout (the case's log).

# Environment of both runs (beyond what run_one sets); a case may add VAR=VALUE.
EXTRA_ENV=()
# 1: the top-level command runs preloaded and must print a stats line itself.
# 0: the top-level script runs under glibc in both runs and preloads what it
#    wants itself (redis: only the server), reading MESH_CASE_MODE.
TOP_PRELOADED=1

reason() {
    echo "$*" >>"$CASE_DIR/reasons"
}

# run_one MODE CMD [ARGS...]: MODE is glibc or mesh.  Both runs use the same
# working directory path ($CASE_DIR/w, renamed to $CASE_DIR/MODE.w afterwards),
# so even path-dependent output matches.
run_one() {
    local mode=$1
    shift
    local w=$CASE_DIR/w out=$CASE_DIR/$mode rc=0 t0 wrap
    rm -rf "$w"
    mkdir -p "$w/tmp" "$w/home"
    : >"$out.pids"
    rm -f "$out.statsfile"
    local -a envv=(env -i "PATH=$CLEAN_PATH" "HOME=$w/home" "TMPDIR=$w/tmp"
        LC_ALL=C TZ=UTC0 "MESH_PIDS=$out.pids" "PRELOAD_CASES=$CASES_DIR"
        "MESH_CASE_MODE=$mode" "MESH_LIB=$MESH_LIB" "MESH_PROG_DIR=$MESH_PROG_DIR"
        "${EXTRA_ENV[@]}")
    if ((TOP_PRELOADED)); then
        # Record the top-level pid; exec keeps it for the real program.
        # shellcheck disable=SC2016 # expanded by the inner bash
        wrap='echo "$$" >>"$MESH_PIDS"; exec "$@"'
        if [[ $mode == mesh ]]; then
            envv+=("LD_PRELOAD=$MESH_LIB" "MESH_SHOW_STATS=$out.statsfile")
        fi
    else
        # shellcheck disable=SC2016
        wrap='exec "$@"'
    fi
    t0=$EPOCHREALTIME
    # timeout itself runs under glibc; it puts the program in its own process
    # group and kills the whole group when time runs out.
    (cd "$w" && exec timeout -k 10 "$CASE_TIMEOUT" "${envv[@]}" bash -c "$wrap" run "$@") \
        </dev/null >"$out.stdout" 2>"$out.stderr" &
    echo "$!" >"$ROOT/running"
    wait "$!" || rc=$?
    : >"$ROOT/running"
    echo "$rc" >"$out.rc"
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }' >"$out.time"
    mv "$w" "$CASE_DIR/$mode.w"
}

show_tail() { # FILE LABEL
    if [[ -s $1 ]]; then
        echo "--- last lines of $2:"
        tail -n 15 "$1"
    fi
}

compare_runs() {
    local g=$CASE_DIR/glibc m=$CASE_DIR/mesh grc mrc
    grc=$(<"$g.rc")
    mrc=$(<"$m.rc")
    if ((grc == 124 || grc == 137)); then
        reason "glibc run timed out (${CASE_TIMEOUT}s): the test itself is too slow"
    elif ((grc != 0)); then
        reason "glibc run failed (exit $grc): the test itself is broken"
        show_tail "$g.stderr" "glibc stderr"
    fi
    if ((mrc == 124 || mrc == 137)); then
        reason "preloaded run timed out (${CASE_TIMEOUT}s)"
        show_tail "$m.stderr" "preloaded stderr"
    elif ((grc != mrc)); then
        reason "exit status glibc=$grc preloaded=$mrc"
        show_tail "$m.stderr" "preloaded stderr"
    fi
    if ! cmp -s "$g.stdout" "$m.stdout"; then
        reason "stdout differs"
        diff -u --label glibc/stdout --label preloaded/stdout "$g.stdout" "$m.stdout" |
            awk 'NR <= 200' || true
    fi
    sed "/$STATS_RE/d" "$g.stderr" >"$g.stderr.cmp"
    sed "/$STATS_RE/d" "$m.stderr" >"$m.stderr.cmp"
    if ! cmp -s "$g.stderr.cmp" "$m.stderr.cmp"; then
        reason "stderr differs (stats lines removed)"
        diff -u --label glibc/stderr --label preloaded/stderr "$g.stderr.cmp" "$m.stderr.cmp" |
            awk 'NR <= 100' || true
    fi
    if grep -q 'cannot be preloaded' "$m.stderr"; then
        reason "ld.so could not preload $MESH_LIB"
    fi
    if ((mrc != 124 && mrc != 137)); then
        check_proof "$m"
    fi
}

# check_proof OUT: the stats lines of the preloaded run (see the header).
check_proof() {
    local out=$1 n pid missing=() maxspans
    cat "$out.statsfile" "$out.stderr" 2>/dev/null | grep -- "$STATS_RE" >"$out.stats" || true
    n=$(wc -l <"$out.stats")
    echo "$n" >"$CASE_DIR/nstats"
    if [[ $SKIP_PROOF == 1 ]]; then
        return 0
    fi
    if ((n == 0)); then
        reason "no 'libmesh: stats pid=' line from the preloaded run (shim not used?)"
        return 0
    fi
    while read -r pid; do
        if ! grep -Eq -- "^libmesh: stats pid=$pid( |\$)" "$out.stats"; then
            missing+=("$pid")
        fi
    done < <(sort -un "$out.pids")
    if ((${#missing[@]} > 0)); then
        reason "no stats line from pid(s) ${missing[*]} (recorded in $(basename "$out").pids)"
    fi
    if grep -q ' spans=' "$out.stats"; then
        maxspans=$(sed -n 's/.* spans=\([0-9][0-9]*\).*/\1/p' "$out.stats" | sort -n | tail -n 1)
        if ((${maxspans:-0} == 0)); then
            reason "every stats line says spans=0"
        fi
    fi
}

# run_pair CMD [ARGS...]: the whole comparison for one program.
run_pair() {
    run_one glibc "$@"
    run_one mesh "$@"
    compare_runs
}

# ---------------------------------------------------------------------------
# The cases.  Each runs in its own subshell with CASE_DIR set.

case_python3() {
    EXTRA_ENV=(PYTHONMALLOC=malloc PYTHONDONTWRITEBYTECODE=1)
    run_pair python3 "$CASES_DIR/python3.py"
}

case_perl() {
    run_pair perl "$CASES_DIR/perl.pl"
}

case_pipelines() {
    run_pair bash "$CASES_DIR/pipelines.sh"
}

case_sqlite3() {
    run_pair bash "$CASES_DIR/sqlite3.sh"
}

case_git() {
    run_pair bash "$CASES_DIR/git.sh"
}

case_gcc() {
    run_pair bash "$CASES_DIR/gcc.sh"
}

case_sort() {
    run_pair bash "$CASES_DIR/sort.sh"
}

case_redis() {
    TOP_PRELOADED=0
    EXTRA_ENV=("MESH_LIB_REAL=$MESH_LIB_REAL" "MESH_STATS_FILE=$CASE_DIR/mesh.statsfile")
    run_pair bash "$CASES_DIR/redis.sh"
}

# ---------------------------------------------------------------------------

echo "preload: MESH_LIB=$MESH_LIB${MESH_PROG_DIR:+ MESH_PROG_DIR=$MESH_PROG_DIR}"
if [[ $SKIP_PROOF == 1 ]]; then
    echo "preload: PRELOAD_SKIP_PROOF=1: stats-line proof NOT checked (stand-in allocator mode)"
fi

failed=()
suite_t0=$EPOCHREALTIME
for name in "${selected[@]}"; do
    CASE_DIR=$ROOT/$name
    mkdir -p "$CASE_DIR"
    : >"$CASE_DIR/reasons"
    rc=0
    # set -e is live inside the subshell because it is not part of a condition.
    set +e
    (
        set -e
        trap on_signal INT TERM HUP
        "case_$name"
    ) >"$CASE_DIR/log" 2>&1
    rc=$?
    set -e
    if [[ -e $ROOT/interrupted ]]; then
        echo "preload: interrupted during case $name"
        exit 130
    fi
    if ((rc != 0)); then
        echo "case harness exited with status $rc" >>"$CASE_DIR/reasons"
    fi
    if [[ -s $CASE_DIR/reasons ]]; then
        failed+=("$name")
        echo "FAIL $name: $(paste -sd';' "$CASE_DIR/reasons" | sed 's/;/; /g')"
        sed 's/^/    /' "$CASE_DIR/log"
    else
        echo "PASS $name (glibc $(<"$CASE_DIR/glibc.time"), preloaded $(<"$CASE_DIR/mesh.time"), $(<"$CASE_DIR/nstats") stats lines)"
    fi
done
awk -v a="$suite_t0" -v b="$EPOCHREALTIME" -v n="${#selected[@]}" -v f="${#failed[@]}" \
    'BEGIN { printf "preload: %d case(s), %d failed, %.0fs\n", n, f, b - a }'
if ((${#failed[@]} > 0)); then
    echo "preload: FAILED: ${failed[*]}"
    exit 1
fi
