/*
 * barrier.h: the write barrier.  While it is up, a range of the arena is read-only; a
 * thread that writes there takes SIGSEGV, waits in the handler until the barrier drops,
 * and retries the write.  fork uses it to copy a consistent heap for the child; meshing
 * will use it while it copies a span.
 *
 * The handler is installed while a barrier is up.  If the program had a SIGSEGV handler
 * of its own, it is restored afterwards and receives every fault the barrier did not
 * cause; with the default disposition ours simply stays (it chains to the default).
 * Kernel writes (read(2) into a buffer under the barrier) fail with EFAULT instead of
 * faulting: the window is kept as short as the copy.
 */
#ifndef MESH_BARRIER_H
#define MESH_BARRIER_H

#include <stddef.h>

void mesh_barrier_begin(void *lo, size_t len);
void mesh_barrier_end(void *lo, size_t len);
/* Fork child: the barrier's range is already remapped writable; just drop the state. */
void mesh_barrier_reset_child(void);

#endif
