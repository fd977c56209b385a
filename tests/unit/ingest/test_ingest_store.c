/*
 * The store suite: the same tests run against the LMDB store and against a real PostgreSQL
 * server (with-postgres.sh starts one). Usage: test_ingest_store lmdb | pg
 * (pg reads the conninfo from FERRY_TEST_PG).
 *
 * Proves: devices register/revoke/list, enrolment tokens (one-time, fleet, expiry, same key
 * same id, revoked), exactly-once records under repeats and in one group, export order and
 * paging, gap counting once, counters, refusal of unknown/revoked devices inside a group, and
 * that everything survives closing and reopening the store; commit order: every record read once
 * from a durable cursor, and (PostgreSQL) a late-committing transaction is never skipped, also
 * with two writers committing out of txid order while a reader follows; device labels: set at
 * registration, replaced, given by an enrolment token, kept across reopen, and (LMDB) device
 * values written before labels existed read as having none.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <lmdb.h>

#include "cloud-ingest/store.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"
#include "transport/record.h"

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

static void make_device(struct ingest_device *d, const char *id, uint8_t key_byte)
{
    memset(d, 0, sizeof(*d));
    ferry_strlcpy(d->id, id, sizeof(d->id));
    memset(d->public_key, key_byte, 32);
    memset(d->key_id, key_byte, 8);
    d->key_id[0] = (uint8_t)(key_byte ^ 0x5a);
    ferry_strlcpy(d->name, "host-1", sizeof(d->name));
    ferry_strlcpy(d->device_class, "jetson-orin-nano", sizeof(d->device_class));
    ferry_strlcpy(d->versions, "{}", sizeof(d->versions));
}

/* A set of records with packed payloads. */
struct recset {
    struct ferry_buf arena;
    size_t offs[256];
    struct ingest_rec recs[256];
    size_t n;
};

static void add_rec(struct recset *rs, uint8_t stream, uint64_t seq, const char *name, double v)
{
    struct record_field f = {.key = {"value", 5}, .type = RECORD_FIELD_FLOAT, .v.f = v};
    struct record_tag t = {.key = {"core", 4}, .value = {"0", 1}};
    struct record r = {
        .stream = stream,
        .seq = seq,
        .ts_ns = (int64_t)seq * 1000,
        .name = {name, strlen(name)},
        .level = stream == RECORD_LOG ? 6 : 0,
        .message = {stream == RECORD_LOG ? "hello \"world\"\n" : "", stream == RECORD_LOG ? 14 : 0},
        .tags = &t,
        .n_tags = 1,
        .fields = &f,
        .n_fields = 1};
    size_t off = rs->arena.len;
    assert_int_equal(record_pack(&r, &rs->arena), 0);
    rs->offs[rs->n] = off;
    rs->recs[rs->n] = (struct ingest_rec){.stream = stream,
                                          .seq = seq,
                                          .ts_ns = r.ts_ns,
                                          .ts_corrected_ns = r.ts_ns + 7,
                                          .packed_len = rs->arena.len - off};
    rs->n++;
}

static void fix(struct recset *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        rs->recs[i].packed = rs->arena.data + rs->offs[i];
}

static void init_write(struct ingest_write *w, const char *dev, struct recset *rs)
{
    memset(w, 0, sizeof(*w));
    w->device_id = dev;
    w->received_ns = 1000000;
    w->clock_offset_ns = 42;
    if (rs != NULL) {
        fix(rs);
        w->recs = rs->recs;
        w->n_recs = rs->n;
    }
}

static int write1(struct ingest_store *s, struct ingest_write *w)
{
    char err[256] = "";
    struct ingest_write *ws[1] = {w};
    int rc = ingest_store_write(s, ws, 1, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "write: %s\n", err);
    return rc;
}

struct collected {
    uint64_t seqs[512];
    size_t n;
    char last_fields[256];
    char last_tags[256];
    char last_message[64];
    int64_t last_ts_corr;
};

static int collect(const struct ingest_row *r, void *arg)
{
    struct collected *c = arg;
    if (c->n < 512)
        c->seqs[c->n++] = r->seq;
    snprintf(c->last_fields, sizeof(c->last_fields), "%.*s", (int)r->fields_json_len,
             r->fields_json);
    snprintf(c->last_tags, sizeof(c->last_tags), "%.*s", (int)r->tags_json_len, r->tags_json);
    snprintf(c->last_message, sizeof(c->last_message), "%.*s", (int)r->message_len, r->message);
    c->last_ts_corr = r->ts_corrected_ns;
    return 0;
}

/* What export handed out, passed through the replacement every output writer applies. */
struct utf8_rows {
    struct ferry_buf name, message, tags, fields;
    size_t n;
};

static int collect_utf8(const struct ingest_row *r, void *arg)
{
    struct utf8_rows *g = arg;
    g->n++;
    if (ferry_buf_append_utf8(&g->name, r->name, r->name_len) != 0 ||
        ferry_buf_append_utf8(&g->message, r->message, r->message_len) != 0 ||
        ferry_buf_append(&g->tags, r->tags_json, r->tags_json_len) != 0 ||
        ferry_buf_append(&g->fields, r->fields_json, r->fields_json_len) != 0)
        return 1;
    return 0;
}

static void devices_register_list_and_revoke(void **state)
{
    struct ingest_store *s = open_store();
    struct ingest_device d, got;
    char err[256];
    make_device(&d, "dev-reg-1", 1);
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0); /* same key: fine */
    struct ingest_device other = d;
    memset(other.public_key, 9, 32);
    assert_int_equal(ingest_store_device_add(s, &other, err, sizeof(err)), INGEST_STORE_EEXIST);
    make_device(&other, "dev-reg-2", 1); /* another id, same key */
    assert_int_equal(ingest_store_device_add(s, &other, err, sizeof(err)), INGEST_STORE_EEXIST);
    ferry_strlcpy(other.id, "bad id!", sizeof(other.id));
    assert_int_equal(ingest_store_device_add(s, &other, err, sizeof(err)), INGEST_STORE_EINVAL);
    assert_int_equal(ingest_store_device_get(s, "dev-reg-1", &got), 0);
    assert_memory_equal(got.public_key, d.public_key, 32);
    assert_string_equal(got.device_class, "jetson-orin-nano");
    assert_false(got.revoked);
    assert_int_equal(ingest_store_device_by_key(s, d.key_id, &got), 0);
    assert_string_equal(got.id, "dev-reg-1");
    assert_int_equal(ingest_store_device_get(s, "nope", &got), INGEST_STORE_ENOTFOUND);
    assert_int_equal(ingest_store_device_revoke(s, "dev-reg-1"), 0);
    assert_int_equal(ingest_store_device_revoke(s, "nope"), INGEST_STORE_ENOTFOUND);
    assert_int_equal(ingest_store_device_get(s, "dev-reg-1", &got), 0);
    assert_true(got.revoked);
    /* Many in one transaction: all or none. */
    struct ingest_device many[3];
    make_device(&many[0], "dev-many-1", 11);
    make_device(&many[1], "dev-many-2", 12);
    make_device(&many[2], "dev-reg-1", 13); /* taken with another key */
    assert_int_equal(ingest_store_device_add_many(s, many, 3, err, sizeof(err)),
                     INGEST_STORE_EEXIST);
    assert_int_equal(ingest_store_device_get(s, "dev-many-1", &got), INGEST_STORE_ENOTFOUND);
    make_device(&many[2], "dev-many-3", 13);
    assert_int_equal(ingest_store_device_add_many(s, many, 3, err, sizeof(err)), 0);
    assert_int_equal(ingest_store_device_get(s, "dev-many-3", &got), 0);
    assert_int_equal(ingest_store_device_by_key(s, many[1].key_id, &got), 0);
    assert_string_equal(got.id, "dev-many-2");
    ingest_store_close(s);
}

