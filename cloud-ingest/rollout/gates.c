/*
 * gates.c - metric gates and the before/after comparison of a rollout, on top of the metric
 * comparison of cloud-ingest/query/compare.h: which devices are "updated" (members of started
 * waves that committed the release, switched at their commit on corrected device time) and
 * which are the control group (eligible devices in no started wave).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cloud-ingest/query/compare.h"
#include "cloud-ingest/rollout/rollout_int.h"
#include "cloud-ingest/selector.h"
#include "common/util.h"

int64_t rollout_compare_window_ns(const struct rollout *r)
{
    const int64_t minute = 60LL * 1000000000LL;
    return r->soak_ns > minute ? r->soak_ns : minute;
}

struct devlist {
    struct compare_device *v;
    size_t n, cap;
};

static int devlist_add(struct devlist *l, const char *id, int64_t switched_ns)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct compare_device *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    char *copy = strdup(id);
    if (copy == NULL)
        return -1;
    l->v[l->n++] = (struct compare_device){copy, switched_ns};
    return 0;
}

void rollout_devlist_free(struct compare_device *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((char *)v[i].device_id);
    free(v);
}

struct control_ctx {
    const struct rollout *r;
    const struct ingest_selector *sel;
    json_t *members;
    struct devlist *l;
    size_t added;
    int rc;
};

static int control_cb(const struct ingest_device *d, void *arg)
{
    struct control_ctx *c = arg;
    if (c->added >= ROLLOUT_CONTROL_MAX)
        return 1;
    if (d->revoked || strcmp(d->device_class, c->r->device_class) != 0 ||
        json_object_get(c->members, d->id) != NULL || !ingest_selector_match(c->sel, d))
        return 0;
    if (devlist_add(c->l, d->id, 0) != 0) {
        c->rc = INGEST_STORE_ENOMEM;
        return 1;
    }
    c->added++;
    return 0;
}

int rollout_compare_devices(struct ingest_store *st, const struct rollout *r, json_t *members,
                            int wave, struct compare_device **out, size_t *n)
{
    struct devlist l = {NULL, 0, 0};
    *out = NULL;
    *n = 0;
    const char *dev;
    json_t *d;
    json_object_foreach(members, dev, d)
    {
        json_int_t w = json_integer_value(json_object_get(d, "w"));
        json_int_t switched = json_integer_value(json_object_get(d, "c"));
        const char *s = json_string_value(json_object_get(d, "s"));
        if ((wave >= 0 && w != wave) || s == NULL || strcmp(s, "committed") != 0 || switched <= 0)
            continue;
        if (devlist_add(&l, dev, switched) != 0) {
            rollout_devlist_free(l.v, l.n);
            return INGEST_STORE_ENOMEM;
        }
    }
    struct ingest_selector *sel = NULL;
    char why[256];
    int rc = ingest_selector_parse(r->selector, &sel, why, sizeof(why));
    struct control_ctx c = {r, sel, members, &l, 0, 0};
    if (rc == 0)
        rc = ingest_store_device_list(st, control_cb, &c);
    if (rc == 0)
        rc = c.rc;
    ingest_selector_free(sel);
    if (rc != 0) {
        rollout_devlist_free(l.v, l.n);
        return rc;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

int rollout_metric_gate(struct ingest_store *st, const struct rollout *r,
                        const struct rollout_gate *g, const struct compare_device *devs, size_t n,
                        int64_t now_ns, struct rollout_gate_result *res, char *err, size_t err_len)
{
    struct compare_gate *cg = NULL;
    struct compare_result cr;
    *res = (struct rollout_gate_result){NAN, NAN, false};
    if (compare_gate_parse(g->text, &cg, err, err_len) != 0)
        return -1;
    int rc = compare_devices(st, compare_gate_metric(cg), devs, n, rollout_compare_window_ns(r),
                             now_ns, &cr, err, err_len);
    if (rc == 0)
        rc = compare_gate_eval(cg, &cr, &res->value, &res->threshold, &res->pass, err, err_len);
    compare_gate_free(cg);
    return rc == 0 ? 0 : -1;
}

static json_t *dist_json(const struct compare_dist *d)
{
    json_t *o =
        json_pack("{s:I, s:I}", "count", (json_int_t)d->count, "devices", (json_int_t)d->devices);
    json_object_set_new(o, "mean", isfinite(d->mean) ? json_real(d->mean) : json_null());
    json_object_set_new(o, "p50", isfinite(d->p50) ? json_real(d->p50) : json_null());
    json_object_set_new(o, "p95", isfinite(d->p95) ? json_real(d->p95) : json_null());
    return o;
}

static bool have_metric(json_t *list, const char *m)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) if (strcmp(json_string_value(v), m) == 0) return true;
    return false;
}

int rollout_compare_json(struct ingest_store *st, const char *id, int64_t now_ns, json_t **out,
                         char *err, size_t err_len)
{
    struct rollout r;
    json_t *members = NULL, *metrics = json_array(), *rows = json_array();
    struct compare_device *devs = NULL;
    size_t n = 0;
    *out = NULL;
    int rc = metrics != NULL && rows != NULL ? 0 : INGEST_STORE_ENOMEM;
    if (rc == 0)
        rc = rollout_load(st, id, now_ns, &r, NULL, err, err_len);
    if (rc == 0)
        rc = rollout_load_devices(st, id, &members);
    if (rc == 0)
        rc = rollout_compare_devices(st, &r, members, -1, &devs, &n);
    for (size_t g = 0; rc == 0 && g < r.n_gates; g++) {
        struct compare_gate *cg = NULL;
        char why[256];
        if (r.gates[g].kind == RGATE_METRIC &&
            compare_gate_parse(r.gates[g].text, &cg, why, sizeof(why)) == 0 &&
            !have_metric(metrics, compare_gate_metric(cg)))
            json_array_append_new(metrics, json_string(compare_gate_metric(cg)));
        compare_gate_free(cg);
    }
    /* then error_logs and the benchmark's default metrics */
    char defaults[] = COMPARE_ERROR_LOGS "," COMPARE_DEFAULT_METRICS;
    for (char *save = NULL, *m = strtok_r(defaults, ",", &save); rc == 0 && m != NULL;
         m = strtok_r(NULL, ",", &save))
        if (!have_metric(metrics, m))
            json_array_append_new(metrics, json_string(m));
    size_t updated = 0;
    for (size_t i = 0; i < n; i++)
        updated += devs[i].switched_ns > 0;
    size_t i;
    json_t *m;
    json_array_foreach(metrics, i, m)
    {
        if (rc != 0)
            break;
        struct compare_result cr;
        char why[256] = "";
        int e = compare_devices(st, json_string_value(m), devs, n, rollout_compare_window_ns(&r),
                                now_ns, &cr, why, sizeof(why));
        if (e != 0) {
            json_array_append_new(rows, json_pack("{s:O, s:s}", "metric", m, "error", why));
            continue;
        }
        json_t *row = json_pack("{s:O, s:o, s:o, s:o, s:b, s:b, s:I, s:b}", "metric", m, "before",
                                dist_json(&cr.before), "after", dist_json(&cr.after), "control",
                                dist_json(&cr.control), "significant_before_after",
                                cr.significant_before_after, "significant_after_control",
                                cr.significant_after_control, "scanned", (json_int_t)cr.scanned,
                                "truncated", cr.truncated);
        json_object_set_new(row, "p_before_after",
                            isfinite(cr.p_before_after) ? json_real(cr.p_before_after)
                                                        : json_null());
        json_object_set_new(row, "p_after_control",
                            isfinite(cr.p_after_control) ? json_real(cr.p_after_control)
                                                         : json_null());
        json_array_append_new(rows, row);
    }
    if (rc == 0)
        *out = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:o}", "id", r.id, "component",
                         r.component, "version", r.version, "updated_devices", (json_int_t)updated,
                         "control_devices", (json_int_t)(n - updated), "window_ns",
                         (json_int_t)rollout_compare_window_ns(&r), "metrics", rows);
    else
        json_decref(rows);
    json_decref(metrics);
    json_decref(members);
    rollout_devlist_free(devs, n);
    if (rc == 0 && *out == NULL)
        rc = INGEST_STORE_ENOMEM;
    return rc;
}
