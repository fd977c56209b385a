/*
 * test_compare.c - the metric comparison (cloud-ingest/query/compare.h) against a real store
 * (LMDB, or PostgreSQL through with-postgres.sh): devices with known distributions and a version
 * switch at a known time, before / after / control, the Mann-Whitney p-values against values
 * computed with scipy 1.10 (scipy.stats.mannwhitneyu, method="asymptotic", use_continuity=True),
 * the per-device weighting, error-log rates, gates (parse errors, pass, fail, too few samples)
 * and the version benchmark.
 *
 *   test_compare lmdb|pg
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cloud-ingest/query/compare.h"
#include "cloud-ingest/store.h"
#include "common/buf.h"
#include "common/util.h"
#include "transport/record.h"

#define SEC 1000000000LL
#define MIN (60 * SEC)
#define T0 (1800000000LL * SEC) /* an hour before the switch of the updated devices */
#define SWITCH (T0 + 60 * MIN)

static struct ingest_store_config g_cfg;
static char g_dir[256];

static struct ingest_store *open_store(void)
{
    struct ingest_store *s = NULL;
    char err[512] = "";
    int rc = ingest_store_open(&g_cfg, &s, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "open: %s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static void add_device(struct ingest_store *s, const char *id, uint8_t key_byte)
{
    struct ingest_device d;
    memset(&d, 0, sizeof(d));
    ferry_strlcpy(d.id, id, sizeof(d.id));
    memset(d.public_key, key_byte, 32);
    memset(d.key_id, key_byte, 8);
    ferry_strlcpy(d.device_class, "jetson-orin-nano", sizeof(d.device_class));
    ferry_strlcpy(d.versions, "{}", sizeof(d.versions));
    char err[256];
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
}

/* Writes `n` records of one stream as one batch, sequences first_seq.., corrected time = ts. */
static void write_records(struct ingest_store *s, const char *dev, uint8_t stream,
                          uint64_t first_seq, const struct record *rs, size_t n,
                          const char *versions_json)
{
    struct ferry_buf arena = FERRY_BUF_INIT;
    size_t *offs = calloc(n + 1, sizeof(*offs));
    struct ingest_rec *recs = calloc(n + 1, sizeof(*recs));
    assert_non_null(offs);
    assert_non_null(recs);
    for (size_t i = 0; i < n; i++) {
        offs[i] = arena.len;
        assert_int_equal(record_pack(&rs[i], &arena), 0);
        recs[i] = (struct ingest_rec){.stream = stream,
                                      .seq = first_seq + i,
                                      .ts_ns = rs[i].ts_ns,
                                      .ts_corrected_ns = rs[i].ts_ns,
                                      .packed_len = arena.len - offs[i]};
    }
    for (size_t i = 0; i < n; i++)
        recs[i].packed = arena.data + offs[i];
    struct ingest_write w;
    memset(&w, 0, sizeof(w));
    w.device_id = dev;
    w.received_ns = T0 + 200 * MIN;
    w.recs = recs;
    w.n_recs = n;
    w.versions_json = versions_json;
    struct ingest_write *ws[1] = {&w};
    char err[256] = "";
    int rc = ingest_store_write(s, ws, 1, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "write: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(w.result, 0);
    ferry_buf_free(&arena);
    free(offs);
    free(recs);
}

/* One metric sample a minute from `from` for `minutes`, each followed by an unrelated record of
 * another measurement (which a comparison must skip). value(i) = base + 0.05 * (i % 7). */
static uint64_t write_samples(struct ingest_store *s, const char *dev, uint64_t seq, int64_t from,
                              int minutes, const char *measurement, const char *field, double base)
{
    struct record *rs = calloc((size_t)minutes * 2, sizeof(*rs));
    struct record_field *fs = calloc((size_t)minutes * 2, sizeof(*fs));
    assert_non_null(rs);
    assert_non_null(fs);
    for (int i = 0; i < minutes; i++) {
        fs[2 * i] = (struct record_field){.key = {field, strlen(field)},
                                          .type = RECORD_FIELD_FLOAT,
                                          .v.f = base + 0.05 * (i % 7)};
        rs[2 * i] = (struct record){.stream = RECORD_METRIC,
                                    .ts_ns = from + i * MIN,
                                    .name = {measurement, strlen(measurement)},
                                    .fields = &fs[2 * i],
                                    .n_fields = 1};
        fs[2 * i + 1] = (struct record_field){
            .key = {field, strlen(field)}, .type = RECORD_FIELD_INT, .v.i = 1000};
        rs[2 * i + 1] = (struct record){.stream = RECORD_METRIC,
                                        .ts_ns = from + i * MIN + SEC,
                                        .name = {"cpu", 3},
                                        .fields = &fs[2 * i + 1],
                                        .n_fields = 1};
    }
    write_records(s, dev, RECORD_METRIC, seq, rs, (size_t)minutes * 2, NULL);
    free(rs);
    free(fs);
    return seq + (uint64_t)minutes * 2;
}

/* One log record a minute from `from` for `minutes`; the first `errors` are at level error. */
static uint64_t write_logs(struct ingest_store *s, const char *dev, uint64_t seq, int64_t from,
                           int minutes, int errors)
{
    struct record *rs = calloc((size_t)minutes, sizeof(*rs));
    assert_non_null(rs);
    for (int i = 0; i < minutes; i++)
        rs[i] =
            (struct record){.stream = RECORD_LOG,
                            .ts_ns = from + i * MIN,
                            .name = {"app", 3},
                            .level = i < errors ? (i % 2 ? RECORD_LEVEL_CRIT : RECORD_LEVEL_ERROR)
                                                : RECORD_LEVEL_WARN,
                            .message = {"m", 1}};
    write_records(s, dev, RECORD_LOG, seq, rs, (size_t)minutes, NULL);
    free(rs);
    return seq + (uint64_t)minutes;
}

static void close_to(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("got %.17g, want %.17g (tolerance %g)", got, want, tol);
}

/* ---- Statistics ------------------------------------------------------------------------------ */

static void test_mann_whitney_matches_scipy(void **state)
{
    (void)state;
    /* scipy.stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic",
     * use_continuity=True): statistic (U of a) and p-value. */
    static const double a1[] = {1, 2, 3, 4, 5}, b1[] = {6, 7, 8, 9, 10};
    static const double a2[] = {1.1, 2.2, 3.3, 4.4}, b2[] = {1.5, 2.5, 3.5, 4.5, 5.5, 6.5};
    static const double a3[] = {1, 2, 2, 3, 3, 3, 4}, b3[] = {2, 3, 3, 4, 4, 5, 5, 6};
    static const double a4[] = {30.1, 29.8, 30.5, 30.0, 29.9, 30.2, 30.3, 29.7},
                        b4[] = {27.0, 27.3, 26.9, 27.5, 27.1, 26.8, 27.2, 27.4};
    static const double a5[] = {5, 5, 5, 6}, b5[] = {5, 6, 6, 6};
    struct {
        const double *a, *b;
        size_t na, nb;
        double u, p;
    } cases[] = {
        {a1, b1, 5, 5, 0.0, 0.012185780355344813},
        {a2, b2, 4, 6, 6.0, 0.24095466870157012},
        {a3, b3, 7, 8, 11.0, 0.04988443697992588}, /* ties */
        {a4, b4, 8, 8, 64.0, 0.0009391056991171899},
        {a5, b5, 4, 4, 4.0, 0.24706152509165802}, /* mostly ties */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double u;
        double p = compare_mann_whitney(cases[i].a, cases[i].na, cases[i].b, cases[i].nb, &u);
        close_to(u, cases[i].u, 1e-9);
        close_to(p, cases[i].p, 1e-12);
        /* Swapping the samples keeps p and gives the complementary U. */
        p = compare_mann_whitney(cases[i].b, cases[i].nb, cases[i].a, cases[i].na, &u);
        close_to(u, (double)(cases[i].na * cases[i].nb) - cases[i].u, 1e-9);
        close_to(p, cases[i].p, 1e-12);
    }
    static const double same[] = {3, 3, 3};
    assert_true(isnan(compare_mann_whitney(same, 3, same, 3, NULL))); /* no variance */
    assert_true(isnan(compare_mann_whitney(same, 0, same, 3, NULL)));
}

/* ---- compare_devices --------------------------------------------------------------------------
 */

/* 8 updated devices u0..u7: inference.fps 30 + 0.1 d before the switch, 27 + 0.1 d after it;
 * thermal.gpu 50 + 0.1 d throughout. 8 control devices c0..c7: fps 30 + 0.1 (8 + d). Now is 30
 * minutes after the switch. Each device also logs once a minute: u* 2 errors in the hour before
 * the switch and 3 in the half hour after, c* 1 in the half hour after the switch. */
static void fleet(struct ingest_store *s, struct compare_device *devs, char ids[16][16])
{
    for (int d = 0; d < 16; d++) {
        snprintf(ids[d], 16, "%c%d", d < 8 ? 'u' : 'c', d % 8);
        add_device(s, ids[d], (uint8_t)(d + 1));
        devs[d].device_id = ids[d];
        devs[d].switched_ns = d < 8 ? SWITCH : 0;
        uint64_t seq = 1, lseq = 1;
        if (d < 8) {
            seq = write_samples(s, ids[d], seq, T0, 60, "inference", "fps", 30 + 0.1 * d);
            seq = write_samples(s, ids[d], seq, SWITCH, 30, "inference", "fps", 27 + 0.1 * d);
            seq = write_samples(s, ids[d], seq, T0, 90, "thermal", "gpu", 50 + 0.1 * d);
            lseq = write_logs(s, ids[d], lseq, T0, 60, 2);
            lseq = write_logs(s, ids[d], lseq, SWITCH, 30, 3);
        } else {
            seq = write_samples(s, ids[d], seq, T0, 90, "inference", "fps", 30 + 0.1 * d);
            lseq = write_logs(s, ids[d], lseq, T0, 60, 0);
            lseq = write_logs(s, ids[d], lseq, SWITCH, 30, 1);
        }
    }
}

static void test_before_after_control(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    struct compare_device devs[16];
    char ids[16][16];
    fleet(s, devs, ids);
    struct compare_result r;
    char err[256] = "";
    int64_t now = SWITCH + 30 * MIN;
    int rc = compare_devices(s, "inference.fps", devs, 16, 60 * MIN, now, &r, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "compare: %s\n", err);
    assert_int_equal(rc, 0);
    /* Counts: a sample a minute, 60 before and 30 after per updated device; control devices in
     * [switch, now). The samples at exactly the switch belong to "after". */
    assert_int_equal(r.before.count, 8 * 60);
    assert_int_equal(r.after.count, 8 * 30);
    assert_int_equal(r.control.count, 8 * 30);
    assert_int_equal(r.before.devices, 8);
    assert_int_equal(r.control.devices, 8);
    /* Device d, 60 samples: residues i % 7 of 0..59 -> the 29th..31st smallest are 3 (mean of
     * the residues 2.9, i.e. +0.145); the mean of the devices' offsets 0.1 d is 0.35. */
    close_to(r.before.mean, 30 + 0.35 + 0.05 * (double)(9 * (0 + 1 + 2 + 3) + 8 * (4 + 5 + 6)) / 60,
             1e-9);
    assert_true(r.before.p50 > 30.0 && r.before.p50 < 31.0);
    assert_true(r.after.p50 > 27.0 && r.after.p50 < 28.0);
    assert_true(r.control.p50 > 30.8 && r.control.p50 < 32.0);
    assert_true(r.after.p95 >= r.after.p50);
    /* Per-device medians fully separated, 8 against 8: scipy's p for that is 0.00093910569911719.
     */
    close_to(r.p_before_after, 0.0009391056991171899, 1e-12);
    close_to(r.p_after_control, 0.0009391056991171899, 1e-12);
    assert_true(r.significant_before_after);
    assert_true(r.significant_after_control);
    assert_true(r.scanned > 0);
    assert_false(r.truncated);

    /* The same devices on a metric that did not change: not significant. */
    rc = compare_devices(s, "thermal.gpu", devs, 8, 60 * MIN, now, &r, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_int_equal(r.before.count, 8 * 60);
    assert_int_equal(r.after.count, 8 * 30);
    assert_int_equal(r.control.count, 0);
    assert_true(isnan(r.control.p50));
    assert_true(r.p_before_after > 0.5);
    assert_false(r.significant_before_after);
    assert_true(isnan(r.p_after_control));
    assert_false(r.significant_after_control);
    /* As JSON (what rollout compare shows): NaN as null, every field there. */
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(compare_result_json(&b, "thermal.gpu", &r), 0);
    json_t *j = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "metric")), "thermal.gpu");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "before"), "count")),
                     8 * 60);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "after"), "devices")),
                     8);
    close_to(json_number_value(json_object_get(json_object_get(j, "after"), "p50")), r.after.p50,
             0);
    assert_true(json_is_null(json_object_get(json_object_get(j, "control"), "mean")));
    close_to(json_number_value(json_object_get(j, "p_before_after")), r.p_before_after, 0);
    assert_true(json_is_null(json_object_get(j, "p_after_control")));
    assert_true(json_is_false(json_object_get(j, "significant_before_after")));
    assert_true(json_is_false(json_object_get(j, "truncated")));
    assert_true(json_integer_value(json_object_get(j, "scanned")) > 0);
    assert_int_equal(json_object_size(j), 10);
    json_decref(j);
    ferry_buf_free(&b);

    /* Errors: unknown devices, bad metrics. */
    struct compare_device ghost[1] = {{"nobody", SWITCH}};
    assert_int_equal(
        compare_devices(s, "inference.fps", ghost, 1, 60 * MIN, now, &r, err, sizeof(err)),
        INGEST_STORE_ENOTFOUND);
    assert_non_null(strstr(err, "nobody"));
    assert_int_equal(compare_devices(s, "fps", devs, 16, 60 * MIN, now, &r, err, sizeof(err)),
                     INGEST_STORE_EINVAL);
    assert_non_null(strstr(err, "MEASUREMENT.FIELD"));
    assert_int_equal(compare_devices(s, "inference.fps", devs, 16, 0, now, &r, err, sizeof(err)),
                     INGEST_STORE_EINVAL);
    ingest_store_close(s);
}

