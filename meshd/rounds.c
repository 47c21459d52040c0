/* rounds.c: see rounds.h. */
#include "rounds.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "mesher.h"
#include "metrics.h"
#include "planner.h"
#include "printable.h"
#include "summary.h"

struct round {
    uint64_t request_id;
    uint64_t ctl_id;
    uint32_t pairs;
    uint64_t heap_before;
    double started; /* monotonic_now() when sent */
    int automatic;
    struct event *timeout;
    /* Until the request is sent: the plan being made (planner.h), with its pair limit. */
    struct mesh_plan *plan;
    struct planner *planner;
    unsigned limit;
};

static struct event_base *loop;
static round_done_fn round_done;
static uint64_t last_request_id;

void rounds_init(struct event_base *base, round_done_fn done)
{
    loop = base;
    round_done = done;
}

/* Ends p's round; one that sent nothing (discard) left the table as it was. */
static void round_discard(struct process *p)
{
    struct round *r = p->round;
    p->round = NULL;
    planner_cancel(r->planner);
    free(r->plan);
    event_free(r->timeout);
    free(r);
}

static void round_free(struct process *p)
{
    summary_invalidate(p); /* the round may have changed the table */
    round_discard(p);
}

/* The meshctl client that asked, if it is still connected. */
static struct conn *requester(const struct round *r)
{
    return r->ctl_id ? conn_by_id(r->ctl_id) : NULL;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct process *p = arg;
    struct conn *ctl = requester(p->round);
    meshd_log("pid %d: no reply to mesh request %llu within %d s", (int)p->pid,
              (unsigned long long)p->round->request_id, ROUND_TIMEOUT_SECONDS);
    if (ctl)
        conn_send_error(ctl, ETIMEDOUT, "the process did not answer the mesh request in time");
    meshd_counters.rounds++;
    meshd_counters.rounds_timed_out++;
    struct round_outcome o = {.started = p->round->started, .timed_out = 1};
    round_free(p);
    round_done(p, &o);
}

static void reply_done(struct conn *ctl, struct process *p, uint32_t pairs, uint32_t meshed,
                       uint64_t released, uint64_t before, uint64_t after)
{
    Mesh__MeshNowReply mr = MESH__MESH_NOW_REPLY__INIT;
    Mesh__Envelope env = MESH__ENVELOPE__INIT;
    mr.pid = p->pid;
    mr.pairs_sent = pairs;
    mr.meshed = meshed;
    mr.released_bytes = released;
    mr.heap_bytes_before = before;
    mr.heap_bytes_after = after;
    env.body_case = MESH__ENVELOPE__BODY_MESH_NOW_REPLY;
    env.mesh_now_reply = &mr;
    conn_send(ctl, &env);
}

int rounds_adopt(struct process *p, uint64_t ctl_id)
{
    if (!p->round || requester(p->round))
        return 0;
    p->round->ctl_id = ctl_id;
    return 1;
}

/* Sends p's round its plan (or answers at once if it has no pairs): 0, or EIO if the table
 * could not be read, with nothing sent and the round still p's to free. */
static int round_send(struct process *p)
{
    struct round *r = p->round;
    struct mesh_plan *plan = r->plan;
    struct mesh_span_table_counters c;
    if (process_counters(p, &c) != 0)
        return EIO;
    uint64_t before = pages_to_bytes(c.heap_pages);
    int automatic = r->automatic;
    double started = monotonic_now();
    if (plan->npairs == 0) {
        /* Nothing to ask the process: answer now rather than send an empty request. */
        meshd_log("pid %d: %sround: %zu sparse spans, no meshable pairs", (int)p->pid,
                  automatic ? "automatic " : "", plan->candidates);
        struct conn *ctl = requester(r);
        if (ctl)
            reply_done(ctl, p, 0, 0, 0, before, before);
        round_discard(p);
        meshd_counters.rounds++;
        if (automatic)
            meshd_counters.automatic_rounds++;
        round_done(p, &(struct round_outcome){.started = started});
        return 0;
    }
    r->request_id = ++last_request_id;
    r->pairs = (uint32_t)plan->npairs;
    r->heap_before = before;
    r->started = started;

    Mesh__MeshRequest req = MESH__MESH_REQUEST__INIT;
    Mesh__Envelope env = MESH__ENVELOPE__INIT;
    req.request_id = r->request_id;
    req.n_dst = req.n_src = plan->npairs;
    req.dst = plan->dst;
    req.src = plan->src;
    env.body_case = MESH__ENVELOPE__BODY_MESH_REQUEST;
    env.mesh_request = &req;
    struct timeval tv = {.tv_sec = ROUND_TIMEOUT_SECONDS};
    evtimer_add(r->timeout, &tv);
    meshd_log("pid %d: %sround %llu: %zu sparse spans, %zu pairs sent (limit %u); %zu extend a run",
              (int)p->pid, automatic ? "automatic " : "", (unsigned long long)r->request_id,
              plan->candidates, plan->npairs, r->limit, plan->run_pairs);
    /* A failed send fails the shim's connection, which ends the round through
     * rounds_process_gone() once the loop closes it.  req points into plan: free after. */
    conn_send(p->conn, &env);
    r->plan = NULL;
    free(plan);
    return 0;
}

