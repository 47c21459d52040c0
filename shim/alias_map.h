/*
 * alias_map.h: how the arena's virtual pages map onto its file, and what meshing's
 * remappings cost in kernel mappings (VMAs).
 *
 * Arena page v shows file page v + shift(v).  shift is 0 (identity) except on the virtual
 * spans meshing made aliases of another span's physical pages.  The kernel merges
 * neighbouring pages of one file mapping into one VMA exactly when their file pages are
 * consecutive, that is when their shifts are equal, so
 *
 *     VMAs spanning the arena == 1 + breaks,    breaks == #{ v : shift(v) != shift(v+1) }
 *
 * (a barrier's protection splits VMAs too, for the length of one mesh only).  Every VMA of
 * the process counts against vm.max_map_count, and running out makes the program's own
 * mmap fail, so meshing may raise `breaks` up to mesh_alias_limit() and no further.
 * Adjacent aliases of adjacent physical spans merge, which is why meshd proposes pairs in
 * address order (meshd/mesher.c): a run of such meshes costs two breaks, not two per mesh.
 *
 * All remapping of arena pages goes through mesh_alias_map(), which keeps shift() and
 * breaks in step with the kernel under one lock.
 */
#ifndef MESH_ALIAS_MAP_H
#define MESH_ALIAS_MAP_H

#include <stdint.h>

/* Maps virtual pages [virt, virt+n) onto file pages [phys, phys+n), read-write; virt ==
 * phys restores the identity.  0 on success, -1 (errno set) if the kernel refused: then
 * the old mapping is still in place. */
int mesh_alias_map(uint32_t virt, uint32_t phys, uint32_t n);

/* Change in breaks if [virt, virt+n) were mapped onto [phys, phys+n) now (-2..+2 for a
 * range that is one mapping today). */
int mesh_alias_cost(uint32_t virt, uint32_t phys, uint32_t n);

/* Breaks now, and the most meshing may create: MESH_MAP_BUDGET, else half of
 * vm.max_map_count (the other half stays with the program). */
uint32_t mesh_alias_breaks(void);
uint32_t mesh_alias_limit(void);

/* The file page arena page virt shows now (the shadow, without the lock: exact unless a
 * remap of that very page is in flight). */
uint32_t mesh_alias_phys(uint32_t virt);

/* Fork child, after the arena was re-mapped onto a new file as one identity mapping. */
void mesh_alias_reset(void);

/* The arena shrank from old_pages to pages (mesh_arena_shrink): the shadow's tail goes. */
void mesh_alias_shrink(uint32_t old_pages, uint32_t pages);

#endif
