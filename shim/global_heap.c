/* global_heap.c: detached spans per size class, span lifecycle, large objects. */
#include "global_heap.h"

#include <stdatomic.h>
#include <string.h>

#include "alias_map.h"
#include "arena.h"
#include "barrier.h"
#include "bitmap.h"
#include "lock.h"
#include "report.h"
#include "size_class.h"

/* How many partial spans refill compares to pick the fullest. */
#define REFILL_CANDIDATES 8
/* Pages reserved at a time for one class's new spans (see class_run_take). */
#define CLASS_RUN_PAGES 16u

/*
 * Partial spans are ordered so that refill finds a worthwhile one among the first few:
 * spans with at least a quarter of their slots free go to the head, denser ones to the
 * tail, where they keep collecting frees (and, with meshd, wait to be meshed).
 *
 * Each class is split in CLASS_SHARDS shards, each with its own lock, partial list, page
 * run and kept empty spans.  A detached span belongs to the shard of the thread that
 * released it (its record keeps that heap id as `owner`, shard_of), and a refill looks in
 * its own thread's shard first: threads that each free their own blocks then neither share
 * a lock nor read each other's spans (two threads sharing one list read each other's
 * records at every refill and took each other's half-freed spans, whose frees then became
 * remote frees).  A refill that finds nothing in its shard takes from the others before it
 * makes a span.  The meshing engine, fork and the heap walk take every shard's lock.
 */
#define CLASS_SHARDS 4u

struct class_heap {
    mesh_lock_t lock;
    uint32_t partial_head, partial_tail; /* detached spans with free slots */
    uint32_t partial_count;
    uint32_t run_page, run_left; /* pages reserved for this class's next spans */
    uint32_t empty_head;             /* emptied spans kept for reuse, a stack (list_next) */
    uint32_t empty_count, empty_low; /* and the fewest there were since the last tick */
    uint32_t empty_pages, empty_quota; /* their pages, and the share of empty_total held */
} __attribute__((aligned(64)));

static struct class_heap classes[MESH_CLASS_COUNT + 1][CLASS_SHARDS];

static unsigned shard_of(uint32_t owner) { return owner ? (owner - 1) % CLASS_SHARDS : 0; }

/* The shard span id's record names (its owner's): stable while that shard's lock, or every
 * lock of the class, is held (lock_shard_of). */
static struct class_heap *shard_of_span(unsigned cls, uint32_t id)
{
    return &classes[cls][shard_of(__atomic_load_n(&mesh_record(id)->owner, __ATOMIC_RELAXED))];
}

/* The shard a span's record names, its lock taken.  A span's owner changes only when it is
 * attached, under the lock of the shard it was listed in, so once the owner read under a
 * lock names that lock's shard it stays so while the lock is held. */
static struct class_heap *lock_shard_of(unsigned cls, uint32_t id)
{
    for (;;) {
        struct class_heap *ch = shard_of_span(cls, id);
        mesh_lock(&ch->lock);
        if (ch == shard_of_span(cls, id))
            return ch;
        mesh_unlock(&ch->lock);
    }
}

/*
 * Emptied spans kept for reuse.  A span whose last object is freed keeps its record, its
 * pages and its page-map entries on its class's empty list, and the next refill of the
 * class takes it back under the class lock it holds anyway.  Destroying it and making a new
 * one cost the arena lock, the record table's lock, the page map and the heap counters:
 * lines that every thread writes, which two threads each freeing only their own blocks
 * (bench/churn.c, a batch of spans emptied and refilled every round) passed back and forth
 * several times per span.  A kept span is ATTACHED to no thread (owner 0) with an empty
 * bitmap: meshd never meshes it, a free into it is a double free (its bit is clear and its
 * record is not FREE), and mesh_global_usage does not count it as a span.
 * Bounded in space and time:
 *   - at most EMPTY_MAX_PAGES pages in all classes; past it a span is destroyed as before;
 *   - every EMPTY_TICK_MS (a refill or the control thread looks at the clock), each class
 *     destroys as many of its oldest as it kept all along since the last tick (the list's
 *     low-water mark, as jemalloc's thread caches do): a span unused for a whole tick goes
 *     back to the arena, where its pages age like any freed page (arena.c);
 *   - malloc_trim, memory pressure and meshd's rounds destroy them all (mesh_global_trim).
 */
#define EMPTY_MAX_PAGES 8192u /* 32 MiB */
#define EMPTY_TICK_MS   1000u
#define EMPTY_BATCH     32u
#define EMPTY_QUOTA     32u /* pages a class takes of empty_total at a time */

/* Pages all classes may keep, EMPTY_MAX_PAGES at most: each class holds a share (its
 * quota, taken and given back EMPTY_QUOTA pages at a time) that covers what it keeps, so
 * this line, which every thread's keeps would otherwise write, moves once per 32 pages. */
static struct {
    _Atomic uint32_t pages;
    char pad[60];
} empty_total __attribute__((aligned(64)));
/* When the last tick ran (read on refills: on a line nobody writes more than once a tick). */
static struct {
    _Atomic uint32_t tick_ms;
    _Atomic int ticking;
    char pad[56];
} empty_clock __attribute__((aligned(64)));

/* ---- partial lists (class lock held) ---------------------------------------------------- */

/* A shard's list heads are written under its lock, and read without it by refills of other
 * shards looking for a non-empty one (a hint; they check again under the lock). */
static void head_set(uint32_t *head, uint32_t id) { __atomic_store_n(head, id, __ATOMIC_RELAXED); }

static int worth_attaching(unsigned free, unsigned capacity) { return free * 4 >= capacity; }

static void partial_push(struct class_heap *ch, uint32_t id, int at_head)
{
    struct mesh_span_record *r = mesh_record(id);
    if (!ch->partial_head) {
        r->list_prev = r->list_next = 0;
        ch->partial_tail = id;
        head_set(&ch->partial_head, id);
    } else if (at_head) {
        r->list_prev = 0;
        r->list_next = ch->partial_head;
        mesh_record(ch->partial_head)->list_prev = id;
        head_set(&ch->partial_head, id);
    } else {
        r->list_next = 0;
        r->list_prev = ch->partial_tail;
        mesh_record(ch->partial_tail)->list_next = id;
        ch->partial_tail = id;
    }
    ch->partial_count++;
}

