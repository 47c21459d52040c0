/* common.h: compiler helpers and debug assertions shared by every shim module. */
#ifndef MESH_COMMON_H
#define MESH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "span_table_abi.h"

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define MESH_NOINLINE   __attribute__((noinline))
#define MESH_EXPORT     __attribute__((visibility("default")))

#ifndef MESH_DEBUG
#define MESH_DEBUG 0
#endif

/*
 * Assertion levels.  MESH_CHECK stays on in release builds: it guards metadata against
 * the program's bad pointers and costs a compare.  MESH_ASSERT is for internal invariants
 * and compiles away unless MESH_DEBUG >= 1.
 */
void mesh_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn, cold));
#define MESH_CHECK(e) ((likely(e)) ? (void)0 : mesh_assert_fail(#e, __FILE__, __LINE__))
#if MESH_DEBUG >= 1
#define MESH_ASSERT(e) MESH_CHECK(e)
#else
#define MESH_ASSERT(e) ((void)0)
#endif

/* A failure-injection knob for tests: the environment variable `name`=N makes the Nth call
 * (1-based, per process) return 1; unset or 0, never.  Read at the first call. */
struct mesh_nth_call {
    int read;
    unsigned long at, calls;
};
int mesh_nth_call(struct mesh_nth_call *knob, const char *name);

static inline size_t mesh_align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }
static inline int mesh_is_pow2(size_t n) { return n && !(n & (n - 1)); }

/* CLOCK_MONOTONIC in nanoseconds (a vDSO read): for durations, never on the malloc path. */
static inline uint64_t mesh_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A CLOCK_MONOTONIC time as a timespec (deadlines for clock waits). */
static inline struct timespec mesh_timespec_of_ns(uint64_t ns)
{
    return (struct timespec){(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
}

#endif
