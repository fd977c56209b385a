/*
 * config.c - ferry-ingest's configuration: defaults, one table of keys shared by the INI file
 * (inih; `[section]` + `key = value`) and the command line (`--section.key value`), and --help.
 *
 * One table, so that a key documented in --help is always accepted in both places and an
 * unknown key is always an error that names it (and the file and line, for the INI file).
 */
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cloud-ingest/ingest.h"
#include "common/util.h"

void ingest_config_defaults(struct ingest_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    alerts_config_defaults(&cfg->alerts);
    ferry_strlcpy(cfg->listen_host, "127.0.0.1", sizeof(cfg->listen_host));
    cfg->listen_port = 8480;
    cfg->workers = 0;
    cfg->max_connections = 10000;
    cfg->timeout_ms = 30000;
    cfg->max_body_bytes = 8u * 1024 * 1024;
    cfg->max_enroll_bytes = 16 * 1024;
    cfg->queue_max = 4096;
    cfg->queue_max_bytes = 512ull << 20;
    cfg->group_max_records = 65536;
    cfg->storage_threads = 2;
    cfg->device_rate = 100;
    cfg->device_burst = 200;
    cfg->device_max_inflight = 8;
    cfg->clock_threshold_ms = 60000;
    cfg->device_cache_ms = 5000;
    cfg->metrics_public = false;
    cfg->device_request_window_ms = 300000;
    cfg->enroll_failures_per_address = 10;
    cfg->enroll_failures_global = 100;
    cfg->max_artifact_bytes = 4ull << 30;
    cfg->nonce_cache_bytes = 8u << 20;
    cfg->tls_min_version = 0x0303; /* TLS1_2_VERSION */
    cfg->tls_ticket_rot_ms = 3600 * 1000;
    cfg->tls_ticket_life_ms = 24 * 3600 * 1000;
    cfg->log_level = FERRY_LOG_INFO;
    ferry_strlcpy(cfg->lmdb_dir, INGEST_DEFAULT_DATA_DIR, sizeof(cfg->lmdb_dir));
    cfg->store.kind = INGEST_STORE_LMDB;
    cfg->store.pg_connections = 4;
    cfg->store.pg_dashboard_tables = false;
    ingest_config_finish(cfg);
}

void ingest_config_finish(struct ingest_config *cfg)
{
    cfg->store.lmdb_dir = cfg->lmdb_dir;
    cfg->store.pg_conninfo = cfg->pg_conninfo;
    if (cfg->workers == 0) {
        /* Two loops per CPU: while one waits for the kernel or for its turn on a core, the
         * other works (ingest-bench, 10-record batches on 2 cores: 4 workers 11,545 batches/s,
         * 2 workers 9,281, medians of 3). */
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n > 0 && n < 32 ? 2 * (unsigned)n : 4;
    }
    if (cfg->storage_threads == 0)
        cfg->storage_threads = 1;
    if (cfg->store.pg_connections < cfg->storage_threads + 1)
        cfg->store.pg_connections = cfg->storage_threads + 1;
}

static int set_listen(struct ingest_config *cfg, const char *v, char *err, size_t err_len)
{
    const char *colon = strrchr(v, ':');
    uint64_t port = 0;
    if (colon == NULL || colon == v || (size_t)(colon - v) >= sizeof(cfg->listen_host) ||
        ferry_parse_u64(colon + 1, 65535, &port) != 0) {
        snprintf(err, err_len, "listen: expected host:port, got \"%s\"", v);
        return INGEST_EINVAL;
    }
    memcpy(cfg->listen_host, v, (size_t)(colon - v));
    cfg->listen_host[colon - v] = '\0';
    cfg->listen_port = (uint16_t)port;
    return 0;
}

static int set_uint(unsigned *out, const char *v, uint64_t min, uint64_t max)
{
    uint64_t n;
    if (ferry_parse_u64(v, max, &n) != 0 || n < min)
        return -1;
    *out = (unsigned)n;
    return 0;
}

static int set_double(double *out, const char *v)
{
    char *end = NULL;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || d < 0 || d > 1e9)
        return -1;
    *out = d;
    return 0;
}

