/*
 * silences.c - the silences that mute alert notifications: one store entry silence/<id> each,
 * written and removed by `ferry-ingest alerts silence|unsilence` (alerts_cli.c) and by
 * POST /v1/silences and DELETE /v1/silences/{id}, listed by `alerts silences` and
 * GET /v1/silences (docs/alerts.md "Silences"). Both paths go through the functions here, so an
 * entry written by one is exactly what the other writes, and the engine (engine.c) reads either.
 *
 * An entry is {"id", "rule", "device", "starts_ns", "ends_ns", "comment", "created_ns",
 * "created_by"}: rule and/or device non-empty ("" = any), times on the ingest's clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/alerts/alerts_int.h"
#include "cloud-ingest/auth/auth.h"
#include "cloud-ingest/router.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/utf8.h"
#include "common/util.h"

static int fail(char *err, size_t err_len, const char *msg)
{
    snprintf(err, err_len, "%s", msg);
    return ALERTS_SILENCE_EINVAL;
}

/* A rule name as the configuration allows it: 1-64 characters of [A-Za-z0-9._-]. */
static bool rule_name_valid(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= ALERTS_NAME_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

bool alerts_silence_id_valid(const char *id)
{
    return id != NULL && strlen(id) == ALERTS_SILENCE_ID_LEN &&
           strspn(id, "0123456789abcdef") == ALERTS_SILENCE_ID_LEN;
}

int alerts_silence_check(const struct alerts_silence_req *req, char *err, size_t err_len)
{
    const char *rule = req->rule ? req->rule : "", *device = req->device ? req->device : "";
    const char *comment = req->comment ? req->comment : "";
    const char *by = req->created_by ? req->created_by : "";
    if (rule[0] == '\0' && device[0] == '\0')
        return fail(err, err_len, "a silence needs a rule and/or a device");
    if (rule[0] != '\0' && !rule_name_valid(rule))
        return fail(err, err_len, "rule: must be 1-64 characters of [A-Za-z0-9._-]");
    if (device[0] != '\0' && !ingest_device_id_valid(device))
        return fail(err, err_len, "device: not a device id");
    if (req->for_ms <= 0 || req->for_ms > ALERTS_SILENCE_FOR_MAX_MS)
        return fail(err, err_len, "for: must be a duration above 0 and at most 365d");
    size_t clen = strlen(comment);
    if (clen > ALERTS_SILENCE_COMMENT_MAX)
        return fail(err, err_len, "comment: longer than 1024 bytes");
    if (!ferry_utf8_valid(comment, clen) || strlen(by) > INGEST_AUDIT_ACTOR_MAX ||
        !ferry_utf8_valid(by, strlen(by)))
        return fail(err, err_len, "comment: not valid UTF-8");
    return 0;
}

int alerts_silence_add(struct ingest_store *st, const struct alerts_silence_req *req,
                       int64_t now_ns, char id[ALERTS_SILENCE_ID_LEN + 1], char *err,
                       size_t err_len)
{
    int rc = alerts_silence_check(req, err, err_len);
    if (rc != 0)
        return rc;
    const char *rule = req->rule ? req->rule : "", *device = req->device ? req->device : "";
    const char *comment = req->comment ? req->comment : "";
    const char *by = req->created_by ? req->created_by : "";
    uint8_t raw[ALERTS_SILENCE_ID_LEN / 2];
    randombytes_buf(raw, sizeof(raw));
    ferry_hex_encode(raw, sizeof(raw), id);
    char key[32];
    snprintf(key, sizeof(key), "silence/%s", id);
    json_t *s = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:s}", "id", id, "rule", rule,
                          "device", device, "starts_ns", (json_int_t)now_ns, "ends_ns",
                          (json_int_t)(now_ns + req->for_ms * 1000000LL), "created_ns",
                          (json_int_t)now_ns, "comment", comment, "created_by", by);
    char *text = s ? json_dumps(s, JSON_COMPACT) : NULL;
    json_decref(s);
    if (text == NULL) {
        snprintf(err, err_len, "out of memory");
        return INGEST_STORE_ENOMEM;
    }
    struct ingest_kv_op op = {key, text, strlen(text), false};
    rc = ingest_store_kv_apply(st, &op, 1, NULL, NULL);
    free(text);
    if (rc != 0)
        snprintf(err, err_len, "%s", ingest_store_strerror(rc));
    return rc;
}

int alerts_silence_remove(struct ingest_store *st, const char *id)
{
    if (!alerts_silence_id_valid(id))
        return ALERTS_SILENCE_EINVAL;
    char key[32];
    snprintf(key, sizeof(key), "silence/%s", id);
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = ingest_store_kv_get(st, key, &b);
    ferry_buf_free(&b);
    struct ingest_kv_op op = {key, NULL, 0, true};
    if (rc == 0)
        rc = ingest_store_kv_apply(st, &op, 1, NULL, NULL);
    return rc;
}

