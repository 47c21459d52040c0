#!/usr/bin/env bash
# meshctl ps names programs the way users know them: the name they were started as
# (Register.name, argv[0]'s last component), not /proc/PID/exe's target; --json and stats
# show both the name and the full exe.  A private meshd on a private socket; everything
# started here is stopped by pid on exit.
#
#   BUILD=/abs/build bash tests/integration/ps_names.sh [CASE...]
#
# Cases (default: all): symlink redis oldshim hostile tty.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases symlink redis oldshim hostile tty

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
# fake_shim NAME EXE [NAME_FIELD]: a shim written in Python (hostile.py's helpers) that
# registers a valid empty span table with Register{exe: EXE} and, if given, name: NAME_FIELD
# (Python bytes expressions), then holds the connection; prints its ps --json entry's name
# once meshd lists it.
fake_shim() {
    python3 - "$(dirname "$0")" "$SOCK" "$1" "$2" "${3:-}" >"$TMP/fake.$1" 2>&1 <<'PY' &
import sys, time
sys.path.insert(0, sys.argv[1])
import hostile as h
path, exe, name = sys.argv[2], eval(sys.argv[4]), sys.argv[5]  # Python expressions of the test
content = h.header()
body = h.f_bytes(1, exe) + h.f_varint(2, len(content))
if name:
    body += h.f_bytes(3, eval(name))
s = h.connect(path)
h.socket.send_fds(s, [h.frame(h.envelope(h.REGISTER, body))], [h.memfd(content)])
print(h.register_outcome(s), flush=True)
time.sleep(600)
PY
    PIDS+=($!)
}

# listed_name PID: prints the name ps --json has for PID (fails if PID is not listed).
listed_name() {
    ctl ps --json | python3 -c 'import json,sys; print([p["name"] for p in json.load(sys.stdin) if p["pid"] == int(sys.argv[1])][0])' "$1" 2>/dev/null
}

# oldshim: a shim from before Register.name: meshd names it after exe's last component.
if want oldshim; then
    fake_shim old "b'/opt/old/bin/old-daemon'"
    pid=${PIDS[-1]}
    if wait_for "$BOUND" listed_name "$pid" >/dev/null && [ "$(listed_name "$pid")" = old-daemon ]; then
        pass "a Register without name is listed as exe's last component: old-daemon"
    else
        fail "old shim: $(cat "$TMP/fake.old"): $(ctl ps --json)"
    fi
fi

# hostile: name is the process's word: meshd keeps it printable and bounded.
if want hostile; then
    fake_shim bad "b'/bin/x'" "b'\\x1b[31mred' + bytes(range(1, 32)) * 100"
    pid=${PIDS[-1]}
    if wait_for "$BOUND" listed_name "$pid" >/dev/null &&
        listed_name "$pid" | python3 -c 'import sys
n = sys.stdin.read().rstrip("\n")
assert n.startswith("?[31mred?") and len(n) == 127 and all(0x20 <= ord(c) < 0x7f for c in n), repr(n)'; then
        pass "a hostile name is listed printable and cut to 127 bytes"
    else
        fail "hostile name: $(cat "$TMP/fake.bad"): $(listed_name "$pid")"
    fi
    if ctl ps | grep -q $'\x1b'; then
        fail "ps printed an escape byte"
    else
        pass "ps prints no control bytes"
    fi
fi
# tty: on a terminal COMMAND is cut to its width, but never inside the first word (the
# program's name); through a pipe nothing is cut.
if want tty; then
    fake_shim args "b'/bin/y'" "b'worker: ' + b'a' * 150"
    wpid=${PIDS[-1]}
    fake_shim long "b'/bin/z'" "b'L' * 120"
    lpid=${PIDS[-1]}
    wait_for "$BOUND" listed_name "$wpid" >/dev/null || fail "the fake shims did not register"
    wait_for "$BOUND" listed_name "$lpid" >/dev/null || fail "the fake shims did not register"
    script -qec "stty cols 100; $MESHCTL --socket $SOCK ps" /dev/null | tr -d '\r' >"$TMP/tty.txt"
    wline=$(awk -v p="$wpid" '$1 == p' "$TMP/tty.txt") lline=$(awk -v p="$lpid" '$1 == p' "$TMP/tty.txt")
    if [ ${#wline} = 100 ] && [[ $wline == *" worker: aaa"* ]]; then
        pass "on a 100-column terminal a long command line is cut to 100 columns"
    else
        fail "100 columns, arguments: ${#wline}: $wline"
    fi
    if [[ $lline == *" $(printf 'L%.0s' $(seq 120))" ]]; then
        pass "a name of 120 columns is not cut inside it"
    else
        fail "100 columns, long name: $lline"
    fi
    # meshd keeps 127 bytes of a name: 'worker: ' and 119 of the a's.
    if [ "$(ctl ps | awk -v p="$wpid" '$1 == p {print $NF}')" = "$(printf 'a%.0s' $(seq 119))" ]; then
        pass "through a pipe nothing is cut"
    else
        fail "pipe: $(ctl ps)"
    fi
fi
exit "$FAILED"
