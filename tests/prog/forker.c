/*
 * forker: mallocs some data, forks, and keeps both processes alive for a while, so that a
 * test can see the parent and the child registered with meshd as two processes.  Both
 * allocate after the fork too, and both check the data they inherited before exiting.
 *
 *   forker [seconds=10 | hold]
 *
 * Prints "parent PID" and "child PID" lines (flushed) once both are running; exits 0 if
 * both saw their data intact.  "hold": each process waits for its own SIGUSR1 instead of
 * sleeping, so that a test lets them go once it has seen what it checks.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define OBJECTS 20000

static int hold;
static sigset_t usr1;

/* Sleeps SECONDS, or with "hold" waits for SIGUSR1 (blocked since the start, inherited by
 * the child, so an early one waits here rather than kills). */
static void idle(unsigned seconds)
{
    int sig;
    if (!hold)
        sleep(seconds);
    else
        while (sigwait(&usr1, &sig) != 0)
            ;
}

static uint8_t *objs[OBJECTS];

static size_t size_of(size_t i) { return 16 + (i * 7919) % 1000; }

static int check(void)
{
    int bad = 0;
    for (size_t i = 0; i < OBJECTS; i++)
        if (objs[i])
            for (size_t j = 0; j < size_of(i); j++)
                bad |= objs[i][j] != (uint8_t)i;
    return bad;
}

/* Frees every other object and allocates a few new ones: each heap goes its own way. */
static int churn(unsigned salt)
{
    for (size_t i = salt % 2; i < OBJECTS; i += 2) {
        free(objs[i]);
        objs[i] = NULL;
    }
    for (size_t i = 0; i < 1000; i++) {
        void *p = malloc(64 + salt);
        if (!p)
            return 1;
        memset(p, 0x5a, 64 + salt);
        free(p);
    }
    return 0;
}

/* New spans: the allocation slow path runs (and starts the shim's control thread). */
#define FRESH 20000
static void allocate_fresh(void **into)
{
    for (int i = 0; i < FRESH; i++)
        if ((into[i] = malloc(64 + (size_t)(i % 4) * 64)))
            memset(into[i], i, 64);
}

int main(int argc, char **argv)
{
    hold = argc > 1 && strcmp(argv[1], "hold") == 0;
    unsigned seconds = argc > 1 && !hold ? (unsigned)atoi(argv[1]) : 10;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    if (hold && sigprocmask(SIG_BLOCK, &usr1, NULL) != 0)
        return 2;
    for (size_t i = 0; i < OBJECTS; i++) {
        objs[i] = malloc(size_of(i));
        if (!objs[i])
            return 2;
        memset(objs[i], (int)(uint8_t)i, size_of(i));
    }
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("forker: fork");
        return 2;
    }
    if (child == 0) {
        int bad = churn(1) | check();
        /* The shim registers a fork child once it allocates a second after fork. */
        sleep(1);
        static void *fresh_in_child[FRESH];
        allocate_fresh(fresh_in_child);
        bad |= churn(1) | check();
        idle(seconds);
        bad |= check();
        _exit(bad ? 1 : 0);
    }
    printf("parent %d\nchild %d\n", (int)getpid(), (int)child);
    fflush(stdout);
    int bad = churn(0) | check();
    /* The parent registers the same way: at an allocation slow path a second in. */
    sleep(1);
    static void *fresh[FRESH];
    allocate_fresh(fresh);
    bad |= check();
    idle(seconds);
    bad |= check();
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        bad = 1;
    printf("forker: %s\n", bad ? "CORRUPT or child failed" : "ok");
    return bad ? 1 : 0;
}
