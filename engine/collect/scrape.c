/*
 * scrape.c - [input.prometheus.NAME]: scrape a local Prometheus exporter on an interval.
 *
 * Design: one persistent timer and one evhttp client connection per exporter, on ferryd's loop
 * (libevent's HTTP client: non-blocking, with a timeout, so a hung exporter never stalls the
 * loop). A scrape asks for OpenMetrics or the 0.0.4 text format (Accept as Prometheus sends it),
 * parses the body with prom_parse() (promparse.c: Telegraf's names) and appends all records of
 * the scrape as one journal unit (JOURNAL_APPEND_NONBLOCK: a full queue drops the scrape, counted
 * and logged). A scrape still running when the next is due is not doubled: the next one is
 * skipped and counted.
 *
 * Callback contract: the request callback runs once per request (evhttp calls it with NULL on a
 * connection error or timeout); scrape_free() cancels an in-flight request first.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/util.h"
#include "engine/collect/collect.h"
#include "journal/journal.h"

#define SCRAPE_MAX_BODY (16 * 1024 * 1024)

struct scrape {
    struct event_base *base;
    struct journal *journal;
    collect_appended_fn appended;
    void *arg;
    char name[64];
    char host[256];
    int port;
    char path[1024];
    char hostport[300];
    int64_t interval_ms, timeout_ms;
    struct evhttp_connection *conn;
    struct evhttp_request *in_flight;
    struct event *timer;
    struct collect_out out;
    struct journal_append_req *reqs;
    size_t cap_reqs;
    struct scrape_stats stats;
};

static void append_scrape(struct scrape *s)
{
    struct collect_out *o = &s->out;
    if (o->n == 0)
        return;
    if (o->n > s->cap_reqs) {
        struct journal_append_req *r = realloc(s->reqs, o->n * sizeof *r);
        if (!r) {
            s->stats.dropped++;
            return;
        }
        s->reqs = r;
        s->cap_reqs = o->n;
    }
    for (size_t i = 0; i < o->n; i++) {
        s->reqs[i].stream = RECORD_METRIC;
        s->reqs[i].ts_ns = o->recs[i].ts_ns;
        s->reqs[i].payload = o->packed.data + o->recs[i].offset;
        s->reqs[i].len = o->recs[i].len;
        s->reqs[i].seq = 0;
    }
    int rc = journal_appendv(s->journal, s->reqs, o->n, JOURNAL_APPEND_NONBLOCK);
    if (rc != 0) {
        s->stats.dropped++;
        log_limited(60, FERRY_LOG_WARN, "scrape", "[input.prometheus.%s]: %zu records dropped: %s",
                    s->name, o->n, journal_strerror(rc));
        return;
    }
    s->stats.records += o->n;
    if (s->appended)
        s->appended(s->arg);
}

static void on_response(struct evhttp_request *req, void *arg)
{
    struct scrape *s = arg;
    s->in_flight = NULL;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code != 200) {
        s->stats.failures++;
        log_limited(60, FERRY_LOG_WARN, "scrape", "[input.prometheus.%s] http://%s%s: %s %d",
                    s->name, s->hostport, s->path, code ? "HTTP" : "no answer (timeout or refused)",
                    code);
        return;
    }
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(body);
    const char *text = len ? (const char *)evbuffer_pullup(body, -1) : "";
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    bool om = ct && strstr(ct, "openmetrics") != NULL;
    collect_out_reset(&s->out);
    struct prom_stats ps;
    if (!text || prom_parse(text, len, om, ferry_realtime_ns(), &s->out, &ps) != 0) {
        s->stats.failures++;
        return;
    }
    s->stats.scrapes++;
    s->stats.skipped_lines += ps.skipped;
    if (ps.skipped)
        log_limited(300, FERRY_LOG_WARN, "scrape",
                    "[input.prometheus.%s]: %llu line(s) of the exposition skipped", s->name,
                    (unsigned long long)ps.skipped);
    append_scrape(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct scrape *s = arg;
    if (s->in_flight) {
        s->stats.overlapping++;
        return;
    }
    struct evhttp_request *req = evhttp_request_new(on_response, s);
    if (!req)
        return;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", s->hostport);
    evhttp_add_header(h, "Accept",
                      "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5");
    evhttp_add_header(h, "User-Agent", "ferryd");
    if (evhttp_make_request(s->conn, req, EVHTTP_REQ_GET, s->path) != 0) {
        s->stats.failures++; /* evhttp freed the request */
        return;
    }
    s->in_flight = req;
}

