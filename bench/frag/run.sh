#!/usr/bin/env bash
# Fragmentation benchmarks: peak RSS, RSS after idle and time of fragmenting workloads
# (Redis as an LRU cache, delete-heavy Redis, a Robson-style fragmenter, Python) under
# glibc, jemalloc, mimalloc, tcmalloc, libmesh without meshd, libmesh with a private meshd
# driven by explicit `meshctl mesh` rounds during the idle phase (libmesh+meshd), and
# libmesh with a private meshd running its automatic policy (libmesh+policy).  Runs are
# interleaved (for each repetition, for each workload, for each allocator); RSS is
# sampled every 0.25 s.
#
#   BUILD=/abs/build bash bench/frag/run.sh        (make bench-frag)
#
# Knobs (environment):
#   BENCH_FRAG_QUICK=1        smaller workloads and a 6 s idle: a 3-minute smoke run
#   BENCH_FRAG_ONLY="..."     workloads to run (redis-lru redis-del robson python)
#   BENCH_FRAG_ALLOCATORS="..."  columns (glibc jemalloc mimalloc tcmalloc libmesh
#                             libmesh+meshd libmesh+policy)
#   BENCH_FRAG_REPS=1         repetitions of every (workload, allocator) pair; cells are medians
#   BENCH_FRAG_TIME_REPS=6    extra insertion-only runs of redis-lru per allocator (no idle),
#                             so that its insertion time is a median of 1 + this many runs
#   BENCH_FRAG_IDLE=20        seconds of idle after each workload's work
#   BENCH_FRAG_MESH_PERIOD=2  seconds between compaction ticks (libmesh+meshd, idle only;
#                             a tick runs rounds until one releases nothing, at most 16)
#   BENCH_FRAG_POLICY="interval=1 min_interval=2"   meshd settings of libmesh+policy
#   BENCH_FRAG_PYTHON=/usr/bin/python3   interpreter of the python workload
#   BENCH_FRAG_LIBMESH_ENV="..."  extra NAME=VALUE settings for the libmesh columns, e.g.
#                             "MESH_MAP_BUDGET=60000" (experiments; shown in the report)
#   BENCH_FRAG_MAX_MAP_COUNT=N   run with vm.max_map_count=N (root; restored at exit), e.g.
#                             1048576 as systemd/60-libmesh.conf installs it
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
read -r -a POLICY <<<"${BENCH_FRAG_POLICY:-interval=1 min_interval=2}"
read -r -a LIBMESH_ENV <<<"${BENCH_FRAG_LIBMESH_ENV:-}"
if [[ $QUICK == 1 ]]; then
    IDLE=${BENCH_FRAG_IDLE:-6}
    TIME_REPS=${BENCH_FRAG_TIME_REPS:-0}
    LRU=(140000 240 34000 492 20mb) # keys, value bytes, keys, value bytes, maxmemory
    DEL=(200000 16 1024 75)         # keys, min, max value bytes, percent deleted
    ROBSON=(8 8 10)                 # phases, MiB per phase, percent kept
    PYFRAG=(3 30000 15)             # rounds, keys per round, percent kept
else
    IDLE=${BENCH_FRAG_IDLE:-20}
    TIME_REPS=${BENCH_FRAG_TIME_REPS:-6}
    LRU=(700000 240 170000 492 100mb)
    DEL=(1000000 16 1024 75)
    ROBSON=(8 32 10)
    PYFRAG=(6 100000 15)
fi
read -r -a WORKLOADS <<<"${BENCH_FRAG_ONLY:-redis-lru redis-del robson python}"
read -r -a ALLOCATORS <<<"${BENCH_FRAG_ALLOCATORS:-glibc jemalloc mimalloc tcmalloc libmesh libmesh+meshd libmesh+policy}"

