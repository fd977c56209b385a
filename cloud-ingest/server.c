/*
 * server.c - ferry-ingest's HTTP server: worker threads, the router, the batch endpoint's
 * hand-off to the group committer and back, and the process lifecycle.
 *
 * Design:
 *   - N workers, each a thread with its own event_base and evhttp on its own listening socket;
 *     the sockets share one port through SO_REUSEPORT, so the kernel spreads connections and a
 *     slow client occupies one connection of one worker, never a whole loop.
 *   - TCP_NODELAY on every accepted connection (evhttp leaves Nagle on: a 64 KiB response then
 *     waits 40 ms for a delayed ACK). Set once per connection, when its first request arrives.
 *   - Limits: evhttp's read/write timeout (server.timeout), header and body size, and an open
 *     connection count across workers (server.max_connections; a request on a connection over
 *     the limit is answered 503 with Connection: close).
 *   - TLS (server.tls_cert): each worker's evhttp makes its connections' bufferevents through
 *     ingest_tls_bufferevent() (tls.c owns the OpenSSL context, its SIGHUP reload and the
 *     session-ticket keys); everything above the bufferevent is the same as over plain HTTP.
 *   - A verified batch becomes a job on the committer's queue; the storage thread hands it back
 *     through the worker's done list and an event it activates (libevent is built with pthreads
 *     locking, so event_active from another thread is safe); the worker then replies.
 *
 * Invariant: every request gets exactly one reply (evhttp frees a request only through
 * evhttp_send_reply; when the client went away meanwhile, evhttp_send_reply just frees it).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "cloud-ingest/actions/actions.h"
#include "cloud-ingest/ingest.h"
#include "cloud-ingest/tls.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "transport/batch.h"

#include "cloud-ingest/auth/auth.h"
#include "cloud-ingest/release/release.h"
#include "cloud-ingest/rollout/rollout.h"
#include "cloud-ingest/query/query.h"
#include "cloud-ingest/ui/ui.h"
#include "transport/reqsign.h"

#define JOB_POOL_MAX 64

/* Open-addressing set of the connections a worker has seen (linear probing, backward-shift
 * delete), so that each is counted and given TCP_NODELAY once. Worker thread only. */
struct conn_set {
    void **slots;
    size_t cap; /* power of two */
    size_t n;
};

struct worker {
    struct ingest_server *srv;
    pthread_t thread;
    bool started;
    struct event_base *base;
    struct evhttp *http;
    int fd;
    struct event *done_ev;
    pthread_mutex_t done_lock;
    struct ingest_job *done_head;
    struct batch_decoder *dec;
    struct ingest_job *pool;
    size_t pool_n;
    struct conn_set conns;
    struct evconnlistener *listener; /* evhttp's, for the pause on EMFILE */
    struct event *resume_ev;         /* re-enables the listener after that pause */
    int64_t accept_fail_logged_s;    /* last "out of descriptors" warning */
};

struct ingest_server {
    struct ingest_config cfg;
    struct ingest_ctx ctx;
    struct ingest_router *router;
    struct ingest_tls *tls;              /* NULL: plain HTTP */
    struct rollouts *rollouts;           /* the rollout evaluator (cloud-ingest/rollout/) */
    struct ingest_nonce_cache *nonces;   /* replay cache of device-signed requests (auth.h) */
    _Atomic int64_t nonce_full_logged_s; /* last "replay cache too small" warning */
    struct worker *workers;
    size_t n_workers;
    uint16_t port;
    _Atomic long connections;
    struct event_base *main_base;
    struct event *stop_ev;
};

const char *ingest_strerror(int err)
{
    switch (err) {
    case INGEST_OK: return "ok";
    case INGEST_ENOMEM: return "out of memory";
    case INGEST_EINVAL: return "invalid argument";
    case INGEST_EIO: return "I/O or system error";
    case INGEST_EBUSY: return "commit queue full";
    default: return "unknown error";
    }
}

static void count_status(struct ingest_metrics *m, int code)
{
    switch (code) {
    case 400: ingest_metrics_add(m, INGEST_C_REJECT_400, 1); break;
    case 401: ingest_metrics_add(m, INGEST_C_REJECT_401, 1); break;
    case 403: ingest_metrics_add(m, INGEST_C_REJECT_403, 1); break;
    case 413: ingest_metrics_add(m, INGEST_C_REJECT_413, 1); break;
    case 429: ingest_metrics_add(m, INGEST_C_REJECT_429, 1); break;
    case 503: ingest_metrics_add(m, INGEST_C_REJECT_503, 1); break;
    default: break;
    }
}

/* ---- Connections ---------------------------------------------------------------------------- */

static size_t conn_hash(const void *p, size_t cap)
{
    return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) & (cap - 1);
}

