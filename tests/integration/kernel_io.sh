#!/usr/bin/env bash
# Memory the kernel holds is never meshed (issue 9 item 4): heap buffers registered as
# io_uring fixed buffers before meshing (through liburing, or syscall()), and O_DIRECT reads into heap buffers from a thread
# while meshing rounds run, must receive every byte of the file, and every other live
# object must keep its bytes.  A private meshd meshes the program with explicit rounds.
#
#   BUILD=/abs/build bash tests/integration/kernel_io.sh [CASE...]
#
# Cases (default: all): uring uring_mprotect uring_syscall direct direct_mprotect.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases uring uring_mprotect uring_syscall direct direct_mprotect
KIO=$PROG/kernel_io
ROUNDS=8
# O_DIRECT needs a file system that supports it (tmpfs does not; $TMP may be one): the
# data files live under the build directory, removed on exit with the rest.
DATA=$(mktemp -d "$BUILD/kernel_io.XXXXXX")
trap 'rm -rf "$DATA"; cleanup' EXIT

start_meshd || die "meshd did not start"

# listed PID: meshctl ps --json lists PID.
# shellcheck disable=SC2317 # called through wait_for
listed() {
    ctl ps --json >"$TMP/ps.json" 2>/dev/null &&
        [ "$(json_get "$TMP/ps.json" "any(p['pid'] == $1 for p in j)")" = True ]
}

# ready_or_gone DIR PID: the program said it is ready, or it has exited (a skip, or a
# failure before it got ready; an exited child stays a zombie until waited for).
# shellcheck disable=SC2317 # called through wait_for
ready_or_gone() {
    [ -e "$1/ready" ] || ! kill -0 "$2" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$2/stat" 2>/dev/null)" = Z ]
}

# run_case MODE BARRIER: runs kernel_io MODE under the shim with MESH_BARRIER=BARRIER,
# waits for it to register (it takes the allocator's slow path while it waits, so the
# shim's lazily started control thread comes), meshes it ROUNDS times once its heap is
# fragmented (MODE direct: while its reader threads read), then lets it verify.
run_case() {
    local mode=$1 dir=$DATA/$1-$2 pid meshed=0 out
    mkdir -p "$dir"
    (MESHD_SOCKET=$SOCK MESH_BARRIER=$2 LD_PRELOAD=$LIB exec "$KIO" "$mode" "$dir") >"$dir/out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_for "$BOUND" ready_or_gone "$dir" "$pid" || true
    if ! test -e "$dir/ready"; then
        if grep -q '^skip:' "$dir/out"; then
            echo "SKIP: $mode ($2): $(cat "$dir/out")"
            wait_exit "$pid"
            return
        fi
        fail "$mode ($2): the program did not get ready: $(cat "$dir/out")"
        return
    fi
    wait_for "$BOUND" listed "$pid" || fail "$mode ($2): pid $pid did not register with meshd"
    for _ in $(seq "$ROUNDS"); do
        out=$(ctl mesh "$pid" 2>&1) || fail "$mode ($2): meshctl mesh: $out"
        # "pid P: N pairs sent, M meshed, ..." (see meshctl): count what the rounds did.
        n=$(sed -n 's/.* \([0-9][0-9]*\) meshed.*/\1/p' <<<"$out" | head -1)
        meshed=$((meshed + ${n:-0}))
    done
    touch "$dir/go"
    wait_exit "$pid"
    echo "  $mode ($2 barrier): $ROUNDS rounds meshed $meshed pairs; $(tr '\n' ' ' <"$dir/out")"
    if [ "$rc" = 77 ]; then
        echo "SKIP: $mode ($2): $(cat "$dir/out")"
    elif [ "$meshed" -eq 0 ]; then
        fail "$mode ($2): the rounds meshed nothing, so the test proves nothing"
    elif [ "$rc" = 0 ] && grep -q '^corrupted 0$' "$dir/out"; then
        pass "$mode ($2): every byte the kernel wrote and every live object survived meshing"
    else
        fail "$mode ($2): data lost under meshing (exit $rc): $(cat "$dir/out")"
    fi
}

# Both barriers.  Under mprotect an O_DIRECT read that meets the barrier fails with
# EFAULT before moving a byte (that barrier's documented gap): the program retries it.
if want uring; then run_case uring auto; fi
if want uring_mprotect; then run_case uring mprotect; fi
if want uring_syscall; then run_case uring_syscall auto; fi
if want direct; then run_case direct auto; fi
if want direct_mprotect; then run_case direct mprotect; fi
exit "$FAILED"
