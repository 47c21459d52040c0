/*
 * test_policy.c: meshd's policy decision (meshd/policy_decide.c) on made-up measurements:
 * every verdict, the gates in front of it, hysteresis and the re-arm of a compaction, the
 * size of requests (hold budget) and the gaps between them (duty budget), and what the
 * policy keeps between ticks and learns from a round's and a request's outcome.  Pure
 * functions: no daemon, no libevent, no clock.
 */
#include "testutil.h"

#include "policy.h"
#include "spare_cpu.h"

#define MiB (UINT64_C(1) << 20)

static struct policy_settings s;
static struct policy_proc st;
static struct policy_measure m;

/* meshd's defaults, written out: the test says which numbers it decides from.  The process
 * last had a round 100 s ago and was measured at the previous tick (live 100 MiB, quiet);
 * now its heap is 200 MiB with 100 MiB live (fragmentation 0.5) and many candidates. */
static void setup(void)
{
    s = (struct policy_settings){
        .enabled = 1, .interval = 5, .min_fragmentation = 0.25, .stop_fragmentation = 0.10,
        .min_heap_bytes = 8 * MiB, .min_interval = 10, .max_pairs_per_round = 4096,
        .occupancy_cutoff = 0.5, .pressure_avg10 = 10, .max_activity = 0.05,
        .hold_budget_ms = 1, .duty_ms_per_s = 100, .min_spare_cpu = 1,
    };
    st = (struct policy_proc){.last_round = 1000, .rounds = 1, .live_prev = 100 * MiB, .refill_prev = 5000,
                              .have_live_prev = 1, .activity = 0};
    m = (struct policy_measure){.now = 1100, .heap_bytes = 200 * MiB, .live_bytes = 100 * MiB,
                                .refill_bytes = 5000, .candidates = 1000, .spare_cpus = 2,
                                .online_cpus = 2};
}

static enum policy_verdict_kind decide(void) { return policy_decide(&s, &st, &m).kind; }

START_TEST(quiet_fragmented_heap_starts_a_round_at_the_full_limit)
{
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_START);
    ck_assert_uint_eq(v.limit, 4096);
    ck_assert_double_eq_tol(v.fragmentation, 0.5, 1e-9);
    ck_assert_double_eq_tol(v.activity, 0, 1e-9);
    ck_assert_double_eq_tol(v.min_interval, 10, 1e-9);
    ck_assert_int_eq(v.pressed, 0);
}
END_TEST

START_TEST(round_is_planned_with_max_pairs_per_round)
{
    s.max_pairs_per_round = 100; /* lowered at run time: the next round has it */
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_START);
    ck_assert_uint_eq(v.limit, 100);
    ck_assert_uint_eq(policy_limit(&s, &st), 100);
}
END_TEST

START_TEST(not_due_before_min_interval_or_while_a_round_runs)
{
    m.now = st.last_round + 9.9;
    ck_assert_int_eq(decide(), POLICY_NOT_DUE);
    m.now = st.last_round + 10;
    ck_assert_int_eq(decide(), POLICY_START);
    m.round_running = 1;
    ck_assert_int_eq(decide(), POLICY_NOT_DUE);
}
END_TEST

START_TEST(measured_only_from_the_tick_before_it_is_due)
{
    /* due at last_round + 10; ticks every 5 s: measured from 1.5 ticks before on */
    m.now = st.last_round + 2.4;
    ck_assert_int_eq(policy_measure_due(&s, &st, &m), 0);
    m.now = st.last_round + 2.5;
    ck_assert_int_eq(policy_measure_due(&s, &st, &m), 1);
    m.now = st.last_round + 500;
    ck_assert_int_eq(policy_measure_due(&s, &st, &m), 1);
    m.round_running = 1;
    ck_assert_int_eq(policy_measure_due(&s, &st, &m), 0);
}
END_TEST

START_TEST(backoff_and_pressure_set_the_min_interval)
{
    st.backoff = 80;
    m.now = st.last_round + 79;
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_NOT_DUE);
    ck_assert_double_eq_tol(v.min_interval, 80, 1e-9);
    m.pressure = 10; /* at pressure_avg10: halved */
    v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_START);
    ck_assert_double_eq_tol(v.min_interval, 40, 1e-9);
    ck_assert_int_eq(v.pressed, 1);
}
END_TEST

START_TEST(compacting_rounds_follow_at_the_rearm_not_the_tick)
{
    st.compacting = 1;
    st.last_round = 1099.6;
    m.now = 1100.09; /* 0.49 s after the last round started */
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_NOT_DUE);
    ck_assert_double_eq_tol(v.min_interval, POLICY_REARM_SECONDS, 1e-9);
    ck_assert_double_eq_tol(v.due, 1100.1, 1e-9);
    m.now = 1100.1;
    ck_assert_int_eq(decide(), POLICY_START); /* neither min_interval (10 s) nor a tick (5 s) */
    s.interval = 0.2; /* an interval shorter than the re-arm is the re-arm */
    m.now = 1099.8;
    ck_assert_int_eq(decide(), POLICY_START);
    s.interval = 5;
    m.now = 1100.1;
    st.next_request_at = 1100.3; /* the duty budget is later: it wins */
    v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_NOT_DUE);
    ck_assert_double_eq_tol(v.due, 1100.3, 1e-9);
    st.next_request_at = 0;
    st.backoff = 20; /* a fruitless round: back to min_interval and the backoff */
    ck_assert_int_eq(decide(), POLICY_NOT_DUE);
    st.backoff = 0;
    st.last_round = 1090;
    m.now = 1099.9;
    ck_assert_int_eq(decide(), POLICY_START);
    st.compacting = 0; /* not compacting: min_interval after the last round's start */
    ck_assert_int_eq(decide(), POLICY_NOT_DUE);
    m.now = 1100;
    ck_assert_int_eq(decide(), POLICY_START);
}
END_TEST

START_TEST(duty_budget_also_holds_back_a_first_round)
{
    st.next_request_at = m.now + 0.01;
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_NOT_DUE);
    ck_assert_double_eq_tol(v.due, m.now + 0.01, 1e-9);
    m.now += 0.01;
    ck_assert_int_eq(decide(), POLICY_START);
}
END_TEST

START_TEST(refusing_process_gets_no_automatic_round)
{
    m.refused = 1;
    ck_assert_int_eq(decide(), POLICY_REFUSED);
}
END_TEST

