/*
 * bitmap.h: the 256-bit occupancy bitmap of a span.  Shared bitmaps (in span records)
 * are changed only with atomic read-modify-write: the owning thread sets bits when it
 * claims free slots, any thread clears a bit when it frees an object.
 */
#ifndef MESH_BITMAP_H
#define MESH_BITMAP_H

#include <stdatomic.h>
#include <stdint.h>

#include "common.h"

typedef struct {
    uint64_t w[MESH_BITMAP_WORDS];
} mesh_bitmap;

static inline _Atomic uint64_t *mesh_bitmap_word(uint64_t *words, unsigned bit)
{
    return (_Atomic uint64_t *)&words[bit >> 6];
}

/* Clears bit; returns nonzero if it was set (zero means a double free). */
static inline int mesh_bitmap_clear_atomic(uint64_t *words, unsigned bit)
{
    uint64_t mask = 1ull << (bit & 63);
    return (atomic_fetch_and(mesh_bitmap_word(words, bit), ~mask) & mask) != 0;
}

static inline uint64_t mesh_bitmap_load_word(uint64_t *words, unsigned i)
{
    return atomic_load_explicit((_Atomic uint64_t *)&words[i], memory_order_acquire);
}

/* Snapshot of a shared bitmap (each word atomically; not a snapshot across words). */
static inline mesh_bitmap mesh_bitmap_load(uint64_t *words)
{
    mesh_bitmap b;
    for (unsigned i = 0; i < MESH_BITMAP_WORDS; i++)
        b.w[i] = mesh_bitmap_load_word(words, i);
    return b;
}

static inline unsigned mesh_bitmap_popcount(const mesh_bitmap *b)
{
    unsigned n = 0;
    for (unsigned i = 0; i < MESH_BITMAP_WORDS; i++)
        n += (unsigned)__builtin_popcountll(b->w[i]);
    return n;
}

static inline int mesh_bitmap_empty(const mesh_bitmap *b)
{
    uint64_t any = 0;
    for (unsigned i = 0; i < MESH_BITMAP_WORDS; i++)
        any |= b->w[i];
    return any == 0;
}

#endif
