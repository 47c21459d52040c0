/* init.h: one-time set-up of the shim, safe to reach from the first malloc of a process
 * (before constructors run) and from several threads at once. */
#ifndef MESH_INIT_H
#define MESH_INIT_H

#include <stdatomic.h>

#include "common.h"

enum { MESH_INIT_NONE, MESH_INIT_RUNNING, MESH_INIT_DONE, MESH_INIT_FAILED };
extern _Atomic int mesh_init_state;
/* Set with MESH_INIT_FAILED when the shim stepped aside for another malloc (init.c). */
extern _Atomic int mesh_init_yielded;
/* The shim stepped aside, but the other malloc called this one (a wrapper: heaptrack's,
 * a leak tracer's): it sets up the heap and serves after all.  1 if the heap is ready. */
int mesh_init_take_over(void);

void mesh_init_slow(void);
/* 1 when the heap is usable; 0 when no memory at all could be reserved. */
static inline int mesh_ready(void)
{
    if (likely(atomic_load_explicit(&mesh_init_state, memory_order_acquire) == MESH_INIT_DONE))
        return 1;
    mesh_init_slow();
    return atomic_load(&mesh_init_state) == MESH_INIT_DONE;
}

/* fork.c */
#include <sys/types.h>
extern pid_t mesh_heap_pid;
void mesh_fork_init(void);
/* In a fork child (getpid() != mesh_heap_pid): replaces the inherited shared arena and
 * span table with private copies, once, and unfreezes the allocator.  Called by the atfork
 * child handler, or earlier by an allocation from glibc's own fork-child code. */
void mesh_fork_make_child_private(void);
/* A fork child whose heap could not be made its own (a failed copy): it must not run on,
 * reading holes or the parent's heap; says so on err_fd (if >= 0) and _exit(127)s. */
_Noreturn void mesh_fork_child_lost(int err_fd);
/* Stops every writer of the span table and of the arena's metadata (shared ops quiesced,
 * class, table and arena locks taken), as fork's prepare handler does; thaw undoes it.
 * The caller must not allocate in between (it would wait for itself). */
void mesh_heap_freeze(void);
void mesh_heap_thaw(void);

#endif
