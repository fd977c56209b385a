/*
 * alert-bench - what alert rules cost ferry-ingest, and how fast a notification follows its data.
 *
 *   1. Ingest throughput, the same load with no rules and with 50 rules (49 threshold rules that
 *      match every metric record and never fire, one offline rule), runs interleaved, median of
 *      --runs each: records/s acknowledged, and how long after the load the rules had seen every
 *      stored record (ferry_alerts_records_behind back to 0).
 *   2. Notification latency: with the 50 rules and a webhook receiver (an HTTP sink in this
 *      process), --latency-devices devices each send one batch whose metric breaches a rule with
 *      `for = 0s`; latency = the webhook's arrival - the batch's POST. p50 and p99, with the
 *      evaluation interval given (the engine looks at new records every eval_interval).
 *
 * Real ferry-ingest processes (LMDB store) over loopback; devices registered in the store before
 * the process starts. Prints a table, then one `name: value` line per figure.
 *
 *   alert-bench --ingest build/bin/ferry-ingest [--devices N] [--batches N] [--records N]
 *               [--runs N] [--latency-devices N] [--eval-interval DURATION] [--quick]
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <jansson.h>

#include "cloud-ingest/store.h"
#include "tests/integration/ingest/ingest_harness.h"

struct opts {
    const char *ingest;
    size_t devices, batches, records, runs, latency_devices;
    const char *eval_interval;
};

/* ---- webhook sink ------------------------------------------------------------------------- */

struct sink {
    struct event_base *base;
    struct evhttp *http;
    pthread_t thread;
    unsigned port;
    pthread_mutex_t lock;
    json_t *arrivals; /* device id -> arrival time (ns) of its first firing notification */
};

static void sink_cb(struct evhttp_request *req, void *arg)
{
    struct sink *s = arg;
    int64_t now = ferry_realtime_ns();
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *body = malloc(n + 1);
    if (body != NULL) {
        evbuffer_remove(in, body, n);
        body[n] = '\0';
        json_error_t jerr;
        json_t *j = json_loads(body, 0, &jerr);
        const char *dev = json_string_value(json_object_get(j, "device"));
        const char *status = json_string_value(json_object_get(j, "status"));
        pthread_mutex_lock(&s->lock);
        if (dev && status && strcmp(status, "firing") == 0 &&
            json_object_get(s->arrivals, dev) == NULL)
            json_object_set_new(s->arrivals, dev, json_integer(now));
        pthread_mutex_unlock(&s->lock);
        json_decref(j);
        free(body);
    }
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void *sink_main(void *arg)
{
    struct sink *s = arg;
    event_base_dispatch(s->base);
    return NULL;
}

static int sink_start(struct sink *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->arrivals = json_object();
    s->base = event_base_new();
    s->http = s->base ? evhttp_new(s->base) : NULL;
    struct evhttp_bound_socket *h =
        s->http ? evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0) : NULL;
    if (h == NULL)
        return -1;
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    getsockname(evhttp_bound_socket_get_fd(h), (struct sockaddr *)&sa, &len);
    s->port = ntohs(sa.sin_port);
    evhttp_set_gencb(s->http, sink_cb, s);
    return pthread_create(&s->thread, NULL, sink_main, s) == 0 ? 0 : -1;
}

static void sink_stop(struct sink *s)
{
    event_base_loopbreak(s->base);
    pthread_join(s->thread, NULL);
    evhttp_free(s->http);
    event_base_free(s->base);
    json_decref(s->arrivals);
}

/* ---- setup ---------------------------------------------------------------------------------- */

