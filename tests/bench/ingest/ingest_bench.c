/*
 * ingest-bench - load generator for ferry-ingest.
 *
 * Pre-builds signed batches (the real codec, one Ed25519 key per device) for N devices, then
 * posts them over loopback from one epoll-driven client thread on C keep-alive connections
 * (TCP_NODELAY), and measures, for each target in the same run:
 *
 *   bare   a libevent evhttp server (same worker count, SO_REUSEPORT) that reads each request and
 *          answers 200 with a small JSON body: the ceiling of HTTP on this machine
 *   lmdb   ferry-ingest with its LMDB store (durable: every group commit fsyncs)
 *   pg     ferry-ingest with the PostgreSQL store (--pg CONNINFO or $FERRY_TEST_PG; skipped
 *          without one)
 *
 * Scenarios: 1,000 devices x 1,000-record batches, and 10,000 devices x 10-record batches.
 * Prints batches/s, records/s, p50/p99 latency, and the server process's CPU per record, then
 * one `name: value` line per figure. The machine is shared: treat figures as indicative.
 *
 * --tls adds ferry-ingest's TLS (a P-256 certificate made here with the OpenSSL API):
 *   steady   the 10-record scenario over TLS keep-alive connections (handshakes done before the
 *            clock starts) against plain HTTP, both LMDB, in the same run: the ratio TLS/plain
 *   storm    10,000 devices reconnecting after an outage (a restart of the ingest, whose ticket
 *            keys come from server.tls_ticket_key_file), each a new connection (handshake, one
 *            10-record batch, close), g_connections at a time: once with full handshakes, once
 *            resuming the session ticket each device kept from before the outage; wall time,
 *            the server's and client's CPU and the bytes on the wire per device
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cloud-ingest/store.h"
#include "tests/integration/ingest/ingest_harness.h"

struct scenario {
    const char *name;
    size_t devices;
    size_t records; /* per batch */
    size_t batches_per_device;
    size_t max_posts_pg; /* PostgreSQL runs post at most this many batches */
};

struct prebuilt {
    struct ih_device *devs;
    size_t n_devs;
    struct ferry_buf *batches; /* request bytes: HTTP head + batch */
    size_t n;
    size_t records_per_batch;
};

struct result {
    bool ran;
    double seconds;
    size_t ok, rejected, failed;
    double batches_s, records_s, p50_ms, p99_ms, cpu_us_per_record, client_cpu_us_per_record;
};

static const char *g_ingest_bin;
static const char *g_pg;
static unsigned g_connections = 1000;
static unsigned g_workers = 0; /* 0: ferry-ingest's default, 2 x CPUs */
static char g_tmp[128];
static const char *g_only; /* run only this target (bare, lmdb, pg) */

/* ---- pre-building ----------------------------------------------------------------------- */

