/*
 * main.c: meshd, the daemon that compacts the heaps of processes running libmesh.so.
 *
 *   meshd [--socket PATH] [--config FILE] [--metrics 127.0.0.1:PORT [--metrics-per-process]]
 *         [--foreground]
 *
 * Runs in the foreground (systemd or a shell supervises it) and logs to stderr.  Under
 * systemd it is Type=notify (READY=1 once listening, RELOADING=1/READY=1 around a SIGHUP
 * reload, STOPPING=1 on SIGTERM) and takes its socket from socket activation when given.
 * SIGHUP re-reads --config; a bad file is rejected and the old settings kept.
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "closer.h"
#include "dispatch.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "policy.h"
#include "registry.h"
#include "rounds.h"
#include "server.h"
#include "settings.h"
#include "socket_path.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: meshd [--socket PATH] [--config FILE] [--metrics 127.0.0.1:PORT "
               "[--metrics-per-process]] [--nice N] [--foreground]\n"
               "  socket default: $MESHD_SOCKET, else " MESHD_SYSTEM_SOCKET
               " (root), else $XDG_RUNTIME_DIR/meshd.sock;\n"
               "  with systemd socket activation (LISTEN_FDS) the passed socket is used.\n"
               "  metrics: a Prometheus endpoint on a loopback address, readable by every\n"
               "    local user: meshd-wide counters only, unless --metrics-per-process adds\n"
               "    each process's pid, exe and heap gauges (every user's processes).\n"
               "  nice: the niceness meshd's own work runs at, default 19 (never a higher\n"
               "    priority than it was started with); the programs it compacts go first.\n"
               "  config: KEY=VALUE lines (# comments), reloaded on SIGHUP; keys, with their defaults:\n");
    settings_usage(f, 4);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    notify_send("STOPPING=1");
    meshd_log("signal %d: shutting down", (int)sig);
    event_base_loopbreak(arg);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[96];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    notify_send(msg);
    meshd_counters.reloads++;
    if (policy_reload() != 0) {
        meshd_counters.reload_failures++;
        notify_send("READY=1\nSTATUS=reload rejected; old settings kept (see the log)");
    } else {
        notify_send("READY=1\nSTATUS=running");
    }
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    notify_send("WATCHDOG=1");
}

/* With WatchdogSec= a persistent timer pings systemd every half interval.  It runs on the
 * event loop itself, so a loop stuck on one client stops the pings and systemd restarts
 * meshd.  NULL when no watchdog is asked for, or (logged) when the timer cannot be set. */
static struct event *start_watchdog(struct event_base *base)
{
    unsigned long long usec = notify_watchdog_usec() / 2;
    if (!usec)
        return NULL;
    struct timeval tv = {.tv_sec = (time_t)(usec / 1000000), .tv_usec = (suseconds_t)(usec % 1000000)};
    struct event *ev = event_new(base, -1, EV_PERSIST, on_watchdog, NULL);
    if (!ev || event_add(ev, &tv) != 0) {
        meshd_log("cannot start the watchdog timer; systemd will restart meshd");
        if (ev)
            event_free(ev);
        return NULL;
    }
    meshd_log("watchdog: WATCHDOG=1 every %llu ms", usec / 1000);
    return ev;
}

/* Meshing in each process stops at half of vm.max_map_count mappings (shim/alias_map.h),
 * about one mapping per 4 KiB released: say so once when that is the binding limit. */
static void warn_small_map_count(void)
{
    FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
    unsigned long maps = 0;
    if (!f)
        return;
    if (fscanf(f, "%lu", &maps) != 1)
        maps = 0;
    fclose(f);
    if (maps && maps < 262144)
        meshd_log("vm.max_map_count is %lu: meshing may stop after about %lu MiB released per process (more where "
                  "meshes merge into runs); "
                  "raise it to 1048576 (the sysctl.d drop-in systemd/60-libmesh.conf, installed "
                  "by make install)",
                  maps, maps / 2 * 4096 / 2 >> 20);
}

