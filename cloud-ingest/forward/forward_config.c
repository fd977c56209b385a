/*
 * forward_config.c - the [forward.NAME] sections of ferry-ingest's configuration (forward.h):
 * one table of keys, defaults for a new forwarder, and the completeness check.
 */
#include <stdio.h>
#include <string.h>

#include "cloud-ingest/forward/forward.h"
#include "common/util.h"
#include "transport/record.h"

static const char help_text[] =
    "  forward.NAME.type prometheus_remote_write|influxdb   sink of forwarder NAME (required)\n"
    "  forward.NAME.url URL           remote write endpoint, or InfluxDB .../write?db=DB "
    "(required)\n"
    "  forward.NAME.devices LIST      comma-separated device ids, '*' ends a prefix (all)\n"
    "  forward.NAME.streams LIST      metric,event,log (metric; prometheus: metric,event)\n"
    "  forward.NAME.batch_records N   records read and sent per request (5000)\n"
    "  forward.NAME.series_limit N    prometheus: series kept, later ones dropped (100000)\n"
    "  forward.NAME.workers N|auto    batches encoded and in flight at once, 1..16 (auto: one per\n"
    "                                 core, at least 2, at most 4)\n"
    "  forward.NAME.timeout DURATION  one request (10s)\n"
    "  forward.NAME.max_backoff DURATION  longest wait between retries (30s)\n"
    "  forward.NAME.idle DURATION     wait when nothing new was committed (200ms)\n"
    "  forward.NAME.lease_ttl DURATION  ingests sharing one PostgreSQL: a dead holder's forwarder\n"
    "                                 is taken over within this (15s)\n"
    "  forward.NAME.precision ns|us|ms|s  influxdb: timestamp precision (ns)\n"
    "  forward.NAME.gzip on|off       influxdb: gzip request bodies (on)\n"
    "  forward.NAME.uint integer|unsigned  influxdb: how 3u is written (integer: 1.x OSS)\n";

const char *ingest_forward_config_help(void)
{
    return help_text;
}

static bool name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > INGEST_FORWARD_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static void defaults(struct ingest_forward_config *f, const char *name)
{
    memset(f, 0, sizeof(*f));
    ferry_strlcpy(f->name, name, sizeof(f->name));
    f->streams_mask = 1u << RECORD_METRIC;
    f->batch_records = 5000;
    f->series_limit = 100000;
    f->timeout_ms = 10000;
    f->max_backoff_ms = 30000;
    f->idle_ms = 200;
    f->lease_ttl_ms = 15000;
    ferry_strlcpy(f->precision, "ns", sizeof(f->precision));
    f->gzip = true;
    f->uint_as = INGEST_FORWARD_UINT_INTEGER;
}

static int parse_streams(const char *v, unsigned *mask)
{
    char tmp[64];
    if (ferry_strlcpy(tmp, v, sizeof(tmp)) >= sizeof(tmp))
        return -1;
    *mask = 0;
    char *save = NULL;
    for (char *t = strtok_r(tmp, ", ", &save); t != NULL; t = strtok_r(NULL, ", ", &save)) {
        enum record_stream st;
        if (record_stream_parse(t, &st) != 0)
            return -1;
        *mask |= 1u << st;
    }
    return *mask == 0 ? -1 : 0;
}

static int parse_bool(const char *v, bool *out)
{
    if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 ||
        strcmp(v, "1") == 0)
        *out = true;
    else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 || strcmp(v, "no") == 0 ||
             strcmp(v, "0") == 0)
        *out = false;
    else
        return -1;
    return 0;
}

