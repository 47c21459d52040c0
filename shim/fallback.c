/* fallback.c: glibc's allocator, when the heap cannot be set up; see fallback.h. */
#include "fallback.h"

#include <errno.h>
#include <sched.h>

#include "interpose.h"

enum next_fn { NEXT_MALLOC, NEXT_CALLOC, NEXT_MEMALIGN, NEXT_REALLOC, NEXT_FREE, NEXT_USABLE, NEXT_COUNT };

static const char *const next_names[NEXT_COUNT] = {"malloc", "calloc", "memalign", "realloc", "free",
                                                   "malloc_usable_size"};

static void *next_fns[NEXT_COUNT];
/* 0: not looked up, 1: a thread is looking them all up, 2: done (next_fns final). */
static _Atomic int resolve_state;
static __thread int resolving_here; /* dlsym allocating: those calls get nothing */

static void resolve_all(void)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&resolve_state, &expected, 1)) {
        resolving_here = 1;
        for (int i = 0; i < NEXT_COUNT; i++) {
            void *_Atomic slot = NULL;
            next_fns[i] = mesh_next_symbol(&slot, next_names[i]);
        }
        resolving_here = 0;
        atomic_store_explicit(&resolve_state, 2, memory_order_release);
        return;
    }
    while (atomic_load_explicit(&resolve_state, memory_order_acquire) != 2)
        sched_yield();
}

static void *next(enum next_fn which)
{
    if (resolving_here)
        return NULL;
    if (atomic_load_explicit(&resolve_state, memory_order_acquire) != 2)
        resolve_all();
    return next_fns[which];
}

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);

void *mesh_fallback_malloc(size_t n, int zero)
{
    void *p = NULL;
    if (zero) {
        calloc_fn fn = (calloc_fn)next(NEXT_CALLOC);
        p = fn ? fn(1, n) : NULL;
    } else {
        malloc_fn fn = (malloc_fn)next(NEXT_MALLOC);
        p = fn ? fn(n) : NULL;
    }
    if (!p)
        errno = ENOMEM;
    return p;
}

void *mesh_fallback_memalign(size_t align, size_t n)
{
    calloc_fn fn = (calloc_fn)next(NEXT_MEMALIGN); /* (size_t, size_t) -> void *, as memalign */
    void *p = fn ? fn(align, n) : NULL;
    if (!p)
        errno = ENOMEM;
    return p;
}

void *mesh_fallback_realloc(void *p, size_t n)
{
    void *(*fn)(void *, size_t) = (void *(*)(void *, size_t))next(NEXT_REALLOC);
    void *q = fn ? fn(p, n) : NULL;
    if (!q)
        errno = ENOMEM;
    return q;
}

void mesh_fallback_free(void *p)
{
    void (*fn)(void *) = (void (*)(void *))next(NEXT_FREE);
    if (fn)
        fn(p); /* else leaked: freed while resolving, which never returns a block */
}

size_t mesh_fallback_usable_size(void *p)
{
    size_t (*fn)(void *) = (size_t(*)(void *))next(NEXT_USABLE);
    return fn ? fn(p) : 0;
}
