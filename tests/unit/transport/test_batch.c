/*
 * test_batch.c - the batch codec: round trips of every record kind and value edge case, every
 * limit, every corrupt header field, truncation at every length, a flipped bit anywhere, a wrong
 * key, an unknown version, an unknown dictionary, decompression bombs and hostile bodies behind
 * a valid signature.
 */
#include <float.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "transport/batch.h"
#include "transport/record.h"

static uint8_t pk[32], sk[64], pk2[32], sk2[64];

#define S(x) ((struct record_str){(x), sizeof(x) - 1})

/* ---- expected records: kept as record_pack payloads + seq ------------------------------------ */

struct expect {
    struct ferry_buf packed[4096];
    uint64_t seq[4096];
    size_t n;
    size_t got;
    int mismatch;
};

static void expect_add(struct expect *e, const struct record *r)
{
    assert_true(e->n < 4096);
    memset(&e->packed[e->n], 0, sizeof e->packed[e->n]);
    assert_int_equal(record_pack(r, &e->packed[e->n]), 0);
    e->seq[e->n++] = r->seq;
}

static void expect_free(struct expect *e)
{
    for (size_t i = 0; i < e->n; i++)
        ferry_buf_free(&e->packed[i]);
    e->n = e->got = 0;
}

static int on_record(void *arg, const struct record *r)
{
    struct expect *e = arg;
    struct ferry_buf b = FERRY_BUF_INIT;
    if (e->got >= e->n) {
        e->mismatch++;
        return 0;
    }
    if (record_pack(r, &b) != 0 || b.len != e->packed[e->got].len ||
        memcmp(b.data, e->packed[e->got].data, b.len) != 0 || r->seq != e->seq[e->got]) {
        if (!e->mismatch)
            fprintf(stderr, "record %zu differs (seq %llu vs %llu)\n", e->got,
                    (unsigned long long)r->seq, (unsigned long long)e->seq[e->got]);
        e->mismatch++;
    }
    e->got++;
    ferry_buf_free(&b);
    return 0;
}

static struct batch_builder *new_builder(const struct batch_builder_config *extra)
{
    struct batch_builder_config cfg = {0};
    if (extra)
        cfg = *extra;
    cfg.device_id = cfg.device_id ? cfg.device_id : "d-test.01";
    cfg.secret_key = sk;
    struct batch_builder *b;
    assert_int_equal(batch_builder_new(&cfg, &b), 0);
    return b;
}

static void add(struct batch_builder *b, struct expect *e, const struct record *r)
{
    int rc = batch_builder_add(b, r);
    if (rc != 0)
        fprintf(stderr, "add: %s: %s\n", batch_strerror(rc), batch_builder_error(b));
    assert_int_equal(rc, 0);
    expect_add(e, r);
}

static void decode_expect_ok(const struct ferry_buf *batch, struct expect *e)
{
    struct batch_decoder *d;
    struct batch_errinfo ei;
    struct batch_header h;
    assert_int_equal(batch_decoder_new(&d), 0);
    e->got = 0;
    e->mismatch = 0;
    int rc = batch_decode(d, batch->data, batch->len, pk, &h, on_record, e, &ei);
    if (rc)
        fprintf(stderr, "decode: %s: %s\n", batch_strerror(rc), ei.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(e->mismatch, 0);
    assert_int_equal(e->got, e->n);
    assert_int_equal(h.record_count, e->n);
    batch_decoder_free(d);
}

static double from_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, 8);
    return d;
}

/* A batch with every kind of record and every awkward value. */
static void build_mixed(struct batch_builder *b, struct expect *e)
{
    static const uint64_t specials[] = {
        0x7ff8000000000001ull, /* quiet NaN with payload */
        0x7ff0000000000001ull, /* signalling NaN */
        0xfff8000000000000ull, /* negative NaN */
        0x8000000000000000ull, /* -0.0 */
        0x7ff0000000000000ull, /* +inf */
        0xfff0000000000000ull, /* -inf */
        0x0000000000000001ull, /* smallest subnormal */
        0x000fffffffffffffull, /* largest subnormal */
        0x7fefffffffffffffull, /* DBL_MAX */
        0x3ff0000000000000ull, /* 1.0 */
    };
    struct record_tag tags[2] = {{S("host"), S("jetson-1")}, {S("core"), S("0")}};
    struct record_field f[6];
    uint64_t seq = 100;
    /* metrics: decimal-quantised floats, ints, uints, bools, strings */
    for (int i = 0; i < 50; i++) {
        f[0] = (struct record_field){S("usage"), RECORD_FIELD_FLOAT, {.f = 12.5 + i * 0.1}};
        f[1] = (struct record_field){S("temp_mc"), RECORD_FIELD_INT, {.i = 45000 + i * 7}};
        f[2] = (struct record_field){
            S("bytes"), RECORD_FIELD_UINT, {.u = UINT64_MAX - 5 + (uint64_t)i}};
        f[3] = (struct record_field){S("ok"), RECORD_FIELD_BOOL, {.b = i % 3 == 0}};
        f[4] = (struct record_field){
            S("state"), RECORD_FIELD_STRING, {.s = i % 10 < 5 ? S("running") : S("")}};
        f[5] = (struct record_field){S("neg"), RECORD_FIELD_INT, {.i = INT64_MIN + i}};
        struct record r = {RECORD_METRIC,
                           seq++,
                           1700000000000000000ll + i * 1000000000ll,
                           S("cpu"),
                           0,
                           {"", 0},
                           tags,
                           2,
                           f,
                           6};
        add(b, e, &r);
    }
    /* special floats in one column, and random bit patterns in another */
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
        f[0] = (struct record_field){S("v"), RECORD_FIELD_FLOAT, {.f = from_bits(specials[i])}};
        f[1] = (struct record_field){
            S("w"),
            RECORD_FIELD_FLOAT,
            {.f = from_bits(((uint64_t)random() << 33) ^ (uint64_t)random())}};
        struct record r = {RECORD_METRIC,
                           seq++,
                           1700000000123456789ll + (int64_t)i * 7,
                           S("weird"),
                           0,
                           {"", 0},
                           NULL,
                           0,
                           f,
                           2};
        add(b, e, &r);
    }
    /* a non-decimal value repeated (XOR of equal values), and one that changes */
    for (int i = 0; i < 6; i++) {
        f[0] = (struct record_field){S("pi"), RECORD_FIELD_FLOAT, {.f = 3.141592653589793}};
        f[1] = (struct record_field){
            S("e"), RECORD_FIELD_FLOAT, {.f = i < 3 ? 2.718281828459045 : 1.0 / 3}};
        struct record r = {
            RECORD_METRIC, seq++, 1700000000000000000ll + i, S("const"), 0, {"", 0}, NULL, 0, f, 2};
        add(b, e, &r);
    }
    /* extreme timestamps, no tags, one field */
    int64_t tss[] = {INT64_MIN, INT64_MAX, 0, -1, 1};
    for (size_t i = 0; i < 5; i++) {
        f[0] = (struct record_field){S("x"), RECORD_FIELD_FLOAT, {.f = 0.0}};
        struct record r = {RECORD_METRIC, seq++, tss[i], S("edge"), 0, {"", 0}, NULL, 0, f, 1};
        add(b, e, &r);
    }
    /* logs: templated, raw (contains the slot byte), multi-line, leading zeros, huge numbers */
    const char *msgs[] = {
        "frame 1000 dropped: queue full (depth=32)",
        "frame 1001 dropped: queue full (depth=33)",
        "inference took 12.05 ms on cam0",
        "id 0007 and 12345678901234567890123 and 9223372036854775807 and 999999999999999999",
        "binary \x01 inside",
        "Traceback (most recent call last):\n  File \"x.py\", line 12, in <module>\nValueError",
        "",
        "0",
        "trailing number 5",
    };
    for (size_t i = 0; i < 40; i++) {
        const char *m = msgs[i % (sizeof msgs / sizeof msgs[0])];
        struct record_field lf[1] = {{S("frame"), RECORD_FIELD_INT, {.i = (int64_t)i}}};
        struct record r = {RECORD_LOG,
                           5000 + i,
                           1700000000000000000ll + (int64_t)i * 33333333,
                           i % 2 ? S("detector") : S("tracker"),
                           (uint8_t)(i % 8),
                           {m, strlen(m)},
                           NULL,
                           0,
                           lf,
                           i % 3 == 0 ? 1 : 0};
        add(b, e, &r);
    }
    /* events: type + small structured body */
    for (int i = 0; i < 5; i++) {
        struct record_field ef[2] = {{S("from"), RECORD_FIELD_STRING, {.s = S("1.2.0")}},
                                     {S("to"), RECORD_FIELD_STRING, {.s = S("1.3.0")}}};
        struct record_tag et[1] = {{S("component"), S("rootfs")}};
        struct record r = {RECORD_EVENT,
                           7 + (uint64_t)i * 3,
                           1700000000000000000ll + i,
                           S("update.state"),
                           0,
                           {"", 0},
                           et,
                           1,
                           ef,
                           2};
        add(b, e, &r);
    }
    /* a metric with a message and level (not a log): still round-trips */
    struct record r = {RECORD_METRIC, seq++, 5, S("odd"), 3, S("note 1"), NULL, 0, NULL, 0};
    add(b, e, &r);
}

