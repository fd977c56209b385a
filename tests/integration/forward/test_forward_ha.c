/*
 * Two ferry-ingest processes on one PostgreSQL share a forwarder by its lease (forward_lease.c).
 * Usage: with-postgres.sh with-sinks.sh test_forward_ha FERRY_INGEST_BINARY
 *
 * Both are configured with the same [forward.vm] (VictoriaMetrics, deduplication on) and
 * lease_ttl = 2s; devices post to both. Proves:
 *   - exactly one of them runs the forwarder: one says lease_held, the other "standby" and has
 *     sent nothing;
 *   - SIGKILL of the holder while it forwards: the other takes the lease within ttl + a margin
 *     (measured from the kill to the first moment it reports lease_held);
 *   - the survivor continues from the durable cursor: every sample is in VictoriaMetrics exactly
 *     once, its count equal to the store's count of metric records (queried with psql);
 *   - lease state on GET /v1/forwarders and /metrics (ferry_forward_lease_held).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "ingest_harness.h"

#define DEVICES 3
#define PER_BATCH 100
#define ROUNDS_BEFORE 8 /* both alive */
#define ROUNDS_AFTER 12 /* the holder is killed after the first of these */
#define TTL_MS 2000
#define TAKEOVER_MARGIN_MS 3000 /* a loaded 2-core CI machine */

static const char *g_bin;
static char g_dir[128];
static struct ih_server g_srv[2];
static struct ih_device g_dev[DEVICES];

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL) {
        fprintf(stderr, "%s not set (run through with-postgres.sh with-sinks.sh)\n", name);
        exit(2);
    }
    return v;
}

static json_t *get_json(const char *url)
{
    struct ferry_buf body = FERRY_BUF_INIT;
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ih_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    json_t *j = NULL;
    if (rc == CURLE_OK && body.len > 0)
        j = json_loadb((const char *)body.data, body.len, 0, NULL);
    ferry_buf_free(&body);
    return j;
}

static double promql(const char *base, const char *query)
{
    CURL *c = curl_easy_init();
    char *q = curl_easy_escape(c, query, 0);
    char url[1024];
    snprintf(url, sizeof(url), "%s/api/v1/query?query=%s&nocache=1", base, q);
    curl_free(q);
    curl_easy_cleanup(c);
    json_t *j = get_json(url);
    double v = -1;
    json_t *res = json_object_get(json_object_get(j, "data"), "result");
    if (json_array_size(res) == 1) {
        const char *s =
            json_string_value(json_array_get(json_object_get(json_array_get(res, 0), "value"), 1));
        if (s != NULL)
            v = strtod(s, NULL);
    } else if (res != NULL && json_array_size(res) == 0) {
        v = 0;
    }
    json_decref(j);
    return v;
}

/* The forwarder "vm" of ingest k (NULL when the process does not answer). Caller decrefs *root. */
static json_t *fwd_of(int k, json_t **root)
{
    *root = NULL;
    struct ih_resp r;
    if (ih_http(g_srv[k].port, "GET", "/v1/forwarders", NULL, 0, &r) != 0 || r.status != 200) {
        ih_resp_free(&r);
        return NULL;
    }
    *root = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    ih_resp_free(&r);
    return json_array_get(json_object_get(*root, "forwarders"), 0);
}

static int64_t num(json_t *f, const char *key)
{
    return (int64_t)json_number_value(json_object_get(f, key));
}

static bool held(json_t *f)
{
    return json_is_true(json_object_get(f, "lease_held"));
}

static void post(int k, int d, uint64_t first, int64_t now)
{
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(ih_batch(&g_dev[d], RECORD_METRIC, first, PER_BATCH, now,
                              now - 86400LL * 1000000000LL + (int64_t)first * 1000000000LL, true,
                              &b),
                     0);
    struct ih_resp r;
    assert_int_equal(ih_http(g_srv[k].port, "POST", "/v1/batches", b.data, b.len, &r), 0);
    assert_int_equal(r.status, 200);
    ih_resp_free(&r);
    ferry_buf_free(&b);
}

