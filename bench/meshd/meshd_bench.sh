#!/usr/bin/env bash
# meshd's own costs, for make bench:
#  1. CPU time meshd spends per registered process per policy round (20 idle, fragmented
#     processes, policy ticking every second);
#  2. the time from an idle fragmented heap to a compacted one (automatic rounds only:
#     until released_bytes stops growing), and how far the heap fell.
set -euo pipefail
# The integration tests' helpers, the one owner of this preamble (also meshd/demo.sh's):
# private $TMP and $SOCK, start_meshd, ctl, and everything in PIDS stopped on exit.
# shellcheck source=tests/integration/lib.sh source-path=SCRIPTDIR/../..
source "$(dirname "$0")/../../tests/integration/lib.sh"
trap 'exit 130' INT TERM # the EXIT trap (cleanup) runs then too
NPROC=${MESHD_BENCH_PROCS:-20}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
field() { /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

printf 'interval=1\nmin_interval=1\n' >"$TMP/meshd.conf"
start_meshd --config "$TMP/meshd.conf" || { echo "meshd_bench: meshd did not start" >&2; exit 1; }
meshd=$MESHD_PID

# 1. Idle fragmented processes: the first one is timed to compaction.
for i in $(seq 1 "$NPROC"); do
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB \
        "$FRAG" $((i == 1 ? 300000 : 40000)) 25 60 >"$TMP/frag$i.out" &
    PIDS+=($!)
done
first=${PIDS[1]} # PIDS[0] is meshd
for _ in $(seq 1 100); do
    [ "$(ctl ps --json | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" -ge "$NPROC" ] && break
    sleep 0.1
done
# The clock starts when the first program has fragmented its heap and gone idle.
for _ in $(seq 1 300); do grep -q 'after frees' "$TMP/frag1.out" && break; sleep 0.1; done
start=$(date +%s.%N)
heap0=$(ctl stats "$first" --json | field heap_bytes)
last=-1 stable=0 t_done=""
while [ "$stable" -lt 4 ]; do
    sleep 0.5
    rel=$(ctl stats "$first" --json | field released_bytes)
    if [ "$rel" = "$last" ] && [ "$rel" != 0 ]; then
        stable=$((stable + 1))
    else
        stable=0 last=$rel t_done=$(date +%s.%N)
    fi
    /usr/bin/python3 -c "import sys; sys.exit(0 if float('$(date +%s.%N)') - $start < 60 else 1)" || break
done
heap1=$(ctl stats "$first" --json | field heap_bytes)

# 2. meshd CPU per process per round, over 10 s of steady-state ticking.
rounds0=$(grep -c 'round' "$TMP/meshd.log" || true)
c0=$(cpu_ticks "$meshd")
sleep 10
c1=$(cpu_ticks "$meshd")
rounds1=$(grep -c 'round' "$TMP/meshd.log" || true)
hz=$(getconf CLK_TCK)
/usr/bin/python3 - "$start" "$t_done" "$heap0" "$heap1" "$c0" "$c1" "$hz" "$NPROC" "$rounds0" "$rounds1" <<'PY'
import sys
start, done, h0, h1, c0, c1, hz, n, r0, r1 = sys.argv[1:]
start, done = float(start), float(done or start)
h0, h1, c0, c1, hz, n = int(h0), int(h1), int(c0), int(c1), int(hz), int(n)
ticks = 10  # policy ticks in the 10 s window (interval=1)
cpu_ms = (c1 - c0) * 1000.0 / hz
print("| measure | value |\n|---|---:|")
print("| idle fragmented heap to compacted (automatic rounds) | %.1f s |" % (done - start))
print("| heap of that process before -> after | %.1f -> %.1f MiB |" % (h0 / 2**20, h1 / 2**20))
print("| meshd CPU over 10 s with %d registered processes | %.1f ms |" % (n, cpu_ms))
print("| meshd CPU per registered process per policy tick | %.3f ms |" % (cpu_ms / ticks / n))
print("| round log lines in that window | %d |" % (int(r1) - int(r0)))
PY
