/* mesher.c: SplitMesher; see mesher.h. */
#include "mesher.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Bounds the memory one round may take whatever the table claims: enough spans to fill
 * MESHER_MAX_PAIRS many times over. */
#define MESHER_MAX_CANDIDATES (1u << 18)

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

/* xorshift64*: varies the pairing between rounds, seeded per round from the kernel. */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
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

/* v: one class's candidates in address order. */
static void split_mesh(struct cand *v, size_t n, struct mesh_plan *plan, size_t max_pairs,
                       uint64_t *rng)
{
    size_t half = n / 2, right = n - half;
    if (!half)
        return;
    size_t start = (size_t)(next_random(rng) % right), probes = right < MESHER_PROBES ? right : MESHER_PROBES;
    size_t run = SIZE_MAX; /* offset of the previous left span's match */
    for (size_t i = 0; i < half && plan->npairs < max_pairs; i++) {
        struct cand *b = run == SIZE_MAX ? NULL : &v[half + (i + run) % right];
        if (b && !b->used && meshable(&v[i], b)) {
            add_pair(plan, &v[i], b);
            continue;
        }
        run = SIZE_MAX;
        for (size_t k = 0; k < probes; k++) {
            size_t off = start + k;
            b = &v[half + (i + off) % right];
            if (!b->used && meshable(&v[i], b)) {
                add_pair(plan, &v[i], b);
                run = off;
                break;
            }
        }
    }
}

int mesher_plan(struct process *p, struct mesh_plan *plan, size_t max_pairs, double cutoff)
{
    struct collect c = {.proc = p, .cutoff = cutoff};
    if (max_pairs > MESHER_MAX_PAIRS)
        max_pairs = MESHER_MAX_PAIRS;
    plan->npairs = 0;
    if (process_scan(p, NULL, collect_sparse, &c) != 0 || c.oom) {
        free(c.v);
        return -1;
    }
    plan->candidates = c.n;
    uint64_t rng;
    if (getrandom(&rng, sizeof rng, 0) != sizeof rng || rng == 0)
        rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)c.n;
    qsort(c.v, c.n, sizeof *c.v, by_class_and_page);
    for (size_t lo = 0, hi; lo < c.n; lo = hi) {
        for (hi = lo; hi < c.n && c.v[hi].cls == c.v[lo].cls; hi++)
            ;
        split_mesh(c.v + lo, hi - lo, plan, max_pairs, &rng);
    }
    free(c.v);
    return 0;
}
