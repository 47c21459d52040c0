/*
 * forkcow: the parent of a fork rewrites its whole heap at once while the child checks it
 * (copy-on-write forks: shim/fork_cow.h).
 *
 *   forkcow [MiB=96] [rounds=3] [rewrite|kill|closefrom|orphan|twice|nested|late|dropcaps]
 *
 * Builds MiB mebibytes of objects (16 B to 64 KiB, one in 512 of 1 MiB), each filled with
 * one byte made of its index and the round.  Each round forks, and at once the parent's
 * main thread and a second thread rewrite every object with the next round's byte: most
 * with memset, one in four through read(2) from a pipe (the kernel writes into the heap),
 * and one in eight freed and allocated again first (pages freed since the fork are reused
 * while the child may still need their old bytes; the 1 MiB ones with a malloc_trim(0)
 * in between, which must not return pages the child still needs to the system).  The child checks every object byte for
 * byte against the round it was forked in and _exit()s 0, or 1 on the first difference.
 * "kill": the parent kills each child right after fork instead.  "closefrom": right after
 * each fork the parent closes every descriptor but 0-2 and its own pipe, as a daemon's
 * clean-up does (the shim's included: its copy-on-write must not end before the child's
 * copy, nor lose a write).  "orphan": the parent _exit()s right after its first fork, as a
 * daemon's does, printing "forkcow: orphan parent cow=C"; the child, whose copy goes on
 * without the parent, checks its heap and prints "forkcow: orphan child ok" (or what
 * differs).  "twice": the parent forks a second child right after the first (an eager
 * fork: one copy-on-write at a time), which checks its heap too.  "nested": each child
 * forks a grandchild at once, which checks the heap before the child does (a child that
 * shares its parent's pages, fork_share.h, makes them its own first).  "late": each child
 * checks only once the parent has rewritten everything (every page the parent wrote was
 * the child's to keep first).  "dropcaps" (root only): each child drops root to nobody as
 * setpriv does (PR_SET_KEEPCAPS, setresuid, capset, setresgid, setgroups) before it
 * checks.  Every child also checks that no copy-on-write stays active in itself (a child
 * copying its heap lazily is, until its copy ends: it waits up to 60 s for that), and,
 * with FORKCOW_EXPECT_LAZY=1 (0), that it copied its heap lazily (did not) as
 * mesh_fork_lazy_count says.
 * Otherwise the parent
 * reaps the child and waits (up to 60 s, else it fails) until the copy-on-write has ended,
 * as it must once its child is done or dead (a fork while one is active copies eagerly),
 * then checks its own objects against the new round.
 * Each round also callocs a block of UNTOUCHED_BYTES before the fork and writes nothing
 * into it (fresh pages: holes in the arena's file); right after the fork the parent fills
 * it, half with memset and half through read(2), and the child must read zeros there,
 * as from any calloc'ed block it never wrote.  And each round mallocs, fills, frees and
 * malloc_trim()s a block before the fork, mallocs and fills it again right after, while
 * the child callocs a block of that size, which must read zeros (its pages may be the
 * ones the parent is filling).
 * FORKCOW_HOLD=1: after building the heap, frees three in four of its small objects (spans
 * left sparse: something to mesh), prints "ready" and waits for SIGUSR1, so that a test
 * can have meshd mesh it before and while it forks.
 * Prints "forkcow: ok rounds=N cow=C served=S shared=H" (C and S: mesh_fork_cow_counts, H:
 * mesh_fork_shared_count, -1 without the shim) and exits 0, or says what went wrong and exits 1.  A hang is a failure: run it
 * under timeout(1).
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct object {
    uint8_t *p;
    size_t size;
};

static struct object *objs; /* mmap'ed, not in the heap: the child checks the heap only */
static size_t nobjs;
static unsigned round_now;
static pthread_barrier_t start_line, finish_line;
static int kernel_pipe[2];
typedef void (*counts_fn)(uint64_t *forks, uint64_t *writes, int *active); /* the shim's, or NULL */
typedef uint64_t (*shared_fn)(void);                                        /* likewise */
#define CHILD_ACTIVE_MAX_MS 60000 /* for a child's lazy copy to end */
static struct stat stdin_at_start; /* st_ino 0: stdin was not open */

