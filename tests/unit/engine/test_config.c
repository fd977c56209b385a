/*
 * test_config.c - ferryd's INI configuration: defaults, overrides, and errors that name the
 * file, the line and the key.
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

#include "engine/config.h"
#include "journal/journal.h"

static void test_defaults_without_file(void **state)
{
    (void)state;
    struct ferryd_config cfg;
    char err[256];
    assert_int_equal(ferryd_config_load(NULL, &cfg, err, sizeof err), 0);
    assert_string_equal(cfg.data_dir, "/var/lib/ferry");
    assert_string_equal(cfg.listen_http, "127.0.0.1:8086");
    assert_string_equal(cfg.server_url, "");
    assert_int_equal(cfg.latency_ms[0], 1000);
    assert_int_equal(cfg.latency_ms[2], 60000);
    assert_int_equal(cfg.journal_quota_bytes, 1024ULL * 1024 * 1024);
    assert_int_equal(cfg.journal_durability, JOURNAL_SYNC_COMMIT);
    assert_int_equal(cfg.journal_group_window_us, 200);
    assert_int_equal(cfg.max_in_flight, 4);
    assert_true(cfg.netlink);
    assert_int_equal(cfg.log_level, FERRY_LOG_INFO);
    assert_false(cfg.update_enabled);
    ferryd_config_free(&cfg);
}

static void test_file_overrides_defaults(void **state)
{
    (void)state;
    char path[] = "/tmp/ferry-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "; a comment\n"
                       "[device]\n"
                       "data_dir = /tmp/x\n"
                       "[listen]\n"
                       "http = 127.0.0.1:0\n"
                       "udp =\n"
                       "[sync]\n"
                       "heartbeat = 90s\n"
                       "zstd_level = 9\n"
                       "metric_threshold = 1MiB\n"
                       "[log]\n"
                       "level = debug\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct ferryd_config cfg;
    char err[256];
    int rc = ferryd_config_load(path, &cfg, err, sizeof err);
    unlink(path);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.data_dir, "/tmp/x");
    assert_string_equal(cfg.listen_http, "127.0.0.1:0");
    assert_string_equal(cfg.listen_udp, "");
    assert_int_equal(cfg.heartbeat_ms, 90000);
    assert_int_equal(cfg.zstd_level, 9);
    assert_int_equal(cfg.threshold_bytes[1], 1024 * 1024);
    assert_int_equal(cfg.log_level, FERRY_LOG_DEBUG);
    /* untouched keys keep their defaults */
    assert_int_equal(cfg.latency_ms[1], 10000);
    ferryd_config_free(&cfg);
}

/* Loads `text` as file "test.ini" and expects error `code` with `message` in the text. */
static void expect_error(const char *text, int code, const char *message)
{
    struct ferryd_config cfg;
    char err[256];
    int rc = ferryd_config_load_string(text, "test.ini", &cfg, err, sizeof err);
    if (rc != code || !strstr(err, message))
        fail_msg("config:\n%s\nexpected %d \"%s\", got %d \"%s\"", text, code, message, rc, err);
    assert_null(cfg.data_dir); /* freed on failure */
}

static void test_unknown_key_names_file_line_key(void **state)
{
    (void)state;
    expect_error("[sync]\nheartbeat = 1m\nbogus = 3\n", FERRYD_CONFIG_EKEY,
                 "test.ini:3: [sync] bogus: unknown key");
}

static void test_unknown_section(void **state)
{
    (void)state;
    expect_error("\n[nope]\nx = 1\n", FERRYD_CONFIG_EKEY,
                 "test.ini:3: [nope] x: unknown section \"nope\"");
    expect_error("x = 1\n", FERRYD_CONFIG_EKEY, "test.ini:1: key \"x\" outside of any [section]");
}

