/* thread_heap.c: thread heap lifecycle, refill, and the fork guard. */
#include "thread_heap.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "bitmap.h"
#include "control.h"
#include "global_heap.h"
#include "init.h"
#include "lock.h"
#include "report.h"
#include "span_table.h"

/* Heaps come from a pool of chunks mapped on demand; a heap is never unmapped, because a
 * late free from a dying thread's destructor may still look at it. */
#define HEAPS_PER_CHUNK 64
#define MAX_HEAP_CHUNKS 1024

__thread struct mesh_thread_heap *mesh_tl_heap __attribute__((tls_model("initial-exec")));
_Atomic int mesh_fork_pending;

static struct {
    mesh_lock_t lock;
    struct mesh_thread_heap *chunks[MAX_HEAP_CHUNKS];
    unsigned chunk_count, used_in_last;
    struct mesh_thread_heap *free_list;
    pthread_key_t exit_key;
    int key_ok;
} pool = {.lock = MESH_LOCK_INIT};

/* Frees from a thread without a heap (pool exhausted) share this one's fork guard. */
static struct mesh_thread_heap orphan_heap;

static void heap_reset(struct mesh_thread_heap *h, uint32_t id)
{
    memset(h->cache, 0, sizeof h->cache);
    atomic_store(&h->remote_frees, 0);
    atomic_store(&h->remote_single, 0);
    h->cache[0].span_id = MESH_NO_SPAN;
    h->id = id;
    uint64_t seed = (uint64_t)(uintptr_t)h ^ ((uint64_t)getpid() << 32);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    seed ^= (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull;
    h->rng = seed | 1;
    for (unsigned cls = 1; cls <= MESH_CLASS_COUNT; cls++) {
        uint32_t by_bytes = MESH_FOREIGN_BYTES / mesh_classes[cls].size;
        h->cache[cls].foreign_max = by_bytes < MESH_FOREIGN_MAX ? (by_bytes ? by_bytes : 1) : MESH_FOREIGN_MAX;
        uint32_t spans = MESH_OWNED_BYTES / ((uint32_t)mesh_classes[cls].span_pages << MESH_PAGE_SHIFT);
        h->cache[cls].owned_max = spans < 2 ? 2 : spans > MESH_OWNED_MAX ? MESH_OWNED_MAX : spans;
    }
}

#define CHUNK_BYTES (sizeof(struct mesh_thread_heap) * HEAPS_PER_CHUNK)

/* A heap from the pool (pool.lock held).  A new chunk is taken only from *spare, mapped by
 * the caller without the lock: NULL with *need_chunk set asks for one. */
static struct mesh_thread_heap *heap_from_pool(void **spare, int *need_chunk)
{
    struct mesh_thread_heap *h = pool.free_list;
    *need_chunk = 0;
    if (h) {
        pool.free_list = h->next_free;
        return h;
    }
    if (pool.chunk_count == 0 || pool.used_in_last == HEAPS_PER_CHUNK) {
        if (pool.chunk_count == MAX_HEAP_CHUNKS)
            return NULL;
        if (!*spare) {
            *need_chunk = 1;
            return NULL;
        }
        pool.chunks[pool.chunk_count++] = *spare;
        *spare = NULL;
        pool.used_in_last = 0;
    }
    h = &pool.chunks[pool.chunk_count - 1][pool.used_in_last++];
    h->id = (pool.chunk_count - 1) * HEAPS_PER_CHUNK + pool.used_in_last;
    return h;
}

static void thread_exit(void *arg)
{
    struct mesh_thread_heap *h = arg;
    mesh_control_note_thread_exit();
    mesh_tl_heap = NULL;
    mesh_thread_heap_flush(h);
    mesh_lock(&pool.lock);
    h->live = 0;
    h->next_free = pool.free_list;
    pool.free_list = h;
    mesh_unlock(&pool.lock);
}

void mesh_thread_heaps_init(void)
{
    pool.key_ok = pthread_key_create(&pool.exit_key, thread_exit) == 0;
    heap_reset(&orphan_heap, 0);
}

struct mesh_thread_heap *mesh_thread_heap_get(void)
{
    struct mesh_thread_heap *h = mesh_tl_heap;
    if (likely(h))
        return h;
    int saved = errno;
    void *spare = NULL;
    for (;;) {
        int need_chunk;
        mesh_lock(&pool.lock);
        h = heap_from_pool(&spare, &need_chunk);
        if (h) {
            heap_reset(h, h->id);
            h->live = 1;
        }
        mesh_unlock(&pool.lock);
        if (h || !need_chunk || spare)
            break;
        /* No lock across the system call: a chunk mapped in vain is unmapped below. */
        spare = mmap(NULL, CHUNK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (spare == MAP_FAILED) {
            spare = NULL;
            break;
        }
    }
    if (spare) /* another thread added a chunk meanwhile */
        munmap(spare, CHUNK_BYTES);
    if (h) {
        mesh_tl_heap = h;
        /* Registers the exit hook; a heap made while the thread is already exiting (a later
         * destructor mallocs) is registered again and flushed in the next round. */
        if (pool.key_ok)
            pthread_setspecific(pool.exit_key, h);
    }
    errno = saved;
    return h;
}

struct mesh_thread_heap *mesh_thread_heap_for_free(void)
{
    /* Never create a heap just to free: the thread may be past its exit hook (glibc frees
     * thread state after key destructors), and a heap made then would never be flushed. */
    struct mesh_thread_heap *h = mesh_tl_heap;
    return h ? h : &orphan_heap;
}

void mesh_thread_heap_note_remote(uint32_t owner, unsigned cls, int single)
{
    /* Chunks are never unmapped and their pointers are set before any id in them is handed
     * out, so an owner id read from a record always names a heap (maybe reused since: a
     * stray hint costs one scan). */
    if (owner == 0 || owner > (uint32_t)MAX_HEAP_CHUNKS * HEAPS_PER_CHUNK)
        return;
    struct mesh_thread_heap *chunk = __atomic_load_n(&pool.chunks[(owner - 1) / HEAPS_PER_CHUNK], __ATOMIC_ACQUIRE);
    if (!chunk)
        return;
    struct mesh_thread_heap *h = &chunk[(owner - 1) % HEAPS_PER_CHUNK];
    uint64_t bit = 1ull << cls;
    _Atomic uint64_t *hint = single ? &h->remote_single : &h->remote_frees;
    if (!(atomic_load_explicit(hint, memory_order_relaxed) & bit))
        atomic_fetch_or_explicit(hint, bit, memory_order_release);
}

static void attach(struct mesh_class_cache *c, unsigned cls, uint32_t id)
{
    const struct mesh_class *k = &mesh_classes[cls];
    c->span_id = id;
    c->base = mesh_page_addr(mesh_record(id)->virt_page[0]);
    c->size = k->size;
    c->recip = k->recip;
    /* A meshed span's frees must check which virtual span the object came from
     * (slot_origin.h): capacity 0 fails the free fast path's slot check and sends them to
     * free_slow, at no cost to other spans.  (Attached spans are never meshed, so this
     * holds while the span stays attached.) */
    c->capacity = mesh_record(id)->virt_count > 1 ? 0 : k->capacity;
}

/*
 * Another thread may fork at any instruction of this one, and the fork child then returns
 * this heap's spans and cached objects to its global heap (mesh_thread_heaps_after_fork_
 * child).  So anything given back to the global heap is first taken out of the heap
 * (and the fence keeps those stores first): a child that copies us half-way at worst
 * leaks it, never gives it back twice (a "double free" that killed fork children).
 */
static void release_attached(struct mesh_class_cache *c)
{
    uint32_t id = c->span_id;
    uint64_t present[MESH_BITMAP_WORDS];
    memcpy(present, c->vec.present, sizeof present);
    c->span_id = 0;
    mesh_shuffle_clear(&c->vec);
    atomic_thread_fence(memory_order_release);
    mesh_global_release_span(id, present);
}

static void owned_index_set(uint8_t index[MESH_OWNED_INDEX_SIZE], const struct mesh_class_cache *c)
{
    memset(index, 0, MESH_OWNED_INDEX_SIZE);
    for (uint32_t i = 0; i < c->owned_count && i < MESH_OWNED_MAX; i++)
        mesh_owned_index_add(index, c->owned_id[i], i);
}

static void owned_index_update(struct mesh_class_cache *c) { owned_index_set(c->owned_index, c); }

/* Owned span i leaves c's list (the rest keep their order); its local frees go to *out. */
static uint32_t owned_take(struct mesh_class_cache *c, uint32_t i, uint64_t out[MESH_BITMAP_WORDS])
{
    uint32_t id = c->owned_id[i];
    memcpy(out, c->owned_free[i], sizeof c->owned_free[i]);
    uint32_t rest = c->owned_count - i - 1;
    memmove(&c->owned_id[i], &c->owned_id[i + 1], rest * sizeof c->owned_id[0]);
    memmove(&c->owned_nfree[i], &c->owned_nfree[i + 1], rest * sizeof c->owned_nfree[0]);
    memmove(&c->owned_free[i], &c->owned_free[i + 1], rest * sizeof c->owned_free[0]);
    c->owned_count--;
    /* The newest (attach_owned's usual pick) leaves no other entry to renumber. */
    uint8_t *e = &c->owned_index[id & (MESH_OWNED_INDEX_SIZE - 1)];
    if (rest == 0 && *e != MESH_OWNED_INDEX_MANY)
        *e = 0;
    else
        owned_index_update(c);
    return id;
}

/* Releases the n oldest owned spans to the global heap under one hold of the class lock,
 * taken out of c first (see release_attached). */
static void owned_release_oldest(struct mesh_class_cache *c, unsigned cls, uint32_t n)
{
    uint32_t ids[MESH_OWNED_MAX];
    uint64_t unclaim[MESH_OWNED_MAX][MESH_BITMAP_WORDS];
    uint32_t rest = c->owned_count - n;
    memcpy(ids, c->owned_id, n * sizeof ids[0]);
    memcpy(unclaim, c->owned_free, n * sizeof unclaim[0]);
    memmove(&c->owned_id[0], &c->owned_id[n], rest * sizeof c->owned_id[0]);
    memmove(&c->owned_nfree[0], &c->owned_nfree[n], rest * sizeof c->owned_nfree[0]);
    memmove(&c->owned_free[0], &c->owned_free[n], rest * sizeof c->owned_free[0]);
    c->owned_count = rest;
    owned_index_update(c);
    atomic_thread_fence(memory_order_release);
    mesh_global_release_spans(cls, n, ids, (const uint64_t(*)[MESH_BITMAP_WORDS])unclaim);
}

/* The attached span, used up, joins the owned spans; a span ever meshed is released
 * instead (see struct mesh_class_cache).  Owned spans at owned_max make room by releasing
 * their older half at once: one class-lock hold for all of them, not one per retired span
 * (a thread filling span after span, as in a burst of allocations, paid one per span). */
static void retire_attached(struct mesh_class_cache *c, unsigned cls)
{
    if (c->capacity == 0) {
        release_attached(c);
        return;
    }
    if (c->owned_count == c->owned_max)
        owned_release_oldest(c, cls, (c->owned_max + 1) / 2);
    /* Out of the attached slot first: a fork child copying us half-way may leak the span,
     * never see it twice. */
    uint32_t id = c->span_id, i = c->owned_count;
    c->span_id = 0;
    atomic_signal_fence(memory_order_seq_cst);
    memcpy(c->owned_free[i], c->vec.present, sizeof c->owned_free[i]);
    c->owned_nfree[i] = (uint16_t)c->vec.count;
    mesh_shuffle_clear(&c->vec);
    c->owned_id[i] = id;
    atomic_signal_fence(memory_order_seq_cst);
    c->owned_count = i + 1;
    mesh_owned_index_add(c->owned_index, id, i); /* appended: no other entry moves */
}

/* Free slots of a span this thread holds: its local frees plus the bits others cleared. */
static unsigned span_free_count(uint32_t id, const uint64_t local[MESH_BITMAP_WORDS])
{
    struct mesh_span_record *r = mesh_record(id);
    mesh_bitmap b = mesh_bitmap_load(r->bitmap);
    unsigned n = r->capacity - mesh_bitmap_popcount(&b);
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++)
        n += (unsigned)__builtin_popcountll(local[w]);
    return n;
}

/* Re-attaches an owned span with at least 1/8 of its slots free: its local frees plus the
 * slots others freed (claimed back) fill the vector.  The newest with enough local frees
 * is taken without reading any record; failing that, the one with the most free slots
 * counting remote frees.  Returns 0 if no owned span is worth it. */
static int attach_owned(struct mesh_thread_heap *h, struct mesh_class_cache *c, unsigned cls)
{
    unsigned enough = (mesh_classes[cls].capacity + 7) / 8;
    uint32_t best = UINT32_MAX;
    for (uint32_t i = c->owned_count; i-- > 0;)
        if (c->owned_nfree[i] >= enough) {
            best = i;
            break;
        }
    if (best == UINT32_MAX) {
        /* Reading every owned span's record costs a cache miss each: only when another
         * thread freed into one of them since the last look. */
        uint64_t bit = 1ull << cls;
        if (!(atomic_load_explicit(&h->remote_frees, memory_order_relaxed) & bit) ||
            !(atomic_fetch_and_explicit(&h->remote_frees, ~bit, memory_order_acquire) & bit))
            return 0;
        unsigned best_free = 0;
        for (uint32_t i = 0; i < c->owned_count; i++) {
            unsigned f = span_free_count(c->owned_id[i], c->owned_free[i]);
            if (f > best_free) {
                best = i;
                best_free = f;
            }
        }
        if (best == UINT32_MAX || best_free < enough)
            return 0;
    }
    uint64_t local[MESH_BITMAP_WORDS], claimed[MESH_BITMAP_WORDS];
    uint32_t id = owned_take(c, best, local);
    atomic_signal_fence(memory_order_seq_cst);
    attach(c, cls, id);
    mesh_global_reclaim(h, id, claimed);
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++)
        claimed[w] |= local[w]; /* disjoint: a local free's published bit is still set */
    mesh_shuffle_fill(&c->vec, claimed, &h->rng);
    return 1;
}

