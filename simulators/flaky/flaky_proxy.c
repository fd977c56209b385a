/*
 * flaky_proxy.c - the ferry-flaky TCP proxy (see flaky_proxy.h).
 *
 * Design
 * ------
 * Each accepted connection (struct conn) has two pipes, "up" (client -> upstream) and "down"
 * (upstream -> client). A pipe models one direction of the link in three stages:
 *
 *   src input evbuffer --(token buckets)--> inflight evbuffer + segment FIFO --(release time)-->
 *   dst output evbuffer
 *
 * "Transmit" takes from the source only what the pipe's and the proxy's aggregate bucket allow,
 * flips bits if corruption is on, and stamps the bytes with a release time (now + latency +
 * jitter, never earlier than the previous segment's, because TCP delivers in order). "Release"
 * moves due segments to the destination. One evtimer per pipe wakes it at the next release or
 * when enough tokens will have accumulated; bufferevent read and write callbacks wake it when
 * data arrives or the destination drains.
 *
 * Backpressure is TCP's own: the source bufferevent stops reading at FLAKY_READ_HIGH bytes of
 * input, so once the bucket holds data back, the kernel's receive window closes and the sender
 * slows down exactly as it would behind a slow link. A pipe also stops transmitting while its
 * inflight plus destination output exceed FLAKY_QUEUE_MAX (a slow reader on the far side).
 *
 * Invariants
 *  1. Bytes leave a pipe in the order they entered it (segments are FIFO, release times are
 *     non-decreasing).
 *  2. Nothing moves while the link is down, the connection is stalled, or the pipe is half-open.
 *  3. A connection is freed exactly once, by conn_free(), after which no callback of it runs
 *     (its timers and bufferevents are freed there), and callers return right after.
 *
 * Connection states: HELD (accepted while the link was down, waiting for it to come up:
 * conn_connect), CONNECTING (conn_server_event CONNECTED -> OPEN), OPEN (forwarding; graceful
 * end when both pipes shut their destination, conn_maybe_done), BLACKHOLE (never forwards; freed
 * when the client goes away, blackhole_closed).
 */
#include "simulators/flaky/flaky_proxy.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "simulators/flaky/flaky_bucket.h"
#include "simulators/flaky/flaky_rng.h"
#include "simulators/flaky/flaky_schedule.h"

#define FLAKY_READ_HIGH (256 * 1024)  /* source stops reading above this much input */
#define FLAKY_WRITE_LOW (64 * 1024)   /* destination write callback below this much output */
#define FLAKY_QUEUE_MAX (1024 * 1024) /* inflight + destination output before we hold back */
#define FLAKY_CHUNK_MAX (64 * 1024)   /* most bytes one transmit step moves */
#define FLAKY_MIN_SEND 1460           /* wait for a packet's worth of tokens, not single bytes */

enum conn_state { CONN_HELD, CONN_CONNECTING, CONN_OPEN, CONN_BLACKHOLE };
enum { DIR_UP = 0, DIR_DOWN = 1 };

struct segment {
    int64_t release_ns;
    size_t len;
};

struct conn;

struct pipe {
    struct conn *conn;
    int dir;
    struct bufferevent *src;
    struct bufferevent *dst;
    struct evbuffer *inflight;
    struct segment *segs; /* ring of seg_cap entries */
    size_t seg_head;
    size_t seg_count;
    size_t seg_cap;
    int64_t last_release_ns;
    struct event *timer;
    struct flaky_bucket bucket;
    struct flaky_rng rng;
    uint64_t bytes_to_corruption; /* bytes until the next flipped one (geometric) */
    int src_eof;
    int shut; /* dst has been shut down for writing */
    int half_open;
};

struct conn {
    struct flaky_proxy *proxy;
    uint64_t index;
    enum conn_state state;
    struct flaky_rng rng;
    struct bufferevent *client;
    struct bufferevent *server;
    struct pipe up;
    struct pipe down;
    struct event *fault_timer;
    struct event *closed_ev; /* blackhole: notices the client leaving */
    int64_t next_reset_ns;
    int64_t next_stall_ns;
    int64_t stall_until_ns;
    int stalled;
    int64_t next_half_open_ns;
    uint64_t bytes_total;
    uint64_t reset_at_bytes; /* UINT64_MAX: never */
    int reset_pending;
    struct conn *prev;
    struct conn *next;
};

