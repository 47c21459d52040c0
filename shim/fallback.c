/* fallback.c: glibc's allocator, when the heap cannot be set up; see fallback.h. */
#include "fallback.h"

#include <errno.h>
#include <sched.h>

#include "interpose.h"
#include "malloc_owner.h"
#include "mesh.h"

enum next_fn { NEXT_MALLOC, NEXT_CALLOC, NEXT_MEMALIGN, NEXT_REALLOC, NEXT_FREE, NEXT_USABLE, NEXT_COUNT };

static const char *const next_names[NEXT_COUNT] = {"malloc", "calloc", "memalign", "realloc", "free",
                                                   "malloc_usable_size"};

/* next_fns[0]: the definitions after this library's (glibc's); next_fns[1]: the process's
 * own, for when the shim stepped aside (the same where the process's is this library's). */
static void *next_fns[2][NEXT_COUNT];
/* 0: not looked up, 1: a thread is looking them all up, 2: done (next_fns final). */
static _Atomic int resolve_state;
static __thread int resolving_here; /* dlsym allocating: those calls get nothing */
static __thread int forwarding;     /* inside a call made to the process's malloc */

/* This library's definition of each name (an alias of these), where it has one. */
static void *own_fn(enum next_fn which)
{
#ifdef MESH_NO_INTERPOSE
    (void)which;
    return NULL;
#else
    static void *const own[NEXT_COUNT] = {(void *)mesh_malloc, (void *)mesh_calloc, (void *)mesh_memalign,
                                          (void *)mesh_realloc, (void *)mesh_free,
                                          (void *)mesh_malloc_usable_size};
    return own[which];
#endif
}

static void resolve_all(void)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&resolve_state, &expected, 1)) {
        resolving_here = 1;
        for (int i = 0; i < NEXT_COUNT; i++) {
            void *_Atomic slot = NULL;
            next_fns[0][i] = mesh_next_symbol(&slot, next_names[i]);
            /* The first definition in load order (malloc_owner.h), unless it is ours. */
            void *first = mesh_first_definition(next_names[i]);
            next_fns[1][i] = first != NULL && first != own_fn((enum next_fn)i) ? first : next_fns[0][i];
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
    return next_fns[atomic_load(&mesh_init_yielded) ? 1 : 0][which];
}

int mesh_fallback_forward(void)
{
    if (!atomic_load(&mesh_init_yielded) || forwarding == 0)
        return 1;
    /* Called back from inside a call this library forwarded: the process's malloc is a
     * wrapper around this one.  Forwarding again would never end: serve instead. */
    return !mesh_init_take_over();
}

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);

void *mesh_fallback_malloc(size_t n, int zero)
{
    void *p = NULL;
    if (zero) {
        calloc_fn fn = (calloc_fn)next(NEXT_CALLOC);
        forwarding++;
        p = fn ? fn(1, n) : NULL;
        forwarding--;
    } else {
        malloc_fn fn = (malloc_fn)next(NEXT_MALLOC);
        forwarding++;
        p = fn ? fn(n) : NULL;
        forwarding--;
    }
    if (!p)
        errno = ENOMEM;
    return p;
}

void *mesh_fallback_memalign(size_t align, size_t n)
{
    calloc_fn fn = (calloc_fn)next(NEXT_MEMALIGN); /* (size_t, size_t) -> void *, as memalign */
    forwarding++;
    void *p = fn ? fn(align, n) : NULL;
    forwarding--;
    if (!p)
        errno = ENOMEM;
    return p;
}

void *mesh_fallback_realloc(void *p, size_t n)
{
    void *(*fn)(void *, size_t) = (void *(*)(void *, size_t))next(NEXT_REALLOC);
    forwarding++;
    void *q = fn ? fn(p, n) : NULL;
    forwarding--;
    if (!q)
        errno = ENOMEM;
    return q;
}

void mesh_fallback_free(void *p)
{
    void (*fn)(void *) = (void (*)(void *))next(NEXT_FREE);
    forwarding++;
    if (fn)
        fn(p); /* else leaked: freed while resolving, which never returns a block */
    forwarding--;
}

size_t mesh_fallback_usable_size(void *p)
{
    size_t (*fn)(void *) = (size_t(*)(void *))next(NEXT_USABLE);
    forwarding++;
    size_t n = fn ? fn(p) : 0;
    forwarding--;
    return n;
}
