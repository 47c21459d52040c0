/*
 * fork.c: a private heap for the child of fork().
 *
 * The arena and span table are MAP_SHARED memfds, which fork would share between parent
 * and child.  Before fork, the parent freezes every change to shared metadata (all locks
 * held, lock-free ops drained by the fork guard).  The child then copies the live spans
 * and the used records into new memfds mapped over the old ones (cost: the live heap, not
 * the arena) and tells the parent through a pipe; only then does the parent unfreeze.
 * vfork and posix_spawn run no handlers and share nothing worth copying.
 *
 * Other parent threads keep running and may write to their objects, so the used part of
 * the arena is under the write barrier (barrier.h) from prepare until the child is done:
 * the child copies exactly the heap as it was at fork.  A kernel write into the heap by
 * another thread in that window fails with EFAULT (see barrier.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arena.h"
#include "barrier.h"
#include "global_heap.h"
#include "init.h"
#include "report.h"
#include "span_table.h"
#include "thread_heap.h"

static int fork_pipe[2] = {-1, -1};
static size_t frozen_bytes; /* arena bytes under the barrier during this fork */
static int child_private;   /* in a fork child: it has its own heap already */

static void prepare(void)
{
    if (pipe2(fork_pipe, O_CLOEXEC) != 0)
        fork_pipe[0] = fork_pipe[1] = -1;
    mesh_thread_heaps_quiesce();
    mesh_global_lock_all();
    mesh_span_table_lock();
    mesh_arena_lock();
    frozen_bytes = mesh_arena_used_extent_locked();
    child_private = 0;
    mesh_barrier_begin(mesh_arena.base, frozen_bytes);
}

static void parent(void)
{
    int saved = errno;
    if (fork_pipe[1] >= 0) {
        close(fork_pipe[1]);
        char byte;
        /* EOF (the child died first) releases us just as well as its byte. */
        while (read(fork_pipe[0], &byte, 1) < 0 && errno == EINTR)
            ;
        close(fork_pipe[0]);
    }
    mesh_barrier_end(mesh_arena.base, frozen_bytes);
    mesh_arena_unlock();
    mesh_span_table_unlock();
    mesh_global_unlock_all();
    mesh_thread_heaps_resume();
    errno = saved;
}

/* Live spans of the arena, in record order, adjacent ones merged. */
struct span_iter {
    uint32_t next_id, hwm;
};

static int span_next(void *ctx, uint32_t *first, uint32_t *count)
{
    struct span_iter *it = ctx;
    uint32_t start = 0, n = 0;
    for (; it->next_id < it->hwm; it->next_id++) {
        const struct mesh_span_record *r = mesh_record(it->next_id);
        if (r->state == MESH_SPAN_FREE)
            continue;
        if (n && r->phys_page != start + n)
            break;
        if (!n)
            start = r->phys_page;
        n += r->span_pages;
    }
    *first = start;
    *count = n;
    return n != 0;
}

static void span_rewind(void *ctx) { ((struct span_iter *)ctx)->next_id = 1; }

void mesh_fork_make_child_private(void)
{
    if (child_private)
        return;
    int failed = 0;
    if (mesh_spans.fd >= 0)
        failed |= mesh_span_table_clone() != 0;
    if (mesh_arena.fd >= 0 && !failed) {
        struct span_iter it = {.next_id = 1, .hwm = mesh_record_hwm()};
        failed |= mesh_region_clone(mesh_arena.base, mesh_arena.bytes, &mesh_arena.fd,
                                    "libmesh-arena", span_next, &it, span_rewind) != 0;
        if (!failed)
            mesh_arena_after_clone(); /* the new mapping is writable: barrier gone */
    } else if (!failed) {
        mprotect(mesh_arena.base, frozen_bytes, PROT_READ | PROT_WRITE); /* private arena */
    }
    if (failed) {
        /* Running on would corrupt the parent's heap. */
        struct mesh_line l = {.len = 0};
        mesh_line_str(&l, "libmesh: fork(): no memory for the child's private heap");
        mesh_line_write(&l, STDERR_FILENO);
        _exit(127);
    }
    child_private = 1;
    mesh_barrier_reset_child();
}

static void child(void)
{
    int saved = errno;
    if (fork_pipe[0] >= 0)
        close(fork_pipe[0]);
    mesh_arena_lock_reset();
    mesh_span_table_lock_reset();
    mesh_global_lock_reset_all();
    mesh_fork_make_child_private();
    mesh_thread_heaps_after_fork_child();
    if (fork_pipe[1] >= 0) {
        char byte = 1;
        while (write(fork_pipe[1], &byte, 1) < 0 && errno == EINTR)
            ;
        close(fork_pipe[1]);
    }
    errno = saved;
}

void mesh_fork_init(void) { pthread_atfork(prepare, parent, child); }