static void enroll_tokens_one_time_fleet_expiry_max_uses(void **state)
{
    struct ingest_store *s = open_store();
    struct ingest_device a, b, out;
    char err[256];
    make_device(&a, "d-enroll-a", 21);
    make_device(&b, "d-enroll-b", 22);
    assert_int_equal(ingest_store_token_add(s, "onetime-token-0001", true, 0), 0);
    assert_int_equal(ingest_store_token_add(s, "onetime-token-0001", true, 0), INGEST_STORE_EEXIST);
    assert_int_equal(ingest_store_token_add(s, "short", true, 0), INGEST_STORE_EINVAL);
    assert_int_equal(ingest_store_enroll(s, "no-such-token-000", &a, 5, &out, err, sizeof(err)),
                     INGEST_STORE_ETOKEN);
    assert_int_equal(ingest_store_enroll(s, "onetime-token-0001", &a, 5, &out, err, sizeof(err)),
                     0);
    assert_string_equal(out.id, "d-enroll-a");
    /* The same key again: same id, even though the token is now used. */
    assert_int_equal(ingest_store_enroll(s, "onetime-token-0001", &a, 6, &out, err, sizeof(err)),
                     0);
    assert_string_equal(out.id, "d-enroll-a");
    /* A new key cannot use the consumed token. */
    assert_int_equal(ingest_store_enroll(s, "onetime-token-0001", &b, 7, &out, err, sizeof(err)),
                     INGEST_STORE_ETOKEN);
    /* Fleet tokens are reusable; expired ones are refused. */
    assert_int_equal(ingest_store_token_add(s, "fleet-token-000001", false, 0), 0);
    assert_int_equal(ingest_store_enroll(s, "fleet-token-000001", &b, 8, &out, err, sizeof(err)),
                     0);
    assert_string_equal(out.id, "d-enroll-b");
    struct ingest_device c;
    make_device(&c, "d-enroll-c", 23);
    assert_int_equal(ingest_store_enroll(s, "fleet-token-000001", &c, 9, &out, err, sizeof(err)),
                     0);
    struct ingest_device d;
    make_device(&d, "d-enroll-d", 24);
    assert_int_equal(ingest_store_token_add(s, "expiring-token-001", false, 100), 0);
    assert_int_equal(ingest_store_enroll(s, "expiring-token-001", &d, 101, &out, err, sizeof(err)),
                     INGEST_STORE_ETOKEN);
    /* A fleet token with a use limit enrols that many new keys; a key enrolling again is not a
     * new use. */
    assert_int_equal(ingest_store_token_add_limited(s, "limited-token-0001", false, 0, 2), 0);
    struct ingest_device e, f, g;
    make_device(&e, "d-enroll-e", 25);
    make_device(&f, "d-enroll-f", 26);
    make_device(&g, "d-enroll-g", 27);
    assert_int_equal(ingest_store_enroll(s, "limited-token-0001", &e, 11, &out, err, sizeof(err)),
                     0);
    assert_int_equal(ingest_store_enroll(s, "limited-token-0001", &e, 12, &out, err, sizeof(err)),
                     0);
    assert_int_equal(ingest_store_enroll(s, "limited-token-0001", &f, 13, &out, err, sizeof(err)),
                     0);
    assert_int_equal(ingest_store_enroll(s, "limited-token-0001", &g, 14, &out, err, sizeof(err)),
                     INGEST_STORE_ETOKEN);
    assert_non_null(strstr(err, "used up"));
    assert_int_equal(ingest_store_device_get(s, "d-enroll-g", &out), INGEST_STORE_ENOTFOUND);
    /* A revoked device cannot enrol again. */
    assert_int_equal(ingest_store_device_revoke(s, "d-enroll-c"), 0);
    assert_int_equal(ingest_store_enroll(s, "fleet-token-000001", &c, 10, &out, err, sizeof(err)),
                     INGEST_STORE_EREVOKED);
    ingest_store_close(s);
}

static void records_stored_once_and_exported_in_order(void **state)
{
    struct ingest_store *s = open_store();
    struct ingest_device d, got;
    char err[256];
    make_device(&d, "dev-rec", 31);
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
    struct recset *rs = calloc(1, sizeof(*rs));
    for (uint64_t seq = 1; seq <= 100; seq++)
        add_rec(rs, RECORD_METRIC, seq, "cpu", (double)seq / 3);
    add_rec(rs, RECORD_LOG, 5, "app", 0);
    struct ingest_write w;
    init_write(&w, "dev-rec", rs);
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(w.result, 0);
    assert_int_equal(w.new_records, 101);
    assert_int_equal(w.dup_records, 0);
    /* The same batch again: acknowledged the same way, nothing stored twice. */
    init_write(&w, "dev-rec", rs);
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(w.result, 0);
    assert_int_equal(w.new_records, 0);
    assert_int_equal(w.dup_records, 101);
    /* Overlapping batch: 91..110. */
    struct recset *rs2 = calloc(1, sizeof(*rs2));
    for (uint64_t seq = 91; seq <= 110; seq++)
        add_rec(rs2, RECORD_METRIC, seq, "cpu", -1.0);
    init_write(&w, "dev-rec", rs2);
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(w.new_records, 10);
    assert_int_equal(w.dup_records, 10);

    struct collected *c = calloc(1, sizeof(*c));
    assert_int_equal(ingest_store_export(s, "dev-rec", RECORD_METRIC, 0, 1000, collect, c), 0);
    assert_int_equal(c->n, 110);
    for (size_t i = 0; i < c->n; i++)
        assert_int_equal(c->seqs[i], i + 1);
    /* The first copy of seq 100 wins over the repeat's value. */
    memset(c, 0, sizeof(*c));
    assert_int_equal(ingest_store_export(s, "dev-rec", RECORD_METRIC, 99, 1, collect, c), 0);
    assert_int_equal(c->n, 1);
    assert_int_equal(c->seqs[0], 100);
    assert_string_equal(c->last_fields, "{\"value\":33.333333333333336}");
    assert_string_equal(c->last_tags, "{\"core\":\"0\"}");
    assert_int_equal(c->last_ts_corr, 100 * 1000 + 7);
    memset(c, 0, sizeof(*c));
    assert_int_equal(ingest_store_export(s, "dev-rec", RECORD_METRIC, 105, 1000, collect, c), 0);
    assert_int_equal(c->n, 5);
    assert_int_equal(c->seqs[0], 106);
    memset(c, 0, sizeof(*c));
    assert_int_equal(ingest_store_export(s, "dev-rec", RECORD_LOG, 0, 1000, collect, c), 0);
    assert_int_equal(c->n, 1);
    assert_string_equal(c->last_message, "hello \"world\"\n");
    memset(c, 0, sizeof(*c));
    assert_int_equal(ingest_store_export(s, "dev-rec", RECORD_EVENT, 0, 1000, collect, c), 0);
    assert_int_equal(c->n, 0);
    assert_int_equal(ingest_store_export(s, "nope", RECORD_EVENT, 0, 1000, collect, c),
                     INGEST_STORE_ENOTFOUND);

    assert_int_equal(ingest_store_device_get(s, "dev-rec", &got), 0);
    assert_int_equal(got.streams[RECORD_METRIC].records, 110);
    assert_int_equal(got.streams[RECORD_METRIC].max_seq, 110);
    assert_int_equal(got.streams[RECORD_LOG].records, 1);
    assert_int_equal(got.last_seen_ns, 1000000);
    assert_int_equal(got.clock_offset_ns, 42);
    free(c);
    ferry_buf_free(&rs->arena);
    ferry_buf_free(&rs2->arena);
    free(rs);
    free(rs2);
    ingest_store_close(s);
}

