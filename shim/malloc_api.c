/*
 * malloc_api.c: the malloc family, with glibc's semantics.
 *
 * Fast paths (small malloc from the thread's cache, free of an object of a span the thread
 * owns) are inline here and touch only the thread heap, the page map and the page info.
 * Everything else is a call into thread_heap.c / global_heap.c.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "control.h"
#include "cxx_new.h"
#include "fallback.h"
#include "fork_lazy.h"
#include "global_heap.h"
#include "init.h"
#include "mesh.h"
#include "report.h"
#include "sandbox.h"
#include "size_class.h"
#include "span_table.h"
#include "thread_heap.h"

/* ---- from a pointer to its metadata ----------------------------------------------------- */

/* What a pointer the program hands back (to free, realloc, malloc_usable_size) refers to. */
struct object {
    uint32_t id;   /* record of the span that holds it */
    unsigned cls;  /* its size class; 0: a large object */
    unsigned slot; /* its slot in the span (0 for a large object) */
};

/*
 * object_of() is the only way from a program's pointer to metadata.  Returns 0 if p is
 * outside the arena (not ours; NULL among them); fills *o and returns 1 if p starts an
 * object slot; aborts with "<call>(): invalid pointer" if p is inside the arena but starts
 * no slot.  These checks stay on in release builds: a few loads and compares keep a bad
 * pointer from corrupting a span.  Whether the slot is live (a double free) is for the
 * caller to check: how depends on who owns the span.
 *
 * Its inline half, small_object_of(), takes the common case: p on a page of a live small
 * span.  It is checked against the page map and the page info alone (class, page index in
 * the span), so the span's record, a cache miss on a large heap, is not read.  Returns 0
 * for anything else, which is other_object_of()'s.
 */
static inline __attribute__((always_inline)) int small_object_of(const void *p, struct object *o,
                                                                 const char *call)
{
    if (unlikely(!mesh_in_arena(p)))
        return 0;
    uint32_t page = mesh_page_of(p);
    uint32_t id = mesh_pagemap_get(page);
    unsigned info = mesh_pageinfo_get(page);
    /* The map holds record ids (1 .. MESH_PAGE_FREE_TAG-1), tagged free ranges, or 0. */
    if (unlikely(id - 1 >= MESH_PAGE_FREE_TAG - 1 || MESH_PAGEINFO_CLASS(info) == 0))
        return 0;
    const struct mesh_class *k = &mesh_classes[MESH_PAGEINFO_CLASS(info)];
    uint32_t off = mesh_pageinfo_offset(info, p);
    unsigned slot = mesh_slot_of_offset(off, k->recip);
    if (unlikely(slot * k->size != off || slot >= k->capacity))
        mesh_heap_error(call, "invalid pointer", p);
    o->id = id;
    o->cls = MESH_PAGEINFO_CLASS(info);
    o->slot = slot;
    return 1;
}

/* The rest of object_of: not ours, a large object (p must be its first byte, which its
 * record says), or invalid. */
static MESH_NOINLINE int other_object_of(const void *p, struct object *o, const char *call)
{
    if (!mesh_in_arena(p))
        return 0;
    uint32_t page = mesh_page_of(p);
    uint32_t id = mesh_pagemap_get(page);
    if (id - 1 >= MESH_PAGE_FREE_TAG - 1 || id >= mesh_record_hwm() || mesh_pageinfo_get(page) != 0)
        mesh_heap_error(call, "invalid pointer", p);
    const struct mesh_span_record *r = mesh_record(id);
    if (r->size_class != 0 || mesh_page_addr(r->virt_page[0]) != p)
        mesh_heap_error(call, "invalid pointer", p);
    o->id = id;
    o->cls = 0;
    o->slot = 0;
    return 1;
}

static inline __attribute__((always_inline)) int object_of(const void *p, struct object *o,
                                                           const char *call)
{
    return small_object_of(p, o, call) || other_object_of(p, o, call);
}

static size_t object_usable(struct object o)
{
    return o.cls ? mesh_classes[o.cls].size : mesh_large_usable(mesh_record(o.id));
}

/* ---- malloc ------------------------------------------------------------------------------ */

/* Who serves an allocation the fast path did not: the heap; the fallback (no heap could be
 * set up, glibc's serves; or another malloc serves the process: fallback.h); or nobody.
 * A call back from inside a forwarded one sets the heap up (mesh_fallback_forward). */
