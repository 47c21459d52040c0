/* alias_map.c: the arena's virtual-to-file page mapping and its VMA count; see alias_map.h. */
#include "alias_map.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arena.h"
#include "lock.h"
#include "span_table.h"

/* shift[v] for every arena page, as int32 (file page - virtual page): private, reserved
 * without backing on first use, so untouched entries read 0, the identity.  The pointer is
 * set once (atomically, outside the lock); entries are written only under `lock`; `breaks`
 * is read without it (statistics, budget checks). */
static int32_t *shift;
static _Atomic uint32_t breaks;
static _Atomic uint32_t limit; /* 0: not read yet */
static mesh_lock_t lock = MESH_LOCK_INIT;

static int32_t shift_at(uint32_t page)
{
    const int32_t *sh = __atomic_load_n(&shift, __ATOMIC_ACQUIRE); /* set once, without the lock */
    return sh && page < mesh_arena.total_pages ? sh[page] : 0;
}

/* Shift of page p if the pages [virt, virt+n) carried shift *s (s == NULL: as now). */
static int32_t shift_if(uint32_t p, uint32_t virt, uint32_t n, const int32_t *s)
{
    return s && p - virt < n ? *s : shift_at(p);
}

/* Breaks between neighbouring pages of [virt-1, virt+n], clipped to the arena, if the
 * pages [virt, virt+n) carried shift *s (s == NULL: as they are now). */
static int breaks_around(uint32_t virt, uint32_t n, const int32_t *s)
{
    uint32_t first = virt ? virt - 1 : 0;
    uint32_t last = virt + n < mesh_arena.total_pages ? virt + n : virt + n - 1;
    int count = 0;
    for (uint32_t p = first; p < last; p++)
        count += shift_if(p, virt, n, s) != shift_if(p + 1, virt, n, s);
    return count;
}

/* The span table's copy, for meshd: written under `lock`, read by anyone.  The limit is
 * published once something read it (validating a pair does, before any alias exists):
 * reading it here would fix it before a test or a fork child could set MESH_MAP_BUDGET. */
static void publish(uint32_t now)
{
    if (!mesh_spans.header)
        return;
    struct mesh_span_table_counters *c = &mesh_spans.header->counters;
    __atomic_store_n(&c->map_breaks, (uint64_t)now, __ATOMIC_RELAXED);
    __atomic_store_n(&c->map_limit, (uint64_t)atomic_load(&limit), __ATOMIC_RELAXED);
}

int mesh_alias_cost(uint32_t virt, uint32_t phys, uint32_t n)
{
    int32_t s = (int32_t)(phys - virt);
    mesh_lock(&lock);
    int cost = breaks_around(virt, n, &s) - breaks_around(virt, n, NULL);
    mesh_unlock(&lock);
    return cost;
}

/* Testing only: MESH_TEST_FAIL_RESTORE=1 makes restoring the identity fail, as it would
 * at vm.max_map_count, so that tests can exercise what frees do then. */
static int fail_restore(void)
{
    static int state; /* 0 unknown, 1 no, 2 yes */
    if (!state) {
        const char *env = getenv("MESH_TEST_FAIL_RESTORE");
        state = env && *env == '1' ? 2 : 1;
    }
    return state == 2;
}

void mesh_alias_shrink(uint32_t old_pages, uint32_t pages)
{
    int32_t *sh = __atomic_load_n(&shift, __ATOMIC_ACQUIRE);
    size_t keep = mesh_align_up((size_t)pages * sizeof *sh, MESH_PAGE_SIZE);
    size_t had = (size_t)old_pages * sizeof *sh;
    if (sh && had > keep)
        munmap((uint8_t *)sh + keep, had - keep);
}

/* The shadow array, reserved on the first real alias.  Made without the lock (a system
 * call); a thread that loses the race unmaps its own. */