/* A plan made over several turns of the loop (planner.h) is complete, or failed. */
static void on_planned(struct process *p, int ok)
{
    struct round *r = p->round;
    r->planner = NULL;
    if (ok && round_send(p) == 0)
        return;
    /* As rounds_start's EIO, later: the table is unreadable and the process is dropped. */
    struct conn *ctl = requester(r);
    if (ctl)
        conn_send_error(ctl, EIO, strerror(EIO));
    meshd_log("pid %d: span table unreadable while planning a round; dropping the process",
              (int)p->pid);
    round_discard(p);
    conn_fail(p->conn);
}

int rounds_start(struct process *p, uint64_t ctl_id, int automatic, unsigned limit, double cutoff)
{
    if (p->round)
        return EBUSY;
    struct round *r = calloc(1, sizeof *r);
    if (!r || !(r->plan = malloc(sizeof *r->plan)) ||
        !(r->timeout = evtimer_new(loop, on_timeout, p))) {
        if (r)
            free(r->plan);
        free(r);
        return ENOMEM;
    }
    r->ctl_id = ctl_id;
    r->automatic = automatic;
    r->limit = limit;
    p->round = r;
    /* The plan is made a slice at a time (planner.h); meanwhile the round is p's (EBUSY
     * to others, adoptable by a meshctl mesh) and on_planned() sends it. */
    int rc = planner_start(loop, p, r->plan, r->limit, cutoff, on_planned, &r->planner);
    if (rc > 0)
        return 0;
    if (rc == 0 && round_send(p) == 0)
        return 0;
    round_discard(p);
    return EIO;
}

/*
 * A process without a safe write barrier refuses every pair and says why (the shim's word:
 * kept printable and bounded).  Logged when it first says so or changes its answer; while
 * it refuses, the policy sends it no automatic round and meshctl stats shows the reason.
 */
static void note_refusal(struct process *p, const char *refused)
{
    char clean[sizeof p->refused];
    size_t n = 0;
    for (; refused && refused[n] && n + 1 < sizeof clean; n++)
        clean[n] = printable_or_mark(refused[n]);
    clean[n] = '\0';
    if (strcmp(clean, p->refused) == 0)
        return;
    if (n)
        meshd_log("pid %d: refuses to be meshed: %s; no automatic rounds for it", (int)p->pid, clean);
    else
        meshd_log("pid %d: accepts meshing again", (int)p->pid);
    memcpy(p->refused, clean, n + 1);
}

