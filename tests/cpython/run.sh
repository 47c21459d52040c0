#!/usr/bin/env bash
# CPython's own tests (Debian's libpython3.11-testsuite) under the shim: each module runs
# under glibc, then with LD_PRELOAD=libmesh.so alone (no meshd listening), then with a
# private meshd meshing every python process as often as it can (meshd.conf).  All runs
# use PYTHONMALLOC=malloc, so Python's objects live in the allocator under test.  A test
# that fails under glibc is left out of the shim runs (--ignorefile), and one that fails
# under the shim is rerun alone under glibc: if it fails there too it is not counted; the
# report names both.  Everything else must pass under the shim as it does under glibc.
#
#   BUILD=/abs/build bash tests/cpython/run.sh [MODULE...]
#
# Environment (all optional):
#   CPYTHON_TEST_PYTHON   the interpreter (default /usr/bin/python3.11: the testsuite
#                         package matches Debian's python3.11, not another 3.11)
#   CPYTHON_TEST_JOBS     modules run at once (default 2)
#   CPYTHON_TEST_TIMEOUT  python -m test --timeout, seconds per module (default 300: the
#                         longest module, test_signal, takes about 60 s on a loaded machine)
#   CPYTHON_TEST_MODES    which runs (default "glibc shim meshd"; glibc always runs)
#   CPYTHON_TEST_ARGS     extra python -m test arguments for every run, e.g. "-i *VSOCK*"
#   CPYTHON_TEST_SHIM_ENV extra VAR=VALUE words for the shim runs only, e.g.
#                         MESH_BARRIER=mprotect (the barrier non-root processes get)
#   CPYTHON_TEST_KEEP=1   keep the results directory (logs, junit files, meshd logs)
#
# Without the testsuite package it prints why and exits 0 (the Makefile says SKIPPED).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${BUILD:?set BUILD to the absolute build directory}
LIB=$BUILD/libmesh.so
MESHD=$BUILD/meshd
PY=${CPYTHON_TEST_PYTHON:-/usr/bin/python3.11}
JOBS=${CPYTHON_TEST_JOBS:-2}
TIMEOUT=${CPYTHON_TEST_TIMEOUT:-300}
read -r -a MODES <<<"${CPYTHON_TEST_MODES:-glibc shim meshd}"
read -r -a SHIM_ENV <<<"${CPYTHON_TEST_SHIM_ENV:-}"
read -r -a TEST_ARGS <<<"${CPYTHON_TEST_ARGS:-}"
# Longest first (measured under glibc on 2 cores), so the last module to start is short.
DEFAULT_MODULES=(test_signal test_subprocess test_threading test_fork1 test_cmd_line test_os
                 test_posix test_mmap)
if (($# > 0)); then MODULES=("$@"); else MODULES=("${DEFAULT_MODULES[@]}"); fi
REPORT=(/usr/bin/python3 "$HERE/report.py")

say() { echo "cpython-test: $*"; }

# The testsuite is a Debian package of its own; without it there is nothing to run.
if [[ ! -x $PY ]]; then
    say "SKIPPED: $PY not found (Debian's python3.11; install python3 and libpython3.11-testsuite)"
    exit 0
fi
# has_modules MODULE...: the interpreter finds test.MODULE for every MODULE.
has_modules() {
    "$PY" -c 'import importlib.util as u, sys
sys.exit(0 if all(u.find_spec("test." + m) for m in sys.argv[1:]) else 1)' "$@" 2>/dev/null
}
# Debian's libpython3.11-stdlib has regrtest itself (test/libregrtest), the testsuite
# package the test_*.py modules.
if ! has_modules test_os; then
    say "SKIPPED: CPython's test modules are missing: apt-get install libpython3.11-testsuite"
    exit 0
fi
for m in "${MODULES[@]}"; do
    has_modules "$m" || { say "no test module $m in $PY's test package"; exit 2; }
done
for f in "$LIB" "$MESHD"; do
    [[ -x $f || -f $f ]] || { say "missing $f (make all first)"; exit 2; }
done
for m in "${MODES[@]}"; do
    case $m in glibc | shim | meshd) ;; *) say "unknown mode '$m' (modes: glibc shim meshd)"; exit 2 ;; esac