static bool conn_set_has(const struct conn_set *s, void *p)
{
    if (s->cap == 0)
        return false;
    for (size_t i = conn_hash(p, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (s->slots[i] == NULL)
            return false;
        if (s->slots[i] == p)
            return true;
    }
}

static int conn_set_add(struct conn_set *s, void *p)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        void **slots = calloc(cap, sizeof(*slots));
        if (slots == NULL)
            return -1;
        for (size_t i = 0; i < s->cap; i++) {
            if (s->slots[i] == NULL)
                continue;
            size_t j = conn_hash(s->slots[i], cap);
            while (slots[j] != NULL)
                j = (j + 1) & (cap - 1);
            slots[j] = s->slots[i];
        }
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    size_t i = conn_hash(p, s->cap);
    while (s->slots[i] != NULL)
        i = (i + 1) & (s->cap - 1);
    s->slots[i] = p;
    s->n++;
    return 0;
}

static void conn_set_del(struct conn_set *s, void *p)
{
    if (s->cap == 0)
        return;
    size_t i = conn_hash(p, s->cap);
    while (s->slots[i] != p) {
        if (s->slots[i] == NULL)
            return;
        i = (i + 1) & (s->cap - 1);
    }
    s->slots[i] = NULL;
    s->n--;
    /* Backward-shift: re-place the entries after the hole so lookups never stop early. */
    for (size_t j = (i + 1) & (s->cap - 1); s->slots[j] != NULL; j = (j + 1) & (s->cap - 1)) {
        void *q = s->slots[j];
        s->slots[j] = NULL;
        size_t k = conn_hash(q, s->cap);
        while (s->slots[k] != NULL)
            k = (k + 1) & (s->cap - 1);
        s->slots[k] = q;
    }
}

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    struct worker *w = arg;
    conn_set_del(&w->conns, evcon);
    atomic_fetch_sub(&w->srv->connections, 1);
}

/* Counts a new connection and sets TCP_NODELAY on it. Returns false when it is over the limit. */
static bool conn_admit(struct worker *w, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon == NULL || conn_set_has(&w->conns, evcon))
        return true;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    if (w->srv->tls != NULL) {
        /* evhttp falls back to a plain bufferevent when ingest_tls_bufferevent() failed: never
         * serve such a connection. */
        int resumed = ingest_tls_resumed(bev);
        if (resumed < 0)
            return false;
        ingest_metrics_add(w->srv->ctx.metrics, resumed ? INGEST_C_TLS_RESUMED : INGEST_C_TLS_FULL,
                           1);
    }
    evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;
    if (fd >= 0) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (conn_set_add(&w->conns, evcon) != 0)
        return true; /* no memory to track it: serve it uncounted rather than drop it */
    evhttp_connection_set_closecb(evcon, on_conn_close, w);
    long n = atomic_fetch_add(&w->srv->connections, 1) + 1;
    return n <= (long)w->srv->cfg.max_connections;
}

/* ---- POST /v1/batches ----------------------------------------------------------------------- */

static struct ingest_job *job_get(struct worker *w)
{
    if (w->pool != NULL) {
        struct ingest_job *j = w->pool;
        w->pool = j->next;
        w->pool_n--;
        return j;
    }
    return ingest_job_new();
}

static void job_put(struct worker *w, struct ingest_job *j)
{
    if (w->pool_n >= JOB_POOL_MAX || j->arena->cap > 4u * 1024 * 1024) {
        ingest_job_free(j);
        return;
    }
    j->next = w->pool;
    w->pool = j;
    w->pool_n++;
}

static void handle_batch(struct evhttp_request *req, const char *path, void *arg)
{
    struct worker *w = arg;
    struct ingest_ctx *ctx = &w->srv->ctx;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    ingest_metrics_add(ctx->metrics, INGEST_C_BYTES_IN, len);
    char msg[400];
    unsigned retry = 0;
    int code;
    struct ingest_job *job = NULL;
    if (len > w->srv->cfg.max_body_bytes) {
        code = 413;
        snprintf(msg, sizeof(msg), "body of %zu bytes exceeds the limit of %llu", len,
                 (unsigned long long)w->srv->cfg.max_body_bytes);
        goto reject;
    }
    const uint8_t *body = len > 0 ? evbuffer_pullup(in, -1) : (const uint8_t *)"";
    job = job_get(w);
    if (job == NULL || body == NULL) {
        code = 503;
        snprintf(msg, sizeof(msg), "out of memory");
        goto reject;
    }
    int64_t t0 = ferry_monotonic_ns();
    code = ingest_batch_prepare(ctx, w->dec, body, len, ferry_realtime_ns(), job, msg, sizeof(msg),
                                &retry);
    if (code != 200)
        goto reject;
    job->req = req;
    job->worker = w;
    job->received_mono_ns = t0;
    /* What this batch keeps in memory until it is answered: the body evhttp holds and the
     * decoded records (payload arena, record and offset arrays). */
    job->held_bytes = (uint64_t)len + job->arena->cap +
                      (uint64_t)job->recs_cap * (sizeof(*job->recs) + sizeof(*job->offs));
    if (ingest_committer_submit(ctx->committer, job) != 0) {
        ingest_devtab_done(ctx->devtab, job->device_id);
        code = 503;
        retry = 1;
        snprintf(msg, sizeof(msg), "commit queue full");
        goto reject;
    }
    return; /* answered by on_done once committed */
reject:
    if (job != NULL)
        job_put(w, job);
    count_status(ctx->metrics, code);
    /* What a person looks for when a device does not deliver: refusals and overload, at most a
     * line per 10 s (the counters on /metrics have every one). 429 is a device's fair share, the
     * normal back-pressure of a catch-up, and stays out of the log. */
    if (code == 503)
        log_limited(10, FERRY_LOG_WARN, "ingest", "batch answered 503 (retry): %s", msg);
    else if (code != 429)
        log_limited(10, FERRY_LOG_WARN, "ingest", "batch refused with %d: %s", code, msg);
    if (code == 429 || code == 503)
        ingest_reply_retry(req, code, retry, msg);
    else
        ingest_reply_error(req, code, "%s", msg);
}

