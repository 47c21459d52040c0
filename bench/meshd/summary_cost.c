/*
 * summary_cost: meshd's CPU for one table summary (what a policy tick, a /metrics scrape or
 * `meshctl ps` asks for) as the heap behind the table grows, through summary.c's real entry
 * points on synthetic tables.
 *
 * A heap of H bytes in one-page spans of 64-byte objects holds H / 4 KiB spans, one record
 * each.  For each size the table is made once (a memfd, filled like a real heap: every span
 * detached, half full), registered, summarised once (the first, whole scan), and then:
 *   idle:    a new summary with nothing changed in the table;
 *   changed: a new summary after CHANGED records (spread over the table) changed, as the
 *            shim changes them (bits cleared, each change published in its region's
 *            generation, span_table_abi.h).
 * Each is the median of ROUNDS summaries' CPU time (this thread's clock), in microseconds.
 *
 * Usage: summary_cost HEAP_MIB...   (e.g. 100 1024 16384 102400)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "budget.h"
#include "registry.h"
#include "summary.h"

#define ROUNDS 9
#define CHANGED 100u

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double policy_now(void) { return mono(); }

static struct event_base *base;
static int ready;

static void on_ready(struct process *p, uint64_t ctx, const struct table_summary *sum)
{
    (void)p, (void)ctx;
    if (!sum) {
        fprintf(stderr, "summary_cost: the table could not be read\n");
        exit(1);
    }
    ready = 1;
}

static const struct mesh_size_class_info cls = {.object_size = 64, .span_pages = 1, .capacity = 64};

struct table {
    int fd;
    uint8_t *map;
    size_t bytes;
    uint32_t records;
};

static struct mesh_span_record *rec(struct table *t, uint32_t id)
{
    return (struct mesh_span_record *)(t->map + MESH_TABLE_HEADER_SIZE) + id;
}

static void make(struct table *t, uint32_t records)
{
    t->records = records;
    t->fd = memfd_create("summary-cost", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    t->bytes = (size_t)mesh_table_bytes(records);
    if (t->fd < 0 || ftruncate(t->fd, (off_t)t->bytes) != 0) {
        perror("summary_cost: memfd");
        exit(1);
    }
    t->map = mmap(NULL, t->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, t->fd, 0);
    if (t->map == MAP_FAILED) {
        perror("summary_cost: mmap");
        exit(1);
    }
    struct mesh_span_table_header *h = (void *)t->map;
    h->magic = MESH_SPAN_TABLE_MAGIC;
    h->version = MESH_SPAN_TABLE_VERSION;
    h->header_size = MESH_TABLE_HEADER_SIZE;
    h->page_size = MESH_PAGE_SIZE;
    h->record_size = MESH_SPAN_RECORD_SIZE;
    h->max_records = records;
    h->record_hwm = records;
    h->class_count = 1;
    h->classes[0] = cls;
    h->counters.heap_pages = records;
    for (uint32_t id = 1; id < records; id++) {
        struct mesh_span_record *r = rec(t, id);
        r->phys_page = r->virt_page[0] = id;
        r->virt_count = 1;
        r->span_pages = 1;
        r->capacity = cls.capacity;
        r->size_class = 1;
        r->state = MESH_SPAN_DETACHED;
        r->bitmap[0] = 0x5555555555555555ull ^ id;
    }
}

/* What the shim does when it changes record id (a remote free clearing a bit): the change,
 * then its region's generation. */
static void change(struct table *t, uint32_t id)
{
    struct mesh_span_record *r = rec(t, id);
    r->bitmap[0] &= r->bitmap[0] - 1;
    if (!r->bitmap[0])
        r->bitmap[0] = 1;
    uint32_t *gens = (uint32_t *)(t->map + mesh_regions_offset(t->records));
    __atomic_fetch_add(&gens[id >> MESH_REGION_SHIFT], 1, __ATOMIC_RELEASE);
}

/* CPU seconds of one new summary of p. */
static double one_summary(struct process *p)
{
    double cpu = budget_cpu_now();
    int pending;
    ready = 0;
    if (summary_get(p, 0.5, mono(), &pending))
        return budget_cpu_now() - cpu;
    if (!pending || summary_wait(p, 1) != 0) {
        fprintf(stderr, "summary_cost: no summary\n");
        exit(1);
    }
    while (!ready)
        event_base_loop(base, EVLOOP_ONCE);
    return budget_cpu_now() - cpu;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v)
{
    qsort(v, ROUNDS, sizeof *v, by_value);
    return v[ROUNDS / 2];
}

int main(int argc, char **argv)
{
    base = event_base_new();
    if (!base || registry_init() != 0)
        return 1;
    summary_init(base, on_ready);
    printf("| heap | spans (records) | table MiB | first summary ms | idle summary us | "
           "summary after %u changes us |\n|---|---|---|---|---|---|\n", CHANGED);
    for (int a = 1; a < argc; a++) {
        unsigned long mib = strtoul(argv[a], NULL, 10);
        uint32_t records = (uint32_t)(mib * 256 + 1);
        struct table t;
        make(&t, records);
        const char *why;
        struct process *p = registry_add(dup(t.fd), -1, getpid(), 0, "bench", "bench", NULL, &why);
        if (!p) {
            fprintf(stderr, "summary_cost: %s\n", why);
            return 1;
        }
        summary_attach(p);
        double first = one_summary(p), idle[ROUNDS], changed[ROUNDS];
        for (int i = 0; i < ROUNDS; i++)
            idle[i] = one_summary(p);
        for (int i = 0; i < ROUNDS; i++) {
            for (uint32_t k = 0; k < CHANGED; k++)
                change(&t, 1 + (uint32_t)(((uint64_t)k * 2654435761u + (unsigned)i) % (records - 1)));
            changed[i] = one_summary(p);
        }
        printf("| %lu MiB | %u | %.0f | %.1f | %.0f | %.0f |\n", mib, records - 1,
               (double)t.bytes / (1 << 20), first * 1e3, median(idle) * 1e6, median(changed) * 1e6);
        fflush(stdout);
        summary_detach(p);
        registry_remove(p);
        munmap(t.map, t.bytes);
        close(t.fd);
    }
    return 0;
}