static void interleaved_batches_export_in_seq_order(void **state)
{
    struct ingest_store *s = open_store();
    struct ingest_device d;
    char err[256];
    make_device(&d, "dev-interleave", 61);
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
    struct recset *odd = calloc(1, sizeof(*odd)), *even = calloc(1, sizeof(*even));
    for (uint64_t seq = 1; seq <= 9; seq += 2)
        add_rec(odd, RECORD_LOG, seq, "app", 0);
    for (uint64_t seq = 10; seq >= 2; seq -= 2)
        add_rec(even, RECORD_LOG, seq, "app", 0); /* out of order within the batch too */
    add_rec(even, RECORD_LOG, 4, "app", 0);       /* and a repeat inside the batch */
    struct ingest_write w;
    init_write(&w, "dev-interleave", odd);
    assert_int_equal(write1(s, &w), 0);
    init_write(&w, "dev-interleave", even);
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(w.new_records, 5);
    assert_int_equal(w.dup_records, 1);
    /* Everything once more, mixed: all duplicates. */
    init_write(&w, "dev-interleave", odd);
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(w.new_records, 0);
    assert_int_equal(w.dup_records, 5);
    struct collected *c = calloc(1, sizeof(*c));
    assert_int_equal(ingest_store_export(s, "dev-interleave", RECORD_LOG, 0, 100, collect, c), 0);
    assert_int_equal(c->n, 10);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(c->seqs[i], i + 1);
    /* Paging through interleaved chunks never skips a record. */
    uint64_t after = 0;
    size_t total = 0;
    for (int page = 0; page < 10 && total < 10; page++) {
        memset(c, 0, sizeof(*c));
        assert_int_equal(ingest_store_export(s, "dev-interleave", RECORD_LOG, after, 3, collect, c),
                         0);
        assert_true(c->n > 0 && c->n <= 3);
        for (size_t i = 0; i < c->n; i++)
            assert_int_equal(c->seqs[i], after + 1 + i);
        after = c->seqs[c->n - 1];
        total += c->n;
    }
    assert_int_equal(total, 10);
    struct ingest_device got;
    assert_int_equal(ingest_store_device_get(s, "dev-interleave", &got), 0);
    assert_int_equal(got.streams[RECORD_LOG].records, 10);
    assert_int_equal(got.streams[RECORD_LOG].max_seq, 10);
    free(c);
    ferry_buf_free(&odd->arena);
    ferry_buf_free(&even->arena);
    free(odd);
    free(even);
    ingest_store_close(s);
}

static void group_commit_refuses_unknown_and_revoked_only(void **state)
{
    struct ingest_store *s = open_store();
    struct ingest_device d;
    char err[256];
    make_device(&d, "dev-grp-ok", 41);
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
    make_device(&d, "dev-grp-rev", 42);
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
    assert_int_equal(ingest_store_device_revoke(s, "dev-grp-rev"), 0);
    struct recset *rs = calloc(1, sizeof(*rs));
    for (uint64_t seq = 1; seq <= 10; seq++)
        add_rec(rs, RECORD_EVENT, seq, "boot", 1);
    struct ingest_write w[4];
    init_write(&w[0], "dev-grp-ok", rs);
    init_write(&w[1], "dev-grp-unknown", rs);
    init_write(&w[2], "dev-grp-rev", rs);
    init_write(&w[3], "dev-grp-ok", rs); /* the same records twice in one group */
    struct ingest_write *ws[4] = {&w[0], &w[1], &w[2], &w[3]};
    assert_int_equal(ingest_store_write(s, ws, 4, err, sizeof(err)), 0);
    assert_int_equal(w[0].result, 0);
    assert_int_equal(w[1].result, INGEST_STORE_ENOTFOUND);
    assert_int_equal(w[2].result, INGEST_STORE_EREVOKED);
    assert_int_equal(w[3].result, 0);
    assert_int_equal(w[0].new_records + w[3].new_records, 10);
    assert_int_equal(w[0].dup_records + w[3].dup_records, 10);
    struct collected *c = calloc(1, sizeof(*c));
    assert_int_equal(ingest_store_export(s, "dev-grp-ok", RECORD_EVENT, 0, 1000, collect, c), 0);
    assert_int_equal(c->n, 10);
    memset(c, 0, sizeof(*c));
    assert_int_equal(ingest_store_export(s, "dev-grp-rev", RECORD_EVENT, 0, 1000, collect, c), 0);
    assert_int_equal(c->n, 0);
    free(c);
    ferry_buf_free(&rs->arena);
    free(rs);
    ingest_store_close(s);
}

/* Compares two JSON texts as values (PostgreSQL's jsonb prints its own spacing and key order). */
static void assert_json_equal(const char *got, const char *want)
{
    json_t *g = json_loads(got, 0, NULL), *w = json_loads(want, 0, NULL);
    if (g == NULL || w == NULL || !json_equal(g, w))
        fail_msg("JSON %s, expected %s", got, want);
    json_decref(g);
    json_decref(w);
}