struct flaky_proxy {
    struct event_base *base;
    struct evconnlistener *listener;
    int listen_port;
    struct sockaddr_storage upstream;
    socklen_t upstream_len;
    uint64_t seed;
    uint64_t next_index;
    struct flaky_profile profile;
    struct flaky_bucket aggregate[2];
    struct flaky_schedule schedule;
    struct event *schedule_timer;
    int forced_down;
    int link_up;
    int64_t down_since_ns;
    struct flaky_stats stats;
    struct conn *conns;
};

static void pipe_pump(struct pipe *pp);
static void conn_free(struct conn *c);
static void conn_connect(struct conn *c);

static const struct flaky_direction *dir_params(const struct flaky_proxy *p, int dir)
{
    return dir == DIR_UP ? &p->profile.up : &p->profile.down;
}

static double bytes_per_s(uint64_t bps)
{
    return (double)bps / 8.0;
}

static struct timeval tv_from_ns(int64_t ns)
{
    if (ns < 0)
        ns = 0;
    struct timeval tv = {.tv_sec = (time_t)(ns / 1000000000),
                         .tv_usec = (suseconds_t)((ns % 1000000000) / 1000)};
    /* Round up so a timer never fires just before the moment it waits for and spins. */
    if (ns % 1000)
        tv.tv_usec += 1;
    if (tv.tv_usec >= 1000000) {
        tv.tv_sec += 1;
        tv.tv_usec -= 1000000;
    }
    return tv;
}

static void arm_timer(struct event *ev, int64_t delay_ns)
{
    struct timeval tv = tv_from_ns(delay_ns);
    event_add(ev, &tv);
}

/* ---- resets and closing ------------------------------------------------------------------ */

static void set_rst_on_close(struct bufferevent *bev)
{
    if (!bev)
        return;
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0)
        return;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    /* With a zero linger time close() sends RST instead of FIN: the peer sees ECONNRESET. */
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

static void rst_fd(evutil_socket_t fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    evutil_closesocket(fd);
}

/* Resets both sides of c and frees it. */
static void conn_reset(struct conn *c)
{
    set_rst_on_close(c->client);
    set_rst_on_close(c->server);
    conn_free(c);
}

static void pipe_release_resources(struct pipe *pp)
{
    if (pp->timer)
        event_free(pp->timer);
    if (pp->inflight)
        evbuffer_free(pp->inflight);
    free(pp->segs);
}

static void conn_free(struct conn *c)
{
    struct flaky_proxy *p = c->proxy;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    p->stats.connections_active--;
    pipe_release_resources(&c->up);
    pipe_release_resources(&c->down);
    if (c->fault_timer)
        event_free(c->fault_timer);
    if (c->closed_ev)
        event_free(c->closed_ev);
    if (c->client)
        bufferevent_free(c->client);
    if (c->server)
        bufferevent_free(c->server);
    free(c);
}

static void conn_maybe_done(struct conn *c)
{
    if (c->up.shut && c->down.shut)
        conn_free(c);
}

/* ---- segments ---------------------------------------------------------------------------- */

static int seg_push(struct pipe *pp, int64_t release_ns, size_t len)
{
    if (pp->seg_count) {
        struct segment *tail = &pp->segs[(pp->seg_head + pp->seg_count - 1) % pp->seg_cap];
        if (tail->release_ns == release_ns) {
            tail->len += len;
            return 0;
        }
    }
    if (pp->seg_count == pp->seg_cap) {
        size_t cap = pp->seg_cap ? pp->seg_cap * 2 : 64;
        struct segment *n = calloc(cap, sizeof *n);
        if (!n)
            return -1;
        for (size_t i = 0; i < pp->seg_count; i++)
            n[i] = pp->segs[(pp->seg_head + i) % pp->seg_cap];
        free(pp->segs);
        pp->segs = n;
        pp->seg_cap = cap;
        pp->seg_head = 0;
    }
    pp->segs[(pp->seg_head + pp->seg_count) % pp->seg_cap] = (struct segment){release_ns, len};
    pp->seg_count++;
    return 0;
}

/* ---- the pipe pump ----------------------------------------------------------------------- */

static int pipe_moving(const struct pipe *pp)
{
    const struct conn *c = pp->conn;
    return c->state == CONN_OPEN && c->proxy->link_up && !c->stalled && !pp->half_open;
}

