/* fork_cow.c: the parent's side of a copy-on-write fork; see fork_cow.h. */
#include "fork_cow.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/single_threaded.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alias_map.h"
#include "arena.h"
#include "barrier.h"
#include "fork_share.h"
#include "lock.h"
#include "mesh.h"
#include "page_install.h"
#include "service_thread.h"

_Atomic int mesh_fork_cow_active;

#define COW_MIN_DEFAULT (64ull << 20)
#define COW_SEEN_END_MS 20u   /* for the cow thread to see its child's end */
#define COW_END_MS      2000u /* for it to finish then */

/*
 * One copy-on-write at a time, set up by mesh_fork_cow_start (under fork_lock, heap
 * frozen) before mesh_fork_cow_active goes to 1, then owned by the cow thread until it
 * stores 0.
 */
static struct {
    uint64_t *live;                         /* file pages live at fork */
    size_t live_bytes;
    uint32_t live_end;
    struct mesh_page_installer child_file;  /* the child's file, filled where empty (not
                                             * when sharing: uffd -1) */
    int done_fd;                            /* the child's byte, or EOF; when sharing, the
                                             * socket to the child's helper (fork_share.h) */
    int shared;                             /* the child shares the parent's file */
    uint8_t *lo;                            /* protected: arena pages [0, hwm) at fork */
    size_t len;
} G = {.child_file = {.uffd = -1}, .done_fd = -1};

/*
 * The copy itself is shared out in chunks of COW_CHUNK_PAGES file pages: the child copies
 * them, and the cow thread copies them too while no write waits (a CPU the parent's
 * program does not use, or shares), each taking the next unclaimed chunk.  The chunk
 * table is shared memory, made by the parent before the fork.  A chunk is DONE once its
 * pages are in the child's file; the child, out of chunks, copies every chunk not DONE
 * yet itself (the one the cow thread is on, or one it gave up): pages already there are
 * kept, so two copies of one chunk cost time, never bytes.  1 MiB a chunk: a write waits
 * at most one chunk's copy (~0.5 ms) behind the cow thread.
 */
#define COW_CHUNK_PAGES MESH_COW_CHUNK_PAGES
enum { CHUNK_FREE, CHUNK_CLAIMED, CHUNK_DONE };
struct mesh_cow_chunks {
    uint32_t count;
    _Atomic uint32_t cursor; /* chunks [0, cursor) are claimed */
    _Atomic uint8_t state[];
};
static struct mesh_cow_chunks *chunks; /* the parent's: a child unmaps its inherited view */
static size_t chunks_bytes;

static _Atomic uint64_t forks_cow, forks_shared, writes_served;

/*
 * The cow thread: one per copy-on-write fork, made by prepare (mesh_fork_cow_wanted) and
 * gone at the end.  It works from a descriptor table of its own holding only the fork's
 * three descriptors (the barrier's userfaultfd, the installer's, the child's pipe): a
 * program that closes every descriptor it did not open (closefrom(3) after fork, a
 * daemon's clean-up) or dup2()s over one of them must neither end the copy-on-write early
 * (a closed userfaultfd drops its write-protection: the parent's writes would reach pages
 * the child has not copied yet) nor leave the child's last byte to a pipe without
 * readers; and a descriptor the program closes must not be kept open by the thread's
 * table (a socket's peer waits for its FIN).  Steps, in cow_step (a futex word):
 *   COW_NONE   no thread; the next copy-on-write fork makes one
 *   COW_READY  made, waits for the fork (parent handler: _start, or _abandon)
 *   COW_OWN    the fork's descriptors are in G: take them into a table of its own
 *   COW_OWNED  done (the parent then closes its copies), or COW_NONE if it could not
 *   COW_RUN    serving, until the child's byte or EOF
 *   COW_ENDING releasing the protection; then COW_NONE, and it exits
 *   COW_QUIT   no copy-on-write after all (fork failed, or the protection did): exit
 */
enum { COW_NONE, COW_READY, COW_OWN, COW_OWNED, COW_RUN, COW_ENDING, COW_QUIT };
static _Atomic int cow_step;

static void step_to(int step) { mesh_step_to(&cow_step, step); }

