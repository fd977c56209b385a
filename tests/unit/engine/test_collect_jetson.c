/*
 * test_collect_jetson.c - the Jetson collector on fixture sysfs trees of a Nano, a Xavier NX and
 * an Orin Nano (tests/unit/engine/fixtures/, README there names the NVIDIA documentation), and on
 * this machine's real /sys: every node is found where that L4T generation puts it, missing nodes
 * are reported once at start and skipped, and a node that disappears later never fails a round.
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

#include "collect_testlib.h"

struct jfix {
    char dir[256];
    struct collector *c;
    struct ferry_buf missing;
    struct collect_out out;
    struct round rd;
};

static void jfix_open(struct jfix *f, const char *name)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(fixture_copy(name, f->dir, sizeof f->dir), 0);
    assert_true(collect_jetson_detect(f->dir));
    struct collect_jetson_opts o = {f->dir, 10000};
    char err[COLLECT_ERRBUF] = "";
    int rc = collect_jetson_new(&o, &f->c, &f->missing, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "collect_jetson_new: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(ferry_buf_append_u8(&f->missing, 0), 0);
    collect_out_init(&f->out);
}

static void jfix_round(struct jfix *f, int64_t ts)
{
    char err[COLLECT_ERRBUF] = "";
    collect_out_reset(&f->out);
    assert_int_equal(collect_run(f->c, ts, &f->out, err, sizeof err), 0);
    assert_int_equal(round_unpack(&f->out, &f->rd), 0);
}

static void jfix_close(struct jfix *f)
{
    round_free(&f->rd);
    collect_out_free(&f->out);
    collector_free(f->c);
    ferry_buf_free(&f->missing);
    dir_remove(f->dir);
}

static const char *missing_text(const struct jfix *f)
{
    return (const char *)f->missing.data;
}

static const char *str_field(const struct record *r, const char *key, char *buf, size_t cap)
{
    const struct record_field *fl = rec_field(r, key);
    if (!fl || fl->type != RECORD_FIELD_STRING)
        return NULL;
    snprintf(buf, cap, "%.*s", (int)fl->v.s.len, fl->v.s.ptr);
    return buf;
}

static void test_nano(void **state)
{
    (void)state;
    struct jfix f;
    jfix_open(&f, "jetson-nano");
    /* The Nano has no fan tachometer and no BPMP: said once, at start. */
    assert_non_null(strstr(missing_text(&f), "fan tachometer"));
    assert_null(strstr(missing_text(&f), "EMC"));
    assert_null(strstr(missing_text(&f), "power rails"));
    jfix_round(&f, 7);

    assert_int_equal(round_count(&f.rd, "temp"), 6);
    const struct record *t = round_find(&f.rd, "temp", "sensor", "CPU-therm");
    assert_float_equal(rec_num(t, "temp"), 41.0, 1e-9);
    assert_float_equal(rec_num(round_find(&f.rd, "temp", "sensor", "AO-therm"), "temp"), 40.5,
                       1e-9);
    assert_int_equal(round_count(&f.rd, "linux_cpu"), 4);
    const struct record *c3 = round_find(&f.rd, "linux_cpu", "cpu", "cpu3");
    assert_true(rec_num(c3, "scaling_cur_freq") == 1479000);
    assert_true(rec_num(c3, "scaling_min_freq") == 102000);
    const struct record *g = round_find(&f.rd, "jetson_gpu", "name", "57000000.gpu");
    assert_non_null(g);
    assert_float_equal(rec_num(g, "load"), 12.5, 1e-9);
    assert_true(rec_num(g, "cur_freq") == 76800000);
    assert_true(rec_num(g, "max_freq") == 921600000);
    assert_true(rec_num(round_find(&f.rd, "jetson_emc", NULL, NULL), "freq") == 1600000000);
    const struct record *fan = round_find(&f.rd, "jetson_fan", NULL, NULL);
    assert_true(rec_num(fan, "pwm") == 0);
    assert_null(rec_field(fan, "rpm"));
    assert_int_equal(round_count(&f.rd, "jetson_power"), 3);
    const struct record *in = round_find(&f.rd, "jetson_power", "rail", "POM_5V_IN");
    assert_true(rec_num(in, "voltage_mv") == 5072);
    assert_true(rec_num(in, "current_ma") == 432);
    assert_true(rec_num(in, "power_mw") == 2191); /* the chip's own power reading */
    const struct record *j = round_find(&f.rd, "jetson", NULL, NULL);
    char buf[128];
    assert_string_equal(str_field(j, "l4t_release", buf, sizeof buf), "32.7.4");
    assert_string_equal(str_field(j, "model", buf, sizeof buf), "NVIDIA Jetson Nano Developer Kit");
    assert_true(rec_num(j, "nvpmodel_id") == 0);
    assert_string_equal(str_field(j, "nvpmodel_name", buf, sizeof buf), "MAXN");
    for (size_t i = 0; i < f.rd.n; i++)
        assert_int_equal(f.rd.recs[i].ts_ns, 7);
    jfix_close(&f);
}

