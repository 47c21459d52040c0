/* dispatch.c: see dispatch.h. */
#include "dispatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budget.h"
#include "clock.h"
#include "log.h"
#include "peer.h"
#include "policy.h"
#include "registry.h"
#include "rounds.h"
#include "settings.h"
#include "summary.h"

static int may_see(const struct conn *c, const struct process *p)
{
    return c->uid == 0 || c->uid == p->uid;
}

/* The process a meshctl request names, or NULL after answering ESRCH or EPERM. */
static struct process *target(struct conn *c, int32_t pid)
{
    char msg[96];
    struct process *p = pid > 0 ? registry_find(pid) : NULL;
    if (!p) {
        snprintf(msg, sizeof msg, "pid %d is not registered with meshd", (int)pid);
        conn_send_error(c, ESRCH, msg);
        return NULL;
    }
    if (!may_see(c, p)) {
        snprintf(msg, sizeof msg, "process %d belongs to another user", (int)pid);
        conn_send_error(c, EPERM, msg);
        return NULL;
    }
    return p;
}

/* A table that cannot be read any more (its file shrank) ends that process's registration. */
static void table_broken(struct process *p)
{
    meshd_log("pid %d: span table unreadable; dropping the process", (int)p->pid);
    conn_fail(p->conn);
}

static void forget(struct process *p)
{
    rounds_process_gone(p);
    summary_detach(p);
    p->conn->proc = NULL;
    registry_remove(p);
}

/* ---- shim messages ----------------------------------------------------------------------- */

static void reply_register(struct conn *c, int accepted, const char *reason)
{
    Mesh__RegisterReply rr = MESH__REGISTER_REPLY__INIT;
    Mesh__Envelope env = MESH__ENVELOPE__INIT;
    rr.accepted = accepted;
    rr.reason = (char *)(reason ? reason : "");
    env.body_case = MESH__ENVELOPE__BODY_REGISTER_REPLY;
    env.register_reply = &rr;
    conn_send(c, &env);
}

/* A registration belongs to its connection.  A second one of the same pid replaces the
 * first only if the first is stale: its process has exited (the pid was reused; the old
 * connection lives on in some other process) or its connection is closed (the process
 * re-executed or reconnected before meshd noticed).  Otherwise both are live and the new
 * one is refused: no connection takes another's registration.  0, or -1 to refuse. */
static int make_way(struct conn *c)
{
    struct process *old = registry_find(c->pid);
    if (!old)
        return 0;
    if (!peer_exited(old->pidfd) && !peer_hung_up(old->conn->fd))
        return -1;
    meshd_log("pid %d registered again; its old registration is stale and goes", (int)c->pid);
    struct conn *oc = old->conn;
    forget(old);
    conn_fail(oc);
    return 0;
}

static void on_register(struct conn *c, const Mesh__Register *reg)
{
    int fd = conn_take_fd(c);
    const char *why = NULL;
    if (c->frames != 0 || c->proc)
        why = "register is only the first message";
    else if (fd < 0)
        why = "no span table descriptor attached";
    else if (c->pid <= 0)
        why = "peer pid unknown (another pid namespace?)";
    else if (c->uid != 0 && registry_count_uid(c->uid) >= server_uid_share())
        why = "too many registered processes for this uid";
    int pidfd = -1;
    if (!why) {
        pidfd = peer_pidfd(c->fd, c->pid);
        if ((pidfd < 0 && errno == ESRCH) || peer_exited(pidfd))
            why = "the process that connected has exited";
        else if (make_way(c) != 0)
            why = "this pid is registered on another live connection";
    }
    if (why) {
        if (fd >= 0)
            close(fd);
        if (pidfd >= 0)
            close(pidfd);
    } else {
        c->proc = registry_add(fd, pidfd, c->pid, c->uid, reg->exe, reg->name, c, &why);
    }
    /* why is set for a second Register on a registered connection too: c->proc is the
     * first registration's, and this one must not be taken for it. */
    if (why || !c->proc) {
        meshd_log("pid %d: registration refused: %s", (int)c->pid, why);
        reply_register(c, 0, why);
        conn_finish(c);
        return;
    }
    summary_attach(c->proc);
    policy_process_added(c->proc);
    meshd_log("registered pid %d uid %u name %s exe %s (%zu processes)", (int)c->pid,
              (unsigned)c->uid, c->proc->name, c->proc->exe, registry_count());
    reply_register(c, 1, NULL);
}

/* ---- meshctl messages -------------------------------------------------------------------- */

/* Fills ps (and, if cls is not NULL, the classes that have spans) from sum (NULL: none
 * yet, all zeros). */
