#!/usr/bin/env bash
# Allocator benchmarks: every workload under glibc, jemalloc, mimalloc, tcmalloc
# and libmesh, interleaved (for each repetition, for each workload, for each
# allocator) so that machine noise hits every allocator alike.  Prints markdown
# tables of medians with ratios to jemalloc and writes them to $BUILD/bench/report.md.
#
# Run by `make bench`, which sets MESH_LIB and BUILD.  Knobs:
#   BENCH_REPS=3             repetitions of every (workload, allocator) pair
#   BENCH_ONLY="mixed ..."   run only these workloads (default: all)
#   BENCH_TIMEOUT=120        seconds before a run is killed and counted as failed
#   BENCH_PYTHON=/usr/bin/python3   interpreter for the python workload
#   BENCH_SYSCALLS=1         0: skip the system-call counting pass (strace)
# Exits non-zero if any run failed, so a broken allocator fails `make bench`.
set -euo pipefail
# Only the runner's child may run on an allocator under test: not this script,
# not the compiler, not the runner itself.
unset LD_PRELOAD

: "${MESH_LIB:?MESH_LIB must name the libmesh.so to measure}"
: "${BUILD:?BUILD must name the build directory}"
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$BUILD/bench
BIN=$OUT/bin
LOGS=$OUT/logs
RESULTS=$OUT/results.tsv
SYSCALL_RESULTS=$OUT/syscalls.tsv
# forkbench's own measures, in results.tsv's layout: workload, allocator, rep, ok,
# fork_ms, child_ready_ms, child_rss_mib, child_pss_mib.
FORK_RESULTS=$OUT/fork.tsv
REPS=${BENCH_REPS:-3}
TIMEOUT=${BENCH_TIMEOUT:-120}
# Debian's interpreter, not whatever python3 is first in PATH: a pyenv shim is a
# bash script, and bash and pyenv would then run, and be measured, under the preload.
PYTHON=${BENCH_PYTHON:-/usr/bin/python3}
CFLAGS=(-std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -pthread)
CXXFLAGS=(-std=c++17 -O2 -Wall -Wextra -Werror -pthread)
LIBDIR=/usr/lib/x86_64-linux-gnu
BASELINE=jemalloc
SECOND_BASELINE=mimalloc # a second geomean row, against the fastest allocator
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)

# Allocators, in column order, with the library each preloads (glibc: none).
ALLOCATORS=(glibc jemalloc mimalloc tcmalloc libmesh)
declare -A PRELOAD=(
    [glibc]=""
    [jemalloc]=$LIBDIR/libjemalloc.so.2
    [mimalloc]=$LIBDIR/libmimalloc.so.2
    [tcmalloc]=$LIBDIR/libtcmalloc_minimal.so.4
    [libmesh]=$MESH_LIB
)

# Workloads, in row order: `workload NAME [VAR=VALUE...] COMMAND [ARG...]`.
# Every bench/*.c (and *.cpp) is compiled to $BIN/<file name>, so a new C or C++
# workload is its source plus one line here.  A run passes if it exits 0; it may print
# "checksum: X", which must then be the same in every run of that workload,
# "ops/s: N", which goes into the throughput table, and "ops: N", the operations of a
# run (a malloc and a free count as 2), which futex calls are divided by.
WORKLOADS=()
declare -A COMMAND=()
workload() {
    local name=$1 IFS=$'\x1f' # a separator no path or argument contains
    shift
    WORKLOADS+=("$name")
    COMMAND[$name]="$*"
}
workload mixed    "$BIN/mixed"
workload larson   "$BIN/larson"
workload prodcons "$BIN/prodcons"
workload realloc  "$BIN/realloc"
workload python   PYTHONMALLOC=malloc PYTHONHASHSEED=0 "$PYTHON" "$SRC/pyalloc.py"
# Bursts: the heap swings from nothing to its peak and back, over and over (page churn).
workload churn1   "$BIN/churn" 1
workload churn2   "$BIN/churn" 2
workload pyburst1 PYTHONMALLOC=malloc PYTHONHASHSEED=0 "$PYTHON" "$SRC/pyburst.py" 1
workload pyburst2 PYTHONMALLOC=malloc PYTHONHASHSEED=0 "$PYTHON" "$SRC/pyburst.py" 2
# C++: every allocation through operator new/delete (libmesh's own since cxx_new.c).
workload cxxalloc "$BIN/cxxalloc"
# fork() of a 100 MiB and a 1 GiB live heap, five forks each (its own table: fork_ms...).
workload fork100m "$BIN/forkbench" 100 5
workload fork1g   "$BIN/forkbench" 1024 5

