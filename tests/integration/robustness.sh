#!/usr/bin/env bash
# Robustness of meshd: restarts, forks, many processes, hostile clients, clients that go
# away mid-request.  A private meshd on a private socket in a private temp dir; everything
# started here is stopped by pid on exit; every step is bounded by a timeout.
#
#   BUILD=/abs/build bash tests/integration/robustness.sh [CASE...]
#
# Cases (default: all): restart fork many hostile midreq bigplan (a meshing round of a table
# too big to plan in one turn of meshd's loop, answered by a forged shim).  The fragmenter that restart
# starts (and the others use) is held until the end, then verifies its survivors.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases restart fork many hostile midreq bigplan
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOSTILE=$HERE/hostile.py
CLEANUP_SIGNAL=KILL

# listed PID...: succeeds if meshctl ps --json lists every pid given.
listed() {
    ctl ps --json >"$TMP/ps.json" 2>/dev/null || return 1
    python3 -c 'import json,sys
got = {p["pid"] for p in json.load(open(sys.argv[1]))}
sys.exit(0 if all(int(a) in got for a in sys.argv[2:]) else 1)' "$TMP/ps.json" "$@"
}

# wait_listed PID...: polls until every pid is listed (at most BOUND s).
wait_listed() { wait_for "$BOUND" listed "$@"; }

# count_listed FILE: how many of the pids in FILE (one a line) meshctl ps --json lists.
count_listed() {
    ctl ps --json >"$TMP/ps.json" 2>/dev/null || {
        echo -1
        return
    }
    python3 -c 'import json,sys
got = {p["pid"] for p in json.load(open(sys.argv[1]))}
want = {int(l) for l in open(sys.argv[2]) if l.strip()}
print(len(got & want))' "$TMP/ps.json" "$1"
}

meshd_alive() { [ -n "$MESHD_PID" ] && kill -0 "$MESHD_PID" 2>/dev/null; }

# start_answering_meshd: start_meshd, then waits for it to answer ps.
start_answering_meshd() { start_meshd && wait_for "$BOUND" ctl ps >/dev/null 2>&1; }

# stop_meshd SIGNAL: stops meshd and waits for it (BOUND s, then SIGKILL).
stop_meshd() {
    kill "-$1" "$MESHD_PID" 2>/dev/null || true
    wait_exit "$MESHD_PID"
    MESHD_PID=
    return $rc
}

# preload PROG ARGS...: starts a program under the shim in the background; its pid is
# appended to PIDS (exec keeps the pid: the one meshd sees is the one we kill).
preload() {
    (MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB exec "$@") &
    PIDS+=("$!")
}

# meshd must be alive and answer ps after each hostile step (a hang fails the ctl after
# CTL_TIMEOUT s; how fast it answers depends on the machine and is not checked).
healthy() {
    if meshd_alive && ctl ps --json >/dev/null; then
        pass "meshd alive and answering after $*"
    else
        fail "meshd dead or unresponsive after $*"
    fi
}

start_answering_meshd || die "meshd did not start"

# ---- (a) meshd restarted: the shim reconnects and registers again ------------------------
# need_frag: the fragmenter that restart, hostile and midreq use, registered and holding
# its fragmented heap until finish_frag.
FRAG_PID=
need_frag() {
    [ -z "$FRAG_PID" ] || return 0
    preload "$PROG/fragmenter" 200000 25 hold >"$TMP/frag.out" 2>&1
    FRAG_PID=${PIDS[-1]}
    if wait_listed "$FRAG_PID"; then
        pass "(a) fragmenter (pid $FRAG_PID) registered"
    else
        fail "(a) fragmenter did not register within $BOUND s"
    fi
    wait_for "$BOUND" grep -q 'holding until' "$TMP/frag.out" || fail "(a) fragmenter did not fragment its heap"
}

