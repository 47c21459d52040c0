/*
 * lockrange: a program that mlock()s parts of its heap, as a daemon keeping keys or
 * passwords in malloc'ed buffers does (libsodium's sodium_mlock, gnupg's secure memory
 * fallbacks), while meshd meshes it.
 *
 *   lockrange CONTROL_DIR [mlock|mlock2|syscall]
 *
 * Allocates 400,000 patterned 64-byte objects, frees three in four at random (a heap
 * meshd can compact), then locks up to 200 pages that hold survivors, one call per page
 * through the named way (mlock by default; mlock2; syscall(SYS_mlock)).  Writes
 * CONTROL_DIR/ready and churns small blocks until CONTROL_DIR/stop appears; then checks
 * every survivor byte for byte, that VmLck is what it was after the calls (a mesh that
 * remapped a locked page would have dropped its lock: the page could reach swap), that
 * each locked page is still resident (mincore), and unlocks each page.  Prints
 * "lockrange: ok pages=N locked=<kB>" and exits 0; 1 on any difference (with a line
 * saying what), 2 if a lock call failed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OBJECTS 400000
#define SIZE 64
#define MAX_LOCKED 200

static unsigned char *obj[OBJECTS];

static void fill(unsigned char *p, size_t k)
{
    for (size_t i = 0; i < SIZE; i++)
        p[i] = (unsigned char)(k * 7 + i);
}

static int intact(const unsigned char *p, size_t k)
{
    for (size_t i = 0; i < SIZE; i++)
        if (p[i] != (unsigned char)(k * 7 + i))
            return 0;
    return 1;
}

static long vmlck_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmLck:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static int lock_page(void *page, size_t len, const char *how)
{
    if (strcmp(how, "mlock2") == 0)
        return mlock2(page, len, 0);
    if (strcmp(how, "syscall") == 0)
        return (int)syscall(SYS_mlock, page, len);
    return mlock(page, len);
}

static int exists(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: lockrange CONTROL_DIR [mlock|mlock2|syscall]\n");
        return 2;
    }
    const char *dir = argv[1], *how = argc > 2 ? argv[2] : "mlock";
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint64_t x = 3;
    for (size_t k = 0; k < OBJECTS; k++) {
        if (!(obj[k] = malloc(SIZE)))
            return 2;
        fill(obj[k], k);
    }
    for (size_t k = 0; k < OBJECTS; k++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        if ((x >> 33) % 4 != 0) {
            free(obj[k]);
            obj[k] = NULL;
        }
    }
    uintptr_t locked[MAX_LOCKED];
    int n = 0;
    for (size_t k = 0; k < OBJECTS && n < MAX_LOCKED; k += 997) {
        if (!obj[k])
            continue;
        uintptr_t p = (uintptr_t)obj[k] & ~(uintptr_t)(page - 1);
        int seen = 0;
        for (int i = 0; i < n; i++)
            seen |= locked[i] == p;
        if (seen)
            continue;
        if (lock_page(obj[k], SIZE, how) != 0) { /* the kernel rounds to whole pages */
            printf("lockrange: %s: %s\n", how, strerror(errno));
            return 2;
        }
        locked[n++] = p;
    }
    long before = vmlck_kb();
    char path[4096];
    snprintf(path, sizeof path, "%s/ready", dir);
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
    while (!exists(dir, "stop")) {
        for (int i = 0; i < 1000; i++)
            free(malloc(SIZE));
        usleep(10000);
    }
    int bad = 0;
    for (size_t k = 0; k < OBJECTS; k++)
        if (obj[k] && !intact(obj[k], k) && bad++ < 5)
            printf("lockrange: object %zu changed\n", k);
    long after = vmlck_kb();
    if (after != before) {
        printf("lockrange: VmLck %ld kB after meshing, %ld kB after the %d lock calls\n", after, before, n);
        bad++;
    }
    for (int i = 0; i < n; i++) {
        unsigned char resident = 0;
        if (mincore((void *)locked[i], page, &resident) != 0 || !(resident & 1)) {
            printf("lockrange: locked page %#lx not resident\n", (unsigned long)locked[i]);
            bad++;
        }
        if (munlock((void *)locked[i], page) != 0) {
            printf("lockrange: munlock %#lx: %s\n", (unsigned long)locked[i], strerror(errno));
            bad++;
        }
    }
    if (bad)
        return 1;
    printf("lockrange: ok pages=%d locked=%ld\n", n, before);
    return 0;
}