/* A device with 100 samples of 10 and one with a single sample of 20: each weighs the same. */
static void test_devices_weigh_the_same(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    add_device(s, "chatty", 1);
    add_device(s, "quiet", 2);
    struct record rs[100];
    struct record_field f = {.key = {"fps", 3}, .type = RECORD_FIELD_INT, .v.i = 10};
    for (int i = 0; i < 100; i++)
        rs[i] = (struct record){.stream = RECORD_METRIC,
                                .ts_ns = T0 + i * SEC,
                                .name = {"inference", 9},
                                .fields = &f,
                                .n_fields = 1};
    write_records(s, "chatty", RECORD_METRIC, 1, rs, 100, NULL);
    struct record_field f20 = {.key = {"fps", 3}, .type = RECORD_FIELD_FLOAT, .v.f = 20};
    rs[0].fields = &f20;
    write_records(s, "quiet", RECORD_METRIC, 1, rs, 1, NULL);
    struct compare_device devs[2] = {{"chatty", 0}, {"quiet", 0}};
    struct compare_result r;
    char err[256];
    assert_int_equal(
        compare_devices(s, "inference.fps", devs, 2, 10 * MIN, T0 + 5 * MIN, &r, err, sizeof(err)),
        0);
    assert_int_equal(r.control.count, 101);
    assert_int_equal(r.control.devices, 2);
    close_to(r.control.mean, 15, 1e-12); /* pooled, it would be 10.099 */
    close_to(r.control.p50, 10, 0);      /* the lower weighted median */
    close_to(r.control.p95, 20, 0);
    assert_int_equal(r.before.count, 0);
    assert_true(isnan(r.p_after_control)); /* nobody updated */
    ingest_store_close(s);
}

