/*
 * socket_path.h: where meshd listens and meshctl connects when --socket is not given
 * (shared by both programs, and the same rule the shim follows):
 *   $MESHD_SOCKET, else /run/meshd/meshd.sock for root, else $XDG_RUNTIME_DIR/meshd.sock.
 */
#ifndef MESHD_SOCKET_PATH_H
#define MESHD_SOCKET_PATH_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MESHD_SYSTEM_SOCKET "/run/meshd/meshd.sock"

/* 0 with the path in buf, or -1 if there is no default (not root, no XDG_RUNTIME_DIR). */
static inline int meshd_default_socket(char *buf, size_t cap)
{
    const char *env = getenv("MESHD_SOCKET");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (env && *env)
        n = snprintf(buf, cap, "%s", env);
    else if (geteuid() == 0)
        n = snprintf(buf, cap, "%s", MESHD_SYSTEM_SOCKET);
    else if (xdg && *xdg)
        n = snprintf(buf, cap, "%s/meshd.sock", xdg);
    else
        return -1;
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

#endif
