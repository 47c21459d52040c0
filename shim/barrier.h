/*
 * barrier.h: the write barrier used while a span is meshed.
 *
 * While it is up, the source span's virtual pages are read-only: readers go on, and a
 * thread that writes there takes SIGSEGV, waits in the handler until the barrier drops
 * (the pages are then remapped onto the destination's physical page, writable), and its
 * write is retried.  The handler is installed on first use and chains every fault it did
 * not cause to the program's own SIGSEGV handler, or to the default action; if the
 * program installs a handler later, the next barrier puts ours in front of it again.
 *
 * Known gap: a write by the kernel (read(2) into a buffer on such a page) fails with
 * EFAULT instead of waiting.  The window is one span copy (microseconds).
 */
#ifndef MESH_BARRIER_H
#define MESH_BARRIER_H

/* Raises the barrier flag (pages are protected by the caller) and makes sure our handler
 * is in place.  Returns 0, or -1 if the handler could not be installed. */
int mesh_barrier_begin(void);
/* Drops the flag and wakes every thread waiting in the handler. */
void mesh_barrier_end(void);

#endif