static int32_t *shift_array(void)
{
    int32_t *cur = __atomic_load_n(&shift, __ATOMIC_ACQUIRE);
    if (cur)
        return cur;
    size_t bytes = (size_t)mesh_arena.total_pages * sizeof *shift;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (!__atomic_compare_exchange_n(&shift, &cur, (int32_t *)p, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        munmap(p, bytes);
        return cur;
    }
    return p;
}

/*
 * No lock is held across the system calls (mmap, mremap, madvise): the caller owns the
 * virtual pages [virt, virt+n) (its span's, under its class lock), so no other call remaps
 * them meanwhile, and the kernel orders calls on different pages itself.  Only the shadow
 * (shift[]) and the break count are updated under `lock`, after the mremap succeeded, with
 * the breaks computed from the shadow as it is then: updates are serialised, so `breaks`
 * always equals the breaks of the shadow, and once no remap is in flight the shadow equals
 * the kernel's mappings (the tests compare with /proc/self/maps).  While one is in flight
 * the budget check (mesh_alias_cost) may see the shadow one remap behind, which only moves
 * a refusal by one pair.  A fork never sees a remap in flight: fork's prepare handler takes
 * the class locks the callers hold.
 */
int mesh_alias_map(uint32_t virt, uint32_t phys, uint32_t n)
{
    void *want = mesh_page_addr(virt);
    if (virt == phys && fail_restore())
        return errno = ENOMEM, -1;
    size_t len = (size_t)n << MESH_PAGE_SHIFT;
    if (!mesh_arena.window) /* private arena (a fork child's fallback): identity only */
        return virt == phys ? madvise(want, len, MADV_DONTNEED) : (errno = ENODEV, -1);
    int32_t s = (int32_t)(phys - virt);
    if (s != 0 && !shift_array())
        return -1;
    /* old_size 0 on a shared mapping: a new mapping of the window's pages, i.e. of file
     * pages [phys, phys+n), replacing what was at `want`, all in one call, without a
     * descriptor (arena.h).  It inherits the window's flags, so dumping is turned back on. */
    void *p = mremap(mesh_window_addr(phys), 0, len, MREMAP_MAYMOVE | MREMAP_FIXED, want);
    if (p != want)
        return -1;
    madvise(want, len, MADV_DODUMP);
    mesh_lock(&lock);
    int before = breaks_around(virt, n, NULL), after = breaks_around(virt, n, &s);
    int32_t *sh = __atomic_load_n(&shift, __ATOMIC_ACQUIRE);
    if (sh) /* NULL: every entry is the identity, and so is s */
        for (uint32_t i = 0; i < n; i++)
            sh[virt + i] = s;
    uint32_t now = atomic_fetch_add(&breaks, (uint32_t)(after - before)) + (uint32_t)(after - before);
    publish(now);
    mesh_unlock(&lock);
    return 0;
}

uint32_t mesh_alias_phys(uint32_t virt)
{
    int32_t *sh = __atomic_load_n(&shift, __ATOMIC_ACQUIRE);
    return sh ? virt + (uint32_t)__atomic_load_n(&sh[virt], __ATOMIC_RELAXED) : virt;
}

uint32_t mesh_alias_breaks(void) { return atomic_load(&breaks); }

static uint32_t read_limit(void)
{
    const char *env = getenv("MESH_MAP_BUDGET");
    if (env && *env)
        return (uint32_t)strtoul(env, NULL, 10);
    uint32_t max_maps = 65530; /* the kernel's default */
    int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[32];
        ssize_t got = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (got > 0) {
            buf[got] = '\0';
            unsigned long v = strtoul(buf, NULL, 10);
            if (v > 0 && v < UINT32_MAX)
                max_maps = (uint32_t)v;
        }
    }
    return max_maps / 2;
}

uint32_t mesh_alias_limit(void)
{
    uint32_t l = atomic_load(&limit);
    if (!l) {
        l = read_limit();
        atomic_store(&limit, l ? l : 1);
    }
    return l;
}

void mesh_alias_reset(void)
{
    /* Single-threaded fork child: the lock may have been held by a thread that is gone. */
    lock = (mesh_lock_t)MESH_LOCK_INIT;
    if (shift)
        madvise(shift, (size_t)mesh_arena.total_pages * sizeof *shift, MADV_DONTNEED);
    atomic_store(&breaks, 0);
    publish(0);
}