void *mesh_thread_refill_alloc(struct mesh_thread_heap *h, unsigned cls)
{
    mesh_control_poll();
    struct mesh_class_cache *c = &h->cache[cls];
    uint64_t claimed[MESH_BITMAP_WORDS];
    if (c->span_id) {
        /* Slots other threads freed in our own span come back without any lock; but a
         * trickle is not worth the span: below 1/8 free, retire it and take another.  Its
         * record, a cache miss by now in a thread that went through a span's worth of
         * memory, is read only if another thread freed into one of our spans of the class
         * since we last looked (the hints; remote_frees' bit is consumed by attach_owned,
         * remote_single's here). */
        uint64_t bit = 1ull << cls;
        int single = (atomic_load_explicit(&h->remote_single, memory_order_relaxed) & bit) != 0;
        if (single)
            atomic_fetch_and_explicit(&h->remote_single, ~bit, memory_order_acquire);
        if (single || (atomic_load_explicit(&h->remote_frees, memory_order_relaxed) & bit)) {
            struct mesh_span_record *r = mesh_record(c->span_id);
            mesh_bitmap b = mesh_bitmap_load(r->bitmap);
            unsigned free_now = r->capacity - mesh_bitmap_popcount(&b);
            if (free_now && free_now * 8 >= r->capacity &&
                mesh_global_reclaim(h, c->span_id, claimed)) {
                mesh_shuffle_fill(&c->vec, claimed, &h->rng);
                goto pop;
            }
        }
        retire_attached(c, cls);
    }
    if (attach_owned(h, c, cls))
        goto pop;
    uint32_t id = mesh_global_acquire_span(cls, h->id, claimed);
    if (!id) {
        errno = ENOMEM;
        return NULL;
    }
    attach(c, cls, id);
    mesh_shuffle_fill(&c->vec, claimed, &h->rng);
pop:
    MESH_ASSERT(c->vec.count > 0);
    return c->base + (size_t)mesh_shuffle_pop(&c->vec) * c->size;
}

