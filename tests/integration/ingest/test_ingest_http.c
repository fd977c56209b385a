/*
 * Integration tests of ferry-ingest over loopback HTTP: a real ferry-ingest process (fork/exec,
 * port 0), real batches from the real codec signed with real Ed25519 keys, libcurl as client.
 *
 *   test_ingest_http BIN lmdb   every endpoint and every rejection, LMDB store
 *   test_ingest_http BIN pg     two ferry-ingest processes on one PostgreSQL database
 *                               (FERRY_TEST_PG from with-postgres.sh)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cmocka.h>
#include <jansson.h>
#include <lmdb.h>

#include "common/utf8.h"
#include "tests/integration/ingest/ingest_harness.h"
#include "transport/reqsign.h"

static const char *g_bin;
static char g_dir[128];
static char g_data[192];
static const char *g_pg;
static struct ih_server g_srv;

static const char *g_cli_data; /* the LMDB directory `cli` works on (g_data unless a test
                                * runs its own server) */

static bool is_pg(void)
{
    return g_pg != NULL;
}

/* Runs `ferry-ingest <store options> ARGS` and returns its first output line in out. */
static int cli(char *out, size_t out_len, const char *args)
{
    char cmd[1024];
    if (is_pg())
        snprintf(cmd, sizeof(cmd), "'%s' --pg '%s' %s", g_bin, g_pg, args);
    else
        snprintf(cmd, sizeof(cmd), "'%s' -d '%s' %s", g_bin, g_cli_data, args);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    out[0] = '\0';
    if (fgets(out, (int)out_len, p) != NULL)
        out[strcspn(out, "\n")] = '\0';
    char rest[256];
    while (fgets(rest, sizeof(rest), p) != NULL)
        ;
    return pclose(p);
}

static void new_token(char *tok, size_t len, bool fleet)
{
    assert_int_equal(cli(tok, len, fleet ? "enroll-token create --fleet" : "enroll-token create"),
                     0);
    assert_int_equal(strlen(tok), 40);
}

/* Makes an operator API token (`ferry-ingest token create ARGS`) into out. */
static void api_token(char *out, size_t len, const char *args)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "token create %s 2>/dev/null", args);
    assert_int_equal(cli(out, len, cmd), 0);
    assert_int_equal(strncmp(out, "fyt_", 4), 0);
    assert_int_equal(strlen(out), 85);
}

static char g_viewer[128]; /* the viewer token of the main server's store */

/* Makes a viewer token in the store `cli` works on and has ih_http send it from now on. */
static void use_viewer_token(const char *name)
{
    char tok[128], args[128];
    snprintf(args, sizeof(args), "--role viewer --name %s", name);
    api_token(tok, sizeof(tok), args);
    ih_set_token(tok);
    if (g_cli_data == g_data)
        ferry_strlcpy(g_viewer, tok, sizeof(g_viewer));
}

/* Enrols `d` with its signature (proof of possession, transport/reqsign.h). */
static long enroll(unsigned port, const char *token, struct ih_device *d, struct ih_resp *r)
{
    char body[768], sig[REQSIGN_SIG_HEX + 1];
    assert_int_equal(reqsign_enroll_sign(d->sk, d->pk_hex, token, sig), 0);
    snprintf(body, sizeof(body),
             "{\"token\":\"%s\",\"public_key\":\"%s\",\"name\":\"jetson-7\",\"device_class\":"
             "\"jetson-orin-nano\",\"signature\":\"%s\"}",
             token, d->pk_hex, sig);
    assert_int_equal(ih_http(port, "POST", "/v1/enroll", body, strlen(body), r), 0);
    if (r->status == 200) {
        json_t *j = json_loads((char *)r->body.data, 0, NULL);
        assert_non_null(j);
        ferry_strlcpy(d->id, json_string_value(json_object_get(j, "device_id")), sizeof(d->id));
        json_decref(j);
    }
    return r->status;
}

static void enrolled_device(unsigned port, struct ih_device *d)
{
    char tok[64];
    struct ih_resp r;
    ih_device_new(d);
    new_token(tok, sizeof(tok), false);
    assert_int_equal(enroll(port, tok, d, &r), 200);
    ih_resp_free(&r);
}

static long post_batch(unsigned port, const struct ferry_buf *b, struct ih_resp *r)
{
    assert_int_equal(ih_http(port, "POST", "/v1/batches", b->data, b->len, r), 0);
    return r->status;
}

static int setup_lmdb(void **state)
{
    int rc;
    const char *args[] = {"-d",
                          g_data,
                          "--limits.max_body",
                          "256KiB",
                          "--limits.device_cache",
                          "0s",
                          "--clock.threshold",
                          "60s",
                          "--limits.enroll_failures_per_address",
                          "1000",
                          NULL};
    if ((rc = ih_start(&g_srv, g_bin, g_dir, args)) != 0)
        return rc;
    use_viewer_token("it-viewer");
    return 0;
}

