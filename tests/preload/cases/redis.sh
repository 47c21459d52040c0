#!/usr/bin/env bash
# Preload suite, redis case.  Unlike the other cases this script itself runs under
# glibc in both runs; only redis-server is preloaded, and only when
# MESH_CASE_MODE=mesh.  Clients (redis-benchmark, redis-cli) always run under glibc.
#
# Start redis-server on a free loopback port in this private directory, drive it with
# redis-benchmark (its timing output is not compared, only its exit status), load a
# data set through redis-cli --pipe (many sizes, big values, hashes, lists, sets,
# sorted sets), delete a third and add more (fragmentation), read it back, stop the
# server by pid and print its exit status.  Preloaded run: $MESH_LIB must be in
# /proc/<pid>/maps while the server runs, and the server's pid goes to $MESH_PIDS so
# the harness requires its exit-time stats line in $MESH_STATS_FILE (the server's
# stderr is copied to ours at the end, so anything the shim says there is compared).  Debian's redis-server links libjemalloc; preloading replaces
# malloc/free/realloc/malloc_usable_size, redis still calls jemalloc's nallocx/mallctl.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$PRELOAD_CASES/lib.sh"

mode=${MESH_CASE_MODE:?}
spid=
port=

# stop_server: SIGTERM (redis then exits normally), reap it, SIGKILL if it hangs (120 s:
# a bound for a hang, never for a loaded machine).
# Polls /proc/PID/stat because kill -0 succeeds on a zombie.
server_status=
stop_server() {
    local state end=$((SECONDS + 120))
    [[ -n $spid ]] || return 0
    kill -TERM "$spid" 2>/dev/null || true
    while :; do
        state=$(sed 's/.*) //' "/proc/$spid/stat" 2>/dev/null | cut -d' ' -f1) || state=
        [[ -z $state || $state == Z ]] && break
        ((SECONDS < end)) || break
        sleep 0.1
    done
    if [[ -n $state && $state != Z ]]; then
        echo "redis-server pid $spid ignored SIGTERM for 120s; killing it" >&2
        kill -KILL "$spid" 2>/dev/null || true
    fi
    server_status=0
    wait "$spid" || server_status=$?
    spid=
}
trap stop_server EXIT
trap 'exit 143' TERM HUP
trap 'exit 130' INT

cli() {
    timeout 300 redis-cli -h 127.0.0.1 -p "$port" "$@"
}

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# start_server: up to 5 attempts (another process may grab the port meanwhile); each waits
# up to 120 s for the server to answer.
start_server() {
    local attempt end
    local -a cmd pre=()
    if [[ $mode == mesh ]]; then
        pre=(env "LD_PRELOAD=$MESH_LIB" "MESH_SHOW_STATS=${MESH_STATS_FILE:?}")
    fi
    mkdir -p data
    for ((attempt = 0; attempt < 5; attempt++)); do
        port=$(free_port)
        cmd=(redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no
            --dir "$PWD/data" --logfile "$PWD/redis.log" --daemonize no
            --enable-debug-command local --protected-mode yes)
        "${pre[@]}" "${cmd[@]}" >>server.stdout 2>>server.stderr </dev/null &
        spid=$!
        end=$((SECONDS + 120))
        while ((SECONDS < end)); do
            if [[ $(cli ping 2>/dev/null) == PONG ]]; then
                return 0
            fi
            kill -0 "$spid" 2>/dev/null || break
            sleep 0.1
        done
        stop_server
        if ! grep -q 'Address already in use' redis.log 2>/dev/null; then
            break
        fi
    done
    echo "redis-server did not start; log:" >&2
    tail -n 20 redis.log server.stderr >&2 || true
    exit 1
}

start_server
if [[ $mode == mesh ]]; then
    echo "$spid" >>"$MESH_PIDS"
    if ! grep -qF -- "$MESH_LIB_REAL" "/proc/$spid/maps"; then
        echo "redis-server pid $spid: $MESH_LIB_REAL is not in /proc/$spid/maps" >&2
        exit 3
    fi
    echo "redis-server pid $spid maps $MESH_LIB_REAL" >maps.ok
fi

brc=0
timeout 600 redis-benchmark -h 127.0.0.1 -p "$port" -q -n 20000 -t set,get,lpush,lpop,incr \
    >bench.out 2>&1 </dev/null || brc=$?
echo "redis-benchmark exit $brc"
echo "after benchmark: dbsize $(cli dbsize) counter $(cli get counter:__rand_int__)" \
    "key $(cli get key:__rand_int__) mylist $(cli llen mylist)"

