#!/usr/bin/env bash
# Sandboxes and seccomp (issue 9 item 5).
# (1) unshare -U under the shim: the shim starts no thread of its own before one is
#     useful, so a preloaded process may still enter a new user namespace (as root, and
#     as nobody where the kernel allows unprivileged user namespaces).
# (1b) the same after the shim's control thread started, and in a fork child still copying
#     its heap with a helper thread: unshare(CLONE_NEWUSER) and setns() (tests/prog/userns)
#     succeed as under glibc, with and without meshd (the shim stops its threads first).
# (1c) a fork child that installs a filter killing clone (sshd's preauth child) lives: the
#     shim notes the filter (prctl, seccomp via syscall) and starts no thread after it; a
#     process that filters all its threads (TSYNC) lives: the shim's thread goes first.
# (2) seccomp filters that answer memfd_create, userfaultfd and sched_setscheduler with
#     KILL_PROCESS, EPERM or ENOSYS: preloaded programs (true, sh, a multithreaded forking
#     program checking its data) run as under glibc, on a private arena, and say why.
# (3) a filter the program installs itself after the shim set up its shared heap: meshd
#     meshes it (no userfaultfd, no realtime raise) and its fork child takes a private
#     heap without memfd_create; every byte survives.
# (4) a file size limit (`ulimit -f`) below the arena's size: sizing the memfd would raise
#     SIGXFSZ and kill the program (it did: exit 153); the shim runs on a private arena and
#     says why, and the program's own writes meet the limit as under glibc.
# (5) address-space and data limits (`ulimit -v`, `ulimit -d`): the arena is sized within
#     them, and a forking threaded program and python run as under glibc.
# Usage: BUILD=/abs/build bash tests/integration/sandbox.sh [CASE...]
# Cases (default: all): unshare (1), userns (1b), selfsandbox (1c), filters and trust (2),
# late (3), fsize (4), rlimits (5).
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases unshare userns selfsandbox filters trust late fsize rlimits
chmod 755 "$TMP"
RUN=$PROG/seccomp_run
RUN_TIMEOUT=300 # a forkstorm run: only a deadlock, never a loaded machine, runs into it
ALL=memfd_create,userfaultfd,sched_setscheduler

# ---- (1) unshare -U --------------------------------------------------------------------
# unshare_case WHO PREFIX...: unshare -U true and sh -c under the shim, run through PREFIX.
unshare_case() {
    local who=$1
    shift
    if ! "$@" unshare -U true 2>/dev/null; then
        echo "SKIP: unshare -U fails $who under glibc too (no user namespaces here)"
        return
    fi
    if "$@" env LD_PRELOAD="$LIB" unshare -U true 2>"$TMP/unshare.err"; then
        pass "unshare -U true under the shim ($who)"
    else
        fail "unshare -U true under the shim ($who): $(cat "$TMP/unshare.err")"
    fi
    local out
    if out=$("$@" env LD_PRELOAD="$LIB" unshare -U sh -c 'x=$(echo in-ns); echo "$x $(id -u)"' 2>&1) &&
        [ "$out" = "in-ns 65534" ]; then
        pass "unshare -U sh -c under the shim ($who): $out"
    else
        fail "unshare -U sh -c under the shim ($who): $out"
    fi
}
if want unshare; then
    unshare_case root
    if [ "$(id -u)" = 0 ]; then
        unshare_case nobody setpriv --reuid=nobody --regid=nogroup --clear-groups
    fi
fi

# ---- (1b) unshare and setns while the shim has a thread ----------------------------------
# userns_case MODE WHO SOCKET [PREFIX...]: tests/prog/userns MODE through PREFIX, under glibc
# (skipped if it fails there: no user namespaces, or not root for setns) and under the shim
# with its control thread started at once (SOCKET: nobody there, or the private meshd).
# The kernel refuses these calls in a multithreaded process: the shim's threads must be
# out of the way (credentials.c).  forked as root must have run with a lazy child (a
# helper; nobody has no userfaultfd here, so its child copies before fork returns).
userns_case() {
    local mode=$1 who=$2 sock=$3 out
    shift 3
    if ! "$@" "$PROG/userns" "$mode" >/dev/null 2>&1; then
        echo "SKIP: userns $mode fails $who under glibc too"
        return
    fi
    if out=$("$@" env LD_PRELOAD="$LIB" MESHD_SOCKET="$sock" MESH_TEST_CONTROL_DELAY_MS=0 \
        "$PROG/userns" "$mode" 2>&1) && { [ "$mode.$who" != forked.root ] || grep -q 'lazy=1' <<<"$out"; }; then
        pass "userns $mode under the shim ($who, $(basename "$sock")): ${out//$'\n'/; }"
    else
        fail "userns $mode under the shim ($who, $(basename "$sock")): ${out//$'\n'/; }"
    fi
}
if want userns; then
    [ -n "${MESHD_PID:-}" ] || start_meshd || die "meshd did not create its socket"
    for sock in "$TMP/none.sock" "$SOCK"; do
        for mode in late setns forked; do userns_case "$mode" root "$sock"; done
    done
    if [ "$(id -u)" = 0 ]; then
        for mode in late forked; do
            userns_case "$mode" nobody "$TMP/none.sock" setpriv --reuid=nobody --regid=nogroup --clear-groups
        done
    fi
