/*
 * policy_decide.c: the policy's decision, a pure function of the settings, what the policy
 * remembers of a process and one measurement of it (see policy.h).  Nothing here reads a
 * clock or a file, logs or starts anything: policy.c measures, asks, and acts on the
 * verdict.  tests/test_policy.c drives it directly.
 */
#include "policy.h"

unsigned policy_limit(const struct policy_settings *s, const struct policy_proc *st)
{
    (void)st;
    return s->max_pairs_per_round;
}

static int compaction_goes_on(const struct policy_proc *st)
{
    /* A fruitless round both ends a compaction and sets a backoff; this is belt and braces. */
    return st->compacting && st->backoff == 0;
}

/* Seconds that must pass from one round's start to the next's. */
static double min_interval(const struct policy_settings *s, const struct policy_proc *st, double pressure)
{
    /* A process's first round waits for nothing but a quiet heap: min_interval spaces
     * rounds, and registration is not one (a program that fragments its heap and goes
     * idle right after starting is compacted within seconds, not min_interval after). */
    double mi = st->rounds == 0 ? 0 : s->min_interval;
    /* A compaction under way goes on as soon as the heap's activity can be measured again:
     * each request is held to hold_budget_ms and the requests to duty_ms_per_s, and a
     * fruitless round ends the compaction. */
    double rearm = s->interval < POLICY_REARM_SECONDS ? s->interval : POLICY_REARM_SECONDS;
    if (compaction_goes_on(st) && rearm < mi)
        mi = rearm;
    if (st->backoff > mi)
        mi = st->backoff;
    if (pressure >= s->pressure_avg10)
        mi /= 2;
    return mi;
}

/* Monotonic seconds when the process's next round is due (policy.h's "due"). */
static double due_at(const struct policy_settings *s, const struct policy_proc *st, double pressure)
{
    double at = st->last_round + min_interval(s, st, pressure);
    return at > st->next_request_at ? at : st->next_request_at;
}

int policy_measure_due(const struct policy_settings *s, const struct policy_proc *st,
                       const struct policy_measure *m)
{
    /* Activity compares consecutive measurements, so a process is scanned from the tick
     * before it is due on; one not due for a while (backoff, a round in flight) costs nothing. */
    return !m->round_running && due_at(s, st, m->pressure) - m->now <= 1.5 * s->interval;
}

/* Change of the heap since the previous measurement, as a fraction of the live bytes then;
 * -1 when there is no previous one. */
static double activity(const struct policy_settings *s, const struct policy_proc *st,
                       const struct policy_measure *m)
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
    double a = (double)delta / (double)(prev ? prev : 1);
    /* Per interval: a compaction re-measures sooner, and a change made in half an interval
     * is as busy as twice that change in a whole one.  A longer window is not scaled down:
     * a burst at its end would be averaged away. */
    double window = m->now - st->measured_at;
    if (window > 0 && window < s->interval)
        a *= s->interval / window;
    return a;
}

struct policy_verdict policy_decide(const struct policy_settings *s, const struct policy_proc *st,
                                    const struct policy_measure *m)
{
    struct policy_verdict v = {.kind = POLICY_NOT_DUE};
    v.min_interval = min_interval(s, st, m->pressure);
    v.due = due_at(s, st, m->pressure);
    v.activity = activity(s, st, m);
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
    if (m->now < v.due)
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
    if (policy_cpu_waits(s, m->spare_cpus, m->online_cpus, v.pressed)) {
        v.kind = POLICY_CPU_BUSY;
        return v;
    }
    v.kind = POLICY_START;
    v.limit = policy_limit(s, st);
    return v;
}

