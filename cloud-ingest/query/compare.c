/*
 * compare.c - the metric comparison behind rollout gates and the version benchmark (compare.h
 * says what is computed and why each device weighs the same).
 *
 * How a comparison runs:
 *   1. Every device gets a list of spans: [from, to) of corrected device time, each labelled with
 *      the group its samples go to (compare_devices: before / after / control; the benchmark: one
 *      group per version of the component).
 *   2. compare__collect_device() scans the device's most recent records (query/scan.h) once, with a
 * budget of COMPARE_SCAN_MAX / devices records, and files every sample of each metric whose time
 *      falls in a span into the group's sample array (COMPARE_SAMPLES_MAX in all). For
 *      "error_logs" it counts the log records at level error or above per span instead, and
 *      whether the device said anything at all in the span.
 *   3. compare__group_dist() sorts a group's samples by (device, value): per-device runs give each
 *      device's median (the unit of the noise test) and each sample's weight 1/n_device; sorted
 *      by value again, the weighted mean and percentiles follow.
 *
 * Invariants: a sample's device index is < the number of devices; a group's samples are at most
 * COMPARE_SAMPLES_MAX in all groups together; every sample is a finite double.
 */
#include "cloud-ingest/query/compare.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cloud-ingest/query/compare_int.h"
#include "cloud-ingest/query/query.h"
#include "cloud-ingest/query/scan.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"

#define HOUR_NS 3600e9

/* ---- Samples and distributions ------------------------------------------------------------- */

static int group_push(struct cmp_group *g, double v, uint64_t dev)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 256;
        void *s = realloc(g->s, cap * sizeof(*g->s));
        if (s == NULL)
            return -1;
        g->s = s;
        g->cap = cap;
    }
    g->s[g->n].v = v;
    g->s[g->n].u.dev = dev;
    g->n++;
    return 0;
}

static int cmp_dev_value(const void *a, const void *b)
{
    const struct cmp_sample *x = a, *y = b;
    if (x->u.dev != y->u.dev)
        return x->u.dev < y->u.dev ? -1 : 1;
    return x->v < y->v ? -1 : x->v > y->v ? 1 : 0;
}

static int cmp_value(const void *a, const void *b)
{
    const struct cmp_sample *x = a, *y = b;
    return x->v < y->v ? -1 : x->v > y->v ? 1 : 0;
}

/* The smallest sample whose cumulative weight reaches share * total (the weighted "inverted
 * CDF"); samples sorted by value. The tolerance keeps a sum of 1/n weights that rounds a hair
 * below the share from skipping to the next sample. */
static double weighted_quantile(const struct cmp_sample *s, size_t n, double total, double share)
{
    double target = share * total - 1e-9 * total, cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += s[i].u.w;
        if (cum >= target)
            return s[i].v;
    }
    return s[n - 1].v;
}

/*
 * Computes a group's distribution (compare.h: every device weighs the same) and, when medians is
 * not NULL, writes each device's median there (*n_medians of them; medians has room for one per
 * sample). Reorders g->s.
 */
void compare__group_dist(struct cmp_group *g, struct compare_dist *d, double *medians,
                         size_t *n_medians)
{
    d->count = g->n;
    d->devices = 0;
    d->mean = d->p50 = d->p95 = NAN;
    if (n_medians != NULL)
        *n_medians = 0;
    if (g->n == 0)
        return;
    qsort(g->s, g->n, sizeof(*g->s), cmp_dev_value);
    double sum_of_means = 0;
    for (size_t i = 0; i < g->n;) {
        size_t j = i;
        double sum = 0;
        while (j < g->n && g->s[j].u.dev == g->s[i].u.dev)
            sum += g->s[j++].v;
        size_t k = j - i;
        if (medians != NULL)
            medians[(*n_medians)++] =
                k % 2 ? g->s[i + k / 2].v : (g->s[i + k / 2 - 1].v + g->s[i + k / 2].v) / 2;
        sum_of_means += sum / (double)k;
        for (size_t m = i; m < j; m++)
            g->s[m].u.w = 1.0 / (double)k;
        d->devices++;
        i = j;
    }
    d->mean = sum_of_means / (double)d->devices;
    qsort(g->s, g->n, sizeof(*g->s), cmp_value);
    d->p50 = weighted_quantile(g->s, g->n, (double)d->devices, 0.50);
    d->p95 = weighted_quantile(g->s, g->n, (double)d->devices, 0.95);
}

