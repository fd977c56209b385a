/*
 * influx_query.c - InfluxDB 1.x /query set-up statements (see influx_query.h).
 *
 * A small tokenizer over InfluxQL's lexical rules (keywords case-insensitive; identifiers bare
 * [A-Za-z_][A-Za-z0-9_]* or double-quoted with backslash escapes; strings single-quoted;
 * statements separated by ';') and a recogniser for the statements listed in the header. Every
 * statement is parsed before any is answered, so a parse error anywhere gives one 400 and no
 * statement takes effect (InfluxDB parses the whole query first too). Output names go through
 * a UTF-8 check: a name that is not valid UTF-8 is a parse error, so the JSON is always valid.
 */
#include "engine/influx_query.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"

#define NAME_MAX_BYTES 255
#define MAX_STATEMENTS 64

struct influx_query {
    char names[INFLUX_QUERY_MAX_DATABASES][NAME_MAX_BYTES + 1];
    size_t n;
};

struct influx_query *influx_query_new(void)
{
    return calloc(1, sizeof(struct influx_query));
}

void influx_query_free(struct influx_query *q)
{
    free(q);
}

enum tok_kind { T_END, T_SEMI, T_WORD, T_QIDENT, T_STRING, T_OTHER };

struct lexer {
    const char *p, *end;
    char err[160];
};

struct token {
    enum tok_kind kind;
    char text[NAME_MAX_BYTES + 1]; /* words and identifiers, unescaped */
    bool too_long;
};

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n || (c < 0x20) || (len == 2 && c < 0xc2))
            return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        if (len == 3) {
            unsigned cp = ((c & 0x0fu) << 12) | ((s[i + 1] & 0x3fu) << 6) | (s[i + 2] & 0x3fu);
            if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))
                return false;
        } else if (len == 4) {
            unsigned cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3fu) << 12) |
                          ((s[i + 2] & 0x3fu) << 6) | (s[i + 3] & 0x3fu);
            if (cp < 0x10000 || cp > 0x10ffff)
                return false;
        }
        i += len;
    }
    return true;
}

/* Next token. Comments (-- to end of line) and blanks are skipped. */
static void next(struct lexer *lx, struct token *t)
{
    t->kind = T_END;
    t->text[0] = 0;
    t->too_long = false;
    for (;;) {
        while (lx->p < lx->end && isspace((unsigned char)*lx->p))
            lx->p++;
        if (lx->end - lx->p >= 2 && lx->p[0] == '-' && lx->p[1] == '-') {
            while (lx->p < lx->end && *lx->p != '\n')
                lx->p++;
            continue;
        }
        break;
    }
    if (lx->p == lx->end)
        return;
    char c = *lx->p;
    if (c == ';') {
        lx->p++;
        t->kind = T_SEMI;
        return;
    }
    if (isalpha((unsigned char)c) || c == '_') {
        size_t n = 0;
        while (lx->p < lx->end && (isalnum((unsigned char)*lx->p) || *lx->p == '_')) {
            if (n < NAME_MAX_BYTES)
                t->text[n++] = *lx->p;
            else
                t->too_long = true;
            lx->p++;
        }
        t->text[n] = 0;
        t->kind = T_WORD;
        return;
    }
    if (c == '"' || c == '\'') {
        char quote = c;
        size_t n = 0;
        lx->p++;
        for (;;) {
            if (lx->p == lx->end) {
                snprintf(lx->err, sizeof lx->err, "unterminated %s",
                         quote == '"' ? "quoted identifier" : "string");
                t->kind = T_OTHER;
                return;
            }
            char ch = *lx->p++;
            if (ch == quote)
                break;
            if (ch == '\\' && lx->p < lx->end)
                ch = *lx->p++;
            if (n < NAME_MAX_BYTES)
                t->text[n++] = ch;
            else
                t->too_long = true;
        }
        t->text[n] = 0;
        t->kind = quote == '"' ? T_QIDENT : T_STRING;
        return;
    }
    lx->p++;
    t->kind = T_OTHER;
    t->text[0] = isprint((unsigned char)c) ? c : '?';
    t->text[1] = 0;
}

static bool is_kw(const struct token *t, const char *kw)
{
    return t->kind == T_WORD && strcasecmp(t->text, kw) == 0;
}

enum stmt_kind {
    S_CREATE_DB,
    S_DROP_DB,
    S_SHOW_DBS,
    S_SHOW_RPS,
    S_RP_CHANGE, /* CREATE / ALTER / DROP RETENTION POLICY: accepted, nothing to do */
    S_UNSUPPORTED
};

