/*
 * rsssample: samples a process's resident set size until it exits.
 *
 *   rsssample PID START_EPOCH_US OUT.csv [PERIOD_MS=250]
 *
 * Every PERIOD_MS it reads VmRSS, VmHWM (the kernel's exact high-water mark, which a
 * sampler cannot miss) and RssShmem (libmesh's memfd arena is shared memory) from
 * /proc/PID/status and appends "t_s,rss_kib,hwm_kib,shmem_kib" to OUT.csv, where t_s is
 * seconds since START_EPOCH_US (a CLOCK_REALTIME time in microseconds, e.g. bash's
 * ${EPOCHREALTIME/./}): the script that starts the workload uses the same clock for its
 * phase marks.  Stops when the process is gone or on SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* 0 with the three values, -1 once the process is gone. */
static int read_status(const char *path, long *rss, long *hwm, long *shmem)
{
    FILE *f = fopen(path, "r");
    char line[256];
    if (!f)
        return -1;
    *rss = *hwm = *shmem = -1;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %ld kB", rss) == 1 || sscanf(line, "VmHWM: %ld kB", hwm) == 1)
            continue;
        sscanf(line, "RssShmem: %ld kB", shmem);
    }
    fclose(f);
    /* A zombie has no VmRSS line: it has released its memory, which is not a sample. */
    return *rss < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: rsssample PID START_EPOCH_US OUT.csv [PERIOD_MS]\n");
        return 2;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/status", argv[1]);
    double start = strtod(argv[2], NULL);
    long period_ms = argc > 4 ? strtol(argv[4], NULL, 10) : 250;
    if (period_ms <= 0)
        period_ms = 250;
    FILE *out = fopen(argv[3], "w");
    if (!out) {
        perror(argv[3]);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    fprintf(out, "t_s,rss_kib,hwm_kib,shmem_kib\n");
    /* Sample on a fixed grid so that slow reads do not stretch the period. */
    double next = now_us();
    while (!stop) {
        long rss, hwm, shmem;
        double t = now_us();
        if (read_status(path, &rss, &hwm, &shmem) != 0)
            break;
        fprintf(out, "%.3f,%ld,%ld,%ld\n", (t - start) / 1e6, rss, hwm, shmem);
        fflush(out);
        next += (double)period_ms * 1000.0;
        double wait = next - now_us();
        if (wait > 0) {
            struct timespec ts = {(time_t)(wait / 1e6), (long)((wait - (double)(time_t)(wait / 1e6) * 1e6) * 1e3)};
            nanosleep(&ts, NULL);
        } else {
            next = now_us();
        }
    }
    fclose(out);
    return 0;
}
