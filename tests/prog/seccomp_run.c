/*
 * seccomp_run: runs a program, or a workload of its own, under a seccomp filter that
 * answers some of the system calls libmesh makes beyond glibc malloc's with ACTION.
 *
 *   seccomp_run ACTION SYSCALLS PROG [ARGS...]   install the filter, then exec PROG
 *   seccomp_run ACTION SYSCALLS - GOFILE [FILTERFILE]
 *                                                install it in this process, then work
 *
 * ACTION: kill (SECCOMP_RET_KILL_PROCESS), eperm or enosys (SECCOMP_RET_ERRNO).
 * SYSCALLS: a comma-separated subset of memfd_create,userfaultfd,sched_setscheduler.
 * Raw BPF via prctl(PR_SET_SECCOMP): no libseccomp.  Exit 77: no seccomp here.
 *
 * The workload ("-", run preloaded: the shim set up its heap before the filter, as in a
 * program that sandboxes itself) fragments a heap of about 50 MiB, prints "fragmented",
 * waits (600 s at least) for GOFILE to exist while a test meshes it, checks every surviving
 * object byte for byte, forks a child that allocates and checks them too, and prints
 * "seccomp_run: ok".  With FILTERFILE, the filter comes later: after "fragmented" the
 * workload waits (as long) for FILTERFILE (a test creates it once the shim has registered with
 * meshd), then installs the filter and prints "filtered".
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#endif

static const struct {
    const char *name;
    long nr;
} known[] = {
    {"memfd_create", SYS_memfd_create},
    {"userfaultfd", SYS_userfaultfd},
    {"sched_setscheduler", SYS_sched_setscheduler},
};
#define KNOWN (sizeof known / sizeof known[0])

static int install(const char *action, const char *names)
{
#ifndef ARCH
    (void)action, (void)names;
    fprintf(stderr, "seccomp_run: no filter for this architecture\n");
    return 77;
#else
    uint32_t ret;
    if (strcmp(action, "kill") == 0)
        ret = SECCOMP_RET_KILL_PROCESS;
    else if (strcmp(action, "eperm") == 0)
        ret = SECCOMP_RET_ERRNO | EPERM;
    else if (strcmp(action, "enosys") == 0)
        ret = SECCOMP_RET_ERRNO | ENOSYS;
    else
        return fprintf(stderr, "seccomp_run: unknown action %s\n", action), 2;
    struct sock_filter prog[4 + 2 * KNOWN];
    unsigned n = 0;
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    char list[256];
    snprintf(list, sizeof list, "%s", names);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t k = 0;
        while (k < KNOWN && strcmp(known[k].name, tok) != 0)
            k++;
        if (k == KNOWN)
            return fprintf(stderr, "seccomp_run: unknown system call %s\n", tok), 2;
        prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)known[k].nr, 0, 1);
        prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, ret);
    }
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog fprog = {.len = (unsigned short)n, .filter = prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) != 0) {
        fprintf(stderr, "seccomp_run: cannot install a filter: %s\n", strerror(errno));
        return 77;
    }
    return 0;
#endif
}

#define OBJECTS 100000
static uint8_t *objs[OBJECTS];

static size_t size_of(size_t i) { return 64 + (i * 7919) % 960; }

static int intact(void)
{
    for (size_t i = 0; i < OBJECTS; i++)
        if (objs[i])
            for (size_t j = 0; j < size_of(i); j++)
                if (objs[i][j] != (uint8_t)i)
                    return 0;
    return 1;
}

/* Waits (600 s at least: longer than the test's bounded steps) for path to exist; 0, or 1
 * after saying so. */
static int wait_file(const char *path)
{
    struct stat st;
    for (int waited = 0; stat(path, &st) != 0; waited++) {
        if (waited == 6000)
            return fprintf(stderr, "seccomp_run: %s did not appear\n", path), 1;
        nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
    }
    return 0;
}

static int workload(const char *gofile, const char *filterfile, char **argv)
{
    for (size_t i = 0; i < OBJECTS; i++) {
        if (!(objs[i] = malloc(size_of(i))))
            return fprintf(stderr, "seccomp_run: malloc failed\n"), 1;
        memset(objs[i], (int)(uint8_t)i, size_of(i));
    }
    for (size_t i = 0; i < OBJECTS; i++)
        if ((i * 2654435761u) % 100 >= 25) {
            free(objs[i]);
            objs[i] = NULL;
        }
    printf("fragmented\n");
    fflush(stdout);
    if (filterfile) {
        int rc = wait_file(filterfile) ? 1 : install(argv[1], argv[2]);
        if (rc != 0)
            return rc;
        printf("filtered\n");
        fflush(stdout);
    }
    if (wait_file(gofile))
        return 1;
    if (!intact())
        return fprintf(stderr, "seccomp_run: heap data changed\n"), 1;
    pid_t pid = fork();
    if (pid < 0)
        return fprintf(stderr, "seccomp_run: fork: %s\n", strerror(errno)), 1;
    if (pid == 0) {
        void *p[1000];
        for (int i = 0; i < 1000; i++)
            if ((p[i] = malloc(48 + (size_t)i)))
                memset(p[i], 0x77, 48 + (size_t)i);
        int ok = intact();
        for (int i = 0; i < 1000; i++)
            free(p[i]);
        _exit(ok ? 0 : 1);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return fprintf(stderr, "seccomp_run: fork child failed (status %#x)\n", status), 1;
    printf("seccomp_run: ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: seccomp_run kill|eperm|enosys SYSCALLS PROG [ARGS...] | - GOFILE\n");
        return 2;
    }
    /* The workload is a program that sandboxes itself after it started allocating: the
     * shim (preloaded) sets its heap up at the first malloc, which comes here. */
    static void *volatile early; /* kept: the compiler may not drop the malloc */
    if (strcmp(argv[3], "-") == 0)
        early = malloc(1);
    (void)early;
    int late = strcmp(argv[3], "-") == 0 && argc > 5;
    int rc = late ? 0 : install(argv[1], argv[2]);
    if (rc != 0)
        return rc;
    if (strcmp(argv[3], "-") == 0)
        return argc > 4 ? workload(argv[4], late ? argv[5] : NULL, argv) : 2;
    execvp(argv[3], argv + 3);
    fprintf(stderr, "seccomp_run: exec %s: %s\n", argv[3], strerror(errno));
    return 127;
}