declare -A LIB=(
    [glibc]=""
    [jemalloc]=$LIBDIR/libjemalloc.so.2
    [mimalloc]=$LIBDIR/libmimalloc.so.2
    [tcmalloc]=$LIBDIR/libtcmalloc_minimal.so.4
    [libmesh]=$BIN/libmesh.so
    [libmesh+meshd]=$BIN/libmesh.so
    [libmesh+policy]=$BIN/libmesh.so
)

FAILURES=()
SKIPPED=()
PIDS=() # every process this script started and has not reaped yet

SAVED_MAP_COUNT=
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
    rm -rf "$WORK"
    [[ -z $SAVED_MAP_COUNT ]] || echo "$SAVED_MAP_COUNT" >/proc/sys/vm/max_map_count || true
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
        case $w in redis-lru | redis-del | robson | python) ;;
        *) echo "bench-frag: unknown workload '$w'" >&2 && exit 2 ;; esac
    done
    for a in "${ALLOCATORS[@]}"; do
        if [[ -z ${LIB[$a]+set} ]]; then
            echo "bench-frag: unknown allocator '$a'" >&2
            exit 2
        fi
    done
    for v in "$REPS" "$IDLE" "$MESH_PERIOD"; do
        if [[ ! $v =~ ^[1-9][0-9]*$ ]]; then
            echo "bench-frag: BENCH_FRAG_REPS, _IDLE and _MESH_PERIOD must be positive integers" >&2
            exit 2
        fi
    done
    if [[ ! $TIME_REPS =~ ^[0-9]+$ ]]; then
        echo "bench-frag: BENCH_FRAG_TIME_REPS must be a non-negative integer" >&2
        exit 2
    fi
    for tool in cc gnuplot redis-server redis-cli "$PY" "$TARGET_PY"; do
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
    cc "${cflags[@]}" -shared -fPIC -fvisibility=hidden "$SRC/glibcfwd.c" -o "$BIN/glibcfwd.so" -ldl
    cp "$BUILD/libmesh.so" "$BUILD/meshd" "$BUILD/meshctl" "$BIN/"
    local a usable=() policy=0
    "$BIN/meshd" --help 2>&1 | grep -q -- --config && policy=1
    for a in "${ALLOCATORS[@]}"; do
        if [[ $a == libmesh+policy ]] && ((!policy)); then
            echo "bench-frag: this meshd has no automatic policy (--config): leaving out $a" >&2
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
LRU1="" LRU2="" DELSET="" DELDEL="" DELMETA=""
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
        redis-del)
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

