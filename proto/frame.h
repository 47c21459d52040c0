/*
 * frame.h: framing of mesh.proto messages on a stream socket.
 *
 *   frame = u32 little-endian payload length | payload (a packed mesh.Envelope)
 *
 * 0 < payload length <= MESH_FRAME_MAX; anything else is a protocol error and the
 * connection is closed.  Shared by the shim, meshd and meshctl; no allocation here:
 * callers pack into their own buffers and unpack with their own ProtobufCAllocator.
 */
#ifndef MESH_PROTO_FRAME_H
#define MESH_PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "mesh.pb-c.h"

#define MESH_PROTOCOL_VERSION 1u
#define MESH_FRAME_HEADER 4u
#define MESH_FRAME_MAX (1u << 20)

enum mesh_frame_status {
    MESH_FRAME_INCOMPLETE = 0, /* need more bytes */
    MESH_FRAME_READY = 1,      /* *frame_len bytes form one whole frame */
    MESH_FRAME_BAD = -1,       /* length 0 or over MESH_FRAME_MAX: close the connection */
};

/* Looks at the first `have` bytes received; on READY *frame_len is header + payload. */
int mesh_frame_check(const uint8_t *buf, size_t have, size_t *frame_len);

/* Length (header + payload) of the frame whose MESH_FRAME_HEADER header bytes are at buf,
 * or 0 for a bad length (MESH_FRAME_BAD): for readers that read the header first. */
size_t mesh_frame_length(const uint8_t *buf);

/* Packs env (its version set to MESH_PROTOCOL_VERSION) into buf as one frame.  Returns
 * the frame length, or 0 if it would not fit in cap or exceed MESH_FRAME_MAX. */
size_t mesh_frame_pack(Mesh__Envelope *env, uint8_t *buf, size_t cap);

/* Unpacks the payload of a READY frame.  NULL if malformed, or of another protocol
 * version (*bad_version set then).  Free with mesh__envelope__free_unpacked(e, alloc). */
Mesh__Envelope *mesh_frame_unpack(const uint8_t *frame, size_t frame_len,
                                  ProtobufCAllocator *alloc, int *bad_version);

#endif