static int prebuild(const struct scenario *sc, const char *id_prefix, struct prebuilt *pb)
{
    memset(pb, 0, sizeof(*pb));
    pb->n_devs = sc->devices;
    pb->records_per_batch = sc->records;
    pb->devs = calloc(sc->devices, sizeof(*pb->devs));
    pb->n = sc->devices * sc->batches_per_device;
    pb->batches = calloc(pb->n, sizeof(*pb->batches));
    if (pb->devs == NULL || pb->batches == NULL)
        return -1;
    for (size_t d = 0; d < sc->devices; d++) {
        ih_device_new(&pb->devs[d]);
        snprintf(pb->devs[d].id, sizeof(pb->devs[d].id), "%s-%06zu", id_prefix, d);
    }
    int64_t now = ferry_realtime_ns();
    struct ferry_buf batch = FERRY_BUF_INIT;
    /* One builder per device, reused for its batches; batch k of device d is posted as number
     * k * devices + d, so consecutive posts spread over devices. */
    for (size_t d = 0; d < sc->devices; d++) {
        struct batch_builder_config cfg = {
            .device_id = pb->devs[d].id, .secret_key = pb->devs[d].sk, .zstd_level = 1};
        struct batch_builder *b = NULL;
        if (batch_builder_new(&cfg, &b) != 0)
            return -1;
        for (size_t k = 0; k < sc->batches_per_device; k++) {
            size_t i = k * sc->devices + d;
            ferry_buf_reset(&batch);
            int64_t ts0 = now - 3600ll * 1000000000 + (int64_t)(k * sc->records) * 1000000000;
            if (ih_batch_with(b, RECORD_METRIC, 1 + k * sc->records, sc->records, now, ts0,
                              &batch) != 0 ||
                ferry_buf_printf(
                    &pb->batches[i],
                    "POST /v1/batches HTTP/1.1\r\nHost: bench\r\n"
                    "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                    batch.len) != 0 ||
                ferry_buf_append(&pb->batches[i], batch.data, batch.len) != 0) {
                batch_builder_free(b);
                return -1;
            }
        }
        batch_builder_free(b);
    }
    ferry_buf_free(&batch);
    return 0;
}

static void prebuilt_free(struct prebuilt *pb)
{
    for (size_t i = 0; i < pb->n; i++)
        ferry_buf_free(&pb->batches[i]);
    free(pb->batches);
    free(pb->devs);
}

static int register_devices(const struct prebuilt *pb, const struct ingest_store_config *cfg)
{
    struct ingest_store *st = NULL;
    char err[512] = "";
    if (ingest_store_open(cfg, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "ingest-bench: store: %s\n", err);
        return -1;
    }
    struct ingest_device *devs = calloc(pb->n_devs, sizeof(*devs));
    if (devs == NULL)
        return -1;
    for (size_t i = 0; i < pb->n_devs; i++) {
        ferry_strlcpy(devs[i].id, pb->devs[i].id, sizeof(devs[i].id));
        memcpy(devs[i].public_key, pb->devs[i].pk, 32);
        batch_key_id(devs[i].public_key, devs[i].key_id);
        ferry_strlcpy(devs[i].versions, "{}", sizeof(devs[i].versions));
    }
    int rc = ingest_store_device_add_many(st, devs, pb->n_devs, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "ingest-bench: register devices: %s\n", err);
    free(devs);
    ingest_store_close(st);
    return rc;
}

/* ---- the client ------------------------------------------------------------------------- */

struct conn {
    int fd;
    SSL *ssl;   /* NULL: plain HTTP */
    size_t req; /* index of the batch in flight (SIZE_MAX: idle) */
    size_t sent;
    char in[4096];
    size_t in_len;
    int64_t t0;
};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int connect_to(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Parses a complete response in c->in: returns its status, 0 when incomplete, -1 malformed. */
static int parse_response(struct conn *c)
{
    c->in[c->in_len < sizeof(c->in) ? c->in_len : sizeof(c->in) - 1] = '\0';
    char *end = strstr(c->in, "\r\n\r\n");
    if (end == NULL)
        return c->in_len >= sizeof(c->in) - 1 ? -1 : 0;
    int status = 0;
    if (sscanf(c->in, "HTTP/1.1 %d", &status) != 1)
        return -1;
    size_t body = 0;
    char *cl = strcasestr(c->in, "Content-Length:");
    if (cl != NULL && cl < end)
        body = strtoul(cl + 15, NULL, 10);
    size_t total = (size_t)(end + 4 - c->in) + body;
    if (c->in_len < total)
        return 0;
    memmove(c->in, c->in + total, c->in_len - total);
    c->in_len -= total;
    return status;
}

static long proc_cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (long)(ut + st);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* send()/recv() over the connection's TLS session when it has one: -1 with errno EAGAIN when
 * the session needs the socket to be readable or writable first (SSL_MODE_ENABLE_PARTIAL_WRITE
 * makes SSL_write behave like send). */
static ssize_t conn_send(struct conn *c, const void *p, size_t n)
{
    if (c->ssl == NULL)
        return send(c->fd, p, n, MSG_NOSIGNAL);
    ERR_clear_error();
    int r = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EIO;
    return -1;
}

static ssize_t conn_recv(struct conn *c, void *p, size_t n)
{
    if (c->ssl == NULL)
        return recv(c->fd, p, n, 0);
    ERR_clear_error();
    int r = SSL_read(c->ssl, p, (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EIO;
    return -1;
}

/* A client TLS session on fd, trusting the bench's certificate; resumes `session` if given. */
static SSL *tls_client(SSL_CTX *ctx, int fd, SSL_SESSION *session)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 ||
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), "127.0.0.1") != 1 ||
        (session != NULL && SSL_set_session(ssl, session) != 1)) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

/* Completes the handshakes of every connection (before the clock of a steady run starts). */
static int handshake_all(struct conn *conns, unsigned n, int ep)
{
    unsigned pending = n;
    for (unsigned i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_MOD, conns[i].fd, &ev);
    }
    bool *done = calloc(n, sizeof(*done));
    struct epoll_event evs[256];
    while (pending > 0 && done != NULL) {
        int k = epoll_wait(ep, evs, 256, 10000);
        if (k <= 0)
            break;
        for (int e = 0; e < k; e++) {
            unsigned i = evs[e].data.u32;
            if (done[i])
                continue;
            ERR_clear_error();
            int r = SSL_do_handshake(conns[i].ssl);
            int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(conns[i].ssl, r);
            if (r == 1) {
                done[i] = true;
                pending--;
            } else if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
                fprintf(stderr, "ingest-bench: TLS handshake failed\n");
                free(done);
                return -1;
            }
            struct epoll_event ev = {
                .events = EPOLLIN | (err == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0), .data.u32 = i};
            epoll_ctl(ep, EPOLL_CTL_MOD, conns[i].fd, &ev);
        }
    }
    free(done);
    return pending == 0 ? 0 : -1;
}

/* Posts batches [0, n) of pb to port on g_connections connections (over TLS from `tls` when
 * non-NULL, handshakes done before the clock starts); fills res. */
