/*
 * lineproto.c - InfluxDB line protocol parser and formatter (grammar and limits in lineproto.h).
 *
 * The parser is a single forward scan over the input with one cursor: no per-line copies, no
 * regexes. Unescaped names and strings are written into one scratch buffer that is reset per
 * line; since unescaping never makes text longer, a scratch as long as the longest line is
 * enough and is allocated once per call. Quoted string field values may contain newlines (as in
 * InfluxDB), so "end of line" is decided by the scanner, not by a memchr for '\n' up front.
 */
#include "transport/lineproto.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/utf8.h"

int lineproto_precision_parse(const char *name, enum lineproto_precision *out)
{
    if (strcmp(name, "ns") == 0 || strcmp(name, "n") == 0)
        *out = LINEPROTO_NS;
    else if (strcmp(name, "us") == 0 || strcmp(name, "u") == 0)
        *out = LINEPROTO_US;
    else if (strcmp(name, "ms") == 0)
        *out = LINEPROTO_MS;
    else if (strcmp(name, "s") == 0)
        *out = LINEPROTO_S;
    else
        return -1;
    return 0;
}

const char *lineproto_strerror(int err)
{
    switch (err) {
    case LINEPROTO_OK: return "success";
    case LINEPROTO_ENOMEM: return "out of memory";
    case LINEPROTO_ESYNTAX: return "line protocol syntax error";
    case LINEPROTO_ELIMIT: return "line protocol limit exceeded";
    case LINEPROTO_ERANGE: return "number out of range";
    case LINEPROTO_ECALLBACK: return "stopped by callback";
    case LINEPROTO_EINVAL: return "record cannot be written as line protocol";
    case LINEPROTO_EENCODING: return "invalid UTF-8 or NUL byte";
    }
    return "unknown line protocol error";
}

/* Parser state for one call. */
struct lp {
    const char *text;
    size_t len;
    size_t pos;        /* cursor */
    size_t line_start; /* offset of the current line's first byte */
    size_t line_no;    /* 1-based */
    char *scratch;
    size_t scratch_len;
    size_t scratch_cap;
    int64_t ts_mult;
    struct record_tag tags[RECORD_MAX_TAGS];
    struct record_field fields[RECORD_MAX_FIELDS];
    struct lineproto_error *err;
};

