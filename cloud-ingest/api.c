/*
 * api.c - the endpoints other than /v1/batches: enrolment, the device and export read API,
 * /metrics and /healthz. Field names are a contract (docs/ingest.md, INTERFACES.md).
 *
 * These handlers call the store directly from the worker thread: enrolment is rare, and LMDB
 * reads are memory-mapped lookups. With PostgreSQL a read waits for one query; keep the export
 * `limit` small there (docs/ingest.md says so).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/ingest.h"
#include "cloud-ingest/rollout/rollout.h"
#include "cloud-ingest/metrics_impl.h"
#include "cloud-ingest/selector.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/utf8.h"
#include "common/util.h"
#include "cloud-ingest/auth/auth.h"
#include "transport/batch.h"
#include "transport/reqsign.h"

#define EXPORT_DEFAULT_LIMIT 10000
#define EXPORT_MAX_LIMIT 100000

/* ---- Device JSON ---------------------------------------------------------------------------- */

/* Appends stored JSON object text as it is when it parses as an object (jansson refuses invalid
 * UTF-8), else "{}": the reply stays valid JSON whatever a store holds. */
static int append_json_object(struct ferry_buf *b, const char *text)
{
    if (text == NULL || text[0] == '\0')
        return ferry_buf_append(b, "{}", 2);
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    int e = v != NULL && json_is_object(v) ? ferry_buf_append(b, text, strlen(text))
                                           : ferry_buf_append(b, "{}", 2);
    json_decref(v);
    return e;
}

/* Appends `ts_ns` as a JSON string in RFC 3339 UTC with nanoseconds
 * ("2026-12-07T14:30:09.123456789Z"); times before 1970 round down to the second. */