static int run_load(const struct prebuilt *pb, size_t n, unsigned port, pid_t server, SSL_CTX *tls,
                    struct result *res)
{
    memset(res, 0, sizeof(*res));
    int ep = epoll_create1(0);
    struct conn *conns = calloc(g_connections, sizeof(*conns));
    int64_t *lat = calloc(n ? n : 1, sizeof(*lat));
    size_t n_lat = 0, next = 0, done = 0;
    if (ep < 0 || conns == NULL || lat == NULL)
        return -1;
    for (unsigned i = 0; i < g_connections; i++) {
        conns[i].fd = connect_to(port);
        conns[i].req = SIZE_MAX;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = i};
        if (conns[i].fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) != 0)
            return -1;
        if (tls != NULL && (conns[i].ssl = tls_client(tls, conns[i].fd, NULL)) == NULL)
            return -1;
    }
    if (tls != NULL && handshake_all(conns, g_connections, ep) != 0)
        return -1;
    long ticks0 = proc_cpu_ticks(server);
    double cpu0 = self_cpu_s();
    int64_t start = ferry_monotonic_ns();
    struct epoll_event evs[256];
    while (done < n) {
        int k = epoll_wait(ep, evs, 256, 10000);
        if (k <= 0) {
            fprintf(stderr, "ingest-bench: no progress for 10 s (%zu of %zu done)\n", done, n);
            break;
        }
        for (int e = 0; e < k; e++) {
            struct conn *c = &conns[evs[e].data.u32];
            if (c->req == SIZE_MAX && next < n) {
                c->req = next++;
                c->sent = 0;
                c->t0 = ferry_monotonic_ns();
            }
            if (c->req != SIZE_MAX && c->sent < pb->batches[c->req].len) {
                const struct ferry_buf *b = &pb->batches[c->req];
                ssize_t w = conn_send(c, b->data + c->sent, b->len - c->sent);
                if (w > 0)
                    c->sent += (size_t)w;
                else if (w < 0 && errno != EAGAIN) {
                    res->failed++;
                    done++;
                    c->req = SIZE_MAX;
                    continue;
                }
                struct epoll_event ev = {.events = EPOLLIN | (c->sent < b->len ? EPOLLOUT : 0),
                                         .data.u32 = evs[e].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            }
            if (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                /* Read until the socket (and the TLS session's buffer) is empty: decrypted
                 * bytes left inside OpenSSL would not wake epoll again. */
                ssize_t r;
                while ((r = conn_recv(c, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len)) > 0) {
                    c->in_len += (size_t)r;
                    if (c->in_len >= sizeof(c->in) - 1)
                        break;
                }
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    fprintf(stderr, "ingest-bench: connection closed by the server\n");
                    return -1;
                }
                int status;
                while (c->req != SIZE_MAX && (status = parse_response(c)) != 0) {
                    if (status == 200) {
                        res->ok++;
                        lat[n_lat++] = ferry_monotonic_ns() - c->t0;
                    } else if (status == 429 || status == 503)
                        res->rejected++;
                    else
                        res->failed++;
                    done++;
                    c->req = SIZE_MAX;
                    if (next < n) {
                        c->req = next++;
                        c->sent = 0;
                        c->t0 = ferry_monotonic_ns();
                        const struct ferry_buf *b = &pb->batches[c->req];
                        ssize_t w = conn_send(c, b->data, b->len);
                        if (w > 0)
                            c->sent = (size_t)w;
                        struct epoll_event ev = {.events =
                                                     EPOLLIN | (c->sent < b->len ? EPOLLOUT : 0),
                                                 .data.u32 = evs[e].data.u32};
                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                    }
                }
            }
        }
    }
    res->seconds = (double)(ferry_monotonic_ns() - start) / 1e9;
    long ticks1 = proc_cpu_ticks(server);
    double cpu1 = self_cpu_s();
    for (unsigned i = 0; i < g_connections; i++) {
        SSL_free(conns[i].ssl);
        close(conns[i].fd);
    }
    close(ep);
    qsort(lat, n_lat, sizeof(*lat), cmp_i64);
    double records = (double)res->ok * (double)pb->records_per_batch;
    res->ran = true;
    res->batches_s = (double)res->ok / res->seconds;
    res->records_s = records / res->seconds;
    res->p50_ms = n_lat ? (double)lat[n_lat / 2] / 1e6 : 0;
    res->p99_ms = n_lat ? (double)lat[n_lat * 99 / 100] / 1e6 : 0;
    double server_cpu_s = (double)(ticks1 - ticks0) / (double)sysconf(_SC_CLK_TCK);
    res->cpu_us_per_record = records > 0 ? server_cpu_s * 1e6 / records : 0;
    res->client_cpu_us_per_record = records > 0 ? (cpu1 - cpu0) * 1e6 / records : 0;
    free(conns);
    free(lat);
    return done == n ? 0 : -1;
}

/* ---- the bare libevent server (the ceiling) ------------------------------------------------ */

static void bare_cb(struct evhttp_request *req, void *arg)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    (void)evbuffer_pullup(in, -1); /* the body is in memory, as the ingest has it */
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    if (bev != NULL) {
        int one = 1, fd = (int)bufferevent_getfd(bev);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    static const char ack[] = "{\"batch_id\":\"00000000000000000000000000000000\",\"acked\":"
                              "{\"event\":[],\"metric\":[[1,1000]],\"log\":[]},\"gaps\":0}\n";
    evbuffer_add(evhttp_request_get_output_buffer(req), ack, sizeof(ack) - 1);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void *bare_thread(void *arg)
{
    int fd = *(int *)arg;
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_max_body_size(http, 16 * 1024 * 1024);
    evhttp_set_gencb(http, bare_cb, NULL);
    evhttp_accept_socket(http, fd);
    event_base_dispatch(base);
    return NULL;
}

static int listen_reuseport(unsigned *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4096) != 0)
        return -1;
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Forks the bare server; returns its pid and port. */
static pid_t bare_start(unsigned *port)
{
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(pipefd[0]);
        unsigned p = 0;
        int fds[16];
        pthread_t t[16];
        for (unsigned i = 0; i < g_workers && i < 16; i++) {
            fds[i] = listen_reuseport(&p);
            if (fds[i] < 0)
                _exit(1);
        }
        if (write(pipefd[1], &p, sizeof(p)) != sizeof(p))
            _exit(1);
        for (unsigned i = 0; i < g_workers && i < 16; i++)
            pthread_create(&t[i], NULL, bare_thread, &fds[i]);
        pthread_join(t[0], NULL);
        _exit(0);
    }
    close(pipefd[1]);
    if (pid < 0 || read(pipefd[0], port, sizeof(*port)) != sizeof(*port)) {
        close(pipefd[0]);
        return -1;
    }
    close(pipefd[0]);
    return pid;
}

