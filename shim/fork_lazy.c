/* fork_lazy.c: a copy-on-write fork's child copying its heap as it runs; see fork_lazy.h. */
#include "fork_lazy.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alias_map.h"
#include "arena.h"
#include "barrier.h"
#include "fork_cow.h"
#include "init.h"
#include "lock.h"
#include "mesh.h"
#include "sandbox.h"
#include "service_thread.h"
#include "thread_heap.h"

_Atomic int mesh_fork_lazy_window;

#define FAULTS_PER_READ 16
#define IOCTL_TRIES     1000 /* EAGAIN: the address space is changing; it settles */

/*
 * One lazy copy per process (its own parent's fork), set up by the main thread of a fresh
 * child (single-threaded then) before the helper starts, then the helper's until it steps
 * to L_GONE.  Invariant while the helper runs: every page of [lo, lo+len) that the child
 * touches is in the child's file before the touch goes on.
 */
static struct {
    struct mesh_cow_copier copier; /* the chunks, from parent_view into the child's file */
    uint8_t *parent_view;          /* the parent's file, all of it */
    uint64_t *live_bits;           /* file pages live at fork (copier.live) */
    size_t live_bytes;
    int fault_uffd;                /* missing mode over [lo, lo+len) */
    int done_fd;                   /* the parent's last byte */
    int stderr_fd;                 /* the program's stderr at fork, or -1 */
    uint8_t *lo;
    size_t len;
    sigset_t signals;              /* the thread's mask before prepare blocked them all */
} L = {.copier = {.in = {.uffd = -1}}, .fault_uffd = -1, .done_fd = -1, .stderr_fd = -1};

/*
 *   L_NONE   no lazy copy (never, or joined)
 *   L_START  made: taking a descriptor table of its own
 *   L_READY  owns its table (the child may close its copies); waits
 *   L_RUN    copying and serving faults
 *   L_QUIT   not wanted after all: exit
 *   L_GONE   done (the parent has its byte); it exits
 */
enum { L_NONE, L_START, L_READY, L_RUN, L_QUIT, L_GONE };
static _Atomic int lazy_step;
static pthread_t helper_thread;
static _Atomic uint64_t lazy_children;

static void step_to(int step) { mesh_step_to(&lazy_step, step); }
static int step_after(int from) { return mesh_step_after(&lazy_step, from); }

static int lazy_wanted(void)
{
    const char *env = getenv("MESH_FORK_LAZY");
    return !(env && strcmp(env, "0") == 0) && !mesh_sandbox_filtered_now();
}

/* Testing only: MESH_TEST_FORK_LAZY_FAIL=1 makes prepare fail where it first can (no
 * userfaultfd), as when the child is out of descriptors. */
static int fail_for_test(void)
{
    const char *env = getenv("MESH_TEST_FORK_LAZY_FAIL");
    return env && *env == '1';
}

static void let_go(void)
{
    mesh_cow_copier_close(&L.copier);
    if (L.parent_view)
        munmap(L.parent_view, mesh_arena.bytes);
    if (L.live_bits)
        munmap(L.live_bits, L.live_bytes);
    if (L.fault_uffd >= 0)
        close(L.fault_uffd);
    L.parent_view = NULL;
    L.live_bits = NULL;
    L.fault_uffd = -1;
}

static int start_helper(void);
static void quit_helper(void);

int mesh_fork_lazy_prepare(int fd, uint64_t *live_bits, size_t live_bytes, uint32_t live_end,
                           int done_fd)
{
    if (!lazy_wanted() || !mesh_arena.window || done_fd < 0)
        return -1;
    int saved = errno;
    L.fault_uffd = fail_for_test() ? -1 : mesh_barrier_uffd_open();
    struct uffdio_api api = {.api = UFFD_API};
    if (L.fault_uffd < 0 || ioctl(L.fault_uffd, UFFDIO_API, &api) != 0)
        goto fail;
    /* A second mapping of the inherited window (old size 0: same pages), so the
     * parent's file stays in view once the arena shows the child's. */
    void *view = mremap(mesh_arena.window, 0, mesh_arena.bytes, MREMAP_MAYMOVE);
    if (view == MAP_FAILED)
        goto fail;
    L.parent_view = view;
    if (mesh_fork_cow_child_copier(&L.copier, fd, live_bits, live_end, L.parent_view) != 0)
        goto fail;
    L.done_fd = done_fd;
    L.stderr_fd = fcntl(STDERR_FILENO, F_GETFD) >= 0 ? STDERR_FILENO : -1;
    /* Signal handlers must not touch the heap until it is registered (mesh_fork_lazy_start
     * restores the mask). */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &L.signals);
    /* The helper now, while the arena still shows the parent's file (fork_lazy.h). */
    if (start_helper() != 0) {
        pthread_sigmask(SIG_SETMASK, &L.signals, NULL);
        goto fail;
    }
    L.live_bits = live_bits;
    L.live_bytes = live_bytes;
    errno = saved;
    return 0;
fail:
    let_go();
    errno = saved;
    return -1;
}

