/*
 * mesh_pause: how long meshing holds writers back.
 *
 * Builds a fragmented heap (many spans of one class, every other object freed so pairs of
 * spans are disjoint), starts a writer thread that keeps rewriting the surviving objects,
 * and meshes the spans in batches of 64 pairs.  Reports, as a markdown table, the barrier
 * window of each pair (the engine's own clock: write-protect to remap) and per batch (the
 * sum over its 64 pairs, the most one writer touching all of them could wait), plus the
 * longest gap the writer itself saw between two writes.
 *
 * With "runs", the spans are meshed instead in requests of RUN pairs whose sources are
 * RUN neighbouring spans and whose destinations are the next RUN (a run, meshed under one
 * hold: shim/mesh_engine.c), and the table gives each hold and the amortized cost per pair.
 * With "scattered", the same requests name the destinations in falling page order, so that
 * no two are neighbours: runs of up to 16 remaps each (what meshd's plans mostly hold).
 *
 *   mesh_pause [spans=8192] [object size=256] [pairs | runs | scattered]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mesh.h"
#include "mesh_engine.h"
#include "span_table.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    printf("| %s | %zu | %.1f | %.1f | %.1f |\n", what, n, sum / (double)n / 1000.0,
           (double)v[n * 99 / 100 < n ? n * 99 / 100 : n - 1] / 1000.0, (double)v[n - 1] / 1000.0);
}

static void **live;
static size_t nlive;
static _Atomic int stop;
static _Atomic uint64_t writer_max_gap;

static void *writer(void *arg)
{
    (void)arg;
    uint64_t last = now_ns(), max_gap = 0;
    for (size_t i = 0; !atomic_load(&stop); i = (i + 1) % nlive) {
        ((volatile uint64_t *)live[i])[2]++;
        uint64_t t = now_ns();
        if (t - last > max_gap)
            max_gap = t - last;
        last = t;
    }
    atomic_store(&writer_max_gap, max_gap);
    return NULL;
}

/* Odd, so that a source (rank r) and its destination (rank r + RUN) keep slots of opposite
 * parity: every pair is disjoint. */
#define RUN 63

static int mesh_runs(const uint32_t *ids, size_t nids, size_t spans, size_t size, pthread_t *t, int scatter)
{
    size_t nreq = nids / (2 * RUN), meshed = 0, nholds = 0;
    uint64_t *hold_ns = calloc(nreq * RUN + 1, sizeof *hold_ns), *per_pair = calloc(nreq + 1, sizeof *per_pair);
    volatile uint64_t *total = &mesh_spans.header->counters.barrier_ns_total;
    uint64_t all = 0;
    for (size_t r = 0; r < nreq; r++) {
        uint32_t pairs[2 * RUN];
        const uint32_t *b = ids + r * 2 * RUN;
        for (size_t k = 0; k < RUN; k++) {
            pairs[2 * k] = b[scatter ? 2 * RUN - 1 - k : RUN + k]; /* ranks of opposite parity either way */
            pairs[2 * k + 1] = b[k];
        }
        struct mesh_holds h;
        uint64_t before = *total;
        size_t got = mesh_engine_mesh(pairs, RUN, NULL, &h, MESH_ENGINE_BACKGROUND);
        uint64_t ns = *total - before;
        meshed += got;
        all += ns;
        per_pair[r] = got ? ns / got : 0;
        /* a request's holds: its total split evenly (the histogram is coarse) */
        for (uint32_t k = 0; k < h.count; k++)
            hold_ns[nholds++] = ns / h.count;
    }
    atomic_store(&stop, 1);
    pthread_join(*t, NULL);
    printf("mesh_pause: %zu spans of %zu-byte objects, %zu pairs meshed of %zu in requests of %d "
           "pairs of neighbouring sources (destinations %s), %zu holds, barrier: %s\n",
           spans, size, meshed, nreq * RUN, RUN, scatter ? "scattered" : "neighbours too", nholds,
           mesh_mesh_barrier_kind() == 1 ? "userfaultfd" : "mprotect");
    printf("\n| barrier window | count | mean (us) | p99 (us) | max (us) |\n|---|---:|---:|---:|---:|\n");
    report("per hold (mean of its request)", hold_ns, nholds ? nholds : 1);
    report("per pair, amortized over its request", per_pair, nreq ? nreq : 1);
    printf("\namortized: %.2f us of barrier per pair meshed\n", meshed ? (double)all / (double)meshed / 1000.0 : 0.0);
    printf("longest gap between two writes of the writer thread: %.1f us\n",
           (double)atomic_load(&writer_max_gap) / 1000.0);
    return meshed == nreq * RUN ? 0 : 1;
}

