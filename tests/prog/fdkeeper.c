/*
 * fdkeeper: a daemon-style program that owns descriptor numbers the way real daemons do,
 * for tests/integration/fds.sh.  It closes what it inherited (fds 3..1023, as closefrom(3)
 * or close_range do), opens its data file (so it gets fd 3), writes it, and then churns its
 * heap in rounds, re-reading every byte of the file and checking every live heap object in
 * every round.  Under libmesh, none of that may change: the shim's own descriptors must
 * not sit on the program's numbers, and the shim must never act through a number that
 * is no longer its own.
 *
 *   fdkeeper DATA_FILE MIB CONTROL_DIR MAX_ROUNDS
 *
 * CONTROL_DIR: the program writes `ready` once its heap is fragmented; if a file `dup2`
 * appears there, it dup2()s its data file over every descriptor the shim holds (found by
 * their /proc/self/fd link names: memfd:libmesh-*, anon_inode:[userfaultfd], sockets) and
 * writes `dup2.done` (the numbers taken); it ends when `stop` appears or after MAX_ROUNDS.
 * CONTROL_DIR "-": just MAX_ROUNDS rounds.  Exit 0 only if everything verified; the last
 * line says what was checked.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK (64u << 10)
#define OBJECTS 120000u

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Byte i of the data file's block b at generation g. */
static uint8_t file_byte(size_t b, uint32_t g, size_t i) { return (uint8_t)((b * 31 + g * 7 + i * 13) >> 1); }

/* Byte i of heap object k of size n. */
static uint8_t obj_byte(size_t k, size_t n, size_t i) { return (uint8_t)(k * 131 + n * 17 + i * 3 + 1); }

static void fill_obj(uint8_t *p, size_t k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = obj_byte(k, n, i);
}

static int obj_ok(const uint8_t *p, size_t k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != obj_byte(k, n, i))
            return 0;
    return 1;
}

static int fail(const char *what)
{
    printf("FAIL: %s (%s)\n", what, strerror(errno));
    fflush(stdout);
    return 1;
}

static int write_block(int fd, uint8_t *buf, size_t b, uint32_t g)
{
    for (size_t i = 0; i < BLOCK; i++)
        buf[i] = file_byte(b, g, i);
    return pwrite(fd, buf, BLOCK, (off_t)(b * BLOCK)) == (ssize_t)BLOCK ? 0 : -1;
}

/* Every byte of the file as the generations say; returns the bytes verified or -1. */
static long long check_file(int fd, uint8_t *buf, const uint32_t *gen, size_t blocks)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size != (off_t)(blocks * BLOCK)) {
        printf("file size %lld, want %zu\n", (long long)st.st_size, blocks * BLOCK);
        return -1;
    }
    for (size_t b = 0; b < blocks; b++) {
        if (pread(fd, buf, BLOCK, (off_t)(b * BLOCK)) != (ssize_t)BLOCK)
            return -1;
        for (size_t i = 0; i < BLOCK; i++)
            if (buf[i] != file_byte(b, gen[b], i)) {
                printf("file block %zu byte %zu: %#x, want %#x\n", b, i, buf[i], file_byte(b, gen[b], i));
                return -1;
            }
    }
    return (long long)(blocks * BLOCK);
}

