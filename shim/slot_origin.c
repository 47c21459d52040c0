/* slot_origin.c: per-slot virtual-span origins of meshed spans (see slot_origin.h). */
#include "slot_origin.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "span_table.h"

#define SLOTS_PER_WORD 32u /* two bits each */
#define WORDS_PER_RECORD (MESH_MAX_SPAN_OBJECTS / SLOTS_PER_WORD)

static _Atomic uint64_t *origins; /* WORDS_PER_RECORD words per record id */

int mesh_origin_init(void)
{
    if (origins)
        return 0;
    /* Sized to the table's records (span_table.h), like the table itself. */
    void *p = mmap(NULL, (size_t)mesh_spans.header->max_records * WORDS_PER_RECORD * sizeof(uint64_t),
                   PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    origins = p;
    return 0;
}

int mesh_origin_ready(void) { return origins != NULL; }

void mesh_origin_shrink(uint32_t records)
{
    size_t keep = mesh_align_up((size_t)records * WORDS_PER_RECORD * sizeof(uint64_t), MESH_PAGE_SIZE);
    size_t had = (size_t)mesh_spans.header->max_records * WORDS_PER_RECORD * sizeof(uint64_t);
    if (origins && had > keep)
        munmap((uint8_t *)origins + keep, had - keep);
}

static _Atomic uint64_t *word_of(uint32_t id, unsigned slot)
{
    return &origins[(size_t)id * WORDS_PER_RECORD + slot / SLOTS_PER_WORD];
}

static unsigned shift_of(unsigned slot) { return (slot % SLOTS_PER_WORD) * 2; }

unsigned mesh_origin_get(uint32_t id, unsigned slot)
{
    if (!origins)
        return 0;
    return (unsigned)(atomic_load_explicit(word_of(id, slot), memory_order_acquire) >> shift_of(slot)) & 3u;
}

void mesh_origin_reset(uint32_t id, unsigned slot)
{
    if (origins)
        atomic_fetch_and(word_of(id, slot), ~(3ull << shift_of(slot)));
}

void mesh_origin_clear(uint32_t id)
{
    if (!origins)
        return;
    /* Only a record that was meshed can hold a non-zero word: skip the stores (and the
     * page faults on a table never touched) when the words are zero already. */
    for (unsigned w = 0; w < WORDS_PER_RECORD; w++)
        if (atomic_load_explicit(&origins[(size_t)id * WORDS_PER_RECORD + w], memory_order_relaxed))
            atomic_store(&origins[(size_t)id * WORDS_PER_RECORD + w], 0);
}

void mesh_origin_prepare(uint32_t dst)
{
    if (origins)
        atomic_fetch_or(word_of(dst, 0), 0); /* a write: the page is mapped writable */
}

void mesh_origin_absorb(uint32_t dst, uint32_t src, const mesh_bitmap *live, unsigned shift)
{
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++) {
        for (uint64_t bits = live->w[w]; bits; bits &= bits - 1) {
            unsigned slot = w * 64 + (unsigned)__builtin_ctzll(bits);
            uint64_t v = (uint64_t)((mesh_origin_get(src, slot) + shift) & 3u) << shift_of(slot);
            /* The slot is free in dst (the pair is disjoint), so its origin is 0: or it in. */
            atomic_fetch_or(word_of(dst, slot), v);
        }
    }
}
