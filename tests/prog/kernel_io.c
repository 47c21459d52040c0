/*
 * kernel_io: heap buffers the kernel holds while meshd meshes the heap.
 *
 *   kernel_io uring  DIR   io_uring fixed buffers (malloc'd, registered before meshing),
 *                          filled with IORING_OP_READ_FIXED after meshing
 *   kernel_io uring_syscall DIR   the same, registered with syscall(SYS_io_uring_register)
 *                          rather than liburing's io_uring_register_buffers
 *   kernel_io direct DIR   O_DIRECT preads into posix_memalign'd buffers from a thread,
 *                          over and over while meshing goes on
 *
 * Both modes first fragment the heap so the buffers' spans are mesh candidates: many
 * objects of the buffers' class, most freed at random, the rest filled with a pattern.
 * Protocol with the test script (files in DIR): the program writes DIR/data (the file it
 * reads back), then DIR/ready; the script runs meshing rounds and creates DIR/go; the
 * program then verifies and prints "corrupted N" (bytes wrong in the buffers and in every
 * other live object).  In direct mode it prints "skip: ..." and exits 77 if the file
 * system refuses O_DIRECT.  Exit 0 only if nothing was corrupted.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim_poll.h"

#define BUFFERS 64
#define SPREAD  512 /* spans' worth of objects per class */

static const char *dir;
static _Atomic int stop; /* the readers' end: set once the script said go (or gave up) */
static uint8_t **objs;
static size_t nobjs, per_span;

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint8_t pattern(size_t obj, size_t i) { return (uint8_t)(obj * 131 + i * 7 + 1); }
static uint8_t file_byte(size_t off) { return (uint8_t)((off * 2654435761u) >> 13) | 1; }

