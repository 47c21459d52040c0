/* fork_share.c: the child's side of a fork that shares the parent's pages; see
 * fork_share.h (the parent's side is fork_cow.c's share mode). */
#include "fork_share.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "arena.h"
#include "lock.h"
#include "mesh_engine.h"
#include "service_thread.h"
#include "span_table.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define SHARE_MAX_MS_DEFAULT 30000u
#define POLL_MS              100    /* how soon the helper sees a detach request */
#define DETACH_CHUNK_PAGES   256u   /* populated between two looks at the socket */

/*
 * The child's aliases at fork, one entry per virtual span that shows another span's
 * physical pages, sorted by phys: the child does not mesh while it shares, so the
 * virtual pages that show a file page are those of fork time for as long as it matters.
 * Invariant: entries of one physical span are adjacent; physical spans do not overlap.
 */
struct alias_entry {
    uint32_t phys, virt, pages;
};

static struct {
    struct alias_entry *aliases;
    size_t count, bytes;
    uint32_t hwm; /* arena pages [0, hwm) show the parent's file */
    int sock;     /* the helper's (its own table) */
} S = {.sock = -1};

/*
 * The helper's steps, in helper_step (a futex word):
 *   H_NONE     no helper (never shared, or done)
 *   H_START    made: taking a descriptor table of its own
 *   H_READY    owns its table (the child may close its copy of the socket); waits
 *   H_SERVE    the parent shares: serving its requests
 *   H_DETACH   asked to make every live page its own, then stop
 *   H_QUIT     the parent does not share after all: exit
 *   H_GONE     its socket is closed (sharing over); it exits
 */
enum { H_NONE, H_START, H_READY, H_SERVE, H_DETACH, H_QUIT, H_GONE };
static _Atomic int helper_step;

static void step_to(int step) { mesh_step_to(&helper_step, step); }
static int step_after(int from) { return mesh_step_after(&helper_step, from); }

static int populate_write_works(void)
{
    static int known = -1; /* fork_lock serialises the callers */
    if (known < 0) {
        void *p = mmap(NULL, MESH_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        known = p != MAP_FAILED && madvise(p, MESH_PAGE_SIZE, MADV_POPULATE_WRITE) == 0;
        if (p != MAP_FAILED)
            munmap(p, MESH_PAGE_SIZE);
    }
    return known;
}

int mesh_fork_share_possible(void)
{
    int saved = errno;
    int ok = mesh_arena.window && mesh_arena_share_fd() >= 0 && populate_write_works();
    errno = saved;
    return ok;
}

/* ---- the aliases at fork ---------------------------------------------------------------- */

static void sort_aliases(struct alias_entry *a, size_t n)
{
    /* Shell sort (Ciura's gaps): no allocation (qsort may call malloc). */
    static const size_t gaps[] = {701, 301, 132, 57, 23, 10, 4, 1};
    for (size_t g = 0; g < sizeof gaps / sizeof gaps[0]; g++)
        for (size_t i = gaps[g]; i < n; i++) {
            struct alias_entry t = a[i];
            size_t j = i;
            for (; j >= gaps[g] && a[j - gaps[g]].phys > t.phys; j -= gaps[g])
                a[j] = a[j - gaps[g]];
            a[j] = t;
        }
}

static int count_alias(void *ctx, uint32_t phys, uint32_t virt, uint32_t pages)
{
    (void)phys, (void)virt, (void)pages;
    ++*(size_t *)ctx;
    return 0;
}

static int keep_alias(void *ctx, uint32_t phys, uint32_t virt, uint32_t pages)
{
    (void)ctx;
    S.aliases[S.count++] = (struct alias_entry){phys, virt, pages};
    return 0;
}

/* Maps an alias of the parent's file privately, as the parent's alias maps it shared. */
static int map_alias(void *ctx, uint32_t phys, uint32_t virt, uint32_t pages)
{
    int fd = *(int *)ctx;
    if (virt >= mesh_arena.total_pages || pages > mesh_arena.total_pages - virt ||
        phys >= mesh_arena.total_pages || pages > mesh_arena.total_pages - phys)
        return -1;
    return mmap(mesh_page_addr(virt), (size_t)pages << MESH_PAGE_SHIFT, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_NORESERVE | MAP_FIXED, fd, (off_t)phys << MESH_PAGE_SHIFT) == MAP_FAILED
               ? -1
               : 0;
}

static int collect_aliases(void)
{
    size_t n = 0;
    mesh_engine_for_each_alias(count_alias, &n);
    S.count = 0;
    S.bytes = 0;
    S.aliases = NULL;
    if (n == 0)
        return 0;
    size_t bytes = n * sizeof *S.aliases;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    S.aliases = p;
    S.bytes = bytes;
    mesh_engine_for_each_alias(keep_alias, NULL);
    sort_aliases(S.aliases, S.count);
    return 0;
}

static void drop_aliases(void)
{
    if (S.aliases)
        munmap(S.aliases, S.bytes);
    S.aliases = NULL;
    S.count = S.bytes = 0;
}

/* ---- populating ---------------------------------------------------------------------- */

/* Makes [page, page+n) of the child its own; 0, or -1.  EAGAIN/EINTR are retried. */
static int populate(uint32_t page, uint32_t n)
{
    if (page >= S.hwm)
        return 0; /* not the parent's file (private anonymous memory) */
    if (n > S.hwm - page)
        n = S.hwm - page;
    for (int tries = 0; tries < 100; tries++) {
        if (madvise(mesh_page_addr(page), (size_t)n << MESH_PAGE_SHIFT, MADV_POPULATE_WRITE) == 0)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            return -1;
    }
    return -1;
}

/* Every virtual page of the child that showed file page `phys` at fork: its own page
 * (a live physical span is identity-mapped) and its aliases. */
static int populate_file_page(uint32_t phys)
{
    int rc = populate(phys, 1);
    size_t lo = 0, hi = S.count; /* first entry with .phys > phys */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (S.aliases[mid].phys <= phys)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i-- > 0 && S.aliases[i].phys + S.aliases[i].pages > phys;)
        rc |= populate(S.aliases[i].virt + (phys - S.aliases[i].phys), 1);
    return rc;
}

