#!/usr/bin/env bash
# Integration tests for meshd's daemon side: automatic policy rounds, --config and SIGHUP,
# PolicyRequest, the Prometheus endpoint, sd_notify, socket activation and the systemd units.
# A private meshd on a private socket in a private temp dir; everything started here is
# stopped by pid on exit.
#
#   BUILD=/abs/build bash tests/integration/daemon.sh [CASE...]
#
# Cases (default: all): config auto metrics policy busy idlepace cpuwait sigterm activation
# units hysteresis.  auto, metrics, policy, busy, idlepace, cpuwait and sigterm share one daemon (started by the first of them
# that runs); metrics needs auto's automatic round, so it runs auto too.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases config auto metrics policy busy idlepace cpuwait sigterm activation units hysteresis
SRC=$(cd "$(dirname "$0")/../.." && pwd)
chmod 755 "$TMP"
CONF=$TMP/meshd.conf

# A PolicyRequest by hand: Envelope{version=1, policy_request(23){set(1)...}}, framed as a
# u32 little-endian length + payload.  Prints the settings, or "ERROR code message" and
# exits 1.
cat >"$TMP/policy.py" <<'PY'
import socket, struct, sys
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
def field(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data
def parse(buf):
    i, out = 0, []
    while i < len(buf):
        key = 0; shift = 0
        while True:
            b = buf[i]; i += 1; key |= (b & 0x7F) << shift; shift += 7
            if not b & 0x80: break
        num, wt = key >> 3, key & 7
        if wt == 0:
            v = 0; shift = 0
            while True:
                b = buf[i]; i += 1; v |= (b & 0x7F) << shift; shift += 7
                if not b & 0x80: break
        elif wt == 2:
            n = 0; shift = 0
            while True:
                b = buf[i]; i += 1; n |= (b & 0x7F) << shift; shift += 7
                if not b & 0x80: break
            v = buf[i:i + n]; i += n
        else:
            raise SystemExit("unexpected wire type %d" % wt)
        out.append((num, v))
    return out
body = b"".join(field(1, kv.encode()) for kv in sys.argv[2:])
env = b"\x08\x01" + field(23, body)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(60)
s.connect(sys.argv[1])
s.sendall(struct.pack("<I", len(env)) + env)
data = b""
while len(data) < 4 or len(data) < 4 + struct.unpack("<I", data[:4])[0]:
    chunk = s.recv(65536)
    if not chunk:
        raise SystemExit("connection closed")
    data += chunk
for num, v in parse(data[4:4 + struct.unpack("<I", data[:4])[0]]):
    if num == 33:
        for n2, kv in parse(v):
            if n2 == 1:
                print(kv.decode())
    elif num == 40:
        e = dict(parse(v))
        print("ERROR %d %s" % (e.get(1, 0), e.get(2, b"").decode()))
        sys.exit(1)
PY
policy() { timeout 60 python3 "$TMP/policy.py" "$SOCK" "$@"; }

# sd_notify receiver on an abstract socket: one line per datagram into a file, until
# STOPPING=1 (or until cleanup stops it).
NOTIFY_NAME="@meshd-test-$$-$RANDOM"
# ---- (1) settings errors are reported at startup with file:line, exit 2 -------------------
# config_refused WHAT NAME CONTENT PATTERN: meshd started with CONTENT as $TMP/NAME.conf
# exits 2 with a message matching PATTERN.
config_refused() {
    local what=$1 name=$2 pattern=$4 rc=0
    printf '%b' "$3" >"$TMP/$name.conf"
    env -u LD_PRELOAD timeout 60 "$MESHD" --socket "$TMP/x.sock" --config "$TMP/$name.conf" 2>"$TMP/$name.err" || rc=$?
    if [ $rc = 2 ] && grep -q -- "$pattern" "$TMP/$name.err"; then
        pass "$what: exit 2: $(cat "$TMP/$name.err")"
    else
        fail "$what: exit $rc: $(cat "$TMP/$name.err")"
    fi
}

# meshd_niceness START WANT [ARGS...]: meshd started START above this shell's niceness,
# with ARGS, must run at the larger of WANT and that (it only ever lowers its priority).
meshd_niceness() {
    local rel=$1 start=$(($(nice) + $1)) want=$2 sock=$TMP/nice-$1-$2.sock ni=none npid
    shift 2
    [ $start -gt 19 ] && start=19
    local expect=$((want > start ? want : start))
    env -u LD_PRELOAD nice -n "$rel" "$MESHD" --socket "$sock" "$@" 2>>"$TMP/nice.log" &
    npid=$!
    PIDS+=("$npid")
    wait_for "$BOUND" test -S "$sock" && ni=$(ps -o ni= -p "$npid" | tr -d ' ')
    kill -TERM "$npid" 2>/dev/null || true
    wait_exit "$npid"
    if [ "$ni" = "$expect" ]; then
        pass "meshd at niceness $start with ${*:-no --nice}: runs at $ni"
    else
        fail "meshd at niceness $start with ${*:-no --nice}: runs at $ni, expected $expect: $(tail -3 "$TMP/nice.log")"
    fi
}

case_config() {
    config_refused "unknown config key" bad1 '# ok\ninterval=1\nno_such_key=3\n' 'bad1.conf:3: unknown key "no_such_key"'
    config_refused "bad config value" bad2 'min_fragmentation=1.5\n' "bad2.conf:1: bad value"
    printf 'hold_budget_ms=0\n' >"$TMP/bad3.conf"
    printf 'interval=1\nmax_activity=-0.1\n' >"$TMP/bad4.conf"
    rc=0
    env -u LD_PRELOAD timeout 60 "$MESHD" --socket "$TMP/x.sock" --config "$TMP/bad3.conf" 2>"$TMP/err3a" || rc=$?
    rc4=0
    env -u LD_PRELOAD timeout 60 "$MESHD" --socket "$TMP/x.sock" --config "$TMP/bad4.conf" 2>"$TMP/err4a" || rc4=$?
    if [ $rc = 2 ] && grep -q 'bad3.conf:1: bad value "0" for hold_budget_ms: want milliseconds' "$TMP/err3a" &&
        [ $rc4 = 2 ] && grep -q 'bad4.conf:2: bad value "-0.1" for max_activity: want a fraction' "$TMP/err4a"; then
        pass "bad hold_budget_ms / max_activity in the config: exit 2: $(cat "$TMP/err3a")"
    else
        fail "bad hold_budget_ms / max_activity: exit $rc/$rc4: $(cat "$TMP/err3a" "$TMP/err4a")"
    fi
    # The retired pause_budget_ms: refused, saying what replaced it.
    config_refused "retired pause_budget_ms" bad5 'interval=1\npause_budget_ms=50\n' \
        'bad5.conf:2: pause_budget_ms is no longer a setting: .*hold_budget_ms.*duty_ms_per_s'
    # --nice: refused out of range; by default meshd runs at 19; it never raises its priority.
    rc=0
    env -u LD_PRELOAD timeout 60 "$MESHD" --socket "$TMP/x.sock" --nice 20 2>"$TMP/errn" || rc=$?
    if [ $rc = 2 ] && grep -q -- '--nice: expected a niceness from -20 to 19, got "20"' "$TMP/errn" && [ ! -e "$TMP/x.sock" ]; then
        pass "--nice 20 refused: exit 2: $(cat "$TMP/errn")"
    else
        fail "--nice 20: exit $rc: $(cat "$TMP/errn")"
    fi
    meshd_niceness 0 19         # the default
    meshd_niceness 5 3 --nice 3 # asked for a higher priority than it was given: stays
    meshd_niceness 0 12 --nice 12
    rc=0
    env -u LD_PRELOAD timeout 60 "$MESHD" --socket "$TMP/x.sock" --metrics 0.0.0.0:9464 2>"$TMP/err3" || rc=$?
    if [ $rc = 2 ] && grep -q "non-loopback" "$TMP/err3" && [ ! -e "$TMP/x.sock" ]; then
        pass "non-loopback metrics address refused: exit 2"
    else
        fail "non-loopback metrics address: exit $rc: $(cat "$TMP/err3")"
    fi
}

# ---- (2) a daemon with a fast policy, notify socket and metrics ----------------------------
# need_daemon: starts the daemon that auto, metrics, policy, busy and sigterm share, unless
# one of them has already started it.
need_daemon() {
    [ -z "$MESHD_PID" ] || return 0
    # min_spare_cpu=0: the tests run beside others on a loaded machine, whose CPUs are
    # rarely idle; the wait for spare CPU has its own case (cpuwait).  Rounds of one request
    # (16 pairs, the first request's size): with no CPU to spare the duty budget shrinks to
    # a tenth and counts a request's whole time (policy.h), so under stress-ng --cpu 2 each
    # request of a round was followed by up to ~18 s of waiting, and a round of the default
    # 4096 pairs took 89 s and more (512: 40 s, 32 in 3 requests: 36 s), against the bound
    # of case auto (busy CI runs failed there, before and after 7c254ec).
    printf '# fast policy for the test\ninterval=1\nmin_interval=1   # seconds\nmin_spare_cpu=0\nmax_pairs_per_round=16\n' >"$CONF"
    python3 "$SRC/tests/integration/notify_receiver.py" "$NOTIFY_NAME" "$TMP/notify.log" 3600 &
    NOTIFY_PID=$!
    PIDS+=("$NOTIFY_PID")
    wait_for "$BOUND" grep -qs BOUND "$TMP/notify.log" || fail "notify receiver did not start"
    NOTIFY_SOCKET="$NOTIFY_NAME" start_meshd --config "$CONF" --metrics 127.0.0.1:0 --metrics-per-process ||
        die "meshd did not create its socket"
    if wait_for "$BOUND" grep -qs "^READY=1" "$TMP/notify.log"; then
        pass "sd_notify: READY=1 once listening"
    else
        fail "sd_notify: no READY=1: $(cat "$TMP/notify.log")"
    fi
}

# ---- (3) the policy compacts an idle fragmented program without meshctl ----------------
# The fragmenter holds its heap until finish_frag releases it (after metrics and policy).
FRAG_PID=
case_auto() {
    need_daemon
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB "$FRAG" 300000 25 hold >"$TMP/frag.out" 2>&1 &
    FRAG_PID=$!
    PIDS+=("$FRAG_PID")
    released=0
    start=$SECONDS
    while [ $((SECONDS - start)) -lt "$BOUND" ]; do
        if ctl stats "$FRAG_PID" --json >"$TMP/stats.json" 2>/dev/null; then
            released=$(json_get "$TMP/stats.json" "j['released_bytes']")
            # A round goes out in several requests: wait for the first to have ended.
            [ "$released" -gt 0 ] && grep -q "pid $FRAG_PID: automatic round [0-9]*: [0-9]*/" "$TMP/meshd.log" && break
        fi
        sleep 0.2
    done
    if [ "$released" -gt 0 ] && grep -q "pid $FRAG_PID: automatic round [0-9]*: [0-9]*/" "$TMP/meshd.log"; then
        pass "automatic round released $((released >> 10)) KiB in $((SECONDS - start)) s"
        grep "pid $FRAG_PID: automatic round [0-9]*: [0-9]*/" "$TMP/meshd.log" | head -3 | sed 's/^/  /'
    else
        fail "no automatic round released memory within $BOUND s (released_bytes=$released)"
        grep "pid $FRAG_PID:" "$TMP/meshd.log" | tail -15 | sed 's/^/  meshd: /' >&2
    fi
}

# ---- (4) metrics endpoint -----------------------------------------------------------------
case_metrics() {
    PORT=$(sed -n 's#.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*#\1#p' "$TMP/meshd.log")
    if [ -n "$PORT" ] && timeout 120 python3 - "$PORT" "$FRAG_PID" <<'PY'; then
import re, sys, urllib.request
port, pid = sys.argv[1], sys.argv[2]
r = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=60)
ctype = r.headers["Content-Type"]
text = r.read().decode()
assert ctype.startswith("text/plain; version=0.0.4"), ctype
sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\\n])*",?)*\})? (\S+)$')
types, samples = {}, {}
for line in text.splitlines():
    if line.startswith("# TYPE "):
        _, _, name, typ = line.split(" ", 3)
        types[name] = typ
    elif line.startswith("# HELP ") or not line:
        continue
    else:
        m = sample.match(line)
        assert m, "bad line: %r" % line
        float(m.group(5))
        base = re.sub(r"_(sum|count)$", "", m.group(1))
        assert m.group(1) in types or base in types, "no TYPE for %s" % m.group(1)
        samples[line.rsplit(" ", 1)[0]] = float(m.group(5))