struct policy_after policy_after_round(const struct policy_settings *s, struct policy_proc *st,
                                       const struct round_outcome *o)
{
    struct policy_after a = {0};
    st->last_round = o->started;
    st->rounds++;
    a.fruitless = o->timed_out || o->meshed == 0 || (o->pairs && o->budget_rejected * 2 > o->pairs);
    if (a.fruitless) {
        st->compacting = 0; /* the next compaction waits for min_fragmentation again */
        double base = st->backoff > s->min_interval ? st->backoff : s->min_interval;
        double next = base > 0 ? base * 2 : 1;
        st->backoff = next > POLICY_MAX_BACKOFF_SECONDS ? POLICY_MAX_BACKOFF_SECONDS : next;
    } else {
        st->backoff = 0;
    }
    /* A compaction goes on as soon as it is due, not at the next tick (pressure would only
     * halve the re-arm: not worth a file read per round). */
    a.rearmed = compaction_goes_on(st);
    st->rearm_at = a.rearmed ? due_at(s, st, 0) : 0;
    return a;
}

double policy_duty_share(double spare_cpus, int pressed)
{
    if (pressed || spare_cpus < 0 || spare_cpus >= 1)
        return 1;
    return spare_cpus > POLICY_BUSY_DUTY_SHARE ? spare_cpus : POLICY_BUSY_DUTY_SHARE;
}

double policy_spare_needed(const struct policy_settings *s, unsigned cpus)
{
    if (cpus == 0 || s->min_spare_cpu > cpus)
        return s->min_spare_cpu;
    double most = POLICY_MAX_SPARE_SHARE * cpus;
    return s->min_spare_cpu < most ? s->min_spare_cpu : most;
}

int policy_cpu_waits(const struct policy_settings *s, double spare_cpus, unsigned cpus, int pressed)
{
    return !pressed && spare_cpus >= 0 && spare_cpus < policy_spare_needed(s, cpus);
}

int policy_request_background(double spare_cpus, int pressed, int waited_for)
{
    return !waited_for && !pressed && spare_cpus >= POLICY_BACKGROUND_SPARE_CPUS;
}

void policy_note_spare(const struct policy_settings *s, struct policy_proc *st, double spare_cpus,
                       unsigned cpus, int pressed)
{
    st->duty_share = policy_duty_share(spare_cpus, pressed);
    st->cpu_wait = policy_cpu_waits(s, spare_cpus, cpus, pressed);
    if (st->cpu_wait)
        st->ramp = 0; /* the requests after the wait start small again */
}

unsigned policy_ramp_pairs(const struct policy_proc *st, unsigned pairs)
{
    unsigned shift = st->ramp < POLICY_RAMP_STEPS ? st->ramp : POLICY_RAMP_STEPS;
    unsigned cap = POLICY_PROBE_PAIRS << shift;
    return pairs < cap ? pairs : cap;
}

static double duty_share(const struct policy_proc *st)
{
    return st->duty_share > 0 && st->duty_share < 1 ? st->duty_share : 1;
}

/* A reply's program_cpu_ns: opens a window, or closes one at least
 * POLICY_IDLE_WINDOW_SECONDS long and sets program_idle from it (policy.h, "idle program").
 * The shim's figure is the process's CPU less its own thread's, which can step back by a
 * few microseconds (the two are read one after the other): up to POLICY_CPU_JITTER_NS back
 * counts as no CPU.  Unknown CPU, or a figure further back (the process's word), closes
 * nothing and counts as busy (program_cpu_share -1). */
static void note_program_cpu(struct policy_proc *st, const struct round_outcome *o)
{
    if (o->timed_out)
        return;
    if (o->program_cpu_ns == 0 ||
        (st->program_cpu_at > 0 && o->program_cpu_ns + POLICY_CPU_JITTER_NS < st->program_cpu_ns)) {
        st->program_idle = 0;
        st->program_cpu_share = -1;
        st->program_cpu_at = 0;
        st->program_verdicts++;
        return;
    }
    if (st->program_cpu_at <= 0 || o->ended <= st->program_cpu_at) {
        st->program_cpu_ns = o->program_cpu_ns;
        st->program_cpu_at = o->ended;
        return;
    }
    double window = o->ended - st->program_cpu_at;
    if (window < POLICY_IDLE_WINDOW_SECONDS)
        return;
    uint64_t used = o->program_cpu_ns > st->program_cpu_ns ? o->program_cpu_ns - st->program_cpu_ns : 0;
    st->program_cpu_share = (double)used / 1e9 / window;
    st->program_idle = st->program_cpu_share < POLICY_IDLE_CPU_SHARE;
    st->program_verdicts++;
    st->program_cpu_ns = o->program_cpu_ns;
    st->program_cpu_at = o->ended;
}

