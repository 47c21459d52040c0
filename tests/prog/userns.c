/*
 * userns: calls that need the process single-threaded, made while the shim would have a
 * thread of its own running.  The kernel refuses (EINVAL) unshare(CLONE_NEWUSER) in a
 * process with more than one thread, and setns() into a mount namespace in one whose
 * threads share their filesystem context, as pthreads do; under glibc these programs
 * have one thread, and must get the same answer under the shim.
 *
 *   userns late    a heap, the shim's control thread running (MESH_TEST_CONTROL_DELAY_MS=0:
 *                  waits until the process has its second thread), then
 *                  unshare(CLONE_NEWUSER)
 *   userns setns   the same, then setns() into its own mount namespace (root only)
 *   userns forked  HEAP_MIB of checked data, fork(); the child at once
 *                  unshare(CLONE_NEWUSER) (a copy-on-write fork's child copies its heap
 *                  with a helper thread while it runs), then checks every byte;
 *                  under the shim it prints lazy=N (mesh_fork_lazy_count)
 *
 * Prints what happened; exit 0 if the call succeeded (and the data held), 1 if not, 2 for
 * a usage or set-up error.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEAP_MIB 96
#define BLOCK    (64u << 10)

/* Threads of this process, from /proc/self/task's link count (2 + threads). */
static long threads(void)
{
    struct stat st;
    return stat("/proc/self/task", &st) == 0 ? (long)st.st_nlink - 2 : -1;
}

/* Under the shim, waits (up to 10 s) for its control thread; 0 if it runs (or no shim). */
static int await_shim_thread(void)
{
    if (!dlsym(RTLD_DEFAULT, "mesh_stats_get"))
        return 0;
    for (int i = 0; i < 1000; i++) {
        free(malloc(64 << 10)); /* a slow path: the thread starts from one */
        if (threads() >= 2)
            return 0;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "userns: the shim's thread never started (threads %ld)\n", threads());
    return -1;
}

static int report(const char *what, int rc)
{
    if (rc == 0)
        printf("userns: %s succeeded\n", what);
    else
        printf("userns: %s failed: %s\n", what, strerror(errno));
    return rc == 0 ? 0 : 1;
}

static int forked(void)
{
    enum { N = (HEAP_MIB << 20) / BLOCK };
    static unsigned char *blocks[N];
    for (unsigned i = 0; i < N; i++) {
        if (!(blocks[i] = malloc(BLOCK)))
            return 2;
        memset(blocks[i], (int)(i * 7 + 1), BLOCK);
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        int rc = unshare(CLONE_NEWUSER);
        int err = errno;
        for (unsigned i = 0; i < N; i++)
            for (unsigned j = 0; j < BLOCK; j += 4096)
                if (blocks[i][j] != (unsigned char)(i * 7 + 1)) {
                    printf("userns: child: block %u byte %u changed\n", i, j);
                    _exit(1);
                }
        /* Under the shim: whether this child copied its heap lazily (with a helper). */
        uint64_t (*lazy_count)(void) = (uint64_t(*)(void))(uintptr_t)dlsym(RTLD_DEFAULT, "mesh_fork_lazy_count");
        if (lazy_count)
            printf("userns: lazy=%llu\n", (unsigned long long)lazy_count());
        errno = err;
        _exit(report("unshare(CLONE_NEWUSER) in a fork child", rc));
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return 2;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (strcmp(mode, "forked") == 0)
        return forked();
    if (strcmp(mode, "late") != 0 && strcmp(mode, "setns") != 0) {
        fprintf(stderr, "usage: userns late|setns|forked\n");
        return 2;
    }
    if (await_shim_thread() != 0)
        return 2;
    if (strcmp(mode, "late") == 0)
        return report("unshare(CLONE_NEWUSER) with the shim's thread running", unshare(CLONE_NEWUSER));
    int ns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (ns < 0)
        return 2;
    return report("setns(own mount namespace) with the shim's thread running", setns(ns, CLONE_NEWNS));
}