/* Drops the first n cached objects from the stack, then frees them (in that order: see
 * release_attached): those of spans h owns into their local free sets, without an atomic,
 * the others into their spans. */
static void foreign_release(struct mesh_thread_heap *h, struct mesh_class_cache *c, uint32_t n)
{
    void *batch[MESH_FOREIGN_MAX];
    memcpy(batch, c->foreign, n * sizeof batch[0]);
    c->foreign_count -= n;
    memmove(c->foreign, c->foreign + n, c->foreign_count * sizeof c->foreign[0]);
    atomic_thread_fence(memory_order_release);
    uint32_t m = 0;
    for (uint32_t k = 0; k < n; k++) {
        void *p = batch[k];
        c->foreign_seen[mesh_foreign_hash(p)]--;
        uint32_t page = mesh_page_of(p), i = mesh_thread_owned_find(c, mesh_pagemap_get(page));
        if (i == MESH_OWNED_NONE) {
            batch[m++] = p;
            continue;
        }
        /* An owned span is never meshed: p's page info gives its slot. */
        unsigned slot = mesh_pageinfo_slot(mesh_pageinfo_get(page), p);
        c->owned_free[i][slot >> 6] |= 1ull << (slot & 63);
        c->owned_nfree[i]++;
    }
    if (m)
        mesh_global_free_batch(h, batch, m, "free");
}

