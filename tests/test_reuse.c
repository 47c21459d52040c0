/* test_reuse.c: emptied spans kept for their class's next refill, and the shards of a class
 * (global_heap.c): what is kept is reused, bounded, let go at ticks and trims, never
 * meshed, never hands out an object twice; a refill takes its own thread's spans first. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "control.h"
#include "global_heap.h"
#include "span_table.h"
#include "thread_heap.h"

/* Class 64: one-page spans of 64 objects. */
enum { SIZE = 64, PER_SPAN = 64, SPANS = 40, OBJS = SPANS * PER_SPAN };
static void *objs[OBJS];

/* Starts from nothing kept: trims, and checks the heap. */
static void start_clean(void)
{
    mesh_thread_flush();
    mesh_malloc_trim(0);
    ck_assert_uint_eq(mesh_global_empty_pages(), 0);
    ck_assert_int_eq(mesh_heap_check(), 0);
}

static int in_ids(const uint32_t *ids, unsigned n, uint32_t id)
{
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

static int kept(uint32_t id)
{
    const struct mesh_span_record *r = mesh_record(id);
    if (mesh_record_state(r) != MESH_SPAN_ATTACHED || r->owner != 0)
        return 0;
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++)
        if (r->bitmap[w])
            return 0;
    return 1;
}

/* Fills n objects of the class, then frees them all and flushes: every span they used is
 * empty and kept, but one that also holds an object of the program's own (the shim serves
 * libc and check too), which it must not be.  The kept spans' ids in ids; their count. */
static unsigned make_kept(unsigned n, uint32_t *ids)
{
    static uint32_t all[OBJS];
    for (unsigned i = 0; i < n; i++) {
        objs[i] = mesh_malloc(SIZE);
        pattern_fill(objs[i], SIZE, 7);
    }
    unsigned k = distinct_spans(objs, n, all, OBJS);
    for (unsigned i = 0; i < n; i++) {
        ck_assert(pattern_ok(objs[i], SIZE, 7));
        mesh_free(objs[i]);
    }
    mesh_thread_flush();
    unsigned m = 0;
    for (unsigned i = 0; i < k; i++)
        if (kept(all[i]))
            ids[m++] = all[i];
        else
            ck_assert_uint_ne(mesh_record_state(mesh_record(all[i])), MESH_SPAN_FREE); /* in use */
    ck_assert_uint_ge(m + 1, k); /* at most one span was shared with the program */
    return m;
}

START_TEST(emptied_spans_are_kept_and_reused)
{
    static uint32_t ids[OBJS];
    start_clean();
    struct mesh_stats before, after;
    mesh_stats_get(&before);
    unsigned k = make_kept(OBJS, ids);
    ck_assert_uint_ge(k, SPANS - 1);
    ck_assert_int_eq(mesh_heap_check(), 0);
    /* Kept: ATTACHED to no thread, nothing allocated, not counted as the program's spans. */
    ck_assert_uint_eq(mesh_global_empty_pages(), k);
    for (unsigned i = 0; i < k; i++) {
        const struct mesh_span_record *r = mesh_record(ids[i]);
        ck_assert_uint_eq(mesh_record_state(r), MESH_SPAN_ATTACHED);
        ck_assert_uint_eq(r->owner, 0);
        for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++)
            ck_assert_uint_eq(r->bitmap[w], 0);
    }
    mesh_stats_get(&after);
    ck_assert_uint_eq(after.small_spans, before.small_spans);
    ck_assert_uint_le(after.live_bytes, before.live_bytes);
    /* The next refills take them back: no span is made, every object is new and distinct. */
    uint64_t created = after.spans_created;
    unsigned from_kept = 0;
    for (unsigned i = 0; i < OBJS; i++) {
        objs[i] = mesh_malloc(SIZE);
        from_kept += in_ids(ids, k, mesh_span_of(objs[i]));
        pattern_fill(objs[i], SIZE, 9);
    }
    ck_assert_uint_ge(from_kept, OBJS - PER_SPAN); /* all but the shared span's room */
    mesh_stats_get(&after);
    ck_assert_uint_eq(after.spans_created, created);
    ck_assert_uint_eq(mesh_global_empty_pages(), 0);
    ck_assert_int_eq(mesh_heap_check(), 0);
    for (unsigned i = 0; i < OBJS; i++) {
        ck_assert(pattern_ok(objs[i], SIZE, 9));
        mesh_free(objs[i]);
    }
    mesh_thread_flush();
    /* malloc_trim lets every kept span go: records free, pages punched. */
    ck_assert_uint_gt(mesh_global_empty_pages(), 0);
    mesh_malloc_trim(0);
    ck_assert_uint_eq(mesh_global_empty_pages(), 0);
    for (unsigned i = 0; i < k; i++)
        ck_assert_uint_eq(mesh_record_state(mesh_record(ids[i])), MESH_SPAN_FREE);
    struct mesh_arena_stats a;
    mesh_arena_stats(&a);
    ck_assert_uint_eq(a.dirty_pages, 0);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

