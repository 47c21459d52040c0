/* init.c: process-wide set-up, and the optional stats line at exit. */
#include "init.h"

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "control.h"
#include "malloc_owner.h"
#include "mesh.h"
#include "report.h"
#include "sandbox.h"
#include "size_class.h"
#include "slot_origin.h"
#include "span_table.h"
#include "thread_heap.h"

_Atomic int mesh_init_state;
_Atomic int mesh_init_yielded;

/* The heap's set-up, by the thread that moved the state to RUNNING. */
static void init_heap(void)
{
    mesh_size_classes_init();
    mesh_sandbox_check(); /* before the first memfd_create: a filter may kill for it */
    if (mesh_arena_init() != 0 || mesh_span_table_init(mesh_arena.bytes) != 0) {
        atomic_store(&mesh_init_state, MESH_INIT_FAILED);
        return;
    }
    mesh_sandbox_note_arena(mesh_arena.shared, !mesh_file_size_allowed(mesh_arena.bytes));
    mesh_thread_heaps_init();
    mesh_origin_init(); /* failing, it turns meshing off: the allocator works without it */
    atomic_store(&mesh_init_state, MESH_INIT_DONE);
    /* pthread_atfork may allocate: the heap is ready by now. */
    mesh_fork_init();
    /* No control thread yet: it starts later, from an allocation slow path (control.c). */
    mesh_control_arm();
}

static void wait_while_running(void)
{
    while (atomic_load(&mesh_init_state) == MESH_INIT_RUNNING)
        sched_yield();
}

void mesh_init_slow(void)
{
    int expected = MESH_INIT_NONE;
    if (!atomic_compare_exchange_strong(&mesh_init_state, &expected, MESH_INIT_RUNNING)) {
        wait_while_running();
        return;
    }
    /* Another malloc serves the process (malloc_owner.h): its malloc and free are the
     * program's, and the names it lacks must go where the process's lookup leads, not
     * into an arena (fallback.h).  No arena, no control thread, until that malloc turns
     * out to be a wrapper that calls this one (mesh_init_take_over). */
    if (mesh_another_malloc_serves()) {
        atomic_store(&mesh_init_yielded, 1);
        atomic_store(&mesh_init_state, MESH_INIT_FAILED);
        return;
    }
    init_heap();
}

int mesh_init_take_over(void)
{
    int expected = MESH_INIT_FAILED;
    if (atomic_load(&mesh_init_yielded) &&
        atomic_compare_exchange_strong(&mesh_init_state, &expected, MESH_INIT_RUNNING)) {
        atomic_store(&mesh_init_yielded, 0);
        init_heap();
    } else {
        wait_while_running();
    }
    return atomic_load(&mesh_init_state) == MESH_INIT_DONE;
}

int mesh_nth_call(struct mesh_nth_call *knob, const char *name)
{
    if (!knob->read) {
        const char *env = getenv(name);
        knob->at = env ? strtoul(env, NULL, 10) : 0;
        knob->read = 1;
    }
    return knob->at && ++knob->calls == knob->at;
}

/* A program that never calls malloc still gets its heap set up (and its stats line). */
__attribute__((constructor)) static void mesh_constructor(void) { (void)mesh_ready(); }

/* MESH_SHOW_STATS=1: one line on stderr at exit, like MIMALLOC_SHOW_STATS.
 * MESH_SHOW_STATS=/abs/path: the line is appended to that file instead (programs such as
 * coreutils close stderr before exit).  The preload tests use it to prove the shim served
 * the program. */
/* " name=value" */
static void stats_field(struct mesh_line *l, const char *name_eq, uint64_t value)
{
    mesh_line_str(l, name_eq);
    mesh_line_u64(l, value);
}

/* The stats line's fields after the pid, for a heap that was set up. */
static void stats_fields(struct mesh_line *l)
{
    struct mesh_stats s;
    mesh_stats_get(&s);
    stats_field(l, " spans=", s.spans_created);
    stats_field(l, " large=", s.large_allocs);
    stats_field(l, " heap_bytes=", s.heap_bytes);
    stats_field(l, " live_bytes=", s.live_bytes);
    stats_field(l, " dirty_bytes=", s.dirty_bytes);
    stats_field(l, " released_bytes=", s.released_bytes);
    mesh_line_str(l, " arena=");
    mesh_line_str(l, s.shared_arena ? "memfd" : "private");
    if (s.private_reason == MESH_PRIVATE_SECCOMP)
        mesh_line_str(l, " private_reason=seccomp");
    else if (s.private_reason == MESH_PRIVATE_NO_MEMFD)
        mesh_line_str(l, " private_reason=no-memfd");
    else if (s.private_reason == MESH_PRIVATE_FILE_SIZE)
        mesh_line_str(l, " private_reason=file-size");
    if (!mesh_spans.publishable) /* registration refused for good (a filter, no seal) */
        mesh_line_str(l, " table=unpublishable");
    uint64_t cow_forks, cow_writes;
    int cow_active;
    mesh_fork_cow_counts(&cow_forks, &cow_writes, &cow_active);
    uint64_t shared_forks = mesh_fork_shared_count();
    if (cow_forks || shared_forks) { /* fork_cow.h, fork_share.h */
        stats_field(l, " cow_forks=", cow_forks);
        stats_field(l, " shared_forks=", shared_forks);
        stats_field(l, " cow_writes=", cow_writes);
    }
}

__attribute__((destructor)) static void mesh_destructor(void)
{
    const char *show = getenv("MESH_SHOW_STATS");
    int state = atomic_load(&mesh_init_state);
    if (!show || !*show || strcmp(show, "0") == 0 || (state != MESH_INIT_DONE && state != MESH_INIT_FAILED))
        return;
    struct mesh_line l = {.len = 0};
    mesh_line_str(&l, "libmesh: stats pid=");
    mesh_line_u64(&l, (uint64_t)getpid());
    if (state == MESH_INIT_FAILED && mesh_init_yielded) /* another malloc served */
        mesh_line_str(&l, " arena=none fallback=another-malloc");
    else if (state == MESH_INIT_FAILED) /* no heap could be set up: glibc's served (fallback.h) */
        mesh_line_str(&l, " arena=none fallback=glibc");
    else
        stats_fields(&l);
    if (show[0] == '/') {
        int fd = open(show, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            mesh_line_write(&l, fd);
            close(fd);
        }
    } else {
        mesh_line_write(&l, STDERR_FILENO);
    }
}
