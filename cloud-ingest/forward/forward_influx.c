/*
 * forward_influx.c - InfluxDB 1.x line protocol (forward_impl.h), gzip for its request bodies,
 * and the UTF-8 repair both sinks use (common/utf8.c's, without NUL bytes).
 *
 * Escaping follows the line protocol reference of InfluxDB 1.x: measurement: comma and space;
 * tag keys, tag values and field keys: comma, equals sign and space; string field values: double
 * quote and backslash. Line protocol has no escape for newlines outside string values, so they
 * become spaces there.
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include <zlib.h>

#include "cloud-ingest/forward/forward_impl.h"
#include "common/buf.h"
#include "common/utf8.h"

/* common/utf8.c replaces ill-formed text; NUL bytes are dropped on top of it, since label
 * values and protobuf strings are C strings here. */
int fwd_utf8_append(struct ferry_buf *out, const char *s, size_t n)
{
    while (n > 0) {
        const char *nul = memchr(s, '\0', n);
        size_t seg = nul != NULL ? (size_t)(nul - s) : n;
        if (ferry_buf_append_utf8(out, s, seg) != 0)
            return -1;
        if (nul == NULL)
            break;
        s += seg + 1;
        n -= seg + 1;
    }
    return 0;
}

/* Appends s escaped for a line protocol position: `special` lists what takes a backslash. */
static int lp_escape(struct ferry_buf *b, const char *s, size_t n, const char *special)
{
    struct ferry_buf clean = FERRY_BUF_INIT;
    if (fwd_utf8_append(&clean, s, n) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < clean.len && rc == 0; i++) {
        char c = (char)clean.data[i];
        if (c == '\n' || c == '\r')
            c = ' ';
        if (strchr(special, c) != NULL && c != '\0')
            rc = ferry_buf_append_u8(b, '\\');
        if (rc == 0)
            rc = ferry_buf_append_u8(b, (uint8_t)c);
    }
    ferry_buf_free(&clean);
    return rc;
}

/* A string field value: quotes and backslashes escaped, everything else kept (1.x reads
 * newlines inside a quoted value). */
static int lp_string(struct ferry_buf *b, const char *s, size_t n)
{
    struct ferry_buf clean = FERRY_BUF_INIT;
    if (fwd_utf8_append(&clean, s, n) != 0)
        return -1;
    int rc = ferry_buf_append_u8(b, '"');
    for (size_t i = 0; i < clean.len && rc == 0; i++) {
        uint8_t c = clean.data[i];
        if (c == '"' || c == '\\')
            rc = ferry_buf_append_u8(b, '\\');
        if (rc == 0)
            rc = ferry_buf_append_u8(b, c);
    }
    if (rc == 0)
        rc = ferry_buf_append_u8(b, '"');
    ferry_buf_free(&clean);
    return rc;
}

static int64_t to_precision(int64_t ts_ns, const char *precision)
{
    int64_t div = 1;
    if (strcmp(precision, "us") == 0)
        div = 1000;
    else if (strcmp(precision, "ms") == 0)
        div = 1000000;
    else if (strcmp(precision, "s") == 0)
        div = 1000000000;
    return ts_ns / div - (ts_ns % div < 0 ? 1 : 0);
}

static int lp_field(struct ferry_buf *b, const struct record_field *f,
                    enum ingest_forward_uint uint_as, bool *written, uint64_t *skipped)
{
    int rc = 0;
    if (f->type == RECORD_FIELD_FLOAT && !isfinite(f->v.f)) {
        (*skipped)++;
        return 0;
    }
    if (*written)
        rc = ferry_buf_append_u8(b, ',');
    if (rc == 0)
        rc = lp_escape(b, f->key.ptr, f->key.len, ",= ");
    if (rc == 0)
        rc = ferry_buf_append_u8(b, '=');
    if (rc != 0)
        return -1;
    switch (f->type) {
    case RECORD_FIELD_FLOAT: rc = ferry_buf_printf(b, "%.17g", f->v.f); break;
    case RECORD_FIELD_INT: rc = ferry_buf_printf(b, "%" PRId64 "i", f->v.i); break;
    case RECORD_FIELD_UINT:
        if (uint_as == INGEST_FORWARD_UINT_UNSIGNED)
            rc = ferry_buf_printf(b, "%" PRIu64 "u", f->v.u);
        else if (f->v.u <= INT64_MAX)
            rc = ferry_buf_printf(b, "%" PRIu64 "i", f->v.u);
        else
            rc = ferry_buf_printf(b, "%.17g", (double)f->v.u);
        break;
    case RECORD_FIELD_BOOL:
        rc = ferry_buf_append(b, f->v.b ? "true" : "false", f->v.b ? 4 : 5);
        break;
    case RECORD_FIELD_STRING: rc = lp_string(b, f->v.s.ptr, f->v.s.len); break;
    default: return -1;
    }
    *written = true;
    return rc;
}

