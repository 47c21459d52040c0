#!/usr/bin/env bash
# The write barrier must never kill a program or lose a system call's result (issue 9, 3).
# barrier_load runs writer threads that block every signal and, with "io", threads that
# recv/recvmsg/read/waitpid into heap buffers among its fragmented objects; a private meshd
# meshes it with explicit rounds; the program then checks every object, datagram, pipe
# record and child status itself.  Cases:
#   A  root: userfaultfd; meshed; no EFAULT, nothing lost
#   B  nobody, no access to userfaultfd: refuses meshing, says why (stats, meshd's log)
#   C  nobody with access to a userfaultfd device node: meshed like A
#   D  nobody with MESH_BARRIER=mprotect (opt-in), no io: signal-blocking writers survive
# Usage: BUILD=/abs/build bash tests/integration/barrier.sh [CASE...]   (cases: A B C D)
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases A B C D
chmod 755 "$TMP"
CTL_TIMEOUT=$BOUND # a round of a few thousand pairs on a loaded machine
LOAD=$PROG/barrier_load

start_meshd --metrics 127.0.0.1:0 --metrics-per-process || die "meshd did not start"
wait_for "$BOUND" grep -q "metrics on http://127.0.0.1:" "$TMP/meshd.log" || die "no metrics endpoint"
PORT=$(sed -n 's#.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*#\1#p' "$TMP/meshd.log")

# refused_gauge PID: meshd_meshing_refused of PID on the metrics endpoint.
refused_gauge() {
    python3 - "$PORT" "$1" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=60).read().decode()
print([l.split()[-1] for l in body.splitlines()
       if l.startswith('meshd_meshing_refused{pid="%s",' % sys.argv[2])][0])
PY
}

as_nobody=()
if [ "$(id -u)" = 0 ]; then
    as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
fi

# run_case NAME ROUNDS [ENV=VALUE...] -- ARGS...: starts barrier_load (as nobody for cases
# B-D) with the environment and arguments, waits until it is ready and registered (it
# takes the allocator's slow path while it waits, so the shim's lazily started control
# thread comes), runs ROUNDS explicit rounds, stops it and checks its verdict.  Leaves its stats in
# $TMP/NAME.json and its output in $TMP/NAME.out.
run_case() {
    local name=$1 rounds=$2 user=() envs=() pid i
    shift 2
    while [ "$1" != "--" ]; do
        envs+=("$1")
        shift
    done
    shift
    [ "$name" = A ] || user=("${as_nobody[@]}")
    rm -f "$TMP/stop"
    (exec "${user[@]}" env MESHD_SOCKET="$SOCK" LD_PRELOAD="$LIB" "${envs[@]}" \
        "$LOAD" "$TMP/stop" "$@") >"$TMP/$name.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_for "$BOUND" grep -q "ready" "$TMP/$name.out" || die "$name: barrier_load not ready"
    wait_for "$BOUND" ctl stats "$pid" >/dev/null 2>&1 || die "$name: pid $pid did not register"
    for ((i = 0; i < rounds; i++)); do
        ctl mesh "$pid" >>"$TMP/$name.rounds" 2>&1 || fail "$name: meshctl mesh: $(tail -1 "$TMP/$name.rounds")"
    done
    refused_gauge "$pid" >"$TMP/$name.gauge" 2>&1 || true
    ctl stats "$pid" --json >"$TMP/$name.json" || fail "$name: stats"
    ctl stats "$pid" >"$TMP/$name.stats" || true
    touch "$TMP/stop"
    wait_exit "$pid"
    if [ "$rc" = 0 ] && grep -q "^barrier_load: ok" "$TMP/$name.out"; then
        pass "$name: $(grep '^barrier_load: ok' "$TMP/$name.out")"
    else
        fail "$name: exit $rc: $(cat "$TMP/$name.out")"
    fi
}