/* ---- runs ----------------------------------------------------------------------------------- */

struct ih_resp;
static void print_result(const char *target, const struct scenario *sc, const struct result *r)
{
    if (!r->ran) {
        printf("  %-5s skipped\n", target);
        return;
    }
    printf("  %-5s %9.0f batches/s %11.0f records/s  p50 %7.2f ms  p99 %7.2f ms  server CPU "
           "%6.3f us/record  (client %5.3f)  ok %zu rejected %zu failed %zu in %.2f s\n",
           target, r->batches_s, r->records_s, r->p50_ms, r->p99_ms, r->cpu_us_per_record,
           r->client_cpu_us_per_record, r->ok, r->rejected, r->failed, r->seconds);
}

static int run_ingest(const struct prebuilt *pb, size_t n, bool pg, const char *data_dir,
                      struct result *res)
{
    char workers[16];
    snprintf(workers, sizeof(workers), "%u", g_workers);
    const char *args[24];
    int k = 0;
    if (pg) {
        args[k++] = "--pg";
        args[k++] = g_pg;
    } else {
        args[k++] = "-d";
        args[k++] = data_dir;
    }
    const char *common[] = {"--server.workers",
                            workers,
                            "--limits.device_rate",
                            "0",
                            "--limits.device_max_inflight",
                            "100000",
                            "--limits.queue_max",
                            "100000",
                            "--store.storage_threads",
                            "2",
                            "--store.pg_connections",
                            "4",
                            NULL};
    for (int i = 0; common[i] != NULL; i++)
        args[k++] = common[i];
    args[k] = NULL;
    struct ih_server s;
    if (ih_start(&s, g_ingest_bin, g_tmp, args) != 0) {
        fprintf(stderr, "ingest-bench: cannot start %s\n", g_ingest_bin);
        return -1;
    }
    int rc = run_load(pb, n, s.port, s.pid, NULL, res);
    /* How the group committer behaved: groups, mean commit time, batches per group. */
    struct ih_resp m;
    if (ih_http(s.port, "GET", "/metrics", NULL, 0, &m) == 0 && m.status == 200) {
        const char *t = (const char *)m.body.data;
        const char *g = strstr(t, "\nferry_ingest_commit_groups_total ");
        const char *sum = strstr(t, "\nferry_ingest_commit_seconds_sum ");
        if (g != NULL && sum != NULL) {
            double groups = strtod(g + 34, NULL), secs = strtod(sum + 33, NULL);
            if (groups > 0)
                printf("        (%.0f group commits, %.1f ms each, %.1f batches per group)\n",
                       groups, secs * 1e3 / groups, (double)res->ok / groups);
        }
    }
    ih_resp_free(&m);
    ih_stop(&s);
    return rc;
}

static void run_scenario(const struct scenario *sc, struct result out[3])
{
    struct prebuilt pb;
    char prefix[32];
    printf("\n%s: %zu devices, %zu-record batches, %zu batches\n", sc->name, sc->devices,
           sc->records, sc->devices * sc->batches_per_device);
    fflush(stdout);
    snprintf(prefix, sizeof(prefix), "b%zux%zu-%d", sc->devices, sc->records, (int)getpid());
    int64_t t0 = ferry_monotonic_ns();
    if (prebuild(sc, prefix, &pb) != 0) {
        fprintf(stderr, "ingest-bench: pre-building batches failed\n");
        exit(1);
    }
    printf("  (pre-built in %.1f s)\n", (double)(ferry_monotonic_ns() - t0) / 1e9);
    memset(out, 0, 3 * sizeof(*out));
    /* bare */
    unsigned port = 0;
    pid_t bare = g_only == NULL || strcmp(g_only, "bare") == 0 ? bare_start(&port) : -1;
    if (bare > 0) {
        (void)run_load(&pb, pb.n, port, bare, NULL, &out[0]);
        kill(bare, SIGKILL);
        waitpid(bare, NULL, 0);
    }
    print_result("bare", sc, &out[0]);
    fflush(stdout);
    /* lmdb */
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/lmdb-%s", g_tmp, sc->name);
    struct ingest_store_config lc = {.kind = INGEST_STORE_LMDB, .lmdb_dir = dir};
    if ((g_only == NULL || strcmp(g_only, "lmdb") == 0) && register_devices(&pb, &lc) == 0)
        (void)run_ingest(&pb, pb.n, false, dir, &out[1]);
    print_result("lmdb", sc, &out[1]);
    fflush(stdout);
    /* pg */
    if (g_pg != NULL && (g_only == NULL || strcmp(g_only, "pg") == 0)) {
        struct ingest_store_config pc = {
            .kind = INGEST_STORE_PG, .pg_conninfo = g_pg, .pg_connections = 1};
        size_t n = pb.n < sc->max_posts_pg ? pb.n : sc->max_posts_pg;
        if (register_devices(&pb, &pc) == 0)
            (void)run_ingest(&pb, n, true, NULL, &out[2]);
    }
    print_result("pg", sc, &out[2]);
    fflush(stdout);
    prebuilt_free(&pb);
}

