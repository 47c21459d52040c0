/* test_arena.c: the page-range allocator, page map and span table, driven directly. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "arena.h"
#include "fdutil.h"
#include "global_heap.h"
#include "pressure.h"
#include "span_table.h"

static uint64_t committed_bytes(void)
{
    struct mesh_stats st;
    mesh_stats_get(&st);
    return st.committed_bytes;
}

static void setup(void) { mesh_free(mesh_malloc(1)); /* initialise */ }

/* A line of /proc/self/maps naming `what` exists. */
static int mapped(const char *what)
{
    FILE *f = fopen("/proc/self/maps", "re");
    ck_assert_ptr_nonnull(f);
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, what) != NULL;
    fclose(f);
    return found;
}

/* Issue 9: the arena is a memfd (mapped at base and at the window) and the table is in
 * place, yet the process holds no descriptor for either. */
START_TEST(arena_is_a_memfd_without_a_descriptor)
{
    ck_assert_int_eq(mesh_arena.shared, 1);
    ck_assert_ptr_nonnull(mesh_arena.window);
    ck_assert(mapped("/memfd:libmesh-arena"));
    int fds[4];
    ck_assert_uint_eq(fds_named("libmesh-", fds, 4), 0);
    ck_assert_uint_eq(fds_named("memfd:", fds, 4), 0);
    ck_assert_int_eq(mesh_arena_fd(), -1);
    ck_assert_int_eq(mesh_span_table_fd(), -1);
    const struct mesh_span_table_header *h = mesh_spans.header;
    ck_assert_uint_eq(h->magic, MESH_SPAN_TABLE_MAGIC);
    ck_assert_uint_eq(h->version, MESH_SPAN_TABLE_VERSION);
    ck_assert_uint_eq(h->record_size, sizeof(struct mesh_span_record));
    ck_assert_int_eq(h->pid, getpid()); /* fork child (check forks) republished its pid */
    ck_assert_uint_eq(h->class_count, MESH_CLASS_COUNT);
    ck_assert_uint_ge(mesh_arena.bytes, 1ull << 30);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

/* The program's numbers (0-2 and the lowest free ones) are never the shim's. */
START_TEST(shim_descriptors_live_high)
{
    ck_assert_int_ge(mesh_fd_floor(), 3);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* the program's next number is low */
    ck_assert_int_lt(fd, mesh_fd_floor());
    close(fd);
    /* Moving closes the low number: a closed 0-2 stays closed. */
    int low = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int high = mesh_fd_move_high(low);
    ck_assert_int_ge(high, mesh_fd_floor());
    ck_assert_int_eq(fcntl(low, F_GETFD), -1);
    ck_assert_int_eq(fcntl(high, F_GETFD), FD_CLOEXEC);
    close(high);
}
END_TEST

/* Issue 11 item 5: whoever holds the descriptor meshd gets at registration can read the
 * table, never change it, not even by reopening it read-write through /proc.  The shim
 * keeps no descriptor of its own; each publication is a fresh copy it can still write. */
START_TEST(span_table_descriptor_is_read_only)
{
    struct mesh_fd table;
    ck_assert_int_eq(mesh_span_table_publish(&table), 0);
    int fd = table.fd;
    ck_assert_int_ge(fd, mesh_fd_floor());
    ck_assert_int_eq(mesh_spans.shared, 1);
    int seals = fcntl(fd, F_GET_SEALS);
    ck_assert_int_eq(seals & (F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
                     F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    size_t len = MESH_TABLE_HEADER_SIZE;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int reopened = open(path, O_RDWR | O_CLOEXEC);
    int fds[2] = {fd, reopened};
    for (int i = 0; i < 2; i++) {
        if (fds[i] < 0)
            continue;
        uint64_t junk = 0;
        ck_assert_int_eq(pwrite(fds[i], &junk, sizeof junk, 0), -1);
        ck_assert_int_eq(errno, EPERM);
        ck_assert(mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0) == MAP_FAILED);
        ck_assert_int_eq(errno, EPERM);
        ck_assert_int_eq(ftruncate(fds[i], 0), -1);
        ck_assert_int_eq(fallocate(fds[i], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), -1);
        ck_assert_int_eq(fcntl(fds[i], F_ADD_SEALS, F_SEAL_WRITE), -1); /* no seal can be undone or added */
        /* Read-only mappings work, and mprotect cannot make them writable. */
        const struct mesh_span_table_header *h = mmap(NULL, len, PROT_READ, MAP_SHARED, fds[i], 0);
        ck_assert(h != MAP_FAILED);
        ck_assert_uint_eq(h->magic, MESH_SPAN_TABLE_MAGIC);
        ck_assert_int_eq(mprotect((void *)h, len, PROT_READ | PROT_WRITE), -1);
        munmap((void *)h, len);
    }
    if (reopened >= 0)
        close(reopened);
    /* A reader's mapping follows the shim's writes: it is the same memory. */
    const struct mesh_span_table_header *view = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    ck_assert(view != MAP_FAILED);
    mesh_fd_drop(&table);
    /* The shim's own mapping, made before the seal, still writes. */
    uint64_t hwm = mesh_spans.header->record_hwm;
    uint32_t id = mesh_record_alloc();
    ck_assert_uint_ne(id, 0);
    ck_assert_uint_ge(mesh_spans.header->record_hwm, hwm);
    ck_assert_uint_eq(view->record_hwm, mesh_spans.header->record_hwm);
    munmap((void *)view, len);
    mesh_record_free(id);
    int left[4];
    ck_assert_uint_eq(fds_named("libmesh-", left, 4), 0);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

/* The shim releases pages through the window: with no descriptor of its own, a file the
 * program has open at any number is never punched, and released pages read as zero. */
START_TEST(release_never_uses_a_descriptor)
{
    static uint8_t data[1 << 20];
    int file = patterned_temp_file(data, sizeof data, 7);
    int fds[4];
    ck_assert_uint_eq(fds_named("libmesh-", fds, 4), 0);
    int z;
    struct mesh_arena_stats before, after;
    mesh_arena_stats(&before);
    uint32_t page = mesh_pages_alloc(4096, 1, &z);
    memset(mesh_page_addr(page), 0xab, (size_t)4096 << MESH_PAGE_SHIFT);
    mesh_pages_free(page, 4096);
    mesh_arena_trim();
    mesh_arena_stats(&after);
    ck_assert_uint_ge(after.released_pages - before.released_pages, 4096);
    /* Released for real (reads as zero again), and the file is untouched. */
    ck_assert_uint_eq(mesh_page_addr(page)[100], 0);
    static uint8_t back[1 << 20];
    ck_assert_int_eq(pread(file, back, sizeof back, 0), (ssize_t)sizeof back);
    ck_assert_int_eq(memcmp(back, data, sizeof data), 0);
    ck_assert_int_eq(mesh_heap_check(), 0);
    close(file);
}
END_TEST

START_TEST(fresh_ranges_are_adjacent_and_coalesce)
{
    int z;
    uint32_t a = mesh_pages_alloc(1000, 1, &z);
    ck_assert(z);
    uint32_t b = mesh_pages_alloc(1000, 1, &z);
    uint32_t c = mesh_pages_alloc(1000, 1, &z);
    ck_assert_uint_eq(b, a + 1000);
    ck_assert_uint_eq(c, b + 1000);
    mesh_pages_free(b, 1000);
    mesh_pages_free(a, 1000);
    ck_assert_int_eq(mesh_arena_check(), 0);
    /* a and b merged: 2000 pages fit exactly where a was, and they are dirty (not zero) */
    uint32_t ab = mesh_pages_alloc(2000, 1, &z);
    ck_assert_uint_eq(ab, a);
    ck_assert(!z);
    mesh_pages_free(ab, 2000);
    mesh_pages_free(c, 1000);
    ck_assert_int_eq(mesh_arena_check(), 0);
}
END_TEST

START_TEST(aligned_page_ranges)
{
    int z;
    for (uint32_t align = 1; align <= 512; align *= 2) {
        uint32_t p = mesh_pages_alloc(3, align, &z);
        ck_assert_uint_ne(p, MESH_NO_PAGE);
        ck_assert_uint_eq((uintptr_t)mesh_page_addr(p) % ((uintptr_t)align * MESH_PAGE_SIZE), 0);
        mesh_pages_free(p, 3);
    }
    ck_assert_int_eq(mesh_arena_check(), 0);
}
END_TEST

START_TEST(extend_in_place)
{
    int z;
    uint32_t a = mesh_pages_alloc(100, 1, &z);
    uint32_t b = mesh_pages_alloc(100, 1, &z);
    ck_assert_uint_eq(b, a + 100);
    ck_assert(!mesh_pages_extend(a, 100, 150, &z)); /* b is in the way */
    mesh_pages_free(b, 100);
    ck_assert(mesh_pages_extend(a, 100, 150, &z));
    ck_assert(mesh_pages_extend(a, 150, 400, &z)); /* the rest of b, then fresh pages */
    ck_assert_int_eq(mesh_arena_check(), 0);
    mesh_pages_free(a, 400);
    ck_assert_int_eq(mesh_arena_check(), 0);
}
END_TEST

START_TEST(exhaustion_is_reported)
{
    int z;
    ck_assert_uint_eq(mesh_pages_alloc(mesh_arena.total_pages, 1, &z), MESH_NO_PAGE);
    ck_assert_uint_eq(mesh_pages_alloc(0, 1, &z), MESH_NO_PAGE);
    ck_assert_int_eq(mesh_arena_check(), 0);
}
END_TEST

START_TEST(punch_hole_returns_memory)
{
    int z;
    uint32_t n = 4096; /* 16 MiB: above the dirty minimum */
    uint32_t p = mesh_pages_alloc(n, 1, &z);
    uint64_t before = committed_bytes();
    memset(mesh_page_addr(p), 0xab, (size_t)n * MESH_PAGE_SIZE);
    ck_assert_uint_ge(committed_bytes(), before + (uint64_t)n * MESH_PAGE_SIZE);
    struct mesh_stats s0, s1;
    mesh_stats_get(&s0);
    mesh_pages_free(p, n);
    /* Over the keep target but young, and under the hard bound: kept for reuse. */
    mesh_arena_poll();
    mesh_stats_get(&s1);
    ck_assert_uint_eq(s1.released_bytes, s0.released_bytes);
    ck_assert_uint_ge(s1.dirty_bytes, (uint64_t)n * MESH_PAGE_SIZE);
    /* Once aged, released down to the keep target. */
    ck_assert_uint_ge(mesh_arena_purge_at(mesh_arena_clock_ms() + MESH_PURGE_DELAY_MS), n);
    mesh_stats_get(&s1);
    ck_assert_uint_gt(s1.released_bytes, s0.released_bytes);
    ck_assert_uint_le(s1.dirty_bytes, 2048ull * MESH_PAGE_SIZE);
    mesh_malloc_trim(0);
    mesh_stats_get(&s1);
    ck_assert_uint_eq(s1.dirty_bytes, 0);
    ck_assert_uint_le(committed_bytes(), before + 64 * MESH_PAGE_SIZE);
    /* punched pages read as zero when reused */
    uint32_t q = mesh_pages_alloc(n, 1, &z);
    ck_assert(z);
    ck_assert_uint_eq(mesh_page_addr(q)[0], 0);
    ck_assert_uint_eq(mesh_page_addr(q)[(size_t)n * MESH_PAGE_SIZE - 1], 0);
    mesh_pages_free(q, n);
    ck_assert_int_eq(mesh_arena_check(), 0);
}
END_TEST

/* Ages go by the free, oldest first; what is left of a carved range keeps its age. */
START_TEST(release_goes_by_age)
{
    int z;
    mesh_malloc_trim(0);
    uint32_t n = 3000; /* each over the 8 MiB minimum, together under the hard bound */
    uint32_t a = mesh_pages_alloc(n, 1, &z), sep1 = mesh_pages_alloc(1, 1, &z);
    uint32_t b = mesh_pages_alloc(n, 1, &z), sep2 = mesh_pages_alloc(1, 1, &z);
    memset(mesh_page_addr(a), 1, (size_t)n * MESH_PAGE_SIZE);
    memset(mesh_page_addr(b), 2, (size_t)n * MESH_PAGE_SIZE);
    uint32_t t0 = mesh_arena_clock_ms();
    mesh_pages_free(a, n);
    /* Not aged yet (as of the free's own time): nothing goes. */
    ck_assert_uint_eq(mesh_arena_purge_at(t0), 0);
    /* a is reused in part: the rest keeps a's age. */
    uint32_t a2 = mesh_pages_alloc(100, 1, &z);
    ck_assert_uint_eq(a2, a);
    ck_assert(!z);
    ck_assert_int_eq(mesh_arena_check(), 0);
    /* b is freed later (once the coarse clock has moved on): a pass at a's expiry takes
     * the rest of a, not b. */
    for (int i = 0; i < 60000 && mesh_arena_clock_ms() == t0; i++)
        usleep(1000);
    ck_assert_uint_ne(mesh_arena_clock_ms(), t0);
    struct mesh_arena_stats st;
    mesh_pages_free(b, n);
    ck_assert_int_eq(mesh_arena_check(), 0);
    size_t released = mesh_arena_purge_at(t0 + MESH_PURGE_DELAY_MS);
    mesh_arena_stats(&st);
    ck_assert_int_eq(mesh_arena_check(), 0);
    ck_assert_uint_eq(released, n - 100);
    ck_assert_uint_eq(mesh_page_addr(b)[0], 2); /* b still dirty, untouched */
    ck_assert_uint_eq(mesh_page_addr(a + 100)[0], 0);
    ck_assert_uint_eq(mesh_page_addr(a2)[0], 1);
    mesh_pages_free(a2, 100);
    mesh_pages_free(sep1, 1);
    mesh_pages_free(sep2, 1);
    mesh_arena_trim();
    mesh_arena_stats(&st);
    ck_assert_uint_eq(st.dirty_pages, 0);
    ck_assert_int_eq(mesh_arena_check(), 0);
}
END_TEST

/* A trim bounded in time punches at least one batch and stops at its deadline, leaving the
 * rest dirty and intact for the next trim; an unbounded trim then punches all of it. */
START_TEST(bounded_trim_stops_at_its_deadline)
{
    int z;
    mesh_malloc_trim(0);
    enum { RANGES = 64, PAGES = 8 }; /* 64 ranges apart: four batches of 16 at least */
    uint32_t range[RANGES], sep[RANGES];
    for (unsigned i = 0; i < RANGES; i++) {
        range[i] = mesh_pages_alloc(PAGES, 1, &z);
        sep[i] = mesh_pages_alloc(1, 1, &z);
        memset(mesh_page_addr(range[i]), 0x5a, (size_t)PAGES * MESH_PAGE_SIZE);
    }
    for (unsigned i = 0; i < RANGES; i++)
        mesh_pages_free(range[i], PAGES);
    struct mesh_arena_stats st;
    mesh_arena_stats(&st);
    uint64_t dirty = st.dirty_pages;
    ck_assert_uint_ge(dirty, RANGES * PAGES);
    /* 1 ns: over before the first batch ends, so exactly one batch. */
    size_t first = mesh_arena_trim_for(1);
    mesh_arena_stats(&st);
    ck_assert_uint_gt(first, 0);
    ck_assert_uint_lt(first, RANGES * PAGES);
    ck_assert_uint_eq(st.dirty_pages, dirty - first);
    ck_assert_int_eq(mesh_arena_check(), 0);
    /* Every range not punched still holds its bytes; punched ones read zero. */
    unsigned kept = 0;
    for (unsigned i = 0; i < RANGES; i++) {
        uint8_t v = mesh_page_addr(range[i])[PAGES * MESH_PAGE_SIZE - 1];
        ck_assert(v == 0x5a || v == 0);
        kept += v == 0x5a;
    }
    ck_assert_uint_eq((RANGES - kept) * PAGES, first);
    size_t rest = mesh_arena_trim_for(0);
    mesh_arena_stats(&st);
    ck_assert_uint_eq(first + rest, dirty);
    ck_assert_uint_eq(st.dirty_pages, 0);
    for (unsigned i = 0; i < RANGES; i++)
        mesh_pages_free(sep[i], 1);
    mesh_arena_trim();
    ck_assert_int_eq(mesh_arena_check(), 0);
}
END_TEST

/* Over the hard bound, the next slow path punches at once, without waiting for ages. */
START_TEST(hard_bound_releases_at_once)
{
    int z;
    mesh_malloc_trim(0);
    uint32_t n = 40000; /* 156 MiB: over the 128 MiB hard bound */
    uint32_t p = mesh_pages_alloc(n, 1, &z);
    memset(mesh_page_addr(p), 3, (size_t)n * MESH_PAGE_SIZE);
    struct mesh_arena_stats before, after;
    mesh_arena_stats(&before);
    mesh_pages_free(p, n);
    mesh_arena_poll();
    mesh_arena_stats(&after);
    ck_assert_uint_ge(after.released_pages - before.released_pages, n);
    ck_assert_uint_eq(after.dirty_pages, 0);
    ck_assert_uint_eq(mesh_page_addr(p)[0], 0);
    ck_assert_int_eq(mesh_arena_check(), 0);
}
END_TEST

START_TEST(records_recycle_with_new_generation)
{
    uint32_t id = mesh_record_alloc();
    ck_assert_uint_ne(id, 0);
    ck_assert_uint_lt(id, mesh_record_hwm());
    uint32_t gen = mesh_record(id)->generation;
    mesh_record_free(id);
    ck_assert_uint_eq(mesh_record_state(mesh_record(id)), MESH_SPAN_FREE);
    uint32_t again = mesh_record_alloc();
    ck_assert_uint_eq(again, id); /* LIFO reuse */
    ck_assert_uint_ne(mesh_record(again)->generation, gen);
    mesh_record_free(again);
}
END_TEST

START_TEST(large_objects_have_their_own_span)
{
    size_t sizes[] = {16385, 65536, 1 << 20, (5 << 20) + 3};
    for (unsigned i = 0; i < 4; i++) {
        uint8_t *p = mesh_malloc(sizes[i]);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % MESH_PAGE_SIZE, 0);
        ck_assert_uint_ge(mesh_malloc_usable_size(p), sizes[i]);
        ck_assert_uint_lt(mesh_malloc_usable_size(p), sizes[i] + MESH_PAGE_SIZE);
        uint32_t id = mesh_pagemap_get(mesh_page_of(p));
        ck_assert_uint_eq(mesh_record_state(mesh_record(id)), MESH_SPAN_LARGE);
        pattern_fill(p, sizes[i], i);
        ck_assert(pattern_ok(p, sizes[i], i));
        mesh_free(p);
        /* the page now starts a free range or nothing: a stale free of p is caught */
        uint32_t e = mesh_pagemap_get(mesh_page_of(p));
        ck_assert(e == 0 || (e & MESH_PAGE_FREE_TAG));
    }
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

/* Issue 16: no fixed 64 GiB ceiling.  Unless strict overcommit, RLIMIT_AS or
 * MESH_ARENA_GB asks for less, the arena is at least the old 64 GiB and at least
 * 4 x (RAM + swap); the span table has a record for every arena page, up to its 4 GiB. */
START_TEST(arena_and_table_sized_from_the_machine)
{
    const struct mesh_span_table_header *h = mesh_spans.header;
    uint64_t pages = mesh_arena.bytes >> MESH_PAGE_SHIFT;
    ck_assert_uint_eq(mesh_arena.total_pages, pages);
    ck_assert_uint_lt(pages, MESH_PAGE_FREE_TAG); /* page map ids stay below the tag */
    ck_assert_uint_eq(h->arena_bytes, mesh_arena.bytes);
    /* whole regions (span_table_abi.h), generations included in the 4 GiB */
    uint64_t want = (pages + 1 + MESH_REGION_RECORDS - 1) & ~(uint64_t)(MESH_REGION_RECORDS - 1);
    ck_assert_uint_eq(h->max_records, want < MESH_MAX_RECORDS ? want : MESH_MAX_RECORDS);
    ck_assert_uint_le(mesh_table_bytes(h->max_records), UINT32_MAX);
    ck_assert_uint_le(mesh_table_bytes(MESH_MAX_RECORDS) + MESH_PAGE_SIZE - 1, UINT32_MAX);
    struct rlimit as;
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &as), 0);
    char mode = '0';
    int fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ck_assert_int_eq(read(fd, &mode, 1), 1);
        close(fd);
    }
    if (getenv("MESH_ARENA_GB") || as.rlim_cur != RLIM_INFINITY || mode == '2')
        return;
    struct sysinfo si;
    ck_assert_int_eq(sysinfo(&si), 0);
    uint64_t machine = ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
    ck_assert_uint_ge(mesh_arena.bytes, 64ull << 30);
    if (machine * 4 < (8ull << 40) - (1ull << 30))
        ck_assert_uint_ge(mesh_arena.bytes, machine * 4);
}
END_TEST

