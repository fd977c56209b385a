/*
 * buf.c - growable byte buffer and bounds-checked reader (see buf.h).
 */
#include "common/buf.h"
#include "common/utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ferry_buf_free(struct ferry_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void ferry_buf_reset(struct ferry_buf *b)
{
    b->len = 0;
}

int ferry_buf_reserve(struct ferry_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return -1;
    size_t need = b->len + extra;
    if (b->max && need > b->max)
        return -1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    if (b->max && cap > b->max)
        cap = b->max;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int ferry_buf_append(struct ferry_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (ferry_buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int ferry_buf_append_u8(struct ferry_buf *b, uint8_t v)
{
    return ferry_buf_append(b, &v, 1);
}

int ferry_buf_append_le16(struct ferry_buf *b, uint16_t v)
{
    uint8_t t[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    return ferry_buf_append(b, t, 2);
}

int ferry_buf_append_le32(struct ferry_buf *b, uint32_t v)
{
    uint8_t t[4];
    for (int i = 0; i < 4; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    return ferry_buf_append(b, t, 4);
}

int ferry_buf_append_le64(struct ferry_buf *b, uint64_t v)
{
    uint8_t t[8];
    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    return ferry_buf_append(b, t, 8);
}

int ferry_buf_append_uvarint(struct ferry_buf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    while (v >= 0x80) {
        t[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (uint8_t)v;
    return ferry_buf_append(b, t, n);
}

int ferry_buf_append_svarint(struct ferry_buf *b, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    return ferry_buf_append_uvarint(b, z);
}

int ferry_buf_printf(struct ferry_buf *b, const char *fmt, ...)
{
    /* Formats into the room the buffer already has (a growing buffer usually has some): one pass
     * when the text fits, a second after growing only when it does not. */
    size_t room = b->cap - b->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(room > 0 ? (char *)b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n >= room) {
        if (ferry_buf_reserve(b, (size_t)n + 1) < 0)
            return -1;
        va_start(ap, fmt);
        vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
    return 0;
}

/* RFC 8259 escapes for the control characters; everything else well-formed is copied as it is
 * and an ill-formed subpart becomes U+FFFD (utf8.h), so the literal is valid JSON whatever the
 * bytes were. */
int ferry_buf_append_json_string(struct ferry_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (n == 0) /* s may then be NULL (an empty buffer's data) */
        return ferry_buf_append(b, "\"\"", 2);
    if (ferry_buf_append_u8(b, '"') < 0)
        return -1;
    size_t run = 0; /* start of the current run of bytes that need no escaping */
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t k = 1;
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        char esc[6] = {'\\', 0};
        size_t len = 2;
        if (c >= 0x80) {
            uint32_t cp;
            k = ferry_utf8_next(s + i, n - i, &cp);
            if (cp != FERRY_UTF8_INVALID) {
                i += k;
                continue;
            }
            memcpy(esc, "\xef\xbf\xbd", 3);
            len = 3;
        } else {
            switch (c) {
            case '"': esc[1] = '"'; break;
            case '\\': esc[1] = '\\'; break;
            case '\n': esc[1] = 'n'; break;
            case '\r': esc[1] = 'r'; break;
            case '\t': esc[1] = 't'; break;
            default:
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                len = 6;
            }
        }
        if (ferry_buf_append(b, s + run, i - run) < 0 || ferry_buf_append(b, esc, len) < 0)
            return -1;
        i += k;
        run = i;
    }
    if (ferry_buf_append(b, s + run, n - run) < 0)
        return -1;
    return ferry_buf_append_u8(b, '"');
}

void ferry_reader_init(struct ferry_reader *r, const void *p, size_t n)
{
    r->p = p;
    r->left = n;
    r->failed = 0;
}

const uint8_t *ferry_read_bytes(struct ferry_reader *r, size_t n)
{
    if (r->failed || n > r->left) {
        r->failed = 1;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

uint8_t ferry_read_u8(struct ferry_reader *r)
{
    const uint8_t *p = ferry_read_bytes(r, 1);
    return p ? p[0] : 0;
}

uint16_t ferry_read_le16(struct ferry_reader *r)
{
    const uint8_t *p = ferry_read_bytes(r, 2);
    return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

uint32_t ferry_read_le32(struct ferry_reader *r)
{
    const uint8_t *p = ferry_read_bytes(r, 4);
    if (!p)
        return 0;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t ferry_read_le64(struct ferry_reader *r)
{
    const uint8_t *p = ferry_read_bytes(r, 8);
    if (!p)
        return 0;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

uint64_t ferry_read_uvarint(struct ferry_reader *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->failed || r->left == 0) {
            r->failed = 1;
            return 0;
        }
        uint8_t byte = *r->p++;
        r->left--;
        /* The tenth byte may only carry the top bit of a 64-bit value. */
        if (shift == 63 && byte > 1) {
            r->failed = 1;
            return 0;
        }
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80))
            return v;
    }
    r->failed = 1;
    return 0;
}

int64_t ferry_read_svarint(struct ferry_reader *r)
{
    uint64_t z = ferry_read_uvarint(r);
    return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}
