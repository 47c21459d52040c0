/*
 * lock.h: a three-state futex mutex (Drepper, "Futexes are tricky").  It needs no
 * initialisation call and no allocation, so it is usable before the shim is set up and
 * can be reset in a fork child by a plain store.
 *   state 0: unlocked; 1: locked, no waiters; 2: locked, maybe waiters.
 */
#ifndef MESH_LOCK_H
#define MESH_LOCK_H

#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

static inline void mesh_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef struct {
    _Atomic int state;
} mesh_lock_t;

#define MESH_LOCK_INIT {0}

static inline void mesh_futex(_Atomic int *addr, int op, int val)
{
    syscall(SYS_futex, (int *)addr, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

static MESH_NOINLINE void mesh_lock_slow(mesh_lock_t *l)
{
    for (int spin = 0; spin < 100; spin++) {
        int expected = 0;
        if (atomic_load_explicit(&l->state, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->state, &expected, 1,
                                                  memory_order_acquire, memory_order_relaxed))
            return;
        mesh_cpu_relax();
    }
    while (atomic_exchange_explicit(&l->state, 2, memory_order_acquire) != 0)
        mesh_futex(&l->state, FUTEX_WAIT, 2);
}

/* 1 if l was free and is now held, else 0 (held by someone: not waited for). */
static inline int mesh_trylock(mesh_lock_t *l)
{
    int expected = 0;
    return atomic_compare_exchange_strong_explicit(&l->state, &expected, 1, memory_order_acquire,
                                                   memory_order_relaxed);
}

static inline void mesh_lock(mesh_lock_t *l)
{
    if (likely(mesh_trylock(l)))
        return;
    mesh_lock_slow(l);
}

static inline void mesh_unlock(mesh_lock_t *l)
{
    if (unlikely(atomic_exchange_explicit(&l->state, 0, memory_order_release) == 2))
        mesh_futex(&l->state, FUTEX_WAKE, 1);
}

/* Only for a fork child, where the single surviving thread owns every lock. */
static inline void mesh_lock_reset(mesh_lock_t *l) { atomic_store(&l->state, 0); }

#endif
