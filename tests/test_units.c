/* test_units.c: size classes, bitmaps, the shuffle vector and the PRNG, in isolation. */
#include "testutil.h"

#include "bitmap.h"
#include "rng.h"
#include "shuffle.h"
#include "size_class.h"

static void setup(void) { mesh_size_classes_init(); }

START_TEST(classes_cover_every_size)
{
    for (size_t n = 0; n <= MESH_MAX_SMALL; n++) {
        unsigned c = mesh_class_of(n);
        ck_assert_uint_ge(c, 1);
        ck_assert_uint_le(c, MESH_CLASS_COUNT);
        ck_assert_uint_ge(mesh_classes[c].size, n);
        /* the smallest class that fits */
        if (c > 1)
            ck_assert_uint_lt(mesh_classes[c - 1].size, n ? n : 1);
    }
}
END_TEST

START_TEST(classes_are_well_formed)
{
    for (unsigned c = 1; c <= MESH_CLASS_COUNT; c++) {
        const struct mesh_class *k = &mesh_classes[c];
        ck_assert_uint_eq(k->size % 16, 0);
        ck_assert_uint_le(k->capacity, MESH_MAX_SPAN_OBJECTS);
        ck_assert_uint_ge(k->capacity, 4);
        uint32_t bytes = k->span_pages * MESH_PAGE_SIZE;
        ck_assert_uint_le((uint64_t)k->capacity * k->size, bytes);
        /* waste at most 1/16 of the span, or capacity capped at 256 */
        ck_assert(k->capacity == MESH_MAX_SPAN_OBJECTS || (bytes - k->capacity * k->size) * 16 <= bytes);
        if (c > 1) {
            ck_assert_uint_gt(k->size, mesh_classes[c - 1].size);
            /* internal fragmentation bounded: next class at most 25% (or 16 bytes) larger */
            ck_assert(k->size - mesh_classes[c - 1].size <= 16 ||
                      (k->size - mesh_classes[c - 1].size) * 4 <= mesh_classes[c - 1].size);
        }
    }
    ck_assert_uint_eq(mesh_classes[MESH_CLASS_COUNT].size, MESH_MAX_SMALL);
}
END_TEST

START_TEST(reciprocal_is_exact_for_every_offset)
{
    for (unsigned c = 1; c <= MESH_CLASS_COUNT; c++) {
        const struct mesh_class *k = &mesh_classes[c];
        uint32_t bytes = k->span_pages * MESH_PAGE_SIZE;
        for (uint32_t off = 0; off < bytes; off++)
            ck_assert_uint_eq(mesh_slot_of_offset(off, k->recip), off / k->size);
    }
}
END_TEST

START_TEST(aligned_classes)
{
    for (size_t align = 16; align <= MESH_PAGE_SIZE; align *= 2) {
        for (size_t n = 1; n <= MESH_MAX_SMALL; n += 97) {
            unsigned c = mesh_class_for_aligned(n, align);
            ck_assert_uint_ne(c, 0);
            ck_assert_uint_eq(mesh_classes[c].size % align, 0);
            ck_assert_uint_ge(mesh_classes[c].size, n);
        }
    }
    ck_assert_uint_eq(mesh_class_for_aligned(MESH_MAX_SMALL + 1, 16), 0);
}
END_TEST

START_TEST(bitmap_ops)
{
    uint64_t words[MESH_BITMAP_WORDS] = {0};
    for (unsigned i = 0; i < 256; i += 3)
        words[i >> 6] |= 1ull << (i & 63);
    mesh_bitmap b = mesh_bitmap_load(words);
    ck_assert_uint_eq(mesh_bitmap_popcount(&b), 86);
    ck_assert(mesh_bitmap_clear_atomic(words, 3));
    ck_assert(!mesh_bitmap_clear_atomic(words, 3)); /* second clear reports the double free */
    ck_assert(!mesh_bitmap_clear_atomic(words, 4));
    for (unsigned i = 0; i < 256; i += 3)
        mesh_bitmap_clear_atomic(words, i);
    b = mesh_bitmap_load(words);
    ck_assert(mesh_bitmap_empty(&b));
    ck_assert_uint_eq(mesh_bitmap_valid_word(85, 0), ~0ull);
    ck_assert_uint_eq(mesh_bitmap_valid_word(85, 1), (1ull << 21) - 1);
    ck_assert_uint_eq(mesh_bitmap_valid_word(85, 2), 0);
    ck_assert_uint_eq(mesh_bitmap_valid_word(256, 3), ~0ull);
}
END_TEST