# expect_meshed NAME BARRIER: the case's process was meshed with that barrier.
expect_meshed() {
    local meshes barrier
    meshes=$(json_get "$TMP/$1.json" "j['meshes']")
    barrier=$(json_get "$TMP/$1.json" "j['barrier']")
    if [ "$meshes" -gt 0 ] && [ "$barrier" = "$2" ]; then
        pass "$1: $meshes pairs meshed under the $barrier barrier"
    else
        fail "$1: meshes $meshes, barrier '$barrier' (want > 0 under $2): $(cat "$TMP/$1.rounds")"
    fi
}

# A: root gets userfaultfd; kernel writes into spans being meshed wait and land.
if ! want A; then
    :
elif [ "$(id -u)" = 0 ]; then
    run_case A 3 -- io
    expect_meshed A userfaultfd
else
    echo "SKIP: A needs root"
fi

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: B, C, D run as nobody from a root test"
    [ "$FAILED" = 0 ] && echo "barrier: all passed"
    exit "$FAILED"
fi
if ! want B; then
    :
elif [ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null || echo 0)" = 1 ] ||
    setpriv --reuid=nobody --regid=nogroup --clear-groups test -r /dev/userfaultfd -a -w /dev/userfaultfd; then
    echo "SKIP: B: nobody may use userfaultfd on this machine"
else
    # B: no safe barrier: the process refuses, says why, and is left as it is.
    run_case B 1 -- io
    meshes=$(json_get "$TMP/B.json" "j['meshes']")
    refused=$(json_get "$TMP/B.json" "j['refused']")
    if [ "$meshes" = 0 ] && [ "$(json_get "$TMP/B.json" "j['barrier']")" = none ] &&
        [[ $refused == "no safe write barrier"* ]] && grep -q "meshing refused by the process: no safe write barrier" "$TMP/B.stats"; then
        pass "B: not meshed; meshctl stats: $(grep 'meshing refused' "$TMP/B.stats")"
    else
        fail "B: meshes $meshes, refused '$refused': $(cat "$TMP/B.stats")"
    fi
    if grep -q "refuses to be meshed: no safe write barrier" "$TMP/meshd.log" &&
        grep -q "rejected: barrier=" "$TMP/meshd.log"; then
        pass "B: meshd's log says why"
    else
        fail "B: meshd's log: $(cat "$TMP/meshd.log")"
    fi
    if [ "$(cat "$TMP/B.gauge")" = 1 ] && [ "$(cat "$TMP/A.gauge" 2>/dev/null || echo 0)" = 0 ]; then
        pass "B: meshd_meshing_refused is 1 (and 0 for A)"
    else
        fail "B: meshd_meshing_refused: $(cat "$TMP/B.gauge")"
    fi
fi

# C: an administrator gives nobody the userfaultfd device (here a private node of it, as
# the udev rule in systemd/ does for group userfaultfd on /dev/userfaultfd).
# node_usable: nobody can open the node read-write (a nodev mount would refuse).
node_usable() {
    # shellcheck disable=SC2016 # $1 is the inner shell's
    setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c ': <>"$1"' sh "$TMP/userfaultfd" 2>/dev/null
}
if ! want C; then
    :
elif mknod "$TMP/userfaultfd" c 10 257 2>/dev/null && chown nobody "$TMP/userfaultfd" &&
    chmod 600 "$TMP/userfaultfd" && node_usable; then
    run_case C 3 MESH_TEST_USERFAULTFD_DEV="$TMP/userfaultfd" -- io
    expect_meshed C userfaultfd
else
    echo "SKIP: C: cannot make a usable userfaultfd device node in $TMP (nodev?)"
fi

# D: the opt-in mprotect barrier: writers that block every signal keep running.
if want D; then
    run_case D 3 MESH_BARRIER=mprotect --
    expect_meshed D mprotect
fi

[ "$FAILED" = 0 ] && echo "barrier: all passed"
exit "$FAILED"
