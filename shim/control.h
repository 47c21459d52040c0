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
/* Around a change of the process's credentials (credentials.c).  glibc applies set*id to
 * every thread and aborts the process if one thread fails where the caller succeeded, so
 * pause keeps the thread from starting and, if it runs with other capabilities than the
 * caller (or always_stop: capset, whose change is the caller's alone), stops and joins
 * it; then it starts again at a slow path a second after resume, with the credentials the
 * program has then.  resume(owner_changed): the real uid changed; a thread that stayed
 * registers again, so meshd sees the new uid.  Pauses may overlap (several threads);
 * resume once for each pause that returned 1 (0: a vfork child, nothing was paused).
 * Takes no allocator lock; must not be called with one held. */
int mesh_control_pause(int always_stop);
void mesh_control_resume(int owner_changed);
/* A thread's exit hook (thread_heap.c's key destructor): the leader's tells the control
 * thread to exit the process, as glibc would, once no thread of the program's is left. */
void mesh_control_note_thread_exit(void);
/* Whether the trim after a meshing request is due (control.c): always, but for a background
 * request while the program is busy (its other threads used CPU since the previous call).
 * The control thread's; exposed for the tests. */
int mesh_control_trim_due(int background);
/* Only where no allocator lock is held: starting the thread allocates. */
static inline void mesh_control_poll(void)
{
    if (unlikely(atomic_load_explicit(&mesh_control_deferred, memory_order_relaxed)))
        mesh_control_start_deferred();
}

#endif
