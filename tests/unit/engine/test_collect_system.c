/*
 * test_collect_system.c - the system collector gives Telegraf's names and numbers for a fixture
 * /proc tree (tests/unit/engine/fixtures/proc-basic), sane numbers for this machine's real /proc,
 * and the collect set runs collectors of one interval on one timer into the journal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "collect_testlib.h"
#include "common/util.h"
#include "journal/journal.h"

static struct collector *make_system(const char *root)
{
    struct collect_system_opts o = {root, true, 10000};
    struct collector *c = NULL;
    char err[COLLECT_ERRBUF] = "";
    int rc = collect_system_new(&o, &c, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "collect_system_new: %s: %s\n", collect_strerror(rc), err);
    assert_int_equal(rc, 0);
    return c;
}

static void test_fixture_names_and_values(void **state)
{
    (void)state;
    char dir[256];
    assert_int_equal(fixture_copy("proc-basic", dir, sizeof dir), 0);
    struct collector *c = make_system(dir);
    struct collect_out out;
    collect_out_init(&out);
    char err[COLLECT_ERRBUF] = "";
    struct round rd = {0};

    /* Round 1: no cpu yet (usage needs two samples), everything else. */
    assert_int_equal(collect_run(c, 1000, &out, err, sizeof err), 0);
    assert_int_equal(round_unpack(&out, &rd), 0);
    assert_int_equal(round_count(&rd, "cpu"), 0);

    const struct record *mem = round_find(&rd, "mem", NULL, NULL);
    assert_non_null(mem);
    assert_true(rec_num(mem, "total") == 4051032.0 * 1024);
    assert_true(rec_num(mem, "free") == 1024000.0 * 1024);
    assert_true(rec_num(mem, "cached") == (1200000.0 + 120000.0) * 1024); /* + SReclaimable */
    assert_true(rec_num(mem, "used") == 1607032.0 * 1024); /* total - free - buffers - cached */
    assert_float_equal(rec_num(mem, "used_percent"), 100.0 * 1607032 / 4051032, 1e-9);
    assert_float_equal(rec_num(mem, "available_percent"), 100.0 * 2500000 / 4051032, 1e-9);
    assert_true(rec_num(mem, "huge_page_size") == 2048.0 * 1024);
    assert_true(rec_num(mem, "high_total") == 0); /* missing on 64-bit: 0 as in Telegraf */
    assert_int_equal(rec_field(mem, "total")->type, RECORD_FIELD_INT);

    const struct record *swap = round_find(&rd, "swap", NULL, NULL);
    assert_non_null(swap);
    assert_true(rec_num(swap, "used") == 100000.0 * 1024);
    assert_true(rec_num(swap, "in") == 10.0 * (double)sysconf(_SC_PAGESIZE));
    assert_true(rec_num(swap, "out") == 25.0 * (double)sysconf(_SC_PAGESIZE));

    /* disk: "/" and "/data"; proc/sysfs/nfs4 (nodev), tmpfs (ignored) and a mount point that
     * does not exist are skipped. */
    assert_int_equal(round_count(&rd, "disk"), 2);
    char tag[64];
    const struct record *data = round_find(&rd, "disk", "path", "/data");
    assert_non_null(data);
    assert_string_equal(rec_tag(data, "device", tag, sizeof tag), "mmcblk0p1");
    assert_string_equal(rec_tag(data, "mode", tag, sizeof tag), "ro");
    assert_string_equal(rec_tag(data, "fstype", tag, sizeof tag), "ext4");
    const struct record *rootfs = round_find(&rd, "disk", "path", "/");
    assert_non_null(rootfs);
    assert_string_equal(rec_tag(rootfs, "device", tag, sizeof tag), "root");
    struct statvfs sv;
    assert_int_equal(statvfs(dir, &sv), 0);
    assert_true(rec_num(rootfs, "total") == (double)sv.f_blocks * (double)sv.f_frsize);
    assert_true(rec_num(rootfs, "used") + rec_num(rootfs, "free") <= rec_num(rootfs, "total"));

    assert_int_equal(round_count(&rd, "diskio"), 2); /* loop0, ram0, unused zram0 skipped */
    const struct record *io = round_find(&rd, "diskio", "name", "mmcblk0");
    assert_true(rec_num(io, "read_bytes") == 400000.0 * 512);
    assert_true(rec_num(io, "writes") == 2000);
    assert_true(rec_num(io, "weighted_io_time") == 7000);
    assert_true(rec_num(io, "iops_in_progress") == 1);

    assert_int_equal(round_count(&rd, "net"), 1); /* lo (loopback) and wlan0 (down) skipped */
    const struct record *eth = round_find(&rd, "net", "interface", "eth0");
    assert_true(rec_num(eth, "bytes_recv") == 9876543);
    assert_true(rec_num(eth, "bytes_sent") == 1234567);
    assert_true(rec_num(eth, "err_in") == 2);
    assert_true(rec_num(eth, "drop_in") == 3);
    assert_true(rec_num(eth, "drop_out") == 4);

    const struct record *sys = round_find(&rd, "system", NULL, NULL);
    assert_float_equal(rec_num(sys, "load1"), 0.52, 1e-9);
    assert_float_equal(rec_num(sys, "load15"), 0.59, 1e-9);
    assert_true(rec_num(sys, "n_cpus") == 2);
    assert_true(rec_num(sys, "uptime") == 35678);

    const struct record *pr = round_find(&rd, "processes", NULL, NULL);
    assert_true(rec_num(pr, "total") == 4);
    assert_true(rec_num(pr, "running") == 1); /* "my app (v2)": the last ')' ends comm */
    assert_true(rec_num(pr, "sleeping") == 1);
    assert_true(rec_num(pr, "idle") == 1);
    assert_true(rec_num(pr, "zombies") == 1);
    assert_true(rec_num(pr, "total_threads") == 10);

    /* Round 2 after 200 jiffies: user 100 (50 %), system 30, idle 60, iowait 6, softirq 4. */
    assert_int_equal(write_text(dir, "/proc/stat",
                                "cpu  1100 100 530 8060 206 10 24 5 0 0\n"
                                "cpu0 650 50 265 3930 103 5 12 5 0 0\n"
                                "cpu1 450 50 265 4130 103 5 12 0 0 0\n"),
                     0);
    collect_out_reset(&out);
    assert_int_equal(collect_run(c, 2000, &out, err, sizeof err), 0);
    assert_int_equal(round_unpack(&out, &rd), 0);
    assert_int_equal(round_count(&rd, "cpu"), 3);
    const struct record *tot = round_find(&rd, "cpu", "cpu", "cpu-total");
    assert_non_null(tot);
    assert_float_equal(rec_num(tot, "usage_user"), 50.0, 1e-9);
    assert_float_equal(rec_num(tot, "usage_system"), 15.0, 1e-9);
    assert_float_equal(rec_num(tot, "usage_idle"), 30.0, 1e-9);
    assert_float_equal(rec_num(tot, "usage_iowait"), 3.0, 1e-9);
    assert_float_equal(rec_num(tot, "usage_softirq"), 2.0, 1e-9);
    assert_float_equal(rec_num(tot, "usage_guest"), 0.0, 1e-9);
    const struct record *c0 = round_find(&rd, "cpu", "cpu", "cpu0");
    assert_float_equal(rec_num(c0, "usage_user"), 50.0, 1e-9);
    assert_int_equal(tot->ts_ns, 2000);
    assert_int_equal(c->rounds, 2);
    assert_int_equal(c->last_records, rd.n);

    round_free(&rd);
    collect_out_free(&out);
    collector_free(c);
    dir_remove(dir);
}

