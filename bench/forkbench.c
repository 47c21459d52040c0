/* forkbench: fork() of a process with a large live heap (a Redis BGSAVE, a forking worker).
 *
 * Builds a live heap of MiB mebibytes of mixed sizes (mostly 16 B to 2 KiB, one in 64 a
 * 16 to 128 KiB object, one in 4096 a 1 MiB one), every object carrying its fill pattern,
 * with holes (a fifth of what was allocated is freed again).  Then forks FORKS times, one
 * child at a time.  Each child checks its inherited heap (every object byte for byte),
 * frees and allocates a little, reports through a pipe, and exits; the parent waits for it
 * and checks its own heap at the end.  Printed, as medians over the forks:
 *   fork_ms:        time for fork() to return in the parent
 *   child_ready_ms: time from the fork() call until it returned in the child
 *   child_rss_mib:  the child's VmRSS once it has read every object
 *   child_pss_mib:  the child's proportional share (Pss) of what it maps then: pages it
 *                   shares copy-on-write with the parent count half
 * and a checksum of the heap (the same under every allocator).
 *
 * usage: forkbench [MiB [forks]]  (defaults 1024 5) */
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

struct object {
    void *p;
    uint32_t size;
    uint64_t tag;
};

struct child_report {
    double ready_s;
    uint64_t rss_kib, pss_kib;
    int ok;
};

static uint32_t object_size(struct rng *r)
{
    uint64_t x = rng_next(r);
    if ((x & 4095) == 0)
        return 1u << 20;
    if ((x & 63) == 0)
        return rng_between(r, 16u << 10, 128u << 10);
    unsigned bucket = (unsigned)((x >> 8) % 8); /* 16 B .. 2 KiB, power-of-two buckets */
    uint32_t base = 16u << bucket;
    return base + (uint32_t)((x >> 32) % base);
}

/* The value of "KEY:  N kB" in a /proc/self file, or 0.  Read with read(2) into a stack
 * buffer: the child checks its heap, it does not add to it. */
static uint64_t proc_kib(const char *path, const char *key)
{
    char buf[8192];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    size_t klen = strlen(key);
    for (char *line = buf; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
        if (strncmp(line, key, klen) == 0 && line[klen] == ':')
            return strtoull(line + klen + 1, NULL, 10);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* In the child: check every object, report, exit.  No stdio. */
static _Noreturn void child(int fd, double t0, const struct object *objs, size_t n)
{
    struct child_report rep = {.ready_s = now_seconds() - t0, .ok = 1};
    for (size_t i = 0; i < n; i++)
        if (!pattern_ok(objs[i].p, objs[i].size, objs[i].tag))
            rep.ok = 0;
    /* After reading every object: an allocator whose child maps its copy lazily shows
     * it only once touched, as glibc's child shows the pages it shares. */
    rep.rss_kib = proc_kib("/proc/self/status", "VmRSS");
    rep.pss_kib = proc_kib("/proc/self/smaps_rollup", "Pss");
    /* A forking worker goes on allocating and freeing in what it inherited. */
    for (size_t i = 0; i < n && i < 1000; i++)
        free(objs[i].p);
    for (size_t i = 0; i < 1000; i++)
        free(bench_malloc_filled(64 + i, i));
    ssize_t w = write(fd, &rep, sizeof rep);
    _exit(w == (ssize_t)sizeof rep ? 0 : 1);
}

int main(int argc, char **argv)
{
    uint64_t mib = arg_count(argc, argv, 1, 1024);
    uint64_t forks = arg_count(argc, argv, 2, 5);
    if (forks > 100)
        bench_die("at most 100 forks");
    struct rng r = rng_seeded(12);
    /* Allocate 5/4 of the target, then free every fifth object: holes everywhere. */
    uint64_t want = mib << 20, allocated = 0;
    size_t cap = 1 << 20, n = 0;
    struct object *objs = bench_malloc(cap * sizeof *objs);
    while (allocated < want / 4 * 5) {
        if (n == cap) {
            cap *= 2;
            if (!(objs = realloc(objs, cap * sizeof *objs)))
                bench_die("cannot grow the object table");
        }
        objs[n].size = object_size(&r);
        objs[n].tag = rng_next(&r);
        objs[n].p = bench_malloc_filled(objs[n].size, objs[n].tag);
        allocated += objs[n].size;
        n++;
    }
    size_t kept = 0;
    uint64_t live = 0, checksum = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 5 == 4) {
            free(objs[i].p);
            continue;
        }
        objs[kept++] = objs[i];
        live += objs[i].size;
        checksum += objs[i].tag ^ objs[i].size;
    }
    n = kept;

    double fork_s[100], ready_s[100], rss[100], pss[100];
    for (uint64_t f = 0; f < forks; f++) {
        int pipefd[2];
        if (pipe(pipefd) != 0)
            bench_die("pipe failed");
        double t0 = now_seconds();
        pid_t pid = fork();
        if (pid == 0) {
            close(pipefd[0]);
            child(pipefd[1], t0, objs, n);
        }
        fork_s[f] = now_seconds() - t0;
        if (pid < 0)
            bench_die("fork failed");
        close(pipefd[1]);
        struct child_report rep;
        ssize_t got = read(pipefd[0], &rep, sizeof rep);
        close(pipefd[0]);
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
            got != (ssize_t)sizeof rep)
            bench_die("child %llu failed", (unsigned long long)f);
        if (!rep.ok)
            bench_die("child %llu found its inherited heap corrupted", (unsigned long long)f);
        ready_s[f] = rep.ready_s;
        rss[f] = (double)rep.rss_kib / 1024;
        pss[f] = (double)rep.pss_kib / 1024;
    }
    for (size_t i = 0; i < n; i++)
        bench_free_checked(objs[i].p, objs[i].size, objs[i].tag);
    free(objs);
    printf("live_mib: %.0f\n", (double)live / (1 << 20));
    printf("fork_ms: %.2f\n", median(fork_s, forks) * 1e3);
    printf("child_ready_ms: %.2f\n", median(ready_s, forks) * 1e3);
    printf("child_rss_mib: %.0f\n", median(rss, forks));
    printf("child_pss_mib: %.0f\n", median(pss, forks));
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    return 0;
}