/* Waits while cow_step is `from`; the step after it. */
static int step_after(int from) { return mesh_step_after(&cow_step, from); }

static int bit(const uint64_t *bits, uint32_t page) { return (int)(bits[page / 64] >> (page % 64)) & 1; }

static int live(uint32_t page) { return page < G.live_end && bit(G.live, page); }

/* A writer waits on the page at addr: its bytes go to the child's file first (if live at
 * fork and not there yet), then the write goes on.  A page that could not be saved stays
 * protected: its writer waits until the end.  The bytes are read where the writer faulted:
 * that page is mapped (through the window, each save would map 16 more pages, counted
 * twice in the process's RSS: 25 MiB after three BGSAVEs of a 150 MiB Redis). */
static void serve_write(void *addr)
{
    if (!mesh_in_arena(addr))
        return;
    uint32_t virt = mesh_page_of(addr), phys = mesh_alias_phys(virt);
    if (phys < mesh_arena.total_pages && live(phys) &&
        mesh_installer_put(&G.child_file, phys, 1, mesh_page_addr(virt)) != 0)
        return;
    mesh_barrier_unprotect(mesh_page_addr(virt), MESH_PAGE_SIZE);
    atomic_fetch_add_explicit(&writes_served, 1, memory_order_relaxed);
}

/* A sharing child's pages: a batch of writers waits; the file pages live at fork and not
 * asked for yet go to the child's helper in one request (fork_share.h), and once it has
 * made them its own the writes go on.  A page the helper could not populate stays
 * protected (its writer waits until the end).  0, or -1: the child is gone (the end). */
static int serve_shared(void *const *addrs, int n)
{
    struct mesh_share_request req = {.count = 0};
    for (int i = 0; i < n; i++) {
        if (!mesh_in_arena(addrs[i]))
            continue;
        uint32_t phys = mesh_alias_phys(mesh_page_of(addrs[i]));
        if (phys < mesh_arena.total_pages && live(phys))
            req.pages[req.count++] = phys;
    }
    char answer = MESH_SHARE_DONE;
    if (req.count) {
        size_t len = sizeof req.count + req.count * sizeof req.pages[0];
        ssize_t rc;
        while ((rc = send(G.done_fd, &req, len, MSG_NOSIGNAL)) < 0 && errno == EINTR)
            ;
        if (rc != (ssize_t)len)
            return -1;
        while ((rc = recv(G.done_fd, &answer, 1, 0)) < 0 && errno == EINTR)
            ;
        if (rc != 1)
            return -1;
    }
    if (answer != MESH_SHARE_DONE)
        return 0;
    for (uint32_t i = 0; i < req.count; i++) /* the child's own now: never asked again */
        G.live[req.pages[i] / 64] &= ~(1ull << (req.pages[i] % 64));
    for (int i = 0; i < n; i++)
        if (mesh_in_arena(addrs[i])) {
            mesh_barrier_unprotect(mesh_page_addr(mesh_page_of(addrs[i])), MESH_PAGE_SIZE);
            atomic_fetch_add_explicit(&writes_served, 1, memory_order_relaxed);
        }
    return 0;
}

/* The live pages of chunk c, read at src, into the child's file. */
static int copy_chunk(struct mesh_page_installer *in, const uint64_t *live_bits, uint32_t live_end,
                      uint32_t c, const uint8_t *src)
{
    uint32_t page = c * COW_CHUNK_PAGES, end = page + COW_CHUNK_PAGES < live_end ? page + COW_CHUNK_PAGES : live_end;
    while (page < end) {
        while (page < end && !bit(live_bits, page))
            page++;
        uint32_t first = page;
        while (page < end && bit(live_bits, page))
            page++;
        if (page > first && mesh_arena_install_present(in, src, first, page - first) != 0)
            return -1;
    }
    return 0;
}

/* The next unclaimed chunk of table t, now claimed, or UINT32_MAX. */
static uint32_t claim_chunk(struct mesh_cow_chunks *t)
{
    uint32_t c = atomic_fetch_add(&t->cursor, 1);
    if (c >= t->count)
        return UINT32_MAX;
    atomic_store(&t->state[c], CHUNK_CLAIMED);
    return c;
}

/* The cow thread's share of the copy, one chunk; 0 once there is none left (or a copy
 * failed: the child does that chunk). */
