/*
 * store_pg.c - the PostgreSQL store through libpq (see store.h for what a store keeps).
 *
 * Several ferry-ingest processes may share one database: every rule that makes ingest exactly
 * once lives in the database, not in a process.
 *
 *   1. Dedup: records has PRIMARY KEY (device, stream, seq); writes go through
 *      INSERT ... ON CONFLICT DO NOTHING, so a record that two processes receive at once (a
 *      device retrying through a load balancer) is stored once and both acknowledge it.
 *   2. Bulk writes: one query finds which records of a group are stored already (index range
 *      scans over each (device, stream) seq range), and the others are COPYed straight into
 *      `records` in (device, stream, seq) order. When another process stores one of them in
 *      between, the COPY fails on the unique key and the group is retried, finding it stored:
 *      the key decides, and the common case is a plain COPY. The sorted order makes concurrent
 *      transactions take key locks alike, which keeps them from deadlocking (a deadlock or
 *      serialisation failure that still happens is retried). Device ids use COLLATE "C".
 *   3. Counters (device_streams) are updated in the same transaction as the records, from the
 *      rows this transaction inserted, so they count each record once across processes.
 *   4. Schema: created and migrated on start under an advisory lock, one step per version
 *      recorded in schema_version; two processes starting together migrate once.
 *
 * Durability: ingest_store_write() returns after COMMIT succeeded, i.e. after PostgreSQL's WAL
 * flush when synchronous_commit is on (its default).
 *
 * Connections: a small pool; each call takes one connection for its duration (a mutex and a
 * condition variable hand them out), so the group committer's threads and readers never share one.
 *
 * Failover (docs/operations.md, "PostgreSQL high availability"): a connection that broke (the
 * server died or restarted), that reached a server which is read-only (a standby: in_hot_standby
 * or default_transaction_read_only reported "on"), or whose statement failed with a read-only or
 * shutdown error (SQLSTATE 25006, 57P01..57P03, class 08) is reconnected the next time it is
 * taken, with the same connection string: with several hosts and
 * target_session_attrs=read-write libpq tries them in turn and keeps only a primary. While none
 * answers, attempts are spaced by a backoff per connection (100 ms doubling to 2 s) and every
 * call fails at once with INGEST_STORE_EIO, which the ingest answers with 503 and Retry-After.
 * A write whose COMMIT got no answer is reported failed (EIO), never acknowledged: the device
 * sends it again and the unique key stores it once whether or not that COMMIT took effect.
 * Sequence numbers are stored as bigint: values above 2^63-1 are refused by the decoder's limits.
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloud-ingest/store_impl.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/utf8.h"
#include "common/util.h"

#define PG_SCHEMA_VERSION 8
#define PG_MIGRATION_LOCK 0x66657272 /* "ferr" */

/*
 * The dashboard tables (docs/dashboards.md "PostgreSQL schema"): metrics (a row per field),
 * logs and events, each partitioned by day of the corrected device time, so that a Grafana
 * PostgreSQL data source charts them with a plain `time` column and retention drops whole
 * partitions. Their rows are derived from `records` by one statement, DASH_ROWS_SQL(where):
 * the write path runs it in the transaction that COPYed the records (where: this transaction's
 * rows, found through records_commit_order), so a dashboard row exists exactly when its record
 * does and the records' unique key dedups both; migration 8 runs it once over all records.
 * jsonb refuses the escape \u0000 that the records' JSON text holds for a NUL byte a device
 * sent: it becomes U+FFFD there, or one such record would fail every write of its group.
 */
#define DASH_ROWS_SQL(where)                                                                       \
    "WITH r AS MATERIALIZED (SELECT ferry_ns_time(ts_corrected) AS time, device, stream, seq,"     \
    " name, level, message, replace(tags, '\\u0000', '\\ufffd')::jsonb AS tags,"                   \
    " replace(fields, '\\u0000', '\\ufffd')::jsonb AS fields FROM records " where "),"             \
    " m AS (INSERT INTO metrics (time, device, name, field, value, type, value_text, tags, seq)"   \
    " SELECT r.time, r.device, r.name, f.key,"                                                     \
    " CASE jsonb_typeof(f.value) WHEN 'number' THEN (f.value #>> '{}')::double precision"          \
    " WHEN 'boolean' THEN CASE WHEN f.value = 'true'::jsonb THEN 1 ELSE 0 END END,"                \
    " CASE jsonb_typeof(f.value) WHEN 'number' THEN CASE WHEN (f.value #>> '{}') ~ '[.eE]'"        \
    " THEN 'float' ELSE 'integer' END WHEN 'null' THEN 'float' ELSE jsonb_typeof(f.value) END,"    \
    " CASE jsonb_typeof(f.value) WHEN 'string' THEN f.value #>> '{}' END, r.tags, r.seq"           \
    " FROM r CROSS JOIN LATERAL jsonb_each(r.fields) AS f WHERE r.stream = 1 RETURNING 1),"        \
    " l AS (INSERT INTO logs (time, device, severity, level, source, message, tags, fields, seq)"  \
    " SELECT time, device, level, coalesce((ARRAY['emerg','alert','crit','error','warn',"          \
    "'notice','info','debug'])[level + 1], 'unknown'), name, message, tags, fields, seq"           \
    " FROM r WHERE stream = 2 RETURNING 1)"                                                        \
    " INSERT INTO events (time, device, name, tags, fields, seq)"                                  \
    " SELECT time, device, name, tags, fields, seq FROM r WHERE stream = 0"

/* Day partitions are made ahead of the clock and by migration 8 for the days already stored. */
#define DASH_AHEAD_DAYS 2
/* How often a process runs ferry_dash_maintain() from the write path (nanoseconds). */
#define DASH_MAINTAIN_EVERY_NS (3600 * INT64_C(1000000000))

struct pg_conn {
    PGconn *conn;
    bool broken;           /* reconnect before the next use (pg_note_failure, read-only) */
    long long retry_at_ms; /* monotonic: no reconnection attempt before this */
    int64_t backoff_ms;    /* current wait between failed attempts (0: connected) */
};

/* Set by a failed statement whose SQLSTATE says the connection must be made again (read-only
 * server, shutdown, connection failure); conn_put() moves it to the connection. Thread-local
 * because a thread holds one connection at a time between conn_get() and conn_put(), and the
 * statements are run all over this file through res_ok()/exec_cmd(). */
static _Thread_local bool pg_reconnect_needed;

struct pg_store {
    struct ingest_store base;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct pg_conn *conns;
    size_t n_conns;
    bool *busy;
    char *conninfo;
    /* dashboard tables (dash_* below): written with the records, maintained hourly */
    bool dashboard;
    unsigned retention_days;
    int64_t dash_next_maintain_ns; /* under lock */
};

