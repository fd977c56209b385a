/*
 * flaky_profile.h - the network profile ferry-flaky imposes, and its INI file format.
 *
 * A profile is a small INI file (simulators/profiles/<name>.ini) that a user can copy and edit.
 * "up" is the client-to-upstream direction (a device uploading), "down" the reverse.
 *
 *   [profile]   name, description
 *   [up] [down] latency (one-way, e.g. 35ms), jitter (uniform +-, e.g. 10ms),
 *               bandwidth (per connection, e.g. 1.6Mbit, 750kbit, 0 = unlimited),
 *               aggregate_bandwidth (all connections together, 0 = unlimited),
 *               burst (token bucket depth in bytes, 0 = 20 ms worth)
 *   [faults]    reset_per_second, reset_per_mb (expected RSTs per connection-second and per MB
 *               forwarded), stall_per_second and stall_mean (a stall freezes one connection),
 *               half_open_per_second (one direction stops for good, the socket stays open),
 *               corrupt_per_byte (probability a forwarded byte gets one bit flipped),
 *               blackhole_probability, refuse_probability (per new connection)
 *   [schedule]  up_mean, down_mean (exponential on/off periods; 0 = always up),
 *               down_existing = stall | reset (what a down link does to open connections),
 *               down_new = hold | refuse (what it does to new ones: accept and forward nothing
 *               until up, or RST at once)
 *
 * Durations take us, ms, s, m, h suffixes and decimals ("1.5s"); rates take bit, kbit, Mbit,
 * Gbit (powers of 1000, bits per second); probabilities are decimals or percentages ("1.5%").
 * Unknown sections or keys are errors, so a typo cannot silently leave a fault switched off.
 */
#ifndef FERRY_SIMULATORS_FLAKY_PROFILE_H
#define FERRY_SIMULATORS_FLAKY_PROFILE_H

#include <stddef.h>
#include <stdint.h>

enum flaky_err {
    FLAKY_OK = 0,
    FLAKY_ERR_NOMEM = -1,
    FLAKY_ERR_IO = -2,      /* a file could not be read or written */
    FLAKY_ERR_PARSE = -3,   /* a profile file is malformed; the error buffer says file:line:key */
    FLAKY_ERR_INVALID = -4, /* an argument or value is out of range */
    FLAKY_ERR_SOCKET = -5,  /* bind, listen or address resolution failed */
    FLAKY_ERR_EVENT = -6,   /* libevent refused to create an event or bufferevent */
};

/* Static text for a flaky_err. */
const char *flaky_strerror(int err);

enum flaky_down_existing {
    FLAKY_DOWN_STALL = 0, /* open connections freeze and resume when the link comes back */
    FLAKY_DOWN_RESET = 1, /* open connections are reset when the link goes down */
};

enum flaky_down_new {
    FLAKY_DOWN_HOLD = 0,   /* new connections are accepted and held until the link is up */
    FLAKY_DOWN_REFUSE = 1, /* new connections are reset at once */
};

struct flaky_direction {
    int64_t latency_us;
    int64_t jitter_us;
    uint64_t bandwidth_bps;           /* bits per second per connection, 0 = unlimited */
    uint64_t aggregate_bandwidth_bps; /* bits per second over all connections, 0 = unlimited */
    uint64_t burst_bytes;             /* 0 = default (20 ms worth) */
};

struct flaky_profile {
    char name[64];
    char description[256];
    struct flaky_direction up;   /* client -> upstream */
    struct flaky_direction down; /* upstream -> client */
    double reset_per_second;
    double reset_per_mb;
    double stall_per_second;
    int64_t stall_mean_ms;
    double half_open_per_second;
    double corrupt_per_byte;
    double blackhole_probability;
    double refuse_probability;
    int64_t up_mean_ms;
    int64_t down_mean_ms;
    enum flaky_down_existing down_existing;
    enum flaky_down_new down_new;
};

/* A profile that changes nothing: no delay, no caps, no faults, always up; name "none". */
void flaky_profile_defaults(struct flaky_profile *p);

/* Parses INI text into *out (starting from the defaults). `label` names the source in errors
 * (a file name). On FLAKY_ERR_PARSE, err holds "label:line: key: what is wrong". */
int flaky_profile_parse_string(const char *text, const char *label, struct flaky_profile *out,
                               char *err, size_t err_len) __attribute__((warn_unused_result));

/* Reads and parses the file at path. Errors: FLAKY_ERR_IO (err names the file and errno text),
 * FLAKY_ERR_PARSE. A profile without a name gets the file's base name without ".ini". */
int flaky_profile_load(const char *path, struct flaky_profile *out, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* Turns a profile argument into a path: anything containing '/' or ending in ".ini" is a path
 * already; otherwise "<dir>/<name>.ini". Names are limited to [A-Za-z0-9._-]. Returns 0 or
 * FLAKY_ERR_INVALID. */
int flaky_profile_resolve(const char *name_or_path, const char *dir, char *out, size_t out_len)
    __attribute__((warn_unused_result));

/* Value parsers, exposed for tests. Each returns 0 or -1. */
int flaky_parse_duration_us(const char *s, int64_t *out_us);
int flaky_parse_bandwidth_bps(const char *s, uint64_t *out_bps);
int flaky_parse_probability(const char *s, double *out);
int flaky_parse_rate(const char *s, double *out); /* non-negative decimal */

#endif