static int register_devices(const char *dir, struct ih_device *devs, size_t n)
{
    struct ingest_store_config cfg = {.kind = INGEST_STORE_LMDB, .lmdb_dir = dir};
    struct ingest_store *st = NULL;
    char err[256];
    if (ingest_store_open(&cfg, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "alert-bench: %s\n", err);
        return -1;
    }
    struct ingest_device *d = calloc(n, sizeof(*d));
    for (size_t i = 0; d != NULL && i < n; i++) {
        ferry_strlcpy(d[i].id, devs[i].id, sizeof(d[i].id));
        memcpy(d[i].public_key, devs[i].pk, 32);
        memcpy(d[i].key_id, devs[i].pk, 8);
        ferry_strlcpy(d[i].versions, "{}", sizeof(d[i].versions));
    }
    int rc = d ? ingest_store_device_add_many(st, d, n, err, sizeof(err)) : -1;
    if (rc != 0)
        fprintf(stderr, "alert-bench: device add: %s\n", d ? err : "out of memory");
    free(d);
    ingest_store_close(st);
    return rc;
}

/* The rules: 49 threshold rules on cpu.usage that never fire (each record is checked by every
 * one), one offline rule, and `bench.hot > 50 for 0s` notifying the sink. */
static int write_config(const char *path, bool rules, unsigned sink_port, const char *eval)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "[limits]\ndevice_rate = 0\n");
    if (rules) {
        fprintf(f, "[alerts]\neval_interval = %s\n", eval);
        fprintf(f, "[receiver.sink]\ntype = webhook\nurl = http://127.0.0.1:%u/hook\n", sink_port);
        for (int i = 0; i < 48; i++)
            fprintf(f,
                    "[alert.never_%02d]\nmetric = cpu.usage\ncondition = > %d\nfor = 1m\n"
                    "receivers = sink\n",
                    i, 1000 + i);
        fprintf(f, "[alert.offline]\nkind = offline\nfor = 1h\nreceivers = sink\n");
        fprintf(f, "[alert.hot]\nmetric = bench.hot\ncondition = > 50\nfor = 0s\n"
                   "receivers = sink\n");
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* ---- load ----------------------------------------------------------------------------------- */

struct poster {
    const struct opts *o;
    const struct ih_device *devs;
    size_t first_dev, n_devs;
    unsigned port;
    uint64_t records;
    int failed;
};

static void *post_main(void *arg)
{
    struct poster *p = arg;
    CURL *c = curl_easy_init();
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1/batches", p->port);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    h = curl_slist_append(h, "Expect:");
    struct ferry_buf sink = FERRY_BUF_INIT, batch = FERRY_BUF_INIT;
    int64_t ts0 = ferry_realtime_ns() - 3600LL * 1000000000LL;
    for (size_t b = 0; b < p->o->batches && !p->failed; b++) {
        for (size_t d = p->first_dev; d < p->first_dev + p->n_devs && !p->failed; d++) {
            ferry_buf_reset(&batch);
            if (ih_batch(&p->devs[d], RECORD_METRIC, 1 + b * p->o->records, p->o->records,
                         ferry_realtime_ns(), ts0 + (int64_t)b * 1000000000LL, true, &batch) != 0) {
                p->failed = 1;
                break;
            }
            ferry_buf_reset(&sink);
            curl_easy_setopt(c, CURLOPT_URL, url);
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, batch.data);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)batch.len);
            curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ih_write_cb);
            curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
            curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
            long status = 0;
            for (int attempt = 0; attempt < 50; attempt++) { /* 429/503: retry, as a device */
                if (curl_easy_perform(c) != CURLE_OK)
                    status = 0;
                else
                    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                if (status == 200)
                    break;
                usleep(20000);
            }
            if (status != 200)
                p->failed = 1;
            else
                p->records += p->o->records;
        }
    }
    ferry_buf_free(&batch);
    ferry_buf_free(&sink);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

/* Records stored that the alert engine has not evaluated yet, read from the store itself: the
 * engine's cursor "alerts" is committed with what it evaluated, so this is exact (LMDB allows
 * this reader beside the ingest). -1 when unreadable. */
