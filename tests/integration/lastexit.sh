#!/bin/bash
# The shim's own threads never keep a process alive: a program whose last thread ends with
# pthread_exit() (tests/prog/lastexit.c) exits with status 0 and its stdio flushed, as under
# glibc, while the shim's control thread runs (shim/control.c, exit_if_alone).  Before, it
# stayed a zombie leader with the control thread for ever, and SIGTERM did not end it.
# Usage: BUILD=/abs/build bash tests/integration/lastexit.sh [CASE...]
# Cases (default: all):
#   glibc    no preload: what the program does (the reference)
#   nomeshd  the shim, a meshd socket nobody listens on (the thread retries, sleeping)
#   meshd    the shim, registered with a private meshd (the thread waits for requests)
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases glibc nomeshd meshd
RUN_TIMEOUT=120 # a process that does not exit runs into it; exiting takes seconds

# lastexit NAME [ENV=VALUE...]: runs the program under timeout, stdout into a file.
lastexit() {
    local name=$1 rc=0
    shift
    timeout "$RUN_TIMEOUT" env "$@" "$PROG/lastexit" >"$TMP/$name.out" 2>"$TMP/$name.err" || rc=$?
    if [ $rc = 0 ] && grep -qx 'lastexit: worker done' "$TMP/$name.out"; then
        pass "$name: exit status 0, the worker's line flushed at exit"
    elif [ $rc = 124 ]; then
        fail "$name: still running after $RUN_TIMEOUT s (SIGTERM from timeout)"
    else
        fail "$name: exit status $rc, output: $(cat "$TMP/$name.out" "$TMP/$name.err")"
    fi
}

if want glibc; then lastexit glibc -u LD_PRELOAD; fi
if want nomeshd; then lastexit nomeshd LD_PRELOAD="$LIB" MESHD_SOCKET="$TMP/nobody.sock"; fi
if want meshd; then
    start_meshd || die "meshd did not create its socket"
    lastexit meshd LD_PRELOAD="$LIB" MESHD_SOCKET="$SOCK"
    grep -q "registered pid" "$TMP/meshd.log" || fail "meshd: the program never registered"
fi
exit $FAILED
