/*
 * forward_prom.c - Prometheus remote write 1.0 bodies (forward_impl.h): records become samples,
 * samples of one series in a batch become one TimeSeries, the WriteRequest is packed with
 * libprotobuf-c (remote_write.proto, generated at build time) and snappy-compressed (block
 * format, as the remote write spec requires).
 *
 * Built for throughput (measured with tests/bench/forward/, docs/forwarding.md "Figures"): a
 * batch keeps a hash table of its series, so a sample of a series already in the batch costs a
 * name hash and a table probe; its labels and name are written once per series and batch, not
 * once per sample, and no sort of the batch's samples is needed (samples are chained per series
 * in arrival order, and only a series whose samples arrived out of time order is sorted). The
 * arrays are kept across batches, so a steady forwarder does not allocate per batch.
 *
 * The series guard (struct fwd_guard) is separate from an encoder so that several encoders of one
 * forwarder (its workers) share it: it is a hash set bounded by series_limit behind a mutex,
 * consulted once per series and batch (the batch table remembers the answer).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <snappy-c.h>

#include "cloud-ingest/forward/forward_impl.h"
#include "common/buf.h"
#include "remote_write.pb-c.h"

/* ---- Series guard -----------------------------------------------------------------------------
 */

struct fwd_guard {
    pthread_mutex_t lock;
    uint64_t *set; /* open addressing over non-zero hashes */
    size_t set_cap, set_n;
    unsigned limit;
    _Atomic uint64_t dropped;
};

int fwd_guard_new(unsigned series_limit, struct fwd_guard **out)
{
    struct fwd_guard *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return -1;
    pthread_mutex_init(&g->lock, NULL);
    g->limit = series_limit;
    *out = g;
    return 0;
}

void fwd_guard_free(struct fwd_guard *g)
{
    if (g == NULL)
        return;
    pthread_mutex_destroy(&g->lock);
    free(g->set);
    free(g);
}

uint64_t fwd_guard_dropped(struct fwd_guard *g)
{
    return atomic_load(&g->dropped);
}

uint64_t fwd_guard_series(struct fwd_guard *g)
{
    pthread_mutex_lock(&g->lock);
    uint64_t n = g->set_n;
    pthread_mutex_unlock(&g->lock);
    return n;
}