case_restart() {
    need_frag
    if stop_meshd TERM; then
        pass "(a) meshd stopped by SIGTERM"
    else
        fail "(a) meshd did not exit cleanly on SIGTERM"
    fi
    # Let the shim notice and back off a little before meshd comes back.
    sleep 1
    t0=$(date +%s.%N)
    if start_answering_meshd && wait_listed "$FRAG_PID"; then
        pass "(a) fragmenter registered again with the new meshd after $(python3 -c "import sys,time; print('%.1f' % (time.time() - float(sys.argv[1])))" "$t0") s"
        if ctl mesh "$FRAG_PID" >"$TMP/mesh.out" 2>&1 && grep -q "meshed" "$TMP/mesh.out"; then
            pass "(a) meshctl mesh after the restart: $(cat "$TMP/mesh.out")"
        else
            fail "(a) meshctl mesh after the restart: $(cat "$TMP/mesh.out")"
        fi
    else
        fail "(a) fragmenter not registered again within $BOUND s of the restart"
    fi
}

# finish_frag: the fragmenter lets go of its heap and must find its survivors intact.
finish_frag() {
    finish_fragmenter "$FRAG_PID" "$TMP/frag.out" \
        "(a) fragmenter survivors verified after restart, meshing and hostile clients"
}

# ---- (b) a fork child registers as itself ------------------------------------------------
case_fork() {
    preload "$PROG/forker" hold >"$TMP/forker.out" 2>&1
    FORKER_PID=${PIDS[-1]}
    CHILD_PID=
    wait_for "$BOUND" grep -q '^child [0-9]*$' "$TMP/forker.out" || true
    CHILD_PID=$(sed -n 's/^child \([0-9]*\)$/\1/p' "$TMP/forker.out")
    if [ -n "$CHILD_PID" ] && wait_listed "$FORKER_PID" "$CHILD_PID"; then
        pass "(b) parent $FORKER_PID and fork child $CHILD_PID both registered"
        if ctl stats "$CHILD_PID" --json >"$TMP/child.json" &&
            python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["pid"] == int(sys.argv[2]) and j["heap_bytes"] > 0 else 1)' \
                "$TMP/child.json" "$CHILD_PID"; then
            pass "(b) stats of the fork child are its own"
        else
            fail "(b) stats of the fork child: $(cat "$TMP/child.json")"
        fi
    else
        fail "(b) parent $FORKER_PID / child ${CHILD_PID:-?} not both listed: $(cat "$TMP/ps.json")"
    fi
    # The child is the parent's to reap; the parent waits for it, then checks its own data.
    [ -z "$CHILD_PID" ] || release "$CHILD_PID"
    release "$FORKER_PID"
    wait_exit "$FORKER_PID"
    if [ "$rc" = 0 ] && grep -q 'forker: ok' "$TMP/forker.out"; then
        pass "(b) forker parent and child ended with their data intact"
    else
        fail "(b) forker exit $rc: $(cat "$TMP/forker.out")"
    fi
}

# ---- (c) 200 registered processes at once ------------------------------------------------
# The idlers sleep far longer than the case can take; they are killed at its end.
all_listed() { [ "$(count_listed "$TMP/many.pids")" -ge "$N" ]; }
none_listed() { [ "$(count_listed "$TMP/many.pids")" = 0 ]; }
case_many() {
    N=200
    : >"$TMP/many.pids"
    t0=$SECONDS
    for _ in $(seq $N); do
        preload "$PROG/idler" 3600 >/dev/null 2>&1
        echo "${PIDS[-1]}" >>"$TMP/many.pids"
    done
    if wait_for "$BOUND" all_listed; then
        pass "(c) $N of $N processes registered within $((SECONDS - t0)) s"
    else
        fail "(c) only $(count_listed "$TMP/many.pids") of $N processes registered within $BOUND s"
    fi
    start=$(date +%s%N)
    if ctl ps >/dev/null && ctl ps --json >/dev/null && ctl stats "${PIDS[-1]}" >/dev/null; then
        pass "(c) ps, ps --json and stats with $N processes took $((($(date +%s%N) - start) / 1000000)) ms together"
    else
        fail "(c) meshctl failed with $N processes registered"
    fi
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$TMP/many.pids"
    while read -r pid; do
        wait "$pid" 2>/dev/null || true
        forget_pid "$pid"
    done <"$TMP/many.pids"
    t0=$SECONDS
    if wait_for "$BOUND" none_listed; then
        pass "(c) all $N forgotten within $((SECONDS - t0)) s of being killed"
    else
        fail "(c) $(count_listed "$TMP/many.pids") of $N still listed $BOUND s after being killed"
    fi
}

