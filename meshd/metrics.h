/*
 * metrics.h: meshd's counters and its Prometheus text endpoint.
 *
 *   meshd --metrics 127.0.0.1:PORT     (or [::1]:PORT, localhost:PORT; PORT 0 = any free port)
 *
 * GET /metrics answers "text/plain; version=0.0.4" with the daemon's counters and, per
 * registered process, gauges read from its span table at scrape time.  Only loopback
 * addresses are accepted: the endpoint has no authentication, and exe names and pids of
 * every user's processes are in it.
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
extern const char *const mesh_reject_names[MESH_REJECT_REASONS];

/* Splits and checks "HOST:PORT" (HOST a loopback address).  0, or -1 with a message. */
int metrics_parse_addr(const char *spec, char *host, size_t hostcap, uint16_t *port, char *err,
                       size_t errcap);
/* Starts the endpoint; 0, or -1 (logged). */
int metrics_listen(struct event_base *base, const char *spec);
void metrics_stop(void);
/* Writes the whole exposition into buf (for tests and the endpoint). */
struct evbuffer;
void metrics_render(struct evbuffer *out);

#endif
