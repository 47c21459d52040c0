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
    uint64_t round_id;   /* for the log */
    uint64_t request_id; /* of the request in flight; 0: none */
    uint64_t ctl_id;
    uint64_t heap_before;
    double started; /* monotonic_now() when the first request was sent */
    int automatic;
    struct event *timeout; /* the request in flight's */
    struct event *pace;    /* the wait before the next request */
    /* The plan (planner.h) with its pair limit: being made until planner is NULL, then
     * sent a request at a time, plan->dst/src[0, sent) so far. */
    struct mesh_plan *plan;
    struct planner *planner;
    unsigned limit;
    size_t sent;
    uint32_t in_flight;      /* pairs of the request in flight */
    double request_started;  /* when it was sent */
    /* The answered requests' totals, each number checked against its own request. */
    unsigned requests;
    uint32_t answered, meshed;
    uint64_t released;
    uint32_t rejected[MESH_REJECT_REASONS];
    uint64_t barrier_ns, barrier_ns_max, longest_request_ns;
    uint32_t holds;
};

static struct event_base *loop;
static const struct round_hooks *hooks;
static uint64_t last_request_id, last_round_id;

void rounds_init(struct event_base *base, const struct round_hooks *h)
{
    loop = base;
    hooks = h;
}

/* Ends p's round; one that sent nothing (discard) left the table as it was. */
static void round_discard(struct process *p)
{
    struct round *r = p->round;
    p->round = NULL;
    planner_cancel(r->planner);
    free(r->plan);
    event_free(r->timeout);
    event_free(r->pace);
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

/* Adds the answered requests' totals to meshd's counters. */
static void count_round(const struct round *r)
{
    meshd_counters.rounds++;
    if (r->automatic)
        meshd_counters.automatic_rounds++;
    meshd_counters.pairs_sent += r->answered;
    meshd_counters.pairs_meshed += r->meshed;
    meshd_counters.released_bytes += r->released;
    for (size_t i = 0; i < MESH_REJECT_REASONS; i++)
        meshd_counters.rejected[i] += r->rejected[i];
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct process *p = arg;
    struct round *r = p->round;
    struct conn *ctl = requester(r);
    meshd_log("pid %d: no reply to mesh request %llu within %d s", (int)p->pid,
              (unsigned long long)r->request_id, ROUND_TIMEOUT_SECONDS);
    if (ctl)
        conn_send_error(ctl, ETIMEDOUT, "the process did not answer the mesh request in time");
    double now = monotonic_now();
    count_round(r);
    meshd_counters.rounds_timed_out++;
    struct round_outcome req = {.started = r->request_started, .ended = now, .timed_out = 1};
    struct round_outcome o = {.started = r->started, .ended = now, .timed_out = 1};
    round_free(p);
    hooks->request_done(p, &req);
    hooks->done(p, &o);
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
    struct round *r = p->round;
    if (!r || requester(r))
        return 0;
    r->ctl_id = ctl_id;
    /* Someone waits now: a request held back for the duty budget goes at once. */
    if (evtimer_pending(r->pace, NULL)) {
        event_del(r->pace);
        event_active(r->pace, EV_TIMEOUT, 0);
    }
    return 1;
}

/* Sends the next request of p's round: at most `pairs` pairs of what is left of its plan. */
static void send_request(struct process *p, unsigned pairs, int background)
{
    struct round *r = p->round;
    size_t left = r->plan->npairs - r->sent;
    uint32_t n = (uint32_t)(pairs && pairs < left ? pairs : left);
    r->request_id = ++last_request_id;
    r->in_flight = n;
    r->request_started = monotonic_now();
    Mesh__MeshRequest req = MESH__MESH_REQUEST__INIT;
    Mesh__Envelope env = MESH__ENVELOPE__INIT;
    req.request_id = r->request_id;
    req.background = background; /* pace() sets it only when no one waits for the round */
    req.n_dst = req.n_src = n;
    req.dst = r->plan->dst + r->sent;
    req.src = r->plan->src + r->sent;
    r->sent += n;
    env.body_case = MESH__ENVELOPE__BODY_MESH_REQUEST;
    env.mesh_request = &req;
    struct timeval tv = {.tv_sec = ROUND_TIMEOUT_SECONDS};
    evtimer_add(r->timeout, &tv);
    /* A failed send fails the shim's connection, which ends the round through
     * rounds_process_gone() once the loop closes it. */
    conn_send(p->conn, &env);
}

/* The next request of p's round, now or after the wait the hooks ask for. */
static void next_request(struct process *p)
{
    struct round *r = p->round;
    struct round_pace pc = hooks->pace(p, requester(r) != NULL);
    if (pc.wait > 0) {
        struct timeval tv = {.tv_sec = (time_t)pc.wait};
        tv.tv_usec = (suseconds_t)((pc.wait - (double)tv.tv_sec) * 1e6);
        evtimer_add(r->pace, &tv);
        return;
    }
    send_request(p, pc.pairs, pc.background);
}

/* The wait for the duty budget is over (or someone adopted the round). */
static void on_pace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct process *p = arg;
    /* Paced again: the wait may have been for spare CPU, which may still be lacking. */
    next_request(p);
}