static int copy_a_chunk(void)
{
    uint32_t c = claim_chunk(chunks);
    /* base: the parent's own accesses left its page table entries (a live physical span is
     * identity-mapped), so neither mincore nor the copy faults. */
    if (c == UINT32_MAX || copy_chunk(&G.child_file, G.live, G.live_end, c, mesh_arena.base) != 0)
        return 0;
    atomic_store(&chunks->state[c], CHUNK_DONE);
    mesh_installer_unmap(&G.child_file, c * COW_CHUNK_PAGES, COW_CHUNK_PAGES);
    return 1;
}

/* The cow thread, at COW_OWN: a descriptor table of its own holding only the fork's
 * descriptors (three; two when the child shares: the barrier's userfaultfd and the
 * socket).  0, or -1. */
static int own_descriptors(void)
{
    int keep[3] = {mesh_barrier_fault_fd(), G.done_fd, G.child_file.uffd};
    return mesh_own_descriptors(keep, G.shared ? 2 : 3);
}

static void serve(void)
{
    struct pollfd fds[2] = {{.fd = mesh_barrier_fault_fd(), .events = POLLIN},
                            {.fd = G.done_fd, .events = POLLIN}};
    int copying = !G.shared; /* a sharing child needs no copy */
    for (;;) {
        int ready = poll(fds, 2, copying ? 0 : -1);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (ready == 0) { /* nobody waits: copy */
            copying = copy_a_chunk();
            continue;
        }
        if (fds[0].revents & POLLIN) {
            void *addrs[32];
            int n;
            while ((n = mesh_barrier_read_faults(addrs, 32)) > 0) {
                if (G.shared && serve_shared(addrs, n) != 0)
                    return;
                for (int i = 0; !G.shared && i < n; i++)
                    serve_write(addrs[i]);
            }
        }
        /* The child is done (a byte) or gone (EOF); a sharing child's helper only ever
         * answers, so anything it sends unasked is its end too. */
        if (fds[1].revents || (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)))
            return;
    }
}

/* The end: every writer woken, the fork's descriptors closed (this thread's table
 * emptied, before mesh_fork_cow_active drops: a userfaultfd the program closed goes with
 * it, and with it its registrations, which a fresh one may want). */
static void finish(void)
{
    mesh_barrier_release(G.lo, G.len);
    void *addrs[32];
    while (mesh_barrier_read_faults(addrs, 32) > 0)
        ; /* writers already woken by the release */
    if (!G.shared)
        mesh_installer_close(&G.child_file);
    munmap(G.live, G.live_bytes);
    mesh_close_own_descriptors();
    G.live = NULL;
    G.done_fd = -1;
    atomic_store(&mesh_fork_cow_active, 0);
    mesh_futex(&mesh_fork_cow_active, FUTEX_WAKE, INT_MAX);
}

/* Touches no heap memory: its own writes into the arena would wait for itself. */
static void *cow_main(void *arg)
{
    (void)arg;
    if (step_after(COW_READY) == COW_OWN) {
        if (own_descriptors() == 0) {
            step_to(COW_OWNED);
            if (step_after(COW_OWNED) == COW_RUN) {
                serve();
                step_to(COW_ENDING);
                finish();
            }
        }
        /* a table of its own, if it got one, goes with the thread */
    }
    step_to(COW_NONE);
    return NULL;
}

static int start_thread(void)
{
    step_to(COW_READY);
    if (mesh_service_thread_start(cow_main, NULL) == 0)
        return 0;
    step_to(COW_NONE);
    return -1;
}

static uint64_t cow_min_bytes(void)
{
    const char *env = getenv("MESH_FORK_COW_MIN");
    return env && *env ? strtoull(env, NULL, 10) : COW_MIN_DEFAULT;
}

void mesh_fork_cow_wait(void)
{
    int up;
    while ((up = atomic_load(&mesh_fork_cow_active)) != 0)
        mesh_futex(&mesh_fork_cow_active, FUTEX_WAIT, up);
}

/* The chunk table, for an arena of total_pages pages; 0, or -1. */
static int make_chunks(void)
{
    if (chunks)
        return 0;
    size_t bytes = sizeof *chunks + mesh_arena.total_pages / COW_CHUNK_PAGES + 1;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    chunks = p;
    chunks_bytes = bytes;
    return 0;
}

