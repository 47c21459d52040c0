/* sandbox.c: seccomp detection, and the memfd_create it guards (see sandbox.h). */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common.h"
#include "fdutil.h"
#include "interpose.h"
#include "lock.h"

int mesh_private_reason;
/* As seen by the last mesh_sandbox_check, or set by mesh_sandbox_note_filter (any thread). */
static _Atomic int filtered;

/* A scan for the number after "\nSeccomp:" (0 none, 1 strict, 2 filter) over the status
 * file's text, fed in pieces; mode -1 until found, -2 if not a number. */
struct seccomp_scan {
    size_t matched;
    int mode, in_value;
};

static void seccomp_scan(struct seccomp_scan *st, const char *buf, size_t n)
{
    static const char key[] = "\nSeccomp:";
    for (size_t i = 0; i < n && st->mode == -1; i++) {
        char c = buf[i];
        if (st->in_value) {
            if (c >= '0' && c <= '9')
                st->mode = c - '0';
            else if (c != ' ' && c != '\t')
                st->mode = -2; /* not a number: unknown */
        } else if (c == key[st->matched]) {
            st->in_value = ++st->matched == sizeof key - 1;
        } else {
            /* key's only '\n' is its first character: a mismatch restarts there */
            st->matched = c == '\n';
        }
    }
}

/* The seccomp mode in the status file fd, read from its start in small pieces without
 * stdio or malloc; -1 if it cannot be read. */
static int seccomp_mode_in(int fd)
{
    char buf[256];
    struct seccomp_scan st = {.matched = 0, .mode = -1, .in_value = 0};
    off_t off = 0;
    ssize_t n;
    while (st.mode == -1 && ((n = pread(fd, buf, sizeof buf, off)) > 0 || (n < 0 && errno == EINTR))) {
        seccomp_scan(&st, buf, n > 0 ? (size_t)n : 0);
        off += n > 0 ? n : 0;
    }
    return st.mode >= 0 ? st.mode : -1;
}

static int open_status(void) { return open("/proc/self/status", O_RDONLY | O_CLOEXEC); }

/* The process's seccomp mode from /proc/self/status opened for the look; -1 if it cannot
 * be read (no /proc). */
static int status_seccomp_mode(void)
{
    int fd = open_status();
    int mode = fd < 0 ? -1 : seccomp_mode_in(fd);
    if (fd >= 0)
        close(fd);
    return mode;
}

/*
 * The same, through /proc/self/status kept open at a high number (fdutil.h), for the
 * control thread's look before every meshd request: opening the file each time put a
 * descriptor at the lowest free number for a moment, hundreds of times a second while
 * meshd meshes: fd 0 of a program started with stdin closed, which fds.sh's `closed`
 * case then saw open (a CI failure).  Kept only while registered (the shim holds
 * descriptors then anyway): mesh_sandbox_release_kept at every disconnect.  Reopened if
 * the program took the number.  status_lock with trylock: a caller that finds it busy
 * opens the file for its look, as before.
 */
static mesh_lock_t status_lock = MESH_LOCK_INIT;
static struct mesh_fd status_fd = MESH_FD_NONE;

static int kept_status_seccomp_mode(void)
{
    if (!mesh_trylock(&status_lock))
        return status_seccomp_mode();
    int fd = mesh_fd_keep(&status_fd, open_status);
    int mode = fd < 0 ? -1 : seccomp_mode_in(fd);
    mesh_unlock(&status_lock);
    return mode;
}

void mesh_sandbox_release_kept(void)
{
    mesh_lock(&status_lock);
    mesh_fd_drop(&status_fd);
    mesh_unlock(&status_lock);
}

void mesh_sandbox_after_fork_child(void)
{
    /* Single-threaded: a holder of the lock at fork is not here; the file shows the
     * parent (closed here if still ours). */
    mesh_lock_reset(&status_lock);
    mesh_fd_drop(&status_fd);
}

static int trusted(void)
{
    const char *trust = getenv("MESH_SECCOMP");
    return trust && strcmp(trust, "trust") == 0;
}

static int filtered_by(int (*read_mode)(void))
{
    if (trusted())
        return 0;
    if (filtered)
        return 1; /* a filter stays: seen at set-up, or installed through us since */
    int saved = errno;
    int mode = read_mode();
    if (mode < 0)
        mode = prctl(PR_GET_SECCOMP, 0, 0, 0, 0); /* no /proc: ask the kernel directly */
    errno = saved;
    return mode > 0;
}

int mesh_sandbox_filtered_kept(void) { return filtered_by(kept_status_seccomp_mode); }

int mesh_sandbox_filtered_now(void) { return filtered_by(status_seccomp_mode); }

int mesh_sandbox_filtered_aside(void)
{
    if (trusted())
        return 0;
    if (filtered)
        return 1; /* a filter stays */
    /* The child that reads it has our filter, if any (inherited): its status tells ours. */
    char buf[4096];
    ssize_t n = mesh_read_file_aside("/proc/self/status", buf, sizeof buf);
    if (n <= 0)
        return -1; /* no child (a process limit, maybe for a moment), or no /proc */
    struct seccomp_scan st = {.matched = 0, .mode = -1, .in_value = 0};
    seccomp_scan(&st, buf, (size_t)n);
    return st.mode != 0 && !(st.mode == -1 && (size_t)n < sizeof buf); /* no field: no seccomp */
}

void mesh_sandbox_check(void) { filtered = mesh_sandbox_filtered_now(); }

int mesh_sandbox_filtered_seen(void) { return filtered; }

void mesh_sandbox_note_filter(void)
{
    if (!trusted())
        filtered = 1;
}

#ifndef MESH_NO_INTERPOSE
/*
 * prctl(PR_SET_SECCOMP) is how a program sandboxes itself (libseccomp's seccomp_load uses
 * it or the seccomp system call, which kernel_calls.c's syscall() sees).  Noted before the
 * call: from then on the shim makes none of its own calls (sandbox.h) and starts no thread
 * (a forked child that sandboxes itself, as sshd's preauth child does, was killed when the
 * shim started its control thread: the filter's clone rule).  glibc's prctl is variadic:
 * four more arguments are read, as its own does.
 */
static void *_Atomic next_prctl;

__attribute__((constructor)) static void resolve_next(void) { (void)mesh_next_symbol(&next_prctl, "prctl"); }

MESH_EXPORT int prctl(int option, ...)
{
    va_list ap;
    va_start(ap, option);
    unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long);
    unsigned long a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
    va_end(ap);
    int (*real)(int, ...) = (int (*)(int, ...))mesh_next_symbol(&next_prctl, "prctl");
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    if (option == PR_SET_SECCOMP)
        mesh_sandbox_note_filter();
    return real(option, a2, a3, a4, a5);
}
#endif

void mesh_sandbox_note_arena(int have_memfd, int file_too_big)
{
    mesh_private_reason = have_memfd      ? MESH_PRIVATE_NONE
                          : filtered      ? MESH_PRIVATE_SECCOMP
                          : file_too_big  ? MESH_PRIVATE_FILE_SIZE
                                          : MESH_PRIVATE_NO_MEMFD;
}

int mesh_memfd_create(const char *name, unsigned flags)
{
    if (filtered) {
        errno = EPERM;
        return -1;
    }
    return memfd_create(name, MFD_CLOEXEC | flags);
}
