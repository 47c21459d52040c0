/*
 * closer.h: closes, off the event loop, descriptors whose close() a client can make block.
 *
 * The last close() of a file runs its release, and a client decides what that costs:
 *  - a TCP socket with unsent data and SO_LINGER waits up to the linger time (minutes);
 *  - a file on FUSE sends FLUSH and waits for the FUSE server, which may never answer;
 *  - a unix socket whose queue still holds messages with SCM_RIGHTS descriptors releases
 *    those descriptors, with the same costs.
 * Even a descriptor meshd never asked for is its to close once recvmsg() returned it.  So
 * every such descriptor is handed to a few helper threads.  A close that takes longer than
 * CLOSER_TIMEOUT_SECONDS is interrupted with a signal (TCP linger and FUSE requests wait
 * interruptibly); a thread that still does not come back is left alone and another one
 * started, up to CLOSER_MAX_THREADS.
 *
 * Every descriptor queued or being closed is charged to the uid that handed it to meshd:
 * server.c counts closer_pending(uid) against that uid's connection cap, so a client whose
 * descriptors do not close costs its own connection slots and nothing else.  The queue is
 * sized by RLIMIT_NOFILE (each entry is an open descriptor, so it cannot hold more).
 */
#ifndef MESHD_CLOSER_H
#define MESHD_CLOSER_H

#include <event2/event.h>
#include <stddef.h>
#include <sys/types.h>

#define CLOSER_TIMEOUT_SECONDS 2
#define CLOSER_MAX_THREADS 16

/* Starts the first threads and the watchdog timer.  0, or -1 (logged). */
int closer_start(struct event_base *base);
/* Closes fd on a helper thread, charged to uid.  Never blocks; if the queue is somehow full
 * the descriptor is made as cheap to close as possible and closed here. */
void closer_submit(int fd, uid_t uid);
/* Descriptors of uid queued or being closed. */
size_t closer_pending(uid_t uid);
/* Stops the threads (a stuck one is abandoned: the process is exiting). */
void closer_stop(void);

#endif
