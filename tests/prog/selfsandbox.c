/*
 * selfsandbox: a forked child that sandboxes itself, as sshd's preauth child does: a
 * seccomp filter that kills the process on clone and clone3 (no new process, no new
 * thread), then allocates and frees for WORK_MS.  Under glibc that child exits 0; the
 * shim must neither start its control thread (a clone) nor make any call of its own from
 * then on (sandbox.h).  It did: the child was killed by SIGSYS when the thread started.
 *
 *   selfsandbox prctl|syscall [WORK_MS=2500]
 *     prctl    installs the filter with prctl(PR_SET_SECCOMP)
 *     syscall  with syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER), as libseccomp does
 *
 * Prints how the child ended; exit 0 if it exited 0 with its data intact, 1 if not, 2 for a
 * usage or set-up error, 77 if seccomp is not available.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int sandbox(int with_syscall)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    if (with_syscall)
        return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "prctl") != 0 && strcmp(argv[1], "syscall") != 0)) {
        fprintf(stderr, "usage: selfsandbox prctl|syscall [WORK_MS]\n");
        return 2;
    }
    int with_syscall = strcmp(argv[1], "syscall") == 0;
    long work_ms = argc > 2 ? strtol(argv[2], NULL, 10) : 2500;
    char *kept = malloc(1 << 20);
    if (!kept)
        return 2;
    memset(kept, 0x3c, 1 << 20);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        if (sandbox(with_syscall) != 0)
            _exit(errno == EINVAL || errno == ENOSYS ? 77 : 2);
        for (long end = now_ms() + work_ms; now_ms() < end;) {
            enum { N = 256 };
            char *p[N];
            for (int i = 0; i < N; i++) {
                if (!(p[i] = malloc(100 + (size_t)i * 37)))
                    _exit(1);
                memset(p[i], i, 100 + (size_t)i * 37);
            }
            for (int i = 0; i < N; i++)
                free(p[i]);
            struct timespec gap = {0, 5000000};
            nanosleep(&gap, NULL);
        }
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