static int teardown_lmdb(void **state)
{
    return ih_stop(&g_srv) == 0 ? 0 : -1;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void healthz_and_unknown_routes(void **state)
{
    struct ih_resp r;
    assert_int_equal(ih_http(g_srv.port, "GET", "/healthz", NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body.data, "\"status\":\"ok\""));
    ih_resp_free(&r);
    assert_int_equal(ih_http(g_srv.port, "GET", "/nope", NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr((char *)r.body.data, "\"error\""));
    ih_resp_free(&r);
    assert_int_equal(ih_http(g_srv.port, "GET", "/v1/batches", NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    ih_resp_free(&r);
}

static void enroll_same_key_same_id_and_rejections(void **state)
{
    struct ih_device a, b;
    struct ih_resp r;
    char tok[64];
    ih_device_new(&a);
    ih_device_new(&b);
    new_token(tok, sizeof(tok), false);
    assert_int_equal(enroll(g_srv.port, tok, &a, &r), 200);
    ih_resp_free(&r);
    assert_int_equal(strncmp(a.id, "d-", 2), 0);
    assert_int_equal(strlen(a.id), 18);
    char first_id[65];
    ferry_strlcpy(first_id, a.id, sizeof(first_id));
    assert_int_equal(enroll(g_srv.port, tok, &a, &r), 200);
    ih_resp_free(&r);
    assert_string_equal(a.id, first_id);
    /* A used one-time token does not enrol another key. */
    assert_int_equal(enroll(g_srv.port, tok, &b, &r), 401);
    assert_non_null(strstr((char *)r.body.data, "used"));
    ih_resp_free(&r);
    assert_int_equal(enroll(g_srv.port, "0123456789abcdef0123", &b, &r), 401);
    ih_resp_free(&r);
    assert_int_equal(ih_http(g_srv.port, "POST", "/v1/enroll", "{\"token\":", 9, &r), 0);
    assert_int_equal(r.status, 400);
    ih_resp_free(&r);
    const char *badkey = "{\"token\":\"x\",\"public_key\":\"zz\"}";
    assert_int_equal(ih_http(g_srv.port, "POST", "/v1/enroll", badkey, strlen(badkey), &r), 0);
    assert_int_equal(r.status, 400);
    ih_resp_free(&r);
    /* Revoked devices cannot enrol again. */
    char out[128], args[128];
    snprintf(args, sizeof(args), "device revoke %s", a.id);
    assert_int_equal(cli(out, sizeof(out), args), 0);
    new_token(tok, sizeof(tok), true);
    assert_int_equal(enroll(g_srv.port, tok, &a, &r), 403);
    ih_resp_free(&r);
    /* A fleet token enrols many. */
    assert_int_equal(enroll(g_srv.port, tok, &b, &r), 200);
    ih_resp_free(&r);
}

static void batch_acked_after_commit_and_repeat_stored_once(void **state)
{
    struct ih_device d;
    enrolled_device(g_srv.port, &d);
    struct ferry_buf b = FERRY_BUF_INIT;
    int64_t now = ferry_realtime_ns();
    assert_int_equal(ih_batch(&d, RECORD_METRIC, 1, 50, now, now - 60 * 1000000000ll, true, &b), 0);
    struct ih_resp r;
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    assert_string_equal(r.content_type, "application/json");
    json_t *j = json_loads((char *)r.body.data, 0, NULL);
    assert_non_null(j);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "batch_id"))), 32);
    json_t *m = json_object_get(json_object_get(j, "acked"), "metric");
    assert_int_equal(json_array_size(m), 1);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(m, 0), 0)), 1);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(m, 0), 1)), 50);
    assert_int_equal(json_array_size(json_object_get(json_object_get(j, "acked"), "log")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "gaps")), 0);
    json_decref(j);
    char first_ack[512];
    ferry_strlcpy(first_ack, (char *)r.body.data, sizeof(first_ack));
    ih_resp_free(&r);
    /* The same batch again: the same acknowledgement, nothing stored twice. */
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    assert_string_equal((char *)r.body.data, first_ack);
    ih_resp_free(&r);
    /* An overlapping one. */
    ferry_buf_reset(&b);
    assert_int_equal(ih_batch(&d, RECORD_METRIC, 41, 20, now, now, true, &b), 0);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    assert_non_null(strstr((char *)r.body.data, "\"metric\":[[41,60]]"));
    ih_resp_free(&r);

    char path[256];
    snprintf(path, sizeof(path), "/v1/export?device=%s&stream=metric&after_seq=0&limit=1000", d.id);
    assert_int_equal(ih_http(g_srv.port, "GET", path, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/x-ndjson");
    size_t lines = 0;
    uint64_t expect = 1;
    for (char *line = strtok((char *)r.body.data, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        json_t *row = json_loads(line, 0, NULL);
        assert_non_null(row);
        assert_string_equal(json_string_value(json_object_get(row, "device")), d.id);
        assert_string_equal(json_string_value(json_object_get(row, "stream")), "metric");
        assert_int_equal(json_integer_value(json_object_get(row, "seq")), expect);
        assert_string_equal(json_string_value(json_object_get(row, "name")), "cpu");
        assert_true(json_is_integer(json_object_get(row, "ts")));
        assert_true(json_is_integer(json_object_get(row, "ts_corrected")));
        assert_true(json_is_null(json_object_get(row, "level")));
        assert_true(json_is_string(json_object_get(json_object_get(row, "tags"), "core")));
        assert_true(json_is_integer(json_object_get(json_object_get(row, "fields"), "temp_mc")));
        assert_true(json_is_number(json_object_get(json_object_get(row, "fields"), "usage")));
        json_decref(row);
        expect++;
        lines++;
    }
    assert_int_equal(lines, 60);
    ih_resp_free(&r);
    /* Paging. */
    snprintf(path, sizeof(path), "/v1/export?device=%s&stream=metric&after_seq=55&limit=2", d.id);
    assert_int_equal(ih_http(g_srv.port, "GET", path, NULL, 0, &r), 0);
    assert_non_null(strstr((char *)r.body.data, "\"seq\":56,"));
    assert_non_null(strstr((char *)r.body.data, "\"seq\":57,"));
    assert_null(strstr((char *)r.body.data, "\"seq\":58,"));
    ih_resp_free(&r);
    /* The device's counters. */
    snprintf(path, sizeof(path), "/v1/devices/%s", d.id);
    assert_int_equal(ih_http(g_srv.port, "GET", path, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    j = json_loads((char *)r.body.data, 0, NULL);
    assert_non_null(j);
    json_t *ms = json_object_get(json_object_get(j, "streams"), "metric");
    assert_int_equal(json_integer_value(json_object_get(ms, "records")), 60);
    assert_int_equal(json_integer_value(json_object_get(ms, "max_seq")), 60);
    assert_true(json_integer_value(json_object_get(j, "last_seen_ns")) >= now);
    assert_string_equal(json_string_value(json_object_get(j, "device_class")), "jetson-orin-nano");
    json_decref(j);
    ih_resp_free(&r);
    ferry_buf_free(&b);
}

static void logs_gaps_and_clock_correction(void **state)
{
    struct ih_device d;
    enrolled_device(g_srv.port, &d);
    /* A device whose clock says 1970 (no RTC battery): offset ~ 56 years, far over 60 s. */
    int64_t device_now = 1000ll * 1000000000; /* 1970-01-01T00:16:40Z */
    struct batch_builder_config cfg = {.device_id = d.id, .secret_key = d.sk};
    struct batch_builder *bb = NULL;
    assert_int_equal(batch_builder_new(&cfg, &bb), 0);
    struct record r = {.stream = RECORD_LOG,
                       .seq = 7,
                       .ts_ns = device_now - 5000000000ll,
                       .name = {"vision", 6},
                       .level = RECORD_LEVEL_ERROR,
                       .message = {"camera \"0\" lost", 15}};
    assert_int_equal(batch_builder_add(bb, &r), 0);
    assert_int_equal(batch_builder_add_gap(bb, RECORD_LOG, 3, 6, BATCH_GAP_EVICTED), 0);
    const uint64_t backlog[RECORD_STREAM_COUNT] = {0, 4200, 17};
    batch_builder_set_backlog(bb, backlog);
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(batch_builder_finish(bb, device_now, &b), 0);
    batch_builder_free(bb);
    int64_t before = ferry_realtime_ns();
    struct ih_resp resp;
    assert_int_equal(post_batch(g_srv.port, &b, &resp), 200);
    int64_t after = ferry_realtime_ns();
    assert_non_null(strstr((char *)resp.body.data, "\"log\":[[7,7]]"));
    assert_non_null(strstr((char *)resp.body.data, "\"gaps\":1"));
    ih_resp_free(&resp);
    char path[256];
    snprintf(path, sizeof(path), "/v1/export?device=%s&stream=log", d.id);
    assert_int_equal(ih_http(g_srv.port, "GET", path, NULL, 0, &resp), 0);
    json_t *row = json_loads((char *)resp.body.data, 0, NULL);
    assert_non_null(row);
    assert_string_equal(json_string_value(json_object_get(row, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(row, "message")), "camera \"0\" lost");
    int64_t ts = json_integer_value(json_object_get(row, "ts"));
    int64_t tsc = json_integer_value(json_object_get(row, "ts_corrected"));
    assert_int_equal(ts, device_now - 5000000000ll);
    /* Corrected: 5 s before the ingest received it. */
    assert_true(tsc >= before - 5000000000ll - 1000000000ll && tsc <= after - 5000000000ll);
    json_decref(row);
    ih_resp_free(&resp);
    snprintf(path, sizeof(path), "/v1/devices/%s", d.id);
    assert_int_equal(ih_http(g_srv.port, "GET", path, NULL, 0, &resp), 0);
    assert_non_null(
        strstr((char *)resp.body.data,
               "\"log\":{\"records\":1,\"max_seq\":7,\"gap_ranges\":1,\"gap_records\":4,"
               "\"backlog\":17}"));
    /* The backlog the device reported (wire version 2) is in the device view and in /metrics. */
    assert_non_null(strstr((char *)resp.body.data, "\"backlog\":4200}"));
    ih_resp_free(&resp);
    assert_int_equal(ih_http(g_srv.port, "GET", "/metrics", NULL, 0, &resp), 0);
    char want[200];
    snprintf(want, sizeof(want),
             "ferry_device_backlog_records{device=\"%s\",stream=\"metric\"} 4200", d.id);
    assert_non_null(strstr((char *)resp.body.data, want));
    ih_resp_free(&resp);
    /* A device with a good clock: ts_corrected == ts. */
    ferry_buf_reset(&b);
    int64_t now = ferry_realtime_ns();
    assert_int_equal(ih_batch(&d, RECORD_METRIC, 1, 1, now, now - 1000000000ll, true, &b), 0);
    assert_int_equal(post_batch(g_srv.port, &b, &resp), 200);
    ih_resp_free(&resp);
    snprintf(path, sizeof(path), "/v1/export?device=%s&stream=metric", d.id);
    assert_int_equal(ih_http(g_srv.port, "GET", path, NULL, 0, &resp), 0);
    row = json_loads((char *)resp.body.data, 0, NULL);
    assert_non_null(row);
    assert_int_equal(json_integer_value(json_object_get(row, "ts")),
                     json_integer_value(json_object_get(row, "ts_corrected")));
    json_decref(row);
    ih_resp_free(&resp);
    ferry_buf_free(&b);
}

/* Recomputes the body hash of a batch whose body was changed and re-signs it: a batch that
 * verifies but whose body is malformed (the 400 path after the signature). */
static void resign_after_body_change(struct ferry_buf *b, const struct ih_device *d)
{
    struct batch_header h;
    assert_int_equal(batch_peek_header(b->data, b->len, &h, NULL), 0);
    size_t body_off = h.header_len + BATCH_SIGNATURE_LEN;
    crypto_generichash(b->data + 76, 32, b->data + body_off, b->len - body_off, NULL, 0);
    assert_int_equal(batch_patch_send_time(b->data, b->len, ferry_realtime_ns(), d->sk), 0);
}

static void batch_rejections_in_check_order(void **state)
{
    struct ih_device d, stranger;
    enrolled_device(g_srv.port, &d);
    ih_device_new(&stranger);
    ferry_strlcpy(stranger.id, "d-stranger", sizeof(stranger.id));
    struct ih_resp r;
    struct ferry_buf b = FERRY_BUF_INIT;
    int64_t now = ferry_realtime_ns();

    /* 413 first: an oversized body, even from an unknown device with garbage inside. */
    size_t big = 300 * 1024;
    uint8_t *junk = calloc(1, big);
    assert_int_equal(ih_http(g_srv.port, "POST", "/v1/batches", junk, big, &r), 0);
    assert_int_equal(r.status, 413);
    ih_resp_free(&r);
    free(junk);
    /* 400: not a batch header. */
    assert_int_equal(ih_http(g_srv.port, "POST", "/v1/batches", "FRYX-garbage", 12, &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr((char *)r.body.data, "header"));
    ih_resp_free(&r);
    assert_int_equal(ih_http(g_srv.port, "POST", "/v1/batches", "", 0, &r), 0);
    assert_int_equal(r.status, 400);
    ih_resp_free(&r);
    /* 401: unknown device (a well-formed, signed batch). */
    assert_int_equal(ih_batch(&stranger, RECORD_METRIC, 1, 3, now, now, true, &b), 0);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 401);
    assert_non_null(strstr((char *)r.body.data, "unknown device"));
    ih_resp_free(&r);
    /* 401: a known device id signed with another key. */
    struct ih_device impostor = stranger;
    ferry_strlcpy(impostor.id, d.id, sizeof(impostor.id));
    ferry_buf_reset(&b);
    assert_int_equal(ih_batch(&impostor, RECORD_METRIC, 1, 3, now, now, true, &b), 0);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 401);
    ih_resp_free(&r);
    /* 401: a flipped bit in the signature, and one in the body. */
    ferry_buf_reset(&b);
    assert_int_equal(ih_batch(&d, RECORD_METRIC, 1, 3, now, now, true, &b), 0);
    struct batch_header h;
    assert_int_equal(batch_peek_header(b.data, b.len, &h, NULL), 0);
    b.data[h.header_len + 10] ^= 0x01;
    assert_int_equal(post_batch(g_srv.port, &b, &r), 401);
    assert_non_null(strstr((char *)r.body.data, "signature"));
    ih_resp_free(&r);
    b.data[h.header_len + 10] ^= 0x01;
    b.data[b.len - 1] ^= 0x80;
    assert_int_equal(post_batch(g_srv.port, &b, &r), 401);
    ih_resp_free(&r);
    /* 400 after a valid signature: a malformed zstd frame, and a malformed raw body. */
    resign_after_body_change(&b, &d);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 400);
    assert_non_null(strstr((char *)r.body.data, "error"));
    ih_resp_free(&r);
    ferry_buf_reset(&b);
    assert_int_equal(ih_batch(&d, RECORD_METRIC, 1, 3, now, now, false, &b), 0);
    assert_int_equal(batch_peek_header(b.data, b.len, &h, NULL), 0);
    memset(b.data + h.header_len + BATCH_SIGNATURE_LEN, 0xff, 8);
    resign_after_body_change(&b, &d);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 400);
    assert_non_null(strstr((char *)r.body.data, "body"));
    ih_resp_free(&r);
    /* Nothing of the refused batches was stored. */
    char path[256];
    snprintf(path, sizeof(path), "/v1/export?device=%s&stream=metric", d.id);
    assert_int_equal(ih_http(g_srv.port, "GET", path, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    ih_resp_free(&r);
    /* 403: revoked (takes effect at once: limits.device_cache is 0 here). */
    char out[128], args[128];
    snprintf(args, sizeof(args), "device revoke %s", d.id);
    assert_int_equal(cli(out, sizeof(out), args), 0);
    ferry_buf_reset(&b);
    assert_int_equal(ih_batch(&d, RECORD_METRIC, 1, 3, now, now, true, &b), 0);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 403);
    ih_resp_free(&r);
    ferry_buf_free(&b);
}

/* One event for event_batch(): a name and string fields "k", "v", "k", "v", ... */
struct ev_spec {
    const char *name;
    const char *kv[16];
    size_t n_pairs;
};

/* Builds a signed batch of events seq first..first+n-1, one per spec. */
static int event_batch(const struct ih_device *d, uint64_t first, const struct ev_spec *ev,
                       size_t n, struct ferry_buf *out)
{
    struct batch_builder_config cfg = {
        .device_id = d->id, .secret_key = d->sk, .no_compression = true};
    struct batch_builder *b = NULL;
    int rc = batch_builder_new(&cfg, &b);
    if (rc != 0)
        return rc;
    int64_t now = ferry_realtime_ns();
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct record_field f[8];
        size_t nf = ev[i].n_pairs < 8 ? ev[i].n_pairs : 8;
        for (size_t k = 0; k < nf; k++)
            f[k] = (struct record_field){.key = {ev[i].kv[2 * k], strlen(ev[i].kv[2 * k])},
                                         .type = RECORD_FIELD_STRING,
                                         .v.s = {ev[i].kv[2 * k + 1], strlen(ev[i].kv[2 * k + 1])}};
        struct record r = {.stream = RECORD_EVENT,
                           .seq = first + i,
                           .ts_ns = now + (int64_t)i,
                           .name = {ev[i].name, strlen(ev[i].name)},
                           .fields = f,
                           .n_fields = nf};
        rc = batch_builder_add(b, &r);
    }
    if (rc == 0)
        rc = batch_builder_finish(b, now, out);
    batch_builder_free(b);
    return rc;
}

/* GET /v1/devices/{id} as parsed JSON (caller decrefs). */
static json_t *get_device(const char *id)
{
    char path[128];
    struct ih_resp r;
    snprintf(path, sizeof(path), "/v1/devices/%s", id);
    assert_int_equal(ih_http(g_srv.port, "GET", path, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_loads((char *)r.body.data, 0, NULL);
    assert_non_null(j);
    ih_resp_free(&r);
    return j;
}

/* "versions" events merge per key, across events of one batch and across batches; values a
 * device must not be trusted with (too long, control bytes) are left out. */
static void versions_events_merge_per_key(void **state)
{
    struct ih_device d;
    enrolled_device(g_srv.port, &d);
    char long_value[80];
    memset(long_value, 'v', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    struct ev_spec ev1[2] = {
        {"versions", {"ferryd", "0.9.0"}, 1},
        {"versions", {"ferryd", "1.0.0", "too_long", long_value, "ctl", "a\nb"}, 3},
    };
    struct ferry_buf b = FERRY_BUF_INIT;
    struct ih_resp r;
    assert_int_equal(event_batch(&d, 1, ev1, 2, &b), 0);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);
    ferry_buf_reset(&b);
    struct ev_spec ev2[1] = {{"versions", {"rootfs", "2.1.0"}, 1}};
    assert_int_equal(event_batch(&d, 3, ev2, 1, &b), 0);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);
    json_t *j = get_device(d.id);
    json_t *want = json_pack("{s:s, s:s}", "ferryd", "1.0.0", "rootfs", "2.1.0");
    if (!json_equal(json_object_get(j, "versions"), want)) {
        char *got = json_dumps(json_object_get(j, "versions"), 0);
        fail_msg("versions %s", got ? got : "(none)");
    }
    json_decref(want);
    json_decref(j);
    ferry_buf_free(&b);
}

#define STR(s)                                                                                     \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }

/* ---- Inventory (docs/ingest.md "Inventory") ---------------------------------------------------
 */

/* Builds a signed batch of one "inventory" event per entry: seq first+i at device time ts[i],
 * with the string fields hostname=host[i] and model=model (raw bytes, perhaps invalid UTF-8),
 * the integer field cpus=6 and the boolean field jetson=true. */
static int inventory_batch(const struct ih_device *d, uint64_t first, const int64_t *ts,
                           const char *const *host, size_t n, const char *model,
                           struct ferry_buf *out)
{
    struct batch_builder_config cfg = {
        .device_id = d->id, .secret_key = d->sk, .no_compression = true};
    struct batch_builder *b = NULL;
    int rc = batch_builder_new(&cfg, &b);
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct record_field f[4] = {
            {.key = STR("hostname"),
             .type = RECORD_FIELD_STRING,
             .v.s = {host[i], strlen(host[i])}},
            {.key = STR("model"), .type = RECORD_FIELD_STRING, .v.s = {model, strlen(model)}},
            {.key = STR("cpus"), .type = RECORD_FIELD_INT, .v.i = 6},
            {.key = STR("jetson"), .type = RECORD_FIELD_BOOL, .v.b = true},
        };
        struct record r = {.stream = RECORD_EVENT,
                           .seq = first + i,
                           .ts_ns = ts[i],
                           .name = STR("inventory"),
                           .fields = f,
                           .n_fields = 4};
        rc = batch_builder_add(b, &r);
    }
    if (rc == 0)
        rc = batch_builder_finish(b, ferry_realtime_ns(), out);
    batch_builder_free(b);
    return rc;
}

/* GET /v1/devices/{id} from the process on `port`, parsed (a reply that is not valid UTF-8
 * JSON fails here: jansson refuses it). */
static json_t *device_at(unsigned port, const char *id)
{
    char path[128];
    struct ih_resp r;
    snprintf(path, sizeof(path), "/v1/devices/%s", id);
    assert_int_equal(ih_http(port, "GET", path, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb((char *)r.body.data, r.body.len, 0, NULL);
    if (j == NULL)
        fail_msg("not valid JSON: %.*s", (int)r.body.len, (char *)r.body.data);
    ih_resp_free(&r);
    return j;
}

/* Checks the inventory the process on `port` shows for `id`: its hostname and time. */
static void expect_inventory(unsigned port, const char *id, const char *host, const char *time)
{
    json_t *j = device_at(port, id);
    json_t *inv = json_object_get(j, "inventory");
    const char *got = json_string_value(json_object_get(inv, "hostname"));
    const char *got_time = json_string_value(json_object_get(j, "inventory_time"));
    if (got == NULL || strcmp(got, host) != 0 || got_time == NULL || strcmp(got_time, time) != 0)
        fail_msg("inventory %s at %s, want %s at %s", got ? got : "(none)",
                 got_time ? got_time : "(none)", host, time);
    assert_int_equal(json_integer_value(json_object_get(inv, "cpus")), 6);
    assert_true(json_is_true(json_object_get(inv, "jetson")));
    /* ill-formed UTF-8 is replaced, the rest kept */
    const char *model = json_string_value(json_object_get(inv, "model"));
    assert_non_null(model);
    assert_non_null(strstr(model, "Orin"));
    assert_null(strchr(model, '\xff'));
    json_decref(j);
}

/* A device's newest inventory by device time is shown, whatever the arrival order: an older
 * event later in the same batch, and a resent older batch, do not replace it; a newer one does.
 * `reader` is the process the reads go to (another one than `writer` on PostgreSQL). */
static void inventory_newest_by_device_time_on(unsigned writer, unsigned reader)
{
    struct ih_device d;
    enrolled_device(writer, &d);
    json_t *j = device_at(reader, d.id);
    assert_null(json_object_get(j, "inventory"));
    assert_null(json_object_get(j, "inventory_time"));
    json_decref(j);
    const int64_t t = 1796652609000000000ll; /* 2026-12-07T14:10:09Z */
    const char *model = "NVIDIA Jetson \xff\xfe Orin";
    struct ferry_buf b = FERRY_BUF_INIT;
    struct ih_resp r;
    int64_t ts1[2] = {t + 10000000000ll + 5, t + 5000000000ll};
    const char *h1[2] = {"newer", "older-later-in-batch"};
    assert_int_equal(inventory_batch(&d, 1, ts1, h1, 2, model, &b), 0);
    assert_int_equal(post_batch(writer, &b, &r), 200);
    ih_resp_free(&r);
    expect_inventory(reader, d.id, "newer", "2026-12-07T14:10:19.000000005Z");
    /* an older batch arriving late, and the first batch resent */
    int64_t ts2[1] = {t};
    const char *h2[1] = {"resent-older"};
    struct ferry_buf old = FERRY_BUF_INIT;
    assert_int_equal(inventory_batch(&d, 3, ts2, h2, 1, model, &old), 0);
    assert_int_equal(post_batch(writer, &old, &r), 200);
    ih_resp_free(&r);
    assert_int_equal(post_batch(writer, &b, &r), 200);
    ih_resp_free(&r);
    expect_inventory(reader, d.id, "newer", "2026-12-07T14:10:19.000000005Z");
    /* a newer one replaces it */
    int64_t ts3[1] = {t + 20000000000ll};
    const char *h3[1] = {"newest"};
    ferry_buf_reset(&b);
    assert_int_equal(inventory_batch(&d, 4, ts3, h3, 1, model, &b), 0);
    assert_int_equal(post_batch(writer, &b, &r), 200);
    ih_resp_free(&r);
    expect_inventory(reader, d.id, "newest", "2026-12-07T14:10:29.000000000Z");
    ferry_buf_free(&b);
    ferry_buf_free(&old);
}

static void inventory_newest_by_device_time(void **state)
{
    (void)state;
    inventory_newest_by_device_time_on(g_srv.port, g_srv.port);
}

/* The OTA agent's ota.<state> events become per-component update states in /v1/devices: the
 * newest sequence wins even when an older batch arrives later, components are kept apart, and
 * events without a component or with oversized values are bounded. */
static void ota_events_show_update_state_per_component(void **state)
{
    struct ih_device d;
    enrolled_device(g_srv.port, &d);
    char long_reason[100];
    memset(long_reason, 'r', sizeof(long_reason) - 1);
    long_reason[sizeof(long_reason) - 1] = '\0';
    struct ev_spec newer[3] = {
        {"ota.downloading",
         {"component", "rootfs", "state", "downloading", "running_version", "1.0.0",
          "target_version", "1.1.0", "reason", "", "bytes_done", "4096"},
         6},
        {"ota.trial",
         {"component", "rootfs", "state", "trial", "running_version", "1.0.0", "target_version",
          "1.1.0", "reason", long_reason, "bytes_done", "8192"},
         6},
        {"ota.idle", {"component", "model", "running_version", "m7"}, 2},
    };
    struct ev_spec older[2] = {
        {"ota.idle", {"component", "rootfs", "state", "idle", "running_version", "0.9.0"}, 3},
        {"ota.idle", {"state", "idle"}, 1}, /* no component: ignored */
    };
    struct ferry_buf b = FERRY_BUF_INIT;
    struct ih_resp r;
    assert_int_equal(event_batch(&d, 10, newer, 3, &b), 0);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);
    ferry_buf_reset(&b);
    assert_int_equal(event_batch(&d, 1, older, 2, &b), 0);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);
    json_t *j = get_device(d.id);
    json_t *u = json_object_get(j, "updates");
    assert_int_equal(json_object_size(u), 2);
    json_t *root = json_object_get(u, "rootfs");
    assert_string_equal(json_string_value(json_object_get(root, "state")), "trial");
    assert_string_equal(json_string_value(json_object_get(root, "running_version")), "1.0.0");
    assert_string_equal(json_string_value(json_object_get(root, "target_version")), "1.1.0");
    assert_int_equal(json_integer_value(json_object_get(root, "bytes_done")), 8192);
    assert_null(json_object_get(root, "reason")); /* over 64 bytes: left out */
    assert_int_equal(json_integer_value(json_object_get(root, "seq")), 11);
    assert_true(json_is_integer(json_object_get(root, "ts")));
    json_t *model = json_object_get(u, "model");
    assert_string_equal(json_string_value(json_object_get(model, "state")),
                        "idle"); /* from the name */
    assert_string_equal(json_string_value(json_object_get(model, "running_version")), "m7");
    json_decref(j);
    /* The listing shows the same. */
    assert_int_equal(ih_http(g_srv.port, "GET", "/v1/devices", NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    j = json_loads((char *)r.body.data, 0, NULL);
    assert_non_null(j);
    ih_resp_free(&r);
    json_t *arr = json_object_get(j, "devices");
    bool found = false;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *dev = json_array_get(arr, i);
        assert_true(json_is_object(json_object_get(dev, "updates")));
        if (strcmp(json_string_value(json_object_get(dev, "id")), d.id) != 0)
            continue;
        found = true;
        assert_string_equal(
            json_string_value(json_object_get(
                json_object_get(json_object_get(dev, "updates"), "rootfs"), "state")),
            "trial");
    }
    assert_true(found);
    json_decref(j);
    ferry_buf_free(&b);
}

static void read_api_errors_and_listing(void **state)
{
    struct ih_resp r;
    assert_int_equal(ih_http(g_srv.port, "GET", "/v1/devices", NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_loads((char *)r.body.data, 0, NULL);
    assert_non_null(j);
    assert_true(json_array_size(json_object_get(j, "devices")) >= 3);
    json_decref(j);
    ih_resp_free(&r);
    assert_int_equal(ih_http(g_srv.port, "GET", "/v1/devices/no-such-device", NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    ih_resp_free(&r);
    assert_int_equal(ih_http(g_srv.port, "GET", "/v1/export?device=x", NULL, 0, &r), 0);
    assert_int_equal(r.status, 400);
    ih_resp_free(&r);
    assert_int_equal(ih_http(g_srv.port, "GET", "/v1/export?device=x&stream=bogus", NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 400);
    ih_resp_free(&r);
    assert_int_equal(
        ih_http(g_srv.port, "GET", "/v1/export?device=x&stream=log&after_seq=-1", NULL, 0, &r), 0);
    assert_int_equal(r.status, 400);
    ih_resp_free(&r);
    assert_int_equal(ih_http(g_srv.port, "GET", "/v1/export?device=nobody&stream=log", NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 404);
    ih_resp_free(&r);
}

static void metrics_exposition(void **state)
{
    struct ih_device d;
    enrolled_device(g_srv.port, &d);
    struct ferry_buf b = FERRY_BUF_INIT;
    int64_t now = ferry_realtime_ns();
    assert_int_equal(ih_batch(&d, RECORD_METRIC, 1, 4, now, now, true, &b), 0);
    struct ih_resp r;
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);
    assert_int_equal(ih_http(g_srv.port, "GET", "/metrics", NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    const char *m = (const char *)r.body.data;
    assert_non_null(strstr(m, "# TYPE ferry_ingest_batches_total counter"));
    assert_non_null(strstr(m, "ferry_ingest_rejected_total{code=\"401\"}"));
    assert_non_null(strstr(m, "ferry_ingest_batch_seconds_bucket{le=\"+Inf\"}"));
    assert_non_null(strstr(m, "ferry_ingest_commit_seconds_count"));
    char want[256];
    snprintf(want, sizeof(want), "ferry_device_last_seen_seconds{device=\"%s\"} ", d.id);
    assert_non_null(strstr(m, want));
    /* The newest sample of each series: records 1..4 have core = 0..3, usage = (i%%100)/4. */
    snprintf(want, sizeof(want),
             "ferry_device_health{device=\"%s\",metric=\"cpu.usage,core=3\"} 0.75", d.id);
    assert_non_null(strstr(m, want));
    snprintf(want, sizeof(want),
             "ferry_device_health{device=\"%s\",metric=\"cpu.temp_mc,core=3\"} 41003", d.id);
    assert_non_null(strstr(m, want));
    ih_resp_free(&r);
    ferry_buf_free(&b);
}

/* ---- valid output whatever was stored (docs/wire-format.md "Text encoding") ----------------- */

/* Runs `ferry-ingest <store options> ARGS` and returns its whole standard output in out (NUL
 * terminated; at most out_len - 1 bytes kept). Returns the exit status as pclose gives it. */
static int cli_all(char *out, size_t out_len, size_t *out_n, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s' -d '%s' %s", g_bin, g_cli_data, args);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t n = fread(out, 1, out_len - 1, p);
    out[n] = '\0';
    *out_n = n;
    char rest[256];
    while (fread(rest, 1, sizeof(rest), p) > 0)
        ;
    return pclose(p);
}

/* Registers device `id` with the CLI, the name and class given as shell words. */
static void cli_device(struct ih_device *d, const char *id, const char *name_class)
{
    char args[512], out[256];
    ih_device_new(d);
    ferry_strlcpy(d->id, id, sizeof(d->id));
    snprintf(args, sizeof(args), "device add %s %s %s", id, d->pk_hex, name_class);
    assert_int_equal(cli(out, sizeof(out), args), 0);
}

/* A batch of metric records built field by field. */
struct metric_spec {
    const char *name;
    size_t name_len;
    struct record_tag tags[4];
    size_t n_tags;
    struct record_field fields[6];
    size_t n_fields;
    int64_t ts_ns;
};

static void metric_batch(const struct ih_device *d, uint64_t first, const struct metric_spec *m,
                         size_t n, struct ferry_buf *out)
{
    struct batch_builder_config cfg = {
        .device_id = d->id, .secret_key = d->sk, .no_compression = true};
    struct batch_builder *b = NULL;
    assert_int_equal(batch_builder_new(&cfg, &b), 0);
    for (size_t i = 0; i < n; i++) {
        struct record r = {.stream = RECORD_METRIC,
                           .seq = first + i,
                           .ts_ns = m[i].ts_ns,
                           .name = {m[i].name, m[i].name_len},
                           .tags = m[i].n_tags ? m[i].tags : NULL,
                           .n_tags = m[i].n_tags,
                           .fields = m[i].fields,
                           .n_fields = m[i].n_fields};
        assert_int_equal(batch_builder_add(b, &r), 0);
    }
    assert_int_equal(batch_builder_finish(b, ferry_realtime_ns(), out), 0);
    batch_builder_free(b);
}

static void get_ok(const char *path, struct ih_resp *r)
{
    assert_int_equal(ih_http(g_srv.port, "GET", path, NULL, 0, r), 0);
    if (r->status != 200)
        fail_msg("GET %s: %ld %s", path, r->status, r->body.data ? (char *)r->body.data : "");
    assert_true(ferry_utf8_valid(r->body.data, r->body.len));
}

/* A device (or an old agent) stored invalid UTF-8, NUL, overlongs, surrogates and terminal
 * escapes in names, tags, fields and log messages, and its name holds escape sequences: every
 * output stays valid - /v1/export and /v1/devices are UTF-8 JSON (ill-formed bytes replaced by
 * U+FFFD), /metrics passes `promtool check metrics` with the NUL kept inside its label, and
 * `ferry-ingest device list` prints the escapes as text. Export keeps each field's type. */
static void hostile_bytes_give_valid_outputs(void **state)
{
    struct ih_device d;
    cli_device(&d, "hostile-1", "\"$(printf 'ev\\033[2Jil\\tx')\" \"$(printf 'cls\\377')\"");
    int64_t now = ferry_realtime_ns();
    struct metric_spec m = {.name = "m\xff",
                            .name_len = 2,
                            .tags = {{STR("nul"), STR("a\0b")}, {STR("esc"), STR("\x1b[31m")}},
                            .n_tags = 2,
                            .fields = {{.key = STR("f"), .type = RECORD_FIELD_FLOAT, .v.f = 3.0},
                                       {.key = STR("i"), .type = RECORD_FIELD_INT, .v.i = 3},
                                       {.key = STR("u"), .type = RECORD_FIELD_UINT, .v.u = 3},
                                       {.key = STR("s"),
                                        .type = RECORD_FIELD_STRING,
                                        .v.s = STR("\xc0\xaf\xed\xa0\x80ok")}},
                            .n_fields = 4,
                            .ts_ns = now};
    struct ferry_buf b = FERRY_BUF_INIT;
    struct ih_resp r;
    metric_batch(&d, 1, &m, 1, &b);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);
    /* a log record with an invalid message */
    ferry_buf_reset(&b);
    struct batch_builder_config cfg = {
        .device_id = d.id, .secret_key = d.sk, .no_compression = true};
    struct batch_builder *bb = NULL;
    assert_int_equal(batch_builder_new(&cfg, &bb), 0);
    struct record lr = {.stream = RECORD_LOG,
                        .seq = 1,
                        .ts_ns = now,
                        .name = STR("app"),
                        .level = RECORD_LEVEL_WARN,
                        .message = STR("bad \xfe\0 msg\x1b]0;t\x07")};
    assert_int_equal(batch_builder_add(bb, &lr), 0);
    assert_int_equal(batch_builder_finish(bb, now, &b), 0);
    batch_builder_free(bb);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);

    get_ok("/v1/export?device=hostile-1&stream=metric", &r);
    json_error_t jerr;
    json_t *j = json_loadb((char *)r.body.data, r.body.len, JSON_ALLOW_NUL, &jerr);
    if (j == NULL)
        fail_msg("export is not JSON: %s: %s", jerr.text, (char *)r.body.data);
    ih_resp_free(&r);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "m\xef\xbf\xbd");
    json_t *tags = json_object_get(j, "tags");
    assert_int_equal(json_string_length(json_object_get(tags, "nul")), 3);
    assert_memory_equal(json_string_value(json_object_get(tags, "nul")), "a\0b", 3);
    assert_string_equal(json_string_value(json_object_get(tags, "esc")), "\x1b[31m");
    json_t *fields = json_object_get(j, "fields");
    assert_true(json_is_real(json_object_get(fields, "f")));
    assert_true(json_is_integer(json_object_get(fields, "i")));
    assert_true(json_is_integer(json_object_get(fields, "u")));
    assert_string_equal(json_string_value(json_object_get(fields, "s")),
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdok");
    json_t *want =
        json_pack("{s:s,s:s,s:s,s:s}", "f", "float", "i", "int", "u", "uint", "s", "string");
    assert_true(json_equal(json_object_get(j, "field_types"), want));
    json_decref(want);
    json_decref(j);

    get_ok("/v1/export?device=hostile-1&stream=log", &r);
    j = json_loadb((char *)r.body.data, r.body.len, JSON_ALLOW_NUL, &jerr);
    assert_non_null(j);
    ih_resp_free(&r);
    const char *msg = json_string_value(json_object_get(j, "message"));
    static const char want_msg[] = "bad \xef\xbf\xbd\0 msg\x1b]0;t\x07";
    assert_int_equal(json_string_length(json_object_get(j, "message")), sizeof(want_msg) - 1);
    assert_memory_equal(msg, want_msg, sizeof(want_msg) - 1);
    json_decref(j);

    get_ok("/v1/devices/hostile-1", &r);
    j = json_loadb((char *)r.body.data, r.body.len, 0, &jerr);
    assert_non_null(j);
    ih_resp_free(&r);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "ev\x1b[2Jil\tx");
    assert_string_equal(json_string_value(json_object_get(j, "device_class")), "cls\xef\xbf\xbd");
    json_decref(j);
    get_ok("/v1/devices", &r);
    j = json_loadb((char *)r.body.data, r.body.len, 0, &jerr);
    assert_non_null(j);
    json_decref(j);
    ih_resp_free(&r);

    /* /metrics: the NUL stays inside the label, shown as the text \x00 */
    get_ok("/metrics", &r);
    const char *want_line = "ferry_device_health{device=\"hostile-1\",metric=\"m\xef\xbf\xbd.f,"
                            "nul=a\\\\x00b,esc=\\\\x1b[31m\"} 3\n";
    if (strstr((char *)r.body.data, want_line) == NULL)
        fail_msg("no line %s in\n%s", want_line, (char *)r.body.data);
    char path[256], cmd[512];
    snprintf(path, sizeof(path), "%s/metrics.txt", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(r.body.data, 1, r.body.len, f), r.body.len);
    assert_int_equal(fclose(f), 0);
    ih_resp_free(&r);
    if (system("command -v promtool >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s'", path);
        int st = system(cmd);
        if (st != 0)
            fail_msg("promtool check metrics failed (%d) on %s", st, path);
    } else {
        fprintf(stderr, "note: promtool not installed (Debian package prometheus): the exposition "
                        "format was checked for UTF-8 only\n");
    }

    /* the table for people: no control byte but tab and newline, escapes visible */
    char out[16384];
    size_t n = 0; /* set by cli_all(); -O3 cannot see that on every path */
    assert_int_equal(cli_all(out, sizeof(out), &n, "device list"), 0);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 && out[i] != '\t' && out[i] != '\n')
            fail_msg("device list printed control byte 0x%02x at %zu", (unsigned char)out[i], i);
    assert_true(ferry_utf8_valid(out, n));
    assert_non_null(strstr(out, "hostile-1\t"));
    assert_non_null(strstr(out, "\tev\\x1b[2Jil\\tx\tcls\\xff\t"));
    /* last seen for a person: UTC time and age */
    const char *line = strstr(out, "hostile-1\t");
    const char *eol = strchr(line, '\n');
    const char *age = strstr(line, "Z (");
    assert_true(age != NULL && age < eol && strstr(age, "s ago)\t") != NULL);
    assert_int_equal(cli_all(out, sizeof(out), &n, "device list --json"), 0);
    j = json_loadb(out, n, 0, &jerr);
    if (j == NULL)
        fail_msg("device list --json: %s", jerr.text);
    bool found = false;
    json_t *arr = json_object_get(j, "devices");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *dev = json_array_get(arr, i);
        if (strcmp(json_string_value(json_object_get(dev, "id")), "hostile-1") == 0) {
            found = true;
            assert_string_equal(json_string_value(json_object_get(dev, "name")), "ev\x1b[2Jil\tx");
            assert_true(json_is_integer(json_object_get(dev, "last_seen_ns")));
        }
    }
    assert_true(found);
    json_decref(j);
    ferry_buf_free(&b);
}

/* ferry_device_health shows the newest value by device time: within a batch whatever the
 * records' order, and a backfilled batch (older device time) arriving later changes nothing. */
static void health_is_newest_by_device_time(void **state)
{
    struct ih_device d;
    cli_device(&d, "health-order", "h c");
    int64_t t = ferry_realtime_ns() - 3600ll * 1000000000;
    struct metric_spec m[2] = {
        {.name = "h",
         .name_len = 1,
         .fields = {{.key = STR("v"), .type = RECORD_FIELD_FLOAT, .v.f = 5}},
         .n_fields = 1,
         .ts_ns = t + 5000000000},
        {.name = "h",
         .name_len = 1,
         .fields = {{.key = STR("v"), .type = RECORD_FIELD_FLOAT, .v.f = 10}},
         .n_fields = 1,
         .ts_ns = t + 10000000000},
    };
    struct ferry_buf b = FERRY_BUF_INIT;
    struct ih_resp r;
    const char *line = "ferry_device_health{device=\"health-order\",metric=\"h.v\"} ";
    metric_batch(&d, 1, m, 2, &b);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);
    get_ok("/metrics", &r);
    const char *at = strstr((char *)r.body.data, line);
    assert_non_null(at);
    assert_true(strncmp(at + strlen(line), "10\n", 3) == 0);
    ih_resp_free(&r);
    /* the backlog of an hour before */
    struct metric_spec old = {.name = "h",
                              .name_len = 1,
                              .fields = {{.key = STR("v"), .type = RECORD_FIELD_FLOAT, .v.f = 1}},
                              .n_fields = 1,
                              .ts_ns = t};
    ferry_buf_reset(&b);
    metric_batch(&d, 3, &old, 1, &b);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);
    get_ok("/metrics", &r);
    at = strstr((char *)r.body.data, line);
    assert_non_null(at);
    if (strncmp(at + strlen(line), "10\n", 3) != 0)
        fail_msg("backfill replaced the newer value: %.80s", at);
    ih_resp_free(&r);
    /* a newer sample replaces it */
    struct metric_spec newer = {
        .name = "h",
        .name_len = 1,
        .fields = {{.key = STR("v"), .type = RECORD_FIELD_FLOAT, .v.f = 20}},
        .n_fields = 1,
        .ts_ns = t + 20000000000};
    ferry_buf_reset(&b);
    metric_batch(&d, 4, &newer, 1, &b);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);
    get_ok("/metrics", &r);
    at = strstr((char *)r.body.data, line);
    assert_non_null(at);
    assert_true(strncmp(at + strlen(line), "20\n", 3) == 0);
    ih_resp_free(&r);
    ferry_buf_free(&b);
}

/* After ota.committed the device's versions show the new running version at once (ferryd
 * reports its "versions" event only when it starts). */
static void ota_committed_updates_versions(void **state)
{
    struct ih_device d;
    enrolled_device(g_srv.port, &d);
    struct ev_spec start[1] = {{"versions", {"ferryd", "1.0.0", "rootfs", "1.0.0"}, 2}};
    struct ev_spec commit[2] = {
        {"ota.trial",
         {"component", "rootfs", "state", "trial", "running_version", "1.0.0", "target_version",
          "1.1.0"},
         4},
        {"ota.committed",
         {"component", "rootfs", "state", "committed", "running_version", "1.1.0", "target_version",
          "1.1.0"},
         4},
    };
    struct ferry_buf b = FERRY_BUF_INIT;
    struct ih_resp r;
    assert_int_equal(event_batch(&d, 1, start, 1, &b), 0);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);
    ferry_buf_reset(&b);
    assert_int_equal(event_batch(&d, 2, commit, 2, &b), 0);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);
    json_t *j = get_device(d.id);
    json_t *want = json_pack("{s:s, s:s}", "ferryd", "1.0.0", "rootfs", "1.1.0");
    if (!json_equal(json_object_get(j, "versions"), want)) {
        char *got = json_dumps(json_object_get(j, "versions"), 0);
        fail_msg("versions %s", got ? got : "(none)");
    }
    json_decref(want);
    json_decref(j);
    ferry_buf_free(&b);
}

