/* test_api.c: the malloc family's glibc semantics, through the mesh_* entry points. */
#include "testutil.h"
#include "arena.h"
#include "global_heap.h"

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

START_TEST(malloc_zero_and_small)
{
    void *p = mesh_malloc(0);
    ck_assert_ptr_nonnull(p);
    void *q = mesh_malloc(0);
    ck_assert_ptr_ne(p, q); /* unique pointers */
    mesh_free(p);
    mesh_free(q);
    mesh_free(NULL);
    for (size_t n = 1; n <= 20000; n = n * 5 / 4 + 1) {
        uint8_t *o = mesh_malloc(n);
        ck_assert_ptr_nonnull(o);
        ck_assert_uint_eq((uintptr_t)o % 16, 0);
        ck_assert_uint_ge(mesh_malloc_usable_size(o), n);
        pattern_fill(o, mesh_malloc_usable_size(o), 7);
        ck_assert(pattern_ok(o, mesh_malloc_usable_size(o), 7));
        mesh_free(o);
    }
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

START_TEST(enomem_on_impossible_sizes)
{
    errno = 0;
    ck_assert_ptr_null(mesh_malloc(SIZE_MAX));
    ck_assert_int_eq(errno, ENOMEM);
    errno = 0;
    ck_assert_ptr_null(mesh_malloc(SIZE_MAX / 2));
    ck_assert_int_eq(errno, ENOMEM);
    errno = 0;
    ck_assert_ptr_null(mesh_calloc(SIZE_MAX / 2, 3)); /* overflow */
    ck_assert_int_eq(errno, ENOMEM);
    errno = 0;
    ck_assert_ptr_null(mesh_calloc(1ull << 33, 1ull << 33));
    ck_assert_int_eq(errno, ENOMEM);
    errno = 0;
    ck_assert_ptr_null(mesh_reallocarray(NULL, SIZE_MAX, 2));
    ck_assert_int_eq(errno, ENOMEM);
    void *p = mesh_malloc(100);
    errno = 0;
    ck_assert_ptr_null(mesh_realloc(p, SIZE_MAX - 4096)); /* fails, p untouched */
    ck_assert_int_eq(errno, ENOMEM);
    pattern_fill(p, 100, 1);
    ck_assert(pattern_ok(p, 100, 1));
    mesh_free(p);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

START_TEST(free_preserves_errno)
{
    void *small = mesh_malloc(32), *large = mesh_malloc(1 << 20);
    errno = EILSEQ;
    mesh_free(small);
    ck_assert_int_eq(errno, EILSEQ);
    mesh_free(large);
    ck_assert_int_eq(errno, EILSEQ);
    mesh_free(NULL);
    ck_assert_int_eq(errno, EILSEQ);
}
END_TEST

START_TEST(calloc_zeroes)
{
    for (size_t n = 1; n < (8u << 20); n = n * 3 + 1) {
        uint8_t *p = mesh_calloc(1, n);
        ck_assert_ptr_nonnull(p);
        for (size_t i = 0; i < n; i += 61)
            ck_assert_uint_eq(p[i], 0);
        ck_assert_uint_eq(p[n - 1], 0);
        memset(p, 0xee, n); /* dirty it: the next calloc of this size must still be zero */
        mesh_free(p);
        p = mesh_calloc(n, 1);
        for (size_t i = 0; i < n; i += 61)
            ck_assert_uint_eq(p[i], 0);
        ck_assert_uint_eq(p[n - 1], 0);
        mesh_free(p);
    }
    ck_assert_ptr_nonnull(mesh_calloc(0, 0));
}
END_TEST

START_TEST(alignments_up_to_and_past_a_page)
{
    for (size_t align = sizeof(void *); align <= (1u << 21); align *= 2) {
        size_t sizes[] = {1, 24, align, align + 1, 3 * align + 5, 20000};
        for (unsigned i = 0; i < 6; i++) {
            void *p = NULL;
            ck_assert_int_eq(mesh_posix_memalign(&p, align, sizes[i]), 0);
            ck_assert_uint_eq((uintptr_t)p % align, 0);
            ck_assert_uint_ge(mesh_malloc_usable_size(p), sizes[i]);
            pattern_fill(p, sizes[i], 3);
            void *q = mesh_aligned_alloc(align, sizes[i]);
            ck_assert_uint_eq((uintptr_t)q % align, 0);
            void *r = mesh_memalign(align, sizes[i]);
            ck_assert_uint_eq((uintptr_t)r % align, 0);
            ck_assert(pattern_ok(p, sizes[i], 3));
            mesh_free(p);
            mesh_free(q);
            mesh_free(r);
        }
    }
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

START_TEST(alignment_errors)
{
    void *p = (void *)1;
    ck_assert_int_eq(mesh_posix_memalign(&p, 3, 10), EINVAL);
    ck_assert_int_eq(mesh_posix_memalign(&p, 4, 10), EINVAL); /* < sizeof(void *) */
    ck_assert_int_eq(mesh_posix_memalign(&p, 0, 10), EINVAL);
    ck_assert_ptr_eq(p, (void *)1); /* untouched on error */
    ck_assert_int_eq(mesh_posix_memalign(&p, 64, SIZE_MAX / 2), ENOMEM);
    errno = 0;
    ck_assert_ptr_null(mesh_aligned_alloc(24, 10));
    ck_assert_int_eq(errno, EINVAL);
    /* memalign rounds a non-power-of-two alignment up, like glibc */
    void *q = mesh_memalign(24, 10);
    ck_assert_ptr_nonnull(q);
    ck_assert_uint_eq((uintptr_t)q % 32, 0);
    mesh_free(q);
    errno = 0;
    ck_assert_ptr_null(mesh_memalign(SIZE_MAX, 10));
    ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(valloc_and_pvalloc)
{
    long page = sysconf(_SC_PAGESIZE);
    void *v = mesh_valloc(10);
    ck_assert_uint_eq((uintptr_t)v % (uintptr_t)page, 0);
    void *pv = mesh_pvalloc(10);
    ck_assert_uint_eq((uintptr_t)pv % (uintptr_t)page, 0);
    ck_assert_uint_ge(mesh_malloc_usable_size(pv), (size_t)page);
    void *pz = mesh_pvalloc(0);
    ck_assert_uint_ge(mesh_malloc_usable_size(pz), (size_t)page);
    mesh_free(v);
    mesh_free(pv);
    mesh_free(pz);
}
END_TEST

START_TEST(realloc_keeps_contents)
{
    ck_assert_ptr_null(mesh_realloc(mesh_malloc(10), 0)); /* glibc: frees, returns NULL */
    uint8_t *p = mesh_realloc(NULL, 5);
    ck_assert_ptr_nonnull(p);
    pattern_fill(p, 5, 9);
    size_t n = 5;
    uint8_t *origin = p;
    /* grow through small classes into large objects, in small and large steps */
    while (n < (6u << 20)) {
        size_t next = n < 100000 ? n + 1 + n / 3 : n * 2;
        uint8_t *q = mesh_realloc(p, next);
        ck_assert_ptr_nonnull(q);
        ck_assert(pattern_ok_from(q, origin, n, 9));
        ck_assert_uint_ge(mesh_malloc_usable_size(q), next);
        for (size_t i = n; i < next; i++)
            q[i] = pattern_byte(origin, i, 9);
        p = q;
        n = next;
    }
    /* and shrink back down */
    while (n > 3) {
        n = n / 3;
        p = mesh_realloc(p, n);
        ck_assert_ptr_nonnull(p);
        ck_assert(pattern_ok_from(p, origin, n, 9));
    }
    mesh_free(p);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

START_TEST(realloc_large_in_place)
{
    uint8_t *p = mesh_malloc(1 << 20);
    pattern_fill(p, 1 << 20, 4);
    uint8_t *q = mesh_realloc(p, 2 << 20); /* the pages after it are free or fresh */
    ck_assert_ptr_eq(q, p);
    ck_assert(pattern_ok(q, 1 << 20, 4));
    q = mesh_realloc(q, 256 << 10); /* shrink in place, tail returned */
    ck_assert_ptr_eq(q, p);
    ck_assert_uint_eq(mesh_malloc_usable_size(q), 256 << 10);
    ck_assert(pattern_ok(q, 256 << 10, 4));
    mesh_free(q);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

START_TEST(usable_size_and_mallinfo)
{
    ck_assert_uint_eq(mesh_malloc_usable_size(NULL), 0);
    void *objs[1000];
    for (int i = 0; i < 1000; i++)
        memset(objs[i] = mesh_malloc(100), 1, 100); /* touched: the memfd commits pages */
    struct mesh_stats s;
    mesh_stats_get(&s);
    ck_assert_uint_ge(s.live_bytes, 1000 * 100);
    ck_assert_uint_ge(s.heap_bytes, s.live_bytes / 2);
    ck_assert_int_eq(s.shared_arena, 1);
    ck_assert_uint_gt(s.committed_bytes, 0);
    for (int i = 0; i < 1000; i++)
        mesh_free(objs[i]);
}
END_TEST

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RSS_IS_OURS 0 /* the sanitizer's shadow memory moves RSS too */
#else
#define RSS_IS_OURS 1
#endif

/* A program that frees everything returns close to the RSS it started with once the freed
 * pages have aged (driven here by two ticks of the emptied spans kept for reuse, which then
 * go back to the arena, and a release pass run as if the decay period had passed): checked
 * on the arena's committed pages, and on VmRSS where it is ours alone.  Before that, no more
 * than the hard bound (128 MiB) and the kept spans (32 MiB) stay resident. */
START_TEST(freeing_everything_returns_memory)
{
    enum { N = 200000, SIZE = 1000 }; /* ~200 MiB */
    void **objs = mesh_malloc(N * sizeof *objs);
    struct mesh_stats s;
    long start = rss_kib();
    mesh_stats_get(&s);
    uint64_t committed_start = s.committed_bytes;
    for (int i = 0; i < N; i++) {
        objs[i] = mesh_malloc(SIZE + (size_t)(i % 7) * 16);
        memset(objs[i], i, SIZE);
    }
    long peak = rss_kib();
    mesh_stats_get(&s);
    ck_assert_uint_gt(s.committed_bytes, committed_start + (150u << 20));
    for (int i = 0; i < N; i++)
        mesh_free(objs[i]);
    mesh_thread_flush();
    mesh_arena_poll();
    mesh_stats_get(&s);
    ck_assert_msg(s.committed_bytes < committed_start + (128u << 20) + (32u << 20) + (16u << 20),
                  "committed %llu -> %llu before aging", (unsigned long long)committed_start,
                  (unsigned long long)s.committed_bytes);
    mesh_global_empty_tick(); /* starts a period: none taken since */
    mesh_global_empty_tick(); /* all of them unused for a whole period */
    ck_assert_uint_eq(mesh_global_empty_pages(), 0);
    mesh_arena_purge_at(mesh_arena_clock_ms() + MESH_PURGE_DELAY_MS);
    mesh_stats_get(&s);
    ck_assert_msg(s.committed_bytes < committed_start + (16u << 20), "committed %llu -> %llu",
                  (unsigned long long)committed_start, (unsigned long long)s.committed_bytes);
    long end = rss_kib();
    if (RSS_IS_OURS)
        ck_assert_msg(end - start < 24 * 1024, "RSS start %ld KiB, peak %ld, end %ld", start, peak, end);
    mesh_free(objs);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

/* Frees of objects of detached spans go through the foreign stack and its double-free
 * check (thread_heap.h): thousands of distinct frees, interleaved with mallocs that pop
 * the stack and frees that halve it, are never taken for double frees, and every object's
 * contents survive until it is freed. */
START_TEST(foreign_frees_are_not_false_double_frees)
{
    enum { N = 6000 };
    unsigned char **objs = mesh_malloc(N * sizeof *objs);
    for (unsigned i = 0; i < N; i++) {
        objs[i] = mesh_malloc(32 + (i % 3) * 16);
        memset(objs[i], (int)(i & 0xff), 32);
    }
    mesh_thread_flush(); /* every span detached: all frees below are foreign */
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned i = round; i < N; i += 3) {
            for (unsigned k = 0; k < 32; k++)
                ck_assert_uint_eq(objs[i][k], i & 0xff);
            mesh_free(objs[i]);
            if (i % 7 == 0) { /* a malloc pops the stack (and clears the object's key) */
                objs[i] = mesh_malloc(32 + (i % 3) * 16);
                memset(objs[i], (int)(i & 0xff), 32);
            } else {
                objs[i] = NULL;
            }
        }
    }
    for (unsigned i = 0; i < N; i++)
        mesh_free(objs[i]);
    mesh_free(objs);
    mesh_thread_flush();
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("api");
    add_case(s, malloc_zero_and_small, NULL);
    add_case(s, enomem_on_impossible_sizes, NULL);
    add_case(s, free_preserves_errno, NULL);
    add_case(s, calloc_zeroes, NULL);
    add_case(s, alignments_up_to_and_past_a_page, NULL);
    add_case(s, alignment_errors, NULL);
    add_case(s, valloc_and_pvalloc, NULL);
    add_case(s, realloc_keeps_contents, NULL);
    add_case(s, realloc_large_in_place, NULL);
    add_case(s, usable_size_and_mallinfo, NULL);
    add_case(s, freeing_everything_returns_memory, NULL);
    add_case(s, foreign_frees_are_not_false_double_frees, NULL);
    return run_suite(s);
}
