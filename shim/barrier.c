/* barrier.c: SIGSEGV-based write barrier over a range of the arena. */
#include "barrier.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arena.h"
#include "init.h"
#include "lock.h"

static _Atomic int barrier_up; /* futex word: 1 while a barrier is up */
static pid_t barrier_pid;      /* the process that raised it */
static struct sigaction program_action; /* what SIGSEGV did before we installed ours */
static int handler_installed;

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
        handler_installed = 0;
    }
}

static void on_segv(int sig, siginfo_t *info, void *ucontext)
{
    uintptr_t addr = (uintptr_t)info->si_addr;
    int saved = errno;
    /* Arena pages are never inaccessible except under a barrier, so any arena fault is a
     * barrier's: wait while one is up, then retry the write. */
    if (info->si_code == SEGV_ACCERR && mesh_in_arena((void *)addr)) {
        /* A fork child writes (glibc resets stdio locks) before its atfork handlers run.
         * Its arena is still the parent's shared memory: give it its private copy now. */
        if (atomic_load(&barrier_up) && getpid() != barrier_pid) {
            mesh_fork_make_child_private();
            errno = saved;
            return;
        }
        while (atomic_load(&barrier_up))
            mesh_futex(&barrier_up, FUTEX_WAIT, 1);
        errno = saved;
        return;
    }
    errno = saved;
    chain_to_program(sig, info, ucontext);
}

static void install_handler(void)
{
    struct sigaction current;
    if (sigaction(SIGSEGV, NULL, &current) != 0)
        return;
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_segv)
        return; /* ours, still chaining to program_action */
    struct sigaction ours;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_segv;
    ours.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    program_action = current;
    if (sigaction(SIGSEGV, &ours, NULL) == 0)
        handler_installed = 1;
}

static void restore_handler(void)
{
    int program_has_handler = (program_action.sa_flags & SA_SIGINFO) ||
                              (program_action.sa_handler != SIG_DFL && program_action.sa_handler != SIG_IGN);
    if (handler_installed && program_has_handler) {
        sigaction(SIGSEGV, &program_action, NULL);
        handler_installed = 0;
    }
}

void mesh_barrier_begin(void *lo, size_t len)
{
    int saved = errno;
    install_handler();
    barrier_pid = getpid();
    atomic_store(&barrier_up, 1);
    if (len)
        mprotect(lo, len, PROT_READ);
    errno = saved;
}

void mesh_barrier_end(void *lo, size_t len)
{
    int saved = errno;
    if (len)
        mprotect(lo, len, PROT_READ | PROT_WRITE);
    atomic_store(&barrier_up, 0);
    mesh_futex(&barrier_up, FUTEX_WAKE, INT32_MAX);
    restore_handler();
    errno = saved;
}

void mesh_barrier_reset_child(void)
{
    atomic_store(&barrier_up, 0);
    restore_handler();
}
