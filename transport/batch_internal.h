/*
 * batch_internal.h - what the batch header code (batch.c), the body encoder (batch_encode.c) and
 * the body decoder (batch_decode.c) share and nobody else needs: header byte offsets (§3), body
 * constants (§5), varint helpers, and the error-info setter.
 */
#ifndef FERRY_TRANSPORT_BATCH_INTERNAL_H
#define FERRY_TRANSPORT_BATCH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "transport/batch.h"

/* Header byte offsets (docs/wire-format.md §3). */
enum {
    BH_MAGIC = 0,
    BH_VERSION = 4,
    BH_FLAGS = 5,
    BH_HEADER_LEN = 6,
    BH_BODY_LEN = 8,
    BH_BODY_RAW_LEN = 12,
    BH_RECORD_COUNT = 16,
    BH_PACKED_BYTES = 20,
    BH_KEY_ID = 24,
    BH_BATCH_ID = 32,
    BH_BUILD_TIME = 48,
    BH_SEND_TIME = 56,
    BH_COMPRESSION = 64,
    BH_DEVICE_ID_LEN = 65,
    BH_RANGE_COUNT = 66,
    BH_RESERVED1 = 67,
    BH_GAP_COUNT = 68,
    BH_RESERVED2 = 70,
    BH_DICT_ID = 72,
    BH_BODY_HASH = 76,
    BH_DEVICE_ID = 108, /* == BATCH_FIXED_HEADER_LEN */
};
#define BH_RANGE_LEN 17 /* u8 stream, u64 first, u64 last */
#define BH_GAP_LEN 18   /* u8 stream, u8 reason, u64 first, u64 last */

/* The header's length for a version and its counts (§3): version 2 adds the backlog. */
static inline size_t batch__header_len(unsigned version, size_t device_id_len, size_t n_ranges,
                                       size_t n_gaps)
{
    return BATCH_FIXED_HEADER_LEN + device_id_len + BH_RANGE_LEN * n_ranges + BH_GAP_LEN * n_gaps +
           (version >= 2 ? BATCH_BACKLOG_LEN : 0);
}

/* Body (§5). */
#define BODY_FORMAT 1
#define BODY_SERIES_HAS_MESSAGE 0x01 /* series flag: records carry level + message */
#define BODY_SERIES_FLAGS_KNOWN 0x01
#define BODY_TEMPLATE_SLOT '\x01' /* marks where a number was taken out of a message */
#define BODY_MAX_NUMBER_DIGITS 18 /* numbers up to 18 digits fit int64 exactly */
#define BODY_MAX_DECIMAL_EXP 9    /* floats: value * 10^k, k in 0..9 */
#define BODY_MAX_TS_UNIT_EXP 9    /* timestamps: multiples of 10^e ns, e in 0..9 */
#define BODY_FIXED_COLUMNS 7      /* series ids, seqs, ts, levels, msg kinds, raw msgs, numbers */

enum body_ts_mode {
    BODY_TS_RECORD_DELTA = 0, /* per record, delta to the previous record's ts */
    BODY_TS_SERIES_DOD = 1,   /* per series: first, delta, then delta-of-delta */
};

enum body_float_enc {
    BODY_FLOAT_RAW = 0,     /* 8 bytes LE per value */
    BODY_FLOAT_XOR = 1,     /* control byte + middle bytes of value XOR previous */
    BODY_FLOAT_DECIMAL = 2, /* u8 k, u8 order, then svarint (dod of) value*10^k */
};
enum body_int_order {
    BODY_INT_DELTA = 0,
    BODY_INT_DOD = 1,
};

extern const double batch__pow10[BODY_MAX_DECIMAL_EXP + 1];
extern const int64_t batch__pow10_i[BODY_MAX_TS_UNIT_EXP + 1];

static inline size_t batch__uvarint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint64_t batch__zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t batch__unzigzag(uint64_t z)
{
    return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

/* Writes v as a uvarint at p (room for 10 bytes assumed); returns the end. */
static inline uint8_t *batch__put_uv(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Wrapping arithmetic on int64 (well defined through uint64). */
static inline int64_t batch__sub(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a - (uint64_t)b);
}
static inline int64_t batch__add(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

/* Fills ei (if not NULL) and returns code. */
int batch__fail(struct batch_errinfo *ei, int code, size_t offset, int in_body, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));

/* Writes the header for h (its header_len, counts and device id must be consistent) followed by
 * a zeroed signature slot. */
int batch__header_encode(const struct batch_header *h, struct ferry_buf *out);
/* Signs bytes [0, header_len) and writes the signature at header_len. */
int batch__sign(uint8_t *batch, size_t header_len, const uint8_t sk[BATCH_SECRET_KEY_LEN]);
/* Decodes the body `raw` (raw_len bytes) of a batch with header h, calling fn per record. */
struct batch_decoder;
int batch__decode_body(struct batch_decoder *d, const struct batch_header *h, const uint8_t *raw,
                       size_t raw_len, batch_record_fn fn, void *arg, struct batch_errinfo *ei);

#endif