double compare_mann_whitney(const double *a, size_t na, const double *b, size_t nb, double *u)
{
    if (u != NULL)
        *u = NAN;
    if (na == 0 || nb == 0)
        return NAN;
    size_t n = na + nb;
    struct cmp_sample *all = malloc(n * sizeof(*all));
    if (all == NULL)
        return NAN;
    for (size_t i = 0; i < na; i++)
        all[i] = (struct cmp_sample){a[i], {.dev = 0}};
    for (size_t i = 0; i < nb; i++)
        all[na + i] = (struct cmp_sample){b[i], {.dev = 1}};
    qsort(all, n, sizeof(*all), cmp_value);
    /* Ranks 1..n, tied values sharing their average rank; the tie term sum(t^3 - t). */
    double rank_sum_a = 0, ties = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && all[j].v == all[i].v)
            j++;
        double t = (double)(j - i), rank = ((double)i + 1 + (double)j) / 2;
        for (size_t k = i; k < j; k++)
            if (all[k].u.dev == 0)
                rank_sum_a += rank;
        ties += t * t * t - t;
        i = j;
    }
    free(all);
    double n1 = (double)na, n2 = (double)nb, nt = (double)n;
    double u1 = rank_sum_a - n1 * (n1 + 1) / 2, u2 = n1 * n2 - u1;
    if (u != NULL)
        *u = u1;
    double mu = n1 * n2 / 2;
    double var = n1 * n2 / 12 * ((nt + 1) - ties / (nt * (nt - 1)));
    if (!(var > 0))
        return NAN;
    double z = ((u1 > u2 ? u1 : u2) - mu - 0.5) / sqrt(var);
    double p = erfc(z / sqrt(2.0));
    return p > 1 ? 1 : p;
}

/* ---- Metric names --------------------------------------------------------------------------- */

int compare__metric_parse(const char *metric, struct cmp_metric *m, char *err, size_t err_len)
{
    memset(m, 0, sizeof(*m));
    size_t len = metric != NULL ? ferry_bounded_len(metric, COMPARE_METRIC_MAX + 1) : 0;
    if (len == 0 || len > COMPARE_METRIC_MAX) {
        snprintf(err, err_len, "metric: empty or longer than %d bytes", COMPARE_METRIC_MAX);
        return -1;
    }
    if (strcmp(metric, COMPARE_ERROR_LOGS) == 0) {
        m->error_logs = true;
        return 0;
    }
    for (const char *p = metric; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == ',') {
            snprintf(err, err_len,
                     "metric: byte %zu is a blank, comma or control character (not a metric name)",
                     (size_t)(p - metric) + 1);
            return -1;
        }
    const char *dot = strrchr(metric, '.');
    if (dot == NULL || dot == metric || dot[1] == '\0') {
        char shown[4 * 64 + 1];
        snprintf(err, err_len,
                 "metric \"%s\": must be MEASUREMENT.FIELD (split at the last dot, e.g. "
                 "inference.fps) or error_logs",
                 ferry_escape_str(shown, sizeof(shown), metric, len < 64 ? len : 64));
        return -1;
    }
    m->measurement_len = (size_t)(dot - metric);
    memcpy(m->measurement, metric, m->measurement_len);
    ferry_strlcpy(m->field, dot + 1, sizeof(m->field));
    return 0;
}

/* ---- Collecting samples from the store ------------------------------------------------------ */

/* The state of one device's scan. */
struct cmp_dev_scan {
    struct cmp_collect *c;
    uint64_t dev;
    const struct cmp_span *spans;
    size_t n_spans;
    int64_t min_from, max_to;
    bool first_seen;
    int64_t first_ts; /* corrected time of the first record read */
    int rc;           /* ENOMEM from the callback */
    /* error_logs: per span, errors counted and whether any record fell in it */
    uint64_t *errors;
    bool *observed;
};

static int span_of(const struct cmp_dev_scan *d, int64_t ts)
{
    for (size_t i = 0; i < d->n_spans; i++)
        if (ts >= d->spans[i].from && ts < d->spans[i].to)
            return (int)i;
    return -1;
}

static void note_first(struct cmp_dev_scan *d, int64_t ts)
{
    if (!d->first_seen) {
        d->first_seen = true;
        d->first_ts = ts;
    }
}