/* Ids of GET path's devices, comma-joined with a trailing comma, into out. */
static void listed_ids(const char *path, char *out, size_t out_len)
{
    struct ih_resp r;
    get_ok(path, &r);
    json_t *j = json_loadb((char *)r.body.data, r.body.len, 0, NULL);
    assert_non_null(j);
    ih_resp_free(&r);
    out[0] = '\0';
    json_t *arr = json_object_get(j, "devices");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        size_t len = strlen(out);
        snprintf(out + len, out_len - len, "%s,",
                 json_string_value(json_object_get(json_array_get(arr, i), "id")));
    }
    json_decref(j);
}

/* GET /v1/devices?offline_for=&class=&version=: each filter alone and together; unknown
 * parameters and bad values are 400. */
static void devices_filters(void **state)
{
    struct ih_device a, b2, c;
    cli_device(&a, "filt-a", "a filter-class-x");
    cli_device(&b2, "filt-b", "b filter-class-x");
    cli_device(&c, "filt-c", "c filter-class-y");
    struct ev_spec v1[1] = {{"versions", {"rootfs", "7.7.7-filt"}, 1}};
    struct ev_spec v2[1] = {{"versions", {"model", "7.7.7-filt"}, 1}};
    struct ferry_buf b = FERRY_BUF_INIT;
    struct ih_resp r;
    assert_int_equal(event_batch(&a, 1, v1, 1, &b), 0);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);
    ferry_buf_reset(&b);
    assert_int_equal(event_batch(&c, 1, v2, 1, &b), 0);
    assert_int_equal(post_batch(g_srv.port, &b, &r), 200);
    ih_resp_free(&r);
    char ids[4096];
    listed_ids("/v1/devices?class=filter-class-x", ids, sizeof(ids));
    assert_string_equal(ids, "filt-a,filt-b,");
    listed_ids("/v1/devices?class=filter-class-x&offline_for=1h", ids, sizeof(ids));
    assert_string_equal(ids, "filt-b,"); /* never seen counts as offline */
    listed_ids("/v1/devices?version=7.7.7-filt", ids, sizeof(ids));
    assert_string_equal(ids, "filt-a,filt-c,");
    listed_ids("/v1/devices?version=rootfs:7.7.7-filt", ids, sizeof(ids));
    assert_string_equal(ids, "filt-a,");
    listed_ids("/v1/devices?version=rootfs:7.7.7-filt&class=filter-class-y", ids, sizeof(ids));
    assert_string_equal(ids, "");
    static const char *const bad[] = {"/v1/devices?colour=red", "/v1/devices?offline_for=soon",
                                      "/v1/devices?version=rootfs:", "/v1/devices?version="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ih_http(g_srv.port, "GET", bad[i], NULL, 0, &r), 0);
        if (r.status != 400)
            fail_msg("%s: %ld", bad[i], r.status);
        ih_resp_free(&r);
    }
    ferry_buf_free(&b);
}

