/*
 * gate.c - health gates on local metrics (see gate.h).
 */
#include "engine/ota/gate.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static const char *const op_names[] = {">=", ">", "<=", "<"};

static const char *skip_space(const char *p, const char *end)
{
    while (p < end && isspace((unsigned char)*p))
        p++;
    return p;
}

/* A character a gate's MEASUREMENT.FIELD cannot hold: line protocol separators (space, comma,
 * '='), quotes, backslashes and control characters. A name with one is a typo (an operator
 * written "=>" leaves '=' in the name) that would never match a metric and roll back every
 * update, so it is refused when the configuration is read. */
static bool bad_name_char(unsigned char c)
{
    return c <= ' ' || c == 0x7f || c == ',' || c == '=' || c == '"' || c == '\\' || c == '!';
}

/* One gate in [p, end). *where is set to the offending character on failure. */
static int parse_one(const char *p, const char *end, struct ota_gate *g, char *err, size_t err_len,
                     const char **where)
{
    memset(g, 0, sizeof(*g));
    int len = (int)(end - p);
    p = skip_space(p, end);
    *where = p;
    /* MEASUREMENT.FIELD: up to the operator; the last '.' splits (measurements may hold dots). */
    const char *op = p;
    while (op < end && *op != '>' && *op != '<')
        op++;
    const char *name_end = op;
    while (name_end > p && isspace((unsigned char)name_end[-1]))
        name_end--;
    const char *dot = NULL;
    for (const char *q = p; q < name_end; q++)
        if (*q == '.')
            dot = q;
    if (op == end || !dot || dot == p || dot + 1 == name_end) {
        snprintf(err, err_len,
                 "health gate \"%.*s\": expected MEASUREMENT.FIELD OP NUMBER for DURATION", len,
                 end - len);
        return -1;
    }
    for (const char *q = p; q < name_end; q++) {
        if (!bad_name_char((unsigned char)*q))
            continue;
        *where = q;
        const char *after = skip_space(q, name_end);
        if ((*after == '=' || *after == '!') && after + 1 == name_end) {
            *where = after;
            snprintf(err, err_len,
                     "health gate \"%.*s\": unknown operator \"%c%c\" (expected >=, >, <= or <)",
                     len, end - len, *after, *op);
        } else if (isprint((unsigned char)*q))
            snprintf(err, err_len,
                     "health gate \"%.*s\": '%c' cannot be part of MEASUREMENT.FIELD (expected "
                     "MEASUREMENT.FIELD OP NUMBER for DURATION)",
                     len, end - len, *q);
        else
            snprintf(err, err_len,
                     "health gate \"%.*s\": byte 0x%02x cannot be part of MEASUREMENT.FIELD", len,
                     end - len, (unsigned char)*q);
        return -1;
    }
    if ((size_t)(dot - p) >= sizeof(g->measurement) ||
        (size_t)(name_end - dot - 1) >= sizeof(g->field)) {
        snprintf(err, err_len, "health gate \"%.*s\": name too long", len, end - len);
        return -1;
    }
    memcpy(g->measurement, p, (size_t)(dot - p));
    memcpy(g->field, dot + 1, (size_t)(name_end - dot - 1));
    if (op + 1 < end && op[1] == '=') {
        g->op = op[0] == '>' ? OTA_GATE_GE : OTA_GATE_LE;
        op += 2;
    } else {
        g->op = op[0] == '>' ? OTA_GATE_GT : OTA_GATE_LT;
        op += 1;
    }
    /* NUMBER */
    char num[64];
    const char *q = skip_space(op, end);
    *where = q;
    size_t k = 0;
    while (q < end && !isspace((unsigned char)*q) && k + 1 < sizeof(num))
        num[k++] = *q++;
    num[k] = '\0';
    char *nend;
    errno = 0;
    g->threshold = strtod(num, &nend);
    if (k == 0 || *nend || errno || !isfinite(g->threshold)) {
        snprintf(err, err_len, "health gate \"%.*s\": \"%s\" is not a number", len, end - len, num);
        return -1;
    }
    /* for DURATION */
    q = skip_space(q, end);
    *where = q;
    if (end - q < 4 || strncmp(q, "for", 3) != 0 || !isspace((unsigned char)q[3])) {
        snprintf(err, err_len, "health gate \"%.*s\": expected \"for DURATION\" after the number",
                 len, end - len);
        return -1;
    }
    q = skip_space(q + 3, end);
    *where = q;
    const char *dend = end;
    while (dend > q && isspace((unsigned char)dend[-1]))
        dend--;
    char dur[32];
    if (dend == q || (size_t)(dend - q) >= sizeof(dur)) {
        snprintf(err, err_len, "health gate \"%.*s\": missing duration", len, end - len);
        return -1;
    }
    memcpy(dur, q, (size_t)(dend - q));
    dur[dend - q] = '\0';
    if (ferry_parse_duration_ms(dur, &g->for_ms) != 0 || g->for_ms <= 0 ||
        g->for_ms > 24LL * 3600 * 1000) {
        snprintf(err, err_len, "health gate \"%.*s\": \"%s\" is not a duration from 1ms to 24h",
                 len, end - len, dur);
        return -1;
    }
    return 0;
}