# ---- (d) hostile clients -----------------------------------------------------------------
# watch_same: the watched process is listed with the same stats as at the start.
watch_same() {
    ctl stats "$WATCH_PID" --json >"$TMP/watch1.json" 2>&1 &&
        python3 -c 'import json,sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
k = ("pid", "heap_bytes", "live_bytes", "classes")
sys.exit(0 if all(a[x] == b[x] for x in k) and b["heap_bytes"] > 0 else 1)' "$TMP/watch0.json" "$TMP/watch1.json"
}
WATCH_PID= # set by case_hostile
after_hostile() {
    healthy "$*"
    [ -n "$WATCH_PID" ] || return 0
    if watch_same; then
        pass "(d) watched process still listed, stats unchanged, after $*"
    else
        fail "(d) watched process after $*: $(cat "$TMP/watch1.json")"
    fi
}

case_hostile() {
    # A real process registered throughout, whose heap does not change: its stats must not.
    # It sleeps far longer than the case takes and is stopped by cleanup.
    preload "$PROG/idler" 3600 >/dev/null 2>&1
    WATCH_PID=${PIDS[-1]}
    if wait_listed "$WATCH_PID" && ctl stats "$WATCH_PID" --json >"$TMP/watch0.json"; then
        pass "(d) watched process $WATCH_PID registered"
    else
        fail "(d) watched process did not register"
    fi

    # (i)-(iii) garbage, oversized and truncated frames, and other protocol violations
    if timeout 600 python3 "$HOSTILE" garbage "$SOCK" >"$TMP/garbage.out" 2>&1; then
        pass "(d i-iii) $(grep -c '^  ok' "$TMP/garbage.out") bad frames each cost only their connection"
    else
        fail "(d i-iii) bad frames:"
        cat "$TMP/garbage.out"
    fi
    after_hostile "bad frames"

    # (iv) 300 idle connections held open while meshctl works
    rm -f "$TMP/idle.ready"
    python3 "$HOSTILE" idle "$SOCK" 300 "$TMP/idle.ready" >"$TMP/idle.out" 2>&1 &
    IDLE_PID=$!
    PIDS+=("$IDLE_PID")
    wait_for "$BOUND" test -s "$TMP/idle.ready" || true
    if [ -s "$TMP/idle.ready" ] && ctl ps >/dev/null && watch_same; then
        pass "(d iv) meshctl ps and stats work with 300 idle connections open"
    else
        fail "(d iv) with 300 idle connections: $(cat "$TMP/idle.out")"
    fi
    kill "$IDLE_PID" 2>/dev/null || true
    wait_exit "$IDLE_PID"
    after_hostile "300 idle connections"

    # (iv, more) 1100 idle connections: more than meshd's connection limit of 1024
    rm -f "$TMP/idle.ready"
    python3 "$HOSTILE" idle "$SOCK" 1100 "$TMP/idle.ready" >"$TMP/idle.out" 2>&1 &
    IDLE_PID=$!
    PIDS+=("$IDLE_PID")
    wait_for "$BOUND" test -s "$TMP/idle.ready" || true
    if ctl ps >/dev/null 2>"$TMP/err.txt"; then
        pass "(d iv) meshctl ps works while one client holds 1100 idle connections"
    else
        fail "(d iv) one local client holding 1100 idle connections locks everyone else out" \
            "(meshctl and shims): $(cat "$TMP/err.txt")"
    fi
    kill "$IDLE_PID" 2>/dev/null || true
    wait_exit "$IDLE_PID"
    after_hostile "1100 idle connections"

    # (v), (vi) forged span tables: absurd headers, hostile records, a table scribbled on while
    # meshd reads it, and a "shim" that answers MeshRequests with nonsense
    if timeout 600 python3 "$HOSTILE" forge "$SOCK" "$MESHCTL" "$WATCH_PID" >"$TMP/forge.out" 2>&1; then
        pass "(d v-vi) $(grep -c '^  ok' "$TMP/forge.out") forged-table checks"
    else
        fail "(d v-vi) forged tables:"
    fi
    grep -E '^  BAD |scribbled on \(|Traceback|Error' "$TMP/forge.out" || true
    after_hostile "forged span tables"

    # A table of 2^22 records that is all hole, and a client that pipelines requests against it
    if timeout 600 python3 "$HOSTILE" bigtable "$SOCK" "$MESHCTL" "$MESHD_PID" 40 >"$TMP/big.out" 2>&1; then
        pass "(d) $(grep -c '^  ok' "$TMP/big.out") checks with a 512 MiB all-hole table"
    else
        fail "(d) 512 MiB all-hole table:"
    fi
    grep -E '^  (ok|BAD) |Traceback|Error' "$TMP/big.out" || true
    after_hostile "a 512 MiB all-hole table"

    # One connection that writes 1 MiB of ListRequests (~116k) and never reads: meshd answers
    # one of them and closes it, and meanwhile everyone else is served.
    timeout 600 python3 "$HOSTILE" flood "$SOCK" 116000 >"$TMP/flood.out" 2>&1 &
    FLOOD_PID=$!
    PIDS+=("$FLOOD_PID")
    wait_for "$BOUND" grep -q '^  flooding' "$TMP/flood.out" || true
    start=$(date +%s%N)
    if ctl ps >/dev/null; then
        pass "(d) meshctl ps took $((($(date +%s%N) - start) / 1000000)) ms while a client floods requests"
    else
        fail "(d) meshctl ps failed while a client floods requests"
    fi
    wait_exit "$FLOOD_PID"
    after_hostile "a flood of pipelined requests"
}

