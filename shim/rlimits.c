/* rlimits.c: shrinking the reservation before a limit is lowered (rlimits.h). */
#include "rlimits.h"

#include <errno.h>
#include <unistd.h>

#include "alias_map.h"
#include "arena.h"
#include "common.h"
#include "init.h"
#include "interpose.h"
#include "slot_origin.h"
#include "span_table.h"

void mesh_rlimit_lowering(pid_t pid, int resource, const struct rlimit *new)
{
    if (new == NULL || (resource != RLIMIT_AS && resource != RLIMIT_DATA) ||
        (pid != 0 && pid != getpid()) || atomic_load(&mesh_init_state) != MESH_INIT_DONE)
        return;
    int saved = errno;
    struct rlimit as, data;
    if (getrlimit(RLIMIT_AS, &as) != 0)
        as.rlim_cur = RLIM_INFINITY;
    if (getrlimit(RLIMIT_DATA, &data) != 0)
        data.rlim_cur = RLIM_INFINITY;
    if (resource == RLIMIT_AS)
        as.rlim_cur = new->rlim_cur;
    else
        data.rlim_cur = new->rlim_cur;
    size_t want = mesh_arena_bytes_within(as.rlim_cur, data.rlim_cur);
    uint32_t old_pages = mesh_arena.total_pages;
    if (want && want < mesh_arena.bytes) {
        size_t now = mesh_arena_shrink(want);
        mesh_alias_shrink(old_pages, mesh_arena.total_pages);
        mesh_origin_shrink(mesh_span_table_shrink(now));
    }
    errno = saved;
}

#ifndef MESH_NO_INTERPOSE

static void *_Atomic next_setrlimit, *_Atomic next_prlimit;

__attribute__((constructor)) static void resolve_next(void)
{
    (void)mesh_next_symbol(&next_setrlimit, "setrlimit");
    (void)mesh_next_symbol(&next_prlimit, "prlimit");
}

typedef int (*setrlimit_fn)(__rlimit_resource_t, const struct rlimit *);
typedef int (*prlimit_fn)(pid_t, __rlimit_resource_t, const struct rlimit *, struct rlimit *);

MESH_EXPORT int setrlimit(__rlimit_resource_t resource, const struct rlimit *rl)
{
    setrlimit_fn real = (setrlimit_fn)mesh_next_symbol(&next_setrlimit, "setrlimit");
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    mesh_rlimit_lowering(0, (int)resource, rl);
    return real(resource, rl);
}

MESH_EXPORT int prlimit(pid_t pid, __rlimit_resource_t resource, const struct rlimit *new, struct rlimit *old)
{
    prlimit_fn real = (prlimit_fn)mesh_next_symbol(&next_prlimit, "prlimit");
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    mesh_rlimit_lowering(pid, (int)resource, new);
    return real(pid, resource, new, old);
}

/* The *64 names: on 64-bit systems struct rlimit64 is struct rlimit, and glibc's are the
 * same functions. */
_Static_assert(sizeof(struct rlimit64) == sizeof(struct rlimit), "rlimit64 is rlimit");

MESH_EXPORT int setrlimit64(__rlimit_resource_t resource, const struct rlimit64 *rl)
{
    return setrlimit(resource, (const struct rlimit *)rl);
}

MESH_EXPORT int prlimit64(pid_t pid, __rlimit_resource_t resource, const struct rlimit64 *new,
                          struct rlimit64 *old)
{
    return prlimit(pid, resource, (const struct rlimit *)new, (struct rlimit *)old);
}

#endif /* MESH_NO_INTERPOSE */