static void gaps_counted_once_and_versions_kept(void **state)
{
    struct ingest_store *s = open_store();
    struct ingest_device d, got;
    char err[256];
    make_device(&d, "dev-gap", 51);
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
    struct ingest_gap gaps[2] = {{RECORD_LOG, 10, 19}, {RECORD_METRIC, 5, 5}};
    struct ingest_write w;
    init_write(&w, "dev-gap", NULL);
    w.gaps = gaps;
    w.n_gaps = 2;
    w.versions_json = "{\"rootfs\":\"1.2.3\"}";
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(w.new_gaps, 2);
    init_write(&w, "dev-gap", NULL);
    w.gaps = gaps;
    w.n_gaps = 1;
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(w.new_gaps, 0);
    uint64_t n = 0;
    assert_int_equal(ingest_store_gap_count(s, "dev-gap", RECORD_LOG, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ingest_store_device_get(s, "dev-gap", &got), 0);
    assert_int_equal(got.streams[RECORD_LOG].gap_ranges, 1);
    assert_int_equal(got.streams[RECORD_LOG].gap_records, 10);
    assert_int_equal(got.streams[RECORD_METRIC].gap_records, 1);
    assert_json_equal(got.versions, "{\"rootfs\":\"1.2.3\"}"); /* kept when a batch has none */
    /* A malformed gap is refused before the store sees it. */
    struct ingest_gap bad = {RECORD_LOG, 9, 3};
    init_write(&w, "dev-gap", NULL);
    w.gaps = &bad;
    w.n_gaps = 1;
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(w.result, INGEST_STORE_EINVAL);
    ingest_store_close(s);
}

/* A device reports a loss more than once: a batch whose response was lost is rebuilt, and its
 * builder joins adjacent gap entries (501..3828 and 3829..6900 became 501..6900 after 501..3828
 * was stored, and the widening was dropped: chaos.simulators.disk_quota_seed108 under ASan).
 * The store keeps each stream's gaps as a set: checked against a model over random reports. */
static void gaps_merged_as_a_set(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    struct ingest_device d, got;
    char err[256];
    make_device(&d, "dev-gapset", 57);
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);

    /* The regression, step by step. */
    struct ingest_gap g1 = {RECORD_METRIC, 501, 3828};
    struct ingest_gap g2 = {RECORD_METRIC, 501, 7924};
    struct ingest_write w;
    init_write(&w, "dev-gapset", NULL);
    w.gaps = &g1;
    w.n_gaps = 1;
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(w.new_gaps, 1);
    init_write(&w, "dev-gapset", NULL);
    w.gaps = &g2;
    w.n_gaps = 1;
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(w.new_gaps, 1);
    assert_int_equal(ingest_store_device_get(s, "dev-gapset", &got), 0);
    assert_int_equal(got.streams[RECORD_METRIC].gap_records, 7424);
    assert_int_equal(got.streams[RECORD_METRIC].gap_ranges, 1);

    /* Random reports on the log stream against a bitmap. */
    enum { MAXSEQ = 400 };
    static bool model[MAXSEQ + 2];
    memset(model, 0, sizeof(model));
    uint64_t x = 0x5eed;
    for (int round = 0; round < 150; round++) {
        struct ingest_gap gaps[3];
        size_t n = 1 + (size_t)(x % 3);
        uint64_t before = 0;
        for (int q = 1; q <= MAXSEQ; q++)
            before += model[q];
        for (size_t i = 0; i < n; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            uint64_t f = 1 + (x >> 33) % MAXSEQ;
            uint64_t len = 1 + (x >> 20) % 25;
            uint64_t l = f + len - 1 > MAXSEQ ? MAXSEQ : f + len - 1;
            gaps[i] = (struct ingest_gap){RECORD_LOG, f, l};
            for (uint64_t q = f; q <= l; q++)
                model[q] = true;
        }
        init_write(&w, "dev-gapset", NULL);
        w.gaps = gaps;
        w.n_gaps = n;
        assert_int_equal(write1(s, &w), 0);
        assert_int_equal(w.result, 0);
        uint64_t records = 0, ranges = 0;
        for (int q = 1; q <= MAXSEQ; q++) {
            records += model[q];
            ranges += model[q] && !model[q - 1];
        }
        if (records == before)
            assert_int_equal(w.new_gaps, 0);
        assert_int_equal(ingest_store_device_get(s, "dev-gapset", &got), 0);
        if (got.streams[RECORD_LOG].gap_records != records ||
            got.streams[RECORD_LOG].gap_ranges != ranges)
            fail_msg("round %d: store has %llu records in %llu ranges, model %llu in %llu", round,
                     (unsigned long long)got.streams[RECORD_LOG].gap_records,
                     (unsigned long long)got.streams[RECORD_LOG].gap_ranges,
                     (unsigned long long)records, (unsigned long long)ranges);
        uint64_t entries = 0;
        assert_int_equal(ingest_store_gap_count(s, "dev-gapset", RECORD_LOG, &entries), 0);
        assert_int_equal(entries, ranges);
    }
    /* The metric stream was not touched by the log reports. */
    assert_int_equal(got.streams[RECORD_METRIC].gap_records, 7424);
    ingest_store_close(s);
}

struct count_state {
    int n;
    bool saw;
};

static int count_cb(const struct ingest_device *d, void *arg)
{
    struct count_state *c = arg;
    c->n++;
    if (strcmp(d->id, "dev-rec") == 0)
        c->saw = d->streams[RECORD_METRIC].records == 110;
    return 0;
}

/* A "versions" report merges per key: a batch naming one component keeps the others, a newer
 * report of a key replaces it, and a merge that would not fit INGEST_VERSIONS_MAX keeps the
 * stored object whole (never a truncated text). */
static void versions_merged_per_key(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    struct ingest_device d, got;
    char err[256];
    make_device(&d, "dev-ver", 52);
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
    struct ingest_write w;
    init_write(&w, "dev-ver", NULL);
    w.versions_json = "{\"ferryd\":\"1.0\"}";
    assert_int_equal(write1(s, &w), 0);
    init_write(&w, "dev-ver", NULL);
    w.versions_json = "{\"rootfs\":\"2.0\",\"model\":\"m7\"}";
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(ingest_store_device_get(s, "dev-ver", &got), 0);
    assert_json_equal(got.versions, "{\"ferryd\":\"1.0\",\"rootfs\":\"2.0\",\"model\":\"m7\"}");
    init_write(&w, "dev-ver", NULL);
    w.versions_json = "{\"ferryd\":\"1.1\"}";
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(ingest_store_device_get(s, "dev-ver", &got), 0);
    assert_json_equal(got.versions, "{\"ferryd\":\"1.1\",\"rootfs\":\"2.0\",\"model\":\"m7\"}");
    /* Too big once merged: refused whole, the stored object stays valid and unchanged. */
    char big[INGEST_VERSIONS_MAX + 64];
    snprintf(big, sizeof(big), "{\"huge\":\"");
    size_t n = strlen(big);
    memset(big + n, 'x', INGEST_VERSIONS_MAX - 5);
    snprintf(big + n + INGEST_VERSIONS_MAX - 5, sizeof(big) - n - (INGEST_VERSIONS_MAX - 5), "\"}");
    init_write(&w, "dev-ver", NULL);
    w.versions_json = big;
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(ingest_store_device_get(s, "dev-ver", &got), 0);
    assert_json_equal(got.versions, "{\"ferryd\":\"1.1\",\"rootfs\":\"2.0\",\"model\":\"m7\"}");
    /* The merge helper itself: the patch wins per key, EFULL leaves out untouched. */
    char out[INGEST_VERSIONS_MAX + 1] = "unchanged";
    assert_int_equal(
        ingest_versions_merge("{\"a\":\"1\",\"b\":\"2\"}", "{\"b\":\"3\"}", out, sizeof(out)), 0);
    assert_json_equal(out, "{\"a\":\"1\",\"b\":\"3\"}");
    assert_int_equal(ingest_versions_merge("{}", "[1]", out, sizeof(out)), INGEST_STORE_EINVAL);
    char full[INGEST_VERSIONS_MAX + 1] = "unchanged";
    assert_int_equal(ingest_versions_merge("{\"a\":\"1\"}", big, full, sizeof(full)),
                     INGEST_STORE_EFULL);
    assert_string_equal(full, "unchanged");
    ingest_store_close(s);
}

/* Update states: per component the entry with the highest event sequence wins whatever order the
 * batches arrive in, other components are kept, at most INGEST_UPDATE_COMPONENTS_MAX components
 * are kept, and a device without any reads as {}. */
