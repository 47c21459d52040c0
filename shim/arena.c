/* arena.c: memfd arena, page map, and the page-range allocator behind every span. */
#include "arena.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "fdutil.h"
#include "fork_cow.h"
#include "io_full.h"
#include "page_install.h"
#include "sandbox.h"
#include "span_table.h"

/* The default reservation is sized from the machine (arena_default_bytes), not below the
 * fixed 64 GiB of earlier versions but under strict overcommit or a resource limit; in
 * whole GiB, or a power of two below 1 GiB (limits only), never below ARENA_MIN_BYTES. */
#define ARENA_FLOOR_BYTES   (64ull << 30)
#define ARENA_MIN_BYTES     (64ull << 20)
/* Page numbers, free-range ids (< total_pages + 2) and record ids share the page map's 31
 * bits below MESH_PAGE_FREE_TAG, and alias shifts are int32 page differences: the arena
 * stays below 2^31 pages, i.e. 8 TiB - 1 GiB at 4 KiB pages. */
#define ARENA_MAX_BYTES     (((uint64_t)MESH_PAGE_FREE_TAG << MESH_PAGE_SHIFT) - (1ull << 30))
/* Overcommit heuristic (mode 0): glibc's untouched blocks may add up to any multiple of
 * RAM + swap; the arena reserves this multiple of it. */
#define ARENA_GUESS_FACTOR  8u
/*
 * Returning freed pages (punching them) goes by age, not by count: a program that frees
 * a burst and allocates again soon must not fault every page back in.
 *   - A dirty range records when it was freed (merged ranges: the newest free) and sits
 *     on an age list, oldest first.
 *   - Ranges older than PURGE_DELAY_MS are punched, oldest first, while more than the
 *     keep target (half of max(DIRTY_MIN_PAGES, used/8)) is dirty: what stays resident
 *     for good is what the count-based release used to keep.
 *   - More than max(DIRTY_HARD_MIN_PAGES, used/4) dirty is punched at once, oldest
 *     first, down to half of that bound: a burst never holds gigabytes for long.
 *   - malloc_trim and meshd's rounds punch everything.
 * Punching is a system call, so it never runs under a lock, nor from mesh_pages_free
 * (its callers hold class locks): mesh_arena_poll, from allocation and free slow paths
 * that hold no lock, punches at most every PURGE_TICK_MS (or at once when over the hard
 * bound).  The ranges are taken out of the free lists under the arena lock, punched
 * without it, and put back as clean under it (see purge_pass).
 */
#define DIRTY_MIN_PAGES      2048u   /* 8 MiB */
#define DIRTY_HARD_MIN_PAGES 32768u  /* 128 MiB */
#define PURGE_DELAY_MS       1000u
#define PURGE_TICK_MS        4u
#define PURGE_BATCH          16u
#define INFLIGHT_MAX         64u
#define EXACT_BINS          64u
#define BIN_COUNT           (EXACT_BINS + 32u)

struct mesh_arena mesh_arena;

/* A free page range.  Linked in bin list heads[dirty][bin]; a dirty one also on the age
 * list (lru_head oldest .. lru_tail newest). */
struct free_range {
    uint32_t start, pages;
    uint32_t next, prev;         /* range ids; 0 terminates (range 0 is never used) */
    uint32_t lru_next, lru_prev; /* dirty only; likewise */
    uint32_t freed_ms;           /* dirty only: coarse clock (now_ms) when freed */
    uint8_t dirty, bin;
};

/* Where bin_insert puts a dirty range on the age list: after range id, or at an end. */
#define LRU_HEAD 0u
#define LRU_TAIL UINT32_MAX

/* A range taken out of the free lists to be punched without the lock (purge_pass). */
struct inflight {
    uint32_t start, pages;
};

static struct {
    mesh_lock_t lock;
    struct free_range *ranges; /* pool, reserved for total_pages + 2 ranges */
    uint32_t range_hwm, range_free_list;
    uint32_t heads[2][BIN_COUNT];
    uint64_t nonempty[2][2]; /* bit b: heads[dirty][b] != 0 */
    uint32_t hwm;
    uint64_t dirty_pages, clean_free_pages, used_pages, released_pages;
    int release_broken; /* punching failed once: stop trying, keep pages dirty */
    uint32_t lru_head, lru_tail;
    /* Ranges being punched: in no free list and not in use.  Kept here, not on the
     * purger's stack, so that a fork child (which has no purger) can take them back. */
    struct inflight inflight[INFLIGHT_MAX];
    uint64_t inflight_mask; /* bit i: inflight[i] in use */
    uint64_t inflight_pages;
} A = {.lock = MESH_LOCK_INIT};

/* mesh_arena_poll's state, read without the lock (arena.h). */
_Atomic int mesh_arena_purge_armed;
static _Atomic uint32_t purge_last_ms; /* the last timed pass started */
static _Atomic int purge_urgent;       /* over the hard bound: pass now */
static _Atomic int purge_running;      /* one timed pass at a time */