# The data set, in RESP (values may be larger than the inline-command limit).
awk 'function cmd(n, a,    i) {
        printf "*%d\r\n", n
        for (i = 1; i <= n; i++) printf "$%d\r\n%s\r\n", length(a[i]), a[i]
     }
     function val(i, len,    s) {
        s = "v" i ":"
        while (length(s) < len) s = s s
        return substr(s, 1, len)
     }
     BEGIN {
        for (i = 0; i < 40000; i++) {           # strings of many sizes
            a[1] = "SET"; a[2] = "str:" i; a[3] = val(i, 1 + (i * 37) % 900); cmd(3, a)
        }
        for (i = 0; i < 120; i++) {             # large values: 20 KiB .. 260 KiB
            a[1] = "SET"; a[2] = "big:" i; a[3] = val(i, 20480 + i * 2048); cmd(3, a)
        }
        for (h = 0; h < 600; h++) {             # small (listpack) and large (hashtable) hashes
            a[1] = "HSET"; a[2] = "hash:" h; n = 2
            for (f = 0; f < 10 + (h % 5) * 60; f++) { a[++n] = "f" f; a[++n] = val(h * f, 1 + f % 90) }
            cmd(n, a)
        }
        for (l = 0; l < 300; l++) {             # lists
            a[1] = "RPUSH"; a[2] = "list:" l; n = 2
            for (e = 0; e < 200; e++) a[++n] = val(l + e, 1 + (l * e) % 120)
            cmd(n, a)
        }
        for (s = 0; s < 200; s++) {             # sets (intset and hashtable)
            a[1] = "SADD"; a[2] = "set:" s; n = 2
            for (e = 0; e < 150; e++) a[++n] = (s % 2) ? e * s : "m" e * 7
            cmd(n, a)
        }
        for (z = 0; z < 200; z++) {             # sorted sets
            a[1] = "ZADD"; a[2] = "zset:" z; n = 2
            for (e = 0; e < 200; e++) { a[++n] = (e * 7919) % 1000; a[++n] = "member" e }
            cmd(n, a)
        }
     }' >load.resp
awk 'function cmd(n, a,    i) {
        printf "*%d\r\n", n
        for (i = 1; i <= n; i++) printf "$%d\r\n%s\r\n", length(a[i]), a[i]
     }
     BEGIN {
        for (i = 0; i < 40000; i += 3) { a[1] = "DEL"; a[2] = "str:" i; cmd(2, a) }
        for (i = 0; i < 120; i += 2) { a[1] = "DEL"; a[2] = "big:" i; cmd(2, a) }
        for (i = 0; i < 20000; i++) {
            a[1] = "SET"; a[2] = "new:" i; a[3] = sprintf("%0" (1 + (i * 53) % 3000) "d", i); cmd(3, a)
        }
        for (i = 1; i < 40000; i += 7) {
            a[1] = "APPEND"; a[2] = "str:" i; a[3] = sprintf("%0" (i % 500 + 1) "d", i); cmd(3, a)
        }
        for (l = 0; l < 300; l += 2) { a[1] = "LTRIM"; a[2] = "list:" l; a[3] = 50; a[4] = 120; cmd(4, a) }
     }' >churn.resp

cli --pipe <load.resp >pipe1.out
cli --pipe <churn.resp >pipe2.out
for f in pipe1.out pipe2.out; do
    grep -E '^errors: [0-9]+, replies: [0-9]+' "$f" || echo "$f: no summary"
done

echo "dbsize $(cli dbsize)"
cli info keyspace | tr -d '\r' | grep '^db'
echo "debug digest $(cli debug digest)"
{
    for ((i = 0; i < 40000; i += 40)); do printf 'str:%d ' "$i"; done
    echo
} | xargs timeout 300 redis-cli -h 127.0.0.1 -p "$port" mget | digest | sed 's/^/mget str: /'
for ((i = 1; i < 120; i += 2)); do cli strlen "big:$i"; done | digest | sed 's/^/big strlen: /'
cli get big:119 | digest | sed 's/^/big:119: /'
cli get new:19999 | cut -c1-40
cli get str:1 | cut -c1-60
for h in 0 1 4 599; do
    echo "hash:$h len $(cli hlen "hash:$h") $(cli hmget "hash:$h" f0 f3 f9 f200 | tr '\n' ' ')"
done
echo "list:0 $(cli llen list:0) $(cli lrange list:0 0 -1 | digest) list:1 $(cli llen list:1)"
echo "set:3 $(cli scard set:3) $(cli smembers set:3 | sort | digest)" \
    "set:4 $(cli scard set:4) $(cli smembers set:4 | sort | digest)"
echo "zset:5 $(cli zcard zset:5) $(cli zrange zset:5 0 -1 withscores | digest)" \
    "$(cli zrangebyscore zset:5 100 120 | tr '\n' ' ')"
echo "missing: [$(cli get str:0)] [$(cli exists big:0)]"

stop_server
echo "redis-server exit status $server_status"
cat server.stderr >&2
