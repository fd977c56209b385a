/*
 * test_flaky_units.c - unit tests of ferry-flaky's pure parts: token bucket arithmetic, the
 * seeded generators and on/off schedule (determinism and means), and profile parsing (values,
 * units, and errors that name file:line: key).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "simulators/flaky/flaky_bucket.h"
#include "simulators/flaky/flaky_profile.h"
#include "simulators/flaky/flaky_rng.h"
#include "simulators/flaky/flaky_schedule.h"

#define MS (1000000LL)
#define SEC (1000000000LL)

static void bucket_starts_full_and_refills_at_rate(void **state)
{
    struct flaky_bucket b;
    flaky_bucket_init(&b, 100000.0, 10000.0, 0); /* 100 kB/s, 10 kB deep */
    assert_int_equal(flaky_bucket_available(&b, 0), 10000);
    flaky_bucket_take(&b, 10000);
    assert_int_equal(flaky_bucket_available(&b, 0), 0);
    assert_int_equal(flaky_bucket_available(&b, 10 * MS), 1000); /* 10 ms at 100 kB/s */
    assert_int_equal(flaky_bucket_available(&b, 50 * MS), 5000);
    assert_int_equal(flaky_bucket_available(&b, 10 * SEC), 10000); /* capped at burst */
}

static void bucket_wait_is_exact(void **state)
{
    struct flaky_bucket b;
    flaky_bucket_init(&b, 1000.0, 3000.0, 0);
    flaky_bucket_take(&b, 3000);
    /* 1500 bytes at 1000 B/s: 1.5 s. */
    assert_int_equal(flaky_bucket_wait_ns(&b, 1500, 0), 1500 * MS);
    assert_int_equal(flaky_bucket_wait_ns(&b, 1500, 500 * MS), 1000 * MS);
    assert_int_equal(flaky_bucket_wait_ns(&b, 1500, 1500 * MS), 0);
    /* Asking for more than the burst waits only for a full bucket. */
    assert_int_equal(flaky_bucket_wait_ns(&b, 1000000, 1500 * MS), 1500 * MS);
}

static void bucket_long_run_rate_matches(void **state)
{
    /* Drain greedily for 10 simulated seconds in 1 ms steps: the total is rate * time + burst. */
    struct flaky_bucket b;
    flaky_bucket_init(&b, 200000.0, 0, 0); /* default burst: 20 ms worth = 4000 bytes */
    assert_true(fabs(b.burst_bytes - 4000.0) < 1e-9);
    size_t total = 0;
    for (int64_t t = 0; t <= 10 * SEC; t += MS) {
        size_t n = flaky_bucket_available(&b, t);
        flaky_bucket_take(&b, n);
        total += n;
    }
    assert_true(total >= 2000000 + 4000 - 10 && total <= 2000000 + 4000);
}

static void bucket_unlimited_and_rate_change(void **state)
{
    struct flaky_bucket b;
    flaky_bucket_init(&b, 0, 0, 0);
    assert_int_equal(flaky_bucket_available(&b, 0), SIZE_MAX);
    assert_int_equal(flaky_bucket_wait_ns(&b, 1 << 30, 0), 0);
    flaky_bucket_set_rate(&b, 1000.0, 0, 0);
    assert_true(b.burst_bytes >= FLAKY_BUCKET_MIN_BURST);
    assert_true(flaky_bucket_available(&b, 0) <= (size_t)b.burst_bytes);
}

static void rng_is_deterministic_per_seed_and_stream(void **state)
{
    struct flaky_rng a, b, c, d;
    flaky_rng_seed(&a, 42, 3);
    flaky_rng_seed(&b, 42, 3);
    flaky_rng_seed(&c, 42, 4);
    flaky_rng_seed(&d, 43, 3);
    int same_c = 0, same_d = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = flaky_rng_next(&a);
        assert_true(x == flaky_rng_next(&b));
        same_c += x == flaky_rng_next(&c);
        same_d += x == flaky_rng_next(&d);
    }
    assert_int_equal(same_c, 0);
    assert_int_equal(same_d, 0);
}

