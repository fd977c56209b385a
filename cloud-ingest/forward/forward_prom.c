/*
 * forward_prom.c - Prometheus remote write 1.0 bodies (forward_impl.h): records become samples,
 * samples of one series in a batch become one TimeSeries, the WriteRequest is packed with
 * libprotobuf-c (remote_write.proto, generated at build time) and snappy-compressed (block
 * format, as the remote write spec requires).
 *
 * Memory per batch is what the batch holds (labels once per record, one entry per sample); the
 * series guard is a hash set bounded by series_limit, kept across batches.
 */
#include <stdlib.h>
#include <string.h>

#include <snappy-c.h>

#include "cloud-ingest/forward/forward_impl.h"
#include "common/buf.h"
#include "remote_write.pb-c.h"

struct pr_label {
    size_t key_off, val_off; /* NUL-terminated strings in strs */
};

struct pr_sample {
    uint64_t hash;
    size_t name_off;    /* metric name in strs */
    size_t label_first; /* the record's labels in labels[] */
    size_t n_labels;
    double value;
    int64_t ts_ms;
};

struct fwd_prom {
    struct ferry_buf strs;
    struct pr_label *labels;
    size_t n_labels, cap_labels;
    struct pr_sample *samples;
    size_t n_samples, cap_samples;
    /* series guard: open addressing over non-zero hashes */
    uint64_t *set;
    size_t set_cap, set_n;
    unsigned limit;
    uint64_t dropped, skipped;
};

int fwd_prom_new(unsigned series_limit, struct fwd_prom **out)
{
    struct fwd_prom *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -1;
    p->limit = series_limit;
    *out = p;
    return 0;
}

void fwd_prom_free(struct fwd_prom *p)
{
    if (p == NULL)
        return;
    ferry_buf_free(&p->strs);
    free(p->labels);
    free(p->samples);
    free(p->set);
    free(p);
}

void fwd_prom_reset(struct fwd_prom *p)
{
    ferry_buf_reset(&p->strs);
    p->n_labels = 0;
    p->n_samples = 0;
}

size_t fwd_prom_samples(const struct fwd_prom *p)
{
    return p->n_samples;
}
uint64_t fwd_prom_dropped(const struct fwd_prom *p)
{
    return p->dropped;
}
uint64_t fwd_prom_skipped(const struct fwd_prom *p)
{
    return p->skipped;
}
uint64_t fwd_prom_series(const struct fwd_prom *p)
{
    return p->set_n;
}

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const uint8_t *b = data;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static bool set_has(const struct fwd_prom *p, uint64_t h)
{
    if (p->set_cap == 0)
        return false;
    for (size_t i = h & (p->set_cap - 1);; i = (i + 1) & (p->set_cap - 1)) {
        if (p->set[i] == h)
            return true;
        if (p->set[i] == 0)
            return false;
    }
}

static void set_put(uint64_t *set, size_t cap, uint64_t h)
{
    size_t i = h & (cap - 1);
    while (set[i] != 0 && set[i] != h)
        i = (i + 1) & (cap - 1);
    set[i] = h;
}

/* Admits series `h`: true when known or when there is room for it. */
static bool guard_admit(struct fwd_prom *p, uint64_t h)
{
    if (set_has(p, h))
        return true;
    if (p->set_n >= p->limit)
        return false;
    if ((p->set_n + 1) * 2 > p->set_cap) {
        size_t cap = p->set_cap ? p->set_cap * 2 : 1024;
        uint64_t *n = calloc(cap, sizeof(*n));
        if (n == NULL)
            return false; /* counted as dropped: memory stays bounded */
        for (size_t i = 0; i < p->set_cap; i++)
            if (p->set[i] != 0)
                set_put(n, cap, p->set[i]);
        free(p->set);
        p->set = n;
        p->set_cap = cap;
    }
    set_put(p->set, p->set_cap, h);
    p->set_n++;
    return true;
}

static bool name_char(char c, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           (colon && c == ':');
}

/* Appends a sanitized metric or label name, NUL-terminated; returns its offset or SIZE_MAX. */
static size_t put_name(struct fwd_prom *p, const char *prefix, const char *a, size_t a_len,
                       const char *b, size_t b_len, bool colon)
{
    size_t off = p->strs.len;
    size_t pre = prefix != NULL ? strlen(prefix) : 0;
    if (ferry_buf_reserve(&p->strs, pre + a_len + b_len + 3) != 0)
        return SIZE_MAX;
    uint8_t *o = p->strs.data + p->strs.len;
    size_t n = 0;
    if (pre > 0)
        memcpy(o, prefix, pre);
    n += pre;
    if (n == 0 && a_len > 0 && a[0] >= '0' && a[0] <= '9')
        o[n++] = '_';
    for (size_t i = 0; i < a_len; i++)
        o[n++] = name_char(a[i], colon) ? (uint8_t)a[i] : '_';
    if (b != NULL) {
        o[n++] = '_';
        for (size_t i = 0; i < b_len; i++)
            o[n++] = name_char(b[i], colon) ? (uint8_t)b[i] : '_';
    }
    if (n == 0)
        o[n++] = '_';
    o[n++] = '\0';
    p->strs.len += n;
    return off;
}

