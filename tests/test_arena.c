/* test_arena.c: the page-range allocator, page map and span table, driven directly. */
#include "testutil.h"

#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "global_heap.h"
#include "span_table.h"

static uint64_t committed_bytes(void)
{
    struct stat st;
    ck_assert_int_eq(fstat(mesh_arena_fd(), &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

static void setup(void) { mesh_free(mesh_malloc(1)); /* initialise */ }

START_TEST(arena_is_a_memfd_and_table_is_published)
{
    ck_assert_int_ge(mesh_arena_fd(), 0);
    ck_assert_int_ge(mesh_span_table_fd(), 0);
    const struct mesh_span_table_header *h = mesh_spans.header;
    ck_assert_uint_eq(h->magic, MESH_SPAN_TABLE_MAGIC);
    ck_assert_uint_eq(h->version, MESH_SPAN_TABLE_VERSION);
    ck_assert_uint_eq(h->record_size, sizeof(struct mesh_span_record));
    ck_assert_int_eq(h->pid, getpid()); /* fork child (check forks) republished its pid */
    ck_assert_uint_eq(h->class_count, MESH_CLASS_COUNT);
    ck_assert_uint_ge(mesh_arena.bytes, 1ull << 30);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

START_TEST(fresh_ranges_are_adjacent_and_coalesce)
{
    int z;
    uint32_t a = mesh_pages_alloc(1000, 1, &z);
    ck_assert(z);
    uint32_t b = mesh_pages_alloc(1000, 1, &z);
    uint32_t c = mesh_pages_alloc(1000, 1, &z);
    ck_assert_uint_eq(b, a + 1000);
    ck_assert_uint_eq(c, b + 1000);
    mesh_pages_free(b, 1000);
    mesh_pages_free(a, 1000);
    ck_assert_int_eq(mesh_arena_check(), 0);
    /* a and b merged: 2000 pages fit exactly where a was, and they are dirty (not zero) */
    uint32_t ab = mesh_pages_alloc(2000, 1, &z);
    ck_assert_uint_eq(ab, a);
    ck_assert(!z);
    mesh_pages_free(ab, 2000);
    mesh_pages_free(c, 1000);
    ck_assert_int_eq(mesh_arena_check(), 0);
}
END_TEST

START_TEST(aligned_page_ranges)
{
    int z;
    for (uint32_t align = 1; align <= 512; align *= 2) {
        uint32_t p = mesh_pages_alloc(3, align, &z);
        ck_assert_uint_ne(p, MESH_NO_PAGE);
        ck_assert_uint_eq((uintptr_t)mesh_page_addr(p) % ((uintptr_t)align * MESH_PAGE_SIZE), 0);
        mesh_pages_free(p, 3);
    }
    ck_assert_int_eq(mesh_arena_check(), 0);
}
END_TEST

START_TEST(extend_in_place)
{
    int z;
    uint32_t a = mesh_pages_alloc(100, 1, &z);
    uint32_t b = mesh_pages_alloc(100, 1, &z);
    ck_assert_uint_eq(b, a + 100);
    ck_assert(!mesh_pages_extend(a, 100, 150, &z)); /* b is in the way */
    mesh_pages_free(b, 100);
    ck_assert(mesh_pages_extend(a, 100, 150, &z));
    ck_assert(mesh_pages_extend(a, 150, 400, &z)); /* the rest of b, then fresh pages */
    ck_assert_int_eq(mesh_arena_check(), 0);
    mesh_pages_free(a, 400);
    ck_assert_int_eq(mesh_arena_check(), 0);
}
END_TEST

START_TEST(exhaustion_is_reported)
{
    int z;
    ck_assert_uint_eq(mesh_pages_alloc(mesh_arena.total_pages, 1, &z), MESH_NO_PAGE);
    ck_assert_uint_eq(mesh_pages_alloc(0, 1, &z), MESH_NO_PAGE);
    ck_assert_int_eq(mesh_arena_check(), 0);
}
END_TEST

START_TEST(punch_hole_returns_memory)
{
    int z;
    uint32_t n = 4096; /* 16 MiB: above the dirty minimum */
    uint32_t p = mesh_pages_alloc(n, 1, &z);
    uint64_t before = committed_bytes();
    memset(mesh_page_addr(p), 0xab, (size_t)n * MESH_PAGE_SIZE);
    ck_assert_uint_ge(committed_bytes(), before + (uint64_t)n * MESH_PAGE_SIZE);
    struct mesh_stats s0, s1;
    mesh_stats_get(&s0);
    mesh_pages_free(p, n);
    /* over the dirty limit: released (hysteresis keeps at most half the limit) */
    mesh_stats_get(&s1);
    ck_assert_uint_gt(s1.released_bytes, s0.released_bytes);
    mesh_malloc_trim(0);
    mesh_stats_get(&s1);
    ck_assert_uint_eq(s1.dirty_bytes, 0);
    ck_assert_uint_le(committed_bytes(), before + 64 * MESH_PAGE_SIZE);
    /* punched pages read as zero when reused */
    uint32_t q = mesh_pages_alloc(n, 1, &z);
    ck_assert(z);
    ck_assert_uint_eq(mesh_page_addr(q)[0], 0);
    ck_assert_uint_eq(mesh_page_addr(q)[(size_t)n * MESH_PAGE_SIZE - 1], 0);
    mesh_pages_free(q, n);
    ck_assert_int_eq(mesh_arena_check(), 0);
}
END_TEST

START_TEST(records_recycle_with_new_generation)
{
    uint32_t id = mesh_record_alloc();
    ck_assert_uint_ne(id, 0);
    ck_assert_uint_lt(id, mesh_record_hwm());
    uint32_t gen = mesh_record(id)->generation;
    mesh_record_free(id);
    ck_assert_uint_eq(mesh_record_state(mesh_record(id)), MESH_SPAN_FREE);
    uint32_t again = mesh_record_alloc();
    ck_assert_uint_eq(again, id); /* LIFO reuse */
    ck_assert_uint_ne(mesh_record(again)->generation, gen);
    mesh_record_free(again);
}
END_TEST

START_TEST(large_objects_have_their_own_span)
{
    size_t sizes[] = {16385, 65536, 1 << 20, (5 << 20) + 3};
    for (unsigned i = 0; i < 4; i++) {
        uint8_t *p = mesh_malloc(sizes[i]);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % MESH_PAGE_SIZE, 0);
        ck_assert_uint_ge(mesh_malloc_usable_size(p), sizes[i]);
        ck_assert_uint_lt(mesh_malloc_usable_size(p), sizes[i] + MESH_PAGE_SIZE);
        uint32_t id = mesh_pagemap_get(mesh_page_of(p));
        ck_assert_uint_eq(mesh_record_state(mesh_record(id)), MESH_SPAN_LARGE);
        pattern_fill(p, sizes[i], i);
        ck_assert(pattern_ok(p, sizes[i], i));
        mesh_free(p);
        /* the page now starts a free range or nothing: a stale free of p is caught */
        uint32_t e = mesh_pagemap_get(mesh_page_of(p));
        ck_assert(e == 0 || (e & MESH_PAGE_FREE_TAG));
    }
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("arena");
    add_case(s, arena_is_a_memfd_and_table_is_published, setup);
    add_case(s, fresh_ranges_are_adjacent_and_coalesce, setup);
    add_case(s, aligned_page_ranges, setup);
    add_case(s, extend_in_place, setup);
    add_case(s, exhaustion_is_reported, setup);
    add_case(s, punch_hole_returns_memory, setup);
    add_case(s, records_recycle_with_new_generation, setup);
    add_case(s, large_objects_have_their_own_span, setup);
    return run_suite(s);
}
