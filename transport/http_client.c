/*
 * http_client.c - libcurl multi on a libevent loop (see http_client.h for the contract).
 *
 * Design
 * ------
 * One CURLM per client. libcurl tells us which sockets to watch through sock_cb (one struct
 * http_sock per socket, attached to libcurl's socket with curl_multi_assign) and when to call it
 * back through timer_cb (one libevent timer). When a watched socket is ready or the timer fires
 * we call curl_multi_socket_action() and then drain curl_multi_info_read() for finished
 * transfers.
 *
 * Pitfalls handled here (libcurl documentation):
 *  1. timer_cb must not call libcurl: a timeout of 0 is served by arming the libevent timer with
 *     a zero delay, so curl_multi_socket_action(CURL_SOCKET_TIMEOUT) runs from the loop.
 *     A timeout of -1 means "delete the timer".
 *  2. sock_cb may change the events wanted on a socket it already reported: the libevent event
 *     is deleted and re-assigned each time. CURL_POLL_REMOVE frees our per-socket state; libcurl
 *     forgets the assignment itself.
 *  3. An easy handle must not be removed from the multi handle inside a libcurl callback, so a
 *     cancel asked for while libcurl is running our header/write callbacks is deferred: the next
 *     write callback returns 0, libcurl ends the transfer with CURLE_WRITE_ERROR, and the request
 *     completes with HTTP_CLIENT_ECANCELED from the loop.
 *  4. Finished transfers are collected only with curl_multi_info_read(CURLMSG_DONE), after
 *     curl_multi_socket_action() returned; the handle is removed first and on_done is called
 *     last, so on_done may start or cancel requests freely.
 *  6. TLS sessions are shared across the client's transfers through a CURLSH with
 *     CURL_LOCK_DATA_SSL_SESSION: each request is a new easy handle, and an easy handle's own
 *     session cache dies with it, so without the share every reconnect (after the connection
 *     cache dropped an idle connection, or after a link cut) would pay a full handshake. No lock
 *     callbacks: the client is used from its loop thread only.
 *  5. CURLOPT_NOSIGNAL is set (no SIGALRM from the resolver in a daemon), "Expect:" is sent
 *     empty so a large POST does not wait one RTT (or a 1 s timer) for 100-continue, and
 *     TCP_NODELAY is set so a small batch is not held back by Nagle's algorithm.
 *
 * Invariants
 * ----------
 *  I1. A request is in client->requests exactly while its easy handle is in the multi handle.
 *  I2. finish() is the only place that calls on_done, and it runs once per request.
 */
#include "transport/http_client.h"

#include <curl/curl.h>
#include <event2/event.h>

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/buf.h"
#include "common/util.h"

#define HTTP_DEFAULT_MAX_RESPONSE (1u << 20)
#define HTTP_MAX_HEADER_BYTES (32u * 1024u)
#define HTTP_RETRY_AFTER_CAP_MS (24LL * 3600 * 1000)

struct http_sock {
    struct event *ev;
    curl_socket_t fd;
};

struct http_request {
    struct http_client *client;
    struct http_request *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    char *url;
    char *ca_file;
    char *pinned_public_key;
    http_data_fn on_data;
    http_done_fn on_done;
    void *arg;
    struct ferry_buf body;         /* buffered response body, max = max_response_bytes */
    struct ferry_buf resp_headers; /* raw header lines of the latest response */
    long status;
    int64_t start_ms;
    int64_t deadline_ms;
    int fail_err;          /* error decided inside a libcurl callback (too big, aborted) */
    bool cancel_requested; /* cancel asked for while inside a libcurl callback */
    char errbuf[CURL_ERROR_SIZE];
};

struct http_client {
    struct event_base *base;
    CURLM *multi;
    CURLSH *share; /* TLS sessions of every transfer (pitfall 6) */
    struct event *timer;
    struct http_request *requests; /* doubly linked list of transfers in the multi handle */
    size_t n_requests;
    int in_curl; /* > 0 while libcurl runs our callbacks (pitfall 3) */
};

