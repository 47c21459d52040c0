/* shim_poll.h: for test programs that idle while a test meshes them. */
#ifndef TESTS_PROG_SHIM_POLL_H
#define TESTS_PROG_SHIM_POLL_H

#include <stdlib.h>

/*
 * The shim starts its control thread (and so registers with meshd) lazily, from an
 * allocation slow path, a second after its heap was set up or once the heap holds 16 MiB
 * (shim/control.c).  A program whose set-up was quick and small, and that then waits for
 * the test without allocating, would never register.  So its wait loop calls this: an
 * object above the small size classes always takes the slow path, and the program
 * registers however fast (or slowly) it reached its wait.
 */
static inline void shim_poll(void)
{
    void *volatile p = malloc(64 << 10); /* volatile: the pair may not be optimised away */
    free(p);
}

#endif
