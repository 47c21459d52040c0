/*
 * policy.h: when meshd meshes a process on its own, and the settings that decide it.
 *
 * A timer fires every `interval` seconds and looks at each registered process's span
 * table: fragmentation = 1 - live_bytes / heap_bytes, the mesh candidates (detached spans
 * with live/capacity at or below `occupancy_cutoff`), the time since its last round, and
 * the system's memory pressure (/proc/pressure/memory, "some avg10"; no file = 0).  A round
 * starts (rounds.h; one in flight per process) when
 *
 *   fragmentation >= min_fragmentation, heap_bytes >= min_heap_bytes, candidates >= 2 and
 *   time since the last round >= the process's min interval,
 *
 * where the min interval is `min_interval`, doubled after every round that meshed nothing
 * or had most pairs refused for the shim's mapping budget (capped at 10 minutes, reset by
 * a round that did mesh), and halved while pressure avg10 >= `pressure_avg10`.
 *
 * Settings are KEY=VALUE: from `meshd --config FILE` (one per line, # comments; reloaded on
 * SIGHUP, all-or-nothing: a bad file keeps the old settings) and from PolicyRequest (root
 * only, all-or-nothing).  A reload replaces run-time changes with the file's values; keys
 * the file does not name take their defaults.
 */
#ifndef MESHD_POLICY_H
#define MESHD_POLICY_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"

#define POLICY_MAX_BACKOFF_SECONDS 600.0
#define POLICY_KEYS 8

struct policy_settings {
    int enabled;                  /* enabled: 1 = automatic rounds, 0 = only meshctl mesh */
    double interval;              /* interval: seconds between evaluations, 0.1 .. 3600 */
    double min_fragmentation;     /* min_fragmentation: 0 .. 1 */
    uint64_t min_heap_bytes;      /* min_heap_bytes: bytes (K/M/G suffixes accepted) */
    double min_interval;          /* min_interval: seconds between rounds of one process */
    unsigned max_pairs_per_round; /* max_pairs_per_round: 1 .. 4096 */
    double occupancy_cutoff;      /* occupancy_cutoff: (0, 1] */
    double pressure_avg10;        /* pressure_avg10: PSI "some avg10" (%) that halves min_interval */
};

void policy_defaults(struct policy_settings *s);
/* Applies one "KEY=VALUE" (spaces around either side allowed) to s.  0, or -1 with a
 * message in err. */
int policy_set_one(struct policy_settings *s, const char *kv, char *err, size_t errcap);
/* Reads a config file into *s (starting from the defaults).  0, or -1 with
 * "FILE:LINE: message" (or "FILE: reason") in err; *s is then unspecified. */
int policy_load_file(const char *path, struct policy_settings *s, char *err, size_t errcap);
/* The settings as KEY=VALUE strings, POLICY_KEYS of them, into lines[POLICY_KEYS][64]. */
void policy_format(const struct policy_settings *s, char lines[POLICY_KEYS][64]);

/* Starts the timer with the settings given (already loaded by main). */
int policy_start(struct event_base *base, const struct policy_settings *s, const char *config_path);
void policy_stop(void);
const struct policy_settings *policy_current(void);
/* Replaces the settings (reschedules the timer if the interval changed). */
void policy_apply(const struct policy_settings *s);
/* SIGHUP: re-reads the config file; 0, or -1 (logged) with the old settings kept. */
int policy_reload(void);

/* Called by rounds.c when a round ends (pairs = 0: nothing to mesh was found; timed_out:
 * no reply). */
void policy_round_done(struct process *p, uint32_t pairs, uint32_t meshed, uint32_t budget_rejected,
                       int timed_out);
/* A newly registered process: its first automatic round waits one min_interval. */
void policy_process_added(struct process *p);

/* Memory pressure "some avg10" from /proc/pressure/memory; 0 if unavailable. */
double policy_memory_pressure(void);
double policy_now(void);

#endif
