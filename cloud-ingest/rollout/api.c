/*
 * api.c - /v1/rollouts: the rollouts as `ferry-ingest rollout list --json` and `status --json`
 * show them (viewer), and the operator commands (operator). Commands are appended to the store
 * like the CLI's (records.c, rollout_command) and take effect at once for every reader; the
 * server's dispatch writes the request to the audit log with the token's name.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>

#include "cloud-ingest/auth/auth.h"
#include "cloud-ingest/ingest.h"
#include "cloud-ingest/release/release.h"
#include "cloud-ingest/rollout/rollout.h"
#include "cloud-ingest/rollout/rollout_int.h"
#include "cloud-ingest/router.h"
#include "common/log.h"
#include "common/util.h"
#include "transport/manifest.h"

static void reply_json(struct evhttp_request *req, json_t *o)
{
    /* jansson holds only valid UTF-8 strings, and every string stored was checked: the body is
     * valid UTF-8 JSON. */
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text == NULL) {
        ingest_reply_error(req, 500, "rollouts: out of memory");
        return;
    }
    size_t n = strlen(text);
    text[n] = '\n';
    ingest_reply(req, 200, "application/json", text, n + 1);
    free(text);
}

static void handle_list(struct evhttp_request *req, const char *path, void *arg)
{
    struct rollouts *ro = arg;
    json_t *ids = NULL, *all = json_array();
    (void)path;
    if (all == NULL || rollout_list_ids(ro->store, &ids) != 0) {
        json_decref(all);
        ingest_reply_retry(req, 503, 1, "rollouts: store unavailable");
        return;
    }
    size_t i;
    json_t *id;
    int64_t now = ferry_realtime_ns();
    json_array_foreach(ids, i, id)
    {
        struct rollout r;
        char err[256];
        if (rollout_load(ro->store, json_string_value(id), now, &r, NULL, err, sizeof(err)) == 0)
            json_array_append_new(all, rollout_to_json_obj(&r));
    }
    json_decref(ids);
    json_t *doc = json_pack("{s:o}", "rollouts", all);
    reply_json(req, doc);
    json_decref(doc);
}

