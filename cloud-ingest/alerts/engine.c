/*
 * engine.c - the alert engine: follows the store in commit order, applies the rules to every
 * record on device time, checks offline rules against the devices' last-seen times, and commits
 * the changed alert states with the notifications they raise and the cursor in one transaction.
 *
 * Invariants:
 *   1. The stored alert states and queue are those produced by applying the rules to exactly the
 *      records before the stored cursor "alerts": kv_apply() commits all three together, and a
 *      failed commit reloads everything from the store (nothing half-applied stays in memory).
 *      So a restart neither forgets an alert nor notifies one twice.
 *   2. Only the holder of the store lease "alerts" evaluates or notifies (several ingests on one
 *      PostgreSQL: one notification per alert). The lease is renewed every round; a round whose
 *      renewal failed changes nothing.
 *   3. The evaluation thread alone touches the state table; the notification thread reads the
 *      queue from the store only. Counters are atomics.
 *
 * Store keys (the ingest's key/value table):
 *   alert/<rule>/<device>/<series id>   the state of one alert as JSON (below)
 *   alertq/<16 hex digits>              one queued notification: receiver, event, alert JSON
 * The series id is 16 hex digits of BLAKE2b over the series' labels, so tag values of any bytes
 * never reach a key.
 */
#include "cloud-ingest/alerts/alerts.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/alerts/alerts_int.h"
#include "cloud-ingest/selector.h"
#include "cloud-ingest/store.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "transport/record.h"

#define READ_LIMIT 4096 /* records per store read */
#define OFFLINE_CHECK_NS 5000000000LL
#define CLASS_CACHE_MAX 65536
#define CLASS_CACHE_NS 60000000000LL /* which rules apply to a device: read again after this */
#define ALERTS_MIN_GAP_NS 50000000LL /* 50 ms between rounds at most once commits wake them */

/* ---- The state table (evaluation thread only) ---------------------------------------------- */

static uint64_t key_hash(const char *key)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

static struct alerts_entry *table_find(struct alerts *a, const char *key)
{
    if (a->cap == 0)
        return NULL;
    for (size_t i = key_hash(key) & (a->cap - 1);; i = (i + 1) & (a->cap - 1)) {
        struct alerts_entry *e = a->table[i];
        if (e == NULL)
            return NULL;
        if (strcmp(e->key, key) == 0)
            return e;
    }
}

static int table_grow(struct alerts *a)
{
    size_t cap = a->cap ? a->cap * 2 : 256;
    struct alerts_entry **t = calloc(cap, sizeof(*t));
    if (t == NULL)
        return -1;
    for (size_t i = 0; i < a->cap; i++) {
        struct alerts_entry *e = a->table[i];
        if (e == NULL)
            continue;
        size_t j = key_hash(e->key) & (cap - 1);
        while (t[j] != NULL)
            j = (j + 1) & (cap - 1);
        t[j] = e;
    }
    free(a->table);
    a->table = t;
    a->cap = cap;
    return 0;
}

static int table_insert(struct alerts *a, struct alerts_entry *e)
{
    if ((a->n + 1) * 2 > a->cap && table_grow(a) != 0)
        return -1;
    size_t j = key_hash(e->key) & (a->cap - 1);
    while (a->table[j] != NULL)
        j = (j + 1) & (a->cap - 1);
    a->table[j] = e;
    a->n++;
    return 0;
}

static void entry_free(struct alerts_entry *e)
{
    if (e == NULL)
        return;
    json_decref(e->labels);
    free(e);
}

static void table_clear(struct alerts *a)
{
    for (size_t i = 0; i < a->cap; i++)
        entry_free(a->table[i]);
    free(a->table);
    a->table = NULL;
    a->cap = 0;
    a->n = 0;
    a->dirty_n = 0;
}

/* Series of (rule, device) that are pending or firing. A sample that does not breach its rule
 * matters only to those, so for every other one nothing is built, looked up or stored: a fleet's
 * healthy series cost one comparison per rule. */
static json_int_t active_count(struct alerts *a, size_t rule, const char *device)
{
    char k[96];
    snprintf(k, sizeof(k), "%zu/%s", rule, device);
    return json_integer_value(json_object_get(a->active, k));
}

static void active_add(struct alerts *a, size_t rule, const char *device, json_int_t delta)
{
    char k[96];
    snprintf(k, sizeof(k), "%zu/%s", rule, device);
    json_int_t n = json_integer_value(json_object_get(a->active, k)) + delta;
    if (n <= 0)
        json_object_del(a->active, k);
    else
        json_object_set_new(a->active, k, json_integer(n));
}

static bool is_active(const struct alerts_state *st)
{
    return st->pending || st->firing;
}

/* ---- Serialization ------------------------------------------------------------------------- */

