/*
 * malloc_api.c: the malloc family, with glibc's semantics.
 *
 * Fast paths (small malloc from the thread's vector, free of an object of a span the thread
 * owns) are inline here and touch only the thread heap, the page map and one record.
 * Everything else is a call into thread_heap.c / global_heap.c.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "bitmap.h"
#include "control.h"
#include "global_heap.h"
#include "init.h"
#include "mesh.h"
#include "report.h"
#include "sandbox.h"
#include "size_class.h"
#include "span_table.h"
#include "thread_heap.h"

/* ---- locating a pointer ------------------------------------------------------------------ */

/* What a pointer into the arena refers to, after validation. */
struct located {
    uint32_t id;
    struct mesh_span_record *rec; /* not read for small objects: the page info says enough */
    unsigned cls;   /* 0 for large objects */
    unsigned slot;  /* small objects */
    size_t usable;
};

/* Slot of p in the small span whose page info is info (its class non-zero), or -1 if p is
 * not a slot start: the validation every path from a pointer to a small slot makes. */
static inline __attribute__((always_inline)) int small_slot(unsigned info, const void *p)
{
    const struct mesh_class *k = &mesh_classes[MESH_PAGEINFO_CLASS(info)];
    uint32_t off = mesh_pageinfo_offset(info, p);
    unsigned slot = mesh_slot_of_offset(off, k->recip);
    return slot * k->size == off && slot < k->capacity ? (int)slot : -1;
}

/*
 * Validates p as the start of a live object.  Returns 0 if p is outside the arena (not
 * ours); aborts with a glibc-style message if p is inside it but not an object start.
 * This is the only way from a program's pointer to metadata.  Small objects are checked
 * against the page info (class, page index in the span), so the span's record is not
 * touched: on a large heap it is a cache miss, and free/malloc_usable_size pay it often.
 */
static int locate(const void *p, struct located *out, const char *call)
{
    if (!mesh_in_arena(p))
        return 0;
    uint32_t page = mesh_page_of(p);
    uint32_t id = mesh_pagemap_get(page);
    if (id == 0 || (id & MESH_PAGE_FREE_TAG) || id >= mesh_record_hwm())
        mesh_heap_error(call, "invalid pointer", p);
    struct mesh_span_record *r = mesh_record(id);
    unsigned info = mesh_pageinfo_get(page);
    unsigned cls = MESH_PAGEINFO_CLASS(info);
    out->id = id;
    out->rec = r;
    out->cls = cls;
    if (cls == 0) {
        if (r->size_class != 0 || mesh_page_addr(r->virt_page[0]) != p)
            mesh_heap_error(call, "invalid pointer", p);
        out->slot = 0;
        out->usable = mesh_large_usable(r);
        return 1;
    }
    int slot = small_slot(info, p);
    if (slot < 0)
        mesh_heap_error(call, "invalid pointer", p);
    out->slot = (unsigned)slot;
    out->usable = mesh_classes[cls].size;
    return 1;
}

/* ---- malloc ------------------------------------------------------------------------------ */

