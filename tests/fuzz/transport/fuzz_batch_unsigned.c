/*
 * fuzz_batch_unsigned.c - libFuzzer target: arbitrary bytes as a whole batch through
 * batch_peek_header() and batch_decode_unverified() (header parsing, bounded decompression and
 * body decoding without the signature gate). Every record delivered is re-packed, which touches
 * every byte of every string the decoder hands out.
 */
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "transport/batch.h"
#include "transport/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int touch(void *arg, const struct record *r)
{
    struct ferry_buf *b = arg;
    b->len = 0;
    return record_pack(r, b) == 0 ? 0 : 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct batch_decoder *d;
    struct batch_header h;
    struct batch_errinfo ei;
    struct ferry_buf b = FERRY_BUF_INIT;
    if (!d && batch_decoder_new(&d) != 0)
        return 0;
    (void)batch_peek_header(data, size, &h, &ei);
    (void)batch_decode_unverified(d, data, size, &h, touch, &b, &ei);
    ferry_buf_free(&b);
    return 0;
}
