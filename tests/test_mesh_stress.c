/* test_mesh_stress.c: threads allocate, free and rewrite checksummed objects while a
 * mesher thread meshes every eligible pair it can find.  Bounded in time; at the end
 * every object must be intact and the heap's accounting exact. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "bitmap.h"
#include "mesh_engine.h"
#include "rng.h"
#include "size_class.h"
#include "span_table.h"

enum { SLOTS = 65536, WORKERS = 3, MAX_SIZE = 256 };

struct obj {
    uint32_t size, seed;
    uint64_t sum;
    uint8_t data[];
};

static _Atomic(struct obj *) table[SLOTS];
static _Atomic int stop;
static _Atomic long corrupt, rewrites;

static uint64_t sum_of(const struct obj *o)
{
    uint64_t h = 1469598103934665603ull ^ o->seed;
    for (uint32_t i = 0; i < o->size - sizeof *o; i++)
        h = (h ^ o->data[i]) * 1099511628211ull;
    return h;
}

static void fill(struct obj *o, uint32_t seed)
{
    o->seed = seed;
    for (uint32_t i = 0; i < o->size - sizeof *o; i++)
        o->data[i] = (uint8_t)(seed + i * 13);
    o->sum = sum_of(o);
}

static struct obj *obj_new(uint64_t *rng)
{
    uint32_t size = 48 + (uint32_t)(mesh_rng_next(rng) % (MAX_SIZE - 48));
    struct obj *o = mesh_malloc(size);
    o->size = size;
    fill(o, (uint32_t)mesh_rng_next(rng));
    return o;
}

/* Stores o into an empty slot; another worker may have filled it meanwhile: then o goes. */
static void put(unsigned i, struct obj *o)
{
    struct obj *empty = NULL;
    if (!atomic_compare_exchange_strong(&table[i], &empty, o))
        mesh_free(o);
}

/* Workers: fill their share of the table, then keep visiting random slots: rewrite an
 * object in place (writes that may hit a barrier), free it (most often), replace it, or
 * now and then allocate into an empty slot.  Occupancy settles near a fifth: the sparse,
 * fragmented heap that meshing is for. */
static void *worker(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    uint64_t rng = 0x9E3779B97F4A7C15ull * (me + 1);
    for (unsigned i = me; i < SLOTS; i += WORKERS)
        put(i, obj_new(&rng)); /* others may be visiting this slot already */
    while (!atomic_load(&stop)) {
        unsigned i = (unsigned)(mesh_rng_next(&rng) % SLOTS);
        struct obj *o = atomic_exchange(&table[i], NULL);
        uint64_t r = mesh_rng_next(&rng) % 10;
        if (!o) {
            if (r == 0)
                put(i, obj_new(&rng));
            continue;
        }
        if (o->sum != sum_of(o))
            atomic_fetch_add(&corrupt, 1);
        if (r < 4) {
            fill(o, (uint32_t)mesh_rng_next(&rng));
            atomic_fetch_add(&rewrites, 1);
            put(i, o);
        } else if (r < 8) {
            mesh_free(o);
        } else {
            mesh_free(o);
            put(i, obj_new(&rng));
        }
    }
    return NULL;
}

/* The mesher: for each class, pairs up detached spans whose bitmaps are disjoint (a stale
 * look, as meshd's would be) and asks the shim to mesh them. */
static _Atomic long meshed, refused, held;
static int in_runs; /* the mesher sends each class's pairs as one request, in page order */

static int disjoint(uint32_t a, uint32_t b)
{
    mesh_bitmap x = mesh_bitmap_load(mesh_record(a)->bitmap);
    mesh_bitmap y = mesh_bitmap_load(mesh_record(b)->bitmap);
    int ok = 1;
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++)
        ok &= !(x.w[w] & y.w[w]);
    return ok;
}

static int by_phys_page(const void *a, const void *b)
{
    uint32_t x = mesh_record(*(const uint32_t *)a)->phys_page, y = mesh_record(*(const uint32_t *)b)->phys_page;
    return (x > y) - (x < y);
}

/* One class's spans (ids[0..n)) as meshd would send them: in page order, the lower half
 * onto the upper half, pair i onto pair i, so that neighbours make runs. */
static void mesh_class_in_runs(uint32_t *ids, unsigned n)
{
    static uint32_t pairs[2 * 256];
    static int reasons[256];
    qsort(ids, n, sizeof *ids, by_phys_page);
    unsigned half = n / 2, np = 0;
    for (unsigned i = 0; i < half; i++)
        if (disjoint(ids[half + i], ids[i])) {
            pairs[2 * np] = ids[half + i];
            pairs[2 * np + 1] = ids[i];
            np++;
        }
    struct mesh_holds holds;
    size_t done = mesh_engine_mesh(pairs, np, reasons, &holds, MESH_ENGINE_BACKGROUND);
    atomic_fetch_add(&meshed, (long)done);
    atomic_fetch_add(&refused, (long)(np - done));
    atomic_fetch_add(&held, (long)holds.count);
}

