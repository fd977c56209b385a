/*
 * compare_versions.c - the version benchmark: for every version of a component that devices of
 * the fleet ran since a given time, the distribution of each metric while they ran it and their
 * error-log rate (GET /v1/versions/compare, `ferry-ingest versions compare`; docs/compare.md).
 *
 * Which version a device ran when comes from its event stream, not only from its versions object
 * (which says what it runs now): a device that updated an hour ago contributed an hour of samples
 * to the new version and the rest to the old one. The version changes at every `versions` event
 * that names the component and at every `ota.*` event of the component (its running_version,
 * which the OTA agent changes on commit and keeps through a trial boot: a trial counts for the
 * version the device was on until it commits). A device whose events were all read and who never
 * reported the component before a time has no version there (its samples are left out); one with
 * no such event at all in what was read counts for its current version over the whole range.
 *
 * How a request runs: (1) the device ids are listed (then each device read: a store call from
 * inside the list callback could wait for the connection the list holds); (2) per device, a
 * bounded scan of its event stream gives its timeline and spans of (version, time); (3) the
 * collector of compare.c files samples and error-log rates per version; (4) JSON, versions newest
 * first (semantic version order).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "cloud-ingest/query/compare_int.h"
#include "cloud-ingest/query/query.h"
#include "cloud-ingest/query/scan.h"
#include "cloud-ingest/router.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"
#include "transport/manifest.h"

#define RANGE_MAX_NS ((int64_t)10 * 366 * 24 * 3600 * 1000000000LL)

/* ---- Requests ----------------------------------------------------------------------------------
 */

/* 1..INGEST_VERSION_STR_MAX bytes of printable ASCII: what the ingest keeps of versions. */
static bool version_text_ok(const char *p, size_t len)
{
    if (len == 0 || len > INGEST_VERSION_STR_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e)
            return false;
    return true;
}