/* Storage thread: hands a committed job back to its worker's loop. */
static void on_committed(struct ingest_job *job, void *arg)
{
    struct worker *w = job->worker;
    struct ingest_server *srv = arg;
    if (job->commit_result == 0)
        alerts_committed(srv->ctx.alerts); /* rules look at the new records within 50 ms */
    if (job->commit_result == 0)
        rollouts_committed(srv->rollouts); /* update states move rollouts within 50 ms */
    pthread_mutex_lock(&w->done_lock);
    job->next = w->done_head;
    w->done_head = job;
    pthread_mutex_unlock(&w->done_lock);
    event_active(w->done_ev, EV_READ, 0);
}

static void reply_committed(struct worker *w, struct ingest_job *job)
{
    struct ingest_ctx *ctx = &w->srv->ctx;
    struct evhttp_request *req = job->req;
    ingest_devtab_done(ctx->devtab, job->device_id);
    if (job->commit_result != 0) {
        count_status(ctx->metrics, 503);
        ingest_reply_retry(req, 503, 1, "store error: batch not stored, retry");
        return;
    }
    if (job->write.result == INGEST_STORE_ENOTFOUND) {
        count_status(ctx->metrics, 401);
        ingest_reply_error(req, 401, "unknown device %s: enroll first", job->device_id);
        return;
    }
    if (job->write.result == INGEST_STORE_EREVOKED) {
        ingest_devtab_invalidate(ctx->devtab, job->device_id);
        count_status(ctx->metrics, 403);
        ingest_reply_error(req, 403, "device %s is revoked", job->device_id);
        return;
    }
    if (job->write.result != 0) {
        count_status(ctx->metrics, 400);
        ingest_reply_error(req, 400, "batch refused by the store: %s",
                           ingest_store_strerror(job->write.result));
        return;
    }
    ingest_batch_committed(ctx, job);
    struct ferry_buf ack = FERRY_BUF_INIT;
    if (ingest_batch_ack(job, &ack) != 0) {
        ferry_buf_free(&ack);
        ingest_reply_retry(req, 503, 1, "out of memory building the acknowledgement");
        return;
    }
    ingest_reply(req, 200, "application/json", ack.data, ack.len);
    ferry_buf_free(&ack);
    ingest_metrics_observe(ctx->metrics, INGEST_H_BATCH_SECONDS,
                           (double)(ferry_monotonic_ns() - job->received_mono_ns) / 1e9);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    pthread_mutex_lock(&w->done_lock);
    struct ingest_job *list = w->done_head;
    w->done_head = NULL;
    pthread_mutex_unlock(&w->done_lock);
    /* The list is newest first; answer in arrival order. */
    struct ingest_job *rev = NULL;
    while (list != NULL) {
        struct ingest_job *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev != NULL) {
        struct ingest_job *next = rev->next;
        reply_committed(w, rev);
        job_put(w, rev);
        rev = next;
    }
}

/* ---- Dispatch: the access check (router.h, cloud-ingest/auth/auth.h) ---------------------- */

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    default: return "OTHER";
    }
}

/* The peer's address as text, for the audit log ("-" when unknown). */
static void peer_text(struct evhttp_request *req, char *out, size_t out_len)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    const char *addr = NULL;
    ev_uint16_t port = 0;
    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, (char **)&addr, &port);
    snprintf(out, out_len, "%s", addr != NULL ? addr : "-");
}

static void audit_request(struct ingest_server *srv, struct evhttp_request *req, const char *actor,
                          const char *path, int status)
{
    char action[32], source[64];
    snprintf(action, sizeof(action), "http.%s", method_name(evhttp_request_get_command(req)));
    peer_text(req, source, sizeof(source));
    /* A change made over the API is a state change a person looks for in the log; a refusal is
     * kept in the audit log and logged at most once per 10 s (a scan must not flood it). */
    if (status == 0)
        log_info("ingest", "%s %s by %s from %s", action, path, actor, source);
    else
        log_limited(10, FERRY_LOG_WARN, "ingest", "refused %s %s by %s from %s: %d", action, path,
                    actor, source, status);
    if (ingest_auth_audit(srv->ctx.store, actor, action, path, source, status) != 0)
        log_warn("ingest", "audit log: cannot record %s %s by %s", action, path, actor);
}

