/*
 * policy.c: automatic meshing rounds; see policy.h.  Holds the settings in force (reloads,
 * PolicyRequest) and two timers: the tick, and the re-arm of compactions under way.  Each
 * tick, for each process (and at its re-arm, for a compacting one): measure (its table
 * summary), decide (policy_decide.c, pure), act (log, start a round); every round,
 * automatic or meshctl's, is paced and reports back through policy_round_hooks.
 */
#include "policy.h"

#include <errno.h>
#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "budget.h"
#include "clock.h"
#include "log.h"
#include "peer.h"
#include "registry.h"
#include "rounds.h"
#include "spare_cpu.h"
#include "summary.h"

/* A re-armed process whose table scan is still being made is looked at again this soon. */
#define POLICY_RESCAN_SECONDS 0.1

static struct event_base *loop;
static struct event *timer;
static struct event *rearm_timer; /* the earliest rearm_at of all processes */
static struct policy_settings cur;
static const char *config_file;

/* ---- evaluation -------------------------------------------------------------------------- */

/* Memory pressure "some avg10" from /proc/pressure/memory; 0 if unavailable. */
static double read_memory_pressure(void)
{
    FILE *f = fopen("/proc/pressure/memory", "re");
    if (!f)
        return 0;
    char line[256];
    double avg10 = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "some avg10=%lf", &avg10) == 1)
            break;
    fclose(f);
    return isfinite(avg10) && avg10 > 0 ? avg10 : 0;
}

static double last_pressure; /* the last reading of policy_memory_pressure() */

static double policy_memory_pressure(void) { return last_pressure = read_memory_pressure(); }

/* The measure step: fills m from p's table summary.  0; 1 when this tick has nothing new
 * (a sliced scan still running and its predecessor already used); -1 when the table is
 * unreadable (the process is dropped). */
static int measure(struct process *p, struct policy_measure *m)
{
    /* Shared by every registration of the same table and scanned at most once per tick; a
     * big table is scanned in slices, and until this tick's scan is done the one before
     * stands in for it (once: activity compares consecutive scans). */
    int pending;
    const struct table_summary *sum = summary_get(p, cur.occupancy_cutoff, m->now, &pending);
    if (!sum && pending) {
        sum = summary_last(p);
        if (!sum || sum->started == p->policy.summary_used)
            return 1;
    }
    if (!sum) {
        meshd_log("pid %d: span table unreadable; dropping the process", (int)p->pid);
        conn_fail(p->conn);
        return -1;
    }
    p->policy.summary_used = sum->started;
    m->heap_bytes = pages_to_bytes(sum->counters.heap_pages);
    m->live_bytes = sum->st.live_bytes;
    m->refill_bytes = sum->counters.refill_bytes;
    m->candidates = sum->candidates;
    m->map_breaks = sum->counters.map_breaks;
    m->map_limit = sum->counters.map_limit;
    return 0;
}

/* The verdict's log lines: once per busy spell and per full mapping budget, not every tick. */
static void report(struct process *p, const struct policy_measure *m, const struct policy_verdict *v)
{
    struct policy_proc *st = &p->policy;
    /* A spell of waiting for CPU ends with any verdict that is not about it. */
    if (v->kind != POLICY_CPU_BUSY && v->kind != POLICY_NOT_DUE)
        st->cpu_wait_logged = 0;
    switch (v->kind) {
    case POLICY_SETTLED:
        if (st->compacting)
            meshd_log("pid %d: compaction done: fragmentation %.2f, heap %llu KiB, live %llu KiB",
                      (int)p->pid, v->fragmentation, (unsigned long long)(m->heap_bytes >> 10),
                      (unsigned long long)(m->live_bytes >> 10));
        break;
    case POLICY_MAP_FULL:
        if (!st->map_full_logged)
            meshd_log("pid %d: mapping budget used up (%llu of %llu mappings): no automatic "
                      "round until frees give some back; see vm.max_map_count",
                      (int)p->pid, (unsigned long long)m->map_breaks,
                      (unsigned long long)m->map_limit);
        st->map_full_logged = 1;
        break;
    case POLICY_BUSY:
        st->map_full_logged = 0;
        /* An unknown activity (first tick) just waits for the next one. */
        if (v->activity >= 0 && !st->busy_logged) {
            meshd_log("pid %d: heap busy: activity %.3f > max_activity %g (live %llu KiB); "
                      "automatic round waits until it goes quiet",
                      (int)p->pid, v->activity, cur.max_activity,
                      (unsigned long long)(m->live_bytes >> 10));
            st->busy_logged = 1;
        }
        break;
    case POLICY_CPU_BUSY:
        st->map_full_logged = 0;
        if (!st->cpu_wait_logged) {
            meshd_log("pid %d: no CPU to spare (%.2f idle < min_spare_cpu %g); automatic round "
                      "waits until some is", (int)p->pid, m->spare_cpus,
                      policy_spare_needed(&cur, m->online_cpus));
            st->cpu_wait_logged = 1;
        }
        break;
    case POLICY_START:
        st->map_full_logged = 0;
        break;
    case POLICY_NOT_DUE:
    case POLICY_REFUSED:
        break;
    }
}