static void updates_newest_sequence_wins(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    struct ingest_device d;
    char err[256], got[INGEST_UPDATES_MAX + 1];
    make_device(&d, "dev-upd", 53);
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
    assert_int_equal(ingest_store_device_updates(s, "dev-upd", got, sizeof(got)), 0);
    assert_json_equal(got, "{}");
    assert_int_equal(ingest_store_device_updates(s, "no-such-dev", got, sizeof(got)),
                     INGEST_STORE_ENOTFOUND);
    struct ingest_write w;
    init_write(&w, "dev-upd", NULL);
    w.updates_json =
        "{\"rootfs\":{\"state\":\"downloading\",\"bytes_done\":10,\"ts\":5,\"seq\":7},"
        "\"model\":{\"state\":\"idle\",\"running_version\":\"m1\",\"ts\":4,\"seq\":6}}";
    assert_int_equal(write1(s, &w), 0);
    /* An older event arriving later (a retransmitted batch) does not win. */
    init_write(&w, "dev-upd", NULL);
    w.updates_json = "{\"rootfs\":{\"state\":\"idle\",\"ts\":1,\"seq\":3}}";
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(ingest_store_device_updates(s, "dev-upd", got, sizeof(got)), 0);
    assert_json_equal(
        got, "{\"rootfs\":{\"state\":\"downloading\",\"bytes_done\":10,\"ts\":5,\"seq\":7},"
             "\"model\":{\"state\":\"idle\",\"running_version\":\"m1\",\"ts\":4,\"seq\":6}}");
    /* A newer one replaces that component only. */
    init_write(&w, "dev-upd", NULL);
    w.updates_json =
        "{\"rootfs\":{\"state\":\"trial\",\"target_version\":\"2.0\",\"ts\":9,\"seq\":12}}";
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(ingest_store_device_updates(s, "dev-upd", got, sizeof(got)), 0);
    assert_json_equal(
        got, "{\"rootfs\":{\"state\":\"trial\",\"target_version\":\"2.0\",\"ts\":9,\"seq\":12},"
             "\"model\":{\"state\":\"idle\",\"running_version\":\"m1\",\"ts\":4,\"seq\":6}}");
    /* Component cap: 20 new components offered, 16 kept in all (the 2 known ones + 14). */
    char patch[4096];
    size_t off = (size_t)snprintf(patch, sizeof(patch), "{");
    for (int i = 0; i < 20; i++)
        off += (size_t)snprintf(patch + off, sizeof(patch) - off,
                                "%s\"c%02d\":{\"state\":\"idle\",\"seq\":%d}", i ? "," : "", i,
                                20 + i);
    snprintf(patch + off, sizeof(patch) - off, "}");
    init_write(&w, "dev-upd", NULL);
    w.updates_json = patch;
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(ingest_store_device_updates(s, "dev-upd", got, sizeof(got)), 0);
    json_t *j = json_loads(got, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), INGEST_UPDATE_COMPONENTS_MAX);
    assert_non_null(json_object_get(j, "rootfs"));
    assert_non_null(json_object_get(j, "model"));
    json_decref(j);
    /* Kept across reopen. */
    ingest_store_close(s);
    s = open_store();
    assert_int_equal(ingest_store_device_updates(s, "dev-upd", got, sizeof(got)), 0);
    assert_non_null(strstr(got, "\"trial\""));
    ingest_store_close(s);
}

/* A record whose name, message and tag hold invalid UTF-8 (an old agent's) is stored, not
 * refused (PostgreSQL's text columns refuse such bytes: the store replaces them), and export
 * hands out text that the output writers make valid (docs/wire-format.md §6.1). Floats keep a
 * fraction and every field its type. */
static void invalid_utf8_records_are_stored_and_exported(void **state)
{
    struct ingest_store *s = open_store();
    struct ingest_device d;
    char err[256];
    make_device(&d, "dev-utf8", 77);
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
    struct record_field f[3] = {{.key = {"f", 1}, .type = RECORD_FIELD_FLOAT, .v.f = 3},
                                {.key = {"i", 1}, .type = RECORD_FIELD_INT, .v.i = 3},
                                {.key = {"u", 1}, .type = RECORD_FIELD_UINT, .v.u = 3}};
    struct record_tag t = {.key = {"t", 1}, .value = {"a\xc0\xaf", 3}};
    struct record r = {.stream = RECORD_LOG,
                       .seq = 1,
                       .ts_ns = 5,
                       .name = {"app\xff", 4},
                       .level = 3,
                       .message = {"bad \xed\xa0\x80 msg", 11},
                       .tags = &t,
                       .n_tags = 1,
                       .fields = f,
                       .n_fields = 3};
    struct recset *rs = calloc(1, sizeof(*rs));
    rs->offs[0] = 0;
    assert_int_equal(record_pack(&r, &rs->arena), 0);
    rs->recs[0] = (struct ingest_rec){.stream = RECORD_LOG,
                                      .seq = 1,
                                      .ts_ns = 5,
                                      .ts_corrected_ns = 5,
                                      .packed_len = rs->arena.len};
    rs->n = 1;
    struct ingest_write w;
    init_write(&w, "dev-utf8", rs);
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(w.result, 0);
    assert_int_equal(w.new_records, 1);
    struct utf8_rows got = {FERRY_BUF_INIT, FERRY_BUF_INIT, FERRY_BUF_INIT, FERRY_BUF_INIT, 0};
    assert_int_equal(ingest_store_export(s, "dev-utf8", RECORD_LOG, 0, 10, collect_utf8, &got), 0);
    assert_int_equal(got.n, 1);
    assert_int_equal(got.name.len, strlen("app\xef\xbf\xbd"));
    assert_memory_equal(got.name.data, "app\xef\xbf\xbd", got.name.len);
    const char *want_msg = "bad \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd msg";
    assert_int_equal(got.message.len, strlen(want_msg));
    assert_memory_equal(got.message.data, want_msg, got.message.len);
    assert_true(ferry_utf8_valid(got.tags.data, got.tags.len));
    assert_int_equal(got.fields.len, strlen("{\"f\":3.0,\"i\":3,\"u\":3}"));
    assert_memory_equal(got.fields.data, "{\"f\":3.0,\"i\":3,\"u\":3}", got.fields.len);
    ferry_buf_free(&got.name);
    ferry_buf_free(&got.message);
    ferry_buf_free(&got.tags);
    ferry_buf_free(&got.fields);
    ferry_buf_free(&rs->arena);
    free(rs);
    ingest_store_close(s);
}

/* ---- Commit order -----------------------------------------------------------------------------
 */

struct co_seen {
    char dev[64][INGEST_DEVICE_ID_MAX + 1];
    uint8_t stream[4096];
    uint64_t seq[4096];
    int dev_of[4096];
    size_t n, n_dev;
    struct ingest_store_cursor last;
    bool packed_ok;
};

static int co_cb(const struct ingest_committed *rec, const struct ingest_store_cursor *after,
                 void *arg)
{
    struct co_seen *c = arg;
    int d = -1;
    for (size_t i = 0; i < c->n_dev; i++)
        if (strcmp(c->dev[i], rec->device_id) == 0)
            d = (int)i;
    if (d < 0 && c->n_dev < 64) {
        ferry_strlcpy(c->dev[c->n_dev], rec->device_id, sizeof(c->dev[0]));
        d = (int)c->n_dev++;
    }
    if (c->n < 4096) {
        c->dev_of[c->n] = d;
        c->stream[c->n] = rec->stream;
        c->seq[c->n] = rec->seq;
        c->n++;
    }
    if (rec->packed != NULL) {
        struct record_scratch *rs = malloc(sizeof(*rs));
        struct record r;
        if (rs == NULL || record_unpack(rec->packed, rec->packed_len, rs, &r, NULL, 0) != 0)
            c->packed_ok = false;
        free(rs);
    }
    c->last = *after;
    return 0;
}

/* Reads everything after `from` in pages of `page` records, resuming from the cursor each
 * callback hands out, into c. */
static void co_read_all(struct ingest_store *s, struct ingest_store_cursor from, size_t page,
                        struct co_seen *c)
{
    c->last = from;
    for (int guard = 0; guard < 10000; guard++) {
        size_t before = c->n;
        struct ingest_store_cursor at = c->last;
        assert_int_equal(ingest_store_read_committed(s, &at, page, co_cb, c), 0);
        if (c->n == before)
            return;
        assert_true(c->n - before <= page);
    }
    fail_msg("commit order read does not end");
}

static void co_assert_unique(const struct co_seen *c)
{
    for (size_t i = 0; i < c->n; i++)
        for (size_t j = i + 1; j < c->n; j++)
            if (c->dev_of[i] == c->dev_of[j] && c->stream[i] == c->stream[j] &&
                c->seq[i] == c->seq[j])
                fail_msg("record %s/%u/%llu read twice", c->dev[c->dev_of[i]], c->stream[i],
                         (unsigned long long)c->seq[i]);
}

