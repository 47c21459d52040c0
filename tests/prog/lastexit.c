/*
 * lastexit: a program whose last thread ends with pthread_exit().  main starts a worker and
 * leaves through pthread_exit(NULL); the worker waits, allocates, prints a line into
 * stdout's buffer (no fflush: only exit() flushes it when stdout is a file) and returns.
 * glibc then exits the process with status 0 in that last thread, flushing the line.  A
 * thread of the shim's still running must not keep the process alive (it did, for ever,
 * deaf to SIGTERM): tests/integration/lastexit.sh runs it under timeout(1).
 *
 * With `juggle`, the worker spends its wait as daemons and CPython's test_subprocess do:
 * it saves stdout, closes 1 and dup2()s the copy back, over and over.  A descriptor the
 * shim opened meanwhile would take number 1 (seen before the dup2) or close the
 * restored stdout: the worker checks in each round that 1 stays free and then is the file it
 * was, and reports on stderr (exit status 3) if not.  With GO_FILE it starts juggling
 * only once that file exists: the test creates it when the shim's thread is in its steady
 * state (registered with meshd), since the descriptors the shim creates while it connects
 * (socket, the table's memfd: fdutil.h, "the instant between creation and move") are
 * another matter than the periodic looks this checks.
 *
 * With `filter`, main installs a seccomp filter (one that allows every call) with prctl()
 * before it leaves, as a program that sandboxes itself does: the shim may not look at the
 * process's threads then (a filter might kill for the looks).
 *
 *   lastexit [wait_ms=1500] [juggle [GO_FILE] | filter]
 */
#include <dlfcn.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "juggle.h"

static unsigned wait_ms = 1500;
static int juggle;
static const char *go_file;

/* Closes and restores stdout until wait_ms have passed; 0, or -1 if 1 changed. */
static int juggle_stdout(void)
{
    struct stat before;
    if (fstat(1, &before) != 0)
        return -1;
    for (int i = 0; go_file && access(go_file, F_OK) != 0; i++) {
        if (i == 6000) /* 60 s */
            return -1;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    unsigned long long end = juggle_now_us() + wait_ms * 1000ull;
    unsigned long rounds = 0;
    for (; juggle_now_us() < end; rounds++)
        if (juggle_stdout_round(&before) != 0)
            return -1;
    return rounds ? 0 : -1;
}

static void *worker(void *arg)
{
    (void)arg;
    if (juggle) {
        if (juggle_stdout() != 0) {
            static const char msg[] = "lastexit: stdout was closed or replaced while the worker juggled it\n";
            if (write(2, msg, sizeof msg - 1) < 0) {
            }
            _exit(3);
        }
    } else {
        struct timespec ts = {wait_ms / 1000, (long)(wait_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    char *p = malloc(4096);
    if (!p)
        return NULL;
    strcpy(p, "lastexit: worker done");
    printf("%s\n", p); /* stays in the buffer until exit() */
    free(p);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        wait_ms = (unsigned)strtoul(argv[1], NULL, 10);
    juggle = argc > 2 && strcmp(argv[2], "juggle") == 0;
    go_file = juggle && argc > 3 ? argv[3] : NULL;
    /* A large object: a slow path, where the shim starts its thread.  Small enough to leave
     * less dirty than the pressure look needs (control.c), which would keep a file open. */
    free(malloc(64 << 10));
    /* pthread_exit() unwinds with libgcc_s, which glibc dlopen()s at the first unwind: an
     * open at the lowest free number, racing the juggling worker in glibc itself.  Loaded
     * here first, it is not opened again. */
    if (juggle && !dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NODELETE)) {
        fprintf(stderr, "lastexit: dlopen libgcc_s.so.1: %s\n", dlerror());
        return 1;
    }
    if (argc > 2 && strcmp(argv[2], "filter") == 0) {
        struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        struct sock_fprog prog = {.len = 1, .filter = &allow};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
            perror("lastexit: seccomp filter");
            return 1;
        }
    }
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0) {
        perror("lastexit: pthread_create");
        return 1;
    }
    pthread_exit(NULL);
}
