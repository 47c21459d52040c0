/*
 * thread_heap.h: per-thread heaps, the allocation fast path's state.
 *
 * For each size class a thread holds at most one attached span and a shuffle vector of
 * that span's free slots.  Invariants for cache c of heap h:
 *   c->span_id == 0                 <=> no span attached, c->vec.count == 0
 *   record(c->span_id).owner == h->id, state == ATTACHED
 *   every slot in c->vec has its bit set in the record's bitmap (claimed by h)
 * cache[0] (large objects) never holds a span; its span_id is MESH_NO_SPAN so the free
 * fast path never matches it.
 *
 * Foreign frees: an object freed into a span the thread does not have attached (another
 * thread's, a detached one, or one of its own owned spans) is kept in the cache's
 * `foreign` stack (bit still set: to the span it is still allocated) and handed out again
 * by the next malloc of the class; only when the stack is full are the older half freed:
 * into the owned spans' local free sets, or into their spans with atomics.  Most frees
 * thus cost no atomic at all.
 *   every p in foreign[0..foreign_count): p is a slot start of a span of this class,
 *   and its bitmap bit is set;
 *   foreign_seen[b] == #{ i < foreign_count : mesh_foreign_hash(foreign[i]) == b }.
 * A free whose bucket counts 0 cannot free a cached object again: the double-free check
 * reads one byte of the thread's own cache and never the object.  A free is often the
 * first touch of its object in a long while (a container's clear() frees the buffers it
 * never reads): the mark the stack used to keep in the object's second word stalled such
 * a free on memory (82% of free_unattached's samples in bench/cxxalloc.cpp).  A bucket
 * that counts more than 0 (at most one free in 16: 64 objects in 1024 buckets) sends the
 * free to the slow path, which scans the stack.  256 buckets and
 * the scan inline cost more instructions (a quarter of frees scanned) than the misses
 * they saved (cachegrind, cxxalloc 3: 1006M instructions vs 955M; 1024 buckets: 972M, and
 * 7.57M D1 misses vs 8.40M).
 */
#ifndef MESH_THREAD_HEAP_H
#define MESH_THREAD_HEAP_H

#include <stdatomic.h>
#include <stdint.h>

#include "common.h"
#include "report.h"
#include "shuffle.h"
#include "size_class.h"
#include "span_table.h"

#define MESH_NO_SPAN UINT32_MAX
#define MESH_FOREIGN_MAX 64u        /* cached foreign frees per class ... */
#define MESH_FOREIGN_BYTES (64u << 10) /* ... and at most this many bytes of them */
#define MESH_FOREIGN_HASH 1024u     /* buckets of foreign_seen: 10 bits of hash */
static inline unsigned mesh_foreign_hash(const void *p)
{
    return (uint32_t)((uintptr_t)p >> 4) * 0x9E3779B1u >> 22; /* slots are 16-byte aligned */
}
#define MESH_OWNED_MAX 32u          /* retired spans a thread keeps per class ... */
#define MESH_OWNED_BYTES (128u << 10) /* ... and at most this many bytes of them (at least 2) */
/* Index of the owned ids: entry (id % MESH_OWNED_INDEX_SIZE) is 0 when no owned id hashes
 * there, i + 1 when owned_id[i] is the only one that does, MESH_OWNED_INDEX_MANY when
 * several do (then owned_id[] is scanned).  A free into a span the thread does not own (most
 * frees of a heap larger than the owned spans) is told so by one byte, one into an owned
 * span is found by it: a 512-bit filter of the ids (with a last-hit index before it) left
 * every free that passed it to scan owned_id[] and cost a single-threaded program
 * (bench/mixed.c) ten branches and half a misprediction per free. */
#define MESH_OWNED_INDEX_SIZE 512u
#define MESH_OWNED_INDEX_MANY 0xffu
static inline void mesh_owned_index_add(uint8_t *index, uint32_t id, uint32_t i)
{
    uint8_t *e = &index[id & (MESH_OWNED_INDEX_SIZE - 1)];
    *e = *e ? MESH_OWNED_INDEX_MANY : (uint8_t)(i + 1);
}

/*
 * Owned spans: the spans a thread filled and retired from its cache stay its own (state
 * ATTACHED, owner h->id, on no global list, so nobody else attaches or meshes them) for as
 * long as they sit in owned_id[].  Their owner frees into them without an atomic: a free
 * only sets the slot's bit in owned_free[i], the thread-private set of locally freed
 * slots (when it leaves the foreign stack: see above), and the published bit stays set,
 * exactly as for a slot in the vector.  For owned
 * span i (and likewise for the attached span, with vec.present in the place of owned_free):
 *
 *     published bitmap = live objects  +  owned_free[i]        (a disjoint union)
 *
 * owned_nfree[i] counting owned_free[i]'s bits, and a bit that another thread cleared (a remote free) is a free slot the owner takes
 * back with an atomic OR when it re-attaches the span.  meshd sees the locally freed slots
 * as live; that costs meshing nothing it could have had, since an ATTACHED span is never
 * meshed.  Bounded per class by owned_max (MESH_OWNED_MAX spans, MESH_OWNED_BYTES bytes);
 * the oldest is released to the global heap (its owned_free given back) when a new one
 * needs the room, and all of them on thread exit, flush and in a fork child.  Spans that
 * were ever meshed (virt_count > 1) are never kept: their frees need origin checks.
 */
