/*
 * barrier_load: a program that meshing must not hurt, for tests/integration/barrier.sh.
 *
 * It fragments its heap (so meshd finds pairs), then runs until the file STOP exists:
 *  - writer threads that block every signal (the "signals go to one thread" pattern) and
 *    keep incrementing a counter in each surviving object;
 *  - with "io": threads whose system calls write into heap buffers that sit among the
 *    fragmented objects: recv() and recvmsg() of numbered datagrams, read() of numbered
 *    records from a pipe, waitpid() of children with the status in the heap.
 * At the end it checks every surviving object (pattern and counter), that no call failed
 * (EFAULT), that no datagram or record went missing or out of order, and that every child's
 * exit status arrived; it prints one "barrier_load: ok ..." line and exits 0, or prints
 * what was wrong and exits 1.
 *
 *   barrier_load STOP [io] [objects=120000]
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rng.h" /* the shim's xorshift64*, header-only: nothing of the shim is linked */
#include "shim_poll.h"

#define WRITERS 2
#define IO_BUFS 64

struct obj {
    uint64_t counter;
    uint64_t size;
    uint8_t bytes[]; /* pattern from the address */
};

static struct obj **live;
static size_t nlive;
static uint64_t *expected; /* per survivor: increments made */
static uint8_t *io_buf[IO_BUFS];
static const char *stop_path;
static _Atomic int stop;
static _Atomic int failed;

static uint8_t pattern(const void *base, size_t i) { return (uint8_t)(((uintptr_t)base >> 4) * 31 + i * 7); }

static void fail(const char *what, long a, long b)
{
    fprintf(stderr, "barrier_load: FAIL %s (%ld, %ld)\n", what, a, b);
    atomic_store(&failed, 1);
    atomic_store(&stop, 1);
}

static void *writer(void *arg)
{
    size_t first = (size_t)(uintptr_t)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    while (!atomic_load(&stop))
        for (size_t i = first; i < nlive; i += WRITERS) {
            live[i]->counter++;
            expected[i]++;
        }
    return NULL;
}

/* ---- recv / recvmsg ---------------------------------------------------------------------- */

static int dgram[2];
static _Atomic uint64_t dgrams_sent, dgrams_received;

static void *dgram_sender(void *arg)
{
    (void)arg;
    for (uint64_t seq = 1; !atomic_load(&stop); seq++) {
        if (send(dgram[0], &seq, sizeof seq, MSG_NOSIGNAL) != (ssize_t)sizeof seq) {
            if (errno == EINTR)
                continue;
            if (!atomic_load(&stop))
                fail("send", errno, 0);
            return NULL;
        }
        atomic_store(&dgrams_sent, seq);
    }
    uint64_t end = 0; /* tells the receiver that nothing more comes */
    send(dgram[0], &end, sizeof end, MSG_NOSIGNAL);
    return NULL;
}

static void *dgram_receiver(void *arg)
{
    (void)arg;
    for (uint64_t want = 1, i = 0;; want++, i++) {
        uint8_t *buf = io_buf[i % IO_BUFS];
        ssize_t n;
        if (i & 1) {
            struct iovec iov = {.iov_base = buf, .iov_len = 8};
            struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
            n = recvmsg(dgram[1], &msg, 0);
        } else {
            n = recv(dgram[1], buf, 8, 0);
        }
        if (n < 0 && errno == EINTR) {
            want--, i--;
            continue;
        }
        if (n != 8) {
            fail(i & 1 ? "recvmsg into the heap" : "recv into the heap", (long)n, errno);
            return NULL;
        }
        uint64_t seq;
        memcpy(&seq, buf, sizeof seq);
        if (seq == 0)
            return NULL;
        if (seq != want) {
            fail("datagram lost or out of order: got, wanted", (long)seq, (long)want);
            return NULL;
        }
        atomic_store(&dgrams_received, seq);
    }
}

/* ---- read ------------------------------------------------------------------------------ */

static int pipe_fds[2];
static _Atomic uint64_t records_read;

static void *pipe_writer(void *arg)
{
    (void)arg;
    for (uint64_t seq = 1; !atomic_load(&stop); seq++)
        if (write(pipe_fds[1], &seq, sizeof seq) != (ssize_t)sizeof seq && !atomic_load(&stop)) {
            fail("write to the pipe", errno, 0);
            break;
        }
    close(pipe_fds[1]);
    return NULL;
}

static void *pipe_reader(void *arg)
{
    (void)arg;
    for (uint64_t want = 1, i = 0;; i++) {
        uint8_t *buf = io_buf[(i * 7 + 3) % IO_BUFS] + 16;
        size_t got = 0;
        while (got < 8) {
            ssize_t n = read(pipe_fds[0], buf + got, 8 - got);
            if (n == 0)
                return NULL;
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                fail("read into the heap", errno, 0);
                return NULL;
            }
            got += (size_t)n;
        }
        uint64_t seq;
        memcpy(&seq, buf, sizeof seq);
        if (seq != want++) {
            fail("pipe record lost: got, wanted", (long)seq, (long)want - 1);
            return NULL;
        }
        atomic_store(&records_read, seq);
    }
}

