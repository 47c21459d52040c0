/*
 * fork.c: a private heap for the child of fork().
 *
 * The arena and span table are MAP_SHARED memfds, which fork would share between parent
 * and child.  The child's atfork handler (registered first, so it runs first) builds its
 * private heap: a new memfd holding a copy of every live span, mapped where the arena
 * was, and a private copy of the span table (cost: the live heap, not the arena).  Until
 * the child has its copy, the parent's allocator is frozen: metadata by the locks and the
 * fork guard, and memory by mesh_fork_pending, which stops it from reusing memory freed
 * after fork or writing into objects.  So every object live at fork reaches the child as
 * it was, except for what the program itself writes from other threads meanwhile (such
 * writes race with fork).
 *
 * Known gap: glibc's fork-child code runs before any atfork handler and resets the locks
 * of fopen()ed FILEs, which live in the still-shared arena.  A write barrier over the
 * arena would stop that, but it makes read(2) into the heap by other threads fail with
 * EFAULT during the copy (it hung Python's multiprocessing), so it is not used here.
 * vfork and posix_spawn share the address space and need nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "alias_map.h"
#include "arena.h"
#include "lock.h"
#include "barrier.h"
#include "control.h"
#include "fdutil.h"
#include "global_heap.h"
#include "init.h"
#include "mesh_engine.h"
#include "report.h"
#include "sandbox.h"
#include "span_table.h"
#include "thread_heap.h"

pid_t mesh_heap_pid; /* the process whose heap is mapped; differs in a fresh fork child */

/*
 * Forks from several threads at once are serialised by fork_lock: prepare takes it before
 * anything else, parent and child release it last.  Everything below is owned by the one
 * fork in progress, and is only valid while fork_lock is held:
 *   fork_pipe  the parent waits on its read end until the child has copied the shared heap
 *              (a byte, or EOF if the child died); created after fork_lock is taken, so
 *              no other fork overwrites it or inherits its write end, and both ends are
 *              closed and forgotten (-1) before the lock is released, so no later fork
 *              ever closes a stale number that the program has since reused.
 * glibc runs the handlers of concurrent forks without a lock of its own between them.
 */
static mesh_lock_t fork_lock = MESH_LOCK_INIT;
static int fork_pipe[2] = {-1, -1};

static void close_fork_pipe_end(int end)
{
    if (fork_pipe[end] >= 0)
        close(fork_pipe[end]);
    fork_pipe[end] = -1;
}

/* The span table's writers (span_table.h) are stopped in this order: shared ops first,
 * since a thread inside one may still take the locks that follow. */
void mesh_heap_freeze(void)
{
    mesh_thread_heaps_quiesce();
    mesh_global_lock_all();
    mesh_span_table_lock();
    mesh_arena_lock();
}

void mesh_heap_thaw(void)
{
    mesh_arena_unlock();
    mesh_span_table_unlock();
    mesh_global_unlock_all();
    mesh_thread_heaps_resume();
}

static void prepare(void)
{
    int saved = errno;
    mesh_lock(&fork_lock);
    /* A private heap (no memfd: sandboxed, or memfd refused) reaches the child as a
     * copy-on-write snapshot: nothing to wait for, and no pipe2 for a filter to refuse. */
    if (!mesh_arena.shared && !mesh_spans.shared)
        fork_pipe[0] = fork_pipe[1] = -1;
    else
        mesh_fd_pipe_high(fork_pipe); /* high numbers (fdutil.h); -1s if it failed */
    mesh_heap_freeze();
    errno = saved;
}

static void parent(void)
{
    int saved = errno;
    if (fork_pipe[1] >= 0) {
        close_fork_pipe_end(1);
        char byte;
        /* EOF (the child died first, or fork failed) releases us just as well. */
        while (read(fork_pipe[0], &byte, 1) < 0 && errno == EINTR)
            ;
    }
    close_fork_pipe_end(0);
    mesh_heap_thaw();
    mesh_unlock(&fork_lock);
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
    if (mesh_heap_pid == getpid())
        return;
    mesh_barrier_forget(); /* the parent's userfaultfd is not the child's */
    mesh_sandbox_check();  /* the parent may have installed a filter since set-up */
    /* Single-threaded now; the locks were taken by prepare in the thread we are. */
    mesh_arena_lock_reset();
    mesh_arena_after_fork_child();
    mesh_span_table_lock_reset();
    mesh_global_lock_reset_all();
    int failed = 0;
    failed |= mesh_span_table_clone() != 0;
    if (mesh_arena.shared && !failed) {
        struct span_iter it = {.next_id = 1, .hwm = mesh_record_hwm()};
        failed = mesh_arena_clone(span_next, &it, span_rewind) != 0;
        if (!failed) {
            mesh_arena_after_clone();
            mesh_alias_reset();
        }
        /* Meshed spans' other virtual spans point at their physical span again, in the
         * child's file (a private fallback arena inherited them as they were). */
        if (!failed)
            failed = mesh_engine_restore_aliases() != 0;
    }
    if (failed) {
        /* Running on would corrupt the parent's heap. */
        struct mesh_line l = {.len = 0};
        mesh_line_str(&l, "libmesh: fork(): no memory for the child's private heap");
        mesh_line_write(&l, STDERR_FILENO);
        _exit(127);
    }
    mesh_sandbox_note_arena(mesh_arena.shared);
    mesh_heap_pid = getpid();
    atomic_store(&mesh_fork_pending, 0);
}

static void child(void)
{
    int saved = errno;
    /* Single-threaded now: the lock was taken by prepare in the thread we are. */
    mesh_lock_reset(&fork_lock);
    close_fork_pipe_end(0);
    mesh_fork_make_child_private();
    mesh_thread_heaps_after_fork_child();
    mesh_control_after_fork_child();
    if (fork_pipe[1] >= 0) {
        char byte = 1;
        while (write(fork_pipe[1], &byte, 1) < 0 && errno == EINTR)
            ;
    }
    close_fork_pipe_end(1);
    errno = saved;
}

void mesh_fork_init(void)
{
    mesh_heap_pid = getpid();
    pthread_atfork(prepare, parent, child);
}