static void pipe_release(struct pipe *pp, int64_t now_ns)
{
    struct flaky_proxy *p = pp->conn->proxy;
    struct evbuffer *dst_out = bufferevent_get_output(pp->dst);
    while (pp->seg_count && pp->segs[pp->seg_head].release_ns <= now_ns) {
        size_t len = pp->segs[pp->seg_head].len;
        int moved = evbuffer_remove_buffer(pp->inflight, dst_out, len);
        assert(moved >= 0 && (size_t)moved == len);
        (void)moved;
        if (pp->dir == DIR_UP)
            p->stats.bytes_up += len;
        else
            p->stats.bytes_down += len;
        pp->seg_head = (pp->seg_head + 1) % pp->seg_cap;
        pp->seg_count--;
    }
}

static int64_t draw_delay_ns(struct pipe *pp)
{
    const struct flaky_direction *d = dir_params(pp->conn->proxy, pp->dir);
    int64_t us = d->latency_us;
    if (d->jitter_us > 0)
        us += (int64_t)((flaky_rng_uniform(&pp->rng) * 2.0 - 1.0) * (double)d->jitter_us);
    return us < 0 ? 0 : us * 1000;
}

/* Moves n bytes from src to inflight, flipping bits where the corruption draw says so. */
static int pipe_copy_corrupting(struct pipe *pp, struct evbuffer *src_in, size_t n)
{
    struct flaky_proxy *p = pp->conn->proxy;
    if (p->profile.corrupt_per_byte <= 0 || pp->bytes_to_corruption > n) {
        if (p->profile.corrupt_per_byte > 0)
            pp->bytes_to_corruption -= n;
        return evbuffer_remove_buffer(src_in, pp->inflight, n) == (int)n ? 0 : -1;
    }
    uint8_t chunk[FLAKY_CHUNK_MAX];
    assert(n <= sizeof chunk);
    if (evbuffer_remove(src_in, chunk, n) != (int)n)
        return -1;
    size_t pos = 0;
    while (pp->bytes_to_corruption <= n - pos) {
        pos += pp->bytes_to_corruption - 1; /* the k-th byte from here is at offset k-1 */
        chunk[pos] ^= (uint8_t)(1u << (flaky_rng_next(&pp->rng) % 8));
        p->stats.corrupted_bytes++;
        pos++;
        pp->bytes_to_corruption = flaky_rng_geometric(&pp->rng, p->profile.corrupt_per_byte);
        if (pos >= n)
            break;
    }
    if (pp->bytes_to_corruption != UINT64_MAX)
        pp->bytes_to_corruption -= n - pos;
    return evbuffer_add(pp->inflight, chunk, n);
}

/* Transmits what the buckets allow. Returns the ns to wait for tokens (-1: not waiting for
 * tokens), or -2 when the connection was scheduled for a reset. */
static int64_t pipe_transmit(struct pipe *pp, int64_t now_ns)
{
    struct conn *c = pp->conn;
    struct flaky_proxy *p = c->proxy;
    struct evbuffer *src_in = bufferevent_get_input(pp->src);
    struct evbuffer *dst_out = bufferevent_get_output(pp->dst);
    struct flaky_bucket *agg = &p->aggregate[pp->dir];
    for (;;) {
        size_t avail = evbuffer_get_length(src_in);
        if (!avail)
            return -1;
        if (evbuffer_get_length(dst_out) + evbuffer_get_length(pp->inflight) >= FLAKY_QUEUE_MAX)
            return -1; /* the write callback or the release timer wakes us */
        size_t n = avail < FLAKY_CHUNK_MAX ? avail : FLAKY_CHUNK_MAX;
        size_t tokens = flaky_bucket_available(&pp->bucket, now_ns);
        size_t agg_tokens = flaky_bucket_available(agg, now_ns);
        if (agg_tokens < tokens)
            tokens = agg_tokens;
        size_t want = n < FLAKY_MIN_SEND ? n : FLAKY_MIN_SEND;
        if (tokens < want) {
            int64_t w1 = flaky_bucket_wait_ns(&pp->bucket, want, now_ns);
            int64_t w2 = flaky_bucket_wait_ns(agg, want, now_ns);
            int64_t w = w1 > w2 ? w1 : w2;
            return w > 0 ? w : 1000000;
        }
        if (tokens < n)
            n = tokens;
        flaky_bucket_take(&pp->bucket, n);
        flaky_bucket_take(agg, n);
        if (pipe_copy_corrupting(pp, src_in, n) < 0)
            return -1;
        int64_t release = now_ns + draw_delay_ns(pp);
        if (release < pp->last_release_ns)
            release = pp->last_release_ns;
        pp->last_release_ns = release;
        if (seg_push(pp, release, n) < 0) {
            /* Out of memory: deliver now rather than lose bytes. */
            evbuffer_remove_buffer(pp->inflight, dst_out, n);
        }
        c->bytes_total += n;
        if (c->bytes_total >= c->reset_at_bytes && !c->reset_pending) {
            c->reset_pending = 1;
            event_active(c->fault_timer, EV_TIMEOUT, 1);
            return -2;
        }
    }
}