/* The id segment of /v1/rollouts/{id}[/...] into id; false when it is not a rollout id. */
static bool path_id(const char *path, char id[ROLLOUT_ID_LEN + 1], const char **rest)
{
    const char *p = path + strlen("/v1/rollouts/");
    size_t n = strcspn(p, "/");
    if (n != ROLLOUT_ID_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
    memcpy(id, p, n);
    id[n] = '\0';
    *rest = p + n;
    return true;
}

static void handle_get(struct evhttp_request *req, const char *path, void *arg)
{
    struct rollouts *ro = arg;
    char id[ROLLOUT_ID_LEN + 1], err[256] = "";
    const char *rest;
    if (!path_id(path, id, &rest) || *rest != '\0') {
        ingest_reply_error(req, 404, "no rollout at %s", path);
        return;
    }
    json_t *o = NULL;
    int rc = rollout_status_json(ro->store, id, ferry_realtime_ns(), &o, err, sizeof(err));
    if (rc == INGEST_STORE_ENOTFOUND)
        ingest_reply_error(req, 404, "no rollout %s", id);
    else if (rc != 0)
        ingest_reply_retry(req, 503, 1, "rollouts: store unavailable");
    else
        reply_json(req, o);
    json_decref(o);
}

static void handle_compare(struct evhttp_request *req, const char *path, void *arg)
{
    struct rollouts *ro = arg;
    char id[ROLLOUT_ID_LEN + 1], err[256] = "";
    const char *rest;
    if (!path_id(path, id, &rest) || strcmp(rest, "/compare") != 0) {
        ingest_reply_error(req, 404, "no rollout at %s", path);
        return;
    }
    json_t *o = NULL;
    int rc = rollout_compare_json(ro->store, id, ferry_realtime_ns(), &o, err, sizeof(err));
    if (rc == INGEST_STORE_ENOTFOUND)
        ingest_reply_error(req, 404, "no rollout %s", id);
    else if (rc != 0)
        ingest_reply_retry(req, 503, 1, "rollouts: store unavailable");
    else
        reply_json(req, o);
    json_decref(o);
}

static void handle_command(struct evhttp_request *req, const char *path, void *arg)
{
    struct rollouts *ro = arg;
    char id[ROLLOUT_ID_LEN + 1], why[256];
    const char *rest;
    int op = path_id(path, id, &rest) && rest[0] == '/' ? rollout_op_parse(rest + 1) : -1;
    if (op < 0) {
        ingest_reply_error(req, 404, "no rollout command at %s", path);
        return;
    }
    if (rollout_command(ro->store, id, (enum rollout_op)op, "api", why, sizeof(why)) != 0) {
        ingest_reply_error(req, strstr(why, "not found") != NULL ? 404 : 409, "rollout %s: %s", id,
                           why);
        return;
    }
    struct rollout r;
    if (rollout_load(ro->store, id, ferry_realtime_ns(), &r, NULL, why, sizeof(why)) != 0) {
        ingest_reply_retry(req, 503, 1, "rollouts: store unavailable");
        return;
    }
    json_t *o = json_pack("{s:s, s:s, s:s}", "id", id, "state", rollout_state_name(r.state),
                          "reason", r.reason);
    reply_json(req, o);
    json_decref(o);
}

/* The largest POST /v1/rollouts body: two manifest envelopes as JSON strings (escaping adds
 * little: an envelope is JSON of base64 and hex) and the settings. */
#define ROLLOUT_CREATE_BODY_MAX (2 * MANIFEST_MAX_BYTES + 65536)

int rollout_create_args_from_json(const char *body, size_t len, struct rollout_create_args *a,
                                  json_t **root, char *err, size_t err_len)
{
    static const struct {
        const char *key;
        size_t offset;
    } strings[] = {
        {"manifest", offsetof(struct rollout_create_args, manifest)},
        {"rollback_manifest", offsetof(struct rollout_create_args, rollback)},
        {"selector", offsetof(struct rollout_create_args, selector)},
        {"waves", offsetof(struct rollout_create_args, waves)},
        {"on_fail", offsetof(struct rollout_create_args, on_fail)},
        {"window", offsetof(struct rollout_create_args, window)},
        {"name", offsetof(struct rollout_create_args, name)},
        {"soak", offsetof(struct rollout_create_args, soak)},
        {"deadline", offsetof(struct rollout_create_args, deadline)},
        {"min_devices", offsetof(struct rollout_create_args, min_devices)},
    };
    rollout_create_args_defaults(a);
    json_error_t jerr;
    *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(*root)) {
        snprintf(err, err_len, "body: a JSON object expected (%s at byte %d)",
                 *root == NULL ? jerr.text : "not an object", *root == NULL ? jerr.position : 0);
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(*root, key, v)
    {
        if (strcmp(key, "gates") == 0) {
            size_t i;
            json_t *g;
            if (!json_is_array(v) || json_array_size(v) > ROLLOUT_GATES_MAX) {
                snprintf(err, err_len, "gates: an array of at most %d strings", ROLLOUT_GATES_MAX);
                return -1;
            }
            json_array_foreach(v, i, g)
            {
                if (!json_is_string(g)) {
                    snprintf(err, err_len, "gates[%zu]: a string expected", i);
                    return -1;
                }
                a->gates[a->n_gates++] = json_string_value(g);
            }
            continue;
        }
        size_t k = 0;
        while (k < sizeof(strings) / sizeof(strings[0]) && strcmp(key, strings[k].key) != 0)
            k++;
        if (k == sizeof(strings) / sizeof(strings[0])) {
            snprintf(err, err_len, "body: unknown member \"%.64s\"", key);
            return -1;
        }
        /* min_devices may be a number, as JSON has it */
        if (strcmp(key, "min_devices") == 0 && json_is_integer(v)) {
            char num[24];
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
            json_object_set_new(*root, "min_devices", json_string(num));
            v = json_object_get(*root, "min_devices");
        }
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
            snprintf(err, err_len, "%s: a string without NUL expected", key);
            return -1;
        }
        *(const char **)((char *)a + strings[k].offset) = json_string_value(v);
    }
    if (a->manifest == NULL) {
        snprintf(err, err_len, "manifest: the signed manifest envelope (a string) is required");
        return -1;
    }
    return 0;
}

/* POST /v1/rollouts (operator): creates a rollout as `rollout create` does, from a JSON body
 * of the same settings and the signed manifest(s) as strings; the artifacts must have been
 * uploaded (PUT /v1/artifacts). 201 {"id",...}; 400 with what was wrong and nothing written;
 * 409 for a release the published one or a running rollout conflicts with. */
