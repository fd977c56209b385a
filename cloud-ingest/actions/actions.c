/*
 * actions.c - the queue of signed device actions in the store, and its HTTP routes (actions.h).
 */
#include "cloud-ingest/actions/actions.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "cloud-ingest/router.h"
#include "cloud-ingest/store.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/utf8.h"
#include "common/util.h"
#include "transport/action.h"

#define PENDING_PREFIX "action.pending/"
#define RECORD_PREFIX "action/"

/* action.pending/<device>/<queued_ns, 20 digits>/<id>: a device's pending actions sort in the
 * order they were queued (ids are random). */
static void pending_key(char *out, size_t len, const char *device, int64_t queued_ns,
                        const char *id)
{
    snprintf(out, len, "%s%s/%020lld/%s", PENDING_PREFIX, device, (long long)queued_ns, id);
}

int actions_queue(struct ingest_store *store, const char *envelope, size_t len, const char *by,
                  char id_out[33], char *err, size_t err_len)
{
    struct action a;
    char why[200] = "";
    if (action_parse_unverified(envelope, len, &a, why, sizeof(why)) != ACTION_OK) {
        snprintf(err, err_len, "action: %s", why);
        return 400;
    }
    struct ingest_device dev;
    int rc = ingest_store_device_get(store, a.device, &dev);
    if (rc == INGEST_STORE_ENOTFOUND) {
        snprintf(err, err_len, "action: unknown device %s", a.device);
        return 404;
    }
    if (rc != 0) {
        snprintf(err, err_len, "action: store lookup of %s: %s", a.device,
                 ingest_store_strerror(rc));
        return 503;
    }
    char rkey[64], pkey[160];
    int64_t queued_ns = ferry_realtime_ns();
    snprintf(rkey, sizeof(rkey), "%s%s", RECORD_PREFIX, a.id);
    pending_key(pkey, sizeof(pkey), a.device, queued_ns, a.id);
    struct ferry_buf old = FERRY_BUF_INIT;
    rc = ingest_store_kv_get(store, rkey, &old);
    ferry_buf_free(&old);
    if (rc == 0) {
        snprintf(err, err_len, "action: id %s is already used", a.id);
        return 409;
    }
    json_t *args = json_array();
    for (size_t i = 0; args != NULL && i < a.n_args; i++)
        json_array_append_new(args, json_string(a.args[i]));
    json_t *rec = json_pack("{s:s,s:s,s:s,s:o,s:I,s:I,s:I,s:s,s:s,s:s}", "id", a.id, "device",
                            a.device, "kind", action_kind_name(a.kind), "args",
                            args ? args : json_array(), "created", (json_int_t)a.created_s,
                            "expires", (json_int_t)a.expires_s, "queued_ns", (json_int_t)queued_ns,
                            "by", by ? by : "", "state", "pending", "pending_key", pkey);
    char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    if (text == NULL) {
        snprintf(err, err_len, "action: out of memory");
        return 503;
    }
    struct ingest_kv_op ops[2] = {
        {rkey, text, strlen(text), false},
        {pkey, envelope, len, false},
    };
    rc = ingest_store_kv_apply(store, ops, 2, NULL, NULL);
    free(text);
    if (rc != 0) {
        snprintf(err, err_len, "action: store: %s", ingest_store_strerror(rc));
        return 503;
    }
    memcpy(id_out, a.id, ACTION_ID_HEX + 1);
    return 0;
}

/* ---- Listing -------------------------------------------------------------------------------- */

struct list_ctx {
    const char *device, *state;
    json_t *out;
    int rc;
};

static int list_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct list_ctx *l = arg;
    (void)key;
    json_t *o = json_loadb(value, len, 0, NULL);
    if (o == NULL)
        return 0;
    const char *device = json_string_value(json_object_get(o, "device"));
    const char *state = json_string_value(json_object_get(o, "state"));
    if ((l->device && (!device || strcmp(device, l->device) != 0)) ||
        (l->state && (!state || strcmp(state, l->state) != 0))) {
        json_decref(o);
        return 0;
    }
    json_object_del(o, "pending_key"); /* the store's business */
    if (json_array_append_new(l->out, o) != 0) {
        l->rc = INGEST_STORE_ENOMEM;
        return 1;
    }
    return 0;
}

static int by_queued(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "queued_ns"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "queued_ns"));
    return x < y ? -1 : x > y;
}

