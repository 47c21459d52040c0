#!/usr/bin/env bash
# Least privilege (docs/SECURITY.md): meshd.service's exposure score, the unit's system call
# filter against every call meshd really makes, the watchdog, and meshd with no capabilities
# at all, as uid nobody, meshing exactly the processes that trust it:
#  (1) systemd-analyze security --offline=true rates the installed unit (and the metrics
#      drop-in) at most MAX_EXPOSURE;
#  (2) the production shape: the socket bound and listened by root (systemd-socket-activate
#      stands in for PID 1), meshd as nobody with an empty bounding set and no_new_privs,
#      under strace: a root and a nobody process both register and are meshed by explicit
#      rounds, WATCHDOG=1 arrives, SIGHUP reloads, and every system call meshd made is one
#      the unit allows;
#  (3) a capability-less meshd that binds its own socket as nobody meshes nobody's process,
#      and root's shim refuses it (SO_PEERCRED is nobody, neither root nor its own uid).
# Usage: BUILD=/abs/build bash tests/integration/privilege.sh [CASE...] (as root; parts
# skip without root, systemd-analyze, systemd-socket-activate or strace).
# Cases (default: all): exposure (1), activated (2), own (3).
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases exposure activated own
SRC=$(cd "$(dirname "$0")/../.." && pwd)
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
chmod 755 "$TMP" # uid nobody must reach the sockets in here
NOPRIV=(setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all
    --bounding-set=-all --no-new-privs)

# ---- (1) exposure score of the installed unit ----------------------------------------------
if ! want exposure; then
    :
elif command -v systemd-analyze >/dev/null; then
    U=$TMP/units
    mkdir -p "$U"
    # the unit as make install PREFIX=/usr writes it
    sed 's|/usr/local/|/usr/|g' "$SRC/systemd/meshd.service" >"$U/meshd.service"
    cp "$SRC/systemd/meshd.socket" "$U/"
    # exposure: the overall level systemd-analyze prints for the unit in $U
    exposure() {
        (cd "$U" && timeout "$BOUND" systemd-analyze security --offline=true --no-pager meshd.service) \
            >"$TMP/security.out" 2>&1 || true
        sed -n 's/.*Overall exposure level for meshd.service: \([0-9.]*\) .*/\1/p' "$TMP/security.out"
    }
    below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 <= b + 0) }'; }
    level=$(exposure)
    if below "$level" "$MAX_EXPOSURE"; then
        pass "systemd-analyze security: meshd.service exposure $level <= $MAX_EXPOSURE"
    else
        fail "systemd-analyze security: exposure '$level' > $MAX_EXPOSURE: $(grep '✗' "$TMP/security.out")"
    fi
    mkdir -p "$U/meshd.service.d"
    cp "$SRC/systemd/meshd-metrics.conf" "$U/meshd.service.d/"
    level=$(exposure)
    if below "$level" "$MAX_EXPOSURE"; then
        pass "systemd-analyze security: with the metrics drop-in, exposure $level <= $MAX_EXPOSURE"
    else
        fail "systemd-analyze security with meshd-metrics.conf: exposure '$level': $(grep '✗' "$TMP/security.out")"
    fi
    # verify (daemon.sh checks the units alone): the drop-in with meshd at its build path
    V=$TMP/verify
    mkdir -p "$V/meshd.service.d"
    sed "s#/usr/local/bin/meshd#$MESHD#" "$SRC/systemd/meshd.service" >"$V/meshd.service"
    sed "s#/usr/local/bin/meshd#$MESHD#" "$SRC/systemd/meshd-metrics.conf" >"$V/meshd.service.d/metrics.conf"
    cp "$SRC/systemd/meshd.socket" "$V/"
    rc=0
    (cd "$V" && timeout "$BOUND" systemd-analyze verify --man=no meshd.socket meshd.service) \
        >"$TMP/verify.out" 2>&1 || rc=$?
    if [ $rc = 0 ] && [ ! -s "$TMP/verify.out" ]; then
        pass "systemd-analyze verify: meshd.service with the metrics drop-in"
    else
        fail "systemd-analyze verify with meshd-metrics.conf (exit $rc): $(cat "$TMP/verify.out")"
    fi
else
    echo "SKIP: systemd-analyze not installed"
fi

if ! want activated && ! want own; then
    exit "$FAILED"
fi
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: the no-capability tests need root (to switch to nobody)"
    exit "$FAILED"
fi

# Everything under test must be readable by nobody.
if ! setpriv --reuid=nobody --regid=nogroup --clear-groups test -r "$LIB" -a -x "$FRAG" -a -x "$MESHD"; then
    echo "SKIP: uid nobody cannot read the build directory $BUILD"
    exit "$FAILED"
