/* barrier.c: SIGSEGV handler behind the mesh write barrier. */
#include "barrier.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "lock.h"

static _Atomic int barrier_up;          /* futex word: 1 while a barrier is up */
static struct sigaction program_action; /* what SIGSEGV did before ours */

static void chain_to_program(int sig, siginfo_t *info, void *ucontext)
{
    if (program_action.sa_flags & SA_SIGINFO) {
        program_action.sa_sigaction(sig, info, ucontext);
    } else if (program_action.sa_handler != SIG_DFL && program_action.sa_handler != SIG_IGN) {
        program_action.sa_handler(sig);
    } else {
        /* Default action: restore it and return; the fault repeats and kills as usual. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGSEGV, &dfl, NULL);
    }
}

static void on_segv(int sig, siginfo_t *info, void *ucontext)
{
    int saved = errno;
    /* Arena pages are read-only only under a barrier, so an access fault in the arena is
     * a barrier's (up now, or just dropped): wait while it is up, then retry. */
    if (info->si_code == SEGV_ACCERR && mesh_in_arena(info->si_addr)) {
        while (atomic_load(&barrier_up))
            mesh_futex(&barrier_up, FUTEX_WAIT, 1);
        errno = saved;
        return;
    }
    errno = saved;
    chain_to_program(sig, info, ucontext);
}

int mesh_barrier_begin(void)
{
    struct sigaction current;
    if (sigaction(SIGSEGV, NULL, &current) != 0)
        return -1;
    if (!((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_segv)) {
        struct sigaction ours;
        memset(&ours, 0, sizeof ours);
        ours.sa_sigaction = on_segv;
        ours.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER | SA_ONSTACK;
        sigemptyset(&ours.sa_mask);
        program_action = current;
        if (sigaction(SIGSEGV, &ours, NULL) != 0)
            return -1;
    }
    atomic_store(&barrier_up, 1);
    return 0;
}

void mesh_barrier_end(void)
{
    atomic_store(&barrier_up, 0);
    mesh_futex(&barrier_up, FUTEX_WAKE, INT32_MAX);
}