static json_t *state_json(const struct alerts *a, const struct alerts_entry *e)
{
    const struct alerts_rule *r = &a->cfg.rules[e->rule];
    const struct alerts_state *s = &e->st;
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:O, s:s, s:b, s:b, s:b, s:b, s:I, s:I, s:I, s:I, s:I,"
        " s:I, s:I, s:f}",
        "key", e->key, "rule", r->name, "kind", alerts_kind_name(r->kind), "device", e->device,
        "labels", e->labels, "severity", r->severity, "firing", s->firing, "pending", s->pending,
        "recovering", s->recovering, "late", s->late, "pending_since_ns",
        (json_int_t)s->pending_since_ns, "recovering_since_ns", (json_int_t)s->recovering_since_ns,
        "last_sample_ns", (json_int_t)s->last_sample_ns, "starts_ns", (json_int_t)s->starts_ns,
        "ends_ns", (json_int_t)s->ends_ns, "arrived_ns", (json_int_t)s->arrived_ns, "notified_ns",
        (json_int_t)s->notified_ns, "value", s->value == s->value ? s->value : 0.0);
    if (o != NULL && r->kind == ALERTS_RULE_BACKLOG)
        json_object_set_new(o, "base", json_real(s->base == s->base ? s->base : 0.0));
    if (o != NULL && r->kind == ALERTS_RULE_GAP)
        json_object_set_new(o, "seen", json_integer((json_int_t)s->seen));
    if (o != NULL && e->reason[0])
        json_object_set_new(o, "reason", alerts_json_text(e->reason, strlen(e->reason)));
    return o;
}

static int64_t jint(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

/* Loads one stored state; entries of rules no longer configured are skipped. */
static int load_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct alerts *a = arg;
    json_error_t jerr;
    json_t *o = json_loadb(value, len, 0, &jerr);
    const char *rule = o ? json_string_value(json_object_get(o, "rule")) : NULL;
    const char *device = o ? json_string_value(json_object_get(o, "device")) : NULL;
    json_t *labels = o ? json_object_get(o, "labels") : NULL;
    int ri = rule ? alerts_rule_index(&a->cfg, rule) : -1;
    if (ri < 0 || device == NULL || !json_is_object(labels) || strlen(device) > 64) {
        if (o == NULL || rule == NULL)
            log_warn("alerts", "stored alert %s unreadable: skipped", key);
        json_decref(o);
        return 0;
    }
    struct alerts_entry *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        json_decref(o);
        return -1;
    }
    ferry_strlcpy(e->key, key, sizeof(e->key));
    ferry_strlcpy(e->device, device, sizeof(e->device));
    e->rule = (size_t)ri;
    e->labels = json_incref(labels);
    struct alerts_state *s = &e->st;
    s->firing = json_is_true(json_object_get(o, "firing"));
    s->pending = json_is_true(json_object_get(o, "pending"));
    s->recovering = json_is_true(json_object_get(o, "recovering"));
    s->late = json_is_true(json_object_get(o, "late"));
    s->pending_since_ns = jint(o, "pending_since_ns");
    s->recovering_since_ns = jint(o, "recovering_since_ns");
    s->last_sample_ns = jint(o, "last_sample_ns");
    s->starts_ns = jint(o, "starts_ns");
    s->ends_ns = jint(o, "ends_ns");
    s->arrived_ns = jint(o, "arrived_ns");
    s->notified_ns = jint(o, "notified_ns");
    s->value = json_number_value(json_object_get(o, "value"));
    s->base = json_number_value(json_object_get(o, "base"));
    s->seen = (uint64_t)json_integer_value(json_object_get(o, "seen"));
    const char *reason = json_string_value(json_object_get(o, "reason"));
    if (reason != NULL)
        ferry_strlcpy(e->reason, reason, sizeof(e->reason));
    json_decref(o);
    if (table_insert(a, e) != 0) {
        entry_free(e);
        return -1;
    }
    if (s->firing)
        atomic_fetch_add(&a->firing, 1);
    if (is_active(s) && a->cfg.rules[e->rule].kind == ALERTS_RULE_THRESHOLD)
        active_add(a, e->rule, e->device, 1);
    return 0;
}

static int queue_tail_cb(const char *key, const void *value, size_t len, void *arg)
{
    uint64_t *next = arg;
    uint64_t seq;
    (void)value;
    (void)len;
    if (strlen(key) == 7 + 16 && sscanf(key + 7, "%16" SCNx64, &seq) == 1 && seq >= *next)
        *next = seq + 1;
    return 0;
}

/* (Re)loads the state table, the cursor and the queue's next sequence from the store. */
static int load(struct alerts *a)
{
    table_clear(a);
    json_object_clear(a->active);
    atomic_store(&a->firing, 0);
    int rc = ingest_store_kv_scan(a->store, "alert/", 0, load_cb, a);
    if (rc != 0)
        return rc;
    rc = ingest_store_cursor_get(a->store, ALERTS_CURSOR, &a->cursor);
    if (rc != 0 && rc != INGEST_STORE_ENOTFOUND)
        return rc;
    uint64_t next = 0;
    rc = ingest_store_kv_scan(a->store, "alertq/", 0, queue_tail_cb, &next);
    if (rc != 0)
        return rc;
    a->queue_next = next;
    a->loaded = true;
    return 0;
}

/* ---- Raising notifications ----------------------------------------------------------------- */

static void mark_dirty(struct alerts *a, struct alerts_entry *e)
{
    if (!e->dirty) {
        e->dirty = true;
        a->dirty_n++;
    }
}

