/*
 * http_input.c - the local HTTP listener: InfluxDB-compatible /write, /logs, /status, /metrics.
 *
 * A write request lives in a struct write_req and moves through these states:
 *
 *   PARSING  --input_job_run() == 0------------------------------> DURABLE_WAIT
 *      |  ^ INPUT_MORE: `step` event made active (next loop turn)
 *      |  | INPUT_BUSY: `step` event added with a 2 ms timeout (journal queue full)
 *      +--- error (journal refused) ----------------------------> reply 5xx, freed
 *   DURABLE_WAIT --durable callback--> reply 204 / 400 / 5xx, freed        (on_durable())
 *
 * Invariants:
 *  1. A reply is sent exactly once per request, and only from states PARSING (errors) or from
 *     the durable callback: never before the records it acknowledges are committed.
 *  2. The request body (evhttp's input buffer) stays alive until the reply: the job borrows it.
 *  3. evhttp detaches a request whose client went away before we answered (userdone not set)
 *     and frees it inside evhttp_send_reply(); so replying late to a vanished client is safe.
 */
#include "engine/http_input.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"
#include "engine/config.h"
#include "engine/influx_query.h"
#include "journal/journal.h"

enum write_state { WRITE_PARSING, WRITE_DURABLE_WAIT };

struct write_req {
    struct http_input *h;
    struct evhttp_request *req;
    struct input_job *job;
    struct event *step;
    enum write_state state;
    struct input_stats *stats;
    struct ferry_buf inflated;     /* a gzip body, decompressed (the job borrows it) */
    struct write_req *prev, *next; /* h->active */
};

struct http_input {
    struct http_input_deps deps;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    char address[300];
    struct write_req *active;
    size_t pending;
    struct input_stats write_stats;
    struct input_stats logs_stats;
    struct influx_query *query; /* /query: the set-up statements (engine/influx_query.h) */
};

static void set_nodelay(evutil_socket_t fd)
{
    int one = 1;
    /* Best effort: a failure only costs latency on small replies. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void add_common_headers(struct evhttp_request *req)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "X-Influxdb-Version", "1.8-ferryd-" FERRY_VERSION);
}

/* Sends {"error": msg} with `code`. */
static void reply_error(struct evhttp_request *req, int code, const char *reason, const char *msg)
{
    struct evbuffer *body = evbuffer_new();
    struct ferry_buf b = FERRY_BUF_INIT;
    add_common_headers(req);
    if (body && ferry_buf_printf(&b, "{\"error\":") == 0 &&
        ferry_buf_append_json_string(&b, msg, strlen(msg)) == 0 &&
        ferry_buf_printf(&b, "}\n") == 0) {
        evbuffer_add(body, b.data, b.len);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "application/json");
        /* The header carries the first line only: header values cannot hold newlines. */
        char first[256];
        size_t n = strcspn(msg, "\r\n");
        snprintf(first, sizeof first, "%.*s", (int)(n < sizeof first ? n : sizeof first - 1), msg);
        evhttp_add_header(evhttp_request_get_output_headers(req), "X-Influxdb-Error", first);
    }
    evhttp_send_reply(req, code, reason, body);
    ferry_buf_free(&b);
    if (body)
        evbuffer_free(body);
}

static void write_req_free(struct write_req *w)
{
    struct http_input *h = w->h;
    if (w->prev)
        w->prev->next = w->next;
    else
        h->active = w->next;
    if (w->next)
        w->next->prev = w->prev;
    h->pending--;
    if (w->step)
        event_free(w->step);
    input_job_free(w->job);
    ferry_buf_free(&w->inflated);
    free(w);
}

/* Answers a journal failure: 507 when full, 503 when closing, 500 otherwise. */
static void reply_journal_error(struct evhttp_request *req, int jerr)
{
    char msg[256];
    snprintf(msg, sizeof msg, "journal: %s", journal_strerror(jerr));
    if (jerr == JOURNAL_EFULL)
        reply_error(req, 507, "Insufficient Storage", msg);
    else if (jerr == JOURNAL_ECLOSED)
        reply_error(req, 503, "Service Unavailable", msg);
    else
        reply_error(req, 500, "Internal Server Error", msg);
}