const char *http_strerror(int err)
{
    switch (err) {
    case HTTP_CLIENT_OK: return "ok";
    case HTTP_CLIENT_EINVAL: return "invalid argument";
    case HTTP_CLIENT_ENOMEM: return "out of memory";
    case HTTP_CLIENT_ECONNECT: return "connect failed";
    case HTTP_CLIENT_ETIMEOUT: return "deadline exceeded";
    case HTTP_CLIENT_ESTALLED: return "transfer stalled";
    case HTTP_CLIENT_ETOOBIG: return "response too large";
    case HTTP_CLIENT_ENETWORK: return "network error";
    case HTTP_CLIENT_ECANCELED: return "canceled";
    case HTTP_CLIENT_EABORTED: return "aborted by receiver";
    case HTTP_CLIENT_ECURL: return "libcurl error";
    case HTTP_CLIENT_EPINNED: return "server public key does not match the pin";
    default: return "unknown error";
    }
}

void http_request_opts_init(struct http_request_opts *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->method = "GET";
    opts->deadline_ms = 30000;
    opts->range_start = -1;
    opts->range_end = -1;
}

/* ---- libevent <-> libcurl glue ------------------------------------------------------------ */

static void check_done(struct http_client *client);

static void socket_action(struct http_client *client, curl_socket_t fd, int ev_bitmask)
{
    int running = 0;
    client->in_curl++;
    CURLMcode rc = curl_multi_socket_action(client->multi, fd, ev_bitmask, &running);
    client->in_curl--;
    (void)rc; /* per-transfer failures arrive through info_read; a multi error is not recoverable
                 here and would also surface as failed transfers */
    check_done(client);
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    struct http_client *client = arg;
    int mask = 0;
    if (what & EV_READ)
        mask |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        mask |= CURL_CSELECT_OUT;
    socket_action(client, (curl_socket_t)fd, mask);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    socket_action(arg, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_TIMERFUNCTION: arm or delete the single timer; never call libcurl from here. */
static int timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
    struct http_client *client = arg;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(client->timer);
        return 0;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    return evtimer_add(client->timer, &tv) == 0 ? 0 : -1;
}

/* CURLMOPT_SOCKETFUNCTION: watch, re-watch or forget one socket. */
static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *arg, void *sockp)
{
    struct http_client *client = arg;
    struct http_sock *hs = sockp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (hs) {
            event_free(hs->ev);
            free(hs);
        }
        return 0;
    }
    short flags = EV_PERSIST;
    if (what & CURL_POLL_IN)
        flags |= EV_READ;
    if (what & CURL_POLL_OUT)
        flags |= EV_WRITE;
    if (!hs) {
        hs = calloc(1, sizeof(*hs));
        if (!hs)
            return -1;
        hs->fd = fd;
        hs->ev = event_new(client->base, fd, flags, on_socket_event, client);
        if (!hs->ev) {
            free(hs);
            return -1;
        }
        if (curl_multi_assign(client->multi, fd, hs) != CURLM_OK) {
            event_free(hs->ev);
            free(hs);
            return -1;
        }
    } else {
        event_del(hs->ev);
        if (event_assign(hs->ev, client->base, fd, flags, on_socket_event, client) != 0)
            return -1;
    }
    return event_add(hs->ev, NULL) == 0 ? 0 : -1;
}

/* ---- per-request callbacks (run inside libcurl) ------------------------------------------- */

static size_t header_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_request *req = arg;
    size_t n = size * nmemb;
    if (req->cancel_requested)
        return 0;
    /* A new status line starts a new response (100 Continue, redirects): keep only the last. */
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        ferry_buf_reset(&req->resp_headers);
        long code = 0;
        if (curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK)
            req->status = code;
    }
    if (ferry_buf_append(&req->resp_headers, data, n) != 0) {
        req->fail_err = HTTP_CLIENT_ETOOBIG;
        return 0;
    }
    return n;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_request *req = arg;
    size_t n = size * nmemb;
    if (req->cancel_requested)
        return 0;
    if (req->status == 0) {
        long code = 0;
        if (curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK)
            req->status = code;
    }
    if (req->on_data) {
        if (req->on_data(req->arg, (const uint8_t *)data, n) != 0) {
            req->fail_err = HTTP_CLIENT_EABORTED;
            return 0;
        }
        return n;
    }
    if (ferry_buf_append(&req->body, data, n) != 0) {
        req->fail_err = HTTP_CLIENT_ETOOBIG;
        return 0;
    }
    return n;
}

