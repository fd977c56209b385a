/*
 * admin_api.c - the operator actions on devices over the API (admin role), so that the
 * `ferry-ingest --url URL --token T device ...` client (admin.c) can run on another host:
 *
 *   POST /v1/devices                 {"id","public_key","name","device_class","labels"}
 *                                    register a key (admin)
 *   POST /v1/devices/{id}/revoke     revoke a device (admin)
 *   POST /v1/devices/{id}/labels     {"set":{"k":"v"},"remove":["k2"]} change labels (operator)
 *
 * Dispatch has checked the token's role before these run and written the request to the audit
 * log (server.c); the effects are the store's, exactly as the local commands have them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>

#include "cloud-ingest/ingest.h"
#include "common/buf.h"
#include "common/util.h"
#include "transport/batch.h"

#define DEVICE_ADD_BODY_MAX 8192
#define LABELS_BODY_MAX 16384

static const char *json_str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void handle_device_add(struct evhttp_request *req, const char *path, void *arg)
{
    (void)path;
    struct ingest_ctx *ctx = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > DEVICE_ADD_BODY_MAX) {
        ingest_reply_error(req, 413, "body of %zu bytes exceeds %d", len, DEVICE_ADD_BODY_MAX);
        return;
    }
    const char *body = len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *id = json_str(root, "id"), *pk = json_str(root, "public_key");
    const char *name = json_str(root, "name"), *cls = json_str(root, "device_class");
    json_t *labels = json_object_get(root, "labels");
    struct ingest_device d;
    memset(&d, 0, sizeof(d));
    char why[256] = "";
    if (labels != NULL) {
        char *text = json_dumps(labels, JSON_COMPACT | JSON_ENCODE_ANY);
        int lrc = text != NULL
                      ? ingest_labels_check(text, d.labels, sizeof(d.labels), why, sizeof(why))
                      : INGEST_STORE_ENOMEM;
        free(text);
        if (lrc != 0) {
            json_decref(root);
            ingest_reply_error(req, 400, "labels: %s", why[0] ? why : "out of memory");
            return;
        }
    }
    if (root == NULL || !ingest_device_id_valid(id) || pk == NULL || strlen(pk) != 64 ||
        ferry_hex_decode(pk, d.public_key, 32) != 0 ||
        (name != NULL && strlen(name) > INGEST_NAME_MAX) ||
        (cls != NULL && strlen(cls) > INGEST_NAME_MAX)) {
        json_decref(root);
        ingest_reply_error(req, 400,
                           "body: {\"id\": 1..64 of [A-Za-z0-9._-], \"public_key\": 64 hex, "
                           "\"name\", \"device_class\": at most %d bytes}",
                           INGEST_NAME_MAX);
        return;
    }
    ferry_strlcpy(d.id, id, sizeof(d.id));
    batch_key_id(d.public_key, d.key_id);
    ferry_strlcpy(d.name, name != NULL ? name : "", sizeof(d.name));
    ferry_strlcpy(d.device_class, cls != NULL ? cls : "", sizeof(d.device_class));
    ferry_strlcpy(d.versions, "{}", sizeof(d.versions));
    d.enrolled_ns = ferry_realtime_ns();
    json_decref(root);
    char err[256] = "";
    int rc = ingest_store_device_add(ctx->store, &d, err, sizeof(err));
    if (rc == INGEST_STORE_EEXIST) {
        ingest_reply_error(req, 409, "%s", err[0] ? err : "id or key taken by another device");
        return;
    }
    if (rc == INGEST_STORE_EINVAL) {
        ingest_reply_error(req, 400, "%s", err);
        return;
    }
    if (rc != 0) {
        ingest_reply_retry(req, 503, 1, "store: device add failed");
        return;
    }
    ingest_devtab_invalidate(ctx->devtab, d.id);
    struct ferry_buf b = FERRY_BUF_INIT;
    if (ferry_buf_printf(&b, "{\"device_id\":\"%s\"}\n", d.id) != 0) {
        ferry_buf_free(&b);
        ingest_reply_error(req, 500, "out of memory");
        return;
    }
    ingest_reply(req, 200, "application/json", b.data, b.len);
    ferry_buf_free(&b);
}

static void handle_device_revoke(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_ctx *ctx = arg;
    char id[INGEST_DEVICE_ID_MAX + 1];
    if (ingest_route_segment("/v1/devices/*/revoke", path, id, sizeof(id)) != 0 ||
        !ingest_device_id_valid(id)) {
        ingest_reply_error(req, 400, "malformed device id");
        return;
    }
    int rc = ingest_store_device_revoke(ctx->store, id);
    if (rc == INGEST_STORE_ENOTFOUND) {
        ingest_reply_error(req, 404, "no device %s", id);
        return;
    }
    if (rc != 0) {
        ingest_reply_retry(req, 503, 1, "store: revoke failed");
        return;
    }
    /* This process refuses the device at once; others within limits.device_cache. */
    ingest_devtab_invalidate(ctx->devtab, id);
    char out[INGEST_DEVICE_ID_MAX + 48];
    int n = snprintf(out, sizeof(out), "{\"device_id\":\"%s\",\"revoked\":true}\n", id);
    ingest_reply(req, 200, "application/json", out, (size_t)n);
}