static int metric_cb(const struct ingest_row *r, void *arg)
{
    struct cmp_dev_scan *d = arg;
    struct cmp_collect *c = d->c;
    note_first(d, r->ts_corrected_ns);
    if (r->ts_corrected_ns < d->min_from || r->ts_corrected_ns >= d->max_to)
        return 0;
    int span = span_of(d, r->ts_corrected_ns);
    if (span < 0)
        return 0;
    if (d->observed != NULL)
        d->observed[span] = true;
    for (size_t m = 0; m < c->n_metrics; m++) {
        const struct cmp_metric *mt = &c->metrics[m];
        double v;
        if (mt->error_logs || r->name_len != mt->measurement_len ||
            memcmp(r->name, mt->measurement, r->name_len) != 0 ||
            !ingest_scan_field_value(r->fields_json, r->fields_json_len, mt->field, &v))
            continue;
        if (c->samples >= COMPARE_SAMPLES_MAX) {
            c->truncated = true;
            continue;
        }
        if (group_push(&c->groups[m * c->n_groups + d->spans[span].group], v, d->dev) != 0) {
            d->rc = INGEST_STORE_ENOMEM;
            return 1;
        }
        c->samples++;
    }
    return 0;
}

static int log_cb(const struct ingest_row *r, void *arg)
{
    struct cmp_dev_scan *d = arg;
    note_first(d, r->ts_corrected_ns);
    int span = span_of(d, r->ts_corrected_ns);
    if (span < 0)
        return 0;
    d->observed[span] = true;
    if (r->level <= RECORD_LEVEL_ERROR)
        d->errors[span]++;
    return 0;
}

static bool wants_error_logs(const struct cmp_collect *c)
{
    for (size_t m = 0; m < c->n_metrics; m++)
        if (c->metrics[m].error_logs)
            return true;
    return false;
}

static bool wants_samples(const struct cmp_collect *c)
{
    for (size_t m = 0; m < c->n_metrics; m++)
        if (!c->metrics[m].error_logs)
            return true;
    return false;
}

/* One scan of one stream of the device; notes truncation when the records read start after the
 * earliest span began. */
static int scan_stream(struct ingest_store *store, const struct ingest_device *dev, uint8_t stream,
                       ingest_export_cb cb, struct cmp_dev_scan *d)
{
    struct ingest_scan_stats st;
    d->first_seen = false;
    int rc = ingest_scan_recent(store, dev->id, stream, dev->streams[stream].max_seq,
                                d->c->per_device_scan, cb, d, &st);
    d->c->scanned += st.scanned;
    if (rc == 0)
        rc = d->rc;
    if (st.truncated && (!d->first_seen || d->first_ts > d->min_from))
        d->c->truncated = true;
    return rc;
}

/* Per-(device, group) error-log rates: errors over the hours of the group's observed spans. */
static int error_log_samples(struct cmp_collect *c, struct cmp_dev_scan *d)
{
    for (size_t g = 0; g < c->n_groups; g++) {
        uint64_t errors = 0;
        double hours = 0;
        bool observed = false;
        for (size_t i = 0; i < d->n_spans; i++) {
            if (d->spans[i].group != g || !d->observed[i])
                continue;
            observed = true;
            errors += d->errors[i];
            hours += (double)(d->spans[i].to - d->spans[i].from) / HOUR_NS;
        }
        if (!observed || !(hours > 0))
            continue;
        for (size_t m = 0; m < c->n_metrics; m++)
            if (c->metrics[m].error_logs &&
                group_push(&c->groups[m * c->n_groups + g], (double)errors / hours, d->dev) != 0)
                return INGEST_STORE_ENOMEM;
    }
    return 0;
}