/* 1 if p is on c's foreign stack (looked for only when its bucket of foreign_seen is not 0). */
static int foreign_contains(const struct mesh_class_cache *c, const void *p)
{
    for (uint32_t i = 0; i < c->foreign_count; i++)
        if (c->foreign[i] == p)
            return 1;
    return 0;
}

void mesh_thread_free_foreign(struct mesh_thread_heap *h, unsigned cls, void *p, uint32_t id,
                              unsigned slot, const char *call)
{
    struct mesh_class_cache *c = &h->cache[cls];
    if (unlikely(atomic_load_explicit(&mesh_fork_pending, memory_order_relaxed)))
        mesh_fork_wait(); /* the heap stands still while a fork child copies it */
    if (c->foreign_seen[mesh_foreign_hash(p)] && foreign_contains(c, p))
        mesh_heap_error(call, "double free", p);
    /* Freed already into our own owned span's local set (its published bit is still set). */
    uint32_t own = mesh_thread_owned_find(c, id);
    if (own != MESH_OWNED_NONE && ((c->owned_free[own][slot >> 6] >> (slot & 63)) & 1))
        mesh_heap_error(call, "double free", p);
    /* Freed already into its span (by anyone): the bit is clear.  Unless the span was
     * meshed away since the caller looked it up: then the bit lives in the new owner. */
    if (!((mesh_bitmap_load_word(mesh_record(id)->bitmap, slot >> 6) >> (slot & 63)) & 1)) {
        uint32_t now_id = mesh_span_after_mesh(id, p);
        const struct mesh_span_record *r = mesh_record(now_id);
        uint32_t off = now_id ? mesh_span_offset(r, p) : UINT32_MAX;
        unsigned now_slot = off == UINT32_MAX ? 0 : mesh_slot_of_offset(off, mesh_classes[cls].recip);
        if (off == UINT32_MAX ||
            !((mesh_bitmap_load_word((uint64_t *)r->bitmap, now_slot >> 6) >> (now_slot & 63)) & 1) ||
            !mesh_slot_is(now_id, r, now_slot, p))
            mesh_heap_error(call, "double free", p);
    } else if (!mesh_slot_is(id, mesh_record(id), slot, p)) {
        /* The slot is live, but with the object of a span meshed with p's. */
        mesh_heap_error(call, "double free", p);
    }
    if (c->foreign_count == c->foreign_max) {
        /* A program in a steady state may never refill: frees count too (not every one:
         * the poll may read the clock). */
        mesh_control_poll();
        foreign_release(h, c, (c->foreign_max + 1) / 2);
    }
    c->foreign_seen[mesh_foreign_hash(p)]++;
    c->foreign[c->foreign_count++] = p;
}

