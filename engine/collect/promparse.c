/*
 * promparse.c - the Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 into metric
 * records, named as Telegraf's prometheus input (metric_version = 1) names them.
 *
 * Mapping (docs/configuration.md, "[input.prometheus.NAME]"):
 *   counter    measurement = sample name, field "counter"
 *   gauge      measurement = sample name, field "gauge"
 *   untyped    measurement = sample name, field "value"  (also unknown, info, stateset)
 *   histogram  measurement = family name, fields "count", "sum" and one per bucket named by its
 *              le bound ("0.5", "+Inf"); the samples of one label set make one record
 *   summary    measurement = family name, fields "count", "sum" and one per quantile ("0.99")
 * Labels become tags (le and quantile excepted). A sample's own timestamp (milliseconds in
 * 0.0.4, seconds in OpenMetrics) is used when present, else the scrape's time.
 *
 * Parsing is line by line with every length checked against the line; a line that does not
 * parse is counted and skipped (the rest of the exposition still counts). NaN values are kept
 * as floats; names longer than RECORD_MAX_KEY_LEN and records over the record limits are
 * skipped and counted.
 */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/collect/collect.h"

#define MAX_LABELS 32
#define MAX_FAMILIES 4096
#define MAX_GROUPS 1024

enum fam_type { F_UNTYPED, F_COUNTER, F_GAUGE, F_HISTOGRAM, F_SUMMARY };

struct family {
    char name[256];
    enum fam_type type;
};

struct label {
    const char *key;
    size_t key_len;
    char *value; /* unescaped, owned by the parse (in the value arena) */
    size_t value_len;
};

/* One histogram or summary record being assembled: family + label set. */
struct group {
    char *key; /* family \0 labels text, owned */
    size_t key_len;
    struct collect_rec rec;
    char *strings; /* owned copies of everything rec points to */
    size_t strings_len, strings_cap;
    char **field_names;
    size_t n_field_names;
    int64_t ts;
    bool full;
};

struct parse {
    struct family *fams;
    size_t n_fams, cap_fams;
    struct group *groups; /* grown by realloc: a group's record is re-pointed before use */
    size_t n_groups, cap_groups;
    int64_t now_ns;
    bool openmetrics;
    struct prom_stats *stats;
};

static const struct family *find_family(const struct parse *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->n_fams; i++)
        if (strlen(p->fams[i].name) == len && memcmp(p->fams[i].name, name, len) == 0)
            return &p->fams[i];
    return NULL;
}

static bool name_char(char c, bool first)
{
    return isalpha((unsigned char)c) || c == '_' || c == ':' ||
           (!first && isdigit((unsigned char)c));
}

/* "# TYPE name type" */
static void parse_type(struct parse *p, const char *s, const char *end)
{
    const char *n = s;
    while (n < end && name_char(*n, n == s))
        n++;
    size_t nlen = (size_t)(n - s);
    if (!nlen || nlen >= sizeof p->fams[0].name || p->n_fams == MAX_FAMILIES)
        return;
    if (p->n_fams == p->cap_fams) {
        size_t cap = p->cap_fams ? p->cap_fams * 2 : 16;
        struct family *f = realloc(p->fams, cap * sizeof *f);
        if (!f)
            return; /* the family stays untyped */
        p->fams = f;
        p->cap_fams = cap;
    }
    while (n < end && *n == ' ')
        n++;
    size_t tlen = (size_t)(end - n);
    enum fam_type t = F_UNTYPED;
    if (tlen == 7 && memcmp(n, "counter", 7) == 0)
        t = F_COUNTER;
    else if (tlen == 5 && memcmp(n, "gauge", 5) == 0)
        t = F_GAUGE;
    else if (tlen == 9 && memcmp(n, "histogram", 9) == 0)
        t = F_HISTOGRAM;
    else if (tlen == 14 && memcmp(n, "gaugehistogram", 14) == 0)
        t = F_HISTOGRAM;
    else if (tlen == 7 && memcmp(n, "summary", 7) == 0)
        t = F_SUMMARY;
    struct family *f = &p->fams[p->n_fams++];
    memcpy(f->name, s, nlen);
    f->name[nlen] = 0;
    f->type = t;
}

