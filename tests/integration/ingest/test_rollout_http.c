/*
 * test_rollout_http.c - a canary rollout through the real ferry-ingest process (LMDB store,
 * loopback HTTP, port 0) with scripted devices that sign their manifest polls and send signed
 * batches of ota.* events as ferryd does:
 *   - devices outside wave 1 get the current manifest (or 204 for a component with none), wave 1
 *     devices the rollout's; a manifest ETag changes when what the device is offered changes;
 *   - one device of wave 1 rolls back: the install_success gate fails and the rollout pauses;
 *   - the ingest is killed (SIGKILL) and started again: the rollout is still paused, counts kept;
 *   - abort over the API (operator token): wave 1 devices get the signed rollback release and
 *     may download its artifact, the others still the current manifest; /metrics counts it.
 * With "pg" (under tests/unit/ingest/with-postgres.sh) two ingest processes share one PostgreSQL
 * database and its releases directory: odd devices talk to the second one, the first is killed
 * and the second answers the same state meanwhile.
 */
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

#include "ingest_harness.h"
#include "release_harness.h"
#include "transport/manifest.h"
#include "transport/record.h"
#include "transport/reqsign.h"

#define NDEV 20

static const char *g_bin;
static char g_tmp[128], g_data[192];
static struct ih_server g_srv, g_srv2;   /* g_srv2: the second process of the PostgreSQL run */
static const char *g_pg;                 /* libpq conninfo: both processes share that database */
static struct ih_server *g_api = &g_srv; /* the process the operator's API calls go to */
static struct ih_device g_dev[NDEV];
static uint64_t g_seq[NDEV];
static uint8_t rel_pk[32], rel_sk[64];
static char g_token[128];

/* Runs `ferry-ingest -d DATA ARGS` and returns its exit status; the last stdout line in out. */
static int run_cli(const char *args, char *out, size_t out_len)
{
    char cmd[4096];
    char pg[600] = "";
    if (g_pg != NULL)
        snprintf(pg, sizeof(pg), "--pg '%s'", g_pg);
    snprintf(cmd, sizeof(cmd), "%s -d %s %s %s 2>>%s/cli.err", g_bin, g_data, pg, args, g_tmp);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[8192];
    if (out != NULL)
        out[0] = '\0';
    while (fgets(line, sizeof(line), p) != NULL)
        if (out != NULL) {
            line[strcspn(line, "\n")] = '\0';
            ferry_strlcpy(out, line, out_len);
        }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A release of 9,000 random bytes in 4 KiB chunks for class c1 (release_harness.h). */
static void make_release(const char *name, const char *version, uint64_t serial, bool rollback)
{
    rh_make_release(g_tmp, name, "c1", version, serial, rollback, 9000, 4096, rel_sk, NULL);
}

static struct ferry_buf file_bytes(const char *rel)
{
    return rh_file_bytes(g_tmp, rel);
}

/* The process device i talks to: with PostgreSQL, odd devices go to the second one. */
static unsigned dev_port(int i)
{
    return g_pg != NULL && i % 2 == 1 && g_srv2.pid > 0 ? g_srv2.port : g_srv.port;
}

/* A device-signed GET (transport/reqsign.h) of `path`, with If-None-Match when not NULL. */
static void device_get(int i, const char *path, const char *if_none_match, struct ih_resp *r)
{
    struct reqsign_headers sig;
    assert_int_equal(
        reqsign_sign(g_dev[i].sk, "GET", path, g_dev[i].id, ferry_realtime_ns() / 1000000000, &sig),
        0);
    char inm[200];
    snprintf(inm, sizeof(inm), "If-None-Match: %s", if_none_match ? if_none_match : "");
    const char *h[] = {sig.device, sig.time, sig.nonce, sig.signature, if_none_match ? inm : NULL,
                       NULL};
    assert_int_equal(ih_http_h(dev_port(i), "GET", path, NULL, 0, h, r), 0);
}

static void manifest_of(int i, struct ih_resp *r)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/devices/%s/manifest?component=model", g_dev[i].id);
    device_get(i, path, NULL, r);
}