assert samples.get("meshd_processes") == 1, samples.get("meshd_processes")
assert types["meshd_rounds_total"] == "counter" and types["meshd_processes"] == "gauge"
assert samples["meshd_rounds_total"] >= 1 and samples["meshd_pairs_meshed_total"] >= 1
assert 'meshd_pairs_rejected_total{reason="budget"}' in samples
heap = [k for k in samples if k.startswith('meshd_heap_bytes{pid="%s",' % pid)]
assert heap and samples[heap[0]] > 0, heap
rel = [k for k in samples if k.startswith('meshd_released_bytes_total{pid="%s",' % pid)]
assert rel and samples[rel[0]] > 0, rel
breaks = [k for k in samples if k.startswith('meshd_map_breaks{pid="%s",' % pid)]
limit = [k for k in samples if k.startswith('meshd_map_limit{pid="%s",' % pid)]
assert breaks and limit and 0 < samples[breaks[0]] <= samples[limit[0]], (breaks, limit)
print("  %d samples, rounds_total %d, pairs_meshed_total %d" % (len(samples),
      samples["meshd_rounds_total"], samples["meshd_pairs_meshed_total"]))
try:
    urllib.request.urlopen("http://127.0.0.1:%s/other" % port, timeout=60)
    raise SystemExit("/other answered")
