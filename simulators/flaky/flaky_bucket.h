/*
 * flaky_bucket.h - token bucket arithmetic for ferry-flaky's bandwidth caps.
 *
 * A bucket fills at `rate` bytes per second up to `burst` bytes; sending n bytes takes n tokens.
 * The proxy keeps one bucket per direction per connection and one per direction for the whole
 * proxy (the aggregate cap), and only forwards what both allow. Time is passed in explicitly (ns
 * on CLOCK_MONOTONIC) so the arithmetic is testable without sleeping.
 *
 * A rate of 0 means unlimited: every query answers "as much as you like, now".
 * struct flaky_bucket is a plain value type.
 */
#ifndef FERRY_SIMULATORS_FLAKY_BUCKET_H
#define FERRY_SIMULATORS_FLAKY_BUCKET_H

#include <stddef.h>
#include <stdint.h>

struct flaky_bucket {
    double rate_bytes_per_s; /* 0: unlimited */
    double burst_bytes;
    double tokens;
    int64_t last_ns;
};

/* Smallest burst a capped bucket gets: two full-size Ethernet segments, so that even a very slow
 * link forwards whole packets rather than dribbling bytes. */
#define FLAKY_BUCKET_MIN_BURST 3000.0

/* Starts a full bucket. burst_bytes 0 picks the default: 20 ms worth of rate, at least
 * FLAKY_BUCKET_MIN_BURST. */
void flaky_bucket_init(struct flaky_bucket *b, double rate_bytes_per_s, double burst_bytes,
                       int64_t now_ns);
/* Changes rate and burst (a profile switch), keeping the tokens already earned (capped). */
void flaky_bucket_set_rate(struct flaky_bucket *b, double rate_bytes_per_s, double burst_bytes,
                           int64_t now_ns);
/* Whole tokens available at now_ns (SIZE_MAX when unlimited). */
size_t flaky_bucket_available(struct flaky_bucket *b, int64_t now_ns);
/* Takes n tokens; n must not exceed what flaky_bucket_available just returned. */
void flaky_bucket_take(struct flaky_bucket *b, size_t n);
/* Nanoseconds from now_ns until min(n, burst) tokens are available (0 when they already are). */
int64_t flaky_bucket_wait_ns(struct flaky_bucket *b, size_t n, int64_t now_ns);

#endif
