/*
 * test_lineproto.c - the record payload (record_pack/record_unpack) and the line protocol
 * parser and formatter: types, escapes, precisions, errors with line and column, limits, and
 * format -> parse round trips.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "transport/lineproto.h"
#include "transport/record.h"

#define S(x) ((struct record_str){(x), sizeof(x) - 1})

/* ---- record_pack / record_unpack ------------------------------------------------------------ */

static void test_record_pack_roundtrip_and_truncation(void **state)
{
    (void)state;
    struct record_tag tags[2] = {{S("host"), S("a")}, {S("k"), S("")}};
    struct record_field f[5] = {
        {S("f"), RECORD_FIELD_FLOAT, {.f = -0.0}},
        {S("i"), RECORD_FIELD_INT, {.i = INT64_MIN}},
        {S("u"), RECORD_FIELD_UINT, {.u = UINT64_MAX}},
        {S("b"), RECORD_FIELD_BOOL, {.b = true}},
        {S("s"), RECORD_FIELD_STRING, {.s = S("hello \"world\"\n")}},
    };
    struct record r = {RECORD_LOG, 0, -5, S("app"), 3, S("boom"), tags, 2, f, 5};
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(record_pack(&r, &b), 0);
    struct record_scratch *sc = malloc(sizeof *sc);
    struct record out;
    char why[128];
    assert_int_equal(record_unpack(b.data, b.len, sc, &out, why, sizeof why), 0);
    assert_true(record_equal(&r, &out));
    for (size_t n = 0; n < b.len; n++) {
        int rc = record_unpack(b.data, n, sc, &out, why, sizeof why);
        assert_true(rc == RECORD_ETRUNC || rc == RECORD_EFORMAT);
        assert_true(strlen(why) > 0);
    }
    /* trailing byte, bad version, bad type */
    assert_int_equal(ferry_buf_append_u8(&b, 0), 0);
    assert_int_equal(record_unpack(b.data, b.len, sc, &out, why, sizeof why), RECORD_EFORMAT);
    b.len--;
    b.data[0] = 9;
    assert_int_equal(record_unpack(b.data, b.len, sc, &out, why, sizeof why), RECORD_EFORMAT);
    assert_non_null(strstr(why, "version"));
    /* limits */
    struct record bad = r;
    bad.n_tags = RECORD_MAX_TAGS + 1;
    assert_int_equal(record_pack(&bad, &b), RECORD_ELIMIT);
    bad = r;
    bad.level = 9;
    assert_int_equal(record_pack(&bad, &b), RECORD_EINVAL);
    /* a payload claiming too many fields */
    uint8_t hostile[] = {1, 1, 0, 0, 1, 'm', 0, 0, 0xff, 0x0f};
    assert_int_equal(record_unpack(hostile, sizeof hostile, sc, &out, why, sizeof why),
                     RECORD_ELIMIT);
    /* a string length beyond the payload */
    uint8_t hostile2[] = {1, 1, 0, 0, 0x80, 0x01, 'm'};
    assert_int_equal(record_unpack(hostile2, sizeof hostile2, sc, &out, why, sizeof why),
                     RECORD_ETRUNC);
    free(sc);
    ferry_buf_free(&b);
}

static void test_names(void **state)
{
    (void)state;
    enum record_stream s;
    enum record_log_level l;
    assert_string_equal(record_stream_name(RECORD_LOG), "log");
    assert_null(record_stream_name((enum record_stream)7));
    assert_int_equal(record_stream_parse("metric", &s), 0);
    assert_int_equal(s, RECORD_METRIC);
    assert_int_equal(record_stream_parse("x", &s), -1);
    assert_int_equal(record_level_parse("WARNING", &l), 0);
    assert_int_equal(l, RECORD_LEVEL_WARN);
    assert_int_equal(record_level_parse("info", &l), 0);
    assert_int_equal(l, RECORD_LEVEL_INFO);
    assert_int_equal(record_level_parse("loud", &l), -1);
    assert_string_equal(record_level_name(RECORD_LEVEL_ERROR), "error");
}

/* ---- line protocol -------------------------------------------------------------------------- */

struct collected {
    struct ferry_buf packed[64];
    size_t n;
};

static int collect(void *arg, const struct record *r)
{
    struct collected *c = arg;
    if (c->n >= 64)
        return -1;
    memset(&c->packed[c->n], 0, sizeof c->packed[c->n]);
    return record_pack(r, &c->packed[c->n++]);
}