/* Queues a notification of `e` (event "firing" or "resolved") for each receiver in `mask`. */
static int enqueue(struct alerts *a, struct alerts_entry *e, const char *event, uint32_t mask,
                   int64_t now_ns)
{
    const struct alerts_rule *r = &a->cfg.rules[e->rule];
    for (size_t i = 0; i < a->cfg.n_receivers; i++) {
        if (!(mask & (1u << i)))
            continue;
        json_t *alert = state_json(a, e);
        json_t *q = alert
                        ? json_pack("{s:s, s:s, s:o, s:I}", "receiver", a->cfg.receivers[i].name,
                                    "event", event, "alert", alert, "queued_ns", (json_int_t)now_ns)
                        : NULL;
        char *text = q ? json_dumps(q, JSON_COMPACT) : NULL;
        json_decref(q);
        if (text == NULL)
            return INGEST_STORE_ENOMEM;
        struct alerts_pending *p = realloc(a->pending, (a->pending_n + 1) * sizeof(*p));
        if (p == NULL) {
            free(text);
            return INGEST_STORE_ENOMEM;
        }
        a->pending = p;
        snprintf(p[a->pending_n].key, sizeof(p[a->pending_n].key), "alertq/%016" PRIx64,
                 a->queue_next++);
        p[a->pending_n].value = text;
        a->pending_n++;
    }
    e->st.notified_ns = now_ns;
    (void)r;
    return 0;
}

/* True when a silence in force at now_ns covers (rule, device). */
static bool silenced(const struct alerts *a, const char *rule, const char *device, int64_t now_ns)
{
    size_t i;
    json_t *s;
    json_array_foreach(a->silences, i, s)
    {
        const char *sr = json_string_value(json_object_get(s, "rule"));
        const char *sd = json_string_value(json_object_get(s, "device"));
        if (now_ns >= jint(s, "starts_ns") && now_ns < jint(s, "ends_ns") &&
            (sr == NULL || sr[0] == '\0' || strcmp(sr, rule) == 0) &&
            (sd == NULL || sd[0] == '\0' || strcmp(sd, device) == 0))
            return true;
    }
    return false;
}

static int silence_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct alerts *a = arg;
    json_error_t jerr;
    json_t *o = json_loadb(value, len, 0, &jerr);
    (void)key;
    if (o != NULL && json_array_append_new(a->silences, o) != 0)
        return 1;
    return 0;
}

/* Re-reads the silences (an operator adds them with `ferry-ingest alerts silence`). */
static int load_silences(struct alerts *a)
{
    json_array_clear(a->silences);
    return ingest_store_kv_scan(a->store, "silence/", 0, silence_cb, a);
}

static int on_change(struct alerts *a, struct alerts_entry *e, enum alerts_change ch,
                     int64_t now_ns)
{
    if (ch == ALERTS_NONE)
        return 0;
    mark_dirty(a, e);
    const struct alerts_rule *r = &a->cfg.rules[e->rule];
    if (ch == ALERTS_FIRED) {
        atomic_fetch_add(&a->firing, 1);
        atomic_fetch_add(&a->fired_total, 1);
        if (e->st.late)
            atomic_fetch_add(&a->late_total, 1);
        bool quiet = silenced(a, r->name, e->device, now_ns);
        log_info("alerts", "%s fired for device %s%s%s", r->name, e->device,
                 e->st.late ? " (late: from data that arrived after the fact)" : "",
                 quiet ? " (silenced: not notified)" : "");
        return quiet ? 0 : enqueue(a, e, "firing", r->receivers, now_ns);
    }
    atomic_fetch_sub(&a->firing, 1);
    atomic_fetch_add(&a->resolved_total, 1);
    bool quiet = silenced(a, r->name, e->device, now_ns);
    log_info("alerts", "%s resolved for device %s%s", r->name, e->device,
             quiet ? " (silenced: not notified)" : "");
    return quiet ? 0 : enqueue(a, e, "resolved", r->receivers, now_ns);
}

/* The entry of (rule, device, labels), created idle when missing. Takes a reference to `labels`
 * only when it creates the entry. */
static struct alerts_entry *entry_get(struct alerts *a, size_t rule, const char *device,
                                      json_t *labels)
{
    char *canon = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
    if (canon == NULL)
        return NULL;
    uint8_t h[8];
    crypto_generichash(h, sizeof(h), (const uint8_t *)canon, strlen(canon), NULL, 0);
    free(canon);
    char hex[17];
    ferry_hex_encode(h, sizeof(h), hex);
    char key[INGEST_KV_KEY_MAX + 1];
    snprintf(key, sizeof(key), "alert/%s/%s/%s", a->cfg.rules[rule].name, device, hex);
    struct alerts_entry *e = table_find(a, key);
    if (e != NULL)
        return e;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    ferry_strlcpy(e->key, key, sizeof(e->key));
    ferry_strlcpy(e->device, device, sizeof(e->device));
    e->rule = rule;
    e->labels = json_incref(labels);
    if (table_insert(a, e) != 0) {
        entry_free(e);
        return NULL;
    }
    return e;
}

/* ---- Device classes (for rules limited to one) ---------------------------------------------- */

/* True when rule `r` applies to device `d`: its class (device_class) and its selector. */
static bool rule_applies(const struct alerts *a, const struct alerts_rule *r,
                         const struct ingest_device *d)
{
    size_t ri = (size_t)(r - a->cfg.rules);
    return (r->device_class[0] == '\0' || strcmp(r->device_class, d->device_class) == 0) &&
           (a->selectors[ri] == NULL || ingest_selector_match(a->selectors[ri], d));
}

/* The same for a device known by its id, from a cache of which rules apply to each device (one
 * store read per device; the cache starts over every CLASS_CACHE_NS, so that changed labels
 * take effect within a minute). */
