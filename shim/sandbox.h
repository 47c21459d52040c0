/*
 * sandbox.h: which system calls beyond glibc malloc's own the shim may make here.
 *
 * glibc's malloc needs only brk, mmap, munmap, mremap, mprotect and madvise.  The shim
 * also wants memfd_create (the shared arena and span table that make meshing possible),
 * userfaultfd (the kernel-side write barrier) and sched_setscheduler (holding barriers as
 * SCHED_FIFO).  A seccomp filter may answer any of them with an error, which the shim
 * survives (private anonymous memory, the mprotect barrier, no realtime raise), or with
 * SECCOMP_RET_KILL, which it would not.  A filter cannot be asked what it would do, so
 * when one is active the shim makes none of these calls: the process runs on a private
 * arena without meshing.  A program that installs a filter itself is noted before the call
 * (the prctl and syscall interposers: mesh_sandbox_note_filter), and no thread of the
 * shim's starts after it (a clone the filter may kill).  MESH_SECCOMP=trust (for an administrator whose profile allows
 * them, e.g. Docker's default profile, which answers userfaultfd with EPERM) skips the
 * check.
 */
#ifndef MESH_SANDBOX_H
#define MESH_SANDBOX_H

/* Why the arena is private (mesh_stats.private_reason); 0 while it is a memfd. */
enum mesh_private_reason {
    MESH_PRIVATE_NONE = 0,
    MESH_PRIVATE_NO_MEMFD = 1, /* memfd_create or mapping it failed (ENOSYS, EPERM, limits) */
    MESH_PRIVATE_SECCOMP = 2,  /* a seccomp filter is active: memfd_create not tried */
    MESH_PRIVATE_FILE_SIZE = 3, /* RLIMIT_FSIZE below the arena's size: not tried */
};

/* Looks at the process's seccomp state now (at set-up, and in every fork child before it
 * makes its private heap) and remembers it for mesh_memfd_create. */
void mesh_sandbox_check(void);
/* mesh_sandbox_filtered_now for the control thread while registered with meshd: through
 * /proc/self/status kept open at a high number (sandbox.c says why) until
 * mesh_sandbox_release_kept. */
int mesh_sandbox_filtered_kept(void);
void mesh_sandbox_release_kept(void);
/* Fork child, before mesh_sandbox_check: the kept descriptor (the parent's file) and its
 * lock, which a thread that did not come along may have held. */
void mesh_sandbox_after_fork_child(void);
/* 1 if a seccomp filter is active right now (and not trusted); for the calls made long
 * after set-up (userfaultfd, sched_setscheduler), since a program may install a filter
 * late. */
int mesh_sandbox_filtered_now(void);
/* mesh_sandbox_filtered_now for a periodic look of the control thread that holds no kept
 * descriptor: read through mesh_read_file_aside (fdutil.h), no descriptor in the
 * program's table; -1 when it cannot be read (no child, no /proc: the caller makes no
 * call it guards, this time).  A filter seen at set-up or noted since answers 1 at once. */
int mesh_sandbox_filtered_aside(void);
/* The program installs a filter (prctl(PR_SET_SECCOMP), seccomp(SECCOMP_SET_MODE_*)):
 * filtered from now on, as if set-up had seen it (no thread starts, no call of the shim's
 * own is made); the interposers call it before the call. */
void mesh_sandbox_note_filter(void);
/* What the last mesh_sandbox_check saw (set-up, fork child): for a look that must not
 * open a descriptor to ask. */
int mesh_sandbox_filtered_seen(void);
/* memfd_create(name, MFD_CLOEXEC | flags), or -1 with errno EPERM without calling it when the last
 * mesh_sandbox_check saw a filter. */
int mesh_memfd_create(const char *name, unsigned flags);
/* Records why the arena just set up (or cloned in a fork child) is private, if it is. */
void mesh_sandbox_note_arena(int have_memfd, int file_too_big);
/* enum mesh_private_reason, as last recorded. */
extern int mesh_private_reason;

#endif
