#!/usr/bin/env bash
# Fragmentation benchmarks: peak RSS, RSS after idle, how fast it gets there, and time of
# fragmenting workloads (Redis as an LRU cache, delete-heavy Redis, a Robson-style
# fragmenter, Python) under glibc, jemalloc, mimalloc, tcmalloc, libmesh without meshd
# (libmesh), libmesh with a private meshd running its default policy (libmesh+meshd: the
# product as a service runs it), and libmesh with a private meshd whose automatic rounds
# are off, driven by explicit `meshctl mesh` rounds during the idle phase (libmesh+rounds).
# Runs are interleaved (for each repetition, for each workload, for each allocator); RSS
# is sampled every 0.25 s.  The redis-latency workload is different: Redis under
# redis-benchmark (SET and GET: one client, 50, 50 pipelined) on a fragmented dataset, libmesh with
# meshd compacting it against libmesh with no meshd listening (see run_redis_latency).
#
#   BUILD=/abs/build bash bench/frag/run.sh [WORKLOAD...]     (make bench-frag)
#
# Workloads: redis-lru redis-del robson python redis-latency (default: all).
# Knobs (environment):
#   BENCH_FRAG_QUICK=1        smaller workloads, no extra timing runs: a ~12-minute smoke run
#   BENCH_FRAG_ONLY="..."     workloads to run (as the arguments; the arguments win)
#   BENCH_FRAG_ALLOCATORS="..."  columns (glibc jemalloc mimalloc tcmalloc libmesh
#                             libmesh+meshd libmesh+rounds)
#   BENCH_FRAG_REPS=1         repetitions of every (workload, allocator) pair; cells are medians
#   BENCH_FRAG_TIME_REPS=6    extra insertion-only runs of redis-lru per allocator (no idle),
#                             so that its insertion time is a median of 1 + this many runs
#   BENCH_FRAG_IDLE=15        seconds of idle after each workload's work (RSS after idle is
#                             measured then) ...
#   BENCH_FRAG_IDLE_ROBSON=10 ... except the idle fragmenter's (robson)
#   BENCH_FRAG_MESH_PERIOD=2  seconds between compaction ticks (libmesh+rounds, idle only;
#                             a tick runs rounds until one releases nothing, at most 16)
#   BENCH_FRAG_POLICY=""      meshd settings of libmesh+meshd, e.g. "duty_ms_per_s=50"
#                             (default: none, meshd's defaults)
#   BENCH_FRAG_LAT_REPS=3     redis-latency: runs with meshd and without, alternated; medians
#   BENCH_FRAG_LAT_MODES="rate c1 P1 P16"  redis-latency's benchmarks, in this order (a
#                             subset, e.g. "rate": the fixed-rate phase alone)
#   BENCH_FRAG_LAT_COLUMNS="..."  redis-latency's columns (default: libmesh-nomeshd
#                             libmesh+meshd libmesh-nomeshd-2 libmesh+rounds; keep libmesh-nomeshd,
#                             the baseline), run in turn, each first in turn
#   BENCH_FRAG_PYTHON=/usr/bin/python3   interpreter of the python workload
#   BENCH_FRAG_LIBMESH_ENV="..."  extra NAME=VALUE settings for the libmesh columns, e.g.
#                             "MESH_MAP_BUDGET=60000" (experiments; shown in the report)
#   BENCH_FRAG_MAX_MAP_COUNT=N   run with vm.max_map_count=N (root; restored at exit), e.g.
#                             1048576 as systemd/60-libmesh.conf installs it
#   BENCH_FRAG_DAMON=pause    redis-latency: switch running DAMON kdamonds off while it
#                             runs (root; switched on again after it, and at exit), "keep"
#                             to leave them; see damon_pause below
#   BENCH_FRAG_OUT=DIR        output directory (default $BUILD/bench-frag)
#   BENCH_FRAG_REVISION="..." how to describe the libmesh build (default: git of this tree)
# Output in $BUILD/bench-frag: report.md, *.png (RSS over time), runs/ (per run: rss.csv,
# result, logs), data/ (generated Redis command streams, reused while unchanged).
# Exits non-zero if any run failed (crash, corruption, wrong allocator, timeout).
set -euo pipefail
# Nothing in this script runs on an allocator under test; only the programs it starts do.
unset LD_PRELOAD MESHD_SOCKET MESH_NO_MESHD

: "${BUILD:?BUILD must name the build directory (absolute)}"
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${BENCH_FRAG_OUT:-$BUILD/bench-frag}
BIN=$OUT/bin
DATA=$OUT/data
RUNS=$OUT/runs
WORK=$(mktemp -d /tmp/bench-frag.XXXXXX)
LIBDIR=/usr/lib/x86_64-linux-gnu
PY=/usr/bin/python3 # generators and report: Debian's interpreter, never preloaded
TARGET_PY=${BENCH_FRAG_PYTHON:-/usr/bin/python3}
QUICK=${BENCH_FRAG_QUICK:-0}
REPS=${BENCH_FRAG_REPS:-1}
MESH_PERIOD=${BENCH_FRAG_MESH_PERIOD:-2}
MAX_ROUNDS_PER_TICK=16
LAT_REPS=${BENCH_FRAG_LAT_REPS:-3}
LAT_KEYS=100000 LAT_SIZE=256 LAT_TIMEOUT_S=600 # redis-latency: redis-benchmark -r, -d; bound
DAMON_MODE=${BENCH_FRAG_DAMON:-pause} # redis-latency: pause or keep running kdamonds (damon_pause)
read -r -a LAT_MODES <<<"${BENCH_FRAG_LAT_MODES:-rate c1 P1 P16}"
LAT_RATE=2000 # redis-latency's first phase: requests a second (redisrate.c), for LAT_RATE_S each of SET, GET
read -r -a POLICY <<<"${BENCH_FRAG_POLICY:-}"
IDLE=${BENCH_FRAG_IDLE:-15}
IDLE_ROBSON=${BENCH_FRAG_IDLE_ROBSON:-10}
read -r -a LIBMESH_ENV <<<"${BENCH_FRAG_LIBMESH_ENV:-}"
if [[ $QUICK == 1 ]]; then
    TIME_REPS=${BENCH_FRAG_TIME_REPS:-0}
    LRU=(140000 240 34000 492 20mb) # keys, value bytes, keys, value bytes, maxmemory
    DEL=(200000 16 1024 75)         # keys, min, max value bytes, percent deleted
    ROBSON=(8 8 10)                 # phases, MiB per phase, percent kept
    PYFRAG=(3 30000 15)             # rounds, keys per round, percent kept
    LATENCY=(200000 1000000 100000)  # redis-benchmark requests: not pipelined, -P 16, -c 1
    LAT_RATE_S=4