static void test_xavier_nx(void **state)
{
    (void)state;
    struct jfix f;
    jfix_open(&f, "jetson-xavier-nx");
    jfix_round(&f, 1);
    assert_int_equal(round_count(&f.rd, "temp"), 8);
    assert_float_equal(rec_num(round_find(&f.rd, "temp", "sensor", "Tdiode_tegra"), "temp"), 36.25,
                       1e-9);
    /* cpu4 and cpu5 are offline: no cpufreq, no record, no error. */
    assert_int_equal(round_count(&f.rd, "linux_cpu"), 4);
    assert_null(round_find(&f.rd, "linux_cpu", "cpu", "cpu4"));
    const struct record *g = round_find(&f.rd, "jetson_gpu", "name", "17000000.gv11b");
    assert_float_equal(rec_num(g, "load"), 0.0, 1e-9);
    assert_true(rec_num(round_find(&f.rd, "jetson_emc", NULL, NULL), "freq") == 1600000000);
    const struct record *fan = round_find(&f.rd, "jetson_fan", NULL, NULL);
    assert_true(rec_num(fan, "pwm") == 77);
    assert_true(rec_num(fan, "rpm") == 2400);
    const struct record *soc = round_find(&f.rd, "jetson_power", "rail", "VDD_SOC");
    assert_true(rec_num(soc, "power_mw") == 1612);
    assert_non_null(round_find(&f.rd, "jetson_power", "rail", "VDD_CPU_GPU_CV"));
    const struct record *j = round_find(&f.rd, "jetson", NULL, NULL);
    char buf[128];
    assert_true(rec_num(j, "nvpmodel_id") == 3);
    assert_string_equal(str_field(j, "nvpmodel_name", buf, sizeof buf), "MODE_10W_2CORE");

    /* The mode changes at run time: the next round says so. */
    assert_int_equal(write_text(f.dir, "/var/lib/nvpmodel/status", "pmode:0002 fmode:quiet\n"), 0);
    jfix_round(&f, 2);
    j = round_find(&f.rd, "jetson", NULL, NULL);
    assert_string_equal(str_field(j, "nvpmodel_name", buf, sizeof buf), "MODE_15W_6CORE");
    jfix_close(&f);
}

static void test_orin(void **state)
{
    (void)state;
    struct jfix f;
    jfix_open(&f, "jetson-orin");
    const char *m = missing_text(&f);
    /* Without root there is no debugfs; the cv zones have no readable temperature. */
    assert_non_null(strstr(m, "EMC frequency"));
    assert_non_null(strstr(m, "/sys/class/thermal/thermal_zone2/temp"));
    assert_non_null(strstr(m, "/sys/class/thermal/thermal_zone4/temp"));
    assert_null(strstr(m, "fan"));
    jfix_round(&f, 1);
    assert_int_equal(round_count(&f.rd, "temp"), 8); /* 11 zones, 3 without temperature */
    assert_null(round_find(&f.rd, "temp", "sensor", "cv0-thermal"));
    assert_float_equal(rec_num(round_find(&f.rd, "temp", "sensor", "tj-thermal"), "temp"), 47.218,
                       1e-9);
    /* thermal_zone10 sorts after thermal_zone9 (natural order): its record comes last. */
    size_t last_temp = 0;
    for (size_t i = 0; i < f.rd.n; i++)
        if (str_is(f.rd.recs[i].name, "temp"))
            last_temp = i;
    char tag[64];
    assert_string_equal(rec_tag(&f.rd.recs[last_temp], "sensor", tag, sizeof tag),
                        "tdiode-thermal");
    assert_int_equal(round_count(&f.rd, "linux_cpu"), 6);
    const struct record *g = round_find(&f.rd, "jetson_gpu", "name", "17000000.ga10b");
    assert_float_equal(rec_num(g, "load"), 50.3, 1e-9);
    assert_null(round_find(&f.rd, "jetson_emc", NULL, NULL));
    const struct record *fan = round_find(&f.rd, "jetson_fan", NULL, NULL);
    assert_true(rec_num(fan, "pwm") == 120);
    assert_true(rec_num(fan, "rpm") == 1850);
    assert_int_equal(round_count(&f.rd, "jetson_power"), 4);
    const struct record *in = round_find(&f.rd, "jetson_power", "rail", "VDD_IN");
    assert_true(rec_num(in, "voltage_mv") == 5048);
    assert_true(rec_num(in, "current_ma") == 1208);
    assert_true(rec_num(in, "power_mw") == 5048 * 1208 / 1000); /* hwmon ina3221: V x I */
    const struct record *ina238 = round_find(&f.rd, "jetson_power", "rail", "ina238_hwmon3");
    assert_true(rec_num(ina238, "power_mw") == 10200); /* power1_input is in microwatts */
    const struct record *j = round_find(&f.rd, "jetson", NULL, NULL);
    char buf[128];
    assert_string_equal(str_field(j, "l4t_release", buf, sizeof buf), "36.3.0");
    assert_string_equal(str_field(j, "nvpmodel_name", buf, sizeof buf), "7W");

    /* A node that disappears after start is skipped in that round, never an error. */
    char path[512];
    snprintf(path, sizeof path, "%s/sys/class/devfreq/17000000.ga10b/device/load", f.dir);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof path, "%s/sys/class/thermal/thermal_zone0/temp", f.dir);
    assert_int_equal(unlink(path), 0);
    jfix_round(&f, 2);
    assert_int_equal(round_count(&f.rd, "temp"), 7);
    g = round_find(&f.rd, "jetson_gpu", "name", "17000000.ga10b");
    assert_null(rec_field(g, "load"));
    assert_true(rec_num(g, "cur_freq") == 624750000);
    jfix_close(&f);
}