/* Waits until ingest k's forwarder holds the lease, caught up with `records`. */
static void wait_caught_up(int k, int64_t records)
{
    bool done = false;
    json_t *root = NULL;
    for (int i = 0; i < 400 && !done; i++) {
        json_decref(root);
        json_t *f = fwd_of(k, &root);
        done = f != NULL && held(f) && num(f, "lag_records") == 0 &&
               num(f, "cursor_records") == records;
        if (!done)
            usleep(50000);
    }
    if (!done) {
        char *dump = json_dumps(root, 0);
        fprintf(stderr, "ingest %d did not catch up with %lld records: %s\n", k, (long long)records,
                dump != NULL ? dump : "(no answer)");
        free(dump);
    }
    json_decref(root);
    assert_true(done);
}

static int64_t store_metric_records(void)
{
    /* psql with the PG* variables with-postgres.sh exports. */
    FILE *p = popen("psql -XtAc 'SELECT count(*) FROM records WHERE stream = 1'", "r");
    assert_non_null(p);
    char line[64] = "";
    char *got = fgets(line, sizeof(line), p);
    assert_int_equal(pclose(p), 0);
    assert_non_null(got);
    int64_t n = -1;
    line[strcspn(line, "\n")] = '\0';
    assert_int_equal(ferry_parse_i64(line, 0, INT64_MAX, &n), 0);
    return n;
}

