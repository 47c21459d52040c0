/*
 * control.c: the shim's control thread, its only link to meshd.
 *
 * It connects to $MESHD_SOCKET (else /run/meshd/meshd.sock as root, else
 * $XDG_RUNTIME_DIR/meshd.sock), accepts the daemon only if the socket's peer is root or
 * this process's uid (SO_PEERCRED), registers by sending a fresh span-table memfd with
 * SCM_RIGHTS (closed once sent), then executes MeshRequests with the meshing engine and answers each with a
 * MeshReply.  When meshd is absent, dies or restarts, it retries with backoff; the program
 * never notices.  Nothing here allocates from the heap: frames are packed into and read
 * from static buffers, and unpacked with a bump allocator over a static arena.  The
 * thread blocks every signal, and sends with MSG_NOSIGNAL: no SIGPIPE, ever.
 * MESH_NO_MESHD=1 turns the thread off.
 *
 * The thread can be stopped and joined (mesh_control_pause): glibc applies set*id to every
 * thread of the process, and aborts the process if one of them fails, which the shim's
 * thread would (it lacks what the caller kept: PR_SET_KEEPCAPS, capabilities).  So it
 * never blocks where a pause cannot reach it: the socket is shut down to wake recv/send,
 * its sleeps are condition waits, connect does not wait for a full backlog, and recv and
 * send time out (SOCKET_TIMEOUT_S) in case the program replaced the socket's number while
 * the thread waited on it, leaving nothing to shut down.
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "barrier.h"
#include "fdutil.h"
#include "frame.h"
#include "global_heap.h"
#include "init.h"
#include "mesh.h"
#include "mesh_engine.h"
#include "pressure.h"
#include "report.h"
#include "sandbox.h"
#include "socket_path.h"
#include "span_table.h"

#define MAX_PAIRS 4096u
#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 10000u
#define SOCKET_TIMEOUT_S 5

/* The connection to meshd (fd -1: none), high and identity-checked (fdutil.h): every send
 * and receive first checks that the number is still our socket; if the program closed or
 * replaced it, we drop it without touching the number and reconnect on a fresh one. */
static struct mesh_fd conn = {.fd = -1};
static uint8_t in_buf[MESH_FRAME_HEADER + MESH_FRAME_MAX];
static size_t in_len;
static uint8_t out_buf[64 << 10];

/* ---- a bump allocator for protobuf-c, reset after every message ---------------------- */

static uint8_t unpack_arena[4 << 20];
static size_t unpack_used;

static void *bump_alloc(void *data, size_t size)
{
    (void)data;
    size = (size + 15) & ~(size_t)15;
    if (size > sizeof unpack_arena - unpack_used)
        return NULL; /* protobuf-c then fails the unpack: treated as a malformed frame */
    void *p = unpack_arena + unpack_used;
    unpack_used += size;
    return p;
}

static void bump_free(void *data, void *p) { (void)data, (void)p; }

static ProtobufCAllocator bump = {.alloc = bump_alloc, .free = bump_free, .allocator_data = NULL};

/* ---- the thread's life ----------------------------------------------------------------
 *
 * life_lock guards:
 *   thread_live  a thread was created and has not been joined yet
 *   starting     a slow path is creating the thread, without the lock (pthread_create
 *                makes system calls); pauses wait on life_wake until it is done
 *   joining      a pause is joining it (others wait on life_wake for thread_live == 0)
 *   paused       pauses in progress: while > 0 no thread starts
 *   restart      a pause stopped a running thread: the last resume re-arms the start
 *   deferred_before_pause  mesh_control_deferred as the first pause found it
 *   conn.fd      assigned and dropped under it, so a pause that shuts it down never races
 *                its assignment
 *   thread_tid   the thread's tid, recorded by the thread itself
 * stopping is set under it and read without it by the thread between blocking calls.
 * life_wake is broadcast when stopping is set and when a joined thread is gone.
 */
static pthread_mutex_t life_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t life_wake = PTHREAD_COND_INITIALIZER;
static pthread_t thread;
static pid_t thread_tid; /* its kernel tid, 0 until it has run */
static int thread_live, starting, joining, paused, restart, deferred_before_pause;
static _Atomic int stopping;
/* Bumped when the process's real uid changed under a running thread: a registration made
 * on a connection older than the bump carries the old uid and is made again. */
static _Atomic unsigned owner_generation;

static int stop_requested(void) { return atomic_load_explicit(&stopping, memory_order_acquire); }