fi

# ---- (1c) a fork child that sandboxes itself ----------------------------------------------
# tests/prog/selfsandbox: the child installs a filter killing clone and clone3 (as sshd's
# preauth child), through prctl or the seccomp system call, and goes on allocating; the
# shim must start no thread there (it did, a second later: SIGSYS).  Control thread at the
# first slow path (0) and after the usual second; no meshd and a private one.
if want selfsandbox; then
    [ -n "${MESHD_PID:-}" ] || start_meshd || die "meshd did not create its socket"
    for how in prctl syscall; do
        if ! "$PROG/selfsandbox" "$how" 300 >/dev/null 2>&1; then
            echo "SKIP: selfsandbox $how fails under glibc too"
            continue
        fi
        for sock in "$TMP/none.sock" "$SOCK"; do
            for delay in 0 1000; do
                if out=$(env LD_PRELOAD="$LIB" MESHD_SOCKET="$sock" MESH_TEST_CONTROL_DELAY_MS=$delay \
                    "$PROG/selfsandbox" "$how" 2500 2>&1); then
                    pass "selfsandbox $how ($(basename "$sock"), thread delay $delay ms): $out"
                else
                    fail "selfsandbox $how ($(basename "$sock"), thread delay $delay ms): $out"
                fi
            done
        done
    done
    # The process itself, its shim thread running, filters every thread (TSYNC) and kills
    # access(): the shim's thread, which looks for meshd's socket with it, must be gone first.
    for sock in "$TMP/none.sock" "$SOCK"; do
        if ! "$PROG/selfsandbox" tsync 300 >/dev/null 2>&1; then
            echo "SKIP: selfsandbox tsync fails under glibc too"
            break
        fi
        rc=0
        out=$(env LD_PRELOAD="$LIB" MESHD_SOCKET="$sock" MESH_TEST_CONTROL_DELAY_MS=0 \
            "$PROG/selfsandbox" tsync 4000 2>&1) || rc=$?
        if [ $rc = 0 ]; then
            pass "selfsandbox tsync ($(basename "$sock")): $out"
        else
            fail "selfsandbox tsync ($(basename "$sock")): exit $rc (159: SIGSYS): $out"
        fi
    done
fi

# ---- (4) ulimit -f -----------------------------------------------------------------------
# fsize_case LIMIT_KIB: under `ulimit -f LIMIT_KIB`, echo and the forking, threaded,
# data-checking forkstorm run as under glibc, and (small limits) a write past the limit
# fails with EFBIG as it does under glibc (the shell ignores SIGXFSZ for it).
fsize_case() {
    local kib=$1 stats=$TMP/stats-fsize-$1 out
    if out=$(bash -c "ulimit -f $kib && LD_PRELOAD='$LIB' exec /bin/echo hi" 2>&1) && [ "$out" = hi ]; then
        pass "ulimit -f $kib: /bin/echo under the shim"
    else
        fail "ulimit -f $kib: /bin/echo under the shim: $out"
    fi
    if out=$(bash -c "ulimit -f $kib && exec timeout $RUN_TIMEOUT env LD_PRELOAD='$LIB' \
        MESHD_SOCKET='$TMP/none.sock' MESH_TEST_CONTROL_DELAY_MS=0 MESH_SHOW_STATS='$stats' \
        '$PROG/forkstorm' 3 30 1" 2>&1) && grep -q 'arena=private private_reason=file-size' "$stats"; then
        pass "ulimit -f $kib: $out; private arena, reason file-size"
    else
        fail "ulimit -f $kib: forkstorm: $out $(cat "$stats" 2>/dev/null)"
    fi
    [ "$kib" -le 1024 ] || return 0 # the write check writes the limit's worth twice
    local want got
    want=$(bash -c "ulimit -f $kib; trap '' XFSZ; head -c $((kib * 1024 + 4096)) /dev/zero >'$TMP/big-glibc' 2>&1; echo \$?")
    got=$(bash -c "ulimit -f $kib; trap '' XFSZ; LD_PRELOAD='$LIB' head -c $((kib * 1024 + 4096)) /dev/zero >'$TMP/big-shim' 2>&1; echo \$?")
    if [ "$want" = "$got" ] && [ "$(stat -c %s "$TMP/big-glibc")" = "$(stat -c %s "$TMP/big-shim")" ]; then
        pass "ulimit -f $kib: a write past the limit fails as under glibc (exit $got, $(stat -c %s "$TMP/big-shim") bytes)"
    else
        fail "ulimit -f $kib: write past the limit: glibc exit $want, shim exit $got"
    fi
}
if want fsize; then
    fsize_case 100
    fsize_case 1048576 # 1 GiB: more than any file here, less than the arena's reservation
