#!/usr/bin/env bash
# Memory the kernel holds is never meshed (issue 9 item 4): heap buffers registered as
# io_uring fixed buffers before meshing, and O_DIRECT reads into heap buffers from a thread
# while meshing rounds run, must receive every byte of the file, and every other live
# object must keep its bytes.  A private meshd meshes the program with explicit rounds.
#
#   BUILD=/abs/build bash tests/integration/kernel_io.sh
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
KIO=$PROG/kernel_io
ROUNDS=8
# O_DIRECT needs a file system that supports it (tmpfs does not; $TMP may be one): the
# data files live under the build directory, removed on exit with the rest.
DATA=$(mktemp -d "$BUILD/kernel_io.XXXXXX")
trap 'rm -rf "$DATA"; cleanup' EXIT

start_meshd || die "meshd did not start"

# listed PID: meshctl ps --json lists PID.
listed() {
    ctl ps --json >"$TMP/ps.json" 2>/dev/null &&
        [ "$(json_get "$TMP/ps.json" "any(p['pid'] == $1 for p in j)")" = True ]
}

# run_case MODE: runs kernel_io MODE under the shim, meshes it ROUNDS times once its heap
# is fragmented (MODE direct: while its reader thread reads), then lets it verify.
run_case() {
    local mode=$1 dir=$DATA/$1 pid rc=0 meshed=0 out
    mkdir -p "$dir"
    (MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB exec "$KIO" "$mode" "$dir") >"$dir/out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ! wait_for 120 test -e "$dir/ready"; then
        if grep -q '^skip:' "$dir/out"; then
            echo "SKIP: $mode: $(cat "$dir/out")"
            wait "$pid" || true
            forget_pid "$pid"
            return
        fi
        fail "$mode: the program did not get ready: $(cat "$dir/out")"
        return
    fi
    wait_for 60 listed "$pid" || fail "$mode: pid $pid did not register with meshd"
    for _ in $(seq "$ROUNDS"); do
        out=$(ctl mesh "$pid" 2>&1) || fail "$mode: meshctl mesh: $out"
        # "pid P: N pairs sent, M meshed, ..." (see meshctl): count what the rounds did.
        n=$(sed -n 's/.* \([0-9][0-9]*\) meshed.*/\1/p' <<<"$out" | head -1)
        meshed=$((meshed + ${n:-0}))
    done
    touch "$dir/go"
    wait "$pid" || rc=$?
    forget_pid "$pid"
    echo "  $mode: $ROUNDS rounds meshed $meshed pairs; $(tr '\n' ' ' <"$dir/out")"
    if [ "$rc" = 77 ]; then
        echo "SKIP: $mode: $(cat "$dir/out")"
    elif [ "$meshed" -eq 0 ]; then
        fail "$mode: the rounds meshed nothing, so the test proves nothing"
    elif [ "$rc" = 0 ] && grep -q '^corrupted 0$' "$dir/out"; then
        pass "$mode: every byte the kernel wrote and every live object survived meshing"
    else
        fail "$mode: data lost under meshing (exit $rc): $(cat "$dir/out")"
    fi
}

run_case uring
run_case direct
exit "$FAILED"
