/* registry.c: registered processes, validation of their span tables, and their stats. */
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io_full.h"
#include "printable.h"

#define TABLE_MAX_BYTES ((size_t)mesh_table_bytes(MESH_MAX_RECORDS))
/* Largest span a class may claim: the shim uses at most 32 pages. */
#define CLASS_MAX_SPAN_PAGES 256u

static struct process *processes;
static size_t nprocesses;

/* ---- reading shared memory ------------------------------------------------------------ */

/* Where a SIGBUS while reading a table (its file was truncated) jumps back to; meshd is
 * single-threaded, so one slot is enough. */
static sigjmp_buf *volatile read_escape;

static void on_sigbus(int sig)
{
    if (read_escape)
        siglongjmp(*read_escape, 1);
    /* Not ours: die of it as if there were no handler. */
    signal(sig, SIG_DFL);
    raise(sig);
}

int registry_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigbus;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGBUS, &sa, NULL);
}

/* Copies n bytes (a multiple of 8, both sides 8-aligned) reading each word exactly once,
 * so a check made on the copy still holds when the copy is used. */
static void copy_words(void *dst, const uint8_t *src, size_t n)
{
    uint64_t *d = dst;
    const uint64_t *s = (const uint64_t *)(const void *)src;
    for (size_t i = 0; i < n / 8; i++)
        d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}

static int guarded_copy(void *dst, const uint8_t *src, size_t n)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 1)) {
        read_escape = NULL;
        return -1;
    }
    read_escape = &env;
    copy_words(dst, src, n);
    read_escape = NULL;
    return 0;
}

/* ---- registration ----------------------------------------------------------------------- */

static const char *check_header(const struct mesh_span_table_header *h, size_t file_bytes,
                                struct process *p)
{
    if (h->magic != MESH_SPAN_TABLE_MAGIC)
        return "bad span table magic";
    if (h->version != MESH_SPAN_TABLE_VERSION)
        return "unsupported span table version";
    if (h->header_size != MESH_TABLE_HEADER_SIZE || h->record_size != MESH_SPAN_RECORD_SIZE ||
        h->page_size != MESH_PAGE_SIZE)
        return "span table layout does not match this meshd";
    if (h->class_count == 0 || h->class_count > MESH_MAX_CLASSES)
        return "bad size class count";
    for (unsigned c = 0; c < h->class_count; c++) {
        const struct mesh_size_class_info *ci = &h->classes[c];
        if (ci->object_size == 0 || ci->span_pages == 0 || ci->span_pages > CLASS_MAX_SPAN_PAGES ||
            ci->capacity == 0 || ci->capacity > MESH_MAX_SPAN_OBJECTS ||
            (uint64_t)ci->capacity * ci->object_size > (uint64_t)ci->span_pages * MESH_PAGE_SIZE)
            return "bad size class table";
    }
    /* Records beyond what the file held at registration are never read. */
    uint64_t fit = (file_bytes - MESH_TABLE_HEADER_SIZE) / MESH_SPAN_RECORD_SIZE;
    p->max_records = (uint32_t)(h->max_records < fit ? h->max_records : fit);
    /* The region generations are where the header's claim puts them: in a file shorter
     * than the claim they are missing (read as unknown, process_regions). */
    p->regions_offset = mesh_regions_offset(h->max_records);
    p->class_count = h->class_count;
    memcpy(p->classes, h->classes, sizeof p->classes);
    return NULL;
}

/* exe and name are only shown to people: keep them short and printable so they cannot
 * drive a terminal. */
static void copy_shown(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < cap; i++)
        dst[i] = printable_or_mark(src[i]);
    dst[i] = '\0';
}