#define UNTOUCHED_BYTES (4u << 20)
#define UNTOUCHED_FILL 0xA5
static uint8_t *untouched; /* this round's calloc'ed block, written by the parent after fork */
/* Freed and trimmed before each fork (pages returned: they read zero), allocated again and
 * filled by the parent after it; the child's calloc of the same size (likely the same
 * pages) must read zeros all the same. */
#define REUSED_BYTES (4u << 20)
static uint8_t *reused;

static int all_bytes(const uint8_t *p, size_t n, uint8_t byte)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != byte)
            return 0;
    return 1;
}

static uint8_t byte_of(size_t i, unsigned round) { return (uint8_t)(i * 131 + round * 7 + 1); }

static size_t size_of(size_t i)
{
    if (i % 512 == 511)
        return 1u << 20;
    return 16 + (i * 2654435761u) % ((i % 8 == 0) ? 65536 : 1024);
}

/* The kernel writes obj through read(2): pipe capacity (64 KiB) at a time. */
static int kernel_fill(uint8_t *p, size_t size, uint8_t byte)
{
    static __thread uint8_t chunk[16384];
    memset(chunk, byte, sizeof chunk);
    for (size_t off = 0; off < size;) {
        size_t n = size - off < sizeof chunk ? size - off : sizeof chunk;
        if (write(kernel_pipe[1], chunk, n) != (ssize_t)n || read(kernel_pipe[0], p + off, n) != (ssize_t)n)
            return -1;
        off += n;
    }
    return 0;
}

static pthread_mutex_t pipe_lock = PTHREAD_MUTEX_INITIALIZER;

/* Rewrites objects [lo, hi) with round r's bytes. */
static int rewrite(size_t lo, size_t hi, unsigned r)
{
    for (size_t i = lo; i < hi; i++) {
        if (!objs[i].size)
            continue;
        if (i % 512 == 511) { /* a 1 MiB one: its pages would be returned to the system */
            free(objs[i].p);
            malloc_trim(0);
            objs[i].p = malloc(objs[i].size);
            if (!objs[i].p)
                return -1;
        } else if (i % 8 == 3) {
            free(objs[i].p);
            objs[i].p = malloc(objs[i].size);
            if (!objs[i].p)
                return -1;
        }
        if (i % 4 == 1) {
            pthread_mutex_lock(&pipe_lock);
            int rc = kernel_fill(objs[i].p, objs[i].size, byte_of(i, r));
            pthread_mutex_unlock(&pipe_lock);
            if (rc)
                return -1;
        } else {
            memset(objs[i].p, byte_of(i, r), objs[i].size);
        }
    }
    return 0;
}

static size_t first_bad(unsigned r)
{
    for (size_t i = 0; i < nobjs; i++)
        if (!all_bytes(objs[i].p, objs[i].size, byte_of(i, r)))
            return i;
    return SIZE_MAX;
}

static void *second_writer(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_barrier_wait(&start_line);
        if (round_now == UINT32_MAX)
            return NULL;
        if (rewrite(nobjs / 2, nobjs, round_now + 1) != 0) {
            fprintf(stderr, "forkcow: second writer failed\n");
            exit(1);
        }
        pthread_barrier_wait(&finish_line);
    }
}

/* A fork child of round r: checks its heap (and that it has no copy-on-write of its own
 * going on, which would stop its purges and meshing for good) and _exit()s. */