/* Scans one device for every metric of `c` over `spans`. */
int compare__collect_device(struct ingest_store *store, struct cmp_collect *c, uint64_t dev_index,
                            const struct ingest_device *dev, const struct cmp_span *spans,
                            size_t n_spans)
{
    if (n_spans == 0)
        return 0;
    struct cmp_dev_scan d = {.c = c, .dev = dev_index, .spans = spans, .n_spans = n_spans};
    d.min_from = spans[0].from;
    d.max_to = spans[0].to;
    for (size_t i = 1; i < n_spans; i++) {
        d.min_from = spans[i].from < d.min_from ? spans[i].from : d.min_from;
        d.max_to = spans[i].to > d.max_to ? spans[i].to : d.max_to;
    }
    bool logs = wants_error_logs(c);
    int rc = 0;
    if (logs) {
        d.errors = calloc(n_spans, sizeof(*d.errors));
        d.observed = calloc(n_spans, sizeof(*d.observed));
        if (d.errors == NULL || d.observed == NULL) {
            rc = INGEST_STORE_ENOMEM;
            goto out;
        }
        if ((rc = scan_stream(store, dev, RECORD_LOG, log_cb, &d)) != 0)
            goto out;
    }
    /* The metric stream is read for samples, or for error_logs to learn whether a device that
     * logged nothing in a span was there at all. */
    bool need_metric = wants_samples(c);
    for (size_t i = 0; logs && !need_metric && i < n_spans; i++)
        need_metric = !d.observed[i];
    if (need_metric && (rc = scan_stream(store, dev, RECORD_METRIC, metric_cb, &d)) != 0)
        goto out;
    if (logs)
        rc = error_log_samples(c, &d);
out:
    free(d.errors);
    free(d.observed);
    return rc;
}

int compare__collect_init(struct cmp_collect *c, const struct cmp_metric *metrics, size_t n_metrics,
                          size_t n_groups, size_t n_devices)
{
    memset(c, 0, sizeof(*c));
    c->metrics = metrics;
    c->n_metrics = n_metrics;
    c->n_groups = n_groups;
    c->groups = calloc(n_metrics * n_groups, sizeof(*c->groups));
    uint64_t per = n_devices > 0 ? COMPARE_SCAN_MAX / n_devices : COMPARE_SCAN_MAX;
    c->per_device_scan = per < 1 ? 1 : per > INGEST_SERIES_SCAN_MAX ? INGEST_SERIES_SCAN_MAX : per;
    return c->groups != NULL ? 0 : INGEST_STORE_ENOMEM;
}

void compare__collect_free(struct cmp_collect *c)
{
    for (size_t i = 0; c->groups != NULL && i < c->n_metrics * c->n_groups; i++)
        free(c->groups[i].s);
    free(c->groups);
}

/* ---- compare_devices ------------------------------------------------------------------------ */

enum { GROUP_BEFORE = 0, GROUP_AFTER = 1, GROUP_CONTROL = 2 };

/* The p-value of two groups' per-device medians, NAN below COMPARE_TEST_MIN_DEVICES each. */
static double medians_test(const double *a, size_t na, const double *b, size_t nb)
{
    if (na < COMPARE_TEST_MIN_DEVICES || nb < COMPARE_TEST_MIN_DEVICES)
        return NAN;
    return compare_mann_whitney(a, na, b, nb, NULL);
}

