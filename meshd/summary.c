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

/*
 * One region of a table (MESH_REGION_RECORDS records) as last read.  Invariant: the table's
 * tally is the sum of what every read region's records count for (span_code, large_bytes).
 */
struct region {
    uint32_t gen;         /* the region's generation when it was read, if gen_known */
    uint32_t end;         /* its records below end were read (the table's hwm cut it) */
    uint8_t read;         /* counted in the tally */
    uint8_t gen_known;    /* the table published a generation for it (else: read every time) */
    uint64_t large_bytes; /* its large objects' pages, in bytes */
    uint16_t *codes;      /* span_code() of each of its records; NULL: all 0 */
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
    /* What the read regions hold (its st's live_bytes and classes, and candidates), for
     * tally_cutoff; regions[nregions] of them, allocated. */
    struct table_summary tally;
    double tally_cutoff;
    struct region *regions;
    uint32_t nregions;
    /* The scan under way, if scanning: regions [pos, region_count(hwm)) are left, read
     * through reader, rereading those whose generation is not gens[i] (ngens known). */
    int scanning;
    struct table_summary next;
    uint32_t pos, hwm;
    uint32_t *gens, ngens;
    struct process *reader;
    struct event *slice;
    struct waiter waiters[MAX_WAITERS];
    size_t nwaiters;
    struct table *next_table;
};

static struct event_base *loop;
static summary_ready_fn ready_fn;
static struct table *tables;
static struct summary_work work;

const struct summary_work *summary_work(void) { return &work; }

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

/* ---- incremental tally by region ------------------------------------------------------- */

/* What a small span counts for, in 16 bits: its class (bits 0-5, 1..48), live objects (bits
 * 6-14, 0..256), and whether it is detached and not held by the kernel (bit 15).  0: it
 * counts for nothing (free, unreadable, or large: those count per region). */
static uint16_t span_code(const struct span_view *v)
{
    _Static_assert(MESH_MAX_CLASSES < 64 && MESH_MAX_SPAN_OBJECTS < 512, "a span code fits 16 bits");
    unsigned eligible = v->state == MESH_SPAN_DETACHED && !v->kernel_held;
    return (uint16_t)(v->cls | (unsigned)v->live << 6 | eligible << 15);
}

/* Adds (sign 1) or takes away (sign -1) what a span of this code counts for; the same sums
 * and the same candidate test as add_span, in modular arithmetic, so that taking away undoes
 * adding exactly. */
static void tally_code(struct table *t, uint16_t code, int sign)
{
    unsigned cls = code & 63u, live = code >> 6 & 511u;
    if (!cls)
        return;
    const struct mesh_size_class_info *ci = &t->classes[cls - 1];
    struct process_stats *st = &t->tally.st;
    uint64_t s = sign > 0 ? 1 : UINT64_MAX;
    st->live_bytes += s * live * ci->object_size;
    st->classes[cls - 1].spans += (uint32_t)s;
    st->classes[cls - 1].live_objects += s * live;
    st->classes[cls - 1].capacity_objects += s * ci->capacity;
    unsigned bucket = ci->capacity ? live * 10 / ci->capacity : 0;
    st->classes[cls - 1].by_occupancy[bucket > 9 ? 9 : bucket] += (uint32_t)s;
    if (code >> 15 && live > 0 && (double)live <= t->tally_cutoff * (double)ci->capacity)
        t->tally.candidates += (size_t)s;
}

/* Region i leaves the tally (it is read again, or gone). */
static void region_forget(struct table *t, uint32_t i)
{
    struct region *r = &t->regions[i];
    if (!r->read)
        return;
    for (unsigned k = 0; r->codes && k < MESH_REGION_RECORDS; k++)
        tally_code(t, r->codes[k], -1);
    t->tally.st.live_bytes -= r->large_bytes;
    free(r->codes);
    memset(r, 0, sizeof *r);
}

static void regions_forget_from(struct table *t, uint32_t first)
{
    for (uint32_t i = first; i < t->nregions; i++)
        region_forget(t, i);
}

struct region_read {
    uint32_t first; /* the region's first record id */
    int any;
    uint64_t large_bytes;
    uint16_t codes[MESH_REGION_RECORDS];
};

static void read_span(const struct span_view *v, void *arg)
{
    struct region_read *rr = arg;
    if (v->cls == 0) {
        rr->large_bytes += pages_to_bytes(v->span_pages);
        return;
    }
    rr->codes[v->id - rr->first] = span_code(v);
    rr->any = 1;
}

/* Reads region i's records below end through p and puts them in the tally in place of
 * what it held; gen: the generation read before (NULL: unknown).  0, or -1 if the table
 * could not be read or meshd has no memory. */
