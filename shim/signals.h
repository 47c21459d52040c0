/*
 * signals.h: keeps the mprotect barrier's SIGSEGV deliverable and in front.
 *
 * The mprotect barrier (barrier.h) is only safe if a write fault on a span being meshed
 * reaches the shim's handler.  A synchronous SIGSEGV that the faulting thread blocks kills
 * the process, and a program may install its own SIGSEGV handler at any time.  So, in that
 * mode only (MESH_BARRIER=mprotect), the shim interposes sigprocmask, pthread_sigmask,
 * sigaction and signal as Mesh's runtime does: SIGSEGV is never blocked (a program cannot
 * block a synchronous SIGSEGV to any useful end: it is fatal), and a program's SIGSEGV
 * disposition is recorded and run by the shim's handler for every fault that is not a
 * barrier's, instead of replacing it.  In every other mode the four calls behave exactly
 * as glibc's.
 */
#ifndef MESH_SIGNALS_H
#define MESH_SIGNALS_H

#include <signal.h>

/* Whether the process opted into the mprotect barrier (MESH_BARRIER=mprotect): read from
 * the environment at first use, then as the barrier decided (set_guarding). */
int mesh_signals_guarding(void);
void mesh_signals_set_guarding(int on);
/* Puts handler in front for SIGSEGV (the previous disposition becomes the program's);
 * 0, or -1 if sigaction failed. */
int mesh_signals_install(void (*handler)(int, siginfo_t *, void *));
/* Runs the program's SIGSEGV disposition for a fault that is not the shim's.  The
 * default action (or SIG_IGN, which the kernel overrides for a fault) is restored, so
 * that the faulting access, retried, kills the process as it would without the shim. */
void mesh_signals_chain(int sig, siginfo_t *info, void *ucontext);
/* Fork children need nothing: dispositions and masks are inherited as they are. */

#endif
