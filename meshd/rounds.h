/*
 * rounds.h: meshing rounds, one in flight per process.
 *
 * A round plans pairs (mesher.h), sends them in one MeshRequest and waits for the
 * MeshReply without blocking the loop; the meshctl client that asked (if any) gets a
 * MeshNowReply then, or an Error if the process vanishes or does not answer in time.
 *
 * A table bigger than a slice is planned over several turns of the loop (planner.h): the
 * round is the process's from rounds_start() on (EBUSY to another, adoptable), and if its
 * table turns out unreadable meanwhile, the requester gets EIO and the process is dropped,
 * as rounds_start() would have had it done at once.
 */
#ifndef MESHD_ROUNDS_H
#define MESHD_ROUNDS_H

#include <stdint.h>

#include "registry.h"
#include "round_outcome.h"
#include "server.h"

#define ROUND_TIMEOUT_SECONDS 30

/* done is told every round's outcome (round_outcome.h). */
void rounds_init(struct event_base *base, round_done_fn done);
/* Starts a round for p on behalf of connection ctl_id (0: nobody waits; automatic: the
 * policy's decision), planned with at most pair_limit pairs of spans at most `cutoff` full
 * (the caller's: the policy's pair limit and occupancy_cutoff).
 * 0, or an errno (EBUSY: one is already running; EIO: the table could not be read; ENOMEM)
 * with nothing sent to anyone and nothing reported. */
int rounds_start(struct process *p, uint64_t ctl_id, int automatic, unsigned pair_limit, double cutoff);
/* An automatic round in flight that nobody waits for adopts ctl_id as its requester: 1 if
 * it did (meshctl mesh then gets that round's result instead of EBUSY). */
int rounds_adopt(struct process *p, uint64_t ctl_id);
void rounds_reply(struct process *p, const Mesh__MeshReply *reply);
void rounds_process_gone(struct process *p);

#endif
