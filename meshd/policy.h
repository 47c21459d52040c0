/*
 * policy.h: when meshd meshes a process on its own, and the settings that decide it.
 *
 * A timer fires every `interval` seconds and looks at each registered process's span
 * table: fragmentation = 1 - live_bytes / heap_bytes, the mesh candidates (detached spans
 * with live/capacity at or below `occupancy_cutoff`), the time since its last round, and
 * the system's memory pressure (/proc/pressure/memory, "some avg10"; no file = 0).  A round
 * starts (rounds.h; one in flight per process) when
 *
 *   fragmentation >= min_fragmentation (stop_fragmentation while compacting, see below),
 *   heap_bytes >= min_heap_bytes, candidates >= 2,
 *   time since the last round >= the process's min interval, and the heap is quiet:
 *   activity <= max_activity (ignored while pressure avg10 >= pressure_avg10),
 *
 * where activity = max(|live_bytes - live_bytes at the previous tick|, bytes of free slots
 * the shim handed to threads since then (its refill_bytes counter)) / max(previous live, 1):
 * a heap still churning would undo the work and hit more barriers.  The second term catches
 * churn that frees as fast as it allocates (an LRU cache at its memory limit), which leaves
 * live bytes flat.  A process is scanned on every tick from the one before it is due (min
 * interval) on, to keep the previous values; a first scan only records them (activity
 * unknown: no automatic round unless under pressure).
 *
 * where the min interval is `min_interval`, doubled after every round that meshed nothing
 * or had most pairs refused for the shim's mapping budget (capped at 10 minutes, reset by
 * a round that did mesh), and halved while pressure avg10 >= `pressure_avg10`.
 *
 * Hysteresis: a process whose fragmentation reached min_fragmentation is "compacting":
 * further rounds follow while fragmentation >= stop_fragmentation, one per tick (interval
 * instead of min_interval: the pause budget already bounds each round), each waiting for a
 * quiet heap.  It stops being compacting when fragmentation falls
 * below that, or when a round meshes nothing, times out or is mostly refused for the
 * mapping budget; then min_fragmentation must be reached again.  A stop_fragmentation
 * above min_fragmentation acts as min_fragmentation.
 *
 * Mapping budget: no automatic round while the shim's mappings (map_breaks in its table)
 * are within 2 * POLICY_MIN_PAIR_LIMIT of its limit: it would refuse the pairs.
 *
 * Pause budget: each process has a pair limit (starting at max_pairs_per_round) that every
 * round, automatic or meshctl's, is planned with.  After a round whose barrier time (the
 * reply's barrier_ns_total, clamped to the round's duration) exceeded pause_budget_ms, the
 * limit becomes meshed * budget / barrier (at least 64, never above the old limit); after
 * one whose barrier time, extrapolated to the full limit (barrier * limit / meshed), stays
 * under half the budget, it doubles (up to max_pairs_per_round).  A timed-out round halves
 * it (at least 64).
 *
 * The settings, their ranges and defaults: settings.h (one table in settings.c).
 */
#ifndef MESHD_POLICY_H
#define MESHD_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "round_outcome.h"
#include "settings.h"

struct event_base;
struct process;

#define POLICY_MAX_BACKOFF_SECONDS 600.0
#define POLICY_MIN_PAIR_LIMIT 64u

/* What the policy remembers of one process between ticks (struct process's `policy`). */
struct policy_proc {
    double last_round;    /* monotonic seconds when the last round started (or registration) */
    double backoff;       /* seconds: min interval raised after fruitless rounds; 0: none */
    uint64_t rounds;      /* rounds finished, automatic or not */
    uint64_t live_prev;   /* live bytes at the previous tick's scan (valid if have_live_prev) */
    uint64_t refill_prev; /* the table's refill_bytes at that scan */
    int have_live_prev;
    double summary_used;  /* started time of the table summary the last tick looked at */
    double activity;      /* see above; < 0: unknown */
    int busy_logged;      /* "busy" logged since the last round (logged once per busy spell) */
    int compacting;       /* between min_fragmentation and stop_fragmentation, see above */
    int map_full_logged;  /* "mapping budget used up" logged since it last had room */
    unsigned pair_limit;  /* pairs per round learned from pause_budget_ms; 0: max_pairs_per_round */
};

/* ---- the decision: pure functions (policy_decide.c) -------------------------------------- */