static int set_key(struct ingest_forward_config *f, const char *key, const char *v)
{
    int64_t ms;
    uint64_t n;
    if (strcmp(key, "type") == 0) {
        if (strcmp(v, "prometheus_remote_write") == 0 || strcmp(v, "prometheus") == 0)
            f->type = INGEST_FORWARD_PROM_RW;
        else if (strcmp(v, "influxdb") == 0)
            f->type = INGEST_FORWARD_INFLUXDB;
        else
            return -1;
        f->has_type = true;
        return 0;
    }
    if (strcmp(key, "url") == 0)
        return (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) ||
                       ferry_strlcpy(f->url, v, sizeof(f->url)) >= sizeof(f->url)
                   ? -1
                   : 0;
    if (strcmp(key, "devices") == 0)
        return ferry_strlcpy(f->devices, v, sizeof(f->devices)) >= sizeof(f->devices) ? -1 : 0;
    if (strcmp(key, "streams") == 0)
        return parse_streams(v, &f->streams_mask);
    if (strcmp(key, "batch_records") == 0) {
        if (ferry_parse_u64(v, 100000, &n) != 0 || n == 0)
            return -1;
        f->batch_records = (unsigned)n;
        return 0;
    }
    if (strcmp(key, "workers") == 0) {
        if (strcmp(v, "auto") == 0) {
            f->workers = 0;
            return 0;
        }
        if (ferry_parse_u64(v, INGEST_FORWARD_WORKERS_MAX, &n) != 0 || n == 0)
            return -1;
        f->workers = (unsigned)n;
        return 0;
    }
    if (strcmp(key, "series_limit") == 0) {
        if (ferry_parse_u64(v, 100000000, &n) != 0 || n == 0)
            return -1;
        f->series_limit = (unsigned)n;
        return 0;
    }
    if (strcmp(key, "timeout") == 0 || strcmp(key, "max_backoff") == 0 ||
        strcmp(key, "idle") == 0) {
        if (ferry_parse_duration_ms(v, &ms) != 0 || ms < 1 || ms > 3600 * 1000)
            return -1;
        if (key[0] == 't')
            f->timeout_ms = ms;
        else if (key[0] == 'm')
            f->max_backoff_ms = ms;
        else
            f->idle_ms = ms;
        return 0;
    }
    if (strcmp(key, "lease_ttl") == 0) {
        /* at least 1 s: it is renewed every third of it, by a statement that may take a while */
        if (ferry_parse_duration_ms(v, &ms) != 0 || ms < 1000 || ms > 3600 * 1000)
            return -1;
        f->lease_ttl_ms = ms;
        return 0;
    }
    if (strcmp(key, "precision") == 0) {
        if (strcmp(v, "ns") != 0 && strcmp(v, "us") != 0 && strcmp(v, "ms") != 0 &&
            strcmp(v, "s") != 0)
            return -1;
        ferry_strlcpy(f->precision, v, sizeof(f->precision));
        return 0;
    }
    if (strcmp(key, "gzip") == 0)
        return parse_bool(v, &f->gzip);
    if (strcmp(key, "uint") == 0) {
        if (strcmp(v, "integer") == 0)
            f->uint_as = INGEST_FORWARD_UINT_INTEGER;
        else if (strcmp(v, "unsigned") == 0)
            f->uint_as = INGEST_FORWARD_UINT_UNSIGNED;
        else
            return -1;
        return 0;
    }
    return -2;
}

int ingest_forward_config_set(struct ingest_forward_set *set, const char *name, const char *key,
                              const char *value, char *err, size_t err_len)
{
    if (!name_valid(name)) {
        snprintf(err, err_len, "forward.%s: a forwarder name is 1..%d of [A-Za-z0-9_-]", name,
                 INGEST_FORWARD_NAME_MAX);
        return -1;
    }
    struct ingest_forward_config *f = NULL;
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->f[i].name, name) == 0)
            f = &set->f[i];
    if (f == NULL) {
        if (set->n == INGEST_FORWARD_MAX) {
            snprintf(err, err_len, "forward.%s: at most %d forwarders", name, INGEST_FORWARD_MAX);
            return -1;
        }
        f = &set->f[set->n++];
        defaults(f, name);
    }
    int rc = set_key(f, key, value);
    if (rc == -2) {
        snprintf(err, err_len, "unknown configuration key \"forward.%s.%s\"", name, key);
        return -1;
    }
    if (rc != 0) {
        snprintf(err, err_len, "forward.%s.%s: invalid value \"%s\"", name, key, value);
        return -1;
    }
    return 0;
}

int ingest_forward_config_check(const struct ingest_forward_set *set, char *err, size_t err_len)
{
    for (size_t i = 0; i < set->n; i++) {
        const struct ingest_forward_config *f = &set->f[i];
        if (!f->has_type || f->url[0] == '\0') {
            snprintf(err, err_len, "forward.%s: needs type and url", f->name);
            return -1;
        }
        if (f->type == INGEST_FORWARD_PROM_RW && (f->streams_mask & (1u << RECORD_LOG)) != 0) {
            snprintf(err, err_len,
                     "forward.%s: prometheus_remote_write carries numbers: streams metric,event",
                     f->name);
            return -1;
        }
    }
    return 0;
}
