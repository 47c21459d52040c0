#!/usr/bin/env bash
# The main job (make demo): a private meshd, a fragmenting program and redis-server under
# the shim, meshctl stats before and after compaction, then everything stopped again.
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

show() { # pid label
    ctl stats "$1" --json | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
print("  %-28s heap %8.1f MiB  live %8.1f MiB  meshes %6d  released %8.1f MiB" % (
    sys.argv[1], s["heap_bytes"] / 2**20, s["live_bytes"] / 2**20, s["meshes"],
    s["released_bytes"] / 2**20))' "$2"
}

# Explicit rounds (meshctl mesh, up to 4096 pairs each) until one meshes fewer than 64
# pairs; meshd's automatic policy would get there on its own, a round every min_interval.
compact() { # pid
    local out meshed
    for _ in $(seq 1 16); do
        out=$(ctl mesh "$1")
        echo "  $out"
        meshed=$(sed -n 's/.* \([0-9]*\) meshed.*/\1/p' <<<"$out")
        [ "${meshed:-0}" -ge 64 ] || break
    done
}

rss() { awk '/^VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$1/status"; }

echo "== meshd on $SOCK"
start_meshd || { echo "demo: meshd did not start: $(cat "$TMP/meshd.log")" >&2; exit 1; }

echo "== fragmenter under libmesh (400000 objects, 25% kept, held until compacted)"
MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB "$FRAG" 400000 25 hold >"$TMP/frag.out" 2>&1 &
frag=$!
PIDS+=("$frag")
wait_for "$BOUND" grep -q 'holding until SIGUSR1' "$TMP/frag.out" ||
    { echo "demo: the fragmenter did not fragment its heap: $(cat "$TMP/frag.out")" >&2; exit 1; }
grep -v 'holding until' "$TMP/frag.out"
wait_registered "$frag"
echo "  RSS before: $(rss "$frag")"
show "$frag" "before compaction:"
compact "$frag"
show "$frag" "after compaction:"
echo "  RSS after:  $(rss "$frag")"
# Compaction has settled: the fragmenter may check its survivors, free all and exit.
release "$frag"
wait_exit "$frag"
tail -n 1 "$TMP/frag.out"
[ "$rc" = 0 ] || { echo "demo: the fragmenter failed (exit $rc)" >&2; exit 1; }

if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    port=$((20000 + RANDOM % 20000))
    echo "== redis-server under libmesh on port $port (LRU cache workload, then 75% deleted)"
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB redis-server --port "$port" --save '' --appendonly no \
        --dir "$TMP" >"$TMP/redis.log" 2>&1 &
    redis=$!
    PIDS+=("$redis")
    wait_for "$BOUND" redis-cli -p "$port" ping >/dev/null 2>&1 ||
        { echo "demo: redis-server did not start: $(cat "$TMP/redis.log")" >&2; exit 1; }
    # 200,000 keys of 16-400 bytes, then 75% of them deleted at random: a fragmented heap.
    /usr/bin/python3 - <<'PY' | redis-cli -p "$port" --pipe >/dev/null
import random, sys
def cmd(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
rng = random.Random(7)
out = sys.stdout.buffer
for i in range(200000):
    out.write(cmd(b"SET", b"key:%d" % i, b"v" * rng.randint(16, 400)))
for i in range(200000):
    if rng.random() < 0.75:
        out.write(cmd(b"DEL", b"key:%d" % i))
PY
    # The shim registers from an allocation a second after start or once its heap holds
    # 16 MiB: the load above does both, so the registration is waited for only now.
    wait_registered "$redis"
    echo "  RSS before: $(rss "$redis")"
    show "$redis" "before compaction:"
    compact "$redis"
    show "$redis" "after compaction:"
    echo "  RSS after:  $(rss "$redis")"
    echo "  keys left: $(redis-cli -p "$port" dbsize)"
fi

echo "== meshctl ps"
ctl ps
echo "== done: meshd and the programs are stopped"
