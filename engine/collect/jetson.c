/*
 * jetson.c - the Jetson collector: thermal zones, CPU/GPU/EMC clocks, fan, power rails, nvpmodel
 * and the L4T release, read from sysfs as NVIDIA's L4T documentation lays it out.
 *
 * Layouts differ between L4T generations (the fixtures in tests/unit/engine/fixtures/ and their
 * README name the documentation each follows):
 *
 *   node         L4T 32 (Nano, Xavier NX)                    L4T 35/36 (Orin)
 *   thermal      /sys/class/thermal/thermal_zoneN/{type,temp} same
 *   GPU          /sys/class/devfreq/57000000.gpu|17000000.gv11b  /sys/class/devfreq/17000000.ga10b
 *                {cur,min,max}_freq, device/load (per mille)  same
 *   CPU clock    /sys/devices/system/cpu/cpuN/cpufreq/scaling_{cur,min,max}_freq (kHz)
 *   EMC clock    /sys/kernel/debug/clk/emc/clk_rate /sys/kernel/debug/bpmp/debug/clk/emc/rate fan
 * /sys/devices/pwm-fan/{cur_pwm,rpm_measured}  hwmon "pwmfan" pwm1, "pwm_tach" rpm power rails iio:
 * .../ina3221x/B-ADDR/iio:deviceN/            hwmon "ina3221": in{1,2,3}_label, rail_name_N,
 * in_{voltage,current,power}N_input  in{1,2,3}_input (mV), curr{1,2,3}_input (mA); hwmon "ina238":
 * in1, curr1, power1_input (uW) nvpmodel     /var/lib/nvpmodel/status "pmode:0002 ...", names from
 * /etc/nvpmodel.conf L4T release  /etc/nv_tegra_release "# R32 (release), REVISION: 7.4, ..."
 *
 * Everything is probed once, in collect_jetson_new(): what exists becomes a list of paths read
 * every round; what does not is described once (the caller logs it) and never looked for again,
 * so a round is a fixed number of small reads. A node that fails to read in a round is skipped
 * for that round; the collector never fails because of one node.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/collect/collect.h"

#define MAX_ITEMS 64
#define NAME_MAX_LEN 64
/* Paths kept per node: a root plus a sysfs path fits; a longer one is skipped as missing. */
#define JPATH 512

struct zone {
    char type[NAME_MAX_LEN];
    char temp[JPATH];
};

struct cpufreq {
    char cpu[16];
    char dir[JPATH]; /* .../cpufreq */
};

struct gpu {
    char name[NAME_MAX_LEN];
    char dir[JPATH]; /* the devfreq directory */
};

/* One power rail: millivolts and milliamps, and a power file when the chip has one. */
struct rail {
    char label[NAME_MAX_LEN];
    char volt[JPATH];
    char curr[JPATH];
    char power[JPATH]; /* "" : computed V x I */
    int64_t power_div; /* the power file's unit to mW: 1 (iio, mW) or 1000 (hwmon, uW) */
};

struct jetson_state {
    char root[PATH_MAX];
    struct zone zones[MAX_ITEMS];
    size_t n_zones;
    struct cpufreq cpus[MAX_ITEMS];
    size_t n_cpus;
    struct gpu gpus[4];
    size_t n_gpus;
    char emc[JPATH]; /* "" when missing */
    char fan_pwm[JPATH];
    char fan_rpm[JPATH];
    struct rail rails[MAX_ITEMS];
    size_t n_rails;
    char nvp_status[JPATH];
    /* nvpmodel mode names by id, from nvpmodel.conf */
    struct {
        int64_t id;
        char name[NAME_MAX_LEN];
    } modes[32];
    size_t n_modes;
    char l4t[32];              /* "32.7.4", "" when unknown */
    char model[128];           /* device-tree model */
    struct ferry_buf *missing; /* probe only */
};

/* snprintf into a path or name buffer; a result that does not fit is cut (and then names a file
 * that does not exist, which the callers treat as missing). Returns 0, or -1 when cut. */
__attribute__((format(printf, 3, 4))) static int jfmt(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

static void note_missing(struct jetson_state *st, const char *what, const char *where)
{
    if (!st->missing)
        return;
    if (ferry_buf_printf(st->missing, "%s: %s%s: not found\n", what, st->root, where) != 0)
        st->missing = NULL; /* out of memory: the rest of the list is lost, nothing else */
}

static bool exists(const char *path)
{
    return access(path, R_OK) == 0;
}

/* Reads a small text file; strips the trailing newline and NULs. Returns 0 or -1. */
static int read_text(const char *path, char *buf, size_t cap)
{
    long n = collect_read_file("", path, buf, cap);
    if (n <= 0)
        return -1;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == 0 || buf[n - 1] == ' '))
        buf[--n] = 0;
    return 0;
}