static void test_error_logs_per_device_hour(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    struct compare_device devs[17];
    char ids[16][16];
    fleet(s, devs, ids);
    add_device(s, "silent", 99); /* says nothing: not a zero-error device */
    devs[16] = (struct compare_device){"silent", 0};
    struct compare_result r;
    char err[256] = "";
    int rc = compare_devices(s, "error_logs", devs, 17, 60 * MIN, SWITCH + 30 * MIN, &r, err,
                             sizeof(err));
    assert_int_equal(rc, 0);
    assert_int_equal(r.before.count, 8); /* one rate per device */
    assert_int_equal(r.after.count, 8);
    assert_int_equal(r.control.count, 8); /* the silent device is not counted */
    close_to(r.before.p50, 2, 1e-9);      /* 2 errors in 1 h */
    close_to(r.after.p50, 6, 1e-9);       /* 3 errors in 0.5 h */
    close_to(r.control.mean, 2, 1e-9);    /* 1 error in 0.5 h */
    /* 8 rates of 2 against 8 of 6 (ties within each group): scipy's p. */
    close_to(r.p_before_after, 0.00013758605716602886, 1e-12);
    assert_true(r.significant_before_after);

    struct compare_gate *g = NULL;
    assert_int_equal(compare_gate_parse("error_logs <= 2 x baseline", &g, err, sizeof(err)), 0);
    assert_string_equal(compare_gate_metric(g), "error_logs");
    double value, threshold;
    bool pass = true;
    assert_int_equal(compare_gate_eval(g, &r, &value, &threshold, &pass, err, sizeof(err)), 0);
    close_to(value, 6, 1e-9); /* mean by default */
    close_to(threshold, 4, 1e-9);
    assert_false(pass);
    compare_gate_free(g);
    ingest_store_close(s);
}