/* Starts sending p's round its plan (or answers at once if it has no pairs): 0, or EIO if
 * the table could not be read, with nothing sent and the round still p's to free. */
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
        hooks->done(p, &(struct round_outcome){.started = started, .ended = started});
        return 0;
    }
    r->round_id = ++last_round_id;
    r->heap_before = before;
    r->started = started;
    meshd_log("pid %d: %sround %llu: %zu sparse spans, %zu pairs planned (limit %u); %zu extend a run "
              "(%zu with their destination)",
              (int)p->pid, automatic ? "automatic " : "", (unsigned long long)r->round_id,
              plan->candidates, plan->npairs, r->limit, plan->src_run_pairs, plan->run_pairs);
    next_request(p);
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
        !(r->timeout = evtimer_new(loop, on_timeout, p)) || !(r->pace = evtimer_new(loop, on_pace, p))) {
        if (r) {
            free(r->plan);
            if (r->timeout)
                event_free(r->timeout);
        }
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

/* The last request of p's round was answered: its totals go to the log, the requester,
 * meshd's counters and the hooks. */
static void round_finish(struct process *p)
{
    struct round *r = p->round;
    struct mesh_span_table_counters c;
    uint64_t after = process_counters(p, &c) == 0 ? pages_to_bytes(c.heap_pages) : r->heap_before;
    double now = monotonic_now(), secs = now - r->started;
    /* Refusals by reason (enum mesh_reject_reason), e.g. "overlap=3 budget=12". */
    char why[160] = "";
    size_t used = 0;
    for (size_t i = 0; i < MESH_REJECT_REASONS; i++)
        if (r->rejected[i] && used < sizeof why)
            used += (size_t)snprintf(why + used, sizeof why - used, " %s=%u",
                                     mesh_reject_reason_name((unsigned)i), r->rejected[i]);
    meshd_log("pid %d: %sround %llu: %u/%u pairs meshed in %u requests over %.2f s, %llu KiB "
              "released, heap %llu -> %llu KiB, barrier total %llu us in %u holds, max %llu us, longest "
              "request %llu us; rejected:%s",
              (int)p->pid, r->automatic ? "automatic " : "", (unsigned long long)r->round_id,
              r->meshed, r->answered, r->requests, secs, (unsigned long long)(r->released >> 10),
              (unsigned long long)(r->heap_before >> 10), (unsigned long long)(after >> 10),
              (unsigned long long)(r->barrier_ns / 1000), r->holds, (unsigned long long)(r->barrier_ns_max / 1000),
              (unsigned long long)(r->longest_request_ns / 1000), used ? why : " none");
    struct conn *ctl = requester(r);
    if (ctl)
        reply_done(ctl, p, r->answered, r->meshed, r->released, r->heap_before, after);
    count_round(r);
    struct round_outcome o = {.started = r->started, .ended = now, .pairs = r->answered,
                              .meshed = r->meshed, .budget_rejected = r->rejected[MESH_REJECT_BUDGET],
                              .barrier_ns = r->barrier_ns, .holds = r->holds};
    round_free(p);
    hooks->done(p, &o);
}

void rounds_reply(struct process *p, const Mesh__MeshReply *reply)
{
    struct round *r = p->round;
    if (!r || !r->request_id || reply->request_id != r->request_id) {
        /* A late answer to a request that timed out: its effects show in the counters. */
        meshd_log("pid %d: ignoring reply to mesh request %llu", (int)p->pid,
                  (unsigned long long)reply->request_id);
        return;
    }
    evtimer_del(r->timeout);
    r->request_id = 0;
    summary_invalidate(p); /* the request may have changed the table */
    /* The reply is the shim's word, and a shim may lie: no number in it goes anywhere
     * (log, metrics, meshctl, policy) beyond what this request could have done.  Meshing a
     * pair releases at most one span of the process's biggest class; no count exceeds the
     * pairs sent; the barrier was held at most while the request ran. */
    uint32_t n = r->in_flight;
    uint32_t meshed = reply->meshed < n ? reply->meshed : n;
    uint64_t max_span_bytes = 0;
    for (unsigned i = 0; i < p->class_count; i++)
        if ((uint64_t)p->classes[i].span_pages * MESH_PAGE_SIZE > max_span_bytes)
            max_span_bytes = (uint64_t)p->classes[i].span_pages * MESH_PAGE_SIZE;
    uint64_t released = reply->released_bytes;
    if (released > (uint64_t)meshed * max_span_bytes)
        released = (uint64_t)meshed * max_span_bytes;
    uint32_t rejected[MESH_REJECT_REASONS] = {0};
    for (size_t i = 0; i < reply->n_rejected_by_reason && i < MESH_REJECT_REASONS; i++)
        rejected[i] = reply->rejected_by_reason[i] < n ? reply->rejected_by_reason[i] : n;
    double now = monotonic_now(), secs = now - r->request_started;
    if (secs < 0)
        secs = 0;
    /* barrier_ns_max is the process's longest hold so far, not this request's. */
    uint64_t barrier_ns_max = reply->barrier_ns_max;
    if ((double)barrier_ns_max > secs * 1e9)
        barrier_ns_max = (uint64_t)(secs * 1e9);
    uint64_t barrier_ns_total = reply->barrier_ns_total;
    if ((double)barrier_ns_total > secs * 1e9)
        barrier_ns_total = (uint64_t)(secs * 1e9);
    /* Holds: at most two a pair (a run undone, then the pair alone), and the histogram
     * counts no more than that either. */
    uint32_t max_holds = 2 * n;
    uint32_t holds = reply->holds < max_holds ? reply->holds : max_holds;
    uint32_t hist[HOLD_BUCKETS] = {0};
    uint32_t in_hist = 0;
    for (size_t i = 0; i < reply->n_hold_us_log2 && i < HOLD_BUCKETS; i++) {
        uint32_t v = reply->hold_us_log2[i] < max_holds - in_hist ? reply->hold_us_log2[i]
                                                                   : max_holds - in_hist;
        hist[i] = v;
        in_hist += v;
    }
    p->holds += holds;
    p->holds_over_1ms += reply->holds_over_1ms < holds ? reply->holds_over_1ms : holds;
    for (size_t i = 0; i < HOLD_BUCKETS; i++)
        p->hold_us_log2[i] += hist[i];
    if (barrier_ns_max > p->hold_ns_max)
        p->hold_ns_max = barrier_ns_max;
    note_refusal(p, reply->refused);
    meshd_counters.round_seconds_sum += secs; /* per request, as the metric says */
    meshd_counters.round_seconds_count++;

    r->requests++;
    r->answered += n;
    r->meshed += meshed;
    r->released += released;
    for (size_t i = 0; i < MESH_REJECT_REASONS; i++)
        r->rejected[i] += rejected[i];
    r->barrier_ns += barrier_ns_total;
    r->holds += holds;
    if (barrier_ns_max > r->barrier_ns_max)
        r->barrier_ns_max = barrier_ns_max;
    if (barrier_ns_total > r->longest_request_ns)
        r->longest_request_ns = barrier_ns_total;
    struct round_outcome req = {.started = r->request_started, .ended = now, .pairs = n,
                                .meshed = meshed, .budget_rejected = rejected[MESH_REJECT_BUDGET],
                                .barrier_ns = barrier_ns_total, .holds = holds,
                                .program_cpu_ns = reply->program_cpu_ns,
                                .mesher_cpu_ns = reply->mesher_cpu_ns};
    memcpy(req.hold_us_log2, hist, sizeof hist);
    hooks->request_done(p, &req);
    /* Mostly refused for the mapping budget, or no barrier at all: so would the rest be. */
    int futile = rejected[MESH_REJECT_BUDGET] * 2 > n || p->refused[0];
    if (r->sent < r->plan->npairs && !futile)
        next_request(p);
    else
        round_finish(p);
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
