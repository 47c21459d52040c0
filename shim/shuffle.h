/*
 * shuffle.h: a thread's vector of the free slots of its attached span, in the order malloc
 * hands them out.
 *
 * A refill lays the free slots out in address order starting at a random one (a random
 * rotation, wrapping at the end): the span's objects are handed out at consecutive
 * addresses, as a program that walks what it allocated in order expects (its loads then
 * stream through the span and the hardware prefetches them), while each span starts at an
 * offset of its own.  That start is what meshing needs from the order: a program whose
 * objects die by their allocation order (the first ones of a batch survive, every other
 * one survives) leaves each span's survivors at independent offsets instead of at the
 * same offsets in every span.  A local free pushes on top (LIFO), so the slot just freed,
 * still in the cache, is the next one handed out.
 *
 * Why not a full shuffle (DESIGN.md's shuffle vector, a Fisher-Yates permutation per
 * refill): it scatters consecutive allocations over the span, which cost CPython 30% of its
 * time building and walking lists (bench/pyburst.py 1: user 1.16 s against 0.86 s in
 * address order; jemalloc 0.81 s) and meshes no better (docs/ALLOCATOR.md, "Differences
 * from DESIGN.md").
 *
 * Invariant:  bit s of `present` set  <=>  s == slots[i] for exactly one i < count.
 * `present` makes a local double free an O(1) check.
 */
#ifndef MESH_SHUFFLE_H
#define MESH_SHUFFLE_H

#include <stdint.h>

#include "common.h"
#include "rng.h"

struct mesh_shuffle {
    uint32_t count;
    uint64_t present[MESH_BITMAP_WORDS];
    uint8_t slots[MESH_MAX_SPAN_OBJECTS];
};

static inline int mesh_shuffle_contains(const struct mesh_shuffle *v, unsigned slot)
{
    return (v->present[slot >> 6] >> (slot & 63)) & 1;
}

static inline unsigned mesh_shuffle_pop(struct mesh_shuffle *v)
{
    unsigned slot = v->slots[--v->count];
    v->present[slot >> 6] &= ~(1ull << (slot & 63));
    return slot;
}

/* Caller guarantees !contains(slot) and count < MESH_MAX_SPAN_OBJECTS. */
static inline void mesh_shuffle_push(struct mesh_shuffle *v, unsigned slot)
{
    v->slots[v->count++] = (uint8_t)slot;
    v->present[slot >> 6] |= 1ull << (slot & 63);
}

/* Adds every slot in mask (disjoint from present) and lays the whole vector out again:
 * pops then return the free slots in address order from a random one, wrapping around. */
static inline void mesh_shuffle_fill(struct mesh_shuffle *v, const uint64_t mask[MESH_BITMAP_WORDS],
                                     uint64_t *rng)
{
    uint8_t sorted[MESH_MAX_SPAN_OBJECTS];
    uint32_t n = 0;
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++) {
        v->present[w] |= mask[w];
        for (uint64_t bits = v->present[w]; bits; bits &= bits - 1)
            sorted[n++] = (uint8_t)(w * 64 + (unsigned)__builtin_ctzll(bits));
    }
    /* slots[] is popped from the top: slots[n - 1] = sorted[start], then onwards. */
    uint32_t from = n ? mesh_rng_below(rng, n) : 0;
    for (uint32_t i = n; i-- > 0;) {
        v->slots[i] = sorted[from];
        from = from + 1 < n ? from + 1 : 0;
    }
    v->count = n;
}

static inline void mesh_shuffle_clear(struct mesh_shuffle *v)
{
    v->count = 0;
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++)
        v->present[w] = 0;
}

#endif