void mesh_thread_heap_flush(struct mesh_thread_heap *h)
{
    for (unsigned cls = 1; cls <= MESH_CLASS_COUNT; cls++) {
        struct mesh_class_cache *c = &h->cache[cls];
        if (c->foreign_count)
            foreign_release(h, c, c->foreign_count);
        if (c->span_id)
            release_attached(c);
        /* A fork child flushing a heap its parent's thread was changing may find a span
         * twice (attached and owned, or twice owned while the list shifted): only a span
         * still attached to h is released, so the second sighting is skipped. */
        uint32_t ids[MESH_OWNED_MAX], n = 0;
        uint64_t unclaim[MESH_OWNED_MAX][MESH_BITMAP_WORDS];
        while (c->owned_count && n < MESH_OWNED_MAX) {
            uint32_t id = owned_take(c, c->owned_count - 1, unclaim[n]);
            struct mesh_span_record *r = mesh_record(id);
            int twice = 0;
            for (uint32_t k = 0; k < n; k++)
                twice |= ids[k] == id;
            if (id && !twice && mesh_record_state(r) == MESH_SPAN_ATTACHED && r->owner == h->id)
                ids[n++] = id;
        }
        atomic_thread_fence(memory_order_release);
        if (n)
            mesh_global_release_spans(cls, n, ids, (const uint64_t(*)[MESH_BITMAP_WORDS])unclaim);
    }
}

