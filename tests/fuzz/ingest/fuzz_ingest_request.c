/*
 * libFuzzer target: POST /v1/batches request bodies, from bytes to the store.
 *
 * Runs the real receive path (ingest_batch_prepare: size, header, device lookup, fair share,
 * signature, bounded decompression, decode) and, for batches that pass, the real LMDB store write
 * and acknowledgement, in a temporary directory with one registered device.
 *
 * Input: byte 0 selects the mode, the rest is the body.
 *   even: the body as it is (almost everything stops at the header or the signature)
 *   odd:  the body "re-signed": when its header parses, the key id is set to the registered
 *         device's, the body hash recomputed and the header signed with its key, so the fuzzer
 *         reaches decompression, decoding and the store with bodies it mutated.
 * The seed corpus (corpus-fuzz_ingest_request/) holds valid batches of every stream, made by
 * gen_ingest_corpus with the same fixed key.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cloud-ingest/ingest.h"
#include "common/buf.h"
#include "common/util.h"
#include "tests/fuzz/ingest/fuzz_key.h"
#include "transport/batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ingest_config g_cfg;
static struct ingest_ctx g_ctx;
static struct batch_decoder *g_dec;
static struct ingest_job *g_job;
static uint8_t g_pk[32], g_sk[64];

static void cleanup(void)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_cfg.lmdb_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_cfg.lmdb_dir);
}

static void init(void)
{
    if (sodium_init() < 0)
        abort();
    fuzz_key(g_pk, g_sk);
    ingest_config_defaults(&g_cfg);
    char dir[] = "/tmp/ferry-fuzz-ingest.XXXXXX";
    if (mkdtemp(dir) == NULL)
        abort();
    ferry_strlcpy(g_cfg.lmdb_dir, dir, sizeof(g_cfg.lmdb_dir));
    g_cfg.store.lmdb_map_size = 256u << 20;
    g_cfg.device_rate = 0;
    g_cfg.device_cache_ms = 1000000;
    ingest_config_finish(&g_cfg);
    char err[512];
    if (ingest_store_open(&g_cfg.store, &g_ctx.store, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    atexit(cleanup);
    struct ingest_device d;
    memset(&d, 0, sizeof(d));
    ferry_strlcpy(d.id, FUZZ_DEVICE_ID, sizeof(d.id));
    memcpy(d.public_key, g_pk, 32);
    batch_key_id(g_pk, d.key_id);
    ferry_strlcpy(d.versions, "{}", sizeof(d.versions));
    if (ingest_store_device_add(g_ctx.store, &d, err, sizeof(err)) != 0)
        abort();
    g_ctx.cfg = &g_cfg;
    if (ingest_metrics_new(&g_ctx.metrics) != 0 ||
        ingest_devtab_new(g_ctx.store, &g_cfg, &g_ctx.devtab) != 0 ||
        batch_decoder_new(&g_dec) != 0 || (g_job = ingest_job_new()) == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_job == NULL)
        init();
    if (size < 1)
        return 0;
    bool resign = data[0] & 1;
    size_t len = size - 1;
    uint8_t *body = malloc(len ? len : 1);
    if (body == NULL)
        return 0;
    memcpy(body, data + 1, len);
    struct batch_header h;
    if (resign && batch_peek_header(body, len, &h, NULL) == 0) {
        size_t body_off = h.header_len + BATCH_SIGNATURE_LEN;
        batch_key_id(g_pk, body + 24);
        crypto_generichash(body + 76, 32, body + body_off, len - body_off, NULL, 0);
        (void)batch_patch_send_time(body, len, h.send_time_ns, g_sk);
    }
    char msg[512];
    unsigned retry;
    int status = ingest_batch_prepare(&g_ctx, g_dec, body, len, ferry_realtime_ns(), g_job, msg,
                                      sizeof(msg), &retry);
    if (status == 200) {
        struct ingest_write *w = &g_job->write;
        char err[256];
        if (ingest_store_write(g_ctx.store, &w, 1, err, sizeof(err)) != 0)
            abort(); /* a verified, decoded batch must always be storable */
        ingest_devtab_done(g_ctx.devtab, g_job->device_id);
        ingest_batch_committed(&g_ctx, g_job);
        struct ferry_buf ack = FERRY_BUF_INIT;
        if (ingest_batch_ack(g_job, &ack) != 0)
            abort();
        ferry_buf_free(&ack);
    } else if (status != 400 && status != 401 && status != 413) {
        fprintf(stderr, "unexpected status %d: %s\n", status, msg);
        abort();
    }
    free(body);
    return 0;
}
