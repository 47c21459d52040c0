/* summary.c: see summary.h. */
#include "summary.h"

#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "clock.h"

/* Callers waiting on one table's scan; more are answered EAGAIN by the caller. */
#define MAX_WAITERS 64u
/* Pause between slices while the table's uid has used up its budget. */
#define SLOW_SLICE_USEC 100000

struct waiter {
    struct process *p;
    uint64_t ctx;
};

struct table {
    dev_t dev;
    ino_t ino;
    unsigned class_count;
    struct mesh_size_class_info classes[MESH_MAX_CLASSES];
    unsigned refs;
    int have;   /* sum is complete */
    int stale;  /* a round changed the table since sum was made */
    int broken; /* the table could not be read: every process of it is to be dropped */
    struct table_summary sum;
    /* The scan under way, if scanning: records [pos, hwm) are left, read through reader. */
    int scanning;
    struct table_summary next;
    uint32_t pos, hwm;
    struct process *reader;
    struct event *slice;
    struct waiter waiters[MAX_WAITERS];
    size_t nwaiters;
    struct table *next_table;
};

static struct event_base *loop;
static summary_ready_fn ready_fn;
static struct table *tables;

void summary_init(struct event_base *base, summary_ready_fn ready)
{
    loop = base;
    ready_fn = ready;
}

/* ---- scanning ---------------------------------------------------------------------------- */

struct scan {
    const struct process *proc;
    struct table_summary *sum;
};

static void add_span(const struct span_view *v, void *arg)
{
    struct scan *s = arg;
    struct process_stats *st = &s->sum->st;
    if (v->cls == 0) {
        st->live_bytes += pages_to_bytes(v->span_pages);
        return;
    }
    const struct mesh_size_class_info *ci = &s->proc->classes[v->cls - 1];
    st->live_bytes += (uint64_t)v->live * ci->object_size;
    st->classes[v->cls - 1].spans++;
    st->classes[v->cls - 1].live_objects += v->live;
    st->classes[v->cls - 1].capacity_objects += ci->capacity;
    unsigned bucket = ci->capacity ? (unsigned)((uint64_t)v->live * 10 / ci->capacity) : 0;
    st->classes[v->cls - 1].by_occupancy[bucket > 9 ? 9 : bucket]++;
    if (span_is_candidate(v, s->proc, s->sum->cutoff))
        s->sum->candidates++;
}

/* Starts sum: the header now; 0, or -1 if unreadable. */
static int scan_begin(struct process *p, struct table_summary *sum, double cutoff, uint32_t *hwm)
{
    memset(sum, 0, sizeof *sum);
    sum->cutoff = cutoff;
    sum->started = monotonic_now();
    if (process_header(p, &sum->counters, hwm) != 0)
        return -1;
    const struct mesh_span_table_counters *c = &sum->counters;
    sum->st.heap_bytes = pages_to_bytes(c->heap_pages);
    sum->st.meshes = c->meshes;
    sum->st.released_bytes = pages_to_bytes(c->mesh_released_pages);
    sum->st.map_breaks = c->map_breaks;
    sum->st.map_limit = c->map_limit;
    sum->st.barrier_kind = c->barrier_kind;
    return 0;
}

/* Ends t's scan (ok or not) and answers whoever waited for it. */
static void scan_end(struct table *t, int ok)
{
    t->scanning = 0;
    t->reader = NULL;
    if (ok) {
        t->sum = t->next;
        t->have = 1;
        t->stale = 0;
    } else {
        t->broken = 1;
    }
    /* A waiter's callback may drop processes (summary_detach): take the list first. */
    struct waiter w[MAX_WAITERS];
    size_t n = t->nwaiters;
    memcpy(w, t->waiters, n * sizeof *w);
    t->nwaiters = 0;
    for (size_t i = 0; i < n; i++)
        ready_fn(w[i].p, w[i].ctx, ok ? &t->sum : NULL);
}

/* One slice of t's scan; schedules the next one or ends the scan. */
static void run_slice(struct table *t)
{
    struct process *p = t->reader;
    struct scan s = {.proc = p, .sum = &t->next};
    double cpu = budget_cpu_now();
    /* The table may have changed since the last slice: its header is read again (a
     * truncated one fails the scan), and records the process no longer counts as used
     * (its record_hwm went down) are not read. */
    uint32_t hwm;
    int rc = process_header(p, NULL, &hwm);
    if (rc == 0 && hwm < t->hwm)
        t->hwm = hwm;
    if (t->hwm < t->pos)
        t->hwm = t->pos; /* nothing (more) to read */
    uint32_t to = t->hwm - t->pos > SUMMARY_SLICE_RECORDS ? t->pos + SUMMARY_SLICE_RECORDS : t->hwm;
    if (rc == 0)
        rc = process_scan_records(p, t->pos, to, add_span, &s);
    budget_charge(p->uid, budget_cpu_now() - cpu);
    t->pos = to;
    if (rc != 0 || t->pos >= t->hwm) {
        scan_end(t, rc == 0);
        return;
    }
    /* The next slice after the loop has served everyone else (a zero timeout runs after
     * the next poll), or later while this uid is over its budget. */
    struct timeval tv = {0, budget_allow(p->uid) ? 0 : SLOW_SLICE_USEC};
    evtimer_add(t->slice, &tv);
}