/* A float in the exposition's spelling: Go's ParseFloat plus +Inf, -Inf, NaN. */
static int parse_value(const char *s, size_t len, double *out)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    if (strcmp(buf, "+Inf") == 0 || strcmp(buf, "Inf") == 0) {
        *out = INFINITY;
        return 0;
    }
    if (strcmp(buf, "-Inf") == 0) {
        *out = -INFINITY;
        return 0;
    }
    if (strcmp(buf, "NaN") == 0) {
        *out = NAN;
        return 0;
    }
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)buf[i]) && !strchr("+-.eE_", buf[i]))
            return -1;
    char *end;
    *out = strtod(buf, &end);
    return *end ? -1 : 0;
}

/* A sample timestamp: 0.0.4 integer milliseconds, OpenMetrics seconds with an optional fraction,
 * into nanoseconds without going through a double (which would lose the last digits). */
static int parse_ts(const char *s, size_t len, bool seconds, int64_t *out)
{
    bool neg = len && s[0] == '-';
    size_t i = neg ? 1 : 0;
    int64_t whole = 0, frac_ns = 0;
    if (i == len)
        return -1;
    for (; i < len && s[i] != '.'; i++) {
        if (!isdigit((unsigned char)s[i]) || whole > INT64_MAX / 10 - 10)
            return -1;
        whole = whole * 10 + (s[i] - '0');
    }
    if (i < len) { /* a fraction: seconds only */
        if (!seconds)
            return -1;
        int64_t scale = 100000000;
        for (i++; i < len; i++) {
            if (!isdigit((unsigned char)s[i]))
                return -1;
            frac_ns += (s[i] - '0') * scale;
            scale /= 10;
        }
    }
    int64_t mult = seconds ? 1000000000 : 1000000;
    if (whole > INT64_MAX / mult - 1)
        return -1;
    int64_t ns = whole * mult + frac_ns;
    *out = neg ? -ns : ns;
    return 0;
}

/* Labels "{a="x",b="y"}" from s; unescaped values appended to arena. Returns the position after
 * '}' or NULL. */
static const char *parse_labels(const char *s, const char *end, struct label *labels,
                                size_t *n_labels, char *arena, size_t *arena_used)
{
    *n_labels = 0;
    s++; /* '{' */
    for (;;) {
        while (s < end && (*s == ' ' || *s == ','))
            s++;
        if (s < end && *s == '}')
            return s + 1;
        const char *k = s;
        while (s < end && name_char(*s, s == k))
            s++;
        if (s == k || *n_labels == MAX_LABELS)
            return NULL;
        struct label *l = &labels[(*n_labels)++];
        l->key = k;
        l->key_len = (size_t)(s - k);
        while (s < end && *s == ' ')
            s++;
        if (s + 1 >= end || *s != '=' || s[1] != '"')
            return NULL;
        s += 2;
        l->value = arena + *arena_used;
        size_t n = 0;
        while (s < end && *s != '"') {
            char c = *s++;
            if (c == '\\' && s < end) {
                c = *s++;
                if (c == 'n')
                    c = '\n';
            }
            l->value[n++] = c; /* the arena is as long as the line: no overflow */
        }
        if (s >= end)
            return NULL;
        s++; /* closing quote */
        l->value_len = n;
        l->value[n] = 0;
        *arena_used += n + 1;
    }
}

static bool has_suffix(const char *name, size_t len, const char *suf, size_t *base_len)
{
    size_t sl = strlen(suf);
    if (len <= sl || memcmp(name + len - sl, suf, sl) != 0)
        return false;
    *base_len = len - sl;
    return true;
}

/* Copies s into the group's own strings (kept until the record is emitted). */
static const char *keep(struct group *g, const char *s, size_t n)
{
    if (g->strings_len + n + 1 > g->strings_cap)
        return NULL; /* sized once for the worst case; see new_group */
    char *d = g->strings + g->strings_len;
    memcpy(d, s, n);
    d[n] = 0;
    g->strings_len += n + 1;
    return d;
}

#define GROUP_STRINGS 16384