START_TEST(settled_below_threshold_small_heap_or_few_candidates)
{
    m.live_bytes = 151 * MiB; /* fragmentation 0.245 < 0.25 */
    st.live_prev = m.live_bytes;
    ck_assert_int_eq(decide(), POLICY_SETTLED);
    setup();
    m.heap_bytes = 8 * MiB - 1;
    m.live_bytes = st.live_prev = 1 * MiB;
    ck_assert_int_eq(decide(), POLICY_SETTLED);
    setup();
    m.candidates = 1;
    ck_assert_int_eq(decide(), POLICY_SETTLED);
    setup();
    m.heap_bytes = 0; /* an empty table: fragmentation 0, not a division by 0 */
    ck_assert_int_eq(decide(), POLICY_SETTLED);
    ck_assert_double_eq_tol(policy_decide(&s, &st, &m).fragmentation, 0, 1e-9);
}
END_TEST

START_TEST(hysteresis_compacts_down_to_stop_fragmentation)
{
    m.live_bytes = st.live_prev = 160 * MiB; /* fragmentation 0.2 */
    ck_assert_int_eq(decide(), POLICY_SETTLED);
    st.compacting = 1;
    ck_assert_int_eq(decide(), POLICY_START);
    m.live_bytes = st.live_prev = 182 * MiB; /* 0.09 < stop_fragmentation */
    ck_assert_int_eq(decide(), POLICY_SETTLED);
    /* a stop_fragmentation above min_fragmentation acts as min_fragmentation */
    s.stop_fragmentation = 0.4;
    m.live_bytes = st.live_prev = 140 * MiB; /* 0.3 */
    ck_assert_int_eq(decide(), POLICY_START);
}
END_TEST

START_TEST(mapping_budget_within_two_min_limits_holds_rounds)
{
    m.map_limit = 10000;
    m.map_breaks = 10000 - 2 * POLICY_MIN_PAIR_LIMIT;
    ck_assert_int_eq(decide(), POLICY_START);
    m.map_breaks++;
    ck_assert_int_eq(decide(), POLICY_MAP_FULL);
    m.map_limit = 0; /* no limit */
    ck_assert_int_eq(decide(), POLICY_START);
}
END_TEST

START_TEST(busy_heap_waits_unless_under_pressure)
{
    m.live_bytes = 106 * MiB; /* 6% more than the previous tick */
    m.heap_bytes = 400 * MiB;
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_BUSY);
    ck_assert_double_eq_tol(v.activity, 0.06, 1e-9);
    m.live_bytes = 105 * MiB; /* 5%: at max_activity, quiet enough */
    ck_assert_int_eq(decide(), POLICY_START);
    m.live_bytes = 106 * MiB;
    m.pressure = 50;
    ck_assert_int_eq(decide(), POLICY_START);
}
END_TEST

START_TEST(churn_with_flat_live_bytes_is_busy)
{
    m.refill_bytes = st.refill_prev + 10 * MiB; /* 10% of live handed out again */
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_BUSY);
    ck_assert_double_eq_tol(v.activity, 0.1, 1e-9);
    /* a counter that went backwards (a lie, or a restart) is not taken as churn */
    m.refill_bytes = st.refill_prev - 1;
    ck_assert_int_eq(decide(), POLICY_START);
}
END_TEST

START_TEST(first_measurement_waits_for_a_second)
{
    st.have_live_prev = 0;
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_BUSY);
    ck_assert(v.activity < 0);
    m.pressure = 10;
    ck_assert_int_eq(decide(), POLICY_START);
}
END_TEST

START_TEST(first_round_waits_for_a_quiet_heap_not_min_interval)
{
    /* Registered 0.2 s ago, no round yet, measured quiet: due at once. */
    st.rounds = 0;
    st.last_round = m.now - 0.2;
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_START);
    ck_assert_double_eq(v.min_interval, 0);
    ck_assert_int_eq(policy_measure_due(&s, &st, &m), 1);
    st.activity = -1; /* still only the quiet heap: a busy one waits */
    m.live_bytes = 120 * MiB;
    ck_assert_int_eq(decide(), POLICY_BUSY);
    m.live_bytes = 100 * MiB;
    st.next_request_at = m.now + 1; /* and the duty budget */
    ck_assert_int_eq(decide(), POLICY_NOT_DUE);
    st.next_request_at = 0;
    /* After its first round, min_interval spaces them again. */
    st.rounds = 1;
    ck_assert_int_eq(decide(), POLICY_NOT_DUE);
    m.now = st.last_round + 10;
    ck_assert_int_eq(decide(), POLICY_START);
}
END_TEST

START_TEST(registered_process_is_first_looked_at_a_second_later)
{
    st.compacting = 1;
    st.pair_ns = 5000;
    policy_registered(&s, &st, 500);
    ck_assert_double_eq(st.last_round, 500);
    ck_assert_uint_eq(st.rounds, 0);
    ck_assert_int_eq(st.have_live_prev, 0);
    ck_assert(st.activity < 0);
    ck_assert_int_eq(st.compacting, 0);
    ck_assert_double_eq(st.pair_ns, 0);
    ck_assert_double_eq(st.rearm_at, 500 + POLICY_BUSY_RECHECK_SECONDS);
    /* That look only records; a fragmented heap is looked at again a second later and,
     * quiet, compacted then: 2 s after registration, whatever the ticks. */
    m.now = st.rearm_at;
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_BUSY);
    policy_note(&s, &st, &m, &v);
    ck_assert_double_eq(st.rearm_at, 502);
    m.now = st.rearm_at;
    ck_assert_int_eq(decide(), POLICY_START);
    s.interval = 0.5; /* ticks more often than that: the ticks do it */
    policy_registered(&s, &st, 500);
    ck_assert_double_eq(st.rearm_at, 0);
}
END_TEST

START_TEST(verdicts_checked_in_order)
{
    /* refused beats not due; settled beats a full mapping budget; that beats busy */
    m.refused = 1;
    m.now = st.last_round + 1;
    ck_assert_int_eq(decide(), POLICY_REFUSED);
    setup();
    m.candidates = 0;
    m.map_limit = 1;
    m.map_breaks = 1;
    ck_assert_int_eq(decide(), POLICY_SETTLED);
    m.candidates = 2;
    m.live_bytes = 150 * MiB; /* busy too */
    ck_assert_int_eq(decide(), POLICY_MAP_FULL);
}
END_TEST

