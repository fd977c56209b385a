/*
 * utf8.c - UTF-8 validation, replacement and escaping (see utf8.h for the rule).
 *
 * ferry_utf8_next() is the only decoder: every other function here, and the JSON writer in
 * buf.c, walk text with it, so validation and replacement cannot disagree between outputs.
 * ASCII is the common case everywhere and takes the first branch.
 */
#include "common/utf8.h"

#include <string.h>

#include "common/buf.h"

size_t ferry_utf8_next(const void *p, size_t n, uint32_t *cp)
{
    const uint8_t *s = p;
    if (n == 0) {
        *cp = FERRY_UTF8_INVALID;
        return 0;
    }
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    /* Table 3-7: the lead byte fixes the length and the range of the second byte. */
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf;
    uint32_t v;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        v = c & 0x0f;
        if (c == 0xe0)
            lo = 0xa0; /* overlong below */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates above */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        v = c & 0x07;
        if (c == 0xf0)
            lo = 0x90; /* overlong below */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        *cp = FERRY_UTF8_INVALID; /* 0x80..0xc1 (continuation, overlong lead), 0xf5..0xff */
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if (i >= n) {
            *cp = FERRY_UTF8_INVALID; /* truncated: the maximal subpart is what we have */
            return i;
        }
        uint8_t t = s[i];
        if (t < lo || t > hi) {
            *cp = FERRY_UTF8_INVALID;
            return i;
        }
        lo = 0x80;
        hi = 0xbf;
        v = v << 6 | (t & 0x3f);
    }
    *cp = v;
    return len;
}

size_t ferry_utf8_find_invalid(const void *p, size_t n, bool allow_nul)
{
    const uint8_t *s = p;
    size_t i = 0;
    while (i < n) {
        if (s[i] >= 0x01 && s[i] < 0x80) {
            i++;
            continue;
        }
        if (s[i] == 0) {
            if (!allow_nul)
                return i;
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = ferry_utf8_next(s + i, n - i, &cp);
        if (cp == FERRY_UTF8_INVALID)
            return i;
        i += k;
    }
    return n;
}

bool ferry_utf8_valid(const void *p, size_t n)
{
    return ferry_utf8_find_invalid(p, n, true) == n;
}

static const char hex_digits[] = "0123456789abcdef";

int ferry_buf_append_utf8(struct ferry_buf *b, const void *p, size_t n)
{
    const uint8_t *s = p;
    size_t run = 0, i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = ferry_utf8_next(s + i, n - i, &cp);
        if (cp != FERRY_UTF8_INVALID) {
            i += k;
            continue;
        }
        if (ferry_buf_append(b, s + run, i - run) < 0 || ferry_buf_append(b, "\xef\xbf\xbd", 3) < 0)
            return -1;
        i += k;
        run = i;
    }
    return ferry_buf_append(b, s + run, n - run);
}

/* What a person must not see raw: C0 controls, DEL, C1 controls, bidirectional overrides. */
static bool needs_escape_for_person(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

/* Writes the escape of one character or ill-formed subpart into out[16]; returns its length. */
static size_t person_escape(const uint8_t *s, size_t k, uint32_t cp, char *out)
{
    size_t len = 0;
    if (cp == FERRY_UTF8_INVALID) {
        for (size_t j = 0; j < k; j++) {
            out[len++] = '\\';
            out[len++] = 'x';
            out[len++] = hex_digits[s[j] >> 4];
            out[len++] = hex_digits[s[j] & 15];
        }
        return len;
    }
    if (cp == '\t' || cp == '\n' || cp == '\r') {
        out[0] = '\\';
        out[1] = cp == '\t' ? 't' : cp == '\n' ? 'n' : 'r';
        return 2;
    }
    if (cp < 0x80) {
        out[0] = '\\';
        out[1] = 'x';
        out[2] = hex_digits[cp >> 4];
        out[3] = hex_digits[cp & 15];
        return 4;
    }
    out[0] = '\\';
    out[1] = 'u';
    for (int j = 0; j < 4; j++)
        out[2 + j] = hex_digits[(cp >> (12 - 4 * j)) & 15];
    return 6;
}

int ferry_buf_append_escaped(struct ferry_buf *b, const void *p, size_t n)
{
    const uint8_t *s = p;
    size_t run = 0, i = 0;
    while (i < n) {
        if (s[i] >= 0x20 && s[i] < 0x7f) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = ferry_utf8_next(s + i, n - i, &cp);
        if (cp != FERRY_UTF8_INVALID && !needs_escape_for_person(cp)) {
            i += k;
            continue;
        }
        char esc[16];
        size_t len = person_escape(s + i, k, cp, esc);
        if (ferry_buf_append(b, s + run, i - run) < 0 || ferry_buf_append(b, esc, len) < 0)
            return -1;
        i += k;
        run = i;
    }
    return ferry_buf_append(b, s + run, n - run);
}

char *ferry_escape_str(char *dst, size_t dst_len, const void *p, size_t n)
{
    const uint8_t *s = p;
    size_t used = 0, i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = ferry_utf8_next(s + i, n - i, &cp);
        char esc[16];
        const char *piece = (const char *)s + i;
        size_t len = k;
        if (cp == FERRY_UTF8_INVALID || needs_escape_for_person(cp)) {
            len = person_escape(s + i, k, cp, esc);
            piece = esc;
        }
        if (used + len >= dst_len)
            break; /* no room for the whole piece: stop before it */
        memcpy(dst + used, piece, len);
        used += len;
        i += k;
    }
    dst[used] = '\0';
    return dst;
}

int ferry_buf_append_prom_label(struct ferry_buf *b, const void *p, size_t n)
{
    const uint8_t *s = p;
    size_t run = 0, i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k;
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\' && s[i] != '"') {
            i++;
            continue;
        }
        k = ferry_utf8_next(s + i, n - i, &cp);
        char esc[16];
        size_t len;
        if (cp == FERRY_UTF8_INVALID) {
            memcpy(esc, "\xef\xbf\xbd", 3);
            len = 3;
        } else if (cp == '\\' || cp == '"') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            len = 2;
        } else if (cp == '\n') {
            memcpy(esc, "\\n", 2);
            len = 2;
        } else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
            /* The format has no escape for these: the visible text \xHH, its backslash escaped. */
            esc[0] = '\\';
            esc[1] = '\\';
            esc[2] = 'x';
            esc[3] = hex_digits[(cp >> 4) & 15];
            esc[4] = hex_digits[cp & 15];
            len = 5;
        } else {
            i += k;
            continue;
        }
        if (ferry_buf_append(b, s + run, i - run) < 0 || ferry_buf_append(b, esc, len) < 0)
            return -1;
        i += k;
        run = i;
    }
    return ferry_buf_append(b, s + run, n - run);
}
