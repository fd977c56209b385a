/*
 * config.c - ferryd's INI configuration (see config.h).
 *
 * Design: one table (config_keys[]) lists every key with its type, where it lands in struct
 * ferryd_config, its bounds and whether SIGHUP can apply it. The defaults are an INI text
 * (ferryd_config_defaults) parsed by the same code before the operator's file, so a default can
 * never be a value the parser would reject.
 *
 * Line numbers: Debian's inih is built without INI_HANDLER_LINENO, so the handler is not told the
 * line. We feed inih through ini_parse_stream() with our own reader, which counts lines as it
 * hands them over; inih calls the handler for a line before it asks for the next one, so the
 * reader's count is the handler's line. The reader also refuses lines longer than inih's buffer
 * (inih would silently split them into two "lines").
 */
#include "engine/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "engine/ota/gate.h"
#include "journal/journal.h"

const char ferryd_config_defaults[] = "[device]\n"
                                      "data_dir = /var/lib/ferry\n"
                                      "device_class = generic\n"
                                      "name =\n"
                                      "[server]\n"
                                      "url =\n"
                                      "enroll_token =\n"
                                      "ca_file =\n"
                                      "pinned_public_key =\n"
                                      "[listen]\n"
                                      "http = 127.0.0.1:8086\n"
                                      "udp = 127.0.0.1:8089\n"
                                      "unix = ferryd.sock\n"
                                      "unix_mode = 0660\n"
                                      "http_max_body = 32MiB\n"
                                      "[journal]\n"
                                      "quota = 1GiB\n"
                                      "durability = commit\n"
                                      "group_window = 200us\n"
                                      "sync_interval = 1s\n"
                                      "keep_acked_metrics = 0\n"
                                      "[sync]\n"
                                      "event_latency = 1s\n"
                                      "metric_latency = 10s\n"
                                      "log_latency = 60s\n"
                                      "event_threshold = 16KiB\n"
                                      "metric_threshold = 256KiB\n"
                                      "log_threshold = 512KiB\n"
                                      "max_batch = 4MiB\n"
                                      "min_batch = 16KiB\n"
                                      "heartbeat = 5m\n"
                                      "backoff_min = 1s\n"
                                      "backoff_max = 5m\n"
                                      "request_deadline = 30s\n"
                                      "low_speed_limit = 100\n"
                                      "low_speed_time = 20s\n"
                                      "max_in_flight = 4\n"
                                      "zstd_level = 3\n"
                                      "netlink = true\n"
                                      "[update]\n"
                                      "enabled = false\n"
                                      "check_interval = 1h\n"
                                      "component = rootfs\n"
                                      "install_path =\n"
                                      "release_keys =\n"
                                      "slot_backend = simulated\n"
                                      "slot_dir = slots\n"
                                      "cmd_current =\n"
                                      "cmd_set_next =\n"
                                      "cmd_mark_good =\n"
                                      "cmd_rollback =\n"
                                      "slot_path =\n"
                                      "health_command =\n"
                                      "health_timeout = 30s\n"
                                      "health_gates =\n"
                                      "trial_deadline = 10m\n"
                                      "reboot_command =\n"
                                      "initial_version = 0.0.0\n"
                                      "max_download_rate = 0\n"
                                      "metered_policy = allow\n"
                                      "metered_interfaces = wwan* wwp* rmnet* ppp* usb*\n"
                                      "metered_max_download_rate = 0\n"
                                      "[collect]\n"
                                      "root = /\n"
                                      "[collect.system]\n"
                                      "enabled = true\n"
                                      "interval = 10s\n"
                                      "percpu = true\n"
                                      "[collect.jetson]\n"
                                      "enabled = auto\n"
                                      "interval = 10s\n"
                                      "[actions]\n"
                                      "keys =\n"
                                      "poll_interval = 5m\n"
                                      "units =\n"
                                      "commands =\n"
                                      "commands_file =\n"
                                      "restart_command = /bin/systemctl restart\n"
                                      "reboot_command = /bin/systemctl reboot\n"
                                      "timeout = 5m\n"
                                      "output_max = 4KiB\n"
                                      "[log]\n"
                                      "level = info\n";

enum key_type {
    KEY_STRING,
    KEY_HOSTPORT, /* a string that is "" or a valid host:port */
    KEY_URL,      /* a string that is "" or starts with http:// or https:// */
    KEY_SIZE,
    KEY_DURATION,
    KEY_DURATION_US, /* like KEY_DURATION but also "us", stored in microseconds */
    KEY_INT,
    KEY_MODE, /* octal permission bits, e.g. 0660 */
    KEY_BOOL,
    KEY_LOG_LEVEL,
    KEY_DURABILITY,
};

struct config_key {
    const char *section;
    const char *key;
    enum key_type type;
    size_t offset;
    bool reloadable;
    int64_t min; /* sizes and durations: inclusive bounds */
    int64_t max;
};

#define OFF(field) offsetof(struct ferryd_config, field)
#define KIB 1024LL
#define MIB (1024LL * 1024)
#define GIB (1024LL * 1024 * 1024)
#define DAY_MS (86400LL * 1000)