static void slow_client_times_out_and_connection_limit(void **state)
{
    /* A separate server: 1 s timeout, 2 connections. */
    struct ih_server s;
    char data[256];
    snprintf(data, sizeof(data), "%s/conn-data", g_dir);
    const char *args[] = {
        "-d", data, "--server.timeout", "1s", "--server.max_connections", "2", "--server.workers",
        "1",  NULL};
    assert_int_equal(ih_start(&s, g_bin, g_dir, args), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fds[3];
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    char buf[2048];
    for (int i = 0; i < 3; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
        struct timeval tv = {20, 0};
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        assert_int_equal(send(fds[i], req, strlen(req), 0), (ssize_t)strlen(req));
        ssize_t n = recv(fds[i], buf, sizeof(buf) - 1, 0);
        assert_true(n > 0);
        buf[n] = '\0';
        if (i < 2)
            assert_non_null(strstr(buf, "HTTP/1.1 200"));
        else
            assert_non_null(
                strstr(buf, "HTTP/1.1 503")); /* the third connection is over the limit */
    }
    /* A client that sends half a request and stalls is dropped after the timeout. */
    int slow = fds[0];
    assert_int_equal(
        send(slow, "POST /v1/batches HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", 53, 0), 53);
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    ssize_t n;
    while ((n = recv(slow, buf, sizeof(buf), 0)) > 0)
        ;
    gettimeofday(&t1, NULL);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_usec - t0.tv_usec) / 1e6;
    assert_int_equal(n, 0); /* closed by the server, not our 20 s receive timeout */
    assert_true(waited >= 0.5 && waited < 15.0);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    assert_int_equal(ih_stop(&s), 0);
}