except urllib.error.HTTPError as e:
    assert e.code == 404
PY
        pass "metrics endpoint: valid exposition, meshd_processes 1"
    else
        fail "metrics endpoint (port '${PORT}')"
    fi
}

# ---- (5) policy over the protocol, and SIGHUP ------------------------------------------
# policy_refused WHAT PATTERN KEY=VALUE...: a PolicyRequest setting these fails with an
# error matching PATTERN.
policy_refused() {
    local what=$1 pattern=$2
    shift 2
    if policy "$@" >"$TMP/refused"; then
        fail "$what accepted: $*"
    elif grep -q -- "$pattern" "$TMP/refused"; then
        pass "$what refused: $(cat "$TMP/refused")"
    else
        fail "$what: $(cat "$TMP/refused")"
    fi
}

case_policy() {
    need_daemon
    if policy >"$TMP/pol0" && grep -qx 'interval=1' "$TMP/pol0" && grep -qx 'min_interval=1' "$TMP/pol0" &&
        grep -qx 'max_activity=0.05' "$TMP/pol0" && grep -qx 'hold_budget_ms=1' "$TMP/pol0" &&
        grep -qx 'duty_ms_per_s=100' "$TMP/pol0" && [ "$(wc -l <"$TMP/pol0")" -ge 12 ]; then
        pass "PolicyRequest{} reads the config's settings"
    else
        fail "PolicyRequest read: $(cat "$TMP/pol0")"
    fi
    policy_refused "unknown key" "^ERROR 22 unknown key" no_such=1
    if policy min_heap_bytes=16M occupancy_cutoff=0.4 >"$TMP/pol2" &&
        grep -qx 'min_heap_bytes=16777216' "$TMP/pol2" && grep -qx 'occupancy_cutoff=0.4' "$TMP/pol2"; then
        pass "root sets the policy at run time"
    else
        fail "set policy: $(cat "$TMP/pol2")"
    fi
    if policy interval=2 max_pairs_per_round=5000 >"$TMP/pol3"; then
        fail "max_pairs_per_round=5000 accepted"
    elif grep -q "^ERROR 22 .*max_pairs_per_round" "$TMP/pol3" && policy >"$TMP/pol3b" &&
        grep -qx 'interval=1' "$TMP/pol3b"; then
        pass "bad value refused, nothing changed: $(cat "$TMP/pol3")"
    else
        fail "bad value: $(cat "$TMP/pol3") / $(cat "$TMP/pol3b")"
    fi
    policy_refused "bad duty_ms_per_s" '^ERROR 22 bad value "fast" for duty_ms_per_s: want milliseconds per second' \
        duty_ms_per_s=fast
    policy_refused "retired pause_budget_ms" '^ERROR 22 pause_budget_ms is no longer a setting' pause_budget_ms=50
    if [ "$(id -u)" = 0 ]; then
        if timeout 60 setpriv --reuid=nobody --regid=nogroup --clear-groups \
            "$SYSPY" "$TMP/policy.py" "$SOCK" interval=3 >"$TMP/pol4"; then
            fail "nobody changed the policy"
        elif grep -q "^ERROR 1 " "$TMP/pol4" && timeout 60 setpriv --reuid=nobody --regid=nogroup \
            --clear-groups "$SYSPY" "$TMP/policy.py" "$SOCK" >/dev/null; then
            pass "non-root may read but not set: $(cat "$TMP/pol4")"
        else
            fail "non-root set: $(cat "$TMP/pol4")"
        fi
    else
        echo "SKIP: non-root policy test needs root"
    fi
    # meshctl policy, once meshctl has it.
    if "$MESHCTL" --help 2>&1 | grep -q policy; then
        if ctl policy >"$TMP/pol5" && grep -qx 'min_heap_bytes=16777216' "$TMP/pol5"; then
            pass "meshctl policy shows the settings"
        else
            fail "meshctl policy: $(cat "$TMP/pol5")"
        fi
    else
        echo "SKIP: meshctl has no policy command yet"
    fi
    # SIGHUP re-reads the file: run-time changes give way to the file's values.
    printf 'interval=2\nmin_interval=1\nmin_fragmentation=0.3\nhold_budget_ms=0.5\nmin_spare_cpu=0\n' >"$CONF"
    kill -HUP "$MESHD_PID"
    if wait_for "$BOUND" grep -q 'reloaded' "$TMP/meshd.log" && policy >"$TMP/pol6" &&
        grep -qx 'interval=2' "$TMP/pol6" && grep -qx 'min_fragmentation=0.3' "$TMP/pol6" &&
        grep -qx 'min_heap_bytes=8388608' "$TMP/pol6"; then
        pass "SIGHUP reloads the config"
    else
        fail "SIGHUP reload: $(cat "$TMP/pol6" 2>/dev/null)"
    fi
    if ctl policy >"$TMP/pol6b" && grep -qx 'hold_budget_ms=0.5' "$TMP/pol6b" &&
        grep -qx 'max_activity=0.05' "$TMP/pol6b"; then
        pass "hold_budget_ms from the config shows in meshctl policy"
    else
        fail "meshctl policy after reload: $(cat "$TMP/pol6b")"
    fi
    if wait_for "$BOUND" grep -q '^RELOADING=1 MONOTONIC_USEC=[0-9]*$' "$TMP/notify.log" &&
        [ "$(grep -c '^READY=1' "$TMP/notify.log")" -ge 2 ]; then
        pass "sd_notify: RELOADING=1 then READY=1 around the reload"
    else
        fail "sd_notify around reload: $(cat "$TMP/notify.log")"
    fi
    printf 'interval=2\nmin_interval=oops\n' >"$CONF"
    kill -HUP "$MESHD_PID"
    if wait_for "$BOUND" grep -q "reload rejected, old settings kept: .*meshd.conf:2: bad value" "$TMP/meshd.log" &&
        policy >"$TMP/pol7" && grep -qx 'min_fragmentation=0.3' "$TMP/pol7" &&
        kill -0 "$MESHD_PID"; then
        pass "a bad config on SIGHUP is rejected, old settings kept"
    else
        fail "bad reload: $(tail -3 "$TMP/meshd.log")"
    fi
}