int scrape_new(struct event_base *base, struct journal *j, const struct scrape_opts *o,
               collect_appended_fn appended, void *arg, struct scrape **out, char *errbuf,
               size_t errlen)
{
    if (!o->name || strlen(o->name) >= 64 || o->interval_ms < 100 || o->timeout_ms < 10 ||
        o->timeout_ms > o->interval_ms) {
        snprintf(errbuf, errlen,
                 "[input.prometheus.%s]: interval >= 100 ms, timeout from 10 ms "
                 "to the interval",
                 o->name ? o->name : "");
        return COLLECT_EINVAL;
    }
    struct evhttp_uri *uri = evhttp_uri_parse(o->url ? o->url : "");
    const char *scheme = uri ? evhttp_uri_get_scheme(uri) : NULL;
    const char *host = uri ? evhttp_uri_get_host(uri) : NULL;
    if (!uri || !scheme || strcasecmp(scheme, "http") != 0 || !host || !host[0] ||
        strlen(host) >= 256) {
        snprintf(errbuf, errlen, "[input.prometheus.%s] url = \"%s\": an http://host:port/path URL",
                 o->name, o->url ? o->url : "");
        if (uri)
            evhttp_uri_free(uri);
        return COLLECT_EINVAL;
    }
    struct scrape *s = calloc(1, sizeof *s);
    if (!s) {
        evhttp_uri_free(uri);
        return COLLECT_ENOMEM;
    }
    s->base = base;
    s->journal = j;
    s->appended = appended;
    s->arg = arg;
    snprintf(s->name, sizeof s->name, "%s", o->name);
    snprintf(s->host, sizeof s->host, "%s", host);
    s->port = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : 80;
    const char *path = evhttp_uri_get_path(uri), *query = evhttp_uri_get_query(uri);
    snprintf(s->path, sizeof s->path, "%s%s%s", path && path[0] ? path : "/", query ? "?" : "",
             query ? query : "");
    snprintf(s->hostport, sizeof s->hostport, "%s:%d", s->host, s->port);
    evhttp_uri_free(uri);
    s->interval_ms = o->interval_ms;
    s->timeout_ms = o->timeout_ms;
    collect_out_init(&s->out);
    s->conn = evhttp_connection_base_new(base, NULL, s->host, (unsigned short)s->port);
    s->timer = event_new(base, -1, EV_PERSIST, on_timer, s);
    if (!s->conn || !s->timer) {
        scrape_free(s);
        return COLLECT_ENOMEM;
    }
    struct timeval to = {(time_t)(o->timeout_ms / 1000),
                         (suseconds_t)(o->timeout_ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(s->conn, &to);
    evhttp_connection_set_max_body_size(s->conn, SCRAPE_MAX_BODY);
    evhttp_connection_set_retries(s->conn, 0);
    struct timeval iv = {(time_t)(o->interval_ms / 1000),
                         (suseconds_t)(o->interval_ms % 1000) * 1000};
    if (event_add(s->timer, &iv) != 0) {
        scrape_free(s);
        return COLLECT_ENOMEM;
    }
    on_timer(-1, 0, s); /* the first scrape at once */
    *out = s;
    return 0;
}

void scrape_get_stats(const struct scrape *s, struct scrape_stats *out)
{
    *out = s->stats;
}

void scrape_free(struct scrape *s)
{
    if (!s)
        return;
    if (s->timer)
        event_free(s->timer);
    if (s->in_flight && s->conn)
        evhttp_cancel_request(s->in_flight); /* no callback after this */
    if (s->conn)
        evhttp_connection_free(s->conn);
    collect_out_free(&s->out);
    free(s->reqs);
    free(s);
}