static void on_durable(void *arg, int journal_err)
{
    struct write_req *w = arg;
    struct http_input *h = w->h;
    struct input_job *job = w->job;
    w->stats->records += input_job_accepted(job);
    w->stats->rejected_lines += input_job_rejected(job);
    if (journal_err != 0) {
        w->stats->journal_errors++;
        reply_journal_error(w->req, journal_err);
    } else if (input_job_rejected(job) > 0) {
        /* InfluxDB answers a partly bad write with 400 after writing the good points. */
        struct ferry_buf msg = FERRY_BUF_INIT;
        if (ferry_buf_printf(&msg, "partial write: %llu line(s) rejected, %llu written\n%s",
                             (unsigned long long)input_job_rejected(job),
                             (unsigned long long)input_job_accepted(job),
                             input_job_errors(job)) == 0 &&
            ferry_buf_append_u8(&msg, 0) == 0)
            reply_error(w->req, 400, "Bad Request", (const char *)msg.data);
        else
            reply_error(w->req, 400, "Bad Request", "partial write");
        ferry_buf_free(&msg);
    } else {
        add_common_headers(w->req);
        evhttp_send_reply(w->req, 204, "No Content", NULL);
    }
    if (input_job_accepted(job) > 0 && journal_err == 0 && h->deps.on_durable)
        h->deps.on_durable(h->deps.arg);
    write_req_free(w);
}

static void write_step(evutil_socket_t fd, short what, void *arg);

/* Runs the job for one slice and decides what comes next (see the state machine above). */
static void write_advance(struct write_req *w)
{
    struct http_input *h = w->h;
    int rc = input_job_run(w->job, h->deps.journal, HTTP_INPUT_SLICE_BYTES);
    if (rc == INPUT_MORE) {
        event_active(w->step, EV_TIMEOUT, 0);
        return;
    }
    if (rc == INPUT_BUSY) {
        struct timeval tv = {0, 2000};
        event_add(w->step, &tv);
        return;
    }
    if (rc == INPUT_EJOURNAL) {
        /* Records appended before the failure stay appended; the client retries all of them
         * (InfluxDB semantics: a 5xx write may have been partly applied). */
        w->stats->journal_errors++;
        w->stats->records += input_job_accepted(w->job);
        reply_journal_error(w->req, input_job_journal_error(w->job));
        write_req_free(w);
        return;
    }
    if (rc != 0) {
        reply_error(w->req, 500, "Internal Server Error", input_strerror(rc));
        write_req_free(w);
        return;
    }
    size_t n;
    const struct durable_point *points = input_job_points(w->job, &n);
    w->state = WRITE_DURABLE_WAIT;
    int drc = durable_wait(h->deps.durable, points, n, on_durable, w);
    if (drc != 0) {
        reply_error(w->req, 503, "Service Unavailable", durable_strerror(drc));
        write_req_free(w);
    }
}

static void write_step(evutil_socket_t fd, short what, void *arg)
{
    write_advance(arg);
}

/* Telegraf's influxdb output sends Content-Encoding: gzip by default; the limit on the
 * decompressed size is the same http_max_body as for a plain body, so a small bomb cannot fill
 * the memory (http_input.h). */
int http_input_gunzip(const void *in_bytes, size_t len, uint64_t max, struct ferry_buf *out)
{
    const uint8_t *in = in_bytes;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
        return -3;
    int rc = 0;
    zs.next_in = (Bytef *)in;
    size_t in_left = len;
    for (;;) {
        if (zs.avail_in == 0 && in_left) {
            zs.avail_in = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
            in_left -= zs.avail_in;
        }
        if (out->len >= max) {
            /* Full: the stream may still end here without another byte (its trailer). */
            uint8_t probe;
            zs.next_out = &probe;
            zs.avail_out = 1;
            int zr = inflate(&zs, Z_NO_FLUSH);
            if (zs.avail_out == 0) {
                rc = -2; /* one more byte: past the limit */
                break;
            }
            if (zr == Z_STREAM_END)
                break;
            if (zr == Z_OK || (zr == Z_BUF_ERROR && zs.avail_in == 0 && in_left > 0))
                continue; /* progress without output (header, trailer), or more input first */
            rc = zr == Z_MEM_ERROR ? -3 : -1; /* truncated or not gzip */
            break;
        }
        size_t room = (size_t)(max - out->len) < 65536 ? (size_t)(max - out->len) : 65536;
        if (ferry_buf_reserve(out, room) != 0) {
            rc = -3;
            break;
        }
        zs.next_out = out->data + out->len;
        zs.avail_out = (uInt)room;
        int zr = inflate(&zs, Z_NO_FLUSH);
        out->len += room - zs.avail_out;
        if (zr == Z_STREAM_END)
            break;
        if (zr == Z_BUF_ERROR && zs.avail_in == 0 && in_left == 0) {
            rc = -1; /* truncated */
            break;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            rc = zr == Z_MEM_ERROR ? -3 : -1;
            break;
        }
    }
    inflateEnd(&zs);
    return rc;
}

