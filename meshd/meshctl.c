/*
 * meshctl.c: the command line for meshd.
 *
 *   meshctl [--socket PATH] ps [--json]      registered processes you may see, with their
 *                                            uid and user name
 *   meshctl [--socket PATH] stats PID [--json]   one process, with per-size-class numbers
 *   meshctl [--socket PATH] mesh PID         run a meshing round now and show its result
 *   meshctl [--socket PATH] map PID          a picture of the heap: span occupancy by class
 *   meshctl [--socket PATH] policy [KEY=VALUE...]  read meshd's policy, or set some (root)
 *
 * meshd decides what the caller may see from the socket's SO_PEERCRED: root sees every
 * process, anyone else only their own.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl_json.h"
#include "hold_stats.h"
#include "ctl_map.h"
#include "ctl_policy.h"
#include "ctl_user.h"
#include "frame.h"
#include "io_full.h"
#include "printable.h"
#include "socket_path.h"

/* A meshing round may take meshd up to 30 s to give up on; wait a little longer. */
#define REPLY_TIMEOUT_SECONDS 40

static const char *socket_path;

static void usage(FILE *f)
{
    fprintf(f, "usage: meshctl [--socket PATH] ps [--json]\n"
               "       meshctl [--socket PATH] stats PID [--json]\n"
               "       meshctl [--socket PATH] mesh PID\n"
               "       meshctl [--socket PATH] map PID\n"
               "       meshctl [--socket PATH] policy [KEY=VALUE...]\n"
               "\n"
               "  ps      registered processes you may see (root: all, others: their own)\n"
               "  stats   one process: heap, live bytes, meshes, per-size-class numbers\n"
               "  mesh    run a meshing round on the process now and show what it released\n"
               "  map     a picture of the process's heap: spans of each size class by how\n"
               "          full they are (a legend explains the shades)\n"
               "  policy  print meshd's policy settings as KEY=VALUE; with KEY=VALUE\n"
               "          arguments, set them first (root only; all or nothing)\n"
               "  --socket PATH  meshd's socket (default: $MESHD_SOCKET, else\n"
               "          /run/meshd/meshd.sock for root, else $XDG_RUNTIME_DIR/meshd.sock)\n");
}

static int connect_meshd(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (strlen(socket_path) >= sizeof sa.sun_path) {
        fprintf(stderr, "meshctl: cannot reach meshd at %s: path too long\n", socket_path);
        exit(1);
    }
    strcpy(sa.sun_path, socket_path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "meshctl: cannot reach meshd at %s: %s\n", socket_path, strerror(errno));
        exit(1);
    }
    struct timeval tv = {.tv_sec = REPLY_TIMEOUT_SECONDS};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static int io_all(int fd, uint8_t *buf, size_t len, int writing)
{
    size_t moved = writing ? mesh_io_full(fd, MESH_IO_SEND, buf, len, 0, MSG_NOSIGNAL)
                           : mesh_io_full(fd, MESH_IO_RECV, buf, len, 0, 0);
    return moved == len ? 0 : -1;
}

static void die_io(const char *what)
{
    fprintf(stderr, "meshctl: %s meshd at %s: %s\n", what, socket_path,
            errno ? strerror(errno) : "connection closed");
    exit(1);
}

/* Sends req and returns meshd's answer; exits with a message on any failure, including an
 * Error answer. */
static Mesh__Envelope *call(Mesh__Envelope *req)
{
    static uint8_t buf[MESH_FRAME_HEADER + MESH_FRAME_MAX];
    int fd = connect_meshd();
    size_t len = mesh_frame_pack(req, buf, sizeof buf);
    errno = 0;
    if (len == 0 || io_all(fd, buf, len, 1) != 0)
        die_io("cannot send to");
    if (io_all(fd, buf, MESH_FRAME_HEADER, 0) != 0)
        die_io("no reply from");
    size_t flen = mesh_frame_length(buf);
    if (flen == 0) {
        errno = EPROTO;
        die_io("bad reply from");
    }
    if (io_all(fd, buf + MESH_FRAME_HEADER, flen - MESH_FRAME_HEADER, 0) != 0)
        die_io("no reply from");
    close(fd);
    int bad_version;
    Mesh__Envelope *env = mesh_frame_unpack(buf, flen, NULL, &bad_version);
    if (!env) {
        fprintf(stderr, "meshctl: %s from meshd at %s\n",
                bad_version ? "reply of another protocol version" : "malformed reply",
                socket_path);
        exit(1);
    }
    if (env->body_case == MESH__ENVELOPE__BODY_ERROR) {
        const Mesh__Error *e = env->error;
        if (e->code == EPERM)
            fprintf(stderr, "meshctl: permission denied (%s)\n", e->message);
        else if (e->code == ESRCH)
            fprintf(stderr, "meshctl: no such registered process (%s)\n", e->message);
        else
            fprintf(stderr, "meshctl: meshd: %s\n", e->message);
        mesh__envelope__free_unpacked(env, NULL); /* every exit leaves nothing behind */
        exit(1);
    }
    return env;
}

