/*
 * test_alerts.c - the alert rules (pure transitions), their configuration, and the engine against
 * a real store (LMDB, or PostgreSQL through with-postgres.sh) with notifications delivered over
 * HTTP to a webhook sink in this process (a test HTTP server standing in for a person's webhook
 * endpoint; Alertmanager itself is tested with the real server in tests/integration/ingest/).
 *
 *   test_alerts lmdb|pg
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/alerts/alerts.h"
#include "cloud-ingest/store.h"
#include "common/buf.h"
#include "common/util.h"
#include "transport/record.h"

#define SEC 1000000000LL
#define MIN (60 * SEC)

static struct ingest_store_config g_cfg;
static char g_dir[256];

/* ---- Rules ---------------------------------------------------------------------------------- */

static struct alerts_rule threshold_rule(void)
{
    struct alerts_rule r;
    memset(&r, 0, sizeof(r));
    ferry_strlcpy(r.name, "gpu_hot", sizeof(r.name));
    r.kind = ALERTS_RULE_THRESHOLD;
    r.op = ALERTS_OP_GT;
    r.value = 85;
    r.for_ns = 5 * MIN;
    return r;
}

static void test_threshold_fires_after_duration_on_device_time(void **state)
{
    (void)state;
    struct alerts_rule r = threshold_rule();
    struct alerts_state st = {0};
    int64_t t0 = 1000 * MIN, arrived = t0 + 6 * MIN;
    for (int i = 0; i < 5; i++) /* 0..4 min: pending */
        assert_int_equal(alerts_threshold_apply(&r, &st, 90, t0 + i * MIN, arrived, MIN),
                         ALERTS_NONE);
    assert_true(st.pending);
    assert_int_equal(alerts_threshold_apply(&r, &st, 91, t0 + 5 * MIN, arrived, MIN), ALERTS_FIRED);
    assert_true(st.firing);
    assert_int_equal(st.starts_ns, t0);
    assert_false(st.late); /* arrived 1 min after the sample that completed the window */
    assert_int_equal(alerts_threshold_apply(&r, &st, 95, t0 + 6 * MIN, arrived, MIN), ALERTS_NONE);
    assert_int_equal(alerts_threshold_apply(&r, &st, 80, t0 + 7 * MIN, arrived, MIN),
                     ALERTS_RESOLVED);
    assert_int_equal(st.ends_ns, t0 + 7 * MIN);
    assert_false(st.firing);
}

static void test_threshold_late_data_is_marked_late(void **state)
{
    (void)state;
    struct alerts_rule r = threshold_rule();
    struct alerts_state st = {0};
    int64_t t0 = 1000 * MIN, arrived = t0 + 3 * 60 * MIN; /* a backlog delivered 3 h later */
    for (int i = 0; i <= 5; i++)
        (void)alerts_threshold_apply(&r, &st, 90, t0 + i * MIN, arrived, MIN);
    assert_true(st.firing);
    assert_true(st.late);
    assert_int_equal(st.starts_ns, t0);
    assert_int_equal(st.arrived_ns, arrived);
}

static void test_threshold_ignores_older_samples_and_restarts_after_silence(void **state)
{
    (void)state;
    struct alerts_rule r = threshold_rule();
    struct alerts_state st = {0};
    int64_t t0 = 1000 * MIN;
    (void)alerts_threshold_apply(&r, &st, 90, t0, t0, MIN);
    (void)alerts_threshold_apply(&r, &st, 90, t0 + 4 * MIN, t0, MIN);
    /* An older sample (out of order) changes nothing. */
    assert_int_equal(alerts_threshold_apply(&r, &st, 10, t0 + 2 * MIN, t0, MIN), ALERTS_NONE);
    assert_true(st.pending);
    /* Silent for 20 minutes: the window starts again at the next breach. */
    assert_int_equal(alerts_threshold_apply(&r, &st, 90, t0 + 24 * MIN, t0, MIN), ALERTS_NONE);
    assert_int_equal(st.pending_since_ns, t0 + 24 * MIN);
    assert_int_equal(alerts_threshold_apply(&r, &st, 90, t0 + 28 * MIN, t0, MIN), ALERTS_NONE);
    assert_int_equal(alerts_threshold_apply(&r, &st, 90, t0 + 29 * MIN, t0, MIN), ALERTS_FIRED);
    assert_int_equal(st.starts_ns, t0 + 24 * MIN);
}

static void test_offline_fires_suppresses_flapping_and_resolves(void **state)
{
    (void)state;
    struct alerts_rule r;
    memset(&r, 0, sizeof(r));
    r.kind = ALERTS_RULE_OFFLINE;
    r.for_ns = 10 * MIN;
    r.resolve_after_ns = 2 * MIN;
    struct alerts_state st = {0};
    int64_t seen = 1000 * MIN;
    assert_int_equal(alerts_offline_check(&r, &st, 0, seen), ALERTS_NONE); /* never seen */
    assert_int_equal(alerts_offline_check(&r, &st, seen, seen + 5 * MIN), ALERTS_NONE);
    assert_int_equal(alerts_offline_check(&r, &st, seen, seen + 11 * MIN), ALERTS_FIRED);
    assert_int_equal(st.starts_ns, seen);
    /* Back at +20 min, silent again from +21 (flapping): no resolution, no new alert. */
    assert_int_equal(alerts_offline_check(&r, &st, seen + 20 * MIN, seen + 20 * MIN + SEC),
                     ALERTS_NONE);
    assert_true(st.recovering);
    assert_int_equal(alerts_offline_check(&r, &st, seen + 20 * MIN, seen + 31 * MIN), ALERTS_NONE);
    assert_false(st.recovering);
    assert_true(st.firing);
    /* Back at +40 and reporting: resolved once it has been back for 2 minutes. */
    assert_int_equal(alerts_offline_check(&r, &st, seen + 40 * MIN, seen + 40 * MIN), ALERTS_NONE);
    assert_int_equal(alerts_offline_check(&r, &st, seen + 41 * MIN, seen + 41 * MIN), ALERTS_NONE);
    assert_int_equal(alerts_offline_check(&r, &st, seen + 42 * MIN, seen + 42 * MIN),
                     ALERTS_RESOLVED);
    assert_int_equal(st.ends_ns, seen + 40 * MIN);
    assert_true(st.value > 40 * 60 - 1 && st.value < 40 * 60 + 1); /* the outage, seconds */
}

static void test_update_rule(void **state)
{
    (void)state;
    struct alerts_state st = {0};
    assert_int_equal(alerts_update_apply(&st, "downloading", 10 * SEC, 10 * SEC, MIN), ALERTS_NONE);
    assert_int_equal(alerts_update_apply(&st, "rolled_back", 20 * SEC, 20 * SEC, MIN),
                     ALERTS_FIRED);
    assert_int_equal(alerts_update_apply(&st, "failed", 30 * SEC, 30 * SEC, MIN), ALERTS_NONE);
    assert_int_equal(alerts_update_apply(&st, "committed", 15 * SEC, 40 * SEC, MIN),
                     ALERTS_NONE); /* older than what was applied */
    assert_int_equal(alerts_update_apply(&st, "committed", 50 * SEC, 50 * SEC, MIN),
                     ALERTS_RESOLVED);
}

