/* mesh_engine.c: executes mesh requests (see mesh_engine.h for the steps). */
#include "mesh_engine.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "alias_map.h"
#include "arena.h"
#include "barrier.h"
#include "fork_cow.h"
#include "bitmap.h"
#include "global_heap.h"
#include "init.h"
#include "kernel_hold.h"
#include "mesh.h"
#include "report.h"
#include "sandbox.h"
#include "size_class.h"
#include "slot_origin.h"
#include "span_table.h"

/* One hold (a barrier up over some source, protect to release) of ns nanoseconds: into
 * the request's histogram (mesh_engine.h) and the span table's barrier counters. */
static void note_hold(struct mesh_holds *h, uint64_t ns)
{
    if (h) {
        uint64_t us = ns / 1000;
        unsigned bucket = us ? 64u - (unsigned)__builtin_clzll(us) : 0;
        h->count++;
        h->us_log2[bucket < MESH_HOLD_BUCKETS ? bucket : MESH_HOLD_BUCKETS - 1]++;
        h->over_1ms += ns > MESH_HOLD_SLOW_NS;
        if (ns > h->ns_max)
            h->ns_max = ns;
    }
    MESH_COUNTER_ADD(barrier_ns_total, ns);
    _Atomic uint64_t *max = (_Atomic uint64_t *)&mesh_spans.header->counters.barrier_ns_max;
    for (uint64_t m = atomic_load(max); ns > m && !atomic_compare_exchange_weak(max, &m, ns);)
        ;
}

static int reject(int reason)
{
    MESH_COUNTER_ADD(mesh_rejected[reason], 1);
    return reason;
}

static int detached(const struct mesh_span_record *r)
{
    unsigned st = mesh_record_state(r);
    return st == MESH_SPAN_DETACHED || st == MESH_SPAN_DETACHED_FULL;
}

/* Class lock held.  MESH_PAIR_MESHED if the pair may be meshed now, else the reason.  The
 * mapping budget is checked only if `budget` (a run checks it once for all its pairs). */
static int validate(unsigned cls, const struct mesh_span_record *d, const struct mesh_span_record *s,
                    int budget)
{
    if (d->size_class != cls || s->size_class != cls)
        return MESH_REJECT_CLASS;
    if (!detached(d) || !detached(s))
        return MESH_REJECT_NOT_DETACHED;
    if (d->virt_count + s->virt_count > MESH_MAX_VIRTUAL_SPANS)
        return MESH_REJECT_ALIASES;
    if (mesh_span_kernel_held(d) || mesh_span_kernel_held(s))
        return MESH_REJECT_KERNEL_HELD;
    if (!mesh_arena.window || !mesh_origin_ready())
        return MESH_REJECT_BUDGET;
    mesh_bitmap bd = mesh_bitmap_load((uint64_t *)d->bitmap), bs = mesh_bitmap_load((uint64_t *)s->bitmap);
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++)
        if (bd.w[w] & bs.w[w])
            return MESH_REJECT_OVERLAP;
    if (!budget)
        return MESH_PAIR_MESHED;
    /* Last, as the costliest check: the mappings s's virtual spans would add. */
    int cost = 0;
    for (unsigned i = 0; i < s->virt_count; i++)
        cost += mesh_alias_cost(s->virt_page[i], d->phys_page, s->span_pages);
    if (cost > 0 && mesh_alias_breaks() + (uint32_t)cost > mesh_alias_limit())
        return MESH_REJECT_BUDGET;
    return MESH_PAIR_MESHED;
}

/* Lifts the barrier from one virtual span; a barrier that cannot be lifted would keep
 * its writers waiting for ever, so that is a fatal error (it does not happen: lifting
 * frees kernel state, it needs none). */
static void lift(uint32_t virt_page, size_t len)
{
    if (mesh_barrier_unprotect(mesh_page_addr(virt_page), len) != 0)
        mesh_heap_error("mesh", "cannot lift a write barrier", mesh_page_addr(virt_page));
}

/* Write-protects s's virtual spans; 0, or -1 with every protection already made lifted
 * again (a pair whose protection failed is not meshed). */
static int protect_source(const struct mesh_span_record *s)
{
    size_t len = (size_t)s->span_pages << MESH_PAGE_SHIFT;
    for (unsigned i = 0; i < s->virt_count; i++) {
        if (mesh_barrier_protect(mesh_page_addr(s->virt_page[i]), len) == 0)
            continue;
        while (i-- > 0)
            lift(s->virt_page[i], len);
        return -1;
    }
    return 0;
}

/* Publishes the barrier the process ended up with, for meshd and meshctl. */
static void publish_barrier_kind(void)
{
    static const uint64_t state[] = {
        [0] = MESH_BARRIER_STATE_UNKNOWN, [MESH_BARRIER_UFFD] = MESH_BARRIER_STATE_UFFD,
        [MESH_BARRIER_MPROTECT] = MESH_BARRIER_STATE_MPROTECT, [MESH_BARRIER_NONE] = MESH_BARRIER_STATE_NONE};
    __atomic_store_n(&mesh_spans.header->counters.barrier_kind, state[mesh_barrier_kind()], __ATOMIC_RELAXED);
}

