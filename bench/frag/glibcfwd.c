/*
 * glibcfwd.so: the "glibc" column for programs linked against another malloc.
 *
 * Debian's redis-server is linked against libjemalloc.so.2, so running it without a
 * preload measures jemalloc, not glibc.  Preloaded, this library puts glibc's own malloc
 * (the __libc_* entry points, or the definitions inside libc.so.6 for functions that have
 * no __libc_ alias) in front of jemalloc's.  It keeps no state and allocates nothing.
 *
 * Built by bench/frag/run.sh:  cc -shared -fPIC -O2 glibcfwd.c -o glibcfwd.so -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define EXPORT __attribute__((visibility("default")))

/* Exported by glibc (GLIBC_2.2.5) for exactly this purpose. */
extern void *__libc_malloc(size_t n);
extern void __libc_free(void *p);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
extern void *__libc_valloc(size_t n);
extern void *__libc_pvalloc(size_t n);

/* The rest come from libc.so.6 itself: dlsym(RTLD_NEXT) could find jemalloc's first. */
static size_t (*libc_usable_size)(void *);
static int (*libc_trim)(size_t);
static struct mallinfo2 (*libc_mallinfo2)(void);

static void *libc_sym(const char *name)
{
    void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    void *f = h ? dlsym(h, name) : NULL;
    if (h)
        dlclose(h);
    return f;
}

/* dlopen/dlsym may call malloc: fine, malloc below needs none of these pointers. */
static void resolve(void)
{
    if (!libc_usable_size)
        libc_usable_size = (size_t(*)(void *))libc_sym("malloc_usable_size");
    if (!libc_trim)
        libc_trim = (int (*)(size_t))libc_sym("malloc_trim");
    if (!libc_mallinfo2)
        libc_mallinfo2 = (struct mallinfo2(*)(void))libc_sym("mallinfo2");
}

__attribute__((constructor)) static void glibcfwd_init(void) { resolve(); }

EXPORT void *malloc(size_t n) { return __libc_malloc(n); }
EXPORT void free(void *p) { __libc_free(p); }
EXPORT void cfree(void *p) { __libc_free(p); }
EXPORT void *calloc(size_t n, size_t size) { return __libc_calloc(n, size); }
EXPORT void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
EXPORT void *memalign(size_t align, size_t n) { return __libc_memalign(align, n); }
EXPORT void *valloc(size_t n) { return __libc_valloc(n); }
EXPORT void *pvalloc(size_t n) { return __libc_pvalloc(n); }

EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, bytes);
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
    if (align == 0 || (align & (align - 1)) != 0) {
        errno = EINVAL;
        return NULL;
    }
    return __libc_memalign(align, n);
}

EXPORT size_t malloc_usable_size(void *p)
{
    resolve();
    return libc_usable_size ? libc_usable_size(p) : 0;
}

EXPORT int malloc_trim(size_t pad)
{
    resolve();
    return libc_trim ? libc_trim(pad) : 0;
}

EXPORT struct mallinfo2 mallinfo2(void)
{
    struct mallinfo2 none = {0};
    resolve();
    return libc_mallinfo2 ? libc_mallinfo2() : none;
}
