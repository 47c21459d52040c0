/* log.c: see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

void meshd_log(const char *fmt, ...)
{
    /* One fprintf per line so lines from a restarted meshd never interleave mid-line. */
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "meshd: %s\n", line);
}