/* Runs one direction as far as it can go now and arms its timer for the next step. May free
 * the connection (graceful end): callers must not touch it afterwards. */
static void pipe_pump(struct pipe *pp)
{
    struct conn *c = pp->conn;
    if (c->state != CONN_OPEN || c->reset_pending)
        return;
    int64_t now = ferry_monotonic_ns();
    if (!pipe_moving(pp)) {
        event_del(pp->timer); /* whoever ends the stop pumps again */
        return;
    }
    pipe_release(pp, now);
    int64_t wait_tokens_ns = pipe_transmit(pp, now);
    if (wait_tokens_ns == -2)
        return;
    pipe_release(pp, now);

    struct evbuffer *src_in = bufferevent_get_input(pp->src);
    struct evbuffer *dst_out = bufferevent_get_output(pp->dst);
    if (pp->src_eof && !pp->shut && evbuffer_get_length(src_in) == 0 && pp->seg_count == 0) {
        if (evbuffer_get_length(dst_out) == 0) {
            /* Everything the source sent has been delivered: pass its FIN on. */
            (void)shutdown(bufferevent_getfd(pp->dst), SHUT_WR);
            pp->shut = 1;
            event_del(pp->timer);
            conn_maybe_done(c);
            return;
        }
        bufferevent_setwatermark(pp->dst, EV_WRITE, 0, 0); /* call back when fully drained */
    }

    int64_t next_ns = INT64_MAX;
    if (pp->seg_count)
        next_ns = pp->segs[pp->seg_head].release_ns - now;
    if (wait_tokens_ns >= 0 && wait_tokens_ns < next_ns)
        next_ns = wait_tokens_ns;
    if (next_ns == INT64_MAX)
        event_del(pp->timer);
    else
        arm_timer(pp->timer, next_ns);
}

static void pipe_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    pipe_pump(arg);
}

static void conn_pump_both(struct conn *c)
{
    /* Pumping "up" may free c (graceful end) only when "down" is already shut, so check. */
    int down_shut = c->down.shut;
    pipe_pump(&c->up);
    if (!down_shut)
        pipe_pump(&c->down);
}

/* ---- bufferevent callbacks --------------------------------------------------------------- */

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    pipe_pump(&((struct conn *)arg)->up);
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    pipe_pump(&((struct conn *)arg)->down);
}

static void server_read_cb(struct bufferevent *bev, void *arg)
{
    pipe_pump(&((struct conn *)arg)->down);
}

static void server_write_cb(struct bufferevent *bev, void *arg)
{
    pipe_pump(&((struct conn *)arg)->up);
}

static void set_nodelay(struct bufferevent *bev)
{
    int one = 1;
    /* Small writes must not wait for Nagle: the latency we add is the latency we report. */
    (void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void conn_open(struct conn *c)
{
    c->state = CONN_OPEN;
    set_nodelay(c->server);
    bufferevent_setwatermark(c->server, EV_READ, 0, FLAKY_READ_HIGH);
    bufferevent_setwatermark(c->server, EV_WRITE, FLAKY_WRITE_LOW, 0);
    bufferevent_enable(c->server, EV_READ | EV_WRITE);
    bufferevent_enable(c->client, EV_READ | EV_WRITE);
    conn_pump_both(c);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_ERROR) {
        /* The client reset or failed: reset the upstream side as a real broken path would. */
        conn_reset(c);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        /* A half-closed client may still get its answer: remember the EOF, keep going. Held and
         * connecting connections pass it on once they are open. */
        c->up.src_eof = 1;
        pipe_pump(&c->up);
    }
}

static void server_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        conn_open(c);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        if (c->state == CONN_CONNECTING)
            c->proxy->stats.upstream_failures++;
        conn_reset(c);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        c->down.src_eof = 1;
        pipe_pump(&c->down);
    }
}

/* ---- faults of one connection ------------------------------------------------------------ */

