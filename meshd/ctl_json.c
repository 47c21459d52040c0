/* ctl_json.c: see ctl_json.h. */
#include "ctl_json.h"

#include <inttypes.h>

#include "ctl_user.h"
#include "hold_stats.h"

/* Length of the valid UTF-8 sequence at s, or 0 if there is none (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF). */
static int utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    int n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (n == 0 || s[0] > 0xf4)
        return 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

static void json_string(FILE *f, const char *str)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    fputc('"', f);
    while (*s) {
        int n = utf8_len(s);
        if (n == 0) {
            fputs("\\ufffd", f);
            s++;
        } else if (*s == '"' || *s == '\\') {
            fprintf(f, "\\%c", *s++);
        } else if (*s < 0x20 || *s == 0x7f) {
            fprintf(f, "\\u%04x", *s++);
        } else {
            fwrite(s, 1, (size_t)n, f);
            s += n;
        }
    }
    fputc('"', f);
}

void json_process(FILE *f, const Mesh__ProcessStats *ps, int with_classes)
{
    fprintf(f, "{\"pid\": %" PRId32 ", \"uid\": %" PRIu32 ", \"user\": ", ps->pid, ps->uid);
    json_string(f, ctl_user_name(ps->uid));
    fputs(", \"name\": ", f);
    json_string(f, ps->name ? ps->name : "");
    fputs(", \"exe\": ", f);
    json_string(f, ps->exe);
    fprintf(f,
            ", \"heap_bytes\": %" PRIu64 ", \"live_bytes\": %" PRIu64 ", \"meshes\": %" PRIu64
            ", \"released_bytes\": %" PRIu64 ", \"map_breaks\": %" PRIu64
            ", \"map_limit\": %" PRIu64,
            ps->heap_bytes, ps->live_bytes, ps->meshes, ps->released_bytes, ps->map_breaks,
            ps->map_limit);
    fprintf(f,
            ", \"holds\": %" PRIu64 ", \"hold_p99_us\": %" PRIu64 ", \"hold_max_us\": %" PRIu64
            ", \"holds_over_1ms\": %" PRIu64,
            ps->holds, hold_p99_us(ps->hold_us_log2, ps->n_hold_us_log2), ps->hold_max_us,
            ps->holds_over_1ms);
    fputs(", \"barrier\": ", f);
    json_string(f, ps->barrier ? ps->barrier : "");
    fputs(", \"refused\": ", f);
    json_string(f, ps->refused ? ps->refused : "");
    if (with_classes) {
        fputs(", \"classes\": [", f);
        for (size_t i = 0; i < ps->n_classes; i++) {
            const Mesh__ClassStats *c = ps->classes[i];
            fprintf(f,
                    "%s{\"size\": %" PRIu32 ", \"spans\": %" PRIu32 ", \"live_objects\": %" PRIu64
                    ", \"capacity_objects\": %" PRIu64 "}",
                    i ? ", " : "", c->size, c->spans, c->live_objects, c->capacity_objects);
        }
        fputc(']', f);
    }
    fputc('}', f);
}
