/*
 * series.c - GET /v1/series: one metric field of one device, downsampled into time buckets of
 * min / max / mean / count on the ingest (query.h says why and what the answer holds).
 *
 * How a request runs:
 *   1. The query string is parsed and checked (ingest_series_parse); every error is a 400 that
 *      names the parameter.
 *   2. The device's highest metric sequence tells where the scan starts: at most
 *      INGEST_SERIES_SCAN_MAX records back from the newest, so the most recent data is always in
 *      (a chart is about "now" far more often than about last year).
 *   3. ingest_scan_recent() (scan.h) hands out the records page by page; a record whose
 * name is not the measurement or whose corrected device time is outside [from, to) costs a compare;
 * only matching ones have their fields' JSON parsed.
 *   4. Buckets are an array of `points` accumulators indexed by (ts - from) / bucket_ns.
 *
 * Invariants: bucket_ns >= 1 and points * bucket_ns >= to - from, so every in-range sample has a
 * bucket index < points. Time is ts_corrected (device time corrected for its clock offset), the
 * same time the export and the alerts use.
 */
#include "cloud-ingest/query/query.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "cloud-ingest/query/compare.h"
#include "cloud-ingest/query/scan.h"
#include "cloud-ingest/router.h"
#include "common/buf.h"
#include "common/util.h"

#define SERIES_RANGE_MAX_NS ((int64_t)10 * 366 * 24 * 3600 * 1000000000LL)
#define SERIES_DEFAULT_RANGE_NS ((int64_t)3600 * 1000000000LL)

struct series_bucket {
    double min;
    double max;
    double sum;
    uint64_t count;
};

struct series_scan {
    const struct ingest_series_req *req;
    size_t measurement_len;
    int64_t bucket_ns;
    struct series_bucket *buckets;
    uint64_t samples;
};

static int param_i64(struct evkeyvalq *q, const char *name, int64_t dflt, int64_t *out, char *err,
                     size_t err_len)
{
    const char *v = evhttp_find_header(q, name);
    *out = dflt;
    if (v == NULL)
        return 0;
    if (ferry_parse_i64(v, 0, INT64_MAX, out) != 0) {
        snprintf(err, err_len, "query: %s: not a time in nanoseconds since the epoch", name);
        return -1;
    }
    return 0;
}

/* Only these parameters exist: a misspelt one is refused rather than silently ignored. */
static int check_known(struct evkeyvalq *q, char *err, size_t err_len)
{
    static const char *const known[] = {"device", "metric", "from", "to", "points"};
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, q, next)
    {
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            ok |= strcmp(kv->key, known[i]) == 0;
        if (!ok) {
            char name[64];
            ferry_strlcpy(name, kv->key, sizeof(name));
            for (char *c = name; *c; c++)
                if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                    *c = '?';
            snprintf(err, err_len,
                     "query: unknown parameter \"%s\" (device, metric, from, to, points)", name);
            return -1;
        }
    }
    return 0;
}

static int parse_metric(const char *metric, struct ingest_series_req *req, char *err,
                        size_t err_len)
{
    size_t len = metric != NULL ? strlen(metric) : 0;
    const char *dot = metric != NULL ? strrchr(metric, '.') : NULL;
    if (metric == NULL || len == 0) {
        snprintf(err, err_len, "query: metric: missing (MEASUREMENT.FIELD, e.g. thermal.gpu)");
        return -1;
    }
    if (len > INGEST_SERIES_METRIC_MAX) {
        snprintf(err, err_len, "query: metric: longer than %d bytes", INGEST_SERIES_METRIC_MAX);
        return -1;
    }
    if (dot == NULL || dot == metric || dot[1] == '\0') {
        snprintf(err, err_len,
                 "query: metric: must be MEASUREMENT.FIELD (split at the last dot), e.g. "
                 "thermal.gpu");
        return -1;
    }
    size_t mlen = (size_t)(dot - metric);
    memcpy(req->measurement, metric, mlen);
    req->measurement[mlen] = '\0';
    ferry_strlcpy(req->field, dot + 1, sizeof(req->field));
    return 0;
}

int ingest_series_parse(const char *query, int64_t now_ns, struct ingest_series_req *req, char *err,
                        size_t err_len)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    int rc = -1;
    memset(req, 0, sizeof(*req));
    if (query == NULL || evhttp_parse_query_str(query, &q) != 0) {
        snprintf(err, err_len,
                 "query: needs device=ID&metric=MEASUREMENT.FIELD[&from=NS][&to=NS][&points=N]");
        goto out;
    }
    if (check_known(&q, err, err_len) != 0)
        goto out;
    const char *device = evhttp_find_header(&q, "device");
    if (device == NULL || !ingest_device_id_valid(device)) {
        snprintf(err, err_len, "query: device: missing or not a device id");
        goto out;
    }
    ferry_strlcpy(req->device, device, sizeof(req->device));
    if (parse_metric(evhttp_find_header(&q, "metric"), req, err, err_len) != 0)
        goto out;
    if (param_i64(&q, "to", now_ns, &req->to_ns, err, err_len) != 0)
        goto out;
    int64_t dflt_from =
        req->to_ns > SERIES_DEFAULT_RANGE_NS ? req->to_ns - SERIES_DEFAULT_RANGE_NS : 0;
    if (param_i64(&q, "from", dflt_from, &req->from_ns, err, err_len) != 0)
        goto out;
    if (req->from_ns >= req->to_ns) {
        snprintf(err, err_len, "query: from must be before to (from=%" PRId64 ", to=%" PRId64 ")",
                 req->from_ns, req->to_ns);
        goto out;
    }
    if (req->to_ns - req->from_ns > SERIES_RANGE_MAX_NS) {
        snprintf(err, err_len, "query: from..to spans more than ten years");
        goto out;
    }
    const char *points = evhttp_find_header(&q, "points");
    uint64_t n = INGEST_SERIES_POINTS_DEFAULT;
    if (points != NULL && (ferry_parse_u64(points, INGEST_SERIES_POINTS_MAX, &n) != 0 || n == 0)) {
        snprintf(err, err_len, "query: points: 1..%d", INGEST_SERIES_POINTS_MAX);
        goto out;
    }
    req->points = (uint32_t)n;
    rc = 0;
