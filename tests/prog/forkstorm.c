/*
 * forkstorm: several threads fork at once, over and over (issue 9 item 2).
 *
 *   forkstorm [forking_threads=3] [forks_each=150] [churn_threads=0] [meshd]
 *
 * Before the threads start, the main thread fills a heap with patterned objects; each
 * forking thread keeps objects of its own too.  Every child allocates, checks every
 * inherited object byte for byte and _exit()s 0 (1 if data differed, 2 if malloc
 * failed).  Churn threads malloc/free/check their own objects until the forks are done.
 * The parent reaps every child and requires a clean exit 0 from each, then requires that
 * the descriptors open at the end are the ones open at the start (no pipe leaked).  With
 * "meshd", sockets are left out of that comparison (the shim's control thread connects to
 * meshd while the forks run), and a userfaultfd always is: the shim's barrier has one, made
 * by the first copy-on-write fork (fork_cow.h) if not by meshing.
 * Prints "forkstorm: ok children=N" and exits 0, or says what went wrong and exits 1.
 * A deadlock shows as a hang: run it under timeout(1).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHARED_OBJECTS 4000
#define OWN_OBJECTS    200
#define MAX_THREADS    64

static uint8_t *shared_objs[SHARED_OBJECTS];
static atomic_int stop_churn;
static atomic_long children_ok, children_bad;
static int meshd_mode; /* the shim's connection may appear meanwhile */

static size_t size_of(size_t i) { return 8 + (i * 7919) % 700; }

static void fill(uint8_t **objs, size_t n, unsigned salt)
{
    for (size_t i = 0; i < n; i++) {
        objs[i] = malloc(size_of(i + salt));
        if (!objs[i]) {
            fprintf(stderr, "forkstorm: malloc failed\n");
            exit(1);
        }
        memset(objs[i], (int)(uint8_t)(i + salt), size_of(i + salt));
    }
}

static int intact(uint8_t *const *objs, size_t n, unsigned salt)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < size_of(i + salt); j++)
            if (objs[i][j] != (uint8_t)(i + salt))
                return 0;
    return 1;
}

/* The fork child: allocate, check what it inherited, leave without atexit handlers. */
static void child(uint8_t *const *own, unsigned salt)
{
    uint8_t *fresh[64];
    for (size_t i = 0; i < 64; i++) {
        fresh[i] = malloc(32 + i * 24);
        if (!fresh[i])
            _exit(2);
        memset(fresh[i], 0xa5, 32 + i * 24);
    }
    int ok = intact(shared_objs, SHARED_OBJECTS, 0) && intact(own, OWN_OBJECTS, salt);
    for (size_t i = 0; i < 64; i++) {
        for (size_t j = 0; j < 32 + i * 24; j++)
            ok &= fresh[i][j] == 0xa5;
        free(fresh[i]);
    }
    _exit(ok ? 0 : 1);
}

struct forker_arg {
    unsigned salt, forks;
};

static void *forker(void *p)
{
    const struct forker_arg *a = p;
    uint8_t *own[OWN_OBJECTS];
    fill(own, OWN_OBJECTS, a->salt);
    for (unsigned k = 0; k < a->forks; k++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "forkstorm: fork: %s\n", strerror(errno));
            atomic_fetch_add(&children_bad, 1);
            continue;
        }
        if (pid == 0)
            child(own, a->salt);
        int status;
        pid_t got;
        while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
            ;
        if (got == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            atomic_fetch_add(&children_ok, 1);
        } else {
            atomic_fetch_add(&children_bad, 1);
            if (got != pid)
                fprintf(stderr, "forkstorm: waitpid(%d): %s\n", (int)pid, strerror(errno));
            else if (WIFSIGNALED(status))
                fprintf(stderr, "forkstorm: child %d killed by signal %d\n", (int)pid, WTERMSIG(status));
            else
                fprintf(stderr, "forkstorm: child %d exited %d\n", (int)pid, WEXITSTATUS(status));
        }
        /* The parent's own data stays intact across forks as well. */
        if (!intact(own, OWN_OBJECTS, a->salt)) {
            fprintf(stderr, "forkstorm: parent data changed\n");
            atomic_fetch_add(&children_bad, 1);
        }
    }
    for (size_t i = 0; i < OWN_OBJECTS; i++)
        free(own[i]);
    return NULL;
}

/* Replaces its objects one by one with objects of other sizes (so spans fill, empty and
 * refill) and checks each before freeing it. */