static const struct config_key config_keys[] = {
    {"device", "data_dir", KEY_STRING, OFF(data_dir), false, 0, 0},
    {"device", "device_class", KEY_STRING, OFF(device_class), true, 0, 0},
    {"device", "name", KEY_STRING, OFF(device_name), true, 0, 0},
    {"server", "url", KEY_URL, OFF(server_url), true, 0, 0},
    {"server", "enroll_token", KEY_STRING, OFF(enroll_token), true, 0, 0},
    {"server", "ca_file", KEY_STRING, OFF(ca_file), true, 0, 0},
    {"server", "pinned_public_key", KEY_STRING, OFF(pinned_public_key), true, 0, 0},
    {"listen", "http", KEY_HOSTPORT, OFF(listen_http), false, 0, 0},
    {"listen", "udp", KEY_HOSTPORT, OFF(listen_udp), false, 0, 0},
    {"listen", "unix", KEY_STRING, OFF(listen_unix), false, 0, 0},
    {"listen", "unix_mode", KEY_MODE, OFF(listen_unix_mode), false, 0, 0777},
    {"listen", "http_max_body", KEY_SIZE, OFF(http_max_body_bytes), true, 4 * KIB, 1 * GIB},
    {"journal", "quota", KEY_SIZE, OFF(journal_quota_bytes), false, 1 * MIB, 1024 * GIB},
    {"journal", "durability", KEY_DURABILITY, OFF(journal_durability), false, 0, 0},
    {"journal", "group_window", KEY_DURATION_US, OFF(journal_group_window_us), false, 0, 1000000},
    {"journal", "sync_interval", KEY_DURATION, OFF(journal_sync_interval_ms), false, 10,
     3600 * 1000},
    {"journal", "keep_acked_metrics", KEY_DURATION, OFF(journal_keep_acked_metrics_ms), false, 0,
     366 * DAY_MS},
    {"sync", "event_latency", KEY_DURATION, OFF(latency_ms[0]), true, 0, DAY_MS},
    {"sync", "metric_latency", KEY_DURATION, OFF(latency_ms[1]), true, 0, DAY_MS},
    {"sync", "log_latency", KEY_DURATION, OFF(latency_ms[2]), true, 0, DAY_MS},
    {"sync", "event_threshold", KEY_SIZE, OFF(threshold_bytes[0]), true, 1, 1 * GIB},
    {"sync", "metric_threshold", KEY_SIZE, OFF(threshold_bytes[1]), true, 1, 1 * GIB},
    {"sync", "log_threshold", KEY_SIZE, OFF(threshold_bytes[2]), true, 1, 1 * GIB},
    {"sync", "max_batch", KEY_SIZE, OFF(max_batch_bytes), true, 4 * KIB, 64 * MIB},
    {"sync", "min_batch", KEY_SIZE, OFF(min_batch_bytes), true, 1 * KIB, 64 * MIB},
    {"sync", "heartbeat", KEY_DURATION, OFF(heartbeat_ms), true, 1000, 7 * DAY_MS},
    {"sync", "backoff_min", KEY_DURATION, OFF(backoff_min_ms), true, 10, DAY_MS},
    {"sync", "backoff_max", KEY_DURATION, OFF(backoff_max_ms), true, 10, DAY_MS},
    {"sync", "request_deadline", KEY_DURATION, OFF(request_deadline_ms), true, 1000, DAY_MS},
    {"sync", "low_speed_limit", KEY_SIZE, OFF(low_speed_bytes_per_s), true, 1, 1 * GIB},
    {"sync", "low_speed_time", KEY_DURATION, OFF(low_speed_time_ms), true, 1000, DAY_MS},
    {"sync", "max_in_flight", KEY_INT, OFF(max_in_flight), true, 1, 16},
    {"sync", "zstd_level", KEY_INT, OFF(zstd_level), true, 1, 19},
    {"sync", "netlink", KEY_BOOL, OFF(netlink), true, 0, 0},
    {"update", "enabled", KEY_BOOL, OFF(update_enabled), false, 0, 0},
    {"update", "check_interval", KEY_DURATION, OFF(update_check_interval_ms), false, 1000,
     30 * DAY_MS},
    {"update", "component", KEY_STRING, OFF(update_component), false, 0, 0},
    {"update", "install_path", KEY_STRING, OFF(update_install_path), false, 0, 0},
    {"update", "release_keys", KEY_STRING, OFF(update_release_keys), false, 0, 0},
    {"update", "slot_backend", KEY_STRING, OFF(update_slot_backend), false, 0, 0},
    {"update", "slot_dir", KEY_STRING, OFF(update_slot_dir), false, 0, 0},
    {"update", "cmd_current", KEY_STRING, OFF(update_cmd_current), false, 0, 0},
    {"update", "cmd_set_next", KEY_STRING, OFF(update_cmd_set_next), false, 0, 0},
    {"update", "cmd_mark_good", KEY_STRING, OFF(update_cmd_mark_good), false, 0, 0},
    {"update", "cmd_rollback", KEY_STRING, OFF(update_cmd_rollback), false, 0, 0},
    {"update", "slot_path", KEY_STRING, OFF(update_slot_path), false, 0, 0},
    {"update", "health_command", KEY_STRING, OFF(update_health_command), false, 0, 0},
    {"update", "health_gates", KEY_STRING, OFF(update_health_gates), false, 0, 0},
    {"update", "health_timeout", KEY_DURATION, OFF(update_health_timeout_ms), false, 1000, DAY_MS},
    {"update", "trial_deadline", KEY_DURATION, OFF(update_trial_deadline_ms), false, 1000, DAY_MS},
    {"update", "reboot_command", KEY_STRING, OFF(update_reboot_command), false, 0, 0},
    {"update", "initial_version", KEY_STRING, OFF(update_initial_version), false, 0, 0},
    {"update", "metered_policy", KEY_STRING, OFF(update_metered_policy), false, 0, 0},
    {"update", "metered_interfaces", KEY_STRING, OFF(update_metered_interfaces), false, 0, 0},
    {"update", "metered_max_download_rate", KEY_SIZE, OFF(update_metered_max_download_bytes_per_s),
     false, 0, 1ull << 40},
    {"update", "max_download_rate", KEY_SIZE, OFF(update_max_download_bytes_per_s), false, 0,
     1 * GIB},
    {"collect", "root", KEY_STRING, OFF(collect_root), false, 0, 0},
    {"collect.system", "enabled", KEY_BOOL, OFF(collect_system_enabled), false, 0, 0},
    {"collect.system", "interval", KEY_DURATION, OFF(collect_system_interval_ms), false, 1000,
     DAY_MS},
    {"collect.system", "percpu", KEY_BOOL, OFF(collect_system_percpu), false, 0, 0},
    {"collect.jetson", "enabled", KEY_STRING, OFF(collect_jetson_enabled), false, 0, 0},
    {"collect.jetson", "interval", KEY_DURATION, OFF(collect_jetson_interval_ms), false, 1000,
     DAY_MS},
    {"actions", "keys", KEY_STRING, OFF(actions_keys), false, 0, 0},
    {"actions", "poll_interval", KEY_DURATION, OFF(actions_poll_interval_ms), false, 1000, DAY_MS},
    {"actions", "units", KEY_STRING, OFF(actions_units), false, 0, 0},
    {"actions", "commands", KEY_STRING, OFF(actions_commands), false, 0, 0},
    {"actions", "commands_file", KEY_STRING, OFF(actions_commands_file), false, 0, 0},
    {"actions", "restart_command", KEY_STRING, OFF(actions_restart_command), false, 0, 0},
    {"actions", "reboot_command", KEY_STRING, OFF(actions_reboot_command), false, 0, 0},
    {"actions", "timeout", KEY_DURATION, OFF(actions_timeout_ms), false, 1000, DAY_MS},
    {"actions", "output_max", KEY_SIZE, OFF(actions_output_max_bytes), false, 64, 64 * KIB},
    {"log", "level", KEY_LOG_LEVEL, OFF(log_level), true, 0, 0},
};

#define N_KEYS (sizeof config_keys / sizeof config_keys[0])

const char *ferryd_config_strerror(int err)
{
    switch (err) {
    case FERRYD_CONFIG_OK: return "success";
    case FERRYD_CONFIG_ENOENT: return "cannot open configuration file";
    case FERRYD_CONFIG_EPARSE: return "configuration syntax error";
    case FERRYD_CONFIG_EKEY: return "unknown configuration section or key";
    case FERRYD_CONFIG_EVALUE: return "invalid configuration value";
    case FERRYD_CONFIG_ENOMEM: return "out of memory";
    default: return "unknown configuration error";
    }
}

/* The state of one load: where lines come from, the line count, the first error. */
struct load_state {
    struct ferryd_config *cfg;
    const char *name; /* file name for messages */
    FILE *file;       /* either file ... */
    const char *text; /* ... or text */
    int line;
    int col;              /* > 0: the column the next load_fail() names (1-based) */
    const char *line_buf; /* the line inih is parsing (its value pointers point into it) */
    size_t line_len;      /* its length before inih cut it up with NULs */
    int set_col[N_KEYS];  /* column where each key's value starts on set_line (0: unknown) */
    bool line_too_long;
    int first_error;      /* 0 or an enum ferryd_config_error */
    int set_line[N_KEYS]; /* line where each key was last set in this file (0: default) */
    char *err;
    size_t err_len;
};

__attribute__((format(printf, 3, 4))) static void load_fail(struct load_state *st, int code,
                                                            const char *fmt, ...)
{
    if (st->first_error)
        return; /* the first error is the one worth reading */
    st->first_error = code;
    if (!st->err || st->err_len == 0)
        return;
    int n = st->col > 0 ? snprintf(st->err, st->err_len, "%s:%d:%d: ", st->name, st->line, st->col)
                        : snprintf(st->err, st->err_len, "%s:%d: ", st->name, st->line);
    if (n < 0 || (size_t)n >= st->err_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err + n, st->err_len - (size_t)n, fmt, ap);
    va_end(ap);
}