START_TEST(note_keeps_the_measurement_and_ends_compactions)
{
    st.compacting = 1;
    m.live_bytes = 120 * MiB;
    m.refill_bytes = 7777;
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_BUSY);
    policy_note(&s, &st, &m, &v);
    ck_assert_uint_eq(st.live_prev, 120 * MiB);
    ck_assert_uint_eq(st.refill_prev, 7777);
    ck_assert_int_eq(st.have_live_prev, 1);
    ck_assert_double_eq_tol(st.activity, 0.2, 1e-9);
    ck_assert_int_eq(st.compacting, 1); /* busy: the compaction waits, it does not end */
    v.kind = POLICY_SETTLED;
    policy_note(&s, &st, &m, &v);
    ck_assert_int_eq(st.compacting, 0);
    st.compacting = 1;
    v.kind = POLICY_MAP_FULL;
    policy_note(&s, &st, &m, &v);
    ck_assert_int_eq(st.compacting, 0);
    policy_skip(&st);
    ck_assert_int_eq(st.have_live_prev, 0);
}
END_TEST

/* A round's or a request's outcome, barrier in milliseconds, ended at `ended`. */
static struct round_outcome outcome_at(double ended, uint32_t pairs, uint32_t meshed, double barrier_ms)
{
    return (struct round_outcome){.started = 1234, .ended = ended, .pairs = pairs, .meshed = meshed,
                                  .barrier_ns = (uint64_t)(barrier_ms * 1e6)};
}

static struct round_outcome outcome(uint32_t pairs, uint32_t meshed, double barrier_ms)
{
    return outcome_at(1235, pairs, meshed, barrier_ms);
}

START_TEST(requests_fit_the_hold_budget)
{
    ck_assert_uint_eq(policy_request_pairs(&s, &st), POLICY_PROBE_PAIRS); /* cost unknown */
    struct round_outcome o = outcome(16, 16, 0.4); /* 25 us a pair: 40 fit in 1 ms */
    policy_after_request(&s, &st, &o);
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 40);
    o = outcome(40, 20, 0.2); /* 10 us per meshed pair: half way, 17.5 us */
    policy_after_request(&s, &st, &o);
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 57);
    o = outcome(57, 50, 2.5); /* 50 us: slower counts at once */
    policy_after_request(&s, &st, &o);
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 20);
    o = outcome(20, 0, 0); /* nothing meshed: nothing learned */
    policy_after_request(&s, &st, &o);
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 20);
    o = outcome(20, 1, 8); /* one pair over the whole budget: one pair a request */
    policy_after_request(&s, &st, &o);
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 1);
    st.pair_ns = 100; /* very cheap pairs: max_pairs_per_round, whatever it is */
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 4096);
    s.max_pairs_per_round = 8;
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 8);
    st.pair_ns = 0;
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 8);
    s.max_pairs_per_round = 4096;
    s.hold_budget_ms = 5; /* the budget scales the requests */
    st.pair_ns = 25000;
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 200);
}
END_TEST

START_TEST(round_is_split_into_requests_within_the_hold_budget)
{
    /* A 4096-pair round, the shim's cost per pair drifting between 8 and 40 us: every
     * request's barrier stays within the budget once the first reply measured it. */
    uint32_t left = 4096, requests = 0;
    double worst = 0;
    for (unsigned i = 0; left; i++) {
        uint32_t n = policy_request_pairs(&s, &st);
        if (n > left)
            n = left;
        double cost_us = 8 + (i * 7 % 33); /* 8..40 us */
        if (i > 0 && cost_us <= st.pair_ns / 1000) {
            double ms = n * cost_us / 1000;
            worst = ms > worst ? ms : worst;
        }
        struct round_outcome o = outcome(n, n, n * cost_us / 1000);
        policy_after_request(&s, &st, &o);
        left -= n;
        requests++;
    }
    ck_assert_double_le(worst, s.hold_budget_ms);
    ck_assert_uint_gt(requests, 4096 / 125); /* no request of more than 1 ms at 8 us */
    ck_assert_uint_lt(requests, 4096 / 20);  /* nor a needlessly small one */
}
END_TEST

/* A request's outcome whose `holds` barrier holds all fell into hold_stats.h's bucket. */
static struct round_outcome outcome_held(uint32_t meshed, double barrier_ms, uint32_t holds, unsigned bucket)
{
    struct round_outcome o = outcome(meshed, meshed, barrier_ms);
    o.holds = holds;
    o.hold_us_log2[bucket] = holds;
    return o;
}

START_TEST(requests_carry_many_runs_while_each_hold_fits_the_budget)
{
    /* 630 pairs in 10 holds of [128, 256) us: 6.3 ms, 10 us a pair.  Each hold is within
     * 1 ms: a request may hold POLICY_REQUEST_DUTY_SHARE of duty_ms_per_s (100 ms) of
     * barrier, more than the 1 ms, 100 pairs, the hold budget alone would allow. */
    _Static_assert(POLICY_REQUEST_DUTY_SHARE * 100 > 1.5, "at the defaults the share is the larger");
    const unsigned share_pairs = (unsigned)(100 * POLICY_REQUEST_DUTY_SHARE * 1e6 / 10000 + 1e-6);
    struct round_outcome o = outcome_held(630, 6.3, 10, 8);
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq(st.hold_ns, 256e3);
    ck_assert_uint_eq(policy_request_pairs(&s, &st), share_pairs);
    s.duty_ms_per_s = 200; /* the share follows the duty budget */
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 2 * share_pairs);
    s.duty_ms_per_s = 5; /* never below the hold budget's request */
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 100);
    s.duty_ms_per_s = 100;
    /* A reply without holds (an older shim) teaches nothing about them. */
    o = outcome(1000, 1000, 10);
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq(st.hold_ns, 256e3);
    /* A hold of [1, 2) ms, over the budget: the request's barrier is the budget again. */
    o = outcome_held(100, 1, 1, 11);
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq(st.hold_ns, 2048e3);
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 100);
    /* Shorter holds count half way: 2048 -> 1152 us, still over; -> 704 us, within. */
    o = outcome_held(100, 1, 4, 8);
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq(st.hold_ns, 1152e3);
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 100);
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq(st.hold_ns, 704e3);
    ck_assert_uint_eq(policy_request_pairs(&s, &st), share_pairs);
    ck_assert_uint_eq(hold_longest_us(o.hold_us_log2, HOLD_BUCKETS), 256);
    o.hold_us_log2[0] = 1; /* the longest, not the first */
    ck_assert_uint_eq(hold_longest_us(o.hold_us_log2, HOLD_BUCKETS), 256);
    memset(o.hold_us_log2, 0, sizeof o.hold_us_log2);
    ck_assert_uint_eq(hold_longest_us(o.hold_us_log2, HOLD_BUCKETS), 0);
}
END_TEST