static void path(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

static int exists(const char *name)
{
    char p[4096];
    path(p, sizeof p, name);
    return access(p, F_OK) == 0;
}

static void touch(const char *name)
{
    char p[4096];
    path(p, sizeof p, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
}

/* Waits (at least 600 s: the script drives the steps, each bounded on its side) for
 * DIR/go, taking the allocator's slow path now and then so that the shim registers with
 * meshd however quickly the program got here. */
static int wait_go(void)
{
    for (int i = 0; i < 60000; i++) {
        if (exists("go"))
            return 0;
        if (i % 10 == 0)
            shim_poll();
        usleep(10000);
    }
    fprintf(stderr, "kernel_io: no go from the script\n");
    return -1;
}

/*
 * Allocates SPREAD spans' worth of objects of `size` (alignment `align`, 0 for malloc),
 * keeps two random objects of each span's worth and frees the rest, so that the survivors
 * sit in sparse spans that meshd can pair.  The `want` first survivors are returned in
 * bufs (not filled with a pattern: they are I/O buffers); the others get the pattern.
 */
static void fragment(size_t size, size_t align, uint8_t **bufs, size_t want)
{
    per_span = 4096 / size > 1 ? 4096 / size : 1;
    size_t n = SPREAD * per_span;
    uint8_t **all = calloc(n, sizeof *all);
    objs = calloc(n, sizeof *objs);
    for (size_t i = 0; i < n; i++) {
        if (align) {
            void *p = NULL;
            if (posix_memalign(&p, align, size) != 0)
                p = NULL;
            all[i] = p;
        } else {
            all[i] = malloc(size);
        }
        if (!all[i]) {
            perror("kernel_io: allocation");
            exit(2);
        }
    }
    uint64_t rng = 0x2545f4914f6cdd1dull;
    size_t nb = 0;
    for (size_t base = 0; base < n; base += per_span) {
        size_t a = base + next(&rng) % per_span, b = base + next(&rng) % per_span;
        for (size_t i = base; i < base + per_span; i++) {
            if (i != a && i != b) {
                free(all[i]);
            } else if (nb < want && i == a) {
                bufs[nb++] = all[i];
            } else {
                objs[nobjs++] = all[i];
            }
        }
    }
    free(all);
    for (size_t o = 0; o < nobjs; o++)
        for (size_t i = 0; i < size; i++)
            objs[o][i] = pattern(o, i);
}

static size_t check_objects(size_t size)
{
    size_t bad = 0;
    for (size_t o = 0; o < nobjs; o++)
        for (size_t i = 0; i < size; i++)
            bad += objs[o][i] != pattern(o, i);
    return bad;
}

static size_t check_buffer(const uint8_t *b, size_t len, size_t off)
{
    size_t bad = 0;
    for (size_t i = 0; i < len; i++)
        bad += b[i] != file_byte(off + i);
    return bad;
}

static int write_data(size_t bytes, int flags)
{
    char p[4096];
    path(p, sizeof p, "data");
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    uint8_t chunk[4096];
    for (size_t off = 0; fd >= 0 && off < bytes; off += sizeof chunk) {
        for (size_t i = 0; i < sizeof chunk; i++)
            chunk[i] = file_byte(off + i);
        if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk) {
            perror("kernel_io: write data");
            exit(2);
        }
    }
    if (fd < 0 || fsync(fd) != 0) {
        perror("kernel_io: data file");
        exit(2);
    }
    close(fd);
    return open(p, O_RDONLY | O_CLOEXEC | flags);
}

/* ---- io_uring fixed buffers -------------------------------------------------------------- */

#define URING_SIZE 256

static int run_uring(int raw)
{
    uint8_t *bufs[BUFFERS];
    fragment(URING_SIZE, 0, bufs, BUFFERS);
    int fd = write_data((size_t)BUFFERS * URING_SIZE, 0);
    struct io_uring ring;
    int rc = io_uring_queue_init(BUFFERS, &ring, 0);
    if (rc < 0 || fd < 0) {
        fprintf(stderr, "kernel_io: io_uring_queue_init: %s\n", strerror(-rc));
        return 2;
    }
    struct iovec iov[BUFFERS];
    for (int i = 0; i < BUFFERS; i++) {
        memset(bufs[i], 0, URING_SIZE);
        iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = URING_SIZE};
    }
    rc = raw ? (int)syscall(SYS_io_uring_register, ring.ring_fd, IORING_REGISTER_BUFFERS, iov, BUFFERS)
             : io_uring_register_buffers(&ring, iov, BUFFERS);
    if (raw && rc < 0)
        rc = -errno;
    if (rc < 0) {
        fprintf(stderr, "kernel_io: io_uring_register_buffers: %s\n", strerror(-rc));
        return 2;
    }
    touch("ready");
    if (wait_go() != 0)
        return 2;
    for (int i = 0; i < BUFFERS; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_read_fixed(sqe, fd, bufs[i], URING_SIZE, (uint64_t)i * URING_SIZE, i);
    }
    io_uring_submit(&ring);
    size_t bad = 0;
    for (int i = 0; i < BUFFERS; i++) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(&ring, &cqe) != 0 || cqe->res != URING_SIZE) {
            fprintf(stderr, "kernel_io: READ_FIXED failed: %d\n", cqe ? cqe->res : -1);
            return 2;
        }
        io_uring_cqe_seen(&ring, cqe);
    }
    for (int i = 0; i < BUFFERS; i++)
        bad += check_buffer(bufs[i], URING_SIZE, (size_t)i * URING_SIZE);
    printf("buffer bytes wrong %zu of %d\n", bad, BUFFERS * URING_SIZE);
    bad += check_objects(URING_SIZE);
    io_uring_unregister_buffers(&ring);
    io_uring_queue_exit(&ring);
    printf("corrupted %zu\n", bad);
    return bad != 0;
}

/* ---- O_DIRECT reads from a thread while meshing runs -------------------------------------- */

#define DIRECT_SIZE    512
#define READERS        4
#define READER_BUFFERS 64

struct reader {
    int fd;
    uint8_t **bufs; /* READER_BUFFERS of them, file offsets base + i * DIRECT_SIZE */
    size_t base;
    size_t bad, reads, efaults;
    int error;
};

/* A read that met an mprotect barrier fails with EFAULT before any byte moved (the
 * documented gap of that barrier, not what this program tests): it is counted and
 * retried.  Any other failure ends the reader. */
