/*
 * records.c - the rollout keys in the store (rollout.h, "Store keys") and what every reader
 * builds from them: a rollout with its pending operator commands applied, its device table, the
 * status document. Shared by the evaluator, the offerer, the CLI and the API.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/ingest.h"
#include "cloud-ingest/release/release.h"
#include "cloud-ingest/rollout/rollout_int.h"
#include "cloud-ingest/selector.h"
#include "common/utf8.h"
#include "common/buf.h"
#include "common/util.h"

/* ---- Selectors ------------------------------------------------------------------------------ */

int rollout_selector_check(const char *text, char *err, size_t err_len)
{
    struct ingest_selector *sel = NULL;
    char why[512] = "";
    if (text != NULL && !ferry_utf8_valid(text, strlen(text))) {
        snprintf(err, err_len, "--selector: not valid UTF-8");
        return -1;
    }
    int rc = ingest_selector_parse(text, &sel, why, sizeof(why));
    ingest_selector_free(sel);
    if (rc != 0) {
        snprintf(err, err_len, "--selector: %s", why[0] ? why : ingest_store_strerror(rc));
        return -1;
    }
    return 0;
}

bool rollout_selector_match(const char *text, const struct ingest_device *dev)
{
    if (text == NULL || text[0] == '\0')
        return true;
    struct ingest_selector *sel = NULL;
    char why[256];
    bool match =
        ingest_selector_parse(text, &sel, why, sizeof(why)) == 0 && ingest_selector_match(sel, dev);
    ingest_selector_free(sel); /* a stored selector was checked at create: it parses */
    return match;
}

/* ---- Loading -------------------------------------------------------------------------------- */

struct ops_ctx {
    json_t *keys;
    json_t *ops; /* [{"op": name, "ns": time}] in key order */
};

static int op_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct ops_ctx *c = arg;
    json_t *o = json_loadb(value, len, 0, NULL);
    if (o != NULL)
        json_array_append_new(c->ops, o);
    json_array_append_new(c->keys, json_string(key));
    return 0;
}

int rollout_load(struct ingest_store *st, const char *id, int64_t now_ns, struct rollout *r,
                 json_t **ops_keys, char *err, size_t err_len)
{
    char key[INGEST_KV_KEY_MAX + 1];
    struct ferry_buf b = FERRY_BUF_INIT;
    if (ops_keys != NULL)
        *ops_keys = NULL;
    snprintf(key, sizeof(key), "rollout/%s", id);
    int rc = ingest_store_kv_get(st, key, &b);
    if (rc != 0) {
        snprintf(err, err_len, "rollout %s: %s", id, ingest_store_strerror(rc));
        ferry_buf_free(&b);
        return rc;
    }
    rc = rollout_from_json(b.data, b.len, r, err, err_len) == 0 ? 0 : INGEST_STORE_EINVAL;
    ferry_buf_free(&b);
    if (rc != 0)
        return rc;
    struct ops_ctx c = {json_array(), json_array()};
    snprintf(key, sizeof(key), "rollop/%s/", id);
    rc = c.keys != NULL && c.ops != NULL ? ingest_store_kv_scan(st, key, 0, op_cb, &c)
                                         : INGEST_STORE_ENOMEM;
    size_t i;
    json_t *op;
    json_array_foreach(c.ops, i, op)
    {
        int o = rollout_op_parse(json_string_value(json_object_get(op, "op")));
        json_int_t at = json_integer_value(json_object_get(op, "ns"));
        char why[160];
        if (o >= 0)
            (void)rollout_apply_op(r, (enum rollout_op)o, at > 0 ? at : now_ns, why, sizeof(why));
    }
    json_decref(c.ops);
    if (rc == 0 && ops_keys != NULL)
        *ops_keys = c.keys;
    else
        json_decref(c.keys);
    return rc;
}

