/* span_table.c: the memfd holding the published span records. */
#include "span_table.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arena.h"
#include "init.h"
#include "lock.h"
#include "sandbox.h"
#include "size_class.h"

struct mesh_span_table mesh_spans = {.publishable = 1};

static mesh_lock_t table_lock = MESH_LOCK_INIT;
static uint32_t free_list; /* ids linked through list_next; protected by table_lock */
/* Records handed out stay below this (max_records, or less once the reservation shrank:
 * mesh_span_table_shrink); protected by table_lock. */
static uint32_t record_cap = UINT32_MAX;
/* [hole_from, hole_to): bytes of the table unmapped by mesh_span_table_shrink (0, 0: none). */
static size_t hole_from, hole_to;

/* The table's mapping: whole pages (MESH_MAX_RECORDS leaves room for the rounding). */
static size_t bytes_for(uint32_t max_records)
{
    return mesh_align_up((size_t)mesh_table_bytes(max_records), MESH_PAGE_SIZE);
}

static size_t table_bytes(void) { return bytes_for(mesh_spans.header->max_records); }

/* One record per arena page and record 0, rounded up to whole regions. */
static uint32_t records_for(size_t arena_bytes)
{
    uint64_t pages = (uint64_t)(arena_bytes >> MESH_PAGE_SHIFT) + 1; /* + record 0 */
    pages = (pages + MESH_REGION_RECORDS - 1) & ~(uint64_t)(MESH_REGION_RECORDS - 1);
    return pages < MESH_MAX_RECORDS ? (uint32_t)pages : MESH_MAX_RECORDS;
}

/* Where the records and region generations of the table at p are. */
static void table_place(void *p)
{
    struct mesh_span_table_header *h = p;
    mesh_spans.records = (struct mesh_span_record *)((uint8_t *)p + MESH_TABLE_HEADER_SIZE);
    mesh_spans.regions = (uint32_t *)((uint8_t *)p + mesh_regions_offset(h->max_records));
}

static void header_init(struct mesh_span_table_header *h, size_t arena_bytes, uint32_t max_records)
{
    h->magic = MESH_SPAN_TABLE_MAGIC;
    h->version = MESH_SPAN_TABLE_VERSION;
    h->header_size = MESH_TABLE_HEADER_SIZE;
    h->page_size = MESH_PAGE_SIZE;
    h->record_size = MESH_SPAN_RECORD_SIZE;
    h->max_records = max_records;
    h->record_hwm = 1;
    h->arena_bytes = arena_bytes;
    h->pid = (int32_t)getpid();
    h->class_count = MESH_CLASS_COUNT;
    for (unsigned c = 1; c <= MESH_CLASS_COUNT; c++) {
        h->classes[c - 1].object_size = mesh_classes[c].size;
        h->classes[c - 1].span_pages = mesh_classes[c].span_pages;
        h->classes[c - 1].capacity = mesh_classes[c].capacity;
    }
}

/* Makes the table's memfd read-only for every descriptor and every later mapping (see
 * span_table.h); the shim's writable mapping must exist already.  0, or -1 if the kernel
 * cannot: an unsealed table is never handed to anyone. */
static int seal_read_only(int fd)
{
    int saved = errno;
    int rc = fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    errno = saved;
    return rc;
}

size_t mesh_span_table_reserve_bytes(size_t arena_bytes) { return bytes_for(records_for(arena_bytes)); }

