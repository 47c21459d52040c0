/*
 * size_class.h: small-object size classes.
 *
 * Classes are multiples of 16 up to MESH_MAX_SMALL, four per power of two above 128, so
 * internal fragmentation is at most 25% (12.5% above 256 bytes on average).  Each class has
 * a span of span_pages pages holding capacity = span bytes / size objects, capacity <= 256.
 *
 * Lookup is a table indexed by (n + 15) >> 4: one load, no branches, no division.
 * Slot index from a byte offset uses a 32-bit reciprocal:  slot = (off * recip) >> 32 with
 * recip = floor(2^32 / size) + 1, exact for every off < span bytes (tested exhaustively).
 */
#ifndef MESH_SIZE_CLASS_H
#define MESH_SIZE_CLASS_H

#include <stdint.h>

#include "common.h"

#define MESH_MAX_SMALL   16384u
#define MESH_CLASS_COUNT 36u

struct mesh_class {
    uint32_t size;
    uint32_t recip;
    uint16_t span_pages;
    uint16_t capacity;
};

extern struct mesh_class mesh_classes[MESH_CLASS_COUNT + 1]; /* [0] unused: large */
extern uint8_t mesh_class_of_index[MESH_MAX_SMALL / 16 + 1];

void mesh_size_classes_init(void);

/* Class of a request of n <= MESH_MAX_SMALL bytes (n == 0 gets the smallest class). */
static inline unsigned mesh_class_of(size_t n) { return mesh_class_of_index[(n + 15) >> 4]; }

static inline uint32_t mesh_slot_of_offset(uint32_t off, uint32_t recip)
{
    return (uint32_t)(((uint64_t)off * recip) >> 32);
}

/* Smallest class >= n whose objects are all aligned to `align` (a power of two <= 4096),
 * or 0 if none: objects start at page-aligned span + i * size, so size % align == 0. */
unsigned mesh_class_for_aligned(size_t n, size_t align);

#endif
