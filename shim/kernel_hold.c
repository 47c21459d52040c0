/* kernel_hold.c: marking the spans under buffers the kernel holds (see kernel_hold.h). */
#include "kernel_hold.h"

#include "arena.h"
#include "global_heap.h"
#include "thread_heap.h"

/*
 * Calls fn(record id, ctx) once per small span (live record, or a tombstone a racing mesh
 * just made of it) that has a page in [addr, addr + len) within the arena.  Free pages
 * and large objects are skipped: neither is ever meshed.
 */
static void each_small_span(uintptr_t addr, size_t len, void (*fn)(uint32_t id, void *ctx),
                            void *ctx)
{
    if (len == 0 || !mesh_arena.bytes)
        return;
    uintptr_t base = (uintptr_t)mesh_arena.base, end_arena = base + mesh_arena.bytes;
    uintptr_t lo = addr, hi = lo + len;
    if (hi < lo)
        hi = UINTPTR_MAX;
    if (hi <= base || lo >= end_arena)
        return;
    if (lo < base)
        lo = base;
    if (hi > end_arena)
        hi = end_arena;
    /* Records change here without a lock: a shared op (span_table.h), entered only for a
     * range in the arena, so the shim's own I/O while the heap is frozen never waits. */
    struct mesh_thread_heap *h = mesh_thread_heap_for_free();
    mesh_shared_op_begin(h);
    uint32_t last_id = 0;
    for (uint32_t page = mesh_page_of((void *)lo), end = mesh_page_of((void *)(hi - 1)); page <= end;
         page++) {
        uint32_t id = mesh_pagemap_get(page);
        if (id == 0 || (id & MESH_PAGE_FREE_TAG) || id >= mesh_record_hwm() || id == last_id ||
            MESH_PAGEINFO_CLASS(mesh_pageinfo_get(page)) == 0)
            continue;
        last_id = id;
        fn(id, ctx);
    }
    mesh_shared_op_end(h);
}

/* Cheap first test, so that reads into the stack or static memory pay two compares: a
 * range can touch the arena only if one of its ends is in it or it is longer than a page
 * (each_small_span then clips it exactly). */
static int may_touch_arena(uintptr_t addr, size_t len)
{
    return mesh_in_arena((const void *)addr) || mesh_in_arena((const void *)(addr + len - 1)) ||
           len > MESH_PAGE_SIZE;
}

static void hold_one(uint32_t id, void *ctx)
{
    (void)ctx;
    atomic_fetch_or((_Atomic uint8_t *)&mesh_record(id)->flags, (uint8_t)MESH_SPAN_FLAG_KERNEL_HELD);
    mesh_record_changed(id);
}

void mesh_kernel_hold(uintptr_t addr, size_t len)
{
    if (may_touch_arena(addr, len))
        each_small_span(addr, len, hold_one, NULL);
}

static void hold_and_note_class(uint32_t id, void *ctx)
{
    hold_one(id, NULL);
    unsigned cls = atomic_load_explicit((_Atomic uint8_t *)&mesh_record(id)->size_class, memory_order_relaxed);
    if (cls < 64)
        *(uint64_t *)ctx |= (uint64_t)1 << cls;
}

void mesh_kernel_hold_settled(uintptr_t addr, size_t len)
{
    uint64_t classes = 0;
    if (may_touch_arena(addr, len))
        each_small_span(addr, len, hold_and_note_class, &classes);
    /* A mesh that read the marks before they were set holds its class lock from that
     * check until after its remap: taking each lock once waits it out.  Outside the
     * shared op above (a freeze quiesces shared ops, then takes these locks). */
    for (unsigned cls = 0; classes; cls++, classes >>= 1)
        if (classes & 1) {
            mesh_class_lock(cls);
            mesh_class_unlock(cls);
        }
}

static void io_one(uint32_t id, void *ctx)
{
    struct mesh_kernel_io *io = ctx;
    for (unsigned i = 0; i < io->n; i++)
        if (io->ids[i] == id)
            return;
    if (io->n == MESH_KERNEL_IO_SPANS) {
        hold_one(id, NULL);
        return;
    }
    atomic_fetch_add((_Atomic uint32_t *)&mesh_record(id)->kernel_io, 1);
    mesh_record_changed(id);
    io->ids[io->n++] = id;
}

void mesh_kernel_io_add(struct mesh_kernel_io *io, uintptr_t addr, size_t len)
{
    if (may_touch_arena(addr, len))
        each_small_span(addr, len, io_one, io);
}

void mesh_kernel_io_end(struct mesh_kernel_io *io)
{
    if (!io->n)
        return;
    struct mesh_thread_heap *h = mesh_thread_heap_for_free(); /* a shared op: see above */
    mesh_shared_op_begin(h);
    for (unsigned i = 0; i < io->n; i++) {
        atomic_fetch_sub((_Atomic uint32_t *)&mesh_record(io->ids[i])->kernel_io, 1);
        mesh_record_changed(io->ids[i]);
    }
    mesh_shared_op_end(h);
    io->n = 0;
}
