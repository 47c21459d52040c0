#!/usr/bin/env bash
# Copy-on-write forks (shim/fork_cow.h): the parent's fork() returns at once and its
# writes are held back, page by page, until the child's file has the old bytes.  forkcow
# rewrites its whole 96 MiB heap right after each fork (memset, read(2) into the heap,
# free and malloc again) while the child checks every byte it inherited; both must find
# their data intact.
# Usage: BUILD=/abs/build bash tests/integration/fork_cow.sh [CASE...]
# Cases (default: all):
#   rewrite  four copy-on-write forks; the parent's writes were served (counted)
#   kill     each child killed right after fork: the next fork must not wait for ever
#   closefrom  the parent closes every descriptor from 3 up (but its own pipe) right after
#            each fork, the shim's among them: the copy-on-write must go on to its end, and
#            the child must not die of SIGPIPE; later forks may copy eagerly (the barrier's
#            userfaultfd is replaced only when meshd next asks for a mesh)
#   orphan   the parent _exit()s right after a copy-on-write fork (a daemon's fork): the child
#            copies on alone and finds its heap intact (it died of SIGPIPE before)
#   twice    a second fork right after each copy-on-write one (eager): its child checks its
#            heap, and that it does not inherit the parent's copy-on-write (which would stop
#            its purges and meshing for good)
#   eager    MESH_FORK_COW=0: the parent copies before fork() returns, as before
#   nobody   as nobody (no userfaultfd): eager copies, the same checks
#   meshd    a private meshd meshes the process between and during the forks
#   redis    redis-server (Debian's) under the shim: BGSAVE of 700k keys while every key is
#            overwritten at once; the RDB must hold every key's value from before (DEBUG
#            POPULATE's "value:I" padded to 64 bytes)
# The child of a copy-on-write fork copies its heap lazily (shim/fork_lazy.h): its fork()
# returns at once and its helper thread fills the pages it touches; rewrite, orphan and meshd
# check that every child did (FORKCOW_EXPECT_LAZY=1), and:
#   lazy-late  every child checks only once the parent has rewritten its whole heap
#   lazy-nested  each child forks a grandchild at once (the child's copy ends first): both
#            check the heap
#   lazy-dropcaps  (root) each child drops root as setpriv does before it checks (its copy
#            ends first)
#   lazy-off  MESH_FORK_LAZY=0: copy-on-write forks whose children copy before fork()
#            returns, as before
#   lazy-fallback  MESH_TEST_FORK_LAZY_FAIL=1: the lazy copy cannot be set up (as without
#            a descriptor to spare): children copy before fork() returns, and keep stdin
#   lazy-python  python3 (PYTHONMALLOC=malloc, every fork copy-on-write, the shim's
#            control thread started at once) runs a fork process pool and a manager, five
#            rounds (fork_pool.py); a child that read a page of its heap wrong crashes
# The same with MESH_FORK_SHARE=1 (shim/fork_share.h: the child shares the parent's pages
# and its helper makes each one its own before the parent's first write to it):
#   share    every child checks only once the parent has rewritten its whole heap
#   share-rewrite, share-kill, share-closefrom, share-orphan, share-twice, share-redis
#            as above
#   share-nested  each child forks a grandchild at once (the child makes every page its
#            own first): both check the heap
#   share-detach  MESH_FORK_SHARE_MAX_MS=0: each child stops sharing at once (populating
#            its whole heap while the parent rewrites it) and checks late
#   share-meshd  as meshd
#   share-dropcaps  (root) each child drops root as setpriv does before it checks: it
#            stops sharing first (its helper would fail glibc's set*id broadcast: abort)
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases rewrite kill closefrom orphan twice eager nobody redis meshd lazy-late lazy-nested lazy-dropcaps lazy-off lazy-fallback lazy-python \
    share share-rewrite share-kill share-closefrom share-orphan share-twice share-nested share-detach \
    share-dropcaps share-redis share-meshd
RUN_TIMEOUT=300 # a hang, not a slow machine, runs into it