static const char *query_param(const struct evkeyvalq *q, const char *name)
{
    return q ? evhttp_find_header(q, name) : NULL;
}

/* POST /write and POST /logs. */
static void handle_ingest(struct http_input *h, struct evhttp_request *req,
                          enum input_format format, const struct evkeyvalq *query)
{
    struct input_stats *stats = format == INPUT_LOGS ? &h->logs_stats : &h->write_stats;
    stats->requests++;
    struct input_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.format = format;
    opts.default_ts_ns = ferry_realtime_ns();
    opts.precision = LINEPROTO_NS;
    opts.default_level = RECORD_LEVEL_INFO;
    opts.observe = h->deps.observe;
    opts.observe_arg = h->deps.arg;
    const char *enc = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Encoding");
    bool gzip = enc && strcasecmp(enc, "gzip") == 0;
    if (enc && !gzip && strcasecmp(enc, "identity") != 0) {
        reply_error(req, 415, "Unsupported Media Type",
                    "Content-Encoding: only gzip and identity are supported");
        return;
    }
    const char *p = query_param(query, "precision");
    if (p && *p) {
        if (strcmp(p, "n") == 0)
            opts.precision = LINEPROTO_NS;
        else if (lineproto_precision_parse(p, &opts.precision) != 0) {
            reply_error(req, 400, "Bad Request", "precision: expected one of n, ns, u, us, ms, s");
            return;
        }
    }
    const char *level = query_param(query, "level");
    if (level) {
        enum record_log_level lvl;
        if (record_level_parse(level, &lvl) != 0) {
            reply_error(req, 400, "Bad Request",
                        "level: expected debug, info, notice, warn, error, crit, alert or emerg");
            return;
        }
        opts.default_level = lvl;
    }
    const char *source = query_param(query, "source");
    if (source && (!*source || strlen(source) > RECORD_MAX_KEY_LEN ||
                   !ferry_utf8_valid(source, strlen(source)))) {
        reply_error(req, 400, "Bad Request", "source: must be 1..1024 bytes of UTF-8");
        return;
    }
    opts.default_source = source;

    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    stats->bytes += len;
    const char *text = len ? (const char *)evbuffer_pullup(in, -1) : "";
    if (!text) {
        reply_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    struct write_req *w = calloc(1, sizeof *w);
    if (!w) {
        reply_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    w->h = h;
    w->req = req;
    w->stats = stats;
    w->state = WRITE_PARSING;
    w->next = h->active;
    if (h->active)
        h->active->prev = w;
    h->active = w;
    h->pending++;
    w->step = event_new(h->deps.base, -1, 0, write_step, w);
    if (gzip) {
        int zrc = http_input_gunzip(text, len, h->deps.max_body_bytes, &w->inflated);
        if (zrc != 0) {
            if (zrc == -2)
                reply_error(req, 413, "Payload Too Large",
                            "decompressed body larger than [listen] http_max_body");
            else if (zrc == -1)
                reply_error(req, 400, "Bad Request", "body is not valid gzip");
            else
                reply_error(req, 500, "Internal Server Error", "out of memory");
            write_req_free(w);
            return;
        }
        text = w->inflated.len ? (const char *)w->inflated.data : "";
        len = w->inflated.len;
    }
    if (!w->step || input_job_new(&opts, text, len, &w->job) != 0) {
        reply_error(req, 500, "Internal Server Error", "out of memory");
        write_req_free(w);
        return;
    }
    write_advance(w);
}

static void reply_rendered(struct http_input *h, struct evhttp_request *req, bool prometheus)
{
    struct ferry_buf out = FERRY_BUF_INIT;
    if (!h->deps.render || h->deps.render(h->deps.arg, prometheus, &out) != 0) {
        ferry_buf_free(&out);
        reply_error(req, 500, "Internal Server Error", "cannot render status");
        return;
    }
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        ferry_buf_free(&out);
        reply_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    evbuffer_add(body, out.data, out.len);
    ferry_buf_free(&out);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      prometheus ? "text/plain; version=0.0.4; charset=utf-8" : "application/json");
    add_common_headers(req);
    evhttp_send_reply(req, 200, "OK", body);
    evbuffer_free(body);
}

/* GET or POST /query: q from the query string, or from a form-encoded POST body (what
 * Telegraf's influxdb output and the python client send). */
static void handle_query(struct http_input *h, struct evhttp_request *req,
                         const struct evkeyvalq *query, bool is_post)
{
    const char *q = query_param(query, "q");
    struct evkeyvalq form;
    TAILQ_INIT(&form);
    char *body_text = NULL;
    if (!q && is_post) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        if (len > INFLUX_QUERY_MAX_BYTES * 3 + 64) {
            reply_error(req, 413, "Payload Too Large", "query body too large");
            return;
        }
        body_text = malloc(len + 1);
        if (!body_text) {
            reply_error(req, 500, "Internal Server Error", "out of memory");
            return;
        }
        if (evbuffer_copyout(in, body_text, len) != (ev_ssize_t)len) {
            free(body_text);
            reply_error(req, 400, "Bad Request", "cannot read the body");
            return;
        }
        body_text[len] = 0;
        if (evhttp_parse_query_str(body_text, &form) == 0)
            q = query_param(&form, "q");
    }
    struct ferry_buf out = FERRY_BUF_INIT;
    int status = 400;
    int rc = q ? influx_query_answer(h->query, q, strlen(q), &out, &status)
               : ferry_buf_printf(&out, "{\"error\":\"missing required parameter \\\"q\\\"\"}");
    evhttp_clear_headers(&form);
    free(body_text);
    struct evbuffer *reply = evbuffer_new();
    if (rc != 0 || !reply) {
        if (reply)
            evbuffer_free(reply);
        ferry_buf_free(&out);
        reply_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    evbuffer_add(reply, out.data, out.len);
    evbuffer_add(reply, "\n", 1);
    ferry_buf_free(&out);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    add_common_headers(req);
    evhttp_send_reply(req, status, status == 200 ? "OK" : "Bad Request", reply);
    evbuffer_free(reply);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct http_input *h = arg;
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (conn)
        set_nodelay(bufferevent_getfd(evhttp_connection_get_bufferevent(conn)));
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path) {
        reply_error(req, 400, "Bad Request", "cannot parse the request URI");
        return;
    }
    struct evkeyvalq query;
    TAILQ_INIT(&query);
    const char *qs = evhttp_uri_get_query(uri);
    if (qs && evhttp_parse_query_str(qs, &query) != 0) {
        reply_error(req, 400, "Bad Request", "cannot parse the query string");
        return;
    }
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    bool is_get = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD;
    /* /api/v2/write is InfluxDB 2.x's write path (Telegraf's influxdb_v2 output): same body and
     * precision parameter; org and bucket are ignored like db and rp. */
    bool is_write = strcmp(path, "/write") == 0 || strcmp(path, "/api/v2/write") == 0;
    if (is_write || strcmp(path, "/logs") == 0) {
        if (method != EVHTTP_REQ_POST) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
            reply_error(req, 405, "Method Not Allowed", "use POST");
        } else {
            handle_ingest(h, req, is_write ? INPUT_LINEPROTO : INPUT_LOGS, &query);
        }
    } else if (strcmp(path, "/query") == 0) {
        if (!is_get && method != EVHTTP_REQ_POST) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, POST");
            reply_error(req, 405, "Method Not Allowed", "use GET or POST");
        } else {
            handle_query(h, req, &query, method == EVHTTP_REQ_POST);
        }
    } else if (strcmp(path, "/ping") == 0) {
        add_common_headers(req);
        evhttp_send_reply(req, 204, "No Content", NULL);
    } else if (strcmp(path, "/status") == 0 || strcmp(path, "/metrics") == 0) {
        if (!is_get) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
            reply_error(req, 405, "Method Not Allowed", "use GET");
        } else {
            reply_rendered(h, req, path[1] == 'm');
        }
    } else {
        reply_error(req, 404, "Not Found",
                    "no such path (try /write, /logs, /query, /status, /metrics)");
    }
    evhttp_clear_headers(&query);
}