static void test_roundtrip_every_kind(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        struct batch_builder_config cfg = {.no_compression = mode == 1};
        struct batch_builder *b = new_builder(&cfg);
        struct expect *e = calloc(1, sizeof *e);
        struct ferry_buf out = FERRY_BUF_INIT;
        build_mixed(b, e);
        assert_int_equal(batch_builder_add_gap(b, RECORD_LOG, 10, 20, BATCH_GAP_EVICTED), 0);
        assert_int_equal(batch_builder_add_gap(b, RECORD_LOG, 21, 30, BATCH_GAP_EVICTED), 0);
        assert_int_equal(batch_builder_add_gap(b, RECORD_METRIC, 1, 2, BATCH_GAP_CORRUPT), 0);
        assert_int_equal(batch_builder_count(b), e->n);
        assert_true(batch_builder_raw_bytes(b) > 0);
        assert_int_equal(batch_builder_finish(b, 42, &out), 0);
        assert_true(out.len < batch_builder_bound_bytes(b) + 100000);
        assert_int_equal(batch_builder_count(b), 0); /* reset after finish */
        decode_expect_ok(&out, e);

        struct batch_header h;
        assert_int_equal(batch_peek_header(out.data, out.len, &h, NULL), 0);
        assert_string_equal(h.device_id, "d-test.01");
        assert_int_equal(h.n_gaps, 2); /* the two log gaps merged */
        assert_int_equal(h.gaps[0].first, 10);
        assert_int_equal(h.gaps[0].last, 30);
        assert_int_equal(h.n_ranges, 3);
        assert_int_equal(h.ranges[0].stream, RECORD_EVENT);
        assert_int_equal(h.ranges[0].first, 7);
        assert_int_equal(h.ranges[0].last, 19);
        assert_int_equal(h.build_time_ns, 42);
        assert_int_equal(h.compression, mode ? BATCH_COMPRESSION_NONE : BATCH_COMPRESSION_ZSTD);
        uint8_t kid[8];
        batch_key_id(pk, kid);
        assert_memory_equal(h.key_id, kid, 8);

        /* the builder is reusable */
        struct expect *e2 = calloc(1, sizeof *e2);
        struct ferry_buf out2 = FERRY_BUF_INIT;
        build_mixed(b, e2);
        assert_int_equal(batch_builder_finish(b, 43, &out2), 0);
        decode_expect_ok(&out2, e2);
        struct batch_header h2;
        assert_int_equal(batch_peek_header(out2.data, out2.len, &h2, NULL), 0);
        assert_memory_not_equal(h.batch_id, h2.batch_id, BATCH_ID_LEN);
        expect_free(e);
        expect_free(e2);
        free(e);
        free(e2);
        ferry_buf_free(&out);
        ferry_buf_free(&out2);
        batch_builder_free(b);
    }
}

/* Random records of random shapes and values, many batches. */
static void test_roundtrip_random(void **state)
{
    (void)state;
    struct batch_builder *b = new_builder(NULL);
    srandom(7);
    for (int iter = 0; iter < 30; iter++) {
        struct expect *e = calloc(1, sizeof *e);
        struct ferry_buf out = FERRY_BUF_INIT;
        int n = 1 + (int)(random() % 300);
        uint64_t seqs[3] = {1, 1, 1};
        int64_t ts = (int64_t)random() * 1000;
        for (int i = 0; i < n; i++) {
            char name[8], tv[8], key[4][4], sv[4][12], msg[40];
            struct record_tag t[1];
            struct record_field f[4];
            snprintf(name, sizeof name, "m%ld", random() % 4);
            snprintf(tv, sizeof tv, "v%ld", random() % 3);
            t[0] = (struct record_tag){S("k"), {tv, strlen(tv)}};
            int nf = (int)(random() % 5);
            for (int q = 0; q < nf; q++) {
                snprintf(key[q], sizeof key[q], "f%d", q);
                f[q].key = (struct record_str){key[q], strlen(key[q])};
                f[q].type = (enum record_field_type)((random() + q) % 5);
                uint64_t bits =
                    ((uint64_t)random() << 40) ^ ((uint64_t)random() << 12) ^ (uint64_t)random();
                switch (f[q].type) {
                case RECORD_FIELD_FLOAT:
                    f[q].v.f = random() % 2 ? from_bits(bits) : (double)(random() % 1000) / 100;
                    break;
                case RECORD_FIELD_INT: f[q].v.i = (int64_t)bits; break;
                case RECORD_FIELD_UINT: f[q].v.u = bits; break;
                case RECORD_FIELD_BOOL: f[q].v.b = bits & 1; break;
                case RECORD_FIELD_STRING:
                    snprintf(sv[q], sizeof sv[q], "s%ld", random() % 3);
                    f[q].v.s = (struct record_str){sv[q], strlen(sv[q])};
                    break;
                }
            }
            enum record_stream st = (enum record_stream)(random() % 3);
            snprintf(msg, sizeof msg, "msg %ld at %ld", random() % 5, random());
            ts += random() % 3 ? 1000000000 : random();
            struct record r = {st,
                               seqs[st]++,
                               ts,
                               {name, strlen(name)},
                               st == RECORD_LOG ? (uint8_t)(random() % 8) : 0,
                               st == RECORD_LOG ? (struct record_str){msg, strlen(msg)}
                                                : (struct record_str){"", 0},
                               t,
                               random() % 2,
                               f,
                               (size_t)nf};
            if (i % 2) {
                add(b, e, &r);
            } else {
                /* the journal path: payload + seq */
                struct ferry_buf pl = FERRY_BUF_INIT;
                assert_int_equal(record_pack(&r, &pl), 0);
                assert_int_equal(batch_builder_add_packed(b, r.stream, r.seq, pl.data, pl.len), 0);
                expect_add(e, &r);
                ferry_buf_free(&pl);
            }
        }
        assert_int_equal(batch_builder_finish(b, 1, &out), 0);
        decode_expect_ok(&out, e);
        expect_free(e);
        free(e);
        ferry_buf_free(&out);
    }
    batch_builder_free(b);
}