# finish_frag: releases auto's fragmenter, whose survivors must be intact after automatic
# meshing.
finish_frag() { finish_fragmenter "$FRAG_PID" "$TMP/frag.out" "fragmenter survivors verified after automatic rounds"; }

# ---- (5b') idle programs are paced by idle_duty_ms_per_s, serving ones by duty_ms_per_s ----
# Two python programs with a fragmented heap (a quarter of 200,000 objects kept): one sleeps,
# one spins without allocating (busy, but its heap is quiet: rounds start).  Requests of one
# pair each (hold_budget_ms=0.05 against the 0.1 ms the testing hook adds to every pair), so
# a round's replies soon span a 0.1 s window of the program's CPU time
# (MeshReply.program_cpu_ns) and meshd says its verdict once (it logs verdicts only while
# idle_duty_ms_per_s > duty_ms_per_s).  duty_ms_per_s=500: with the spinner taking a CPU
# the duty shrinks to a tenth and counts each request's whole time, and a request of a
# starved control thread (stress-ng in CI) can take seconds; at 1 and at 10 ms/s the second
# reply came after more than BOUND in CI runs.
cat >"$TMP/pace.py" <<'PY'
import signal, sys, time
junk = [b"%200d" % i for i in range(200000)]
keep = junk[::4]
del junk
open(sys.argv[2], "w").write("ready\n")
if sys.argv[1] == "spin":
    while True:
        pass
signal.pause()
PY
idle_verdict() { grep -q "^meshd: pid $1: program $2 (" "$TMP/meshd.log"; }
case_idlepace() {
    need_daemon
    policy interval=1 min_interval=1 min_fragmentation=0.3 hold_budget_ms=0.05 duty_ms_per_s=500 \
        idle_duty_ms_per_s=1000 min_spare_cpu=0 max_pairs_per_round=4096 >/dev/null ||
        fail "policy for the idle pacing test"
    local who pids=()
    for who in sleep spin; do
        MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB PYTHONMALLOC=malloc MESH_TEST_BARRIER_DELAY_US=100 \
            "$SYSPY" "$TMP/pace.py" "$who" "$TMP/pace-$who.state" >"$TMP/pace-$who.out" 2>&1 &
        pids+=($!)
        PIDS+=($!)
    done
    local sleeper=${pids[0]} spinner=${pids[1]}
    if wait_for "$BOUND" idle_verdict "$sleeper" idle && wait_for "$BOUND" idle_verdict "$spinner" busy &&
        ! idle_verdict "$spinner" idle; then
        pass "a sleeping program's rounds paced as idle, a spinning one's as busy"
        grep -E "^meshd: pid ($sleeper|$spinner): program " "$TMP/meshd.log" | head -2 | sed 's/^/  /'
    else
        fail "idle pacing: no idle verdict for the sleeper ($sleeper) or no busy one for the spinner ($spinner)"
        grep -E "^meshd: pid ($sleeper|$spinner): " "$TMP/meshd.log" | tail -10 | sed 's/^/  meshd: /' >&2
    fi
    kill "$sleeper" "$spinner" 2>/dev/null || true
    wait_exit "$sleeper"
    wait_exit "$spinner"
    policy duty_ms_per_s=100 idle_duty_ms_per_s=500 >/dev/null || fail "policy duty back to the defaults"
}

