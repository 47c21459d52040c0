/*
 * span_table_abi.h: the published span table, an ABI between libmesh.so and meshd.
 *
 * The shim keeps its span metadata (one record per MiniHeap) in a memfd of its own and
 * maps it read-write; meshd maps the same memfd read-only and must treat every byte as
 * hostile (the table may be torn, stale, or forged). Layout of the memfd:
 *
 *   offset 0                      struct mesh_span_table_header  (one page)
 *   offset MESH_TABLE_HEADER_SIZE record[0] .. record[max_records-1], each
 *                                 struct mesh_span_record (MESH_SPAN_RECORD_SIZE bytes)
 *   mesh_regions_offset(max)      region generation[0] .. [mesh_region_count(max) - 1],
 *                                 one uint32_t per MESH_REGION_RECORDS records
 *
 * record[0] is never used: record id 0 means "no span" everywhere.
 * Only records [1, record_hwm) have ever been used; the rest of the file is a hole.
 *
 * Region generations say where the table changed, so that meshd rereads only that:
 * generation[i] covers records [i * MESH_REGION_RECORDS, (i + 1) * MESH_REGION_RECORDS) and
 * the shim adds 1 to it (release order) after every change of such a record that a reader
 * of the table counts (state, class, bitmap, flags, kernel_io, span_pages).  A reader that
 * reads generation[i] (acquire) and then the region's records sees every change whose
 * increment it saw; a later change makes the generation differ from the one it read.
 * They are the process's word like everything here: a process whose generations lie only
 * keeps meshd's view of its own heap stale.
 *
 * Any change to a struct here bumps MESH_SPAN_TABLE_VERSION.
 */
#ifndef MESH_PROTO_SPAN_TABLE_ABI_H
#define MESH_PROTO_SPAN_TABLE_ABI_H

#include <stdint.h>

#define MESH_SPAN_TABLE_MAGIC   0x4d45534854424c31ull /* "MESHTBL1" */
#define MESH_SPAN_TABLE_VERSION 4u

#define MESH_PAGE_SHIFT        12
#define MESH_PAGE_SIZE         (1u << MESH_PAGE_SHIFT)
#define MESH_MAX_SPAN_OBJECTS  256u   /* one 256-bit occupancy bitmap per span */
#define MESH_BITMAP_WORDS      (MESH_MAX_SPAN_OBJECTS / 64)
#define MESH_MAX_VIRTUAL_SPANS 4u     /* virtual spans one physical span may back */
#define MESH_MAX_CLASSES       48u
#define MESH_TABLE_HEADER_SIZE 4096u
#define MESH_SPAN_RECORD_SIZE  96u
#define MESH_REGION_SHIFT      10u
#define MESH_REGION_RECORDS    (1u << MESH_REGION_SHIFT) /* records per region generation */
/* The most records a table holds, in whole regions: the whole table, generations included,
 * stays below 4 GiB (Register's table_bytes is 32-bit).  The shim sizes its table to its
 * arena (one record per arena page at most), never larger, and meshd reads a table claiming
 * more only this far (which also bounds what one scan can cost). */
#define MESH_MAX_RECORDS                                                                    \
    ((uint32_t)((0xffffffffu - MESH_TABLE_HEADER_SIZE) /                                   \
                (MESH_REGION_RECORDS * MESH_SPAN_RECORD_SIZE + sizeof(uint32_t)))           \
     << MESH_REGION_SHIFT)

/* Region generations a table of max_records records has, where they are, and the table's
 * size in bytes. */
static inline uint32_t mesh_region_count(uint32_t max_records)
{
    return (uint32_t)(((uint64_t)max_records + MESH_REGION_RECORDS - 1) >> MESH_REGION_SHIFT);
}

static inline uint64_t mesh_regions_offset(uint32_t max_records)
{
    return MESH_TABLE_HEADER_SIZE + (uint64_t)max_records * MESH_SPAN_RECORD_SIZE;
}

static inline uint64_t mesh_table_bytes(uint32_t max_records)
{
    return mesh_regions_offset(max_records) + (uint64_t)mesh_region_count(max_records) * sizeof(uint32_t);
}