/* Creates, binds and listens on a TCP socket for "host:port". */
static int bind_listener(const char *listen_addr, evutil_socket_t *out_fd, char *errbuf,
                         size_t errlen)
{
    char host[256];
    uint16_t port;
    if (ferryd_parse_hostport(listen_addr, host, sizeof host, &port) != 0) {
        snprintf(errbuf, errlen, "listen address \"%s\": expected host:port", listen_addr);
        return HTTP_INPUT_EADDR;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port_s[8];
    snprintf(port_s, sizeof port_s, "%u", port);
    int gai = getaddrinfo(host[0] ? host : NULL, port_s, &hints, &res);
    if (gai != 0) {
        snprintf(errbuf, errlen, "listen address \"%s\": %s", listen_addr, gai_strerror(gai));
        return HTTP_INPUT_EADDR;
    }
    int rc = HTTP_INPUT_EBIND;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(errbuf, errlen, "listen %s: socket: %s", listen_addr, strerror(errno));
        goto out;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* Accepted sockets inherit TCP_NODELAY from the listener on Linux; on_request() sets it
     * again in case they do not. */
    set_nodelay(fd);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        snprintf(errbuf, errlen, "listen %s: %s", listen_addr, strerror(errno));
        close(fd);
        goto out;
    }
    *out_fd = fd;
    rc = 0;
out:
    freeaddrinfo(res);
    return rc;
}

