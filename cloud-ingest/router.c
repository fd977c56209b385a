/*
 * router.c - the route table of ferry-ingest and the reply helpers every handler uses.
 *
 * A leaf: libevent's evhttp and common/ only (see router.h). The table is a fixed array filled
 * before the server starts and only read afterwards, so workers share it without locks.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "cloud-ingest/router.h"
#include "common/buf.h"
#include "common/util.h"

#define ROUTES_MAX 64

struct route {
    int methods;
    char pattern[128];
    size_t literal_chars;
    enum ingest_access access;
    ingest_handler_fn fn;
    void *arg;
};

struct ingest_router {
    struct route routes[ROUTES_MAX];
    size_t n;
};

struct ingest_router *ingest_router_new(void)
{
    return calloc(1, sizeof(struct ingest_router));
}

void ingest_router_free(struct ingest_router *router)
{
    free(router);
}

int ingest_router_add(struct ingest_router *router, int methods, const char *pattern,
                      enum ingest_access access, ingest_handler_fn handler, void *arg)
{
    if (router->n >= ROUTES_MAX || pattern[0] != '/' ||
        strlen(pattern) >= sizeof(router->routes[0].pattern))
        return -1;
    struct route *r = &router->routes[router->n++];
    r->methods = methods;
    ferry_strlcpy(r->pattern, pattern, sizeof(r->pattern));
    r->literal_chars = 0;
    for (const char *p = pattern; *p; p++)
        r->literal_chars += *p != '*';
    r->access = access;
    r->fn = handler;
    r->arg = arg;
    return 0;
}

/* Pattern match: '*' matches one non-empty path segment; a pattern ending in '/' matches every
 * path below it; otherwise the whole path must match. */
static bool route_match(const char *pat, const char *path)
{
    while (*pat) {
        if (*pat == '*') {
            if (*path == '\0' || *path == '/')
                return false;
            while (*path && *path != '/')
                path++;
            pat++;
            continue;
        }
        if (*pat != *path)
            return false;
        if (*pat == '/' && pat[1] == '\0')
            return true;
        pat++;
        path++;
    }
    return *path == '\0';
}

int ingest_router_find(const struct ingest_router *router, const char *path, int method,
                       struct ingest_route_match *out, bool *method_mismatch)
{
    const struct route *best = NULL;
    *method_mismatch = false;
    for (size_t i = 0; i < router->n; i++) {
        const struct route *r = &router->routes[i];
        if (!route_match(r->pattern, path))
            continue;
        if (!(r->methods & method)) {
            *method_mismatch = true;
            continue;
        }
        if (best == NULL || r->literal_chars > best->literal_chars)
            best = r;
    }
    if (best == NULL)
        return -1;
    out->handler = best->fn;
    out->arg = best->arg;
    out->access = best->access;
    out->pattern = best->pattern;
    return 0;
}

int ingest_route_segment(const char *pattern, const char *path, char *out, size_t out_len)
{
    const char *star = strchr(pattern, '*');
    if (star == NULL || star[1] == '\0')
        return -1;
    size_t prefix = (size_t)(star - pattern);
    if (strncmp(pattern, path, prefix) != 0)
        return -1;
    const char *seg = path + prefix;
    size_t n = strcspn(seg, "/");
    if (n == 0 || n >= out_len)
        return -1;
    memcpy(out, seg, n);
    out[n] = '\0';
    return 0;
}

void ingest_reply(struct evhttp_request *req, int code, const char *content_type, const void *body,
                  size_t len)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    if (content_type != NULL)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
    if (len > 0 && evbuffer_add(out, body, len) != 0)
        code = 500;
    evhttp_send_reply(req, code, NULL, NULL);
}

void ingest_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct ferry_buf b = FERRY_BUF_INIT;
    if (ferry_buf_append(&b, "{\"error\":", 9) != 0 ||
        ferry_buf_append_json_string(&b, msg, strlen(msg)) != 0 ||
        ferry_buf_append(&b, "}\n", 2) != 0) {
        ferry_buf_free(&b);
        evhttp_send_reply(req, 500, NULL, NULL);
        return;
    }
    ingest_reply(req, code, "application/json", b.data, b.len);
    ferry_buf_free(&b);
}

void ingest_reply_retry(struct evhttp_request *req, int code, unsigned retry_after_s,
                        const char *msg)
{
    char v[16];
    snprintf(v, sizeof(v), "%u", retry_after_s ? retry_after_s : 1);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", v);
    ingest_reply_error(req, code, "%s", msg);
}
