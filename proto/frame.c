/* frame.c: length-prefixed mesh.Envelope frames (see frame.h). */
#include "frame.h"

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t mesh_frame_length(const uint8_t *buf)
{
    uint32_t len = get_le32(buf);
    return len == 0 || len > MESH_FRAME_MAX ? 0 : MESH_FRAME_HEADER + (size_t)len;
}

int mesh_frame_check(const uint8_t *buf, size_t have, size_t *frame_len)
{
    if (have < MESH_FRAME_HEADER)
        return MESH_FRAME_INCOMPLETE;
    size_t len = mesh_frame_length(buf);
    if (len == 0)
        return MESH_FRAME_BAD;
    if (have < len)
        return MESH_FRAME_INCOMPLETE;
    *frame_len = len;
    return MESH_FRAME_READY;
}

size_t mesh_frame_pack(Mesh__Envelope *env, uint8_t *buf, size_t cap)
{
    env->version = MESH_PROTOCOL_VERSION;
    size_t len = mesh__envelope__get_packed_size(env);
    if (len == 0 || len > MESH_FRAME_MAX || cap < MESH_FRAME_HEADER || len > cap - MESH_FRAME_HEADER)
        return 0;
    buf[0] = (uint8_t)len;
    buf[1] = (uint8_t)(len >> 8);
    buf[2] = (uint8_t)(len >> 16);
    buf[3] = (uint8_t)(len >> 24);
    return MESH_FRAME_HEADER + mesh__envelope__pack(env, buf + MESH_FRAME_HEADER);
}

Mesh__Envelope *mesh_frame_unpack(const uint8_t *frame, size_t frame_len, ProtobufCAllocator *alloc,
                                  int *bad_version)
{
    *bad_version = 0;
    if (frame_len <= MESH_FRAME_HEADER)
        return NULL;
    Mesh__Envelope *env =
        mesh__envelope__unpack(alloc, frame_len - MESH_FRAME_HEADER, frame + MESH_FRAME_HEADER);
    if (env && env->version != MESH_PROTOCOL_VERSION) {
        *bad_version = 1;
        mesh__envelope__free_unpacked(env, alloc);
        return NULL;
    }
    return env;
}
