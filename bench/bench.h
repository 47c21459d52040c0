/* Helpers shared by the benchmark workloads: a fast PRNG, a position-dependent
 * fill pattern that every object carries so the workload can prove the
 * allocator kept it intact, and argument parsing.  Everything is static inline
 * because each workload is a single translation unit compiled by bench/run.sh. */
#ifndef MESH_BENCH_H
#define MESH_BENCH_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Multiplier of the fill pattern: word j of an object holds tag + j * PATTERN_STEP,
 * so a copy to the wrong offset, a truncated copy or a stray write all show up. */
#define PATTERN_STEP 0x9E3779B97F4A7C15ull

static inline _Noreturn void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("FAIL: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* xorshift64*: one multiply per number; quality is ample for picking sizes and slots. */
struct rng {
    uint64_t s;
};

static inline struct rng rng_seeded(uint64_t seed)
{
    /* splitmix64 step so that small consecutive seeds give unrelated streams */
    uint64_t z = seed + PATTERN_STEP;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (struct rng){ .s = z ? z : 1 };
}

static inline uint64_t rng_next(struct rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, n) for n < 2^32, by multiply-shift instead of a division. */
static inline uint32_t rng_below(struct rng *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * n) >> 32);
}

static inline uint32_t rng_between(struct rng *r, uint32_t lo, uint32_t hi)
{
    return lo + rng_below(r, hi - lo + 1);
}

static inline uint8_t pattern_byte(uint64_t tag, size_t i)
{
    return (uint8_t)((tag + (i / 8) * PATTERN_STEP) >> (8 * (i % 8)));
}

/* Writes the pattern of `tag` into bytes [from, to) of p.  Whole words go
 * through memcpy so the loop vectorises and the cost stays close to memset's. */
static inline void pattern_fill(void *p, size_t from, size_t to, uint64_t tag)
{
    unsigned char *b = p;
    size_t i = from;
    for (; i < to && i % 8; i++)
        b[i] = pattern_byte(tag, i);
    for (; i + 8 <= to; i += 8) {
        uint64_t w = tag + (i / 8) * PATTERN_STEP;
        memcpy(b + i, &w, 8);
    }
    for (; i < to; i++)
        b[i] = pattern_byte(tag, i);
}

/* True if bytes [0, len) of p still hold the pattern of `tag`. */
static inline bool pattern_ok(const void *p, size_t len, uint64_t tag)
{
    const unsigned char *b = p;
    uint64_t diff = 0;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        diff |= w ^ (tag + (i / 8) * PATTERN_STEP);
    }
    for (; i < len; i++)
        diff |= b[i] ^ pattern_byte(tag, i);
    return diff == 0;
}

/* C11 promises alignment for any object that fits; every allocator measured here
 * gives min(16, largest power of two <= size), so that is what we demand. */
static inline bool aligned_for(const void *p, size_t size)
{
    size_t align = 16;
    while (align > size && align > 1)
        align /= 2;
    return ((uintptr_t)p & (align - 1)) == 0;
}

/* malloc that turns NULL or a misaligned block into a loud failure. */
static inline void *bench_malloc(size_t size)
{
    void *p = malloc(size);
    if (!p)
        bench_die("malloc(%zu) returned NULL", size);
    if (!aligned_for(p, size))
        bench_die("malloc(%zu) returned misaligned %p", size, p);
    return p;
}

static inline void *bench_malloc_filled(size_t size, uint64_t tag)
{
    void *p = bench_malloc(size);
    pattern_fill(p, 0, size, tag);
    return p;
}

/* Verifies an object's pattern, then frees it. */
static inline void bench_free_checked(void *p, size_t size, uint64_t tag)
{
    if (!pattern_ok(p, size, tag))
        bench_die("object %p (%zu bytes, tag %016llx) was corrupted", p, size,
                  (unsigned long long)tag);
    free(p);
}

/* argv[i] as a positive count, or `dflt` when absent; lets run.sh's workload list
 * carry the parameters and lets a quick manual run use small ones. */
static inline uint64_t arg_count(int argc, char **argv, int i, uint64_t dflt)
{
    if (i >= argc)
        return dflt;
    char *end;
    unsigned long long v = strtoull(argv[i], &end, 10);
    if (*argv[i] == '\0' || *end != '\0' || v == 0)
        bench_die("argument %d: expected a positive integer, got '%s'", i, argv[i]);
    return v;
}

static inline double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