static bool set_has(const struct fwd_guard *g, uint64_t h)
{
    if (g->set_cap == 0)
        return false;
    for (size_t i = h & (g->set_cap - 1);; i = (i + 1) & (g->set_cap - 1)) {
        if (g->set[i] == h)
            return true;
        if (g->set[i] == 0)
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

/* Admits series `h` (non-zero): true when known or when there is room for it. */
static bool guard_admit(struct fwd_guard *g, uint64_t h)
{
    pthread_mutex_lock(&g->lock);
    bool ok = true;
    if (set_has(g, h))
        goto out;
    if (g->set_n >= g->limit) {
        ok = false;
        goto out;
    }
    if ((g->set_n + 1) * 2 > g->set_cap) {
        size_t cap = g->set_cap ? g->set_cap * 2 : 1024;
        uint64_t *n = calloc(cap, sizeof(*n));
        if (n == NULL) {
            ok = false; /* counted as dropped: memory stays bounded */
            goto out;
        }
        for (size_t i = 0; i < g->set_cap; i++)
            if (g->set[i] != 0)
                set_put(n, cap, g->set[i]);
        free(g->set);
        g->set = n;
        g->set_cap = cap;
    }
    set_put(g->set, g->set_cap, h);
    g->set_n++;
out:
    pthread_mutex_unlock(&g->lock);
    return ok;
}

/* ---- One batch --------------------------------------------------------------------------------
 */

struct pr_label {
    size_t key_off, val_off; /* NUL-terminated strings in strs */
};

#define PR_NONE SIZE_MAX

/* A series of the batch. Samples of a dropped series are counted, not kept. */
struct pr_series {
    uint64_t hash;
    size_t name_off;    /* metric name in strs */
    size_t label_first; /* the record's labels in labels[] */
    size_t n_labels;
    size_t first, last; /* chain of its samples (PR_NONE: none) */
    size_t n_samples;
    int64_t last_ts_ms;
    bool admitted, unsorted;
};

struct pr_sample {
    double value;
    int64_t ts_ms;
    size_t next; /* next sample of the same series, PR_NONE at the end */
};

/* A label set the batch already holds, found again by the record's raw tags: records of a
 * device repeat a few tag sets (a cpu collector: one per core), so their labels are sanitized,
 * sorted and hashed once per batch, not once per record. */
#define PR_CACHE 8
#define PR_CACHE_RAW_MAX 256
struct pr_labelset {
    size_t device_off; /* the device value it was built with */
    size_t label_first, n_labels;
    uint64_t base; /* hash of the sorted labels */
    size_t raw_len;
    uint8_t raw[PR_CACHE_RAW_MAX]; /* the record's tags: len(2) key len(2) value, ... */
};

struct fwd_prom {
    struct fwd_guard *guard;
    struct pr_labelset cache[PR_CACHE];
    size_t cache_n, cache_next;
    bool own_guard;
    struct ferry_buf strs;
    struct pr_label *labels;
    size_t n_labels, cap_labels;
    struct pr_series *series;
    size_t n_series, cap_series;
    size_t *table; /* series index + 1 by hash; 0 = empty */
    size_t table_cap;
    struct pr_sample *samples;
    size_t n_samples, cap_samples;
    size_t device_off; /* the last device's label value in strs (PR_NONE: none) */
    uint64_t dropped, skipped;
    /* protobuf-c views, kept across batches */
    Prometheus__TimeSeries *pb_ts;
    Prometheus__TimeSeries **pb_ts_ptrs;
    Prometheus__Label *pb_labels;
    Prometheus__Label **pb_label_ptrs;
    Prometheus__Sample *pb_samples;
    Prometheus__Sample **pb_sample_ptrs;
    size_t cap_pb_ts, cap_pb_labels, cap_pb_samples;
    struct ferry_buf packed;
};

/* strs always starts with the key "device" (offset 0). */
#define PR_DEVICE_KEY_OFF 0

static void batch_clear(struct fwd_prom *p)
{
    /* strs has room for it since fwd_prom_new_shared() (a reset keeps the memory) */
    memcpy(p->strs.data, "device", 7);
    p->strs.len = 7;
    p->n_labels = 0;
    p->n_series = 0;
    p->n_samples = 0;
    p->device_off = PR_NONE;
    p->cache_n = 0;
    p->cache_next = 0;
    if (p->table != NULL)
        memset(p->table, 0, p->table_cap * sizeof(*p->table));
}

int fwd_prom_new_shared(struct fwd_guard *guard, struct fwd_prom **out)
{
    struct fwd_prom *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -1;
    p->guard = guard;
    if (ferry_buf_reserve(&p->strs, 4096) != 0) {
        free(p);
        return -1;
    }
    batch_clear(p);
    *out = p;
    return 0;
}

int fwd_prom_new(unsigned series_limit, struct fwd_prom **out)
{
    struct fwd_guard *g = NULL;
    if (fwd_guard_new(series_limit, &g) != 0)
        return -1;
    if (fwd_prom_new_shared(g, out) != 0) {
        fwd_guard_free(g);
        return -1;
    }
    (*out)->own_guard = true;
    return 0;
}

void fwd_prom_free(struct fwd_prom *p)
{
    if (p == NULL)
        return;
    if (p->own_guard)
        fwd_guard_free(p->guard);
    ferry_buf_free(&p->strs);
    free(p->labels);
    free(p->series);
    free(p->table);
    free(p->samples);
    free(p->pb_ts);
    free(p->pb_ts_ptrs);
    free(p->pb_labels);
    free(p->pb_label_ptrs);
    free(p->pb_samples);
    free(p->pb_sample_ptrs);
    ferry_buf_free(&p->packed);
    free(p);
}

void fwd_prom_reset(struct fwd_prom *p)
{
    batch_clear(p);
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
    return fwd_guard_series(p->guard);
}

#define FNV_BASIS 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const uint8_t *b = data;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= FNV_PRIME;
    }
    return h;
}

