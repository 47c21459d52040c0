/* barrier.c: write barrier over arena pages: userfaultfd write-protect, or (opt-in)
 * mprotect and a SIGSEGV handler; see barrier.h. */
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
#include "fdutil.h"
#include "lock.h"
#include "signals.h"
#include "sandbox.h"
#include "vma_attrs.h"

static int kind;                     /* enum mesh_barrier_kind, 0 until chosen */
static const char *refusal;          /* why kind is MESH_BARRIER_NONE */
/* High and identity-checked (fdutil.h): a number the program closed or replaced is never
 * given another ioctl; the process is then no longer meshed. */
static struct mesh_fd uffd = {.fd = -1};
static _Atomic int barrier_up;       /* futex word for the SIGSEGV mode */
static _Atomic unsigned barrier_seq; /* barriers begun so far (SIGSEGV mode) */

/* ---- userfaultfd ---------------------------------------------------------------------- */

static int uffd_ioctl(unsigned long request, void *arg)
{
    if (!mesh_fd_owned(&uffd))
        return errno = EBADF, -1;
    return ioctl(uffd.fd, request, arg);
}

static int uffd_register(void *addr, size_t len)
{
    struct uffdio_register reg = {.range = {(uintptr_t)addr, len}, .mode = UFFDIO_REGISTER_MODE_WP};
    return uffd_ioctl(UFFDIO_REGISTER, &reg);
}

/* A userfaultfd that may hold back kernel writes: from the system call (not
 * UFFD_USER_MODE_ONLY: holding back kernel writes is the point), else from /dev/userfaultfd,
 * whose permissions an administrator may open to a group.  MESH_TEST_USERFAULTFD_DEV names
 * another node of that device, for tests that cannot change /dev. */
int mesh_barrier_uffd_open(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0)
        return fd;
    const char *dev = getenv("MESH_TEST_USERFAULTFD_DEV");
    int dev_fd = open(dev && *dev ? dev : "/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev_fd < 0)
        return -1;
    fd = ioctl(dev_fd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    close(dev_fd);
    return fd;
}

static int uffd_setup(void)
{
    if (mesh_fd_adopt(&uffd, mesh_barrier_uffd_open()) != 0)
        return -1;
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM};
    if (uffd_ioctl(UFFDIO_API, &api) != 0 || !(api.features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) ||
        uffd_register(mesh_arena.base, mesh_arena.bytes) != 0) {
        mesh_fd_drop(&uffd);
        return -1;
    }
    return 0;
}