START_TEST(duty_budget_spaces_paced_requests)
{
    struct round_outcome o = outcome_at(100, 40, 40, 1); /* 1 ms of barrier, reply at 100 s */
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq_tol(st.next_request_at, 100.009, 1e-9); /* 1 ms * (1000/100 - 1) */
    ck_assert_double_eq_tol(policy_request_wait(&st, 100), 0.009, 1e-9);
    ck_assert_double_eq(policy_request_wait(&st, 100.009), 0);
    ck_assert_double_eq(policy_request_wait(&st, 200), 0);
    s.duty_ms_per_s = 1000; /* all of every second: no gap */
    o = outcome_at(200, 40, 40, 1);
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq(policy_request_wait(&st, 200), 0);
    st.next_request_at = 150.5; /* never earlier than already promised */
    s.duty_ms_per_s = 100;
    o = outcome_at(150, 40, 40, 1);
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq(st.next_request_at, 150.5);
    o = outcome_at(150.5, 40, 40, 2);
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq_tol(st.next_request_at, 150.518, 1e-9);
    o.timed_out = 1; /* no barrier measured: the backoff after the round does the waiting */
    o.ended = 180.5;
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq_tol(st.next_request_at, 150.518, 1e-9);
}
END_TEST

/* A reply carrying the program's and the control thread's CPU time so far (ns). */
static struct round_outcome reply_at(double ended, uint64_t program_ns, uint64_t mesher_ns)
{
    struct round_outcome o = outcome_at(ended, 40, 40, 1); /* 1 ms of barrier */
    o.program_cpu_ns = program_ns;
    o.mesher_cpu_ns = mesher_ns;
    return o;
}

/* Idle program (policy.h): windows of at least POLICY_IDLE_WINDOW_SECONDS between replies;
 * under POLICY_IDLE_CPU_SHARE of a CPU paces by idle_duty_ms_per_s, more by duty_ms_per_s. */
START_TEST(idle_program_is_paced_by_the_idle_duty)
{
    s.idle_duty_ms_per_s = 500;
    struct round_outcome o = reply_at(100, 1000000000, 1);
    policy_after_request(&s, &st, &o); /* opens the first window: busy until one closes */
    ck_assert_int_eq(st.program_idle, 0);
    ck_assert_double_eq_tol(st.next_request_at, 100.009, 1e-9); /* 1 ms * (1000/100 - 1) */
    o = reply_at(100.05, 1000000000, 1); /* 50 ms: too short a window to judge */
    policy_after_request(&s, &st, &o);
    ck_assert_int_eq(st.program_idle, 0);
    o = reply_at(100.2, 1001000000, 1); /* 1 ms of CPU in 0.2 s: 0.5% */
    policy_after_request(&s, &st, &o);
    ck_assert_int_eq(st.program_idle, 1);
    ck_assert_double_eq_tol(st.program_cpu_share, 0.005, 1e-9);
    ck_assert_double_eq(policy_duty_ms(&s, &st), 500);
    ck_assert_double_eq_tol(st.next_request_at, 100.201, 1e-9); /* 1 ms * (1000/500 - 1) */
    o = reply_at(100.4, 1011000000, 1); /* 10 ms in 0.2 s: 5%, serving */
    policy_after_request(&s, &st, &o);
    ck_assert_int_eq(st.program_idle, 0);
    ck_assert_double_eq_tol(st.next_request_at, 100.409, 1e-9);
    o = reply_at(100.6, 1011000000, 1); /* idle again */
    policy_after_request(&s, &st, &o);
    ck_assert_int_eq(st.program_idle, 1);
    s.idle_duty_ms_per_s = 50; /* never slower than duty_ms_per_s */
    ck_assert_double_eq(policy_duty_ms(&s, &st), 100);
    s.idle_duty_ms_per_s = 1000; /* back to back */
    o = reply_at(100.8, 1011000000, 1);
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq_tol(st.next_request_at, 100.8, 1e-9);
}
END_TEST

/* Unknown CPU (0), a figure that went backwards (the process's word) and a new round count
 * as busy; a timed-out request changes nothing. */
START_TEST(idle_needs_a_known_and_sane_program_cpu)
{
    s.idle_duty_ms_per_s = 500;
    struct round_outcome o = reply_at(100, 5000000, 0);
    policy_after_request(&s, &st, &o);
    o = reply_at(100.2, 5000000, 0);
    policy_after_request(&s, &st, &o);
    ck_assert_int_eq(st.program_idle, 1);
    o = reply_at(100.4, 0, 0); /* unknown */
    policy_after_request(&s, &st, &o);
    ck_assert_int_eq(st.program_idle, 0);
    o = reply_at(100.5, 5000000, 0);
    policy_after_request(&s, &st, &o);
    o = reply_at(100.7, 5000000, 0);
    policy_after_request(&s, &st, &o);
    ck_assert_int_eq(st.program_idle, 1);
    o = reply_at(100.8, 4500000, 0); /* 0.5 ms back: jitter of the shim's subtraction */
    policy_after_request(&s, &st, &o);
    ck_assert_int_eq(st.program_idle, 1);
    o = reply_at(100.9, 3000000, 0); /* backwards */
    policy_after_request(&s, &st, &o);
    ck_assert_int_eq(st.program_idle, 0);
    ck_assert_double_eq(st.program_cpu_share, -1);
    uint32_t verdicts = st.program_verdicts;
    o = reply_at(101, 3000000, 0);
    policy_after_request(&s, &st, &o);
    ck_assert_uint_eq(st.program_verdicts, verdicts); /* only opened a window */
    o = reply_at(101.2, 3000000, 0);
    policy_after_request(&s, &st, &o);
    ck_assert_int_eq(st.program_idle, 1);
    ck_assert_uint_eq(st.program_verdicts, verdicts + 1);
    o.timed_out = 1;
    o.ended = 200;
    policy_after_request(&s, &st, &o);
    ck_assert_int_eq(st.program_idle, 1);
    struct policy_verdict v = policy_decide(&s, &st, &m); /* a new round: measured afresh */
    ck_assert_int_eq(v.kind, POLICY_START);
    policy_note(&s, &st, &m, &v);
    ck_assert_int_eq(st.program_idle, 0);
    ck_assert_double_eq(policy_duty_ms(&s, &st), 100);
}
END_TEST

