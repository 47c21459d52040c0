/* settings.c: the table of meshd's policy settings and everything read from it; see settings.h. */
#include "settings.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mesher.h"

enum setting_type {
    SETTING_SWITCH, /* int: 1/yes/true or 0/no/false */
    SETTING_NUMBER, /* double within [min, max] */
    SETTING_WHOLE,  /* unsigned within [min, max] */
    SETTING_BYTES,  /* uint64_t, with an optional K, M or G suffix (KB, KiB too) */
};

struct setting {
    const char *name;
    enum setting_type type;
    size_t offset;    /* of its field in struct policy_settings */
    double min, max;  /* NUMBER, WHOLE: the accepted range */
    const char *unit; /* NUMBER, WHOLE: what a value is ("want UNIT from MIN to MAX") */
    const char *dflt; /* the default, as a config file writes it */
    const char *help;
};

#define FIELD(f) offsetof(struct policy_settings, f)

/* max_pairs_per_round's default is all the mesher plans in one round. */
_Static_assert(MESHER_MAX_PAIRS == 4096, "max_pairs_per_round's default below is MESHER_MAX_PAIRS");

static const struct setting table[] = {
    {"enabled", SETTING_SWITCH, FIELD(enabled), 0, 1, NULL, "1",
     "1: automatic rounds; 0: only meshctl mesh"},
    {"interval", SETTING_NUMBER, FIELD(interval), 0.1, 3600, "seconds", "5",
     "seconds between evaluations of every process"},
    {"min_fragmentation", SETTING_NUMBER, FIELD(min_fragmentation), 0, 1, "a fraction", "0.25",
     "fragmentation (1 - live/heap) at which a compaction starts"},
    {"stop_fragmentation", SETTING_NUMBER, FIELD(stop_fragmentation), 0, 1, "a fraction", "0.1",
     "fragmentation at which it ends"},
    {"min_heap_bytes", SETTING_BYTES, FIELD(min_heap_bytes), 0, 0, NULL, "8M",
     "smaller heaps are left alone (K, M, G suffixes)"},
    {"min_interval", SETTING_NUMBER, FIELD(min_interval), 0, 86400, "seconds", "10",
     "seconds between rounds of one process (halved under memory pressure)"},
    {"max_pairs_per_round", SETTING_WHOLE, FIELD(max_pairs_per_round), 1, MESHER_MAX_PAIRS,
     "a whole number", "4096", "pairs proposed in one round"},
    {"occupancy_cutoff", SETTING_NUMBER, FIELD(occupancy_cutoff), 0.001, 1, "a fraction", "0.5",
     "only spans at most this full are candidates"},
    {"pressure_avg10", SETTING_NUMBER, FIELD(pressure_avg10), 0, 100, "a percentage", "10",
     "PSI some avg10 (%) that halves min_interval and lifts max_activity"},
    {"max_activity", SETTING_NUMBER, FIELD(max_activity), 0, 100,
     "a fraction of live bytes changed per tick (0.05 = 5%)", "0.05",
     "a heap whose live bytes change more per tick is busy and waits"},
    {"hold_budget_ms", SETTING_NUMBER, FIELD(hold_budget_ms), 0.01, 1000, "milliseconds", "1",
     "longest barrier hold a writer may wait; requests are sized to keep it"},
    {"duty_ms_per_s", SETTING_NUMBER, FIELD(duty_ms_per_s), 1, 1000, "milliseconds per second", "100",
     "barrier time per second a process may spend in automatic rounds (less without a spare CPU)"},
    {"idle_duty_ms_per_s", SETTING_NUMBER, FIELD(idle_duty_ms_per_s), 1, 1000, "milliseconds per second",
     "500", "the same for a program whose own threads are idle (under 1% of a CPU)"},
    {"min_spare_cpu", SETTING_NUMBER, FIELD(min_spare_cpu), 0, 4096, "CPUs", "1",
     "automatic rounds wait while fewer CPUs are idle (at most 3/4 of them; 0: never wait)"},
};
_Static_assert(sizeof table / sizeof table[0] == SETTINGS_COUNT, "SETTINGS_COUNT is the table's rows");

/* Keys of earlier versions that mean nothing now.  A config file naming one is refused with
 * what replaced it (at startup: exit 2; on SIGHUP: the old settings stay), rather than
 * mapped onto a new key: pause_budget_ms capped the barrier of a whole round, which no
 * value of the new per-request and per-second budgets reproduces. */
static const struct {
    const char *name, *instead;
} retired[] = {
    {"pause_budget_ms", "the barrier is bounded per request by hold_budget_ms and per second by "
                        "duty_ms_per_s (meshd(8))"},
};

/* ---- parsing ----------------------------------------------------------------------------- */

static int parse_double(const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(d) || d < lo || d > hi)
        return -1;
    *out = d;
    return 0;
}

static int parse_bytes(const char *v, uint64_t *out)
{
    char *end;
    if (*v == '-' || *v == '\0')
        return -1;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v)
        return -1;
    unsigned shift = 0;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return -1;
        }
        end++;
        if (*end == 'i' && end[1] == 'B')
            end += 2;
        else if (*end == 'B')
            end++;
        if (*end)
            return -1;
    }
    if (shift && n > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)n << shift;
    return 0;
}

