/* mesher.c: SplitMesher; see mesher.h. */
#include "mesher.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "rng.h" /* the shim's xorshift64*: varies the pairing between rounds */

struct cand {
    uint64_t bitmap[MESH_BITMAP_WORDS];
    uint32_t id;
    uint32_t page; /* physical page, for address order */
    uint8_t cls;
    uint8_t virt_count;
    uint8_t used;
};

struct collect {
    struct process *proc;
    double cutoff;
    struct cand *v;
    size_t n, cap;
    int oom;
};

static void collect_sparse(const struct span_view *sv, void *arg)
{
    struct collect *c = arg;
    if (!span_is_candidate(sv, c->proc, c->cutoff))
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        struct cand *v = cap > MESHER_MAX_CANDIDATES ? NULL : realloc(c->v, cap * sizeof *v);
        if (!v) {
            c->oom = c->cap < MESHER_MAX_CANDIDATES;
            return;
        }
        c->v = v;
        c->cap = cap;
    }
    struct cand *k = &c->v[c->n++];
    memcpy(k->bitmap, sv->bitmap, sizeof k->bitmap);
    k->id = sv->id;
    k->page = sv->phys_page;
    k->cls = sv->cls;
    k->virt_count = sv->virt_count;
    k->used = 0;
}

static int by_class_and_page(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->cls != y->cls)
        return (x->cls > y->cls) - (x->cls < y->cls);
    return (x->page > y->page) - (x->page < y->page);
}


static int meshable(const struct cand *a, const struct cand *b)
{
    if (a->virt_count + b->virt_count > MESH_MAX_VIRTUAL_SPANS)
        return 0;
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++)
        if (a->bitmap[w] & b->bitmap[w])
            return 0;
    return 1;
}

/* l is the lower-addressed span of the pair.  The source (whose virtual spans become
 * aliases) is the one with fewer virtual spans, as each costs a remap; on a tie it is l,
 * so that a run of pairs maps a run of neighbouring pages onto a run of neighbouring pages. */
static void add_pair(struct mesh_plan *plan, struct cand *l, struct cand *r)
{
    struct cand *s = r->virt_count < l->virt_count ? r : l, *d = s == l ? r : l;
    plan->dst[plan->npairs] = d->id;
    plan->src[plan->npairs] = s->id;
    plan->npairs++;
    l->used = r->used = 1;
}

/* Where the pairing stands, so that it can stop after a bounded number of probes and go
 * on later: the class c.v[lo, lo + half + right) (in address order) is being paired, its
 * left span i is next.  Initially (all zero) no class is under way. */
struct pairing {
    int sorted;
    size_t lo, half, right;
    size_t i;
    size_t start; /* this class's random probe offset */
    size_t run;   /* offset of the previous left span's match; SIZE_MAX: none */
    uint64_t rng;
};

struct mesher_scan {
    struct collect c;
    uint32_t pos; /* the next record to read */
    struct pairing g;
};

struct mesher_scan *mesher_scan_new(struct process *p, double cutoff)
{
    struct mesher_scan *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->c.proc = p;
    s->c.cutoff = cutoff;
    s->pos = 1; /* record 0 is never used */
    return s;
}

int mesher_scan_step(struct mesher_scan *s, uint32_t records)
{
    /* The header again at every step: the table may have been truncated (SIGBUS on its
     * page, caught) or its record_hwm moved since the last one.  The end never exceeds
     * max_records and pos only grows, so a table that keeps raising its hwm still ends
     * within max_records / records steps. */
    uint32_t hwm;
    if (process_header(s->c.proc, NULL, &hwm) != 0)
        return -1;
    uint32_t to = hwm > s->pos && hwm - s->pos > records ? s->pos + records : hwm;
    if (to > s->pos && process_scan_records(s->c.proc, s->pos, to, collect_sparse, &s->c) != 0)
        return -1;
    if (s->c.oom)
        return -1;
    s->pos = to > s->pos ? to : s->pos;
    /* Past MESHER_MAX_CANDIDATES candidates every further one is dropped anyway. */
    return s->pos < hwm && s->c.n < MESHER_MAX_CANDIDATES;
}

