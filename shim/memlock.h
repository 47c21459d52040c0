/* memlock.h: mlockall(2) that never faults in the arena's reservation, and mlock(2) ranges
 * that meshing never unlocks (memlock.c). */
#ifndef MESH_MEMLOCK_H
#define MESH_MEMLOCK_H

/* mlockall(flags) as the program asked, with MCL_ONFAULT added while the arena exists, the
 * window unlocked after it; the kernel's result and errno.  Also syscall(SYS_mlockall)'s. */
int mesh_memlock_all(int flags);

/* Before mlock(addr, len) or mlock2: the arena's spans under the range are never meshed
 * from now on (until freed), and no mesh of theirs is in flight.  errno kept. */
void mesh_memlock_range(const void *addr, size_t len);

#endif
