/*
 * credswitch: a daemon that drops root while its threads use the heap (issue 15).
 *
 *   credswitch MODE UID GID
 *
 * MODE says how it changes its credentials, from root to UID/GID; each works under glibc
 * (the test runs it without the shim too):
 *   keepcaps  as setpriv does: PR_SET_KEEPCAPS, setresuid, capset (effective = permitted),
 *             setresgid, setgroups, then capset to nothing.  Single-threaded: keepcaps and
 *             capset act on the calling thread only, so under glibc no program with a
 *             second thread can do this (the second thread fails setresgid; glibc aborts)
 *   thread    setgroups, setresgid, setresuid, capset to nothing, from a thread other than
 *             main, while ALLOCATORS threads allocate
 *   euid      seteuid/setegid round trips (to UID/GID and back to root, three times), then
 *             setgroups + setgid + setuid for good, while ALLOCATORS threads allocate
 *   initgroups  initgroups(name of UID) + setgid + setuid (glibc's initgroups calls its own
 *             setgroups, which the shim sees only through initgroups), while ALLOCATORS
 *             threads allocate
 *   toggle    TOGGLE_ROUND_TRIPS seteuid/setegid round trips to UID/GID and back, staying root, while
 *             ALLOCATORS threads allocate (a daemon that borrows a user's identity per
 *             request: the shim's thread, whose capabilities are the caller's, stays)
 * It builds a fragmented heap (every survivor's bytes known), prints "ready" once the
 * shim's control thread exists (a second thread in /proc/self/task; without the shim, at
 * once), waits for SIGUSR1, then starts the allocator threads that allocate, fill, check
 * and free without pause, makes its credential change while they run, checks the result (getresuid, getresgid,
 * getgroups, no effective capabilities), uses the heap again, prints "dropped", and holds
 * until the next SIGUSR1 (the test meshes it meanwhile, as UID).  Then it checks every
 * survivor and every object of the allocator threads and exits 0 only if all are intact
 * ("verified: ok").  Every wait polls the shim (shim_poll.h) so that its thread, stopped
 * for each change, starts again.
 */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim_poll.h"

/* glibc exports it without declaring it. */
int capset(cap_user_header_t header, const cap_user_data_t data);

#define OBJECTS    200000
/* Each set*id is glibc's broadcast to every thread (three allocating ones): on a machine
 * loaded by other work each waits for all of them to be scheduled, and 8000 such calls
 * took over two minutes even without the shim.  300 round trips (1200 calls) are enough
 * to show the shim's thread stays registered once. */
#define TOGGLE_ROUND_TRIPS 300
#define KEEP_EVERY 4 /* one survivor in four: a fragmented heap */
#define ALLOCATORS 3
#define RING       512

static uid_t target_uid;
static gid_t target_gid;
static const char *mode;
static _Atomic int allocators_stop;
static _Atomic long bad_bytes;

static uint8_t pattern(uint64_t seed, size_t i) { return (uint8_t)((seed * 2654435761u + i * 40503u) >> 7); }

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pattern(seed, i);
}

static int intact(const uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != pattern(seed, i))
            return 0;
    return 1;
}

static int tasks(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void die(const char *what)
{
    fprintf(stderr, "credswitch %s: %s: %s\n", mode, what, strerror(errno));
    exit(1);
}

/* Waits for SIGUSR1 (blocked since start), polling the shim meanwhile. */
static void wait_usr1(void)
{
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    struct timespec tick = {.tv_nsec = 20 * 1000000L};
    while (sigtimedwait(&usr1, NULL, &tick) != SIGUSR1)
        shim_poll();
}

/* An allocator: a ring of objects, each checked before it is freed. */
static void *allocator(void *arg)
{
    uint64_t seed = (uintptr_t)arg * 7919u + 1;
    uint8_t *ring[RING] = {0};
    size_t sizes[RING] = {0};
    uint64_t seeds[RING] = {0};
    for (uint64_t n = 0; !atomic_load(&allocators_stop) || n < 4 * RING; n++) {
        size_t k = n % RING;
        if (ring[k]) {
            if (!intact(ring[k], sizes[k], seeds[k]))
                atomic_fetch_add(&bad_bytes, 1);
            free(ring[k]);
        }
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        sizes[k] = 16 + (seed >> 33) % 2000;
        seeds[k] = seed;
        ring[k] = malloc(sizes[k]);
        if (!ring[k])
            die("malloc in an allocator thread");
        fill(ring[k], sizes[k], seeds[k]);
    }
    for (size_t k = 0; k < RING; k++) {
        if (ring[k] && !intact(ring[k], sizes[k], seeds[k]))
            atomic_fetch_add(&bad_bytes, 1);
        free(ring[k]);
    }
    return NULL;
}

static void set_caps(int keep_permitted)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0)
        die("capget");
    for (int i = 0; i < 2; i++) {
        d[i].effective = keep_permitted ? d[i].permitted : 0;
        if (!keep_permitted)
            d[i].permitted = d[i].inheritable = 0;
    }
    if (capset(&h, d) != 0)
        die("capset");
}

static void drop_keepcaps(void)
{
    gid_t groups[1] = {target_gid};
    if (prctl(PR_SET_KEEPCAPS, 1) != 0)
        die("PR_SET_KEEPCAPS");
    if (setresuid(target_uid, target_uid, target_uid) != 0)
        die("setresuid");
    set_caps(1);
    if (setresgid(target_gid, target_gid, target_gid) != 0)
        die("setresgid");
    if (setgroups(1, groups) != 0)
        die("setgroups");
    set_caps(0);
}