fi

# Automatic rounds off: the explicit rounds below must find the heaps still fragmented.
CONF=$TMP/policy.conf
printf 'enabled=0\n' >"$CONF"
chmod 644 "$CONF"

# frag_as WHO OUT SOCKET: starts a fragmenter (holding its heap until stop_frag, so it is
# there for the rounds however long they take) as WHO (root or nobody) on SOCKET, output in
# OUT; sets FPID and records it in PIDS.  Its 200000 objects make a heap well above the
# shim's 16 MiB, so the shim registers while the heap is built.
frag_as() {
    local who=$1 out=$2 sock=$3
    if [ "$who" = root ]; then
        MESHD_SOCKET=$sock LD_PRELOAD=$LIB "$FRAG" 200000 25 hold >"$out" 2>&1 &
    else
        # the shim in the fragmenter only (setpriv under the shim: credentials.sh)
        # MESH_BARRIER=mprotect: nobody has no userfaultfd here, so its shim would refuse
        # every pair (docs/ALLOCATOR.md); this test is about meshd's privileges, and the
        # fragmenter makes no system call into its heap while it holds it.
        "${NOPRIV[@]}" env MESHD_SOCKET="$sock" LD_PRELOAD="$LIB" MESH_BARRIER=mprotect \
            "$FRAG" 200000 25 hold >"$out" 2>&1 &
    fi
    FPID=$!
    PIDS+=("$FPID")
}

# registered SOCKET PID: PID is in root's meshctl ps on SOCKET.
registered() {
    timeout "$CTL_TIMEOUT" "$MESHCTL" --socket "$1" ps --json 2>/dev/null |
        python3 -c 'import json,sys; sys.exit(not any(p["pid"] == int(sys.argv[1]) for p in json.load(sys.stdin)))' "$2"
}

# mesh_round SOCKET PID OUT WHAT: waits for PID's frees, runs one explicit round and checks
# that it meshed pairs.
mesh_round() {
    local sock=$1 pid=$2 out=$3 what=$4
    wait_for "$BOUND" grep -q 'holding until SIGUSR1' "$out" || true
    if timeout "$BOUND" "$MESHCTL" --socket "$sock" mesh "$pid" >"$TMP/round.out" 2>&1 &&
        grep -Eq ': [0-9]+ pairs sent, [1-9][0-9]* meshed' "$TMP/round.out"; then
        pass "$what: $(cat "$TMP/round.out")"
    else
        fail "$what: $(cat "$TMP/round.out")"
    fi
}

# stop_frag PID: ends a fragmenter that holds its heap and reaps it.
stop_frag() {
    kill -TERM "$1" 2>/dev/null || true
    wait_exit "$1"
}

# ---- (2) socket activated by root, meshd as nobody with no capabilities, under strace -------
if ! want activated; then
    :
