/*
 * credentials.c: the calls that change a process's credentials, or enter namespaces,
 * interposed so that the shim's threads are never in their way.
 *
 * glibc applies set*id and setgroups to every thread of the process (POSIX: credentials
 * are per process; Linux keeps them per thread), sending each thread a signal whose
 * handler makes the same system call, and aborts the process if one of them fails.  The
 * shim's thread can fail where the caller succeeds: a program that drops root the way
 * setpriv does (PR_SET_KEEPCAPS, setresuid, capset, setresgid, setgroups) keeps its
 * capabilities in its own thread only, and the shim's thread, without them, gets EPERM at
 * setresgid.  So each call here stops and joins the shim's thread (control.h), makes the
 * call, and lets the thread start again later as the program is then: it inherits the
 * new credentials from the thread that starts it and registers with meshd anew, under
 * the new uid.  capset and initgroups are here too: capabilities are per thread, and the
 * restarted thread should hold what the program holds.  A fork child that shares its
 * parent's pages stops sharing first (fork_share.h): its helper thread would meet the same
 * broadcast, and a child that drops privileges must not hold up its parent's writes; a
 * fork child still copying its heap lazily (fork_lazy.h) finishes first, for the same
 * broadcast and so that the call finds the process as single-threaded as it left fork.
 *
 * Not covered: the raw system calls (syscall(SYS_setresuid), which glibc does not
 * broadcast: the program asked for one thread), and a set*id called from a signal handler
 * that interrupted the shim's own pause (glibc's broadcast is not safe there either).
 */
#include "credentials.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "control.h"
#include "fork_lazy.h"
#include "fork_share.h"
#include "interpose.h"

struct mesh_threads_paused mesh_threads_pause(int always_stop)
{
    struct mesh_threads_paused p = {.owner = getuid(), .paused = 0};
    mesh_fork_share_detach();
    mesh_fork_lazy_finish();
    p.paused = mesh_control_pause(always_stop);
    return p;
}

void mesh_threads_resume(struct mesh_threads_paused p)
{
    int saved = errno;
    if (p.paused)
        mesh_control_resume(getuid() != p.owner);
    errno = saved;
}

#ifndef MESH_NO_INTERPOSE

enum next_fn {
    NEXT_SETUID, NEXT_SETGID, NEXT_SETEUID, NEXT_SETEGID, NEXT_SETREUID, NEXT_SETREGID,
    NEXT_SETRESUID, NEXT_SETRESGID, NEXT_SETGROUPS, NEXT_INITGROUPS, NEXT_CAPSET,
    NEXT_UNSHARE, NEXT_SETNS, NEXT_COUNT
};

static const char *const next_names[NEXT_COUNT] = {
    "setuid", "setgid", "seteuid", "setegid", "setreuid", "setregid",
    "setresuid", "setresgid", "setgroups", "initgroups", "capset", "unshare", "setns"};

static void *_Atomic next_fns[NEXT_COUNT];

static void *next(enum next_fn which) { return mesh_next_symbol(&next_fns[which], next_names[which]); }

__attribute__((constructor)) static void resolve_next(void)
{
    for (int i = 0; i < NEXT_COUNT; i++)
        next((enum next_fn)i);
}

/* Calls the next definition with the shim's thread out of its way (control.h); errno is
 * the call's. */
#define PAUSED_CALL(which, fn, always_stop, args)                                           \
    do {                                                                                    \
        __typeof__(fn) *real = (__typeof__(fn) *)next(which);                               \
        if (real == NULL) {                                                                 \
            errno = ENOSYS;                                                                 \
            return -1;                                                                      \
        }                                                                                   \
        struct mesh_threads_paused quiet = mesh_threads_pause(always_stop);                 \
        int ret = real args;                                                                \
        mesh_threads_resume(quiet);                                                         \
        return ret;                                                                         \
    } while (0)

MESH_EXPORT int setuid(uid_t uid) { PAUSED_CALL(NEXT_SETUID, setuid, 0, (uid)); }
MESH_EXPORT int setgid(gid_t gid) { PAUSED_CALL(NEXT_SETGID, setgid, 0, (gid)); }
MESH_EXPORT int seteuid(uid_t uid) { PAUSED_CALL(NEXT_SETEUID, seteuid, 0, (uid)); }
MESH_EXPORT int setegid(gid_t gid) { PAUSED_CALL(NEXT_SETEGID, setegid, 0, (gid)); }