/* The control thread's meshing between the two last replies counts as spare CPU for
 * POLICY_MESHER_CREDIT_SECONDS after the last; unknown spare stays unknown, and a share no
 * thread can reach earns nothing. */
START_TEST(meshing_cpu_counts_as_spare)
{
    struct round_outcome o = reply_at(100, 1, 2000000000);
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq(policy_spare_credit(&st, 0.7, 100.1), 0.7); /* one reply: no window */
    o = reply_at(100.1, 1, 2050000000); /* 50 ms of meshing in 0.1 s */
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq_tol(policy_spare_credit(&st, 0.7, 100.2), 1.2, 1e-9);
    ck_assert_double_eq_tol(policy_spare_credit(&st, 0.7, 101.1), 1.2, 1e-9);
    ck_assert_double_eq(policy_spare_credit(&st, 0.7, 101.2), 0.7); /* stale */
    ck_assert_double_eq(policy_spare_credit(&st, -1, 100.2), -1);
    o = reply_at(100.2, 1, 2250000000); /* 0.2 s of CPU in 0.1 s: a lie */
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq(policy_spare_credit(&st, 0.7, 100.3), 0.7);
    o = reply_at(100.3, 1, 0); /* unknown */
    policy_after_request(&s, &st, &o);
    o = reply_at(100.4, 1, 2300000000);
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq(policy_spare_credit(&st, 0.7, 100.4), 0.7);
}
END_TEST

/* Spare CPU (policy.h): a whole CPU idle or memory pressure leaves the full budget; less
 * shrinks it to the spare, never below POLICY_BUSY_DUTY_SHARE; unknown counts as spare. */
START_TEST(duty_share_follows_the_spare_cpu)
{
    ck_assert_double_eq(policy_duty_share(1, 0), 1);
    ck_assert_double_eq(policy_duty_share(1.7, 0), 1);
    ck_assert_double_eq(policy_duty_share(-1, 0), 1);
    ck_assert_double_eq(policy_duty_share(0.4, 0), 0.4);
    ck_assert_double_eq(policy_duty_share(0.02, 0), POLICY_BUSY_DUTY_SHARE);
    ck_assert_double_eq(policy_duty_share(0, 0), POLICY_BUSY_DUTY_SHARE);
    ck_assert_double_eq(policy_duty_share(0, 1), 1);
}
END_TEST

/* MeshRequest.background (policy.h): a round nobody waits for, a whole CPU idle (known)
 * and no memory pressure; the boundary is exactly POLICY_BACKGROUND_SPARE_CPUS. */
START_TEST(background_with_a_whole_idle_cpu_and_no_pressure)
{
    ck_assert_double_eq(POLICY_BACKGROUND_SPARE_CPUS, 1.0);
    ck_assert_int_eq(policy_request_background(1.0, 0, 0), 1);
    ck_assert_int_eq(policy_request_background(1.7, 0, 0), 1);
    ck_assert_int_eq(policy_request_background(0.99, 0, 0), 0);
    ck_assert_int_eq(policy_request_background(0.999999, 0, 0), 0);
    ck_assert_int_eq(policy_request_background(0, 0, 0), 0);
    ck_assert_int_eq(policy_request_background(-1, 0, 0), 0); /* unknown: not background */
    ck_assert_int_eq(policy_request_background(1.0, 1, 0), 0); /* memory pressure */
    ck_assert_int_eq(policy_request_background(2, 1, 0), 0);
}
END_TEST

/* A round someone waits for (meshctl mesh, or an automatic round it adopted) is never
 * background, however idle the machine: SCHED_IDLE next to busy threads starved it. */
START_TEST(waited_for_rounds_are_never_background)
{
    ck_assert_int_eq(policy_request_background(1.0, 0, 1), 0);
    ck_assert_int_eq(policy_request_background(2, 0, 1), 0);
    ck_assert_int_eq(policy_request_background(64, 0, 1), 0);
    ck_assert_int_eq(policy_request_background(0.5, 0, 1), 0);
    ck_assert_int_eq(policy_request_background(2, 1, 1), 0);
}
END_TEST

/* With no CPU to spare, a request costs its whole time in the shim (not only its barrier)
 * and the budget shrinks: the gap after it grows, and the next request is smaller. */
START_TEST(busy_machine_spaces_requests_by_their_whole_time)
{
    /* sent at 1234, answered at 1234.004: 4 ms in the shim, 1 ms of it barrier */
    struct round_outcome o = outcome_at(1234.004, 40, 40, 1);
    o.started = 1234;
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq_tol(st.next_request_at, 1234.013, 1e-9); /* spare: barrier, 1 ms * 9 */
    st.next_request_at = 0;
    st.duty_share = policy_duty_share(0.25, 0); /* 25 ms/s of the shim's time */
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq_tol(st.next_request_at, 1234.004 + 0.004 * (1000 / 25.0 - 1), 1e-9);
    st.next_request_at = 0;
    o.started = 1234.0035; /* a request quicker than its barrier (clamped replies): the barrier */
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq_tol(st.next_request_at, 1234.004 + 0.001 * (1000 / 25.0 - 1), 1e-9);
    /* Requests shrink with the budget: 10 us a pair, holds within the hold budget. */
    st = (struct policy_proc){.pair_ns = 10000, .hold_ns = 256e3};
    unsigned full = policy_request_pairs(&s, &st);
    ck_assert_uint_eq(full, (unsigned)(100 * POLICY_REQUEST_DUTY_SHARE * 1e6 / 10000 + 1e-6));
    st.duty_share = 0.5;
    ck_assert_uint_eq(policy_request_pairs(&s, &st), full / 2);
    st.duty_share = POLICY_BUSY_DUTY_SHARE; /* never below the hold budget's 100 pairs */
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 100);
}
END_TEST