enum served_by { SERVED_BY_HEAP, SERVED_BY_FALLBACK, SERVED_BY_NONE };

static enum served_by who_serves(void)
{
    if (mesh_ready())
        return SERVED_BY_HEAP;
    if (mesh_fallback_serves())
        return SERVED_BY_FALLBACK;
    return mesh_ready() ? SERVED_BY_HEAP : SERVED_BY_NONE;
}

static MESH_NOINLINE void *malloc_slow(size_t n, int zero)
{
    if (unlikely(atomic_load_explicit(&mesh_fork_lazy_window, memory_order_relaxed))) {
        void *p = mesh_fork_lazy_window_alloc(n); /* the heap must not be touched now */
        if (!p)
            errno = ENOMEM;
        return p;
    }
    switch (who_serves()) {
    case SERVED_BY_FALLBACK:
        return mesh_fallback_malloc(n, zero);
    case SERVED_BY_NONE:
        errno = ENOMEM;
        return NULL;
    default:
        break;
    }
    if (n <= MESH_MAX_SMALL) {
        struct mesh_thread_heap *h = mesh_thread_heap_get();
        if (h) {
            void *p = mesh_thread_refill_alloc(h, mesh_class_of(n));
            if (p && zero)
                memset(p, 0, n);
            return p;
        }
        /* No thread heap (pool exhausted): serve it as a page-sized object. */
    }
    mesh_control_poll();
    void *p = mesh_large_alloc(n, 0, zero);
    if (!p)
        errno = ENOMEM;
    return p;
}

/* Recently freed foreign objects first (their memory is warm), then the vector. */
static inline __attribute__((always_inline)) void *cache_pop(struct mesh_thread_heap *h, unsigned cls)
{
    struct mesh_class_cache *c = &h->cache[cls];
    if (c->foreign_count) {
        void *p = c->foreign[--c->foreign_count];
        c->foreign_seen[mesh_foreign_hash(p)]--;
        return p;
    }
    if (likely(c->vec.count))
        return c->base + (size_t)mesh_shuffle_pop(&c->vec) * c->size;
    return mesh_thread_refill_alloc(h, cls);
}

/* Out of line, so that the fast path calls nothing (and saves no registers) for it. */
static MESH_NOINLINE void *cache_alloc_after_fork(struct mesh_thread_heap *h, unsigned cls)
{
    mesh_fork_wait();
    return cache_pop(h, cls);
}

static inline __attribute__((always_inline)) void *cache_alloc(struct mesh_thread_heap *h, unsigned cls)
{
    /* While a fork child copies the heap, memory freed after fork must not be reused:
     * the child may still hold the objects that were there. */
    if (unlikely(atomic_load_explicit(&mesh_fork_pending, memory_order_relaxed)))
        return cache_alloc_after_fork(h, cls);
    return cache_pop(h, cls);
}

/* malloc (zero 0) and calloc (zero 1): small requests from the thread's cache, inline. */
static inline __attribute__((always_inline)) void *malloc_impl(size_t n, int zero)
{
    struct mesh_thread_heap *h = mesh_tl_heap;
    if (likely(h != NULL && n <= MESH_MAX_SMALL)) {
        void *p = cache_alloc(h, mesh_class_of(n));
        if (zero && p)
            memset(p, 0, n);
        return p;
    }
    /* Large objects from fresh or punched pages are already zero: no memset there. */
    return malloc_slow(n, zero);
}

MESH_EXPORT void *mesh_malloc(size_t n) { return malloc_impl(n, 0); }

/* ---- free: look up, classify, delegate --------------------------------------------------- */

/* Everything free_impl does not take: NULL, a large object, a thread without a heap, and
 * a slot of the thread's own span that free_impl could not take back (a meshed span, whose
 * frees must check which virtual span the object came from (slot_origin.h), or a double
 * free).  Also aborts for pointers that are not ours. */