elif command -v systemd-socket-activate >/dev/null && command -v strace >/dev/null; then
    ASOCK=$TMP/act.sock
    NOTIFY_NAME=@meshd-priv-$$
    # It runs until STOPPING=1 (cleanup stops it otherwise); meshd's watchdog pings every
    # 200 ms, so its silence bound is only reached if meshd is gone.
    python3 "$SRC/tests/integration/notify_receiver.py" "$NOTIFY_NAME" "$TMP/notify.log" "$BOUND" &
    NOTIFY_PID=$!
    PIDS+=("$NOTIFY_PID")
    wait_for "$BOUND" grep -qs BOUND "$TMP/notify.log" || fail "notify receiver did not start"
    # strace follows the activator's child through setpriv's exec into meshd; nice -n 19
    # as the unit's Nice=19 (so meshd, at its default niceness already, calls no
    # setpriority, which the unit's filter refuses).  A meshd built with SANITIZER=address
    # checks for leaks at exit, which LeakSanitizer cannot do under ptrace (it exits 1).
    env -u LD_PRELOAD strace -f -qq -o "$TMP/strace.txt" \
        systemd-socket-activate -l "$ASOCK" -E NOTIFY_SOCKET="$NOTIFY_NAME" -E WATCHDOG_USEC=400000 \
        -E ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
        nice -n 19 "${NOPRIV[@]}" "$MESHD" --config "$CONF" 2>>"$TMP/meshd.log" &
    APID=$!
    PIDS+=("$APID")
    wait_for "$BOUND" test -S "$ASOCK" || die "systemd-socket-activate did not bind $ASOCK"
    chmod 666 "$ASOCK" # SocketMode=0666 in meshd.socket
    frag_as root "$TMP/root.out" "$ASOCK"
    RPID=$FPID
    frag_as nobody "$TMP/nobody.out" "$ASOCK"
    NPID=$FPID
    if wait_for "$BOUND" registered "$ASOCK" "$RPID" && wait_for "$BOUND" registered "$ASOCK" "$NPID"; then
        pass "activated socket: root's (pid $RPID) and nobody's (pid $NPID) processes registered with a nobody meshd"
    else
        fail "activated socket: registrations: $(timeout "$CTL_TIMEOUT" "$MESHCTL" --socket "$ASOCK" ps 2>&1)"
    fi
    # meshd is the activator's child (setpriv exec'd into it): uid 65534, empty bounding set.
    MPID=$(pgrep -P "$APID" | head -1 || true)
    [ -z "$MPID" ] || PIDS+=("$MPID") # cleanup stops meshd itself, not only its tracer
    if [ -n "$MPID" ] && awk '/^Uid:/ {u = $2} /^CapBnd:/ {c = $2} /^CapEff:/ {e = $2}
        END {exit !(u == 65534 && c ~ /^0+$/ && e ~ /^0+$/)}' "/proc/$MPID/status"; then
        pass "meshd (pid $MPID) runs as uid 65534 with empty bounding and effective sets"
    else
        fail "meshd's identity: $(grep -E '^(Uid|CapBnd|CapEff):' "/proc/$MPID/status" 2>&1 | tr '\n' ' ')"
    fi
    mesh_round "$ASOCK" "$RPID" "$TMP/root.out" "nobody meshd, root's process"
    mesh_round "$ASOCK" "$NPID" "$TMP/nobody.out" "nobody meshd, nobody's process"
    # shellcheck disable=SC2016 # $1 is the inner shell's
    if wait_for "$BOUND" sh -c '[ "$(grep -c "^WATCHDOG=1" "$1")" -ge 2 ]' _ "$TMP/notify.log" &&
        grep -q 'watchdog: WATCHDOG=1 every 200 ms' "$TMP/meshd.log"; then
        pass "watchdog: WATCHDOG=1 every half of WATCHDOG_USEC from the loop"
    else
        fail "watchdog: $(grep -c WATCHDOG=1 "$TMP/notify.log") pings; $(grep watchdog "$TMP/meshd.log")"
    fi
    # a reload re-reads --config as the dynamic user would (and shows in the syscall trace)
    kill -HUP "$MPID"
    if wait_for "$BOUND" grep -q '^RELOADING=1' "$TMP/notify.log"; then
        pass "SIGHUP: config re-read without privilege"
    else
        fail "SIGHUP: no RELOADING=1: $(cat "$TMP/notify.log")"
    fi
    stop_frag "$RPID"
    stop_frag "$NPID"
    kill -TERM "$MPID" 2>/dev/null || true
    wait_exit "$APID"
    forget_pid "$MPID"
    if [ $rc = 0 ] && wait_for "$BOUND" grep -q '^STOPPING=1' "$TMP/notify.log"; then
        pass "SIGTERM: STOPPING=1, exit 0"
    else
        fail "SIGTERM: exit $rc"
    fi
    # Every system call of meshd's process (after its exec) and its threads must pass the
    # unit's SystemCallFilter=@system-service minus @privileged @resources.
    if command -v systemd-analyze >/dev/null; then
        systemd-analyze syscall-filter --no-pager >"$TMP/groups.txt" 2>&1
        if python3 - "$TMP/groups.txt" "$TMP/strace.txt" "$MESHD" "$SRC/systemd/meshd.service" \
            >"$TMP/filter.out" 2>&1 <<'PY'; then
import re, sys
groups, cur = {}, None
for line in open(sys.argv[1]):
    s = line.strip()
    if not s or s.startswith("#"):
        continue
    if not line[0].isspace() and s.startswith("@"):
        cur = groups.setdefault(s, set())
    elif cur is not None:
        cur.add(s)
def expand(name, seen=()):
    if not name.startswith("@"):
        return {name}
    out = set()
    for m in groups.get(name, ()):
        if m not in seen:
            out |= expand(m, seen + (name,))
    return out
allow, deny = set(), set()
for line in open(sys.argv[4]):
    m = re.match(r"SystemCallFilter=(~?)(.*)", line.strip())
    if m:
        names = set().union(*(expand(n) for n in m.group(2).split()))
        (deny if m.group(1) else allow).update(names)