done
[[ " ${MODES[*]} " == *" glibc "* ]] || MODES=(glibc "${MODES[@]}")

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/mesh-cpython.XXXXXX")
JOB_PIDS=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    local pid
    for pid in "${JOB_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${JOB_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ ${CPYTHON_TEST_KEEP:-0} == 1 ]]; then say "kept $ROOT"; else rm -rf "$ROOT"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

mkdir -p "$ROOT/home"
# The same minimal environment for every run; only LD_PRELOAD and MESHD_SOCKET differ.
BASE_ENV=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$ROOT/home" LANG=C.UTF-8 TZ=UTC0 PYTHONMALLOC=malloc)

# Proof that the loader maps the library into this interpreter and the shim allocates.
proof=$(env -i "${BASE_ENV[@]}" TMPDIR="$ROOT" LD_PRELOAD="$LIB" MESH_NO_MESHD=1 MESH_SHOW_STATS=1 \
    "$PY" -c 'import sys; sys.stdout.write(open("/proc/self/maps").read())' 2>&1)
if ! grep -q "$(realpath "$LIB")" <<<"$proof" || ! grep -q '^libmesh: stats pid=' <<<"$proof"; then
    say "FAIL: $LIB is not used by $PY under LD_PRELOAD"
    exit 1
fi

# run_tests DIR PRELOAD SOCKET ARGS...: python -m test ARGS in DIR under the common
# environment (PRELOAD and SOCKET empty for glibc).  -W puts a failed module's verbose
# listing (every failure and subtest failure with its traceback) in the log.  The tests run
# in regrtest's own process, not in a -j worker: a worker sits in a session of its own,
# which `timeout` (it bounds the whole run and kills its process group) would leave behind;
# a hang is cut by --timeout (faulthandler dumps every thread's stack and exits), a crash
# leaves faulthandler's traceback in the log.  Leaves DIR/rc, DIR/log, DIR/junit.xml (not
# written if the run crashed), DIR/seconds.
run_tests() {
    local dir=$1 preload=$2 sock=$3 start pid rc
    shift 3
    local extra=()
    [[ -n $preload ]] && extra+=(LD_PRELOAD="$preload" MESHD_SOCKET="$sock" "${SHIM_ENV[@]}")
    mkdir -p "$dir/tmp"
    start=$SECONDS
    timeout -k 30 $((TIMEOUT * 2 + 120)) env -i "${BASE_ENV[@]}" TMPDIR="$dir/tmp" "${extra[@]}" \
        "$PY" -m test -W --timeout "$TIMEOUT" --junit-xml "$dir/junit.xml" "${TEST_ARGS[@]}" "$@" \
        >"$dir/log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pid"
    wait "$pid"
    rc=$?
    echo "$rc" >"$dir/rc"
    echo $((SECONDS - start)) >"$dir/seconds"
    rm -rf "$dir/tmp" "$dir/pid"
    return 0
}

# recheck DIR PRELOAD SOCKET: tests that failed in the shim run in DIR are rerun alone,
# under glibc in DIR/recheck and under the same shim set-up in DIR/rerun, to tell the
# shim's failures from tests that are flaky on a loaded machine: a test counts against the
# shim only if it fails again alone under the shim and passes alone under glibc.
recheck() {
    local dir=$1
    "${REPORT[@]}" failed "$dir" >"$dir/failed"
    [[ -s $dir/failed ]] || return 0
    run_tests "$dir/recheck" "" "" --matchfile "$dir/failed" "$module"
    run_tests "$dir/rerun" "$2" "$3" --matchfile "$dir/failed" "$module"
}