/* inih's reader: one line per call, counted; over-long lines are consumed whole and flagged. */
static char *load_reader(char *out, int size, void *arg)
{
    struct load_state *st = arg;
    if (size < 2)
        return NULL;
    size_t cap = (size_t)size - 1, used = 0;
    bool got_any = false;
    st->line_too_long = false;
    for (;;) {
        int c;
        if (st->file) {
            c = getc(st->file);
            if (c == EOF)
                break;
        } else {
            if (!*st->text)
                break;
            c = (unsigned char)*st->text++;
        }
        got_any = true;
        if (used < cap)
            out[used++] = (char)c;
        else
            st->line_too_long = true;
        if (c == '\n')
            break;
    }
    if (!got_any)
        return NULL;
    if (st->line_too_long) /* end the kept part with a newline so inih sees one line */
        out[used - 1] = '\n';
    out[used] = 0;
    st->line_buf = out;
    st->line_len = used;
    st->line++;
    if (st->line_too_long)
        load_fail(st, FERRYD_CONFIG_EPARSE, "line longer than %d characters", size - 2);
    return out;
}

static const struct config_key *find_key(const char *section, const char *key, bool *section_ok)
{
    *section_ok = false;
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strcmp(config_keys[i].section, section) != 0)
            continue;
        *section_ok = true;
        if (strcmp(config_keys[i].key, key) == 0)
            return &config_keys[i];
    }
    return NULL;
}

static int set_string(char **slot, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

static bool valid_url(const char *v)
{
    if (!*v)
        return true;
    const char *rest;
    if (strncmp(v, "http://", 7) == 0)
        rest = v + 7;
    else if (strncmp(v, "https://", 8) == 0)
        rest = v + 8;
    else
        return false;
    return *rest && *rest != '/';
}

/* "" or one to FERRYD_MAX_PINS "sha256//<base64 of 32 bytes>" separated by ';' (libcurl's
 * CURLOPT_PINNEDPUBLICKEY syntax; a file path, which libcurl also takes, is not accepted here,
 * so that a typo cannot turn into "pin whatever this file happens to hold"). */
static bool valid_pins(const char *v)
{
    size_t n = 0;
    while (*v) {
        if (strncmp(v, "sha256//", 8) != 0 || ++n > FERRYD_MAX_PINS)
            return false;
        v += 8;
        /* 32 bytes in base64: 43 characters of the alphabet, then one '='. */
        for (int i = 0; i < 43; i++, v++)
            if (!isalnum((unsigned char)*v) && *v != '+' && *v != '/')
                return false;
        if (*v++ != '=')
            return false;
        if (*v == ';' && v[1] != '\0')
            v++;
        else if (*v)
            return false; /* anything else after a pin, or a ';' with nothing after it */
    }
    return true;
}

/* "200us", "2ms", "1s", "0" (a bare number means microseconds here). Returns 0 or -1. */
static int parse_duration_us(const char *s, int64_t *out_us)
{
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || v < 0)
        return -1;
    int64_t mult;
    if (*end == 0 || strcmp(end, "us") == 0)
        mult = 1;
    else if (strcmp(end, "ms") == 0)
        mult = 1000;
    else if (strcmp(end, "s") == 0)
        mult = 1000000;
    else
        return -1;
    if (v > INT64_MAX / mult)
        return -1;
    *out_us = v * mult;
    return 0;
}

/* Stores one value; returns 0 or reports the problem through load_fail and returns -1. */
static int apply_value(struct load_state *st, const struct config_key *k, const char *value)
{
    char *base = (char *)st->cfg;
    void *slot = base + k->offset;
    switch (k->type) {
    case KEY_HOSTPORT: {
        char host[256];
        uint16_t port;
        if (*value && ferryd_parse_hostport(value, host, sizeof host, &port) != 0) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[%s] %s = \"%s\": not an address (host:port, [v6]:port, or empty to "
                      "disable)",
                      k->section, k->key, value);
            return -1;
        }
        break;
    }
    case KEY_STRING:
        if (k->offset == OFF(pinned_public_key) && !valid_pins(value)) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[%s] %s = \"%s\": expected sha256//<base64 SHA-256 of the server's public "
                      "key>, up to %d separated by ';'",
                      k->section, k->key, value, FERRYD_MAX_PINS);
            return -1;
        }
        break;
    case KEY_URL:
        if (!valid_url(value)) {
            load_fail(st, FERRYD_CONFIG_EVALUE, "[%s] %s = \"%s\": not an http:// or https:// URL",
                      k->section, k->key, value);
            return -1;
        }
        break;
    default: break;
    }
    switch (k->type) {
    case KEY_STRING:
    case KEY_HOSTPORT:
    case KEY_URL:
        if (set_string(slot, value) != 0) {
            load_fail(st, FERRYD_CONFIG_ENOMEM, "out of memory");
            return -1;
        }
        return 0;
    case KEY_SIZE: {
        uint64_t v;
        if (ferry_parse_size(value, &v) != 0) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[%s] %s = \"%s\": not a size (e.g. 4096, 64KiB, 16MiB, 1GiB)", k->section,
                      k->key, value);
            return -1;
        }
        if (v < (uint64_t)k->min || v > (uint64_t)k->max) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[%s] %s = \"%s\": out of range (%lld to %lld bytes)", k->section, k->key,
                      value, (long long)k->min, (long long)k->max);
            return -1;
        }
        *(uint64_t *)slot = v;
        return 0;
    }
    case KEY_DURATION: {
        int64_t v;
        if (ferry_parse_duration_ms(value, &v) != 0) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[%s] %s = \"%s\": not a duration (e.g. 500ms, 30s, 5m, 2h)", k->section,
                      k->key, value);
            return -1;
        }
        if (v < k->min || v > k->max) {
            load_fail(st, FERRYD_CONFIG_EVALUE, "[%s] %s = \"%s\": out of range (%lld to %lld ms)",
                      k->section, k->key, value, (long long)k->min, (long long)k->max);
            return -1;
        }
        *(int64_t *)slot = v;
        return 0;
    }
    case KEY_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "on") == 0 ||
            strcmp(value, "1") == 0) {
            *(bool *)slot = true;
            return 0;
        }
        if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "off") == 0 ||
            strcmp(value, "0") == 0) {
            *(bool *)slot = false;
            return 0;
        }
        load_fail(st, FERRYD_CONFIG_EVALUE, "[%s] %s = \"%s\": not a boolean (true or false)",
                  k->section, k->key, value);
        return -1;
    case KEY_LOG_LEVEL: {
        enum ferry_log_level lvl;
        if (ferry_log_level_parse(value, &lvl) != 0) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[%s] %s = \"%s\": not a log level (error, warn, info, debug)", k->section,
                      k->key, value);
            return -1;
        }
        *(enum ferry_log_level *)slot = lvl;
        return 0;
    }
    case KEY_DURABILITY:
        /* The journal's names (journal_durability_name); parsed here so that config.c does not
         * need the journal library. */
        if (strcmp(value, "commit") == 0)
            *(int *)slot = JOURNAL_SYNC_COMMIT;
        else if (strcmp(value, "periodic") == 0)
            *(int *)slot = JOURNAL_SYNC_PERIODIC;
        else if (strcmp(value, "os") == 0)
            *(int *)slot = JOURNAL_SYNC_OS;
        else {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[%s] %s = \"%s\": not a durability mode (commit, periodic, os)", k->section,
                      k->key, value);
            return -1;
        }
        return 0;
    case KEY_DURATION_US: {
        int64_t v;
        if (parse_duration_us(value, &v) != 0) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[%s] %s = \"%s\": not a duration (e.g. 200us, 2ms, 0)", k->section, k->key,
                      value);
            return -1;
        }
        if (v < k->min || v > k->max) {
            load_fail(st, FERRYD_CONFIG_EVALUE, "[%s] %s = \"%s\": out of range (%lld to %lld us)",
                      k->section, k->key, value, (long long)k->min, (long long)k->max);
            return -1;
        }
        *(int64_t *)slot = v;
        return 0;
    }
    case KEY_MODE: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 8);
        if (!*value || *end || errno || v < k->min || v > k->max) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[%s] %s = \"%s\": not an octal file mode (e.g. 0660)", k->section, k->key,
                      value);
            return -1;
        }
        *(int64_t *)slot = v;
        return 0;
    }
    case KEY_INT: {
        int64_t v;
        if (ferry_parse_i64(value, k->min, k->max, &v) != 0) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[%s] %s = \"%s\": not an integer from %lld to %lld", k->section, k->key,
                      value, (long long)k->min, (long long)k->max);
            return -1;
        }
        *(int64_t *)slot = v;
        return 0;
    }
    }
    return -1;
}

