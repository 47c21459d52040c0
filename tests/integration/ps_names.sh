#!/usr/bin/env bash
# meshctl ps names programs the way users know them: the name they were started as
# (Register.name, argv[0]'s last component), not /proc/PID/exe's target; --json and stats
# show both the name and the full exe.  A private meshd on a private socket; everything
# started here is stopped by pid on exit.
#
#   BUILD=/abs/build bash tests/integration/ps_names.sh [CASE...]
#
# Cases (default: all): symlink redis.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases symlink redis

echo enabled=0 >"$TMP/meshd.conf"
start_meshd --config "$TMP/meshd.conf" || die "meshd did not start"

# registered PID: meshctl stats PID answers.
# shellcheck disable=SC2317 # called through wait_for
registered() { ctl stats "$1" >/dev/null 2>&1; }

# check_names PID NAME EXE_SUFFIX: ps shows NAME for PID; ps --json and stats --json have
# name NAME and an exe ending in EXE_SUFFIX; plain stats shows both.
check_names() {
    local pid=$1 name=$2 exe=$3
    if ! wait_for "$BOUND" registered "$pid"; then
        fail "pid $pid ($name) did not register"
        return
    fi
    if ctl ps | awk -v p="$pid" '$1 == p {print $NF}' | grep -qx -- "$name"; then
        pass "ps shows $name for pid $pid"
    else
        fail "ps does not show $name for pid $pid: $(ctl ps)"
    fi
    ctl ps --json >"$TMP/ps.json"
    ctl stats "$pid" --json >"$TMP/stats.json"
    if python3 - "$TMP/ps.json" "$TMP/stats.json" "$pid" "$name" "$exe" >"$TMP/check.out" 2>&1 <<'PY'; then
import json, sys
ps, st, pid, name, exe = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3]), sys.argv[4], sys.argv[5]
p = [p for p in ps if p["pid"] == pid]
assert len(p) == 1, ps
for j in (p[0], st):
    assert j["name"] == name, j
    assert j["exe"].startswith("/") and j["exe"].endswith(exe), j
PY
        pass "ps --json and stats --json show name $name and exe ...$exe"
    else
        fail "json names: $(cat "$TMP/check.out")"
    fi
    if ctl stats "$pid" | head -n 1 | grep -q "name $name exe /.*$exe\$"; then
        pass "stats shows name and exe: $(ctl stats "$pid" | head -n 1)"
    else
        fail "stats first line: $(ctl stats "$pid" | head -n 1)"
    fi
}

# symlink: one of the suite's own programs started through a symlink under another name.
if want symlink; then
    ln -s "$FRAG" "$TMP/my-frag-alias"
    (MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB exec "$TMP/my-frag-alias" 100000 25 hold) >"$TMP/frag.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    check_names "$pid" my-frag-alias /fragmenter
    finish_fragmenter "$pid" "$TMP/frag.out" "the symlinked fragmenter's survivors are intact"
fi

# redis: Debian's redis-server is a symlink to redis-check-rdb.
if want redis; then
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        echo "SKIP: redis: no redis-server/redis-cli"
    else
        port=$((20000 + RANDOM % 20000))
        MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB redis-server --port "$port" --save '' --appendonly no \
            --dir "$TMP" >"$TMP/redis.log" 2>&1 &
        redis=$!
        PIDS+=("$redis")
        wait_for "$BOUND" redis-cli -p "$port" ping >/dev/null 2>&1 || fail "redis-server did not start"
        # The shim registers from an allocation after a second or at 16 MiB of heap: load it.
        python3 -c 'import sys
for i in range(50000): sys.stdout.write("SET k%d %s\n" % (i, "v" * 300))' |
            redis-cli -p "$port" >/dev/null
        exe=$(readlink -f "$(command -v redis-server)")
        check_names "$redis" redis-server "/${exe##*/}"
    fi
fi
exit "$FAILED"