/* The tick lets go of what stayed kept a whole period (the low-water mark), not of what the
 * program took and gave back meanwhile. */
START_TEST(a_tick_lets_go_of_spans_unused_since_the_last)
{
    static uint32_t ids[OBJS];
    start_clean();
    unsigned k = make_kept(OBJS, ids);
    ck_assert_uint_eq(mesh_global_empty_pages(), k);
    mesh_global_empty_tick(); /* the trim's period saw none kept all along: none go */
    ck_assert_uint_eq(mesh_global_empty_pages(), k);
    /* Take 5 spans' worth and give them back: those were used in this period. */
    enum { TAKEN = 5 };
    for (unsigned i = 0; i < TAKEN * PER_SPAN; i++)
        objs[i] = mesh_malloc(SIZE);
    ck_assert_uint_eq(mesh_global_empty_pages(), k - TAKEN);
    for (unsigned i = 0; i < TAKEN * PER_SPAN; i++)
        mesh_free(objs[i]);
    mesh_thread_flush();
    ck_assert_uint_eq(mesh_global_empty_pages(), k);
    mesh_global_empty_tick();
    ck_assert_uint_eq(mesh_global_empty_pages(), TAKEN);
    ck_assert_int_eq(mesh_heap_check(), 0);
    mesh_global_empty_tick(); /* unused for a whole period now */
    ck_assert_uint_eq(mesh_global_empty_pages(), 0);
    ck_assert_int_eq(mesh_heap_check(), 0);
    /* Their pages are dirty arena pages now, punched by age like any freed page, and all
     * of them by a trim. */
    struct mesh_arena_stats a;
    mesh_arena_stats(&a);
    ck_assert_uint_ge(a.dirty_pages, k);
    ck_assert_uint_ge(mesh_malloc_trim(0), 1);
    mesh_arena_stats(&a);
    ck_assert_uint_eq(a.dirty_pages, 0);
}
END_TEST

