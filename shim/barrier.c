/* barrier.c: write barrier over arena pages: userfaultfd write-protect, or mprotect and
 * a SIGSEGV handler. */
#include "barrier.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "arena.h"
#include "lock.h"
#include "sandbox.h"

static int kind;                        /* enum mesh_barrier_kind, 0 until chosen */
static int uffd = -1;
static _Atomic int barrier_up;          /* futex word for the SIGSEGV mode */
static struct sigaction program_action; /* what SIGSEGV did before ours */

/* ---- userfaultfd ---------------------------------------------------------------------- */

static int uffd_register(void *addr, size_t len)
{
    struct uffdio_register reg = {.range = {(uintptr_t)addr, len}, .mode = UFFDIO_REGISTER_MODE_WP};
    return ioctl(uffd, UFFDIO_REGISTER, &reg);
}

static int uffd_setup(void)
{
    /* Not UFFD_USER_MODE_ONLY: holding back kernel writes is the point. */
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM};
    uffd = fd;
    if (ioctl(fd, UFFDIO_API, &api) != 0 || !(api.features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) ||
        uffd_register(mesh_arena.base, mesh_arena.bytes) != 0) {
        close(fd);
        uffd = -1;
        return -1;
    }
    return 0;
}

static void uffd_protect(void *addr, size_t len, int on)
{
    struct uffdio_writeprotect wp = {.range = {(uintptr_t)addr, len},
                                     .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
    ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
}

/* ---- SIGSEGV ---------------------------------------------------------------------------- */

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

static int handler_in_front(void)
{
    struct sigaction current;
    if (sigaction(SIGSEGV, NULL, &current) != 0)
        return -1;
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_segv)
        return 0;
    struct sigaction ours;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_segv;
    ours.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    program_action = current;
    return sigaction(SIGSEGV, &ours, NULL);
}

/* ---- the barrier ------------------------------------------------------------------------ */

int mesh_barrier_begin(void)
{
    if (!kind) {
        /* MESH_BARRIER=mprotect forces the portable mode (tests cover both). */
        const char *force = getenv("MESH_BARRIER");
        int want_uffd = !(force && strcmp(force, "mprotect") == 0) && !mesh_sandbox_filtered_now();
        kind = want_uffd && uffd_setup() == 0 ? MESH_BARRIER_UFFD : MESH_BARRIER_MPROTECT;
    }
    if (kind == MESH_BARRIER_MPROTECT) {
        if (handler_in_front() != 0)
            return -1;
        atomic_store(&barrier_up, 1);
    }
    return 0;
}

void mesh_barrier_protect(void *addr, size_t len)
{
    if (kind == MESH_BARRIER_UFFD)
        uffd_protect(addr, len, 1);
    else
        mprotect(addr, len, PROT_READ);
}

void mesh_barrier_unprotect(void *addr, size_t len)
{
    if (kind == MESH_BARRIER_UFFD)
        uffd_protect(addr, len, 0); /* also wakes the writers */
    else
        mprotect(addr, len, PROT_READ | PROT_WRITE);
}

void mesh_barrier_remapped(void *addr, size_t len)
{
    if (kind != MESH_BARRIER_UFFD)
        return; /* the new mapping is writable; end() wakes the handler's waiters */
    uffd_register(addr, len);
    struct uffdio_range range = {(uintptr_t)addr, len};
    ioctl(uffd, UFFDIO_WAKE, &range);
}

void mesh_barrier_end(void)
{
    if (kind != MESH_BARRIER_MPROTECT)
        return;
    atomic_store(&barrier_up, 0);
    mesh_futex(&barrier_up, FUTEX_WAKE, INT32_MAX);
}

void mesh_barrier_forget(void)
{
    if (uffd >= 0)
        close(uffd);
    uffd = -1;
    kind = 0;
    atomic_store(&barrier_up, 0);
}

int mesh_barrier_kind(void) { return kind; }
