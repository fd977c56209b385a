/*
 * config.h - ferryd's configuration: one INI file, parsed with inih.
 *
 * Every key lives in one table in config.c (section, key, type, default, whether SIGHUP reloads
 * it), so the defaults ferryd runs with when there is no file, the parser, the validation and the
 * reload rules cannot disagree. docs/configuration.md documents the same table for people.
 *
 * Loading works in two passes over the same parser: first the embedded defaults (an INI text in
 * config.c), then the operator's file on top. A key that is not in the table, a value that does
 * not parse, or a line inih cannot read is an error that names the file, the line and the key:
 *
 *     /etc/ferry/ferryd.ini:12: [sync] heartbeat = "soon": not a duration (e.g. 500ms, 30s, 5m)
 *
 * Strings in struct ferryd_config are owned by it (ferryd_config_free releases them). Sizes are
 * in bytes, durations in milliseconds, whatever unit the file used.
 */
#ifndef FERRY_ENGINE_CONFIG_H
#define FERRY_ENGINE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"

enum ferryd_config_error {
    FERRYD_CONFIG_OK = 0,
    FERRYD_CONFIG_ENOENT = -1, /* the file named does not exist or cannot be opened */
    FERRYD_CONFIG_EPARSE = -2, /* a line inih cannot read (no '=', unterminated section...) */
    FERRYD_CONFIG_EKEY = -3,   /* unknown section or key */
    FERRYD_CONFIG_EVALUE = -4, /* a value that does not parse or is out of range */
    FERRYD_CONFIG_ENOMEM = -5,
};

const char *ferryd_config_strerror(int err);

/* The default path `ferryd` and `ferry` read when no --config is given. */
#define FERRYD_CONFIG_DEFAULT_PATH "/etc/ferry/ferryd.ini"

/* Name of the file in data_dir where ferryd writes the addresses it actually bound (see
 * ferryd(8)): lines "http=127.0.0.1:8086", "udp=...", "unix=...". Lets `listen.http =
 * 127.0.0.1:0` work and lets `ferry` find the daemon. */
#define FERRYD_ADDR_FILE "ferryd.addr"

#define FERRYD_STREAMS 3 /* event, metric, log: enum record_stream order */

#define FERRYD_MAX_PINS 8       /* [server] pinned_public_key: hashes accepted at once (rotation) */
#define FERRYD_MAX_TAILS 16     /* [input.tail.NAME] sections */
#define FERRYD_MAX_SCRAPES 16   /* [input.prometheus.NAME] sections */
#define FERRYD_MAX_JOURNALDS 4  /* [input.journald.NAME] sections */
#define FERRYD_MAX_COMPONENTS 4 /* [update.NAME] sections: rootfs, app, model, config */

struct ferryd_config {
    /* [device] */
    char *data_dir;
    char *device_class;
    char *device_name; /* key "name"; "" means the host name */

    /* [server] */
    char *server_url; /* "" : no server; records stay in the journal */
    char *enroll_token;
    char *ca_file;
    char *pinned_public_key; /* "" or sha256//BASE64[;...]: libcurl's CURLOPT_PINNEDPUBLICKEY */

    /* [listen] ("" disables an input; unix paths are relative to data_dir) */
    char *listen_http;
    char *listen_udp;
    char *listen_unix;
    int64_t listen_unix_mode; /* permission bits of the socket file */
    uint64_t http_max_body_bytes;

    /* [journal] */
    uint64_t journal_quota_bytes;
    int journal_durability;          /* enum journal_durability (journal/journal.h) */
    int64_t journal_group_window_us; /* microseconds: the journal's unit */
    int64_t journal_sync_interval_ms;
    int64_t journal_keep_acked_metrics_ms; /* sent metrics kept for release conditions; 0: none */