/* This machine: a Jetson is found only where there is one. */
static void test_real_sys(void **state)
{
    (void)state;
    bool jetson = collect_jetson_detect("/");
    struct collect_jetson_opts o = {"/", 10000};
    struct collector *c = NULL;
    struct ferry_buf missing = FERRY_BUF_INIT;
    char err[COLLECT_ERRBUF] = "";
    int rc = collect_jetson_new(&o, &c, &missing, err, sizeof err);
    if (!jetson) {
        /* Not a Jetson (CI, a laptop): nothing Jetson-specific, and the error says so. */
        assert_int_equal(rc, COLLECT_ENOTFOUND);
        assert_non_null(strstr(err, "no Jetson"));
        assert_null(c);
    } else {
        assert_int_equal(rc, 0);
        struct collect_out out;
        collect_out_init(&out);
        assert_int_equal(collect_run(c, 1, &out, err, sizeof err), 0);
        assert_true(out.n > 0);
        collect_out_free(&out);
        collector_free(c);
    }
    ferry_buf_free(&missing);
    /* A tree without any Jetson marker is not detected. */
    char dir[256];
    assert_int_equal(fixture_copy("proc-basic", dir, sizeof dir), 0);
    assert_false(collect_jetson_detect(dir));
    dir_remove(dir);
}

/* The inventory event's fields from the Orin fixture; the fingerprint follows a change. */
static void test_inventory(void **state)
{
    (void)state;
    char dir[256];
    assert_int_equal(fixture_copy("jetson-orin", dir, sizeof dir), 0);
    struct inventory inv;
    inventory_collect(dir, dir, "1.2.3", &inv);
    assert_string_equal(inv.model, "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit");
    assert_string_equal(inv.l4t, "36.3.0");
    assert_string_equal(inv.ferryd, "1.2.3");
    assert_true(inv.kernel[0] && inv.root_bytes[0] && inv.data_bytes[0]);
    const char *kv[2 * INVENTORY_FIELDS];
    size_t n = inventory_kv(&inv, kv);
    assert_int_equal(n, inv.machine_id[0] ? 8 : 7); /* the fixture has no /etc/machine-id */
    uint64_t fp = inventory_fingerprint(&inv);
    inventory_collect(dir, dir, "1.2.3", &inv);
    assert_true(inventory_fingerprint(&inv) == fp);
    assert_int_equal(write_text(dir, "/etc/nv_tegra_release",
                                "# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic\n"),
                     0);
    inventory_collect(dir, dir, "1.2.3", &inv);
    assert_string_equal(inv.l4t, "36.4.0");
    assert_true(inventory_fingerprint(&inv) != fp);
    dir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nano),      cmocka_unit_test(test_xavier_nx),
        cmocka_unit_test(test_orin),      cmocka_unit_test(test_real_sys),
        cmocka_unit_test(test_inventory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
