/*
 * io_full.h: moving a whole buffer through a descriptor, for the shim, meshd and meshctl.
 * A short transfer goes on where it stopped and a signal (EINTR) never cuts one short.
 * Header-only (nothing to link) and async-signal-safe: no allocation, only the system call.
 */
#ifndef MESH_PROTO_IO_FULL_H
#define MESH_PROTO_IO_FULL_H

#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

enum mesh_io_op { MESH_IO_WRITE, MESH_IO_PWRITE, MESH_IO_PREAD, MESH_IO_SEND, MESH_IO_RECV };

/*
 * Transfers len bytes at buf: at file offset off for PREAD/PWRITE (ignored otherwise), with
 * `flags` for SEND/RECV (ignored otherwise).  Returns the bytes moved: len, or fewer when a
 * call failed (errno says why, e.g. EAGAIN on a non-blocking socket) or moved nothing (end
 * of file, peer gone: errno 0).
 */
static inline size_t mesh_io_full(int fd, enum mesh_io_op op, void *buf, size_t len, off_t off,
                                  int flags)
{
    size_t done = 0;
    while (done < len) {
        char *at = (char *)buf + done;
        size_t left = len - done;
        ssize_t n;
        switch (op) {
        case MESH_IO_WRITE: n = write(fd, at, left); break;
        case MESH_IO_PWRITE: n = pwrite(fd, at, left, off + (off_t)done); break;
        case MESH_IO_PREAD: n = pread(fd, at, left, off + (off_t)done); break;
        case MESH_IO_SEND: n = send(fd, at, left, flags); break;
        case MESH_IO_RECV: n = recv(fd, at, left, flags); break;
        default: n = -1; errno = EINVAL; break;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = 0;
            break;
        }
        done += (size_t)n;
    }
    return done;
}

#endif