/* One reading of the spare CPU and of memory pressure, for everything decided from it. */
struct spare_reading {
    double spare; /* spare_cpu_now(); < 0: unknown */
    int pressed;  /* the last memory pressure >= pressure_avg10 */
};

/* The share of the duty budget in force now, and whether paced requests wait for spare
 * CPU (policy.h, "spare CPU", "no CPU to spare"); paced: a request that is to wait for
 * it, logged once per spell of waiting.  Returns the reading it decided from, so that the
 * caller decides the rest (pace(): background) from the same one. */
static struct spare_reading note_spare_cpu(struct process *p, int paced)
{
    double now = monotonic_now();
    struct policy_proc *st = &p->policy;
    struct spare_reading r = {.spare = policy_spare_credit(st, spare_cpu_now(now), now),
                              .pressed = last_pressure >= cur.pressure_avg10};
    unsigned cpus = spare_cpu_online();
    policy_note_spare(&cur, st, r.spare, cpus, r.pressed);
    if (!st->cpu_wait) {
        st->cpu_wait_logged = 0;
    } else if (paced && !st->cpu_wait_logged) {
        meshd_log("pid %d: no CPU to spare (%.2f idle < min_spare_cpu %g): the round's next "
                  "request waits", (int)p->pid, r.spare, policy_spare_needed(&cur, cpus));
        st->cpu_wait_logged = 1;
    }
    return r;
}

/* The act step for POLICY_START. */
static void start_round(struct process *p, const struct policy_measure *m, const struct policy_verdict *v)
{
    /* Planning a round scans the whole table: the process's uid pays for it (budget.h). */
    if (!budget_allow(p->uid))
        return;
    p->policy.busy_logged = 0;
    char act[48];
    if (v->activity < 0)
        snprintf(act, sizeof act, "not measured yet");
    else
        snprintf(act, sizeof act, "%.3f", v->activity);
    note_spare_cpu(p, 0);
    const struct policy_proc *st = &p->policy;
    meshd_log("pid %d: automatic round: fragmentation %.2f, heap %llu KiB, live %llu KiB, "
              "%zu candidates, activity %s%s, %.1f s since the last round (min %.1f s%s), "
              "memory pressure %.2f, duty share %.2f, pair limit %u, "
              "requests of %u pairs",
              (int)p->pid, v->fragmentation, (unsigned long long)(m->heap_bytes >> 10),
              (unsigned long long)(m->live_bytes >> 10), m->candidates, act,
              v->pressed ? " (ignored under memory pressure)" : "", m->now - st->last_round,
              v->min_interval, st->compacting ? ", compacting" : "", m->pressure,
              st->duty_share > 0 ? st->duty_share : 1, v->limit, policy_request_pairs(&cur, st));
    double cpu = budget_cpu_now();
    /* Compacting from here on; a round that finds nothing to mesh reports so before
     * rounds_start returns, which ends the compaction again (policy_round_hooks). */
    p->policy.compacting = 1;
    int err = rounds_start(p, 0, 1, v->limit, cur.occupancy_cutoff);
    budget_charge(p->uid, budget_cpu_now() - cpu);
    if (err)
        p->policy.compacting = 0;
    if (err == EIO) {
        meshd_log("pid %d: span table unreadable; dropping the process", (int)p->pid);
        conn_fail(p->conn);
    } else if (err) {
        meshd_log("pid %d: automatic round not started: %s", (int)p->pid, strerror(err));
    }
}