else
    TIME_REPS=${BENCH_FRAG_TIME_REPS:-6}
    LRU=(700000 240 170000 492 100mb)
    DEL=(1000000 16 1024 75)
    ROBSON=(8 32 10)
    PYFRAG=(6 100000 15)
    LATENCY=(500000 3000000 200000)
    LAT_RATE_S=10
fi
if (($#)); then
    WORKLOADS=("$@")
else
    read -r -a WORKLOADS <<<"${BENCH_FRAG_ONLY:-redis-lru redis-del robson python redis-latency}"
fi
read -r -a ALLOCATORS <<<"${BENCH_FRAG_ALLOCATORS:-glibc jemalloc mimalloc tcmalloc libmesh libmesh+meshd libmesh+rounds}"

declare -A LIB=(
    [glibc]=""
    [jemalloc]=$LIBDIR/libjemalloc.so.2
    [mimalloc]=$LIBDIR/libmimalloc.so.2
    [tcmalloc]=$LIBDIR/libtcmalloc_minimal.so.4
    [libmesh]=$BIN/libmesh.so
    [libmesh+meshd]=$BIN/libmesh.so
    [libmesh+rounds]=$BIN/libmesh.so
    [libmesh-nomeshd]=$BIN/libmesh.so   # redis-latency's baseline only
    [libmesh-nomeshd-2]=$BIN/libmesh.so # and the same again: the A/A comparison
)

FAILURES=()
SKIPPED=()
PIDS=() # every process this script started and has not reaped yet

SAVED_MAP_COUNT=
DAMON_PAUSED=() # kdamond state files this script switched off, to switch on again
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
    rm -rf "$WORK"
    [[ -z $SAVED_MAP_COUNT ]] || echo "$SAVED_MAP_COUNT" >/proc/sys/vm/max_map_count || true
    damon_resume
}

# DAMON (mm/damon) with physical-address monitoring, as some VMs run it for proactive
# reclaim, clears the accessed bit of every sampled page's mappings each sample interval
# (0.5 s on the development VM).  Every process with a large heap then stalls for 3-30 ms
# twice a second: measured with Redis at 2,000 requests/s under its own jemalloc and under
# libmesh alike, with 1.1M keys (p99 4-22 ms) and not with 100k (0.13 ms); with the kdamond
# off, p99 0.8-1.5 ms.  redis-latency's percentiles would be DAMON's stalls, whoever the
# allocator, and no ratio between columns could resolve 1.2x.  The other workloads measure
# RSS and run times, which these stalls barely move: they run with it as the machine has it.
damon_pause() {
    [[ $DAMON_MODE == pause ]] || return 0
    local f
    for f in /sys/kernel/mm/damon/admin/kdamonds/*/state; do
        [[ -e $f && $(cat "$f" 2>/dev/null) == on ]] || continue
        if echo off >"$f" 2>/dev/null; then
            DAMON_PAUSED+=("$f")
        else
            echo "bench-frag: cannot switch $f off (needs root): redis-latency runs with DAMON on" >&2
        fi
    done
}
damon_resume() {
    local f
    for f in "${DAMON_PAUSED[@]}"; do echo on >"$f" 2>/dev/null || echo "bench-frag: could not switch $f on again" >&2; done
    DAMON_PAUSED=()
}
damon_describe() { # one line for machine.txt
    local f d states=() running=0
    for f in /sys/kernel/mm/damon/admin/kdamonds/*/state; do
        [[ -e $f ]] || continue
        d=$(dirname "$f")
        [[ $(cat "$f") == on ]] && running=1
        states+=("kdamond $(basename "$d") $(cat "$f") ($(cat "$d"/contexts/*/operations 2>/dev/null | tr '\n' ' ')ops, $(cat "$d"/contexts/*/schemes/*/action 2>/dev/null | tr '\n' ' ')action, sample $(($(cat "$d"/contexts/0/monitoring_attrs/intervals/sample_us 2>/dev/null || echo 0) / 1000)) ms)")
    done
    if ((!running)); then
        echo "DAMON: none running"
    else
        local IFS=';'
        echo "DAMON: ${states[*]}; redis-latency: $([[ $DAMON_MODE == pause ]] && echo 'switched off while it runs' || echo 'left on (BENCH_FRAG_DAMON=keep)')"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n ${BENCH_FRAG_MAX_MAP_COUNT:-} ]]; then
    want=$BENCH_FRAG_MAX_MAP_COUNT
    have=$(cat /proc/sys/vm/max_map_count)
    if [[ $want != "$have" ]]; then
        if ! echo "$want" >/proc/sys/vm/max_map_count 2>/dev/null; then
            echo "bench-frag: cannot set vm.max_map_count=$want (needs root)" >&2
            exit 2
        fi
        SAVED_MAP_COUNT=$have
    fi
fi

forget() { # pid: reaped, no longer ours to kill
    local i
    for i in "${!PIDS[@]}"; do [[ ${PIDS[$i]} == "$1" ]] && unset 'PIDS[i]'; done
    PIDS=("${PIDS[@]}")
}

stop() { # pid: terminate and reap one of our processes
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}

