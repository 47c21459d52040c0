/*
 * test_settings.c: meshd's settings table (meshd/settings.c): defaults, parsing with its
 * errors, formatting, config files and the --help lines, all from the one table.
 */
#include "testutil.h"

#include "mesher.h"
#include "settings.h"

static struct policy_settings s;
static char err[256];

static void setup(void) { settings_defaults(&s); }

START_TEST(defaults_are_the_documented_ones)
{
    ck_assert_int_eq(s.enabled, 1);
    ck_assert_double_eq(s.interval, 5);
    ck_assert_double_eq(s.min_fragmentation, 0.25);
    ck_assert_double_eq(s.stop_fragmentation, 0.1);
    ck_assert_uint_eq(s.min_heap_bytes, 8u << 20);
    ck_assert_double_eq(s.min_interval, 10);
    ck_assert_uint_eq(s.max_pairs_per_round, MESHER_MAX_PAIRS);
    ck_assert_double_eq(s.occupancy_cutoff, 0.5);
    ck_assert_double_eq(s.pressure_avg10, 10);
    ck_assert_double_eq(s.max_activity, 0.05);
    ck_assert_double_eq(s.hold_budget_ms, 1);
    ck_assert_double_eq(s.duty_ms_per_s, 100);
    ck_assert_double_eq(s.idle_duty_ms_per_s, 500);
}
END_TEST

START_TEST(format_writes_every_key_in_table_order)
{
    static const char *const want[SETTINGS_COUNT] = {
        "enabled=1", "interval=5", "min_fragmentation=0.25", "stop_fragmentation=0.1",
        "min_heap_bytes=8388608", "min_interval=10", "max_pairs_per_round=4096",
        "occupancy_cutoff=0.5", "pressure_avg10=10", "max_activity=0.05", "hold_budget_ms=1",
        "duty_ms_per_s=100", "idle_duty_ms_per_s=500", "min_spare_cpu=1",
    };
    char lines[SETTINGS_COUNT][SETTING_LINE_BYTES];
    settings_format(&s, lines);
    for (int i = 0; i < SETTINGS_COUNT; i++)
        ck_assert_str_eq(lines[i], want[i]);
}
END_TEST

START_TEST(formatted_settings_parse_back_to_the_same)
{
    const char *changes[] = {"enabled=no", "interval=0.1", "min_fragmentation=1", "stop_fragmentation=0",
                             "min_heap_bytes=3GiB", "min_interval=86400", "max_pairs_per_round=1",
                             "occupancy_cutoff=0.001", "pressure_avg10=100", "max_activity=0.5",
                             "hold_budget_ms=0.01", "duty_ms_per_s=1000",
                             "idle_duty_ms_per_s=1", "min_spare_cpu=0"};
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++)
        ck_assert_msg(settings_set(&s, changes[i], err, sizeof err) == 0, "%s: %s", changes[i], err);
    char lines[SETTINGS_COUNT][SETTING_LINE_BYTES];
    settings_format(&s, lines);
    struct policy_settings back;
    settings_defaults(&back);
    for (int i = 0; i < SETTINGS_COUNT; i++)
        ck_assert_int_eq(settings_set(&back, lines[i], err, sizeof err), 0);
    ck_assert_mem_eq(&back, &s, sizeof s);
    ck_assert_uint_eq(s.min_heap_bytes, UINT64_C(3) << 30);
    ck_assert_int_eq(s.enabled, 0);
}
END_TEST