fi

# ---- (5) ulimit -v and -d ----------------------------------------------------------------
# rlimit_case OPTION KIB [ARENA_STATS]: under `ulimit OPTION KIB` the forking, threaded, data-checking
# forkstorm and a python building 100k strings run under the shim as under glibc, on a
# shared (meshable) arena sized within the limit (shim/arena.c, arena_within_limits), or
# (ARENA_STATS: what MESH_SHOW_STATS must say) on glibc's allocator when no arena fits
# at all (shim/fallback.h).
# Before, any RLIMIT_DATA below ~9 GB (the default arena's private page map and span table
# count there) or RLIMIT_AS below ~2 GB failed the very first malloc: python died at start.
rlimit_case() {
    local opt=$1 kib=$2 arena=${3:-arena=memfd} stats=$TMP/stats-rlimit$1-$2 out py
    py='x = [str(i) * 10 for i in range(100000)]; print("python ok", len(x))'
    if ! bash -c "ulimit $opt $kib && exec /usr/bin/python3 -c '$py'" >/dev/null 2>&1; then
        echo "SKIP: ulimit $opt $kib: python fails under glibc too"
        return
    fi
    if out=$(bash -c "ulimit $opt $kib && exec timeout $RUN_TIMEOUT env LD_PRELOAD='$LIB' \
        MESHD_SOCKET='$TMP/none.sock' MESH_TEST_CONTROL_DELAY_MS=0 MESH_SHOW_STATS='$stats' \
        '$PROG/forkstorm' 3 30 1" 2>&1) && grep -q "$arena" "$stats"; then
        pass "ulimit $opt $kib: $out; $arena"
    else
        fail "ulimit $opt $kib: forkstorm: $out $(cat "$stats" 2>/dev/null)"
    fi
    if out=$(bash -c "ulimit $opt $kib && LD_PRELOAD='$LIB' exec /usr/bin/python3 -c '$py'" 2>&1) &&
        [ "$out" = "python ok 100000" ]; then
        pass "ulimit $opt $kib: $out"
    else
        fail "ulimit $opt $kib: python: $out"
    fi
}
if want rlimits; then
    rlimit_case -v 1000000 # 1 GB of address space: the arena used to need 2 GiB
    rlimit_case -v 400000
    rlimit_case -d 1000000 # 1 GB of data: the default arena's metadata alone took ~9 GB
    rlimit_case -d 100000
    rlimit_case -v 60000 "arena=none fallback=glibc" # not even 64 MiB fits: glibc's malloc
fi

# ---- (2) filters installed before exec -------------------------------------------------
if ! "$RUN" kill "$ALL" true; then
    echo "SKIP: cannot install a seccomp filter here"
    exit $FAILED
fi
# Under glibc the filter is harmless to these programs: the shim must be too.
want filters && for action in kill eperm enosys; do
    if "$RUN" "$action" "$ALL" env LD_PRELOAD="$LIB" true; then
        pass "$action filter: true"
    else
        fail "$action filter: true exit $?"
    fi
    if out=$("$RUN" "$action" "$ALL" env LD_PRELOAD="$LIB" sh -c 'a=$(echo x); b=$(echo y); echo "$a$b"' 2>&1) &&
        [ "$out" = xy ]; then
        pass "$action filter: sh with command substitutions"
    else
        fail "$action filter: sh: $out"
    fi
    # Threads, forks from several threads, allocating threads; every child checks its data.
    stats=$TMP/stats-$action
    if out=$(timeout "$RUN_TIMEOUT" "$RUN" "$action" "$ALL" env LD_PRELOAD="$LIB" MESHD_SOCKET="$TMP/none.sock" \
        MESH_SHOW_STATS="$stats" "$PROG/forkstorm" 3 30 1 2>&1) &&
        grep -q 'arena=private private_reason=seccomp' "$stats"; then
        pass "$action filter: $out; private arena, reason seccomp"
    else
        fail "$action filter: forkstorm: $out $(cat "$stats" 2>/dev/null)"
    fi
