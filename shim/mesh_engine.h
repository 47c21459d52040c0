/*
 * mesh_engine.h: meshing two spans without moving a pointer.
 *
 * Meshing source span S into destination D (same class, both detached, live offsets
 * disjoint), under the class lock:
 *   1. re-check everything against the bitmaps as they are now;
 *   2. write barrier: S's virtual pages read-only (barrier.h);
 *   3. copy S's live objects to the same offsets in D's physical page;
 *   4. map S's virtual pages onto D's physical page (this also lifts the barrier there);
 *   5. page map: S's virtual pages -> D; D's bitmap |= S's (taken with an exchange, so a
 *      free racing the mesh either cleared S's bit first or finds it gone and retries on
 *      D); D owns S's virtual spans; S's record is kept as a tombstone in D; punch S's
 *      physical pages;
 *   6. wake writers that waited on the barrier.
 * Each alias may split a VMA, so a pair is refused when the mappings it would add exceed
 * the budget of alias_map.h (half of vm.max_map_count); refusals are counted by reason.
 *
 * A run of pairs (one class, sources of one virtual span in rising page order a few pages
 * apart at most, distinct destinations) goes through steps 2-6 once for all its pairs:
 * one hold, two TLB flushes at most where each pair alone pays two, a write-protect per
 * stretch of neighbouring sources, a remap per stretch whose destinations are neighbours
 * too (mesh_engine.c).  A run that cannot be done whole is undone and its pairs meshed one
 * by one.
 */
#ifndef MESH_MESH_ENGINE_H
#define MESH_MESH_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#define MESH_PAIR_MESHED (-1)

/* Holds of one request: a hold is one interval during which writers to some source may
 * wait on the barrier (protect .. release), one per pair or one per run of neighbouring
 * pairs (mesh_engine.c).  us_log2[i] counts holds of [2^(i-1), 2^i) microseconds, [0]
 * those under 1 us, the last one everything longer too. */
#define MESH_HOLD_BUCKETS 24
/* Holds longer than this are counted exactly too (over_1ms): the histogram's bucket
 * [512, 1024) us cannot tell whether a p99 is under 1 ms, the per-hold latency target
 * meshd's policy is measured against (issue 13). */
#define MESH_HOLD_SLOW_NS 1000000u
struct mesh_holds {
    uint32_t count;
    uint32_t us_log2[MESH_HOLD_BUCKETS];
    uint32_t over_1ms; /* holds longer than MESH_HOLD_SLOW_NS */
    uint64_t ns_max;
};

/* mesh_mesh_pairs() (mesh.h), filling *holds (if not NULL) with the request's holds.
 * MESH_ENGINE_BACKGROUND: meshd's request on the control thread, which leaves the CPU to
 * the program between pairs (SCHED_IDLE; mesh_engine.c, "Scheduling") unless a wait
 * between pairs recently found the machine busy (mesh_engine_may_idle() is 0 then). */
#define MESH_ENGINE_BACKGROUND 1u
int mesh_engine_may_idle(void);
size_t mesh_engine_mesh(const uint32_t *pairs, size_t npairs, int *reasons, struct mesh_holds *holds,
                        unsigned flags);

/* Fork child: re-creates every alias mapping on the child's new arena file. */
int mesh_engine_restore_aliases(void);
/* Calls fn(ctx, phys, virt, pages) for every alias of the heap (a virtual span of a live
 * small span showing its physical span [phys, phys+pages) at virt), as the span table
 * says now; stops at, and returns, the first nonzero result. */
int mesh_engine_for_each_alias(int (*fn)(void *ctx, uint32_t phys, uint32_t virt, uint32_t pages), void *ctx);

#endif