static int64_t draw_after_ns(struct flaky_rng *r, double per_second)
{
    if (per_second <= 0)
        return INT64_MAX;
    double s = flaky_rng_exp(r, 1.0 / per_second);
    if (s > 1e9)
        return INT64_MAX;
    return (int64_t)(s * 1e9);
}

static int64_t add_sat(int64_t a, int64_t b)
{
    return (b == INT64_MAX || a > INT64_MAX - b) ? INT64_MAX : a + b;
}

static void conn_draw_faults(struct conn *c, int64_t now_ns)
{
    const struct flaky_profile *pr = &c->proxy->profile;
    c->next_reset_ns = add_sat(now_ns, draw_after_ns(&c->rng, pr->reset_per_second));
    c->next_stall_ns = add_sat(now_ns, draw_after_ns(&c->rng, pr->stall_per_second));
    c->next_half_open_ns = add_sat(now_ns, draw_after_ns(&c->rng, pr->half_open_per_second));
    c->reset_at_bytes = UINT64_MAX;
    if (pr->reset_per_mb > 0) {
        double bytes = flaky_rng_exp(&c->rng, 1e6 / pr->reset_per_mb);
        c->reset_at_bytes = c->bytes_total + (bytes < 1 ? 1 : (uint64_t)bytes);
    }
    for (int d = 0; d < 2; d++) {
        struct pipe *pp = d == DIR_UP ? &c->up : &c->down;
        pp->bytes_to_corruption = flaky_rng_geometric(&pp->rng, pr->corrupt_per_byte);
    }
}

static void conn_arm_faults(struct conn *c, int64_t now_ns)
{
    int64_t next = c->next_reset_ns;
    int64_t stall_edge = c->stalled ? c->stall_until_ns : c->next_stall_ns;
    if (stall_edge < next)
        next = stall_edge;
    if (c->next_half_open_ns < next)
        next = c->next_half_open_ns;
    if (next == INT64_MAX)
        event_del(c->fault_timer);
    else
        arm_timer(c->fault_timer, next - now_ns);
}

static void conn_fault_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct flaky_proxy *p = c->proxy;
    const struct flaky_profile *pr = &p->profile;
    int64_t now = ferry_monotonic_ns();
    if (c->reset_pending) {
        p->stats.resets_per_mb++;
        conn_reset(c);
        return;
    }
    if (now >= c->next_reset_ns) {
        p->stats.resets_per_second++;
        conn_reset(c);
        return;
    }
    int resume = 0;
    if (c->stalled && now >= c->stall_until_ns) {
        c->stalled = 0;
        c->next_stall_ns = add_sat(now, draw_after_ns(&c->rng, pr->stall_per_second));
        resume = 1;
    } else if (!c->stalled && now >= c->next_stall_ns) {
        c->stalled = 1;
        double ms = flaky_rng_exp(&c->rng, (double)pr->stall_mean_ms);
        c->stall_until_ns = now + (int64_t)(ms * 1e6) + 1;
        p->stats.stalls++;
    }
    if (now >= c->next_half_open_ns) {
        struct pipe *pp = (flaky_rng_next(&c->rng) & 1) ? &c->down : &c->up;
        pp->half_open = 1;
        c->next_half_open_ns = INT64_MAX; /* once per connection */
        p->stats.half_open++;
        if (c->state == CONN_OPEN)
            bufferevent_disable(pp->src, EV_READ);
        event_del(pp->timer);
    }
    conn_arm_faults(c, now);
    if (resume)
        conn_pump_both(c); /* may free c */
}

/* ---- accepting --------------------------------------------------------------------------- */

static int pipe_init(struct pipe *pp, struct conn *c, int dir, int64_t now_ns)
{
    struct flaky_proxy *p = c->proxy;
    const struct flaky_direction *d = dir_params(p, dir);
    pp->conn = c;
    pp->dir = dir;
    flaky_rng_seed(&pp->rng, p->seed, c->index * 4 + 1 + (uint64_t)dir);
    flaky_bucket_init(&pp->bucket, bytes_per_s(d->bandwidth_bps), (double)d->burst_bytes, now_ns);
    pp->inflight = evbuffer_new();
    pp->timer = evtimer_new(p->base, pipe_timer_cb, pp);
    return pp->inflight && pp->timer ? 0 : -1;
}

static void blackhole_closed_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_free(arg);
}