    /* [sync], indexed by enum record_stream */
    int64_t latency_ms[FERRYD_STREAMS];
    uint64_t threshold_bytes[FERRYD_STREAMS];
    uint64_t max_batch_bytes;
    uint64_t min_batch_bytes;
    int64_t heartbeat_ms;
    int64_t backoff_min_ms;
    int64_t backoff_max_ms;
    int64_t request_deadline_ms;
    uint64_t low_speed_bytes_per_s; /* stall detection: slower than this ... */
    int64_t low_speed_time_ms;      /* ... for this long abandons a transfer */
    int64_t max_in_flight;
    int64_t zstd_level;
    bool netlink;

    /* [update] (the OTA agent, engine/ota/ota.h) */
    bool update_enabled;
    int64_t update_check_interval_ms;
    char *update_component;
    char *update_install_path; /* "": slots; else the file of a file component */
    char *update_release_keys; /* hex Ed25519 public keys separated by commas or spaces */
    char *update_slot_backend; /* "simulated" or "command" */
    char *update_slot_dir;     /* simulated backend; relative to data_dir */
    char *update_cmd_current;  /* command backend */
    char *update_cmd_set_next;
    char *update_cmd_mark_good;
    char *update_cmd_rollback;
    char *update_slot_path;
    char *update_health_command;
    char *update_health_gates; /* "inference.fps >= 25 for 60s; ..." (engine/ota/gate.h) */
    int64_t update_health_timeout_ms;
    int64_t update_trial_deadline_ms;
    char *update_reboot_command;
    char *update_initial_version;
    uint64_t update_max_download_bytes_per_s;         /* 0: no cap */
    char *update_metered_policy;                      /* allow | cap | defer */
    char *update_metered_interfaces;                  /* fnmatch globs of metered interfaces */
    uint64_t update_metered_max_download_bytes_per_s; /* policy cap; 0: max_download_rate */

    /* [update.NAME] sections, in file order: one OTA agent each (docs/configuration.md). A
     * NULL string or a 0 duration means "the [update] key's value" (ferryd_config_components). */
    struct ferryd_component {
        char *name;         /* rootfs | app | model | config: the component of its releases */
        char *install_path; /* NULL or "": slots */
        char *initial_version, *health_command, *health_gates, *reboot_command;
        char *slot_backend, *slot_dir, *cmd_current, *cmd_set_next, *cmd_mark_good, *cmd_rollback,
            *slot_path;
        int64_t check_interval_ms, health_timeout_ms, trial_deadline_ms;
        int line; /* of the section's first key, for messages */
    } components[FERRYD_MAX_COMPONENTS];
    size_t n_components;

    /* [collect], [collect.system], [collect.jetson] (engine/collect/collect.h) */
    char *collect_root; /* prefix of /proc and /sys ("/" = this system) */
    bool collect_system_enabled;
    int64_t collect_system_interval_ms;
    bool collect_system_percpu;
    char *collect_jetson_enabled; /* auto | true | false */
    int64_t collect_jetson_interval_ms;

    /* [input.tail.NAME] sections, in file order (engine/collect/collect.h, tail_new) */
    struct ferryd_tail {
        char *name;            /* NAME */
        char *path;            /* globs separated by blanks */
        char *source;          /* log record name; "" = NAME */
        char *multiline_start; /* POSIX ERE; "" = one record per line */
        uint64_t max_line_bytes;
        bool from_beginning;
        bool parse_level;
        int64_t multiline_flush_ms;
    } tails[FERRYD_MAX_TAILS];
    size_t n_tails;

    /* [input.prometheus.NAME] sections (engine/collect/collect.h, scrape_new) */
    struct ferryd_scrape {
        char *name;
        char *url;
        int64_t interval_ms;
        int64_t timeout_ms;
    } scrapes[FERRYD_MAX_SCRAPES];
    size_t n_scrapes;

    /* [input.journald.NAME] sections (engine/collect/collect.h, journald_new) */
    struct ferryd_journald {
        char *name;
        char *directory; /* "" = the local system journal */
        char *units;
        int64_t max_priority;
        bool from_beginning;
    } journalds[FERRYD_MAX_JOURNALDS];
    size_t n_journalds;

