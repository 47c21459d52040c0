/*
 * policy.h: when meshd meshes a process on its own, how fast, and the settings that decide it.
 *
 * A timer fires every `interval` seconds and looks at each registered process's span
 * table: fragmentation = 1 - live_bytes / heap_bytes, the mesh candidates (detached spans
 * with live/capacity at or below `occupancy_cutoff`), the time since its last round, and
 * the system's memory pressure (/proc/pressure/memory, "some avg10"; no file = 0).  A round
 * starts (rounds.h; one in flight per process) when
 *
 *   fragmentation >= min_fragmentation (stop_fragmentation while compacting, see below),
 *   heap_bytes >= min_heap_bytes, candidates >= 2,
 *   the process is due (below), and the heap is quiet:
 *   activity <= max_activity (ignored while pressure avg10 >= pressure_avg10),
 *
 * where activity = max(|live_bytes - live_bytes at the previous measurement|, bytes of free
 * slots the shim handed to threads since then (its refill_bytes counter)) / max(previous
 * live, 1), per `interval`: measured over less time than that (a compaction re-measures
 * sooner, below) it is scaled up to a whole interval, never down.  A heap still churning
 * would undo the work and hit more barriers.  The second term catches churn that frees as
 * fast as it allocates (an LRU cache at its memory limit), which leaves live bytes flat.  A
 * process is scanned on every tick from the one before it is due on, to keep the previous
 * values; a tick that skips it forgets them, except while a round of it is in flight (the
 * window then spans the round); a first scan only records them (activity unknown: no
 * automatic round unless under pressure); a newly registered process is first measured
 * POLICY_BUSY_RECHECK_SECONDS after it registered (if `interval` is longer), not at the
 * next tick.  A process found busy when every other rule
 * would start a round is measured again POLICY_BUSY_RECHECK_SECONDS later (if `interval` is
 * longer), not at the next tick: a heap that goes quiet is compacted about a second later,
 * for the price of scanning a busy fragmented table once a second instead of once a tick.
 *
 * Due: a process that had no round yet at once (registration is not a round: a program
 * that fragments its heap and goes idle right away is compacted as soon as it is quiet);
 * after that not before `min_interval` after its last round started, raised to the backoff after
 * fruitless rounds (each one that meshed nothing, timed out or had most pairs refused for
 * the shim's mapping budget doubles it, from min_interval up to 10 minutes; a round that
 * meshed resets it), halved while pressure avg10 >= `pressure_avg10`; never before the duty
 * budget allows (below).  A process that a tick finds due before the next tick is looked
 * at again when it is due, not at the tick after.
 *
 * Hysteresis: a process whose fragmentation reached min_fragmentation is "compacting":
 * rounds follow one another while fragmentation >= stop_fragmentation, with
 * POLICY_REARM_SECONDS (or `interval`, if shorter) as the min interval instead of
 * min_interval, so that the activity is measured over at least that: at the end of each
 * round the policy re-evaluates the process (measure and every rule above) as soon as it
 * is due, not at the next tick.  A re-evaluation that finds the heap busy looks again as
 * any busy heap (above); the compaction goes on once it is quiet.  It stops being
 * compacting when fragmentation falls below stop_fragmentation, its mapping budget is full,
 * or a round is fruitless; then min_fragmentation must be reached again.  A
 * stop_fragmentation above min_fragmentation acts as min_fragmentation.
 *
 * Mapping budget: no automatic round while the shim's mappings (map_breaks in its table)
 * are within 2 * POLICY_MIN_PAIR_LIMIT of its limit: it would refuse the pairs.
 *
 * Pauses: a round is planned with max_pairs_per_round pairs (one table scan) and sent in
 * requests, one at a time, the next when the previous is answered:
 *  - hold budget: it bounds each hold, the time a writer of the program may wait on the
 *    shim's write barrier (one hold per run of neighbouring pairs, one per lone pair).  The
 *    replies report their holds as a histogram (hold_stats.h); the longest (its bucket's
 *    upper bound) updates the process's hold estimate as the cost per pair does below.
 *    While that estimate is within hold_budget_ms, a request carries at most
 *    POLICY_REQUEST_DUTY_SHARE * duty_ms_per_s / cost pairs (at least hold_budget_ms' worth):
 *    many runs, each under one short hold, and the duty budget's "plus one request's"
 *    stays a small share of it.  Holds not reported yet (an older shim, or none meshed) or
 *    longer than the budget: the request's whole barrier is held to the budget, i.e. at
 *    most hold_budget_ms / cost pairs, so that no writer waits longer than about that.
 *    Either way at least 1 and at most max_pairs_per_round; cost is the process's barrier
 *    time per pair as its replies measure it (barrier_ns_total / meshed), until one did
 *    POLICY_PROBE_PAIRS.  A reply slower per pair than the estimate replaces it; a faster
 *    one moves it half way; a timed-out request doubles it (a request whose pairs cost
 *    more than the last ones, or whose thread was preempted, overruns its share, and the
 *    next requests are smaller).
 *  - duty budget: after a request whose barrier took b, the process's next request of an
 *    automatic round that nobody waits for is sent no earlier than b * (1000 /
 *    duty_ms_per_s - 1) after the reply: every request plus its gap lasts at least
 *    b * 1000 / duty_ms_per_s, so in any window of T seconds automatic rounds hold the
 *    process's barrier for at most duty_ms_per_s * T ms plus one request's.  Every request
 *    counts, meshctl's too; a round someone waits for (meshctl mesh, or an automatic round
 *    it adopted) is sent back to back.
 *  - idle program: the duty budget is a latency budget of a program that is doing
 *    something; one whose own threads sleep notices none of it, and at duty_ms_per_s an
 *    idle 700 MiB Redis took 14 s to compact (bench-frag's redis-del).  So while a round's
 *    replies say the program used under POLICY_IDLE_CPU_SHARE of a CPU
 *    (MeshReply.program_cpu_ns, over windows of POLICY_IDLE_WINDOW_SECONDS or more) its
 *    requests are paced by idle_duty_ms_per_s instead, when that is larger.  Each request
 *    is sized as before (hold_budget_ms, duty_ms_per_s), so a program that wakes up waits
 *    at most one hold, and from the next window on the round slows to duty_ms_per_s.  A
 *    round starts at duty_ms_per_s (no window closed yet), and unknown CPU (0: an older
 *    shim, or a figure that went backwards) counts as busy.
 *  - spare CPU: that holds while the machine has a CPU to spare (spare_cpu.h: at least one
 *    CPU idle on average, read at every request and tick; the CPU the process's control
 *    thread spent meshing counts as idle: policy_spare_credit).  With less, the shim's work
 *    between holds (copying, mapping, punching) runs on CPU some program is waiting for, so
 *    b is the request's whole time in the shim (sent to answered, at least its barrier)
 *    and the budget shrinks with the spare: duty_ms_per_s * max(spare,
 *    POLICY_BUSY_DUTY_SHARE) (policy_duty_share), requests with it.  A request is charged
 *    at the spare read when it was sent, not over its own time (which counts the shim's
 *    work as the machine's: a 400 ms trim read as 0.2 idle set a 20 s wait).  Under memory
 *    pressure, or while spare is unknown, the full budget applies.
 *  - no CPU to spare: with fewer than min_spare_cpu CPUs idle (at most
 *    POLICY_MAX_SPARE_SHARE of the machine's; policy_spare_needed) and no memory pressure,
 *    no automatic round starts (verdict CPU_BUSY, looked at again
 *    POLICY_BUSY_RECHECK_SECONDS later) and a round under way sends its next paced request
 *    only once the CPU is spare again (asked every POLICY_CPU_RECHECK_SECONDS).  Each
 *    request reads the spare over the last SPARE_CPU_MIN_WINDOW or more, so a round stops
 *    within a request or two of the machine getting busy; and after a start or a wait the
 *    requests ramp up from POLICY_PROBE_PAIRS (policy_ramp_pairs), so that a round started
 *    in an idle gap just before the program got busy again costs it a few small requests.
 *    The default (1 CPU) because at 0.5, redis-benchmark -P 1 and Redis left 0.42-0.63
 *    idle: rounds went on through the benchmark, 3,000-5,000 pairs, and SET's p99.9 was
 *    1.39x (docs/BENCHMARKS-FRAG.md).  Measured on a 2-CPU machine whose
 *    CPUs Redis and redis-benchmark kept busy (0.13 CPU idle): even a tenth of the budget,
 *    in requests of 16 pairs, raised Redis's p99 latency 1.1-1.8x and p99.9 up to 2.9x
 *    (IPIs of the shim's mappings, page faults on meshed pages, CPU time taken from Redis
 *    or its client), and SCHED_IDLE for the control thread and meshd did not help
 *    (docs/BENCHMARKS-FRAG.md).  So compaction waits for the CPU: a program that keeps the
 *    machine's CPUs busy pays for it only under memory pressure, and with min_spare_cpu=0
 *    it trickles at a tenth of the budget while the program works.
 *  - a request whose pairs were mostly refused for the mapping budget, or refused because
 *    the process has no safe barrier, ends its round: the rest would be refused too.
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
/* While compacting: the min interval between the starts of two rounds (or `interval`, if
 * shorter), long enough to measure the heap's activity over. */