/* Sends one signed batch with an ota.<state> event of component model. */
static void report(int i, const char *state, const char *running, const char *target)
{
    struct batch_builder_config cfg = {
        .device_id = g_dev[i].id, .secret_key = g_dev[i].sk, .no_compression = true};
    struct batch_builder *b = NULL;
    assert_int_equal(batch_builder_new(&cfg, &b), 0);
    char name[64];
    snprintf(name, sizeof(name), "ota.%s", state);
    struct record_field f[4] = {
        {.key = {"component", 9}, .type = RECORD_FIELD_STRING, .v.s = {"model", 5}},
        {.key = {"state", 5}, .type = RECORD_FIELD_STRING, .v.s = {state, strlen(state)}},
        {.key = {"running_version", 15},
         .type = RECORD_FIELD_STRING,
         .v.s = {running, strlen(running)}},
        {.key = {"target_version", 14},
         .type = RECORD_FIELD_STRING,
         .v.s = {target, strlen(target)}},
    };
    int64_t now = ferry_realtime_ns();
    struct record r = {.stream = RECORD_EVENT,
                       .seq = ++g_seq[i],
                       .ts_ns = now,
                       .name = {name, strlen(name)},
                       .fields = f,
                       .n_fields = 4};
    assert_int_equal(batch_builder_add(b, &r), 0);
    struct ferry_buf body = FERRY_BUF_INIT;
    assert_int_equal(batch_builder_finish(b, now, &body), 0);
    batch_builder_free(b);
    struct ih_resp resp;
    assert_int_equal(
        ih_http_h(dev_port(i), "POST", "/v1/batches", body.data, body.len, NULL, &resp), 0);
    if (resp.status != 200)
        fprintf(stderr, "batch: %ld %s\n", resp.status, (char *)resp.body.data);
    assert_int_equal(resp.status, 200);
    ih_resp_free(&resp);
    ferry_buf_free(&body);
}

static json_t *api_get(const char *path)
{
    struct ih_resp r;
    ih_set_token(g_token);
    assert_int_equal(ih_http(g_api->port, "GET", path, NULL, 0, &r), 0);
    if (r.status != 200)
        fprintf(stderr, "GET %s: %ld %s\n", path, r.status, (char *)r.body.data);
    assert_int_equal(r.status, 200);
    json_t *o = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    assert_non_null(o);
    ih_resp_free(&r);
    return o;
}

static json_t *status_of(const char *id)
{
    char path[64];
    snprintf(path, sizeof(path), "/v1/rollouts/%s", id);
    return api_get(path);
}

/* Waits (up to 20 s) until the rollout's state is `want`. */
static json_t *wait_state(const char *id, const char *want)
{
    for (int i = 0; i < 400; i++) {
        json_t *o = status_of(id);
        if (strcmp(json_string_value(json_object_get(o, "state")), want) == 0)
            return o;
        json_decref(o);
        usleep(50000);
    }
    fail_msg("rollout %s never became %s", id, want);
    return NULL;
}

static void start_ingest(struct ih_server *srv)
{
    const char *extra[] = {"-d", g_data, g_pg != NULL ? "--pg" : NULL, g_pg, NULL};
    assert_int_equal(ih_start(srv, g_bin, g_tmp, extra), 0);
}

static bool body_is(const struct ih_resp *r, const struct ferry_buf *b)
{
    return r->body.len == b->len && memcmp(r->body.data, b->data, b->len) == 0;
}

