/*
 * selfsandbox: a forked child that sandboxes itself, as sshd's preauth child does: a
 * seccomp filter that kills the process on clone and clone3 (no new process, no new
 * thread), then allocates and frees for WORK_MS.  Under glibc that child exits 0; the
 * shim must neither start its control thread (a clone) nor make any call of its own from
 * then on (sandbox.h).  It did: the child was killed by SIGSYS when the thread started.
 *
 *   selfsandbox prctl|syscall|tsync [WORK_MS=2500]
 *     prctl    installs the filter with prctl(PR_SET_SECCOMP)
 *     syscall  with syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER), as libseccomp does
 *     tsync    no fork: the process itself, once the shim's thread runs (it waits for a
 *              second thread under the shim), installs a filter with
 *              SECCOMP_FILTER_FLAG_TSYNC (every thread, the shim's too) that also kills
 *              access/faccessat (the shim's thread looks for meshd's socket with it)
 *
 * Prints how the child ended; exit 0 if it exited 0 with its data intact, 1 if not, 2 for a
 * usage or set-up error, 77 if seccomp is not available.
 */
#include <dlfcn.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum how { HOW_PRCTL, HOW_SYSCALL, HOW_TSYNC };

static int sandbox(enum how how)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 5, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 4, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_access, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_faccessat, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_faccessat2, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    if (how != HOW_PRCTL)
        return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                            how == HOW_TSYNC ? SECCOMP_FILTER_FLAG_TSYNC : 0, &prog);
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* Threads of this process, from /proc/self/task's link count (2 + threads). */
static long threads(void)
{
    struct stat st;
    return stat("/proc/self/task", &st) == 0 ? (long)st.st_nlink - 2 : -1;
}

/* Allocates, fills and frees for work_ms; 0, or 1 if memory failed. */
static int work(long work_ms);

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static int work(long work_ms)
{
    for (long end = now_ms() + work_ms; now_ms() < end;) {
        enum { N = 256 };
        char *p[N];
        for (int i = 0; i < N; i++) {
            if (!(p[i] = malloc(100 + (size_t)i * 37)))
                return 1;
            memset(p[i], i, 100 + (size_t)i * 37);
        }
        for (int i = 0; i < N; i++)
            free(p[i]);
        struct timespec gap = {0, 5000000};
        nanosleep(&gap, NULL);
    }
    return 0;
}

/* tsync: this process sandboxes all its threads at once, the shim's among them. */
static int tsync(long work_ms)
{
    if (dlsym(RTLD_DEFAULT, "mesh_stats_get")) /* under the shim: its thread first */
        for (int i = 0; threads() < 2; i++) {
            if (i == 1000) {
                fprintf(stderr, "selfsandbox: the shim's thread never started\n");
                return 2;
            }
            free(malloc(64 << 10)); /* a slow path starts it */
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
    if (sandbox(HOW_TSYNC) != 0)
        return errno == EINVAL || errno == ENOSYS ? 77 : 2;
    int rc = work(work_ms);
    printf("selfsandbox: the process, sandboxed with TSYNC, %s\n", rc ? "ran out of memory" : "lived");
    return rc;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    enum how how = strcmp(mode, "prctl") == 0 ? HOW_PRCTL : strcmp(mode, "syscall") == 0 ? HOW_SYSCALL
                                                                                          : HOW_TSYNC;
    if (how == HOW_TSYNC && strcmp(mode, "tsync") != 0) {
        fprintf(stderr, "usage: selfsandbox prctl|syscall|tsync [WORK_MS]\n");
        return 2;
    }
    long work_ms = argc > 2 ? strtol(argv[2], NULL, 10) : 2500;
    if (how == HOW_TSYNC)
        return tsync(work_ms);
    char *kept = malloc(1 << 20);
    if (!kept)
        return 2;
    memset(kept, 0x3c, 1 << 20);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        if (sandbox(how) != 0)
            _exit(errno == EINVAL || errno == ENOSYS ? 77 : 2);
        if (work(work_ms) != 0)
            _exit(1);
        for (int i = 0; i < 1 << 20; i++)
            if (kept[i] != 0x3c)
                _exit(1);
        _exit(0);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return 2;
    if (WIFSIGNALED(st)) {
        printf("selfsandbox: the sandboxed child was killed by signal %d\n", WTERMSIG(st));
        return 1;
    }
    printf("selfsandbox: the sandboxed child exited %d\n", WEXITSTATUS(st));
    return WEXITSTATUS(st) == 77 ? 77 : WEXITSTATUS(st) == 0 ? 0 : 1;
}