/* A reply's mesher_cpu_ns: the control thread's share of a CPU since the previous reply. */
static void note_mesher_cpu(struct policy_proc *st, const struct round_outcome *o)
{
    if (o->timed_out)
        return;
    double window = o->ended - st->mesher_cpu_at;
    if (o->mesher_cpu_ns && st->mesher_cpu_at > 0 && o->mesher_cpu_ns >= st->mesher_cpu_ns && window > 0)
        st->mesher_cpu_share = (double)(o->mesher_cpu_ns - st->mesher_cpu_ns) / 1e9 / window;
    else
        st->mesher_cpu_share = 0;
    /* A figure no thread can reach (the process's word) earns no credit. */
    if (st->mesher_cpu_share > 1)
        st->mesher_cpu_share = 0;
    st->mesher_cpu_ns = o->mesher_cpu_ns;
    st->mesher_cpu_at = o->mesher_cpu_ns ? o->ended : 0;
}

double policy_spare_credit(const struct policy_proc *st, double spare_cpus, double now)
{
    if (spare_cpus < 0 || st->mesher_cpu_at <= 0 || now - st->mesher_cpu_at > POLICY_MESHER_CREDIT_SECONDS)
        return spare_cpus;
    return spare_cpus + st->mesher_cpu_share;
}

double policy_duty_ms(const struct policy_settings *s, const struct policy_proc *st)
{
    if (st->program_idle && s->idle_duty_ms_per_s > s->duty_ms_per_s)
        return s->idle_duty_ms_per_s;
    return s->duty_ms_per_s;
}

void policy_after_request(const struct policy_settings *s, struct policy_proc *st,
                          const struct round_outcome *o)
{
    note_program_cpu(st, o);
    note_mesher_cpu(st, o);
    if (st->ramp < POLICY_RAMP_STEPS)
        st->ramp++;
    if (o->timed_out) {
        /* Nothing measured, and at least ROUND_TIMEOUT_SECONDS for the request: assume
         * twice the cost (no estimate yet: twice what the probe was sized for). */
        double known = st->pair_ns > 0 ? st->pair_ns : s->hold_budget_ms * 1e6 / POLICY_PROBE_PAIRS;
        st->pair_ns = 2 * known;
        return;
    }
    if (o->holds) {
        /* The longest hold (its bucket's upper bound): a longer one counts at once, a
         * shorter one half, as the cost per pair. */
        double sample = hold_longest_us(o->hold_us_log2, HOLD_BUCKETS) * 1e3;
        st->hold_ns = st->hold_ns == 0 || sample > st->hold_ns ? sample : (st->hold_ns + sample) / 2;
    }
    if (o->meshed) {
        /* Pairs refused before the barrier cost none of it: per meshed pair.  A slower
         * request counts at once, a faster one half: the estimate errs on the slow side. */
        double sample = (double)o->barrier_ns / o->meshed;
        st->pair_ns = st->pair_ns == 0 || sample > st->pair_ns ? sample : (st->pair_ns + sample) / 2;
    }
    /* Duty: the request and the gap after it last at least cost / duty, where cost is
     * the barrier, or with no CPU to spare the request's whole time (policy.h). */
    double share = duty_share(st), cost = (double)o->barrier_ns / 1e9;
    if (share < 1 && o->ended - o->started > cost)
        cost = o->ended - o->started;
    double duty = policy_duty_ms(s, st) / 1000 * share;
    double next = duty < 1 ? o->ended + cost * (1 / duty - 1) : o->ended;
    if (next > st->next_request_at)
        st->next_request_at = next;
}