/* Stores v into row t's field of s: 0, or -1 (s untouched) when v is not one of its values. */
static int parse_value(const struct setting *t, const char *v, struct policy_settings *s)
{
    char *field = (char *)s + t->offset;
    double d;
    switch (t->type) {
    case SETTING_SWITCH:
        if (!strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "true"))
            *(int *)field = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "false"))
            *(int *)field = 0;
        else
            return -1;
        return 0;
    case SETTING_NUMBER:
        if (parse_double(v, t->min, t->max, &d) != 0)
            return -1;
        *(double *)field = d;
        return 0;
    case SETTING_WHOLE:
        if (parse_double(v, t->min, t->max, &d) != 0 || d != floor(d))
            return -1;
        *(unsigned *)field = (unsigned)d;
        return 0;
    case SETTING_BYTES:
        return parse_bytes(v, (uint64_t *)field);
    }
    return -1;
}

/* What row t accepts, for "bad value ...: want ...". */
static void describe_range(const struct setting *t, char *out, size_t cap)
{
    switch (t->type) {
    case SETTING_SWITCH:
        snprintf(out, cap, "0 or 1");
        break;
    case SETTING_BYTES:
        snprintf(out, cap, "bytes, optionally with a K, M or G suffix");
        break;
    case SETTING_NUMBER:
    case SETTING_WHOLE:
        snprintf(out, cap, "%s from %g to %g", t->unit, t->min, t->max);
        break;
    }
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    size_t i = 0;
    while (s[i] == ' ' || s[i] == '\t')
        i++;
    memmove(s, s + i, n - i + 1);
}

int settings_set(struct policy_settings *s, const char *kv, char *err, size_t errcap)
{
    char buf[256];
    if (strlen(kv) >= sizeof buf) {
        snprintf(err, errcap, "setting too long");
        return -1;
    }
    strcpy(buf, kv);
    char *eq = strchr(buf, '=');
    if (!eq) {
        snprintf(err, errcap, "expected KEY=VALUE, got \"%.64s\"", kv);
        return -1;
    }
    *eq = '\0';
    char *key = buf, *val = eq + 1;
    trim(key);
    trim(val);
    for (size_t i = 0; i < sizeof retired / sizeof retired[0]; i++) {
        if (strcmp(key, retired[i].name) == 0) {
            snprintf(err, errcap, "%s is no longer a setting: %s", key, retired[i].instead);
            return -1;
        }
    }
    for (size_t i = 0; i < SETTINGS_COUNT; i++) {
        if (strcmp(key, table[i].name) != 0)
            continue;
        if (parse_value(&table[i], val, s) == 0)
            return 0;
        char range[128];
        describe_range(&table[i], range, sizeof range);
        snprintf(err, errcap, "bad value \"%.64s\" for %s: want %s", val, key, range);
        return -1;
    }
    snprintf(err, errcap, "unknown key \"%.64s\"", key);
    return -1;
}

void settings_defaults(struct policy_settings *s)
{
    memset(s, 0, sizeof *s);
    /* The defaults are in the table as text and parse like a config file's values
     * (tests/test_settings.c checks that every one does). */
    for (size_t i = 0; i < SETTINGS_COUNT; i++)
        parse_value(&table[i], table[i].dflt, s);
}

int settings_load_file(const char *path, struct policy_settings *s, char *err, size_t errcap)
{
    settings_defaults(s);
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[512], why[200];
    unsigned lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errcap, "%s:%u: line too long", path, lineno);
            rc = -1;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        trim(line);
        if (!line[0])
            continue;
        if (settings_set(s, line, why, sizeof why) != 0) {
            snprintf(err, errcap, "%s:%u: %s", path, lineno, why);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errcap, "%s: read error", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

/* ---- formatting -------------------------------------------------------------------------- */

void settings_format(const struct policy_settings *s, char lines[SETTINGS_COUNT][SETTING_LINE_BYTES])
{
    for (size_t i = 0; i < SETTINGS_COUNT; i++) {
        const struct setting *t = &table[i];
        const char *field = (const char *)s + t->offset;
        char *out = lines[i];
        switch (t->type) {
        case SETTING_SWITCH:
            snprintf(out, SETTING_LINE_BYTES, "%s=%d", t->name, *(const int *)field);
            break;
        case SETTING_NUMBER:
            snprintf(out, SETTING_LINE_BYTES, "%s=%g", t->name, *(const double *)field);
            break;
        case SETTING_WHOLE:
            snprintf(out, SETTING_LINE_BYTES, "%s=%u", t->name, *(const unsigned *)field);
            break;
        case SETTING_BYTES:
            snprintf(out, SETTING_LINE_BYTES, "%s=%llu", t->name,
                     (unsigned long long)*(const uint64_t *)field);
            break;
        }
    }
}

void settings_usage(FILE *f, int indent)
{
    for (size_t i = 0; i < SETTINGS_COUNT; i++) {
        char kv[SETTING_LINE_BYTES];
        snprintf(kv, sizeof kv, "%s=%s", table[i].name, table[i].dflt);
        fprintf(f, "%*s%-25s %s\n", indent, "", kv, table[i].help);
    }
}
