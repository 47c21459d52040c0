/*
 * ownmalloc: a program with a malloc of its own, as browsers (Chrome's allocator shim,
 * Firefox's mozjemalloc) define in their executable: malloc, free, calloc, realloc,
 * posix_memalign, aligned_alloc, memalign and malloc_usable_size, but not reallocarray
 * (glibc's calls the process's realloc).  The executable comes first in the symbol lookup order, so under
 * LD_PRELOAD=libmesh.so its malloc is the process's, and only the names it lacks reach
 * the shim, which must hand them to this allocator (init.c, fallback.h), never serve them
 * from its own arena: the shim's realloc of this allocator's block aborted with
 * "realloc(): invalid pointer".
 *
 *   ownmalloc
 *
 * Allocates through its own names, through reallocarray, and through libc functions that
 * allocate (strdup, getline's buffer), checks that every block lies
 * in its own region and keeps its bytes across reallocarray, frees everything, and checks
 * that the shim started no thread and mapped no arena.  Prints "ownmalloc: ok N blocks"
 * and exits 0; 1 with a line saying what went wrong.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define REGION (64u << 20)
#define HEADER 64u /* the block's size sits just before it; keeps 64-byte alignment */

static unsigned char *region;
static size_t used;
static size_t served;

static void *own_alloc(size_t align, size_t n)
{
    if (!region) {
        void *r = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (r == MAP_FAILED)
            return NULL;
        region = r;
    }
    if (align < HEADER)
        align = HEADER;
    size_t start = (used + HEADER + align - 1) & ~(align - 1);
    if (n > REGION || start + n > REGION) {
        errno = ENOMEM;
        return NULL;
    }
    used = start + n;
    served++;
    ((size_t *)(region + start))[-1] = n;
    return region + start;
}

static int own(const void *p)
{
    return region && (const unsigned char *)p >= region && (const unsigned char *)p < region + REGION;
}

static size_t own_size(const void *p) { return ((const size_t *)p)[-1]; }

void *malloc(size_t n) { return own_alloc(HEADER, n); }
void free(void *p)
{
    if (p && !own(p))
        abort(); /* a block of another heap: the shim served one of our names */
}
void *calloc(size_t k, size_t n)
{
    if (n && k > SIZE_MAX / n)
        return NULL;
    return own_alloc(HEADER, k * n); /* fresh mmap memory: zero */
}
void *realloc(void *p, size_t n)
{
    if (p && !own(p))
        abort();
    void *q = own_alloc(HEADER, n);
    if (q && p)
        memcpy(q, p, own_size(p) < n ? own_size(p) : n);
    return q;
}
int posix_memalign(void **out, size_t align, size_t n)
{
    void *p = own_alloc(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
void *aligned_alloc(size_t align, size_t n) { return own_alloc(align, n); }
void *memalign(size_t align, size_t n) { return own_alloc(align, n); }
size_t malloc_usable_size(void *p) { return p ? own_size(p) : 0; }

static int failed;

static void expect(int ok, const char *what)
{
    if (!ok && !failed++)
        printf("ownmalloc: %s\n", what);
}

int main(void)
{
    char *a = malloc(100);
    expect(a && own(a), "malloc did not use the program's own allocator");
    memset(a, 'x', 100);
    char *b = reallocarray(a, 10, 100); /* the program has no reallocarray */
    expect(b && own(b), "reallocarray's block is not the program's allocator's");
    for (int i = 0; b && i < 100; i++)
        expect(b[i] == 'x', "reallocarray lost the block's bytes");
    char *s = strdup("a string libc copies with malloc");
    expect(s && own(s), "strdup's block is not the program's");
    char *line = NULL;
    size_t cap = 0;
    FILE *f = fopen("/proc/self/status", "r");
    expect(f && getline(&line, &cap, f) > 0 && own(line), "getline's buffer is not the program's");
    if (f)
        fclose(f);
    free(b);
    free(s);
    free(line);
    /* The shim stepped aside: no thread of its own, no arena. */
    int tasks = 0;
    DIR *d = opendir("/proc/self/task");
    for (struct dirent *e; d && (e = readdir(d));)
        tasks += e->d_name[0] != '.';
    if (d)
        closedir(d);
    expect(tasks == 1, "a second thread runs (the shim's control thread)");
    f = fopen("/proc/self/maps", "r");
    char mapline[512];
    while (f && fgets(mapline, sizeof mapline, f))
        expect(strstr(mapline, "libmesh-") == NULL, "the shim mapped an arena");
    if (f)
        fclose(f);
    if (failed)
        return 1;
    printf("ownmalloc: ok %zu blocks\n", served);
    return 0;
}