#define POLICY_REARM_SECONDS 0.5
/* A busy heap that would otherwise be compacted is measured again this soon (when the
 * interval is longer). */
#define POLICY_BUSY_RECHECK_SECONDS 1.0
/* A round's next request that waits for spare CPU asks again this soon: a 50 ms reading is
 * some 10 ticks of /proc/stat on 2 CPUs, so an idle machine now and then reads "busy"
 * (robson's compaction, 1.8-1.9 CPUs idle over half-seconds, read 0.77-0.95 idle once
 * or twice a run); at a second a wait, that cost a tenth of its compaction time.  The
 * reading after the wait spans the whole wait (spare_cpu.h): 25 ticks a CPU. */
#define POLICY_CPU_RECHECK_SECONDS 0.25
/* Pairs of a request while the process's barrier cost per pair is not known yet. */
#define POLICY_PROBE_PAIRS 16u
/* While its holds fit the hold budget: a request's barrier is at most this share of
 * duty_ms_per_s (ms): 3 ms at the defaults, some 200-400 pairs, several runs.  The duty
 * budget sets the pace either way (bench-frag: the same RSS at 0.01, 0.03 and 0.1); a
 * smaller share keeps the duty budget's "plus one request's" small.  Single holds of
 * 3-11 ms showed up now and then on a loaded 2-CPU machine at every share tried
 * (docs/BENCHMARKS-FRAG.md), so the share does not bound them. */