static MESH_NOINLINE void free_slow(void *p, const char *call)
{
    struct object o;
    if (!object_of(p, &o, call)) {
        if (p != NULL && mesh_fallback_serves())
            mesh_fallback_free(p); /* every pointer is the fallback's then */
        else if (p != NULL && !mesh_fork_lazy_window_owns(p)) /* that is never freed */
            mesh_heap_error(call, "invalid pointer", p); /* not ours: glibc would abort too */
        return;
    }
    int saved = errno;
    struct mesh_thread_heap *h = mesh_thread_heap_for_free();
    struct mesh_class_cache *c = &h->cache[o.cls];
    if (o.cls == 0) {
        mesh_large_free(h, o.id, p, call);
    } else if (c->span_id == o.id) {
        if (mesh_shuffle_contains(&c->vec, o.slot) || !mesh_slot_is(o.id, mesh_record(o.id), o.slot, p))
            mesh_heap_error(call, "double free", p);
        mesh_origin_reset(o.id, o.slot); /* malloc hands it out through virtual span 0 */
        mesh_shuffle_push(&c->vec, o.slot);
    } else {
        mesh_global_free_small(h, o.id, o.slot, p, call);
    }
    errno = saved;
}

/* A free of a small object of a span other than the thread's attached one (another
 * thread's, a detached one or one of this thread's owned spans) goes on the class's
 * foreign stack.  Out of line, so that free_impl's attached-span path calls nothing and
 * needs no saved registers.
 *
 * The common case is inline here: no fork running, no cached object in p's bucket of
 * foreign_seen (so p is not cached: thread_heap.h), its bit set in a span never meshed (so
 * p is live: mesh_slot_is) and not in the local free set of an owned span, room on the
 * stack.  Anything else goes to mesh_thread_free_foreign,
 * which makes every check again.  Owned spans' objects take the same stack (released into
 * the owned span's local set, without an atomic, when it overflows): a free branching on
 * whether its span is owned mispredicted on a third of a single-threaded program's frees
 * (bench/mixed.c), and malloc, finding the stack empty as often, on a quarter of its own. */
static MESH_NOINLINE void free_unattached(struct mesh_thread_heap *h, void *p, uint32_t id, unsigned cls,
                                          unsigned slot, const char *call)
{
    struct mesh_class_cache *c = &h->cache[cls];
    uint8_t *seen = &c->foreign_seen[mesh_foreign_hash(p)];
    const struct mesh_span_record *r = mesh_record(id);
    uint64_t bit = 1ull << (slot & 63);
    uint32_t own = mesh_thread_owned_find(c, id);
    uint64_t local = c->owned_free[own & (MESH_OWNED_MAX - 1)][slot >> 6] & -(uint64_t)(own != MESH_OWNED_NONE);
    if (unlikely(atomic_load_explicit(&mesh_fork_pending, memory_order_relaxed) || *seen ||
                 !(mesh_bitmap_load_word((uint64_t *)r->bitmap, slot >> 6) & bit) || (local & bit) ||
                 __atomic_load_n(&r->virt_count, __ATOMIC_ACQUIRE) > 1 ||
                 c->foreign_count == c->foreign_max)) {
        mesh_thread_free_foreign(h, cls, p, id, slot, call);
        return;
    }
    (*seen)++;
    c->foreign[c->foreign_count++] = p;
}

/*
 * Look up, classify, delegate.  A small object (small_object_of) of the span this thread
 * has attached goes back into the span's vector here, unless the vector has it already
 * (double free); one of another span is free_unattached's.  Everything else is free_slow's.
 */
static inline __attribute__((always_inline)) void free_impl(void *p, const char *call)
{
    struct object o;
    struct mesh_thread_heap *h = mesh_tl_heap;
    if (likely(h != NULL && small_object_of(p, &o, call))) {
        struct mesh_class_cache *c = &h->cache[o.cls];
        if (unlikely(c->span_id != o.id)) {
            free_unattached(h, p, o.id, o.cls, o.slot, call);
            return;
        }
        /* A meshed span's cache has capacity 0 (see attach()): free_slow's. */
        if (likely(o.slot < c->capacity && !mesh_shuffle_contains(&c->vec, o.slot))) {
            mesh_shuffle_push(&c->vec, o.slot);
            return;
        }
    }
    free_slow(p, call);
}

MESH_EXPORT void mesh_free(void *p) { free_impl(p, "free"); }

/* ---- the rest of the family -------------------------------------------------------------- */