static bool name_char(char c, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           (colon && c == ':');
}

/* Appends a sanitized metric or label name, NUL-terminated; returns its offset or PR_NONE. */
static size_t put_name(struct fwd_prom *p, const char *prefix, const char *a, size_t a_len,
                       const char *b, size_t b_len, bool colon)
{
    size_t off = p->strs.len;
    size_t pre = prefix != NULL ? strlen(prefix) : 0;
    if (ferry_buf_reserve(&p->strs, pre + a_len + b_len + 3) != 0)
        return PR_NONE;
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
        return PR_NONE;
    return off;
}

static const char *str_at(const struct fwd_prom *p, size_t off)
{
    return (const char *)p->strs.data + off;
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

/* The batch's series `h`, or PR_NONE. */
static size_t table_find(const struct fwd_prom *p, uint64_t h)
{
    if (p->table_cap == 0)
        return PR_NONE;
    for (size_t i = h & (p->table_cap - 1);; i = (i + 1) & (p->table_cap - 1)) {
        if (p->table[i] == 0)
            return PR_NONE;
        if (p->series[p->table[i] - 1].hash == h)
            return p->table[i] - 1;
    }
}

static void table_put(size_t *table, size_t cap, uint64_t h, size_t idx)
{
    size_t i = h & (cap - 1);
    while (table[i] != 0)
        i = (i + 1) & (cap - 1);
    table[i] = idx + 1;
}

/* Adds a series to the batch (table kept at most half full). Returns its index or PR_NONE. */
static size_t series_add(struct fwd_prom *p, const struct pr_series *s)
{
    if (grow((void **)&p->series, &p->cap_series, p->n_series + 1, sizeof(*p->series)) != 0)
        return PR_NONE;
    if ((p->n_series + 1) * 2 > p->table_cap) {
        size_t cap = p->table_cap ? p->table_cap * 2 : 256;
        size_t *t = calloc(cap, sizeof(*t));
        if (t == NULL)
            return PR_NONE;
        for (size_t i = 0; i < p->n_series; i++)
            table_put(t, cap, p->series[i].hash, i);
        free(p->table);
        p->table = t;
        p->table_cap = cap;
    }
    p->series[p->n_series] = *s;
    table_put(p->table, p->table_cap, s->hash, p->n_series);
    return p->n_series++;
}

/* Sorts the record's labels by key (insertion sort: a record has a handful) and keeps the first
 * of a repeated key. Returns how many are kept. */
static size_t labels_sort_unique(struct fwd_prom *p, struct pr_label *l, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct pr_label x = l[i];
        const char *xk = str_at(p, x.key_off);
        size_t j = i;
        /* strictly greater moves right: equal keys keep their order, so the first one wins */
        while (j > 0 && strcmp(str_at(p, l[j - 1].key_off), xk) > 0) {
            l[j] = l[j - 1];
            j--;
        }
        l[j] = x;
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (kept > 0 && strcmp(str_at(p, l[kept - 1].key_off), str_at(p, l[i].key_off)) == 0)
            continue;
        l[kept++] = l[i];
    }
    return kept;
}

/* Adds the samples of r's numeric fields for the label set labels[first .. first + kept) whose
 * hash is `base`. `known`: that label set is already kept in the batch (from the cache);
 * otherwise it is kept (n_labels moves past it) if a new series uses it, and strs is cut back to
 * strs_mark if not. */
