#!/usr/bin/env bash
# Hostile local users (issue 11): uid nobody and a second uid (65532; numeric uids need no
# passwd entry) attack a private meshd, one attack after another, while root and a third
# uid (65533) each run `meshctl ps` every 100 ms and a real program of root and one of uid
# 65533 stay registered.  Attacks (tests/integration/hostile_users.py):
#   linger    TCP sockets with unsent data and a 10-minute SO_LINGER handed to meshd, with a
#             Register, with a request, several at once, and queued behind a served request
#   register  more registrations than a uid's share (half of them one shared memfd), as
#             nobody and then as uid 65532
#   pipeline  a dense 2^22-record table, StatsRequests about it as fast as meshd answers,
#             and requests pipelined on the registered connection
#   meshdense the dense table again, and a meshing round of it asked for every 0.5 s
#   meshscan  the same with a table of attached spans: every round's plan reads 2^22 records
#             (meshd plans in slices, meshd/planner.h: ps is served in between)
#   idle      200 connections that send nothing
#   metrics   60 idle connections to the metrics endpoint
#   orphan    a Register on a connection whose connecting process has exited (pid reuse)
# Checks: every ps call answers (the latencies are reported, with the share of calls within
# issue 11's 250 ms target; the bound asserted, LATENCY_BOUND, is a generous 10 s that a
# loaded CI box does not reach (4.4 s was the worst seen with stress-ng --cpu 2 and other
# test suites on 2 cores), while an attack that locks meshd up for its whole HOLD (15 s)
# still shows), meshd's RSS stays under 64 MiB, neither program loses
# its registration, another uid's stats are refused, a user's ps lists only their own
# processes, /metrics answers root during the attacks and has no per-process series, and
# meshd's log stays small.
#
#   BUILD=/abs/build bash tests/integration/hostile_users.sh [CASE...]
#
# Cases (default: all): the attacks above, and `isolation` (another uid's stats refused, a
# user's ps lists only their own processes).  The victims, the watchers and the checks on
# the watchers, meshd's RSS, the registrations and the log always run.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases linger register pipeline meshdense meshscan idle metrics orphan isolation
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HU=$HERE/hostile_users.py
PY=/usr/bin/python3 # not a per-user python: every uid here must be able to run it
CLEANUP_SIGNAL=KILL
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)
SECOND=(setpriv --reuid=65532 --regid=65532 --clear-groups)
OTHER=(setpriv --reuid=65533 --regid=65533 --clear-groups)
RSS_BOUND_KIB=$((64 * 1024))
# A sanitized meshd (make SANITIZER=...) keeps freed memory in quarantine (ASan: 256 MiB)
# and shadow besides: its bound still catches growth per connection, not its overhead.
[ -n "${SANITIZER:-}" ] && RSS_BOUND_KIB=$((RSS_BOUND_KIB + 384 * 1024))
LATENCY_BOUND=10.0 # seconds; a lock-out, not a slow machine, must exceed it (see above)
LATENCY_TARGET=0.25 # issue 11's target for a ps call: reported, not asserted
HOLD=${HOLD:-15}

# Other uids reach the socket (meshd makes it 0666) and write their results in $TMP/out.
chmod 755 "$TMP"
mkdir -m 1777 "$TMP/out"

# meshd with a low descriptor limit, where the issue's lock-outs happened.
(ulimit -n 512 && exec env -u LD_PRELOAD "$MESHD" --nice 0 --socket "$SOCK" --metrics 127.0.0.1:0 \
    2>>"$TMP/meshd.log") &
MESHD_PID=$!
PIDS+=("$MESHD_PID")
wait_for "$BOUND" test -S "$SOCK" || die "meshd did not start"
wait_for "$BOUND" grep -q "metrics on http://127.0.0.1:" "$TMP/meshd.log" || die "no metrics endpoint"
PORT=$(sed -n 's#.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*#\1#p' "$TMP/meshd.log")
[ -n "$PORT" ] || die "no metrics port in the log"

# The victims: a program of root and one of the second uid, registered throughout.
(MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB exec "$PROG/idler" 600) >/dev/null 2>&1 &
ROOT_VICTIM=$!
PIDS+=("$ROOT_VICTIM")
("${OTHER[@]}" env MESHD_SOCKET="$SOCK" LD_PRELOAD="$LIB" "$PROG/idler" 600) >/dev/null 2>&1 &
OTHER_VICTIM=$!
PIDS+=("$OTHER_VICTIM")

# run_as WHO COMMAND...: runs COMMAND as root, nobody, second (uid 65532) or other (65533).
run_as() {
    local who=$1
    shift
    case $who in
    root) "$@" ;;
    nobody) "${NOBODY[@]}" "$@" ;;
    second) "${SECOND[@]}" "$@" ;;
    other) "${OTHER[@]}" "$@" ;;
    esac
}

