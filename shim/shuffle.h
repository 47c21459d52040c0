/*
 * shuffle.h: a thread's shuffle vector of free slots in its attached span.
 *
 * malloc pops the last slot; a local free pushes at a uniformly random position (swap with
 * the end).  A refill fills the vector from a free-slot mask and shuffles it (Fisher-Yates),
 * so consecutive allocations land at random offsets: that is what makes two spans' live
 * offsets likely to be disjoint, i.e. meshable.
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
static inline void mesh_shuffle_push(struct mesh_shuffle *v, unsigned slot, uint64_t *rng)
{
    uint32_t pos = mesh_rng_below(rng, v->count + 1);
    v->slots[v->count++] = v->slots[pos];
    v->slots[pos] = (uint8_t)slot;
    v->present[slot >> 6] |= 1ull << (slot & 63);
}

/* Adds every slot in mask (disjoint from present) and reshuffles the whole vector. */
static inline void mesh_shuffle_fill(struct mesh_shuffle *v, const uint64_t mask[MESH_BITMAP_WORDS],
                                     uint64_t *rng)
{
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++) {
        uint64_t bits = mask[w];
        v->present[w] |= bits;
        while (bits) {
            v->slots[v->count++] = (uint8_t)(w * 64 + (unsigned)__builtin_ctzll(bits));
            bits &= bits - 1;
        }
    }
    for (uint32_t i = v->count; i > 1; i--) {
        uint32_t j = mesh_rng_below(rng, i);
        uint8_t t = v->slots[i - 1];
        v->slots[i - 1] = v->slots[j];
        v->slots[j] = t;
    }
}

static inline void mesh_shuffle_clear(struct mesh_shuffle *v)
{
    v->count = 0;
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++)
        v->present[w] = 0;
}

#endif
