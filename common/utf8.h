/*
 * utf8.h - the one UTF-8 validator of the project, and the writers that make any bytes safe for
 * an output: JSON (buf.h's ferry_buf_append_json_string uses ferry_utf8_next), Prometheus label
 * values, and text printed for a person (terminals, log lines, CLI tables).
 *
 * The rule (docs/wire-format.md "Text encoding"): strings are UTF-8. The edges that take new data
 * (ferryd's line protocol and log inputs) refuse a line holding invalid UTF-8 or a NUL byte with
 * its line and column; what was stored anyway (old agents, other producers) is written out by the
 * ingest with every ill-formed sequence replaced by U+FFFD, so every output is valid whatever is
 * stored.
 *
 * Well-formed means Unicode's Table 3-7: no overlong forms, no surrogates (U+D800..U+DFFF), nothing
 * above U+10FFFF. An ill-formed sequence is consumed as its "maximal subpart" (the longest prefix
 * of a well-formed sequence, at least one byte), which is what the WHATWG decoder and Python's
 * `errors="replace"` do: each such subpart becomes one U+FFFD.
 *
 * None of these functions allocate except through the ferry_buf they append to; appenders return
 * 0 or -1 (out of memory or over the buffer's max), leaving the buffer as it was only in so far
 * as ferry_buf_append does (a partial append is possible; callers discard the buffer on error).
 */
#ifndef FERRY_COMMON_UTF8_H
#define FERRY_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ferry_buf;

/* The code point ferry_utf8_next reports for an ill-formed subpart. */
#define FERRY_UTF8_INVALID 0xFFFFFFFFu

/*
 * Decodes the sequence at p[0..n) (n >= 1). Returns the bytes it consumed (1..4) and sets *cp to
 * the code point, or to FERRY_UTF8_INVALID when those bytes are an ill-formed subpart. Returns 0
 * only when n is 0.
 */
size_t ferry_utf8_next(const void *p, size_t n, uint32_t *cp);

/*
 * Returns the offset of the first byte that starts an ill-formed sequence (or of the first NUL
 * when `allow_nul` is false), or n when all of p[0..n) is well-formed.
 */
size_t ferry_utf8_find_invalid(const void *p, size_t n, bool allow_nul);

/* True when p[0..n) is well-formed UTF-8 (NUL allowed). */
bool ferry_utf8_valid(const void *p, size_t n);

/* Appends p[0..n) with every ill-formed subpart replaced by U+FFFD (EF BF BD). */
int ferry_buf_append_utf8(struct ferry_buf *b, const void *p, size_t n)
    __attribute__((warn_unused_result));

/*
 * Appends p[0..n) escaped for a person reading it on a terminal or in a log: well-formed
 * printable text is kept; tab, newline and carriage return become \t \n \r; other C0 controls and
 * DEL become \xHH; C1 controls (U+0080..U+009F, which some terminals obey) and the bidirectional
 * overrides (U+202A..U+202E, U+2066..U+2069) become \uHHHH; each byte of an ill-formed subpart
 * becomes \xHH (the raw byte stays visible). The result is valid UTF-8 without control bytes.
 */
int ferry_buf_append_escaped(struct ferry_buf *b, const void *p, size_t n)
    __attribute__((warn_unused_result));

/*
 * The same escaping into a fixed buffer (for log lines and messages built with snprintf):
 * writes at most dst_len - 1 bytes and a NUL, never cutting an escape or a character in two.
 * Returns dst. dst_len must be at least 1.
 */
char *ferry_escape_str(char *dst, size_t dst_len, const void *p, size_t n);

/*
 * Appends p[0..n) as the inside of a Prometheus text-format label value (no quotes): backslash,
 * double quote and newline escaped as the format requires (\\ \" \n), other control characters
 * written as the visible text \xHH (as `\\xHH`), ill-formed subparts replaced by U+FFFD. A NUL is
 * a control character like any other: it never ends the value.
 */
int ferry_buf_append_prom_label(struct ferry_buf *b, const void *p, size_t n)
    __attribute__((warn_unused_result));

#endif
