/* clock.h: meshd's one time base, monotonic seconds (rounds, the policy, table summaries). */
#ifndef MESHD_CLOCK_H
#define MESHD_CLOCK_H

#include <time.h>

static inline double monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