static int lp_fail(struct lp *p, int code, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int lp_fail(struct lp *p, int code, size_t at, const char *fmt, ...)
{
    if (p->err) {
        va_list ap;
        p->err->line = p->line_no;
        p->err->column = at - p->line_start + 1;
        va_start(ap, fmt);
        vsnprintf(p->err->reason, sizeof p->err->reason, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int at_end(const struct lp *p)
{
    return p->pos >= p->len;
}

static char cur(const struct lp *p)
{
    return p->pos < p->len ? p->text[p->pos] : '\0';
}

/* The character at the cursor as a person may read it in an error message (utf8.h escapes). */
static const char *shown_char(const struct lp *p, char *out, size_t out_len)
{
    uint32_t cp;
    size_t k = p->pos < p->len ? ferry_utf8_next(p->text + p->pos, p->len - p->pos, &cp) : 0;
    return ferry_escape_str(out, out_len, p->text + p->pos, k);
}

/*
 * Refuses text that is not well-formed UTF-8 or holds a NUL (docs/wire-format.md "Text
 * encoding"): checks text[from, to), which lies within the current line or the lines a quoted
 * string carried it into, and reports the offending byte's own line and column.
 */
static int lp_check_encoding(struct lp *p, size_t from, size_t to)
{
    size_t bad = from + ferry_utf8_find_invalid(p->text + from, to - from, false);
    if (bad == to)
        return 0;
    size_t line_no = p->line_no, line_start = p->line_start;
    for (size_t i = p->line_start; i < bad; i++) {
        if (p->text[i] == '\n') {
            line_no++;
            line_start = i + 1;
        }
    }
    if (p->err) {
        uint32_t cp;
        size_t k = ferry_utf8_next(p->text + bad, to - bad, &cp);
        char shown[40];
        ferry_escape_str(shown, sizeof shown, p->text + bad, k);
        p->err->line = line_no;
        p->err->column = bad - line_start + 1;
        snprintf(p->err->reason, sizeof p->err->reason, "%s (%s)",
                 p->text[bad] == '\0' ? "NUL byte" : "invalid UTF-8", shown);
    }
    return LINEPROTO_EENCODING;
}

static int is_eol(char c)
{
    return c == '\n' || c == '\r';
}

/* What ends an identifier and what a backslash escapes in it (the grammar in lineproto.h). */
enum ident_kind {
    IDENT_MEASUREMENT, /* ends at ',' ' ' '\t'; escapes ',' ' ' */
    IDENT_TAG_VALUE,   /* ends at ',' ' ' '\t'; escapes ',' '=' ' ' */
    IDENT_KEY,         /* tag and field keys: end also at '='; escape ',' '=' ' ' */
};

static inline bool ident_stop(enum ident_kind kind, char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
           (c == '=' && kind == IDENT_KEY);
}

/* As in InfluxDB, a backslash escapes only these; "\\" in an identifier is two backslashes. */
static inline bool ident_escapes(enum ident_kind kind, char c)
{
    return c == ',' || c == ' ' || (c == '=' && kind != IDENT_MEASUREMENT);
}

/*
 * Reads an identifier (measurement, tag key/value, field key) up to an unescaped stop character
 * into the scratch buffer. A backslash before a character the kind escapes yields that
 * character; before anything else (a backslash included) it stays literal.
 */
static int lp_ident(struct lp *p, enum ident_kind kind, size_t max, const char *what,
                    struct record_str *out)
{
    size_t start = p->pos;
    char *dst = p->scratch + p->scratch_len;
    size_t n = 0;
    /* the scratch holds at most one line; bound this identifier by what is left of it */
    size_t room = p->scratch_cap - p->scratch_len - 1;
    while (p->pos < p->len) {
        char c = p->text[p->pos];
        if (ident_stop(kind, c))
            break;
        if (c == '\\' && p->pos + 1 < p->len && ident_escapes(kind, p->text[p->pos + 1])) {
            c = p->text[p->pos + 1];
            p->pos++;
        }
        if (n == max)
            return lp_fail(p, LINEPROTO_ELIMIT, start, "%s longer than %zu bytes", what, max);
        if (n == room)
            return lp_fail(p, LINEPROTO_ELIMIT, start, "line longer than %d bytes",
                           LINEPROTO_MAX_LINE);
        dst[n++] = c;
        p->pos++;
    }
    if (n == 0)
        return lp_fail(p, LINEPROTO_ESYNTAX, start, "empty %s", what);
    out->ptr = dst;
    out->len = n;
    p->scratch_len += n;
    return 0;
}

static int lp_string(struct lp *p, struct record_str *out)
{
    size_t start = p->pos;
    p->pos++; /* opening quote */
    char *dst = p->scratch + p->scratch_len;
    size_t n = 0;
    for (;;) {
        if (at_end(p))
            return lp_fail(p, LINEPROTO_ESYNTAX, start, "unterminated string value");
        char c = p->text[p->pos];
        if (c == '"')
            break;
        if (c == '\\' && p->pos + 1 < p->len &&
            (p->text[p->pos + 1] == '"' || p->text[p->pos + 1] == '\\')) {
            c = p->text[p->pos + 1];
            p->pos++;
        }
        if (n == RECORD_MAX_VALUE_LEN)
            return lp_fail(p, LINEPROTO_ELIMIT, start, "string value longer than %d bytes",
                           RECORD_MAX_VALUE_LEN);
        if (p->scratch_len + n + 1 >= p->scratch_cap)
            return lp_fail(p, LINEPROTO_ELIMIT, start, "line longer than %d bytes",
                           LINEPROTO_MAX_LINE);
        dst[n++] = c;
        p->pos++;
    }
    p->pos++; /* closing quote */
    out->ptr = n ? dst : "";
    out->len = n;
    p->scratch_len += n;
    return 0;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Accumulates decimal digits [s, e) into *out; returns -1 on overflow of uint64. */
static int digits_u64(const char *s, const char *e, uint64_t *out)
{
    uint64_t v = 0;
    for (; s < e; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Checks the float grammar: [+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)? */
static int float_syntax_ok(const char *s, size_t n)
{
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    while (i < n && is_digit(s[i]))
        i++, digits++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && is_digit(s[i]))
            i++, digits++;
    }
    if (digits == 0)
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t exp_digits = 0;
        while (i < n && is_digit(s[i]))
            i++, exp_digits++;
        if (exp_digits == 0)
            return 0;
    }
    return i == n;
}

static int lp_value(struct lp *p, struct record_field *f)
{
    if (cur(p) == '"') {
        f->type = RECORD_FIELD_STRING;
        return lp_string(p, &f->v.s);
    }
    size_t start = p->pos;
    while (!at_end(p) && !is_eol(cur(p)) && cur(p) != ',' && cur(p) != ' ' && cur(p) != '\t')
        p->pos++;
    const char *s = p->text + start;
    size_t n = p->pos - start;
    if (n == 0)
        return lp_fail(p, LINEPROTO_ESYNTAX, start, "missing field value");
    static const char *const trues[] = {"t", "T", "true", "True", "TRUE"};
    static const char *const falses[] = {"f", "F", "false", "False", "FALSE"};
    for (size_t i = 0; i < 5 && (s[0] == 't' || s[0] == 'T' || s[0] == 'f' || s[0] == 'F'); i++) {
        if (strlen(trues[i]) == n && memcmp(trues[i], s, n) == 0) {
            f->type = RECORD_FIELD_BOOL;
            f->v.b = true;
            return 0;
        }
        if (strlen(falses[i]) == n && memcmp(falses[i], s, n) == 0) {
            f->type = RECORD_FIELD_BOOL;
            f->v.b = false;
            return 0;
        }
    }
    char last = s[n - 1];
    if (last == 'i' || last == 'u') {
        const char *d = s, *e = s + n - 1;
        bool neg = false;
        if (d < e && (*d == '-' || *d == '+')) {
            neg = *d == '-';
            d++;
        }
        if (d == e)
            return lp_fail(p, LINEPROTO_ESYNTAX, start, "integer value without digits");
        for (const char *q = d; q < e; q++)
            if (!is_digit(*q))
                return lp_fail(p, LINEPROTO_ESYNTAX, start + (size_t)(q - s),
                               "invalid integer value: expected digit");
        uint64_t mag;
        if (digits_u64(d, e, &mag) < 0)
            return lp_fail(p, LINEPROTO_ERANGE, start, "integer value out of range");
        if (last == 'u') {
            if (neg && mag != 0)
                return lp_fail(p, LINEPROTO_ERANGE, start, "negative unsigned value");
            f->type = RECORD_FIELD_UINT;
            f->v.u = mag;
            return 0;
        }
        if ((!neg && mag > (uint64_t)INT64_MAX) || (neg && mag > (uint64_t)INT64_MAX + 1))
            return lp_fail(p, LINEPROTO_ERANGE, start, "integer value out of int64 range");
        f->type = RECORD_FIELD_INT;
        f->v.i = neg ? (int64_t)(0 - mag) : (int64_t)mag;
        return 0;
    }
    if (!float_syntax_ok(s, n)) {
        char shown[100];
        return lp_fail(p, LINEPROTO_ESYNTAX, start, "invalid field value '%s'",
                       ferry_escape_str(shown, sizeof shown, s, n < 40 ? n : 40));
    }
    char tmp[512];
    if (n >= sizeof tmp)
        return lp_fail(p, LINEPROTO_ELIMIT, start, "float value longer than %zu bytes",
                       sizeof tmp - 1);
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    double v = strtod(tmp, NULL);
    if (errno == ERANGE && isinf(v))
        return lp_fail(p, LINEPROTO_ERANGE, start, "float value out of range");
    f->type = RECORD_FIELD_FLOAT;
    f->v.f = v;
    return 0;
}

static int lp_timestamp(struct lp *p, int64_t *out)
{
    size_t start = p->pos;
    char tmp[24];
    bool neg = false;
    if (cur(p) == '-' || cur(p) == '+') {
        neg = cur(p) == '-';
        p->pos++;
    }
    size_t dstart = p->pos;
    while (!at_end(p) && is_digit(cur(p)))
        p->pos++;
    if (p->pos == dstart)
        return lp_fail(p, LINEPROTO_ESYNTAX, start, "invalid timestamp: expected digit");
    if (!at_end(p) && !is_eol(cur(p)) && cur(p) != ' ' && cur(p) != '\t')
        return lp_fail(p, LINEPROTO_ESYNTAX, p->pos, "invalid timestamp: unexpected '%s'",
                       shown_char(p, tmp, sizeof tmp));
    uint64_t mag;
    if (digits_u64(p->text + dstart, p->text + p->pos, &mag) < 0 ||
        mag > (uint64_t)INT64_MAX / (uint64_t)p->ts_mult)
        return lp_fail(p, LINEPROTO_ERANGE, start, "timestamp out of range");
    int64_t v = (int64_t)mag * p->ts_mult;
    *out = neg ? -v : v;
    return 0;
}

static void skip_blanks(struct lp *p)
{
    while (!at_end(p) && (cur(p) == ' ' || cur(p) == '\t'))
        p->pos++;
}

/* Skips to just past the end of the current physical line. */
static void skip_line(struct lp *p)
{
    while (!at_end(p) && cur(p) != '\n')
        p->pos++;
    if (!at_end(p))
        p->pos++;
}

/* Parses one line into *r. Returns 1 when a record was produced, 0 for a blank/comment line,
 * negative on error. On return p->pos is past the line's newline. */
static int lp_line(struct lp *p, int64_t default_ts_ns, struct record *r)
{
    int rc;
    p->line_start = p->pos;
    p->scratch_len = 0;
    skip_blanks(p);
    if (at_end(p) || is_eol(cur(p)) || cur(p) == '#') {
        skip_line(p);
        return 0;
    }
    /* Strings are UTF-8: the whole physical line is checked before it is parsed, so that the
     * error names the offending byte rather than a syntax error it may cause. */
    const char *nl = memchr(p->text + p->line_start, '\n', p->len - p->line_start);
    size_t eol = nl ? (size_t)(nl - p->text) : p->len;
    if ((rc = lp_check_encoding(p, p->line_start, eol)) < 0)
        return rc;
    memset(r, 0, sizeof *r);
    r->stream = RECORD_METRIC;
    char tmp[24];
    if ((rc = lp_ident(p, IDENT_MEASUREMENT, RECORD_MAX_KEY_LEN, "measurement", &r->name)) < 0)
        return rc;
    size_t n_tags = 0;
    while (cur(p) == ',') {
        p->pos++;
        if (n_tags == RECORD_MAX_TAGS)
            return lp_fail(p, LINEPROTO_ELIMIT, p->pos, "more than %d tags", RECORD_MAX_TAGS);
        struct record_tag *t = &p->tags[n_tags];
        if ((rc = lp_ident(p, IDENT_KEY, RECORD_MAX_KEY_LEN, "tag key", &t->key)) < 0)
            return rc;
        if (cur(p) != '=')
            return lp_fail(p, LINEPROTO_ESYNTAX, p->pos, "tag key without '='");
        p->pos++;
        if ((rc = lp_ident(p, IDENT_TAG_VALUE, RECORD_MAX_KEY_LEN, "tag value", &t->value)) < 0)
            return rc;
        n_tags++;
    }
    if (cur(p) != ' ' && cur(p) != '\t')
        return lp_fail(p, LINEPROTO_ESYNTAX, p->pos, "missing fields");
    skip_blanks(p);
    size_t n_fields = 0;
    for (;;) {
        struct record_field f;
        if ((rc = lp_ident(p, IDENT_KEY, RECORD_MAX_KEY_LEN, "field key", &f.key)) < 0)
            return rc;
        if (cur(p) != '=')
            return lp_fail(p, LINEPROTO_ESYNTAX, p->pos, "field key without '='");
        p->pos++;
        if ((rc = lp_value(p, &f)) < 0)
            return rc;
        size_t i;
        for (i = 0; i < n_fields; i++) {
            if (p->fields[i].key.len == f.key.len &&
                memcmp(p->fields[i].key.ptr, f.key.ptr, f.key.len) == 0)
                break;
        }
        if (i == n_fields) {
            if (n_fields == RECORD_MAX_FIELDS)
                return lp_fail(p, LINEPROTO_ELIMIT, p->pos, "more than %d fields",
                               RECORD_MAX_FIELDS);
            n_fields++;
        }
        p->fields[i] = f; /* a repeated key: the last value wins */
        if (cur(p) != ',')
            break;
        p->pos++;
    }
    skip_blanks(p);
    r->ts_ns = default_ts_ns;
    if (!at_end(p) && !is_eol(cur(p))) {
        if ((rc = lp_timestamp(p, &r->ts_ns)) < 0)
            return rc;
        skip_blanks(p);
    }
    if (cur(p) == '\r')
        p->pos++;
    if (!at_end(p) && cur(p) != '\n')
        return lp_fail(p, LINEPROTO_ESYNTAX, p->pos, "unexpected '%s' after timestamp",
                       shown_char(p, tmp, sizeof tmp));
    if (!at_end(p))
        p->pos++;
    /* A quoted string ran on past the first newline: check what it carried in too. */
    if (p->pos > eol + 1 && (rc = lp_check_encoding(p, eol, p->pos)) < 0)
        return rc;
    r->tags = n_tags ? p->tags : NULL;
    r->n_tags = n_tags;
    r->fields = p->fields;
    r->n_fields = n_fields;
    return 1;
}

int lineproto_parse(const char *text, size_t len, enum lineproto_precision precision,
                    int64_t default_ts_ns, lineproto_record_fn fn, void *arg,
                    struct lineproto_error *err)
{
    static const int64_t mults[] = {1, 1000, 1000000, 1000000000};
    if ((unsigned)precision > LINEPROTO_S || (len && !text) || !fn)
        return LINEPROTO_EINVAL;
    struct lp *p = calloc(1, sizeof *p);
    if (!p)
        return LINEPROTO_ENOMEM;
    int rc = 0;
    p->text = text;
    p->len = len;
    p->line_no = 1;
    p->ts_mult = mults[precision];
    p->err = err;
    if (err)
        memset(err, 0, sizeof *err);
    p->scratch_cap = (len < LINEPROTO_MAX_LINE ? len : LINEPROTO_MAX_LINE) + 1;
    p->scratch = malloc(p->scratch_cap);
    if (!p->scratch) {
        rc = LINEPROTO_ENOMEM;
        goto out;
    }
    while (!at_end(p)) {
        struct record r;
        size_t start = p->pos;
        /* The scratch holds one line's unescaped text and every write into it is checked
         * against its capacity, which bounds the unescaped size of a line (a quoted string may
         * run past '\n', so the raw line length alone is not the bound). */
        rc = lp_line(p, default_ts_ns, &r);
        if (rc < 0)
            goto out;
        for (size_t i = start; i < p->pos; i++)
            if (text[i] == '\n')
                p->line_no++;
        if (rc == 1) {
            int cb = fn(arg, &r);
            if (cb != 0) {
                if (err)
                    err->callback_status = cb;
                rc = LINEPROTO_ECALLBACK;
                goto out;
            }
        }
        rc = 0;
    }
out:
    free(p->scratch);
    free(p);
    return rc;
}

/* ---- Formatter ------------------------------------------------------------------------------ */

/* Appends an identifier escaping what the parser would stop at (ident_escapes), so that parsing
 * gives back the same bytes. Backslashes stay as they are (the parser keeps a backslash that
 * precedes a plain character); a trailing one would escape the separator after it, so such an
 * identifier cannot be written, nor can newlines, carriage returns or tabs. (NUL bytes are plain
 * data here: strchr-style set tests would match the terminator.) */
static int put_ident(struct ferry_buf *b, const struct record_str *s, enum ident_kind kind)
{
    if (s->len > 0 && s->ptr[s->len - 1] == '\\')
        return LINEPROTO_EINVAL;
    for (size_t i = 0; i < s->len; i++) {
        char c = s->ptr[i];
        if (c == '\n' || c == '\r' || c == '\t')
            return LINEPROTO_EINVAL;
        if (ident_escapes(kind, c) && ferry_buf_append_u8(b, '\\') < 0)
            return LINEPROTO_ENOMEM;
        if (ferry_buf_append_u8(b, (uint8_t)c) < 0)
            return LINEPROTO_ENOMEM;
    }
    return 0;
}

static int put_quoted(struct ferry_buf *b, const char *p, size_t n)
{
    if (ferry_buf_append_u8(b, '"') < 0)
        return LINEPROTO_ENOMEM;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '"' && p[i] != '\\')
            continue;
        if (ferry_buf_append(b, p + run, i - run) < 0 || ferry_buf_append_u8(b, '\\') < 0)
            return LINEPROTO_ENOMEM;
        run = i;
    }
    if (ferry_buf_append(b, p + run, n - run) < 0 || ferry_buf_append_u8(b, '"') < 0)
        return LINEPROTO_ENOMEM;
    return 0;
}

/* Shortest "%.*g" that reads back to the same double. */
static int put_float(struct ferry_buf *b, double v)
{
    if (!isfinite(v))
        return LINEPROTO_EINVAL;
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v && signbit(strtod(tmp, NULL)) == signbit(v))
            break;
    }
    return ferry_buf_append(b, tmp, strlen(tmp)) < 0 ? LINEPROTO_ENOMEM : 0;
}