static int set_metrics(struct compare_versions_req *req, const char *list, char *err,
                       size_t err_len)
{
    size_t len = ferry_bounded_len(list, COMPARE_METRICS_MAX * (COMPARE_METRIC_MAX + 1) + 1);
    if (len > COMPARE_METRICS_MAX * (COMPARE_METRIC_MAX + 1)) {
        snprintf(err, err_len, "metrics: longer than %d bytes",
                 COMPARE_METRICS_MAX * (COMPARE_METRIC_MAX + 1));
        return -1;
    }
    req->n_metrics = 0;
    for (const char *p = list;;) {
        const char *comma = memchr(p, ',', len - (size_t)(p - list));
        size_t n = comma != NULL ? (size_t)(comma - p) : len - (size_t)(p - list);
        char name[COMPARE_METRIC_MAX + 1], merr[200];
        struct cmp_metric m;
        if (n == 0 || n > COMPARE_METRIC_MAX) {
            snprintf(err, err_len, "metrics: item %zu is empty or longer than %d bytes",
                     req->n_metrics + 1, COMPARE_METRIC_MAX);
            return -1;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        if (compare__metric_parse(name, &m, merr, sizeof(merr)) != 0) {
            snprintf(err, err_len, "metrics: item %zu: %s", req->n_metrics + 1, merr);
            return -1;
        }
        if (m.error_logs) {
            snprintf(err, err_len, "metrics: error_logs is always reported; list other metrics");
            return -1;
        }
        for (size_t i = 0; i < req->n_metrics; i++)
            if (strcmp(req->metrics[i], name) == 0) {
                snprintf(err, err_len, "metrics: item %zu repeats an earlier one",
                         req->n_metrics + 1);
                return -1;
            }
        if (req->n_metrics == COMPARE_METRICS_MAX) {
            snprintf(err, err_len, "metrics: more than %d", COMPARE_METRICS_MAX);
            return -1;
        }
        memcpy(req->metrics[req->n_metrics++], name, n + 1);
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

int compare_versions_set(struct compare_versions_req *req, const char *component,
                         const char *metrics, const char *since, int64_t now_ns, char *err,
                         size_t err_len)
{
    memset(req, 0, sizeof(*req));
    size_t clen = component != NULL ? ferry_bounded_len(component, INGEST_VERSION_STR_MAX + 1) : 0;
    if (component == NULL || !version_text_ok(component, clen)) {
        snprintf(err, err_len,
                 "component: missing, or not 1..%d bytes of printable ASCII (e.g. model)",
                 INGEST_VERSION_STR_MAX);
        return -1;
    }
    memcpy(req->component, component, clen + 1);
    if (set_metrics(req, metrics != NULL ? metrics : COMPARE_DEFAULT_METRICS, err, err_len) != 0)
        return -1;
    req->since_ns = now_ns - COMPARE_DEFAULT_SINCE_NS;
    if (since == NULL)
        return 0;
    size_t digits = strspn(since, "0123456789");
    int64_t ms = 0;
    if (digits > 0 && since[digits] == '\0') {
        if (ferry_parse_i64(since, 0, INT64_MAX, &req->since_ns) != 0 || req->since_ns >= now_ns ||
            now_ns - req->since_ns > RANGE_MAX_NS) {
            snprintf(err, err_len,
                     "since: nanoseconds since the epoch before now and at most ten years ago");
            return -1;
        }
    } else if (ferry_parse_duration_ms(since, &ms) != 0 || ms <= 0 || ms > RANGE_MAX_NS / 1000000) {
        snprintf(err, err_len,
                 "since: a duration back from now (90m, 6h, 7d; at most ten years) or "
                 "nanoseconds since the epoch");
        return -1;
    } else {
        req->since_ns = now_ns - ms * 1000000;
    }
    return 0;
}

int compare_versions_parse(const char *query, int64_t now_ns, struct compare_versions_req *req,
                           char *err, size_t err_len)
{
    static const char *const known[] = {"component", "metrics", "since"};
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    int rc = -1;
    memset(req, 0, sizeof(*req));
    if (query == NULL || evhttp_parse_query_str(query, &q) != 0) {
        snprintf(err, err_len, "query: needs component=C[&metrics=a.b,c.d][&since=6h|NS]");
        goto out;
    }
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &q, next)
    {
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            ok |= strcmp(kv->key, known[i]) == 0;
        if (!ok) {
            char name[96];
            ferry_escape_str(name, sizeof(name), kv->key, ferry_bounded_len(kv->key, 40));
            snprintf(err, err_len, "query: unknown parameter \"%s\" (component, metrics, since)",
                     name);
            goto out;
        }
    }
    char msg[400];
    if (compare_versions_set(req, evhttp_find_header(&q, "component"),
                             evhttp_find_header(&q, "metrics"), evhttp_find_header(&q, "since"),
                             now_ns, msg, sizeof(msg)) != 0) {
        snprintf(err, err_len, "query: %s", msg);
        goto out;
    }
    rc = 0;
out:
    evhttp_clear_headers(&q);
    return rc;
}

/* ---- Timelines ----------------------------------------------------------------------------------
 */

struct ver_point {
    int64_t ts;
    char version[INGEST_VERSION_STR_MAX + 1];
};

struct ver_scan {
    const char *component;
    struct ver_point *p;
    size_t n, cap;
    int rc;
};

/* The string `key` of an event's fields JSON into out (1..64 printable bytes): true when there. */
static bool field_string(json_t *fields, const char *key, char *out)
{
    json_t *v = json_object_get(fields, key);
    if (!json_is_string(v) || !version_text_ok(json_string_value(v), json_string_length(v)))
        return false;
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return true;
}

static int event_cb(const struct ingest_row *r, void *arg)
{
    struct ver_scan *vs = arg;
    bool versions = r->name_len == 8 && memcmp(r->name, "versions", 8) == 0;
    bool ota = r->name_len > 4 && memcmp(r->name, "ota.", 4) == 0;
    if (!versions && !ota)
        return 0;
    json_t *f = json_loadb(r->fields_json, r->fields_json_len, 0, NULL);
    char version[INGEST_VERSION_STR_MAX + 1], component[INGEST_VERSION_STR_MAX + 1];
    bool found = versions ? field_string(f, vs->component, version)
                          : field_string(f, "component", component) &&
                                strcmp(component, vs->component) == 0 &&
                                field_string(f, "running_version", version);
    json_decref(f);
    /* Only changes are kept (in sequence order), so restarts that report the same version again
     * cost nothing. */
    if (!found || (vs->n > 0 && strcmp(vs->p[vs->n - 1].version, version) == 0))
        return 0;
    if (vs->n == vs->cap) {
        size_t cap = vs->cap ? vs->cap * 2 : 8;
        void *p = realloc(vs->p, cap * sizeof(*vs->p));
        if (p == NULL) {
            vs->rc = INGEST_STORE_ENOMEM;
            return 1;
        }
        vs->p = p;
        vs->cap = cap;
    }
    vs->p[vs->n].ts = r->ts_corrected_ns;
    memcpy(vs->p[vs->n].version, version, strlen(version) + 1);
    vs->n++;
    return 0;
}

static int cmp_point_ts(const void *a, const void *b)
{
    const struct ver_point *x = a, *y = b;
    return x->ts < y->ts ? -1 : x->ts > y->ts ? 1 : 0;
}

/* The versions seen, in order of discovery; running counts devices that run it now. */
struct ver_table {
    char name[COMPARE_VERSIONS_MAX][INGEST_VERSION_STR_MAX + 1];
    uint64_t running[COMPARE_VERSIONS_MAX];
    size_t n;
    bool full; /* a version was left out: more than COMPARE_VERSIONS_MAX */
};

static int version_index(struct ver_table *t, const char *v)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->name[i], v) == 0)
            return (int)i;
    if (t->n == COMPARE_VERSIONS_MAX) {
        t->full = true;
        return -1;
    }
    ferry_strlcpy(t->name[t->n], v, sizeof(t->name[0]));
    return (int)t->n++;
}