int fwd_influx_line(struct ferry_buf *out, const char *device, const struct record *r,
                    int64_t ts_ns, const char *precision, enum ingest_forward_uint uint_as,
                    uint64_t *lines, uint64_t *skipped)
{
    size_t start = out->len;
    int rc = lp_escape(out, r->name.len > 0 ? r->name.ptr : "unnamed",
                       r->name.len > 0 ? r->name.len : 7, ", ");
    if (rc == 0)
        rc = ferry_buf_append(out, ",device=", 8);
    if (rc == 0)
        rc = lp_escape(out, device, strlen(device), ",= ");
    if (rc == 0 && r->stream == RECORD_LOG) {
        const char *lv = record_level_name((enum record_log_level)r->level);
        rc = ferry_buf_printf(out, ",level=%s", lv != NULL ? lv : "unknown");
    }
    for (size_t i = 0; i < r->n_tags && rc == 0; i++) {
        const struct record_tag *t = &r->tags[i];
        if (t->key.len == 0 || t->value.len == 0)
            continue; /* line protocol has no empty tag keys or values */
        bool reserved =
            (t->key.len == 6 && memcmp(t->key.ptr, "device", 6) == 0) ||
            (r->stream == RECORD_LOG && t->key.len == 5 && memcmp(t->key.ptr, "level", 5) == 0);
        rc = ferry_buf_append(out, reserved ? ",tag_" : ",", reserved ? 5 : 1);
        if (rc == 0)
            rc = lp_escape(out, t->key.ptr, t->key.len, ",= ");
        if (rc == 0)
            rc = ferry_buf_append_u8(out, '=');
        if (rc == 0)
            rc = lp_escape(out, t->value.ptr, t->value.len, ",= ");
    }
    if (rc == 0)
        rc = ferry_buf_append_u8(out, ' ');
    bool written = false;
    if (rc == 0 && r->stream == RECORD_LOG) {
        rc = ferry_buf_append(out, "message=", 8);
        if (rc == 0)
            rc = lp_string(out, r->message.ptr, r->message.len);
        written = true;
    }
    for (size_t i = 0; i < r->n_fields && rc == 0; i++) {
        if (r->stream == RECORD_LOG && r->fields[i].key.len == 7 &&
            memcmp(r->fields[i].key.ptr, "message", 7) == 0) {
            (*skipped)++; /* the log's own message wins */
            continue;
        }
        rc = lp_field(out, &r->fields[i], uint_as, &written, skipped);
    }
    if (rc != 0) {
        out->len = start;
        return -1;
    }
    if (!written) {
        out->len = start; /* a line needs a field */
        return 0;
    }
    if (ferry_buf_printf(out, " %" PRId64 "\n", to_precision(ts_ns, precision)) != 0) {
        out->len = start;
        return -1;
    }
    (*lines)++;
    return 0;
}

int fwd_gzip(const uint8_t *in, size_t len, struct ferry_buf *out)
{
    ferry_buf_reset(out);
    z_stream z;
    memset(&z, 0, sizeof(z));
    /* windowBits 15 + 16: a gzip header and trailer instead of zlib's */
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    uLong bound = deflateBound(&z, (uLong)len);
    if (len > UINT32_MAX || ferry_buf_reserve(out, bound) != 0) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = out->data;
    z.avail_out = (uInt)bound;
    int zrc = deflate(&z, Z_FINISH);
    out->len = z.total_out;
    deflateEnd(&z);
    return zrc == Z_STREAM_END ? 0 : -1;
}