MESH_EXPORT void *mesh_calloc(size_t nmemb, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(nmemb, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    return malloc_impl(n, 1);
}

/* Allocation of n bytes aligned to align (a power of two). */
static void *aligned_impl(size_t align, size_t n)
{
    if (align <= 16)
        return mesh_malloc(n);
    switch (who_serves()) {
    case SERVED_BY_FALLBACK:
        return mesh_fallback_memalign(align, n);
    case SERVED_BY_NONE:
        errno = ENOMEM;
        return NULL;
    default:
        break;
    }
    if (align <= MESH_PAGE_SIZE && n <= MESH_MAX_SMALL) {
        unsigned cls = mesh_class_for_aligned(n, align);
        if (cls)
            return mesh_malloc(mesh_classes[cls].size);
    }
    void *p = atomic_load_explicit(&mesh_fork_lazy_window, memory_order_relaxed) ? NULL
                                                                                 : mesh_large_alloc(n, align, 0);
    if (!p)
        errno = ENOMEM;
    return p;
}

MESH_EXPORT int mesh_posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || !mesh_is_pow2(align))
        return EINVAL;
    int saved = errno;
    void *p = aligned_impl(align, n);
    if (!p) {
        errno = saved;
        return ENOMEM;
    }
    *out = p;
    return 0;
}

MESH_EXPORT void *mesh_aligned_alloc(size_t align, size_t n)
{
    if (!mesh_is_pow2(align)) {
        errno = EINVAL;
        return NULL;
    }
    return aligned_impl(align, n);
}

MESH_EXPORT void *mesh_memalign(size_t align, size_t n)
{
    /* glibc: alignments that are not powers of two are rounded up; absurd ones fail. */
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (!mesh_is_pow2(align)) {
        size_t a = 1;
        while (a < align)
            a <<= 1;
        align = a;
    }
    return aligned_impl(align, n);
}

MESH_EXPORT void *mesh_valloc(size_t n) { return aligned_impl(MESH_PAGE_SIZE, n); }

MESH_EXPORT void *mesh_pvalloc(size_t n)
{
    if (n > SIZE_MAX - MESH_PAGE_SIZE) {
        errno = ENOMEM;
        return NULL;
    }
    size_t rounded = mesh_align_up(n ? n : 1, MESH_PAGE_SIZE);
    return aligned_impl(MESH_PAGE_SIZE, rounded);
}

MESH_EXPORT void *mesh_realloc(void *p, size_t n)
{
    if (p == NULL)
        return mesh_malloc(n);
    if (n == 0) {
        free_impl(p, "realloc");
        return NULL;
    }
    struct object o;
    if (!object_of(p, &o, "realloc")) {
        if (mesh_fallback_serves())
            return mesh_fallback_realloc(p, n);
        if (!mesh_fork_lazy_window_owns(p))
            mesh_heap_error("realloc", "invalid pointer", p); /* not ours */
        size_t had = mesh_fork_lazy_window_size(p);
        void *q = mesh_malloc(n);
        if (q)
            memcpy(q, p, n < had ? n : had);
        return q;
    }
    if (unlikely(atomic_load_explicit(&mesh_fork_lazy_window, memory_order_relaxed))) {
        errno = ENOMEM; /* a block kept in place would be written: not now (fork_lazy.h) */
        return NULL;
    }
    size_t usable = object_usable(o);
    if (o.cls != 0) {
        /* Stay put while the request still fits and would not waste half the object. */
        if (n <= usable && (n > usable / 2 || usable <= 16))
            return p;
    } else if (n > MESH_MAX_SMALL && mesh_large_resize(mesh_thread_heap_for_free(), o.id, n)) {
        return p;
    }
    void *q = mesh_malloc(n);
    if (!q)
        return NULL; /* errno is ENOMEM; p is untouched, as the standard requires */
    memcpy(q, p, n < usable ? n : usable);
    free_impl(p, "realloc");
    return q;
}

