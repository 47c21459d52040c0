/*
 * interpose.h: finding the definition a shim wrapper stands in front of.
 *
 * The shim defines some libc functions itself (kernel_calls.c, credentials.c); each wrapper
 * does its part and calls the next definition of its name in the lookup order (libc's, or
 * liburing's, libaio's), found with dlsym(RTLD_NEXT) once and cached.  Every wrapper file
 * also resolves all its names from a constructor, so that later calls (from fork handlers
 * holding allocator locks, or after a chroot) never enter the loader.  errno is kept.
 */
#ifndef MESH_INTERPOSE_H
#define MESH_INTERPOSE_H

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>

#include "common.h"

/* The next definition of name, cached in *slot; NULL if there is none (a library the
 * process has not loaded). */
static inline void *mesh_next_symbol(void *_Atomic *slot, const char *name)
{
    void *f = atomic_load_explicit(slot, memory_order_acquire);
    if (likely(f != NULL))
        return f;
    int saved = errno;
    f = dlsym(RTLD_NEXT, name);
    errno = saved;
    atomic_store_explicit(slot, f, memory_order_release);
    return f;
}

#endif
