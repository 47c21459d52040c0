#!/usr/bin/env bash
# The shim's descriptors never sit on a program's numbers, and the shim never acts through
# a number that is no longer its own (issue 9 item 1).  Each case runs under LD_PRELOAD,
# once with no meshd and once with a private meshd meshing the process (explicit
# `meshctl mesh PID` rounds), and checks every byte of the program's file and every live
# heap object:
#   - a C daemon that closes fds 3..1023, then writes and re-reads its data file (fd 3);
#   - the same in Python (os.closerange(3, 1024), PYTHONMALLOC=malloc);
#   - Python started with fd 0, 1 or 2 closed: it stays closed, writes to it fail (the
#     instant of a descriptor's creation, a known gap, is counted and shown, not failed);
#   - a preloaded program lists its descriptors (fstat over SC_OPEN_MAX, as CPython's
#     fd_status.py does, and /proc/self/fd) after the shim's control thread has started:
#     exactly what it has without the shim, with no meshd (MESHD_SOCKET nowhere, or unset)
#     and, with a meshd, that plus the control socket only; CPython's own
#     test_pass_fds_redirected where the test suite is installed;
#   - the C daemon dup2()ing its file over every descriptor the shim holds (none without
#     a meshd; the control socket and userfaultfd with one): the file stays intact and the
#     shim drops the socket without touching the number, then registers on a fresh one;
#   - bash with `exec 3<>file` and command substitutions (forks);
#   - under strace, the files the shim reads while meshd meshes (/proc/self/status for its
#     seccomp look, the pressure file) are opened once per registration, not per request
#     or per reading: each open puts a descriptor at the program's lowest free number.
#
#   BUILD=/abs/build bash tests/integration/fds.sh [CASE...]
# Cases (default: all): fdlist, cpython (test_pass_fds_redirected), daemon (the C daemon),
# lowlimit (RLIMIT_NOFILE 1024), python (os.closerange), closed (fd 0/1/2 closed), dup2, bash,
# opens (strace).
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases fdlist cpython daemon lowlimit python closed dup2 bash opens
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KEEPER=$PROG/fdkeeper
PYPROG=$HERE/fds_prog.py
# The interpreter itself, not a wrapper script (pyenv's shims are bash scripts that keep
# their own descriptors open across exec).
PY=$(command -v /usr/bin/python3 || command -v python3)
CLEANUP_SIGNAL=KILL
CTL_TIMEOUT=60
MIB=64         # data file size: larger than the heap, so a stray punch or map would hit it
ROUNDS_MAX=3000 # bound on a meshed program's rounds; it stops when the test says so
NO_MESHD=$TMP/no-meshd.sock # nobody listens: the shim retries quietly

# listed PID: succeeds if meshctl ps --json lists PID.
listed() {
    ctl ps --json >"$TMP/ps.json" 2>/dev/null &&
        json_get "$TMP/ps.json" "any(p['pid'] == $1 for p in j)" | grep -qx True
}

# finish PID: waits (bounded) for PID to exit; sets rc to its exit status.
finish() {
    rc=0
    wait_for 120 eval "! kill -0 $1 2>/dev/null" || kill -KILL "$1" 2>/dev/null || true
    wait "$1" || rc=$?
    forget_pid "$1"
}

# mesh_rounds PID DIR: waits for DIR/ready and for PID's registration, runs three explicit
# mesh rounds and prints how many meshes the process has had.
mesh_rounds() {
    local pid=$1 dir=$2 _
    wait_for 120 test -e "$dir/ready" || { echo "not ready"; return 1; }
    wait_for 120 listed "$pid" || { echo "never registered"; return 1; }
    for _ in 1 2 3; do
        ctl mesh "$pid" >>"$TMP/mesh.log" 2>&1 || { echo "meshctl mesh failed"; return 1; }
    done
    ctl stats "$pid" --json >"$TMP/stats.json" || { echo "no stats"; return 1; }
    json_get "$TMP/stats.json" "j['meshes']"
}

