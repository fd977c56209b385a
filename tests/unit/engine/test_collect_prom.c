/*
 * test_collect_prom.c - the Prometheus exposition parser (text 0.0.4 and OpenMetrics) gives
 * Telegraf's prometheus-input names: counter/gauge/value fields, one record per histogram or
 * summary label set with count, sum and bucket/quantile fields; bad lines are skipped, counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "collect_testlib.h"

static void test_text_004(void **state)
{
    (void)state;
    const char *text = "# HELP inference_fps Frames per second.\n"
                       "# TYPE inference_fps gauge\n"
                       "inference_fps{camera=\"front\",model=\"yolo \\\"v8\\\"\"} 29.5\n"
                       "# TYPE frames_total counter\n"
                       "frames_total{camera=\"front\"} 1.234e5 1700000000123\n"
                       "no_type_metric 7\n"
                       "# TYPE latency_seconds histogram\n"
                       "latency_seconds_bucket{camera=\"front\",le=\"0.01\"} 3\n"
                       "latency_seconds_bucket{camera=\"front\",le=\"0.05\"} 90\n"
                       "latency_seconds_bucket{camera=\"front\",le=\"+Inf\"} 100\n"
                       "latency_seconds_sum{camera=\"front\"} 2.5\n"
                       "latency_seconds_count{camera=\"front\"} 100\n"
                       "latency_seconds_bucket{camera=\"rear\",le=\"+Inf\"} 4\n"
                       "latency_seconds_count{camera=\"rear\"} 4\n"
                       "# TYPE rpc_duration summary\n"
                       "rpc_duration{quantile=\"0.5\"} 0.012\n"
                       "rpc_duration{quantile=\"0.99\"} NaN\n"
                       "rpc_duration_sum 17.5\n"
                       "rpc_duration_count 1000\n"
                       "broken{x=\"unterminated} 1\n"
                       "bad_value abc\n"
                       "\n";
    struct collect_out out;
    collect_out_init(&out);
    struct prom_stats st;
    assert_int_equal(prom_parse(text, strlen(text), false, 42, &out, &st), 0);
    struct round rd = {0};
    assert_int_equal(round_unpack(&out, &rd), 0);
    assert_int_equal(st.skipped, 2);
    assert_int_equal(rd.n, 6);

    const struct record *fps = round_find(&rd, "inference_fps", "camera", "front");
    assert_non_null(fps);
    assert_float_equal(rec_num(fps, "gauge"), 29.5, 1e-12);
    char tag[64];
    assert_string_equal(rec_tag(fps, "model", tag, sizeof tag), "yolo \"v8\"");
    assert_int_equal(fps->ts_ns, 42);
    const struct record *frames = round_find(&rd, "frames_total", NULL, NULL);
    assert_float_equal(rec_num(frames, "counter"), 123400, 1e-9);
    assert_int_equal(frames->ts_ns, 1700000000123LL * 1000000);
    assert_float_equal(rec_num(round_find(&rd, "no_type_metric", NULL, NULL), "value"), 7, 0);

    const struct record *front = round_find(&rd, "latency_seconds", "camera", "front");
    assert_non_null(front);
    assert_float_equal(rec_num(front, "count"), 100, 0);
    assert_float_equal(rec_num(front, "sum"), 2.5, 0);
    assert_float_equal(rec_num(front, "0.01"), 3, 0);
    assert_float_equal(rec_num(front, "0.05"), 90, 0);
    assert_float_equal(rec_num(front, "+Inf"), 100, 0);
    assert_null(rec_tag(front, "le", tag, sizeof tag));
    const struct record *rear = round_find(&rd, "latency_seconds", "camera", "rear");
    assert_float_equal(rec_num(rear, "count"), 4, 0);

    const struct record *rpc = round_find(&rd, "rpc_duration", NULL, NULL);
    assert_float_equal(rec_num(rpc, "0.5"), 0.012, 1e-12);
    assert_true(isnan(rec_field(rpc, "0.99")->v.f));
    assert_float_equal(rec_num(rpc, "count"), 1000, 0);
    round_free(&rd);
    collect_out_free(&out);
}

static void test_openmetrics(void **state)
{
    (void)state;
    const char *text = "# TYPE requests counter\n"
                       "# UNIT requests requests\n"
                       "requests_total{path=\"/\"} 12 1700000000.5\n"
                       "requests_created{path=\"/\"} 1699999000\n"
                       "# TYPE temp gauge\n"
                       "temp 21.5\n"
                       "# EOF\n"
                       "after_eof 1\n";
    struct collect_out out;
    collect_out_init(&out);
    struct prom_stats st;
    assert_int_equal(prom_parse(text, strlen(text), true, 1, &out, &st), 0);
    struct round rd = {0};
    assert_int_equal(round_unpack(&out, &rd), 0);
    assert_int_equal(rd.n, 2); /* _created is not a sample; nothing after # EOF */
    const struct record *r = round_find(&rd, "requests_total", "path", "/");
    assert_float_equal(rec_num(r, "counter"), 12, 0);
    assert_int_equal(r->ts_ns, 1700000000500000000LL);
    assert_float_equal(rec_num(round_find(&rd, "temp", NULL, NULL), "gauge"), 21.5, 0);
    round_free(&rd);
    collect_out_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_004),
        cmocka_unit_test(test_openmetrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