/* [input.tail.NAME]: sections made by the operator, one per followed set of files. */
static struct ferryd_tail *tail_section(struct load_state *st, const char *name)
{
    struct ferryd_config *c = st->cfg;
    for (size_t i = 0; i < c->n_tails; i++)
        if (strcmp(c->tails[i].name, name) == 0)
            return &c->tails[i];
    if (c->n_tails == FERRYD_MAX_TAILS) {
        load_fail(st, FERRYD_CONFIG_EVALUE, "[input.tail.%s]: more than %d tail sections", name,
                  FERRYD_MAX_TAILS);
        return NULL;
    }
    bool ok = *name && strlen(name) < 64;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            ok = false;
    if (!ok) {
        load_fail(st, FERRYD_CONFIG_EKEY,
                  "[input.tail.%s]: NAME must be 1 to 63 letters, digits, '_' or '-'", name);
        return NULL;
    }
    struct ferryd_tail *t = &c->tails[c->n_tails];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->path = strdup("");
    t->source = strdup("");
    t->multiline_start = strdup("");
    t->max_line_bytes = 16 * 1024;
    t->parse_level = true;
    t->multiline_flush_ms = 1000;
    c->n_tails++; /* counted before the check, so ferryd_config_free frees what was made */
    if (!t->name || !t->path || !t->source || !t->multiline_start) {
        load_fail(st, FERRYD_CONFIG_ENOMEM, "out of memory");
        return NULL;
    }
    return t;
}

static int tail_key(struct load_state *st, const char *name, const char *key, const char *value)
{
    struct ferryd_tail *t = tail_section(st, name);
    if (!t)
        return 0;
    char **str = NULL;
    if (strcmp(key, "path") == 0)
        str = &t->path;
    else if (strcmp(key, "source") == 0)
        str = &t->source;
    else if (strcmp(key, "multiline_start") == 0)
        str = &t->multiline_start;
    if (str) {
        if (set_string(str, value) != 0)
            load_fail(st, FERRYD_CONFIG_ENOMEM, "out of memory");
        return 1;
    }
    if (strcmp(key, "max_line") == 0) {
        uint64_t v;
        if (ferry_parse_size(value, &v) != 0 || v < 64 || v > 64 * KIB) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[input.tail.%s] max_line = \"%s\": a size from 64 bytes to 64KiB", name,
                      value);
            return 0;
        }
        t->max_line_bytes = v;
        return 1;
    }
    if (strcmp(key, "multiline_flush") == 0) {
        int64_t v;
        if (ferry_parse_duration_ms(value, &v) != 0 || v < 10 || v > 3600 * 1000) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[input.tail.%s] multiline_flush = \"%s\": a duration from 10ms to 1h", name,
                      value);
            return 0;
        }
        t->multiline_flush_ms = v;
        return 1;
    }
    bool *flag = strcmp(key, "from_beginning") == 0 ? &t->from_beginning
                 : strcmp(key, "parse_level") == 0  ? &t->parse_level
                                                    : NULL;
    if (!flag) {
        load_fail(st, FERRYD_CONFIG_EKEY, "[input.tail.%s] %s: unknown key", name, key);
        return 0;
    }
    if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "on") == 0 ||
        strcmp(value, "1") == 0)
        *flag = true;
    else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "off") == 0 ||
             strcmp(value, "0") == 0)
        *flag = false;
    else {
        load_fail(st, FERRYD_CONFIG_EVALUE,
                  "[input.tail.%s] %s = \"%s\": not a boolean (true or false)", name, key, value);
        return 0;
    }
    return 1;
}

/* [input.prometheus.NAME]: one exporter to scrape. */
static int scrape_key(struct load_state *st, const char *name, const char *key, const char *value)
{
    struct ferryd_config *c = st->cfg;
    struct ferryd_scrape *sc = NULL;
    for (size_t i = 0; i < c->n_scrapes; i++)
        if (strcmp(c->scrapes[i].name, name) == 0)
            sc = &c->scrapes[i];
    if (!sc) {
        bool ok = *name && strlen(name) < 64 && c->n_scrapes < FERRYD_MAX_SCRAPES;
        for (const char *p = name; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
                ok = false;
        if (!ok) {
            load_fail(st, FERRYD_CONFIG_EKEY,
                      "[input.prometheus.%s]: NAME must be 1 to 63 letters, digits, '_' or '-' "
                      "(at most %d sections)",
                      name, FERRYD_MAX_SCRAPES);
            return 0;
        }
        sc = &c->scrapes[c->n_scrapes++];
        memset(sc, 0, sizeof *sc);
        sc->name = strdup(name);
        sc->url = strdup("");
        sc->interval_ms = 10000;
        sc->timeout_ms = 5000;
        if (!sc->name || !sc->url) {
            load_fail(st, FERRYD_CONFIG_ENOMEM, "out of memory");
            return 0;
        }
    }
    if (strcmp(key, "url") == 0) {
        if (strncmp(value, "http://", 7) != 0 || !value[7]) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[input.prometheus.%s] url = \"%s\": an http:// URL of a local exporter",
                      name, value);
            return 0;
        }
        if (set_string(&sc->url, value) != 0)
            load_fail(st, FERRYD_CONFIG_ENOMEM, "out of memory");
        return 1;
    }
    int64_t *d = strcmp(key, "interval") == 0  ? &sc->interval_ms
                 : strcmp(key, "timeout") == 0 ? &sc->timeout_ms
                                               : NULL;
    if (!d) {
        load_fail(st, FERRYD_CONFIG_EKEY, "[input.prometheus.%s] %s: unknown key", name, key);
        return 0;
    }
    int64_t v;
    if (ferry_parse_duration_ms(value, &v) != 0 || v < 100 || v > DAY_MS) {
        load_fail(st, FERRYD_CONFIG_EVALUE,
                  "[input.prometheus.%s] %s = \"%s\": a duration from 100ms to 1d", name, key,
                  value);
        return 0;
    }
    *d = v;
    return 1;
}

