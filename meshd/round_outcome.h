/*
 * round_outcome.h: what one meshing round and each of its requests came to, and how the
 * round is paced: the whole interface from rounds.c to its caller's bookkeeping (the
 * policy's): rounds.h asks and reports, policy.h answers and consumes.
 */
#ifndef MESHD_ROUND_OUTCOME_H
#define MESHD_ROUND_OUTCOME_H

#include <stdint.h>

#include "hold_stats.h"

struct process;

/* Of a round (the totals of its requests) or of one request.  pairs = 0: nothing to mesh
 * was found (no request sent); timed_out: a request got no reply in time (its counts are
 * 0); barrier_ns: the replies' barrier_ns_total, each clamped to its request's duration;
 * budget_rejected: pairs the shim refused for its mapping budget; holds and hold_us_log2:
 * the replies' barrier holds and their histogram (hold_stats.h), clamped (a round's
 * outcome carries the count only). */
struct round_outcome {
    double started; /* monotonic_now(): when the round was planned, or the request sent */
    double ended;   /* when the last reply came (or the timeout) */
    uint32_t pairs;
    uint32_t meshed;
    uint32_t budget_rejected;
    uint64_t barrier_ns;
    uint32_t holds;
    uint32_t hold_us_log2[HOLD_BUCKETS];
    int timed_out;
    /* A request's reply only: the CPU time of the program's own threads (all but the
     * shim's control thread) since it started, ns, as the shim read it; 0: unknown. */
    uint64_t program_cpu_ns;
    uint64_t mesher_cpu_ns; /* the same for the control thread, which meshes */
};

/* The next request of a round: at most `pairs` pairs (at least 1), sent `wait` seconds
 * from now (0: at once). */
struct round_pace {
    unsigned pairs;
    double wait;
    int background; /* MeshRequest.background: the program comes first between pairs */
};

/* Told the outcome of every round that started, exactly once: from rounds_start itself when
 * there was nothing to send, else when the last reply comes or a request times out.  A
 * round whose process goes away reports nothing. */
typedef void (*round_done_fn)(struct process *p, const struct round_outcome *o);

struct round_hooks {
    /* Asked before each request; waited_for: someone (meshctl mesh) waits for the round. */
    struct round_pace (*pace)(struct process *p, int waited_for);
    /* Told each request's outcome, before the next pace or the round's done. */
    void (*request_done)(struct process *p, const struct round_outcome *o);
    round_done_fn done;
};

#endif
