/*
 * fallback.h: the allocator of last resort, when the heap cannot be set up at all.
 *
 * mesh_init_slow fails only when no arena of even the smallest size can be mapped (an
 * address-space limit tighter than 128 MiB plus the program's own mappings) or its tables
 * cannot be reserved.  Failing every malloc then kills a program that glibc would have
 * run, so every call of the family goes to the next definition in the lookup order
 * (glibc's), found once with dlsym(RTLD_NEXT).  Every pointer is then glibc's: free,
 * realloc and malloc_usable_size of a pointer outside the (absent) arena go there too.
 * Nothing is meshed and the control thread never starts (control.c: no arena).
 * A call made while the names are being resolved (dlsym allocating) gets NULL/ENOMEM.
 *
 * The same path serves a process where another malloc comes first in the lookup order
 * (init.c: the shim steps aside).  Each call then goes to the process's own definition of
 * the name (the first in load order, malloc_owner.h), the other allocator's, so that a
 * name it lacks (reallocarray, valloc, operator new) still pairs with its free; where the
 * process's definition is this library's, to the next one, as above.  A malloc that comes
 * first may be a wrapper that calls this one (heaptrack, leak tracers): a call that comes
 * back from inside a forwarded one makes the shim take over (mesh_fallback_forward).
 */
#ifndef MESH_FALLBACK_H
#define MESH_FALLBACK_H

#include <stddef.h>

#include "init.h"

/* Whether set-up failed for good: the calls below serve the program. */
static inline int mesh_fallback_active(void) { return atomic_load(&mesh_init_state) == MESH_INIT_FAILED; }

/* Whether a call the fallback serves (mesh_fallback_active) is to be forwarded: 1; 0 when
 * it came back from inside a forwarded call of this thread where the shim stepped aside:
 * the heap has been set up (mesh_init_take_over) and the shim serves it.  A block of
 * neither allocator is then an invalid pointer. */
int mesh_fallback_forward(void);

/* The fallback serves this call (the shim serves none, or stepped aside and was not
 * called back): mesh_fallback_active() && mesh_fallback_forward(). */
static inline int mesh_fallback_serves(void) { return mesh_fallback_active() && mesh_fallback_forward(); }

void *mesh_fallback_malloc(size_t n, int zero);
void *mesh_fallback_memalign(size_t align, size_t n);
void *mesh_fallback_realloc(void *p, size_t n);
void mesh_fallback_free(void *p);
size_t mesh_fallback_usable_size(void *p);

#endif