struct process *registry_add(int fd, int pidfd, pid_t pid, uid_t uid, const char *exe,
                             const char *name, struct conn *conn, const char **why)
{
    struct stat st;
    struct process *p = NULL;
    void *map = MAP_FAILED;
    size_t bytes = 0;
    /* Only memfds (and other shmem files) can have seals, and F_GET_SEALS asks no
     * filesystem: checked first, because fstat() of a file on FUSE or NFS can block the
     * whole daemon. */
    *why = "span table is not a memfd";
    if (fcntl(fd, F_GET_SEALS) < 0)
        goto fail;
    *why = "cannot read the span table";
    if (fstat(fd, &st) != 0)
        goto fail;
    *why = "span table is not a regular file of a plausible size";
    if (!S_ISREG(st.st_mode) || st.st_size < (off_t)MESH_TABLE_HEADER_SIZE)
        goto fail;
    bytes = (uint64_t)st.st_size < TABLE_MAX_BYTES ? (size_t)st.st_size : TABLE_MAX_BYTES;
    /* Only the header is mapped; records are read with pread() (see process_scan). */
    *why = "cannot map the span table";
    map = mmap(NULL, MESH_TABLE_HEADER_SIZE, PROT_READ, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (map == MAP_FAILED)
        goto fail;
    p = calloc(1, sizeof *p);
    if (!p)
        goto fail;
    struct mesh_span_table_header h;
    *why = "span table shrank while being read";
    _Static_assert(sizeof h % 8 == 0, "header copies by words");
    if (guarded_copy(&h, map, sizeof h) != 0)
        goto fail;
    if ((*why = check_header(&h, bytes, p)) != NULL)
        goto fail;
    p->fd = fd;
    p->pidfd = pidfd;
    p->table_dev = st.st_dev;
    p->table_ino = st.st_ino;
    p->pid = pid;
    p->uid = uid;
    copy_shown(p->exe, sizeof p->exe, exe);
    /* A shim from before Register.name sends none: exe's last component stands in. */
    if (!name || !*name) {
        const char *slash = strrchr(p->exe, '/');
        name = slash ? slash + 1 : p->exe;
    }
    copy_shown(p->name, sizeof p->name, name);
    p->conn = conn;
    p->map = map;
    p->map_bytes = MESH_TABLE_HEADER_SIZE;
    p->next = processes;
    processes = p;
    nprocesses++;
    return p;
fail:
    free(p);
    if (map != MAP_FAILED)
        munmap(map, MESH_TABLE_HEADER_SIZE);
    close(fd);
    if (pidfd >= 0)
        close(pidfd);
    return NULL;
}

void registry_remove(struct process *p)
{
    for (struct process **pp = &processes; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            nprocesses--;
            break;
        }
    }
    munmap((void *)p->map, p->map_bytes);
    close(p->fd);
    if (p->pidfd >= 0)
        close(p->pidfd);
    free(p);
}

struct process *registry_find(pid_t pid)
{
    for (struct process *p = processes; p; p = p->next)
        if (p->pid == pid)
            return p;
    return NULL;
}

struct process *registry_first(void) { return processes; }

size_t registry_count(void) { return nprocesses; }

size_t registry_count_uid(uid_t uid)
{
    size_t n = 0;
    for (struct process *p = processes; p; p = p->next)
        n += p->uid == uid;
    return n;
}

/* ---- scanning ---------------------------------------------------------------------------- */

/* Fills v from a snapshot r; 0 if the record is FREE or makes no sense (then it is skipped). */
static int view_record(const struct process *p, uint32_t id, const struct mesh_span_record *r,
                       struct span_view *v)
{
    v->id = id;
    v->state = r->state;
    v->phys_page = r->phys_page;
    v->virt_count = r->virt_count < MESH_MAX_VIRTUAL_SPANS ? r->virt_count : MESH_MAX_VIRTUAL_SPANS;
    v->kernel_held = (r->flags & MESH_SPAN_FLAG_KERNEL_HELD) || r->kernel_io != 0;
    switch (r->state) {
    case MESH_SPAN_LARGE:
        v->cls = 0;
        v->span_pages = r->span_pages;
        v->live = 1;
        memset(v->bitmap, 0, sizeof v->bitmap);
        return 1;
    case MESH_SPAN_ATTACHED:
    case MESH_SPAN_DETACHED:
    case MESH_SPAN_DETACHED_FULL:
        break;
    default:
        return 0;
    }
    if (r->size_class == 0 || r->size_class > p->class_count)
        return 0;
    const struct mesh_size_class_info *ci = &p->classes[r->size_class - 1];
    v->cls = r->size_class;
    v->span_pages = ci->span_pages;
    unsigned live = 0;
    for (unsigned w = 0; w < MESH_BITMAP_WORDS; w++) {
        /* Bits at or above the class's capacity are not slots: ignore them. */
        v->bitmap[w] = r->bitmap[w] & mesh_bitmap_valid_word(ci->capacity, w);
        live += (unsigned)__builtin_popcountll(v->bitmap[w]);
    }
    v->live = (uint16_t)live;
    return 1;
}

/* Records are read in chunks of this many bytes into one buffer meshd owns. */
#define SCAN_CHUNK (512u * MESH_SPAN_RECORD_SIZE)