static void test_update_stuck(void **state)
{
    (void)state;
    struct alerts_rule r = {.kind = ALERTS_RULE_UPDATE, .for_ns = 30 * MIN};
    struct alerts_state st = {0};
    char reason[64] = "";
    int64_t t = 100 * MIN;
    assert_int_equal(
        alerts_update_stuck_check(&r, &st, reason, sizeof(reason), "downloading", t, t + 29 * MIN),
        ALERTS_NONE);
    assert_int_equal(
        alerts_update_stuck_check(&r, &st, reason, sizeof(reason), "downloading", t, t + 31 * MIN),
        ALERTS_FIRED);
    assert_string_equal(reason, "stuck in downloading");
    assert_int_equal(st.starts_ns, t);
    assert_int_equal(
        alerts_update_stuck_check(&r, &st, reason, sizeof(reason), "downloading", t, t + 60 * MIN),
        ALERTS_NONE); /* once */
    /* It moved on: resolved at the time of the new state. */
    assert_int_equal(alerts_update_stuck_check(&r, &st, reason, sizeof(reason), "installed",
                                               t + 61 * MIN, t + 62 * MIN),
                     ALERTS_RESOLVED);
    assert_int_equal(st.ends_ns, t + 61 * MIN);
    /* Final states are never stuck. */
    reason[0] = '\0';
    assert_int_equal(
        alerts_update_stuck_check(&r, &st, reason, sizeof(reason), "committed", t, t + 600 * MIN),
        ALERTS_NONE);
    /* Stuck, then failed: stays firing, now as a failure. */
    memset(&st, 0, sizeof(st));
    assert_int_equal(
        alerts_update_stuck_check(&r, &st, reason, sizeof(reason), "installed", t, t + 40 * MIN),
        ALERTS_FIRED);
    assert_int_equal(alerts_update_stuck_check(&r, &st, reason, sizeof(reason), "rolled_back",
                                               t + 41 * MIN, t + 42 * MIN),
                     ALERTS_NONE);
    assert_true(st.firing);
    assert_string_equal(reason, "rolled_back");
}

static void test_absent_rule(void **state)
{
    (void)state;
    struct alerts_rule r = {.kind = ALERTS_RULE_ABSENT, .for_ns = 10 * MIN};
    struct alerts_state st = {0};
    int64_t t = 1000 * MIN;
    /* Never seen: nothing to miss. */
    assert_int_equal(alerts_absent_check(&r, &st, t, t, MIN), ALERTS_NONE);
    assert_int_equal(alerts_absent_sample(&st, t), ALERTS_NONE);
    assert_int_equal(alerts_absent_sample(&st, t - MIN), ALERTS_NONE); /* older: ignored */
    assert_int_equal(st.last_sample_ns, t);
    assert_int_equal(alerts_absent_check(&r, &st, t + 10 * MIN, t + 10 * MIN, MIN), ALERTS_NONE);
    /* The device's other metrics reached 11 minutes past the last sample, delivered at once. */
    assert_int_equal(alerts_absent_check(&r, &st, t + 11 * MIN, t + 11 * MIN, MIN), ALERTS_FIRED);
    assert_int_equal(st.starts_ns, t);
    assert_false(st.late);
    assert_int_equal(alerts_absent_check(&r, &st, t + 20 * MIN, t + 20 * MIN, MIN), ALERTS_NONE);
    assert_int_equal(alerts_absent_sample(&st, t + 30 * MIN), ALERTS_RESOLVED);
    assert_int_equal(st.ends_ns, t + 30 * MIN);
    assert_true(st.value == 30 * 60);
    /* The same hours delivered two hours later: late. */
    memset(&st, 0, sizeof(st));
    assert_int_equal(alerts_absent_sample(&st, t), ALERTS_NONE);
    assert_int_equal(alerts_absent_check(&r, &st, t + 15 * MIN, t + 120 * MIN, MIN), ALERTS_FIRED);
    assert_true(st.late);
}

static void test_gap_rule(void **state)
{
    (void)state;
    struct alerts_rule r = {.kind = ALERTS_RULE_GAP, .resolve_after_ns = 60 * MIN};
    struct alerts_state st = {0};
    int64_t t = 1000 * MIN;
    assert_int_equal(alerts_gap_check(&r, &st, 0, t), ALERTS_NONE);
    assert_int_equal(alerts_gap_check(&r, &st, 500, t + MIN), ALERTS_FIRED);
    assert_true(st.value == 500);
    assert_int_equal(alerts_gap_check(&r, &st, 700, t + 30 * MIN), ALERTS_NONE); /* still firing */
    assert_true(st.value == 700);
    assert_int_equal(alerts_gap_check(&r, &st, 700, t + 89 * MIN), ALERTS_NONE);
    assert_int_equal(alerts_gap_check(&r, &st, 700, t + 91 * MIN), ALERTS_RESOLVED);
    assert_int_equal(alerts_gap_check(&r, &st, 700, t + 200 * MIN), ALERTS_NONE); /* no new loss */
    /* A size condition: small losses are counted, not notified. */
    struct alerts_rule big = r;
    big.has_condition = true;
    big.op = ALERTS_OP_GE;
    big.value = 1000;
    memset(&st, 0, sizeof(st));
    assert_int_equal(alerts_gap_check(&big, &st, 10, t), ALERTS_NONE);
    assert_int_equal(st.seen, 10);
    assert_int_equal(alerts_gap_check(&big, &st, 2010, t + MIN), ALERTS_FIRED);
    assert_true(st.value == 2000);
}

static void test_backlog_rule(void **state)
{
    (void)state;
    struct alerts_rule size = {.kind = ALERTS_RULE_BACKLOG,
                               .for_ns = 10 * MIN,
                               .has_condition = true,
                               .op = ALERTS_OP_GT,
                               .value = 100000};
    struct alerts_state st = {0};
    int64_t t = 1000 * MIN;
    assert_int_equal(alerts_backlog_check(&size, &st, 200000, t), ALERTS_NONE);
    assert_true(st.pending);
    assert_int_equal(alerts_backlog_check(&size, &st, 50000, t + 5 * MIN), ALERTS_NONE);
    assert_false(st.pending); /* drained in between: starts again */
    assert_int_equal(alerts_backlog_check(&size, &st, 200000, t + 6 * MIN), ALERTS_NONE);
    assert_int_equal(alerts_backlog_check(&size, &st, 200000, t + 16 * MIN), ALERTS_FIRED);
    assert_int_equal(st.starts_ns, t + 6 * MIN);
    assert_int_equal(alerts_backlog_check(&size, &st, 90000, t + 17 * MIN), ALERTS_RESOLVED);

    struct alerts_rule grow = {.kind = ALERTS_RULE_BACKLOG, .for_ns = 10 * MIN, .growing = true};
    memset(&st, 0, sizeof(st));
    assert_int_equal(alerts_backlog_check(&grow, &st, 500, t), ALERTS_NONE); /* first look */
    assert_false(st.pending);
    assert_int_equal(alerts_backlog_check(&grow, &st, 500, t + MIN), ALERTS_NONE); /* flat */
    assert_false(st.pending);
    assert_int_equal(alerts_backlog_check(&grow, &st, 600, t + 2 * MIN), ALERTS_NONE);
    assert_true(st.pending);
    assert_int_equal(alerts_backlog_check(&grow, &st, 600, t + 7 * MIN), ALERTS_NONE);
    assert_int_equal(alerts_backlog_check(&grow, &st, 900, t + 12 * MIN), ALERTS_FIRED);
    assert_int_equal(st.starts_ns, t + 2 * MIN);
    assert_int_equal(alerts_backlog_check(&grow, &st, 800, t + 13 * MIN), ALERTS_RESOLVED);
}