now_us() { echo "${EPOCHREALTIME/./}"; }
secs() { # microseconds -> seconds with 3 decimals
    printf '%d.%03d' $(($1 / 1000000)) $((($1 % 1000000) / 1000))
}
status_kib() { # pid field: a "kB" field of /proc/PID/status, or -1
    local v
    v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null) || true
    echo "${v:--1}"
}
CLK_TCK=$(getconf CLK_TCK)
cpu_ms() { # user + system CPU time of the process so far, in ms, or -1
    local v
    v=$(awk -v hz="$CLK_TCK" '{printf "%d", ($14 + $15) * 1000 / hz}' "/proc/$1/stat" 2>/dev/null) || true
    echo "${v:--1}"
}
ipis() { # function-call and TLB-shootdown interrupts so far, all CPUs (/proc/interrupts
    # CAL and TLB: a TLB flush of a process's other CPUs shows as one or the other), or -1.
    # A guest whose hypervisor flushes for it (PVM) counts none: see ptstall.c, the report's
    # "page-table stall" line.
    awk '$1 == "CAL:" || $1 == "TLB:" {for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; seen = 1}
         END {print seen ? n : -1}' /proc/interrupts 2>/dev/null || echo -1
}
# tlb_count_start PID FILE: counts the TLB flushes PID's threads make (the tracepoint
# tlb:tlb_flush, which fires for local and remote flushes alike, PVM guests included) with
# `perf stat` in the background, into FILE; prints perf's pid, or nothing without perf or
# the tracepoint (root: the tracepoint needs it, as does another process's counting).
tlb_count_start() {
    command -v perf >/dev/null 2>&1 && [[ -e /sys/kernel/tracing/events/tlb/tlb_flush ]] || return 0
    perf stat -x, -e tlb:tlb_flush -p "$1" -o "$2" >/dev/null 2>&1 &
    echo $!
}
# tlb_count_stop PERF_PID FILE: stops the count; prints it, or -1.
tlb_count_stop() {
    [[ -n $1 ]] || { echo -1; return; }
    kill -INT "$1" 2>/dev/null || true
    # Started in a command substitution: not this shell's child, so no wait(1).
    local i=0
    while kill -0 "$1" 2>/dev/null && ((i++ < 100)); do sleep 0.05; done
    local v
    v=$(awk -F, '$3 == "tlb:tlb_flush" && $1 ~ /^[0-9]+$/ {print $1}' "$2" 2>/dev/null) || true
    echo "${v:--1}"
}
minflt() { # minor page faults of the process so far, or -1
    local v
    v=$(awk '{print $10}' "/proc/$1/stat" 2>/dev/null) || true
    echo "${v:--1}"
}

fail() {
    FAILURES+=("$*")
    echo "FAIL: $*" >&2
}

check_settings() {
    local w a
    for w in "${WORKLOADS[@]}"; do
        case $w in redis-lru | redis-del | robson | python | redis-latency) ;;
        *) echo "bench-frag: unknown workload '$w'" >&2 && exit 2 ;; esac
    done
    for a in "${ALLOCATORS[@]}"; do
        if [[ -z ${LIB[$a]+set} ]]; then
            echo "bench-frag: unknown allocator '$a'" >&2
            exit 2
        fi
    done
    for m in "${LAT_MODES[@]}"; do
        case $m in rate | c1 | P1 | P16) ;; *)
            echo "bench-frag: unknown redis-latency benchmark '$m' (BENCH_FRAG_LAT_MODES: rate c1 P1 P16)" >&2
            exit 2
            ;;
        esac
    done
    for v in "$REPS" "$IDLE" "$IDLE_ROBSON" "$MESH_PERIOD" "$LAT_REPS"; do
        if [[ ! $v =~ ^[1-9][0-9]*$ ]]; then
            echo "bench-frag: BENCH_FRAG_REPS, _IDLE, _IDLE_ROBSON, _MESH_PERIOD and _LAT_REPS must be positive integers" >&2
            exit 2
        fi
    done
    if [[ ! $TIME_REPS =~ ^[0-9]+$ ]]; then
        echo "bench-frag: BENCH_FRAG_TIME_REPS must be a non-negative integer" >&2
        exit 2
    fi
    case $DAMON_MODE in pause | keep) ;;
    *) echo "bench-frag: BENCH_FRAG_DAMON must be pause or keep" >&2 && exit 2 ;; esac
    for tool in cc gnuplot redis-server redis-cli redis-benchmark "$PY" "$TARGET_PY"; do
        if ! command -v "$tool" >/dev/null; then
            echo "bench-frag: $tool not found (apt-get install -y gnuplot-nox redis-server redis-tools)" >&2
            exit 2
        fi
    done
    for f in "$BUILD/libmesh.so" "$BUILD/meshd" "$BUILD/meshctl"; do
        [[ -x $f || -f $f ]] || { echo "bench-frag: $f missing: run make first" >&2 && exit 2; }
    done
}

