/*
 * barrier.h: the write barrier used while a span is meshed.
 *
 * While it is up over a source span's virtual pages, readers go on and writers wait;
 * after the pages are remapped onto the destination's physical page, waiting writers
 * retry and land there.  The mechanism is chosen once per process (MESH_BARRIER):
 *
 *  - userfaultfd write-protect, the default and the only safe one: the kernel holds back
 *    every write, from user code and from the kernel (read(2), recv(2), waitpid(2) into a
 *    buffer on such a page simply wait).  Had from the userfaultfd(2) system call (root,
 *    or vm.unprivileged_userfaultfd=1) or from /dev/userfaultfd (Linux 6.1+; its file
 *    permissions decide; `make install` ships a udev rule giving it to group "userfaultfd").
 *  - mprotect(PROT_READ) and a SIGSEGV handler that waits and retries, only when asked
 *    for with MESH_BARRIER=mprotect: a kernel write into a span under it fails with
 *    EFAULT after its side effect (a datagram consumed, a child reaped).  In that mode
 *    signals.c keeps SIGSEGV unblocked and the handler in front.
 *  - none: without userfaultfd (and without the opt-in), or with MESH_BARRIER=none, the
 *    process is not meshed: mesh_barrier_begin() refuses and mesh_barrier_refusal() says
 *    why, which reaches meshd in the MeshReply.
 * Every protection call is checked: a range that could not be protected fails
 * mesh_barrier_protect(), and the engine then rolls back and refuses the pair.
 */
#ifndef MESH_BARRIER_H
#define MESH_BARRIER_H

#include <stddef.h>

enum mesh_barrier_kind { MESH_BARRIER_UFFD = 1, MESH_BARRIER_MPROTECT = 2, MESH_BARRIER_NONE = 3 };

/* Sets the mechanism up on first use in this process; 0, or -1 if there is no safe one
 * (mesh_barrier_refusal() says why). */
int mesh_barrier_begin(void);
/* Chooses the mechanism now if it is not chosen yet: before the process gives up the
 * privileges a userfaultfd needs (control.c's pause), while it may still have them. */
void mesh_barrier_choose(void);
/* Why mesh_barrier_begin() refuses: one line for people, or NULL if it does not. */
const char *mesh_barrier_refusal(void);
/* Write-protects [addr, addr+len) (arena pages); 0, or -1 if the kernel refused. */
int mesh_barrier_protect(void *addr, size_t len);
/* Lifts the protection of a range that was not remapped after all; 0, or -1. */
int mesh_barrier_unprotect(void *addr, size_t len);
/* The range was remapped (a new mapping of the arena file): make it eligible for
 * future barriers and wake the writers that waited on it. */
void mesh_barrier_remapped(void *addr, size_t len);
/* The range was remapped but must stay under the barrier (its pair is not decided yet):
 * protect the new mapping at once; mesh_barrier_unprotect() releases it later.  0, or -1
 * if the kernel refused (then writes go through until the pair is decided). */
int mesh_barrier_reprotect(void *addr, size_t len);
void mesh_barrier_end(void);
/*
 * For a copy-on-write fork (fork_cow.h), which protects every arena page at once and then
 * serves the writers itself, one page at a time:
 *   _protect_all  what mesh_barrier_protect does, for a range that may hold holes;
 *   _fault_fd     the descriptor to poll for writers (userfaultfd only), or -1;
 *   _read_faults  up to max addresses of write faults now waiting (non-blocking): how many,
 *                 0 if none, -1 if the descriptor is gone;
 *   _release      lifts every protection of [addr, addr+len) and wakes every writer there,
 *                 without a window where a writer can go to sleep unwoken (unregister and
 *                 register again: barrier.c), and without making a hole's page.  0, or -1
 *                 (the writers are woken all the same; the range may stay unregistered, so
 *                 that meshing refuses its pairs).
 */
int mesh_barrier_fault_fd(void);
/* A new userfaultfd (close-on-exec, non-blocking) whose faults include the kernel's own
 * accesses (not UFFD_USER_MODE_ONLY), as the barrier's; not set up (no UFFDIO_API yet).
 * -1 if this process may not have one. */
int mesh_barrier_uffd_open(void);
/* Write-protects all of [addr, addr+len) (userfaultfd only), holes included; 0, or -1 with
 * nothing left protected. */
int mesh_barrier_protect_all(void *addr, size_t len);
int mesh_barrier_read_faults(void **addrs, int max);
int mesh_barrier_release(void *addr, size_t len);
/* Fork child: the parent's userfaultfd (inherited descriptor) is not ours. */
void mesh_barrier_forget(void);
int mesh_barrier_kind(void);

#endif