/* meshd may name a kept span in a pair: it is refused, as any span attached to a thread. */
START_TEST(kept_spans_are_never_meshed)
{
    static uint32_t ids[OBJS];
    start_clean();
    unsigned k = make_kept(2 * PER_SPAN, ids);
    ck_assert_uint_ge(k, 2);
    uint32_t pair[2] = {ids[0], ids[1]};
    int reason = -1;
    ck_assert_uint_eq(mesh_mesh_pairs(pair, 1, &reason), 0);
    ck_assert_int_eq(reason, MESH_REJECT_NOT_DETACHED);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

/* A fork child inherits the kept spans: it reuses them and lets them go as its own. */
START_TEST(fork_child_reuses_and_trims_kept_spans)
{
    static uint32_t ids[OBJS];
    start_clean();
    void *live = mesh_malloc(SIZE);
    pattern_fill(live, SIZE, 3);
    unsigned k = make_kept(OBJS / 2, ids);
    ck_assert_uint_gt(k, 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int ok = mesh_heap_check() == 0 && mesh_global_empty_pages() > 0;
        for (unsigned i = 0; i < OBJS / 2; i++) {
            objs[i] = mesh_malloc(SIZE);
            pattern_fill(objs[i], SIZE, 11);
        }
        for (unsigned i = 0; i < OBJS / 2; i++) {
            ok = ok && pattern_ok(objs[i], SIZE, 11);
            mesh_free(objs[i]);
        }
        mesh_thread_flush();
        mesh_malloc_trim(0);
        ok = ok && mesh_global_empty_pages() == 0 && mesh_heap_check() == 0 && pattern_ok(live, SIZE, 3);
        _exit(ok ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_uint_eq(mesh_global_empty_pages(), k); /* the parent's, untouched */
    ck_assert(pattern_ok(live, SIZE, 3));
    mesh_free(live);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

/* ---- two threads, each freeing only its own blocks (bench/churn.c, smaller) ------------- */

enum { ROUNDS = 30, CHURN_BATCH = 3000 };

struct churn_obj {
    uint8_t *p;
    uint32_t size;
    uint64_t tag;
};

/* Allocates a batch (16 B to 3 KiB, one in 64 of 16 to 128 KiB), marks the first and last
 * 8 bytes of each, frees the batch in a shuffled order checking the marks; returns 1 if
 * every mark survived. */
static void *churn_thread(void *arg)
{
    uint32_t seed = (uint32_t)(uintptr_t)arg;
    static __thread struct churn_obj b[CHURN_BATCH];
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    int ok = 1;
    for (int round = 0; round < ROUNDS && ok; round++) {
        for (unsigned i = 0; i < CHURN_BATCH; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t r = (uint32_t)(x >> 33);
            b[i].size = (r & 63) == 0 ? (16u << 10) + r % (112u << 10) : 16 + r % 3000;
            b[i].tag = x ^ seed;
            b[i].p = mesh_malloc(b[i].size);
            memcpy(b[i].p, &b[i].tag, 8);
            memcpy(b[i].p + b[i].size - 8, &b[i].tag, 8);
        }
        for (unsigned i = CHURN_BATCH - 1; i > 0; i--) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            unsigned j = (unsigned)((x >> 33) % (i + 1));
            struct churn_obj t = b[i];
            b[i] = b[j];
            b[j] = t;
        }
        for (unsigned i = 0; i < CHURN_BATCH; i++) {
            uint64_t head, tail;
            memcpy(&head, b[i].p, 8);
            memcpy(&tail, b[i].p + b[i].size - 8, 8);
            ok = ok && head == b[i].tag && tail == b[i].tag;
            mesh_free(b[i].p);
        }
    }
    return (void *)(uintptr_t)ok;
}

static void *nothing(void *arg) { return arg; }

START_TEST(two_threads_churning_their_own_blocks)
{
    /* glibc keeps per-thread bookkeeping (allocated through the shim) after the first
     * threads: made first, so the before/after accounting sees only the test's objects. */
    for (int i = 0; i < 2; i++) {
        pthread_t w;
        ck_assert_int_eq(pthread_create(&w, NULL, nothing, NULL), 0);
        pthread_join(w, NULL);
    }
    start_clean();
    struct mesh_stats before, after;
    mesh_stats_get(&before);
    pthread_t t[2];
    for (uintptr_t i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, churn_thread, (void *)(i + 1)), 0);
    for (int i = 0; i < 2; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        ck_assert(ok);
    }
    ck_assert_int_eq(mesh_heap_check(), 0);
    ck_assert_uint_le(mesh_global_empty_pages(), 8192);
    mesh_stats_get(&after);
    ck_assert_uint_eq(after.small_spans, before.small_spans);
    ck_assert_uint_eq(after.large_objects, before.large_objects);
    mesh_malloc_trim(0);
    ck_assert_uint_eq(mesh_global_empty_pages(), 0);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

/* ---- shards: a refill takes the spans its own thread released, others' only after ---- */

/* Class 896: two-page spans of 9 objects, a class neither libc nor check uses here. */
enum { SHARD_SIZE = 880, SHARD_PER_SPAN = 9, SHARD_OBJS = 6 * SHARD_PER_SPAN };

struct partial_spans {
    void *obj[SHARD_OBJS];
    uint32_t ids[SHARD_OBJS];
    unsigned n;
    uint32_t heap;
};

/* Fills six spans (attached and owned by the calling thread: nobody else's refill sees
 * them). */
static void fill_spans(struct partial_spans *m)
{
    for (unsigned i = 0; i < SHARD_OBJS; i++) {
        m->obj[i] = mesh_malloc(SHARD_SIZE);
        pattern_fill(m->obj[i], SHARD_SIZE, 5);
    }
    m->n = distinct_spans(m->obj, SHARD_OBJS, m->ids, sizeof m->ids / sizeof m->ids[0]);
}

/* Frees every other object and flushes: the spans are detached, a little under half full,
 * in the shard of the calling thread's heap. */
static void halve_spans(struct partial_spans *m)
{
    for (unsigned i = 1; i < SHARD_OBJS; i += 2) {
        mesh_free(m->obj[i]);
        m->obj[i] = NULL;
    }
    mesh_thread_flush();
    m->heap = mesh_tl_heap->id;
}

static void *make_partial(void *arg)
{
    fill_spans(arg);
    halve_spans(arg);
    return NULL;
}

START_TEST(refills_prefer_their_own_shard_then_take_others)
{
    static struct partial_spans mine, theirs;
    static void *got[SHARD_OBJS];
    start_clean();
    fill_spans(&mine); /* first, so that neither takes the other's spans */
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, make_partial, &theirs), 0);
    pthread_join(t, NULL);
    halve_spans(&mine);
    ck_assert_uint_ne((mine.heap - 1) % 4, (theirs.heap - 1) % 4); /* heaps 1 and 2 */
    ck_assert_uint_eq(mine.n, 6);
    ck_assert_uint_eq(theirs.n, 6);
    struct mesh_stats before, after;
    mesh_stats_get(&before);
    /* The 27 free slots of our own spans first, though the other shard has as many. */
    unsigned half = SHARD_OBJS / 2;
    for (unsigned i = 0; i < half; i++) {
        got[i] = mesh_malloc(SHARD_SIZE);
        ck_assert(in_ids(mine.ids, mine.n, mesh_span_of(got[i])));
    }
    /* Ours used up: the other thread's spans, before any new one. */
    for (unsigned i = half; i < SHARD_OBJS; i++) {
        got[i] = mesh_malloc(SHARD_SIZE);
        ck_assert(in_ids(theirs.ids, theirs.n, mesh_span_of(got[i])));
    }
    mesh_stats_get(&after);
    ck_assert_uint_eq(after.spans_created, before.spans_created);
    ck_assert_int_eq(mesh_heap_check(), 0);
    for (unsigned i = 0; i < SHARD_OBJS; i++) {
        pattern_fill(got[i], SHARD_SIZE, 6);
        if (mine.obj[i])
            ck_assert(pattern_ok(mine.obj[i], SHARD_SIZE, 5));
        if (theirs.obj[i])
            ck_assert(pattern_ok(theirs.obj[i], SHARD_SIZE, 5));
    }
    for (unsigned i = 0; i < SHARD_OBJS; i++) {
        ck_assert(pattern_ok(got[i], SHARD_SIZE, 6));
        mesh_free(got[i]);
        mesh_free(mine.obj[i]);
        mesh_free(theirs.obj[i]);
    }
    mesh_thread_flush();
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

/* A background round's request trims only when the program's other threads were idle since
 * the last look (control.c): one serving requests keeps its freed pages for reuse.  Any
 * other request always trims. */
static void *burn_cpu(void *arg)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    do
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 30000000L);
    return arg;
}

START_TEST(background_trim_waits_for_an_idle_program)
{
    mesh_control_trim_due(1); /* what it has seen is now */
    /* 30 ms of another thread's CPU in a window of at least that: well over 1%, however
     * slowly the machine runs it. */
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, burn_cpu, NULL), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(mesh_control_trim_due(1), 0);
    ck_assert_int_eq(mesh_control_trim_due(0), 1);

    /* The caller's own CPU is not the program's: the control thread's meshing is not. */
    burn_cpu(NULL);
    ck_assert_int_eq(mesh_control_trim_due(1), 1);
    usleep(200000); /* an idle program */
    ck_assert_int_eq(mesh_control_trim_due(1), 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("reuse");
    add_case(s, emptied_spans_are_kept_and_reused, NULL);
    add_case(s, a_tick_lets_go_of_spans_unused_since_the_last, NULL);
    add_case(s, kept_spans_are_never_meshed, NULL);
    add_case(s, fork_child_reuses_and_trims_kept_spans, NULL);
    add_case(s, two_threads_churning_their_own_blocks, NULL);
    add_case(s, refills_prefer_their_own_shard_then_take_others, NULL);
    add_case(s, background_trim_waits_for_an_idle_program, NULL);
    return run_suite(s);
}
