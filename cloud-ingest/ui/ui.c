/*
 * ui.c - serves the embedded console assets under /ui/ (ui.h says what and why).
 *
 * /ui/ and /ui/index.html answer index.html; /ui/<name> answers the embedded file <name>; anything
 * else under /ui/ is a 404. The ETag is the FNV-1a 64-bit hash of the file's bytes, computed per
 * request: the files are tens of kilobytes, the hash costs microseconds, and it needs no state
 * that would have to outlive the router.
 */
#include "cloud-ingest/ui/ui.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "cloud-ingest/router.h"
#include "cloud-ingest/ui/ui_assets.h"

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot != NULL && strcmp(dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (dot != NULL && strcmp(dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    if (dot != NULL && strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    return "application/octet-stream";
}

static uint64_t fnv1a64(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void add_security_headers(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Security-Policy", INGEST_UI_CSP);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
}

static const struct ui_asset *find_asset(const char *name)
{
    for (unsigned i = 0; i < ui_assets_count; i++)
        if (strcmp(ui_assets[i].name, name) == 0)
            return &ui_assets[i];
    return NULL;
}

static void handle_ui(struct evhttp_request *req, const char *path, void *arg)
{
    (void)arg;
    add_security_headers(req);
    if (strcmp(path, "/ui") == 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Location", "/ui/");
        ingest_reply(req, 308, "text/plain; charset=utf-8", "/ui/\n", 5);
        return;
    }
    const char *name = path + strlen("/ui/");
    if (*name == '\0')
        name = "index.html";
    const struct ui_asset *a = find_asset(name);
    if (a == NULL) {
        ingest_reply_error(req, 404, "no console page %.200s", path);
        return;
    }
    char etag[24];
    snprintf(etag, sizeof(etag), "\"%016" PRIx64 "\"", fnv1a64(a->bytes, a->len));
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "ETag", etag);
    evhttp_add_header(out, "Cache-Control", "no-cache");
    const char *inm = evhttp_find_header(evhttp_request_get_input_headers(req), "If-None-Match");
    if (inm != NULL && strstr(inm, etag) != NULL) {
        ingest_reply(req, 304, NULL, NULL, 0);
        return;
    }
    ingest_reply(req, 200, content_type(name), a->bytes, a->len);
}

int ingest_ui_register(struct ingest_router *router)
{
    const int get = EVHTTP_REQ_GET | EVHTTP_REQ_HEAD;
    /* The pages are public: they hold no data, and every request they make for data carries the
     * operator's bearer token and is checked like any API request. */
    if (ingest_router_add(router, get, "/ui", INGEST_ACCESS_PUBLIC, handle_ui, NULL) != 0 ||
        ingest_router_add(router, get, "/ui/", INGEST_ACCESS_PUBLIC, handle_ui, NULL) != 0)
        return -1;
    return 0;
}
