/*
 * kernel_calls.c: the calls that hand a program's memory to the kernel, interposed so that
 * the spans under it are never meshed while the kernel may hold them (kernel_hold.h).
 *
 *   holds beyond the call (KERNEL_HELD, until the span is freed):
 *     io_uring_register(2) BUFFERS, BUFFERS2, BUFFERS_UPDATE, PBUF_RING through syscall(3);
 *     liburing's io_uring_register_buffers, _buffers_tags, _buffers_update_tag and
 *     io_uring_register_buf_ring (liburing makes its system calls inline, so its own entry
 *     points are the only place to see them); io_submit(2) through syscall(3) or libaio's
 *     io_submit (the buffers of every read or write it queues); vmsplice.
 *   holds for the call (kernel_io): read, pread, readv, preadv, preadv2 (all names glibc
 *     exports, the _FORTIFY_SOURCE ones too) and the same through syscall(3).  Only a read
 *     with O_DIRECT pins its buffer, but telling costs a system call; counting every read
 *     into the heap costs two atomic operations on the span's record.
 *
 * Each wrapper marks, then calls the next definition of its symbol (interpose.h).  errno
 * is the real call's.  A thread cancelled inside a read leaves its count up: the span is
 * then never meshed until it is freed (safe, and rare).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/aio_abi.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common.h"
#include "credentials.h"
#include "interpose.h"
#include "kernel_hold.h"
#include "memlock.h"
#include "rlimits.h"
#include "vma_attrs.h"
#include "sandbox.h"

#ifndef MESH_NO_INTERPOSE

/* ---- the next definitions ------------------------------------------------------------------ */

enum next_fn {
    NEXT_READ, NEXT_PREAD, NEXT_PREAD64, NEXT_READV, NEXT_PREADV, NEXT_PREADV64,
    NEXT_PREADV2, NEXT_PREADV64V2, NEXT_READ_CHK, NEXT_PREAD_CHK, NEXT_PREAD64_CHK,
    NEXT_SYSCALL, NEXT_VMSPLICE, NEXT_IO_SUBMIT, NEXT_URING_BUFFERS, NEXT_URING_BUFFERS_TAGS,
    NEXT_URING_BUFFERS_UPDATE_TAG, NEXT_URING_BUF_RING, NEXT_COUNT
};

static const char *const next_names[NEXT_COUNT] = {
    "read", "pread", "pread64", "readv", "preadv", "preadv64", "preadv2", "preadv64v2",
    "__read_chk", "__pread_chk", "__pread64_chk", "syscall", "vmsplice", "io_submit",
    "io_uring_register_buffers", "io_uring_register_buffers_tags",
    "io_uring_register_buffers_update_tag", "io_uring_register_buf_ring"};

static void *_Atomic next_fns[NEXT_COUNT];

/* The next definition of next_names[which], or NULL if there is none (a liburing or
 * libaio function in a process that has not loaded the library). */
static void *next(enum next_fn which) { return mesh_next_symbol(&next_fns[which], next_names[which]); }

__attribute__((constructor)) static void resolve_next(void)
{
    for (int i = 0; i < NEXT_COUNT; i++)
        next((enum next_fn)i);
}

#define NEXT(which, type) ((type)next(which))

/* ---- marking ----------------------------------------------------------------------------- */

static void io_add_iov(struct mesh_kernel_io *io, const struct iovec *iov, long n)
{
    if (iov == NULL || n <= 0 || n > IOV_MAX)
        return;
    for (long i = 0; i < n; i++)
        mesh_kernel_io_add(io, (uintptr_t)iov[i].iov_base, iov[i].iov_len);
}

static void hold_iov(const struct iovec *iov, unsigned long n)
{
    if (iov == NULL)
        return;
    for (unsigned long i = 0; i < n; i++)
        mesh_kernel_hold((uintptr_t)iov[i].iov_base, iov[i].iov_len);
}