/*
 * meshd's own work (a round's read of a span table and its plan: tens of milliseconds of
 * CPU) must not delay the programs it compacts.  At its default niceness a serving Redis
 * woke behind it: bench/frag redis-latency, SET at 2,000 a second while meshd compacted,
 * 6 interleaved runs each: p99.9 above 1 ms in 3 of 6 runs (1.10-1.76 ms; without meshd
 * 0.14-0.29 ms), none at nice 19 (0.12-0.46 ms), with the same pairs meshed.  Not
 * SCHED_IDLE: on a machine kept busy it would get next to no CPU, and stats and
 * registrations would wait.  Only ever lowered: a niceness an administrator set higher
 * stays.  -1 if arg is not a niceness.
 */
static int lower_priority(const char *arg)
{
    char *end;
    errno = 0;
    long nice_value = strtol(arg, &end, 10);
    if (errno || end == arg || *end || nice_value < -20 || nice_value > 19)
        return -1;
    errno = 0;
    int now = getpriority(PRIO_PROCESS, 0);
    if ((errno == 0 && now >= nice_value) || setpriority(PRIO_PROCESS, 0, (int)nice_value) == 0)
        return 0;
    meshd_log("cannot set niceness %ld: %s (running at %d)", nice_value, strerror(errno), now);
    return 0;
}

int main(int argc, char **argv)
{
    char path[108];
    const char *socket_path = NULL, *config = NULL, *metrics = NULL, *nice_arg = "19";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
            socket_path = argv[++i];
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strcmp(argv[i], "--metrics") && i + 1 < argc) {
            metrics = argv[++i];
        } else if (!strcmp(argv[i], "--nice") && i + 1 < argc) {
            nice_arg = argv[++i];
        } else if (!strcmp(argv[i], "--metrics-per-process")) {
            metrics_per_process(1);
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
    /* Before any thread: each inherits it. */
    if (lower_priority(nice_arg) != 0) {
        meshd_log("--nice: expected a niceness from -20 to 19, got \"%.32s\"", nice_arg);
        return 2;
    }
    /* Settings errors are the operator's: report them before touching anything. */
    struct policy_settings settings;
    char err[512];
    settings_defaults(&settings);
    if (config && settings_load_file(config, &settings, err, sizeof err) != 0) {
        meshd_log("%s", err);
        return 2;
    }
    /* SIGHUP re-reads the same file whatever the working directory becomes. */
    static char config_abs[4096];
    if (config && realpath(config, config_abs))
        config = config_abs;
    if (metrics) {
        char host[64];
        uint16_t port;
        if (metrics_parse_addr(metrics, host, sizeof host, &port, err, sizeof err) != 0) {
            meshd_log("%s", err);
            return 2;
        }
    }
    int activated = notify_listen_fd();
    if (activated < 0 && !socket_path) {
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
    if (closer_start(base) != 0)
        return 1;
    rounds_init(base, &policy_round_hooks);
    dispatch_init(base);
    warn_small_map_count();
    if (policy_start(base, &settings, config) != 0) {
        meshd_log("cannot start the policy timer");
        return 1;
    }
    if (activated >= 0) {
        if (server_listen_fd(base, activated) != 0)
            return 1;
        meshd_log("listening on the socket passed by the service manager%s",
                  socket_path ? " (--socket ignored)" : "");
    } else if (server_listen(base, socket_path) != 0) {
        return 1;
    }
    if (metrics && metrics_listen(base, metrics) != 0) {
        server_shutdown();
        return 1;
    }
    struct event *term = evsignal_new(base, SIGTERM, on_stop, base);
    struct event *intr = evsignal_new(base, SIGINT, on_stop, base);
    struct event *hup = evsignal_new(base, SIGHUP, on_hup, base);
    if (!term || !intr || !hup || event_add(term, NULL) != 0 || event_add(intr, NULL) != 0 ||
        event_add(hup, NULL) != 0) {
        meshd_log("cannot handle signals");
        server_shutdown();
        return 1;
    }
    policy_apply(&settings); /* logs the settings in force */
    struct event *watchdog = start_watchdog(base);
    notify_send("READY=1\nSTATUS=running");
    event_base_dispatch(base);
    if (watchdog)
        event_free(watchdog);
    server_shutdown();
    metrics_stop();
    policy_stop();
    closer_stop();
    event_free(term);
    event_free(intr);
    event_free(hup);
    event_base_free(base);
    meshd_log("stopped");
    return 0;
}
