/* realloc: buffers that grow, and whose contents must survive every move.
 *
 * Phase 1, creeping growth: B buffers grow round-robin by 16..64 bytes each
 * step until each reaches its own random limit of 1..4 KiB, then is freed and
 * restarted.  Round-robin matters: with a single buffer the allocator could
 * always extend in place; with neighbours growing too it must often move.
 * Phase 2, doubling: a few buffers double from 4 KiB up to a random 1..8 MiB,
 * the path of vectors and string builders, where large copies (or mremap) and
 * page faults decide the cost.
 *
 * After each realloc the whole old contents are checked, then the new tail is
 * filled, so a buffer always holds exactly its pattern.
 *
 * usage: realloc [small_reallocs [doubling_rounds]]  (defaults 5000000 30) */
#include "bench.h"

#define SMALL_BUFFERS 1000
#define SMALL_MIN 1024 /* growth limits: each buffer picks one in [MIN, MAX] */
#define SMALL_MAX 4096
#define LARGE_BUFFERS 8
#define LARGE_START 4096
#define LARGE_MIN (1u << 20)
#define LARGE_MAX (8u << 20)

static uint64_t calls; /* reallocs and frees made, for "ops:" */

struct buffer {
    void *p;
    size_t len, limit;
    uint64_t tag;
};

/* Grows b to new_len, checking that realloc kept the old bytes. */
static void buffer_grow(struct buffer *b, size_t new_len)
{
    void *p = realloc(b->p, new_len);
    calls++;
    if (!p)
        bench_die("realloc(%zu) returned NULL", new_len);
    if (!aligned_for(p, new_len))
        bench_die("realloc(%zu) returned misaligned %p", new_len, p);
    if (!pattern_ok(p, b->len, b->tag))
        bench_die("realloc from %zu to %zu bytes lost the contents", b->len, new_len);
    pattern_fill(p, b->len, new_len, b->tag);
    b->p = p;
    b->len = new_len;
}

/* Makes b an empty buffer that will grow to a random limit in [min, max]. */
static void buffer_start(struct buffer *b, struct rng *r, uint32_t min_limit, uint32_t max_limit)
{
    *b = (struct buffer){ .limit = rng_between(r, min_limit, max_limit), .tag = rng_next(r) };
}

/* Checks and frees b; returns its tag for the checksum. */
static uint64_t buffer_free(struct buffer *b)
{
    bench_free_checked(b->p, b->len, b->tag);
    calls++;
    return b->tag;
}

static uint64_t creeping_growth(uint64_t nreallocs, struct rng *r)
{
    struct buffer bufs[SMALL_BUFFERS];
    uint64_t checksum = 0;
    for (size_t i = 0; i < SMALL_BUFFERS; i++)
        buffer_start(&bufs[i], r, SMALL_MIN, SMALL_MAX);
    for (uint64_t n = 0; n < nreallocs; n++) {
        struct buffer *b = &bufs[n % SMALL_BUFFERS];
        if (b->len >= b->limit) {
            checksum += buffer_free(b);
            buffer_start(b, r, SMALL_MIN, SMALL_MAX);
        }
        buffer_grow(b, b->len + rng_between(r, 16, 64));
    }
    for (size_t i = 0; i < SMALL_BUFFERS; i++)
        checksum += buffer_free(&bufs[i]);
    return checksum;
}

/* One round: all large buffers start small and double, interleaved, until each
 * is past its limit; then they are checked and freed. */
static uint64_t doubling_round(struct rng *r)
{
    struct buffer bufs[LARGE_BUFFERS];
    uint64_t checksum = 0;
    for (size_t i = 0; i < LARGE_BUFFERS; i++)
        buffer_start(&bufs[i], r, LARGE_MIN, LARGE_MAX);
    for (bool grew = true; grew;) {
        grew = false;
        for (size_t i = 0; i < LARGE_BUFFERS; i++) {
            struct buffer *b = &bufs[i];
            if (b->len < b->limit) {
                buffer_grow(b, b->len ? 2 * b->len : LARGE_START);
                grew = true;
            }
        }
    }
    for (size_t i = 0; i < LARGE_BUFFERS; i++)
        checksum += buffer_free(&bufs[i]);
    return checksum;
}

int main(int argc, char **argv)
{
    uint64_t small_reallocs = arg_count(argc, argv, 1, 5000000);
    uint64_t rounds = arg_count(argc, argv, 2, 30);
    struct rng r = rng_seeded(3);
    uint64_t checksum = creeping_growth(small_reallocs, &r);
    for (uint64_t i = 0; i < rounds; i++)
        checksum += doubling_round(&r);
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    printf("ops: %llu\n", (unsigned long long)calls);
    return 0;
}