/* Testing only: MESH_TEST_BARRIER_DELAY_US holds the barrier up longer, so that tests can
 * write into a span while it is being meshed. */
static unsigned test_delay_us(void)
{
    static int read_once;
    static unsigned delay;
    if (!read_once) {
        const char *env = getenv("MESH_TEST_BARRIER_DELAY_US");
        delay = env ? (unsigned)strtoul(env, NULL, 10) : 0;
        read_once = 1;
    }
    return delay;
}

/*
 * Scheduling.  A barrier hold is some 15 us of work, but a thread preempted inside it keeps
 * writers of that span waiting for a whole scheduler slice (5-8 ms seen on a loaded 2-CPU
 * machine).  Where the process may (root, or RLIMIT_RTPRIO), the meshing thread holds the
 * class lock, and with it every hold, as SCHED_FIFO, which ordinary threads cannot preempt;
 * the first refusal turns this off for good.  Only a SCHED_OTHER caller is raised (a
 * program calling mesh_mesh_pairs from a thread of its own policy keeps it).  Between
 * pairs, the CPU is the program's:
 *   - meshd's requests (MESH_ENGINE_BACKGROUND: the control thread) wait between pairs as
 *     SCHED_IDLE, so that any thread of the machine that wants the CPU gets it at once,
 *     and return to SCHED_OTHER at the end of the request.  Measured (redis-benchmark -c 1,
 *     a lightly loaded Redis that meshd compacts, ~10k pairs in ~3 s): staying FIFO across
 *     pairs left Redis and redis-benchmark one CPU to share, SET p99.9 2.9-3.5x of no
 *     meshd; FIFO per pair and SCHED_IDLE between, 1.0x, for two system calls a pair.  Only
 *     once FIFO was granted: a SCHED_IDLE thread preempted inside a hold would keep its
 *     writers waiting for as long as the machine stays busy.  Explicit rounds too (meshctl
 *     mesh; the control thread idles whatever the request's background flag, which meshd
 *     leaves unset for them, and which now only decides the trim after the request,
 *     control.c): as SCHED_OTHER between pairs, with FIFO held for 0.5 ms slices, they took
 *     Redis serving 2,000 requests a second to SET p99 7.0-9.2 ms; idling, 1.7-2.8 ms, the
 *     same 32,768 meshes in 10 s (docs/BENCHMARKS-FRAG.md).
 *   - On a busy machine a SCHED_IDLE thread gets almost no CPU: a gap between pairs over
 *     IDLE_GAP_MAX_NS ends the idling for the rest of the request, and for the requests of
 *     the next STARVED_FOR_NS (starved_at), so that a busy spell costs one such wait, not
 *     one per request (explicit rounds with both CPUs busy: 0.42-1.06 s a round, as
 *     without idling).  The bound is far above what a lightly loaded machine makes an idle
 *     thread wait (2 ms fired there, and the 10 s without idling that followed put Redis's
 *     SET p99 back at 1.4-7 ms) and far below a starvation (hundreds of ms).
 *   - a program's own call stays raised across pairs but gives the CPU back (SCHED_OTHER
 *     again) once RT_SLICE_NS have passed since it was raised, and at the end: the
 *     program's other threads wait at most a slice plus one hold for it.
 */
#define RT_SLICE_NS 500000u

struct rt_state {
    int allowed, raised;
    int background; /* lower to SCHED_IDLE after every pair (MESH_ENGINE_BACKGROUND) */
    int idled;      /* this request set SCHED_IDLE: SCHED_OTHER again at its end */
    int last;       /* the request's last pair is next: no idling after it (set before each
                     * engine_pair; engine_run starts only with two pairs left, last is 0) */
    uint64_t since, lowered_at;
};

/* A gap between pairs longer than this means the machine is busy: the rest of the request
 * runs as a program's call does (a SCHED_IDLE thread next to busy threads gets almost no
 * CPU, and would hold the request up for seconds), and so do requests for STARVED_FOR_NS
 * after it (starved_at: when it last happened, 0 never). */
#define IDLE_GAP_MAX_NS 20000000u
#define STARVED_FOR_NS 10000000000ull

static _Atomic int rt_refused;
static _Atomic uint64_t starved_at;

int mesh_engine_may_idle(void)
{
    uint64_t at = atomic_load_explicit(&starved_at, memory_order_relaxed);
    return at == 0 || mesh_now_ns() - at > STARVED_FOR_NS;
}

/* After a wait as SCHED_IDLE: one longer than IDLE_GAP_MAX_NS ends the idling. */
static void note_idle_wait(struct rt_state *rt)
{
    uint64_t now = mesh_now_ns();
    if (rt->idled && rt->background && now - rt->lowered_at > IDLE_GAP_MAX_NS) {
        rt->background = 0;
        atomic_store_explicit(&starved_at, now, memory_order_relaxed);
    }
}

