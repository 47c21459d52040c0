/*
 * span_table.h: the shim's side of the published span table (proto/span_table_abi.h).
 *
 * Records live in a memfd so meshd can map them read-only.  The memfd is sealed before it
 * is handed out (F_SEAL_FUTURE_WRITE, SHRINK, GROW, SEAL): through the descriptor meshd
 * gets, nobody can write, map writable or resize the table; only the shim's own mapping,
 * made before the seal, stays writable.  A kernel without F_SEAL_FUTURE_WRITE (< 5.1)
 * gets no descriptor at all: the table stays private and the process is not meshed.  Record ids are allocated from
 * a free list, then from record_hwm upwards; id 0 is never handed out.  A record's state
 * and bitmap are read and written with atomics because frees from any thread change them.
 */
#ifndef MESH_SPAN_TABLE_H
#define MESH_SPAN_TABLE_H

#include <stdatomic.h>
#include <stdint.h>

#include "common.h"
#include "fdutil.h"

#define MESH_MAX_RECORDS (1u << 22)

struct mesh_span_table {
    struct mesh_span_table_header *header; /* NULL until initialised */
    struct mesh_span_record *records;      /* records[0] is the unused "no span" record */
    struct mesh_fd file;                   /* sealed memfd, or fd -1 if not published */
    int shared;                            /* 1: a memfd mapping (a fork child must clone it) */
};

extern struct mesh_span_table mesh_spans;

static inline struct mesh_span_record *mesh_record(uint32_t id) { return &mesh_spans.records[id]; }

static inline unsigned mesh_record_state(const struct mesh_span_record *r)
{
    return atomic_load_explicit((_Atomic uint8_t *)&r->state, memory_order_acquire);
}

static inline void mesh_record_set_state(struct mesh_span_record *r, unsigned state)
{
    atomic_store((_Atomic uint8_t *)&r->state, (uint8_t)state);
}

/* Current bound on record ids ever used (ids >= it are certainly invalid). */
static inline uint32_t mesh_record_hwm(void)
{
    return atomic_load_explicit((_Atomic uint32_t *)&mesh_spans.header->record_hwm,
                                memory_order_acquire);
}

int mesh_span_table_init(size_t arena_bytes);
/* A zeroed record (except generation), or 0 if the table is full. */
uint32_t mesh_record_alloc(void);
/* Marks the record FREE, bumps its generation and recycles the id. */
void mesh_record_free(uint32_t id);

void mesh_span_table_lock(void);
void mesh_span_table_unlock(void);
void mesh_span_table_lock_reset(void);
/* Fork child: private copy of the table (new memfd, or private memory). */
int mesh_span_table_clone(void);

/* Counters in the published header; relaxed atomics, read by meshd and mesh_stats. */
#define MESH_COUNTER_ADD(field, n)                                                          \
    atomic_fetch_add_explicit((_Atomic uint64_t *)&mesh_spans.header->counters.field,       \
                              (uint64_t)(n), memory_order_relaxed)

#endif