struct stmt {
    enum stmt_kind kind;
    char name[NAME_MAX_BYTES + 1];
    char first_words[40]; /* for the unsupported statement's error */
};

/* An identifier token into out; false (with the reason in lx->err) otherwise. */
static bool take_ident(struct lexer *lx, const struct token *t, char *out, const char *what)
{
    if (lx->err[0])
        return false; /* the lexer's reason (an unterminated quote) is the one to report */
    if (t->kind != T_WORD && t->kind != T_QIDENT) {
        snprintf(lx->err, sizeof lx->err, "found %.40s, expected %s",
                 t->kind == T_END || t->kind == T_SEMI ? "EOF" : t->text, what);
        return false;
    }
    if (t->too_long || !t->text[0] ||
        !utf8_valid((const unsigned char *)t->text, strlen(t->text))) {
        snprintf(lx->err, sizeof lx->err, "invalid %s (empty, over %d bytes or not UTF-8)", what,
                 NAME_MAX_BYTES);
        return false;
    }
    memcpy(out, t->text, strlen(t->text) + 1);
    return true;
}

/* Skips to the end of the statement (the ';' or the end), keeping parse errors. */
static bool skip_rest(struct lexer *lx, struct token *t)
{
    while (t->kind != T_END && t->kind != T_SEMI) {
        next(lx, t);
        if (lx->err[0])
            return false;
    }
    return true;
}

/* Parses one statement; t holds its first token. Leaves t at the ';' or the end. */
static bool parse_stmt(struct lexer *lx, struct token *t, struct stmt *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->first_words, sizeof s->first_words, "%.39s", t->text);
    if (is_kw(t, "CREATE") || is_kw(t, "DROP") || is_kw(t, "ALTER")) {
        bool create = is_kw(t, "CREATE"), drop = is_kw(t, "DROP");
        next(lx, t);
        if (is_kw(t, "DATABASE") && (create || drop)) {
            s->kind = create ? S_CREATE_DB : S_DROP_DB;
            next(lx, t);
            if (is_kw(t, "IF")) {
                next(lx, t);
                if (create && !is_kw(t, "NOT")) {
                    snprintf(lx->err, sizeof lx->err, "found %.40s, expected NOT", t->text);
                    return false;
                }
                if (create)
                    next(lx, t);
                if (!is_kw(t, "EXISTS")) {
                    snprintf(lx->err, sizeof lx->err, "found %.40s, expected EXISTS", t->text);
                    return false;
                }
                next(lx, t);
            }
            if (!take_ident(lx, t, s->name, "identifier"))
                return false;
            next(lx, t);
            return skip_rest(lx, t); /* WITH DURATION ... : accepted and ignored */
        }
        if (is_kw(t, "RETENTION")) {
            next(lx, t);
            if (!is_kw(t, "POLICY")) {
                snprintf(lx->err, sizeof lx->err, "found %.40s, expected POLICY", t->text);
                return false;
            }
            s->kind = S_RP_CHANGE;
            return skip_rest(lx, t);
        }
        s->kind = S_UNSUPPORTED;
        return skip_rest(lx, t);
    }
    if (is_kw(t, "SHOW")) {
        next(lx, t);
        if (is_kw(t, "DATABASES")) {
            s->kind = S_SHOW_DBS;
            next(lx, t);
            return skip_rest(lx, t);
        }
        if (is_kw(t, "RETENTION")) {
            next(lx, t);
            if (!is_kw(t, "POLICIES")) {
                snprintf(lx->err, sizeof lx->err, "found %.40s, expected POLICIES", t->text);
                return false;
            }
            s->kind = S_SHOW_RPS;
            next(lx, t);
            if (is_kw(t, "ON")) {
                next(lx, t);
                if (!take_ident(lx, t, s->name, "identifier"))
                    return false;
                next(lx, t);
            }
            return skip_rest(lx, t);
        }
    }
    if (t->kind != T_WORD) {
        snprintf(lx->err, sizeof lx->err,
                 "found %.40s, expected SELECT, DELETE, SHOW, CREATE, DROP",
                 t->kind == T_END ? "EOF" : t->text);
        return false;
    }
    s->kind = S_UNSUPPORTED;
    return skip_rest(lx, t);
}

static int add_db(struct influx_query *q, const char *name)
{
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->names[i], name) == 0)
            return 0;
    if (q->n == INFLUX_QUERY_MAX_DATABASES)
        return 0; /* remembered only for SHOW DATABASES: the oldest names stay */
    memcpy(q->names[q->n++], name, strlen(name) + 1);
    return 0;
}

static void drop_db(struct influx_query *q, const char *name)
{
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->names[i], name) == 0) {
            memmove(q->names[i], q->names[i + 1], (q->n - i - 1) * sizeof q->names[0]);
            q->n--;
            return;
        }
}

