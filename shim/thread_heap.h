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
 * Foreign frees: an object freed by a thread that does not own its span is kept in the
 * cache's `foreign` stack (bit still set: to the span it is still allocated) and handed
 * out again by the next malloc of the class; only when the stack is full are the older
 * half freed into their spans with atomics.  Most frees thus cost no atomic at all.
 *   every p in foreign[0..foreign_count): p is a slot start of a span of this class,
 *   its bitmap bit is set, and ((uintptr_t *)p)[1] == heap key (cleared by malloc), which
 *   makes a double free of a cached object an O(1) check in the common case.
 */
#ifndef MESH_THREAD_HEAP_H
#define MESH_THREAD_HEAP_H

#include <stdatomic.h>
#include <stdint.h>

#include "common.h"
#include "shuffle.h"
#include "size_class.h"

#define MESH_NO_SPAN UINT32_MAX
#define MESH_FOREIGN_MAX 64u        /* cached foreign frees per class ... */
#define MESH_FOREIGN_BYTES (64u << 10) /* ... and at most this many bytes of them */

struct mesh_class_cache {
    uint8_t *base;     /* address of the attached span */
    uint32_t span_id;
    uint32_t size;
    uint32_t recip;
    uint32_t capacity;
    uint32_t foreign_count, foreign_max;
    void *foreign[MESH_FOREIGN_MAX];
    struct mesh_shuffle vec;
};

struct mesh_thread_heap {
    struct mesh_class_cache cache[MESH_CLASS_COUNT + 1];
    uint64_t rng;
    uintptr_t key;              /* marks objects in foreign stacks */
    uint32_t id;                /* 1-based index in the heap pool */
    int live;                   /* belongs to a running thread */
    _Atomic int in_shared_op;   /* threads inside a shared op; see mesh_shared_op_begin */
    struct mesh_thread_heap *next_free;
};

extern __thread struct mesh_thread_heap *mesh_tl_heap __attribute__((tls_model("initial-exec")));

/* The calling thread's heap, created on first use; NULL only if memory is exhausted. */
struct mesh_thread_heap *mesh_thread_heap_get(void);
/* The calling thread's heap if it has one, else a shared heap used only for its fork guard
 * (frees from threads without a heap take the remote path).  Never NULL. */
struct mesh_thread_heap *mesh_thread_heap_for_free(void);
/* Slow path of small malloc: refills cache cls, then allocates from it. */
void *mesh_thread_refill_alloc(struct mesh_thread_heap *h, unsigned cls);
/* Caches foreign-freed object p (slot `slot` of span id, class cls), flushing the older
 * half of the stack into the spans when it is full.  Checks p is not freed already. */
void mesh_thread_free_foreign(struct mesh_thread_heap *h, unsigned cls, void *p, uint32_t id,
                              unsigned slot, const char *call);
/* Returns every attached span and cached foreign object of h to the global heap. */
void mesh_thread_heap_flush(struct mesh_thread_heap *h);
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