struct post_arg {
    unsigned port;
    const struct ferry_buf *b;
    long status;
    char retry_after[32];
};

static void *post_thread(void *arg)
{
    struct post_arg *a = arg;
    struct ih_resp r;
    if (ih_http(a->port, "POST", "/v1/batches", a->b->data, a->b->len, &r) == 0) {
        a->status = r.status;
        ferry_strlcpy(a->retry_after, r.retry_after, sizeof(a->retry_after));
    }
    ih_resp_free(&r);
    return NULL;
}

/* The value of an unlabelled metric in /metrics (or -1). */
static double metric_value(unsigned port, const char *name)
{
    struct ih_resp r;
    double v = -1;
    char needle[128];
    snprintf(needle, sizeof(needle), "\n%s ", name);
    if (ih_http(port, "GET", "/metrics", NULL, 0, &r) == 0 && r.status == 200) {
        const char *p = strstr((const char *)r.body.data, needle);
        if (p != NULL)
            v = strtod(p + strlen(needle), NULL);
    }
    ih_resp_free(&r);
    return v;
}

/* Polls until `name` satisfies the predicate (up to ~30 s). */
static bool wait_metric(unsigned port, const char *name, double min, double max)
{
    for (int i = 0; i < 1500; i++) {
        double v = metric_value(port, name);
        if (v >= min && v <= max)
            return true;
        usleep(20000);
    }
    return false;
}

