/*
 * The forwarders' encoders (cloud-ingest/forward/forward_impl.h): InfluxDB line protocol keeps
 * field types and escapes what line protocol needs; remote write bodies decode (snappy +
 * protobuf) to sorted labels, sanitized names and millisecond device times; the series guard
 * keeps at most its limit and counts what it drops; output is valid UTF-8 whatever came in.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <snappy-c.h>

#include "cloud-ingest/forward/forward_impl.h"
#include "common/buf.h"
#include "remote_write.pb-c.h"

#define S(lit)                                                                                     \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }

static void line(const struct record *r, const char *device, int64_t ts, const char *precision,
                 enum ingest_forward_uint u, char *out, size_t out_len, uint64_t *skipped)
{
    struct ferry_buf b = FERRY_BUF_INIT;
    uint64_t lines = 0;
    *skipped = 0;
    assert_int_equal(fwd_influx_line(&b, device, r, ts, precision, u, &lines, skipped), 0);
    assert_true(b.len < out_len);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    ferry_buf_free(&b);
}

static void influx_line_keeps_types_and_escapes(void **state)
{
    (void)state;
    struct record_tag tags[3] = {
        {S("host,a"), S("x y")}, {S("device"), S("d")}, {S("empty"), S("")}};
    struct record_field f[6] = {
        {.key = S("usage"), .type = RECORD_FIELD_FLOAT, .v.f = 1.5},
        {.key = S("n"), .type = RECORD_FIELD_INT, .v.i = -3},
        {.key = S("u"), .type = RECORD_FIELD_UINT, .v.u = 3},
        {.key = S("s"), .type = RECORD_FIELD_STRING, .v.s = S("a\"b\\c")},
        {.key = S("ok"), .type = RECORD_FIELD_BOOL, .v.b = true},
        {.key = S("bad"), .type = RECORD_FIELD_FLOAT, .v.f = NAN},
    };
    struct record r = {.stream = RECORD_METRIC,
                       .name = S("cpu load"),
                       .tags = tags,
                       .n_tags = 3,
                       .fields = f,
                       .n_fields = 6};
    char out[512];
    uint64_t skipped;
    line(&r, "dev-1", 1000, "ns", INGEST_FORWARD_UINT_INTEGER, out, sizeof(out), &skipped);
    assert_string_equal(out, "cpu\\ load,device=dev-1,host\\,a=x\\ y,tag_device=d "
                             "usage=1.5,n=-3i,u=3i,s=\"a\\\"b\\\\c\",ok=true 1000\n");
    assert_int_equal(skipped, 1);
    line(&r, "dev-1", -1, "s", INGEST_FORWARD_UINT_UNSIGNED, out, sizeof(out), &skipped);
    assert_non_null(strstr(out, ",u=3u,"));
    assert_non_null(strstr(out, " -1\n")); /* floored, not truncated towards zero */
    /* a uint beyond int64 as "integer" becomes a float rather than a wrong integer */
    f[2].v.u = UINT64_MAX;
    line(&r, "dev-1", 1000, "ms", INGEST_FORWARD_UINT_INTEGER, out, sizeof(out), &skipped);
    assert_non_null(strstr(out, ",u=1.8446744073709552e+19,"));
    assert_non_null(strstr(out, " 0\n"));
    /* nothing but NaN: no line at all */
    struct record only_nan = {
        .stream = RECORD_METRIC, .name = S("m"), .fields = &f[5], .n_fields = 1};
    line(&only_nan, "d", 1, "ns", INGEST_FORWARD_UINT_INTEGER, out, sizeof(out), &skipped);
    assert_string_equal(out, "");
}

static void influx_log_line_and_invalid_utf8(void **state)
{
    (void)state;
    struct record r = {.stream = RECORD_LOG,
                       .name = S("app\n\xff"),
                       .level = RECORD_LEVEL_WARN,
                       .message = S("frame \"7\"\ndropped")};
    char out[256];
    uint64_t skipped;
    line(&r, "d", 5, "ns", INGEST_FORWARD_UINT_INTEGER, out, sizeof(out), &skipped);
    assert_string_equal(
        out, "app\\ \xef\xbf\xbd,device=d,level=warn message=\"frame \\\"7\\\"\ndropped\" 5\n");
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(fwd_utf8_append(&b, "a\xc3\x28z\xed\xa0\x80\0y", 9), 0);
    assert_int_equal(b.len, 16);
    assert_memory_equal(b.data, "a\xef\xbf\xbd(z\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdy", 16);
    ferry_buf_free(&b);
}