void mesh_fork_lazy_abandon(void)
{
    quit_helper();
    pthread_sigmask(SIG_SETMASK, &L.signals, NULL);
    let_go();
}

/* ---- the helper ------------------------------------------------------------------------ */

static int live(uint32_t page)
{
    return page < L.copier.live_end && ((L.live_bits[page / 64] >> (page % 64)) & 1);
}

static int uffd_range_ioctl(unsigned long request, void *arg)
{
    for (int tries = 0; tries < IOCTL_TRIES; tries++) {
        if (ioctl(L.fault_uffd, request, arg) == 0)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            return -1;
    }
    return -1;
}

/* The page at addr (a hole of the child's file that a thread touched): its chunk copied
 * if it was live at fork, else (or if the parent's file had a hole there too) a zero
 * page; then its waiters woken.  0, or -1. */
static int serve_fault(uintptr_t addr)
{
    addr &= ~(uintptr_t)(MESH_PAGE_SIZE - 1);
    if (mesh_in_arena((void *)addr)) {
        uint32_t phys = mesh_alias_phys(mesh_page_of((void *)addr));
        if (live(phys) && mesh_cow_copier_at(&L.copier, phys) != 0)
            return -1;
    }
    struct uffdio_zeropage zero = {.range = {addr, MESH_PAGE_SIZE}, .mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE};
    if (uffd_range_ioctl(UFFDIO_ZEROPAGE, &zero) != 0 && errno != EEXIST)
        return -1;
    struct uffdio_range wake = {addr, MESH_PAGE_SIZE};
    return uffd_range_ioctl(UFFDIO_WAKE, &wake);
}

/* Every fault waiting now, served; 0, or -1. */
static int serve_faults(void)
{
    for (;;) {
        struct pollfd pfd = {.fd = L.fault_uffd, .events = POLLIN};
        int ready = poll(&pfd, 1, 0);
        if (ready == 0 || (ready < 0 && errno == EINTR))
            return 0;
        if (ready < 0 || (pfd.revents & (POLLERR | POLLNVAL)))
            return -1;
        struct uffd_msg msgs[FAULTS_PER_READ];
        ssize_t got = read(L.fault_uffd, msgs, sizeof msgs);
        if (got < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return -1;
        }
        for (ssize_t i = 0; i < got / (ssize_t)sizeof msgs[0]; i++)
            if (msgs[i].event == UFFD_EVENT_PAGEFAULT && serve_fault(msgs[i].arg.pagefault.address) != 0)
                return -1;
    }
}

static void *helper_main(void *arg)
{
    (void)arg;
    int keep[4] = {L.fault_uffd, L.copier.in.uffd, L.done_fd, L.stderr_fd};
    if (mesh_own_descriptors(keep, L.stderr_fd >= 0 ? 4 : 3) != 0) {
        step_to(L_GONE);
        return NULL;
    }
    step_to(L_READY);
    if (step_after(L_READY) != L_RUN) {
        /* Not wanted: the main thread copies, with everything here left as it is. */
        mesh_close_own_descriptors();
        step_to(L_GONE);
        return NULL;
    }
    /* Every chunk, waiting faults served before each (the parent's cow thread may still be
     * on some, or have given one up: those are copied here too). */
    if (mesh_cow_copier_all(&L.copier, serve_faults) != 0)
        mesh_fork_child_lost(L.stderr_fd);
    /* Unregistering wakes every missing-mode waiter (they find their pages now). */
    struct uffdio_range all = {(uintptr_t)L.lo, L.len};
    if (uffd_range_ioctl(UFFDIO_UNREGISTER, &all) != 0)
        mesh_fork_child_lost(L.stderr_fd);
    char done = 1;
    ssize_t rc;
    while ((rc = write(L.done_fd, &done, 1)) < 0 && errno == EINTR)
        ;
    (void)rc; /* a parent gone, or that closed its end: nothing waits for the byte */
    atomic_fetch_add_explicit(&lazy_children, 1, memory_order_relaxed);
    let_go(); /* the descriptors it closes are this table's copies */
    mesh_close_own_descriptors();
    atomic_store(&mesh_fork_cow_active, 0); /* purges and meshing may go on */
    mesh_futex(&mesh_fork_cow_active, FUTEX_WAKE, INT_MAX);
    step_to(L_GONE);
    return NULL;
}

/*
 * The window.  The helper must exist before the registration (a touch of a hole would
 * wait for it), and it is made before the child's file is adopted: once it is, a hole
 * read, not only written, becomes a page of zeros in the child's file (a shmem read fault
 * allocates the page), which the copy then leaves alone, losing the fork-time bytes of
 * everything on it.  glibc's pthread_create reads the heap (the TLS slotinfo list, which
 * dlopen grows with malloc: a CPython child read zeros on that page and crashed in
 * mbstowcs), and writes it in two ways: a cached stack (a dead thread's, say the parent's
 * cow thread's, reclaimed in the child) brings its thread's DTV, which it clears and
 * refills, and a stack it maps gets a DTV from calloc.  Made before the adoption, reads see
 * the parent's file; writes would land there, so there must be none: the helper runs on a
 * stack of its own (pthread_attr_setstack: no cache), and its DTV, the one allocation,
 * comes from window_area: while the window is open the thread has no heap, every
 * allocation takes malloc_slow, which serves it from there (mesh_fork_lazy_window_alloc);
 * a free of it later is ignored (the DTV is freed when the helper is joined).  Each block:
 * a 16-byte header holding its size, then the block.
 */