int rollout_command(struct ingest_store *st, const char *id, enum rollout_op op, const char *actor,
                    char *why, size_t why_len)
{
    struct rollout r;
    int64_t now = ferry_realtime_ns();
    if (rollout_load(st, id, now, &r, NULL, why, why_len) != 0)
        return -1;
    if (rollout_apply_op(&r, op, now, why, why_len) != 0)
        return -1;
    uint8_t rnd[4];
    randombytes_buf(rnd, sizeof(rnd));
    char key[INGEST_KV_KEY_MAX + 1], hex[9];
    ferry_hex_encode(rnd, sizeof(rnd), hex);
    /* time first: commands apply in the order they were given */
    snprintf(key, sizeof(key), "rollop/%s/%016" PRIx64 "-%s", id, (uint64_t)now, hex);
    json_t *o = json_pack("{s:s, s:I, s:s?}", "op", rollout_op_name(op), "ns", (json_int_t)now,
                          "actor", actor);
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    struct ingest_kv_op kv = {key, text, strlen(text), false};
    int rc = ingest_store_kv_apply(st, &kv, 1, NULL, NULL);
    free(text);
    if (rc != 0) {
        snprintf(why, why_len, "store: %s", ingest_store_strerror(rc));
        return -1;
    }
    return 0;
}

struct ids_ctx {
    json_t *list; /* [[created_ns, id]] */
};

static int ids_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct ids_ctx *c = arg;
    json_t *o = json_loadb(value, len, 0, NULL);
    json_array_append_new(c->list,
                          json_pack("[I, s]", json_integer_value(json_object_get(o, "created_ns")),
                                    key + strlen("rollout/")));
    json_decref(o);
    return 0;
}

static int by_created_desc(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_array_get(*(json_t *const *)a, 0)),
               y = json_integer_value(json_array_get(*(json_t *const *)b, 0));
    return x < y ? 1 : x > y ? -1 : 0;
}

int rollout_list_ids(struct ingest_store *st, json_t **out)
{
    struct ids_ctx c = {json_array()};
    *out = NULL;
    if (c.list == NULL)
        return INGEST_STORE_ENOMEM;
    int rc = ingest_store_kv_scan(st, "rollout/", 0, ids_cb, &c);
    size_t n = json_array_size(c.list);
    json_t **v = calloc(n ? n : 1, sizeof(*v));
    json_t *ids = json_array();
    if (rc == 0 && (v == NULL || ids == NULL))
        rc = INGEST_STORE_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        v[i] = json_array_get(c.list, i);
    if (rc == 0) {
        qsort(v, n, sizeof(*v), by_created_desc);
        for (size_t i = 0; i < n; i++)
            json_array_append(ids, json_array_get(v[i], 1));
        *out = ids;
        ids = NULL;
    }
    free(v);
    json_decref(ids);
    json_decref(c.list);
    return rc;
}

struct table_ctx {
    json_t *obj;
    size_t prefix_len;
};

static int table_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct table_ctx *c = arg;
    json_t *v = json_loadb(value, len, 0, NULL);
    if (v != NULL)
        json_object_set_new(c->obj, key + c->prefix_len, v);
    return 0;
}

static int load_table(struct ingest_store *st, const char *kind, const char *id, json_t **out)
{
    char prefix[INGEST_KV_KEY_MAX + 1];
    snprintf(prefix, sizeof(prefix), "%s/%s/", kind, id);
    struct table_ctx c = {json_object(), strlen(prefix)};
    *out = NULL;
    if (c.obj == NULL)
        return INGEST_STORE_ENOMEM;
    int rc = ingest_store_kv_scan(st, prefix, 0, table_cb, &c);
    if (rc != 0) {
        json_decref(c.obj);
        return rc;
    }
    *out = c.obj;
    return 0;
}

int rollout_load_devices(struct ingest_store *st, const char *id, json_t **out)
{
    return load_table(st, "rolldev", id, out);
}

int rollout_load_offers(struct ingest_store *st, const char *id, json_t **out)
{
    return load_table(st, "rolloffer", id, out);
}

