/*
 * fuzz_flaky_profile.c - libFuzzer target: ferry-flaky's network profile parser
 * (simulators/flaky/flaky_profile.c, flaky_profile_parse_string) on arbitrary INI text, and the
 * profile's values on into the token buckets and the up/down schedule the proxy builds from them
 * (flaky_bucket.c, flaky_schedule.c), as flaky_proxy.c does.
 *
 * Profiles are files users copy and edit: a bad one must be refused with "file:line: key: why",
 * never crash the proxy or hand it values that overflow its arithmetic. Properties checked
 * (abort() on violation; UBSan reports overflowing conversions):
 *   - the result is 0 or FLAKY_ERR_PARSE with a message naming the label;
 *   - an accepted profile has NUL-terminated strings, probabilities in [0, 1], non-negative
 *     rates and durations, bandwidths of 0 or at least 8 bit/s, a burst of at most 64 MiB, a
 *     positive stall mean when stalls are on, and up_mean/down_mean both set or both 0;
 *   - a bucket of each direction's rate and burst never offers more than its burst and its wait
 *     is never negative; the schedule's next change is always in the future after advancing.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "simulators/flaky/flaky_bucket.h"
#include "simulators/flaky/flaky_profile.h"
#include "simulators/flaky/flaky_schedule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int prob_ok(double p)
{
    return p >= 0 && p <= 1;
}

static int rate_ok(double r)
{
    return isfinite(r) && r >= 0;
}

static void check_direction(const struct flaky_direction *d)
{
    if (d->latency_us < 0 || d->jitter_us < 0 || d->burst_bytes > (64u << 20))
        abort();
    if ((d->bandwidth_bps > 0 && d->bandwidth_bps < 8) ||
        (d->aggregate_bandwidth_bps > 0 && d->aggregate_bandwidth_bps < 8))
        abort();
    /* The proxy's per-connection and aggregate buckets (flaky_proxy.c: bps / 8 bytes per s). */
    const uint64_t bps[2] = {d->bandwidth_bps, d->aggregate_bandwidth_bps};
    const int64_t start_ns = 1000000000000LL; /* ~17 min of CLOCK_MONOTONIC */
    for (int i = 0; i < 2; i++) {
        struct flaky_bucket b;
        flaky_bucket_init(&b, (double)bps[i] / 8.0, (double)d->burst_bytes, start_ns);
        int64_t now = start_ns;
        for (int step = 0; step < 4; step++) {
            size_t avail = flaky_bucket_available(&b, now);
            if (bps[i] > 0 && (double)avail > b.burst_bytes)
                abort();
            size_t take = avail < 1500 ? avail : 1500;
            flaky_bucket_take(&b, take);
            if (flaky_bucket_wait_ns(&b, 65536, now) < 0)
                abort();
            now += 1000000LL << (4 * step); /* 1 ms, 16 ms, 256 ms, 4 s */
        }
    }
}

static void check_profile(const struct flaky_profile *p)
{
    if (!memchr(p->name, 0, sizeof p->name) || !memchr(p->description, 0, sizeof p->description))
        abort();
    check_direction(&p->up);
    check_direction(&p->down);
    if (!rate_ok(p->reset_per_second) || !rate_ok(p->reset_per_mb) ||
        !rate_ok(p->stall_per_second) || !rate_ok(p->half_open_per_second))
        abort();
    if (!prob_ok(p->corrupt_per_byte) || !prob_ok(p->blackhole_probability) ||
        !prob_ok(p->refuse_probability))
        abort();
    if (p->stall_mean_ms < 0 || (p->stall_per_second > 0 && p->stall_mean_ms <= 0))
        abort();
    if (p->up_mean_ms < 0 || p->down_mean_ms < 0 || (p->up_mean_ms > 0) != (p->down_mean_ms > 0))
        abort();
    if ((unsigned)p->down_existing > FLAKY_DOWN_RESET || (unsigned)p->down_new > FLAKY_DOWN_REFUSE)
        abort();

    struct flaky_schedule s;
    int64_t now = 1000000000000LL;
    flaky_schedule_init(&s, p->up_mean_ms, p->down_mean_ms, 42, now);
    for (int step = 0; step < 8 && flaky_schedule_enabled(&s); step++) {
        now = s.next_change_ns;
        (void)flaky_schedule_advance(&s, now);
        if (s.next_change_ns <= now)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Like flaky_profile_load, which refuses files with a NUL byte. */
    if (memchr(data, 0, size))
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct flaky_profile p;
    char err[512] = "";
    int rc = flaky_profile_parse_string(text, "fuzz.ini", &p, err, sizeof err);
    if (rc == FLAKY_OK)
        check_profile(&p);
    else if (rc != FLAKY_ERR_PARSE || strncmp(err, "fuzz.ini", 8) != 0)
        abort();
    free(text);
    return 0;
}