# Tools and a snapshot of libmesh, meshd and meshctl: a rebuild during the run cannot
# change what the later columns measure.
prepare() {
    rm -rf "$RUNS" "$OUT"/*.png "$OUT"/*.gp "$OUT/report.md"
    mkdir -p "$BIN" "$DATA" "$RUNS"
    local cflags=(-std=c11 -O2 -Wall -Wextra -Werror)
    cc "${cflags[@]}" "$SRC/robson.c" -o "$BIN/robson"
    cc "${cflags[@]}" "$SRC/rsssample.c" -o "$BIN/rsssample"
    cc "${cflags[@]}" "$SRC/redisrate.c" -o "$BIN/redisrate"
    cc "${cflags[@]}" "$SRC/ptstall.c" -o "$BIN/ptstall"
    cc "${cflags[@]}" -shared -fPIC -fvisibility=hidden "$SRC/glibcfwd.c" -o "$BIN/glibcfwd.so" -ldl
    cp "$BUILD/libmesh.so" "$BUILD/meshd" "$BUILD/meshctl" "$BIN/"
    local a usable=() policy=0
    "$BIN/meshd" --help 2>&1 | grep -q -- --config && policy=1
    for a in "${ALLOCATORS[@]}"; do
        if [[ $a == libmesh+rounds ]] && ((!policy)); then
            echo "bench-frag: this meshd cannot turn its automatic rounds off (--config): leaving out $a" >&2
            SKIPPED+=("$a (meshd without --config)")
        elif [[ -n ${LIB[$a]} && ! -e ${LIB[$a]} ]]; then
            echo "bench-frag: ${LIB[$a]} not found: leaving out $a" >&2
            SKIPPED+=("$a (${LIB[$a]} not found)")
        else
            usable+=("$a")
        fi
    done
    ALLOCATORS=("${usable[@]}")
}

# Redis command streams, generated once per parameter set (a few seconds, ~0.9 GB full).
LRU1="" LRU2="" DELSET="" DELDEL="" DELMETA="" KEYSPACE=""
generate_data() {
    local w
    for w in "${WORKLOADS[@]}"; do
        case $w in
        redis-lru)
            LRU1=$DATA/lru-${LRU[0]}x${LRU[1]}.resp
            LRU2=$DATA/lru-${LRU[0]}x${LRU[1]}-then-${LRU[2]}x${LRU[3]}.resp
            if [[ ! -s $LRU1 || ! -s $LRU2 || $SRC/redisgen.py -nt $LRU1 ]]; then
                echo "== generating $LRU1 and $LRU2"
                "$PY" "$SRC/redisgen.py" lru "${LRU[@]:0:4}" "$LRU1.tmp" "$LRU2.tmp"
                mv "$LRU1.tmp" "$LRU1" && mv "$LRU2.tmp" "$LRU2"
            fi
            ;;
        redis-del | redis-latency)
            if [[ $w == redis-latency ]]; then
                KEYSPACE=$DATA/keyspace-$LAT_KEYS-$LAT_SIZE.resp
                if [[ ! -s $KEYSPACE || $SRC/redisgen.py -nt $KEYSPACE ]]; then
                    echo "== generating $KEYSPACE"
                    "$PY" "$SRC/redisgen.py" keyspace "$LAT_KEYS" "$LAT_SIZE" "$KEYSPACE.tmp"
                    mv "$KEYSPACE.tmp" "$KEYSPACE"
                fi
            fi
            [[ -n $DELSET ]] && continue
            local base=$DATA/del-${DEL[0]}-${DEL[1]}-${DEL[2]}-${DEL[3]}
            DELSET=$base.set.resp DELDEL=$base.del.resp DELMETA=$base.meta
            if [[ ! -s $DELSET || ! -s $DELDEL || ! -s $DELMETA || $SRC/redisgen.py -nt $DELSET ]]; then
                echo "== generating $DELSET and $DELDEL"
                "$PY" "$SRC/redisgen.py" del "${DEL[@]}" "$DELSET.tmp" "$DELDEL.tmp" >"$DELMETA.tmp"
                mv "$DELSET.tmp" "$DELSET" && mv "$DELDEL.tmp" "$DELDEL" && mv "$DELMETA.tmp" "$DELMETA"
            fi
            ;;
        esac
    done
}

# ---- one run -----------------------------------------------------------------------

# Per-run state, set by run_one and used by the helpers below.
RUN_DIR="" RUN_ALLOC="" RUN_PID="" RUN_T0=0 RUN_SOCK="" RUN_MESHD=""
RESULT=()

note() { RESULT+=("$1=$2"); }
mark() { echo "$(secs $(($(now_us) - RUN_T0))) $1" >>"$RUN_DIR/events"; }

# Polls: runs the command every 0.1 s until it succeeds (0) or BOUND seconds have passed
# (1).  Every wait of this script is one of these: on a loaded machine no sleep is ever
# long enough, and a bound keeps a broken run from hanging the benchmark.
poll() { # bound_s command...
    local end=$(($(now_us) + $1 * 1000000))
    shift
    until "$@"; do
        (($(now_us) >= end)) && return 1
        sleep 0.1
    done
}

# libmesh+meshd: meshd's default policy (plus $POLICY), no rounds from the script.
# libmesh+rounds: automatic rounds off (enabled=0), the script runs them.
start_meshd() {
    RUN_SOCK=$WORK/meshd.sock
    rm -f "$RUN_SOCK"
    local args=(--socket "$RUN_SOCK" --foreground)
    if [[ $RUN_ALLOC == libmesh+rounds ]]; then
        echo "enabled=0" >"$RUN_DIR/meshd.conf"
        args+=(--config "$RUN_DIR/meshd.conf")
    elif ((${#POLICY[@]})); then
        printf '%s\n' "${POLICY[@]}" >"$RUN_DIR/meshd.conf"
        args+=(--config "$RUN_DIR/meshd.conf")
    fi
    "$BIN/meshd" "${args[@]}" 2>"$RUN_DIR/meshd.log" &
    RUN_MESHD=$!
    # meshd.tlog: its lines as they come, each after the wall-clock time it was read at
    # (EPOCHREALTIME; the run's t0_epoch_us is in its result), to follow a round against
    # the workload's phases.  tail ends with meshd.
    tail --pid="$RUN_MESHD" -s 0.1 -n +1 -F "$RUN_DIR/meshd.log" 2>/dev/null |
        while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done >"$RUN_DIR/meshd.tlog" &
    PIDS+=("$RUN_MESHD")
    poll 60 test -S "$RUN_SOCK" && return 0
    fail "$RUN_DIR: meshd did not create its socket"
    return 1
}

ctl() { "$BIN/meshctl" --socket "$RUN_SOCK" "$@"; }

# The environment of the program under test: its preload and, for libmesh, meshd or not.
target_env() { # allocator workload -> prints NAME=VALUE lines
    local lib=${LIB[$1]}
    if [[ $1 == glibc && $2 == redis-* ]]; then
        lib=$BIN/glibcfwd.so # redis-server links jemalloc: put glibc's malloc in front
    fi
    echo "LD_PRELOAD=$lib"
    if [[ $1 == libmesh* ]] && ((${#LIBMESH_ENV[@]})); then printf '%s\n' "${LIBMESH_ENV[@]}"; fi
    case $1 in
    libmesh) echo "MESH_NO_MESHD=1" ;;
    libmesh+*) echo "MESHD_SOCKET=$RUN_SOCK" ;;
    # redis-latency's baseline: the shim as it runs where no meshd listens (its control
    # thread retries with backoff and returns aged pages), not the thread-less MESH_NO_MESHD.
    libmesh-nomeshd | libmesh-nomeshd-2) echo "MESHD_SOCKET=$WORK/nobody-listens.sock" ;;
    esac
}

# Checks that the allocator the column names is the one in the process.
verify_allocator() { # workload
    local maps=$WORK/maps lib other
    cp "/proc/$RUN_PID/maps" "$maps" 2>/dev/null || { fail "$RUN_DIR: process gone" && return 1; }
    lib=$(target_env "$RUN_ALLOC" "$1" | sed -n 's/^LD_PRELOAD=//p')
    if [[ -n $lib ]]; then
        if ! grep -qF "$(realpath "$lib")" "$maps"; then
            fail "$RUN_DIR: $lib is not mapped in the process: the column would measure something else"
            return 1
        fi
        note verified "$(basename "$lib") mapped"
    else
        for other in libjemalloc libmimalloc libtcmalloc libmesh glibcfwd; do
            if grep -q "$other" "$maps"; then
                fail "$RUN_DIR: glibc column, but $other is mapped"
                return 1
            fi
        done
        note verified "no other malloc mapped"
    fi
    if [[ $RUN_ALLOC == libmesh* ]] && ! grep -q 'memfd:libmesh-arena' "$maps"; then
        fail "$RUN_DIR: libmesh is mapped but has no arena"
        return 1
    fi
}

registered() { ctl ps --json 2>/dev/null | grep -q "\"pid\": *$RUN_PID\b"; }

# The meshd columns: the process must be registered once its heap is loaded.  Not before:
# the shim starts its control thread lazily, from an allocation slow path at least 1 s
# after set-up or once the arena holds 16 MiB (shim/control.c), so a redis-server that
# answers PING and then waits for its load has no thread yet and stays unregistered until
# the load allocates (checking there was the old "did not register with meshd").
verify_registered() {
    [[ $RUN_ALLOC == libmesh+* ]] || return 0
    if poll 60 registered; then
        mark registered
        return 0
    fi
    fail "$RUN_DIR: the process did not register with meshd within 60 s of its load"
    return 1
}

start_sampler() {
    "$BIN/rsssample" "$RUN_PID" "$RUN_T0" "$RUN_DIR/rss.csv" 250 &
    SAMPLER=$!
    PIDS+=("$SAMPLER")
}

# One compaction tick: rounds until one releases nothing (or a cap).
mesh_tick() {
    local i out kib
    for ((i = 0; i < MAX_ROUNDS_PER_TICK; i++)); do
        out=$(ctl mesh "$RUN_PID" 2>&1) || { echo "$out" >>"$RUN_DIR/mesh.log" && return 0; }
        echo "$(secs $(($(now_us) - RUN_T0))) $out" >>"$RUN_DIR/mesh.log"
        kib=$(sed -n 's/.* \([0-9][0-9]*\) KiB released.*/\1/p' <<<"$out")
        [[ -z $kib || $kib == 0 ]] && return 0
    done
    return 0
}