unsigned policy_request_pairs(const struct policy_settings *s, const struct policy_proc *st)
{
    unsigned max = s->max_pairs_per_round;
    if (st->pair_ns <= 0)
        return POLICY_PROBE_PAIRS < max ? POLICY_PROBE_PAIRS : max;
    /* The hold budget bounds each hold: a writer waits for one hold, not for the request.
     * While the shim's holds fit it (runs of pairs under one hold each), a request carries
     * as many pairs as POLICY_REQUEST_DUTY_SHARE of the duty budget's second allows: the
     * duty budget's "plus one request's" stays a small share of it.  Holds unknown (an older
     * shim) or over the budget: the request's whole barrier is held to the hold budget. */
    double budget_ms = s->hold_budget_ms, duty_ms = s->duty_ms_per_s * duty_share(st);
    if (st->hold_ns > 0 && st->hold_ns <= s->hold_budget_ms * 1e6 &&
        duty_ms * POLICY_REQUEST_DUTY_SHARE > budget_ms)
        budget_ms = duty_ms * POLICY_REQUEST_DUTY_SHARE;
    double fit = budget_ms * 1e6 / st->pair_ns;
    if (fit < 1)
        return 1;
    return fit < max ? (unsigned)fit : max;
}

double policy_request_wait(const struct policy_proc *st, double now)
{
    double wait = st->next_request_at > now ? st->next_request_at - now : 0;
    return st->cpu_wait && wait < POLICY_CPU_RECHECK_SECONDS ? POLICY_CPU_RECHECK_SECONDS : wait;
}

void policy_skip(struct policy_proc *st) { st->have_live_prev = 0; }

void policy_registered(const struct policy_settings *s, struct policy_proc *st, double now)
{
    *st = (struct policy_proc){.last_round = now, .activity = -1, .program_cpu_share = -1,
                               .program_idle_logged = -1};
    /* Its first look comes a second after registration, not at the next tick: a first
     * measurement only records (activity unknown), so a program that fragments its heap
     * and goes idle within seconds of starting would otherwise wait up to two ticks. */
    if (s->interval > POLICY_BUSY_RECHECK_SECONDS)
        st->rearm_at = now + POLICY_BUSY_RECHECK_SECONDS;
}

void policy_note(const struct policy_settings *s, struct policy_proc *st, const struct policy_measure *m,
                 const struct policy_verdict *v)
{
    st->refill_prev = m->refill_bytes;
    st->live_prev = m->live_bytes;
    st->have_live_prev = 1;
    st->measured_at = m->now;
    st->activity = v->activity;
    /* The look after this one: a heap that would be compacted but for its activity is
     * looked at again soon (its first quiet second starts the compaction, not the first
     * quiet tick after it); one due before the next tick, when it is due.  Otherwise the
     * ticks, or the end of the round this verdict may start. */
    if ((v->kind == POLICY_BUSY || v->kind == POLICY_CPU_BUSY) && s->interval > POLICY_BUSY_RECHECK_SECONDS)
        st->rearm_at = m->now + POLICY_BUSY_RECHECK_SECONDS;
    else if (v->kind == POLICY_NOT_DUE && !m->round_running && v->due < m->now + s->interval)
        st->rearm_at = st->rearm_at && st->rearm_at < v->due ? st->rearm_at : v->due;
    else if (v->kind != POLICY_NOT_DUE)
        st->rearm_at = 0;
    if (v->kind == POLICY_START) {
        st->ramp = 0; /* its first requests are small (policy_ramp_pairs) */
        /* Its first requests go at duty_ms_per_s: the program's CPU is measured afresh. */
        st->program_cpu_at = 0;
        st->program_idle = 0;
    }
    /* The next compaction waits for min_fragmentation again. */
    if (v->kind == POLICY_SETTLED || v->kind == POLICY_MAP_FULL)
        st->compacting = 0;
}