# listed_by WHO PID...: `meshctl ps --json` run as WHO lists every PID.
listed_by() {
    local who=$1
    shift
    run_as "$who" "$MESHCTL" --socket "$SOCK" ps --json >"$TMP/out/listed.json" 2>/dev/null || return 1
    "$PY" -c 'import json,sys
got = {p["pid"] for p in json.load(open(sys.argv[1]))}
sys.exit(0 if all(int(a) in got for a in sys.argv[2:]) else 1)' "$TMP/out/listed.json" "$@"
}
if wait_for "$BOUND" listed_by root "$ROOT_VICTIM" "$OTHER_VICTIM"; then
    pass "root's program $ROOT_VICTIM and uid 65533's program $OTHER_VICTIM registered"
else
    die "the victims did not register: $(cat "$TMP/out/listed.json")"
fi

# RSS sampler: the largest VmRSS seen, in KiB.
(
    max=0
    while kill -0 "$MESHD_PID" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$MESHD_PID/status" 2>/dev/null || echo 0)
        [ "${rss:-0}" -gt "$max" ] && max=$rss && echo "$max" >"$TMP/rss.max"
        sleep 0.2
    done
) &
PIDS+=("$!")
cpu0=$(awk '{print $14 + $15}' "/proc/$MESHD_PID/stat")

# The watchers: root and the third uid, meshctl ps every 100 ms until the attacks are over
# (they stop once $TMP/out/attacks.done exists).
"$PY" "$HU" watch "$SOCK" "$MESHCTL" "$TMP/out/attacks.done" "$TMP/out/watch_root.json" &
WATCH_ROOT=$!
PIDS+=("$WATCH_ROOT")
"${OTHER[@]}" "$PY" "$HU" watch "$SOCK" "$MESHCTL" "$TMP/out/attacks.done" "$TMP/out/watch_other.json" &
WATCH_OTHER=$!
PIDS+=("$WATCH_OTHER")
ATTACKS_START=$SECONDS

# attack WHO ARGS...: one attack as WHO, bounded in time (SIGINT: python says where it
# was; the bound is HOLD + BOUND, so only a hang runs into it); its line goes to the output.
attack() {
    local who=$1
    shift
    if run_as "$who" timeout -s INT $((HOLD + BOUND)) "$PY" "$HU" "$@" >"$TMP/out/attack.out" 2>&1; then
        pass "attack as $who: $(cat "$TMP/out/attack.out")"
    else
        fail "attack $1 as $who did not finish: $(tail -3 "$TMP/out/attack.out"); meshd: $(tail -3 "$TMP/meshd.log")"
    fi
}

if want linger; then attack nobody linger "$SOCK" "$HOLD"; fi
if want register; then
    attack nobody register "$SOCK" 100 "$HOLD"
    if "$PY" -c 'import json,sys
counts = json.loads(open(sys.argv[1]).read().split(": ", 1)[1])
n = sum(v for k, v in counts.items() if k.endswith(" accepted"))
print(n)
sys.exit(0 if 0 < n < 100 else 1)' "$TMP/out/attack.out" >"$TMP/out/n"; then
        pass "uid nobody got only its share of registrations: $(cat "$TMP/out/n") of 100"
    else
        fail "registrations of uid nobody were not capped: $(cat "$TMP/out/attack.out")"
    fi
    attack second register "$SOCK" 60 "$HOLD"
fi
if want pipeline; then attack nobody pipeline "$SOCK" 48 "$HOLD"; fi
if want meshdense; then attack nobody meshdense "$SOCK" "$HOLD"; fi
if want meshscan; then attack nobody meshdense "$SOCK" "$HOLD" attached; fi
if want idle; then attack nobody idle "$SOCK" 200 "$HOLD"; fi

# Metrics: idle connections from nobody while root scrapes (once they are all open: the
# attacker says so, then holds them for HOLD seconds).
scrape() { "$PY" -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=60).read().decode())' "$PORT"; }
if want metrics; then
    "${NOBODY[@]}" "$PY" "$HU" metrics 127.0.0.1 "$PORT" 60 "$HOLD" >"$TMP/out/metrics.out" 2>&1 &
    MET=$!
    PIDS+=("$MET")
    wait_for "$BOUND" grep -q "idle connections open" "$TMP/out/metrics.out" || fail "the metrics attacker did not get going"
    if scrape >"$TMP/out/metrics.txt"; then
        pass "/metrics answered root while nobody held idle connections ($(cat "$TMP/out/metrics.out"))"
    else
        fail "/metrics did not answer while nobody held idle connections"
    fi
    if ! grep -q 'pid="' "$TMP/out/metrics.txt" && grep -q '^meshd_processes ' "$TMP/out/metrics.txt"; then
        pass "/metrics has no per-process series by default"
    else
        fail "/metrics shows per-process series without --metrics-per-process"
    fi
    wait_exit "$MET" $((HOLD + BOUND))