static void print_lines(const char *tag, const struct result r[3])
{
    const char *targets[3] = {"bare", "lmdb", "pg"};
    for (int t = 0; t < 3; t++) {
        if (!r[t].ran)
            continue;
        printf("%s_%s_batches_per_s: %.0f\n", targets[t], tag, r[t].batches_s);
        printf("%s_%s_records_per_s: %.0f\n", targets[t], tag, r[t].records_s);
        printf("%s_%s_p50_ms: %.3f\n", targets[t], tag, r[t].p50_ms);
        printf("%s_%s_p99_ms: %.3f\n", targets[t], tag, r[t].p99_ms);
        printf("%s_%s_server_cpu_us_per_record: %.4f\n", targets[t], tag, r[t].cpu_us_per_record);
        printf("%s_%s_failed: %zu\n", targets[t], tag, r[t].failed + r[t].rejected);
    }
}

/* ---- TLS ------------------------------------------------------------------------------------ */

static bool g_tls;

/* A self-signed P-256 certificate for IP 127.0.0.1, made with the OpenSSL API. */
static int make_cert(const char *cert_path, const char *key_path)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    int rc = -1;
    FILE *cf = NULL, *kf = NULL;
    if (pkey == NULL || x == NULL)
        goto out;
    X509V3_CTX v3;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"ingest-bench", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1");
    if (ext == NULL || X509_add_ext(x, ext, -1) != 1) {
        X509_EXTENSION_free(ext);
        goto out;
    }
    X509_EXTENSION_free(ext);
    if (X509_sign(x, pkey, EVP_sha256()) <= 0)
        goto out;
    cf = fopen(cert_path, "w");
    kf = fopen(key_path, "w");
    if (cf != NULL && kf != NULL && PEM_write_X509(cf, x) == 1 &&
        PEM_write_PrivateKey(kf, pkey, NULL, NULL, 0, NULL, NULL) == 1)
        rc = 0;
out:
    if (cf != NULL && fclose(cf) != 0)
        rc = -1;
    if (kf != NULL && fclose(kf) != 0)
        rc = -1;
    X509_free(x);
    EVP_PKEY_free(pkey);
    return rc;
}

static SSL_CTX *client_ctx(const char *cert_path)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, cert_path, NULL) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* sessions kept by hand */
    return ctx;
}

struct storm_result {
    bool ran;
    double seconds, devices_s, server_cpu_us, client_cpu_us;
    size_t ok, failed, resumed;
    uint64_t wire_bytes; /* TLS bytes both ways, all devices (handshake, request, response) */
};

enum storm_state { STORM_HANDSHAKE, STORM_SEND, STORM_RECV };

struct storm_slot {
    struct conn c;
    enum storm_state state;
    size_t dev;
};

static void storm_watch(int ep, struct storm_slot *sl, unsigned i, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_MOD, sl->c.fd, &ev);
}

/* Opens the next device's connection in slot i; false when none is left or it failed. */
static bool storm_open(struct storm_slot *sl, unsigned i, int ep, unsigned port, SSL_CTX *ctx,
                       SSL_SESSION **resume, size_t *next, size_t n_devs)
{
    if (*next >= n_devs)
        return false;
    memset(&sl->c, 0, sizeof(sl->c));
    sl->dev = (*next)++;
    sl->state = STORM_HANDSHAKE;
    sl->c.fd = connect_to(port);
    if (sl->c.fd < 0)
        return false;
    sl->c.ssl = tls_client(ctx, sl->c.fd, resume != NULL ? resume[sl->dev] : NULL);
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = i};
    return sl->c.ssl != NULL && epoll_ctl(ep, EPOLL_CTL_ADD, sl->c.fd, &ev) == 0;
}

static void storm_close(struct storm_slot *sl)
{
    /* close_notify, as curl sends it: OpenSSL marks the session of a connection freed without
     * it as not resumable. */
    if (sl->c.ssl != NULL && SSL_is_init_finished(sl->c.ssl))
        (void)SSL_shutdown(sl->c.ssl);
    SSL_free(sl->c.ssl);
    close(sl->c.fd);
    sl->c.ssl = NULL;
    sl->c.fd = -1;
}

/* Every device of pb opens a new TLS connection (resuming resume[d] when given), posts its
 * batch number k, reads the answer and closes; g_connections devices at a time. Keeps each
 * device's new session in keep[d] when keep is non-NULL. */