void rounds_reply(struct process *p, const Mesh__MeshReply *reply)
{
    struct round *r = p->round;
    if (!r || r->planner || reply->request_id != r->request_id) {
        /* A late answer to a round that timed out: its effects show in the counters. */
        meshd_log("pid %d: ignoring reply to mesh request %llu", (int)p->pid,
                  (unsigned long long)reply->request_id);
        return;
    }
    struct mesh_span_table_counters c;
    uint64_t after = process_counters(p, &c) == 0 ? pages_to_bytes(c.heap_pages) : r->heap_before;
    /* The reply is the shim's word, and a shim may lie: no number in it goes anywhere
     * (log, metrics, meshctl, policy) beyond what this round could have done.  Meshing a
     * pair releases at most one span of the process's biggest class; no count exceeds the
     * pairs sent; the barrier was held at most while the round ran. */
    uint32_t meshed = reply->meshed < r->pairs ? reply->meshed : r->pairs;
    uint64_t max_span_bytes = 0;
    for (unsigned i = 0; i < p->class_count; i++)
        if ((uint64_t)p->classes[i].span_pages * MESH_PAGE_SIZE > max_span_bytes)
            max_span_bytes = (uint64_t)p->classes[i].span_pages * MESH_PAGE_SIZE;
    uint64_t released = reply->released_bytes;
    if (released > (uint64_t)meshed * max_span_bytes)
        released = (uint64_t)meshed * max_span_bytes;
    uint32_t rejected[MESH_REJECT_REASONS] = {0};
    for (size_t i = 0; i < reply->n_rejected_by_reason && i < MESH_REJECT_REASONS; i++)
        rejected[i] = reply->rejected_by_reason[i] < r->pairs ? reply->rejected_by_reason[i]
                                                               : r->pairs;
    double secs = monotonic_now() - r->started;
    if (secs < 0)
        secs = 0;
    uint64_t barrier_ns_max = reply->barrier_ns_max;
    if ((double)barrier_ns_max > secs * 1e9)
        barrier_ns_max = (uint64_t)(secs * 1e9);
    uint64_t barrier_ns_total = reply->barrier_ns_total;
    if ((double)barrier_ns_total > secs * 1e9)
        barrier_ns_total = (uint64_t)(secs * 1e9);
    /* Holds: at most two a pair (a run undone, then the pair alone), and the histogram
     * counts no more than that either. */
    uint32_t max_holds = 2 * r->pairs;
    uint32_t holds = reply->holds < max_holds ? reply->holds : max_holds;
    uint32_t hist[HOLD_BUCKETS] = {0};
    uint32_t in_hist = 0;
    for (size_t i = 0; i < reply->n_hold_us_log2 && i < HOLD_BUCKETS; i++) {
        uint32_t v = reply->hold_us_log2[i] < max_holds - in_hist ? reply->hold_us_log2[i] : max_holds - in_hist;
        hist[i] = v;
        in_hist += v;
    }
    p->holds += holds;
    for (size_t i = 0; i < HOLD_BUCKETS; i++)
        p->hold_us_log2[i] += hist[i];
    if (barrier_ns_max > p->hold_ns_max)
        p->hold_ns_max = barrier_ns_max;
    /* Refusals by reason (enum mesh_reject_reason), e.g. "overlap=3 budget=12". */
    char why[160] = "";
    size_t used = 0;
    for (size_t i = 0; i < MESH_REJECT_REASONS; i++)
        if (rejected[i] && used < sizeof why)
            used += (size_t)snprintf(why + used, sizeof why - used, " %s=%u",
                                     mesh_reject_reason_name((unsigned)i), rejected[i]);
    note_refusal(p, reply->refused);
    meshd_log("pid %d: %sround %llu: %u/%u pairs meshed, %llu KiB released, heap %llu -> %llu KiB, "
              "barrier total %llu us in %u holds, max %llu us; rejected:%s",
              (int)p->pid, r->automatic ? "automatic " : "", (unsigned long long)r->request_id, meshed, r->pairs,
              (unsigned long long)(released >> 10),
              (unsigned long long)(r->heap_before >> 10), (unsigned long long)(after >> 10),
              (unsigned long long)(barrier_ns_total / 1000), holds, (unsigned long long)(barrier_ns_max / 1000),
              used ? why : " none");
    struct conn *ctl = requester(r);
    if (ctl)
        reply_done(ctl, p, r->pairs, meshed, released, r->heap_before, after);
    meshd_counters.rounds++;
    if (r->automatic)
        meshd_counters.automatic_rounds++;
    meshd_counters.pairs_sent += r->pairs;
    meshd_counters.pairs_meshed += meshed;
    meshd_counters.released_bytes += released;
    for (size_t i = 0; i < MESH_REJECT_REASONS; i++)
        meshd_counters.rejected[i] += rejected[i];
    uint32_t budget = rejected[MESH_REJECT_BUDGET];
    meshd_counters.round_seconds_sum += secs;
    meshd_counters.round_seconds_count++;
    struct round_outcome o = {.started = r->started, .pairs = r->pairs, .meshed = meshed,
                              .budget_rejected = budget, .barrier_ns = barrier_ns_total,
                              .holds = holds};
    memcpy(o.hold_us_log2, hist, sizeof hist);
    round_free(p);
    round_done(p, &o);
}

void rounds_process_gone(struct process *p)
{
    if (!p->round)
        return;
    struct conn *ctl = requester(p->round);
    if (ctl)
        conn_send_error(ctl, ESRCH, "the process went away during the meshing round");
    round_free(p);
}