static int collect_cb(const char *key, const void *value, size_t len, void *arg)
{
    json_error_t jerr;
    json_t *o = json_loadb(value, len, 0, &jerr);
    (void)key;
    if (o != NULL && json_is_object(o) && json_array_append_new(arg, o) != 0)
        return 1;
    if (o != NULL && !json_is_object(o))
        json_decref(o);
    return 0;
}

int alerts_silences_read(struct ingest_store *st, json_t **out)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return INGEST_STORE_ENOMEM;
    int rc = ingest_store_kv_scan(st, "silence/", 0, collect_cb, arr);
    if (rc != 0) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

/* RFC 3339 UTC to the second ("" for 0). */
static json_t *rfc3339(int64_t ns)
{
    char out[32] = "";
    time_t s = (time_t)(ns / 1000000000LL);
    struct tm tm;
    if (ns > 0 && gmtime_r(&s, &tm) != NULL)
        strftime(out, sizeof(out), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(out);
}

static const char *str_or_empty(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

int alerts_silences_json(struct ingest_store *st, int64_t now_ns, struct ferry_buf *out)
{
    json_t *stored = NULL;
    int rc = alerts_silences_read(st, &stored);
    if (rc != 0)
        return rc;
    json_t *list = json_array(), *doc = json_pack("{s:o}", "silences", list);
    size_t i;
    json_t *s;
    json_array_foreach(stored, i, s)
    {
        int64_t starts = json_integer_value(json_object_get(s, "starts_ns"));
        int64_t ends = json_integer_value(json_object_get(s, "ends_ns"));
        /* Every string came out of jansson, which holds only valid UTF-8: the output is valid. */
        json_t *o = json_pack(
            "{s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:s, s:s, s:b}", "id", str_or_empty(s, "id"),
            "rule", str_or_empty(s, "rule"), "device", str_or_empty(s, "device"), "starts",
            rfc3339(starts), "ends", rfc3339(ends), "starts_ns", (json_int_t)starts, "ends_ns",
            (json_int_t)ends, "comment", str_or_empty(s, "comment"), "created_by",
            str_or_empty(s, "created_by"), "active", starts <= now_ns && now_ns < ends);
        if (o == NULL || json_array_append_new(list, o) != 0)
            rc = INGEST_STORE_ENOMEM;
    }
    json_decref(stored);
    char *text = rc == 0 && doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL)
        return INGEST_STORE_ENOMEM;
    if (ferry_buf_append(out, text, strlen(text)) != 0 || ferry_buf_append(out, "\n", 1) != 0)
        rc = INGEST_STORE_ENOMEM;
    free(text);
    return rc;
}

/* ---- HTTP ----------------------------------------------------------------------------------- */

/* "token:NAME" of the request's bearer token, for created_by and the audit log. Dispatch has
 * already checked the token (operator); this looks it up again only for its name. */
static void request_actor(struct ingest_store *st, struct evhttp_request *req, char *out,
                          size_t out_len)
{
    const char *authz = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    struct ingest_api_token who;
    memset(&who, 0, sizeof(who));
    (void)ingest_auth_check_bearer(st, authz, INGEST_ACCESS_OPERATOR, ferry_realtime_ns(), &who);
    snprintf(out, out_len, "token:%s", who.name[0] ? who.name : "-");
}

static void audit(struct ingest_store *st, struct evhttp_request *req, const char *actor,
                  const char *action, const char *target, int status)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, &addr, &port);
    if (ingest_auth_audit(st, actor, action, target, addr != NULL ? addr : "-", status) != 0)
        log_warn("alerts", "audit log: cannot record %s %s by %s", action, target, actor);
}

static void handle_list(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_store *st = arg;
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = alerts_silences_json(st, ferry_realtime_ns(), &b);
    if (rc != 0)
        ingest_reply_retry(req, 503, 1, "silences: store unavailable");
    else
        ingest_reply(req, 200, "application/json", b.data, b.len);
    (void)path;
    ferry_buf_free(&b);
}

/* A string member of the body, or "" when absent; false when present and not a string. */
static bool body_string(json_t *body, const char *k, const char **out)
{
    json_t *v = json_object_get(body, k);
    *out = v == NULL || json_is_null(v) ? "" : json_string_value(v);
    return *out != NULL;
}