#define POLICY_REQUEST_DUTY_SHARE 0.03
/* The least share of the duty budget left to automatic rounds when less than a CPU but at
 * least min_spare_cpu is spare. */
#define POLICY_BUSY_DUTY_SHARE 0.1
/* min_spare_cpu asks at most this share of the machine's CPUs to be idle: with the default
 * (1), a 1-CPU machine compacts while 75% idle rather than never. */
#define POLICY_MAX_SPARE_SHARE 0.75
/* A paced request after a round's start or a wait for CPU carries at most
 * POLICY_PROBE_PAIRS pairs, twice as many each request after, up to << this. */
#define POLICY_RAMP_STEPS 8u
/* The program is idle when its own threads (not the shim's control thread, which does the
 * meshing) used less than this share of one CPU over a window of at least
 * POLICY_IDLE_WINDOW_SECONDS of a round's replies: then idle_duty_ms_per_s paces the round
 * instead of duty_ms_per_s (policy_after_request).  An idle Redis (serverCron at 10 Hz)
 * uses ~0.1%; one answering 2,000 requests a second, 3-5%. */
#define POLICY_IDLE_CPU_SHARE 0.01
#define POLICY_IDLE_WINDOW_SECONDS 0.1
#define POLICY_CPU_JITTER_NS 1000000u
/* The CPU the process's control thread spent meshing between its two last replies counts as
 * spare for this long after the last one (policy_spare_credit). */
#define POLICY_MESHER_CREDIT_SECONDS 1.0
/* Automatic requests go out as background (policy_request_background) while at least this
 * many CPUs are idle. */
#define POLICY_BACKGROUND_SPARE_CPUS 1.0

