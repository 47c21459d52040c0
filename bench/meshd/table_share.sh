#!/usr/bin/env bash
# The span table's share of a program's memory (issue 16): fragmenter heaps of several sizes
# under libmesh with a private meshd, before and after one meshing round.  For each, from
# /proc/PID/smaps the table's resident bytes (the libmesh-spans memfd) against the whole
# RSS, and from the table itself (read as root through /proc/PID/map_files) the records in
# use, the live spans, and the tombstones (records of spans meshed away, kept until their
# destination dies).  Run as root (map_files); BUILD names the build.
#   table_share.sh [objects ...]     (default 100000 400000 1600000)
set -euo pipefail
# shellcheck source=tests/integration/lib.sh source-path=SCRIPTDIR/../..
source "$(dirname "$0")/../../tests/integration/lib.sh"
trap 'exit 130' INT TERM
[ "$(id -u)" = 0 ] || { echo "table_share: run as root (it reads /proc/PID/map_files)" >&2; exit 2; }
printf 'enabled=0\n' >"$TMP/meshd.conf" # rounds only when asked: before and after are clear
start_meshd --config "$TMP/meshd.conf" || { echo "table_share: meshd did not start" >&2; exit 1; }

registered() { ctl stats "$1" >/dev/null 2>&1; }

# One line of numbers for the table of pid: rss_kib table_rss_kib hwm live tombstones record_size
measure() {
    /usr/bin/python3 - "$1" <<'PY'
import os, re, struct, sys
pid = sys.argv[1]
rss = table_rss = 0
cur = None
span = None
for line in open(f"/proc/{pid}/smaps"):
    m = re.match(r"([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)", line)
    if m:
        cur = m.group(3)
        if "libmesh-spans" in cur and span is None:
            span = (m.group(1), m.group(2))
        continue
    if line.startswith("Rss:"):
        kib = int(line.split()[1])
        rss += kib
        if cur and "libmesh-spans" in cur:
            table_rss += kib
with open(f"/proc/{pid}/map_files/{span[0]}-{span[1]}", "rb") as f:
    head = f.read(4096)
    _magic, _version, _hs, _ps, record_size, _maxr, hwm = struct.unpack_from("<QIIIIII", head, 0)
    live = tomb = 0
    left = hwm
    while left > 0:
        n = min(left, 65536)
        buf = f.read(n * record_size)
        for i in range(len(buf) // record_size):
            r = buf[i * record_size:(i + 1) * record_size]
            state, virt_count = r[67], r[68]  # struct mesh_span_record's offsets
            if state != 0:
                live += 1
                tomb += max(virt_count - 1, 0)
        left -= n
print(rss, table_rss, hwm, live, tomb, record_size)
PY
}

printf '| objects | when | RSS MiB | table resident KiB | share of RSS | records used | live spans | tombstones | bytes per live span |\n|---|---|---|---|---|---|---|---|---|\n'
for n in "${@:-100000 400000 1600000}"; do
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB "$FRAG" "$n" 25 hold >"$TMP/frag.out" &
    pid=$!
    PIDS+=("$pid")
    wait_for "$BOUND" grep -q 'holding until SIGUSR1' "$TMP/frag.out"
    wait_for "$BOUND" registered "$pid"
    for when in before after; do
        [ "$when" = after ] && ctl mesh "$pid" >/dev/null
        read -r rss trss hwm live tomb rsize < <(measure "$pid")
        /usr/bin/python3 -c "import sys; n,w,rss,t,h,l,tb,rs=sys.argv[1:]; rss,t,h,l,tb,rs=map(int,(rss,t,h,l,tb,rs)); print(f'| {n} | {w} | {rss/1024:.1f} | {t} | {100*t/rss:.2f}% | {h} | {l} | {tb} | {t*1024/max(l,1):.0f} |')" \
            "$n" "$when" "$rss" "$trss" "$hwm" "$live" "$tomb" "$rsize"
    done
    kill -USR1 "$pid"
    wait "$pid" || true
done