static int run_storm(const struct prebuilt *pb, size_t k, unsigned port, pid_t server, SSL_CTX *ctx,
                     SSL_SESSION **resume, SSL_SESSION **keep, struct storm_result *res)
{
    memset(res, 0, sizeof(*res));
    size_t n_devs = pb->n_devs, next = 0, done = 0;
    int ep = epoll_create1(0);
    struct storm_slot *slots = calloc(g_connections, sizeof(*slots));
    if (ep < 0 || slots == NULL)
        return -1;
    long ticks0 = proc_cpu_ticks(server);
    double cpu0 = self_cpu_s();
    int64_t start = ferry_monotonic_ns();
    unsigned active = 0;
    for (unsigned i = 0; i < g_connections; i++) {
        slots[i].c.fd = -1;
        size_t was = next;
        if (storm_open(&slots[i], i, ep, port, ctx, resume, &next, n_devs)) {
            active++;
        } else if (next != was) { /* this device could not even connect */
            res->failed++;
            done++;
            if (slots[i].c.fd >= 0)
                storm_close(&slots[i]);
        }
    }
    struct epoll_event evs[256];
    while (done < n_devs && active > 0) {
        int m = epoll_wait(ep, evs, 256, 10000);
        if (m <= 0) {
            fprintf(stderr, "ingest-bench: storm: no progress for 10 s (%zu of %zu)\n", done,
                    n_devs);
            break;
        }
        for (int e = 0; e < m; e++) {
            unsigned i = evs[e].data.u32;
            struct storm_slot *sl = &slots[i];
            struct conn *c = &sl->c;
            const struct ferry_buf *b = &pb->batches[k * n_devs + sl->dev];
            int outcome = 0; /* 1 ok, -1 failed, 0 in progress */
            if (sl->state == STORM_HANDSHAKE) {
                ERR_clear_error();
                int r = SSL_do_handshake(c->ssl);
                if (r == 1) {
                    res->resumed += SSL_session_reused(c->ssl) ? 1 : 0;
                    sl->state = STORM_SEND;
                } else {
                    int err = SSL_get_error(c->ssl, r);
                    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                        storm_watch(ep, sl, i, err == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN);
                    else
                        outcome = -1;
                }
            }
            if (outcome == 0 && sl->state == STORM_SEND) {
                ssize_t w = conn_send(c, b->data + c->sent, b->len - c->sent);
                if (w > 0)
                    c->sent += (size_t)w;
                else if (errno != EAGAIN)
                    outcome = -1;
                if (c->sent == b->len)
                    sl->state = STORM_RECV;
                storm_watch(ep, sl, i, sl->state == STORM_RECV ? EPOLLIN : EPOLLOUT);
            }
            if (outcome == 0 && sl->state == STORM_RECV) {
                ssize_t r = 1;
                while (c->in_len < sizeof(c->in) - 1 &&
                       (r = conn_recv(c, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len)) > 0)
                    c->in_len += (size_t)r;
                int status = parse_response(c);
                if (status != 0)
                    outcome = status == 200 ? 1 : -1;
                else if (r == 0 || (r < 0 && errno != EAGAIN))
                    outcome = -1;
            }
            if (outcome == 0)
                continue;
            if (outcome > 0) {
                res->ok++;
                res->wire_bytes += BIO_number_read(SSL_get_rbio(c->ssl)) +
                                   BIO_number_written(SSL_get_wbio(c->ssl));
                if (keep != NULL)
                    keep[sl->dev] = SSL_get1_session(c->ssl);
            } else {
                res->failed++;
            }
            done++;
            storm_close(sl);
            size_t was = next;
            if (!storm_open(sl, i, ep, port, ctx, resume, &next, n_devs)) {
                if (next != was) { /* this device could not even connect */
                    res->failed++;
                    done++;
                    if (sl->c.fd >= 0)
                        storm_close(sl);
                }
                active--;
            }
        }
    }
    res->seconds = (double)(ferry_monotonic_ns() - start) / 1e9;
    double server_cpu_s = (double)(proc_cpu_ticks(server) - ticks0) / (double)sysconf(_SC_CLK_TCK);
    double client_cpu_s = self_cpu_s() - cpu0;
    for (unsigned i = 0; i < g_connections; i++)
        if (slots[i].c.fd >= 0)
            storm_close(&slots[i]);
    free(slots);
    close(ep);
    res->ran = true;
    res->devices_s = (double)res->ok / res->seconds;
    res->server_cpu_us = res->ok ? server_cpu_s * 1e6 / (double)res->ok : 0;
    res->client_cpu_us = res->ok ? client_cpu_s * 1e6 / (double)res->ok : 0;
    return done == n_devs && res->failed == 0 ? 0 : -1;
}

static int start_ingest(const char *data_dir, const char *cert, const char *key,
                        const char *ticket_key, struct ih_server *s)
{
    char workers[16];
    snprintf(workers, sizeof(workers), "%u", g_workers);
    const char *args[32] = {"-d",
                            data_dir,
                            "--server.workers",
                            workers,
                            "--limits.device_rate",
                            "0",
                            "--limits.device_max_inflight",
                            "100000",
                            "--limits.queue_max",
                            "100000",
                            "--log.level",
                            "warn"};
    int k = 12;
    if (cert != NULL) {
        args[k++] = "--server.tls_cert";
        args[k++] = cert;
        args[k++] = "--server.tls_key";
        args[k++] = key;
        args[k++] = "--server.tls_ticket_key_file";
        args[k++] = ticket_key;
    }
    args[k] = NULL;
    if (ih_start(s, g_ingest_bin, g_tmp, args) != 0) {
        fprintf(stderr, "ingest-bench: cannot start %s\n", g_ingest_bin);
        return -1;
    }
    return 0;
}

struct tls_results {
    struct result plain, tls;
    struct storm_result full, resumed;
};

static void print_storm(const char *what, const struct storm_result *r)
{
    if (!r->ran) {
        printf("  %-8s skipped\n", what);
        return;
    }
    printf("  %-8s %8.0f devices/s  %6.2f s  server CPU %7.1f us/device  client CPU %7.1f "
           "us/device  %5.0f bytes/device  resumed %zu of %zu  failed %zu\n",
           what, r->devices_s, r->seconds, r->server_cpu_us, r->client_cpu_us,
           r->ok ? (double)r->wire_bytes / (double)r->ok : 0, r->resumed, r->ok, r->failed);
}