/* No CPU to spare (policy.h): a quiet fragmented heap waits while fewer than min_spare_cpu
 * CPUs are idle, unless memory is short; an unknown spare does not hold it back, nor does
 * min_spare_cpu=0.  A busy heap stays BUSY (its own rule comes first). */
START_TEST(no_spare_cpu_holds_back_automatic_rounds)
{
    m.spare_cpus = 0.99;
    ck_assert_int_eq(decide(), POLICY_CPU_BUSY);
    m.spare_cpus = 1;
    ck_assert_int_eq(decide(), POLICY_START);
    m.spare_cpus = -1;
    ck_assert_int_eq(decide(), POLICY_START);
    m.spare_cpus = 0;
    m.pressure = 10;
    ck_assert_int_eq(decide(), POLICY_START);
    m.pressure = 0;
    s.min_spare_cpu = 0;
    ck_assert_int_eq(decide(), POLICY_START);
    s.min_spare_cpu = 1;
    m.live_bytes = 120 * MiB; /* 20% changed since the last tick */
    ck_assert_int_eq(decide(), POLICY_BUSY);
    ck_assert_int_eq(policy_cpu_waits(&s, 0.1, 2, 0), 1);
    ck_assert_int_eq(policy_cpu_waits(&s, 0.1, 2, 1), 0);
    ck_assert_int_eq(policy_cpu_waits(&s, -1, 2, 0), 0);
}
END_TEST

/* The default asks a whole CPU, but at most three quarters of the machine: a 1-CPU machine
 * 80% idle compacts; more than the machine has never is spare (only memory pressure). */
START_TEST(spare_needed_is_capped_by_the_machine)
{
    s.min_spare_cpu = 1;
    ck_assert_double_eq(policy_spare_needed(&s, 2), 1);
    ck_assert_double_eq(policy_spare_needed(&s, 1), 0.75);
    ck_assert_double_eq(policy_spare_needed(&s, 0), 1); /* unknown: as set */
    ck_assert_int_eq(policy_cpu_waits(&s, 0.8, 1, 0), 0);
    ck_assert_int_eq(policy_cpu_waits(&s, 0.7, 1, 0), 1);
    ck_assert_int_eq(policy_cpu_waits(&s, 0.9, 2, 0), 1);
    s.min_spare_cpu = 1.8;
    ck_assert_double_eq(policy_spare_needed(&s, 2), 1.5);
    s.min_spare_cpu = 4096;
    ck_assert_int_eq(policy_cpu_waits(&s, 2, 2, 0), 1);
    ck_assert_int_eq(policy_cpu_waits(&s, 2, 2, 1), 0);
    m.spare_cpus = 1.9;
    m.online_cpus = 2;
    ck_assert_int_eq(decide(), POLICY_CPU_BUSY);
}
END_TEST

/* Paced requests start at POLICY_PROBE_PAIRS after a round's start and after every wait for
 * spare CPU, and double with each answer up to the hold budget's size. */
START_TEST(requests_ramp_up_after_a_start_or_a_cpu_wait)
{
    st.pair_ns = 10000;
    st.hold_ns = 256e3;
    st.ramp = 5;
    unsigned full = policy_request_pairs(&s, &st);
    ck_assert_uint_gt(full, POLICY_PROBE_PAIRS << 3);
    m.spare_cpus = 2;
    m.online_cpus = 2;
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_START);
    policy_note(&s, &st, &m, &v);
    ck_assert_uint_eq(st.ramp, 0);
    unsigned want = POLICY_PROBE_PAIRS, sent = 0;
    for (int i = 0; i < 12; i++) {
        unsigned n = policy_ramp_pairs(&st, full);
        ck_assert_uint_eq(n, want < full ? want : full);
        sent += n;
        struct round_outcome o = outcome_at(1000 + i, n, n, n * 0.01);
        policy_after_request(&s, &st, &o);
        want *= 2;
    }
    ck_assert_uint_eq(policy_ramp_pairs(&st, full), full);
    ck_assert_uint_le(st.ramp, POLICY_RAMP_STEPS);
    policy_note_spare(&s, &st, 0.2, 2, 0); /* busy: wait, and start small again */
    ck_assert_int_eq(st.cpu_wait, 1);
    ck_assert_uint_eq(policy_ramp_pairs(&st, full), POLICY_PROBE_PAIRS);
    policy_note_spare(&s, &st, 1.5, 2, 0);
    ck_assert_int_eq(st.cpu_wait, 0);
    ck_assert_double_eq(st.duty_share, 1);
    ck_assert_uint_eq(policy_ramp_pairs(&st, full), POLICY_PROBE_PAIRS);
}
END_TEST

/* A round under way: while its requests wait for spare CPU they are asked again every
 * POLICY_CPU_RECHECK_SECONDS (sooner than a busy heap's recheck), and a longer duty wait is kept; the spare back, the duty
 * budget alone sets the wait.  Like BUSY, CPU_BUSY looks again a recheck later. */
START_TEST(requests_wait_for_spare_cpu_and_look_again)
{
    st.next_request_at = 0;
    ck_assert_double_eq(policy_request_wait(&st, 50), 0);
    st.cpu_wait = 1;
    ck_assert_double_eq(policy_request_wait(&st, 50), POLICY_CPU_RECHECK_SECONDS);
    ck_assert(POLICY_CPU_RECHECK_SECONDS < POLICY_BUSY_RECHECK_SECONDS);
    st.next_request_at = 50 + 3 * POLICY_CPU_RECHECK_SECONDS;
    ck_assert_double_eq(policy_request_wait(&st, 50), 3 * POLICY_CPU_RECHECK_SECONDS);
    st.cpu_wait = 0;
    st.next_request_at = 50.25;
    ck_assert_double_eq(policy_request_wait(&st, 50), 0.25);
    m.spare_cpus = 0.1;
    st.rearm_at = 0;
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_CPU_BUSY);
    policy_note(&s, &st, &m, &v);
    ck_assert_double_eq(st.rearm_at, m.now + POLICY_BUSY_RECHECK_SECONDS);
}
END_TEST

