/*
 * report.h: diagnostics without stdio or malloc.  Everything goes through write(2) on
 * stderr, formatted into a stack buffer, because the shim may be called from inside
 * stdio, from a signal handler or while its own locks are held.
 */
#ifndef MESH_REPORT_H
#define MESH_REPORT_H

#include <stddef.h>
#include <stdint.h>

/* A fixed-capacity line under construction; appends past the end are dropped. */
struct mesh_line {
    char buf[512];
    size_t len;
};

void mesh_line_str(struct mesh_line *l, const char *s);
void mesh_line_u64(struct mesh_line *l, uint64_t v);
void mesh_line_write(struct mesh_line *l, int fd);  /* appends '\n', write(2)s it whole */

/* glibc-style fatal heap error: "libmesh: CALL(): WHAT: 0xADDR" then abort(). */
void mesh_heap_error(const char *call, const char *what, const void *ptr)
    __attribute__((noreturn, cold));

#endif