/* ---- freed pages: by age, and at once under memory pressure -------------------------
 *
 * Between its blocking calls, holding no lock, the thread looks after the dirty pages the
 * heap keeps for reuse (arena.c) and the emptied spans it keeps (global_heap.h): it lets
 * go of those that have aged (mesh_global_empty_poll, mesh_arena_poll), and under memory
 * pressure (pressure.h) all of them, aged or not, as malloc_trim and a meshd round do.
 * While it holds at least PRESSURE_MIN_DIRTY_PAGES, or any kept span, it wakes at least
 * every PRESSURE_PERIOD_MS for that (idle_wait, read_frame), and reads the pressure at most
 * that often; with less, it neither wakes nor reads.
 */
#define PRESSURE_PERIOD_MS       1000u
#define PRESSURE_MIN_DIRTY_PAGES 256u /* 1 MiB: less is not worth a look */

static int holding_dirty(void)
{
    struct mesh_arena_stats a;
    mesh_arena_stats(&a);
    /* Kept empty spans (global_heap.h) too: only a tick lets them go. */
    return a.dirty_pages >= PRESSURE_MIN_DIRTY_PAGES || mesh_global_empty_pages() != 0;
}

static void tend_dirty_pages(void)
{
    static uint32_t last_read_ms;
    static int read_once;
    mesh_global_empty_poll();
    mesh_arena_poll();
    uint32_t now = mesh_arena_clock_ms();
    if ((read_once && now - last_read_ms < PRESSURE_PERIOD_MS) || !holding_dirty())
        return;
    read_once = 1;
    last_read_ms = now;
    if (mesh_memory_pressed(conn.fd >= 0))
        mesh_global_trim(0);
}

/* ---- the program's last thread -------------------------------------------------------
 *
 * A program whose last thread ends with pthread_exit() (main leaving through it, workers
 * finishing later) is exited by glibc in that last thread: exit(0), atexit handlers run,
 * stdio flushed.  glibc counts this thread among the program's, so without help the process
 * would stay a zombie leader with this thread sleeping for ever, deaf to SIGTERM (it blocks
 * every signal).  So this thread does what glibc would have done, once it is sure:
 *   leader_exiting  set by the leader's exit hook (mesh_control_note_thread_exit, from the
 *                   thread heap's key destructor: glibc runs destructors only when a
 *                   thread ends, and in the leader only for pthread_exit), cleared in a
 *                   fork child (its leader is the forking thread)
 *   the leader has exited  readlink of its /proc/self/task/<pid>/exe fails with ENOENT
 *                   (the kernel dropped its mm: past every instruction of the program's)
 *   alone           /proc/self/task has 2 + 2 links: the exited leader, counted until the
 *                   process ends, and this thread; no thread of the program's, and no
 *                   other of ours (a cow thread running keeps it waiting for its end)
 * The looks open no descriptor (stat and readlink take paths): a descriptor opened by a
 * thread of ours, even briefly, can take the number a program is about to dup2() over (an
 * earlier version closed CPython's restored stdout that way).  Nothing is looked at
 * until the leader's hook ran, then every LONE_CHECK_MS.  Where the threads cannot be
 * seen (no /proc: a chroot, a mount namespace; or a seccomp filter installed since), this
 * thread ends for good instead, once the leader's hook ran: the process then ends with the
 * program's last thread, by glibc's count, and is not compacted meanwhile.
 */
#define LONE_CHECK_MS 100u

static _Atomic int leader_exiting;

void mesh_control_note_thread_exit(void)
{
    if (gettid() != mesh_heap_pid) /* the leader's tid is the pid (set-up's, or fork's) */
        return;
    atomic_store_explicit(&leader_exiting, 1, memory_order_release);
    /* Wakes an idle sleep; a destructor that cannot have the lock at once leaves it to the
     * next wake (at most SOCKET_TIMEOUT_S). */
    if (pthread_mutex_trylock(&life_lock) == 0) {
        pthread_cond_broadcast(&life_wake);
        pthread_mutex_unlock(&life_lock);
    }
}

static int leader_gone_flagged(void) { return atomic_load_explicit(&leader_exiting, memory_order_acquire); }

/* 1 if the program has no thread left (this one alone with the exited leader), 0 if it
 * has, -1 if the threads cannot be seen: no /proc (a chroot, a mount namespace), or a
 * seccomp filter, which might kill for stat or readlink.  Asking about the filter now
 * would open the status file; what set-up, fork or the interposed prctl/seccomp calls saw
 * is taken instead (a filter installed by an inline system call is not seen). */
