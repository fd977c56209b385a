/*
 * forward-bench - forwarding throughput of ferry-ingest into VictoriaMetrics and Prometheus,
 * beside the same server's ingestion of the same samples from a bare remote-write client, in the
 * same run (docs/forwarding.md).
 *
 * Run it inside tests/integration/forward/with-sinks.sh (which starts the real servers):
 *   tests/integration/forward/with-sinks.sh build/bin/forward-bench --ingest build/bin/ferry-ingest
 *
 * For each repetition: a fresh LMDB store is filled directly through the store interface with
 * DEVICES x RECORDS metric records (two fields each: cpu usage float, temperature integer; one
 * series per device, core and field), then for each sink:
 *   bare       the same samples (device ids of their own, so the series are new to the server,
 *              as the forwarder's are) pre-encoded into remote write requests of the forwarder's
 *              batch size; the timed part is POSTing them one after another on one keep-alive
 *              connection: what the server takes from one sequential client, the ceiling.
 *   forwarder  ferry-ingest started on the store with one forwarder to the sink; timed from the
 *              process start until GET /v1/forwarders says every record was forwarded
 *              (end to end), and from the first poll that saw a batch delivered to the end
 *              (steady: without the process start, which is not forwarding).
 * Prints a table of medians (rates) and of per-repetition ratios, where the time went (stderr),
 * then `name: value` lines. The machine is shared: figures indicative, ratios matter more.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cloud-ingest/forward/forward_impl.h"
#include "cloud-ingest/store.h"
#include "common/buf.h"
#include "common/util.h"
#include "tests/integration/ingest/ingest_harness.h"

static const char *g_ingest;
static size_t g_devices = 200, g_records = 4000, g_batch = 5000, g_workers = 0;
static int g_reps = 3;
static double g_encode_secs; /* the last bare_run's encoding time (one thread, no store) */
static char g_tmp[128];

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The records of device d, record i: the same shape as the devices' cpu collector. */
static void make_record(size_t d, size_t i, int64_t base_ns, struct record *r, struct record_tag *t,
                        struct record_field f[2], char core[8])
{
    (void)d;
    snprintf(core, 8, "%zu", i % 4);
    *t = (struct record_tag){.key = {"core", 4}, .value = {core, strlen(core)}};
    f[0] = (struct record_field){
        .key = {"usage", 5}, .type = RECORD_FIELD_FLOAT, .v.f = (double)(i % 97) / 3};
    f[1] = (struct record_field){
        .key = {"temp_mc", 7}, .type = RECORD_FIELD_INT, .v.i = 41000 + (int64_t)(i % 13)};
    *r = (struct record){.stream = RECORD_METRIC,
                         .seq = i + 1,
                         .ts_ns = base_ns + (int64_t)i * 250000000LL, /* 4 per second */
                         .name = {"cpu", 3},
                         .tags = t,
                         .n_tags = 1,
                         .fields = f,
                         .n_fields = 2};
}