static void rt_raise(struct rt_state *rt)
{
    if (!rt->allowed || rt->raised || atomic_load_explicit(&rt_refused, memory_order_relaxed))
        return;
    note_idle_wait(rt);
    struct sched_param sp = {.sched_priority = 1};
    if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) == 0) {
        rt->raised = 1;
        rt->since = mesh_now_ns();
    } else {
        atomic_store_explicit(&rt_refused, 1, memory_order_relaxed);
    }
}

/* After a pair (unless_fresh) or at the end of a request. */
static void rt_lower(struct rt_state *rt, int unless_fresh)
{
    if (!rt->raised || (unless_fresh && !rt->background && mesh_now_ns() - rt->since < RT_SLICE_NS))
        return;
    struct sched_param sp = {.sched_priority = 0};
    rt->idled = rt->background && unless_fresh && !rt->last;
    /* The clock before the call: a thread lowered to SCHED_IDLE on a busy CPU waits on the
     * way out of this very call (the scheduler switches away as the system call returns),
     * and that wait is the gap IDLE_GAP_MAX_NS looks for.  Read after it, the gap was the
     * few instructions to the next pair's raise, and the escape never fired. */
    if (rt->idled)
        rt->lowered_at = mesh_now_ns();
    sched_setscheduler(0, rt->idled ? SCHED_IDLE : SCHED_OTHER, &sp);
    rt->raised = 0;
}

/* End of a request: the caller's thread as it was (SCHED_OTHER). */
static void rt_end(struct rt_state *rt)
{
    rt_lower(rt, 0);
    note_idle_wait(rt); /* a wait after the last pair counts too */
    if (rt->idled) {
        struct sched_param sp = {.sched_priority = 0};
        sched_setscheduler(0, SCHED_OTHER, &sp);
        rt->idled = 0;
    }
}

/* Copies every object live in s (as of now: the barrier stops writes) into d's memory. */
static void copy_live(const struct mesh_span_record *d, const struct mesh_span_record *s, uint32_t size)
{
    const uint8_t *from = mesh_page_addr(s->phys_page);
    uint8_t *to = mesh_page_addr(d->phys_page);
    mesh_bitmap live = mesh_bitmap_load((uint64_t *)s->bitmap);
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++) {
        for (uint64_t bits = live.w[w]; bits; bits &= bits - 1) {
            size_t off = (size_t)(w * 64 + (unsigned)__builtin_ctzll(bits)) * size;
            memcpy(to + off, from + off, size);
        }
    }
}

/* Testing only: MESH_TEST_REMAP_FAIL=N makes the Nth remap of a virtual span fail, as the
 * kernel's mmap does when the program has used up vm.max_map_count itself. */
static int remap_fails_now(void)
{
    static struct mesh_nth_call knob;
    return mesh_nth_call(&knob, "MESH_TEST_REMAP_FAIL");
}

/*
 * Puts back s's virtual spans [0, n), already mapped onto d's physical page (and writable
 * there, see remap_source), onto s's own.  They are protected again first, so that nothing
 * more lands in d's page; what writers put there since their remap is then copied back,
 * s's whole span from d's page into s's file page through the arena's window (s's virtual
 * spans are protected or moved, the window is not); d's slots in it are free slots of s,
 * whose contents do not matter.  The remaps back wake the writers held meanwhile.
 */
static void undo_remap(const struct mesh_span_record *d, const struct mesh_span_record *s, unsigned n)
{
    size_t len = (size_t)s->span_pages << MESH_PAGE_SHIFT;
    for (unsigned j = 0; j < n; j++)
        mesh_barrier_reprotect(mesh_page_addr(s->virt_page[j]), len);
    if (n > 0)
        memcpy(mesh_window_addr(s->phys_page), mesh_window_addr(d->phys_page), len);
    for (unsigned j = 0; j < n; j++) {
        if (mesh_alias_map(s->virt_page[j], s->phys_page, s->span_pages) != 0)
            mesh_heap_error("mesh", "cannot undo a partial remap", mesh_page_addr(s->virt_page[j]));
        mesh_barrier_remapped(mesh_page_addr(s->virt_page[j]), len);
    }
}

/*
 * Maps s's virtual spans onto d's physical page, one at a time.  Each is released at
 * once: its objects are in d's page already (copy_live), and every object is reached
 * through one virtual span only (slot_origin.h), so writers through a moved span land
 * where the object now lives.  Releasing by remap, never by lifting, matters:
 * mesh_barrier_unprotect makes the pages writable (barrier.c), which for an alias means
 * mapping d's page once more, and RSS counts every mapping (robson's RSS after idle rose
 * from 86 to 121 MiB when moved spans were protected again and lifted).  If a later span
 * cannot be moved, everything is put back (undo_remap) and released, and -1 returned.
 */