static size_t put_value(struct fwd_prom *p, const char *s, size_t n)
{
    size_t off = p->strs.len;
    if (fwd_utf8_append(&p->strs, s, n) != 0 || ferry_buf_append_u8(&p->strs, 0) != 0)
        return SIZE_MAX;
    return off;
}

static const char *str_at(const struct fwd_prom *p, size_t off)
{
    return (const char *)p->strs.data + off;
}

static int cmp_label(const void *a, const void *b, void *arg)
{
    const struct pr_label *x = a, *y = b;
    return strcmp(str_at(arg, x->key_off), str_at(arg, y->key_off));
}

static int grow(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 256;
    while (c < need)
        c *= 2;
    void *n = realloc(*arr, c * size);
    if (n == NULL)
        return -1;
    *arr = n;
    *cap = c;
    return 0;
}

int fwd_prom_add(struct fwd_prom *p, const char *device, const struct record *r, int64_t ts_ns)
{
    size_t first = p->n_labels;
    if (grow((void **)&p->labels, &p->cap_labels, first + r->n_tags + 1, sizeof(*p->labels)) != 0)
        return -1;
    /* The record's labels: device, then its tags; sorted by name, first of a repeat wins. */
    size_t k = put_name(p, NULL, "device", 6, NULL, 0, false);
    size_t v = put_value(p, device, strlen(device));
    if (k == SIZE_MAX || v == SIZE_MAX)
        return -1;
    p->labels[first] = (struct pr_label){k, v};
    size_t n = 1;
    for (size_t i = 0; i < r->n_tags; i++) {
        const struct record_tag *t = &r->tags[i];
        if (t->value.len == 0)
            continue; /* an empty label value is the same as no label */
        bool reserved = (t->key.len == 6 && memcmp(t->key.ptr, "device", 6) == 0) ||
                        (t->key.len >= 2 && t->key.ptr[0] == '_' && t->key.ptr[1] == '_') ||
                        (t->key.len > 0 && t->key.ptr[0] >= '0' && t->key.ptr[0] <= '9');
        k = put_name(p, reserved ? "tag_" : NULL, t->key.ptr, t->key.len, NULL, 0, false);
        v = put_value(p, t->value.ptr, t->value.len);
        if (k == SIZE_MAX || v == SIZE_MAX)
            return -1;
        p->labels[first + n++] = (struct pr_label){k, v};
    }
    qsort_r(p->labels + first, n, sizeof(*p->labels), cmp_label, p);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (kept > 0 && strcmp(str_at(p, p->labels[first + kept - 1].key_off),
                               str_at(p, p->labels[first + i].key_off)) == 0)
            continue;
        p->labels[first + kept++] = p->labels[first + i];
    }
    uint64_t base = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < kept; i++) {
        const char *lk = str_at(p, p->labels[first + i].key_off);
        const char *lv = str_at(p, p->labels[first + i].val_off);
        base = fnv(base, lk, strlen(lk) + 1);
        base = fnv(base, lv, strlen(lv) + 1);
    }
    bool used = false;
    /* Floor division: a timestamp before 1970 stays in the right millisecond. */
    int64_t ts_ms = ts_ns / 1000000 - (ts_ns % 1000000 < 0 ? 1 : 0);
    for (size_t i = 0; i < r->n_fields; i++) {
        const struct record_field *f = &r->fields[i];
        double value;
        if (f->type == RECORD_FIELD_BOOL)
            value = f->v.b ? 1 : 0;
        else if (record_field_number(f, &value) != 0) {
            p->skipped++;
            continue;
        }
        size_t name = put_name(p, NULL, r->name.ptr, r->name.len, f->key.ptr, f->key.len, true);
        if (name == SIZE_MAX)
            return -1;
        const char *nm = str_at(p, name);
        uint64_t h = fnv(base, nm, strlen(nm) + 1);
        if (h == 0)
            h = 1;
        if (!guard_admit(p, h)) {
            p->dropped++;
            continue;
        }
        if (grow((void **)&p->samples, &p->cap_samples, p->n_samples + 1, sizeof(*p->samples)) != 0)
            return -1;
        p->samples[p->n_samples++] = (struct pr_sample){h, name, first, kept, value, ts_ms};
        used = true;
    }
    if (used)
        p->n_labels = first + kept;
    return 0;
}

