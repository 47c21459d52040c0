/*
 * fuzz_mesh_request: libFuzzer harness for what the shim does with meshd's bytes.  Each
 * input is a byte stream as meshd would send it; frames are cut with mesh_frame_check and
 * handed to control.c's own serve_frame() (this file includes control.c, so the static
 * decode path is the real one: bump-allocated unpack, MeshRequest pairs, the meshing
 * engine's checks and meshing under the barrier, the MeshReply packed; there is no
 * connection, so the reply's send fails and is ignored).
 *
 * The heap is live: a pool of objects of one class in spans whose live slots are spread so
 * that many pairs are disjoint, detached from this thread, every object patterned.  After
 * every input each surviving object must still hold its pattern, byte for byte, whatever
 * meshd asked: a request may only mesh or be refused.  The pool is rebuilt every
 * POOL_INPUTS inputs so that meshable pairs keep existing.
 * Seeds: tests/fuzz/seeds/fuzz_mesh_request/.  Run: make fuzz (long) or make fuzz-test.
 */
#include "../../shim/control.c"

#include <stdio.h>

#define OBJ_SIZE 256u /* class 256: one page, 16 slots */
#define POOL 1024u
#define POOL_INPUTS 256u

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *pool[POOL];
static unsigned inputs;

static uint8_t pattern(unsigned i, unsigned j) { return (uint8_t)(i * 7 + j + 1); }

static void pool_free(void)
{
    for (unsigned i = 0; i < POOL; i++) {
        mesh_free(pool[i]);
        pool[i] = NULL;
    }
}

/* Allocates the pool, keeps in span s only the slots congruent to s mod 4 (spans of other
 * residues are then disjoint), and detaches the spans from this thread. */
static void pool_build(void)
{
    for (unsigned i = 0; i < POOL; i++) {
        pool[i] = mesh_malloc(OBJ_SIZE);
        if (!pool[i])
            __builtin_trap();
        for (unsigned j = 0; j < OBJ_SIZE; j++)
            pool[i][j] = pattern(i, j);
    }
    for (unsigned i = 0; i < POOL; i++) {
        unsigned slot = (unsigned)(((uintptr_t)pool[i] & (MESH_PAGE_SIZE - 1)) / OBJ_SIZE);
        if (slot % 4 != mesh_span_of(pool[i]) % 4) {
            mesh_free(pool[i]);
            pool[i] = NULL;
        }
    }
    mesh_thread_flush();
}

static void pool_check(void)
{
    for (unsigned i = 0; i < POOL; i++)
        for (unsigned j = 0; pool[i] && j < OBJ_SIZE; j++)
            if (pool[i][j] != pattern(i, j)) {
                fprintf(stderr, "object %u byte %u corrupt after a request\n", i, j);
                __builtin_trap();
            }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    setenv("MESH_NO_MESHD", "1", 1); /* no control thread: this harness is meshd */
    pool_build();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > sizeof in_buf)
        return 0;
    if (++inputs % POOL_INPUTS == 0) {
        pool_free();
        pool_build();
    }
    memcpy(in_buf, data, size);
    in_len = size;
    for (;;) {
        size_t frame_len;
        if (mesh_frame_check(in_buf, in_len, &frame_len) != MESH_FRAME_READY)
            break;
        /* -1 here is mostly the reply's send failing (no connection); where the shim
         * would hang up, go on instead, so one input can carry many requests */
        (void)serve_frame(frame_len);
    }
    in_len = 0;
    pool_check();
    return 0;
}