/* ---- Configuration -------------------------------------------------------------------------- */

static int set(struct alerts_config *c, const char *section, const char *key, const char *value)
{
    char err[256];
    int rc = alerts_config_set(c, section, key, value, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "config: %s\n", err);
    return rc;
}

static void test_config(void **state)
{
    (void)state;
    struct alerts_config c;
    char err[256];
    alerts_config_defaults(&c);
    assert_int_equal(set(&c, "server", "listen", "x"), 1); /* not ours */
    assert_int_equal(set(&c, "receiver.ops", "type", "slack"), 0);
    assert_int_equal(set(&c, "receiver.ops", "url", "http://127.0.0.1:1/hook"), 0);
    assert_int_equal(set(&c, "alert.gpu_hot", "metric", "thermal.gpu"), 0);
    assert_int_equal(set(&c, "alert.gpu_hot", "condition", ">= 85.5"), 0);
    assert_int_equal(set(&c, "alert.gpu_hot", "for", "5m"), 0);
    assert_int_equal(set(&c, "alert.gpu_hot", "receivers", "ops"), 0);
    assert_int_equal(alerts_config_finish(&c, err, sizeof(err)), 0);
    assert_string_equal(c.rules[0].measurement, "thermal");
    assert_string_equal(c.rules[0].field, "gpu");
    assert_int_equal(c.rules[0].op, ALERTS_OP_GE);
    assert_true(c.rules[0].value == 85.5);
    assert_int_equal(c.rules[0].for_ns, 5 * MIN);
    assert_int_equal(c.rules[0].receivers, 1);

    assert_int_equal(set(&c, "alert.gpu_hot", "condition", "=> 85"), -1);
    assert_int_equal(set(&c, "alert.gpu_hot", "metric", "nodot"), -1);
    assert_int_equal(set(&c, "alert.gpu_hot", "kind", "sometimes"), -1);
    assert_int_equal(set(&c, "alert.bad name", "kind", "offline"), -1);
    assert_int_equal(set(&c, "receiver.ops", "url", "ftp://x"), -1);
    assert_int_equal(set(&c, "alerts", "late_after", "soon"), -1);

    assert_int_equal(set(&c, "alert.lost", "kind", "offline"), 0);
    assert_int_equal(set(&c, "alert.lost", "receivers", "ops, nobody"), 0);
    assert_int_equal(set(&c, "alert.lost", "for", "10m"), 0);
    assert_int_equal(alerts_config_finish(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "[alert.lost] receivers: no [receiver.nobody] section"));

    alerts_config_defaults(&c);
    assert_int_equal(set(&c, "alert.t", "metric", "a.b"), 0);
    assert_int_equal(set(&c, "alert.t", "for", "1m"), 0);
    assert_int_equal(alerts_config_finish(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "condition: missing"));

    /* The other kinds and command receivers. */
    alerts_config_defaults(&c);
    assert_int_equal(set(&c, "receiver.ticket", "type", "command"), 0);
    assert_int_equal(set(&c, "receiver.ticket", "command", "relative/path"), -1);
    assert_int_equal(set(&c, "receiver.ticket", "command", "/usr/bin/ticket --queue ops"), 0);
    assert_int_equal(set(&c, "alert.lost", "kind", "gap"), 0);
    assert_int_equal(set(&c, "alert.lost", "actions", "ticket"), 0);
    assert_int_equal(set(&c, "alert.quiet", "kind", "absent"), 0);
    assert_int_equal(set(&c, "alert.quiet", "for", "5m"), 0);
    assert_int_equal(set(&c, "alert.stuck", "kind", "update"), 0);
    assert_int_equal(set(&c, "alert.stuck", "for", "2h"), 0);
    assert_int_equal(set(&c, "alert.backlog", "kind", "backlog"), 0);
    assert_int_equal(set(&c, "alert.backlog", "for", "30m"), 0);
    assert_int_equal(set(&c, "alert.backlog", "growing", "maybe"), -1);
    assert_int_equal(alerts_config_finish(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "[alert.quiet] metric: missing (absent rules need one)"));
    assert_int_equal(set(&c, "alert.quiet", "metric", "inference.fps"), 0);
    assert_int_equal(alerts_config_finish(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "[alert.backlog] condition: missing"));
    assert_int_equal(set(&c, "alert.backlog", "growing", "true"), 0);
    assert_int_equal(alerts_config_finish(&c, err, sizeof(err)), 0);
    assert_int_equal(c.rules[0].resolve_after_ns, 60 * MIN); /* gap: 1h by default */
    assert_int_equal(c.rules[0].receivers, 1);
    assert_int_equal(c.receivers[0].kind, ALERTS_RECEIVER_COMMAND);
    alerts_config_defaults(&c);
    assert_int_equal(set(&c, "receiver.hook", "type", "command"), 0);
    assert_int_equal(alerts_config_finish(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "[receiver.hook] command: missing"));
}

/* ---- A webhook sink ------------------------------------------------------------------------- */

struct sink {
    struct event_base *base;
    struct evhttp *http;
    pthread_t thread;
    uint16_t port;
    pthread_mutex_t lock;
    json_t *received; /* array of bodies */
    int fail_next;    /* answer this many requests with 503 + Retry-After: 1 */
};

static void sink_cb(struct evhttp_request *req, void *arg)
{
    struct sink *s = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *body = malloc(n + 1);
    evbuffer_remove(in, body, n);
    body[n] = '\0';
    pthread_mutex_lock(&s->lock);
    int code = 200;
    if (s->fail_next > 0) {
        s->fail_next--;
        code = 503;
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    } else {
        json_error_t jerr;
        json_t *j = json_loads(body, 0, &jerr);
        assert_non_null(j); /* every payload is valid JSON */
        json_array_append_new(s->received, j);
    }
    pthread_mutex_unlock(&s->lock);
    free(body);
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Busy", NULL);
}

static void *sink_main(void *arg)
{
    struct sink *s = arg;
    event_base_dispatch(s->base);
    return NULL;
}

static void sink_start(struct sink *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->received = json_array();
    s->base = event_base_new();
    s->http = evhttp_new(s->base);
    struct evhttp_bound_socket *h = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
    assert_non_null(h);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    getsockname(evhttp_bound_socket_get_fd(h), (struct sockaddr *)&ss, &len);
    s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    evhttp_set_gencb(s->http, sink_cb, s);
    pthread_create(&s->thread, NULL, sink_main, s);
}

static void sink_stop(struct sink *s)
{
    event_base_loopbreak(s->base);
    pthread_join(s->thread, NULL);
    evhttp_free(s->http);
    event_base_free(s->base);
    json_decref(s->received);
}