# settle HOW PID DIR NAME: with HOW=meshd, drives mesh rounds on PID and then tells it to
# stop (DIR/stop); waits for it either way.  Sets meshes and rc.
settle() {
    meshes=none
    if [ "$1" = meshd ]; then
        meshes=$(mesh_rounds "$2" "$3") || fail "$4 with meshd: $meshes"
        touch "$3/stop"
    fi
    finish "$2"
}

# verdict NAME RC OUTPUT_FILE: passes if RC is 0 and the last line of OUTPUT_FILE says ok
# (or verified), showing that line.
verdict() {
    local last
    last=$(tail -n 1 "$3" 2>/dev/null || true)
    if [ "$2" = 0 ] && [[ $last == ok:* || $last == verified:* ]]; then
        pass "$1: $last"
    else
        fail "$1: exit $2: $(cat "$3" 2>/dev/null)"
    fi
}

start_meshd || die "meshd did not create its socket"
# Room above the select() range, so that the shim's descriptors sit at 1024 and up and the
# programs' closing of 3..1023 leaves them alone; the low-limit case below runs without.
ulimit -n 4096 2>/dev/null || echo "note: RLIMIT_NOFILE stays at $(ulimit -n)"

# ---- no descriptor the program did not open -------------------------------------------------
# The program runs until the shim's control thread exists (a second task: it has tried to
# connect) or, with a meshd, until the shim holds a socket (registered), allocating all the
# while, then prints its descriptors.  The test's own environment may pass descriptors down,
# so the reference is the same program without the shim.
cat >"$TMP/fdlist.py" <<'EOF'
import os, sys, time
def links():
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass  # the listing's own directory descriptor, closed by now
    return out
wait = sys.argv[1]
keep = [b"%0200d" % i for i in range(150000)]  # 30 MiB of small objects
deadline = time.monotonic() + 120
while wait != "none" and time.monotonic() < deadline:
    if wait == "thread" and len(os.listdir("/proc/self/task")) > 1:
        break
    if wait == "socket" and any(l.startswith("socket:") for l in links().values()):
        break
    keep.append(b"%0300d" % len(keep))  # allocation slow paths start the thread
    del keep[:100]
    time.sleep(0.01)
fds = []
for fd in range(os.sysconf("SC_OPEN_MAX")):  # as Lib/test/subprocessdata/fd_status.py
    try:
        os.fstat(fd)
    except OSError:
        continue
    fds.append(fd)
l = links()
print("fds", ",".join(map(str, fds)))
print("tasks", len(os.listdir("/proc/self/task")))
print("extra", " ".join("%d=%s" % (fd, l.get(fd, "?")) for fd in fds if fd > 2))
EOF
"$PY" "$TMP/fdlist.py" none >"$TMP/fdlist.ref"
ref_fds=$(sed -n 's/^fds //p' "$TMP/fdlist.ref")