#define WINDOW_AREA_BYTES  8192u
#define HELPER_STACK_BYTES (1u << 20) /* glibc puts the static TLS on it too */
static _Alignas(16) uint8_t window_area[WINDOW_AREA_BYTES];
static size_t window_used;
static void *helper_stack;

void *mesh_fork_lazy_window_alloc(size_t n)
{
    size_t need = 16 + ((n + 15) & ~(size_t)15);
    if (n > WINDOW_AREA_BYTES || need > WINDOW_AREA_BYTES - window_used)
        return NULL;
    uint8_t *p = window_area + window_used;
    window_used += need;
    *(size_t *)p = n;
    return p + 16; /* zeroed when the window opened */
}

int mesh_fork_lazy_window_owns(const void *p)
{
    return (const uint8_t *)p >= window_area && (const uint8_t *)p < window_area + WINDOW_AREA_BYTES;
}

size_t mesh_fork_lazy_window_size(const void *p) { return *(const size_t *)((const uint8_t *)p - 16); }

static int make_helper(void)
{
    if (!helper_stack) {
        void *stack = mmap(NULL, HELPER_STACK_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED)
            return -1;
        helper_stack = stack;
    }
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return -1;
    int rc = pthread_attr_setstack(&attr, helper_stack, HELPER_STACK_BYTES);
    /* Every signal stays blocked in the helper: the caller blocked them all. */
    if (rc == 0) {
        struct mesh_thread_heap *heap = mesh_tl_heap;
        memset(window_area, 0, window_used);
        window_used = 0;
        mesh_tl_heap = NULL;
        atomic_store(&mesh_fork_lazy_window, 1);
        rc = pthread_create(&helper_thread, &attr, helper_main, NULL);
        atomic_store(&mesh_fork_lazy_window, 0);
        mesh_tl_heap = heap;
    }
    pthread_attr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

/* The helper, made by prepare but not wanted after all: it exits, and is joined. */
static void quit_helper(void)
{
    step_to(L_QUIT);
    step_after(L_QUIT);
    pthread_join(helper_thread, NULL);
    step_to(L_NONE);
}

/* The helper, owning its descriptor table and waiting for L_RUN; 0, or -1 (none). */
static int start_helper(void)
{
    step_to(L_START);
    if (make_helper() != 0) {
        step_to(L_NONE);
        return -1;
    }
    if (step_after(L_START) != L_READY) {
        pthread_join(helper_thread, NULL);
        step_to(L_NONE);
        return -1;
    }
    return 0;
}

/* The copy made at once, in this thread (the helper could not be had). */
static int copy_now(void)
{
    int rc = mesh_cow_copier_all(&L.copier, NULL);
    let_go();
    return rc;
}

int mesh_fork_lazy_start(void)
{
    int saved = errno;
    uint32_t pages = mesh_arena_hwm_frozen();
    if (pages < L.copier.live_end)
        pages = L.copier.live_end;
    L.lo = mesh_arena.base;
    L.len = (size_t)pages << MESH_PAGE_SHIFT;
    /* Purges and meshing wait for the end (they would drop or move pages). */
    atomic_store(&mesh_fork_cow_active, 1);
    struct uffdio_register reg = {.range = {(uintptr_t)L.lo, L.len}, .mode = UFFDIO_REGISTER_MODE_MISSING};
    int lazy = L.len && ioctl(L.fault_uffd, UFFDIO_REGISTER, &reg) == 0;
    if (lazy) {
        /* The helper's table has its own copies of both userfaultfds (same numbers). */
        close(L.copier.in.uffd);
        close(L.fault_uffd);
        step_to(L_RUN);
    } else {
        quit_helper();
    }
    int rc = lazy ? 1 : copy_now() == 0 ? 0 : -1;
    if (!lazy)
        atomic_store(&mesh_fork_cow_active, 0);
    pthread_sigmask(SIG_SETMASK, &L.signals, NULL);
    errno = saved;
    return rc;
}

void mesh_fork_lazy_finish(void)
{
    int step = atomic_load(&lazy_step);
    if (step == L_NONE)
        return;
    while (step != L_GONE && step != L_NONE)
        step = step_after(step);
    /* A fork and a set*id in two threads may both get here: one of them joins. */
    int gone = L_GONE;
    if (atomic_compare_exchange_strong(&lazy_step, &gone, L_NONE)) {
        pthread_join(helper_thread, NULL);
        munmap(helper_stack, HELPER_STACK_BYTES);
        helper_stack = NULL;
    }
}

MESH_EXPORT uint64_t mesh_fork_lazy_count(void) { return atomic_load_explicit(&lazy_children, memory_order_relaxed); }
