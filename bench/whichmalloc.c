/* whichmalloc: prints the file that provides the malloc this process calls.
 *
 * bench/run.sh runs it under each allocator's LD_PRELOAD before measuring:
 * a library that fails to load, or loads without interposing malloc, makes
 * ld.so fall back silently to glibc, and the column would measure glibc. */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    Dl_info info;
    void *sym = dlsym(RTLD_DEFAULT, "malloc");
    if (!sym || !dladdr(sym, &info) || !info.dli_fname) {
        fputs("whichmalloc: cannot locate malloc\n", stderr);
        return 1;
    }
    char path[PATH_MAX];
    puts(realpath(info.dli_fname, path) ? path : info.dli_fname);
    return 0;
}