/* What the policy remembers of one process between ticks (struct process's `policy`). */
struct policy_proc {
    double last_round;    /* monotonic seconds when the last round started (or registration) */
    double backoff;       /* seconds: min interval raised after fruitless rounds; 0: none */
    uint64_t rounds;      /* rounds finished, automatic or not */
    uint64_t live_prev;   /* live bytes at the previous measurement (valid if have_live_prev) */
    uint64_t refill_prev; /* the table's refill_bytes then */
    double measured_at;   /* and when it was made */
    int have_live_prev;
    double summary_used;  /* started time of the table summary the last tick looked at */
    double activity;      /* see above; < 0: unknown */
    int busy_logged;      /* "busy" logged since the last round (logged once per busy spell) */
    int compacting;       /* between min_fragmentation and stop_fragmentation, see above */
    int map_full_logged;  /* "mapping budget used up" logged since it last had room */
    double pair_ns;       /* barrier ns per meshed pair, as estimated; 0: not measured yet */
    double next_request_at; /* the duty budget: no paced request before this */
    double rearm_at;      /* compacting: evaluate again at this time; 0: at the ticks */
    double hold_ns;       /* the longest barrier hold of its replies, as estimated; 0: none */
    double duty_share;    /* share of the duty budget in force (policy_duty_share); 0: all */
    int cpu_wait;         /* paced requests wait for spare CPU (policy_cpu_waits) */
    int cpu_wait_logged;  /* "no CPU to spare" logged in this spell of waiting */
    unsigned ramp;        /* requests answered since the round started or last waited for
                           * spare CPU, up to POLICY_RAMP_STEPS (policy_ramp_pairs) */
    /* The program's own CPU (MeshReply.program_cpu_ns) at the start of the window being
     * measured, and when (0: no window open: none yet in this round, or unknown). */
    uint64_t program_cpu_ns;
    double program_cpu_at;
    double program_cpu_share; /* over the last window closed: CPUs; < 0: none closed */
    int program_idle;         /* that share was under POLICY_IDLE_CPU_SHARE */
    uint32_t program_verdicts; /* windows closed or CPU found unknown: verdicts made */
    int program_idle_logged;  /* the verdict meshd's log last gave (policy.c); -1: none */
    /* The control thread's CPU (MeshReply.mesher_cpu_ns) at the last reply, when, and the
     * share of a CPU it used between the two last replies (policy_spare_credit). */
    uint64_t mesher_cpu_ns;
    double mesher_cpu_at;
    double mesher_cpu_share;
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
    double spare_cpus;     /* CPUs idle on average lately (spare_cpu.h); < 0: unknown */
    unsigned online_cpus;  /* the machine's CPUs; 0: unknown */
};

enum policy_verdict_kind {
    POLICY_NOT_DUE,  /* a round is running, or it is not due yet (interval, duty budget) */
    POLICY_REFUSED,  /* it refuses every pair: an automatic round would only cost it */
    POLICY_SETTLED,  /* below the fragmentation threshold, heap too small or < 2 candidates */
    POLICY_MAP_FULL, /* its mappings are within 2 * POLICY_MIN_PAIR_LIMIT of their limit */
    POLICY_BUSY,     /* activity above max_activity, or not known yet, and no pressure */
    POLICY_CPU_BUSY, /* fewer than min_spare_cpu CPUs idle, and no pressure */
    POLICY_START,    /* start a round of at most `limit` pairs */
};

