/*
 * peer.h: whether the process at the other end of a connection is still the one that
 * connected.
 *
 * SO_PEERCRED's pid is the pid of the process that called connect(), at that time.  That
 * process may exit and leave the socket to a child, and its pid may go to somebody else: a
 * pid alone cannot tell a re-registration of the same process from a stranger reusing the
 * number.  A pidfd can: SO_PEERPIDFD (Linux 6.5) gives one for the very process that
 * connected, and fails once it has exited; pidfd_open(pid) at registration is the fallback
 * on older kernels (as good as the pid itself, but it keeps watching that process).
 */
#ifndef MESHD_PEER_H
#define MESHD_PEER_H

#include <sys/types.h>

/* A pidfd (O_CLOEXEC) for the process that connected sock; -1 with errno ESRCH if it has
 * exited (newer kernels give a pidfd of the exited process instead: see peer_exited), -1
 * with another errno if the kernel offers no pidfds. */
int peer_pidfd(int sock, pid_t pid);
/* 1 if the process behind pidfd has exited (pidfd -1: not known, 0). */
int peer_exited(int pidfd);
/* 1 if the peer of sock has closed its end. */
int peer_hung_up(int sock);

#endif
