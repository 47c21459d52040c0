/*
 * rlimits.h: limits a program lowers while it runs.
 *
 * The heap's reservation (arena, window, per-page arrays, span table, slot origins) is
 * sized at set-up within RLIMIT_AS and RLIMIT_DATA as they are then (arena.c), and counts
 * against both from then on.  A program that lowers either later (`ulimit -v` in a shell
 * script, Python's resource.setrlimit, a sandbox set up without an exec) to a value its
 * own use fits in found every later mapping refused: a shell under the shim could no
 * longer fork ($(...) came back empty), a python could not start a thread.  So the calls
 * that lower a soft limit of the process's own (setrlimit, prlimit with pid 0 or its own,
 * and both through syscall()) first shrink the reservation to what set-up would have
 * chosen under the new limit, never below what the heap uses: the unused top of every
 * part is unmapped.  The limit is then set as asked.
 */
#ifndef MESH_RLIMITS_H
#define MESH_RLIMITS_H

#include <sys/resource.h>
#include <sys/types.h>

/* Before resource's soft limit becomes *new (pid: 0 or a process's, as prlimit takes). */
void mesh_rlimit_lowering(pid_t pid, int resource, const struct rlimit *new);

#endif