START_TEST(shuffle_holds_each_slot_once)
{
    static struct mesh_shuffle v;
    uint64_t rng = 12345;
    uint64_t mask[MESH_BITMAP_WORDS] = {~0ull, ~0ull, 0xffff, 0};
    mesh_shuffle_clear(&v);
    mesh_shuffle_fill(&v, mask, &rng);
    ck_assert_uint_eq(v.count, 144);
    int seen[256] = {0};
    for (unsigned i = 0; i < 144; i++) {
        unsigned s = mesh_shuffle_pop(&v);
        ck_assert_uint_lt(s, 144);
        ck_assert_int_eq(seen[s]++, 0);
        ck_assert(!mesh_shuffle_contains(&v, s));
    }
    ck_assert_uint_eq(v.count, 0);
    for (unsigned s = 0; s < 144; s++) {
        mesh_shuffle_push(&v, s);
        ck_assert(mesh_shuffle_contains(&v, s));
    }
    ck_assert_uint_eq(v.count, 144);
    memset(seen, 0, sizeof seen);
    while (v.count) {
        unsigned s = mesh_shuffle_pop(&v);
        ck_assert_int_eq(seen[s]++, 0);
    }
}
END_TEST

/* A refill hands the free slots out in address order (what a program walking its objects
 * in allocation order streams through), from a random first slot, wrapping around: spans
 * start at independent offsets, which is what meshing needs from the order. */
START_TEST(shuffle_hands_out_in_address_order_from_a_random_slot)
{
    static struct mesh_shuffle v;
    uint64_t rng = 777;
    /* free slots: 3..63 and 100..130, with holes at 10 and 120 */
    uint64_t mask[MESH_BITMAP_WORDS] = {~0ull << 3 & ~(1ull << 10), ~0ull << 36, (1ull << 3) - 1, 0};
    mask[1] &= ~(1ull << (120 - 64));
    unsigned expect_count = 0, free_slot[256];
    for (unsigned s = 0; s < 256; s++)
        if ((mask[s >> 6] >> (s & 63)) & 1)
            free_slot[expect_count++] = s;
    int started_at[256] = {0};
    unsigned starts = 0;
    for (int fill = 0; fill < 64; fill++) {
        mesh_shuffle_clear(&v);
        mesh_shuffle_fill(&v, mask, &rng);
        ck_assert_uint_eq(v.count, expect_count);
        unsigned first = mesh_shuffle_pop(&v), k = 0;
        while (free_slot[k] != first)
            k++;
        starts += started_at[k]++ == 0;
        for (unsigned i = 1; i < expect_count; i++)
            ck_assert_uint_eq(mesh_shuffle_pop(&v), free_slot[(k + i) % expect_count]);
        ck_assert_uint_eq(v.count, 0);
    }
    /* 64 fills over 90 possible starts: a fixed start (every span alike) would give 1 */
    ck_assert_uint_gt(starts, 20);
    /* a local free is handed out next (LIFO), its memory still in the cache */
    mesh_shuffle_fill(&v, mask, &rng);
    unsigned s = mesh_shuffle_pop(&v);
    mesh_shuffle_push(&v, s);
    ck_assert_uint_eq(mesh_shuffle_pop(&v), s);
}
END_TEST

START_TEST(rng_below_is_in_range_and_spread)
{
    uint64_t rng = 99;
    unsigned hist[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint32_t r = mesh_rng_below(&rng, 7);
        ck_assert_uint_lt(r, 7);
        hist[r]++;
    }
    for (int i = 0; i < 7; i++)
        ck_assert(hist[i] > 9000 && hist[i] < 11000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("units");
    add_case(s, classes_cover_every_size, setup);
    add_case(s, classes_are_well_formed, setup);
    add_case(s, reciprocal_is_exact_for_every_offset, setup);
    add_case(s, aligned_classes, setup);
    add_case(s, bitmap_ops, setup);
    add_case(s, shuffle_holds_each_slot_once, setup);
    add_case(s, shuffle_hands_out_in_address_order_from_a_random_slot, setup);
    add_case(s, rng_below_is_in_range_and_spread, setup);
    return run_suite(s);
}