fi

if want orphan; then
    attack nobody orphan "$SOCK"
    if grep -q 'refused: the process that connected has exited' "$TMP/out/attack.out"; then
        pass "a connection outliving its process cannot register (a reused pid takes nothing)"
    else
        fail "a Register on an orphaned connection: $(cat "$TMP/out/attack.out")"
    fi
fi
: >"$TMP/out/attacks.done"
WATCH_SECONDS=$((SECONDS - ATTACKS_START))

# Nothing of one uid shows to another.
if want isolation; then
    if "${NOBODY[@]}" "$MESHCTL" --socket "$SOCK" stats "$OTHER_VICTIM" >/dev/null 2>"$TMP/out/err" ||
        ! grep -q 'permission denied' "$TMP/out/err"; then
        fail "nobody's stats of uid 65533's process: $(cat "$TMP/out/err")"
    else
        pass "nobody is refused the stats of uid 65533's process"
    fi
    if "${OTHER[@]}" "$MESHCTL" --socket "$SOCK" stats "$ROOT_VICTIM" >/dev/null 2>"$TMP/out/err" ||
        ! grep -q 'permission denied' "$TMP/out/err"; then
        fail "uid 65533's stats of root's process: $(cat "$TMP/out/err")"
    else
        pass "uid 65533 is refused the stats of root's process"
    fi
    if "${OTHER[@]}" "$MESHCTL" --socket "$SOCK" ps --json >"$TMP/out/ps_other.json" &&
        "$PY" -c 'import json,sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if [p["pid"] for p in j] == [int(sys.argv[2])] and j[0]["uid"] == 65533 else 1)' \
            "$TMP/out/ps_other.json" "$OTHER_VICTIM"; then
        pass "uid 65533's ps lists its own process and nothing else"
    else
        fail "uid 65533's ps: $(cat "$TMP/out/ps_other.json")"
    fi
fi

# The watchers finish once their current call has (each call bounded, in the watcher).
wait_exit "$WATCH_ROOT"
wait_exit "$WATCH_OTHER"
for who in root other; do
    if "$PY" -c 'import json,sys
w = json.load(open(sys.argv[1]))
bound, target = float(sys.argv[2]), float(sys.argv[3])
within = sum(1 for s in w["latencies"] if s <= target)
print("%d calls, %d failed, p50 %.3f s, p90 %.3f s, p99 %.3f s, max %.3f s; %.1f%% within the "
      "%.0f ms target; slowest (s, at s): %s" % (
    w["calls"], w["nfailures"], w["p50"], w["p90"], w["p99"], w["max"],
    100.0 * within / max(1, w["calls"]), target * 1000, w["slowest (seconds, at)"]))
sys.exit(0 if w["calls"] > 0 and w["nfailures"] == 0 and w["max"] < bound else 1)' \
        "$TMP/out/watch_$who.json" "$LATENCY_BOUND" "$LATENCY_TARGET" >"$TMP/out/watch.txt"; then
        pass "$who's meshctl ps during the attacks: $(cat "$TMP/out/watch.txt")"
    else
        fail "$who's meshctl ps during the attacks: $(cat "$TMP/out/watch.txt") $(cat "$TMP/out/watch_$who.json")"
    fi
done

rss=$(cat "$TMP/rss.max" 2>/dev/null || echo 0)
cpu=$(($(awk '{print $14 + $15}' "/proc/$MESHD_PID/stat") - cpu0))
if [ "$rss" -gt 0 ] && [ "$rss" -lt "$RSS_BOUND_KIB" ]; then
    pass "meshd's RSS peaked at $((rss / 1024)) MiB (bound $((RSS_BOUND_KIB / 1024)) MiB); CPU $((cpu / $(getconf CLK_TCK))) s over ${WATCH_SECONDS} s of attacks"
else
    fail "meshd's RSS peaked at ${rss} KiB (bound ${RSS_BOUND_KIB} KiB)"
fi
if listed_by root "$ROOT_VICTIM" "$OTHER_VICTIM" && listed_by other "$OTHER_VICTIM"; then
    pass "both programs are still registered, and uid 65533 still sees its own"
else
    fail "a program lost its registration: $(cat "$TMP/out/listed.json")"
fi
log=$(stat -c %s "$TMP/meshd.log")
if kill -0 "$MESHD_PID" && [ "$log" -lt 1000000 ]; then
    pass "meshd alive; its log is $log bytes"
else
    fail "meshd dead or its log grew to $log bytes"
fi

[ "$FAILED" = 0 ] || {
    echo "--- meshd log (last 30 lines)"
    tail -30 "$TMP/meshd.log"
    exit 1
}
echo "hostile_users: all passed"
