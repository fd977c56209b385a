/*
 * record.c - names of streams, levels and field types, the record limits check, and the journal
 * payload of one record (record_pack/record_unpack, docs/wire-format.md §7).
 *
 * The payload is deliberately simple and self-describing (a version byte, then the record's
 * values in a fixed order): it is written once per record on the device's hot path and read back
 * when a batch is built, so it favours speed and zero-copy reads over size. Compactness is the
 * batch codec's job (batch_encode.c), which sees many records at once.
 */
#include "transport/record.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"

#define RECORD_PACK_VERSION 1

int record_field_number(const struct record_field *f, double *out)
{
    switch (f->type) {
    case RECORD_FIELD_FLOAT: *out = f->v.f; return 0;
    case RECORD_FIELD_INT: *out = (double)f->v.i; return 0;
    case RECORD_FIELD_UINT: *out = (double)f->v.u; return 0;
    case RECORD_FIELD_STRING:
    case RECORD_FIELD_BOOL: break;
    }
    return -1;
}

const char *record_stream_name(enum record_stream stream)
{
    switch (stream) {
    case RECORD_EVENT: return "event";
    case RECORD_METRIC: return "metric";
    case RECORD_LOG: return "log";
    }
    return NULL;
}

int record_stream_parse(const char *name, enum record_stream *out)
{
    for (int s = 0; s < RECORD_STREAM_COUNT; s++) {
        if (strcmp(name, record_stream_name((enum record_stream)s)) == 0) {
            *out = (enum record_stream)s;
            return 0;
        }
    }
    return -1;
}

static const char *const level_names[] = {"emerg", "alert",  "crit", "error",
                                          "warn",  "notice", "info", "debug"};

const char *record_level_name(enum record_log_level level)
{
    if ((unsigned)level >= sizeof level_names / sizeof level_names[0])
        return NULL;
    return level_names[level];
}

int record_level_parse(const char *name, enum record_log_level *out)
{
    /* Common spellings from syslog, Python logging, glog and friends map onto the syslog set. */
    static const struct {
        const char *name;
        enum record_log_level level;
    } aliases[] = {
        {"emergency", RECORD_LEVEL_EMERG},  {"panic", RECORD_LEVEL_EMERG},
        {"fatal", RECORD_LEVEL_CRIT},       {"critical", RECORD_LEVEL_CRIT},
        {"err", RECORD_LEVEL_ERROR},        {"warning", RECORD_LEVEL_WARN},
        {"information", RECORD_LEVEL_INFO}, {"trace", RECORD_LEVEL_DEBUG},
    };
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (enum record_log_level)i;
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
        if (strcasecmp(name, aliases[i].name) == 0) {
            *out = aliases[i].level;
            return 0;
        }
    }
    return -1;
}

const char *record_field_type_name(enum record_field_type type)
{
    switch (type) {
    case RECORD_FIELD_FLOAT: return "float";
    case RECORD_FIELD_INT: return "int";
    case RECORD_FIELD_UINT: return "uint";
    case RECORD_FIELD_STRING: return "string";
    case RECORD_FIELD_BOOL: return "bool";
    }
    return NULL;
}

const char *record_strerror(int err)
{
    switch (err) {
    case RECORD_OK: return "success";
    case RECORD_ENOMEM: return "out of memory or output buffer full";
    case RECORD_EINVAL: return "invalid record";
    case RECORD_ELIMIT: return "record exceeds a limit";
    case RECORD_ETRUNC: return "record payload truncated";
    case RECORD_EFORMAT: return "malformed record payload";
    }
    return "unknown record error";
}