static int uffd_protect(void *addr, size_t len, int on)
{
    struct uffdio_writeprotect wp = {.range = {(uintptr_t)addr, len},
                                     .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
    return uffd_ioctl(UFFDIO_WRITEPROTECT, &wp);
}

/* Protects the range, registering it first if part of it was never registered (ENOENT);
 * 0, or -1 with part of it maybe protected. */
static int uffd_protect_registering(void *addr, size_t len)
{
    if (uffd_protect(addr, len, 1) == 0)
        return 0;
    return errno == ENOENT && uffd_register(addr, len) == 0 ? uffd_protect(addr, len, 1) : -1;
}

/* ---- SIGSEGV ---------------------------------------------------------------------------- */

/* The last fault this thread retried: (page, barrier_seq).  A write fault that repeats on
 * the same page with no barrier begun since is not a barrier's. */
static __thread uintptr_t retried_page __attribute__((tls_model("initial-exec")));
static __thread unsigned retried_seq __attribute__((tls_model("initial-exec")));

static void on_segv(int sig, siginfo_t *info, void *ucontext)
{
    int saved = errno;
    /* A barrier makes arena pages read-only, so a write fault in the arena may be one
     * (up now, or just dropped): wait while one is up, then retry the access once.  A
     * page the program itself protected (a guard page in a malloc'd block) faults again
     * with no barrier in between: that fault is the program's. */
    if (info->si_code == SEGV_ACCERR && mesh_in_arena(info->si_addr)) {
        while (atomic_load(&barrier_up))
            mesh_futex(&barrier_up, FUTEX_WAIT, 1);
        uintptr_t page = (uintptr_t)info->si_addr >> MESH_PAGE_SHIFT;
        unsigned seq = atomic_load(&barrier_seq);
        if (page != retried_page || seq != retried_seq) {
            retried_page = page;
            retried_seq = seq;
            errno = saved;
            return;
        }
    }
    errno = saved;
    mesh_signals_chain(sig, info, ucontext);
}

/* ---- testing knob --------------------------------------------------------------------- */

/* MESH_TEST_BARRIER_FAIL=N: the Nth protection call of the process fails as the kernel's
 * would at the mapping limit (ENOMEM), so tests can show a refused protection refuses the
 * pair. */
static int test_fail_now(void)
{
    static struct mesh_nth_call knob;
    if (!mesh_nth_call(&knob, "MESH_TEST_BARRIER_FAIL"))
        return 0;
    errno = ENOMEM;
    return 1;
}

/* ---- the barrier ------------------------------------------------------------------------ */

static void choose(void)
{
    const char *mode = getenv("MESH_BARRIER");
    mesh_signals_set_guarding(mode && strcmp(mode, "mprotect") == 0);
    if (mode && strcmp(mode, "none") == 0) {
        kind = MESH_BARRIER_NONE;
        refusal = "no write barrier: MESH_BARRIER=none";
    } else if (mesh_signals_guarding()) {
        /* MESH_BARRIER=mprotect: the caller accepts that kernel writes into a span being
         * meshed may fail with EFAULT. */
        kind = MESH_BARRIER_MPROTECT;
    } else if (mesh_sandbox_filtered_now()) {
        /* The filter might kill for userfaultfd (sandbox.h): not even tried. */
        kind = MESH_BARRIER_NONE;
        refusal = "no safe write barrier: a seccomp filter is active, so userfaultfd is not "
                  "tried (MESH_SECCOMP=trust if the profile allows it)";
    } else if (uffd_setup() == 0) {
        kind = MESH_BARRIER_UFFD;
    } else {
        kind = MESH_BARRIER_NONE;
        refusal = "no safe write barrier: userfaultfd is not available to this process (it needs "
                  "root, vm.unprivileged_userfaultfd=1 or access to /dev/userfaultfd); "
                  "MESH_BARRIER=mprotect meshes anyway at the risk of EFAULT in system calls";
    }
}

int mesh_barrier_begin(void)
{
    if (!kind) {
        choose();
    } else if (kind == MESH_BARRIER_UFFD && !mesh_fd_owned(&uffd)) {
        /* The program closed or replaced our userfaultfd: its registrations died with it.
         * A fresh one takes over; mprotect is no safe replacement (EFAULT in system calls). */
        uffd.fd = -1;
        if (mesh_sandbox_filtered_now() || uffd_setup() != 0) {
            kind = MESH_BARRIER_NONE;
            refusal = "no safe write barrier: the program closed the shim's userfaultfd and "
                      "no new one could be had";
        }
    }
    if (kind == MESH_BARRIER_NONE)
        return -1;
    if (kind == MESH_BARRIER_MPROTECT) {
        if (mesh_signals_install(on_segv) != 0)
            return -1;
        atomic_fetch_add(&barrier_seq, 1);
        atomic_store(&barrier_up, 1);
    }
    return 0;
}

void mesh_barrier_choose(void)
{
    if (!kind)
        choose();
}

const char *mesh_barrier_refusal(void) { return kind == MESH_BARRIER_NONE ? refusal : NULL; }

/*
 * UFFDIO_WRITEPROTECT (like mprotect) works mapping by mapping and stops at the first one
 * it cannot change (ENOENT: a mapping never registered with the userfaultfd, i.e. a remap
 * whose registration the kernel refused or that raced the barrier's set-up), leaving the
 * mappings before it changed.  So a failed protect may have protected part of its range,
 * and a failed unprotect may have left part of it protected: a writer there would wait for
 * ever.  Both are made whole: protect registers the range and tries once more, and
 * otherwise lifts what it protected; unprotect goes page by page.
 */
int mesh_barrier_protect(void *addr, size_t len)
{
    if (test_fail_now())
        return -1;
    if (kind == MESH_BARRIER_UFFD) {
        if (uffd_protect_registering(addr, len) == 0)
            return 0;
    } else if (mesh_mprotect_real(addr, len, PROT_READ) == 0) {
        return 0;
    }
    int saved = errno;
    mesh_barrier_unprotect(addr, len);
    errno = saved;
    return -1;
}

/*
 * Lifting a userfaultfd protection does not by itself wake every writer (Linux 6.18; a
 * rare hang of barrier.sh's case C: a thread asleep in read(2) into the heap for ever).  A
 * writer that found its page protected spends a moment between the fault handler's check
 * and its wait (handle_userfault): an unprotect in that moment finds no waiter to wake, and
 * the writer then looks at the page table entry once more before it sleeps.  That look
 * asks "writable?", not "protected?", and a shared page only read since it was mapped stays
 * read-only after unprotect (only dirty ones are made writable): the writer sleeps with
 * nothing left to wake it.  So a lifted page is made writable (MADV_POPULATE_WRITE: a write
 * fault on each page, which on an unprotected shared page just sets the bits) and then the
 * writers are woken again: one that queued before the populate is woken, one that looks
 * after it sees a writable page and does not sleep.  Only pages known unprotected are
 * populated: a protected one would make this thread wait on its own barrier.  (A remap
 * needs no such care: it takes the mapping lock for writing, which a writer in that moment
 * holds for reading, so the writer is queued before the remap's wake.)
 */
static void settle_lifted(void *addr, size_t len)
{
    int saved = errno;
    madvise(addr, len, MADV_POPULATE_WRITE); /* ENOMEM: best effort, as memory goes */
    struct uffdio_range range = {(uintptr_t)addr, len};
    uffd_ioctl(UFFDIO_WAKE, &range);
    errno = saved;
}

int mesh_barrier_unprotect(void *addr, size_t len)
{
    if (kind == MESH_BARRIER_UFFD) {
        if (uffd_protect(addr, len, 0) == 0) {
            settle_lifted(addr, len);
            return 0;
        }
        struct uffdio_range range = {(uintptr_t)addr, len};
        if (errno == ENOENT) {
            /* Part of the range is not registered (not protected either): lift the rest a
             * page at a time, then wake the writers of the whole range. */
            for (size_t off = 0; off < len; off += MESH_PAGE_SIZE) {
                uint8_t *page = (uint8_t *)addr + off;
                if (uffd_protect(page, MESH_PAGE_SIZE, 0) == 0)
                    settle_lifted(page, MESH_PAGE_SIZE);
            }
            return uffd_ioctl(UFFDIO_WAKE, &range);
        }
        /* Writers must not wait for ever: unregistering drops the protection and wakes
         * them; the range is then never protected again (its protect calls fail). */
        return uffd_ioctl(UFFDIO_UNREGISTER, &range);
    }
    return mesh_mprotect_real(addr, len, PROT_READ | PROT_WRITE);
}

int mesh_barrier_reprotect(void *addr, size_t len)
{
    if (kind == MESH_BARRIER_UFFD)
        return uffd_register(addr, len) == 0 ? uffd_protect(addr, len, 1) : -1;
    return mesh_mprotect_real(addr, len, PROT_READ);
}

void mesh_barrier_remapped(void *addr, size_t len)
{
    if (kind != MESH_BARRIER_UFFD)
        return; /* the new mapping is writable; end() wakes the handler's waiters */
    /* A refused registration (the mapping limit) only means the range can never be
     * protected again: mesh_barrier_protect() then fails and its pairs are refused. */
    uffd_register(addr, len);
    struct uffdio_range range = {(uintptr_t)addr, len};
    uffd_ioctl(UFFDIO_WAKE, &range);
}

void mesh_barrier_end(void)
{
    if (kind != MESH_BARRIER_MPROTECT)
        return;
    atomic_store(&barrier_up, 0);
    mesh_futex(&barrier_up, FUTEX_WAKE, INT32_MAX);
}

int mesh_barrier_fault_fd(void)
{
    return kind == MESH_BARRIER_UFFD && mesh_fd_owned(&uffd) ? uffd.fd : -1;
}

int mesh_barrier_read_faults(void **addrs, int max)
{
    struct uffd_msg msgs[32];
    if (max > 32)
        max = 32;
    ssize_t got;
    while ((got = read(uffd.fd, msgs, sizeof msgs[0] * (size_t)max)) < 0 && errno == EINTR)
        ;
    if (got < 0)
        return errno == EAGAIN ? 0 : -1;
    int n = 0;
    for (ssize_t i = 0; i < got / (ssize_t)sizeof msgs[0]; i++)
        if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
            addrs[n++] = (void *)(uintptr_t)msgs[i].arg.pagefault.address;
    return n;
}

/*
 * Unprotecting a range nobody faulted on has the window settle_lifted describes, and its
 * cure (making every page writable) would make a page of every hole.  Unregistering has
 * no window: it changes the mappings, so it waits for every fault in progress there (a
 * writer between its look at the page and its sleep holds the mapping lock, and is queued
 * when it lets go) and clears the write-protection; a fault after it is an ordinary one.
 * It wakes only missing-mode waiters (Linux 6.18), so the queued writers are woken here.
 * The range is then registered again for the barriers to come.
 */
int mesh_barrier_release(void *addr, size_t len)
{
    struct uffdio_range range = {(uintptr_t)addr, len};
    int rc = uffd_ioctl(UFFDIO_UNREGISTER, &range);
    uffd_ioctl(UFFDIO_WAKE, &range);
    return rc == 0 ? uffd_register(addr, len) : -1;
}

int mesh_barrier_protect_all(void *addr, size_t len)
{
    if (kind != MESH_BARRIER_UFFD)
        return errno = ENOTSUP, -1;
    if (uffd_protect_registering(addr, len) == 0)
        return 0;
    int saved = errno;
    mesh_barrier_release(addr, len); /* not unprotect: that would fill the holes */
    errno = saved;
    return -1;
}

void mesh_barrier_forget(void)
{
    mesh_fd_drop(&uffd);
    kind = 0;
    refusal = NULL;
    atomic_store(&barrier_up, 0);
}

int mesh_barrier_kind(void) { return kind; }
