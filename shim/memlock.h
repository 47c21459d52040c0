/* memlock.h: mlockall(2) that never faults in the arena's reservation (memlock.c). */
#ifndef MESH_MEMLOCK_H
#define MESH_MEMLOCK_H

/* mlockall(flags) as the program asked, with MCL_ONFAULT added while the arena exists, the
 * window unlocked after it; the kernel's result and errno.  Also syscall(SYS_mlockall)'s. */
int mesh_memlock_all(int flags);

#endif
