/* rounds.c: see rounds.h. */
#include "rounds.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "mesher.h"

struct round {
    uint64_t request_id;
    uint64_t ctl_id;
    uint32_t pairs;
    uint64_t heap_before;
    struct event *timeout;
};

static struct event_base *loop;
static uint64_t last_request_id;

void rounds_init(struct event_base *base) { loop = base; }

static void round_free(struct process *p)
{
    struct round *r = p->round;
    p->round = NULL;
    event_free(r->timeout);
    free(r);
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
    round_free(p);
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

int rounds_start(struct process *p, uint64_t ctl_id)
{
    if (p->round)
        return EBUSY;
    struct mesh_span_table_counters c;
    struct mesh_plan *plan = malloc(sizeof *plan);
    if (!plan)
        return ENOMEM;
    if (process_counters(p, &c) != 0 || mesher_plan(p, plan) != 0) {
        free(plan);
        return EIO;
    }
    uint64_t before = pages_to_bytes(c.heap_pages);
    if (plan->npairs == 0) {
        /* Nothing to ask the process: answer now rather than send an empty request. */
        meshd_log("pid %d: round: %zu sparse spans, no meshable pairs", (int)p->pid,
                  plan->candidates);
        struct conn *ctl = ctl_id ? conn_by_id(ctl_id) : NULL;
        if (ctl)
            reply_done(ctl, p, 0, 0, 0, before, before);
        free(plan);
        return 0;
    }
    struct round *r = calloc(1, sizeof *r);
    if (!r || !(r->timeout = evtimer_new(loop, on_timeout, p))) {
        free(r);
        free(plan);
        return ENOMEM;
    }
    r->request_id = ++last_request_id;
    r->ctl_id = ctl_id;
    r->pairs = (uint32_t)plan->npairs;
    r->heap_before = before;
    p->round = r;

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
    meshd_log("pid %d: round %llu: %zu sparse spans, %zu pairs sent", (int)p->pid,
              (unsigned long long)r->request_id, plan->candidates, plan->npairs);
    /* A failed send fails the shim's connection, which ends the round through
     * rounds_process_gone() once the loop closes it.  req points into plan: free after. */
    conn_send(p->conn, &env);
    free(plan);
    return 0;
}

void rounds_reply(struct process *p, const Mesh__MeshReply *reply)
{
    struct round *r = p->round;
    if (!r || reply->request_id != r->request_id) {
        /* A late answer to a round that timed out: its effects show in the counters. */
        meshd_log("pid %d: ignoring reply to mesh request %llu", (int)p->pid,
                  (unsigned long long)reply->request_id);
        return;
    }
    struct mesh_span_table_counters c;
    uint64_t after = process_counters(p, &c) == 0 ? pages_to_bytes(c.heap_pages) : r->heap_before;
    /* Refusals by reason (enum mesh_reject_reason), e.g. "overlap=3 budget=12". */
    static const char *const names[MESH_REJECT_REASONS] = {"bad_span", "same_span", "not_detached",
                                                           "class", "overlap", "aliases", "budget"};
    char why[160] = "";
    size_t used = 0;
    for (size_t i = 0; i < reply->n_rejected_by_reason && i < MESH_REJECT_REASONS; i++)
        if (reply->rejected_by_reason[i] && used < sizeof why)
            used += (size_t)snprintf(why + used, sizeof why - used, " %s=%u", names[i],
                                     reply->rejected_by_reason[i]);
    meshd_log("pid %d: round %llu: %u/%u pairs meshed, %llu KiB released, heap %llu -> %llu KiB, "
              "barrier max %llu us; rejected:%s",
              (int)p->pid, (unsigned long long)r->request_id, reply->meshed, r->pairs,
              (unsigned long long)(reply->released_bytes >> 10),
              (unsigned long long)(r->heap_before >> 10), (unsigned long long)(after >> 10),
              (unsigned long long)(reply->barrier_ns_max / 1000), used ? why : " none");
    struct conn *ctl = requester(r);
    if (ctl)
        reply_done(ctl, p, r->pairs, reply->meshed, reply->released_bytes, r->heap_before,
                   after);
    round_free(p);
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
