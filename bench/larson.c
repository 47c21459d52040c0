/* larson: the Larson & Krishnan server simulation, with fixed work instead of a
 * fixed duration so that wall time and throughput both mean something.
 *
 * Each of T threads works on a slot array: free a random slot's object and
 * malloc a new one of 16..512 bytes into it.  After every round of R operations
 * the thread hands its array to a shared queue and takes the oldest one there.
 * The queue holds T+1 arrays for T threads, so the array a thread takes was
 * always filled by someone else: from then on its frees are cross-thread frees,
 * as when a server's connection moves between worker threads.
 *
 * usage: larson [threads [slots [rounds [ops_per_round]]]]
 *        (defaults 4 2000 400 10000); prints ops/s of the threaded phase. */
#include "bench.h"

#include <pthread.h>

#define MIN_SIZE 16
#define MAX_SIZE 512

struct slot {
    void *p;
    uint32_t size;
    uint64_t tag;
};

/* FIFO of slot arrays that threads swap through; a mutex is enough because a
 * swap happens once per round of thousands of allocations. */
struct exchange {
    pthread_mutex_t lock;
    struct slot **arrays;
    size_t cap, head, count;
};

/* One per thread, each on cache lines of its own: the loop updates rng and checksum at
 * every operation, and workers sharing a line (a calloc'ed array of 56-byte structs did)
 * made the run time depend on where the allocator under test placed that array. */
struct worker {
    _Alignas(64) pthread_t thread;
    struct exchange *ex;
    struct rng rng;
    uint32_t nslots;
    uint64_t rounds, ops_per_round;
    uint64_t checksum; /* sum of the tags of the objects this thread freed */
};

static void slot_alloc(struct slot *s, struct rng *r)
{
    s->size = rng_between(r, MIN_SIZE, MAX_SIZE);
    s->tag = rng_next(r);
    s->p = bench_malloc_filled(s->size, s->tag);
}

static uint64_t slot_free(struct slot *s)
{
    bench_free_checked(s->p, s->size, s->tag);
    return s->tag;
}

static void exchange_put(struct exchange *ex, struct slot *array)
{
    ex->arrays[(ex->head + ex->count) % ex->cap] = array;
    ex->count++;
}

static struct slot *exchange_take(struct exchange *ex)
{
    struct slot *array = ex->arrays[ex->head];
    ex->head = (ex->head + 1) % ex->cap;
    ex->count--;
    return array;
}

/* Puts `mine` (unless NULL) at the back of the queue and returns the array at
 * the front. */
static struct slot *exchange_swap(struct exchange *ex, struct slot *mine)
{
    pthread_mutex_lock(&ex->lock);
    if (mine)
        exchange_put(ex, mine);
    struct slot *theirs = exchange_take(ex);
    pthread_mutex_unlock(&ex->lock);
    return theirs;
}

static void exchange_return(struct exchange *ex, struct slot *mine)
{
    pthread_mutex_lock(&ex->lock);
    exchange_put(ex, mine);
    pthread_mutex_unlock(&ex->lock);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct slot *slots = exchange_swap(w->ex, NULL);
    for (uint64_t round = 0; round < w->rounds; round++) {
        for (uint64_t op = 0; op < w->ops_per_round; op++) {
            struct slot *s = &slots[rng_below(&w->rng, w->nslots)];
            w->checksum += slot_free(s);
            slot_alloc(s, &w->rng);
        }
        slots = exchange_swap(w->ex, slots);
    }
    exchange_return(w->ex, slots);
    return NULL;
}

static struct slot *filled_array(uint32_t nslots, struct rng *r)
{
    struct slot *slots = calloc(nslots, sizeof *slots);
    if (!slots)
        bench_die("cannot allocate a slot array");
    for (uint32_t i = 0; i < nslots; i++)
        slot_alloc(&slots[i], r);
    return slots;
}

static uint64_t free_array(struct slot *slots, uint32_t nslots)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < nslots; i++)
        sum += slot_free(&slots[i]);
    free(slots);
    return sum;
}

int main(int argc, char **argv)
{
    uint32_t nthreads = (uint32_t)arg_count(argc, argv, 1, 4);
    uint32_t nslots = (uint32_t)arg_count(argc, argv, 2, 2000);
    uint64_t rounds = arg_count(argc, argv, 3, 400);
    uint64_t ops_per_round = arg_count(argc, argv, 4, 10000);

    struct exchange ex = { .lock = PTHREAD_MUTEX_INITIALIZER, .cap = nthreads + 1 };
    ex.arrays = calloc(ex.cap, sizeof *ex.arrays);
    struct worker *workers = aligned_alloc(_Alignof(struct worker), nthreads * sizeof *workers);
    if (!ex.arrays || !workers)
        bench_die("cannot allocate the thread tables");
    struct rng r = rng_seeded(0);
    for (size_t i = 0; i < ex.cap; i++)
        exchange_put(&ex, filled_array(nslots, &r));

    double start = now_seconds();
    for (uint32_t t = 0; t < nthreads; t++) {
        workers[t] = (struct worker){ .ex = &ex, .rng = rng_seeded(t + 1), .nslots = nslots,
                                      .rounds = rounds, .ops_per_round = ops_per_round };
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]))
            bench_die("pthread_create failed");
    }
    uint64_t checksum = 0;
    for (uint32_t t = 0; t < nthreads; t++) {
        pthread_join(workers[t].thread, NULL);
        checksum += workers[t].checksum;
    }
    double elapsed = now_seconds() - start;

    while (ex.count)
        checksum += free_array(exchange_take(&ex), nslots);
    free(ex.arrays);
    free(workers);
    /* one malloc and one free per operation, as Larson counts them */
    printf("ops/s: %.0f\n", 2.0 * (double)nthreads * (double)rounds * (double)ops_per_round / elapsed);
    printf("ops: %llu\n", 2ull * nthreads * (unsigned long long)rounds * (unsigned long long)ops_per_round);
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    return 0;
}