static size_t sink_count(struct sink *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = json_array_size(s->received);
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* ---- The engine against a store ---------------------------------------------------------------
 */

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

/* Writes one batch of thermal gpu samples (one a minute from t0) received at `received_ns`. */
static void write_temps(struct ingest_store *s, const char *dev, uint64_t first_seq, int64_t t0,
                        const double *values, size_t n, int64_t received_ns)
{
    struct ferry_buf arena = FERRY_BUF_INIT;
    size_t offs[64];
    struct ingest_rec recs[64];
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) {
        struct record_field f = {.key = {"gpu", 3}, .type = RECORD_FIELD_FLOAT, .v.f = values[i]};
        /* Invalid UTF-8 in a tag (LMDB keeps the bytes as sent; PostgreSQL's text columns
         * hold only UTF-8, see docs/ingest.md). */
        bool lmdb = g_cfg.kind == INGEST_STORE_LMDB;
        struct record_tag t = {.key = {"zone", 4},
                               .value = {lmdb ? "\xff\x01gpu" : "gpu", lmdb ? 5 : 3}};
        struct record r = {.stream = RECORD_METRIC,
                           .ts_ns = t0 + (int64_t)i * MIN,
                           .name = {"thermal", 7},
                           .tags = &t,
                           .n_tags = 1,
                           .fields = &f,
                           .n_fields = 1};
        offs[i] = arena.len;
        assert_int_equal(record_pack(&r, &arena), 0);
        recs[i] = (struct ingest_rec){.stream = RECORD_METRIC,
                                      .seq = first_seq + i,
                                      .ts_ns = r.ts_ns,
                                      .ts_corrected_ns = r.ts_ns,
                                      .packed_len = arena.len - offs[i]};
    }
    for (size_t i = 0; i < n; i++)
        recs[i].packed = arena.data + offs[i];
    struct ingest_write w;
    memset(&w, 0, sizeof(w));
    w.device_id = dev;
    w.received_ns = received_ns;
    w.recs = recs;
    w.n_recs = n;
    struct ingest_write *ws[1] = {&w};
    char err[256] = "";
    int rc = ingest_store_write(s, ws, 1, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "write: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(w.result, 0);
    ferry_buf_free(&arena);
}

static void engine_config(struct alerts_config *c, uint16_t port, const char *type)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/hook", port);
    alerts_config_defaults(c);
    assert_int_equal(set(c, "receiver.hook", "type", type), 0);
    assert_int_equal(set(c, "receiver.hook", "url", url), 0);
    assert_int_equal(set(c, "alert.gpu_hot", "metric", "thermal.gpu"), 0);
    assert_int_equal(set(c, "alert.gpu_hot", "condition", "> 85"), 0);
    assert_int_equal(set(c, "alert.gpu_hot", "for", "5m"), 0);
    assert_int_equal(set(c, "alert.gpu_hot", "receivers", "hook"), 0);
    assert_int_equal(set(c, "alert.offline", "kind", "offline"), 0);
    assert_int_equal(set(c, "alert.offline", "for", "10m"), 0);
    assert_int_equal(set(c, "alert.offline", "receivers", "hook"), 0);
    char err[256];
    assert_int_equal(alerts_config_finish(c, err, sizeof(err)), 0);
}

static struct alerts *engine(struct ingest_store *s, const struct alerts_config *c,
                             const char *owner)
{
    struct alerts *a = NULL;
    char err[256];
    assert_int_equal(alerts_new(c, s, owner, &a, err, sizeof(err)), 0);
    return a;
}

static void test_engine_late_alert_notified_once_across_restart(void **state)
{
    (void)state;
    struct sink sink;
    sink_start(&sink);
    struct ingest_store *s = open_store();
    add_device(s, "dev-hot", 1);
    struct alerts_config c;
    engine_config(&c, sink.port, "webhook");
    int64_t now = ferry_realtime_ns();
    int64_t t0 = now - 3 * 60 * MIN; /* three hours ago, delivered now */
    const double temps[] = {90, 91, 92, 93, 94, 95, 96, 70, 71};
    write_temps(s, "dev-hot", 1, t0, temps, 9, now);

    struct alerts *a = engine(s, &c, "test:1");
    assert_int_equal(alerts_eval_once(a, now), 0);
    struct alerts_counts n;
    alerts_counts(a, &n);
    assert_int_equal(n.fired_total, 1);
    assert_int_equal(n.late_total, 1);
    assert_int_equal(n.resolved_total, 1);
    assert_int_equal(n.firing, 0);
    assert_int_equal(alerts_notify_once(a, now), 2);
    assert_int_equal(sink_count(&sink), 2);
    json_t *fired = json_array_get(sink.received, 0), *resolved = json_array_get(sink.received, 1);
    assert_string_equal(json_string_value(json_object_get(fired, "status")), "firing");
    assert_string_equal(json_string_value(json_object_get(fired, "rule")), "gpu_hot");
    assert_string_equal(json_string_value(json_object_get(fired, "device")), "dev-hot");
    assert_true(json_is_true(json_object_get(fired, "late")));
    assert_string_equal(json_string_value(json_object_get(resolved, "status")), "resolved");
    /* The device-time window: from the first breaching sample to the first one below. */
    char want_start[32], want_end[32];
    time_t ts = (time_t)(t0 / SEC), te = (time_t)((t0 + 7 * MIN) / SEC);
    struct tm tm;
    gmtime_r(&ts, &tm);
    strftime(want_start, sizeof(want_start), "%Y-%m-%dT%H:%M:%S", &tm);
    gmtime_r(&te, &tm);
    strftime(want_end, sizeof(want_end), "%Y-%m-%dT%H:%M:%S", &tm);
    assert_memory_equal(json_string_value(json_object_get(resolved, "starts_at")), want_start, 19);
    assert_memory_equal(json_string_value(json_object_get(resolved, "ends_at")), want_end, 19);
    /* A tag of invalid UTF-8 reached the receiver as valid JSON text. */
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(fired, "labels"), "zone")),
        g_cfg.kind == INGEST_STORE_LMDB ? "\xef\xbf\xbd\x01gpu" : "gpu"); /* U+FFFD */

    /* Restart: nothing is evaluated or notified twice. */
    alerts_free(a);
    a = engine(s, &c, "test:1");
    assert_int_equal(alerts_eval_once(a, now + SEC), 0);
    assert_int_equal(alerts_notify_once(a, now + SEC), 0);
    assert_int_equal(sink_count(&sink), 2);
    struct ferry_buf list = FERRY_BUF_INIT;
    assert_int_equal(alerts_list_json(s, "resolved", NULL, &list), 0);
    json_error_t jerr;
    json_t *arr = json_loadb((const char *)list.data, list.len, 0, &jerr);
    assert_non_null(arr);
    assert_int_equal(json_array_size(arr), 1);
    assert_true(json_is_true(json_object_get(json_array_get(arr, 0), "late")));
    json_decref(arr);
    ferry_buf_free(&list);

    /* More data after the restart: the series continues from its stored state. */
    const double hot_again[] = {99, 99, 99, 99, 99, 99};
    write_temps(s, "dev-hot", 10, t0 + 60 * MIN, hot_again, 6, now + 2 * SEC);
    assert_int_equal(alerts_eval_once(a, now + 2 * SEC), 0);
    alerts_counts(a, &n);
    assert_int_equal(n.firing, 1);
    assert_int_equal(alerts_notify_once(a, now + 2 * SEC), 1);
    assert_int_equal(sink_count(&sink), 3);
    alerts_free(a);
    ingest_store_close(s);
    sink_stop(&sink);
}