int mesh_fork_cow_wanted(void)
{
    /* One at a time: only a fork starts one, under fork_lock, so if no thread is left of
     * the last one now, none will be before this fork's. */
    const char *env = getenv("MESH_FORK_COW");
    if ((env && strcmp(env, "0") == 0) || !mesh_arena.shared || !mesh_arena.window ||
        __libc_single_threaded)
        return 0;
    struct mesh_arena_stats st;
    mesh_arena_stats(&st);
    if ((st.used_pages << MESH_PAGE_SHIFT) < cow_min_bytes())
        return 0;
    /* The last one may be ending (unprotecting a GiB takes ~40 ms), or its child may be
     * gone with the cow thread not yet scheduled to see it (a sharing ends at the child's
     * exit, a lazy copy at its end or the child's: fork_lazy.h; and a program forks again
     * as soon as it has reaped a child that exited at once): waiting for that spares this
     * fork the eager copy (~0.5 s a GiB). */
    int step = atomic_load(&cow_step);
    if (step == COW_RUN)
        step = mesh_step_after_for(&cow_step, COW_RUN, COW_SEEN_END_MS);
    if (step == COW_ENDING)
        mesh_step_after_for(&cow_step, COW_ENDING, COW_END_MS);
    if (atomic_load(&cow_step) != COW_NONE)
        return 0;
    mesh_barrier_choose();
    if (mesh_barrier_kind() != MESH_BARRIER_UFFD || mesh_barrier_fault_fd() < 0 || make_chunks() != 0)
        return 0;
    return start_thread() == 0;
}

void mesh_fork_cow_abandon(void)
{
    int ready = COW_READY;
    if (atomic_compare_exchange_strong(&cow_step, &ready, COW_QUIT))
        mesh_futex(&cow_step, FUTEX_WAKE, INT_MAX);
}

int mesh_fork_cow_start(int child_fd, uint64_t *live_bits, size_t live_bytes, uint32_t live_end,
                          int done_fd)
{
    G.shared = child_fd < 0;
    G.child_file.uffd = -1;
    if (atomic_load(&cow_step) != COW_READY ||
        (!G.shared && mesh_installer_open(&G.child_file, child_fd, mesh_arena.bytes) != 0))
        return -1;
    G.lo = mesh_arena.base;
    G.len = (size_t)mesh_arena_hwm_frozen() << MESH_PAGE_SHIFT;
    G.done_fd = done_fd;
    step_to(COW_OWN);
    if (step_after(COW_OWN) != COW_OWNED) /* the thread is gone */
        goto fail;
    if (G.len && mesh_barrier_protect_all(G.lo, G.len) != 0) {
        step_to(COW_QUIT);
        goto fail;
    }
    /* The thread has its own copies of the descriptors; the view stays mapped for it. */
    if (!G.shared)
        close(G.child_file.uffd);
    close(done_fd);
    G.live = live_bits;
    G.live_bytes = live_bytes;
    G.live_end = live_end;
    chunks->count = (live_end + COW_CHUNK_PAGES - 1) / COW_CHUNK_PAGES;
    atomic_store(&chunks->cursor, 0);
    for (uint32_t c = 0; c < chunks->count; c++)
        atomic_store_explicit(&chunks->state[c], CHUNK_FREE, memory_order_relaxed);
    atomic_fetch_add_explicit(G.shared ? &forks_shared : &forks_cow, 1, memory_order_relaxed);
    atomic_store(&mesh_fork_cow_active, 1);
    mesh_futex(&mesh_fork_cow_active, FUTEX_WAKE, INT_MAX);
    step_to(COW_RUN);
    return 0;
fail:
    if (!G.shared)
        mesh_installer_close(&G.child_file);
    G.done_fd = -1;
    return -1;
}

/* ---- the child's side of the copy ----------------------------------------------------- */