/* [input.journald.NAME]: systemd's journal. */
static int journald_key(struct load_state *st, const char *name, const char *key, const char *value)
{
    struct ferryd_config *c = st->cfg;
    struct ferryd_journald *jd = NULL;
    for (size_t i = 0; i < c->n_journalds; i++)
        if (strcmp(c->journalds[i].name, name) == 0)
            jd = &c->journalds[i];
    if (!jd) {
        bool ok = *name && strlen(name) < 64 && c->n_journalds < FERRYD_MAX_JOURNALDS;
        for (const char *p = name; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
                ok = false;
        if (!ok) {
            load_fail(st, FERRYD_CONFIG_EKEY,
                      "[input.journald.%s]: NAME must be 1 to 63 letters, digits, '_' or '-' "
                      "(at most %d sections)",
                      name, FERRYD_MAX_JOURNALDS);
            return 0;
        }
        jd = &c->journalds[c->n_journalds++];
        memset(jd, 0, sizeof *jd);
        jd->name = strdup(name);
        jd->directory = strdup("");
        jd->units = strdup("");
        jd->max_priority = 7;
        if (!jd->name || !jd->directory || !jd->units) {
            load_fail(st, FERRYD_CONFIG_ENOMEM, "out of memory");
            return 0;
        }
    }
    char **str = strcmp(key, "directory") == 0 ? &jd->directory
                 : strcmp(key, "units") == 0   ? &jd->units
                                               : NULL;
    if (str) {
        if (set_string(str, value) != 0)
            load_fail(st, FERRYD_CONFIG_ENOMEM, "out of memory");
        return 1;
    }
    if (strcmp(key, "max_priority") == 0) {
        int64_t v = -1;
        static const char *const names[] = {"emerg",   "alert",  "crit", "err",
                                            "warning", "notice", "info", "debug"};
        for (int i = 0; i < 8; i++)
            if (strcmp(value, names[i]) == 0)
                v = i;
        if (v < 0 && ferry_parse_i64(value, 0, 7, &v) != 0) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[input.journald.%s] max_priority = \"%s\": 0..7 or emerg, alert, crit, "
                      "err, warning, notice, info, debug",
                      name, value);
            return 0;
        }
        jd->max_priority = v;
        return 1;
    }
    if (strcmp(key, "from_beginning") == 0) {
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0 ||
            strcmp(value, "on") == 0)
            jd->from_beginning = true;
        else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
                 strcmp(value, "0") == 0 || strcmp(value, "off") == 0)
            jd->from_beginning = false;
        else {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[input.journald.%s] from_beginning = \"%s\": not a boolean", name, value);
            return 0;
        }
        return 1;
    }
    load_fail(st, FERRYD_CONFIG_EKEY, "[input.journald.%s] %s: unknown key", name, key);
    return 0;
}

/* [update.NAME]: one component of the device (NAME rootfs, app, model or config), its keys
 * overriding [update]'s. */
#define COMP_OFF(field) offsetof(struct ferryd_component, field)
static const struct {
    const char *key;
    size_t offset;
    bool duration;
} component_keys[] = {
    {"install_path", COMP_OFF(install_path), false},
    {"initial_version", COMP_OFF(initial_version), false},
    {"health_command", COMP_OFF(health_command), false},
    {"health_gates", COMP_OFF(health_gates), false},
    {"reboot_command", COMP_OFF(reboot_command), false},
    {"slot_backend", COMP_OFF(slot_backend), false},
    {"slot_dir", COMP_OFF(slot_dir), false},
    {"cmd_current", COMP_OFF(cmd_current), false},
    {"cmd_set_next", COMP_OFF(cmd_set_next), false},
    {"cmd_mark_good", COMP_OFF(cmd_mark_good), false},
    {"cmd_rollback", COMP_OFF(cmd_rollback), false},
    {"slot_path", COMP_OFF(slot_path), false},
    {"check_interval", COMP_OFF(check_interval_ms), true},
    {"health_timeout", COMP_OFF(health_timeout_ms), true},
    {"trial_deadline", COMP_OFF(trial_deadline_ms), true},
};
#define N_COMPONENT_KEYS (sizeof component_keys / sizeof component_keys[0])

static void free_component(struct ferryd_component *comp)
{
    free(comp->name);
    for (size_t k = 0; k < N_COMPONENT_KEYS; k++)
        if (!component_keys[k].duration)
            free(*(char **)((char *)comp + component_keys[k].offset));
    memset(comp, 0, sizeof *comp);
}

static int component_key(struct load_state *st, const char *name, const char *key,
                         const char *value)
{
    struct ferryd_config *c = st->cfg;
    struct ferryd_component *comp = NULL;
    for (size_t i = 0; i < c->n_components; i++)
        if (strcmp(c->components[i].name, name) == 0)
            comp = &c->components[i];
    if (!comp) {
        if (strcmp(name, "rootfs") != 0 && strcmp(name, "app") != 0 && strcmp(name, "model") != 0 &&
            strcmp(name, "config") != 0) {
            load_fail(st, FERRYD_CONFIG_EKEY,
                      "[update.%s]: NAME must be a component: rootfs, app, model or config", name);
            return 0;
        }
        comp = &c->components[c->n_components++]; /* at most 4 distinct names: always room */
        memset(comp, 0, sizeof *comp);
        comp->line = st->line;
        if (!(comp->name = strdup(name))) {
            load_fail(st, FERRYD_CONFIG_ENOMEM, "out of memory");
            return 0;
        }
    }
    for (size_t k = 0; k < N_COMPONENT_KEYS; k++) {
        if (strcmp(component_keys[k].key, key) != 0)
            continue;
        void *slot = (char *)comp + component_keys[k].offset;
        if (!component_keys[k].duration) {
            if (set_string(slot, value) != 0)
                load_fail(st, FERRYD_CONFIG_ENOMEM, "out of memory");
            return 1;
        }
        int64_t ms;
        if (ferry_parse_duration_ms(value, &ms) != 0 || ms < 1000 || ms > 30 * DAY_MS) {
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[update.%s] %s = \"%s\": a duration from 1s to 30d", name, key, value);
            return 0;
        }
        *(int64_t *)slot = ms;
        return 1;
    }
    load_fail(st, FERRYD_CONFIG_EKEY,
              "[update.%s] %s: unknown key (a component takes install_path, initial_version, "
              "health_command, health_gates, health_timeout, trial_deadline, reboot_command, "
              "check_interval, slot_backend, slot_dir, cmd_current, cmd_set_next, "
              "cmd_mark_good, cmd_rollback, slot_path)",
              name, key);
    return 0;
}

static const char *or_default(const char *own, const char *dflt)
{
    return own ? own : dflt ? dflt : "";
}

size_t ferryd_config_components(const struct ferryd_config *c,
                                struct ferryd_update_effective out[FERRYD_MAX_COMPONENTS])
{
    size_t n = c->n_components ? c->n_components : 1;
    for (size_t i = 0; i < n; i++) {
        const struct ferryd_component *comp = c->n_components ? &c->components[i] : NULL;
        static const struct ferryd_component none;
        const struct ferryd_component *o = comp ? comp : &none;
        struct ferryd_update_effective *e = &out[i];
        e->component = comp ? comp->name : or_default(NULL, c->update_component);
        e->install_path =
            comp ? or_default(o->install_path, NULL) : or_default(NULL, c->update_install_path);
        e->initial_version = or_default(o->initial_version, c->update_initial_version);
        e->health_command = or_default(o->health_command, c->update_health_command);
        e->health_gates = or_default(o->health_gates, c->update_health_gates);
        e->reboot_command = or_default(o->reboot_command, c->update_reboot_command);
        e->slot_backend = or_default(o->slot_backend, c->update_slot_backend);
        e->slot_dir = or_default(o->slot_dir, c->update_slot_dir);
        e->cmd_current = or_default(o->cmd_current, c->update_cmd_current);
        e->cmd_set_next = or_default(o->cmd_set_next, c->update_cmd_set_next);
        e->cmd_mark_good = or_default(o->cmd_mark_good, c->update_cmd_mark_good);
        e->cmd_rollback = or_default(o->cmd_rollback, c->update_cmd_rollback);
        e->slot_path = or_default(o->slot_path, c->update_slot_path);
        e->check_interval_ms =
            o->check_interval_ms ? o->check_interval_ms : c->update_check_interval_ms;
        e->health_timeout_ms =
            o->health_timeout_ms ? o->health_timeout_ms : c->update_health_timeout_ms;
        e->trial_deadline_ms =
            o->trial_deadline_ms ? o->trial_deadline_ms : c->update_trial_deadline_ms;
    }
    return n;
}