static int remap_source(const struct mesh_span_record *d, const struct mesh_span_record *s)
{
    size_t len = (size_t)s->span_pages << MESH_PAGE_SHIFT;
    unsigned n = s->virt_count;
    for (unsigned i = 0; i < n; i++) {
        void *addr = mesh_page_addr(s->virt_page[i]);
        if (!remap_fails_now() && mesh_alias_map(s->virt_page[i], d->phys_page, s->span_pages) == 0) {
            mesh_barrier_remapped(addr, len);
            if (i + 1 < n && test_delay_us()) /* tests: a window for writers between two remaps */
                usleep(test_delay_us());
            continue;
        }
        undo_remap(d, s, i);
        for (unsigned j = i; j < n; j++)
            lift(s->virt_page[j], len);
        return -1;
    }
    return 0;
}

/*
 * Hands s's virtual spans, bits and tombstones to d.  Order matters to lock-free frees:
 * d's new virtual spans are published first (a free that finds d through the page map
 * must be able to place p in it), then s becomes a tombstone, then its bits move, and
 * only then does the page map name d (a free that still finds s and misses its bit
 * waits for that, see mesh_span_after_mesh).
 */
static void absorb(uint32_t dst, struct mesh_span_record *d, uint32_t src, struct mesh_span_record *s)
{
    unsigned have = d->virt_count;
    d->absorbed[have - 1] = src;
    for (unsigned i = 1; i < s->virt_count; i++)
        d->absorbed[have - 1 + i] = s->absorbed[i - 1];
    for (unsigned i = 0; i < s->virt_count; i++)
        __atomic_store_n(&d->virt_page[have + i], s->virt_page[i], __ATOMIC_RELAXED);
    __atomic_store_n(&d->virt_count, (uint8_t)(have + s->virt_count), __ATOMIC_RELEASE);

    atomic_fetch_add((_Atomic uint32_t *)&s->generation, 1);
    mesh_record_set_state(s, MESH_SPAN_FREE);
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++) {
        uint64_t bits = atomic_exchange(mesh_bitmap_word(s->bitmap, w * 64), 0);
        /* The objects keep their addresses: record through which of d's virtual spans each
         * one lives before its bit can be found in d (slot_origin.h).  Only the bits taken
         * here: a free that cleared its bit in s first has left the slot free. */
        mesh_bitmap moved = {{0}};
        moved.w[w] = bits;
        mesh_origin_absorb(dst, src, &moved, have);
        atomic_fetch_or(mesh_bitmap_word(d->bitmap, w * 64), bits);
    }
    mesh_record_changed(dst);
    for (unsigned i = 0; i < s->virt_count; i++)
        mesh_pagemap_set(s->virt_page[i], s->span_pages, dst);
}

/* Meshes src into dst; MESH_PAIR_MESHED or an enum mesh_reject_reason. */
static int engine_pair(uint32_t dst, uint32_t src, struct rt_state *rt, struct mesh_holds *h)
{
    if (!mesh_ready())
        return reject(MESH_REJECT_BAD_SPAN);
    uint32_t hwm = mesh_record_hwm();
    if (dst == 0 || src == 0 || dst >= hwm || src >= hwm)
        return reject(MESH_REJECT_BAD_SPAN);
    if (dst == src)
        return reject(MESH_REJECT_SAME_SPAN);
    struct mesh_span_record *d = mesh_record(dst), *s = mesh_record(src);
    /* Unlocked look to find the lock; validate() checks it again under the lock. */
    unsigned cls = atomic_load_explicit((_Atomic uint8_t *)&d->size_class, memory_order_relaxed);
    if (cls == 0 || cls > MESH_CLASS_COUNT)
        return reject(MESH_REJECT_BAD_SPAN);
    rt_raise(rt); /* before the lock: a program thread may wait for it */
    mesh_class_lock(cls);
    int verdict = validate(cls, d, s, 1);
    /* A fork's copy-on-write (active while its child copies) forbids changing live pages:
     * the request waited for it (mesh_engine_mesh), so this is a fork that came since. */
    if (verdict == MESH_PAIR_MESHED && (atomic_load(&mesh_fork_cow_active) || mesh_barrier_begin() != 0))
        verdict = MESH_REJECT_BARRIER;
    if (verdict != MESH_PAIR_MESHED) {
        mesh_class_unlock(cls);
        rt_lower(rt, 1);
        return reject(verdict);
    }
    mesh_origin_prepare(dst);
    uint64_t t0 = mesh_now_ns();
    if (protect_source(s) != 0) {
        note_hold(h, mesh_now_ns() - t0); /* a failed protect may have held some pages a moment */
        mesh_barrier_end();
        mesh_class_unlock(cls);
        rt_lower(rt, 1);
        return reject(MESH_REJECT_BARRIER);
    }
    if (test_delay_us())
        usleep(test_delay_us());
    /* Again with the barrier up: a pin taken from now on faults on it (kernel_hold.h). */
    atomic_thread_fence(memory_order_seq_cst);
    if (mesh_span_kernel_held(d) || mesh_span_kernel_held(s)) {
        for (unsigned i = 0; i < s->virt_count; i++)
            lift(s->virt_page[i], (size_t)s->span_pages << MESH_PAGE_SHIFT);
        note_hold(h, mesh_now_ns() - t0);
        mesh_barrier_end();
        mesh_class_unlock(cls);
        rt_lower(rt, 1);
        return reject(MESH_REJECT_KERNEL_HELD);
    }
    copy_live(d, s, mesh_classes[cls].size);
    if (remap_source(d, s) != 0) {
        note_hold(h, mesh_now_ns() - t0);
        mesh_barrier_end();
        mesh_class_unlock(cls);
        rt_lower(rt, 1);
        return reject(MESH_REJECT_BUDGET);
    }
    mesh_class_unlist(cls, src);
    mesh_class_unlist(cls, dst);
    uint32_t phys = s->phys_page, pages = s->span_pages;
    absorb(dst, d, src, s);
    mesh_barrier_end();
    note_hold(h, mesh_now_ns() - t0);
    mesh_arena_punch(phys, pages);
    mesh_class_place(cls, dst);
    mesh_class_unlock(cls);
    rt_lower(rt, 1);

    MESH_COUNTER_ADD(meshes, 1);
    MESH_COUNTER_ADD(mesh_released_pages, pages);
    MESH_COUNTER_ADD(heap_pages, -(int64_t)pages);
    return MESH_PAIR_MESHED;
}