# The idle phase: nothing happens, except compaction ticks for libmesh+rounds.  It lasts
# exactly the idle time (seconds) from the end of the work, the registration check
# included: RSS after idle is measured at its end, the deliberate "N s after the load"
# point; the report reads how fast RSS got there from rss.csv.
idle() { # seconds
    mark idle
    note idle_s "$1"
    local end=$(($(now_us) + $1 * 1000000)) tick next now
    verify_registered || return 1
    while :; do
        tick=$(now_us)
        ((tick >= end)) && break
        [[ $RUN_ALLOC == libmesh+rounds ]] && mesh_tick
        next=$((tick + MESH_PERIOD * 1000000))
        ((next > end)) && next=$end
        now=$(now_us)
        ((next > now)) && sleep "$(secs $((next - now)))"
    done
    note rss_idle_kib "$(status_kib "$RUN_PID" VmRSS)"
    mark end
    note peak_kib "$(status_kib "$RUN_PID" VmHWM)"
    note minflt "$(minflt "$RUN_PID")"
    local f
    for f in RssAnon RssFile RssShmem; do note "${f,,}_kib" "$(status_kib "$RUN_PID" "$f")"; done
    # VmRSS counts a page once per page-table entry: a meshed page reached through two
    # virtual spans counts twice.  PSS divides it by its mappings and so counts it once.
    note pss_kib "$(awk '$1 == "Pss:" {print $2}' "/proc/$RUN_PID/smaps_rollup" 2>/dev/null || echo -1)"
    if [[ $RUN_ALLOC == libmesh* ]]; then
        note spans_rss_kib "$(awk '/^[0-9a-f]+-[0-9a-f]+ / {m = /libmesh-spans/} m && $1 == "Rss:" {s += $2} END {print s + 0}' "/proc/$RUN_PID/smaps" 2>/dev/null || echo -1)"
    fi
    if [[ $RUN_ALLOC == libmesh+* ]]; then
        save_stats meshd-stats.json
    fi
    return 0
}

exited() { # pid: gone or a zombie (our child, not reaped yet)
    [[ ! -e /proc/$1/stat ]] || [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]]
}

redis_start() { # workload port maxmemory-args...
    local w=$1 port=$2
    shift 2
    local envs
    mapfile -t envs < <(target_env "$RUN_ALLOC" "$w")
    RUN_T0=$(now_us)
    note t0_epoch_us "$RUN_T0"
    env "${envs[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$WORK" --logfile "$RUN_DIR/redis.log" "$@" &
    RUN_PID=$!
    PIDS+=("$RUN_PID")
    start_sampler
    poll 60 redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    fail "$RUN_DIR: redis-server did not answer on port $port"
    return 1
}

redis_pipe() { # port file
    local out
    out=$(redis-cli -p "$1" --pipe <"$2" 2>&1 | tail -1)
    if [[ $out != "errors: 0, "* ]]; then
        fail "$RUN_DIR: redis-cli --pipe <$(basename "$2"): $out"
        return 1
    fi
}

redis_finish() { # port
    redis-cli -p "$1" info memory >"$RUN_DIR/info-memory.txt" 2>&1 || true
    note used_memory "$(sed -n 's/^used_memory:\([0-9]*\).*/\1/p' "$RUN_DIR/info-memory.txt")"
    note allocator_allocated "$(sed -n 's/^allocator_allocated:\([0-9]*\).*/\1/p' "$RUN_DIR/info-memory.txt")"
    note mem_allocator "$(sed -n 's/^mem_allocator:\([^[:space:]]*\).*/\1/p' "$RUN_DIR/info-memory.txt")"
    note keys "$(redis-cli -p "$1" dbsize 2>/dev/null || echo -1)"
    redis-cli -p "$1" shutdown nosave >/dev/null 2>&1 || true
    local rc=0
    if ! poll 60 exited "$RUN_PID"; then
        fail "$RUN_DIR: redis-server did not exit within 60 s of SHUTDOWN: killed"
        kill -KILL "$RUN_PID" 2>/dev/null || true
    fi
    wait "$RUN_PID" || rc=$?
    forget "$RUN_PID"
    RUN_PID=""
    # SIGTERM or shutdown: redis exits 0.  Anything else (a crash) is a failure.
    if ((rc != 0)); then
        fail "$RUN_DIR: redis-server exited with status $rc (see redis.log)"
        return 1
    fi
}

