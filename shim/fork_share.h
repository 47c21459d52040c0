/*
 * fork_share.h: a fork child that shares the parent's heap pages until either side writes
 * them (MESH_FORK_SHARE=1; off by default, see "Known costs" below).
 *
 * The arena is a MAP_SHARED memfd, so the kernel's copy-on-write does not apply to it, and
 * a copy-on-write fork (fork_cow.h) still copies every live page for the child, about 1 s
 * of system time a GiB.  A sharing child copies nothing up front: it maps the parent's
 * file MAP_PRIVATE over its arena (base [0, hwm) at the same offsets, every alias onto its
 * physical page again; [hwm, total) is private anonymous memory), so each page stays the
 * parent's until the child writes it (the kernel copies it then) or the parent does.  The
 * parent's arena is write-protected as in a copy-on-write fork; before the first write to
 * a page live at fork, its cow thread asks the child's helper thread, over a socketpair,
 * to MADV_POPULATE_WRITE every virtual page of the child that shows that file page, and
 * lets the write go on once the helper has answered.  MADV_POPULATE_WRITE breaks the
 * child's copy-on-write without storing a byte, so a write of the child's own threads
 * racing with it is never lost (a copy made from outside the child would have to store).
 * Invariant while the child shares:
 *     every file page live at fork either is write-protected in every virtual page of the
 *     parent that shows it, or is private (populated) in every virtual page of the child
 *     that showed it at fork.
 * Pages not live at fork are free in the child: their free ranges are dirty there
 * (mesh_arena_after_share), so the child never relies on what they read.
 *
 * The helper thread works from a descriptor table of its own holding only its end of
 * the socket (as the parent's cow thread does), with every signal blocked: a child that
 * closes every descriptor or dup2()s over numbers does not end the sharing early.  The
 * sharing ends when the socket closes: the child exited or exec'ed (its helper went with
 * it), the child detached (below), or the parent is gone (its file then never changes
 * again).  The child detaches, populating every page of its live spans and then closing
 * the socket, before it forks (its own child would inherit the shared pages, which nobody
 * populates for it), before it changes credentials (credentials.c: glibc's set*id
 * broadcast would reach the helper, and a child that drops privileges must not be able
 * to hold up its parent's writes by stopping itself), and after MESH_FORK_SHARE_MAX_MS (default 30000) of sharing, so a
 * long-lived child (a pre-forked worker) does not hold the parent's meshing and purges,
 * which wait while a copy-on-write is active, for ever.
 *
 * Known costs: a stopped child (SIGSTOP, a debugger) holds every first write of the
 * parent to a page it still shares until it runs again; each first write waits for a
 * round trip to the child (~80 us); the arena's descriptor stays open in the program's
 * table (arena.c); the child is multithreaded from fork on (unshare(CLONE_NEWUSER) fails
 * in it); after sharing, the child never returns free pages to the system (dropping a
 * page of a private file mapping shows the file's page again, not zeros).
 */
#ifndef MESH_FORK_SHARE_H
#define MESH_FORK_SHARE_H

#include <stdint.h>

/*
 * The socket (SOCK_SEQPACKET, one request or answer a message): the parent's cow thread
 * sends the file pages a batch of writes waits for, count first (count <= BATCH; only
 * `count` pages are sent), and waits for the helper's one-byte answer before it lets
 * the writes go on.
 */
#define MESH_SHARE_BATCH 32u
struct mesh_share_request {
    uint32_t count;
    uint32_t pages[MESH_SHARE_BATCH];
};
enum { MESH_SHARE_FAILED = 0, MESH_SHARE_DONE = 1 };

/* prepare, fork_lock held: 1 if this fork may share (a kept arena descriptor, a kernel
 * with MADV_POPULATE_WRITE); the caller still needs a copy-on-write fork for it. */
int mesh_fork_share_possible(void);

/*
 * Fork child, single-threaded, before telling the parent it is there: maps the parent's
 * file privately (arena.h's mesh_arena_map_parent_private, aliases included) and starts
 * the helper on sock (its end of the socketpair; the helper takes its own copy, the
 * caller closes this one).  0: ready to share; -1: nothing started (base may be partly
 * remapped: the caller copies the heap for itself, which replaces all of it).
 */
int mesh_fork_share_child_setup(int sock);
/* Fork child, after _setup returned 0: the parent's verdict.  shared: the helper serves
 * the parent from now on; else it exits at once. */
void mesh_fork_share_child_verdict(int shared);

/* Any thread: if this process shares its parent's pages, makes every live page its own
 * and ends the sharing (returns once the helper is gone, joined).  Called by fork's
 * prepare and before every credential change. */
void mesh_fork_share_detach(void);

#endif