/* One tick's measurement of a process: when, the system's memory pressure, the process's
 * state outside the policy and, for policy_decide, its span table's numbers. */
struct policy_measure {
    double now;        /* monotonic seconds */
    double pressure;   /* memory pressure "some avg10" */
    int round_running; /* a round of it is in flight */
    int refused;       /* it refuses to be meshed (rounds.c keeps its reason) */
    uint64_t heap_bytes;
    uint64_t live_bytes;
    uint64_t refill_bytes; /* the table's refill_bytes counter */
    size_t candidates;     /* mesh candidates at occupancy_cutoff */
    uint64_t map_breaks;   /* the shim's mappings, and their limit (0: none) */
    uint64_t map_limit;
};

enum policy_verdict_kind {
    POLICY_NOT_DUE,  /* a round is running, or the min interval has not passed */
    POLICY_REFUSED,  /* it refuses every pair: an automatic round would only cost it */
    POLICY_SETTLED,  /* below the fragmentation threshold, heap too small or < 2 candidates */
    POLICY_MAP_FULL, /* its mappings are within 2 * POLICY_MIN_PAIR_LIMIT of their limit */
    POLICY_BUSY,     /* activity above max_activity, or not known yet, and no pressure */
    POLICY_START,    /* start a round of at most `limit` pairs */
};

struct policy_verdict {
    enum policy_verdict_kind kind;
    unsigned limit;       /* POLICY_START: the pair limit */
    double min_interval;  /* the process's min interval at this tick */
    double activity;      /* < 0: unknown (no previous measurement) */
    double fragmentation; /* 1 - live / heap, at least 0 */
    int pressed;          /* pressure >= pressure_avg10 */
};

/* Whether the process is to be measured (its table scanned) at this tick: no round in
 * flight and due within 1.5 ticks.  Reads only now, pressure and round_running of m. */
int policy_measure_due(const struct policy_settings *s, const struct policy_proc *st,
                       const struct policy_measure *m);
/* The verdict on one measurement; checked in the order of the kinds above. */
struct policy_verdict policy_decide(const struct policy_settings *s, const struct policy_proc *st,
                                    const struct policy_measure *m);
/* What the policy keeps of a measurement and its verdict: live and refill bytes for the next
 * activity, the activity; SETTLED and MAP_FULL end a compaction. */
void policy_note(struct policy_proc *st, const struct policy_measure *m, const struct policy_verdict *v);
/* A tick that did not measure the process: the next activity has nothing to compare with. */
void policy_skip(struct policy_proc *st);
/* What a round's outcome changed (policy_after_round), for the log. */
struct policy_after {
    unsigned limit_before; /* the pair limit before and after the round */
    unsigned limit_after;
    int fruitless;         /* timed out, meshed nothing, or mostly refused for the mapping
                            * budget: backoff raised, compaction ended */
};
/* A round of the process ended: its start becomes the last round; the pair limit follows
 * the pause budget; backoff and hysteresis follow the outcome (rules: above). */
struct policy_after policy_after_round(const struct policy_settings *s, struct policy_proc *st,
                                       const struct round_outcome *o);
/* The pair limit a round of the process is planned with: its pause-budget limit, within
 * max_pairs_per_round. */
unsigned policy_limit(const struct policy_settings *s, const struct policy_proc *st);

/* ---- settings and the timer (policy.c) ----------------------------------------------------- */

/* Starts the timer with the settings given (already loaded by main). */
int policy_start(struct event_base *base, const struct policy_settings *s, const char *config_path);
void policy_stop(void);
const struct policy_settings *policy_current(void);
/* Replaces the settings (reschedules the timer if the interval changed). */
void policy_apply(const struct policy_settings *s);
/* SIGHUP: re-reads the config file; 0, or -1 (logged) with the old settings kept. */
int policy_reload(void);

/* A round of p ended (rounds.h's round_done_fn, automatic or meshctl's): its start is the
 * process's last round; backoff, hysteresis and pair limit follow from the outcome. */
void policy_round_done(struct process *p, const struct round_outcome *o);
/* The most pairs p's next round may send: its pause-budget limit, within max_pairs_per_round. */
unsigned policy_pair_limit(const struct process *p);
/* A newly registered process: its first automatic round waits one min_interval. */
void policy_process_added(struct process *p);

#endif
