/*
 * flaky_profile.c - profile INI parsing with inih (see flaky_profile.h for the format).
 *
 * inih calls handler() once per key; a handler that returns 0 makes ini_parse_string() report
 * that line, and the handler leaves the key and the reason in the parse state, so every error
 * reads "file:line: section.key: reason" without us tracking lines ourselves.
 */
#include "simulators/flaky/flaky_profile.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* Profiles are a few hundred bytes; anything this large is not a profile. */
#define FLAKY_PROFILE_MAX_BYTES (64 * 1024)

const char *flaky_strerror(int err)
{
    switch (err) {
    case FLAKY_OK: return "ok";
    case FLAKY_ERR_NOMEM: return "out of memory";
    case FLAKY_ERR_IO: return "i/o error";
    case FLAKY_ERR_PARSE: return "malformed profile";
    case FLAKY_ERR_INVALID: return "invalid argument";
    case FLAKY_ERR_SOCKET: return "socket error";
    case FLAKY_ERR_EVENT: return "libevent error";
    default: return "unknown error";
    }
}

void flaky_profile_defaults(struct flaky_profile *p)
{
    memset(p, 0, sizeof *p);
    ferry_strlcpy(p->name, "none", sizeof p->name);
    p->stall_mean_ms = 1000;
    p->down_existing = FLAKY_DOWN_STALL;
    p->down_new = FLAKY_DOWN_HOLD;
}

/* Parses a non-negative decimal prefix; *end points after it. */
static int parse_decimal(const char *s, double *out, const char **end)
{
    if (!s || !(isdigit((unsigned char)*s) || *s == '.'))
        return -1;
    errno = 0;
    char *e;
    double v = strtod(s, &e);
    if (errno || e == s || !isfinite(v) || v < 0)
        return -1;
    *out = v;
    *end = e;
    return 0;
}

int flaky_parse_duration_us(const char *s, int64_t *out_us)
{
    double v;
    const char *unit;
    if (parse_decimal(s, &v, &unit) < 0)
        return -1;
    double mult;
    if (strcmp(unit, "us") == 0)
        mult = 1;
    else if (strcmp(unit, "ms") == 0)
        mult = 1e3;
    else if (*unit == 0 || strcmp(unit, "s") == 0)
        mult = 1e6;
    else if (strcmp(unit, "m") == 0 || strcmp(unit, "min") == 0)
        mult = 60e6;
    else if (strcmp(unit, "h") == 0)
        mult = 3600e6;
    else
        return -1;
    double us = v * mult;
    if (us > 1e15) /* about 31 years: nothing sensible is longer */
        return -1;
    *out_us = (int64_t)llround(us);
    return 0;
}

int flaky_parse_bandwidth_bps(const char *s, uint64_t *out_bps)
{
    if (s && strcmp(s, "unlimited") == 0) {
        *out_bps = 0;
        return 0;
    }
    double v;
    const char *unit;
    if (parse_decimal(s, &v, &unit) < 0)
        return -1;
    double mult;
    if (*unit == 0 && v == 0)
        mult = 1;
    else if (strcmp(unit, "bit") == 0 || strcmp(unit, "bps") == 0)
        mult = 1;
    else if (strcmp(unit, "kbit") == 0 || strcmp(unit, "kbps") == 0)
        mult = 1e3;
    else if (strcmp(unit, "Mbit") == 0 || strcmp(unit, "Mbps") == 0)
        mult = 1e6;
    else if (strcmp(unit, "Gbit") == 0 || strcmp(unit, "Gbps") == 0)
        mult = 1e9;
    else
        return -1;
    double bps = v * mult;
    if (bps > 1e12 || (bps > 0 && bps < 8))
        return -1; /* below one byte per second a token bucket never fills a packet */
    *out_bps = (uint64_t)llround(bps);
    return 0;
}

int flaky_parse_probability(const char *s, double *out)
{
    double v;
    const char *rest;
    if (parse_decimal(s, &v, &rest) < 0)
        return -1;
    if (strcmp(rest, "%") == 0)
        v /= 100.0;
    else if (*rest != 0)
        return -1;
    if (v > 1)
        return -1;
    *out = v;
    return 0;
}

int flaky_parse_rate(const char *s, double *out)
{
    double v;
    const char *rest;
    if (parse_decimal(s, &v, &rest) < 0 || *rest != 0 || v > 1e9)
        return -1;
    *out = v;
    return 0;
}

struct parse_state {
    struct flaky_profile *p;
    char key[96];
    const char *why;
};

