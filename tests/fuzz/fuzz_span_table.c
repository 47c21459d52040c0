/*
 * fuzz_span_table: libFuzzer harness for meshd's reader of span tables, the shared memory a
 * hostile process controls byte for byte.  Each input becomes a memfd that goes through the
 * daemon's real entry points: registry_add() (header and class-table checks, a read-only
 * descriptor as the shim hands over), then process_stats(), process_regions() (the region
 * generations summary.c reads) and mesher_plan() (record
 * snapshots, class checks, SEEK_DATA over holes, pread of the rest) and the same plan made
 * in small steps as meshd's loop makes it (mesher_scan_*), then the same after
 * the file shrank under the registration (short reads, SIGBUS on the header page).
 *
 * Input: an 8-byte prefix, then the table's bytes from offset 0:
 *   u16 tail_pages   the file is extended by this many pages past the bytes (sparse)
 *   u16 hole_mask    bit i punches a hole at page i + 1 (records 0..511 start at page 1)
 *   u16 shrink       0: none; else the file is cut to (shrink - 1) * 512 bytes after
 *                    registration
 *   u8  cutoff       mesher occupancy cutoff, cutoff / 200 (0 .. 1.275); the plan made in
 *                    steps pairs 1 + cutoff * 3 probes a step
 *   u8  pairs        mesher max_pairs, pairs * 17 (0 .. 4335, clamped by the mesher's limit);
 *                    the plan made in steps reads 1 + pairs * 13 records a step
 * Seeds: tests/fuzz/seeds/fuzz_span_table/.  Run: make fuzz (long) or make fuzz-test (short).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mesher.h"
#include "registry.h"

#define PREFIX 8u
#define TAIL_PAGES_MAX 4096u

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return registry_init(); /* the SIGBUS escape process_scan relies on */
}

static uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* A memfd with the table bytes, the tail and the holes; -1 if the kernel refused. */
static int make_table(const uint8_t *bytes, size_t n, unsigned tail_pages, unsigned hole_mask)
{
    int fd = memfd_create("fuzz-spans", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, bytes + done, n - done);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    off_t len = (off_t)n + (off_t)(tail_pages % (TAIL_PAGES_MAX + 1)) * MESH_PAGE_SIZE;
    if (ftruncate(fd, len) != 0) {
        close(fd);
        return -1;
    }
    for (unsigned i = 0; i < 16; i++)
        if (hole_mask >> i & 1)
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)(i + 1) * MESH_PAGE_SIZE, MESH_PAGE_SIZE);
    return fd;
}

/* What the scan promises (struct span_view): a small span's class is one the header
 * declared and its bits lie below that class's capacity. */
static void check_view(const struct span_view *v, void *arg)
{
    const struct process *p = arg;
    if (v->state == MESH_SPAN_LARGE)
        return;
    if (v->cls < 1 || v->cls > p->class_count)
        __builtin_trap();
    unsigned cap = p->classes[v->cls - 1].capacity, live = 0;
    for (unsigned i = 0; i < MESH_BITMAP_WORDS * 64; i++)
        if (v->bitmap[i / 64] >> (i % 64) & 1) {
            if (i >= cap)
                __builtin_trap();
            live++;
        }
    if (live != v->live)
        __builtin_trap();
}

/* A plan never exceeds its limits and never pairs a span with itself or uses one twice. */
static void check_plan(const struct process *p, const struct mesh_plan *plan, size_t max_pairs)
{
    if (plan->npairs > max_pairs || plan->npairs > MESHER_MAX_PAIRS)
        __builtin_trap();
    for (size_t i = 0; i < plan->npairs; i++) {
        if (plan->dst[i] == plan->src[i] || plan->dst[i] >= p->max_records ||
            plan->src[i] >= p->max_records)
            __builtin_trap();
        for (size_t j = 0; j < i; j++)
            if (plan->dst[j] == plan->dst[i] || plan->dst[j] == plan->src[i] ||
                plan->src[j] == plan->dst[i] || plan->src[j] == plan->src[i])
                __builtin_trap();
    }
}

/* The same plan made as meshd's loop makes it (planner.c): `step` records at a time, then
 * the pairing `work` probes at a time.  The table does not change meanwhile, so it finds
 * the same candidates as the plan made at once. */
static void plan_in_steps(struct process *p, double cutoff, size_t max_pairs, uint32_t step,
                          size_t work, const struct mesh_plan *whole)
{
    static struct mesh_plan plan;
    struct mesher_scan *s = mesher_scan_new(p, cutoff);
    if (!s)
        return;
    int rc;
    while ((rc = mesher_scan_step(s, step)) > 0)
        ;
    if (rc == 0) {
        while (mesher_scan_pair(s, &plan, max_pairs, work) > 0)
            ;
        check_plan(p, &plan, max_pairs);
        if (whole && plan.candidates != whole->candidates)
            __builtin_trap();
    }
    mesher_scan_free(s);
}

static void read_everything(struct process *p, double cutoff, size_t max_pairs, uint32_t step,
                            size_t work)
{
    static struct mesh_plan plan;
    static uint32_t gens[MESH_MAX_RECORDS / MESH_REGION_RECORDS];
    struct mesh_span_table_counters counters;
    (void)process_scan(p, &counters, check_view, p);
    /* The region generations summary.c reads: never more than the regions asked for. */
    uint32_t hwm = 0;
    if (process_header(p, NULL, &hwm) == 0 &&
        process_regions(p, mesh_region_count(hwm), gens) > mesh_region_count(hwm))
        __builtin_trap();
    int rc = mesher_plan(p, &plan, max_pairs, cutoff);
    if (rc == 0)
        check_plan(p, &plan, max_pairs);
    plan_in_steps(p, cutoff, max_pairs, step, work, rc == 0 ? &plan : NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < PREFIX)
        return 0;
    unsigned tail = u16(data), holes = u16(data + 2), shrink = u16(data + 4);
    double cutoff = data[6] / 200.0;
    size_t max_pairs = (size_t)data[7] * 17;
    int fd = make_table(data + PREFIX, size - PREFIX, tail, holes);
    if (fd < 0)
        return 0;
    /* The shim hands meshd a read-only descriptor of its table. */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int ro = open(path, O_RDONLY | O_CLOEXEC);
    if (ro < 0) {
        close(fd);
        return 0;
    }
    const char *why = NULL;
    struct process *p = registry_add(ro, -1, 4242, 1000, "fuzz\x1b[31m", "f\x1b[0m", NULL, &why);
    if (!p) {
        if (!why)
            __builtin_trap(); /* a refusal always says why */
        close(fd);
        return 0;
    }
    /* Steps for the plan made in steps, from the same prefix bytes. */
    uint32_t step = 1u + data[7] * 13u;
    size_t work = 1u + data[6] * 3u;
    read_everything(p, cutoff, max_pairs, step, work);
    if (shrink) {
        if (ftruncate(fd, (off_t)(shrink - 1) * 512) == 0)
            read_everything(p, cutoff, max_pairs, step, work);
    }
    registry_remove(p);
    close(fd);
    return 0;
}