static void *churn(void *p)
{
    unsigned salt = (unsigned)(uintptr_t)p;
    uint8_t *own[OWN_OBJECTS];
    unsigned tag[OWN_OBJECTS]; /* own[i] holds size_of(tag[i]) bytes of (uint8_t)tag[i] */
    fill(own, OWN_OBJECTS, salt);
    for (size_t i = 0; i < OWN_OBJECTS; i++)
        tag[i] = (unsigned)(i + salt);
    int bad = 0;
    for (unsigned round = 0; !atomic_load(&stop_churn); round++) {
        size_t i = (round * 37u) % OWN_OBJECTS;
        bad |= !intact(&own[i], 1, tag[i]);
        free(own[i]);
        tag[i] = salt + round;
        own[i] = malloc(size_of(tag[i]));
        if (!own[i])
            return (void *)1;
        memset(own[i], (int)(uint8_t)tag[i], size_of(tag[i]));
    }
    for (size_t i = 0; i < OWN_OBJECTS; i++) {
        bad |= !intact(&own[i], 1, tag[i]);
        free(own[i]);
    }
    return (void *)(uintptr_t)bad;
}

/* Writes the open descriptors as "fd target" lines into buf; returns how many. */
static int list_fds(char *buf, size_t cap)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0, self = dirfd(d);
    size_t used = 0;
    buf[0] = '\0';
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == self)
            continue;
        char path[300], target[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, target, sizeof target - 1);
        target[len > 0 ? len : 0] = '\0';
        if ((meshd_mode && strncmp(target, "socket:", 7) == 0) || strstr(target, "userfaultfd"))
            continue;
        used += (size_t)snprintf(buf + used, used < cap ? cap - used : 0, "  %s -> %s\n", e->d_name, target);
        n++;
    }
    closedir(d);
    return n;
}

/* The shim's last copy-on-write fork (shim/fork_cow.h) ends on its own thread once its
 * child is done, closing the pipe it held: wait for that (at most 60 s) before the
 * descriptors are compared.  Nothing to wait for without the shim. */
static void wait_for_cow_end(void)
{
    typedef void (*counts_fn)(uint64_t *, uint64_t *, int *);
    counts_fn counts = (counts_fn)dlsym(RTLD_DEFAULT, "mesh_fork_cow_counts");
    uint64_t forks, writes;
    int active = 1;
    for (int i = 0; counts && i < 6000 && active; i++) {
        counts(&forks, &writes, &active);
        if (active)
            usleep(10000);
    }
}

int main(int argc, char **argv)
{
    unsigned nforkers = argc > 1 ? (unsigned)atoi(argv[1]) : 3;
    unsigned forks = argc > 2 ? (unsigned)atoi(argv[2]) : 150;
    unsigned nchurn = argc > 3 ? (unsigned)atoi(argv[3]) : 0;
    meshd_mode = argc > 4 && strcmp(argv[4], "meshd") == 0;
    if (nforkers < 1 || nforkers > MAX_THREADS || nchurn > MAX_THREADS) {
        fprintf(stderr, "usage: forkstorm [forking_threads<=64] [forks_each] [churn_threads<=64]\n");
        return 2;
    }
    fill(shared_objs, SHARED_OBJECTS, 0);
    static char fds_before[16384], fds_after[16384];
    int before = list_fds(fds_before, sizeof fds_before);

    pthread_t forkers[MAX_THREADS], churners[MAX_THREADS];
    struct forker_arg args[MAX_THREADS];
    for (unsigned i = 0; i < nchurn; i++)
        if (pthread_create(&churners[i], NULL, churn, (void *)(uintptr_t)(1000 + i)) != 0)
            return fprintf(stderr, "forkstorm: pthread_create failed\n"), 1;
    for (unsigned i = 0; i < nforkers; i++) {
        args[i] = (struct forker_arg){.salt = 100 + i, .forks = forks};
        if (pthread_create(&forkers[i], NULL, forker, &args[i]) != 0)
            return fprintf(stderr, "forkstorm: pthread_create failed\n"), 1;
    }
    for (unsigned i = 0; i < nforkers; i++)
        pthread_join(forkers[i], NULL);
    atomic_store(&stop_churn, 1);
    int bad = 0;
    for (unsigned i = 0; i < nchurn; i++) {
        void *r;
        pthread_join(churners[i], &r);
        if (r) {
            fprintf(stderr, "forkstorm: a churn thread's data changed\n");
            bad = 1;
        }
    }
    if (!intact(shared_objs, SHARED_OBJECTS, 0)) {
        fprintf(stderr, "forkstorm: the parent's shared data changed\n");
        bad = 1;
    }
    wait_for_cow_end();
    int after = list_fds(fds_after, sizeof fds_after);
    if (before < 0 || after != before || strcmp(fds_before, fds_after) != 0) {
        fprintf(stderr, "forkstorm: descriptors changed: %d before, %d after\nbefore:\n%safter:\n%s",
                before, after, fds_before, fds_after);
        bad = 1;
    }
    long ok = atomic_load(&children_ok), failed = atomic_load(&children_bad);
    if (failed || ok != (long)nforkers * forks) {
        fprintf(stderr, "forkstorm: %ld of %u children failed\n", failed, nforkers * forks);
        bad = 1;
    }
    if (bad)
        return 1;
    printf("forkstorm: ok children=%ld\n", ok);
    return 0;
}
