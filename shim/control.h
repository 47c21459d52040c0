/* control.h: the control thread that registers with meshd and executes its requests. */
#ifndef MESH_CONTROL_H
#define MESH_CONTROL_H

#include <stdatomic.h>

#include "common.h"

/* Starts the thread now; a no-op with MESH_NO_MESHD=1 or without a memfd arena.  Without
 * meshd the thread just retries quietly with backoff. */
void mesh_control_start(void);
/* The thread is started lazily (see control.c): mesh_control_arm, once the heap is set up,
 * arms it; the allocation slow paths call mesh_control_poll, which starts it when due. */
void mesh_control_arm(void);
/* Fork child: forgets the parent's connection and arms its own thread (by delay only). */
void mesh_control_after_fork_child(void);
extern _Atomic int mesh_control_deferred;
void mesh_control_start_deferred(void);
/* Only where no allocator lock is held: starting the thread allocates. */
static inline void mesh_control_poll(void)
{
    if (unlikely(atomic_load_explicit(&mesh_control_deferred, memory_order_relaxed)))
        mesh_control_start_deferred();
}

#endif
