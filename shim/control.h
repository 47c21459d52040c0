/* control.h: the control thread that registers with meshd and executes its requests. */
#ifndef MESH_CONTROL_H
#define MESH_CONTROL_H

/* Starts the thread (once the heap is set up); a no-op with MESH_NO_MESHD=1 or without a
 * memfd arena.  Without meshd the thread just retries quietly with backoff. */
void mesh_control_start(void);
/* Fork child: forgets the parent's connection; its own thread starts later, from the
 * allocation slow path, a second after fork (mesh_control_start_deferred). */
#include <stdatomic.h>
extern _Atomic int mesh_control_deferred;
void mesh_control_after_fork_child(void);
void mesh_control_start_deferred(void);

#endif