/* One process at one tick, or at its re-arm: measure, decide (policy_decide.c), act. */
static void evaluate(struct process *p, double now, double pressure)
{
    struct policy_measure m = {.now = now, .pressure = pressure, .round_running = p->round != NULL,
                               .refused = p->refused[0] != 0,
                               .spare_cpus = policy_spare_credit(&p->policy, spare_cpu_now(now), now),
                               .online_cpus = spare_cpu_online()};
    if (!policy_measure_due(&cur, &p->policy, &m)) {
        /* A round in flight: the measurement before it stays the one to compare with. */
        if (!m.round_running)
            policy_skip(&p->policy);
        return;
    }
    int rc = measure(p, &m);
    if (rc == 1 && p->policy.rearm_at)
        p->policy.rearm_at = now + POLICY_RESCAN_SECONDS; /* its scan is still being made */
    if (rc != 0)
        return;
    struct policy_verdict v = policy_decide(&cur, &p->policy, &m);
    report(p, &m, &v);
    policy_note(&cur, &p->policy, &m, &v);
    if (v.kind == POLICY_START)
        start_round(p, &m, &v);
}

static void schedule_rearm(void);

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (!cur.enabled || !registry_first())
        return;
    double now = monotonic_now(), pressure = policy_memory_pressure();
    spare_cpu_now(now); /* keeps its window at most a tick long */
    /* rounds_start may fail a connection, but closing happens later from the loop, so the
     * list stays intact while it is walked. */
    for (struct process *p = registry_first(); p; p = p->next) {
        /* Its connection outlived it in another process: nobody answers for this table. */
        if (peer_exited(p->pidfd)) {
            meshd_log("pid %d has exited but its connection lives on; dropping it", (int)p->pid);
            conn_fail(p->conn);
            continue;
        }
        evaluate(p, now, pressure);
    }
    schedule_rearm(); /* busy heaps are looked at again before the next tick */
}

/* Arms the re-arm timer for the earliest rearm_at of all processes (none: disarmed). */
static void schedule_rearm(void)
{
    double first = 0;
    for (struct process *p = registry_first(); p; p = p->next)
        if (p->policy.rearm_at > 0 && (first == 0 || p->policy.rearm_at < first))
            first = p->policy.rearm_at;
    event_del(rearm_timer);
    if (first == 0)
        return;
    double wait = first - monotonic_now() + 0.001; /* never early by a rounding */
    if (wait < 0)
        wait = 0;
    struct timeval tv = {.tv_sec = (time_t)wait};
    tv.tv_usec = (suseconds_t)((wait - (double)tv.tv_sec) * 1e6);
    event_add(rearm_timer, &tv);
}

static void on_rearm(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    double now = monotonic_now(), pressure = -1;
    for (struct process *p = registry_first(); p; p = p->next) {
        if (!p->policy.rearm_at || p->policy.rearm_at > now)
            continue;
        if (!cur.enabled) {
            p->policy.rearm_at = 0;
            continue;
        }
        if (pressure < 0)
            pressure = policy_memory_pressure();
        /* evaluate() uses it up (policy_note), or sets a retry if the scan is not ready;
         * a process not due after all is left to the ticks. */
        double was = p->policy.rearm_at;
        evaluate(p, now, pressure);
        if (p->policy.rearm_at == was)
            p->policy.rearm_at = 0;
    }
    schedule_rearm();
}

static void schedule(void)
{
    struct timeval tv;
    tv.tv_sec = (time_t)cur.interval;
    tv.tv_usec = (suseconds_t)((cur.interval - (double)tv.tv_sec) * 1e6);
    event_del(timer);
    event_add(timer, &tv);
}

int policy_start(struct event_base *base, const struct policy_settings *s, const char *config_path)
{
    loop = base;
    cur = *s;
    config_file = config_path;
    timer = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    rearm_timer = evtimer_new(base, on_rearm, NULL);
    if (!timer || !rearm_timer)
        return -1;
    schedule();
    return 0;
}

