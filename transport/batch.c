/*
 * batch.c - the batch header (docs/wire-format.md §3), its signature (§4), identity helpers and
 * error names. The body codec lives in batch_encode.c and batch_decode.c.
 *
 * Design notes:
 *  1. The header is parsed with fixed offsets and every variable part (device id, ranges, gaps)
 *     is sized by counts that are checked against §6 and against header_len before they are
 *     read, so peeking costs at most BATCH_MAX_HEADER_LEN bytes of work whatever the input.
 *  2. The version byte is checked right after the magic and before anything else, so a reader
 *     answers BATCH_EVERSION for every batch of a future version, however its header looks.
 *  3. The signature covers the header only; the header binds the body through its BLAKE2b-256
 *     hash. batch_verify() checks key id, then signature, then body hash: all before the body is
 *     decompressed (ARCHITECTURE.md invariant 4).
 */
#include "transport/batch.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "transport/batch_internal.h"

const double batch__pow10[BODY_MAX_DECIMAL_EXP + 1] = {1e0, 1e1, 1e2, 1e3, 1e4,
                                                       1e5, 1e6, 1e7, 1e8, 1e9};
const int64_t batch__pow10_i[BODY_MAX_TS_UNIT_EXP + 1] = {
    1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000};

const char *batch_strerror(int err)
{
    switch (err) {
    case BATCH_OK: return "success";
    case BATCH_ENOMEM: return "out of memory";
    case BATCH_EINVAL: return "invalid argument or record";
    case BATCH_ETRUNC: return "batch truncated or has trailing bytes";
    case BATCH_EMAGIC: return "not a ferry batch (bad magic)";
    case BATCH_EVERSION: return "unsupported batch version";
    case BATCH_EHEADER: return "malformed batch header";
    case BATCH_ELIMIT: return "batch exceeds a limit";
    case BATCH_EKEY: return "key id does not match the device key";
    case BATCH_ESIG: return "signature does not verify";
    case BATCH_EDICT: return "unknown compression dictionary";
    case BATCH_EDECOMPRESS: return "decompression failed";
    case BATCH_EBOMB: return "decompressed size exceeds the declared size or limit";
    case BATCH_EBODY: return "malformed batch body";
    case BATCH_EFULL: return "batch is full";
    case BATCH_ECALLBACK: return "stopped by callback";
    case BATCH_ECRYPTO: return "signing failed";
    case BATCH_ECOMPRESS: return "compression failed";
    }
    return "unknown batch error";
}

int batch__fail(struct batch_errinfo *ei, int code, size_t offset, int in_body, const char *fmt,
                ...)
{
    if (ei) {
        va_list ap;
        ei->code = code;
        ei->offset = offset;
        ei->in_body = in_body != 0;
        va_start(ap, fmt);
        int n = vsnprintf(ei->msg, sizeof ei->msg, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < sizeof ei->msg)
            snprintf(ei->msg + n, sizeof ei->msg - (size_t)n, " (at %s byte %zu)",
                     in_body ? "body" : "batch", offset);
    }
    return code;
}

void batch_key_id(const uint8_t public_key[BATCH_PUBLIC_KEY_LEN], uint8_t out[BATCH_KEY_ID_LEN])
{
    uint8_t h[32];
    crypto_generichash(h, sizeof h, public_key, BATCH_PUBLIC_KEY_LEN, NULL, 0);
    memcpy(out, h, BATCH_KEY_ID_LEN);
}

