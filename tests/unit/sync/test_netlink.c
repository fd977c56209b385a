/*
 * test_netlink.c - engine/netlink wakes its owner when a link appears. When running as root
 * the test moves itself into a fresh network namespace (unshare(CLONE_NEWNET)), so the real
 * `ip link add ... type dummy` (or veth) and `ip link set ... up` it runs touch nothing of the
 * host. Without the privilege it is skipped (exit 77, ctest SKIP_RETURN_CODE) and says why.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/event.h>

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/netlink.h"

static int woken;

static void on_change(void *arg)
{
    struct event_base *base = arg;
    woken++;
    event_base_loopbreak(base);
}

static void run_for(struct event_base *base, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static void test_link_and_address_changes_wake(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct netlink_watch *w = NULL;
    assert_int_equal(netlink_watch_new(base, on_change, base, &w), 0);

    /* nothing happens: no wake-up (and no timer: the loop would just wait) */
    woken = 0;
    run_for(base, 200);
    assert_int_equal(woken, 0);

    /* a dummy interface where the module exists, else a veth pair (containers often lack it) */
    assert_int_equal(system("ip link add ferrytest0 type dummy 2>/dev/null || "
                            "ip link add ferrytest0 type veth peer name ferrytest1"),
                     0);
    run_for(base, 3000);
    assert_true(woken >= 1);
    run_for(base, 100); /* drain follow-ups */

    woken = 0;
    assert_int_equal(system("ip link set ferrytest0 up && ip addr add 10.77.0.1/24 dev ferrytest0"),
                     0);
    run_for(base, 3000);
    assert_true(woken >= 1);
    assert_true(netlink_watch_changes(w) >= 2);

    assert_int_equal(system("ip link del ferrytest0"), 0);
    netlink_watch_free(w);
    event_base_free(base);
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "SKIP: netlink test needs root to create a network namespace\n");
        return 77;
    }
    if (unshare(CLONE_NEWNET) != 0) {
        fprintf(stderr, "SKIP: unshare(CLONE_NEWNET) failed: %s\n", strerror(errno));
        return 77;
    }
    if (system("ip link show lo >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: the ip command (iproute2) is not available\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_link_and_address_changes_wake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
