/*
 * round_outcome.h: what one meshing round came to, the whole interface from rounds.c to
 * its caller's bookkeeping (the policy's): rounds.h reports it, policy.h consumes it.
 */
#ifndef MESHD_ROUND_OUTCOME_H
#define MESHD_ROUND_OUTCOME_H

#include <stdint.h>

#include "hold_stats.h"

struct process;

/* pairs = 0: nothing to mesh was found (no request sent); timed_out: no reply in time (the
 * counts are 0); barrier_ns: the reply's barrier_ns_total, clamped to the round's duration;
 * budget_rejected: pairs the shim refused for its mapping budget; holds and hold_us_log2:
 * the reply's barrier holds and their histogram (hold_stats.h), clamped. */
struct round_outcome {
    double started; /* monotonic_now() when the round was planned */
    uint32_t pairs;
    uint32_t meshed;
    uint32_t budget_rejected;
    uint64_t barrier_ns;
    uint32_t holds;
    uint32_t hold_us_log2[HOLD_BUCKETS];
    int timed_out;
};

/* Told the outcome of every round that started, exactly once: from rounds_start itself when
 * there was nothing to send, else when the reply comes or the round times out.  A round
 * whose process goes away reports nothing. */
typedef void (*round_done_fn)(struct process *p, const struct round_outcome *o);

#endif