static void overload_429_fair_share_and_503_queue_full(void **state)
{
    struct ih_server s;
    char data[256];
    snprintf(data, sizeof(data), "%s/overload-data", g_dir);
    /* One batch per 100 s after a burst of 3: the 4th is refused however slow this machine is. */
    /* group_max_records 1: the storage thread takes one batch per group, so with its commit
     * blocked exactly one batch waits in the queue. */
    const char *args[] = {"-d",
                          data,
                          "--limits.queue_max",
                          "1",
                          "--limits.device_rate",
                          "0.01",
                          "--limits.device_burst",
                          "3",
                          "--limits.group_max_records",
                          "1",
                          NULL};
    assert_int_equal(ih_start(&s, g_bin, g_dir, args), 0);
    g_cli_data = data;
    use_viewer_token("it-overload");
    struct ih_device d, e, f, g;
    enrolled_device(s.port, &d);
    enrolled_device(s.port, &e);
    enrolled_device(s.port, &f);
    enrolled_device(s.port, &g);
    struct ferry_buf b = FERRY_BUF_INIT;
    int64_t now = ferry_realtime_ns();
    assert_int_equal(ih_batch(&d, RECORD_METRIC, 1, 2, now, now, true, &b), 0);
    /* 429: a burst of 3, then 1 batch/s: the 4th quick batch is over the device's share. */
    struct ih_resp r;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(post_batch(s.port, &b, &r), 200);
        ih_resp_free(&r);
    }
    assert_int_equal(post_batch(s.port, &b, &r), 429);
    assert_true(strlen(r.retry_after) > 0);
    uint64_t ra = 0;
    assert_int_equal(ferry_parse_u64(r.retry_after, 3600, &ra), 0);
    assert_true(ra >= 50 && ra <= 100);
    ih_resp_free(&r);
    /* Another device is not affected. */
    struct ferry_buf be = FERRY_BUF_INIT, bf = FERRY_BUF_INIT;
    assert_int_equal(ih_batch(&e, RECORD_METRIC, 1, 2, now, now, true, &be), 0);
    assert_int_equal(ih_batch(&f, RECORD_METRIC, 1, 2, now, now, true, &bf), 0);

    /* 503: hold LMDB's writer lock from here, so the storage thread stalls; one batch waits in
     * the commit transaction, one in the queue (queue_max 1), the third is refused. */
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)64 << 30), 0);
    assert_int_equal(mdb_env_open(env, data, MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    pthread_t t1, t2;
    struct post_arg a1 = {s.port, &be, 0, ""}, a2 = {s.port, &bf, 0, ""};
    /* e's batch: received, queued, then taken by the storage thread, which blocks on the lock. */
    double bytes0 = metric_value(s.port, "ferry_ingest_batch_bytes_total");
    assert_true(bytes0 > 0);
    assert_int_equal(pthread_create(&t1, NULL, post_thread, &a1), 0);
    assert_true(wait_metric(s.port, "ferry_ingest_batch_bytes_total", bytes0 + 1, 1e18));
    assert_true(wait_metric(s.port, "ferry_ingest_queue_depth", 0, 0));
    /* f's batch: waits in the queue, which is then full. */
    assert_int_equal(pthread_create(&t2, NULL, post_thread, &a2), 0);
    assert_true(wait_metric(s.port, "ferry_ingest_queue_depth", 1, 1));
    ferry_buf_reset(&b);
    assert_int_equal(ih_batch(&g, RECORD_METRIC, 10, 2, now, now, true, &b), 0);
    assert_int_equal(post_batch(s.port, &b, &r), 503);
    assert_string_equal(r.retry_after, "1");
    ih_resp_free(&r);
    /* Nothing was acknowledged while the commit could not happen. */
    assert_int_equal(a1.status, 0);
    assert_int_equal(a2.status, 0);
    mdb_txn_abort(txn);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    mdb_env_close(env);
    assert_int_equal(a1.status, 200);
    assert_int_equal(a2.status, 200);
    assert_int_equal(ih_stop(&s), 0);
    g_cli_data = g_data;
    ih_set_token(g_viewer);
    ferry_buf_free(&b);
    ferry_buf_free(&be);
    ferry_buf_free(&bf);
}

/* limits.queue_max_bytes: with the storage thread stalled (LMDB's writer lock held here), one
 * batch is held and a second is refused 503 for the bytes it would add, although the queue has
 * room for 4096 batches; nothing is lost: both are stored once the stall ends. */
static void queued_batches_bounded_in_bytes(void **state)
{
    (void)state;
    char data[256];
    snprintf(data, sizeof(data), "%s/bytes-data", g_dir);
    const char *args[] = {"-d", data, "--limits.queue_max_bytes", "64KiB", NULL};
    struct ih_server s;
    assert_int_equal(ih_start(&s, g_bin, g_dir, args), 0);
    g_cli_data = data;
    use_viewer_token("it-bytes");
    struct ih_device e, f;
    enrolled_device(s.port, &e);
    enrolled_device(s.port, &f);
    int64_t now = ferry_realtime_ns();
    struct ferry_buf be = FERRY_BUF_INIT, bf = FERRY_BUF_INIT;
    assert_int_equal(ih_batch(&e, RECORD_METRIC, 1, 500, now, now, true, &be), 0);
    assert_int_equal(ih_batch(&f, RECORD_METRIC, 1, 500, now, now, true, &bf), 0);
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)64 << 30), 0);
    assert_int_equal(mdb_env_open(env, data, MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    pthread_t t1;
    struct post_arg a1 = {s.port, &be, 0, ""};
    double bytes0 = metric_value(s.port, "ferry_ingest_batch_bytes_total");
    assert_int_equal(pthread_create(&t1, NULL, post_thread, &a1), 0);
    assert_true(wait_metric(s.port, "ferry_ingest_batch_bytes_total", bytes0 + 1, 1e18));
    assert_true(wait_metric(s.port, "ferry_ingest_queue_depth", 0, 0));
    struct ih_resp r;
    assert_int_equal(post_batch(s.port, &bf, &r), 503);
    assert_string_equal(r.retry_after, "1");
    assert_non_null(strstr((char *)r.body.data, "commit queue full"));
    ih_resp_free(&r);
    assert_int_equal(a1.status, 0);
    mdb_txn_abort(txn);
    pthread_join(t1, NULL);
    mdb_env_close(env);
    assert_int_equal(a1.status, 200);
    assert_int_equal(post_batch(s.port, &bf, &r), 200);
    ih_resp_free(&r);
    assert_int_equal(ih_stop(&s), 0);
    g_cli_data = g_data;
    ih_set_token(g_viewer);
    ferry_buf_free(&be);
    ferry_buf_free(&bf);
}

/* POST /v1/enroll with a body built from the parts (signature NULL: none). */
static long enroll_raw(unsigned port, const char *token, const char *pk_hex, const char *sig,
                       struct ih_resp *r)
{
    char body[768];
    if (sig != NULL)
        snprintf(body, sizeof(body),
                 "{\"token\":\"%s\",\"public_key\":\"%s\",\"signature\":\"%s\"}", token, pk_hex,
                 sig);
    else
        snprintf(body, sizeof(body), "{\"token\":\"%s\",\"public_key\":\"%s\"}", token, pk_hex);
    assert_int_equal(ih_http_h(port, "POST", "/v1/enroll", body, strlen(body), NULL, r), 0);
    return r->status;
}

/* Proof of possession: an all-zero key, a low-order key, a key the enroller does not hold and an
 * unsigned request are refused (all were enrolled with 200 before); then failed enrolments from
 * one address are answered 429 with Retry-After, before the token is looked at. */
static void enroll_needs_proof_of_possession_and_is_rate_limited(void **state)
{
    (void)state;
    char data[256];
    snprintf(data, sizeof(data), "%s/enroll-limit", g_dir);
    const char *args[] = {"-d", data, "--limits.enroll_failures_per_address", "6", NULL};
    struct ih_server s;
    assert_int_equal(ih_start(&s, g_bin, g_dir, args), 0);
    g_cli_data = data;
    char tok[64];
    new_token(tok, sizeof(tok), true);
    struct ih_device a, other;
    ih_device_new(&a);
    ih_device_new(&other);
    struct ih_resp r;
    char sig[REQSIGN_SIG_HEX + 1], zero_hex[65];
    memset(zero_hex, '0', 64);
    zero_hex[64] = '\0';
    /* all-zero key, "signed" with some key */
    assert_int_equal(reqsign_enroll_sign(a.sk, zero_hex, tok, sig), 0);
    assert_int_equal(enroll_raw(s.port, tok, zero_hex, sig, &r), 400);
    ih_resp_free(&r);
    /* a low-order point (order 8):
     * 0x26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05 */
    const char *low = "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05";
    assert_int_equal(reqsign_enroll_sign(a.sk, low, tok, sig), 0);
    assert_int_equal(enroll_raw(s.port, tok, low, sig, &r), 400);
    ih_resp_free(&r);
    /* a's public key signed by another key: the enroller does not hold it */
    assert_int_equal(reqsign_enroll_sign(other.sk, a.pk_hex, tok, sig), 0);
    assert_int_equal(enroll_raw(s.port, tok, a.pk_hex, sig, &r), 400);
    assert_non_null(strstr((char *)r.body.data, "does not verify"));
    ih_resp_free(&r);
    /* unsigned */
    assert_int_equal(enroll_raw(s.port, tok, a.pk_hex, NULL, &r), 400);
    assert_non_null(strstr((char *)r.body.data, "signature"));
    ih_resp_free(&r);
    /* a signature for another token does not carry over */
    assert_int_equal(reqsign_enroll_sign(a.sk, a.pk_hex, "another-token-0000", sig), 0);
    assert_int_equal(enroll_raw(s.port, tok, a.pk_hex, sig, &r), 400);
    ih_resp_free(&r);
    /* properly signed: enrolled */
    assert_int_equal(enroll(s.port, tok, &a, &r), 200);
    ih_resp_free(&r);
    /* Five failures so far; the sixth empties the bucket, then 429 even for a good request. */
    struct ih_device b;
    ih_device_new(&b);
    assert_int_equal(enroll(s.port, "0123456789abcdef0123", &b, &r), 401);
    ih_resp_free(&r);
    assert_int_equal(enroll(s.port, tok, &b, &r), 429);
    uint64_t ra = 0;
    assert_int_equal(ferry_parse_u64(r.retry_after, 3600, &ra), 0);
    assert_true(ra >= 1 && ra <= 60);
    ih_resp_free(&r);
    assert_int_equal(ih_stop(&s), 0);
    g_cli_data = g_data;
}

/* ---- Authentication: API tokens and roles, device-signed requests --------------------------- */

/* GET `path` with "Authorization: <authz>" (NULL: no header at all). */
static long get_authz(unsigned port, const char *path, const char *authz, struct ih_resp *r)
{
    char line[256];
    snprintf(line, sizeof(line), "Authorization: %s", authz != NULL ? authz : "");
    const char *h[] = {line, NULL};
    assert_int_equal(ih_http_h(port, "GET", path, NULL, 0, authz != NULL ? h : NULL, r), 0);
    return r->status;
}

static long get_bearer(unsigned port, const char *path, const char *token, struct ih_resp *r)
{
    char authz[200];
    snprintf(authz, sizeof(authz), "Bearer %s", token);
    return get_authz(port, path, authz, r);
}

static void expect_status(unsigned port, const char *path, const char *token, long want,
                          const char *body_has)
{
    struct ih_resp r;
    long got = token != NULL ? get_bearer(port, path, token, &r) : get_authz(port, path, NULL, &r);
    if (got != want || (body_has != NULL && strstr((char *)r.body.data, body_has) == NULL))
        fail_msg("GET %s with %s: %ld %s (wanted %ld with \"%s\")", path,
                 token != NULL ? token : "no token", got, (char *)r.body.data, want,
                 body_has != NULL ? body_has : "");
    if (want == 401)
        assert_int_equal(strncmp(r.www_authenticate, "Bearer", 6), 0);
    ih_resp_free(&r);
}

static void every_endpoint_needs_a_valid_token_of_the_right_role(void **state)
{
    (void)state;
    struct ih_device d;
    enrolled_device(g_srv.port, &d);
    char viewer[128], oper[128], admin[128], expired[128], revoked[128], out[256];
    api_token(viewer, sizeof(viewer), "--role viewer --name auth-viewer");
    api_token(oper, sizeof(oper), "--role operator --name auth-operator");
    api_token(admin, sizeof(admin), "--role admin --name auth-admin");
    api_token(expired, sizeof(expired), "--role admin --name auth-expired --expires 1s");
    api_token(revoked, sizeof(revoked), "--role admin --name auth-revoked");
    assert_int_equal(cli(out, sizeof(out), "token revoke auth-revoked"), 0);
    /* A name stays taken; a role must be one of the three; a past date is refused. */
    assert_int_not_equal(cli(out, sizeof(out), "token create --role admin --name auth-revoked"), 0);
    assert_int_not_equal(cli(out, sizeof(out), "token create --role root --name x 2>/dev/null"), 0);
    assert_int_not_equal(
        cli(out, sizeof(out), "token create --role viewer --name y --expires 2001-01-01"), 0);
    usleep(1200 * 1000); /* auth-expired expires */
    /* The viewer's id with a wrong secret, and malformed headers. */
    char forged[128];
    snprintf(forged, sizeof(forged), "%.21s%064d", viewer, 0);
    char dev_path[128], export_path[160];
    snprintf(dev_path, sizeof(dev_path), "/v1/devices/%s", d.id);
    snprintf(export_path, sizeof(export_path), "/v1/export?device=%s&stream=metric", d.id);
    const char *reads[] = {"/v1/devices", dev_path, export_path, "/metrics"};
    for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
        expect_status(g_srv.port, reads[i], NULL, 401, "authentication required");
        expect_status(g_srv.port, reads[i], forged, 401, "invalid token");
        expect_status(g_srv.port, reads[i], "fyt_short", 401, "malformed");
        expect_status(g_srv.port, reads[i], expired, 401, "expired");
        expect_status(g_srv.port, reads[i], revoked, 401, "revoked");
        expect_status(g_srv.port, reads[i], viewer, 200, NULL);
        expect_status(g_srv.port, reads[i], oper, 200, NULL);
        expect_status(g_srv.port, reads[i], admin, 200, NULL);
        struct ih_resp r;
        assert_int_equal(get_authz(g_srv.port, reads[i], "Basic dXNlcjpwYXNz", &r), 401);
        ih_resp_free(&r);
    }
    /* The audit log is for admins. */
    expect_status(g_srv.port, "/v1/audit", NULL, 401, NULL);
    expect_status(g_srv.port, "/v1/audit", viewer, 403, "role");
    expect_status(g_srv.port, "/v1/audit", oper, 403, "role");
    expect_status(g_srv.port, "/v1/audit", expired, 401, "expired");
    expect_status(g_srv.port, "/v1/audit", revoked, 401, "revoked");
    struct ih_device joined; /* a successful enrolment is audited too */
    enrolled_device(g_srv.port, &joined);
    char joined_actor[96];
    snprintf(joined_actor, sizeof(joined_actor), "device:%s", joined.id);
    struct ih_resp r;
    assert_int_equal(get_bearer(g_srv.port, "/v1/audit?limit=10000", admin, &r), 200);
    json_t *j = json_loads((char *)r.body.data, 0, NULL);
    assert_non_null(j);
    bool created = false, revoked_seen = false, refused = false, enrolled = false;
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(j, "events"), i, ev)
    {
        const char *action = json_string_value(json_object_get(ev, "action"));
        const char *actor = json_string_value(json_object_get(ev, "actor"));
        const char *target = json_string_value(json_object_get(ev, "target"));
        created |= strcmp(action, "token.create") == 0 && strstr(target, "auth-admin") != NULL &&
                   strncmp(actor, "cli:", 4) == 0;
        revoked_seen |= strcmp(action, "token.revoke") == 0 && strstr(target, "auth-revoked");
        enrolled |= strcmp(action, "device.enroll") == 0 && strcmp(actor, joined_actor) == 0 &&
                    json_string_value(json_object_get(ev, "source"))[0] == '1';
        refused |= strcmp(actor, "token:auth-viewer") == 0 && strcmp(target, "/v1/audit") == 0 &&
                   json_integer_value(json_object_get(ev, "status")) == 403 &&
                   json_string_value(json_object_get(ev, "source"))[0] == '1';
    }
    assert_true(created);
    assert_true(revoked_seen);
    assert_true(refused);
    assert_true(enrolled);
    /* No token appears in the log, only names and ids. */
    assert_null(strstr((char *)r.body.data, admin));
    json_decref(j);
    ih_resp_free(&r);
    /* Operator actions over the API are for admins: POST /v1/devices, .../revoke. */
    struct ih_device x;
    ih_device_new(&x);
    char add_body[256];
    snprintf(add_body, sizeof(add_body),
             "{\"id\":\"api-added-1\",\"public_key\":\"%s\",\"name\":\"n\",\"device_class\":\"c\"}",
             x.pk_hex);
    const char *who[] = {NULL, viewer, oper, expired, revoked, forged};
    const long want[] = {401, 403, 403, 401, 401, 401};
    for (size_t k = 0; k < sizeof(who) / sizeof(who[0]); k++) {
        char line[200];
        snprintf(line, sizeof(line), "Authorization: Bearer %s", who[k] ? who[k] : "");
        const char *h[] = {line, NULL};
        assert_int_equal(ih_http_h(g_srv.port, "POST", "/v1/devices", add_body, strlen(add_body),
                                   who[k] ? h : NULL, &r),
                         0);
        assert_int_equal(r.status, want[k]);
        ih_resp_free(&r);
        assert_int_equal(ih_http_h(g_srv.port, "POST", "/v1/devices/api-added-1/revoke", "", 0,
                                   who[k] ? h : NULL, &r),
                         0);
        assert_int_equal(r.status, want[k]);
        ih_resp_free(&r);
    }
    /* The CLI as a client of the API (another host): add, list, revoke with the admin token; a
     * viewer token is refused. */
    char cmd[768], line[512];
    snprintf(cmd, sizeof(cmd),
             "FERRY_INGEST_TOKEN='%s' '%s' --url http://127.0.0.1:%u device add api-added-1 %s "
             "jetson-9 orin",
             admin, g_bin, g_srv.port, x.pk_hex);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "'%s' --url http://127.0.0.1:%u --token '%s' device list", g_bin,
             g_srv.port, admin);
    FILE *lp = popen(cmd, "r");
    assert_non_null(lp);
    bool listed = false;
    while (fgets(line, sizeof(line), lp) != NULL)
        listed |= strncmp(line, "api-added-1\t", 12) == 0 && strstr(line, "\tactive\t") != NULL;
    assert_int_equal(pclose(lp), 0);
    assert_true(listed);
    snprintf(cmd, sizeof(cmd),
             "'%s' --url http://127.0.0.1:%u --token '%s' device revoke api-added-1 2>/dev/null",
             g_bin, g_srv.port, viewer);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd),
             "'%s' --url http://127.0.0.1:%u --token '%s' device revoke api-added-1", g_bin,
             g_srv.port, admin);
    assert_int_equal(system(cmd), 0);
    snprintf(dev_path, sizeof(dev_path), "/v1/devices/api-added-1");
    assert_int_equal(get_bearer(g_srv.port, dev_path, viewer, &r), 200);
    assert_non_null(strstr((char *)r.body.data, "\"revoked\":true"));
    ih_resp_free(&r);
    /* ...and the audit log names the admin token for both changes. */
    assert_int_equal(get_bearer(g_srv.port, "/v1/audit?limit=10000", admin, &r), 200);
    assert_non_null(strstr((char *)r.body.data,
                           "\"actor\":\"token:auth-admin\",\"action\":\"http.POST\",\"target\":"
                           "\"/v1/devices\""));
    assert_non_null(strstr((char *)r.body.data, "\"target\":\"/v1/devices/api-added-1/revoke\""));
    ih_resp_free(&r);
    /* Public routes need nothing; device routes do not take tokens. */
    expect_status(g_srv.port, "/healthz", NULL, 200, NULL);
    assert_int_equal(ih_http_h(g_srv.port, "POST", "/v1/enroll", "{}", 2, NULL, &r), 0);
    assert_int_equal(r.status, 400); /* reached the handler */
    ih_resp_free(&r);
    char mpath[128];
    snprintf(mpath, sizeof(mpath), "/v1/devices/%s/manifest", d.id);
    assert_int_equal(get_bearer(g_srv.port, mpath, admin, &r), 401);
    ih_resp_free(&r);
    /* token list shows states, never secrets. */
    FILE *p;
    snprintf(cmd, sizeof(cmd), "'%s' -d '%s' token list --json", g_bin, g_cli_data);
    assert_non_null(p = popen(cmd, "r"));
    assert_non_null(fgets(line, sizeof(line), p) != NULL ? line : NULL);
    struct ferry_buf all = FERRY_BUF_INIT;
    do
        assert_int_equal(ferry_buf_append(&all, line, strlen(line)), 0);
    while (fgets(line, sizeof(line), p) != NULL);
    assert_int_equal(pclose(p), 0);
    assert_int_equal(ferry_buf_append_u8(&all, 0), 0);
    j = json_loads((char *)all.data, 0, NULL);
    assert_non_null(j);
    json_array_foreach(json_object_get(j, "tokens"), i, ev)
    {
        const char *name = json_string_value(json_object_get(ev, "name"));
        const char *st = json_string_value(json_object_get(ev, "state"));
        if (strcmp(name, "auth-expired") == 0)
            assert_string_equal(st, "expired");
        else if (strcmp(name, "auth-revoked") == 0)
            assert_string_equal(st, "revoked");
        else
            assert_string_equal(st, "active");
    }
    assert_null(strstr((char *)all.data, "fyt_"));
    json_decref(j);
    ferry_buf_free(&all);
}

