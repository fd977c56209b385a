/*
 * fuzz_record_unpack.c - libFuzzer target: journal payloads read back from a possibly damaged
 * journal file, through record_unpack() (transport/record.c) and on into a batch the way the sync
 * engine's helper thread takes them (batch_builder_add_packed, engine/sync_worker.c).
 *
 * Input: byte 0 picks the stream the journal filed the payload under (mod 3); the rest is the
 * payload. Properties checked (abort() on violation):
 *   - record_unpack() either refuses the payload or gives a record that record_check() accepts,
 *     that record_pack() packs again into at most as many bytes (varints may have been
 *     over-long), and that unpacks from there to an equal record;
 *   - batch_builder_add_packed() refuses exactly the payloads record_unpack() refuses or whose
 *     stream is not the journal's, and accepts every other one;
 *   - an accepted record survives the batch codec: the finished, signed batch verifies against
 *     the device key and decodes to exactly that record with its journal sequence.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/buf.h"
#include "transport/batch.h"
#include "transport/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_SEQ 4242

static struct record_scratch scratch1, scratch2;
static uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
static struct batch_builder *builder;
static struct batch_decoder *decoder;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0)
        abort();
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, 7, sizeof seed); /* a fixed key: runs are reproducible */
    if (crypto_sign_seed_keypair(pk, sk, seed) != 0)
        abort();
    struct batch_builder_config bc;
    memset(&bc, 0, sizeof bc);
    bc.device_id = "d-fuzz";
    bc.secret_key = sk;
    bc.zstd_level = 1;
    if (batch_builder_new(&bc, &builder) != 0 || batch_decoder_new(&decoder) != 0)
        abort();
    return 0;
}

struct decoded {
    const struct record *want;
    int records;
    int equal;
};

static int on_decoded(void *arg, const struct record *r)
{
    struct decoded *d = arg;
    d->records++;
    d->equal = record_equal(d->want, r);
    return 0;
}

/* Packs, unpacks and compares; aborts on any difference. */
static void check_repack(const struct record *r, size_t payload_len)
{
    char why[160];
    if (record_check(r, why, sizeof why) != 0) {
        fprintf(stderr, "unpacked record fails record_check: %s\n", why);
        abort();
    }
    struct ferry_buf packed = FERRY_BUF_INIT;
    if (record_pack(r, &packed) != 0 || packed.len > payload_len)
        abort();
    struct record again;
    if (record_unpack(packed.data, packed.len, &scratch2, &again, why, sizeof why) != 0 ||
        !record_equal(r, &again))
        abort();
    ferry_buf_free(&packed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum record_stream stream = (enum record_stream)(data[0] % RECORD_STREAM_COUNT);
    const uint8_t *payload = data + 1;
    size_t len = size - 1;

    struct record r;
    char why[160];
    int rc = record_unpack(payload, len, &scratch1, &r, why, sizeof why);
    if (rc > 0 || rc < RECORD_EFORMAT)
        abort();
    if (rc == 0)
        check_repack(&r, len);

    int brc = batch_builder_add_packed(builder, stream, FUZZ_SEQ, payload, len);
    if (rc != 0 || r.stream != stream) {
        if (brc != BATCH_EINVAL)
            abort();
        return 0;
    }
    if (brc != 0) {
        fprintf(stderr, "builder refused a payload record_unpack accepts: %s\n",
                batch_builder_error(builder));
        abort();
    }
    struct ferry_buf wire = FERRY_BUF_INIT;
    if (batch_builder_finish(builder, 1700000000000000000LL, &wire) != 0)
        abort();
    r.seq = FUZZ_SEQ;
    struct decoded d = {&r, 0, 0};
    struct batch_header h;
    struct batch_errinfo ei;
    rc = batch_decode(decoder, wire.data, wire.len, pk, &h, on_decoded, &d, &ei);
    if (rc != 0) {
        fprintf(stderr, "batch of one journal record does not decode: %s\n", ei.msg);
        abort();
    }
    if (d.records != 1 || !d.equal) {
        fprintf(stderr, "batch codec changed the record (%d decoded)\n", d.records);
        abort();
    }
    ferry_buf_free(&wire);
    return 0;
}