int compare_devices(struct ingest_store *store, const char *metric,
                    const struct compare_device *devs, size_t n, int64_t window_ns, int64_t now_ns,
                    struct compare_result *out, char *err, size_t err_len)
{
    struct cmp_metric m;
    struct cmp_collect c;
    double *medians[3] = {NULL, NULL, NULL};
    memset(out, 0, sizeof(*out));
    out->p_before_after = out->p_after_control = NAN;
    if (compare__metric_parse(metric, &m, err, err_len) != 0)
        return INGEST_STORE_EINVAL;
    if (window_ns <= 0 || now_ns <= window_ns) {
        snprintf(err, err_len, "compare: window must be > 0 and before now (window_ns=%" PRId64 ")",
                 window_ns);
        return INGEST_STORE_EINVAL;
    }
    /* The control span: from the first switch to the end of the last after window. */
    int64_t control_from = INT64_MAX, control_to = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        if (devs[i].device_id == NULL || !ingest_device_id_valid(devs[i].device_id)) {
            snprintf(err, err_len, "compare: device %zu: not a device id", i);
            return INGEST_STORE_EINVAL;
        }
        int64_t sw = devs[i].switched_ns;
        if (sw <= 0)
            continue;
        int64_t end = sw < now_ns - window_ns ? sw + window_ns : now_ns;
        control_from = sw < control_from ? sw : control_from;
        control_to = end > control_to ? end : control_to;
    }
    if (control_from == INT64_MAX) {
        control_from = now_ns - window_ns;
        control_to = now_ns;
    }
    int rc = compare__collect_init(&c, &m, 1, 3, n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct ingest_device dev;
        rc = ingest_store_device_get(store, devs[i].device_id, &dev);
        if (rc != 0) {
            snprintf(err, err_len, "compare: device %s: %s", devs[i].device_id,
                     ingest_store_strerror(rc));
            break;
        }
        int64_t sw = devs[i].switched_ns;
        struct cmp_span spans[2];
        size_t n_spans = 0;
        if (sw > 0) {
            spans[n_spans++] = (struct cmp_span){sw > INT64_MIN + window_ns ? sw - window_ns : sw,
                                                 sw, GROUP_BEFORE};
            int64_t end = sw < now_ns - window_ns ? sw + window_ns : now_ns;
            if (end > sw)
                spans[n_spans++] = (struct cmp_span){sw, end, GROUP_AFTER};
        } else if (control_to > control_from) {
            spans[n_spans++] = (struct cmp_span){control_from, control_to, GROUP_CONTROL};
        }
        rc = compare__collect_device(store, &c, i, &dev, spans, n_spans);
        if (rc != 0 && err[0] == '\0')
            snprintf(err, err_len, "compare: device %s: %s", dev.id, ingest_store_strerror(rc));
    }
    size_t n_med[3] = {0, 0, 0};
    struct compare_dist *dists[3] = {&out->before, &out->after, &out->control};
    for (int g = 0; g < 3 && rc == 0; g++) {
        medians[g] = malloc((c.groups[g].n ? c.groups[g].n : 1) * sizeof(double));
        if (medians[g] == NULL) {
            rc = INGEST_STORE_ENOMEM;
            break;
        }
        compare__group_dist(&c.groups[g], dists[g], medians[g], &n_med[g]);
    }
    if (rc == 0) {
        out->p_before_after = medians_test(medians[GROUP_BEFORE], n_med[GROUP_BEFORE],
                                           medians[GROUP_AFTER], n_med[GROUP_AFTER]);
        out->p_after_control = medians_test(medians[GROUP_AFTER], n_med[GROUP_AFTER],
                                            medians[GROUP_CONTROL], n_med[GROUP_CONTROL]);
        out->significant_before_after = out->p_before_after < COMPARE_SIGNIFICANCE;
        out->significant_after_control = out->p_after_control < COMPARE_SIGNIFICANCE;
        out->scanned = c.scanned;
        out->truncated = c.truncated;
    }
    for (int g = 0; g < 3; g++)
        free(medians[g]);
    compare__collect_free(&c);
    return rc;
}

/* ---- JSON --------------------------------------------------------------------------------------
 */

static int append_number(struct ferry_buf *b, double v)
{
    return isfinite(v) ? ferry_buf_printf(b, "%.17g", v) : ferry_buf_append(b, "null", 4);
}

int compare__dist_json(struct ferry_buf *b, const struct compare_dist *d)
{
    int e = ferry_buf_printf(
        b, "{\"devices\":%" PRIu64 ",\"count\":%" PRIu64 ",\"mean\":", d->devices, d->count);
    e |= append_number(b, d->mean);
    e |= ferry_buf_append(b, ",\"p50\":", 7);
    e |= append_number(b, d->p50);
    e |= ferry_buf_append(b, ",\"p95\":", 7);
    e |= append_number(b, d->p95);
    e |= ferry_buf_append(b, "}", 1);
    return e != 0 ? -1 : 0;
}

int compare_result_json(struct ferry_buf *out, const char *metric, const struct compare_result *r)
{
    int e = ferry_buf_append(out, "{\"metric\":", 10);
    e |= ferry_buf_append_json_string(out, metric, strlen(metric));
    e |= ferry_buf_append(out, ",\"before\":", 10);
    e |= compare__dist_json(out, &r->before);
    e |= ferry_buf_append(out, ",\"after\":", 9);
    e |= compare__dist_json(out, &r->after);
    e |= ferry_buf_append(out, ",\"control\":", 11);
    e |= compare__dist_json(out, &r->control);
    e |= ferry_buf_append(out, ",\"p_before_after\":", 18);
    e |= append_number(out, r->p_before_after);
    e |= ferry_buf_append(out, ",\"p_after_control\":", 19);
    e |= append_number(out, r->p_after_control);
    e |= ferry_buf_printf(out,
                          ",\"significant_before_after\":%s,\"significant_after_control\":%s,"
                          "\"scanned\":%" PRIu64 ",\"truncated\":%s}",
                          r->significant_before_after ? "true" : "false",
                          r->significant_after_control ? "true" : "false", r->scanned,
                          r->truncated ? "true" : "false");
    return e != 0 ? -1 : 0;
}

