# shellcheck shell=bash
# Helpers shared by the integration tests; each test sources this file, which is not a test
# itself (the Makefile's integration-test target leaves it out).  Sourcing it makes a
# private temp dir $TMP and arranges that everything recorded in PIDS is stopped and $TMP
# removed on exit.  A test may change CTL_TIMEOUT and CLEANUP_SIGNAL after sourcing.
#
# Cases: a test names its cases with `cases NAME...` and runs each under `if want NAME`;
# the script's arguments select cases by name (none: all), e.g.
#   BUILD=$PWD/build bash tests/integration/daemon.sh hysteresis
#
# Timing: no check may depend on how fast the machine is (the CI runs `make -j2 test` on a
# loaded 2-core VM).  Wait for the event a check is about with wait_for and a generous
# bound (BOUND seconds), or drive it explicitly (meshctl mesh PID; `fragmenter N K hold`
# keeps its heap until `release PID`); never assume a sleep is long enough.
# shellcheck disable=SC2034 # the variables are for the tests that source this file

BUILD=${BUILD:?set BUILD to the absolute build directory}
MESHD=$BUILD/meshd
MESHCTL=$BUILD/meshctl
LIB=${MESH_LIB:-$BUILD/libmesh.so} # the preloaded shim (make passes an unsanitized one)
PROG=$BUILD/tests/prog
FRAG=$PROG/fragmenter

TMP=$(mktemp -d)
SOCK=$TMP/meshd.sock # the private meshd's socket
MESHD_PID=           # the private meshd started by start_meshd (also in PIDS)
PIDS=()              # every process started here that is still to be stopped
FAILED=0             # 1 once a check failed
rc=0                 # the exit status wait_exit found
CTL_TIMEOUT=60       # seconds one ctl may take: only a hang, never a slow machine, fails
BOUND=120            # seconds a test waits for an event that should come much sooner
SELECTED=("$@")      # the case names given to the script (none: all)
CLEANUP_SIGNAL=TERM  # the signal cleanup stops the processes with

# cleanup: kills every pid in PIDS with CLEANUP_SIGNAL, reaps them all, removes $TMP.
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "-$CLEANUP_SIGNAL" "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# pass MSG...: reports a check that passed.
pass() { echo "PASS: $*"; }

# fail MSG...: reports a check that failed and sets FAILED=1; the test goes on.
fail() {
    echo "FAIL: $*"
    FAILED=1
}

# die MSG...: fail, show meshd's log and exit 1, for a test that cannot go on.
die() {
    fail "$@"
    cat "$TMP/meshd.log"
    exit 1
}

# forget_pid PID: removes PID from PIDS once it has been waited for, so that cleanup
# does not signal a pid the system may have given to another process since.
forget_pid() {
    local keep=() pid
    for pid in "${PIDS[@]}"; do
        [ "$pid" = "$1" ] || keep+=("$pid")
    done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# ctl ARGS...: meshctl on the private meshd's socket, killed after CTL_TIMEOUT seconds.
ctl() { timeout "$CTL_TIMEOUT" "$MESHCTL" --socket "$SOCK" "$@"; }

# json_get FILE EXPR: prints EXPR evaluated on the JSON document j parsed from FILE.
json_get() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s; fails if it has not succeeded
# within SECONDS (measured on the clock, not counted in polls: a slow COMMAND does not
# stretch the bound).
wait_for() {
    local end=$((SECONDS + $1))
    shift
    while ! "$@"; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.1
    done
}

# cases NAME...: the test's case names; exits 2 if a name given to the script is not one.
cases() {
    local c
    for c in "${SELECTED[@]+"${SELECTED[@]}"}"; do
        case " $* " in
        *" $c "*) ;;
        *)
            echo "unknown case '$c' (cases: $*)" >&2
            exit 2
            ;;
        esac
    done
}

# want NAME: succeeds if case NAME is to run (no case names given: every case runs).
want() {
    [ ${#SELECTED[@]} = 0 ] && return 0
    case " ${SELECTED[*]} " in
    *" $1 "*) return 0 ;;
    esac
    return 1
}

# expect_error WHAT PATTERN COMMAND...: passes if COMMAND fails with PATTERN in its stderr;
# fails if it succeeds or says something else.
expect_error() {
    local what=$1 pattern=$2
    shift 2
    if "$@" >/dev/null 2>"$TMP/err.txt"; then
        fail "$what succeeded"
    elif grep -q "$pattern" "$TMP/err.txt"; then
        pass "$what: $(cat "$TMP/err.txt")"
    else
        fail "$what: wrong message: $(cat "$TMP/err.txt")"
    fi
}

# release PID: lets a `fragmenter ... hold` go on to verify its survivors and exit.
release() { kill -USR1 "$1" 2>/dev/null || true; }

# finish_fragmenter PID OUT WHAT: releases a `fragmenter ... hold` whose output is OUT,
# waits for it and checks that it found every survivor intact; WHAT names the check.
finish_fragmenter() {
    release "$1"
    wait_exit "$1"
    if [ "$rc" = 0 ] && grep -q 'survivors verified: ok' "$2"; then
        pass "$3"
    else
        fail "$3: exit $rc: $(cat "$2")"
    fi
}

# gone PID: succeeds once PID has exited (this shell reaps its children as they exit).
gone() { ! kill -0 "$1" 2>/dev/null; }

# wait_exit PID [SECONDS]: sets rc to the exit status of PID (a child of this shell) and
# forgets it; if it has not exited within SECONDS (default BOUND), kills it and sets rc=124.
# Not in a $(...) subshell: only this shell may wait for its children.
wait_exit() {
    if ! wait_for "${2:-$BOUND}" gone "$1"; then
        kill -KILL "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
        forget_pid "$1"
        rc=124
        return
    fi
    rc=0
    wait "$1" || rc=$?
    forget_pid "$1"
}

# start_meshd [ARGS...]: starts the private meshd on $SOCK with ARGS, its stderr appended
# to $TMP/meshd.log; sets MESHD_PID, records it in PIDS and waits up to BOUND s for the
# socket (fails if it did not appear).  The daemon itself must not run under the shim: it
# would try to register with itself.  --nice 0: the tests' meshd keeps the test's
# priority (meshd's default, nice 19, would leave it ~1.5% of a CPU next to a CI run's
# stress-ng; its default is daemon.sh config's to check).
# shellcheck disable=SC2120 # ARGS are optional
start_meshd() {
    env -u LD_PRELOAD "$MESHD" --nice 0 --socket "$SOCK" "$@" 2>>"$TMP/meshd.log" &
    MESHD_PID=$!
    PIDS+=("$MESHD_PID")
    wait_for "$BOUND" test -S "$SOCK"
}
