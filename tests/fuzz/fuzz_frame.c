/*
 * fuzz_frame: libFuzzer harness for the frame decoder every peer runs on hostile bytes
 * (meshd on clients' frames, the shim on meshd's).  Each input is treated as a byte
 * stream: frames are cut with mesh_frame_check and unpacked both with protobuf-c's default
 * allocator (meshd) and with a small fixed arena (the shim's bump allocator), then every
 * decoded repeated field is walked.  Run: make fuzz [FUZZ_SECONDS=60]
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "frame.h"

static uint8_t arena[1 << 20];
static size_t used;

static void *bump_alloc(void *data, size_t size)
{
    (void)data;
    size = (size + 15) & ~(size_t)15;
    if (size > sizeof arena - used)
        return NULL;
    void *p = arena + used;
    used += size;
    return p;
}

static void bump_free(void *data, void *p) { (void)data, (void)p; }

static ProtobufCAllocator bump = {.alloc = bump_alloc, .free = bump_free};

static uint64_t walk(const Mesh__Envelope *env)
{
    uint64_t sum = env->version;
    switch (env->body_case) {
    case MESH__ENVELOPE__BODY_MESH_REQUEST:
        for (size_t i = 0; i < env->mesh_request->n_dst; i++)
            sum += env->mesh_request->dst[i];
        for (size_t i = 0; i < env->mesh_request->n_src; i++)
            sum += env->mesh_request->src[i];
        break;
    case MESH__ENVELOPE__BODY_REGISTER:
        sum += env->register_->exe ? strlen(env->register_->exe) : 0;
        break;
    case MESH__ENVELOPE__BODY_PROCESS_LIST:
        for (size_t i = 0; i < env->process_list->n_processes; i++)
            sum += env->process_list->processes[i]->n_classes;
        break;
    case MESH__ENVELOPE__BODY_POLICY_REQUEST:
        for (size_t i = 0; i < env->policy_request->n_set; i++)
            sum += strlen(env->policy_request->set[i]);
        break;
    default:
        break;
    }
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    volatile uint64_t sink = 0;
    while (size) {
        size_t frame_len;
        int st = mesh_frame_check(data, size, &frame_len);
        if (st != MESH_FRAME_READY)
            break;
        int bad_version;
        Mesh__Envelope *env = mesh_frame_unpack(data, frame_len, NULL, &bad_version);
        if (env) {
            sink += walk(env);
            mesh__envelope__free_unpacked(env, NULL);
        }
        used = 0;
        env = mesh_frame_unpack(data, frame_len, &bump, &bad_version);
        if (env)
            sink += walk(env);
        data += frame_len;
        size -= frame_len;
    }
    (void)sink;
    return 0;
}