/* The [update.NAME] sections' own rules (the [update] keys they inherit are checked as
 * [update]'s): a file component has an install path, rootfs never; no two components share a
 * file or a simulated slot directory. */
static void check_components(struct load_state *st)
{
    const struct ferryd_config *c = st->cfg;
    if (c->n_components == 0)
        return;
    struct ferryd_update_effective e[FERRYD_MAX_COMPONENTS];
    size_t n = ferryd_config_components(c, e);
    for (size_t i = 0; i < n; i++) {
        st->line = c->components[i].line;
        const char *name = e[i].component;
        bool file = e[i].install_path[0] != 0;
        if (!file && (strcmp(name, "model") == 0 || strcmp(name, "config") == 0))
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[update.%s]: install_path is required (a %s is a file the agent replaces)",
                      name, name);
        if (file && strcmp(name, "rootfs") == 0)
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[update.rootfs]: install_path is not allowed (rootfs uses A/B slots)");
        if (file && e[i].install_path[0] != '/')
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[update.%s] install_path = \"%s\": an absolute path", name,
                      e[i].install_path);
        struct ota_gate gates[OTA_MAX_GATES];
        size_t n_gates = 0;
        char why[300];
        if (c->components[i].health_gates &&
            ota_gates_parse(e[i].health_gates, gates, OTA_MAX_GATES, &n_gates, why, sizeof why) !=
                0)
            load_fail(st, FERRYD_CONFIG_EVALUE, "[update.%s] health_gates: %s", name, why);
        bool command = strcmp(e[i].slot_backend, "command") == 0;
        if (!file && !command && strcmp(e[i].slot_backend, "simulated") != 0)
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[update.%s] slot_backend = \"%s\": expected simulated or command", name,
                      e[i].slot_backend);
        if (!file && command &&
            (!e[i].cmd_current[0] || !e[i].cmd_set_next[0] || !e[i].cmd_mark_good[0] ||
             !e[i].cmd_rollback[0] || !e[i].slot_path[0]))
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[update.%s] slot_backend = command needs cmd_current, cmd_set_next, "
                      "cmd_mark_good, cmd_rollback and slot_path",
                      name);
        for (size_t k = 0; k < i; k++) {
            bool other_file = e[k].install_path[0] != 0;
            if (file && other_file && strcmp(e[i].install_path, e[k].install_path) == 0)
                load_fail(st, FERRYD_CONFIG_EVALUE,
                          "[update.%s] install_path = \"%s\": also the file of [update.%s]", name,
                          e[i].install_path, e[k].component);
            if (!file && !other_file && !command && strcmp(e[k].slot_backend, "simulated") == 0 &&
                strcmp(e[i].slot_dir, e[k].slot_dir) == 0)
                load_fail(st, FERRYD_CONFIG_EVALUE,
                          "[update.%s] slot_dir = \"%s\": also the slots of [update.%s] (give each "
                          "slot component its own slot_dir)",
                          name, e[i].slot_dir, e[k].component);
        }
    }
}

static int load_handler(void *arg, const char *section, const char *key, const char *value)
{
    struct load_state *st = arg;
    if (st->line_too_long)
        return 0; /* already reported; the truncated text means nothing */
    if (strncmp(section, "input.tail.", 11) == 0)
        return tail_key(st, section + 11, key, value);
    if (strncmp(section, "input.prometheus.", 17) == 0)
        return scrape_key(st, section + 17, key, value);
    if (strncmp(section, "input.journald.", 15) == 0)
        return journald_key(st, section + 15, key, value);
    if (strncmp(section, "update.", 7) == 0)
        return component_key(st, section + 7, key, value);
    bool section_ok;
    const struct config_key *k = find_key(section, key, &section_ok);
    if (!k) {
        if (!*section)
            load_fail(st, FERRYD_CONFIG_EKEY, "key \"%s\" outside of any [section]", key);
        else if (!section_ok)
            load_fail(st, FERRYD_CONFIG_EKEY, "[%s] %s: unknown section \"%s\"", section, key,
                      section);
        else
            load_fail(st, FERRYD_CONFIG_EKEY, "[%s] %s: unknown key", section, key);
        return 0;
    }
    if (apply_value(st, k, value) != 0)
        return 0;
    st->set_line[k - config_keys] = st->line;
    /* inih hands out pointers into the line our reader filled: the value's column */
    st->set_col[k - config_keys] =
        st->line_buf && value >= st->line_buf && value <= st->line_buf + st->line_len
            ? (int)(value - st->line_buf) + 1
            : 0;
    return 1;
}

static const struct config_key *key_by_offset(size_t offset)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (config_keys[i].offset == offset)
            return &config_keys[i];
    return NULL;
}

