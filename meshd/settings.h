/*
 * settings.h: meshd's policy settings (what each does: policy.h), one table of them.
 *
 * Every setting is one row of settings.c's table: its name, type, range, default and a line
 * of help.  Parsing, formatting (meshctl policy, the log), the defaults and meshd --help
 * all read that table, so a new setting is one row plus its field here.
 *
 * Settings are KEY=VALUE: from `meshd --config FILE` (one per line, # comments; reloaded on
 * SIGHUP, all-or-nothing: a bad file keeps the old settings) and from PolicyRequest (root
 * only, all-or-nothing).  A reload replaces run-time changes with the file's values; keys
 * the file does not name take their defaults.
 */
#ifndef MESHD_SETTINGS_H
#define MESHD_SETTINGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Rows of the table; settings.c checks the count at compile time. */
#define SETTINGS_COUNT 14
/* A formatted KEY=VALUE fits in this many bytes. */
#define SETTING_LINE_BYTES 64

/* Each field is named, typed, bounded and defaulted by its row in settings.c. */
struct policy_settings {
    int enabled;
    double interval;
    double min_fragmentation;
    double stop_fragmentation;
    uint64_t min_heap_bytes;
    double min_interval;
    unsigned max_pairs_per_round;
    double occupancy_cutoff;
    double pressure_avg10;
    double max_activity;
    double hold_budget_ms;
    double duty_ms_per_s;
    double idle_duty_ms_per_s;
    double min_spare_cpu;
};

void settings_defaults(struct policy_settings *s);
/* Applies one "KEY=VALUE" (spaces around either side allowed) to s.  0, or -1 with a
 * message in err. */
int settings_set(struct policy_settings *s, const char *kv, char *err, size_t errcap);
/* Reads a config file into *s (starting from the defaults).  0, or -1 with
 * "FILE:LINE: message" (or "FILE: reason") in err; *s is then unspecified. */
int settings_load_file(const char *path, struct policy_settings *s, char *err, size_t errcap);
/* The settings as KEY=VALUE strings, in the table's order. */
void settings_format(const struct policy_settings *s, char lines[SETTINGS_COUNT][SETTING_LINE_BYTES]);
/* One line per setting for meshd --help: "KEY=DEFAULT  help", each indented by `indent`. */
void settings_usage(FILE *f, int indent);

#endif
