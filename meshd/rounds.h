/*
 * rounds.h: meshing rounds, one in flight per process.
 *
 * A round plans pairs (mesher.h) and sends them in MeshRequests, one at a time, each
 * waiting for its MeshReply without blocking the loop.  The caller's hooks (round_outcome.h:
 * the policy's) say before each request how many pairs it may carry and how long to wait
 * before sending it, and hear each request's outcome.  The meshctl client that asked (if
 * any) gets one MeshNowReply with the round's totals, or an Error if the process vanishes
 * or does not answer a request in time (ROUND_TIMEOUT_SECONDS each).  A request whose
 * pairs were mostly refused for the mapping budget, or that says the process refuses to be
 * meshed, ends the round: the rest would be refused too.
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

/* hooks (round_outcome.h) pace every round's requests and are told their outcomes. */
void rounds_init(struct event_base *base, const struct round_hooks *hooks);
/* Starts a round for p on behalf of connection ctl_id (0: nobody waits; automatic: the
 * policy's decision), planned with at most pair_limit pairs of spans at most `cutoff` full
 * (the caller's: the policy's pair limit and occupancy_cutoff).
 * 0, or an errno (EBUSY: one is already running; EIO: the table could not be read; ENOMEM)
 * with nothing sent to anyone and nothing reported. */
int rounds_start(struct process *p, uint64_t ctl_id, int automatic, unsigned pair_limit, double cutoff);
/* An automatic round in flight that nobody waits for adopts ctl_id as its requester: 1 if
 * it did (meshctl mesh then gets that round's result instead of EBUSY; the rest of the
 * round goes out without waits). */
int rounds_adopt(struct process *p, uint64_t ctl_id);
void rounds_reply(struct process *p, const Mesh__MeshReply *reply);
void rounds_process_gone(struct process *p);

#endif