static void test_engine_receiver_down_keeps_queue_and_retries(void **state)
{
    (void)state;
    struct sink sink;
    sink_start(&sink);
    sink.fail_next = 2;
    struct ingest_store *s = open_store();
    add_device(s, "dev-q", 2);
    struct alerts_config c;
    engine_config(&c, sink.port, "slack");
    int64_t now = ferry_realtime_ns();
    const double temps[] = {90, 90, 90, 90, 90, 90};
    write_temps(s, "dev-q", 1, now - 10 * MIN, temps, 6, now);
    struct alerts *a = engine(s, &c, "test:1");
    assert_int_equal(alerts_eval_once(a, now), 0);
    assert_int_equal(alerts_notify_once(a, now), 0); /* 503 */
    assert_int_equal(alerts_notify_once(a, now), 0); /* waiting for Retry-After */
    alerts_free(a); /* a restart while the receiver is down loses nothing */
    a = engine(s, &c, "test:1");
    assert_int_equal(alerts_notify_once(a, now + 2 * SEC), 0); /* 503 again */
    assert_int_equal(alerts_notify_once(a, now + 4 * SEC), 1);
    assert_int_equal(sink_count(&sink), 1);
    const char *text = json_string_value(json_object_get(json_array_get(sink.received, 0), "text"));
    assert_non_null(text); /* Slack's incoming webhook shape: {"text": "..."} */
    assert_non_null(strstr(text, "FIRING"));
    assert_non_null(strstr(text, "gpu_hot"));
    assert_non_null(strstr(text, "dev-q"));
    struct alerts_counts n;
    alerts_counts(a, &n);
    assert_int_equal(n.failed_total, 1);
    alerts_free(a);
    ingest_store_close(s);
    sink_stop(&sink);
}

static void test_engine_offline_device(void **state)
{
    (void)state;
    struct sink sink;
    sink_start(&sink);
    struct ingest_store *s = open_store();
    add_device(s, "dev-off", 3);
    add_device(s, "dev-never", 4);
    struct alerts_config c;
    engine_config(&c, sink.port, "webhook");
    int64_t now = ferry_realtime_ns();
    const double cool[] = {40};
    write_temps(s, "dev-off", 1, now - 30 * MIN, cool, 1, now - 20 * MIN);
    struct alerts *a = engine(s, &c, "test:1");
    assert_int_equal(alerts_eval_once(a, now), 0);
    /* Records that raise nothing still move the stored cursor: nothing is read twice. */
    struct ingest_store_cursor cur;
    uint64_t behind = 1;
    int64_t next_ns;
    assert_int_equal(ingest_store_cursor_get(s, "alerts", &cur), 0);
    assert_int_equal(ingest_store_commit_lag(s, &cur, &behind, &next_ns), 0);
    assert_int_equal(behind, 0);
    struct alerts_counts n;
    alerts_counts(a, &n);
    assert_int_equal(n.firing, 1); /* dev-off; dev-never never sent anything */
    assert_int_equal(alerts_notify_once(a, now), 1);
    json_t *fired = json_array_get(sink.received, 0);
    assert_string_equal(json_string_value(json_object_get(fired, "rule")), "offline");
    assert_string_equal(json_string_value(json_object_get(fired, "device")), "dev-off");
    /* It comes back: resolved (resolve_after 0), with the outage length as its value. */
    write_temps(s, "dev-off", 2, now, cool, 1, now + 10 * SEC);
    assert_int_equal(alerts_eval_once(a, now + 10 * SEC), 0);
    alerts_counts(a, &n);
    assert_int_equal(n.firing, 0);
    assert_int_equal(alerts_notify_once(a, now + 10 * SEC), 1);
    json_t *resolved = json_array_get(sink.received, 1);
    assert_string_equal(json_string_value(json_object_get(resolved, "status")), "resolved");
    double outage = json_number_value(json_object_get(resolved, "value"));
    assert_true(outage > 20 * 60 && outage < 21 * 60);
    alerts_free(a);
    ingest_store_close(s);
    sink_stop(&sink);
}

static void test_engine_cursor_moves_when_nothing_fires(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    add_device(s, "dev-calm", 8);
    struct alerts_config c;
    char err[256];
    alerts_config_defaults(&c);
    assert_int_equal(set(&c, "receiver.hook", "url", "http://127.0.0.1:9/hook"), 0);
    assert_int_equal(set(&c, "alert.gpu_hot", "metric", "thermal.gpu"), 0);
    assert_int_equal(set(&c, "alert.gpu_hot", "condition", "> 85"), 0);
    assert_int_equal(set(&c, "alert.gpu_hot", "for", "5m"), 0);
    assert_int_equal(set(&c, "alert.gpu_hot", "receivers", "hook"), 0);
    assert_int_equal(alerts_config_finish(&c, err, sizeof(err)), 0);
    int64_t now = ferry_realtime_ns();
    const double calm[] = {40, 41, 42};
    write_temps(s, "dev-calm", 1, now - 10 * MIN, calm, 3, now);
    struct alerts *a = engine(s, &c, "test:1");
    assert_int_equal(alerts_eval_once(a, now), 0);
    struct ingest_store_cursor cur;
    uint64_t behind = 1;
    int64_t next_ns;
    assert_int_equal(ingest_store_cursor_get(s, "alerts", &cur), 0);
    assert_int_equal(ingest_store_commit_lag(s, &cur, &behind, &next_ns), 0);
    assert_int_equal(behind, 0);
    /* Nothing of an idle series is stored. */
    struct ferry_buf list = FERRY_BUF_INIT;
    assert_int_equal(alerts_list_json(s, NULL, NULL, &list), 0);
    assert_int_equal(list.len, 3); /* "[]\n" */
    ferry_buf_free(&list);
    alerts_free(a);
    ingest_store_close(s);
}

static void test_engine_silence_mutes_notifications(void **state)
{
    (void)state;
    struct sink sink;
    sink_start(&sink);
    struct ingest_store *s = open_store();
    add_device(s, "dev-muted", 6);
    add_device(s, "dev-loud", 7);
    char *argv[] = {"silence",  "--rule",    "gpu_hot",
                    "--device", "dev-muted", "--for",
                    "1h",       "--comment", "fan replaced\x1b[2J",
                    NULL};
    assert_int_equal(alerts_cli_main(s, "cli:test", 9, argv), 0);
    struct alerts_config c;
    engine_config(&c, sink.port, "webhook");
    int64_t now = ferry_realtime_ns();
    const double temps[] = {90, 90, 90, 90, 90, 90};
    write_temps(s, "dev-muted", 1, now - 10 * MIN, temps, 6, now);
    write_temps(s, "dev-loud", 1, now - 10 * MIN, temps, 6, now);
    struct alerts *a = engine(s, &c, "test:1");
    assert_int_equal(alerts_eval_once(a, now), 0);
    struct alerts_counts n;
    alerts_counts(a, &n);
    assert_int_equal(n.fired_total, 2); /* both fire and are listed */
    assert_int_equal(alerts_notify_once(a, now), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(sink.received, 0), "device")), "dev-loud");
    char *list_argv[] = {"list", "--state", "firing", NULL};
    assert_int_equal(alerts_cli_main(s, "cli:test", 3, list_argv), 0);
    char *bad_argv[] = {"silence", "--for", "1h", NULL}; /* neither rule nor device */
    assert_int_equal(alerts_cli_main(s, "cli:test", 3, bad_argv), 2);
    alerts_free(a);
    ingest_store_close(s);
    sink_stop(&sink);
}

