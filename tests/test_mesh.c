/* test_mesh.c: meshing spans in place: contents, aliases, frees, barrier, fork, budget. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alias_map.h"
#include "arena.h"
#include "kernel_hold.h"
#include "span_table.h"

enum { SIZE = 256, CAP = 16, SPAN = 4096 }; /* class 256: one page, 16 objects */

struct span_objs {
    uint32_t id;
    void *slot[CAP]; /* by slot; NULL once freed */
};

static unsigned slot_of(const void *p) { return (unsigned)(((uintptr_t)p & (SPAN - 1)) / SIZE); }
static uint8_t *span_base(const void *p) { return (uint8_t *)((uintptr_t)p & ~(uintptr_t)(SPAN - 1)); }

/* Allocates until `want` spans of the class are completely filled by this test, and
 * returns them with their objects (each patterned with its own address). */
static void fill_spans(struct span_objs *out, unsigned want)
{
    static void *pool[4096];
    unsigned n = 0, found = 0;
    mesh_thread_flush();
    while (found < want && n < 4096) {
        pool[n] = mesh_malloc(SIZE);
        pattern_fill(pool[n], SIZE, 1);
        n++;
        found = 0;
        /* count spans with all CAP slots among what we hold */
        for (unsigned i = 0; i < n && found < want; i++) {
            uint32_t id = mesh_span_of(pool[i]);
            unsigned have = 0, dup = 0;
            for (unsigned k = 0; k < found; k++)
                dup |= out[k].id == id;
            if (dup)
                continue;
            memset(&out[found], 0, sizeof out[found]);
            for (unsigned j = 0; j < n; j++)
                if (mesh_span_of(pool[j]) == id) {
                    out[found].slot[slot_of(pool[j])] = pool[j];
                    have++;
                }
            if (have == CAP) {
                out[found].id = id;
                found++;
            }
        }
    }
    ck_assert_uint_eq(found, want);
    /* objects outside the chosen spans stay allocated: they are not part of the test */
}

/* Frees the objects of s whose slot is not congruent to keep (mod m). */
static void keep_slots(struct span_objs *s, unsigned m, unsigned keep)
{
    for (unsigned j = 0; j < CAP; j++)
        if (j % m != keep) {
            mesh_free(s->slot[j]);
            s->slot[j] = NULL;
        }
}

/* Two full spans of the class, then every other object freed so that their live slots
 * are disjoint (s[0] keeps the even slots, s[1] the odd ones): a pair that meshes. */
static void fill_disjoint_pair(struct span_objs s[2])
{
    fill_spans(s, 2);
    keep_slots(&s[0], 2, 0);
    keep_slots(&s[1], 2, 1);
    mesh_thread_flush();
}

/* n full spans of the class, span k keeping the slots congruent to k (mod n): live slots
 * pairwise disjoint, so any two of them mesh. */
static void fill_interleaved(struct span_objs *s, unsigned n)
{
    fill_spans(s, n);
    for (unsigned k = 0; k < n; k++)
        keep_slots(&s[k], n, k);
    mesh_thread_flush();
}

/* Frees every object the test still holds in spans s[0..n). */
static void free_objects(struct span_objs *s, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = 0; j < CAP; j++)
            if (s[i].slot[j])
                mesh_free(s[i].slot[j]);
}

static void check_contents(const struct span_objs *s)
{
    for (unsigned j = 0; j < CAP; j++)
        if (s->slot[j])
            ck_assert_msg(pattern_ok(s->slot[j], SIZE, 1), "object at slot %u corrupt", j);
}