static _Noreturn void child_check(unsigned r, int orphan, counts_fn counts)
{
    void *extra = malloc(4096);
    size_t bad = first_bad(r);
    free(extra);
    if (!all_bytes(untouched, UNTOUCHED_BYTES, 0)) {
        fprintf(stderr, "forkcow: child of round %u: its untouched calloc'ed block is not zero\n", r);
        _exit(1);
    }
    uint8_t *fresh = calloc(1, REUSED_BYTES);
    if (!fresh || !all_bytes(fresh, REUSED_BYTES, 0)) {
        fprintf(stderr, "forkcow: child of round %u: a block calloc'ed after fork is not zero\n", r);
        _exit(1);
    }
    free(fresh);
    uint64_t c, w;
    int active = 0;
    /* A child copying its heap lazily (shim/fork_lazy.h) is active until its copy ends,
     * which must come (all its pages are in now); one left active would stop its purges
     * and meshing for good. */
    for (int waited_ms = 0; counts && waited_ms <= CHILD_ACTIVE_MAX_MS; waited_ms += 10) {
        counts(&c, &w, &active);
        if (!active)
            break;
        usleep(10000);
    }
    /* Whatever the child's heap copy did, the program's descriptors are as they were. */
    struct stat in_now;
    if (stdin_at_start.st_ino &&
        (fstat(STDIN_FILENO, &in_now) != 0 || in_now.st_dev != stdin_at_start.st_dev ||
         in_now.st_ino != stdin_at_start.st_ino)) {
        fprintf(stderr, "forkcow: child of round %u: its stdin is closed or another file\n", r);
        _exit(1);
    }
    shared_fn lazy = (shared_fn)dlsym(RTLD_DEFAULT, "mesh_fork_lazy_count");
    const char *want_lazy = getenv("FORKCOW_EXPECT_LAZY");
    if (want_lazy && *want_lazy && (!lazy || (lazy() != 0) != (*want_lazy == '1'))) {
        fprintf(stderr, "forkcow: child of round %u: its heap was%s copied lazily\n", r,
                *want_lazy == '1' ? " not" : "");
        _exit(1);
    }
    if (orphan) {
        if (bad == SIZE_MAX)
            printf("forkcow: orphan child ok\n");
        else
            printf("forkcow: orphan child: object %zu differs\n", bad);
        fflush(stdout);
        _exit(bad != SIZE_MAX);
    }
    if (bad != SIZE_MAX) {
        fprintf(stderr, "forkcow: child of round %u: object %zu (%zu bytes) differs\n", r, bad, objs[bad].size);
        _exit(1);
    }
    if (active) {
        fprintf(stderr, "forkcow: child of round %u: a copy-on-write is active in the child\n", r);
        _exit(1);
    }
    _exit(0);
}

/* "dropcaps": the child drops root as setpriv does before it checks (a child sharing its
 * parent's pages stops sharing first: its helper thread, without PR_SET_KEEPCAPS, would
 * fail glibc's setresgid broadcast and abort the child). */
static void drop_root_keepcaps(void)
{
    struct __user_cap_header_struct head = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct caps[2];
    if (prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) != 0 || setresuid(65534, 65534, 65534) != 0 ||
        syscall(SYS_capget, &head, caps) != 0)
        perror("forkcow: child: keepcaps/setresuid/capget"), _exit(1);
    for (int i = 0; i < 2; i++)
        caps[i].effective = caps[i].permitted;
    if (syscall(SYS_capset, &head, caps) != 0 || setresgid(65534, 65534, 65534) != 0 || setgroups(0, NULL) != 0)
        perror("forkcow: child: capset/setresgid/setgroups"), _exit(1);
    memset(caps, 0, sizeof caps);
    if (syscall(SYS_capset, &head, caps) != 0)
        perror("forkcow: child: capset"), _exit(1);
}
static int dropcaps_mode;

/* "late": the parent writes a byte here once it has rewritten everything. */
static int late_pipe[2] = {-1, -1};

static void child_main(unsigned r, int orphan, int nested, counts_fn counts)
{
    if (dropcaps_mode)
        drop_root_keepcaps();
    if (late_pipe[0] >= 0) {
        char byte;
        close(late_pipe[1]);
        if (read(late_pipe[0], &byte, 1) != 1)
            fprintf(stderr, "forkcow: child of round %u: the parent never finished\n", r), _exit(1);
    }
    if (nested) { /* a grandchild first, while the parent rewrites: it checks the heap too */
        int status;
        pid_t g = fork();
        if (g < 0)
            perror("forkcow: child: fork"), _exit(1);
        if (g == 0)
            child_check(r, 0, counts);
        if (waitpid(g, &status, 0) != g || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "forkcow: grandchild of round %u: status %#x\n", r, status);
            _exit(1);
        }
    }
    child_check(r, orphan, counts);
}

