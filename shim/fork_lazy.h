/*
 * fork_lazy.h: the child of a copy-on-write fork runs at once and copies its heap as it
 * goes.
 *
 * In a copy-on-write fork (fork_cow.h) the child's heap must become a file of its own
 * holding every page live at fork as it was then, while the parent goes on writing its own
 * file.  The child used to copy all of it before its fork() returned (0.25 s a GiB, shared
 * with the parent's cow thread), for nothing when it execs or exits at once: a threaded
 * python holding 200 MiB took 140 ms a fork + _exit, against 17 ms under glibc.
 *
 * Now the child adopts its file at once, with holes where the copy has not reached yet,
 * and a userfaultfd registered in missing mode over its arena pages [0, hwm) makes every
 * touch of a hole wait (the kernel's own accesses too: read(2) into the heap): the child's
 * helper thread copies the chunk holding the page from a view of the parent's file, puts
 * a zero page there if nothing was live at fork, and wakes the toucher.  Meanwhile the
 * helper copies the other chunks, shared out with the parent's cow thread as the eager
 * copy was; once every chunk is in, it unregisters (every waiter woken), sends the parent
 * the byte that ends its copy-on-write, and exits.
 *
 * Why the bytes are right: pages are only ever added to the child's file where it has none
 * (UFFDIO_COPY, UFFDIO_ZEROPAGE: EEXIST otherwise), by the parent's cow thread before the
 * parent's first write to a page (its fork-time bytes), and by the helper from the
 * parent's file, which still holds the fork-time bytes of any page the child's file lacks
 * (the parent writes a live page only once the child's file has it).  Whoever is first
 * wins, with the same bytes.  A page not live at fork reads zero (a zero page, never the
 * parent's bytes).  Nothing else adds or drops pages of the child's file meanwhile: purges
 * and meshing wait while mesh_fork_cow_active is 1, in the child as in the parent.
 *
 * The helper is made before the child's file is adopted, without writing the heap
 * (fork_lazy.c, "The window"); if it cannot be made, the child copies eagerly, as it does without a userfaultfd that holds
 * kernel accesses, under a seccomp filter, or with MESH_FORK_LAZY=0.  The helper works from a descriptor table of its own (both
 * userfaultfds and the fork pipe's write end) with every signal blocked: a child that
 * closes every descriptor (closefrom after fork) neither ends the parent's copy-on-write
 * early nor drops its own registration.  A child's fork, set*id, unshare or setns first
 * waits for the copy to end (mesh_fork_lazy_finish): a grandchild would inherit holes, and
 * the last three want (or, for glibc's set*id broadcast, reach) every thread.
 */
#ifndef MESH_FORK_LAZY_H
#define MESH_FORK_LAZY_H

#include <stddef.h>
#include <stdint.h>

/* 1 while a fork child makes its helper (fork_lazy.c): the thread then has no heap, and
 * malloc_slow serves every allocation from a small area outside the arena, which free
 * leaves alone; realloc of an arena block fails. */
extern _Atomic int mesh_fork_lazy_window;
void *mesh_fork_lazy_window_alloc(size_t n); /* zeroed; NULL once the area is full */
int mesh_fork_lazy_window_owns(const void *p);
size_t mesh_fork_lazy_window_size(const void *p);

/*
 * Fork child of a copy-on-write fork, before it adopts fd (its file, which the parent's cow
 * thread fills) as its arena, the window still showing the parent's file: ready to copy
 * lazily (0: the live bitmap is taken, and mesh_fork_lazy_start or _abandon must follow),
 * or -1 (nothing taken: copy eagerly).
 */
int mesh_fork_lazy_prepare(int fd, uint64_t *live_bits, size_t live_bytes, uint32_t live_end,
                           int done_fd);
/* The arena could not be adopted after all: everything prepare took is let go. */
void mesh_fork_lazy_abandon(void);
/*
 * Fork child, fd adopted, aliases restored, nothing of the heap read yet, mesh_fork_cow_
 * after_fork_child done: 1, the helper runs and will send the parent's last byte on
 * done_fd (given to prepare; the caller must not); 0, the copy was made here at once
 * (eagerly); -1, it failed (the heap is not the child's: it must not run on).
 */
int mesh_fork_lazy_start(void);
/* Waits until no lazy copy is running (a no-op when none is). */
void mesh_fork_lazy_finish(void);

#endif
