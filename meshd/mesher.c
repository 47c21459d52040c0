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
    uint32_t span_pages;
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
    k->span_pages = sv->span_pages;
    k->cls = sv->cls;
    k->virt_count = sv->virt_count;
    k->used = 0;
}

/* Which class is planned first: that of larger spans (more pages released per pair,
 * mesher.h), then the lower class; 0 for the same class. */
static int by_yield(uint32_t x_pages, uint8_t x_cls, uint32_t y_pages, uint8_t y_cls)
{
    if (x_pages != y_pages)
        return (x_pages < y_pages) - (x_pages > y_pages);
    return (x_cls > y_cls) - (x_cls < y_cls);
}

/* Candidates: by yield (by_yield), each class's spans by page. */
static int by_yield_and_page(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    int order = by_yield(x->span_pages, x->cls, y->span_pages, y->cls);
    return order ? order : (x->page > y->page) - (x->page < y->page);
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

/* b is the page-neighbour after a. */
static int follows(const struct cand *a, const struct cand *b)
{
    return b->cls == a->cls && (uint64_t)b->page == (uint64_t)a->page + a->span_pages;
}

/* l is the lower-addressed span of the pair.  The source (whose virtual spans become
 * aliases) is the one with fewer virtual spans, as each costs a remap; on a tie it is l,
 * so that a run of pairs maps a run of neighbouring pages onto a run of neighbouring pages. */
static void add_pair(struct mesh_plan *plan, struct cand *l, struct cand *r)
{
    struct cand *s = r->virt_count < l->virt_count ? r : l, *d = s == l ? r : l;
    size_t i = plan->npairs++;
    plan->dst[i] = d->id;
    plan->src[i] = s->id;
    plan->place[i] = (struct mesh_plan_place){.src_page = s->page, .dst_page = d->page,
                                              .span_pages = s->span_pages, .cls = s->cls,
                                              .src_single = s->virt_count == 1};
    l->used = r->used = 1;
}

struct ordered_pair {
    struct mesh_plan_place place;
    uint32_t dst, src;
};

/* A finished plan's pairs: by yield, as their classes were planned, then by source. */
static int by_yield_and_source(const void *a, const void *b)
{
    const struct mesh_plan_place *x = &((const struct ordered_pair *)a)->place;
    const struct mesh_plan_place *y = &((const struct ordered_pair *)b)->place;
    int order = by_yield(x->span_pages, x->cls, y->span_pages, y->cls);
    return order ? order : (x->src_page > y->src_page) - (x->src_page < y->src_page);
}

/* The plan is complete: orders it (mesher.h) and counts its runs. */
static void finish_plan(struct mesh_plan *plan)
{
    static struct ordered_pair tmp[MESHER_MAX_PAIRS]; /* meshd is single-threaded */
    size_t n = plan->npairs;
    for (size_t i = 0; i < n; i++)
        tmp[i] = (struct ordered_pair){.place = plan->place[i], .dst = plan->dst[i], .src = plan->src[i]};
    qsort(tmp, n, sizeof tmp[0], by_yield_and_source);
    plan->src_run_pairs = plan->run_pairs = 0;
    for (size_t i = 0; i < n; i++) {
        plan->place[i] = tmp[i].place;
        plan->dst[i] = tmp[i].dst;
        plan->src[i] = tmp[i].src;
        const struct mesh_plan_place *a = &tmp[i - (i > 0)].place, *b = &tmp[i].place;
        if (i == 0 || !a->src_single || !b->src_single || a->cls != b->cls ||
            (uint64_t)b->src_page != (uint64_t)a->src_page + a->span_pages)
            continue;
        plan->src_run_pairs++;
        plan->run_pairs += (uint64_t)b->dst_page == (uint64_t)a->dst_page + a->span_pages;
    }
}

/* Where the pairing stands, so that it can stop after a bounded number of probes and go
 * on later: the class c.v[lo, lo + half + right) (in address order) is being paired, its
 * left span i is next.  Initially (all zero) no class is under way. */
struct pairing {
    int sorted;
    size_t lo, half, right;
    size_t i;
    size_t start; /* this class's random probe offset */
    size_t prev;  /* right index of left span i - 1's partner in a run; SIZE_MAX: none */
    int side;     /* that run's sources: 0 the left spans, 1 the right ones (source_side()) */
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
    g->prev = SIZE_MAX;
    if (g->half)
        g->start = (size_t)(mesh_rng_next(&g->rng) % g->right);
}

/* Which span of a pair add_pair() makes the source: 0 the left one, 1 the right one. */
static int source_side(const struct cand *l, const struct cand *r) { return r->virt_count < l->virt_count; }

/* Left span l and right span r may mesh as one pair of a run whose sources are on `side`:
 * that is their source's side, the source is a span of one virtual span (its pages are
 * its own), and they are meshable. */
static int run_pair(const struct cand *l, const struct cand *r, int side)
{
    return !r->used && source_side(l, r) == side && (side ? r : l)->virt_count == 1 && meshable(l, r);
}

/* How many pairs after (left i, right j) would continue its run: left i + k with right
 * j + k, each the page-neighbour of the one before, up to MESHER_RUN_LOOKAHEAD. */
static size_t run_ahead(const struct cand *v, const struct pairing *g, size_t i, size_t j, int side)
{
    const struct cand *right = v + g->half;
    size_t k = 1;
    for (; k <= MESHER_RUN_LOOKAHEAD && i + k < g->half && j + k < g->right; k++)
        if (!follows(&v[i + k - 1], &v[i + k]) || !follows(&right[j + k - 1], &right[j + k]) ||
            !run_pair(&v[i + k], &right[j + k], side))
            break;
    return k - 1;
}

/*
 * Left span i of the class under way against its right half.  First it continues the run
 * of left span i - 1: the right span after that one's partner, when both are page
 * neighbours of the previous pair's spans.  Else it probes up to MESHER_PROBES spans from
 * the class's random offset and, of the first MESHER_RUN_CHOICES it could mesh with, takes
 * the one that starts the longest run (the first on a tie, as the paper's SplitMesher
 * takes the first).  Returns the bitmap comparisons spent.
 */
static size_t pair_left(struct cand *v, struct pairing *g, struct mesh_plan *plan)
{
    size_t half = g->half, right = g->right, i = g->i;
    struct cand *r = v + half;
    size_t prev = g->prev;
    g->prev = SIZE_MAX;
    if (prev != SIZE_MAX && prev + 1 < right && i > 0 && follows(&v[i - 1], &v[i]) &&
        follows(&r[prev], &r[prev + 1]) && run_pair(&v[i], &r[prev + 1], g->side)) {
        add_pair(plan, &v[i], &r[prev + 1]);
        g->prev = prev + 1;
        return 1;
    }
    size_t probes = right < MESHER_PROBES ? right : MESHER_PROBES, spent = 0;
    size_t best = SIZE_MAX, best_run = 0, choices = 0;
    for (size_t k = 0; k < probes && choices < MESHER_RUN_CHOICES; k++) {
        size_t j = (i + g->start + k) % right;
        spent++;
        if (r[j].used || !meshable(&v[i], &r[j]))
            continue;
        choices++;
        int side = source_side(&v[i], &r[j]);
        size_t ahead = run_pair(&v[i], &r[j], side) ? run_ahead(v, g, i, j, side) : 0;
        spent += ahead + 1;
        if (best == SIZE_MAX || ahead > best_run) {
            best = j;
            best_run = ahead;
        }
        if (best_run == MESHER_RUN_LOOKAHEAD)
            break;
    }
    if (best == SIZE_MAX)
        return spent + 1;
    g->side = source_side(&v[i], &r[best]);
    g->prev = (g->side ? &r[best] : &v[i])->virt_count == 1 ? best : SIZE_MAX;
    add_pair(plan, &v[i], &r[best]);
    return spent;
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
        plan->src_run_pairs = plan->run_pairs = 0;
        plan->candidates = c->n;
        if (getrandom(&g->rng, sizeof g->rng, 0) != sizeof g->rng || g->rng == 0)
            g->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)c->n;
        if (c->n) /* no candidates: c->v may be NULL, which qsort must not get */
            qsort(c->v, c->n, sizeof *c->v, by_yield_and_page);
        g->sorted = 1;
        return c->n > 0;
    }
    size_t spent = 0;
    while (plan->npairs < max_pairs) {
        if (g->i >= g->half) { /* this class is done (or none has begun): the next one */
            g->lo += g->half + g->right;
            if (g->lo >= c->n)
                break;
            begin_class(c, g);
            continue;
        }
        if (spent >= work)
            return 1;
        spent += pair_left(c->v + g->lo, g, plan);
        g->i++;
    }
    finish_plan(plan);
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
