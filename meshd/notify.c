/* notify.c: see notify.h. */
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

int notify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof sa.sun_path) {
        meshd_log("NOTIFY_SOCKET=%s: not a socket path; not notifying", path);
        return -1;
    }
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    int err = errno;
    close(fd);
    if (n < 0) {
        meshd_log("cannot notify %s: %s", path, strerror(err));
        return -1;
    }
    return 0;
}

int notify_listen_fd(void)
{
    const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
    int fd = -1;
    if (pid_s && fds_s) {
        char *end;
        long pid = strtol(pid_s, &end, 10);
        int pid_ok = *end == '\0' && pid == (long)getpid();
        long n = strtol(fds_s, &end, 10);
        if (pid_ok && *end == '\0' && n >= 1) {
            int type = 0, acc = 0;
            socklen_t tl = sizeof type, al = sizeof acc;
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            if (getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM &&
                getsockopt(3, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) == 0 && acc &&
                getsockname(3, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_UNIX) {
                fd = 3;
                fcntl(fd, F_SETFD, FD_CLOEXEC);
                fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                if (n > 1)
                    meshd_log("socket activation passed %ld sockets; using the first", n);
            } else {
                meshd_log("LISTEN_FDS: descriptor 3 is not a listening unix stream socket; "
                          "binding our own");
            }
        }
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return fd;
}

unsigned long long notify_watchdog_usec(void)
{
    const char *usec_s = getenv("WATCHDOG_USEC"), *pid_s = getenv("WATCHDOG_PID");
    char *end;
    if (!usec_s || !*usec_s)
        return 0;
    if (pid_s && *pid_s) {
        long pid = strtol(pid_s, &end, 10);
        if (*end != '\0' || pid != (long)getpid())
            return 0; /* meant for another process (we were started by a helper) */
    }
    errno = 0;
    unsigned long long usec = strtoull(usec_s, &end, 10);
    if (errno || *end != '\0' || usec == 0) {
        meshd_log("WATCHDOG_USEC=%s: not a number of microseconds; no watchdog", usec_s);
        return 0;
    }
    return usec;
}