static const char *const migrations[PG_SCHEMA_VERSION] = {
    /* version 1 */
    "CREATE TABLE devices ("
    " id text COLLATE \"C\" PRIMARY KEY, public_key bytea NOT NULL, key_id bytea NOT NULL UNIQUE,"
    " name text NOT NULL DEFAULT '', device_class text NOT NULL DEFAULT '',"
    " revoked boolean NOT NULL DEFAULT false, enrolled_ns bigint NOT NULL DEFAULT 0,"
    " last_seen_ns bigint NOT NULL DEFAULT 0, clock_offset_ns bigint NOT NULL DEFAULT 0,"
    " versions text NOT NULL DEFAULT '{}');"
    "CREATE TABLE device_streams ("
    " device text COLLATE \"C\" NOT NULL REFERENCES devices(id), stream smallint NOT NULL,"
    " records bigint NOT NULL DEFAULT 0, max_seq bigint NOT NULL DEFAULT 0,"
    " gap_ranges bigint NOT NULL DEFAULT 0, gap_records bigint NOT NULL DEFAULT 0,"
    " backlog bigint NOT NULL DEFAULT 0, PRIMARY KEY (device, stream));"
    "CREATE TABLE tokens (token text PRIMARY KEY, one_time boolean NOT NULL,"
    " used boolean NOT NULL DEFAULT false, expires_ns bigint NOT NULL DEFAULT 0);"
    "CREATE TABLE records ("
    " device text COLLATE \"C\" NOT NULL, stream smallint NOT NULL, seq bigint NOT NULL,"
    " ts bigint NOT NULL, ts_corrected bigint NOT NULL, name text NOT NULL,"
    " level smallint NOT NULL, message text NOT NULL, tags text NOT NULL, fields text NOT NULL,"
    " PRIMARY KEY (device, stream, seq));"
    "CREATE TABLE gaps (device text COLLATE \"C\" NOT NULL, stream smallint NOT NULL,"
    " first_seq bigint NOT NULL, last_seq bigint NOT NULL,"
    " PRIMARY KEY (device, stream, first_seq));",
    /* version 2: per-component update states from ota.* events (docs/ingest.md) */
    "ALTER TABLE devices ADD COLUMN updates text NOT NULL DEFAULT '{}';",
    /* version 3: operator API tokens and the audit log (docs/security.md) */
    "CREATE TABLE api_tokens (id text COLLATE \"C\" PRIMARY KEY, name text NOT NULL UNIQUE,"
    " role smallint NOT NULL, hash bytea NOT NULL, created_ns bigint NOT NULL,"
    " expires_ns bigint NOT NULL DEFAULT 0, revoked_ns bigint NOT NULL DEFAULT 0);"
    "CREATE TABLE audit (seq bigserial PRIMARY KEY, ts_ns bigint NOT NULL, actor text NOT NULL,"
    " action text NOT NULL, target text NOT NULL, source text NOT NULL, status integer NOT NULL);"
    "ALTER TABLE tokens ADD COLUMN uses bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN max_uses bigint NOT NULL DEFAULT 0;",
    /* version 4: commit order for forwarders (store.h, "Commit order"): the writing
     * transaction's id, the receive time and the record_pack() payload (typed fields) of every
     * record, an index in commit order, and the forwarders' cursors. Rows stored before this
     * version get the migration's transaction id and no payload (they are passed, not sent). */
    "ALTER TABLE records ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id(),"
    " ADD COLUMN ingested_ns bigint NOT NULL DEFAULT 0, ADD COLUMN payload bytea;"
    "CREATE INDEX records_commit_order ON records (txid, device, stream, seq);"
    "CREATE TABLE forward_cursors (name text COLLATE \"C\" PRIMARY KEY,"
    " records bigint NOT NULL, txid xid8 NOT NULL, device text COLLATE \"C\" NOT NULL,"
    " stream smallint NOT NULL, seq bigint NOT NULL);",
    /* version 5: the ingest's own state (store.h, "a small durable key/value table") and the
     * leases that pick one process for leased work */
    "CREATE TABLE ingest_kv (key text COLLATE \"C\" PRIMARY KEY, value bytea NOT NULL);"
    "CREATE TABLE ingest_leases (name text COLLATE \"C\" PRIMARY KEY, owner text NOT NULL,"
    " expires_ns bigint NOT NULL);",
    /* version 6: device labels and the labels an enrolment token gives (store.h, "Device
     * labels"). text, not jsonb: the canonical JSON text (compact, keys sorted) is kept byte for
     * byte, and selectors are evaluated in ferry-ingest (selector.c). */
    "ALTER TABLE devices ADD COLUMN labels text NOT NULL DEFAULT '{}';"
    " ALTER TABLE tokens"
    " ADD COLUMN labels text NOT NULL DEFAULT '{}';",
    /* version 7: the device's newest inventory event (docs/ingest.md "Inventory"): its fields
     * as JSON object text and its device time; NULL until the device sends one */
    "ALTER TABLE devices ADD COLUMN inventory text, ADD COLUMN inventory_ts_ns bigint;",
    /* version 8: the dashboard tables (DASH_ROWS_SQL above, docs/dashboards.md), their day
     * partitions and retention (ferry_dash_partition, ferry_dash_maintain), and a backfill from
     * the records already stored: partitions for every day they cover (at most 400 days back;
     * older rows land in the DEFAULT partitions), then one pass of DASH_ROWS_SQL. */
    "CREATE FUNCTION ferry_ns_time(ns bigint) RETURNS timestamptz LANGUAGE sql STABLE"
    " PARALLEL SAFE AS $$ SELECT timestamptz 'epoch' + (ns / 1000) * interval '1 microsecond' $$;"
    "CREATE TABLE metrics (time timestamptz NOT NULL, device text COLLATE \"C\" NOT NULL,"
    " name text NOT NULL, field text NOT NULL, value double precision, type text NOT NULL,"
    " value_text text, tags jsonb NOT NULL, seq bigint NOT NULL) PARTITION BY RANGE (time);"
    "CREATE INDEX metrics_device_name_time ON metrics (device, name, time);"
    "CREATE INDEX metrics_name_time ON metrics (name, time);"
    "CREATE TABLE metrics_default PARTITION OF metrics DEFAULT;"
    "CREATE TABLE logs (time timestamptz NOT NULL, device text COLLATE \"C\" NOT NULL,"
    " severity smallint NOT NULL, level text NOT NULL, source text NOT NULL,"
    " message text NOT NULL, tags jsonb NOT NULL, fields jsonb NOT NULL, seq bigint NOT NULL)"
    " PARTITION BY RANGE (time);"
    "CREATE INDEX logs_device_time ON logs (device, time);"
    "CREATE INDEX logs_source_time ON logs (source, time);"
    "CREATE INDEX logs_severity_time ON logs (severity, time);"
    "CREATE TABLE logs_default PARTITION OF logs DEFAULT;"
    "CREATE TABLE events (time timestamptz NOT NULL, device text COLLATE \"C\" NOT NULL,"
    " name text NOT NULL, tags jsonb NOT NULL, fields jsonb NOT NULL, seq bigint NOT NULL)"
    " PARTITION BY RANGE (time);"
    "CREATE INDEX events_device_name_time ON events (device, name, time);"
    "CREATE INDEX events_name_time ON events (name, time);"
    "CREATE TABLE events_default PARTITION OF events DEFAULT;"
    /* One day [day, day + 1) UTC of `tbl`: created empty, filled with the rows of that day the
     * DEFAULT partition holds (late data that came before it existed), then attached; returns
     * false when it exists already. */
    "CREATE FUNCTION ferry_dash_partition(tbl text, day date) RETURNS boolean LANGUAGE plpgsql"
    " AS $$ DECLARE part text := tbl || '_p' || to_char(day, 'YYYYMMDD');"
    " lo timestamptz := day::timestamp AT TIME ZONE 'UTC';"
    " hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';"
    " BEGIN IF to_regclass(part) IS NOT NULL THEN RETURN false; END IF;"
    " EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, tbl);"
    " EXECUTE format('WITH moved AS (DELETE FROM %I WHERE time >= $1 AND time < $2 RETURNING *)"
    " INSERT INTO %I SELECT * FROM moved', tbl || '_default', part) USING lo, hi;"
    " EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',"
    " tbl, part, lo, hi); RETURN true; END $$;"
    /* Partitions from yesterday to `ahead_days` ahead, and, when retention_days > 0, drops the
     * day partitions wholly older than the start of (today - retention_days) UTC and deletes
     * such rows from the DEFAULT partitions. One process at a time (a transaction-scoped
     * advisory lock; the others return -1 at once); a lock not granted within 2 s fails that
     * partition (made) or the call (dropped), tried again later. Returns the partitions
     * dropped. */
    "CREATE FUNCTION ferry_dash_maintain(retention_days integer, ahead_days integer)"
    " RETURNS integer LANGUAGE plpgsql AS $$"
    " DECLARE today date := (now() AT TIME ZONE 'UTC')::date; tbl text; p record;"
    " dropped integer := 0;"
    " BEGIN IF NOT pg_try_advisory_xact_lock(1717658739) THEN RETURN -1; END IF;"
    /* writers queue behind a waiting exclusive lock: never wait long for one */
    " PERFORM set_config('lock_timeout', '2s', true);"
    " FOREACH tbl IN ARRAY ARRAY['metrics', 'logs', 'events'] LOOP"
    " FOR i IN -1..ahead_days LOOP"
    " BEGIN PERFORM ferry_dash_partition(tbl, today + i);"
    " EXCEPTION WHEN others THEN RAISE WARNING 'ferry: partition % of % not made: %',"
    " today + i, tbl, SQLERRM; END; END LOOP;"
    " IF retention_days > 0 THEN"
    " FOR p IN SELECT c.relname FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid"
    " WHERE h.inhparent = tbl::regclass AND c.relname ~ ('^' || tbl || '_p[0-9]{8}$')"
    " AND to_date(substr(c.relname, length(tbl) + 3), 'YYYYMMDD') < today - retention_days"
    " LOOP EXECUTE format('DROP TABLE %I', p.relname); dropped := dropped + 1; END LOOP;"
    " EXECUTE format('DELETE FROM %I WHERE time < $1', tbl || '_default')"
    " USING (today - retention_days)::timestamp AT TIME ZONE 'UTC';"
    " END IF; END LOOP; RETURN dropped; END $$;"
    "SELECT ferry_dash_partition(t, d) FROM unnest(ARRAY['metrics', 'logs', 'events']) AS t,"
    " (SELECT DISTINCT (ferry_ns_time(ts_corrected) AT TIME ZONE 'UTC')::date AS d FROM records"
    " WHERE ts_corrected >= (extract(epoch FROM now() - interval '400 days') * 1e9)::bigint"
    " AND ts_corrected < (extract(epoch FROM now() + interval '2 days') * 1e9)::bigint) AS days"
    ";" DASH_ROWS_SQL("") ";",
};

static void set_err(char *err, size_t err_len, const char *what, PGconn *c)
{
    if (err == NULL || err_len == 0)
        return;
    const char *m = c != NULL ? PQerrorMessage(c) : "";
    snprintf(err, err_len, "postgresql: %s: %.*s", what, (int)strcspn(m, "\n"), m);
}

/* True when the server behind `c` cannot take writes: a standby, or read-only by setting.
 * Both parameters are reported by servers 14+ at connect and whenever they change (promotion). */
static bool conn_read_only(PGconn *c)
{
    const char *standby = PQparameterStatus(c, "in_hot_standby");
    const char *ro = PQparameterStatus(c, "default_transaction_read_only");
    return (standby != NULL && strcmp(standby, "on") == 0) || (ro != NULL && strcmp(ro, "on") == 0);
}

/* Makes the connection again when it broke or reached a read-only server, unless the backoff
 * says not yet (the caller's statement then fails at once on the broken connection). Called
 * with the connection taken, without the pool lock: PQreset blocks for the connection attempt
 * (bounded by connect_timeout in the connection string). */
static void conn_check(struct pg_conn *c)
{
    if (!c->broken && PQstatus(c->conn) == CONNECTION_OK && !conn_read_only(c->conn))
        return;
    long long now = ferry_monotonic_ms();
    if (now < c->retry_at_ms)
        return;
    PQreset(c->conn);
    if (PQstatus(c->conn) == CONNECTION_OK && !conn_read_only(c->conn)) {
        if (c->backoff_ms > 0)
            log_info("store", "postgresql: reconnected to %s:%s", PQhost(c->conn), PQport(c->conn));
        PQclear(PQexec(c->conn, "SET client_min_messages = warning"));
        c->broken = false;
        c->backoff_ms = 0;
        c->retry_at_ms = 0;
        return;
    }
    if (c->backoff_ms == 0)
        log_limited(10, FERRY_LOG_WARN, "store", "postgresql: no writable server: %.*s",
                    (int)strcspn(PQerrorMessage(c->conn), "\n"), PQerrorMessage(c->conn));
    c->broken = true;
    c->backoff_ms = c->backoff_ms == 0 ? 100 : c->backoff_ms >= 1000 ? 2000 : c->backoff_ms * 2;
    c->retry_at_ms = now + c->backoff_ms;
}

static struct pg_conn *conn_get(struct pg_store *s)
{
    pthread_mutex_lock(&s->lock);
    for (;;) {
        for (size_t i = 0; i < s->n_conns; i++) {
            if (!s->busy[i]) {
                s->busy[i] = true;
                pthread_mutex_unlock(&s->lock);
                struct pg_conn *c = &s->conns[i];
                pg_reconnect_needed = false;
                conn_check(c);
                return c;
            }
        }
        pthread_cond_wait(&s->cond, &s->lock);
    }
}

static void conn_put(struct pg_store *s, struct pg_conn *c)
{
    if (pg_reconnect_needed || PQstatus(c->conn) != CONNECTION_OK)
        c->broken = true;
    pg_reconnect_needed = false;
    pthread_mutex_lock(&s->lock);
    s->busy[c - s->conns] = false;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Notes a failed statement whose SQLSTATE means the connection is no longer one to write on:
 * 25006 read_only_sql_transaction (a standby, or a server made read-only), 57P01..57P03
 * (administrator / crash shutdown, cannot connect now), class 08 (connection exception). A
 * NULL result (libpq out of memory or no connection) counts too. */
static void pg_note_failure(PGresult *r)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (r == NULL ||
        (state != NULL && (strcmp(state, "25006") == 0 || strncmp(state, "57P0", 4) == 0 ||
                           strncmp(state, "08", 2) == 0)))
        pg_reconnect_needed = true;
}

static bool res_ok(PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        pg_note_failure(r);
    return ok;
}

/* Runs a command without results; returns 0 or EIO with err filled. */
static int exec_cmd(PGconn *c, const char *sql, char *err, size_t err_len)
{
    PGresult *r = PQexec(c, sql);
    int rc = res_ok(r) ? 0 : INGEST_STORE_EIO;
    if (rc != 0)
        set_err(err, err_len, sql, c);
    PQclear(r);
    return rc;
}

static PGresult *exec_params(PGconn *c, const char *sql, int n, const char *const *vals)
{
    return PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
}

static bool retryable(PGresult *r)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return state != NULL && (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0);
}

/* Runs a statement of a write (parameters `vals`[n]; vals NULL: PQexec, which also takes several
 * statements) and discards its result: 0, 1 when PostgreSQL says to retry (deadlock,
 * serialisation), or EIO with err naming `what`. */
static int exec_write(PGconn *c, const char *sql, int n, const char *const *vals, const char *what,
                      char *err, size_t err_len)
{
    PGresult *r = vals != NULL ? exec_params(c, sql, n, vals) : PQexec(c, sql);
    int rc = res_ok(r) ? 0 : retryable(r) ? 1 : INGEST_STORE_EIO;
    if (rc != 0)
        set_err(err, err_len, what, c);
    PQclear(r);
    return rc;
}

static int migrate(PGconn *c, char *err, size_t err_len)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_lock(%d)", PG_MIGRATION_LOCK);
    int rc = exec_cmd(c, sql, err, err_len);
    if (rc != 0)
        return rc;
    rc = exec_cmd(c, "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)", err,
                  err_len);
    if (rc != 0)
        goto out;
    PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_version");
    if (!res_ok(r) || PQntuples(r) != 1) {
        set_err(err, err_len, "read schema_version", c);
        PQclear(r);
        rc = INGEST_STORE_EIO;
        goto out;
    }
    int64_t version = 0;
    (void)ferry_parse_i64(PQgetvalue(r, 0, 0), 0, 1000000, &version);
    PQclear(r);
    if (version > PG_SCHEMA_VERSION) {
        snprintf(err, err_len,
                 "postgresql: schema version %" PRId64 " is newer than this build (%d)", version,
                 PG_SCHEMA_VERSION);
        rc = INGEST_STORE_EIO;
        goto out;
    }
    for (int64_t v = version + 1; v <= PG_SCHEMA_VERSION; v++) {
        char done[96];
        snprintf(done, sizeof(done), "INSERT INTO schema_version VALUES (%" PRId64 ")", v);
        if ((rc = exec_cmd(c, "BEGIN", err, err_len)) != 0 ||
            (rc = exec_cmd(c, migrations[v - 1], err, err_len)) != 0 ||
            (rc = exec_cmd(c, done, err, err_len)) != 0 ||
            (rc = exec_cmd(c, "COMMIT", err, err_len)) != 0) {
            PQclear(PQexec(c, "ROLLBACK"));
            goto out;
        }
    }