/* ---- Gates -------------------------------------------------------------------------------------
 */

static void expect_parse_error(const char *text, const char *column, const char *what)
{
    struct compare_gate *g = (struct compare_gate *)1;
    char err[256] = "";
    assert_int_equal(compare_gate_parse(text, &g, err, sizeof(err)), -1);
    assert_null(g);
    if (strstr(err, column) == NULL || strstr(err, what) == NULL)
        fail_msg("gate \"%s\": error \"%s\" lacks \"%s\" or \"%s\"", text, err, column, what);
}

static void expect_canonical(const char *text, const char *canonical)
{
    struct compare_gate *g = NULL;
    char err[256] = "", out[COMPARE_GATE_TEXT_MAX + 64];
    if (compare_gate_parse(text, &g, err, sizeof(err)) != 0)
        fail_msg("gate \"%s\": %s", text, err);
    assert_int_equal(compare_gate_format(g, out, sizeof(out)), 0);
    assert_string_equal(out, canonical);
    compare_gate_free(g);
}

static void test_gate_parse(void **state)
{
    (void)state;
    expect_canonical("inference.fps p50 >= 0.97 x baseline",
                     "inference.fps p50 >= 0.97 x baseline");
    expect_canonical("  thermal.gpu p95<=baseline+3 ", "thermal.gpu p95 <= baseline + 3");
    expect_canonical("error_logs <= 2 x baseline", "error_logs mean <= 2 x baseline");
    expect_canonical("inference.latency_ms p95 < control - 1.5",
                     "inference.latency_ms p95 < control - 1.5");
    expect_canonical("power.total mean > 2.5e1", "power.total mean > 25");
    expect_canonical("a.b.c count >= 1.5 * control", "a.b.c count >= 1.5 x control");
    expect_canonical("inference.fps >= baseline", "inference.fps mean >= baseline");
    expect_canonical("inference.fps>=0.9x baseline", "inference.fps mean >= 0.9 x baseline");

    expect_parse_error("inference.fps p50 >= 0.97 x basline", "column 29", "\"basline\"");
    expect_parse_error("inference.fps p51 >= 3", "column 15", "statistic");
    expect_parse_error("fps >= 3", "column 1", "MEASUREMENT.FIELD");
    expect_parse_error("inference.fps >= 3 x", "column 21", "end of the gate");
    expect_parse_error("a.b < 3 4", "column 9", "the end of the gate");
    expect_parse_error("a.b p50 = 3", "column 9", "comparison");
    expect_parse_error("a.b p50 >= baseline * 3", "column 21", "+ or -");
    expect_parse_error("a.b p50 >= 0x10 x baseline", "column 13", "x (times)");
    expect_parse_error("a.b p50 >= nan", "column 12", "a number, baseline or control");
    expect_parse_error("a.b p50 >= 1e999", "column 12", "a number");
    expect_parse_error("a.b p50 >= baseline + ", "column 23", "a number");
    expect_parse_error("", "column 1", "a metric");
    expect_parse_error("a.b p50 >= \x01", "column 12", "\\x01");
    char long_gate[COMPARE_GATE_TEXT_MAX + 8];
    memset(long_gate, 'a', sizeof(long_gate) - 1);
    long_gate[sizeof(long_gate) - 1] = '\0';
    struct compare_gate *g = NULL;
    char err[256];
    assert_int_equal(compare_gate_parse(long_gate, &g, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "longer than"));
}

