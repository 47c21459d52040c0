/* vma_attrs.c: mlock, mprotect and madvise on heap pages keep their spans unmeshed
 * (vma_attrs.h). */
#include "vma_attrs.h"

#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>

#include "common.h"
#include "interpose.h"
#include "kernel_hold.h"

void mesh_vma_attr_hold(const void *addr, size_t len)
{
    int saved = errno;
    mesh_kernel_hold_settled((uintptr_t)addr, len);
    errno = saved;
}

void mesh_vma_before_mprotect(const void *addr, size_t len, int prot)
{
    /* The window's own protection is read-write: anything else is the program's. */
    if (prot != (PROT_READ | PROT_WRITE))
        mesh_vma_attr_hold(addr, len);
}

void mesh_vma_before_madvise(const void *addr, size_t len, int advice)
{
    /* A secret kept out of core files; a range the child must not see. */
    if (advice == MADV_DONTDUMP || advice == MADV_DONTFORK)
        mesh_vma_attr_hold(addr, len);
}

#ifndef MESH_NO_INTERPOSE

static void *_Atomic next_mlock, *_Atomic next_mlock2, *_Atomic next_mprotect,
    *_Atomic next_pkey_mprotect, *_Atomic next_madvise;

__attribute__((constructor)) static void resolve_next(void)
{
    (void)mesh_next_symbol(&next_mlock, "mlock");
    (void)mesh_next_symbol(&next_mlock2, "mlock2");
    (void)mesh_next_symbol(&next_mprotect, "mprotect");
    (void)mesh_next_symbol(&next_pkey_mprotect, "pkey_mprotect");
    (void)mesh_next_symbol(&next_madvise, "madvise");
}

/* The next definition of a function, or NULL with errno ENOSYS. */
static void *next_or_enosys(void *_Atomic *slot, const char *name)
{
    void *f = mesh_next_symbol(slot, name);
    if (f == NULL)
        errno = ENOSYS;
    return f;
}

typedef int (*mprotect_fn)(void *, size_t, int);

int mesh_mprotect_real(void *addr, size_t len, int prot)
{
    mprotect_fn real = (mprotect_fn)next_or_enosys(&next_mprotect, "mprotect");
    return real ? real(addr, len, prot) : -1;
}

MESH_EXPORT int mlock(const void *addr, size_t len)
{
    int (*real)(const void *, size_t) = (int (*)(const void *, size_t))next_or_enosys(&next_mlock, "mlock");
    if (real == NULL)
        return -1;
    mesh_vma_attr_hold(addr, len);
    return real(addr, len);
}

MESH_EXPORT int mlock2(const void *addr, size_t len, unsigned int flags)
{
    int (*real)(const void *, size_t, unsigned int) =
        (int (*)(const void *, size_t, unsigned int))next_or_enosys(&next_mlock2, "mlock2");
    if (real == NULL)
        return -1;
    mesh_vma_attr_hold(addr, len);
    return real(addr, len, flags);
}

MESH_EXPORT int mprotect(void *addr, size_t len, int prot)
{
    mprotect_fn real = (mprotect_fn)next_or_enosys(&next_mprotect, "mprotect");
    if (real == NULL)
        return -1;
    mesh_vma_before_mprotect(addr, len, prot);
    return real(addr, len, prot);
}

MESH_EXPORT int pkey_mprotect(void *addr, size_t len, int prot, int pkey)
{
    int (*real)(void *, size_t, int, int) =
        (int (*)(void *, size_t, int, int))next_or_enosys(&next_pkey_mprotect, "pkey_mprotect");
    if (real == NULL)
        return -1;
    mesh_vma_attr_hold(addr, len); /* a key is an attribute whatever prot is */
    return real(addr, len, prot, pkey);
}

MESH_EXPORT int madvise(void *addr, size_t len, int advice)
{
    int (*real)(void *, size_t, int) = (int (*)(void *, size_t, int))next_or_enosys(&next_madvise, "madvise");
    if (real == NULL)
        return -1;
    mesh_vma_before_madvise(addr, len, advice);
    return real(addr, len, advice);
}

#else

int mesh_mprotect_real(void *addr, size_t len, int prot) { return mprotect(addr, len, prot); }

#endif /* MESH_NO_INTERPOSE */