/* release.mirrors: "URL, URL" -> cfg->release_mirrors (the whole list replaced). */
static int set_release_mirrors(struct ingest_config *cfg, const char *v, char *err, size_t err_len)
{
    size_t n = 0;
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        char why[200];
        if (len > 0 || end) {
            if (n >= MANIFEST_MAX_MIRRORS) {
                snprintf(err, err_len, "release.mirrors: more than %u mirrors",
                         MANIFEST_MAX_MIRRORS);
                return INGEST_EINVAL;
            }
            if (manifest_mirror_check(p, len, why, sizeof(why)) != 0) {
                snprintf(err, err_len, "release.mirrors: mirror %zu (\"%.*s\"): %s", n + 1,
                         (int)(len > 80 ? 80 : len), p, why);
                return INGEST_EINVAL;
            }
            memcpy(cfg->release_mirrors[n], p, len);
            cfg->release_mirrors[n][len] = '\0';
            n++;
        }
        p = end ? end + 1 : p + strlen(p);
    }
    cfg->n_release_mirrors = n;
    return 0;
}

/* release.public_keys: "HEX, HEX" -> cfg->release_keys (the whole list replaced). */
static int set_release_keys(struct ingest_config *cfg, const char *v, char *err, size_t err_len)
{
    size_t n = 0;
    const char *p = v;
    while (*p != '\0') {
        p += strspn(p, " \t,");
        size_t len = strcspn(p, " \t,");
        if (len == 0)
            break;
        if (n == INGEST_RELEASE_KEYS_MAX) {
            snprintf(err, err_len, "release.public_keys: more than %d keys",
                     INGEST_RELEASE_KEYS_MAX);
            return INGEST_EINVAL;
        }
        char hex[65] = "";
        if (len == 64) {
            memcpy(hex, p, 64);
            hex[64] = '\0';
        }
        if (len != 64 || ferry_hex_decode(hex, cfg->release_keys[n], 32) != 0) {
            snprintf(err, err_len, "release.public_keys: key %zu: expected 64 hex digits", n + 1);
            return INGEST_EINVAL;
        }
        n++;
        p += len;
    }
    cfg->n_release_keys = n;
    return 0;
}

static const char help_text[] =
    "  server.listen HOST:PORT        address to serve on (127.0.0.1:8480; port 0 = any free "
    "port)\n"
    "  server.port_file PATH          write the bound port to PATH once listening\n"
    "  server.workers N               HTTP worker threads, each its own event loop (2 x CPUs)\n"
    "  server.max_connections N       open connections across workers (10000)\n"
    "  server.timeout DURATION        read/write timeout of a connection (30s)\n"
    "  server.dict_dir PATH           zstd dictionaries as <dict_id>.dict (none)\n"
    "  server.metrics_public BOOL     serve /metrics without a token (false: viewer token)\n"
    "  server.device_request_window DURATION  accepted age of a device-signed request (5m)\n"
    "  server.tls_cert PATH           serve HTTPS with this PEM certificate chain (none: HTTP;\n"
    "                                 re-read with tls_key on SIGHUP)\n"
    "  server.tls_key PATH            the PEM private key of tls_cert\n"
    "  server.tls_min_version 1.2|1.3 oldest TLS version accepted (1.2)\n"
    "  server.tls_ticket_rotation DURATION  a new session-ticket key this often (1h; 0 = no\n"
    "                                 session resumption)\n"
    "  server.tls_ticket_lifetime DURATION  how long a device may resume a session (24h)\n"
    "  server.tls_ticket_key_file PATH  64 hex digits from which ticket keys are derived, so\n"
    "                                 that restarts and processes sharing it resume sessions\n"
    "                                 (none: random keys in memory)\n"
    "  limits.max_body SIZE           largest POST /v1/batches body, 413 above (8MiB)\n"
    "  limits.max_enroll_body SIZE    largest POST /v1/enroll body (16KiB)\n"
    "  limits.queue_max N             batches waiting for storage, 503 above (4096)\n"
    "  limits.queue_max_bytes SIZE    memory those batches hold (body + records), 503 above\n"
    "                                 (512MiB)\n"
    "  limits.group_max_records N     records per group commit (65536)\n"
    "  limits.device_rate R           fair share: batches/s per device, 429 above (100; 0 = off)\n"
    "  limits.device_burst N          fair share: burst in batches (200)\n"
    "  limits.device_max_inflight N   fair share: a device's batches queued at once (8)\n"
    "  limits.device_cache DURATION   trust a cached device key/revocation this long (5s)\n"
    "  limits.enroll_failures_per_address N  failed enrolments per minute from one address,\n"
    "                                 429 above (10; 0 = off)\n"
    "  limits.enroll_failures_global N  failed enrolments per minute in all (100; 0 = off)\n"
    "  limits.nonce_cache SIZE        memory of the replay cache of device-signed requests\n"
    "                                 (8MiB, 32 bytes a request; 0 = no replay check)\n"
    "  limits.max_artifact SIZE       largest artifact uploaded with PUT /v1/artifacts (4GiB)\n"
    "  clock.threshold DURATION       correct timestamps when |offset| exceeds this (60s)\n"
    "  store.type lmdb|postgresql     the store (lmdb)\n"
    "  store.lmdb_dir PATH            LMDB data directory (./ferry-ingest-data)\n"
    "  store.lmdb_map_size SIZE       LMDB map size (64GiB)\n"
    "  store.pg_conninfo STRING       libpq connection string (\"\": libpq defaults/PG* env)\n"
    "  store.pg_connections N         PostgreSQL connections in the pool (4)\n"
    "  store.storage_threads N        PostgreSQL parallel group committers (2; LMDB: 1)\n"
    "  store.pg_dashboard_tables BOOL PostgreSQL: write the dashboard tables (false)\n"
    "  store.pg_retention_days N      PostgreSQL: drop dashboard rows older (0: keep)\n"
    "  log.level error|warn|info|debug  log threshold (info)\n"
    "  release.mirrors URL[,URL...]   artifact mirrors (base URLs ending in '/', http or https,\n"
    "                                 at most 8) that devices try in order before the ingest;\n"
    "                                 added unsigned to the manifests served (none)\n"
    "  release.public_keys HEX[,HEX...]  release public keys (64 hex digits, at most 8) that\n"
    "                                 POST /v1/releases and /v1/rollouts verify with (none:\n"
    "                                 publishing over the API is refused)\n";