static void test_gates_pass_fail_and_too_few(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    struct compare_device devs[16];
    char ids[16][16];
    fleet(s, devs, ids);
    struct compare_result r;
    char err[256] = "";
    assert_int_equal(compare_devices(s, "inference.fps", devs, 16, 60 * MIN, SWITCH + 30 * MIN, &r,
                                     err, sizeof(err)),
                     0);
    struct {
        const char *gate;
        bool pass;
    } cases[] = {
        {"inference.fps p50 >= 0.97 x baseline", false}, /* 10 % lower: the gate catches it */
        {"inference.fps p50 >= 0.85 x baseline", true},
        {"inference.fps mean < control", true},
        {"inference.fps p95 <= baseline + 3", true},
        {"inference.fps p50 > baseline - 1", false},
        {"inference.fps count >= 240", true},
        {"inference.fps p50 >= 28", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct compare_gate *g = NULL;
        assert_int_equal(compare_gate_parse(cases[i].gate, &g, err, sizeof(err)), 0);
        double value, threshold;
        bool pass = !cases[i].pass;
        assert_int_equal(compare_gate_eval(g, &r, &value, &threshold, &pass, err, sizeof(err)), 0);
        if (pass != cases[i].pass)
            fail_msg("%s: value %g threshold %g pass %d", cases[i].gate, value, threshold, pass);
        if (i == 0) {
            close_to(value, r.after.p50, 0);
            close_to(threshold, 0.97 * r.before.p50, 1e-12);
        }
        compare_gate_free(g);
    }

    /* Two devices switched two minutes ago: 4 samples after the switch, too few to decide. */
    struct compare_device two[2] = {{"u0", SWITCH}, {"u1", SWITCH}};
    assert_int_equal(compare_devices(s, "inference.fps", two, 2, 60 * MIN, SWITCH + 2 * MIN, &r,
                                     err, sizeof(err)),
                     0);
    assert_int_equal(r.after.count, 4);
    assert_true(isnan(r.p_before_after)); /* 2 devices: below COMPARE_TEST_MIN_DEVICES */
    assert_false(r.significant_before_after);
    struct compare_gate *g = NULL;
    assert_int_equal(
        compare_gate_parse("inference.fps p50 >= 0.97 x baseline", &g, err, sizeof(err)), 0);
    double value, threshold;
    bool pass = true;
    err[0] = '\0';
    assert_int_equal(compare_gate_eval(g, &r, &value, &threshold, &pass, err, sizeof(err)), -1);
    assert_false(pass);
    assert_non_null(strstr(err, "4 samples after the switch"));
    compare_gate_free(g);
    /* A control reference with no control devices: too few too. */
    assert_int_equal(compare_gate_parse("inference.fps p50 >= control", &g, err, sizeof(err)), 0);
    assert_int_equal(compare_devices(s, "inference.fps", two, 2, 60 * MIN, SWITCH + 30 * MIN, &r,
                                     err, sizeof(err)),
                     0);
    assert_int_equal(compare_gate_eval(g, &r, &value, &threshold, &pass, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "in the control"));
    compare_gate_free(g);
    ingest_store_close(s);
}

/* ---- The version benchmark ----------------------------------------------------------------------
 */

static void write_event(struct ingest_store *s, const char *dev, uint64_t seq, int64_t ts,
                        const char *name, const char *const *kv, size_t n_kv,
                        const char *versions_json)
{
    struct record_field f[8];
    for (size_t i = 0; i < n_kv; i++)
        f[i] = (struct record_field){.key = {kv[2 * i], strlen(kv[2 * i])},
                                     .type = RECORD_FIELD_STRING,
                                     .v.s = {kv[2 * i + 1], strlen(kv[2 * i + 1])}};
    struct record r = {.stream = RECORD_EVENT,
                       .ts_ns = ts,
                       .name = {name, strlen(name)},
                       .fields = f,
                       .n_fields = n_kv};
    write_records(s, dev, RECORD_EVENT, seq, &r, 1, versions_json);
}

/* v0..v3 report model 1.0.0 and commit 2.0.0 at the switch (fps 30 -> 27); v4, v5 stay on 1.0.0;
 * v6 never sent an event but its versions object says 1.0.0. v0 logs 3 errors after the switch. */
static void test_versions_benchmark(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    static const char *const ids[] = {"v0", "v1", "v2", "v3", "v4", "v5", "v6"};
    static const char *const old[] = {"model", "1.0.0", "ferryd", "0.4.0"};
    static const char *const commit[] = {"component", "model",           "state",
                                         "committed", "running_version", "2.0.0"};
    static const char *const other[] = {"component", "rootfs", "running_version", "9.9.9"};
    for (int d = 0; d < 7; d++) {
        add_device(s, ids[d], (uint8_t)(d + 1));
        if (d < 6)
            write_event(s, ids[d], 1, T0 - 10 * MIN, "versions", old, 2, "{\"model\":\"1.0.0\"}");
        else
            write_event(s, ids[d], 1, T0 - 10 * MIN, "ota.idle", other, 2, "{\"model\":\"1.0.0\"}");
        if (d < 4) {
            write_event(s, ids[d], 2, SWITCH, "ota.committed", commit, 3, "{\"model\":\"2.0.0\"}");
            uint64_t seq = write_samples(s, ids[d], 1, T0, 60, "inference", "fps", 30 + 0.1 * d);
            (void)write_samples(s, ids[d], seq, SWITCH, 30, "inference", "fps", 27 + 0.1 * d);
        } else {
            (void)write_samples(s, ids[d], 1, T0, 90, "inference", "fps", 30 + 0.1 * d);
        }
    }
    (void)write_logs(s, "v0", 1, SWITCH, 30, 3);
    struct compare_versions_req req;
    char err[256] = "";
    int64_t now = SWITCH + 30 * MIN;
    assert_int_equal(compare_versions_parse("component=model&metrics=inference.fps,thermal.gpu"
                                            "&since=2h",
                                            now, &req, err, sizeof(err)),
                     0);
    assert_int_equal(req.n_metrics, 2);
    assert_int_equal(req.since_ns, now - 120 * MIN);
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = compare_versions_json(s, &req, now, &b, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "versions: %s\n", err);
    assert_int_equal(rc, 0);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)b.data, b.len, 0, &jerr);
    if (root == NULL)
        fail_msg("not JSON: %s: %.*s", jerr.text, (int)b.len, (const char *)b.data);
    assert_string_equal(json_string_value(json_object_get(root, "component")), "model");
    assert_int_equal(json_integer_value(json_object_get(root, "devices")), 7);
    assert_false(json_is_true(json_object_get(root, "truncated")));
    json_t *versions = json_object_get(root, "versions");
    assert_int_equal(json_array_size(versions), 2);
    json_t *v2 = json_array_get(versions, 0), *v1 = json_array_get(versions, 1); /* newest first */
    assert_string_equal(json_string_value(json_object_get(v2, "version")), "2.0.0");
    assert_string_equal(json_string_value(json_object_get(v1, "version")), "1.0.0");
    assert_int_equal(json_integer_value(json_object_get(v2, "running_devices")), 4);
    assert_int_equal(json_integer_value(json_object_get(v1, "running_devices")), 3);
    json_t *fps2 = json_object_get(json_object_get(v2, "metrics"), "inference.fps");
    json_t *fps1 = json_object_get(json_object_get(v1, "metrics"), "inference.fps");
    assert_int_equal(json_integer_value(json_object_get(fps2, "devices")), 4);
    assert_int_equal(json_integer_value(json_object_get(fps2, "count")), 4 * 30);
    assert_int_equal(json_integer_value(json_object_get(fps1, "devices")), 7);
    assert_int_equal(json_integer_value(json_object_get(fps1, "count")), 4 * 60 + 3 * 90);
    double p50_2 = json_number_value(json_object_get(fps2, "p50"));
    double p50_1 = json_number_value(json_object_get(fps1, "p50"));
    assert_true(p50_2 > 27.0 && p50_2 < 28.0);
    assert_true(p50_1 > 30.0 && p50_1 < 31.0);
    /* No thermal data: counts 0, statistics null. */
    json_t *gpu = json_object_get(json_object_get(v2, "metrics"), "thermal.gpu");
    assert_int_equal(json_integer_value(json_object_get(gpu, "count")), 0);
    assert_true(json_is_null(json_object_get(gpu, "p50")));
    /* Error logs: v0 had 3 in its half hour on 2.0.0 (6/h), v1..v3 none: the mean is 1.5. */
    json_t *errs = json_object_get(json_object_get(v2, "metrics"), "error_logs");
    assert_int_equal(json_integer_value(json_object_get(errs, "devices")), 4);
    close_to(json_number_value(json_object_get(errs, "mean")), 1.5, 1e-9);

    /* The table for a person. */
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    assert_non_null(f);
    assert_int_equal(compare_versions_print((const char *)b.data, b.len, f), 0);
    fclose(f);
    assert_non_null(strstr(text, "2.0.0"));
    assert_non_null(strstr(text, "inference.fps"));
    free(text);
    assert_int_equal(compare_versions_print("{}", 2, stderr), -1);
    json_decref(root);
    ferry_buf_free(&b);

    /* Request errors name the parameter. */
    struct {
        const char *query, *what;
    } bad[] = {
        {"metrics=a.b", "component"},
        {"component=model&bogus=1", "unknown parameter \"bogus\""},
        {"component=model&metrics=error_logs", "always reported"},
        {"component=model&metrics=a.b,,c.d", "item 2"},
        {"component=model&metrics=a.b,a.b", "repeats"},
        {"component=model&metrics=fps", "MEASUREMENT.FIELD"},
        {"component=model&since=yesterday", "since"},
        {"component=model&since=99999999999999999999", "since"},
        {"component=%01", "component"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(compare_versions_parse(bad[i].query, now, &req, err, sizeof(err)), -1);
        if (strstr(err, bad[i].what) == NULL)
            fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].query, err, bad[i].what);
    }
    ingest_store_close(s);
}