static Mesh__Envelope *expect(Mesh__Envelope *env, Mesh__Envelope__BodyCase body)
{
    if (env->body_case != body) {
        fprintf(stderr, "meshctl: unexpected reply %d from meshd\n", (int)env->body_case);
        mesh__envelope__free_unpacked(env, NULL);
        exit(1);
    }
    return env;
}

static int32_t parse_pid(const char *s)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || *end || v <= 0 || v > INT32_MAX) {
        fprintf(stderr, "meshctl: not a pid: %s\n", s ? s : "(missing)");
        exit(2);
    }
    return (int32_t)v;
}

/* Printable in a terminal (meshd already cleans exe, but meshctl does not rely on it),
 * cut or padded to width columns; width < 0: as long as it is. */
static void print_exe(const char *s, int width)
{
    int n = 0;
    for (; s && *s && (width < 0 || n < width); s++, n++)
        putchar(printable_or_mark(*s));
    printf("%*s", width > n ? width - n : 0, "");
}

/* The columns ps prints before COMMAND: "%8s %10s %-12s %12s %12s %8s %12s ". */
#define PS_PREFIX_COLUMNS (8 + 1 + 10 + 1 + 12 + 1 + 12 + 1 + 12 + 1 + 8 + 1 + 12 + 1)

/* How many columns COMMAND may take: what is left of the terminal's width when stdout is
 * one (as ps and systemctl do), else no limit (-1): a pipe or a file gets whole names. */
static int command_columns(void)
{
    struct winsize ws;
    if (!isatty(STDOUT_FILENO) || ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0)
        return -1;
    return ws.ws_col > PS_PREFIX_COLUMNS ? ws.ws_col - PS_PREFIX_COLUMNS : 0;
}

/* name cut to at most columns (-1: whole), but never inside its first word: that is the
 * program's name (argv[0]'s last component), what the user looks for; a narrow terminal
 * wraps it rather than lose it. */
static void print_command(const char *name, int columns)
{
    int len = (int)strnlen(name, INT_MAX), word = (int)strcspn(name, " ");
    int keep = columns < 0 || len <= columns ? len : columns > word ? columns : word;
    print_exe(name, keep);
}

/* The name meshd sends (Register.name, or exe's last component); a meshd from before the
 * name field sends none, and then the exe stands in. */
static const char *command_name(const Mesh__ProcessStats *p)
{
    return p->name && *p->name ? p->name : p->exe;
}

static int cmd_ps(int json)
{
    Mesh__ListRequest lr = MESH__LIST_REQUEST__INIT;
    Mesh__Envelope req = MESH__ENVELOPE__INIT;
    req.body_case = MESH__ENVELOPE__BODY_LIST_REQUEST;
    req.list_request = &lr;
    Mesh__Envelope *env = expect(call(&req), MESH__ENVELOPE__BODY_PROCESS_LIST);
    const Mesh__ProcessList *l = env->process_list;
    if (json) {
        putchar('[');
        for (size_t i = 0; i < l->n_processes; i++) {
            fputs(i ? ",\n " : "", stdout);
            json_process(stdout, l->processes[i], 0);
        }
        puts("]");
    } else {
        int columns = command_columns();
        printf("%8s %10s %-12s %12s %12s %8s %12s %s\n", "PID", "UID", "USER", "HEAP_KIB",
               "LIVE_KIB", "MESHES", "RELEASED_KIB", "COMMAND");
        for (size_t i = 0; i < l->n_processes; i++) {
            const Mesh__ProcessStats *p = l->processes[i];
            const char *user = ctl_user_name(p->uid);
            printf("%8" PRId32 " %10" PRIu32 " ", p->pid, p->uid);
            print_exe(*user ? user : "-", 12); /* printable, cut to the column */
            printf(" %12" PRIu64 " %12" PRIu64 " %8" PRIu64 " %12" PRIu64 " ", p->heap_bytes >> 10,
                   p->live_bytes >> 10, p->meshes, p->released_bytes >> 10);
            print_command(command_name(p), columns);
            putchar('\n');
        }
    }
    mesh__envelope__free_unpacked(env, NULL);
    return 0;
}

/* One process's stats from meshd (exits with a message on any error); free the reply. */
static Mesh__Envelope *request_stats(int32_t pid)
{
    Mesh__StatsRequest sr = MESH__STATS_REQUEST__INIT;
    Mesh__Envelope req = MESH__ENVELOPE__INIT;
    sr.pid = pid;
    req.body_case = MESH__ENVELOPE__BODY_STATS_REQUEST;
    req.stats_request = &sr;
    return expect(call(&req), MESH__ENVELOPE__BODY_PROCESS_STATS);
}