done
# An administrator may vouch for the profile (MESH_SECCOMP=trust): then the shim tries
# memfd_create, gets EPERM from this filter and falls back on its own.
stats=$TMP/stats-trust
if ! want trust; then
    :
elif out=$(timeout "$RUN_TIMEOUT" "$RUN" eperm "$ALL" env LD_PRELOAD="$LIB" MESH_SECCOMP=trust MESH_SHOW_STATS="$stats" \
    "$PROG/forkstorm" 2 20 1 2>&1) && grep -q 'arena=private private_reason=no-memfd' "$stats"; then
    pass "trusted eperm filter: memfd_create refused, private arena: $out"
else
    fail "trusted eperm filter: $out $(cat "$stats" 2>/dev/null)"
fi

# ---- (3) a filter installed by the program itself, with meshd meshing it -----------------
want late || exit $FAILED
[ -n "${MESHD_PID:-}" ] || start_meshd || die "meshd did not create its socket"
# late ACTION: the workload installs the filter for all three calls after the shim made its
# memfd heap and registered with meshd (the table's memfd is made at registration), meshd
# meshes it (the barrier must not try userfaultfd, nor the raise sched_setscheduler), then
# it checks its data and forks (the child must make its private heap without memfd_create).
late() {
    local action=$1 go=$TMP/go-$1 filter=$TMP/filter-$1 out=$TMP/late-$1.out
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB MESH_SHOW_STATS=$TMP/late-$action.stats \
        "$RUN" "$action" "$ALL" - "$go" "$filter" >"$out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    local meshed=0
    # shellcheck disable=SC2016
    if wait_for "$BOUND" grep -q fragmented "$out" &&
        wait_for "$BOUND" sh -c 'timeout "$4" "$1" --socket "$2" ps --json | grep -q "\"pid\": *$3\\b"' _ "$MESHCTL" "$SOCK" "$pid" "$CTL_TIMEOUT" &&
        touch "$filter" && wait_for "$BOUND" grep -q filtered "$out" &&
        ctl mesh "$pid" >"$TMP/late-$action.mesh" 2>&1; then
        meshed=1
    fi
    touch "$filter" "$go"
    wait_exit "$pid"
    if [ $meshed = 1 ] && [ $rc = 0 ] && grep -q 'seccomp_run: ok' "$out" &&
        grep -q 'arena=memfd' "$TMP/late-$action.stats"; then
        pass "late $action filter: $(cat "$TMP/late-$action.mesh"); data intact, fork child ok"
    else
        fail "late $action filter: meshed=$meshed exit=$rc: $(cat "$out" "$TMP/late-$action.mesh" 2>/dev/null)"
    fi
}

# early ACTION: the filter comes after the shim made its memfd heap but before it
# registered.  Registering needs a new memfd for the table (the shim keeps no descriptor
# before), which the filter forbids: the shim must not try (a KILL filter would end the
# process) and gives up registering; the program runs on unmeshed, its data intact, its
# fork child fine.  The control thread starts while the heap is built and gives up at once
# (the stats line then says table=unpublishable); a run whose thread did not get that far
# before the end proves less, and says so.
early() {
    local action=$1 go=$TMP/go-early-$1 out=$TMP/early-$1.out stats=$TMP/early-$1.stats
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB MESH_SHOW_STATS=$stats \
        "$RUN" "$action" "$ALL" - "$go" >"$out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_for "$BOUND" grep -q fragmented "$out" || true
    touch "$go"
    wait_exit "$pid"
    if [ $rc = 0 ] && grep -q 'seccomp_run: ok' "$out" && grep -q 'arena=memfd' "$stats"; then
        if grep -q 'table=unpublishable' "$stats"; then
            pass "$action filter before registration: registration given up, data intact, fork child ok"
        else
            pass "$action filter before registration: data intact, fork child ok (the thread had not tried yet)"
        fi
    else
        fail "$action filter before registration: exit=$rc: $(cat "$out" "$stats" 2>/dev/null)"
    fi
}
late kill
late eperm
early kill
early eperm

exit $FAILED
