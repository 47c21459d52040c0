/*
 * mesher.h: SplitMesher (Mesh, PLDI 2019, section 4.2) over one process's span table.
 *
 * Per size class, the detached spans at most `cutoff` full (default: half) are put in
 * address order and split in two halves; each span of the left half is tried against up
 * to MESHER_PROBES spans of the right half (at its own index plus a per-round random
 * offset, wrapping) and paired with the first whose occupancy bitmap is disjoint from its
 * own.  Each span is used at most once per round.
 *
 * Classes of larger spans go first.  A pair releases its source's pages (span_pages) and
 * costs the shim about one kernel mapping whatever their number, and the mappings are what
 * ends meshing at the default vm.max_map_count (the shim's budget is half of it): a round
 * that fills its max_pairs from the small classes first spends that budget for a page a
 * pair where larger classes give two or more.  A delete-heavy Redis (bench-frag's
 * redis-del) ran out of mappings with its 1 KiB classes (two-page spans, 28% full)
 * untouched.
 *
 * Address order instead of the paper's random shuffle: a left span first tries the offset
 * its predecessor matched at, so consecutive pairs mesh neighbouring pages onto
 * neighbouring pages, and the shim's aliases merge into one kernel mapping per run
 * (shim/alias_map.h: vm.max_map_count is what bounds meshing).  The matching argument
 * does not need a random order: the shim's shuffle vectors already make every span's live
 * offsets random, whatever its address.
 *
 * Runs: the shim meshes a run of pairs (sources on consecutive pages onto destinations on
 * consecutive pages) under one barrier hold with one system call per step, so the pairing
 * makes runs where the bitmaps allow: a left span first tries the right span after its
 * predecessor's partner when both are page neighbours of that pair; a left span that
 * starts a run weighs the first MESHER_RUN_CHOICES partners it could mesh with by the run
 * each would start.  Every left span is still paired with some meshable right span if the
 * probes find one, as before, so the pairs (the pages released) do not drop.
 *
 * The result is only a proposal made from a snapshot: the shim re-checks every pair.
 *
 * A plan is made in two phases: a scan of the table that collects the candidates, which
 * can be done in steps of a bounded number of records (planner.h runs one step per turn
 * of the event loop), and the pairing of what it collected, whose cost is bounded by
 * MESHER_MAX_CANDIDATES whatever the table.  mesher_plan() does both at once.
 */
#ifndef MESHD_MESHER_H
#define MESHD_MESHER_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"

#define MESHER_PROBES 64u
#define MESHER_MAX_PAIRS 4096u
/* A left span that starts a run weighs up to this many spans it could mesh with by the
 * run each would start, looking this far ahead. */
#define MESHER_RUN_CHOICES 8u
#define MESHER_RUN_LOOKAHEAD 16u

struct cand;

/* Where a pair's spans lie, for ordering a finished plan by its sources. */
struct mesh_plan_place {
    uint32_t src_page, dst_page, span_pages;
    uint8_t cls, src_single; /* src_single: the source is a span of one virtual span */
};

/*
 * A finished plan lists its pairs by class, in the order the classes were planned (larger
 * spans first: when the shim's mapping budget runs out part way through a round, the pairs
 * it still takes are those that release the most), then by source page, so that
 * neighbouring sources follow each other: the shim meshes a stretch of them under one hold,
 * one write-protect and one zap for all (shim/mesh_engine.c, "Runs").  The pairing itself
 * takes left spans in address order, but a pair's source is the right span when that one
 * has fewer virtual spans, so its order interleaves the two halves.
 */
struct mesh_plan {
    size_t npairs;
    uint32_t dst[MESHER_MAX_PAIRS]; /* dst[i] <- src[i] */
    uint32_t src[MESHER_MAX_PAIRS];
    struct mesh_plan_place place[MESHER_MAX_PAIRS];
    size_t candidates; /* sparse detached spans seen */
    /* Pairs whose source (a span of one virtual span) is the page-neighbour after the
     * previous pair's, in one class: they join its run (src_run_pairs); of those, the pairs
     * whose destination is the page-neighbour after the previous pair's too, which join its
     * remap (run_pairs).  Counted on the finished, ordered plan. */
    size_t src_run_pairs, run_pairs;
};

/* Fills plan with at most max_pairs (<= MESHER_MAX_PAIRS) pairs of detached spans whose
 * live/capacity is at most cutoff; -1 if the table could not be read or memory ran out. */
int mesher_plan(struct process *p, struct mesh_plan *plan, size_t max_pairs, double cutoff);

/* Bounds the memory and the pairing time of one round whatever the table claims: enough
 * spans to fill MESHER_MAX_PAIRS many times over.  Later candidates are not collected. */
#define MESHER_MAX_CANDIDATES (1u << 18)

/* The same in steps.  The scan holds p, which must outlive it (free it when p goes). */
struct mesher_scan;
/* NULL if out of memory. */
struct mesher_scan *mesher_scan_new(struct process *p, double cutoff);
/* Reads up to `records` more records, re-reading the table's header first (it may have
 * shrunk or moved its end since the last step): 1 if more are left, 0 if the scan is
 * complete, -1 if the table could not be read or memory ran out. */
int mesher_scan_step(struct mesher_scan *s, uint32_t records);
/* Pairs what a complete scan collected into plan (as mesher_plan), in steps: the first
 * sorts the candidates, each later one tries left spans until about `work` probes are
 * spent (SIZE_MAX: no bound).  1 if more steps are left, 0 when the plan is complete.
 * plan and max_pairs must be the same at every step. */
int mesher_scan_pair(struct mesher_scan *s, struct mesh_plan *plan, size_t max_pairs, size_t work);
/* All of mesher_scan_pair's steps at once; returns plan->npairs. */
size_t mesher_scan_finish(struct mesher_scan *s, struct mesh_plan *plan, size_t max_pairs);
void mesher_scan_free(struct mesher_scan *s);

#endif