static int json_str(struct ferry_buf *out, const char *s)
{
    return ferry_buf_append_json_string(out, s, strlen(s));
}

static int answer_stmt(struct influx_query *q, const struct stmt *s, size_t id,
                       struct ferry_buf *out)
{
    if (ferry_buf_printf(out, "%s{\"statement_id\":%zu", id ? "," : "", id) != 0)
        return -1;
    switch (s->kind) {
    case S_CREATE_DB:
        if (add_db(q, s->name) != 0)
            return -1;
        break;
    case S_DROP_DB: drop_db(q, s->name); break;
    case S_RP_CHANGE: break;
    case S_SHOW_DBS:
        if (ferry_buf_printf(out, ",\"series\":[{\"name\":\"databases\",\"columns\":[\"name\"]") !=
            0)
            return -1;
        if (q->n) {
            if (ferry_buf_printf(out, ",\"values\":[") != 0)
                return -1;
            for (size_t i = 0; i < q->n; i++)
                if ((i && ferry_buf_append_u8(out, ',') != 0) ||
                    ferry_buf_append_u8(out, '[') != 0 || json_str(out, q->names[i]) != 0 ||
                    ferry_buf_append_u8(out, ']') != 0)
                    return -1;
            if (ferry_buf_append_u8(out, ']') != 0)
                return -1;
        }
        if (ferry_buf_printf(out, "}]") != 0)
            return -1;
        break;
    case S_SHOW_RPS:
        if (ferry_buf_printf(out, ",\"series\":[{\"columns\":[\"name\",\"duration\","
                                  "\"shardGroupDuration\",\"replicaN\",\"default\"],\"values\":"
                                  "[[\"autogen\",\"0s\",\"168h0m0s\",1,true]]}]") != 0)
            return -1;
        break;
    case S_UNSUPPORTED: {
        char what[64];
        size_t n = 0;
        for (const char *p = s->first_words; *p && n < sizeof what - 1; p++)
            what[n++] = isprint((unsigned char)*p) ? *p : '?';
        what[n] = 0;
        if (ferry_buf_printf(out, ",\"error\":") != 0)
            return -1;
        char msg[256];
        snprintf(msg, sizeof msg,
                 "ferryd does not answer %s statements: it forwards what /write receives and "
                 "keeps no queryable data (docs/configuration.md, \"InfluxDB /query\")",
                 what);
        if (json_str(out, msg) != 0)
            return -1;
        break;
    }
    }
    return ferry_buf_append_u8(out, '}');
}

int influx_query_answer(struct influx_query *q, const char *text, size_t len, struct ferry_buf *out,
                        int *http_status)
{
    struct lexer lx = {text, text + len, ""};
    struct stmt *stmts = calloc(MAX_STATEMENTS, sizeof *stmts);
    if (!stmts)
        return -1;
    size_t n = 0;
    int rc = 0;
    if (len > INFLUX_QUERY_MAX_BYTES)
        snprintf(lx.err, sizeof lx.err, "query longer than %d bytes", INFLUX_QUERY_MAX_BYTES);
    struct token t;
    while (!lx.err[0]) {
        next(&lx, &t);
        while (t.kind == T_SEMI && !lx.err[0])
            next(&lx, &t);
        if (lx.err[0] || t.kind == T_END)
            break;
        if (n == MAX_STATEMENTS) {
            snprintf(lx.err, sizeof lx.err, "more than %d statements", MAX_STATEMENTS);
            break;
        }
        if (!parse_stmt(&lx, &t, &stmts[n]))
            break;
        n++;
    }
    if (!lx.err[0] && n == 0)
        snprintf(lx.err, sizeof lx.err, "empty query");
    if (lx.err[0]) {
        char msg[200];
        snprintf(msg, sizeof msg, "error parsing query: %s", lx.err);
        for (char *m = msg; *m; m++) /* the reason may quote input bytes: keep it ASCII */
            if (!isprint((unsigned char)*m))
                *m = '?';
        *http_status = 400;
        if (ferry_buf_printf(out, "{\"error\":") != 0 || json_str(out, msg) != 0 ||
            ferry_buf_append_u8(out, '}') != 0)
            rc = -1;
        goto out;
    }
    *http_status = 200;
    if (ferry_buf_printf(out, "{\"results\":[") != 0) {
        rc = -1;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (answer_stmt(q, &stmts[i], i, out) != 0) {
            rc = -1;
            goto out;
        }
    if (ferry_buf_printf(out, "]}") != 0)
        rc = -1;
out:
    free(stmts);
    return rc;
}
