/*
 * vma_attrs.h: attributes a program sets on its mapping of heap pages.
 *
 * mlock(2), mprotect(2) and some madvise(2) advices (MADV_DONTDUMP, MADV_DONTFORK) change
 * the mapping (the VMA) of a range, not the memory.  A mesh replaces a source span's
 * mapping with one of the destination's physical page, made from the window (read-write,
 * unlocked, dumpable), so it silently dropped what the program had set: a locked key could
 * reach swap, a read-only page became writable, an executable one (libffi closures, small
 * JITs in malloc'ed memory) faulted when called, a guard page stopped guarding, a secret
 * marked DONTDUMP went to the core file.  So the calls are interposed (also through
 * syscall(2), kernel_calls.c): the spans under an arena range are marked held
 * (kernel_hold.h: never meshed again until freed) before the call is made.
 */
#ifndef MESH_VMA_ATTRS_H
#define MESH_VMA_ATTRS_H

#include <stddef.h>

/* Before a call that sets an attribute on [addr, addr + len): the arena's spans under
 * the range are never meshed from now on (until freed), and no mesh of theirs is in
 * flight when this returns.  errno kept. */
void mesh_vma_attr_hold(const void *addr, size_t len);

/* Before mprotect(addr, len, prot) and madvise(addr, len, advice): mesh_vma_attr_hold
 * when the call sets an attribute a mesh would drop. */
void mesh_vma_before_mprotect(const void *addr, size_t len, int prot);
void mesh_vma_before_madvise(const void *addr, size_t len, int advice);

/* libc's mprotect, not the interposer: the shim's own barrier protects spans it meshes. */
int mesh_mprotect_real(void *addr, size_t len, int prot);

#endif
