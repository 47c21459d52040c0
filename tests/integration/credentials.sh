#!/usr/bin/env bash
# Changing credentials never aborts a program under libmesh (issue 15).  glibc applies
# set*id to every thread and aborts the process if one thread fails; the shim's control
# thread must never be that thread, and after the change the program is registered with
# meshd under its new uid and meshed as that uid, every object intact:
#  setpriv     setpriv (started as root, preloaded, its control thread running) drops to
#              nobody with --clear-groups, --init-groups and --keep-groups and execs a
#              fragmenter, which registers as nobody and is meshed by nobody's meshctl;
#              under strace (when installed) the shim's thread is shown to exist at the drop
#  keepcaps    credswitch keepcaps: PR_SET_KEEPCAPS, setresuid, capset, setresgid, setgroups
#  thread      credswitch thread: the change made by a thread other than main while three
#              threads allocate
#  euid        credswitch euid: seteuid/setegid round trips, then setuid for good
#  initgroups  credswitch initgroups: initgroups + setgid + setuid
#  toggle      credswitch toggle: 300 seteuid/setegid round trips, staying root, after a
#              first round (so the write barrier is set up): the shim's thread, with the
#              caller's capabilities, stays through all of them, registered once
# Each credswitch mode first runs without the shim (it must work under glibc: that is the
# promise), then preloaded with a private meshd: registered as root before, as nobody
# after, one round by nobody's meshctl meshes pairs, and every object checks out.
# Usage: BUILD=/abs/build bash tests/integration/credentials.sh [CASE...] (as root; skips
# otherwise).
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases setpriv keepcaps thread euid initgroups toggle
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: changing credentials needs root"
    exit 0
fi
chmod 755 "$TMP" # nobody's meshctl must reach the socket in here
NOBODY=$(id -u nobody)
NOGROUP=$(id -g nobody)
AS_NOBODY=(setpriv --reuid="$NOBODY" --regid="$NOGROUP" --clear-groups)
CREDSWITCH=$PROG/credswitch
printf 'enabled=0\n' >"$TMP/policy.conf" # rounds are explicit here
start_meshd --config "$TMP/policy.conf" || die "meshd did not create its socket"

# listed_as UID PID: meshctl ps --json lists PID, registered under UID.
listed_as() {
    ctl ps --json >"$TMP/ps.json" 2>/dev/null &&
        json_get "$TMP/ps.json" "any(p['pid'] == $2 and p['uid'] == $1 for p in j)" | grep -qx True
}

# round_as WHO PID WHAT: one mesh round on PID by WHO's meshctl (root or nobody) must succeed
# and mesh pairs.
round_as() {
    local who=$1 pid=$2 what=$3 runner=()
    [ "$who" = root ] || runner=("${AS_NOBODY[@]}")
    if timeout "$CTL_TIMEOUT" "${runner[@]}" "$MESHCTL" --socket "$SOCK" mesh "$pid" \
        >"$TMP/round.out" 2>&1 && grep -Eq ': [0-9]+ pairs sent, [1-9][0-9]* meshed' "$TMP/round.out"; then
        pass "$what: $who's round: $(cat "$TMP/round.out")"
    else
        fail "$what: $who's round: $(cat "$TMP/round.out")"
    fi
}

# round_as_nobody PID WHAT: waits until PID is registered as nobody, then one mesh round
# by nobody's meshctl must mesh pairs.
round_as_nobody() {
    local pid=$1 what=$2
    if ! wait_for "$BOUND" listed_as "$NOBODY" "$pid"; then
        fail "$what: not registered as uid $NOBODY: $(cat "$TMP/ps.json" 2>/dev/null)"
        return
    fi
    round_as nobody "$pid" "$what"
}