static struct group *find_group(struct parse *p, const char *fam, size_t fam_len,
                                const struct label *labels, size_t n_labels, int64_t ts)
{
    /* The key: family, then every label but le/quantile, in the order given. */
    char key[4096];
    size_t kl = 0;
    if (fam_len >= sizeof key)
        return NULL;
    memcpy(key, fam, fam_len);
    kl = fam_len;
    key[kl++] = 0;
    for (size_t i = 0; i < n_labels; i++) {
        const struct label *l = &labels[i];
        if ((l->key_len == 2 && memcmp(l->key, "le", 2) == 0) ||
            (l->key_len == 8 && memcmp(l->key, "quantile", 8) == 0))
            continue;
        if (kl + l->key_len + l->value_len + 2 > sizeof key)
            return NULL;
        memcpy(key + kl, l->key, l->key_len);
        kl += l->key_len;
        key[kl++] = '=';
        memcpy(key + kl, l->value, l->value_len);
        kl += l->value_len;
        key[kl++] = ',';
    }
    for (size_t i = 0; i < p->n_groups; i++)
        if (p->groups[i].key_len == kl && memcmp(p->groups[i].key, key, kl) == 0)
            return &p->groups[i];
    if (p->n_groups == MAX_GROUPS)
        return NULL;
    if (p->n_groups == p->cap_groups) {
        size_t cap = p->cap_groups ? p->cap_groups * 2 : 4;
        struct group *ng = realloc(p->groups, cap * sizeof *ng);
        if (!ng)
            return NULL;
        p->groups = ng;
        p->cap_groups = cap;
    }
    struct group *g = &p->groups[p->n_groups];
    memset(g, 0, sizeof *g);
    g->key = malloc(kl);
    g->strings = malloc(GROUP_STRINGS);
    if (!g->key || !g->strings) {
        free(g->key);
        free(g->strings);
        return NULL;
    }
    memcpy(g->key, key, kl);
    g->key_len = kl;
    g->strings_cap = GROUP_STRINGS;
    g->ts = ts;
    const char *m = keep(g, fam, fam_len);
    if (!m) {
        free(g->key);
        free(g->strings);
        return NULL;
    }
    collect_rec_begin(&g->rec, m, ts);
    for (size_t i = 0; i < n_labels; i++) {
        const struct label *l = &labels[i];
        if ((l->key_len == 2 && memcmp(l->key, "le", 2) == 0) ||
            (l->key_len == 8 && memcmp(l->key, "quantile", 8) == 0))
            continue;
        if (g->rec.r.n_tags == COLLECT_MAX_TAGS)
            break;
        const char *k = keep(g, l->key, l->key_len), *v = keep(g, l->value, l->value_len);
        if (k && v)
            collect_tag(&g->rec, k, v);
    }
    p->n_groups++;
    return g;
}

static void group_field(struct group *g, const char *name, size_t len, double v)
{
    if (g->rec.r.n_fields == COLLECT_MAX_FIELDS) {
        g->full = true;
        return;
    }
    for (size_t i = 0; i < g->rec.r.n_fields; i++)
        if (g->rec.fields[i].key.len == len && memcmp(g->rec.fields[i].key.ptr, name, len) == 0)
            return; /* a repeated sample: the first wins */
    const char *k = keep(g, name, len);
    if (k)
        collect_float(&g->rec, k, v);
}

static int emit_simple(struct parse *p, const char *name, size_t nlen, const struct label *labels,
                       size_t n_labels, const char *field, double v, int64_t ts,
                       struct collect_out *out)
{
    char m[RECORD_MAX_KEY_LEN + 1];
    if (nlen > RECORD_MAX_KEY_LEN)
        return 1;
    memcpy(m, name, nlen);
    m[nlen] = 0;
    struct collect_rec rec;
    collect_rec_begin(&rec, m, ts);
    char keys[MAX_LABELS][256];
    for (size_t i = 0; i < n_labels && rec.r.n_tags < COLLECT_MAX_TAGS; i++) {
        if (labels[i].key_len >= sizeof keys[0])
            return 1;
        memcpy(keys[i], labels[i].key, labels[i].key_len);
        keys[i][labels[i].key_len] = 0;
        collect_tag(&rec, keys[i], labels[i].value);
    }
    collect_float(&rec, field, v);
    int rc = collect_emit(out, &rec);
    return rc == COLLECT_ENOMEM ? rc : rc != 0 ? 1 : 0;
}

