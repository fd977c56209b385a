/*
 * The dashboard tables of the PostgreSQL store (docs/dashboards.md "PostgreSQL schema"), against
 * a real server that with-postgres.sh starts. Usage: test_dashboard_pg (reads FERRY_TEST_PG).
 *
 * Proves: every field of a stored metric record is one `metrics` row with the corrected device
 * time (to the microsecond) and its type (float, integer, boolean, string), logs carry level
 * name, severity, source and message, events their fields; a NUL byte in a tag or string field
 * (which jsonb refuses as \u0000) fails neither the write nor its group; a resent batch (alone, or
 * twice in one group commit) adds no row; rows land in their day's partition, late rows of a day
 * without one in the DEFAULT partition and are moved when the day's partition is made; a retention
 * run drops whole day partitions older than N days and keeps the newer ones; `dashboard_tables` off
 * writes no row; and a database at schema version 7 holding records is migrated in place with every
 * record backfilled once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "cloud-ingest/store.h"
#include "common/buf.h"
#include "common/util.h"
#include "transport/record.h"

#define NS_PER_DAY (86400 * INT64_C(1000000000))

static char g_conninfo[1200];
static int64_t g_now_ns;

static struct ingest_store *open_store_on(const char *conninfo, bool dashboard,
                                          unsigned retention_days)
{
    struct ingest_store_config cfg = {.kind = INGEST_STORE_PG,
                                      .pg_conninfo = conninfo,
                                      .pg_connections = 2,
                                      .pg_dashboard_tables = dashboard,
                                      .pg_retention_days = retention_days};
    struct ingest_store *s = NULL;
    char err[512] = "";
    int rc = ingest_store_open(&cfg, &s, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "open: %s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static PGconn *db(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fprintf(stderr, "connect: %s\n", PQerrorMessage(c));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

/* Runs a query that must succeed; returns the first column of the first row as an integer. */
static int64_t q_int(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "%s: %s\n", sql, PQerrorMessage(c));
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    int64_t v = PQgetisnull(r, 0, 0) ? -1 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* The first column of the first row as text into out. */
static void q_text(PGconn *c, const char *sql, char *out, size_t out_len)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "%s: %s\n", sql, PQerrorMessage(c));
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    ferry_strlcpy(out, PQgetvalue(r, 0, 0), out_len);
    PQclear(r);
}

