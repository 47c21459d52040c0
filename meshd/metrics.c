/* metrics.c: see metrics.h. */
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "policy.h"
#include "printable.h"
#include "registry.h"
#include "summary.h"

struct meshd_counters meshd_counters;

static int per_process;

void metrics_per_process(int on) { per_process = on; }

int metrics_parse_addr(const char *spec, char *host, size_t hostcap, uint16_t *port, char *err,
                       size_t errcap)
{
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec) {
        snprintf(err, errcap, "--metrics %s: want HOST:PORT, e.g. 127.0.0.1:9464", spec);
        return -1;
    }
    char *end;
    errno = 0;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p > 65535) {
        snprintf(err, errcap, "--metrics %s: bad port", spec);
        return -1;
    }
    size_t hlen = (size_t)(colon - spec);
    const char *h = spec;
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen + 1 > hostcap) {
        snprintf(err, errcap, "--metrics %s: host too long", spec);
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (!strcmp(host, "localhost"))
        snprintf(host, hostcap, "127.0.0.1");
    struct in_addr a4;
    struct in6_addr a6;
    int loopback = 0;
    if (inet_pton(AF_INET, host, &a4) == 1)
        loopback = (ntohl(a4.s_addr) >> 24) == 127;
    else if (inet_pton(AF_INET6, host, &a6) == 1)
        loopback = IN6_IS_ADDR_LOOPBACK(&a6);
    else {
        snprintf(err, errcap, "--metrics %s: \"%s\" is not an IP address", spec, host);
        return -1;
    }
    if (!loopback) {
        snprintf(err, errcap,
                 "--metrics %s: refusing a non-loopback address (the endpoint has no "
                 "authentication); use 127.0.0.1 or ::1",
                 spec);
        return -1;
    }
    *port = (uint16_t)p;
    return 0;
}

/* A label value: backslash, double quote and newline escaped; other control bytes and
 * non-ASCII become '?' so the exposition stays one line per sample. */
static void label_value(struct evbuffer *out, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\\')
            evbuffer_add(out, "\\\\", 2);
        else if (ch == '"')
            evbuffer_add(out, "\\\"", 2);
        else if (ch == '\n')
            evbuffer_add(out, "\\n", 2);
        else {
            char shown = printable_or_mark(*s);
            evbuffer_add(out, &shown, 1);
        }
    }
}

static void head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void proc_labels(struct evbuffer *out, const struct process *p)
{
    evbuffer_add_printf(out, "{pid=\"%d\",exe=\"", (int)p->pid);
    label_value(out, p->exe);
    evbuffer_add(out, "\"}", 2);
}