# ---- (5c) no CPU to spare: automatic rounds and their requests wait -------------------------
# min_spare_cpu=4096 is more idle CPU than any machine has: the wait for it, made certain.
# A fragmenter's heap is left alone while it is in force; min_spare_cpu=0 starts the round;
# raised again, the round's next request waits (no meshes while it is in force); lowered,
# the round goes on.  Its 1-pair requests (hold_budget_ms=0.05) hold at least 2 ms each
# (MESH_TEST_BARRIER_DELAY_US): a round of thousands of pairs outlasts the test's steps
# however fast the machine, and duty_ms_per_s=1000 keeps the duty budget's gaps short
# (with a tenth of it on a busy machine, 9 times a request's time), so that the steps
# see the wait for CPU, not the wait for duty.
meshes_of() { # pid: the process's meshes (meshctl stats), or -1
    ctl stats "$1" --json >"$TMP/cw.json" 2>/dev/null && json_get "$TMP/cw.json" "j['meshes']" || echo -1
}
meshes_above() { [ "$(meshes_of "$1")" -gt "$2" ]; }
case_cpuwait() {
    need_daemon
    policy interval=1 min_interval=1 min_fragmentation=0.3 hold_budget_ms=0.05 duty_ms_per_s=1000 \
        min_spare_cpu=4096 >/dev/null || fail "policy min_spare_cpu=4096"
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB MESH_TEST_BARRIER_DELAY_US=2000 "$FRAG" 300000 25 hold \
        >"$TMP/cw-frag.out" 2>&1 &
    CW_PID=$!
    PIDS+=("$CW_PID")
    if wait_for "$BOUND" grep -q "pid $CW_PID: no CPU to spare ([0-9.]* idle < min_spare_cpu 4096); automatic round waits" "$TMP/meshd.log" &&
        [ "$(meshes_of "$CW_PID")" = 0 ] && ! grep -q "pid $CW_PID: automatic round:" "$TMP/meshd.log"; then
        pass "no CPU to spare: the fragmented heap waits, no round, meshes 0"
        grep "pid $CW_PID: no CPU to spare" "$TMP/meshd.log" | head -1 | sed 's/^/  /'
    else
        fail "no CPU to spare: no wait logged, or meshed ($(meshes_of "$CW_PID"))"
    fi
    policy min_spare_cpu=0 >/dev/null || fail "policy min_spare_cpu=0"
    if wait_for "$BOUND" meshes_above "$CW_PID" 0; then
        pass "min_spare_cpu=0: the round starts ($(meshes_of "$CW_PID") meshes)"
    else
        fail "min_spare_cpu=0: no round within $BOUND s"
    fi
    policy min_spare_cpu=4096 >/dev/null || fail "policy min_spare_cpu=4096 again"
    local m1=-1 m2=-2
    if wait_for "$BOUND" grep -q "pid $CW_PID: no CPU to spare ([0-9.]* idle < min_spare_cpu 4096): the round's next request waits" "$TMP/meshd.log"; then
        # Logged when the next request would have gone: none is in flight from here on.
        m1=$(meshes_of "$CW_PID")
        sleep 2
        m2=$(meshes_of "$CW_PID")
    fi
    if [ "$m1" -gt 0 ] && [ "$m1" = "$m2" ]; then
        pass "a round under way waits for spare CPU: meshes stay $m1 over 2 s"
    else
        fail "round under way: wait not logged or meshes moved ($m1 -> $m2)"
    fi
    policy min_spare_cpu=0 >/dev/null || fail "policy min_spare_cpu=0 again"
    if [ "$m2" -ge 0 ] && wait_for "$BOUND" meshes_above "$CW_PID" "$m2"; then
        pass "the round goes on once the CPU may be used ($(meshes_of "$CW_PID") meshes)"
    else
        fail "the round did not go on after min_spare_cpu=0"
    fi
    policy duty_ms_per_s=100 >/dev/null || fail "policy duty_ms_per_s=100"
    finish_fragmenter "$CW_PID" "$TMP/cw-frag.out" "cpuwait fragmenter survivors verified"
}

# ---- (5b) a heap busy churning is left alone; compacted once it goes quiet ------------------
# churn.py LOG STATE PERIOD_S: builds a fragmented heap (100-byte objects, 1 in 5 kept at
# random), then churns until its first SIGUSR1: 600-byte objects allocated and freed all
# the time, their number a sawtooth of period PERIOD_S (= 2 policy intervals, so live bytes
# at any two ticks differ by about half the churn set) with 500 replaced per 5 ms (however
# few steps a loaded machine allows: two ticks a period apart see the same size).
# PERIOD_S 0 churns like an LRU cache at its limit instead: a FIFO of 32250 objects, each
# step appends 500 new ones (200 bytes on even steps, 1000 on odd) and drops the 500
# oldest, which are of the other size: live bytes stay flat, but the freed slots are never
# the ones allocated next (the shim's foreign-free cache cannot recycle them).  Just before
# it stops churning it counts meshd's "automatic round" lines for its pid in LOG (race-free
# "none while busy"); then it frees the churn set, idles until its second SIGUSR1 and
# checks its survivors.  Progress goes to STATE: "churning", "idle ROUNDS_SEEN", "done
# ok|bad N".  The test decides when each phase has lasted long enough by what meshd did.
cat >"$TMP/churn.py" <<'PY'
import os, random, signal, sys, time
log, state, period = sys.argv[1], sys.argv[2], float(sys.argv[3])
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
def told():
    return signal.SIGUSR1 in signal.sigpending()
def say(msg):
    with open(state, "a") as f:
        f.write(msg + "\n")
def obj(i):
    return i.to_bytes(8, "little") * 12 + bytes(4)
rng = random.Random(7)
objs = [obj(i) for i in range(400000)]
keep = {i: o for i, o in enumerate(objs) if rng.random() < 0.2}
del objs
churn = []
say("churning")
t0 = time.monotonic()
step = 0
while not period and not told():
    churn.extend(bytes(200 if step % 2 == 0 else 1000) for _ in range(500))
    if len(churn) > 32250:
        del churn[:len(churn) - 32250]
    step += 1
    time.sleep(0.005)
