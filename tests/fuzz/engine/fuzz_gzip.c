/*
 * fuzz_gzip.c - libFuzzer target: ferryd's gzip body decoder for POST /write and POST /logs with
 * Content-Encoding: gzip (http_input_gunzip in engine/http_input.c), network input from any
 * local client.
 *
 * Input layout: byte 0 = mode and limit, the rest = data.
 *   byte 0 bit 0     0: the data is the gzip body as received (hostile bytes)
 *                    1: the data is compressed here (zlib, gzip wrapper) and the result is the
 *                       body: it must decompress to exactly the data when it fits the limit
 *   byte 0 bits 1-7  the decompressed-size limit: (k * 97) bytes, k = 0 meaning 1 MiB
 *
 * Properties checked (abort() on violation):
 *   - the result is 0, -1, -2 or -3, and the output never exceeds the limit;
 *   - mode 1: a body whose data fits the limit comes back byte for byte (0); one that does not
 *     fit is refused with -2, never truncated silently.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "common/buf.h"
#include "engine/http_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *gzip_bytes(const uint8_t *p, size_t n, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    uLong cap = deflateBound(&zs, (uLong)n) + 32;
    uint8_t *out = malloc(cap);
    if (!out) {
        deflateEnd(&zs);
        return NULL;
    }
    zs.next_in = (Bytef *)p;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
        deflateEnd(&zs);
        free(out);
        return NULL;
    }
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] & 1, k = data[0] >> 1;
    uint64_t max = k == 0 ? 1024 * 1024 : (uint64_t)k * 97;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    struct ferry_buf out = FERRY_BUF_INIT;
    if (mode == 0) {
        int rc = http_input_gunzip(p, n, max, &out);
        if (rc < -3 || rc > 0 || out.len > max) {
            fprintf(stderr, "gunzip: rc %d, %zu bytes out, limit %llu\n", rc, out.len,
                    (unsigned long long)max);
            abort();
        }
        ferry_buf_free(&out);
        return 0;
    }
    size_t zlen = 0;
    uint8_t *z = gzip_bytes(p, n, &zlen);
    if (!z)
        return 0;
    int rc = http_input_gunzip(z, zlen, max, &out);
    if (n <= max) {
        if (rc != 0 || out.len != n || (n && memcmp(out.data, p, n) != 0)) {
            fprintf(stderr, "round trip of %zu bytes (limit %llu): rc %d, %zu bytes back\n", n,
                    (unsigned long long)max, rc, out.len);
            abort();
        }
    } else if (rc != -2 || out.len > max) {
        fprintf(stderr, "%zu bytes over a limit of %llu: rc %d, %zu bytes out\n", n,
                (unsigned long long)max, rc, out.len);
        abort();
    }
    free(z);
    ferry_buf_free(&out);
    return 0;
}
