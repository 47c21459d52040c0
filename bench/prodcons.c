/* prodcons: every object is freed by a thread other than the one that made it.
 *
 * Producer threads malloc objects of 16..256 bytes, fill them, and send them in
 * batches through a bounded queue; consumer threads verify and free them.  The
 * batch descriptor is itself malloc'd by the producer and freed by the consumer.
 * Batching keeps the queue lock out of the measurement's way (one lock round
 * trip per BATCH objects), so the remote-free path of the allocator dominates.
 *
 * usage: prodcons [producers [consumers [objects_per_producer]]]
 *        (defaults 2 2 8000000) */
#include "bench.h"

#include <pthread.h>

#define MIN_SIZE 16
#define MAX_SIZE 256
#define BATCH 64
#define QUEUE_CAP 64 /* batches in flight: bounds memory, forces producers to wait */

struct object {
    void *p;
    uint32_t size;
    uint64_t tag;
};

struct batch {
    uint32_t n;
    struct object obj[BATCH];
};

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    struct batch *items[QUEUE_CAP];
    size_t head, count;
    bool closed; /* set once every producer is done */
};

/* Each on cache lines of its own: checksum is updated at every object, and arguments
 * sharing a line would make the time depend on where the allocator under test put the
 * array (see larson.c). */
struct thread_arg {
    _Alignas(64) pthread_t thread;
    struct queue *q;
    uint64_t seed, nobjects;
    uint64_t checksum; /* sum of tags produced, or verified by a consumer */
};

static void queue_push(struct queue *q, struct batch *b)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == QUEUE_CAP)
        pthread_cond_wait(&q->not_full, &q->lock);
    q->items[(q->head + q->count) % QUEUE_CAP] = b;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

/* Returns the next batch, or NULL once the queue is closed and drained. */
static struct batch *queue_pop(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0 && !q->closed)
        pthread_cond_wait(&q->not_empty, &q->lock);
    struct batch *b = NULL;
    if (q->count) {
        b = q->items[q->head];
        q->head = (q->head + 1) % QUEUE_CAP;
        q->count--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->lock);
    return b;
}

static void queue_close(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

static struct batch *make_batch(uint32_t n, struct rng *r, uint64_t *checksum)
{
    struct batch *b = bench_malloc(sizeof *b);
    b->n = n;
    for (uint32_t i = 0; i < n; i++) {
        struct object *o = &b->obj[i];
        o->size = rng_between(r, MIN_SIZE, MAX_SIZE);
        o->tag = rng_next(r);
        o->p = bench_malloc_filled(o->size, o->tag);
        *checksum += o->tag;
    }
    return b;
}

static void *producer_main(void *arg)
{
    struct thread_arg *a = arg;
    struct rng r = rng_seeded(a->seed);
    for (uint64_t left = a->nobjects; left > 0;) {
        uint32_t n = left < BATCH ? (uint32_t)left : BATCH;
        queue_push(a->q, make_batch(n, &r, &a->checksum));
        left -= n;
    }
    return NULL;
}

static void *consumer_main(void *arg)
{
    struct thread_arg *a = arg;
    struct batch *b;
    while ((b = queue_pop(a->q))) {
        for (uint32_t i = 0; i < b->n; i++) {
            bench_free_checked(b->obj[i].p, b->obj[i].size, b->obj[i].tag);
            a->checksum += b->obj[i].tag;
        }
        free(b);
    }
    return NULL;
}

static void start(struct thread_arg *a, void *(*fn)(void *))
{
    if (pthread_create(&a->thread, NULL, fn, a))
        bench_die("pthread_create failed");
}

/* Joins n threads and returns the sum of their checksums. */
static uint64_t join_all(struct thread_arg *a, uint32_t n)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        pthread_join(a[i].thread, NULL);
        sum += a[i].checksum;
    }
    return sum;
}

int main(int argc, char **argv)
{
    uint32_t nprod = (uint32_t)arg_count(argc, argv, 1, 2);
    uint32_t ncons = (uint32_t)arg_count(argc, argv, 2, 2);
    uint64_t per_producer = arg_count(argc, argv, 3, 8000000);
    struct queue q = { .lock = PTHREAD_MUTEX_INITIALIZER,
                       .not_empty = PTHREAD_COND_INITIALIZER,
                       .not_full = PTHREAD_COND_INITIALIZER };
    struct thread_arg *prod = aligned_alloc(_Alignof(struct thread_arg), nprod * sizeof *prod);
    struct thread_arg *cons = aligned_alloc(_Alignof(struct thread_arg), ncons * sizeof *cons);
    if (!prod || !cons)
        bench_die("cannot allocate the thread tables");

    for (uint32_t i = 0; i < ncons; i++) {
        cons[i] = (struct thread_arg){ .q = &q };
        start(&cons[i], consumer_main);
    }
    for (uint32_t i = 0; i < nprod; i++) {
        prod[i] = (struct thread_arg){ .q = &q, .seed = i + 1, .nobjects = per_producer };
        start(&prod[i], producer_main);
    }
    uint64_t produced = join_all(prod, nprod);
    queue_close(&q);
    uint64_t consumed = join_all(cons, ncons);
    if (produced != consumed)
        bench_die("objects were lost: produced tag sum %016llx, consumed %016llx",
                  (unsigned long long)produced, (unsigned long long)consumed);
    free(prod);
    free(cons);
    printf("checksum: %016llx\n", (unsigned long long)consumed);
    /* a malloc and a free per object (the batch descriptors left out) */
    printf("ops: %llu\n", 2ull * nprod * (unsigned long long)per_producer);
    return 0;
}
