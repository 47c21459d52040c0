/*
 * redisrate: a lightly loaded Redis, measured open-loop: requests at a fixed rate.
 *
 *   redisrate PORT KEYS VALUE_BYTES RATE SECONDS
 *
 * Sends SET for SECONDS, then GET for SECONDS, RATE requests a second each, on random keys
 * of redis-benchmark's keyspace ("key:%012u" below KEYS, VALUE_BYTES of 'x': the keys
 * `redis-benchmark -r KEYS -d VALUE_BYTES` writes), over one connection.  Request i is due
 * at start + i / RATE; it is sent then, or at once when the reply before it came later.
 * When that reply was late, its latency runs from when it was due, so a stall delays every
 * request due during it and all of them count (open loop: no coordinated omission),
 * unlike redis-benchmark, whose clients send the next request only after the last reply;
 * otherwise from when it was sent (the client's own wake-up delay is not Redis's).
 *
 * Why: redis-benchmark at full speed with one client keeps about one of two CPUs busy,
 * which is where meshd's default policy stops compacting (min_spare_cpu, meshd/policy.h);
 * a server running at a fraction of its capacity, the usual production case, is what its
 * compaction is for, and what this measures.
 *
 * Prints per test what bench/frag/latency.py parses in redis-benchmark 7's output:
 * "====== SET ======", percentile lines "P% <= MS milliseconds (cumulative count N)",
 * "Cumulative distribution of latencies:", "throughput summary: X requests per second"
 * and the "latency summary" table (avg min p50 p95 p99 max).  Exits 1 on any error or
 * unexpected reply.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
    struct timespec ts = {.tv_sec = (time_t)t, .tv_nsec = (long)((t - (double)(time_t)t) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void die(const char *what)
{
    fprintf(stderr, "redisrate: %s: %s\n", what, errno ? strerror(errno) : "unexpected");
    exit(1);
}

static void send_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("send");
        buf += n;
        len -= (size_t)n;
    }
}

/* Reads one reply: "+OK", "$-1" or "$N" and N bytes.  rx holds what arrived beyond it. */
static char rx[1 << 16];
static size_t rx_len;

static void read_reply(int fd, int want_bulk)
{
    for (;;) {
        char *eol = rx_len ? memmem(rx, rx_len, "\r\n", 2) : NULL;
        if (eol) {
            size_t need = (size_t)(eol - rx) + 2;
            if (want_bulk) {
                errno = 0;
                if (rx[0] != '$')
                    die("GET reply");
                long n = strtol(rx + 1, NULL, 10);
                if (n > 0)
                    need += (size_t)n + 2;
                if (n > (long)sizeof rx / 2)
                    die("GET reply too long");
            } else if (rx[0] != '+') {
                errno = 0;
                die("SET reply");
            }
            if (rx_len >= need) {
                memmove(rx, rx + need, rx_len - need);
                rx_len -= need;
                return;
            }
        }
        ssize_t n = recv(fd, rx + rx_len, sizeof rx - rx_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = ECONNRESET;
            die("recv");
        }
        rx_len += (size_t)n;
    }
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The latency (ms) at or below which pct% of the n sorted samples are. */
static double at_pct(const double *ms, size_t n, double pct)
{
    size_t i = (size_t)(pct / 100 * (double)n + 0.999999);
    if (i < 1)
        i = 1;
    return ms[(i > n ? n : i) - 1];
}

static void run_test(int fd, int is_set, unsigned keys, const char *value, double rate, double seconds)
{
    size_t n = (size_t)(rate * seconds);
    double *ms = malloc(n * sizeof *ms);
    char req[4096];
    if (!ms)
        die("malloc");
    size_t vlen = strlen(value);
    double start = now_s() + 0.01, sum = 0, replied = 0;
    for (size_t i = 0; i < n; i++) {
        double due = start + (double)i / rate;
        if (now_s() < due)
            sleep_until(due);
        double from = replied > due ? due : now_s();
        char key[32];
        int klen = snprintf(key, sizeof key, "key:%012u", (unsigned)(random() % keys));
        int len = is_set ? snprintf(req, sizeof req, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%zu\r\n%s\r\n", klen, key,
                                    vlen, value)
                         : snprintf(req, sizeof req, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", klen, key);
        send_all(fd, req, (size_t)len);
        read_reply(fd, !is_set);
        replied = now_s();
        ms[i] = (replied - from) * 1e3;
        sum += ms[i];
    }
    double elapsed = now_s() - start;
    qsort(ms, n, sizeof *ms, by_value);
    printf("====== %s ======\n", is_set ? "SET" : "GET");
    printf("  %zu requests due at %.0f a second over %.2f seconds, one connection, open loop\n\n", n, rate,
           elapsed);
    printf("Latency by percentile distribution:\n");
    static const double pcts[] = {50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100};
    for (size_t i = 0; i < sizeof pcts / sizeof pcts[0]; i++) {
        double v = at_pct(ms, n, pcts[i]);
        size_t count = 0;
        while (count < n && ms[count] <= v)
            count++;
        printf("%.3f%% <= %.3f milliseconds (cumulative count %zu)\n", pcts[i], v, count);
    }
    printf("Cumulative distribution of latencies:\n\n");
    printf("Summary:\n  throughput summary: %.2f requests per second\n", (double)n / elapsed);
    printf("  latency summary (msec):\n");
    printf("          avg       min       p50       p95       p99       max\n");
    printf("      %7.3f   %7.3f   %7.3f   %7.3f   %7.3f   %7.3f\n\n", sum / (double)n, ms[0],
           at_pct(ms, n, 50), at_pct(ms, n, 95), at_pct(ms, n, 99), ms[n - 1]);
    fflush(stdout);
    free(ms);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: redisrate PORT KEYS VALUE_BYTES RATE SECONDS\n");
        return 2;
    }
    int port = atoi(argv[1]), vbytes = atoi(argv[3]);
    unsigned keys = (unsigned)strtoul(argv[2], NULL, 10);
    double rate = atof(argv[4]), seconds = atof(argv[5]);
    if (port <= 0 || port > 65535 || keys == 0 || vbytes <= 0 || vbytes > 1024 || rate <= 0 || seconds <= 0) {
        fprintf(stderr, "redisrate: bad arguments\n");
        return 2;
    }
    char value[1025];
    memset(value, 'x', (size_t)vbytes);
    value[vbytes] = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        die("connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake when due, not up to 50 us later */
    srandom(1);
    run_test(fd, 1, keys, value, rate, seconds);
    run_test(fd, 0, keys, value, rate, seconds);
    close(fd);
    return 0;
}