static void *mesher(void *arg)
{
    (void)arg;
    static uint32_t ids[MESH_CLASS_COUNT + 1][512];
    while (!atomic_load(&stop)) {
        unsigned n[MESH_CLASS_COUNT + 1] = {0};
        uint32_t hwm = mesh_record_hwm();
        for (uint32_t id = 1; id < hwm; id++) {
            const struct mesh_span_record *r = mesh_record(id);
            unsigned cls = r->size_class;
            if (mesh_record_state(r) == MESH_SPAN_DETACHED && cls && cls <= MESH_CLASS_COUNT && n[cls] < 512)
                ids[cls][n[cls]++] = id;
        }
        for (unsigned cls = 1; cls <= MESH_CLASS_COUNT; cls++) {
            if (in_runs) {
                mesh_class_in_runs(ids[cls], n[cls]);
                continue;
            }
            for (unsigned a = 0; a + 1 < n[cls]; a += 2) {
                uint32_t pair[2] = {ids[cls][a], ids[cls][a + 1]};
                if (!disjoint(pair[0], pair[1]))
                    continue;
                int reason;
                if (mesh_mesh_pairs(pair, 1, &reason))
                    atomic_fetch_add(&meshed, 1);
                else
                    atomic_fetch_add(&refused, 1);
            }
        }
        usleep(2000);
    }
    return NULL;
}

/* Live slots (bit set) of every small span whose memory holds a well-formed test object:
 * after the test freed them all, any such slot is a free the allocator lost. */
static unsigned live_test_objects(void)
{
    unsigned found = 0;
    uint32_t hwm = mesh_record_hwm();
    for (uint32_t id = 1; id < hwm; id++) {
        const struct mesh_span_record *r = mesh_record(id);
        unsigned st = mesh_record_state(r);
        if (st == MESH_SPAN_FREE || st == MESH_SPAN_LARGE)
            continue;
        uint32_t size = mesh_classes[r->size_class].size;
        mesh_bitmap b = mesh_bitmap_load((uint64_t *)r->bitmap);
        for (unsigned slot = 0; slot < r->capacity; slot++) {
            if (!((b.w[slot >> 6] >> (slot & 63)) & 1))
                continue;
            const struct obj *o = (const struct obj *)(mesh_page_addr(r->phys_page) + (size_t)slot * size);
            found += o->size >= 48 && o->size <= size && o->size + 64 > size && o->sum == sum_of(o);
        }
    }
    return found;
}

/* _i: 0 pair by pair, 1 each class's pairs in one request, in page order (runs). */
START_TEST(mesh_while_threads_work)
{
    in_runs = _i;
    double seconds = getenv("MESH_STRESS_SECONDS") ? atof(getenv("MESH_STRESS_SECONDS")) : 4.0;
    pthread_t w[WORKERS], m;
    for (long i = 0; i < WORKERS; i++)
        ck_assert_int_eq(pthread_create(&w[i], NULL, worker, (void *)i), 0);
    ck_assert_int_eq(pthread_create(&m, NULL, mesher, NULL), 0);
    /* At least `seconds`, and on a loaded machine longer, until the mesher has meshed what
     * the test asserts below (bounded: a mesher that makes no progress fails the check). */
    for (double waited = 0; waited < seconds || (atomic_load(&meshed) <= 10 && waited < 120);
         waited += 0.01)
        usleep(10000);
    atomic_store(&stop, 1);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(w[i], NULL);
    pthread_join(m, NULL);
    ck_assert_int_eq(atomic_load(&corrupt), 0);
    long live = 0;
    for (unsigned i = 0; i < SLOTS; i++) {
        struct obj *o = atomic_load(&table[i]);
        if (!o)
            continue;
        ck_assert_msg(o->sum == sum_of(o), "object %u corrupt after the run", i);
        live++;
    }
    ck_assert_int_eq(mesh_heap_check(), 0);
    ck_assert_int_gt(atomic_load(&meshed), 10); /* the run really meshed */
    fprintf(stderr, "mesh stress%s: %ld meshed, %ld refused, %ld rewrites, %ld live",
            in_runs ? " (runs)" : "", atomic_load(&meshed), atomic_load(&refused), atomic_load(&rewrites), live);
    if (in_runs)
        fprintf(stderr, ", %ld holds", atomic_load(&held));
    fputc('\n', stderr);
    for (unsigned i = 0; i < SLOTS; i++)
        mesh_free(atomic_exchange(&table[i], NULL));
    mesh_thread_flush();
    /* zero lost frees: no live slot anywhere still holds one of the test's objects */
    ck_assert_int_eq(mesh_heap_check(), 0);
    ck_assert_uint_eq(live_test_objects(), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("mesh-stress");
    add_loop_case(s, mesh_while_threads_work, NULL, 0, 2);
    return run_suite(s);
}