/* /proc/stat's "cpu" line: idle + iowait over everything but guest time (counted in user). */
START_TEST(spare_cpu_from_two_proc_stat_lines)
{
    const char *a = "cpu  1000 0 500 8000 100 0 0 0 0 0\n";
    const char *b = "cpu  1600 0 700 8300 100 0 0 0 300 0\n"; /* 1100 jiffies, 300 idle */
    ck_assert_double_eq_tol(spare_cpu_between(a, b, 2), 2 * 300.0 / 1100, 1e-12);
    const char *c = "cpu  1000 0 500 9000 200 0 0 0\n"; /* 1100 jiffies, all idle or iowait */
    ck_assert_double_eq_tol(spare_cpu_between(a, c, 4), 4, 1e-12);
    ck_assert_double_eq(spare_cpu_between(a, a, 2), -1);              /* no time passed */
    ck_assert_double_eq(spare_cpu_between(b, a, 2), -1);              /* backwards */
    ck_assert_double_eq(spare_cpu_between("cpu0 1 2 3 4", b, 2), -1); /* not the total */
    ck_assert_double_eq(spare_cpu_between("cpu  x", b, 2), -1);
    /* iowait may fall (proc(5)): the share stays within 0..1 of the CPUs */
    ck_assert_double_eq(spare_cpu_between(a, "cpu  1200 0 500 8000 0\n", 2), 0);
    ck_assert_double_eq(spare_cpu_between(a, "cpu  1000 0 600 8050 0\n", 2), 0);
}
END_TEST

START_TEST(duty_budget_holds_over_every_sliding_second)
{
    /* Requests sent as early as the policy allows, each taking its barrier plus 0.3 ms of
     * other work; the barrier per pair drifts.  In every window of one second the barrier
     * stays within duty_ms_per_s plus one request's, and the budget is used, not wasted. */
    enum { N = 3000 };
    static double start[N], barrier[N];
    double now = 1000;
    for (int i = 0; i < N; i++) {
        now += policy_request_wait(&st, now);
        uint32_t n = policy_request_pairs(&s, &st);
        double cost_us = 10 + (i * 13 % 31);
        double ms = n * cost_us / 1000;
        start[i] = now;
        barrier[i] = ms;
        now += ms / 1000 + 0.0003;
        struct round_outcome o = outcome_at(now, n, n, ms);
        policy_after_request(&s, &st, &o);
    }
    double worst = 0, longest = 0;
    for (int i = 0; i < N; i++) {
        longest = barrier[i] > longest ? barrier[i] : longest;
        double sum = 0;
        for (int j = i; j < N && start[j] < start[i] + 1; j++)
            sum += barrier[j];
        if (start[i] + 1 <= start[N - 1])
            worst = sum > worst ? sum : worst;
    }
    ck_assert_double_le(worst, s.duty_ms_per_s + longest);
    ck_assert_double_ge(worst, 0.9 * s.duty_ms_per_s);
    double total = 0;
    for (int i = 0; i < N; i++)
        total += barrier[i];
    ck_assert_double_ge(total / (now - start[0]), 0.9 * s.duty_ms_per_s);
}
END_TEST

START_TEST(rearmed_after_a_round_while_compacting_only)
{
    st.compacting = 1;
    struct round_outcome o = outcome_at(1300, 4096, 4000, 40);
    struct policy_after a = policy_after_round(&s, &st, &o);
    ck_assert_int_eq(a.fruitless, 0);
    ck_assert_int_eq(a.rearmed, 1);
    ck_assert_double_eq(st.last_round, 1234);
    ck_assert_double_eq_tol(st.rearm_at, 1234 + POLICY_REARM_SECONDS, 1e-9);
    st.next_request_at = 1301; /* the duty budget: later */
    policy_after_round(&s, &st, &o);
    ck_assert_double_eq(st.rearm_at, 1301);
    st.next_request_at = 0;
    st.compacting = 0; /* meshctl's round outside a compaction: the ticks */
    a = policy_after_round(&s, &st, &o);
    ck_assert_int_eq(a.rearmed, 0);
    ck_assert_double_eq(st.rearm_at, 0);
    st.compacting = 1; /* fruitless: the compaction ends, no re-arm */
    o = outcome_at(1300, 4096, 0, 0);
    a = policy_after_round(&s, &st, &o);
    ck_assert_int_eq(a.fruitless, 1);
    ck_assert_int_eq(a.rearmed, 0);
    ck_assert_double_eq(st.rearm_at, 0);
}
END_TEST

START_TEST(rearm_after_a_verdict_busy_soon_settled_never)
{
    st.compacting = 1;
    st.rearm_at = 1100.5;
    struct policy_verdict v = {.kind = POLICY_NOT_DUE, .due = 1100.5};
    policy_note(&s, &st, &m, &v);
    ck_assert_double_eq(st.rearm_at, 1100.5); /* a tick before the re-arm keeps it */
    st.rearm_at = 0;
    policy_note(&s, &st, &m, &v);
    ck_assert_double_eq(st.rearm_at, 1100.5); /* due before the next tick: then */
    v.due = m.now + s.interval;
    st.rearm_at = 0;
    policy_note(&s, &st, &m, &v);
    ck_assert_double_eq(st.rearm_at, 0); /* due at the next tick or later: the ticks */
    v.due = 1100.5;
    m.round_running = 1;
    policy_note(&s, &st, &m, &v);
    ck_assert_double_eq(st.rearm_at, 0); /* the round's end decides */
    m.round_running = 0;
    st.rearm_at = 1100;
    v.kind = POLICY_START;
    policy_note(&s, &st, &m, &v);
    ck_assert_double_eq(st.rearm_at, 0); /* used up: the round's end re-arms */
    st.rearm_at = 1100;
    v.kind = POLICY_BUSY;
    policy_note(&s, &st, &m, &v);
    ck_assert_double_eq(st.rearm_at, m.now + POLICY_BUSY_RECHECK_SECONDS); /* soon, not a tick */
    ck_assert_int_eq(st.compacting, 1); /* busy: the compaction waits, it does not end */
    s.interval = 1; /* the ticks are as soon */
    policy_note(&s, &st, &m, &v);
    ck_assert_double_eq(st.rearm_at, 0);
    s.interval = 5;
    st.rearm_at = 1100;
    v.kind = POLICY_SETTLED;
    policy_note(&s, &st, &m, &v);
    ck_assert_double_eq(st.rearm_at, 0);
    ck_assert_int_eq(st.compacting, 0);
    /* and a settled process is not re-armed after a round: not compacting */
    struct round_outcome o = outcome_at(1300, 10, 10, 1);
    ck_assert_int_eq(policy_after_round(&s, &st, &o).rearmed, 0);
}
END_TEST