static int append_rfc3339(struct ferry_buf *b, int64_t ts_ns)
{
    int64_t secs = ts_ns / 1000000000, nanos = ts_ns % 1000000000;
    if (nanos < 0) {
        secs--;
        nanos += 1000000000;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    char when[40];
    if (gmtime_r(&t, &tm) == NULL || strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        return ferry_buf_append(b, "null", 4);
    return ferry_buf_printf(b, "\"%s.%09" PRId64 "Z\"", when, nanos);
}

/* Renders one device; `updates` is its update states JSON text (NULL: "{}"). Every string is
 * written by the JSON writer (ill-formed UTF-8 replaced: common/utf8.h). */
int ingest_device_json(struct ferry_buf *b, const struct ingest_device *d, const char *updates)
{
    return ingest_device_json_inventory(b, d, updates, NULL, 0);
}

int ingest_device_json_inventory(struct ferry_buf *b, const struct ingest_device *d,
                                 const char *updates, const char *inventory,
                                 int64_t inventory_ts_ns)
{
    char pk[65], kid[17];
    ferry_hex_encode(d->public_key, 32, pk);
    ferry_hex_encode(d->key_id, 8, kid);
    int e = ferry_buf_append(b, "{\"id\":", 6);
    e |= ferry_buf_append_json_string(b, d->id, strlen(d->id));
    e |= ferry_buf_append(b, ",\"name\":", 8);
    e |= ferry_buf_append_json_string(b, d->name, strlen(d->name));
    e |= ferry_buf_append(b, ",\"device_class\":", 16);
    e |= ferry_buf_append_json_string(b, d->device_class, strlen(d->device_class));
    e |= ferry_buf_printf(b,
                          ",\"public_key\":\"%s\",\"key_id\":\"%s\",\"revoked\":%s,"
                          "\"enrolled_ns\":%" PRId64 ",\"last_seen_ns\":%" PRId64
                          ",\"clock_offset_ns\":%" PRId64 ",\"versions\":",
                          pk, kid, d->revoked ? "true" : "false", d->enrolled_ns, d->last_seen_ns,
                          d->clock_offset_ns);
    e |= append_json_object(b, d->versions);
    e |= ferry_buf_append(b, ",\"streams\":{", 12);
    for (int s = 0; s < RECORD_STREAM_COUNT; s++) {
        const struct ingest_stream_stats *st = &d->streams[s];
        e |= ferry_buf_printf(b,
                              "%s\"%s\":{\"records\":%" PRIu64 ",\"max_seq\":%" PRIu64
                              ",\"gap_ranges\":%" PRIu64 ",\"gap_records\":%" PRIu64
                              ",\"backlog\":%" PRIu64 "}",
                              s ? "," : "", record_stream_name((enum record_stream)s), st->records,
                              st->max_seq, st->gap_ranges, st->gap_records, st->backlog);
    }
    e |= ferry_buf_append(b, "},\"updates\":", 12);
    e |= append_json_object(b, updates);
    e |= ferry_buf_append(b, ",\"labels\":", 10);
    e |= append_json_object(b, d->labels);
    if (inventory != NULL && inventory[0] != '\0') {
        /* append_json_object checks it parses as an object (valid UTF-8), else "{}" */
        e |= ferry_buf_append(b, ",\"inventory\":", 13);
        e |= append_json_object(b, inventory);
        e |= ferry_buf_append(b, ",\"inventory_time\":", 18);
        e |= append_rfc3339(b, inventory_ts_ns);
    }
    e |= ferry_buf_append_u8(b, '}');
    return e;
}

static void free_body(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

/* Replies with the buffer's bytes, handing the buffer itself to libevent (no copy: the device list
 * of a large fleet is megabytes); the buffer is empty afterwards. */
static void reply_buf(struct evhttp_request *req, int code, const char *type, struct ferry_buf *b)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    if (b->len > 0 && evbuffer_add_reference(out, b->data, b->len, free_body, NULL) == 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
        evhttp_send_reply(req, code, NULL, NULL);
        *b = (struct ferry_buf)FERRY_BUF_INIT;
        return;
    }
    ingest_reply(req, code, type, b->data, b->len);
    ferry_buf_free(b);
}

/* ---- POST /v1/enroll ------------------------------------------------------------------------ */

static const char *json_str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Runs one enrolment and replies; returns the status it replied with. */
static int enroll_reply(struct ingest_ctx *ctx, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > ctx->cfg->max_enroll_bytes) {
        ingest_metrics_add(ctx->metrics, INGEST_C_REJECT_413, 1);
        ingest_reply_error(req, 413, "enroll body of %zu bytes exceeds %llu", len,
                           (unsigned long long)ctx->cfg->max_enroll_bytes);
        return 413;
    }
    const char *body = len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        ingest_metrics_add(ctx->metrics, INGEST_C_REJECT_400, 1);
        ingest_reply_error(req, 400, "body: not a JSON object (%s at byte %d)",
                           root == NULL ? jerr.text : "wrong type",
                           root == NULL ? jerr.position : 0);
        json_decref(root);
        return 400;
    }
    const char *token = json_str(root, "token"), *pkhex = json_str(root, "public_key");
    const char *name = json_str(root, "name"), *cls = json_str(root, "device_class");
    const char *sig = json_str(root, "signature");
    struct ingest_device dev, out;
    memset(&dev, 0, sizeof(dev));
    if (token == NULL || pkhex == NULL || strlen(pkhex) != 64 ||
        ferry_hex_decode(pkhex, dev.public_key, 32) != 0) {
        ingest_metrics_add(ctx->metrics, INGEST_C_REJECT_400, 1);
        ingest_reply_error(req, 400, "body: needs \"token\" and \"public_key\" (64 hex digits)");
        json_decref(root);
        return 400;
    }
    if ((name != NULL && strlen(name) > INGEST_NAME_MAX) ||
        (cls != NULL && strlen(cls) > INGEST_NAME_MAX)) {
        ingest_metrics_add(ctx->metrics, INGEST_C_REJECT_400, 1);
        ingest_reply_error(req, 400, "body: name and device_class are at most %d bytes",
                           INGEST_NAME_MAX);
        json_decref(root);
        return 400;
    }
    /* Proof of possession (transport/reqsign.h): refuses all-zero, low-order and non-canonical
     * keys and any key the enroller cannot sign with. */
    int prc = reqsign_enroll_verify(dev.public_key, pkhex, token, sig);
    if (prc != 0) {
        ingest_metrics_add(ctx->metrics, INGEST_C_REJECT_400, 1);
        ingest_reply_error(req, 400, "%s",
                           sig == NULL ? "body: needs \"signature\": the enrolled key's "
                                         "signature (docs/wire-format.md, Enrolment)"
                           : prc == REQSIGN_EBADSIG ? "signature: does not verify with public_key"
                                                    : "public_key: not a usable Ed25519 key, or "
                                                      "signature not 128 hex digits");
        json_decref(root);
        return 400;
    }
    batch_key_id(dev.public_key, dev.key_id);
    char kid[17];
    ferry_hex_encode(dev.key_id, 8, kid);
    snprintf(dev.id, sizeof(dev.id), "d-%s", kid);
    ferry_strlcpy(dev.name, name != NULL ? name : "", sizeof(dev.name));
    ferry_strlcpy(dev.device_class, cls != NULL ? cls : "", sizeof(dev.device_class));
    ferry_strlcpy(dev.versions, "{}", sizeof(dev.versions));
    char err[256] = "";
    int rc =
        ingest_store_enroll(ctx->store, token, &dev, ferry_realtime_ns(), &out, err, sizeof(err));
    json_decref(root);
    switch (rc) {
    case 0: {
        ingest_metrics_add(ctx->metrics, INGEST_C_ENROLLS, 1);
        ingest_devtab_invalidate(ctx->devtab, out.id);
        log_info("ingest", "enrolled device %s (key id %s)", out.id, kid);
        {
            /* Who joined the fleet, from where: in the audit log beside the operator changes. */
            char actor[INGEST_DEVICE_ID_MAX + 8], source[64];
            struct evhttp_connection *evcon = evhttp_request_get_connection(req);
            const char *addr = NULL;
            ev_uint16_t port = 0;
            if (evcon != NULL)
                evhttp_connection_get_peer(evcon, (char **)&addr, &port);
            snprintf(actor, sizeof(actor), "device:%s", out.id);
            snprintf(source, sizeof(source), "%s", addr != NULL ? addr : "-");
            if (ingest_auth_audit(ctx->store, actor, "device.enroll", "/v1/enroll", source, 0) != 0)
                log_warn("ingest", "audit log: cannot record the enrolment of %s", out.id);
        }
        struct ferry_buf b = FERRY_BUF_INIT;
        if (ferry_buf_printf(&b, "{\"device_id\":\"%s\"}\n", out.id) != 0) {
            ferry_buf_free(&b);
            ingest_reply_error(req, 500, "out of memory");
            return 500;
        }
        reply_buf(req, 200, "application/json", &b);
        return 200;
    }
    case INGEST_STORE_ETOKEN:
        ingest_metrics_add(ctx->metrics, INGEST_C_REJECT_401, 1);
        ingest_reply_error(req, 401, "%s", err);
        return 401;
    case INGEST_STORE_EREVOKED:
        ingest_metrics_add(ctx->metrics, INGEST_C_REJECT_403, 1);
        ingest_reply_error(req, 403, "%s", err);
        return 403;
    case INGEST_STORE_EEXIST: ingest_reply_error(req, 409, "%s", err); return 409;
    default:
        ingest_reply_error(req, 503, "store: %s (%s)", ingest_store_strerror(rc), err);
        return 503;
    }
}

