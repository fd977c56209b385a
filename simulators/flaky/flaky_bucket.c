/*
 * flaky_bucket.c - token bucket arithmetic (see flaky_bucket.h).
 */
#include "simulators/flaky/flaky_bucket.h"

#include <assert.h>
#include <math.h>

static double default_burst(double rate, double burst)
{
    if (burst > 0)
        return burst;
    double b = rate * 0.020;
    return b < FLAKY_BUCKET_MIN_BURST ? FLAKY_BUCKET_MIN_BURST : b;
}

void flaky_bucket_init(struct flaky_bucket *b, double rate_bytes_per_s, double burst_bytes,
                       int64_t now_ns)
{
    b->rate_bytes_per_s = rate_bytes_per_s > 0 ? rate_bytes_per_s : 0;
    b->burst_bytes = default_burst(b->rate_bytes_per_s, burst_bytes);
    b->tokens = b->burst_bytes;
    b->last_ns = now_ns;
}

static void refill(struct flaky_bucket *b, int64_t now_ns)
{
    if (now_ns <= b->last_ns)
        return;
    b->tokens += (double)(now_ns - b->last_ns) * 1e-9 * b->rate_bytes_per_s;
    if (b->tokens > b->burst_bytes)
        b->tokens = b->burst_bytes;
    b->last_ns = now_ns;
}

void flaky_bucket_set_rate(struct flaky_bucket *b, double rate_bytes_per_s, double burst_bytes,
                           int64_t now_ns)
{
    refill(b, now_ns);
    b->rate_bytes_per_s = rate_bytes_per_s > 0 ? rate_bytes_per_s : 0;
    b->burst_bytes = default_burst(b->rate_bytes_per_s, burst_bytes);
    if (b->tokens > b->burst_bytes)
        b->tokens = b->burst_bytes;
}

size_t flaky_bucket_available(struct flaky_bucket *b, int64_t now_ns)
{
    if (b->rate_bytes_per_s <= 0)
        return SIZE_MAX;
    refill(b, now_ns);
    return b->tokens < 0 ? 0 : (size_t)floor(b->tokens);
}

void flaky_bucket_take(struct flaky_bucket *b, size_t n)
{
    if (b->rate_bytes_per_s <= 0)
        return;
    assert((double)n <= b->tokens + 1e-6);
    b->tokens -= (double)n;
}

int64_t flaky_bucket_wait_ns(struct flaky_bucket *b, size_t n, int64_t now_ns)
{
    if (b->rate_bytes_per_s <= 0)
        return 0;
    refill(b, now_ns);
    double want = (double)n;
    if (want > b->burst_bytes)
        want = b->burst_bytes;
    if (b->tokens >= want)
        return 0;
    double wait_s = (want - b->tokens) / b->rate_bytes_per_s;
    return (int64_t)ceil(wait_s * 1e9);
}