/* ---- request lifecycle ---------------------------------------------------------------------- */

static void request_free(struct http_request *req)
{
    if (req->easy)
        curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->headers);
    free(req->url);
    free(req->ca_file);
    free(req->pinned_public_key);
    ferry_buf_free(&req->body);
    ferry_buf_free(&req->resp_headers);
    free(req);
}

static void list_remove(struct http_client *client, struct http_request *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else
        client->requests = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
    client->n_requests--;
}

/* Maps a finished transfer's CURLcode to an http_err. */
static int map_curl_result(struct http_request *req, CURLcode result, int64_t elapsed_ms)
{
    if (req->cancel_requested)
        return HTTP_CLIENT_ECANCELED;
    if (req->fail_err)
        return req->fail_err;
    switch (result) {
    case CURLE_OK: return HTTP_CLIENT_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT: return HTTP_CLIENT_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        /* Deadline and low-speed limit both end as CURLE_OPERATION_TIMEDOUT; the low-speed
         * abort says "too slow" and fires before the deadline. */
        if (strstr(req->errbuf, "too slow") ||
            (req->deadline_ms > 0 && elapsed_ms + 50 < req->deadline_ms))
            return HTTP_CLIENT_ESTALLED;
        return HTTP_CLIENT_ETIMEOUT;
    case CURLE_WRITE_ERROR: return HTTP_CLIENT_EABORTED;
    case CURLE_OUT_OF_MEMORY: return HTTP_CLIENT_ENOMEM;
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH: return HTTP_CLIENT_EPINNED;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL: return HTTP_CLIENT_EINVAL;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return HTTP_CLIENT_ENETWORK;
    default: return HTTP_CLIENT_ECURL;
    }
}

/* Removes the request from the multi handle, calls on_done once, frees it. Never called from
 * inside a libcurl callback (I2, pitfall 4). */
static void finish(struct http_request *req, int err)
{
    struct http_client *client = req->client;
    assert(client->in_curl == 0);
    curl_multi_remove_handle(client->multi, req->easy);
    list_remove(client, req);

    struct http_response resp;
    memset(&resp, 0, sizeof(resp));
    resp.err = err;
    resp.elapsed_ms = ferry_monotonic_ms() - req->start_ms;
    long code = 0;
    if (curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code > 0)
        req->status = code;
    resp.status = err == HTTP_CLIENT_OK ? req->status : (req->status > 0 ? req->status : 0);
    curl_off_t up = 0, down = 0;
    long hdr = 0, reqsz = 0;
    if (curl_easy_getinfo(req->easy, CURLINFO_SIZE_UPLOAD_T, &up) == CURLE_OK && up > 0)
        resp.bytes_sent = (uint64_t)up;
    if (curl_easy_getinfo(req->easy, CURLINFO_SIZE_DOWNLOAD_T, &down) == CURLE_OK && down > 0)
        resp.bytes_received = (uint64_t)down;
    if (curl_easy_getinfo(req->easy, CURLINFO_HEADER_SIZE, &hdr) == CURLE_OK && hdr > 0)
        resp.header_bytes += (uint64_t)hdr;
    if (curl_easy_getinfo(req->easy, CURLINFO_REQUEST_SIZE, &reqsz) == CURLE_OK && reqsz > 0)
        resp.header_bytes += (uint64_t)reqsz;
    if (!req->on_data) {
        /* NUL-terminate for callers that parse JSON text; the bound allows one extra byte. */
        size_t saved_max = req->body.max;
        req->body.max = 0;
        if (ferry_buf_append_u8(&req->body, 0) == 0) {
            resp.body = req->body.data;
            resp.body_len = req->body.len - 1;
        }
        req->body.max = saved_max;
    }
    size_t ra_len = 0;
    const char *ra = http_response_header(req, "Retry-After", &ra_len);
    resp.retry_after_ms = ra ? http_parse_retry_after(ra, ra_len, (int64_t)time(NULL)) : -1;
    resp.error_text =
        err == HTTP_CLIENT_OK ? "" : (req->errbuf[0] ? req->errbuf : http_strerror(err));

    req->on_done(req->arg, req, &resp);
    request_free(req);
}