static void partial_remove(struct class_heap *ch, uint32_t id)
{
    struct mesh_span_record *r = mesh_record(id);
    if (r->list_prev)
        mesh_record(r->list_prev)->list_next = r->list_next;
    else
        head_set(&ch->partial_head, r->list_next);
    if (r->list_next)
        mesh_record(r->list_next)->list_prev = r->list_prev;
    else
        ch->partial_tail = r->list_prev;
    ch->partial_count--;
}

static unsigned free_slots(struct mesh_span_record *r)
{
    mesh_bitmap b = mesh_bitmap_load(r->bitmap);
    return r->capacity - mesh_bitmap_popcount(&b);
}

static uint8_t *span_base(const struct mesh_span_record *r) { return mesh_page_addr(r->virt_page[0]); }

/*
 * A destroyed span's pages go back to the arena after the class lock is dropped: the arena
 * lock is the process's busiest, and waiting for it with a class lock held made every
 * thread freeing into that class wait too (and sleep on a futex).  A meshed span's other
 * virtual spans also go back to their own (punched, so zero) file pages before their
 * addresses can be handed out again: an mremap and userfaultfd ioctls each.  Under the
 * lock the span becomes unreachable (page map and page info cleared, records freed) while
 * its pages stay out of the arena, so nothing else can map, hand out or look up those
 * addresses until span_finish gives them back.
 */
struct dying_span {
    uint32_t phys, pages, count;
    uint32_t alias[MESH_MAX_VIRTUAL_SPANS];
};

static void dying_release(struct dying_span *d)
{
    for (uint32_t i = 0; i < d->count; i++) {
        uint32_t alias = d->alias[i];
        if (mesh_alias_map(alias, alias, d->pages) == 0) {
            mesh_barrier_remapped(mesh_page_addr(alias), (size_t)d->pages << MESH_PAGE_SHIFT);
            mesh_pages_free(alias, d->pages);
        } else {
            /* The kernel refused the mapping (vm.max_map_count reached by the program's own
             * mappings, or no memory).  The span is empty, so nothing points here: retire
             * the addresses for good instead of failing the free.  They stay mapped onto
             * pages that go back to the arena, so a write through a dangling pointer would
             * land in reused memory, as it would without meshing. */
            MESH_COUNTER_ADD(retired_pages, d->pages);
        }
    }
    mesh_pages_free(d->phys, d->pages);
    d->pages = 0;
}

/* After the class lock is dropped.  A shared op (the table's counters change), so fork and
 * registration wait for it; never entered with a class lock held, for fork's prepare takes
 * the class locks after waiting for shared ops. */
static void span_finish(struct dying_span *d)
{
    if (!d->pages)
        return;
    struct mesh_thread_heap *h = mesh_thread_heap_for_free();
    mesh_shared_op_begin(h);
    dying_release(d);
    mesh_shared_op_end(h);
}

/* Span id's pages go back to the arena and its record is recycled.  Class lock held (or the
 * span is unreachable by anyone else).  Its pages are left in *later for span_finish once
 * the lock is dropped; without `later` (the engine's calls) they go back at once. */
static void span_destroy(uint32_t id, struct dying_span *later)
{
    struct mesh_span_record *r = mesh_record(id);
    struct dying_span now = {.count = 0};
    struct dying_span *d = later ? later : &now;
    d->phys = r->phys_page;
    d->pages = r->span_pages;
    d->count = 0;
    for (unsigned i = 1; i < r->virt_count; i++) {
        uint32_t alias = r->virt_page[i];
        mesh_pagemap_set(alias, d->pages, 0);
        mesh_pageinfo_set(alias, d->pages, 0);
        mesh_record_free(r->absorbed[i - 1]);
        d->alias[d->count++] = alias;
    }
    mesh_pagemap_set(d->phys, d->pages, 0);
    mesh_pageinfo_set(d->phys, d->pages, 0);
    mesh_record_free(id);
    MESH_COUNTER_ADD(heap_pages, -(int64_t)d->pages);
    if (d == &now)
        dying_release(d);
}

/* ---- emptied spans kept for reuse (class lock held) --------------------------------------- */

/* A stack, not a list with two ends: a push or pop writes no other span's record (the
 * neighbour may be another thread's, and its line would go back and forth). */
static uint32_t empty_pop(struct class_heap *ch)
{
    uint32_t id = ch->empty_head;
    struct mesh_span_record *r = mesh_record(id);
    head_set(&ch->empty_head, r->list_next);
    ch->empty_count--;
    if (ch->empty_count < ch->empty_low)
        ch->empty_low = ch->empty_count;
    __atomic_store_n(&ch->empty_pages, ch->empty_pages - r->span_pages, __ATOMIC_RELAXED);
    /* Give back the share not needed: all of it once nothing is kept, else beyond one
     * spare quantum (so that a class taking and keeping around a boundary does not move
     * the line every time). */
    uint32_t spare = ch->empty_quota - ch->empty_pages;
    uint32_t give = ch->empty_pages == 0 ? spare : spare >= 2 * EMPTY_QUOTA ? spare - EMPTY_QUOTA : 0;
    if (give) {
        ch->empty_quota -= give;
        atomic_fetch_sub_explicit(&empty_total.pages, give, memory_order_relaxed);
    }
    return id;
}

/* Keeps emptied span id (on no list, its bitmap empty) for reuse; 0 if it may not be kept:
 * a meshed span (its aliases return to identity mappings only when it dies), one the kernel
 * held (the flag stays until the record is reused), or no room left. */
static int empty_keep(struct class_heap *ch, uint32_t id)
{
    struct mesh_span_record *r = mesh_record(id);
    uint32_t pages = r->span_pages;
    if (r->virt_count != 1 || r->flags != 0 ||
        atomic_load_explicit((_Atomic uint32_t *)&r->kernel_io, memory_order_relaxed) != 0)
        return 0;
    if (ch->empty_pages + pages > ch->empty_quota) {
        uint32_t take = pages > EMPTY_QUOTA ? pages : EMPTY_QUOTA;
        if (atomic_fetch_add_explicit(&empty_total.pages, take, memory_order_relaxed) + take > EMPTY_MAX_PAGES) {
            atomic_fetch_sub_explicit(&empty_total.pages, take, memory_order_relaxed);
            return 0;
        }
        ch->empty_quota += take;
    }
    __atomic_store_n(&ch->empty_pages, ch->empty_pages + pages, __ATOMIC_RELAXED);
    __atomic_store_n(&r->owner, 0, __ATOMIC_RELAXED); /* read unlocked: shard_of_span */
    r->list_next = ch->empty_head;
    head_set(&ch->empty_head, id);
    ch->empty_count++;
    mesh_record_set_state(r, MESH_SPAN_ATTACHED);
    return 1;
}