static void commit_order_every_record_once_from_a_durable_cursor(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    struct ingest_store_cursor zero;
    memset(&zero, 0, sizeof(zero));
    uint64_t total = 0;
    int64_t next_ns = 0;
    assert_int_equal(ingest_store_commit_lag(s, &zero, &total, &next_ns), 0);
    assert_true(total > 100);
    assert_true(next_ns != 0);
    /* Everything stored so far, read in pages of 7: each record exactly once. */
    struct co_seen *c = calloc(1, sizeof(*c));
    c->packed_ok = true;
    co_read_all(s, zero, 7, c);
    assert_int_equal(c->n, total);
    co_assert_unique(c);
    assert_true(c->packed_ok);
    assert_int_equal(c->last.records, total);
    uint64_t lag = 1;
    assert_int_equal(ingest_store_commit_lag(s, &c->last, &lag, &next_ns), 0);
    assert_int_equal(lag, 0);
    /* The cursor survives a reopen; unknown names read as the start. */
    struct ingest_store_cursor got;
    assert_int_equal(ingest_store_cursor_get(s, "fwd.none", &got), INGEST_STORE_ENOTFOUND);
    assert_int_equal(got.records, 0);
    assert_int_equal(ingest_store_cursor_set(s, "fwd.test", &c->last), 0);
    assert_int_equal(ingest_store_cursor_set(s, "bad name", &c->last), INGEST_STORE_EINVAL);
    ingest_store_close(s);
    s = open_store();
    assert_int_equal(ingest_store_cursor_get(s, "fwd.test", &got), 0);
    assert_int_equal(got.records, c->last.records);
    assert_int_equal(got.pos, c->last.pos);
    assert_int_equal(got.stream, c->last.stream);
    assert_int_equal(got.seq, c->last.seq);
    assert_string_equal(got.device, c->last.device);
    /* New records (and a repeat of stored ones, which must not reappear) follow the cursor. */
    struct ingest_device d;
    make_device(&d, "dev-co", 0x71);
    assert_int_equal(ingest_store_device_add(s, &d, NULL, 0), 0);
    struct recset *rs = calloc(1, sizeof(*rs));
    for (uint64_t q = 1; q <= 20; q++)
        add_rec(rs, RECORD_METRIC, q, "cpu", (double)q);
    for (uint64_t q = 1; q <= 5; q++)
        add_rec(rs, RECORD_LOG, q, "app", (double)q);
    struct ingest_write w;
    init_write(&w, "dev-co", rs);
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(write1(s, &w), 0); /* the repeat */
    assert_int_equal(w.new_records, 0);
    assert_int_equal(ingest_store_commit_lag(s, &got, &lag, &next_ns), 0);
    assert_int_equal(lag, 25);
    assert_int_equal(next_ns, 1000000);
    struct co_seen *c2 = calloc(1, sizeof(*c2));
    c2->packed_ok = true;
    co_read_all(s, got, 3, c2);
    assert_int_equal(c2->n, 25);
    co_assert_unique(c2);
    assert_true(c2->packed_ok);
    for (size_t i = 0; i < c2->n; i++)
        assert_string_equal(c2->dev[c2->dev_of[i]], "dev-co");
    assert_int_equal(c2->last.records, total + 25);
    ferry_buf_free(&rs->arena);
    free(rs);
    free(c);
    free(c2);
    ingest_store_close(s);
}

/* PostgreSQL: a transaction that took its id earlier but commits later is read, never skipped:
 * while it is open nothing after it is read, and once it commits its row comes first. */
static void pg_late_commit_is_never_skipped(void **state)
{
    (void)state;
    if (g_cfg.kind != INGEST_STORE_PG)
        skip();
    struct ingest_store *s = open_store();
    struct ingest_device d;
    make_device(&d, "dev-late", 0x72);
    assert_int_equal(ingest_store_device_add(s, &d, NULL, 0), 0);
    struct ingest_store_cursor zero;
    memset(&zero, 0, sizeof(zero));
    struct co_seen *c = calloc(1, sizeof(*c));
    co_read_all(s, zero, 1000, c);
    struct ingest_store_cursor end = c->last;
    PGconn *late = PQconnectdb(g_cfg.pg_conninfo);
    assert_int_equal(PQstatus(late), CONNECTION_OK);
    PQclear(PQexec(late, "BEGIN"));
    PGresult *r = PQexec(late, "INSERT INTO records (device, stream, seq, ts, ts_corrected, name,"
                               " level, message, tags, fields) VALUES ('dev-late', 1, 100, 0, 0,"
                               " 'cpu', 0, '', '{}', '{}')");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    struct recset *rs = calloc(1, sizeof(*rs));
    for (uint64_t q = 1; q <= 5; q++)
        add_rec(rs, RECORD_METRIC, q, "cpu", (double)q);
    struct ingest_write w;
    init_write(&w, "dev-late", rs);
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(w.new_records, 5);
    /* The later transaction committed first: it must wait behind the open one. */
    struct co_seen *c2 = calloc(1, sizeof(*c2));
    co_read_all(s, end, 100, c2);
    assert_int_equal(c2->n, 0);
    r = PQexec(late, "COMMIT");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    co_read_all(s, end, 100, c2);
    assert_int_equal(c2->n, 6);
    assert_int_equal(c2->seq[0], 100); /* the late commit, first in transaction order */
    co_assert_unique(c2);
    PQfinish(late);
    ferry_buf_free(&rs->arena);
    free(rs);
    free(c);
    free(c2);
    ingest_store_close(s);
}

/* Labels: canonical at registration, replaced whole, refused when malformed, given by an
 * enrolment token to the devices it enrols (not again to a key enrolling twice), kept across a
 * reopen. */
/* ---- PostgreSQL: two writers whose commit order differs from their txid order -------------- */

struct co_writer {
    struct ingest_store *store;
    const char *device;
    uint64_t first_seq, batches, per_batch;
    int rc;
};

/* Writes `batches` batches of `per_batch` metric records for one device (seqs from first_seq). */
static void *co_writer_main(void *arg)
{
    struct co_writer *cw = arg;
    uint64_t seq = cw->first_seq;
    cw->rc = 0;
    for (uint64_t b = 0; b < cw->batches && cw->rc == 0; b++) {
        struct recset *rs = calloc(1, sizeof(*rs));
        if (rs == NULL) {
            cw->rc = -1;
            break;
        }
        for (uint64_t i = 0; i < cw->per_batch; i++)
            add_rec(rs, RECORD_METRIC, seq++, "cpu", (double)i);
        struct ingest_write w;
        init_write(&w, cw->device, rs);
        cw->rc = write1(cw->store, &w);
        if (cw->rc == 0 && w.new_records != cw->per_batch)
            cw->rc = -2;
        ferry_buf_free(&rs->arena);
        free(rs);
    }
    return NULL;
}

static int64_t pg_int(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int64_t v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        (void)ferry_parse_i64(PQgetvalue(r, 0, 0), INT64_MIN, INT64_MAX, &v);
    PQclear(r);
    return v;
}

/* Counts, per (device, seq) of the co_seen, how often it was read; fails on any repeat. Returns
 * the number of distinct records of `device` read. */
static size_t co_count_device(const struct co_seen *c, const char *device)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->dev[c->dev_of[i]], device) == 0)
            n++;
    return n;
}

/*
 * Two connections write through the store API; writer A takes its transaction id first (its
 * records are COPYed) and is then held before COMMIT by a row lock another session holds on its
 * device row, while writer B (higher txid) writes and commits. A reader that follows the store
 * meanwhile must not pass A's txid: B's rows are read only after A committed, and in the end
 * every record of both writers is read exactly once. A reader that trusted txid order alone
 * would read B's rows, move its cursor past A's txid and never read A's rows.
 */