    /* [actions] (signed device actions, engine/action/agent.h) */
    char *actions_keys; /* trusted operator action keys; "" : actions off */
    int64_t actions_poll_interval_ms;
    char *actions_units;         /* units restart_unit may name */
    char *actions_commands;      /* exact command lines `run` may ask for, ';'-separated */
    char *actions_commands_file; /* more of them, one per line ('#' comments); "" : none */
    char *actions_restart_command;
    char *actions_reboot_command; /* "" : reboot refused */
    int64_t actions_timeout_ms;
    uint64_t actions_output_max_bytes;

    /* [log] */
    enum ferry_log_level log_level;
};

/*
 * Loads the configuration: embedded defaults, then `path` on top when path is not NULL.
 * `cfg` must be zeroed or freed before; on success it owns its strings. On failure `cfg` is left
 * freed (all pointers NULL) and `err` (when err_len > 0) holds one line saying what and where.
 * Returns 0 or a negative enum ferryd_config_error.
 */
int ferryd_config_load(const char *path, struct ferryd_config *cfg, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* Like ferryd_config_load, but from an INI text in memory; `name` is the file name errors use. */
int ferryd_config_load_string(const char *text, const char *name, struct ferryd_config *cfg,
                              char *err, size_t err_len) __attribute__((warn_unused_result));

void ferryd_config_free(struct ferryd_config *cfg);

/*
 * Describes what differs between `old` and `new` for a SIGHUP: calls `changed` once per key whose
 * value differs, with `reloadable` telling whether the daemon can apply it without a restart.
 * Returns the number of keys that differ.
 */
int ferryd_config_diff(const struct ferryd_config *old_cfg, const struct ferryd_config *new_cfg,
                       void (*changed)(const char *section, const char *key, bool reloadable,
                                       void *arg),
                       void *arg);

/* One component the OTA agent manages, with every value resolved: an [update.NAME] section's own
 * keys over [update]'s, or (no [update.NAME] section at all) the [update] section alone as the
 * one component named by its `component` key. Strings are borrowed from the config; "" means
 * "not set" (install_path "": a slot component). */
struct ferryd_update_effective {
    const char *component, *install_path, *initial_version, *health_command, *health_gates,
        *reboot_command, *slot_backend, *slot_dir, *cmd_current, *cmd_set_next, *cmd_mark_good,
        *cmd_rollback, *slot_path;
    int64_t check_interval_ms, health_timeout_ms, trial_deadline_ms;
};
/* Fills out[0..n) (n is at most FERRYD_MAX_COMPONENTS) and returns n (>= 1). */
size_t ferryd_config_components(const struct ferryd_config *cfg,
                                struct ferryd_update_effective out[FERRYD_MAX_COMPONENTS]);

/* Most release keys [update] release_keys may list. */
#define FERRYD_MAX_RELEASE_KEYS 8

/* Decodes [update] release_keys into keys (cap entries); *n gets the count. Returns 0, or -1 when
 * a key is not 64 hex digits or there are more than cap. */
int ferryd_config_release_keys(const struct ferryd_config *cfg, uint8_t (*keys)[32], size_t cap,
                               size_t *n) __attribute__((warn_unused_result));

/* Most operator action keys [actions] keys may list. */
#define FERRYD_MAX_ACTION_KEYS 8

/* Decodes [actions] keys like ferryd_config_release_keys. */
int ferryd_config_action_keys(const struct ferryd_config *cfg, uint8_t (*keys)[32], size_t cap,
                              size_t *n) __attribute__((warn_unused_result));

/* Parses "host:port", "[v6]:port" or ":port" (all interfaces) into its parts; host is
 * written NUL-terminated into host (empty for ":port"). Returns 0 or -1. */
int ferryd_parse_hostport(const char *s, char *host, size_t host_len, uint16_t *port);

/* Resolves a path against data_dir when it is relative; writes into out. Returns 0, or -1 when
 * the result does not fit. */
int ferryd_config_path(const struct ferryd_config *cfg, const char *path, char *out, size_t out_len)
    __attribute__((warn_unused_result));

/* The embedded defaults as INI text (what ferryd runs with when there is no file). */
extern const char ferryd_config_defaults[];

#endif