static bool class_matches(struct alerts *a, const struct alerts_rule *r, const char *device)
{
    if (r->device_class[0] == '\0' && a->selectors[r - a->cfg.rules] == NULL)
        return true;
    int64_t now = ferry_realtime_ns();
    if (now - a->classes_read_ns > CLASS_CACHE_NS ||
        json_object_size(a->classes) >= CLASS_CACHE_MAX) {
        json_object_clear(a->classes);
        a->classes_read_ns = now;
    }
    json_t *bits = json_object_get(a->classes, device);
    if (bits == NULL) {
        struct ingest_device d;
        if (ingest_store_device_get(a->store, device, &d) != 0)
            return false;
        uint64_t mask = 0;
        for (size_t i = 0; i < a->cfg.n_rules; i++)
            if (rule_applies(a, &a->cfg.rules[i], &d))
                mask |= 1ULL << i;
        bits = json_integer((json_int_t)mask);
        if (bits == NULL || json_object_set_new(a->classes, device, bits) != 0)
            return rule_applies(a, r, &d);
    }
    return ((uint64_t)json_integer_value(bits) >> (r - a->cfg.rules)) & 1;
}

/* ---- Applying records ---------------------------------------------------------------------- */

static json_t *tags_labels(const struct record *rec)
{
    json_t *l = json_object();
    for (size_t i = 0; l != NULL && i < rec->n_tags; i++) {
        json_t *k = alerts_json_text(rec->tags[i].key.ptr, rec->tags[i].key.len);
        json_t *v = alerts_json_text(rec->tags[i].value.ptr, rec->tags[i].value.len);
        if (k == NULL || v == NULL || json_object_set(l, json_string_value(k), v) != 0) {
            json_decref(l);
            l = NULL;
        }
        json_decref(k);
        json_decref(v);
    }
    return l;
}

/* Absent rules: the series of `rec` that a rule watches got a sample; the device's newest metric
 * time is remembered for alerts_absent_check() at the end of the round. */
