#!/usr/bin/env bash
# fork from several threads at once (issue 9 item 2): three threads fork 150 times each
# under the shim, alone and with two more threads allocating meanwhile, then the same with
# a private meshd meshing the process.  forkstorm checks that every child ran, found its
# inherited heap byte for byte and exited 0, that the parent's data survived, and that no
# descriptor was leaked; a deadlock fails the run through timeout instead of hanging CI.
# Usage: BUILD=/abs/build bash tests/integration/fork_threads.sh [CASE...]
# Cases (default: all): alone allocating cow meshd.  "cow": every fork copy-on-write
# (shim/fork_cow.h; MESH_FORK_COW_MIN=0, so that forkstorm's small heap qualifies).
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases alone allocating cow meshd
RUN_TIMEOUT=300 # the whole run; many times what it needs even on a loaded 2-core VM

# storm NAME ARGS...: runs forkstorm ARGS under the shim (no meshd) and reports; the
# environment variables in STORM_ENV (an array) are passed on.
STORM_ENV=()
storm() {
    local name=$1 rc=0
    shift
    timeout "$RUN_TIMEOUT" env MESH_NO_MESHD=1 "${STORM_ENV[@]}" LD_PRELOAD="$LIB" "$PROG/forkstorm" "$@" \
        >"$TMP/$name.out" 2>&1 || rc=$?
    if [ $rc = 0 ] && grep -q '^forkstorm: ok' "$TMP/$name.out"; then
        pass "$name: $(cat "$TMP/$name.out")"
    elif [ $rc = 124 ]; then
        fail "$name: still running after $RUN_TIMEOUT s (deadlock): $(tail -5 "$TMP/$name.out")"
    else
        fail "$name: exit $rc: $(tail -20 "$TMP/$name.out")"
    fi
}

if want alone; then storm "3 threads x 150 forks" 3 150 0; fi
if want allocating; then storm "3 threads x 150 forks, 2 threads allocating" 3 150 2; fi
if want cow; then
    STORM_ENV=(MESH_FORK_COW_MIN=0)
    storm "3 threads x 150 copy-on-write forks, 2 threads allocating" 3 150 2
    STORM_ENV=()
fi
want meshd || exit $FAILED

# With meshd: the forks race the control thread's registration and meshing rounds (how
# many rounds fit in the run depends on the machine: they are counted, not required).
start_meshd || die "meshd did not create its socket"
timeout "$RUN_TIMEOUT" env MESHD_SOCKET="$SOCK" LD_PRELOAD="$LIB" "$PROG/forkstorm" 3 150 2 meshd \
    >"$TMP/meshd.out" 2>&1 &
STORM_PID=$!
PIDS+=("$STORM_PID")
# timeout's child (env exec'd it) is the preloaded forkstorm.
rounds=0
while kill -0 "$STORM_PID" 2>/dev/null; do
    child=$(pgrep -P "$STORM_PID" -x forkstorm || true)
    if [ -n "$child" ] && ctl mesh "$child" >/dev/null 2>&1; then
        rounds=$((rounds + 1))
    fi
    sleep 0.2
done
wait_exit "$STORM_PID" "$RUN_TIMEOUT"
if [ $rc = 0 ] && grep -q '^forkstorm: ok' "$TMP/meshd.out"; then
    pass "with meshd ($rounds mesh rounds during the run): $(cat "$TMP/meshd.out")"
else
    fail "with meshd: exit $rc: $(tail -20 "$TMP/meshd.out")"
fi

exit $FAILED
