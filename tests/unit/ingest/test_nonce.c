/*
 * test_nonce.c - the replay cache of device-signed requests (cloud-ingest/auth/nonce.c): a
 * request seen again inside its window is a replay, the same nonce of another device is not, an
 * expired entry is forgotten and its way reused without an eviction, a full cache evicts (and
 * says so), the hex case of a nonce does not make another request, a size below one set
 * disables the cache.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cloud-ingest/auth/auth.h"

static void nonce_text(unsigned i, char out[33])
{
    snprintf(out, 33, "%032x", i);
}

static void test_replay_inside_the_window(void **state)
{
    (void)state;
    struct ingest_nonce_cache *c = NULL;
    assert_int_equal(ingest_nonce_cache_new(1 << 20, &c), 0);
    assert_non_null(c);
    assert_true(ingest_nonce_cache_capacity(c) <= (1 << 20) / 24);
    assert_true(ingest_nonce_cache_capacity(c) >= (1 << 20) / 48);
    const char *n = "0123456789abcdef0123456789abcdef";
    assert_int_equal(ingest_nonce_cache_check(c, "dev-a", n, 1300, 1000), INGEST_NONCE_FRESH);
    assert_int_equal(ingest_nonce_cache_check(c, "dev-a", n, 1300, 1001), INGEST_NONCE_REPLAY);
    assert_int_equal(ingest_nonce_cache_check(c, "dev-a", n, 1300, 1299), INGEST_NONCE_REPLAY);
    /* the same nonce from another device is another request */
    assert_int_equal(ingest_nonce_cache_check(c, "dev-b", n, 1300, 1001), INGEST_NONCE_FRESH);
    /* "dev-a" + "b..." must not be "dev-ab" + "...": the id is hashed with its NUL */
    assert_int_equal(ingest_nonce_cache_check(c, "dev-ab", n, 1300, 1001), INGEST_NONCE_FRESH);
    assert_int_equal(
        ingest_nonce_cache_check(c, "dev-a", "b0123456789abcdef0123456789abcdef", 1300, 1001),
        INGEST_NONCE_FRESH);
    /* upper-case hex is the same nonce */
    assert_int_equal(
        ingest_nonce_cache_check(c, "dev-a", "0123456789ABCDEF0123456789ABCDEF", 1300, 1002),
        INGEST_NONCE_REPLAY);
    /* after its window: forgotten (the time check refuses such a request anyway) */
    assert_int_equal(ingest_nonce_cache_check(c, "dev-a", n, 1600, 1300), INGEST_NONCE_FRESH);
    ingest_nonce_cache_free(c);
}

static void test_bounded_and_evicting_by_time(void **state)
{
    (void)state;
    struct ingest_nonce_cache *c = NULL;
    assert_int_equal(ingest_nonce_cache_new(4 * 8 * 24, &c), 0);
    assert_int_equal(ingest_nonce_cache_capacity(c), 32);
    char n[33];
    /* 8 entries never fill a set of 8: no eviction */
    for (unsigned i = 0; i < 8; i++) {
        nonce_text(i, n);
        assert_int_equal(ingest_nonce_cache_check(c, "d", n, 10, 0), INGEST_NONCE_FRESH);
    }
    /* once they expired, 8 new ones take their ways without evicting a live one */
    for (unsigned i = 100; i < 108; i++) {
        nonce_text(i, n);
        assert_int_equal(ingest_nonce_cache_check(c, "d", n, 1000, 20), INGEST_NONCE_FRESH);
    }
    /* 100 more live ones than 32 ways: evictions, reported */
    unsigned evicted = 0;
    for (unsigned i = 200; i < 300; i++) {
        nonce_text(i, n);
        enum ingest_nonce_result r = ingest_nonce_cache_check(c, "d", n, 1000 + i, 21);
        assert_int_not_equal(r, INGEST_NONCE_REPLAY);
        evicted += r == INGEST_NONCE_FRESH_EVICTED;
    }
    assert_true(evicted >= 100 - 24);
    /* the newest one is still there; the soonest-expiring ones went first: the newest 8 of a
     * set survive, so the last inserted is always a replay */
    nonce_text(299, n);
    assert_int_equal(ingest_nonce_cache_check(c, "d", n, 1299, 22), INGEST_NONCE_REPLAY);
    ingest_nonce_cache_free(c);
}

static void test_disabled_below_one_set(void **state)
{
    (void)state;
    struct ingest_nonce_cache *c = (struct ingest_nonce_cache *)1;
    assert_int_equal(ingest_nonce_cache_new(191, &c), 0);
    assert_null(c);
    assert_int_equal(ingest_nonce_cache_capacity(c), 0);
    const char *n = "0123456789abcdef0123456789abcdef";
    assert_int_equal(ingest_nonce_cache_check(c, "d", n, 10, 0), INGEST_NONCE_FRESH);
    assert_int_equal(ingest_nonce_cache_check(c, "d", n, 10, 0), INGEST_NONCE_FRESH);
    ingest_nonce_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_inside_the_window),
        cmocka_unit_test(test_bounded_and_evicting_by_time),
        cmocka_unit_test(test_disabled_below_one_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