static int fail(struct parse_state *st, const char *section, const char *name, const char *why)
{
    /* Keep only the first error: inih goes on parsing and reports the first failing line. */
    if (!st->why) {
        snprintf(st->key, sizeof st->key, "%s%s%s", section, *section ? "." : "", name);
        st->why = why;
    }
    return 0;
}

static int set_direction(struct parse_state *st, struct flaky_direction *d, const char *section,
                         const char *name, const char *value)
{
    if (strcmp(name, "latency") == 0) {
        if (flaky_parse_duration_us(value, &d->latency_us) < 0)
            return fail(st, section, name, "expected a duration such as 35ms");
    } else if (strcmp(name, "jitter") == 0) {
        if (flaky_parse_duration_us(value, &d->jitter_us) < 0)
            return fail(st, section, name, "expected a duration such as 10ms");
    } else if (strcmp(name, "bandwidth") == 0) {
        if (flaky_parse_bandwidth_bps(value, &d->bandwidth_bps) < 0)
            return fail(st, section, name, "expected a rate such as 750kbit or 12Mbit");
    } else if (strcmp(name, "aggregate_bandwidth") == 0) {
        if (flaky_parse_bandwidth_bps(value, &d->aggregate_bandwidth_bps) < 0)
            return fail(st, section, name, "expected a rate such as 750kbit or 12Mbit");
    } else if (strcmp(name, "burst") == 0) {
        uint64_t v;
        if (ferry_parse_size(value, &v) < 0 || v > (64u << 20))
            return fail(st, section, name, "expected a size in bytes up to 64MiB");
        d->burst_bytes = v;
    } else {
        return fail(st, section, name, "unknown key");
    }
    return 1;
}

static int set_prob(struct parse_state *st, double *dst, const char *section, const char *name,
                    const char *value)
{
    if (flaky_parse_probability(value, dst) < 0)
        return fail(st, section, name, "expected a probability between 0 and 1 (or 0%..100%)");
    return 1;
}

static int set_rate(struct parse_state *st, double *dst, const char *section, const char *name,
                    const char *value)
{
    if (flaky_parse_rate(value, dst) < 0)
        return fail(st, section, name, "expected a non-negative rate such as 0.01");
    return 1;
}

static int set_ms(struct parse_state *st, int64_t *dst, const char *section, const char *name,
                  const char *value)
{
    int64_t us;
    if (flaky_parse_duration_us(value, &us) < 0)
        return fail(st, section, name, "expected a duration such as 30s or 5m");
    *dst = us / 1000;
    return 1;
}

static int set_faults(struct parse_state *st, const char *section, const char *name,
                      const char *value)
{
    struct flaky_profile *p = st->p;
    if (strcmp(name, "reset_per_second") == 0)
        return set_rate(st, &p->reset_per_second, section, name, value);
    if (strcmp(name, "reset_per_mb") == 0)
        return set_rate(st, &p->reset_per_mb, section, name, value);
    if (strcmp(name, "stall_per_second") == 0)
        return set_rate(st, &p->stall_per_second, section, name, value);
    if (strcmp(name, "stall_mean") == 0)
        return set_ms(st, &p->stall_mean_ms, section, name, value);
    if (strcmp(name, "half_open_per_second") == 0)
        return set_rate(st, &p->half_open_per_second, section, name, value);
    if (strcmp(name, "corrupt_per_byte") == 0)
        return set_prob(st, &p->corrupt_per_byte, section, name, value);
    if (strcmp(name, "blackhole_probability") == 0)
        return set_prob(st, &p->blackhole_probability, section, name, value);
    if (strcmp(name, "refuse_probability") == 0)
        return set_prob(st, &p->refuse_probability, section, name, value);
    return fail(st, section, name, "unknown key");
}

