/*
 * socket_path.h: where meshd listens, and meshctl and the shim connect, when no path is
 * given: $MESHD_SOCKET, else /run/meshd/meshd.sock for root, else
 * $XDG_RUNTIME_DIR/meshd.sock.  One rule for all three programs.  Built from string
 * functions only (no stdio), so the shim can use it inside other programs.
 */
#ifndef MESHD_SOCKET_PATH_H
#define MESHD_SOCKET_PATH_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MESHD_SYSTEM_SOCKET "/run/meshd/meshd.sock"

/* 0 with the path in buf, or -1 if there is no default (not root, no XDG_RUNTIME_DIR) or
 * it does not fit in cap bytes. */
static inline int meshd_default_socket(char *buf, size_t cap)
{
    const char *env = getenv("MESHD_SOCKET");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    const char *dir, *file;
    if (env && *env)
        dir = env, file = "";
    else if (geteuid() == 0)
        dir = MESHD_SYSTEM_SOCKET, file = "";
    else if (xdg && *xdg)
        dir = xdg, file = "/meshd.sock";
    else
        return -1;
    size_t a = strlen(dir), b = strlen(file);
    if (a + b >= cap)
        return -1;
    memcpy(buf, dir, a);
    memcpy(buf + a, file, b + 1);
    return 0;
}

#endif
