/* report.c: stdio-free, allocation-free diagnostics. */
#include "report.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "io_full.h"

void mesh_line_str(struct mesh_line *l, const char *s)
{
    size_t n = strlen(s);
    size_t room = sizeof l->buf - 1 - l->len; /* keep one byte for the newline */
    if (n > room)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void line_digits(struct mesh_line *l, uint64_t v, unsigned base)
{
    char tmp[24];
    size_t i = sizeof tmp;
    tmp[--i] = '\0';
    do {
        tmp[--i] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    mesh_line_str(l, tmp + i);
}

void mesh_line_u64(struct mesh_line *l, uint64_t v) { line_digits(l, v, 10); }

static void mesh_line_hex(struct mesh_line *l, uint64_t v)
{
    mesh_line_str(l, "0x");
    line_digits(l, v, 16);
}

void mesh_line_write(struct mesh_line *l, int fd)
{
    int saved = errno;
    l->buf[l->len++] = '\n';
    mesh_io_full(fd, MESH_IO_WRITE, l->buf, l->len, 0, 0); /* nothing to do if it fails */
    l->len--;
    errno = saved;
}

void mesh_heap_error(const char *call, const char *what, const void *ptr)
{
    struct mesh_line l = {.len = 0};
    mesh_line_str(&l, "libmesh: ");
    mesh_line_str(&l, call);
    mesh_line_str(&l, "(): ");
    mesh_line_str(&l, what);
    mesh_line_str(&l, ": ");
    mesh_line_hex(&l, (uintptr_t)ptr);
    mesh_line_write(&l, STDERR_FILENO);
    abort();
}

void mesh_assert_fail(const char *expr, const char *file, int line)
{
    struct mesh_line l = {.len = 0};
    mesh_line_str(&l, "libmesh: internal check failed: ");
    mesh_line_str(&l, expr);
    mesh_line_str(&l, " at ");
    mesh_line_str(&l, file);
    mesh_line_str(&l, ":");
    mesh_line_u64(&l, (uint64_t)line);
    mesh_line_write(&l, STDERR_FILENO);
    abort();
}