static int add_fields(struct fwd_prom *p, const struct record *r, int64_t ts_ns, size_t first,
                      size_t kept, uint64_t base, bool known, size_t strs_mark)
{
    bool labels_used = false;
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
        if (name == PR_NONE)
            return -1;
        const char *nm = str_at(p, name);
        uint64_t h = fnv(base, nm, strlen(nm) + 1);
        if (h == 0)
            h = 1;
        size_t si = table_find(p, h);
        if (si != PR_NONE) {
            p->strs.len = name; /* known in this batch: its name is already kept */
        } else {
            bool admitted = guard_admit(p->guard, h);
            struct pr_series s = {.hash = h,
                                  .name_off = name,
                                  .label_first = first,
                                  .n_labels = admitted ? kept : 0,
                                  .first = PR_NONE,
                                  .last = PR_NONE,
                                  .admitted = admitted};
            if (!admitted)
                p->strs.len = name;
            si = series_add(p, &s);
            if (si == PR_NONE)
                return -1;
            if (admitted) {
                labels_used = true;
                strs_mark = p->strs.len; /* everything written so far is referenced */
            }
        }
        struct pr_series *s = &p->series[si];
        if (!s->admitted) {
            p->dropped++;
            atomic_fetch_add(&p->guard->dropped, 1);
            continue;
        }
        if (grow((void **)&p->samples, &p->cap_samples, p->n_samples + 1, sizeof(*p->samples)) != 0)
            return -1;
        size_t k = p->n_samples++;
        p->samples[k] = (struct pr_sample){value, ts_ms, PR_NONE};
        if (s->last == PR_NONE)
            s->first = k;
        else
            p->samples[s->last].next = k;
        if (s->n_samples > 0 && ts_ms < s->last_ts_ms)
            s->unsorted = true;
        s->last = k;
        s->last_ts_ms = ts_ms;
        s->n_samples++;
    }
    if (labels_used && !known)
        p->n_labels = first + kept;
    else
        p->strs.len = strs_mark; /* no new labels kept: the record's label strings are not needed */
    return 0;
}

/* The raw key of a record's tags into raw[PR_CACHE_RAW_MAX]; its length, or 0 when it does not
 * fit (not cached then). */
static size_t raw_tags(const struct record *r, uint8_t *raw)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_tags; i++) {
        const struct record_tag *t = &r->tags[i];
        if (t->key.len > 0xffff || t->value.len > 0xffff ||
            PR_CACHE_RAW_MAX - n < 4 + t->key.len + t->value.len)
            return 0;
        raw[n++] = (uint8_t)(t->key.len >> 8);
        raw[n++] = (uint8_t)t->key.len;
        memcpy(raw + n, t->key.ptr, t->key.len);
        n += t->key.len;
        raw[n++] = (uint8_t)(t->value.len >> 8);
        raw[n++] = (uint8_t)t->value.len;
        memcpy(raw + n, t->value.ptr, t->value.len);
        n += t->value.len;
    }
    if (n == 0)
        raw[n++] = 0; /* no tags: the one-byte key 0 (a tagged record's key has 4 bytes or more) */
    return n;
}

static const struct pr_labelset *cache_find(const struct fwd_prom *p, size_t device_off,
                                            const uint8_t *raw, size_t raw_len)
{
    for (size_t i = 0; i < p->cache_n; i++) {
        const struct pr_labelset *e = &p->cache[i];
        if (e->device_off == device_off && e->raw_len == raw_len &&
            memcmp(e->raw, raw, raw_len) == 0)
            return e;
    }
    return NULL;
}

static void cache_put(struct fwd_prom *p, size_t device_off, const uint8_t *raw, size_t raw_len,
                      size_t first, size_t n_labels, uint64_t base)
{
    struct pr_labelset *e = &p->cache[p->cache_next];
    p->cache_next = (p->cache_next + 1) % PR_CACHE;
    if (p->cache_n < PR_CACHE)
        p->cache_n++;
    e->device_off = device_off;
    e->label_first = first;
    e->n_labels = n_labels;
    e->base = base;
    e->raw_len = raw_len;
    memcpy(e->raw, raw, raw_len);
}