# forkcow NAME EXPECT_COW [ENV=VALUE...] -- ARGS...: runs forkcow under the shim (no meshd)
# and checks its verdict; EXPECT_COW is "all" (every fork copy-on-write, some writes
# served), "cow" (every fork copy-on-write), "first" (at least the first, with writes
# served), "none" (no fork copy-on-write) or "any"; "shared", "sharedany" and "sharedfirst"
# ask the same of forks whose child shared the parent's pages.
forkcow() {
    local name=$1 expect=$2 envs=() rc=0 cow served rounds shared
    shift 2
    while [ "$1" != "--" ]; do
        envs+=("$1")
        shift
    done
    shift
    timeout "$RUN_TIMEOUT" env MESH_NO_MESHD=1 LD_PRELOAD="$LIB" "${envs[@]}" "$PROG/forkcow" "$@" \
        >"$TMP/$name.out" 2>&1 || rc=$?
    if [ $rc != 0 ] || ! grep -q '^forkcow: ok' "$TMP/$name.out"; then
        fail "$name: exit $rc: $(tail -5 "$TMP/$name.out")"
        return
    fi
    rounds=$(sed -n 's/^forkcow: ok rounds=\([0-9]*\).*/\1/p' "$TMP/$name.out")
    cow=$(sed -n 's/.* cow=\([-0-9]*\).*/\1/p' "$TMP/$name.out")
    served=$(sed -n 's/.* served=\([-0-9]*\).*/\1/p' "$TMP/$name.out")
    shared=$(sed -n 's/.* shared=\([-0-9]*\).*/\1/p' "$TMP/$name.out")
    case $expect in
    shared*)
        # A sharing fork is copy-on-write on the parent's side; none may copy instead.
        [ "$cow" = 0 ] || { fail "$name: expected no copying fork: $(cat "$TMP/$name.out")"; return; }
        cow=$shared expect=${expect#shared}
        expect=${expect:-all}
        ;;
    esac
    case $expect in
    all) [ "$cow" = "$rounds" ] && [ "$served" -gt 0 ] ||
        { fail "$name: expected $rounds copy-on-write forks with writes served: $(cat "$TMP/$name.out")"; return; } ;;
    first) [ "$cow" -ge 1 ] && [ "$served" -gt 0 ] ||
        { fail "$name: expected a copy-on-write fork with writes served: $(cat "$TMP/$name.out")"; return; } ;;
    cow) [ "$cow" = "$rounds" ] || { fail "$name: expected $rounds copy-on-write forks: $(cat "$TMP/$name.out")"; return; } ;;
    none) [ "$cow" = 0 ] || { fail "$name: expected no copy-on-write fork: $(cat "$TMP/$name.out")"; return; } ;;
    esac
    pass "$name: $(cat "$TMP/$name.out")"
}

if want rewrite; then forkcow rewrite all FORKCOW_EXPECT_LAZY=1 -- 96 4; fi
# (A child killed at once may leave no write to serve.)
if want kill; then forkcow "kill" cow -- 96 4 kill; fi
if want closefrom; then forkcow closefrom first -- 96 4 closefrom; fi
if want orphan; then
    # The child holds the command substitution's pipe until it is done.
    out=$(timeout "$RUN_TIMEOUT" env MESH_NO_MESHD=1 FORKCOW_EXPECT_LAZY=1 LD_PRELOAD="$LIB" "$PROG/forkcow" 96 1 orphan 2>&1) || true
    if grep -q '^forkcow: orphan parent cow=1 shared=0$' <<<"$out" && grep -q '^forkcow: orphan child ok$' <<<"$out"; then
        pass "orphan: $(tr '\n' ' ' <<<"$out")"
    else
        fail "orphan: expected a copy-on-write fork and a child that found its heap intact: $out"
    fi