/* ---- waitpid ----------------------------------------------------------------------------- */

static _Atomic uint64_t children_reaped;

static void *reaper(void *arg)
{
    (void)arg;
    for (unsigned i = 0; !atomic_load(&stop); i++) {
        int *status = (int *)(io_buf[(i * 5 + 1) % IO_BUFS] + 32);
        pid_t pid = fork();
        if (pid < 0) {
            fail("fork", errno, 0);
            return NULL;
        }
        if (pid == 0)
            _exit((int)(i % 200) + 1);
        pid_t got;
        do
            got = waitpid(pid, status, 0);
        while (got < 0 && errno == EINTR);
        if (got != pid) {
            fail("waitpid with the status in the heap", (long)got, errno);
            return NULL;
        }
        if (!WIFEXITED(*status) || WEXITSTATUS(*status) != (int)(i % 200) + 1) {
            fail("child's exit status lost: status, want", *status, (long)(i % 200) + 1);
            return NULL;
        }
        atomic_fetch_add(&children_reaped, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: barrier_load STOP [io] [objects]\n");
        return 2;
    }
    stop_path = argv[1];
    signal(SIGPIPE, SIG_IGN);
    int io = argc > 2 && strcmp(argv[2], "io") == 0;
    size_t n = argc > 3 ? strtoul(argv[3], NULL, 10) : 120000;
    struct obj **all = calloc(n, sizeof *all);
    live = calloc(n, sizeof *live);
    expected = calloc(n, sizeof *expected);
    if (!all || !live || !expected)
        return 2;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        size_t size = 32 + mesh_rng_next(&rng) % 224;
        all[i] = malloc(size);
        all[i]->counter = 0;
        all[i]->size = size;
        for (size_t b = 0; b < size - sizeof(struct obj); b++)
            all[i]->bytes[b] = pattern(all[i], b);
    }
    /* Free three in four at random; every 97th survivor becomes an I/O buffer. */
    size_t bufs = 0, survivors = 0;
    for (size_t i = 0; i < n; i++) {
        if (mesh_rng_next(&rng) % 4 != 0) {
            free(all[i]);
        } else if (survivors++ % 97 == 0 && bufs < IO_BUFS && all[i]->size >= 64) {
            io_buf[bufs++] = (uint8_t *)all[i];
        } else {
            live[nlive++] = all[i];
        }
    }
    for (; bufs < IO_BUFS; bufs++)
        io_buf[bufs] = malloc(64);
    free(all);

    pthread_t threads[WRITERS + 5];
    int nthreads = 0;
    for (uintptr_t w = 0; w < WRITERS; w++)
        pthread_create(&threads[nthreads++], NULL, writer, (void *)w);
    if (io) {
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dgram) != 0 || pipe(pipe_fds) != 0)
            return 2;
        pthread_create(&threads[nthreads++], NULL, dgram_sender, NULL);
        pthread_create(&threads[nthreads++], NULL, dgram_receiver, NULL);
        pthread_create(&threads[nthreads++], NULL, pipe_writer, NULL);
        pthread_create(&threads[nthreads++], NULL, pipe_reader, NULL);
        pthread_create(&threads[nthreads++], NULL, reaper, NULL);
    }
    printf("barrier_load: ready, %zu objects live%s\n", nlive, io ? ", io threads running" : "");
    fflush(stdout);
    /* The test waits for the registration: see shim_poll.h. */
    for (unsigned i = 0; !atomic_load(&stop) && access(stop_path, F_OK) != 0; i++) {
        if (i % 5 == 0)
            shim_poll();
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&stop, 1);
    if (io && atomic_load(&failed)) {
        /* A failed reader no longer drains: unblock its writer. */
        shutdown(dgram[0], SHUT_RDWR);
        shutdown(dgram[1], SHUT_RDWR);
        close(pipe_fds[0]);
    }
    for (int t = 0; t < nthreads; t++)
        pthread_join(threads[t], NULL);

    size_t bad = 0;
    for (size_t i = 0; i < nlive; i++) {
        struct obj *o = live[i];
        int ok = o->counter == expected[i];
        for (size_t b = 0; ok && b < o->size - sizeof(struct obj); b++)
            ok = o->bytes[b] == pattern(o, b);
        bad += !ok;
    }
    if (bad)
        fail("objects damaged", (long)bad, (long)nlive);
    if (io && atomic_load(&dgrams_received) + 1 < atomic_load(&dgrams_sent))
        fail("datagrams sent but not received", (long)atomic_load(&dgrams_received),
             (long)atomic_load(&dgrams_sent));
    if (atomic_load(&failed))
        return 1;
    uint64_t writes = 0;
    for (size_t i = 0; i < nlive; i++)
        writes += expected[i];
    printf("barrier_load: ok, %zu objects checked, %llu writes, %llu datagrams, %llu pipe records, "
           "%llu children reaped\n",
           nlive, (unsigned long long)writes, (unsigned long long)atomic_load(&dgrams_received),
           (unsigned long long)atomic_load(&records_read), (unsigned long long)atomic_load(&children_reaped));
    return 0;
}
