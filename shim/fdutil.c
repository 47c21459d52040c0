/* fdutil.c: the shim's descriptors live high and are used only while still ours; see fdutil.h. */
#include "fdutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Programs' own range: select() works below FD_SETSIZE (1024), and daemons close 3..1023. */
#define MESH_FD_HIGH 1024

int mesh_fd_floor(void)
{
    struct rlimit rl;
    rlim_t limit = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        limit = rl.rlim_cur;
    /* A little room above 1024 for the handful of descriptors the shim holds at once. */
    if (limit == RLIM_INFINITY || limit >= MESH_FD_HIGH + 64)
        return MESH_FD_HIGH;
    /* Low limit: as high as it allows, leaving the shim some numbers at the top. */
    rlim_t floor = limit - limit / 16;
    return floor > 3 ? (int)floor : 3;
}

int mesh_fd_move_high(int fd)
{
    if (fd < 0)
        return -1;
    int saved = errno;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, mesh_fd_floor());
    if (high < 0)
        high = fcntl(fd, F_DUPFD_CLOEXEC, 3); /* the top is full: at least leave 0-2 */
    close(fd);
    errno = saved;
    return high;
}

static int same_object(const struct mesh_fd *o, const struct stat *st)
{
    return (uint64_t)st->st_dev == o->dev && (uint64_t)st->st_ino == o->ino;
}

int mesh_fd_adopt(struct mesh_fd *o, int fd)
{
    struct stat st;
    o->fd = mesh_fd_move_high(fd);
    if (o->fd < 0)
        return -1;
    if (fstat(o->fd, &st) != 0) {
        close(o->fd);
        o->fd = -1;
        return -1;
    }
    o->dev = (uint64_t)st.st_dev;
    o->ino = (uint64_t)st.st_ino;
    return 0;
}

/* As mesh_fd_owned, and fills *st when it returns 1. */
static int mesh_fd_stat(const struct mesh_fd *o, struct stat *st)
{
    if (o->fd < 0)
        return 0;
    int saved = errno;
    int ok = fstat(o->fd, st) == 0 && same_object(o, st);
    errno = saved;
    return ok;
}

int mesh_fd_owned(const struct mesh_fd *o)
{
    struct stat st;
    return mesh_fd_stat(o, &st);
}

void mesh_fd_drop(struct mesh_fd *o)
{
    if (mesh_fd_owned(o)) {
        int saved = errno;
        close(o->fd);
        errno = saved;
    }
    o->fd = -1;
}

int mesh_fd_keep(struct mesh_fd *o, int (*open_file)(void))
{
    if (o->fd >= 0 && !mesh_fd_owned(o))
        o->fd = -1;
    if (o->fd < 0)
        mesh_fd_adopt(o, open_file());
    return o->fd;
}

int mesh_fd_pipe_high(int p[2])
{
    int raw[2];
    p[0] = p[1] = -1;
    if (pipe2(raw, O_CLOEXEC) != 0)
        return -1;
    p[0] = mesh_fd_move_high(raw[0]);
    p[1] = mesh_fd_move_high(raw[1]);
    if (p[0] >= 0 && p[1] >= 0)
        return 0;
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    p[0] = p[1] = -1;
    return -1;
}

/* The request a child of mesh_read_file_aside carries out; it writes got, in our memory. */
struct aside_read {
    const char *path;
    char *buf;
    size_t size;
    ssize_t got;
};

/* Runs in the child: its own descriptor table (a copy), our memory, this thread's TLS (its
 * errno writes land in ours: the caller saves it).  No allocation and no lock: openat, and
 * pread into the caller's stack (the shim's own pread passes a buffer outside the heap
 * straight to glibc's, resolved at set-up). */
static int aside_reader(void *arg)
{
    struct aside_read *r = arg;
    long fd = syscall(SYS_openat, AT_FDCWD, r->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return 1;
    ssize_t n;
    do
        n = pread((int)fd, r->buf, r->size, 0);
    while (n < 0 && errno == EINTR);
    r->got = n;
    return 0; /* the child exits: its table, and the descriptor, go with it */
}

ssize_t mesh_read_file_aside(const char *path, char *buf, size_t size)
{
    /* The child runs on this frame's array: CLONE_VFORK keeps us stopped until it exits. */
    _Alignas(16) char child_stack[8192];
    struct aside_read r = {.path = path, .buf = buf, .size = size, .got = -1};
    sigset_t all, old;
    int saved = errno;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* no handler of the program's runs in it */
    pid_t pid = clone(aside_reader, child_stack + sizeof child_stack, CLONE_VM | CLONE_VFORK, &r);
    if (pid > 0) /* no exit signal: only __WCLONE waits see it, never the program's wait() */
        while (waitpid(pid, NULL, __WCLONE) < 0 && errno == EINTR)
            ;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return pid > 0 ? r.got : -1;
}
