/*
 * registry.h: the shim processes meshd knows, each with a read-only view of its span table.
 *
 * A span table is hostile input (proto/span_table_abi.h): the process that owns it keeps
 * changing it, and a malicious one may forge or truncate it.  So the header is validated
 * once at registration and the class table copied out; afterwards every read goes through
 * process_scan(), which snapshots each record once, checks it against the copied class
 * table, and fails the scan if the file shrank (SIGBUS on the mapped header page, a short
 * pread() of the records).  Only the header page is mapped: records are read with pread()
 * into meshd's own buffer, skipping holes, so a table that is mostly hole costs meshd no
 * shared memory and little time.
 */
#ifndef MESHD_REGISTRY_H
#define MESHD_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hold_stats.h"
#include "policy.h"
#include "span_table_abi.h"

struct conn;
struct round;
struct table;

struct process {
    pid_t pid;
    uid_t uid;
    char exe[256];
    char name[128]; /* the name it was started as (Register.name, else exe's last component) */
    struct conn *conn; /* the shim's control connection */
    int fd;             /* the span-table memfd: records are read from it with pread() */
    int pidfd;          /* the process that connected (peer.h), or -1 */
    const uint8_t *map; /* the header page, read only through process_scan() and registry.c */
    size_t map_bytes;
    uint32_t max_records; /* records the file held at registration, clamped by the header's claim */
    uint64_t regions_offset; /* where the header's claim puts the region generations */
    unsigned class_count;
    struct mesh_size_class_info classes[MESH_MAX_CLASSES]; /* copied and checked at register */
    dev_t table_dev;     /* the memfd's identity: registrations of one table share its */
    ino_t table_ino;     /* summary (summary.h) */
    struct table *summary;
    struct round *round; /* the meshing round in flight, owned by rounds.c; NULL if none */
    struct policy_proc policy; /* policy.c's state for this process (policy.h) */
    char refused[256];   /* why the process refuses to be meshed (its MeshReply's word, made
                          * printable); "": it does not.  No automatic round while set. */
    /* Barrier holds of its rounds (hold_stats.h), summed from the replies, clamped by
     * rounds.c; the longest, from barrier_ns_max. */
    uint64_t holds;
    uint64_t hold_us_log2[HOLD_BUCKETS];
    uint64_t holds_over_1ms; /* of holds, those over 1 ms */
    uint64_t hold_ns_max;
    struct process *next;
};

/* One record as seen at one instant, checked: small spans have 1 <= cls <= class_count
 * and bits only below their class's capacity. */
struct span_view {
    uint32_t id;
    uint8_t state; /* enum mesh_span_state, never FREE */
    uint8_t cls;   /* 1-based; 0 for LARGE */
    uint8_t virt_count;
    uint8_t kernel_held; /* the shim says the kernel holds its pages: never a candidate */
    uint16_t live; /* popcount(bitmap) */
    uint32_t span_pages;
    uint32_t phys_page; /* as the table says: an ordering hint for the mesher, nothing more */
    uint64_t bitmap[MESH_BITMAP_WORDS];
};

typedef void (*span_fn)(const struct span_view *v, void *arg);

/* The one test of a mesh candidate, shared by the policy's count (summary.c) and the mesher
 * (mesher.c), so that the policy never counts spans the mesher will not use: a detached
 * small span with live objects, not held by the kernel, at most `cutoff` full. */
static inline int span_is_candidate(const struct span_view *v, const struct process *p, double cutoff)
{
    return v->state == MESH_SPAN_DETACHED && v->cls != 0 && v->live > 0 && !v->kernel_held &&
           (double)v->live <= cutoff * (double)p->classes[v->cls - 1].capacity;
}

/* Validates and maps the table behind fd and adds the process; fd and pidfd (-1: none) are
 * always consumed.  Returns NULL with *why set when the table is unacceptable. */
struct process *registry_add(int fd, int pidfd, pid_t pid, uid_t uid, const char *exe,
                             const char *name, struct conn *conn, const char **why);
void registry_remove(struct process *p);
struct process *registry_find(pid_t pid);
struct process *registry_first(void);
size_t registry_count(void);
size_t registry_count_uid(uid_t uid);

/* Calls fn for every non-FREE valid record; counters gets the header's counters.
 * Returns -1 if the table could not be read (file shrunk under the mapping). */
int process_scan(struct process *p, struct mesh_span_table_counters *counters, span_fn fn,
                 void *arg);
/* The two halves of process_scan, for a scan done in slices: the header's counters (if
 * counters) and the number of records worth reading (if hwm), or -1; then fn for the valid
 * records in [from, to), or -1. */
int process_header(struct process *p, struct mesh_span_table_counters *counters, uint32_t *hwm);
int process_scan_records(struct process *p, uint32_t from, uint32_t to, span_fn fn, void *arg);
/* The generations of regions [0, count) (span_table_abi.h) into gens: how many the file
 * holds (fewer than count, or 0, when it is shorter than its header says or unreadable: the
 * rest are unknown).  Never fails: a region of unknown generation is just read again. */
uint32_t process_regions(struct process *p, uint32_t count, uint32_t *gens);
/* Just the header's counters. */
int process_counters(struct process *p, struct mesh_span_table_counters *counters);
/* pages * MESH_PAGE_SIZE, saturating: counters come from the table and may be anything. */
uint64_t pages_to_bytes(uint64_t pages);
/* Installs the SIGBUS handler process_scan() relies on. */
int registry_init(void);

#endif