/* A kept span: ATTACHED to no thread, nothing allocated (see "Emptied spans kept"). */
static int empty_kept(const struct mesh_span_record *r, unsigned state)
{
    if (state != MESH_SPAN_ATTACHED || r->owner != 0)
        return 0;
    mesh_bitmap b = mesh_bitmap_load((uint64_t *)r->bitmap);
    return mesh_bitmap_empty(&b);
}

/*
 * Puts detached span id where its occupancy says, with the class lock held:
 *   empty -> kept for reuse (with `later`) or destroyed;  full -> DETACHED_FULL, unlisted;
 *   else DETACHED on the partial list.
 * A free racing with this may clear a bit after we looked; it then reads the state we
 * stored and comes back under the lock.  Storing the state and re-reading the bitmap until
 * they agree closes the window where the free would see a state we are about to change.
 */
static void span_place(struct class_heap *ch, uint32_t id, int listed, struct dying_span *later)
{
    struct mesh_span_record *r = mesh_record(id);
    for (;;) {
        mesh_bitmap before = mesh_bitmap_load(r->bitmap);
        unsigned live = mesh_bitmap_popcount(&before);
        if (live == 0) {
            if (listed)
                partial_remove(ch, id);
            if (!later || !empty_keep(ch, id))
                span_destroy(id, later);
            return;
        }
        unsigned state = live == r->capacity ? MESH_SPAN_DETACHED_FULL : MESH_SPAN_DETACHED;
        if (state == MESH_SPAN_DETACHED && !listed) {
            partial_push(ch, id, worth_attaching(r->capacity - live, r->capacity));
            listed = 1;
        } else if (state == MESH_SPAN_DETACHED_FULL && listed) {
            partial_remove(ch, id);
            listed = 0;
        }
        mesh_record_set_state(r, state);
        mesh_bitmap after = mesh_bitmap_load(r->bitmap);
        if (memcmp(&before, &after, sizeof before) == 0)
            return;
    }
}

/* ---- for the meshing engine ----------------------------------------------------------- */

void mesh_class_lock(unsigned cls)
{
    for (unsigned s = 0; s < CLASS_SHARDS; s++)
        mesh_lock(&classes[cls][s].lock);
}

void mesh_class_unlock(unsigned cls)
{
    for (unsigned s = CLASS_SHARDS; s-- > 0;)
        mesh_unlock(&classes[cls][s].lock);
}

void mesh_class_unlist(unsigned cls, uint32_t id)
{
    if (mesh_record_state(mesh_record(id)) == MESH_SPAN_DETACHED)
        partial_remove(shard_of_span(cls, id), id);
}

/* The engine holds the class lock across its own system calls: a span it empties is
 * destroyed at once. */
void mesh_class_place(unsigned cls, uint32_t id) { span_place(shard_of_span(cls, id), id, 0, NULL); }

/* ---- attach / detach --------------------------------------------------------------------- */

/* Marks every free slot of r allocated (owner only); returns them in claimed. */
static unsigned claim_free_slots(struct mesh_span_record *r, uint64_t claimed[MESH_BITMAP_WORDS])
{
    unsigned n = 0;
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++) {
        uint64_t free_bits = ~mesh_bitmap_load_word(r->bitmap, w) & mesh_bitmap_valid_word(r->capacity, w);
        /* Only the owner sets bits, so bits free now stay free until we set them. */
        if (free_bits)
            atomic_fetch_or(mesh_bitmap_word(r->bitmap, w * 64), free_bits);
        claimed[w] = free_bits;
        n += (unsigned)__builtin_popcountll(free_bits);
    }
    if (n)
        mesh_record_changed(mesh_record_id(r));
    return n;
}

/* Among the first few partial spans, the fullest one that is still worth attaching (a
 * quarter free): dense spans fill up, sparse ones are left for their objects to die (and,
 * with meshd, to be meshed), and a refill is not spent on a span with one free slot.
 * Failing that, a kept empty span (0 here), else the one with the most free slots. */
static uint32_t pick_partial(struct class_heap *ch)
{
    uint32_t best = 0, roomiest = 0;
    unsigned best_free = ~0u, roomiest_free = 0;
    uint32_t id = ch->partial_head;
    for (int i = 0; id && i < REFILL_CANDIDATES; i++) {
        struct mesh_span_record *r = mesh_record(id);
        unsigned f = free_slots(r);
        if (worth_attaching(f, r->capacity) && f < best_free) {
            best = id;
            best_free = f;
        }
        if (f > roomiest_free) {
            roomiest = id;
            roomiest_free = f;
        }
        id = r->list_next;
    }
    return best ? best : ch->empty_head ? 0 : roomiest;
}

/*
 * Pages for a new span of class cls.  A class's spans are carved in address order from
 * runs of about CLASS_RUN_PAGES pages reserved for it, so that they are neighbours: meshd
 * pairs spans in address order, and neighbouring aliases of neighbouring physical spans
 * are one kernel mapping (alias_map.h), where interleaved classes cost two per mesh.
 * Invariant: run_left is a multiple of span_pages, so a run is always used up exactly.
 * The reserved pages are untouched until they become spans (unless the arena handed out
 * dirty pages), and nothing points into them.  Class lock held (the arena lock nests in it).
 */
static uint32_t class_run_take(unsigned cls, struct class_heap *ch)
{
    const struct mesh_class *c = &mesh_classes[cls];
    int zeroed;
    if (ch->run_left == 0) {
        uint32_t spans = CLASS_RUN_PAGES / c->span_pages;
        uint32_t want = (spans > 1 ? spans : 1) * c->span_pages;
        uint32_t page = want > c->span_pages ? mesh_pages_alloc(want, 1, &zeroed) : MESH_NO_PAGE;
        if (page == MESH_NO_PAGE) /* no run to spare (a nearly full arena): just the span */
            return mesh_pages_alloc(c->span_pages, 1, &zeroed);
        ch->run_page = page;
        ch->run_left = want;
    }
    uint32_t page = ch->run_page;
    ch->run_page += c->span_pages;
    ch->run_left -= c->span_pages;
    return page;
}

