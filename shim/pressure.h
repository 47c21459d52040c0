/*
 * pressure.h: the system's memory pressure (PSI), read by the control thread so that freed
 * pages kept dirty for reuse (arena.c) go back at once when the machine runs short of
 * memory, as they do at malloc_trim and at a meshd round.
 *
 * Read from /proc/pressure/memory ("some avg10": the share of the last 10 s in which some
 * task stalled on memory), the same figure meshd's policy uses, with the same default
 * threshold (10 %).  No descriptor is kept: the file is opened, read and closed by
 * the control thread only, at most once a second and only while it holds at least
 * PRESSURE_MIN_DIRTY of dirty pages (control.c), never under a seccomp filter.
 * Tests only: MESH_TEST_PRESSURE_FILE names a file in the same format to read instead.
 */
#ifndef MESH_PRESSURE_H
#define MESH_PRESSURE_H

#define MESH_PRESSURE_AVG10_PERCENT 10u

/* 1 if memory pressure is at or above the threshold now; 0 if not, or if it cannot be
 * read (no PSI in the kernel, no /proc, a seccomp filter). */
int mesh_memory_pressed(void);

#endif