static void rng_distributions_have_their_means(void **state)
{
    struct flaky_rng r;
    flaky_rng_seed(&r, 1, 0);
    double sum = 0;
    int n = 200000;
    for (int i = 0; i < n; i++)
        sum += flaky_rng_exp(&r, 5.0);
    assert_true(fabs(sum / n - 5.0) < 0.1);
    sum = 0;
    for (int i = 0; i < n; i++)
        sum += (double)flaky_rng_geometric(&r, 0.01);
    assert_true(fabs(sum / n - 100.0) < 2.0);
    int hits = 0;
    for (int i = 0; i < n; i++)
        hits += flaky_rng_chance(&r, 0.25);
    assert_true(abs(hits - n / 4) < n / 100);
    assert_int_equal(flaky_rng_geometric(&r, 0), UINT64_MAX);
    assert_int_equal(flaky_rng_geometric(&r, 1), 1);
}

static void schedule_same_seed_same_periods(void **state)
{
    struct flaky_schedule a, b, c;
    flaky_schedule_init(&a, 15000, 120000, 99, 0);
    flaky_schedule_init(&b, 15000, 120000, 99, 0);
    flaky_schedule_init(&c, 15000, 120000, 100, 0);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        int64_t x = flaky_schedule_draw_ms(&a, i & 1);
        assert_true(x == flaky_schedule_draw_ms(&b, i & 1));
        differ += x != flaky_schedule_draw_ms(&c, i & 1);
        assert_true(x >= 1);
    }
    assert_true(differ > 90);
}

static void schedule_advance_alternates_and_has_means(void **state)
{
    struct flaky_schedule s;
    flaky_schedule_init(&s, 1000, 3000, 7, 0);
    assert_true(flaky_schedule_enabled(&s));
    assert_true(s.up);
    /* Walk 10,000 simulated seconds in 10 ms steps and measure the fraction of time up. */
    int64_t up_ns = 0, step = 10 * MS;
    int changes = 0;
    for (int64_t t = 0; t < 10000 * SEC; t += step) {
        changes += flaky_schedule_advance(&s, t);
        if (s.up)
            up_ns += step;
    }
    double up_fraction = (double)up_ns / (double)(10000 * SEC);
    assert_true(fabs(up_fraction - 0.25) < 0.03);  /* 1 s up of every 4 s on average */
    assert_true(changes > 4000 && changes < 6000); /* ~2 changes per 4 s cycle */

    /* Jumping far ahead passes through all periods and lands in the same state as stepping. */
    struct flaky_schedule x, y;
    flaky_schedule_init(&x, 500, 700, 3, 0);
    flaky_schedule_init(&y, 500, 700, 3, 0);
    for (int64_t t = 0; t <= 60 * SEC; t += MS)
        flaky_schedule_advance(&x, t);
    flaky_schedule_advance(&y, 60 * SEC);
    assert_int_equal(x.up, y.up);
    assert_true(x.next_change_ns == y.next_change_ns);
}

static void schedule_disabled_stays_up(void **state)
{
    struct flaky_schedule s;
    flaky_schedule_init(&s, 0, 0, 1, 0);
    assert_false(flaky_schedule_enabled(&s));
    assert_int_equal(flaky_schedule_advance(&s, 1000 * SEC), 0);
    assert_true(s.up);
}