/* Reads [off, off + len) of the table into buf: 0, or -1 if the file shrank or failed. */
static int read_table(int fd, uint8_t *buf, size_t len, off_t off)
{
    return mesh_io_full(fd, MESH_IO_PREAD, buf, len, off, 0) == len ? 0 : -1;
}

int process_header(struct process *p, struct mesh_span_table_counters *counters, uint32_t *hwm)
{
    const struct mesh_span_table_header *h = (const void *)p->map;
    sigjmp_buf env;
    uint32_t n = 0;
    if (sigsetjmp(env, 1)) {
        read_escape = NULL;
        return -1;
    }
    read_escape = &env;
    if (counters)
        copy_words(counters, (const uint8_t *)&h->counters, sizeof *counters);
    if (hwm)
        n = __atomic_load_n(&h->record_hwm, __ATOMIC_ACQUIRE);
    read_escape = NULL;
    /* Records at or beyond record_hwm were never used; the rest of the bound is the file
     * as it was at registration. */
    if (hwm)
        *hwm = n < p->max_records ? n : p->max_records;
    return 0;
}

int process_scan_records(struct process *p, uint32_t from, uint32_t to, span_fn fn, void *arg)
{
    /* static: meshd is single-threaded and scans never nest. */
    static struct mesh_span_record chunk[SCAN_CHUNK / MESH_SPAN_RECORD_SIZE];
    struct span_view v;
    if (to > p->max_records)
        to = p->max_records;
    if (from < 1)
        from = 1; /* record 0 is never used */
    /* Records are read with pread(), never through a mapping: a hole then reads as zeros
     * (FREE records) without meshd faulting in a page of it, and holes are skipped
     * altogether with SEEK_DATA.  Each record is copied exactly once, then checked. */
    off_t end = (off_t)MESH_TABLE_HEADER_SIZE + (off_t)to * MESH_SPAN_RECORD_SIZE;
    off_t off = (off_t)MESH_TABLE_HEADER_SIZE + (off_t)from * MESH_SPAN_RECORD_SIZE;
    int seek_data = 1;
    while (off < end) {
        if (seek_data) {
            off_t data = lseek(p->fd, off, SEEK_DATA);
            if (data < 0 && errno == ENXIO)
                break; /* nothing but hole from here on */
            if (data < 0)
                seek_data = 0; /* not supported: read the holes as zeros */
            else if (data > off)
                off = data - (data - (off_t)MESH_TABLE_HEADER_SIZE) % MESH_SPAN_RECORD_SIZE;
            if (off >= end)
                break;
        }
        size_t len = end - off < (off_t)SCAN_CHUNK ? (size_t)(end - off) : SCAN_CHUNK;
        if (read_table(p->fd, (uint8_t *)chunk, len, off) != 0)
            return -1;
        uint32_t first = (uint32_t)((off - (off_t)MESH_TABLE_HEADER_SIZE) / MESH_SPAN_RECORD_SIZE);
        for (size_t i = 0; i < len / MESH_SPAN_RECORD_SIZE; i++)
            if (view_record(p, first + (uint32_t)i, &chunk[i], &v))
                fn(&v, arg);
        off += (off_t)len;
    }
    return 0;
}

int process_scan(struct process *p, struct mesh_span_table_counters *counters, span_fn fn,
                 void *arg)
{
    uint32_t hwm;
    if (process_header(p, counters, fn ? &hwm : NULL) != 0)
        return -1;
    return fn ? process_scan_records(p, 1, hwm, fn, arg) : 0;
}

uint32_t process_regions(struct process *p, uint32_t count, uint32_t *gens)
{
    uint32_t have = mesh_region_count(p->max_records);
    if (count > have)
        count = have;
    if (!count || p->regions_offset > (uint64_t)TABLE_MAX_BYTES)
        return 0;
    size_t got = mesh_io_full(p->fd, MESH_IO_PREAD, gens, (size_t)count * sizeof *gens,
                              (off_t)p->regions_offset, 0);
    return (uint32_t)(got / sizeof *gens);
}

uint64_t pages_to_bytes(uint64_t pages)
{
    uint64_t bytes;
    return __builtin_mul_overflow(pages, (uint64_t)MESH_PAGE_SIZE, &bytes) ? UINT64_MAX : bytes;
}

int process_counters(struct process *p, struct mesh_span_table_counters *counters)
{
    return process_scan(p, counters, NULL, NULL);
}