static int cmp_sample(const void *a, const void *b)
{
    const struct pr_sample *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->ts_ms < y->ts_ms ? -1 : x->ts_ms > y->ts_ms;
}

int fwd_prom_finish(struct fwd_prom *p, struct ferry_buf *body)
{
    ferry_buf_reset(body);
    /* Samples of one series together, in time order, as one TimeSeries. */
    if (p->n_samples > 1) /* qsort with no array is undefined even for 0 elements */
        qsort(p->samples, p->n_samples, sizeof(*p->samples), cmp_sample);
    size_t n_series = 0, n_label_ptrs = 0;
    for (size_t i = 0; i < p->n_samples; i++)
        if (i == 0 || p->samples[i].hash != p->samples[i - 1].hash) {
            n_series++;
            n_label_ptrs += p->samples[i].n_labels + 1;
        }
    Prometheus__TimeSeries *ts = calloc(n_series ? n_series : 1, sizeof(*ts));
    Prometheus__TimeSeries **ts_ptrs = calloc(n_series ? n_series : 1, sizeof(*ts_ptrs));
    Prometheus__Label *labels = calloc(n_label_ptrs ? n_label_ptrs : 1, sizeof(*labels));
    Prometheus__Label **label_ptrs = calloc(n_label_ptrs ? n_label_ptrs : 1, sizeof(*label_ptrs));
    Prometheus__Sample *samples = calloc(p->n_samples ? p->n_samples : 1, sizeof(*samples));
    Prometheus__Sample **sample_ptrs =
        calloc(p->n_samples ? p->n_samples : 1, sizeof(*sample_ptrs));
    uint8_t *packed = NULL;
    int rc = -1;
    if (ts == NULL || ts_ptrs == NULL || labels == NULL || label_ptrs == NULL || samples == NULL ||
        sample_ptrs == NULL)
        goto out;
    size_t s_i = 0, l_i = 0;
    for (size_t i = 0; i < p->n_samples;) {
        size_t j = i;
        while (j < p->n_samples && p->samples[j].hash == p->samples[i].hash)
            j++;
        const struct pr_sample *sm = &p->samples[i];
        Prometheus__TimeSeries *t = &ts[s_i];
        prometheus__time_series__init(t);
        ts_ptrs[s_i++] = t;
        /* labels: __name__ merged into the sorted record labels */
        t->labels = &label_ptrs[l_i];
        bool name_done = false;
        for (size_t k = 0; k <= sm->n_labels; k++) {
            const struct pr_label *rl = k < sm->n_labels ? &p->labels[sm->label_first + k] : NULL;
            if (!name_done && (rl == NULL || strcmp("__name__", str_at(p, rl->key_off)) < 0)) {
                prometheus__label__init(&labels[l_i]);
                labels[l_i].name = (char *)"__name__";
                labels[l_i].value = (char *)str_at(p, sm->name_off);
                label_ptrs[l_i] = &labels[l_i];
                l_i++;
                t->n_labels++;
                name_done = true;
            }
            if (rl == NULL)
                break;
            prometheus__label__init(&labels[l_i]);
            labels[l_i].name = (char *)str_at(p, rl->key_off);
            labels[l_i].value = (char *)str_at(p, rl->val_off);
            label_ptrs[l_i] = &labels[l_i];
            l_i++;
            t->n_labels++;
        }
        t->samples = &sample_ptrs[i];
        t->n_samples = j - i;
        for (size_t k = i; k < j; k++) {
            prometheus__sample__init(&samples[k]);
            samples[k].value = p->samples[k].value;
            samples[k].timestamp = p->samples[k].ts_ms;
            sample_ptrs[k] = &samples[k];
        }
        i = j;
    }
    Prometheus__WriteRequest req = PROMETHEUS__WRITE_REQUEST__INIT;
    req.n_timeseries = n_series;
    req.timeseries = ts_ptrs;
    size_t len = prometheus__write_request__get_packed_size(&req);
    packed = malloc(len ? len : 1);
    if (packed == NULL)
        goto out;
    prometheus__write_request__pack(&req, packed);
    size_t max = snappy_max_compressed_length(len);
    if (ferry_buf_reserve(body, max) != 0)
        goto out;
    size_t out_len = max;
    if (snappy_compress((const char *)packed, len, (char *)body->data, &out_len) != SNAPPY_OK)
        goto out;
    body->len = out_len;
    rc = 0;
out:
    free(packed);
    free(ts);
    free(ts_ptrs);
    free(labels);
    free(label_ptrs);
    free(samples);
    free(sample_ptrs);
    return rc;
}
