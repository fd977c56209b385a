/*
 * api.c - /v1/rollouts: the rollouts as `ferry-ingest rollout list --json` and `status --json`
 * show them (viewer), and the operator commands (operator). Commands are appended to the store
 * like the CLI's (records.c, rollout_command) and take effect at once for every reader; the
 * server's dispatch writes the request to the audit log with the token's name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <jansson.h>

#include "cloud-ingest/rollout/rollout.h"
#include "cloud-ingest/rollout/rollout_int.h"
#include "cloud-ingest/router.h"
#include "common/util.h"

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

int rollouts_register(struct ingest_router *router, struct rollouts *ro)
{
    int rc = ingest_router_add(router, EVHTTP_REQ_GET, "/v1/rollouts", INGEST_ACCESS_VIEWER,
                               handle_list, ro);
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