/* A device-signed GET of `path` by the key of `signer`, claiming `as_id`, at `time_s`. */
static long device_get(unsigned port, const char *path, const struct ih_device *signer,
                       const char *as_id, int64_t time_s, struct ih_resp *r)
{
    struct reqsign_headers h;
    assert_int_equal(reqsign_sign(signer->sk, "GET", path, as_id, time_s, &h), 0);
    const char *lines[] = {h.device, h.time, h.nonce, h.signature, NULL};
    assert_int_equal(ih_http_h(port, "GET", path, NULL, 0, lines, r), 0);
    return r->status;
}

static void device_reads_only_its_own_manifest_and_artifacts(void **state)
{
    (void)state;
    struct ih_device a, b;
    enrolled_device(g_srv.port, &a);
    enrolled_device(g_srv.port, &b);
    int64_t now = ferry_realtime_ns() / 1000000000;
    char pa[128], pb[128];
    snprintf(pa, sizeof(pa), "/v1/devices/%s/manifest", a.id);
    snprintf(pb, sizeof(pb), "/v1/devices/%s/manifest?component=rootfs", b.id);
    struct ih_resp r;
    /* Unsigned (even with an operator token): 401. */
    assert_int_equal(ih_http(g_srv.port, "GET", pa, NULL, 0, &r), 0);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr((char *)r.body.data, "X-Ferry-Device"));
    ih_resp_free(&r);
    /* Its own: served (204: no release for its class yet). */
    assert_int_equal(device_get(g_srv.port, pa, &a, a.id, now, &r), 204);
    ih_resp_free(&r);
    /* A asking for B's manifest, signed as itself: 403. */
    assert_int_equal(device_get(g_srv.port, pb, &a, a.id, now, &r), 403);
    ih_resp_free(&r);
    /* A claiming to be B: the signature does not verify with B's key. */
    assert_int_equal(device_get(g_srv.port, pb, &a, b.id, now, &r), 401);
    ih_resp_free(&r);
    /* B itself, and a signature replayed on another path fails. */
    assert_int_equal(device_get(g_srv.port, pb, &b, b.id, now, &r), 204);
    ih_resp_free(&r);
    /* Outside the window: 401 with the ingest's clock to correct by. */
    assert_int_equal(device_get(g_srv.port, pa, &a, a.id, now - 3600, &r), 401);
    assert_true(r.ferry_time[0] != '\0');
    ih_resp_free(&r);
    assert_int_equal(device_get(g_srv.port, pa, &a, a.id, 0, &r), 401);
    ih_resp_free(&r);
    /* Unknown devices, and an artifact none of A's manifests names. */
    assert_int_equal(device_get(g_srv.port, "/v1/devices/nobody/manifest", &a, "nobody", now, &r),
                     401);
    ih_resp_free(&r);
    char art[128];
    snprintf(art, sizeof(art), "/v1/artifacts/%064d", 7);
    assert_int_equal(device_get(g_srv.port, art, &a, a.id, now, &r), 403);
    ih_resp_free(&r);
    assert_int_equal(ih_http(g_srv.port, "GET", art, NULL, 0, &r), 0);
    assert_int_equal(r.status, 401);
    ih_resp_free(&r);
    /* A revoked device reads nothing. */
    char out[128], args[128];
    snprintf(args, sizeof(args), "device revoke %s", b.id);
    assert_int_equal(cli(out, sizeof(out), args), 0);
    assert_int_equal(device_get(g_srv.port, pb, &b, b.id, now, &r), 403);
    ih_resp_free(&r);
}

/* [server] metrics_public opens /metrics to a scraper without a token, and nothing else. */
static void metrics_public_setting(void **state)
{
    (void)state;
    char data[256];
    snprintf(data, sizeof(data), "%s/metrics-public", g_dir);
    const char *args[] = {"-d", data, "--server.metrics_public", "true", NULL};
    struct ih_server s;
    assert_int_equal(ih_start(&s, g_bin, g_dir, args), 0);
    expect_status(s.port, "/metrics", NULL, 200, "ferry_ingest_http_requests_total");
    expect_status(s.port, "/v1/devices", NULL, 401, NULL);
    assert_int_equal(ih_stop(&s), 0);
}

/* ---- PostgreSQL: two processes, one database ----------------------------------------------- */

