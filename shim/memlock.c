/*
 * memlock.c: mlockall(2) without populating the arena's reservation.
 *
 * mlockall(MCL_CURRENT) faults in every page of every mapping, and MCL_FUTURE every page
 * of every later one.  The arena is a reservation of up to 8 x (RAM + swap) of shared
 * memory, with the window (its second view) as large again: locking it page by page
 * allocated shmem until the machine ran out of memory (as root; a program that worked
 * under glibc, such as a real-time or a secret-keeping daemon, never came back from the
 * call).  So the program's call is made with MCL_ONFAULT added: every mapping is locked,
 * and each page as it is touched (what the program has written is never swapped out), but
 * nothing is faulted in up front; the program's own mappings lose that too (a first touch
 * of a page after the call is a minor fault, where glibc would have made it before).
 *
 * The window is then unlocked: the shim releases file pages through it with
 * madvise(MADV_REMOVE), which the kernel refuses on a locked range, and the program never
 * touches it.  The pages themselves stay locked through the arena's view while in use.
 *
 * mlock(addr, len) and mlock2() lock the pages of a range, often a malloc'ed buffer holding
 * a secret that must never reach swap.  The lock belongs to the mapping (the VMA), and
 * meshing replaces a source span's mapping with one of the destination's physical page:
 * the lock was lost (VmLck fell, the secret's copy sat in an unlocked page).  So the spans
 * under the range are marked held (kernel_hold.h: never meshed until freed) before the
 * call, and the call is made only once no mesh that missed the marks is in flight.
 * munlock leaves the marks: a span held a little too long costs only meshing.
 *
 * mlockall made through syscall(2) comes here too (kernel_calls.c); an inline system call
 * is not seen.  A process whose RLIMIT_MEMLOCK is below its address-space size (the
 * reservation counts) still gets ENOMEM from the kernel, as it would under glibc with that
 * much mapped: root and CAP_IPC_LOCK are not limited.
 */
#include <errno.h>
#include <sys/mman.h>

#include "arena.h"
#include "common.h"
#include "interpose.h"
#include "kernel_hold.h"
#include "memlock.h"

void mesh_memlock_range(const void *addr, size_t len)
{
    int saved = errno;
    mesh_kernel_hold_settled((uintptr_t)addr, len);
    errno = saved;
}

#ifndef MESH_NO_INTERPOSE

static void *_Atomic next_mlockall, *_Atomic next_mlock, *_Atomic next_mlock2;

__attribute__((constructor)) static void resolve_next(void)
{
    (void)mesh_next_symbol(&next_mlockall, "mlockall");
    (void)mesh_next_symbol(&next_mlock, "mlock");
    (void)mesh_next_symbol(&next_mlock2, "mlock2");
}

int mesh_memlock_all(int flags)
{
    int (*real)(int) = (int (*)(int))mesh_next_symbol(&next_mlockall, "mlockall");
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    /* Without MCL_CURRENT or MCL_FUTURE the call is invalid: the kernel says so. */
    if (!mesh_arena.bytes || !(flags & (MCL_CURRENT | MCL_FUTURE)))
        return real(flags);
    int rc = real(flags | MCL_ONFAULT);
    if (rc == 0 && mesh_arena.window) {
        int saved = errno;
        munlock(mesh_arena.window, mesh_arena.bytes);
        errno = saved;
    }
    return rc;
}

MESH_EXPORT int mlockall(int flags) { return mesh_memlock_all(flags); }

MESH_EXPORT int mlock(const void *addr, size_t len)
{
    int (*real)(const void *, size_t) = (int (*)(const void *, size_t))mesh_next_symbol(&next_mlock, "mlock");
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    mesh_memlock_range(addr, len);
    return real(addr, len);
}

MESH_EXPORT int mlock2(const void *addr, size_t len, unsigned int flags)
{
    int (*real)(const void *, size_t, unsigned int) =
        (int (*)(const void *, size_t, unsigned int))mesh_next_symbol(&next_mlock2, "mlock2");
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    mesh_memlock_range(addr, len);
    return real(addr, len, flags);
}

#endif /* MESH_NO_INTERPOSE */