/* Checks the bearer token of a token route. Returns true when the handler may run; otherwise the
 * request was answered (401 with WWW-Authenticate, 403 or 503). Changes (any method but GET and
 * HEAD) and refusals of a known token are written to the audit log. */
static bool check_token(struct ingest_server *srv, struct evhttp_request *req, const char *path,
                        enum ingest_access need)
{
    const char *authz = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    struct ingest_api_token who;
    enum ingest_auth_result r =
        ingest_auth_check_bearer(srv->ctx.store, authz, need, ferry_realtime_ns(), &who);
    int code = ingest_auth_result_status(r);
    char actor[INGEST_API_TOKEN_NAME_MAX + 8];
    snprintf(actor, sizeof(actor), "token:%s", who.name[0] ? who.name : "-");
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (r == INGEST_AUTH_OK) {
        if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)
            audit_request(srv, req, actor, path, 0);
        return true;
    }
    count_status(srv->ctx.metrics, code);
    if (who.name[0])
        audit_request(srv, req, actor, path, code);
    if (code == 401) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          r == INGEST_AUTH_MISSING
                              ? "Bearer realm=\"ferry-ingest\""
                              : "Bearer realm=\"ferry-ingest\", error=\"invalid_token\"");
        ingest_reply_error(req, 401, "%s", ingest_auth_result_text(r));
    } else if (code == 503)
        ingest_reply_retry(req, 503, 1, ingest_auth_result_text(r));
    else
        ingest_reply_error(req, 403, "%s: token %s is %s", ingest_auth_result_text(r), who.name,
                           ingest_role_name(who.role) ? ingest_role_name(who.role) : "?");
    return false;
}

/* Checks a device-signed request (transport/reqsign.h) of a DEVICE route: the device is known and
 * not revoked, the signature verifies over the method and request-target, its time is inside the
 * window, and a path that names a device names this one. Returns true when the handler may run;
 * otherwise the request was answered. A stale time is answered with the ingest's clock in
 * X-Ferry-Time, so a device with a wrong clock can correct its next request. */
static bool check_device(struct ingest_server *srv, struct evhttp_request *req, const char *path,
                         const struct ingest_route_match *m)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    struct reqsign_received rs = {
        evhttp_find_header(h, INGEST_DEVICE_HEADER), evhttp_find_header(h, "X-Ferry-Time"),
        evhttp_find_header(h, "X-Ferry-Nonce"), evhttp_find_header(h, "X-Ferry-Signature")};
    char why[128];
    int64_t t_s = 0, now_s = ferry_realtime_ns() / 1000000000;
    int code = 401;
    int rc = reqsign_parse(&rs, &t_s, why, sizeof(why));
    if (rc != 0) {
        evhttp_add_header(out, "WWW-Authenticate", "Ferry-Device-Signature");
        goto refuse;
    }
    uint8_t pk[32];
    switch (ingest_devtab_lookup(srv->ctx.devtab, rs.device, pk)) {
    case INGEST_ADMIT_OK: break;
    case INGEST_ADMIT_REVOKED:
        code = 403;
        snprintf(why, sizeof(why), "device %s is revoked", rs.device);
        goto refuse;
    case INGEST_ADMIT_ERROR:
        count_status(srv->ctx.metrics, 503);
        ingest_reply_retry(req, 503, 1, "device lookup failed, retry");
        return false;
    default: snprintf(why, sizeof(why), "unknown device %s: enroll first", rs.device); goto refuse;
    }
    const char *target = evhttp_request_get_uri(req);
    rc = reqsign_verify(&rs, t_s, method_name(evhttp_request_get_command(req)),
                        target != NULL ? target : "", pk, now_s,
                        srv->cfg.device_request_window_ms / 1000);
    if (rc == REQSIGN_ESTALE) {
        char now[24];
        snprintf(now, sizeof(now), "%lld", (long long)now_s);
        evhttp_add_header(out, "X-Ferry-Time", now);
        snprintf(why, sizeof(why), "X-Ferry-Time %lld is more than %lld s from the ingest's %s",
                 (long long)t_s, (long long)(srv->cfg.device_request_window_ms / 1000), now);
        goto refuse;
    }
    if (rc != 0) {
        snprintf(why, sizeof(why), "%s", reqsign_strerror(rc));
        goto refuse;
    }
    /* Replays (docs/security.md): a verified request is remembered until its time leaves the
     * window; the same one again is refused. */
    int64_t window_s = srv->cfg.device_request_window_ms / 1000;
    switch (ingest_nonce_cache_check(srv->nonces, rs.device, rs.nonce, t_s + window_s + 1, now_s)) {
    case INGEST_NONCE_REPLAY:
        evhttp_add_header(out, "WWW-Authenticate", "Ferry-Device-Signature");
        snprintf(why, sizeof(why),
                 "replayed request: X-Ferry-Nonce already used by device %s (sign each request "
                 "with a new nonce)",
                 rs.device);
        goto refuse;
    case INGEST_NONCE_FRESH_EVICTED: {
        int64_t last = atomic_load(&srv->nonce_full_logged_s);
        if (now_s - last >= 60 &&
            atomic_compare_exchange_strong(&srv->nonce_full_logged_s, &last, now_s))
            log_warn("ingest",
                     "replay cache full (%zu entries): requests are forgotten before their "
                     "window ends; raise limits.nonce_cache",
                     ingest_nonce_cache_capacity(srv->nonces));
        break;
    }
    case INGEST_NONCE_FRESH: break;
    }
    char named[INGEST_DEVICE_ID_MAX + 1];
    if (ingest_route_segment(m->pattern, path, named, sizeof(named)) == 0 &&
        strcmp(named, rs.device) != 0) {
        code = 403;
        snprintf(why, sizeof(why), "device %s may not read %s's resources", rs.device,
                 ingest_device_id_valid(named) ? named : "another device");
        goto refuse;
    }
    return true;