fi
if want twice; then forkcow twice cow -- 96 3 twice; fi
if want lazy-late; then forkcow lazy-late all FORKCOW_EXPECT_LAZY=1 -- 96 4 late; fi
if want lazy-nested; then forkcow lazy-nested all FORKCOW_EXPECT_LAZY=1 -- 96 4 nested; fi
if want lazy-dropcaps; then
    if [ "$(id -u)" != 0 ]; then
        pass "lazy-dropcaps: skipped (not root: cannot drop root)"
    else
        forkcow lazy-dropcaps all FORKCOW_EXPECT_LAZY=1 -- 96 3 dropcaps
    fi
fi
if want lazy-off; then forkcow lazy-off all MESH_FORK_LAZY=0 FORKCOW_EXPECT_LAZY=0 -- 96 3; fi
if want lazy-fallback; then
    forkcow lazy-fallback all MESH_TEST_FORK_LAZY_FAIL=1 FORKCOW_EXPECT_LAZY=0 -- 96 3 </dev/null
fi
if want lazy-python; then
    # A meshd socket nobody listens on: the control thread starts (and the parent has a
    # thread) from the first fork on.
    out=$(timeout "$RUN_TIMEOUT" env -i PATH=/usr/bin:/bin HOME="$TMP" LANG=C.UTF-8 PYTHONMALLOC=malloc \
        LD_PRELOAD="$LIB" MESHD_SOCKET="$TMP/nobody.sock" MESH_TEST_CONTROL_DELAY_MS=0 MESH_FORK_COW_MIN=0 \
        python3 "$(dirname "$0")/fork_pool.py" 5 2>&1) || true
    if grep -q '^fork_pool: ok 100 lazy=[1-9]' <<<"$out"; then
        pass "lazy-python: $(tail -1 <<<"$out")"
    else
        fail "lazy-python: expected 100 results, some from lazily copied workers: $(tail -5 <<<"$out")"
    fi
fi
if want share; then forkcow share shared MESH_FORK_SHARE=1 -- 96 4 late; fi
if want share-rewrite; then forkcow share-rewrite shared MESH_FORK_SHARE=1 -- 96 4; fi
if want share-kill; then forkcow share-kill sharedcow MESH_FORK_SHARE=1 -- 96 4 kill; fi
if want share-closefrom; then forkcow share-closefrom sharedfirst MESH_FORK_SHARE=1 -- 96 4 closefrom; fi
if want share-twice; then forkcow share-twice sharedcow MESH_FORK_SHARE=1 -- 96 3 twice; fi
if want share-nested; then forkcow share-nested shared MESH_FORK_SHARE=1 -- 96 4 nested; fi
if want share-detach; then forkcow share-detach shared MESH_FORK_SHARE=1 MESH_FORK_SHARE_MAX_MS=0 -- 96 4 late; fi
if want share-dropcaps; then
    if [ "$(id -u)" != 0 ]; then
        pass "share-dropcaps: skipped (not root: cannot drop root)"
    else
        forkcow share-dropcaps shared MESH_FORK_SHARE=1 -- 96 3 dropcaps
    fi
fi
if want share-orphan; then
    out=$(timeout "$RUN_TIMEOUT" env MESH_FORK_SHARE=1 MESH_NO_MESHD=1 LD_PRELOAD="$LIB" "$PROG/forkcow" 96 1 orphan 2>&1) || true
    if grep -q '^forkcow: orphan parent cow=0 shared=1$' <<<"$out" && grep -q '^forkcow: orphan child ok$' <<<"$out"; then
        pass "share-orphan: $(tr '\n' ' ' <<<"$out")"
    else
        fail "share-orphan: expected a sharing fork and a child that found its heap intact: $out"
    fi
fi
if want eager; then forkcow eager none MESH_FORK_COW=0 -- 96 3; fi