static void handle_enroll(struct evhttp_request *req, const char *path, void *arg)
{
    (void)path;
    struct ingest_ctx *ctx = arg;
    /* Failed enrolments are rate limited per source address and globally (auth.h), before the
     * body is even parsed: guessing tokens costs an attacker time, not the ingest work. */
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    const char *addr = NULL;
    ev_uint16_t port = 0;
    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, (char **)&addr, &port);
    if (addr == NULL)
        addr = "-";
    int64_t now_ms = ferry_monotonic_ns() / 1000000;
    unsigned wait = ingest_enroll_limiter_check(ctx->enroll_limiter, addr, now_ms);
    if (wait > 0) {
        ingest_metrics_add(ctx->metrics, INGEST_C_REJECT_429, 1);
        ingest_reply_retry(req, 429, wait, "too many failed enrolments: retry later");
        return;
    }
    int code = enroll_reply(ctx, req);
    if (code == 400 || code == 401 || code == 403 || code == 409)
        ingest_enroll_limiter_failed(ctx->enroll_limiter, addr, now_ms);
}

/* ---- GET /v1/devices, /v1/devices/{id} ------------------------------------------------------ */

/* The list is read in two passes: ids first, then each device with its update states. A second
 * store call from inside the list callback could wait for a pooled PostgreSQL connection that
 * the list itself holds. */
struct list_state {
    char (*ids)[INGEST_DEVICE_ID_MAX + 1];
    size_t n, cap;
    int err;
};

static int list_cb(const struct ingest_device *d, void *arg)
{
    struct list_state *st = arg;
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        void *ids = realloc(st->ids, cap * sizeof(*st->ids));
        if (ids == NULL) {
            st->err = INGEST_STORE_ENOMEM;
            return 1;
        }
        st->ids = ids;
        st->cap = cap;
    }
    memcpy(st->ids[st->n++], d->id, sizeof(st->ids[0]));
    return 0;
}