int mesh_span_table_init(size_t arena_bytes)
{
    /* Private memory, no descriptor: a memfd is made only for a meshd (publish below). */
    uint32_t max_records = records_for(arena_bytes);
    void *p = mmap(NULL, bytes_for(max_records), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    header_init(p, arena_bytes, max_records);
    table_place(p);
    mesh_spans.shared = 0;
    mesh_spans.header = p;
    return 0;
}

uint32_t mesh_record_alloc(void)
{
    mesh_lock(&table_lock);
    uint32_t id = free_list;
    if (id) {
        free_list = mesh_spans.records[id].list_next;
    } else {
        id = mesh_spans.header->record_hwm;
        if (id >= mesh_spans.header->max_records || id >= record_cap)
            id = 0;
        else
            atomic_store((_Atomic uint32_t *)&mesh_spans.header->record_hwm, id + 1);
    }
    mesh_unlock(&table_lock);
    if (id) {
        struct mesh_span_record *r = &mesh_spans.records[id];
        uint32_t generation = r->generation;
        memset(r, 0, sizeof *r);
        r->generation = generation;
    }
    return id;
}

void mesh_record_free(uint32_t id)
{
    struct mesh_span_record *r = &mesh_spans.records[id];
    atomic_fetch_add((_Atomic uint32_t *)&r->generation, 1);
    mesh_record_set_state(r, MESH_SPAN_FREE);
    mesh_lock(&table_lock);
    r->list_next = free_list;
    free_list = id;
    mesh_unlock(&table_lock);
}

uint32_t mesh_span_table_shrink(size_t arena_bytes)
{
    struct mesh_span_table_header *h = mesh_spans.header;
    if (!h)
        return 0;
    mesh_lock(&table_lock);
    uint32_t cap = records_for(arena_bytes), hwm = mesh_record_hwm();
    if (cap < hwm)
        cap = hwm;
    uint32_t old_cap = record_cap < h->max_records ? record_cap : h->max_records;
    if (cap < old_cap)
        record_cap = cap;
    mesh_unlock(&table_lock);
    if (cap >= old_cap)
        return old_cap;
    /* The records between the cap and the region generations are never used: a hole in
     * the table's mapping.  The regions stay where the layout (max_records) puts them. */
    size_t from = mesh_align_up(MESH_TABLE_HEADER_SIZE + (size_t)cap * MESH_SPAN_RECORD_SIZE, MESH_PAGE_SIZE);
    size_t to = (size_t)mesh_regions_offset(h->max_records) & ~(size_t)(MESH_PAGE_SIZE - 1);
    if (to > from) {
        /* Single-threaded in effect: the program's setrlimit (rlimits.c) is the caller. */
        munmap((uint8_t *)h + from, to - from);
        hole_from = from;
        hole_to = to;
    }
    /* A later registration would copy the table at its full size, mapping the hole again,
     * which the lowered limit may not allow: the process is not registered anew (one
     * registered now goes on). */
    mesh_spans.publishable = 0;
    return cap;
}

void mesh_span_table_lock(void) { mesh_lock(&table_lock); }
void mesh_span_table_unlock(void) { mesh_unlock(&table_lock); }
void mesh_span_table_lock_reset(void) { mesh_lock_reset(&table_lock); }

/* The header and every record ever used, in whole pages. */
static size_t used_bytes(void)
{
    size_t used = MESH_TABLE_HEADER_SIZE + (size_t)mesh_record_hwm() * MESH_SPAN_RECORD_SIZE;
    return mesh_align_up(used, MESH_PAGE_SIZE);
}

/* The generations of the regions of every record ever used: [*from, *to) bytes into the
 * table, *from rounded down to a page. */
static void used_regions(size_t *from, size_t *to)
{
    *from = (size_t)mesh_regions_offset(mesh_spans.header->max_records);
    *to = *from + (size_t)mesh_region_count(mesh_record_hwm()) * sizeof(uint32_t);
    *from &= ~(size_t)(MESH_PAGE_SIZE - 1);
}

/* Two ranges of pages: used_bytes(), then used_regions(). */
struct table_iter {
    int step;
};

static int table_next(void *ctx, uint32_t *first, uint32_t *count)
{
    struct table_iter *it = ctx;
    size_t from = 0, to;
    switch (it->step++) {
    case 0:
        to = used_bytes();
        break;
    case 1:
        used_regions(&from, &to);
        break;
    default:
        return 0;
    }
    *first = (uint32_t)(from >> MESH_PAGE_SHIFT);
    *count = (uint32_t)((mesh_align_up(to, MESH_PAGE_SIZE) - from) >> MESH_PAGE_SHIFT);
    return 1;
}

/* The records' pages only (table_next's first range), for the part before a hole. */
static int records_next(void *ctx, uint32_t *first, uint32_t *count)
{
    struct table_iter *it = ctx;
    return it->step == 0 && table_next(ctx, first, count);
}

/* The regions' pages only, counted from the end of the hole. */
static int regions_next(void *ctx, uint32_t *first, uint32_t *count)
{
    struct table_iter *it = ctx;
    if (it->step == 0)
        it->step = 1;
    if (!table_next(ctx, first, count))
        return 0;
    *first -= (uint32_t)(hole_to >> MESH_PAGE_SHIFT);
    return 1;
}

int mesh_span_table_clone(void)
{
    /* A published table is shared with the parent (and its meshd): the child copies it into
     * private memory, without a descriptor, and makes its own memfd if it ever registers.
     * An unpublished one is private already (copy-on-write).  A table with a hole (the
     * reservation shrank) is copied in its two parts: mapping the hole again might be
     * more than the lowered limit allows. */
    uint8_t *table = (uint8_t *)mesh_spans.header;
    struct table_iter it = {0}, tail = {0};
    if (mesh_spans.shared && hole_to == 0 && mesh_region_clone_anon(table, table_bytes(), table_next, &it) != 0)
        return -1;
    if (mesh_spans.shared && hole_to != 0 &&
        (mesh_region_clone_anon(table, hole_from, records_next, &it) != 0 ||
         mesh_region_clone_anon(table + hole_to, table_bytes() - hole_to, regions_next, &tail) != 0))
        return -1;
    mesh_spans.shared = 0;
    mesh_spans.header->pid = (int32_t)getpid();
    return 0;
}

/* A new sealable memfd of `bytes` (moved high), mapped shared at an address of the
 * kernel's choosing in *map, its first `prefault` bytes already backed by memory.  The
 * descriptor, or -1. */
static int new_table_file(size_t bytes, size_t prefault, void **map)
{
    int saved = errno;
    if (!mesh_file_size_allowed(bytes))
        return -1; /* ulimit -f: not published (the process is not meshed), never SIGXFSZ */
    int fd = mesh_memfd_create("libmesh-spans", MFD_ALLOW_SEALING);
    if (fd >= 0)
        fd = mesh_fd_move_high(fd);
    void *p = MAP_FAILED;
    if (fd >= 0 && ftruncate(fd, (off_t)bytes) == 0)
        p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED && fd >= 0) {
        close(fd);
        fd = -1;
    }
    if (fd >= 0) {
        /* Zeros, not a copy: the table is being written by other threads right now. */
        memset(p, 0, prefault);
        *map = p;
    }
    errno = saved;
    return fd;
}