static void collected_free(struct collected *c)
{
    for (size_t i = 0; i < c->n; i++)
        ferry_buf_free(&c->packed[i]);
    c->n = 0;
}

static struct record unpack_at(struct collected *c, size_t i, struct record_scratch *sc)
{
    struct record r;
    assert_true(i < c->n);
    assert_int_equal(record_unpack(c->packed[i].data, c->packed[i].len, sc, &r, NULL, 0), 0);
    return r;
}

static int parse(const char *text, enum lineproto_precision p, struct collected *c,
                 struct lineproto_error *err)
{
    return lineproto_parse(text, strlen(text), p, 999, collect, c, err);
}

static void test_parse_types_and_escapes(void **state)
{
    (void)state;
    struct collected c = {0};
    struct lineproto_error err;
    struct record_scratch *sc = malloc(sizeof *sc);
    const char *text =
        "# comment\n"
        "\n"
        "cpu,host=jet\\ son\\,1,core=0 usage=12.5,idle=1e3,n=-42i,u=42u,ok=t,s=\"a \\\"q\\\" \\\\ "
        "z\" 1700000000000000000\n"
        "my\\ meas\\,x,t\\=k=v\\=1 f\\ k=FALSE   \r\n"
        "m v=\"multi\nline\",w=true -5\n"
        "m v=1,v=2 7"; /* no final newline; duplicate key: last wins */
    int rc = parse(text, LINEPROTO_NS, &c, &err);
    if (rc)
        fprintf(stderr, "%zu:%zu %s\n", err.line, err.column, err.reason);
    assert_int_equal(rc, 0);
    assert_int_equal(c.n, 4);
    struct record r = unpack_at(&c, 0, sc);
    assert_int_equal(r.stream, RECORD_METRIC);
    assert_int_equal(r.ts_ns, 1700000000000000000ll);
    assert_int_equal(r.n_tags, 2);
    assert_int_equal(r.tags[0].value.len, strlen("jet son,1"));
    assert_memory_equal(r.tags[0].value.ptr, "jet son,1", 9);
    assert_int_equal(r.n_fields, 6);
    assert_true(r.fields[0].type == RECORD_FIELD_FLOAT && r.fields[0].v.f == 12.5);
    assert_true(r.fields[1].v.f == 1000.0);
    assert_true(r.fields[2].type == RECORD_FIELD_INT && r.fields[2].v.i == -42);
    assert_true(r.fields[3].type == RECORD_FIELD_UINT && r.fields[3].v.u == 42);
    assert_true(r.fields[4].type == RECORD_FIELD_BOOL && r.fields[4].v.b);
    assert_int_equal(r.fields[5].type, RECORD_FIELD_STRING);
    assert_int_equal(r.fields[5].v.s.len, strlen("a \"q\" \\ z"));
    assert_memory_equal(r.fields[5].v.s.ptr, "a \"q\" \\ z", r.fields[5].v.s.len);
    r = unpack_at(&c, 1, sc);
    assert_memory_equal(r.name.ptr, "my meas,x", 9);
    assert_memory_equal(r.tags[0].key.ptr, "t=k", 3);
    assert_memory_equal(r.tags[0].value.ptr, "v=1", 3);
    assert_memory_equal(r.fields[0].key.ptr, "f k", 3);
    assert_false(r.fields[0].v.b);
    assert_int_equal(r.ts_ns, 999); /* default timestamp */
    r = unpack_at(&c, 2, sc);
    assert_int_equal(r.fields[0].v.s.len, 10);
    assert_int_equal(r.ts_ns, -5);
    r = unpack_at(&c, 3, sc);
    assert_int_equal(r.n_fields, 1);
    assert_true(r.fields[0].v.f == 2.0);
    collected_free(&c);

    /* precisions */
    const enum lineproto_precision ps[] = {LINEPROTO_NS, LINEPROTO_US, LINEPROTO_MS, LINEPROTO_S};
    const int64_t want[] = {17, 17000, 17000000, 17000000000ll};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(parse("m v=1 17\n", ps[i], &c, NULL), 0);
        r = unpack_at(&c, 0, sc);
        assert_int_equal(r.ts_ns, want[i]);
        collected_free(&c);
    }
    enum lineproto_precision p;
    assert_int_equal(lineproto_precision_parse("ms", &p), 0);
    assert_int_equal(p, LINEPROTO_MS);
    assert_int_equal(lineproto_precision_parse("u", &p), 0);
    assert_int_equal(p, LINEPROTO_US);
    assert_int_equal(lineproto_precision_parse("h", &p), -1);
    free(sc);
}