/* ---- Gates ------------------------------------------------------------------------------------
 */

enum gate_stat { STAT_COUNT, STAT_MEAN, STAT_P50, STAT_P95 };
enum gate_op { OP_GE, OP_LE, OP_GT, OP_LT };
enum gate_ref { REF_NONE, REF_BASELINE, REF_CONTROL };
enum gate_form { FORM_ABSOLUTE, FORM_TIMES, FORM_PLUS };

static const char *const stat_names[] = {"count", "mean", "p50", "p95"};
static const char *const op_names[] = {">=", "<=", ">", "<"};
static const char *const ref_names[] = {"", "baseline", "control"};

struct compare_gate {
    char metric[COMPARE_METRIC_MAX + 1];
    bool error_logs;
    enum gate_stat stat;
    enum gate_op op;
    enum gate_ref ref;
    enum gate_form form;
    double k; /* FORM_TIMES: factor; FORM_PLUS: addend (negative for "- d"); FORM_ABSOLUTE: value */
};

/* The parser's position in the text; columns are 1-based bytes. */
struct gate_lex {
    const char *text;
    size_t pos, len;
    char *err;
    size_t err_len;
};

static void skip_blanks(struct gate_lex *lx)
{
    while (lx->pos < lx->len && (lx->text[lx->pos] == ' ' || lx->text[lx->pos] == '\t'))
        lx->pos++;
}

/* Length of the blank-delimited term at the position (what an error message quotes). */
static size_t term_len(const struct gate_lex *lx, size_t at)
{
    size_t n = 0;
    while (at + n < lx->len && lx->text[at + n] != ' ' && lx->text[at + n] != '\t')
        n++;
    return n;
}

static int gate_error(struct gate_lex *lx, size_t at, const char *expected)
{
    char term[96];
    size_t n = term_len(lx, at);
    if (at >= lx->len)
        snprintf(lx->err, lx->err_len, "gate: column %zu: expected %s, got the end of the gate",
                 at + 1, expected);
    else
        snprintf(lx->err, lx->err_len, "gate: column %zu: expected %s, got \"%s\"", at + 1,
                 expected, ferry_escape_str(term, sizeof(term), lx->text + at, n > 40 ? 40 : n));
    return -1;
}

static bool is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Takes the word `w` when the text has it at the position followed by a non-word byte. */
static bool take_word(struct gate_lex *lx, const char *w)
{
    size_t n = strlen(w);
    if (lx->pos + n > lx->len || memcmp(lx->text + lx->pos, w, n) != 0 ||
        (lx->pos + n < lx->len && is_word_char(lx->text[lx->pos + n])))
        return false;
    lx->pos += n;
    return true;
}

/* A decimal number: [+-]digits[.digits][e[+-]digits] (no hex, inf or nan), finite. */
static bool take_number(struct gate_lex *lx, double *out)
{
    size_t i = lx->pos, digits = 0;
    const char *t = lx->text;
    if (i < lx->len && (t[i] == '+' || t[i] == '-'))
        i++;
    while (i < lx->len && ((t[i] >= '0' && t[i] <= '9') || t[i] == '.'))
        digits += t[i++] != '.';
    if (digits == 0)
        return false;
    if (i < lx->len && (t[i] == 'e' || t[i] == 'E')) {
        size_t j = i + 1;
        if (j < lx->len && (t[j] == '+' || t[j] == '-'))
            j++;
        if (j < lx->len && t[j] >= '0' && t[j] <= '9') {
            while (j < lx->len && t[j] >= '0' && t[j] <= '9')
                j++;
            i = j;
        }
    }
    char num[64];
    if (i - lx->pos >= sizeof(num))
        return false;
    memcpy(num, t + lx->pos, i - lx->pos);
    num[i - lx->pos] = '\0';
    char *end = NULL;
    errno = 0;
    double v = strtod(num, &end);
    if (end == num || *end != '\0' || errno == ERANGE || !isfinite(v))
        return false;
    *out = v;
    lx->pos = i;
    return true;
}