# ---- setpriv ------------------------------------------------------------------------------------
if want setpriv; then
    if command -v strace >/dev/null; then
        # The thread must exist when setpriv drops, or the case proves nothing.
        rc=0
        env -u LD_PRELOAD strace -f -qq -e trace=clone,clone3,setresuid -o "$TMP/setpriv.st" \
            env MESH_TEST_CONTROL_DELAY_MS=0 MESHD_SOCKET="$SOCK" LD_PRELOAD="$LIB" \
            "${AS_NOBODY[@]}" true >"$TMP/setpriv.out" 2>&1 || rc=$?
        order=$(grep -oE 'clone3?\(|setresuid\(' "$TMP/setpriv.st" | tr -d '(' | tr '\n' ' ')
        if [ $rc = 0 ] && [[ $order == clone*setresuid* ]]; then
            pass "setpriv --reuid: exit 0 with the shim's thread running at the drop ($order)"
        else
            fail "setpriv --reuid: exit $rc, calls: $order: $(cat "$TMP/setpriv.out")"
        fi
    else
        echo "SKIP: setpriv under strace (strace not installed)"
    fi
    for groups in --clear-groups --init-groups --keep-groups; do
        # MESH_BARRIER=mprotect: nobody has no userfaultfd here (a fresh image cannot keep
        # root's), and the fragmenter makes no system call into its heap while held.
        MESH_TEST_CONTROL_DELAY_MS=0 MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB MESH_BARRIER=mprotect \
            setpriv --reuid="$NOBODY" --regid="$NOGROUP" "$groups" \
            "$FRAG" 200000 25 hold >"$TMP/frag$groups.out" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        # Registered is not fragmented: the shim registers at start, and a round before the
        # frees finds nothing to mesh (a loaded machine got there first: "0 pairs sent").
        if wait_for "$BOUND" grep -q holding "$TMP/frag$groups.out"; then
            round_as_nobody "$pid" "setpriv $groups"
        else
            fail "setpriv $groups: the fragmenter never held its heap: $(cat "$TMP/frag$groups.out")"
        fi
        finish_fragmenter "$pid" "$TMP/frag$groups.out" "setpriv $groups: every survivor intact"
    done
fi

# ---- credswitch ---------------------------------------------------------------------------------
for mode in keepcaps thread euid initgroups toggle; do
    want "$mode" || continue
    # Under glibc alone first: the change itself must be one that works.
    env -u LD_PRELOAD "$CREDSWITCH" "$mode" "$NOBODY" "$NOGROUP" >"$TMP/$mode.glibc" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_for "$BOUND" grep -q ready "$TMP/$mode.glibc" && release "$pid"
    wait_for "$BOUND" grep -q dropped "$TMP/$mode.glibc" && release "$pid"
    wait_exit "$pid"
    if [ "$rc" != 0 ] || ! grep -q 'verified: ok' "$TMP/$mode.glibc"; then
        fail "$mode: fails under glibc alone, so it tests nothing: exit $rc: $(cat "$TMP/$mode.glibc")"
        continue
    fi
    MESHD_SOCKET=$SOCK LD_PRELOAD=$LIB "$CREDSWITCH" "$mode" "$NOBODY" "$NOGROUP" >"$TMP/$mode.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if wait_for "$BOUND" grep -q ready "$TMP/$mode.out" && wait_for "$BOUND" listed_as 0 "$pid"; then
        if [ "$mode" = toggle ]; then
            round_as root "$pid" "$mode, before"
        fi
        release "$pid" # now it changes its credentials, its control thread registered
        if ! wait_for "$BOUND" grep -q dropped "$TMP/$mode.out"; then
            fail "$mode: did not get through its change: $(cat "$TMP/$mode.out")"
        elif [ "$mode" = toggle ]; then
            registrations=$(grep -c "registered pid $pid " "$TMP/meshd.log" || true)
            if [ "$registrations" = 1 ] && listed_as 0 "$pid"; then
                pass "$mode: 300 round trips, still registered once, as root"
            else
                fail "$mode: $registrations registrations: $(grep "pid $pid" "$TMP/meshd.log")"
            fi
            round_as root "$pid" "$mode, after"
        else
            round_as_nobody "$pid" "$mode"
        fi
    else
        fail "$mode: never ready and registered as root: $(cat "$TMP/$mode.out")"
    fi
    release "$pid"
    wait_exit "$pid"
    if [ "$rc" = 0 ] && grep -q 'verified: ok' "$TMP/$mode.out"; then
        pass "$mode: exit 0, every object intact: $(tail -1 "$TMP/$mode.out")"
    else
        fail "$mode: exit $rc: $(cat "$TMP/$mode.out")"
    fi
done

[ "$FAILED" = 0 ] || cat "$TMP/meshd.log"
exit "$FAILED"