# free_port: a port nothing listens on, below the kernel's ephemeral range: a port of that
# range may be some client's own end (redis-benchmark opens 50 connections per test) by
# the time Redis binds it ("bind: Address already in use" once in a full run).
free_port() {
    local lo port
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
    ((lo > 11000)) || lo=32768
    while :; do
        port=$((10000 + RANDOM % (lo - 10000)))
        "$PY" -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null && break
    done
    echo "$port"
}

run_redis_lru() { # timing_only(0/1)
    local port
    port=$(free_port)
    redis_start redis-lru "$port" --maxmemory "${LRU[4]}" --maxmemory-policy allkeys-lru || return 1
    verify_allocator redis-lru || return 1
    mark insert
    local t0 c0
    t0=$(now_us) c0=$(cpu_ms "$RUN_PID")
    redis_pipe "$port" "$LRU1" || return 1
    redis_pipe "$port" "$LRU2" || return 1
    note time_s "$(secs $(($(now_us) - t0)))"
    note cpu_s "$(secs $(($(cpu_ms "$RUN_PID") - c0))000)"
    note rss_loaded_kib "$(status_kib "$RUN_PID" VmRSS)"
    if [[ $1 == 1 ]]; then
        note peak_kib "$(status_kib "$RUN_PID" VmHWM)"
        redis_finish "$port"
        return
    fi
    idle "$IDLE" || return 1
    redis_finish "$port"
}

# A redis-server (started) given delete-heavy Redis's dataset: the load, then DEL of 75%
# of the keys.
redis_fragmented() { # workload port
    verify_allocator "$1" || return 1
    mark load
    local t0 c0
    t0=$(now_us) c0=$(cpu_ms "$RUN_PID")
    redis_pipe "$2" "$DELSET" || return 1
    note rss_loaded_kib "$(status_kib "$RUN_PID" VmRSS)"
    mark delete
    redis_pipe "$2" "$DELDEL" || return 1
    note time_s "$(secs $(($(now_us) - t0)))"
    note cpu_s "$(secs $(($(cpu_ms "$RUN_PID") - c0))000)"
}

run_redis_del() {
    local port
    port=$(free_port)
    redis_start redis-del "$port" || return 1
    redis_fragmented redis-del "$port" || return 1
    idle "$IDLE" || return 1
    redis_finish "$port"
    note value_bytes_left "$(sed -n 's/^value_bytes_left: //p' "$DELMETA")"
}

# redis-latency: does Redis notice meshd compacting it?  redis-server under libmesh gets
# redis-benchmark's keyspace ($LAT_KEYS keys, $LAT_SIZE-byte values: a cache in steady
# state, whose SETs replace values), then delete-heavy Redis's dataset (the load, then DEL
# of 75% of the keys: a fragmented heap for meshd to work on), then at once
# SET then GET run on random keys of its keyspace: first at a fixed rate, $LAT_RATE a second
# for $LAT_RATE_S s each, open loop (redisrate.c: a lightly loaded server, most of the
# machine idle, which is when meshd's default policy compacts; first, while the heap is
# still fragmented), then redis-benchmark with one client (-c 1: about one CPU of two
# busy, where the policy's min_spare_cpu stops it or not depending on the machine), then
# with 50 clients not pipelined, then with -P 16 (both CPUs busy).
# Four columns: no meshd listening (libmesh-nomeshd, the baseline, and libmesh-nomeshd-2,
# the very same again: what the baseline's ratio to itself is tells this run's resolution,
# A/A), meshd's default
# policy (libmesh+meshd: what a service gets; the policy leaves a heap that changes by
# more than max_activity per tick alone, so it may not compact at all while SETs run), and
# explicit rounds, one `meshctl mesh` every $MESH_PERIOD s while each benchmark runs
# (libmesh+rounds: compaction that certainly overlaps the requests).  The rounds meshd ran
# during each benchmark are counted from its log, and meshctl stats is saved before and
# after each one (holds, when meshd reports them).
run_redis_latency() {
    local port
    port=$(free_port)
    redis_start redis-latency "$port" || return 1
    redis_pipe "$port" "$KEYSPACE" || return 1
    redis_fragmented redis-latency "$port" || return 1
    if [[ $RUN_ALLOC == libmesh+* ]]; then verify_registered || return 1; fi
    local mode n args lines0 bench rc compactor
    for mode in "${LAT_MODES[@]}"; do
        case $mode in
        rate) n=$LAT_RATE args=("$LAT_RATE_S") ;;
        c1) n=${LATENCY[2]} args=(-c 1 -P 1) ;;
        P1) n=${LATENCY[0]} args=(-P 1) ;;
        P16) n=${LATENCY[1]} args=(-P 16) ;;
        esac
        mark "bench-$mode"
        lines0=$(meshd_log_lines)
        local minflt0 ipis0 tlb_pid
        minflt0=$(minflt "$RUN_PID") ipis0=$(ipis)
        tlb_pid=$(tlb_count_start "$RUN_PID" "$RUN_DIR/tlb-$mode.txt")
        save_stats "stats-$mode-start.json"
        compactor=""
        if [[ $RUN_ALLOC == libmesh+rounds ]]; then
            while :; do
                echo "$(secs $(($(now_us) - RUN_T0))) $(ctl mesh "$RUN_PID" 2>&1)" >>"$RUN_DIR/mesh.log"
                sleep "$MESH_PERIOD"
            done &
            compactor=$!
            PIDS+=("$compactor")
        fi
        if [[ $mode == rate ]]; then
            timeout "$LAT_TIMEOUT_S" "$BIN/redisrate" "$port" "$LAT_KEYS" "$LAT_SIZE" "$n" "${args[@]}" \
                >"$RUN_DIR/bench-$mode.txt" 2>&1 &
        else
            timeout "$LAT_TIMEOUT_S" redis-benchmark -p "$port" -t set,get -n "$n" -r "$LAT_KEYS" \
                -d "$LAT_SIZE" "${args[@]}" >"$RUN_DIR/bench-$mode.txt" 2>&1 &
        fi
        bench=$!
        PIDS+=("$bench")
        rc=0
        wait "$bench" || rc=$?
        forget "$bench"
        [[ -n $compactor ]] && stop "$compactor"
        # Redis's minor faults (pages remapped or punched by meshing are faulted back) and
        # the machine's IPIs (the shim's mapping changes flush Redis's CPU) during the mode.
        local minflt1 ipis1
        minflt1=$(minflt "$RUN_PID") ipis1=$(ipis)
        note "minflt_$mode" "$((minflt0 < 0 || minflt1 < 0 ? -1 : minflt1 - minflt0))"
        note "ipis_$mode" "$((ipis0 < 0 || ipis1 < 0 ? -1 : ipis1 - ipis0))"
        note "tlbflush_$mode" "$(tlb_count_stop "$tlb_pid" "$RUN_DIR/tlb-$mode.txt")"
        save_stats "stats-$mode-end.json"
        if ((rc != 0)) || ! grep -q 'throughput summary' "$RUN_DIR/bench-$mode.txt"; then
            fail "$RUN_DIR: benchmark $mode exited with status $rc (see bench-$mode.txt)"
            return 1
        fi
        if [[ -n $RUN_MESHD ]]; then
            tail -n +"$((lines0 + 1))" "$RUN_DIR/meshd.log" >"$RUN_DIR/meshd-$mode.log"
            grep 'pairs meshed' "$RUN_DIR/meshd-$mode.log" >"$RUN_DIR/rounds-$mode.log" || true
        fi
    done
    mark end
    note rss_idle_kib "$(status_kib "$RUN_PID" VmRSS)"
    save_stats meshd-stats.json
    redis_finish "$port"
}

