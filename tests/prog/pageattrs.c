/*
 * pageattrs: a program that sets attributes on heap pages it owns, while meshd meshes it:
 * locks them (a key in a malloc'ed buffer kept out of swap: libsodium's sodium_mlock),
 * makes them read-only (a config frozen after load) or keeps them out of core files.
 *
 *   pageattrs CONTROL_DIR HOW
 *
 * HOW: mlock, mlock2, mlock-syscall (syscall(SYS_mlock)), mprotect (PROT_READ),
 * mprotect-syscall, pkey (pkey_mprotect(PROT_READ, pkey -1)), dontdump
 * (madvise(MADV_DONTDUMP)), dontdump-syscall.
 * Allocates 8,000 page-sized, page-aligned patterned objects (posix_memalign), frees three
 * in four at random (a heap meshd can compact), sets the attribute on up to 100 survivors,
 * writes CONTROL_DIR/ready and churns page-sized blocks until CONTROL_DIR/stop appears.
 * Then checks every survivor byte for byte and, in /proc/self/smaps, that the mapping of
 * each page still carries the attribute (VmFlags "lo" for a lock, "dd" for DONTDUMP, no
 * "w" permission for PROT_READ): a mesh that remapped the page would have replaced its
 * mapping with a read-write, unlocked, dumpable one.  Undoes the attributes, frees
 * everything.  Prints "pageattrs: ok pages=N" and exits 0; 1 on any difference (with a
 * line saying what), 2 if a call failed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OBJECTS 8000
#define MAX_SET 100
#define PAGE 4096

static unsigned char *obj[OBJECTS];

static void fill(unsigned char *p, size_t k)
{
    for (size_t i = 0; i < PAGE; i++)
        p[i] = (unsigned char)(k * 7 + i);
}

static int intact(const unsigned char *p, size_t k)
{
    for (size_t i = 0; i < PAGE; i++)
        if (p[i] != (unsigned char)(k * 7 + i))
            return 0;
    return 1;
}

/* Sets (on = 1) or undoes the attribute of HOW on page p. */
static int set_attr(void *p, const char *how, int on)
{
    if (strncmp(how, "mlock", 5) == 0) {
        if (!on)
            return munlock(p, PAGE);
        if (strcmp(how, "mlock2") == 0)
            return mlock2(p, PAGE, 0);
        if (strcmp(how, "mlock-syscall") == 0)
            return (int)syscall(SYS_mlock, p, PAGE);
        return mlock(p, PAGE);
    }
    int prot = on ? PROT_READ : PROT_READ | PROT_WRITE;
    if (strcmp(how, "mprotect") == 0)
        return mprotect(p, PAGE, prot);
    if (strcmp(how, "mprotect-syscall") == 0)
        return (int)syscall(SYS_mprotect, p, PAGE, prot);
    if (strcmp(how, "pkey") == 0)
        return pkey_mprotect(p, PAGE, prot, -1);
    int advice = on ? MADV_DONTDUMP : MADV_DODUMP;
    if (strcmp(how, "dontdump") == 0)
        return madvise(p, PAGE, advice);
    if (strcmp(how, "dontdump-syscall") == 0)
        return (int)syscall(SYS_madvise, p, PAGE, advice);
    errno = EINVAL;
    return -1;
}

/* Whether the smaps entry (range line, VmFlags line) shows HOW's attribute. */
static int shows_attr(const char *how, const char *perms, const char *vmflags)
{
    if (strncmp(how, "mlock", 5) == 0)
        return strstr(vmflags, " lo") != NULL;
    if (strncmp(how, "dontdump", 8) == 0)
        return strstr(vmflags, " dd") != NULL;
    return perms[1] == '-';
}

/* Counts the pages of set[0..n) whose mapping shows the attribute. */
static int pages_showing(const char *how, uintptr_t *set, int n)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[1024], perms[8] = "";
    unsigned long lo = 0, hi = 0;
    int count = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long a, b;
        char p[8];
        if (sscanf(line, "%lx-%lx %7s", &a, &b, p) == 3) {
            lo = a, hi = b;
            memcpy(perms, p, sizeof perms);
        } else if (strncmp(line, "VmFlags:", 8) == 0 && shows_attr(how, perms, line + 7)) {
            for (int i = 0; i < n; i++)
                count += set[i] >= lo && set[i] < hi;
        }
    }
    if (f)
        fclose(f);
    return count;
}

static int exists(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pageattrs CONTROL_DIR HOW\n");
        return 2;
    }
    const char *dir = argv[1], *how = argv[2];
    uint64_t x = 3;
    for (size_t k = 0; k < OBJECTS; k++) {
        if (posix_memalign((void **)&obj[k], PAGE, PAGE) != 0)
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
    uintptr_t set[MAX_SET];
    size_t owner[MAX_SET];
    int n = 0;
    for (size_t k = 0; k < OBJECTS && n < MAX_SET; k += 37) {
        if (!obj[k])
            continue;
        if (set_attr(obj[k], how, 1) != 0) {
            printf("pageattrs: %s: %s\n", how, strerror(errno));
            return 2;
        }
        owner[n] = k;
        set[n++] = (uintptr_t)obj[k];
    }
    int before = pages_showing(how, set, n);
    if (before != n) {
        printf("pageattrs: %s: %d of %d pages show the attribute right after the calls\n", how, before, n);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/ready", dir);
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
    while (!exists(dir, "stop")) {
        for (int i = 0; i < 100; i++) {
            void *p;
            if (posix_memalign(&p, PAGE, PAGE) == 0) {
                memset(p, 1, PAGE);
                free(p);
            }
        }
        usleep(10000);
    }
    int bad = 0;
    for (size_t k = 0; k < OBJECTS; k++)
        if (obj[k] && !intact(obj[k], k) && bad++ < 5)
            printf("pageattrs: object %zu changed\n", k);
    int after = pages_showing(how, set, n);
    if (after != n) {
        printf("pageattrs: %s: %d of %d pages show the attribute after meshing\n", how, after, n);
        bad++;
    }
    for (int i = 0; i < n; i++)
        if (set_attr((void *)set[i], how, 0) != 0 && bad++ < 5)
            printf("pageattrs: undoing %s on object %zu: %s\n", how, owner[i], strerror(errno));
    for (size_t k = 0; k < OBJECTS; k++)
        free(obj[k]);
    if (bad)
        return 1;
    printf("pageattrs: ok pages=%d\n", n);
    return 0;
}