/* Makes a span of class cls on the pages class_run_take gave; 0 if no record is left. */
static uint32_t span_create(unsigned cls, uint32_t page, uint32_t owner,
                            uint64_t claimed[MESH_BITMAP_WORDS])
{
    const struct mesh_class *c = &mesh_classes[cls];
    uint32_t id = mesh_record_alloc();
    if (!id) {
        mesh_pages_free(page, c->span_pages);
        return 0;
    }
    struct mesh_span_record *r = mesh_record(id);
    r->phys_page = page;
    r->virt_page[0] = page;
    r->virt_count = 1;
    r->span_pages = c->span_pages;
    r->capacity = c->capacity;
    r->size_class = (uint8_t)cls;
    r->owner = owner;
    mesh_origin_clear(id);
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++)
        r->bitmap[w] = claimed[w] = mesh_bitmap_valid_word(c->capacity, w);
    mesh_record_set_state(r, MESH_SPAN_ATTACHED);
    mesh_pageinfo_set(page, c->span_pages, cls);
    mesh_pagemap_set(page, c->span_pages, id);
    MESH_COUNTER_ADD(spans_created, 1);
    MESH_COUNTER_ADD(heap_pages, c->span_pages);
    return id;
}

/* A partial or kept span of shard ch attached to owner, its free slots claimed; 0 if the
 * shard has none.  Shard lock held. */
static uint32_t take_from_shard(struct class_heap *ch, uint32_t owner, uint64_t claimed[MESH_BITMAP_WORDS])
{
    uint32_t id = pick_partial(ch);
    if (id) {
        struct mesh_span_record *r = mesh_record(id);
        partial_remove(ch, id);
        __atomic_store_n(&r->owner, owner, __ATOMIC_RELAXED);
        mesh_record_set_state(r, MESH_SPAN_ATTACHED);
        claim_free_slots(r, claimed);
    } else if (ch->empty_head) {
        /* Already ATTACHED, its pages and page-map entries in place: no arena, no record. */
        id = empty_pop(ch);
        struct mesh_span_record *r = mesh_record(id);
        __atomic_store_n(&r->owner, owner, __ATOMIC_RELAXED);
        claim_free_slots(r, claimed);
    }
    return id;
}

uint32_t mesh_global_acquire_span(unsigned cls, uint32_t owner, uint64_t claimed[MESH_BITMAP_WORDS])
{
    unsigned own = shard_of(owner);
    struct class_heap *ch = &classes[cls][own];
    uint32_t page = MESH_NO_PAGE;
    mesh_arena_poll(); /* a refill, no lock held: the place to punch aged pages */
    mesh_global_empty_poll(); /* and to let kept empty spans go */
    mesh_lock(&ch->lock);
    uint32_t id = take_from_shard(ch, owner, claimed);
    mesh_unlock(&ch->lock);
    /* Nothing in our shard: what the other threads' shards have, before a new span. */
    for (unsigned k = 1; !id && k < CLASS_SHARDS; k++) {
        struct class_heap *other = &classes[cls][(own + k) % CLASS_SHARDS];
        if (!__atomic_load_n(&other->partial_head, __ATOMIC_RELAXED) &&
            !__atomic_load_n(&other->empty_head, __ATOMIC_RELAXED))
            continue; /* a hint only: an empty shard is not worth its lock */
        mesh_lock(&other->lock);
        id = take_from_shard(other, owner, claimed);
        mesh_unlock(&other->lock);
    }
    if (!id) {
        mesh_lock(&ch->lock);
        page = class_run_take(cls, ch);
        mesh_unlock(&ch->lock);
    }
    /* The record is set up outside the class lock: a shared op (span_table.h). */
    struct mesh_thread_heap *h = mesh_thread_heap_for_free();
    mesh_shared_op_begin(h);
    if (page != MESH_NO_PAGE)
        id = span_create(cls, page, owner, claimed);
    if (id) {
        /* Allocation volume for meshd (a heap whose live size stays flat may still churn);
         * counted per refill, never per object. */
        mesh_bitmap got = mesh_bitmap_load(claimed);
        MESH_COUNTER_ADD(refill_bytes, (uint64_t)mesh_bitmap_popcount(&got) * mesh_classes[cls].size);
    }
    mesh_shared_op_end(h);
    return id;
}

void mesh_global_release_spans(unsigned cls, uint32_t n, const uint32_t ids[],
                               const uint64_t unclaim[][MESH_BITMAP_WORDS])
{
    struct dying_span dying[MESH_RELEASE_MAX];
    uint32_t ndying = 0;
    MESH_ASSERT(n <= MESH_RELEASE_MAX);
    struct class_heap *ch = NULL;
    for (uint32_t i = 0; i < n; i++) {
        struct mesh_span_record *r = mesh_record(ids[i]);
        MESH_ASSERT(r->size_class == cls);
        /* The spans stay in their owner's shard (r->owner is kept: shard_of); spans of one
         * heap all share one, so this locks once. */
        struct class_heap *want = shard_of_span(cls, ids[i]);
        if (want != ch) {
            if (ch)
                mesh_unlock(&ch->lock);
            ch = want;
            mesh_lock(&ch->lock);
        }
        for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++)
            if (unclaim[i][w])
                atomic_fetch_and(mesh_bitmap_word(r->bitmap, w * 64), ~unclaim[i][w]);
        dying[ndying].pages = 0;
        span_place(ch, ids[i], 0, &dying[ndying]);
        ndying += dying[ndying].pages != 0;
    }
    if (ch)
        mesh_unlock(&ch->lock);
    for (uint32_t i = 0; i < ndying; i++)
        span_finish(&dying[i]);
    mesh_arena_poll(); /* spans may have gone back to the arena */
}

void mesh_global_release_span(uint32_t id, const uint64_t unclaim[MESH_BITMAP_WORDS])
{
    mesh_global_release_spans(mesh_record(id)->size_class, 1, &id,
                              (const uint64_t(*)[MESH_BITMAP_WORDS])unclaim);
}

unsigned mesh_global_reclaim(struct mesh_thread_heap *h, uint32_t id, uint64_t claimed[MESH_BITMAP_WORDS])
{
    struct mesh_span_record *r = mesh_record(id);
    mesh_shared_op_begin(h);
    unsigned n = claim_free_slots(r, claimed);
    mesh_shared_op_end(h);
    return n;
}

