/* churn: batch alloc/free bursts, each thread freeing only its own blocks.
 *
 * Every round a thread allocates a batch of objects (sizes skewed small, 16 B to
 * 2 KiB, plus one in 64 a large object of 16 to 128 KiB), fills them, then frees the
 * whole batch in a shuffled order.  The live heap swings between nothing and a few
 * megabytes per thread every round: the spans of each batch empty out and their pages
 * go back to the allocator, and the next batch wants them again.  An allocator that
 * returns those pages to the OS after every burst faults them all back in each round
 * (xmalloc-test's pattern, without the cross-thread part).
 *
 * usage: churn [threads [rounds [batch]]]  (defaults 1 400 20000); prints ops/s. */
#include <pthread.h>

#include "bench.h"

struct object {
    void *p;
    uint32_t size;
    uint64_t tag;
};

/* Each on cache lines of its own: checksum is updated at every free (see larson.c). */
struct worker {
    _Alignas(64) pthread_t thread;
    unsigned index;
    uint64_t rounds, batch, checksum;
};

static uint32_t churn_size(struct rng *r)
{
    uint64_t x = rng_next(r);
    if ((x & 63) == 0)
        return rng_between(r, 16u << 10, 128u << 10);
    unsigned bucket = (unsigned)((x >> 8) % 8); /* 16 B .. 2 KiB, power-of-two buckets */
    uint32_t base = 16u << bucket;
    return base + (uint32_t)((x >> 32) % base);
}

static void *work(void *arg)
{
    struct worker *w = arg;
    struct rng r = rng_seeded(w->index + 1);
    struct object *batch = calloc(w->batch, sizeof *batch);
    if (!batch)
        bench_die("cannot allocate the batch table");
    for (uint64_t round = 0; round < w->rounds; round++) {
        for (uint64_t i = 0; i < w->batch; i++) {
            batch[i].size = churn_size(&r);
            batch[i].tag = rng_next(&r);
            /* First and last words only: the point is the allocator, not memset. */
            batch[i].p = bench_malloc(batch[i].size);
            memcpy(batch[i].p, &batch[i].tag, 8);
            memcpy((char *)batch[i].p + batch[i].size - 8, &batch[i].tag, 8);
        }
        for (uint64_t i = w->batch - 1; i > 0; i--) {
            uint64_t j = rng_below(&r, (uint32_t)(i + 1));
            struct object t = batch[i];
            batch[i] = batch[j];
            batch[j] = t;
        }
        for (uint64_t i = 0; i < w->batch; i++) {
            uint64_t head, tail;
            memcpy(&head, batch[i].p, 8);
            memcpy(&tail, (char *)batch[i].p + batch[i].size - 8, 8);
            if (head != batch[i].tag || tail != batch[i].tag)
                bench_die("object %p (%u bytes) was corrupted", batch[i].p, batch[i].size);
            w->checksum += batch[i].tag ^ batch[i].size;
            free(batch[i].p);
        }
    }
    free(batch);
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t nthreads = arg_count(argc, argv, 1, 1);
    uint64_t rounds = arg_count(argc, argv, 2, 400);
    uint64_t batch = arg_count(argc, argv, 3, 20000);
    if (nthreads > 64)
        bench_die("at most 64 threads");
    struct worker workers[64];
    double start = now_seconds();
    for (unsigned t = 0; t < nthreads; t++) {
        workers[t] = (struct worker){.index = t, .rounds = rounds, .batch = batch};
        if (pthread_create(&workers[t].thread, NULL, work, &workers[t]) != 0)
            bench_die("pthread_create failed");
    }
    uint64_t checksum = 0;
    for (unsigned t = 0; t < nthreads; t++) {
        pthread_join(workers[t].thread, NULL);
        checksum += workers[t].checksum;
    }
    double elapsed = now_seconds() - start;
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    printf("ops/s: %.0f\n", 2.0 * (double)nthreads * (double)rounds * (double)batch / elapsed);
    printf("ops: %llu\n", 2ull * nthreads * (unsigned long long)rounds * (unsigned long long)batch);
    return 0;
}
