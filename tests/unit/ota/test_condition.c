/*
 * test_condition.c - release conditions evaluated from a real journal (engine/ota/condition.c):
 * the window by device time, the metric matched by measurement and field (any tags, numbers of
 * every type, strings skipped), every stat, min_samples, and the scan bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/util.h"
#include "engine/ota/condition.h"
#include "journal/journal.h"
#include "transport/record.h"

#define HOUR_NS (3600LL * 1000000000)

static char dir[64];
static struct journal *j;
static int64_t now_ns;

static void put(const char *meas, const char *field, enum record_field_type type, double v,
                int64_t ts_ns)
{
    struct record_tag tag = {{"cam", 3}, {"front", 5}};
    struct record_field f = {{field, strlen(field)}, type, {.f = v}};
    if (type == RECORD_FIELD_INT)
        f.v.i = (int64_t)v;
    else if (type == RECORD_FIELD_UINT)
        f.v.u = (uint64_t)v;
    else if (type == RECORD_FIELD_STRING)
        f.v.s = (struct record_str){"0.1", 3};
    struct record r = {RECORD_METRIC, 0, ts_ns, {meas, strlen(meas)}, 0, {"", 0}, &tag, 1, &f, 1};
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(record_pack(&r, &b), 0);
    assert_int_equal(
        journal_append(j, RECORD_METRIC, ts_ns, b.data, b.len, JOURNAL_APPEND_WAIT, NULL), 0);
    ferry_buf_free(&b);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/ferry-cond-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    struct journal_config jc;
    journal_config_init(&jc);
    jc.durability = JOURNAL_SYNC_OS;
    if (journal_open(dir, &jc, &j, NULL, NULL, 0) != 0)
        return -1;
    now_ns = ferry_realtime_ns();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = journal_close(j);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = -1;
    return rc;
}

static struct manifest_condition cond(const char *text)
{
    struct manifest_condition c;
    char err[256] = "";
    if (manifest_condition_parse_text(text, &c, err, sizeof err) != 0)
        fail_msg("%s: %s", text, err);
    return c;
}

static struct ota_condition_result eval(const char *text, size_t max_scan)
{
    struct manifest_condition c = cond(text);
    struct ota_condition_result r;
    char err[256] = "";
    if (ota_condition_eval(j, &c, now_ns, max_scan, &r, err, sizeof err) != 0)
        fail_msg("%s: %s", text, err);
    return r;
}

/* 30 h of history: one sample an hour, confidence 0.9 until 20 h ago, then 0.5; plus noise that
 * must not count (other field, other measurement, a string value). */
static void test_window_stats_and_matching(void **state)
{
    (void)state;
    struct ota_condition_result r = eval("detector.confidence mean 24h < 0.6", 0);
    assert_int_equal(r.samples, 0);
    assert_int_equal(r.outcome, OTA_CONDITION_INSUFFICIENT); /* min_samples 1 */
    for (int h = 30; h >= 1; h--) {
        double v = h > 20 ? 0.9 : 0.5;
        put("detector", "confidence", RECORD_FIELD_FLOAT, v, now_ns - h * HOUR_NS);
        put("detector", "latency_ms", RECORD_FIELD_FLOAT, 99, now_ns - h * HOUR_NS);
        put("thermal", "confidence", RECORD_FIELD_FLOAT, 0.0, now_ns - h * HOUR_NS);
        put("detector", "confidence", RECORD_FIELD_STRING, 0, now_ns - h * HOUR_NS);
    }
    put("detector", "confidence", RECORD_FIELD_INT, 1, now_ns - HOUR_NS / 2); /* an int: counts */
    put("detector", "confidence", RECORD_FIELD_FLOAT, 0.0, now_ns + HOUR_NS); /* future: not */

    /* the window [now-24h, now]: hours 24..21 at 0.9, 20..1 at 0.5, and the int 1 */
    r = eval("detector.confidence count 24h >= 25", 0);
    assert_int_equal(r.samples, 25);
    assert_true(r.value == 25);
    assert_int_equal(r.outcome, OTA_CONDITION_MET);
    double mean = (4 * 0.9 + 20 * 0.5 + 1) / 25;
    r = eval("detector.confidence mean 24h < 0.6", 0);
    assert_true(r.value > mean - 1e-12 && r.value < mean + 1e-12);
    assert_int_equal(r.outcome, OTA_CONDITION_MET); /* 0.584 < 0.6 */
    r = eval("detector.confidence mean 24h < 0.5", 0);
    assert_int_equal(r.outcome, OTA_CONDITION_NOT_MET);
    r = eval("detector.confidence min 24h <= 0.5", 0);
    assert_true(r.value == 0.5);
    r = eval("detector.confidence max 24h > 0.95", 0);
    assert_true(r.value == 1);
    assert_int_equal(r.outcome, OTA_CONDITION_MET);
    r = eval("detector.confidence p50 24h < 0.6", 0);
    assert_true(r.value == 0.5);
    r = eval("detector.confidence p95 24h >= 0.9", 0);
    assert_true(r.value == 0.9); /* nearest rank 24 of 25 */
    /* a shorter window: only the last 5 h (hours 5..1 and the int) */
    r = eval("detector.confidence count 5h > 0", 0);
    assert_int_equal(r.samples, 6);
    /* min_samples not reached: insufficient, whatever the value */
    r = eval("detector.confidence mean 5h < 0.9 min_samples 7", 0);
    assert_int_equal(r.outcome, OTA_CONDITION_INSUFFICIENT);
    /* an unknown metric: no samples; even with min_samples 0 a mean of nothing decides nothing,
     * while a count of nothing is 0 */
    r = eval("detector.nothing mean 24h < 1", 0);
    assert_int_equal(r.samples, 0);
    assert_int_equal(r.outcome, OTA_CONDITION_INSUFFICIENT);
    r = eval("detector.nothing mean 24h < 1 min_samples 0", 0);
    assert_int_equal(r.outcome, OTA_CONDITION_INSUFFICIENT);
    r = eval("detector.nothing count 24h < 1 min_samples 0", 0);
    assert_int_equal(r.outcome, OTA_CONDITION_MET);
}

/* The scan stops at max_scan (and says so) and after a run of records older than the window. */
static void test_scan_is_bounded(void **state)
{
    (void)state;
    /* 1500 old records, then 10 in the window */
    for (int i = 0; i < 1500; i++)
        put("detector", "confidence", RECORD_FIELD_FLOAT, 0.1, now_ns - 48 * HOUR_NS + i);
    for (int i = 0; i < 10; i++)
        put("detector", "confidence", RECORD_FIELD_FLOAT, 0.3, now_ns - i * 1000000LL);
    struct ota_condition_result r = eval("detector.confidence count 1h >= 10", 0);
    assert_int_equal(r.samples, 10);
    assert_int_equal(r.scanned, 10 + OTA_CONDITION_OLD_RUN); /* stopped by the old run */
    assert_false(r.scan_limited);
    r = eval("detector.confidence count 1h >= 10", 4);
    assert_int_equal(r.scanned, 4);
    assert_int_equal(r.samples, 4);
    assert_true(r.scan_limited);
    assert_int_equal(r.outcome, OTA_CONDITION_NOT_MET);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_window_stats_and_matching, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_is_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