/*
 * Runs.  Pairs [first, first + len) of a request form a run when all are of one class,
 * every source is a span of one virtual span (its own pages), the sources come in rising
 * page order with at most RUN_MAX_GAP pages of other spans between two and all within
 * RUN_MAX_PAGES pages (the run's window), the destinations are distinct and none lies
 * among the sources.  A run is meshed under one hold.  Its sources fall into groups
 * (stretches of sources on consecutive pages) and segments (stretches of a group whose
 * destinations are consecutive pages too: one mremap maps a segment, and it stays one
 * kernel mapping, the file pages being consecutive).
 *
 * What a run saves is TLB flushes.  Every change of a page table entry that is present
 * (a write-protect, a zap, a remap over mapped pages) flushes; a pair on its own pays two
 * (the protect, and the remap that unmaps the source).  Nothing else does: not a fault,
 * not a write-protect or a remap of a range whose entries were zapped (Linux keeps a
 * write-protect marker in a zapped entry of a shared file mapping, and installs one in an
 * empty entry, so the barrier holds through a zap: a writer faults on the marker and
 * waits; a reader faults the page back in, read-only).  A flush costs the CPUs running the
 * program 1-2 us on common hosts; on this project's VMs (PVM guests) it stalls the other
 * CPU for ~10 us a page, up to 33 pages, and ~45 us for a larger range, which Linux
 * flushes whole (bench/frag/ptstall.c, BENCHMARKS-FRAG.md).  So a run of one group is:
 * protect the group (one flush), copy, and if it has several segments zap it (one more)
 * before remapping over the empty range.  A run of several groups zaps its whole window
 * first (one flush, the other spans' pages in it included: they only fault back in when
 * next touched), protects each group over empty entries, copies (reading the sources
 * faults them back in), zaps the window again (the second flush) and remaps each segment
 * over empty entries: two flushes for up to RUN_MAX_PAIRS pairs where they paid two each.
 * Only sources are ever protected; a span between them is zapped and nothing else.
 *
 * A run that cannot be started whole (a protect refused, a span the kernel holds) or
 * whose first remap is refused leaves nothing protected and nothing moved, and its pairs
 * are then meshed one by one, each deciding for itself.  A later segment's refused remap
 * ends the run there: the segments before it are meshed, the rest lifted.
 */
#define RUN_MAX_PAIRS 64u    /* bounds a run's hold: up to this many spans copied in it */
#define RUN_MAX_SEGMENTS 32u /* and up to this many remaps (each a new mapping, registered) */
#define RUN_MAX_GAP 16u      /* pages of other spans between two sources of a run */
#define RUN_MAX_PAGES 512u   /* pages from a run's first source to the end of its last */

enum run_outcome { RUN_NONE, RUN_MESHED, RUN_UNDONE };

static uint32_t source_page(const uint32_t *pairs, size_t k) { return mesh_record(pairs[2 * k + 1])->phys_page; }
static uint32_t dest_page(const uint32_t *pairs, size_t k) { return mesh_record(pairs[2 * k])->phys_page; }

/* Does pair k continue the group of pair k - 1 (sources on consecutive pages)? */
static int continues_group(const uint32_t *pairs, size_t k, uint32_t span_pages)
{
    return source_page(pairs, k) == source_page(pairs, k - 1) + span_pages;
}

/* Does pair k continue the segment of pair k - 1 (sources and destinations on consecutive
 * pages)? */
static int continues_segment(const uint32_t *pairs, size_t k, uint32_t span_pages)
{
    return continues_group(pairs, k, span_pages) && dest_page(pairs, k) == dest_page(pairs, k - 1) + span_pages;
}

/* The end of the group or segment (as `continues` says) that pair k starts, among pairs
 * [k, end) of a run. */