static void q_cmd(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fprintf(stderr, "%s: %s\n", sql, PQerrorMessage(c));
    assert_true(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
    PQclear(r);
}

static void add_device(struct ingest_store *s, const char *id, uint8_t key_byte)
{
    struct ingest_device d;
    memset(&d, 0, sizeof(d));
    ferry_strlcpy(d.id, id, sizeof(d.id));
    memset(d.public_key, key_byte, 32);
    memset(d.key_id, key_byte, 8);
    ferry_strlcpy(d.versions, "{}", sizeof(d.versions));
    char err[256];
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
}

/* A batch's records with packed payloads. */
struct recset {
    struct ferry_buf arena;
    size_t offs[64];
    struct ingest_rec recs[64];
    size_t n;
};

/* A metric record "cpu" with tag cpu=cpu0 and fields usage_user (float), procs (int),
 * throttled (bool) and governor (string), at corrected time ts_corrected_ns. */
static void add_metric(struct recset *rs, uint64_t seq, int64_t ts_corrected_ns, double usage)
{
    struct record_field f[4] = {
        {.key = {"usage_user", 10}, .type = RECORD_FIELD_FLOAT, .v.f = usage},
        {.key = {"procs", 5}, .type = RECORD_FIELD_INT, .v.i = -3},
        {.key = {"throttled", 9}, .type = RECORD_FIELD_BOOL, .v.b = true},
        {.key = {"governor", 8}, .type = RECORD_FIELD_STRING, .v.s = {"schedutil", 9}},
    };
    struct record_tag t = {.key = {"cpu", 3}, .value = {"cpu0", 4}};
    struct record r = {.stream = RECORD_METRIC,
                       .seq = seq,
                       .ts_ns = 1000, /* a device clock in 1970: the store keeps the corrected */
                       .name = {"cpu", 3},
                       .tags = &t,
                       .n_tags = 1,
                       .fields = f,
                       .n_fields = 4};
    size_t off = rs->arena.len;
    assert_int_equal(record_pack(&r, &rs->arena), 0);
    rs->offs[rs->n] = off;
    rs->recs[rs->n++] = (struct ingest_rec){.stream = RECORD_METRIC,
                                            .seq = seq,
                                            .ts_ns = r.ts_ns,
                                            .ts_corrected_ns = ts_corrected_ns,
                                            .packed_len = rs->arena.len - off};
}

static void add_log(struct recset *rs, uint64_t seq, int64_t ts_corrected_ns)
{
    struct record_field f = {.key = {"code", 4}, .type = RECORD_FIELD_INT, .v.i = 7};
    struct record r = {.stream = RECORD_LOG,
                       .seq = seq,
                       .ts_ns = ts_corrected_ns,
                       .name = {"detector", 8},
                       .level = RECORD_LEVEL_ERROR,
                       .message = {"camera 2 lost", 13},
                       .fields = &f,
                       .n_fields = 1};
    size_t off = rs->arena.len;
    assert_int_equal(record_pack(&r, &rs->arena), 0);
    rs->offs[rs->n] = off;
    rs->recs[rs->n++] = (struct ingest_rec){.stream = RECORD_LOG,
                                            .seq = seq,
                                            .ts_ns = r.ts_ns,
                                            .ts_corrected_ns = ts_corrected_ns,
                                            .packed_len = rs->arena.len - off};
}

static void add_event(struct recset *rs, uint64_t seq, int64_t ts_corrected_ns)
{
    struct record_field f = {.key = {"state", 5}, .type = RECORD_FIELD_STRING, .v.s = {"ok", 2}};
    struct record r = {.stream = RECORD_EVENT,
                       .seq = seq,
                       .ts_ns = ts_corrected_ns,
                       .name = {"ota.committed", 13},
                       .fields = &f,
                       .n_fields = 1};
    size_t off = rs->arena.len;
    assert_int_equal(record_pack(&r, &rs->arena), 0);
    rs->offs[rs->n] = off;
    rs->recs[rs->n++] = (struct ingest_rec){.stream = RECORD_EVENT,
                                            .seq = seq,
                                            .ts_ns = r.ts_ns,
                                            .ts_corrected_ns = ts_corrected_ns,
                                            .packed_len = rs->arena.len - off};
}

static void init_write(struct ingest_write *w, const char *dev, struct recset *rs)
{
    memset(w, 0, sizeof(*w));
    w->device_id = dev;
    w->received_ns = g_now_ns;
    for (size_t i = 0; i < rs->n; i++)
        rs->recs[i].packed = rs->arena.data + rs->offs[i];
    w->recs = rs->recs;
    w->n_recs = rs->n;
}

static void write_group(struct ingest_store *s, struct ingest_write **ws, size_t n)
{
    char err[512] = "";
    int rc = ingest_store_write(s, ws, n, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "write: %s\n", err);
    assert_int_equal(rc, 0);
}

static void rows_have_device_times_and_types_once(void **state)
{
    (void)state;
    struct ingest_store *s = open_store_on(g_conninfo, true, 0);
    add_device(s, "dash-1", 1);
    /* 12:34:56.123456789 today (UTC): the row keeps microseconds */
    int64_t day0 = g_now_ns - g_now_ns % NS_PER_DAY;
    int64_t t = day0 + (12 * 3600 + 34 * 60 + 56) * INT64_C(1000000000) + 123456789;
    struct recset rs = {.arena = FERRY_BUF_INIT};
    add_metric(&rs, 1, t, 12.5);
    add_metric(&rs, 2, t + 1000000000, 3.0);
    add_log(&rs, 3, t);
    add_event(&rs, 4, t);
    struct ingest_write w;
    init_write(&w, "dash-1", &rs);
    struct ingest_write *ws[1] = {&w};
    write_group(s, ws, 1);
    assert_int_equal(w.new_records, 4);

    PGconn *c = db(g_conninfo);
    assert_int_equal(q_int(c, "SELECT count(*) FROM metrics WHERE device = 'dash-1'"), 8);
    char text[128];
    q_text(c,
           "SELECT to_char(time AT TIME ZONE 'UTC', 'HH24:MI:SS.US') FROM metrics"
           " WHERE device = 'dash-1' AND seq = 1 AND field = 'usage_user'",
           text, sizeof(text));
    assert_string_equal(text, "12:34:56.123456");
    q_text(c,
           "SELECT string_agg(field || '=' || type || ':' || coalesce(value::text, value_text),"
           " ',' ORDER BY field) FROM metrics WHERE device = 'dash-1' AND seq = 2",
           text, sizeof(text));
    assert_string_equal(text, "governor=string:schedutil,procs=integer:-3,throttled=boolean:1,"
                              "usage_user=float:3");
    q_text(c, "SELECT tags->>'cpu' || '/' || name FROM metrics WHERE seq = 1 LIMIT 1", text,
           sizeof(text));
    assert_string_equal(text, "cpu0/cpu");
    q_text(c,
           "SELECT level || '/' || severity || '/' || source || '/' || message || '/' ||"
           " (fields->>'code') FROM logs WHERE device = 'dash-1'",
           text, sizeof(text));
    assert_string_equal(text, "error/3/detector/camera 2 lost/7");
    q_text(c, "SELECT name || '/' || (fields->>'state') FROM events WHERE device = 'dash-1'", text,
           sizeof(text));
    assert_string_equal(text, "ota.committed/ok");
    /* today's rows are in today's partition, not in the DEFAULT one */
    assert_int_equal(q_int(c, "SELECT count(*) FROM metrics_default WHERE device = 'dash-1'"), 0);
    q_text(c,
           "SELECT tableoid::regclass::text FROM metrics WHERE device = 'dash-1' AND seq = 1"
           " LIMIT 1",
           text, sizeof(text));
    char want[64];
    time_t secs = (time_t)(t / 1000000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(want, sizeof(want), "metrics_p%Y%m%d", &tm);
    assert_string_equal(text, want);

    /* The same batch again, and twice more in one group: no new row. */
    struct ingest_write w2, w3;
    init_write(&w, "dash-1", &rs);
    init_write(&w2, "dash-1", &rs);
    init_write(&w3, "dash-1", &rs);
    write_group(s, ws, 1);
    assert_int_equal(w.new_records, 0);
    struct ingest_write *two[2] = {&w2, &w3};
    write_group(s, two, 2);
    assert_int_equal(q_int(c, "SELECT count(*) FROM metrics WHERE device = 'dash-1'"), 8);
    assert_int_equal(q_int(c, "SELECT count(*) FROM logs WHERE device = 'dash-1'"), 1);
    assert_int_equal(q_int(c, "SELECT count(*) FROM events WHERE device = 'dash-1'"), 1);

    /* Partly new: only the new record's rows are added. */
    add_metric(&rs, 5, t + 2000000000, 1.0);
    init_write(&w, "dash-1", &rs);
    write_group(s, ws, 1);
    assert_int_equal(w.new_records, 1);
    assert_int_equal(q_int(c, "SELECT count(*) FROM metrics WHERE device = 'dash-1'"), 12);
    PQfinish(c);
    ferry_buf_free(&rs.arena);
    ingest_store_close(s);
}

/* A NUL byte in a tag or string field is "\u0000" in the records' JSON, which jsonb refuses: it
 * must not fail the write (nor the group: another device's record is in the same commit). */
static void nul_bytes_do_not_fail_the_write(void **state)
{
    (void)state;
    struct ingest_store *s = open_store_on(g_conninfo, true, 0);
    add_device(s, "dash-nul", 5);
    add_device(s, "dash-nul2", 6);
    struct record_field f[2] = {
        {.key = {"msg", 3}, .type = RECORD_FIELD_STRING, .v.s = {"a\0b", 3}},
        {.key = {"v", 1}, .type = RECORD_FIELD_FLOAT, .v.f = 2.5},
    };
    struct record_tag t = {.key = {"k", 1}, .value = {"x\0y", 3}};
    struct record r = {.stream = RECORD_METRIC,
                       .seq = 1,
                       .ts_ns = g_now_ns,
                       .name = {"nul", 3},
                       .tags = &t,
                       .n_tags = 1,
                       .fields = f,
                       .n_fields = 2};
    struct recset rs = {.arena = FERRY_BUF_INIT}, other = {.arena = FERRY_BUF_INIT};
    assert_int_equal(record_pack(&r, &rs.arena), 0);
    rs.offs[0] = 0;
    rs.recs[rs.n++] = (struct ingest_rec){.stream = RECORD_METRIC,
                                          .seq = 1,
                                          .ts_ns = g_now_ns,
                                          .ts_corrected_ns = g_now_ns,
                                          .packed_len = rs.arena.len};
    add_metric(&other, 1, g_now_ns, 4.0);
    struct ingest_write w1, w2;
    init_write(&w1, "dash-nul", &rs);
    init_write(&w2, "dash-nul2", &other);
    struct ingest_write *ws[2] = {&w1, &w2};
    write_group(s, ws, 2);
    assert_int_equal(w1.new_records + w2.new_records, 2);
    PGconn *c = db(g_conninfo);
    char text[128];
    q_text(c,
           "SELECT value_text || '|' || (tags->>'k') FROM metrics WHERE device = 'dash-nul'"
           " AND field = 'msg'",
           text, sizeof(text));
    assert_string_equal(text, "a\xef\xbf\xbd"
                              "b|x\xef\xbf\xbd"
                              "y");
    assert_int_equal(q_int(c, "SELECT count(*) FROM metrics WHERE device = 'dash-nul2'"), 4);
    PQfinish(c);
    ferry_buf_free(&rs.arena);
    ferry_buf_free(&other.arena);
    ingest_store_close(s);
}

static void dashboard_off_writes_no_rows(void **state)
{
    (void)state;
    struct ingest_store *s = open_store_on(g_conninfo, false, 0);
    add_device(s, "dash-off", 2);
    struct recset rs = {.arena = FERRY_BUF_INIT};
    add_metric(&rs, 1, g_now_ns, 1.0);
    struct ingest_write w;
    init_write(&w, "dash-off", &rs);
    struct ingest_write *ws[1] = {&w};
    write_group(s, ws, 1);
    assert_int_equal(w.new_records, 1);
    PGconn *c = db(g_conninfo);
    assert_int_equal(q_int(c, "SELECT count(*) FROM records WHERE device = 'dash-off'"), 1);
    assert_int_equal(q_int(c, "SELECT count(*) FROM metrics WHERE device = 'dash-off'"), 0);
    PQfinish(c);
    ferry_buf_free(&rs.arena);
    ingest_store_close(s);
}

static void late_rows_default_partition_then_retention(void **state)
{
    (void)state;
    PGconn *c = db(g_conninfo);
    /* A day partition 10 days back, as the ingest would have made it then. */
    q_cmd(c, "SELECT ferry_dash_partition('metrics', (now() AT TIME ZONE 'UTC')::date - 10)");
    struct ingest_store *s = open_store_on(g_conninfo, true, 0);
    add_device(s, "dash-late", 3);
    struct recset rs = {.arena = FERRY_BUF_INIT};
    add_metric(&rs, 1, g_now_ns - 10 * NS_PER_DAY, 1.0); /* into the p(-10) partition */
    add_metric(&rs, 2, g_now_ns - 8 * NS_PER_DAY, 2.0);  /* no partition: DEFAULT */
    add_metric(&rs, 3, g_now_ns, 3.0);                   /* today's */
    struct ingest_write w;
    init_write(&w, "dash-late", &rs);
    struct ingest_write *ws[1] = {&w};
    write_group(s, ws, 1);
    ingest_store_close(s);
    assert_int_equal(
        q_int(c, "SELECT count(*) FROM metrics_default WHERE device = 'dash-late' AND seq = 2"), 4);
    /* Making the late day's partition moves its rows out of DEFAULT. */
    assert_int_equal(q_int(c, "SELECT ferry_dash_partition('metrics',"
                              " (now() AT TIME ZONE 'UTC')::date - 8)::int"),
                     1);
    assert_int_equal(q_int(c, "SELECT count(*) FROM metrics_default WHERE device = 'dash-late'"),
                     0);
    assert_int_equal(q_int(c, "SELECT count(*) FROM metrics WHERE device = 'dash-late'"), 12);

    /* Retention 5 days, applied when a store opens: the -10 and -8 partitions go, today's and
     * the ones made ahead stay. */
    s = open_store_on(g_conninfo, true, 5);
    ingest_store_close(s);
    assert_int_equal(q_int(c, "SELECT count(*) FROM metrics WHERE device = 'dash-late'"), 4);
    assert_int_equal(q_int(c, "SELECT count(*) FROM metrics WHERE device = 'dash-late'"
                              " AND seq = 3"),
                     4);
    assert_int_equal(q_int(c, "SELECT count(*) FROM pg_class WHERE relname = 'metrics_p' ||"
                              " to_char((now() AT TIME ZONE 'UTC')::date - 10, 'YYYYMMDD')"),
                     0);
    assert_int_equal(q_int(c, "SELECT count(*) FROM pg_class WHERE relname = 'metrics_p' ||"
                              " to_char((now() AT TIME ZONE 'UTC')::date, 'YYYYMMDD')"),
                     1);
    assert_int_equal(q_int(c, "SELECT count(*) FROM pg_class WHERE relname = 'logs_p' ||"
                              " to_char((now() AT TIME ZONE 'UTC')::date + 2, 'YYYYMMDD')"),
                     1);
    /* the records themselves are kept: retention is about the dashboard tables only */
    assert_int_equal(q_int(c, "SELECT count(*) FROM records WHERE device = 'dash-late'"), 3);
    PQfinish(c);
    ferry_buf_free(&rs.arena);
}

static void migration_from_version_7_backfills_once(void **state)
{
    (void)state;
    PGconn *c = db(g_conninfo);
    q_cmd(c, "DROP DATABASE IF EXISTS ferry_mig");
    q_cmd(c, "CREATE DATABASE ferry_mig");
    PQfinish(c);
    char ci[1300];
    snprintf(ci, sizeof(ci), "%s dbname=ferry_mig", g_conninfo);
    /* Records stored by this build, then the database taken back to version 7 exactly as
     * migration 8 found it (it only adds the objects dropped here). */
    struct ingest_store *s = open_store_on(ci, false, 0);
    add_device(s, "dash-mig", 4);
    struct recset rs = {.arena = FERRY_BUF_INIT};
    add_metric(&rs, 1, g_now_ns - 3 * NS_PER_DAY, 1.0);
    add_metric(&rs, 2, g_now_ns, 2.0);
    add_log(&rs, 3, g_now_ns - 3 * NS_PER_DAY);
    add_event(&rs, 4, g_now_ns);
    struct ingest_write w;
    init_write(&w, "dash-mig", &rs);
    struct ingest_write *ws[1] = {&w};
    write_group(s, ws, 1);
    ingest_store_close(s);
    c = db(ci);
    q_cmd(c, "DROP TABLE metrics, logs, events;"
             " DROP FUNCTION ferry_dash_maintain, ferry_dash_partition, ferry_ns_time;"
             " DELETE FROM schema_version WHERE version = 8");
    assert_int_equal(q_int(c, "SELECT max(version) FROM schema_version"), 7);

    s = open_store_on(ci, true, 0);
    assert_int_equal(q_int(c, "SELECT max(version) FROM schema_version"), 8);
    assert_int_equal(q_int(c, "SELECT count(*) FROM metrics"), 8);
    assert_int_equal(q_int(c, "SELECT count(*) FROM logs"), 1);
    assert_int_equal(q_int(c, "SELECT count(*) FROM events"), 1);
    /* the backfilled day 3 days back got its own partition */
    assert_int_equal(q_int(c, "SELECT count(*) FROM metrics_default"), 0);
    assert_int_equal(q_int(c, "SELECT count(*) FROM pg_class WHERE relname = 'metrics_p' ||"
                              " to_char((now() AT TIME ZONE 'UTC')::date - 3, 'YYYYMMDD')"),
                     1);
    /* and new writes after the migration: once */
    add_metric(&rs, 5, g_now_ns, 5.0);
    init_write(&w, "dash-mig", &rs);
    write_group(s, ws, 1);
    assert_int_equal(q_int(c, "SELECT count(*) FROM metrics"), 12);
    ingest_store_close(s);
    PQfinish(c);
    ferry_buf_free(&rs.arena);
}

int main(void)
{
    const char *ci = getenv("FERRY_TEST_PG");
    if (ci == NULL) {
        fprintf(stderr, "FERRY_TEST_PG not set (run through with-postgres.sh)\n");
        return 2;
    }
    if (ferry_strlcpy(g_conninfo, ci, sizeof(g_conninfo)) >= sizeof(g_conninfo))
        return 2;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    g_now_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rows_have_device_times_and_types_once),
        cmocka_unit_test(nul_bytes_do_not_fail_the_write),
        cmocka_unit_test(dashboard_off_writes_no_rows),
        cmocka_unit_test(late_rows_default_partition_then_retention),
        cmocka_unit_test(migration_from_version_7_backfills_once),
    };
    return cmocka_run_group_tests_name("dashboard_pg", tests, NULL, NULL);
}