static long long records_behind(const char *data_dir)
{
    struct ingest_store_config cfg = {.kind = INGEST_STORE_LMDB, .lmdb_dir = data_dir};
    struct ingest_store *st = NULL;
    char err[256];
    if (ingest_store_open(&cfg, &st, err, sizeof(err)) != 0)
        return -1;
    struct ingest_store_cursor c;
    uint64_t behind = 0;
    int64_t next_ns = 0;
    int rc = ingest_store_cursor_get(st, "alerts", &c);
    if (rc == 0 || rc == INGEST_STORE_ENOTFOUND)
        rc = ingest_store_commit_lag(st, &c, &behind, &next_ns);
    ingest_store_close(st);
    return rc == 0 ? (long long)behind : -1;
}

struct run_result {
    double records_per_s;
    double catchup_s; /* rules only: load end -> rules saw everything */
};

static int run_load(const struct opts *o, bool rules, unsigned sink_port, struct run_result *res)
{
    char dir[] = "/tmp/alert-bench.XXXXXX";
    if (mkdtemp(dir) == NULL)
        return -1;
    struct ih_device *devs = calloc(o->devices, sizeof(*devs));
    for (size_t i = 0; i < o->devices; i++) {
        ih_device_new(&devs[i]);
        snprintf(devs[i].id, sizeof(devs[i].id), "bench-%05zu", i);
    }
    char data[256], ini[256];
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(ini, sizeof(ini), "%s/ingest.ini", dir);
    int rc = register_devices(data, devs, o->devices) == 0 &&
                     write_config(ini, rules, sink_port, o->eval_interval) == 0
                 ? 0
                 : -1;
    struct ih_server srv;
    const char *extra[] = {"-c", ini, "-d", data, NULL};
    if (rc == 0 && ih_start(&srv, o->ingest, dir, extra) != 0) {
        fprintf(stderr, "alert-bench: ferry-ingest did not start\n");
        rc = -1;
    }
    if (rc == 0) {
        enum { THREADS = 4 };
        struct poster p[THREADS];
        pthread_t t[THREADS];
        size_t per = (o->devices + THREADS - 1) / THREADS;
        int64_t t0 = ferry_monotonic_ns();
        for (int i = 0; i < THREADS; i++) {
            size_t first = (size_t)i * per < o->devices ? (size_t)i * per : o->devices;
            size_t count = o->devices - first < per ? o->devices - first : per;
            p[i] = (struct poster){o, devs, first, count, srv.port, 0, 0};
            pthread_create(&t[i], NULL, post_main, &p[i]);
        }
        uint64_t total = 0;
        for (int i = 0; i < THREADS; i++) {
            pthread_join(t[i], NULL);
            total += p[i].records;
            if (p[i].failed) {
                fprintf(stderr, "alert-bench: a batch was not acknowledged\n");
                rc = -1;
            }
        }
        int64_t t1 = ferry_monotonic_ns();
        res->records_per_s = (double)total / ((double)(t1 - t0) / 1e9);
        res->catchup_s = 0;
        if (rules) {
            long long behind;
            while ((behind = records_behind(data)) != 0 && ferry_monotonic_ns() - t1 < 120e9)
                usleep(20000);
            res->catchup_s = (double)(ferry_monotonic_ns() - t1) / 1e9;
            if (behind != 0) {
                fprintf(stderr, "alert-bench: the rules did not catch up (%lld behind)\n", behind);
                rc = -1;
            }
        }
        ih_stop(&srv);
    }
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = -1;
    free(devs);
    return rc;
}

/* ---- latency -------------------------------------------------------------------------------- */

static int post_hot(unsigned port, const struct ih_device *d)
{
    struct batch_builder_config cfg = {.device_id = d->id, .secret_key = d->sk, .zstd_level = 1};
    struct batch_builder *b = NULL;
    struct ferry_buf out = FERRY_BUF_INIT;
    struct record_field f = {.key = {"hot", 3}, .type = RECORD_FIELD_FLOAT, .v.f = 99};
    int64_t now = ferry_realtime_ns();
    struct record r = {.stream = RECORD_METRIC,
                       .seq = 1,
                       .ts_ns = now,
                       .name = {"bench", 5},
                       .fields = &f,
                       .n_fields = 1};
    int rc = batch_builder_new(&cfg, &b);
    if (rc == 0)
        rc = batch_builder_add(b, &r);
    if (rc == 0)
        rc = batch_builder_finish(b, now, &out);
    batch_builder_free(b);
    struct ih_resp resp;
    if (rc == 0)
        rc = ih_http(port, "POST", "/v1/batches", out.data, out.len, &resp) == 0 &&
                     resp.status == 200
                 ? 0
                 : -1;
    if (rc == 0)
        ih_resp_free(&resp);
    ferry_buf_free(&out);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
    if (n == 0)
        return NAN;
    size_t i = (size_t)ceil(p * (double)n) - 1;
    return v[i < n ? i : n - 1];
}