static struct ferry_buf make_small_batch(void)
{
    struct batch_builder *b = new_builder(NULL);
    struct expect *e = calloc(1, sizeof *e);
    struct ferry_buf out = FERRY_BUF_INIT;
    for (int i = 0; i < 20; i++) {
        struct record_field f[1] = {{S("v"), RECORD_FIELD_FLOAT, {.f = i * 0.5}}};
        struct record r = {
            RECORD_METRIC, 1 + (uint64_t)i, 1000000000ll * i, S("m"), 0, {"", 0}, NULL, 0, f, 1};
        add(b, e, &r);
    }
    struct record l = {RECORD_LOG, 9, 5, S("app"), 4, S("warn 12"), NULL, 0, NULL, 0};
    add(b, e, &l);
    assert_int_equal(batch_builder_add_gap(b, RECORD_LOG, 1, 8, BATCH_GAP_EVICTED), 0);
    assert_int_equal(batch_builder_finish(b, 77, &out), 0);
    expect_free(e);
    free(e);
    batch_builder_free(b);
    return out;
}

static int decode_rc(const uint8_t *p, size_t n, const uint8_t *key, struct batch_errinfo *ei)
{
    struct batch_decoder *d;
    assert_int_equal(batch_decoder_new(&d), 0);
    int rc = batch_decode(d, p, n, key, NULL, NULL, NULL, ei);
    batch_decoder_free(d);
    return rc;
}

static void test_truncation_every_length(void **state)
{
    (void)state;
    struct ferry_buf out = make_small_batch();
    for (size_t n = 0; n < out.len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, out.data, n);
        int rc = decode_rc(copy, n, pk, NULL);
        assert_true(rc == BATCH_ETRUNC || rc == BATCH_EHEADER);
        free(copy);
    }
    /* one byte too many */
    uint8_t *longer = malloc(out.len + 1);
    memcpy(longer, out.data, out.len);
    longer[out.len] = 0;
    assert_int_equal(decode_rc(longer, out.len + 1, pk, NULL), BATCH_ETRUNC);
    free(longer);
    assert_int_equal(decode_rc(out.data, out.len, pk, NULL), 0);
    ferry_buf_free(&out);
}