allowed = allow - deny
# pid of meshd: the process whose execve of the daemon succeeded; then its threads
meshd, started, used = set(), set(), {}
for line in open(sys.argv[2]):
    m = re.match(r"(\d+) +([a-z0-9_]+)\((.*)", line)
    if not m:
        continue
    pid, call, rest = m.group(1), m.group(2), m.group(3)
    if call == "execve" and rest.startswith('"%s"' % sys.argv[3]) and rest.endswith("= 0"):
        meshd.add(pid)
        started.add(pid)
        continue
    if pid in started:
        used[call] = used.get(call, 0) + 1
        if call in ("clone", "clone3"):
            r = re.search(r"= (\d+)$", rest)
            if r:
                started.add(r.group(1))
if not meshd:
    sys.exit("no execve of meshd in the trace")
bad = sorted(c for c in used if c not in allowed)
print("meshd made %d distinct system calls: %s" % (len(used), " ".join(sorted(used))))
if bad:
    sys.exit("outside the unit's SystemCallFilter: " + " ".join(bad))
PY
            pass "SystemCallFilter: $(head -1 "$TMP/filter.out")"
        else
            fail "SystemCallFilter: $(cat "$TMP/filter.out")"
        fi
    fi
    wait_exit "$NOTIFY_PID"
else
    echo "SKIP: socket-activated no-capability test needs systemd-socket-activate and strace"
fi

# ---- (3) a nobody meshd on its own socket: nobody's process yes, root's shim refuses -------
if ! want own; then
    [ "$FAILED" = 0 ] && echo "privilege: all passed"
    exit "$FAILED"
fi
: >"$TMP/meshd.log"
mkdir -m 777 "$TMP/own"
OSOCK=$TMP/own/meshd.sock
env -u LD_PRELOAD "${NOPRIV[@]}" "$MESHD" --nice 0 --socket "$OSOCK" --config "$CONF" 2>>"$TMP/meshd.log" &
OPID=$!
PIDS+=("$OPID")
wait_for "$BOUND" test -S "$OSOCK" || die "the nobody meshd did not create its socket"
frag_as nobody "$TMP/own-nobody.out" "$OSOCK"
NPID=$FPID
if wait_for "$BOUND" registered "$OSOCK" "$NPID"; then
    pass "own socket: nobody's process (pid $NPID) registered with the nobody meshd"
else
    fail "own socket: nobody's process did not register: $(cat "$TMP/meshd.log")"
fi
mesh_round "$OSOCK" "$NPID" "$TMP/own-nobody.out" "nobody meshd on its own socket, nobody's process"
if command -v strace >/dev/null; then
    # Root's shim connects, reads SO_PEERCRED (uid 65534: not root, not its own) and closes
    # that socket: wait for exactly that in its trace, then check it never registered.
    # shellcheck disable=SC2317 # called through wait_for
    peer_refused() {
        awk '/SO_PEERCRED, \{pid=[0-9]*, uid=65534/ { match($0, /getsockopt\([0-9]+/)
                 fd = substr($0, RSTART + 11, RLENGTH - 11) }
             fd != "" && index($0, "close(" fd ")") { found = 1 }
             END { exit !found }' "$TMP/root-shim.txt" 2>/dev/null
    }
    env -u LD_PRELOAD strace -f -qq -e trace=getsockopt,close -o "$TMP/root-shim.txt" \
        env MESHD_SOCKET="$OSOCK" LD_PRELOAD="$LIB" "$FRAG" 200000 25 hold >"$TMP/own-root.out" 2>&1 &
    SPID=$!
    PIDS+=("$SPID")
    RPID=
    if wait_for "$BOUND" peer_refused &&
        RPID=$(pgrep -P "$SPID" | head -1) &&
        ! registered "$OSOCK" "$RPID" &&
        [ "$(timeout "$CTL_TIMEOUT" "$MESHCTL" --socket "$OSOCK" ps --json | json_get /dev/stdin 'len(j)')" = 1 ]; then
        pass "own socket: root's shim saw peer uid 65534 and did not register"
    else
        fail "own socket: root's shim: $(grep SO_PEERCRED "$TMP/root-shim.txt" | head -2); $(timeout "$CTL_TIMEOUT" "$MESHCTL" --socket "$OSOCK" ps 2>&1)"
    fi
    [ -z "$RPID" ] || kill -TERM "$RPID" 2>/dev/null || true
    kill -TERM "$SPID" 2>/dev/null || true
    wait_exit "$SPID"
fi
stop_frag "$NPID"
kill -TERM "$OPID"
wait_exit "$OPID"
if [ $rc = 0 ] && ! grep -qi 'permission denied\|cannot read' "$TMP/meshd.log"; then
    pass "nobody meshd: clean exit, nothing it needed was refused"
else
    fail "nobody meshd: exit $rc: $(cat "$TMP/meshd.log")"
fi

if [ "$FAILED" != 0 ]; then
    echo "--- meshd log"
    cat "$TMP/meshd.log"
    exit 1
fi
echo "privilege: all passed"