static void format_address(evutil_socket_t fd, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN + 1] = "?", port[8] = "0";
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        (void)getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, port, sizeof port,
                          NI_NUMERICHOST | NI_NUMERICSERV);
    if (ss.ss_family == AF_INET6)
        snprintf(out, len, "[%s]:%s", host, port);
    else
        snprintf(out, len, "%s:%s", host, port);
}

int http_input_new(const struct http_input_deps *deps, const char *listen_addr,
                   struct http_input **out, char *errbuf, size_t errlen)
{
    struct http_input *h = calloc(1, sizeof *h);
    if (!h)
        return HTTP_INPUT_ENOMEM;
    h->deps = *deps;
    h->query = influx_query_new();
    if (!h->query) {
        free(h);
        return HTTP_INPUT_ENOMEM;
    }
    evutil_socket_t fd = -1;
    int rc = bind_listener(listen_addr, &fd, errbuf, errlen);
    if (rc != 0)
        goto fail;
    format_address(fd, h->address, sizeof h->address);
    h->http = evhttp_new(deps->base);
    if (!h->http) {
        close(fd);
        rc = HTTP_INPUT_ENOMEM;
        goto fail;
    }
    evhttp_set_max_body_size(h->http, (ev_ssize_t)deps->max_body_bytes);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
    evhttp_set_timeout(h->http, 60);
    evhttp_set_gencb(h->http, on_request, h);
    h->bound = evhttp_accept_socket_with_handle(h->http, fd);
    if (!h->bound) {
        close(fd);
        snprintf(errbuf, errlen, "listen %s: evhttp_accept_socket failed", listen_addr);
        rc = HTTP_INPUT_EBIND;
        goto fail;
    }
    *out = h;
    return 0;
fail:
    http_input_free(h);
    return rc;
}

const char *http_input_address(const struct http_input *h)
{
    return h->address;
}

void http_input_set_max_body(struct http_input *h, uint64_t max_body_bytes)
{
    h->deps.max_body_bytes = max_body_bytes;
    evhttp_set_max_body_size(h->http, (ev_ssize_t)max_body_bytes);
}

void http_input_stop_accepting(struct http_input *h)
{
    if (h->bound) {
        evhttp_del_accept_socket(h->http, h->bound); /* closes the listening socket */
        h->bound = NULL;
    }
}

size_t http_input_pending(const struct http_input *h)
{
    return h->pending;
}
const struct input_stats *http_input_write_stats(const struct http_input *h)
{
    return &h->write_stats;
}
const struct input_stats *http_input_logs_stats(const struct http_input *h)
{
    return &h->logs_stats;
}

void http_input_free(struct http_input *h)
{
    if (!h)
        return;
    /* Requests still parsing (the daemon's drain timed out): they were never acknowledged. A
     * request waiting for durability cannot be here: durable_free() ran its callback first. */
    while (h->active) {
        struct write_req *w = h->active;
        if (w->state == WRITE_PARSING)
            reply_error(w->req, 503, "Service Unavailable", "ferryd is shutting down");
        write_req_free(w);
    }
    if (h->http)
        evhttp_free(h->http);
    influx_query_free(h->query);
    free(h);
}