static void test_flipped_bit_anywhere(void **state)
{
    (void)state;
    struct ferry_buf out = make_small_batch();
    struct batch_header h;
    assert_int_equal(batch_peek_header(out.data, out.len, &h, NULL), 0);
    size_t sig_failures = 0;
    for (size_t i = 0; i < out.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            out.data[i] ^= (uint8_t)(1u << bit);
            struct batch_errinfo ei;
            int rc = decode_rc(out.data, out.len, pk, &ei);
            assert_int_not_equal(rc, 0);
            struct batch_header hh;
            if (batch_peek_header(out.data, out.len, &hh, NULL) == 0) {
                /* the header still parses: the signature or key id must catch it */
                if (i >= 24 && i < 32) /* key id */
                    assert_int_equal(rc, BATCH_EKEY);
                else
                    assert_int_equal(rc, BATCH_ESIG);
                sig_failures++;
            }
            out.data[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_true(sig_failures > (out.len - 20) * 8 * 8 / 10);
    assert_int_equal(decode_rc(out.data, out.len, pk, NULL), 0);
    ferry_buf_free(&out);
}

static void test_wrong_key(void **state)
{
    (void)state;
    struct ferry_buf out = make_small_batch();
    struct batch_errinfo ei;
    assert_int_equal(decode_rc(out.data, out.len, pk2, &ei), BATCH_EKEY);
    assert_non_null(strstr(ei.msg, "key id"));
    /* header claims key 2's id but was signed by key 1: the signature fails */
    struct batch_header h;
    assert_int_equal(batch_peek_header(out.data, out.len, &h, NULL), 0);
    uint8_t kid2[8];
    batch_key_id(pk2, kid2);
    memcpy(out.data + 24, kid2, 8);
    assert_int_equal(decode_rc(out.data, out.len, pk2, &ei), BATCH_ESIG);
    ferry_buf_free(&out);
}

static void test_unknown_version(void **state)
{
    (void)state;
    struct ferry_buf out = make_small_batch();
    for (int v = 0; v < 256; v++) {
        if (v >= BATCH_VERSION_MIN && v <= BATCH_VERSION)
            continue;
        out.data[4] = (uint8_t)v;
        struct batch_errinfo ei;
        struct batch_header h;
        assert_int_equal(batch_peek_header(out.data, out.len, &h, &ei), BATCH_EVERSION);
        assert_int_equal(h.version, v);
        assert_non_null(strstr(ei.msg, "version"));
        /* even an unknown version's batch of 5 bytes is told apart from garbage */
        assert_int_equal(batch_peek_header(out.data, 5, &h, NULL), BATCH_EVERSION);
    }
    ferry_buf_free(&out);
}

/* Version 2 carries the backlog the builder was given; a version-1 batch (a device not yet
 * upgraded) still decodes, without one. */
static void test_backlog_and_version_1(void **state)
{
    (void)state;
    struct batch_builder *b = new_builder(NULL);
    struct expect *e = calloc(1, sizeof *e);
    struct ferry_buf out = FERRY_BUF_INIT;
    const uint64_t backlog[RECORD_STREAM_COUNT] = {3, 1234567, UINT64_MAX};
    batch_builder_set_backlog(b, backlog);
    struct record_field f[1] = {{S("v"), RECORD_FIELD_FLOAT, {.f = 1.5}}};
    struct record r = {RECORD_METRIC, 7, 1000, S("m"), 0, {"", 0}, NULL, 0, f, 1};
    add(b, e, &r);
    assert_int_equal(batch_builder_finish(b, 77, &out), 0);
    struct batch_header h;
    assert_int_equal(batch_peek_header(out.data, out.len, &h, NULL), 0);
    assert_int_equal(h.version, 2);
    assert_true(h.has_backlog);
    assert_int_equal(h.backlog[RECORD_EVENT], 3);
    assert_int_equal(h.backlog[RECORD_METRIC], 1234567);
    assert_true(h.backlog[RECORD_LOG] == UINT64_MAX);
    assert_int_equal(h.header_len, BATCH_FIXED_HEADER_LEN + h.device_id_len + 17 + 24);
    assert_int_equal(decode_rc(out.data, out.len, pk, NULL), 0);

    /* The same batch as version 1: 24 bytes shorter, no backlog, still valid. */
    struct ferry_buf v1 = FERRY_BUF_INIT;
    h.version = 1;
    assert_int_equal(
        batch_assemble(&h, out.data + h.header_len + BATCH_SIGNATURE_LEN, h.body_len, sk, &v1), 0);
    assert_int_equal(v1.len, out.len - 24);
    struct batch_header h1;
    assert_int_equal(batch_peek_header(v1.data, v1.len, &h1, NULL), 0);
    assert_int_equal(h1.version, 1);
    assert_false(h1.has_backlog);
    assert_int_equal(decode_rc(v1.data, v1.len, pk, NULL), 0);
    /* A version-1 header claiming version 2 is short by the backlog: refused, not misread. */
    v1.data[4] = 2;
    assert_int_equal(batch_peek_header(v1.data, v1.len, &h1, NULL), BATCH_EHEADER);
    ferry_buf_free(&v1);
    ferry_buf_free(&out);
    expect_free(e);
    free(e);
    batch_builder_free(b);
}

/* Writes a little-endian value into the header and re-signs, so only the field is wrong. */
static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void test_corrupt_header_fields(void **state)
{
    (void)state;
    struct {
        size_t off;
        int width;
        uint64_t value;
        int want;
    } cases[] = {
        {0, 1, 'X', BATCH_EMAGIC},
        {5, 1, 1, BATCH_EHEADER},                         /* flags */
        {6, 2, 50, BATCH_EHEADER},                        /* header_len */
        {6, 2, 4000, BATCH_EHEADER},                      /* header_len */
        {8, 4, 1, BATCH_ETRUNC},                          /* body_len */
        {8, 4, 0xffffffff, BATCH_ETRUNC},                 /* body_len */
        {12, 4, BATCH_MAX_BODY_RAW + 1, BATCH_ELIMIT},    /* body_raw_len */
        {16, 4, BATCH_MAX_RECORDS + 1, BATCH_ELIMIT},     /* record_count */
        {64, 1, 2, BATCH_EHEADER},                        /* compression */
        {65, 1, 0, BATCH_EHEADER},                        /* device id length */
        {65, 1, 65, BATCH_EHEADER},                       /* device id length */
        {66, 1, 4, BATCH_EHEADER},                        /* range count */
        {67, 1, 1, BATCH_EHEADER},                        /* reserved */
        {68, 2, BATCH_MAX_GAPS + 1, BATCH_ELIMIT},        /* gap count */
        {70, 2, 1, BATCH_EHEADER},                        /* reserved */
        {108, 1, ' ', BATCH_EHEADER},                     /* device id byte */
        {108 + 9, 1, 3, BATCH_EHEADER},                   /* range stream (device id is 9 bytes) */
        {108 + 9 + 1, 8, UINT64_MAX, BATCH_EHEADER},      /* range first > last */
        {108 + 9 + 17, 1, 1, BATCH_EHEADER},              /* second range not ascending */
        {108 + 9 + 34, 1, 9, BATCH_EHEADER},              /* gap stream */
        {108 + 9 + 34 + 2, 8, UINT64_MAX, BATCH_EHEADER}, /* gap first > last */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ferry_buf out = make_small_batch();
        struct batch_header h;
        assert_int_equal(batch_peek_header(out.data, out.len, &h, NULL), 0);
        assert_int_equal(h.device_id_len, 9);
        put_le(out.data + cases[i].off, cases[i].value, cases[i].width);
        struct batch_errinfo ei;
        int rc = batch_peek_header(out.data, out.len, &h, &ei);
        if (rc != cases[i].want)
            fprintf(stderr, "case %zu (offset %zu): got %s (%s)\n", i, cases[i].off,
                    batch_strerror(rc), ei.msg);
        assert_int_equal(rc, cases[i].want);
        assert_true(strlen(ei.msg) > 0);
        assert_int_equal(decode_rc(out.data, out.len, pk, NULL), cases[i].want);
        ferry_buf_free(&out);
    }
}

/* Reassembles a batch around a new body, validly signed. */
static struct ferry_buf reseal(const struct ferry_buf *orig, const void *body, size_t body_len,
                               uint32_t raw_len, uint8_t compression, uint32_t dict_id)
{
    struct batch_header h;
    struct ferry_buf out = FERRY_BUF_INIT;
    assert_int_equal(batch_peek_header(orig->data, orig->len, &h, NULL), 0);
    h.body_raw_len = raw_len;
    h.compression = compression;
    h.dict_id = dict_id;
    assert_int_equal(batch_assemble(&h, body, body_len, sk, &out), 0);
    return out;
}

static void test_bomb_and_hostile_bodies(void **state)
{
    (void)state;
    struct ferry_buf orig = make_small_batch();
    /* a frame that decompresses to 10 MB while the header says 1000 bytes */
    size_t big = 10 * 1024 * 1024;
    uint8_t *zeros = calloc(1, big);
    size_t cap = ZSTD_compressBound(big);
    uint8_t *z = malloc(cap);
    size_t zn = ZSTD_compress(z, cap, zeros, big, 1);
    assert_false(ZSTD_isError(zn));
    struct ferry_buf bomb = reseal(&orig, z, zn, 1000, BATCH_COMPRESSION_ZSTD, 0);
    struct batch_errinfo ei;
    assert_int_equal(decode_rc(bomb.data, bomb.len, pk, &ei), BATCH_EBOMB);
    ferry_buf_free(&bomb);
    /* a frame without a declared content size, streaming more than declared */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    ZSTD_outBuffer ob = {z, cap, 0};
    ZSTD_inBuffer ib = {zeros, big, 0};
    size_t left = ZSTD_compressStream2(cc, &ob, &ib, ZSTD_e_end);
    assert_int_equal(left, 0);
    ZSTD_freeCCtx(cc);
    bomb = reseal(&orig, z, ob.pos, 1000, BATCH_COMPRESSION_ZSTD, 0);
    assert_true(decode_rc(bomb.data, bomb.len, pk, &ei) == BATCH_EDECOMPRESS);
    ferry_buf_free(&bomb);
    /* two frames: the first declares the header's size, the second adds more */
    {
        uint8_t small[100];
        memset(small, 7, sizeof small);
        size_t n1 = ZSTD_compress(z, cap, small, sizeof small, 1);
        assert_false(ZSTD_isError(n1));
        size_t n2 = ZSTD_compress(z + n1, cap - n1, small, sizeof small, 1);
        assert_false(ZSTD_isError(n2));
        bomb = reseal(&orig, z, n1 + n2, sizeof small, BATCH_COMPRESSION_ZSTD, 0);
        assert_int_equal(decode_rc(bomb.data, bomb.len, pk, &ei), BATCH_EBOMB);
        ferry_buf_free(&bomb);
        /* and a frame that declares less than the header */
        bomb = reseal(&orig, z, n1, sizeof small + 1, BATCH_COMPRESSION_ZSTD, 0);
        assert_int_equal(decode_rc(bomb.data, bomb.len, pk, &ei), BATCH_EDECOMPRESS);
        ferry_buf_free(&bomb);
    }
    /* declared raw length beyond the limit never allocates */
    bomb = reseal(&orig, z, zn, BATCH_MAX_BODY_RAW + 1, BATCH_COMPRESSION_ZSTD, 0);
    assert_int_equal(decode_rc(bomb.data, bomb.len, pk, &ei), BATCH_ELIMIT);
    ferry_buf_free(&bomb);
    /* garbage compressed body */
    uint8_t junk[64];
    memset(junk, 0xa5, sizeof junk);
    bomb = reseal(&orig, junk, sizeof junk, 100, BATCH_COMPRESSION_ZSTD, 0);
    assert_int_equal(decode_rc(bomb.data, bomb.len, pk, &ei), BATCH_EDECOMPRESS);
    ferry_buf_free(&bomb);
    /* random uncompressed bodies behind valid signatures: errors, never crashes */
    srandom(3);
    for (int i = 0; i < 2000; i++) {
        uint8_t body[200];
        size_t n = (size_t)(random() % sizeof body);
        for (size_t q = 0; q < n; q++)
            body[q] = (uint8_t)(random() % (i % 2 ? 4 : 256));
        if (n)
            body[0] = 1;
        bomb = reseal(&orig, body, n, (uint32_t)n, BATCH_COMPRESSION_NONE, 0);
        int rc = decode_rc(bomb.data, bomb.len, pk, &ei);
        assert_true(rc == BATCH_EBODY || rc == BATCH_ELIMIT);
        ferry_buf_free(&bomb);
    }
    free(zeros);
    free(z);
    ferry_buf_free(&orig);
}

/* Every single-byte change of a valid uncompressed body, re-signed: decodes or fails cleanly. */
static void test_mutated_bodies_resigned(void **state)
{
    (void)state;
    struct batch_builder_config cfg = {.no_compression = true};
    struct batch_builder *b = new_builder(&cfg);
    struct expect *e = calloc(1, sizeof *e);
    struct ferry_buf out = FERRY_BUF_INIT;
    build_mixed(b, e);
    assert_int_equal(batch_builder_finish(b, 1, &out), 0);
    struct batch_header h;
    assert_int_equal(batch_peek_header(out.data, out.len, &h, NULL), 0);
    const uint8_t *body = out.data + h.header_len + 64;
    uint8_t *copy = malloc(h.body_len);
    for (size_t i = 0; i < h.body_len; i += 3) {
        memcpy(copy, body, h.body_len);
        copy[i] ^= (uint8_t)(0x41 + i);
        struct ferry_buf m = reseal(&out, copy, h.body_len, h.body_len, 0, 0);
        int rc = decode_rc(m.data, m.len, pk, NULL);
        assert_true(rc == 0 || rc == BATCH_EBODY || rc == BATCH_ELIMIT);
        ferry_buf_free(&m);
    }
    free(copy);
    expect_free(e);
    free(e);
    ferry_buf_free(&out);
    batch_builder_free(b);
}

static uint8_t dict_bytes[4096];
static size_t dict_len;

static int lookup(void *arg, uint32_t id, const void **dict, size_t *len)
{
    (void)arg;
    if (id != 77)
        return -1;
    *dict = dict_bytes;
    *len = dict_len;
    return 0;
}

static void test_dictionary(void **state)
{
    (void)state;
    /* A raw-content dictionary (zstd accepts any bytes as one). */
    for (size_t i = 0; i < sizeof dict_bytes; i++)
        dict_bytes[i] = (uint8_t)("cpu usage temp host jetson "[i % 27]);
    dict_len = sizeof dict_bytes;
    struct batch_builder_config cfg = {.dict_id = 77, .dict = dict_bytes, .dict_len = dict_len};
    struct batch_builder *b = new_builder(&cfg);
    struct expect *e = calloc(1, sizeof *e);
    struct ferry_buf out = FERRY_BUF_INIT;
    build_mixed(b, e);
    assert_int_equal(batch_builder_finish(b, 1, &out), 0);
    struct batch_header h;
    assert_int_equal(batch_peek_header(out.data, out.len, &h, NULL), 0);
    assert_int_equal(h.dict_id, 77);
    struct batch_decoder *d;
    struct batch_errinfo ei;
    assert_int_equal(batch_decoder_new(&d), 0);
    /* no lookup: unknown dictionary */
    assert_int_equal(batch_decode(d, out.data, out.len, pk, NULL, NULL, NULL, &ei), BATCH_EDICT);
    assert_non_null(strstr(ei.msg, "77"));
    batch_decoder_set_dict_lookup(d, lookup, NULL);
    e->got = 0;
    assert_int_equal(batch_decode(d, out.data, out.len, pk, NULL, on_record, e, &ei), 0);
    assert_int_equal(e->got, e->n);
    assert_int_equal(e->mismatch, 0);
    /* a batch naming a dictionary the lookup does not know */
    struct ferry_buf other = FERRY_BUF_INIT;
    assert_int_equal(batch_peek_header(out.data, out.len, &h, NULL), 0);
    h.dict_id = 78;
    assert_int_equal(batch_assemble(&h, out.data + h.header_len + 64, h.body_len, sk, &other), 0);
    assert_int_equal(batch_decode(d, other.data, other.len, pk, NULL, NULL, NULL, &ei),
                     BATCH_EDICT);
    batch_decoder_free(d);
    expect_free(e);
    free(e);
    ferry_buf_free(&out);
    ferry_buf_free(&other);
    batch_builder_free(b);
}

static void test_builder_limits(void **state)
{
    (void)state;
    struct batch_builder_config cfg = {.max_records = 10};
    struct batch_builder *b = new_builder(&cfg);
    struct record_field f[1] = {{S("v"), RECORD_FIELD_FLOAT, {.f = 1}}};
    struct record r = {RECORD_METRIC, 1, 1, S("m"), 0, {"", 0}, NULL, 0, f, 1};
    for (int i = 0; i < 10; i++) {
        r.seq = 1 + (uint64_t)i;
        assert_int_equal(batch_builder_add(b, &r), 0);
    }
    assert_int_equal(batch_builder_add(b, &r), BATCH_EFULL);
    assert_int_equal(batch_builder_count(b), 10);
    batch_builder_free(b);

    /* body size budget */
    struct batch_builder_config cfg2 = {.max_body_raw = 4096};
    b = new_builder(&cfg2);
    int rc, n = 0;
    while ((rc = batch_builder_add(b, &r)) == 0)
        n++;
    assert_int_equal(rc, BATCH_EFULL);
    assert_true(n > 50);
    struct ferry_buf out = FERRY_BUF_INIT;
    assert_int_equal(batch_builder_finish(b, 1, &out), 0);
    struct batch_header h;
    assert_int_equal(batch_peek_header(out.data, out.len, &h, NULL), 0);
    assert_true(h.body_raw_len <= 4096);
    ferry_buf_free(&out);

    /* record limits */
    struct record_tag many[RECORD_MAX_TAGS + 1];
    for (int i = 0; i <= RECORD_MAX_TAGS; i++)
        many[i] = (struct record_tag){S("k"), S("v")};
    struct record bad = r;
    bad.tags = many;
    bad.n_tags = RECORD_MAX_TAGS + 1;
    assert_int_equal(batch_builder_add(b, &bad), BATCH_EINVAL);
    assert_non_null(strstr(batch_builder_error(b), "tags"));
    char *longname = malloc(RECORD_MAX_KEY_LEN + 1);
    memset(longname, 'a', RECORD_MAX_KEY_LEN + 1);
    bad = r;
    bad.name = (struct record_str){longname, RECORD_MAX_KEY_LEN + 1};
    assert_int_equal(batch_builder_add(b, &bad), BATCH_EINVAL);
    bad.name.len = RECORD_MAX_KEY_LEN; /* exactly at the limit is fine */
    assert_int_equal(batch_builder_add(b, &bad), 0);
    free(longname);
    bad = r;
    bad.stream = (enum record_stream)3;
    assert_int_equal(batch_builder_add(b, &bad), BATCH_EINVAL);
    bad = r;
    bad.level = 8;
    assert_int_equal(batch_builder_add(b, &bad), BATCH_EINVAL);
    batch_builder_reset(b);
    assert_int_equal(batch_builder_count(b), 0);

    /* journal payloads that do not unpack, or name another stream */
    struct ferry_buf pl = FERRY_BUF_INIT;
    assert_int_equal(record_pack(&r, &pl), 0);
    assert_int_equal(batch_builder_add_packed(b, RECORD_LOG, 1, pl.data, pl.len), BATCH_EINVAL);
    assert_non_null(strstr(batch_builder_error(b), "stream"));
    assert_int_equal(batch_builder_add_packed(b, RECORD_METRIC, 1, pl.data, pl.len - 1),
                     BATCH_EINVAL);
    assert_non_null(strstr(batch_builder_error(b), "truncated"));
    ferry_buf_free(&pl);

    /* gaps: merge and limit */
    assert_int_equal(batch_builder_add_gap(b, RECORD_LOG, 5, 4, 1), BATCH_EINVAL);
    for (uint64_t i = 0; i < BATCH_MAX_GAPS; i++)
        assert_int_equal(batch_builder_add_gap(b, RECORD_LOG, i * 10, i * 10 + 1, 1), 0);
    assert_int_equal(batch_builder_add_gap(b, RECORD_LOG, 5000, 5001, 1), BATCH_EFULL);
    assert_int_equal(batch_builder_add_gap(b, RECORD_LOG, 2, 3, 1), 0); /* merges */
    assert_int_equal(batch_builder_finish(b, 1, &out), 0);
    assert_int_equal(batch_peek_header(out.data, out.len, &h, NULL), 0);
    assert_int_equal(h.n_gaps, BATCH_MAX_GAPS);
    assert_int_equal(h.record_count, 0);
    assert_int_equal(decode_rc(out.data, out.len, pk, NULL), 0);
    ferry_buf_free(&out);
    batch_builder_free(b);

    /* series limit */
    b = new_builder(NULL);
    char name[16];
    for (uint32_t i = 0; i < BATCH_MAX_SERIES; i++) {
        snprintf(name, sizeof name, "s%u", i);
        r.name = (struct record_str){name, strlen(name)};
        r.seq = i + 1;
        assert_int_equal(batch_builder_add(b, &r), 0);
    }
    r.name = S("one-more");
    assert_int_equal(batch_builder_add(b, &r), BATCH_EFULL);
    r.name = S("s5"); /* an existing series still fits */
    assert_int_equal(batch_builder_add(b, &r), 0);
    assert_int_equal(batch_builder_finish(b, 1, &out), 0);
    assert_int_equal(decode_rc(out.data, out.len, pk, NULL), 0);
    ferry_buf_free(&out);
    batch_builder_free(b);

    /* totals over all series: fields, then tags */
    b = new_builder(NULL);
    struct record_field *wide = calloc(RECORD_MAX_FIELDS, sizeof *wide);
    char(*keys)[8] = calloc(RECORD_MAX_FIELDS, 8);
    for (int i = 0; i < RECORD_MAX_FIELDS; i++) {
        snprintf(keys[i], 8, "f%d", i);
        wide[i] = (struct record_field){{keys[i], strlen(keys[i])}, RECORD_FIELD_BOOL, {.b = 1}};
    }
    struct record wr = {RECORD_METRIC, 1, 1, S("w"), 0, {"", 0}, NULL, 0, wide, RECORD_MAX_FIELDS};
    uint32_t i;
    for (i = 0; i < BATCH_MAX_TOTAL_FIELDS / RECORD_MAX_FIELDS; i++) {
        snprintf(name, sizeof name, "w%u", i);
        wr.name = (struct record_str){name, strlen(name)};
        wr.seq = i + 1;
        assert_int_equal(batch_builder_add(b, &wr), 0);
    }
    wr.name = S("w-last");
    assert_int_equal(batch_builder_add(b, &wr), BATCH_EFULL);
    assert_non_null(strstr(batch_builder_error(b), "fields"));
    assert_int_equal(batch_builder_finish(b, 1, &out), 0);
    assert_int_equal(decode_rc(out.data, out.len, pk, NULL), 0);
    ferry_buf_free(&out);
    batch_builder_reset(b);
    struct record_tag tg[RECORD_MAX_TAGS];
    char(*tk)[8] = calloc(RECORD_MAX_TAGS, 8);
    for (int t = 0; t < RECORD_MAX_TAGS; t++) {
        snprintf(tk[t], 8, "t%d", t);
        tg[t] = (struct record_tag){{tk[t], strlen(tk[t])}, S("v")};
    }
    struct record tr = {RECORD_METRIC, 1, 1, S("t"), 0, {"", 0}, tg, RECORD_MAX_TAGS, NULL, 0};
    for (i = 0; i < BATCH_MAX_TOTAL_TAGS / RECORD_MAX_TAGS; i++) {
        snprintf(name, sizeof name, "t%u", i);
        tr.name = (struct record_str){name, strlen(name)};
        tr.seq = i + 1;
        assert_int_equal(batch_builder_add(b, &tr), 0);
    }
    tr.name = S("t-last");
    assert_int_equal(batch_builder_add(b, &tr), BATCH_EFULL);
    assert_non_null(strstr(batch_builder_error(b), "tags"));
    batch_builder_free(b);
    free(wide);
    free(keys);
    free(tk);

    /* bad configs */
    struct batch_builder *bb;
    struct batch_builder_config bc = {.device_id = "bad id", .secret_key = sk};
    assert_int_equal(batch_builder_new(&bc, &bb), BATCH_EINVAL);
    bc.device_id = "";
    assert_int_equal(batch_builder_new(&bc, &bb), BATCH_EINVAL);
    bc.device_id = "ok";
    bc.secret_key = NULL;
    assert_int_equal(batch_builder_new(&bc, &bb), BATCH_EINVAL);
}

static void test_patch_send_time(void **state)
{
    (void)state;
    struct ferry_buf out = make_small_batch();
    assert_int_equal(batch_patch_send_time(out.data, out.len, 123456789, sk), 0);
    struct batch_header h;
    assert_int_equal(batch_peek_header(out.data, out.len, &h, NULL), 0);
    assert_int_equal(h.send_time_ns, 123456789);
    assert_int_equal(h.build_time_ns, 77);
    assert_int_equal(decode_rc(out.data, out.len, pk, NULL), 0);
    /* patching without re-signing is caught */
    out.data[56] ^= 1;
    assert_int_equal(decode_rc(out.data, out.len, pk, NULL), BATCH_ESIG);
    ferry_buf_free(&out);
}

static int stop_at_3(void *arg, const struct record *r)
{
    (void)r;
    int *n = arg;
    return ++*n == 3 ? 42 : 0;
}

static void test_callback_stop_and_unverified(void **state)
{
    (void)state;
    struct ferry_buf out = make_small_batch();
    struct batch_decoder *d;
    assert_int_equal(batch_decoder_new(&d), 0);
    int n = 0;
    assert_int_equal(batch_decode(d, out.data, out.len, pk, NULL, stop_at_3, &n, NULL),
                     BATCH_ECALLBACK);
    assert_int_equal(batch_decoder_callback_status(d), 42);
    assert_int_equal(n, 3);
    /* unverified path decodes even with a broken signature */
    out.data[out.len - 1] ^= 0; /* body untouched */
    struct batch_header h;
    assert_int_equal(batch_peek_header(out.data, out.len, &h, NULL), 0);
    out.data[h.header_len] ^= 1; /* signature byte */
    assert_int_equal(batch_decode(d, out.data, out.len, pk, NULL, NULL, NULL, NULL), BATCH_ESIG);
    assert_int_equal(batch_decode_unverified(d, out.data, out.len, NULL, NULL, NULL, NULL), 0);
    batch_decoder_free(d);
    ferry_buf_free(&out);
}

/* Hand-made bodies (§5) that each break one limit of §6, sealed with a valid signature: the
 * decoder must refuse them with BATCH_ELIMIT before allocating or looping on the count. */
static void put_uv(struct ferry_buf *b, uint64_t v)
{
    assert_int_equal(ferry_buf_append_uvarint(b, v), 0);
}

static void put_s(struct ferry_buf *b, const char *s, size_t n)
{
    put_uv(b, n);
    if (n)
        assert_int_equal(ferry_buf_append(b, s, n), 0);
}

/* One series: metric "m", `n_tags` tags, `n_fields` float fields, `rows` rows. */
static void body_head(struct ferry_buf *b, uint64_t n_records, uint64_t n_series, uint64_t n_tags,
                      uint64_t n_fields, uint64_t rows)
{
    assert_int_equal(ferry_buf_append_u8(b, 1), 0); /* body format */
    put_uv(b, n_records);
    put_uv(b, n_series);
    assert_int_equal(ferry_buf_append_u8(b, RECORD_METRIC), 0);
    assert_int_equal(ferry_buf_append_u8(b, 0), 0);
    put_s(b, "m", 1);
    put_uv(b, n_tags);
    for (uint64_t i = 0; i < n_tags && i < 100; i++) {
        put_s(b, "k", 1);
        put_s(b, "v", 1);
    }
    put_uv(b, n_fields);
    for (uint64_t i = 0; i < n_fields && i < 300; i++) {
        put_s(b, "f", 1);
        assert_int_equal(ferry_buf_append_u8(b, RECORD_FIELD_FLOAT), 0);
    }
    put_uv(b, rows);
}

static int decode_body(const struct ferry_buf *body, uint32_t record_count,
                       struct batch_errinfo *ei)
{
    struct ferry_buf orig = make_small_batch();
    struct batch_header h;
    struct ferry_buf out = FERRY_BUF_INIT;
    assert_int_equal(batch_peek_header(orig.data, orig.len, &h, NULL), 0);
    h.body_raw_len = (uint32_t)body->len;
    h.compression = BATCH_COMPRESSION_NONE;
    h.dict_id = 0;
    h.record_count = record_count;
    assert_int_equal(batch_assemble(&h, body->data, body->len, sk, &out), 0);
    int rc = decode_rc(out.data, out.len, pk, ei);
    ferry_buf_free(&out);
    ferry_buf_free(&orig);
    return rc;
}

static void test_body_limits(void **state)
{
    (void)state;
    struct ferry_buf b = FERRY_BUF_INIT;
    struct batch_errinfo ei;
    /* too many records in the body: the limit trips before the comparison with the header */
    assert_int_equal(ferry_buf_append_u8(&b, 1), 0);
    put_uv(&b, (uint64_t)BATCH_MAX_RECORDS + 1);
    assert_int_equal(decode_body(&b, 0, &ei), BATCH_ELIMIT);
    assert_int_equal(decode_body(&b, BATCH_MAX_RECORDS, &ei), BATCH_ELIMIT);
    /* a count within the limit that disagrees with the header */
    b.len = 0;
    assert_int_equal(ferry_buf_append_u8(&b, 1), 0);
    put_uv(&b, 5);
    assert_int_equal(decode_body(&b, 4, &ei), BATCH_EBODY);
    b.len = 0;
    /* too many series */
    assert_int_equal(ferry_buf_append_u8(&b, 1), 0);
    put_uv(&b, 1);
    put_uv(&b, (uint64_t)BATCH_MAX_SERIES + 1);
    assert_int_equal(decode_body(&b, 1, &ei), BATCH_ELIMIT);
    assert_non_null(strstr(ei.msg, "series count"));
    assert_true(ei.in_body);
    /* a series count that cannot fit in the bytes left */
    b.len = 0;
    assert_int_equal(ferry_buf_append_u8(&b, 1), 0);
    put_uv(&b, 1);
    put_uv(&b, 1000);
    assert_int_equal(decode_body(&b, 1, &ei), BATCH_EBODY);
    /* too many tags, too many fields */
    b.len = 0;
    body_head(&b, 1, 1, RECORD_MAX_TAGS + 1, 1, 1);
    assert_int_equal(decode_body(&b, 1, &ei), BATCH_ELIMIT);
    assert_non_null(strstr(ei.msg, "tag count"));
    b.len = 0;
    body_head(&b, 1, 1, 0, RECORD_MAX_FIELDS + 1, 1);
    assert_int_equal(decode_body(&b, 1, &ei), BATCH_ELIMIT);
    /* a name longer than the limit */
    b.len = 0;
    assert_int_equal(ferry_buf_append_u8(&b, 1), 0);
    put_uv(&b, 1);
    put_uv(&b, 1);
    assert_int_equal(ferry_buf_append_u8(&b, RECORD_METRIC), 0);
    assert_int_equal(ferry_buf_append_u8(&b, 0), 0);
    char *big = calloc(1, RECORD_MAX_VALUE_LEN + 2);
    memset(big, 'a', RECORD_MAX_VALUE_LEN + 1);
    put_s(&b, big, RECORD_MAX_KEY_LEN + 1);
    assert_int_equal(decode_body(&b, 1, &ei), BATCH_ELIMIT);
    /* more fields in all series than BATCH_MAX_TOTAL_FIELDS, each series within its own limit */
    b.len = 0;
    {
        uint32_t n_series = BATCH_MAX_TOTAL_FIELDS / RECORD_MAX_FIELDS + 1;
        assert_int_equal(ferry_buf_append_u8(&b, 1), 0);
        put_uv(&b, n_series);
        put_uv(&b, n_series);
        for (uint32_t q = 0; q < n_series; q++) {
            assert_int_equal(ferry_buf_append_u8(&b, RECORD_METRIC), 0);
            assert_int_equal(ferry_buf_append_u8(&b, 0), 0);
            put_s(&b, "m", 1);
            put_uv(&b, 0);
            put_uv(&b, RECORD_MAX_FIELDS);
            for (int f = 0; f < RECORD_MAX_FIELDS; f++) {
                put_s(&b, "", 0);
                assert_int_equal(ferry_buf_append_u8(&b, RECORD_FIELD_BOOL), 0);
            }
            put_uv(&b, 1);
        }
        assert_int_equal(decode_body(&b, n_series, &ei), BATCH_ELIMIT);
        assert_non_null(strstr(ei.msg, "fields in all series"));
    }
    /* rows that do not add up to the record count */
    b.len = 0;
    body_head(&b, 2, 1, 0, 0, 1);
    assert_int_equal(decode_body(&b, 2, &ei), BATCH_EBODY);
    assert_non_null(strstr(ei.msg, "rows"));
    /* too many templates; a template with too many number slots */
    b.len = 0;
    body_head(&b, 1, 1, 0, 0, 1);
    put_uv(&b, (uint64_t)BATCH_MAX_TEMPLATES + 1);
    assert_int_equal(decode_body(&b, 1, &ei), BATCH_ELIMIT);
    b.len = 0;
    body_head(&b, 1, 1, 0, 0, 1);
    put_uv(&b, 1);
    memset(big, 1, BATCH_MAX_TEMPLATE_SLOTS + 1);
    put_s(&b, big, BATCH_MAX_TEMPLATE_SLOTS + 1);
    assert_int_equal(decode_body(&b, 1, &ei), BATCH_ELIMIT);
    assert_non_null(strstr(ei.msg, "slots"));
    /* a string value one byte over the limit, in an otherwise valid body; then exactly at it */
    for (int over = 1; over >= 0; over--) {
        b.len = 0;
        assert_int_equal(ferry_buf_append_u8(&b, 1), 0);
        put_uv(&b, 1);
        put_uv(&b, 1);
        assert_int_equal(ferry_buf_append_u8(&b, RECORD_METRIC), 0);
        assert_int_equal(ferry_buf_append_u8(&b, 0), 0);
        put_s(&b, "m", 1);
        put_uv(&b, 0);
        put_uv(&b, 1);
        put_s(&b, "s", 1);
        assert_int_equal(ferry_buf_append_u8(&b, RECORD_FIELD_STRING), 0);
        put_uv(&b, 1);                                   /* rows */
        put_uv(&b, 0);                                   /* templates */
        assert_int_equal(ferry_buf_append_u8(&b, 0), 0); /* ts mode */
        assert_int_equal(ferry_buf_append_u8(&b, 0), 0); /* ts unit */
        put_uv(&b, 0);                                   /* ts base */
        /* directory: series ids 1, seqs 1, ts 1, 0, 0, 0, 0; then the string column */
        uint64_t dir[7] = {1, 1, 1, 0, 0, 0, 0};
        for (int i = 0; i < 7; i++)
            put_uv(&b, dir[i]);
        size_t vlen = RECORD_MAX_VALUE_LEN + (size_t)over;
        put_uv(&b, 1 + 3 + vlen); /* enc byte + uvarint(len + 1) (3 bytes) + bytes */
        put_uv(&b, 0);            /* series id 0 */
        put_uv(&b, 2);            /* seq delta +1 (zigzag) */
        put_uv(&b, 0);            /* ts delta */
        assert_int_equal(ferry_buf_append_u8(&b, 0), 0);
        put_uv(&b, vlen + 1);
        assert_int_equal(ferry_buf_append(&b, big, vlen), 0);
        int rc = decode_body(&b, 1, &ei);
        if (over) {
            assert_int_equal(rc, BATCH_ELIMIT);
            assert_non_null(strstr(ei.msg, "string"));
        } else {
            if (rc)
                fprintf(stderr, "%s\n", ei.msg);
            assert_int_equal(rc, 0);
        }
    }
    free(big);
    ferry_buf_free(&b);
}

/* The worked example of docs/wire-format.md §11, byte for byte. */
static void test_body_example_matches_spec(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x01, 0x02, 0x02, 0x01, 0x00, 0x03, 'c',  'p',  'u',  0x01, 0x04, 'c',  'o',  'r',  'e',
        0x01, '0',  0x01, 0x05, 'u',  's',  'a',  'g',  'e',  0x00, 0x01, 0x02, 0x01, 0x03, 'd',
        'e',  't',  0x00, 0x00, 0x01, 0x01, 0x0c, 'f',  'r',  'a',  'm',  'e',  ' ',  0x01, ' ',
        'l',  'a',  't',  'e',  0x00, 0x09, 0x02, 0x02, 0x02, 0x02, 0x01, 0x01, 0x00, 0x01, 0x05,
        0x00, 0x01, 0x02, 0x0e, 0x00, 0x00, 0x04, 0x01, 0x52, 0x02, 0x01, 0x00, 0xfa, 0x01};
    struct batch_builder_config cfg = {.no_compression = true};
    struct batch_builder *b = new_builder(&cfg);
    struct record_tag t[1] = {{S("core"), S("0")}};
    struct record_field f[1] = {{S("usage"), RECORD_FIELD_FLOAT, {.f = 12.5}}};
    struct record m = {RECORD_METRIC, 1, 1000000000, S("cpu"), 0, {"", 0}, t, 1, f, 1};
    struct record l = {RECORD_LOG,         7,    1000000000, S("det"), 4,
                       S("frame 41 late"), NULL, 0,          NULL,     0};
    assert_int_equal(batch_builder_add(b, &m), 0);
    assert_int_equal(batch_builder_add(b, &l), 0);
    struct ferry_buf body = FERRY_BUF_INIT;
    assert_int_equal(batch_builder_body(b, &body), 0);
    assert_int_equal(body.len, sizeof want);
    assert_memory_equal(body.data, want, sizeof want);
    ferry_buf_free(&body);
    batch_builder_free(b);
}

static void test_identity_helpers(void **state)
{
    (void)state;
    assert_true(batch_device_id_valid("d-0123456789abcdef", 18));
    assert_false(batch_device_id_valid("a/b", 3));
    assert_false(batch_device_id_valid("", 0));
    char long_id[65];
    memset(long_id, 'x', sizeof long_id);
    assert_true(batch_device_id_valid(long_id, 64));
    assert_false(batch_device_id_valid(long_id, 65));
    uint8_t kid[8], h[32];
    batch_key_id(pk, kid);
    crypto_generichash(h, 32, pk, 32, NULL, 0);
    assert_memory_equal(kid, h, 8);
    for (int e = -20; e <= 0; e++)
        assert_non_null(batch_strerror(e));
    assert_string_equal(batch_gap_reason_name(1), "evicted");
    assert_string_equal(batch_gap_reason_name(200), "unknown");
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(pk2, sk2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_kind),
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_truncation_every_length),
        cmocka_unit_test(test_flipped_bit_anywhere),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_unknown_version),
        cmocka_unit_test(test_backlog_and_version_1),
        cmocka_unit_test(test_corrupt_header_fields),
        cmocka_unit_test(test_bomb_and_hostile_bodies),
        cmocka_unit_test(test_mutated_bodies_resigned),
        cmocka_unit_test(test_dictionary),
        cmocka_unit_test(test_builder_limits),
        cmocka_unit_test(test_patch_send_time),
        cmocka_unit_test(test_callback_stop_and_unverified),
        cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_body_example_matches_spec),
        cmocka_unit_test(test_identity_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