static uint64_t committed(void)
{
    struct stat st;
    ck_assert_int_eq(fstat(mesh_arena_fd(), &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

static int mesh_one(uint32_t dst, uint32_t src)
{
    uint32_t pair[2] = {dst, src};
    int reason = 99;
    mesh_mesh_pairs(pair, 1, &reason);
    return reason;
}

START_TEST(two_spans_mesh_in_place)
{
    struct span_objs s[2];
    fill_disjoint_pair(s);
    uint64_t before = committed();
    ck_assert_int_eq(mesh_one(s[0].id, s[1].id), -1);
    /* exactly the source's physical page went back */
    ck_assert_uint_eq(committed(), before - SPAN);
    check_contents(&s[0]);
    check_contents(&s[1]);
    ck_assert_uint_eq(mesh_span_of(s[1].slot[1]), s[0].id);
    /* the two virtual pages are one physical page: a write through either is seen in both */
    uint8_t *a = span_base(s[0].slot[0]), *b = span_base(s[1].slot[1]);
    b[SIZE * 1 + 7] ^= 0x5a;
    ck_assert_uint_eq(a[SIZE * 1 + 7], b[SIZE * 1 + 7]);
    a[SIZE * 0 + 3] ^= 0x33;
    ck_assert_uint_eq(b[SIZE * 0 + 3], a[SIZE * 0 + 3]);
    a[SIZE * 0 + 3] ^= 0x33;
    b[SIZE * 1 + 7] ^= 0x5a;
    ck_assert_int_eq(mesh_heap_check(), 0);
    /* frees through the alias land in the merged span; when it empties, both go */
    for (unsigned j = 0; j < CAP; j++) {
        if (s[1].slot[j])
            mesh_free(s[1].slot[j]);
        if (s[0].slot[j])
            mesh_free(s[0].slot[j]);
    }
    mesh_thread_flush();
    ck_assert_int_eq(mesh_heap_check(), 0);
    ck_assert_uint_eq(mesh_span_of(b), 0); /* the alias is unmapped and its pages free */
    struct mesh_stats st;
    mesh_stats_get(&st);
    ck_assert_uint_eq(mesh_spans.header->counters.meshes, 1);
}
END_TEST

START_TEST(three_spans_into_one)
{
    struct span_objs s[3];
    fill_interleaved(s, 3);
    uint64_t before = committed();
    ck_assert_int_eq(mesh_one(s[0].id, s[1].id), -1);
    ck_assert_int_eq(mesh_one(s[0].id, s[2].id), -1);
    ck_assert_uint_eq(committed(), before - 2 * SPAN);
    for (unsigned k = 0; k < 3; k++)
        check_contents(&s[k]);
    ck_assert_uint_eq(mesh_record(s[0].id)->virt_count, 3);
    ck_assert_int_eq(mesh_heap_check(), 0);
    /* a new allocation may reuse a slot freed through any alias, never a live one */
    mesh_free(s[2].slot[2]);
    s[2].slot[2] = NULL;
    for (unsigned k = 0; k < 3; k++)
        check_contents(&s[k]);
}
END_TEST

START_TEST(invalid_pairs_are_refused)
{
    struct span_objs s[3];
    fill_spans(s, 3);
    keep_slots(&s[0], 2, 0);
    keep_slots(&s[1], 2, 0); /* same offsets as s[0] */
    mesh_thread_flush();
    ck_assert_int_eq(mesh_one(s[0].id, s[0].id), MESH_REJECT_SAME_SPAN);
    ck_assert_int_eq(mesh_one(0, s[0].id), MESH_REJECT_BAD_SPAN);
    ck_assert_int_eq(mesh_one(s[0].id, 0xfffffff), MESH_REJECT_BAD_SPAN);
    ck_assert_int_eq(mesh_one(s[0].id, s[1].id), MESH_REJECT_OVERLAP);
    ck_assert_int_eq(mesh_one(s[0].id, s[2].id), MESH_REJECT_OVERLAP); /* s[2] is full */
    void *big = mesh_malloc(1000); /* another class, attached to this thread */
    ck_assert_int_eq(mesh_one(s[0].id, mesh_span_of(big)), MESH_REJECT_CLASS);
    void *mine = mesh_malloc(SIZE); /* attaches a span of the class to this thread */
    uint32_t attached = mesh_span_of(mine), other = attached == s[0].id ? s[1].id : s[0].id;
    ck_assert_int_eq(mesh_one(attached, other), MESH_REJECT_NOT_DETACHED);
    ck_assert_int_eq(mesh_one(other, attached), MESH_REJECT_NOT_DETACHED);
    ck_assert_uint_ge(mesh_spans.header->counters.mesh_rejected[MESH_REJECT_OVERLAP], 2);
    check_contents(&s[0]);
    check_contents(&s[1]);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

START_TEST(mapping_budget_refuses_without_failing)
{
    setenv("MESH_MAP_BUDGET", "2", 1); /* room for one alias */
    struct span_objs s[3];
    fill_interleaved(s, 3);
    ck_assert_int_eq(mesh_one(s[0].id, s[1].id), -1);
    ck_assert_int_eq(mesh_one(s[0].id, s[2].id), MESH_REJECT_BUDGET);
    ck_assert_uint_eq(mesh_spans.header->counters.mesh_rejected[MESH_REJECT_BUDGET], 1);
    for (unsigned k = 0; k < 3; k++)
        check_contents(&s[k]);
    void *more[1000];
    for (int i = 0; i < 1000; i++)
        ck_assert_ptr_nonnull(more[i] = mesh_malloc(SIZE)); /* allocation never fails */
    for (int i = 0; i < 1000; i++)
        mesh_free(more[i]);
}
END_TEST

/* ---- mapping count ---------------------------------------------------------------------- */

/* VMAs the kernel holds inside the arena, from /proc/self/maps (read with read(2): the
 * test must not depend on stdio buffering through the allocator under test). */
static unsigned arena_vmas(void)
{
    static char buf[1 << 20];
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    size_t len = 0;
    for (ssize_t got; (got = read(fd, buf + len, sizeof buf - 1 - len)) > 0;)
        len += (size_t)got;
    close(fd);
    buf[len] = '\0';
    uintptr_t lo = (uintptr_t)mesh_arena.base, hi = lo + mesh_arena.bytes;
    unsigned n = 0;
    for (char *line = buf; *line;) {
        char *end;
        uintptr_t from = (uintptr_t)strtoull(line, &end, 16);
        uintptr_t to = (uintptr_t)strtoull(end + 1, NULL, 16);
        n += from >= lo && to <= hi;
        char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : line + strlen(line);
    }
    return n;
}

static uint32_t page_of_span(uint32_t id) { return mesh_record(id)->phys_page; }

static int by_page(const void *a, const void *b)
{
    uint32_t x = page_of_span(((const struct span_objs *)a)->id);
    uint32_t y = page_of_span(((const struct span_objs *)b)->id);
    return (x > y) - (x < y);
}

/* The budget counts what the kernel really holds: one VMA per run of pages with
 * consecutive file pages.  Meshing a run of adjacent spans onto a run of adjacent spans
 * costs two mappings in all, not two per pair; freeing everything restores one mapping. */
START_TEST(mapping_count_matches_the_kernel)
{
    enum { N = 12 };
    struct span_objs s[N];
    fill_spans(s, N);
    qsort(s, N, sizeof s[0], by_page);
    /* The first half meshes into the second, pair i: s[i] -> s[N/2 + i]. */
    for (unsigned i = 0; i < N / 2; i++) {
        keep_slots(&s[N / 2 + i], 2, 0);
        keep_slots(&s[i], 2, 1);
    }
    mesh_thread_flush();
    ck_assert_uint_eq(arena_vmas(), 1 + mesh_alias_breaks());
    uint32_t breaks0 = mesh_alias_breaks();
    unsigned runs = 0;
    for (unsigned i = 0; i < N / 2; i++) {
        uint32_t src = s[i].id, dst = s[N / 2 + i].id;
        int continues = i > 0 && page_of_span(src) == page_of_span(s[i - 1].id) + 1 &&
                        page_of_span(dst) == page_of_span(s[N / 2 + i - 1].id) + 1;
        runs += !continues;
        int expect = mesh_alias_cost(page_of_span(src), page_of_span(dst), 1);
        uint32_t before = mesh_alias_breaks();
        ck_assert_int_eq(mesh_one(dst, src), -1);
        ck_assert_uint_eq(mesh_alias_breaks(), before + (uint32_t)expect);
        ck_assert_uint_eq(arena_vmas(), 1 + mesh_alias_breaks());
        if (continues)
            ck_assert_int_le(expect, 0); /* extends the previous alias */
    }
    /* A fresh heap hands a class adjacent pages, so some pairs did extend a run. */
    ck_assert_uint_lt(runs, N / 2);
    ck_assert_uint_le(mesh_alias_breaks(), breaks0 + 2 * runs);
    for (unsigned i = 0; i < N; i++)
        check_contents(&s[i]);
    free_objects(s, N);
    mesh_thread_flush();
    ck_assert_uint_eq(arena_vmas(), 1 + mesh_alias_breaks());
    ck_assert_uint_eq(mesh_alias_breaks(), 0);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

/* When the kernel refuses to restore a dead alias's own mapping (vm.max_map_count reached
 * by the program itself), the free that empties the span must not fail: the alias's
 * addresses are retired, counted, and never handed out again. */
START_TEST(refused_restore_retires_the_alias)
{
    setenv("MESH_TEST_FAIL_RESTORE", "1", 1);
    struct span_objs s[2];
    fill_disjoint_pair(s);
    ck_assert_int_eq(mesh_one(s[0].id, s[1].id), -1);
    uint8_t *alias = span_base(s[1].slot[1]);
    free_objects(s, 2);
    mesh_thread_flush();
    ck_assert_uint_eq(mesh_spans.header->counters.retired_pages, 1);
    ck_assert_uint_eq(mesh_span_of(alias), 0);
    ck_assert_int_eq(mesh_heap_check(), 0);
    static void *more[3000];
    for (int i = 0; i < 3000; i++) {
        more[i] = mesh_malloc(i % 3 ? SIZE : 4096 * (1 + i % 5));
        ck_assert_ptr_nonnull(more[i]);
        ck_assert_msg((uint8_t *)more[i] + 1 <= alias || (uint8_t *)more[i] >= alias + SPAN,
                      "allocation %d at %p is in the retired alias %p", i, more[i], (void *)alias);
    }
    for (int i = 0; i < 3000; i++)
        mesh_free(more[i]);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

/* ---- writer hitting the barrier ----------------------------------------------------------- */

static _Atomic int writer_stop;
static _Atomic long writer_done;

static void *writer(void *arg)
{
    volatile long *counter = arg;
    long n = 0;
    while (!atomic_load(&writer_stop)) {
        *counter = *counter + 1;
        n++;
    }
    atomic_store(&writer_done, n);
    return NULL;
}

static const char *barrier_modes[] = {"auto", "mprotect"};

START_TEST(writer_on_the_barrier_loses_nothing)
{
    setenv("MESH_BARRIER", barrier_modes[_i], 1);
    struct span_objs s[2];
    for (int round = 0; round < 20; round++) {
        fill_spans(s, 2);
        keep_slots(&s[0], 2, 0);
        keep_slots(&s[1], 2, 1);
        mesh_thread_flush();
        long *counter = s[1].slot[3];
        *counter = 0;
        atomic_store(&writer_stop, 0);
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, writer, counter), 0);
        usleep(1000);
        ck_assert_int_eq(mesh_one(s[0].id, s[1].id), -1);
        usleep(1000);
        atomic_store(&writer_stop, 1);
        pthread_join(t, NULL);
        ck_assert_int_eq(*counter, atomic_load(&writer_done));
        ck_assert_int_eq(*(long *)(span_base(s[0].slot[0]) + 3 * SIZE), *counter);
    }
    ck_assert_uint_eq(mesh_spans.header->counters.meshes, 20);
    ck_assert_uint_gt(mesh_spans.header->counters.barrier_ns_total, 0);
}
END_TEST

/* ---- scheduling of a hold ------------------------------------------------------------------ */

struct mesher_arg {
    uint32_t dst, src;
    _Atomic pid_t tid;
    _Atomic int done, result, policy_after;
};

static void *mesher(void *arg)
{
    struct mesher_arg *m = arg;
    atomic_store(&m->tid, gettid());
    atomic_store(&m->result, mesh_one(m->dst, m->src));
    atomic_store(&m->policy_after, sched_getscheduler(0));
    atomic_store(&m->done, 1);
    return NULL;
}

/* Where the process may use SCHED_FIFO (root here), the meshing thread holds the barrier
 * as SCHED_FIFO, so that no ordinary thread preempts it mid-hold, and is SCHED_OTHER
 * again afterwards; where it may not, it never changes policy. */
START_TEST(hold_runs_as_fifo_where_allowed)
{
    setenv("MESH_TEST_BARRIER_DELAY_US", "200000", 1);
    struct sched_param sp = {.sched_priority = 1};
    int allowed = sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
    sp.sched_priority = 0;
    if (allowed)
        ck_assert_int_eq(sched_setscheduler(0, SCHED_OTHER, &sp), 0);
    struct span_objs s[2];
    fill_disjoint_pair(s);
    struct mesher_arg m = {.dst = s[0].id, .src = s[1].id};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, mesher, &m), 0);
    int fifo_seen = 0;
    while (!atomic_load(&m.done)) {
        pid_t tid = atomic_load(&m.tid);
        int policy = tid ? sched_getscheduler(tid) : -1; /* may carry SCHED_RESET_ON_FORK */
        fifo_seen |= policy >= 0 && (policy & ~SCHED_RESET_ON_FORK) == SCHED_FIFO;
        usleep(2000);
    }
    pthread_join(t, NULL);
    ck_assert_int_eq(atomic_load(&m.result), -1);
    ck_assert_int_eq(fifo_seen, allowed);
    ck_assert_int_eq(atomic_load(&m.policy_after), SCHED_OTHER); /* lowered before returning */
    ck_assert_int_eq(sched_getscheduler(0), SCHED_OTHER); /* never touched the caller */
    check_contents(&s[0]);
    check_contents(&s[1]);
}
END_TEST

START_TEST(fork_keeps_the_aliases)
{
    struct span_objs s[2];
    fill_disjoint_pair(s);
    ck_assert_int_eq(mesh_one(s[0].id, s[1].id), -1);
    uint8_t *a = span_base(s[0].slot[0]), *b = span_base(s[1].slot[1]);
    pid_t pid = fork();
    if (pid == 0) {
        int ok = pattern_ok(s[1].slot[1], SIZE, 1) && pattern_ok(s[0].slot[0], SIZE, 1);
        b[SIZE + 5] = 0x77; /* through the alias, seen through the other address */
        ok = ok && a[SIZE + 5] == 0x77 && mesh_heap_check() == 0;
        mesh_free(s[1].slot[1]);
        _exit(ok && mesh_heap_check() == 0 ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert(pattern_ok(s[1].slot[1], SIZE, 1)); /* the child's write stayed there */
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

/* ---- the program's own SIGSEGV handler ------------------------------------------------------ */

static sigjmp_buf guard_jump;
static volatile sig_atomic_t guard_hits;

static void program_handler(int sig, siginfo_t *info, void *uc)
{
    (void)sig, (void)info, (void)uc;
    guard_hits++;
    siglongjmp(guard_jump, 1);
}

START_TEST(program_segv_handler_still_works)
{
    setenv("MESH_BARRIER", "mprotect", 1); /* the mode that needs a SIGSEGV handler */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = program_handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    char *guard = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct span_objs s[2];
    fill_disjoint_pair(s);
    ck_assert_int_eq(mesh_one(s[0].id, s[1].id), -1); /* puts the shim's handler in front */
    if (sigsetjmp(guard_jump, 1) == 0)
        guard[10] = 1; /* a fault meshing did not cause: the program's handler gets it */
    ck_assert_int_eq(guard_hits, 1);
    check_contents(&s[0]);
    check_contents(&s[1]);
}
END_TEST

/* ---- a thread's objects meshed after it exited ---------------------------------------------- */

static struct span_objs exited[2];

static void *fill_and_exit(void *arg)
{
    (void)arg;
    fill_spans(exited, 2); /* this thread's spans: its exit returns them, detached */
    keep_slots(&exited[0], 2, 0);
    keep_slots(&exited[1], 2, 1);
    return NULL;
}

START_TEST(mesh_after_thread_exit)
{
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, fill_and_exit, NULL), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(mesh_one(exited[0].id, exited[1].id), -1);
    check_contents(&exited[0]);
    check_contents(&exited[1]);
    uint8_t *a = span_base(exited[0].slot[0]), *b = span_base(exited[1].slot[1]);
    for (unsigned j = 0; j < CAP; j++) /* the main thread frees everything, via both addresses */
        for (unsigned k = 0; k < 2; k++)
            if (exited[k].slot[j])
                mesh_free(exited[k].slot[j]);
    mesh_thread_flush();
    ck_assert_int_eq(mesh_heap_check(), 0);
    ck_assert_uint_eq(mesh_span_of(a), 0); /* both virtual spans are free again */
    ck_assert_uint_eq(mesh_span_of(b), 0);
}
END_TEST

/* ---- kernel writes ------------------------------------------------------------------------ */

struct mesh_job {
    uint32_t dst, src;
    int reason;
};

static void *mesh_in_thread(void *arg)
{
    struct mesh_job *job = arg;
    job->reason = mesh_one(job->dst, job->src);
    return NULL;
}

/* recv(2) from a socket into an object of a span while it is being meshed: with
 * userfaultfd the kernel's write waits for the barrier and lands; with mprotect it fails
 * with EFAULT (the documented gap), and either way no object is damaged.  (Not read(2):
 * a read into the heap holds its span off meshing, see kernel_hold.h.) */
START_TEST(kernel_write_into_a_span_being_meshed)
{
    setenv("MESH_BARRIER", barrier_modes[_i], 1);
    setenv("MESH_TEST_BARRIER_DELAY_US", "200000", 1);
    struct span_objs s[2];
    fill_disjoint_pair(s);
    int fds[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    ck_assert_int_eq(write(fds[1], "meshed!", 8), 8);
    char *buf = (char *)s[1].slot[5] + 16;
    struct mesh_job job = {s[0].id, s[1].id, 99};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, mesh_in_thread, &job), 0);
    usleep(50000); /* the barrier is up now, for 200 ms */
    ssize_t n = recv(fds[0], buf, 8, 0);
    int err = errno;
    pthread_join(t, NULL);
    ck_assert_int_eq(job.reason, -1);
    if (_i == 0 && geteuid() == 0) /* root may use userfaultfd: the mode must be taken */
        ck_assert_int_eq(mesh_mesh_barrier_kind(), 1);
    if (mesh_mesh_barrier_kind() == 1) {
        ck_assert_int_eq(n, 8);
        ck_assert_str_eq(buf, "meshed!");
        ck_assert_str_eq((char *)span_base(s[0].slot[0]) + 5 * SIZE + 16, "meshed!"); /* alias */
    } else {
        ck_assert_int_eq(mesh_mesh_barrier_kind(), 2);
        ck_assert(n == 8 || (n == -1 && err == EFAULT));
        if (n == -1)
            pattern_fill(s[1].slot[5], SIZE, 1); /* nothing was written: restore the check */
    }
    for (unsigned j = 0; j < CAP; j++)
        if (s[1].slot[j] && j != 5)
            ck_assert(pattern_ok(s[1].slot[j], SIZE, 1));
    check_contents(&s[0]);
}
END_TEST

/* A fault meshing did not cause still gets the default action once the shim's handler is
 * in front. */
START_TEST(default_action_for_other_faults)
{
    pid_t pid = fork();
    if (pid == 0) {
        setenv("MESH_BARRIER", "mprotect", 1);
        struct span_objs s[2];
        fill_spans(s, 2);
        keep_slots(&s[0], 2, 0);
        keep_slots(&s[1], 2, 1);
        mesh_thread_flush();
        if (mesh_one(s[0].id, s[1].id) != -1)
            _exit(3);
        char *guard = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        *(volatile char *)guard = 1; /* not the shim's fault */
        _exit(4);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* the sanitizer's own SIGSEGV handler is "the program's": it reports and exits */
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 3 && WEXITSTATUS(status) != 4,
                  "status %d", status);
#else
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %d", status);
#endif
}
END_TEST

struct blocked_read {
    int fd;
    char *buf;
    ssize_t got;
};

static void *read_blocked(void *arg)
{
    struct blocked_read *job = arg;
    job->got = read(job->fd, job->buf, 10);
    return NULL;
}

/* Spans the kernel holds are refused as source and as destination, whether the hold
 * outlives a call (KERNEL_HELD) or lasts for one (kernel_io), also when the mark landed on
 * a span already meshed into the destination (a tombstone, as a marker racing the mesh
 * leaves it).  Marks outside the arena are ignored. */
START_TEST(kernel_held_spans_are_never_meshed)
{
    struct span_objs s[4];
    fill_interleaved(s, 4);
    uint64_t refused0 = mesh_spans.header->counters.mesh_rejected[MESH_REJECT_KERNEL_HELD];
    int local = 0;
    mesh_kernel_hold((uintptr_t)&local, sizeof local);
    mesh_kernel_hold((uintptr_t)s[1].slot[1], SIZE);
    ck_assert_int_eq(mesh_one(s[0].id, s[1].id), MESH_REJECT_KERNEL_HELD);
    ck_assert_int_eq(mesh_one(s[1].id, s[0].id), MESH_REJECT_KERNEL_HELD);

    struct mesh_kernel_io io = {0};
    mesh_kernel_io_add(&io, (uintptr_t)s[2].slot[2], SIZE);
    ck_assert_uint_eq(io.n, 1);
    ck_assert_int_eq(mesh_one(s[0].id, s[2].id), MESH_REJECT_KERNEL_HELD);
    mesh_kernel_io_end(&io);
    ck_assert_int_eq(mesh_one(s[0].id, s[2].id), -1); /* meshed */

    /* s[2] is now a tombstone in s[0]: a count on it holds s[0]. */
    _Atomic uint32_t *tomb = (_Atomic uint32_t *)&mesh_record(s[2].id)->kernel_io;
    atomic_fetch_add(tomb, 1);
    ck_assert_int_eq(mesh_one(s[0].id, s[3].id), MESH_REJECT_KERNEL_HELD);
    atomic_fetch_sub(tomb, 1);
    ck_assert_int_eq(mesh_one(s[0].id, s[3].id), -1);
    ck_assert_uint_eq(mesh_spans.header->counters.mesh_rejected[MESH_REJECT_KERNEL_HELD] - refused0, 4);
    for (unsigned k = 0; k < 4; k++)
        check_contents(&s[k]);
    ck_assert_int_eq(mesh_heap_check(), 0);
    free_objects(s, 4);
}
END_TEST

/* A thread blocked in read(2) into a heap object (the interposed read counts it in the
 * span's kernel_io, as it would an O_DIRECT read that pins the page) keeps the span from
 * being meshed; once the read returns with its bytes, the pair meshes. */
START_TEST(read_in_flight_holds_its_span)
{
#ifdef MESH_NO_INTERPOSE
    return; /* sanitizer build: read is not interposed */
#endif
    struct span_objs s[2];
    fill_disjoint_pair(s);
    int fds[2];
    ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
    struct blocked_read job = {fds[0], (char *)s[1].slot[3] + 8, 0};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, read_blocked, &job), 0);
    _Atomic uint32_t *count = (_Atomic uint32_t *)&mesh_record(s[1].id)->kernel_io;
    while (atomic_load(count) == 0) /* the reader is inside read() */
        sched_yield();
    ck_assert_int_eq(mesh_one(s[0].id, s[1].id), MESH_REJECT_KERNEL_HELD);
    ck_assert_int_eq(mesh_one(s[1].id, s[0].id), MESH_REJECT_KERNEL_HELD);
    ck_assert_int_eq(write(fds[1], "in flight", 10), 10);
    pthread_join(t, NULL);
    ck_assert_int_eq(job.got, 10);
    ck_assert_uint_eq(atomic_load(count), 0);
    ck_assert_int_eq(mesh_one(s[0].id, s[1].id), -1);
    ck_assert_str_eq((char *)s[1].slot[3] + 8, "in flight");
    pattern_fill(s[1].slot[3], SIZE, 1);
    check_contents(&s[0]);
    check_contents(&s[1]);
    close(fds[0]);
    close(fds[1]);
    free_objects(s, 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("mesh");
    TCase *tc = tcase_create("mesh");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, two_spans_mesh_in_place);
    tcase_add_test(tc, three_spans_into_one);
    tcase_add_test(tc, invalid_pairs_are_refused);
    tcase_add_test(tc, mapping_budget_refuses_without_failing);
    tcase_add_test(tc, mapping_count_matches_the_kernel);
    tcase_add_test(tc, refused_restore_retires_the_alias);
    tcase_add_test(tc, kernel_held_spans_are_never_meshed);
    tcase_add_test(tc, read_in_flight_holds_its_span);
    /* both barrier kinds; TSan: see tests/tsan.supp */
    tcase_add_loop_test(tc, writer_on_the_barrier_loses_nothing, 0, 2);
    tcase_add_loop_test(tc, kernel_write_into_a_span_being_meshed, 0, 2);
    tcase_add_test(tc, default_action_for_other_faults);
    tcase_add_test(tc, fork_keeps_the_aliases);
    tcase_add_test(tc, hold_runs_as_fifo_where_allowed);
    tcase_add_test(tc, mesh_after_thread_exit);
    tcase_add_test(tc, program_segv_handler_still_works);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
