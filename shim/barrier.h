/*
 * barrier.h: the write barrier used while a span is meshed.
 *
 * While it is up over a source span's virtual pages, readers go on and writers wait;
 * after the pages are remapped onto the destination's physical page, waiting writers
 * retry and land there.  Two mechanisms, chosen once per process:
 *
 *  - userfaultfd write-protect (root, or vm.unprivileged_userfaultfd=1): the kernel
 *    itself holds back every write, from user code and from the kernel (read(2) or recv(2)
 *    into a buffer on such a page simply waits);
 *  - otherwise mprotect(PROT_READ) and a SIGSEGV handler that waits and retries.  The
 *    handler chains every fault it did not cause to the program's own handler (or the
 *    default action), and the next barrier puts it back in front if the program replaced
 *    it.  Known gap of this mode: a kernel write into a span under the barrier fails with
 *    EFAULT; the window is one span copy (microseconds).
 */
#ifndef MESH_BARRIER_H
#define MESH_BARRIER_H

#include <stddef.h>

enum mesh_barrier_kind { MESH_BARRIER_UFFD = 1, MESH_BARRIER_MPROTECT = 2 };

/* Sets the mechanism up on first use in this process; 0, or -1 if none works. */
int mesh_barrier_begin(void);
/* Write-protects [addr, addr+len) (arena pages). */
void mesh_barrier_protect(void *addr, size_t len);
/* Lifts the protection of a range that was not remapped after all. */
void mesh_barrier_unprotect(void *addr, size_t len);
/* The range was remapped (a new mapping of the arena file): make it eligible for
 * future barriers and wake the writers that waited on it. */
void mesh_barrier_remapped(void *addr, size_t len);
void mesh_barrier_end(void);
/* Fork child: the parent's userfaultfd (inherited descriptor) is not ours. */
void mesh_barrier_forget(void);
int mesh_barrier_kind(void);

#endif