int mesh_fork_cow_child_copier(struct mesh_cow_copier *cp, int fd, const uint64_t *live_bits,
                               uint32_t live_end, const uint8_t *src)
{
    if (!chunks || mesh_installer_open(&cp->in, fd, mesh_arena.bytes) != 0)
        return -1;
    /* The parent's table, shared: this process's own forks make another. */
    cp->chunks = chunks;
    cp->chunks_bytes = chunks_bytes;
    chunks = NULL;
    cp->live = live_bits;
    cp->live_end = live_end;
    cp->src = src;
    return 0;
}

/* Chunk c of the copier's, copied (mapped in neither view afterwards: the child's RSS
 * would count its pages two or three times); 0, or -1. */
static int copier_chunk(struct mesh_cow_copier *cp, uint32_t c)
{
    int rc = copy_chunk(&cp->in, cp->live, cp->live_end, c, cp->src);
    mesh_installer_unmap(&cp->in, c * COW_CHUNK_PAGES, COW_CHUNK_PAGES);
    int saved = errno;
    madvise((void *)(cp->src + ((size_t)c * COW_CHUNK_PAGES << MESH_PAGE_SHIFT)),
            (size_t)COW_CHUNK_PAGES << MESH_PAGE_SHIFT, MADV_DONTNEED);
    errno = saved;
    return rc;
}

int mesh_cow_copier_next(struct mesh_cow_copier *cp)
{
    uint32_t c = claim_chunk(cp->chunks);
    if (c == UINT32_MAX)
        return 0;
    if (copier_chunk(cp, c) != 0)
        return -1;
    atomic_store(&cp->chunks->state[c], CHUNK_DONE);
    return 1;
}

int mesh_cow_copier_at(struct mesh_cow_copier *cp, uint32_t page)
{
    struct mesh_cow_chunks *t = cp->chunks;
    uint32_t c = page / COW_CHUNK_PAGES;
    if (c >= t->count || atomic_load(&t->state[c]) == CHUNK_DONE)
        return 0;
    if (copier_chunk(cp, c) != 0)
        return -1;
    atomic_store(&t->state[c], CHUNK_DONE);
    return 0;
}

int mesh_cow_copier_all(struct mesh_cow_copier *cp, int (*before_each)(void))
{
    int rc;
    do {
        if (before_each && before_each() != 0)
            return -1;
    } while ((rc = mesh_cow_copier_next(cp)) > 0);
    for (uint32_t c = 0; rc == 0 && c < cp->chunks->count; c++)
        rc = (before_each && before_each() != 0) || mesh_cow_copier_at(cp, c * COW_CHUNK_PAGES) != 0 ? -1 : 0;
    return rc;
}

void mesh_cow_copier_close(struct mesh_cow_copier *cp)
{
    mesh_installer_close(&cp->in);
    if (cp->chunks)
        munmap(cp->chunks, cp->chunks_bytes);
    cp->chunks = NULL;
}

int mesh_fork_cow_child_copy(int fd, const uint64_t *live_bits, uint32_t live_end)
{
    /* The inherited window shows the parent's file (unchanged where the child's file has
     * no page yet); base would too, but neither has page table entries here. */
    struct mesh_cow_copier cp;
    if (mesh_fork_cow_child_copier(&cp, fd, live_bits, live_end, mesh_arena.window) != 0)
        return -1;
    int rc = mesh_cow_copier_all(&cp, NULL);
    mesh_cow_copier_close(&cp);
    return rc;
}

void mesh_fork_cow_after_fork_child(void)
{
    if (chunks)
        munmap(chunks, chunks_bytes); /* the parent's: this process makes its own */
    chunks = NULL;
    /* The parent's copy-on-write (a fork while one ran copies eagerly) is not this
     * process's: left up, it would stop purges and meshing here for good. */
    atomic_store(&cow_step, COW_NONE);
    atomic_store(&mesh_fork_cow_active, 0);
}

/* Forks whose child shared the parent's pages (fork_share.h). */
MESH_EXPORT uint64_t mesh_fork_shared_count(void)
{
    return atomic_load_explicit(&forks_shared, memory_order_relaxed);
}

MESH_EXPORT void mesh_fork_cow_counts(uint64_t *forks, uint64_t *writes, int *active)
{
    *forks = atomic_load_explicit(&forks_cow, memory_order_relaxed);
    *writes = atomic_load_explicit(&writes_served, memory_order_relaxed);
    *active = atomic_load(&mesh_fork_cow_active);
}