static void pg_concurrent_writers_interleaved_commit_order(void **state)
{
    (void)state;
    if (g_cfg.kind != INGEST_STORE_PG)
        skip();
    struct ingest_store *reader = open_store(), *sa = open_store(), *sb = open_store();
    struct ingest_device d;
    make_device(&d, "dev-cw-a", 0x91);
    assert_int_equal(ingest_store_device_add(reader, &d, NULL, 0), 0);
    make_device(&d, "dev-cw-b", 0x92);
    assert_int_equal(ingest_store_device_add(reader, &d, NULL, 0), 0);
    struct ingest_store_cursor zero;
    memset(&zero, 0, sizeof(zero));
    struct co_seen *c = calloc(1, sizeof(*c));
    co_read_all(reader, zero, 1000, c);
    struct ingest_store_cursor end = c->last;

    PGconn *ctl = PQconnectdb(g_cfg.pg_conninfo);
    assert_int_equal(PQstatus(ctl), CONNECTION_OK);
    /* Transaction ids are made to cross a power of ten during the test (999 -> 1000): the order
     * must be numeric, not that of their decimal text. Subtransactions that write take ids, so
     * one DO block moves the counter to just below the boundary. */
    int64_t xid_now = pg_int(ctl, "SELECT pg_current_xact_id()::text::bigint");
    assert_true(xid_now > 0);
    int64_t boundary = 1000;
    while (boundary < xid_now + 20)
        boundary *= 10;
    PGresult *r = PQexec(ctl, "CREATE TABLE xid_burn (i int)");
    PQclear(r);
    char burn[512];
    snprintf(burn, sizeof(burn),
             "DO $$ BEGIN FOR i IN 1..%lld LOOP BEGIN INSERT INTO xid_burn VALUES (i);"
             " EXCEPTION WHEN others THEN NULL; END; END LOOP; END $$",
             (long long)(boundary - xid_now - 5));
    r = PQexec(ctl, burn);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    r = PQexec(ctl, "BEGIN");
    PQclear(r);
    r = PQexec(ctl, "SELECT 1 FROM devices WHERE id = 'dev-cw-a' FOR UPDATE");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    int64_t waiting_before = pg_int(ctl, "SELECT count(*) FROM pg_locks WHERE NOT granted");

    struct co_writer a = {sa, "dev-cw-a", 1, 1, 40, 0};
    pthread_t ta;
    assert_int_equal(pthread_create(&ta, NULL, co_writer_main, &a), 0);
    /* Wait until A is blocked on the row lock, i.e. its records (and txid) are in. */
    bool blocked = false;
    for (int i = 0; i < 1000 && !blocked; i++) {
        blocked = pg_int(ctl, "SELECT count(*) FROM pg_locks WHERE NOT granted") > waiting_before;
        if (!blocked) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    assert_true(blocked);

    /* B writes and commits three batches while A is still open. */
    struct co_writer b = {sb, "dev-cw-b", 1, 3, 20, 0};
    co_writer_main(&b);
    assert_int_equal(b.rc, 0);
    /* B's transactions got higher ids than A's and committed first (checked below). */
    struct co_seen *c2 = calloc(1, sizeof(*c2));
    c2->last = end;
    co_read_all(reader, end, 7, c2);
    size_t read_while_a_open = c2->n; /* must be 0: nothing past A's open transaction */

    r = PQexec(ctl, "ROLLBACK"); /* releases the row lock: A commits */
    PQclear(r);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(a.rc, 0);
    int64_t txid_a = pg_int(ctl, "SELECT max(txid::text::bigint) FROM records"
                                 " WHERE device = 'dev-cw-a'");
    int64_t txid_b = pg_int(ctl, "SELECT min(txid::text::bigint) FROM records"
                                 " WHERE device = 'dev-cw-b'");
    assert_true(txid_a > 0 && txid_b > 0);
    assert_true(txid_a < txid_b); /* the interleaving this test is about happened */
    assert_true(txid_a < boundary && txid_b >= boundary);

    co_read_all(reader, c2->last, 7, c2);
    co_assert_unique(c2);
    assert_int_equal(co_count_device(c2, "dev-cw-a"), 40);
    assert_int_equal(co_count_device(c2, "dev-cw-b"), 60);
    assert_int_equal(c2->n, 100);
    assert_int_equal(read_while_a_open, 0);
    assert_string_equal(c2->dev[c2->dev_of[0]], "dev-cw-a"); /* lower txid first */

    /* Then free-running: two writers at once, a reader following them the whole time. */
    struct co_writer fa = {sa, "dev-cw-a", 41, 30, 5, 0}, fb = {sb, "dev-cw-b", 61, 30, 5, 0};
    pthread_t tfa, tfb;
    assert_int_equal(pthread_create(&tfa, NULL, co_writer_main, &fa), 0);
    assert_int_equal(pthread_create(&tfb, NULL, co_writer_main, &fb), 0);
    struct co_seen *c3 = calloc(1, sizeof(*c3));
    c3->last = c2->last;
    for (int i = 0; i < 200; i++) {
        size_t before = c3->n;
        assert_int_equal(ingest_store_read_committed(reader, &c3->last, 4, co_cb, c3), 0);
        if (c3->n == before) {
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    assert_int_equal(pthread_join(tfa, NULL), 0);
    assert_int_equal(pthread_join(tfb, NULL), 0);
    assert_int_equal(fa.rc, 0);
    assert_int_equal(fb.rc, 0);
    co_read_all(reader, c3->last, 4, c3);
    co_assert_unique(c3);
    assert_int_equal(co_count_device(c3, "dev-cw-a"), 150);
    assert_int_equal(co_count_device(c3, "dev-cw-b"), 150);
    assert_int_equal(c3->n, 300);
    PQfinish(ctl);
    free(c);
    free(c2);
    free(c3);
    ingest_store_close(sb);
    ingest_store_close(sa);
    ingest_store_close(reader);
}

/* Labels: canonical at registration, replaced whole, refused when malformed, given by an
 * enrolment token to the devices it enrols (not again to a key enrolling twice), kept across a
 * reopen. */
static void labels_set_replaced_and_given_by_tokens(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    char err[256] = "";
    struct ingest_device d, got;
    make_device(&d, "dev-lab", 0x81);
    ferry_strlcpy(d.labels, "{\"site\":\"berlin\",\"customer\":\"acme\"}", sizeof(d.labels));
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
    assert_int_equal(ingest_store_device_get(s, "dev-lab", &got), 0);
    assert_string_equal(got.labels, "{\"customer\":\"acme\",\"site\":\"berlin\"}");
    /* a device registered without labels has "{}" */
    struct ingest_device e;
    make_device(&e, "dev-lab2", 0x82);
    assert_int_equal(ingest_store_device_add(s, &e, err, sizeof(err)), 0);
    assert_int_equal(ingest_store_device_get(s, "dev-lab2", &got), 0);
    assert_string_equal(got.labels, "{}");
    /* malformed labels at registration: refused, naming the device and the key */
    make_device(&e, "dev-lab3", 0x83);
    ferry_strlcpy(e.labels, "{\"Bad\":\"x\"}", sizeof(e.labels));
    assert_int_equal(ingest_store_device_add(s, &e, err, sizeof(err)), INGEST_STORE_EINVAL);
    assert_non_null(strstr(err, "dev-lab3"));
    assert_non_null(strstr(err, "\"Bad\""));
    assert_int_equal(ingest_store_device_get(s, "dev-lab3", &got), INGEST_STORE_ENOTFOUND);
    /* replaced whole */
    assert_int_equal(ingest_store_device_set_labels(s, "dev-lab", "{\"rev\":\"B\"}"), 0);
    assert_int_equal(ingest_store_device_get(s, "dev-lab", &got), 0);
    assert_string_equal(got.labels, "{\"rev\":\"B\"}");
    assert_int_equal(ingest_store_device_set_labels(s, "dev-none", "{}"), INGEST_STORE_ENOTFOUND);
    assert_int_equal(ingest_store_device_set_labels(s, "dev-lab", "{\"id\":\"x\"}"),
                     INGEST_STORE_EINVAL);
    assert_int_equal(ingest_store_device_set_labels(s, "dev-lab", "[]"), INGEST_STORE_EINVAL);
    assert_int_equal(ingest_store_device_get(s, "dev-lab", &got), 0);
    assert_string_equal(got.labels, "{\"rev\":\"B\"}");
    /* other device changes keep labels */
    struct ingest_write w;
    init_write(&w, "dev-lab", NULL);
    w.versions_json = "{\"model\":\"1.2.0\"}";
    assert_int_equal(write1(s, &w), 0);
    assert_int_equal(ingest_store_device_get(s, "dev-lab", &got), 0);
    assert_string_equal(got.labels, "{\"rev\":\"B\"}");
    /* enrolment tokens with labels */
    assert_int_equal(ingest_store_token_add_labeled(s, "labeled-token-0001", false, 0, 0,
                                                    "{\"site\":\"rome\",\"batch\":\"7\"}"),
                     0);
    assert_int_equal(
        ingest_store_token_add_labeled(s, "labeled-token-0002", false, 0, 0, "{\"class\":\"x\"}"),
        INGEST_STORE_EINVAL);
    struct ingest_device n1, out;
    make_device(&n1, "dev-enl", 0x84);
    ferry_strlcpy(n1.labels, "{\"site\":\"mine\"}", sizeof(n1.labels)); /* ignored */
    assert_int_equal(ingest_store_enroll(s, "labeled-token-0001", &n1, 5, &out, err, sizeof(err)),
                     0);
    assert_string_equal(out.labels, "{\"batch\":\"7\",\"site\":\"rome\"}");
    assert_int_equal(ingest_store_device_get(s, "dev-enl", &got), 0);
    assert_string_equal(got.labels, "{\"batch\":\"7\",\"site\":\"rome\"}");
    /* an operator changes them; the same key enrolling again keeps the operator's labels */
    assert_int_equal(ingest_store_device_set_labels(s, "dev-enl", "{\"site\":\"oslo\"}"), 0);
    assert_int_equal(ingest_store_enroll(s, "labeled-token-0001", &n1, 6, &out, err, sizeof(err)),
                     0);
    assert_string_equal(out.labels, "{\"site\":\"oslo\"}");
    /* a token without labels gives none; the older token API too */
    assert_int_equal(ingest_store_token_add_limited(s, "plain-token-00001", true, 0, 0), 0);
    struct ingest_device n2;
    make_device(&n2, "dev-enl2", 0x85);
    assert_int_equal(ingest_store_enroll(s, "plain-token-00001", &n2, 5, &out, err, sizeof(err)),
                     0);
    assert_string_equal(out.labels, "{}");
    ingest_store_close(s);
    s = open_store();
    assert_int_equal(ingest_store_device_get(s, "dev-enl", &got), 0);
    assert_string_equal(got.labels, "{\"site\":\"oslo\"}");
    assert_int_equal(ingest_store_device_get(s, "dev-lab", &got), 0);
    assert_string_equal(got.labels, "{\"rev\":\"B\"}");
    ingest_store_close(s);
}

/* LMDB: a device value written before labels existed (the struct without its last member) is
 * read with no labels, listed, and rewritten at full size when its labels are set. */
static void lmdb_device_values_before_labels_read_as_none(void **state)
{
    (void)state;
    if (g_cfg.kind != INGEST_STORE_LMDB)
        skip();
    struct ingest_store *s = open_store();
    struct ingest_device d, got;
    make_device(&d, "dev-old", 0x86);
    ferry_strlcpy(d.labels, "{\"a\":\"b\"}", sizeof(d.labels));
    assert_int_equal(ingest_store_device_add(s, &d, NULL, 0), 0);
    ingest_store_close(s);
    /* Cut the stored value to the older size with LMDB directly. */
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(env, g_cfg.lmdb_map_size), 0);
    assert_int_equal(mdb_env_open(env, g_cfg.lmdb_dir, MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "devices", 0, &dbi), 0);
    MDB_val k = {7, (void *)"dev-old"}, v;
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    size_t old_size = 8 + offsetof(struct ingest_device, labels);
    assert_int_equal(v.mv_size, 8 + sizeof(struct ingest_device));
    uint8_t *copy = malloc(old_size);
    memcpy(copy, v.mv_data, old_size);
    v = (MDB_val){old_size, copy};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(copy);
    s = open_store();
    assert_int_equal(ingest_store_device_get(s, "dev-old", &got), 0);
    assert_string_equal(got.labels, "{}");
    assert_string_equal(got.device_class, "jetson-orin-nano");
    struct count_state c = {0, false};
    assert_int_equal(ingest_store_device_list(s, count_cb, &c), 0);
    assert_int_equal(ingest_store_device_set_labels(s, "dev-old", "{\"c\":\"d\"}"), 0);
    assert_int_equal(ingest_store_device_get(s, "dev-old", &got), 0);
    assert_string_equal(got.labels, "{\"c\":\"d\"}");
    ingest_store_close(s);
}

static void everything_survives_reopen(void **state)
{
    struct ingest_store *s = open_store();
    struct count_state c = {0, false};
    assert_int_equal(ingest_store_device_list(s, count_cb, &c), 0);
    assert_true(c.n >= 8);
    assert_true(c.saw);
    struct collected *col = calloc(1, sizeof(*col));
    assert_int_equal(ingest_store_export(s, "dev-rec", RECORD_METRIC, 0, 1000, collect, col), 0);
    assert_int_equal(col->n, 110);
    free(col);
    ingest_store_close(s);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_ingest_store lmdb|pg\n");
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
        snprintf(g_dir, sizeof(g_dir), "/tmp/ferry-store-test.XXXXXX");
        if (mkdtemp(g_dir) == NULL)
            return 1;
        g_cfg.kind = INGEST_STORE_LMDB;
        g_cfg.lmdb_dir = g_dir;
        g_cfg.lmdb_map_size = 64u << 20;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(devices_register_list_and_revoke),
        cmocka_unit_test(enroll_tokens_one_time_fleet_expiry_max_uses),
        cmocka_unit_test(records_stored_once_and_exported_in_order),
        cmocka_unit_test(interleaved_batches_export_in_seq_order),
        cmocka_unit_test(group_commit_refuses_unknown_and_revoked_only),
        cmocka_unit_test(gaps_counted_once_and_versions_kept),
        cmocka_unit_test(gaps_merged_as_a_set),
        cmocka_unit_test(versions_merged_per_key),
        cmocka_unit_test(updates_newest_sequence_wins),
        cmocka_unit_test(invalid_utf8_records_are_stored_and_exported),
        cmocka_unit_test(everything_survives_reopen),
        cmocka_unit_test(commit_order_every_record_once_from_a_durable_cursor),
        cmocka_unit_test(pg_late_commit_is_never_skipped),
        cmocka_unit_test(pg_concurrent_writers_interleaved_commit_order),
        cmocka_unit_test(labels_set_replaced_and_given_by_tokens),
        cmocka_unit_test(lmdb_device_values_before_labels_read_as_none),
    };
    int rc = cmocka_run_group_tests_name(argv[1], tests, NULL, NULL);
    if (g_cfg.kind == INGEST_STORE_LMDB) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", g_dir);
    }
    return rc;
}