static size_t stretch_end(const uint32_t *pairs, size_t k, size_t end, uint32_t span_pages,
                          int (*continues)(const uint32_t *, size_t, uint32_t))
{
    size_t e = k + 1;
    while (e < end && continues(pairs, e, span_pages))
        e++;
    return e;
}

/* Class lock held, pair `first` valid (budget included).  How many pairs from `first` form
 * a run that is valid now: 1 if none. */
static size_t run_extent(const uint32_t *pairs, size_t first, size_t npairs, unsigned cls)
{
    uint32_t hwm = mesh_record_hwm();
    const struct mesh_span_record *s0 = mesh_record(pairs[2 * first + 1]);
    if (s0->virt_count != 1 || s0->virt_page[0] != s0->phys_page)
        return 1;
    uint32_t sp = s0->span_pages;
    uint64_t end = (uint64_t)s0->phys_page + sp; /* of the run's last source so far */
    size_t len = 1, segments = 1;
    while (first + len < npairs && len < RUN_MAX_PAIRS) {
        size_t k = first + len;
        uint32_t dst = pairs[2 * k], src = pairs[2 * k + 1];
        if (dst == 0 || src == 0 || dst >= hwm || src >= hwm || dst == src)
            break;
        const struct mesh_span_record *d = mesh_record(dst), *s = mesh_record(src);
        if (validate(cls, d, s, 0) != MESH_PAIR_MESHED || s->virt_count != 1 ||
            s->virt_page[0] != s->phys_page || s->phys_page < end ||
            s->phys_page - end > RUN_MAX_GAP || s->phys_page + sp - (uint64_t)s0->phys_page > RUN_MAX_PAGES)
            break;
        int new_segment = !continues_segment(pairs, k, sp);
        if (new_segment && segments == RUN_MAX_SEGMENTS)
            break;
        /* One destination per run: validate() checked d against this pair's source only. */
        size_t j = first;
        while (j < k && pairs[2 * j] != dst)
            j++;
        if (j < k)
            break;
        len++;
        segments += (size_t)new_segment;
        end = (uint64_t)s->phys_page + sp;
    }
    /* Distinct spans: no destination may lie among the sources' pages (a page belongs to
     * one span; a destination that is also a source of the run would be both). */
    for (size_t k = first; k < first + len; k++) {
        uint64_t d_lo = dest_page(pairs, k);
        for (size_t j = first; j < first + len; j++) {
            uint64_t s_lo = source_page(pairs, j);
            if (d_lo < s_lo + sp && s_lo < d_lo + sp)
                return 1;
        }
    }
    /* The mappings the run adds, counted segment by segment against today's mappings (an
     * upper bound: neighbouring segments share a boundary).  A pair alone was checked by
     * validate(). */
    if (len > 1) {
        int cost = 0;
        for (size_t k = first, seg; k < first + len; k = seg) {
            seg = stretch_end(pairs, k, first + len, sp, continues_segment);
            cost += mesh_alias_cost(source_page(pairs, k), dest_page(pairs, k), (uint32_t)(seg - k) * sp);
        }
        if (cost > 0 && mesh_alias_breaks() + (uint32_t)cost > mesh_alias_limit())
            return 1;
    }
    return len;
}

/* From here on `run` is the run's first pair (pairs + 2 * first) and its pairs are
 * numbered from 0. */

/* Lifts the barrier from the sources of the run's pairs [from, to), a group at a time. */
static void lift_sources(const uint32_t *run, size_t from, size_t to, uint32_t sp)
{
    for (size_t k = from, e; k < to; k = e) {
        e = stretch_end(run, k, to, sp, continues_group);
        lift(source_page(run, k), (e - k) * sp << MESH_PAGE_SHIFT);
    }
}

/* Write-protects the sources of the run's n pairs, a group at a time; 0, or -1 with
 * nothing left protected. */
static int protect_sources(const uint32_t *run, size_t n, uint32_t sp)
{
    for (size_t k = 0, e; k < n; k = e) {
        e = stretch_end(run, k, n, sp, continues_group);
        /* A failed protect lifts what it protected itself (barrier.h). */
        if (mesh_barrier_protect(mesh_page_addr(source_page(run, k)), (e - k) * sp << MESH_PAGE_SHIFT) != 0) {
            lift_sources(run, 0, k, sp);
            return -1;
        }
    }
    return 0;
}

/* Barrier up over the run's n sources, their objects copied: maps them onto their
 * destinations segment by segment, and returns how many pairs it moved (whole segments,
 * from the first; it stops at the first refused remap, which leaves that segment's old
 * mapping in place, alias_map.h). */
static size_t remap_run(const uint32_t *run, size_t n, uint32_t sp)
{
    size_t done = 0;
    while (done < n) {
        size_t end = stretch_end(run, done, n, sp, continues_segment);
        if (remap_fails_now() ||
            mesh_alias_map(source_page(run, done), dest_page(run, done), (uint32_t)(end - done) * sp) != 0)
            break;
        done = end;
    }
    return done;
}

