/* ctl_map.c: see ctl_map.h. */
#include "ctl_map.h"

#include <inttypes.h>
#include <string.h>

#include "printable.h"

#define SHADES " .:-=+*#%@"
/* Width of the proportional bar of span counts. */
#define SHARE_WIDTH 20

/* The shade for n spans in a cell whose class's busiest cell holds max spans: ' ' for
 * none, then ". : - = + * # % @" with '@' for max. */
static char map_shade(uint64_t n, uint64_t max)
{
    if (n == 0 || max == 0)
        return SHADES[0];
    if (n >= max)
        return SHADES[9];
    /* 1 .. 9, rounding up so a single span never disappears (0 < n < max here). */
    double level = 9.0 * (double)n / (double)max;
    unsigned l = (unsigned)level;
    if ((double)l < level)
        l++;
    return SHADES[l < 1 ? 1 : l > 9 ? 9 : l];
}

/* "12.3 MiB" style, into buf. */
static const char *human(char *buf, size_t cap, uint64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%" PRIu64 " B", bytes);
    else
        snprintf(buf, cap, "%.1f %s", v, units[u]);
    return buf;
}

static double percent(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

/* exe comes from the process itself: printable ASCII only, so it cannot drive a terminal. */
static void print_exe(FILE *f, const char *s)
{
    size_t n = 0;
    for (; s && *s && n < 200; s++, n++)
        fputc(printable_or_mark(*s), f);
    if (s && *s)
        fputs("...", f);
}

/* One row: the 10 cells, each shaded by its count relative to the row's busiest cell.
 * have < MAP_CELLS (a meshd without histograms) leaves '?' in the cells it lacks. */
static void print_cells(FILE *f, const uint64_t *cells, size_t have)
{
    uint64_t max = 0;
    for (size_t i = 0; i < have && i < MAP_CELLS; i++)
        if (cells[i] > max)
            max = cells[i];
    fputc('|', f);
    for (size_t i = 0; i < MAP_CELLS; i++)
        fputc(i < have ? map_shade(cells[i], max) : '?', f);
    fputc('|', f);
}

static void print_share(FILE *f, uint64_t spans, uint64_t max_spans)
{
    unsigned n = 0;
    if (spans && max_spans) {
        double w = (double)SHARE_WIDTH * (double)spans / (double)max_spans;
        n = w >= SHARE_WIDTH ? SHARE_WIDTH : (unsigned)w;
        if ((double)n < w)
            n++; /* a class with any span shows at least one mark */
    }
    for (unsigned i = 0; i < n; i++)
        fputc('#', f);
}

void map_render(FILE *f, const Mesh__ProcessStats *p)
{
    char b1[32], b2[32];
    uint64_t all[MAP_CELLS] = {0};
    uint64_t spans = 0, live = 0, capacity = 0, max_spans = 0;
    size_t missing = 0;
    for (size_t i = 0; i < p->n_classes; i++) {
        const Mesh__ClassStats *c = p->classes[i];
        spans += c->spans;
        live += c->live_objects;
        capacity += c->capacity_objects;
        if (c->spans > max_spans)
            max_spans = c->spans;
        if (c->n_spans_by_occupancy < MAP_CELLS)
            missing++;
        for (size_t b = 0; b < c->n_spans_by_occupancy && b < MAP_CELLS; b++)
            all[b] += c->spans_by_occupancy[b];
    }

    fprintf(f, "heap map of pid %" PRId32 " (", p->pid);
    print_exe(f, p->exe);
    fprintf(f, ")\n\n%8s %8s %-12s %6s  %s\n", "SIZE", "SPANS", "|0%    100%|", "USED",
            "SPANS vs the largest class");
    for (size_t i = 0; i < p->n_classes; i++) {
        const Mesh__ClassStats *c = p->classes[i];
        uint64_t cells[MAP_CELLS] = {0};
        size_t have = c->n_spans_by_occupancy < MAP_CELLS ? c->n_spans_by_occupancy : MAP_CELLS;
        for (size_t b = 0; b < have; b++)
            cells[b] = c->spans_by_occupancy[b];
        fprintf(f, "%8" PRIu32 " %8" PRIu32 " ", c->size, c->spans);
        print_cells(f, cells, have);
        fprintf(f, " %5.1f%%  ", percent(c->live_objects, c->capacity_objects));
        print_share(f, c->spans, max_spans);
        fputc('\n', f);
    }
    if (p->n_classes == 0) {
        fputs("       (no spans of small objects)\n", f);
    } else {
        fprintf(f, "%8s %8" PRIu64 " ", "all", spans);
        print_cells(f, all, missing ? 0 : MAP_CELLS);
        fprintf(f, " %5.1f%%\n", percent(live, capacity));
    }

    fputs("\nlegend: one cell per tenth of span occupancy (live objects / capacity), emptiest\n"
          "        (0-10%) on the left to fullest (90-100%, full included) on the right; the\n"
          "        shade is how many spans fall in that tenth relative to the row's busiest\n"
          "        cell:  ' ' none  . : - = + * # % @  most.  Dark cells on the left are\n"
          "        sparse spans that meshing can merge.  USED = live / capacity of the row.\n",
          f);
    if (missing)
        fputs("        '?': this meshd sent no occupancy histogram for the row.\n", f);
    fprintf(f, "totals: %zu classes, %" PRIu64 " spans, %" PRIu64 " of %" PRIu64
               " objects live (%.1f%%)\n",
            p->n_classes, spans, live, capacity, percent(live, capacity));
    fprintf(f, "        heap_bytes %" PRIu64 " (%s), live_bytes %" PRIu64 " (%s), live/heap %.1f%%\n",
            p->heap_bytes, human(b1, sizeof b1, p->heap_bytes), p->live_bytes,
            human(b2, sizeof b2, p->live_bytes), percent(p->live_bytes, p->heap_bytes));
    fprintf(f, "        meshes %" PRIu64 ", released_bytes %" PRIu64 " (%s)\n", p->meshes,
            p->released_bytes, human(b1, sizeof b1, p->released_bytes));
}
