/* rng.h: the per-thread PRNG behind shuffle vectors (xorshift64*: fast, good enough to
 * randomise slot order; not for anything security-related). */
#ifndef MESH_RNG_H
#define MESH_RNG_H

#include <stdint.h>

static inline uint64_t mesh_rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, bound) by multiply-high (Lemire), no division; bound <= 2^32. */
static inline uint32_t mesh_rng_below(uint64_t *state, uint32_t bound)
{
    return (uint32_t)(((mesh_rng_next(state) >> 32) * (uint64_t)bound) >> 32);
}

#endif