static void test_fixture_format_errors_name_the_file(void **state)
{
    (void)state;
    char dir[256];
    assert_int_equal(fixture_copy("proc-basic", dir, sizeof dir), 0);
    struct collector *c = make_system(dir);
    assert_int_equal(write_text(dir, "/proc/loadavg", "garbage\n"), 0);
    struct collect_out out;
    collect_out_init(&out);
    char err[COLLECT_ERRBUF] = "";
    assert_int_equal(collect_run(c, 1, &out, err, sizeof err), COLLECT_EFORMAT);
    assert_non_null(strstr(err, "/proc/loadavg"));
    /* The other parts still ran. */
    struct round rd = {0};
    assert_int_equal(round_unpack(&out, &rd), 0);
    assert_non_null(round_find(&rd, "mem", NULL, NULL));
    assert_non_null(round_find(&rd, "processes", NULL, NULL));
    assert_null(round_find(&rd, "system", NULL, NULL));
    assert_int_equal(c->errors, 1);
    round_free(&rd);
    collect_out_free(&out);
    collector_free(c);
    /* A root without /proc/stat is refused at creation. */
    struct collect_system_opts o = {"/nonexistent-root", true, 10000};
    struct collector *none = NULL;
    assert_int_equal(collect_system_new(&o, &none, err, sizeof err), COLLECT_EREAD);
    assert_non_null(strstr(err, "/nonexistent-root/proc/stat"));
    dir_remove(dir);
}

static void burn_cpu_ms(int ms)
{
    long long end = ferry_monotonic_ms() + ms;
    volatile unsigned x = 0;
    while (ferry_monotonic_ms() < end)
        x += 1;
    (void)x;
}

