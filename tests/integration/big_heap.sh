#!/usr/bin/env bash
# Heaps of any size (issue 16): no fixed arena ceiling, MESH_ARENA_GB as an operator's cap.
# Cases:
#   reserve  untouched 2 GiB blocks adding up to 4x the machine's RAM: whenever glibc gives
#            them all, libmesh must too, each block's first and last byte writable
#   cap      MESH_ARENA_GB=8 caps the same program below 4 blocks (the cap is still one)
#   meshed   a touched heap of mixed sizes (BIGHEAP_MIB, default 2048 MiB; 16384 by hand)
#            meshed by a private meshd with explicit rounds; every byte of every survivor
#            checked by the program itself
# Usage: BUILD=/abs/build bash tests/integration/big_heap.sh [CASE...]
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases reserve cap meshed
BIG=$PROG/bigheap
CTL_TIMEOUT=$BOUND # a round over a heap of GiBs on a loaded machine

# reserved OUT: the block count bigheap printed into OUT.
reserved() { sed -n 's/^bigheap: reserved \([0-9]*\) blocks$/\1/p' "$1"; }

if want reserve || want cap; then
    ram_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
    # 4x RAM in 2 GiB (2097152 KiB) blocks, rounded up.
    WANT=$(((4 * ram_kib + 2097151) / 2097152))
fi

if want reserve; then
    rc=0
    env -u LD_PRELOAD "$BIG" reserve "$WANT" >"$TMP/glibc.out" 2>&1 || rc=$?
    glibc=$(reserved "$TMP/glibc.out")
    if [ "$rc" != 0 ] || [ -z "$glibc" ]; then
        fail "reserve: glibc run: exit $rc: $(cat "$TMP/glibc.out")"
    elif [ "$glibc" -lt "$WANT" ]; then
        echo "SKIP: reserve: glibc itself gets only $glibc of $WANT blocks of 2 GiB here (overcommit $(cat /proc/sys/vm/overcommit_memory))"
    else
        rc=0
        MESH_NO_MESHD=1 LD_PRELOAD=$LIB "$BIG" reserve "$WANT" >"$TMP/mesh.out" 2>&1 || rc=$?
        mesh=$(reserved "$TMP/mesh.out")
        if [ "$rc" = 0 ] && [ "$mesh" = "$WANT" ]; then
            pass "reserve: $WANT untouched blocks of 2 GiB (4x RAM) under libmesh as under glibc"
        else
            fail "reserve: libmesh: exit $rc, ${mesh:-no} blocks of $WANT (glibc: $glibc): $(cat "$TMP/mesh.out")"
        fi
    fi
fi

if want cap; then
    rc=0
    MESH_NO_MESHD=1 MESH_ARENA_GB=8 LD_PRELOAD=$LIB "$BIG" reserve "$WANT" >"$TMP/cap.out" 2>&1 || rc=$?
    capped=$(reserved "$TMP/cap.out")
    if [ "$rc" = 0 ] && [ -n "$capped" ] && [ "$capped" -ge 1 ] && [ "$capped" -lt 4 ]; then
        pass "cap: MESH_ARENA_GB=8 holds $capped blocks of 2 GiB, then malloc fails"
    else
        fail "cap: exit $rc, ${capped:-no} blocks under MESH_ARENA_GB=8: $(cat "$TMP/cap.out")"
    fi
fi

if want meshed; then
    MIB=${BIGHEAP_MIB:-2048}
    start_meshd || die "meshd did not start"
    rm -f "$TMP/stop"
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB "$BIG" heap "$MIB" "$TMP/stop" >"$TMP/heap.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # Writing GiBs byte by byte: bounded for hangs only, as every wait here.
    wait_for $((BOUND * 4)) grep -q "ready" "$TMP/heap.out" || die "meshed: bigheap not ready: $(cat "$TMP/heap.out")"
    wait_for "$BOUND" ctl stats "$pid" >/dev/null 2>&1 || die "meshed: pid $pid did not register"
    for i in 1 2 3; do
        ctl mesh "$pid" >>"$TMP/rounds" 2>&1 || fail "meshed: meshctl mesh: $(tail -1 "$TMP/rounds")"
    done
    ctl stats "$pid" --json >"$TMP/stats.json" || fail "meshed: stats"
    touch "$TMP/stop"
    wait_exit "$pid" $((BOUND * 4))
    meshes=$(json_get "$TMP/stats.json" "j['meshes']" 2>/dev/null || echo 0)
    if [ "$rc" = 0 ] && grep -q "^bigheap: ok" "$TMP/heap.out" && [ "$meshes" -gt 0 ]; then
        pass "meshed: $MIB MiB heap, $meshes pairs meshed, $(grep '^bigheap: ok' "$TMP/heap.out")"
    else
        fail "meshed: exit $rc, $meshes pairs meshed: $(cat "$TMP/heap.out") $(tail -3 "$TMP/rounds")"
    fi
fi

[ "$FAILED" = 0 ] && echo "big_heap: all passed"
exit "$FAILED"
