/* signals.c: sigprocmask/pthread_sigmask/sigaction/signal interposed for the mprotect
 * barrier (see signals.h). */
#include "signals.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

/* glibc's own names for sigaction and signal: not interposed by the shim, so the real calls. */
extern int __sigaction(int sig, const struct sigaction *act, struct sigaction *old);
extern sighandler_t bsd_signal(int sig, sighandler_t handler);

/* glibc keeps these two for its own use and never lets a program block them. */
#define GLIBC_SIGCANCEL 32
#define GLIBC_SIGSETXID 33

static int guarding = -1;                /* -1: MESH_BARRIER not read yet */
static int installed;                    /* the shim's handler is in front */
static struct sigaction program_action;  /* the program's SIGSEGV disposition */
static void (*shim_handler)(int, siginfo_t *, void *);

int mesh_signals_guarding(void)
{
    if (guarding < 0) {
        const char *mode = getenv("MESH_BARRIER");
        guarding = mode && strcmp(mode, "mprotect") == 0;
    }
    return guarding;
}

int mesh_signals_install(void (*handler)(int, siginfo_t *, void *))
{
    struct sigaction current;
    if (__sigaction(SIGSEGV, NULL, &current) != 0)
        return -1;
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == handler)
        return 0;
    struct sigaction ours;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = handler;
    ours.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    program_action = current;
    shim_handler = handler;
    if (__sigaction(SIGSEGV, &ours, NULL) != 0)
        return -1;
    installed = 1;
    return 0;
}

void mesh_signals_chain(int sig, siginfo_t *info, void *ucontext)
{
    if (program_action.sa_flags & SA_SIGINFO) {
        program_action.sa_sigaction(sig, info, ucontext);
    } else if (program_action.sa_handler != SIG_DFL && program_action.sa_handler != SIG_IGN) {
        program_action.sa_handler(sig);
    } else {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        __sigaction(SIGSEGV, &dfl, NULL);
        installed = 0; /* the next barrier puts the handler back */
    }
}

void mesh_signals_set_guarding(int on) { guarding = on; }

/* ---- the interposed calls ----------------------------------------------------------------- */
#ifndef MESH_NO_INTERPOSE /* sanitizer builds: the sanitizer intercepts these itself */

/* What glibc's pthread_sigmask does, plus SIGSEGV kept deliverable when guarding. */
static int set_mask(int how, const sigset_t *set, sigset_t *old)
{
    sigset_t copy;
    if (set && how != SIG_UNBLOCK) {
        copy = *set;
        sigdelset(&copy, GLIBC_SIGCANCEL);
        sigdelset(&copy, GLIBC_SIGSETXID);
        if (mesh_signals_guarding())
            sigdelset(&copy, SIGSEGV);
        set = &copy;
    }
    long rc = syscall(SYS_rt_sigprocmask, how, set, old, (size_t)(_NSIG / 8));
    return rc == 0 ? 0 : errno;
}

MESH_EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    int saved = errno;
    int rc = set_mask(how, set, old);
    errno = saved;
    return rc;
}

MESH_EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
    int rc = set_mask(how, set, old);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

MESH_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    if (sig != SIGSEGV || !mesh_signals_guarding() || !installed)
        return __sigaction(sig, act, old);
    /* The shim's handler stays; the program's disposition is what it runs for faults that
     * are not a barrier's, and what the program reads back. */
    if (old)
        *old = program_action;
    if (act)
        program_action = *act;
    return 0;
}

MESH_EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
    if (sig != SIGSEGV || !mesh_signals_guarding() || !installed)
        return bsd_signal(sig, handler);
    /* What glibc's signal() asks for (BSD semantics), through the sigaction above. */
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    sigemptyset(&act.sa_mask);
    sigaddset(&act.sa_mask, sig);
    act.sa_flags = SA_RESTART;
    if (sigaction(sig, &act, &old) != 0)
        return SIG_ERR;
    return old.sa_handler;
}
#endif