static MESH_NOINLINE void *malloc_slow(size_t n, int zero)
{
    if (!mesh_ready()) {
        errno = ENOMEM;
        return NULL;
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
static inline __attribute__((always_inline)) void *cache_alloc(struct mesh_thread_heap *h, unsigned cls)
{
    struct mesh_class_cache *c = &h->cache[cls];
    /* While a fork child copies the heap, memory freed after fork must not be reused:
     * the child may still hold the objects that were there. */
    if (unlikely(atomic_load_explicit(&mesh_fork_pending, memory_order_relaxed)))
        mesh_fork_wait();
    if (c->foreign_count) {
        uintptr_t *p = c->foreign[--c->foreign_count];
        p[1] = 0;
        return p;
    }
    if (likely(c->vec.count))
        return c->base + (size_t)mesh_shuffle_pop(&c->vec) * c->size;
    return mesh_thread_refill_alloc(h, cls);
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

/* ---- free -------------------------------------------------------------------------------- */

static MESH_NOINLINE void free_slow(void *p, const char *call)
{
    if (p == NULL)
        return;
    int saved = errno;
    struct located loc;
    if (!locate(p, &loc, call))
        mesh_heap_error(call, "invalid pointer", p); /* glibc would abort too */
    struct mesh_thread_heap *h = mesh_thread_heap_for_free();
    if (loc.cls == 0) {
        mesh_large_free(h, loc.id, p, call);
    } else {
        struct mesh_class_cache *c = &h->cache[loc.cls];
        if (c->span_id == loc.id) {
            /* Our own span, reached here because the heap was just created. */
            if (mesh_shuffle_contains(&c->vec, loc.slot) || !mesh_slot_is(loc.id, loc.rec, loc.slot, p))
                mesh_heap_error(call, "double free", p);
            mesh_origin_reset(loc.id, loc.slot); /* malloc hands it out through virtual span 0 */
            mesh_shuffle_push(&c->vec, loc.slot, &h->rng);
        } else {
            mesh_global_free_small(h, loc.id, loc.slot, p, call);
        }
    }
    errno = saved;
}

/*
 * Local free: the page map names the span, the span's class names the cache; if this
 * thread owns the span, the slot goes back into its vector.  Checks that stay on in
 * release: p is a slot start (reciprocal multiply, compare) and not already free.
 */
static inline __attribute__((always_inline)) void free_impl(void *p, const char *call)
{
    struct mesh_thread_heap *h = mesh_tl_heap;
    if (likely(h != NULL && mesh_in_arena(p))) {
        uint32_t page = mesh_page_of(p);
        uint32_t id = mesh_pagemap_get(page);
        /* The map holds record ids (< MESH_MAX_RECORDS) or tagged free ranges, 0 for none;
         * the page info holds the class of a small span's page (0: not one), so the span's
         * record is not read here (mesh_thread_free_foreign reads its bitmap only). */
        if (likely(id - 1 < MESH_PAGE_FREE_TAG - 1)) {
            unsigned info = mesh_pageinfo_get(page);
            unsigned cls = MESH_PAGEINFO_CLASS(info);
            struct mesh_class_cache *c = &h->cache[cls];
            if (likely(c->span_id == id)) {
                uint32_t off = (uint32_t)((uint8_t *)p - c->base);
                unsigned slot = mesh_slot_of_offset(off, c->recip);
                if (likely(slot * c->size == off && slot < c->capacity &&
                           !mesh_shuffle_contains(&c->vec, slot))) {
                    mesh_shuffle_push(&c->vec, slot, &h->rng);
                    return;
                }
                /* A double free, an invalid pointer, or a meshed span (capacity 0, see
                 * attach()): the slow path tells which. */
                free_slow(p, call);
                return;
            }
            if (likely(cls != 0)) {
                int slot = small_slot(info, p);
                if (unlikely(slot < 0))
                    mesh_heap_error(call, "invalid pointer", p);
                mesh_thread_free_foreign(h, cls, p, id, (unsigned)slot, call);
                return;
            }
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
    if (!mesh_ready()) {
        errno = ENOMEM;
        return NULL;
    }
    if (align <= MESH_PAGE_SIZE && n <= MESH_MAX_SMALL) {
        unsigned cls = mesh_class_for_aligned(n, align);
        if (cls)
            return mesh_malloc(mesh_classes[cls].size);
    }
    void *p = mesh_large_alloc(n, align, 0);
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
    struct located loc;
    if (!locate(p, &loc, "realloc"))
        mesh_heap_error("realloc", "invalid pointer", p);
    if (loc.cls != 0) {
        /* Stay put while the request still fits and would not waste half the object. */
        if (n <= loc.usable && (n > loc.usable / 2 || loc.usable <= 16))
            return p;
    } else if (n > MESH_MAX_SMALL && mesh_large_resize(mesh_thread_heap_for_free(), loc.id, n)) {
        return p;
    }
    void *q = mesh_malloc(n);
    if (!q)
        return NULL; /* errno is ENOMEM; p is untouched, as the standard requires */
    memcpy(q, p, n < loc.usable ? n : loc.usable);
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
    /* Fast path for small objects: the page info alone (2 bytes per page, dense), the
     * same validation as locate() minus the record-id bound (a page with info belongs to
     * a live small span). */
    if (likely(mesh_in_arena(p))) {
        unsigned info = mesh_pageinfo_get(mesh_page_of(p));
        if (likely(info != 0) && likely(small_slot(info, p) >= 0))
            return mesh_classes[MESH_PAGEINFO_CLASS(info)].size;
    }
    struct located loc;
    if (p == NULL || !locate(p, &loc, "malloc_usable_size"))
        return 0;
    return loc.usable;
}

MESH_EXPORT int mesh_malloc_trim(size_t pad)
{
    (void)pad;
    if (atomic_load(&mesh_init_state) != MESH_INIT_DONE)
        return 0;
    return mesh_arena_trim() > 0;
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
    return mesh_global_check();
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