static int program_threads_gone(void)
{
    if (mesh_sandbox_filtered_seen())
        return -1;
    int saved = errno, gone = -1;
    struct stat task;
    if (stat("/proc/self/task", &task) == 0) {
        gone = 0;
        if (task.st_nlink == 2 + 2) {
            struct mesh_line leader_exe = {.len = 0}; /* its buffer keeps a byte for the '\0' */
            mesh_line_str(&leader_exe, "/proc/self/task/");
            mesh_line_u64(&leader_exe, (uint64_t)mesh_heap_pid);
            mesh_line_str(&leader_exe, "/exe");
            leader_exe.buf[leader_exe.len] = '\0';
            char target[8];
            gone = readlink(leader_exe.buf, target, sizeof target) < 0 && errno == ENOENT;
        }
    }
    errno = saved;
    return gone;
}

/* Set when the leader has exited and the threads cannot be seen: this thread has ended for
 * good (control_off), so that glibc's own count of threads ends the process with the
 * program's last thread, as it would without us.  Cleared in a fork child. */
static _Atomic int retired;

/* Called whenever the thread wakes; returns only while the program has a thread left (or
 * could have: then the thread stops, never to start again). */
static void exit_if_program_gone(void)
{
    if (!leader_gone_flagged())
        return;
    int gone = program_threads_gone();
    if (gone > 0)
        exit(0); /* what glibc does in a process's last thread */
    if (gone < 0) {
        pthread_mutex_lock(&life_lock);
        atomic_store(&retired, 1);
        atomic_store_explicit(&stopping, 1, memory_order_release);
        pthread_mutex_unlock(&life_lock);
    }
}

/* ---- the connection ----------------------------------------------------------------- */

/* The socket is taken out under life_lock and closed without it (no system call under the
 * lock): from then on a pause finds no socket to shut down, and the thread that calls this
 * is the control thread itself (or a fork child), so nothing is blocked on it. */
static void disconnect(void)
{
    pthread_mutex_lock(&life_lock);
    struct mesh_fd old = conn;
    conn = MESH_FD_NONE;
    pthread_mutex_unlock(&life_lock);
    mesh_fd_drop(&old);
    mesh_sandbox_release_kept(); /* held only while registered */
    mesh_pressure_release_kept();
    in_len = 0;
}

