/*
 * test_meshd_units.c: meshd's defences in isolation, without a daemon around them.
 *
 *  - budget.c: per-uid CPU accounting, refusal when a uid's bucket is empty, refill, root;
 *  - closer.c: a descriptor whose close() blocks (a TCP socket with unsent data and a long
 *    SO_LINGER) costs the caller nothing, is charged to its uid until the closer's
 *    watchdog interrupts the close, and is then really closed;
 *  - registry.c: hostile tables are refused with a clear reason, a descriptor that is not
 *    a memfd before anything asks its filesystem (fstat);
 *  - summary.c: a table scanned in slices across turns of the loop gives exactly what one
 *    whole scan gives and what the table holds; records out of range are not counted; a
 *    table truncated between slices fails the scan and its waiters hear so;
 *  - planner.c: a plan made in slices has the candidates of a plan made at once, and pairs
 *    only spans that can be meshed; a table truncated mid-plan fails the plan.
 *
 * No test depends on the machine's speed: the loop is turned until the event checked for
 * happens, with a generous bound that only a hang reaches.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <linux/magic.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <time.h>

#include "budget.h"
#include "closer.h"
#include "mesher.h"
#include "planner.h"
#include "registry.h"
#include "summary.h"

/* Waits for events are bounded by this (seconds): only a hang reaches it. */
#define HANG_BOUND 60.0

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* summary.c takes its clock from the policy, which this test does not link. */
double policy_now(void) { return mono(); }

/* Turns base's loop until *flag is set (or the hang bound passes); returns *flag. */
static int loop_until(struct event_base *base, const int *flag)
{
    double end = mono() + HANG_BOUND;
    while (!*flag && mono() < end)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    return *flag;
}

/* ---- budget.c ---------------------------------------------------------------------------- */

START_TEST(budget_refuses_an_exhausted_uid_only)
{
    ck_assert(budget_allow(1000));
    ck_assert(budget_allow(1001));
    /* 1000 s of debt: at BUDGET_RATE it takes far longer than any test to pay back. */
    budget_charge(1000, 1000.0);
    ck_assert(!budget_allow(1000));
    ck_assert(budget_allow(1001)); /* another uid is not affected */
    budget_charge(1001, 0.001);
    ck_assert(budget_allow(1001));
    ck_assert(!budget_allow(1000));
}
END_TEST

START_TEST(budget_never_limits_root)
{
    budget_charge(0, 1e9);
    ck_assert(budget_allow(0));
}
END_TEST

START_TEST(budget_counts_cheap_requests)
{
    /* Requests that take no CPU still cost BUDGET_REQUEST_COST each: 4 burst's worth of
     * them empties the bucket however slowly this loop runs (it refills 4 burst's worth
     * only after 4 * BUDGET_BURST / BUDGET_RATE = 16 s). */
    unsigned n = (unsigned)(4 * BUDGET_BURST / BUDGET_REQUEST_COST);
    for (unsigned i = 0; i < n; i++)
        budget_charge(1002, 0);
    ck_assert(!budget_allow(1002));
}
END_TEST

START_TEST(budget_ignores_negative_charges)
{
    /* A clock that went backwards must not buy anyone CPU. */
    budget_charge(1003, 1000.0);
    budget_charge(1003, -1e6);
    ck_assert(!budget_allow(1003));
}
END_TEST

START_TEST(budget_refills)
{
    /* Just past empty: BUDGET_RATE refills it in a fraction of a second. */
    budget_charge(1004, BUDGET_BURST + 0.05 - BUDGET_REQUEST_COST);
    double end = mono() + HANG_BOUND;
    while (!budget_allow(1004) && mono() < end)
        usleep(10000);
    ck_assert_msg(budget_allow(1004), "uid 1004's budget did not refill in %.0f s", HANG_BOUND);
    /* Refilled to a little above empty, far from the 3 bursts just charged. */
    budget_charge(1004, 3 * BUDGET_BURST);
    ck_assert(!budget_allow(1004));
}
END_TEST

START_TEST(budget_keeps_many_uids_apart)
{
    /* The bucket table grows and drops full buckets; an exhausted one is never dropped. */
    for (uid_t u = 2000; u < 2300; u++)
        budget_charge(u, u % 2 ? 1000.0 : 0.0);
    for (uid_t u = 2000; u < 2300; u++)
        ck_assert_msg(budget_allow(u) == !(u % 2), "uid %u", (unsigned)u);
}
END_TEST

START_TEST(budget_cpu_clock_counts_this_thread)
{
    double t0 = budget_cpu_now();
    volatile uint64_t x = 0;
    double end = mono() + HANG_BOUND;
    while (budget_cpu_now() <= t0 && mono() < end)
        for (int i = 0; i < 100000; i++)
            x += (uint64_t)i;
    ck_assert(budget_cpu_now() > t0);
    /* Sleeping costs no CPU time... at least not a whole second of it. */
    double t1 = budget_cpu_now();
    usleep(200000);
    ck_assert(budget_cpu_now() - t1 < 0.2);
}
END_TEST

/* ---- closer.c ---------------------------------------------------------------------------- */

/* A connected TCP socket whose send queue is full (the peer reads nothing) and whose close()
 * would wait SO_LINGER = 600 s for it to drain; *listener keeps the peer alive. */
