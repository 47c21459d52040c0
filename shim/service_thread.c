/* service_thread.c: see service_thread.h. */
#include "service_thread.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"
#include "lock.h"

#define SERVICE_STACK_BYTES (64 << 10)

int mesh_service_thread_start(void *(*fn)(void *), pthread_t *joinable)
{
    pthread_attr_t attr;
    pthread_t t;
    sigset_t all, old;
    if (pthread_attr_init(&attr) != 0)
        return -1;
    pthread_attr_setstacksize(&attr, SERVICE_STACK_BYTES);
    pthread_attr_setdetachstate(&attr, joinable ? PTHREAD_CREATE_JOINABLE : PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the program's threads */
    int ok = pthread_create(&t, &attr, fn, NULL) == 0;
    if (ok && joinable)
        *joinable = t;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return ok ? 0 : -1;
}

void mesh_step_to(_Atomic int *word, int step)
{
    atomic_store(word, step);
    mesh_futex(word, FUTEX_WAKE, INT_MAX);
}

int mesh_step_after(_Atomic int *word, int from)
{
    int now;
    while ((now = atomic_load(word)) == from)
        mesh_futex(word, FUTEX_WAIT, from);
    return now;
}

int mesh_step_after_for(_Atomic int *word, int from, unsigned timeout_ms)
{
    uint64_t end = mesh_now_ns() + (uint64_t)timeout_ms * 1000000u, now;
    int seen;
    while ((seen = atomic_load(word)) == from && (now = mesh_now_ns()) < end) {
        struct timespec left = mesh_timespec_of_ns(end - now); /* FUTEX_WAIT: relative */
        syscall(SYS_futex, (int *)word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, seen, &left, NULL, 0);
    }
    return seen;
}

/* Closes [lo, hi] in the calling thread's table; 0, or -1. */
static int close_span(unsigned lo, unsigned hi)
{
    return lo > hi ? 0 : (int)syscall(SYS_close_range, lo, hi, 0u);
}

int mesh_own_descriptors(const int *keep, int n)
{
    enum { KEEP_MAX = 8 };
    unsigned sorted[KEEP_MAX];
    if (n > KEEP_MAX)
        return -1;
    for (int i = 0; i < n; i++) {
        if (keep[i] < 0)
            return -1;
        int j = i;
        for (; j > 0 && sorted[j - 1] > (unsigned)keep[i]; j--)
            sorted[j] = sorted[j - 1];
        sorted[j] = (unsigned)keep[i];
    }
    if (unshare(CLONE_FILES) != 0)
        return -1;
    unsigned lo = 0;
    for (int i = 0; i < n; lo = sorted[i++] + 1)
        if (sorted[i] > lo && close_span(lo, sorted[i] - 1) != 0)
            return -1;
    return close_span(lo, ~0u);
}

void mesh_close_own_descriptors(void) { close_span(0, ~0u); }
