/*
 * selector.c - the device selector language of selector.h: a parser into a list of terms and a
 * matcher over struct ingest_device.
 *
 * Parsing is two passes over the text. The first splits it into terms at the commas that are
 * outside quotes and parentheses (so that "site in (a,b)" stays one term and an error can quote
 * the whole term it is about); the second parses each term on its own with a small cursor.
 * Every length is bounded before it is copied: the text, the number of terms, of values in a
 * set, and each value.
 *
 * Matching reads the device's labels and versions JSON (jansson) only when a term needs them, so
 * a selector on class or id costs no JSON parsing.
 */
#include "cloud-ingest/selector.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "transport/manifest.h"

#define SEL_COMPONENT_MAX 64 /* bytes of the component in version.<component> */
#define SEL_ERR_TERM_MAX 60  /* bytes of a term quoted in an error */

enum sel_field { SEL_LABEL, SEL_CLASS, SEL_ID, SEL_NAME, SEL_VERSION };

enum sel_op {
    SEL_EXISTS,
    SEL_ABSENT,
    SEL_EQ,
    SEL_NE,
    SEL_IN,
    SEL_NOTIN,
    SEL_LT,
    SEL_LE,
    SEL_GT,
    SEL_GE,
};

struct sel_term {
    enum sel_field field;
    enum sel_op op;
    char *key;     /* label key, or the component of a version term */
    char **values; /* one for = != and the comparisons, several for in/notin */
    size_t n_values;
};

struct ingest_selector {
    struct sel_term *terms;
    size_t n_terms;
    bool needs_labels;
    bool needs_versions;
};

/* Where the parser is: the whole text (for columns), the current term's extent and number. */
struct sel_parser {
    const char *text;
    size_t term_start, term_end;
    size_t term_no;
    size_t pos;
    char *err;
    size_t err_len;
};

static bool is_blank(char c);

static void sel_free_term(struct sel_term *t)
{
    free(t->key);
    for (size_t i = 0; i < t->n_values; i++)
        free(t->values[i]);
    free(t->values);
}

void ingest_selector_free(struct ingest_selector *sel)
{
    if (sel == NULL)
        return;
    for (size_t i = 0; i < sel->n_terms; i++)
        sel_free_term(&sel->terms[i]);
    free(sel->terms);
    free(sel);
}

size_t ingest_selector_terms(const struct ingest_selector *sel)
{
    return sel != NULL ? sel->n_terms : 0;
}

/* Copies n bytes of src into dst for an error message: at most `max` bytes, cut on a UTF-8
 * boundary (and marked "..."), control characters and '"' shown as '?', so that a message stays
 * one printable line of valid UTF-8 whatever the input was. */
static void show_text(char *dst, size_t dst_len, const char *src, size_t n, size_t max)
{
    size_t o = 0;
    bool cut = false;
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--; /* do not split a UTF-8 sequence */
        cut = true;
    }
    for (size_t i = 0; i < n && o + 1 < dst_len; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[o++] = (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c;
    }
    for (int i = 0; cut && i < 3 && o + 1 < dst_len; i++)
        dst[o++] = '.';
    if (dst_len > 0)
        dst[o] = '\0';
}

/* The term text[start, end) without surrounding blanks, for an error message. */
static void quote_term(char *dst, size_t dst_len, const char *text, size_t start, size_t end)
{
    while (start < end && is_blank(text[start]))
        start++;
    while (end > start && is_blank(text[end - 1]))
        end--;
    show_text(dst, dst_len, text + start, end - start, SEL_ERR_TERM_MAX);
}

