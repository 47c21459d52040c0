/* spare_cpu.c: spare CPUs from /proc/stat's first line; see spare_cpu.h. */
#include "spare_cpu.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The "cpu " line's jiffies: idle time (idle + iowait) and all of it. */
static int parse(const char *line, unsigned long long *idle, unsigned long long *all)
{
    unsigned long long v[10] = {0};
    if (strncmp(line, "cpu ", 4) != 0) /* the total, not "cpu0" (sscanf's space matches none) */
        return -1;
    int n = sscanf(line, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    if (n < 4)
        return -1;
    /* user nice system idle iowait irq softirq steal; guest and guest_nice are already in
     * user and nice. */
    *all = 0;
    for (int i = 0; i < n && i < 8; i++)
        *all += v[i];
    *idle = v[3] + (n > 4 ? v[4] : 0);
    return 0;
}

double spare_cpu_between(const char *before, const char *after, unsigned cpus)
{
    unsigned long long idle0, all0, idle1, all1;
    if (parse(before, &idle0, &all0) != 0 || parse(after, &idle1, &all1) != 0 || all1 <= all0)
        return -1;
    /* iowait may go backwards (proc(5)): clamp what that does to the idle share into 0..1. */
    unsigned long long idle = idle1 > idle0 ? idle1 - idle0 : 0, all = all1 - all0;
    return (double)(idle < all ? idle : all) / (double)all * cpus;
}

static int read_line(char *buf, size_t size)
{
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return -1;
    int ok = fgets(buf, (int)size, f) != NULL && strncmp(buf, "cpu ", 4) == 0;
    fclose(f);
    return ok ? 0 : -1;
}

/* The online CPUs as of the last /proc/stat reading (sysconf reads a sysfs file: once per
 * window, not once per request); 0 before the first. */
static unsigned online_cpus;

static unsigned read_online(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return online_cpus = cpus > 0 ? (unsigned)cpus : 1;
}

unsigned spare_cpu_online(void) { return online_cpus ? online_cpus : read_online(); }

double spare_cpu_now(double now)
{
    static char prev[256];
    static double prev_at = -1, last = -1;
    if (prev_at >= 0 && now - prev_at < SPARE_CPU_MIN_WINDOW)
        return last;
    char line[256];
    if (read_line(line, sizeof line) != 0)
        return last = -1;
    last = prev_at >= 0 ? spare_cpu_between(prev, line, read_online()) : -1;
    memcpy(prev, line, sizeof prev);
    prev_at = now;
    return last;
}