int actions_list_json(struct ingest_store *store, const char *device, const char *state,
                      struct ferry_buf *out)
{
    struct list_ctx l = {device, state, json_array(), 0};
    if (l.out == NULL)
        return INGEST_STORE_ENOMEM;
    int rc = ingest_store_kv_scan(store, RECORD_PREFIX, 0, list_cb, &l);
    if (rc == 0)
        rc = l.rc;
    /* oldest first: ids are random, the queue time orders them */
    size_t n = json_array_size(l.out);
    json_t **items = n ? calloc(n, sizeof(*items)) : NULL;
    json_t *sorted = json_array();
    if (rc == 0 && (sorted == NULL || (n && items == NULL)))
        rc = INGEST_STORE_ENOMEM;
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            items[i] = json_array_get(l.out, i);
        if (n > 1)
            qsort(items, n, sizeof(*items), by_queued); /* not with NULL: n is 0 then */
        for (size_t i = 0; i < n; i++)
            json_array_append(sorted, items[i]);
    }
    free(items);
    /* Stored text went through jansson, which holds only valid UTF-8: the output is valid. */
    char *text = rc == 0 ? json_dumps(sorted, JSON_COMPACT) : NULL;
    json_decref(l.out);
    json_decref(sorted);
    if (rc == 0 && text == NULL)
        rc = INGEST_STORE_ENOMEM;
    if (rc == 0 &&
        (ferry_buf_append(out, text, strlen(text)) != 0 || ferry_buf_append(out, "\n", 1) != 0))
        rc = INGEST_STORE_ENOMEM;
    free(text);
    return rc;
}

/* ---- Results -------------------------------------------------------------------------------- */

/* A string field of a device's event as valid UTF-8 JSON, its last `max` bytes at most. */
static json_t *clean_string(json_t *v, size_t max)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (s == NULL)
        return json_string("");
    if (n > max) {
        s += n - max;
        n = max;
        while (n > 0 && ((unsigned char)*s & 0xC0) == 0x80) { /* not in a character's middle */
            s++;
            n--;
        }
    }
    return json_stringn(s, n);
}

int actions_take_results(struct ingest_store *store, const char *device, const json_t *results)
{
    for (size_t i = 0; i < json_array_size(results); i++) {
        json_t *r = json_array_get(results, i);
        const char *id = json_string_value(json_object_get(r, "id"));
        if (id == NULL || strlen(id) != ACTION_ID_HEX)
            continue;
        char rkey[64], pkey[160];
        snprintf(rkey, sizeof(rkey), "%s%s", RECORD_PREFIX, id);
        struct ferry_buf b = FERRY_BUF_INIT;
        int rc = ingest_store_kv_get(store, rkey, &b);
        if (rc == INGEST_STORE_ENOTFOUND) {
            ferry_buf_free(&b);
            continue; /* an id the ingest never queued (or a result of an older store) */
        }
        if (rc != 0) {
            ferry_buf_free(&b);
            return rc;
        }
        json_t *rec = json_loadb((const char *)b.data, b.len, 0, NULL);
        ferry_buf_free(&b);
        const char *owner = json_string_value(json_object_get(rec, "device"));
        const char *state = json_string_value(json_object_get(rec, "state"));
        if (rec == NULL || owner == NULL || strcmp(owner, device) != 0 || state == NULL ||
            strcmp(state, "done") == 0) {
            json_decref(rec);
            continue; /* another device's action, or a result sent again */
        }
        json_object_set_new(rec, "state", json_string("done"));
        json_object_set_new(rec, "status", clean_string(json_object_get(r, "status"), 32));
        json_object_set_new(rec, "exit_code",
                            json_integer(json_integer_value(json_object_get(r, "exit_code"))));
        json_object_set_new(rec, "output",
                            clean_string(json_object_get(r, "output"), ACTIONS_OUTPUT_MAX));
        json_object_set_new(rec, "reason", clean_string(json_object_get(r, "reason"), 512));
        json_object_set_new(rec, "result_ns",
                            json_integer(json_integer_value(json_object_get(r, "ts"))));
        const char *pk = json_string_value(json_object_get(rec, "pending_key"));
        if (pk == NULL || ferry_strlcpy(pkey, pk, sizeof(pkey)) >= sizeof(pkey)) {
            json_decref(rec);
            continue; /* not a record this code wrote */
        }
        json_object_del(rec, "pending_key");
        char *text = json_dumps(rec, JSON_COMPACT);
        json_decref(rec);
        if (text == NULL)
            return INGEST_STORE_ENOMEM;
        struct ingest_kv_op ops[2] = {
            {rkey, text, strlen(text), false},
            {pkey, NULL, 0, true},
        };
        rc = ingest_store_kv_apply(store, ops, 2, NULL, NULL);
        free(text);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- HTTP ----------------------------------------------------------------------------------- */

struct deliver_ctx {
    json_t *list;
    size_t bytes;
};

static int deliver_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct deliver_ctx *d = arg;
    (void)key;
    if (d->bytes + len > (size_t)ACTIONS_DELIVER_MAX * ACTION_ENVELOPE_MAX)
        return 1;
    json_t *s = json_stringn(value, len);
    if (s == NULL)
        return 0; /* not UTF-8: cannot be an envelope queued here */
    json_array_append_new(d->list, s);
    d->bytes += len;
    return 0;
}

/* GET /v1/devices/{id}/actions: dispatch verified the device's signature and that {id} is it. */
static void handle_device_actions(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_store *store = arg;
    char device[INGEST_DEVICE_ID_MAX + 1];
    if (ingest_route_segment("/v1/devices/*/actions", path, device, sizeof(device)) != 0 ||
        !ingest_device_id_valid(device)) {
        ingest_reply_error(req, 400, "actions: malformed device id in %s", path);
        return;
    }
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "%s%s/", PENDING_PREFIX, device);
    struct deliver_ctx d = {json_array(), 0};
    int rc = d.list ? ingest_store_kv_scan(store, prefix, ACTIONS_DELIVER_MAX, deliver_cb, &d)
                    : INGEST_STORE_ENOMEM;
    json_t *o = rc == 0 ? json_pack("{s:O}", "actions", d.list) : NULL;
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    json_decref(d.list);
    if (text == NULL) {
        ingest_reply_retry(req, 503, 1, "actions: store unavailable");
        return;
    }
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)(ferry_realtime_ns() / 1000000000));
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Ferry-Time", now);
    ingest_reply(req, 200, "application/json", text, strlen(text));
    free(text);
}