FAILURES=()
SKIPPED=()

fail() {
    FAILURES+=("$*")
    echo "FAIL: $*" >&2
}

# Checks the knobs; sets SELECTED to the workloads in BENCH_ONLY (default all).
SELECTED=()
check_settings() {
    local name names
    if [[ ! $REPS =~ ^[1-9][0-9]*$ || ! $TIMEOUT =~ ^[1-9][0-9]*$ ]]; then
        echo "bench: BENCH_REPS and BENCH_TIMEOUT must be positive integers" >&2
        exit 2
    fi
    read -r -a names <<<"${BENCH_ONLY:-${WORKLOADS[*]}}"
    for name in "${names[@]}"; do
        if [[ -z ${COMMAND[$name]+set} ]]; then
            echo "bench: unknown workload '$name' in BENCH_ONLY (known: ${WORKLOADS[*]})" >&2
            exit 2
        fi
        SELECTED+=("$name")
    done
    if [[ " ${SELECTED[*]} " == *" py"* && ! -x $PYTHON ]]; then
        echo "bench: $PYTHON not found; set BENCH_PYTHON or leave python and pyburst* out of BENCH_ONLY" >&2
        exit 2
    fi
}

compile() {
    local src
    mkdir -p "$BIN"
    for src in "$SRC"/*.c; do
        cc "${CFLAGS[@]}" "$src" -o "$BIN/$(basename "$src" .c)"
    done
    for src in "$SRC"/*.cpp; do
        c++ "${CXXFLAGS[@]}" "$src" -o "$BIN/$(basename "$src" .cpp)"
    done
}

# True if the allocator's library exists and really replaces malloc: ld.so
# ignores a preload it cannot load, and the column would silently be glibc.
allocator_usable() {
    local name=$1 lib=${PRELOAD[$1]} provider
    [[ -z $lib ]] && return 0
    if [[ ! -e $lib ]]; then
        SKIPPED+=("$name ($lib not found)")
        echo "bench: $lib not found: skipping $name" >&2
        return 1
    fi
    provider=$("$BIN/runner" -p "$lib" -o /dev/null "$BIN/whichmalloc" 2>&1) || true
    if [[ $provider != "$(realpath "$lib")" ]]; then
        fail "$name: preloading $lib does not replace malloc (malloc comes from: $provider)"
        return 1
    fi
}

# Reads runner's key=value result line into the associative array RUN.
declare -A RUN
read_result() {
    local field fields
    RUN=()
    [[ -s $1 ]] && read -r -a fields <"$1" || return 1
    for field in "${fields[@]}"; do
        RUN[${field%%=*}]=${field#*=}
    done
}

# First line "KEY: value" of a run's output, or "-".
output_value() {
    sed -n "s|^$1: ||p" "$2" | head -n 1 | grep . || echo -
}

describe_failure() {
    if [[ ${RUN[timeout]:-0} == 1 ]]; then
        echo "timed out after ${TIMEOUT} s"
    elif [[ ${RUN[signal]:-0} != 0 ]]; then
        echo "killed by signal ${RUN[signal]}"
    elif [[ -n ${RUN[exit]:-} ]]; then
        echo "exit status ${RUN[exit]}"
    else
        echo "runner failed"
    fi
}

# The first checksum a workload prints is the reference for all its other runs.
declare -A CHECKSUM CHECKSUM_FROM
checksum_ok() {
    local workload=$1 who=$2 sum=$3
    [[ $sum == - ]] && return 0
    if [[ -z ${CHECKSUM[$workload]:-} ]]; then
        CHECKSUM[$workload]=$sum
        CHECKSUM_FROM[$workload]=$who
    fi
    [[ $sum == "${CHECKSUM[$workload]}" ]]
}

# Runs one workload under one allocator and appends a row to $RESULTS:
# workload, allocator, rep, ok (1/0), wall s, maxrss KiB, minor faults, ops/s, user s, sys s.
run_one() {
    local workload=$1 alloc=$2 rep=$3 ok=1 status=0 cmd sum log=$LOGS/$1.$2.$3
    IFS=$'\x1f' read -r -a cmd <<<"${COMMAND[$workload]}"
    "$BIN/runner" -p "${PRELOAD[$alloc]}" -o "$log.result" -t "$TIMEOUT" "${cmd[@]}" \
        >"$log.out" 2>"$log.err" || status=$?
    read_result "$log.result" || status=2
    if ((status)); then
        ok=0
        fail "$workload under $alloc (rep $rep): $(describe_failure); see $log.err"
        tail -n 5 "$log.err" | sed 's/^/    /' >&2
    fi
    sum=$(output_value checksum "$log.out")
    if [[ $ok == 1 ]] && ! checksum_ok "$workload" "$alloc rep $rep" "$sum"; then
        ok=0
        fail "$workload under $alloc (rep $rep): checksum $sum differs from" \
            "${CHECKSUM[$workload]} (${CHECKSUM_FROM[$workload]})"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$alloc" "$rep" "$ok" \
        "${RUN[wall_s]:--}" "${RUN[maxrss_kib]:--}" "${RUN[minflt]:--}" \
        "$(output_value 'ops/s' "$log.out")" "${RUN[user_s]:--}" "${RUN[sys_s]:--}" >>"$RESULTS"
    if [[ $workload == fork* ]]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$alloc" "$rep" "$ok" \
            "$(output_value fork_ms "$log.out")" "$(output_value child_ready_ms "$log.out")" \
            "$(output_value child_rss_mib "$log.out")" \
            "$(output_value child_pss_mib "$log.out")" >>"$FORK_RESULTS"
    fi
    printf '[%s/%s] %-9s %-9s %8s s %8s KiB  %s\n' "$rep" "$REPS" "$workload" "$alloc" \
        "${RUN[wall_s]:--}" "${RUN[maxrss_kib]:--}" "$([[ $ok == 1 ]] && echo ok || echo FAILED)" >&2
}

# ---- the system-call counting pass ----------------------------------------------------
#
# After the timed repetitions, every (workload, allocator) pair runs once more under
# `strace -f --seccomp-bpf -c`, tracing only the calls below: the allocator's own (memory
# mapping, page release, heap growth) and futex, whose count shows lock contention (the
# program's own locks and, for python, the GIL count too: compare columns, not absolutes).
# The stops strace makes would distort times, hence a separate pass; seccomp-bpf stops
# the program only at the traced calls.  The counts are the whole process's, the program's
# own few mmaps included.  strace runs without the preload (runner -p is not used), and
# hands LD_PRELOAD to the program with -E.
COUNTED_CALLS=(mmap munmap mremap madvise fallocate mprotect brk futex)
MEMORY_CALLS=(mmap munmap mremap madvise fallocate mprotect brk) # summed in one table
COUNT_SYSCALLS=0

# Sets COUNT_SYSCALLS=1 if BENCH_SYSCALLS allows and strace can trace here (ptrace may be
# forbidden in a container; --seccomp-bpf needs strace >= 5.3).
syscall_counting_usable() {
    [[ ${BENCH_SYSCALLS:-1} == 0 ]] && return
    if ! command -v strace >/dev/null; then
        SKIPPED+=("system-call counts (no strace)")
        return
    fi
    if ! strace -f --seccomp-bpf -qq -c -o /dev/null -e trace=futex true 2>/dev/null; then
        SKIPPED+=("system-call counts (strace cannot trace here)")
        return
    fi
    COUNT_SYSCALLS=1
}

# count_one WORKLOAD ALLOCATOR: one run under strace; appends a row to $SYSCALL_RESULTS:
# workload, allocator, 1, ok, memory calls, futex, futex per million ops, then each of
# COUNTED_CALLS.  A failed run is listed with the failures like a timed one.
count_one() {
    local workload=$1 alloc=$2 ok=1 status=0 cmd env_words=() preload=() log=$LOGS/$1.$2.strace
    local trace memory=0 futex ops per_mops name counts=()
    IFS=$'\x1f' read -r -a cmd <<<"${COMMAND[$workload]}"
    while [[ ${cmd[0]} == *=* ]]; do # NAME=VALUE words go to the runner, before strace
        env_words+=("${cmd[0]}")
        cmd=("${cmd[@]:1}")
    done
    [[ -n ${PRELOAD[$alloc]} ]] && preload=(-E "LD_PRELOAD=${PRELOAD[$alloc]}")
    trace=$(IFS=,; echo "${COUNTED_CALLS[*]}")
    "$BIN/runner" -o "$log.result" -t "$((4 * TIMEOUT))" "${env_words[@]}" \
        strace -f --seccomp-bpf -qq -c -U name,calls -o "$log.counts" -e "trace=$trace" \
        "${preload[@]}" "${cmd[@]}" >"$log.out" 2>"$log.err" || status=$?
    read_result "$log.result" || status=2
    if ((status)); then
        ok=0
        fail "$workload under $alloc (strace counting run): $(describe_failure); see $log.err"
    fi
    declare -A calls=()
    while read -r name n; do calls[$name]=$n; done < <(
        awk 'NF == 2 && $2 ~ /^[0-9]+$/ && $1 != "total" { print $1, $2 }' "$log.counts" 2>/dev/null)
    for name in "${MEMORY_CALLS[@]}"; do memory=$((memory + ${calls[$name]:-0})); done
    futex=${calls[futex]:-0}
    for name in "${COUNTED_CALLS[@]}"; do counts+=("${calls[$name]:-0}"); done
    ops=$(output_value ops "$log.out")
    per_mops=-
    [[ $ops =~ ^[1-9][0-9]*$ ]] && per_mops=$(awk -v f="$futex" -v o="$ops" 'BEGIN { printf "%.3f", f * 1e6 / o }')
    [[ $ok == 1 ]] || memory=- futex=-
    printf '%s\t%s\t1\t%s\t%s\t%s\t%s' "$workload" "$alloc" "$ok" "$memory" "$futex" "$per_mops" >>"$SYSCALL_RESULTS"
    printf '\t%s' "${counts[@]}" >>"$SYSCALL_RESULTS"
    printf '\n' >>"$SYSCALL_RESULTS"
    printf '[count] %-9s %-9s memory calls %6s  futex %7s  %s\n' "$workload" "$alloc" "$memory" \
        "$futex" "$([[ $ok == 1 ]] && echo ok || echo FAILED)" >&2
}

# One table of each run's counts of every call in COUNTED_CALLS, a cell per allocator.
syscall_breakdown() {
    local w="$1" a="$2"
    echo
    echo "### System calls per run, by call: $(IFS=/; echo "${COUNTED_CALLS[*]}")"
    echo
    awk -F '\t' -v workloads="$w" -v allocs="$a" -v ncalls="${#COUNTED_CALLS[@]}" '
        { key = $1 SUBSEP $2; ok[key] = $4; row[key] = $8; for (i = 9; i < 8 + ncalls; i++) row[key] = row[key] "/" $i }
        END {
            nw = split(workloads, W, " "); na = split(allocs, A, " ")
            printf "| workload |"; for (j = 1; j <= na; j++) printf " %s |", A[j]
            printf "\n|---|"; for (j = 1; j <= na; j++) printf "---:|"
            printf "\n"
            for (i = 1; i <= nw; i++) {
                printf "| %s |", W[i]
                for (j = 1; j <= na; j++) {
                    k = W[i] SUBSEP A[j]
                    printf " %s |", !(k in ok) ? "-" : ok[k] == 1 ? row[k] : "FAIL"
                }
                printf "\n"
            }
        }' "$SYSCALL_RESULTS"
}

# The largest relative spread of wall times between repetitions of one pair:
# identical allocators can differ by tens of percent on a busy machine, and a
# ratio means little when it is within this.
largest_spread() {
    awk -F '\t' '$4 == 1 {
        k = $1 " under " $2
        if (!(k in lo) || $5 < lo[k]) lo[k] = $5
        if ($5 > hi[k]) hi[k] = $5
    }
    END {
        for (k in lo)
            if (lo[k] > 0 && (hi[k] - lo[k]) / lo[k] >= worst) { worst = (hi[k] - lo[k]) / lo[k]; which = k }
        if (which != "") printf "%.0f%% (%s)\n", 100 * worst, which
        else print "n/a"
    }' "$RESULTS"
}

package_version() {
    dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "not installed"
}

machine_facts() {
    local cpu rev
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    rev=$(git -C "$SRC" describe --always --dirty 2>/dev/null || echo "no commit")
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $cpu, $(nproc) CPUs, Linux $(uname -r)"
    echo "- glibc: $(getconf GNU_LIBC_VERSION | cut -d' ' -f2)"
    echo "- jemalloc: libjemalloc2 $(package_version libjemalloc2)"
    echo "- mimalloc: libmimalloc2.0 $(package_version libmimalloc2.0)"
    echo "- tcmalloc: libtcmalloc-minimal4 $(package_version libtcmalloc-minimal4)"
    echo "- libmesh: $MESH_LIB (tree $rev)"
    if [[ -x $PYTHON ]]; then echo "- python: $("$PYTHON" --version 2>&1)"; fi
    echo "- load average (1 min) at start and end: $LOAD_START, $(cut -d' ' -f1 /proc/loadavg)"
    echo "- repetitions: $REPS; each cell is the median, with its ratio to $BASELINE's in ()"
    if ((COUNT_SYSCALLS)); then
        echo "- system calls: counted in one more run of each pair under strace -f --seccomp-bpf -c"
    fi
    echo "- largest spread of wall time between repetitions: $(largest_spread)"
    if ((${#SKIPPED[@]})); then echo "- skipped: ${SKIPPED[*]}"; fi
}

# One markdown table from $RESULTS (or the file given as a 7th argument).  Arguments:
# title, results column, its divisor to the display unit, printf format of a value,
# workloads, allocators.
table() {
    awk -F '\t' -v title="$1" -v col="$2" -v div="$3" -v fmt="$4" \
        -v workloads="$5" -v allocs="$6" -v baseline="$BASELINE" -v second="$SECOND_BASELINE" \
        -f "$SRC/table.awk" "${7:-$RESULTS}"
}

report() {
    local w="$1" a="$2" f
    machine_facts
    table "Wall time (lower is better)" 5 1 "%.2f s" "$w" "$a"
    table "User CPU time (lower is better)" 9 1 "%.2f s" "$w" "$a"
    table "System CPU time (lower is better)" 10 1 "%.2f s" "$w" "$a"
    table "Peak RSS (lower is better)" 6 1024 "%.1f MiB" "$w" "$a"
    table "Minor page faults (lower is better)" 7 1000 "%.1fk" "$w" "$a"
    table "Throughput, a malloc and a free counted as 2 ops (higher is better)" 8 1000000 \
        "%.2f M/s" "$w" "$a"
    if ((COUNT_SYSCALLS)); then
        table "Memory system calls per run: $(IFS=+; echo "${MEMORY_CALLS[*]}") (lower is better)" \
            5 1 "%d" "$w" "$a" "$SYSCALL_RESULTS"
        table "futex calls per run (lower is better)" 6 1 "%d" "$w" "$a" "$SYSCALL_RESULTS"
        table "futex calls per million ops: lock contention (lower is better)" 7 1 "%.1f" \
            "$w" "$a" "$SYSCALL_RESULTS"
        syscall_breakdown "$w" "$a"
    fi
    if [[ -s $FORK_RESULTS ]]; then
        table "fork(): time to return in the parent" 5 1 "%.1f ms" "$w" "$a" "$FORK_RESULTS"
        table "fork(): the child's RSS once it read its heap" 7 1 "%.0f MiB" "$w" "$a" "$FORK_RESULTS"
        table "fork(): the child's Pss then (shared pages count half)" 8 1 \
            "%.0f MiB" "$w" "$a" "$FORK_RESULTS"
    fi
    if ((${#FAILURES[@]})); then
        echo
        echo "### Failures"
        echo
        for f in "${FAILURES[@]}"; do echo "- $f"; done
    fi
}

main() {
    local rep workload alloc active=()
    check_settings
    compile
    rm -rf "$LOGS" "$RESULTS" "$SYSCALL_RESULTS" "$FORK_RESULTS"
    mkdir -p "$LOGS"
    for alloc in "${ALLOCATORS[@]}"; do
        if allocator_usable "$alloc"; then active+=("$alloc"); fi
    done
    for ((rep = 1; rep <= REPS; rep++)); do
        for workload in "${SELECTED[@]}"; do
            for alloc in "${active[@]}"; do
                run_one "$workload" "$alloc" "$rep"
            done
        done
    done
    syscall_counting_usable
    if ((COUNT_SYSCALLS)); then
        for workload in "${SELECTED[@]}"; do
            for alloc in "${active[@]}"; do
                count_one "$workload" "$alloc"
            done
        done
    fi
    report "${SELECTED[*]}" "${active[*]}" | tee "$OUT/report.md"
    if ((${#FAILURES[@]})); then
        echo "bench: ${#FAILURES[@]} failure(s); see above" >&2
        exit 1
    fi
}

main