out:
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_unlock(%d)", PG_MIGRATION_LOCK);
    PQclear(PQexec(c, sql));
    return rc;
}

static void pg_close(struct ingest_store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    for (size_t i = 0; i < s->n_conns; i++)
        if (s->conns[i].conn != NULL)
            PQfinish(s->conns[i].conn);
    free(s->conns);
    free(s->busy);
    free(s->conninfo);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}

/* Appends `p` escaped for COPY's text format. */
static int copy_text(struct ferry_buf *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        const char *esc = NULL;
        switch (c) {
        case '\\': esc = "\\\\"; break;
        case '\t': esc = "\\t"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\0': esc = ""; break; /* text columns cannot hold NUL; the decoder refuses it */
        default: break;
        }
        int rc = esc != NULL ? ferry_buf_append(b, esc, strlen(esc))
                             : ferry_buf_append_u8(b, (uint8_t)c);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* copy_text of p[0..n) with ill-formed UTF-8 replaced by U+FFFD (common/utf8.h): a UTF-8
 * database refuses such bytes in a text column, and one record must not fail a group commit. */
static int copy_text_utf8(struct ferry_buf *b, const char *p, size_t n)
{
    if (ferry_utf8_valid(p, n))
        return copy_text(b, p, n);
    struct ferry_buf fixed = FERRY_BUF_INIT;
    int rc = ferry_buf_append_utf8(&fixed, p, n);
    if (rc == 0)
        rc = copy_text(b, (const char *)fixed.data, fixed.len);
    ferry_buf_free(&fixed);
    return rc;
}

static int copy_row(struct ferry_buf *b, struct ferry_buf *scratch, const char *device,
                    int64_t received_ns, const struct ingest_rec *rec)
{
    static const char hex[] = "0123456789abcdef";
    struct ingest_row r;
    int rc = ingest_rec_render(rec, &r, scratch);
    if (rc != 0)
        return rc;
    if (ferry_buf_printf(b, "%s\t%u\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t", device,
                         (unsigned)r.stream, (int64_t)r.seq, r.ts_ns, r.ts_corrected_ns) != 0 ||
        copy_text_utf8(b, r.name, r.name_len) != 0 || ferry_buf_printf(b, "\t%u\t", r.level) != 0 ||
        copy_text_utf8(b, r.message, r.message_len) != 0 || ferry_buf_append_u8(b, '\t') != 0 ||
        copy_text(b, r.tags_json, r.tags_json_len) != 0 || ferry_buf_append_u8(b, '\t') != 0 ||
        copy_text(b, r.fields_json, r.fields_json_len) != 0 ||
        ferry_buf_printf(b, "\t%" PRId64 "\t\\\\x", received_ns) != 0)
        return INGEST_STORE_ENOMEM;
    /* bytea in hex form; COPY's text format doubles the backslash of "\x". */
    for (size_t i = 0; i < rec->packed_len; i++) {
        char pair[2] = {hex[rec->packed[i] >> 4], hex[rec->packed[i] & 15]};
        if (ferry_buf_append(b, pair, 2) != 0)
            return INGEST_STORE_ENOMEM;
    }
    return ferry_buf_append_u8(b, '\n') != 0 ? INGEST_STORE_ENOMEM : 0;
}

/* Checks every write's device (unknown/revoked writes are refused, not failed). */
static int check_devices(PGconn *c, struct ingest_write *const *w, size_t n, char *err,
                         size_t err_len)
{
    struct ferry_buf arr = FERRY_BUF_INIT;
    int rc = 0;
    if (ferry_buf_append_u8(&arr, '{') != 0)
        return INGEST_STORE_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (w[i]->result == 0 &&
            ferry_buf_printf(&arr, "%s%s", arr.len > 1 ? "," : "", w[i]->device_id) != 0)
            rc = INGEST_STORE_ENOMEM;
    if (rc != 0 || ferry_buf_append(&arr, "}", 2) != 0) {
        ferry_buf_free(&arr);
        return INGEST_STORE_ENOMEM;
    }
    const char *vals[1] = {(const char *)arr.data};
    PGresult *r =
        exec_params(c, "SELECT id, revoked FROM devices WHERE id = ANY($1::text[])", 1, vals);
    ferry_buf_free(&arr);
    if (!res_ok(r)) {
        set_err(err, err_len, "look up devices", c);
        PQclear(r);
        return INGEST_STORE_EIO;
    }
    int rows = PQntuples(r);
    for (size_t i = 0; i < n; i++) {
        if (w[i]->result != 0)
            continue;
        w[i]->result = INGEST_STORE_ENOTFOUND;
        for (int row = 0; row < rows; row++)
            if (strcmp(PQgetvalue(r, row, 0), w[i]->device_id) == 0)
                w[i]->result = PQgetvalue(r, row, 1)[0] == 't' ? INGEST_STORE_EREVOKED : 0;
    }
    PQclear(r);
    return 0;
}

/* One record of the group that is not stored yet: what COPY sends. */
struct pg_row {
    struct ingest_write *w;
    const struct ingest_rec *rec;
    size_t order; /* position in the group, so that the first copy of a repeat wins */
};

static int cmp_row(const void *a, const void *b)
{
    const struct pg_row *x = a, *y = b;
    int c = strcmp(x->w->device_id, y->w->device_id);
    if (c != 0)
        return c;
    if (x->rec->stream != y->rec->stream)
        return x->rec->stream < y->rec->stream ? -1 : 1;
    if (x->rec->seq != y->rec->seq)
        return x->rec->seq < y->rec->seq ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

struct pg_key {
    const char *device;
    uint8_t stream;
    uint64_t seq;
};

static int cmp_key(const void *a, const void *b)
{
    const struct pg_key *x = a, *y = b;
    int c = strcmp(x->device, y->device);
    if (c != 0)
        return c;
    if (x->stream != y->stream)
        return x->stream < y->stream ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Appends one array element (numbers and device ids need no quoting). */
static int arr_add(struct ferry_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int arr_add(struct ferry_buf *b, const char *fmt, ...)
{
    char tmp[96];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -1;
    if (b->len == 0 && ferry_buf_append_u8(b, '{') != 0)
        return -1;
    if (b->len > 1 && ferry_buf_append_u8(b, ',') != 0)
        return -1;
    return ferry_buf_append(b, tmp, (size_t)n);
}

static int arr_close(struct ferry_buf *b)
{
    if (b->len == 0 && ferry_buf_append_u8(b, '{') != 0)
        return -1;
    return ferry_buf_append(b, "}", 2); /* with the NUL */
}

/*
 * Writes the group's records: finds which of them are stored already (one query over the
 * (device, stream) seq ranges of the group), COPYs the others straight into `records` in key
 * order, and adds them to the device counters. A record another process stores between the
 * query and the COPY makes the COPY fail with a unique violation: the transaction is retried
 * (returns 1) and the next attempt finds it stored. So the unique key still decides, and the
 * common case costs a plain COPY, without a temporary table or ON CONFLICT per row.
 */
static int write_records(struct pg_conn *pc, struct ingest_write *const *w, size_t n, char *err,
                         size_t err_len)
{
    PGconn *c = pc->conn;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (w[i]->result == 0)
            total += w[i]->n_recs;
    if (total == 0)
        return 0;
    struct pg_row *rows = malloc(total * sizeof(*rows));
    struct pg_key *existing = NULL;
    size_t n_existing = 0;
    struct ferry_buf a_dev = FERRY_BUF_INIT, a_stream = FERRY_BUF_INIT, a_lo = FERRY_BUF_INIT,
                     a_hi = FERRY_BUF_INIT, b = FERRY_BUF_INIT, scratch = FERRY_BUF_INIT;
    PGresult *r = NULL;
    int rc = 0;
    if (rows == NULL)
        return INGEST_STORE_ENOMEM;
    size_t nr = 0;
    for (size_t i = 0; i < n; i++) {
        if (w[i]->result != 0)
            continue;
        for (size_t j = 0; j < w[i]->n_recs; j++, nr++)
            rows[nr] = (struct pg_row){w[i], &w[i]->recs[j], nr};
    }
    qsort(rows, nr, sizeof(*rows), cmp_row);
    /* The seq range of every (device, stream) in the group. */
    int e = 0;
    for (size_t i = 0; i < nr;) {
        size_t j = i;
        while (j + 1 < nr && strcmp(rows[j + 1].w->device_id, rows[i].w->device_id) == 0 &&
               rows[j + 1].rec->stream == rows[i].rec->stream)
            j++;
        e |= arr_add(&a_dev, "%s", rows[i].w->device_id);
        e |= arr_add(&a_stream, "%u", rows[i].rec->stream);
        e |= arr_add(&a_lo, "%" PRId64, (int64_t)rows[i].rec->seq);
        e |= arr_add(&a_hi, "%" PRId64, (int64_t)rows[j].rec->seq);
        i = j + 1;
    }
    e |= arr_close(&a_dev) | arr_close(&a_stream) | arr_close(&a_lo) | arr_close(&a_hi);
    if (e != 0) {
        rc = INGEST_STORE_ENOMEM;
        goto out;
    }
    const char *vals[4] = {(const char *)a_dev.data, (const char *)a_stream.data,
                           (const char *)a_lo.data, (const char *)a_hi.data};
    r = exec_params(c,
                    "SELECT r.device, r.stream, r.seq FROM unnest($1::text[], $2::smallint[],"
                    " $3::bigint[], $4::bigint[]) AS q(device, stream, lo, hi) JOIN records r"
                    " ON r.device = q.device COLLATE \"C\" AND r.stream = q.stream"
                    " AND r.seq BETWEEN q.lo AND q.hi",
                    4, vals);
    if (!res_ok(r)) {
        set_err(err, err_len, "look up stored records", c);
        rc = retryable(r) ? 1 : INGEST_STORE_EIO;
        goto out;
    }
    n_existing = (size_t)PQntuples(r);
    if (n_existing > 0) {
        existing = malloc(n_existing * sizeof(*existing));
        if (existing == NULL) {
            rc = INGEST_STORE_ENOMEM;
            goto out;
        }
        for (size_t k = 0; k < n_existing; k++) {
            int64_t st = 0, seq = 0;
            (void)ferry_parse_i64(PQgetvalue(r, (int)k, 1), 0, 255, &st);
            (void)ferry_parse_i64(PQgetvalue(r, (int)k, 2), 0, INT64_MAX, &seq);
            existing[k] = (struct pg_key){PQgetvalue(r, (int)k, 0), (uint8_t)st, (uint64_t)seq};
        }
        qsort(existing, n_existing, sizeof(*existing), cmp_key);
    }
    /* COPY what is new: not stored, and not earlier in this group. */
    PGresult *cr = PQexec(c, "COPY records (device, stream, seq, ts, ts_corrected, name, level,"
                             " message, tags, fields, ingested_ns, payload) FROM STDIN");
    if (PQresultStatus(cr) != PGRES_COPY_IN) {
        pg_note_failure(cr);
        set_err(err, err_len, "COPY records", c);
        PQclear(cr);
        rc = INGEST_STORE_EIO;
        goto out;
    }
    PQclear(cr);
    size_t k = 0;
    for (size_t i = 0; i < nr && rc == 0; i++) {
        struct pg_key key = {rows[i].w->device_id, rows[i].rec->stream, rows[i].rec->seq};
        if (i > 0 && strcmp(rows[i - 1].w->device_id, key.device) == 0 &&
            rows[i - 1].rec->stream == key.stream && rows[i - 1].rec->seq == key.seq)
            continue; /* the same record earlier in the group */
        while (k < n_existing && cmp_key(&existing[k], &key) < 0)
            k++;
        if (k < n_existing && cmp_key(&existing[k], &key) == 0)
            continue;
        rows[i].w->new_records++;
        rc = copy_row(&b, &scratch, key.device, rows[i].w->received_ns, rows[i].rec);
        if (rc == 0 && b.len >= 256 * 1024) {
            if (PQputCopyData(c, (const char *)b.data, (int)b.len) != 1)
                rc = INGEST_STORE_EIO;
            ferry_buf_reset(&b);
        }
    }
    if (rc == 0 && b.len > 0 && PQputCopyData(c, (const char *)b.data, (int)b.len) != 1)
        rc = INGEST_STORE_EIO;
    if (PQputCopyEnd(c, rc == 0 ? NULL : "ferry-ingest: copy aborted") != 1)
        rc = INGEST_STORE_EIO;
    PGresult *res = PQgetResult(c);
    if (rc == 0 && PQresultStatus(res) != PGRES_COMMAND_OK) {
        pg_note_failure(res);
        set_err(err, err_len, "COPY records data", c);
        /* 23505: another process stored one of these meanwhile; retry the whole group. */
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        rc =
            (state != NULL && strcmp(state, "23505") == 0) || retryable(res) ? 1 : INGEST_STORE_EIO;
    }
    PQclear(res);
    while ((res = PQgetResult(c)) != NULL)
        PQclear(res);
    if (rc != 0)
        goto out;
    /* Counters: per (device, stream), the records just stored and their highest seq. */
    ferry_buf_reset(&a_dev);
    ferry_buf_reset(&a_stream);
    ferry_buf_reset(&a_lo);
    ferry_buf_reset(&a_hi);
    e = 0;
    /* Per (device, stream): the records just stored (same rule as the COPY loop). */
    for (size_t i = 0; i < nr;) {
        size_t j = i, fresh = 0;
        uint64_t max = 0;
        size_t kk = 0;
        for (; j < nr && strcmp(rows[j].w->device_id, rows[i].w->device_id) == 0 &&
               rows[j].rec->stream == rows[i].rec->stream;
             j++) {
            struct pg_key key = {rows[j].w->device_id, rows[j].rec->stream, rows[j].rec->seq};
            if (j > i && rows[j - 1].rec->seq == key.seq)
                continue;
            while (kk < n_existing && cmp_key(&existing[kk], &key) < 0)
                kk++;
            if (kk < n_existing && cmp_key(&existing[kk], &key) == 0)
                continue;
            fresh++;
            max = key.seq;
        }
        if (fresh > 0) {
            e |= arr_add(&a_dev, "%s", rows[i].w->device_id);
            e |= arr_add(&a_stream, "%u", rows[i].rec->stream);
            e |= arr_add(&a_lo, "%zu", fresh);
            e |= arr_add(&a_hi, "%" PRId64, (int64_t)max);
        }
        i = j;
    }
    if (a_dev.len == 0)
        goto out; /* nothing new */
    e |= arr_close(&a_dev) | arr_close(&a_stream) | arr_close(&a_lo) | arr_close(&a_hi);
    if (e != 0) {
        rc = INGEST_STORE_ENOMEM;
        goto out;
    }
    PQclear(r);
    const char *uvals[4] = {(const char *)a_dev.data, (const char *)a_stream.data,
                            (const char *)a_lo.data, (const char *)a_hi.data};
    r = exec_params(
        c,
        "INSERT INTO device_streams AS d (device, stream, records, max_seq)"
        " SELECT * FROM unnest($1::text[], $2::smallint[], $3::bigint[], $4::bigint[])"
        " ON CONFLICT (device, stream) DO UPDATE SET records = d.records + EXCLUDED.records,"
        " max_seq = GREATEST(d.max_seq, EXCLUDED.max_seq)",
        4, uvals);
    if (!res_ok(r)) {
        set_err(err, err_len, "update counters", c);
        rc = retryable(r) ? 1 : INGEST_STORE_EIO;
    }
out:
    PQclear(r);
    free(rows);
    free(existing);
    ferry_buf_free(&a_dev);
    ferry_buf_free(&a_stream);
    ferry_buf_free(&a_lo);
    ferry_buf_free(&a_hi);
    ferry_buf_free(&b);
    ferry_buf_free(&scratch);
    return rc;
}

/* Merges a batch's update states into the device's (newest sequence wins per component) in C
 * with the rule of store_json.c, under the row lock of SELECT ... FOR UPDATE so that two
 * processes writing for the same device serialize. A merge that would not fit keeps the stored
 * value. Returns 0, 1 (retryable) or an error. */
static int write_updates(PGconn *c, const struct ingest_write *w, char *err, size_t err_len)
{
    char merged[INGEST_UPDATES_MAX + 1];
    const char *vals[2] = {w->device_id, NULL};
    PGresult *r = exec_params(c, "SELECT updates FROM devices WHERE id = $1 FOR UPDATE", 1, vals);
    if (!res_ok(r) || PQntuples(r) != 1) {
        int rc = res_ok(r) ? INGEST_STORE_ENOTFOUND : retryable(r) ? 1 : INGEST_STORE_EIO;
        set_err(err, err_len, "read updates", c);
        PQclear(r);
        return rc;
    }
    int mrc = ingest_updates_merge(PQgetvalue(r, 0, 0), w->updates_json, merged, sizeof(merged));
    PQclear(r);
    if (mrc != 0)
        return 0;
    vals[1] = merged;
    return exec_write(c, "UPDATE devices SET updates = $2 WHERE id = $1", 2, vals, "update updates",
                      err, err_len);
}

/* Replaces the device's inventory with the write's when it is newer by device time (or none is
 * stored): the condition is in the UPDATE, so a resent older batch, from this process or
 * another, never overwrites a newer inventory. Returns 0, 1 (retryable) or an error. */
static int write_inventory(PGconn *c, const struct ingest_write *w, char *err, size_t err_len)
{
    char ts[24];
    snprintf(ts, sizeof(ts), "%" PRId64, w->inventory_ts_ns);
    const char *vals[3] = {w->device_id, w->inventory_json, ts};
    return exec_write(c,
                      "UPDATE devices SET inventory = $2, inventory_ts_ns = $3::bigint"
                      " WHERE id = $1 AND (inventory_ts_ns IS NULL"
                      " OR inventory_ts_ns < $3::bigint)",
                      3, vals, "update inventory", err, err_len);
}

static int write_gaps_and_device(PGconn *c, struct ingest_write *w, char *err, size_t err_len)
{
    char s1[24], s2[24], s3[24], s4[24];
    if (w->n_gaps > 0) {
        /* The device's row lock serialises gap merges of one device across connections. */
        const char *vals[1] = {w->device_id};
        int rc = exec_write(c, "SELECT 1 FROM devices WHERE id = $1 FOR UPDATE", 1, vals,
                            "lock device for gaps", err, err_len);
        if (rc != 0)
            return rc;
    }
    for (size_t g = 0; g < w->n_gaps; g++) {
        const struct ingest_gap *gap = &w->gaps[g];
        snprintf(s1, sizeof(s1), "%u", gap->stream);
        snprintf(s2, sizeof(s2), "%" PRId64, (int64_t)gap->first_seq);
        snprintf(s3, sizeof(s3), "%" PRId64, (int64_t)gap->last_seq);
        const char *vals[4] = {w->device_id, s1, s2, s3};
        /* The device's gaps of a stream are a set of disjoint, non-adjacent ranges: the
         * report absorbs every entry it overlaps or touches (a device reports a loss again
         * when a response was lost, perhaps joined with the next range), and only sequences
         * no entry covered yet are counted. */
        PGresult *r = exec_params(
            c,
            "WITH old AS (DELETE FROM gaps WHERE device = $1 AND stream = $2"
            " AND first_seq <= $4::bigint + 1 AND last_seq >= $3::bigint - 1"
            " RETURNING first_seq, last_seq),"
            " m AS (SELECT LEAST($3::bigint, min(first_seq)) AS f,"
            " GREATEST($4::bigint, max(last_seq)) AS l,"
            " COALESCE(sum(last_seq - first_seq + 1), 0) AS covered, count(*) AS n FROM old),"
            " ins AS (INSERT INTO gaps SELECT $1, $2, f, l FROM m RETURNING 1),"
            " upd AS (INSERT INTO device_streams AS d (device, stream, gap_ranges, gap_records)"
            " SELECT $1, $2, 1 - n, l - f + 1 - covered FROM m"
            " ON CONFLICT (device, stream) DO UPDATE SET"
            " gap_ranges = d.gap_ranges + EXCLUDED.gap_ranges,"
            " gap_records = d.gap_records + EXCLUDED.gap_records RETURNING 1)"
            " SELECT l - f + 1 - covered FROM m, (SELECT count(*) FROM ins) AS i,"
            " (SELECT count(*) FROM upd) AS u",
            4, vals);
        if (!res_ok(r)) {
            set_err(err, err_len, "merge gap", c);
            int rc = retryable(r) ? 1 : INGEST_STORE_EIO;
            PQclear(r);
            return rc;
        }
        if (PQntuples(r) == 1 && strtoll(PQgetvalue(r, 0, 0), NULL, 10) > 0)
            w->new_gaps++;
        PQclear(r);
    }
    if (w->has_backlog) {
        for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
            snprintf(s1, sizeof(s1), "%d", st);
            snprintf(s2, sizeof(s2), "%" PRId64, (int64_t)w->backlog[st]);
            const char *vals[3] = {w->device_id, s1, s2};
            PGresult *r = exec_params(c,
                                      "INSERT INTO device_streams AS d (device, stream, backlog)"
                                      " VALUES ($1, $2, $3) ON CONFLICT (device, stream) DO UPDATE"
                                      " SET backlog = EXCLUDED.backlog",
                                      3, vals);
            bool ok = res_ok(r);
            int rc = ok ? 0 : retryable(r) ? 1 : INGEST_STORE_EIO;
            if (!ok)
                set_err(err, err_len, "update backlog", c);
            PQclear(r);
            if (rc != 0)
                return rc;
        }
    }
    if (w->updates_json != NULL) {
        int urc = write_updates(c, w, err, err_len);
        if (urc != 0)
            return urc;
    }
    if (w->inventory_json != NULL) {
        int irc = write_inventory(c, w, err, err_len);
        if (irc != 0)
            return irc;
    }
    snprintf(s1, sizeof(s1), "%" PRId64, w->received_ns);
    snprintf(s4, sizeof(s4), "%" PRId64, w->clock_offset_ns);
    char s5[16];
    snprintf(s5, sizeof(s5), "%d", INGEST_VERSIONS_MAX);
    const char *vals[5] = {w->device_id, s1, s4, w->versions_json, s5};
    return exec_write(c,
                      "UPDATE devices SET last_seen_ns = GREATEST(last_seen_ns, $2::bigint),"
                      " clock_offset_ns = $3, versions = CASE"
                      /* merged per key, the batch winning (store_json.c's rule), and
                       * kept whole when the merge would exceed INGEST_VERSIONS_MAX */
                      " WHEN $4::text IS NULL THEN versions"
                      " WHEN octet_length((versions::jsonb || $4::jsonb)::text) > $5::int"
                      " THEN versions ELSE (versions::jsonb || $4::jsonb)::text END"
                      " WHERE id = $1",
                      5, vals, "update device", err, err_len);
}

/* ---- Dashboard tables (DASH_ROWS_SQL; docs/dashboards.md) ---------------------------------- */

/* Adds the dashboard rows of the records this transaction stored. Runs inside the writing
 * transaction after the COPY, so the rows commit or roll back with their records. Returns 0,
 * 1 (retryable) or an error. */
static int dash_write(PGconn *c, char *err, size_t err_len)
{
    return exec_write(c, DASH_ROWS_SQL("WHERE txid = pg_current_xact_id()"), 0, NULL,
                      "write dashboard rows", err, err_len);
}

static int64_t dash_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* Runs ferry_dash_maintain() (partitions ahead, retention) on `c`, outside any transaction. */
static int dash_maintain(struct pg_store *s, PGconn *c, char *err, size_t err_len)
{
    char days[16], ahead[16];
    snprintf(days, sizeof(days), "%u", s->retention_days);
    snprintf(ahead, sizeof(ahead), "%d", DASH_AHEAD_DAYS);
    const char *vals[2] = {days, ahead};
    PGresult *r = exec_params(c, "SELECT ferry_dash_maintain($1, $2)", 2, vals);
    int rc = res_ok(r) ? 0 : INGEST_STORE_EIO;
    if (rc != 0)
        set_err(err, err_len, "maintain dashboard partitions", c);
    PQclear(r);
    return rc;
}

/* Maintains the partitions when an hour passed since this process last did (a failure is tried
 * again a minute later). Rows never wait for it: a day without its partition yet goes to the
 * DEFAULT partition and is moved when the day's partition is made. */
static void dash_maintain_if_due(struct pg_store *s, PGconn *c)
{
    int64_t now_ns = dash_now_ns();
    pthread_mutex_lock(&s->lock);
    bool due = s->dashboard && now_ns >= s->dash_next_maintain_ns;
    if (due)
        s->dash_next_maintain_ns = now_ns + DASH_MAINTAIN_EVERY_NS;
    pthread_mutex_unlock(&s->lock);
    if (!due)
        return;
    char err[256];
    if (dash_maintain(s, c, err, sizeof(err)) != 0) {
        pthread_mutex_lock(&s->lock);
        s->dash_next_maintain_ns = now_ns + 60 * INT64_C(1000000000);
        pthread_mutex_unlock(&s->lock);
    }
}

/* One attempt at the whole group; returns 0, 1 (retryable conflict) or an error. */
static int write_attempt(struct pg_conn *pc, bool dashboard, struct ingest_write *const *w,
                         size_t n, char *err, size_t err_len)
{
    PGconn *c = pc->conn;
    int rc = exec_cmd(c, "BEGIN", err, err_len);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (w[i]->result == INGEST_STORE_ENOTFOUND || w[i]->result == INGEST_STORE_EREVOKED)
            w[i]->result = 0; /* decided again below, inside this transaction */
    rc = check_devices(c, w, n, err, err_len);
    if (rc == 0)
        rc = write_records(pc, w, n, err, err_len);
    if (rc == 0 && dashboard)
        rc = dash_write(c, err, err_len);
    /* Device rows are updated in id order so that concurrent groups lock them alike. */
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (w[i]->result == 0)
            rc = write_gaps_and_device(c, w[i], err, err_len);
    if (rc != 0) {
        PQclear(PQexec(c, "ROLLBACK"));
        return rc;
    }
    PGresult *r = PQexec(c, "COMMIT");
    if (!res_ok(r)) {
        set_err(err, err_len, "COMMIT", c);
        rc = retryable(r) ? 1 : INGEST_STORE_EIO;
    }
    PQclear(r);
    return rc;
}

static int cmp_write_dev(const void *a, const void *b)
{
    const struct ingest_write *x = *(struct ingest_write *const *)a;
    const struct ingest_write *y = *(struct ingest_write *const *)b;
    return strcmp(x->device_id, y->device_id);
}

static int pg_write(struct ingest_store *base, struct ingest_write *const *writes, size_t n,
                    char *err, size_t err_len)
{
    struct pg_store *s = (struct pg_store *)base;
    struct ingest_write **sorted = malloc((n ? n : 1) * sizeof(*sorted));
    if (sorted == NULL)
        return INGEST_STORE_ENOMEM;
    memcpy(sorted, writes, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_write_dev);
    struct pg_conn *pc = conn_get(s);
    dash_maintain_if_due(s, pc->conn);
    int rc = 1;
    for (int attempt = 0; attempt < 5 && rc == 1; attempt++) {
        for (size_t i = 0; i < n; i++)
            sorted[i]->new_records = sorted[i]->new_gaps = 0;
        rc = write_attempt(pc, s->dashboard, sorted, n, err, err_len);
    }
    if (rc == 1)
        rc = INGEST_STORE_EIO;
    conn_put(s, pc);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (sorted[i]->result == 0)
            sorted[i]->dup_records = sorted[i]->n_recs >= sorted[i]->new_records
                                         ? sorted[i]->n_recs - sorted[i]->new_records
                                         : 0;
    free(sorted);
    return rc;
}

/* Columns of a device row, in the order every SELECT of devices uses. */
#define DEVICE_COLS                                                                                \
    "id, public_key, key_id, name, device_class, revoked, enrolled_ns, last_seen_ns,"              \
    " clock_offset_ns, versions, labels"

static void hex_field(PGresult *r, int row, int col, uint8_t *out, size_t n)
{
    const char *v = PQgetvalue(r, row, col); /* bytea in hex output: \x0123... */
    memset(out, 0, n);
    if (strncmp(v, "\\x", 2) == 0 && strlen(v + 2) == 2 * n)
        (void)ferry_hex_decode(v + 2, out, n);
}

static void device_from_row(PGresult *r, int row, struct ingest_device *d)
{
    memset(d, 0, sizeof(*d));
    ferry_strlcpy(d->id, PQgetvalue(r, row, 0), sizeof(d->id));
    hex_field(r, row, 1, d->public_key, 32);
    hex_field(r, row, 2, d->key_id, 8);
    ferry_strlcpy(d->name, PQgetvalue(r, row, 3), sizeof(d->name));
    ferry_strlcpy(d->device_class, PQgetvalue(r, row, 4), sizeof(d->device_class));
    d->revoked = PQgetvalue(r, row, 5)[0] == 't';
    (void)ferry_parse_i64(PQgetvalue(r, row, 6), INT64_MIN, INT64_MAX, &d->enrolled_ns);
    (void)ferry_parse_i64(PQgetvalue(r, row, 7), INT64_MIN, INT64_MAX, &d->last_seen_ns);
    (void)ferry_parse_i64(PQgetvalue(r, row, 8), INT64_MIN, INT64_MAX, &d->clock_offset_ns);
    ferry_strlcpy(d->versions, PQgetvalue(r, row, 9), sizeof(d->versions));
    if ((size_t)PQgetlength(r, row, 10) <= INGEST_LABELS_MAX)
        ferry_strlcpy(d->labels, PQgetvalue(r, row, 10), sizeof(d->labels));
    else
        memcpy(d->labels, "{}", 3); /* never a truncated JSON text */
}

/* Fills the per-stream counters of `d` from device_streams. */
static int load_streams(PGconn *c, struct ingest_device *d)
{
    const char *vals[1] = {d->id};
    PGresult *r = exec_params(c,
                              "SELECT stream, records, max_seq, gap_ranges, gap_records, backlog"
                              " FROM device_streams WHERE device = $1",
                              1, vals);
    if (!res_ok(r)) {
        PQclear(r);
        return INGEST_STORE_EIO;
    }
    for (int row = 0; row < PQntuples(r); row++) {
        int64_t st = -1;
        if (ferry_parse_i64(PQgetvalue(r, row, 0), 0, RECORD_STREAM_COUNT - 1, &st) != 0)
            continue;
        uint64_t *fields[5] = {&d->streams[st].records, &d->streams[st].max_seq,
                               &d->streams[st].gap_ranges, &d->streams[st].gap_records,
                               &d->streams[st].backlog};
        for (int f = 0; f < 5; f++)
            (void)ferry_parse_u64(PQgetvalue(r, row, f + 1), UINT64_MAX, fields[f]);
    }
    PQclear(r);
    return 0;
}

static int get_device_where(struct pg_store *s, const char *where, const char *param,
                            size_t param_len, int binary, struct ingest_device *out)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT " DEVICE_COLS " FROM devices WHERE %s", where);
    struct pg_conn *pc = conn_get(s);
    const char *vals[1] = {param};
    int lens[1] = {(int)param_len};
    int fmts[1] = {binary};
    PGresult *r = PQexecParams(pc->conn, sql, 1, NULL, vals, lens, fmts, 0);
    int rc = 0;
    if (!res_ok(r))
        rc = INGEST_STORE_EIO;
    else if (PQntuples(r) != 1)
        rc = INGEST_STORE_ENOTFOUND;
    else
        device_from_row(r, 0, out);
    PQclear(r);
    if (rc == 0)
        rc = load_streams(pc->conn, out);
    conn_put(s, pc);
    return rc;
}

static int pg_device_get(struct ingest_store *base, const char *id, struct ingest_device *out)
{
    return get_device_where((struct pg_store *)base, "id = $1", id, strlen(id), 0, out);
}

static int pg_device_updates(struct ingest_store *base, const char *id, char *out, size_t out_len)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    const char *vals[1] = {id};
    PGresult *r = exec_params(pc->conn, "SELECT updates FROM devices WHERE id = $1", 1, vals);
    int rc = 0;
    if (!res_ok(r))
        rc = INGEST_STORE_EIO;
    else if (PQntuples(r) != 1)
        rc = INGEST_STORE_ENOTFOUND;
    else if ((size_t)PQgetlength(r, 0, 0) >= out_len)
        rc = INGEST_STORE_EIO;
    else
        memcpy(out, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0) + 1);
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_device_inventory(struct ingest_store *base, const char *id, char *out, size_t out_len,
                               int64_t *ts_ns)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    const char *vals[1] = {id};
    PGresult *r = exec_params(
        pc->conn, "SELECT inventory, inventory_ts_ns FROM devices WHERE id = $1", 1, vals);
    int rc = 0;
    if (!res_ok(r))
        rc = INGEST_STORE_EIO;
    else if (PQntuples(r) != 1)
        rc = INGEST_STORE_ENOTFOUND;
    else if (PQgetisnull(r, 0, 0) || PQgetisnull(r, 0, 1))
        rc = 0; /* never sent one */
    else if ((size_t)PQgetlength(r, 0, 0) >= out_len)
        rc = INGEST_STORE_EIO;
    else {
        memcpy(out, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0) + 1);
        *ts_ns = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    }
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_device_by_key(struct ingest_store *base, const uint8_t key_id[8],
                            struct ingest_device *out)
{
    return get_device_where((struct pg_store *)base, "key_id = $1", (const char *)key_id, 8, 1,
                            out);
}