int main(int argc, char **argv)
{
    size_t spans = argc > 1 ? strtoul(argv[1], NULL, 10) : 8192;
    size_t size = argc > 2 ? strtoul(argv[2], NULL, 10) : 256;
    size_t per_span = 4096 / size, n = spans * per_span;
    void **objs = calloc(n, sizeof *objs);
    live = calloc(n, sizeof *live);
    uint32_t *ids = calloc(spans * 2, sizeof *ids);
    if (!objs || !live || !ids)
        return 2;
    for (size_t i = 0; i < n; i++)
        memset(objs[i] = mesh_malloc(size), 1, size);
    mesh_thread_flush();
    /* Group spans into pairs by parity of the slot kept, so every pair is disjoint. */
    size_t nids = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = mesh_span_of(objs[i]);
        size_t slot = ((uintptr_t)objs[i] & 4095) / size;
        int seen = 0;
        for (size_t k = nids > 64 ? nids - 64 : 0; k < nids; k++)
            seen |= ids[k] == id;
        if (!seen)
            ids[nids++] = id;
        size_t rank = 0;
        for (size_t k = 0; k < nids; k++)
            if (ids[k] == id)
                rank = k;
        if ((slot % 2) != (rank % 2))
            mesh_free(objs[i]);
        else
            live[nlive++] = objs[i];
    }
    mesh_thread_flush();
    pthread_t t;
    pthread_create(&t, NULL, writer, NULL);
    if (argc > 3 && (strcmp(argv[3], "runs") == 0 || strcmp(argv[3], "scattered") == 0))
        return mesh_runs(ids, nids, spans, size, &t, strcmp(argv[3], "scattered") == 0);
    size_t npairs = nids / 2, nbatches = npairs / 64;
    uint64_t *pair_ns = calloc(npairs, sizeof *pair_ns), *batch_ns = calloc(nbatches + 1, sizeof *batch_ns);
    volatile uint64_t *total = &mesh_spans.header->counters.barrier_ns_total;
    size_t meshed = 0, done = 0;
    for (size_t b = 0; b < nbatches; b++) {
        uint64_t batch = 0;
        for (size_t k = 0; k < 64; k++, done++) {
            uint32_t pair[2] = {ids[2 * done], ids[2 * done + 1]};
            uint64_t before = *total;
            meshed += mesh_mesh_pairs(pair, 1, NULL);
            pair_ns[done] = *total - before;
            batch += pair_ns[done];
        }
        batch_ns[b] = batch;
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("mesh_pause: %zu spans of %zu-byte objects, %zu pairs meshed of %zu, barrier: %s\n", spans,
           size, meshed, done, mesh_mesh_barrier_kind() == 1 ? "userfaultfd" : "mprotect");
    printf("\n| barrier window | count | mean (us) | p99 (us) | max (us) |\n|---|---:|---:|---:|---:|\n");
    report("per pair", pair_ns, done);
    report("per batch of 64 pairs", batch_ns, nbatches);
    printf("\nlongest gap between two writes of the writer thread: %.1f us\n",
           (double)atomic_load(&writer_max_gap) / 1000.0);
    return meshed == done ? 0 : 1;
}