/* Issue 12: the control thread's pressure reading (pressure.h), from a file in PSI's
 * format named by the test knob: the threshold is "some avg10" >= 10.00; anything
 * unreadable or malformed is no pressure. */
static void pressure_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Descriptors of this process open on path, and the lowest of their numbers (or -1). */
static int fds_open_on(const char *path, int *lowest)
{
    int n = 0;
    *lowest = -1;
    for (int fd = 0; fd < 4096; fd++) {
        char link[64], target[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (strncmp(target, path, strlen(path)) == 0) { /* "(deleted)" may follow */
            n++;
            if (*lowest < 0)
                *lowest = fd;
        }
    }
    return n;
}

/* keep 0: the file is opened for each reading and closed; keep 1 (registered): opened
 * once, at a high number, read again from offset 0 (fresh figures every time), closed by
 * mesh_pressure_release_kept. */
START_TEST(memory_pressure_reads_some_avg10)
{
    int keep = _i, lowest;
    char path[] = "/tmp/mesh-test-psiXXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(setenv("MESH_TEST_PRESSURE_FILE", path, 1), 0);
    static const char tail[] = " avg60=0.00 avg300=0.00 total=123\nfull avg10=99.00 avg60=0.00 "
                               "avg300=0.00 total=1\n";
    char text[256];
    snprintf(text, sizeof text, "some avg10=9.99%s", tail);
    pressure_file(path, text);
    ck_assert_int_eq(mesh_memory_pressed(keep), 0); /* "full" is not "some" */
    ck_assert_int_eq(fds_open_on(path, &lowest), keep);
    if (keep)
        ck_assert_int_ge(lowest, mesh_fd_floor());
    snprintf(text, sizeof text, "some avg10=10.00%s", tail);
    pressure_file(path, text);
    ck_assert_int_eq(mesh_memory_pressed(keep), 1);
    pressure_file(path, "some avg10=57.5 avg60=1.00\n");
    ck_assert_int_eq(mesh_memory_pressed(keep), 1);
    pressure_file(path, "some avg10= avg60=50.00\n");
    ck_assert_int_eq(mesh_memory_pressed(keep), 0);
    pressure_file(path, "");
    ck_assert_int_eq(mesh_memory_pressed(keep), 0);
    ck_assert_int_eq(fds_open_on(path, &lowest), keep); /* still the one descriptor */
    mesh_pressure_release_kept();
    ck_assert_int_eq(fds_open_on(path, &lowest), 0);
    unlink(path);
    ck_assert_int_eq(mesh_memory_pressed(keep), 0); /* no file (no PSI in the kernel) */
    mesh_pressure_release_kept();
    unsetenv("MESH_TEST_PRESSURE_FILE");
}
END_TEST

/* Issue 16: region generations count record changes once the table is published (a meshd
 * may read them), and not before (nobody reads them; the first pass reads every region). */
static uint64_t generations_sum(void)
{
    uint32_t n = mesh_region_count(mesh_record_hwm());
    uint64_t sum = 0;
    for (uint32_t r = 0; r < n; r++)
        sum += __atomic_load_n(&mesh_spans.regions[r], __ATOMIC_ACQUIRE);
    return sum;
}

/* Through mesh_malloc, not malloc: a sanitizer's runtime takes malloc for itself
 * (SANITIZER=thread: the churn never reached libmesh and the test failed). */
static void churn(void)
{
    static void *p[20000];
    for (size_t i = 0; i < sizeof p / sizeof *p; i++)
        ck_assert_ptr_nonnull(p[i] = mesh_malloc(64 + i % 512));
    for (size_t i = 0; i < sizeof p / sizeof *p; i++)
        mesh_free(p[i]);
}

START_TEST(span_table_generations_count_once_published)
{
    ck_assert_int_eq(mesh_spans.shared, 0);
    churn();
    ck_assert_uint_eq(generations_sum(), 0);
    struct mesh_fd table;
    ck_assert_int_eq(mesh_span_table_publish(&table), 0);
    close(table.fd);
    uint64_t before = generations_sum();
    churn();
    ck_assert_uint_gt(generations_sum(), before);
    ck_assert_int_eq(mesh_heap_check(), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("arena");
    add_case(s, arena_is_a_memfd_without_a_descriptor, setup);
    add_case(s, fresh_ranges_are_adjacent_and_coalesce, setup);
    add_case(s, aligned_page_ranges, setup);
    add_case(s, extend_in_place, setup);
    add_case(s, exhaustion_is_reported, setup);
    add_case(s, punch_hole_returns_memory, setup);
    add_case(s, release_goes_by_age, setup);
    add_case(s, bounded_trim_stops_at_its_deadline, setup);
    add_case(s, hard_bound_releases_at_once, setup);
    add_case(s, records_recycle_with_new_generation, setup);
    add_case(s, large_objects_have_their_own_span, setup);
    add_case(s, shim_descriptors_live_high, setup);
    add_case(s, span_table_descriptor_is_read_only, setup);
    add_case(s, release_never_uses_a_descriptor, setup);
    add_case(s, arena_and_table_sized_from_the_machine, setup);
    add_loop_case(s, memory_pressure_reads_some_avg10, setup, 0, 2);
    add_case(s, span_table_generations_count_once_published, setup);
    return run_suite(s);
}