/* Copies s into a tag/label value: printable ASCII, lower case kept as given. */
static void copy_name(char *dst, size_t cap, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++)
        dst[i] = isprint((unsigned char)s[i]) ? s[i] : '_';
    dst[i] = 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Lists the entries of root+rel whose names start with prefix, sorted (natural for the numbers
 * that follow: thermal_zone2 before thermal_zone10). Returns the count (at most cap). */
static size_t list_dir(const char *root, const char *rel, const char *prefix,
                       char (*names)[NAME_MAX_LEN], size_t cap)
{
    char path[PATH_MAX];
    if (collect_path(root, rel, path, sizeof path) != 0)
        return 0;
    DIR *d = opendir(path);
    if (!d)
        return 0;
    size_t n = 0, plen = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < cap) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, plen) != 0 ||
            strlen(e->d_name) >= NAME_MAX_LEN)
            continue;
        memcpy(names[n], e->d_name, strlen(e->d_name) + 1);
        n++;
    }
    closedir(d);
    /* Natural order: shorter names first, then by bytes. */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0; j--) {
            size_t la = strlen(names[j - 1]), lb = strlen(names[j]);
            if (la < lb || (la == lb && cmp_names(names[j - 1], names[j]) <= 0))
                break;
            char tmp[NAME_MAX_LEN];
            memcpy(tmp, names[j], NAME_MAX_LEN);
            memcpy(names[j], names[j - 1], NAME_MAX_LEN);
            memcpy(names[j - 1], tmp, NAME_MAX_LEN);
        }
    return n;
}

/* ---- Probing -------------------------------------------------------------------------------- */

static void probe_zones(struct jetson_state *st)
{
    char names[MAX_ITEMS][NAME_MAX_LEN];
    size_t n = list_dir(st->root, "/sys/class/thermal", "thermal_zone", names, MAX_ITEMS);
    for (size_t i = 0; i < n; i++) {
        char rel[PATH_MAX], path[PATH_MAX], type[NAME_MAX_LEN];
        struct zone *z = &st->zones[st->n_zones];
        jfmt(rel, sizeof rel, "/sys/class/thermal/%s/type", names[i]);
        if (collect_path(st->root, rel, path, sizeof path) != 0 ||
            read_text(path, type, sizeof type) != 0) {
            note_missing(st, "thermal zone type", rel);
            continue;
        }
        jfmt(rel, sizeof rel, "/sys/class/thermal/%s/temp", names[i]);
        int64_t v;
        if (collect_path(st->root, rel, z->temp, sizeof z->temp) != 0 ||
            collect_read_i64(z->temp, &v) != 0) {
            note_missing(st, "thermal zone temperature", rel);
            continue;
        }
        copy_name(z->type, sizeof z->type, type);
        st->n_zones++;
    }
    if (st->n_zones == 0)
        note_missing(st, "thermal zones", "/sys/class/thermal/thermal_zone*");
}

static void probe_cpus(struct jetson_state *st)
{
    char names[MAX_ITEMS][NAME_MAX_LEN];
    size_t n = list_dir(st->root, "/sys/devices/system/cpu", "cpu", names, MAX_ITEMS);
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)names[i][3]))
            continue; /* cpufreq, cpuidle */
        char rel[PATH_MAX], file[PATH_MAX + 32];
        struct cpufreq *c = &st->cpus[st->n_cpus];
        jfmt(rel, sizeof rel, "/sys/devices/system/cpu/%s/cpufreq", names[i]);
        if (collect_path(st->root, rel, c->dir, sizeof c->dir) != 0)
            continue;
        jfmt(file, sizeof file, "%s/scaling_cur_freq", c->dir);
        if (!exists(file))
            continue; /* an offline core has no cpufreq directory */
        copy_name(c->cpu, sizeof c->cpu, names[i]);
        st->n_cpus++;
    }
    if (st->n_cpus == 0)
        note_missing(st, "CPU frequency", "/sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq");
}

/* GPU devfreq devices by the names L4T gives them: 57000000.gpu (Nano, gm20b), 17000000.gv11b
 * (Xavier), 17000000.ga10b (Orin), 17000000.gpu (Orin, L4T 36). */
