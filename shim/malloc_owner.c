/* malloc_owner.c: the first object that defines malloc (malloc_owner.h). */
#include "malloc_owner.h"

#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <string.h>

#include "mesh.h"

/* A dynamic-section pointer: relocated in place by the loader for most objects, left as
 * an offset where the section is read-only (the vDSO). */
static const void *dyn_ptr(const struct dl_phdr_info *info, ElfW(Addr) p)
{
    return (const void *)(p < info->dlpi_addr ? p + info->dlpi_addr : p);
}

static int defines(const ElfW(Sym) *sym)
{
    /* An IFUNC's value is its resolver's address, not the function's: not used here. */
    return sym->st_shndx != SHN_UNDEF && sym->st_value != 0 && ELF64_ST_TYPE(sym->st_info) == STT_FUNC;
}

/* The symbol name in a DT_GNU_HASH table (only defined symbols are hashed). */
static const ElfW(Sym) *gnu_lookup(const uint32_t *table, const ElfW(Sym) *symtab, const char *strtab,
                                   const char *name)
{
    uint32_t h = 5381;
    for (const char *s = name; *s; s++)
        h = h * 33 + (unsigned char)*s;
    uint32_t nbuckets = table[0], symoffset = table[1], bloom_words = table[2];
    if (nbuckets == 0)
        return NULL;
    const ElfW(Addr) *bloom = (const ElfW(Addr) *)(table + 4);
    const uint32_t *buckets = (const uint32_t *)(bloom + bloom_words);
    const uint32_t *chain = buckets + nbuckets;
    uint32_t i = buckets[h % nbuckets];
    if (i < symoffset)
        return NULL;
    for (;; i++) {
        uint32_t hi = chain[i - symoffset];
        if ((hi | 1) == (h | 1) && strcmp(strtab + symtab[i].st_name, name) == 0)
            return &symtab[i];
        if (hi & 1)
            return NULL;
    }
}

/* The symbol name in a DT_HASH table. */
static const ElfW(Sym) *sysv_lookup(const uint32_t *table, const ElfW(Sym) *symtab, const char *strtab,
                                    const char *name)
{
    uint32_t h = 0;
    for (const char *s = name; *s; s++) {
        h = (h << 4) + (unsigned char)*s;
        uint32_t g = h & 0xf0000000u;
        h ^= g >> 24;
        h &= ~g;
    }
    uint32_t nbuckets = table[0], nchain = table[1];
    if (nbuckets == 0)
        return NULL;
    const uint32_t *buckets = table + 2, *chain = buckets + nbuckets;
    for (uint32_t i = buckets[h % nbuckets]; i != STN_UNDEF && i < nchain; i = chain[i])
        if (strcmp(strtab + symtab[i].st_name, name) == 0)
            return &symtab[i];
    return NULL;
}

struct search {
    const char *name;
    void *found;
};

/* Per object, in load order: stops (returns 1) at the first that defines the name. */
static int first_definer(struct dl_phdr_info *info, size_t size, void *ctx)
{
    (void)size;
    struct search *q = ctx;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (dyn == NULL)
        return 0;
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    const uint32_t *gnu = NULL, *sysv = NULL;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_SYMTAB: symtab = dyn_ptr(info, dyn->d_un.d_ptr); break;
        case DT_STRTAB: strtab = dyn_ptr(info, dyn->d_un.d_ptr); break;
        case DT_GNU_HASH: gnu = dyn_ptr(info, dyn->d_un.d_ptr); break;
        case DT_HASH: sysv = dyn_ptr(info, dyn->d_un.d_ptr); break;
        default: break;
        }
    }
    if (symtab == NULL || strtab == NULL)
        return 0;
    const ElfW(Sym) *sym = gnu    ? gnu_lookup(gnu, symtab, strtab, q->name)
                           : sysv ? sysv_lookup(sysv, symtab, strtab, q->name)
                                  : NULL;
    if (sym == NULL || !defines(sym))
        return 0;
    q->found = (void *)(info->dlpi_addr + sym->st_value);
    return 1;
}

void *mesh_first_definition(const char *name)
{
    struct search q = {name, NULL};
    dl_iterate_phdr(first_definer, &q);
    return q.found;
}

int mesh_another_malloc_serves(void)
{
#ifdef MESH_NO_INTERPOSE
    return 0; /* nothing is interposed: the process's malloc is glibc's by design */
#else
    void *first = mesh_first_definition("malloc");
    return first != NULL && first != (void *)mesh_malloc;
#endif
}