/* ---- letting kept empty spans go ---------------------------------------------------------- */

/* Destroys shard ch's kept spans: all of them, or as many as were never taken since the
 * last tick (the low-water mark, whichever they are), which starts a new period.  The pages go
 * back to the arena once the lock is dropped.  No lock held. */
static void empty_release(struct class_heap *ch, int all)
{
    uint32_t want = 0;
    int first = 1;
    do {
        struct dying_span dying[EMPTY_BATCH];
        uint32_t n = 0;
        mesh_lock(&ch->lock);
        if (first)
            want = all ? ch->empty_count : ch->empty_low;
        first = 0;
        while (n < EMPTY_BATCH && want && ch->empty_head) {
            dying[n].pages = 0;
            span_destroy(empty_pop(ch), &dying[n]);
            n++;
            want--;
        }
        if (!ch->empty_head)
            want = 0;
        if (!want)
            ch->empty_low = ch->empty_count;
        mesh_unlock(&ch->lock);
        for (uint32_t i = 0; i < n; i++)
            span_finish(&dying[i]);
    } while (want);
}

void mesh_global_empty_tick(void)
{
    for (unsigned cls = 1; cls <= MESH_CLASS_COUNT; cls++)
        for (unsigned s = 0; s < CLASS_SHARDS; s++)
            empty_release(&classes[cls][s], 0);
}

void mesh_global_empty_poll(void)
{
    uint32_t now = mesh_arena_clock_ms();
    if (now - atomic_load_explicit(&empty_clock.tick_ms, memory_order_relaxed) < EMPTY_TICK_MS)
        return;
    int idle = 0; /* one tick at a time; the others go on allocating */
    if (!atomic_compare_exchange_strong(&empty_clock.ticking, &idle, 1))
        return;
    atomic_store_explicit(&empty_clock.tick_ms, now, memory_order_relaxed);
    mesh_global_empty_tick();
    atomic_store(&empty_clock.ticking, 0);
}

uint64_t mesh_global_empty_pages(void)
{
    uint64_t pages = 0; /* without the locks: a snapshot, exact while nothing changes */
    for (unsigned cls = 1; cls <= MESH_CLASS_COUNT; cls++)
        for (unsigned s = 0; s < CLASS_SHARDS; s++)
            pages += __atomic_load_n(&classes[cls][s].empty_pages, __ATOMIC_RELAXED);
    return pages;
}

size_t mesh_global_trim(uint64_t budget_ns)
{
    for (unsigned cls = 1; cls <= MESH_CLASS_COUNT; cls++)
        for (unsigned s = 0; s < CLASS_SHARDS; s++)
            empty_release(&classes[cls][s], 1);
    return mesh_arena_trim_for(budget_ns);
}

/* ---- frees from non-owners --------------------------------------------------------------- */

static void free_small(struct mesh_thread_heap *h, uint32_t id, unsigned slot, const void *p,
                       const char *call, int checked);

/* p's bit was not set in span id when a non-owner cleared it: the span was meshed into
 * another since the caller looked it up (its bits moved there), or p is a double free. */
static void free_missed(struct mesh_thread_heap *h, uint32_t id, unsigned cls, const void *p,
                        const char *call)
{
    uint32_t now_id = mesh_span_after_mesh(id, p);
    if (!now_id)
        mesh_heap_error(call, "double free", p);
    uint32_t off = mesh_span_offset(mesh_record(now_id), p);
    free_small(h, now_id, mesh_slot_of_offset(off, mesh_classes[cls].recip), p, call, 1);
}

/* Frees made detached span id (of `generation`, read before they cleared their bits) full
 * -> partial or partial -> empty: re-checked under the lock, for the span may have been
 * attached, or freed and its record reused, meanwhile. */
static void place_locked(struct class_heap *ch, uint32_t id, uint32_t generation,
                         struct dying_span *dying)
{
    struct mesh_span_record *r = mesh_record(id);
    unsigned now = mesh_record_state(r);
    if (atomic_load((_Atomic uint32_t *)&r->generation) == generation &&
        (now == MESH_SPAN_DETACHED || now == MESH_SPAN_DETACHED_FULL))
        span_place(ch, id, now == MESH_SPAN_DETACHED, dying);
}

static void place_after_free(unsigned cls, uint32_t id, uint32_t generation)
{
    struct dying_span dying = {.pages = 0};
    struct class_heap *ch = lock_shard_of(cls, id);
    place_locked(ch, id, generation, &dying);
    mesh_unlock(&ch->lock);
    span_finish(&dying);
}

/* `checked`: p was already found to be the object of its slot in the span it was freed
 * into first, which was then meshed away; its origin went along with the bit, or was reset
 * by us before the mesh copied it (slot_origin.h): either way it is not checked again. */
static void free_small(struct mesh_thread_heap *h, uint32_t id, unsigned slot, const void *p,
                       const char *call, int checked)
{
    struct mesh_span_record *r = mesh_record(id);
    uint32_t generation = atomic_load((_Atomic uint32_t *)&r->generation);
    unsigned cls = r->size_class;
    if (unlikely(__atomic_load_n(&r->virt_count, __ATOMIC_ACQUIRE) > 1)) {
        /* A meshed span: the slot's origin goes back to 0 before the slot is free. */
        int live = (mesh_bitmap_load_word(r->bitmap, slot >> 6) >> (slot & 63)) & 1;
        if (live && !checked && !mesh_slot_is(id, r, slot, p))
            mesh_heap_error(call, "double free", p);
        mesh_origin_reset(id, slot);
    }
    mesh_shared_op_begin(h);
    int was_set = mesh_bitmap_clear_atomic(r->bitmap, slot);
    if (was_set)
        mesh_record_changed(id);
    unsigned state = mesh_record_state(r);
    int empty = 0;
    if (was_set && state == MESH_SPAN_ATTACHED) /* the owner may take the slot back */
        mesh_thread_heap_note_remote(r->owner, cls, 1);
    if (state == MESH_SPAN_DETACHED) {
        mesh_bitmap b = mesh_bitmap_load(r->bitmap);
        empty = mesh_bitmap_empty(&b);
    }
    mesh_shared_op_end(h);
    if (!was_set) {
        free_missed(h, id, cls, p, call);
        return;
    }
    if (state != MESH_SPAN_DETACHED_FULL && !empty)
        return;
    place_after_free(cls, id, generation);
    mesh_arena_poll(); /* an emptied span went back to the arena */
}