static Prometheus__WriteRequest *decode(const struct ferry_buf *body)
{
    size_t len = 0;
    assert_int_equal(snappy_uncompressed_length((const char *)body->data, body->len, &len),
                     SNAPPY_OK);
    char *raw = malloc(len ? len : 1);
    assert_int_equal(snappy_uncompress((const char *)body->data, body->len, raw, &len), SNAPPY_OK);
    Prometheus__WriteRequest *req =
        prometheus__write_request__unpack(NULL, len, (const uint8_t *)raw);
    free(raw);
    assert_non_null(req);
    return req;
}

static void remote_write_names_labels_and_series_guard(void **state)
{
    (void)state;
    struct fwd_prom *p = NULL;
    assert_int_equal(fwd_prom_new(2, &p), 0);
    struct record_tag tags[3] = {{S("Zone"), S("a")}, {S("device"), S("x")}, {S("__x"), S("y")}};
    struct record_field f[3] = {
        {.key = S("usage.pct"), .type = RECORD_FIELD_FLOAT, .v.f = 2.5},
        {.key = S("up"), .type = RECORD_FIELD_BOOL, .v.b = true},
        {.key = S("note"), .type = RECORD_FIELD_STRING, .v.s = S("skip me")},
    };
    struct record r = {.stream = RECORD_METRIC,
                       .name = S("9cpu"),
                       .tags = tags,
                       .n_tags = 3,
                       .fields = f,
                       .n_fields = 3};
    assert_int_equal(fwd_prom_add(p, "dev-1", &r, 1500999999), 0); /* 2 series */
    assert_int_equal(fwd_prom_add(p, "dev-1", &r, 2500000000), 0); /* same 2 series */
    assert_int_equal(fwd_prom_add(p, "dev-2", &r, 2500000000), 0); /* 2 more: dropped */
    assert_int_equal(fwd_prom_samples(p), 4);
    assert_int_equal(fwd_prom_dropped(p), 2);
    assert_int_equal(fwd_prom_skipped(p), 3);
    assert_int_equal(fwd_prom_series(p), 2);
    struct ferry_buf body = FERRY_BUF_INIT;
    assert_int_equal(fwd_prom_finish(p, &body), 0);
    Prometheus__WriteRequest *req = decode(&body);
    assert_int_equal(req->n_timeseries, 2);
    bool saw_usage = false;
    for (size_t i = 0; i < req->n_timeseries; i++) {
        Prometheus__TimeSeries *t = req->timeseries[i];
        assert_int_equal(t->n_labels, 5);
        for (size_t k = 1; k < t->n_labels; k++)
            assert_true(strcmp(t->labels[k - 1]->name, t->labels[k]->name) < 0);
        /* sorted bytewise: "Zone" < "__name__" < "device" < "tag___x" < "tag_device" */
        assert_string_equal(t->labels[0]->name, "Zone");
        assert_string_equal(t->labels[1]->name, "__name__");
        assert_string_equal(t->labels[2]->name, "device");
        assert_string_equal(t->labels[2]->value, "dev-1");
        assert_string_equal(t->labels[3]->name, "tag___x");
        assert_string_equal(t->labels[4]->name, "tag_device");
        assert_int_equal(t->n_samples, 2);
        assert_int_equal(t->samples[0]->timestamp, 1500); /* ms, in time order */
        assert_int_equal(t->samples[1]->timestamp, 2500);
        if (strcmp(t->labels[1]->value, "_9cpu_usage_pct") == 0) {
            saw_usage = true;
            assert_true(t->samples[0]->value == 2.5);
        } else {
            assert_string_equal(t->labels[1]->value, "_9cpu_up");
            assert_true(t->samples[0]->value == 1);
        }
    }
    assert_true(saw_usage);
    prometheus__write_request__free_unpacked(req, NULL);
    /* the guard is kept across batches: known series still pass */
    fwd_prom_reset(p);
    assert_int_equal(fwd_prom_add(p, "dev-1", &r, 3000000000), 0);
    assert_int_equal(fwd_prom_samples(p), 2);
    ferry_buf_free(&body);
    fwd_prom_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(influx_line_keeps_types_and_escapes),
        cmocka_unit_test(influx_log_line_and_invalid_utf8),
        cmocka_unit_test(remote_write_names_labels_and_series_guard),
    };
    return cmocka_run_group_tests_name("forward_encode", tests, NULL, NULL);
}
