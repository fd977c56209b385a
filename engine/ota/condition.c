/*
 * condition.c - release conditions evaluated from the journal (see condition.h).
 *
 * Values are collected into one array (bounded by max_scan) because p50/p95 need them all; mean,
 * min, max and count could stream, but one path for every stat keeps the code small and the
 * bound is the same. Pages of at most CONDITION_PAGE records per journal_read() keep each read
 * transaction short.
 */
#include "engine/ota/condition.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal/journal.h"
#include "transport/record.h"

#define CONDITION_PAGE 4096u

struct scan {
    const struct manifest_condition *c;
    int64_t start_ns, end_ns;
    size_t max_scan;
    double *values;
    size_t n, cap;
    uint64_t scanned;
    unsigned old_run;
    bool stop, nomem;
    struct record_scratch scratch;
};

const char *ota_condition_outcome_name(enum ota_condition_outcome o)
{
    switch (o) {
    case OTA_CONDITION_MET: return "met";
    case OTA_CONDITION_NOT_MET: return "not_met";
    case OTA_CONDITION_INSUFFICIENT: return "insufficient";
    }
    return "?";
}

static int add_value(struct scan *s, double v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        if (cap > s->max_scan)
            cap = s->max_scan;
        double *nv = realloc(s->values, cap * sizeof(*nv));
        if (!nv)
            return -1;
        s->values = nv;
        s->cap = cap;
    }
    s->values[s->n++] = v;
    return 0;
}

static int on_record(void *arg, const struct journal_entry *e)
{
    struct scan *s = arg;
    s->scanned++;
    if (s->scanned >= s->max_scan)
        s->stop = true;
    if (e->ts_ns < s->start_ns) {
        if (++s->old_run >= OTA_CONDITION_OLD_RUN)
            s->stop = true;
        return s->stop ? 1 : 0;
    }
    s->old_run = 0;
    if (e->ts_ns > s->end_ns)
        return s->stop ? 1 : 0;
    struct record r;
    if (record_unpack(e->payload, e->len, &s->scratch, &r, NULL, 0) != RECORD_OK)
        return s->stop ? 1 : 0; /* unreadable: skipped */
    size_t mlen = strlen(s->c->measurement), flen = strlen(s->c->field);
    if (r.name.len != mlen || memcmp(r.name.ptr, s->c->measurement, mlen) != 0)
        return s->stop ? 1 : 0;
    for (size_t i = 0; i < r.n_fields; i++) {
        const struct record_field *f = &r.fields[i];
        double v;
        if (f->key.len != flen || memcmp(f->key.ptr, s->c->field, flen) != 0 ||
            record_field_number(f, &v) != 0)
            continue;
        if (add_value(s, v) != 0) {
            s->nomem = true;
            return 1;
        }
        break;
    }
    return s->stop ? 1 : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n). */
static double percentile(const double *v, size_t n, double p)
{
    size_t rank = (size_t)(p * (double)n + 0.999999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static double compute(const struct manifest_condition *c, double *v, size_t n)
{
    if (c->stat == MANIFEST_STAT_COUNT)
        return (double)n;
    if (n == 0)
        return 0;
    double sum = 0, min = v[0], max = v[0];
    for (size_t i = 0; i < n; i++) {
        sum += v[i];
        min = v[i] < min ? v[i] : min;
        max = v[i] > max ? v[i] : max;
    }
    switch (c->stat) {
    case MANIFEST_STAT_MEAN: return sum / (double)n;
    case MANIFEST_STAT_MIN: return min;
    case MANIFEST_STAT_MAX: return max;
    case MANIFEST_STAT_P50:
    case MANIFEST_STAT_P95:
        qsort(v, n, sizeof(*v), cmp_double);
        return percentile(v, n, c->stat == MANIFEST_STAT_P50 ? 0.50 : 0.95);
    case MANIFEST_STAT_COUNT: break;
    }
    return (double)n;
}

int ota_condition_eval(struct journal *j, const struct manifest_condition *c, int64_t now_ns,
                       size_t max_scan, struct ota_condition_result *out, char *err, size_t err_len)
{
    if (!j || !c || !out || c->window_ms <= 0) {
        snprintf(err, err_len, "condition: invalid arguments");
        return -1;
    }
    struct scan *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, err_len, "condition: out of memory");
        return -1;
    }
    s->c = c;
    s->end_ns = now_ns;
    s->start_ns = now_ns - c->window_ms * 1000000;
    s->max_scan = max_scan ? max_scan : OTA_CONDITION_MAX_SCAN;
    struct journal_read_opts o = {0};
    o.max_records = CONDITION_PAGE;
    o.flags = JOURNAL_READ_NEWEST_FIRST | JOURNAL_READ_INCLUDE_ACKED;
    int rc = 0;
    for (;;) {
        struct journal_read_result res;
        rc = journal_read(j, RECORD_METRIC, &o, on_record, s, &res);
        if (rc < 0) {
            snprintf(err, err_len, "condition: reading the journal's metrics: %s",
                     journal_strerror(rc));
            break;
        }
        rc = 0;
        if (s->nomem) {
            snprintf(err, err_len, "condition: out of memory for %zu values", s->n);
            rc = -1;
            break;
        }
        if (s->stop || !res.more || res.records == 0 || res.last_seq <= 1)
            break;
        o.from_seq = res.last_seq;
    }
    if (rc == 0) {
        memset(out, 0, sizeof(*out));
        out->samples = s->n;
        out->scanned = s->scanned;
        out->scan_limited = s->scanned >= s->max_scan && s->old_run < OTA_CONDITION_OLD_RUN;
        out->value = compute(c, s->values, s->n);
        /* a mean (min, max, percentile) of nothing is no value: never decided on zero samples,
         * whatever min_samples says; a count of zero is a value */
        if (s->n < c->min_samples || (s->n == 0 && c->stat != MANIFEST_STAT_COUNT))
            out->outcome = OTA_CONDITION_INSUFFICIENT;
        else
            out->outcome = manifest_condition_holds(c->op, out->value, c->value)
                               ? OTA_CONDITION_MET
                               : OTA_CONDITION_NOT_MET;
    }
    free(s->values);
    free(s);
    return rc;
}
