/*
 * mesher.h: SplitMesher (Mesh, PLDI 2019, section 4.2) over one process's span table.
 *
 * Per size class, the detached spans at most `cutoff` full (default: half) are put in
 * address order and split in two halves; each span of the left half is tried against up
 * to MESHER_PROBES spans of the right half (at its own index plus a per-round random
 * offset, wrapping) and paired with the first whose occupancy bitmap is disjoint from its
 * own.  Each span is used at most once per round.
 *
 * Address order instead of the paper's random shuffle: a left span first tries the offset
 * its predecessor matched at, so consecutive pairs mesh neighbouring pages onto
 * neighbouring pages, and the shim's aliases merge into one kernel mapping per run
 * (shim/alias_map.h: vm.max_map_count is what bounds meshing).  The matching argument
 * does not need a random order: the shim's shuffle vectors already make every span's live
 * offsets random, whatever its address.
 *
 * The result is only a proposal made from a snapshot: the shim re-checks every pair.
 */
#ifndef MESHD_MESHER_H
#define MESHD_MESHER_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"

#define MESHER_PROBES 64u
#define MESHER_MAX_PAIRS 4096u

struct mesh_plan {
    size_t npairs;
    uint32_t dst[MESHER_MAX_PAIRS]; /* dst[i] <- src[i] */
    uint32_t src[MESHER_MAX_PAIRS];
    size_t candidates; /* sparse detached spans seen */
};

/* Fills plan with at most max_pairs (<= MESHER_MAX_PAIRS) pairs of detached spans whose
 * live/capacity is at most cutoff; -1 if the table could not be read or memory ran out. */
int mesher_plan(struct process *p, struct mesh_plan *plan, size_t max_pairs, double cutoff);

#endif