# fdlist_case NAME WAIT ENV...: runs fdlist.py preloaded with ENV (env arguments), checks
# its descriptors against the reference (plus, for WAIT=socket, sockets at 1024 and up).
fdlist_case() {
    local name=$1 wait=$2 out got extra fd rest=""
    shift 2
    out=$TMP/fdlist.$wait.$RANDOM
    (exec env "$@" PYTHONMALLOC=malloc LD_PRELOAD="$LIB" "$PY" "$TMP/fdlist.py" "$wait") \
        >"$out" 2>&1 || { fail "$name: exit $?: $(cat "$out")"; return; }
    got=$(sed -n 's/^fds //p' "$out")
    extra=$(sed -n 's/^extra //p' "$out")
    for fd in ${got//,/ }; do
        if [ "$wait" = socket ] && [ "$fd" -ge 1024 ] && [[ " $extra " == *" $fd=socket:"* ]]; then
            continue
        fi
        rest="$rest${rest:+,}$fd"
    done
    if [ "$(sed -n 's/^tasks //p' "$out")" -lt 2 ]; then
        fail "$name: the control thread never started: $(cat "$out")"
    elif [ "$wait" = socket ] && [ "$rest" = "$got" ]; then
        fail "$name: never registered: $(cat "$out")"
    elif [ "$rest" = "$ref_fds" ]; then
        pass "$name: fds $got${extra:+ ($extra)}; without the shim $ref_fds"
    else
        fail "$name: fds $got ($extra); without the shim $ref_fds"
    fi
}

# ---- fdlist: the descriptor lists ------------------------------------------------------------
if want fdlist; then
    fdlist_case "no descriptor, MESHD_SOCKET nowhere" thread MESHD_SOCKET="$NO_MESHD"
    if [ "$(id -u)" != 0 ] || ! [ -e /run/meshd/meshd.sock ]; then
        mkdir -m 700 "$TMP/xdg"
        fdlist_case "no descriptor, MESHD_SOCKET unset" thread -u MESHD_SOCKET XDG_RUNTIME_DIR="$TMP/xdg"
    else
        echo "SKIP: MESHD_SOCKET unset (a system meshd listens at /run/meshd/meshd.sock)"
    fi
    fdlist_case "registered with meshd: the control socket only" socket MESHD_SOCKET="$SOCK"
fi

# ---- cpython: CPython's own test (Debian's libpython3.11-testsuite), no meshd and meshd ---
if want cpython; then
    if "$PY" -c 'import test.test_subprocess' 2>/dev/null; then
        for sock in "$NO_MESHD" "$SOCK"; do
            (exec env MESHD_SOCKET="$sock" PYTHONMALLOC=malloc LD_PRELOAD="$LIB" "$PY" -m test \
                test_subprocess -m test_pass_fds_redirected) >"$TMP/cpython.out" 2>&1 && rc=0 || rc=$?
            if [ "$rc" = 0 ] && grep -q 'Tests result: SUCCESS' "$TMP/cpython.out"; then
                pass "CPython test_pass_fds_redirected (MESHD_SOCKET=$sock)"
            else
                fail "CPython test_pass_fds_redirected (MESHD_SOCKET=$sock): $(tail -n 20 "$TMP/cpython.out")"
            fi
        done
    else
        echo "SKIP: CPython's test suite is not installed (libpython3.11-testsuite)"
    fi
fi

# ---- the C daemon: closefrom(3), data file on fd 3 ---------------------------------------
if want daemon; then
    (MESHD_SOCKET=$NO_MESHD LD_PRELOAD=$LIB exec "$KEEPER" "$TMP/c.dat" $MIB - 12) >"$TMP/c.out" 2>&1 &&
        rc=0 || rc=$?
    verdict "C daemon, closed fds 3..1023, no meshd" "$rc" "$TMP/c.out"

    mkdir "$TMP/cm"
    (MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB exec "$KEEPER" "$TMP/cm.dat" $MIB "$TMP/cm" $ROUNDS_MAX) \
        >"$TMP/cm.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    settle meshd "$pid" "$TMP/cm" "C daemon"
    verdict "C daemon, closed fds 3..1023, meshd ($meshes meshes)" "$rc" "$TMP/cm.out"
    [ "${meshes:-0}" -gt 0 ] 2>/dev/null || fail "C daemon with meshd: nothing was meshed"
fi

# ---- lowlimit: RLIMIT_NOFILE 1024 ------------------------------------------------------------
if want lowlimit; then
    # With RLIMIT_NOFILE at 1024 the shim's descriptors sit at 960 and up, and the daemon's
    # closing of 3..1023 takes them: the shim must not notice anything but that (releases go
    # through its mapping; it stops registering).
    (ulimit -n 1024 && MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB exec "$KEEPER" "$TMP/cl.dat" $MIB - 12) \
        >"$TMP/cl.out" 2>&1 && rc=0 || rc=$?
    verdict "C daemon at RLIMIT_NOFILE 1024 closes the shim's descriptors too" "$rc" "$TMP/cl.out"
fi

# ---- Python: os.closerange(3, 1024) --------------------------------------------------------
if want python; then
    (MESHD_SOCKET=$NO_MESHD PYTHONMALLOC=malloc LD_PRELOAD=$LIB exec "$PY" "$PYPROG" closerange \
        "$TMP/p.dat" $MIB - 6 "$TMP/p.res") >"$TMP/p.out" 2>&1 && rc=0 || rc=$?
    cat "$TMP/p.out" >>"$TMP/p.res"
    verdict "Python os.closerange(3, 1024), no meshd" "$rc" "$TMP/p.res"

    mkdir "$TMP/pm"
    (MESHD_SOCKET=$SOCK PYTHONMALLOC=malloc LD_PRELOAD=$LIB exec "$PY" "$PYPROG" closerange \
        "$TMP/pm.dat" $MIB "$TMP/pm" $ROUNDS_MAX "$TMP/pm.res") >"$TMP/pm.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    settle meshd "$pid" "$TMP/pm" Python
    cat "$TMP/pm.out" >>"$TMP/pm.res"
    verdict "Python os.closerange(3, 1024), meshd ($meshes meshes)" "$rc" "$TMP/pm.res"
    [ "${meshes:-0}" -gt 0 ] 2>/dev/null || fail "Python with meshd: nothing was meshed"
fi

# ---- Python started with 0, 1 or 2 closed (python3 -c, as CPython's test_cmd_line does) ----
if want closed; then
    src=$(cat "$PYPROG")
    for fd in 0 1 2; do
        for how in none meshd; do
            d=$TMP/closed$fd-$how
            mkdir "$d"
            sock=$NO_MESHD ctl_dir=- rounds=6
            if [ $how = meshd ]; then sock=$SOCK ctl_dir=$d rounds=$ROUNDS_MAX; fi
            (
                export MESHD_SOCKET=$sock PYTHONMALLOC=malloc LD_PRELOAD=$LIB
                case $fd in
                0) exec "$PY" -c "$src" closed 0 "$ctl_dir" $rounds "$d/res" <&- ;;
                1) exec "$PY" -c "$src" closed 1 "$ctl_dir" $rounds "$d/res" >&- ;;
                2) exec "$PY" -c "$src" closed 2 "$ctl_dir" $rounds "$d/res" 2>&- ;;
                esac
            ) 2>>"$d/err" &
            pid=$!
            PIDS+=("$pid")
            settle $how "$pid" "$d" "fd $fd closed"
            verdict "python3 -c started with fd $fd closed ($how, meshes: $meshes)" "$rc" "$d/res"
        done
    done