static int why_set(char *why, size_t why_len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int why_set(char *why, size_t why_len, int err, const char *fmt, ...)
{
    if (why && why_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return err;
}

static int str_ok(const struct record_str *s, size_t max)
{
    if (s->len > max)
        return RECORD_ELIMIT;
    if (s->len > 0 && s->ptr == NULL)
        return RECORD_EINVAL;
    return 0;
}

int record_check(const struct record *r, char *why, size_t why_len)
{
    int rc;
    if (!record_stream_name(r->stream))
        return why_set(why, why_len, RECORD_EINVAL, "stream %d unknown", (int)r->stream);
    if (r->level > RECORD_LEVEL_DEBUG)
        return why_set(why, why_len, RECORD_EINVAL, "level %u out of range 0..7", r->level);
    if ((rc = str_ok(&r->name, RECORD_MAX_KEY_LEN)) < 0)
        return why_set(why, why_len, rc, "name: %zu bytes (max %d)", r->name.len,
                       RECORD_MAX_KEY_LEN);
    if ((rc = str_ok(&r->message, RECORD_MAX_VALUE_LEN)) < 0)
        return why_set(why, why_len, rc, "message: %zu bytes (max %d)", r->message.len,
                       RECORD_MAX_VALUE_LEN);
    if (r->n_tags > RECORD_MAX_TAGS)
        return why_set(why, why_len, RECORD_ELIMIT, "%zu tags (max %d)", r->n_tags,
                       RECORD_MAX_TAGS);
    if (r->n_fields > RECORD_MAX_FIELDS)
        return why_set(why, why_len, RECORD_ELIMIT, "%zu fields (max %d)", r->n_fields,
                       RECORD_MAX_FIELDS);
    if ((r->n_tags && !r->tags) || (r->n_fields && !r->fields))
        return why_set(why, why_len, RECORD_EINVAL, "NULL tag or field array");
    for (size_t i = 0; i < r->n_tags; i++) {
        if ((rc = str_ok(&r->tags[i].key, RECORD_MAX_KEY_LEN)) < 0 ||
            (rc = str_ok(&r->tags[i].value, RECORD_MAX_KEY_LEN)) < 0)
            return why_set(why, why_len, rc, "tag %zu: key or value too long (max %d)", i,
                           RECORD_MAX_KEY_LEN);
    }
    for (size_t i = 0; i < r->n_fields; i++) {
        const struct record_field *f = &r->fields[i];
        if ((rc = str_ok(&f->key, RECORD_MAX_KEY_LEN)) < 0)
            return why_set(why, why_len, rc, "field %zu: key too long (max %d)", i,
                           RECORD_MAX_KEY_LEN);
        if (!record_field_type_name(f->type))
            return why_set(why, why_len, RECORD_EINVAL, "field %zu: type %d unknown", i,
                           (int)f->type);
        if (f->type == RECORD_FIELD_STRING && (rc = str_ok(&f->v.s, RECORD_MAX_VALUE_LEN)) < 0)
            return why_set(why, why_len, rc, "field %zu: string value too long (max %d)", i,
                           RECORD_MAX_VALUE_LEN);
    }
    return 0;
}

static int put_str(struct ferry_buf *b, const struct record_str *s)
{
    if (ferry_buf_append_uvarint(b, s->len) < 0)
        return -1;
    return s->len ? ferry_buf_append(b, s->ptr, s->len) : 0;
}

static int pack_body(const struct record *r, struct ferry_buf *b)
{
    if (ferry_buf_append_u8(b, RECORD_PACK_VERSION) < 0 ||
        ferry_buf_append_u8(b, (uint8_t)r->stream) < 0 || ferry_buf_append_u8(b, r->level) < 0 ||
        ferry_buf_append_svarint(b, r->ts_ns) < 0 || put_str(b, &r->name) < 0 ||
        put_str(b, &r->message) < 0 || ferry_buf_append_uvarint(b, r->n_tags) < 0)
        return -1;
    for (size_t i = 0; i < r->n_tags; i++) {
        if (put_str(b, &r->tags[i].key) < 0 || put_str(b, &r->tags[i].value) < 0)
            return -1;
    }
    if (ferry_buf_append_uvarint(b, r->n_fields) < 0)
        return -1;
    for (size_t i = 0; i < r->n_fields; i++) {
        const struct record_field *f = &r->fields[i];
        int rc = 0;
        if (put_str(b, &f->key) < 0 || ferry_buf_append_u8(b, (uint8_t)f->type) < 0)
            return -1;
        switch (f->type) {
        case RECORD_FIELD_FLOAT: {
            uint64_t bits;
            memcpy(&bits, &f->v.f, sizeof bits);
            rc = ferry_buf_append_le64(b, bits);
            break;
        }
        case RECORD_FIELD_INT: rc = ferry_buf_append_svarint(b, f->v.i); break;
        case RECORD_FIELD_UINT: rc = ferry_buf_append_uvarint(b, f->v.u); break;
        case RECORD_FIELD_BOOL: rc = ferry_buf_append_u8(b, f->v.b ? 1 : 0); break;
        case RECORD_FIELD_STRING: rc = put_str(b, &f->v.s); break;
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

int record_pack(const struct record *r, struct ferry_buf *out)
{
    int rc = record_check(r, NULL, 0);
    if (rc < 0)
        return rc;
    size_t start = out->len;
    if (pack_body(r, out) < 0) {
        out->len = start;
        return RECORD_ENOMEM;
    }
    if (out->len - start > RECORD_MAX_PACKED_LEN) {
        out->len = start;
        return RECORD_ELIMIT;
    }
    return 0;
}

/* A cursor over a payload. The readers are inline because unpacking runs once per record when
 * batches are built; any read past the end sets `failed` and returns 0. */
struct rcur {
    const uint8_t *p, *end;
    int failed;
};

static inline uint8_t rc_u8(struct rcur *c)
{
    if (c->p >= c->end) {
        c->failed = 1;
        return 0;
    }
    return *c->p++;
}

static inline uint64_t rc_uv(struct rcur *c)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (c->p >= c->end) {
            c->failed = 1;
            return 0;
        }
        uint8_t byte = *c->p++;
        if (shift == 63 && byte > 1) { /* the tenth byte may only carry bit 63 */
            c->failed = 1;
            return 0;
        }
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80))
            return v;
    }
    c->failed = 1;
    return 0;
}

static inline int64_t rc_sv(struct rcur *c)
{
    uint64_t z = rc_uv(c);
    return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

/* Reads one str; checks the length against `max` and against what remains before taking it. */
static inline int rc_str(struct rcur *c, size_t max, struct record_str *out)
{
    uint64_t n = rc_uv(c);
    if (c->failed)
        return RECORD_ETRUNC;
    if (n > max)
        return RECORD_ELIMIT;
    if (n > (uint64_t)(c->end - c->p)) {
        c->failed = 1;
        return RECORD_ETRUNC;
    }
    out->ptr = n ? (const char *)c->p : "";
    out->len = (size_t)n;
    c->p += n;
    return 0;
}

int record_unpack(const void *payload, size_t len, struct record_scratch *scratch,
                  struct record *out, char *why, size_t why_len)
{
    struct rcur r = {payload, (const uint8_t *)payload + len, 0};
    int rc;
#define OFF() ((size_t)(r.p - (const uint8_t *)payload))
    if (len > RECORD_MAX_PACKED_LEN)
        return why_set(why, why_len, RECORD_ELIMIT, "payload of %zu bytes (max %d)", len,
                       RECORD_MAX_PACKED_LEN);
    memset(out, 0, sizeof *out);
    uint8_t version = rc_u8(&r);
    uint8_t stream = rc_u8(&r);
    uint8_t level = rc_u8(&r);
    int64_t ts = rc_sv(&r);
    if (r.failed)
        return why_set(why, why_len, RECORD_ETRUNC, "payload truncated at byte %zu", OFF());
    if (version != RECORD_PACK_VERSION)
        return why_set(why, why_len, RECORD_EFORMAT, "payload version %u unknown at byte 0",
                       version);
    if (stream >= RECORD_STREAM_COUNT || level > RECORD_LEVEL_DEBUG)
        return why_set(why, why_len, RECORD_EFORMAT, "stream %u or level %u out of range", stream,
                       level);
    out->stream = (enum record_stream)stream;
    out->level = level;
    out->ts_ns = ts;
    if ((rc = rc_str(&r, RECORD_MAX_KEY_LEN, &out->name)) < 0 ||
        (rc = rc_str(&r, RECORD_MAX_VALUE_LEN, &out->message)) < 0)
        return why_set(why, why_len, rc, "name/message at byte %zu: %s", OFF(),
                       record_strerror(rc));
    uint64_t n_tags = rc_uv(&r);
    if (r.failed)
        return why_set(why, why_len, RECORD_ETRUNC, "payload truncated at byte %zu", OFF());
    if (n_tags > RECORD_MAX_TAGS)
        return why_set(why, why_len, RECORD_ELIMIT, "%llu tags at byte %zu (max %d)",
                       (unsigned long long)n_tags, OFF(), RECORD_MAX_TAGS);
    for (size_t i = 0; i < n_tags; i++) {
        if ((rc = rc_str(&r, RECORD_MAX_KEY_LEN, &scratch->tags[i].key)) < 0 ||
            (rc = rc_str(&r, RECORD_MAX_KEY_LEN, &scratch->tags[i].value)) < 0)
            return why_set(why, why_len, rc, "tag %zu at byte %zu: %s", i, OFF(),
                           record_strerror(rc));
    }
    uint64_t n_fields = rc_uv(&r);
    if (r.failed)
        return why_set(why, why_len, RECORD_ETRUNC, "payload truncated at byte %zu", OFF());
    if (n_fields > RECORD_MAX_FIELDS)
        return why_set(why, why_len, RECORD_ELIMIT, "%llu fields at byte %zu (max %d)",
                       (unsigned long long)n_fields, OFF(), RECORD_MAX_FIELDS);
    for (size_t i = 0; i < n_fields; i++) {
        struct record_field *f = &scratch->fields[i];
        if ((rc = rc_str(&r, RECORD_MAX_KEY_LEN, &f->key)) < 0)
            return why_set(why, why_len, rc, "field %zu key at byte %zu: %s", i, OFF(),
                           record_strerror(rc));
        uint8_t type = rc_u8(&r);
        switch (type) {
        case RECORD_FIELD_FLOAT: {
            if (r.end - r.p < 8) {
                r.failed = 1;
                break;
            }
            uint64_t bits = 0;
            for (int k = 0; k < 8; k++)
                bits |= (uint64_t)r.p[k] << (8 * k);
            r.p += 8;
            memcpy(&f->v.f, &bits, sizeof bits);
            break;
        }
        case RECORD_FIELD_INT: f->v.i = rc_sv(&r); break;
        case RECORD_FIELD_UINT: f->v.u = rc_uv(&r); break;
        case RECORD_FIELD_BOOL: {
            uint8_t v = rc_u8(&r);
            if (!r.failed && v > 1)
                return why_set(why, why_len, RECORD_EFORMAT, "bool value %u at byte %zu", v,
                               OFF() - 1);
            f->v.b = v == 1;
            break;
        }
        case RECORD_FIELD_STRING:
            if ((rc = rc_str(&r, RECORD_MAX_VALUE_LEN, &f->v.s)) < 0)
                return why_set(why, why_len, rc, "field %zu value at byte %zu: %s", i, OFF(),
                               record_strerror(rc));
            break;
        default:
            if (r.failed)
                break;
            return why_set(why, why_len, RECORD_EFORMAT, "field type %u unknown at byte %zu", type,
                           OFF() - 1);
        }
        if (r.failed)
            return why_set(why, why_len, RECORD_ETRUNC, "payload truncated at byte %zu", OFF());
        f->type = (enum record_field_type)type;
    }
    if (r.p != r.end)
        return why_set(why, why_len, RECORD_EFORMAT, "%zu trailing bytes at byte %zu",
                       (size_t)(r.end - r.p), OFF());
#undef OFF
    out->tags = n_tags ? scratch->tags : NULL;
    out->n_tags = (size_t)n_tags;
    out->fields = n_fields ? scratch->fields : NULL;
    out->n_fields = (size_t)n_fields;
    return 0;
}

static bool str_eq(const struct record_str *a, const struct record_str *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

bool record_equal(const struct record *a, const struct record *b)
{
    if (a->stream != b->stream || a->seq != b->seq || a->ts_ns != b->ts_ns ||
        a->level != b->level || !str_eq(&a->name, &b->name) || !str_eq(&a->message, &b->message) ||
        a->n_tags != b->n_tags || a->n_fields != b->n_fields)
        return false;
    for (size_t i = 0; i < a->n_tags; i++) {
        if (!str_eq(&a->tags[i].key, &b->tags[i].key) ||
            !str_eq(&a->tags[i].value, &b->tags[i].value))
            return false;
    }
    for (size_t i = 0; i < a->n_fields; i++) {
        const struct record_field *x = &a->fields[i], *y = &b->fields[i];
        if (x->type != y->type || !str_eq(&x->key, &y->key))
            return false;
        switch (x->type) {
        case RECORD_FIELD_FLOAT:
            if (memcmp(&x->v.f, &y->v.f, sizeof x->v.f) != 0)
                return false;
            break;
        case RECORD_FIELD_INT:
            if (x->v.i != y->v.i)
                return false;
            break;
        case RECORD_FIELD_UINT:
            if (x->v.u != y->v.u)
                return false;
            break;
        case RECORD_FIELD_BOOL:
            if (x->v.b != y->v.b)
                return false;
            break;
        case RECORD_FIELD_STRING:
            if (!str_eq(&x->v.s, &y->v.s))
                return false;
            break;
        }
    }
    return true;
}
