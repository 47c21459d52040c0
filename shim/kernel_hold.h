/*
 * kernel_hold.h: spans whose physical pages the kernel may hold.
 *
 * Meshing copies a span's objects to another physical page, maps its virtual pages there
 * and releases the old page.  A page the kernel has pinned (io_uring registered buffers,
 * an O_DIRECT read in flight, Linux AIO, vmsplice) stays the kernel's target: what it
 * writes afterwards lands in the released page and is lost.  The kernel offers no way to
 * ask whether a page is pinned, so the shim learns it from the calls that create pins
 * (kernel_calls.c interposes them) and marks the spans under their buffers:
 *   - holds that outlive the call: MESH_SPAN_FLAG_KERNEL_HELD, sticky until the span is
 *     freed;
 *   - reads that pin only while the call runs: kernel_io, counted up before the call
 *     enters the kernel and down after it returns.
 * The engine refuses a pair when either span is held (mesh_span_kernel_held), once under
 * the class lock before the barrier and once after the barrier is up.  Why that second
 * check is enough: a marker writes the mark (seq_cst) before its system call can pin;
 * the engine raises the barrier, then reads the marks (seq_cst).  If the engine misses the
 * mark, the pin is taken after the barrier went up, so it faults on the barrier and pins
 * whatever page the remap left there: the destination's.  The mark went to the record the
 * page map named; if that was the source, it is now a tombstone listed in the
 * destination's absorbed[], which mesh_span_kernel_held reads too, so the destination is
 * held from then on.
 */
#ifndef MESH_KERNEL_HOLD_H
#define MESH_KERNEL_HOLD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "span_table.h"

static inline int mesh_record_kernel_held(const struct mesh_span_record *r)
{
    return (atomic_load((_Atomic uint8_t *)&r->flags) & MESH_SPAN_FLAG_KERNEL_HELD) ||
           atomic_load((_Atomic uint32_t *)&r->kernel_io) != 0;
}

/* Span r or a span meshed into it (its tombstones) is held.  Class lock held. */
static inline int mesh_span_kernel_held(const struct mesh_span_record *r)
{
    if (mesh_record_kernel_held(r))
        return 1;
    unsigned n = r->virt_count;
    for (unsigned i = 1; i < n && i < MESH_MAX_VIRTUAL_SPANS; i++)
        if (mesh_record_kernel_held(mesh_record(r->absorbed[i - 1])))
            return 1;
    return 0;
}

/* Marks every small span under [addr, addr + len) KERNEL_HELD (ranges outside the arena
 * are ignored).  Addresses are integers here: the memory is never read. */
void mesh_kernel_hold(uintptr_t addr, size_t len);

/* As mesh_kernel_hold, for a hold that does not fault on the barrier (mlock: a shared
 * mapping is populated by read faults, which a write-protect lets through): returns only
 * once no mesh that missed the marks is still in flight on those spans, so what the
 * caller does next acts on the mapping the spans keep from then on. */
void mesh_kernel_hold_settled(uintptr_t addr, size_t len);

/* A read into the program's memory in flight: spans under its buffers counted in
 * kernel_io from begin to end.  Spans beyond the room in it are marked KERNEL_HELD. */
#define MESH_KERNEL_IO_SPANS 8
struct mesh_kernel_io {
    unsigned n;
    uint32_t ids[MESH_KERNEL_IO_SPANS];
};
void mesh_kernel_io_add(struct mesh_kernel_io *io, uintptr_t addr, size_t len);
void mesh_kernel_io_end(struct mesh_kernel_io *io);

#endif
