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
 * mlock(2) of a range is vma_attrs.c's.
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
#include "memlock.h"

#ifndef MESH_NO_INTERPOSE

static void *_Atomic next_mlockall;

__attribute__((constructor)) static void resolve_next(void) { (void)mesh_next_symbol(&next_mlockall, "mlockall"); }

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

#endif /* MESH_NO_INTERPOSE */