int fwd_prom_add(struct fwd_prom *p, const char *device, const struct record *r, int64_t ts_ns)
{
    size_t strs_mark = p->strs.len, first = p->n_labels;
    if (grow((void **)&p->labels, &p->cap_labels, first + r->n_tags + 1, sizeof(*p->labels)) != 0)
        return -1;
    /* The record's labels: device, then its tags; sorted by name, first of a repeat wins. The
     * device's value is written once while records of one device follow each other. */
    size_t dv = p->device_off;
    if (dv == PR_NONE || strcmp(str_at(p, dv), device) != 0) {
        dv = put_value(p, device, strlen(device));
        if (dv == PR_NONE)
            return -1;
        p->device_off = dv;
        strs_mark = p->strs.len; /* the device value stays for the next records */
    }
    uint8_t raw[PR_CACHE_RAW_MAX];
    size_t raw_len = raw_tags(r, raw);
    const struct pr_labelset *hit = raw_len > 0 ? cache_find(p, dv, raw, raw_len) : NULL;
    if (hit != NULL)
        return add_fields(p, r, ts_ns, hit->label_first, hit->n_labels, hit->base, true, strs_mark);
    p->labels[first] = (struct pr_label){PR_DEVICE_KEY_OFF, dv};
    size_t n = 1;
    for (size_t i = 0; i < r->n_tags; i++) {
        const struct record_tag *t = &r->tags[i];
        if (t->value.len == 0)
            continue; /* an empty label value is the same as no label */
        bool reserved = (t->key.len == 6 && memcmp(t->key.ptr, "device", 6) == 0) ||
                        (t->key.len >= 2 && t->key.ptr[0] == '_' && t->key.ptr[1] == '_') ||
                        (t->key.len > 0 && t->key.ptr[0] >= '0' && t->key.ptr[0] <= '9');
        size_t k = put_name(p, reserved ? "tag_" : NULL, t->key.ptr, t->key.len, NULL, 0, false);
        size_t v = put_value(p, t->value.ptr, t->value.len);
        if (k == PR_NONE || v == PR_NONE)
            return -1;
        p->labels[first + n++] = (struct pr_label){k, v};
    }
    size_t kept = labels_sort_unique(p, p->labels + first, n);
    uint64_t base = FNV_BASIS;
    for (size_t i = 0; i < kept; i++) {
        const char *lk = str_at(p, p->labels[first + i].key_off);
        const char *lv = str_at(p, p->labels[first + i].val_off);
        base = fnv(base, lk, strlen(lk) + 1);
        base = fnv(base, lv, strlen(lv) + 1);
    }
    int rc = add_fields(p, r, ts_ns, first, kept, base, false, strs_mark);
    if (rc == 0 && p->n_labels == first + kept && raw_len > 0)
        cache_put(p, dv, raw, raw_len, first, kept, base); /* its labels stay in the batch */
    return rc;
}

static int cmp_pb_sample(const void *a, const void *b)
{
    const Prometheus__Sample *x = *(Prometheus__Sample *const *)a;
    const Prometheus__Sample *y = *(Prometheus__Sample *const *)b;
    return x->timestamp < y->timestamp ? -1 : x->timestamp > y->timestamp;
}

static int pb_reserve(struct fwd_prom *p, size_t n_series, size_t n_labels, size_t n_samples)
{
    size_t c_ts = p->cap_pb_ts, c_l = p->cap_pb_labels, c_s = p->cap_pb_samples;
    if (grow((void **)&p->pb_ts, &c_ts, n_series, sizeof(*p->pb_ts)) != 0)
        return -1;
    c_ts = p->cap_pb_ts;
    if (grow((void **)&p->pb_ts_ptrs, &c_ts, n_series, sizeof(*p->pb_ts_ptrs)) != 0)
        return -1;
    p->cap_pb_ts = c_ts;
    if (grow((void **)&p->pb_labels, &c_l, n_labels, sizeof(*p->pb_labels)) != 0)
        return -1;
    c_l = p->cap_pb_labels;
    if (grow((void **)&p->pb_label_ptrs, &c_l, n_labels, sizeof(*p->pb_label_ptrs)) != 0)
        return -1;
    p->cap_pb_labels = c_l;
    if (grow((void **)&p->pb_samples, &c_s, n_samples, sizeof(*p->pb_samples)) != 0)
        return -1;
    c_s = p->cap_pb_samples;
    if (grow((void **)&p->pb_sample_ptrs, &c_s, n_samples, sizeof(*p->pb_sample_ptrs)) != 0)
        return -1;
    p->cap_pb_samples = c_s;
    return 0;
}

