/*
 * budget.h: how much of meshd's time the requests of one uid may take.
 *
 * meshd has one thread; a request costs what the scan of the span table behind it costs
 * (up to 2^22 records), and any local user may send requests.  Each non-root uid has a
 * bucket of BUDGET_BURST seconds of meshd's CPU that refills at BUDGET_RATE seconds per
 * second; every request takes its measured CPU time plus BUDGET_REQUEST_COST from it (so
 * cheap requests are limited in number too).  A request that finds the bucket empty is
 * answered EAGAIN at once.  Root is not limited: root may stop meshd anyway.
 */
#ifndef MESHD_BUDGET_H
#define MESHD_BUDGET_H

#include <sys/types.h>

#define BUDGET_RATE 0.25
#define BUDGET_BURST 1.0
#define BUDGET_REQUEST_COST 0.002

/* Whether uid may have a request served now. */
int budget_allow(uid_t uid);
/* Takes cpu_seconds (plus the per-request cost) from uid's bucket. */
void budget_charge(uid_t uid, double cpu_seconds);
/* This thread's CPU time in seconds, for measuring a request. */
double budget_cpu_now(void);

#endif