static void *map_reserve(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* vm.overcommit_memory (0 heuristic, 1 always, 2 never), 0 if unreadable. */
static int overcommit_mode(void)
{
    int fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char c = '0';
    ssize_t got = read(fd, &c, 1);
    close(fd);
    return got == 1 && c >= '0' && c <= '2' ? c - '0' : 0;
}

/* bytes within [lo, hi], rounded down to whole GiB, or below 1 GiB to a power of two. */
static uint64_t clamp_gib(uint64_t bytes, uint64_t lo, uint64_t hi)
{
    bytes = bytes < lo ? lo : bytes > hi ? hi : bytes;
    if (bytes >= (1ull << 30))
        return bytes & ~((1ull << 30) - 1);
    return 1ull << (63 - __builtin_clzll(bytes));
}

/* The per-page arrays an arena of `pages` reserves (mesh_arena_init maps them). */
struct arena_tables {
    size_t pagemap, pageinfo, ranges;
};

static struct arena_tables tables_for(uint64_t pages)
{
    return (struct arena_tables){.pagemap = (size_t)pages * sizeof(uint32_t),
                                 .pageinfo = (size_t)pages * sizeof(uint16_t),
                                 .ranges = ((size_t)pages + 2) * sizeof(struct free_range)};
}

/* Private memory (those arrays and the span table) an arena of `bytes` reserves:
 * MAP_NORESERVE, but RLIMIT_DATA counts it whole. */
static uint64_t metadata_bytes(uint64_t bytes)
{
    struct arena_tables t = tables_for(bytes >> MESH_PAGE_SHIFT);
    return t.pagemap + t.pageinfo + t.ranges + mesh_span_table_reserve_bytes((size_t)bytes);
}

/*
 * The largest arena within the process's limits, at most `bytes`:
 *   RLIMIT_AS    base and window together take three quarters of it (the program keeps
 *                the rest, its libraries and thread stacks: a quarter was one 64 MiB
 *                object short of what glibc gave under `ulimit -v 400000`);
 *   RLIMIT_DATA  the private reservations take a quarter of it, and a private arena (no
 *                memfd: `shared` 0) half of it besides; a shared arena is not counted (the
 *                kernel counts private writable mappings only), so under the shim the
 *                limit does not bound the heap as it bounds glibc's (docs/ALLOCATOR.md).
 * Halved down to ARENA_MIN_BYTES; below that, ARENA_MIN_BYTES (mapping it may then fail).
 */
static uint64_t arena_within(uint64_t bytes, int shared, rlim_t as, rlim_t data)
{
    if (as != RLIM_INFINITY)
        bytes = clamp_gib((uint64_t)as / 8 * 3, ARENA_MIN_BYTES, bytes);
    if (data == RLIM_INFINITY)
        return bytes;
    while (bytes > ARENA_MIN_BYTES &&
           (metadata_bytes(bytes) > data / 4 || (!shared && bytes > data / 2)))
        bytes = clamp_gib(bytes / 2, ARENA_MIN_BYTES, bytes);
    return bytes;
}

static uint64_t arena_within_limits(uint64_t bytes, int shared)
{
    struct rlimit as, data;
    return arena_within(bytes, shared, getrlimit(RLIMIT_AS, &as) == 0 ? as.rlim_cur : RLIM_INFINITY,
                        getrlimit(RLIMIT_DATA, &data) == 0 ? data.rlim_cur : RLIM_INFINITY);
}

/*
 * The default reservation: as much address space as glibc would let the program reserve
 * with malloc, so that no program meets a ceiling glibc does not have.  Untouched arena
 * pages cost nothing but address space (the memfd is sparse, the page map and the other
 * per-page arrays are NORESERVE and touched only up to the pages in use), so the bound is
 * what the kernel allows:
 *   overcommit 1 (always): the page-index limit, ARENA_MAX_BYTES;
 *   overcommit 0 (heuristic): ARENA_GUESS_FACTOR x (RAM + swap) - the kernel refuses only
 *                single requests bigger than RAM + swap, never a sum;
 *   overcommit 2 (never): RAM + swap, more than the commit limit lets glibc hand out;
 * never below ARENA_FLOOR_BYTES (but under overcommit 2); then within the process's
 * limits (arena_within_limits).
 */
static uint64_t arena_default_bytes(void)
{
    uint64_t machine = 0;
    struct sysinfo si;
    if (sysinfo(&si) == 0)
        machine = ((uint64_t)si.totalram + si.totalswap) * (si.mem_unit ? si.mem_unit : 1);
    uint64_t bytes;
    int mode = overcommit_mode();
    switch (mode) {
    case 1:
        bytes = ARENA_MAX_BYTES;
        break;
    case 2:
        /* No floor: here the kernel charges the per-page arrays and the span table at
         * their reserved size (it ignores MAP_NORESERVE), about 1/18 of the arena. */
        bytes = machine;
        break;
    default:
        bytes = machine * ARENA_GUESS_FACTOR;
        break;
    }
    if (bytes < ARENA_FLOOR_BYTES && mode != 2)
        bytes = ARENA_FLOOR_BYTES;
    return (size_t)clamp_gib(bytes, 1ull << 30, ARENA_MAX_BYTES);
}

static size_t arena_bytes_wanted(void)
{
    /* MESH_ARENA_GB sets the reservation outright: an operator's cap (or a raise). */
    const char *s = getenv("MESH_ARENA_GB");
    if (s && *s) {
        unsigned long long gb = strtoull(s, NULL, 10);
        if (gb >= 1 && gb <= ARENA_MAX_BYTES >> 30)
            return (size_t)gb << 30;
    }
    return arena_default_bytes();
}

/* The window: a second shared mapping of the whole file, never remapped (arena.h).  Not
 * dumped: the same pages are in the core through `base` already. */
static uint8_t *map_window(int fd, size_t bytes)
{
    void *w = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (w == MAP_FAILED)
        return NULL;
    madvise(w, bytes, MADV_DONTDUMP);
    return w;
}

int mesh_file_size_allowed(size_t bytes)
{
    struct rlimit fsize;
    return getrlimit(RLIMIT_FSIZE, &fsize) != 0 || fsize.rlim_cur == RLIM_INFINITY ||
           fsize.rlim_cur >= bytes;
}

/* Reserves `*bytes` of shared memory on fd (and its window in *window), halving on failure
 * (ulimit -v); fd < 0: private anonymous memory, no window. */
static uint8_t *map_arena(int fd, size_t *bytes, uint8_t **window)
{
    *window = NULL;
    for (; *bytes >= ARENA_MIN_BYTES; *bytes /= 2) {
        void *p;
        if (fd >= 0) {
            if (ftruncate(fd, (off_t)*bytes) != 0)
                continue;
            p = mmap(NULL, *bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
            if (p != MAP_FAILED && !(*window = map_window(fd, *bytes))) {
                munmap(p, *bytes);
                p = MAP_FAILED;
            }
        } else {
            p = mmap(NULL, *bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        }
        if (p != MAP_FAILED)
            return p;
    }
    return NULL;
}

/* The arena's descriptor, kept only for forks whose child shares the parent's pages
 * (fork_share.h, MESH_FORK_SHARE=1): high, close-on-exec, identity recorded. */
static struct mesh_fd share_fd = MESH_FD_NONE;

static int fork_share_enabled(void)
{
    const char *env = getenv("MESH_FORK_SHARE");
    return env && strcmp(env, "1") == 0;
}

int mesh_arena_init(void)
{
    size_t wanted = arena_bytes_wanted(), bytes = wanted;
    /* The memfd is needed only to map base and the window: both mappings keep the file
     * alive, and everything later goes through them (arena.h).  Its descriptor is closed
     * at once, before the program can see it; it never leaves the shim (unless a fork
     * child is to share the file: then it is kept, high). */
    bytes = arena_within_limits(wanted, 1);
    int fd = mesh_file_size_allowed(bytes) ? mesh_memfd_create("libmesh-arena", 0) : -1;
    uint8_t *window = NULL;
    uint8_t *base = fd >= 0 ? map_arena(fd, &bytes, &window) : NULL;
    if (fd >= 0 && base && fork_share_enabled())
        mesh_fd_adopt(&share_fd, fd);
    else if (fd >= 0)
        close(fd);
    if (!base) {
        /* memfd refused (sealed-off sandbox, tmpfs limits) or a file of the arena's size
         * not allowed (ulimit -f: ftruncate would raise SIGXFSZ): run without meshing. */
        bytes = arena_within_limits(wanted, 0);
        base = map_arena(-1, &bytes, &window);
    }
    if (!base)
        return -1;
    uint32_t pages = (uint32_t)(bytes >> MESH_PAGE_SHIFT);
    struct arena_tables t = tables_for(pages);
    uint32_t *pagemap = map_reserve(t.pagemap);
    uint16_t *pageinfo = map_reserve(t.pageinfo);
    struct free_range *ranges = map_reserve(t.ranges);
    if (!pagemap || !pageinfo || !ranges) {
        munmap(base, bytes);
        if (window)
            munmap(window, bytes);
        if (pagemap)
            munmap(pagemap, t.pagemap);
        if (pageinfo)
            munmap(pageinfo, t.pageinfo);
        if (ranges)
            munmap(ranges, t.ranges);
        return -1;
    }
    A.ranges = ranges;
    A.range_hwm = 1;
    mesh_arena.pagemap = pagemap;
    mesh_arena.pageinfo = pageinfo;
    mesh_arena.total_pages = pages;
    mesh_arena.shared = window != NULL;
    mesh_arena.window = window;
    mesh_arena.base = base;
    mesh_arena.bytes = bytes; /* last: publishes the arena to the free fast path */
    return 0;
}

size_t mesh_arena_bytes_within(rlim_t as, rlim_t data)
{
    return mesh_arena.bytes ? (size_t)arena_within(mesh_arena.bytes, mesh_arena.shared, as, data) : 0;
}

/* Unmaps [p + keep, p + had): the tail of a reservation that shrank. */
static void unmap_tail(void *p, size_t keep, size_t had)
{
    keep = mesh_align_up(keep, MESH_PAGE_SIZE);
    if (p && had > keep)
        munmap((uint8_t *)p + keep, had - keep);
}

size_t mesh_arena_shrink(size_t bytes)
{
    mesh_lock(&A.lock);
    uint32_t old_pages = mesh_arena.total_pages, pages = (uint32_t)(bytes >> MESH_PAGE_SHIFT);
    /* Every page in use, dirty, clean-free or being punched lies below hwm. */
    if (pages < A.hwm)
        pages = A.hwm;
    if (pages >= old_pages) {
        mesh_unlock(&A.lock);
        return mesh_arena.bytes;
    }
    /* From here no page at or above `pages` is handed out (the growth sites compare with
     * total_pages under this lock), so nothing there is ever touched again. */
    mesh_arena.total_pages = pages;
    uint32_t ranges_kept = A.range_hwm > pages + 2 ? A.range_hwm : pages + 2;
    size_t had = mesh_arena.bytes;
    mesh_arena.bytes = (size_t)pages << MESH_PAGE_SHIFT;
    mesh_unlock(&A.lock);
    struct arena_tables old = tables_for(old_pages), now = tables_for(pages);
    unmap_tail(mesh_arena.base, mesh_arena.bytes, had);
    unmap_tail(mesh_arena.window, mesh_arena.bytes, had);
    unmap_tail(mesh_arena.pagemap, now.pagemap, old.pagemap);
    unmap_tail(mesh_arena.pageinfo, now.pageinfo, old.pageinfo);
    unmap_tail(A.ranges, (size_t)ranges_kept * sizeof(struct free_range), old.ranges);
    return mesh_arena.bytes;
}

void mesh_pagemap_set(uint32_t page, uint32_t n, uint32_t value)
{
    for (uint32_t i = 0; i < n; i++)
        mesh_pagemap_put(page + i, value);
}

/* ---- bins ---------------------------------------------------------------------------- */

static unsigned bin_of(uint32_t pages)
{
    if (pages <= EXACT_BINS)
        return pages - 1;
    return EXACT_BINS + (unsigned)(31 - __builtin_clz(pages)) - 6; /* 65..127 -> 64 */
}

static void lru_link(uint32_t id, uint32_t after)
{
    struct free_range *r = &A.ranges[id];
    if (after == LRU_TAIL)
        after = A.lru_tail;
    r->lru_prev = after;
    r->lru_next = after ? A.ranges[after].lru_next : A.lru_head;
    if (after)
        A.ranges[after].lru_next = id;
    else
        A.lru_head = id;
    if (r->lru_next)
        A.ranges[r->lru_next].lru_prev = id;
    else
        A.lru_tail = id;
}

static void lru_unlink(uint32_t id)
{
    struct free_range *r = &A.ranges[id];
    if (r->lru_prev)
        A.ranges[r->lru_prev].lru_next = r->lru_next;
    else
        A.lru_head = r->lru_next;
    if (r->lru_next)
        A.ranges[r->lru_next].lru_prev = r->lru_prev;
    else
        A.lru_tail = r->lru_prev;
}

/* Files range id in its bin; a dirty one also on the age list after `lru_after`. */
static void bin_insert(uint32_t id, uint32_t lru_after)
{
    struct free_range *r = &A.ranges[id];
    if (r->dirty)
        lru_link(id, lru_after);
    unsigned b = bin_of(r->pages);
    uint32_t *head = &A.heads[r->dirty][b];
    r->bin = (uint8_t)b;
    r->prev = 0;
    r->next = *head;
    if (*head)
        A.ranges[*head].prev = id;
    *head = id;
    A.nonempty[r->dirty][b >> 6] |= 1ull << (b & 63);
    if (r->dirty)
        A.dirty_pages += r->pages;
    else
        A.clean_free_pages += r->pages;
}

static void bin_remove(uint32_t id)
{
    struct free_range *r = &A.ranges[id];
    uint32_t *head = &A.heads[r->dirty][r->bin];
    if (r->prev)
        A.ranges[r->prev].next = r->next;
    else
        *head = r->next;
    if (r->next)
        A.ranges[r->next].prev = r->prev;
    if (!*head)
        A.nonempty[r->dirty][r->bin >> 6] &= ~(1ull << (r->bin & 63));
    if (r->dirty)
        lru_unlink(id);
    if (r->dirty)
        A.dirty_pages -= r->pages;
    else
        A.clean_free_pages -= r->pages;
}

/* First non-empty bin >= b of the given kind, or BIN_COUNT. */
static unsigned bin_next_nonempty(int dirty, unsigned b)
{
    for (unsigned w = b >> 6; w < 2; w++) {
        uint64_t bits = A.nonempty[dirty][w];
        if (w == b >> 6)
            bits &= ~0ull << (b & 63);
        if (bits)
            return w * 64 + (unsigned)__builtin_ctzll(bits);
    }
    return BIN_COUNT;
}

static uint32_t range_new(uint32_t start, uint32_t pages, int dirty, uint32_t freed_ms)
{
    uint32_t id = A.range_free_list;
    if (id)
        A.range_free_list = A.ranges[id].next;
    else
        id = A.range_hwm++;
    struct free_range *r = &A.ranges[id];
    r->start = start;
    r->pages = pages;
    r->dirty = (uint8_t)dirty;
    r->freed_ms = freed_ms;
    return id;
}

static void range_delete(uint32_t id)
{
    A.ranges[id].next = A.range_free_list;
    A.range_free_list = id;
}

static void range_untag(const struct free_range *r)
{
    mesh_pagemap_put(r->start, 0);
    mesh_pagemap_put(r->start + r->pages - 1, 0);
}

static void range_tag(uint32_t id)
{
    const struct free_range *r = &A.ranges[id];
    mesh_pagemap_put(r->start, MESH_PAGE_FREE_TAG | id);
    mesh_pagemap_put(r->start + r->pages - 1, MESH_PAGE_FREE_TAG | id);
}

/* Free range whose tag is on `page`, or 0. */
static uint32_t range_at(uint32_t page)
{
    uint32_t e = mesh_pagemap_get(page);
    return (e & MESH_PAGE_FREE_TAG) ? e & ~MESH_PAGE_FREE_TAG : 0;
}

/* Adds [start, start+pages) as a free range of the given kind, merged with neighbours of
 * the same kind; a dirty one counts as freed at freed_ms (the newest on the age list).
 * The pages' map entries must already be 0. */
static void free_insert(uint32_t start, uint32_t pages, int dirty, uint32_t freed_ms)
{
    uint32_t left = start ? range_at(start - 1) : 0;
    if (left && A.ranges[left].dirty == dirty) {
        bin_remove(left);
        range_untag(&A.ranges[left]);
        start = A.ranges[left].start;
        pages += A.ranges[left].pages;
        range_delete(left);
    }
    uint32_t right = start + pages < A.hwm ? range_at(start + pages) : 0;
    if (right && A.ranges[right].dirty == dirty) {
        bin_remove(right);
        range_untag(&A.ranges[right]);
        pages += A.ranges[right].pages;
        range_delete(right);
    }
    if (!dirty && start + pages == A.hwm) {
        A.hwm = start; /* clean pages at the top are the same as never-used pages */
        return;
    }
    uint32_t id = range_new(start, pages, dirty, freed_ms);
    range_tag(id);
    bin_insert(id, LRU_TAIL);
}

/* ---- returning memory to the OS -------------------------------------------------------- */

static int release_pages(uint32_t page, uint32_t n)
{
    size_t len = (size_t)n << MESH_PAGE_SHIFT;
    int saved = errno, rc;
    /* Through the window, never the descriptor: it punches exactly file pages
     * [page, page+n), whatever the program did to descriptor numbers.  A shared arena
     * without a window (a fork child that could not map one) punches through base, where
     * free pages show their own file pages; DONTNEED would leave them non-zero. */
    if (mesh_arena.window)
        rc = madvise(mesh_window_addr(page), len, MADV_REMOVE);
    else
        rc = madvise(mesh_page_addr(page), len, mesh_arena.shared ? MADV_REMOVE : MADV_DONTNEED);
    errno = saved;
    return rc;
}

int mesh_arena_punch(uint32_t page, uint32_t n) { return release_pages(page, n); }

static uint64_t dirty_limit(void)
{
    uint64_t by_use = A.used_pages / 8;
    return by_use > DIRTY_MIN_PAGES ? by_use : DIRTY_MIN_PAGES;
}

/* Aged ranges are punched while more than this is dirty. */
static uint64_t keep_target(void) { return dirty_limit() / 2; }

/* More than this dirty is punched at once, aged or not. */
static uint64_t hard_limit(void)
{
    uint64_t by_use = A.used_pages / 4;
    return by_use > DIRTY_HARD_MIN_PAGES ? by_use : DIRTY_HARD_MIN_PAGES;
}

uint32_t mesh_arena_clock_ms(void)
{
    /* Coarse: a vDSO read of the tick (a few ms), which is all the ages need. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

/* Freed at least PURGE_DELAY_MS before now.  The clock wraps every 49 days: an age that
 * reads as far in the future is one that wrapped, so it counts as aged too (a stamp
 * taken just before the caller's own now may read a little in the future). */
static int aged(const struct free_range *r, uint32_t now)
{
    int32_t age = (int32_t)(now - r->freed_ms);
    return age >= (int32_t)MESH_PURGE_DELAY_MS || age < -(int32_t)(60 * MESH_PURGE_DELAY_MS);
}

/* Lock held: what mesh_arena_poll looks at, after the dirty total changed. */
static void rearm(void)
{
    int armed = !A.release_broken && A.dirty_pages > keep_target();
    if (atomic_load_explicit(&mesh_arena_purge_armed, memory_order_relaxed) != armed)
        atomic_store_explicit(&mesh_arena_purge_armed, armed, memory_order_relaxed);
    if (armed && A.dirty_pages > hard_limit() &&
        !atomic_load_explicit(&purge_urgent, memory_order_relaxed))
        atomic_store_explicit(&purge_urgent, 1, memory_order_relaxed);
}

/*
 * Lock held: takes up to PURGE_BATCH dirty ranges off the old end of the age list into
 * free in-flight slots (out of the bins, untagged: no allocation, extension or merge can
 * see them) and returns the mask of slots taken.  A range is taken if `all`, or while
 * more than over_target pages are dirty, or if it has aged and more than the keep target
 * is dirty.
 */
static uint64_t take_batch(int all, uint32_t now, uint64_t over_target)
{
    uint64_t taken = 0, keep = keep_target();
    for (unsigned n = 0; n < PURGE_BATCH && A.lru_head && ~A.inflight_mask && !A.release_broken; n++) {
        uint32_t id = A.lru_head;
        struct free_range r = A.ranges[id];
        if (!all && A.dirty_pages <= over_target && !(A.dirty_pages > keep && aged(&r, now)))
            break;
        unsigned slot = (unsigned)__builtin_ctzll(~A.inflight_mask);
        bin_remove(id);
        range_untag(&r);
        range_delete(id);
        A.inflight[slot] = (struct inflight){.start = r.start, .pages = r.pages};
        A.inflight_mask |= 1ull << slot;
        A.inflight_pages += r.pages;
        taken |= 1ull << slot;
    }
    return taken;
}

/*
 * Punches what take_batch selects, batch by batch, the arena lock never held across the
 * system call: taken out under the lock, punched without it, put back as clean under it
 * (as dirty, and punching given up for good, if the kernel refused).  Returns the pages
 * punched.  Any number of passes may run at once: each owns the slots it took.  With a
 * deadline (CLOCK_MONOTONIC ns; 0: none), no batch starts after it.
 */
static size_t purge_run(int all, uint32_t now, uint64_t deadline_ns)
{
    size_t released = 0;
    mesh_lock(&A.lock);
    uint64_t over_target = A.dirty_pages > hard_limit() ? hard_limit() / 2 : UINT64_MAX;
    /* While a fork child copies the heap, a page freed since the fork may still be one it
     * needs (fork_cow.h): nothing is punched.  Checked under the lock, which the fork
     * held when the copy-on-write began. */
    for (uint64_t taken; !atomic_load(&mesh_fork_cow_active) &&
                         (!deadline_ns || released == 0 || mesh_now_ns() < deadline_ns) &&
                         (taken = take_batch(all, now, over_target)) != 0;) {
        struct inflight batch[INFLIGHT_MAX];
        int failed[INFLIGHT_MAX];
        for (uint64_t m = taken; m; m &= m - 1)
            batch[__builtin_ctzll(m)] = A.inflight[__builtin_ctzll(m)];
        mesh_unlock(&A.lock);
        for (uint64_t m = taken; m; m &= m - 1) {
            unsigned i = (unsigned)__builtin_ctzll(m);
            failed[i] = release_pages(batch[i].start, batch[i].pages) != 0;
        }
        mesh_lock(&A.lock);
        for (uint64_t m = taken; m; m &= m - 1) {
            unsigned i = (unsigned)__builtin_ctzll(m);
            A.inflight_mask &= ~(1ull << i);
            A.inflight_pages -= batch[i].pages;
            if (failed[i]) {
                A.release_broken = 1;
                free_insert(batch[i].start, batch[i].pages, 1, now);
            } else {
                A.released_pages += batch[i].pages;
                released += batch[i].pages;
                free_insert(batch[i].start, batch[i].pages, 0, 0);
            }
        }
    }
    rearm();
    mesh_unlock(&A.lock);
    return released;
}

void mesh_arena_purge_due(void)
{
    uint32_t now = mesh_arena_clock_ms();
    int urgent = atomic_load_explicit(&purge_urgent, memory_order_relaxed);
    uint32_t last = atomic_load_explicit(&purge_last_ms, memory_order_relaxed);
    if (!urgent && now - last < PURGE_TICK_MS)
        return;
    /* One timed pass at a time; the others go on allocating. */
    int idle = 0;
    if (!atomic_compare_exchange_strong(&purge_running, &idle, 1))
        return;
    atomic_store_explicit(&purge_last_ms, now, memory_order_relaxed);
    atomic_store_explicit(&purge_urgent, 0, memory_order_relaxed);
    purge_run(0, now, 0);
    atomic_store(&purge_running, 0);
}

size_t mesh_arena_purge_at(uint32_t now_ms) { return purge_run(0, now_ms, 0); }

/* ---- allocation ---------------------------------------------------------------------- */

/* First page >= page whose address is a multiple of align_pages pages (the arena base is
 * only page-aligned, so alignment is a property of addresses, not page numbers). */
static uint64_t align_page(uint32_t page, uint32_t align_pages)
{
    uint64_t base_page = (uintptr_t)mesh_arena.base >> MESH_PAGE_SHIFT;
    return mesh_align_up(base_page + page, align_pages) - base_page;
}

/* A range of kind `dirty` that can hold n pages starting at a multiple of align, or 0. */
static uint32_t find_fit(int dirty, uint32_t n, uint32_t align)
{
    for (unsigned b = bin_next_nonempty(dirty, bin_of(n)); b < BIN_COUNT;
         b = bin_next_nonempty(dirty, b + 1)) {
        /* Exact bins past need hold only fitting ranges; others are searched first-fit. */
        for (uint32_t id = A.heads[dirty][b]; id; id = A.ranges[id].next) {
            const struct free_range *r = &A.ranges[id];
            uint64_t s = align_page(r->start, align);
            if (s + n <= (uint64_t)r->start + r->pages)
                return id;
        }
    }
    return 0;
}

/* Takes [page, page+n) out of free range id; the remainder stays free, same kind. */
static void carve(uint32_t id, uint32_t page, uint32_t n)
{
    struct free_range r = A.ranges[id];
    /* What is left keeps the range's age and its place on the age list. */
    uint32_t lru_after = r.dirty ? r.lru_prev : LRU_HEAD;
    bin_remove(id);
    range_untag(&r);
    range_delete(id);
    if (page > r.start) {
        uint32_t left = range_new(r.start, page - r.start, r.dirty, r.freed_ms);
        range_tag(left);
        bin_insert(left, lru_after);
        lru_after = left;
    }
    uint32_t end = r.start + r.pages;
    if (page + n < end) {
        uint32_t right = range_new(page + n, end - page - n, r.dirty, r.freed_ms);
        range_tag(right);
        bin_insert(right, lru_after);
    }
}

static uint32_t alloc_locked(uint32_t n, uint32_t align, int *zeroed)
{
    for (int dirty = 1; dirty >= 0; dirty--) {
        uint32_t id = find_fit(dirty, n, align);
        if (id) {
            uint32_t page = (uint32_t)align_page(A.ranges[id].start, align);
            carve(id, page, n);
            *zeroed = !dirty;
            return page;
        }
    }
    uint64_t aligned = align_page(A.hwm, align);
    if (aligned > mesh_arena.total_pages || mesh_arena.total_pages - aligned < n)
        return MESH_NO_PAGE;
    uint32_t page = (uint32_t)aligned;
    uint32_t gap = page - A.hwm, old_hwm = A.hwm;
    A.hwm = page + n;
    if (gap)
        free_insert(old_hwm, gap, 0, 0);
    *zeroed = 1;
    return page;
}

uint32_t mesh_pages_alloc(uint32_t n, uint32_t align_pages, int *zeroed)
{
    if (n == 0 || align_pages == 0)
        return MESH_NO_PAGE;
    mesh_lock(&A.lock);
    uint32_t page = alloc_locked(n, align_pages, zeroed);
    if (page != MESH_NO_PAGE)
        A.used_pages += n;
    mesh_unlock(&A.lock);
    return page;
}

void mesh_pages_free(uint32_t page, uint32_t n)
{
    uint32_t now = mesh_arena_clock_ms();
    mesh_lock(&A.lock);
    A.used_pages -= n;
    free_insert(page, n, 1, now);
    rearm(); /* punching waits for a caller without locks: mesh_arena_poll */
    mesh_unlock(&A.lock);
}

int mesh_pages_extend(uint32_t page, uint32_t n, uint32_t new_n, int *zeroed)
{
    uint32_t end = page + n, extra = new_n - n;
    int ok = 0;
    mesh_lock(&A.lock);
    if (end == A.hwm) {
        if (mesh_arena.total_pages - end >= extra) {
            A.hwm += extra;
            *zeroed = 1;
            ok = 1;
        }
    } else {
        uint32_t id = range_at(end);
        if (id && A.ranges[id].start == end && A.ranges[id].pages >= extra) {
            *zeroed = !A.ranges[id].dirty;
            carve(id, end, extra);
            ok = 1;
        } else if (id && A.ranges[id].start == end && end + A.ranges[id].pages == A.hwm &&
                   mesh_arena.total_pages - A.hwm >= extra - A.ranges[id].pages) {
            /* A free range up to the top, then fresh pages: take both. */
            *zeroed = !A.ranges[id].dirty;
            uint32_t have = A.ranges[id].pages;
            carve(id, end, have);
            A.hwm += extra - have;
            ok = 1;
        }
    }
    if (ok)
        A.used_pages += extra;
    mesh_unlock(&A.lock);
    return ok;
}

size_t mesh_arena_trim(void) { return purge_run(1, mesh_arena_clock_ms(), 0); }

size_t mesh_arena_trim_for(uint64_t budget_ns)
{
    return purge_run(1, mesh_arena_clock_ms(), budget_ns ? mesh_now_ns() + budget_ns : 0);
}

void mesh_arena_stats(struct mesh_arena_stats *out)
{
    mesh_lock(&A.lock);
    out->hwm_pages = A.hwm;
    out->dirty_pages = A.dirty_pages + A.inflight_pages; /* resident until punched */
    out->clean_free_pages = A.clean_free_pages;
    out->used_pages = A.used_pages;
    out->released_pages = A.released_pages;
    mesh_unlock(&A.lock);
}

uint64_t mesh_arena_committed_bytes(void)
{
    /* File page i shows at window page i (base for a private arena); pages at or above
     * hwm were never handed out, or were punched when hwm shrank. */
    uint8_t *map = mesh_arena.window ? mesh_arena.window : mesh_arena.base;
    mesh_lock(&A.lock);
    uint32_t hwm = A.hwm;
    mesh_unlock(&A.lock);
    /* One byte per page, on the stack: no lock is held across mincore (it used to fill a
     * static vector under a lock of its own), so concurrent callers never wait on it. */
    unsigned char vec[1024];
    uint64_t resident = 0;
    for (uint32_t page = 0; page < hwm && map;) {
        uint32_t n = hwm - page < sizeof vec ? hwm - page : (uint32_t)sizeof vec;
        if (mincore(map + ((size_t)page << MESH_PAGE_SHIFT), (size_t)n << MESH_PAGE_SHIFT, vec) != 0)
            break;
        for (uint32_t i = 0; i < n; i++)
            resident += vec[i] & 1;
        page += n;
    }
    return resident << MESH_PAGE_SHIFT;
}

uint32_t mesh_arena_hwm_frozen(void) { return A.hwm; }

void mesh_arena_lock(void) { mesh_lock(&A.lock); }
void mesh_arena_unlock(void) { mesh_unlock(&A.lock); }
void mesh_arena_lock_reset(void) { mesh_lock_reset(&A.lock); }

/* ---- fork ---------------------------------------------------------------------------- */

static int write_all_at(int fd, const uint8_t *src, size_t len, off_t off)
{
    return mesh_io_full(fd, MESH_IO_PWRITE, (void *)src, len, off, 0) == len ? 0 : -1;
}

/* A new memfd holding the listed pages of base, mapped over base; its descriptor (the
 * caller closes it once done with it), or -1 with base untouched.  Sealable, so that a
 * span table can be sealed read-only before it is handed out. */
int mesh_region_clone_memfd(uint8_t *base, size_t bytes, const char *name,
                            mesh_range_iter next_range, void *ctx)
{
    int saved = errno;
    if (!mesh_file_size_allowed(bytes))
        return -1;
    /* Moved high at once: the copy takes a while, and other threads of the program may be
     * opening files meanwhile (a registration's copy). */
    int fd = mesh_memfd_create(name, MFD_ALLOW_SEALING);
    if (fd >= 0)
        fd = mesh_fd_move_high(fd);
    if (fd < 0)
        goto out;
    if (ftruncate(fd, (off_t)bytes) != 0)
        goto fail;
    uint32_t first, count;
    while (next_range(ctx, &first, &count)) {
        off_t off = (off_t)first << MESH_PAGE_SHIFT;
        if (write_all_at(fd, base + off, (size_t)count << MESH_PAGE_SHIFT, off) != 0)
            goto fail;
    }
    if (mmap(base, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE | MAP_FIXED, fd, 0) ==
        MAP_FAILED)
        goto fail;
    errno = saved;
    return fd;
fail:
    close(fd);
    fd = -1;
out:
    errno = saved;
    return fd;
}

int mesh_region_clone_anon(uint8_t *base, size_t bytes, mesh_range_iter next_range, void *ctx)
{
    uint8_t *copy = map_reserve(bytes);
    if (!copy)
        return -1;
    uint32_t first, count;
    while (next_range(ctx, &first, &count)) {
        size_t off = (size_t)first << MESH_PAGE_SHIFT;
        memcpy(copy + off, base + off, (size_t)count << MESH_PAGE_SHIFT);
    }
    if (mremap(copy, bytes, bytes, MREMAP_MAYMOVE | MREMAP_FIXED, base) == MAP_FAILED) {
        munmap(copy, bytes);
        return -1;
    }
    return 0;
}

/* After base was mapped onto the child's own file (fd >= 0) or private memory (fd < 0):
 * the inherited window still shows the parent's file and is never used again. */
static void replace_window(int fd, uint8_t *window)
{
    uint8_t *old = mesh_arena.window;
    mesh_arena.shared = fd >= 0;
    mesh_arena.window = window;
    if (old)
        munmap(old, mesh_arena.bytes);
}

int mesh_arena_clone(mesh_range_iter next_range, void *ctx, void (*rewind)(void *ctx))
{
    /* The child's own memfd, mapped at base and at a new window, then closed like the
     * parent's (arena.h): the child holds no descriptor for it either. */
    int fd = mesh_region_clone_memfd(mesh_arena.base, mesh_arena.bytes, "libmesh-arena",
                                     next_range, ctx);
    if (fd < 0) {
        rewind(ctx);
        if (mesh_region_clone_anon(mesh_arena.base, mesh_arena.bytes, next_range, ctx) != 0)
            return -1;
    }
    replace_window(fd, fd >= 0 ? map_window(fd, mesh_arena.bytes) : NULL);
    if (fd >= 0)
        close(fd);
    return 0;
}

/*
 * Whether a page absent from the arena's file reads as zero.  Without swap, yes: a hole.
 * With swap, mincore (which only sees the page cache) calls a swapped-out page absent,
 * so every listed page must be copied, holes included (reading a hole through base then
 * allocates a zero page in the parent's file, as the child-side copy always did).
 */
static int absent_pages_are_holes(void)
{
    struct sysinfo si;
    return sysinfo(&si) == 0 && si.totalswap == 0;
}

/* Calls copy(ctx, page, n) for the runs of [first, first+count) the file holds (every
 * page unless skip_holes), looking at `probe` (a mapping of the file at page 0) in scans of
 * SNAPSHOT_SCAN pages; 0, or the first nonzero copy's result. */
#define SNAPSHOT_SCAN 1024u
static int for_present_runs(const uint8_t *probe, uint32_t first, uint32_t count, int skip_holes,
                            int (*copy)(void *ctx, uint32_t page, uint32_t n), void *ctx)
{
    unsigned char present[SNAPSHOT_SCAN];
    while (count) {
        uint32_t n = count < SNAPSHOT_SCAN ? count : SNAPSHOT_SCAN;
        size_t len = (size_t)n << MESH_PAGE_SHIFT;
        if (!skip_holes || mincore((void *)(probe + ((size_t)first << MESH_PAGE_SHIFT)), len, present) != 0)
            memset(present, 1, n);
        for (uint32_t i = 0, j; i < n; i = j) {
            for (j = i; j < n && (present[j] & 1) == (present[i] & 1); j++)
                ;
            int rc = (present[i] & 1) ? copy(ctx, first + i, j - i) : 0;
            if (rc)
                return rc;
        }
        first += n;
        count -= n;
    }
    return 0;
}

/* pwrite from base: the parent has touched its objects through base, so the source pages
 * are mapped already (a physical span is identity-mapped). */
static int write_from_base(void *ctx, uint32_t page, uint32_t n)
{
    off_t off = (off_t)page << MESH_PAGE_SHIFT;
    return write_all_at(*(int *)ctx, mesh_arena.base + off, (size_t)n << MESH_PAGE_SHIFT, off);
}

/* Copies the present pages of [first, first+count) from base into fd at their offsets;
 * absent pages (holes) stay holes in fd.  mincore through base, where the parent's own
 * accesses left page table entries: it reads those instead of looking every page up in
 * the file (through the untouched window: 26 us a call of 1024 pages, 3 us through base;
 * 40 ms a GiB).  A page without an entry is still looked up in the file, so the answer is
 * the same: whether the file holds the page. */
static int snapshot_range(int fd, uint32_t first, uint32_t count, int skip_holes)
{
    return for_present_runs(mesh_arena.base, first, count, skip_holes, write_from_base, &fd);
}

struct install_ctx {
    struct mesh_page_installer *in;
    const uint8_t *src;
};

static int install_from(void *ctx, uint32_t page, uint32_t n)
{
    const struct install_ctx *c = ctx;
    return mesh_installer_put(c->in, page, n, c->src + ((size_t)page << MESH_PAGE_SHIFT));
}

int mesh_arena_snapshot_file(void)
{
    if (!mesh_arena.shared || !mesh_arena.window || !mesh_file_size_allowed(mesh_arena.bytes))
        return -1;
    int saved = errno;
    int fd = mesh_memfd_create("libmesh-arena", 0);
    if (fd >= 0)
        fd = mesh_fd_move_high(fd);
    if (fd >= 0 && ftruncate(fd, (off_t)mesh_arena.bytes) != 0) {
        close(fd);
        fd = -1;
    }
    errno = saved;
    return fd;
}

int mesh_arena_snapshot_fill(int fd, mesh_range_iter next_range, void *ctx)
{
    int saved = errno, skip_holes = absent_pages_are_holes(), ok = 1;
    uint32_t first, count;
    while (ok && next_range(ctx, &first, &count))
        ok = snapshot_range(fd, first, count, skip_holes) == 0;
    errno = saved;
    return ok ? 0 : -1;
}

int mesh_arena_install_present(struct mesh_page_installer *in, const uint8_t *src, uint32_t first,
                               uint32_t count)
{
    struct install_ctx c = {in, src};
    int saved = errno;
    int rc = for_present_runs(src, first, count, absent_pages_are_holes(), install_from, &c);
    errno = saved;
    return rc ? -1 : 0;
}

int mesh_arena_adopt(int fd)
{
    /* The window first: if it cannot be had, base still shows the parent's file and the
     * caller can fall back to copying. */
    uint8_t *window = map_window(fd, mesh_arena.bytes);
    if (!window)
        return -1;
    if (mmap(mesh_arena.base, mesh_arena.bytes, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_NORESERVE | MAP_FIXED, fd, 0) == MAP_FAILED) {
        munmap(window, mesh_arena.bytes);
        return -1;
    }
    replace_window(fd, window);
    return 0;
}

int mesh_arena_share_fd(void) { return mesh_fd_owned(&share_fd) ? share_fd.fd : -1; }

void mesh_arena_forget_share_fd(void) { mesh_fd_drop(&share_fd); }

int mesh_arena_map_parent_private(int fd, uint32_t hwm)
{
    size_t shown = (size_t)hwm << MESH_PAGE_SHIFT;
    if (shown && mmap(mesh_arena.base, shown, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_NORESERVE | MAP_FIXED, fd, 0) == MAP_FAILED)
        return -1;
    if (shown < mesh_arena.bytes &&
        mmap(mesh_arena.base + shown, mesh_arena.bytes - shown, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED)
        return -1;
    return 0;
}

/* Free range id, refiled as the other kind (merged with neighbours of that kind). */
static void range_relabel(uint32_t id, uint32_t freed_ms)
{
    struct free_range r = A.ranges[id];
    bin_remove(id);
    range_untag(&r);
    range_delete(id);
    free_insert(r.start, r.pages, !r.dirty, freed_ms);
}

void mesh_arena_after_share(void)
{
    replace_window(-1, NULL);
    mesh_lock(&A.lock);
    /* A page that reads zero may read the parent's bytes once the child stops sharing. */
    uint32_t now = mesh_arena_clock_ms();
    for (unsigned b; (b = bin_next_nonempty(0, 0)) < BIN_COUNT;)
        range_relabel(A.heads[0][b], now);
    /* Dropping a page of a private file mapping shows the file's page again, not zeros. */
    A.release_broken = 1;
    rearm();
    mesh_unlock(&A.lock);
}

void mesh_arena_after_fork_child(void)
{
    /* The threads that were punching these did not come along: the ranges go back as
     * dirty (partly punched, maybe; mesh_arena_after_clone makes them clean when the
     * arena was copied without them). */
    uint32_t now = mesh_arena_clock_ms();
    for (uint64_t m = A.inflight_mask; m; m &= m - 1) {
        const struct inflight *f = &A.inflight[__builtin_ctzll(m)];
        A.inflight_pages -= f->pages;
        free_insert(f->start, f->pages, 1, now);
    }
    A.inflight_mask = 0;
    atomic_store(&purge_running, 0);
    rearm();
}

void mesh_arena_after_clone(void)
{
    /* Dirty contents were not copied: those pages now read as zero in the new file. */
    while (A.lru_head)
        range_relabel(A.lru_head, 0);
    rearm();
}

/* ---- validation ---------------------------------------------------------------------- */

int mesh_arena_check(void)
{
    int errors = 0;
    uint64_t dirty = 0, clean = 0;
    mesh_lock(&A.lock);
    for (int kind = 0; kind < 2; kind++) {
        for (unsigned b = 0; b < BIN_COUNT; b++) {
            int listed = (A.nonempty[kind][b >> 6] >> (b & 63)) & 1;
            errors += listed != (A.heads[kind][b] != 0);
            for (uint32_t id = A.heads[kind][b]; id; id = A.ranges[id].next) {
                const struct free_range *r = &A.ranges[id];
                errors += r->dirty != kind || r->bin != b || bin_of(r->pages) != b;
                errors += r->start + r->pages > A.hwm;
                errors += range_at(r->start) != id || range_at(r->start + r->pages - 1) != id;
                if (r->start > 0) {
                    uint32_t l = range_at(r->start - 1);
                    errors += l && A.ranges[l].dirty == kind;
                }
                if (r->start + r->pages < A.hwm) {
                    uint32_t n = range_at(r->start + r->pages);
                    errors += n && A.ranges[n].dirty == kind;
                }
                errors += !kind && r->start + r->pages == A.hwm;
                if (kind)
                    dirty += r->pages;
                else
                    clean += r->pages;
            }
        }
    }
    /* The age list holds exactly the dirty ranges, oldest first, linked both ways. */
    uint64_t aged_dirty = 0;
    for (uint32_t id = A.lru_head, prev = 0; id; prev = id, id = A.ranges[id].lru_next) {
        const struct free_range *r = &A.ranges[id];
        errors += !r->dirty || r->lru_prev != prev || (!r->lru_next && A.lru_tail != id);
        aged_dirty += r->pages;
        if (aged_dirty > A.hwm) { /* a cycle */
            errors++;
            break;
        }
    }
    errors += aged_dirty != dirty;
    uint64_t inflight = 0;
    for (uint64_t m = A.inflight_mask; m; m &= m - 1)
        inflight += A.inflight[__builtin_ctzll(m)].pages;
    errors += inflight != A.inflight_pages;
    errors += dirty != A.dirty_pages || clean != A.clean_free_pages;
    errors += A.used_pages + dirty + clean + inflight != A.hwm;
    mesh_unlock(&A.lock);
    return errors;
}
