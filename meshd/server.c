/* server.c: listening socket, connections, frames; see server.h. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "closer.h"
#include "dispatch.h"
#include "io_full.h"
#include "rounds.h"
#include "log.h"

/* The connection limit is derived from RLIMIT_NOFILE (each shim costs three descriptors: its
 * connection, its span table and its pidfd) minus FD_RESERVE for everything else, and capped here. */
#define MAX_CONNS_CAP 4096u
#define FD_RESERVE 64u
/* The last slots are for root, so that root's meshctl still gets in. */
#define CONN_RESERVE 16u
/* Connections of one non-root uid that are not registered shims. */
#define UID_MAX_UNREGISTERED 64u
/* Of all connection slots, one non-root uid may hold this fraction (registered shims,
 * other connections and descriptors still being closed together), so that one user
 * cannot lock the others out. */
#define UID_SHARE_DIVISOR 4u
/* Input and output buffers of one non-root uid's connections together: room for one
 * maximal frame in each direction and some more.  A connection that would grow them
 * beyond is dropped. */
#define UID_MAX_BUFFERED (4u * (MESH_FRAME_HEADER + MESH_FRAME_MAX))
/* A connection that has neither registered nor sent a request by then is closed. */
#define IDLE_SECONDS 10
/* Frames of one shim handled per readable event before the loop serves others. */
#define FRAMES_PER_EVENT 16u
/* How long accepting pauses when meshd is out of descriptors. */
#define ACCEPT_PAUSE_USEC 100000
/* A peer that does not read its replies is dropped once this much output waits for it. */
#define OUT_MAX (4u * MESH_FRAME_MAX)
/* An input buffer starts this small and grows to the frame being received (at most a
 * maximal frame); it is freed whenever it is empty, so an idle connection holds none. */
#define IN_SMALL 4096u

static struct event_base *loop;
static struct event *listen_ev;
static struct event *accept_pause_ev; /* re-enables listen_ev after running out of fds */
static size_t max_conns = 1024, conn_reserve = CONN_RESERVE;
static int listen_fd = -1;
static char listen_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* "" if not ours */
static struct conn *conns;
static size_t nconns;
static uint64_t last_conn_id;
/* One frame is packed here before it is sent or queued. */
static uint8_t frame_buf[MESH_FRAME_HEADER + MESH_FRAME_MAX];

/* Closes a connection's socket without blocking the loop: once shutdown() stops the peer
 * from sending, an empty receive queue means no descriptors in flight, and the close is
 * only meshd's own socket; anything still queued may release a client's descriptors
 * (closer.h), so that close goes to the closer. */
static void close_conn_socket(int fd, uid_t uid)
{
    int queued = 1;
    if (shutdown(fd, SHUT_RDWR) == 0 || errno == ENOTCONN)
        if (ioctl(fd, SIOCINQ, &queued) != 0)
            queued = 1;
    if (queued)
        closer_submit(fd, uid);
    else
        close(fd);
}

