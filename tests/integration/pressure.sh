#!/usr/bin/env bash
# Issue 12: freed pages the shim keeps dirty for reuse go back at once under memory
# pressure (PSI), as at malloc_trim and a meshd round.  The pressure is simulated with the
# test knob MESH_TEST_PRESSURE_FILE (shim/pressure.h): a file in /proc/pressure/memory's
# format, first calm, then at "some avg10=50.00".  dirtyheap holds less dirty than the
# keep target (so nothing else gives it back), says so, and waits until it is released;
# the release is checked on the shim's counters, mincore and RssShmem, never on time.
#
#   BUILD=/abs/build bash tests/integration/pressure.sh [CASE...]
#
# Cases: alone (no meshd: the control thread waits between connection attempts),
# registered (a private meshd: the control thread serves the connection), alone-juggle
# (alone, dirtyheap closing stdout and dup2()ing it back all along, calm for 5 s first:
# the unregistered shim reads the pressure about once a second, and must never do it
# through a descriptor of the program's table, which took number 1 before).
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases alone registered alone-juggle

calm="some avg10=0.00 avg60=0.00 avg300=0.00 total=0"
pressed="some avg10=50.00 avg60=20.00 avg300=5.00 total=9000000"

# registered_pid PID: meshctl ps lists PID.
registered_pid() {
    ctl ps --json >"$TMP/ps.json" 2>/dev/null &&
        json_get "$TMP/ps.json" "any(p['pid'] == $1 for p in j)" | grep -qx True
}

# pressure_case NAME SOCKET [juggle]: dirtyheap with its meshd socket at SOCKET; with the
# private meshd (SOCKET = $SOCK) it must register before the pressure comes.  juggle: it
# juggles stdout (a file here) while it waits, and the pressure stays calm 5 s first.
pressure_case() {
    local name=$1 sock=$2 juggle=${3:-} psi=$TMP/psi.$1 ready=$TMP/ready.$1 out=$TMP/out.$1 pid
    echo "$calm" >"$psi"
    LD_PRELOAD=$LIB MESHD_SOCKET=$sock MESH_TEST_CONTROL_DELAY_MS=0 \
        MESH_TEST_PRESSURE_FILE=$psi "$PROG/dirtyheap" "$ready" "$BOUND" $juggle >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ! wait_for "$BOUND" test -s "$ready"; then
        fail "$name: dirtyheap never held its dirty pages: $(cat "$out")"
        return
    fi
    if [ "$sock" = "$SOCK" ] && ! wait_for "$BOUND" registered_pid "$pid"; then
        fail "$name: dirtyheap did not register"
        return
    fi
    if [ -n "$juggle" ]; then sleep 5; fi # calm reads, stdout juggled meanwhile
    echo "$pressed" >"$psi.new"
    mv "$psi.new" "$psi" # the shim reads a whole file, old or new
    wait_exit "$pid"
    if [ "$rc" = 0 ]; then
        pass "$name: released at once under pressure: $(cat "$out")"
    else
        fail "$name: not released under pressure (exit $rc): $(cat "$out")"
    fi
}

if want alone; then
    pressure_case alone "$TMP/no-meshd.sock"
fi
if want alone-juggle; then
    pressure_case alone-juggle "$TMP/no-meshd.sock" juggle
fi
if want registered; then
    start_meshd || die "meshd did not create its socket"
    pressure_case registered "$SOCK"
fi
exit "$FAILED"