static void test_parse_errors_say_where(void **state)
{
    (void)state;
    struct {
        const char *text;
        int rc;
        size_t line, column;
        const char *reason;
    } cases[] = {
        {"m v=1\nm\n", LINEPROTO_ESYNTAX, 2, 2, "missing fields"},
        {"m v=1\n\nm v=abc\n", LINEPROTO_ESYNTAX, 3, 5, "invalid field value"},
        {"m v=1x 5\n", LINEPROTO_ESYNTAX, 1, 5, "invalid field value"},
        {"m v=\"open\n", LINEPROTO_ESYNTAX, 1, 5, "unterminated"},
        {"m,t v=1\n", LINEPROTO_ESYNTAX, 1, 4, "tag key without"},
        {"m,t= v=1\n", LINEPROTO_ESYNTAX, 1, 5, "empty tag value"},
        {",t=1 v=1\n", LINEPROTO_ESYNTAX, 1, 1, "empty measurement"},
        {"m v=1 12a\n", LINEPROTO_ESYNTAX, 1, 9, "invalid timestamp"},
        {"m v=1 1 2\n", LINEPROTO_ESYNTAX, 1, 9, "after timestamp"},
        {"m v=99999999999999999999i\n", LINEPROTO_ERANGE, 1, 5, "range"},
        {"m v=9223372036854775808i\n", LINEPROTO_ERANGE, 1, 5, "range"},
        {"m v=-1u\n", LINEPROTO_ERANGE, 1, 5, "negative"},
        {"m v=1e999\n", LINEPROTO_ERANGE, 1, 5, "range"},
        {"m v=1 99999999999999999999\n", LINEPROTO_ERANGE, 1, 7, "timestamp"},
        {"m v=nan\n", LINEPROTO_ESYNTAX, 1, 5, "invalid field value"},
        {"m v=\n", LINEPROTO_ESYNTAX, 1, 5, "missing field value"},
        {"m =1\n", LINEPROTO_ESYNTAX, 1, 3, "empty field key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct collected c = {0};
        struct lineproto_error err;
        int rc = parse(cases[i].text, LINEPROTO_NS, &c, &err);
        if (rc != cases[i].rc || err.line != cases[i].line || err.column != cases[i].column ||
            !strstr(err.reason, cases[i].reason))
            fprintf(stderr, "case %zu: rc %d line %zu col %zu reason '%s'\n", i, rc, err.line,
                    err.column, err.reason);
        assert_int_equal(rc, cases[i].rc);
        assert_int_equal(err.line, cases[i].line);
        assert_int_equal(err.column, cases[i].column);
        assert_non_null(strstr(err.reason, cases[i].reason));
        collected_free(&c);
    }
    /* the seconds precision overflows int64 nanoseconds sooner */
    struct collected c = {0};
    struct lineproto_error err;
    assert_int_equal(parse("m v=1 9300000000\n", LINEPROTO_S, &c, &err), LINEPROTO_ERANGE);
    collected_free(&c);
}

/* Text is UTF-8: ill-formed sequences and NUL are refused with the offending byte's line and
 * column (the strings are given with their length: NUL inside), lines before it delivered. */
static void test_parse_refuses_invalid_utf8(void **state)
{
    (void)state;
    struct {
        const char *text;
        size_t len;
        size_t line, column, delivered;
        const char *reason;
    } cases[] = {
        {"m v=1\nm,host=a\xff v=1\n", 19, 2, 9, 1, "invalid UTF-8 (\\xff)"},
        {"m\xc0\xaf v=1\n", 9, 1, 2, 0, "invalid UTF-8"},                    /* overlong '/' */
        {"m v=\"\xed\xa0\x80\"\n", 11, 1, 6, 0, "invalid UTF-8"},            /* surrogate */
        {"m,t=a\0b v=1\n", 12, 1, 6, 0, "NUL byte"},                         /* NUL in a tag */
        {"m v=\"two\nli\xfe\"\n", 15, 2, 3, 0, "invalid UTF-8"},             /* inside a string */
        {"m v=1\nm v=\"\xf4\x90\x80\x80\"\n", 18, 2, 6, 1, "invalid UTF-8"}, /* > U+10FFFF */
        {"m v=1 1\x1b\n", 9, 1, 8, 0, "unexpected '\\x1b'"}, /* ESC is valid UTF-8 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct collected c = {0};
        struct lineproto_error err;
        int rc = lineproto_parse(cases[i].text, cases[i].len, LINEPROTO_NS, 999, collect, &c, &err);
        if (err.line != cases[i].line || err.column != cases[i].column ||
            !strstr(err.reason, cases[i].reason))
            fprintf(stderr, "case %zu: rc %d line %zu col %zu reason '%s'\n", i, rc, err.line,
                    err.column, err.reason);
        assert_true(rc == (i == 6 ? LINEPROTO_ESYNTAX : LINEPROTO_EENCODING));
        assert_int_equal(err.line, cases[i].line);
        assert_int_equal(err.column, cases[i].column);
        assert_non_null(strstr(err.reason, cases[i].reason));
        assert_int_equal(c.n, cases[i].delivered);
        for (const char *q = err.reason; *q; q++)
            assert_true((unsigned char)*q >= 0x20 && (unsigned char)*q < 0x7f);
        collected_free(&c);
    }
    /* well-formed text of every length is accepted */
    struct collected c = {0};
    const char *ok = "m\xc3\xa9,h\xe6\x97\xa5=\xf0\x9f\x98\x80 s=\"\xe2\x82\xac\" 1\n";
    assert_int_equal(parse(ok, LINEPROTO_NS, &c, NULL), 0);
    assert_int_equal(c.n, 1);
    collected_free(&c);
}

static void test_parse_limits(void **state)
{
    (void)state;
    struct ferry_buf t = FERRY_BUF_INIT;
    struct collected c = {0};
    struct lineproto_error err;
    /* too many tags */
    assert_int_equal(ferry_buf_append(&t, "m", 1), 0);
    for (int i = 0; i <= RECORD_MAX_TAGS; i++)
        assert_int_equal(ferry_buf_printf(&t, ",t%d=v", i), 0);
    assert_int_equal(ferry_buf_append(&t, " v=1\n", 5), 0);
    assert_int_equal(lineproto_parse((char *)t.data, t.len, LINEPROTO_NS, 0, collect, &c, &err),
                     LINEPROTO_ELIMIT);
    assert_non_null(strstr(err.reason, "tags"));
    /* too many fields */
    t.len = 0;
    assert_int_equal(ferry_buf_append(&t, "m ", 2), 0);
    for (int i = 0; i <= RECORD_MAX_FIELDS; i++)
        assert_int_equal(ferry_buf_printf(&t, "%sf%d=1", i ? "," : "", i), 0);
    assert_int_equal(lineproto_parse((char *)t.data, t.len, LINEPROTO_NS, 0, collect, &c, &err),
                     LINEPROTO_ELIMIT);
    /* too long a measurement, and exactly the limit */
    t.len = 0;
    for (int i = 0; i < RECORD_MAX_KEY_LEN; i++)
        assert_int_equal(ferry_buf_append_u8(&t, 'a'), 0);
    assert_int_equal(ferry_buf_append(&t, " v=1\n", 5), 0);
    assert_int_equal(lineproto_parse((char *)t.data, t.len, LINEPROTO_NS, 0, collect, &c, &err), 0);
    collected_free(&c);
    t.len = 0;
    for (int i = 0; i <= RECORD_MAX_KEY_LEN; i++)
        assert_int_equal(ferry_buf_append_u8(&t, 'a'), 0);
    assert_int_equal(ferry_buf_append(&t, " v=1\n", 5), 0);
    assert_int_equal(lineproto_parse((char *)t.data, t.len, LINEPROTO_NS, 0, collect, &c, &err),
                     LINEPROTO_ELIMIT);
    /* too long a string value */
    t.len = 0;
    assert_int_equal(ferry_buf_append(&t, "m v=\"", 5), 0);
    for (int i = 0; i <= RECORD_MAX_VALUE_LEN; i++)
        assert_int_equal(ferry_buf_append_u8(&t, 'x'), 0);
    assert_int_equal(ferry_buf_append(&t, "\"\n", 2), 0);
    assert_int_equal(lineproto_parse((char *)t.data, t.len, LINEPROTO_NS, 0, collect, &c, &err),
                     LINEPROTO_ELIMIT);
    ferry_buf_free(&t);
    /* the callback stops parsing */
    c.n = 64;
    assert_int_equal(parse("m v=1\n", LINEPROTO_NS, &c, &err), LINEPROTO_ECALLBACK);
    assert_int_equal(err.callback_status, -1);
}

static void test_format_parse_roundtrip(void **state)
{
    (void)state;
    struct record_tag tags[2] = {{S("h o,s=t"), S("a\\b")}, {S("k"), S("v v")}};
    struct record_field f[6] = {
        {S("f"), RECORD_FIELD_FLOAT, {.f = 0.1}},
        {S("g"), RECORD_FIELD_FLOAT, {.f = -1.2345678901234567e-300}},
        {S("i"), RECORD_FIELD_INT, {.i = INT64_MIN}},
        {S("u"), RECORD_FIELD_UINT, {.u = UINT64_MAX}},
        {S("b"), RECORD_FIELD_BOOL, {.b = false}},
        {S("s,= x"), RECORD_FIELD_STRING, {.s = S("q\"uo\\te\nnl")}},
    };
    struct record r = {
        RECORD_METRIC, 0, 1700000000123456789ll, S("me as,x"), 0, {"", 0}, tags, 2, f, 6};
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(lineproto_format(&r, &b), 0);
    struct collected c = {0};
    struct lineproto_error err;
    int rc = lineproto_parse((char *)b.data, b.len, LINEPROTO_NS, 0, collect, &c, &err);
    if (rc)
        fprintf(stderr, "%.*s\n%zu:%zu %s\n", (int)b.len, b.data, err.line, err.column, err.reason);
    assert_int_equal(rc, 0);
    struct record_scratch *sc = malloc(sizeof *sc);
    struct record back = unpack_at(&c, 0, sc);
    assert_true(record_equal(&r, &back));
    /* the shortest float form */
    assert_non_null(memmem(b.data, b.len, "f=0.1,", 6));
    collected_free(&c);
    /* logs get level tag and message field */
    struct record l = {RECORD_LOG,         0,    5, S("det"), RECORD_LEVEL_WARN,
                       S("frame 12 late"), NULL, 0, NULL,     0};
    b.len = 0;
    assert_int_equal(lineproto_format(&l, &b), 0);
    assert_int_equal(b.len, strlen("det,level=warn message=\"frame 12 late\" 5\n"));
    assert_memory_equal(b.data, "det,level=warn message=\"frame 12 late\" 5\n", b.len);
    /* bytes that strchr-style tests get wrong (NUL) are written as they are, and the parser
     * refuses them (text is UTF-8 without NUL: docs/wire-format.md §6.1); a '#' name cannot be
     * written */
    struct record_field nf[1] = {{{"k\0=,\\ x", 8}, RECORD_FIELD_STRING, {.s = {"a\0b", 3}}}};
    struct record_tag nt[1] = {{{"t\0", 2}, {"\\v\0", 3}}};
    struct record nul = {RECORD_METRIC, 0, -1, {"m\0,", 3}, 0, {"", 0}, nt, 1, nf, 1};
    b.len = 0;
    assert_int_equal(lineproto_format(&nul, &b), 0);
    assert_non_null(memchr(b.data, '\0', b.len));
    rc = lineproto_parse((char *)b.data, b.len, LINEPROTO_NS, 0, collect, &c, &err);
    assert_int_equal(rc, LINEPROTO_EENCODING);
    assert_int_equal(err.column, 2);
    assert_int_equal(c.n, 0);
    collected_free(&c);
    /* as in InfluxDB, "\\\\" in a name is two backslashes; a trailing backslash cannot be written
     */
    assert_int_equal(parse("m\\\\x v=1 1\n", LINEPROTO_NS, &c, &err), 0);
    back = unpack_at(&c, 0, sc);
    assert_int_equal(back.name.len, 4);
    assert_memory_equal(back.name.ptr, "m\\\\x", 4);
    collected_free(&c);
    nul.name = S("ends\\");
    assert_int_equal(lineproto_format(&nul, &b), LINEPROTO_EINVAL);
    nul.name = S("#comment");
    assert_int_equal(lineproto_format(&nul, &b), LINEPROTO_EINVAL);
    nul.name = S("tab\there");
    assert_int_equal(lineproto_format(&nul, &b), LINEPROTO_EINVAL);
    /* NaN cannot be written */
    f[0].v.f = NAN;
    size_t before = b.len;
    assert_int_equal(lineproto_format(&r, &b), LINEPROTO_EINVAL);
    assert_int_equal(b.len, before);
    free(sc);
    ferry_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_pack_roundtrip_and_truncation),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_parse_types_and_escapes),
        cmocka_unit_test(test_parse_errors_say_where),
        cmocka_unit_test(test_parse_refuses_invalid_utf8),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_format_parse_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
