#!/usr/bin/env bash
# Integration tests for meshd + meshctl with programs under libmesh.so.
# A private meshd on a private socket in a private temp dir; everything started here is
# stopped by pid on exit.
#
#   BUILD=/abs/build bash tests/integration/run.sh [CASE...]
#
# Cases (default: all): empty mesh errors garbage forget sigterm.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases empty mesh errors garbage forget sigterm
# Other users must reach the socket for the permission test (meshd decides, not the dir).
chmod 755 "$TMP"

start_meshd || die "meshd did not create its socket"

# (1) an empty daemon lists nothing
case_empty() {
    if ctl ps --json >"$TMP/ps0.json" && [ "$(json_get "$TMP/ps0.json" 'len(j)')" = 0 ] &&
        ctl ps >/dev/null; then
        pass "ps on an empty daemon"
    else
        fail "ps on an empty daemon"
    fi
}

# (2) a fragmented process registers, is meshed, and its heap shrinks with data intact.
# need_frag starts it (for mesh and errors); it holds its fragmented heap until finish_frag.
FRAG_PID=
listed=0
frag_listed() {
    ctl ps --json >"$TMP/ps.json" &&
        [ "$(json_get "$TMP/ps.json" "any(p['pid'] == $FRAG_PID for p in j)")" = True ]
}
need_frag() {
    [ -z "$FRAG_PID" ] || return 0
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB "$FRAG" 300000 25 hold >"$TMP/frag.out" 2>&1 &
    FRAG_PID=$!
    PIDS+=("$FRAG_PID")
    if wait_for "$BOUND" frag_listed; then
        listed=1
        pass "fragmenter (pid $FRAG_PID) registered"
    else
        fail "fragmenter did not register within $BOUND s"
    fi
    # Wait for the frees to be done so the heap is at its fragmented state.
    wait_for "$BOUND" grep -q 'holding until' "$TMP/frag.out" || fail "fragmenter did not fragment its heap"
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

case_mesh() {
    need_frag
    if [ $listed = 1 ] && ctl stats "$FRAG_PID" --json >"$TMP/before.json" && rss0=$(rss_kib "$FRAG_PID") &&
        ctl mesh "$FRAG_PID" >"$TMP/mesh.out" && ctl stats "$FRAG_PID" --json >"$TMP/after.json" &&
        rss1=$(rss_kib "$FRAG_PID"); then
        heap0=$(json_get "$TMP/before.json" "j['heap_bytes']")
        heap1=$(json_get "$TMP/after.json" "j['heap_bytes']")
        released=$(json_get "$TMP/after.json" "j['released_bytes']")
        echo "  $(cat "$TMP/mesh.out")"
        echo "  heap_bytes $heap0 -> $heap1, released_bytes $released, VmRSS $rss0 -> $rss1 KiB"
        # The physical pages the round released must show in the process's RSS too.
        if [ "$heap1" -lt "$heap0" ] && [ "$released" -gt 0 ] &&
            [ $((rss0 - rss1)) -ge $((released / 1024 / 2)) ]; then
            pass "meshctl mesh shrank the heap and the RSS"
        else
            fail "meshctl mesh did not shrink the heap"
        fi
        # The shim's mapping count reaches meshd: some mappings used, within half of
        # vm.max_map_count (alias_map.h), and the kernel really holds at least that many.
        breaks=$(json_get "$TMP/after.json" "j['map_breaks']")
        limit=$(json_get "$TMP/after.json" "j['map_limit']")
        maps=$(wc -l <"/proc/$FRAG_PID/maps")
        if [ "$breaks" -gt 0 ] && [ "$limit" = $(($(cat /proc/sys/vm/max_map_count) / 2)) ] &&
            [ "$maps" -gt "$breaks" ]; then
            pass "stats: $breaks mappings added by meshing of at most $limit ($maps VMAs in all)"
        else
            fail "stats: map_breaks $breaks, map_limit $limit, $maps VMAs"
        fi
    else
        fail "stats/mesh/stats of the fragmenter"
    fi
}

# (3) errors: unknown pid, and another user's process
case_errors() {
    expect_error "stats of an unknown pid" 'no such registered process' ctl stats 999999
    need_frag
    if [ "$(id -u)" = 0 ] && [ $listed = 1 ]; then
        expect_error "another user's stats of root's process" 'permission denied' \
            timeout 60 setpriv --reuid=nobody --regid=nogroup --clear-groups \
            "$MESHCTL" --socket "$SOCK" stats "$FRAG_PID"
    else
        echo "SKIP: permission test needs root"
    fi
    expect_error "meshctl with no daemon" 'cannot reach meshd at' \
        timeout 60 "$MESHCTL" --socket "$TMP/nothing.sock" ps
}

# (4) garbage costs the sender its connection and nothing else
case_garbage() {
    if timeout 120 python3 - "$SOCK" <<'PY'; then
import os, socket, struct, sys
path = sys.argv[1]
def send(data, read=True):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(path)
    try:
        s.sendall(data)
        if read:
            s.recv(4096)  # meshd closes (b"") or answers an Error; either is fine
    except OSError:
        pass
    s.close()
send(os.urandom(100))
send(struct.pack("<I", 0xFFFFFFFF) + b"x" * 64)            # oversized length
send(struct.pack("<I", 0) )                                # zero length
send(struct.pack("<I", 50) + b"\xff" * 50)                # unparsable payload
send(struct.pack("<I", 1 << 20) + b"\0" * 1000, read=False)  # a frame that never completes
PY
        :
    fi
    if ctl ps --json >"$TMP/ps2.json" && json_get "$TMP/ps2.json" 'len(j)' >/dev/null &&
        kill -0 "$MESHD_PID" 2>/dev/null; then
        pass "meshd survives garbage"
    else
        fail "meshd did not survive garbage"
    fi
}

# finish_frag: releases the fragmenter, which must end with its survivors intact after
# being meshed.
finish_frag() { finish_fragmenter "$FRAG_PID" "$TMP/frag.out" "fragmenter survivors verified"; }

# A process that exits is forgotten.
nothing_listed() { ctl ps --json >"$TMP/ps3.json" && [ "$(json_get "$TMP/ps3.json" 'len(j)')" = 0 ]; }
case_forget() {
    need_frag
    finish_frag
    if wait_for "$BOUND" nothing_listed; then
        pass "exited process removed"
    else
        fail "exited process still listed"
    fi
}

# SIGTERM: clean exit, socket removed.
case_sigterm() {
    kill -TERM "$MESHD_PID"
    rc=0
    wait "$MESHD_PID" || rc=$?
    forget_pid "$MESHD_PID"
    if [ $rc = 0 ] && [ ! -e "$SOCK" ]; then
        pass "meshd exits cleanly on SIGTERM"
    else
        fail "meshd exit $rc on SIGTERM, socket left: $([ -e "$SOCK" ] && echo yes || echo no)"
    fi
}

if want empty; then case_empty; fi
if want mesh; then case_mesh; fi
if want errors; then case_errors; fi
if want garbage; then case_garbage; fi
if want forget; then case_forget; fi
if [ -n "$FRAG_PID" ] && ! gone "$FRAG_PID"; then finish_frag; fi
if want sigterm; then case_sigterm; fi

if [ $FAILED != 0 ]; then
    echo "--- meshd log"
    cat "$TMP/meshd.log"
    exit 1
fi
echo "integration: all passed"