last = t0
while period and not told():
    now = time.monotonic()
    target = int(32000 * (((now - t0) / period) % 1.0))
    if len(churn) < target:
        churn.extend(bytes(600) for _ in range(target - len(churn)))
    else:
        del churn[target:]
    # 500 replacements per 5 ms of wall time, however few steps a loaded machine allows
    for _ in range(min(int(500 * max(1.0, (now - last) / 0.005)), len(churn))):
        churn[rng.randrange(len(churn))] = bytes(600)
    last = now
    time.sleep(0.005)
me = "pid %d: automatic round" % os.getpid()
with open(log) as f:
    seen = sum(1 for line in f if me in line)
signal.sigwait({signal.SIGUSR1})
say("idle %d" % seen)
churn.clear()
signal.sigwait({signal.SIGUSR1})
say("done %s %d" % ("ok" if all(o == obj(i) for i, o in keep.items()) else "bad", len(keep)))
PY
# nobody may not reach a python3 under root's home (pyenv): prefer the system's.
SYSPY=python3
[ -x /usr/bin/python3 ] && SYSPY=/usr/bin/python3

# busy_logged PID: meshd has logged that PID's heap is busy.
busy_logged() { grep -q "pid $1: heap busy: activity" "$TMP/meshd.log"; }

# hold_evidence PID: prints "PAIRS REQUESTS NEXT" once a round of PID has sent PAIRS > 16
# pairs in REQUESTS requests, as many as the hold budget asks for when every pair holds the
# barrier >= 100 us (MESH_TEST_BARRIER_DELAY_US): every hold is then longer than
# hold_budget_ms=0.05, so the policy holds each request's whole barrier to it (the shorter
# holds' rule, many runs a request, is test_policy's): the first request is the probe of
# POLICY_PROBE_PAIRS (16), every later one at most 0.05 ms / 0.1 ms, i.e. 1 pair; and the
# round after it started with requests of NEXT <= 1 pair.  Counts, not times: however slow
# the machine, a pair never costs less than the delay.
hold_evidence() {
    local pairs requests next
    read -r pairs requests < <(sed -n "s/^meshd: pid $1: automatic round [0-9]*: [0-9]*\/\([0-9]*\) pairs meshed in \([0-9]*\) requests .*/\1 \2/p" \
        "$TMP/meshd.log" | awk '$1 > 16' | head -1) || return 1
    # A probe of 16 pairs, then about one pair a request: a few carry two, since pairs meshed
    # as a run share one hold and so cost less each (CI saw 4096 pairs in 4080 requests).
    [ -n "${requests:-}" ] && [ "$requests" -ge $((1 + (pairs - 16) * 3 / 4)) ] || return 1
    next=$(sed -n "s/^meshd: pid $1: automatic round: .*, requests of \([0-9]*\) pairs$/\1/p" \
        "$TMP/meshd.log" | sed -n 2p)
    [ -n "$next" ] && [ "$next" -le 1 ] && echo "$pairs $requests $next"
}

case_busy() {
    need_daemon
    # The settings the policy case leaves behind, so that busy also runs on its own.
    # duty_ms_per_s=1000: the requests follow one another as fast as a busy machine allows
    # (the duty budget shrinks without a spare CPU; the split is what this case is about).
    policy interval=1 min_interval=1 min_fragmentation=0.3 hold_budget_ms=0.05 duty_ms_per_s=1000 \
        min_spare_cpu=0 >/dev/null ||
        fail "policy interval=1 for the churn test"
    # MESH_TEST_BARRIER_DELAY_US stretches every pair's barrier (testing hook of the shim) to
    # at least 0.1 ms, so that hold_budget_ms=0.05 fits 1 pair whatever the machine.
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB PYTHONMALLOC=malloc MESH_TEST_BARRIER_DELAY_US=100 \
        "$SYSPY" "$TMP/churn.py" "$TMP/meshd.log" "$TMP/churn.state" 2 \
        >"$TMP/churn.out" 2>&1 &
    CHURN_PID=$!
    PIDS+=("$CHURN_PID")
    wait_for "$BOUND" grep -qs '^churning' "$TMP/churn.state" || fail "churn.py did not start churning"
    # Churning goes on until meshd has called the heap busy and 5 stats polls have seen it.
    busy_polls=0 busy_meshes=0
    start=$SECONDS
    while { [ "$busy_polls" -lt 5 ] || ! busy_logged "$CHURN_PID"; } &&
        [ $((SECONDS - start)) -lt "$BOUND" ] && kill -0 "$CHURN_PID" 2>/dev/null; do
        if ctl stats "$CHURN_PID" --json >"$TMP/cstats.json" 2>/dev/null; then
            busy_polls=$((busy_polls + 1))
            m=$(json_get "$TMP/cstats.json" "j['meshes']")
            [ "$m" -gt "$busy_meshes" ] && busy_meshes=$m
        fi
        sleep 0.5
    done
    release "$CHURN_PID"
    wait_for "$BOUND" grep -qs '^idle' "$TMP/churn.state" || true
    if grep -qx 'idle 0' "$TMP/churn.state" && [ "$busy_polls" -ge 5 ] && [ "$busy_meshes" = 0 ] &&
        busy_logged "$CHURN_PID"; then
        pass "churning heap not compacted: $busy_polls stats polls with meshes 0, no automatic round"
        grep "pid $CHURN_PID: heap busy" "$TMP/meshd.log" | head -1 | sed 's/^/  /'
    else
        fail "churning heap: state '$(tr '\n' ' ' <"$TMP/churn.state")', $busy_polls polls, meshes $busy_meshes"
    fi
    meshes=0
    start=$SECONDS
    while [ $((SECONDS - start)) -lt "$BOUND" ] && kill -0 "$CHURN_PID" 2>/dev/null; do
        if ctl stats "$CHURN_PID" --json >"$TMP/cstats.json" 2>/dev/null; then
            meshes=$(json_get "$TMP/cstats.json" "j['meshes']")
            [ "$meshes" -gt 0 ] && break
        fi
        sleep 0.2
    done
    if [ "$meshes" -gt 0 ] &&
        grep -q "pid $CHURN_PID: automatic round: .* activity 0\.0[0-4]" "$TMP/meshd.log"; then
        pass "quiet heap compacted by the policy: $meshes meshes $((SECONDS - start)) s after churn stopped"
        grep "pid $CHURN_PID: automatic round: " "$TMP/meshd.log" | head -1 | sed 's/^/  /'
    else
        fail "no automatic round after the churn stopped (meshes $meshes)"
    fi
    # Hold budget: once a reply measured the pairs' cost, every request of a round fits
    # hold_budget_ms.  The program holds its heap until a second round has started.
    evidence=
    if wait_for "$BOUND" hold_evidence "$CHURN_PID" >/dev/null; then
        evidence=$(hold_evidence "$CHURN_PID")
    fi
    release "$CHURN_PID"
    wait_exit "$CHURN_PID"
    if [ $rc = 0 ] && grep -q '^done ok' "$TMP/churn.state"; then
        pass "churn.py survivors intact: $(grep '^done' "$TMP/churn.state")"
    else
        fail "churn.py exit $rc: $(cat "$TMP/churn.state" "$TMP/churn.out")"
    fi
    read -r pairs requests next <<<"${evidence:-x x x}"
    if [ -n "$evidence" ]; then
        pass "hold budget: a round of $pairs pairs went in $requests requests (probe, then about 1 pair each); the next round started with requests of $next pairs"
    else
        fail "hold budget: no round split to fit hold_budget_ms=0.05 at >= 0.1 ms a pair"
        grep "pid $CHURN_PID:" "$TMP/meshd.log" | sed 's/^/  /'
    fi

    # The same with a steady churn: live bytes flat, objects freed and allocated all the time
    # (an LRU cache at its memory limit).  The shim's refill_bytes counter must keep it busy:
    # it churns until meshd has called it busy, then goes quiet and is let go.
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB PYTHONMALLOC=malloc \
        "$SYSPY" "$TMP/churn.py" "$TMP/meshd.log" "$TMP/steady.state" 0 \
        >"$TMP/steady.out" 2>&1 &
    STEADY_PID=$!
    PIDS+=("$STEADY_PID")
    if wait_for "$BOUND" grep -qs '^churning' "$TMP/steady.state"; then
        wait_for "$BOUND" busy_logged "$STEADY_PID" || true
    fi
    release "$STEADY_PID"
    wait_for "$BOUND" grep -qs '^idle' "$TMP/steady.state" || true
    release "$STEADY_PID"
    wait_exit "$STEADY_PID"
    if [ $rc = 0 ] && grep -qx 'idle 0' "$TMP/steady.state" && grep -q '^done ok' "$TMP/steady.state" &&
        busy_logged "$STEADY_PID"; then
        pass "steady churn (flat live bytes) not compacted while churning"
        grep "pid $STEADY_PID: heap busy" "$TMP/meshd.log" | head -1 | sed 's/^/  /'
    else
        fail "steady churn: exit $rc, state '$(tr '\n' ' ' <"$TMP/steady.state" 2>/dev/null)'"
    fi
}