static void conn_connect(struct conn *c)
{
    struct flaky_proxy *p = c->proxy;
    c->server = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c->server) {
        conn_reset(c);
        return;
    }
    c->state = CONN_CONNECTING;
    c->up.src = c->client;
    c->up.dst = c->server;
    c->down.src = c->server;
    c->down.dst = c->client;
    bufferevent_setcb(c->server, server_read_cb, server_write_cb, server_event_cb, c);
    if (bufferevent_socket_connect(c->server, (struct sockaddr *)&p->upstream,
                                   (int)p->upstream_len) < 0) {
        p->stats.upstream_failures++;
        conn_reset(c);
    }
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr,
                      int socklen, void *arg)
{
    struct flaky_proxy *p = arg;
    uint64_t index = p->next_index++;
    p->stats.connections_total++;
    struct flaky_rng rng;
    flaky_rng_seed(&rng, p->seed, index * 4);
    /* Draw both per-connection choices always, so a profile switch does not shift the stream. */
    int refuse = flaky_rng_chance(&rng, p->profile.refuse_probability);
    int blackhole = flaky_rng_chance(&rng, p->profile.blackhole_probability);
    if (refuse || (!p->link_up && p->profile.down_new == FLAKY_DOWN_REFUSE)) {
        p->stats.refused++;
        rst_fd(fd);
        return;
    }
    int64_t now = ferry_monotonic_ns();
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        rst_fd(fd);
        return;
    }
    c->proxy = p;
    c->index = index;
    c->rng = rng;
    c->next_reset_ns = c->next_stall_ns = c->next_half_open_ns = INT64_MAX;
    c->reset_at_bytes = UINT64_MAX;
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    p->stats.connections_active++;
    c->client = bufferevent_socket_new(p->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->fault_timer = evtimer_new(p->base, conn_fault_cb, c);
    if (!c->client || !c->fault_timer || pipe_init(&c->up, c, DIR_UP, now) < 0 ||
        pipe_init(&c->down, c, DIR_DOWN, now) < 0) {
        if (!c->client)
            rst_fd(fd);
        conn_reset(c);
        return;
    }
    if (blackhole) {
        /* Accept, never read, never answer: the client's data sits in our receive window. */
        p->stats.blackholed++;
        c->state = CONN_BLACKHOLE;
        c->closed_ev = event_new(p->base, fd, EV_CLOSED | EV_PERSIST, blackhole_closed_cb, c);
        if (!c->closed_ev || event_add(c->closed_ev, NULL) < 0)
            conn_free(c);
        return;
    }
    set_nodelay(c->client);
    bufferevent_setcb(c->client, client_read_cb, client_write_cb, client_event_cb, c);
    bufferevent_setwatermark(c->client, EV_READ, 0, FLAKY_READ_HIGH);
    bufferevent_setwatermark(c->client, EV_WRITE, FLAKY_WRITE_LOW, 0);
    conn_draw_faults(c, now);
    conn_arm_faults(c, now);
    if (!p->link_up) {
        c->state = CONN_HELD; /* connects upstream when the link comes up: link_set */
        c->up.src = c->client;
        bufferevent_enable(c->client, EV_READ);
        return;
    }
    conn_connect(c);
}

/* ---- the link ---------------------------------------------------------------------------- */

static void link_set(struct flaky_proxy *p, int up, int64_t now_ns)
{
    if (up == p->link_up)
        return;
    p->link_up = up;
    if (!up) {
        p->stats.link_downs++;
        p->down_since_ns = now_ns;
        if (p->profile.down_existing == FLAKY_DOWN_RESET) {
            struct conn *c = p->conns;
            while (c) {
                struct conn *next = c->next;
                if (c->state == CONN_OPEN || c->state == CONN_CONNECTING) {
                    p->stats.resets_link_down++;
                    conn_reset(c);
                }
                c = next;
            }
        }
        return;
    }
    p->stats.time_down_ms += (now_ns - p->down_since_ns) / 1000000;
    /* Connecting or pumping a connection may free that connection, never another one, so the
     * successor is saved before each step. */
    struct conn *c = p->conns;
    while (c) {
        struct conn *next = c->next;
        if (c->state == CONN_HELD)
            conn_connect(c);
        else if (c->state == CONN_OPEN)
            conn_pump_both(c);
        c = next;
    }
}

static void link_update(struct flaky_proxy *p, int64_t now_ns)
{
    link_set(p, !p->forced_down && p->schedule.up, now_ns);
}