if want nobody; then
    if [ "$(id -u)" != 0 ]; then
        pass "nobody: skipped (not root: cannot switch users)"
    else
        # Without userfaultfd (the default for users other than root) there is no barrier,
        # hence no copy-on-write: the eager copy must do.
        expect=none
        if [ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)" = 1 ] ||
            setpriv --reuid=nobody --regid=nogroup --clear-groups test -r /dev/userfaultfd -a -w /dev/userfaultfd; then
            expect=any
        fi
        rc=0
        timeout "$RUN_TIMEOUT" setpriv --reuid=nobody --regid=nogroup --clear-groups \
            env MESH_NO_MESHD=1 LD_PRELOAD="$LIB" "$PROG/forkcow" 96 3 >"$TMP/nobody.out" 2>&1 || rc=$?
        if [ $rc = 0 ] && grep -q '^forkcow: ok' "$TMP/nobody.out" &&
            { [ $expect = any ] || grep -q ' cow=0 ' "$TMP/nobody.out"; }; then
            pass "nobody: $(cat "$TMP/nobody.out")"
        else
            fail "nobody: exit $rc (expected cow: $expect): $(tail -5 "$TMP/nobody.out")"
        fi
    fi
fi

# bgsave_and_overwrite PORT N: BGSAVE, and in the same pipeline SET key:I new:I for every
# I < N (from N-1 down), so that the server rewrites its heap while the fork's child copies it; waits for
# the replies and fails unless the BGSAVE started.
bgsave_and_overwrite() {
    python3 - "$1" "$2" <<'PY'
import socket, sys
sets = []
# From the last key down: the keys' entries were made in order, so the first writes land
# on pages the child's copy (in address order) comes to last.
for i in reversed(range(int(sys.argv[2]))):
    k, v = b"key:%d" % i, b"new:%d" % i
    sets.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"*1\r\n$6\r\nBGSAVE\r\n" + b"".join(sets) + b"*1\r\n$4\r\nPING\r\n")
head, data = b"", b""
while not data.endswith(b"+PONG\r\n"):
    chunk = s.recv(1 << 20)
    if not chunk:
        sys.exit("connection closed")
    if len(head) < 64:
        head += chunk[:64]
    data = (data + chunk)[-64:]
if not head.startswith(b"+Background saving started\r\n"):
    sys.exit("BGSAVE: %r" % head[:40])
