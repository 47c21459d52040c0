#!/bin/bash
# The shim's own threads never keep a process alive: a program whose last thread ends with
# pthread_exit() (tests/prog/lastexit.c) exits with status 0 and its stdio flushed, as under
# glibc, while the shim's control thread runs (shim/control.c, "the program's last
# thread").  Before, it stayed a zombie leader with the control thread for ever, and SIGTERM
# did not end it.  The worker runs for seconds after main has gone: a process ended early
# would lose its line.
# Usage: BUILD=/abs/build bash tests/integration/lastexit.sh [CASE...]
# Cases (default: all):
#   glibc           no preload: what the program does (the reference)
#   juggle-glibc    the same, the worker juggling stdout (below): the program's own check
#   nomeshd         the shim, a meshd socket nobody listens on (the thread retries, sleeping)
#   meshd           the shim, registered with a private meshd (the thread waits for requests)
#   juggle-nomeshd  as nomeshd, the worker closing stdout and dup2()ing it back meanwhile:
#   juggle-meshd    the shim's looks must never take the number (an earlier fix did)
#   filter-nomeshd  main installs a seccomp filter before it leaves: the shim must not look
#   filter-meshd    at the threads then, and its thread ends instead (it stayed for ever)
#   noproc-nomeshd  no /proc (a tmpfs over it in a mount namespace of its own, as in a
#   noproc-meshd    chroot): the same (root only: SKIP otherwise)
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases glibc juggle-glibc nomeshd meshd juggle-nomeshd juggle-meshd filter-nomeshd filter-meshd noproc-nomeshd \
    noproc-meshd
RUN_TIMEOUT=${LASTEXIT_TIMEOUT:-60} # a process that does not exit runs into it; exiting takes seconds
WAIT_MS=3000   # the worker's life after main's pthread_exit()
# Juggling outlasts the registered thread's receive timeout (5 s), after which it looks
# every 0.1 s while the program's leader is gone.
JUGGLE_MS=7000

# lastexit NAME ARGS [ENV=VALUE...]: runs the program under timeout, stdout into a file
# (through $WRAP, if set: a command that runs its arguments).
WRAP=()
lastexit() {
    local name=$1 args=$2 rc=0
    shift 2
    # -k: such a process also ignored SIGTERM (the shim's thread blocks every signal)
    # shellcheck disable=SC2086 # ARGS are words
    timeout -k 10 "$RUN_TIMEOUT" "${WRAP[@]}" env "$@" "$PROG/lastexit" $args >"$TMP/$name.out" 2>"$TMP/$name.err" ||
        rc=$?
    if [ $rc = 0 ] && grep -qx 'lastexit: worker done' "$TMP/$name.out"; then
        pass "$name: exit status 0, the worker's line flushed at exit"
    elif [ $rc = 124 ] || [ $rc = 137 ]; then
        fail "$name: still running after $RUN_TIMEOUT s (killed by timeout)"
    else
        fail "$name: exit status $rc, output: $(cat "$TMP/$name.out" "$TMP/$name.err")"
    fi
}

# The thread at the first slow path, so that it runs while main leaves.
SHIM=(LD_PRELOAD="$LIB" MESH_TEST_CONTROL_DELAY_MS=0)
if want glibc; then lastexit glibc "$WAIT_MS" -u LD_PRELOAD; fi
if want juggle-glibc; then lastexit juggle-glibc "$JUGGLE_MS juggle" -u LD_PRELOAD; fi
if want nomeshd; then lastexit nomeshd "$WAIT_MS" "${SHIM[@]}" MESHD_SOCKET="$TMP/nobody.sock"; fi
if want juggle-nomeshd; then
    lastexit juggle-nomeshd "$JUGGLE_MS juggle" "${SHIM[@]}" MESHD_SOCKET="$TMP/nobody.sock"
fi
if want filter-nomeshd; then lastexit filter-nomeshd "$WAIT_MS filter" "${SHIM[@]}" MESHD_SOCKET="$TMP/nobody.sock"; fi
# A /proc of nothing: a tmpfs over it, in a mount namespace of the program's own.
NOPROC=(unshare -m sh -c 'mount -t tmpfs none /proc && exec "$@"' noproc)
noproc_ok=0
if want noproc-nomeshd || want noproc-meshd; then
    if [ "$(id -u)" = 0 ] && "${NOPROC[@]}" sh -c '! [ -e /proc/self ]' 2>/dev/null; then
        noproc_ok=1
    else
        echo "SKIP: noproc cases: cannot hide /proc here (not root, or no mount namespaces)"
    fi
fi
if want noproc-nomeshd && [ $noproc_ok = 1 ]; then
    WRAP=("${NOPROC[@]}")
    lastexit noproc-nomeshd "$WAIT_MS" "${SHIM[@]}" MESHD_SOCKET="$TMP/nobody.sock"
    WRAP=()
fi
if want meshd || want juggle-meshd || want filter-meshd || want noproc-meshd; then
    start_meshd || die "meshd did not create its socket"
    if want meshd; then lastexit meshd "$WAIT_MS" "${SHIM[@]}" MESHD_SOCKET="$SOCK"; fi
    if want juggle-meshd; then
        # Juggling starts once the program is registered and settled: the descriptors the
        # shim creates while it connects are out of reach (docs/ALLOCATOR.md,
        # "Descriptors"); its looks from then on are not.
        (sleep 0.5
         for _ in $(seq 600); do
             [ "$(grep -c "registered pid" "$TMP/meshd.log")" -ge "$(want meshd && echo 2 || echo 1)" ] && break
             sleep 0.1
         done
         sleep 1
         touch "$TMP/go") &
        lastexit juggle-meshd "$JUGGLE_MS juggle $TMP/go" "${SHIM[@]}" MESHD_SOCKET="$SOCK"
    fi
    # After the juggling case, which counts registrations before it starts.
    if want filter-meshd; then lastexit filter-meshd "$WAIT_MS filter" "${SHIM[@]}" MESHD_SOCKET="$SOCK"; fi
    if want noproc-meshd && [ $noproc_ok = 1 ]; then
        WRAP=("${NOPROC[@]}")
        lastexit noproc-meshd "$WAIT_MS" "${SHIM[@]}" MESHD_SOCKET="$SOCK"
        WRAP=()
    fi
    registered=0
    for c in meshd juggle-meshd noproc-meshd; do
        if want $c && { [ $c != noproc-meshd ] || [ $noproc_ok = 1 ]; }; then registered=$((registered + 1)); fi
    done
    [ "$(grep -c "registered pid" "$TMP/meshd.log")" -ge "$registered" ] ||
        fail "meshd: the programs did not all register: $(cat "$TMP/meshd.log")"
fi
exit $FAILED
