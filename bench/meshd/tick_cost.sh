#!/usr/bin/env bash
# meshd's CPU per policy tick and per /metrics scrape against the size of one idle heap
# (issue 16): a private meshd, one `bigheap heap MIB` program per size (touched, fragmented,
# then idle), meshd's CPU time read from /proc/PID/schedstat (nanoseconds):
#   tick:   the policy measuring the process every second (min_interval=0, no round ever
#           due: min_heap_bytes is out of reach), TICKS ticks;
#   scrape: the policy off, GET /metrics with per-process series every 1.1 s (a new
#           summary each time: a list's summary may be 1 s old), SCRAPES scrapes.
# What meshd spends with no process registered is measured the same way and taken off.
#   tick_cost.sh [MIB ...]     (default 100 1024)
set -euo pipefail
# shellcheck source=tests/integration/lib.sh source-path=SCRIPTDIR/../..
source "$(dirname "$0")/../../tests/integration/lib.sh"
trap 'exit 130' INT TERM
TICKS=${TICK_COST_TICKS:-20}
SCRAPES=${TICK_COST_SCRAPES:-20}
PORT=${TICK_COST_PORT:-$((20000 + RANDOM % 20000))}
BIGHEAP=$PROG/bigheap

conf() { printf 'enabled=%s\ninterval=1\nmin_interval=0\nmin_heap_bytes=1000000G\n' "$1" >"$TMP/meshd.conf"; }
cpu_ns() { cut -d' ' -f1 "/proc/$MESHD_PID/schedstat"; }
registered() { ctl stats "$1" >/dev/null 2>&1; }
scrape() { /usr/bin/python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=60).read()' "http://127.0.0.1:$PORT/metrics"; }
reload() { conf "$1"; kill -HUP "$MESHD_PID"; sleep 1.5; }

# meshd's CPU in microseconds per tick (policy on), then per scrape (policy off).
measure() {
    local c0 c1
    reload 1
    c0=$(cpu_ns)
    sleep "$TICKS"
    c1=$(cpu_ns)
    echo $(((c1 - c0) / TICKS / 1000))
    reload 0
    c0=$(cpu_ns)
    for _ in $(seq 1 "$SCRAPES"); do scrape; sleep 1.1; done
    c1=$(cpu_ns)
    echo $(((c1 - c0) / SCRAPES / 1000))
}

conf 0
start_meshd --config "$TMP/meshd.conf" --metrics "127.0.0.1:$PORT" --metrics-per-process ||
    { echo "tick_cost: meshd did not start" >&2; exit 1; }
wait_for "$BOUND" scrape
mapfile -t base < <(measure)
printf '| heap | meshd CPU per tick us | per scrape us | (meshd alone: %s / %s) |\n|---|---|---|---|\n' "${base[0]}" "${base[1]}"
for mib in "${@:-100 1024}"; do
    rm -f "$TMP/stop"
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB "$BIGHEAP" heap "$mib" "$TMP/stop" >"$TMP/bigheap.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_for 600 grep -q '; ready' "$TMP/bigheap.out"
    wait_for "$BOUND" registered "$pid"
    mapfile -t cost < <(measure)
    printf '| %s MiB | %s | %s | |\n' "$mib" "$((cost[0] - base[0]))" "$((cost[1] - base[1]))"
    touch "$TMP/stop"
    wait "$pid" || true
    grep -q 'bigheap: ok' "$TMP/bigheap.out" || { echo "tick_cost: bigheap did not check out" >&2; cat "$TMP/bigheap.out" >&2; }
done