/* The TLS figures (see the top of this file); steady_per_device batches per device for the
 * steady comparison, then three more per device for the storm (before, full, resumed). */
static int run_tls(size_t devices, size_t steady_per_device, struct tls_results *out)
{
    memset(out, 0, sizeof(*out));
    struct scenario sc = {"tls", devices, 10, steady_per_device + 3, 0};
    char cert[300], key[300], ticket_key[300], plain_dir[300], tls_dir[300], prefix[48];
    snprintf(ticket_key, sizeof(ticket_key), "%s/ticket.key", g_tmp);
    snprintf(cert, sizeof(cert), "%s/tls.crt", g_tmp);
    snprintf(key, sizeof(key), "%s/tls.key", g_tmp);
    snprintf(plain_dir, sizeof(plain_dir), "%s/tls-plain", g_tmp);
    snprintf(tls_dir, sizeof(tls_dir), "%s/tls-tls", g_tmp);
    snprintf(prefix, sizeof(prefix), "t%zu-%d", devices, (int)getpid());
    printf("\ntls: %zu devices, 10-record batches; steady: %zu batches on %u keep-alive "
           "connections; storm: every device reconnects, %u at a time\n",
           devices, devices * steady_per_device, g_connections, g_connections);
    fflush(stdout);
    struct prebuilt pb;
    SSL_CTX *ctx = NULL;
    SSL_SESSION **sessions = NULL;
    int rc = -1;
    uint8_t secret[32];
    char secret_hex[65];
    randombytes_buf(secret, sizeof(secret));
    ferry_hex_encode(secret, sizeof(secret), secret_hex);
    if (make_cert(cert, key) != 0 || (ctx = client_ctx(cert)) == NULL ||
        ferry_write_file_atomic(ticket_key, secret_hex, 64, 0600) != 0) {
        fprintf(stderr, "ingest-bench: cannot make the TLS certificate\n");
        return -1;
    }
    if (prebuild(&sc, prefix, &pb) != 0) {
        fprintf(stderr, "ingest-bench: pre-building batches failed\n");
        SSL_CTX_free(ctx);
        return -1;
    }
    struct ingest_store_config pc = {.kind = INGEST_STORE_LMDB, .lmdb_dir = plain_dir};
    struct ingest_store_config tc = {.kind = INGEST_STORE_LMDB, .lmdb_dir = tls_dir};
    size_t steady_n = devices * steady_per_device;
    struct ih_server s;
    if (register_devices(&pb, &pc) != 0 || register_devices(&pb, &tc) != 0)
        goto out;
    /* Steady: plain HTTP, then TLS, the same batches into fresh stores. */
    if (start_ingest(plain_dir, NULL, NULL, NULL, &s) != 0)
        goto out;
    (void)run_load(&pb, steady_n, s.port, s.pid, NULL, &out->plain);
    ih_stop(&s);
    print_result("plain", &sc, &out->plain);
    if (start_ingest(tls_dir, cert, key, ticket_key, &s) != 0)
        goto out;
    (void)run_load(&pb, steady_n, s.port, s.pid, ctx, &out->tls);
    print_result("tls", &sc, &out->tls);
    fflush(stdout);
    /* Storm: before the outage every device connects once and keeps its session ticket; the
     * outage is a restart of the ingest (its ticket keys come back from the ticket key file);
     * then all reconnect with full handshakes, then all resume. */
    sessions = calloc(devices, sizeof(*sessions));
    struct storm_result before;
    if (sessions == NULL ||
        run_storm(&pb, steady_per_device, s.port, s.pid, ctx, NULL, sessions, &before) != 0) {
        fprintf(stderr, "ingest-bench: storm: the connections before the outage failed\n");
        ih_stop(&s);
        goto out;
    }
    ih_stop(&s);
    if (start_ingest(tls_dir, cert, key, ticket_key, &s) != 0)
        goto out;
    (void)run_storm(&pb, steady_per_device + 1, s.port, s.pid, ctx, NULL, NULL, &out->full);
    print_storm("full", &out->full);
    fflush(stdout);
    (void)run_storm(&pb, steady_per_device + 2, s.port, s.pid, ctx, sessions, NULL, &out->resumed);
    print_storm("resumed", &out->resumed);
    ih_stop(&s);
    rc = 0;
out:
    for (size_t i = 0; sessions != NULL && i < devices; i++)
        SSL_SESSION_free(sessions[i]);
    free(sessions);
    prebuilt_free(&pb);
    SSL_CTX_free(ctx);
    return rc;
}

