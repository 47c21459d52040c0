#!/usr/bin/env bash
# meshctl's output formats: the documented keys of `stats --json` and `ps --json`, and the
# picture `map` draws.  A private meshd on a private socket; everything started here is
# stopped by pid on exit.
#
#   BUILD=/abs/build bash tests/integration/ctl_output.sh [CASE...]
#
# Cases (default: all): stats ps map errors holds.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases stats ps map errors holds
# Other users must reach the socket for the permission test (meshd decides, not the dir).
chmod 755 "$TMP"

# The automatic policy is off: a round between two meshctl calls would change the counts
# that the checks compare.
echo enabled=0 >"$TMP/meshd.conf"
start_meshd --config "$TMP/meshd.conf" || true # without a socket, every check below fails and says so

# A registered program with a fragmented heap, held until every case is done.
(MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB exec "$PROG/fragmenter" 100000 25 hold) >"$TMP/frag.out" 2>&1 &
FRAG_PID=$!
PIDS+=("$FRAG_PID")
frag_ready() { grep -q 'holding until' "$TMP/frag.out" 2>/dev/null && ctl stats "$FRAG_PID" >/dev/null 2>&1; }
wait_for "$BOUND" frag_ready || true # if not, every check below fails and says so

# stats --json: the documented keys, with the documented types, and sums that add up
case_stats() {
    if ctl stats "$FRAG_PID" --json >"$TMP/stats.json" &&
        python3 - "$TMP/stats.json" "$FRAG_PID" >"$TMP/check.out" 2>&1 <<'PY'; then
import json, sys
j = json.load(open(sys.argv[1]))
top = {"pid": int, "uid": int, "user": str, "name": str, "exe": str, "heap_bytes": int, "live_bytes": int,
       "meshes": int, "released_bytes": int, "map_breaks": int, "map_limit": int, "holds": int,
       "hold_p99_us": int, "hold_max_us": int, "holds_over_1ms": int, "barrier": str,
       "refused": str, "classes": list}
cls = {"size": int, "spans": int, "live_objects": int, "capacity_objects": int}
for k, t in top.items():
    assert k in j and isinstance(j[k], t), "key %s: %r" % (k, j.get(k))
assert j["pid"] == int(sys.argv[2]), j["pid"]
assert j["map_limit"] == 0 or j["map_breaks"] <= j["map_limit"], j
assert j["exe"].endswith("fragmenter"), j["exe"]
assert j["classes"], "no classes"
for c in j["classes"]:
    for k, t in cls.items():
        assert k in c and isinstance(c[k], t) and c[k] >= 0, "class key %s: %r" % (k, c)
    assert c["live_objects"] <= c["capacity_objects"], c
    assert c["spans"] > 0 and c["size"] > 0, c
sizes = [c["size"] for c in j["classes"]]
assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes
assert 0 < j["live_bytes"] and 0 < j["heap_bytes"], j
print("%d classes, heap %d, live %d" % (len(sizes), j["heap_bytes"], j["live_bytes"]))
PY
        pass "stats --json has the documented keys: $(cat "$TMP/check.out")"
    else
        fail "stats --json: $(cat "$TMP/check.out" 2>/dev/null) $(cat "$TMP/stats.json")"
    fi
}

# ps --json: a list of objects with the same keys but classes
case_ps() {
    if ctl ps --json >"$TMP/ps.json" &&
        python3 - "$TMP/ps.json" "$FRAG_PID" >"$TMP/check.out" 2>&1 <<'PY'; then
import json, sys
j = json.load(open(sys.argv[1]))
assert isinstance(j, list) and len(j) == 1, j
p = j[0]
assert set(p) == {"pid", "uid", "user", "name", "exe", "heap_bytes", "live_bytes", "meshes", "released_bytes",
                  "map_breaks", "map_limit", "holds", "hold_p99_us", "hold_max_us", "holds_over_1ms", "barrier", "refused"}, p
assert p["pid"] == int(sys.argv[2])
PY
        pass "ps --json has the documented keys"
    else
        fail "ps --json: $(cat "$TMP/check.out") $(cat "$TMP/ps.json")"
    fi
}

