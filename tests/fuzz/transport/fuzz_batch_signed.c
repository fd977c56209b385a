/*
 * fuzz_batch_signed.c - libFuzzer target: the receive path exactly as the ingest runs it
 * (batch_decode with a public key), reached with validly signed batches around fuzzed bodies.
 *
 * A fixed test key signs whatever the fuzzer produces, so the signature gate passes and the
 * fuzzer explores decompression and body decoding behind it. Input layout:
 *   byte 0: mode (low 2 bits): 0 body uncompressed, 1 body compressed here with zstd (the fuzzer
 *           controls the decompressed bytes), 2 body used as a zstd frame as is (hostile frames),
 *           3 like 2 with the declared raw length from bytes 1..4;
 *           bit 2 with mode 1: compress with a fixed raw-content dictionary and name it (id 77)
 *   bytes 1..4 (mode 3 only): declared raw length, little endian
 *   rest: the body
 * The header's record count is taken from the body's own count when it parses, and the ranges
 * cover every seq, so the decoder gets past its consistency checks into the columns. Finally a
 * single flipped bit of the sealed batch must make the signed path fail.
 */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common/buf.h"
#include "transport/batch.h"
#include "transport/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t pk[32], sk[64];
static uint8_t dict[2048];

static int lookup(void *arg, uint32_t id, const void **d, size_t *len)
{
    (void)arg;
    if (id != 77)
        return -1;
    *d = dict;
    *len = sizeof dict;
    return 0;
}

static int touch(void *arg, const struct record *r)
{
    struct ferry_buf *b = arg;
    b->len = 0;
    return record_pack(r, b) == 0 ? 0 : 1;
}

static uint32_t body_count(const uint8_t *p, size_t n)
{
    struct ferry_reader r;
    ferry_reader_init(&r, p, n);
    (void)ferry_read_u8(&r);
    uint64_t v = ferry_read_uvarint(&r);
    return r.failed || v > BATCH_MAX_RECORDS ? 0 : (uint32_t)v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct batch_decoder *d;
    static uint8_t *zbuf;
    static size_t zcap;
    if (!d) {
        uint8_t seed[32] = {1, 2, 3, 4};
        if (sodium_init() < 0 || batch_decoder_new(&d) != 0)
            abort();
        crypto_sign_seed_keypair(pk, sk, seed);
        for (size_t i = 0; i < sizeof dict; i++)
            dict[i] = (uint8_t)("cpu,host=orin temp=45000i frame  objects in ms "[i % 47]);
        batch_decoder_set_dict_lookup(d, lookup, NULL);
    }
    if (size < 1)
        return 0;
    int mode = data[0] & 3;
    const uint8_t *body = data + 1;
    size_t body_len = size - 1;
    struct batch_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.device_id, "d-fuzz", 6);
    h.device_id_len = 6;
    h.n_ranges = RECORD_STREAM_COUNT;
    for (int s = 0; s < RECORD_STREAM_COUNT; s++)
        h.ranges[s] = (struct batch_range){(enum record_stream)s, 0, UINT64_MAX};
    h.n_gaps = 1;
    h.gaps[0] = (struct batch_gap){RECORD_LOG, 9, 1, 2};
    h.compression = BATCH_COMPRESSION_NONE;
    h.body_raw_len = (uint32_t)body_len;
    h.record_count = body_count(body, body_len);
    const uint8_t *wire_body = body;
    size_t wire_len = body_len;
    if (mode == 1) {
        size_t cap = ZSTD_compressBound(body_len);
        if (cap > zcap) {
            free(zbuf);
            zbuf = malloc(cap);
            zcap = zbuf ? cap : 0;
            if (!zbuf)
                return 0;
        }
        static ZSTD_CCtx *cc;
        if (!cc && !(cc = ZSTD_createCCtx()))
            return 0;
        size_t zn = (data[0] & 4) ? ZSTD_compress_usingDict(cc, zbuf, cap, body, body_len, dict,
                                                            sizeof dict, 1)
                                  : ZSTD_compress(zbuf, cap, body, body_len, 1);
        if (ZSTD_isError(zn))
            return 0;
        if (data[0] & 4)
            h.dict_id = 77;
        wire_body = zbuf;
        wire_len = zn;
        h.compression = BATCH_COMPRESSION_ZSTD;
    } else if (mode >= 2) {
        h.compression = BATCH_COMPRESSION_ZSTD;
        if (mode == 3) {
            if (body_len < 4)
                return 0;
            h.body_raw_len = (uint32_t)body[0] | (uint32_t)body[1] << 8 | (uint32_t)body[2] << 16 |
                             (uint32_t)body[3] << 24;
            wire_body = body + 4;
            wire_len = body_len - 4;
        }
    }
    struct ferry_buf batch = FERRY_BUF_INIT, tmp = FERRY_BUF_INIT;
    if (batch_assemble(&h, wire_body, wire_len, sk, &batch) != 0)
        return 0;
    struct batch_errinfo ei;
    int rc = batch_decode(d, batch.data, batch.len, pk, NULL, touch, &tmp, &ei);
    if (rc == BATCH_ESIG || rc == BATCH_EKEY)
        abort(); /* a batch sealed with the right key must pass the signature gate */
    /* flip one bit chosen by the input: never accepted */
    size_t bit = (size_t)data[size - 1] * 131 + size;
    bit %= batch.len * 8;
    batch.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    if (batch_decode(d, batch.data, batch.len, pk, NULL, NULL, NULL, &ei) == 0)
        abort();
    ferry_buf_free(&batch);
    ferry_buf_free(&tmp);
    return 0;
}