meshd_log_lines() { if [[ -n $RUN_MESHD ]]; then wc -l <"$RUN_DIR/meshd.log"; else echo 0; fi; }
save_stats() { # file: meshctl stats --json of the process, for the meshd columns
    [[ -n $RUN_MESHD ]] || return 0
    ctl stats "$RUN_PID" --json >"$RUN_DIR/$1" 2>&1 || true
}

# robson and python: start, wait for "idle", idle, SIGUSR1, check the verification.
run_program() { # workload command...
    local w=$1 envs
    shift
    mapfile -t envs < <(target_env "$RUN_ALLOC" "$w")
    RUN_T0=$(now_us)
    note t0_epoch_us "$RUN_T0"
    env "${envs[@]}" "$@" >"$RUN_DIR/out" 2>"$RUN_DIR/err" &
    RUN_PID=$!
    PIDS+=("$RUN_PID")
    start_sampler
    mark work
    local waited=0
    until grep -qx idle "$RUN_DIR/out"; do
        if ! kill -0 "$RUN_PID" 2>/dev/null || ((waited > 6000)); then
            fail "$RUN_DIR: the program died or never got idle (see out, err)"
            return 1
        fi
        sleep 0.05
        waited=$((waited + 1))
    done
    note cpu_s "$(secs "$(cpu_ms "$RUN_PID")000")"
    verify_allocator "$w" || return 1
    note time_s "$(sed -n 's/^work_seconds: //p' "$RUN_DIR/out")"
    idle "$([[ $w == robson ]] && echo "$IDLE_ROBSON" || echo "$IDLE")" || return 1
    kill -USR1 "$RUN_PID"
    local rc=0
    wait "$RUN_PID" || rc=$?
    forget "$RUN_PID"
    RUN_PID=""
    if ((rc != 0)) || ! grep -q '^verified: ok' "$RUN_DIR/out"; then
        fail "$RUN_DIR: exit status $rc, survivors not verified (see out, err)"
        return 1
    fi
    note live_bytes "$(sed -n 's/^live_bytes: //p' "$RUN_DIR/out")"
    note checksum "$(sed -n 's/^checksum: //p' "$RUN_DIR/out")"
}

run_one() { # workload allocator rep [timing_only]
    local w=$1 a=$2 rep=$3 timing=${4:-0}
    RUN_DIR=$RUNS/$w.$a.$rep
    RUN_ALLOC=$a RUN_PID="" RUN_MESHD="" RUN_SOCK="" SAMPLER="" RESULT=()
    mkdir -p "$RUN_DIR"
    : >"$RUN_DIR/events"
    printf '== %-10s %-14s rep %s%s\n' "$w" "$a" "$rep" "$([[ $timing == 1 ]] && echo ' (insertion time only)')"
    local ok=1
    if [[ $a == libmesh+* ]]; then start_meshd || ok=0; fi
    if ((ok)); then
        case $w in
        redis-lru) run_redis_lru "$timing" || ok=0 ;;
        redis-del) run_redis_del || ok=0 ;;
        redis-latency) run_redis_latency || ok=0 ;;
        robson) run_program robson "$BIN/robson" "${ROBSON[@]}" || ok=0 ;;
        python)
            run_program python env PYTHONMALLOC=malloc PYTHONHASHSEED=0 \
                "$TARGET_PY" "$SRC/pyfrag.py" "${PYFRAG[@]}" || ok=0
            ;;
        esac
    fi
    [[ -n $RUN_PID ]] && stop "$RUN_PID"
    [[ -n $SAMPLER ]] && stop "$SAMPLER"
    if [[ -n $RUN_MESHD ]]; then
        stop "$RUN_MESHD"
        # Round lines end in "barrier max N us" (older meshd) or "barrier total T us, max N
        # us": N is the longest single pair's barrier so far, T the sum over the round.
        local bmax btotal budget
        bmax=$(sed -n 's/.*barrier.* max \([0-9][0-9]*\) us.*/\1/p' "$RUN_DIR/meshd.log" | sort -n | tail -1)
        btotal=$(sed -n 's/.*barrier total \([0-9][0-9]*\) us.*/\1/p' "$RUN_DIR/meshd.log" | sort -n | tail -1)
        budget=$(sed -n 's/.* budget=\([0-9]*\).*/\1/p' "$RUN_DIR/meshd.log" | awk '{s += $1} END {print s + 0}')
        note barrier_max_us "${bmax:--1}"
        note round_barrier_max_us "${btotal:--1}"
        note mesh_rounds "$(grep -c 'pairs meshed' "$RUN_DIR/meshd.log" || true)"
        note budget_refusals "$budget"
    fi
    note workload "$w"
    note allocator "$a"
    note rep "$rep"
    note timing_only "$timing"
    note ok "$ok"
    printf '%s\n' "${RESULT[@]}" >"$RUN_DIR/result"
    if ((ok)) && [[ $w == redis-latency ]]; then
        printf '   %s\n' "$(grep -h 'throughput summary' "$RUN_DIR"/bench-*.txt | tr -s ' ' | tr '\n' ';')"
    elif ((ok)); then
        local idle_kib
        idle_kib=$(sed -n 's/^rss_idle_kib=//p' "$RUN_DIR/result")
        printf '   time %ss  peak %s KiB%s\n' "$(sed -n 's/^time_s=//p' "$RUN_DIR/result")" \
            "$(sed -n 's/^peak_kib=//p' "$RUN_DIR/result")" "${idle_kib:+  after idle $idle_kib KiB}"
    fi
}

