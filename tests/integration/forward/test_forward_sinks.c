/*
 * Forwarders against real servers (with-sinks.sh starts Prometheus, VictoriaMetrics and InfluxDB
 * 1.x on loopback). Usage: with-sinks.sh test_forward_sinks FERRY_INGEST_BINARY
 *
 * With "pg" (run inside tests/unit/ingest/with-postgres.sh) the store is PostgreSQL.
 *
 * Proves, with one ferry-ingest (LMDB or PostgreSQL) and three forwarders:
 *   - every sample reaches every sink exactly once although the ingest is SIGKILLed again and
 *     again while it forwards with four workers per forwarder, several requests in flight and
 *     completing out of order (counts queried from each server's own API equal the store's);
 *   - late data (device time 3 and 10 days in the past) is accepted with its device time;
 *   - a sink that stops answering (Prometheus SIGSTOPped) is retried until it answers;
 *   - InfluxDB keeps the field types (usage float, temp_mc integer);
 *   - lag and counters are on GET /v1/forwarders and /metrics, and lag returns to zero.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "ingest_harness.h"

#define DEVICES 3
#define ROUNDS 30
#define PER_BATCH 100
#define KILL_EVERY 6

static const char *g_bin;
static const char *g_pg; /* PostgreSQL store (FERRY_TEST_PG) instead of LMDB */
static char g_dir[128], g_ini[192];
static struct ih_server g_srv;
static struct ih_device g_dev[DEVICES];
static int64_t g_posted; /* metric records stored so far */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL) {
        fprintf(stderr, "%s not set (run through with-sinks.sh)\n", name);
        exit(2);
    }
    return v;
}

static void start_ingest(void)
{
    const char *extra[] = {"-c", g_ini, NULL};
    assert_int_equal(ih_start(&g_srv, g_bin, g_dir, extra), 0);
}

static void kill_ingest(void)
{
    kill(g_srv.pid, SIGKILL);
    waitpid(g_srv.pid, NULL, 0);
    g_srv.pid = 0;
}

/* GET an absolute URL; returns the parsed JSON body (or NULL). */
static json_t *get_json(const char *url, long *status)
{
    struct ferry_buf body = FERRY_BUF_INIT;
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ih_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    json_t *j = NULL;
    if (rc == CURLE_OK && body.len > 0)
        j = json_loadb((const char *)body.data, body.len, 0, NULL);
    ferry_buf_free(&body);
    return j;
}

/* A PromQL instant query's single scalar-like result (sum(...)), or -1. */
static double promql(const char *base, const char *query)
{
    CURL *c = curl_easy_init();
    char *q = curl_easy_escape(c, query, 0);
    char url[1024];
    snprintf(url, sizeof(url), "%s/api/v1/query?query=%s&nocache=1", base, q);
    curl_free(q);
    curl_easy_cleanup(c);
    long status;
    json_t *j = get_json(url, &status);
    double v = -1;
    json_t *res = json_object_get(json_object_get(j, "data"), "result");
    if (status == 200 && json_array_size(res) == 1) {
        const char *s =
            json_string_value(json_array_get(json_object_get(json_array_get(res, 0), "value"), 1));
        if (s != NULL)
            v = strtod(s, NULL);
    } else if (status == 200 && json_array_size(res) == 0) {
        v = 0;
    }
    json_decref(j);
    return v;
}

static json_t *influxql_db(const char *base, const char *db, const char *query)
{
    CURL *c = curl_easy_init();
    char *q = curl_easy_escape(c, query, 0);
    char url[1024];
    snprintf(url, sizeof(url), "%s/query?db=%s&q=%s", base, db, q);
    curl_free(q);
    curl_easy_cleanup(c);
    long status;
    json_t *j = get_json(url, &status);
    assert_int_equal(status, 200);
    return j;
}

static json_t *influxql(const char *base, const char *query)
{
    return influxql_db(base, "ferry", query);
}

/* values of the first series of the first result */
static json_t *influx_values(json_t *j)
{
    json_t *series = json_object_get(json_array_get(json_object_get(j, "results"), 0), "series");
    return json_object_get(json_array_get(series, 0), "values");
}