fi

# ---- dup2() over every descriptor the shim holds -------------------------------------------
if want dup2; then
    # No meshd: the shim holds none, so the program takes nothing.  The request is there from
    # the start.
    mkdir "$TMP/d"
    touch "$TMP/d/dup2"
    (MESHD_SOCKET=$NO_MESHD LD_PRELOAD=$LIB exec "$KEEPER" "$TMP/d.dat" $MIB "$TMP/d" 8) \
        >"$TMP/d.out" 2>&1 && rc=0 || rc=$?
    verdict "dup2 over the shim's descriptors, no meshd ($(cat "$TMP/d/dup2.done" 2>/dev/null))" \
        "$rc" "$TMP/d.out"
    if [ -s "$TMP/d/dup2.done" ]; then
        fail "dup2, no meshd: the shim held descriptors: $(cat "$TMP/d/dup2.done")"
    fi
fi

# dup2_with_meshd NAME DIR [RUNNER...]: the C daemon (started through RUNNER, e.g. setpriv)
# is meshed, then dup2()s its file over every descriptor the shim holds: the control socket
# (and the userfaultfd where the process may have one; no memfd: the table's is closed once
# sent).  meshd's next request reaches the shim through the replaced socket: the shim must
# see that the number is no longer its socket, drop it without closing it, and register
# again on a fresh socket with a fresh table; meshing goes on, and the program keeps its
# file and heap intact.
dup2_with_meshd() {
    local name=$1 dir=$2
    shift 2
    # The runner itself is not preloaded (setpriv under the shim: credentials.sh).
    (exec "$@" env MESHD_SOCKET="$SOCK" LD_PRELOAD="$LIB" "$KEEPER" "$dir/data" $MIB "$dir" $ROUNDS_MAX) \
        >"$dir/out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    meshes=$(mesh_rounds "$pid" "$dir") || fail "$name: $meshes"
    touch "$dir/dup2"
    wait_for 120 test -e "$dir/dup2.done" || fail "$name: the program did not dup2"
    ctl mesh "$pid" >>"$TMP/mesh.log" 2>&1 || true # the round itself may fail
    # The old connection ends (meshd unlists it) and a new one answers rounds.
    if wait_for 120 eval "listed $pid && ctl mesh $pid >>'$TMP/mesh.log' 2>&1"; then
        pass "$name: the shim registered again on a fresh socket"
    else
        fail "$name: no working registration after its descriptors were taken"
    fi
    if grep -q 'libmesh-' "$dir/dup2.done"; then
        fail "$name: the shim held a memfd descriptor: $(cat "$dir/dup2.done")"
    fi
    kill -0 "$pid" 2>/dev/null || fail "$name: the program died"
    touch "$dir/stop"
    finish "$pid"
    verdict "$name ($meshes meshes before; $(cat "$dir/dup2.done" 2>/dev/null))" "$rc" "$dir/out"
    grep -q 'socket:' "$dir/dup2.done" || fail "$name: the control socket was not found"
}

