/*
 * fdutil.h: descriptors the shim holds inside someone else's program.
 *
 * A program owns the descriptor numbers it expects: the lowest free ones (the kernel hands
 * those out in order, and idioms like `close(1); open(file)` rely on it), 0-2 whether open
 * or closed, and whatever it closes at start-up (closefrom(3), close_range(3, ~0U),
 * os.closerange(3, 1024)).  So every descriptor the shim keeps is moved far above the range
 * programs use, and, because a program may still close or dup2() over that number, the
 * shim records what the descriptor refers to (st_dev, st_ino) and checks it before every
 * use that would act on the object: a number that no longer refers to the shim's object
 * is never closed, written, mapped or sent again.
 */
#ifndef MESH_FDUTIL_H
#define MESH_FDUTIL_H

#include <stdint.h>
#include <sys/types.h>

struct mesh_fd {
    int fd;            /* -1: none */
    uint64_t dev, ino; /* what fd referred to when the shim took it */
};

#define MESH_FD_NONE ((struct mesh_fd){.fd = -1})

/* Lowest number the shim's descriptors are moved to: 1024 when RLIMIT_NOFILE leaves room
 * above the select() range, else the top sixteenth of the limit; at least 3. */
int mesh_fd_floor(void);

/* Moves fd to a number >= mesh_fd_floor() (or, if none is free there, >= 3) with
 * close-on-exec, and closes the original number: a number the program had closed stays
 * closed.  Returns the new descriptor, or -1 with fd closed. */
int mesh_fd_move_high(int fd);

/* Moves fd high and records its identity in *o.  0, or -1 (fd closed, o->fd == -1). */
int mesh_fd_adopt(struct mesh_fd *o, int fd);

/* 1 if o->fd still refers to the object adopted (fstat, identity compared), else 0. */
int mesh_fd_owned(const struct mesh_fd *o);

/* Closes o->fd if it is still ours; forgets it either way (o->fd = -1). */
void mesh_fd_drop(struct mesh_fd *o);

/* A file the shim reads again and again, kept open high: o->fd if it is still ours, else
 * (none yet, or the program took the number: forgotten, not closed) a fresh one from
 * open_file(), adopted.  The descriptor, or -1 if none can be had. */
int mesh_fd_keep(struct mesh_fd *o, int (*open_file)(void));

/* pipe2(O_CLOEXEC) with both ends moved high.  0, or -1 with p[0] = p[1] = -1. */
int mesh_fd_pipe_high(int p[2]);

/*
 * Reads up to size bytes of the file at path from offset 0 into buf without a descriptor
 * in the program's table, not even for the instant an open() would take the lowest free
 * number (which a program between close(1) and dup2(saved, 1) would lose: its stdout
 * closed or replaced).  For the periodic looks of a thread of the shim's that holds no
 * kept descriptor: a child process sharing our memory but not our descriptor table
 * (clone CLONE_VM | CLONE_VFORK, as posix_spawn; every signal blocked, no exit signal)
 * opens and reads it, and is reaped before this returns.  The bytes read, or -1 (no such
 * file, or no child: limits, a sandbox).  Costs a process creation (~0.1 ms): at most a
 * few a second.
 */
ssize_t mesh_read_file_aside(const char *path, char *buf, size_t size);

#endif