static void fill_stats(struct process *p, const struct table_summary *sum,
                       Mesh__ProcessStats *ps, Mesh__ClassStats *cls, Mesh__ClassStats **clsp)
{
    /* static: the reply's class entries point into its histograms until the reply is
     * packed, which happens before the next call (the daemon is single-threaded). */
    static struct process_stats st;
    if (sum)
        st = sum->st;
    else
        memset(&st, 0, sizeof st);
    mesh__process_stats__init(ps);
    ps->pid = p->pid;
    ps->uid = p->uid;
    ps->exe = p->exe;
    ps->name = p->name;
    ps->heap_bytes = st.heap_bytes;
    ps->live_bytes = st.live_bytes;
    ps->meshes = st.meshes;
    ps->released_bytes = st.released_bytes;
    ps->map_breaks = st.map_breaks;
    ps->map_limit = st.map_limit;
    static char *const barriers[] = {[MESH_BARRIER_STATE_UFFD] = "userfaultfd",
                                     [MESH_BARRIER_STATE_MPROTECT] = "mprotect",
                                     [MESH_BARRIER_STATE_NONE] = "none"};
    if (st.barrier_kind >= MESH_BARRIER_STATE_UFFD && st.barrier_kind <= MESH_BARRIER_STATE_NONE)
        ps->barrier = barriers[st.barrier_kind];
    ps->refused = p->refused;
    ps->holds = p->holds;
    ps->n_hold_us_log2 = HOLD_BUCKETS;
    ps->hold_us_log2 = p->hold_us_log2;
    ps->hold_max_us = p->hold_ns_max / 1000;
    ps->holds_over_1ms = p->holds_over_1ms;
    if (!cls)
        return;
    ps->classes = clsp;
    for (unsigned i = 0; i < p->class_count; i++) {
        if (st.classes[i].spans == 0)
            continue;
        Mesh__ClassStats *cs = &cls[ps->n_classes];
        mesh__class_stats__init(cs);
        cs->size = p->classes[i].object_size;
        cs->spans = st.classes[i].spans;
        cs->live_objects = st.classes[i].live_objects;
        cs->capacity_objects = st.classes[i].capacity_objects;
        cs->n_spans_by_occupancy = 10;
        cs->spans_by_occupancy = st.classes[i].by_occupancy;
        clsp[ps->n_classes++] = cs;
    }
}

static void on_list(struct conn *c)
{
    size_t n = registry_count(), k = 0;
    Mesh__ProcessStats *ps = calloc(n ? n : 1, sizeof *ps);
    Mesh__ProcessStats **psp = calloc(n ? n : 1, sizeof *psp);
    Mesh__ProcessList list = MESH__PROCESS_LIST__INIT;
    Mesh__Envelope env = MESH__ENVELOPE__INIT;
    if (!ps || !psp) {
        conn_send_error(c, ENOMEM, "out of memory");
    } else {
        for (struct process *p = registry_first(); p && k < n; p = p->next) {
            if (!may_see(c, p))
                continue;
            int broken;
            const struct table_summary *sum =
                summary_for_list(p, policy_current()->occupancy_cutoff, &broken);
            if (broken) {
                table_broken(p);
                continue;
            }
            fill_stats(p, sum, &ps[k], NULL, NULL);
            psp[k] = &ps[k];
            k++;
        }
        list.n_processes = k;
        list.processes = psp;
        env.body_case = MESH__ENVELOPE__BODY_PROCESS_LIST;
        env.process_list = &list;
        conn_send(c, &env);
    }
    free(ps);
    free(psp);
}

static void reply_stats(struct conn *c, struct process *p, const struct table_summary *sum)
{
    Mesh__ProcessStats ps;
    Mesh__ClassStats cls[MESH_MAX_CLASSES], *clsp[MESH_MAX_CLASSES];
    fill_stats(p, sum, &ps, cls, clsp);
    Mesh__Envelope env = MESH__ENVELOPE__INIT;
    env.body_case = MESH__ENVELOPE__BODY_PROCESS_STATS;
    env.process_stats = &ps;
    conn_send(c, &env);
}

static void table_unreadable(struct conn *c, struct process *p)
{
    table_broken(p);
    conn_send_error(c, EIO, "the process's span table cannot be read");
}

/* Answers a StatsRequest whose table was being scanned (summary.h). */
static void on_summary_ready(struct process *p, uint64_t ctx, const struct table_summary *sum)
{
    struct conn *c = conn_by_id(ctx);
    if (!c)
        return;
    if (!p)
        conn_send_error(c, ESRCH, "the process went away");
    else if (!sum)
        table_unreadable(c, p);
    else
        reply_stats(c, p, sum);
}

void dispatch_init(struct event_base *base)
{
    summary_init(base, on_summary_ready);
}

static void on_stats(struct conn *c, int32_t pid)
{
    struct process *p = target(c, pid);
    if (!p)
        return;
    int pending;
    const struct table_summary *sum = summary_get(p, policy_current()->occupancy_cutoff,
                                                  monotonic_now() - SUMMARY_STATS_MAX_AGE, &pending);
    if (sum)
        reply_stats(c, p, sum);
    else if (!pending)
        table_unreadable(c, p);
    else if (summary_wait(p, c->id) != 0)
        conn_send_error(c, EAGAIN, "too many requests wait for this process; try again shortly");
    /* else answered by on_summary_ready() */
}