static int apply_absent(struct alerts *a, const struct ingest_committed *c,
                        const struct record *rec)
{
    json_t *newest = json_object_get(a->newest, c->device_id);
    if (newest == NULL || c->ts_corrected_ns > (int64_t)json_integer_value(newest)) {
        if (newest == NULL && json_object_size(a->newest) >= CLASS_CACHE_MAX)
            json_object_clear(a->newest); /* rebuilt from the next records */
        if (json_object_set_new(a->newest, c->device_id,
                                json_integer((json_int_t)c->ts_corrected_ns)) != 0)
            return INGEST_STORE_ENOMEM;
        a->newest_moved = true;
    }
    for (size_t ri = 0; ri < a->cfg.n_rules; ri++) {
        const struct alerts_rule *r = &a->cfg.rules[ri];
        if (r->kind != ALERTS_RULE_ABSENT || strlen(r->measurement) != rec->name.len ||
            memcmp(r->measurement, rec->name.ptr, rec->name.len) != 0)
            continue;
        bool has_field = false;
        for (size_t fi = 0; fi < rec->n_fields && !has_field; fi++)
            has_field = strlen(r->field) == rec->fields[fi].key.len &&
                        memcmp(r->field, rec->fields[fi].key.ptr, rec->fields[fi].key.len) == 0;
        if (!has_field || !class_matches(a, r, c->device_id))
            continue;
        json_t *labels = tags_labels(rec);
        struct alerts_entry *e = labels ? entry_get(a, ri, c->device_id, labels) : NULL;
        json_decref(labels);
        if (e == NULL)
            return INGEST_STORE_ENOMEM;
        int64_t before = e->st.last_sample_ns;
        enum alerts_change ch = alerts_absent_sample(&e->st, c->ts_corrected_ns);
        if (e->st.last_sample_ns != before)
            mark_dirty(a, e); /* a restart must know when the series was last seen */
        int rc = on_change(a, e, ch, c->committed_ns);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Absent rules, after a round's records: every watched series against its device's newest
 * metric time. */
static int check_absent(struct alerts *a, int64_t now_ns)
{
    if (!a->newest_moved)
        return 0;
    a->newest_moved = false;
    for (size_t i = 0; i < a->cap; i++) {
        struct alerts_entry *e = a->table[i];
        if (e == NULL || a->cfg.rules[e->rule].kind != ALERTS_RULE_ABSENT || e->st.firing)
            continue;
        json_t *newest = json_object_get(a->newest, e->device);
        if (newest == NULL)
            continue;
        enum alerts_change ch =
            alerts_absent_check(&a->cfg.rules[e->rule], &e->st, (int64_t)json_integer_value(newest),
                                now_ns, a->cfg.late_after_ns);
        int rc = on_change(a, e, ch, now_ns);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int apply_metric(struct alerts *a, const struct ingest_committed *c,
                        const struct record *rec)
{
    if (a->has_absent) {
        int rc = apply_absent(a, c, rec);
        if (rc != 0)
            return rc;
    }
    for (size_t ri = 0; ri < a->cfg.n_rules; ri++) {
        const struct alerts_rule *r = &a->cfg.rules[ri];
        if (r->kind != ALERTS_RULE_THRESHOLD || strlen(r->measurement) != rec->name.len ||
            memcmp(r->measurement, rec->name.ptr, rec->name.len) != 0)
            continue;
        for (size_t fi = 0; fi < rec->n_fields; fi++) {
            const struct record_field *f = &rec->fields[fi];
            double v;
            if (strlen(r->field) != f->key.len || memcmp(r->field, f->key.ptr, f->key.len) != 0 ||
                record_field_number(f, &v) != 0)
                continue;
            if (!alerts_compare(r->op, v, r->value) && active_count(a, ri, c->device_id) == 0)
                continue;
            if (!class_matches(a, r, c->device_id))
                continue;
            json_t *labels = tags_labels(rec);
            struct alerts_entry *e = labels ? entry_get(a, ri, c->device_id, labels) : NULL;
            json_decref(labels);
            if (e == NULL)
                return INGEST_STORE_ENOMEM;
            bool was_active = is_active(&e->st);
            enum alerts_change ch = alerts_threshold_apply(r, &e->st, v, c->ts_corrected_ns,
                                                           c->committed_ns, a->cfg.late_after_ns);
            bool now_active = is_active(&e->st);
            if (was_active != now_active)
                active_add(a, ri, c->device_id, now_active ? 1 : -1);
            /* Stored while pending or firing (a restart continues the window), and at every
             * change; an idle series that never fired is never stored. */
            if (now_active || was_active)
                mark_dirty(a, e);
            int rc = on_change(a, e, ch, c->committed_ns);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* The string value of field `key` of `rec`, copied into out[out_len] ("" when missing). */
static void field_str(const struct record *rec, const char *key, char *out, size_t out_len)
{
    out[0] = '\0';
    for (size_t i = 0; i < rec->n_fields; i++) {
        const struct record_field *f = &rec->fields[i];
        if (f->type == RECORD_FIELD_STRING && f->key.len == strlen(key) &&
            memcmp(f->key.ptr, key, f->key.len) == 0) {
            size_t n = f->v.s.len < out_len - 1 ? f->v.s.len : out_len - 1;
            memcpy(out, f->v.s.ptr, n);
            out[n] = '\0';
            return;
        }
    }
}

static int apply_event(struct alerts *a, const struct ingest_committed *c, const struct record *rec)
{
    if (rec->name.len < 4 || memcmp(rec->name.ptr, "ota.", 4) != 0)
        return 0;
    char state[64], component[128];
    field_str(rec, "state", state, sizeof(state));
    field_str(rec, "component", component, sizeof(component));
    for (size_t ri = 0; ri < a->cfg.n_rules; ri++) {
        const struct alerts_rule *r = &a->cfg.rules[ri];
        if (r->kind != ALERTS_RULE_UPDATE || !class_matches(a, r, c->device_id))
            continue;
        json_t *comp = alerts_json_text(component, strlen(component));
        json_t *labels = comp ? json_pack("{s:o}", "component", comp) : NULL;
        struct alerts_entry *e = labels ? entry_get(a, ri, c->device_id, labels) : NULL;
        json_decref(labels);
        if (e == NULL)
            return INGEST_STORE_ENOMEM;
        enum alerts_change ch = alerts_update_apply(&e->st, state, c->ts_corrected_ns,
                                                    c->committed_ns, a->cfg.late_after_ns);
        mark_dirty(a, e);
        if (ch == ALERTS_FIRED) {
            e->st.value = 0;
            ferry_strlcpy(e->reason, state, sizeof(e->reason));
        }
        int rc = on_change(a, e, ch, c->committed_ns);
        if (rc != 0)
            return rc;
    }
    return 0;
}

struct read_ctx {
    struct alerts *a;
    struct record_scratch *scratch;
    int rc;
    size_t n;
};

static int read_cb(const struct ingest_committed *c, const struct ingest_store_cursor *after,
                   void *arg)
{
    struct read_ctx *rc = arg;
    struct alerts *a = rc->a;
    rc->n++;
    struct record rec;
    if (c->packed != NULL && (c->stream == RECORD_METRIC || c->stream == RECORD_EVENT) &&
        record_unpack(c->packed, c->packed_len, rc->scratch, &rec, NULL, 0) == 0) {
        int e = c->stream == RECORD_METRIC ? apply_metric(a, c, &rec) : apply_event(a, c, &rec);
        if (e != 0) {
            rc->rc = e;
            return 1; /* stop; the cursor stays before this record */
        }
    }
    a->cursor = *after;
    return 0;
}

/* ---- Rules checked per device: offline, gap, backlog, stuck updates ------------------------ */

struct offline_ctx {
    struct alerts *a;
    int64_t now_ns;
    int rc;
};

/* Update rules with a `for`: each component's reported state against how long it has lasted. */
static int check_stuck(struct alerts *a, const struct ingest_device *d, size_t ri, int64_t now_ns)
{
    char text[INGEST_UPDATES_MAX + 1];
    int rc = ingest_store_device_updates(a->store, d->id, text, sizeof(text));
    if (rc != 0)
        return rc == INGEST_STORE_ENOTFOUND ? 0 : rc;
    json_error_t jerr;
    json_t *updates = json_loads(text, 0, &jerr);
    const char *component;
    json_t *u;
    json_object_foreach(updates, component, u)
    {
        const char *state = json_string_value(json_object_get(u, "state"));
        int64_t ts = (int64_t)json_integer_value(json_object_get(u, "ts"));
        if (state == NULL || ts <= 0)
            continue;
        json_t *labels = json_pack("{s:s}", "component", component);
        struct alerts_entry *e = labels ? entry_get(a, ri, d->id, labels) : NULL;
        json_decref(labels);
        if (e == NULL) {
            rc = INGEST_STORE_ENOMEM;
            break;
        }
        char before[sizeof(e->reason)];
        ferry_strlcpy(before, e->reason, sizeof(before));
        enum alerts_change ch =
            alerts_update_stuck_check(&a->cfg.rules[ri], &e->st, e->reason, sizeof(e->reason),
                                      state, ts + d->clock_offset_ns, now_ns);
        if (ch != ALERTS_NONE || strcmp(before, e->reason) != 0)
            mark_dirty(a, e);
        if ((rc = on_change(a, e, ch, now_ns)) != 0)
            break;
    }
    json_decref(updates);
    return rc;
}

static int offline_cb(const struct ingest_device *d, void *arg)
{
    struct offline_ctx *o = arg;
    struct alerts *a = o->a;
    if (d->revoked)
        return 0;
    for (size_t ri = 0; ri < a->cfg.n_rules; ri++) {
        const struct alerts_rule *r = &a->cfg.rules[ri];
        if (!rule_applies(a, r, d))
            continue;
        if (r->kind == ALERTS_RULE_UPDATE && r->for_ns > 0) {
            if ((o->rc = check_stuck(a, d, ri, o->now_ns)) != 0)
                return 1;
            continue;
        }
        if (r->kind == ALERTS_RULE_GAP || r->kind == ALERTS_RULE_BACKLOG) {
            uint64_t total = 0;
            for (size_t s = 0; s < RECORD_STREAM_COUNT; s++)
                total +=
                    r->kind == ALERTS_RULE_GAP ? d->streams[s].gap_records : d->streams[s].backlog;
            json_t *labels = json_object();
            struct alerts_entry *e = labels ? entry_get(a, ri, d->id, labels) : NULL;
            json_decref(labels);
            if (e == NULL) {
                o->rc = INGEST_STORE_ENOMEM;
                return 1;
            }
            struct alerts_state was = e->st;
            enum alerts_change ch = r->kind == ALERTS_RULE_GAP
                                        ? alerts_gap_check(r, &e->st, total, o->now_ns)
                                        : alerts_backlog_check(r, &e->st, total, o->now_ns);
            /* Stored when something a restart needs changed (not the time of every check). */
            if (ch != ALERTS_NONE || was.seen != e->st.seen || was.pending != e->st.pending ||
                was.value != e->st.value)
                mark_dirty(a, e);
            if ((o->rc = on_change(a, e, ch, o->now_ns)) != 0)
                return 1;
            continue;
        }
        if (r->kind != ALERTS_RULE_OFFLINE)
            continue;
        json_t *labels = json_object();
        struct alerts_entry *e = labels ? entry_get(a, ri, d->id, labels) : NULL;
        json_decref(labels);
        if (e == NULL) {
            o->rc = INGEST_STORE_ENOMEM;
            return 1;
        }
        bool was_recovering = e->st.recovering;
        int64_t was_seen = e->st.last_sample_ns;
        enum alerts_change ch = alerts_offline_check(r, &e->st, d->last_seen_ns, o->now_ns);
        if (ch != ALERTS_NONE || was_recovering != e->st.recovering ||
            (e->st.firing && was_seen != e->st.last_sample_ns))
            mark_dirty(a, e);
        if ((o->rc = on_change(a, e, ch, o->now_ns)) != 0)
            return 1;
    }
    return 0;
}

/* ---- Repeats -------------------------------------------------------------------------------- */

/* Firing alerts are notified again every repeat_interval (webhook and Slack receivers) and
 * re-sent to Alertmanager every resend_interval: Alertmanager resolves an alert by itself when
 * it is not re-sent within its resolve_timeout. */
static int repeat_firing(struct alerts *a, int64_t now_ns)
{
    uint32_t am = 0, other = 0;
    for (size_t i = 0; i < a->cfg.n_receivers; i++) {
        if (a->cfg.receivers[i].kind == ALERTS_RECEIVER_ALERTMANAGER)
            am |= 1u << i;
        else
            other |= 1u << i;
    }
    bool resend_am = am != 0 && now_ns - a->am_resent_ns >= a->cfg.resend_interval_ns;
    for (size_t i = 0; i < a->cap; i++) {
        struct alerts_entry *e = a->table[i];
        if (e == NULL || !e->st.firing)
            continue;
        uint32_t mask = a->cfg.rules[e->rule].receivers, send = 0;
        if (resend_am)
            send |= mask & am;
        if (a->cfg.repeat_interval_ns > 0 &&
            now_ns - e->st.notified_ns >= a->cfg.repeat_interval_ns)
            send |= mask & other;
        if (send == 0 || silenced(a, a->cfg.rules[e->rule].name, e->device, now_ns))
            continue;
        int64_t notified = e->st.notified_ns;
        int rc = enqueue(a, e, "firing", send, now_ns);
        if (rc != 0)
            return rc;
        if ((send & other) == 0)
            e->st.notified_ns = notified; /* an Alertmanager re-send is not a repeat */
        else
            mark_dirty(a, e);
    }
    if (resend_am)
        a->am_resent_ns = now_ns;
    return 0;
}

/* ---- Commit --------------------------------------------------------------------------------- */

static void pending_clear(struct alerts *a)
{
    for (size_t i = 0; i < a->pending_n; i++)
        free(a->pending[i].value);
    a->pending_n = 0;
}

/* Commits dirty states, queued notifications and the cursor in one transaction. */
static int commit(struct alerts *a, bool cursor_moved)
{
    if (a->dirty_n == 0 && a->pending_n == 0 && !cursor_moved)
        return 0;
    size_t n = a->dirty_n + a->pending_n, k = 0;
    struct ingest_kv_op *ops = calloc(n ? n : 1, sizeof(*ops));
    char **texts = calloc(a->dirty_n ? a->dirty_n : 1, sizeof(*texts));
    int rc = ops && texts ? 0 : INGEST_STORE_ENOMEM;
    size_t t = 0;
    for (size_t i = 0; rc == 0 && i < a->cap; i++) {
        struct alerts_entry *e = a->table[i];
        if (e == NULL || !e->dirty)
            continue;
        json_t *j = state_json(a, e);
        texts[t] = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (texts[t] == NULL) {
            rc = INGEST_STORE_ENOMEM;
            break;
        }
        ops[k++] = (struct ingest_kv_op){e->key, texts[t], strlen(texts[t]), false};
        t++;
    }
    for (size_t i = 0; rc == 0 && i < a->pending_n; i++)
        ops[k++] = (struct ingest_kv_op){a->pending[i].key, a->pending[i].value,
                                         strlen(a->pending[i].value), false};
    if (rc == 0)
        rc = ingest_store_kv_apply(a->store, ops, k, ALERTS_CURSOR, &a->cursor);
    for (size_t i = 0; i < t; i++)
        free(texts[i]);
    free(texts);
    free(ops);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < a->cap; i++)
        if (a->table[i] != NULL)
            a->table[i]->dirty = false;
    a->dirty_n = 0;
    if (a->pending_n > 0)
        alerts_notify_wake(a);
    pending_clear(a);
    return 0;
}

int alerts_eval_once(struct alerts *a, int64_t now_ns)
{
    int rc = ingest_store_lease(a->store, ALERTS_LEASE, a->owner, now_ns, a->cfg.lease_ns);
    if (rc == INGEST_STORE_EHELD) {
        a->loaded = false; /* another process evaluates; reload if the lease comes here */
        return 0;
    }
    if (rc != 0)
        return rc;
    if (!a->loaded && (rc = load(a)) != 0)
        return rc;
    if ((rc = load_silences(a)) != 0)
        return rc;
    struct read_ctx ctx = {a, a->scratch, 0, 0};
    struct ingest_store_cursor before = a->cursor;
    do {
        ctx.n = 0;
        rc = ingest_store_read_committed(a->store, &a->cursor, READ_LIMIT, read_cb, &ctx);
        if (rc == 0)
            rc = ctx.rc;
        if (rc == 0 && (a->dirty_n > 0 || a->pending_n > 0 || ctx.n == READ_LIMIT)) {
            rc = commit(a, memcmp(&before, &a->cursor, sizeof(before)) != 0);
            if (rc == 0)
                before = a->cursor; /* stored */
        }
    } while (rc == 0 && ctx.n == READ_LIMIT);
    if (rc == 0)
        rc = check_absent(a, now_ns);
    if (rc == 0 && a->has_polled && now_ns - a->offline_checked_ns >= OFFLINE_CHECK_NS) {
        struct offline_ctx o = {a, now_ns, 0};
        rc = ingest_store_device_list(a->store, offline_cb, &o);
        if (rc == 0)
            rc = o.rc;
        a->offline_checked_ns = now_ns;
    }
    if (rc == 0)
        rc = repeat_firing(a, now_ns);
    if (rc == 0)
        rc = commit(a, memcmp(&before, &a->cursor, sizeof(before)) != 0);
    if (rc != 0) {
        log_limited(10, FERRY_LOG_ERROR, "alerts", "evaluation round failed (%s): reloading",
                    ingest_store_strerror(rc));
        pending_clear(a);
        a->loaded = false; /* invariant 1: the store is the truth */
        return rc;
    }
    uint64_t behind = 0;
    int64_t next_ns = 0;
    if (ingest_store_commit_lag(a->store, &a->cursor, &behind, &next_ns) == 0)
        atomic_store(&a->records_behind, behind);
    return 0;
}

/* ---- Lifecycle ------------------------------------------------------------------------------ */

void alerts_committed(struct alerts *a)
{
    if (a == NULL || !a->started)
        return;
    pthread_mutex_lock(&a->lock);
    if (!a->committed) {
        a->committed = true;
        pthread_cond_signal(&a->cond);
    }
    pthread_mutex_unlock(&a->lock);
}

static void wait_ns(struct alerts *a, int64_t ns, bool until_commit)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    ns += until.tv_nsec;
    until.tv_sec += (time_t)(ns / 1000000000LL);
    until.tv_nsec = (long)(ns % 1000000000LL);
    while (!a->stopping && !(until_commit && a->committed))
        if (pthread_cond_timedwait(&a->cond, &a->lock, &until) != 0)
            break;
}

/* A round after every eval_interval, and sooner after a commit of this process (but at most one
 * round per ALERTS_MIN_GAP_NS, so that a busy ingest batches many commits into one round). */
static void *eval_main(void *arg)
{
    struct alerts *a = arg;
    pthread_mutex_lock(&a->lock);
    while (!a->stopping) {
        a->committed = false;
        pthread_mutex_unlock(&a->lock);
        int rc = alerts_eval_once(a, ferry_realtime_ns()); /* logged inside; retried next round */
        (void)rc;
        pthread_mutex_lock(&a->lock);
        wait_ns(a, ALERTS_MIN_GAP_NS, false);
        wait_ns(a, a->cfg.eval_interval_ns - ALERTS_MIN_GAP_NS, true);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

int alerts_new(const struct alerts_config *cfg, struct ingest_store *store, const char *owner,
               struct alerts **out, char *err, size_t err_len)
{
    *out = NULL;
    struct alerts *a = calloc(1, sizeof(*a));
    if (a == NULL || (a->scratch = malloc(sizeof(*a->scratch))) == NULL ||
        (a->classes = json_object()) == NULL || (a->silences = json_array()) == NULL ||
        (a->active = json_object()) == NULL || (a->newest = json_object()) == NULL) {
        if (a != NULL) {
            free(a->scratch);
            json_decref(a->classes);
            json_decref(a->silences);
            json_decref(a->active);
        }
        free(a);
        snprintf(err, err_len, "alerts: out of memory");
        return -1;
    }
    a->cfg = *cfg;
    a->store = store;
    ferry_strlcpy(a->owner, owner, sizeof(a->owner));
    for (size_t i = 0; i < cfg->n_rules; i++) {
        const struct alerts_rule *r = &cfg->rules[i];
        a->has_polled |= r->kind == ALERTS_RULE_OFFLINE || r->kind == ALERTS_RULE_GAP ||
                         r->kind == ALERTS_RULE_BACKLOG ||
                         (r->kind == ALERTS_RULE_UPDATE && r->for_ns > 0);
        a->has_absent |= r->kind == ALERTS_RULE_ABSENT;
    }
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);
    alerts_notify_init(a);
    for (size_t i = 0; i < cfg->n_rules; i++) {
        if (cfg->rules[i].selector[0] == '\0')
            continue;
        char why[256];
        if (ingest_selector_parse(cfg->rules[i].selector, &a->selectors[i], why, sizeof(why)) !=
            0) {
            snprintf(err, err_len, "[alert.%s] selector: %s", cfg->rules[i].name, why);
            alerts_free(a);
            return -1;
        }
    }
    *out = a;
    return 0;
}

int alerts_start(struct alerts *a)
{
    if (a->cfg.n_rules == 0)
        return 0;
    a->started = true; /* alerts_committed() may signal from now on */
    if (pthread_create(&a->eval_thread, NULL, eval_main, a) != 0) {
        a->started = false;
        return -1;
    }
    if (pthread_create(&a->notify_thread, NULL, alerts_notify_main, a) != 0) {
        pthread_mutex_lock(&a->lock);
        a->stopping = true;
        pthread_cond_broadcast(&a->cond);
        pthread_mutex_unlock(&a->lock);
        pthread_join(a->eval_thread, NULL);
        a->started = false;
        return -1;
    }
    return 0;
}

void alerts_free(struct alerts *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->lock);
    a->stopping = true;
    pthread_cond_broadcast(&a->cond);
    pthread_cond_broadcast(&a->notify_cond);
    pthread_mutex_unlock(&a->lock);
    if (a->started) {
        pthread_join(a->eval_thread, NULL);
        pthread_join(a->notify_thread, NULL);
    }
    table_clear(a);
    pending_clear(a);
    free(a->pending);
    free(a->scratch);
    json_decref(a->classes);
    json_decref(a->silences);
    json_decref(a->active);
    json_decref(a->newest);
    for (size_t i = 0; i < ALERTS_RULES_MAX; i++)
        ingest_selector_free(a->selectors[i]);
    alerts_notify_cleanup(a);
    pthread_cond_destroy(&a->cond);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

void alerts_counts(struct alerts *a, struct alerts_counts *out)
{
    memset(out, 0, sizeof(*out));
    if (a == NULL)
        return;
    out->firing = atomic_load(&a->firing);
    out->fired_total = atomic_load(&a->fired_total);
    out->late_total = atomic_load(&a->late_total);
    out->resolved_total = atomic_load(&a->resolved_total);
    out->queued = atomic_load(&a->queued);
    out->sent_total = atomic_load(&a->sent_total);
    out->failed_total = atomic_load(&a->failed_total);
    out->records_behind = atomic_load(&a->records_behind);
}

int alerts_expose(struct alerts *a, struct ferry_buf *out)
{
    struct alerts_counts c;
    alerts_counts(a, &c);
    return ferry_buf_printf(
        out,
        "# HELP ferry_alerts_firing Alerts firing now\n# TYPE ferry_alerts_firing gauge\n"
        "ferry_alerts_firing %" PRIu64 "\n"
        "# HELP ferry_alerts_fired_total Alerts that fired, by whether from late data\n"
        "# TYPE ferry_alerts_fired_total counter\n"
        "ferry_alerts_fired_total{late=\"false\"} %" PRIu64 "\n"
        "ferry_alerts_fired_total{late=\"true\"} %" PRIu64 "\n"
        "# HELP ferry_alerts_resolved_total Alerts that resolved\n"
        "# TYPE ferry_alerts_resolved_total counter\nferry_alerts_resolved_total %" PRIu64 "\n"
        "# HELP ferry_alerts_notifications_queued Notifications waiting for their receiver\n"
        "# TYPE ferry_alerts_notifications_queued gauge\n"
        "ferry_alerts_notifications_queued %" PRIu64 "\n"
        "# HELP ferry_alerts_notifications_sent_total Notifications a receiver accepted\n"
        "# TYPE ferry_alerts_notifications_sent_total counter\n"
        "ferry_alerts_notifications_sent_total %" PRIu64 "\n"
        "# HELP ferry_alerts_notifications_failed_total Delivery attempts that failed\n"
        "# TYPE ferry_alerts_notifications_failed_total counter\n"
        "ferry_alerts_notifications_failed_total %" PRIu64 "\n"
        "# HELP ferry_alerts_records_behind Stored records the rules have not seen yet\n"
        "# TYPE ferry_alerts_records_behind gauge\nferry_alerts_records_behind %" PRIu64 "\n",
        c.firing, c.fired_total - c.late_total, c.late_total, c.resolved_total, c.queued,
        c.sent_total, c.failed_total, c.records_behind);
}
