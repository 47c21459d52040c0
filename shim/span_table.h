/*
 * span_table.h: the shim's side of the published span table (proto/span_table_abi.h).
 *
 * Descriptors: none while no meshd is connected.  The table starts in private anonymous
 * memory.  When the control thread registers with a meshd, mesh_span_table_publish copies
 * the table into a new memfd mapped over it at the same address, seals that memfd
 * (F_SEAL_FUTURE_WRITE, SHRINK, GROW, SEAL: through the descriptor meshd gets, nobody can
 * write, map writable or resize the table; only the shim's own mapping, made before the
 * seal, stays writable), sends it and closes it.  Each registration (a meshd restart)
 * publishes a fresh copy.  A kernel without F_SEAL_FUTURE_WRITE (< 5.1) never gets a
 * descriptor, nor does a process that installed a seccomp filter before it registered
 * (memfd_create could kill it; sandbox.h): the process is not meshed.
 *
 * Invariant that makes the copy lossless: every write to the table is made
 *   (a) under a class lock, the table lock or the arena lock, or
 *   (b) inside a shared-op section of the writing thread (mesh_shared_op_begin/end,
 *       thread_heap.h): record set-up and release outside the class locks, remote frees'
 *       bitmap bits, large objects, the kernel-hold flags and counts, and the counters
 *       those paths bump, or
 *   (c) by the control thread itself (meshing), which is the thread that copies.
 * mesh_heap_freeze() quiesces (b) and then takes the locks of (a), so while it holds, the
 * table does not change and a copy followed by the remap loses nothing.  A new writer of
 * the table must keep to (a), (b) or (c).
 *
 * Record ids are allocated from
 * a free list, then from record_hwm upwards; id 0 is never handed out.  A record's state
 * and bitmap are read and written with atomics because frees from any thread change them.
 */
#ifndef MESH_SPAN_TABLE_H
#define MESH_SPAN_TABLE_H

#include <stdatomic.h>
#include <stdint.h>

#include "common.h"
#include "fdutil.h"

struct mesh_span_table {
    struct mesh_span_table_header *header; /* NULL until initialised */
    struct mesh_span_record *records;      /* records[0] is the unused "no span" record */
    uint32_t *regions;                     /* region generations (span_table_abi.h) */
    int shared;      /* 1: a published memfd mapping (a fork child must copy it) */
    int publishable; /* 0 once sealing or memfd_create proved impossible (no seal, a seccomp
                      * filter): never registered */
};

extern struct mesh_span_table mesh_spans;

static inline struct mesh_span_record *mesh_record(uint32_t id) { return &mesh_spans.records[id]; }

static inline unsigned mesh_record_state(const struct mesh_span_record *r)
{
    return atomic_load_explicit((_Atomic uint8_t *)&r->state, memory_order_acquire);
}

/* Publishes a change of record id to meshd (its region's generation, span_table_abi.h):
 * called after the change, by whoever made it.  One atomic add, on the rare paths only
 * (refill, detach, a remote free, a span born or dying, meshing), never on a malloc or a
 * local free; but threads changing records of one region share the counter, which costs
 * remote-free-heavy programs (prodcons: about 20% more CPU with 4 threads on 2 cores).
 * So only a published table counts: nobody reads the generations of a private one, and
 * a meshd reads every region of a table it has not read yet (a new registration, a fork
 * child's own), so changes made before the publication need no count.  shared changes
 * only while mesh_heap_freeze() holds every writer off (span_table.h's invariant), so a
 * writer sees the value of the table it writes. */
static inline void mesh_record_changed(uint32_t id)
{
    if (__atomic_load_n(&mesh_spans.shared, __ATOMIC_RELAXED))
        atomic_fetch_add_explicit((_Atomic uint32_t *)&mesh_spans.regions[id >> MESH_REGION_SHIFT], 1,
                                  memory_order_release);
}

static inline uint32_t mesh_record_id(const struct mesh_span_record *r)
{
    return (uint32_t)(r - mesh_spans.records);
}

static inline void mesh_record_set_state(struct mesh_span_record *r, unsigned state)
{
    atomic_store((_Atomic uint8_t *)&r->state, (uint8_t)state);
    mesh_record_changed(mesh_record_id(r));
}

/* Current bound on record ids ever used (ids >= it are certainly invalid). */
static inline uint32_t mesh_record_hwm(void)
{
    return atomic_load_explicit((_Atomic uint32_t *)&mesh_spans.header->record_hwm,
                                memory_order_acquire);
}

/* A table for an arena of arena_bytes: room for one record per arena page (every span,
 * virtual or large, holds at least one page of its own), up to MESH_MAX_RECORDS. */
int mesh_span_table_init(size_t arena_bytes);
/* Private memory the table of an arena of arena_bytes reserves (what RLIMIT_DATA counts). */
size_t mesh_span_table_reserve_bytes(size_t arena_bytes);
/* Records handed out stay below what an arena of arena_bytes needs (never below those in
 * use); the records beyond, up to the region generations, are unmapped, and the process is
 * not registered anew (a registration copies the whole table).  The record bound after. */
uint32_t mesh_span_table_shrink(size_t arena_bytes);
/* A zeroed record (except generation), or 0 if the table is full. */
uint32_t mesh_record_alloc(void);
/* Marks the record FREE, bumps its generation and recycles the id. */
void mesh_record_free(uint32_t id);

void mesh_span_table_lock(void);
void mesh_span_table_unlock(void);
void mesh_span_table_lock_reset(void);
/* Fork child: a private table with the child's pid (a published one copied into private
 * memory, no descriptor).  0, or -1. */
int mesh_span_table_clone(void);
/* Control thread, connected: the table moved into a new sealed memfd (see above); *out
 * gets its descriptor (high, identity recorded), to be sent and dropped at once.  0, or
 * -1 (no memfd, no seal, or a seccomp filter now: the table stays as it was). */
int mesh_span_table_publish(struct mesh_fd *out);

/* Counters in the published header; relaxed atomics, read by meshd and mesh_stats. */
#define MESH_COUNTER_ADD(field, n)                                                          \
    atomic_fetch_add_explicit((_Atomic uint64_t *)&mesh_spans.header->counters.field,       \
                              (uint64_t)(n), memory_order_relaxed)

#endif
