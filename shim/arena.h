/*
 * arena.h: the shared-memory arena, its page map and its page-range allocator.
 *
 * The arena is one sparse memfd of `bytes` mapped MAP_SHARED|MAP_NORESERVE at `base`;
 * arena page i is file page i until meshing remaps it.  When memfd is unavailable the arena
 * is private anonymous memory: everything works except meshing.
 *
 * The memfd is mapped a second time, never remapped, at `window`: window page i is file
 * page i, always.  Everything the shim does to the file goes through that mapping, not the
 * descriptor, so a program that closes or dup2()s over the descriptor changes nothing:
 * releasing file pages is madvise(MADV_REMOVE) on the window, and aliasing virtual pages
 * onto file pages is mremap(window + phys, 0, ...) (old_size 0 duplicates a shared
 * mapping).  So the descriptor is not needed after the two mmaps, and is closed right
 * there: the shim holds no descriptor for the arena (the mappings keep the file alive).
 *
 * Page map: one uint32 per arena page, private to the process.
 *   0                        page belongs to no span and starts no free range
 *   1 .. MESH_PAGE_FREE_TAG-1 record id of the live span holding the page (every page of a
 *                            small span; only the first page of a large span)
 *   MESH_PAGE_FREE_TAG | r   first or last page of free range r
 *
 * Free page ranges are kept in size bins, separately "dirty" (still backed by memory) and
 * "clean" (punched: known zero); dirty ones also on an age list.  Pages [hwm, total) were
 * never handed out (clean).  While a range is being punched it is "in flight": in no list,
 * its map entries 0, not in use.
 * Invariants:  used + dirty + clean + in-flight pages == hwm;  dirty_pages == sum of dirty
 * range sizes == sum over the age list;  a dirty range never touches
 * another dirty range (they coalesce), likewise clean ranges;  a clean range never
 * ends at hwm (hwm shrinks instead).
 */
#ifndef MESH_ARENA_H
#define MESH_ARENA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

#include "common.h"
#include "fdutil.h"
#include "lock.h"
#include "size_class.h"

#define MESH_PAGE_FREE_TAG 0x80000000u
#define MESH_NO_PAGE       UINT32_MAX

struct mesh_arena {
    uint8_t *base;       /* NULL until initialised */
    size_t bytes;        /* 0 until initialised, so every pointer is "outside" */
    uint32_t *pagemap;
    uint16_t *pageinfo;  /* per page: small class | page-in-span << 8; 0 = not a small span */
    uint32_t total_pages;
    int shared;          /* 1: base maps a memfd MAP_SHARED (a fork child must clone it) */
    uint8_t *window;     /* second mapping of the memfd (file page i at page i), or NULL for
                          * the anonymous fallback: then nothing can be meshed */
};

extern struct mesh_arena mesh_arena;

static inline uint32_t mesh_page_of(const void *p)
{
    return (uint32_t)(((uintptr_t)p - (uintptr_t)mesh_arena.base) >> MESH_PAGE_SHIFT);
}

static inline uint8_t *mesh_page_addr(uint32_t page)
{
    return mesh_arena.base + ((size_t)page << MESH_PAGE_SHIFT);
}

/* Page map entries are read without locks (free) while spans are made and unmade, so
 * every access is atomic (acquire/release: plain movs on x86), never a C11 data race. */
static inline uint32_t mesh_pagemap_get(uint32_t page)
{
    /* acquire: a span record published before its page-map entries (meshing) is seen */
    return __atomic_load_n(&mesh_arena.pagemap[page], __ATOMIC_ACQUIRE);
}

static inline void mesh_pagemap_put(uint32_t page, uint32_t value)
{
    __atomic_store_n(&mesh_arena.pagemap[page], value, __ATOMIC_RELEASE);
}

/*
 * Page info: a dense copy of what a small span's record says about each of its pages, so
 * the hot paths (malloc_usable_size, free) need not touch the 128-byte record:
 *   0                              the page is in no small span (free, large, unused)
 *   cls | index << 8               page `index` of a virtual span of a small span of class cls
 * Set for every page of a span's physical span when the span is created and cleared (for
 * all its virtual spans) before its pages are freed.  Meshing moves pages only between spans
 * of one class, keeping each page's index, so it never changes an entry.  Read without
 * locks like the page map; a live object's entry cannot change while it is live.
 */
#define MESH_PAGEINFO_CLASS(v) ((v) & 0xffu)
#define MESH_PAGEINFO_INDEX(v) ((unsigned)(v) >> 8)

static inline unsigned mesh_pageinfo_get(uint32_t page)
{
    return __atomic_load_n(&mesh_arena.pageinfo[page], __ATOMIC_RELAXED);
}

