/*
 * policy_decide.c: the policy's decision, a pure function of the settings, what the policy
 * remembers of a process and one measurement of it (see policy.h).  Nothing here reads a
 * clock or a file, logs or starts anything: policy.c measures, asks, and acts on the
 * verdict.  tests/test_policy.c drives it directly.
 */
#include "policy.h"

unsigned policy_limit(const struct policy_settings *s, const struct policy_proc *st)
{
    unsigned max = s->max_pairs_per_round;
    return st->pair_limit && st->pair_limit < max ? st->pair_limit : max;
}

/* Seconds that must pass between two rounds of the process now. */
static double min_interval(const struct policy_settings *s, const struct policy_proc *st, double pressure)
{
    double mi = s->min_interval;
    /* A compaction under way goes on at every tick: each round is already held to
     * pause_budget_ms by the pair limit, and a fruitless one ends the compaction. */
    if (st->compacting && st->backoff == 0 && s->interval < mi)
        mi = s->interval;
    if (st->backoff > mi)
        mi = st->backoff;
    if (pressure >= s->pressure_avg10)
        mi /= 2;
    return mi;
}

int policy_measure_due(const struct policy_settings *s, const struct policy_proc *st,
                       const struct policy_measure *m)
{
    /* Activity compares consecutive ticks, so a process is scanned from the tick before it
     * is due on; one not due for a while (backoff, a round in flight) costs nothing. */
    double mi = min_interval(s, st, m->pressure);
    return !m->round_running && st->last_round + mi - m->now <= 1.5 * s->interval;
}

/* Change of the heap since the previous measurement, as a fraction of the live bytes then;
 * -1 when there is no previous one. */
static double activity(const struct policy_proc *st, const struct policy_measure *m)
{
    if (!st->have_live_prev)
        return -1;
    uint64_t prev = st->live_prev;
    uint64_t delta = m->live_bytes > prev ? m->live_bytes - prev : prev - m->live_bytes;
    /* Slots handed out since the last tick: churn that frees as fast as it allocates
     * leaves live bytes flat but not this (the table's word; a lie only delays the
     * liar's own compaction). */
    uint64_t refilled = m->refill_bytes - st->refill_prev;
    if (refilled > delta && refilled < (UINT64_C(1) << 62))
        delta = refilled;
    return (double)delta / (double)(prev ? prev : 1);
}

struct policy_verdict policy_decide(const struct policy_settings *s, const struct policy_proc *st,
                                    const struct policy_measure *m)
{
    struct policy_verdict v = {.kind = POLICY_NOT_DUE};
    v.min_interval = min_interval(s, st, m->pressure);
    v.activity = activity(st, m);
    v.pressed = m->pressure >= s->pressure_avg10;
    double frag = m->heap_bytes ? 1.0 - (double)m->live_bytes / (double)m->heap_bytes : 0;
    v.fragmentation = frag < 0 ? 0 : frag;
    if (m->round_running)
        return v;
    /* A process without a safe write barrier refuses every pair (rounds.c notes why): an
     * automatic round would only cost it a request.  meshctl mesh still asks it. */
    if (m->refused) {
        v.kind = POLICY_REFUSED;
        return v;
    }
    if (m->now - st->last_round < v.min_interval)
        return v;
    /* Hysteresis: a compaction starts at min_fragmentation and, once started, goes on
     * down to stop_fragmentation (or until a round meshes nothing). */
    double threshold = s->min_fragmentation;
    if (st->compacting && s->stop_fragmentation < threshold)
        threshold = s->stop_fragmentation;
    if (m->heap_bytes < s->min_heap_bytes || v.fragmentation < threshold || m->candidates < 2) {
        v.kind = POLICY_SETTLED;
        return v;
    }
    /* The shim refuses pairs once its mappings reach its limit (the table's word: a lie
     * only costs the liar its compaction).  Waiting costs nothing: frees drop aliases. */
    if (m->map_limit && m->map_breaks + 2 * POLICY_MIN_PAIR_LIMIT > m->map_limit) {
        v.kind = POLICY_MAP_FULL;
        return v;
    }
    /* An unknown activity (first measurement) waits for the next one, unless under
     * memory pressure. */
    if (!v.pressed && (v.activity < 0 || v.activity > s->max_activity)) {
        v.kind = POLICY_BUSY;
        return v;
    }
    v.kind = POLICY_START;
    v.limit = policy_limit(s, st);
    return v;
}

/* The next pair limit, fitted to pause_budget_ms; see policy.h. */
static unsigned next_pair_limit(const struct policy_settings *s, unsigned lim, const struct round_outcome *o)
{
    unsigned max = s->max_pairs_per_round, next = lim;
    double budget = s->pause_budget_ms * 1e6, measured = (double)o->barrier_ns;
    if (o->timed_out) {
        next = lim / 2 > POLICY_MIN_PAIR_LIMIT ? lim / 2 : POLICY_MIN_PAIR_LIMIT;
    } else if (o->pairs == 0) {
        return lim;
    } else if (measured > budget) {
        /* What fit in the budget at this round's cost per meshed pair.  meshed is 0 only if
         * the shim's numbers are inconsistent: count it as 1 pair. */
        double base = o->meshed ? (double)o->meshed : 1;
        double fit = base * budget / measured;
        next = fit < POLICY_MIN_PAIR_LIMIT ? POLICY_MIN_PAIR_LIMIT : (unsigned)fit;
    } else if (o->meshed && lim < max && measured * (double)lim / (double)o->meshed < budget / 2) {
        /* Even a full round at this cost per pair stays well under the budget. */
        next = lim > max / 2 ? max : lim * 2;
    }
    if (next > lim && measured > budget)
        next = lim; /* over budget never grows (lim may be below the floor of 64) */
    return next > max ? max : next;
}

struct policy_after policy_after_round(const struct policy_settings *s, struct policy_proc *st,
                                       const struct round_outcome *o)
{
    struct policy_after a = {.limit_before = policy_limit(s, st)};
    st->last_round = o->started;
    st->rounds++;
    a.limit_after = next_pair_limit(s, a.limit_before, o);
    if (a.limit_after != a.limit_before)
        st->pair_limit = a.limit_after >= s->max_pairs_per_round ? 0 : a.limit_after;
    a.fruitless = o->timed_out || o->meshed == 0 || (o->pairs && o->budget_rejected * 2 > o->pairs);
    if (a.fruitless) {
        st->compacting = 0; /* the next compaction waits for min_fragmentation again */
        double base = st->backoff > s->min_interval ? st->backoff : s->min_interval;
        double next = base > 0 ? base * 2 : 1;
        st->backoff = next > POLICY_MAX_BACKOFF_SECONDS ? POLICY_MAX_BACKOFF_SECONDS : next;
    } else {
        st->backoff = 0;
    }
    return a;
}

void policy_skip(struct policy_proc *st) { st->have_live_prev = 0; }

void policy_note(struct policy_proc *st, const struct policy_measure *m, const struct policy_verdict *v)
{
    st->refill_prev = m->refill_bytes;
    st->live_prev = m->live_bytes;
    st->have_live_prev = 1;
    st->activity = v->activity;
    /* The next compaction waits for min_fragmentation again. */
    if (v->kind == POLICY_SETTLED || v->kind == POLICY_MAP_FULL)
        st->compacting = 0;
}