static int take_ref(struct gate_lex *lx, enum gate_ref *ref)
{
    if (take_word(lx, "baseline"))
        *ref = REF_BASELINE;
    else if (take_word(lx, "control"))
        *ref = REF_CONTROL;
    else
        return -1;
    return 0;
}

static int parse_rhs(struct gate_lex *lx, struct compare_gate *g)
{
    size_t at = lx->pos;
    if (take_ref(lx, &g->ref) == 0) {
        g->form = FORM_PLUS;
        g->k = 0;
        skip_blanks(lx);
        if (lx->pos >= lx->len)
            return 0;
        char sign = lx->text[lx->pos];
        if (sign != '+' && sign != '-')
            return gate_error(lx, lx->pos, "+ or - and a number, or the end of the gate");
        lx->pos++;
        skip_blanks(lx);
        size_t num_at = lx->pos;
        if (!take_number(lx, &g->k))
            return gate_error(lx, num_at, "a number");
        if (g->k < 0 && lx->text[num_at] == '-') /* "baseline - -3" is not worth supporting */
            return gate_error(lx, num_at, "a number without a sign");
        if (sign == '-')
            g->k = -g->k;
        return 0;
    }
    if (!take_number(lx, &g->k))
        return gate_error(lx, at, "a number, baseline or control");
    skip_blanks(lx);
    if (lx->pos >= lx->len) {
        g->form = FORM_ABSOLUTE;
        return 0;
    }
    size_t x_at = lx->pos;
    if (!take_word(lx, "x") && lx->text[lx->pos] != '*')
        return gate_error(lx, x_at, "x (times) baseline|control, or the end of the gate");
    if (lx->text[lx->pos] == '*')
        lx->pos++;
    skip_blanks(lx);
    size_t ref_at = lx->pos;
    if (take_ref(lx, &g->ref) != 0)
        return gate_error(lx, ref_at, "baseline or control");
    g->form = FORM_TIMES;
    return 0;
}

int compare_gate_parse(const char *text, struct compare_gate **out, char *err, size_t err_len)
{
    *out = NULL;
    if (text == NULL) {
        snprintf(err, err_len, "gate: missing");
        return -1;
    }
    size_t len = ferry_bounded_len(text, COMPARE_GATE_TEXT_MAX + 1);
    if (len > COMPARE_GATE_TEXT_MAX) {
        snprintf(err, err_len, "gate: longer than %d bytes", COMPARE_GATE_TEXT_MAX);
        return -1;
    }
    struct gate_lex lx = {text, 0, len, err, err_len};
    struct compare_gate *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        snprintf(err, err_len, "gate: out of memory");
        return -1;
    }
    g->stat = STAT_MEAN;
    skip_blanks(&lx);
    /* The metric: every byte up to a blank or a comparison sign. */
    size_t m_at = lx.pos, m_len = 0;
    while (m_at + m_len < len && text[m_at + m_len] != ' ' && text[m_at + m_len] != '\t' &&
           text[m_at + m_len] != '<' && text[m_at + m_len] != '>')
        m_len++;
    struct cmp_metric m;
    char merr[160];
    if (m_len == 0) {
        gate_error(&lx, m_at, "a metric (MEASUREMENT.FIELD or error_logs)");
        goto fail;
    }
    if (m_len > COMPARE_METRIC_MAX) {
        snprintf(err, err_len, "gate: column %zu: metric longer than %d bytes", m_at + 1,
                 COMPARE_METRIC_MAX);
        goto fail;
    }
    memcpy(g->metric, text + m_at, m_len);
    g->metric[m_len] = '\0';
    if (compare__metric_parse(g->metric, &m, merr, sizeof(merr)) != 0) {
        char term[96];
        snprintf(err, err_len, "gate: column %zu: \"%s\": %s", m_at + 1,
                 ferry_escape_str(term, sizeof(term), g->metric, m_len > 40 ? 40 : m_len), merr);
        goto fail;
    }
    g->error_logs = m.error_logs;
    lx.pos = m_at + m_len;
    skip_blanks(&lx);
    bool stat_given = false;
    for (int s = 0; s < 4 && !stat_given; s++)
        if (take_word(&lx, stat_names[s])) {
            g->stat = (enum gate_stat)s;
            stat_given = true;
        }
    skip_blanks(&lx);
    size_t op_at = lx.pos;
    const char *t = text + lx.pos;
    if (lx.pos + 1 < len && t[0] == '>' && t[1] == '=')
        g->op = OP_GE;
    else if (lx.pos + 1 < len && t[0] == '<' && t[1] == '=')
        g->op = OP_LE;
    else if (lx.pos < len && t[0] == '>')
        g->op = OP_GT;
    else if (lx.pos < len && t[0] == '<')
        g->op = OP_LT;
    else {
        gate_error(&lx, op_at,
                   stat_given
                       ? "a comparison (>=, <=, >, <)"
                       : "a statistic (count, mean, p50, p95) or a comparison (>=, <=, >, <)");
        goto fail;
    }
    lx.pos += g->op == OP_GE || g->op == OP_LE ? 2 : 1;
    skip_blanks(&lx);
    if (parse_rhs(&lx, g) != 0)
        goto fail;
    skip_blanks(&lx);
    if (lx.pos < len) {
        gate_error(&lx, lx.pos, "the end of the gate");
        goto fail;
    }
    *out = g;
    return 0;