PY
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# redis_bgsave NAME FORKS [ENV=VALUE...]: the BGSAVE test; FORKS is the stats field that must
# count the fork (cow_forks or shared_forks).
redis_bgsave() {
    local name=$1 field=$2 keys port rpid status port2 r2 size bad forks
    shift 2
    if ! command -v redis-server >/dev/null; then
        fail "$name: redis-server is not installed (make deps installs it)"
    else
        keys=700000
        port=$(free_port)
        mkdir "$TMP/$name"
        env MESH_NO_MESHD=1 "$@" MESH_SHOW_STATS="$TMP/$name.stats" LD_PRELOAD="$LIB" redis-server --port "$port" \
            --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP/$name" --dbfilename dump.rdb \
            --enable-debug-command yes >"$TMP/$name.log" 2>&1 &
        rpid=$!
        PIDS+=("$rpid")
        rcli() { timeout "$CTL_TIMEOUT" redis-cli -h 127.0.0.1 -p "$port" "$@"; }
        wait_for "$BOUND" rcli ping >/dev/null 2>&1 || die "$name: the server did not answer: $(cat "$TMP/$name.log")"
        rcli debug populate "$keys" key 64 >/dev/null
        saving() { rcli info persistence | grep -q '^rdb_bgsave_in_progress:1'; }
        if ! bgsave_and_overwrite "$port" "$keys" 2>"$TMP/$name.client" || ! wait_for "$BOUND" eval '! saving'; then
            fail "$name: BGSAVE or the overwrite failed: $(cat "$TMP/$name.client"; tail -3 "$TMP/$name.log")"
        else
            status=$(rcli info persistence | sed -n 's/^rdb_last_bgsave_status:\(.*\)\r$/\1/p')
            kill -TERM "$rpid"
            wait_exit "$rpid"
            # The snapshot, read by a second server under glibc: every key, every value old.
            port2=$(free_port)
            redis-server --port "$port2" --bind 127.0.0.1 --save "" --dir "$TMP/$name" --dbfilename dump.rdb \
                >"$TMP/$name.2.log" 2>&1 &
            r2=$!
            PIDS+=("$r2")
            wait_for "$BOUND" eval 'timeout "$CTL_TIMEOUT" redis-cli -p "$port2" ping 2>/dev/null | grep -q PONG' ||
                die "$name: the second server did not load the snapshot: $(cat "$TMP/$name.2.log")"
            size=$(timeout "$CTL_TIMEOUT" redis-cli -p "$port2" dbsize)
            bad=$(timeout "$CTL_TIMEOUT" redis-cli -p "$port2" eval "local n = 0
                for i = 0, $keys - 1 do
                    local v, want = redis.call('GET', 'key:' .. i), 'value:' .. i
                    if not v or #v ~= 64 or string.sub(v, 1, #want) ~= want then n = n + 1 end
                end
                return n" 0)
            forks=$(sed -n "s/.* $field=\([0-9]*\).*/\1/p" "$TMP/$name.stats" | head -1)
            if [ "$status" = ok ] && [ "$size" = "$keys" ] && [ "$bad" = 0 ] && [ "${forks:-0}" -ge 1 ]; then
                pass "$name: BGSAVE under a lazy fork while every key was overwritten: $size keys, all old ($(grep -o 'cow_forks=.*' "$TMP/$name.stats"))"
            else
                fail "$name: bgsave $status, $size keys, $bad differ, $field '${forks:-}': $(cat "$TMP/$name.stats" 2>/dev/null)"
            fi
        fi
    fi
}

if want redis; then redis_bgsave redis cow_forks; fi
if want share-redis; then redis_bgsave share-redis shared_forks MESH_FORK_SHARE=1; fi

# meshd_forks NAME PATTERN [ENV=VALUE...]: forkcow (8 forks) meshed by a private meshd
# between and during the forks; its verdict must match PATTERN.
meshd_forks() {
    local name=$1 pattern=$2 pid rounds meshed
    shift 2
    (exec env MESHD_SOCKET="$SOCK" LD_PRELOAD="$LIB" FORKCOW_HOLD=1 "$@" "$PROG/forkcow" 96 8) \
        >"$TMP/$name.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_for "$BOUND" grep -q '^ready' "$TMP/$name.out" || die "$name: forkcow not ready: $(cat "$TMP/$name.out")"
    wait_for "$BOUND" ctl stats "$pid" >/dev/null 2>&1 || die "$name: pid $pid did not register"
    ctl mesh "$pid" >"$TMP/$name.rounds" 2>&1 || fail "$name: first round: $(tail -1 "$TMP/$name.rounds")"
    kill -USR1 "$pid"
    rounds=1
    while ! gone "$pid"; do
        ctl mesh "$pid" >>"$TMP/$name.rounds" 2>&1 || true # the last one may meet the exit
        rounds=$((rounds + 1))
    done
    wait_exit "$pid"
    meshed=$(sed -n 's/.* \([0-9]*\) meshed,.*/\1/p' "$TMP/$name.rounds" | awk '{n += $1} END {print n + 0}')
    if [ "$meshed" = 0 ]; then
        fail "$name: nothing was meshed (the forks should meet aliases): $(sort "$TMP/$name.rounds" | uniq -c)"
    elif [ "$rc" = 0 ] && grep -q "^forkcow: ok.*$pattern" "$TMP/$name.out"; then
        pass "$name: $rounds rounds asked for, $meshed pairs meshed; $(tail -1 "$TMP/$name.out")"
    else
        fail "$name: exit $rc: $(tail -5 "$TMP/$name.out"); meshd log: $(tail -5 "$TMP/meshd.log")"
    fi
}

want meshd || want share-meshd || exit $FAILED
# Meshing waits while a child copies or shares (its copy and punch would change live
# pages); rounds asked for meanwhile must neither hang nor corrupt either heap.
start_meshd || die "meshd did not create its socket"
if want meshd; then meshd_forks meshd ' cow=8 ' FORKCOW_EXPECT_LAZY=1; fi
if want share-meshd; then meshd_forks share-meshd ' shared=8$' MESH_FORK_SHARE=1; fi
exit $FAILED
