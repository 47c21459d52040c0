/*
 * lastexit: a program whose last thread ends with pthread_exit().  main starts a worker and
 * leaves through pthread_exit(NULL); the worker sleeps, allocates, prints a line into
 * stdout's buffer (no fflush: only exit() flushes it when stdout is a file) and returns.
 * glibc then exits the process with status 0 in that last thread, flushing the line.  A
 * thread of the shim's still running must not keep the process alive (it did, for ever,
 * deaf to SIGTERM): tests/integration/lastexit.sh runs it under timeout(1).
 *
 *   lastexit [sleep_ms=1500]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned sleep_ms = 1500;

static void *worker(void *arg)
{
    (void)arg;
    struct timespec ts = {sleep_ms / 1000, (long)(sleep_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
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
        sleep_ms = (unsigned)strtoul(argv[1], NULL, 10);
    free(malloc(1 << 20)); /* the shim set up, a heap to look after */
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0) {
        perror("lastexit: pthread_create");
        return 1;
    }
    pthread_exit(NULL);
}