# map: one row per class of stats, each with a 10-cell bar of shade characters, plain
# ASCII, and totals that match stats
case_map() {
    if ctl map "$FRAG_PID" >"$TMP/map.txt" && ctl stats "$FRAG_PID" --json >"$TMP/stats.json" &&
        python3 - "$TMP/map.txt" "$TMP/stats.json" >"$TMP/check.out" 2>&1 <<'PY'; then
import json, re, sys
text = open(sys.argv[1], "rb").read()
assert all(b == 10 or 32 <= b < 127 for b in text), "not plain ASCII"
text = text.decode()
st = json.load(open(sys.argv[2]))
rows = re.findall(r"^ *(\d+) +(\d+) \|([ .:\-=+*#%@]{10})\| +([\d.]+)%", text, re.M)
assert len(rows) == len(st["classes"]), (len(rows), len(st["classes"]))
for (size, spans, bar, used), c in zip(rows, st["classes"]):
    assert int(size) == c["size"], (size, c)
    assert bar.strip(), "an empty bar for a class with spans: %r" % bar
    assert "@" in bar, "the busiest cell of a row is '@': %r" % bar
    if c["capacity_objects"]:
        want = 100.0 * c["live_objects"] / c["capacity_objects"]
        assert abs(float(used) - want) < 0.2, (used, want)
assert re.search(r"^ +all +\d+ \|[ .:\-=+*#%@]{10}\|", text, re.M), "no 'all' row"
assert "legend:" in text and "totals:" in text
assert "heap_bytes %d" % st["heap_bytes"] in text and "live_bytes %d" % st["live_bytes"] in text
print("%d rows" % len(rows))
PY
        pass "map draws every class: $(cat "$TMP/check.out")"
    else
        fail "map: $(cat "$TMP/check.out" 2>/dev/null)"
        cat "$TMP/map.txt" 2>/dev/null || true
    fi
}

# map errors: the same as stats
case_errors() {
    expect_error "map of an unknown pid" 'no such registered process' ctl map 999999
    if [ "$(id -u)" = 0 ]; then
        expect_error "map of another user's process" 'permission denied' \
            timeout 60 setpriv --reuid=nobody --regid=nogroup --clear-groups \
            "$MESHCTL" --socket "$SOCK" map "$FRAG_PID"
    else
        echo "SKIP: map permission test needs root"
    fi
    if timeout 60 "$MESHCTL" --socket "$TMP/nothing.sock" map 1 >/dev/null 2>"$TMP/err.txt"; then
        fail "map with no daemon succeeded"
    elif grep -q 'cannot reach meshd at' "$TMP/err.txt"; then
        pass "map with no daemon: $(cat "$TMP/err.txt")"
    else
        fail "map with no daemon: $(cat "$TMP/err.txt")"
    fi
    for args in "map" "map abc" "map 1 2" "map 1 --json"; do
        # shellcheck disable=SC2086 # word splitting is the point
        if ctl $args >/dev/null 2>&1; then
            fail "meshctl $args succeeded"
        else
            pass "meshctl $args is refused"
        fi
    done
}

# holds: after an explicit round, stats --json counts the round's barrier holds (one per
# pair meshed alone, one per run of neighbouring pairs), as meshd's log says, with a p99
# bound and a longest hold.  Last: it meshes the fragmenter.
case_holds() {
    if ctl mesh "$FRAG_PID" >"$TMP/round.out" 2>&1 && ctl stats "$FRAG_PID" --json >"$TMP/holds.json" &&
        logged=$(sed -n "s/^meshd: pid $FRAG_PID: round [0-9]*: .* in \([0-9]*\) holds, .*/\1/p" "$TMP/meshd.log") &&
        python3 - "$TMP/holds.json" "$logged" >"$TMP/check.out" 2>&1 <<'PY'; then
import json, sys
j = json.load(open(sys.argv[1]))
logged = sum(int(x) for x in sys.argv[2].split())
assert j["meshes"] > 0, j
assert 0 < j["holds"] <= j["meshes"], j
assert j["holds"] == logged, (j["holds"], logged)
assert j["hold_p99_us"] >= 1 and j["hold_max_us"] >= 0, j
# Over 1 ms: no more than the holds, and none unless the longest hold was that long.
assert 0 <= j["holds_over_1ms"] <= j["holds"], j
assert j["holds_over_1ms"] == 0 or j["hold_max_us"] >= 1000, j
print("%d meshes in %d holds, p99 <= %d us, max %d us, %d over 1 ms" % (j["meshes"], j["holds"], j["hold_p99_us"], j["hold_max_us"], j["holds_over_1ms"]))
PY
        pass "stats --json counts barrier holds: $(cat "$TMP/check.out")"
    else
        fail "holds: $(cat "$TMP/round.out" "$TMP/check.out" 2>/dev/null) $(cat "$TMP/holds.json" 2>/dev/null)"
    fi
}

if want stats; then case_stats; fi
if want ps; then case_ps; fi
if want map; then case_map; fi
if want errors; then case_errors; fi
if want holds; then case_holds; fi
release "$FRAG_PID"
wait_exit "$FRAG_PID"

if [ $FAILED != 0 ]; then
    echo "--- meshd log"
    tail -40 "$TMP/meshd.log"
    exit 1
fi
echo "ctl_output: all passed"
