/* fork_share: a probe for the shared fork child planned for issue 12 (docs/ALLOCATOR.md,
 * "The child breaks its own copy-on-write when asked").  Not part of make bench.
 *
 * A heap of MiB mebibytes, every word a pattern, in a memfd mapped MAP_SHARED (as the
 * shim's arena), write-protected with a userfaultfd before each fork.  The child maps the
 * same file MAP_PRIVATE over the heap (it shares every page until either side writes) and
 * starts a helper thread.  The parent writes WRITES random pages while the child runs;
 * before each first write its cow thread asks the helper to break the child's
 * copy-on-write of the 64 KiB around it (MADV_POPULATE_WRITE: no byte is stored, so no
 * child write can be lost), waits for the ack, and lifts the protection.  The child
 * checks every word against the pattern as it was at fork, then exits.
 *
 *   fork_share MiB FORKS WRITES MODE     (root, or vm.unprivileged_userfaultfd=1)
 *   MODE  share    as above
 *         nohelp   the same without the helper's populate: the child must then see the
 *                  parent's writes and fail (the check can fail)
 *         anon     private anonymous memory, the kernel's own fork copy-on-write: what
 *                  fork costs jemalloc, for comparison
 *   CHUNK_PAGES=N in the environment (a power of two, default 16): pages a request makes
 *   private.
 *   DETACH=1 in the environment: the child also times making its whole heap private
 *   (what a long-lived child pays once to stop sharing).
 *
 * Build: cc -O2 -std=c11 -D_GNU_SOURCE -pthread bench/probes/fork_share.c -o fork_share */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../bench.h"

#define PAGE 4096ul
static size_t chunk_bytes = 16 * PAGE; /* what one request makes private in the child */

enum mode { SHARE, NOHELP, ANON };

struct request {
    uint64_t off, len;
};

struct child_report {
    double ready_s, check_s, detach_s;
    long rss_kib, pss_kib;
    int ok;
};

static uint8_t *heap;
static size_t heap_bytes;
static enum mode mode;
static int uffd = -1, sock[2] = {-1, -1};
static _Atomic int cow_stop;
static int child_gone; /* the cow thread's: the helper stopped answering */
static uint64_t requests, request_ns;

static _Noreturn void die(const char *what) { bench_die("%s: %s", what, strerror(errno)); }

/* The last eighth of the heap is never written before fork: holes in the file, which the
 * child must read as zeros however the parent fills them afterwards. */
static size_t hole_start(void) { return heap_bytes / 8 * 7; }

static uint64_t pattern(size_t word)
{
    return word * 8 >= hole_start() ? 0 : 0x5EEDull ^ (word * PATTERN_STEP);
}

/* Child: breaks its copy-on-write of each requested range, then acks. */
static void *helper_main(void *arg)
{
    (void)arg;
    struct request r;
    while (read(sock[1], &r, sizeof r) == (ssize_t)sizeof r) {
        if (madvise(heap + r.off, r.len, MADV_POPULATE_WRITE) != 0)
            die("helper: MADV_POPULATE_WRITE");
        char ack = 1;
        if (write(sock[1], &ack, 1) != 1)
            break;
    }
    return NULL;
}

/* Parent: serves write-protect faults until told to stop. */
static void *cow_main(void *arg)
{
    (void)arg;
    struct pollfd p = {.fd = uffd, .events = POLLIN};
    while (!cow_stop) {
        struct uffd_msg m;
        if (poll(&p, 1, 20) <= 0 || read(uffd, &m, sizeof m) != (ssize_t)sizeof m ||
            m.event != UFFD_EVENT_PAGEFAULT)
            continue;
        double t0 = now_seconds();
        uint64_t off = (m.arg.pagefault.address - (uintptr_t)heap) & ~(chunk_bytes - 1);
        struct request r = {off, chunk_bytes};
        char ack;
        if (mode == SHARE && !child_gone &&
            (send(sock[0], &r, sizeof r, MSG_NOSIGNAL) != (ssize_t)sizeof r || read(sock[0], &ack, 1) != 1))
            child_gone = 1; /* nothing left to protect */
        struct uffdio_writeprotect wp = {.range = {(uintptr_t)heap + off, chunk_bytes}, .mode = 0};
        if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0)
            die("UFFDIO_WRITEPROTECT (lift)");
        requests++;
        request_ns += (uint64_t)((now_seconds() - t0) * 1e9);
    }
    return NULL;
}

static long proc_kib(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    char line[256];
    long v = -1;
    size_t k = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':')
            v = atol(line + k + 1);
    if (f)
        fclose(f);
    return v;
}

static _Noreturn void child(int memfd, int report_fd, double t0)
{
    if (mode != ANON) {
        if (mmap(heap, heap_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, memfd, 0) != heap)
            die("child: mmap MAP_PRIVATE");
        pthread_t h;
        if (mode == SHARE && pthread_create(&h, NULL, helper_main, NULL) != 0)
            die("child: helper");
    }
    struct child_report rep = {.ready_s = now_seconds() - t0};
    usleep(20000); /* the parent writes meanwhile */
    double c0 = now_seconds();
    uint64_t bad = 0;
    for (size_t i = 0; i < heap_bytes / 8; i++)
        bad |= ((uint64_t *)heap)[i] ^ pattern(i);
    rep.check_s = now_seconds() - c0;
    rep.ok = bad == 0;
    rep.rss_kib = proc_kib("/proc/self/status", "VmRSS");
    rep.pss_kib = proc_kib("/proc/self/smaps_rollup", "Pss");
    if (mode == SHARE && getenv("DETACH")) {
        double d0 = now_seconds();
        if (madvise(heap, heap_bytes, MADV_POPULATE_WRITE) != 0)
            die("child: detach");
        rep.detach_s = now_seconds() - d0;
    }
    _exit(write(report_fd, &rep, sizeof rep) == (ssize_t)sizeof rep && rep.ok ? 0 : 3);
}

