#!/bin/bash
# Attributes a program sets on heap pages it owns survive meshing (shim/vma_attrs.h): a
# mesh replaces a source span's mapping with a read-write, unlocked, dumpable one, so
# before the fix meshd silently unlocked keys (VmLck 420 -> 312 kB), made read-only pages
# writable (100 -> 29 read-only) and put DONTDUMP pages back into core files.
# tests/prog/pageattrs.c sets the attribute on ~50 page-sized survivors of a fragmented
# heap; explicit mesh rounds then mesh the rest of the heap, and the program checks every
# object and, in /proc/self/smaps, every page's mapping.
# Usage: BUILD=/abs/build bash tests/integration/pageattrs.sh [CASE...]
# Cases (default: all): how the attribute is set:
#   mlock, mlock2, mlock-syscall        locked (VmFlags lo)
#   mprotect, mprotect-syscall, pkey    read-only (pkey: pkey_mprotect with key -1)
#   dontdump, dontdump-syscall          madvise(MADV_DONTDUMP) (VmFlags dd)
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
ALL=(mlock mlock2 mlock-syscall mprotect mprotect-syscall pkey dontdump dontdump-syscall)
cases "${ALL[@]}"
start_meshd || die "meshd did not create its socket"

# attr_case HOW: the program sets HOW's attribute while the private meshd meshes it.
attr_case() {
    local how=$1 dir=$TMP/$1 pid meshes rc=0
    mkdir "$dir"
    env LD_PRELOAD="$LIB" MESHD_SOCKET="$SOCK" MESH_TEST_CONTROL_DELAY_MS=0 \
        "$PROG/pageattrs" "$dir" "$how" >"$dir/out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ! wait_for 120 test -e "$dir/ready"; then
        fail "$how: the program did not get ready: $(cat "$dir/out")"
        return
    fi
    for _ in 1 2 3; do
        ctl mesh "$pid" >>"$dir/mesh.log" 2>&1 || true
    done
    ctl stats "$pid" --json >"$dir/stats.json" 2>/dev/null || true
    meshes=$(json_get "$dir/stats.json" "j['meshes']" 2>/dev/null || echo 0)
    touch "$dir/stop"
    wait "$pid" || rc=$?
    forget_pid "$pid"
    if [ $rc = 0 ] && [ "${meshes:-0}" -gt 0 ] && grep -q '^pageattrs: ok' "$dir/out"; then
        pass "$how: $meshes meshes, $(cat "$dir/out")"
    else
        fail "$how: exit $rc, $meshes meshes: $(cat "$dir/out" "$dir/mesh.log")"
    fi
}

for how in "${ALL[@]}"; do
    if want "$how"; then attr_case "$how"; fi
done
exit $FAILED
