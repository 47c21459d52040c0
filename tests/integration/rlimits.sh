#!/bin/bash
# A program lowers its own RLIMIT_AS or RLIMIT_DATA while it runs (shim/rlimits.h): the
# shim's reservation, sized at set-up, used to count against the new limit, so every later
# mapping of the program failed: a shell's $(...) came back empty ("fork(): no memory for
# the child's private heap"), python could not start a thread.  Now the reservation
# shrinks first.  Each case runs under glibc first (the reference must pass), then under
# the shim:
#   bash      bash -c 'ulimit -v 2000000; ...': command substitutions (forks), a python
#             child that starts a thread
#   as, data, prlimit, syscall
#             tests/integration/rlimits_prog.py (PYTHONMALLOC=malloc): 100 MiB of objects,
#             the limit lowered to 2 GiB (setrlimit RLIMIT_AS or RLIMIT_DATA, prlimit of
#             its own pid, syscall(SYS_setrlimit)), then objects, a thread and a fork whose
#             child checks the heap
#   meshd     the same, registered with a private meshd: meshed before and after the
#             call (the registration goes on), a fork child copies the span table
# Usage: BUILD=/abs/build bash tests/integration/rlimits.sh [CASE...]
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases bash as data prlimit syscall meshd
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
PYPROG=$HERE/rlimits_prog.py

# run_both NAME EXPECTED_LAST_LINE_PREFIX COMMAND...: the command under glibc, then under
# the shim (no meshd to find); both must end with a line starting with the prefix.
run_both() {
    local name=$1 want=$2 rc=0
    shift 2
    env -u LD_PRELOAD "$@" >"$TMP/$name.ref" 2>&1 || rc=$?
    if [ $rc != 0 ] || ! tail -n 1 "$TMP/$name.ref" | grep -q "^$want"; then
        echo "SKIP: $name fails without the shim here: exit $rc: $(cat "$TMP/$name.ref")"
        return
    fi
    rc=0
    env LD_PRELOAD="$LIB" MESHD_SOCKET="$TMP/nobody.sock" "$@" >"$TMP/$name.out" 2>&1 || rc=$?
    if [ $rc = 0 ] && tail -n 1 "$TMP/$name.out" | grep -q "^$want"; then
        pass "$name: $(tail -n 1 "$TMP/$name.out")"
    else
        fail "$name: exit $rc: $(cat "$TMP/$name.out")"
    fi
}

if want bash; then
    # 100000 numbers joined: 488895 characters; the python child prints 1 from a thread.
    # shellcheck disable=SC2016 # expanded by the inner bash
    run_both bash "ok 488895 1" bash -c 'ulimit -v 2000000
        x=; for i in $(seq 1 100000); do x+=$i; done
        t=$('"$PY"' -c "import threading; t = threading.Thread(target=print, args=(1,)); t.start(); t.join()")
        echo "ok ${#x} $t"'
fi

for how in as data prlimit syscall; do
    if want $how; then
        run_both $how "ok: $how" env PYTHONMALLOC=malloc "$PY" "$PYPROG" $how 2048 100
    fi
done

if want meshd; then
    start_meshd || die "meshd did not create its socket"
    mkdir "$TMP/m"
    env LD_PRELOAD="$LIB" MESHD_SOCKET="$SOCK" MESH_TEST_CONTROL_DELAY_MS=0 PYTHONMALLOC=malloc \
        "$PY" "$PYPROG" as 2048 150 "$TMP/m" >"$TMP/m.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    rc=0
    if wait_for 120 test -e "$TMP/m/lowered"; then
        for _ in 1 2; do ctl mesh "$pid" >>"$TMP/m.log" 2>&1 || true; done
        ctl stats "$pid" --json >"$TMP/m.json" 2>/dev/null || true
    fi
    touch "$TMP/m/go"
    wait "$pid" || rc=$?
    forget_pid "$pid"
    meshes=$(json_get "$TMP/m.json" "j['meshes']" 2>/dev/null || echo 0)
    if [ $rc = 0 ] && [ "${meshes:-0}" -gt 0 ] && grep -q '^ok:' "$TMP/m.out"; then
        pass "meshd: $meshes meshes after the limit was lowered; $(tail -n 1 "$TMP/m.out")"
    else
        fail "meshd: exit $rc, $meshes meshes: $(cat "$TMP/m.out" "$TMP/m.log" 2>/dev/null)"
    fi
fi
exit $FAILED