static int send_all(const uint8_t *buf, size_t len)
{
    while (len) {
        if (!mesh_fd_owned(&conn))
            return -1;
        ssize_t n = send(conn.fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue; /* a timeout (EAGAIN) fails: a meshd that reads nothing for that long is stuck */
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Only root or our own uid may drive our heap. */
static int peer_trusted(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return 0;
    return cred.uid == 0 || cred.uid == geteuid();
}

/* Where meshd is, decided once when the heap is set up (arm): a daemon started as root
 * that drops to its own user keeps talking to the system meshd. */
static char socket_path[sizeof ((struct sockaddr_un *)0)->sun_path];
static int socket_path_known;

static int connect_meshd(void)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (!socket_path_known)
        return -1;
    memcpy(addr.sun_path, socket_path, sizeof addr.sun_path);
    /* No socket while nobody listens: until it is moved high, a new descriptor sits on the
     * lowest free number, one the program may be using (fdutil.h), so the retries of a shim
     * without meshd must not make one each time. */
    if (addr.sun_path[0] != '\0' && access(addr.sun_path, F_OK) != 0)
        return -1;
    struct mesh_fd fd;
    if (mesh_fd_adopt(&fd, socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) != 0)
        return -1;
    /* Non-blocking: a full backlog fails at once (EAGAIN) instead of holding a pause. */
    struct timeval timeout = {.tv_sec = SOCKET_TIMEOUT_S};
    if (connect(fd.fd, (struct sockaddr *)&addr, sizeof addr) != 0 || !peer_trusted(fd.fd) ||
        fcntl(fd.fd, F_SETFL, 0) != 0 ||
        setsockopt(fd.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0 ||
        setsockopt(fd.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout) != 0) {
        mesh_fd_drop(&fd);
        return -1;
    }
    pthread_mutex_lock(&life_lock);
    int stop = stop_requested();
    if (!stop)
        conn = fd;
    pthread_mutex_unlock(&life_lock);
    if (stop)
        mesh_fd_drop(&fd);
    return stop ? -1 : 0;
}

/* The name the program was started as, as ps and top know it: glibc's
 * program_invocation_short_name (argv[0] after its last '/'), copied into name (at most
 * cap - 1 bytes, NUL-terminated).  No descriptor and no allocation: /proc/self/comm would
 * need a file descriptor on a number the program may be using, and the control thread's
 * own comm (PR_GET_NAME) is whatever the thread that created it was called.  A program that
 * rewrites argv in place (setproctitle) may be read mid-change: the copy is bounded, and
 * meshd only shows what it gets, cleaned. */
static void invocation_name(char *name, size_t cap)
{
    const char *s = program_invocation_short_name;
    size_t i = 0;
    for (; s && s[i] && i + 1 < cap; i++)
        name[i] = s[i];
    name[i] = '\0';
}

/* Register{exe, table_bytes, name} with the span-table memfd in the same sendmsg.  The memfd
 * is made for this registration (mesh_span_table_publish) and closed right after the send:
 * meshd holds its own reference, and the shim keeps no descriptor but the socket. */
static int send_register(void)
{
    static char exe[4096];
    static char name[256];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    invocation_name(name, sizeof name);
    Mesh__Register reg = MESH__REGISTER__INIT;
    reg.exe = exe;
    reg.name = name;
    reg.table_bytes = (uint32_t)mesh_table_bytes(mesh_spans.header->max_records);
    Mesh__Envelope env = MESH__ENVELOPE__INIT;
    env.body_case = MESH__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    size_t len = mesh_frame_pack(&env, out_buf, sizeof out_buf);
    if (!len)
        return -1;
    struct mesh_fd table;
    if (mesh_span_table_publish(&table) != 0)
        return -1;
    /* Both numbers are checked first: one the program closed or replaced is never sent. */
    if (!mesh_fd_owned(&table) || !mesh_fd_owned(&conn)) {
        mesh_fd_drop(&table);
        return -1;
    }
    int fd = table.fd;
    struct iovec iov = {.iov_base = out_buf, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    ssize_t sent;
    do
        sent = sendmsg(conn.fd, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    mesh_fd_drop(&table); /* in flight, the message holds its own reference */
    if (sent < 0)
        return -1;
    return (size_t)sent == len ? 0 : send_all(out_buf + sent, len - (size_t)sent);
}

/* Blocks until one whole frame is in in_buf; returns its length, or 0 on EOF/error. */
static size_t read_frame(void)
{
    for (;;) {
        size_t frame_len;
        int st = mesh_frame_check(in_buf, in_len, &frame_len);
        if (st == MESH_FRAME_READY)
            return frame_len;
        if (st == MESH_FRAME_BAD)
            return 0;
        if (!mesh_fd_owned(&conn))
            return 0;
        int lone_watch = leader_gone_flagged();
        if (lone_watch || holding_dirty()) {
            /* Wake at least once a period to look after them (and the program's last
             * thread); a shutdown by a pause wakes poll as it wakes recv. */
            struct pollfd pfd = {.fd = conn.fd, .events = POLLIN};
            int ready = poll(&pfd, 1, (int)(lone_watch ? LONE_CHECK_MS : PRESSURE_PERIOD_MS));
            if (ready <= 0) {
                if (stop_requested())
                    return 0;
                tend_dirty_pages();
                exit_if_program_gone();
                continue; /* and look again whether the number is still ours */
            }
        }
        ssize_t n = recv(conn.fd, in_buf + in_len, sizeof in_buf - in_len, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN) && !stop_requested()) {
            exit_if_program_gone();
            continue; /* a timeout: look again whether the number is still ours */
        }
        if (n <= 0)
            return 0;
        in_len += (size_t)n;
    }
}

static void consume(size_t frame_len)
{
    memmove(in_buf, in_buf + frame_len, in_len - frame_len);
    in_len -= frame_len;
}

/* ---- requests ------------------------------------------------------------------------ */

/* Punching freed pages that are still mapped flushes the TLB of every CPU running the
 * program's threads: Redis after deleting most of its keys kept ~100 MiB dirty, and the
 * first request's whole trim took 370-450 ms of the control thread, interrupting Redis's
 * CPU all along (its requests at 2,000 a second saw it).  The rest goes back with the next
 * requests' trims, or by age (arena.c). */
#define BACKGROUND_TRIM_NS 1000000u

/*
 * Whether a request's trim is due.  A round is meant for a quiet heap, whose freed pages
 * nobody is about to reuse: they go back with the round.  But meshd also compacts a program
 * that is serving (a background round uses a spare CPU), and there even the bounded trims
 * added up: one after each request of a round, thousands of one- and two-page punches
 * (Redis at 2,000 requests a second: 4,015 punches, 315 ms, in one round), and Redis's
 * replies over 0.4 ms came with them: 66-105 a run, against 2-17 without those trims
 * (docs/BENCHMARKS-FRAG.md).  So a background request trims only if the program's other
 * threads used less than BUSY_PERCENT of a CPU since the last look; otherwise its freed
 * pages go back by age, as they do between rounds (arena.c).  Neither the program's
 * allocations nor its frees tell (Redis's are met from its thread caches and free lists),
 * its CPU time does.  Any other request trims.
 *   cpu_seen, at_seen == the other threads' CPU time and the clock at the previous
 *   background request's call (0 before the first: due)
 */
#define BUSY_PERCENT 1u

static uint64_t timeval_ns(struct timeval t)
{
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_usec * 1000u;
}

/* CPU time of the process's threads but the caller (*others) and of the caller (*mine),
 * ns; 0 if it cannot be read, or may not be asked: getrusage is no call of glibc malloc's,
 * and a seccomp filter the program installed since set-up might kill for it (sandbox.h).
 * Asked for every meshd request and reply, so the look reads the kept status file: one
 * opened each time sat at the lowest free number hundreds of times a second. */
static void cpu_ns(uint64_t *others, uint64_t *mine)
{
    struct rusage all, self;
    *others = *mine = 0;
    if (mesh_sandbox_filtered_kept())
        return;
    if (getrusage(RUSAGE_SELF, &all) != 0 || getrusage(RUSAGE_THREAD, &self) != 0)
        return;
    uint64_t a = timeval_ns(all.ru_utime) + timeval_ns(all.ru_stime);
    *mine = timeval_ns(self.ru_utime) + timeval_ns(self.ru_stime);
    *others = a > *mine ? a - *mine : 0;
}

static uint64_t others_cpu_ns(void)
{
    uint64_t others, mine;
    cpu_ns(&others, &mine);
    return others;
}

int mesh_control_trim_due(int background)
{
    static uint64_t cpu_seen, at_seen;
    if (!background)
        return 1;
    uint64_t cpu = others_cpu_ns(), at = mesh_now_ns();
    int busy = at_seen && cpu > cpu_seen && (cpu - cpu_seen) * 100u > (at - at_seen) * BUSY_PERCENT;
    cpu_seen = cpu;
    at_seen = at;
    return !busy;
}

static int answer_mesh(const Mesh__MeshRequest *req)
{
    static uint32_t pairs[2 * MAX_PAIRS];
    static int reasons[MAX_PAIRS];
    uint32_t n = 0;
    if (req->n_dst == req->n_src)
        for (; n < req->n_dst && n < MAX_PAIRS; n++) {
            pairs[2 * n] = req->dst[n];
            pairs[2 * n + 1] = req->src[n];
        }
    const struct mesh_span_table_counters *c = &mesh_spans.header->counters;
    uint64_t released0 = __atomic_load_n(&c->mesh_released_pages, __ATOMIC_RELAXED);
    uint64_t barrier0 = __atomic_load_n(&c->barrier_ns_total, __ATOMIC_RELAXED);
    static struct mesh_holds holds;
    /* Every request of meshd's idles between pairs (mesh_engine.c, "Scheduling"); its
     * background flag says how to trim (mesh_control_trim_due). */
    size_t meshed = mesh_engine_mesh(pairs, n, reasons, &holds, MESH_ENGINE_BACKGROUND);
    /* The freed pages kept for reuse (arena.c) go back now too, aged or not, unless the
     * program is busy with them (mesh_control_trim_due).  Not in released_bytes, which is
     * what meshing released.  A background request (the program may be serving while
     * meshd uses the idle CPU) punches for BACKGROUND_TRIM_NS at most. */
    if (n && mesh_control_trim_due(req->background))
        mesh_global_trim(req->background ? BACKGROUND_TRIM_NS : 0);
    else if (n)
        tend_dirty_pages(); /* what has aged, as between requests */
    uint32_t by_reason[MESH_REJECT_REASONS] = {0};
    for (uint32_t i = 0; i < n; i++)
        if (reasons[i] >= 0 && reasons[i] < (int)MESH_REJECT_REASONS)
            by_reason[reasons[i]]++;
    Mesh__MeshReply reply = MESH__MESH_REPLY__INIT;
    reply.request_id = req->request_id;
    reply.meshed = (uint32_t)meshed;
    reply.n_rejected_by_reason = MESH_REJECT_REASONS;
    reply.rejected_by_reason = by_reason;
    reply.released_bytes = (__atomic_load_n(&c->mesh_released_pages, __ATOMIC_RELAXED) - released0) *
                           MESH_PAGE_SIZE;
    reply.barrier_ns_total = __atomic_load_n(&c->barrier_ns_total, __ATOMIC_RELAXED) - barrier0;
    reply.barrier_ns_max = __atomic_load_n(&c->barrier_ns_max, __ATOMIC_RELAXED);
    reply.holds = holds.count;
    reply.n_hold_us_log2 = MESH_HOLD_BUCKETS;
    reply.hold_us_log2 = holds.us_log2;
    reply.holds_over_1ms = holds.over_1ms;
    cpu_ns(&reply.program_cpu_ns, &reply.mesher_cpu_ns);
    const char *refused = mesh_mesh_refusal();
    if (refused)
        reply.refused = (char *)refused; /* packed, never written through */
    Mesh__Envelope env = MESH__ENVELOPE__INIT;
    env.body_case = MESH__ENVELOPE__BODY_MESH_REPLY;
    env.mesh_reply = &reply;
    size_t len = mesh_frame_pack(&env, out_buf, sizeof out_buf);
    return len ? send_all(out_buf, len) : -1;
}

/* Unpacks and acts on the whole frame of frame_len bytes at the start of in_buf, then drops
 * it from in_buf: 0 to go on serving, -1 to drop the connection.  (tests/fuzz drives this.) */
static int serve_frame(size_t frame_len)
{
    int bad_version;
    unpack_used = 0;
    Mesh__Envelope *env = mesh_frame_unpack(in_buf, frame_len, &bump, &bad_version);
    consume(frame_len);
    if (!env)
        return -1; /* malformed or another protocol version: drop, reconnect later */
    if (env->body_case == MESH__ENVELOPE__BODY_MESH_REQUEST)
        return answer_mesh(env->mesh_request);
    if (env->body_case == MESH__ENVELOPE__BODY_REGISTER_REPLY && !env->register_reply->accepted)
        return -1;
    return 0;
}

/* Serves one registered connection until it fails. */
static void serve(void)
{
    for (;;) {
        size_t frame_len = read_frame();
        if (!frame_len || serve_frame(frame_len) != 0)
            return;
    }
}

/* Sleeps ms, or less if a pause asks the thread to stop or the program's leader exits. */
static void sleep_ms(unsigned ms)
{
    struct timespec until = mesh_timespec_of_ns(mesh_now_ns() + (uint64_t)ms * 1000000u);
    int lone_watch = leader_gone_flagged();
    pthread_mutex_lock(&life_lock);
    while (!stop_requested() && leader_gone_flagged() == lone_watch &&
           pthread_cond_clockwait(&life_wake, &life_lock, CLOCK_MONOTONIC, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&life_lock);
}

/* Sleeps ms (less if a pause asks the thread to stop), looking after the dirty pages
 * before and, while it holds them, at least every PRESSURE_PERIOD_MS meanwhile. */
static void idle_wait(unsigned ms)
{
    uint32_t start = mesh_arena_clock_ms();
    for (;;) {
        tend_dirty_pages();
        uint32_t spent = mesh_arena_clock_ms() - start;
        if (spent >= ms || stop_requested())
            return;
        unsigned slice = ms - spent;
        if (slice > PRESSURE_PERIOD_MS && holding_dirty())
            slice = PRESSURE_PERIOD_MS;
        if (slice > LONE_CHECK_MS && leader_gone_flagged())
            slice = LONE_CHECK_MS;
        sleep_ms(slice);
        exit_if_program_gone();
    }
}

static void *control_main(void *arg)
{
    (void)arg;
    pid_t tid = gettid(); /* a system call: not under the lock */
    pthread_mutex_lock(&life_lock);
    thread_tid = tid;
    pthread_mutex_unlock(&life_lock);
    unsigned backoff = BACKOFF_MIN_MS;
    /* A table that can never be published (no seal, a seccomp filter): stop for good. */
    while (mesh_spans.publishable && !stop_requested()) {
        unsigned generation = atomic_load(&owner_generation);
        if (connect_meshd() == 0 && send_register() == 0) {
            backoff = BACKOFF_MIN_MS;
            if (generation == atomic_load(&owner_generation))
                serve(); /* else registered under the old owner: again, at once */
            else
                backoff = 0;
        }
        disconnect();
        if (stop_requested())
            break;
        /* No meshd to send rounds: while it waits, the thread returns aged pages of a
         * program that has gone idle, and all of them under memory pressure. */
        idle_wait(backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff ? backoff * 2 : BACKOFF_MIN_MS;
    }
    return NULL;
}

/* MESH_NO_MESHD=1, no memfd arena to share, or a seccomp filter (which may kill for the
 * thread's clone, or for any call it makes; sandbox.h): no thread, ever. */
static int control_off(void)
{
    const char *off = getenv("MESH_NO_MESHD");
    return (off && *off && strcmp(off, "0") != 0) || !mesh_spans.publishable || !mesh_arena.window ||
           mesh_sandbox_filtered_seen() || atomic_load(&retired);
}

/* Without life_lock (the caller set `starting` under it): pthread_create maps the stack
 * and clones, and no lock is held across system calls.  Joinable, so that a pause knows
 * when it is gone for good.  1 if the thread runs, with its handle in *out. */
static int create_thread(pthread_t *out)
{
    pthread_attr_t attr;
    sigset_t all, old;
    if (pthread_attr_init(&attr) != 0)
        return 0;
    pthread_attr_setstacksize(&attr, 64 << 10);
    /* The thread inherits this mask: signals stay with the program's own threads. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int ok = pthread_create(out, &attr, control_main, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return ok;
}

/*
 * No thread until one is useful.  A thread makes the process multithreaded, and a
 * multithreaded process cannot unshare(CLONE_NEWUSER) (unshare -U, bwrap, flatpak,
 * rootless podman, Chromium's sandbox all fail with EINVAL), and a fork child that is
 * not single-threaded until it execs breaks programs (xargs's dup2 failed with EBUSY
 * racing our socket()).  So the thread is only armed: the allocation slow paths (where no
 * allocator lock is held) start it once
 *   - CONTROL_DELAY_S have passed since the heap was set up or since fork, or
 *   - (not in a fork child) the arena holds CONTROL_HEAP_MIN bytes: a heap worth meshing.
 * Short programs, and fork children that exec soon, never get one.  A program that stops
 * allocating before either happens is not registered until its next slow path.
 * Tests only: MESH_TEST_CONTROL_DELAY_MS replaces the delay (0: the first slow path after
 * set-up starts it), so that a short program has the thread when a test needs it there.
 */
#define CONTROL_DELAY_S  1
#define CONTROL_HEAP_MIN (16u << 20)

_Atomic int mesh_control_deferred;
static struct timespec start_at;
static int heap_trigger; /* 0 in a fork child: only the delay counts there */

static void arm(int by_heap_size)
{
    if (control_off()) {
        atomic_store(&mesh_control_deferred, 0); /* the slow paths never look at the clock */
        return;
    }
    if (by_heap_size) /* set-up, not a fork child: the child keeps the parent's choice */
        socket_path_known = meshd_default_socket(socket_path, sizeof socket_path) == 0;
    static long delay_ms = -1;
    if (delay_ms < 0) {
        const char *test = getenv("MESH_TEST_CONTROL_DELAY_MS");
        delay_ms = test && *test ? strtol(test, NULL, 10) : CONTROL_DELAY_S * 1000L;
        delay_ms = delay_ms < 0 ? 0 : delay_ms;
    }
    start_at = mesh_timespec_of_ns(mesh_now_ns() + (uint64_t)delay_ms * 1000000u);
    heap_trigger = by_heap_size;
    atomic_store(&mesh_control_deferred, 1);
}

void mesh_control_arm(void) { arm(1); }

void mesh_control_after_fork_child(void)
{
    /* Single-threaded: whatever the parent's threads held or did is not the child's.  The
     * parent's thread and its connection did not come along. */
    life_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    life_wake = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
    thread_live = starting = joining = paused = restart = deferred_before_pause = 0;
    thread_tid = 0;
    atomic_store(&stopping, 0);
    atomic_store(&leader_exiting, 0); /* the child's leader is the thread that forked */
    atomic_store(&retired, 0);
    disconnect();
    arm(0);
}

static int start_due(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > start_at.tv_sec ||
        (now.tv_sec == start_at.tv_sec && now.tv_nsec >= start_at.tv_nsec))
        return 1;
    /* The heap size costs the arena lock: look at it on every 64th poll only. */
    static _Atomic unsigned polls;
    unsigned n = atomic_load_explicit(&polls, memory_order_relaxed);
    atomic_store_explicit(&polls, n + 1, memory_order_relaxed);
    if (!heap_trigger || n % 64)
        return 0;
    struct mesh_arena_stats a;
    mesh_arena_stats(&a);
    return a.used_pages >= CONTROL_HEAP_MIN / MESH_PAGE_SIZE;
}

void mesh_control_start_deferred(void)
{
    /* A fork child that allocates in glibc's own fork-child code, before our atfork child
     * handler re-armed it, must not start a thread yet (nor with the parent's deadline). */
    if (!start_due() || getpid() != mesh_heap_pid)
        return;
    pthread_mutex_lock(&life_lock);
    /* deferred goes to 0 first: pthread_create allocates, and its slow paths come back here. */
    int expected = 1, go = !paused && !thread_live && !starting &&
                           atomic_compare_exchange_strong(&mesh_control_deferred, &expected, 0) &&
                           !control_off();
    starting = go;
    pthread_mutex_unlock(&life_lock);
    if (!go)
        return;
    pthread_t created;
    int ok = create_thread(&created);
    pthread_mutex_lock(&life_lock);
    starting = 0;
    thread_live = ok;
    if (ok)
        thread = created;
    pthread_cond_broadcast(&life_wake); /* a pause may be waiting for the start to finish */
    pthread_mutex_unlock(&life_lock);
}

/* ---- pauses: credential changes (credentials.c) -------------------------------------- */

/* 1 if the capability sets of the calling thread and of thread tid differ (or cannot be
 * read): then glibc's set*id broadcast might succeed in one and fail in the other. */
static int capabilities_differ(pid_t tid)
{
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct mine[2], its[2];
    if (tid <= 0 || syscall(SYS_capget, &header, mine) != 0)
        return 1;
    header = (struct __user_cap_header_struct){.version = _LINUX_CAPABILITY_VERSION_3, .pid = tid};
    if (syscall(SYS_capget, &header, its) != 0)
        return 1;
    return memcmp(mine, its, sizeof mine) != 0;
}

int mesh_control_pause(int always_stop)
{
    /* A vfork child shares our memory but not our threads: nothing of ours to stop. */
    if (getpid() != mesh_heap_pid)
        return 0;
    pthread_mutex_lock(&life_lock);
    if (paused++ == 0)
        deferred_before_pause = atomic_exchange(&mesh_control_deferred, 0);
    while (starting) /* a slow path is creating the thread: wait for its handle */
        pthread_cond_wait(&life_wake, &life_lock);
    while (thread_live) {
        /* Registered: meshd will send work after the change too.  The barrier is set up
         * before the change, while the process may still hold what a userfaultfd needs
         * (root); only with the thread gone, since the thread sets it up too. */
        int registered = conn.fd >= 0;
        if (joining) {
            pthread_cond_wait(&life_wake, &life_lock);
            continue;
        }
        /* The thread may stay when the change will do to it exactly what it does to the
         * caller: same capabilities (the ids are the process's), so the same verdict. */
        if (!always_stop && !capabilities_differ(thread_tid) && !(registered && !mesh_barrier_kind()))
            break;
        joining = 1;
        atomic_store_explicit(&stopping, 1, memory_order_release);
        /* Wakes a recv or send; a number the program took over is left alone (the
         * socket timeout wakes the thread then). */
        if (conn.fd >= 0 && mesh_fd_owned(&conn))
            shutdown(conn.fd, SHUT_RDWR);
        pthread_cond_broadcast(&life_wake);
        pthread_t stopped = thread;
        pthread_mutex_unlock(&life_lock);
        pthread_join(stopped, NULL);
        pthread_mutex_lock(&life_lock);
        thread_live = joining = 0;
        thread_tid = 0;
        atomic_store(&stopping, 0);
        restart = 1;
        if (registered)
            mesh_barrier_choose(); /* the thread is gone: nobody else sets it up now */
        pthread_cond_broadcast(&life_wake);
    }
    pthread_mutex_unlock(&life_lock);
    return 1;
}

void mesh_control_resume(int owner_changed)
{
    pthread_mutex_lock(&life_lock);
    if (owner_changed && thread_live) {
        /* It stayed through the change, registered under the old uid: it registers again
         * (meshd reads the uid off the connection). */
        atomic_fetch_add(&owner_generation, 1);
        if (conn.fd >= 0 && mesh_fd_owned(&conn))
            shutdown(conn.fd, SHUT_RDWR);
    }
    if (--paused == 0) {
        if (restart) {
            /* It was stopped: it comes back at a slow path CONTROL_DELAY_S later, with the
             * credentials the program has then. */
            restart = 0;
            clock_gettime(CLOCK_MONOTONIC, &start_at);
            start_at.tv_sec += CONTROL_DELAY_S;
            atomic_store(&mesh_control_deferred, !control_off());
        } else if (deferred_before_pause) {
            atomic_store(&mesh_control_deferred, 1);
        }
    }
    pthread_mutex_unlock(&life_lock);
}
