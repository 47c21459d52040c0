#!/usr/bin/env bash
# The main job (make demo): a private meshd, a fragmenting program and redis-server under
# the shim, meshctl stats before and after compaction, then everything stopped again.
set -euo pipefail
BUILD=${BUILD:?set BUILD to the build directory}
LIB=$BUILD/libmesh.so
work=$(mktemp -d /tmp/meshd-demo.XXXXXX)
sock=$work/meshd.sock
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

ctl() { "$BUILD/meshctl" --socket "$sock" "$@"; }

wait_registered() { # pid
    for _ in $(seq 1 100); do
        ctl ps --json 2>/dev/null | grep -q "\"pid\": *$1\b" && return 0
        sleep 0.1
    done
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

echo "== meshd on $sock"
"$BUILD/meshd" --socket "$sock" 2>"$work/meshd.log" &
pids+=($!)
for _ in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.1; done

echo "== fragmenter under libmesh (400000 objects, 25% kept, then idle)"
MESHD_SOCKET=$sock LD_PRELOAD=$LIB "$BUILD/tests/prog/fragmenter" 400000 25 8 &
frag=$!
pids+=("$frag")
sleep 2
wait_registered "$frag"
echo "  RSS before: $(rss "$frag")"
show "$frag" "before compaction:"
compact "$frag"
show "$frag" "after compaction:"
echo "  RSS after:  $(rss "$frag")"

if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    port=$((20000 + RANDOM % 20000))
    echo "== redis-server under libmesh on port $port (LRU cache workload, then 75% deleted)"
    MESHD_SOCKET=$sock LD_PRELOAD=$LIB redis-server --port "$port" --save '' --appendonly no \
        --dir "$work" >"$work/redis.log" 2>&1 &
    redis=$!
    pids+=("$redis")
    for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    wait_registered "$redis"
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
    echo "  RSS before: $(rss "$redis")"
    show "$redis" "before compaction:"
    compact "$redis"
    show "$redis" "after compaction:"
    echo "  RSS after:  $(rss "$redis")"
    echo "  keys left: $(redis-cli -p "$port" dbsize)"
fi

echo "== meshctl ps"
ctl ps
wait "$frag"
echo "== done: meshd and the programs are stopped"