static int failed(struct reader *r, ssize_t got, ssize_t want)
{
    if (got == want)
        return 0;
    if (got < 0 && errno == EFAULT) {
        r->efaults++;
        return -1;
    }
    r->error = got < 0 ? errno : EIO;
    return 1;
}

/* Each pass reads the reader's part of the file with one preadv (every buffer held by the
 * kernel at once, for as long as the device takes), then buffer by buffer with pread. */
static void *read_loop(void *arg)
{
    struct reader *r = arg;
    struct iovec iov[READER_BUFFERS];
    for (int i = 0; i < READER_BUFFERS; i++)
        iov[i] = (struct iovec){.iov_base = r->bufs[i], .iov_len = DIRECT_SIZE};
    while (!atomic_load(&stop)) {
        for (int i = 0; i < READER_BUFFERS; i++)
            memset(r->bufs[i], 0, DIRECT_SIZE);
        int f = failed(r, preadv(r->fd, iov, READER_BUFFERS, (off_t)r->base),
                       READER_BUFFERS * DIRECT_SIZE);
        if (f > 0)
            return NULL;
        if (f < 0)
            continue;
        for (int i = 0; i < READER_BUFFERS; i++)
            r->bad += check_buffer(r->bufs[i], DIRECT_SIZE, r->base + (size_t)i * DIRECT_SIZE);
        r->reads += READER_BUFFERS;
        for (int i = 0; i < READER_BUFFERS; i++) {
            memset(r->bufs[i], 0, DIRECT_SIZE);
            size_t off = r->base + (size_t)i * DIRECT_SIZE;
            int g = failed(r, pread(r->fd, r->bufs[i], DIRECT_SIZE, (off_t)off), DIRECT_SIZE);
            if (g > 0)
                return NULL;
            if (g < 0)
                continue;
            r->bad += check_buffer(r->bufs[i], DIRECT_SIZE, off);
            r->reads++;
        }
    }
    return NULL;
}

static int run_direct(void)
{
    uint8_t *bufs[READERS * READER_BUFFERS];
    fragment(DIRECT_SIZE, DIRECT_SIZE, bufs, READERS * READER_BUFFERS);
    int fd = write_data((size_t)READERS * READER_BUFFERS * DIRECT_SIZE, O_DIRECT);
    if (fd < 0 || pread(fd, bufs[0], DIRECT_SIZE, 0) != DIRECT_SIZE) {
        printf("skip: O_DIRECT reads refused here (%s)\n", strerror(errno));
        return 77;
    }
    struct reader r[READERS];
    pthread_t t[READERS];
    for (int i = 0; i < READERS; i++) {
        r[i] = (struct reader){.fd = fd, .bufs = bufs + i * READER_BUFFERS,
                               .base = (size_t)i * READER_BUFFERS * DIRECT_SIZE};
        pthread_create(&t[i], NULL, read_loop, &r[i]);
    }
    touch("ready");
    int go = wait_go();
    atomic_store(&stop, 1);
    size_t bad = 0, reads = 0, efaults = 0;
    int error = 0;
    for (int i = 0; i < READERS; i++) {
        pthread_join(t[i], NULL);
        bad += r[i].bad;
        reads += r[i].reads;
        efaults += r[i].efaults;
        error = error ? error : r[i].error;
    }
    if (error || go != 0) {
        fprintf(stderr, "kernel_io: O_DIRECT read: %s\n", error ? strerror(error) : "no go");
        return 2;
    }
    printf("reads %zu (%zu retried after EFAULT), buffer bytes wrong %zu\n", reads, efaults, bad);
    bad += check_objects(DIRECT_SIZE);
    printf("corrupted %zu\n", bad);
    return bad != 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: kernel_io uring|uring_syscall|direct DIR\n");
        return 2;
    }
    dir = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "uring") == 0)
        return run_uring(0);
    if (strcmp(argv[1], "uring_syscall") == 0)
        return run_uring(1);
    if (strcmp(argv[1], "direct") == 0)
        return run_direct();
    fprintf(stderr, "kernel_io: unknown mode %s\n", argv[1]);
    return 2;
}