/* POST /v1/devices/{id}/actions: one envelope signed by the operator beforehand. */
static void handle_queue(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_store *store = arg;
    char device[INGEST_DEVICE_ID_MAX + 1];
    if (ingest_route_segment("/v1/devices/*/actions", path, device, sizeof(device)) != 0) {
        ingest_reply_error(req, 400, "actions: malformed device id in %s", path);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len == 0 || len > ACTION_ENVELOPE_MAX) {
        ingest_reply_error(req, len ? 413 : 400, "body: one action envelope of 1..%d bytes",
                           ACTION_ENVELOPE_MAX);
        return;
    }
    const char *body = (const char *)evbuffer_pullup(in, -1);
    struct action a;
    char why[200], err[300], id[33];
    if (action_parse_unverified(body, len, &a, why, sizeof(why)) == 0 &&
        strcmp(a.device, device) != 0) {
        ingest_reply_error(req, 400, "action: signed for device %s, posted to %s", a.device,
                           device);
        return;
    }
    int code = actions_queue(store, body, len, "http", id, err, sizeof(err));
    if (code != 0) {
        ingest_reply_error(req, code, "%s", err);
        return;
    }
    char out[64];
    int n = snprintf(out, sizeof(out), "{\"id\":\"%s\"}\n", id);
    ingest_reply(req, 200, "application/json", out, (size_t)n);
}

static void handle_list(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_store *store = arg;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (query != NULL && evhttp_parse_query_str(query, &q) != 0) {
        ingest_reply_error(req, 400, "query: malformed (device=ID&state=pending|done)");
        return;
    }
    const char *device = evhttp_find_header(&q, "device");
    const char *state = evhttp_find_header(&q, "state");
    if (state != NULL && strcmp(state, "pending") != 0 && strcmp(state, "done") != 0) {
        evhttp_clear_headers(&q);
        ingest_reply_error(req, 400, "query: state: must be pending or done");
        return;
    }
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = actions_list_json(store, device, state, &b);
    evhttp_clear_headers(&q);
    if (rc != 0)
        ingest_reply_error(req, 503, "%s: cannot read actions: %s", path,
                           ingest_store_strerror(rc));
    else
        ingest_reply(req, 200, "application/json", b.data, b.len);
    ferry_buf_free(&b);
}

int actions_register(struct ingest_router *router, struct ingest_store *store)
{
    if (ingest_router_add(router, EVHTTP_REQ_GET, "/v1/devices/*/actions", INGEST_ACCESS_DEVICE,
                          handle_device_actions, store) != 0 ||
        ingest_router_add(router, EVHTTP_REQ_POST, "/v1/devices/*/actions", INGEST_ACCESS_OPERATOR,
                          handle_queue, store) != 0 ||
        ingest_router_add(router, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/v1/actions",
                          INGEST_ACCESS_VIEWER, handle_list, store) != 0)
        return -1;
    return 0;
}