static void profile_parses_all_keys(void **state)
{
    const char *text = "; comment\n"
                       "[profile]\nname = test-x\ndescription = a test\n"
                       "[up]\nlatency = 75ms\njitter = 1.5ms\nbandwidth = 750kbit\n"
                       "aggregate_bandwidth = 2Mbit\nburst = 16KiB\n"
                       "[down]\nlatency = 0.5s\nbandwidth = 1.6Mbit\n"
                       "[faults]\nreset_per_second = 0.01\nreset_per_mb = 2\n"
                       "stall_per_second = 0.015\nstall_mean = 3s\nhalf_open_per_second = 0.001\n"
                       "corrupt_per_byte = 0.0001%\nblackhole_probability = 0.5\n"
                       "refuse_probability = 10%\n"
                       "[schedule]\nup_mean = 15s\ndown_mean = 2m\ndown_existing = reset\n"
                       "down_new = refuse\n";
    struct flaky_profile p;
    char err[256];
    int rc = flaky_profile_parse_string(text, "t.ini", &p, err, sizeof err);
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(p.name, "test-x");
    assert_int_equal(p.up.latency_us, 75000);
    assert_int_equal(p.up.jitter_us, 1500);
    assert_int_equal(p.up.bandwidth_bps, 750000);
    assert_int_equal(p.up.aggregate_bandwidth_bps, 2000000);
    assert_int_equal(p.up.burst_bytes, 16384);
    assert_int_equal(p.down.latency_us, 500000);
    assert_int_equal(p.down.bandwidth_bps, 1600000);
    assert_true(fabs(p.reset_per_second - 0.01) < 1e-12);
    assert_true(fabs(p.reset_per_mb - 2) < 1e-12);
    assert_int_equal(p.stall_mean_ms, 3000);
    assert_true(fabs(p.corrupt_per_byte - 1e-6) < 1e-15);
    assert_true(fabs(p.refuse_probability - 0.1) < 1e-12);
    assert_int_equal(p.up_mean_ms, 15000);
    assert_int_equal(p.down_mean_ms, 120000);
    assert_int_equal(p.down_existing, FLAKY_DOWN_RESET);
    assert_int_equal(p.down_new, FLAKY_DOWN_REFUSE);
}

static void expect_error(const char *text, const char *want)
{
    struct flaky_profile p;
    char err[256] = "";
    int rc = flaky_profile_parse_string(text, "prof.ini", &p, err, sizeof err);
    assert_int_equal(rc, FLAKY_ERR_PARSE);
    if (!strstr(err, want))
        fail_msg("error '%s' does not contain '%s'", err, want);
}

static void profile_errors_name_file_line_key(void **state)
{
    expect_error("[up]\nlatency = 35ms\nbandwidth = fast\n", "prof.ini:3: up.bandwidth: ");
    expect_error("[up]\nlatency = 35 parsecs\n", "prof.ini:2: up.latency: ");
    expect_error("[faults]\n\nrefuse_probability = 1.5\n",
                 "prof.ini:3: faults.refuse_probability: ");
    expect_error("[faults]\nreset_per_second = -1\n", "prof.ini:2: faults.reset_per_second: ");
    expect_error("[faults]\nresets = 1\n", "prof.ini:2: faults.resets: unknown key");
    expect_error("[link]\nlatency = 1ms\n", "prof.ini:2: link.latency: unknown section");
    expect_error("latency = 1ms\n", "prof.ini:1: latency: key outside any section");
    expect_error("[schedule]\ndown_existing = explode\n", "prof.ini:2: schedule.down_existing: ");
    expect_error("[up]\nthis line has no equals sign\n", "prof.ini:2: syntax error");
    expect_error("[schedule]\nup_mean = 10s\n", "schedule: up_mean and down_mean");
    /* Only the first error is reported, with its own line. */
    expect_error("[up]\nlatency = x\njitter = y\n", "prof.ini:2: up.latency: ");
}

static void value_parsers(void **state)
{
    int64_t us;
    uint64_t bps;
    double d;
    assert_int_equal(flaky_parse_duration_us("250us", &us), 0);
    assert_int_equal(us, 250);
    assert_int_equal(flaky_parse_duration_us("2h", &us), 0);
    assert_int_equal(us, 7200000000LL);
    assert_int_equal(flaky_parse_duration_us("", &us), -1);
    assert_int_equal(flaky_parse_duration_us("-1s", &us), -1);
    assert_int_equal(flaky_parse_bandwidth_bps("240kbit", &bps), 0);
    assert_int_equal(bps, 240000);
    assert_int_equal(flaky_parse_bandwidth_bps("0", &bps), 0);
    assert_int_equal(bps, 0);
    assert_int_equal(flaky_parse_bandwidth_bps("unlimited", &bps), 0);
    assert_int_equal(flaky_parse_bandwidth_bps("12", &bps), -1); /* unit required */
    assert_int_equal(flaky_parse_bandwidth_bps("12MB", &bps), -1);
    assert_int_equal(flaky_parse_probability("2%", &d), 0);
    assert_true(fabs(d - 0.02) < 1e-12);
    assert_int_equal(flaky_parse_probability("101%", &d), -1);
    assert_int_equal(flaky_parse_probability("nan", &d), -1);
}