/* Meshes the run starting at pair `first` if there is one: RUN_MESHED (*len pairs meshed),
 * RUN_UNDONE (*len pairs form a run that could not be started; nothing changed) or
 * RUN_NONE (no run starts here). */
static enum run_outcome engine_run(const uint32_t *pairs, size_t first, size_t npairs, size_t *len,
                                   struct rt_state *rt, struct mesh_holds *h)
{
    *len = 1;
    if (first + 1 >= npairs || !mesh_ready())
        return RUN_NONE;
    uint32_t hwm = mesh_record_hwm(), dst0 = pairs[2 * first], src0 = pairs[2 * first + 1];
    if (dst0 == 0 || src0 == 0 || dst0 >= hwm || src0 >= hwm || dst0 == src0)
        return RUN_NONE;
    /* Unlocked look first, so that a pair followed by no neighbour costs no lock: does the
     * next pair's source follow this one's closely?  run_extent() checks it all again under
     * the lock. */
    uint32_t dst1 = pairs[2 * first + 2], src1 = pairs[2 * first + 3];
    if (dst1 >= hwm || src1 >= hwm)
        return RUN_NONE;
    uint64_t end0 = (uint64_t)__atomic_load_n(&mesh_record(src0)->phys_page, __ATOMIC_RELAXED) +
                    __atomic_load_n(&mesh_record(src0)->span_pages, __ATOMIC_RELAXED);
    uint64_t page1 = __atomic_load_n(&mesh_record(src1)->phys_page, __ATOMIC_RELAXED);
    if (page1 < end0 || page1 - end0 > RUN_MAX_GAP)
        return RUN_NONE;
    unsigned cls = atomic_load_explicit((_Atomic uint8_t *)&mesh_record(dst0)->size_class, memory_order_relaxed);
    if (cls == 0 || cls > MESH_CLASS_COUNT)
        return RUN_NONE;
    rt_raise(rt); /* before the lock: a program thread may wait for it */
    mesh_class_lock(cls);
    size_t n = validate(cls, mesh_record(dst0), mesh_record(src0), 1) == MESH_PAIR_MESHED
                   ? run_extent(pairs, first, npairs, cls) : 1;
    if (n < 2 || atomic_load(&mesh_fork_cow_active) || mesh_barrier_begin() != 0) {
        mesh_class_unlock(cls);
        return RUN_NONE; /* engine_pair decides (and gives the reason) */
    }
    *len = n;
    const uint32_t *run = pairs + 2 * first;
    uint32_t sp = mesh_record(src0)->span_pages, win_page = source_page(run, 0);
    void *win = mesh_page_addr(win_page);
    size_t win_bytes = (size_t)(source_page(run, n - 1) + sp - win_page) << MESH_PAGE_SHIFT;
    int several_groups = stretch_end(run, 0, n, sp, continues_group) < n;
    int several_segments = stretch_end(run, 0, n, sp, continues_segment) < n;
    for (size_t k = 0; k < n; k++)
        mesh_origin_prepare(run[2 * k]);
    uint64_t t0 = mesh_now_ns();
    /* Several groups: empty the window's entries, so that protecting them flushes nothing
     * (above).  Refused (mlock'ed pages): each protect then flushes its own entries. */
    if (several_groups)
        madvise(win, win_bytes, MADV_DONTNEED);
    int up = protect_sources(run, n, sp) == 0, ok = up;
    if (ok && test_delay_us())
        usleep(test_delay_us());
    /* Again with the barrier up: a pin taken from now on faults on it (kernel_hold.h). */
    atomic_thread_fence(memory_order_seq_cst);
    for (size_t k = 0; ok && k < n; k++)
        ok = !mesh_span_kernel_held(mesh_record(run[2 * k])) && !mesh_span_kernel_held(mesh_record(run[2 * k + 1]));
    size_t done = 0;
    if (ok) {
        for (size_t k = 0; k < n; k++)
            copy_live(mesh_record(run[2 * k]), mesh_record(run[2 * k + 1]), mesh_classes[cls].size);
        /* Several remaps: zap first (above).  If refused, each remap flushes its own. */
        if (several_segments) {
            madvise(win, win_bytes, MADV_DONTNEED);
            if (test_delay_us()) /* tests: writers must wait through the zap too */
                usleep(test_delay_us());
        }
        done = remap_run(run, n, sp);
    }
    if (up && done < n) /* the sources not moved (all of them if !ok) */
        lift_sources(run, done, n, sp);
    if (done == 0) {
        note_hold(h, mesh_now_ns() - t0);
        mesh_barrier_end();
        mesh_class_unlock(cls);
        rt_lower(rt, 1);
        return RUN_UNDONE;
    }
    *len = n = done;
    /* Writers wake and land in the destinations. */
    for (size_t k = 0, e; k < n; k = e) {
        e = stretch_end(run, k, n, sp, continues_segment);
        mesh_barrier_remapped(mesh_page_addr(source_page(run, k)), (e - k) * sp << MESH_PAGE_SHIFT);
    }
    /* The groups' pages, taken before absorb() turns the sources into tombstones. */
    uint32_t group_page[RUN_MAX_PAIRS], group_pages[RUN_MAX_PAIRS], groups = 0;
    for (size_t k = 0, e; k < n; k = e) {
        e = stretch_end(run, k, n, sp, continues_group);
        group_page[groups] = source_page(run, k);
        group_pages[groups++] = (uint32_t)(e - k) * sp;
    }
    for (size_t k = 0; k < n; k++) {
        uint32_t dst = run[2 * k], src = run[2 * k + 1];
        mesh_class_unlist(cls, src);
        mesh_class_unlist(cls, dst);
        absorb(dst, mesh_record(dst), src, mesh_record(src));
    }
    mesh_barrier_end();
    note_hold(h, mesh_now_ns() - t0);
    for (uint32_t g = 0; g < groups; g++)
        mesh_arena_punch(group_page[g], group_pages[g]);
    for (size_t k = 0; k < n; k++)
        mesh_class_place(cls, run[2 * k]);
    mesh_class_unlock(cls);
    rt_lower(rt, 1);

