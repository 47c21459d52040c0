/*
 * global_heap.h: spans that no thread owns, and large objects.
 *
 * Per size class, detached spans with free slots sit on a "partial" list under the class
 * lock; detached spans with no free slot are in no list (state DETACHED_FULL) until a free
 * makes room.  A detached span whose last object is freed gives its pages back to the
 * arena, or is kept on its class's empty list for the next refill (global_heap.c, "Emptied
 * spans kept for reuse").  The lock is taken only for these transitions, never per free.
 */
#ifndef MESH_GLOBAL_HEAP_H
#define MESH_GLOBAL_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "common.h"
#include "slot_origin.h"
#include "span_table.h"
#include "thread_heap.h"

/* Index of the virtual span of r that holds p (a meshed span has several), its byte offset
 * there in *off; -1 if none does. */
static inline int mesh_span_virt_index(const struct mesh_span_record *r, const void *p, uint32_t *off)
{
    uint32_t page = mesh_page_of(p);
    unsigned n = __atomic_load_n(&r->virt_count, __ATOMIC_ACQUIRE);
    if (n > MESH_MAX_VIRTUAL_SPANS)
        n = MESH_MAX_VIRTUAL_SPANS;
    for (unsigned i = 0; i < n; i++) {
        uint32_t first = __atomic_load_n(&r->virt_page[i], __ATOMIC_RELAXED);
        if (page - first < r->span_pages) {
            *off = (uint32_t)((const uint8_t *)p - mesh_page_addr(first));
            return (int)i;
        }
    }
    return -1;
}

/* Byte offset of p in whichever virtual span of r holds it, or UINT32_MAX if none does. */
static inline uint32_t mesh_span_offset(const struct mesh_span_record *r, const void *p)
{
    uint32_t off;
    return mesh_span_virt_index(r, p, &off) < 0 ? UINT32_MAX : off;
}

/* Whether p is the object slot `slot` of span id holds.  Always so for a span that was never
 * meshed; after meshing, only if the object was handed out through the virtual span p lies
 * in (slot_origin.h): otherwise p died before the mesh and the slot now holds the other
 * span's live object, so freeing p is a double free. */
static inline int mesh_slot_is(uint32_t id, const struct mesh_span_record *r, unsigned slot, const void *p)
{
    if (likely(__atomic_load_n(&r->virt_count, __ATOMIC_ACQUIRE) <= 1))
        return 1;
    uint32_t off;
    int v = mesh_span_virt_index(r, p, &off);
    return v >= 0 && mesh_origin_get(id, slot) == (unsigned)v;
}

/* A free found p's bit already clear in span id.  If id was just meshed away (its record
 * is a tombstone), waits for the page map to name the new owner and returns it; else
 * returns 0: a real double free. */
uint32_t mesh_span_after_mesh(uint32_t id, const void *p);

/* Attaches a span of class cls to owner; *claimed receives its free slots, now marked
 * allocated.  Returns the record id, or 0 if memory is exhausted. */
uint32_t mesh_global_acquire_span(unsigned cls, uint32_t owner, uint64_t claimed[MESH_BITMAP_WORDS]);
/* Detaches an attached span; unclaim lists the slots the owner still held (its vector). */
void mesh_global_release_span(uint32_t id, const uint64_t unclaim[MESH_BITMAP_WORDS]);
/* The same for n <= MESH_RELEASE_MAX spans of class cls, under one hold of the class lock. */
#define MESH_RELEASE_MAX MESH_OWNED_MAX
void mesh_global_release_spans(unsigned cls, uint32_t n, const uint32_t ids[],
                               const uint64_t unclaim[][MESH_BITMAP_WORDS]);
/* Owner only: claims slots freed by other threads in its attached span; returns how many. */
unsigned mesh_global_reclaim(struct mesh_thread_heap *h, uint32_t id,
                             uint64_t claimed[MESH_BITMAP_WORDS]);
/* Frees slot `slot` of small span id when the caller does not own the span. */
void mesh_global_free_small(struct mesh_thread_heap *h, uint32_t id, unsigned slot, const void *p,
                            const char *call);
/* Frees n small objects of spans the caller does not own (a foreign-free cache's batch),
 * in runs of one span: the same checks and result as mesh_global_free_small on each. */
void mesh_global_free_batch(struct mesh_thread_heap *h, void *const *objs, uint32_t n, const char *call);

/* Emptied spans kept for reuse (global_heap.c): the poll that runs a tick every
 * EMPTY_TICK_MS (refills and the control thread call it; no lock held), the tick itself
 * (lets go of what stayed kept since the last tick; tests call it directly), the pages
 * kept, and a trim that lets all of them go and then punches every dirty page
 * (malloc_trim, memory pressure, meshd's rounds), for at most budget_ns of punching when
 * not 0 (mesh_arena_trim_for); returns the pages punched. */
void mesh_global_empty_poll(void);
void mesh_global_empty_tick(void);
uint64_t mesh_global_empty_pages(void);
size_t mesh_global_trim(uint64_t budget_ns);

void *mesh_large_alloc(size_t size, size_t align, int zero);
void mesh_large_free(struct mesh_thread_heap *h, uint32_t id, const void *p, const char *call);
/* Grows or shrinks large object id in place to hold `size` bytes; 1 on success. */
int mesh_large_resize(struct mesh_thread_heap *h, uint32_t id, size_t size);
static inline size_t mesh_large_usable(const struct mesh_span_record *r)
{
    return (size_t)r->span_pages << MESH_PAGE_SHIFT;
}

/* Meshing engine: the class lock, and taking a detached span off its list (unlist) and
 * putting it back where its occupancy says (place, which may destroy it). Lock held. */
void mesh_class_lock(unsigned cls);
void mesh_class_unlock(unsigned cls);
void mesh_class_unlist(unsigned cls, uint32_t id);
void mesh_class_place(unsigned cls, uint32_t id);

/* Fork support: every class lock, in a fixed order. */
void mesh_global_lock_all(void);
void mesh_global_unlock_all(void);
void mesh_global_lock_reset_all(void);

struct mesh_heap_usage {
    uint64_t small_spans, large_objects;
    uint64_t small_bytes_live, large_bytes;
};
void mesh_global_usage(struct mesh_heap_usage *out);

/* Heap walk: checks records, page map and class lists against each other.  Returns the
 * number of inconsistencies (0 for a sound heap).  Other threads must be quiet. */
int mesh_global_check(void);

#endif
