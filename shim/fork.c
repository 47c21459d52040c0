/*
 * fork.c: a private heap for the child of fork().
 *
 * The arena and span table are MAP_SHARED memfds, which fork would share between parent
 * and child.  The parent's prepare handler (heap frozen: metadata by the locks and the fork
 * guard) makes an empty memfd; right after fork, the parent's handler copies the arena's
 * live pages into it while the child's handler (registered first, so it runs first) waits
 * on a pipe, then maps that file where the arena was, re-creates the aliases of meshed
 * spans on it, and takes a private copy of the span table; the parent waits for that (the
 * table is shared until then).  The copy is made after the fork system call, not in
 * prepare: whatever a thread wrote before fork, then published in private memory (a
 * global pointer), must be in the child's heap too (test_threads' stress_threads_and_forks
 * caught a prepare-time copy).  So every object live at fork reaches the child as it was,
 * except for what the program itself writes from other threads meanwhile (such writes
 * race with fork).
 *
 * Why the parent copies, eagerly (issue 12; 1 GiB live heap, 2-core VM):
 *   - The cost is the kernel allocating shmem pages for the copy (shmem_alloc_and_add_folio,
 *     about 1.5 us a page here) plus the copy; a hot memcpy of 1 GiB takes 0.1 s.  The
 *     child used to copy: its inherited MAP_SHARED mapping has no page table entries
 *     (fork copies none for shared file mappings), so it also faulted in every source page
 *     (fault-around, 16 at a time), and the parent sat idle, frozen, meanwhile: 0.6-1 s on
 *     a quiet machine, 2.5-4.7 s on a busy one.  The parent has the source pages mapped
 *     already: 0.48 s.
 *   - Only live pages are copied: the physical pages of live span records, collected into
 *     a bitmap and copied in address order as maximal runs (records are in no address
 *     order: one pwrite per span made 65k calls for 1 GiB), and of those only the pages
 *     the file holds (mincore through base, whose page table entries answer for the
 *     pages the parent touched: 3 us per 1024 pages against 26 us through the untouched
 *     window, 40 ms a GiB), so a calloc'ed, untouched large block is not
 *     materialised in either file.  With swap configured, mincore cannot tell a swapped-out
 *     page from a hole, and every live page is copied (arena.c).  Dirty free ranges are not
 *     copied (they become clean in the child).  Aliases are copied once, as their physical
 *     span, and re-created in the child.
 *   - Measured and not taken: copy_file_range/sendfile between memfds (0.45 s/GiB, no
 *     better than pwrite from mapped pages, and it needs the arena's descriptor, which the
 *     shim does not keep); MADV_POPULATE_WRITE of the new file then memcpy (0.6 s: the
 *     page allocation is the same, plus a second pass); parent and child copying halves
 *     in parallel (pwrite into one shmem file serialises on the inode lock: 0.46 vs 0.41 s;
 *     populate+memcpy halves: 0.37-0.40 s, only on an idle second CPU; the waiting child
 *     allocating the file's pages from the far end while the parent copies: 0.94-1.0 s
 *     against 0.74-0.81 s with other load on the machine); huge pages (shmem
 *     THP is "never" by default, and anonymous THP copies took 1.8-3 s here); a MAP_PRIVATE
 *     view of the parent's file made private by MADV_POPULATE_WRITE in the child (0.40 s,
 *     but the child would lose its memfd, hence meshing, and the parent's file must not
 *     change meanwhile).
 *   - A large heap (fork_cow.h) is not copied by the parent at all: its arena is
 *     write-protected with the barrier's userfaultfd (kernel writes wait on the handler,
 *     which needs root, vm.unprivileged_userfaultfd or /dev/userfaultfd), a cow thread
 *     saves each page's fork-time bytes into the child's file before the parent's first
 *     write to it goes on, and the child copies the rest while it runs (fork_lazy.h: a
 *     helper thread fills each page before the child's first touch of it), so a child
 *     that execs or exits at once copies next to nothing.  The parent's fork() returns in
 *     ~24 ms for 1 GiB.  forkbench's child reads every object at once, so its copy costs
 *     what it did.
 *
 * Where forkbench's time goes (1024 MiB, 1.16 GiB of live pages copied per fork; fork12e,
 * 2026-12-01, quiet moments of a shared 2-core VM; per fork, libmesh against jemalloc):
 *   - parent, fork() to return: 0.43-0.50 s against 0.02-0.03 s.  All of it is the copy
 *     (pwrite 45% of all samples of the run: shmem_get_folio_gfp/shmem_alloc_and_add_folio
 *     24%, copy_folio_from_iter 16%, shmem_write_end 12%; mincore 3.4% before the change
 *     above).  That is the floor of making fresh pages on this VM: pwrite of 1 GiB into a
 *     new memfd alone takes 0.34 s, and first-touching 1 GiB of anonymous memory 0.50 s.
 *     Fresh pages cost more still after the machine has been idle for a moment: the guest
 *     reports free memory to the host (virtio-balloon free page reporting, on here), so
 *     a page allocated again is faulted in by the host as well (first touch of 1 GiB:
 *     0.50 s back to back, 0.83-0.96 s with 3 s between).  Hence fork() taking 0.66-2.28 s
 *     inside make bench, where other allocators' runs free gigabytes between forks, and
 *     0.45-0.50 s run alone.  jemalloc's child shares its pages copy-on-write and makes
 *     none.
 *   - child, reading every object: 0.2 s user + ~0.07 s sys against 0.3 s user + ~0.02 s
 *     sys.  Its faults on the fresh mapping are cheap (fault-around maps 16 pages a
 *     fault: 0.05 s a GiB), so populating the mapping up front (MADV_POPULATE_READ of the
 *     live runs) saved nothing (the children's sys time was 0.23 s a fork with it, 0.18
 *     without) and would charge every fork+exec child.
 *   - child, exit: 0.13 s against 0.02 s: unmapping its 1 GiB of file pages (0.057 s)
 *     and freeing the file (0.055 s, shmem truncate).  Inherent to a child owning a copy.
 *   - The 3,000-6,000 madvise calls of a forkbench run are MADV_REMOVE of the parent's
 *     final frees (arena.c's purge), not fork's.
 *   So the eager copy costs ~0.55 s of system time per fork of a 1 GiB heap, and make
 *   bench's fork1g (five forks) cannot come within 1.15x of jemalloc's wall time or 1.5x
 *   of its system time by tuning the copy: only sharing the parent's pages until either
 *   side writes them would.  A private view of the parent's file is live, not a snapshot,
 *   so the child must make a page its own before the parent's first write to it:
 *   fork_share.h does that (MESH_FORK_SHARE=1, not the default: a stopped child holds up
 *   the parent's writes).
 *   Measured again and not taken: parent and child both filling the file, in 4 MiB chunks
 *   claimed from a shared counter (the parent with pwrite, the child with
 *   MADV_POPULATE_WRITE and memcpy through a mapping of the file, which it then adopts as
 *   its window): fork() returned after 0.35 s when the second CPU was idle, but against
 *   main, interleaved on a loaded machine, wall 1.09x, CPU 1.12x (the child's copy is
 *   slower per page, 0.73 s a GiB alone, and memcpy adds user time), and the child's
 *   RSS counted its pages twice (window and base).
 * If prepare cannot make the file (no memfd: a seccomp filter installed since set-up,
 * memory limits, a file size limit below the arena's size, whose SIGXFSZ would kill the
 * process) or fill it, the child copies for itself as before: into its own memfd, else into
 * private anonymous memory (no meshing), else it exits 127 with a message, since running
 * on would corrupt the parent's heap; the parent's fork() has returned the child's pid by
 * then, as for any child that dies early.  vfork, posix_spawn and _Fork run no atfork
 * handler: nothing is copied (the last shares the heap, as it would any MAP_SHARED memory).
 *
 * Known gap: glibc's fork-child code runs before any atfork handler and resets the locks
 * of fopen()ed FILEs, which live in the still-shared arena.  A write barrier over the
 * arena would stop that, but it makes read(2) into the heap by other threads fail with
 * EFAULT during the copy (it hung Python's multiprocessing), so it is not used here.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alias_map.h"
#include "arena.h"
#include "lock.h"
#include "barrier.h"
#include "control.h"
#include "fdutil.h"
#include "fork_cow.h"
#include "fork_lazy.h"
#include "fork_share.h"
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
 *   fork_pipe  the parent waits on its read end until the child has its private heap
 *              (a byte, or EOF if the child died or fork failed; when the parent copies the
 *              heap for the child, a first byte says the child is there, below); created
 *              after fork_lock is taken, so
 *              no other fork overwrites it or inherits its write end, and both ends are
 *              closed and forgotten (-1) before the lock is released, so no later fork
 *              ever closes a stale number that the program has since reused.
 * glibc runs the handlers of concurrent forks without a lock of its own between them.
 */