refuse:
    count_status(srv->ctx.metrics, code);
    ingest_reply_error(req, code, "%s", why);
    return false;
}

static void dispatch(struct evhttp_request *req, void *arg)
{
    struct worker *w = arg;
    struct ingest_server *srv = w->srv;
    ingest_metrics_add(srv->ctx.metrics, INGEST_C_REQUESTS, 1);
    if (!conn_admit(w, req)) {
        ingest_metrics_add(srv->ctx.metrics, INGEST_C_CONN_REFUSED, 1);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        ingest_reply_retry(req, 503, 1, "too many connections");
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    if (path == NULL || path[0] == '\0')
        path = "/";
    bool method_mismatch;
    struct ingest_route_match m;
    if (ingest_router_find(srv->router, path, (int)evhttp_request_get_command(req), &m,
                           &method_mismatch) != 0) {
        if (method_mismatch)
            ingest_reply_error(req, 405, "method not allowed on %s", path);
        else
            ingest_reply_error(req, 404, "no such endpoint: %s", path);
        return;
    }
    /* Invariant 9: no handler runs before its route's access is checked. */
    switch (m.access) {
    case INGEST_ACCESS_PUBLIC:
    case INGEST_ACCESS_DEVICE_BODY: break;
    case INGEST_ACCESS_DEVICE:
        if (!check_device(srv, req, path, &m))
            return;
        break;
    case INGEST_ACCESS_METRICS:
        if (srv->cfg.metrics_public)
            break;
        if (!check_token(srv, req, path, m.access))
            return;
        break;
    default:
        if (!check_token(srv, req, path, m.access))
            return;
        break;
    }
    /* The batch handler needs its worker; other handlers get what they registered. */
    m.handler(req, path, m.handler == handle_batch ? w : m.arg);
}

/* ---- Workers and lifecycle ------------------------------------------------------------------ */

/* The worker whose event loop runs on this thread: evhttp gives its listener's callbacks the
 * evhttp, not the worker. */
static _Thread_local struct worker *tl_worker;

/* accept() failed for a reason that does not go away by itself. Out of descriptors (EMFILE,
 * ENFILE) is the one that happens: more devices connected at once than the descriptor limit
 * allows (systemd's LimitNOFILE). The listening socket stays readable, so libevent would call
 * accept() again at once, forever, at 100 % of a core. Instead the worker stops accepting for
 * 100 ms while open connections finish and free descriptors; new ones wait in the kernel's
 * backlog meanwhile, and devices retry what the backlog refuses. One warning per 10 s. */
static void on_accept_error(struct evconnlistener *listener, void *arg)
{
    (void)arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct worker *w = tl_worker;
    if (w == NULL || w->listener != listener)
        return;
    int64_t now_s = ferry_monotonic_ms() / 1000;
    if (now_s - w->accept_fail_logged_s >= 10) {
        w->accept_fail_logged_s = now_s;
        log_warn("ingest", "accept failed: %s (%ld connections open%s); not accepting for 100 ms",
                 evutil_socket_error_to_string(err), (long)atomic_load(&w->srv->connections),
                 err == EMFILE || err == ENFILE ? ": raise the descriptor limit, LimitNOFILE" : "");
    }
    evconnlistener_disable(listener);
    struct timeval pause = {0, 100000};
    evtimer_add(w->resume_ev, &pause);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    evconnlistener_enable(w->listener);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    tl_worker = w;
    if (event_base_dispatch(w->base) < 0)
        log_error("ingest", "worker event loop failed");
    return NULL;
}

static int open_listener(const char *host, uint16_t port, uint16_t *bound_port, char *err,
                         size_t err_len)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", port);
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        snprintf(err, err_len, "listen %s: %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        snprintf(err, err_len, "listen %s:%u: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static int worker_init(struct ingest_server *srv, struct worker *w, char *err, size_t err_len)
{
    w->srv = srv;
    w->fd = -1;
    pthread_mutex_init(&w->done_lock, NULL);
    w->base = event_base_new();
    w->http = w->base != NULL ? evhttp_new(w->base) : NULL;
    if (w->http == NULL) {
        snprintf(err, err_len, "libevent: cannot create event base / evhttp");
        return INGEST_ENOMEM;
    }
    w->done_ev = event_new(w->base, -1, 0, on_done, w);
    if (w->done_ev == NULL || batch_decoder_new(&w->dec) != 0) {
        snprintf(err, err_len, "out of memory");
        return INGEST_ENOMEM;
    }
    ingest_dicts_attach(srv->ctx.dicts, w->dec);
    uint16_t port = 0;
    w->fd = open_listener(srv->cfg.listen_host, srv->port, &port, err, err_len);
    if (w->fd < 0)
        return INGEST_EIO;
    if (srv->port == 0)
        srv->port = port;
    struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(w->http, w->fd);
    if (bound == NULL) {
        snprintf(err, err_len, "evhttp_accept_socket failed");
        return INGEST_EIO;
    }
    w->fd = -1; /* evhttp owns it now */
    w->listener = evhttp_bound_socket_get_listener(bound);
    w->resume_ev = evtimer_new(w->base, on_accept_resume, w);
    if (w->resume_ev == NULL) {
        snprintf(err, err_len, "out of memory");
        return INGEST_ENOMEM;
    }
    evconnlistener_set_error_cb(w->listener, on_accept_error);
    struct timeval tv = {srv->cfg.timeout_ms / 1000, (srv->cfg.timeout_ms % 1000) * 1000};
    evhttp_set_timeout_tv(w->http, &tv);
    evhttp_set_max_headers_size(w->http, 64 * 1024);
    evhttp_set_max_body_size(w->http, (ev_ssize_t)(srv->cfg.max_body_bytes + 64 * 1024));
    /* A body above that limit is read and dropped before the 413 goes out. Closing at once
     * would reset the connection while the client is still sending, and it would then see
     * "connection reset" instead of the 413 naming the limit. Reading it costs no more than a
     * client sending the same bytes in allowed bodies, and the idle timeout still applies. */
    evhttp_set_flags(w->http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_gencb(w->http, dispatch, w);
    if (srv->tls != NULL)
        evhttp_set_bevcb(w->http, ingest_tls_bufferevent, srv->tls);
    return 0;
}

static void worker_free(struct worker *w)
{
    if (w->http != NULL)
        evhttp_free(w->http);
    if (w->fd >= 0)
        close(w->fd);
    /* Jobs still on the done list are answered by nobody now: the connections are gone. */
    for (struct ingest_job *j = w->done_head, *next; j != NULL; j = next) {
        next = j->next;
        ingest_job_free(j);
    }
    while (w->pool != NULL) {
        struct ingest_job *j = w->pool;
        w->pool = j->next;
        ingest_job_free(j);
    }
    if (w->done_ev != NULL)
        event_free(w->done_ev);
    if (w->resume_ev != NULL)
        event_free(w->resume_ev);
    if (w->base != NULL)
        event_base_free(w->base);
    batch_decoder_free(w->dec);
    free(w->conns.slots);
    pthread_mutex_destroy(&w->done_lock);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct ingest_server *s = arg;
    event_base_loopbreak(s->main_base);
}

/* SIGHUP: a new certificate and key for new connections; a failed reload keeps the old ones. */
static void on_reload(evutil_socket_t fd, short what, void *arg)
{
    struct ingest_server *s = arg;
    char err[512];
    if (s->tls == NULL) {
        log_info("ingest", "SIGHUP: nothing to reload (no server.tls_cert)");
        return;
    }
    if (ingest_tls_reload(s->tls, err, sizeof(err)) != 0)
        log_error("ingest", "SIGHUP: TLS reload failed, still serving the previous certificate: %s",
                  err);
    else
        log_info("ingest", "SIGHUP: TLS certificate and key reloaded");
}

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static void init_threads(void)
{
    (void)evthread_use_pthreads();
}

/* Every device connection is a descriptor: a fleet needs more than the usual soft limit of 1024,
 * and evhttp's listener spins on accept() failing with EMFILE. The soft limit goes up to the
 * hard one (what nginx's worker_rlimit_nofile does by hand). */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        log_debug("ingest", "descriptor limit raised from %llu to %llu", (unsigned long long)was,
                  (unsigned long long)rl.rlim_max);
}

int ingest_server_new(const struct ingest_config *cfg, struct ingest_store *store,
                      struct ingest_server **out, char *err, size_t err_len)
{
    raise_fd_limit();
    pthread_once(&threads_once, init_threads);
    struct ingest_server *s = calloc(1, sizeof(*s));
    int rc = INGEST_ENOMEM;
    *out = NULL;
    if (s == NULL)
        return INGEST_ENOMEM;
    s->cfg = *cfg;
    ingest_config_finish(&s->cfg);
    s->port = s->cfg.listen_port;
    s->ctx.cfg = &s->cfg;
    s->ctx.store = store;
    if ((s->router = ingest_router_new()) == NULL || ingest_metrics_new(&s->ctx.metrics) != 0 ||
        ingest_devtab_new(store, &s->cfg, &s->ctx.devtab) != 0 ||
        ingest_dicts_new(s->cfg.dict_dir, &s->ctx.dicts) != 0 ||
        ingest_enroll_limiter_new(s->cfg.enroll_failures_per_address, s->cfg.enroll_failures_global,
                                  &s->ctx.enroll_limiter) != 0 ||
        ingest_nonce_cache_new(s->cfg.nonce_cache_bytes, &s->nonces) != 0) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    rc = ingest_committer_new(store, s->ctx.metrics, &s->cfg, on_committed, s, &s->ctx.committer);
    if (rc != 0) {
        snprintf(err, err_len, "cannot start storage threads: %s", ingest_strerror(rc));
        goto fail;
    }
    s->main_base = event_base_new();
    s->stop_ev = s->main_base != NULL ? event_new(s->main_base, -1, 0, on_stop, s) : NULL;
    s->workers = calloc(s->cfg.workers, sizeof(*s->workers));
    if (s->stop_ev == NULL || s->workers == NULL) {
        rc = INGEST_ENOMEM;
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    if (s->cfg.tls_cert[0] != '\0' || s->cfg.tls_key[0] != '\0') {
        struct ingest_tls_config tc = {
            .cert_file = s->cfg.tls_cert,
            .key_file = s->cfg.tls_key,
            .min_version = s->cfg.tls_min_version,
            .ticket_rotation_ms = s->cfg.tls_ticket_rot_ms,
            .ticket_lifetime_ms = s->cfg.tls_ticket_life_ms,
            .ticket_key_file = s->cfg.tls_ticket_key,
        };
        if (ingest_tls_new(&tc, &s->tls, err, err_len) != 0) {
            rc = INGEST_EINVAL;
            goto fail;
        }
    }
    s->n_workers = s->cfg.workers;
    for (size_t i = 0; i < s->n_workers; i++)
        if ((rc = worker_init(s, &s->workers[i], err, err_len)) != 0)
            goto fail;
    if ((rc = ingest_router_add(s->router, EVHTTP_REQ_POST, "/v1/batches",
                                INGEST_ACCESS_DEVICE_BODY, handle_batch, NULL)) != 0 ||
        (rc = ingest_api_register(s->router, &s->ctx)) != 0 ||
        (rc = ingest_admin_api_register(s->router, &s->ctx)) != 0 ||
        (rc = ingest_auth_register(s->router, store)) != 0) {
        rc = INGEST_EINVAL;
        snprintf(err, err_len, "cannot register routes");
        goto fail;
    }

    /* Forwarders (cloud-ingest/forward/): their threads and GET /v1/forwarders. */
    if (ingest_forwarders_start(&s->cfg.forward, store, &s->ctx.forwarders, err, err_len) != 0) {
        rc = INGEST_EINVAL;
        goto fail;
    }
    if (ingest_forwarders_register(s->ctx.forwarders, s->router) != 0) {
        rc = INGEST_EINVAL;
        snprintf(err, err_len, "cannot register forwarder routes");
        goto fail;
    }

    /* OTA routes (cloud-ingest/release/). */
    if ((rc = ingest_release_register(s->router, &s->ctx)) != 0) {
        rc = INGEST_EINVAL;
        snprintf(err, err_len, "cannot register release routes");
        goto fail;
    }

    /* Read-side queries (cloud-ingest/query/): GET /v1/series; the console (ui/): /ui/. */
    if ((rc = ingest_query_register(s->router, store)) != 0 ||
        (rc = ingest_ui_register(s->router)) != 0 ||
        (rc = actions_register(s->router, store)) != 0) {
        rc = INGEST_EINVAL;
        snprintf(err, err_len, "cannot register query routes");
        goto fail;
    }

    /* Alerts (cloud-ingest/alerts/): rules evaluated from the store in commit order. */
    char owner[320], host[256] = "";
    (void)gethostname(host, sizeof(host) - 1);
    snprintf(owner, sizeof(owner), "%s:%ld", host, (long)getpid());
    if (alerts_config_finish(&s->cfg.alerts, err, err_len) != 0 ||
        alerts_new(&s->cfg.alerts, store, owner, &s->ctx.alerts, err, err_len) != 0 ||
        alerts_register(s->router, store) != 0 || alerts_silences_register(s->router, store) != 0 ||
        alerts_start(s->ctx.alerts) != 0) {
        rc = INGEST_EINVAL;
        if (err[0] == '\0')
            snprintf(err, err_len, "cannot start the alert engine");
        goto fail;
    }

    /* Rollouts (cloud-ingest/rollout/): the evaluator, /v1/rollouts, and the manifest a device is
     * offered while a rollout of its class runs. */
    if (rollouts_new(&s->cfg, store, owner, &s->rollouts, err, err_len) != 0 ||
        rollouts_register(s->router, s->rollouts) != 0 || rollouts_start(s->rollouts) != 0) {
        rc = INGEST_EINVAL;
        if (err[0] == '\0')
            snprintf(err, err_len, "cannot start the rollout evaluator");
        goto fail;
    }
    s->ctx.offerer = rollouts_offerer(s->rollouts);

    *out = s;
    return 0;
fail:
    ingest_server_free(s);
    return rc != 0 ? rc : INGEST_EIO;
}

uint16_t ingest_server_port(const struct ingest_server *s)
{
    return s->port;
}
struct ingest_router *ingest_server_router(struct ingest_server *s)
{
    return s->router;
}
struct ingest_ctx *ingest_server_ctx(struct ingest_server *s)
{
    return &s->ctx;
}

void ingest_server_stop(struct ingest_server *s)
{
    event_active(s->stop_ev, EV_READ, 0);
}

int ingest_server_run(struct ingest_server *s, bool handle_signals)
{
    struct event *sigint = NULL, *sigterm = NULL, *sighup = NULL;
    int rc = 0;
    if (handle_signals) {
        signal(SIGPIPE, SIG_IGN);
        sigint = evsignal_new(s->main_base, SIGINT, on_stop, s);
        sigterm = evsignal_new(s->main_base, SIGTERM, on_stop, s);
        sighup = evsignal_new(s->main_base, SIGHUP, on_reload, s);
        if (sigint == NULL || sigterm == NULL || sighup == NULL ||
            evsignal_add(sigint, NULL) != 0 || evsignal_add(sigterm, NULL) != 0 ||
            evsignal_add(sighup, NULL) != 0) {
            rc = INGEST_EIO;
            goto out;
        }
    }
    for (size_t i = 0; i < s->n_workers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            rc = INGEST_EIO;
            break;
        }
        s->workers[i].started = true;
    }
    if (rc == 0 && s->cfg.port_file[0] != '\0') {
        char text[16];
        int n = snprintf(text, sizeof(text), "%u\n", s->port);
        if (ferry_write_file_atomic(s->cfg.port_file, text, (size_t)n, 0644) != 0) {
            log_error("ingest", "cannot write port file %s", s->cfg.port_file);
            rc = INGEST_EIO;
        }
    }
    if (rc == 0) {
        log_info("ingest", "listening on %s://%s:%u with %zu workers, %s store",
                 s->tls != NULL ? "https" : "http", s->cfg.listen_host, s->port, s->n_workers,
                 ingest_store_kind(s->ctx.store) == INGEST_STORE_LMDB ? "lmdb" : "postgresql");
        /* A persistent dummy keeps the loop alive until the stop event breaks it. */
        (void)event_base_loop(s->main_base, EVLOOP_NO_EXIT_ON_EMPTY);
    }
    for (size_t i = 0; i < s->n_workers; i++) {
        if (!s->workers[i].started)
            continue;
        event_base_loopexit(s->workers[i].base, NULL);
        pthread_join(s->workers[i].thread, NULL);
        s->workers[i].started = false;
    }
out:
    if (sigint != NULL)
        event_free(sigint);
    if (sigterm != NULL)
        event_free(sigterm);
    if (sighup != NULL)
        event_free(sighup);
    return rc;
}

void ingest_server_free(struct ingest_server *s)
{
    if (s == NULL)
        return;
    /* Forwarders only read the store; they stop first. */
    ingest_forwarders_stop(s->ctx.forwarders);
    /* Storage threads next: they may still hand jobs to workers, whose lists are then freed,
     * and they tell the alert engine of each commit (alerts_committed), so the engine goes only
     * after them (freed before, a late commit read it after free: ASan, at shutdown). */
    ingest_committer_free(s->ctx.committer);
    alerts_free(s->ctx.alerts);
    rollouts_free(s->rollouts);
    s->ctx.offerer = NULL;
    for (size_t i = 0; i < s->n_workers; i++)
        worker_free(&s->workers[i]);
    free(s->workers);
    ingest_tls_free(s->tls); /* after the workers: their connections hold its context */
    if (s->stop_ev != NULL)
        event_free(s->stop_ev);
    if (s->main_base != NULL)
        event_base_free(s->main_base);
    ingest_devtab_free(s->ctx.devtab);
    ingest_dicts_free(s->ctx.dicts);
    ingest_enroll_limiter_free(s->ctx.enroll_limiter);
    ingest_nonce_cache_free(s->nonces);
    ingest_metrics_free(s->ctx.metrics);
    ingest_router_free(s->router);
    free(s);
}
