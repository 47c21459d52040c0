/* mixed: one thread, small objects of mixed sizes, random allocs and frees.
 *
 * A table of 2*N slots starts half full; each operation picks a random slot and
 * frees its object if it has one, else allocates one.  The live count therefore
 * random-walks around N, and frees hit objects of every age in random order,
 * which is what spreads live objects over many spans.
 *
 * usage: mixed [operations [working_set]]  (defaults 20000000 100000) */
#include "bench.h"

#define MIN_SIZE 8
#define MAX_SIZE 2048

struct slot {
    void *p; /* NULL when empty */
    uint32_t size;
    uint64_t tag;
};

/* Sizes skewed small, as in real programs: the power-of-two bucket is chosen
 * geometrically (half the objects are 8..15 bytes, a quarter 16..31, ...), then
 * the size is uniform inside it. */
static uint32_t skewed_size(struct rng *r)
{
    uint64_t x = rng_next(r);
    unsigned bucket = (unsigned)__builtin_ctzll(x | (1ull << 7)); /* 0..7 */
    uint32_t base = MIN_SIZE << bucket;
    uint32_t size = base + (uint32_t)((x >> 32) % base);
    return size < MAX_SIZE ? size : MAX_SIZE;
}

static void slot_alloc(struct slot *s, struct rng *r)
{
    s->size = skewed_size(r);
    s->tag = rng_next(r);
    s->p = bench_malloc_filled(s->size, s->tag);
}

/* Frees the slot's object after checking it; returns its tag for the checksum. */
static uint64_t slot_free(struct slot *s)
{
    bench_free_checked(s->p, s->size, s->tag);
    s->p = NULL;
    return s->tag;
}

int main(int argc, char **argv)
{
    uint64_t ops = arg_count(argc, argv, 1, 20000000);
    uint64_t nslots = 2 * arg_count(argc, argv, 2, 100000);
    struct slot *slots = calloc(nslots, sizeof *slots);
    if (!slots)
        bench_die("cannot allocate the slot table");
    struct rng r = rng_seeded(1);
    uint64_t checksum = 0;

    for (uint64_t i = 0; i < nslots; i += 2)
        slot_alloc(&slots[i], &r);
    for (uint64_t op = 0; op < ops; op++) {
        struct slot *s = &slots[rng_below(&r, (uint32_t)nslots)];
        if (s->p)
            checksum += slot_free(s);
        else
            slot_alloc(s, &r);
    }
    for (uint64_t i = 0; i < nslots; i++)
        if (slots[i].p)
            checksum += slot_free(&slots[i]);
    free(slots);
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    printf("ops: %llu\n", (unsigned long long)ops); /* each a malloc or a free */
    return 0;
}