static json_t *forwarders(void)
{
    struct ih_resp r;
    assert_int_equal(ih_http(g_srv.port, "GET", "/v1/forwarders", NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    ih_resp_free(&r);
    assert_non_null(j);
    return json_object_get(j, "forwarders") != NULL ? j : NULL;
}

static int64_t fwd_int(json_t *f, const char *key)
{
    return (int64_t)json_number_value(json_object_get(f, key));
}

static void every_sample_once_in_every_sink_across_sigkills(void **state)
{
    (void)state;
    const char *prom = env("FERRY_TEST_PROM"), *vm = env("FERRY_TEST_VM"),
               *influx = env("FERRY_TEST_INFLUX");
    uint64_t pid = 0;
    assert_int_equal(ferry_parse_u64(env("FERRY_TEST_PROM_PID"), 1u << 30, &pid), 0);
    pid_t prom_pid = (pid_t)pid;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ferry-fwd-test.XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_ini, sizeof(g_ini), "%s/ingest.ini", g_dir);
    FILE *ini = fopen(g_ini, "w");
    assert_non_null(ini);
    fprintf(ini, "[store]\nlmdb_dir = %s/data\n", g_dir);
    if (g_pg != NULL)
        fprintf(ini, "type = postgresql\npg_conninfo = %s\n", g_pg);
    /* Small batches and four workers: several requests of one forwarder in flight at once, and
     * batches that complete out of order, while the ingest is SIGKILLed. */
    const char *common =
        g_pg == NULL
            ? "batch_records = 150\ntimeout = 1s\nmax_backoff = 400ms\nidle = 20ms\nworkers = 4\n"
            /* With PostgreSQL each forwarder runs under a store lease, and a restarted ingest
             * waits for its killed predecessor's lease to expire: 2 s, not the default 15 s. */
            : "batch_records = 150\ntimeout = 1s\nmax_backoff = 400ms\nidle = 20ms\nworkers = 4\n"
              "lease_ttl = 2s\n";
    fprintf(ini, "[forward.prom]\ntype = prometheus_remote_write\nurl = %s/api/v1/write\n%s", prom,
            common);
    fprintf(ini, "[forward.vm]\ntype = prometheus_remote_write\nurl = %s/api/v1/write\n%s", vm,
            common);
    fprintf(ini, "[forward.influx]\ntype = influxdb\nurl = %s/write?db=ferry\n%s", influx, common);
    assert_int_equal(fclose(ini), 0);

    struct ih_device *dev = g_dev;
    for (int d = 0; d < DEVICES; d++) {
        ih_device_new(&dev[d]);
        snprintf(dev[d].id, sizeof(dev[d].id), "fwd-dev-%d", d);
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "'%s' -c '%s' --log.level error device add %s %s >/dev/null",
                 g_bin, g_ini, dev[d].id, dev[d].pk_hex);
        assert_int_equal(system(cmd), 0);
    }
    /* A viewer token for /v1/forwarders and /metrics (operator authentication). */
    char cmd[512], tok[160] = "";
    snprintf(cmd, sizeof(cmd),
             "'%s' -c '%s' --log.level error token create --role viewer --name fwd-test", g_bin,
             g_ini);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(tok, sizeof(tok), p) != NULL && strncmp(tok, "fyt_", 4) != 0)
        ;
    assert_int_equal(pclose(p), 0);
    tok[strcspn(tok, "\n")] = '\0';
    assert_memory_equal(tok, "fyt_", 4);
    start_ingest();
    /* /v1/forwarders needs a viewer token. */
    struct ih_resp r401;
    ih_set_token(NULL);
    assert_int_equal(ih_http(g_srv.port, "GET", "/v1/forwarders", NULL, 0, &r401), 0);
    assert_int_equal(r401.status, 401);
    ih_resp_free(&r401);
    ih_set_token(tok);
    int64_t now = ferry_realtime_ns();
    int kills = 0;
    /* The last round goes to a Prometheus that does not answer (the forwarder's timeout is
     * 1 s): it is retried until Prometheus answers again. */
    for (int round = 0; round <= ROUNDS; round++) {
        if (round == ROUNDS)
            kill(prom_pid, SIGSTOP);
        for (int d = 0; d < DEVICES; d++) {
            /* device 1 is 10 days behind, the others 3: late data is the normal case */
            int64_t base = now - (int64_t)(d == 1 ? 10 : 3) * 86400 * 1000000000LL;
            uint64_t first = (uint64_t)round * PER_BATCH + 1;
            struct ferry_buf b = FERRY_BUF_INIT;
            assert_int_equal(ih_batch(&dev[d], RECORD_METRIC, first, PER_BATCH, now,
                                      base + (int64_t)(first - 1) * 1000000000LL, true, &b),
                             0);
            for (int attempt = 0;; attempt++) {
                assert_true(attempt < 5);
                struct ih_resp r;
                if (ih_http(g_srv.port, "POST", "/v1/batches", b.data, b.len, &r) == 0 &&
                    r.status == 200) {
                    ih_resp_free(&r);
                    break;
                }
                ih_resp_free(&r);
                if (g_srv.pid <= 0 || waitpid(g_srv.pid, NULL, WNOHANG) != 0)
                    start_ingest();
            }
            ferry_buf_free(&b);
        }
        if (round == ROUNDS) {
            /* Prometheus stays stopped until its forwarder has timed out on it at least once
             * (at most 20 s: with PostgreSQL the restarted ingest first waits out the lease). */
            for (int i = 0; i < 200; i++) {
                json_t *j = forwarders();
                int64_t retries =
                    fwd_int(json_array_get(json_object_get(j, "forwarders"), 0), "retries");
                json_decref(j);
                if (retries > 0)
                    break;
                usleep(100000);
            }
            kill(prom_pid, SIGCONT);
        } else if (round % KILL_EVERY == KILL_EVERY - 1) {
            /* While the forwarders are busy with what was just stored. */
            usleep((useconds_t)(rand() % 30000));
            kill_ingest();
            kills++;
            start_ingest();
        }
    }
    const int64_t records = (int64_t)DEVICES * (ROUNDS + 1) * PER_BATCH, samples = 2 * records;
    g_posted = records;
    /* Wait for all three to catch up. */
    json_t *j = NULL;
    bool done = false;
    for (int i = 0; i < 300 && !done; i++) {
        json_decref(j);
        j = forwarders();
        json_t *arr = json_object_get(j, "forwarders");
        assert_int_equal(json_array_size(arr), 3);
        done = true;
        for (size_t k = 0; k < 3; k++)
            if (fwd_int(json_array_get(arr, k), "lag_records") != 0 ||
                fwd_int(json_array_get(arr, k), "cursor_records") != records)
                done = false;
        if (!done)
            usleep(100000);
    }
    if (!done) {
        char *dump = json_dumps(j, JSON_INDENT(1));
        fprintf(stderr, "forwarders did not catch up: %s\n", dump);
        free(dump);
    }
    assert_true(done);
    json_t *arr = json_object_get(j, "forwarders");
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "name")), "prom");
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 2), "type")),
                        "influxdb");
    assert_true(fwd_int(json_array_get(arr, 0), "retries") > 0); /* the SIGSTOPped Prometheus */
    assert_int_equal(fwd_int(json_array_get(arr, 1), "series"), DEVICES * 4 * 2);
    json_decref(j);
    struct ih_resp r;
    assert_int_equal(ih_http(g_srv.port, "GET", "/metrics", NULL, 0, &r), 0);
    assert_non_null(strstr((char *)r.body.data, "ferry_forward_lag_records{forwarder=\"vm\"} 0\n"));
    assert_non_null(strstr((char *)r.body.data, "ferry_forward_lag_seconds{forwarder=\"prom\"}"));
    ih_resp_free(&r);
    fprintf(stderr, "forwarded %lld records (%lld samples) across %d SIGKILLs\n",
            (long long)records, (long long)samples, kills);

    /* Count in each server: every sample exactly once. */
    /* (one series per metric name: count_over_time drops the name, and two series left with
     * the same labels would make the query fail) */
    const char *q = "sum(count_over_time(cpu_usage[15d])) + sum(count_over_time(cpu_temp_mc[15d]))";
    assert_int_equal((int64_t)promql(prom, q), samples);
    char flush[256];
    snprintf(flush, sizeof(flush), "%s/internal/force_flush", vm);
    long st;
    json_decref(get_json(flush, &st));
    double vm_count = -1;
    for (int i = 0; i < 50 && (int64_t)vm_count != samples; i++) {
        vm_count = promql(vm, q);
        if ((int64_t)vm_count != samples)
            usleep(100000);
    }
    assert_int_equal((int64_t)vm_count, samples);
    /* Late data kept its device time: device 1's samples are 10 days old, not "now". */
    assert_int_equal(
        (int64_t)promql(prom, "sum(count_over_time(cpu_usage{device=\"fwd-dev-1\"}[9d]))"), 0);
    j = influxql(influx, "SELECT count(usage), count(temp_mc) FROM cpu");
    json_t *row = json_array_get(influx_values(j), 0);
    assert_int_equal((int64_t)json_number_value(json_array_get(row, 1)), records);
    assert_int_equal((int64_t)json_number_value(json_array_get(row, 2)), records);
    json_decref(j);
    j = influxql(influx, "SHOW FIELD KEYS FROM cpu");
    json_t *vals = influx_values(j);
    assert_int_equal(json_array_size(vals), 2);
    for (size_t i = 0; i < 2; i++) {
        const char *key = json_string_value(json_array_get(json_array_get(vals, i), 0));
        const char *type = json_string_value(json_array_get(json_array_get(vals, i), 1));
        assert_string_equal(type, strcmp(key, "temp_mc") == 0 ? "integer" : "float");
    }
    json_decref(j);
    assert_int_equal(ih_stop(&g_srv), 0);
}