static void check_done(struct http_client *client)
{
    CURLMsg *msg;
    int left = 0;
    while ((msg = curl_multi_info_read(client->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct http_request *req = NULL;
        CURLcode result = msg->data.result;
        if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req) != CURLE_OK ||
            !req)
            continue;
        int64_t elapsed = ferry_monotonic_ms() - req->start_ms;
        finish(req, map_curl_result(req, result, elapsed));
    }
}

struct http_client *http_client_new(struct event_base *base)
{
    struct http_client *client = calloc(1, sizeof(*client));
    if (!client)
        return NULL;
    client->base = base;
    client->multi = curl_multi_init();
    client->share = curl_share_init();
    client->timer = evtimer_new(base, on_timer, client);
    if (!client->multi || !client->share || !client->timer)
        goto fail;
    if (curl_share_setopt(client->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
        goto fail;
    if (curl_multi_setopt(client->multi, CURLMOPT_SOCKETFUNCTION, sock_cb) != CURLM_OK ||
        curl_multi_setopt(client->multi, CURLMOPT_SOCKETDATA, client) != CURLM_OK ||
        curl_multi_setopt(client->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
        curl_multi_setopt(client->multi, CURLMOPT_TIMERDATA, client) != CURLM_OK)
        goto fail;
    /* A device talks to one ingest; a small connection cache keeps idle memory low. */
    (void)curl_multi_setopt(client->multi, CURLMOPT_MAXCONNECTS, 4L);
    return client;
fail:
    if (client->multi)
        curl_multi_cleanup(client->multi);
    if (client->share)
        curl_share_cleanup(client->share);
    if (client->timer)
        event_free(client->timer);
    free(client);
    return NULL;
}

void http_client_free(struct http_client *client)
{
    if (!client)
        return;
    while (client->requests)
        finish(client->requests, HTTP_CLIENT_ECANCELED);
    /* curl_multi_cleanup closes cached connections and reports CURL_POLL_REMOVE for them. */
    curl_multi_cleanup(client->multi);
    /* Every easy handle is cleaned up by now (request_free), so the share is unused. */
    curl_share_cleanup(client->share);
    event_free(client->timer);
    free(client);
}

size_t http_client_in_flight(const struct http_client *client)
{
    return client->n_requests;
}

long http_request_status(const struct http_request *req)
{
    return req->status;
}

/*
 * Restricts a transfer to HTTP and HTTPS (a URL from a manifest or a config file must not make
 * libcurl read file:// or talk to other protocols). CURLOPT_PROTOCOLS_STR exists from libcurl
 * 7.85.0, which deprecates the bitmask CURLOPT_PROTOCOLS; JetPack 5 and 6 ship 7.68 and 7.81,
 * so older versions get the bitmask (same effect). The client follows no redirects, so the
 * redirect protocols need no setting. The oldest libcurl ferry builds with is 7.66.0
 * (CURLINFO_RETRY_AFTER), checked in cmake/FerryDeps.cmake.
 */
static CURLcode set_http_only(CURL *e)
{
#if LIBCURL_VERSION_NUM >= 0x075500
    return curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    return curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
}

static int set_method(CURL *easy, const char *method, bool has_body)
{
    if (!method || strcmp(method, "GET") == 0)
        return has_body ? HTTP_CLIENT_EINVAL : 0;
    if (strcmp(method, "HEAD") == 0)
        return curl_easy_setopt(easy, CURLOPT_NOBODY, 1L) == CURLE_OK ? 0 : HTTP_CLIENT_ECURL;
    if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
        strcmp(method, "DELETE") == 0 || strcmp(method, "PATCH") == 0) {
        if (strcmp(method, "POST") == 0 || has_body) {
            /* POSTFIELDS with an explicit size sends the body as is (binary-safe). */
            if (curl_easy_setopt(easy, CURLOPT_POST, 1L) != CURLE_OK)
                return HTTP_CLIENT_ECURL;
        }
        if (strcmp(method, "POST") != 0 &&
            curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK)
            return HTTP_CLIENT_ECURL;
        return 0;
    }
    return HTTP_CLIENT_EINVAL;
}

static char *dup_or_null(const char *s, int *err)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *err = HTTP_CLIENT_ENOMEM;
    return d;
}

int http_request_start(struct http_client *client, const struct http_request_opts *opts,
                       struct http_request **out_req)
{
    if (!client || !opts || !opts->url || !opts->on_done || opts->deadline_ms < 0 ||
        (opts->body_len > 0 && !opts->body))
        return HTTP_CLIENT_EINVAL;
    if (opts->range_start < -1 || (opts->range_start < 0 && opts->range_end >= 0) ||
        (opts->range_end >= 0 && opts->range_end < opts->range_start))
        return HTTP_CLIENT_EINVAL;