void mesh_global_free_small(struct mesh_thread_heap *h, uint32_t id, unsigned slot, const void *p,
                            const char *call)
{
    free_small(h, id, slot, p, call, 0);
}

/*
 * The batch a thread's foreign-free cache sends back, grouped in runs of one span (objects
 * freed one after another mostly share a span): one shared op, and one atomic per bitmap
 * word per run instead of three atomics per object, and the span's transition (full ->
 * partial, empty) handled once per run.  The batch is not sorted by span: in a heap of
 * thousands of spans a batch's objects rarely share one unless they come in a run, and
 * the insertion sort cost more than the atomics it saved (bench/cxxalloc.cpp).  A span
 * met in two runs is simply handled twice.  The bitmap stays exact: every bit is
 * cleared before this returns, as by mesh_global_free_small one by one.  A meshed span's
 * objects (each needs its origin checked) go one by one.
 */
#define FREE_BATCH_MAX 64u
_Static_assert(FREE_BATCH_MAX <= 64, "group_clear returns a bit per entry");

struct batch_entry {
    uint32_t id;
    uint32_t slot;
    void *p;
};

/* Spans a batch's frees made full -> partial or partial -> empty, placed after the batch's
 * bits are cleared under one hold of the class lock per class (a foreign-free cache's batch
 * is all one class), instead of one lock round trip per span. */
struct pending_places {
    uint32_t n;
    struct {
        uint32_t id, generation, cls;
    } span[FREE_BATCH_MAX];
};

static void places_run(struct pending_places *pp)
{
    struct dying_span dying[FREE_BATCH_MAX];
    for (uint32_t i = 0; i < pp->n;) {
        unsigned cls = pp->span[i].cls;
        struct class_heap *ch = lock_shard_of(cls, pp->span[i].id);
        uint32_t ndying = 0, rest = i;
        for (uint32_t k = i; k < pp->n; k++) {
            /* Another class or shard: a later round (the first always goes in this one). */
            if (pp->span[k].cls != cls || (k > i && shard_of_span(cls, pp->span[k].id) != ch)) {
                pp->span[rest++] = pp->span[k];
                continue;
            }
            dying[ndying].pages = 0;
            place_locked(ch, pp->span[k].id, pp->span[k].generation, &dying[ndying]);
            ndying += dying[ndying].pages != 0;
        }
        mesh_unlock(&ch->lock);
        for (uint32_t k = 0; k < ndying; k++)
            span_finish(&dying[k]);
        pp->n = rest;
    }
}

/* Objects of a batch freed one by one once its shared op is over: a meshed span's (their
 * origins are checked) and those whose bit was found clear (their span was meshed away
 * meanwhile, or a double free): both may wait for the engine or take a lock. */
struct one_by_one {
    uint32_t n;
    struct {
        struct batch_entry e;
        uint32_t cls;
        int missed;
    } obj[FREE_BATCH_MAX];
};

/* Clears the bits of the n (<= FREE_BATCH_MAX) objects e of record r with one atomic per
 * bitmap word; returns the entries whose bit was clear already (bit k: e[k]), and says
 * whether any bit was cleared and whether a clear left its word zero.  A group is
 * mostly one object (a burst of frees over thousands of spans): that one takes a single
 * atomic and no word masks (two zeroed 512-byte arrays and a pass over 64 words were most
 * of this function's instructions in bench/churn.c). */
static uint64_t group_clear(struct mesh_span_record *r, const struct batch_entry *e, uint32_t n,
                            const char *call, int *cleared, int *word_emptied)
{
    if (n == 1) {
        uint64_t bit = 1ull << (e[0].slot & 63);
        uint64_t old = atomic_fetch_and(mesh_bitmap_word(r->bitmap, e[0].slot), ~bit);
        *cleared = (old & bit) != 0;
        *word_emptied = *cleared && (old & ~bit) == 0;
        return !*cleared;
    }
    uint64_t mask[MESH_BITMAP_WORDS] = {0}, missed_bits[MESH_BITMAP_WORDS] = {0};
    *cleared = *word_emptied = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint64_t bit = 1ull << (e[k].slot & 63);
        if (mask[e[k].slot >> 6] & bit) /* the same object twice in one batch */
            mesh_heap_error(call, "double free", e[k].p);
        mask[e[k].slot >> 6] |= bit;
    }
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++) {
        if (!mask[w])
            continue;
        uint64_t old = atomic_fetch_and(mesh_bitmap_word(r->bitmap, w * 64), ~mask[w]);
        missed_bits[w] = mask[w] & ~old;
        *cleared |= (mask[w] & old) != 0;
        *word_emptied |= (mask[w] & old) != 0 && (old & ~mask[w]) == 0;
    }
    uint64_t missed = 0;
    for (uint32_t k = 0; k < n; k++)
        missed |= ((missed_bits[e[k].slot >> 6] >> (e[k].slot & 63)) & 1) << k;
    return missed;
}

/* Clears the bits of n objects of span e[0].id; inside the batch's shared op. */
static void free_group(const struct batch_entry *e, uint32_t n, const char *call,
                       struct pending_places *pp, struct one_by_one *later)
{
    uint32_t id = e[0].id;
    struct mesh_span_record *r = mesh_record(id);
    unsigned cls = r->size_class;
    if (__atomic_load_n(&r->virt_count, __ATOMIC_ACQUIRE) > 1) {
        for (uint32_t k = 0; k < n; k++) {
            later->obj[later->n].e = e[k];
            later->obj[later->n].cls = cls;
            later->obj[later->n++].missed = 0;
        }
        return;
    }
    uint32_t generation = atomic_load((_Atomic uint32_t *)&r->generation);
    /* word_emptied: one of our clears left its word zero.  Only then can the span be
     * empty: the clear that empties it (the last in the words' order of changes) always
     * leaves its own word zero, and that thread then reads the whole bitmap. */
    int cleared, word_emptied, empty = 0;
    uint64_t missed = group_clear(r, e, n, call, &cleared, &word_emptied);
    if (cleared)
        mesh_record_changed(id);
    unsigned state = mesh_record_state(r);
    if (cleared && state == MESH_SPAN_ATTACHED) /* the owner may take the slots back */
        mesh_thread_heap_note_remote(__atomic_load_n(&r->owner, __ATOMIC_RELAXED), cls, 0);
    if (state == MESH_SPAN_DETACHED && word_emptied) {
        mesh_bitmap b = mesh_bitmap_load(r->bitmap);
        empty = mesh_bitmap_empty(&b);
    }
    for (uint32_t k = 0; missed && k < n; k++)
        if ((missed >> k) & 1) {
            later->obj[later->n].e = e[k];
            later->obj[later->n].cls = cls;
            later->obj[later->n++].missed = 1;
        }
    if (cleared && (state == MESH_SPAN_DETACHED_FULL || empty)) {
        pp->span[pp->n].id = id;
        pp->span[pp->n].generation = generation;
        pp->span[pp->n].cls = cls;
        pp->n++;
    }
}