int ota_gates_parse(const char *spec, struct ota_gate *out, size_t cap, size_t *n, char *err,
                    size_t err_len)
{
    return ota_gates_parse_at(spec, out, cap, n, err, err_len, NULL);
}

int ota_gates_parse_at(const char *spec, struct ota_gate *out, size_t cap, size_t *n, char *err,
                       size_t err_len, size_t *err_off)
{
    *n = 0;
    if (err_off)
        *err_off = 0;
    if (!spec)
        return 0;
    const char *p = spec;
    for (;;) {
        const char *end = strchr(p, ';');
        if (!end)
            end = p + strlen(p);
        const char *s = skip_space(p, end);
        if (s < end) {
            if (*n >= cap) {
                snprintf(err, err_len, "more than %zu health gates", cap);
                if (err_off)
                    *err_off = (size_t)(s - spec);
                return -1;
            }
            const char *where = s;
            if (parse_one(s, end, &out[*n], err, err_len, &where) != 0) {
                if (err_off)
                    *err_off = (size_t)(where - spec);
                return -1;
            }
            (*n)++;
        }
        if (!*end)
            break;
        p = end + 1;
    }
    return 0;
}

void ota_gates_reset(struct ota_gate *g, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        g[i].satisfied = false;
        g[i].ok_since_ms = 0;
        g[i].last_sample_ms = 0;
        g[i].last_value = 0;
        g[i].samples = 0;
    }
}

static bool holds(const struct ota_gate *g, double v)
{
    switch (g->op) {
    case OTA_GATE_GE: return v >= g->threshold;
    case OTA_GATE_GT: return v > g->threshold;
    case OTA_GATE_LE: return v <= g->threshold;
    case OTA_GATE_LT: return v < g->threshold;
    }
    return false;
}

static bool str_eq(struct record_str s, const char *z)
{
    size_t l = strlen(z);
    return s.len == l && memcmp(s.ptr, z, l) == 0;
}

void ota_gates_observe(struct ota_gate *g, size_t n, const struct record *r, int64_t now_ms)
{
    if (!r || r->stream != RECORD_METRIC)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!str_eq(r->name, g[i].measurement))
            continue;
        for (size_t f = 0; f < r->n_fields; f++) {
            const struct record_field *fd = &r->fields[f];
            if (!str_eq(fd->key, g[i].field))
                continue;
            double v;
            if (fd->type == RECORD_FIELD_BOOL)
                v = fd->v.b ? 1.0 : 0.0;
            else if (record_field_number(fd, &v) != 0)
                continue; /* a string never satisfies a numeric gate; ignore it */
            g[i].samples++;
            g[i].last_value = v;
            g[i].last_sample_ms = now_ms;
            if (!holds(&g[i], v) || isnan(v)) {
                g[i].satisfied = false;
            } else if (!g[i].satisfied) {
                g[i].satisfied = true;
                g[i].ok_since_ms = now_ms;
            }
        }
    }
}

bool ota_gate_passed(const struct ota_gate *g, int64_t now_ms)
{
    return g->satisfied && now_ms - g->ok_since_ms >= g->for_ms &&
           now_ms - g->last_sample_ms <= OTA_GATE_STALE_MS;
}

void ota_gate_describe(const struct ota_gate *g, int64_t now_ms, char *buf, size_t len)
{
    if (g->samples == 0)
        snprintf(buf, len, "%s.%s %s %g for %llds: no sample yet", g->measurement, g->field,
                 op_names[g->op], g->threshold, (long long)(g->for_ms / 1000));
    else
        snprintf(buf, len, "%s.%s %s %g for %llds: last value %g, %llds ago%s", g->measurement,
                 g->field, op_names[g->op], g->threshold, (long long)(g->for_ms / 1000),
                 g->last_value, (long long)((now_ms - g->last_sample_ms) / 1000),
                 g->satisfied ? "" : " (failing)");
}