/* Checks rules that tie keys together; errors name the later key's line. */
static void check_cross(struct load_state *st)
{
    const struct ferryd_config *c = st->cfg;
    if (c->backoff_min_ms > c->backoff_max_ms) {
        const struct config_key *k = key_by_offset(OFF(backoff_min_ms));
        st->line = st->set_line[k - config_keys];
        load_fail(st, FERRYD_CONFIG_EVALUE,
                  "[sync] backoff_min (%lld ms) must not exceed backoff_max (%lld ms)",
                  (long long)c->backoff_min_ms, (long long)c->backoff_max_ms);
    }
    if (c->min_batch_bytes > c->max_batch_bytes) {
        const struct config_key *k = key_by_offset(OFF(min_batch_bytes));
        st->line = st->set_line[k - config_keys];
        load_fail(st, FERRYD_CONFIG_EVALUE,
                  "[sync] min_batch (%llu bytes) must not exceed max_batch (%llu bytes)",
                  (unsigned long long)c->min_batch_bytes, (unsigned long long)c->max_batch_bytes);
    }
    if (c->pinned_public_key && c->pinned_public_key[0] && c->server_url &&
        strncmp(c->server_url, "http://", 7) == 0) {
        const struct config_key *k = key_by_offset(OFF(pinned_public_key));
        st->line = st->set_line[k - config_keys];
        load_fail(st, FERRYD_CONFIG_EVALUE,
                  "[server] pinned_public_key needs an https:// url (url = \"%s\")", c->server_url);
    }
    if (c->update_enabled) {
        uint8_t keys[FERRYD_MAX_RELEASE_KEYS][32];
        size_t n = 0;
        const struct config_key *k = key_by_offset(OFF(update_release_keys));
        st->line = st->set_line[k - config_keys];
        if (ferryd_config_release_keys(c, keys, FERRYD_MAX_RELEASE_KEYS, &n) != 0 || n == 0)
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[update] release_keys: with enabled = true, one to %d Ed25519 public keys "
                      "as 64 hex digits, separated by commas or spaces",
                      FERRYD_MAX_RELEASE_KEYS);
        {
            struct ota_gate gates[OTA_MAX_GATES];
            size_t n_gates = 0;
            char why[300];
            size_t off = 0;
            k = key_by_offset(OFF(update_health_gates));
            st->line = st->set_line[k - config_keys];
            if (ota_gates_parse_at(c->update_health_gates, gates, OTA_MAX_GATES, &n_gates, why,
                                   sizeof why, &off) != 0) {
                /* file:line:column of the offending character, when the value came from a line */
                int col0 = st->set_col[k - config_keys];
                st->col = col0 > 0 && off < INT32_MAX - (size_t)col0 ? col0 + (int)off : 0;
                load_fail(st, FERRYD_CONFIG_EVALUE, "[update] health_gates: %s", why);
                st->col = 0;
            }
        }
        k = key_by_offset(OFF(update_metered_policy));
        st->line = st->set_line[k - config_keys];
        if (strcmp(c->update_metered_policy, "allow") != 0 &&
            strcmp(c->update_metered_policy, "cap") != 0 &&
            strcmp(c->update_metered_policy, "defer") != 0)
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[update] metered_policy = \"%s\": expected allow, cap or defer",
                      c->update_metered_policy);
        k = key_by_offset(OFF(update_slot_backend));
        st->line = st->set_line[k - config_keys];
        bool command = strcmp(c->update_slot_backend, "command") == 0;
        if (!command && strcmp(c->update_slot_backend, "simulated") != 0)
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[update] slot_backend = \"%s\": expected simulated or command",
                      c->update_slot_backend);
        if (command &&
            (!c->update_cmd_current[0] || !c->update_cmd_set_next[0] ||
             !c->update_cmd_mark_good[0] || !c->update_cmd_rollback[0] || !c->update_slot_path[0]))
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[update] slot_backend = command needs cmd_current, cmd_set_next, "
                      "cmd_mark_good, cmd_rollback and slot_path");
    }
    if (c->update_enabled)
        check_components(st);
    {
        uint8_t keys[FERRYD_MAX_ACTION_KEYS][32];
        size_t n = 0;
        const struct config_key *k = key_by_offset(OFF(actions_keys));
        st->line = st->set_line[k - config_keys];
        if (ferryd_config_action_keys(c, keys, FERRYD_MAX_ACTION_KEYS, &n) != 0)
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[actions] keys: up to %d Ed25519 public keys as 64 hex digits, separated "
                      "by commas or spaces",
                      FERRYD_MAX_ACTION_KEYS);
    }
    if (strcmp(c->collect_jetson_enabled, "auto") != 0 &&
        strcmp(c->collect_jetson_enabled, "true") != 0 &&
        strcmp(c->collect_jetson_enabled, "false") != 0) {
        const struct config_key *k = key_by_offset(OFF(collect_jetson_enabled));
        st->line = st->set_line[k - config_keys];
        load_fail(st, FERRYD_CONFIG_EVALUE,
                  "[collect.jetson] enabled = \"%s\": expected auto, true or false",
                  c->collect_jetson_enabled);
    }
    for (size_t i = 0; i < c->n_scrapes; i++) {
        st->line = 0;
        if (!c->scrapes[i].url[0])
            load_fail(st, FERRYD_CONFIG_EVALUE, "[input.prometheus.%s]: url is required",
                      c->scrapes[i].name);
        else if (c->scrapes[i].timeout_ms > c->scrapes[i].interval_ms)
            load_fail(st, FERRYD_CONFIG_EVALUE,
                      "[input.prometheus.%s]: timeout must not exceed interval",
                      c->scrapes[i].name);
    }
    for (size_t i = 0; i < c->n_tails; i++)
        if (!c->tails[i].path[0]) {
            st->line = 0;
            load_fail(st, FERRYD_CONFIG_EVALUE, "[input.tail.%s]: path is required",
                      c->tails[i].name);
        }
    if (!c->data_dir[0]) {
        const struct config_key *k = key_by_offset(OFF(data_dir));
        st->line = st->set_line[k - config_keys];
        load_fail(st, FERRYD_CONFIG_EVALUE, "[device] data_dir must not be empty");
    }
}

static int run_parse(struct load_state *st)
{
    int rc = ini_parse_stream(load_reader, st, load_handler, st);
    if (rc == -2) {
        load_fail(st, FERRYD_CONFIG_ENOMEM, "out of memory");
        return FERRYD_CONFIG_ENOMEM;
    }
    if (rc > 0 && !st->first_error) {
        /* inih found a syntax error the handler never saw. */
        st->line = rc;
        load_fail(st, FERRYD_CONFIG_EPARSE,
                  "cannot parse this line (expected \"[section]\" or \"key = value\")");
    }
    return st->first_error;
}

void ferryd_config_free(struct ferryd_config *cfg)
{
    for (size_t i = 0; i < cfg->n_tails; i++) {
        free(cfg->tails[i].name);
        free(cfg->tails[i].path);
        free(cfg->tails[i].source);
        free(cfg->tails[i].multiline_start);
    }
    memset(cfg->tails, 0, sizeof cfg->tails);
    cfg->n_tails = 0;
    for (size_t i = 0; i < cfg->n_scrapes; i++) {
        free(cfg->scrapes[i].name);
        free(cfg->scrapes[i].url);
    }
    memset(cfg->scrapes, 0, sizeof cfg->scrapes);
    cfg->n_scrapes = 0;
    for (size_t i = 0; i < cfg->n_journalds; i++) {
        free(cfg->journalds[i].name);
        free(cfg->journalds[i].directory);
        free(cfg->journalds[i].units);
    }
    memset(cfg->journalds, 0, sizeof cfg->journalds);
    cfg->n_journalds = 0;
    for (size_t i = 0; i < cfg->n_components; i++)
        free_component(&cfg->components[i]);
    cfg->n_components = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct config_key *k = &config_keys[i];
        if (k->type == KEY_STRING || k->type == KEY_HOSTPORT || k->type == KEY_URL) {
            char **slot = (char **)((char *)cfg + k->offset);
            free(*slot);
            *slot = NULL;
        }
    }
}

static int load_common(FILE *file, const char *text, const char *name, struct ferryd_config *cfg,
                       char *err, size_t err_len)
{
    if (err && err_len)
        err[0] = 0;
    memset(cfg, 0, sizeof *cfg);
    struct load_state *st = calloc(1, sizeof *st);
    if (!st) {
        if (err && err_len)
            snprintf(err, err_len, "%s: out of memory", name);
        return FERRYD_CONFIG_ENOMEM;
    }
    st->cfg = cfg;
    st->err = err;
    st->err_len = err_len;
    st->name = "(built-in defaults)";
    st->text = ferryd_config_defaults;
    int rc = run_parse(st);
    if (rc != 0)
        goto out; /* cannot happen unless the table and the defaults disagree */

    memset(st->set_line, 0, sizeof st->set_line);
    st->name = name;
    st->line = 0;
    st->file = file;
    st->text = text;
    if (file || text) {
        rc = run_parse(st);
        if (rc != 0)
            goto out;
    }
    check_cross(st);
    rc = st->first_error;
out:
    free(st);
    if (rc != 0)
        ferryd_config_free(cfg);
    return rc;
}

int ferryd_config_load(const char *path, struct ferryd_config *cfg, char *err, size_t err_len)
{
    if (!path)
        return load_common(NULL, NULL, "(built-in defaults)", cfg, err, err_len);
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        memset(cfg, 0, sizeof *cfg);
        if (err && err_len)
            snprintf(err, err_len, "%s: cannot open: %s", path, strerror(e));
        return FERRYD_CONFIG_ENOENT;
    }
    int rc = load_common(f, NULL, path, cfg, err, err_len);
    fclose(f); /* read-only stream: nothing to lose on close */
    return rc;
}

