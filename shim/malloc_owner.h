/*
 * malloc_owner.h: whose malloc the process calls.
 *
 * Under LD_PRELOAD the first definition of malloc in the symbol lookup order is the
 * process's: normally this library's, but an executable may define its own (browsers'
 * allocator shims, mozjemalloc) and another allocator may be preloaded before this one.
 * Then only the names that allocator lacks reach the shim, which must not serve them from
 * its arena (init.c steps aside).  The answer cannot come from comparing function
 * addresses: in a non-PIE executable that takes malloc's address, every reference to
 * malloc (this library's GOT, dlsym) resolves to the executable's canonical PLT entry,
 * which only jumps to the real definition.  So the loaded objects' dynamic symbol tables
 * are read in load order (the global lookup order of the initially loaded objects: the
 * executable, the preloads, their dependencies) for the first one that *defines* malloc.
 */
#ifndef MESH_MALLOC_OWNER_H
#define MESH_MALLOC_OWNER_H

/* The address of the first definition of the function name in load order (a plain
 * function: an IFUNC's is skipped), or NULL if no loaded object defines it. */
void *mesh_first_definition(const char *name);

/* 1 if an object before this library in the lookup order defines malloc, else 0 (also
 * when nothing can be read: the shim then serves, as before). */
int mesh_another_malloc_serves(void);

#endif