MESH_EXPORT int setreuid(uid_t ruid, uid_t euid)
{
    PAUSED_CALL(NEXT_SETREUID, setreuid, 0, (ruid, euid));
}

MESH_EXPORT int setregid(gid_t rgid, gid_t egid)
{
    PAUSED_CALL(NEXT_SETREGID, setregid, 0, (rgid, egid));
}

MESH_EXPORT int setresuid(uid_t ruid, uid_t euid, uid_t suid)
{
    PAUSED_CALL(NEXT_SETRESUID, setresuid, 0, (ruid, euid, suid));
}

MESH_EXPORT int setresgid(gid_t rgid, gid_t egid, gid_t sgid)
{
    PAUSED_CALL(NEXT_SETRESGID, setresgid, 0, (rgid, egid, sgid));
}

MESH_EXPORT int setgroups(size_t n, const gid_t *groups)
{
    PAUSED_CALL(NEXT_SETGROUPS, setgroups, 0, (n, groups));
}

/* glibc's initgroups calls its own setgroups, which no wrapper sees. */
MESH_EXPORT int initgroups(const char *user, gid_t group)
{
    PAUSED_CALL(NEXT_INITGROUPS, initgroups, 0, (user, group));
}

/* glibc exports it without declaring it (libcap's sys/capability.h does). */
int capset(cap_user_header_t header, const cap_user_data_t data);

MESH_EXPORT int capset(cap_user_header_t header, const cap_user_data_t data)
{
    PAUSED_CALL(NEXT_CAPSET, capset, 1, (header, data));
}

/*
 * Namespaces.  The kernel answers EINVAL to unshare() of a user namespace (or of
 * CLONE_THREAD, CLONE_SIGHAND, CLONE_VM) in a process with more than one thread, and to
 * setns() into a user namespace likewise, or into a mount namespace from a thread that
 * shares its filesystem context (pthreads share theirs).  Under glibc a program that
 * calls them has one thread; under the shim the control thread (a second after start-up),
 * or a fork child's lazy-copy helper, would be there too (unshare -U right after fork,
 * bwrap-style sandboxes, nsenter-style tools).  So they stop those threads first, as
 * set*id does (the control thread starts again later, in the new namespaces).  A thread
 * just joined may still be on the kernel's thread list for some microseconds, so an
 * EINVAL is tried again for up to NS_RETRY_MS; a program with threads of its own gets its
 * EINVAL after that.  Not covered: a parent whose copy-on-write thread still copies for a
 * child (fork_cow.h) stays multithreaded until that copy ends.
 */
#define NS_SINGLE_THREAD_FLAGS (CLONE_NEWUSER | CLONE_THREAD | CLONE_SIGHAND | CLONE_VM)
#define NS_RETRY_MS 20

static int ns_call(enum next_fn which, int a, int b)
{
    if (which == NEXT_UNSHARE)
        return ((int (*)(int))next(which))(a);
    return ((int (*)(int, int))next(which))(a, b);
}

/* single: the call needs the shim's threads gone (else it is passed straight on). */
static int ns_call_alone(enum next_fn which, int a, int b, int single)
{
    if (next(which) == NULL) {
        errno = ENOSYS;
        return -1;
    }
    if (!single)
        return ns_call(which, a, b);
    struct mesh_threads_paused quiet = mesh_threads_pause(1);
    int ret = ns_call(which, a, b);
    for (int waited_us = 0; ret != 0 && errno == EINVAL && quiet.paused && waited_us < NS_RETRY_MS * 1000;
         waited_us += 500) {
        struct timespec gap = {0, 500000};
        nanosleep(&gap, NULL);
        ret = ns_call(which, a, b);
    }
    mesh_threads_resume(quiet);
    return ret;
}

/* A mount, network, ... namespace needs no single thread: passed straight on. */
MESH_EXPORT int unshare(int flags)
{
    return ns_call_alone(NEXT_UNSHARE, flags, 0, (flags & NS_SINGLE_THREAD_FLAGS) != 0);
}

/* nstype may be 0 (any kind: the descriptor says which), so every setns stops them. */
MESH_EXPORT int setns(int fd, int nstype) { return ns_call_alone(NEXT_SETNS, fd, nstype, 1); }

#endif