static void on_mesh_now(struct conn *c, int32_t pid)
{
    struct process *p = target(c, pid);
    if (!p)
        return;
    /* An automatic round already running answers this request too. */
    if (rounds_adopt(p, c->id))
        return;
    int err = rounds_start(p, c->id, 0, policy_pair_limit(p), policy_current()->occupancy_cutoff);
    if (err == EIO)
        table_broken(p);
    if (err)
        conn_send_error(c, (uint32_t)err,
                        err == EBUSY ? "a meshing round is already running for this process"
                                     : strerror(err));
}

/* Reading is open to everyone; setting needs root.  All entries are applied or none. */
static void on_policy(struct conn *c, const Mesh__PolicyRequest *pr)
{
    struct policy_settings s = *policy_current();
    char err[256], msg[300];
    if (pr->n_set) {
        if (c->uid != 0) {
            conn_send_error(c, EPERM, "only root may change meshd's policy");
            return;
        }
        for (size_t i = 0; i < pr->n_set; i++) {
            if (settings_set(&s, pr->set[i] ? pr->set[i] : "", err, sizeof err) != 0) {
                snprintf(msg, sizeof msg, "%s (nothing changed)", err);
                conn_send_error(c, EINVAL, msg);
                return;
            }
        }
        meshd_log("policy changed by uid %u pid %d", (unsigned)c->uid, (int)c->pid);
        policy_apply(&s);
    }
    char lines[SETTINGS_COUNT][SETTING_LINE_BYTES];
    char *ptrs[SETTINGS_COUNT];
    settings_format(policy_current(), lines);
    for (int i = 0; i < SETTINGS_COUNT; i++)
        ptrs[i] = lines[i];
    Mesh__PolicyReply rep = MESH__POLICY_REPLY__INIT;
    Mesh__Envelope env = MESH__ENVELOPE__INIT;
    rep.n_settings = SETTINGS_COUNT;
    rep.settings = ptrs;
    env.body_case = MESH__ENVELOPE__BODY_POLICY_REPLY;
    env.policy_reply = &rep;
    conn_send(c, &env);
}

/* Whether env is a meshctl request (one a client makes, costing meshd time). */
static int is_request(const Mesh__Envelope *env)
{
    switch (env->body_case) {
    case MESH__ENVELOPE__BODY_LIST_REQUEST:
    case MESH__ENVELOPE__BODY_STATS_REQUEST:
    case MESH__ENVELOPE__BODY_MESH_NOW_REQUEST:
    case MESH__ENVELOPE__BODY_POLICY_REQUEST:
        return 1;
    default:
        return 0;
    }
}

static void handle(struct conn *c, Mesh__Envelope *env);

void dispatch_message(struct conn *c, Mesh__Envelope *env)
{
    if (!c->proc && is_request(env)) {
        if (!budget_allow(c->uid)) {
            conn_send_error(c, EAGAIN, "too many requests from this user; try again shortly");
            return;
        }
        double t0 = budget_cpu_now();
        handle(c, env);
        budget_charge(c->uid, budget_cpu_now() - t0);
        return;
    }
    handle(c, env);
}

static void handle(struct conn *c, Mesh__Envelope *env)
{
    /* A shim only answers MeshRequests: requests on its connection, which has no idle
     * timeout and is not limited to one request, would be a way around those bounds. */
    if (c->proc && env->body_case != MESH__ENVELOPE__BODY_MESH_REPLY &&
        env->body_case != MESH__ENVELOPE__BODY_REGISTER)
        goto unexpected;
    switch (env->body_case) {
    case MESH__ENVELOPE__BODY_REGISTER:
        on_register(c, env->register_);
        return;
    case MESH__ENVELOPE__BODY_MESH_REPLY:
        if (!c->proc)
            break;
        rounds_reply(c->proc, env->mesh_reply);
        return;
    case MESH__ENVELOPE__BODY_LIST_REQUEST:
        on_list(c);
        return;
    case MESH__ENVELOPE__BODY_STATS_REQUEST:
        on_stats(c, env->stats_request->pid);
        return;
    case MESH__ENVELOPE__BODY_MESH_NOW_REQUEST:
        on_mesh_now(c, env->mesh_now_request->pid);
        return;
    case MESH__ENVELOPE__BODY_POLICY_REQUEST:
        on_policy(c, env->policy_request);
        return;
    default:
        break;
    }
unexpected:
    meshd_log("pid %d: unexpected message %d; dropping the connection", (int)c->pid,
              (int)env->body_case);
    conn_send_error(c, EPROTO, "unexpected message");
    conn_finish(c);
}

void dispatch_closed(struct conn *c)
{
    if (!c->proc)
        return;
    meshd_log("pid %d disconnected (%zu processes left)", (int)c->pid, registry_count() - 1);
    forget(c->proc);
}
