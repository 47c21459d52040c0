# shellcheck shell=bash
# Sourced by the bash-driven cases of the preload suite (tests/preload/run.sh).
#
# The harness runs every case twice with an identical, minimal environment: once
# under glibc and once with LD_PRELOAD=$MESH_LIB MESH_SHOW_STATS=<file> (inherited by
# every child process).  Case scripts must:
#   - print only deterministic text on stdout (no pids, times, absolute paths);
#   - never send stderr into stdout (2>&1): the shim's exit-time stats line may
#     go to stderr of every process that exits normally, forked subshells
#     included (the harness asks for it in a file, but accepts stderr too);
#   - not pipe a large output into something that stops reading early
#     (`| head`): under pipefail the writer's SIGPIPE is a racy failure.
#     Write to a file, or use `awk 'NR<=3'`, which reads everything.
set -euo pipefail

# marked CMD [ARGS...]: run CMD (in a subshell that execs it, so CMD keeps the
# pid) after recording the pid in $MESH_PIDS.  In the preloaded run the harness
# requires a "libmesh: stats pid=<that pid>" line for every recorded
# pid, i.e. proof that this very program ran on the shim and exited normally.
# Mark only programs that exit normally (not ones killed by a signal).
marked() {
    (
        echo "$BASHPID" >>"$MESH_PIDS"
        exec "$@"
    )
}

# digest: a short sha256 of stdin.
digest() {
    sha256sum | cut -c1-16
}