static int run_latency(const struct opts *o, struct sink *s, double *p50_ms, double *p99_ms,
                       size_t *delivered)
{
    char dir[] = "/tmp/alert-bench-lat.XXXXXX";
    if (mkdtemp(dir) == NULL)
        return -1;
    size_t n = o->latency_devices;
    struct ih_device *devs = calloc(n, sizeof(*devs));
    int64_t *sent = calloc(n, sizeof(*sent));
    for (size_t i = 0; i < n; i++) {
        ih_device_new(&devs[i]);
        snprintf(devs[i].id, sizeof(devs[i].id), "hot-%05zu", i);
    }
    char data[256], ini[256];
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(ini, sizeof(ini), "%s/ingest.ini", dir);
    struct ih_server srv;
    const char *extra[] = {"-c", ini, "-d", data, NULL};
    int rc = register_devices(data, devs, n) == 0 &&
                     write_config(ini, true, s->port, o->eval_interval) == 0 &&
                     ih_start(&srv, o->ingest, dir, extra) == 0
                 ? 0
                 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sent[i] = ferry_realtime_ns();
        rc = post_hot(srv.port, &devs[i]);
        usleep(20000); /* one device every 20 ms: notifications are measured one by one */
    }
    int64_t deadline = ferry_monotonic_ns() + 30000000000LL;
    while (rc == 0 && ferry_monotonic_ns() < deadline) {
        pthread_mutex_lock(&s->lock);
        size_t got = 0;
        for (size_t i = 0; i < n; i++)
            got += json_object_get(s->arrivals, devs[i].id) != NULL;
        pthread_mutex_unlock(&s->lock);
        if (got == n)
            break;
        usleep(20000);
    }
    double *lat = calloc(n, sizeof(*lat));
    size_t k = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        json_t *at = json_object_get(s->arrivals, devs[i].id);
        if (at != NULL)
            lat[k++] = (double)(json_integer_value(at) - sent[i]) / 1e6;
    }
    pthread_mutex_unlock(&s->lock);
    qsort(lat, k, sizeof(*lat), cmp_double);
    *p50_ms = pct(lat, k, 0.50);
    *p99_ms = pct(lat, k, 0.99);
    *delivered = k;
    if (srv.pid > 0)
        ih_stop(&srv);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = -1;
    free(lat);
    free(sent);
    free(devs);
    return rc == 0 && k == n ? 0 : -1;
}

/* ---- main ----------------------------------------------------------------------------------- */

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int usage(int code)
{
    printf(
        "usage: alert-bench --ingest PATH [--devices N] [--batches N] [--records N] [--runs N]\n"
        "                   [--latency-devices N] [--eval-interval DURATION] [--quick]\n"
        "  --devices N          devices posting in the throughput runs (200)\n"
        "  --batches N          batches per device (20)\n"
        "  --records N          metric records per batch (100)\n"
        "  --runs N             runs of each mode, interleaved; medians reported (3)\n"
        "  --latency-devices N  devices whose one breaching batch is timed to the webhook (100)\n"
        "  --eval-interval D    [alerts] eval_interval of the ingest (1s, its default)\n"
        "  --quick              a short run for CI (50 devices x 5 batches, 1 run, 20 devices)\n");
    return code;
}