/* PostgreSQL: two ingests write at once (two storage threads each, so transactions commit out
 * of transaction-id order all the time) while a third process forwards; the forwarder follows
 * from the start of the store and the sink must end up with every record exactly once.
 * OPEN BUG (docs/forwarding.md, "Known issues"): it ended with 5,900 of 12,900 records
 * forwarded while the commit-order read sorted transaction ids as text (fixed in store_pg.c);
 * since then it passes in the normal build, but the sanitizer build once ended with 12,870 of
 * 12,900. The pg mode is therefore not in ctest; run it by hand to reproduce:
 *   tests/unit/ingest/with-postgres.sh tests/integration/forward/with-sinks.sh \
 *       build/bin/test_forward_sinks build/bin/ferry-ingest pg */
static void concurrent_writers_no_late_commit_skipped(void **state)
{
    (void)state;
    if (g_pg == NULL)
        skip();
    const char *influx = env("FERRY_TEST_INFLUX");
    char url[512];
    snprintf(url, sizeof(url), "%s/query", influx);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "q=CREATE DATABASE concurrent");
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    struct ih_server srv[3];
    for (int k = 0; k < 3; k++) {
        char ini[256];
        snprintf(ini, sizeof(ini), "%s/concurrent-%d.ini", g_dir, k);
        FILE *f = fopen(ini, "w");
        assert_non_null(f);
        fprintf(f, "[store]\nlmdb_dir = %s/data-%d\ntype = postgresql\npg_conninfo = %s\n", g_dir,
                k, g_pg);
        if (k == 2)
            fprintf(f,
                    "[forward.concurrent]\ntype = influxdb\nurl = %s/write?db=concurrent\n"
                    "batch_records = 70\nidle = 5ms\n",
                    influx);
        assert_int_equal(fclose(f), 0);
        const char *extra[] = {"-c", ini, NULL};
        assert_int_equal(ih_start(&srv[k], g_bin, g_dir, extra), 0);
    }
    int64_t now = ferry_realtime_ns();
    const int rounds = 12;
    for (int round = 0; round < rounds; round++) {
        for (int d = 0; d < DEVICES; d++) {
            uint64_t first = (uint64_t)(ROUNDS + 1 + round) * PER_BATCH + 1;
            struct ferry_buf b = FERRY_BUF_INIT;
            assert_int_equal(ih_batch(&g_dev[d], RECORD_METRIC, first, PER_BATCH, now,
                                      now - 86400LL * 1000000000LL + (int64_t)first * 1000000000LL,
                                      true, &b),
                             0);
            struct ih_resp r;
            assert_int_equal(
                ih_http(srv[(round + d) % 2].port, "POST", "/v1/batches", b.data, b.len, &r), 0);
            assert_int_equal(r.status, 200);
            ih_resp_free(&r);
            ferry_buf_free(&b);
        }
    }
    const int64_t total = g_posted + (int64_t)DEVICES * rounds * PER_BATCH;
    bool done = false;
    for (int i = 0; i < 300 && !done; i++) {
        json_t *j = NULL;
        struct ih_resp r;
        if (ih_http(srv[2].port, "GET", "/v1/forwarders", NULL, 0, &r) == 0 && r.status == 200)
            j = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
        ih_resp_free(&r);
        json_t *f = json_array_get(json_object_get(j, "forwarders"), 0);
        const char *st = json_string_value(json_object_get(f, "state"));
        done = fwd_int(f, "lag_records") == 0 && st != NULL && strcmp(st, "idle") == 0;
        if (!done && i == 299) {
            char *dump = json_dumps(j, 0);
            fprintf(stderr, "expected %lld: %s\n", (long long)total, dump);
            free(dump);
        }
        json_decref(j);
        if (!done)
            usleep(100000);
    }
    assert_true(done);
    json_t *j = influxql_db(influx, "concurrent", "SELECT count(usage) FROM cpu");
    {
        char *dump = json_dumps(j, 0);
        fprintf(stderr, "concurrent: expected %lld, influx %s\n", (long long)total, dump);
        free(dump);
    }
    assert_int_equal(
        (int64_t)json_number_value(json_array_get(json_array_get(influx_values(j), 0), 1)), total);
    json_decref(j);
    for (int k = 0; k < 3; k++)
        assert_int_equal(ih_stop(&srv[k]), 0);
}

int main(int argc, char **argv)
{
    if (argc != 2 && !(argc == 3 && strcmp(argv[2], "pg") == 0)) {
        fprintf(stderr, "usage: [with-postgres.sh] with-sinks.sh test_forward_sinks FERRY_INGEST "
                        "[pg]\n");
        return 2;
    }
    g_bin = argv[1];
    if (argc == 3)
        g_pg = env("FERRY_TEST_PG");
    srand((unsigned)time(NULL));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_sample_once_in_every_sink_across_sigkills),
        cmocka_unit_test(concurrent_writers_no_late_commit_skipped),
    };
    int rc = cmocka_run_group_tests_name("forward", tests, NULL, NULL);
    if (g_dir[0] != '\0') {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", g_dir);
    }
    return rc;
}
