/*
 * fragmenter: a program that fragments its heap the way long-running servers do.  It
 * allocates objects of mixed sizes, frees most of them in a random pattern, keeps the
 * survivors (verifying every one of them at the end) and reports its RSS at each phase.
 *
 *   fragmenter [objects=400000] [keep_percent=25] [idle_seconds=0]
 *
 * SIGUSR1 ends the idle phase early (a test done with it need not guess how long it takes).
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static volatile sig_atomic_t stop_idling;
static void on_usr1(int sig) { (void)sig, stop_idling = 1; }

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 400000;
    unsigned keep = argc > 2 ? (unsigned)atoi(argv[2]) : 25;
    unsigned idle = argc > 3 ? (unsigned)atoi(argv[3]) : 0;
    signal(SIGUSR1, on_usr1);
    uint8_t **objs = calloc(n, sizeof *objs);
    size_t *sizes = calloc(n, sizeof *sizes);
    if (!objs || !sizes)
        return 2;
    uint64_t rng = 88172645463325252ull;
    long rss0 = rss_kib();
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        sizes[i] = 16 + next(&rng) % 1008;
        objs[i] = malloc(sizes[i]);
        if (!objs[i])
            return 2;
        memset(objs[i], (int)(i & 0xff), sizes[i]);
        live += sizes[i];
    }
    long rss_full = rss_kib();
    for (size_t i = 0; i < n; i++) {
        if (next(&rng) % 100 >= keep) {
            live -= sizes[i];
            free(objs[i]);
            objs[i] = NULL;
        }
    }
    long rss_frag = rss_kib();
    printf("fragmenter: %zu objects, kept %u%%: live %zu KiB\n", n, keep, live / 1024);
    printf("fragmenter: RSS start %ld KiB, full %ld KiB, after frees %ld KiB (%.2fx live)\n", rss0,
           rss_full, rss_frag, (double)(rss_frag - rss0) * 1024 / (double)(live ? live : 1));
    fflush(stdout);
    for (unsigned slept = 0; slept < idle && !stop_idling; slept++)
        sleep(1); /* returns early when SIGUSR1 arrives */
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!objs[i])
            continue;
        for (size_t j = 0; j < sizes[i]; j++)
            bad += objs[i][j] != (uint8_t)(i & 0xff);
        free(objs[i]);
    }
    printf("fragmenter: survivors verified: %s; RSS after idle and free-all %ld KiB\n",
           bad ? "CORRUPT" : "ok", rss_kib());
    free(objs);
    free(sizes);
    return bad ? 1 : 0;
}