int alerts_silence_parse_body(const void *body, size_t len, struct alerts_silence_req *req,
                              json_t **doc, char *err, size_t err_len)
{
    *doc = NULL;
    if (len > ALERTS_SILENCE_BODY_MAX) {
        snprintf(err, err_len, "body of %zu bytes, at most %d", len, ALERTS_SILENCE_BODY_MAX);
        return ALERTS_SILENCE_ETOOBIG;
    }
    json_error_t jerr;
    json_t *o = json_loadb(body, len, 0, &jerr);
    if (o == NULL) {
        snprintf(err, err_len, "not JSON (%s at byte %d)", jerr.text, jerr.position);
        return ALERTS_SILENCE_EINVAL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        return fail(err, err_len, "not a JSON object");
    }
    const char *k, *for_text = "";
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (strcmp(k, "rule") != 0 && strcmp(k, "device") != 0 && strcmp(k, "for") != 0 &&
            strcmp(k, "comment") != 0) {
            snprintf(err, err_len, "unknown member \"%.64s\"", k);
            json_decref(o);
            return ALERTS_SILENCE_EINVAL;
        }
    }
    memset(req, 0, sizeof(*req));
    if (!body_string(o, "rule", &req->rule) || !body_string(o, "device", &req->device) ||
        !body_string(o, "for", &for_text) || !body_string(o, "comment", &req->comment)) {
        json_decref(o);
        return fail(err, err_len, "rule, device, for and comment must be strings");
    }
    if (strlen(for_text) > 32 || ferry_parse_duration_ms(for_text, &req->for_ms) != 0) {
        snprintf(err, err_len, "for: \"%.32s\" is not a duration (30m, 4h, 2d)", for_text);
        json_decref(o);
        return ALERTS_SILENCE_EINVAL;
    }
    int rc = alerts_silence_check(req, err, err_len);
    if (rc != 0) {
        json_decref(o);
        return rc;
    }
    *doc = o; /* req's strings point into it */
    return 0;
}

static void handle_create(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_store *st = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    struct alerts_silence_req r;
    json_t *doc = NULL;
    char err[256] = "", actor[INGEST_AUDIT_ACTOR_MAX + 1];
    /* The length is checked before the body is made contiguous. */
    int rc =
        n > ALERTS_SILENCE_BODY_MAX
            ? alerts_silence_parse_body(NULL, n, &r, &doc, err, sizeof(err))
            : alerts_silence_parse_body(evbuffer_pullup(in, -1), n, &r, &doc, err, sizeof(err));
    if (rc != 0) {
        ingest_reply_error(req, rc == ALERTS_SILENCE_ETOOBIG ? 413 : 400, "%s: body: %s", path,
                           err);
        return;
    }
    request_actor(st, req, actor, sizeof(actor));
    r.created_by = actor;
    char id[ALERTS_SILENCE_ID_LEN + 1];
    rc = alerts_silence_add(st, &r, ferry_realtime_ns(), id, err, sizeof(err));
    json_decref(doc);
    if (rc == ALERTS_SILENCE_EINVAL) {
        ingest_reply_error(req, 400, "%s: body: %s", path, err);
        return;
    }
    if (rc != 0) {
        ingest_reply_retry(req, 503, 1, "silences: store unavailable");
        return;
    }
    audit(st, req, actor, "alert.silence", id, 201);
    char reply[64];
    int len = snprintf(reply, sizeof(reply), "{\"id\":\"%s\"}\n", id);
    ingest_reply(req, 201, "application/json", reply, (size_t)len);
}

static void handle_delete(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_store *st = arg;
    const char *id = path + strlen("/v1/silences/");
    if (!alerts_silence_id_valid(id)) {
        ingest_reply_error(req, 400, "%s: not a silence id (16 hex digits)", path);
        return;
    }
    int rc = alerts_silence_remove(st, id);
    if (rc == INGEST_STORE_ENOTFOUND) {
        ingest_reply_error(req, 404, "%s: no such silence", path);
        return;
    }
    if (rc != 0) {
        ingest_reply_retry(req, 503, 1, "silences: store unavailable");
        return;
    }
    char actor[INGEST_AUDIT_ACTOR_MAX + 1];
    request_actor(st, req, actor, sizeof(actor));
    audit(st, req, actor, "alert.unsilence", id, 204);
    ingest_reply(req, 204, NULL, NULL, 0);
}

int alerts_silences_register(struct ingest_router *router, struct ingest_store *store)
{
    if (ingest_router_add(router, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/v1/silences",
                          INGEST_ACCESS_VIEWER, handle_list, store) != 0 ||
        ingest_router_add(router, EVHTTP_REQ_POST, "/v1/silences", INGEST_ACCESS_OPERATOR,
                          handle_create, store) != 0 ||
        ingest_router_add(router, EVHTTP_REQ_DELETE, "/v1/silences/*", INGEST_ACCESS_OPERATOR,
                          handle_delete, store) != 0)
        return -1;
    return 0;
}