# ---- (6) SIGTERM: STOPPING=1, clean exit ---------------------------------------------------
case_sigterm() {
    need_daemon
    kill -TERM "$MESHD_PID"
    rc=0
    wait "$MESHD_PID" || rc=$?
    forget_pid "$MESHD_PID"
    if [ $rc = 0 ] && wait_for "$BOUND" grep -q '^STOPPING=1' "$TMP/notify.log" && [ ! -e "$SOCK" ]; then
        pass "SIGTERM: STOPPING=1, exit 0, socket removed"
    else
        fail "SIGTERM: exit $rc, notify: $(cat "$TMP/notify.log")"
    fi
    wait_exit "$NOTIFY_PID"
}

# ---- (7) socket activation -----------------------------------------------------------------
# activation NAME LAUNCHER...: the launcher binds $ASOCK and runs meshd with LISTEN_FDS=1;
# a shim process must register through it, and meshd must leave the socket file alone.
activation() {
    local name=$1
    shift
    ASOCK=$TMP/act-$name.sock
    "$@" 2>"$TMP/act-$name.log" &
    local apid=$!
    PIDS+=("$apid")
    wait_for "$BOUND" test -S "$ASOCK" || true
    # 100000 objects: a heap large enough that the shim starts its control thread at once.
    MESHD_SOCKET=$ASOCK LD_PRELOAD=$LIB "$FRAG" 100000 50 hold >"$TMP/act-$name.out" 2>&1 &
    local fpid=$!
    PIDS+=("$fpid")
    local ok=0
    # shellcheck disable=SC2016
    if wait_for "$BOUND" sh -c '"$1" --socket "$2" ps --json 2>/dev/null | grep -q "\"pid\": *$3\\b"' \
        _ "$MESHCTL" "$ASOCK" "$fpid" &&
        grep -q 'listening on the socket passed by the service manager' "$TMP/act-$name.log"; then
        ok=1
    fi
    release "$fpid"
    wait_exit "$fpid"
    kill -TERM "$apid" 2>/dev/null || true
    wait_exit "$apid"
    if [ $ok = 1 ] && [ $rc = 0 ] && [ -S "$ASOCK" ]; then
        pass "socket activation ($name): a shim registered through fd 3; socket left in place"
    else
        fail "socket activation ($name): registered=$ok exit=$rc: $(cat "$TMP/act-$name.log")"
    fi
}

case_activation() {
    # Python binds, puts the socket on fd 3 and execs meshd: the pid survives exec, so
    # LISTEN_PID=getpid() is meshd's own pid.
    activation python env -u LD_PRELOAD python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666); s.listen(16)
os.dup2(s.fileno(), 3); os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"; os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], [sys.argv[2], "--socket", sys.argv[1] + ".unused"])
' "$TMP/act-python.sock" "$MESHD"
    if command -v systemd-socket-activate >/dev/null; then
        activation systemd env -u LD_PRELOAD systemd-socket-activate -l "$TMP/act-systemd.sock" "$MESHD"
    else
        echo "SKIP: systemd-socket-activate not installed"
    fi
}

