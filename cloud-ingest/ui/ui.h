/*
 * ui.h - the fleet console: static pages served by ferry-ingest under /ui/ (docs/console.md).
 *
 * The pages (index.html, app.js, style.css under cloud-ingest/ui/assets/) are compiled into the
 * binary, so the console needs nothing installed beside ferry-ingest, and they read the public
 * JSON API only (/v1/devices, /v1/series, /v1/export, /v1/alerts). The assets hold no data, so
 * they are served without a credential; every API call the pages make carries the operator's
 * bearer token.
 *
 * Every answer carries a strict Content-Security-Policy (scripts, styles and requests to this
 * origin only, no inline script, no frames), an ETag (If-None-Match answers 304) and
 * Cache-Control: no-cache, so a browser revalidates and an upgraded ingest's pages show at once.
 */
#ifndef FERRY_INGEST_UI_H
#define FERRY_INGEST_UI_H

struct ingest_router;

/* The Content-Security-Policy of every /ui/ answer. */
#define INGEST_UI_CSP                                                                              \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* Adds GET /ui (a redirect to /ui/) and GET /ui/... to `router`. Returns 0 or -1. */
int ingest_ui_register(struct ingest_router *router) __attribute__((warn_unused_result));

#endif