static void schedule_cb(evutil_socket_t fd, short what, void *arg)
{
    struct flaky_proxy *p = arg;
    int64_t now = ferry_monotonic_ns();
    flaky_schedule_advance(&p->schedule, now);
    link_update(p, now);
    if (p->schedule.next_change_ns != INT64_MAX)
        arm_timer(p->schedule_timer, p->schedule.next_change_ns - now);
}

static void schedule_start(struct flaky_proxy *p, int64_t now_ns)
{
    flaky_schedule_init(&p->schedule, p->profile.up_mean_ms, p->profile.down_mean_ms, p->seed,
                        now_ns);
    if (p->schedule.next_change_ns != INT64_MAX)
        arm_timer(p->schedule_timer, p->schedule.next_change_ns - now_ns);
    else
        event_del(p->schedule_timer);
}

void flaky_proxy_force_down(struct flaky_proxy *p, int down)
{
    p->forced_down = down ? 1 : 0;
    link_update(p, ferry_monotonic_ns());
}

/* ---- setup ------------------------------------------------------------------------------- */

int flaky_split_hostport(const char *s, char *host, size_t host_len, int *port)
{
    const char *colon;
    const char *h = s;
    size_t hlen;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return FLAKY_ERR_INVALID;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return FLAKY_ERR_INVALID;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= host_len)
        return FLAKY_ERR_INVALID;
    int64_t v;
    if (ferry_parse_i64(colon + 1, 0, 65535, &v) < 0)
        return FLAKY_ERR_INVALID;
    memcpy(host, h, hlen);
    host[hlen] = 0;
    *port = (int)v;
    return FLAKY_OK;
}

static int resolve(const char *hostport, struct sockaddr_storage *out, socklen_t *out_len,
                   char *err, size_t err_len)
{
    char host[256];
    int port;
    if (flaky_split_hostport(hostport, host, sizeof host, &port) < 0) {
        snprintf(err, err_len, "'%s': expected HOST:PORT", hostport);
        return FLAKY_ERR_INVALID;
    }
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0 || !res) {
        snprintf(err, err_len, "'%s': %s", hostport, gai_strerror(gai));
        return FLAKY_ERR_SOCKET;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *out_len = res->ai_addrlen;
    freeaddrinfo(res);
    return FLAKY_OK;
}

static void apply_rates(struct flaky_proxy *p, int64_t now_ns, int init)
{
    for (int d = 0; d < 2; d++) {
        const struct flaky_direction *dp = dir_params(p, d);
        double agg = bytes_per_s(dp->aggregate_bandwidth_bps);
        if (init)
            flaky_bucket_init(&p->aggregate[d], agg, (double)dp->burst_bytes, now_ns);
        else
            flaky_bucket_set_rate(&p->aggregate[d], agg, (double)dp->burst_bytes, now_ns);
    }
}

int flaky_proxy_new(struct event_base *base, const struct flaky_proxy_config *cfg,
                    struct flaky_proxy **out, char *err, size_t err_len)
{
    int rc;
    struct flaky_proxy *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, err_len, "out of memory");
        return FLAKY_ERR_NOMEM;
    }
    p->base = base;
    p->seed = cfg->seed;
    p->profile = *cfg->profile;
    rc = resolve(cfg->upstream, &p->upstream, &p->upstream_len, err, err_len);
    if (rc < 0)
        goto fail;
    struct sockaddr_storage listen_addr;
    socklen_t listen_len;
    rc = resolve(cfg->listen, &listen_addr, &listen_len, err, err_len);
    if (rc < 0)
        goto fail;
    p->listener = evconnlistener_new_bind(
        base, accept_cb, p, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 128,
        (struct sockaddr *)&listen_addr, (int)listen_len);
    if (!p->listener) {
        snprintf(err, err_len, "cannot listen on %s: %s", cfg->listen, strerror(errno));
        rc = FLAKY_ERR_SOCKET;
        goto fail;
    }
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    if (getsockname(evconnlistener_get_fd(p->listener), (struct sockaddr *)&bound, &bound_len) <
        0) {
        snprintf(err, err_len, "getsockname: %s", strerror(errno));
        rc = FLAKY_ERR_SOCKET;
        goto fail;
    }
    p->listen_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                       : ((struct sockaddr_in *)&bound)->sin_port);
    p->schedule_timer = evtimer_new(base, schedule_cb, p);
    if (!p->schedule_timer) {
        snprintf(err, err_len, "evtimer_new failed");
        rc = FLAKY_ERR_EVENT;
        goto fail;
    }
    int64_t now = ferry_monotonic_ns();
    apply_rates(p, now, 1);
    p->link_up = 1;
    schedule_start(p, now);
    *out = p;
    return FLAKY_OK;