/*
 * One shared op per chunk of up to FREE_BATCH_MAX objects, not one per span: a burst of
 * frees spread over many spans (a thread freeing what it allocated in spans it has already
 * released) paid two more atomics per span.  Nothing inside it takes a lock or waits: what
 * may (one-by-one frees, placements) runs after it ends, for sections do not nest and fork
 * takes the class locks only after every shared op is over.
 */
void mesh_global_free_batch(struct mesh_thread_heap *h, void *const *objs, uint32_t n, const char *call)
{
    struct batch_entry e[FREE_BATCH_MAX];
    struct pending_places pp;
    struct one_by_one later;
    int placed = 0;
    while (n) {
        uint32_t m = n < FREE_BATCH_MAX ? n : FREE_BATCH_MAX;
        pp.n = 0;
        later.n = 0;
        /* The slot from the page info, as free's lookup does (the same in every virtual
         * span of a meshed span): the record, a likely miss, is read once per run of one
         * span, not per object. */
        for (uint32_t i = 0; i < m; i++) {
            void *p = objs[i];
            uint32_t page = mesh_page_of(p);
            e[i] = (struct batch_entry){mesh_pagemap_get(page), mesh_pageinfo_slot(mesh_pageinfo_get(page), p),
                                        p};
        }
        mesh_shared_op_begin(h);
        for (uint32_t i = 0, j; i < m; i = j) {
            for (j = i + 1; j < m && e[j].id == e[i].id; j++)
                ;
            free_group(e + i, j - i, call, &pp, &later);
        }
        mesh_shared_op_end(h);
        for (uint32_t k = 0; k < later.n; k++) {
            const struct batch_entry *x = &later.obj[k].e;
            if (later.obj[k].missed)
                free_missed(h, x->id, later.obj[k].cls, x->p, call);
            else
                free_small(h, x->id, x->slot, x->p, call, 0);
        }
        placed |= pp.n != 0;
        places_run(&pp);
        objs += m;
        n -= m;
    }
    if (placed)
        mesh_arena_poll(); /* an emptied span went back to the arena */
}

uint32_t mesh_span_after_mesh(uint32_t id, const void *p)
{
    if (mesh_record_state(mesh_record(id)) != MESH_SPAN_FREE)
        return 0;
    uint32_t now;
    /* The engine tombstones the record, moves its bits, then rewrites the page map. */
    while ((now = mesh_pagemap_get(mesh_page_of(p))) == id)
        mesh_cpu_relax();
    return (now & MESH_PAGE_FREE_TAG) ? 0 : now;
}

/* ---- large objects ----------------------------------------------------------------------- */

static uint32_t pages_for(size_t size) { return (uint32_t)(mesh_align_up(size, MESH_PAGE_SIZE) >> MESH_PAGE_SHIFT); }

void *mesh_large_alloc(size_t size, size_t align, int zero)
{
    if (size > mesh_arena.bytes || align > mesh_arena.bytes / 2)
        return NULL;
    uint32_t pages = pages_for(size ? size : 1);
    uint32_t align_pages = align > MESH_PAGE_SIZE ? (uint32_t)(align >> MESH_PAGE_SHIFT) : 1;
    int zeroed;
    mesh_arena_poll();
    uint32_t page = mesh_pages_alloc(pages, align_pages, &zeroed);
    if (page == MESH_NO_PAGE)
        return NULL;
    /* The record is written without a lock: a shared op (span_table.h). */
    struct mesh_thread_heap *h = mesh_thread_heap_for_free();
    mesh_shared_op_begin(h);
    uint32_t id = mesh_record_alloc();
    if (!id) {
        mesh_shared_op_end(h);
        mesh_pages_free(page, pages);
        return NULL;
    }
    struct mesh_span_record *r = mesh_record(id);
    r->phys_page = page;
    r->virt_page[0] = page;
    r->virt_count = 1;
    r->span_pages = pages;
    r->capacity = 1;
    r->bitmap[0] = 1;
    mesh_record_set_state(r, MESH_SPAN_LARGE);
    mesh_pagemap_set(page, 1, id);
    MESH_COUNTER_ADD(large_allocs, 1);
    MESH_COUNTER_ADD(heap_pages, pages);
    mesh_shared_op_end(h);
    void *p = mesh_page_addr(page);
    if (zero && !zeroed)
        memset(p, 0, (size_t)pages << MESH_PAGE_SHIFT);
    return p;
}

void mesh_large_free(struct mesh_thread_heap *h, uint32_t id, const void *p, const char *call)
{
    struct mesh_span_record *r = mesh_record(id);
    if (span_base(r) != p)
        mesh_heap_error(call, "invalid pointer", p);
    uint8_t expected = MESH_SPAN_LARGE;
    mesh_shared_op_begin(h);
    int mine = atomic_compare_exchange_strong((_Atomic uint8_t *)&r->state, &expected,
                                              (uint8_t)MESH_SPAN_FREE);
    if (!mine) {
        mesh_shared_op_end(h);
        mesh_heap_error(call, "double free", p);
    }
    uint32_t page = r->phys_page, pages = r->span_pages;
    mesh_pagemap_set(page, 1, 0);
    mesh_record_free(id);
    MESH_COUNTER_ADD(heap_pages, -(int64_t)pages);
    mesh_shared_op_end(h);
    mesh_pages_free(page, pages);
    mesh_arena_poll();
}