/* One sample line. Returns 0, 1 (skipped, counted) or COLLECT_ENOMEM. */
static int parse_sample(struct parse *p, const char *s, const char *end, char *arena,
                        struct collect_out *out)
{
    const char *n = s;
    while (n < end && name_char(*n, n == s))
        n++;
    size_t nlen = (size_t)(n - s);
    if (!nlen)
        return 1;
    struct label labels[MAX_LABELS];
    size_t n_labels = 0, arena_used = 0;
    const char *q = n;
    if (q < end && *q == '{') {
        q = parse_labels(q, end, labels, &n_labels, arena, &arena_used);
        if (!q)
            return 1;
    }
    while (q < end && *q == ' ')
        q++;
    const char *v = q;
    while (q < end && *q != ' ')
        q++;
    double value;
    if (parse_value(v, (size_t)(q - v), &value) != 0)
        return 1;
    while (q < end && *q == ' ')
        q++;
    int64_t ts = p->now_ns;
    if (q < end) {
        const char *te = q;
        while (te < end && *te != ' ' && *te != '#')
            te++;
        if (parse_ts(q, (size_t)(te - q), p->openmetrics, &ts) != 0)
            return 1;
    }
    size_t base = nlen;
    const struct family *f = find_family(p, s, nlen);
    const char *suffix = NULL;
    if (!f) {
        static const char *const sufs[] = {"_bucket",  "_count",  "_sum", "_total",
                                           "_created", "_gcount", "_gsum"};
        for (size_t i = 0; i < sizeof sufs / sizeof sufs[0] && !f; i++)
            if (has_suffix(s, nlen, sufs[i], &base) && (f = find_family(p, s, base)) != NULL)
                suffix = sufs[i];
    }
    enum fam_type type = f ? f->type : F_UNTYPED;
    if (suffix && strcmp(suffix, "_created") == 0)
        return 1; /* OpenMetrics creation times are not samples */
    if (type == F_HISTOGRAM || type == F_SUMMARY) {
        struct group *g = find_group(p, s, base, labels, n_labels, ts);
        if (!g)
            return 1;
        if (suffix && (strcmp(suffix, "_count") == 0 || strcmp(suffix, "_gcount") == 0))
            group_field(g, "count", 5, value);
        else if (suffix && (strcmp(suffix, "_sum") == 0 || strcmp(suffix, "_gsum") == 0))
            group_field(g, "sum", 3, value);
        else {
            const char *bound = type == F_HISTOGRAM ? "le" : "quantile";
            for (size_t i = 0; i < n_labels; i++)
                if (labels[i].key_len == strlen(bound) &&
                    memcmp(labels[i].key, bound, labels[i].key_len) == 0) {
                    group_field(g, labels[i].value, labels[i].value_len, value);
                    return 0;
                }
            return 1;
        }
        return 0;
    }
    const char *field = type == F_COUNTER ? "counter" : type == F_GAUGE ? "gauge" : "value";
    return emit_simple(p, s, nlen, labels, n_labels, field, value, ts, out);
}

int prom_parse(const char *text, size_t len, bool openmetrics, int64_t now_ns,
               struct collect_out *out, struct prom_stats *stats)
{
    struct parse p;
    memset(&p, 0, sizeof p);
    memset(stats, 0, sizeof *stats);
    p.now_ns = now_ns;
    p.openmetrics = openmetrics;
    p.stats = stats;
    char *arena = NULL;
    size_t arena_cap = 0;
    int rc = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        while (ll && (line[ll - 1] == '\r' || line[ll - 1] == ' '))
            ll--;
        const char *end = line + ll;
        while (line < end && (*line == ' ' || *line == '\t'))
            line++;
        if (line == end)
            continue;
        stats->lines++;
        if (*line == '#') {
            if (end - line > 7 && memcmp(line, "# TYPE ", 7) == 0)
                parse_type(&p, line + 7, end);
            else if (end - line == 5 && memcmp(line, "# EOF", 5) == 0)
                break;
            continue;
        }
        if (ll + 1 > arena_cap) {
            free(arena);
            arena_cap = ll + 1 > 4096 ? ll + 1 : 4096;
            arena = malloc(arena_cap);
            if (!arena) {
                rc = COLLECT_ENOMEM;
                goto out;
            }
        }
        int r = parse_sample(&p, line, end, arena, out);
        if (r == COLLECT_ENOMEM) {
            rc = r;
            goto out;
        }
        if (r != 0)
            stats->skipped++;
        else
            stats->samples++;
    }
    for (size_t i = 0; i < p.n_groups; i++) {
        struct collect_rec *rec = &p.groups[i].rec;
        rec->r.tags = rec->tags; /* the array moved with the group (realloc) */
        rec->r.fields = rec->fields;
        int r = collect_emit(out, rec);
        if (r == COLLECT_ENOMEM) {
            rc = r;
            goto out;
        }
        if (r != 0 || p.groups[i].full)
            stats->skipped++;
    }
out:
    for (size_t i = 0; p.groups && i < p.n_groups; i++) {
        free(p.groups[i].key);
        free(p.groups[i].strings);
    }
    free(p.groups);
    free(p.fams);
    free(arena);
    return rc;
}
