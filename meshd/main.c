/*
 * main.c: meshd, the daemon that compacts the heaps of processes running libmesh.so.
 *
 *   meshd [--socket PATH] [--foreground]
 *
 * Runs in the foreground (systemd or a shell supervises it) and logs to stderr.
 */
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "registry.h"
#include "rounds.h"
#include "server.h"
#include "socket_path.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: meshd [--socket PATH] [--foreground]\n"
               "  socket default: $MESHD_SOCKET, else " MESHD_SYSTEM_SOCKET
               " (root), else $XDG_RUNTIME_DIR/meshd.sock\n");
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    meshd_log("signal %d: shutting down", (int)sig);
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    char path[108];
    const char *socket_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
            socket_path = argv[++i];
        } else if (!strcmp(argv[i], "--foreground")) {
            continue; /* the only mode */
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!socket_path) {
        if (meshd_default_socket(path, sizeof path) != 0) {
            meshd_log("no socket path: give --socket or set MESHD_SOCKET or XDG_RUNTIME_DIR");
            return 1;
        }
        socket_path = path;
    }
    /* A client that vanishes mid-send must cost an EPIPE, not the daemon. */
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    if (!base || registry_init() != 0) {
        meshd_log("cannot set up the event loop");
        return 1;
    }
    rounds_init(base);
    if (server_listen(base, socket_path) != 0)
        return 1;
    struct event *term = evsignal_new(base, SIGTERM, on_stop, base);
    struct event *intr = evsignal_new(base, SIGINT, on_stop, base);
    if (!term || !intr || event_add(term, NULL) != 0 || event_add(intr, NULL) != 0) {
        meshd_log("cannot handle signals");
        server_shutdown();
        return 1;
    }
    event_base_dispatch(base);
    server_shutdown();
    event_free(term);
    event_free(intr);
    event_base_free(base);
    meshd_log("stopped");
    return 0;
}