static bool is_gpu_name(const char *name)
{
    const char *dot = strchr(name, '.');
    return dot && (strcmp(dot, ".gpu") == 0 || strcmp(dot, ".gv11b") == 0 ||
                   strcmp(dot, ".ga10b") == 0 || strcmp(dot, ".gp10b") == 0);
}

static void probe_gpus(struct jetson_state *st)
{
    char names[MAX_ITEMS][NAME_MAX_LEN];
    size_t n = list_dir(st->root, "/sys/class/devfreq", "", names, MAX_ITEMS);
    for (size_t i = 0; i < n && st->n_gpus < 4; i++) {
        if (!is_gpu_name(names[i]))
            continue;
        struct gpu *g = &st->gpus[st->n_gpus];
        char rel[PATH_MAX];
        jfmt(rel, sizeof rel, "/sys/class/devfreq/%s", names[i]);
        if (collect_path(st->root, rel, g->dir, sizeof g->dir) != 0)
            continue;
        char file[PATH_MAX + 32];
        jfmt(file, sizeof file, "%s/device/load", g->dir);
        if (!exists(file))
            note_missing(st, "GPU load", "/sys/class/devfreq/*/device/load");
        copy_name(g->name, sizeof g->name, names[i]);
        st->n_gpus++;
    }
    if (st->n_gpus == 0)
        note_missing(st, "GPU", "/sys/class/devfreq/{57000000.gpu,17000000.gv11b,17000000.ga10b}");
}

/* The first of `rels` that exists, into out; "" and a note when none. */
static void probe_first(struct jetson_state *st, const char *what, const char *const *rels,
                        size_t n, char *out, size_t cap)
{
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        if (collect_path(st->root, rels[i], path, sizeof path) == 0 && exists(path) &&
            strlen(path) < cap) {
            memcpy(out, path, strlen(path) + 1);
            return;
        }
    }
    note_missing(st, what, rels[0]);
}

/* hwmon devices by their "name" file. */
static void probe_hwmon(struct jetson_state *st)
{
    char names[MAX_ITEMS][NAME_MAX_LEN];
    size_t n = list_dir(st->root, "/sys/class/hwmon", "hwmon", names, MAX_ITEMS);
    for (size_t i = 0; i < n; i++) {
        char rel[PATH_MAX], dir[PATH_MAX], file[PATH_MAX + 64], chip[NAME_MAX_LEN];
        jfmt(rel, sizeof rel, "/sys/class/hwmon/%s", names[i]);
        if (collect_path(st->root, rel, dir, sizeof dir) != 0)
            continue;
        jfmt(file, sizeof file, "%s/name", dir);
        if (read_text(file, chip, sizeof chip) != 0)
            continue;
        if (strcmp(chip, "pwmfan") == 0 && !st->fan_pwm[0]) {
            jfmt(file, sizeof file, "%s/pwm1", dir);
            if (exists(file))
                jfmt(st->fan_pwm, sizeof st->fan_pwm, "%s", file);
        } else if (strcmp(chip, "pwm_tach") == 0 && !st->fan_rpm[0]) {
            jfmt(file, sizeof file, "%s/rpm", dir);
            if (exists(file))
                jfmt(st->fan_rpm, sizeof st->fan_rpm, "%s", file);
        } else if (strcmp(chip, "ina3221") == 0) {
            for (int ch = 1; ch <= 3 && st->n_rails < MAX_ITEMS; ch++) {
                struct rail *r = &st->rails[st->n_rails];
                char label[NAME_MAX_LEN];
                jfmt(file, sizeof file, "%s/in%d_label", dir, ch);
                if (read_text(file, label, sizeof label) != 0 || strcmp(label, "NC") == 0)
                    continue; /* unlabelled or "NC": not connected on this module */
                jfmt(r->volt, sizeof r->volt, "%s/in%d_input", dir, ch);
                jfmt(r->curr, sizeof r->curr, "%s/curr%d_input", dir, ch);
                if (!exists(r->volt) || !exists(r->curr)) {
                    note_missing(st, "INA3221 channel", rel);
                    continue;
                }
                r->power[0] = 0;
                r->power_div = 1;
                copy_name(r->label, sizeof r->label, label);
                st->n_rails++;
            }
        } else if (strcmp(chip, "ina238") == 0 && st->n_rails < MAX_ITEMS) {
            struct rail *r = &st->rails[st->n_rails];
            char label[NAME_MAX_LEN];
            jfmt(file, sizeof file, "%s/in1_label", dir);
            if (read_text(file, label, sizeof label) != 0)
                jfmt(label, sizeof label, "ina238_%s", names[i]);
            jfmt(r->volt, sizeof r->volt, "%s/in1_input", dir);
            jfmt(r->curr, sizeof r->curr, "%s/curr1_input", dir);
            jfmt(r->power, sizeof r->power, "%s/power1_input", dir);
            if (!exists(r->volt) || !exists(r->curr)) {
                note_missing(st, "INA238 channel", rel);
                continue;
            }
            if (!exists(r->power))
                r->power[0] = 0;
            r->power_div = 1000; /* hwmon power is in microwatts */
            copy_name(r->label, sizeof r->label, label);
            st->n_rails++;
        }
    }
}