static void conn_close(struct conn *c)
{
    dispatch_closed(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    nconns--;
    event_free(c->rev);
    event_free(c->wev);
    event_free(c->more);
    event_free(c->idle);
    if (c->passed_fd >= 0)
        close(c->passed_fd); /* a memfd (take_rights): its release cannot block */
    close_conn_socket(c->fd, c->uid);
    free(c->in);
    free(c->out);
    free(c);
}

void conn_fail(struct conn *c)
{
    c->broken = 1;
    event_active(c->wev, EV_WRITE, 0);
}

void conn_finish(struct conn *c)
{
    c->finishing = 1;
    event_active(c->wev, EV_WRITE, 0);
}

struct conn *conn_by_id(uint64_t id)
{
    for (struct conn *c = conns; c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

int conn_take_fd(struct conn *c)
{
    int fd = c->passed_fd;
    c->passed_fd = -1;
    return fd;
}

/* ---- output ------------------------------------------------------------------------------ */

static int flush_out(struct conn *c)
{
    size_t done = mesh_io_full(c->fd, MESH_IO_SEND, c->out, c->out_len, 0, MSG_NOSIGNAL | MSG_DONTWAIT);
    /* Short: the socket is full (the rest waits for the next write event), or broken. */
    if (done < c->out_len && errno != EAGAIN && errno != EWOULDBLOCK)
        return -1;
    memmove(c->out, c->out + done, c->out_len - done);
    c->out_len -= done;
    return 0;
}

/* Bytes of buffers held for the connections of uid. */
static size_t uid_buffered(uid_t uid)
{
    size_t n = 0;
    for (struct conn *c = conns; c; c = c->next)
        if (c->uid == uid)
            n += c->in_cap + c->out_cap;
    return n;
}

/* Whether c may grow its buffers by more bytes. */
static int may_buffer(const struct conn *c, size_t more)
{
    if (c->uid == 0 || uid_buffered(c->uid) + more <= UID_MAX_BUFFERED)
        return 1;
    meshd_log("pid %d uid %u: over %u bytes of buffers for its uid; dropping the connection",
              (int)c->pid, (unsigned)c->uid, UID_MAX_BUFFERED);
    return 0;
}

static int queue_out(struct conn *c, const uint8_t *data, size_t len)
{
    if (c->out_len + len > OUT_MAX)
        return -1;
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_len + len > 2 * c->out_cap ? c->out_len + len : 2 * c->out_cap;
        if (!may_buffer(c, cap - c->out_cap))
            return -1;
        uint8_t *out = realloc(c->out, cap);
        if (!out)
            return -1;
        c->out = out;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

int conn_send(struct conn *c, Mesh__Envelope *env)
{
    if (c->broken)
        return -1;
    size_t len = mesh_frame_pack(env, frame_buf, sizeof frame_buf);
    if (len == 0) {
        meshd_log("reply to pid %d does not fit in a frame; dropping the connection", (int)c->pid);
        conn_fail(c);
        return -1;
    }
    /* Queue behind earlier output so frames never interleave, then try to send it all. */
    if (queue_out(c, frame_buf, len) != 0 || flush_out(c) != 0) {
        conn_fail(c);
        return -1;
    }
    c->sent++;
    if (c->out_len)
        event_add(c->wev, NULL);
    /* A client's one answer is out (or queued): it is done. */
    if (c->served)
        conn_finish(c);
    return 0;
}

void conn_send_error(struct conn *c, uint32_t code, const char *message)
{
    Mesh__Error err = MESH__ERROR__INIT;
    Mesh__Envelope env = MESH__ENVELOPE__INIT;
    err.code = code;
    err.message = (char *)message;
    env.body_case = MESH__ENVELOPE__BODY_ERROR;
    env.error = &err;
    conn_send(c, &env);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (!c->broken && flush_out(c) != 0)
        c->broken = 1;
    if (c->broken || (c->finishing && c->out_len == 0)) {
        conn_close(c);
        return;
    }
    if (c->out_len == 0)
        event_del(c->wev);
}

/* ---- input ------------------------------------------------------------------------------- */

/* Whether fd is a memfd (or other shmem file): only those have seals.  F_GET_SEALS looks at
 * the open file alone, so it cannot block whatever fd is; fstat() on a FUSE file would ask
 * the FUSE server. */
static int is_memfd(int fd)
{
    return fcntl(fd, F_GET_SEALS) >= 0;
}

/* Keeps the first descriptor passed on a connection for its Register if it is a memfd; any
 * other is closed by the closer (its close may block, closer.h): meshd never holds
 * descriptors it did not ask for. */
static int take_rights(struct conn *c, struct msghdr *msg)
{
    int ok = !(msg->msg_flags & MSG_CTRUNC);
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof fd, sizeof fd);
            if (c->passed_fd < 0 && c->frames == 0 && ok && is_memfd(fd))
                c->passed_fd = fd;
            else
                closer_submit(fd, c->uid);
        }
    }
    return ok ? 0 : -1;
}

static void arm_idle(struct conn *c, int seconds)
{
    struct timeval tv = {.tv_sec = seconds};
    evtimer_add(c->idle, &tv);
}

/* An empty input buffer is given back: most connections are shims that send a few bytes
 * a minute. */
static void release_input(struct conn *c)
{
    if (c->in_len == 0 && c->in_cap) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

/* Handles at most FRAMES_PER_EVENT whole frames; 1 if whole frames are left over. */
static int handle_frames(struct conn *c)
{
    size_t off = 0, flen = 0;
    unsigned handled = 0;
    int left = 0;
    while (!c->broken && !c->finishing && !c->served) {
        int st = mesh_frame_check(c->in + off, c->in_len - off, &flen);
        if (st == MESH_FRAME_INCOMPLETE)
            break;
        if (st == MESH_FRAME_BAD) {
            meshd_log("pid %d: bad frame length; dropping the connection", (int)c->pid);
            c->broken = 1;
            break;
        }
        if (handled == FRAMES_PER_EVENT) {
            left = 1;
            break;
        }
        int bad_version;
        Mesh__Envelope *env = mesh_frame_unpack(c->in + off, flen, NULL, &bad_version);
        off += flen;
        if (!env) {
            meshd_log("pid %d: %s; dropping the connection", (int)c->pid,
                      bad_version ? "other protocol version" : "malformed message");
            if (bad_version) {
                conn_send_error(c, EPROTO, "unsupported protocol version");
                conn_finish(c);
            } else {
                c->broken = 1;
            }
            break;
        }
        int was_shim = c->proc != NULL;
        dispatch_message(c, env);
        c->frames++;
        handled++;
        mesh__envelope__free_unpacked(env, NULL);
        if (!was_shim && c->proc) {
            /* Registered: a shim stays as long as it likes. */
            event_del(c->idle);
        } else if (!c->proc && !c->broken && !c->finishing) {
            /* A client's request: answered already, or once its round ends (or times out).
             * Either way this connection has had its say. */
            c->served = 1;
            if (c->sent)
                conn_finish(c);
            else
                arm_idle(c, ROUND_TIMEOUT_SECONDS + IDLE_SECONDS);
        }
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    release_input(c);
    return left;
}

/* Handles what the input buffer holds, then decides whether to read more. */
static void process_input(struct conn *c)
{
    int left = handle_frames(c);
    if (c->broken) {
        conn_close(c);
        return;
    }
    if (c->served) {
        /* Nothing more is read: the rest of the buffer, and of the socket, is ignored. */
        event_del(c->rev);
    } else if (left) {
        /* Yield to the loop (a zero timeout runs after the next poll) before the rest. */
        struct timeval now = {0, 0};
        event_del(c->rev);
        evtimer_add(c->more, &now);
    } else {
        event_add(c->rev, NULL);
    }
}

static void on_more(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    process_input(arg);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_close(arg);
}

/* Sizes the input buffer to the frame being received: IN_SMALL until its length is known,
 * then exactly that frame (a buffer already full of whole frames is handled first).  -1 if
 * the frame is bad or its uid's buffers are full. */
static int make_room(struct conn *c)
{
    size_t need = IN_SMALL, flen;
    if (c->in_len >= MESH_FRAME_HEADER) {
        int st = mesh_frame_check(c->in, c->in_len, &flen);
        if (st == MESH_FRAME_BAD)
            return -1;
        if (st == MESH_FRAME_INCOMPLETE) {
            uint32_t plen = (uint32_t)c->in[0] | (uint32_t)c->in[1] << 8 |
                            (uint32_t)c->in[2] << 16 | (uint32_t)c->in[3] << 24;
            need = MESH_FRAME_HEADER + (size_t)plen;
        }
    }
    if (need <= c->in_cap)
        return 0;
    if (!may_buffer(c, need - c->in_cap))
        return -1;
    uint8_t *in = realloc(c->in, need);
    if (!in)
        return -1;
    c->in = in;
    c->in_cap = need;
    return 0;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct conn *c = arg;
    /* Room for as many descriptors as one message can carry (SCM_MAX_FD): those that do
     * not fit would be released by the kernel on this thread, with what that costs. */
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(253 * sizeof(int))];
    } ctl;
    if (make_room(c) != 0) {
        conn_close(c);
        return;
    }
    if (c->in_len < c->in_cap) { /* (a full buffer holds whole frames: handle them first) */
        struct iovec iov = {.iov_base = c->in + c->in_len, .iov_len = c->in_cap - c->in_len};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                             .msg_controllen = sizeof ctl.buf};
        ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0 || take_rights(c, &msg) != 0) {
            conn_close(c);
            return;
        }
        c->in_len += (size_t)n;
    }
    process_input(c);
}