/* Starts pairing the class that begins at g->lo (candidates sorted): half its spans on
 * the left, the rest on the right. */
static void begin_class(struct collect *c, struct pairing *g)
{
    size_t hi = g->lo;
    while (hi < c->n && c->v[hi].cls == c->v[g->lo].cls)
        hi++;
    g->half = (hi - g->lo) / 2;
    g->right = hi - g->lo - g->half;
    g->i = 0;
    g->run = SIZE_MAX;
    if (g->half)
        g->start = (size_t)(mesh_rng_next(&g->rng) % g->right);
}

/* Left span i of the class under way against its right half: first where the previous
 * one matched, else up to MESHER_PROBES spans from the class's random offset.  Returns
 * the probes spent. */
static size_t pair_left(struct cand *v, struct pairing *g, struct mesh_plan *plan)
{
    size_t half = g->half, right = g->right, i = g->i;
    size_t probes = right < MESHER_PROBES ? right : MESHER_PROBES;
    struct cand *b = g->run == SIZE_MAX ? NULL : &v[half + (i + g->run) % right];
    if (b && !b->used && meshable(&v[i], b)) {
        add_pair(plan, &v[i], b);
        return 1;
    }
    g->run = SIZE_MAX;
    for (size_t k = 0; k < probes; k++) {
        size_t off = g->start + k;
        b = &v[half + (i + off) % right];
        if (!b->used && meshable(&v[i], b)) {
            add_pair(plan, &v[i], b);
            g->run = off;
            return k + 1;
        }
    }
    return probes + 1;
}

int mesher_scan_pair(struct mesher_scan *s, struct mesh_plan *plan, size_t max_pairs, size_t work)
{
    struct collect *c = &s->c;
    struct pairing *g = &s->g;
    if (max_pairs > MESHER_MAX_PAIRS)
        max_pairs = MESHER_MAX_PAIRS;
    if (!g->sorted) {
        /* The sort is a step of its own: its cost is bounded by MESHER_MAX_CANDIDATES. */
        plan->npairs = 0;
        plan->candidates = c->n;
        if (getrandom(&g->rng, sizeof g->rng, 0) != sizeof g->rng || g->rng == 0)
            g->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)c->n;
        if (c->n) /* no candidates: c->v may be NULL, which qsort must not get */
            qsort(c->v, c->n, sizeof *c->v, by_class_and_page);
        g->sorted = 1;
        return c->n > 0;
    }
    size_t spent = 0;
    while (plan->npairs < max_pairs) {
        if (g->i >= g->half) { /* this class is done (or none has begun): the next one */
            g->lo += g->half + g->right;
            if (g->lo >= c->n)
                return 0;
            begin_class(c, g);
            continue;
        }
        if (spent >= work)
            return 1;
        spent += pair_left(c->v + g->lo, g, plan);
        g->i++;
    }
    return 0;
}

size_t mesher_scan_finish(struct mesher_scan *s, struct mesh_plan *plan, size_t max_pairs)
{
    while (mesher_scan_pair(s, plan, max_pairs, SIZE_MAX) > 0)
        ;
    return plan->npairs;
}

void mesher_scan_free(struct mesher_scan *s)
{
    if (!s)
        return;
    free(s->c.v);
    free(s);
}

int mesher_plan(struct process *p, struct mesh_plan *plan, size_t max_pairs, double cutoff)
{
    struct mesher_scan *s = mesher_scan_new(p, cutoff);
    int rc = -1;
    plan->npairs = 0;
    if (!s)
        return -1;
    while ((rc = mesher_scan_step(s, UINT32_MAX)) > 0)
        ;
    if (rc == 0)
        mesher_scan_finish(s, plan, max_pairs);
    mesher_scan_free(s);
    return rc;
}
