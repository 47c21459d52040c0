/* peer.c: see peer.h. */
#include "peer.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

int peer_pidfd(int sock, pid_t pid)
{
    int fd = -1;
    socklen_t len = sizeof fd;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &fd, &len) == 0 && fd >= 0)
        return fd;
    if (errno == ESRCH || errno == EINVAL)
        return errno = ESRCH, -1; /* the connecting process is gone */
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0); /* always close-on-exec; ESRCH: gone */
#else
    (void)pid;
    return errno = ENOSYS, -1;
#endif
}

int peer_exited(int pidfd)
{
    if (pidfd < 0)
        return 0;
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLHUP | POLLERR));
}

int peer_hung_up(int sock)
{
    struct pollfd p = {.fd = sock, .events = POLLRDHUP};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}