void metrics_render(struct evbuffer *out)
{
    const struct meshd_counters *m = &meshd_counters;
    head(out, "meshd_processes", "gauge", "Processes registered with meshd.");
    evbuffer_add_printf(out, "meshd_processes %zu\n", registry_count());
    head(out, "meshd_rounds_total", "counter", "Meshing rounds finished (automatic or requested).");
    evbuffer_add_printf(out, "meshd_rounds_total %llu\n", (unsigned long long)m->rounds);
    head(out, "meshd_automatic_rounds_total", "counter", "Meshing rounds started by the policy.");
    evbuffer_add_printf(out, "meshd_automatic_rounds_total %llu\n",
                        (unsigned long long)m->automatic_rounds);
    head(out, "meshd_rounds_timed_out_total", "counter", "Meshing rounds the process did not answer.");
    evbuffer_add_printf(out, "meshd_rounds_timed_out_total %llu\n",
                        (unsigned long long)m->rounds_timed_out);
    head(out, "meshd_pairs_sent_total", "counter", "Span pairs proposed to processes.");
    evbuffer_add_printf(out, "meshd_pairs_sent_total %llu\n", (unsigned long long)m->pairs_sent);
    head(out, "meshd_pairs_meshed_total", "counter", "Span pairs the processes meshed.");
    evbuffer_add_printf(out, "meshd_pairs_meshed_total %llu\n", (unsigned long long)m->pairs_meshed);
    head(out, "meshd_pairs_rejected_total", "counter",
         "Span pairs the processes refused, by reason.");
    for (int i = 0; i < MESH_REJECT_REASONS; i++)
        evbuffer_add_printf(out, "meshd_pairs_rejected_total{reason=\"%s\"} %llu\n",
                            mesh_reject_reason_name((unsigned)i), (unsigned long long)m->rejected[i]);
    head(out, "meshd_round_seconds", "summary",
         "Time from sending a mesh request to its reply (a round sends several).");
    evbuffer_add_printf(out, "meshd_round_seconds_sum %.9f\nmeshd_round_seconds_count %llu\n",
                        m->round_seconds_sum, (unsigned long long)m->round_seconds_count);
    head(out, "meshd_config_reloads_total", "counter", "Configuration reloads (SIGHUP).");
    evbuffer_add_printf(out, "meshd_config_reloads_total %llu\n", (unsigned long long)m->reloads);
    head(out, "meshd_config_reload_failures_total", "counter",
         "Configuration reloads rejected (old settings kept).");
    evbuffer_add_printf(out, "meshd_config_reload_failures_total %llu\n",
                        (unsigned long long)m->reload_failures);

    /* Per process only where the operator asked for it (metrics_per_process): anyone on
     * the machine can read the endpoint, and meshctl shows a user only their own
     * processes.  From each table's summary (summary.h), which reads the table's header and
     * only the regions that changed since the last one, so a scrape costs what changed, not
     * the heap's size; a table that cannot be read is skipped here, the next policy tick or
     * request drops that process.  The counters are the process's word (span_table_abi.h). */
    if (!per_process)
        return;
    static const struct {
        const char *name, *type, *help;
    } per[] = {
        {"meshd_heap_bytes", "gauge", "Physical bytes of the process's heap (reported by the process)."},
        {"meshd_live_bytes", "gauge",
         "Bytes in the process's allocated objects (its span table's bitmaps, as meshd last read them)."},
        {"meshd_released_bytes_total", "counter",
         "Physical bytes meshing released in the process (reported by the process)."},
        {"meshd_meshes_total", "counter", "Span pairs meshed in the process (reported by the process)."},
        {"meshd_map_breaks", "gauge",
         "Kernel mappings meshing added in the process (its shim's count)."},
        {"meshd_map_limit", "gauge",
         "The most mappings the process's shim lets meshing add (half of vm.max_map_count)."},
        {"meshd_meshing_refused", "gauge",
         "1 if the process refuses to be meshed (no safe write barrier; meshctl stats says why)."},
    };
    size_t n = registry_count(), k = 0;
    struct {
        struct process *p;
        uint64_t v[sizeof per / sizeof per[0]];
    } *rows = calloc(n ? n : 1, sizeof *rows);
    if (!rows)
        return;
    for (struct process *p = registry_first(); p && k < n; p = p->next) {
        int broken;
        const struct table_summary *sum =
            summary_for_list(p, policy_current()->occupancy_cutoff, &broken);
        if (!sum)
            continue;
        const struct process_stats st = sum->st;
        rows[k].p = p;
        rows[k].v[0] = st.heap_bytes;
        rows[k].v[1] = st.live_bytes;
        rows[k].v[2] = st.released_bytes;
        rows[k].v[3] = st.meshes;
        rows[k].v[4] = st.map_breaks;
        rows[k].v[5] = st.map_limit;
        rows[k].v[6] = p->refused[0] != 0;
        k++;
    }
    for (size_t j = 0; j < sizeof per / sizeof per[0]; j++) {
        head(out, per[j].name, per[j].type, per[j].help);
        for (size_t i = 0; i < k; i++) {
            evbuffer_add_printf(out, "%s", per[j].name);
            proc_labels(out, rows[i].p);
            evbuffer_add_printf(out, " %llu\n", (unsigned long long)rows[i].v[j]);
        }
    }
    free(rows);
}

int metrics_listen(struct event_base *base, const char *spec)
{
    char host[64], err[256];
    uint16_t port;
    unsigned bound;
    if (metrics_parse_addr(spec, host, sizeof host, &port, err, sizeof err) != 0) {
        meshd_log("%s", err);
        return -1;
    }
    if (metrics_http_listen(base, host, port, &bound) != 0) {
        meshd_log("--metrics %s: cannot listen: %s", spec, strerror(errno));
        return -1;
    }
    meshd_log("metrics on http://%s%s%s:%u/metrics%s", strchr(host, ':') ? "[" : "", host,
              strchr(host, ':') ? "]" : "", bound,
              per_process ? " (with per-process series)" : "");
    return 0;
}

void metrics_stop(void) { metrics_http_stop(); }