static void two_processes_share_one_database(void **state)
{
    char conn_a[64], conn_b[64];
    snprintf(conn_a, sizeof(conn_a), "2");
    snprintf(conn_b, sizeof(conn_b), "2");
    const char *args[] = {"--pg", g_pg, "--store.storage_threads", conn_a, "--limits.device_cache",
                          "0s",   NULL};
    struct ih_server a, b;
    assert_int_equal(ih_start(&a, g_bin, g_dir, args), 0);
    use_viewer_token("it-viewer-pg");
    args[3] = conn_b;
    assert_int_equal(ih_start(&b, g_bin, g_dir, args), 0);
    /* Enrol through A, send through both. */
    struct ih_device d;
    enrolled_device(a.port, &d);
    struct ih_resp r;
    struct ferry_buf b1 = FERRY_BUF_INIT, b2 = FERRY_BUF_INIT;
    int64_t now = ferry_realtime_ns();
    assert_int_equal(ih_batch(&d, RECORD_METRIC, 1, 100, now, now, true, &b1), 0);
    assert_int_equal(ih_batch(&d, RECORD_METRIC, 51, 100, now, now, true, &b2), 0);
    /* The same batch to both processes at once, several times, and an overlapping one. */
    for (int round = 0; round < 3; round++) {
        pthread_t t[4];
        struct post_arg pa[4] = {
            {a.port, &b1, 0, ""}, {b.port, &b1, 0, ""}, {a.port, &b2, 0, ""}, {b.port, &b2, 0, ""}};
        for (int i = 0; i < 4; i++)
            assert_int_equal(pthread_create(&t[i], NULL, post_thread, &pa[i]), 0);
        for (int i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            assert_int_equal(pa[i].status, 200);
        }
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1/export?device=%s&stream=metric&limit=1000", d.id);
    assert_int_equal(ih_http(b.port, "GET", path, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    size_t lines = 0;
    for (char *p = (char *)r.body.data; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, 150);
    ih_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/devices/%s", d.id);
    assert_int_equal(ih_http(a.port, "GET", path, NULL, 0, &r), 0);
    assert_non_null(strstr((char *)r.body.data, "\"metric\":{\"records\":150,\"max_seq\":150"));
    ih_resp_free(&r);
    /* Revoked through the database: both processes refuse. */
    char out[128], cargs[128];
    snprintf(cargs, sizeof(cargs), "device revoke %s", d.id);
    assert_int_equal(cli(out, sizeof(out), cargs), 0);
    assert_int_equal(post_batch(a.port, &b1, &r), 403);
    ih_resp_free(&r);
    assert_int_equal(post_batch(b.port, &b1, &r), 403);
    ih_resp_free(&r);
    assert_int_equal(ih_stop(&a), 0);
    assert_int_equal(ih_stop(&b), 0);
    ferry_buf_free(&b1);
    ferry_buf_free(&b2);
}

/* The inventory on PostgreSQL: written through one process, read through another. */
static void inventory_newest_by_device_time_pg(void **state)
{
    (void)state;
    const char *args[] = {"--pg", g_pg, "--limits.device_cache", "0s", NULL};
    struct ih_server a, b;
    assert_int_equal(ih_start(&a, g_bin, g_dir, args), 0);
    assert_int_equal(ih_start(&b, g_bin, g_dir, args), 0);
    inventory_newest_by_device_time_on(a.port, b.port);
    assert_int_equal(ih_stop(&a), 0);
    assert_int_equal(ih_stop(&b), 0);
}

/* POST with a bearer token (NULL: none); returns the status. */
static long post_bearer(const char *path, const char *body, const char *token, struct ih_resp *r)
{
    char line[200];
    snprintf(line, sizeof(line), "Authorization: Bearer %s", token != NULL ? token : "");
    const char *h[] = {line, NULL};
    assert_int_equal(
        ih_http_h(g_srv.port, "POST", path, body, strlen(body), token != NULL ? h : NULL, r), 0);
    return r->status;
}

/* "/v1/devices?selector=" + `sel` percent-encoded, into out. */
static void selector_path(const char *sel, char *out, size_t out_len)
{
    size_t o = (size_t)snprintf(out, out_len, "/v1/devices?selector=");
    for (const unsigned char *p = (const unsigned char *)sel; *p && o + 4 < out_len; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_';
        o += (size_t)(plain ? snprintf(out + o, out_len - o, "%c", *p)
                            : snprintf(out + o, out_len - o, "%%%02X", *p));
    }
}

/* Labels: given by an enrolment token, changed over HTTP by an operator (a viewer gets 403, a
 * request without token 401, a malformed change 400 naming the key, an unknown device 404),
 * shown in /v1/devices, selected with ?selector= (400 naming term and column when malformed),
 * changed by the CLI through the API (operator token; a viewer's is refused), and audited. */
static void labels_over_http_selectors_and_tokens(void **state)
{
    (void)state;
    char viewer[128], oper[128], admin[128], out[256];
    api_token(viewer, sizeof(viewer), "--role viewer --name lbl-viewer");
    api_token(oper, sizeof(oper), "--role operator --name lbl-operator");
    api_token(admin, sizeof(admin), "--role admin --name lbl-admin");
    /* An enrolment token with labels gives them to the device it enrols. */
    char tok[64];
    assert_int_equal(cli(tok, sizeof(tok), "enroll-token create --label site=rome --label batch=7"),
                     0);
    assert_int_equal(strlen(tok), 40);
    assert_int_not_equal(cli(out, sizeof(out), "enroll-token create --label Site=x 2>/dev/null"),
                         0);
    struct ih_device e;
    struct ih_resp r;
    ih_device_new(&e);
    assert_int_equal(enroll(g_srv.port, tok, &e, &r), 200);
    ih_resp_free(&r);
    json_t *j = get_device(e.id);
    json_t *want = json_pack("{s:s,s:s}", "site", "rome", "batch", "7");
    assert_true(json_equal(json_object_get(j, "labels"), want));
    json_decref(want);
    json_decref(j);
    /* Devices registered by the CLI start without labels. */
    struct ih_device a, b2, c;
    cli_device(&a, "lbl-a", "a lbl-class");
    cli_device(&b2, "lbl-b", "b lbl-class");
    cli_device(&c, "lbl-c", "c lbl-other");
    j = get_device("lbl-a");
    assert_int_equal(json_object_size(json_object_get(j, "labels")), 0);
    json_decref(j);
    /* POST /v1/devices/{id}/labels: operator only. */
    const char *set_a = "{\"set\":{\"site\":\"berlin\",\"customer\":\"acme\",\"hw.rev\":\"B 2\"}}";
    assert_int_equal(post_bearer("/v1/devices/lbl-a/labels", set_a, NULL, &r), 401);
    ih_resp_free(&r);
    assert_int_equal(post_bearer("/v1/devices/lbl-a/labels", set_a, viewer, &r), 403);
    ih_resp_free(&r);
    j = get_device("lbl-a");
    assert_int_equal(json_object_size(json_object_get(j, "labels")), 0); /* unchanged */
    json_decref(j);
    assert_int_equal(post_bearer("/v1/devices/lbl-a/labels", set_a, oper, &r), 200);
    assert_non_null(
        strstr((char *)r.body.data,
               "\"labels\":{\"customer\":\"acme\",\"hw.rev\":\"B 2\",\"site\":\"berlin\"}"));
    ih_resp_free(&r);
    assert_int_equal(post_bearer("/v1/devices/lbl-a/labels",
                                 "{\"set\":{\"tier\":\"gold\"},\"remove\":[\"customer\"]}", admin,
                                 &r),
                     200);
    ih_resp_free(&r);
    assert_int_equal(
        post_bearer("/v1/devices/lbl-b/labels", "{\"set\":{\"site\":\"paris\"}}", oper, &r), 200);
    ih_resp_free(&r);
    assert_int_equal(post_bearer("/v1/devices/lbl-a/labels", "{\"set\":{\"Bad\":\"x\"}}", oper, &r),
                     400);
    assert_non_null(strstr((char *)r.body.data, "\\\"Bad\\\""));
    ih_resp_free(&r);
    assert_int_equal(post_bearer("/v1/devices/lbl-a/labels", "{\"set\":", oper, &r), 400);
    ih_resp_free(&r);
    assert_int_equal(post_bearer("/v1/devices/no-such/labels", "{}", oper, &r), 404);
    ih_resp_free(&r);
    j = get_device("lbl-a");
    want = json_pack("{s:s,s:s,s:s}", "site", "berlin", "hw.rev", "B 2", "tier", "gold");
    if (!json_equal(json_object_get(j, "labels"), want)) {
        char *got = json_dumps(json_object_get(j, "labels"), 0);
        fail_msg("labels %s", got ? got : "(none)");
    }
    json_decref(want);
    json_decref(j);
    /* A version for the selector's version terms. */
    struct ev_spec v1[1] = {{"versions", {"model", "1.10.0"}, 1}};
    struct ferry_buf bb = FERRY_BUF_INIT;
    assert_int_equal(event_batch(&a, 1, v1, 1, &bb), 0);
    assert_int_equal(post_batch(g_srv.port, &bb, &r), 200);
    ih_resp_free(&r);
    ferry_buf_reset(&bb);
    struct ev_spec v2[1] = {{"versions", {"model", "1.9.3"}, 1}};
    assert_int_equal(event_batch(&b2, 1, v2, 1, &bb), 0);
    assert_int_equal(post_batch(g_srv.port, &bb, &r), 200);
    ih_resp_free(&r);
    ferry_buf_free(&bb);
    /* GET /v1/devices?selector= */
    struct {
        const char *sel, *ids;
    } cases[] = {
        {"site=berlin", "lbl-a,"},
        {"site in (berlin, paris), class=lbl-class", "lbl-a,lbl-b,"},
        {"class in (lbl-class,lbl-other), !site", "lbl-c,"},
        {"site notin (berlin), class in (lbl-class,lbl-other)", "lbl-b,lbl-c,"},
        {"hw.rev=\"B 2\"", "lbl-a,"},
        {"version.model > 1.9.3, class in (lbl-class, lbl-other)",
         "lbl-a,"}, /* 1.10.0 > 1.9.3: semver, not text */
        {"version.model >= 1.9, id!=lbl-a, class=lbl-class", "lbl-b,"},
        {"site=rome, batch=7", ""}, /* filled in below with the enrolled id */
    };
    char path[512], ids[4096], expect[128];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        selector_path(cases[i].sel, path, sizeof(path));
        listed_ids(path, ids, sizeof(ids));
        snprintf(expect, sizeof(expect), "%s", cases[i].ids[0] ? cases[i].ids : "");
        if (i == sizeof(cases) / sizeof(cases[0]) - 1)
            snprintf(expect, sizeof(expect), "%s,", e.id);
        if (strcmp(ids, expect) != 0)
            fail_msg("selector '%s': %s, wanted %s", cases[i].sel, ids, expect);
    }
    selector_path("site=berlin,,class=x", path, sizeof(path));
    assert_int_equal(ih_http(g_srv.port, "GET", path, NULL, 0, &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr((char *)r.body.data, "term 2"));
    assert_non_null(strstr((char *)r.body.data, "column 13"));
    ih_resp_free(&r);
    selector_path("version.model >= ", path, sizeof(path));
    assert_int_equal(ih_http(g_srv.port, "GET", path, NULL, 0, &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr((char *)r.body.data, "expected a value"));
    ih_resp_free(&r);
    /* The CLI through the API: an operator token labels, a viewer token is refused. */
    char cmd[768], line[512];
    snprintf(cmd, sizeof(cmd),
             "'%s' --url http://127.0.0.1:%u --token '%s' device label lbl-c site=oslo rack-",
             g_bin, g_srv.port, oper);
    FILE *lp = popen(cmd, "r");
    assert_non_null(lp);
    assert_non_null(fgets(line, sizeof(line), lp));
    assert_int_equal(pclose(lp), 0);
    assert_string_equal(line, "lbl-c\t{\"site\":\"oslo\"}\n");
    snprintf(cmd, sizeof(cmd),
             "'%s' --url http://127.0.0.1:%u --token '%s' device label lbl-c site=x 2>/dev/null",
             g_bin, g_srv.port, viewer);
    assert_int_not_equal(system(cmd), 0);
    j = get_device("lbl-c");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "labels"), "site")),
                        "oslo");
    json_decref(j);
    /* The local CLI: same rules, audited as cli:USER. */
    assert_int_equal(cli(out, sizeof(out), "device label lbl-c site- room=\"4 b\""), 0);
    assert_string_equal(out, "lbl-c\t{\"room\":\"4 b\"}");
    assert_int_not_equal(cli(out, sizeof(out), "device label lbl-c class=x 2>/dev/null"), 0);
    /* The audit log has the label changes with who made them. */
    assert_int_equal(get_bearer(g_srv.port, "/v1/audit?limit=10000", admin, &r), 200);
    assert_non_null(strstr((char *)r.body.data,
                           "\"actor\":\"token:lbl-operator\",\"action\":\"http.POST\",\"target\":"
                           "\"/v1/devices/lbl-a/labels\""));
    assert_non_null(strstr((char *)r.body.data, "\"action\":\"device.label\""));
    ih_resp_free(&r);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_ingest_http FERRY_INGEST_BIN lmdb|pg\n");
        return 2;
    }
    g_bin = argv[1];
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return 1;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ferry-ingest-it.XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return 1;
    snprintf(g_data, sizeof(g_data), "%s/data", g_dir);
    g_cli_data = g_data;
    int rc;
    if (strcmp(argv[2], "pg") == 0) {
        g_pg = getenv("FERRY_TEST_PG");
        if (g_pg == NULL) {
            fprintf(stderr, "FERRY_TEST_PG not set (run through with-postgres.sh)\n");
            return 2;
        }
        const struct CMUnitTest tests[] = {cmocka_unit_test(two_processes_share_one_database),
                                           cmocka_unit_test(inventory_newest_by_device_time_pg)};
        rc = cmocka_run_group_tests_name("ingest_http_pg", tests, NULL, NULL);
    } else {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(healthz_and_unknown_routes),
            cmocka_unit_test(enroll_same_key_same_id_and_rejections),
            cmocka_unit_test(batch_acked_after_commit_and_repeat_stored_once),
            cmocka_unit_test(logs_gaps_and_clock_correction),
            cmocka_unit_test(batch_rejections_in_check_order),
            cmocka_unit_test(versions_events_merge_per_key),
            cmocka_unit_test(inventory_newest_by_device_time),
            cmocka_unit_test(ota_events_show_update_state_per_component),
            cmocka_unit_test(read_api_errors_and_listing),
            cmocka_unit_test(metrics_exposition),
            cmocka_unit_test(hostile_bytes_give_valid_outputs),
            cmocka_unit_test(health_is_newest_by_device_time),
            cmocka_unit_test(ota_committed_updates_versions),
            cmocka_unit_test(devices_filters),
            cmocka_unit_test(labels_over_http_selectors_and_tokens),
            cmocka_unit_test(slow_client_times_out_and_connection_limit),
            cmocka_unit_test(overload_429_fair_share_and_503_queue_full),
            cmocka_unit_test(every_endpoint_needs_a_valid_token_of_the_right_role),
            cmocka_unit_test(device_reads_only_its_own_manifest_and_artifacts),
            cmocka_unit_test(metrics_public_setting),
            cmocka_unit_test(enroll_needs_proof_of_possession_and_is_rate_limited),
            cmocka_unit_test(queued_batches_bounded_in_bytes),
        };
        rc = cmocka_run_group_tests_name("ingest_http_lmdb", tests, setup_lmdb, teardown_lmdb);
    }
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    curl_global_cleanup();
    return rc;
}