# ---- dup2 ------------------------------------------------------------------------------------
if want dup2; then
    mkdir "$TMP/dm"
    dup2_with_meshd "dup2 over the shim's descriptors, meshd" "$TMP/dm"
    # A user without userfaultfd (unless vm.unprivileged_userfaultfd=1): the mprotect barrier.
    if [ "$(id -u)" = 0 ]; then
        chmod 755 "$TMP"
        mkdir "$TMP/dn"
        chown nobody "$TMP/dn"
        dup2_with_meshd "dup2 over the shim's descriptors, meshd, uid nobody" "$TMP/dn" \
            setpriv --reuid=nobody --regid=nogroup --clear-groups
    else
        echo "SKIP: the uid nobody case needs root"
    fi
fi

# ---- bash: exec 3<>file and command substitutions --------------------------------------------
if want bash; then
    head -c $((MIB << 20)) /dev/urandom >"$TMP/ref.dat"
    cat >"$TMP/bashprog.sh" <<'EOF'
exec 3<>"$1"
ctl=$2 max=$3 n=0
while [ $n -lt "$max" ] && ! [ -e "$ctl/stop" ]; do
    n=$((n + 1))
    big=$(printf '%*s' 4000000 x) # 4 MB in the heap, then dropped
    [ ${#big} = 4000000 ] || { echo "FAIL: substitution $n gave ${#big} bytes"; exit 1; }
    unset big
    a=()
    for i in $(seq 1 2000); do a[i]="value-$i-$n"; done
    [ "${a[1999]}" = "value-1999-$n" ] || { echo "FAIL: array lost in round $n"; exit 1; }
    unset a
    x=$(echo "round $n")
    [ "$x" = "round $n" ] || { echo "FAIL: substitution gave '$x'"; exit 1; }
    [ "$(readlink /proc/$$/fd/3)" = "$1" ] || { echo "FAIL: fd 3 is $(readlink /proc/$$/fd/3)"; exit 1; }
    [ -e "$ctl/ready" ] || : >"$ctl/ready"
done
echo "ok: $n rounds, fd 3 still the file"
EOF
    for how in none meshd; do
        d=$TMP/bash-$how
        mkdir "$d"
        cp "$TMP/ref.dat" "$d/file"
        sock=$NO_MESHD rounds=10
        if [ $how = meshd ]; then sock=$SOCK rounds=$ROUNDS_MAX; fi
        (MESHD_SOCKET=$sock LD_PRELOAD=$LIB exec bash "$TMP/bashprog.sh" "$d/file" "$d" $rounds) \
            >"$d/out" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        settle $how "$pid" "$d" bash
        if cmp -s "$TMP/ref.dat" "$d/file"; then
            echo "$(tail -n 1 "$d/out"); all $(stat -c %s "$d/file") bytes of the file intact" >"$d/res"
        else
            echo "FAIL: the file changed: $(cmp "$TMP/ref.dat" "$d/file" 2>&1 | head -1)" >"$d/res"
        fi
        verdict "bash exec 3<>file + \$(...) ($how, meshes: $meshes)" "$rc" "$d/res"
    done
fi

# ---- opens: what the shim opens while meshd meshes, counted under strace -------------------
if want opens; then
    if command -v strace >/dev/null; then
        # The C daemon with dirty pages to spare, so that the control thread reads the
        # pressure file (a test copy, MESH_TEST_PRESSURE_FILE) once a second, and explicit
        # rounds: every request and reply used to open /proc/self/status.
        printf 'some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n' \
            >"$TMP/pressure"
        mkdir "$TMP/op"
        (MESHD_SOCKET=$SOCK MESH_TEST_PRESSURE_FILE=$TMP/pressure exec strace -f -qq -e trace=openat \
            -e status=successful -o "$TMP/op.st" env LD_PRELOAD="$LIB" "$KEEPER" "$TMP/op.dat" $MIB \
            "$TMP/op" $ROUNDS_MAX) >"$TMP/op.out" 2>&1 &
        tracer=$!
        PIDS+=("$tracer")
        # The program is strace's child named fdkeeper (once env has exec()ed it): strace
        # forks short-lived children of its own first to probe ptrace's features, which
        # under load are still there when the program is looked for.
        if ! wait_for 60 pgrep -P "$tracer" -x fdkeeper >/dev/null; then
            fail "opens: strace started no program: $(cat "$TMP/op.out")"
        else
            pid=$(pgrep -P "$tracer" -x fdkeeper)
            meshes=$(mesh_rounds "$pid" "$TMP/op") || fail "opens with meshd: $meshes"
            sleep 3 # registered and holding dirty pages: the pressure file may be read
            touch "$TMP/op/stop"
            finish "$tracer"
            verdict "C daemon under strace, meshd ($meshes meshes)" "$rc" "$TMP/op.out"
            [ -z "${KEEP_TRACE:-}" ] || cp "$TMP/op.st" "$KEEP_TRACE"
            status=$(grep -c 'openat(.*"/proc/self/status"' "$TMP/op.st" || true)
            psi=$(grep -c "openat(.*\"$TMP/pressure\"" "$TMP/op.st" || true)
            # Set-up, registration, the barrier's choice and the kept file look once each (a
            # reconnection would look again); before, every request and reply did (3,063
            # times in this case).
            if [ "${meshes:-0}" -gt 0 ] 2>/dev/null && [ "$status" -le 4 ] && [ "$psi" -le 2 ]; then
                pass "opens while meshing ($meshes meshes): /proc/self/status $status, pressure file $psi times"
            else
                fail "opens while meshing ($meshes meshes): /proc/self/status $status, pressure file $psi times (at most 4 and 2)"
            fi
        fi
    else
        echo "SKIP: opens (strace not installed)"
    fi
fi

if [ $FAILED != 0 ]; then
    echo "--- meshd log"
    cat "$TMP/meshd.log"
    echo "--- mesh rounds"
    cat "$TMP/mesh.log" 2>/dev/null || true
    exit 1
fi
echo "fds: all passed"
