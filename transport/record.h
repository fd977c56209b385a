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
const char *record_level_name(enum record_log_level level);
int record_level_parse(const char *name, enum record_log_level *out);

struct record {
    enum record_stream stream;
    uint64_t seq;  /* the stream's sequence number on its device; 0 until journaled */
    int64_t ts_ns; /* wall-clock nanoseconds as the device saw them */
    struct record_str name;    /* measurement / log source / event type */
    uint8_t level;             /* logs only: enum record_log_level */
    struct record_str message; /* logs only */
    const struct record_tag *tags;
    size_t n_tags;
    const struct record_field *fields;
    size_t n_fields;
};

#endif