    uint32_t pages = (uint32_t)(n * sp);
    MESH_COUNTER_ADD(meshes, n);
    MESH_COUNTER_ADD(mesh_released_pages, pages);
    MESH_COUNTER_ADD(heap_pages, -(int64_t)pages);
    return RUN_MESHED;
}

int mesh_engine_for_each_alias(int (*fn)(void *ctx, uint32_t phys, uint32_t virt, uint32_t pages), void *ctx)
{
    uint32_t hwm = mesh_record_hwm();
    for (uint32_t id = 1; id < hwm; id++) {
        const struct mesh_span_record *r = mesh_record(id);
        if (mesh_record_state(r) == MESH_SPAN_FREE || r->size_class == 0)
            continue;
        for (unsigned i = 1; i < r->virt_count && i < MESH_MAX_VIRTUAL_SPANS; i++) {
            int rc = fn(ctx, r->phys_page, r->virt_page[i], r->span_pages);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int restore_alias(void *ctx, uint32_t phys, uint32_t virt, uint32_t pages)
{
    (void)ctx;
    if (!mesh_arena.window) {
        /* No file to alias: each virtual span gets its own copy.  Every object is reached
         * through one address only, so the copies never disagree. */
        memcpy(mesh_page_addr(virt), mesh_page_addr(phys), (size_t)pages << MESH_PAGE_SHIFT);
        return 0;
    }
    return mesh_alias_map(virt, phys, pages) != 0 ? -1 : 0;
}

int mesh_engine_restore_aliases(void) { return mesh_engine_for_each_alias(restore_alias, NULL); }

/* ---- public API -------------------------------------------------------------------------- */

size_t mesh_engine_mesh(const uint32_t *pairs, size_t npairs, int *reasons, struct mesh_holds *holds,
                        unsigned flags)
{
    size_t meshed = 0;
    if (holds)
        memset(holds, 0, sizeof *holds);
    mesh_fork_cow_wait(); /* a fork child is still copying the heap: fork_cow.h */
    /* Under a seccomp filter sched_setscheduler may be fatal (systemd's @resources): no
     * raise at all.  Checked per request: a program may install a filter late (meshd's
     * requests through the kept descriptor: sandbox.c). */
    int filtered = flags & MESH_ENGINE_BACKGROUND ? mesh_sandbox_filtered_kept() : mesh_sandbox_filtered_now();
    struct rt_state rt = {.allowed = !filtered &&
                                     (sched_getscheduler(0) & ~SCHED_RESET_ON_FORK) == SCHED_OTHER,
                          .background = (flags & MESH_ENGINE_BACKGROUND) && mesh_engine_may_idle()};
    for (size_t i = 0; i < npairs;) {
        size_t len;
        enum run_outcome run = engine_run(pairs, i, npairs, &len, &rt, holds);
        for (size_t end = i + len; i < end; i++) {
            rt.last = i + 1 == npairs;
            int r = run == RUN_MESHED ? MESH_PAIR_MESHED : engine_pair(pairs[2 * i], pairs[2 * i + 1], &rt, holds);
            if (reasons)
                reasons[i] = r;
            meshed += r == MESH_PAIR_MESHED;
        }
    }
    rt_end(&rt);
    if (npairs && mesh_ready())
        publish_barrier_kind();
    return meshed;
}

MESH_EXPORT size_t mesh_mesh_pairs(const uint32_t *pairs, size_t npairs, int *reasons)
{
    return mesh_engine_mesh(pairs, npairs, reasons, NULL, 0);
}

MESH_EXPORT const char *mesh_mesh_refusal(void) { return mesh_barrier_refusal(); }

MESH_EXPORT int mesh_mesh_barrier_kind(void) { return mesh_barrier_kind(); }

MESH_EXPORT uint32_t mesh_span_of(const void *p)
{
    if (!mesh_ready() || !mesh_in_arena(p))
        return 0;
    uint32_t id = mesh_pagemap_get(mesh_page_of(p));
    return (id & MESH_PAGE_FREE_TAG) ? 0 : id;
}