# module_job MODULE: the module under every mode, one after the other.
module_job() {
    module=$1
    local mdir=$ROOT/results/$module meshd_pid='' mode dir ignore=()
    # shellcheck disable=SC2317 # called by the trap
    stop_job() {
        local f
        for f in "$mdir"/*/pid "$mdir"/*/recheck/pid "$mdir"/*/rerun/pid; do
            [[ -f $f ]] && kill -TERM "$(<"$f")" 2>/dev/null
        done
        [[ -n $meshd_pid ]] && kill -TERM "$meshd_pid" 2>/dev/null
        wait
        exit 143
    }
    trap stop_job TERM
    mkdir -p "$mdir"
    run_tests "$mdir/glibc" "" "" "$module"
    "${REPORT[@]}" failed "$mdir/glibc" >"$mdir/glibc-failed"
    say "$module under glibc: exit $(<"$mdir/glibc/rc") in $(<"$mdir/glibc/seconds") s"
    if [[ $(<"$mdir/glibc/rc") != 0 && ! -s $mdir/glibc-failed ]]; then
        return 0 # fails as a whole under glibc: the report says so
    fi
    [[ -s $mdir/glibc-failed ]] && ignore=(--ignorefile "$mdir/glibc-failed")
    for mode in "${MODES[@]}"; do
        dir=$mdir/$mode
        case $mode in
        shim)
            # No meshd listens on this socket: the shim as a user without meshd has it.
            run_tests "$dir" "$LIB" "$dir/no-meshd.sock" "${ignore[@]}" "$module"
            recheck "$dir" "$LIB" "$dir/no-meshd.sock"
            ;;
        meshd)
            mkdir -p "$dir"
            env -u LD_PRELOAD "$MESHD" --nice 0 --socket "$dir/meshd.sock" --config "$HERE/meshd.conf" \
                2>>"$dir/meshd.log" &
            meshd_pid=$!
            local n=600
            while [[ ! -S $dir/meshd.sock ]] && ((n-- > 0)); do sleep 0.1; done
            if [[ ! -S $dir/meshd.sock ]]; then
                echo 1 >"$dir/rc"
                echo "meshd did not create its socket within 60 s" >"$dir/log"
                cat "$dir/meshd.log" >>"$dir/log"
            else
                run_tests "$dir" "$LIB" "$dir/meshd.sock" "${ignore[@]}" "$module"
                recheck "$dir" "$LIB" "$dir/meshd.sock"
            fi
            kill -TERM "$meshd_pid" 2>/dev/null
            wait "$meshd_pid" 2>/dev/null
            meshd_pid=
            ;;
        *) continue ;;
        esac
        say "$module under $mode: exit $(<"$dir/rc") in $(<"$dir/seconds") s" \
            "$([[ $mode == meshd ]] && echo "(meshes pairs/rounds/pids: $("${REPORT[@]}" meshes "$dir/meshd.log"))")"
    done
}

say "modules: ${MODULES[*]}; modes: ${MODES[*]}; $JOBS at once, --timeout $TIMEOUT; $PY${TEST_ARGS[*]:+; python -m test ${TEST_ARGS[*]}}${SHIM_ENV[*]:+; shim runs with ${SHIM_ENV[*]}}"
start=$SECONDS
for module in "${MODULES[@]}"; do
    while (($(jobs -rp | wc -l) >= JOBS)); do wait -n; done
    module_job "$module" &
    JOB_PIDS+=($!)
done
for pid in "${JOB_PIDS[@]}"; do wait "$pid"; done
JOB_PIDS=()
say "all runs took $((SECONDS - start)) s"
echo
"${REPORT[@]}" table "$ROOT/results" "${MODES[@]}"
status=$?
if ((status == 0)); then say "PASS"; else say "FAIL"; fi
exit "$status"