/* Checks the invariants of h's attached and owned spans (thread_heap.h); returns the
 * number broken.  h's thread must be the caller, or stopped. */
static int check_owned(const struct mesh_thread_heap *h, const struct mesh_class_cache *c, unsigned cls)
{
    int errors = c->owned_count > c->owned_max;
    uint32_t hwm = mesh_record_hwm();
    for (uint32_t i = 0; i < c->owned_count && i < MESH_OWNED_MAX; i++) {
        uint32_t id = c->owned_id[i];
        if (id == 0 || id >= hwm) {
            errors++;
            continue;
        }
        struct mesh_span_record *r = mesh_record(id);
        errors += mesh_record_state(r) != MESH_SPAN_ATTACHED || r->owner != h->id ||
                  r->size_class != cls || r->virt_count != 1 || id == c->span_id;
        mesh_bitmap b = mesh_bitmap_load(r->bitmap);
        unsigned n = 0;
        for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++) {
            errors += (c->owned_free[i][w] & ~b.w[w]) != 0; /* a local free is still published */
            n += (unsigned)__builtin_popcountll(c->owned_free[i][w]);
        }
        errors += n != c->owned_nfree[i];
        for (uint32_t j = 0; j < i; j++)
            errors += c->owned_id[j] == id;
    }
    uint8_t index[MESH_OWNED_INDEX_SIZE];
    owned_index_set(index, c);
    return errors + (memcmp(index, c->owned_index, sizeof index) != 0);
}

