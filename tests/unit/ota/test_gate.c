/*
 * test_gate.c - unit tests of the OTA trial's metric gates (engine/ota/gate.c): parsing and its
 * errors, a failing sample restarting the duration, staleness, field types, several gates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "engine/ota/gate.h"

static void observe(struct ota_gate *g, size_t n, const char *meas, const char *field,
                    enum record_field_type type, double v, int64_t now)
{
    struct record_field f = {{field, strlen(field)}, type, {.f = v}};
    if (type == RECORD_FIELD_INT)
        f.v.i = (int64_t)v;
    else if (type == RECORD_FIELD_UINT)
        f.v.u = (uint64_t)v;
    else if (type == RECORD_FIELD_BOOL)
        f.v.b = v != 0;
    else if (type == RECORD_FIELD_STRING)
        f.v.s = (struct record_str){"25", 2};
    struct record r = {RECORD_METRIC, 0, 0, {meas, strlen(meas)}, 0, {"", 0}, NULL, 0, &f, 1};
    ota_gates_observe(g, n, &r, now);
}

static void test_parse(void **state)
{
    (void)state;
    struct ota_gate g[OTA_MAX_GATES];
    size_t n = 0;
    char err[256];
    assert_int_equal(ota_gates_parse(" jetson.model.fps>=25 for 1m ; gpu.temp < 85.5 for 30s;", g,
                                     OTA_MAX_GATES, &n, err, sizeof err),
                     0);
    assert_int_equal(n, 2);
    assert_string_equal(g[0].measurement, "jetson.model"); /* the last dot splits */
    assert_string_equal(g[0].field, "fps");
    assert_int_equal(g[0].op, OTA_GATE_GE);
    assert_true(g[0].threshold == 25.0);
    assert_int_equal(g[0].for_ms, 60000);
    assert_string_equal(g[1].measurement, "gpu");
    assert_int_equal(g[1].op, OTA_GATE_LT);
    assert_true(g[1].threshold == 85.5);
    assert_int_equal(g[1].for_ms, 30000);
    assert_int_equal(ota_gates_parse("", g, OTA_MAX_GATES, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(ota_gates_parse(NULL, g, OTA_MAX_GATES, &n, err, sizeof err), 0);
    const char *bad[] = {"fps >= 25 for 1m",   "a.fps = 25 for 1m", "a.fps >= x for 1m",
                         "a.fps >= 25",        "a.fps >= 25 for",   "a.fps >= 25 for 0s",
                         "a.fps >= 25 for 2d", ".fps >= 1 for 1s",  "a. >= 1 for 1s",
                         "a.fps >= nan for 1s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(ota_gates_parse(bad[i], g, OTA_MAX_GATES, &n, err, sizeof err), -1);
        assert_non_null(strstr(err, "health gate"));
    }
    /* names a metric can never have: typos, refused with the offset of the character */
    static const struct {
        const char *spec, *msg;
        size_t off;
    } typo[] = {
        {"inference.fps => 25 for 60s", "unknown operator \"=>\"", 14},
        {"a.b >= 1 for 1s; inference.fps =< 25 for 60s", "unknown operator \"=<\"", 31},
        {"inference.fps != 25 for 60s", "expected MEASUREMENT.FIELD OP NUMBER", 0},
        {"inference.f ps >= 25 for 60s", "' ' cannot be part of MEASUREMENT.FIELD", 11},
        {"inference,host=a.fps >= 25 for 60s", "',' cannot be part", 9},
        {"a.fps >= 25 for1s", "expected \"for DURATION\"", 12},
    };
    for (size_t i = 0; i < sizeof typo / sizeof typo[0]; i++) {
        size_t where = 999;
        err[0] = '\0';
        assert_int_equal(
            ota_gates_parse_at(typo[i].spec, g, OTA_MAX_GATES, &n, err, sizeof err, &where), -1);
        if (!strstr(err, typo[i].msg) || where != typo[i].off)
            fail_msg("\"%s\": got \"%s\" at %zu, expected \"%s\" at %zu", typo[i].spec, err, where,
                     typo[i].msg, typo[i].off);
    }
    char many[1024] = "";
    size_t off = 0;
    for (int i = 0; i < OTA_MAX_GATES + 1; i++)
        off += (size_t)snprintf(many + off, sizeof many - off, "a.b > 1 for 1s;");
    assert_int_equal(ota_gates_parse(many, g, OTA_MAX_GATES, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "more than"));
}

static void test_duration_restarts_on_a_failing_sample(void **state)
{
    (void)state;
    struct ota_gate g[1];
    size_t n;
    char err[256];
    assert_int_equal(ota_gates_parse("inference.fps >= 25 for 10s", g, 1, &n, err, sizeof err), 0);
    ota_gates_reset(g, n);
    assert_false(ota_gate_passed(&g[0], 0));
    for (int t = 1000; t <= 8000; t += 1000)
        observe(g, n, "inference", "fps", RECORD_FIELD_FLOAT, 30, t);
    observe(g, n, "inference", "fps", RECORD_FIELD_FLOAT, 24.9, 9000); /* one slow frame */
    for (int t = 10000; t <= 19000; t += 1000) {
        observe(g, n, "inference", "fps", RECORD_FIELD_FLOAT, 30, t);
        assert_false(ota_gate_passed(&g[0], t));
    }
    observe(g, n, "inference", "fps", RECORD_FIELD_FLOAT, 30, 20000);
    assert_true(ota_gate_passed(&g[0], 20000)); /* 10 s since the first good sample after it */
    /* other measurements, other fields and strings do not count */
    observe(g, n, "inference2", "fps", RECORD_FIELD_FLOAT, 1, 20500);
    observe(g, n, "inference", "fps2", RECORD_FIELD_FLOAT, 1, 20500);
    observe(g, n, "inference", "fps", RECORD_FIELD_STRING, 1, 20500);
    assert_true(ota_gate_passed(&g[0], 20500));
    /* the application stops reporting: old values do not keep the gate open */
    assert_true(ota_gate_passed(&g[0], 20000 + OTA_GATE_STALE_MS));
    assert_false(ota_gate_passed(&g[0], 20001 + OTA_GATE_STALE_MS));
    char d[200];
    ota_gate_describe(&g[0], 25000, d, sizeof d);
    assert_string_equal(d, "inference.fps >= 25 for 10s: last value 30, 5s ago");
    ota_gates_reset(g, n);
    ota_gate_describe(&g[0], 25000, d, sizeof d);
    assert_string_equal(d, "inference.fps >= 25 for 10s: no sample yet");
}

static void test_integer_fields_and_upper_bounds(void **state)
{
    (void)state;
    struct ota_gate g[2];
    size_t n;
    char err[256];
    assert_int_equal(
        ota_gates_parse("mem.used_mb <= 3000 for 2s; app.up > 0 for 2s", g, 2, &n, err, sizeof err),
        0);
    ota_gates_reset(g, n);
    for (int t = 0; t <= 2000; t += 500) {
        observe(g, n, "mem", "used_mb", RECORD_FIELD_INT, 3000, t);
        observe(g, n, "app", "up", RECORD_FIELD_BOOL, 1, t);
    }
    assert_true(ota_gate_passed(&g[0], 2000));
    assert_true(ota_gate_passed(&g[1], 2000));
    observe(g, n, "mem", "used_mb", RECORD_FIELD_UINT, 3001, 2500);
    assert_false(ota_gate_passed(&g[0], 2500));
    observe(g, n, "app", "up", RECORD_FIELD_BOOL, 0, 2500);
    assert_false(ota_gate_passed(&g[1], 2500));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_duration_restarts_on_a_failing_sample),
        cmocka_unit_test(test_integer_fields_and_upper_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