static void test_real_proc(void **state)
{
    (void)state;
    struct collector *c = make_system("/");
    struct collect_out out;
    collect_out_init(&out);
    char err[COLLECT_ERRBUF] = "";
    struct round rd = {0};
    assert_int_equal(collect_run(c, 1, &out, err, sizeof err), 0);
    burn_cpu_ms(60); /* a few jiffies must pass for cpu usage */
    collect_out_reset(&out);
    assert_int_equal(collect_run(c, 2, &out, err, sizeof err), 0);
    assert_int_equal(round_unpack(&out, &rd), 0);

    const struct record *tot = round_find(&rd, "cpu", "cpu", "cpu-total");
    assert_non_null(tot);
    double sum = 0;
    const char *parts[] = {"usage_user",   "usage_system", "usage_idle",    "usage_nice",
                           "usage_iowait", "usage_irq",    "usage_softirq", "usage_steal"};
    for (size_t i = 0; i < 8; i++) {
        double v = rec_num(tot, parts[i]);
        assert_true(v >= 0 && v <= 100.0001);
        sum += v;
    }
    assert_float_equal(sum, 100.0, 0.01);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    assert_true(round_count(&rd, "cpu") >= 2);

    const struct record *mem = round_find(&rd, "mem", NULL, NULL);
    double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    assert_float_equal(rec_num(mem, "total"), phys, phys * 0.001);
    assert_true(rec_num(mem, "used") > 0 && rec_num(mem, "used") < rec_num(mem, "total"));
    assert_non_null(round_find(&rd, "swap", NULL, NULL));

    const struct record *sys = round_find(&rd, "system", NULL, NULL);
    assert_true(rec_num(sys, "n_cpus") == (double)ncpu);
    assert_true(rec_num(sys, "uptime") > 0);
    const struct record *pr = round_find(&rd, "processes", NULL, NULL);
    assert_true(rec_num(pr, "total") >= 1);
    assert_true(rec_num(pr, "running") >= 1); /* this process */
    assert_true(rec_num(pr, "total_threads") >= rec_num(pr, "total"));
    for (size_t i = 0; i < rd.n; i++) /* every record packed and unpacked with its fields */
        assert_true(rd.recs[i].n_fields > 0);
    round_free(&rd);
    collect_out_free(&out);
    collector_free(c);
}

struct loop_ctx {
    struct event_base *base;
    int appended;
};

static void on_appended(void *arg)
{
    struct loop_ctx *lc = arg;
    lc->appended++;
}

static int count_cb(void *arg, const struct journal_entry *e)
{
    (*(size_t *)arg)++;
    return 0;
}

/* Two collectors of one interval share one timer; each round is one unit in the journal. */
static void test_set_shares_one_timer_and_appends(void **state)
{
    (void)state;
    char dir[256];
    assert_int_equal(fixture_copy("proc-basic", dir, sizeof dir), 0);
    char jdir[300];
    snprintf(jdir, sizeof jdir, "%s/journal", dir);
    struct journal *j = NULL;
    assert_int_equal(journal_open(jdir, NULL, &j, NULL, NULL, 0), 0);
    struct loop_ctx lc = {event_base_new(), 0};
    struct collect_set *set = NULL;
    assert_int_equal(collect_set_new(lc.base, j, on_appended, &lc, &set), 0);
    struct collect_system_opts o = {dir, false, 100};
    for (int i = 0; i < 2; i++) {
        struct collector *c = NULL;
        char err[COLLECT_ERRBUF];
        assert_int_equal(collect_system_new(&o, &c, err, sizeof err), 0);
        assert_int_equal(collect_set_add(set, c), 0);
    }
    assert_int_equal(collect_set_timers(set), 1);
    assert_int_equal(collect_set_start(set), 0); /* round 1 at once */
    struct timeval tv = {0, 250000};
    event_base_loopexit(lc.base, &tv);
    event_base_dispatch(lc.base);
    assert_true(lc.appended >= 2 && lc.appended <= 4); /* at start, ~100 ms, ~200 ms */
    const struct collector *c0 = collect_set_collector(set, 0);
    assert_int_equal(c0->rounds, (uint64_t)lc.appended);
    uint64_t expected = c0->records + collect_set_collector(set, 1)->records;
    assert_int_equal(collect_set_dropped_rounds(set), 0);
    assert_int_equal(journal_flush(j), 0);
    size_t n = 0;
    assert_int_equal(journal_read(j, RECORD_METRIC, NULL, count_cb, &n, NULL), 0);
    assert_int_equal(n, expected);
    collect_set_free(set);
    event_base_free(lc.base);
    assert_int_equal(journal_close(j), 0);
    dir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_names_and_values),
        cmocka_unit_test(test_fixture_format_errors_name_the_file),
        cmocka_unit_test(test_real_proc),
        cmocka_unit_test(test_set_shares_one_timer_and_appends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
