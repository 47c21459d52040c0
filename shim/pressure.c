/* pressure.c: memory pressure from PSI, without stdio or malloc; see pressure.h. */
#include "pressure.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "fdutil.h"
#include "sandbox.h"

/* "some avg10=" in the text of buf (NUL-terminated), as hundredths of a percent; -1 if
 * absent or malformed. */
static long some_avg10_hundredths(const char *buf)
{
    static const char key[] = "some avg10=";
    for (const char *line = buf; line && *line;) {
        size_t i = 0;
        while (key[i] && line[i] == key[i])
            i++;
        if (!key[i]) {
            const char *p = line + i;
            long whole = 0, frac = 0;
            int digits = 0;
            for (; *p >= '0' && *p <= '9' && whole < 1000; p++, digits++)
                whole = whole * 10 + (*p - '0');
            if (!digits)
                return -1;
            if (*p == '.')
                p++;
            for (int n = 0; n < 2; n++) { /* two decimals; missing ones read as 0 */
                int d = *p >= '0' && *p <= '9' ? *p++ - '0' : 0;
                frac = frac * 10 + d;
            }
            return whole * 100 + frac;
        }
        while (*line && *line != '\n')
            line++;
        line = *line ? line + 1 : NULL;
    }
    return -1;
}

/* The file, kept open at a high number while registered (mesh_memory_pressed's keep);
 * PSI files show fresh figures at every read from offset 0. */
static struct mesh_fd psi_fd = MESH_FD_NONE;

static const char *psi_path(void)
{
    const char *path = getenv("MESH_TEST_PRESSURE_FILE");
    return path && *path ? path : "/proc/pressure/memory";
}

static int open_psi(void) { return open(psi_path(), O_RDONLY | O_CLOEXEC | O_NOCTTY); }

int mesh_memory_pressed(int keep)
{
    /* A filter may kill the process on open(): once one is seen, never read again (a
     * filter stays for good). */
    static int filtered;
    if (filtered)
        return 0;
    int verdict = keep ? mesh_sandbox_filtered_kept() : mesh_sandbox_filtered_aside();
    if (verdict != 0) {
        filtered = verdict > 0; /* unknown (-1, no child now): not read this time */
        return 0;
    }
    int saved = errno;
    long avg10 = -1;
    char buf[256];
    ssize_t n = -1;
    if (keep) {
        int fd = mesh_fd_keep(&psi_fd, open_psi);
        if (fd >= 0)
            do
                n = pread(fd, buf, sizeof buf - 1, 0);
            while (n < 0 && errno == EINTR);
    } else { /* not registered: the shim holds no descriptor, not even for a look */
        n = mesh_read_file_aside(psi_path(), buf, sizeof buf - 1);
    }
    if (n > 0) {
        buf[n] = '\0';
        avg10 = some_avg10_hundredths(buf);
    }
    errno = saved;
    return avg10 >= (long)MESH_PRESSURE_AVG10_PERCENT * 100;
}

void mesh_pressure_release_kept(void) { mesh_fd_drop(&psi_fd); }
