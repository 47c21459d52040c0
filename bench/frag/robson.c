/*
 * robson: a Robson-style fragmenter.  A non-moving allocator cannot reuse the space that
 * small objects leave behind for larger ones, so a program that allocates in phases of
 * growing sizes and keeps a few objects of each phase alive pins most of its pages.
 *
 *   robson [phases=8] [mib_per_phase=32] [keep_percent=10] [seed=1]
 *
 * Phase p (0-based) allocates about mib_per_phase MiB of objects with sizes drawn from
 * [16 << p, 32 << p) (so 16..31 bytes, then 32..63, ...; several size classes per phase),
 * writes a pattern into each, then frees all but keep_percent of them in a random order.
 * After the last phase it prints its live bytes and "idle", and waits for SIGUSR1 (at most
 * 10 minutes) while the benchmark samples its RSS and, under libmesh, compacts it.  Then
 * it verifies every survivor word by word and exits 1 on the first corrupted one.
 *
 * Output lines (parsed by bench/frag/run.sh):
 *   work_seconds: S      time from start to the end of the last phase
 *   live_bytes: N        bytes requested by the surviving objects
 *   idle                 the program is now idle
 *   verified: ok N       all N survivors intact (else "FAIL: ..." and exit status 1)
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PATTERN_STEP 0x9E3779B97F4A7C15ull

struct obj {
    uint64_t *p;
    uint32_t words; /* size in 8-byte words */
    uint64_t tag;
};

static uint64_t rng_state;

static uint64_t next_random(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill(const struct obj *o)
{
    for (uint32_t i = 0; i < o->words; i++)
        o->p[i] = o->tag + i * PATTERN_STEP;
}

static int intact(const struct obj *o)
{
    for (uint32_t i = 0; i < o->words; i++)
        if (o->p[i] != o->tag + i * PATTERN_STEP)
            return 0;
    return 1;
}

int main(int argc, char **argv)
{
    unsigned phases = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 8;
    size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 32;
    unsigned keep = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 10;
    rng_state = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
    if (phases < 1 || phases > 10 || mib < 1 || keep > 100 || !rng_state) {
        fprintf(stderr, "usage: robson [phases 1..10] [mib_per_phase] [keep_percent] [seed>0]\n");
        return 2;
    }
    /* Block SIGUSR1 before anything else so that an early signal is not lost. */
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);

    double t0 = seconds();
    struct obj *kept = NULL;
    size_t nkept = 0, capkept = 0, live = 0;
    for (unsigned ph = 0; ph < phases; ph++) {
        size_t lo = (size_t)16 << ph, budget = mib << 20, used = 0, n = 0;
        size_t cap = budget / lo + 1;
        struct obj *objs = malloc(cap * sizeof *objs);
        if (!objs)
            return 2;
        while (used < budget && n < cap) {
            size_t bytes = (lo + next_random() % lo) & ~(size_t)7;
            struct obj *o = &objs[n++];
            o->p = malloc(bytes);
            if (!o->p) {
                fprintf(stderr, "robson: out of memory\n");
                return 2;
            }
            o->words = (uint32_t)(bytes / 8);
            o->tag = next_random();
            fill(o);
            used += bytes;
        }
        /* Free in a random order (Fisher-Yates), keeping the last keep% of the shuffle. */
        for (size_t i = n; i > 1; i--) {
            size_t j = next_random() % i;
            struct obj t = objs[i - 1];
            objs[i - 1] = objs[j];
            objs[j] = t;
        }
        size_t survivors = n * keep / 100;
        for (size_t i = 0; i < n - survivors; i++) {
            if (!intact(&objs[i])) {
                fprintf(stderr, "FAIL: phase %u object %p was corrupted before free\n", ph,
                        (void *)objs[i].p);
                return 1;
            }
            free(objs[i].p);
        }
        if (nkept + survivors > capkept) {
            capkept = (nkept + survivors) * 2;
            struct obj *grown = realloc(kept, capkept * sizeof *kept);
            if (!grown)
                return 2;
            kept = grown;
        }
        for (size_t i = n - survivors; i < n; i++) {
            kept[nkept++] = objs[i];
            live += (size_t)objs[i].words * 8;
        }
        free(objs);
    }
    printf("work_seconds: %.3f\nlive_bytes: %zu\nsurvivors: %zu\nidle\n", seconds() - t0, live,
           nkept);
    fflush(stdout);

    struct timespec limit = {600, 0};
    sigtimedwait(&usr1, NULL, &limit);

    for (size_t i = 0; i < nkept; i++) {
        if (!intact(&kept[i])) {
            printf("FAIL: survivor %zu at %p (%u words) was corrupted\n", i, (void *)kept[i].p,
                   kept[i].words);
            return 1;
        }
        free(kept[i].p);
    }
    free(kept);
    printf("verified: ok %zu\n", nkept);
    return 0;
}
