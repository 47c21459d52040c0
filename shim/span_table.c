/* span_table.c: the memfd holding the published span records. */
#include "span_table.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arena.h"
#include "lock.h"
#include "sandbox.h"
#include "size_class.h"

struct mesh_span_table mesh_spans = {.file = {.fd = -1}};

static mesh_lock_t table_lock = MESH_LOCK_INIT;
static uint32_t free_list; /* ids linked through list_next; protected by table_lock */

static size_t table_bytes(void)
{
    return MESH_TABLE_HEADER_SIZE + (size_t)MESH_MAX_RECORDS * MESH_SPAN_RECORD_SIZE;
}

static void header_init(struct mesh_span_table_header *h, size_t arena_bytes)
{
    h->magic = MESH_SPAN_TABLE_MAGIC;
    h->version = MESH_SPAN_TABLE_VERSION;
    h->header_size = MESH_TABLE_HEADER_SIZE;
    h->page_size = MESH_PAGE_SIZE;
    h->record_size = MESH_SPAN_RECORD_SIZE;
    h->max_records = MESH_MAX_RECORDS;
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
 * span_table.h); the shim's writable mapping must exist already.  If the kernel cannot,
 * the descriptor is dropped: an unsealed table is never handed to anyone. */
static void seal_read_only(struct mesh_fd *file)
{
    if (file->fd < 0)
        return;
    int saved = errno;
    if (fcntl(file->fd, F_ADD_SEALS,
              F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
        mesh_fd_drop(file);
    errno = saved;
}

int mesh_span_table_init(size_t arena_bytes)
{
    size_t bytes = table_bytes();
    void *p = MAP_FAILED;
    struct mesh_fd file = MESH_FD_NONE;
    mesh_fd_adopt(&file, mesh_memfd_create("libmesh-spans", MFD_ALLOW_SEALING));
    if (file.fd >= 0 && ftruncate(file.fd, (off_t)bytes) == 0)
        p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, file.fd, 0);
    if (p == MAP_FAILED) {
        mesh_fd_drop(&file);
        p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
        if (p == MAP_FAILED)
            return -1;
    }
    mesh_spans.shared = file.fd >= 0;
    seal_read_only(&file);
    header_init(p, arena_bytes);
    mesh_spans.records = (struct mesh_span_record *)((uint8_t *)p + MESH_TABLE_HEADER_SIZE);
    mesh_spans.file = file;
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
        if (id >= MESH_MAX_RECORDS)
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

void mesh_span_table_lock(void) { mesh_lock(&table_lock); }
void mesh_span_table_unlock(void) { mesh_unlock(&table_lock); }
void mesh_span_table_lock_reset(void) { mesh_lock_reset(&table_lock); }

/* One range: the header page and every record ever used. */
struct table_iter {
    int done;
};

static int table_next(void *ctx, uint32_t *first, uint32_t *count)
{
    struct table_iter *it = ctx;
    if (it->done)
        return 0;
    it->done = 1;
    size_t used = MESH_TABLE_HEADER_SIZE + (size_t)mesh_spans.header->record_hwm * MESH_SPAN_RECORD_SIZE;
    *first = 0;
    *count = (uint32_t)(mesh_align_up(used, MESH_PAGE_SIZE) >> MESH_PAGE_SHIFT);
    return 1;
}

static void table_rewind(void *ctx) { ((struct table_iter *)ctx)->done = 0; }

int mesh_span_table_clone(void)
{
    struct table_iter it = {0};
    int rc = mesh_region_clone((uint8_t *)mesh_spans.header, table_bytes(), &mesh_spans.file,
                               "libmesh-spans", table_next, &it, table_rewind);
    if (rc == 0) {
        mesh_spans.shared = mesh_spans.file.fd >= 0;
        seal_read_only(&mesh_spans.file);
        mesh_spans.header->pid = (int32_t)getpid();
    }
    return rc;
}
