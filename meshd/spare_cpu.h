/*
 * spare_cpu.h: how much CPU the machine has to spare, from /proc/stat.
 *
 * Compaction costs the program CPU time as well as barrier holds: the shim's control thread
 * copies, maps and punches, and on a machine whose CPUs are all busy that time is taken
 * from some program's thread (a Redis serving requests sees it as tail latency).  The
 * policy therefore paces automatic rounds by the CPU the machine has to spare (policy.h,
 * "duty budget").
 *
 *   spare = (idle + iowait jiffies) / (all jiffies) * online CPUs, over the last window
 *
 * A window is at least SPARE_CPU_MIN_WINDOW seconds: a reading closer to the previous one
 * than that returns the previous value (the counters tick at USER_HZ, 10 ms, so a 50 ms
 * window on 2 CPUs is some 10 ticks: +-0.4 CPU).  Short, because a round's requests read
 * it to stop within a window of the machine getting busy (a wrong "busy" costs a wait of
 * POLICY_CPU_RECHECK_SECONDS, policy.h); readings while they wait are that far apart, so
 * resuming needs that long of spare.
 */
#ifndef MESHD_SPARE_CPU_H
#define MESHD_SPARE_CPU_H

#define SPARE_CPU_MIN_WINDOW 0.05

/* CPUs idle on average over the window that ended now (0 .. online CPUs); -1 while
 * unknown (no /proc/stat, or the first reading). */
double spare_cpu_now(double now);

/* The machine's online CPUs (at least 1). */
unsigned spare_cpu_online(void);

/* The same from two readings of /proc/stat's "cpu" line (the parsing, for tests): spare
 * CPUs between them, or -1 when either line is malformed or no time passed. */
double spare_cpu_between(const char *before, const char *after, unsigned cpus);

#endif
