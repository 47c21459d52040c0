/*
 * libmallocwrap.so: a malloc wrapper, preloaded before libmesh.so as heaptrack's and leak
 * tracers' are: it defines malloc, free, calloc, realloc, posix_memalign, aligned_alloc
 * and memalign, counts the calls and hands each to the next definition
 * (dlsym(RTLD_NEXT)), libmesh's.  The shim sees another malloc first in the lookup order
 * and steps aside (init.c), then finds itself called back from inside a call it forwarded
 * and takes over: every block must still be libmesh's.  MALLOCWRAP_REPORT=PATH: the
 * counts are written there at exit.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Atomic unsigned long calls;

/* The next definitions, looked up once.  dlsym may allocate: calls made meanwhile get
 * blocks of a static buffer, never freed (free ignores them), as real wrappers do. */
static void *(*next_malloc)(size_t), (*next_free)(void *), *(*next_calloc)(size_t, size_t),
    *(*next_realloc)(void *, size_t), *(*next_aligned_alloc)(size_t, size_t),
    *(*next_memalign)(size_t, size_t);
static int (*next_posix_memalign)(void **, size_t, size_t);
static _Alignas(64) unsigned char boot[1 << 16];
static size_t boot_used;
static __thread int looking_up;

static void *boot_alloc(size_t n)
{
    size_t at = (boot_used + 63) & ~(size_t)63;
    if (at + n > sizeof boot)
        return NULL;
    boot_used = at + n;
    return boot + at; /* static storage: zero */
}

static int from_boot(const void *p)
{
    return (const unsigned char *)p >= boot && (const unsigned char *)p < boot + sizeof boot;
}

static void look_up(void)
{
    if (next_malloc)
        return;
    looking_up = 1;
    next_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    next_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    next_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    next_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    next_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    next_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    next_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    looking_up = 0;
}

void *malloc(size_t n)
{
    calls++;
    if (looking_up)
        return boot_alloc(n);
    look_up();
    return next_malloc(n);
}

void free(void *p)
{
    calls++;
    if (p == NULL || from_boot(p))
        return;
    look_up();
    next_free(p);
}

void *calloc(size_t k, size_t n)
{
    calls++;
    if (looking_up)
        return n && k > (size_t)-1 / n ? NULL : boot_alloc(k * n);
    look_up();
    return next_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    calls++;
    look_up();
    if (from_boot(p)) {
        void *q = next_malloc(n);
        if (q)
            memcpy(q, p, n < 256 ? n : 256); /* boot blocks are small; over-reading stays in boot */
        return q;
    }
    return next_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    calls++;
    look_up();
    return next_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    calls++;
    look_up();
    return next_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n)
{
    calls++;
    look_up();
    return next_memalign(align, n);
}

__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("MALLOCWRAP_REPORT");
    if (!path)
        return;
    char line[64];
    int len = snprintf(line, sizeof line, "mallocwrap: %lu calls\n", (unsigned long)calls);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        if (write(fd, line, (size_t)len) < 0) {
        }
        close(fd);
    }
}
