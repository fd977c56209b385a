/*
 * record.h - the record model that every part of ferry shares.
 *
 * A record is one thing a device knows: a metric sample, a log line, or an event. The model
 * follows the InfluxDB line-protocol model for metrics (measurement, tags, typed fields,
 * nanosecond timestamp) and reuses the same shape for logs and events, so one encoder, one
 * decoder and one export format cover all three:
 *
 *   stream  name              level  message  tags          fields
 *   metric  measurement       -      -        series tags   typed values
 *   log     source (module)   yes    yes      optional      structured fields
 *   event   event type        -      -        optional      the event's body
 *
 * A struct record is a *view*: every pointer in it borrows memory owned by whoever filled it
 * (a parser's input buffer, a decoder's arena, a journal read transaction). It is valid only for
 * the duration of the call or callback that handed it out; copy what you keep.
 *
 * The journal stores records as opaque payloads; record_pack()/record_unpack() (record.c) define
 * that payload, and the batch codec (batch.h) turns many records into one compact wire batch.
 */
#ifndef FERRY_TRANSPORT_RECORD_H
#define FERRY_TRANSPORT_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Streams in priority order: lower value = more important. Also the journal's stream ids. */
enum record_stream {
    RECORD_EVENT = 0,
    RECORD_METRIC = 1,
    RECORD_LOG = 2,
};
#define RECORD_STREAM_COUNT 3

/* "event", "metric", "log"; NULL for an out-of-range value. */
const char *record_stream_name(enum record_stream stream);
/* Parses a stream name; returns 0 or -1. */
int record_stream_parse(const char *name, enum record_stream *out);

/* Field value types, as line protocol has them (float, i-suffixed int, u-suffixed uint,
 * quoted string, boolean). */
enum record_field_type {
    RECORD_FIELD_FLOAT = 0,
    RECORD_FIELD_INT = 1,
    RECORD_FIELD_UINT = 2,
    RECORD_FIELD_STRING = 3,
    RECORD_FIELD_BOOL = 4,
};

/* A length-delimited string view (not NUL-terminated). */
struct record_str {
    const char *ptr;
    size_t len;
};

struct record_tag {
    struct record_str key;
    struct record_str value;
};

struct record_field {
    struct record_str key;
    enum record_field_type type;
    union {
        double f;
        int64_t i;
        uint64_t u;
        bool b;
        struct record_str s;
    } v;
};

/* Log levels follow syslog severities (0 emerg .. 7 debug). */
enum record_log_level {
    RECORD_LEVEL_EMERG = 0,
    RECORD_LEVEL_ALERT = 1,
    RECORD_LEVEL_CRIT = 2,
    RECORD_LEVEL_ERROR = 3,
    RECORD_LEVEL_WARN = 4,
    RECORD_LEVEL_NOTICE = 5,
    RECORD_LEVEL_INFO = 6,
    RECORD_LEVEL_DEBUG = 7,
};
/* The value of a float, int or uint field as a double in *out: 0. A string or bool field: -1. */
int record_field_number(const struct record_field *f, double *out);

const char *record_level_name(enum record_log_level level);
int record_level_parse(const char *name, enum record_log_level *out);

struct record {
    enum record_stream stream;
    uint64_t seq;              /* the stream's sequence number on its device; 0 until journaled */
    int64_t ts_ns;             /* wall-clock nanoseconds as the device saw them */
    struct record_str name;    /* measurement / log source / event type */
    uint8_t level;             /* logs only: enum record_log_level */
    struct record_str message; /* logs only */
    const struct record_tag *tags;
    size_t n_tags;
    const struct record_field *fields;
    size_t n_fields;
};

/* ---- Limits every producer and reader of records enforces (docs/wire-format.md §6) ---------- */

/* Longest name (measurement / source / event type), tag key, tag value and field key. */
#define RECORD_MAX_KEY_LEN 1024
/* Longest log message and string field value. */
#define RECORD_MAX_VALUE_LEN 65536
/* Most tags and fields one record may carry. */
#define RECORD_MAX_TAGS 64
#define RECORD_MAX_FIELDS 256
/* Largest journal payload record_pack() produces (everything above at its maximum fits well
 * below this only for sane records; record_pack() refuses anything larger). */
#define RECORD_MAX_PACKED_LEN (1024 * 1024)

/* Errors of record_pack()/record_unpack()/record_check(): 0 or one of these (negative). */
enum record_error {
    RECORD_OK = 0,
    RECORD_ENOMEM = -1,  /* the output buffer could not grow (or hit its max) */
    RECORD_EINVAL = -2,  /* bad stream, level, field type, or a NULL pointer with a length */
    RECORD_ELIMIT = -3,  /* a string, tag count, field count or the payload exceeds a limit */
    RECORD_ETRUNC = -4,  /* the payload ends inside a value */
    RECORD_EFORMAT = -5, /* the payload is malformed (bad version byte, trailing bytes, ...) */
};
const char *record_strerror(int err);

/* Checks a record against the limits above and the enums. Returns 0 or RECORD_EINVAL /
 * RECORD_ELIMIT; when `why` is not NULL it receives a short NUL-terminated reason. */
int record_check(const struct record *r, char *why, size_t why_len)
    __attribute__((warn_unused_result));

/*
 * The journal payload of one record (docs/wire-format.md §7). The journal stores it as an opaque
 * value keyed by (stream, seq), so the payload does NOT carry `seq`; it carries everything else:
 *
 *   u8 version (=1) | u8 stream | u8 level | svarint ts_ns | str name | str message
 *   | uvarint n_tags { str key | str value } | uvarint n_fields { str key | u8 type | value }
 *
 * where str = uvarint length + bytes and value is float: 8 bytes LE bit pattern, int: svarint,
 * uint: uvarint, bool: u8 0/1, string: str. A payload is at most a few bytes longer than the
 * record's strings, so it doubles as the cheap way to copy a record you want to keep.
 *
 * record_pack() appends the payload of `r` to `out` (record_check() first; `out` is unchanged on
 * error). Returns 0, RECORD_EINVAL, RECORD_ELIMIT or RECORD_ENOMEM.
 */
struct ferry_buf;
int record_pack(const struct record *r, struct ferry_buf *out) __attribute__((warn_unused_result));

/* Room record_unpack() needs for the tag and field arrays of one record; no allocation. A
 * scratch may be reused for the next record once the previous one is no longer needed. */
struct record_scratch {
    struct record_tag tags[RECORD_MAX_TAGS];
    struct record_field fields[RECORD_MAX_FIELDS];
};

/*
 * Parses a payload made by record_pack(). On success *out is a view: its strings point into
 * `payload` and its tag/field arrays into `scratch`, so it is valid while both are; out->seq is
 * set to 0 (the caller knows the journal's seq). Every length is checked against what remains
 * and against the limits above before use. Returns 0, RECORD_ETRUNC, RECORD_EFORMAT,
 * RECORD_ELIMIT or RECORD_EINVAL; when `why` is not NULL it receives the reason and byte offset.
 */
int record_unpack(const void *payload, size_t len, struct record_scratch *scratch,
                  struct record *out, char *why, size_t why_len)
    __attribute__((warn_unused_result));

/* Name of a field type ("float", "int", "uint", "string", "bool"); NULL if out of range. */
const char *record_field_type_name(enum record_field_type type);

/* True when two records are equal value for value (floats compared by bit pattern, seq
 * included). Tests and the codec's self-checks use it. */
bool record_equal(const struct record *a, const struct record *b);

#endif