static void one_forwarder_holder_takeover_within_ttl_every_sample_once(void **state)
{
    (void)state;
    const char *vm = env("FERRY_TEST_VM"), *pg = env("FERRY_TEST_PG");
    assert_int_equal(RECORD_METRIC, 1); /* the psql count above */
    snprintf(g_dir, sizeof(g_dir), "/tmp/ferry-fwdha-test.XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    char ini[2][192];
    for (int k = 0; k < 2; k++) {
        snprintf(ini[k], sizeof(ini[k]), "%s/ingest-%d.ini", g_dir, k);
        FILE *f = fopen(ini[k], "w");
        assert_non_null(f);
        fprintf(f,
                "[store]\nlmdb_dir = %s/data-%d\ntype = postgresql\npg_conninfo = %s\n"
                "[forward.vm]\ntype = prometheus_remote_write\nurl = %s/api/v1/write\n"
                "batch_records = 100\ntimeout = 1s\nmax_backoff = 400ms\nidle = 20ms\n"
                "lease_ttl = %dms\n",
                g_dir, k, pg, vm, TTL_MS);
        assert_int_equal(fclose(f), 0);
    }
    for (int d = 0; d < DEVICES; d++) {
        ih_device_new(&g_dev[d]);
        snprintf(g_dev[d].id, sizeof(g_dev[d].id), "ha-dev-%d", d);
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "'%s' -c '%s' --log.level error device add %s %s >/dev/null",
                 g_bin, ini[0], g_dev[d].id, g_dev[d].pk_hex);
        assert_int_equal(system(cmd), 0);
    }
    char cmd[512], tok[160] = "";
    snprintf(cmd, sizeof(cmd),
             "'%s' -c '%s' --log.level error token create --role viewer --name fwdha", g_bin,
             ini[0]);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(tok, sizeof(tok), p) != NULL && strncmp(tok, "fyt_", 4) != 0)
        ;
    assert_int_equal(pclose(p), 0);
    tok[strcspn(tok, "\n")] = '\0';
    assert_memory_equal(tok, "fyt_", 4);
    ih_set_token(tok);
    for (int k = 0; k < 2; k++) {
        const char *extra[] = {"-c", ini[k], NULL};
        assert_int_equal(ih_start(&g_srv[k], g_bin, g_dir, extra), 0);
    }

    /* Both alive: devices post to both; exactly one runs the forwarder. */
    int64_t now = ferry_realtime_ns();
    uint64_t next_seq = 1;
    for (int round = 0; round < ROUNDS_BEFORE; round++, next_seq += PER_BATCH)
        for (int d = 0; d < DEVICES; d++)
            post((round + d) % 2, d, next_seq, now);
    int64_t records = (int64_t)DEVICES * ROUNDS_BEFORE * PER_BATCH;
    int holder = -1;
    for (int i = 0; i < 200 && holder < 0; i++) {
        for (int k = 0; k < 2 && holder < 0; k++) {
            json_t *root;
            json_t *f = fwd_of(k, &root);
            if (f != NULL && held(f))
                holder = k;
            json_decref(root);
        }
        if (holder < 0)
            usleep(50000);
    }
    assert_true(holder >= 0);
    wait_caught_up(holder, records);
    int other = 1 - holder;
    json_t *root_o, *root_h;
    json_t *fo = fwd_of(other, &root_o), *fh = fwd_of(holder, &root_h);
    assert_non_null(fo);
    assert_non_null(fh);
    assert_false(held(fo));
    assert_string_equal(json_string_value(json_object_get(fo, "state")), "standby");
    assert_int_equal(num(fo, "samples_sent"), 0); /* one forwarder at a time */
    assert_int_equal(num(fh, "samples_sent"), 2 * records);
    assert_string_not_equal(json_string_value(json_object_get(fo, "lease_owner")),
                            json_string_value(json_object_get(fh, "lease_owner")));
    json_decref(root_o);
    json_decref(root_h);
    struct ih_resp m;
    assert_int_equal(ih_http(g_srv[holder].port, "GET", "/metrics", NULL, 0, &m), 0);
    assert_non_null(strstr((char *)m.body.data, "ferry_forward_lease_held{forwarder=\"vm\"} 1\n"));
    ih_resp_free(&m);
    assert_int_equal(ih_http(g_srv[other].port, "GET", "/metrics", NULL, 0, &m), 0);
    assert_non_null(strstr((char *)m.body.data, "ferry_forward_lease_held{forwarder=\"vm\"} 0\n"));
    ih_resp_free(&m);

    /* SIGKILL the holder while it forwards a fresh round; the rest goes to the survivor. */
    long long killed_ms = 0;
    for (int round = 0; round < ROUNDS_AFTER; round++, next_seq += PER_BATCH) {
        for (int d = 0; d < DEVICES; d++)
            post(round == 0 ? holder : other, d, next_seq, now);
        if (round == 0) {
            usleep((useconds_t)(rand() % 20000));
            kill(g_srv[holder].pid, SIGKILL);
            killed_ms = ferry_monotonic_ms();
            waitpid(g_srv[holder].pid, NULL, 0);
            g_srv[holder].pid = 0;
        }
    }
    records += (int64_t)DEVICES * ROUNDS_AFTER * PER_BATCH;
    long long takeover_ms = -1;
    for (int i = 0; i < 400 && takeover_ms < 0; i++) {
        json_t *root;
        json_t *f = fwd_of(other, &root);
        if (f != NULL && held(f))
            takeover_ms = ferry_monotonic_ms() - killed_ms;
        json_decref(root);
        if (takeover_ms < 0)
            usleep(20000);
    }
    fprintf(stderr, "takeover %lld ms after SIGKILL (lease_ttl %d ms)\n", takeover_ms, TTL_MS);
    assert_true(takeover_ms >= 0);
    assert_true(takeover_ms <= TTL_MS + TAKEOVER_MARGIN_MS);
    wait_caught_up(other, records);

    /* Every sample once in VictoriaMetrics, as many as the store holds. */
    int64_t stored = store_metric_records();
    assert_int_equal(stored, records);
    char flush[256];
    snprintf(flush, sizeof(flush), "%s/internal/force_flush", vm);
    json_decref(get_json(flush));
    const char *q = "sum(count_over_time(cpu_usage[15d])) + sum(count_over_time(cpu_temp_mc[15d]))";
    double got = -1;
    for (int i = 0; i < 50 && (int64_t)got != 2 * stored; i++) {
        got = promql(vm, q);
        if ((int64_t)got != 2 * stored)
            usleep(100000);
    }
    fprintf(stderr, "victoria-metrics holds %lld samples, the store %lld records x 2 fields\n",
            (long long)got, (long long)stored);
    assert_int_equal((int64_t)got, 2 * stored);
    assert_int_equal(ih_stop(&g_srv[other]), 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: with-postgres.sh with-sinks.sh test_forward_ha FERRY_INGEST\n");
        return 2;
    }
    g_bin = argv[1];
    srand((unsigned)time(NULL));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_forwarder_holder_takeover_within_ttl_every_sample_once),
    };
    int rc = cmocka_run_group_tests_name("forward_ha", tests, NULL, NULL);
    for (int k = 0; k < 2; k++)
        if (g_srv[k].pid > 0) {
            kill(g_srv[k].pid, SIGKILL);
            waitpid(g_srv[k].pid, NULL, 0);
        }
    if (g_dir[0] != '\0') {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", g_dir);
    }
    return rc;
}