struct mesh_class_cache {
    uint8_t *base;     /* address of the attached span */
    uint32_t span_id;
    uint32_t size;
    uint32_t recip;
    uint32_t capacity;
    uint32_t foreign_count, foreign_max;
    uint32_t owned_count, owned_max;
    uint32_t owned_id[MESH_OWNED_MAX];      /* oldest first */
    uint16_t owned_nfree[MESH_OWNED_MAX];   /* popcount of owned_free[i] */
    uint8_t owned_index[MESH_OWNED_INDEX_SIZE]; /* owned_id[] by id hash (above) */
    void *foreign[MESH_FOREIGN_MAX];
    uint8_t foreign_seen[MESH_FOREIGN_HASH]; /* foreign[] counted by mesh_foreign_hash */
    uint64_t owned_free[MESH_OWNED_MAX][MESH_BITMAP_WORDS];
    struct mesh_shuffle vec;
};

struct mesh_thread_heap {
    struct mesh_class_cache cache[MESH_CLASS_COUNT + 1];
    uint64_t rng;
    uint32_t id;                /* 1-based index in the heap pool */
    int live;                   /* belongs to a running thread */
    _Atomic int in_shared_op;   /* threads inside a shared op; see mesh_shared_op_begin */
    struct mesh_thread_heap *next_free;
    /* Bit cls: another thread freed into one of this heap's spans of class cls since its
     * last look at its owned spans' records (mesh_thread_heap_note_remote).  A hint only:
     * a free it misses stays in the span's bitmap, found at the next look or at release.
     * Written by other threads, so on a line of its own. */
    _Atomic uint64_t remote_frees __attribute__((aligned(64)));
    /* Bit cls: a free one by one (mesh_global_free_small: a thread without a heap, a meshed
     * span) into one of those spans.  Makes the next refill look at the attached span only:
     * a consumer thread frees every object that way, and scanning every owned span's record
     * at each refill (what remote_frees asks for) cost its producers more than it gave. */
    _Atomic uint64_t remote_single;
};

extern __thread struct mesh_thread_heap *mesh_tl_heap __attribute__((tls_model("initial-exec")));

/* The calling thread's heap, created on first use; NULL only if memory is exhausted. */
struct mesh_thread_heap *mesh_thread_heap_get(void);
/* The calling thread's heap if it has one, else a shared heap used only for its fork guard
 * (frees from threads without a heap take the remote path).  Never NULL. */
struct mesh_thread_heap *mesh_thread_heap_for_free(void);
/* Tells heap `owner` (an id from a span record) that another thread freed into one of its
 * spans of class cls (one by one if `single`: see remote_single); any thread, no lock. */
void mesh_thread_heap_note_remote(uint32_t owner, unsigned cls, int single);
/* Slow path of small malloc: refills cache cls, then allocates from it. */
void *mesh_thread_refill_alloc(struct mesh_thread_heap *h, unsigned cls);
/* Index in c->owned_id[] of span id, or MESH_OWNED_NONE if c does not own it.  Branch-free
 * but for ids sharing an index entry (rare): whether a free lands in an owned span is a coin
 * toss on a heap larger than the owned spans, so a branch on it mispredicts often. */
#define MESH_OWNED_NONE UINT32_MAX
static inline uint32_t mesh_thread_owned_find(const struct mesh_class_cache *c, uint32_t id)
{
    uint32_t e = c->owned_index[id & (MESH_OWNED_INDEX_SIZE - 1)];
    if (unlikely(e == MESH_OWNED_INDEX_MANY)) {
        uint32_t i = c->owned_count;
        while (i-- > 0 && c->owned_id[i] != id)
            ;
        return i;
    }
    uint32_t i = (e - 1) & (MESH_OWNED_MAX - 1);
    uint32_t hit = (e != 0) & (c->owned_id[i] == id);
    return i | (hit - 1u); /* hit ? i : MESH_OWNED_NONE */
}
/* Caches freed object p (slot `slot` of span id, class cls, a span not attached to h),
 * flushing the older half of the stack when it is full: objects of h's owned spans into
 * their local free sets, the rest into their spans.  Checks p is not freed already. */
void mesh_thread_free_foreign(struct mesh_thread_heap *h, unsigned cls, void *p, uint32_t id,
                              unsigned slot, const char *call);
/* Returns every attached span and cached foreign object of h to the global heap. */
void mesh_thread_heap_flush(struct mesh_thread_heap *h);
/* Heap walk of h's attached and owned spans (the invariants above); the number broken.
 * h's thread must be the caller or stopped; NULL is a sound heap. */
int mesh_thread_heap_check(const struct mesh_thread_heap *h);
void mesh_thread_heaps_init(void);

/*
 * Fork guard.  Lock-free changes to shared span records (a remote free clearing a bit, an
 * owner reclaiming freed slots, a span or large object set up or freed, kernel-hold marks)
 * run between begin and end.  mesh_heap_freeze (fork's prepare handler, and the control
 * thread copying the table for a registration: span_table.h) raises mesh_fork_pending and
 * waits until no heap is inside such a section, so the copy sees records that no thread
 * is changing.  Sections do not nest: a thread inside one must not enter another.
 */
extern _Atomic int mesh_fork_pending;
void mesh_shared_op_wait(struct mesh_thread_heap *h);
/* Blocks while a fork is copying the heap (in a fork child: takes its private heap). */
void mesh_fork_wait(void);
static inline void mesh_shared_op_begin(struct mesh_thread_heap *h)
{
    atomic_fetch_add(&h->in_shared_op, 1);
    if (unlikely(atomic_load(&mesh_fork_pending)))
        mesh_shared_op_wait(h);
}
static inline void mesh_shared_op_end(struct mesh_thread_heap *h)
{
    atomic_fetch_sub_explicit(&h->in_shared_op, 1, memory_order_release);
}
/* Fork: stop shared ops (prepare), resume them (parent), drop other threads' heaps (child). */
void mesh_thread_heaps_quiesce(void);
void mesh_thread_heaps_resume(void);
void mesh_thread_heaps_after_fork_child(void);

#endif