const char *ingest_config_help(void)
{
    return help_text;
}

const char *ingest_config_help_forward(void)
{
    return ingest_forward_config_help();
}

/* "forward.NAME.key": NAME may not hold a '.', so the key is after the last one. */
static int set_forward(struct ingest_config *cfg, const char *key, const char *v, char *err,
                       size_t err_len)
{
    const char *rest = key + 8, *dot = strrchr(rest, '.');
    char name[INGEST_FORWARD_NAME_MAX + 2];
    if (dot == NULL || dot == rest || (size_t)(dot - rest) >= sizeof(name)) {
        snprintf(err, err_len, "%s: expected forward.NAME.key", key);
        return INGEST_EINVAL;
    }
    memcpy(name, rest, (size_t)(dot - rest));
    name[dot - rest] = '\0';
    return ingest_forward_config_set(&cfg->forward, name, dot + 1, v, err, err_len) == 0
               ? 0
               : INGEST_EINVAL;
}

int ingest_config_set(struct ingest_config *cfg, const char *key, const char *v, char *err,
                      size_t err_len)
{
    int64_t ms;
    uint64_t size;
    int bad = 0;
    /* [alerts], [alert.NAME] and [receiver.NAME] belong to cloud-ingest/alerts/. */
    const char *dot = strrchr(key, '.');
    if (dot != NULL && (strncmp(key, "alert.", 6) == 0 || strncmp(key, "alerts.", 7) == 0 ||
                        strncmp(key, "receiver.", 9) == 0)) {
        char section[128];
        size_t n = (size_t)(dot - key);
        if (n >= sizeof(section)) {
            snprintf(err, err_len, "%s: section name too long", key);
            return INGEST_EINVAL;
        }
        memcpy(section, key, n);
        section[n] = '\0';
        return alerts_config_set(&cfg->alerts, section, dot + 1, v, err, err_len) == 0
                   ? 0
                   : INGEST_EINVAL;
    }
    if (strcmp(key, "server.listen") == 0)
        return set_listen(cfg, v, err, err_len);
    if (strncmp(key, "forward.", 8) == 0)
        return set_forward(cfg, key, v, err, err_len);
    if (strcmp(key, "server.port_file") == 0)
        bad = ferry_strlcpy(cfg->port_file, v, sizeof(cfg->port_file)) >= sizeof(cfg->port_file);
    else if (strcmp(key, "server.workers") == 0)
        bad = set_uint(&cfg->workers, v, 1, 64);
    else if (strcmp(key, "server.max_connections") == 0)
        bad = set_uint(&cfg->max_connections, v, 1, 1000000);
    else if (strcmp(key, "server.timeout") == 0) {
        bad = ferry_parse_duration_ms(v, &ms) != 0 || ms < 1;
        cfg->timeout_ms = ms;
    } else if (strcmp(key, "server.metrics_public") == 0) {
        bool on = strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "1") == 0;
        bad = !on && strcmp(v, "false") != 0 && strcmp(v, "no") != 0 && strcmp(v, "0") != 0;
        cfg->metrics_public = on;
    } else if (strcmp(key, "server.device_request_window") == 0) {
        bad = ferry_parse_duration_ms(v, &ms) != 0 || ms < 1000 || ms > 86400000;
        cfg->device_request_window_ms = ms;
    } else if (strcmp(key, "server.dict_dir") == 0)
        bad = ferry_strlcpy(cfg->dict_dir, v, sizeof(cfg->dict_dir)) >= sizeof(cfg->dict_dir);
    else if (strcmp(key, "server.tls_cert") == 0)
        bad = ferry_strlcpy(cfg->tls_cert, v, sizeof(cfg->tls_cert)) >= sizeof(cfg->tls_cert);
    else if (strcmp(key, "server.tls_key") == 0)
        bad = ferry_strlcpy(cfg->tls_key, v, sizeof(cfg->tls_key)) >= sizeof(cfg->tls_key);
    else if (strcmp(key, "server.tls_min_version") == 0) {
        if (strcmp(v, "1.2") == 0)
            cfg->tls_min_version = 0x0303;
        else if (strcmp(v, "1.3") == 0)
            cfg->tls_min_version = 0x0304;
        else
            bad = 1;
    } else if (strcmp(key, "server.tls_ticket_rotation") == 0) {
        bad = ferry_parse_duration_ms(v, &ms) != 0 || ms < 0 || (ms > 0 && ms < 1000) ||
              ms > 7 * 86400 * 1000LL;
        cfg->tls_ticket_rot_ms = ms;
    } else if (strcmp(key, "server.tls_ticket_lifetime") == 0) {
        /* TLS 1.3 caps a ticket's lifetime at 7 days (RFC 8446, 4.6.1). */
        bad = ferry_parse_duration_ms(v, &ms) != 0 || ms < 1000 || ms > 7 * 86400 * 1000LL;
        cfg->tls_ticket_life_ms = ms;
    } else if (strcmp(key, "server.tls_ticket_key_file") == 0)
        bad = ferry_strlcpy(cfg->tls_ticket_key, v, sizeof(cfg->tls_ticket_key)) >=
              sizeof(cfg->tls_ticket_key);
    else if (strcmp(key, "limits.max_body") == 0) {
        bad = ferry_parse_size(v, &size) != 0 || size < 64 || size > (1u << 30);
        cfg->max_body_bytes = size;
    } else if (strcmp(key, "limits.max_enroll_body") == 0) {
        bad = ferry_parse_size(v, &size) != 0 || size < 64 || size > (1u << 20);
        cfg->max_enroll_bytes = size;
    } else if (strcmp(key, "limits.queue_max_bytes") == 0) {
        bad = ferry_parse_size(v, &size) != 0 || size < 1024;
        cfg->queue_max_bytes = size;
    } else if (strcmp(key, "limits.queue_max") == 0)
        bad = set_uint(&cfg->queue_max, v, 1, 10000000);
    else if (strcmp(key, "limits.group_max_records") == 0)
        bad = set_uint(&cfg->group_max_records, v, 1, 100000000);
    else if (strcmp(key, "limits.device_rate") == 0)
        bad = set_double(&cfg->device_rate, v);
    else if (strcmp(key, "limits.device_burst") == 0)
        bad = set_double(&cfg->device_burst, v) || cfg->device_burst < 1;
    else if (strcmp(key, "limits.enroll_failures_per_address") == 0)
        bad = set_double(&cfg->enroll_failures_per_address, v) ||
              cfg->enroll_failures_per_address < 0;
    else if (strcmp(key, "limits.enroll_failures_global") == 0)
        bad = set_double(&cfg->enroll_failures_global, v) || cfg->enroll_failures_global < 0;
    else if (strcmp(key, "limits.device_max_inflight") == 0)
        bad = set_uint(&cfg->device_max_inflight, v, 1, 1000000);
    else if (strcmp(key, "limits.device_cache") == 0) {
        bad = ferry_parse_duration_ms(v, &ms) != 0 || ms < 0;
        cfg->device_cache_ms = ms;
    } else if (strcmp(key, "clock.threshold") == 0) {
        bad = ferry_parse_duration_ms(v, &ms) != 0 || ms < 0;
        cfg->clock_threshold_ms = ms;
    } else if (strcmp(key, "store.type") == 0) {
        if (strcmp(v, "lmdb") == 0)
            cfg->store.kind = INGEST_STORE_LMDB;
        else if (strcmp(v, "postgresql") == 0 || strcmp(v, "pg") == 0)
            cfg->store.kind = INGEST_STORE_PG;
        else
            bad = 1;
    } else if (strcmp(key, "store.lmdb_dir") == 0)
        bad = v[0] == '\0' ||
              ferry_strlcpy(cfg->lmdb_dir, v, sizeof(cfg->lmdb_dir)) >= sizeof(cfg->lmdb_dir);
    else if (strcmp(key, "store.lmdb_map_size") == 0) {
        bad = ferry_parse_size(v, &size) != 0 || size < (1u << 20);
        cfg->store.lmdb_map_size = size;
    } else if (strcmp(key, "store.pg_conninfo") == 0)
        bad = ferry_strlcpy(cfg->pg_conninfo, v, sizeof(cfg->pg_conninfo)) >=
              sizeof(cfg->pg_conninfo);
    else if (strcmp(key, "store.pg_connections") == 0)
        bad = set_uint(&cfg->store.pg_connections, v, 1, 256);
    else if (strcmp(key, "store.storage_threads") == 0)
        bad = set_uint(&cfg->storage_threads, v, 1, 64);
    else if (strcmp(key, "store.pg_dashboard_tables") == 0) {
        bool on = strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "1") == 0;
        bad = !on && strcmp(v, "false") != 0 && strcmp(v, "no") != 0 && strcmp(v, "0") != 0;
        cfg->store.pg_dashboard_tables = on;
    } else if (strcmp(key, "store.pg_retention_days") == 0)
        bad = set_uint(&cfg->store.pg_retention_days, v, 0, 36500);
    else if (strcmp(key, "log.level") == 0)
        bad = ferry_log_level_parse(v, &cfg->log_level) != 0;
    else if (strcmp(key, "release.mirrors") == 0)
        return set_release_mirrors(cfg, v, err, err_len);
    else if (strcmp(key, "release.public_keys") == 0)
        return set_release_keys(cfg, v, err, err_len);
    else if (strcmp(key, "limits.max_artifact") == 0) {
        bad = ferry_parse_size(v, &size) != 0 || size < 1;
        cfg->max_artifact_bytes = size;
    } else if (strcmp(key, "limits.nonce_cache") == 0) {
        bad = ferry_parse_size(v, &size) != 0 || size > (1ull << 32);
        cfg->nonce_cache_bytes = size;
    } else {
        snprintf(err, err_len, "unknown configuration key \"%s\"", key);
        return INGEST_EINVAL;
    }
    if (bad) {
        snprintf(err, err_len, "%s: invalid value \"%s\"", key, v);
        return INGEST_EINVAL;
    }
    ingest_config_finish(cfg);
    return 0;
}

struct ini_state {
    struct ingest_config *cfg;
    const char *path;
    char *err;
    size_t err_len;
    int failed;
};

/* inih reports the line of the first handler failure as ini_parse's result. */
static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    struct ini_state *st = user;
    char key[256];
    if (st->failed)
        return 0;
    snprintf(key, sizeof(key), "%s.%s", section, name);
    if (ingest_config_set(st->cfg, key, value, st->err, st->err_len) != 0) {
        st->failed = 1;
        return 0;
    }
    return 1;
}

int ingest_config_load(struct ingest_config *cfg, const char *path, char *err, size_t err_len)
{
    struct ini_state st = {cfg, path, err, err_len, 0};
    int rc = ini_parse(path, ini_cb, &st);
    if (st.failed) {
        char e[512];
        ferry_strlcpy(e, err, sizeof(e));
        snprintf(err, err_len, "%s:%d: %s", path, rc, e);
        return INGEST_EINVAL;
    }
    if (rc < 0) {
        snprintf(err, err_len, "%s: cannot read", path);
        return INGEST_EINVAL;
    }
    if (rc > 0) {
        snprintf(err, err_len, "%s:%d: syntax error", path, rc);
        return INGEST_EINVAL;
    }
    return 0;
}