static int put_field(struct ferry_buf *b, const struct record_field *f)
{
    int rc = put_ident(b, &f->key, IDENT_KEY);
    if (rc < 0)
        return rc;
    if (f->key.len == 0)
        return LINEPROTO_EINVAL;
    if (ferry_buf_append_u8(b, '=') < 0)
        return LINEPROTO_ENOMEM;
    switch (f->type) {
    case RECORD_FIELD_FLOAT: return put_float(b, f->v.f);
    case RECORD_FIELD_INT:
        return ferry_buf_printf(b, "%lldi", (long long)f->v.i) < 0 ? LINEPROTO_ENOMEM : 0;
    case RECORD_FIELD_UINT:
        return ferry_buf_printf(b, "%lluu", (unsigned long long)f->v.u) < 0 ? LINEPROTO_ENOMEM : 0;
    case RECORD_FIELD_BOOL:
        return ferry_buf_append(b, f->v.b ? "true" : "false", f->v.b ? 4 : 5) < 0 ? LINEPROTO_ENOMEM
                                                                                  : 0;
    case RECORD_FIELD_STRING: return put_quoted(b, f->v.s.ptr, f->v.s.len);
    }
    return LINEPROTO_EINVAL;
}

static int format_line(const struct record *r, struct ferry_buf *b)
{
    int rc;
    /* a line starting with '#' is a comment: such a name cannot be written */
    if (r->name.len == 0 || r->name.ptr[0] == '#')
        return LINEPROTO_EINVAL;
    if ((rc = put_ident(b, &r->name, IDENT_MEASUREMENT)) < 0)
        return rc;
    for (size_t i = 0; i < r->n_tags; i++) {
        if (r->tags[i].key.len == 0 || r->tags[i].value.len == 0)
            return LINEPROTO_EINVAL;
        if (ferry_buf_append_u8(b, ',') < 0)
            return LINEPROTO_ENOMEM;
        if ((rc = put_ident(b, &r->tags[i].key, IDENT_KEY)) < 0)
            return rc;
        if (ferry_buf_append_u8(b, '=') < 0)
            return LINEPROTO_ENOMEM;
        if ((rc = put_ident(b, &r->tags[i].value, IDENT_TAG_VALUE)) < 0)
            return rc;
    }
    bool is_log = r->stream == RECORD_LOG;
    if (is_log) {
        const char *lv = record_level_name((enum record_log_level)r->level);
        if (!lv)
            return LINEPROTO_EINVAL;
        if (ferry_buf_printf(b, ",level=%s", lv) < 0)
            return LINEPROTO_ENOMEM;
    }
    if (ferry_buf_append_u8(b, ' ') < 0)
        return LINEPROTO_ENOMEM;
    if (is_log) {
        if (ferry_buf_append(b, "message=", 8) < 0)
            return LINEPROTO_ENOMEM;
        if ((rc = put_quoted(b, r->message.ptr, r->message.len)) < 0)
            return rc;
    }
    for (size_t i = 0; i < r->n_fields; i++) {
        if ((i > 0 || is_log) && ferry_buf_append_u8(b, ',') < 0)
            return LINEPROTO_ENOMEM;
        if ((rc = put_field(b, &r->fields[i])) < 0)
            return rc;
    }
    if (ferry_buf_printf(b, " %lld\n", (long long)r->ts_ns) < 0)
        return LINEPROTO_ENOMEM;
    return 0;
}

int lineproto_format(const struct record *r, struct ferry_buf *out)
{
    size_t start = out->len;
    int rc = format_line(r, out);
    if (rc < 0)
        out->len = start;
    return rc;
}