static int insert_device(PGconn *c, const struct ingest_device *d, char *err, size_t err_len)
{
    char pk[70] = "\\x", kid[20] = "\\x", enrolled[24];
    ferry_hex_encode(d->public_key, 32, pk + 2);
    ferry_hex_encode(d->key_id, 8, kid + 2);
    snprintf(enrolled, sizeof(enrolled), "%" PRId64, d->enrolled_ns);
    const char *vals[7] = {
        d->id, pk, kid, d->name, d->device_class, enrolled, d->labels[0] ? d->labels : "{}"};
    PGresult *r = exec_params(c,
                              "INSERT INTO devices (id, public_key, key_id, name, device_class,"
                              " enrolled_ns, labels) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                              7, vals);
    int rc = 0;
    if (!res_ok(r)) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        rc = state != NULL && strcmp(state, "23505") == 0 ? INGEST_STORE_EEXIST : INGEST_STORE_EIO;
        set_err(err, err_len, "insert device", c);
    }
    PQclear(r);
    return rc;
}

static int pg_device_add(struct ingest_store *base, const struct ingest_device *devs, size_t n,
                         char *err, size_t err_len)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    PGconn *c = pc->conn;
    int rc = exec_cmd(c, "BEGIN", err, err_len);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct ingest_device *dev = &devs[i];
        const char *vals[1] = {dev->id};
        PGresult *r = exec_params(c, "SELECT public_key FROM devices WHERE id = $1", 1, vals);
        if (!res_ok(r)) {
            set_err(err, err_len, "look up device", c);
            rc = INGEST_STORE_EIO;
        } else if (PQntuples(r) == 1) {
            uint8_t pk[32];
            hex_field(r, 0, 0, pk, 32);
            if (memcmp(pk, dev->public_key, 32) != 0) {
                snprintf(err, err_len, "device id %s is registered with another key", dev->id);
                rc = INGEST_STORE_EEXIST;
            }
        } else {
            rc = insert_device(c, dev, err, err_len);
            if (rc == INGEST_STORE_EEXIST)
                snprintf(err, err_len, "the key of device %s is already registered", dev->id);
        }
        PQclear(r);
    }
    if (rc == 0)
        rc = exec_cmd(c, "COMMIT", err, err_len);
    else
        PQclear(PQexec(c, "ROLLBACK"));
    conn_put(s, pc);
    return rc;
}