struct policy_verdict {
    enum policy_verdict_kind kind;
    unsigned limit;       /* POLICY_START: the pairs the round is planned with */
    double min_interval;  /* seconds from the last round's start to the next's, at this tick */
    double due;           /* monotonic seconds when the next round is due */
    double activity;      /* per interval; < 0: unknown (no previous measurement) */
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
/* What the policy keeps of a measurement and its verdict: live and refill bytes and the
 * time for the next activity, the activity; SETTLED and MAP_FULL end a compaction; the
 * next look (rearm_at): BUSY POLICY_BUSY_RECHECK_SECONDS later (when the interval is
 * longer), NOT_DUE when it is due if that is before the next tick (and no round runs);
 * any other verdict uses up a re-arm (the end of the round it may start sets the next). */
void policy_note(const struct policy_settings *s, struct policy_proc *st, const struct policy_measure *m,
                 const struct policy_verdict *v);
/* A tick that did not measure the process: the next activity has nothing to compare with. */
void policy_skip(struct policy_proc *st);
/* A process registered at `now`: nothing known of it; first looked at
 * POLICY_BUSY_RECHECK_SECONDS later (when the interval is longer), then as any process. */
void policy_registered(const struct policy_settings *s, struct policy_proc *st, double now);
/* What a round's outcome changed (policy_after_round), for the log. */
struct policy_after {
    int fruitless; /* timed out, meshed nothing, or mostly refused for the mapping budget:
                    * backoff raised, compaction ended */
    int rearmed;   /* still compacting: st->rearm_at is when to look again */
};
/* A round of the process ended: its start becomes the last round; backoff, hysteresis and
 * the re-arm follow the outcome (rules: above). */
struct policy_after policy_after_round(const struct policy_settings *s, struct policy_proc *st,
                                       const struct round_outcome *o);
/* The share of the duty budget automatic rounds may use with spare_cpus idle CPUs (< 0:
 * unknown) and pressed set under memory pressure: 1 with a CPU to spare, else the spare,
 * at least POLICY_BUSY_DUTY_SHARE.  The caller stores it in st->duty_share. */
double policy_duty_share(double spare_cpus, int pressed);
/* The CPUs that must be idle for automatic work on a machine of `cpus` CPUs (0: unknown):
 * min_spare_cpu, at most POLICY_MAX_SPARE_SHARE of them, unless min_spare_cpu is more
 * than the machine has (then it never is: compaction only under memory pressure). */
double policy_spare_needed(const struct policy_settings *s, unsigned cpus);
/* Whether automatic work waits for spare CPU: fewer than policy_spare_needed CPUs idle
 * (known), and no memory pressure. */
int policy_cpu_waits(const struct policy_settings *s, double spare_cpus, unsigned cpus, int pressed);
/* Whether a request goes out as background (MeshRequest.background: the shim trims only an
 * idle program's freed pages after it, for at most 1 ms; shims before 2026-12-02 also waited
 * behind the program's threads between pairs, as SCHED_IDLE, only then): a request of
 * a round nobody waits for (waited_for 0: automatic and not adopted by meshctl mesh, or
 * meshctl's whose client went away: rounds.c asks before each request), while
 * at least POLICY_BACKGROUND_SPARE_CPUS CPUs were measured idle (not unknown) and there is
 * no memory pressure (pressed 0): the program may be serving, and under memory pressure
 * the memory comes first.  A round someone waits for (waited_for) never is: its caller
 * asked for the memory back. */
int policy_request_background(double spare_cpus, int pressed, int waited_for);
/* A reading of the spare CPU, for the process's automatic work: st->duty_share,
 * st->cpu_wait, and a wait starts the ramp again. */
void policy_note_spare(const struct policy_settings *s, struct policy_proc *st, double spare_cpus,
                       unsigned cpus, int pressed);
/* The pairs of a paced request: at most POLICY_PROBE_PAIRS << st->ramp, so that a round
 * started (or resumed) just before the machine got busy takes little of it. */
unsigned policy_ramp_pairs(const struct policy_proc *st, unsigned pairs);
/* One request of a round was answered (or timed out): its barrier per pair updates the
 * estimate, its program_cpu_ns whether the program is idle, its barrier time (its whole
 * time when st->duty_share < 1) the duty budget (policy_duty_ms's). */
void policy_after_request(const struct policy_settings *s, struct policy_proc *st,
                          const struct round_outcome *o);
/* spare_cpus (< 0: unknown) plus the share of a CPU the process's own meshing used
 * between its two last replies, if the last came within POLICY_MESHER_CREDIT_SECONDS of
 * now: CPU the machine spends on compacting this process is not taken from anyone, and
 * without the credit a faster compaction reads as a busy machine and stops itself
 * (policy.h, "spare CPU"). */
double policy_spare_credit(const struct policy_proc *st, double spare_cpus, double now);
/* The duty budget pacing the process's requests now, ms per s, before the spare-CPU share:
 * idle_duty_ms_per_s while its program is idle (and that is larger), else duty_ms_per_s. */
double policy_duty_ms(const struct policy_settings *s, const struct policy_proc *st);
/* The most pairs the process's next request may carry: the hold budget's share. */
unsigned policy_request_pairs(const struct policy_settings *s, const struct policy_proc *st);
/* Seconds from now until the duty budget lets the process's next paced request go (at
 * least POLICY_CPU_RECHECK_SECONDS while st->cpu_wait: then it is asked again); 0: now. */
double policy_request_wait(const struct policy_proc *st, double now);
/* The pairs a round of the process is planned with: max_pairs_per_round. */
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

/* rounds.h's hooks (round_outcome.h), for every round, automatic or meshctl's: the pace of
 * its requests, each request's outcome, and the round's, after which backoff, hysteresis
 * and the re-arm follow. */
extern const struct round_hooks policy_round_hooks;
/* The most pairs p's next round may be planned with: max_pairs_per_round. */
unsigned policy_pair_limit(const struct process *p);
/* A newly registered process (policy_registered): its first automatic round waits only for
 * a quiet heap. */
void policy_process_added(struct process *p);

#endif
