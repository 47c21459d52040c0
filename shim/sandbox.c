/* sandbox.c: seccomp detection, and the memfd_create it guards (see sandbox.h). */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

int mesh_private_reason;
static int filtered; /* as seen by the last mesh_sandbox_check */

/* The number after "\nSeccomp:" in /proc/self/status (0 none, 1 strict, 2 filter), read
 * in small pieces without stdio or malloc; -1 if the file cannot be read (no /proc). */
static int status_seccomp_mode(void)
{
    static const char key[] = "\nSeccomp:";
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[256];
    size_t matched = 0;
    int mode = -1, in_value = 0;
    ssize_t n;
    while (mode == -1 && ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))) {
        for (ssize_t i = 0; i < n && mode == -1; i++) {
            char c = buf[i];
            if (in_value) {
                if (c >= '0' && c <= '9')
                    mode = c - '0';
                else if (c != ' ' && c != '\t')
                    mode = -2; /* not a number: unknown */
            } else if (c == key[matched]) {
                in_value = ++matched == sizeof key - 1;
            } else {
                /* key's only '\n' is its first character: a mismatch restarts there */
                matched = c == '\n';
            }
        }
    }
    close(fd);
    return mode >= 0 ? mode : -1;
}

int mesh_sandbox_filtered_now(void)
{
    const char *trust = getenv("MESH_SECCOMP");
    if (trust && strcmp(trust, "trust") == 0)
        return 0;
    int saved = errno;
    int mode = status_seccomp_mode();
    if (mode < 0)
        mode = prctl(PR_GET_SECCOMP, 0, 0, 0, 0); /* no /proc: ask the kernel directly */
    errno = saved;
    return mode > 0;
}

void mesh_sandbox_check(void) { filtered = mesh_sandbox_filtered_now(); }

void mesh_sandbox_note_arena(int have_memfd, int file_too_big)
{
    mesh_private_reason = have_memfd      ? MESH_PRIVATE_NONE
                          : filtered      ? MESH_PRIVATE_SECCOMP
                          : file_too_big  ? MESH_PRIVATE_FILE_SIZE
                                          : MESH_PRIVATE_NO_MEMFD;
}

int mesh_memfd_create(const char *name, unsigned flags)
{
    if (filtered) {
        errno = EPERM;
        return -1;
    }
    return memfd_create(name, MFD_CLOEXEC | flags);
}