/* ---- the helper ------------------------------------------------------------------------ */

static uint64_t share_max_ms(void)
{
    const char *env = getenv("MESH_FORK_SHARE_MAX_MS");
    return env && *env ? strtoull(env, NULL, 10) : SHARE_MAX_MS_DEFAULT;
}

/* One request, if one waits (timeout_ms: how long to wait for it): its pages populated,
 * the answer sent.  1 served, 0 none came, -1 the socket is done (EOF, error). */
static int serve_one(int timeout_ms)
{
    struct pollfd pfd = {.fd = S.sock, .events = POLLIN};
    int ready = poll(&pfd, 1, timeout_ms);
    if (ready < 0)
        return errno == EINTR ? 0 : -1;
    if (ready == 0)
        return 0;
    struct mesh_share_request req;
    ssize_t got = recv(S.sock, &req, sizeof req, 0);
    if (got < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -1;
    if (got < (ssize_t)sizeof req.count || req.count > MESH_SHARE_BATCH ||
        (size_t)got < sizeof req.count + req.count * sizeof req.pages[0])
        return -1; /* EOF (0), or not our parent's cow thread */
    int rc = 0;
    for (uint32_t i = 0; i < req.count; i++)
        rc |= populate_file_page(req.pages[i]);
    char answer = rc == 0 ? MESH_SHARE_DONE : MESH_SHARE_FAILED;
    return send(S.sock, &answer, 1, MSG_NOSIGNAL) == 1 ? 1 : -1;
}

/* Populates every virtual span of the live spans, serving requests between chunks. */
static int detach_all(void)
{
    for (uint32_t id = 1; id < mesh_record_hwm(); id++) {
        const struct mesh_span_record *r = mesh_record(id);
        if (mesh_record_state(r) == MESH_SPAN_FREE)
            continue;
        /* Read without locks while the child's threads run: a span freed meanwhile is
         * populated for nothing; one made meanwhile is the child's own writes. */
        unsigned count = r->size_class ? r->virt_count : 1;
        for (unsigned i = 0; i < count && i < MESH_MAX_VIRTUAL_SPANS; i++) {
            uint32_t virt = i ? r->virt_page[i] : r->phys_page, pages = r->span_pages;
            if (virt >= S.hwm)
                continue;
            if (pages > S.hwm - virt) /* a record torn by a racing write: stay in bounds */
                pages = S.hwm - virt;
            for (uint32_t done = 0; done < pages; done += DETACH_CHUNK_PAGES) {
                uint32_t n = pages - done < DETACH_CHUNK_PAGES ? pages - done : DETACH_CHUNK_PAGES;
                if (populate(virt + done, n) != 0)
                    return -1;
                while (serve_one(0) > 0)
                    ;
            }
        }
    }
    return 0;
}

static void *helper_main(void *arg)
{
    (void)arg;
    if (mesh_own_descriptors(&S.sock, 1) != 0) {
        step_to(H_GONE);
        return NULL;
    }
    step_to(H_READY);
    /* A detach may be asked for before this thread sees H_SERVE (the child forks at once). */
    int step = step_after(H_READY);
    if (step == H_SERVE || step == H_DETACH) {
        uint64_t deadline = mesh_now_ns() / 1000000u + share_max_ms();
        for (;;) {
            if (atomic_load(&helper_step) == H_DETACH || mesh_now_ns() / 1000000u >= deadline) {
                /* A failed populate keeps the socket open: the parent's writes to the pages
                 * not done yet wait for the child's end rather than reach it. */
                if (detach_all() != 0)
                    while (serve_one(-1) >= 0)
                        ;
                break;
            }
            if (serve_one(POLL_MS) < 0)
                break;
        }
    }
    mesh_close_own_descriptors(); /* the socket: the parent's cow thread ends */
    drop_aliases();
    step_to(H_GONE);
    return NULL;
}

/* The helper, once it has stepped to H_GONE (joined: a thread that has not quite exited
 * would still take glibc's set*id broadcast, and fail it where the caller does not). */
static pthread_t helper_thread;
static int helper_joinable;

static void join_helper(void)
{
    if (helper_joinable)
        pthread_join(helper_thread, NULL);
    helper_joinable = 0;
}

static int start_helper(void)
{
    step_to(H_START);
    if (mesh_service_thread_start(helper_main, &helper_thread) != 0) {
        step_to(H_NONE);
        return -1;
    }
    helper_joinable = 1;
    if (step_after(H_START) != H_READY) {
        join_helper();
        step_to(H_NONE);
        return -1;
    }
    return 0;
}

int mesh_fork_share_child_setup(int sock)
{
    int fd = mesh_arena_share_fd();
    if (sock < 0 || fd < 0)
        return -1;
    S.hwm = mesh_arena_hwm_frozen();
    S.sock = sock;
    if (collect_aliases() != 0)
        return -1;
    if (mesh_arena_map_parent_private(fd, S.hwm) != 0 || mesh_engine_for_each_alias(map_alias, &fd) != 0 ||
        start_helper() != 0) {
        drop_aliases();
        return -1;
    }
    return 0;
}

void mesh_fork_share_child_verdict(int shared)
{
    if (atomic_load(&helper_step) != H_READY)
        return;
    if (shared) {
        mesh_arena_after_share();
        step_to(H_SERVE);
    } else {
        step_to(H_QUIT);
        step_after(H_QUIT);
        join_helper();
        step_to(H_NONE);
    }
}

void mesh_fork_share_detach(void)
{
    int step = H_SERVE;
    if (atomic_compare_exchange_strong(&helper_step, &step, H_DETACH) || step == H_DETACH) {
        mesh_futex(&helper_step, FUTEX_WAKE, INT_MAX);
        step = step_after(H_DETACH);
    }
    /* A fork and a set*id in two threads may both get here: one of them joins. */
    int gone = H_GONE;
    if (step == H_GONE && atomic_compare_exchange_strong(&helper_step, &gone, H_NONE))
        join_helper();
}
