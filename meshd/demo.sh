#!/usr/bin/env bash
# The main job (make demo): a private meshd, a fragmenting program and redis-server under
# the shim, compacted with meshctl mesh; one summary (heap, live, RSS before and after, ratio,
# compaction time, whether a request overran the hold budget) and whether every survivor checked out, then
# everything stopped again.
# Nothing here depends on how fast the machine is: each step waits for its event (bounded
# by BOUND seconds) and the fragmenter holds its heap until compaction has settled.
set -euo pipefail
# The integration tests' helpers: private $TMP, $SOCK, start_meshd, ctl, wait_for, release,
# wait_exit, and everything in PIDS stopped on exit.
# shellcheck source=tests/integration/lib.sh source-path=SCRIPTDIR/..
source "$(dirname "$0")/../tests/integration/lib.sh"
trap 'exit 130' INT TERM # the EXIT trap (cleanup) runs then too

# listed PID: meshctl ps lists PID.
listed() { ctl ps --json 2>/dev/null | grep -q "\"pid\": *$1\b"; }

wait_registered() { # pid
    wait_for "$BOUND" listed "$1" && return 0
    echo "demo: process $1 did not register with meshd" >&2
    return 1
}

# stats PID FIELD: one field of meshctl stats --json.
stat() { ctl stats "$1" --json | json_field "$2"; }
json_field() { /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# Explicit rounds (meshctl mesh, up to 4096 pairs each) until one meshes fewer than 64
# pairs; meshd's automatic policy would get there on its own, a round every min_interval.
# Appends each round's line to $TMP/rounds.<pid>; sets ROUNDS and SECONDS_TAKEN.
compact() { # pid
    local out meshed t0
    t0=$(date +%s.%N)
    ROUNDS=0
    for _ in $(seq 1 16); do
        out=$(ctl mesh "$1")
        echo "$out" >>"$TMP/rounds.$1"
        ROUNDS=$((ROUNDS + 1))
        meshed=$(sed -n 's/.* \([0-9]*\) meshed.*/\1/p' <<<"$out")
        [ "${meshed:-0}" -ge 64 ] || break
    done
    SECONDS_TAKEN=$(/usr/bin/python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" \
        "$t0" "$(date +%s.%N)")
}

# measure PID NAME: heap, live and RSS before, compaction, the same after; one summary row
# (NAME heap0 heap1 live rss0 rss1 seconds rounds) appended to $TMP/summary.
measure() {
    local heap0 live rss0
    wait_registered "$1"
    heap0=$(stat "$1" heap_bytes) live=$(stat "$1" live_bytes) rss0=$(rss_kib "$1")
    compact "$1"
    echo "  compacted: $ROUNDS rounds of meshctl mesh $1 in $SECONDS_TAKEN s"
    echo "$2 $heap0 $(stat "$1" heap_bytes) $live $rss0 $(rss_kib "$1") $SECONDS_TAKEN $ROUNDS" >>"$TMP/summary"
}

CHECKS=() # "ok" or "FAILED" per program whose survivors were checked, with what was checked

echo "== meshd on $SOCK"
start_meshd || { echo "demo: meshd did not start: $(cat "$TMP/meshd.log")" >&2; exit 1; }

echo "== fragmenter under libmesh (400000 objects, 25% kept, held until compacted)"
MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB "$FRAG" 400000 25 hold >"$TMP/frag.out" 2>&1 &
frag=$!
PIDS+=("$frag")
wait_for "$BOUND" grep -q 'holding until SIGUSR1' "$TMP/frag.out" ||
    { echo "demo: the fragmenter did not fragment its heap: $(cat "$TMP/frag.out")" >&2; exit 1; }
measure "$frag" fragmenter
# Compaction has settled: the fragmenter may check its survivors, free all and exit.
release "$frag"
wait_exit "$frag"
if [ "$rc" = 0 ] && grep -q 'survivors verified: ok' "$TMP/frag.out"; then
    CHECKS+=("fragmenter: every surviving object byte for byte ok")
else
    CHECKS+=("fragmenter: FAILED (exit $rc): $(tail -n 1 "$TMP/frag.out")")
fi

# The redis workload, deterministic: `load` writes 200,000 keys of 16-400 bytes, then
# deletes 75% at random (a fragmented heap); `check PORT` reads back every key that must be
# left and prints how many there are, or fails on the first wrong or missing value.
redis_workload() {
    /usr/bin/python3 - "$@" <<'PY'
import random, subprocess, sys
rng = random.Random(7)
sizes = [rng.randint(16, 400) for _ in range(200000)]
kept = [i for i in range(200000) if rng.random() >= 0.75]
if sys.argv[1] == "load":
    def cmd(*args):
        return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    out = sys.stdout.buffer
    for i, n in enumerate(sizes):
        out.write(cmd(b"SET", b"key:%d" % i, b"v" * n))
    for i in sorted(set(range(200000)) - set(kept)):
        out.write(cmd(b"DEL", b"key:%d" % i))
else:
    port = sys.argv[2]
    size = subprocess.run(["redis-cli", "-p", port, "dbsize"], capture_output=True, text=True).stdout.split()
    assert size == [str(len(kept))], "dbsize %s, want %d" % (size, len(kept))
    for at in range(0, len(kept), 5000):
        part = kept[at:at + 5000]
        got = subprocess.run(["redis-cli", "-p", port, "--raw", "MGET"] + ["key:%d" % i for i in part],
                             capture_output=True, text=True, check=True).stdout.split("\n")
        for i, v in zip(part, got):
            assert v == "v" * sizes[i], "key:%d is wrong" % i
    print(len(kept))
PY
}

if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    port=$((20000 + RANDOM % 20000))
    echo "== redis-server under libmesh on port $port (200,000 keys of 16-400 bytes, then 75% deleted)"
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB redis-server --port "$port" --save '' --appendonly no \
        --dir "$TMP" >"$TMP/redis.log" 2>&1 &
    redis=$!
    PIDS+=("$redis")
    wait_for "$BOUND" redis-cli -p "$port" ping >/dev/null 2>&1 ||
        { echo "demo: redis-server did not start: $(cat "$TMP/redis.log")" >&2; exit 1; }
    redis_workload load | redis-cli -p "$port" --pipe >/dev/null
    # The shim registers from an allocation a second after start or once its heap holds
    # 16 MiB: the load above does both, so the registration is waited for only now.
    measure "$redis" redis-server
    if keys=$(redis_workload check "$port" 2>"$TMP/redis.check"); then
        CHECKS+=("redis-server: all $keys keys left read back intact")
    else
        CHECKS+=("redis-server: FAILED: $(tail -n 1 "$TMP/redis.check")")
    fi
else
    echo "== redis-server: not installed, skipped"
fi

echo "== meshctl ps"
ctl ps

echo "== summary (MiB; ratio = heap before / heap after)"
/usr/bin/python3 - "$TMP/summary" <<'PY'
import sys
M = 2**20
print("  %-13s %17s %8s %17s %6s %12s" % ("program", "heap before->after", "live", "RSS before->after", "ratio", "compaction"))
for line in open(sys.argv[1]):
    name, h0, h1, live, r0, r1, secs, rounds = line.split()
    h0, h1, live, r0, r1 = int(h0) / M, int(h1) / M, int(live) / M, int(r0) / 1024, int(r1) / 1024
    print("  %-13s %7.1f -> %6.1f %8.1f %7.1f -> %6.1f %5.2fx %6s s, %2s rounds" % (
        name, h0, h1, live, r0, r1, h0 / h1 if h1 else 0, secs, rounds))
PY
# Every round goes to the process in requests sized to hold_budget_ms at the barrier cost
# per pair measured so far; meshd logs each round's "longest request N us".  Longer than
# the budget: pairs got dearer mid-round (a busy machine), and the next requests shrank.
hold_us=$(ctl policy | awk -F= '$1 == "hold_budget_ms" { printf "%d", $2 * 1000 }')
longest=$(sed -n 's/.* longest request \([0-9]*\) us.*/\1/p' "$TMP/meshd.log" | sort -n | tail -1)
if [ -n "$longest" ] && [ -n "$hold_us" ] && [ "$longest" -gt "$hold_us" ]; then
    echo "  note: a request held the barrier ${longest} us, over hold_budget_ms (${hold_us} us):"
    echo "  pairs cost more than measured before (a busy machine); meshd made the next requests smaller"
fi
if grep -qh 'budget=' "$TMP"/rounds.* 2>/dev/null; then
    echo "  note: the mapping budget refused some pairs (budget=N in the rounds' lines)"
fi
for c in "${CHECKS[@]}"; do echo "  $c"; done
case "${CHECKS[*]}" in
*FAILED*)
    echo "== NOT every survivor checked out; meshd and the programs are stopped"
    exit 1
    ;;
esac
echo "== every survivor checked out; meshd and the programs are stopped"