static int lingering_socket(int *listener)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int small = 4096;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(l, 0);
    setsockopt(l, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(l, 1), 0);
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    ck_assert_int_eq(connect(s, (struct sockaddr *)&a, sizeof a), 0);
    static char junk[65536];
    size_t sent = 0;
    while (send(s, junk, sizeof junk, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
        sent++;
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_uint_gt(sent, 0);
    struct linger lg = {.l_onoff = 1, .l_linger = 600};
    ck_assert_int_eq(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    *listener = l;
    return s;
}

START_TEST(closer_does_not_block_on_a_lingering_socket)
{
    struct event_base *base = event_base_new();
    ck_assert_int_eq(closer_start(base), 0);
    int listener, s = lingering_socket(&listener);
    closer_submit(s, 1005);
    /* Queued, not closed here: closing it here would have returned only after the close
     * (600 s of linger), and closer_submit only closes itself when it cannot queue. */
    ck_assert_uint_eq(closer_pending(1005), 1);
    ck_assert_uint_eq(closer_pending(1006), 0);
    /* The close is stuck in the linger until the watchdog (on the loop) interrupts it
     * after CLOSER_TIMEOUT_SECONDS; then the descriptor is gone. */
    double end = mono() + HANG_BOUND;
    while (closer_pending(1005) && mono() < end)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert_msg(closer_pending(1005) == 0, "the lingering close was not interrupted");
    ck_assert_int_eq(fcntl(s, F_GETFD), -1);
    ck_assert_int_eq(errno, EBADF);
    closer_stop();
    close(listener);
    event_base_free(base);
}
END_TEST

START_TEST(closer_closes_and_charges_each_uid)
{
    struct event_base *base = event_base_new();
    ck_assert_int_eq(closer_start(base), 0);
    enum { N = 40 };
    int fds[2 * N];
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(pipe2(&fds[2 * i], O_CLOEXEC), 0);
        closer_submit(fds[2 * i], 1007 + (uid_t)(i % 2));
        closer_submit(fds[2 * i + 1], 1007 + (uid_t)(i % 2));
    }
    ck_assert_uint_le(closer_pending(1007), N);
    ck_assert_uint_le(closer_pending(1008), N);
    double end = mono() + HANG_BOUND;
    while ((closer_pending(1007) || closer_pending(1008)) && mono() < end)
        usleep(1000);
    ck_assert_uint_eq(closer_pending(1007), 0);
    ck_assert_uint_eq(closer_pending(1008), 0);
    for (int i = 0; i < 2 * N; i++)
        ck_assert_msg(fcntl(fds[i], F_GETFD) == -1 && errno == EBADF, "fd %d still open", fds[i]);
    closer_stop();
    event_base_free(base);
}
END_TEST

/* ---- synthetic span tables ----------------------------------------------------------------- */

#define CLASSES 2
static const struct mesh_size_class_info test_classes[CLASSES] = {
    {.object_size = 64, .span_pages = 1, .capacity = 64},
    {.object_size = 256, .span_pages = 2, .capacity = 32},
};

/* What record `id` of the synthetic table holds: every kind of record, including ones a
 * hostile shim may write (a class out of range, a state that does not exist, bits above
 * the class's capacity), deterministic so that the test knows what a scan must find. */
static void fill_record(struct mesh_span_record *r, uint32_t id)
{
    memset(r, 0, sizeof *r);
    r->phys_page = id * 7 % 100003;
    switch (id % 11) {
    case 0:
        return; /* FREE */
    case 1:
        r->state = MESH_SPAN_LARGE;
        r->span_pages = 3;
        return;
    case 2:
        r->state = MESH_SPAN_DETACHED;
        r->size_class = CLASSES + 1 + id % 200; /* no such class: skipped */
        r->bitmap[0] = 1;
        return;
    case 3:
        r->state = 77; /* no such state: skipped */
        r->size_class = 1;
        r->bitmap[0] = 1;
        return;
    default:
        break;
    }
    unsigned cls = 1 + id % CLASSES, cap = test_classes[cls - 1].capacity;
    r->size_class = (uint8_t)cls;
    r->state = id % 3 ? MESH_SPAN_DETACHED : id % 5 ? MESH_SPAN_ATTACHED : MESH_SPAN_DETACHED_FULL;
    r->virt_count = 1;
    if (id % 13 == 0)
        r->kernel_io = 1; /* held by the kernel: never a candidate */
    /* live distinct slots: j -> (7 j + id) mod cap is one-to-one (cap is a power of two). */
    unsigned live = id * 13 % (cap + 1);
    for (unsigned j = 0; j < live; j++) {
        unsigned slot = (7 * j + id) % cap;
        r->bitmap[slot / 64] |= 1ull << (slot % 64);
    }
    if (cap < 64)
        r->bitmap[0] |= ~0ull << cap; /* garbage above the capacity: not slots */
    r->bitmap[3] |= id % 4 == 0 ? 0xf0f0ull << 32 : 0;
}

/* What the synthetic table's records [1, n) summarise to, computed from fill_record's
 * rules directly (not through registry.c). */
static void expected_summary(uint32_t n, double cutoff, struct process_stats *st, size_t *candidates)
{
    memset(st, 0, sizeof *st);
    *candidates = 0;
    for (uint32_t id = 1; id < n; id++) {
        if (id % 11 == 0 || id % 11 == 2 || id % 11 == 3)
            continue;
        if (id % 11 == 1) {
            st->live_bytes += 3 * MESH_PAGE_SIZE;
            continue;
        }
        unsigned cls = 1 + id % CLASSES, cap = test_classes[cls - 1].capacity;
        unsigned live = id * 13 % (cap + 1);
        st->live_bytes += (uint64_t)live * test_classes[cls - 1].object_size;
        st->classes[cls - 1].spans++;
        st->classes[cls - 1].live_objects += live;
        st->classes[cls - 1].capacity_objects += cap;
        unsigned bucket = live * 10 / cap;
        st->classes[cls - 1].by_occupancy[bucket > 9 ? 9 : bucket]++;
        int detached = id % 3 != 0;
        if (detached && live > 0 && id % 13 != 0 && live <= cutoff * cap)
            ++*candidates;
    }
}

#define HEAP_PAGES 12345u

/* A memfd holding a table of `records` records (the file's size), whose header claims
 * max_records and record_hwm. */
static int make_table(uint32_t records, uint32_t max_records, uint32_t hwm)
{
    int fd = memfd_create("test-span-table", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    ck_assert_int_ge(fd, 0);
    /* The region generations where the header's claim puts them, if the file reaches so far. */
    size_t bytes = MESH_TABLE_HEADER_SIZE + (size_t)records * MESH_SPAN_RECORD_SIZE;
    if (max_records == records)
        bytes = (size_t)mesh_table_bytes(records);
    ck_assert_int_eq(ftruncate(fd, (off_t)bytes), 0);
    uint8_t *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert(m != MAP_FAILED);
    struct mesh_span_table_header *h = (void *)m;
    h->magic = MESH_SPAN_TABLE_MAGIC;
    h->version = MESH_SPAN_TABLE_VERSION;
    h->header_size = MESH_TABLE_HEADER_SIZE;
    h->page_size = MESH_PAGE_SIZE;
    h->record_size = MESH_SPAN_RECORD_SIZE;
    h->max_records = max_records;
    h->record_hwm = hwm;
    h->pid = getpid();
    h->class_count = CLASSES;
    memcpy(h->classes, test_classes, sizeof test_classes);
    h->counters.heap_pages = HEAP_PAGES;
    h->counters.meshes = 7;
    struct mesh_span_record *rec = (void *)(m + MESH_TABLE_HEADER_SIZE);
    for (uint32_t id = 1; id < records; id++)
        fill_record(&rec[id], id);
    munmap(m, bytes);
    return fd;
}

/* A registration of the table behind fd (fd stays the test's). */
static struct process *register_table(int fd, const char **why)
{
    static int init;
    if (!init++)
        ck_assert_int_eq(registry_init(), 0);
    return registry_add(dup(fd), -1, getpid(), 1009, "test", "test", NULL, why);
}

/* A registration of a fresh table of `records` records (its memfd in *fd). */
static struct process *table_of(uint32_t records, int *fd)
{
    *fd = make_table(records, records, records);
    const char *why = NULL;
    struct process *p = register_table(*fd, &why);
    ck_assert_msg(p, "registration refused: %s", why);
    return p;
}

/* ---- registry.c: hostile headers ------------------------------------------------------------ */

/* A header made hostile by `spoil`, registered: NULL expected, with why. */
static const char *register_spoiled(void (*spoil)(struct mesh_span_table_header *h))
{
    int fd = make_table(16, 16, 16);
    struct mesh_span_table_header h;
    ck_assert_int_eq(pread(fd, &h, sizeof h, 0), (ssize_t)sizeof h);
    spoil(&h);
    ck_assert_int_eq(pwrite(fd, &h, sizeof h, 0), (ssize_t)sizeof h);
    const char *why = NULL;
    ck_assert(register_table(fd, &why) == NULL);
    close(fd);
    return why;
}

static void bad_magic(struct mesh_span_table_header *h) { h->magic ^= 1; }
static void no_classes(struct mesh_span_table_header *h) { h->class_count = 0; }
static void too_many_classes(struct mesh_span_table_header *h) { h->class_count = MESH_MAX_CLASSES + 1; }
static void class_overflows_span(struct mesh_span_table_header *h) { h->classes[1].capacity = 33; }
static void class_too_big(struct mesh_span_table_header *h) { h->classes[0].capacity = MESH_MAX_SPAN_OBJECTS + 1; }
static void wrong_layout(struct mesh_span_table_header *h) { h->record_size = 64; }

START_TEST(registry_refuses_hostile_headers)
{
    ck_assert_str_eq(register_spoiled(bad_magic), "bad span table magic");
    ck_assert_str_eq(register_spoiled(no_classes), "bad size class count");
    ck_assert_str_eq(register_spoiled(too_many_classes), "bad size class count");
    ck_assert_str_eq(register_spoiled(class_overflows_span), "bad size class table");
    ck_assert_str_eq(register_spoiled(class_too_big), "bad size class table");
    ck_assert_str_eq(register_spoiled(wrong_layout), "span table layout does not match this meshd");
}
END_TEST

START_TEST(registry_refuses_non_memfds_before_fstat)
{
    /* "not a memfd" is the answer of the seals check, which registry_add makes before it
     * fstat()s anything (an fstat of a file on FUSE or NFS can block): a pipe, a socket, a
     * file of an ordinary filesystem and a character device all stop there. */
    int p[2], sv[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    /* This program's own file, on an ordinary filesystem (unless the build is on a tmpfs). */
    int file = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(file, 0);
    struct statfs fs;
    ck_assert_int_eq(fstatfs(file, &fs), 0);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int fds[] = {p[0], sv[0], devnull, file};
    size_t n = sizeof fds / sizeof *fds;
    if (fs.f_type == TMPFS_MAGIC) { /* a build on a tmpfs: its files could be sealed */
        close(file);
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        const char *why = NULL;
        ck_assert(registry_add(fds[i], -1, getpid(), 1009, "test", "test", NULL, &why) == NULL);
        ck_assert_str_eq(why, "span table is not a memfd");
        /* consumed: registry_add closes what it refuses */
        ck_assert_int_eq(fcntl(fds[i], F_GETFD), -1);
    }
    close(p[1]);
    close(sv[1]);
    /* A memfd too small for a header is refused after fstat, with its own reason. */
    int tiny = memfd_create("tiny", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    const char *why = NULL;
    ck_assert(registry_add(tiny, -1, getpid(), 1009, "test", "test", NULL, &why) == NULL);
    ck_assert_str_eq(why, "span table is not a regular file of a plausible size");
}
END_TEST

/* ---- summary.c ------------------------------------------------------------------------------ */

static struct event_base *sum_base;
static int ready_calls;
static struct process *ready_p;
static uint64_t ready_ctx;
static int ready_ok;
static struct table_summary ready_sum;

static void on_ready(struct process *p, uint64_t ctx, const struct table_summary *sum)
{
    ready_calls++;
    ready_p = p;
    ready_ctx = ctx;
    ready_ok = sum != NULL;
    if (sum)
        ready_sum = *sum;
}

static void summary_setup(void)
{
    sum_base = event_base_new();
    ck_assert(sum_base);
    summary_init(sum_base, on_ready);
}

/* Several slices and a partial one. */
#define BIG_RECORDS (3 * SUMMARY_SLICE_RECORDS + 1234)

/* A table bigger than a slice (its memfd in *fd) whose shared scan is under way, waited for
 * with ctx. */
static struct process *scan_under_way(int *fd, uint64_t ctx)
{
    struct process *p = table_of(BIG_RECORDS, fd);
    summary_attach(p);
    int pending = 0;
    ck_assert(summary_get(p, 0.5, policy_now(), &pending) == NULL && pending);
    ck_assert_int_eq(summary_wait(p, ctx), 0);
    return p;
}

/* The sliced scan of the table behind p: started, waited for, done. */
static const struct table_summary *sliced_summary(struct process *p, double cutoff)
{
    int pending = 0;
    summary_attach(p);
    ck_assert(summary_get(p, cutoff, policy_now(), &pending) == NULL);
    ck_assert_msg(pending, "a table bigger than a slice is not scanned at once");
    ck_assert_int_eq(summary_wait(p, 42), 0);
    ck_assert_msg(loop_until(sum_base, &ready_calls), "the sliced scan did not end");
    ck_assert_int_eq(ready_calls, 1);
    ck_assert(ready_p == p);
    ck_assert_uint_eq(ready_ctx, 42);
    ck_assert(ready_ok);
    /* Now cached: the same summary without another scan. */
    const struct table_summary *again = summary_get(p, cutoff, 0, &pending);
    ck_assert(again && !pending);
    ck_assert_mem_eq(&again->st, &ready_sum.st, sizeof again->st);
    return &ready_sum;
}

static void check_against(const struct table_summary *sum, uint32_t records, double cutoff)
{
    struct process_stats want;
    size_t candidates;
    expected_summary(records, cutoff, &want, &candidates);
    ck_assert_uint_eq(sum->st.heap_bytes, (uint64_t)HEAP_PAGES * MESH_PAGE_SIZE);
    ck_assert_uint_eq(sum->st.meshes, 7);
    ck_assert_uint_eq(sum->st.live_bytes, want.live_bytes);
    for (unsigned c = 0; c < CLASSES; c++) {
        ck_assert_uint_eq(sum->st.classes[c].spans, want.classes[c].spans);
        ck_assert_uint_eq(sum->st.classes[c].live_objects, want.classes[c].live_objects);
        ck_assert_uint_eq(sum->st.classes[c].capacity_objects, want.classes[c].capacity_objects);
        ck_assert_mem_eq(sum->st.classes[c].by_occupancy, want.classes[c].by_occupancy,
                         sizeof want.classes[c].by_occupancy);
    }
    for (unsigned c = CLASSES; c < MESH_MAX_CLASSES; c++) /* out-of-range classes: nothing */
        ck_assert_uint_eq(sum->st.classes[c].spans, 0);
    ck_assert_uint_eq(sum->candidates, candidates);
}

START_TEST(summary_sliced_equals_whole_scan)
{
    int fd = make_table(BIG_RECORDS, BIG_RECORDS, BIG_RECORDS);
    const char *why = NULL;
    struct process *sliced = register_table(fd, &why), *whole = register_table(fd, &why);
    ck_assert_msg(sliced && whole, "registration refused: %s", why);
    const struct table_summary *s = sliced_summary(sliced, 0.5);
    check_against(s, BIG_RECORDS, 0.5);
    /* A registration without a shared summary is scanned whole, at once. */
    int pending = 1;
    const struct table_summary *w = summary_get(whole, 0.5, 0, &pending);
    ck_assert(w && !pending);
    ck_assert_mem_eq(&w->st, &s->st, sizeof w->st);
    ck_assert_mem_eq(&w->counters, &s->counters, sizeof w->counters);
    ck_assert_uint_eq(w->candidates, s->candidates);
    close(fd);
}
END_TEST

START_TEST(summary_small_table_at_once)
{
    int fd;
    struct process *p = table_of(1000, &fd);
    summary_attach(p);
    int pending = 1;
    const struct table_summary *s = summary_get(p, 0.25, policy_now(), &pending);
    ck_assert(s && !pending);
    check_against(s, 1000, 0.25);
    close(fd);
}
END_TEST

START_TEST(summary_reads_only_what_the_file_holds)
{
    /* The header claims 2^22 records in use; the file holds BIG_RECORDS.  Nothing beyond
     * the file is read or counted (and a claim beyond the file maps nothing). */
    int fd = make_table(BIG_RECORDS, 1u << 22, 1u << 22);
    const char *why = NULL;
    struct process *p = register_table(fd, &why);
    ck_assert_msg(p, "registration refused: %s", why);
    ck_assert_uint_eq(p->max_records, BIG_RECORDS);
    check_against(sliced_summary(p, 0.5), BIG_RECORDS, 0.5);
    close(fd);
}
END_TEST

START_TEST(summary_hwm_bounds_the_scan)
{
    /* Records at or beyond record_hwm were never used: not counted, whatever they hold. */
    int fd = make_table(BIG_RECORDS, BIG_RECORDS, 2 * SUMMARY_SLICE_RECORDS + 5);
    const char *why = NULL;
    struct process *p = register_table(fd, &why);
    ck_assert(p);
    check_against(sliced_summary(p, 0.5), 2 * SUMMARY_SLICE_RECORDS + 5, 0.5);
    close(fd);
}
END_TEST

START_TEST(summary_fails_on_a_table_truncated_mid_scan)
{
    int fd, pending;
    struct process *p = scan_under_way(&fd, 43);
    /* The first slice is read; then the table goes, header and all (every slice reads
     * the header again: SIGBUS, caught). */
    ck_assert_int_eq(ftruncate(fd, 0), 0);
    ck_assert(loop_until(sum_base, &ready_calls));
    ck_assert(ready_p == p);
    ck_assert_uint_eq(ready_ctx, 43);
    ck_assert_msg(!ready_ok, "a truncated table gave a summary");
    /* From now on the table is broken: no summary, nothing pending (the caller drops p). */
    ck_assert(summary_get(p, 0.5, 0, &pending) == NULL);
    ck_assert(!pending);
    ck_assert(summary_last(p) == NULL);
    close(fd);
}
END_TEST

START_TEST(summary_ends_when_records_are_cut_mid_scan)
{
    /* The records go, the header stays: what is gone reads as never used, and the scan
     * ends (with no more than the table held). */
    int fd;
    scan_under_way(&fd, 45);
    ck_assert_int_eq(ftruncate(fd, MESH_TABLE_HEADER_SIZE + 10 * MESH_SPAN_RECORD_SIZE), 0);
    ck_assert(loop_until(sum_base, &ready_calls));
    ck_assert(ready_ok);
    struct process_stats all;
    size_t candidates;
    expected_summary(BIG_RECORDS, 0.5, &all, &candidates);
    ck_assert_uint_le(ready_sum.st.live_bytes, all.live_bytes);
    ck_assert_uint_le(ready_sum.candidates, candidates);
    close(fd);
}
END_TEST

START_TEST(summary_fails_on_a_truncated_header)
{
    int fd;
    struct process *p = table_of(1000, &fd);
    summary_attach(p);
    ck_assert_int_eq(ftruncate(fd, 0), 0); /* the header page: SIGBUS, caught */
    int pending = 1;
    ck_assert(summary_get(p, 0.5, policy_now(), &pending) == NULL);
    ck_assert(!pending);
    close(fd);
}
END_TEST

START_TEST(summary_waiters_hear_when_the_process_goes)
{
    int fd;
    struct process *p = scan_under_way(&fd, 44);
    summary_detach(p);
    ck_assert_int_eq(ready_calls, 1);
    ck_assert(ready_p == NULL);
    ck_assert_uint_eq(ready_ctx, 44);
    registry_remove(p);
    /* The scan stopped with it: turning the loop calls nobody. */
    for (int i = 0; i < 100; i++)
        event_base_loop(sum_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    ck_assert_int_eq(ready_calls, 1);
    close(fd);
}
END_TEST

/* ---- summary.c: reading again only the regions that changed -------------------------------- */

/* Records of the tables below: 8 regions, the last one partial. */
#define REGIONED_RECORDS (7 * MESH_REGION_RECORDS + 300)

/* The table behind fd, mapped writable: what the shim writes. */
struct writable {
    uint8_t *map;
    size_t bytes;
    uint32_t records;
};

static struct writable writable_table(int fd, uint32_t records)
{
    struct writable w = {.bytes = (size_t)mesh_table_bytes(records), .records = records};
    w.map = mmap(NULL, w.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert(w.map != MAP_FAILED);
    return w;
}

static struct mesh_span_record *wrec(struct writable *w, uint32_t id)
{
    return (struct mesh_span_record *)(w->map + MESH_TABLE_HEADER_SIZE) + id;
}

static uint32_t *wgen(struct writable *w, uint32_t id)
{
    return (uint32_t *)(w->map + mesh_regions_offset(w->records)) + (id >> MESH_REGION_SHIFT);
}

/* A registration of a fresh table of REGIONED_RECORDS records, its summary shared (attached),
 * its memfd in *fd and mapped writable in *w. */
static struct process *regioned_table(int *fd, struct writable *w)
{
    struct process *p = table_of(REGIONED_RECORDS, fd);
    *w = writable_table(*fd, REGIONED_RECORDS);
    summary_attach(p);
    return p;
}

/* A change to record id as the shim makes one (x picks which), its generation bumped if
 * `publish`. */
static void change_record(struct writable *w, uint32_t id, uint32_t x, int publish)
{
    struct mesh_span_record *r = wrec(w, id);
    switch (x % 7) {
    case 0: /* a remote free, or an allocation */
        r->bitmap[x / 7 % 4] ^= 1ull << (x / 29 % 64);
        break;
    case 1: /* detached, attached, full */
        r->state = (uint8_t)(MESH_SPAN_ATTACHED + x / 7 % 3);
        break;
    case 2: /* freed */
        r->state = MESH_SPAN_FREE;
        break;
    case 3: /* a large object, or its resize */
        r->state = MESH_SPAN_LARGE;
        r->span_pages = 1 + x / 7 % 50;
        break;
    case 4: /* a new span of another class (or of none: skipped) */
        r->state = MESH_SPAN_DETACHED;
        r->size_class = (uint8_t)(x / 7 % (CLASSES + 2));
        break;
    case 5: /* the kernel holds it, or lets go */
        r->kernel_io = r->kernel_io ? 0 : 1;
        break;
    default:
        r->flags ^= MESH_SPAN_FLAG_KERNEL_HELD;
        break;
    }
    if (publish)
        __atomic_fetch_add(wgen(w, id), 1, __ATOMIC_RELEASE);
}

/* A summary made now through p (attached: the shared, incremental one). */
static struct table_summary incremental(struct process *p, double cutoff)
{
    int pending = 0;
    ready_calls = 0;
    const struct table_summary *s = summary_get(p, cutoff, policy_now(), &pending);
    if (!s) {
        ck_assert(pending);
        ck_assert_int_eq(summary_wait(p, 1), 0);
        ck_assert(loop_until(sum_base, &ready_calls) && ready_ok);
        return ready_sum;
    }
    return *s;
}

/* The table behind fd read whole, by a registration that shares nothing. */
static struct table_summary whole_scan(int fd, double cutoff)
{
    const char *why = NULL;
    struct process *q = register_table(fd, &why);
    ck_assert_msg(q, "registration refused: %s", why);
    int pending = 1;
    const struct table_summary *s = summary_get(q, cutoff, 0, &pending);
    ck_assert(s && !pending);
    struct table_summary copy = *s;
    registry_remove(q);
    return copy;
}

static void same_summary(const struct table_summary *a, const struct table_summary *b)
{
    ck_assert_mem_eq(&a->st, &b->st, sizeof a->st);
    ck_assert_uint_eq(a->candidates, b->candidates);
}

static uint64_t regions_read(void) { return summary_work()->regions_read; }

START_TEST(summary_rereads_only_changed_regions)
{
    int fd;
    struct writable w;
    struct process *p = regioned_table(&fd, &w);
    uint64_t before = regions_read();
    struct table_summary s = incremental(p, 0.5);
    check_against(&s, REGIONED_RECORDS, 0.5);
    ck_assert_uint_eq(regions_read() - before, 8); /* the first pass reads every region */
    /* Nothing changed: nothing is read, the summary is the same. */
    before = regions_read();
    struct table_summary again = incremental(p, 0.5);
    ck_assert_uint_eq(regions_read(), before);
    same_summary(&again, &s);
    /* Records of regions 2 and 7 change: those two are read, no other. */
    change_record(&w, 2 * MESH_REGION_RECORDS + 17, 0, 1);
    change_record(&w, 2 * MESH_REGION_RECORDS + 900, 8, 1);
    change_record(&w, 7 * MESH_REGION_RECORDS + 5, 3, 1);
    before = regions_read();
    struct table_summary changed = incremental(p, 0.5);
    ck_assert_uint_eq(regions_read() - before, 2);
    struct table_summary truth = whole_scan(fd, 0.5);
    same_summary(&changed, &truth);
    /* Another cutoff counts candidates anew: every region once. */
    before = regions_read();
    struct table_summary other = incremental(p, 0.25);
    ck_assert_uint_eq(regions_read() - before, 8);
    truth = whole_scan(fd, 0.25);
    same_summary(&other, &truth);
    munmap(w.map, w.bytes);
    close(fd);
}
END_TEST

START_TEST(summary_equals_whole_scan_after_random_changes)
{
    int fd;
    struct writable w;
    struct process *p = regioned_table(&fd, &w);
    uint64_t x = 88172645463325252ull; /* xorshift: the same changes every run */
    for (int round = 0; round < 40; round++) {
        unsigned changes = 1 + (unsigned)(x % 200);
        for (unsigned k = 0; k < changes; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            change_record(&w, 1 + (uint32_t)(x % (REGIONED_RECORDS - 1)), (uint32_t)(x >> 32), 1);
        }
        double cutoff = round % 10 == 9 ? 0.75 : 0.5;
        struct table_summary s = incremental(p, cutoff), truth = whole_scan(fd, cutoff);
        same_summary(&s, &truth);
    }
    munmap(w.map, w.bytes);
    close(fd);
}
END_TEST

START_TEST(summary_lying_generations_fool_only_their_own_table)
{
    /* Liar: its records change but its generations never do.  Honest: another process
     * whose changes are published. */
    int lfd, hfd;
    struct process *liar = table_of(REGIONED_RECORDS, &lfd), *honest = table_of(REGIONED_RECORDS + 1, &hfd);
    struct writable lw = writable_table(lfd, REGIONED_RECORDS), hw = writable_table(hfd, REGIONED_RECORDS + 1);
    summary_attach(liar);
    summary_attach(honest);
    struct table_summary first = incremental(liar, 0.5);
    incremental(honest, 0.5);
    for (uint32_t id = 1; id < REGIONED_RECORDS; id += 3) {
        change_record(&lw, id, id, 0);
        change_record(&hw, id, id, 1);
    }
    uint64_t before = regions_read();
    struct table_summary stale = incremental(liar, 0.5);
    ck_assert_uint_eq(regions_read(), before); /* no work: it said nothing changed */
    same_summary(&stale, &first);              /* and is summarised as it was */
    struct table_summary h = incremental(honest, 0.5), htruth = whole_scan(hfd, 0.5);
    same_summary(&h, &htruth); /* the other process is seen as it is */
    /* Generations that change at every look: every pass reads the whole table, no more. */
    for (int pass = 0; pass < 3; pass++) {
        for (uint32_t g = 0; g < mesh_region_count(REGIONED_RECORDS); g++)
            __atomic_fetch_add((uint32_t *)(lw.map + mesh_regions_offset(REGIONED_RECORDS)) + g, 1,
                               __ATOMIC_RELEASE);
        before = regions_read();
        struct table_summary s = incremental(liar, 0.5), truth = whole_scan(lfd, 0.5);
        ck_assert_uint_eq(regions_read() - before, mesh_region_count(REGIONED_RECORDS));
        same_summary(&s, &truth);
    }
    munmap(lw.map, lw.bytes);
    munmap(hw.map, hw.bytes);
    close(lfd);
    close(hfd);
}
END_TEST

START_TEST(summary_without_generations_rereads_everything)
{
    /* The header claims more records than the file holds: the generations, where the claim
     * puts them, are beyond the file.  Every pass reads every region, and is right. */
    int fd = make_table(REGIONED_RECORDS, 1u << 22, REGIONED_RECORDS);
    const char *why = NULL;
    struct process *p = register_table(fd, &why);
    ck_assert_msg(p, "registration refused: %s", why);
    summary_attach(p);
    for (int pass = 0; pass < 3; pass++) {
        uint64_t before = regions_read();
        struct table_summary s = incremental(p, 0.5);
        ck_assert_uint_eq(regions_read() - before, 8);
        check_against(&s, REGIONED_RECORDS, 0.5);
    }
    close(fd);
}
END_TEST

START_TEST(summary_follows_the_hwm_down_and_up)
{
    /* A hostile table's record_hwm goes down (regions beyond it leave the summary) and up
     * again (they come back): the summary is always that of the records below it. */
    int fd;
    struct writable w;
    struct process *p = regioned_table(&fd, &w);
    struct mesh_span_table_header *h = (void *)w.map;
    uint32_t hwms[] = {REGIONED_RECORDS, 2 * MESH_REGION_RECORDS + 10, 1, 0, 5 * MESH_REGION_RECORDS,
                       REGIONED_RECORDS};
    for (size_t i = 0; i < sizeof hwms / sizeof *hwms; i++) {
        __atomic_store_n(&h->record_hwm, hwms[i], __ATOMIC_RELEASE);
        struct table_summary s = incremental(p, 0.5);
        check_against(&s, hwms[i] ? hwms[i] : 1, 0.5);
    }
    munmap(w.map, w.bytes);
    close(fd);
}
END_TEST

/* ---- planner.c -------------------------------------------------------------------------------- */

static int planned_calls, planned_ok;
static struct process *planned_p;

static void on_planned(struct process *p, int ok)
{
    planned_calls++;
    planned_ok = ok;
    planned_p = p;
}

/* Every pair is of two distinct candidates of one class with disjoint live slots, and no
 * span is in two pairs. */
static void check_plan(const struct mesh_plan *plan, uint32_t records)
{
    static uint8_t used[BIG_RECORDS];
    memset(used, 0, sizeof used);
    for (size_t i = 0; i < plan->npairs; i++) {
        uint32_t d = plan->dst[i], s = plan->src[i];
        ck_assert(d > 0 && d < records && s > 0 && s < records && d != s);
        ck_assert_msg(!used[d] && !used[s], "span in two pairs");
        used[d] = used[s] = 1;
        struct mesh_span_record rd, rs;
        fill_record(&rd, d);
        fill_record(&rs, s);
        ck_assert_uint_eq(rd.state, MESH_SPAN_DETACHED);
        ck_assert_uint_eq(rs.state, MESH_SPAN_DETACHED);
        ck_assert_uint_eq(rd.size_class, rs.size_class);
        ck_assert(rd.size_class >= 1 && rd.size_class <= CLASSES);
        ck_assert(!rd.kernel_io && !rs.kernel_io);
        unsigned cap = test_classes[rd.size_class - 1].capacity;
        for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++) {
            uint64_t mask = cap >= (w + 1) * 64 ? ~0ull : cap <= w * 64 ? 0 : (1ull << (cap - w * 64)) - 1;
            ck_assert_msg(!(rd.bitmap[w] & rs.bitmap[w] & mask), "pair %u+%u overlaps", d, s);
        }
    }
}

/* A plan of a table bigger than a slice (its memfd in *fd) under way into *plan. */
static struct process *plan_under_way(int *fd, struct mesh_plan *plan, struct planner **job)
{
    struct process *p = table_of(BIG_RECORDS, fd);
    *job = NULL;
    ck_assert_int_eq(planner_start(sum_base, p, plan, MESHER_MAX_PAIRS, 0.5, on_planned, job), 1);
    ck_assert(*job);
    ck_assert_int_eq(planned_calls, 0);
    return p;
}

START_TEST(planner_sliced_plan_matches_whole_plan)
{
    int fd;
    static struct mesh_plan whole, sliced;
    struct planner *job;
    struct process *p = plan_under_way(&fd, &sliced, &job);
    ck_assert_int_eq(mesher_plan(p, &whole, MESHER_MAX_PAIRS, 0.5), 0);
    ck_assert(loop_until(sum_base, &planned_calls));
    ck_assert_int_eq(planned_calls, 1);
    ck_assert(planned_p == p && planned_ok);
    /* The same candidates; pairs found by a random probe order, so only their validity and
     * number (both plans fill up: the table has far more meshable spans) compare. */
    size_t candidates;
    struct process_stats st;
    expected_summary(BIG_RECORDS, 0.5, &st, &candidates);
    ck_assert_uint_eq(sliced.candidates, candidates);
    ck_assert_uint_eq(whole.candidates, candidates);
    ck_assert_uint_eq(whole.npairs, MESHER_MAX_PAIRS);
    ck_assert_uint_eq(sliced.npairs, MESHER_MAX_PAIRS);
    check_plan(&whole, BIG_RECORDS);
    check_plan(&sliced, BIG_RECORDS);
    close(fd);
}
END_TEST

START_TEST(planner_small_table_at_once)
{
    int fd;
    struct process *p = table_of(1000, &fd);
    static struct mesh_plan plan;
    struct planner *job = NULL;
    ck_assert_int_eq(planner_start(sum_base, p, &plan, 10, 0.5, on_planned, &job), 0);
    ck_assert(job == NULL);
    ck_assert_uint_eq(plan.npairs, 10);
    check_plan(&plan, 1000);
    for (int i = 0; i < 100; i++)
        event_base_loop(sum_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    ck_assert_int_eq(planned_calls, 0);
    close(fd);
}
END_TEST

START_TEST(planner_fails_on_a_table_truncated_mid_plan)
{
    int fd;
    static struct mesh_plan plan;
    struct planner *job;
    struct process *p = plan_under_way(&fd, &plan, &job);
    ck_assert_int_eq(ftruncate(fd, 0), 0); /* header and all: the next slice's SIGBUS */
    ck_assert(loop_until(sum_base, &planned_calls));
    ck_assert(planned_p == p);
    ck_assert_msg(!planned_ok, "a truncated table gave a plan");
    close(fd);
}
END_TEST

START_TEST(planner_cancel_stops_the_plan)
{
    int fd;
    static struct mesh_plan plan;
    struct planner *job;
    struct process *p = plan_under_way(&fd, &plan, &job);
    planner_cancel(job);
    registry_remove(p); /* what the cancel is for: p may go at once */
    for (int i = 0; i < 100; i++)
        event_base_loop(sum_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    ck_assert_int_eq(planned_calls, 0);
    close(fd);
}
END_TEST

/* ---- runs: neighbouring sources onto neighbouring destinations --------------------------------- */

/* A table of 2 * half spans of class 1 on consecutive pages from page 1000, all detached
 * and sparse: the lower half keeps slots of one parity, the upper half the other (any
 * lower span meshes with any upper one) if `disjoint`, else each span keeps random slots
 * (a sixteenth of them) from a fixed seed. */
static struct process *runs_table_of(uint32_t half, int disjoint, uint8_t lower_virt, int *fd)
{
    uint32_t records = 2 * half + 1;
    struct process *p = table_of(records, fd);
    uint64_t rng = 0x2545f4914f6cdd1dull;
    struct mesh_span_record r;
    for (uint32_t id = 1; id < records; id++) {
        memset(&r, 0, sizeof r);
        r.state = MESH_SPAN_DETACHED;
        r.size_class = 1;
        r.virt_count = id <= half ? lower_virt : 1;
        r.phys_page = 1000 + id;
        r.span_pages = 1;
        for (unsigned slot = 0; slot < 64; slot++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            int keep = disjoint ? slot % 4 == (id <= half ? 0u : 1u) : rng % 16 == 0;
            r.bitmap[0] |= (uint64_t)keep << slot;
        }
        r.bitmap[0] |= r.bitmap[0] ? 0 : 1; /* live objects: a candidate */
        ck_assert_int_eq(pwrite(*fd, &r, sizeof r, MESH_TABLE_HEADER_SIZE + (off_t)id * MESH_SPAN_RECORD_SIZE),
                         (ssize_t)sizeof r);
    }
    return p;
}

static struct process *runs_table(uint32_t half, int disjoint, int *fd)
{
    return runs_table_of(half, disjoint, 1, fd);
}

/* Pairs i that extend pair i - 1's run, recounted from the table: source and destination
 * the page-neighbours after pair i - 1's (runs_table: page == 1000 + id). */
static size_t recount_runs(const struct mesh_plan *plan)
{
    size_t n = 0;
    for (size_t i = 1; i < plan->npairs; i++)
        n += plan->src[i] == plan->src[i - 1] + 1 && plan->dst[i] == plan->dst[i - 1] + 1;
    return n;
}

/* Pairs i whose source is the page-neighbour after pair i - 1's (its run, as the shim
 * meshes it), recounted from the table. */
static size_t recount_src_runs(const struct mesh_plan *plan)
{
    size_t n = 0;
    for (size_t i = 1; i < plan->npairs; i++)
        n += plan->src[i] == plan->src[i - 1] + 1;
    return n;
}

/* The plan lists its pairs by source page (one class here: runs_table). */
static void assert_ordered_by_source(const struct mesh_plan *plan)
{
    for (size_t i = 1; i < plan->npairs; i++)
        ck_assert_msg(plan->src[i] > plan->src[i - 1], "pair %zu: source %u after %u", i, plan->src[i],
                      plan->src[i - 1]);
}

START_TEST(planner_makes_runs_where_the_bitmaps_allow)
{
    int fd;
    enum { HALF = 1000 };
    struct process *p = runs_table(HALF, 1, &fd);
    static struct mesh_plan plan;
    ck_assert_int_eq(mesher_plan(p, &plan, MESHER_MAX_PAIRS, 0.5), 0);
    ck_assert_uint_eq(plan.candidates, 2 * HALF);
    ck_assert_uint_eq(plan.npairs, HALF); /* every span paired, as without runs */
    ck_assert_uint_eq(plan.run_pairs, recount_runs(&plan));
    ck_assert_uint_eq(plan.src_run_pairs, recount_src_runs(&plan));
    assert_ordered_by_source(&plan);
    /* Runs break only where the upper half's end cuts one: a handful of runs in all. */
    ck_assert_uint_ge(plan.run_pairs, HALF - 8);
    for (size_t i = 0; i < plan.npairs; i++)
        ck_assert_msg(plan.src[i] <= HALF && plan.dst[i] > HALF, "pair %zu: %u <- %u", i, plan.dst[i], plan.src[i]);
    close(fd);
}
END_TEST

START_TEST(planner_makes_runs_with_sources_on_the_right)
{
    /* The lower spans were meshed before (two virtual spans each): the upper ones are the
     * sources (the fewer remaps), and the runs follow them. */
    int fd;
    enum { HALF = 1000 };
    struct process *p = runs_table_of(HALF, 1, 2, &fd);
    static struct mesh_plan plan;
    ck_assert_int_eq(mesher_plan(p, &plan, MESHER_MAX_PAIRS, 0.5), 0);
    ck_assert_uint_eq(plan.npairs, HALF);
    ck_assert_uint_eq(plan.run_pairs, recount_runs(&plan));
    ck_assert_uint_ge(plan.run_pairs, HALF - 8);
    for (size_t i = 0; i < plan.npairs; i++)
        ck_assert_msg(plan.src[i] > HALF && plan.dst[i] <= HALF, "pair %zu: %u <- %u", i, plan.dst[i], plan.src[i]);
    close(fd);
}
END_TEST

START_TEST(planner_runs_keep_the_pairs_of_random_bitmaps)
{
    /* A sixteenth of the slots kept at random: not every neighbour meshes, so runs are
     * shorter; the pairing still pairs about as many spans as a plain first fit would
     * (which pairs nearly all: two random sixteenths of 64 slots are disjoint often enough
     * within MESHER_PROBES tries), and many pairs extend a run. */
    int fd;
    enum { HALF = 1500 };
    struct process *p = runs_table(HALF, 0, &fd);
    static struct mesh_plan plan;
    ck_assert_int_eq(mesher_plan(p, &plan, MESHER_MAX_PAIRS, 0.5), 0);
    ck_assert_uint_eq(plan.run_pairs, recount_runs(&plan));
    ck_assert_uint_eq(plan.src_run_pairs, recount_src_runs(&plan));
    ck_assert_uint_ge(plan.npairs, HALF * 9 / 10);
    ck_assert_uint_gt(plan.run_pairs, 0);
    ck_assert_uint_ge(plan.src_run_pairs, plan.run_pairs);
    close(fd);
}
END_TEST

START_TEST(planner_orders_interleaved_sources_by_page)
{
    /* Every other lower span was meshed before (two virtual spans): a pair's source is the
     * lower span when it has one virtual span, else its upper partner, so the pairing's
     * order alternates between the halves.  The finished plan is ordered by source, its
     * pairs the same (each span once, each source chosen as before), its runs counted on
     * that order. */
    int fd;
    enum { HALF = 1000 };
    uint32_t records = 2 * HALF + 1;
    struct process *p = runs_table(HALF, 1, &fd);
    struct mesh_span_record r;
    for (uint32_t id = 2; id <= HALF; id += 2) {
        ck_assert_int_eq(pread(fd, &r, sizeof r, MESH_TABLE_HEADER_SIZE + (off_t)id * MESH_SPAN_RECORD_SIZE),
                         (ssize_t)sizeof r);
        r.virt_count = 2;
        ck_assert_int_eq(pwrite(fd, &r, sizeof r, MESH_TABLE_HEADER_SIZE + (off_t)id * MESH_SPAN_RECORD_SIZE),
                         (ssize_t)sizeof r);
    }
    static struct mesh_plan plan;
    ck_assert_int_eq(mesher_plan(p, &plan, MESHER_MAX_PAIRS, 0.5), 0);
    ck_assert_uint_eq(plan.npairs, HALF);
    assert_ordered_by_source(&plan);
    ck_assert_uint_eq(plan.src_run_pairs, recount_src_runs(&plan));
    ck_assert_uint_eq(plan.run_pairs, recount_runs(&plan));
    size_t lower = 0, seen[2 * HALF + 1] = {0};
    for (size_t i = 0; i < plan.npairs; i++) {
        ck_assert_uint_lt(plan.src[i], records);
        ck_assert_uint_lt(plan.dst[i], records);
        ck_assert_uint_eq(seen[plan.src[i]]++ + seen[plan.dst[i]]++, 0); /* each span once */
        /* a source is a lower span of one virtual span, or an upper one paired with a lower
         * span of two */
        if (plan.src[i] <= HALF) {
            ck_assert_uint_eq(plan.src[i] % 2, 1);
            lower++;
        } else {
            ck_assert_uint_le(plan.dst[i], HALF);
            ck_assert_uint_eq(plan.dst[i] % 2, 0);
        }
    }
    ck_assert_uint_eq(lower, HALF / 2); /* every odd lower span is a source */
    close(fd);
}
END_TEST

START_TEST(planner_sliced_runs_match_whole_runs)
{
    /* More records than a slice: the sliced plan pairs as many and runs as well. */
    int fd;
    enum { HALF = PLANNER_SLICE_RECORDS };
    struct process *p = runs_table(HALF, 1, &fd);
    static struct mesh_plan whole, sliced;
    ck_assert_int_eq(mesher_plan(p, &whole, MESHER_MAX_PAIRS, 0.5), 0);
    struct planner *job = NULL;
    ck_assert_int_eq(planner_start(sum_base, p, &sliced, MESHER_MAX_PAIRS, 0.5, on_planned, &job), 1);
    ck_assert(loop_until(sum_base, &planned_calls));
    ck_assert(planned_p == p && planned_ok);
    ck_assert_uint_eq(sliced.candidates, whole.candidates);
    ck_assert_uint_eq(whole.npairs, MESHER_MAX_PAIRS);
    ck_assert_uint_eq(sliced.npairs, MESHER_MAX_PAIRS);
    ck_assert_uint_eq(whole.run_pairs, recount_runs(&whole));
    ck_assert_uint_eq(sliced.run_pairs, recount_runs(&sliced));
    ck_assert_uint_eq(sliced.src_run_pairs, whole.src_run_pairs);
    ck_assert_uint_ge(whole.run_pairs, MESHER_MAX_PAIRS - 8);
    ck_assert_uint_ge(sliced.run_pairs, MESHER_MAX_PAIRS - 8);
    close(fd);
}
END_TEST

START_TEST(planner_takes_larger_spans_first)
{
    /* HALF + HALF sparse spans of class 1 (one page each) on low pages, then as many of
     * class 2 (two pages) on higher ones, every lower span of a class meshable with every
     * upper one.  A plan of fewer pairs than either class offers takes them all from class
     * 2: two pages released for the kernel mapping a pair costs, not one (mesher.h).  A
     * plan with room for both pairs both, each span once, and lists class 2 first. */
    int fd;
    enum { HALF = 200 };
    uint32_t records = 4 * HALF + 1;
    struct process *p = table_of(records, &fd);
    struct mesh_span_record r;
    for (uint32_t id = 1; id < records; id++) {
        unsigned cls = id <= 2 * HALF ? 1 : 2, k = (id - 1) % (2 * HALF);
        memset(&r, 0, sizeof r);
        r.state = MESH_SPAN_DETACHED;
        r.size_class = (uint8_t)cls;
        r.virt_count = 1;
        r.span_pages = test_classes[cls - 1].span_pages;
        r.phys_page = cls == 1 ? 1000 + k : 5000 + 2 * k;
        r.virt_page[0] = r.phys_page;
        for (unsigned slot = 0; slot < test_classes[cls - 1].capacity; slot++)
            r.bitmap[0] |= (uint64_t)(slot % 4 == (k < HALF ? 0u : 1u)) << slot;
        ck_assert_int_eq(pwrite(fd, &r, sizeof r, MESH_TABLE_HEADER_SIZE + (off_t)id * MESH_SPAN_RECORD_SIZE),
                         (ssize_t)sizeof r);
    }
    static struct mesh_plan plan;
    ck_assert_int_eq(mesher_plan(p, &plan, HALF / 2, 0.5), 0);
    ck_assert_uint_eq(plan.candidates, 4 * HALF);
    ck_assert_uint_eq(plan.npairs, HALF / 2);
    for (size_t i = 0; i < plan.npairs; i++) {
        ck_assert_uint_eq(plan.place[i].cls, 2);
        ck_assert_uint_gt(plan.src[i], 2 * HALF);
        ck_assert_uint_gt(plan.dst[i], 2 * HALF);
    }
    ck_assert_int_eq(mesher_plan(p, &plan, MESHER_MAX_PAIRS, 0.5), 0);
    ck_assert_uint_eq(plan.npairs, 2 * HALF);
    static uint8_t seen[4 * HALF + 1];
    size_t of_class[3] = {0};
    for (size_t i = 0; i < plan.npairs; i++) {
        ck_assert_uint_eq(seen[plan.src[i]]++ + seen[plan.dst[i]]++, 0);
        of_class[plan.place[i].cls]++;
    }
    ck_assert_uint_eq(of_class[1], HALF);
    ck_assert_uint_eq(of_class[2], HALF);
    /* Listed as planned, class 2 first (a budget that runs out part way through the
     * request leaves the smaller spans), each class by source page. */
    for (size_t i = 0; i < plan.npairs; i++) {
        ck_assert_uint_eq(plan.place[i].cls, i < HALF ? 2 : 1);
        if (i % HALF)
            ck_assert_uint_gt(plan.place[i].src_page, plan.place[i - 1].src_page);
    }
    close(fd);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("meshd_units");
    add_case(s, budget_refuses_an_exhausted_uid_only, NULL);
    add_case(s, budget_never_limits_root, NULL);
    add_case(s, budget_counts_cheap_requests, NULL);
    add_case(s, budget_ignores_negative_charges, NULL);
    add_case(s, budget_refills, NULL);
    add_case(s, budget_keeps_many_uids_apart, NULL);
    add_case(s, budget_cpu_clock_counts_this_thread, NULL);
    add_case(s, closer_does_not_block_on_a_lingering_socket, NULL);
    add_case(s, closer_closes_and_charges_each_uid, NULL);
    add_case(s, registry_refuses_hostile_headers, NULL);
    add_case(s, registry_refuses_non_memfds_before_fstat, NULL);
    add_case(s, summary_sliced_equals_whole_scan, summary_setup);
    add_case(s, summary_small_table_at_once, summary_setup);
    add_case(s, summary_reads_only_what_the_file_holds, summary_setup);
    add_case(s, summary_hwm_bounds_the_scan, summary_setup);
    add_case(s, summary_fails_on_a_table_truncated_mid_scan, summary_setup);
    add_case(s, summary_ends_when_records_are_cut_mid_scan, summary_setup);
    add_case(s, summary_fails_on_a_truncated_header, summary_setup);
    add_case(s, summary_waiters_hear_when_the_process_goes, summary_setup);
    add_case(s, summary_rereads_only_changed_regions, summary_setup);
    add_case(s, summary_equals_whole_scan_after_random_changes, summary_setup);
    add_case(s, summary_lying_generations_fool_only_their_own_table, summary_setup);
    add_case(s, summary_without_generations_rereads_everything, summary_setup);
    add_case(s, summary_follows_the_hwm_down_and_up, summary_setup);
    add_case(s, planner_sliced_plan_matches_whole_plan, summary_setup);
    add_case(s, planner_small_table_at_once, summary_setup);
    add_case(s, planner_fails_on_a_table_truncated_mid_plan, summary_setup);
    add_case(s, planner_cancel_stops_the_plan, summary_setup);
    add_case(s, planner_makes_runs_where_the_bitmaps_allow, summary_setup);
    add_case(s, planner_makes_runs_with_sources_on_the_right, summary_setup);
    add_case(s, planner_runs_keep_the_pairs_of_random_bitmaps, summary_setup);
    add_case(s, planner_orders_interleaved_sources_by_page, summary_setup);
    add_case(s, planner_sliced_runs_match_whole_runs, summary_setup);
    add_case(s, planner_takes_larger_spans_first, summary_setup);
    return run_suite(s);
}
