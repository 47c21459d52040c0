/* juggle.h: for test programs that juggle stdout as daemons and CPython's test_subprocess
 * do (close 1, dup2() a saved copy back), watching that nobody else takes the number. */
#ifndef TESTS_PROG_JUGGLE_H
#define TESTS_PROG_JUGGLE_H

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static inline unsigned long long juggle_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000 + (unsigned long long)ts.tv_nsec / 1000;
}

/*
 * One round: 1 closed for ~0.2 ms, watched all along with fcntl(F_GETFD) (a descriptor
 * anyone opened meanwhile would take it), then the saved copy dup2()ed back; 1 must then
 * be `was` (fstat(1) before the first round) again.  0, or -1 if it was taken or changed.
 */
static inline int juggle_stdout_round(const struct stat *was)
{
    struct stat now;
    int saved = dup(1);
    if (saved < 0 || close(1) != 0)
        return -1;
    for (unsigned long long free_until = juggle_now_us() + 200; juggle_now_us() < free_until;)
        if (fcntl(1, F_GETFD) != -1)
            return -1;
    sched_yield(); /* let the shim's thread run even on a busy CPU */
    if (dup2(saved, 1) != 1 || close(saved) != 0 || fstat(1, &now) != 0)
        return -1;
    return now.st_dev == was->st_dev && now.st_ino == was->st_ino ? 0 : -1;
}

#endif