/* Record states.  FREE records are unused; meshd considers only DETACHED ones. */
enum mesh_span_state {
    MESH_SPAN_FREE = 0,
    MESH_SPAN_ATTACHED = 1,      /* owned by one thread's local heap */
    MESH_SPAN_DETACHED = 2,      /* in the global heap, has free slots */
    MESH_SPAN_DETACHED_FULL = 3, /* in the global heap, every slot allocated */
    MESH_SPAN_LARGE = 4,         /* one large object, size_class == 0 */
};

/*
 * Record flags.  KERNEL_HELD: part of the span was handed to the kernel for a hold that
 * outlives the system call (io_uring registered buffers or buffer ring, Linux AIO,
 * vmsplice); the kernel may read or write the span's physical pages behind any mapping,
 * so the span is never meshed, as source or destination, until it is freed (the flag is
 * sticky: records are zeroed when reused).  meshd skips such spans.
 */
#define MESH_SPAN_FLAG_KERNEL_HELD 0x01u

/*
 * One MiniHeap.  Invariants (shim side, under the owning class lock):
 *   capacity == class span bytes / object size <= MESH_MAX_SPAN_OBJECTS
 *   bit i of bitmap set <=> slot i is allocated to the program or held in the owning
 *                           thread's shuffle vector (ATTACHED spans only)
 *   virt_page[0] == phys_page until the span is meshed; virt_count >= 1
 *   generation changes every time the record is freed, so a stale reader can tell.
 */
struct mesh_span_record {
    uint64_t bitmap[MESH_BITMAP_WORDS];         /* occupancy; updated atomically */
    uint32_t phys_page;                         /* arena page of the physical span */
    uint32_t virt_page[MESH_MAX_VIRTUAL_SPANS]; /* arena pages of its virtual spans */
    uint32_t span_pages;                        /* pages per span (large: object pages) */
    uint32_t generation;
    uint32_t owner;                             /* thread heap id when ATTACHED (DETACHED:
                                                 * the heap that released it, a shim-private
                                                 * hint; 0 for a span kept empty) */
    uint16_t capacity;                          /* objects per span (large: 1) */
    uint8_t size_class;                         /* 0 for large objects */
    uint8_t state;                              /* enum mesh_span_state */
    uint8_t virt_count;
    uint8_t flags;
    uint16_t reserved0;
    uint32_t list_next, list_prev;              /* shim-private list links */
    /* Records of spans meshed into this one: kept (state FREE, not reused) until this span
     * is freed, so a free that looked one up just before the mesh finds it harmlessly. */
    uint32_t absorbed[MESH_MAX_VIRTUAL_SPANS - 1];
    /* System calls in flight now that may hold the span's pages (a read into it, which
     * pins its pages for O_DIRECT); the span is not meshed while it is non-zero. */
    uint32_t kernel_io;
};
_Static_assert(sizeof(struct mesh_span_record) == MESH_SPAN_RECORD_SIZE,
               "span record is an ABI: 96 bytes");
_Static_assert(MESH_SPAN_RECORD_SIZE % 32 == 0, "a record's bitmap never straddles a cache line");

/* Word i of the mask of a record's slot bits: bit k stands for slot i * 64 + k, a slot only
 * below capacity; bits above it are not slots (meshd ignores them, the shim never sets them). */
static inline uint64_t mesh_bitmap_valid_word(unsigned capacity, unsigned i)
{
    unsigned lo = i * 64;
    if (capacity <= lo)
        return 0;
    if (capacity - lo >= 64)
        return ~0ull;
    return (1ull << (capacity - lo)) - 1;
}

struct mesh_size_class_info {
    uint32_t object_size;
    uint16_t span_pages;
    uint16_t capacity;
};