static int cmd_stats(int32_t pid, int json)
{
    Mesh__Envelope *env = request_stats(pid);
    const Mesh__ProcessStats *p = env->process_stats;
    if (json) {
        json_process(stdout, p, 1);
        putchar('\n');
    } else {
        const char *user = ctl_user_name(p->uid);
        printf("pid %" PRId32 " uid %" PRIu32 " (%s) name ", p->pid, p->uid, *user ? user : "-");
        print_exe(command_name(p), -1);
        fputs(" exe ", stdout);
        print_exe(p->exe, -1);
        printf("\nheap %" PRIu64 " KiB, live %" PRIu64 " KiB, %" PRIu64 " meshes released %" PRIu64
               " KiB\n",
               p->heap_bytes >> 10, p->live_bytes >> 10, p->meshes, p->released_bytes >> 10);
        if (p->map_limit)
            printf("mappings added by meshing %" PRIu64 " of at most %" PRIu64 "\n", p->map_breaks,
                   p->map_limit);
        if (p->barrier && *p->barrier)
            printf("write barrier: %s\n", p->barrier);
        if (p->holds)
            printf("barrier holds %" PRIu64 ", p99 <= %" PRIu64 " us, max %" PRIu64 " us, %" PRIu64
                   " over 1 ms\n",
                   p->holds, hold_p99_us(p->hold_us_log2, p->n_hold_us_log2), p->hold_max_us,
                   p->holds_over_1ms);
        if (p->refused && *p->refused)
            printf("meshing refused by the process: %s\n", p->refused);
        printf("%8s %8s %12s %12s %6s\n", "SIZE", "SPANS", "LIVE_OBJS", "CAPACITY", "FULL%");
        for (size_t i = 0; i < p->n_classes; i++) {
            const Mesh__ClassStats *c = p->classes[i];
            printf("%8" PRIu32 " %8" PRIu32 " %12" PRIu64 " %12" PRIu64 " %5.1f%%\n", c->size,
                   c->spans, c->live_objects, c->capacity_objects,
                   c->capacity_objects ? 100.0 * (double)c->live_objects / (double)c->capacity_objects
                                       : 0.0);
        }
    }
    mesh__envelope__free_unpacked(env, NULL);
    return 0;
}

static int cmd_map(int32_t pid)
{
    Mesh__Envelope *env = request_stats(pid);
    map_render(stdout, env->process_stats);
    mesh__envelope__free_unpacked(env, NULL);
    return 0;
}

static int cmd_mesh(int32_t pid)
{
    Mesh__MeshNowRequest mr = MESH__MESH_NOW_REQUEST__INIT;
    Mesh__Envelope req = MESH__ENVELOPE__INIT;
    mr.pid = pid;
    req.body_case = MESH__ENVELOPE__BODY_MESH_NOW_REQUEST;
    req.mesh_now_request = &mr;
    Mesh__Envelope *env = expect(call(&req), MESH__ENVELOPE__BODY_MESH_NOW_REPLY);
    const Mesh__MeshNowReply *r = env->mesh_now_reply;
    printf("pid %" PRId32 ": %" PRIu32 " pairs sent, %" PRIu32 " meshed, %" PRIu64
           " KiB released; heap %" PRIu64 " KiB -> %" PRIu64 " KiB\n",
           r->pid, r->pairs_sent, r->meshed, r->released_bytes >> 10, r->heap_bytes_before >> 10,
           r->heap_bytes_after >> 10);
    mesh__envelope__free_unpacked(env, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    static char path[108];
    const char *cmd = NULL, *arg = NULL;
    /* Everything after the command, for the commands that take a list (policy). */
    static const char *rest[64];
    size_t nrest = 0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
            socket_path = argv[++i];
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!cmd) {
            cmd = argv[i];
        } else if (nrest < sizeof rest / sizeof rest[0]) {
            if (!arg)
                arg = argv[i];
            rest[nrest++] = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!socket_path) {
        if (meshd_default_socket(path, sizeof path) != 0) {
            fprintf(stderr, "meshctl: no socket path: give --socket or set MESHD_SOCKET or "
                            "XDG_RUNTIME_DIR\n");
            return 2;
        }
        socket_path = path;
    }
    if (cmd && !strcmp(cmd, "ps") && nrest == 0)
        return cmd_ps(json);
    if (cmd && !strcmp(cmd, "stats") && nrest <= 1)
        return cmd_stats(parse_pid(arg), json);
    if (cmd && !strcmp(cmd, "mesh") && !json && nrest <= 1)
        return cmd_mesh(parse_pid(arg));
    if (cmd && !strcmp(cmd, "map") && !json && nrest <= 1)
        return cmd_map(parse_pid(arg));
    if (cmd && !strcmp(cmd, "policy") && !json)
        return ctl_policy(call, nrest, rest);
    usage(stderr);
    return 2;
}