int mesh_span_table_publish(struct mesh_fd *out)
{
    *out = MESH_FD_NONE;
    if (!mesh_spans.publishable)
        return -1;
    if (mesh_sandbox_filtered_now()) {
        /* A filter is for good, and memfd_create may be fatal under it: never again. */
        mesh_spans.publishable = 0;
        return -1;
    }
    /*
     * No allocator lock is held across the file's making (memfd_create, ftruncate, mmap,
     * the page allocation of its used part): all that happens before the freeze, into a
     * mapping of its own.  Under the freeze (the invariant above: the table does not
     * change) only the used part is copied, into pages that exist already, and the copy is
     * moved over the table with one mremap, the one system call that must see the table
     * unchanged: a write after the copy but before the switch would be lost.  What the
     * table gained between the prefault and the freeze takes page faults in the copy.
     */
    size_t bytes = table_bytes();
    void *copy = NULL;
    int fd = new_table_file(bytes, used_bytes(), &copy);
    if (fd < 0)
        return -1;
    mesh_heap_freeze();
    memcpy(copy, mesh_spans.header, used_bytes());
    size_t regions_from, regions_to;
    used_regions(&regions_from, &regions_to);
    memcpy((uint8_t *)copy + regions_from, (uint8_t *)mesh_spans.header + regions_from,
           regions_to - regions_from);
    int saved = errno;
    int moved = mremap(copy, bytes, bytes, MREMAP_MAYMOVE | MREMAP_FIXED, mesh_spans.header) !=
                MAP_FAILED;
    errno = saved;
    if (moved)
        mesh_spans.shared = 1; /* a fork child must copy it from now on */
    mesh_heap_thaw();
    if (!moved) {
        munmap(copy, bytes);
        close(fd);
        return -1;
    }
    if (seal_read_only(fd) != 0) {
        /* Linux < 5.1: the table is never handed out; the process is not meshed. */
        close(fd);
        mesh_spans.publishable = 0;
        return -1;
    }
    return mesh_fd_adopt(out, fd);
}