int fwd_prom_finish(struct fwd_prom *p, struct ferry_buf *body)
{
    ferry_buf_reset(body);
    size_t n_series = 0, n_label_ptrs = 0;
    for (size_t i = 0; i < p->n_series; i++)
        if (p->series[i].n_samples > 0) {
            n_series++;
            n_label_ptrs += p->series[i].n_labels + 1;
        }
    if (pb_reserve(p, n_series, n_label_ptrs, p->n_samples) != 0)
        return -1;
    Prometheus__TimeSeries *ts = p->pb_ts;
    Prometheus__Label *labels = p->pb_labels;
    Prometheus__Sample *samples = p->pb_samples;
    size_t t_i = 0, l_i = 0, s_i = 0;
    /* One TimeSeries per series, in the order the batch first saw them. */
    for (size_t i = 0; i < p->n_series; i++) {
        const struct pr_series *sr = &p->series[i];
        if (sr->n_samples == 0)
            continue;
        Prometheus__TimeSeries *t = &ts[t_i];
        prometheus__time_series__init(t);
        p->pb_ts_ptrs[t_i++] = t;
        /* labels: __name__ merged into the sorted record labels */
        t->labels = &p->pb_label_ptrs[l_i];
        bool name_done = false;
        for (size_t k = 0; k <= sr->n_labels; k++) {
            const struct pr_label *rl = k < sr->n_labels ? &p->labels[sr->label_first + k] : NULL;
            if (!name_done && (rl == NULL || strcmp("__name__", str_at(p, rl->key_off)) < 0)) {
                prometheus__label__init(&labels[l_i]);
                labels[l_i].name = (char *)"__name__";
                labels[l_i].value = (char *)str_at(p, sr->name_off);
                p->pb_label_ptrs[l_i] = &labels[l_i];
                l_i++;
                t->n_labels++;
                name_done = true;
            }
            if (rl == NULL)
                break;
            prometheus__label__init(&labels[l_i]);
            labels[l_i].name = (char *)str_at(p, rl->key_off);
            labels[l_i].value = (char *)str_at(p, rl->val_off);
            p->pb_label_ptrs[l_i] = &labels[l_i];
            l_i++;
            t->n_labels++;
        }
        t->samples = &p->pb_sample_ptrs[s_i];
        t->n_samples = sr->n_samples;
        for (size_t k = sr->first; k != PR_NONE; k = p->samples[k].next) {
            prometheus__sample__init(&samples[s_i]);
            samples[s_i].value = p->samples[k].value;
            samples[s_i].timestamp = p->samples[k].ts_ms;
            p->pb_sample_ptrs[s_i] = &samples[s_i];
            s_i++;
        }
        /* Samples of one series go in time order; records of one device normally arrive in
         * order, so only a series that did not is sorted. */
        if (sr->unsorted)
            qsort(t->samples, t->n_samples, sizeof(*t->samples), cmp_pb_sample);
    }
    Prometheus__WriteRequest req = PROMETHEUS__WRITE_REQUEST__INIT;
    req.n_timeseries = n_series;
    req.timeseries = p->pb_ts_ptrs;
    size_t len = prometheus__write_request__get_packed_size(&req);
    ferry_buf_reset(&p->packed);
    if (ferry_buf_reserve(&p->packed, len ? len : 1) != 0)
        return -1;
    prometheus__write_request__pack(&req, p->packed.data);
    size_t max = snappy_max_compressed_length(len);
    if (ferry_buf_reserve(body, max) != 0)
        return -1;
    size_t out_len = max;
    if (snappy_compress((const char *)p->packed.data, len, (char *)body->data, &out_len) !=
        SNAPPY_OK)
        return -1;
    body->len = out_len;
    return 0;
}