static void *drop_thread(void *arg)
{
    (void)arg;
    gid_t groups[1] = {target_gid};
    if (setgroups(1, groups) != 0)
        die("setgroups");
    if (setresgid(target_gid, target_gid, target_gid) != 0)
        die("setresgid");
    if (setresuid(target_uid, target_uid, target_uid) != 0)
        die("setresuid");
    set_caps(0);
    return NULL;
}

static void drop_euid(void)
{
    for (int round = 0; round < 3; round++) {
        if (setegid(target_gid) != 0 || seteuid(target_uid) != 0)
            die("setegid/seteuid to the target");
        free(malloc(100 + (size_t)round));
        if (geteuid() != target_uid)
            die("seteuid did not take");
        if (seteuid(0) != 0 || setegid(0) != 0)
            die("seteuid/setegid back to root");
    }
    if (setgroups(0, NULL) != 0 || setgid(target_gid) != 0 || setuid(target_uid) != 0)
        die("setgroups/setgid/setuid");
}

static void drop_initgroups(void)
{
    struct passwd *pw = getpwuid(target_uid);
    if (!pw)
        die("getpwuid");
    if (initgroups(pw->pw_name, target_gid) != 0)
        die("initgroups");
    if (setgid(target_gid) != 0 || setuid(target_uid) != 0)
        die("setgid/setuid");
}

static void toggle(void)
{
    for (int i = 0; i < TOGGLE_ROUND_TRIPS; i++) {
        if (setegid(target_gid) != 0 || seteuid(target_uid) != 0)
            die("setegid/seteuid to the target");
        free(malloc(64 + (size_t)i % 512));
        if (seteuid(0) != 0 || setegid(0) != 0)
            die("seteuid/setegid back to root");
    }
    target_uid = 0; /* what check_credentials expects now */
    target_gid = 0;
}

static void check_credentials(void)
{
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) != 0 || getresgid(&rg, &eg, &sg) != 0)
        die("getresuid/getresgid");
    if (r != target_uid || e != target_uid || s != target_uid || rg != target_gid ||
        eg != target_gid || sg != target_gid) {
        fprintf(stderr, "credswitch %s: credentials %u/%u/%u %u/%u/%u\n", mode, r, e, s, rg, eg, sg);
        exit(1);
    }
    gid_t groups[64];
    int n = getgroups(64, groups);
    for (int i = 0; i < n && target_gid != 0; i++)
        if (groups[i] == 0) {
            fprintf(stderr, "credswitch %s: still in group 0\n", mode);
            exit(1);
        }
    if (target_uid != 0 && setuid(0) == 0) {
        fprintf(stderr, "credswitch %s: could become root again\n", mode);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    mode = argv[1];
    target_uid = (uid_t)strtoul(argv[2], NULL, 10);
    target_gid = (gid_t)strtoul(argv[3], NULL, 10);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);

    static uint8_t *objs[OBJECTS];
    static size_t sizes[OBJECTS];
    uint64_t rng = 88172645463325252ull;
    for (size_t i = 0; i < OBJECTS; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        sizes[i] = 16 + rng % 1000;
        if (!(objs[i] = malloc(sizes[i])))
            die("malloc");
        fill(objs[i], sizes[i], i);
    }
    for (size_t i = 0; i < OBJECTS; i++)
        if (i % KEEP_EVERY) {
            free(objs[i]);
            objs[i] = NULL;
        }
    /* The shim's thread must exist when the credentials change: that is the case tested. */
    int shim = getenv("LD_PRELOAD") && strstr(getenv("LD_PRELOAD"), "libmesh");
    for (int i = 0; shim && tasks() < 2; i++) {
        if (i > 60 * 50)
            die("the shim's control thread never started");
        shim_poll();
        struct timespec tick = {.tv_nsec = 20 * 1000000L};
        nanosleep(&tick, NULL);
    }
    printf("ready\n");
    fflush(stdout);
    wait_usr1();

    pthread_t threads[ALLOCATORS];
    int allocators = strcmp(mode, "keepcaps") == 0 ? 0 : ALLOCATORS;
    for (uintptr_t t = 0; t < (uintptr_t)allocators; t++)
        if (pthread_create(&threads[t], NULL, allocator, (void *)t) != 0)
            die("pthread_create");
    if (strcmp(mode, "keepcaps") == 0) {
        drop_keepcaps();
    } else if (strcmp(mode, "thread") == 0) {
        pthread_t dropper;
        if (pthread_create(&dropper, NULL, drop_thread, NULL) != 0 || pthread_join(dropper, NULL) != 0)
            die("the dropping thread");
    } else if (strcmp(mode, "euid") == 0) {
        drop_euid();
    } else if (strcmp(mode, "initgroups") == 0) {
        drop_initgroups();
    } else if (strcmp(mode, "toggle") == 0) {
        toggle();
    } else {
        return 2;
    }
    check_credentials();
    for (int i = 0; i < 1000; i++)
        free(malloc(16 + (size_t)i));
    printf("dropped\n");
    fflush(stdout);
    wait_usr1();

    atomic_store(&allocators_stop, 1);
    for (int t = 0; t < allocators; t++)
        pthread_join(threads[t], NULL);
    long bad = atomic_load(&bad_bytes);
    for (size_t i = 0; i < OBJECTS; i++)
        if (objs[i]) {
            bad += !intact(objs[i], sizes[i], i);
            free(objs[i]);
        }
    printf("verified: %s (%ld bad objects)\n", bad ? "FAILED" : "ok", bad);
    return bad ? 1 : 0;
}
