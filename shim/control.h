/* control.h: the control thread that registers with meshd and executes its requests. */
#ifndef MESH_CONTROL_H
#define MESH_CONTROL_H

#include <stdatomic.h>

#include "common.h"

/* The thread is started lazily (see control.c): mesh_control_arm, once the heap is set up,
 * arms it; the allocation slow paths call mesh_control_poll, which starts it when due (never
 * with MESH_NO_MESHD=1 or without a memfd arena).  Without meshd the thread just retries
 * quietly with backoff. */
void mesh_control_arm(void);
/* Fork child: forgets the parent's connection and arms its own thread (by delay only). */
void mesh_control_after_fork_child(void);
extern _Atomic int mesh_control_deferred;
void mesh_control_start_deferred(void);
/* Around a change of the process's credentials: pause stops the thread and joins it (and
 * keeps it from starting) so that glibc's set*id, applied to every thread, never meets it;
 * resume lets it start again at the next slow path, as the program's credentials are then,
 * and it registers anew.  Pauses may overlap (from several threads); resume once for each
 * pause that returned 1 (0: a vfork child, nothing was paused).  Takes no allocator lock;
 * must not be called with one held. */
int mesh_control_pause(void);
void mesh_control_resume(void);
/* Only where no allocator lock is held: starting the thread allocates. */
static inline void mesh_control_poll(void)
{
    if (unlikely(atomic_load_explicit(&mesh_control_deferred, memory_order_relaxed)))
        mesh_control_start_deferred();
}

#endif