/* Fills a fresh LMDB store in `dir` with devices "<prefix>-dev-N". */
static int fill_store(const char *dir, const char *prefix, int64_t base_ns)
{
    struct ingest_store_config cfg = {.kind = INGEST_STORE_LMDB, .lmdb_dir = dir};
    struct ingest_store *s = NULL;
    char err[256];
    if (ingest_store_open(&cfg, &s, err, sizeof(err)) != 0) {
        fprintf(stderr, "forward-bench: %s\n", err);
        return -1;
    }
    struct ingest_device *devs = calloc(g_devices, sizeof(*devs));
    struct ingest_rec *recs = calloc(g_records, sizeof(*recs));
    size_t *offs = calloc(g_records, sizeof(*offs));
    int rc = devs != NULL && recs != NULL && offs != NULL ? 0 : -1;
    for (size_t d = 0; d < g_devices && rc == 0; d++) {
        snprintf(devs[d].id, sizeof(devs[d].id), "%s-dev-%zu", prefix, d);
        memset(devs[d].public_key, (int)(d & 0xff), 32);
        memcpy(devs[d].public_key, &d, sizeof(d));
        memcpy(devs[d].key_id, devs[d].public_key, 8);
        devs[d].key_id[7] ^= (uint8_t)prefix[0];
        devs[d].public_key[31] ^= (uint8_t)prefix[0];
        ferry_strlcpy(devs[d].versions, "{}", sizeof(devs[d].versions));
    }
    if (rc == 0)
        rc = ingest_store_device_add_many(s, devs, g_devices, err, sizeof(err));
    struct ferry_buf arena = FERRY_BUF_INIT;
    for (size_t d = 0; d < g_devices && rc == 0; d++) {
        ferry_buf_reset(&arena);
        for (size_t i = 0; i < g_records && rc == 0; i++) {
            struct record r;
            struct record_tag t;
            struct record_field f[2];
            char core[8];
            make_record(d, i, base_ns, &r, &t, f, core);
            offs[i] = arena.len;
            rc = record_pack(&r, &arena);
            recs[i] = (struct ingest_rec){.stream = RECORD_METRIC,
                                          .seq = r.seq,
                                          .ts_ns = r.ts_ns,
                                          .ts_corrected_ns = r.ts_ns,
                                          .packed_len = arena.len - offs[i]};
        }
        for (size_t i = 0; i < g_records; i++)
            recs[i].packed = arena.data + offs[i];
        struct ingest_write w = {.device_id = devs[d].id,
                                 .received_ns = ferry_realtime_ns(),
                                 .recs = recs,
                                 .n_recs = g_records};
        struct ingest_write *ws[1] = {&w};
        if (rc == 0)
            rc = ingest_store_write(s, ws, 1, err, sizeof(err));
    }
    if (rc != 0)
        fprintf(stderr, "forward-bench: fill store: %s\n", err);
    ferry_buf_free(&arena);
    free(devs);
    free(recs);
    free(offs);
    ingest_store_close(s);
    return rc;
}

/* The bare client: the same records, encoded like the forwarder does, posted in sequence. */
static double bare_run(const char *url, const char *prefix, int64_t base_ns, size_t *samples)
{
    struct fwd_prom *p = NULL;
    if (fwd_prom_new(100000000, &p) != 0)
        return -1;
    /* Bodies of g_batch / 2 records (g_batch samples), in the store's commit order (device by
     * device), as the forwarder cuts them. */
    size_t per_body = g_batch / 2 ? g_batch / 2 : 1, total = g_devices * g_records;
    size_t n_bodies = (total + per_body - 1) / per_body;
    struct ferry_buf *bodies = calloc(n_bodies, sizeof(*bodies));
    if (bodies == NULL)
        return -1;
    *samples = 0;
    size_t k = 0;
    int64_t enc0 = ferry_monotonic_ns();
    for (size_t b = 0; b < n_bodies; b++) {
        fwd_prom_reset(p);
        for (; k < total && k < (b + 1) * per_body; k++) {
            size_t d = k / g_records, i = k % g_records;
            char id[64];
            snprintf(id, sizeof(id), "%s-dev-%zu", prefix, d);
            struct record r;
            struct record_tag t;
            struct record_field f[2];
            char core[8];
            make_record(d, i, base_ns, &r, &t, f, core);
            if (fwd_prom_add(p, id, &r, r.ts_ns) != 0)
                return -1;
        }
        *samples += fwd_prom_samples(p);
        if (fwd_prom_finish(p, &bodies[b]) != 0)
            return -1;
    }
    fwd_prom_free(p);
    g_encode_secs = (double)(ferry_monotonic_ns() - enc0) / 1e9;
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-protobuf");
    h = curl_slist_append(h, "Content-Encoding: snappy");
    h = curl_slist_append(h, "X-Prometheus-Remote-Write-Version: 0.1.0");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ih_write_cb);
    struct ferry_buf sink = FERRY_BUF_INIT;
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    int64_t t0 = ferry_monotonic_ns();
    double secs = -1;
    for (size_t b = 0; b < n_bodies; b++) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, bodies[b].data);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)bodies[b].len);
        long status = 0;
        if (curl_easy_perform(c) != CURLE_OK ||
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK ||
            status / 100 != 2) {
            fprintf(stderr, "forward-bench: bare POST %s: status %ld %.*s\n", url, status,
                    (int)sink.len, (const char *)sink.data);
            goto out;
        }
        ferry_buf_reset(&sink);
    }
    secs = (double)(ferry_monotonic_ns() - t0) / 1e9;