static int exists(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static void put(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.tmp", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
    char final[4096];
    snprintf(final, sizeof final, "%s/%s", dir, name);
    rename(path, final);
}

/* dup2()s fd over every descriptor whose link looks like the shim's; lists them in out. */
static int take_shim_fds(int fd, char *out, size_t len)
{
    int n = 0;
    size_t used = 0;
    out[0] = '\0';
    for (int d = 0; d < 65536; d++) {
        char path[64], link[256];
        snprintf(path, sizeof path, "/proc/self/fd/%d", d);
        ssize_t l = readlink(path, link, sizeof link - 1);
        if (l <= 0 || d == fd || d < 3)
            continue;
        link[l] = '\0';
        if (!strstr(link, "libmesh-") && !strstr(link, "userfaultfd") && !strstr(link, "socket:"))
            continue;
        if (dup2(fd, d) != d)
            return -1;
        used += (size_t)snprintf(out + used, len - used, "%d=%s ", d, link);
        n++;
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: fdkeeper DATA_FILE MIB CONTROL_DIR MAX_ROUNDS\n");
        return 2;
    }
    const char *dir = strcmp(argv[3], "-") ? argv[3] : NULL;
    size_t blocks = strtoul(argv[2], NULL, 10) * ((1u << 20) / BLOCK);
    unsigned max_rounds = (unsigned)strtoul(argv[4], NULL, 10);

    /* The daemon idiom: nothing inherited survives but 0-2. */
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail("open data file");
    printf("data file is fd %d\n", fd);

    uint8_t *buf = malloc(BLOCK);
    uint32_t *gen = calloc(blocks, sizeof *gen);
    uint8_t **obj = calloc(OBJECTS, sizeof *obj);
    size_t *size = calloc(OBJECTS, sizeof *size);
    if (!buf || !gen || !obj || !size)
        return fail("malloc");
    for (size_t b = 0; b < blocks; b++)
        if (write_block(fd, buf, b, 0) != 0)
            return fail("write data file");

    /* A fragmented heap: many small objects, three in four freed at random. */
    for (size_t k = 0; k < OBJECTS; k++) {
        size[k] = 16 + next() % 496;
        if (!(obj[k] = malloc(size[k])))
            return fail("malloc object");
        fill_obj(obj[k], k, size[k]);
    }
    for (size_t k = 0; k < OBJECTS; k++)
        if (next() % 4) {
            free(obj[k]);
            obj[k] = NULL;
        }
    if (dir)
        put(dir, "ready", "ready\n");

    unsigned long long objects_checked = 0, file_bytes_checked = 0;
    unsigned rounds = 0, took = 0;
    while (rounds < max_rounds && !(dir && exists(dir, "stop"))) {
        rounds++;
        /* Churn: a burst of short-lived memory, freed (dirty pages released to the OS),
         * and some long-lived objects replaced. */
        enum { BURST = 4096 };
        static uint8_t *tmp[BURST];
        for (size_t i = 0; i < BURST; i++) {
            size_t n = i % 64 ? 64 + i % 1000 : 256 << 10;
            if (!(tmp[i] = malloc(n)))
                return fail("malloc burst");
            memset(tmp[i], 0xee, n);
        }
        for (size_t i = 0; i < BURST; i++)
            free(tmp[i]);
        for (unsigned r = 0; r < 2000; r++) {
            size_t k = next() % OBJECTS;
            free(obj[k]);
            obj[k] = NULL;
            if (next() % 4 == 0) {
                size[k] = 16 + next() % 496;
                if (!(obj[k] = malloc(size[k])))
                    return fail("malloc object");
                fill_obj(obj[k], k, size[k]);
            }
        }
        /* Rewrite a few blocks of the file, then check all of it and every live object. */
        for (unsigned w = 0; w < 4; w++) {
            size_t b = next() % blocks;
            if (write_block(fd, buf, b, ++gen[b]) != 0)
                return fail("rewrite data file");
        }
        long long got = check_file(fd, buf, gen, blocks);
        if (got < 0) {
            printf("FAIL: data file changed in round %u\n", rounds);
            return 1;
        }
        file_bytes_checked = (unsigned long long)got;
        unsigned long long live = 0;
        for (size_t k = 0; k < OBJECTS; k++) {
            if (!obj[k])
                continue;
            if (!obj_ok(obj[k], k, size[k])) {
                printf("FAIL: heap object %zu (%zu bytes at %p) changed in round %u\n", k, size[k],
                       (void *)obj[k], rounds);
                return 1;
            }
            live++;
        }
        objects_checked = live;
        if (dir && !took && exists(dir, "dup2")) {
            char list[8192];
            int n = take_shim_fds(fd, list, sizeof list);
            if (n < 0)
                return fail("dup2 over the shim's descriptors");
            took = (unsigned)n;
            printf("dup2 over %d descriptors: %s\n", n, list);
            put(dir, "dup2.done", list);
        }
        if (dir)
            usleep(20000); /* keep churning while the test drives meshd */
    }
    printf("verified: %u rounds, file %llu bytes intact, %llu live objects intact, %u shim fds taken\n",
           rounds, file_bytes_checked, objects_checked, took);
    return 0;
}