# ---- (e) clients that go away mid-request ------------------------------------------------
case_bigplan() {
    if timeout 600 python3 "$HOSTILE" bigplan "$SOCK" "$MESHCTL" >"$TMP/bigplan.out" 2>&1; then
        pass "(f) a round planned over several slices: $(grep -o 'the plan: [0-9]* pairs in [0-9]* requests' "$TMP/bigplan.out"), $(grep 'marked background' "$TMP/bigplan.out" | grep -o '[0-9]* of [0-9]*$') background (meshctl waits), answered, meshctl mesh got the result"
    else
        fail "(f) a round planned over several slices:"
        cat "$TMP/bigplan.out"
    fi
    healthy "a round planned over several slices"
}

case_midreq() {
    need_frag
    if timeout 600 python3 "$HOSTILE" midreq "$SOCK" "$FRAG_PID" >"$TMP/midreq.out" 2>&1; then
        pass "(e) requests whose sender went away: $(grep -c '^  ok' "$TMP/midreq.out") cases"
    else
        fail "(e) requests whose sender went away:"
        cat "$TMP/midreq.out"
    fi
    after_hostile "clients that went away mid-request"
    # The fragmenter must still answer a meshing round (a round may still be in flight: retry).
    ok=0
    start=$SECONDS
    while [ $((SECONDS - start)) -lt "$BOUND" ]; do
        if ctl mesh "$FRAG_PID" >"$TMP/mesh.out" 2>&1; then
            ok=1
            break
        fi
        grep -q 'already running' "$TMP/mesh.out" || break
        sleep 0.5
    done
    if [ $ok = 1 ]; then
        pass "(e) meshctl mesh still works: $(cat "$TMP/mesh.out")"
    else
        fail "(e) meshctl mesh after abandoned requests: $(cat "$TMP/mesh.out")"
    fi
}

if want restart; then case_restart; fi
if want fork; then case_fork; fi
if want many; then case_many; fi
if want hostile; then case_hostile; fi
if want midreq; then case_midreq; fi
if want bigplan; then case_bigplan; fi

# ---- the programs under the shim ended well ----------------------------------------------
if [ -n "$FRAG_PID" ]; then finish_frag; fi
if meshd_alive && stop_meshd TERM; then
    pass "meshd exits cleanly on SIGTERM at the end"
else
    fail "meshd was not alive at the end, or did not exit cleanly"
fi

echo "robustness: $SECONDS s"
if [ $FAILED != 0 ]; then
    echo "--- meshd log (last 40 lines)"
    tail -40 "$TMP/meshd.log"
    exit 1
fi
echo "robustness: all passed"