static int pg_device_revoke(struct ingest_store *base, const char *id)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    const char *vals[1] = {id};
    PGresult *r = exec_params(pc->conn, "UPDATE devices SET revoked = true WHERE id = $1", 1, vals);
    int rc = !res_ok(r)                         ? INGEST_STORE_EIO
             : strcmp(PQcmdTuples(r), "1") == 0 ? 0
                                                : INGEST_STORE_ENOTFOUND;
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_device_set_labels(struct ingest_store *base, const char *id, const char *labels_json)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    const char *vals[2] = {id, labels_json};
    PGresult *r = exec_params(pc->conn, "UPDATE devices SET labels = $2 WHERE id = $1", 2, vals);
    int rc = !res_ok(r)                         ? INGEST_STORE_EIO
             : strcmp(PQcmdTuples(r), "1") == 0 ? 0
                                                : INGEST_STORE_ENOTFOUND;
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_device_list(struct ingest_store *base, ingest_device_cb cb, void *arg)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    PGresult *r = PQexec(pc->conn, "SELECT " DEVICE_COLS " FROM devices ORDER BY id");
    int rc = 0;
    if (!res_ok(r)) {
        rc = INGEST_STORE_EIO;
        goto out;
    }
    for (int row = 0; row < PQntuples(r); row++) {
        struct ingest_device d;
        device_from_row(r, row, &d);
        if ((rc = load_streams(pc->conn, &d)) != 0)
            goto out;
        if (cb(&d, arg) != 0)
            break;
    }
