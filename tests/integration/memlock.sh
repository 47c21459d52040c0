#!/bin/bash
# mlockall(MCL_CURRENT | MCL_FUTURE) in a program under the shim (tests/prog/memlock.c):
# the call returns, the heap works afterwards (released pages come back zero, data
# survives, meshing goes on), and the arena's reservation is never faulted in
# (shim/memlock.c).  Before, the call faulted in the whole reservation: as root it never
# returned, growing shared memory until the machine ran out.
# Usage: BUILD=/abs/build bash tests/integration/memlock.sh [CASE...]
# Cases (default: all):
#   glibc    no preload: the reference (skipped with the rest if mlockall fails there)
#   shim     the shim, no meshd: malloc_trim must give pages back though the heap is locked
#   syscall  the shim, the call made through syscall(SYS_mlockall, ...)
#   private  the shim with a private arena (memfd_create refused by a seccomp filter)
#   meshd    registered with a private meshd (the program allocates while registered)
#   nobody   as nobody, with the default RLIMIT_MEMLOCK: no hang; what glibc does, or
#            mlockall refused with ENOMEM (the reservation counts against the limit)
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases glibc shim syscall private meshd nobody
RUN_TIMEOUT=120 # the program takes about a second; a populated reservation never ends
MIB=64

# memlock NAME [PREFIX...]: runs memlock through PREFIX; its line in $TMP/NAME.out.
# MEMLOCK_ARGS: more arguments of the program.
MEMLOCK_ARGS=()
memlock() {
    local name=$1
    shift
    rc=0
    timeout -k 10 "$RUN_TIMEOUT" "$@" "$PROG/memlock" "$MIB" "${MEMLOCK_ARGS[@]}" >"$TMP/$name.out" 2>&1 || rc=$?
}

# trimmed NAME: the kB the trim gave back, from the program's line.
trimmed() { sed -n 's/^memlock: ok .* trimmed=\(-*[0-9]*\)$/\1/p' "$TMP/$1.out"; }

memlock glibc env -u LD_PRELOAD
if [ $rc != 0 ]; then
    echo "SKIP: mlockall fails under glibc here: $(cat "$TMP/glibc.out")"
    exit 0
fi
if want glibc; then pass "glibc: $(cat "$TMP/glibc.out")"; fi

for c in shim syscall; do
    want $c || continue
    if [ $c = syscall ]; then MEMLOCK_ARGS=(syscall); fi
    memlock $c env LD_PRELOAD="$LIB" MESHD_SOCKET="$TMP/nobody.sock"
    MEMLOCK_ARGS=()
    if [ $rc = 0 ] && [ "$(trimmed $c)" -ge 4096 ]; then
        pass "$c: $(cat "$TMP/$c.out")"
    elif [ $rc = 124 ] || [ $rc = 137 ]; then
        fail "$c: still running after $RUN_TIMEOUT s"
    else
        fail "$c: exit $rc (trimmed at least 4 MiB wanted): $(cat "$TMP/$c.out")"
    fi
done

if want private; then
    # The kernel refuses MADV_DONTNEED on locked memory: nothing is given back, but no
    # page the allocator failed to release may be handed out as zero.
    memlock private "$PROG/seccomp_run" eperm memfd_create env LD_PRELOAD="$LIB" \
        MESHD_SOCKET="$TMP/nobody.sock" MESH_SHOW_STATS="$TMP/private.stats"
    if [ $rc = 0 ] && grep -q 'arena=private' "$TMP/private.stats"; then
        pass "private: $(cat "$TMP/private.out")"
    else
        fail "private: exit $rc: $(cat "$TMP/private.out" "$TMP/private.stats" 2>/dev/null)"
    fi
fi

if want meshd; then
    start_meshd || die "meshd did not create its socket"
    memlock meshd env LD_PRELOAD="$LIB" MESHD_SOCKET="$SOCK" MESH_TEST_CONTROL_DELAY_MS=0
    if [ $rc = 0 ] && grep -q '^memlock: ok' "$TMP/meshd.out"; then
        pass "meshd: $(cat "$TMP/meshd.out")"
    else
        fail "meshd: exit $rc: $(cat "$TMP/meshd.out")"
    fi
fi

if want nobody && [ "$(id -u)" = 0 ]; then
    AS_NOBODY=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
    memlock nobody-glibc "${AS_NOBODY[@]}" env -u LD_PRELOAD
    glibc_rc=$rc
    memlock nobody "${AS_NOBODY[@]}" env LD_PRELOAD="$LIB" MESHD_SOCKET="$TMP/nobody.sock"
    # The reservation counts against RLIMIT_MEMLOCK: a limit glibc's call fits in refuses
    # ours with ENOMEM (documented; glibc's then fails the program's first large malloc
    # under MCL_FUTURE, exit 3).  A hang, a crash or any other failure is a bug.
    if [ $rc = 124 ] || [ $rc = 137 ]; then
        fail "nobody: still running after $RUN_TIMEOUT s"
    elif [ $rc = "$glibc_rc" ] || { [ $rc = 2 ] && grep -q 'Cannot allocate memory' "$TMP/nobody.out"; }; then
        pass "nobody: exit $rc ($(cat "$TMP/nobody.out")), glibc exit $glibc_rc"
    else
        fail "nobody: exit $rc ($(cat "$TMP/nobody.out")), glibc exit $glibc_rc ($(cat "$TMP/nobody-glibc.out"))"
    fi
fi
exit $FAILED