/* closes every descriptor from 3 up but kernel_pipe's (close_range(2), as closefrom(3)
 * would, leaving the two this program needs). */
static void close_all_but_pipe(void)
{
    int lo = kernel_pipe[0] < kernel_pipe[1] ? kernel_pipe[0] : kernel_pipe[1];
    int hi = kernel_pipe[0] ^ kernel_pipe[1] ^ lo;
    if (lo > 3)
        syscall(SYS_close_range, 3u, (unsigned)lo - 1, 0u);
    if (hi > lo + 1)
        syscall(SYS_close_range, (unsigned)lo + 1, (unsigned)hi - 1, 0u);
    syscall(SYS_close_range, (unsigned)hi + 1, ~0u, 0u);
}

int main(int argc, char **argv)
{
    if (fstat(STDIN_FILENO, &stdin_at_start) != 0)
        stdin_at_start.st_ino = 0;
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 96;
    unsigned rounds = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 3;
    int kill_mode = argc > 3 && strcmp(argv[3], "kill") == 0;
    int closefrom_mode = argc > 3 && strcmp(argv[3], "closefrom") == 0;
    int orphan_mode = argc > 3 && strcmp(argv[3], "orphan") == 0;
    int twice_mode = argc > 3 && strcmp(argv[3], "twice") == 0;
    int nested_mode = argc > 3 && strcmp(argv[3], "nested") == 0;
    int late_mode = argc > 3 && strcmp(argv[3], "late") == 0;
    dropcaps_mode = argc > 3 && strcmp(argv[3], "dropcaps") == 0;
    size_t cap = mib * 4096 + 1024;
    objs = calloc(cap, sizeof *objs);
    if (!objs || pipe(kernel_pipe) != 0)
        return perror("forkcow"), 1;
    for (size_t total = 0; total < (mib << 20) && nobjs < cap; nobjs++) {
        objs[nobjs].size = size_of(nobjs);
        objs[nobjs].p = malloc(objs[nobjs].size);
        if (!objs[nobjs].p)
            return fprintf(stderr, "forkcow: malloc failed\n"), 1;
        memset(objs[nobjs].p, byte_of(nobjs, 0), objs[nobjs].size);
        total += objs[nobjs].size;
    }
    const char *hold = getenv("FORKCOW_HOLD");
    if (hold && strcmp(hold, "1") == 0) {
        sigset_t usr1;
        int sig;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        sigprocmask(SIG_BLOCK, &usr1, NULL);
        for (size_t i = 0; i < nobjs; i++)
            if (objs[i].size <= 1040 && i % 4 != 0) {
                free(objs[i].p);
                objs[i].p = NULL;
                objs[i].size = 0;
            }
        printf("ready\n");
        fflush(stdout);
        /* The allocator's slow paths start the shim's control thread; a heap this size
         * starts it on the next one. */
        free(malloc(1u << 20));
        sigwait(&usr1, &sig);
    }
    pthread_t writer;
    pthread_barrier_init(&start_line, NULL, 2);
    pthread_barrier_init(&finish_line, NULL, 2);
    if (pthread_create(&writer, NULL, second_writer, NULL) != 0)
        return fprintf(stderr, "forkcow: pthread_create failed\n"), 1;
    int failed = 0;
    counts_fn counts = (counts_fn)dlsym(RTLD_DEFAULT, "mesh_fork_cow_counts");
    shared_fn shared = (shared_fn)dlsym(RTLD_DEFAULT, "mesh_fork_shared_count");
    for (unsigned r = 0; r < rounds && !failed; r++) {
        round_now = r;
        /* pin, allocated after it, keeps the freed block's pages below the heap's top (a
         * free range there would be given back whole, not kept as a range). */
        void *pin = NULL;
        if (!(untouched = calloc(1, UNTOUCHED_BYTES)) || !(reused = malloc(REUSED_BYTES)) ||
            !(pin = malloc(REUSED_BYTES)))
            return fprintf(stderr, "forkcow: calloc failed\n"), 1;
        memset(reused, 1, REUSED_BYTES);
        free(reused);
        malloc_trim(0);
        if (late_mode && pipe(late_pipe) != 0)
            return perror("forkcow: pipe"), 1;
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            return perror("forkcow: fork"), 1;
        if (pid == 0)
            child_main(r, orphan_mode, nested_mode, counts);
        pid_t pid2 = 0; /* "twice": a second child, forked while the first one's copy runs */
        if (twice_mode && (pid2 = fork()) < 0)
            return perror("forkcow: fork"), 1;
        if (twice_mode && pid2 == 0)
            child_main(r, 0, 0, counts);
        if (orphan_mode) {
            uint64_t c = 0, w;
            int active;
            if (counts)
                counts(&c, &w, &active);
            printf("forkcow: orphan parent cow=%llu shared=%lld\n", (unsigned long long)c,
                   shared ? (long long)shared() : -1);
            fflush(stdout);
            _exit(0);
        }
        if (kill_mode)
            kill(pid, SIGKILL);
        if (closefrom_mode)
            close_all_but_pipe();
        pthread_barrier_wait(&start_line);
        if (!(reused = malloc(REUSED_BYTES)))
            return fprintf(stderr, "forkcow: malloc failed\n"), 1;
        memset(reused, UNTOUCHED_FILL, REUSED_BYTES);
        memset(untouched, UNTOUCHED_FILL, UNTOUCHED_BYTES / 2);
        pthread_mutex_lock(&pipe_lock);
        int filled = kernel_fill(untouched + UNTOUCHED_BYTES / 2, UNTOUCHED_BYTES / 2, UNTOUCHED_FILL);
        pthread_mutex_unlock(&pipe_lock);
        if (filled != 0 || rewrite(0, nobjs / 2, r + 1) != 0)
            return fprintf(stderr, "forkcow: rewrite failed\n"), 1;
        pthread_barrier_wait(&finish_line);
        if (late_mode) {
            if (write(late_pipe[1], "", 1) != 1)
                return perror("forkcow: write"), 1;
            close(late_pipe[0]);
            close(late_pipe[1]);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid)
            return perror("forkcow: waitpid"), 1;
        int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!(clean || (kill_mode && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))) {
            fprintf(stderr, "forkcow: child of round %u: status %#x\n", r, status);
            failed = 1;
        }
        if (pid2 > 0 && (waitpid(pid2, &status, 0) != pid2 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
            fprintf(stderr, "forkcow: second child of round %u: status %#x\n", r, status);
            failed = 1;
        }
        if (counts) { /* the copy-on-write ends with its child: else the next fork is eager */
            uint64_t c, w;
            int active = 1;
            for (int i = 0; i < 6000 && active; i++) {
                counts(&c, &w, &active);
                if (active)
                    usleep(10000);
            }
            if (active) {
                fprintf(stderr, "forkcow: round %u: the copy-on-write outlived its child by 60 s\n", r);
                failed = 1;
            }
        }
        size_t bad = first_bad(r + 1);
        if (bad != SIZE_MAX) {
            fprintf(stderr, "forkcow: parent after round %u: object %zu differs\n", r, bad);
            failed = 1;
        }
        if (!all_bytes(untouched, UNTOUCHED_BYTES, UNTOUCHED_FILL)) {
            fprintf(stderr, "forkcow: parent after round %u: its filled block differs\n", r);
            failed = 1;
        }
        free(untouched);
        free(reused);
        free(pin);
    }
    round_now = UINT32_MAX;
    pthread_barrier_wait(&start_line);
    pthread_join(writer, NULL);
    if (failed)
        return 1;
    long long cow = -1, served = -1;
    if (counts) {
        uint64_t c, s;
        int active;
        counts(&c, &s, &active);
        cow = (long long)c;
        served = (long long)s;
    }
    printf("forkcow: ok rounds=%u objects=%zu cow=%lld served=%lld shared=%lld\n", rounds, nobjs, cow,
           served, shared ? (long long)shared() : -1);
    return 0;
}
