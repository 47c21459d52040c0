/*
 * memlock: a program that locks its memory with mlockall(MCL_CURRENT | MCL_FUTURE), as
 * real-time and secret-keeping daemons do, then uses its heap.
 *
 *   memlock [MiB=64 [syscall]]
 *
 * With `syscall` the call is made through syscall(SYS_mlockall, ...), as a program that
 * bypasses libc's wrapper does.
 * After the call it allocates MiB mebibytes of patterned objects (16 B to 4 KiB, one in 64
 * of 64 KiB), frees three in four, calls malloc_trim(0), allocates again with calloc
 * (each block must read zero: pages the allocator gave back and took again) and checks
 * every survivor byte for byte.  Prints "memlock: ok locked=<VmLck kB> rss=<VmRSS kB>
 * trimmed=<kB>" (trimmed: VmRSS before minus after the trim) and exits 0; exit 1 on
 * corrupted data, 2 if mlockall failed (with the error), 3 if malloc failed.
 * Under glibc this takes a second.  A shim that faulted in its reservation hung in the call
 * until the machine ran out of memory.
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

struct object {
    unsigned char *p;
    size_t size;
};

static size_t object_size(uint64_t *x)
{
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t r = *x >> 33;
    return (r & 63) == 0 ? (size_t)64 << 10 : 16 + (size_t)(r % 4081);
}

/* VmLck or VmRSS from /proc/self/status, in kB; -1 if not found. */
static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
    int through_syscall = argc > 2 && strcmp(argv[2], "syscall") == 0;
    if ((through_syscall ? (int)syscall(SYS_mlockall, MCL_CURRENT | MCL_FUTURE) : mlockall(MCL_CURRENT | MCL_FUTURE)) != 0) {
        printf("memlock: mlockall: %s\n", strerror(errno));
        return 2;
    }
    size_t cap = mib << 11, n = 0, bytes = 0;
    struct object *obj = calloc(cap, sizeof *obj);
    if (!obj)
        return 3;
    uint64_t x = 42;
    while (bytes < mib << 20 && n < cap) {
        size_t size = object_size(&x);
        unsigned char *p = malloc(size);
        if (!p)
            return 3;
        memset(p, (int)(n % 251), size);
        obj[n++] = (struct object){p, size};
        bytes += size;
    }
    for (size_t i = 0; i < n; i++)
        if (i % 4 != 0) {
            free(obj[i].p);
            obj[i].p = NULL;
        }
    long before = status_kb("VmRSS");
    malloc_trim(0);
    long after = status_kb("VmRSS");
    for (size_t i = 0; i < n; i++) {
        if (obj[i].p)
            continue;
        unsigned char *p = calloc(1, obj[i].size);
        if (!p)
            return 3;
        for (size_t k = 0; k < obj[i].size; k++)
            if (p[k] != 0) {
                printf("memlock: calloc'ed block %zu of %zu bytes has byte %zu = %u\n", i, obj[i].size, k, p[k]);
                return 1;
            }
        obj[i].p = p;
        memset(p, (int)(i % 251), obj[i].size);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < obj[i].size; k++)
            if (obj[i].p[k] != (unsigned char)(i % 251)) {
                printf("memlock: object %zu of %zu bytes differs at byte %zu\n", i, obj[i].size, k);
                return 1;
            }
    printf("memlock: ok locked=%ld rss=%ld trimmed=%ld\n", status_kb("VmLck"), status_kb("VmRSS"), before - after);
    for (size_t i = 0; i < n; i++)
        free(obj[i].p);
    free(obj);
    return 0;
}