fail:
    flaky_proxy_free(p);
    return rc;
}

void flaky_proxy_free(struct flaky_proxy *p)
{
    if (!p)
        return;
    while (p->conns)
        conn_free(p->conns);
    if (p->listener)
        evconnlistener_free(p->listener);
    if (p->schedule_timer)
        event_free(p->schedule_timer);
    free(p);
}

int flaky_proxy_listen_port(const struct flaky_proxy *p)
{
    return p->listen_port;
}

const struct flaky_profile *flaky_proxy_profile(const struct flaky_proxy *p)
{
    return &p->profile;
}

void flaky_proxy_set_profile(struct flaky_proxy *p, const struct flaky_profile *profile)
{
    int64_t now = ferry_monotonic_ns();
    p->profile = *profile;
    apply_rates(p, now, 0);
    for (struct conn *c = p->conns; c; c = c->next) {
        for (int d = 0; d < 2; d++) {
            struct pipe *pp = d == DIR_UP ? &c->up : &c->down;
            const struct flaky_direction *dp = dir_params(p, d);
            flaky_bucket_set_rate(&pp->bucket, bytes_per_s(dp->bandwidth_bps),
                                  (double)dp->burst_bytes, now);
        }
        if (c->state != CONN_BLACKHOLE) {
            c->stalled = 0;
            conn_draw_faults(c, now);
            conn_arm_faults(c, now);
        }
    }
    schedule_start(p, now);
    link_update(p, now);
    /* Open connections pick the new rates up on their next pump; wake them now. */
    for (struct conn *c = p->conns; c; c = c->next) {
        if (c->state == CONN_OPEN) {
            event_active(c->up.timer, EV_TIMEOUT, 1);
            event_active(c->down.timer, EV_TIMEOUT, 1);
        }
    }
}

void flaky_proxy_stats(const struct flaky_proxy *p, struct flaky_stats *out)
{
    *out = p->stats;
    out->link_up = p->link_up;
    out->forced_down = p->forced_down;
    if (!p->link_up)
        out->time_down_ms += (ferry_monotonic_ns() - p->down_since_ns) / 1000000;
}

int flaky_proxy_stats_json(const struct flaky_proxy *p, struct ferry_buf *out)
{
    struct flaky_stats s;
    flaky_proxy_stats(p, &s);
    int rc = ferry_buf_printf(out, "{\"profile\":");
    rc |= ferry_buf_append_json_string(out, p->profile.name, strlen(p->profile.name));
    rc |= ferry_buf_printf(
        out,
        ",\"seed\":%llu,\"listen_port\":%d,\"link_up\":%s,\"forced_down\":%s,"
        "\"connections\":%llu,\"connections_active\":%llu,\"bytes_up\":%llu,"
        "\"bytes_down\":%llu,\"resets\":%llu,\"link_downs\":%llu,\"time_down_ms\":%lld,"
        "\"upstream_failures\":%llu,\"faults\":{\"reset_per_second\":%llu,\"reset_per_mb\":%llu,"
        "\"reset_link_down\":%llu,\"refused\":%llu,\"blackholed\":%llu,\"stalls\":%llu,"
        "\"half_open\":%llu,\"corrupted_bytes\":%llu}}",
        (unsigned long long)p->seed, p->listen_port, s.link_up ? "true" : "false",
        s.forced_down ? "true" : "false", (unsigned long long)s.connections_total,
        (unsigned long long)s.connections_active, (unsigned long long)s.bytes_up,
        (unsigned long long)s.bytes_down,
        (unsigned long long)(s.resets_per_second + s.resets_per_mb + s.resets_link_down),
        (unsigned long long)s.link_downs, (long long)s.time_down_ms,
        (unsigned long long)s.upstream_failures, (unsigned long long)s.resets_per_second,
        (unsigned long long)s.resets_per_mb, (unsigned long long)s.resets_link_down,
        (unsigned long long)s.refused, (unsigned long long)s.blackholed,
        (unsigned long long)s.stalls, (unsigned long long)s.half_open,
        (unsigned long long)s.corrupted_bytes);
    return rc ? FLAKY_ERR_NOMEM : FLAKY_OK;
}
