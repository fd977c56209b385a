/*
 * test_metered.c - unit tests of metered-link detection (engine/ota/metered.c): the default
 * route's interface from a /proc/net/route file (lowest metric wins, down routes and non-default
 * routes ignored), the glob match.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/ota/metered.h"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void test_default_route(void **state)
{
    (void)state;
    char path[] = "/tmp/ferry-route-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char ifname[32];
    write_file(path, "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\n"
                     "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\n"     /* not default */
                     "wlan0\t00000000\t0100A8C0\t0002\t0\t0\t10\t00000000\t0\n"   /* down */
                     "wwan0\t00000000\t0100000A\t0003\t0\t0\t700\t00000000\t0\n"  /* LTE */
                     "eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\n"); /* wired */
    assert_int_equal(ota_default_route_interface(path, ifname, sizeof ifname), 0);
    assert_string_equal(ifname, "eth0"); /* the lowest metric of the up default routes */
    assert_false(ota_interface_metered(NULL, ifname));
    write_file(path, "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
                     "wwan0\t00000000\t0100000A\t0003\t0\t0\t700\t00000000\n");
    assert_int_equal(ota_default_route_interface(path, ifname, sizeof ifname), 0);
    assert_string_equal(ifname, "wwan0");
    assert_true(ota_interface_metered(NULL, ifname));
    write_file(path, "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n");
    assert_int_equal(ota_default_route_interface(path, ifname, sizeof ifname), -1); /* offline */
    unlink(path);
    assert_int_equal(ota_default_route_interface(path, ifname, sizeof ifname), -1);
}

static void test_globs(void **state)
{
    (void)state;
    assert_true(ota_interface_metered(NULL, "usb0"));
    assert_true(ota_interface_metered(NULL, "rmnet_data0"));
    assert_true(ota_interface_metered(NULL, "wwp0s20f0u3i12"));
    assert_false(ota_interface_metered(NULL, "wlan0"));
    assert_true(ota_interface_metered("wlan1, eth9", "eth9"));
    assert_false(ota_interface_metered("wlan1, eth9", "eth0"));
    assert_false(ota_interface_metered("", "wwan0"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_route),
        cmocka_unit_test(test_globs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