out:
    ferry_buf_free(&sink);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    for (size_t b = 0; b < n_bodies; b++)
        ferry_buf_free(&bodies[b]);
    free(bodies);
    return secs;
}

/* ferry-ingest with one forwarder on the filled store; seconds until all is forwarded. */
static double forward_run(const char *dir, const char *url, const char *name, size_t *samples,
                          double *steady)
{
    char ini[320];
    snprintf(ini, sizeof(ini), "%s/%s.ini", dir, name);
    FILE *f = fopen(ini, "w");
    if (f == NULL)
        return -1;
    fprintf(f,
            "[store]\nlmdb_dir = %s\n[forward.%s]\ntype = prometheus_remote_write\nurl = %s\n"
            "batch_records = %zu\nidle = 5ms\n",
            dir, name, url, g_batch / 2);
    if (g_workers > 0)
        fprintf(f, "workers = %zu\n", g_workers);
    fclose(f);
    /* A viewer token for /v1/forwarders (operator authentication), made before the clock starts. */
    char cmd[768], tok[160] = "";
    snprintf(cmd, sizeof(cmd),
             "'%s' -c '%s' --log.level error token create --role viewer --name %s", g_ingest, ini,
             name);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    while (fgets(tok, sizeof(tok), p) != NULL && strncmp(tok, "fyt_", 4) != 0)
        ;
    if (pclose(p) != 0 || strncmp(tok, "fyt_", 4) != 0)
        return -1;
    tok[strcspn(tok, "\n")] = '\0';
    ih_set_token(tok);
    const char *extra[] = {"-c", ini, NULL};
    struct ih_server srv;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_CHILDREN, &ru0);
    int64_t t0 = ferry_monotonic_ns();
    if (ih_start(&srv, g_ingest, g_tmp, extra) != 0)
        return -1;
    double ready_s = (double)(ferry_monotonic_ns() - t0) / 1e9, first_s = -1;
    size_t first_samples = 0;
    uint64_t total = (uint64_t)g_devices * g_records;
    double secs = -1;
    for (int i = 0; i < 12000; i++) {
        struct ih_resp r;
        if (ih_http(srv.port, "GET", "/v1/forwarders", NULL, 0, &r) == 0 && r.status == 200) {
            json_t *j = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
            json_t *fw = json_array_get(json_object_get(j, "forwarders"), 0);
            uint64_t cur = (uint64_t)json_number_value(json_object_get(fw, "cursor_records"));
            *samples = (size_t)json_number_value(json_object_get(fw, "samples_sent"));
            uint64_t rejected =
                (uint64_t)json_number_value(json_object_get(fw, "rejected_batches"));
            json_decref(j);
            if (cur > 0 && first_s < 0) {
                first_s = (double)(ferry_monotonic_ns() - t0) / 1e9;
                first_samples = *samples;
            }
            if (cur >= total) {
                secs = (double)(ferry_monotonic_ns() - t0) / 1e9;
                if (rejected > 0)
                    fprintf(stderr, "forward-bench: %s: %llu batches rejected\n", name,
                            (unsigned long long)rejected);
                ih_resp_free(&r);
                break;
            }
        }
        ih_resp_free(&r);
        usleep(10000); /* each poll is a new connection: not too often on a small machine */
    }
    ih_stop(&srv);
    getrusage(RUSAGE_CHILDREN, &ru1);
    double cpu_s = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                            ru0.ru_stime.tv_sec) +
                   (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                            ru0.ru_stime.tv_usec) /
                       1e6;
    /* Where the forwarder's time went: a start that takes long, or a first batch that comes
     * late, is not the forwarder's throughput. */
    fprintf(stderr,
            "  %s: ferry-ingest answering after %.3f s, first batch delivered by %.3f s, all by "
            "%.3f s, ferry-ingest CPU %.3f s\n",
            name, ready_s, first_s, secs, cpu_s);
    if (secs > 0 && steady != NULL) {
        /* From the first poll that saw a delivered batch to the end: what the forwarder
         * sustains, without the process start (opening the store, its other services). */
        *steady = secs > first_s && *samples > first_samples
                      ? (double)(*samples - first_samples) / (secs - first_s)
                      : (double)*samples / secs;
    }
    return secs;
}