static void test_rollout_through_the_real_ingest(void **state)
{
    (void)state;
    char args[2048], id[64];
    crypto_sign_keypair(rel_pk, rel_sk);
    char pub[200], hex[65];
    snprintf(pub, sizeof(pub), "%s/rel.pub", g_tmp);
    ferry_hex_encode(rel_pk, 32, hex);
    assert_int_equal(ferry_write_file_atomic(pub, hex, 64, 0644), 0);
    make_release("r1", "1.0.0", 5, false);
    make_release("r2", "2.0.0", 10, false);
    make_release("r1b", "1.0.0", 11, true);
    for (int i = 0; i < NDEV; i++) {
        ih_device_new(&g_dev[i]);
        snprintf(g_dev[i].id, sizeof(g_dev[i].id), "dev-%02d", i);
        snprintf(args, sizeof(args), "device add %s %s n%d c1", g_dev[i].id, g_dev[i].pk_hex, i);
        assert_int_equal(run_cli(args, NULL, 0), 0);
    }
    assert_int_equal(
        run_cli("token create --role operator --name rollout-test", g_token, sizeof(g_token)), 0);
    /* the current release every device has: 1.0.0 */
    snprintf(args, sizeof(args), "release publish --pub %s %s/r1/manifest.json %s/r1/art.bin", pub,
             g_tmp, g_tmp);
    assert_int_equal(run_cli(args, NULL, 0), 0);
    start_ingest(&g_srv);
    if (g_pg != NULL)
        start_ingest(&g_srv2); /* one evaluator holds the lease; both serve devices */

    snprintf(args, sizeof(args),
             "rollout create --manifest %s/r2/manifest.json --rollback-manifest "
             "%s/r1b/manifest.json --waves 10%%,100%% --soak 2s --deadline 20s --gate "
             "'install_success >= 0.9' --on-fail pause --name canary --pub %s %s/r2/art.bin "
             "%s/r1b/art.bin",
             g_tmp, g_tmp, pub, g_tmp, g_tmp);
    assert_int_equal(run_cli(args, id, sizeof(id)), 0);
    assert_int_equal(strlen(id), 12);

    /* the evaluator puts 10 % of 20 = 2 devices into wave 1 within a round */
    json_t *st = NULL;
    for (int i = 0; i < 200; i++) {
        st = status_of(id);
        if (json_array_size(json_object_get(st, "devices")) == 2)
            break;
        json_decref(st);
        st = NULL;
        usleep(50000);
    }
    assert_non_null(st);
    bool member[NDEV] = {false};
    int members[2], nm = 0;
    size_t k;
    json_t *d;
    json_array_foreach(json_object_get(st, "devices"), k, d)
    {
        const char *dev = json_string_value(json_object_get(d, "device"));
        uint64_t i = 0;
        assert_int_equal(ferry_parse_u64(dev + 4, NDEV - 1, &i), 0);
        member[i] = true;
        members[nm++] = i;
    }
    json_decref(st);

    struct ferry_buf cur = file_bytes("r1/manifest.json"), rel = file_bytes("r2/manifest.json"),
                     rb = file_bytes("r1b/manifest.json");
    struct ih_resp r;
    char etag_before[40] = "";
    for (int i = 0; i < NDEV; i++) {
        manifest_of(i, &r);
        assert_int_equal(r.status, 200);
        assert_true(body_is(&r, member[i] ? &rel : &cur));
        if (i == members[0]) {
            uint8_t h[32];
            crypto_hash_sha256(h, r.body.data, r.body.len);
            etag_before[0] = '"';
            ferry_hex_encode(h, 16, etag_before + 1);
            ferry_strlcpy(etag_before + 33, "\"", sizeof(etag_before) - 33);
        }
        ih_resp_free(&r);
    }
    /* a component nothing is published for: 204 */
    char path[160];
    snprintf(path, sizeof(path), "/v1/devices/%s/manifest?component=app", g_dev[members[0]].id);
    device_get(members[0], path, NULL, &r);
    assert_int_equal(r.status, 204);
    ih_resp_free(&r);
    /* the same offer again: 304 on its ETag */
    snprintf(path, sizeof(path), "/v1/devices/%s/manifest?component=model", g_dev[members[0]].id);
    device_get(members[0], path, etag_before, &r);
    assert_int_equal(r.status, 304);
    ih_resp_free(&r);

    /* one member commits, the other rolls back: install_success 0.5 < 0.9 pauses after soak */
    report(members[0], "downloading", "1.0.0", "2.0.0");
    report(members[0], "committed", "2.0.0", "2.0.0");
    report(members[1], "rolled_back", "1.0.0", "2.0.0");
    st = wait_state(id, "paused");
    assert_non_null(strstr(json_string_value(json_object_get(st, "reason")), "install_success"));
    json_t *w0 = json_array_get(json_object_get(st, "wave_status"), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(w0, "counts"), "committed")), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(w0, "counts"), "rolled_back")), 1);
    json_decref(st);
    /* paused: nobody else is offered the release */
    for (int i = 0; i < NDEV; i++) {
        manifest_of(i, &r);
        assert_true(body_is(&r, member[i] ? &rel : &cur));
        ih_resp_free(&r);
    }

    /* kill the ingest and start it again: the rollout is where it was */
    kill(g_srv.pid, SIGKILL);
    waitpid(g_srv.pid, NULL, 0);
    g_srv.pid = 0;
    if (g_pg != NULL) {
        /* the other process answers from the same database meanwhile */
        g_api = &g_srv2;
        st = status_of(id);
        assert_string_equal(json_string_value(json_object_get(st, "state")), "paused");
        json_decref(st);
        g_api = &g_srv;
    }
    start_ingest(&g_srv);
    st = status_of(id);
    assert_string_equal(json_string_value(json_object_get(st, "state")), "paused");
    w0 = json_array_get(json_object_get(st, "wave_status"), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(w0, "counts"), "committed")), 1);
    json_decref(st);

    /* the CLI sees it the same way, locally and over the API (--url) */
    snprintf(args, sizeof(args), "rollout status %s", id);
    assert_int_equal(run_cli(args, NULL, 0), 0);
    char line[8192];
    snprintf(args, sizeof(args), "--url http://127.0.0.1:%u --token %s rollout status %s --json",
             g_srv.port, g_token, id);
    assert_int_equal(run_cli(args, line, sizeof(line)), 0);
    json_t *remote = json_loads(line, 0, NULL);
    assert_non_null(remote);
    assert_string_equal(json_string_value(json_object_get(remote, "state")), "paused");
    json_decref(remote);
    snprintf(args, sizeof(args), "--url http://127.0.0.1:%u --token %s rollout list", g_srv.port,
             g_token);
    assert_int_equal(run_cli(args, line, sizeof(line)), 0);
    assert_non_null(strstr(line, id));
    assert_non_null(strstr(line, "paused"));
    /* resume and pause again over --url (operator token): each answers the new state */
    snprintf(args, sizeof(args), "--url http://127.0.0.1:%u --token %s rollout resume %s",
             g_srv.port, g_token, id);
    assert_int_equal(run_cli(args, line, sizeof(line)), 0);
    assert_non_null(strstr(line, "running"));
    snprintf(args, sizeof(args), "--url http://127.0.0.1:%u --token %s rollout pause %s",
             g_srv.port, g_token, id);
    assert_int_equal(run_cli(args, line, sizeof(line)), 0);
    assert_non_null(strstr(line, "paused"));
    assert_int_equal(run_cli(args, NULL, 0), 1); /* pausing a paused rollout: 409 */

    /* abort over the API: wave 1 devices get the rollback release */
    snprintf(path, sizeof(path), "/v1/rollouts/%s/abort", id);
    ih_set_token(g_token);
    assert_int_equal(ih_http(g_srv.port, "POST", path, "", 0, &r), 0);
    assert_int_equal(r.status, 200);
    ih_resp_free(&r);
    assert_int_equal(ih_http(g_srv.port, "POST", path, "", 0, &r), 0);
    assert_int_equal(r.status, 409); /* aborting twice */
    ih_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/devices/%s/manifest?component=model", g_dev[members[0]].id);
    device_get(members[0], path, etag_before, &r);
    assert_int_equal(r.status, 200); /* what it is offered changed: so did the ETag */
    assert_true(body_is(&r, &rb));
    ih_resp_free(&r);
    for (int i = 0; i < NDEV; i++) {
        manifest_of(i, &r);
        assert_true(body_is(&r, member[i] ? &rb : &cur));
        ih_resp_free(&r);
    }
    /* the rollback's artifact: a wave 1 device may download it, another device may not */
    json_t *rec = status_of(id);
    const char *rart =
        json_string_value(json_array_get(json_object_get(rec, "rollback_artifacts"), 0));
    int outsider = member[0] ? (member[1] ? 2 : 1) : 0;
    snprintf(path, sizeof(path), "/v1/artifacts/%s", rart);
    device_get(members[1], path, NULL, &r);
    assert_int_equal(r.status, 200);
    ih_resp_free(&r);
    device_get(outsider, path, NULL, &r);
    assert_int_equal(r.status, 403);
    ih_resp_free(&r);
    json_decref(rec);
    st = wait_state(id, "aborted");
    json_decref(st);

    struct ih_resp m;
    ih_set_token(g_token);
    assert_int_equal(ih_http(g_srv.port, "GET", "/metrics", NULL, 0, &m), 0);
    assert_non_null(strstr((const char *)m.body.data, "ferry_rollouts{state=\"aborted\"} 1"));
    ih_resp_free(&m);
    json_t *list = api_get("/v1/rollouts");
    assert_int_equal(json_array_size(json_object_get(list, "rollouts")), 1);
    json_decref(list);
    ferry_buf_free(&cur);
    ferry_buf_free(&rel);
    ferry_buf_free(&rb);
    ih_stop(&g_srv);
    if (g_srv2.pid > 0)
        ih_stop(&g_srv2);
}

int main(int argc, char **argv)
{
    if (argc < 2 || sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return 2;
    g_bin = argv[1];
    if (argc > 2 && strcmp(argv[2], "pg") == 0 && (g_pg = getenv("FERRY_TEST_PG")) == NULL) {
        fprintf(stderr, "FERRY_TEST_PG not set (run through with-postgres.sh)\n");
        return 2;
    }
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/ferry-rollout-http-XXXXXX");
    if (mkdtemp(g_tmp) == NULL)
        return 2;
    snprintf(g_data, sizeof(g_data), "%s/data", g_tmp);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rollout_through_the_real_ingest),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (g_srv.pid > 0)
        ih_stop(&g_srv);
    if (g_srv2.pid > 0)
        ih_stop(&g_srv2);
    if (failed == 0) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", g_tmp);
        if (system(cmd) != 0)
            failed++;
    } else
        fprintf(stderr, "kept %s for inspection\n", g_tmp);
    curl_global_cleanup();
    return failed;
}