/* L4T 32's iio driver: /sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:device<N>/. */
static void probe_iio_rails(struct jetson_state *st)
{
    char devs[MAX_ITEMS][NAME_MAX_LEN];
    size_t n = list_dir(st->root, "/sys/bus/i2c/drivers/ina3221x", "", devs, MAX_ITEMS);
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)devs[i][0]))
            continue; /* bind, unbind, uevent */
        char rel[PATH_MAX], iios[8][NAME_MAX_LEN];
        jfmt(rel, sizeof rel, "/sys/bus/i2c/drivers/ina3221x/%s", devs[i]);
        size_t m = list_dir(st->root, rel, "iio:device", iios, 8);
        for (size_t k = 0; k < m; k++) {
            char dir[PATH_MAX], drel[PATH_MAX];
            jfmt(drel, sizeof drel, "%s/%s", rel, iios[k]);
            if (collect_path(st->root, drel, dir, sizeof dir) != 0)
                continue;
            for (int ch = 0; ch < 3 && st->n_rails < MAX_ITEMS; ch++) {
                struct rail *r = &st->rails[st->n_rails];
                char file[PATH_MAX + 64], label[NAME_MAX_LEN];
                jfmt(file, sizeof file, "%s/rail_name_%d", dir, ch);
                if (read_text(file, label, sizeof label) != 0)
                    continue;
                jfmt(r->volt, sizeof r->volt, "%s/in_voltage%d_input", dir, ch);
                jfmt(r->curr, sizeof r->curr, "%s/in_current%d_input", dir, ch);
                jfmt(r->power, sizeof r->power, "%s/in_power%d_input", dir, ch);
                if (!exists(r->volt) || !exists(r->curr)) {
                    note_missing(st, "INA3221 (iio) channel", drel);
                    continue;
                }
                if (!exists(r->power))
                    r->power[0] = 0;
                r->power_div = 1;
                copy_name(r->label, sizeof r->label, label);
                st->n_rails++;
            }
        }
    }
}

/* "# R32 (release), REVISION: 7.4, GCID: ..." -> "32.7.4". */
static void probe_l4t(struct jetson_state *st)
{
    char buf[512];
    unsigned major = 0;
    char rev[16] = "";
    if (collect_read_file(st->root, "/etc/nv_tegra_release", buf, sizeof buf) <= 0 ||
        sscanf(buf, "# R%u (release), REVISION: %15[0-9.]", &major, rev) != 2) {
        note_missing(st, "L4T release", "/etc/nv_tegra_release");
        return;
    }
    jfmt(st->l4t, sizeof st->l4t, "%u.%s", major, rev);
}

/* "< POWER_MODEL ID=0 NAME=MAXN >" lines of nvpmodel.conf. */
static void probe_nvpmodel(struct jetson_state *st)
{
    const char *status_rel[] = {"/var/lib/nvpmodel/status"};
    probe_first(st, "nvpmodel status", status_rel, 1, st->nvp_status, sizeof st->nvp_status);
    char *conf = malloc(256 * 1024);
    if (!conf)
        return;
    if (collect_read_file(st->root, "/etc/nvpmodel.conf", conf, 256 * 1024) <= 0) {
        note_missing(st, "nvpmodel mode names", "/etc/nvpmodel.conf");
        free(conf);
        return;
    }
    for (char *p = conf; (p = strstr(p, "POWER_MODEL")) != NULL && st->n_modes < 32; p++) {
        long long id;
        char name[NAME_MAX_LEN];
        if (sscanf(p, "POWER_MODEL ID=%lld NAME=%63[^ >\n]", &id, name) != 2)
            continue;
        st->modes[st->n_modes].id = id;
        copy_name(st->modes[st->n_modes].name, NAME_MAX_LEN, name);
        st->n_modes++;
    }
    free(conf);
}

