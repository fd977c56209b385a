/*
 * http_input.h - ferryd's local HTTP listener (libevent evhttp).
 *
 * Routes:
 *   POST /write    InfluxDB 1.x write API: line protocol body, `precision` = n|ns|u|us|ms|s
 *                  (default ns; `db`, `rp`, `u`, `p` are accepted and ignored), body plain or
 *                  Content-Encoding: gzip (decompressed size bounded by http_max_body). 204 once
 * every point is durable in the journal; 400 {"error": "..."} naming the line number and reason of
 * each bad line (up to 20), after the good lines of the same request are durable; 413 body over
 * [listen] http_max_body; 503 when the journal is closing; 507 when the journal is full of unsent
 * events. POST /api/v2/write  the same (InfluxDB 2.x path; `org` and `bucket` are ignored). POST
 * /logs     log lines: plain text (level/source from the query, default info/app) or one JSON
 * object per line {"level","source","message","fields","tags","ts"}. Same answers as /write. GET
 * /ping     204 (InfluxDB clients probe it). GET  /status   JSON status (what GET /status in
 * ferryd(8) documents). GET  /metrics  Prometheus text exposition.
 *
 * Durability: a request's records are appended without waiting (the loop never blocks) and the
 * answer is sent from durable.h's callback, once the journal's committer has committed them.
 * Big bodies are parsed in slices of HTTP_INPUT_SLICE_BYTES with a loop turn between slices.
 *
 * Everything here runs on the loop thread.
 */
#ifndef FERRY_ENGINE_HTTP_INPUT_H
#define FERRY_ENGINE_HTTP_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/input.h"

struct event_base;
struct journal;
struct durable;
struct ferry_buf;
struct record;
struct http_input;

#define HTTP_INPUT_SLICE_BYTES (4 * 1024 * 1024)

enum http_input_error {
    HTTP_INPUT_OK = 0,
    HTTP_INPUT_EADDR = -1, /* the listen address does not parse or resolve */
    HTTP_INPUT_EBIND = -2, /* socket/bind/listen failed (errbuf has errno text) */
    HTTP_INPUT_ENOMEM = -3,
};

/* What the listener needs from the daemon. All borrowed; they outlive the listener. */
struct http_input_deps {
    struct event_base *base;
    struct journal *journal;
    struct durable *durable;
    uint64_t max_body_bytes;
    /* Called after records of a request are durable (the daemon wakes the sync engine). */
    void (*on_durable)(void *arg);
    /* Renders GET /status (prometheus = false, JSON) or GET /metrics (true) into out.
     * Returns 0 or -1 (answered with 500). */
    int (*render)(void *arg, bool prometheus, struct ferry_buf *out);
    /* Optional: every accepted metric record (struct input_opts.observe). */
    void (*observe)(void *arg, const struct record *r);
    void *arg;
};

/* Binds `listen_addr` ("host:port", port 0 picks one) and starts serving. The actual address
 * ("127.0.0.1:40123") can be read with http_input_address(). Returns 0 or a negative
 * enum http_input_error with errbuf saying what and where. */
int http_input_new(const struct http_input_deps *deps, const char *listen_addr,
                   struct http_input **out, char *errbuf, size_t errlen)
    __attribute__((warn_unused_result));

/* The bound address, "host:port" ("[v6]:port" for IPv6). Owned by the listener. */
const char *http_input_address(const struct http_input *h);

/* SIGHUP: a new body limit applies to requests that start after the call. */
void http_input_set_max_body(struct http_input *h, uint64_t max_body_bytes);

/* Stops accepting new connections (SIGTERM drain); requests in progress go on. */
void http_input_stop_accepting(struct http_input *h);

/* Write/log requests still being parsed, appended or waiting for durability. */
size_t http_input_pending(const struct http_input *h);

/* Counters of POST /write and POST /logs. */
const struct input_stats *http_input_write_stats(const struct http_input *h);
const struct input_stats *http_input_logs_stats(const struct http_input *h);

/* Frees the listener; requests still pending are answered 503 first. Call it after
 * http_input_pending() reached 0 for a clean stop. NULL is a no-op. */
void http_input_free(struct http_input *h);

/* Decompresses a gzip body (Content-Encoding: gzip) into `out` (appended), which never grows
 * past `max` bytes. Returns 0, -1 for data that is not gzip or is truncated, -2 when the result
 * would pass `max`, -3 when memory runs out. Exposed for its fuzz target. */
int http_input_gunzip(const void *in, size_t len, uint64_t max, struct ferry_buf *out);

#endif
