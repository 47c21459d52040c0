/*
 * mesh.h: libmesh's public API.
 *
 * Preloaded, libmesh.so replaces the malloc family.  The same entry points are always
 * reachable as mesh_* (tests, and builds with MESH_NO_INTERPOSE such as sanitizer builds,
 * call these), plus a small stats and control API.
 */
#ifndef MESH_H
#define MESH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void *mesh_malloc(size_t size);
void mesh_free(void *ptr);
void *mesh_calloc(size_t nmemb, size_t size);
void *mesh_realloc(void *ptr, size_t size);
void *mesh_reallocarray(void *ptr, size_t nmemb, size_t size);
int mesh_posix_memalign(void **out, size_t alignment, size_t size);
void *mesh_aligned_alloc(size_t alignment, size_t size);
void *mesh_memalign(size_t alignment, size_t size);
void *mesh_valloc(size_t size);
void *mesh_pvalloc(size_t size);
size_t mesh_malloc_usable_size(void *ptr);
int mesh_malloc_trim(size_t pad);

struct mesh_stats {
    uint64_t heap_bytes;       /* bytes of live spans (small spans + large objects) */
    uint64_t live_bytes;       /* bytes in allocated objects, by size class */
    uint64_t dirty_bytes;      /* freed bytes still resident, kept for reuse */
    uint64_t released_bytes;   /* bytes returned to the OS so far (punched) */
    uint64_t committed_bytes;  /* arena bytes backed by memory now (mincore of file pages) */
    uint64_t spans_created;
    uint64_t large_allocs;
    uint64_t small_spans, large_objects;
    int shared_arena;          /* 1: memfd arena (meshable); 0: private fallback */
    int private_reason;        /* why private: 1 memfd_create failed, 2 a seccomp filter
                                  is active (memfd_create not tried), 3 RLIMIT_FSIZE is
                                  below the arena's size (ulimit -f); 0 when shared */
};
/* Fills *out; returns 0. */
int mesh_stats_get(struct mesh_stats *out);
/* Walks the heap (and the calling thread's own spans) and returns the number of
 * inconsistencies found (0: sound).  Call it while no other thread allocates or frees. */
int mesh_heap_check(void);
/* Returns the calling thread's cached spans to the global heap (as thread exit does). */
void mesh_thread_flush(void);
/* Always -1: the shim keeps no descriptor for the arena or the span table (kept for the
 * ABI; see docs/ALLOCATOR.md, "Descriptors"). */
int mesh_arena_fd(void);
int mesh_span_table_fd(void);

/* Meshing (normally driven by meshd).  pairs holds npairs (destination, source) span ids;
 * reasons[i] (if reasons is not NULL) receives -1 when pair i was meshed, else why not
 * (enum mesh_reject_reason in span_table_abi.h).  Every pair is re-validated first: a
 * bad pair is refused, never harmful.  Returns the number of pairs meshed. */
size_t mesh_mesh_pairs(const uint32_t *pairs, size_t npairs, int *reasons);
/* How mesh barriers hold writers back in this process: 1 userfaultfd write-protect
 * (kernel writes wait too), 2 mprotect + SIGSEGV (opted into with MESH_BARRIER=mprotect:
 * kernel writes fail with EFAULT), 3 none (no safe barrier: every pair is refused with
 * MESH_REJECT_BARRIER), 0 not chosen yet (no mesh so far). */
int mesh_mesh_barrier_kind(void);
/* Why this process refuses to be meshed (barrier kind 3), or NULL. */
const char *mesh_mesh_refusal(void);
/* Copy-on-write forks so far in this process (fork() returned at once and the child copied
 * the heap: docs/ALLOCATOR.md, "Differences from DESIGN.md"), the parent's writes held back
 * meanwhile (each put a page's bytes into the child's file first), and whether one is
 * active now (its child still copying; in a child copying its own heap lazily: that copy). */
void mesh_fork_cow_counts(uint64_t *forks_cow, uint64_t *writes_served, int *active);
/* Forks so far whose child shared the parent's pages instead of copying them
 * (MESH_FORK_SHARE=1, shim/fork_share.h); not counted in forks_cow above. */
uint64_t mesh_fork_shared_count(void);
/* In a fork child: 1 once this process's heap, a copy-on-write fork's, has been copied
 * lazily (while the child ran: shim/fork_lazy.h), counting the ancestors' too; else 0. */
uint64_t mesh_fork_lazy_count(void);
/* Span id of the span holding heap pointer p (0 if none). */
uint32_t mesh_span_of(const void *p);

#ifdef __cplusplus
}
#endif
#endif
