/*
 * test_sync_policy.c - the retry classification table, backoff bounds with jitter and
 * Retry-After, and the adaptive batch size (engine/sync_policy.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>

#include "engine/sync_policy.h"
#include "transport/http_client.h"

static void test_classification_table(void **state)
{
    (void)state;
    static const struct {
        int err;
        long status;
        enum sync_outcome want;
    } table[] = {
        {HTTP_CLIENT_OK, 200, SYNC_OUTCOME_SENT},
        {HTTP_CLIENT_OK, 204, SYNC_OUTCOME_SENT},
        {HTTP_CLIENT_OK, 400, SYNC_OUTCOME_REJECT},
        {HTTP_CLIENT_OK, 422, SYNC_OUTCOME_REJECT},
        {HTTP_CLIENT_OK, 401, SYNC_OUTCOME_REENROLL},
        {HTTP_CLIENT_OK, 403, SYNC_OUTCOME_REVOKED},
        {HTTP_CLIENT_OK, 413, SYNC_OUTCOME_SPLIT},
        {HTTP_CLIENT_OK, 408, SYNC_OUTCOME_RETRY},
        {HTTP_CLIENT_OK, 429, SYNC_OUTCOME_RETRY},
        {HTTP_CLIENT_OK, 500, SYNC_OUTCOME_RETRY},
        {HTTP_CLIENT_OK, 502, SYNC_OUTCOME_RETRY},
        {HTTP_CLIENT_OK, 503, SYNC_OUTCOME_RETRY},
        {HTTP_CLIENT_OK, 504, SYNC_OUTCOME_RETRY},
        {HTTP_CLIENT_OK, 302, SYNC_OUTCOME_RETRY},
        {HTTP_CLIENT_OK, 404, SYNC_OUTCOME_RETRY},
        {HTTP_CLIENT_ECONNECT, 0, SYNC_OUTCOME_RETRY},
        {HTTP_CLIENT_ETIMEOUT, 0, SYNC_OUTCOME_RETRY},
        {HTTP_CLIENT_ESTALLED, 200, SYNC_OUTCOME_RETRY}, /* partial body: not a success */
        {HTTP_CLIENT_ENETWORK, 0, SYNC_OUTCOME_RETRY},
        {HTTP_CLIENT_ETOOBIG, 200, SYNC_OUTCOME_RETRY},
        {HTTP_CLIENT_ECANCELED, 0, SYNC_OUTCOME_RETRY},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        enum sync_outcome got = sync_classify(table[i].err, table[i].status);
        if (got != table[i].want)
            fail_msg("err %d status %ld: got %s, want %s", table[i].err, table[i].status,
                     sync_outcome_name(got), sync_outcome_name(table[i].want));
    }
    assert_true(sync_outcome_is_network(HTTP_CLIENT_ECONNECT, 0));
    assert_false(sync_outcome_is_network(HTTP_CLIENT_OK, 503));
}

static void test_backoff_grows_with_jitter_within_bounds(void **state)
{
    (void)state;
    const int64_t min_ms = 1000, max_ms = 300000;
    srand(42);
    for (unsigned f = 1; f <= 30; f++) {
        int64_t base = min_ms;
        for (unsigned i = 1; i < f; i++)
            base = base * 2 > max_ms ? max_ms : base * 2;
        int64_t lo = sync_backoff_ms(f, min_ms, max_ms, 0.0, -1);
        int64_t hi = sync_backoff_ms(f, min_ms, max_ms, 0.999999, -1);
        assert_int_equal(lo, base / 2);
        assert_true(hi <= base && hi >= base - 1);
        for (int k = 0; k < 100; k++) {
            int64_t d =
                sync_backoff_ms(f, min_ms, max_ms, (double)rand() / ((double)RAND_MAX + 1), -1);
            assert_true(d >= base / 2 && d <= base);
            assert_true(d <= max_ms);
        }
    }
    /* jitter really spreads: 100 draws at failure 5 give many distinct values */
    int distinct = 0;
    int64_t prev = -1;
    for (int k = 0; k < 100; k++) {
        int64_t d = sync_backoff_ms(5, min_ms, max_ms, (double)k / 100.0, -1);
        if (d != prev)
            distinct++;
        prev = d;
    }
    assert_true(distinct > 50);
    assert_int_equal(sync_backoff_ms(0, min_ms, max_ms, 0.5, -1), 0);
}

static void test_retry_after_is_honoured_even_beyond_cap(void **state)
{
    (void)state;
    assert_int_equal(sync_backoff_ms(1, 1000, 5000, 0.0, 7000), 7000);
    int64_t d = sync_backoff_ms(1, 1000, 5000, 0.99, 7000);
    assert_true(d >= 7000 && d <= 7700);
    d = sync_backoff_ms(3, 1000, 5000, 0.99, 600000);
    assert_true(d >= 600000 && d <= 601000);
    assert_int_equal(sync_backoff_ms(9, 1000, 5000, 0.5, 0), 0);
}

static void test_batch_size_adapts_to_link(void **state)
{
    (void)state;
    const uint64_t min_b = 16 * 1024, max_b = 4 * 1024 * 1024;
    const int64_t deadline = 30000;
    /* fast link: 50 MB/s; batches double until max */
    double tp = 0;
    uint64_t cur = min_b;
    for (int i = 0; i < 20; i++) {
        uint64_t next = sync_next_batch_bytes(cur, cur, (int64_t)(cur / 50000 + 1), deadline, min_b,
                                              max_b, &tp);
        assert_true(next <= cur * 2);
        cur = next;
    }
    assert_int_equal(cur, max_b);
    /* the link drops to 20 kB/s: one slow request shrinks the batch so the next takes about a
     * quarter of the deadline (7.5 s -> ~150 kB... at most), far inside the deadline */
    uint64_t next =
        sync_next_batch_bytes(cur, cur, (int64_t)(cur / 20), deadline, min_b, max_b, &tp);
    assert_true(next < cur);
    tp = 0;
    next = sync_next_batch_bytes(cur, cur, (int64_t)(cur / 20), deadline, min_b, max_b, &tp);
    assert_true(next >= 140000 && next <= 160000);
    /* a very slow link (200 B/s) stays at the minimum */
    tp = 0;
    assert_int_equal(
        sync_next_batch_bytes(min_b, min_b, (int64_t)min_b * 5, deadline, min_b, max_b, &tp),
        min_b);
    /* a small (not full) quick batch says nothing about the link: size kept */
    tp = 0;
    assert_int_equal(sync_next_batch_bytes(1024 * 1024, 1000, 5, deadline, min_b, max_b, &tp),
                     1024 * 1024);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classification_table),
        cmocka_unit_test(test_backoff_grows_with_jitter_within_bounds),
        cmocka_unit_test(test_retry_after_is_honoured_even_beyond_cap),
        cmocka_unit_test(test_batch_size_adapts_to_link),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