int main(int argc, char **argv)
{
    if (argc != 5)
        return fprintf(stderr, "usage: fork_share MiB FORKS WRITES share|nohelp|anon\n"), 2;
    heap_bytes = strtoul(argv[1], NULL, 10) << 20;
    const char *chunk_pages = getenv("CHUNK_PAGES");
    if (chunk_pages)
        chunk_bytes = strtoul(chunk_pages, NULL, 10) * PAGE;
    if (chunk_bytes < PAGE || (chunk_bytes & (chunk_bytes - 1)) || heap_bytes % chunk_bytes)
        return fprintf(stderr, "fork_share: CHUNK_PAGES must be a power of two dividing the heap\n"), 2;
    int forks = atoi(argv[2]), writes = atoi(argv[3]);
    mode = !strcmp(argv[4], "share") ? SHARE : !strcmp(argv[4], "nohelp") ? NOHELP : ANON;
    int memfd = -1;
    if (mode == ANON) {
        heap = mmap(NULL, heap_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    } else {
        if ((memfd = memfd_create("fork_share", MFD_CLOEXEC)) < 0 || ftruncate(memfd, (off_t)heap_bytes) != 0)
            die("memfd");
        heap = mmap(NULL, heap_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    }
    if (heap == MAP_FAILED)
        die("mmap");
    for (size_t i = 0; i < hole_start() / 8; i++)
        ((uint64_t *)heap)[i] = pattern(i);
    if (mode != ANON) {
        struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM};
        struct uffdio_register reg = {.range = {(uintptr_t)heap, heap_bytes}, .mode = UFFDIO_REGISTER_MODE_WP};
        if ((uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)) < 0 ||
            ioctl(uffd, UFFDIO_API, &api) != 0 || ioctl(uffd, UFFDIO_REGISTER, &reg) != 0)
            die("userfaultfd");
    }
    uint64_t **changed = calloc((size_t)writes + 1, sizeof *changed);
    double started = now_seconds(), fork_s = 0, ready_s = 0, check_s = 0, detach_s = 0, write_max_s = 0;
    long rss = 0, pss = 0;
    for (int f = 0; f < forks; f++) {
        int report[2];
        pthread_t cow;
        if (pipe(report) != 0)
            die("pipe");
        if (mode != ANON) {
            struct uffdio_writeprotect wp = {.range = {(uintptr_t)heap, heap_bytes},
                                             .mode = UFFDIO_WRITEPROTECT_MODE_WP};
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock) != 0 ||
                ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0)
                die("protect");
            cow_stop = 0;
            child_gone = 0;
            pthread_create(&cow, NULL, cow_main, NULL);
        }
        double t0 = now_seconds();
        pid_t pid = fork();
        if (pid == 0)
            child(memfd, report[1], t0);
        fork_s += now_seconds() - t0;
        close(report[1]);
        if (mode != ANON)
            close(sock[1]);
        struct rng rng = rng_seeded((uint64_t)f + 1);
        for (int w = 0; w < writes; w++) { /* each changes a word the child must not see */
            uint64_t *word = (uint64_t *)(heap + rng_next(&rng) % (heap_bytes / PAGE) * PAGE);
            double w0 = now_seconds();
            *word = ~*word;
            if (now_seconds() - w0 > write_max_s)
                write_max_s = now_seconds() - w0;
            changed[w] = word;
        }
        struct child_report rep;
        int status;
        if (read(report[0], &rep, sizeof rep) != (ssize_t)sizeof rep || waitpid(pid, &status, 0) != pid ||
            !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fork %d: the child saw the parent's writes or failed\n", f);
            return 1;
        }
        for (int w = writes - 1; w >= 0; w--)
            *changed[w] = ~*changed[w]; /* back to the pattern for the next child */
        if (mode != ANON) {
            cow_stop = 1;
            pthread_join(cow, NULL);
            close(sock[0]);
        }
        close(report[0]);
        ready_s += rep.ready_s, check_s += rep.check_s, detach_s += rep.detach_s;
        rss = rep.rss_kib, pss = rep.pss_kib;
    }
    printf("%s %zu MiB: %.2f s for %d forks; per fork: fork() %.2f ms, child ready %.2f ms, "
           "child check %.0f ms, detach %.0f ms; child RSS %ld MiB, Pss %ld MiB; "
           "parent: slowest first write %.0f us, %llu requests of %.1f us\n",
           argv[4], heap_bytes >> 20, now_seconds() - started, forks, fork_s / forks * 1e3, ready_s / forks * 1e3,
           check_s / forks * 1e3, detach_s / forks * 1e3, rss >> 10, pss >> 10, write_max_s * 1e6,
           (unsigned long long)requests, requests ? (double)request_ns / 1e3 / (double)requests : 0.0);
    return 0;
}
