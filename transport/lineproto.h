/*
 * lineproto.h - InfluxDB line protocol: a parser into struct record and a formatter back.
 *
 * ferryd's local inputs (HTTP /write, the Unix socket, UDP) and `ferry put` accept line protocol,
 * and codec-bench uses the formatter for its baseline. The grammar is InfluxDB 1.x/2.x's:
 *
 *   measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]
 *
 * - measurement: commas and spaces escaped with a backslash ("\,", "\ ").
 * - tag keys, tag values, field keys: commas, equals signs and spaces escaped ("\,", "\=", "\ ").
 * - field values: float (`1`, `-1.5`, `1e3`, `1.5E-3`; no NaN/Inf), signed integer (`42i`),
 *   unsigned integer (`42u`), string (`"text"`, where `\"` and `\\` are escapes), boolean
 *   (`t`, `T`, `true`, `True`, `TRUE`, `f`, `F`, `false`, `False`, `FALSE`).
 * - timestamp: optional signed integer in the request's precision (ns, us, ms, s), converted to
 *   nanoseconds; overflow of int64 nanoseconds is an error. A missing timestamp takes the
 *   `default_ts_ns` the caller gives (normally "now").
 * - A backslash before any other character is kept literally (as InfluxDB does), so "\\" in a
 *   name or key is two backslashes; only string field values treat "\\" as one.
 * - Lines end at '\n' ("\r\n" accepted); empty lines and lines starting with '#' are skipped.
 * - Text is UTF-8 (docs/wire-format.md "Text encoding"): a line holding ill-formed UTF-8
 *   (overlongs, surrogates, stray continuation bytes...) or a NUL byte anywhere is refused with
 *   LINEPROTO_EENCODING, err->line and err->column naming the offending byte.
 * - Duplicate field keys within one line: the last one wins, like InfluxDB.
 *
 * Every record the parser produces is a metric (stream RECORD_METRIC, seq 0) whose strings point
 * into an internal scratch buffer: it is valid only during the callback.
 *
 * Limits (checked before anything is copied): names, keys and tag values up to
 * RECORD_MAX_KEY_LEN bytes, string values up to RECORD_MAX_VALUE_LEN, at most RECORD_MAX_TAGS
 * tags and RECORD_MAX_FIELDS fields per line, and lines up to LINEPROTO_MAX_LINE bytes.
 */
#ifndef FERRY_TRANSPORT_LINEPROTO_H
#define FERRY_TRANSPORT_LINEPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "transport/record.h"

struct ferry_buf;

/* Longest accepted line, newline excluded. */
#define LINEPROTO_MAX_LINE (1024 * 1024)

enum lineproto_precision {
    LINEPROTO_NS = 0,
    LINEPROTO_US = 1,
    LINEPROTO_MS = 2,
    LINEPROTO_S = 3,
};

/* Parses "ns", "us" (also "u"), "ms", "s" as used by InfluxDB's `precision=` query parameter.
 * Returns 0, or -1 when the name is unknown. */
int lineproto_precision_parse(const char *name, enum lineproto_precision *out);

/* Errors: 0 or one of these (negative). */
enum lineproto_error_code {
    LINEPROTO_OK = 0,
    LINEPROTO_ENOMEM = -1,    /* allocation failed */
    LINEPROTO_ESYNTAX = -2,   /* a line does not follow the grammar; see lineproto_error */
    LINEPROTO_ELIMIT = -3,    /* a line, string, tag or field count exceeds a limit */
    LINEPROTO_ERANGE = -4,    /* a number or timestamp does not fit its type */
    LINEPROTO_ECALLBACK = -5, /* the callback returned non-zero; parsing stopped */
    LINEPROTO_EINVAL = -6,    /* formatter: the record cannot be written (NaN/Inf float, ...) */
    LINEPROTO_EENCODING = -7, /* a line holds ill-formed UTF-8 or a NUL byte */
};
const char *lineproto_strerror(int err);

/* Where and why parsing failed. line and column are 1-based (column counts bytes). */
struct lineproto_error {
    size_t line;
    size_t column;
    int callback_status; /* the callback's non-zero return value for LINEPROTO_ECALLBACK */
    char reason[160];    /* NUL-terminated, e.g. "invalid field value: expected digit" */
};

/* Called once per parsed line. `r` and everything it points to is valid only during the call.
 * Return 0 to continue or non-zero to stop parsing (lineproto_parse then returns
 * LINEPROTO_ECALLBACK and stores the value in err->callback_status). */
typedef int (*lineproto_record_fn)(void *arg, const struct record *r);

/*
 * Parses `len` bytes of line protocol (need not be NUL-terminated; a last line without '\n' is
 * parsed too) and calls `fn` for each line in order. Parsing stops at the first bad line: lines
 * before it were delivered, nothing after it is. `err` (may be NULL) says where and why.
 * Allocates one scratch buffer of at most min(len, LINEPROTO_MAX_LINE) bytes per call; no other
 * allocation. Returns 0 or a negative enum lineproto_error_code.
 */
int lineproto_parse(const char *text, size_t len, enum lineproto_precision precision,
                    int64_t default_ts_ns, lineproto_record_fn fn, void *arg,
                    struct lineproto_error *err) __attribute__((warn_unused_result));

/*
 * Appends one line (with '\n') for `r` to `out`, timestamp in nanoseconds, escaping as the
 * grammar above requires, floats in the shortest form that reads back to the same double.
 * Metrics are written as they are. Logs are written as measurement = source with an extra tag
 * `level=<name>` (after the record's tags) and an extra first field `message="..."`; events as
 * measurement = type. A record without fields gets none (strictly, line protocol needs one; the
 * parser rejects such a line). Returns 0, LINEPROTO_EINVAL (NaN/Inf float, an empty name or
 * one starting with '#', an empty tag key or value, a newline, carriage return or tab in a name,
 * key or tag value, or one of those ending in a backslash) or
 * LINEPROTO_ENOMEM; `out` is unchanged on error.
 */
int lineproto_format(const struct record *r, struct ferry_buf *out)
    __attribute__((warn_unused_result));

#endif