static void profile_resolve_names_and_paths(void **state)
{
    char out[256];
    assert_int_equal(flaky_profile_resolve("lte-poor", "/p", out, sizeof out), 0);
    assert_string_equal(out, "/p/lte-poor.ini");
    assert_int_equal(flaky_profile_resolve("./x.ini", "/p", out, sizeof out), 0);
    assert_string_equal(out, "./x.ini");
    assert_int_equal(flaky_profile_resolve("my.ini", "/p", out, sizeof out), 0);
    assert_string_equal(out, "my.ini");
    assert_int_equal(flaky_profile_resolve("a b", "/p", out, sizeof out), FLAKY_ERR_INVALID);
    assert_int_equal(flaky_profile_resolve("", "/p", out, sizeof out), FLAKY_ERR_INVALID);
}

/* The shipped profiles parse and say what the issue asks of them. */
static void shipped_profiles_parse_with_documented_numbers(void **state)
{
    static const char *names[] = {"lte-good",  "lte-poor", "3g",        "edge",
                                  "satellite", "tunnel",   "blackhole", "flapping"};
    struct flaky_profile p[8];
    for (int i = 0; i < 8; i++) {
        char path[512], err[512];
        assert_int_equal(flaky_profile_resolve(names[i], FLAKY_PROFILE_DIR, path, sizeof path), 0);
        int rc = flaky_profile_load(path, &p[i], err, sizeof err);
        if (rc != 0)
            fail_msg("%s", err);
        assert_string_equal(p[i].name, names[i]);
    }
    assert_int_equal(p[0].down.bandwidth_bps, 12000000);
    assert_int_equal(p[0].up.latency_us + p[0].down.latency_us, 70000);
    assert_int_equal(p[1].down.bandwidth_bps, 1600000);
    assert_int_equal(p[1].up.bandwidth_bps, 750000);
    assert_int_equal(p[1].up.latency_us + p[1].down.latency_us, 150000);
    assert_true(p[1].reset_per_second > 0 && p[1].stall_per_second > 0);
    assert_int_equal(p[3].down.bandwidth_bps, 240000);
    assert_int_equal(p[3].up.bandwidth_bps, 200000);
    assert_int_equal(p[3].up.latency_us + p[3].down.latency_us, 840000);
    assert_true(p[5].up_mean_ms < 60000 && p[5].down_mean_ms >= 60000);
    assert_true(p[6].blackhole_probability == 1.0);
    assert_true(p[7].up_mean_ms > 0 && p[7].down_existing == FLAKY_DOWN_RESET);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bucket_starts_full_and_refills_at_rate),
        cmocka_unit_test(bucket_wait_is_exact),
        cmocka_unit_test(bucket_long_run_rate_matches),
        cmocka_unit_test(bucket_unlimited_and_rate_change),
        cmocka_unit_test(rng_is_deterministic_per_seed_and_stream),
        cmocka_unit_test(rng_distributions_have_their_means),
        cmocka_unit_test(schedule_same_seed_same_periods),
        cmocka_unit_test(schedule_advance_alternates_and_has_means),
        cmocka_unit_test(schedule_disabled_stays_up),
        cmocka_unit_test(profile_parses_all_keys),
        cmocka_unit_test(profile_errors_name_file_line_key),
        cmocka_unit_test(value_parsers),
        cmocka_unit_test(profile_resolve_names_and_paths),
        cmocka_unit_test(shipped_profiles_parse_with_documented_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
