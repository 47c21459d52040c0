/*
 * hold_stats.h: barrier holds as the shim reports them (MeshReply.holds, hold_us_log2).
 *
 * A hold is one interval during which writers to some source span may wait on the shim's
 * write barrier: one per pair meshed alone, one per run of neighbouring pairs.  Their
 * durations come as a histogram of HOLD_BUCKETS log2 buckets: bucket 0 holds under 1 us,
 * bucket i holds of [2^(i-1), 2^i) us, the last one everything longer too.
 */
#ifndef MESHD_HOLD_STATS_H
#define MESHD_HOLD_STATS_H

#include <stddef.h>
#include <stdint.h>

#define HOLD_BUCKETS 24

/* The upper bound, in us, of the bucket that holds the 99th percentile of n buckets of
 * hist (0 if there are no holds): a bound, never an underestimate. */
static inline uint64_t hold_p99_us(const uint64_t *hist, size_t n)
{
    uint64_t total = 0, seen = 0;
    for (size_t i = 0; i < n; i++)
        total += hist[i];
    if (total == 0)
        return 0;
    uint64_t rank = total - total / 100; /* holds at or below the p99 */
    for (size_t i = 0; i < n; i++) {
        seen += hist[i];
        if (seen >= rank)
            return (uint64_t)1 << (i < 63 ? i : 63);
    }
    return (uint64_t)1 << (n - 1);
}

/* The upper bound, in us, of the highest non-empty bucket of n buckets of hist (0 if there
 * are no holds): a bound on the longest hold, never an underestimate. */
static inline uint64_t hold_longest_us(const uint32_t *hist, size_t n)
{
    for (size_t i = n; i-- > 0;)
        if (hist[i])
            return (uint64_t)1 << (i < 63 ? i : 63);
    return 0;
}

#endif