static int region_read(struct table *t, struct process *p, uint32_t i, uint32_t end,
                       const uint32_t *gen)
{
    static struct region_read rr; /* meshd is single-threaded */
    memset(&rr, 0, sizeof rr);
    rr.first = i << MESH_REGION_SHIFT;
    uint32_t start = rr.first ? rr.first : 1;
    if (start < end && process_scan_records(p, start, end, read_span, &rr) != 0)
        return -1;
    struct region *r = &t->regions[i];
    if (r->read && r->codes && rr.any) {
        /* Only the records whose code changed move the tally. */
        for (unsigned k = 0; k < MESH_REGION_RECORDS; k++) {
            if (r->codes[k] != rr.codes[k]) {
                tally_code(t, r->codes[k], -1);
                tally_code(t, rr.codes[k], 1);
                r->codes[k] = rr.codes[k];
            }
        }
        t->tally.st.live_bytes -= r->large_bytes;
    } else {
        region_forget(t, i);
        if (rr.any) {
            if (!(r->codes = malloc(sizeof rr.codes)))
                return -1;
            memcpy(r->codes, rr.codes, sizeof rr.codes);
            for (unsigned k = 0; k < MESH_REGION_RECORDS; k++)
                tally_code(t, rr.codes[k], 1);
        }
    }
    r->large_bytes = rr.large_bytes;
    t->tally.st.live_bytes += rr.large_bytes;
    r->read = 1;
    r->end = end;
    r->gen_known = gen != NULL;
    r->gen = gen ? *gen : 0;
    work.regions_read++;
    work.records_read += start < end ? end - start : 0;
    return 0;
}

/* The regions of a table whose records below hwm are in use. */
static uint32_t regions_in_use(uint32_t hwm) { return mesh_region_count(hwm); }

/* Readies t's tally for a pass over the records below t->hwm for this cutoff: a new cutoff
 * counts candidates anew (every region is read again), regions beyond hwm leave, and the
 * regions' generations are read now, before any of their records.  0, or -1 (no memory). */
static int tally_begin(struct table *t, struct process *p, double cutoff)
{
    if (t->tally_cutoff != cutoff) {
        regions_forget_from(t, 0);
        memset(&t->tally, 0, sizeof t->tally);
        t->tally_cutoff = cutoff;
    }
    uint32_t n = regions_in_use(t->hwm);
    if (n < t->nregions) {
        regions_forget_from(t, n);
    } else if (n > t->nregions) {
        struct region *more = realloc(t->regions, (size_t)n * sizeof *more);
        uint32_t *gens = realloc(t->gens, (size_t)n * sizeof *gens);
        if (more)
            t->regions = more;
        if (gens)
            t->gens = gens;
        if (!more || !gens)
            return -1;
        memset(t->regions + t->nregions, 0, (size_t)(n - t->nregions) * sizeof *more);
        t->nregions = n;
    }
    t->ngens = process_regions(p, n, t->gens);
    work.passes++;
    return 0;
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
        /* Regions the table's hwm no longer reaches (it went down during the pass) leave
         * the tally; the rest is what the table holds below hwm. */
        uint32_t n = regions_in_use(t->hwm);
        regions_forget_from(t, n);
        for (uint32_t i = 0; i < n; i++)
            if (t->regions[i].end > t->hwm)
                region_forget(t, i);
        t->next.st.live_bytes = t->tally.st.live_bytes;
        memcpy(t->next.st.classes, t->tally.st.classes, sizeof t->next.st.classes);
        t->next.candidates = t->tally.candidates;
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

/* One slice of t's scan: regions whose generation changed (or is unknown) are read again,
 * up to SUMMARY_SLICE_RECORDS records; schedules the next slice or ends the scan. */
static void run_slice(struct table *t)
{
    struct process *p = t->reader;
    double cpu = budget_cpu_now();
    /* The table may have changed since the last slice: its header is read again (a
     * truncated one fails the scan), and records the process no longer counts as used
     * (its record_hwm went down) are not read. */
    uint32_t hwm;
    int rc = process_header(p, NULL, &hwm);
    if (rc == 0 && hwm < t->hwm)
        t->hwm = hwm;
    uint32_t n = regions_in_use(t->hwm), left = SUMMARY_SLICE_RECORDS;
    while (rc == 0 && t->pos < n && left) {
        uint32_t i = t->pos++;
        uint64_t region_end = (uint64_t)(i + 1) << MESH_REGION_SHIFT;
        uint32_t end = region_end < t->hwm ? (uint32_t)region_end : t->hwm;
        const struct region *r = &t->regions[i];
        const uint32_t *gen = i < t->ngens ? &t->gens[i] : NULL;
        if (r->read && gen && r->gen_known && r->gen == *gen && r->end == end)
            continue; /* unchanged since it was read */
        rc = region_read(t, p, i, end, gen);
        left = left > MESH_REGION_RECORDS ? left - MESH_REGION_RECORDS : 0;
    }
    budget_charge(p->uid, budget_cpu_now() - cpu);
    if (rc != 0 || t->pos >= n) {
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
    regions_forget_from(t, 0);
    free(t->regions);
    free(t->gens);
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
        if (scan_begin(p, &t->next, cutoff, &t->hwm) != 0 || tally_begin(t, p, cutoff) != 0) {
            t->broken = 1;
            return NULL;
        }
        t->scanning = 1;
        t->reader = p;
        t->pos = 0;
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