START_TEST(activity_measured_over_less_than_an_interval_is_scaled_up)
{
    st.measured_at = m.now - 0.5; /* a re-armed look, half a second after the last */
    m.live_bytes = 101 * MiB;     /* 1% in 0.5 s: 10% per 5 s interval */
    m.heap_bytes = 400 * MiB;
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_double_eq_tol(v.activity, 0.1, 1e-9);
    ck_assert_int_eq(v.kind, POLICY_BUSY);
    st.measured_at = m.now - 50; /* longer than an interval: not scaled down */
    v = policy_decide(&s, &st, &m);
    ck_assert_double_eq_tol(v.activity, 0.01, 1e-9);
    ck_assert_int_eq(v.kind, POLICY_START);
    policy_note(&s, &st, &m, &v);
    ck_assert_double_eq(st.measured_at, m.now);
}
END_TEST

START_TEST(timeout_doubles_the_cost_and_backs_off)
{
    st.compacting = 1;
    st.pair_ns = 25000;
    struct round_outcome o = {.started = 1234, .ended = 1264, .timed_out = 1};
    policy_after_request(&s, &st, &o);
    ck_assert_double_eq(st.pair_ns, 50000);
    ck_assert_uint_eq(policy_request_pairs(&s, &st), 20);
    st.pair_ns = 0; /* unknown: twice what the probe was sized for */
    policy_after_request(&s, &st, &o);
    ck_assert_uint_eq(policy_request_pairs(&s, &st), POLICY_PROBE_PAIRS / 2);
    struct policy_after a = policy_after_round(&s, &st, &o);
    ck_assert_int_eq(a.fruitless, 1);
    ck_assert_int_eq(st.compacting, 0);
    ck_assert_double_eq(st.backoff, 20); /* twice min_interval */
    policy_after_round(&s, &st, &o);
    ck_assert_double_eq(st.backoff, 40);
}
END_TEST

START_TEST(fruitless_rounds_double_the_backoff_up_to_its_cap)
{
    st.compacting = 1;
    struct round_outcome o = outcome(0, 0, 0); /* nothing to mesh */
    for (int i = 0; i < 10; i++) {
        struct policy_after a = policy_after_round(&s, &st, &o);
        ck_assert_int_eq(a.fruitless, 1);
    }
    ck_assert_double_eq(st.backoff, POLICY_MAX_BACKOFF_SECONDS);
    ck_assert_int_eq(st.compacting, 0);
    ck_assert_uint_eq(st.rounds, 11); /* setup's one and these ten */
    ck_assert_double_eq(st.last_round, 1234);
    o = outcome(100, 60, 1); /* meshed, but most refused for the mapping budget */
    o.budget_rejected = 40;
    ck_assert_int_eq(policy_after_round(&s, &st, &o).fruitless, 0);
    ck_assert_double_eq(st.backoff, 0); /* a round that meshed resets it */
    st.compacting = 1;
    o.budget_rejected = 51;
    ck_assert_int_eq(policy_after_round(&s, &st, &o).fruitless, 1);
    ck_assert_int_eq(st.compacting, 0);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("policy");
    add_case(su, quiet_fragmented_heap_starts_a_round_at_the_full_limit, setup);
    add_case(su, round_is_planned_with_max_pairs_per_round, setup);
    add_case(su, not_due_before_min_interval_or_while_a_round_runs, setup);
    add_case(su, measured_only_from_the_tick_before_it_is_due, setup);
    add_case(su, backoff_and_pressure_set_the_min_interval, setup);
    add_case(su, compacting_rounds_follow_at_the_rearm_not_the_tick, setup);
    add_case(su, duty_budget_also_holds_back_a_first_round, setup);
    add_case(su, refusing_process_gets_no_automatic_round, setup);
    add_case(su, settled_below_threshold_small_heap_or_few_candidates, setup);
    add_case(su, hysteresis_compacts_down_to_stop_fragmentation, setup);
    add_case(su, mapping_budget_within_two_min_limits_holds_rounds, setup);
    add_case(su, busy_heap_waits_unless_under_pressure, setup);
    add_case(su, churn_with_flat_live_bytes_is_busy, setup);
    add_case(su, first_measurement_waits_for_a_second, setup);
    add_case(su, first_round_waits_for_a_quiet_heap_not_min_interval, setup);
    add_case(su, registered_process_is_first_looked_at_a_second_later, setup);
    add_case(su, verdicts_checked_in_order, setup);
    add_case(su, note_keeps_the_measurement_and_ends_compactions, setup);
    add_case(su, requests_fit_the_hold_budget, setup);
    add_case(su, round_is_split_into_requests_within_the_hold_budget, setup);
    add_case(su, requests_carry_many_runs_while_each_hold_fits_the_budget, setup);
    add_case(su, duty_budget_spaces_paced_requests, setup);
    add_case(su, idle_program_is_paced_by_the_idle_duty, setup);
    add_case(su, idle_needs_a_known_and_sane_program_cpu, setup);
    add_case(su, meshing_cpu_counts_as_spare, setup);
    add_case(su, duty_share_follows_the_spare_cpu, setup);
    add_case(su, background_with_a_whole_idle_cpu_and_no_pressure, setup);
    add_case(su, waited_for_rounds_are_never_background, setup);
    add_case(su, no_spare_cpu_holds_back_automatic_rounds, setup);
    add_case(su, requests_wait_for_spare_cpu_and_look_again, setup);
    add_case(su, spare_needed_is_capped_by_the_machine, setup);
    add_case(su, requests_ramp_up_after_a_start_or_a_cpu_wait, setup);
    add_case(su, busy_machine_spaces_requests_by_their_whole_time, setup);
    add_case(su, spare_cpu_from_two_proc_stat_lines, setup);
    add_case(su, duty_budget_holds_over_every_sliding_second, setup);
    add_case(su, rearmed_after_a_round_while_compacting_only, setup);
    add_case(su, rearm_after_a_verdict_busy_soon_settled_never, setup);
    add_case(su, activity_measured_over_less_than_an_interval_is_scaled_up, setup);
    add_case(su, timeout_doubles_the_cost_and_backs_off, setup);
    add_case(su, fruitless_rounds_double_the_backoff_up_to_its_cap, setup);
    return run_suite(su);
}
