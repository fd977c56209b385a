/*
 * router.h - ferry-ingest's HTTP router and reply helpers: the leaf every part of the ingest
 * (the API, releases, and the parts that add endpoints later) uses to add routes and to answer.
 *
 * It depends on libevent's evhttp and common/ only, so a part such as cloud-ingest/release/ links
 * this library and the store, never the server's objects.
 *
 * Ownership: the router owns its route table; handlers' `arg` pointers are borrowed and must
 * outlive the router. Routes are added before the server starts; lookups are then read-only and
 * safe from every worker thread.
 */
#ifndef FERRY_INGEST_ROUTER_H
#define FERRY_INGEST_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

struct evhttp_request;

struct ingest_router;

/*
 * Who may call a route. The server checks it at dispatch, before the handler runs
 * (cloud-ingest/auth/auth.h, docs/security.md):
 *   PUBLIC    anyone (/healthz, /v1/enroll: enrolment proves itself with its token and key)
 *   DEVICE_BODY  a device whose request body carries its own signature, verified by the handler
 *             before anything else is decoded (POST /v1/batches, docs/wire-format.md)
 *   DEVICE    a device-signed request (X-Ferry-Device, X-Ferry-Time, X-Ferry-Nonce,
 *             X-Ferry-Signature; transport/reqsign.h). Dispatch verifies the signature, that the
 *             device is known and not revoked, and - for a pattern whose first '*' is followed by
 *             more of the pattern, as /v1/devices/ * /manifest - that the '*' segment is the
 *             signing device's id. The handler may then trust X-Ferry-Device.
 *   METRICS   /metrics: a viewer token, or anyone when [server] metrics_public = true
 *   VIEWER    an API token of role viewer, operator or admin (reads)
 *   OPERATOR  role operator or admin (actions)
 *   ADMIN     role admin (devices, releases, tokens, the audit log)
 */
enum ingest_access {
    INGEST_ACCESS_PUBLIC = 0,
    INGEST_ACCESS_DEVICE_BODY = 1,
    INGEST_ACCESS_DEVICE = 2,
    INGEST_ACCESS_METRICS = 3,
    INGEST_ACCESS_VIEWER = 4,
    INGEST_ACCESS_OPERATOR = 5,
    INGEST_ACCESS_ADMIN = 6,
};

/* The header a DEVICE route's handler may trust once dispatch verified the request. */
#define INGEST_DEVICE_HEADER "X-Ferry-Device"

/* A route handler. `path` is the request path without the query string. It must reply to `req`
 * exactly once (now, or later on the same thread's loop). Runs on a worker thread. */
typedef void (*ingest_handler_fn)(struct evhttp_request *req, const char *path, void *arg);

/* Creates an empty router. Returns NULL when out of memory. */
struct ingest_router *ingest_router_new(void);
void ingest_router_free(struct ingest_router *router);

/*
 * Adds a route: requests whose method is in `methods` (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD ...)
 * and whose path matches `pattern` go to `handler` with `arg`. In a pattern, '*' matches one
 * non-empty path segment; a pattern ending in '/' matches every path below it; otherwise the whole
 * path must match. The pattern with the most literal characters wins. `access` says who may call
 * it (checked by the server before `handler` runs). Call before the server starts. Returns 0 or
 * -1 (table full, pattern too long or not starting with '/').
 */
int ingest_router_add(struct ingest_router *router, int methods, const char *pattern,
                      enum ingest_access access, ingest_handler_fn handler, void *arg)
    __attribute__((warn_unused_result));

/* A route as found for a request. `pattern` points into the router. */
struct ingest_route_match {
    ingest_handler_fn handler;
    void *arg;
    enum ingest_access access;
    const char *pattern;
};

/* The route for `path` and `method`: 0 with *out set; -1 when no pattern matches
 * (*method_mismatch tells whether one matched the path with another method). */
int ingest_router_find(const struct ingest_router *router, const char *path, int method,
                       struct ingest_route_match *out, bool *method_mismatch);

/* When `pattern` (a route pattern) has a '*' followed by more literal text, copies the path
 * segment that '*' matches in `path` to out[out_len] and returns 0; -1 otherwise (no such '*',
 * no match, or the segment does not fit). Used to bind /v1/devices/ * /manifest to its device. */
int ingest_route_segment(const char *pattern, const char *path, char *out, size_t out_len);

/* Replies with `code`, an optional Content-Type and `len` bytes of body (copied). */
void ingest_reply(struct evhttp_request *req, int code, const char *content_type, const void *body,
                  size_t len);
/* Replies with `code` and a JSON body {"error": "<formatted message>"} (valid JSON whatever the
 * message holds). */
void ingest_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* As ingest_reply_error, with a Retry-After header of `retry_after_s` seconds (at least 1). */
void ingest_reply_retry(struct evhttp_request *req, int code, unsigned retry_after_s,
                        const char *msg);

#endif