out:
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_token_add(struct ingest_store *base, const char *token, bool one_time,
                        int64_t expires_ns, uint64_t max_uses, const char *labels_json)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    char exp[24], maxu[24];
    snprintf(exp, sizeof(exp), "%" PRId64, expires_ns);
    snprintf(maxu, sizeof(maxu), "%" PRIu64, max_uses);
    const char *vals[5] = {token, one_time ? "true" : "false", exp, maxu, labels_json};
    PGresult *r = exec_params(pc->conn,
                              "INSERT INTO tokens (token, one_time, expires_ns, max_uses, labels)"
                              " VALUES ($1, $2, $3, $4, $5)",
                              5, vals);
    int rc = 0;
    if (!res_ok(r)) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        rc = state != NULL && strcmp(state, "23505") == 0 ? INGEST_STORE_EEXIST : INGEST_STORE_EIO;
    }
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int enroll_txn(PGconn *c, const char *token, const struct ingest_device *dev, int64_t now_ns,
                      struct ingest_device *out, char *err, size_t err_len)
{
    const char *tv[1] = {token};
    /* FOR UPDATE: two processes enrolling with one one-time token serialise here. */
    PGresult *r =
        exec_params(c,
                    "SELECT one_time, used, expires_ns, uses, max_uses, labels FROM tokens"
                    " WHERE token = $1 FOR UPDATE",
                    1, tv);
    if (!res_ok(r)) {
        set_err(err, err_len, "look up token", c);
        PQclear(r);
        return INGEST_STORE_EIO;
    }
    if (PQntuples(r) != 1) {
        snprintf(err, err_len, "token: unknown");
        PQclear(r);
        return INGEST_STORE_ETOKEN;
    }
    bool one_time = PQgetvalue(r, 0, 0)[0] == 't', used = PQgetvalue(r, 0, 1)[0] == 't';
    int64_t expires = 0, uses = 0, max_uses = 0;
    (void)ferry_parse_i64(PQgetvalue(r, 0, 2), INT64_MIN, INT64_MAX, &expires);
    (void)ferry_parse_i64(PQgetvalue(r, 0, 3), 0, INT64_MAX, &uses);
    (void)ferry_parse_i64(PQgetvalue(r, 0, 4), 0, INT64_MAX, &max_uses);
    char labels[INGEST_LABELS_MAX + 1] = "{}";
    if ((size_t)PQgetlength(r, 0, 5) <= INGEST_LABELS_MAX)
        ferry_strlcpy(labels, PQgetvalue(r, 0, 5), sizeof(labels));
    PQclear(r);
    if (expires != 0 && now_ns > expires) {
        snprintf(err, err_len, "token: expired");
        return INGEST_STORE_ETOKEN;
    }
    const char *kv[1] = {(const char *)dev->key_id};
    int klen[1] = {8}, kfmt[1] = {1};
    r = PQexecParams(c, "SELECT " DEVICE_COLS " FROM devices WHERE key_id = $1", 1, NULL, kv, klen,
                     kfmt, 0);
    if (!res_ok(r)) {
        set_err(err, err_len, "look up key", c);
        PQclear(r);
        return INGEST_STORE_EIO;
    }
    if (PQntuples(r) == 1) {
        device_from_row(r, 0, out);
        PQclear(r);
        if (out->revoked) {
            snprintf(err, err_len, "device %s is revoked", out->id);
            return INGEST_STORE_EREVOKED;
        }
        return 0;
    }
    PQclear(r);
    if (one_time && used) {
        snprintf(err, err_len, "token: already used");
        return INGEST_STORE_ETOKEN;
    }
    if (max_uses != 0 && uses >= max_uses) {
        snprintf(err, err_len, "token: used up (%lld keys enrolled)", (long long)uses);
        return INGEST_STORE_ETOKEN;
    }
    struct ingest_device nd = *dev;
    nd.enrolled_ns = now_ns;
    memcpy(nd.labels, labels, sizeof(nd.labels)); /* the token's labels */
    int rc = insert_device(c, &nd, err, err_len);
    if (rc == INGEST_STORE_EEXIST)
        snprintf(err, err_len, "device id %s is taken by another key", dev->id);
    if (rc != 0)
        return rc;
    /* Every new key counts a use, in the transaction that registers it (the row is locked). */
    r = exec_params(c, "UPDATE tokens SET used = true, uses = uses + 1 WHERE token = $1", 1, tv);
    rc = res_ok(r) ? 0 : INGEST_STORE_EIO;
    PQclear(r);
    if (rc != 0)
        return rc;
    *out = nd;
    return 0;
}

static int pg_enroll(struct ingest_store *base, const char *token, const struct ingest_device *dev,
                     int64_t now_ns, struct ingest_device *out, char *err, size_t err_len)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    int rc = exec_cmd(pc->conn, "BEGIN", err, err_len);
    if (rc == 0)
        rc = enroll_txn(pc->conn, token, dev, now_ns, out, err, err_len);
    if (rc == 0)
        rc = exec_cmd(pc->conn, "COMMIT", err, err_len);
    else
        PQclear(PQexec(pc->conn, "ROLLBACK"));
    conn_put(s, pc);
    return rc;
}