struct dev_spans {
    struct ingest_device dev;
    struct cmp_span *spans;
    size_t n;
};

static void add_span(struct dev_spans *d, int64_t from, int64_t to, int group)
{
    if (group < 0 || from >= to)
        return;
    struct cmp_span *last = d->n > 0 ? &d->spans[d->n - 1] : NULL;
    if (last != NULL && last->group == (uint32_t)group && last->to == from) {
        last->to = to;
        return;
    }
    d->spans[d->n++] = (struct cmp_span){from, to, (uint32_t)group};
}

/* Builds a device's spans over [since, now) from its event stream (see the top of the file). */
static int device_spans(struct ingest_store *store, const struct compare_versions_req *req,
                        int64_t now_ns, uint64_t budget, struct ver_table *t, struct dev_spans *d,
                        bool *truncated)
{
    char current[INGEST_VERSION_STR_MAX + 1] = "";
    json_t *vj = json_loads(d->dev.versions, 0, NULL);
    (void)field_string(vj, req->component, current); /* leaves it "" when absent */
    json_decref(vj);
    if (current[0]) {
        int i = version_index(t, current);
        if (i >= 0)
            t->running[i]++;
    }
    struct ver_scan vs = {.component = req->component};
    struct ingest_scan_stats st;
    int rc = ingest_scan_recent(store, d->dev.id, RECORD_EVENT,
                                d->dev.streams[RECORD_EVENT].max_seq, budget, event_cb, &vs, &st);
    if (rc == 0)
        rc = vs.rc;
    if (rc != 0)
        goto out;
    d->spans = calloc(vs.n + 1, sizeof(*d->spans));
    if (d->spans == NULL) {
        rc = INGEST_STORE_ENOMEM;
        goto out;
    }
    if (vs.n == 0) {
        /* Nothing about the component in what was read: its current version throughout. */
        if (current[0])
            add_span(d, req->since_ns, now_ns, version_index(t, current));
        goto out;
    }
    if (st.truncated && vs.p[0].ts > req->since_ns)
        *truncated = true; /* what it ran before its first change read is unknown */
    qsort(vs.p, vs.n, sizeof(*vs.p), cmp_point_ts);
    for (size_t i = 0; i < vs.n; i++) {
        int64_t from = vs.p[i].ts > req->since_ns ? vs.p[i].ts : req->since_ns;
        int64_t to = i + 1 < vs.n ? vs.p[i + 1].ts : now_ns;
        to = to < now_ns ? to : now_ns;
        if (from < to)
            add_span(d, from, to, version_index(t, vs.p[i].version));
    }
out:
    free(vs.p);
    return rc;
}

