/*
 * pressure.h: the system's memory pressure (PSI), read by the control thread so that freed
 * pages kept dirty for reuse (arena.c) go back at once when the machine runs short of
 * memory, as they do at malloc_trim and at a meshd round.
 *
 * Read from /proc/pressure/memory ("some avg10": the share of the last 10 s in which some
 * task stalled on memory), the same figure meshd's policy uses, with the same default
 * threshold (10 %), by the control thread only, at most once a second and only while it
 * holds at least PRESSURE_MIN_DIRTY of dirty pages (control.c), never under a seccomp
 * filter.  While registered (the shim holds descriptors then anyway) the file, and the
 * /proc/self/status the filter check reads, stay open at high numbers (fdutil.h):
 * opened for each read, they sat at the lowest free number for a moment, fd 0 of a
 * program started with stdin closed.  Unregistered, the shim holds no descriptor, not
 * even for a read: both are read by a child with its own descriptor table
 * (mesh_read_file_aside, fdutil.h); opened here, they took number 1 from programs that
 * close stdout and dup2() it back.
 * Tests only: MESH_TEST_PRESSURE_FILE names a file in the same format to read instead.
 */
#ifndef MESH_PRESSURE_H
#define MESH_PRESSURE_H

#define MESH_PRESSURE_AVG10_PERCENT 10u

/* 1 if memory pressure is at or above the threshold now; 0 if not, or if it cannot be
 * read (no PSI in the kernel, no /proc, a seccomp filter).  keep: registered, so the files
 * may stay open (above) until mesh_pressure_release_kept. */
int mesh_memory_pressed(int keep);
/* Closes the kept file (if still ours); at every disconnect, and so in fork children. */
void mesh_pressure_release_kept(void);

#endif