out:
    evhttp_clear_headers(&q);
    return rc;
}

static int scan_cb(const struct ingest_row *r, void *arg)
{
    struct series_scan *s = arg;
    const struct ingest_series_req *req = s->req;
    if (r->name_len != s->measurement_len || memcmp(r->name, req->measurement, r->name_len) != 0)
        return 0;
    if (r->ts_corrected_ns < req->from_ns || r->ts_corrected_ns >= req->to_ns)
        return 0;
    double v;
    if (!ingest_scan_field_value(r->fields_json, r->fields_json_len, req->field, &v))
        return 0;
    uint64_t i = (uint64_t)(r->ts_corrected_ns - req->from_ns) / (uint64_t)s->bucket_ns;
    assert(i < req->points);
    struct series_bucket *b = &s->buckets[i];
    if (b->count == 0 || v < b->min)
        b->min = v;
    if (b->count == 0 || v > b->max)
        b->max = v;
    b->sum += v;
    b->count++;
    s->samples++;
    return 0;
}

/* %.17g round-trips a double; finite values only reach here, so the text is a JSON number. */
static int append_double(struct ferry_buf *b, double v)
{
    return ferry_buf_printf(b, "%.17g", v);
}

int ingest_series_json(struct ingest_store *store, const struct ingest_series_req *req,
                       struct ferry_buf *out)
{
    struct ingest_device dev;
    int rc = ingest_store_device_get(store, req->device, &dev);
    if (rc != 0)
        return rc;
    uint64_t range = (uint64_t)(req->to_ns - req->from_ns);
    struct series_scan s = {
        .req = req,
        .measurement_len = strlen(req->measurement),
        .bucket_ns = (int64_t)((range + req->points - 1) / req->points),
    };
    if (s.bucket_ns < 1)
        s.bucket_ns = 1;
    s.buckets = calloc(req->points, sizeof(*s.buckets));
    if (s.buckets == NULL)
        return INGEST_STORE_ENOMEM;
    struct ingest_scan_stats st;
    rc = ingest_scan_recent(store, req->device, RECORD_METRIC, dev.streams[RECORD_METRIC].max_seq,
                            INGEST_SERIES_SCAN_MAX, scan_cb, &s, &st);
    if (rc != 0)
        goto out;
    int e = ferry_buf_append(out, "{\"device\":", 10);
    e |= ferry_buf_append_json_string(out, req->device, strlen(req->device));
    e |= ferry_buf_append(out, ",\"metric\":", 10);
    char metric[2 * INGEST_SERIES_METRIC_MAX + 2];
    int mlen = snprintf(metric, sizeof(metric), "%s.%s", req->measurement, req->field);
    e |= ferry_buf_append_json_string(out, metric, (size_t)mlen);
    e |= ferry_buf_printf(out,
                          ",\"from\":%" PRId64 ",\"to\":%" PRId64 ",\"bucket_ns\":%" PRId64
                          ",\"samples\":%" PRIu64 ",\"points\":[",
                          req->from_ns, req->to_ns, s.bucket_ns, s.samples);
    bool first = true;
    for (uint32_t i = 0; i < req->points && e == 0; i++) {
        const struct series_bucket *b = &s.buckets[i];
        if (b->count == 0)
            continue;
        e |= ferry_buf_printf(out, "%s{\"t\":%" PRId64 ",\"min\":", first ? "" : ",",
                              req->from_ns + (int64_t)i * s.bucket_ns);
        e |= append_double(out, b->min);
        e |= ferry_buf_append(out, ",\"max\":", 7);
        e |= append_double(out, b->max);
        e |= ferry_buf_append(out, ",\"mean\":", 8);
        e |= append_double(out, b->sum / (double)b->count);
        e |= ferry_buf_printf(out, ",\"count\":%" PRIu64 "}", b->count);
        first = false;
    }
    e |= ferry_buf_printf(out, "],\"scanned\":%" PRIu64 ",\"scan_limit\":%d,\"truncated\":%s}\n",
                          st.scanned, INGEST_SERIES_SCAN_MAX, st.truncated ? "true" : "false");
    rc = e != 0 ? INGEST_STORE_ENOMEM : 0;
out:
    free(s.buckets);
    return rc;
}

static void handle_series(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_store *store = arg;
    struct ingest_series_req sr;
    char err[512];
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (ingest_series_parse(query, ferry_realtime_ns(), &sr, err, sizeof(err)) != 0) {
        ingest_reply_error(req, 400, "%s", err);
        return;
    }
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = ingest_series_json(store, &sr, &b);
    if (rc == INGEST_STORE_ENOTFOUND)
        ingest_reply_error(req, 404, "no device %s", sr.device);
    else if (rc != 0)
        ingest_reply_error(req, 503, "%s: cannot read series: %s", path, ingest_store_strerror(rc));
    else
        ingest_reply(req, 200, "application/json", b.data, b.len);
    ferry_buf_free(&b);
}

int ingest_query_register(struct ingest_router *router, struct ingest_store *store)
{
    if (ingest_router_add(router, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/v1/series",
                          INGEST_ACCESS_VIEWER, handle_series, store) != 0)
        return -1;
    return compare_register(router, store);
}