static int fail_at(struct sel_parser *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(struct sel_parser *p, size_t at, const char *fmt, ...)
{
    if (p->err == NULL || p->err_len == 0)
        return INGEST_STORE_EINVAL;
    char term[SEL_ERR_TERM_MAX * 2 + 8], what[160];
    quote_term(term, sizeof(term), p->text, p->term_start, p->term_end);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(p->err, p->err_len, "selector term %zu \"%s\", column %zu: %s", p->term_no, term,
             at + 1, what);
    return INGEST_STORE_EINVAL;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Characters that end a bare word (a key or an unquoted value). */
static bool is_delim(char c)
{
    return c == '\0' || is_blank(c) || c == ',' || c == '(' || c == ')' || c == '=' || c == '!' ||
           c == '<' || c == '>' || c == '"';
}

static void skip_blanks(struct sel_parser *p)
{
    while (p->pos < p->term_end && is_blank(p->text[p->pos]))
        p->pos++;
}

static bool at_term_end(const struct sel_parser *p)
{
    return p->pos >= p->term_end;
}

static char *dup_range(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Reads a bare word at p->pos into [*start, *start + *len). */
static void read_word(struct sel_parser *p, size_t *start, size_t *len)
{
    *start = p->pos;
    while (p->pos < p->term_end && !is_delim(p->text[p->pos]))
        p->pos++;
    *len = p->pos - *start;
}

/* Reads a value (bare word or double-quoted string) into a new string *out. */
static int read_value(struct sel_parser *p, char **out)
{
    *out = NULL;
    size_t at = p->pos;
    if (at_term_end(p) || (p->text[at] != '"' && is_delim(p->text[at])))
        return fail_at(p, at, "expected a value");
    if (p->text[at] != '"') {
        size_t start, len;
        read_word(p, &start, &len);
        if (len > INGEST_LABEL_VALUE_MAX)
            return fail_at(p, at, "value longer than %d bytes", INGEST_LABEL_VALUE_MAX);
        *out = dup_range(p->text + start, len);
        return *out != NULL ? 0 : INGEST_STORE_ENOMEM;
    }
    char buf[INGEST_LABEL_VALUE_MAX + 1];
    size_t n = 0;
    p->pos++; /* the opening quote */
    for (;;) {
        if (p->pos >= p->term_end)
            return fail_at(p, at, "unterminated quoted value");
        char c = p->text[p->pos++];
        if (c == '"')
            break;
        if (c == '\\') {
            if (p->pos >= p->term_end)
                return fail_at(p, at, "unterminated quoted value");
            c = p->text[p->pos++];
            if (c != '"' && c != '\\')
                return fail_at(p, p->pos - 2, "unknown escape \\%c (only \\\" and \\\\)",
                               (c >= 0x20 && c < 0x7f) ? c : '?');
        }
        if (n >= INGEST_LABEL_VALUE_MAX)
            return fail_at(p, at, "value longer than %d bytes", INGEST_LABEL_VALUE_MAX);
        buf[n++] = c;
    }
    *out = dup_range(buf, n);
    return *out != NULL ? 0 : INGEST_STORE_ENOMEM;
}

static int add_value(struct sel_term *t, char *v)
{
    char **nv = realloc(t->values, (t->n_values + 1) * sizeof(*nv));
    if (nv == NULL) {
        free(v);
        return INGEST_STORE_ENOMEM;
    }
    t->values = nv;
    t->values[t->n_values++] = v;
    return 0;
}

/* "(a, b, c)" after in/notin. */
static int read_set(struct sel_parser *p, struct sel_term *t)
{
    skip_blanks(p);
    if (at_term_end(p) || p->text[p->pos] != '(')
        return fail_at(p, p->pos, "expected '(' to open the value set");
    size_t open = p->pos++;
    for (;;) {
        skip_blanks(p);
        if (at_term_end(p))
            return fail_at(p, open, "expected ')' to close the value set");
        if (t->n_values >= INGEST_SELECTOR_VALUES_MAX)
            return fail_at(p, p->pos, "more than %d values in the set", INGEST_SELECTOR_VALUES_MAX);
        char *v = NULL;
        int rc = read_value(p, &v);
        if (rc != 0)
            return rc;
        if ((rc = add_value(t, v)) != 0)
            return rc;
        skip_blanks(p);
        if (at_term_end(p))
            return fail_at(p, open, "expected ')' to close the value set");
        char c = p->text[p->pos];
        if (c == ')') {
            p->pos++;
            return 0;
        }
        if (c != ',')
            return fail_at(p, p->pos, "expected ',' or ')' in the value set");
        p->pos++;
    }
}

static bool version_value_valid(const char *v)
{
    if (v[0] == '\0')
        return false;
    for (const char *c = v; *c; c++) {
        bool ok = (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
                  (*c >= 'A' && *c <= 'Z') || *c == '.' || *c == '-' || *c == '+' || *c == '_';
        if (!ok)
            return false;
    }
    return true;
}

static bool component_valid(const char *s, size_t n)
{
    if (n == 0 || n > SEL_COMPONENT_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '.' || c == '-' || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

/* The key of a term: sets t->field and t->key. */
static int read_key(struct sel_parser *p, struct sel_term *t)
{
    size_t start, len;
    read_word(p, &start, &len);
    const char *k = p->text + start;
    if (len == 0)
        return fail_at(p, start,
                       "expected a key (a label, class, id, name or version.<component>)");
    if (len >= 8 && memcmp(k, "version.", 8) == 0) {
        if (!component_valid(k + 8, len - 8))
            return fail_at(p, start + 8,
                           "the component after \"version.\" must be 1..%d bytes of "
                           "[A-Za-z0-9._-]",
                           SEL_COMPONENT_MAX);
        t->field = SEL_VERSION;
        t->key = dup_range(k + 8, len - 8);
        return t->key != NULL ? 0 : INGEST_STORE_ENOMEM;
    }
    if (len == 5 && memcmp(k, "class", 5) == 0)
        t->field = SEL_CLASS;
    else if (len == 2 && memcmp(k, "id", 2) == 0)
        t->field = SEL_ID;
    else if (len == 4 && memcmp(k, "name", 4) == 0)
        t->field = SEL_NAME;
    else
        t->field = SEL_LABEL;
    t->key = dup_range(k, len);
    if (t->key == NULL)
        return INGEST_STORE_ENOMEM;
    if (t->field == SEL_LABEL && !ingest_label_key_valid(t->key)) {
        if (len == 7 && memcmp(k, "version", 7) == 0)
            return fail_at(p, start, "a version term is version.<component> OP version");
        char shown[64];
        show_text(shown, sizeof(shown), k, len, 40);
        return fail_at(p, start,
                       "\"%s\" is not a label key (1..%d bytes of [a-z0-9_.-], a letter first)",
                       shown, INGEST_LABEL_KEY_MAX);
    }
    return 0;
}

/* The operator after a key; returns 1 when there is none (the term ends: an existence test). */
static int read_op(struct sel_parser *p, enum sel_op *op)
{
    skip_blanks(p);
    if (at_term_end(p))
        return 1;
    const char *s = p->text + p->pos;
    size_t left = p->term_end - p->pos;
    struct {
        const char *text;
        enum sel_op op;
    } ops[] = {{"==", SEL_EQ}, {"!=", SEL_NE}, {"<=", SEL_LE}, {">=", SEL_GE},
               {"=", SEL_EQ},  {"<", SEL_LT},  {">", SEL_GT}};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        size_t n = strlen(ops[i].text);
        if (left >= n && memcmp(s, ops[i].text, n) == 0) {
            p->pos += n;
            *op = ops[i].op;
            return 0;
        }
    }
    size_t start, len;
    read_word(p, &start, &len);
    if (len == 2 && memcmp(s, "in", 2) == 0) {
        *op = SEL_IN;
        return 0;
    }
    if (len == 5 && memcmp(s, "notin", 5) == 0) {
        *op = SEL_NOTIN;
        return 0;
    }
    return fail_at(p, start, "expected an operator (= != in notin, or < <= > >= on versions)");
}

static int parse_term(struct sel_parser *p, struct sel_term *t)
{
    p->pos = p->term_start;
    skip_blanks(p);
    if (at_term_end(p))
        return fail_at(p, p->pos, "empty term");
    bool negated = false;
    if (p->text[p->pos] == '!') {
        negated = true;
        p->pos++;
        skip_blanks(p);
    }
    int rc = read_key(p, t);
    if (rc != 0)
        return rc;
    skip_blanks(p);
    size_t op_at = p->pos;
    enum sel_op op = SEL_EXISTS;
    if (negated) {
        if (!at_term_end(p))
            return fail_at(p, p->pos, "'!key' takes no operator or value");
        op = SEL_ABSENT;
    } else {
        rc = read_op(p, &op);
        if (rc < 0)
            return rc;
        rc = 0; /* 1: no operator, an existence test */
    }
    t->op = op;
    if (t->field == SEL_VERSION &&
        (op == SEL_EXISTS || op == SEL_ABSENT || op == SEL_IN || op == SEL_NOTIN))
        return fail_at(p, op_at, "a version term needs one of = != < <= > >= and a version");
    if (t->field != SEL_VERSION && op >= SEL_LT)
        return fail_at(p, op_at, "< <= > >= compare versions only (version.<component>)");
    skip_blanks(p);
    size_t value_at = p->pos;
    if (op == SEL_IN || op == SEL_NOTIN) {
        rc = read_set(p, t);
    } else if (op != SEL_EXISTS && op != SEL_ABSENT) {
        char *v = NULL;
        rc = read_value(p, &v);
        if (rc == 0)
            rc = add_value(t, v);
        if (rc == 0 && t->field == SEL_VERSION && !version_value_valid(t->values[0])) {
            char shown[64];
            show_text(shown, sizeof(shown), t->values[0], strlen(t->values[0]), 40);
            return fail_at(p, value_at, "\"%s\" is not a version ([0-9A-Za-z.+_-], like 1.2.0)",
                           shown);
        }
    }
    if (rc != 0)
        return rc;
    skip_blanks(p);
    if (!at_term_end(p))
        return fail_at(p, p->pos, "unexpected '%c' after the term (terms are separated by ',')",
                       (p->text[p->pos] >= 0x20 && p->text[p->pos] < 0x7f) ? p->text[p->pos] : '?');
    return 0;
}

/* Finds where the term starting at `start` ends: the next ',' outside quotes and parentheses,
 * or the end of the text. A quote left open is an error of the term. */
static int term_extent(struct sel_parser *p, size_t start, size_t len)
{
    bool quoted = false;
    int depth = 0;
    size_t quote_at = 0;
    size_t i = start;
    for (; i < len; i++) {
        char c = p->text[i];
        if (quoted) {
            if (c == '\\' && i + 1 < len)
                i++;
            else if (c == '"')
                quoted = false;
            continue;
        }
        if (c == '"') {
            quoted = true;
            quote_at = i;
        } else if (c == '(') {
            depth++;
        } else if (c == ')' && depth > 0) {
            depth--;
        } else if (c == ',' && depth == 0) {
            break;
        }
    }
    p->term_start = start;
    p->term_end = i;
    if (quoted)
        return fail_at(p, quote_at, "unterminated quoted value");
    return 0;
}

int ingest_selector_parse(const char *text, struct ingest_selector **out, char *err, size_t err_len)
{
    *out = NULL;
    if (err != NULL && err_len > 0)
        err[0] = '\0';
    if (text == NULL)
        text = "";
    size_t len = ferry_bounded_len(text, INGEST_SELECTOR_TEXT_MAX + 1);
    if (len > INGEST_SELECTOR_TEXT_MAX) {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "selector longer than %d bytes", INGEST_SELECTOR_TEXT_MAX);
        return INGEST_STORE_EINVAL;
    }
    struct ingest_selector *sel = calloc(1, sizeof(*sel));
    if (sel == NULL)
        return INGEST_STORE_ENOMEM;
    struct sel_parser p = {.text = text, .err = err, .err_len = err_len};
    size_t blank = 0;
    while (blank < len && is_blank(text[blank]))
        blank++;
    int rc = 0;
    for (size_t start = 0; rc == 0 && blank < len && start <= len;) {
        p.term_no++;
        if ((rc = term_extent(&p, start, len)) != 0)
            break;
        if (sel->n_terms >= INGEST_SELECTOR_TERMS_MAX) {
            rc = fail_at(&p, start, "more than %d terms", INGEST_SELECTOR_TERMS_MAX);
            break;
        }
        struct sel_term *nt = realloc(sel->terms, (sel->n_terms + 1) * sizeof(*nt));
        if (nt == NULL) {
            rc = INGEST_STORE_ENOMEM;
            break;
        }
        sel->terms = nt;
        struct sel_term *t = &sel->terms[sel->n_terms++];
        memset(t, 0, sizeof(*t));
        rc = parse_term(&p, t);
        if (rc == 0) {
            sel->needs_labels |= t->field == SEL_LABEL;
            sel->needs_versions |= t->field == SEL_VERSION;
        }
        start = p.term_end + 1; /* past the comma; past the end when there is none */
    }
    if (rc != 0) {
        if (rc == INGEST_STORE_ENOMEM && err != NULL && err_len > 0)
            snprintf(err, err_len, "out of memory parsing the selector");
        ingest_selector_free(sel);
        return rc;
    }
    *out = sel;
    return 0;
}

/* ---- Matching ------------------------------------------------------------------------------ */

/* The value of a term's key on the device, or NULL when absent. */
static const char *term_value(const struct sel_term *t, const struct ingest_device *dev,
                              json_t *labels, json_t *versions)
{
    switch (t->field) {
    case SEL_CLASS: return dev->device_class[0] ? dev->device_class : NULL;
    case SEL_ID: return dev->id;
    case SEL_NAME: return dev->name[0] ? dev->name : NULL;
    case SEL_LABEL:
        return labels != NULL ? json_string_value(json_object_get(labels, t->key)) : NULL;
    case SEL_VERSION:
        return versions != NULL ? json_string_value(json_object_get(versions, t->key)) : NULL;
    }
    return NULL;
}

static bool in_values(const struct sel_term *t, const char *v)
{
    for (size_t i = 0; i < t->n_values; i++)
        if (strcmp(t->values[i], v) == 0)
            return true;
    return false;
}

static bool term_holds(const struct sel_term *t, const char *v)
{
    switch (t->op) {
    case SEL_EXISTS: return v != NULL;
    case SEL_ABSENT: return v == NULL;
    case SEL_IN: return v != NULL && in_values(t, v);
    case SEL_NOTIN: return v == NULL || !in_values(t, v);
    default: break;
    }
    if (t->field == SEL_VERSION) {
        if (v == NULL)
            return t->op == SEL_NE;
        int c = manifest_version_compare(v, t->values[0]);
        switch (t->op) {
        case SEL_EQ: return c == 0;
        case SEL_NE: return c != 0;
        case SEL_LT: return c < 0;
        case SEL_LE: return c <= 0;
        case SEL_GT: return c > 0;
        case SEL_GE: return c >= 0;
        default: return false;
        }
    }
    if (t->op == SEL_EQ)
        return v != NULL && strcmp(v, t->values[0]) == 0;
    if (t->op == SEL_NE)
        return v == NULL || strcmp(v, t->values[0]) != 0;
    return false;
}

static json_t *load_object(const char *text)
{
    if (text == NULL || text[0] == '\0')
        return NULL;
    json_t *j = json_loads(text, 0, NULL);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

bool ingest_selector_match(const struct ingest_selector *sel, const struct ingest_device *dev)
{
    if (sel == NULL || sel->n_terms == 0)
        return true;
    json_t *labels = sel->needs_labels ? load_object(dev->labels) : NULL;
    json_t *versions = sel->needs_versions ? load_object(dev->versions) : NULL;
    bool ok = true;
    for (size_t i = 0; ok && i < sel->n_terms; i++)
        ok = term_holds(&sel->terms[i], term_value(&sel->terms[i], dev, labels, versions));
    json_decref(labels);
    json_decref(versions);
    return ok;
}
