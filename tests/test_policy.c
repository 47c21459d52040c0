/*
 * test_policy.c: meshd's policy decision (meshd/policy_decide.c) on made-up measurements:
 * every verdict, the gates in front of it, hysteresis, the pair limit and what the policy
 * keeps between ticks and learns from a round's outcome.  Pure functions: no daemon, no libevent, no clock.
 */
#include "testutil.h"

#include "policy.h"

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
        .occupancy_cutoff = 0.5, .pressure_avg10 = 10, .max_activity = 0.05, .pause_budget_ms = 50,
    };
    st = (struct policy_proc){.last_round = 1000, .live_prev = 100 * MiB, .refill_prev = 5000,
                              .have_live_prev = 1, .activity = 0};
    m = (struct policy_measure){.now = 1100, .heap_bytes = 200 * MiB, .live_bytes = 100 * MiB,
                                .refill_bytes = 5000, .candidates = 1000};
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

START_TEST(start_uses_the_learned_pair_limit_within_max_pairs)
{
    st.pair_limit = 288;
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_START);
    ck_assert_uint_eq(v.limit, 288);
    s.max_pairs_per_round = 100; /* lowered at run time: the setting wins */
    ck_assert_uint_eq(policy_decide(&s, &st, &m).limit, 100);
    st.pair_limit = 0; /* 0: nothing learned */
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

START_TEST(compacting_goes_on_at_every_tick_until_backoff)
{
    st.compacting = 1;
    m.now = st.last_round + 5;
    struct policy_verdict v = policy_decide(&s, &st, &m);
    ck_assert_int_eq(v.kind, POLICY_START);
    ck_assert_double_eq_tol(v.min_interval, 5, 1e-9); /* interval, not min_interval */
    st.backoff = 20;
    ck_assert_int_eq(decide(), POLICY_NOT_DUE);
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
    policy_note(&st, &m, &v);
    ck_assert_uint_eq(st.live_prev, 120 * MiB);
    ck_assert_uint_eq(st.refill_prev, 7777);
    ck_assert_int_eq(st.have_live_prev, 1);
    ck_assert_double_eq_tol(st.activity, 0.2, 1e-9);
    ck_assert_int_eq(st.compacting, 1); /* busy: the compaction waits, it does not end */
    v.kind = POLICY_SETTLED;
    policy_note(&st, &m, &v);
    ck_assert_int_eq(st.compacting, 0);
    st.compacting = 1;
    v.kind = POLICY_MAP_FULL;
    policy_note(&st, &m, &v);
    ck_assert_int_eq(st.compacting, 0);
    policy_skip(&st);
    ck_assert_int_eq(st.have_live_prev, 0);
}
END_TEST

/* A round's outcome, barrier in milliseconds. */
static struct round_outcome outcome(uint32_t pairs, uint32_t meshed, double barrier_ms)
{
    return (struct round_outcome){.started = 1234, .pairs = pairs, .meshed = meshed,
                                  .barrier_ns = (uint64_t)(barrier_ms * 1e6)};
}

START_TEST(over_budget_round_fits_the_limit_to_the_budget)
{
    struct round_outcome o = outcome(4096, 1000, 100); /* 0.1 ms a pair: 500 fit in 50 ms */
    struct policy_after a = policy_after_round(&s, &st, &o);
    ck_assert_uint_eq(a.limit_before, 4096);
    ck_assert_uint_eq(a.limit_after, 500);
    ck_assert_uint_eq(policy_limit(&s, &st), 500);
    o = outcome(500, 500, 50000); /* very slow: the floor */
    ck_assert_uint_eq(policy_after_round(&s, &st, &o).limit_after, POLICY_MIN_PAIR_LIMIT);
    st.pair_limit = 32; /* below the floor (max_pairs_per_round was lowered): never grows */
    o = outcome(32, 32, 60);
    ck_assert_uint_eq(policy_after_round(&s, &st, &o).limit_after, 32);
}
END_TEST

START_TEST(cheap_rounds_double_the_limit_up_to_max)
{
    st.pair_limit = 500;
    struct round_outcome o = outcome(500, 500, 10); /* 500 pairs would take 10 ms < 25 ms */
    ck_assert_uint_eq(policy_after_round(&s, &st, &o).limit_after, 1000);
    o = outcome(1000, 1000, 30); /* 30 ms: within the budget, not under half: stays */
    ck_assert_uint_eq(policy_after_round(&s, &st, &o).limit_after, 1000);
    st.pair_limit = 3000;
    o = outcome(3000, 3000, 1);
    ck_assert_uint_eq(policy_after_round(&s, &st, &o).limit_after, 4096);
    ck_assert_uint_eq(st.pair_limit, 0); /* 0: max_pairs_per_round, whatever it becomes */
}
END_TEST

START_TEST(timeout_halves_the_limit_and_backs_off)
{
    st.pair_limit = 500;
    st.compacting = 1;
    struct round_outcome o = {.started = 1234, .timed_out = 1};
    struct policy_after a = policy_after_round(&s, &st, &o);
    ck_assert_uint_eq(a.limit_after, 250);
    ck_assert_int_eq(a.fruitless, 1);
    ck_assert_int_eq(st.compacting, 0);
    ck_assert_double_eq(st.backoff, 20); /* twice min_interval */
    st.pair_limit = 100;
    ck_assert_uint_eq(policy_after_round(&s, &st, &o).limit_after, POLICY_MIN_PAIR_LIMIT);
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
        ck_assert_uint_eq(a.limit_after, a.limit_before); /* no barrier measured */
    }
    ck_assert_double_eq(st.backoff, POLICY_MAX_BACKOFF_SECONDS);
    ck_assert_int_eq(st.compacting, 0);
    ck_assert_uint_eq(st.rounds, 10);
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
    add_case(su, start_uses_the_learned_pair_limit_within_max_pairs, setup);
    add_case(su, not_due_before_min_interval_or_while_a_round_runs, setup);
    add_case(su, measured_only_from_the_tick_before_it_is_due, setup);
    add_case(su, backoff_and_pressure_set_the_min_interval, setup);
    add_case(su, compacting_goes_on_at_every_tick_until_backoff, setup);
    add_case(su, refusing_process_gets_no_automatic_round, setup);
    add_case(su, settled_below_threshold_small_heap_or_few_candidates, setup);
    add_case(su, hysteresis_compacts_down_to_stop_fragmentation, setup);
    add_case(su, mapping_budget_within_two_min_limits_holds_rounds, setup);
    add_case(su, busy_heap_waits_unless_under_pressure, setup);
    add_case(su, churn_with_flat_live_bytes_is_busy, setup);
    add_case(su, first_measurement_waits_for_a_second, setup);
    add_case(su, verdicts_checked_in_order, setup);
    add_case(su, note_keeps_the_measurement_and_ends_compactions, setup);
    add_case(su, over_budget_round_fits_the_limit_to_the_budget, setup);
    add_case(su, cheap_rounds_double_the_limit_up_to_max, setup);
    add_case(su, timeout_halves_the_limit_and_backs_off, setup);
    add_case(su, fruitless_rounds_double_the_backoff_up_to_its_cap, setup);
    return run_suite(su);
}