/* ---- listening --------------------------------------------------------------------------- */

static void on_accept_pause(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (listen_ev)
        event_add(listen_ev, NULL);
}

/* The oldest connection that has sent nothing yet (the list is newest first), or NULL. */
static struct conn *oldest_idle(void)
{
    struct conn *found = NULL;
    for (struct conn *c = conns; c; c = c->next)
        if (!c->proc && c->frames == 0 && c->in_len == 0 && !c->finishing && !c->broken)
            found = c;
    return found;
}

/* Whether a new peer of this uid may connect; may close the oldest connection that has
 * sent nothing yet to make room. */
static int admit(uid_t uid)
{
    /* Descriptors of this uid still being closed hold slots too (closer.h). */
    size_t mine = closer_pending(uid), all = mine;
    for (struct conn *c = conns; c; c = c->next) {
        if (c->uid != uid)
            continue;
        all++;
        if (!c->proc)
            mine++;
    }
    if (uid != 0 && (mine >= UID_MAX_UNREGISTERED || all >= server_uid_share()))
        return 0;
    if (uid != 0 && nconns + conn_reserve >= max_conns)
        return 0;
    if (nconns < max_conns)
        return 1;
    struct conn *victim = oldest_idle();
    if (!victim)
        return 0;
    conn_close(victim);
    return 1;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    (void)arg;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* The pending peer stays in the backlog and the listening socket stays
             * readable: stop watching it for a moment rather than spin. */
            struct timeval tv = {.tv_usec = ACCEPT_PAUSE_USEC};
            static double last_log;
            double now = (double)time(NULL);
            if (now - last_log >= 60) {
                meshd_log("cannot accept: %s (%zu connections); pausing", strerror(errno),
                          nconns);
                last_log = now;
            }
            /* Make room for the next one if an idle connection holds a descriptor. */
            struct conn *victim = oldest_idle();
            if (victim)
                conn_close(victim);
            event_del(listen_ev);
            evtimer_add(accept_pause_ev, &tv);
        }
        return;
    }
    struct ucred cred;
    socklen_t len = sizeof cred;
    struct conn *c = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || !admit(cred.uid) ||
        !(c = calloc(1, sizeof *c))) {
        close(fd);
        return;
    }
    c->id = ++last_conn_id;
    c->fd = fd;
    c->pid = cred.pid;
    c->uid = cred.uid;
    c->passed_fd = -1;
    c->rev = event_new(loop, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wev = event_new(loop, fd, EV_WRITE | EV_PERSIST, on_write, c);
    c->more = evtimer_new(loop, on_more, c);
    c->idle = evtimer_new(loop, on_idle, c);
    if (!c->rev || !c->wev || !c->more || !c->idle || event_add(c->rev, NULL) != 0) {
        if (c->rev)
            event_free(c->rev);
        if (c->wev)
            event_free(c->wev);
        if (c->more)
            event_free(c->more);
        if (c->idle)
            event_free(c->idle);
        free(c);
        close(fd);
        return;
    }
    arm_idle(c, IDLE_SECONDS);
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    nconns++;
}

