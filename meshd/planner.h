/*
 * planner.h: the plan of a meshing round (mesher.h), made a slice at a time on the loop.
 *
 * Planning reads the process's span table: up to 2^22 records (512 MiB), half a second of
 * meshd's CPU on a dense table, during which a loop that planned in one go would serve no
 * other client.  So the scan reads PLANNER_SLICE_RECORDS records per turn of the loop, the
 * sort of the candidates (at most MESHER_MAX_CANDIDATES) has a turn of its own, and the
 * pairing spends PLANNER_SLICE_PROBES probes per turn; other clients are served in between.  As summary.c does with its scans:
 *  - the first slice runs at once, inside planner_start(): a table that fits in it is
 *    planned with no delay, and its CPU is charged by whoever called (the policy or the
 *    request's dispatch);
 *  - every later slice is charged to the uid of the table's process (budget.h), and while
 *    that uid's budget is used up its slices run only every PLANNER_SLOW_SLICE_USEC;
 *  - the table is hostile and keeps changing between slices: every slice re-reads its
 *    header (a truncated table fails the plan) and takes its current end, never beyond
 *    what the file held at registration, so a plan takes a bounded number of slices.
 *
 * Why slices and not a worker thread: the table reader (registry.c) keeps one read buffer
 * and one SIGBUS escape for the one thread that reads tables, a process (and its
 * descriptor) is freed by the loop the moment its connection closes, and the budget is
 * loop-only CPU time.  A thread would need its own copies of all three (a dup()ed
 * descriptor, reference-counted processes, a thread-safe budget) to gain what slices
 * already give: a bounded pause for every other client.  And it would let one uid's
 * planning take a second core of a small machine, where slices keep it on the one core
 * meshd has always used, under the same per-uid budget as every other scan.
 */
#ifndef MESHD_PLANNER_H
#define MESHD_PLANNER_H

#include <event2/event.h>

#include "mesher.h"

#define PLANNER_SLICE_RECORDS (1u << 16)
/* Bitmap comparisons per turn of the pairing (a few ms); its sort has a turn of its own. */
#define PLANNER_SLICE_PROBES (1u << 20)
/* Pause between slices while the table's uid has used up its budget. */
#define PLANNER_SLOW_SLICE_USEC 100000

struct planner;

/* Called from the loop when a plan under way is complete (ok 1: plan filled) or failed
 * (ok 0: the table could not be read, or memory ran out).  The planner is already freed. */
typedef void (*planner_done_fn)(struct process *p, int ok);

/* Plans p's round into plan (at most max_pairs pairs of spans at most cutoff full).
 * 0: the plan is complete now (done is not called); 1: under way, *job set, done called
 * later unless planner_cancel(*job) comes first; -1: the table could not be read, or
 * memory ran out. */
int planner_start(struct event_base *base, struct process *p, struct mesh_plan *plan,
                  size_t max_pairs, double cutoff, planner_done_fn done, struct planner **job);
/* Stops a plan under way (p is going away, or its round ends); done is not called. */
void planner_cancel(struct planner *job);

#endif