static mesh_lock_t fork_lock = MESH_LOCK_INIT;
static int fork_pipe[2] = {-1, -1};
/*
 *   child_arena_fd  the child's arena file, made by prepare, filled by the parent after
 *              fork (mesh_arena_snapshot_file/_fill), or -1: the child copies for itself.
 *   copy_pipe  the child waits on its read end for the parent's verdict on that file: a
 *              byte 1 (filled) or 0 (failed: the child copies for itself), or EOF (the
 *              parent died: likewise).  The parent keeps its read end open until it has
 *              written, so the write never meets a pipe without readers (no SIGPIPE) when
 *              fork itself failed.
 * Owned like fork_pipe; each side closes its own copies.
 */
static int child_arena_fd = -1;
static int copy_pipe[2] = {-1, -1};
/*
 *   share_sock  a socketpair (SOCK_SEQPACKET) for a fork whose child may share the
 *              parent's pages (fork_share.h): [0] the parent's cow thread's, [1] the
 *              child's helper's; or -1s.  Owned like fork_pipe.
 */
static int share_sock[2] = {-1, -1};

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/*
 * The physical pages of the live spans, as a bitmap over [0, end), walked in address
 * order: maximal runs make few, large copies however the records are ordered (a span
 * record's id says nothing about where its pages are).  Aliases (meshed virtual spans)
 * are not listed: their pages are their physical span's, copied once.
 */