static int reset_store(void **state)
{
    (void)state;
    if (g_cfg.kind == INGEST_STORE_LMDB) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
        return system(cmd) == 0 ? 0 : -1;
    }
    char err[256];
    struct ingest_store *s = NULL;
    if (ingest_store_open(&g_cfg, &s, err, sizeof(err)) != 0)
        return -1;
    ingest_store_close(s);
    /* with-postgres.sh exports PGHOST, PGUSER and PGDATABASE for psql. */
    return system("psql -q -c 'TRUNCATE records, ingest_kv, ingest_leases, forward_cursors, "
                  "devices, device_streams CASCADE' >/dev/null") == 0
               ? 0
               : -1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_compare lmdb|pg\n");
        return 2;
    }
    memset(&g_cfg, 0, sizeof(g_cfg));
    if (strcmp(argv[1], "pg") == 0) {
        const char *ci = getenv("FERRY_TEST_PG");
        if (ci == NULL) {
            fprintf(stderr, "FERRY_TEST_PG not set (run through with-postgres.sh)\n");
            return 2;
        }
        g_cfg.kind = INGEST_STORE_PG;
        g_cfg.pg_conninfo = ci;
        g_cfg.pg_connections = 2;
    } else {
        snprintf(g_dir, sizeof(g_dir), "/tmp/ferry-compare-test.%ld", (long)getpid());
        g_cfg.kind = INGEST_STORE_LMDB;
        g_cfg.lmdb_dir = g_dir;
        g_cfg.lmdb_map_size = 256 << 20;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mann_whitney_matches_scipy),
        cmocka_unit_test(test_gate_parse),
        cmocka_unit_test_setup(test_before_after_control, reset_store),
        cmocka_unit_test_setup(test_devices_weigh_the_same, reset_store),
        cmocka_unit_test_setup(test_error_logs_per_device_hour, reset_store),
        cmocka_unit_test_setup(test_gates_pass_fail_and_too_few, reset_store),
        cmocka_unit_test_setup(test_versions_benchmark, reset_store),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (g_cfg.kind == INGEST_STORE_LMDB) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
        if (system(cmd) != 0)
            failed++;
    }
    return failed;
}