static void usage(void)
{
    printf("usage: with-sinks.sh forward-bench --ingest FERRY_INGEST [--quick] [--devices N]\n"
           "       [--records N] [--batch N] [--reps N] [--workers N]\n"
           "  --devices N   devices in the store (200)\n"
           "  --records N   metric records per device, two samples each (4000: 1.6 million\n"
           "                samples, about a second per run; at 1000 the start weighs in)\n"
           "  --batch N     bare client: samples per request; forwarder: batch_records N/2 (5000)\n"
           "  --reps N      repetitions, medians printed (3)\n"
           "  --workers N   the forwarder's `workers` (default: its own default, auto)\n"
           "  --quick       20 devices x 200 records, one repetition (the ctest entry)\n");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        uint64_t v = 0;
        if (strcmp(argv[i], "--ingest") == 0 && i + 1 < argc)
            g_ingest = argv[++i];
        else if (strcmp(argv[i], "--quick") == 0) {
            g_devices = 20;
            g_records = 200;
            g_reps = 1;
        } else if (i + 1 < argc && ferry_parse_u64(argv[i + 1], 100000000, &v) == 0 && v > 0 &&
                   (strcmp(argv[i], "--devices") == 0 || strcmp(argv[i], "--records") == 0 ||
                    strcmp(argv[i], "--batch") == 0 || strcmp(argv[i], "--reps") == 0 ||
                    strcmp(argv[i], "--workers") == 0)) {
            if (strcmp(argv[i], "--devices") == 0)
                g_devices = v;
            else if (strcmp(argv[i], "--records") == 0)
                g_records = v;
            else if (strcmp(argv[i], "--batch") == 0)
                g_batch = v;
            else if (strcmp(argv[i], "--workers") == 0)
                g_workers = v > 16 ? 16 : v;
            else
                g_reps = v > 15 ? 15 : (int)v;
            i++;
        } else {
            usage();
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    const char *vm = getenv("FERRY_TEST_VM"), *prom = getenv("FERRY_TEST_PROM");
    if (g_ingest == NULL || vm == NULL || prom == NULL) {
        usage();
        fprintf(stderr, "forward-bench: needs --ingest and FERRY_TEST_VM/FERRY_TEST_PROM "
                        "(run through tests/integration/forward/with-sinks.sh)\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/forward-bench.XXXXXX");
    if (mkdtemp(g_tmp) == NULL)
        return 1;
    struct {
        const char *name, *url_base;
        double bare[16], fwd[16], steady[16];
    } sinks[2] = {{"victoriametrics", vm, {0}, {0}, {0}}, {"prometheus", prom, {0}, {0}, {0}}};
    int64_t now = ferry_realtime_ns();
    int status = 0;
    size_t bare_samples = 0, fwd_samples = 0;
    for (int rep = 0; rep < g_reps && status == 0; rep++) {
        char dir[256], prefix[16], bprefix[16];
        snprintf(dir, sizeof(dir), "%s/store-%d", g_tmp, rep);
        snprintf(prefix, sizeof(prefix), "f%d", rep);
        snprintf(bprefix, sizeof(bprefix), "b%d", rep);
        /* An hour back, a little earlier each repetition: recent, in-order data. */
        int64_t base = now - (int64_t)(rep + 1) * 3600 * 1000000000LL;
        if (fill_store(dir, prefix, base) != 0) {
            status = 1;
            break;
        }
        for (int s = 0; s < 2; s++) {
            char url[512], name[32];
            snprintf(url, sizeof(url), "%s/api/v1/write", sinks[s].url_base);
            snprintf(name, sizeof(name), "%s%d", s == 0 ? "vm" : "prom", rep);
            double b = bare_run(url, bprefix, base, &bare_samples);
            double steady = 0;
            double f = forward_run(dir, url, name, &fwd_samples, &steady);
            if (b <= 0 || f <= 0 || bare_samples != fwd_samples) {
                fprintf(stderr,
                        "forward-bench: %s failed (bare %.3f s, %zu samples; forwarder "
                        "%.3f s, %zu samples)\n",
                        sinks[s].name, b, bare_samples, f, fwd_samples);
                status = 1;
                break;
            }
            sinks[s].bare[rep] = (double)bare_samples / b;
            sinks[s].fwd[rep] = (double)fwd_samples / f;
            sinks[s].steady[rep] = steady;
            fprintf(stderr,
                    "  rep %d %-15s bare %10.0f samples/s  forwarder %10.0f samples/s (steady "
                    "%.0f)  (encoder alone, one thread: %.0f samples/s)\n",
                    rep, sinks[s].name, sinks[s].bare[rep], sinks[s].fwd[rep], steady,
                    (double)bare_samples / g_encode_secs);
        }
    }
    if (status == 0) {
        char workers[24] = "auto";
        if (g_workers > 0)
            snprintf(workers, sizeof(workers), "%zu", g_workers);
        printf("forward-bench: %zu devices x %zu records (%zu samples), batches of %zu samples, "
               "workers %s, medians of %d\n",
               g_devices, g_records, fwd_samples, g_batch, workers, g_reps);
        printf("%-16s %14s %14s %6s %14s %6s\n", "sink", "bare client/s", "forwarder/s", "ratio",
               "fwd steady/s", "ratio");
        /* Ratios: the median of each repetition's ratio (the bare client and the forwarder of a
         * repetition run one after the other, under the same load; the load changes between
         * repetitions on a shared machine). */
        double mb[2], mf[2], ms[2], rf[2], rs[2];
        for (int s = 0; s < 2; s++) {
            double r1[16], r2[16];
            for (int rep = 0; rep < g_reps; rep++) {
                r1[rep] = sinks[s].fwd[rep] / sinks[s].bare[rep];
                r2[rep] = sinks[s].steady[rep] / sinks[s].bare[rep];
            }
            rf[s] = median(r1, g_reps);
            rs[s] = median(r2, g_reps);
            mb[s] = median(sinks[s].bare, g_reps);
            mf[s] = median(sinks[s].fwd, g_reps);
            ms[s] = median(sinks[s].steady, g_reps);
            printf("%-16s %14.0f %14.0f %6.2f %14.0f %6.2f\n", sinks[s].name, mb[s], mf[s], rf[s],
                   ms[s], rs[s]);
        }
        for (int s = 0; s < 2; s++) {
            const char *k = s == 0 ? "vm" : "prometheus";
            printf("forward_bench_%s_bare_samples_per_s: %.0f\n", k, mb[s]);
            printf("forward_bench_%s_forwarder_samples_per_s: %.0f\n", k, mf[s]);
            printf("forward_bench_%s_ratio: %.2f\n", k, rf[s]);
            printf("forward_bench_%s_forwarder_steady_samples_per_s: %.0f\n", k, ms[s]);
            printf("forward_bench_%s_steady_ratio: %.2f\n", k, rs[s]);
        }
    }
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "forward-bench: could not remove %s\n", g_tmp);
    return status;
}