int main(int argc, char **argv)
{
    struct opts o = {NULL, 200, 20, 100, 3, 100, "1s"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n = 0;
        if (strcmp(a, "--ingest") == 0 && v)
            o.ingest = argv[++i];
        else if (strcmp(a, "--eval-interval") == 0 && v)
            o.eval_interval = argv[++i];
        else if (strcmp(a, "--quick") == 0) {
            o.devices = 50;
            o.batches = 5;
            o.runs = 1;
            o.latency_devices = 20;
        } else if (v && ferry_parse_u64(v, 1000000, &n) == 0 && n > 0 &&
                   (strcmp(a, "--devices") == 0 || strcmp(a, "--batches") == 0 ||
                    strcmp(a, "--records") == 0 || strcmp(a, "--runs") == 0 ||
                    strcmp(a, "--latency-devices") == 0)) {
            size_t *dst = strcmp(a, "--devices") == 0   ? &o.devices
                          : strcmp(a, "--batches") == 0 ? &o.batches
                          : strcmp(a, "--records") == 0 ? &o.records
                          : strcmp(a, "--runs") == 0    ? &o.runs
                                                        : &o.latency_devices;
            *dst = (size_t)n;
            i++;
        } else
            return usage(strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 ? 0 : 2);
    }
    if (o.ingest == NULL || o.runs > 50)
        return usage(2);
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0 ||
        evthread_use_pthreads() != 0)
        return 1;
    struct sink s;
    if (sink_start(&s) != 0) {
        fprintf(stderr, "alert-bench: cannot start the webhook sink\n");
        return 1;
    }
    double *none = calloc(o.runs, sizeof(double)), *with = calloc(o.runs, sizeof(double)),
           *catchup = calloc(o.runs, sizeof(double));
    int rc = 0;
    for (size_t r = 0; rc == 0 && r < o.runs; r++) {
        struct run_result a, b;
        rc = run_load(&o, false, s.port, &a);
        if (rc == 0)
            rc = run_load(&o, true, s.port, &b);
        if (rc == 0) {
            none[r] = a.records_per_s;
            with[r] = b.records_per_s;
            catchup[r] = b.catchup_s;
            printf("run %zu: no rules %.0f records/s, 50 rules %.0f records/s, rules caught up "
                   "%.2f s after the load\n",
                   r + 1, a.records_per_s, b.records_per_s, b.catchup_s);
        }
    }
    double p50 = NAN, p99 = NAN;
    size_t delivered = 0;
    if (rc == 0)
        rc = run_latency(&o, &s, &p50, &p99, &delivered);
    sink_stop(&s);
    if (rc != 0) {
        fprintf(stderr, "alert-bench: a run failed\n");
        return 1;
    }
    double mn = median(none, o.runs), mw = median(with, o.runs), mc = median(catchup, o.runs);
    printf("\n%-44s %14s\n", "measurement", "value");
    printf("%-44s %14.0f\n", "ingest records/s, no rules (median)", mn);
    printf("%-44s %14.0f\n", "ingest records/s, 50 rules (median)", mw);
    printf("%-44s %13.3fx\n", "with rules / without", mw / mn);
    printf("%-44s %14.2f\n", "rules caught up after the load (s, median)", mc);
    printf("%-44s %14.1f\n", "notification latency p50 (ms)", p50);
    printf("%-44s %14.1f\n", "notification latency p99 (ms)", p99);
    printf("(%zu devices x %zu batches x %zu records, %zu runs; latency over %zu devices, "
           "eval_interval %s)\n\n",
           o.devices, o.batches, o.records, o.runs, delivered, o.eval_interval);
    printf("ingest_records_per_s_no_rules: %.0f\n", mn);
    printf("ingest_records_per_s_50_rules: %.0f\n", mw);
    printf("rules_throughput_ratio: %.3f\n", mw / mn);
    printf("rules_catchup_s: %.2f\n", mc);
    printf("notify_latency_p50_ms: %.1f\n", p50);
    printf("notify_latency_p99_ms: %.1f\n", p99);
    free(none);
    free(with);
    free(catchup);
    curl_global_cleanup();
    return 0;
}
