/* planner.c: see planner.h. */
#include "planner.h"

#include <stdlib.h>

#include "budget.h"

struct planner {
    struct process *proc;
    struct mesh_plan *plan;
    size_t max_pairs;
    struct mesher_scan *scan;
    int scanned; /* the scan is complete: the next turns pair */
    struct event *slice;
    planner_done_fn done;
};

void planner_cancel(struct planner *job)
{
    if (!job)
        return;
    if (job->slice)
        event_free(job->slice);
    mesher_scan_free(job->scan);
    free(job);
}

/* The next turn, once the loop has served everyone else (a zero timeout runs after the
 * next poll), or later while the table's uid is over its budget. */
static void schedule(struct planner *job)
{
    struct timeval tv = {0, budget_allow(job->proc->uid) ? 0 : PLANNER_SLOW_SLICE_USEC};
    evtimer_add(job->slice, &tv);
}

static void on_slice(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct planner *job = arg;
    struct process *p = job->proc;
    double cpu = budget_cpu_now();
    int rc;
    if (!job->scanned)
        rc = mesher_scan_step(job->scan, PLANNER_SLICE_RECORDS);
    else
        rc = mesher_scan_pair(job->scan, job->plan, job->max_pairs, PLANNER_SLICE_PROBES);
    budget_charge(p->uid, budget_cpu_now() - cpu);
    if (rc > 0 || (rc == 0 && !job->scanned)) {
        job->scanned |= rc == 0;
        schedule(job);
        return;
    }
    planner_done_fn done = job->done;
    planner_cancel(job);
    done(p, rc == 0);
}

int planner_start(struct event_base *base, struct process *p, struct mesh_plan *plan,
                  size_t max_pairs, double cutoff, planner_done_fn done, struct planner **job)
{
    plan->npairs = 0;
    plan->candidates = 0;
    struct mesher_scan *scan = mesher_scan_new(p, cutoff);
    if (!scan)
        return -1;
    int rc = mesher_scan_step(scan, PLANNER_SLICE_RECORDS);
    if (rc <= 0) {
        if (rc == 0) /* a small table: planned now */
            mesher_scan_finish(scan, plan, max_pairs);
        mesher_scan_free(scan);
        return rc;
    }
    struct planner *j = calloc(1, sizeof *j);
    if (!j || !(j->slice = evtimer_new(base, on_slice, j))) {
        free(j);
        mesher_scan_free(scan);
        return -1;
    }
    j->proc = p;
    j->plan = plan;
    j->max_pairs = max_pairs;
    j->scan = scan;
    j->done = done;
    schedule(j);
    *job = j;
    return 1;
}
