/*
 * summary.h: what a span table holds, read again only where it changed, in slices, at most
 * once per use, and shared.
 *
 * A table holds up to MESH_MAX_RECORDS records (4 GiB): reading it whole takes most of a
 * second for a 100 GiB heap, far too long for every policy tick and /metrics scrape.  So
 * the summary of a table is a tally kept by region (MESH_REGION_RECORDS records): a pass
 * reads the table's region generations (span_table_abi.h) first, then only the regions
 * whose generation differs from the one they were last read at (or is unknown: a table
 * shorter than its header says), taking out what each held and putting in what it holds
 * now.  An idle heap costs a pass its header and 4 bytes per region; a busy one what it
 * changed.  A process whose generations lie (never change) is summarised stale: only its
 * own summary, and the mesher, which reads the whole table for a round, is not fooled;
 * one whose generations always change costs what a whole scan costs, within its budget.
 * meshd keeps 2 bytes per record of each read region that holds spans.
 * Still a pass can read the whole table (the first one, a busy heap), too long to hold the
 * loop while other clients wait.  And a memfd can be handed to meshd by any number of
 * processes.  So:
 *  - the summary of a table (its counters, per-class occupancy and the meshing candidates)
 *    is kept per table, found by the memfd's st_dev/st_ino (and the class table the
 *    registration checked): every registration of one memfd shares it;
 *  - a pass reads up to SUMMARY_SLICE_RECORDS records, then lets the loop serve others
 *    before the next slice; a pass that fits in one slice is done at once;
 *  - the CPU of a scan's slices is charged to the uid of the table's process (budget.h),
 *    and while that uid's budget is used up its scans go on only every 100 ms;
 *  - whoever needs a summary says how old it may be (the time its scan started); while a
 *    newer one is being made, summary_last() is the previous one, and summary_wait() has
 *    the caller called back when the new one is done.
 */
#ifndef MESHD_SUMMARY_H
#define MESHD_SUMMARY_H

#include <event2/event.h>
#include <stdint.h>

#include "registry.h"

#define SUMMARY_SLICE_RECORDS (1u << 16)
/* How old a summary may be: for meshctl stats (one process, fresh numbers), and for lists
 * of every process (ps, /metrics), which show the previous summary of a big table while a
 * new one is being made rather than wait for it. */
#define SUMMARY_STATS_MAX_AGE 0.25
#define SUMMARY_LIST_MAX_AGE 1.0

struct process_stats {
    uint64_t heap_bytes, live_bytes, meshes, released_bytes;
    uint64_t map_breaks, map_limit; /* the shim's word, for display only */
    uint64_t barrier_kind;          /* enum mesh_barrier_state, the shim's word, display only */
    struct {
        uint32_t spans;
        uint64_t live_objects, capacity_objects;
        uint32_t by_occupancy[10]; /* spans with live/capacity in [i/10, (i+1)/10) */
    } classes[MESH_MAX_CLASSES];
};

struct table_summary {
    double started; /* monotonic seconds (monotonic_now()) when its scan began */
    struct process_stats st;
    struct mesh_span_table_counters counters;
    double cutoff;     /* candidates counted for this occupancy cutoff */
    size_t candidates; /* detached spans with 0 < live <= cutoff * capacity */
};

/* Called when a summary someone waited for is done: p is NULL if the process went away
 * meanwhile, sum NULL if its table could not be read. */
typedef void (*summary_ready_fn)(struct process *p, uint64_t ctx, const struct table_summary *sum);

void summary_init(struct event_base *base, summary_ready_fn ready);
/* Joins p to the summary of its table (or starts one); called once p is registered. */
void summary_attach(struct process *p);
/* p is going away: its waiters are called back with p NULL. */
void summary_detach(struct process *p);
/* p's table summarised by a scan that began at or after min_start (and with this cutoff):
 * the cached one, or a new one if the table fits in a slice.  Otherwise NULL, *pending set
 * and a scan under way; NULL with *pending 0: the table cannot be read (drop p). */
const struct table_summary *summary_get(struct process *p, double cutoff, double min_start,
                                        int *pending);
/* The last complete summary of p's table, however old; NULL if there is none yet. */
const struct table_summary *summary_last(struct process *p);
/* For a list: summary_get() with SUMMARY_LIST_MAX_AGE, or summary_last() while a scan is
 * under way (NULL if none yet: show zeros).  *broken set if the table cannot be read. */
const struct table_summary *summary_for_list(struct process *p, double cutoff, int *broken);
/* Calls the ready function with ctx once the scan under way for p's table ends.  0, or -1
 * if too many wait already. */
int summary_wait(struct process *p, uint64_t ctx);
/* A round changed p's table: the next use scans it again. */
void summary_invalidate(struct process *p);

/* What the summaries have read since meshd started: passes begun, regions and records read
 * (tests and benchmarks check that an unchanged region is not read). */
struct summary_work {
    uint64_t passes, regions_read, records_read;
};
const struct summary_work *summary_work(void);

#endif