static void print_tls_lines(const struct tls_results *t)
{
    if (t->plain.ran && t->tls.ran) {
        printf("tls_steady_plain_batches_per_s: %.0f\n", t->plain.batches_s);
        printf("tls_steady_tls_batches_per_s: %.0f\n", t->tls.batches_s);
        printf("tls_steady_ratio: %.3f\n",
               t->plain.batches_s > 0 ? t->tls.batches_s / t->plain.batches_s : 0);
        printf("tls_steady_plain_server_cpu_us_per_batch: %.1f\n", t->plain.cpu_us_per_record * 10);
        printf("tls_steady_tls_server_cpu_us_per_batch: %.1f\n", t->tls.cpu_us_per_record * 10);
    }
    const struct storm_result *r[2] = {&t->full, &t->resumed};
    const char *names[2] = {"full", "resumed"};
    for (int i = 0; i < 2; i++) {
        if (!r[i]->ran)
            continue;
        printf("tls_storm_%s_seconds: %.3f\n", names[i], r[i]->seconds);
        printf("tls_storm_%s_devices_per_s: %.0f\n", names[i], r[i]->devices_s);
        printf("tls_storm_%s_server_cpu_us_per_device: %.1f\n", names[i], r[i]->server_cpu_us);
        printf("tls_storm_%s_client_cpu_us_per_device: %.1f\n", names[i], r[i]->client_cpu_us);
        printf("tls_storm_%s_wire_bytes_per_device: %.0f\n", names[i],
               r[i]->ok ? (double)r[i]->wire_bytes / (double)r[i]->ok : 0);
        printf("tls_storm_%s_resumed: %zu\n", names[i], r[i]->resumed);
        printf("tls_storm_%s_failed: %zu\n", names[i], r[i]->failed);
    }
}

static void usage(void)
{
    printf("usage: ingest-bench --ingest PATH [--pg CONNINFO] [--quick] [--connections N]\n"
           "                    [--workers N]\n"
           "  --ingest PATH     the ferry-ingest binary to measure\n"
           "  --pg CONNINFO     also measure the PostgreSQL store (default: $FERRY_TEST_PG)\n"
           "  --quick           small scenarios (100 devices), for CI\n"
           "  --connections N   concurrent client connections (1000: a fleet keeps many open)\n"
           "  --workers N       server worker threads for ferry-ingest and the bare server\n"
           "                    (default 2 x CPUs, as ferry-ingest)\n"
           "  --only TARGET     run only bare, lmdb or pg\n"
           "  --tls             only the TLS figures: steady 10-record batches over TLS vs plain\n"
           "                    HTTP (LMDB), and 10,000 devices (--quick: 1,000) reconnecting\n"
           "                    after an outage with full handshakes vs resumed sessions\n"
           "Scenarios: 1000 devices x 1000-record batches; 10000 devices x 10-record batches.\n"
           "Targets: lmdb >= 1,000,000 records/s (1000-record batches), lmdb >= 10,000\n"
           "batches/s (10-record batches), pg >= 200,000 records/s.\n");
}

int main(int argc, char **argv)
{
    bool quick = false;
    g_pg = getenv("FERRY_TEST_PG");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ingest") == 0 && i + 1 < argc)
            g_ingest_bin = argv[++i];
        else if (strcmp(argv[i], "--pg") == 0 && i + 1 < argc)
            g_pg = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            g_only = argv[++i];
        else if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--tls") == 0)
            g_tls = true;
        else if (strcmp(argv[i], "--connections") == 0 && i + 1 < argc)
            g_connections = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            g_workers = (unsigned)strtoul(argv[++i], NULL, 10);
        else {
            usage();
            return strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ? 0 : 2;
        }
    }
    if (g_workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN); /* as ferry-ingest's default */
        g_workers = n > 0 && n < 8 ? 2 * (unsigned)n : 16;
    }
    if (g_ingest_bin == NULL || g_connections == 0 || g_connections > 4096) {
        usage();
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max; /* the bare server runs in this process too */
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 2 * (rlim_t)g_connections + 64) {
        fprintf(stderr, "ingest-bench: %u connections need %u descriptors; the limit is %llu\n",
                g_connections, 2 * g_connections + 64, (unsigned long long)rl.rlim_cur);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/ingest-bench.XXXXXX");
    if (mkdtemp(g_tmp) == NULL)
        return 1;
    struct scenario big = {"large", 1000, 1000, 4, 1000};
    struct scenario small = {"small", 10000, 10, 6, 20000};
    if (quick) {
        big = (struct scenario){"large", 100, 1000, 2, 200};
        small = (struct scenario){"small", 1000, 10, 2, 2000};
    }
    printf("ingest-bench: %u connections, %u server workers, loopback; the machine is shared, "
           "figures are indicative\n",
           g_connections, g_workers);
    if (g_tls) {
        struct tls_results t;
        int trc = run_tls(quick ? 1000 : 10000, quick ? 2 : 3, &t);
        printf("\n");
        print_tls_lines(&t);
        char rm[300];
        snprintf(rm, sizeof(rm), "rm -rf '%s'", g_tmp);
        if (system(rm) != 0)
            fprintf(stderr, "ingest-bench: could not remove %s\n", g_tmp);
        return trc == 0 && t.plain.failed == 0 && t.tls.failed == 0 && t.full.failed == 0 &&
                       t.resumed.failed == 0 && t.resumed.resumed > 0
                   ? 0
                   : 1;
    }
    struct result rb[3], rs[3];
    run_scenario(&big, rb);
    run_scenario(&small, rs);
    printf("\n");
    char tag[32];
    snprintf(tag, sizeof(tag), "%zux%zu", big.devices, big.records);
    print_lines(tag, rb);
    snprintf(tag, sizeof(tag), "%zux%zu", small.devices, small.records);
    print_lines(tag, rs);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "ingest-bench: could not remove %s\n", g_tmp);
    bool ok = g_only != NULL || (rb[1].ran && rs[1].ran && rb[1].failed == 0 && rs[1].failed == 0 &&
                                 rb[1].rejected == 0 && rs[1].rejected == 0);
    return ok ? 0 : 1;
}