/* Why the shim refused a requested pair (index into mesh_rejected). */
enum mesh_reject_reason {
    MESH_REJECT_BAD_SPAN = 0,    /* id out of range, or not a small span */
    MESH_REJECT_SAME_SPAN = 1,   /* destination == source */
    MESH_REJECT_NOT_DETACHED = 2, /* attached to a thread (or freed) meanwhile */
    MESH_REJECT_CLASS = 3,       /* different size classes */
    MESH_REJECT_OVERLAP = 4,     /* live offsets overlap now */
    MESH_REJECT_ALIASES = 5,     /* would exceed MESH_MAX_VIRTUAL_SPANS */
    MESH_REJECT_BUDGET = 6,      /* mapping budget (vm.max_map_count) reached */
    MESH_REJECT_BARRIER = 7,     /* no safe write barrier in the process, or protecting failed */
    MESH_REJECT_KERNEL_HELD = 8, /* the kernel holds pages of either span (kernel_hold.h) */
    MESH_REJECT_REASONS = 9
};

/* A reason's name in meshd's log and metric labels.  The switch names every reason, so a
 * new one without a name is a -Wswitch error; "unknown" for a value out of range. */
static inline const char *mesh_reject_reason_name(unsigned reason)
{
    switch ((enum mesh_reject_reason)reason) {
    case MESH_REJECT_BAD_SPAN: return "bad_span";
    case MESH_REJECT_SAME_SPAN: return "same_span";
    case MESH_REJECT_NOT_DETACHED: return "not_detached";
    case MESH_REJECT_CLASS: return "class";
    case MESH_REJECT_OVERLAP: return "overlap";
    case MESH_REJECT_ALIASES: return "aliases";
    case MESH_REJECT_BUDGET: return "budget";
    case MESH_REJECT_BARRIER: return "barrier";
    case MESH_REJECT_KERNEL_HELD: return "kernel_held";
    case MESH_REJECT_REASONS: break;
    }
    return "unknown";
}

/* counters.barrier_kind: the write barrier the process uses for meshing. */
enum mesh_barrier_state {
    MESH_BARRIER_STATE_UNKNOWN = 0, /* not chosen yet (no meshing asked for), or an old shim */
    MESH_BARRIER_STATE_UFFD = 1,    /* userfaultfd write-protect: kernel writes wait */
    MESH_BARRIER_STATE_MPROTECT = 2, /* mprotect, opted into: kernel writes may see EFAULT */
    MESH_BARRIER_STATE_NONE = 3,    /* no safe barrier: the process refuses to be meshed */
};

/* Counters the shim publishes; monotonic unless noted. */
struct mesh_span_table_counters {
    uint64_t spans_created;
    uint64_t large_allocs;
    uint64_t heap_pages;       /* physical pages of live spans now (not monotonic) */
    uint64_t dirty_pages;      /* freed pages not yet returned to the OS (not monotonic) */
    uint64_t released_pages;   /* pages returned with punch hole */
    uint64_t meshes;           /* pairs meshed */
    uint64_t mesh_released_pages; /* physical pages released by meshing */
    uint64_t barrier_ns_total; /* time writers could be blocked by mesh barriers */
    uint64_t barrier_ns_max;
    uint64_t mesh_rejected[MESH_REJECT_REASONS];
    uint64_t map_breaks;       /* kernel mappings meshing added now (not monotonic) */
    uint64_t map_limit;        /* the most map_breaks may reach; 0: not known yet */
    uint64_t refill_bytes;     /* free slots handed to threads, in bytes: allocation volume */
    uint64_t retired_pages;    /* alias pages whose identity mapping could not be restored */
    uint64_t barrier_kind;     /* enum mesh_barrier_state (not monotonic) */
    uint64_t reserved[1];
};
_Static_assert(sizeof(struct mesh_span_table_counters) == 24 * sizeof(uint64_t),
               "counters are an ABI: 24 words");

struct mesh_span_table_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;      /* MESH_TABLE_HEADER_SIZE */
    uint32_t page_size;
    uint32_t record_size;      /* MESH_SPAN_RECORD_SIZE */
    uint32_t max_records;
    uint32_t record_hwm;       /* records [1, record_hwm) have been used */
    uint64_t arena_bytes;
    int32_t pid;
    uint32_t class_count;
    struct mesh_size_class_info classes[MESH_MAX_CLASSES];
    struct mesh_span_table_counters counters;
};
_Static_assert(sizeof(struct mesh_span_table_header) <= MESH_TABLE_HEADER_SIZE,
               "span table header fits its page");

#endif
