/*
 * cxx_new.c: C++ operator new and delete, all the C++14/17 forms, straight to libmesh.
 *
 * Without these a C++ program's new goes to libstdc++'s operator new, which checks the
 * new-handler and calls malloc through the PLT: a second call per allocation.  The forms a
 * program calls millions of times are defined in malloc_api.c, beside the inline fast
 * paths they are made of: plain and nothrow new run malloc's fast path in their own body,
 * and every delete is an alias of free (no call, no jump between them).  This file has the
 * aligned forms and what every new does on failure.
 *
 * Failure follows the standard's protocol without any C++ in the shim: the throwing and
 * nothrow forms hand the failed request to the next definition of the same operator
 * (libstdc++'s, found with dlsym(RTLD_NEXT) on first failure).  That one retries through
 * malloc or aligned_alloc, which are ours, calls the program's new_handler between tries,
 * and throws std::bad_alloc (or returns NULL for nothrow) when there is none: exactly
 * what the program would have got without libmesh.  A process without a C++ runtime
 * cannot have called a throwing new from C++; if one does, it gets an abort with a
 * message, as an uncaught bad_alloc would.
 *
 * Mangled names are the Itanium C++ ABI's for a 64-bit size_t ('m'); std::align_val_t
 * is a size_t-sized enum, passed as one.  Sized and aligned deletes need neither: the
 * allocator knows every block's size and alignment from its address.
 */
#include <dlfcn.h>
#include <stddef.h>

#include "common.h"
#include "cxx_new.h"
#include "mesh.h"
#include "report.h"

#ifndef MESH_NO_INTERPOSE /* a sanitizer build keeps the sanitizer's own operators */

/* The next definition of a failed operator, resolved on first failure (no lock needed:
 * every thread that races resolves the same address). */
typedef void *(*new_fn)(size_t);
typedef void *(*new_nothrow_fn)(size_t, const void *);
typedef void *(*new_aligned_fn)(size_t, size_t);
typedef void *(*new_aligned_nothrow_fn)(size_t, size_t, const void *);

static void *next_operator(const char *mangled, void *self)
{
    void *f = dlsym(RTLD_NEXT, mangled);
    if (!f || f == self) {
        struct mesh_line l = {.len = 0};
        mesh_line_str(&l, "libmesh: ");
        mesh_line_str(&l, mangled);
        mesh_line_str(&l, ": out of memory and no C++ runtime to throw std::bad_alloc");
        mesh_line_write(&l, 2);
        __builtin_trap();
    }
    return f;
}

/* The next definition, looked up once per operator (*slot caches it). */
static void *next_cached(void **slot, const char *mangled, void *self)
{
    void *f = __atomic_load_n(slot, __ATOMIC_RELAXED);
    if (!f) {
        f = next_operator(mangled, self);
        __atomic_store_n(slot, f, __ATOMIC_RELAXED);
    }
    return f;
}

#define NEXT(type, name) ((type)next_cached(&next_##name, #name, (void *)name))

static void *next__Znwm, *next__Znam, *next__ZnwmRKSt9nothrow_t, *next__ZnamRKSt9nothrow_t,
    *next__ZnwmSt11align_val_t, *next__ZnamSt11align_val_t,
    *next__ZnwmSt11align_val_tRKSt9nothrow_t, *next__ZnamSt11align_val_tRKSt9nothrow_t;

/* ---- new ------------------------------------------------------------------------------ */

/* Defined in malloc_api.c (their fast paths); here only to name the next definition. */
MESH_EXPORT void *_Znwm(size_t n);
MESH_EXPORT void *_Znam(size_t n);
MESH_EXPORT void *_ZnwmRKSt9nothrow_t(size_t n, const void *tag);
MESH_EXPORT void *_ZnamRKSt9nothrow_t(size_t n, const void *tag);
MESH_EXPORT void *_ZnwmSt11align_val_t(size_t n, size_t align);
MESH_EXPORT void *_ZnamSt11align_val_t(size_t n, size_t align);
MESH_EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t align, const void *tag);
MESH_EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t align, const void *tag);

void *mesh_cxx_new_failed(size_t n) { return NEXT(new_fn, _Znwm)(n); }

void *mesh_cxx_new_array_failed(size_t n) { return NEXT(new_fn, _Znam)(n); }

void *mesh_cxx_new_nothrow_failed(size_t n, const void *tag)
{
    return NEXT(new_nothrow_fn, _ZnwmRKSt9nothrow_t)(n, tag);
}

void *mesh_cxx_new_array_nothrow_failed(size_t n, const void *tag)
{
    return NEXT(new_nothrow_fn, _ZnamRKSt9nothrow_t)(n, tag);
}

void *_ZnwmSt11align_val_t(size_t n, size_t align)
{
    void *p = mesh_memalign(align, n);
    if (likely(p != NULL))
        return p;
    return NEXT(new_aligned_fn, _ZnwmSt11align_val_t)(n, align);
}

void *_ZnamSt11align_val_t(size_t n, size_t align)
{
    void *p = mesh_memalign(align, n);
    if (likely(p != NULL))
        return p;
    return NEXT(new_aligned_fn, _ZnamSt11align_val_t)(n, align);
}

void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t align, const void *tag)
{
    void *p = mesh_memalign(align, n);
    if (likely(p != NULL))
        return p;
    return NEXT(new_aligned_nothrow_fn, _ZnwmSt11align_val_tRKSt9nothrow_t)(n, align, tag);
}

void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t align, const void *tag)
{
    void *p = mesh_memalign(align, n);
    if (likely(p != NULL))
        return p;
    return NEXT(new_aligned_nothrow_fn, _ZnamSt11align_val_tRKSt9nothrow_t)(n, align, tag);
}

#endif /* MESH_NO_INTERPOSE */