    int err = HTTP_CLIENT_ENOMEM;
    struct http_request *req = calloc(1, sizeof(*req));
    if (!req)
        return HTTP_CLIENT_ENOMEM;
    req->client = client;
    req->on_data = opts->on_data;
    req->on_done = opts->on_done;
    req->arg = opts->arg;
    req->body.max = opts->max_response_bytes ? opts->max_response_bytes : HTTP_DEFAULT_MAX_RESPONSE;
    req->resp_headers.max = HTTP_MAX_HEADER_BYTES;
    req->deadline_ms = opts->deadline_ms;
    int dup_err = 0;
    req->url = dup_or_null(opts->url, &dup_err);
    req->ca_file = dup_or_null(opts->ca_file, &dup_err);
    req->pinned_public_key = dup_or_null(opts->pinned_public_key, &dup_err);
    req->easy = curl_easy_init();
    if (dup_err || !req->easy)
        goto fail;

    /* "Expect:" suppresses 100-continue (pitfall 5); the caller's lines come after. */
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    if (!h)
        goto fail;
    req->headers = h;
    for (const char *const *line = opts->headers; line && *line; line++) {
        h = curl_slist_append(req->headers, *line);
        if (!h)
            goto fail;
        req->headers = h;
    }

    CURL *e = req->easy;
    err = HTTP_CLIENT_ECURL;
    if (curl_easy_setopt(e, CURLOPT_URL, req->url) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_PRIVATE, req) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HEADERDATA, req) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEDATA, req) != CURLE_OK || set_http_only(e) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_SHARE, client->share) != CURLE_OK)
        goto fail;
    err = set_method(e, opts->method, opts->body_len > 0);
    if (err != 0)
        goto fail;
    err = HTTP_CLIENT_ECURL;
    if (opts->body_len > 0 || (opts->method && strcmp(opts->method, "POST") == 0)) {
        static const char empty[1] = {0};
        if (curl_easy_setopt(e, CURLOPT_POSTFIELDS, opts->body ? opts->body : empty) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)opts->body_len) !=
                CURLE_OK)
            goto fail;
    }
    if (opts->deadline_ms > 0 &&
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)opts->deadline_ms) != CURLE_OK)
        goto fail;
    if (opts->connect_timeout_ms > 0 &&
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)opts->connect_timeout_ms) != CURLE_OK)
        goto fail;
    if (opts->low_speed_bytes_per_s > 0 && opts->low_speed_time_s > 0 &&
        (curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, opts->low_speed_bytes_per_s) != CURLE_OK ||
         curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, opts->low_speed_time_s) != CURLE_OK))
        goto fail;
    if (req->ca_file && curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file) != CURLE_OK)
        goto fail;
    /* libcurl checks the pin on every connection, resumed ones too (the session keeps the
     * server's certificate), and fails the transfer with CURLE_SSL_PINNEDPUBKEYNOTMATCH. */
    if (req->pinned_public_key &&
        curl_easy_setopt(e, CURLOPT_PINNEDPUBLICKEY, req->pinned_public_key) != CURLE_OK)
        goto fail;
    if (opts->range_start >= 0) {
        char range[64];
        struct ferry_buf rb = FERRY_BUF_INIT;
        int prc = opts->range_end >= 0
                      ? ferry_buf_printf(&rb, "%lld-%lld", (long long)opts->range_start,
                                         (long long)opts->range_end)
                      : ferry_buf_printf(&rb, "%lld-", (long long)opts->range_start);
        if (prc != 0 || rb.len >= sizeof(range)) {
            ferry_buf_free(&rb);
            goto fail;
        }
        memcpy(range, rb.data, rb.len);
        range[rb.len] = '\0';
        ferry_buf_free(&rb);
        if (curl_easy_setopt(e, CURLOPT_RANGE, range) != CURLE_OK) /* libcurl copies it */
            goto fail;
    }

    req->start_ms = ferry_monotonic_ms();
    if (curl_multi_add_handle(client->multi, e) != CURLM_OK)
        goto fail;
    req->next = client->requests;
    if (client->requests)
        client->requests->prev = req;
    client->requests = req;
    client->n_requests++;
    if (out_req)
        *out_req = req;
    return 0;