# libmesh+meshd: automatic rounds off (enabled=0), the script runs them.
# libmesh+policy: meshd's policy with $POLICY, no rounds from the script.
start_meshd() {
    RUN_SOCK=$WORK/meshd.sock
    rm -f "$RUN_SOCK"
    local args=(--socket "$RUN_SOCK" --foreground)
    if "$BIN/meshd" --help 2>&1 | grep -q -- --config; then
        if [[ $RUN_ALLOC == libmesh+policy ]]; then
            printf '%s\n' "${POLICY[@]}" >"$RUN_DIR/meshd.conf"
        else
            echo "enabled=0" >"$RUN_DIR/meshd.conf"
        fi
        args+=(--config "$RUN_DIR/meshd.conf")
    fi
    "$BIN/meshd" "${args[@]}" 2>"$RUN_DIR/meshd.log" &
    RUN_MESHD=$!
    PIDS+=("$RUN_MESHD")
    local _
    for _ in $(seq 1 100); do [[ -S $RUN_SOCK ]] && return 0; sleep 0.05; done
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
    if [[ $RUN_ALLOC == libmesh+* ]]; then
        local _
        for _ in $(seq 1 100); do
            ctl ps --json 2>/dev/null | grep -q "\"pid\": *$RUN_PID\b" && return 0
            sleep 0.1
        done
        fail "$RUN_DIR: the process did not register with meshd"
        return 1
    fi
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

# The idle phase: nothing happens, except compaction ticks for libmesh+meshd.
idle() {
    mark idle
    local end=$(($(now_us) + IDLE * 1000000)) tick next now
    while :; do
        tick=$(now_us)
        ((tick >= end)) && break
        [[ $RUN_ALLOC == libmesh+meshd ]] && mesh_tick
        next=$((tick + MESH_PERIOD * 1000000))
        ((next > end)) && next=$end
        now=$(now_us)
        ((next > now)) && sleep "$(secs $((next - now)))"
    done
    note rss_idle_kib "$(status_kib "$RUN_PID" VmRSS)"
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
        ctl stats "$RUN_PID" --json >"$RUN_DIR/meshd-stats.json" 2>&1 || true
    fi
    mark end
    return 0
}

redis_start() { # workload port maxmemory-args...
    local w=$1 port=$2
    shift 2
    local envs
    mapfile -t envs < <(target_env "$RUN_ALLOC" "$w")
    RUN_T0=$(now_us)
    env "${envs[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$WORK" --logfile "$RUN_DIR/redis.log" "$@" &
    RUN_PID=$!
    PIDS+=("$RUN_PID")
    start_sampler
    local _
    for _ in $(seq 1 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
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
    wait "$RUN_PID" || rc=$?
    forget "$RUN_PID"
    RUN_PID=""
    # SIGTERM or shutdown: redis exits 0.  Anything else (a crash) is a failure.
    if ((rc != 0)); then
        fail "$RUN_DIR: redis-server exited with status $rc (see redis.log)"
        return 1
    fi
}

free_port() { # a port nothing answers on
    local port
    while :; do
        port=$((20000 + RANDOM % 20000))
        redis-cli -p "$port" ping >/dev/null 2>&1 || break
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
    idle
    redis_finish "$port"
}

run_redis_del() {
    local port
    port=$(free_port)
    redis_start redis-del "$port" || return 1
    verify_allocator redis-del || return 1
    mark load
    local t0 c0
    t0=$(now_us) c0=$(cpu_ms "$RUN_PID")
    redis_pipe "$port" "$DELSET" || return 1
    note rss_loaded_kib "$(status_kib "$RUN_PID" VmRSS)"
    mark delete
    redis_pipe "$port" "$DELDEL" || return 1
    note time_s "$(secs $(($(now_us) - t0)))"
    note cpu_s "$(secs $(($(cpu_ms "$RUN_PID") - c0))000)"
    idle
    redis_finish "$port"
    note value_bytes_left "$(sed -n 's/^value_bytes_left: //p' "$DELMETA")"
}

# robson and python: start, wait for "idle", idle, SIGUSR1, check the verification.
run_program() { # workload command...
    local w=$1 envs
    shift
    mapfile -t envs < <(target_env "$RUN_ALLOC" "$w")
    RUN_T0=$(now_us)
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
    idle
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
    if ((ok)); then
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
        echo "userfaultfd barrier: $([[ $(id -u) == 0 || $(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null) == 1 ]] && echo yes || echo 'no (mprotect)')"
        echo "settings: quick=$QUICK reps=$REPS time_reps=$TIME_REPS idle=${IDLE}s mesh_period=${MESH_PERIOD}s"
        echo "redis-lru: ${LRU[0]} keys x ${LRU[1]} B, then ${LRU[2]} keys x ${LRU[3]} B, maxmemory ${LRU[4]}"
        echo "redis-del: ${DEL[0]} keys x ${DEL[1]}..${DEL[2]} B, ${DEL[3]}% deleted"
        echo "robson: ${ROBSON[0]} phases x ${ROBSON[1]} MiB, ${ROBSON[2]}% kept"
        echo "python: ${PYFRAG[0]} rounds x ${PYFRAG[1]} keys, ${PYFRAG[2]}% kept"
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
            for a in "${ALLOCATORS[@]}"; do run_one "$w" "$a" "$rep"; done
        done
    done
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
