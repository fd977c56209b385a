/*
 * alerts_api.c - reading the stored alerts: GET /v1/alerts and `ferry-ingest alerts list`.
 *
 * Both read the store, not the engine's memory, so any ingest process on a shared PostgreSQL
 * answers the same, and the list shows what a restart would resume from.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "cloud-ingest/alerts/alerts_int.h"
#include "cloud-ingest/router.h"
#include "common/buf.h"

struct list_ctx {
    const char *state; /* "firing", "resolved" or NULL */
    const char *device;
    json_t *out;
    int rc;
};

static int list_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct list_ctx *l = arg;
    json_error_t jerr;
    json_t *o = json_loadb(value, len, 0, &jerr);
    (void)key;
    if (o == NULL)
        return 0;
    bool firing = json_is_true(json_object_get(o, "firing"));
    bool ever = json_integer_value(json_object_get(o, "starts_ns")) != 0;
    const char *device = json_string_value(json_object_get(o, "device"));
    /* An entry that never fired (pending, or a device an offline rule watches) is no alert. */
    bool keep = ever && (l->state == NULL || (strcmp(l->state, "firing") == 0) == firing) &&
                (l->device == NULL || (device && strcmp(device, l->device) == 0));
    if (keep) {
        json_object_del(o, "pending");
        json_object_del(o, "pending_since_ns");
        json_object_del(o, "recovering_since_ns");
        json_object_del(o, "last_sample_ns");
        json_object_set_new(o, "state", json_string(firing ? "firing" : "resolved"));
        if (json_array_append_new(l->out, o) != 0) {
            l->rc = -1;
            return 1;
        }
        return 0;
    }
    json_decref(o);
    return 0;
}

int alerts_list_json(struct ingest_store *store, const char *state, const char *device,
                     struct ferry_buf *out)
{
    struct list_ctx l = {state, device, json_array(), 0};
    if (l.out == NULL)
        return INGEST_STORE_ENOMEM;
    int rc = ingest_store_kv_scan(store, "alert/", 0, list_cb, &l);
    if (rc == 0 && l.rc != 0)
        rc = INGEST_STORE_ENOMEM;
    /* Stored text went through jansson, which only holds valid UTF-8: the output is valid. */
    char *text = rc == 0 ? json_dumps(l.out, JSON_COMPACT) : NULL;
    json_decref(l.out);
    if (rc == 0 && text == NULL)
        rc = INGEST_STORE_ENOMEM;
    if (rc == 0 &&
        (ferry_buf_append(out, text, strlen(text)) != 0 || ferry_buf_append(out, "\n", 1) != 0))
        rc = INGEST_STORE_ENOMEM;
    free(text);
    return rc;
}

static void handle_alerts(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_store *store = arg;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (query != NULL && evhttp_parse_query_str(query, &q) != 0) {
        ingest_reply_error(req, 400, "query: malformed (state=firing|resolved&device=ID)");
        return;
    }
    const char *state = evhttp_find_header(&q, "state");
    const char *device = evhttp_find_header(&q, "device");
    if (state != NULL && strcmp(state, "firing") != 0 && strcmp(state, "resolved") != 0) {
        evhttp_clear_headers(&q);
        ingest_reply_error(req, 400, "query: state: must be firing or resolved");
        return;
    }
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = alerts_list_json(store, state, device, &b);
    evhttp_clear_headers(&q);
    if (rc != 0)
        ingest_reply_error(req, 503, "%s: cannot read alerts: %s", path, ingest_store_strerror(rc));
    else
        ingest_reply(req, 200, "application/json", b.data, b.len);
    ferry_buf_free(&b);
}

int alerts_register(struct ingest_router *router, struct ingest_store *store)
{
    return ingest_router_add(router, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/v1/alerts",
                             INGEST_ACCESS_VIEWER, handle_alerts, store);
}