void policy_stop(void)
{
    if (timer)
        event_free(timer);
    if (rearm_timer)
        event_free(rearm_timer);
    timer = rearm_timer = NULL;
}

const struct policy_settings *policy_current(void) { return &cur; }

void policy_apply(const struct policy_settings *s)
{
    int resched = s->interval != cur.interval;
    cur = *s;
    if (resched && timer)
        schedule();
    char lines[SETTINGS_COUNT][SETTING_LINE_BYTES], all[sizeof lines + SETTINGS_COUNT] = "";
    settings_format(&cur, lines);
    for (int i = 0; i < SETTINGS_COUNT; i++) {
        strcat(all, " ");
        strcat(all, lines[i]);
    }
    meshd_log("policy:%s", all);
}

int policy_reload(void)
{
    if (!config_file) {
        meshd_log("reload: no --config file; settings unchanged");
        return 0;
    }
    struct policy_settings s;
    char err[512];
    if (settings_load_file(config_file, &s, err, sizeof err) != 0) {
        meshd_log("reload rejected, old settings kept: %s", err);
        return -1;
    }
    meshd_log("reloaded %s", config_file);
    policy_apply(&s);
    return 0;
}

void policy_process_added(struct process *p)
{
    policy_registered(&cur, &p->policy, monotonic_now());
    if (cur.enabled)
        schedule_rearm();
}

unsigned policy_pair_limit(const struct process *p) { return policy_limit(&cur, &p->policy); }

static struct round_pace pace(struct process *p, int waited_for)
{
    struct spare_reading r = note_spare_cpu(p, !waited_for);
    /* background: only for a round nobody waits for, a whole CPU idle and no memory
     * pressure (policy_request_background); rounds.c sends it as pace() says. */
    struct round_pace pc = {.pairs = policy_request_pairs(&cur, &p->policy),
                            .background = policy_request_background(r.spare, r.pressed, waited_for)};
    if (!waited_for) {
        pc.pairs = policy_ramp_pairs(&p->policy, pc.pairs);
        pc.wait = policy_request_wait(&p->policy, monotonic_now());
    }
    return pc;
}

/* The request is charged at the share in force when it was sent (pace()): a reading over
 * its own time counts the shim's work in it as the machine's (a request whose trim punched
 * for 400 ms read 0.2 CPUs idle, and charged at that share held the round for 20 s). */
static void request_done(struct process *p, const struct round_outcome *o)
{
    struct policy_proc *st = &p->policy;
    uint32_t verdicts = st->program_verdicts;
    policy_after_request(&cur, st, o);
    /* Said when a verdict differs from the last one said, not per request or round (each
     * round starts at duty_ms_per_s until its first window closes: policy.h). */
    if (st->program_verdicts != verdicts && st->program_idle != st->program_idle_logged &&
        cur.idle_duty_ms_per_s > cur.duty_ms_per_s) {
        char share[32] = "CPU unknown";
        if (st->program_cpu_share >= 0)
            snprintf(share, sizeof share, "%.1f%% of a CPU", 100 * st->program_cpu_share);
        meshd_log("pid %d: program %s (%s): requests paced at %s=%g", (int)p->pid,
                  st->program_idle ? "idle" : "busy", share,
                  st->program_idle ? "idle_duty_ms_per_s" : "duty_ms_per_s", policy_duty_ms(&cur, st));
        st->program_idle_logged = st->program_idle;
    }
    note_spare_cpu(p, 0);
}

static void round_done(struct process *p, const struct round_outcome *o)
{
    struct policy_after a = policy_after_round(&cur, &p->policy, o);
    p->policy.busy_logged = 0;
    if (a.fruitless)
        meshd_log("pid %d: %s; next automatic round in %.0f s at the earliest", (int)p->pid,
                  o->timed_out ? "round timed out"
                  : o->meshed == 0 ? "round meshed nothing"
                                   : "most pairs refused for the mapping budget",
                  p->policy.backoff);
    if (a.rearmed && cur.enabled)
        schedule_rearm();
}

const struct round_hooks policy_round_hooks = {.pace = pace, .request_done = request_done, .done = round_done};