# ---- (8) the units pass systemd-analyze verify ----------------------------------------------
case_units() {
    if command -v systemd-analyze >/dev/null; then
        U=$TMP/units
        mkdir -p "$U/example.service.d"
        sed "s#/usr/local/bin/meshd#$MESHD#" "$SRC/systemd/meshd.service" >"$U/meshd.service"
        cp "$SRC/systemd/meshd.socket" "$U/"
        printf '[Unit]\nDescription=example target\n[Service]\nExecStart=/bin/true\n' >"$U/example.service"
        cp "$SRC/systemd/example-preload.conf" "$U/example.service.d/libmesh.conf"
        rc=0
        (cd "$U" && timeout 300 systemd-analyze verify --man=no meshd.socket meshd.service \
            example.service) >"$TMP/verify.out" 2>&1 || rc=$?
        if [ $rc = 0 ] && [ ! -s "$TMP/verify.out" ] && grep -q '^Type=notify' "$U/meshd.service" &&
            grep -q '^UnsetEnvironment=LD_PRELOAD' "$U/meshd.service"; then
            pass "systemd-analyze verify: meshd.service, meshd.socket, example drop-in"
        else
            fail "systemd-analyze verify (exit $rc): $(cat "$TMP/verify.out")"
        fi
    else
        echo "SKIP: systemd-analyze not installed"
    fi
}

# ---- (9) hysteresis: a compaction started at min_fragmentation goes on below it, round
# after round at the re-arm (0.5 s after the previous round started, or when the duty budget
# allows) rather than every min_interval (4 s) or at the ticks (interval 1 s) ------------------
# The fragmenter holds its heap until the rounds that prove it have happened (or the
# compaction ended, or BOUND passed).  duty_ms_per_s is at its maximum: the pace is not what
# this case is about, and a slow barrier on a loaded machine must not stretch the rounds
# until the test's bound.

# hysteresis_seen PID: sets FRAGS (the fragmentation of each automatic round of PID, in
# order), below (how many of them are under 0.65) and quick (how many the policy let go as
# part of the compaction, min 0.5 s, rather than at min_interval); succeeds once the first
# round was at 0.65 or more and was followed by one below 0.65 and by two quick ones.
hysteresis_seen() {
    local f
    mapfile -t FRAGS < <(sed -n "s/^meshd: pid $1: automatic round: fragmentation \([0-9.]*\),.*/\1/p" "$TMP/hyst.log")
    below=0
    for f in "${FRAGS[@]+"${FRAGS[@]}"}"; do
        awk -v f="$f" 'BEGIN { exit !(f < 0.65) }' && below=$((below + 1))
    done
    quick=$(grep -c "^meshd: pid $1: automatic round: .* since the last round (min 0.5 s, compacting)" "$TMP/hyst.log" || true)
    [ "${#FRAGS[@]}" -ge 2 ] && awk -v f="${FRAGS[0]}" 'BEGIN { exit !(f >= 0.65) }' &&
        [ "$below" -ge 1 ] && [ "$quick" -ge 2 ]
}

# hysteresis_over PID: the check has its answer: seen, or the compaction of PID ended.
hysteresis_over() {
    hysteresis_seen "$1" || grep -q "^meshd: pid $1: \(compaction done\|.*next automatic round in\)" "$TMP/hyst.log"
}

case_hysteresis() {
    HSOCK=$TMP/hyst.sock
    printf 'interval=1\nmin_interval=4\nmin_fragmentation=0.65\nstop_fragmentation=0.1\nduty_ms_per_s=1000\nmin_spare_cpu=0\n' \
        >"$TMP/hyst.conf"
    env -u LD_PRELOAD "$MESHD" --nice 0 --socket "$HSOCK" --config "$TMP/hyst.conf" 2>"$TMP/hyst.log" &
    HMESHD_PID=$!
    PIDS+=("$HMESHD_PID")
    wait_for "$BOUND" test -S "$HSOCK" || fail "hysteresis meshd did not create its socket"
    MESHD_SOCKET=$HSOCK LD_PRELOAD=$LIB "$FRAG" 300000 25 hold >"$TMP/hyst-frag.out" 2>&1 &
    HFRAG_PID=$!
    PIDS+=("$HFRAG_PID")
    wait_for "$BOUND" hysteresis_over "$HFRAG_PID" || true
    release "$HFRAG_PID"
    wait_exit "$HFRAG_PID"
    if [ $rc = 0 ] && grep -q 'survivors verified: ok' "$TMP/hyst-frag.out" &&
        hysteresis_seen "$HFRAG_PID"; then
        pass "hysteresis: first round at fragmentation ${FRAGS[0]}, then $below more below min_fragmentation 0.65, $quick at the re-arm (min 0.5 s) (${FRAGS[*]})"
        grep "^meshd: pid $HFRAG_PID: automatic round: " "$TMP/hyst.log" |
            sed 's/.*fragmentation \([0-9.]*\),.* \([0-9.]* s since the last round (min [0-9.]* s[a-z, ]*)\).*/  \1: \2/'
    else
        fail "hysteresis: exit $rc, rounds at fragmentation: ${FRAGS[*]-none}; $(tail -5 "$TMP/hyst.log")"
    fi
    kill "$HMESHD_PID" 2>/dev/null || true
    wait_exit "$HMESHD_PID"
}

if want config; then case_config; fi
if want auto || want metrics; then case_auto; fi
if want metrics; then case_metrics; fi
if want policy; then case_policy; fi
if [ -n "$FRAG_PID" ]; then finish_frag; fi
if want busy; then case_busy; fi
if want idlepace; then case_idlepace; fi
if want cpuwait; then case_cpuwait; fi
if want sigterm; then case_sigterm; fi
if want activation; then case_activation; fi
if want units; then case_units; fi
if want hysteresis; then case_hysteresis; fi

if [ $FAILED != 0 ]; then
    echo "--- meshd log"
    cat "$TMP/meshd.log"
    exit 1
fi
echo "daemon: all passed"