static void test_engine_one_evaluator_per_store(void **state)
{
    (void)state;
    if (g_cfg.kind != INGEST_STORE_PG)
        skip(); /* LMDB is one process */
    struct sink sink;
    sink_start(&sink);
    struct ingest_store *s1 = open_store(), *s2 = open_store();
    add_device(s1, "dev-two", 5);
    struct alerts_config c;
    engine_config(&c, sink.port, "webhook");
    int64_t now = ferry_realtime_ns();
    const double temps[] = {90, 90, 90, 90, 90, 90};
    write_temps(s1, "dev-two", 1, now - 10 * MIN, temps, 6, now);
    struct alerts *a1 = engine(s1, &c, "host-a:1"), *a2 = engine(s2, &c, "host-b:2");
    assert_int_equal(alerts_eval_once(a1, now), 0);
    assert_int_equal(alerts_eval_once(a2, now), 0); /* lease held by host-a */
    assert_int_equal(alerts_notify_once(a2, now), 0);
    assert_int_equal(alerts_notify_once(a1, now), 1);
    struct alerts_counts n1, n2;
    alerts_counts(a1, &n1);
    alerts_counts(a2, &n2);
    assert_int_equal(n1.fired_total, 1);
    assert_int_equal(n2.fired_total, 0);
    /* host-a stops renewing: after the lease expires host-b takes over from the stored state
     * and notifies nothing twice. */
    assert_int_equal(alerts_eval_once(a2, now + 31 * SEC), 0);
    assert_int_equal(alerts_notify_once(a2, now + 31 * SEC), 0);
    assert_int_equal(sink_count(&sink), 1);
    alerts_free(a1);
    alerts_free(a2);
    ingest_store_close(s1);
    ingest_store_close(s2);
    sink_stop(&sink);
}

/* One metric record `name`.`field` = v at device time ts, or (name NULL) a batch with no record
 * that reports gaps, update states and a backlog. */