/* io_uring_register(2): the opcodes that pin user memory for as long as it is registered. */
static void hold_uring_register(unsigned opcode, const void *arg, unsigned nr_args)
{
    if (arg == NULL)
        return;
    switch (opcode) {
    case IORING_REGISTER_BUFFERS:
        hold_iov(arg, nr_args);
        break;
    case IORING_REGISTER_BUFFERS2: {
        const struct io_uring_rsrc_register *r = arg;
        if (nr_args >= sizeof *r)
            hold_iov((const struct iovec *)(uintptr_t)r->data, r->nr);
        break;
    }
    case IORING_REGISTER_BUFFERS_UPDATE: {
        const struct io_uring_rsrc_update2 *u = arg;
        if (nr_args >= sizeof *u)
            hold_iov((const struct iovec *)(uintptr_t)u->data, u->nr);
        break;
    }
    case IORING_REGISTER_PBUF_RING: {
        const struct io_uring_buf_reg *b = arg;
        mesh_kernel_hold((uintptr_t)b->ring_addr,
                         (size_t)b->ring_entries * sizeof(struct io_uring_buf));
        break;
    }
    default:
        break;
    }
}

/* io_submit(2): every buffer a queued read or write names (held until the span is freed:
 * the transfer ends whenever the device completes it). */
static void hold_iocbs(long nr, struct iocb *const *iocbs)
{
    if (iocbs == NULL)
        return;
    for (long i = 0; i < nr; i++) {
        const struct iocb *cb = iocbs[i];
        if (cb == NULL)
            continue;
        switch (cb->aio_lio_opcode) {
        case IOCB_CMD_PREAD:
        case IOCB_CMD_PWRITE:
            mesh_kernel_hold((uintptr_t)cb->aio_buf, cb->aio_nbytes);
            break;
        case IOCB_CMD_PREADV:
        case IOCB_CMD_PWRITEV:
            hold_iov((const struct iovec *)(uintptr_t)cb->aio_buf, cb->aio_nbytes);
            break;
        default:
            break;
        }
    }
}

/* ---- reads: the buffer's spans counted for the duration of the call ----------------------- */

static void io_done(struct mesh_kernel_io *io)
{
    if (io->n) {
        int e = errno;
        mesh_kernel_io_end(io);
        errno = e;
    }
}

/* Counts the spans under a read's buffers (`add`, on io_), makes the call, uncounts them.
 * No record is touched unless a buffer is in the heap. */
#define READ_INTO(add, call)                                                                   \
    do {                                                                                       \
        struct mesh_kernel_io io_ = {0};                                                       \
        add;                                                                                   \
        __typeof__(call) r_ = (call);                                                          \
        io_done(&io_);                                                                         \
        return r_;                                                                             \
    } while (0)
#define ONE(buf, n) mesh_kernel_io_add(&io_, (uintptr_t)(buf), (n))
#define IOV(iov, n) io_add_iov(&io_, (iov), (n))

typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);
typedef ssize_t (*readv_fn)(int, const struct iovec *, int);
typedef ssize_t (*preadv_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*preadv2_fn)(int, const struct iovec *, int, off_t, int);
typedef ssize_t (*read_chk_fn)(int, void *, size_t, size_t);
typedef ssize_t (*pread_chk_fn)(int, void *, size_t, off_t, size_t);

/* glibc's _FORTIFY_SOURCE entry points (declared by its headers only under fortify). */
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);

MESH_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    READ_INTO(ONE(buf, n), NEXT(NEXT_READ, read_fn)(fd, buf, n));
}

MESH_EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    READ_INTO(ONE(buf, n), NEXT(NEXT_PREAD, pread_fn)(fd, buf, n, off));
}

MESH_EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
    READ_INTO(ONE(buf, n), NEXT(NEXT_PREAD64, pread_fn)(fd, buf, n, off));
}

MESH_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    READ_INTO(ONE(buf, n), NEXT(NEXT_READ_CHK, read_chk_fn)(fd, buf, n, buflen));
}

MESH_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen)
{
    READ_INTO(ONE(buf, n), NEXT(NEXT_PREAD_CHK, pread_chk_fn)(fd, buf, n, off, buflen));
}

MESH_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off, size_t buflen)
{
    READ_INTO(ONE(buf, n), NEXT(NEXT_PREAD64_CHK, pread_chk_fn)(fd, buf, n, off, buflen));
}

MESH_EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
    READ_INTO(IOV(iov, n), NEXT(NEXT_READV, readv_fn)(fd, iov, n));
}

