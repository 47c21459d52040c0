/*
 * metrics.h: meshd's counters and its Prometheus text endpoint.
 *
 *   meshd --metrics 127.0.0.1:PORT [--metrics-per-process]
 *         (or [::1]:PORT, localhost:PORT; PORT 0 = any free port)
 *
 * GET /metrics answers "text/plain; version=0.0.4" with the daemon's counters and, only
 * with --metrics-per-process, per registered process gauges from its span table (pid and
 * exe labels).  The endpoint has no authentication: anyone on the machine can read it, so
 * by default it holds nothing a user could not learn from meshctl (meshctl shows each user
 * only their own processes), and only loopback addresses are accepted.
 *
 * Bounds (metrics_http.c): at most 16 connections at once (a new one replaces the oldest
 * that has not sent its request, so idle ones cannot lock a scraper out), 10 s
 * to send a request and to take the answer, one request per connection; a failing
 * accept() (out of descriptors) pauses accepting for a second instead of spinning.
 */
#ifndef MESHD_METRICS_H
#define MESHD_METRICS_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#include "span_table_abi.h"

struct meshd_counters {
    uint64_t rounds, automatic_rounds, rounds_timed_out;
    uint64_t pairs_sent, pairs_meshed, released_bytes;
    uint64_t rejected[MESH_REJECT_REASONS];
    double round_seconds_sum;      /* request sent to reply received */
    uint64_t round_seconds_count;
    uint64_t reloads, reload_failures;
};

extern struct meshd_counters meshd_counters;

/* Splits and checks "HOST:PORT" (HOST a loopback address).  0, or -1 with a message. */
int metrics_parse_addr(const char *spec, char *host, size_t hostcap, uint16_t *port, char *err,
                       size_t errcap);
/* Starts the endpoint; 0, or -1 (logged). */
int metrics_listen(struct event_base *base, const char *spec);
void metrics_stop(void);
/* Per-process series on (1) or off (0, the default). */
void metrics_per_process(int on);
/* metrics_http.c: serves GET /metrics on host:port (an IP address); *bound is the port. */
int metrics_http_listen(struct event_base *base, const char *host, uint16_t port, unsigned *bound);
void metrics_http_stop(void);
/* Writes the whole exposition into out (the endpoint's reply body). */
struct evbuffer;
void metrics_render(struct evbuffer *out);

#endif
