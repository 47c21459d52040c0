/* closer.c: see closer.h. */
#include "closer.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define CLOSER_FIRST_THREADS 2
#define QUEUE_MIN 1024u
#define QUEUE_MAX 65536u
/* The signal that interrupts a close() stuck in an interruptible wait. */
#define CLOSER_SIGNAL SIGUSR2

struct item {
    int fd;
    uid_t uid;
};

struct worker {
    pthread_t thread;
    int busy;          /* closing a descriptor of uid since `since` */
    uid_t uid;
    double since;
    double signaled;   /* when last interrupted; 0: not yet for this close */
};

struct charge {
    uid_t uid;
    size_t n;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct item *queue; /* ring of cap entries */
static size_t cap, head, count;
static struct worker workers[CLOSER_MAX_THREADS];
static size_t nworkers;
static int stopping;
/* Charged descriptors per uid; only uids with n > 0 are kept. */
static struct charge *charges;
static size_t ncharges, charges_cap;
static struct event *watchdog;

/* Under lock. */
static int charge(uid_t uid, int delta)
{
    for (size_t i = 0; i < ncharges; i++) {
        if (charges[i].uid != uid)
            continue;
        charges[i].n += (size_t)(ssize_t)delta;
        if (charges[i].n == 0)
            charges[i] = charges[--ncharges];
        return 0;
    }
    if (delta <= 0)
        return 0;
    if (ncharges == charges_cap) {
        size_t ncap = charges_cap ? 2 * charges_cap : 16;
        struct charge *c = realloc(charges, ncap * sizeof *c);
        if (!c)
            return -1;
        charges = c;
        charges_cap = ncap;
    }
    charges[ncharges++] = (struct charge){.uid = uid, .n = (size_t)delta};
    return 0;
}

size_t closer_pending(uid_t uid)
{
    size_t n = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < ncharges; i++)
        if (charges[i].uid == uid)
            n = charges[i].n;
    pthread_mutex_unlock(&lock);
    return n;
}

static void on_interrupt(int sig) { (void)sig; }

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, CLOSER_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &only, NULL);
    pthread_mutex_lock(&lock);
    for (;;) {
        while (!count && !stopping)
            pthread_cond_wait(&wake, &lock);
        if (stopping)
            break;
        struct item it = queue[head];
        head = (head + 1) % cap;
        count--;
        w->busy = 1;
        w->uid = it.uid;
        w->since = monotonic_now();
        w->signaled = 0;
        pthread_mutex_unlock(&lock);
        /* EINTR still releases the descriptor (Linux); the wait it cut short is the
         * kernel's to finish in the background (TCP) or to abandon (FUSE). */
        close(it.fd);
        pthread_mutex_lock(&lock);
        w->busy = 0;
        charge(it.uid, -1);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* Under lock.  Starts with every signal blocked but CLOSER_SIGNAL: the daemon's own
 * signals (SIGTERM, SIGHUP, SIGBUS of a table read) stay with the loop's thread. */
static int add_worker(void)
{
    if (nworkers == CLOSER_MAX_THREADS)
        return -1;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    struct worker *w = &workers[nworkers];
    memset(w, 0, sizeof *w);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        meshd_log("closer: cannot start a thread: %s", strerror(rc));
        return -1;
    }
    nworkers++;
    return 0;
}

/* Once a second: interrupt closes that overstay, and add a thread when every one is stuck
 * while descriptors wait. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    double now = monotonic_now();
    size_t stuck = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < nworkers; i++) {
        struct worker *w = &workers[i];
        if (!w->busy || now - w->since < CLOSER_TIMEOUT_SECONDS)
            continue;
        stuck++;
        if (now - w->signaled >= CLOSER_TIMEOUT_SECONDS) {
            static double last_log = -60;
            if (now - last_log >= 60) { /* a client can make many: once a minute */
                meshd_log("closer: a descriptor of uid %u has been closing for %.0f s; "
                          "interrupting it", (unsigned)w->uid, now - w->since);
                last_log = now;
            }
            w->signaled = now;
            pthread_kill(w->thread, CLOSER_SIGNAL);
        }
    }
    if (count && stuck == nworkers && add_worker() == 0)
        meshd_log("closer: %zu threads stuck in close(); started another", stuck);
    pthread_mutex_unlock(&lock);
}

int closer_start(struct event_base *base)
{
    struct rlimit rl;
    cap = QUEUE_MIN;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > cap)
        cap = rl.rlim_cur < QUEUE_MAX ? (size_t)rl.rlim_cur : QUEUE_MAX;
    queue = calloc(cap, sizeof *queue);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt; /* no SA_RESTART: the close() returns */
    sigemptyset(&sa.sa_mask);
    watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, NULL);
    struct timeval tv = {.tv_sec = 1};
    if (!queue || sigaction(CLOSER_SIGNAL, &sa, NULL) != 0 || !watchdog ||
        event_add(watchdog, &tv) != 0) {
        meshd_log("closer: cannot start");
        return -1;
    }
    pthread_mutex_lock(&lock);
    int rc = 0;
    for (int i = 0; i < CLOSER_FIRST_THREADS && rc == 0; i++)
        rc = add_worker();
    pthread_mutex_unlock(&lock);
    return rc;
}

void closer_submit(int fd, uid_t uid)
{
    pthread_mutex_lock(&lock);
    if (nworkers && count < cap && charge(uid, 1) == 0) {
        queue[(head + count) % cap] = (struct item){.fd = fd, .uid = uid};
        count++;
        pthread_cond_signal(&wake);
        pthread_mutex_unlock(&lock);
        return;
    }
    pthread_mutex_unlock(&lock);
    /* Cannot happen with the queue sized by RLIMIT_NOFILE; if it does, a socket at least
     * is reset instead of lingering. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

void closer_stop(void)
{
    if (watchdog)
        event_free(watchdog);
    watchdog = NULL;
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_broadcast(&wake);
    size_t n = nworkers;
    pthread_mutex_unlock(&lock);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&lock);
        int busy = workers[i].busy;
        pthread_mutex_unlock(&lock);
        if (busy)
            pthread_detach(workers[i].thread);
        else
            pthread_join(workers[i].thread, NULL);
    }
}