int rollout_manifest_path(const struct ingest_config *cfg, const char *id, bool rollback, char *out,
                          size_t out_len)
{
    char dir[1200];
    if (ingest_release_dir(cfg, dir, sizeof(dir)) != 0)
        return -1;
    int n = snprintf(out, out_len, "%s/rollouts/%s/%s", dir, id,
                     rollback ? "rollback.json" : "manifest.json");
    return n > 0 && (size_t)n < out_len ? 0 : -1;
}

/* ---- Status --------------------------------------------------------------------------------- */

int rollout_status_json(struct ingest_store *st, const char *id, int64_t now_ns, json_t **out,
                        char *err, size_t err_len)
{
    struct rollout r;
    json_t *devs = NULL, *offers = NULL;
    *out = NULL;
    int rc = rollout_load(st, id, now_ns, &r, NULL, err, err_len);
    if (rc == 0)
        rc = rollout_load_devices(st, id, &devs);
    if (rc == 0)
        rc = rollout_load_offers(st, id, &offers);
    json_t *o = rc == 0 ? rollout_to_json_obj(&r) : NULL;
    if (rc == 0 && o == NULL)
        rc = INGEST_STORE_ENOMEM;
    if (rc != 0) {
        json_decref(devs);
        json_decref(offers);
        return rc;
    }
    uint64_t counts[ROLLOUT_WAVES_MAX][RDEV_COUNT];
    memset(counts, 0, sizeof(counts));
    json_t *table = json_array();
    const char *dev;
    json_t *d;
    json_object_foreach(devs, dev, d)
    {
        json_int_t w = json_integer_value(json_object_get(d, "w"));
        int s = rollout_dev_parse(json_string_value(json_object_get(d, "s")));
        if (w < 0 || (size_t)w >= r.n_waves || s < 0)
            continue;
        /* an offer the evaluator has not seen yet */
        if (s == RDEV_PENDING && json_object_get(offers, dev) != NULL)
            s = RDEV_OFFERED;
        counts[w][s]++;
        json_array_append_new(table,
                              json_pack("{s:s, s:I, s:s, s:I}", "device", dev, "wave", w, "state",
                                        rollout_dev_name((enum rollout_dev)s), "since_ns",
                                        json_integer_value(json_object_get(d, "t"))));
    }
    json_t *waves = json_array();
    for (size_t k = 0; k < r.n_waves; k++) {
        json_t *c = json_object(), *gates = json_array();
        uint64_t total = 0;
        for (int s = 0; s < RDEV_COUNT; s++) {
            json_object_set_new(c, rollout_dev_name((enum rollout_dev)s),
                                json_integer((json_int_t)counts[k][s]));
            total += counts[k][s];
        }
        struct rollout_gate_result res[ROLLOUT_GATES_MAX];
        bool started = k <= r.wave;
        if (r.decided[k])
            memcpy(res, r.results[k], sizeof(res));
        else
            rollout_gates_eval(&r, counts[k], res);
        for (size_t g = 0; started && g < r.n_gates; g++)
            json_array_append_new(
                gates,
                json_pack("{s:s, s:o, s:o, s:b, s:b}", "gate", r.gates[g].text, "value",
                          isfinite(res[g].value) ? json_real(res[g].value) : json_null(),
                          "threshold",
                          isfinite(res[g].threshold) ? json_real(res[g].threshold) : json_null(),
                          "pass", res[g].pass, "decided", r.decided[k]));
        char t[32];
        rollout_wave_text(&r.waves[k], t, sizeof(t));
        json_array_append_new(
            waves, json_pack("{s:I, s:s, s:b, s:I, s:I, s:o, s:o}", "index", (json_int_t)k,
                             "target", t, "started", started, "started_ns",
                             (json_int_t)(started ? r.wave_started_ns[k] : 0), "devices",
                             (json_int_t)total, "counts", c, "gates", gates));
    }
    json_object_set_new(o, "wave_status", waves);
    json_object_set_new(o, "devices", table);
    json_object_set_new(o, "offered", json_integer((json_int_t)json_object_size(offers)));
    json_decref(devs);
    json_decref(offers);
    *out = o;
    return 0;
}
