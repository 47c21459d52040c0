/*
 * dirtyheap: frees FREED_BYTES of large objects, which the shim keeps dirty for reuse (less
 * than its keep target, so neither their age nor the hard bound gives them back; arena.c),
 * writes "held" to READY_FILE, and then, without allocating again, waits for the shim to
 * return them: a test drives that with memory pressure (MESH_TEST_PRESSURE_FILE, shim/
 * pressure.h), which the shim's control thread reads.
 *
 *   dirtyheap READY_FILE [WAIT_S=120] [juggle]
 *
 * juggle: while it waits, it closes stdout and dup2()s a saved copy back, over and over,
 * as daemons and CPython's test_subprocess do, and checks each time that 1 is the same
 * file again: a descriptor the shim opened for its looks (the pressure file, the seccomp
 * status) would take number 1 meanwhile, or close the restored one (exit 3).
 *
 * Exit 0: the dirty bytes went to 0, the arena's resident bytes (mesh_stats'
 * committed_bytes) fell by at least what was freed and the process's RssShmem by 7/8 of
 * it (a registered process's span table is shmem too); 1: not
 * within WAIT_S (only a hang or a missing release runs into it); 2: not under libmesh.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "juggle.h"
#include "mesh.h"

#define OBJECTS     12
#define OBJECT_SIZE (256u << 10) /* large objects: page spans of their own */
#define FREED_BYTES ((uint64_t)OBJECTS * OBJECT_SIZE)

typedef int (*stats_fn)(struct mesh_stats *);

/* RssShmem of this process in KiB (the arena is a memfd: its pages count there), read
 * without stdio so that nothing is allocated while the test waits; -1 if unreadable. */
static long rss_shmem_kib(void)
{
    static char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *p = strstr(buf, "RssShmem:");
    return p ? strtol(p + 9, NULL, 10) : -1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Waits about 20 ms: juggling stdout (0 if 1 stayed the same file, else -1), or asleep. */
static int wait_a_little(int juggle)
{
    if (!juggle)
        return usleep(20000), 0;
    struct stat before;
    if (fstat(1, &before) != 0)
        return -1;
    double end = now_s() + 0.02;
    do
        if (juggle_stdout_round(&before) != 0)
            return -1;
    while (now_s() < end);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: dirtyheap READY_FILE [WAIT_S] [juggle]\n");
        return 2;
    }
    double wait_s = argc > 2 ? atof(argv[2]) : 120;
    int juggle = argc > 3 && strcmp(argv[3], "juggle") == 0;
    stats_fn stats = (stats_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "mesh_stats_get");
    if (!stats) {
        fprintf(stderr, "dirtyheap: not under libmesh (no mesh_stats_get)\n");
        return 2;
    }
    static unsigned char *objs[OBJECTS];
    for (int i = 0; i < OBJECTS; i++) {
        objs[i] = malloc(OBJECT_SIZE);
        if (!objs[i])
            return 2;
        memset(objs[i], 0x5a, OBJECT_SIZE); /* resident */
    }
    struct mesh_stats before, st;
    stats(&before);
    long shmem_before = rss_shmem_kib();
    for (int i = 0; i < OBJECTS; i++)
        free(objs[i]);
    stats(&st);
    if (st.dirty_bytes < FREED_BYTES) {
        fprintf(stderr, "dirtyheap: only %llu bytes dirty after freeing %llu\n",
                (unsigned long long)st.dirty_bytes, (unsigned long long)FREED_BYTES);
        return 1;
    }
    /* No stdio: nothing may be allocated (out of the dirty pages) from here on. */
    int ready = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (ready < 0 || write(ready, "held\n", 5) != 5 || close(ready) != 0)
        return 2;
    double deadline = now_s() + wait_s;
    do {
        if (wait_a_little(juggle) != 0) {
            static const char msg[] = "dirtyheap: stdout was closed or replaced while it juggled it\n";
            if (write(2, msg, sizeof msg - 1) < 0) {
            }
            return 3;
        }
        stats(&st);
    } while (st.dirty_bytes && now_s() < deadline);
    long shmem_after = rss_shmem_kib();
    printf("dirty %llu -> %llu bytes, released %llu bytes, committed %llu -> %llu bytes, "
           "RssShmem %ld -> %ld KiB\n",
           (unsigned long long)FREED_BYTES, (unsigned long long)st.dirty_bytes,
           (unsigned long long)(st.released_bytes - before.released_bytes),
           (unsigned long long)before.committed_bytes, (unsigned long long)st.committed_bytes,
           shmem_before, shmem_after);
    int ok = st.dirty_bytes == 0 && st.released_bytes - before.released_bytes >= FREED_BYTES &&
             before.committed_bytes - st.committed_bytes >= FREED_BYTES &&
             /* RssShmem also counts the span table's memfd once registered with meshd */
             shmem_before - shmem_after >= (long)(FREED_BYTES >> 10) * 7 / 8;
    return ok ? 0 : 1;
}
