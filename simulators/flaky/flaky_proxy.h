/*
 * flaky_proxy.h - the TCP proxy at the heart of ferry-flaky.
 *
 * The proxy accepts connections on a listen address and connects each to one upstream address,
 * forwarding bytes both ways through a simulated link described by a struct flaky_profile:
 * a per-direction token bucket (per connection and aggregate), a propagation delay with jitter,
 * and faults (resets, stalls, half-open directions, blackholes, refusals, bit flips, on/off
 * periods). Everything runs on the caller's libevent loop; nothing blocks except the one
 * getaddrinfo() of the upstream in flaky_proxy_new().
 *
 * Replay: connection number i (0, 1, 2... in accept order) draws every random choice from
 * generators seeded with (seed, i), and the link schedule from (seed, a fixed stream), so the
 * same seed and the same sequence of connections give the same faults.
 *
 * All functions must run on the loop thread.
 */
#ifndef FERRY_SIMULATORS_FLAKY_PROXY_H
#define FERRY_SIMULATORS_FLAKY_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "simulators/flaky/flaky_profile.h"

struct event_base;
struct flaky_proxy;

struct flaky_proxy_config {
    const char *listen;   /* "HOST:PORT", port 0 picks a free one */
    const char *upstream; /* "HOST:PORT" */
    uint64_t seed;
    const struct flaky_profile *profile; /* copied */
};

/* Counters since start; time_down_ms includes a down period still in progress. */
struct flaky_stats {
    uint64_t connections_total;  /* accepted, including refused and blackholed ones */
    uint64_t connections_active; /* currently open (forwarding, held or blackholed) */
    uint64_t bytes_up;           /* delivered to the upstream */
    uint64_t bytes_down;         /* delivered to clients */
    uint64_t resets_per_second;  /* injected by reset_per_second */
    uint64_t resets_per_mb;      /* injected by reset_per_mb */
    uint64_t resets_link_down;   /* open connections reset because the link went down */
    uint64_t refused;            /* connections reset at accept (refuse_probability or down) */
    uint64_t blackholed;         /* connections accepted that will never forward */
    uint64_t stalls;             /* stall periods started */
    uint64_t half_open;          /* directions stopped for good */
    uint64_t corrupted_bytes;    /* bytes with one bit flipped */
    uint64_t upstream_failures;  /* connections to the upstream that failed */
    uint64_t link_downs;         /* times the link went down (schedule or forced) */
    int64_t time_down_ms;
    int link_up;
    int forced_down;
};

/* Binds the listen address and starts accepting on `base`. On error fills err and returns
 * FLAKY_ERR_SOCKET, FLAKY_ERR_INVALID (bad address) or FLAKY_ERR_EVENT; *out is untouched.
 * The caller owns *out and frees it with flaky_proxy_free() before freeing the base. */
int flaky_proxy_new(struct event_base *base, const struct flaky_proxy_config *cfg,
                    struct flaky_proxy **out, char *err, size_t err_len)
    __attribute__((warn_unused_result));
/* Closes every connection (a plain close, not a reset) and the listener. NULL is fine. */
void flaky_proxy_free(struct flaky_proxy *p);
/* The port actually bound. */
int flaky_proxy_listen_port(const struct flaky_proxy *p);
/* Forces the link down (1) or releases the force (0): the link then follows the profile's
 * schedule, i.e. it is up when the profile has none. */
void flaky_proxy_force_down(struct flaky_proxy *p, int down);
/* Switches to another profile: new rates, delays and fault rates apply to open connections
 * from now on; the link schedule restarts in its up state. */
void flaky_proxy_set_profile(struct flaky_proxy *p, const struct flaky_profile *profile);
const struct flaky_profile *flaky_proxy_profile(const struct flaky_proxy *p);
void flaky_proxy_stats(const struct flaky_proxy *p, struct flaky_stats *out);
/* Appends the statistics as one JSON object (no newline). Returns 0 or FLAKY_ERR_NOMEM. */
int flaky_proxy_stats_json(const struct flaky_proxy *p, struct ferry_buf *out)
    __attribute__((warn_unused_result));

/* Splits "HOST:PORT" ("[v6]:PORT" too) into host and port. Returns 0 or FLAKY_ERR_INVALID. */
int flaky_split_hostport(const char *s, char *host, size_t host_len, int *port)
    __attribute__((warn_unused_result));

#endif