/* ---- The benchmark --------------------------------------------------------------------------- */

struct id_list {
    char (*ids)[INGEST_DEVICE_ID_MAX + 1];
    size_t n, cap;
};

static int collect_id(const struct ingest_device *d, void *arg)
{
    struct id_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *ids = realloc(l->ids, cap * sizeof(*l->ids));
        if (ids == NULL)
            return 1;
        l->ids = ids;
        l->cap = cap;
    }
    memcpy(l->ids[l->n++], d->id, sizeof(l->ids[0]));
    return 0;
}

static int append_dist(struct ferry_buf *b, const char *metric, const struct compare_dist *d)
{
    int e = ferry_buf_append_json_string(b, metric, strlen(metric));
    e |= ferry_buf_append(b, ":", 1);
    e |= compare__dist_json(b, d);
    return e;
}

static int write_json(struct ferry_buf *out, const struct compare_versions_req *req, int64_t now_ns,
                      struct ver_table *t, struct cmp_collect *c, size_t n_devices)
{
    size_t order[COMPARE_VERSIONS_MAX];
    /* Newest first; versions are few (at most COMPARE_VERSIONS_MAX): an insertion sort. */
    for (size_t i = 0; i < t->n; i++) {
        size_t j = i;
        for (; j > 0 && manifest_version_compare(t->name[order[j - 1]], t->name[i]) < 0; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    int e = ferry_buf_append(out, "{\"component\":", 13);
    e |= ferry_buf_append_json_string(out, req->component, strlen(req->component));
    e |= ferry_buf_printf(out, ",\"since\":%" PRId64 ",\"now\":%" PRId64 ",\"metrics\":[",
                          req->since_ns, now_ns);
    for (size_t m = 0; m < c->n_metrics; m++) {
        const char *name = m < req->n_metrics ? req->metrics[m] : COMPARE_ERROR_LOGS;
        e |= ferry_buf_append(out, ",", m > 0 ? 1 : 0);
        e |= ferry_buf_append_json_string(out, name, strlen(name));
    }
    e |= ferry_buf_append(out, "],\"versions\":[", 14);
    for (size_t k = 0; k < t->n && e == 0; k++) {
        size_t v = order[k];
        e |= ferry_buf_append(out, ",", k > 0 ? 1 : 0);
        e |= ferry_buf_append(out, "{\"version\":", 11);
        e |= ferry_buf_append_json_string(out, t->name[v], strlen(t->name[v]));
        e |= ferry_buf_printf(out, ",\"running_devices\":%" PRIu64 ",\"metrics\":{", t->running[v]);
        for (size_t m = 0; m < c->n_metrics; m++) {
            struct compare_dist d;
            compare__group_dist(&c->groups[m * c->n_groups + v], &d, NULL, NULL);
            e |= ferry_buf_append(out, ",", m > 0 ? 1 : 0);
            e |= append_dist(out, m < req->n_metrics ? req->metrics[m] : COMPARE_ERROR_LOGS, &d);
        }
        e |= ferry_buf_append(out, "}}", 2);
    }
    e |= ferry_buf_printf(out,
                          "],\"devices\":%zu,\"scanned\":%" PRIu64 ",\"scan_limit\":%d,"
                          "\"truncated\":%s,\"versions_left_out\":%s}\n",
                          n_devices, c->scanned, COMPARE_SCAN_MAX, c->truncated ? "true" : "false",
                          t->full ? "true" : "false");
    return e;
}

int compare_versions_json(struct ingest_store *store, const struct compare_versions_req *req,
                          int64_t now_ns, struct ferry_buf *out, char *err, size_t err_len)
{
    struct id_list ids = {NULL, 0, 0};
    struct dev_spans *devs = NULL;
    struct ver_table *t = calloc(1, sizeof(*t));
    struct cmp_metric metrics[COMPARE_METRICS_MAX + 1];
    struct cmp_collect c;
    memset(&c, 0, sizeof(c));
    size_t n = 0;
    int rc = t == NULL ? INGEST_STORE_ENOMEM : 0;
    for (size_t m = 0; m < req->n_metrics && rc == 0; m++)
        if (compare__metric_parse(req->metrics[m], &metrics[m], err, err_len) != 0)
            rc = INGEST_STORE_EINVAL;
    if (rc == 0 &&
        compare__metric_parse(COMPARE_ERROR_LOGS, &metrics[req->n_metrics], err, err_len) != 0)
        rc = INGEST_STORE_EINVAL;
    if (rc == 0)
        rc = ingest_store_device_list(store, collect_id, &ids);
    if (rc == 0 && ids.n > 0 && (devs = calloc(ids.n, sizeof(*devs))) == NULL)
        rc = INGEST_STORE_ENOMEM;
    uint64_t budget = ids.n > 0 ? COMPARE_SCAN_MAX / ids.n : COMPARE_SCAN_MAX;
    budget = budget < 1 ? 1 : budget > COMPARE_EVENTS_SCAN_MAX ? COMPARE_EVENTS_SCAN_MAX : budget;
    bool events_truncated = false;
    for (size_t i = 0; i < ids.n && rc == 0; i++) {
        rc = ingest_store_device_get(store, ids.ids[i], &devs[n].dev);
        if (rc == INGEST_STORE_ENOTFOUND) { /* removed meanwhile */
            rc = 0;
            continue;
        }
        if (rc != 0 || devs[n].dev.revoked)
            continue;
        rc = device_spans(store, req, now_ns, budget, t, &devs[n], &events_truncated);
        n++;
    }
    if (rc == 0)
        rc = compare__collect_init(&c, metrics, req->n_metrics + 1, t->n > 0 ? t->n : 1, n);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = compare__collect_device(store, &c, i, &devs[i].dev, devs[i].spans, devs[i].n);
    c.truncated |= events_truncated;
    if (rc == 0 && write_json(out, req, now_ns, t, &c, n) != 0)
        rc = INGEST_STORE_ENOMEM;
    if (rc != 0 && err[0] == '\0')
        snprintf(err, err_len, "versions compare: %s", ingest_store_strerror(rc));
    for (size_t i = 0; devs != NULL && i < ids.n; i++)
        free(devs[i].spans);
    free(devs);
    free(ids.ids);
    free(t);
    compare__collect_free(&c);
    return rc;
}

/* ---- The table for a person --------------------------------------------------------------------
 */

static void print_escaped(FILE *f, const char *s, int width)
{
    char buf[4 * INGEST_VERSION_STR_MAX + 1];
    if (s == NULL)
        s = "-";
    ferry_escape_str(buf, sizeof(buf), s, strlen(s));
    fprintf(f, "%-*s", width, buf);
}

static void print_number(FILE *f, json_t *v)
{
    if (json_is_number(v))
        fprintf(f, " %10.4g", json_number_value(v));
    else
        fprintf(f, " %10s", "-");
}

int compare_versions_print(const char *json, size_t len, FILE *f)
{
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *versions = json_object_get(root, "versions"),
           *metrics = json_object_get(root, "metrics");
    if (!json_is_array(versions) || !json_is_array(metrics)) {
        json_decref(root);
        return -1;
    }
    time_t since = (time_t)(json_integer_value(json_object_get(root, "since")) / 1000000000);
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&since, &tm) != NULL)
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(f, "# component ");
    print_escaped(f, json_string_value(json_object_get(root, "component")), 0);
    fprintf(f, " since %s: %" PRId64 " devices, %" PRId64 " records read%s\n", when,
            (int64_t)json_integer_value(json_object_get(root, "devices")),
            (int64_t)json_integer_value(json_object_get(root, "scanned")),
            json_is_true(json_object_get(root, "truncated"))
                ? " (truncated: older data left out, see docs/compare.md)"
                : "");
    fprintf(f, "%-16s %7s  %-24s %7s %9s %10s %10s %10s %10s\n", "version", "running", "metric",
            "devices", "count", "mean", "p50", "p95", "errors/h");
    size_t i, m;
    json_t *v, *name;
    json_array_foreach(versions, i, v)
    {
        json_t *ms = json_object_get(v, "metrics");
        json_t *errors = json_object_get(json_object_get(ms, COMPARE_ERROR_LOGS), "mean");
        json_array_foreach(metrics, m, name)
        {
            const char *metric = json_string_value(name);
            if (metric == NULL || strcmp(metric, COMPARE_ERROR_LOGS) == 0)
                continue;
            json_t *d = json_object_get(ms, metric);
            print_escaped(f, json_string_value(json_object_get(v, "version")), 16);
            fprintf(f, " %7" PRId64 "  ",
                    (int64_t)json_integer_value(json_object_get(v, "running_devices")));
            print_escaped(f, metric, 24);
            fprintf(f, " %7" PRId64 " %9" PRId64,
                    (int64_t)json_integer_value(json_object_get(d, "devices")),
                    (int64_t)json_integer_value(json_object_get(d, "count")));
            print_number(f, json_object_get(d, "mean"));
            print_number(f, json_object_get(d, "p50"));
            print_number(f, json_object_get(d, "p95"));
            print_number(f, errors);
            fputc('\n', f);
        }
    }
    json_decref(root);
    return 0;
}

