/* budget.c: see budget.h. */
#include "budget.h"

#include <stdlib.h>
#include <time.h>

#include "clock.h"

struct bucket {
    uid_t uid;
    double tokens; /* seconds of CPU; may go below 0 after an expensive request */
    double at;     /* monotonic seconds of the last refill */
};

/* Only uids with requests in the last few seconds are kept: a full bucket is the same as
 * none, and is dropped when the table must grow. */
static struct bucket *buckets;
static size_t nbuckets, cap;

double budget_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void refill(struct bucket *b, double now)
{
    b->tokens += (now - b->at) * BUDGET_RATE;
    if (b->tokens > BUDGET_BURST)
        b->tokens = BUDGET_BURST;
    b->at = now;
}

/* uid's bucket, refilled to now; NULL only when out of memory. */
static struct bucket *find(uid_t uid, double now)
{
    for (size_t i = 0; i < nbuckets; i++) {
        if (buckets[i].uid == uid) {
            refill(&buckets[i], now);
            return &buckets[i];
        }
    }
    size_t keep = 0;
    for (size_t i = 0; i < nbuckets; i++) { /* forget the full ones */
        refill(&buckets[i], now);
        if (buckets[i].tokens < BUDGET_BURST)
            buckets[keep++] = buckets[i];
    }
    nbuckets = keep;
    if (nbuckets == cap) {
        size_t ncap = cap ? 2 * cap : 16;
        struct bucket *nb = realloc(buckets, ncap * sizeof *nb);
        if (!nb)
            return NULL;
        buckets = nb;
        cap = ncap;
    }
    buckets[nbuckets] = (struct bucket){.uid = uid, .tokens = BUDGET_BURST, .at = now};
    return &buckets[nbuckets++];
}

int budget_allow(uid_t uid)
{
    if (uid == 0)
        return 1;
    struct bucket *b = find(uid, monotonic_now());
    return !b || b->tokens > 0;
}

void budget_charge(uid_t uid, double cpu_seconds)
{
    if (uid == 0)
        return;
    struct bucket *b = find(uid, monotonic_now());
    if (b)
        b->tokens -= (cpu_seconds > 0 ? cpu_seconds : 0) + BUDGET_REQUEST_COST;
}