/* POST /v1/devices/{id}/labels: applies {"set":{...},"remove":[...]} to the stored labels
 * (store.h ingest_labels_patch) and answers {"device_id","labels"} with the result. Two
 * operators changing one device's labels at once: the last write wins whole (the read and the
 * write are not one transaction; labels change by hand, rarely). */
static void handle_device_labels(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_ctx *ctx = arg;
    char id[INGEST_DEVICE_ID_MAX + 1];
    if (ingest_route_segment("/v1/devices/*/labels", path, id, sizeof(id)) != 0 ||
        !ingest_device_id_valid(id)) {
        ingest_reply_error(req, 400, "malformed device id");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > LABELS_BODY_MAX) {
        ingest_reply_error(req, 413, "body of %zu bytes exceeds %d", len, LABELS_BODY_MAX);
        return;
    }
    char *body = malloc(len + 1);
    if (body == NULL) {
        ingest_reply_error(req, 500, "out of memory");
        return;
    }
    evbuffer_copyout(in, body, len);
    body[len] = '\0';
    if (strlen(body) != len) {
        free(body);
        ingest_reply_error(req, 400, "body: a NUL byte in JSON");
        return;
    }
    struct ingest_device d;
    int rc = ingest_store_device_get(ctx->store, id, &d);
    if (rc == INGEST_STORE_ENOTFOUND) {
        free(body);
        ingest_reply_error(req, 404, "no device %s", id);
        return;
    }
    if (rc != 0) {
        free(body);
        ingest_reply_retry(req, 503, 1, "store: label change failed");
        return;
    }
    char labels[INGEST_LABELS_MAX + 1], why[256] = "";
    rc = ingest_labels_patch(d.labels, body, labels, sizeof(labels), why, sizeof(why));
    free(body);
    if (rc != 0) {
        ingest_reply_error(req, 400, "%s", why[0] ? why : "out of memory");
        return;
    }
    rc = ingest_store_device_set_labels(ctx->store, id, labels);
    if (rc == INGEST_STORE_ENOTFOUND) {
        ingest_reply_error(req, 404, "no device %s", id);
        return;
    }
    if (rc != 0) {
        ingest_reply_retry(req, 503, 1, "store: label change failed");
        return;
    }
    struct ferry_buf b = FERRY_BUF_INIT;
    if (ferry_buf_printf(&b, "{\"device_id\":\"%s\",\"labels\":%s}\n", id, labels) != 0) {
        ferry_buf_free(&b);
        ingest_reply_error(req, 500, "out of memory");
        return;
    }
    ingest_reply(req, 200, "application/json", b.data, b.len);
    ferry_buf_free(&b);
}

int ingest_admin_api_register(struct ingest_router *r, struct ingest_ctx *ctx)
{
    int rc = ingest_router_add(r, EVHTTP_REQ_POST, "/v1/devices", INGEST_ACCESS_ADMIN,
                               handle_device_add, ctx);
    if (rc == 0)
        rc = ingest_router_add(r, EVHTTP_REQ_POST, "/v1/devices/*/revoke", INGEST_ACCESS_ADMIN,
                               handle_device_revoke, ctx);
    if (rc == 0)
        rc = ingest_router_add(r, EVHTTP_REQ_POST, "/v1/devices/*/labels", INGEST_ACCESS_OPERATOR,
                               handle_device_labels, ctx);
    return rc != 0 ? INGEST_EINVAL : 0;
}