static void on_slice(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct table *t = arg;
    if (t->scanning)
        run_slice(t);
}

/* ---- sharing ----------------------------------------------------------------------------- */

void summary_attach(struct process *p)
{
    struct table *t;
    for (t = tables; t; t = t->next_table)
        if (t->dev == p->table_dev && t->ino == p->table_ino && t->class_count == p->class_count &&
            !memcmp(t->classes, p->classes, sizeof t->classes))
            break;
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t || !(t->slice = evtimer_new(loop, on_slice, t))) {
            free(t);
            return; /* p scans on its own, at once */
        }
        t->dev = p->table_dev;
        t->ino = p->table_ino;
        t->class_count = p->class_count;
        memcpy(t->classes, p->classes, sizeof t->classes);
        t->next_table = tables;
        tables = t;
    }
    t->refs++;
    p->summary = t;
}

void summary_detach(struct process *p)
{
    struct table *t = p->summary;
    if (!t)
        return;
    p->summary = NULL;
    /* Its waiters hear that it went away. */
    size_t keep = 0;
    for (size_t i = 0; i < t->nwaiters; i++) {
        if (t->waiters[i].p == p)
            ready_fn(NULL, t->waiters[i].ctx, NULL);
        else
            t->waiters[keep++] = t->waiters[i];
    }
    t->nwaiters = keep;
    if (t->scanning && t->reader == p) {
        /* Another registration of the same table reads on (the registry still lists p). */
        t->reader = NULL;
        for (struct process *q = registry_first(); q; q = q->next)
            if (q != p && q->summary == t)
                t->reader = q;
        if (!t->reader) {
            t->scanning = 0;
            event_del(t->slice);
        }
    }
    if (--t->refs)
        return;
    for (struct table **pp = &tables; *pp; pp = &(*pp)->next_table) {
        if (*pp == t) {
            *pp = t->next_table;
            break;
        }
    }
    event_free(t->slice);
    free(t);
}

void summary_invalidate(struct process *p)
{
    if (p->summary)
        p->summary->stale = 1;
}

const struct table_summary *summary_get(struct process *p, double cutoff, double min_start,
                                        int *pending)
{
    struct table *t = p->summary;
    *pending = 0;
    if (!t) {
        /* Not shared (out of memory at registration): a whole scan now. */
        static struct table_summary own;
        uint32_t hwm;
        if (scan_begin(p, &own, cutoff, &hwm) != 0)
            return NULL;
        struct scan s = {.proc = p, .sum = &own};
        return process_scan_records(p, 1, hwm, add_span, &s) == 0 ? &own : NULL;
    }
    if (t->broken)
        return NULL;
    if (t->have && !t->stale && t->sum.started >= min_start && t->sum.cutoff == cutoff)
        return &t->sum;
    if (!t->scanning) {
        if (scan_begin(p, &t->next, cutoff, &t->hwm) != 0) {
            t->broken = 1;
            return NULL;
        }
        t->scanning = 1;
        t->reader = p;
        t->pos = 1;
        run_slice(t); /* a small table is done with this */
        if (t->broken)
            return NULL;
        if (!t->scanning && t->have)
            return &t->sum;
    }
    *pending = 1;
    return NULL;
}

const struct table_summary *summary_last(struct process *p)
{
    struct table *t = p->summary;
    return t && t->have && !t->broken ? &t->sum : NULL;
}

const struct table_summary *summary_for_list(struct process *p, double cutoff, int *broken)
{
    int pending;
    const struct table_summary *sum =
        summary_get(p, cutoff, monotonic_now() - SUMMARY_LIST_MAX_AGE, &pending);
    *broken = !sum && !pending;
    return sum ? sum : summary_last(p);
}

int summary_wait(struct process *p, uint64_t ctx)
{
    struct table *t = p->summary;
    if (!t || !t->scanning || t->nwaiters == MAX_WAITERS)
        return -1;
    t->waiters[t->nwaiters++] = (struct waiter){.p = p, .ctx = ctx};
    return 0;
}