MESH_EXPORT ssize_t preadv(int fd, const struct iovec *iov, int n, off_t off)
{
    READ_INTO(IOV(iov, n), NEXT(NEXT_PREADV, preadv_fn)(fd, iov, n, off));
}

MESH_EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int n, off_t off)
{
    READ_INTO(IOV(iov, n), NEXT(NEXT_PREADV64, preadv_fn)(fd, iov, n, off));
}

MESH_EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    READ_INTO(IOV(iov, n), NEXT(NEXT_PREADV2, preadv2_fn)(fd, iov, n, off, flags));
}

MESH_EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    READ_INTO(IOV(iov, n), NEXT(NEXT_PREADV64V2, preadv2_fn)(fd, iov, n, off, flags));
}

/* ---- syscall(3) -------------------------------------------------------------------------- */

typedef long (*syscall_fn)(long, ...);

/*
 * seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, prog) puts the filter on
 * every thread of the process, the shim's too, whose calls (the control thread's recv,
 * poll, getrusage, access; a lazy fork child's helper's userfaultfd ioctls) the filter may
 * kill.  So those threads go first (credentials.h); the filter noted (before this), no
 * thread of the shim's starts again.
 */
static long seccomp_tsync(syscall_fn real, const long *a)
{
    struct mesh_threads_paused quiet = mesh_threads_pause(1);
    long r = real(SYS_seccomp, a[0], a[1], a[2], a[3], a[4], a[5]);
    mesh_threads_resume(quiet); /* the count of pauses: the thread stays off (control_off) */
    return r;
}

/*
 * Reads six arguments whatever the call takes, as glibc's own syscall() does (the x86-64
 * and aarch64 conventions pass them in registers, so the extra ones are harmless junk).
 */
MESH_EXPORT long syscall(long nr, ...)
{
    va_list ap;
    va_start(ap, nr);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    syscall_fn real = NEXT(NEXT_SYSCALL, syscall_fn);
    struct mesh_kernel_io io = {0};
    switch (nr) {
    case SYS_io_uring_register:
        hold_uring_register((unsigned)a[1], (const void *)a[2], (unsigned)a[3]);
        break;
    case SYS_io_submit:
        hold_iocbs(a[1], (struct iocb *const *)a[2]);
        break;
    case SYS_vmsplice:
        hold_iov((const struct iovec *)a[1], (unsigned long)a[2]);
        break;
    case SYS_read:
    case SYS_pread64:
        mesh_kernel_io_add(&io, (uintptr_t)a[1], (size_t)a[2]);
        break;
    case SYS_readv:
    case SYS_preadv:
    case SYS_preadv2:
        io_add_iov(&io, (const struct iovec *)a[1], a[2]);
        break;
    case SYS_seccomp: /* a program sandboxing itself: sandbox.h */
        if (a[0] == SECCOMP_SET_MODE_STRICT || a[0] == SECCOMP_SET_MODE_FILTER)
            mesh_sandbox_note_filter();
        if (a[0] == SECCOMP_SET_MODE_FILTER && ((unsigned long)a[1] & SECCOMP_FILTER_FLAG_TSYNC))
            return seccomp_tsync(real, a);
        break;
    case SYS_prctl:
        if (a[0] == PR_SET_SECCOMP)
            mesh_sandbox_note_filter();
        break;
    case SYS_mlock:
    case SYS_mlock2:
    case SYS_pkey_mprotect: /* attributes a mesh would drop: vma_attrs.h */
        mesh_vma_attr_hold((const void *)a[0], (size_t)a[1]);
        break;
    case SYS_mprotect:
        mesh_vma_before_mprotect((const void *)a[0], (size_t)a[1], (int)a[2]);
        break;
    case SYS_madvise:
        mesh_vma_before_madvise((const void *)a[0], (size_t)a[1], (int)a[2]);
        break;
    case SYS_setrlimit: /* a limit the reservation must fit under: rlimits.h */
        mesh_rlimit_lowering(0, (int)a[0], (const struct rlimit *)a[1]);
        break;
    case SYS_prlimit64:
        mesh_rlimit_lowering((pid_t)a[0], (int)a[1], (const struct rlimit *)a[2]);
        break;
    case SYS_mlockall: /* the arena's reservation must not be faulted in: memlock.h */
        return mesh_memlock_all((int)a[0]);
    default:
        break;
    }
    long r = real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    io_done(&io);
    return r;
}