size_t server_uid_share(void)
{
    size_t share = max_conns / UID_SHARE_DIVISOR;
    return share ? share : 1;
}

/* Raises the soft descriptor limit to the hard one and sizes the connection limit by it. */
static void size_limits(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl = want;
    }
    rlim_t fds = rl.rlim_cur;
    rlim_t avail = fds > 2 * FD_RESERVE ? fds - FD_RESERVE : fds / 2;
    rlim_t n = avail / 3; /* a shim holds three descriptors: socket, table, pidfd */
    if (n > MAX_CONNS_CAP)
        n = MAX_CONNS_CAP;
    if (n < 4)
        n = 4;
    max_conns = (size_t)n;
    conn_reserve = max_conns / 4 < CONN_RESERVE ? max_conns / 4 : CONN_RESERVE;
    meshd_log("up to %zu connections (descriptor limit %llu)", max_conns,
              (unsigned long long)fds);
}

/* A socket file left by a meshd that died is removed; one that still answers belongs to a
 * running meshd, and two daemons on one socket would split the processes between them. */
static int clear_stale(const char *path, const struct sockaddr_un *sa)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISSOCK(st.st_mode)) {
        meshd_log("%s exists and is not a socket", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int live = connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0;
    close(fd);
    if (live) {
        meshd_log("another meshd is listening on %s", path);
        return -1;
    }
    return unlink(path);
}

static void make_parent_dir(const char *path)
{
    char dir[sizeof listen_path];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0755) == 0)
            meshd_log("created %s", dir);
    }
}

int server_listen(struct event_base *base, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        meshd_log("socket path too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    make_parent_dir(path);
    if (clear_stale(path, &sa) != 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        meshd_log("cannot bind %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    strcpy(listen_path, path);
    /* Anyone may connect: what a peer may do is decided by its SO_PEERCRED identity. */
    if (chmod(path, 0666) != 0 || listen(fd, 128) != 0) {
        meshd_log("cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    if (server_listen_fd(base, fd) != 0)
        return -1;
    meshd_log("listening on %s", path);
    return 0;
}

int server_listen_fd(struct event_base *base, int fd)
{
    loop = base;
    listen_fd = fd;
    size_limits();
    listen_ev = event_new(base, fd, EV_READ | EV_PERSIST, on_accept, NULL);
    accept_pause_ev = evtimer_new(base, on_accept_pause, NULL);
    if (!listen_ev || !accept_pause_ev || event_add(listen_ev, NULL) != 0) {
        meshd_log("cannot watch the listening socket");
        server_shutdown();
        return -1;
    }
    return 0;
}

void server_shutdown(void)
{
    while (conns)
        conn_close(conns);
    if (listen_ev)
        event_free(listen_ev);
    listen_ev = NULL;
    if (accept_pause_ev)
        event_free(accept_pause_ev);
    accept_pause_ev = NULL;
    if (listen_fd >= 0) {
        close(listen_fd);
        if (listen_path[0])
            unlink(listen_path);
    }
    listen_fd = -1;
    listen_path[0] = '\0';
}
