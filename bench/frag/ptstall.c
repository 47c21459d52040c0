/* ptstall: what one page-table change costs a program running on another CPU, on this
 * machine.  A machine fact for reading latency results, not a benchmark of libmesh.
 *
 * Meshing changes page tables (write-protect, remap, zap) while the program runs.  On
 * bare metal and hardware-paging VMs a change costs the program at most a TLB-flush IPI
 * (~1-2 us), and only on CPUs running the same process.  On some VMs (shadow or
 * paravirtual paging, e.g. PVM guests) every change stalls every busy vCPU of the
 * guest, whatever process it runs, for tens of microseconds, and the guest's
 * /proc/interrupts counts none of it (no CAL or TLB interrupt is delivered).  There the
 * Redis latency test measures the host as much as libmesh.
 *
 * A spinner process pinned to CPU 0 reads the clock in a loop and sums the gaps of at
 * least GAP_NS (time taken from it) for SECONDS, first alone, then while a second
 * process pinned to CPU 1 write-protects and unprotects 4 pages of its own (mprotect,
 * then a write) in a loop, then while it writes and zaps (MADV_DONTNEED) 1, 16 and 64
 * pages in a loop.  Prints one line:
 *   ptstall: changes_per_s=N stolen_alone_us_per_s=A stolen_us_per_s=B stall_us_per_change=S
 *            zap_us_1=Z1 zap_us_16=Z16 zap_us_64=Z64
 * where S = (B - A) / N, and Zn is the stall of one zap of n present pages likewise.  How
 * Zn grows says what batching buys here: flat where a flush costs an IPI; ~linear up to
 * Linux's single-page flush ceiling (33 pages on x86) and flat beyond it where every page
 * invalidated costs (PVM: ~11 us a page, ~45 us a whole flush).  With fewer than 2 CPUs or
 * no pinning, prints "ptstall: n/a (...)".
 *
 * usage: ptstall [seconds]  (default 1.5 per phase) */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GAP_NS 16000 /* well above a clock read and a cache miss, below any stall of note */

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

/* ns taken from a spinner on CPU 0 in `seconds`, in gaps of at least GAP_NS. */
static uint64_t spin_stolen(double seconds)
{
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(seconds * 1e9), last = t0, stolen = 0;
    for (uint64_t x; (x = now_ns()) < end; last = x)
        if (x - last >= GAP_NS)
            stolen += x - last;
    return stolen;
}

/* The changer, on CPU 1, until killed, counting changes in *count (shared): zap_pages 0,
 * mprotect pairs over 4 pages; else a write to each of zap_pages pages and one zap of them
 * (a private anonymous zap frees the pages: each write faults a fresh one in, ~0.1 us). */
static _Noreturn void change_pages(volatile uint64_t *count, unsigned zap_pages)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), len = (zap_pages ? zap_pages : 4) * page;
    char *r = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED)
        _exit(1);
    memset(r, 1, len);
    for (;;) {
        if (zap_pages) {
            for (size_t off = 0; off < len; off += page)
                r[off] = 1;
            madvise(r, len, MADV_DONTNEED);
            *count += 1;
            continue;
        }
        mprotect(r, len, PROT_READ);
        mprotect(r, len, PROT_READ | PROT_WRITE);
        r[0]++; /* the page is mapped writable again: the next protect has work to do */
        *count += 2;
    }
}

/* Runs the changer (change_pages) on CPU 1 while the spinner runs `seconds`; the stall of
 * one change in us (>= 0), its rate in *per_s and the spinner's stolen us/s in *busy_us;
 * -1 if the changer cannot run on CPU 1. */
static double stall_per_change(volatile uint64_t *count, unsigned zap_pages, double seconds, double alone_us,
                               double *per_s, double *busy_us)
{
    *count = 0;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (pin(1) != 0)
            _exit(1);
        change_pages(count, zap_pages);
    }
    while (*count == 0) { /* the changer runs: time it from its first change */
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return -1;
    }
    uint64_t c0 = *count, t0 = now_ns();
    uint64_t busy = spin_stolen(seconds);
    uint64_t changes = *count - c0;
    double elapsed = (double)(now_ns() - t0) / 1e9;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    *per_s = (double)changes / elapsed;
    *busy_us = (double)busy / 1e3 / elapsed;
    double stall = changes ? (*busy_us - alone_us) / *per_s : 0;
    return stall > 0 ? stall : 0;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.5;
    if (seconds <= 0 || seconds > 60) {
        fprintf(stderr, "usage: ptstall [seconds]  (0 < seconds <= 60)\n");
        return 2;
    }
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2 || pin(0) != 0) {
        printf("ptstall: n/a (needs CPUs 0 and 1)\n");
        return 0;
    }
    volatile uint64_t *count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (count == MAP_FAILED) {
        perror("ptstall: mmap");
        return 1;
    }
    spin_stolen(0.1); /* warm up: CPU frequency, the spinner's pages */
    uint64_t alone = spin_stolen(seconds);

    double alone_us = (double)alone / 1e3 / seconds, per_s, busy_us, zap_per_s, zap_busy_us;
    double stall = stall_per_change(count, 0, seconds, alone_us, &per_s, &busy_us);
    if (stall < 0) {
        printf("ptstall: n/a (could not run on CPU 1)\n");
        return 0;
    }
    static const unsigned zap_pages[] = {1, 16, 64};
    double zap[3];
    for (unsigned i = 0; i < 3; i++)
        zap[i] = stall_per_change(count, zap_pages[i], seconds, alone_us, &zap_per_s, &zap_busy_us);
    printf("ptstall: changes_per_s=%.0f stolen_alone_us_per_s=%.0f stolen_us_per_s=%.0f "
           "stall_us_per_change=%.1f zap_us_1=%.1f zap_us_16=%.1f zap_us_64=%.1f\n",
           per_s, alone_us, busy_us, stall, zap[0], zap[1], zap[2]);
    return 0;
}