static void test_bad_values(void **state)
{
    (void)state;
    expect_error("[sync]\n\n\nheartbeat = soon\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:4: [sync] heartbeat = \"soon\": not a duration");
    expect_error("[journal]\nquota = lots\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [journal] quota = \"lots\": not a size");
    expect_error("[journal]\nquota = 12\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [journal] quota = \"12\": out of range");
    expect_error("[journal]\ndurability = maybe\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [journal] durability = \"maybe\": not a durability mode");
    expect_error("[journal]\ngroup_window = 2min\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [journal] group_window = \"2min\": not a duration");
    expect_error("[sync]\nmax_in_flight = 99\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [sync] max_in_flight = \"99\": not an integer from 1 to 16");
    expect_error("[log]\nlevel = loud\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [log] level = \"loud\": not a log level");
    expect_error("[listen]\nhttp = localhost\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [listen] http = \"localhost\": not an address");
    expect_error("[listen]\nhttp = 127.0.0.1:70000\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [listen] http");
    expect_error("[server]\nurl = ftp://x\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [server] url = \"ftp://x\": not an http:// or https:// URL");
    expect_error("[listen]\nunix_mode = 0999\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [listen] unix_mode = \"0999\": not an octal file mode");
    expect_error("[update]\nenabled = perhaps\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [update] enabled = \"perhaps\": not a boolean");
}

/* [server] pinned_public_key: libcurl's sha256//BASE64 list, only with https. */
static void test_pinned_public_key(void **state)
{
    (void)state;
    const char *pin = "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    char text[1024];
    snprintf(text, sizeof text, "[server]\nurl = https://x:1\npinned_public_key = %s;%s\n", pin,
             pin);
    struct ferryd_config cfg;
    char err[256];
    assert_int_equal(ferryd_config_load_string(text, "ok.ini", &cfg, err, sizeof err), 0);
    assert_true(strncmp(cfg.pinned_public_key, pin, strlen(pin)) == 0);
    ferryd_config_free(&cfg);
    expect_error("[server]\npinned_public_key = /etc/ferry/ingest.pem\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [server] pinned_public_key = \"/etc/ferry/ingest.pem\": expected "
                 "sha256//");
    expect_error("[server]\npinned_public_key = sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSu"
                 "\n",
                 FERRYD_CONFIG_EVALUE, "test.ini:2: [server] pinned_public_key");
    snprintf(text, sizeof text, "[server]\npinned_public_key = %s;\n", pin);
    expect_error(text, FERRYD_CONFIG_EVALUE, "test.ini:2: [server] pinned_public_key");
    snprintf(text, sizeof text, "[server]\nurl = http://x:1\npinned_public_key = %s\n", pin);
    expect_error(text, FERRYD_CONFIG_EVALUE,
                 "test.ini:3: [server] pinned_public_key needs an https:// url");
}

static void test_collect_sections(void **state)
{
    (void)state;
    struct ferryd_config cfg;
    char err[256];
    assert_int_equal(ferryd_config_load(NULL, &cfg, err, sizeof err), 0);
    assert_string_equal(cfg.collect_root, "/");
    assert_true(cfg.collect_system_enabled);
    assert_int_equal(cfg.collect_system_interval_ms, 10000);
    assert_true(cfg.collect_system_percpu);
    assert_string_equal(cfg.collect_jetson_enabled, "auto");
    assert_int_equal(cfg.collect_jetson_interval_ms, 10000);
    ferryd_config_free(&cfg);
    assert_int_equal(ferryd_config_load_string("[collect.system]\ninterval = 30s\npercpu = no\n"
                                               "[collect.jetson]\nenabled = false\n",
                                               "t.ini", &cfg, err, sizeof err),
                     0);
    assert_int_equal(cfg.collect_system_interval_ms, 30000);
    assert_false(cfg.collect_system_percpu);
    assert_string_equal(cfg.collect_jetson_enabled, "false");
    ferryd_config_free(&cfg);
    expect_error("[collect.system]\ninterval = 10ms\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [collect.system] interval = \"10ms\": out of range");
    expect_error("[collect.jetson]\n\nenabled = maybe\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:3: [collect.jetson] enabled = \"maybe\": expected auto, true or false");
    expect_error("[collect.gpu]\nenabled = true\n", FERRYD_CONFIG_EKEY,
                 "test.ini:2: [collect.gpu] enabled: unknown section");
}

