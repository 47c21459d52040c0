/* testutil.h: helpers shared by the check test programs. */
#ifndef MESH_TESTUTIL_H
#define MESH_TESTUTIL_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mesh.h"

/* A byte pattern derived from the object's address and a seed, so a misplaced or
 * overwritten object is detected, not just a zeroed one. */
static inline uint8_t pattern_byte(const void *base, size_t i, uint32_t seed)
{
    uint64_t x = (uint64_t)(uintptr_t)base * 0x9E3779B97F4A7C15ull + i * 131 + seed;
    return (uint8_t)(x >> 29);
}

static inline void pattern_fill(void *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++)
        ((uint8_t *)p)[i] = pattern_byte(p, i, seed);
}

/* Checks the pattern written at `origin` now sits at p (realloc moves objects). */
static inline int pattern_ok_from(const void *p, const void *origin, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++)
        if (((const uint8_t *)p)[i] != pattern_byte(origin, i, seed))
            return 0;
    return 1;
}

static inline int pattern_ok(const void *p, size_t n, uint32_t seed)
{
    return pattern_ok_from(p, p, n, seed);
}

/* A file of the program's own: unlinked, in /tmp, holding len bytes of a pattern (also
 * left in data) so that a test can check the shim never wrote it.  Returns its fd. */
static inline int patterned_temp_file(uint8_t *data, size_t len, unsigned seed)
{
    char path[] = "/tmp/mesh-test-fileXXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * seed + 1);
    ck_assert_int_eq(pwrite(fd, data, len, 0), (ssize_t)len);
    return fd;
}

/* Resident set size from /proc/self/status, in KiB (VmRSS). */
/* The open descriptors whose /proc/self/fd link contains `what` (up to max of them, into
 * out); their count. */
static inline unsigned fds_named(const char *what, int *out, unsigned max)
{
    unsigned n = 0;
    for (int fd = 0; fd < 4096 && n < max; fd++) {
        char path[64], link[256];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (len <= 0)
            continue;
        link[len] = '\0';
        if (strstr(link, what))
            out[n++] = fd;
    }
    return n;
}

static inline long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Every test is a test case of its own, named after the test, so that
 * `CK_RUN_CASE=<test name> build/tests/test_x` runs it alone.  A case is bounded by
 * CK_DEFAULT_TIMEOUT seconds when that is set (make sets it), else by CASE_TIMEOUT_SECONDS:
 * either bound only catches a hang, never a slow machine. */
#define CASE_TIMEOUT_SECONDS 300

/* The distinct span ids (mesh_span_of) of objs[0..n), into ids (room for max, checked);
 * their count. */
static inline unsigned distinct_spans(void *const *objs, unsigned n, uint32_t *ids, unsigned max)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        uint32_t id = mesh_span_of(objs[i]);
        unsigned j = 0;
        while (j < k && ids[j] != id)
            j++;
        if (j == k) {
            ck_assert_uint_lt(k, max);
            ids[k++] = id;
        }
    }
    return k;
}

static inline TCase *new_case(Suite *s, const TTest *test, SFun setup)
{
    TCase *tc = tcase_create(test->name);
    if (!getenv("CK_DEFAULT_TIMEOUT"))
        tcase_set_timeout(tc, CASE_TIMEOUT_SECONDS);
    if (setup)
        tcase_add_checked_fixture(tc, setup, NULL);
    suite_add_tcase(s, tc);
    return tc;
}

/* add_case(s, test, setup): TEST in a case of its own; SETUP (or NULL) runs before it, in
 * the test's own process. */
static inline void add_case(Suite *s, const TTest *test, SFun setup)
{
    tcase_add_test(new_case(s, test, setup), test);
}

/* add_loop_case(s, test, setup, start, end): the same for a loop test (_i = start..end-1). */
static inline void add_loop_case(Suite *s, const TTest *test, SFun setup, int start, int end)
{
    tcase_add_loop_test(new_case(s, test, setup), test, start, end);
}

/* Runs the suite with check's defaults (forked tests) and exits with its verdict. */
static inline int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