bool batch_device_id_valid(const char *id, size_t len)
{
    if (!id || len == 0 || len > BATCH_MAX_DEVICE_ID)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

const char *batch_gap_reason_name(uint8_t reason)
{
    switch (reason) {
    case BATCH_GAP_EVICTED: return "evicted";
    case BATCH_GAP_CORRUPT: return "corrupt";
    case BATCH_GAP_REJECTED: return "rejected";
    }
    return "unknown";
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}
static void wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int batch__header_encode(const struct batch_header *h, struct ferry_buf *out)
{
    static const uint8_t zero_sig[BATCH_SIGNATURE_LEN];
    size_t start = out->len;
    int ok = ferry_buf_append(out, BATCH_MAGIC, 4) == 0 &&
             ferry_buf_append_u8(out, h->version) == 0 && ferry_buf_append_u8(out, 0) == 0 &&
             ferry_buf_append_le16(out, (uint16_t)h->header_len) == 0 &&
             ferry_buf_append_le32(out, h->body_len) == 0 &&
             ferry_buf_append_le32(out, h->body_raw_len) == 0 &&
             ferry_buf_append_le32(out, h->record_count) == 0 &&
             ferry_buf_append_le32(out, h->packed_bytes) == 0 &&
             ferry_buf_append(out, h->key_id, BATCH_KEY_ID_LEN) == 0 &&
             ferry_buf_append(out, h->batch_id, BATCH_ID_LEN) == 0 &&
             ferry_buf_append_le64(out, (uint64_t)h->build_time_ns) == 0 &&
             ferry_buf_append_le64(out, (uint64_t)h->send_time_ns) == 0 &&
             ferry_buf_append_u8(out, h->compression) == 0 &&
             ferry_buf_append_u8(out, (uint8_t)h->device_id_len) == 0 &&
             ferry_buf_append_u8(out, (uint8_t)h->n_ranges) == 0 &&
             ferry_buf_append_u8(out, 0) == 0 &&
             ferry_buf_append_le16(out, (uint16_t)h->n_gaps) == 0 &&
             ferry_buf_append_le16(out, 0) == 0 && ferry_buf_append_le32(out, h->dict_id) == 0 &&
             ferry_buf_append(out, h->body_hash, BATCH_HASH_LEN) == 0 &&
             ferry_buf_append(out, h->device_id, h->device_id_len) == 0;
    for (size_t i = 0; ok && i < h->n_ranges; i++) {
        ok = ferry_buf_append_u8(out, (uint8_t)h->ranges[i].stream) == 0 &&
             ferry_buf_append_le64(out, h->ranges[i].first) == 0 &&
             ferry_buf_append_le64(out, h->ranges[i].last) == 0;
    }
    for (size_t i = 0; ok && i < h->n_gaps; i++) {
        ok = ferry_buf_append_u8(out, (uint8_t)h->gaps[i].stream) == 0 &&
             ferry_buf_append_u8(out, h->gaps[i].reason) == 0 &&
             ferry_buf_append_le64(out, h->gaps[i].first) == 0 &&
             ferry_buf_append_le64(out, h->gaps[i].last) == 0;
    }
    for (int s = 0; ok && h->version >= 2 && s < RECORD_STREAM_COUNT; s++)
        ok = ferry_buf_append_le64(out, h->backlog[s]) == 0;
    ok = ok && out->len - start == h->header_len &&
         ferry_buf_append(out, zero_sig, sizeof zero_sig) == 0;
    if (!ok) {
        out->len = start;
        return BATCH_ENOMEM;
    }
    return 0;
}

int batch_peek_header(const void *batch, size_t len, struct batch_header *h,
                      struct batch_errinfo *ei)
{
    const uint8_t *p = batch;
    if (!batch || !h)
        return batch__fail(ei, BATCH_EINVAL, 0, 0, "NULL batch or header");
    memset(h, 0, sizeof *h);
    if (len < 4)
        return batch__fail(ei, BATCH_ETRUNC, len, 0, "batch of %zu bytes has no magic", len);
    if (memcmp(p, BATCH_MAGIC, 4) != 0)
        return batch__fail(ei, BATCH_EMAGIC, 0, 0, "magic is not \"FRYB\"");
    if (len < 5)
        return batch__fail(ei, BATCH_ETRUNC, len, 0, "batch of %zu bytes has no version", len);
    h->version = p[BH_VERSION];
    if (h->version < BATCH_VERSION_MIN || h->version > BATCH_VERSION)
        return batch__fail(ei, BATCH_EVERSION, BH_VERSION, 0,
                           "batch version %u is not supported (this reader knows versions %d..%d)",
                           h->version, BATCH_VERSION_MIN, BATCH_VERSION);
    if (len > BATCH_MAX_BATCH_BYTES)
        return batch__fail(ei, BATCH_ELIMIT, 0, 0, "batch of %zu bytes exceeds %u", len,
                           BATCH_MAX_BATCH_BYTES);
    if (len < BATCH_FIXED_HEADER_LEN + BATCH_SIGNATURE_LEN)
        return batch__fail(ei, BATCH_ETRUNC, len, 0, "batch of %zu bytes is shorter than %d", len,
                           BATCH_FIXED_HEADER_LEN + BATCH_SIGNATURE_LEN);
    if (p[BH_FLAGS] != 0)
        return batch__fail(ei, BATCH_EHEADER, BH_FLAGS, 0, "header flags 0x%02x not zero",
                           p[BH_FLAGS]);
    if (p[BH_RESERVED1] != 0 || rd16(p + BH_RESERVED2) != 0)
        return batch__fail(ei, BATCH_EHEADER, p[BH_RESERVED1] ? BH_RESERVED1 : BH_RESERVED2, 0,
                           "reserved header bytes not zero");
    h->header_len = rd16(p + BH_HEADER_LEN);
    h->body_len = rd32(p + BH_BODY_LEN);
    h->body_raw_len = rd32(p + BH_BODY_RAW_LEN);
    h->record_count = rd32(p + BH_RECORD_COUNT);
    h->packed_bytes = rd32(p + BH_PACKED_BYTES);
    memcpy(h->key_id, p + BH_KEY_ID, BATCH_KEY_ID_LEN);
    memcpy(h->batch_id, p + BH_BATCH_ID, BATCH_ID_LEN);
    h->build_time_ns = (int64_t)rd64(p + BH_BUILD_TIME);
    h->send_time_ns = (int64_t)rd64(p + BH_SEND_TIME);
    h->compression = p[BH_COMPRESSION];
    h->device_id_len = p[BH_DEVICE_ID_LEN];
    h->n_ranges = p[BH_RANGE_COUNT];
    h->n_gaps = rd16(p + BH_GAP_COUNT);
    h->dict_id = rd32(p + BH_DICT_ID);
    memcpy(h->body_hash, p + BH_BODY_HASH, BATCH_HASH_LEN);

    if (h->device_id_len < 1 || h->device_id_len > BATCH_MAX_DEVICE_ID)
        return batch__fail(ei, BATCH_EHEADER, BH_DEVICE_ID_LEN, 0,
                           "device id length %zu not in 1..%u", h->device_id_len,
                           BATCH_MAX_DEVICE_ID);
    if (h->n_ranges > RECORD_STREAM_COUNT)
        return batch__fail(ei, BATCH_EHEADER, BH_RANGE_COUNT, 0, "%zu ranges (max %d)", h->n_ranges,
                           RECORD_STREAM_COUNT);
    if (h->n_gaps > BATCH_MAX_GAPS)
        return batch__fail(ei, BATCH_ELIMIT, BH_GAP_COUNT, 0, "%zu gaps (max %u)", h->n_gaps,
                           BATCH_MAX_GAPS);
    size_t want = batch__header_len(h->version, h->device_id_len, h->n_ranges, h->n_gaps);
    if (h->header_len != want)
        return batch__fail(ei, BATCH_EHEADER, BH_HEADER_LEN, 0,
                           "header length %zu but its counts make %zu", h->header_len, want);
    if (h->header_len + BATCH_SIGNATURE_LEN > len)
        return batch__fail(ei, BATCH_ETRUNC, len, 0, "header and signature need %zu bytes",
                           h->header_len + BATCH_SIGNATURE_LEN);
    if ((size_t)h->body_len != len - h->header_len - BATCH_SIGNATURE_LEN)
        return batch__fail(ei, BATCH_ETRUNC, BH_BODY_LEN, 0,
                           "body length %u but %zu bytes follow the signature", h->body_len,
                           len - h->header_len - BATCH_SIGNATURE_LEN);
    if (h->body_raw_len > BATCH_MAX_BODY_RAW)
        return batch__fail(ei, BATCH_ELIMIT, BH_BODY_RAW_LEN, 0,
                           "decompressed body of %u bytes exceeds %u", h->body_raw_len,
                           BATCH_MAX_BODY_RAW);
    if (h->record_count > BATCH_MAX_RECORDS)
        return batch__fail(ei, BATCH_ELIMIT, BH_RECORD_COUNT, 0, "%u records (max %u)",
                           h->record_count, BATCH_MAX_RECORDS);
    if (h->compression > BATCH_COMPRESSION_ZSTD)
        return batch__fail(ei, BATCH_EHEADER, BH_COMPRESSION, 0, "compression %u unknown",
                           h->compression);
    if (h->compression == BATCH_COMPRESSION_NONE &&
        (h->dict_id != 0 || h->body_raw_len != h->body_len))
        return batch__fail(ei, BATCH_EHEADER, BH_COMPRESSION, 0,
                           "uncompressed body with a dictionary or a raw length %u != %u",
                           h->body_raw_len, h->body_len);
    const char *dev = (const char *)p + BH_DEVICE_ID;
    if (!batch_device_id_valid(dev, h->device_id_len))
        return batch__fail(ei, BATCH_EHEADER, BH_DEVICE_ID, 0,
                           "device id has a byte outside [A-Za-z0-9._-]");
    memcpy(h->device_id, dev, h->device_id_len);
    h->device_id[h->device_id_len] = '\0';

    size_t off = BH_DEVICE_ID + h->device_id_len;
    for (size_t i = 0; i < h->n_ranges; i++, off += BH_RANGE_LEN) {
        struct batch_range *r = &h->ranges[i];
        uint8_t s = p[off];
        r->first = rd64(p + off + 1);
        r->last = rd64(p + off + 9);
        if (s >= RECORD_STREAM_COUNT || (i > 0 && s <= (uint8_t)h->ranges[i - 1].stream))
            return batch__fail(ei, BATCH_EHEADER, off, 0,
                               "range %zu: stream %u unknown or not ascending", i, s);
        if (r->first > r->last)
            return batch__fail(ei, BATCH_EHEADER, off + 1, 0, "range %zu: first > last", i);
        r->stream = (enum record_stream)s;
    }
    for (size_t i = 0; i < h->n_gaps; i++, off += BH_GAP_LEN) {
        struct batch_gap *g = &h->gaps[i];
        uint8_t s = p[off];
        g->reason = p[off + 1];
        g->first = rd64(p + off + 2);
        g->last = rd64(p + off + 10);
        if (s >= RECORD_STREAM_COUNT)
            return batch__fail(ei, BATCH_EHEADER, off, 0, "gap %zu: stream %u unknown", i, s);
        if (g->first > g->last)
            return batch__fail(ei, BATCH_EHEADER, off + 2, 0, "gap %zu: first > last", i);
        g->stream = (enum record_stream)s;
    }
    if (h->version >= 2) {
        h->has_backlog = true;
        for (int s = 0; s < RECORD_STREAM_COUNT; s++, off += 8)
            h->backlog[s] = rd64(p + off);
    }
    return 0;
}

int batch_verify(const void *batch, size_t len, const struct batch_header *h,
                 const uint8_t public_key[BATCH_PUBLIC_KEY_LEN], struct batch_errinfo *ei)
{
    const uint8_t *p = batch;
    uint8_t kid[BATCH_KEY_ID_LEN], hash[BATCH_HASH_LEN];
    if (!batch || !h || !public_key)
        return batch__fail(ei, BATCH_EINVAL, 0, 0, "NULL argument");
    if (h->header_len + BATCH_SIGNATURE_LEN + (size_t)h->body_len != len)
        return batch__fail(ei, BATCH_EINVAL, 0, 0, "header does not describe this batch");
    batch_key_id(public_key, kid);
    if (sodium_memcmp(kid, h->key_id, sizeof kid) != 0)
        return batch__fail(ei, BATCH_EKEY, BH_KEY_ID, 0,
                           "key id in the header is not the id of the device's public key");
    if (crypto_sign_verify_detached(p + h->header_len, p, h->header_len, public_key) != 0)
        return batch__fail(ei, BATCH_ESIG, h->header_len, 0,
                           "Ed25519 signature over the "
                           "header does not verify");
    crypto_generichash(hash, sizeof hash, p + h->header_len + BATCH_SIGNATURE_LEN, h->body_len,
                       NULL, 0);
    if (sodium_memcmp(hash, h->body_hash, sizeof hash) != 0)
        return batch__fail(ei, BATCH_ESIG, h->header_len + BATCH_SIGNATURE_LEN, 0,
                           "body does not match the signed body hash");
    return 0;
}

int batch__sign(uint8_t *batch, size_t header_len, const uint8_t sk[BATCH_SECRET_KEY_LEN])
{
    if (crypto_sign_detached(batch + header_len, NULL, batch, header_len, sk) != 0)
        return BATCH_ECRYPTO;
    return 0;
}

int batch_patch_send_time(uint8_t *batch, size_t len, int64_t send_time_ns,
                          const uint8_t secret_key[BATCH_SECRET_KEY_LEN])
{
    struct batch_header h;
    int rc = batch_peek_header(batch, len, &h, NULL);
    if (rc < 0)
        return rc;
    wr64(batch + BH_SEND_TIME, (uint64_t)send_time_ns);
    return batch__sign(batch, h.header_len, secret_key);
}

int batch_assemble(const struct batch_header *in, const void *body, size_t body_len,
                   const uint8_t secret_key[BATCH_SECRET_KEY_LEN], struct ferry_buf *out)
{
    struct batch_header h = *in;
    if (h.version == 0)
        h.version = BATCH_VERSION;
    if (!batch_device_id_valid(h.device_id, h.device_id_len) || h.n_ranges > RECORD_STREAM_COUNT ||
        h.n_gaps > BATCH_MAX_GAPS || body_len > UINT32_MAX || h.version < BATCH_VERSION_MIN ||
        h.version > BATCH_VERSION)
        return BATCH_EINVAL;
    h.header_len = batch__header_len(h.version, h.device_id_len, h.n_ranges, h.n_gaps);
    h.body_len = (uint32_t)body_len;
    batch_key_id(secret_key + 32, h.key_id);
    crypto_generichash(h.body_hash, sizeof h.body_hash, body, body_len, NULL, 0);
    size_t start = out->len;
    int rc = batch__header_encode(&h, out);
    if (rc < 0)
        return rc;
    if (ferry_buf_append(out, body, body_len) < 0) {
        out->len = start;
        return BATCH_ENOMEM;
    }
    if ((rc = batch__sign(out->data + start, h.header_len, secret_key)) < 0) {
        out->len = start;
        return rc;
    }
    return 0;
}