START_TEST(bad_values_name_the_key_and_its_range)
{
    struct policy_settings before = s;
    ck_assert_int_eq(settings_set(&s, "hold_budget_ms=0", err, sizeof err), -1);
    ck_assert_str_eq(err, "bad value \"0\" for hold_budget_ms: want milliseconds from 0.01 to 1000");
    ck_assert_int_eq(settings_set(&s, "duty_ms_per_s=1001", err, sizeof err), -1);
    ck_assert_str_eq(err, "bad value \"1001\" for duty_ms_per_s: want milliseconds per second from 1 to 1000");
    ck_assert_int_eq(settings_set(&s, "min_spare_cpu=-0.5", err, sizeof err), -1);
    ck_assert_str_eq(err, "bad value \"-0.5\" for min_spare_cpu: want CPUs from 0 to 4096");
    ck_assert_int_eq(settings_set(&s, " max_pairs_per_round = 4097 ", err, sizeof err), -1);
    ck_assert_str_eq(err, "bad value \"4097\" for max_pairs_per_round: want a whole number from 1 to 4096");
    ck_assert_int_eq(settings_set(&s, "max_pairs_per_round=2.5", err, sizeof err), -1);
    ck_assert_int_eq(settings_set(&s, "enabled=maybe", err, sizeof err), -1);
    ck_assert_str_eq(err, "bad value \"maybe\" for enabled: want 0 or 1");
    ck_assert_int_eq(settings_set(&s, "min_heap_bytes=-1", err, sizeof err), -1);
    ck_assert_str_eq(err, "bad value \"-1\" for min_heap_bytes: want bytes, optionally with a K, M or G suffix");
    ck_assert_int_eq(settings_set(&s, "min_heap_bytes=1T", err, sizeof err), -1);
    ck_assert_int_eq(settings_set(&s, "min_heap_bytes=99999999999999999999G", err, sizeof err), -1);
    ck_assert_int_eq(settings_set(&s, "interval=nan", err, sizeof err), -1);
    ck_assert_int_eq(settings_set(&s, "max_activity=-0.1", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "want a fraction"));
    ck_assert_int_eq(settings_set(&s, "no_such_key=1", err, sizeof err), -1);
    ck_assert_str_eq(err, "unknown key \"no_such_key\"");
    ck_assert_int_eq(settings_set(&s, "interval", err, sizeof err), -1);
    ck_assert_str_eq(err, "expected KEY=VALUE, got \"interval\"");
    ck_assert_mem_eq(&before, &s, sizeof s); /* nothing changed */
}
END_TEST

START_TEST(retired_key_is_refused_with_what_replaced_it)
{
    struct policy_settings before = s;
    ck_assert_int_eq(settings_set(&s, "pause_budget_ms=50", err, sizeof err), -1);
    ck_assert_str_eq(err, "pause_budget_ms is no longer a setting: the barrier is bounded per request by "
                          "hold_budget_ms and per second by duty_ms_per_s (meshd(8))");
    ck_assert_mem_eq(&before, &s, sizeof s);
}
END_TEST

START_TEST(config_file_starts_from_defaults_and_names_the_bad_line)
{
    char path[] = "/tmp/test_settings.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char good[] = "# a comment\n\n  interval = 2  # trailing comment\nmin_heap_bytes=16M\n";
    ck_assert_int_eq(write(fd, good, sizeof good - 1), (ssize_t)(sizeof good - 1));
    s.max_activity = 7; /* a run-time change: a reload replaces it with the default */
    ck_assert_msg(settings_load_file(path, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_double_eq(s.interval, 2);
    ck_assert_uint_eq(s.min_heap_bytes, 16u << 20);
    ck_assert_double_eq(s.max_activity, 0.05);
    const char bad[] = "min_fragmentation=1.5\n";
    ck_assert_int_eq(write(fd, bad, sizeof bad - 1), (ssize_t)(sizeof bad - 1));
    close(fd);
    ck_assert_int_eq(settings_load_file(path, &s, err, sizeof err), -1);
    char want[300];
    snprintf(want, sizeof want, "%s:5: bad value \"1.5\" for min_fragmentation: want a fraction from 0 to 1",
             path);
    ck_assert_str_eq(err, want);
    unlink(path);
    ck_assert_int_eq(settings_load_file(path, &s, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "No such file"));
}
END_TEST

START_TEST(usage_names_every_key_with_its_default)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    settings_usage(f, 4);
    fclose(f);
    char lines[SETTINGS_COUNT][SETTING_LINE_BYTES];
    settings_format(&s, lines);
    for (int i = 0; i < SETTINGS_COUNT; i++) {
        /* "    KEY=" starts a line */
        char start[SETTING_LINE_BYTES + 8] = "\n    ";
        strncat(start, lines[i], (size_t)(strchr(lines[i], '=') - lines[i]) + 1);
        ck_assert_msg(strstr(text, start + 1) == text || strstr(text, start), "%s missing", lines[i]);
    }
    int nlines = 0;
    for (char *p = text; *p; p++)
        nlines += *p == '\n';
    ck_assert_int_eq(nlines, SETTINGS_COUNT);
    free(text);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("settings");
    add_case(su, defaults_are_the_documented_ones, setup);
    add_case(su, format_writes_every_key_in_table_order, setup);
    add_case(su, formatted_settings_parse_back_to_the_same, setup);
    add_case(su, bad_values_name_the_key_and_its_range, setup);
    add_case(su, retired_key_is_refused_with_what_replaced_it, setup);
    add_case(su, config_file_starts_from_defaults_and_names_the_bad_line, setup);
    add_case(su, usage_names_every_key_with_its_default, setup);
    return run_suite(su);
}