/* Filters of GET /v1/devices (docs/ingest.md "Read API"); every given one must match. */
struct device_filter {
    int64_t offline_before_ns;        /* last seen before this (never seen counts); 0: no filter */
    const char *device_class;         /* exact device_class; NULL: any */
    const char *component;            /* version filter: this component (NULL: any component) */
    const char *version;              /* ... runs this version; NULL: no filter */
    struct ingest_selector *selector; /* ?selector= (cloud-ingest/selector.h); NULL: none */
};

/* Parses the query of GET /v1/devices into `f`. Returns 0, or -1 with the reason in why. */
static int device_filter_parse(struct evhttp_request *req, struct evkeyvalq *q,
                               struct device_filter *f, char *why, size_t why_len)
{
    memset(f, 0, sizeof(*f));
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (query == NULL || query[0] == '\0')
        return 0;
    if (evhttp_parse_query_str(query, q) != 0) {
        snprintf(why, why_len, "query: not a valid query string");
        return -1;
    }
    for (struct evkeyval *kv = q->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
        if (strcmp(kv->key, "offline_for") == 0) {
            int64_t ms;
            if (ferry_parse_duration_ms(kv->value, &ms) != 0 || ms <= 0) {
                snprintf(why, why_len, "query: offline_for: a duration such as 90s, 10m, 2h");
                return -1;
            }
            f->offline_before_ns = ferry_realtime_ns() - ms * 1000000;
        } else if (strcmp(kv->key, "class") == 0) {
            f->device_class = kv->value;
        } else if (strcmp(kv->key, "version") == 0) {
            /* "COMPONENT:VERSION", or "VERSION" for any component */
            char *colon = strchr(kv->value, ':');
            f->version = kv->value;
            if (colon != NULL) {
                *colon = '\0';
                f->component = kv->value;
                f->version = colon + 1;
            }
            if (f->version[0] == '\0' || (f->component != NULL && f->component[0] == '\0')) {
                snprintf(why, why_len, "query: version: VERSION or COMPONENT:VERSION");
                return -1;
            }
        } else if (strcmp(kv->key, "selector") == 0 && f->selector == NULL) {
            char err[256];
            if (ingest_selector_parse(kv->value, &f->selector, err, sizeof(err)) != 0) {
                snprintf(why, why_len, "query: %s", err);
                return -1;
            }
        } else {
            char key[64];
            snprintf(why, why_len,
                     "query: unknown or repeated parameter \"%s\" (offline_for, version, class, "
                     "selector)",
                     ferry_escape_str(key, sizeof(key), kv->key, strlen(kv->key)));
            return -1;
        }
    }
    return 0;
}

static bool version_matches(const struct device_filter *f, const char *versions_text)
{
    json_t *v = json_loads(versions_text[0] ? versions_text : "{}", 0, NULL);
    bool match = false;
    const char *component;
    json_t *value;
    if (v != NULL && json_is_object(v)) {
        json_object_foreach(v, component, value)
        {
            if ((f->component == NULL || strcmp(component, f->component) == 0) &&
                json_is_string(value) && strcmp(json_string_value(value), f->version) == 0)
                match = true;
        }
    }
    json_decref(v);
    return match;
}

static bool device_matches(const struct device_filter *f, const struct ingest_device *d)
{
    if (f->offline_before_ns != 0 && d->last_seen_ns >= f->offline_before_ns)
        return false;
    if (f->device_class != NULL && strcmp(d->device_class, f->device_class) != 0)
        return false;
    if (f->version != NULL && !version_matches(f, d->versions))
        return false;
    if (f->selector != NULL && !ingest_selector_match(f->selector, d))
        return false;
    return true;
}

/* Appends device `id` with its update states when it matches `f` (1), or skips it (0): a device
 * gone since the list pass is skipped too. */