int mesh_large_resize(struct mesh_thread_heap *h, uint32_t id, size_t size)
{
    struct mesh_span_record *r = mesh_record(id);
    uint32_t want = pages_for(size), have = r->span_pages;
    if (want == have)
        return 1;
    /* Shrink only when it frees a worthwhile tail; else keep the slack. */
    if (want < have && have - want < 4 && (have - want) * 8 < have)
        return 1;
    int ok = 1, zeroed;
    mesh_shared_op_begin(h); /* the record changes: not while a fork child copies it */
    if (want < have) {
        r->span_pages = want;
        mesh_record_changed(id);
        MESH_COUNTER_ADD(heap_pages, -(int64_t)(have - want));
        mesh_pages_free(r->phys_page + want, have - want);
    } else if ((ok = mesh_pages_extend(r->phys_page, have, want, &zeroed))) {
        r->span_pages = want;
        mesh_record_changed(id);
        MESH_COUNTER_ADD(heap_pages, want - have);
    }
    mesh_shared_op_end(h);
    mesh_arena_poll();
    return ok;
}

/* ---- fork, stats, validation ------------------------------------------------------------- */

void mesh_global_lock_all(void)
{
    for (unsigned c = 1; c <= MESH_CLASS_COUNT; c++)
        mesh_class_lock(c);
}

void mesh_global_unlock_all(void)
{
    for (unsigned c = MESH_CLASS_COUNT; c >= 1; c--)
        mesh_class_unlock(c);
}

void mesh_global_lock_reset_all(void)
{
    for (unsigned c = 1; c <= MESH_CLASS_COUNT; c++)
        for (unsigned s = 0; s < CLASS_SHARDS; s++)
            mesh_lock_reset(&classes[c][s].lock);
    atomic_store(&empty_clock.ticking, 0); /* a tick another thread ran does not go on here */
}

void mesh_global_usage(struct mesh_heap_usage *out)
{
    memset(out, 0, sizeof *out);
    uint32_t hwm = mesh_record_hwm();
    for (uint32_t id = 1; id < hwm; id++) {
        struct mesh_span_record *r = mesh_record(id);
        unsigned state = mesh_record_state(r);
        if (state == MESH_SPAN_FREE)
            continue;
        if (state == MESH_SPAN_LARGE) {
            out->large_objects++;
            out->large_bytes += mesh_large_usable(r);
            continue;
        }
        if (empty_kept(r, state)) /* free memory kept for reuse, not a span of the program's */
            continue;
        mesh_bitmap b = mesh_bitmap_load(r->bitmap);
        unsigned live = mesh_bitmap_popcount(&b);
        out->small_spans++;
        out->small_bytes_live += (uint64_t)live * mesh_classes[r->size_class].size;
    }
}

static int check_span(uint32_t id, struct mesh_span_record *r, unsigned state)
{
    int errors = 0;
    if (state == MESH_SPAN_LARGE) {
        errors += r->size_class != 0 || r->capacity != 1 || r->bitmap[0] != 1;
        errors += mesh_pagemap_get(r->phys_page) != id;
        for (uint32_t i = 1; i < r->span_pages; i++)
            errors += mesh_pagemap_get(r->phys_page + i) != 0;
        for (uint32_t i = 0; i < r->span_pages; i++)
            errors += mesh_pageinfo_get(r->phys_page + i) != 0;
        return errors;
    }
    const struct mesh_class *c = &mesh_classes[r->size_class];
    errors += r->size_class == 0 || r->size_class > MESH_CLASS_COUNT;
    if (errors)
        return errors;
    errors += r->capacity != c->capacity || r->span_pages != c->span_pages;
    errors += r->virt_count < 1 || r->virt_count > MESH_MAX_VIRTUAL_SPANS || r->virt_page[0] != r->phys_page;
    for (unsigned v = 0; v < r->virt_count && v < MESH_MAX_VIRTUAL_SPANS; v++)
        for (uint32_t i = 0; i < r->span_pages; i++) {
            errors += mesh_pagemap_get(r->virt_page[v] + i) != id;
            errors += mesh_pageinfo_get(r->virt_page[v] + i) != (r->size_class | i << 8);
        }
    mesh_bitmap b = mesh_bitmap_load(r->bitmap);
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++)
        errors += (b.w[w] & ~mesh_bitmap_valid_word(r->capacity, w)) != 0;
    unsigned live = mesh_bitmap_popcount(&b);
    if (state == MESH_SPAN_DETACHED)
        errors += live == 0 || live == r->capacity;
    if (state == MESH_SPAN_DETACHED_FULL)
        errors += live != r->capacity;
    return errors;
}

int mesh_global_check(void)
{
    int errors = mesh_arena_check();
    uint64_t quotas = 0;
    uint32_t hwm = mesh_record_hwm();
    for (uint32_t id = 1; id < hwm; id++) {
        struct mesh_span_record *r = mesh_record(id);
        unsigned state = mesh_record_state(r);
        if (state != MESH_SPAN_FREE)
            errors += check_span(id, r, state);
    }
    for (unsigned i = 0; i < MESH_CLASS_COUNT * CLASS_SHARDS; i++) {
        unsigned cls = 1 + i / CLASS_SHARDS, shard = i % CLASS_SHARDS;
        struct class_heap *ch = &classes[cls][shard];
        mesh_lock(&ch->lock);
        uint32_t n = 0, prev = 0;
        /* A shard's partial spans are the DETACHED spans of its threads (shard_of). */
        for (uint32_t id = ch->partial_head; id && n <= ch->partial_count; id = mesh_record(id)->list_next, n++) {
            struct mesh_span_record *r = mesh_record(id);
            errors += mesh_record_state(r) != MESH_SPAN_DETACHED || r->size_class != cls ||
                      r->list_prev != prev || shard_of(r->owner) != shard;
            prev = id;
        }
        errors += n != ch->partial_count;
        /* Kept empty spans: ATTACHED to no thread, never meshed, nothing allocated. */
        n = 0;
        uint32_t pages = 0;
        for (uint32_t id = ch->empty_head; id && n <= ch->empty_count; id = mesh_record(id)->list_next, n++) {
            struct mesh_span_record *r = mesh_record(id);
            errors += !empty_kept(r, mesh_record_state(r)) || r->size_class != cls || r->virt_count != 1;
            pages += r->span_pages;
        }
        errors += n != ch->empty_count || ch->empty_low > ch->empty_count || pages != ch->empty_pages ||
                  pages > ch->empty_quota;
        quotas += ch->empty_quota;
        mesh_unlock(&ch->lock);
    }
    return errors + (quotas != atomic_load(&empty_total.pages) || quotas > EMPTY_MAX_PAGES);
}
