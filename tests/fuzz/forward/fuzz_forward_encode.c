/*
 * fuzz_forward_encode - libFuzzer target of the forwarders' encoders: the input is a stored
 * record's payload (record_pack() format, what devices' batches become in the store); whatever
 * it holds, the InfluxDB line is one line of valid UTF-8 ending in '\n' (or nothing), and the
 * remote write body decodes (snappy + protobuf) to valid UTF-8 labels with valid names.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <snappy-c.h>

#include "cloud-ingest/forward/forward_impl.h"
#include "common/buf.h"
#include "remote_write.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid_utf8(const uint8_t *p, size_t n)
{
    struct ferry_buf b = FERRY_BUF_INIT;
    int ok = fwd_utf8_append(&b, (const char *)p, n) == 0 && b.len == n &&
             (n == 0 || memcmp(b.data, p, n) == 0);
    ferry_buf_free(&b);
    return ok;
}

static int valid_name(const char *s, int colon)
{
    if (s[0] == '\0' || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || (colon && *s == ':')))
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct record_scratch rs;
    struct record r;
    if (record_unpack(data, size, &rs, &r, NULL, 0) != 0)
        return 0;
    struct ferry_buf line = FERRY_BUF_INIT;
    uint64_t lines = 0, skipped = 0;
    if (fwd_influx_line(&line, "dev-1", &r, r.ts_ns, "ms", INGEST_FORWARD_UINT_INTEGER, &lines,
                        &skipped) == 0 &&
        line.len > 0) {
        if (!valid_utf8(line.data, line.len) || line.data[line.len - 1] != '\n')
            abort();
        /* a newline before the end only inside a quoted string value (after the first ' ') */
        const uint8_t *nl = memchr(line.data, '\n', line.len - 1);
        const uint8_t *sp = memchr(line.data, ' ', line.len);
        if (nl != NULL && (sp == NULL || nl < sp))
            abort();
    }
    ferry_buf_free(&line);
    struct fwd_prom *p = NULL;
    if (fwd_prom_new(100, &p) != 0)
        return 0;
    struct ferry_buf body = FERRY_BUF_INIT;
    if (fwd_prom_add(p, "dev-1", &r, r.ts_ns) == 0 && fwd_prom_finish(p, &body) == 0) {
        size_t len = 0;
        if (snappy_uncompressed_length((const char *)body.data, body.len, &len) != SNAPPY_OK)
            abort();
        char *raw = malloc(len ? len : 1);
        if (raw == NULL ||
            snappy_uncompress((const char *)body.data, body.len, raw, &len) != SNAPPY_OK)
            abort();
        Prometheus__WriteRequest *req =
            prometheus__write_request__unpack(NULL, len, (const uint8_t *)raw);
        if (req == NULL)
            abort();
        for (size_t i = 0; i < req->n_timeseries; i++)
            for (size_t k = 0; k < req->timeseries[i]->n_labels; k++) {
                const Prometheus__Label *l = req->timeseries[i]->labels[k];
                int is_name = strcmp(l->name, "__name__") == 0;
                if (!(is_name || valid_name(l->name, 0)) || (is_name && !valid_name(l->value, 1)) ||
                    !valid_utf8((const uint8_t *)l->value, strlen(l->value)) ||
                    (k > 0 && strcmp(req->timeseries[i]->labels[k - 1]->name, l->name) >= 0))
                    abort();
            }
        prometheus__write_request__free_unpacked(req, NULL);
        free(raw);
    }
    ferry_buf_free(&body);
    fwd_prom_free(p);
    return 0;
}