static int append_device(struct ingest_store *store, const char *id, const struct device_filter *f,
                         bool comma, struct ferry_buf *b)
{
    struct ingest_device d;
    char updates[INGEST_UPDATES_MAX + 1];
    int rc = ingest_store_device_get(store, id, &d);
    if (rc == 0 && !device_matches(f, &d))
        return 0;
    if (rc == 0)
        rc = ingest_store_device_updates(store, id, updates, sizeof(updates));
    if (rc == INGEST_STORE_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if ((comma && ferry_buf_append_u8(b, ',') != 0) || ingest_device_json(b, &d, updates) != 0)
        return INGEST_STORE_ENOMEM;
    return 1;
}

static void handle_devices(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_ctx *ctx = arg;
    struct ferry_buf b = FERRY_BUF_INIT;
    struct list_state st = {NULL, 0, 0, 0};
    struct evkeyvalq q;
    struct device_filter filter;
    char why[320];
    TAILQ_INIT(&q);
    if (device_filter_parse(req, &q, &filter, why, sizeof(why)) != 0) {
        ingest_selector_free(filter.selector);
        evhttp_clear_headers(&q);
        ingest_reply_error(req, 400, "%s", why);
        return;
    }
    int rc = ingest_store_device_list(ctx->store, list_cb, &st);
    if (rc == 0)
        rc = st.err;
    if (rc == 0 && ferry_buf_append(&b, "{\"devices\":[", 12) != 0)
        rc = INGEST_STORE_ENOMEM;
    size_t shown = 0;
    for (size_t i = 0; i < st.n && rc == 0; i++) {
        int arc = append_device(ctx->store, st.ids[i], &filter, shown > 0, &b);
        if (arc < 0)
            rc = arc;
        else
            shown += (size_t)arc;
    }
    if (rc == 0 && ferry_buf_append(&b, "]}\n", 3) != 0)
        rc = INGEST_STORE_ENOMEM;
    free(st.ids);
    ingest_selector_free(filter.selector);
    evhttp_clear_headers(&q);
    if (rc != 0) {
        ferry_buf_free(&b);
        ingest_reply_error(req, 503, "store: %s", ingest_store_strerror(rc));
        return;
    }
    reply_buf(req, 200, "application/json", &b);
}

static void handle_device(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_ctx *ctx = arg;
    const char *id = path + strlen("/v1/devices/");
    struct ingest_device d;
    int rc = ingest_store_device_get(ctx->store, id, &d);
    if (rc == INGEST_STORE_ENOTFOUND) {
        ingest_reply_error(req, 404, "no device %.64s", id);
        return;
    }
    char updates[INGEST_UPDATES_MAX + 1], inventory[INGEST_INVENTORY_MAX + 1];
    int64_t inventory_ts_ns = 0;
    if (rc == 0)
        rc = ingest_store_device_updates(ctx->store, id, updates, sizeof(updates));
    if (rc == 0)
        rc = ingest_store_device_inventory(ctx->store, id, inventory, sizeof(inventory),
                                           &inventory_ts_ns);
    struct ferry_buf b = FERRY_BUF_INIT;
    if (rc != 0 || ingest_device_json_inventory(&b, &d, updates, inventory, inventory_ts_ns) != 0 ||
        ferry_buf_append_u8(&b, '\n') != 0) {
        ferry_buf_free(&b);
        ingest_reply_error(req, 503, "store: %s",
                           ingest_store_strerror(rc ? rc : INGEST_STORE_ENOMEM));
        return;
    }
    reply_buf(req, 200, "application/json", &b);
}

/* ---- GET /v1/export ------------------------------------------------------------------------- */

struct export_state {
    struct ferry_buf *b;
    const char *device;
    int err;
};

/* field_types for a store that keeps only the fields' JSON text (PostgreSQL): a number with a
 * fraction or exponent (floats are always written so) is a float, another number an int (an
 * unsigned field within int64 cannot be told apart there: docs/ingest.md "Export"). */
static int infer_field_types(struct ferry_buf *b, const char *fields, size_t len)
{
    json_t *o = json_loadb(fields, len, 0, NULL);
    const char *key;
    json_t *v;
    int e = ferry_buf_append_u8(b, '{');
    bool first = true;
    if (o != NULL && json_is_object(o)) {
        json_object_foreach(o, key, v)
        {
            const char *t = json_is_real(v) || json_is_null(v) ? "float"
                            : json_is_integer(v)               ? "int"
                            : json_is_boolean(v)               ? "bool"
                                                               : "string";
            e |= ferry_buf_append(b, first ? "" : ",", first ? 0 : 1);
            e |= ferry_buf_append_json_string(b, key, strlen(key));
            e |= ferry_buf_printf(b, ":\"%s\"", t);
            first = false;
        }
    }
    json_decref(o);
    return e | ferry_buf_append_u8(b, '}');
}

static int export_cb(const struct ingest_row *r, void *arg)
{
    struct export_state *st = arg;
    struct ferry_buf *b = st->b;
    int e = ferry_buf_printf(b,
                             "{\"device\":\"%s\",\"stream\":\"%s\",\"seq\":%" PRIu64
                             ",\"ts\":%" PRId64 ",\"ts_corrected\":%" PRId64 ",\"name\":",
                             st->device, record_stream_name((enum record_stream)r->stream), r->seq,
                             r->ts_ns, r->ts_corrected_ns);
    e |= ferry_buf_append_json_string(b, r->name, r->name_len);
    const char *level =
        r->stream == RECORD_LOG ? record_level_name((enum record_log_level)r->level) : NULL;
    if (level != NULL)
        e |= ferry_buf_printf(b, ",\"level\":\"%s\",\"message\":", level);
    else
        e |= ferry_buf_append(
            b, ",\"level\":null,\"message\":", sizeof(",\"level\":null,\"message\":") - 1);
    e |= ferry_buf_append_json_string(b, r->message, r->message_len);
    /* tags and fields are JSON text from the store's renderer; a stored text is passed through
     * the replacement all the same (whatever a store holds, the line is valid UTF-8). */
    e |= ferry_buf_append(b, ",\"tags\":", 8);
    e |= ferry_buf_append_utf8(b, r->tags_json, r->tags_json_len);
    e |= ferry_buf_append(b, ",\"fields\":", 10);
    e |= ferry_buf_append_utf8(b, r->fields_json, r->fields_json_len);
    e |= ferry_buf_append(b, ",\"field_types\":", 15);
    if (r->field_types_json != NULL)
        e |= ferry_buf_append(b, r->field_types_json, r->field_types_json_len);
    else
        e |= infer_field_types(b, r->fields_json, r->fields_json_len);
    e |= ferry_buf_append(b, "}\n", 2);
    st->err |= e;
    return e;
}

static void handle_export(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_ctx *ctx = arg;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (query == NULL || evhttp_parse_query_str(query, &q) != 0) {
        ingest_reply_error(
            req, 400, "query: needs device=ID&stream=event|metric|log[&after_seq=N][&limit=L]");
        evhttp_clear_headers(&q);
        return;
    }
    const char *device = evhttp_find_header(&q, "device"),
               *stream = evhttp_find_header(&q, "stream");
    const char *after = evhttp_find_header(&q, "after_seq"),
               *limit_s = evhttp_find_header(&q, "limit");
    enum record_stream s;
    uint64_t after_seq = 0, limit = EXPORT_DEFAULT_LIMIT;
    if (device == NULL || !ingest_device_id_valid(device)) {
        ingest_reply_error(req, 400, "query: device: missing or not a device id");
        goto out;
    }
    if (stream == NULL || record_stream_parse(stream, &s) != 0) {
        ingest_reply_error(req, 400, "query: stream: must be event, metric or log");
        goto out;
    }
    if (after != NULL && ferry_parse_u64(after, UINT64_MAX, &after_seq) != 0) {
        ingest_reply_error(req, 400, "query: after_seq: not a number");
        goto out;
    }
    if (limit_s != NULL &&
        (ferry_parse_u64(limit_s, EXPORT_MAX_LIMIT, &limit) != 0 || limit == 0)) {
        ingest_reply_error(req, 400, "query: limit: 1..%d", EXPORT_MAX_LIMIT);
        goto out;
    }
    struct ferry_buf b = FERRY_BUF_INIT;
    struct export_state st = {&b, device, 0};
    int rc = ingest_store_export(ctx->store, device, (uint8_t)s, after_seq, limit, export_cb, &st);
    if (rc == INGEST_STORE_ENOTFOUND) {
        ferry_buf_free(&b);
        ingest_reply_error(req, 404, "no device %s", device);
        goto out;
    }
    if (rc != 0 || st.err != 0) {
        ferry_buf_free(&b);
        ingest_reply_error(req, 503, "store: %s",
                           ingest_store_strerror(rc ? rc : INGEST_STORE_ENOMEM));
        goto out;
    }
    reply_buf(req, 200, "application/x-ndjson", &b);
out:
    evhttp_clear_headers(&q);
}

/* ---- GET /metrics --------------------------------------------------------------------------- */

static const struct {
    enum ingest_counter c;
    const char *name;
    const char *help;
    const char *labels;
} counters[] = {
    {INGEST_C_REQUESTS, "ferry_ingest_http_requests_total", "HTTP requests received", ""},
    {INGEST_C_BATCHES_OK, "ferry_ingest_batches_total", "Batches committed and acknowledged", ""},
    {INGEST_C_RECORDS_NEW, "ferry_ingest_records_total", "Records stored for the first time", ""},
    {INGEST_C_RECORDS_DUP, "ferry_ingest_records_duplicate_total",
     "Records received again (already stored)", ""},
    {INGEST_C_GAPS_NEW, "ferry_ingest_gaps_total", "New eviction gap ranges reported by devices",
     ""},
    {INGEST_C_BYTES_IN, "ferry_ingest_batch_bytes_total", "Bytes of batch bodies received", ""},
    {INGEST_C_REJECT_400, "ferry_ingest_rejected_total", "Requests rejected, by status",
     "{code=\"400\"}"},
    {INGEST_C_REJECT_401, "ferry_ingest_rejected_total", NULL, "{code=\"401\"}"},
    {INGEST_C_REJECT_403, "ferry_ingest_rejected_total", NULL, "{code=\"403\"}"},
    {INGEST_C_REJECT_413, "ferry_ingest_rejected_total", NULL, "{code=\"413\"}"},
    {INGEST_C_REJECT_429, "ferry_ingest_rejected_total", NULL, "{code=\"429\"}"},
    {INGEST_C_REJECT_503, "ferry_ingest_rejected_total", NULL, "{code=\"503\"}"},
    {INGEST_C_STORE_ERRORS, "ferry_ingest_store_errors_total", "Group commits that failed", ""},
    {INGEST_C_COMMIT_GROUPS, "ferry_ingest_commit_groups_total",
     "Group commits (store transactions)", ""},
    {INGEST_C_ENROLLS, "ferry_ingest_enrollments_total", "Successful enrolments", ""},
    {INGEST_C_CONN_REFUSED, "ferry_ingest_connections_refused_total",
     "Requests refused over server.max_connections", ""},
    {INGEST_C_TLS_FULL, "ferry_ingest_tls_handshakes_total",
     "TLS connections by handshake: full, or resumed from a session ticket", "{kind=\"full\"}"},
    {INGEST_C_TLS_RESUMED, "ferry_ingest_tls_handshakes_total", NULL, "{kind=\"resumed\"}"},
};

static int expose_hist(struct ferry_buf *b, struct ingest_metrics *m, enum ingest_histogram h,
                       const char *name, const char *help)
{
    struct ingest_hist *hist = &m->hist[h];
    int e = ferry_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i <= INGEST_H_BUCKETS; i++) {
        cum += atomic_load(&hist->buckets[i]);
        if (i < INGEST_H_BUCKETS)
            e |= ferry_buf_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
                                  ingest_histogram_bounds[i], cum);
        else
            e |= ferry_buf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    }
    e |=
        ferry_buf_printf(b, "%s_sum %.9f\n%s_count %" PRIu64 "\n", name,
                         (double)atomic_load(&hist->sum_ns) / 1e9, name, atomic_load(&hist->count));
    return e;
}