fail:
    request_free(req);
    return err;
}

void http_request_cancel(struct http_request *req)
{
    if (!req)
        return;
    if (req->client->in_curl > 0) {
        /* Inside a libcurl callback (pitfall 3): the next header/write callback aborts the
         * transfer and check_done() completes it with HTTP_CLIENT_ECANCELED. */
        req->cancel_requested = true;
        return;
    }
    req->cancel_requested = true;
    finish(req, HTTP_CLIENT_ECANCELED);
}

const char *http_response_header(const struct http_request *req, const char *name, size_t *len)
{
    size_t name_len = strlen(name);
    const char *p = (const char *)req->resp_headers.data;
    if (!p)
        return NULL; /* no response headers at all (connect failure, cancel) */
    const char *end = p + req->resp_headers.len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        size_t line_len = (size_t)(line_end - p);
        if (line_len > name_len && p[name_len] == ':' && strncasecmp(p, name, name_len) == 0) {
            const char *v = p + name_len + 1;
            const char *ve = line_end;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *len = (size_t)(ve - v);
            return v;
        }
        p = eol ? eol + 1 : end;
    }
    return NULL;
}

int64_t http_parse_retry_after(const char *value, size_t len, int64_t now_s)
{
    char tmp[64];
    if (!value || len == 0 || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, value, len);
    tmp[len] = '\0';
    int64_t secs = 0;
    if (ferry_parse_i64(tmp, 0, HTTP_RETRY_AFTER_CAP_MS / 1000, &secs) == 0)
        return secs * 1000;
    /* A very large delta is still a delta: cap it rather than ignoring the server. */
    bool all_digits = true;
    for (size_t i = 0; i < len; i++)
        if (tmp[i] < '0' || tmp[i] > '9')
            all_digits = false;
    if (all_digits)
        return HTTP_RETRY_AFTER_CAP_MS;
    time_t when = curl_getdate(tmp, NULL);
    if (when == (time_t)-1)
        return -1;
    int64_t delta_ms = ((int64_t)when - now_s) * 1000;
    if (delta_ms < 0)
        return 0;
    return delta_ms > HTTP_RETRY_AFTER_CAP_MS ? HTTP_RETRY_AFTER_CAP_MS : delta_ms;
}
