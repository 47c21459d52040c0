/*
 * fork_cow.h: copy-on-write for a fork child's heap, so that fork() returns at once in the
 * parent of a large heap.
 *
 * The arena is a MAP_SHARED memfd, so a fork child needs a copy of its own (fork.c), and
 * the kernel's copy-on-write does not apply to shared mappings.  The eager way, the parent
 * copying before its fork() returns, stops the parent for ~0.45 s a GiB of live heap.  A
 * copy-on-write fork write-protects the parent's arena instead (the barrier's userfaultfd,
 * which holds back kernel writes too) and returns; the child copies the live pages into its
 * own file (while it runs: fork_lazy.h; or, failing that, before its own fork() returns),
 * and the parent's cow thread serves the parent's writes meanwhile: before a page's first write it puts the page's bytes, as they were at
 * fork, into the child's file, then lets the write go on (and copies chunks of the rest
 * while no write waits).  Both fill the child's file
 * through page_install.h, which adds a page only where the file has none, so every live
 * page of the child's file gets its bytes at fork time:
 *   - a page the parent does not write is unchanged in the parent's file when the child
 *     copies it;
 *   - a page the parent writes: its first write waits until the cow thread has put the old
 *     bytes in (or found the child's copy there); a child that read the page while that
 *     write ran then finds the cow thread's page in place, and keeps it.
 * Invariant while a copy-on-write is active:
 *     every live page of the parent's file is write-protected in every virtual page that
 *     shows it, or has its fork-time bytes in the child's file.
 * So nothing else may change a live page's bytes: meshing waits (its copy goes through the
 * unprotected window, its punch drops pages) and no free page is punched (one freed since
 * the fork was live at it).  A write whose page cannot be saved (no memory) waits until
 * the end.  It ends (the range unregistered: every writer woken) when the child says its
 * heap is its own, or dies (EOF).  The cow thread holds its descriptors in a table of its
 * own (fork_cow.c), so a program that closes every descriptor after fork ends nothing
 * early.  A fork while one is active copies eagerly (a stopped or
 * slow child never holds up the parent's next fork).
 *
 * Used only when a copy would be long enough to matter (MESH_FORK_COW_MIN bytes of heap in
 * use, default 64 MiB), the barrier is a userfaultfd, and the process has threads already:
 * the cow thread is made in the prepare handler, and making the first thread there would
 * leave glibc's fork believing the process single-threaded.  MESH_FORK_COW=0 turns it off
 * (every fork copies eagerly).
 */
#ifndef MESH_FORK_COW_H
#define MESH_FORK_COW_H

#include <stddef.h>
#include <stdint.h>

#include "page_install.h"

/* 1 while a copy-on-write is active (also the futex word its end is waited on). */
extern _Atomic int mesh_fork_cow_active;

/* prepare, fork_lock held, heap not frozen yet: 1 if this fork may be copy-on-write (a cow
 * thread was made for it: the parent handler then calls _start or _abandon), else 0. */
int mesh_fork_cow_wanted(void);
/* parent, after a fork for which _wanted said 1 and _start was not called or failed: the
 * thread made for it exits.  A no-op once _start succeeded. */
void mesh_fork_cow_abandon(void);

/*
 * parent, right after fork, heap frozen, the child there: write-protects the arena and
 * starts serving writes for the child's file child_fd (mapped here; the caller still
 * closes its descriptor), for the file pages set in `live` (a bitmap of live_bytes bytes
 * over pages [0, live_end), mmap'ed: owned from here on), until done_fd (closed here: the
 * cow thread has its own copy) reads a byte or EOF.  child_fd -1: the child shares the
 * parent's file (fork_share.h) and done_fd is the socket to its helper; the end is its
 * EOF.  0, or -1: nothing protected, nothing taken.
 */
int mesh_fork_cow_start(int child_fd, uint64_t *live, size_t live_bytes, uint32_t live_end,
                          int done_fd);

/* Returns once no copy-on-write is active (meshing waits for the child's copy). */
void mesh_fork_cow_wait(void);

/* Fork child of a copy-on-write fork: copies the live pages (the bitmap live_bits over
 * [0, live_end)) of the parent's file, through the inherited window, into fd where fd has
 * no page yet, sharing the chunks with the parent's cow thread.  0, or -1. */
int mesh_fork_cow_child_copy(int fd, const uint64_t *live_bits, uint32_t live_end);

/*
 * The same copy in steps, for a child that copies while it runs (fork_lazy.h).  A copier
 * takes the chunk table the parent shares with this child (so the process's own next fork
 * makes another), reads the parent's pages at src (a view of the parent's file, as at fork
 * wherever the child's file has no page yet) and installs them into fd's file where it
 * has none.  Each returns 0 (next: 1 a chunk copied, 0 none left), or -1 if a copy failed.
 */
#define MESH_COW_CHUNK_PAGES 256u /* fork_cow.c: 1 MiB chunks */
struct mesh_cow_chunks;
struct mesh_cow_copier {
    struct mesh_cow_chunks *chunks;
    size_t chunks_bytes;
    struct mesh_page_installer in;
    const uint64_t *live;
    uint32_t live_end;
    const uint8_t *src;
};
int mesh_fork_cow_child_copier(struct mesh_cow_copier *cp, int fd, const uint64_t *live_bits,
                               uint32_t live_end, const uint8_t *src);
int mesh_cow_copier_next(struct mesh_cow_copier *cp);   /* the next unclaimed chunk */
int mesh_cow_copier_at(struct mesh_cow_copier *cp, uint32_t page); /* page's chunk, unless done */
/* _next till none, then every chunk not done yet; before_each (or NULL) is called before
 * every chunk, and its -1 ends the copy. */
int mesh_cow_copier_all(struct mesh_cow_copier *cp, int (*before_each)(void));
void mesh_cow_copier_close(struct mesh_cow_copier *cp);

/* Every fork child, once its heap is its own: lets go of the parent's chunk table and of
 * any copy-on-write the parent had going. */
void mesh_fork_cow_after_fork_child(void);

#endif