/* The per-device families, each rendered into its own buffer during one scan of the store and
 * concatenated afterwards: the exposition format wants a family's samples together. */
struct device_families {
    struct ferry_buf last_seen, gap_records, backlog;
};

static int device_families_cb(const struct ingest_device *d, void *arg)
{
    struct device_families *f = arg;
    int e = ferry_buf_printf(&f->last_seen, "ferry_device_last_seen_seconds{device=\"%s\"} %.3f\n",
                             d->id, (double)d->last_seen_ns / 1e9) |
            ferry_buf_printf(
                &f->gap_records, "ferry_device_gap_records{device=\"%s\"} %" PRIu64 "\n", d->id,
                d->streams[0].gap_records + d->streams[1].gap_records + d->streams[2].gap_records);
    for (int st = 0; st < RECORD_STREAM_COUNT; st++)
        e |= ferry_buf_printf(
            &f->backlog, "ferry_device_backlog_records{device=\"%s\",stream=\"%s\"} %" PRIu64 "\n",
            d->id, record_stream_name((enum record_stream)st), d->streams[st].backlog);
    return e;
}

static void handle_metrics(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_ctx *ctx = arg;
    struct ferry_buf b = FERRY_BUF_INIT;
    int e = 0;
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        if (counters[i].help != NULL)
            e |= ferry_buf_printf(&b, "# HELP %s %s\n# TYPE %s counter\n", counters[i].name,
                                  counters[i].help, counters[i].name);
        e |= ferry_buf_printf(&b, "%s%s %" PRIu64 "\n", counters[i].name, counters[i].labels,
                              ingest_metrics_get(ctx->metrics, counters[i].c));
    }
    e |= ferry_buf_printf(&b,
                          "# HELP ferry_ingest_queue_depth Batches waiting for storage\n"
                          "# TYPE ferry_ingest_queue_depth gauge\nferry_ingest_queue_depth %zu\n",
                          ingest_committer_depth(ctx->committer));
    e |= expose_hist(&b, ctx->metrics, INGEST_H_BATCH_SECONDS, "ferry_ingest_batch_seconds",
                     "POST /v1/batches latency from body received to acknowledgement");
    e |= expose_hist(&b, ctx->metrics, INGEST_H_COMMIT_SECONDS, "ferry_ingest_commit_seconds",
                     "Duration of one group commit");
    if (ctx->alerts != NULL)
        e |= alerts_expose(ctx->alerts, &b);
    e |= rollouts_expose(ctx->store, &b);
    struct device_families f = {FERRY_BUF_INIT, FERRY_BUF_INIT, FERRY_BUF_INIT};
    int rc = ingest_store_device_list(ctx->store, device_families_cb, &f);
    e |= ferry_buf_printf(
        &b, "# HELP ferry_device_last_seen_seconds Ingest time of the device's last stored batch\n"
            "# TYPE ferry_device_last_seen_seconds gauge\n");
    e |= ferry_buf_append(&b, f.last_seen.data, f.last_seen.len);
    e |= ferry_buf_printf(&b, "# HELP ferry_device_gap_records Records the device reported lost\n"
                              "# TYPE ferry_device_gap_records gauge\n");
    e |= ferry_buf_append(&b, f.gap_records.data, f.gap_records.len);
    e |= ferry_buf_printf(&b, "# HELP ferry_device_backlog_records Records the device had not yet "
                              "sent, as of its last stored batch\n"
                              "# TYPE ferry_device_backlog_records gauge\n");
    e |= ferry_buf_append(&b, f.backlog.data, f.backlog.len);
    ferry_buf_free(&f.last_seen);
    ferry_buf_free(&f.gap_records);
    ferry_buf_free(&f.backlog);
    e |= ingest_devtab_expose(ctx->devtab, &b);
    e |= ingest_forwarders_expose(ctx->forwarders, &b);
    if (e != 0 || rc != 0) {
        ferry_buf_free(&b);
        ingest_reply_error(req, 503, "cannot build metrics");
        return;
    }
    reply_buf(req, 200, "text/plain; version=0.0.4", &b);
}