describe_machine() {
    local f=$OUT/machine.txt pkg
    {
        echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)"
        echo "glibc: $(ldd --version | head -1 | sed 's/.* //')"
        for pkg in libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 redis-server python3 gnuplot-nox; do
            echo "$pkg: $(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null || echo 'not installed')"
        done
        local rev=${BENCH_FRAG_REVISION:-}
        if [[ -z $rev ]]; then
            rev="tree $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)"
            git -C "$SRC" diff --quiet HEAD -- shim meshd proto 2>/dev/null ||
                rev+=", with uncommitted changes in shim/, meshd/ or proto/"
        fi
        echo "libmesh, meshd: $BUILD ($rev; libmesh.so sha256 $(sha256sum "$BIN/libmesh.so" | cut -c1-12))"
        ((${#LIBMESH_ENV[@]})) && echo "libmesh columns run with: ${LIBMESH_ENV[*]}"
        echo "vm.max_map_count: $(cat /proc/sys/vm/max_map_count) (libmesh's mapping budget: half of it)"
        damon_describe
        # Before the runs, nothing else running: what a page-table change elsewhere costs a
        # running program here (ptstall.c); tens of microseconds make the Redis latency
        # test measure the host, and zap_us_1/16/64 say whether a flush costs by the call
        # (flat) or by the page (then runs of pages help only past 33 pages).
        echo "page-table stall: $("$BIN/ptstall" 1.5 | sed 's/^ptstall: //')"
        echo "userfaultfd barrier: $([[ $(id -u) == 0 || $(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null) == 1 ]] && echo yes || echo 'no (mprotect)')"
        echo "settings: quick=$QUICK reps=$REPS time_reps=$TIME_REPS idle=${IDLE}s (robson ${IDLE_ROBSON}s) mesh_period=${MESH_PERIOD}s lat_reps=$LAT_REPS"
        echo "libmesh+meshd policy: meshd's defaults${POLICY[*]:+ with ${POLICY[*]}}"
        echo "redis-lru: ${LRU[0]} keys x ${LRU[1]} B, then ${LRU[2]} keys x ${LRU[3]} B, maxmemory ${LRU[4]}"
        echo "redis-del: ${DEL[0]} keys x ${DEL[1]}..${DEL[2]} B, ${DEL[3]}% deleted"
        echo "robson: ${ROBSON[0]} phases x ${ROBSON[1]} MiB, ${ROBSON[2]}% kept"
        echo "python: ${PYFRAG[0]} rounds x ${PYFRAG[1]} keys, ${PYFRAG[2]}% kept"
        echo "redis-latency: redis-benchmark's keyspace, redis-del's dataset, then SET and GET at $LAT_RATE a second for ${LAT_RATE_S} s each (redisrate, open loop), then redis-benchmark -t set,get -r $LAT_KEYS -d $LAT_SIZE -n ${LATENCY[2]} with -c 1, then -c 50: -n ${LATENCY[0]} not pipelined, -n ${LATENCY[1]} with -P 16 ($(redis-benchmark --version 2>/dev/null | cut -d' ' -f1-2))"
    } >"$f"
}

main() {
    check_settings
    prepare
    generate_data
    describe_machine
    echo "load_start: $(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/machine.txt"
    local rep w a i
    for ((rep = 1; rep <= REPS; rep++)); do
        for w in "${WORKLOADS[@]}"; do
            [[ $w == redis-latency ]] && continue
            for a in "${ALLOCATORS[@]}"; do run_one "$w" "$a" "$rep"; done
        done
    done
    # redis-latency: its own columns, alternated, each first in turn.
    if [[ " ${WORKLOADS[*]} " == *" redis-latency "* ]]; then
        local order
        read -r -a order <<<"${BENCH_FRAG_LAT_COLUMNS:-libmesh-nomeshd libmesh+meshd libmesh-nomeshd-2 libmesh+rounds}"
        damon_pause
        for ((rep = 1; rep <= LAT_REPS; rep++)); do
            for a in "${order[@]}"; do run_one redis-latency "$a" "$rep"; done
            order=("${order[@]:1}" "${order[0]}") # each column first in turn
        done
        damon_resume
    fi
    if [[ " ${WORKLOADS[*]} " == *" redis-lru "* ]]; then
        for ((i = 1; i <= TIME_REPS; i++)); do
            for a in "${ALLOCATORS[@]}"; do run_one redis-lru "$a" "t$i" 1; done
        done
    fi
    echo "load_end: $(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/machine.txt"
    printf '%s\n' "${FAILURES[@]}" >"$OUT/failures.txt"
    printf '%s\n' "${SKIPPED[@]}" >"$OUT/skipped.txt"
    "$PY" "$SRC/report.py" "$OUT" "${WORKLOADS[*]}" "${ALLOCATORS[*]}"
    local gp
    for gp in "$OUT"/*.gp; do
        [[ -e $gp ]] && { gnuplot "$gp" || fail "gnuplot $gp failed"; }
    done
    echo
    cat "$OUT/report.md"
    if ((${#FAILURES[@]})); then
        echo "bench-frag: ${#FAILURES[@]} failure(s), listed above and in $OUT/failures.txt" >&2
        exit 1
    fi
}

main