int ferryd_config_load_string(const char *text, const char *name, struct ferryd_config *cfg,
                              char *err, size_t err_len)
{
    return load_common(NULL, text ? text : "", name ? name : "(string)", cfg, err, err_len);
}

static bool key_equal(const struct config_key *k, const struct ferryd_config *a,
                      const struct ferryd_config *b)
{
    const char *pa = (const char *)a + k->offset, *pb = (const char *)b + k->offset;
    switch (k->type) {
    case KEY_STRING:
    case KEY_HOSTPORT:
    case KEY_URL: {
        const char *sa = *(char *const *)pa, *sb = *(char *const *)pb;
        return strcmp(sa ? sa : "", sb ? sb : "") == 0;
    }
    case KEY_SIZE: return *(const uint64_t *)pa == *(const uint64_t *)pb;
    case KEY_DURATION: return *(const int64_t *)pa == *(const int64_t *)pb;
    case KEY_BOOL: return *(const bool *)pa == *(const bool *)pb;
    case KEY_LOG_LEVEL:
        return *(const enum ferry_log_level *)pa == *(const enum ferry_log_level *)pb;
    case KEY_DURABILITY: return *(const int *)pa == *(const int *)pb;
    case KEY_DURATION_US:
    case KEY_INT:
    case KEY_MODE: return *(const int64_t *)pa == *(const int64_t *)pb;
    }
    return false;
}

int ferryd_config_diff(const struct ferryd_config *old_cfg, const struct ferryd_config *new_cfg,
                       void (*changed)(const char *section, const char *key, bool reloadable,
                                       void *arg),
                       void *arg)
{
    int n = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct config_key *k = &config_keys[i];
        if (key_equal(k, old_cfg, new_cfg))
            continue;
        n++;
        if (changed)
            changed(k->section, k->key, k->reloadable, arg);
    }
    /* Tail sections: any difference needs a restart (the tailers are made at start). */
    bool tails_differ = old_cfg->n_tails != new_cfg->n_tails;
    for (size_t i = 0; !tails_differ && i < old_cfg->n_tails; i++) {
        const struct ferryd_tail *a = &old_cfg->tails[i], *b = &new_cfg->tails[i];
        tails_differ =
            strcmp(a->name, b->name) || strcmp(a->path, b->path) || strcmp(a->source, b->source) ||
            strcmp(a->multiline_start, b->multiline_start) ||
            a->max_line_bytes != b->max_line_bytes || a->from_beginning != b->from_beginning ||
            a->parse_level != b->parse_level || a->multiline_flush_ms != b->multiline_flush_ms;
    }
    bool scrapes_differ = old_cfg->n_scrapes != new_cfg->n_scrapes;
    for (size_t i = 0; !scrapes_differ && i < old_cfg->n_scrapes; i++) {
        const struct ferryd_scrape *a = &old_cfg->scrapes[i], *b = &new_cfg->scrapes[i];
        scrapes_differ = strcmp(a->name, b->name) || strcmp(a->url, b->url) ||
                         a->interval_ms != b->interval_ms || a->timeout_ms != b->timeout_ms;
    }
    bool journalds_differ = old_cfg->n_journalds != new_cfg->n_journalds;
    for (size_t i = 0; !journalds_differ && i < old_cfg->n_journalds; i++) {
        const struct ferryd_journald *a = &old_cfg->journalds[i], *b = &new_cfg->journalds[i];
        journalds_differ = strcmp(a->name, b->name) || strcmp(a->directory, b->directory) ||
                           strcmp(a->units, b->units) || a->max_priority != b->max_priority ||
                           a->from_beginning != b->from_beginning;
    }
    /* Components: the agents are made once, so any difference needs a restart. */
    struct ferryd_update_effective ea[FERRYD_MAX_COMPONENTS], eb[FERRYD_MAX_COMPONENTS];
    size_t na = ferryd_config_components(old_cfg, ea), nb = ferryd_config_components(new_cfg, eb);
    bool components_differ = na != nb || old_cfg->n_components != new_cfg->n_components;
    for (size_t i = 0; !components_differ && i < old_cfg->n_components; i++)
        components_differ = strcmp(ea[i].component, eb[i].component) ||
                            strcmp(ea[i].install_path, eb[i].install_path) ||
                            strcmp(ea[i].initial_version, eb[i].initial_version) ||
                            strcmp(ea[i].health_command, eb[i].health_command) ||
                            strcmp(ea[i].health_gates, eb[i].health_gates) ||
                            strcmp(ea[i].reboot_command, eb[i].reboot_command) ||
                            strcmp(ea[i].slot_backend, eb[i].slot_backend) ||
                            strcmp(ea[i].slot_dir, eb[i].slot_dir) ||
                            strcmp(ea[i].cmd_current, eb[i].cmd_current) ||
                            strcmp(ea[i].cmd_set_next, eb[i].cmd_set_next) ||
                            strcmp(ea[i].cmd_mark_good, eb[i].cmd_mark_good) ||
                            strcmp(ea[i].cmd_rollback, eb[i].cmd_rollback) ||
                            strcmp(ea[i].slot_path, eb[i].slot_path) ||
                            ea[i].check_interval_ms != eb[i].check_interval_ms ||
                            ea[i].health_timeout_ms != eb[i].health_timeout_ms ||
                            ea[i].trial_deadline_ms != eb[i].trial_deadline_ms;
    if (components_differ) {
        n++;
        if (changed)
            changed("update.*", "*", false, arg);
    }
    if (journalds_differ) {
        n++;
        if (changed)
            changed("input.journald", "*", false, arg);
    }
    if (scrapes_differ) {
        n++;
        if (changed)
            changed("input.prometheus", "*", false, arg);
    }
    if (tails_differ) {
        n++;
        if (changed)
            changed("input.tail", "*", false, arg);
    }
    return n;
}

/* Hex Ed25519 public keys separated by commas or spaces into keys (cap entries). */
static int decode_keys(const char *text, uint8_t (*keys)[32], size_t cap, size_t *n)
{
    *n = 0;
    const char *p = text ? text : "";
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (!*p)
            return 0;
        size_t len = strcspn(p, " ,\t");
        char hex[65];
        if (len != 64 || *n == cap)
            return -1;
        memcpy(hex, p, 64);
        hex[64] = 0;
        if (ferry_hex_decode(hex, keys[*n], 32) != 0)
            return -1;
        (*n)++;
        p += len;
    }
}

int ferryd_config_release_keys(const struct ferryd_config *cfg, uint8_t (*keys)[32], size_t cap,
                               size_t *n)
{
    return decode_keys(cfg->update_release_keys, keys, cap, n);
}

int ferryd_config_action_keys(const struct ferryd_config *cfg, uint8_t (*keys)[32], size_t cap,
                              size_t *n)
{
    return decode_keys(cfg->actions_keys, keys, cap, n);
}

int ferryd_parse_hostport(const char *s, char *host, size_t host_len, uint16_t *port)
{
    const char *colon;
    const char *h = s;
    size_t hlen;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s)))
            return -1; /* bare IPv6 needs brackets */
        hlen = (size_t)(colon - s);
    }
    if (hlen >= host_len)
        return -1;
    uint64_t p;
    if (ferry_parse_u64(colon + 1, 65535, &p) != 0)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = 0;
    *port = (uint16_t)p;
    return 0;
}

int ferryd_config_path(const struct ferryd_config *cfg, const char *path, char *out, size_t out_len)
{
    int n;
    if (path[0] == '/')
        n = snprintf(out, out_len, "%s", path);
    else
        n = snprintf(out, out_len, "%s/%s", cfg->data_dir, path);
    return (n < 0 || (size_t)n >= out_len) ? -1 : 0;
}
