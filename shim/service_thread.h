/*
 * service_thread.h: the shim's own short-lived threads inside someone else's program (a
 * parent's cow thread, fork_cow.h; a sharing child's helper, fork_share.h).
 *
 * Such a thread must not take the program's signals (it blocks them all), must not count
 * on the program's descriptor table (a program that closes every descriptor after fork,
 * or dup2()s over numbers, would end its work early or make it act on the wrong object),
 * and must not keep the program's descriptors open (a socket's peer waits for its FIN).
 * So it moves to a descriptor table of its own holding only the descriptors it needs, and
 * is stepped through its life by a futex word its maker and it share.
 */
#ifndef MESH_SERVICE_THREAD_H
#define MESH_SERVICE_THREAD_H

#include <pthread.h>
#include <stdatomic.h>

/* A thread running fn(NULL) on a small stack with every signal blocked: detached, or
 * joinable with its handle in *joinable.  0, or -1 (no thread). */
int mesh_service_thread_start(void *(*fn)(void *), pthread_t *joinable);

/* Steps: *word = step, every waiter woken; and waiting while *word == from (the step after
 * it is returned). */
void mesh_step_to(_Atomic int *word, int step);
int mesh_step_after(_Atomic int *word, int from);
/* mesh_step_after for at most timeout_ms: the step then (still `from` if it timed out). */
int mesh_step_after_for(_Atomic int *word, int from, unsigned timeout_ms);

/* Calling thread: a descriptor table of its own (a copy of the process's), in which every
 * descriptor but the n in keep (distinct, open) is closed.  0, or -1 (no close_range
 * before Linux 5.9: its copies then go with the thread). */
int mesh_own_descriptors(const int *keep, int n);
/* Calling thread: closes every descriptor of its table (its own, from the above). */
void mesh_close_own_descriptors(void);

#endif