static void handle_create(struct evhttp_request *req, const char *path, void *arg)
{
    (void)path;
    struct rollouts *ro = arg;
    const struct ingest_config *cfg = ro->cfg;
    if (cfg->n_release_keys == 0) {
        ingest_reply_error(req, 409,
                           "creating rollouts over the API needs release.public_keys in the "
                           "ingest's configuration");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > ROLLOUT_CREATE_BODY_MAX) {
        ingest_reply_error(req, 413, "body of %zu bytes exceeds %u", len,
                           (unsigned)ROLLOUT_CREATE_BODY_MAX);
        return;
    }
    const char *body = len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
    struct rollout_create_args a;
    struct rollout_create_release rel;
    memset(&rel, 0, sizeof(rel));
    json_t *root = NULL;
    char err[1024] = "";
    struct rollout *r = calloc(1, sizeof(*r));
    const uint8_t(*keys)[32] = (const uint8_t(*)[32])cfg->release_keys;
    if (r == NULL || body == NULL) {
        ingest_reply_error(req, 500, "rollouts: out of memory");
        goto out;
    }
    if (rollout_create_args_from_json(body, len, &a, &root, err, sizeof(err)) != 0 ||
        rollout_create_settings(&a, r, err, sizeof(err)) != 0 ||
        ingest_release_parse_verified((const uint8_t *)a.manifest, strlen(a.manifest), keys,
                                      cfg->n_release_keys, &rel.m, err, sizeof(err)) != 0 ||
        (a.rollback != NULL &&
         ingest_release_parse_verified((const uint8_t *)a.rollback, strlen(a.rollback), keys,
                                       cfg->n_release_keys, &rel.rb, err, sizeof(err)) != 0)) {
        ingest_reply_error(req, 400, "%s", err);
        goto out;
    }
    rel.len = strlen(a.manifest);
    rel.data = (uint8_t *)strdup(a.manifest);
    rel.rlen = a.rollback != NULL ? strlen(a.rollback) : 0;
    rel.rdata = a.rollback != NULL ? (uint8_t *)strdup(a.rollback) : NULL;
    if (rel.data == NULL || (a.rollback != NULL && rel.rdata == NULL)) {
        ingest_reply_error(req, 500, "rollouts: out of memory");
        goto out;
    }
    int rc = rollout_create_verified(cfg, ro->store, r, &rel, err, sizeof(err));
    if (rc == -2)
        ingest_reply_retry(req, 503, 1, err);
    else if (rc != 0)
        ingest_reply_error(req, rc == -3 ? 409 : 400, "%s", err);
    if (rc != 0)
        goto out;
    char target[512];
    rollout_create_audit_target(r, target, sizeof(target));
    if (ingest_auth_audit_request(ro->store, req, "rollout.create", target, 201) != 0)
        log_warn("ingest", "audit log: cannot record rollout.create %s", target);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:i}", "id", r->id, "device_class",
                          r->device_class, "component", r->component, "version", r->version,
                          "serial", (json_int_t)r->serial, "waves", (int)r->n_waves);
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL)
        ingest_reply_error(req, 500, "rollouts: out of memory");
    else {
        size_t n = strlen(text);
        text[n] = '\n';
        ingest_reply(req, 201, "application/json", text, n + 1);
    }
    free(text);
out:
    rollout_create_release_free(&rel);
    json_decref(root);
    free(r);
}

int rollouts_register(struct ingest_router *router, struct rollouts *ro)
{
    int rc = ingest_router_add(router, EVHTTP_REQ_GET, "/v1/rollouts", INGEST_ACCESS_VIEWER,
                               handle_list, ro);
    if (rc == 0)
        rc = ingest_router_add(router, EVHTTP_REQ_POST, "/v1/rollouts", INGEST_ACCESS_OPERATOR,
                               handle_create, ro);
    if (rc == 0)
        rc = ingest_router_add(router, EVHTTP_REQ_GET, "/v1/rollouts/*", INGEST_ACCESS_VIEWER,
                               handle_get, ro);
    if (rc == 0)
        rc = ingest_router_add(router, EVHTTP_REQ_GET, "/v1/rollouts/*/compare",
                               INGEST_ACCESS_VIEWER, handle_compare, ro);
    static const char *const ops[] = {"pause", "resume", "abort", "promote"};
    for (size_t i = 0; rc == 0 && i < 4; i++) {
        char pattern[64];
        snprintf(pattern, sizeof(pattern), "/v1/rollouts/*/%s", ops[i]);
        rc = ingest_router_add(router, EVHTTP_REQ_POST, pattern, INGEST_ACCESS_OPERATOR,
                               handle_command, ro);
    }
    return rc;
}