static void test_tail_sections(void **state)
{
    (void)state;
    struct ferryd_config cfg;
    char err[256];
    assert_int_equal(ferryd_config_load_string("[input.tail.app]\npath = /var/log/app/*.log\n"
                                               "multiline_start = ^[0-9]{4}-\nmax_line = 4KiB\n"
                                               "[input.tail.fw]\npath = /var/log/fw.log\n"
                                               "source = firmware\nfrom_beginning = yes\n",
                                               "t.ini", &cfg, err, sizeof err),
                     0);
    assert_int_equal(cfg.n_tails, 2);
    assert_string_equal(cfg.tails[0].name, "app");
    assert_string_equal(cfg.tails[0].path, "/var/log/app/*.log");
    assert_string_equal(cfg.tails[0].multiline_start, "^[0-9]{4}-");
    assert_int_equal(cfg.tails[0].max_line_bytes, 4096);
    assert_false(cfg.tails[0].from_beginning);
    assert_true(cfg.tails[0].parse_level);
    assert_int_equal(cfg.tails[0].multiline_flush_ms, 1000);
    assert_string_equal(cfg.tails[1].source, "firmware");
    assert_true(cfg.tails[1].from_beginning);
    struct ferryd_config other;
    assert_int_equal(ferryd_config_load_string("[input.tail.app]\npath = /x.log\n", "t.ini", &other,
                                               err, sizeof err),
                     0);
    assert_true(ferryd_config_diff(&cfg, &other, NULL, NULL) >= 1);
    ferryd_config_free(&other);
    ferryd_config_free(&cfg);
    expect_error("[input.tail.app]\nsource = x\n", FERRYD_CONFIG_EVALUE,
                 "[input.tail.app]: path is required");
    expect_error("[input.tail.app]\npath = /x\nbogus = 1\n", FERRYD_CONFIG_EKEY,
                 "test.ini:3: [input.tail.app] bogus: unknown key");
    expect_error("[input.tail.app]\npath = /x\nmax_line = 1MiB\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:3: [input.tail.app] max_line = \"1MiB\": a size from 64 bytes");
    expect_error("[input.tail.a b]\npath = /x\n", FERRYD_CONFIG_EKEY, "NAME must be");
}

static void test_prometheus_sections(void **state)
{
    (void)state;
    struct ferryd_config cfg;
    char err[256];
    assert_int_equal(ferryd_config_load_string("[input.prometheus.app]\n"
                                               "url = http://127.0.0.1:9100/metrics\n"
                                               "interval = 30s\n",
                                               "t.ini", &cfg, err, sizeof err),
                     0);
    assert_int_equal(cfg.n_scrapes, 1);
    assert_string_equal(cfg.scrapes[0].url, "http://127.0.0.1:9100/metrics");
    assert_int_equal(cfg.scrapes[0].interval_ms, 30000);
    assert_int_equal(cfg.scrapes[0].timeout_ms, 5000);
    ferryd_config_free(&cfg);
    expect_error("[input.prometheus.app]\ninterval = 1s\n", FERRYD_CONFIG_EVALUE,
                 "[input.prometheus.app]: url is required");
    expect_error("[input.prometheus.app]\nurl = https://x/metrics\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [input.prometheus.app] url = \"https://x/metrics\"");
    expect_error("[input.prometheus.app]\nurl = http://x/m\ninterval = 1s\ntimeout = 2s\n",
                 FERRYD_CONFIG_EVALUE, "timeout must not exceed interval");
    expect_error("[input.prometheus.app]\nurl = http://x/m\nport = 1\n", FERRYD_CONFIG_EKEY,
                 "test.ini:3: [input.prometheus.app] port: unknown key");
}

static void test_journald_sections(void **state)
{
    (void)state;
    struct ferryd_config cfg;
    char err[256];
    assert_int_equal(ferryd_config_load_string("[input.journald.sys]\nunits = app.service\n"
                                               "max_priority = warning\n",
                                               "t.ini", &cfg, err, sizeof err),
                     0);
    assert_int_equal(cfg.n_journalds, 1);
    assert_string_equal(cfg.journalds[0].units, "app.service");
    assert_string_equal(cfg.journalds[0].directory, "");
    assert_int_equal(cfg.journalds[0].max_priority, 4);
    assert_false(cfg.journalds[0].from_beginning);
    ferryd_config_free(&cfg);
    expect_error("[input.journald.sys]\nmax_priority = 9\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [input.journald.sys] max_priority = \"9\"");
    expect_error("[input.journald.sys]\ncursor = x\n", FERRYD_CONFIG_EKEY,
                 "test.ini:2: [input.journald.sys] cursor: unknown key");
}