static inline void mesh_pageinfo_set(uint32_t page, uint32_t n, unsigned cls)
{
    for (uint32_t i = 0; i < n; i++)
        __atomic_store_n(&mesh_arena.pageinfo[page + i], (uint16_t)(cls ? cls | i << 8 : 0),
                         __ATOMIC_RELAXED);
}

/* Byte offset of p in its virtual span, from its page's info (a small span's page). */
static inline uint32_t mesh_pageinfo_offset(unsigned info, const void *p)
{
    return (uint32_t)(MESH_PAGEINFO_INDEX(info) << MESH_PAGE_SHIFT) |
           (uint32_t)((uintptr_t)p & (MESH_PAGE_SIZE - 1));
}

/* Slot of p (a slot start of a small span) from its page's info alone: the same in every
 * virtual span of a meshed span, and the span's record, a likely cache miss, is not read. */
static inline unsigned mesh_pageinfo_slot(unsigned info, const void *p)
{
    return mesh_slot_of_offset(mesh_pageinfo_offset(info, p), mesh_classes[MESH_PAGEINFO_CLASS(info)].recip);
}

static inline int mesh_in_arena(const void *p)
{
    return (uintptr_t)p - (uintptr_t)mesh_arena.base < mesh_arena.bytes;
}

/* Maps the arena; returns 0, or -1 if no memory at all could be reserved. */
int mesh_arena_init(void);

/* The arena size mesh_arena_init would choose, at most the present one, under soft limits
 * `as` (RLIMIT_AS) and `data` (RLIMIT_DATA): RLIM_INFINITY for none.  0 without an arena. */
size_t mesh_arena_bytes_within(rlim_t as, rlim_t data);

/* Shrinks the arena's reservation to `bytes` (never below its high-water mark): the top
 * of base, of the window and of the per-page arrays is unmapped and no page there is
 * handed out again, for a program that lowered its address-space or data limit
 * (rlimits.h).  The arena's size afterwards. */
size_t mesh_arena_shrink(size_t bytes);

/* Whether RLIMIT_FSIZE lets a file grow to `bytes`.  Past it, ftruncate raises SIGXFSZ,
 * which kills a program that never asked for files that big (a shell's `ulimit -f`): every
 * memfd the shim sizes asks this first, and does without the file when not. */
int mesh_file_size_allowed(size_t bytes);

/*
 * Allocates n pages whose first page is a multiple of align_pages (a power of two).
 * *zeroed tells whether the pages are known to read as zero.  MESH_NO_PAGE when the arena
 * is exhausted.  Does not touch the page map entries of the result except to clear them.
 */
uint32_t mesh_pages_alloc(uint32_t n, uint32_t align_pages, int *zeroed);
/* Returns [page, page+n) to the free ranges (dirty).  Never a system call: callers may
 * hold class locks.  The pages are punched later, by age (arena.c), from mesh_arena_poll. */
void mesh_pages_free(uint32_t page, uint32_t n);
/* Grows the allocation [page, page+n) in place to new_n pages if the pages after it are
 * free; returns 1 on success (*zeroed: the new pages are known zero). */
int mesh_pages_extend(uint32_t page, uint32_t n, uint32_t new_n, int *zeroed);
/* Returns every dirty free page to the OS; returns the number of pages released.  No
 * allocator lock may be held (it punches). */
size_t mesh_arena_trim(void);
/* The same, but no batch of punches starts once budget_ns have passed (0: no bound; at
 * least one batch is punched): a trim the program's other threads may notice (each punch
 * of a page still mapped flushes the TLB of every CPU running them) stays short, and the
 * rest waits for the next trim or its age. */
size_t mesh_arena_trim_for(uint64_t budget_ns);

/*
 * Time-based release of dirty pages (arena.c has the policy).  mesh_arena_poll is called
 * from allocation and free slow paths that hold no allocator lock: it costs one relaxed
 * load while little is dirty, else a coarse clock read, and at most every few ms (at
 * once when over the hard bound) punches what has aged, without holding the arena lock
 * across the system call.
 */
#define MESH_PURGE_DELAY_MS 1000u /* a dirty range this old (ms) may be punched */
extern _Atomic int mesh_arena_purge_armed;
void mesh_arena_purge_due(void);
static inline void mesh_arena_poll(void)
{
    if (atomic_load_explicit(&mesh_arena_purge_armed, memory_order_relaxed))
        mesh_arena_purge_due();
}
/* The clock ranges are stamped with (ms, wraps), and a pass run as if it were now_ms
 * (tests drive the ages with it); returns the pages punched. */
uint32_t mesh_arena_clock_ms(void);
size_t mesh_arena_purge_at(uint32_t now_ms);

void mesh_pagemap_set(uint32_t page, uint32_t n, uint32_t value);

/* File page `page` in the window (shared arena only). */
static inline uint8_t *mesh_window_addr(uint32_t page)
{
    return mesh_arena.window + ((size_t)page << MESH_PAGE_SHIFT);
}