int mesh_thread_heap_check(const struct mesh_thread_heap *h)
{
    int errors = 0;
    for (unsigned cls = 1; h && cls <= MESH_CLASS_COUNT; cls++) {
        const struct mesh_class_cache *c = &h->cache[cls];
        errors += check_owned(h, c, cls);
        uint8_t seen[MESH_FOREIGN_HASH] = {0};
        for (uint32_t i = 0; i < c->foreign_count && i < MESH_FOREIGN_MAX; i++)
            seen[mesh_foreign_hash(c->foreign[i])]++;
        errors += c->foreign_count > c->foreign_max || memcmp(seen, c->foreign_seen, sizeof seen) != 0;
        if (!c->span_id)
            continue;
        struct mesh_span_record *r = mesh_record(c->span_id);
        errors += mesh_record_state(r) != MESH_SPAN_ATTACHED || r->owner != h->id || r->size_class != cls;
        for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++)
            errors += (c->vec.present[w] & ~mesh_bitmap_load_word(r->bitmap, w)) != 0;
    }
    return errors;
}

/* ---- fork guard ------------------------------------------------------------------------- */

void mesh_fork_wait(void)
{
    /* A fork child running before its atfork handler (glibc's own fork-child code) sees
     * the parent's frozen state: it takes its private heap instead of waiting. */
    if (getpid() != mesh_heap_pid) {
        mesh_fork_make_child_private();
        return;
    }
    while (atomic_load(&mesh_fork_pending))
        sched_yield();
}

void mesh_shared_op_wait(struct mesh_thread_heap *h)
{
    while (atomic_load(&mesh_fork_pending)) {
        atomic_fetch_sub(&h->in_shared_op, 1);
        mesh_fork_wait();
        atomic_fetch_add(&h->in_shared_op, 1);
    }
}

static void wait_quiet(struct mesh_thread_heap *h)
{
    while (atomic_load(&h->in_shared_op))
        sched_yield();
}

void mesh_thread_heaps_quiesce(void)
{
    mesh_lock(&pool.lock);
    atomic_store(&mesh_fork_pending, 1);
    for (unsigned k = 0; k < pool.chunk_count; k++) {
        unsigned n = k + 1 == pool.chunk_count ? pool.used_in_last : HEAPS_PER_CHUNK;
        for (unsigned i = 0; i < n; i++)
            wait_quiet(&pool.chunks[k][i]);
    }
    wait_quiet(&orphan_heap);
}

void mesh_thread_heaps_resume(void)
{
    atomic_store(&mesh_fork_pending, 0);
    mesh_unlock(&pool.lock);
}

void mesh_thread_heaps_after_fork_child(void)
{
    /* Only the forking thread survives: every other live heap's spans and vector slots
     * are returned so the child's heap accounting stays exact. */
    struct mesh_thread_heap *self = mesh_tl_heap;
    mesh_lock_reset(&pool.lock);
    atomic_store(&mesh_fork_pending, 0);
    atomic_store(&orphan_heap.in_shared_op, 0);
    for (unsigned k = 0; k < pool.chunk_count; k++) {
        unsigned n = k + 1 == pool.chunk_count ? pool.used_in_last : HEAPS_PER_CHUNK;
        for (unsigned i = 0; i < n; i++) {
            struct mesh_thread_heap *h = &pool.chunks[k][i];
            atomic_store(&h->in_shared_op, 0);
            if (h == self || !h->live)
                continue;
            mesh_thread_heap_flush(h);
            h->live = 0;
            h->next_free = pool.free_list;
            pool.free_list = h;
        }
    }
    if (self)
        self->rng ^= (uint64_t)getpid() * 0x9E3779B97F4A7C15ull; /* diverge from the parent */
}