static void test_update_section_rules(void **state)
{
    (void)state;
    expect_error("[update]\nenabled = true\n", FERRYD_CONFIG_EVALUE, "[update] release_keys");
    expect_error("[update]\nenabled = true\nrelease_keys = abcd\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:3: [update] release_keys");
    char text[512];
    snprintf(text, sizeof text,
             "[update]\nenabled = true\nrelease_keys = %064d, %064d\nslot_backend = command\n", 1,
             2);
    expect_error(text, FERRYD_CONFIG_EVALUE, "test.ini:4: [update] slot_backend = command needs");
    snprintf(text, sizeof text,
             "[update]\nenabled = true\nrelease_keys = %064d\nhealth_gates = model.fps >= 25\n", 1);
    expect_error(text, FERRYD_CONFIG_EVALUE,
                 "test.ini:4:31: [update] health_gates: health gate \"model.fps >= 25\": "
                 "expected \"for DURATION\"");
    /* a typo in the operator leaves '=' in the field name: refused, with the column of '=' */
    snprintf(text, sizeof text,
             "[update]\nenabled = true\nrelease_keys = %064d\n"
             "health_gates = gpu.temp < 90 for 1m;inference.fps => 25 for 60s\n",
             1);
    expect_error(text, FERRYD_CONFIG_EVALUE,
                 "test.ini:4:51: [update] health_gates: health gate \"inference.fps => 25 for "
                 "60s\": unknown operator \"=>\"");
    snprintf(text, sizeof text, "[update]\nenabled = true\nrelease_keys = %064d,%064d\n", 1, 2);
    struct ferryd_config cfg;
    char err[256];
    assert_int_equal(ferryd_config_load_string(text, "ok.ini", &cfg, err, sizeof err), 0);
    uint8_t keys[FERRYD_MAX_RELEASE_KEYS][32];
    size_t n;
    assert_int_equal(ferryd_config_release_keys(&cfg, keys, FERRYD_MAX_RELEASE_KEYS, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(keys[0][31], 0x01);
    assert_int_equal(keys[1][31], 0x02);
    ferryd_config_free(&cfg);
}

/* [update.NAME]: several components, each with its own keys over [update]'s; the single
 * [update] section alone stays one component (backward compatible). */
static void test_update_component_sections(void **state)
{
    (void)state;
    struct ferryd_config cfg;
    char err[256] = "", text[1024];
    struct ferryd_update_effective e[FERRYD_MAX_COMPONENTS];
    /* the single section: one component, with install_path */
    snprintf(text, sizeof text,
             "[update]\nenabled = true\nrelease_keys = %064d\ncomponent = model\n"
             "install_path = /opt/m.onnx\ninitial_version = 2.0.0\n",
             1);
    assert_int_equal(ferryd_config_load_string(text, "t.ini", &cfg, err, sizeof err), 0);
    assert_int_equal(ferryd_config_components(&cfg, e), 1);
    assert_string_equal(e[0].component, "model");
    assert_string_equal(e[0].install_path, "/opt/m.onnx");
    assert_string_equal(e[0].initial_version, "2.0.0");
    assert_int_equal(e[0].check_interval_ms, 3600 * 1000);
    ferryd_config_free(&cfg);
    /* defaults: rootfs in slots */
    assert_int_equal(ferryd_config_load(NULL, &cfg, err, sizeof err), 0);
    assert_int_equal(ferryd_config_components(&cfg, e), 1);
    assert_string_equal(e[0].component, "rootfs");
    assert_string_equal(e[0].install_path, "");
    assert_string_equal(e[0].slot_dir, "slots");
    ferryd_config_free(&cfg);
    /* sections: exactly these components, in file order, inheriting [update] */
    snprintf(text, sizeof text,
             "[update]\nenabled = true\nrelease_keys = %064d\ncomponent = config\n"
             "health_command = true\ntrial_deadline = 2m\ninitial_version = 0.1.0\n"
             "[update.model]\ninstall_path = /opt/cv/detector.onnx\ncheck_interval = 15m\n"
             "health_gates = inference.fps >= 25 for 60s\n"
             "[update.rootfs]\nslot_dir = rootfs-slots\ninitial_version = 4.2.0\n"
             "[update.app]\ninstall_path = /opt/cv/app\nhealth_command = systemctl is-active x\n",
             1);
    assert_int_equal(ferryd_config_load_string(text, "t.ini", &cfg, err, sizeof err), 0);
    assert_int_equal(ferryd_config_components(&cfg, e), 3);
    assert_string_equal(e[0].component, "model");
    assert_string_equal(e[0].install_path, "/opt/cv/detector.onnx");
    assert_int_equal(e[0].check_interval_ms, 15 * 60000);
    assert_string_equal(e[0].health_gates, "inference.fps >= 25 for 60s");
    assert_string_equal(e[0].health_command, "true"); /* inherited */
    assert_int_equal(e[0].trial_deadline_ms, 120000);
    assert_string_equal(e[0].initial_version, "0.1.0");
    assert_string_equal(e[1].component, "rootfs");
    assert_string_equal(e[1].install_path, "");
    assert_string_equal(e[1].slot_dir, "rootfs-slots");
    assert_string_equal(e[1].initial_version, "4.2.0");
    assert_int_equal(e[1].check_interval_ms, 3600 * 1000);
    assert_string_equal(e[2].component, "app");
    assert_string_equal(e[2].health_command, "systemctl is-active x");
    ferryd_config_free(&cfg);
    /* the rules, each naming the section */
    const char *head = "[update]\nenabled = true\nrelease_keys = "
                       "0000000000000000000000000000000000000000000000000000000000000001\n";
    struct {
        const char *body;
        int code;
        const char *want;
    } bad[] = {
        {"[update.kernel]\ninstall_path = /x\n", FERRYD_CONFIG_EKEY,
         "t.ini:5: [update.kernel]: NAME must be a component"},
        {"[update.model]\ninitial_version = 1\n", FERRYD_CONFIG_EVALUE,
         "[update.model]: install_path is required"},
        {"[update.rootfs]\ninstall_path = /x\n", FERRYD_CONFIG_EVALUE,
         "[update.rootfs]: install_path is not allowed"},
        {"[update.config]\ninstall_path = etc/x.json\n", FERRYD_CONFIG_EVALUE,
         "install_path = \"etc/x.json\": an absolute path"},
        {"[update.model]\ninstall_path = /x\n[update.config]\ninstall_path = /x\n",
         FERRYD_CONFIG_EVALUE,
         "t.ini:7: [update.config] install_path = \"/x\": also the file of "
         "[update.model]"},
        {"[update.rootfs]\ninitial_version = 1\n[update.app]\ninitial_version = 1\n",
         FERRYD_CONFIG_EVALUE,
         "[update.app] slot_dir = \"slots\": also the slots of "
         "[update.rootfs]"},
        {"[update.model]\ninstall_path = /x\nhealth_gates = fps >= 1\n", FERRYD_CONFIG_EVALUE,
         "[update.model] health_gates:"},
        {"[update.model]\ninstall_path = /x\ncheck_interval = soon\n", FERRYD_CONFIG_EVALUE,
         "t.ini:6: [update.model] check_interval = \"soon\": a duration"},
        {"[update.model]\ninstall_path = /x\nrelease_keys = 1\n", FERRYD_CONFIG_EKEY,
         "[update.model] release_keys: unknown key"},
        {"[update.rootfs]\nslot_backend = command\n", FERRYD_CONFIG_EVALUE,
         "[update.rootfs] slot_backend = command needs"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "%s%s", head, bad[i].body);
        memset(&cfg, 0, sizeof cfg);
        int rc = ferryd_config_load_string(text, "t.ini", &cfg, err, sizeof err);
        if (rc != bad[i].code || !strstr(err, bad[i].want))
            fail_msg("case %zu: rc %d, error '%s', wanted '%s'", i, rc, err, bad[i].want);
    }
    /* a component change is reported by the diff (it needs a restart) */
    struct ferryd_config a, b;
    snprintf(text, sizeof text, "%s[update.model]\ninstall_path = /x\n", head);
    assert_int_equal(ferryd_config_load_string(text, "a.ini", &a, err, sizeof err), 0);
    snprintf(text, sizeof text, "%s[update.model]\ninstall_path = /y\n", head);
    assert_int_equal(ferryd_config_load_string(text, "b.ini", &b, err, sizeof err), 0);
    assert_int_equal(ferryd_config_diff(&a, &b, NULL, NULL), 1);
    assert_int_equal(ferryd_config_diff(&a, &a, NULL, NULL), 0);
    ferryd_config_free(&a);
    ferryd_config_free(&b);
}

static void test_syntax_error_line(void **state)
{
    (void)state;
    expect_error("[sync]\nheartbeat = 1m\n[broken\n", FERRYD_CONFIG_EPARSE,
                 "test.ini:3: cannot parse");
    expect_error("[sync]\njust words\n", FERRYD_CONFIG_EPARSE, "test.ini:2: cannot parse");
}

static void test_cross_key_rules(void **state)
{
    (void)state;
    expect_error("[sync]\nbackoff_max = 2s\nbackoff_min = 10s\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:3: [sync] backoff_min (10000 ms) must not exceed backoff_max");
    expect_error("[device]\ndata_dir =\n", FERRYD_CONFIG_EVALUE,
                 "test.ini:2: [device] data_dir must not be empty");
}

static void test_long_line_is_an_error_on_its_line(void **state)
{
    (void)state;
    char text[2048];
    int n = snprintf(text, sizeof text, "[device]\nname = ");
    memset(text + n, 'a', 1500);
    snprintf(text + n + 1500, sizeof text - (size_t)n - 1500, "\n[log]\nlevel = nope\n");
    expect_error(text, FERRYD_CONFIG_EPARSE, "test.ini:2: line longer than");
}

static void test_missing_file(void **state)
{
    (void)state;
    struct ferryd_config cfg;
    char err[256];
    assert_int_equal(ferryd_config_load("/nonexistent/ferryd.ini", &cfg, err, sizeof err),
                     FERRYD_CONFIG_ENOENT);
    assert_non_null(strstr(err, "/nonexistent/ferryd.ini: cannot open"));
}

struct diff_seen {
    int reloadable;
    int restart;
    char keys[256];
};

static void on_changed(const char *section, const char *key, bool reloadable, void *arg)
{
    struct diff_seen *s = arg;
    if (reloadable)
        s->reloadable++;
    else
        s->restart++;
    size_t used = strlen(s->keys);
    snprintf(s->keys + used, sizeof s->keys - used, "%s.%s ", section, key);
}

static void test_diff_reports_reloadable_keys(void **state)
{
    (void)state;
    struct ferryd_config a, b;
    char err[256];
    assert_int_equal(ferryd_config_load_string("[log]\nlevel = info\n", "a", &a, err, sizeof err),
                     0);
    assert_int_equal(ferryd_config_load_string("[log]\nlevel = debug\n[sync]\nlog_latency = 5s\n"
                                               "[listen]\nhttp = 127.0.0.1:1\n",
                                               "b", &b, err, sizeof err),
                     0);
    struct diff_seen seen = {0, 0, ""};
    assert_int_equal(ferryd_config_diff(&a, &b, on_changed, &seen), 3);
    assert_int_equal(seen.reloadable, 2);
    assert_int_equal(seen.restart, 1);
    assert_non_null(strstr(seen.keys, "listen.http"));
    assert_int_equal(ferryd_config_diff(&a, &a, NULL, NULL), 0);
    ferryd_config_free(&a);
    ferryd_config_free(&b);
}

static void test_hostport(void **state)
{
    (void)state;
    char host[64];
    uint16_t port;
    assert_int_equal(ferryd_parse_hostport("127.0.0.1:8086", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8086);
    assert_int_equal(ferryd_parse_hostport("[::1]:0", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(ferryd_parse_hostport(":9", host, sizeof host, &port), 0);
    assert_string_equal(host, "");
    assert_int_equal(ferryd_parse_hostport("::1:80", host, sizeof host, &port), -1);
    assert_int_equal(ferryd_parse_hostport("h:", host, sizeof host, &port), -1);
    assert_int_equal(ferryd_parse_hostport("h:x", host, sizeof host, &port), -1);
    assert_int_equal(ferryd_parse_hostport("h", host, sizeof host, &port), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_without_file),
        cmocka_unit_test(test_file_overrides_defaults),
        cmocka_unit_test(test_unknown_key_names_file_line_key),
        cmocka_unit_test(test_unknown_section),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_syntax_error_line),
        cmocka_unit_test(test_update_section_rules),
        cmocka_unit_test(test_update_component_sections),
        cmocka_unit_test(test_pinned_public_key),
        cmocka_unit_test(test_collect_sections),
        cmocka_unit_test(test_tail_sections),
        cmocka_unit_test(test_prometheus_sections),
        cmocka_unit_test(test_journald_sections),
        cmocka_unit_test(test_cross_key_rules),
        cmocka_unit_test(test_long_line_is_an_error_on_its_line),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_diff_reports_reloadable_keys),
        cmocka_unit_test(test_hostport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
