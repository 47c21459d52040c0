/*
 * bigheap: heaps bigger than a fixed arena would hold (issue 16).
 *
 *   bigheap reserve MAX
 *       mallocs untouched 2 GiB blocks until malloc fails or MAX are held, writes the first
 *       and the last byte of each (two pages per block: the blocks stay almost all
 *       untouched), checks them all, and prints "bigheap: reserved N blocks".
 *   bigheap heap MIB STOPFILE
 *       a touched heap of about MIB MiB of mixed sizes (small, medium and large objects),
 *       every byte written with a pattern of its object; then frees about 3/4 of the small
 *       and medium objects at random (a fragmented heap for meshd to mesh), prints
 *       "bigheap: ready", waits until STOPFILE exists, and checks every byte of every
 *       survivor: "bigheap: ok N objects, M MiB live" or "bigheap: CORRUPT ...".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim_poll.h"

#define BLOCK (2ul << 30)

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int reserve(size_t max)
{
    char **blocks = calloc(max ? max : 1, sizeof *blocks);
    if (!blocks)
        return 2;
    size_t n = 0;
    for (; n < max; n++) {
        blocks[n] = malloc(BLOCK);
        if (!blocks[n])
            break;
        blocks[n][0] = (char)n;
        blocks[n][BLOCK - 1] = (char)~n;
    }
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += blocks[i][0] != (char)i || blocks[i][BLOCK - 1] != (char)~i;
    printf("bigheap: reserved %zu blocks%s\n", n, bad ? " CORRUPT" : "");
    for (size_t i = 0; i < n; i++)
        free(blocks[i]);
    free(blocks);
    return bad ? 1 : 0;
}

/* Object i's byte j: depends on both, so a page shown at the wrong place is caught. */
static uint8_t pattern(size_t i, size_t j) { return (uint8_t)(i * 131 + j / 7 + (j >> 12)); }

/* About half the bytes in small objects (the ones meshd meshes), a quarter each in
 * medium and large ones. */
static size_t object_size(uint64_t *rng)
{
    uint64_t r = next(rng);
    if (r % 1024 == 0) /* large: 64 KiB .. 1 MiB */
        return (64u << 10) + (size_t)(r >> 10) % (960u << 10);
    if (r % 32 == 1) /* medium: 1 KiB .. 16 KiB */
        return 1024 + (size_t)(r >> 10) % (15u << 10);
    return 16 + (size_t)(r >> 10) % 1009; /* small: 16 .. 1024 bytes */
}

static int heap(size_t mib, const char *stopfile)
{
    size_t target = mib << 20, total = 0, cap = 1 << 16, n = 0;
    uint8_t **objs = malloc(cap * sizeof *objs);
    size_t *sizes = malloc(cap * sizeof *sizes);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    if (!objs || !sizes)
        return 2;
    while (total < target) {
        if (n == cap) {
            cap *= 2;
            objs = realloc(objs, cap * sizeof *objs);
            sizes = realloc(sizes, cap * sizeof *sizes);
            if (!objs || !sizes)
                return 2;
        }
        sizes[n] = object_size(&rng);
        objs[n] = malloc(sizes[n]);
        if (!objs[n]) {
            printf("bigheap: malloc(%zu) failed after %zu MiB\n", sizes[n], total >> 20);
            return 1;
        }
        for (size_t j = 0; j < sizes[n]; j++)
            objs[n][j] = pattern(n, j);
        total += sizes[n];
        n++;
    }
    size_t live = 0, kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (sizes[i] < (64u << 10) && next(&rng) % 4 != 0) {
            free(objs[i]);
            objs[i] = NULL;
        } else {
            live += sizes[i];
            kept++;
        }
    }
    printf("bigheap: %zu objects, %zu MiB written; ready\n", n, total >> 20);
    fflush(stdout);
    while (access(stopfile, F_OK) != 0) {
        shim_poll();
        usleep(100 * 1000);
    }
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!objs[i])
            continue;
        for (size_t j = 0; j < sizes[i]; j++)
            bad += objs[i][j] != pattern(i, j);
        free(objs[i]);
    }
    if (bad)
        printf("bigheap: CORRUPT: %zu bad bytes\n", bad);
    else
        printf("bigheap: ok %zu objects, %zu MiB live\n", kept, live >> 20);
    free(objs);
    free(sizes);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "reserve") == 0)
        return reserve(strtoul(argv[2], NULL, 10));
    if (argc == 4 && strcmp(argv[1], "heap") == 0)
        return heap(strtoul(argv[2], NULL, 10), argv[3]);
    fprintf(stderr, "usage: bigheap reserve MAX | bigheap heap MIB STOPFILE\n");
    return 2;
}
