/*
 * make_seeds.c - writes the seed corpora of the transport fuzz targets (run once; the output is
 * committed under corpus-<target>/): real batches from the builder (unsigned target), real
 * uncompressed bodies in the signed target's input layout, and line-protocol samples.
 *
 *   make-transport-fuzz-seeds DIR    (DIR = tests/fuzz/transport)
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"
#include "transport/batch.h"
#include "transport/record.h"

#define S(x) ((struct record_str){(x), sizeof(x) - 1})

static int write_seed(const char *dir, const char *target, const char *name, const void *p,
                      size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/corpus-%s", dir, target);
    if (ferry_mkdir_p(path, 0755) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/corpus-%s/%s", dir, target, name);
    return ferry_write_file_atomic(path, p, n, 0644);
}

static int fill(struct batch_builder *b, int variant)
{
    struct record_tag tags[2] = {{S("host"), S("orin")}, {S("zone"), S("cpu-thermal")}};
    int ok = 1;
    for (int i = 0; i < 12; i++) {
        struct record_field f[3] = {
            {S("temp"), RECORD_FIELD_INT, {.i = 45000 + 31 * i}},
            {S("load"), RECORD_FIELD_FLOAT, {.f = variant ? 1.0 / (i + 3) : 0.25 * i}},
            {S("state"), RECORD_FIELD_STRING, {.s = i % 2 ? S("ok") : S("hot")}},
        };
        struct record r = {RECORD_METRIC,
                           10 + (uint64_t)i,
                           1764070000000000000ll + i * (variant ? 1000001 : 1000000000ll),
                           S("thermal"),
                           0,
                           {"", 0},
                           tags,
                           2,
                           f,
                           (size_t)(1 + i % 3)};
        ok &= batch_builder_add(b, &r) == 0;
    }
    const char *msgs[] = {"frame 1001: 3 objects in 12.5 ms", "frame 1002: 0 objects in 11.0 ms",
                          "raw \x01 message", "CUDA error 700\n  at detector.cpp:212"};
    for (int i = 0; i < 4; i++) {
        struct record_field f[1] = {{S("ok"), RECORD_FIELD_BOOL, {.b = i % 2}}};
        struct record r = {RECORD_LOG,
                           100 + (uint64_t)i,
                           1764070000000000000ll + i * 33000000,
                           S("detector"),
                           (uint8_t)(3 + i),
                           {msgs[i], strlen(msgs[i])},
                           NULL,
                           0,
                           f,
                           (size_t)(i % 2)};
        ok &= batch_builder_add(b, &r) == 0;
    }
    struct record_field ef[1] = {{S("to"), RECORD_FIELD_UINT, {.u = 42}}};
    struct record e = {RECORD_EVENT, 1, 5, S("update.state"), 0, {"", 0}, NULL, 0, ef, 1};
    ok &= batch_builder_add(b, &e) == 0;
    ok &= batch_builder_add_gap(b, RECORD_LOG, 1, 99, BATCH_GAP_EVICTED) == 0;
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 2 || sodium_init() < 0) {
        fprintf(stderr, "usage: make-transport-fuzz-seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    uint8_t pk[32], sk[64], seed[32] = {1, 2, 3, 4};
    crypto_sign_seed_keypair(pk, sk, seed);
    int rc = 0;
    for (int variant = 0; variant < 2; variant++) {
        for (int comp = 0; comp < 2; comp++) {
            struct batch_builder_config cfg = {
                .device_id = "d-fuzz", .secret_key = sk, .no_compression = comp == 0};
            struct batch_builder *b;
            struct ferry_buf out = FERRY_BUF_INIT, body = FERRY_BUF_INIT;
            char name[32];
            if (batch_builder_new(&cfg, &b) != 0 || fill(b, variant) != 0)
                return 1;
            /* signed target: mode byte + raw body (mode 0 plain, mode 1 compressed by it) */
            if (ferry_buf_append_u8(&body, (uint8_t)comp) != 0 || batch_builder_body(b, &body) != 0)
                return 1;
            snprintf(name, sizeof name, "body-v%d-m%d", variant, comp);
            rc |= write_seed(dir, "fuzz_batch_signed", name, body.data, body.len);
            if (comp == 1) { /* mode 1 + bit 2: compressed with the target's dictionary */
                body.data[0] = 5;
                snprintf(name, sizeof name, "body-v%d-m1-dict", variant);
                rc |= write_seed(dir, "fuzz_batch_signed", name, body.data, body.len);
            }
            if (batch_builder_finish(b, 1764070000000000000ll, &out) != 0)
                return 1;
            snprintf(name, sizeof name, "batch-v%d-c%d", variant, comp);
            rc |= write_seed(dir, "fuzz_batch_unsigned", name, out.data, out.len);
            if (comp == 1) {
                /* mode 2: the compressed body as the fuzzer's frame */
                struct batch_header h;
                if (batch_peek_header(out.data, out.len, &h, NULL) != 0)
                    return 1;
                body.len = 0;
                if (ferry_buf_append_u8(&body, 2) != 0 ||
                    ferry_buf_append(&body, out.data + h.header_len + 64, h.body_len) != 0)
                    return 1;
                snprintf(name, sizeof name, "frame-v%d", variant);
                rc |= write_seed(dir, "fuzz_batch_signed", name, body.data, body.len);
            }
            ferry_buf_free(&out);
            ferry_buf_free(&body);
            batch_builder_free(b);
        }
    }
    static const char *const lp[] = {
        "\x00"
        "cpu,host=orin,cpu=cpu0 user=123u,idle=456u,freq_khz=1510400i 1764070000000000000\n"
        "thermal,zone=gpu-thermal temp=45281i 1764070000000000000\n",
        "\x03"
        "model,name=yolov8n fps=29.97,inference_ms=12.43,ok=true,s=\"a \\\"b\\\" c\" 1764070000\n",
        "\x01"
        "my\\ meas\\,x,t\\=k=v\\=1 f\\ k=FALSE,g=-1.5e-3 -5\n# comment\n\nm v=\"multi\nline\"\r\n",
        "\x02"
        "m,a=1,b=2 i=-9223372036854775808i,u=18446744073709551615u,f=1e308\n",
    };
    for (size_t i = 0; i < sizeof lp / sizeof lp[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "lp-%zu", i);
        rc |= write_seed(dir, "fuzz_lineproto", name, lp[i], 1 + strlen(lp[i] + 1));
    }
    return rc ? 1 : 0;
}