/* ---- CLI and endpoint -------------------------------------------------------------------------
 */

static int cli_usage(void)
{
    fprintf(stderr, "usage: ferry-ingest [options] versions compare --component C "
                    "[--metrics a.b,c.d] [--since 24h|NS] [--json]\n");
    return 2;
}

int compare_cli_main(struct ingest_store *store, int argc, char **argv)
{
    const char *component = NULL, *metrics = NULL, *since = NULL;
    bool json = false;
    if (argc < 1 || strcmp(argv[0], "compare") != 0)
        return cli_usage();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--component") == 0 && i + 1 < argc)
            component = argv[++i];
        else if (strcmp(argv[i], "--metrics") == 0 && i + 1 < argc)
            metrics = argv[++i];
        else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc)
            since = argv[++i];
        else
            return cli_usage();
    }
    struct compare_versions_req req;
    char err[512] = "";
    int64_t now = ferry_realtime_ns();
    if (compare_versions_set(&req, component, metrics, since, now, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferry-ingest: versions compare: %s\n", err);
        return 2;
    }
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = compare_versions_json(store, &req, now, &b, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: versions compare: %s\n", err);
        ferry_buf_free(&b);
        return 1;
    }
    if (json)
        fwrite(b.data, 1, b.len, stdout);
    else
        rc = compare_versions_print((const char *)b.data, b.len, stdout);
    ferry_buf_free(&b);
    return rc == 0 ? 0 : 1;
}

static void handle_versions_compare(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_store *store = arg;
    struct compare_versions_req vr;
    char err[512] = "";
    int64_t now = ferry_realtime_ns();
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (compare_versions_parse(query, now, &vr, err, sizeof(err)) != 0) {
        ingest_reply_error(req, 400, "%s", err);
        return;
    }
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = compare_versions_json(store, &vr, now, &b, err, sizeof(err));
    if (rc != 0)
        ingest_reply_error(req, 503, "%s: %s", path, err);
    else
        ingest_reply(req, 200, "application/json", b.data, b.len);
    ferry_buf_free(&b);
}

int compare_register(struct ingest_router *router, struct ingest_store *store)
{
    return ingest_router_add(router, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/v1/versions/compare",
                             INGEST_ACCESS_VIEWER, handle_versions_compare, store);
}