struct live_pages {
    uint64_t *bits;
    size_t bytes;
    uint32_t end, next;
};

static int live_pages_collect(struct live_pages *lp)
{
    uint32_t hwm = mesh_record_hwm();
    lp->end = lp->next = 0;
    for (uint32_t id = 1; id < hwm; id++) {
        const struct mesh_span_record *r = mesh_record(id);
        if (r->state != MESH_SPAN_FREE && r->phys_page + r->span_pages > lp->end)
            lp->end = r->phys_page + r->span_pages;
    }
    lp->bytes = ((size_t)lp->end + 63) / 64 * sizeof(uint64_t) + sizeof(uint64_t);
    void *p = mmap(NULL, lp->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    lp->bits = p;
    for (uint32_t id = 1; id < hwm; id++) {
        const struct mesh_span_record *r = mesh_record(id);
        if (r->state == MESH_SPAN_FREE)
            continue;
        for (uint32_t page = r->phys_page; page < r->phys_page + r->span_pages; page++)
            lp->bits[page / 64] |= 1ull << (page % 64);
    }
    return 0;
}

static int live_pages_bit(const struct live_pages *lp, uint32_t page)
{
    return (int)(lp->bits[page / 64] >> (page % 64)) & 1;
}

static int live_run_next(void *ctx, uint32_t *first, uint32_t *count)
{
    struct live_pages *lp = ctx;
    uint32_t page = lp->next;
    while (page < lp->end && !lp->bits[page / 64] && page % 64 == 0)
        page += 64; /* whole empty words at once */
    while (page < lp->end && !live_pages_bit(lp, page))
        page++;
    uint32_t start = page;
    while (page < lp->end && live_pages_bit(lp, page))
        page++;
    lp->next = page;
    *first = start;
    *count = page - start;
    return page > start;
}

/* Testing only: MESH_TEST_FORK_CHILD_COPIES=1 makes every fork take the fallback, the
 * child copying for itself, as when prepare cannot have a memfd. */
static int child_copies_for_test(void)
{
    const char *env = getenv("MESH_TEST_FORK_CHILD_COPIES");
    return env && *env == '1';
}

/* prepare, heap frozen, fork_pipe made: an empty file for the child's arena, and the pipe
 * to say it is filled; neither, if either cannot be had. */
static void make_child_arena(void)
{
    if (!mesh_arena.shared || fork_pipe[0] < 0 || mesh_sandbox_filtered_now() ||
        child_copies_for_test())
        return;
    child_arena_fd = mesh_arena_snapshot_file();
    if (child_arena_fd >= 0 && mesh_fd_pipe_high(copy_pipe) != 0)
        close_fd(&child_arena_fd);
}

static char read_byte(int fd)
{
    char byte = 0;
    ssize_t got;
    while ((got = read(fd, &byte, 1)) < 0 && errno == EINTR)
        ;
    return got == 1 ? byte : 0;
}

/* Never raises SIGPIPE: a fork child's reader may be gone (its parent died, or the
 * program closed the parent's end) and the child must live on all the same.  SIGPIPE is
 * blocked around the write and, if the write raised it, taken back. */
static void write_byte(int fd, char byte)
{
    sigset_t pipe_only, old, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);
    ssize_t rc;
    while ((rc = write(fd, &byte, 1)) < 0 && errno == EINTR)
        ;
    if (rc < 0 && errno == EPIPE && !was_pending)
        sigtimedwait(&pipe_only, NULL, &(struct timespec){0, 0});
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/*
 * parent, right after fork, heap still frozen: fills the child's file, where the source
 * pages are mapped already (see the header comment for why the parent copies), or, for a
 * copy-on-write fork, protects its heap and leaves the copy to the child (fork_cow.h); then
 * tells the child which (copy_pipe: 1 filled, 2 copy-on-write, 3 shared, 0 neither).  A child that
 * said it can share (3) maps the parent's file privately and shares its pages
 * (fork_share.h): the parent then protects its heap as for a copy-on-write and its cow
 * thread asks the child's helper before each first write.  Only once the child
 * has said it is there (a byte on fork_pipe): when fork failed, which is likely when memory
 * is short, nobody needs a copy of the heap; and the child's own first writes into the
 * heap (glibc's fork-child code resets the locks of FILEs before any handler runs) are in
 * the file, since the child is single-threaded and waits, from that byte on, until the
 * file is filled.  A copy-on-write takes fork_pipe's read end (the child's last byte, or
 * EOF, ends it), so parent() does not wait for the child's copy.
 */
static void copy_for_child(int cow)
{
    if (child_arena_fd < 0)
        return;
    struct live_pages lp;
    char verdict = 0, here = read_byte(fork_pipe[0]);
    if ((here == 1 || here == 3) && live_pages_collect(&lp) == 0) {
        if (cow && here == 3 && share_sock[0] >= 0 &&
            mesh_fork_cow_start(-1, lp.bits, lp.bytes, lp.end, share_sock[0]) == 0) {
            share_sock[0] = -1; /* the cow thread's now (and closed here) */
            verdict = 3;
        } else if (cow && mesh_fork_cow_start(child_arena_fd, lp.bits, lp.bytes, lp.end, fork_pipe[0]) == 0) {
            fork_pipe[0] = -1; /* the cow thread's now (and closed here) */
            verdict = 2;
        } else {
            verdict = mesh_arena_snapshot_fill(child_arena_fd, live_run_next, &lp) == 0;
            munmap(lp.bits, lp.bytes);
        }
    }
    close_fd(&child_arena_fd);
    write_byte(copy_pipe[1], verdict);
    close_fd(&copy_pipe[1]);
    close_fd(&copy_pipe[0]);
}

/* child: tells the parent it is here (1; 3: and ready to share its pages) and returns
 * the parent's verdict on child_arena_fd (0: the file is dropped; 3: shared, no file). */
static char parent_verdict(char here)
{
    char verdict = 0;
    close_fd(&copy_pipe[1]);
    if (copy_pipe[0] >= 0) {
        write_byte(fork_pipe[1], here);
        verdict = read_byte(copy_pipe[0]);
    }
    close_fd(&copy_pipe[0]);
    if (verdict != 1 && verdict != 2)
        close_fd(&child_arena_fd);
    return verdict;
}

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

/* This fork's choice (fork_cow.h), made by prepare; owned like fork_pipe. */
static int fork_cow;

/* prepare: the socketpair for a child that may share (share_sock), if this fork may. */
static void make_share_sock(void)
{
    int sv[2];
    if (!fork_cow || !mesh_fork_share_possible() ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return;
    share_sock[0] = mesh_fd_move_high(sv[0]);
    share_sock[1] = mesh_fd_move_high(sv[1]);
    if (share_sock[0] < 0 || share_sock[1] < 0) {
        close_fd(&share_sock[0]);
        close_fd(&share_sock[1]);
    }
}

static void prepare(void)
{
    int saved = errno;
    /* A child sharing its parent's pages makes them its own first: its own child would
     * inherit pages nobody populates for it (fork_share.h). */
    mesh_fork_share_detach();
    mesh_fork_lazy_finish(); /* its own child would inherit the holes */
    mesh_lock(&fork_lock);
    /* Before the freeze: it reads the arena's size under its lock, and may start the cow
     * thread (which allocates). */
    fork_cow = mesh_fork_cow_wanted();
    /* A private heap (no memfd: sandboxed, or memfd refused) reaches the child as a
     * copy-on-write snapshot: nothing to wait for, and no pipe2 for a filter to refuse. */
    if (!mesh_arena.shared && !mesh_spans.shared)
        fork_pipe[0] = fork_pipe[1] = -1;
    else
        mesh_fd_pipe_high(fork_pipe); /* high numbers (fdutil.h); -1s if it failed */
    mesh_heap_freeze();
    make_child_arena();
    if (child_arena_fd >= 0)
        make_share_sock();
    errno = saved;
}

static void parent(void)
{
    int saved = errno;
    close_fd(&share_sock[1]); /* the child's; its EOF ends a sharing */
    if (fork_pipe[1] >= 0) {
        close_fork_pipe_end(1);
        copy_for_child(fork_cow);
        /* EOF (the child died first, or fork failed) releases us just as well. */
        if (fork_pipe[0] >= 0)
            read_byte(fork_pipe[0]);
    }
    close_fork_pipe_end(0);
    close_fd(&share_sock[0]);
    if (fork_cow)
        mesh_fork_cow_abandon(); /* unless it started: the thread made for it exits */
    mesh_heap_thaw();
    mesh_unlock(&fork_lock);
    errno = saved;
}

static void live_pages_rewind(void *ctx) { ((struct live_pages *)ctx)->next = 0; }

void mesh_fork_child_lost(int err_fd)
{
    struct mesh_line l = {.len = 0};
    mesh_line_str(&l, "libmesh: fork(): no memory for the child's private heap");
    if (err_fd >= 0)
        mesh_line_write(&l, err_fd);
    _exit(127);
}

/* The child's heap is being copied lazily; its helper sends the parent's last byte. */
static int lazy_running;

void mesh_fork_make_child_private(void)
{
    if (mesh_heap_pid == getpid())
        return;
    mesh_barrier_forget(); /* the parent's userfaultfd is not the child's */
    mesh_sandbox_after_fork_child();
    mesh_sandbox_check();  /* the parent may have installed a filter since set-up */
    /* Single-threaded now; the locks were taken by prepare in the thread we are. */
    mesh_arena_lock_reset();
    mesh_arena_after_fork_child();
    mesh_span_table_lock_reset();
    mesh_global_lock_reset_all();
    int failed = 0;
    failed |= mesh_span_table_clone() != 0;
    int share_ready = 0, lazy = 0;
    if (mesh_arena.shared && !failed) {
        share_ready = share_sock[1] >= 0 && mesh_fork_share_child_setup(share_sock[1]) == 0;
        close_fd(&share_sock[0]);
        close_fd(&share_sock[1]); /* the helper has a copy of its own */
    }
    mesh_arena_forget_share_fd(); /* the parent's file: never this process's to share */
    char verdict = mesh_arena.shared && !failed ? parent_verdict(share_ready ? 3 : 1) : 0;
    if (verdict == 3) {
        /* The parent's pages, shared until either side writes (fork_share.h). */
        mesh_fork_share_child_verdict(1);
    } else if (mesh_arena.shared && !failed) {
        /* A refused share leaves base partly remapped: every path below maps all of it. */
        if (share_ready)
            mesh_fork_share_child_verdict(0);
        if (verdict == 2) {
            /* Copy-on-write: the parent runs on and writes its file, so only a copy that
             * keeps the pages its cow thread put in will do; without one, no private heap.
             * Lazily (fork_lazy.h) if it can be: the file is adopted now, filled later. */
            struct live_pages lp;
            failed = live_pages_collect(&lp) != 0;
            if (!failed && mesh_fork_lazy_prepare(child_arena_fd, lp.bits, lp.bytes, lp.end, fork_pipe[1]) == 0) {
                lazy = 1;
                failed = mesh_arena_adopt(child_arena_fd) != 0;
                if (failed)
                    mesh_fork_lazy_abandon();
            } else if (!failed) {
                failed = mesh_fork_cow_child_copy(child_arena_fd, lp.bits, lp.end) != 0 ||
                         mesh_arena_adopt(child_arena_fd) != 0;
                munmap(lp.bits, lp.bytes);
            }
        } else if (verdict != 1 || mesh_arena_adopt(child_arena_fd) != 0) {
            struct live_pages lp;
            failed = live_pages_collect(&lp) != 0;
            if (!failed) {
                failed = mesh_arena_clone(live_run_next, &lp, live_pages_rewind) != 0;
                munmap(lp.bits, lp.bytes);
            }
        }
        close_fd(&child_arena_fd);
        if (!failed) {
            mesh_arena_after_clone();
            mesh_alias_reset();
        }
        /* Meshed spans' other virtual spans point at their physical span again, in the
         * child's file (a private fallback arena inherited them as they were). */
        if (!failed)
            failed = mesh_engine_restore_aliases() != 0;
    }
    mesh_fork_cow_after_fork_child();
    /* Before anything reads the heap: its pages are holes until the helper has them. */
    if (lazy && !failed) {
        int rc = mesh_fork_lazy_start();
        failed = rc < 0;
        lazy_running = rc == 1;
    }
    if (failed)
        mesh_fork_child_lost(STDERR_FILENO);
    mesh_sandbox_note_arena(mesh_arena.shared, !mesh_file_size_allowed(mesh_arena.bytes));
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
    /* done, unless the lazy copy's helper says so when it is */
    if (fork_pipe[1] >= 0 && !lazy_running)
        write_byte(fork_pipe[1], 1);
    lazy_running = 0;
    close_fork_pipe_end(1);
    errno = saved;
}

void mesh_fork_init(void)
{
    mesh_heap_pid = getpid();
    pthread_atfork(prepare, parent, child);
}