/* ---- Rounds --------------------------------------------------------------------------------- */

static int emit_zones(struct jetson_state *st, int64_t ts, struct collect_out *out)
{
    for (size_t i = 0; i < st->n_zones; i++) {
        int64_t milli;
        if (collect_read_i64(st->zones[i].temp, &milli) != 0)
            continue;
        struct collect_rec rec;
        collect_rec_begin(&rec, "temp", ts);
        collect_tag(&rec, "sensor", st->zones[i].type);
        collect_float(&rec, "temp", (double)milli / 1000.0);
        int rc = collect_emit(out, &rec);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int emit_cpus(struct jetson_state *st, int64_t ts, struct collect_out *out)
{
    static const char *const files[] = {"scaling_cur_freq", "scaling_min_freq", "scaling_max_freq"};
    for (size_t i = 0; i < st->n_cpus; i++) {
        struct collect_rec rec;
        collect_rec_begin(&rec, "linux_cpu", ts);
        collect_tag(&rec, "cpu", st->cpus[i].cpu);
        for (size_t f = 0; f < 3; f++) {
            char path[PATH_MAX + 32];
            int64_t v;
            jfmt(path, sizeof path, "%s/%s", st->cpus[i].dir, files[f]);
            if (collect_read_i64(path, &v) == 0)
                collect_int(&rec, files[f], v);
        }
        int rc = collect_emit(out, &rec);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int emit_gpus(struct jetson_state *st, int64_t ts, struct collect_out *out)
{
    static const char *const files[] = {"cur_freq", "min_freq", "max_freq"};
    for (size_t i = 0; i < st->n_gpus; i++) {
        struct collect_rec rec;
        char path[PATH_MAX + 32];
        int64_t v;
        collect_rec_begin(&rec, "jetson_gpu", ts);
        collect_tag(&rec, "name", st->gpus[i].name);
        jfmt(path, sizeof path, "%s/device/load", st->gpus[i].dir);
        if (collect_read_i64(path, &v) == 0)
            collect_float(&rec, "load", (double)v / 10.0); /* per mille -> percent */
        for (size_t f = 0; f < 3; f++) {
            jfmt(path, sizeof path, "%s/%s", st->gpus[i].dir, files[f]);
            if (collect_read_i64(path, &v) == 0)
                collect_int(&rec, files[f], v);
        }
        int rc = collect_emit(out, &rec);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int emit_rails(struct jetson_state *st, int64_t ts, struct collect_out *out)
{
    for (size_t i = 0; i < st->n_rails; i++) {
        const struct rail *r = &st->rails[i];
        int64_t mv, ma, p;
        if (collect_read_i64(r->volt, &mv) != 0 || collect_read_i64(r->curr, &ma) != 0)
            continue;
        int64_t mw = mv * ma / 1000;
        if (r->power[0] && collect_read_i64(r->power, &p) == 0)
            mw = p / r->power_div;
        struct collect_rec rec;
        collect_rec_begin(&rec, "jetson_power", ts);
        collect_tag(&rec, "rail", r->label);
        collect_int(&rec, "voltage_mv", mv);
        collect_int(&rec, "current_ma", ma);
        collect_int(&rec, "power_mw", mw);
        int rc = collect_emit(out, &rec);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int emit_misc(struct jetson_state *st, int64_t ts, struct collect_out *out)
{
    struct collect_rec rec;
    int64_t v;
    int rc;
    if (st->emc[0] && collect_read_i64(st->emc, &v) == 0) {
        collect_rec_begin(&rec, "jetson_emc", ts);
        collect_int(&rec, "freq", v);
        if ((rc = collect_emit(out, &rec)) != 0)
            return rc;
    }
    collect_rec_begin(&rec, "jetson_fan", ts);
    if (st->fan_pwm[0] && collect_read_i64(st->fan_pwm, &v) == 0)
        collect_int(&rec, "pwm", v);
    if (st->fan_rpm[0] && collect_read_i64(st->fan_rpm, &v) == 0)
        collect_int(&rec, "rpm", v);
    if ((rc = collect_emit(out, &rec)) != 0) /* skipped when it has no field */
        return rc;

    collect_rec_begin(&rec, "jetson", ts);
    if (st->l4t[0])
        collect_string(&rec, "l4t_release", st->l4t);
    if (st->model[0])
        collect_string(&rec, "model", st->model);
    char status[128];
    long long id;
    if (st->nvp_status[0] && read_text(st->nvp_status, status, sizeof status) == 0 &&
        sscanf(status, "pmode:%lld", &id) == 1) {
        collect_int(&rec, "nvpmodel_id", id);
        for (size_t i = 0; i < st->n_modes; i++)
            if (st->modes[i].id == id) {
                collect_string(&rec, "nvpmodel_name", st->modes[i].name);
                break;
            }
    }
    return collect_emit(out, &rec);
}

static int jetson_collect(void *state, int64_t ts, struct collect_out *out, char *errbuf,
                          size_t errlen)
{
    struct jetson_state *st = state;
    int (*const parts[])(struct jetson_state *, int64_t, struct collect_out *) = {
        emit_zones, emit_cpus, emit_gpus, emit_rails, emit_misc};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        int rc = parts[i](st, ts, out);
        if (rc != 0) {
            jfmt(errbuf, errlen, "jetson: %s", collect_strerror(rc));
            return rc;
        }
    }
    return 0;
}

bool collect_jetson_detect(const char *root)
{
    char buf[512];
    if (collect_read_file(root, "/etc/nv_tegra_release", buf, sizeof buf) > 0)
        return true;
    long n = collect_read_file(root, "/proc/device-tree/compatible", buf, sizeof buf);
    /* A list of NUL-separated strings: search each. */
    for (long i = 0; i < n; i += (long)strlen(buf + i) + 1)
        if (strstr(buf + i, "nvidia,tegra") != NULL || strstr(buf + i, "nvidia,p3") != NULL)
            return true;
    return false;
}

int collect_jetson_new(const struct collect_jetson_opts *opts, struct collector **out,
                       struct ferry_buf *missing, char *errbuf, size_t errlen)
{
    if (opts->interval_ms < 100 || strlen(opts->root) >= PATH_MAX - 256) {
        jfmt(errbuf, errlen, "[collect.jetson]: interval under 100 ms or root too long");
        return COLLECT_EINVAL;
    }
    struct jetson_state *st = calloc(1, sizeof *st);
    struct collector *c = calloc(1, sizeof *c);
    if (!st || !c) {
        free(st);
        free(c);
        jfmt(errbuf, errlen, "out of memory");
        return COLLECT_ENOMEM;
    }
    size_t rl = strlen(opts->root);
    while (rl > 0 && opts->root[rl - 1] == '/')
        rl--;
    memcpy(st->root, opts->root, rl);
    st->root[rl] = 0;
    st->missing = missing;
    probe_zones(st);
    probe_cpus(st);
    probe_gpus(st);
    const char *emc_rels[] = {"/sys/kernel/debug/bpmp/debug/clk/emc/rate",
                              "/sys/kernel/debug/clk/emc/clk_rate"};
    probe_first(st, "EMC frequency (debugfs, root only)", emc_rels, 2, st->emc, sizeof st->emc);
    probe_hwmon(st);
    if (!st->fan_pwm[0]) {
        const char *pwm_rels[] = {"/sys/devices/pwm-fan/cur_pwm"};
        probe_first(st, "fan PWM", pwm_rels, 1, st->fan_pwm, sizeof st->fan_pwm);
    }
    if (!st->fan_rpm[0]) {
        const char *rpm_rels[] = {"/sys/devices/pwm-fan/rpm_measured"};
        probe_first(st, "fan tachometer", rpm_rels, 1, st->fan_rpm, sizeof st->fan_rpm);
    }
    probe_iio_rails(st);
    if (st->n_rails == 0)
        note_missing(st, "power rails (INA3221/INA238)", "/sys/class/hwmon/*/name");
    probe_nvpmodel(st);
    probe_l4t(st);
    char model[128];
    char mpath[PATH_MAX];
    if (collect_path(st->root, "/proc/device-tree/model", mpath, sizeof mpath) == 0 &&
        read_text(mpath, model, sizeof model) == 0)
        copy_name(st->model, sizeof st->model, model);
    st->missing = NULL;

    if (st->n_gpus == 0 && st->n_rails == 0 && !st->l4t[0] && !st->nvp_status[0] && !st->emc[0]) {
        jfmt(errbuf, errlen, "%s: no Jetson GPU, power rails, nvpmodel or L4T release",
             st->root[0] ? st->root : "/");
        free(st);
        free(c);
        return COLLECT_ENOTFOUND;
    }
    memcpy(c->name, "jetson", 7);
    c->interval_ms = opts->interval_ms;
    c->state = st;
    c->collect = jetson_collect;
    c->free_state = free;
    *out = c;
    return 0;
}
