/*
 * gen_ingest_corpus DIR - writes the seed corpus of fuzz_ingest_request: valid batches signed with
 * the fuzz key (metrics, logs, events with a "versions" event, gaps, compressed and not), each
 * prefixed with the mode byte (1: re-sign, so mutations reach the decoder).
 */
#include <stdio.h>
#include <stdlib.h>

#include "tests/fuzz/ingest/fuzz_key.h"
#include "tests/integration/ingest/ingest_harness.h"

static int write_seed(const char *dir, int n, uint8_t mode, const struct ferry_buf *b)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/seed-%02d", dir, n);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    int ok = fwrite(&mode, 1, 1, f) == 1 && fwrite(b->data, 1, b->len, f) == b->len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 2 || sodium_init() < 0)
        return 2;
    struct ih_device d;
    fuzz_key(d.pk, d.sk);
    ferry_strlcpy(d.id, FUZZ_DEVICE_ID, sizeof(d.id));
    int64_t now = 1700000000000000000ll;
    struct ferry_buf b = FERRY_BUF_INIT;
    int n = 0, rc = 0;
    rc |= ih_batch(&d, RECORD_METRIC, 1, 5, now, now, true, &b) || write_seed(argv[1], n++, 1, &b);
    ferry_buf_reset(&b);
    rc |= ih_batch(&d, RECORD_METRIC, 6, 3, now, now, false, &b) || write_seed(argv[1], n++, 1, &b);
    rc |= write_seed(argv[1], n++, 0, &b);
    ferry_buf_reset(&b);
    rc |= ih_batch(&d, RECORD_LOG, 1, 4, now, now, true, &b) || write_seed(argv[1], n++, 1, &b);
    ferry_buf_reset(&b);
    rc |= ih_batch(&d, RECORD_LOG, 5, 2, 1000, 1000, false, &b) || write_seed(argv[1], n++, 1, &b);
    /* Events with a versions report and gaps. */
    struct batch_builder_config cfg = {
        .device_id = d.id, .secret_key = d.sk, .no_compression = true};
    struct batch_builder *bb = NULL;
    if (batch_builder_new(&cfg, &bb) != 0)
        return 1;
    struct record_field f[2] = {
        {.key = {"rootfs", 6}, .type = RECORD_FIELD_STRING, .v.s = {"1.2.3", 5}},
        {.key = {"ok", 2}, .type = RECORD_FIELD_BOOL, .v.b = true}};
    struct record r = {.stream = RECORD_EVENT,
                       .seq = 1,
                       .ts_ns = now,
                       .name = {"versions", 8},
                       .fields = f,
                       .n_fields = 2};
    rc |= batch_builder_add(bb, &r);
    rc |= batch_builder_add_gap(bb, RECORD_LOG, 10, 20, BATCH_GAP_EVICTED);
    ferry_buf_reset(&b);
    rc |= batch_builder_finish(bb, now, &b) || write_seed(argv[1], n++, 1, &b);
    batch_builder_free(bb);
    ferry_buf_free(&b);
    return rc != 0;
}