/* ---- GET /healthz --------------------------------------------------------------------------- */

static void handle_healthz(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_ctx *ctx = arg;
    struct ingest_device d;
    /* A lookup of an id no device has: proves the store answers (PostgreSQL reachable). */
    int rc = ingest_store_device_get(ctx->store, "healthz-probe.invalid", &d);
    bool ok = rc == 0 || rc == INGEST_STORE_ENOTFOUND;
    struct ferry_buf b = FERRY_BUF_INIT;
    if (ferry_buf_printf(&b, "{\"status\":\"%s\",\"store\":\"%s\",\"queue_depth\":%zu}\n",
                         ok ? "ok" : "store unavailable",
                         ingest_store_kind(ctx->store) == INGEST_STORE_LMDB ? "lmdb" : "postgresql",
                         ingest_committer_depth(ctx->committer)) != 0) {
        ferry_buf_free(&b);
        ingest_reply_error(req, 500, "out of memory");
        return;
    }
    reply_buf(req, ok ? 200 : 503, "application/json", &b);
}

int ingest_api_register(struct ingest_router *r, struct ingest_ctx *ctx)
{
    const int get = EVHTTP_REQ_GET | EVHTTP_REQ_HEAD;
    int rc = 0;
    rc |= ingest_router_add(r, EVHTTP_REQ_POST, "/v1/enroll", INGEST_ACCESS_PUBLIC, handle_enroll,
                            ctx);
    rc |= ingest_router_add(r, get, "/v1/devices", INGEST_ACCESS_VIEWER, handle_devices, ctx);
    rc |= ingest_router_add(r, get, "/v1/devices/*", INGEST_ACCESS_VIEWER, handle_device, ctx);
    rc |= ingest_router_add(r, get, "/v1/export", INGEST_ACCESS_VIEWER, handle_export, ctx);
    rc |= ingest_router_add(r, get, "/metrics", INGEST_ACCESS_METRICS, handle_metrics, ctx);
    rc |= ingest_router_add(r, get, "/healthz", INGEST_ACCESS_PUBLIC, handle_healthz, ctx);
    return rc != 0 ? INGEST_EINVAL : 0;
}