/* ---- holds beyond the call --------------------------------------------------------------- */

typedef ssize_t (*vmsplice_fn)(int, const struct iovec *, size_t, unsigned int);

MESH_EXPORT ssize_t vmsplice(int fd, const struct iovec *iov, size_t n, unsigned int flags)
{
    hold_iov(iov, n);
    return NEXT(NEXT_VMSPLICE, vmsplice_fn)(fd, iov, n, flags);
}

/* libaio's (io_context_t is a pointer).  Its own error convention: -errno. */
typedef int (*io_submit_fn)(void *, long, struct iocb **);
MESH_EXPORT int io_submit(void *ctx, long nr, struct iocb **iocbs);
MESH_EXPORT int io_submit(void *ctx, long nr, struct iocb **iocbs)
{
    io_submit_fn real = NEXT(NEXT_IO_SUBMIT, io_submit_fn);
    if (real == NULL)
        return -ENOSYS;
    hold_iocbs(nr, iocbs);
    return real(ctx, nr, iocbs);
}

/* liburing's (struct io_uring stays opaque here).  Its convention: -errno. */
struct io_uring;
struct io_uring_buf_reg;
typedef int (*uring_buffers_fn)(struct io_uring *, const struct iovec *, unsigned);
typedef int (*uring_buffers_tags_fn)(struct io_uring *, const struct iovec *, const __u64 *,
                                     unsigned);
typedef int (*uring_update_tag_fn)(struct io_uring *, unsigned, const struct iovec *,
                                   const __u64 *, unsigned);
typedef int (*uring_buf_ring_fn)(struct io_uring *, struct io_uring_buf_reg *, unsigned);

MESH_EXPORT int io_uring_register_buffers(struct io_uring *ring, const struct iovec *iov,
                                          unsigned n);
MESH_EXPORT int io_uring_register_buffers(struct io_uring *ring, const struct iovec *iov,
                                          unsigned n)
{
    uring_buffers_fn real = NEXT(NEXT_URING_BUFFERS, uring_buffers_fn);
    if (real == NULL)
        return -ENOSYS;
    hold_iov(iov, n);
    return real(ring, iov, n);
}

MESH_EXPORT int io_uring_register_buffers_tags(struct io_uring *ring, const struct iovec *iov,
                                               const __u64 *tags, unsigned n);
MESH_EXPORT int io_uring_register_buffers_tags(struct io_uring *ring, const struct iovec *iov,
                                               const __u64 *tags, unsigned n)
{
    uring_buffers_tags_fn real = NEXT(NEXT_URING_BUFFERS_TAGS, uring_buffers_tags_fn);
    if (real == NULL)
        return -ENOSYS;
    hold_iov(iov, n);
    return real(ring, iov, tags, n);
}

MESH_EXPORT int io_uring_register_buffers_update_tag(struct io_uring *ring, unsigned off,
                                                     const struct iovec *iov, const __u64 *tags,
                                                     unsigned n);
MESH_EXPORT int io_uring_register_buffers_update_tag(struct io_uring *ring, unsigned off,
                                                     const struct iovec *iov, const __u64 *tags,
                                                     unsigned n)
{
    uring_update_tag_fn real = NEXT(NEXT_URING_BUFFERS_UPDATE_TAG, uring_update_tag_fn);
    if (real == NULL)
        return -ENOSYS;
    hold_iov(iov, n);
    return real(ring, off, iov, tags, n);
}

MESH_EXPORT int io_uring_register_buf_ring(struct io_uring *ring, struct io_uring_buf_reg *reg,
                                           unsigned flags);
MESH_EXPORT int io_uring_register_buf_ring(struct io_uring *ring, struct io_uring_buf_reg *reg,
                                           unsigned flags)
{
    uring_buf_ring_fn real = NEXT(NEXT_URING_BUF_RING, uring_buf_ring_fn);
    if (real == NULL)
        return -ENOSYS;
    hold_uring_register(IORING_REGISTER_PBUF_RING, reg, sizeof *reg);
    return real(ring, reg, flags);
}

#endif