fail:
    free(g);
    return -1;
}

const char *compare_gate_metric(const struct compare_gate *g)
{
    return g->metric;
}

static double dist_stat(const struct compare_dist *d, enum gate_stat s)
{
    switch (s) {
    case STAT_COUNT: return (double)d->count;
    case STAT_MEAN: return d->mean;
    case STAT_P50: return d->p50;
    case STAT_P95: return d->p95;
    }
    return NAN;
}

int compare_gate_eval(const struct compare_gate *g, const struct compare_result *r, double *value,
                      double *threshold, bool *pass, char *err, size_t err_len)
{
    /* error_logs has one value per device: one device decides; a metric needs a few samples. */
    uint64_t need = g->error_logs ? 1 : COMPARE_GATE_MIN_SAMPLES;
    const struct compare_dist *ref = g->ref == REF_BASELINE  ? &r->before
                                     : g->ref == REF_CONTROL ? &r->control
                                                             : NULL;
    *value = dist_stat(&r->after, g->stat);
    *threshold = NAN;
    *pass = false;
    if (r->after.count < need) {
        snprintf(err, err_len, "%s: %" PRIu64 " %s after the switch, %" PRIu64 " needed", g->metric,
                 r->after.count, g->error_logs ? "devices" : "samples", need);
        return -1;
    }
    if (ref != NULL && ref->count < need) {
        snprintf(err, err_len, "%s: %" PRIu64 " %s in the %s, %" PRIu64 " needed", g->metric,
                 ref->count, g->error_logs ? "devices" : "samples", ref_names[g->ref], need);
        return -1;
    }
    double base = ref != NULL ? dist_stat(ref, g->stat) : 0;
    *threshold = g->form == FORM_TIMES ? g->k * base : g->form == FORM_PLUS ? base + g->k : g->k;
    if (!isfinite(*value) || !isfinite(*threshold)) {
        snprintf(err, err_len, "%s: the %s is not a number", g->metric, stat_names[g->stat]);
        return -1;
    }
    switch (g->op) {
    case OP_GE: *pass = *value >= *threshold; break;
    case OP_LE: *pass = *value <= *threshold; break;
    case OP_GT: *pass = *value > *threshold; break;
    case OP_LT: *pass = *value < *threshold; break;
    }
    return 0;
}

int compare_gate_format(const struct compare_gate *g, char *out, size_t out_len)
{
    int n;
    if (g->form == FORM_TIMES)
        n = snprintf(out, out_len, "%s %s %s %.15g x %s", g->metric, stat_names[g->stat],
                     op_names[g->op], g->k, ref_names[g->ref]);
    else if (g->form == FORM_PLUS && g->k == 0)
        n = snprintf(out, out_len, "%s %s %s %s", g->metric, stat_names[g->stat], op_names[g->op],
                     ref_names[g->ref]);
    else if (g->form == FORM_PLUS)
        n = snprintf(out, out_len, "%s %s %s %s %c %.15g", g->metric, stat_names[g->stat],
                     op_names[g->op], ref_names[g->ref], g->k < 0 ? '-' : '+', fabs(g->k));
    else
        n = snprintf(out, out_len, "%s %s %s %.15g", g->metric, stat_names[g->stat],
                     op_names[g->op], g->k);
    return n >= 0 && (size_t)n < out_len ? 0 : -1;
}

void compare_gate_free(struct compare_gate *g)
{
    free(g);
}