static void write_one(struct ingest_store *s, const char *dev, uint64_t seq, int64_t ts,
                      const char *name, const char *field, double v, int64_t received_ns,
                      uint64_t gap_records, const char *updates_json, int64_t backlog)
{
    struct ferry_buf arena = FERRY_BUF_INIT;
    struct ingest_rec rec;
    struct ingest_write w;
    memset(&w, 0, sizeof(w));
    if (name != NULL) {
        struct record_field f = {
            .key = {field, strlen(field)}, .type = RECORD_FIELD_FLOAT, .v.f = v};
        struct record r = {.stream = RECORD_METRIC,
                           .ts_ns = ts,
                           .name = {name, strlen(name)},
                           .fields = &f,
                           .n_fields = 1};
        assert_int_equal(record_pack(&r, &arena), 0);
        rec = (struct ingest_rec){.stream = RECORD_METRIC,
                                  .seq = seq,
                                  .ts_ns = ts,
                                  .ts_corrected_ns = ts,
                                  .packed = arena.data,
                                  .packed_len = arena.len};
        w.recs = &rec;
        w.n_recs = 1;
    }
    struct ingest_gap gap = {RECORD_LOG, seq * 100000, seq * 100000 + gap_records - 1};
    if (gap_records > 0) {
        w.gaps = &gap;
        w.n_gaps = 1;
    }
    w.device_id = dev;
    w.received_ns = received_ns;
    w.updates_json = updates_json;
    if (backlog >= 0) {
        w.has_backlog = true;
        w.backlog[RECORD_METRIC] = (uint64_t)backlog;
    }
    struct ingest_write *ws[1] = {&w};
    char err[256] = "";
    int rc = ingest_store_write(s, ws, 1, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "write: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(w.result, 0);
    ferry_buf_free(&arena);
}

static void test_engine_absent_series(void **state)
{
    (void)state;
    struct sink sink;
    sink_start(&sink);
    struct ingest_store *s = open_store();
    add_device(s, "dev-a", 5);
    add_device(s, "dev-b", 6);
    struct alerts_config c;
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/hook", sink.port);
    alerts_config_defaults(&c);
    assert_int_equal(set(&c, "receiver.hook", "url", url), 0);
    assert_int_equal(set(&c, "alert.no_fps", "kind", "absent"), 0);
    assert_int_equal(set(&c, "alert.no_fps", "metric", "inference.fps"), 0);
    assert_int_equal(set(&c, "alert.no_fps", "for", "5m"), 0);
    assert_int_equal(set(&c, "alert.no_fps", "receivers", "hook"), 0);
    assert_int_equal(alerts_config_finish(&c, err, sizeof(err)), 0);
    int64_t now = ferry_realtime_ns(), t0 = now - 60 * MIN;
    uint64_t seq_a = 1, seq_b = 1;
    /* dev-a: the model stops reporting after 10 minutes, its system metrics go on; dev-b keeps
     * reporting both, then goes silent altogether (offline: no absent alert). */
    for (int m = 0; m < 30; m++) {
        int64_t t = t0 + m * MIN;
        if (m < 10)
            write_one(s, "dev-a", seq_a++, t, "inference", "fps", 30, now, 0, NULL, -1);
        write_one(s, "dev-a", seq_a++, t, "cpu", "usage_idle", 50, now, 0, NULL, -1);
        if (m < 20) {
            write_one(s, "dev-b", seq_b++, t, "inference", "fps", 30, now, 0, NULL, -1);
            write_one(s, "dev-b", seq_b++, t, "cpu", "usage_idle", 50, now, 0, NULL, -1);
        }
    }
    struct alerts *a = engine(s, &c, "test:1");
    assert_int_equal(alerts_eval_once(a, now), 0);
    struct alerts_counts n;
    alerts_counts(a, &n);
    assert_int_equal(n.firing, 1);
    assert_int_equal(n.late_total, 1); /* the hour arrived now, all at once */
    assert_int_equal(alerts_notify_once(a, now), 1);
    json_t *fired = json_array_get(sink.received, 0);
    assert_string_equal(json_string_value(json_object_get(fired, "device")), "dev-a");
    assert_string_equal(json_string_value(json_object_get(fired, "rule")), "no_fps");
    /* A restart keeps the alert; the model comes back: resolved at that sample's time. */
    alerts_free(a);
    a = engine(s, &c, "test:1");
    write_one(s, "dev-a", seq_a++, t0 + 31 * MIN, "inference", "fps", 29, now + SEC, 0, NULL, -1);
    assert_int_equal(alerts_eval_once(a, now + SEC), 0);
    alerts_counts(a, &n);
    assert_int_equal(n.firing, 0);
    assert_int_equal(n.resolved_total, 1);
    assert_int_equal(alerts_notify_once(a, now + SEC), 1);
    assert_int_equal(sink_count(&sink), 2);
    alerts_free(a);
    ingest_store_close(s);
    sink_stop(&sink);
}

/* gap, backlog and stuck-update rules read what devices report with their batches. */
static void test_engine_device_reports(void **state)
{
    (void)state;
    struct sink sink;
    sink_start(&sink);
    struct ingest_store *s = open_store();
    add_device(s, "dev-g", 7);
    add_device(s, "dev-s", 8);
    struct alerts_config c;
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/hook", sink.port);
    alerts_config_defaults(&c);
    assert_int_equal(set(&c, "receiver.hook", "url", url), 0);
    assert_int_equal(set(&c, "alert.lost", "kind", "gap"), 0);
    assert_int_equal(set(&c, "alert.lost", "receivers", "hook"), 0);
    assert_int_equal(set(&c, "alert.stuck", "kind", "update"), 0);
    assert_int_equal(set(&c, "alert.stuck", "for", "30m"), 0);
    assert_int_equal(set(&c, "alert.stuck", "receivers", "hook"), 0);
    assert_int_equal(set(&c, "alert.backlog", "kind", "backlog"), 0);
    assert_int_equal(set(&c, "alert.backlog", "condition", "> 1000"), 0);
    assert_int_equal(set(&c, "alert.backlog", "for", "0s"), 0);
    assert_int_equal(set(&c, "alert.backlog", "receivers", "hook"), 0);
    assert_int_equal(alerts_config_finish(&c, err, sizeof(err)), 0);
    int64_t now = ferry_realtime_ns();
    write_one(s, "dev-g", 1, now, NULL, NULL, 0, now, 250, NULL, 5000);
    char updates[256];
    snprintf(updates, sizeof(updates),
             "{\"model\":{\"state\":\"downloading\",\"ts\":%lld,\"seq\":3}}",
             (long long)(now - 45 * MIN));
    write_one(s, "dev-s", 1, now, NULL, NULL, 0, now, 0, updates, 0);
    struct alerts *a = engine(s, &c, "test:1");
    assert_int_equal(alerts_eval_once(a, now), 0);
    struct alerts_counts n;
    alerts_counts(a, &n);
    assert_int_equal(n.firing, 3); /* dev-g lost records and has a backlog; dev-s is stuck */
    assert_int_equal(alerts_notify_once(a, now), 3);
    bool saw_gap = false, saw_stuck = false;
    for (size_t i = 0; i < 3; i++) {
        json_t *j = json_array_get(sink.received, i);
        const char *rule = json_string_value(json_object_get(j, "rule"));
        if (strcmp(rule, "lost") == 0) {
            saw_gap = true;
            assert_true(json_number_value(json_object_get(j, "value")) == 250);
        }
        if (strcmp(rule, "stuck") == 0) {
            saw_stuck = true;
            assert_non_null(
                strstr(json_string_value(json_object_get(j, "summary")), "stuck in downloading"));
        }
    }
    assert_true(saw_gap && saw_stuck);
    /* A restart repeats nothing; the backlog drains and the update commits: resolved. */
    alerts_free(a);
    a = engine(s, &c, "test:1");
    snprintf(updates, sizeof(updates),
             "{\"model\":{\"state\":\"committed\",\"ts\":%lld,\"seq\":9}}", (long long)(now + SEC));
    write_one(s, "dev-s", 2, now, NULL, NULL, 0, now + SEC, 0, updates, 0);
    write_one(s, "dev-g", 2, now, NULL, NULL, 0, now + SEC, 0, NULL, 10);
    assert_int_equal(alerts_eval_once(a, now + 10 * SEC), 0);
    alerts_counts(a, &n);
    assert_int_equal(n.resolved_total, 2);
    assert_int_equal(n.firing, 1); /* the gap alert waits for an hour without losses */
    assert_int_equal(alerts_notify_once(a, now + 10 * SEC), 2);
    assert_int_equal(sink_count(&sink), 5);
    alerts_free(a);
    ingest_store_close(s);
    sink_stop(&sink);
}

/* A rule's selector limits it to the devices it matches (labels here), also for offline. */
static void test_engine_rule_selector(void **state)
{
    (void)state;
    struct sink sink;
    sink_start(&sink);
    struct ingest_store *s = open_store();
    add_device(s, "dev-berlin", 10);
    add_device(s, "dev-lyon", 11);
    assert_int_equal(ingest_store_device_set_labels(s, "dev-berlin", "{\"site\":\"berlin\"}"), 0);
    assert_int_equal(ingest_store_device_set_labels(s, "dev-lyon", "{\"site\":\"lyon\"}"), 0);
    struct alerts_config c;
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/hook", sink.port);
    alerts_config_defaults(&c);
    assert_int_equal(set(&c, "receiver.hook", "url", url), 0);
    assert_int_equal(set(&c, "alert.hot_berlin", "metric", "thermal.gpu"), 0);
    assert_int_equal(set(&c, "alert.hot_berlin", "condition", "> 85"), 0);
    assert_int_equal(set(&c, "alert.hot_berlin", "for", "0s"), 0);
    assert_int_equal(set(&c, "alert.hot_berlin", "selector", "site=berlin"), 0);
    assert_int_equal(set(&c, "alert.hot_berlin", "receivers", "hook"), 0);
    assert_int_equal(set(&c, "alert.gone", "kind", "offline"), 0);
    assert_int_equal(set(&c, "alert.gone", "for", "5m"), 0);
    assert_int_equal(set(&c, "alert.gone", "selector", "site in (lyon)"), 0);
    assert_int_equal(set(&c, "alert.gone", "receivers", "hook"), 0);
    assert_int_equal(set(&c, "alert.bad", "selector", "site in (lyon"), -1); /* term, column */
    assert_int_equal(
        alerts_config_set(&c, "alert.bad", "selector", "site in (lyon", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "column"));
    c.n_rules = 2; /* drop the refused one */
    assert_int_equal(alerts_config_finish(&c, err, sizeof(err)), 0);
    int64_t now = ferry_realtime_ns();
    write_one(s, "dev-berlin", 1, now - 20 * MIN, "thermal", "gpu", 95, now - 15 * MIN, 0, NULL,
              -1);
    write_one(s, "dev-lyon", 1, now - 20 * MIN, "thermal", "gpu", 95, now - 15 * MIN, 0, NULL, -1);
    struct alerts *a = engine(s, &c, "test:1");
    assert_int_equal(alerts_eval_once(a, now), 0);
    assert_int_equal(alerts_notify_once(a, now), 2);
    bool hot_berlin = false, gone_lyon = false;
    for (size_t i = 0; i < 2; i++) {
        json_t *j = json_array_get(sink.received, i);
        const char *rule = json_string_value(json_object_get(j, "rule"));
        const char *dev = json_string_value(json_object_get(j, "device"));
        hot_berlin |= strcmp(rule, "hot_berlin") == 0 && strcmp(dev, "dev-berlin") == 0;
        gone_lyon |= strcmp(rule, "gone") == 0 && strcmp(dev, "dev-lyon") == 0;
    }
    assert_true(hot_berlin && gone_lyon); /* and nothing for the other site of each rule */
    alerts_free(a);
    ingest_store_close(s);
    sink_stop(&sink);
}

static int action_log_cb(const char *key, const void *value, size_t len, void *arg)
{
    json_t *arr = arg;
    json_error_t jerr;
    (void)key;
    json_array_append_new(arr, json_loadb(value, len, 0, &jerr));
    return 0;
}

/* A command action gets the alert on stdin; its run is recorded; exit 75 is retried. */
static void test_engine_command_action(void **state)
{
    (void)state;
    char dir[] = "/tmp/ferry-action-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char script[300], out[300], cmd[700];
    snprintf(script, sizeof(script), "%s/ticket.sh", dir);
    snprintf(out, sizeof(out), "%s/tickets", dir);
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    /* First run: exit 75 (try again later); then take the ticket. */
    fprintf(f,
            "#!/bin/sh\nif [ ! -e %s/once ]; then : > %s/once; exit 75; fi\n"
            "cat >> %s; echo >> %s; echo \"ticket opened for $1\"\n",
            dir, dir, out, out);
    fclose(f);
    assert_int_equal(chmod(script, 0700), 0);
    struct ingest_store *s = open_store();
    add_device(s, "dev-hot", 9);
    struct alerts_config c;
    char err[256];
    alerts_config_defaults(&c);
    snprintf(cmd, sizeof(cmd), "%s ops-queue", script);
    assert_int_equal(set(&c, "receiver.ticket", "type", "command"), 0);
    assert_int_equal(set(&c, "receiver.ticket", "command", cmd), 0);
    assert_int_equal(set(&c, "receiver.ticket", "timeout", "5s"), 0);
    assert_int_equal(set(&c, "alert.gpu_hot", "metric", "thermal.gpu"), 0);
    assert_int_equal(set(&c, "alert.gpu_hot", "condition", "> 85"), 0);
    assert_int_equal(set(&c, "alert.gpu_hot", "for", "0s"), 0);
    assert_int_equal(set(&c, "alert.gpu_hot", "actions", "ticket"), 0);
    assert_int_equal(alerts_config_finish(&c, err, sizeof(err)), 0);
    int64_t now = ferry_realtime_ns();
    write_one(s, "dev-hot", 1, now - MIN, "thermal", "gpu", 95, now, 0, NULL, -1);
    struct alerts *a = engine(s, &c, "test:1");
    assert_int_equal(alerts_eval_once(a, now), 0);
    assert_int_equal(alerts_notify_once(a, now), 0); /* exit 75: retried */
    assert_int_equal(alerts_notify_once(a, now + 3 * SEC), 1);
    f = fopen(out, "r");
    assert_non_null(f);
    char line[4096];
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    json_error_t jerr;
    json_t *alert = json_loads(line, 0, &jerr);
    assert_non_null(alert); /* the generic webhook JSON */
    assert_string_equal(json_string_value(json_object_get(alert, "rule")), "gpu_hot");
    assert_string_equal(json_string_value(json_object_get(alert, "device")), "dev-hot");
    json_decref(alert);
    json_t *runs = json_array();
    assert_int_equal(ingest_store_kv_scan(s, "actionlog/", 0, action_log_cb, runs), 0);
    assert_int_equal(json_array_size(runs), 1); /* the retried attempt is not a recorded run */
    json_t *run = json_array_get(runs, 0);
    assert_string_equal(json_string_value(json_object_get(run, "status")), "ok");
    assert_string_equal(json_string_value(json_object_get(run, "output")),
                        "ticket opened for ops-queue\n");
    json_decref(runs);
    /* A command that fails is recorded once and not retried: it may have done half its work. */
    f = fopen(script, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\necho failing >> %s/failures\nexit 3\n", dir);
    fclose(f);
    write_one(s, "dev-hot", 2, now - 50 * SEC, "thermal", "gpu", 20, now + SEC, 0, NULL, -1);
    assert_int_equal(alerts_eval_once(a, now + SEC), 0); /* resolved: one more run */
    assert_int_equal(alerts_notify_once(a, now + 10 * SEC), 0);
    assert_int_equal(alerts_notify_once(a, now + 400 * SEC), 0); /* nothing left to retry */
    char failures[300];
    snprintf(failures, sizeof(failures), "%s/failures", dir);
    f = fopen(failures, "r");
    assert_non_null(f);
    int lines = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        lines++;
    fclose(f);
    assert_int_equal(lines, 1);
    runs = json_array();
    assert_int_equal(ingest_store_kv_scan(s, "actionlog/", 0, action_log_cb, runs), 0);
    assert_int_equal(json_array_size(runs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(runs, 1), "status")),
                        "failed");
    json_decref(runs);
    alerts_free(a);
    ingest_store_close(s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static int reset_store(void **state)
{
    (void)state;
    if (g_cfg.kind == INGEST_STORE_LMDB) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
        if (system(cmd) != 0)
            return -1;
        return 0;
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
        fprintf(stderr, "usage: test_alerts lmdb|pg\n");
        return 2;
    }
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0 ||
        evthread_use_pthreads() != 0) /* the sink's loop is stopped from the test's thread */
        return 1;
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
        snprintf(g_dir, sizeof(g_dir), "/tmp/ferry-alerts-test.%ld", (long)getpid());
        g_cfg.kind = INGEST_STORE_LMDB;
        g_cfg.lmdb_dir = g_dir;
        g_cfg.lmdb_map_size = 64 << 20;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threshold_fires_after_duration_on_device_time),
        cmocka_unit_test(test_threshold_late_data_is_marked_late),
        cmocka_unit_test(test_threshold_ignores_older_samples_and_restarts_after_silence),
        cmocka_unit_test(test_offline_fires_suppresses_flapping_and_resolves),
        cmocka_unit_test(test_update_rule),
        cmocka_unit_test(test_update_stuck),
        cmocka_unit_test(test_absent_rule),
        cmocka_unit_test(test_gap_rule),
        cmocka_unit_test(test_backlog_rule),
        cmocka_unit_test(test_config),
        cmocka_unit_test_setup(test_engine_late_alert_notified_once_across_restart, reset_store),
        cmocka_unit_test_setup(test_engine_receiver_down_keeps_queue_and_retries, reset_store),
        cmocka_unit_test_setup(test_engine_offline_device, reset_store),
        cmocka_unit_test_setup(test_engine_cursor_moves_when_nothing_fires, reset_store),
        cmocka_unit_test_setup(test_engine_silence_mutes_notifications, reset_store),
        cmocka_unit_test_setup(test_engine_one_evaluator_per_store, reset_store),
        cmocka_unit_test_setup(test_engine_absent_series, reset_store),
        cmocka_unit_test_setup(test_engine_device_reports, reset_store),
        cmocka_unit_test_setup(test_engine_command_action, reset_store),
        cmocka_unit_test_setup(test_engine_rule_selector, reset_store),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (g_cfg.kind == INGEST_STORE_LMDB) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
        if (system(cmd) != 0)
            failed++;
    }
    curl_global_cleanup();
    return failed;
}
