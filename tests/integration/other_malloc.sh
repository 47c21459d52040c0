#!/bin/bash
# Another malloc serves the process: the shim steps aside (shim/init.c, fallback.h).
# Under LD_PRELOAD, names defined earlier in the lookup order win: an executable's own
# malloc (browsers define theirs), or an allocator preloaded before libmesh.  The shim's
# definitions are then reached only for names that allocator lacks, and before, served
# them from its arena: reallocarray of the other allocator's block aborted with
# "realloc(): invalid pointer".  Now every call goes where the process's own lookup
# leads, and the shim starts no thread and maps no arena.
# Usage: BUILD=/abs/build bash tests/integration/other_malloc.sh [CASE...]
# Cases (default: all):
#   own             tests/prog/ownmalloc (its own malloc family, no reallocarray): the
#                   reference without the shim, then preloaded (with a meshd to find)
#   jemalloc-first  LD_PRELOAD=libjemalloc.so.2:libmesh.so python3: reallocarray through
#                   ctypes, 100,000 objects, a thread
#   libmesh-first   LD_PRELOAD=libmesh.so:libjemalloc.so.2: libmesh serves (its arena)
#   wrapper         LD_PRELOAD=libmallocwrap.so:libmesh.so (tests/prog/preload/mallocwrap.c,
#                   a wrapper that hands every call to the next malloc, as heaptrack's
#                   does): the shim steps aside, is called back and takes over: it serves
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases own jemalloc-first libmesh-first wrapper
JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
PY=/usr/bin/python3

if want own; then
    rc=0
    "$PROG/ownmalloc" >"$TMP/own-ref.out" 2>&1 || rc=$?
    [ $rc = 0 ] || die "ownmalloc fails without the shim: exit $rc: $(cat "$TMP/own-ref.out")"
    start_meshd || die "meshd did not create its socket"
    rc=0
    env LD_PRELOAD="$LIB" MESHD_SOCKET="$SOCK" MESH_TEST_CONTROL_DELAY_MS=0 \
        MESH_SHOW_STATS="$TMP/own.stats" "$PROG/ownmalloc" >"$TMP/own.out" 2>&1 || rc=$?
    if [ $rc = 0 ] && grep -q '^ownmalloc: ok' "$TMP/own.out" &&
        grep -q 'arena=none fallback=another-malloc' "$TMP/own.stats"; then
        pass "own: $(cat "$TMP/own.out"); $(cat "$TMP/own.stats")"
    else
        fail "own: exit $rc: $(cat "$TMP/own.out" "$TMP/own.stats" 2>/dev/null)"
    fi
fi

# The python program: reallocarray (jemalloc has none: glibc's calls the process's
# realloc) on a block of the process's malloc, a heap of 100,000 objects, a thread.
cat >"$TMP/prog.py" <<'PYEOF'
import ctypes, threading
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.reallocarray.restype = ctypes.c_void_p
libc.reallocarray.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
p = libc.malloc(100)
ctypes.memset(p, 0x5a, 100)
q = libc.reallocarray(p, 10, 100)
assert ctypes.string_at(q, 100) == b"\x5a" * 100, "reallocarray lost the bytes"
libc.free(q)
keep = []
t = threading.Thread(target=lambda: keep.extend(b"%0100d" % i for i in range(100000)))
t.start(); t.join()
assert all(keep[i] == b"%0100d" % i for i in range(0, 100000, 997))
print("ok: reallocarray, 100000 objects from a thread")
PYEOF

# preload_case NAME PRELOAD EXPECTED_STATS [VAR=VALUE...]
preload_case() {
    local name=$1 preload=$2 expected=$3 rc=0
    shift 3
    env "$@" LD_PRELOAD="$preload" MESHD_SOCKET="$TMP/nobody.sock" MESH_SHOW_STATS="$TMP/$name.stats" \
        "$PY" "$TMP/prog.py" >"$TMP/$name.out" 2>&1 || rc=$?
    if [ $rc = 0 ] && grep -q '^ok:' "$TMP/$name.out" && grep -q -- "$expected" "$TMP/$name.stats"; then
        pass "$name: $(cat "$TMP/$name.out"); $(head -n 1 "$TMP/$name.stats")"
    else
        fail "$name: exit $rc: $(cat "$TMP/$name.out" "$TMP/$name.stats" 2>/dev/null)"
    fi
}

if want wrapper; then
    preload_case wrapper "$PROG/libmallocwrap.so:$LIB" 'arena=memfd' MALLOCWRAP_REPORT="$TMP/wrap.report"
    calls=$(sed -n 's/^mallocwrap: \([0-9]*\) calls$/\1/p' "$TMP/wrap.report" 2>/dev/null | head -n 1)
    if [ "${calls:-0}" -gt 100 ]; then
        pass "wrapper: the wrapper saw $calls calls and handed them to libmesh"
    else
        fail "wrapper: the wrapper saw ${calls:-no} calls: $(cat "$TMP/wrap.report" 2>/dev/null)"
    fi
fi

if [ ! -e "$JEMALLOC" ]; then
    echo "SKIP: jemalloc-first, libmesh-first ($JEMALLOC not installed)"
else
    if want jemalloc-first; then
        preload_case jemalloc-first "$JEMALLOC:$LIB" 'arena=none fallback=another-malloc'
    fi
    if want libmesh-first; then
        preload_case libmesh-first "$LIB:$JEMALLOC" 'arena=memfd'
    fi
fi
exit $FAILED