MESH_EXPORT void *mesh_reallocarray(void *p, size_t nmemb, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(nmemb, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    return mesh_realloc(p, n);
}

MESH_EXPORT size_t mesh_malloc_usable_size(void *p)
{
    struct object o;
    if (!object_of(p, &o, "malloc_usable_size")) {
        if (p && mesh_fallback_serves())
            return mesh_fallback_usable_size(p);
        return p && mesh_fork_lazy_window_owns(p) ? mesh_fork_lazy_window_size(p) : 0; /* or not ours */
    }
    return object_usable(o);
}

MESH_EXPORT int mesh_malloc_trim(size_t pad)
{
    (void)pad;
    if (atomic_load(&mesh_init_state) != MESH_INIT_DONE)
        return 0;
    return mesh_global_trim(0) > 0;
}

/* ---- stats ------------------------------------------------------------------------------- */

MESH_EXPORT int mesh_stats_get(struct mesh_stats *out)
{
    memset(out, 0, sizeof *out);
    if (atomic_load(&mesh_init_state) != MESH_INIT_DONE)
        return 0;
    struct mesh_arena_stats a;
    struct mesh_heap_usage u;
    mesh_arena_stats(&a);
    mesh_global_usage(&u);
    const struct mesh_span_table_counters *c = &mesh_spans.header->counters;
    out->heap_bytes = a.used_pages << MESH_PAGE_SHIFT;
    out->live_bytes = u.small_bytes_live + u.large_bytes;
    out->dirty_bytes = a.dirty_pages << MESH_PAGE_SHIFT;
    out->released_bytes = a.released_pages << MESH_PAGE_SHIFT;
    out->spans_created = atomic_load((_Atomic uint64_t *)&c->spans_created);
    out->large_allocs = atomic_load((_Atomic uint64_t *)&c->large_allocs);
    out->small_spans = u.small_spans;
    out->large_objects = u.large_objects;
    out->shared_arena = mesh_arena.window != NULL;
    out->private_reason = mesh_private_reason;
    out->committed_bytes = mesh_arena_committed_bytes();
    return 0;
}

MESH_EXPORT int mesh_heap_check(void)
{
    if (atomic_load(&mesh_init_state) != MESH_INIT_DONE)
        return 0;
    return mesh_global_check() + mesh_thread_heap_check(mesh_tl_heap);
}

MESH_EXPORT void mesh_thread_flush(void)
{
    struct mesh_thread_heap *h = mesh_tl_heap;
    if (h)
        mesh_thread_heap_flush(h);
}

/* Kept for the ABI: the shim holds no descriptor for either any more (docs/ALLOCATOR.md,
 * "Descriptors"); the span table's memfd exists only for the moment of a registration. */
MESH_EXPORT int mesh_arena_fd(void) { return -1; }

MESH_EXPORT int mesh_span_table_fd(void) { return -1; }

/* ---- glibc names ------------------------------------------------------------------------- */
#ifndef MESH_NO_INTERPOSE
#define MESH_ALIAS(name, target) MESH_EXPORT __typeof__(target) name __attribute__((alias(#target)))

MESH_ALIAS(malloc, mesh_malloc);
MESH_ALIAS(free, mesh_free);
MESH_ALIAS(cfree, mesh_free);
MESH_ALIAS(calloc, mesh_calloc);
MESH_ALIAS(realloc, mesh_realloc);
MESH_ALIAS(reallocarray, mesh_reallocarray);
MESH_ALIAS(posix_memalign, mesh_posix_memalign);
MESH_ALIAS(aligned_alloc, mesh_aligned_alloc);
MESH_ALIAS(memalign, mesh_memalign);
MESH_ALIAS(valloc, mesh_valloc);
MESH_ALIAS(pvalloc, mesh_pvalloc);
MESH_ALIAS(malloc_usable_size, mesh_malloc_usable_size);
MESH_ALIAS(malloc_trim, mesh_malloc_trim);
MESH_ALIAS(__libc_malloc, mesh_malloc);
MESH_ALIAS(__libc_free, mesh_free);
MESH_ALIAS(__libc_calloc, mesh_calloc);
MESH_ALIAS(__libc_realloc, mesh_realloc);
MESH_ALIAS(__libc_memalign, mesh_memalign);
MESH_ALIAS(__libc_valloc, mesh_valloc);
MESH_ALIAS(__libc_pvalloc, mesh_pvalloc);

/*
 * C++ operator new and delete (cxx_new.c has the aligned forms and the failure protocol).
 * new runs malloc's fast path in its own body: a program's call lands here and returns,
 * with no second call.  Every delete is free itself, an alias: sized, aligned and nothrow
 * deletes pass their extra arguments in registers (x86-64 and AArch64 calling conventions,
 * caller-cleaned), which free never reads; the block's size and alignment are known from
 * its address.
 */
MESH_EXPORT void *_Znwm(size_t n);
MESH_EXPORT void *_Znam(size_t n);
MESH_EXPORT void *_ZnwmRKSt9nothrow_t(size_t n, const void *tag);
MESH_EXPORT void *_ZnamRKSt9nothrow_t(size_t n, const void *tag);

void *_Znwm(size_t n)
{
    void *p = malloc_impl(n, 0);
    return likely(p != NULL) ? p : mesh_cxx_new_failed(n);
}

void *_Znam(size_t n)
{
    void *p = malloc_impl(n, 0);
    return likely(p != NULL) ? p : mesh_cxx_new_array_failed(n);
}

void *_ZnwmRKSt9nothrow_t(size_t n, const void *tag)
{
    void *p = malloc_impl(n, 0);
    return likely(p != NULL) ? p : mesh_cxx_new_nothrow_failed(n, tag);
}

void *_ZnamRKSt9nothrow_t(size_t n, const void *tag)
{
    void *p = malloc_impl(n, 0);
    return likely(p != NULL) ? p : mesh_cxx_new_array_nothrow_failed(n, tag);
}

MESH_ALIAS(_ZdlPv, mesh_free);                              /* delete(void *) */
MESH_ALIAS(_ZdaPv, mesh_free);                              /* delete[](void *) */
MESH_ALIAS(_ZdlPvm, mesh_free);                             /* sized */
MESH_ALIAS(_ZdaPvm, mesh_free);
MESH_ALIAS(_ZdlPvRKSt9nothrow_t, mesh_free);                /* nothrow */
MESH_ALIAS(_ZdaPvRKSt9nothrow_t, mesh_free);
MESH_ALIAS(_ZdlPvSt11align_val_t, mesh_free);               /* aligned */
MESH_ALIAS(_ZdaPvSt11align_val_t, mesh_free);
MESH_ALIAS(_ZdlPvmSt11align_val_t, mesh_free);              /* sized and aligned */
MESH_ALIAS(_ZdaPvmSt11align_val_t, mesh_free);
MESH_ALIAS(_ZdlPvSt11align_val_tRKSt9nothrow_t, mesh_free); /* aligned nothrow */
MESH_ALIAS(_ZdaPvSt11align_val_tRKSt9nothrow_t, mesh_free);

static struct mallinfo2 mallinfo2_impl(void)
{
    struct mallinfo2 mi;
    memset(&mi, 0, sizeof mi);
    struct mesh_stats s;
    mesh_stats_get(&s);
    mi.arena = s.heap_bytes + s.dirty_bytes;
    mi.ordblks = s.small_spans;
    mi.hblks = s.large_objects;
    mi.uordblks = s.live_bytes;
    mi.fordblks = mi.arena > s.live_bytes ? mi.arena - s.live_bytes : 0;
    mi.keepcost = s.dirty_bytes;
    return mi;
}

MESH_EXPORT struct mallinfo2 mallinfo2(void) { return mallinfo2_impl(); }

MESH_EXPORT struct mallinfo mallinfo(void)
{
    struct mallinfo2 m2 = mallinfo2_impl();
    struct mallinfo mi;
    memset(&mi, 0, sizeof mi);
    /* The old structure has int fields: saturate rather than wrap. */
#define CLAMP(v) ((v) > (size_t)2147483647 ? 2147483647 : (int)(v))
    mi.arena = CLAMP(m2.arena);
    mi.ordblks = CLAMP(m2.ordblks);
    mi.hblks = CLAMP(m2.hblks);
    mi.uordblks = CLAMP(m2.uordblks);
    mi.fordblks = CLAMP(m2.fordblks);
    mi.keepcost = CLAMP(m2.keepcost);
#undef CLAMP
    return mi;
}

MESH_EXPORT int mallopt(int param, int value)
{
    (void)value;
    /* glibc's parameters are accepted and have no effect: libmesh tunes itself. */
    switch (param) {
    case M_MXFAST: case M_TRIM_THRESHOLD: case M_TOP_PAD: case M_MMAP_THRESHOLD:
    case M_MMAP_MAX: case M_CHECK_ACTION: case M_PERTURB: case M_ARENA_TEST: case M_ARENA_MAX:
        return 1;
    default:
        return 0;
    }
}
#endif