static int set_schedule(struct parse_state *st, const char *section, const char *name,
                        const char *value)
{
    struct flaky_profile *p = st->p;
    if (strcmp(name, "up_mean") == 0)
        return set_ms(st, &p->up_mean_ms, section, name, value);
    if (strcmp(name, "down_mean") == 0)
        return set_ms(st, &p->down_mean_ms, section, name, value);
    if (strcmp(name, "down_existing") == 0) {
        if (strcmp(value, "stall") == 0)
            p->down_existing = FLAKY_DOWN_STALL;
        else if (strcmp(value, "reset") == 0)
            p->down_existing = FLAKY_DOWN_RESET;
        else
            return fail(st, section, name, "expected stall or reset");
        return 1;
    }
    if (strcmp(name, "down_new") == 0) {
        if (strcmp(value, "hold") == 0)
            p->down_new = FLAKY_DOWN_HOLD;
        else if (strcmp(value, "refuse") == 0)
            p->down_new = FLAKY_DOWN_REFUSE;
        else
            return fail(st, section, name, "expected hold or refuse");
        return 1;
    }
    return fail(st, section, name, "unknown key");
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct parse_state *st = user;
    struct flaky_profile *p = st->p;
    if (strcmp(section, "profile") == 0) {
        if (strcmp(name, "name") == 0) {
            if (!*value || strlen(value) >= sizeof p->name)
                return fail(st, section, name, "expected a name of 1..63 characters");
            ferry_strlcpy(p->name, value, sizeof p->name);
            return 1;
        }
        if (strcmp(name, "description") == 0) {
            ferry_strlcpy(p->description, value, sizeof p->description);
            return 1;
        }
        return fail(st, section, name, "unknown key");
    }
    if (strcmp(section, "up") == 0)
        return set_direction(st, &p->up, section, name, value);
    if (strcmp(section, "down") == 0)
        return set_direction(st, &p->down, section, name, value);
    if (strcmp(section, "faults") == 0)
        return set_faults(st, section, name, value);
    if (strcmp(section, "schedule") == 0)
        return set_schedule(st, section, name, value);
    return fail(st, section, name, *section ? "unknown section" : "key outside any section");
}

int flaky_profile_parse_string(const char *text, const char *label, struct flaky_profile *out,
                               char *err, size_t err_len)
{
    struct flaky_profile p;
    flaky_profile_defaults(&p);
    p.name[0] = 0;
    struct parse_state st = {.p = &p};
    int line = ini_parse_string(text, handler, &st);
    if (line != 0) {
        if (line < 0)
            snprintf(err, err_len, "%s: cannot parse (inih error %d)", label, line);
        else if (st.why)
            snprintf(err, err_len, "%s:%d: %s: %s", label, line, st.key, st.why);
        else
            snprintf(err, err_len, "%s:%d: syntax error (expected [section] or key = value)", label,
                     line);
        return FLAKY_ERR_PARSE;
    }
    if (p.stall_per_second > 0 && p.stall_mean_ms <= 0) {
        snprintf(err, err_len, "%s: faults.stall_mean: must be above 0 when stalls are enabled",
                 label);
        return FLAKY_ERR_PARSE;
    }
    if ((p.up_mean_ms > 0) != (p.down_mean_ms > 0)) {
        snprintf(err, err_len, "%s: schedule: up_mean and down_mean must both be set or both 0",
                 label);
        return FLAKY_ERR_PARSE;
    }
    *out = p;
    return FLAKY_OK;
}

int flaky_profile_load(const char *path, struct flaky_profile *out, char *err, size_t err_len)
{
    uint8_t *text = NULL;
    size_t len = 0;
    int rc = ferry_read_file(path, FLAKY_PROFILE_MAX_BYTES, &text, &len);
    if (rc < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(-rc));
        return FLAKY_ERR_IO;
    }
    if (memchr(text, 0, len)) {
        snprintf(err, err_len, "%s: contains a NUL byte, not a profile", path);
        free(text);
        return FLAKY_ERR_PARSE;
    }
    rc = flaky_profile_parse_string((const char *)text, path, out, err, err_len);
    free(text);
    if (rc < 0)
        return rc;
    if (!out->name[0]) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        size_t n = strlen(base);
        if (n > 4 && strcmp(base + n - 4, ".ini") == 0)
            n -= 4;
        if (n >= sizeof out->name)
            n = sizeof out->name - 1;
        memcpy(out->name, base, n);
        out->name[n] = 0;
    }
    return FLAKY_OK;
}

int flaky_profile_resolve(const char *name_or_path, const char *dir, char *out, size_t out_len)
{
    size_t n = strlen(name_or_path);
    if (n == 0)
        return FLAKY_ERR_INVALID;
    int is_path =
        strchr(name_or_path, '/') != NULL || (n > 4 && strcmp(name_or_path + n - 4, ".ini") == 0);
    int w;
    if (is_path) {
        w = snprintf(out, out_len, "%s", name_or_path);
    } else {
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)name_or_path[i];
            if (!isalnum(c) && c != '.' && c != '_' && c != '-')
                return FLAKY_ERR_INVALID;
        }
        w = snprintf(out, out_len, "%s/%s.ini", dir, name_or_path);
    }
    if (w < 0 || (size_t)w >= out_len)
        return FLAKY_ERR_INVALID;
    return FLAKY_OK;
}
