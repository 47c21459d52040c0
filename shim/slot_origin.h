/*
 * slot_origin.h: through which virtual span each live object of a meshed span was handed out.
 *
 * After meshing, one physical span backs several virtual spans, and an offset means the same
 * slot through every one of them.  An object is still a single address: the one malloc
 * returned.  So a free of slot k through virtual span v is valid only if the object at k
 * was handed out through v; otherwise it frees an object that died before the mesh (a
 * double free of the other span's object), and must not release a live object of the other
 * span.  The shim therefore keeps, per record and slot, the index of the virtual span
 * (0..MESH_MAX_VIRTUAL_SPANS-1, two bits) the object lives at.
 *
 * Invariant: a slot's origin is 0 unless the slot holds an object handed out through
 * another virtual span.  It holds because malloc hands out slots of attached spans through
 * virtual span 0 only, a free of a meshed span's slot resets the origin to 0 before the
 * slot becomes free (bit cleared or pushed into a vector), and meshing sets the origins of
 * the source's live slots (shifted to their new indices) before their bits reach the
 * destination.  So a span that was never meshed has all origins 0 and its frees need not
 * look here (virt_count == 1).
 *
 * The table is private anonymous memory (2 bits x 256 slots = 64 bytes per record, never
 * touched for spans that were never meshed); fork children inherit it as it is.
 */
#ifndef MESH_SLOT_ORIGIN_H
#define MESH_SLOT_ORIGIN_H

#include <stdint.h>

#include "bitmap.h"

/* Maps the table; 0, or -1 (then meshing is refused: mesh_origin_ready() is 0). */
int mesh_origin_init(void);
int mesh_origin_ready(void);
/* Unmaps the origins of records at and above `records` (the span table shrank). */
void mesh_origin_shrink(uint32_t records);

unsigned mesh_origin_get(uint32_t id, unsigned slot);
/* Slot back to "virtual span 0": before it becomes free. */
void mesh_origin_reset(uint32_t id, unsigned slot);
/* Every slot of a new span: virtual span 0. */
void mesh_origin_clear(uint32_t id);
/* Meshing, before the barrier: faults in dst's entries, so that the barrier hold does not
 * pay for a first touch of the table. */
void mesh_origin_prepare(uint32_t dst);
/* Meshing: the live slots of src (live) now live in dst, src's virtual span i becoming
 * dst's virtual span shift + i. */
void mesh_origin_absorb(uint32_t dst, uint32_t src, const mesh_bitmap *live, unsigned shift);

#endif