/* Meshing: returns the memory of file pages [page, page+n) to the OS without touching the
 * free ranges (the virtual pages stay in use, as an alias); 0 on success. */
int mesh_arena_punch(uint32_t page, uint32_t n);
/* (Remapping virtual pages onto other file pages: alias_map.h.) */

struct mesh_arena_stats {
    uint64_t hwm_pages, dirty_pages, clean_free_pages, used_pages, released_pages;
};
void mesh_arena_stats(struct mesh_arena_stats *out);
/* Bytes of arena file pages in memory now (mincore over the window, up to hwm): what the
 * memfd's st_blocks said when the shim kept its descriptor. */
uint64_t mesh_arena_committed_bytes(void);

/* Pages [0, hwm) may be in use: read while the heap is frozen (fork's handlers). */
uint32_t mesh_arena_hwm_frozen(void);

/* Fork support: the allocator lock is taken by fork's prepare handler. */
void mesh_arena_lock(void);
void mesh_arena_unlock(void);
void mesh_arena_lock_reset(void);

/*
 * A private copy of a shared region, mapped over it at the same address: the pages listed
 * by `next_range` are copied, the rest read as zero.  next_range returns 1 and a
 * [first page, page count) range, or 0 when done.  The caller makes sure nobody writes
 * the region meanwhile: a write made after its page was copied would be lost.
 *   _memfd: into a new sealable memfd; returns its descriptor (moved high, fdutil.h; the
 *           caller closes it), or -1 (region untouched).
 *   _anon:  into private anonymous memory; 0, or -1 (region untouched).
 */
typedef int (*mesh_range_iter)(void *ctx, uint32_t *first, uint32_t *count);
int mesh_region_clone_memfd(uint8_t *base, size_t bytes, const char *name,
                            mesh_range_iter next_range, void *ctx);
int mesh_region_clone_anon(uint8_t *base, size_t bytes, mesh_range_iter next_range, void *ctx);
/* Fork child: the arena cloned into its own memfd with a new window (the descriptor closed
 * after mapping), or into anonymous memory when memfd fails (no window).  rewind restarts
 * the iteration for the second attempt.  0, or -1. */
int mesh_arena_clone(mesh_range_iter next_range, void *ctx, void (*rewind)(void *ctx));

/*
 * Fork, the fast way (fork.c): the child's arena file, made in the parent's prepare handler
 * (a sized, empty memfd, moved high; the caller closes it; or -1), filled by the parent
 * right after fork with the listed pages of the shared arena (pages the arena's file does
 * not hold stay holes; 0, or -1), and mapped by the child at base and at a new window with
 * mesh_arena_adopt (0; or -1, the arena left as it was).  The caller closes fd.
 */
int mesh_arena_snapshot_file(void);
int mesh_arena_snapshot_fill(int fd, mesh_range_iter next_range, void *ctx);
int mesh_arena_adopt(int fd);
/* Copy-on-write fork (fork_cow.h): the pages of [first, first+count) the arena's file
 * holds, read at src + page (base in the parent, whose page table entries answer mincore
 * fast; the inherited window in the child), put into the installer's file where it has
 * none.  0, or -1. */
struct mesh_page_installer;
int mesh_arena_install_present(struct mesh_page_installer *in, const uint8_t *src, uint32_t first,
                               uint32_t count);

/*
 * Fork, sharing (fork_share.h):
 *   _share_fd:   the arena's descriptor if it was kept (MESH_FORK_SHARE=1) and is still
 *                the arena's, else -1.
 *   _forget_share_fd: every fork child drops its inherited copy (its heap is no longer
 *                that file), and never shares with children of its own.
 *   _map_parent_private: fork child: base [0, hwm) becomes a private mapping of the
 *                parent's file fd (every page shared copy-on-write with the parent until
 *                either side writes it), [hwm, total) private anonymous memory (pages
 *                the parent may hand out and write unseen).  Aliases are the caller's.
 *                0, or -1 (base partly remapped: the caller copies for itself).
 *   _after_share: once sharing: no window, nothing punched for good (dropping a page of
 *                a private file mapping shows the file's page again), and clean free
 *                ranges dirty (they read zero only while the parent asks before writing).
 */
int mesh_arena_share_fd(void);
void mesh_arena_forget_share_fd(void);
int mesh_arena_map_parent_private(int fd, uint32_t hwm);
void mesh_arena_after_share(void);

/* In a fork child after mesh_arena_clone or _adopt: dirty ranges were not copied and
 * now read as zero, so they become clean. */
void mesh_arena_after_clone(void);
/* In every fork child, right after the lock reset: ranges other threads were punching
 * when the parent forked go back to the free lists. */
void mesh_arena_after_fork_child(void);

/* Debug validator: checks the free-range invariants above; returns the number of errors. */
int mesh_arena_check(void);

#endif
