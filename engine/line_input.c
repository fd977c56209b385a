/*
 * line_input.c - UDP and Unix-socket line protocol inputs (see line_input.h).
 *
 * A Unix connection alternates between READING (bufferevent reads enabled; each read runs a job
 * over the complete lines buffered so far) and STALLED (the journal's queue was full: reads are
 * disabled so the buffered bytes, which the job borrows, cannot move; a 2 ms timer runs the job
 * again). Invariant: bytes are drained from the connection's input buffer only after the job
 * over them finished, so a stall never loses or repeats a line.
 */
#include "engine/line_input.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "engine/config.h"
#include "journal/journal.h"

#define UDP_MAX_DATAGRAM 65536
#define UDP_READS_PER_WAKEUP 64
#define UNIX_READ_HIGH_WATER (4 * 1024 * 1024)

struct unix_conn {
    struct line_input *in;
    struct bufferevent *bev;
    struct input_job *job; /* non-NULL while STALLED */
    size_t job_len;        /* bytes of the input buffer the job covers */
    struct event *retry;
    bool eof;
    struct unix_conn *prev, *next;
};

struct line_input {
    struct line_input_deps deps;
    bool is_unix;
    char address[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
    evutil_socket_t udp_fd;
    struct event *udp_ev;
    uint8_t *udp_buf;
    struct evconnlistener *listener;
    struct unix_conn *conns;
    struct input_stats stats;
};

static void on_durable(void *arg, int journal_err)
{
    struct line_input *in = arg;
    if (journal_err == 0 && in->deps.on_durable)
        in->deps.on_durable(in->deps.arg);
    else if (journal_err != 0)
        in->stats.journal_errors++;
}

/* Bookkeeping after a job finished (or gave up): counters, log of bad lines, durable wait. */
static void finish_job(struct line_input *in, struct input_job *job)
{
    in->stats.records += input_job_accepted(job);
    in->stats.rejected_lines += input_job_rejected(job);
    if (input_job_rejected(job))
        log_limited(10, FERRY_LOG_WARN, "input", "%s: %llu bad line(s): %s", in->address,
                    (unsigned long long)input_job_rejected(job), input_job_errors(job));
    size_t n;
    const struct durable_point *points = input_job_points(job, &n);
    if (n && durable_wait(in->deps.durable, points, n, on_durable, in) != 0 && in->deps.on_durable)
        in->deps.on_durable(in->deps.arg); /* shutting down: wake the engine anyway */
}

static int new_job(const struct line_input *in, const char *text, size_t len,
                   struct input_job **out)
{
    struct input_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.observe = in->deps.observe;
    opts.observe_arg = in->deps.arg;
    opts.format = INPUT_LINEPROTO;
    opts.precision = LINEPROTO_NS;
    opts.default_ts_ns = ferry_realtime_ns();
    return input_job_new(&opts, text, len, out);
}

/* ---- UDP -------------------------------------------------------------------------------- */

static void on_udp_readable(evutil_socket_t fd, short what, void *arg)
{
    struct line_input *in = arg;
    for (int i = 0; i < UDP_READS_PER_WAKEUP; i++) {
        ssize_t n = recv(fd, in->udp_buf, UDP_MAX_DATAGRAM, MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_limited(10, FERRY_LOG_WARN, "input", "udp %s: recv: %s", in->address,
                            strerror(errno));
            return;
        }
        in->stats.requests++;
        in->stats.bytes += (uint64_t)n;
        struct input_job *job;
        if (new_job(in, (const char *)in->udp_buf, (size_t)n, &job) != 0) {
            in->stats.dropped++;
            continue;
        }
        int rc = input_job_run(job, in->deps.journal, 0);
        if (rc == INPUT_BUSY) {
            in->stats.dropped++;
            log_limited(10, FERRY_LOG_WARN, "input",
                        "udp %s: journal queue full, dropped the rest of a datagram", in->address);
        } else if (rc == INPUT_EJOURNAL) {
            in->stats.journal_errors++;
            log_limited(10, FERRY_LOG_ERROR, "input", "udp %s: journal: %s", in->address,
                        journal_strerror(input_job_journal_error(job)));
        }
        finish_job(in, job);
        input_job_free(job);
    }
}

int line_input_udp_new(const struct line_input_deps *deps, const char *listen_addr,
                       struct line_input **out, char *errbuf, size_t errlen)
{
    char host[256];
    uint16_t port;
    if (ferryd_parse_hostport(listen_addr, host, sizeof host, &port) != 0) {
        snprintf(errbuf, errlen, "udp listen address \"%s\": expected host:port", listen_addr);
        return LINE_INPUT_EADDR;
    }
    struct line_input *in = calloc(1, sizeof *in);
    if (!in)
        return LINE_INPUT_ENOMEM;
    in->deps = *deps;
    in->udp_fd = -1;
    int rc = LINE_INPUT_EADDR;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port_s[8];
    snprintf(port_s, sizeof port_s, "%u", port);
    int gai = getaddrinfo(host[0] ? host : NULL, port_s, &hints, &res);
    if (gai != 0) {
        snprintf(errbuf, errlen, "udp listen address \"%s\": %s", listen_addr, gai_strerror(gai));
        goto fail;
    }
    rc = LINE_INPUT_EBIND;
    in->udp_fd = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (in->udp_fd < 0 || bind(in->udp_fd, res->ai_addr, res->ai_addrlen) != 0) {
        snprintf(errbuf, errlen, "udp listen %s: %s", listen_addr, strerror(errno));
        goto fail;
    }
    /* A bigger receive buffer absorbs bursts while the loop is busy (best effort). */
    int rcvbuf = 4 * 1024 * 1024;
    (void)setsockopt(in->udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char h[INET6_ADDRSTRLEN + 1] = "?", p[8] = "0";
    if (getsockname(in->udp_fd, (struct sockaddr *)&ss, &sl) == 0)
        (void)getnameinfo((struct sockaddr *)&ss, sl, h, sizeof h, p, sizeof p,
                          NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(in->address, sizeof in->address, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
    rc = LINE_INPUT_ENOMEM;
    in->udp_buf = malloc(UDP_MAX_DATAGRAM);
    in->udp_ev = event_new(deps->base, in->udp_fd, EV_READ | EV_PERSIST, on_udp_readable, in);
    if (!in->udp_buf || !in->udp_ev || event_add(in->udp_ev, NULL) != 0)
        goto fail;
    freeaddrinfo(res);
    *out = in;
    return 0;
fail:
    if (res)
        freeaddrinfo(res);
    line_input_free(in);
    return rc;
}

/* ---- Unix stream socket ----------------------------------------------------------------- */

static void conn_free(struct unix_conn *c)
{
    struct line_input *in = c->in;
    if (c->prev)
        c->prev->next = c->next;
    else
        in->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->job) {
        finish_job(in, c->job);
        input_job_free(c->job);
    }
    if (c->retry)
        event_free(c->retry);
    if (c->bev)
        bufferevent_free(c->bev);
    free(c);
}

static void conn_process(struct unix_conn *c);

/* Runs the stalled-or-new job; returns true when it finished and its bytes were drained. */
static bool conn_run_job(struct unix_conn *c)
{
    struct line_input *in = c->in;
    int rc = input_job_run(c->job, in->deps.journal, 0);
    if (rc == INPUT_BUSY) {
        bufferevent_disable(c->bev, EV_READ);
        struct timeval tv = {0, 2000};
        event_add(c->retry, &tv);
        return false;
    }
    if (rc == INPUT_EJOURNAL) {
        in->stats.journal_errors++;
        log_limited(10, FERRY_LOG_ERROR, "input", "unix %s: journal: %s; lines dropped",
                    in->address, journal_strerror(input_job_journal_error(c->job)));
    } else if (rc != 0) {
        log_limited(10, FERRY_LOG_ERROR, "input", "unix %s: %s; lines dropped", in->address,
                    input_strerror(rc));
    }
    finish_job(in, c->job);
    input_job_free(c->job);
    c->job = NULL;
    evbuffer_drain(bufferevent_get_input(c->bev), c->job_len);
    c->job_len = 0;
    return true;
}

static void on_conn_retry(evutil_socket_t fd, short what, void *arg)
{
    struct unix_conn *c = arg;
    if (!conn_run_job(c))
        return;
    if (!c->eof)
        bufferevent_enable(c->bev, EV_READ);
    conn_process(c); /* lines that arrived before the stall */
}

/* Runs a job over every complete line buffered (all of it at EOF). */
static void conn_process(struct unix_conn *c)
{
    struct line_input *in = c->in;
    if (c->job)
        return; /* stalled: the retry timer goes on */
    struct evbuffer *buf = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(buf);
    if (len == 0) {
        if (c->eof)
            conn_free(c);
        return;
    }
    const char *text = (const char *)evbuffer_pullup(buf, -1);
    if (!text) {
        conn_free(c);
        return;
    }
    size_t upto = len;
    if (!c->eof) {
        const char *nl = memrchr(text, '\n', len);
        if (!nl) {
            if (len > LINEPROTO_MAX_LINE + 2) {
                log_limited(10, FERRY_LOG_WARN, "input",
                            "unix %s: line longer than %d bytes; closing the connection",
                            in->address, LINEPROTO_MAX_LINE);
                in->stats.rejected_lines++;
                conn_free(c);
            }
            return;
        }
        upto = (size_t)(nl - text) + 1;
    }
    in->stats.requests++;
    in->stats.bytes += upto;
    if (new_job(in, text, upto, &c->job) != 0) {
        conn_free(c);
        return;
    }
    c->job_len = upto;
    if (!conn_run_job(c))
        return;
    if (c->eof)
        conn_process(c);
}

static void on_conn_read(struct bufferevent *bev, void *arg)
{
    conn_process(arg);
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct unix_conn *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        c->eof = true;
        bufferevent_disable(bev, EV_READ);
        conn_process(c); /* the last line may lack its newline; frees c when done */
    }
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct line_input *in = arg;
    struct unix_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->in = in;
    c->bev = bufferevent_socket_new(in->deps.base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->retry = evtimer_new(in->deps.base, on_conn_retry, c);
    c->next = in->conns;
    if (in->conns)
        in->conns->prev = c;
    in->conns = c;
    if (!c->bev || !c->retry) {
        if (!c->bev)
            close(fd);
        conn_free(c);
        return;
    }
    bufferevent_setwatermark(c->bev, EV_READ, 0, UNIX_READ_HIGH_WATER);
    bufferevent_setcb(c->bev, on_conn_read, NULL, on_conn_event, c);
    bufferevent_enable(c->bev, EV_READ);
}

int line_input_unix_new(const struct line_input_deps *deps, const char *path, unsigned mode,
                        struct line_input **out, char *errbuf, size_t errlen)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun.sun_path) {
        snprintf(errbuf, errlen, "unix socket path \"%s\": longer than %zu bytes", path,
                 sizeof sun.sun_path - 1);
        return LINE_INPUT_EADDR;
    }
    memcpy(sun.sun_path, path, strlen(path));
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(errbuf, errlen, "unix socket path \"%s\": exists and is not a socket", path);
            return LINE_INPUT_EBIND;
        }
        unlink(path); /* a stale socket from a previous run */
    }
    struct line_input *in = calloc(1, sizeof *in);
    if (!in)
        return LINE_INPUT_ENOMEM;
    in->deps = *deps;
    in->is_unix = true;
    in->udp_fd = -1;
    snprintf(in->address, sizeof in->address, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || listen(fd, 64) != 0) {
        snprintf(errbuf, errlen, "unix socket %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        free(in);
        return LINE_INPUT_EBIND;
    }
    /* After bind the file has the process umask's bits; local producers of other users need
     * the configured mode (the directory's permissions still apply). */
    if (chmod(path, (mode_t)mode) != 0) {
        snprintf(errbuf, errlen, "unix socket %s: chmod %o: %s", path, mode, strerror(errno));
        close(fd);
        unlink(path);
        free(in);
        return LINE_INPUT_EBIND;
    }
    in->listener = evconnlistener_new(deps->base, on_accept, in, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (!in->listener) {
        close(fd);
        unlink(path);
        free(in);
        return LINE_INPUT_ENOMEM;
    }
    *out = in;
    return 0;
}

const char *line_input_address(const struct line_input *in)
{
    return in->address;
}
const struct input_stats *line_input_stats(const struct line_input *in)
{
    return &in->stats;
}

void line_input_stop(struct line_input *in)
{
    if (in->udp_ev)
        event_del(in->udp_ev);
    if (in->listener)
        evconnlistener_disable(in->listener);
}

void line_input_free(struct line_input *in)
{
    if (!in)
        return;
    while (in->conns)
        conn_free(in->conns);
    if (in->listener) {
        evconnlistener_free(in->listener);
        unlink(in->address);
    }
    if (in->udp_ev)
        event_free(in->udp_ev);
    if (in->udp_fd >= 0)
        close(in->udp_fd);
    free(in->udp_buf);
    free(in);
}