static int pg_export(struct ingest_store *base, const char *device_id, uint8_t stream,
                     uint64_t after_seq, uint64_t limit, ingest_export_cb cb, void *arg)
{
    struct pg_store *s = (struct pg_store *)base;
    char st[8], after[24], lim[24];
    snprintf(st, sizeof(st), "%u", stream);
    if (after_seq > INT64_MAX)
        return 0;
    snprintf(after, sizeof(after), "%" PRId64, (int64_t)after_seq);
    snprintf(lim, sizeof(lim), "%" PRId64, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    const char *vals[4] = {device_id, st, after, lim};
    struct pg_conn *pc = conn_get(s);
    int rc = 0;
    const char *dv[1] = {device_id};
    PGresult *r = exec_params(pc->conn, "SELECT 1 FROM devices WHERE id = $1", 1, dv);
    if (!res_ok(r) || PQntuples(r) != 1)
        rc = res_ok(r) ? INGEST_STORE_ENOTFOUND : INGEST_STORE_EIO;
    PQclear(r);
    if (rc != 0) {
        conn_put(s, pc);
        return rc;
    }
    r = exec_params(pc->conn,
                    "SELECT seq, ts, ts_corrected, name, level, message, tags, fields FROM records"
                    " WHERE device = $1 AND stream = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                    4, vals);
    if (!res_ok(r)) {
        rc = INGEST_STORE_EIO;
        goto out;
    }
    for (int row = 0; row < PQntuples(r); row++) {
        struct ingest_row rec;
        memset(&rec, 0, sizeof(rec));
        int64_t v = 0;
        rec.stream = stream;
        (void)ferry_parse_i64(PQgetvalue(r, row, 0), 0, INT64_MAX, &v);
        rec.seq = (uint64_t)v;
        (void)ferry_parse_i64(PQgetvalue(r, row, 1), INT64_MIN, INT64_MAX, &rec.ts_ns);
        (void)ferry_parse_i64(PQgetvalue(r, row, 2), INT64_MIN, INT64_MAX, &rec.ts_corrected_ns);
        (void)ferry_parse_i64(PQgetvalue(r, row, 4), 0, 255, &v);
        rec.level = (uint8_t)v;
        rec.name = PQgetvalue(r, row, 3);
        rec.name_len = (size_t)PQgetlength(r, row, 3);
        rec.message = PQgetvalue(r, row, 5);
        rec.message_len = (size_t)PQgetlength(r, row, 5);
        rec.tags_json = PQgetvalue(r, row, 6);
        rec.tags_json_len = (size_t)PQgetlength(r, row, 6);
        rec.fields_json = PQgetvalue(r, row, 7);
        rec.fields_json_len = (size_t)PQgetlength(r, row, 7);
        if (cb(&rec, arg) != 0)
            break;
    }
out:
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_gap_count(struct ingest_store *base, const char *device_id, uint8_t stream,
                        uint64_t *out)
{
    struct pg_store *s = (struct pg_store *)base;
    char st[8];
    snprintf(st, sizeof(st), "%u", stream);
    const char *vals[2] = {device_id, st};
    struct pg_conn *pc = conn_get(s);
    PGresult *r = exec_params(
        pc->conn, "SELECT count(*) FROM gaps WHERE device = $1 AND stream = $2", 2, vals);
    int rc = res_ok(r) && PQntuples(r) == 1 ? 0 : INGEST_STORE_EIO;
    *out = 0;
    if (rc == 0)
        (void)ferry_parse_u64(PQgetvalue(r, 0, 0), UINT64_MAX, out);
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

/* ---- API tokens and audit ------------------------------------------------------------------ */

#define API_TOKEN_COLS "id, name, role, hash, created_ns, expires_ns, revoked_ns"

static void api_token_from_row(PGresult *r, int row, struct ingest_api_token *t)
{
    memset(t, 0, sizeof(*t));
    ferry_strlcpy(t->id, PQgetvalue(r, row, 0), sizeof(t->id));
    ferry_strlcpy(t->name, PQgetvalue(r, row, 1), sizeof(t->name));
    t->role = (uint8_t)strtol(PQgetvalue(r, row, 2), NULL, 10);
    hex_field(r, row, 3, t->hash, 32);
    t->created_ns = strtoll(PQgetvalue(r, row, 4), NULL, 10);
    t->expires_ns = strtoll(PQgetvalue(r, row, 5), NULL, 10);
    t->revoked_ns = strtoll(PQgetvalue(r, row, 6), NULL, 10);
}

static int pg_api_token_add(struct ingest_store *base, const struct ingest_api_token *t)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    char role[8], hash[70] = "\\x", created[24], expires[24];
    snprintf(role, sizeof(role), "%u", t->role);
    ferry_hex_encode(t->hash, 32, hash + 2);
    snprintf(created, sizeof(created), "%" PRId64, t->created_ns);
    snprintf(expires, sizeof(expires), "%" PRId64, t->expires_ns);
    const char *vals[6] = {t->id, t->name, role, hash, created, expires};
    PGresult *r =
        exec_params(pc->conn,
                    "INSERT INTO api_tokens (id, name, role, hash, created_ns, expires_ns)"
                    " VALUES ($1, $2, $3, $4, $5, $6)",
                    6, vals);
    int rc = 0;
    if (!res_ok(r)) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        rc = state != NULL && strcmp(state, "23505") == 0 ? INGEST_STORE_EEXIST : INGEST_STORE_EIO;
    }
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_api_token_get(struct ingest_store *base, const char *id, struct ingest_api_token *out)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    const char *vals[1] = {id};
    PGresult *r =
        exec_params(pc->conn, "SELECT " API_TOKEN_COLS " FROM api_tokens WHERE id = $1", 1, vals);
    int rc = !res_ok(r) ? INGEST_STORE_EIO : PQntuples(r) == 1 ? 0 : INGEST_STORE_ENOTFOUND;
    if (rc == 0)
        api_token_from_row(r, 0, out);
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_api_token_revoke(struct ingest_store *base, const char *name_or_id, int64_t now_ns,
                               struct ingest_api_token *out)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, now_ns);
    const char *vals[2] = {name_or_id, now};
    PGresult *r = exec_params(pc->conn,
                              "UPDATE api_tokens SET revoked_ns = CASE WHEN revoked_ns = 0 THEN $2"
                              "::bigint ELSE revoked_ns END WHERE name = $1 OR id = $1"
                              " RETURNING " API_TOKEN_COLS,
                              2, vals);
    int rc = !res_ok(r) ? INGEST_STORE_EIO : PQntuples(r) >= 1 ? 0 : INGEST_STORE_ENOTFOUND;
    if (rc == 0)
        api_token_from_row(r, 0, out);
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_api_token_list(struct ingest_store *base, ingest_api_token_cb cb, void *arg)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    PGresult *r = PQexec(pc->conn, "SELECT " API_TOKEN_COLS " FROM api_tokens ORDER BY id");
    int rc = res_ok(r) ? 0 : INGEST_STORE_EIO;
    for (int row = 0; rc == 0 && row < PQntuples(r); row++) {
        struct ingest_api_token t;
        api_token_from_row(r, row, &t);
        if (cb(&t, arg) != 0)
            break;
    }
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_audit_append(struct ingest_store *base, struct ingest_audit_event *ev)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    char ts[24], status[16];
    snprintf(ts, sizeof(ts), "%" PRId64, ev->ts_ns);
    snprintf(status, sizeof(status), "%d", ev->status);
    const char *vals[6] = {ts, ev->actor, ev->action, ev->target, ev->source, status};
    PGresult *r = exec_params(pc->conn,
                              "INSERT INTO audit (ts_ns, actor, action, target, source, status)"
                              " VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
                              6, vals);
    int rc = res_ok(r) && PQntuples(r) == 1 ? 0 : INGEST_STORE_EIO;
    if (rc == 0)
        ev->seq = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_audit_list(struct ingest_store *base, uint64_t after_seq, uint64_t limit,
                         ingest_audit_cb cb, void *arg)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    char after[24], lim[24];
    snprintf(after, sizeof(after), "%" PRIu64, after_seq > INT64_MAX ? INT64_MAX : after_seq);
    snprintf(lim, sizeof(lim), "%" PRIu64, limit > INT64_MAX ? INT64_MAX : limit);
    const char *vals[2] = {after, lim};
    PGresult *r = exec_params(pc->conn,
                              "SELECT seq, ts_ns, actor, action, target, source, status FROM audit"
                              " WHERE seq > $1 ORDER BY seq LIMIT $2",
                              2, vals);
    int rc = res_ok(r) ? 0 : INGEST_STORE_EIO;
    for (int row = 0; rc == 0 && row < PQntuples(r); row++) {
        struct ingest_audit_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.seq = strtoull(PQgetvalue(r, row, 0), NULL, 10);
        ev.ts_ns = strtoll(PQgetvalue(r, row, 1), NULL, 10);
        ferry_strlcpy(ev.actor, PQgetvalue(r, row, 2), sizeof(ev.actor));
        ferry_strlcpy(ev.action, PQgetvalue(r, row, 3), sizeof(ev.action));
        ferry_strlcpy(ev.target, PQgetvalue(r, row, 4), sizeof(ev.target));
        ferry_strlcpy(ev.source, PQgetvalue(r, row, 5), sizeof(ev.source));
        ev.status = (int)strtol(PQgetvalue(r, row, 6), NULL, 10);
        if (cb(&ev, arg) != 0)
            break;
    }
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

/* ---- Commit order (store.h): rows below the xmin of a current snapshot, in txid order -------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes a bytea value in hex output form ("\x0a1b...") into `out`. */
static int bytea_decode(const char *v, size_t len, struct ferry_buf *out)
{
    ferry_buf_reset(out);
    if (len < 2 || v[0] != '\\' || v[1] != 'x' || len % 2 != 0)
        return INGEST_STORE_EIO;
    for (size_t i = 2; i < len; i += 2) {
        int hi = hexval(v[i]), lo = hexval(v[i + 1]);
        if (hi < 0 || lo < 0)
            return INGEST_STORE_EIO;
        if (ferry_buf_append_u8(out, (uint8_t)(hi << 4 | lo)) != 0)
            return INGEST_STORE_ENOMEM;
    }
    return 0;
}

static void cursor_params(const struct ingest_store_cursor *c, char txid[24], char st[8],
                          char seq[24])
{
    snprintf(txid, 24, "%" PRIu64, c->pos);
    snprintf(st, 8, "%u", c->stream);
    snprintf(seq, 24, "%" PRId64, c->seq > INT64_MAX ? INT64_MAX : (int64_t)c->seq);
}

static int pg_read_committed(struct ingest_store *base, const struct ingest_store_cursor *from,
                             size_t limit, ingest_committed_cb cb, void *arg)
{
    struct pg_store *s = (struct pg_store *)base;
    char txid[24], st[8], seq[24], lim[24];
    cursor_params(from, txid, st, seq);
    snprintf(lim, sizeof(lim), "%zu", limit > 100000 ? (size_t)100000 : limit);
    const char *vals[5] = {txid, from->device, st, seq, lim};
    struct ferry_buf payload = FERRY_BUF_INIT;
    struct pg_conn *pc = conn_get(s);
    /* Every transaction with an id below the snapshot's xmin has ended: the rows read here are
     * final, and no row can later appear before the last one read.
     *
     * The ORDER BY names the table's columns (records.txid). A bare "txid" there would name
     * the output column "txid::text" (PostgreSQL resolves ORDER BY names against the select
     * list first) and sort the ids as text, where "1000" < "999": a page that spans a power of
     * ten then returned the higher transaction first, the cursor moved past it, and the rest of
     * the lower transaction was never read. The WHERE clause compares the xid8 column. */
    PGresult *r = exec_params(
        pc->conn,
        "SELECT txid::text AS txid_text, device, stream, seq, ts_corrected, ingested_ns, payload"
        " FROM records WHERE txid < pg_snapshot_xmin(pg_current_snapshot())"
        " AND (txid, device, stream, seq) > ($1::xid8, $2::text, $3::smallint, $4::bigint)"
        " ORDER BY records.txid, records.device, records.stream, records.seq LIMIT $5",
        5, vals);
    int rc = res_ok(r) ? 0 : INGEST_STORE_EIO;
    struct ingest_store_cursor after = *from;
    for (int row = 0; rc == 0 && row < PQntuples(r); row++) {
        int64_t v = 0;
        struct ingest_committed rec;
        memset(&rec, 0, sizeof(rec));
        if (ferry_parse_u64(PQgetvalue(r, row, 0), UINT64_MAX, &after.pos) != 0 ||
            ferry_parse_i64(PQgetvalue(r, row, 2), 0, RECORD_STREAM_COUNT - 1, &v) != 0) {
            rc = INGEST_STORE_EIO;
            break;
        }
        rec.stream = after.stream = (uint8_t)v;
        (void)ferry_parse_i64(PQgetvalue(r, row, 3), 0, INT64_MAX, &v);
        rec.seq = after.seq = (uint64_t)v;
        (void)ferry_parse_i64(PQgetvalue(r, row, 4), INT64_MIN, INT64_MAX, &rec.ts_corrected_ns);
        (void)ferry_parse_i64(PQgetvalue(r, row, 5), INT64_MIN, INT64_MAX, &rec.committed_ns);
        if (ferry_strlcpy(after.device, PQgetvalue(r, row, 1), sizeof(after.device)) >=
            sizeof(after.device)) {
            rc = INGEST_STORE_EIO;
            break;
        }
        rec.device_id = after.device;
        if (!PQgetisnull(r, row, 6)) {
            rc = bytea_decode(PQgetvalue(r, row, 6), (size_t)PQgetlength(r, row, 6), &payload);
            if (rc != 0)
                break;
            rec.packed = payload.data;
            rec.packed_len = payload.len;
        }
        after.records++;
        if (cb(&rec, &after, arg) != 0)
            break;
    }
    PQclear(r);
    conn_put(s, pc);
    ferry_buf_free(&payload);
    return rc;
}

static int pg_cursor_get(struct ingest_store *base, const char *name,
                         struct ingest_store_cursor *out)
{
    struct pg_store *s = (struct pg_store *)base;
    const char *vals[1] = {name};
    struct pg_conn *pc = conn_get(s);
    PGresult *r = exec_params(pc->conn,
                              "SELECT records, txid::text, device, stream, seq FROM forward_cursors"
                              " WHERE name = $1",
                              1, vals);
    int rc = res_ok(r) ? (PQntuples(r) == 1 ? 0 : INGEST_STORE_ENOTFOUND) : INGEST_STORE_EIO;
    if (rc == 0) {
        int64_t st = 0, seq = 0;
        if (ferry_parse_u64(PQgetvalue(r, 0, 0), UINT64_MAX, &out->records) != 0 ||
            ferry_parse_u64(PQgetvalue(r, 0, 1), UINT64_MAX, &out->pos) != 0 ||
            ferry_strlcpy(out->device, PQgetvalue(r, 0, 2), sizeof(out->device)) >=
                sizeof(out->device) ||
            ferry_parse_i64(PQgetvalue(r, 0, 3), 0, 255, &st) != 0 ||
            ferry_parse_i64(PQgetvalue(r, 0, 4), 0, INT64_MAX, &seq) != 0)
            rc = INGEST_STORE_EIO;
        out->stream = (uint8_t)st;
        out->seq = (uint64_t)seq;
    }
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_cursor_set(struct ingest_store *base, const char *name,
                         const struct ingest_store_cursor *c)
{
    struct pg_store *s = (struct pg_store *)base;
    char records[24], txid[24], st[8], seq[24];
    snprintf(records, sizeof(records), "%" PRId64,
             c->records > INT64_MAX ? INT64_MAX : (int64_t)c->records);
    cursor_params(c, txid, st, seq);
    const char *vals[6] = {name, records, txid, c->device, st, seq};
    struct pg_conn *pc = conn_get(s);
    PGresult *r =
        exec_params(pc->conn,
                    "INSERT INTO forward_cursors (name, records, txid, device, stream, seq)"
                    " VALUES ($1, $2, $3::xid8, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET"
                    " records = EXCLUDED.records, txid = EXCLUDED.txid, device = EXCLUDED.device,"
                    " stream = EXCLUDED.stream, seq = EXCLUDED.seq",
                    6, vals);
    int rc = res_ok(r) ? 0 : INGEST_STORE_EIO;
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_commit_lag(struct ingest_store *base, const struct ingest_store_cursor *c,
                         uint64_t *records, int64_t *next_committed_ns)
{
    struct pg_store *s = (struct pg_store *)base;
    char txid[24], st[8], seq[24];
    cursor_params(c, txid, st, seq);
    const char *vals[4] = {txid, c->device, st, seq};
    struct pg_conn *pc = conn_get(s);
    PGresult *r = PQexec(pc->conn, "SELECT coalesce(sum(records), 0) FROM device_streams");
    uint64_t total = 0;
    int rc = res_ok(r) && PQntuples(r) == 1 &&
                     ferry_parse_u64(PQgetvalue(r, 0, 0), UINT64_MAX, &total) == 0
                 ? 0
                 : INGEST_STORE_EIO;
    PQclear(r);
    if (rc == 0 && total > c->records) {
        *records = total - c->records;
        r = exec_params(pc->conn,
                        "SELECT ingested_ns FROM records WHERE (txid, device, stream, seq) >"
                        " ($1::xid8, $2::text, $3::smallint, $4::bigint)"
                        " ORDER BY txid, device, stream, seq LIMIT 1",
                        4, vals);
        if (!res_ok(r))
            rc = INGEST_STORE_EIO;
        else if (PQntuples(r) == 1)
            (void)ferry_parse_i64(PQgetvalue(r, 0, 0), INT64_MIN, INT64_MAX, next_committed_ns);
        PQclear(r);
    }
    conn_put(s, pc);
    return rc;
}

/* ---- The key/value table and leases ------------------------------------------------------- */

static int pg_kv_get(struct ingest_store *base, const char *key, struct ferry_buf *out)
{
    struct pg_store *s = (struct pg_store *)base;
    const char *vals[1] = {key};
    struct pg_conn *pc = conn_get(s);
    PGresult *r = PQexecParams(pc->conn, "SELECT value FROM ingest_kv WHERE key = $1", 1, NULL,
                               vals, NULL, NULL, 1);
    int rc = res_ok(r) ? (PQntuples(r) == 1 ? 0 : INGEST_STORE_ENOTFOUND) : INGEST_STORE_EIO;
    if (rc == 0 && ferry_buf_append(out, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0)) != 0)
        rc = INGEST_STORE_ENOMEM;
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int pg_kv_scan(struct ingest_store *base, const char *prefix, size_t limit, ingest_kv_cb cb,
                      void *arg)
{
    struct pg_store *s = (struct pg_store *)base;
    char lim[24];
    snprintf(lim, sizeof(lim), "%zu", limit > 0 ? limit : (size_t)INT64_MAX);
    /* A prefix range instead of LIKE: the prefix may hold '%' or '_'. */
    const char *vals[2] = {prefix, lim};
    struct pg_conn *pc = conn_get(s);
    PGresult *r = PQexecParams(pc->conn,
                               "SELECT key, value FROM ingest_kv WHERE key >= $1 AND"
                               " left(key, length($1)) = $1 ORDER BY key LIMIT $2::bigint",
                               2, NULL, vals, NULL, NULL, 1);
    int rc = res_ok(r) ? 0 : INGEST_STORE_EIO;
    char key[INGEST_KV_KEY_MAX + 1];
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        int klen = PQgetlength(r, i, 0);
        if (klen <= 0 || klen > INGEST_KV_KEY_MAX)
            continue;
        memcpy(key, PQgetvalue(r, i, 0), (size_t)klen);
        key[klen] = '\0';
        if (cb(key, PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1), arg) != 0)
            break;
    }
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static int kv_apply_txn(PGconn *c, const struct ingest_kv_op *ops, size_t n,
                        const char *cursor_name, const struct ingest_store_cursor *cursor)
{
    for (size_t i = 0; i < n; i++) {
        const char *vals[2] = {ops[i].key, ops[i].value};
        int lens[2] = {0, (int)ops[i].len};
        int fmts[2] = {0, 1};
        PGresult *r =
            ops[i].del
                ? PQexecParams(c, "DELETE FROM ingest_kv WHERE key = $1", 1, NULL, vals, NULL, NULL,
                               0)
                : PQexecParams(c,
                               "INSERT INTO ingest_kv (key, value) VALUES ($1, $2) ON CONFLICT"
                               " (key) DO UPDATE SET value = EXCLUDED.value",
                               2, NULL, vals, lens, fmts, 0);
        bool ok = res_ok(r);
        PQclear(r);
        if (!ok)
            return INGEST_STORE_EIO;
    }
    if (cursor_name == NULL)
        return 0;
    char records[24], txid[24], st[8], seq[24];
    snprintf(records, sizeof(records), "%" PRId64,
             cursor->records > INT64_MAX ? INT64_MAX : (int64_t)cursor->records);
    cursor_params(cursor, txid, st, seq);
    const char *vals[6] = {cursor_name, records, txid, cursor->device, st, seq};
    PGresult *r =
        exec_params(c,
                    "INSERT INTO forward_cursors (name, records, txid, device, stream, seq)"
                    " VALUES ($1, $2, $3::xid8, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET"
                    " records = EXCLUDED.records, txid = EXCLUDED.txid, device = EXCLUDED.device,"
                    " stream = EXCLUDED.stream, seq = EXCLUDED.seq",
                    6, vals);
    bool ok = res_ok(r);
    PQclear(r);
    return ok ? 0 : INGEST_STORE_EIO;
}

static int pg_kv_apply(struct ingest_store *base, const struct ingest_kv_op *ops, size_t n,
                       const char *cursor_name, const struct ingest_store_cursor *cursor)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *pc = conn_get(s);
    char err[256];
    int rc = exec_cmd(pc->conn, "BEGIN", err, sizeof(err));
    if (rc == 0)
        rc = kv_apply_txn(pc->conn, ops, n, cursor_name, cursor);
    if (rc == 0)
        rc = exec_cmd(pc->conn, "COMMIT", err, sizeof(err));
    else
        (void)exec_cmd(pc->conn, "ROLLBACK", err, sizeof(err));
    conn_put(s, pc);
    return rc;
}

static int pg_lease(struct ingest_store *base, const char *name, const char *owner, int64_t now_ns,
                    int64_t ttl_ns)
{
    struct pg_store *s = (struct pg_store *)base;
    char now[24], until[24];
    snprintf(now, sizeof(now), "%" PRId64, now_ns);
    snprintf(until, sizeof(until), "%" PRId64, now_ns + ttl_ns);
    const char *vals[4] = {name, owner, until, now};
    struct pg_conn *pc = conn_get(s);
    /* One statement, so two processes racing for an expired lease cannot both win: the row
     * lock of ON CONFLICT serializes them and the loser's WHERE no longer holds. */
    PGresult *r = exec_params(pc->conn,
                              "INSERT INTO ingest_leases (name, owner, expires_ns)"
                              " VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET"
                              " owner = EXCLUDED.owner, expires_ns = EXCLUDED.expires_ns"
                              " WHERE ingest_leases.owner = EXCLUDED.owner"
                              " OR ingest_leases.expires_ns < $4::bigint RETURNING owner",
                              4, vals);
    int rc = res_ok(r) ? (PQntuples(r) == 1 ? 0 : INGEST_STORE_EHELD) : INGEST_STORE_EIO;
    PQclear(r);
    conn_put(s, pc);
    return rc;
}

static const struct ingest_store_ops pg_ops = {
    .close = pg_close,
    .write = pg_write,
    .device_add = pg_device_add,
    .device_get = pg_device_get,
    .device_by_key = pg_device_by_key,
    .device_revoke = pg_device_revoke,
    .device_set_labels = pg_device_set_labels,
    .device_list = pg_device_list,
    .token_add = pg_token_add,
    .enroll = pg_enroll,
    .export_records = pg_export,
    .gap_count = pg_gap_count,
    .device_updates = pg_device_updates,
    .device_inventory = pg_device_inventory,
    .api_token_add = pg_api_token_add,
    .api_token_get = pg_api_token_get,
    .api_token_revoke = pg_api_token_revoke,
    .api_token_list = pg_api_token_list,
    .audit_append = pg_audit_append,
    .audit_list = pg_audit_list,
    .read_committed = pg_read_committed,
    .cursor_get = pg_cursor_get,
    .cursor_set = pg_cursor_set,
    .commit_lag = pg_commit_lag,
    .kv_get = pg_kv_get,
    .kv_scan = pg_kv_scan,
    .kv_apply = pg_kv_apply,
    .lease = pg_lease,
};

int ingest_store_pg_open(const struct ingest_store_config *cfg, struct ingest_store **out,
                         char *err, size_t err_len)
{
    struct pg_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return INGEST_STORE_ENOMEM;
    s->base.ops = &pg_ops;
    s->base.kind = INGEST_STORE_PG;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->n_conns = cfg->pg_connections ? cfg->pg_connections : 4;
    s->conns = calloc(s->n_conns, sizeof(*s->conns));
    s->busy = calloc(s->n_conns, sizeof(*s->busy));
    s->conninfo = strdup(cfg->pg_conninfo != NULL ? cfg->pg_conninfo : "");
    int rc = INGEST_STORE_ENOMEM;
    if (s->conns == NULL || s->busy == NULL || s->conninfo == NULL)
        goto fail;
    for (size_t i = 0; i < s->n_conns; i++) {
        s->conns[i].conn = PQconnectdb(s->conninfo);
        if (s->conns[i].conn == NULL || PQstatus(s->conns[i].conn) != CONNECTION_OK) {
            set_err(err, err_len, "connect", s->conns[i].conn);
            rc = INGEST_STORE_EIO;
            goto fail;
        }
        PQclear(PQexec(s->conns[i].conn, "SET client_min_messages = warning"));
    }
    rc = migrate(s->conns[0].conn, err, err_len);
    if (rc != 0)
        goto fail;
    s->dashboard = cfg->pg_dashboard_tables;
    s->retention_days = cfg->pg_retention_days;
    if (s->dashboard) {
        /* Not fatal: without today's partition rows go to DEFAULT (moved later), and a failure
         * here (a lock conflict with another process's maintenance) is retried in a minute. */
        char merr[256];
        bool done = dash_maintain(s, s->conns[0].conn, merr, sizeof(merr)) == 0;
        s->dash_next_maintain_ns =
            dash_now_ns() + (done ? DASH_MAINTAIN_EVERY_NS : 60 * INT64_C(1000000000));
    }
    *out = &s->base;
    return 0;
fail:
    pg_close(&s->base);
    return rc;
}
