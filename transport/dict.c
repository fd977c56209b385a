/*
 * dict.c - dictionary ids, loading, and training on batch bodies (dict.h, wire-format.md §8).
 *
 * Training samples are the uncompressed bodies the batch builder would write (batch_builder_body)
 * for groups of records of about the size the device sends: the dictionary then holds exactly the
 * bytes small batches repeat (series definitions, templates, column headers). The builder needs a
 * device id and a key only to sign, which training never does: a throwaway key is used.
 */
#include "transport/dict.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zdict.h>

#include "common/buf.h"
#include "common/util.h"
#include "transport/batch.h"

struct dict_trainer {
    struct batch_builder *b;
    size_t sample_raw_bytes;
    struct ferry_buf samples; /* concatenated bodies */
    size_t *sizes;
    size_t n_sizes, cap_sizes;
};

const char *dict_strerror(int err)
{
    switch (err) {
    case DICT_OK: return "success";
    case DICT_ENOMEM: return "out of memory";
    case DICT_EINVAL: return "invalid argument or record";
    case DICT_ETRAIN: return "dictionary training failed";
    case DICT_EFORMAT: return "not a zstd dictionary";
    case DICT_EIO: return "I/O error";
    case DICT_EFULL: return "too much training input";
    }
    return "unknown dictionary error";
}

uint32_t dict_id_of(const void *dict, size_t len)
{
    uint8_t h[32];
    crypto_generichash(h, sizeof h, dict, len, NULL, 0);
    uint32_t id =
        (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    return id ? id : 1;
}

int dict_check(const void *dict, size_t len)
{
    static const uint8_t magic[4] = {0x37, 0xA4, 0x30, 0xEC}; /* 0xEC30A437 little endian */
    if (!dict || len < 8 || len > DICT_MAX_SIZE || memcmp(dict, magic, 4) != 0)
        return DICT_EFORMAT;
    return 0;
}

int dict_load(const char *path, struct ferry_buf *out, uint32_t *id)
{
    uint8_t *data;
    size_t len;
    int rc = ferry_read_file(path, DICT_MAX_SIZE, &data, &len);
    if (rc == -EFBIG)
        return DICT_EFORMAT;
    if (rc < 0)
        return DICT_EIO;
    if (dict_check(data, len) < 0) {
        free(data);
        return DICT_EFORMAT;
    }
    out->len = 0;
    rc = ferry_buf_append(out, data, len) < 0 ? DICT_ENOMEM : 0;
    if (rc == 0)
        *id = dict_id_of(data, len);
    free(data);
    return rc;
}

int dict_trainer_new(size_t sample_raw_bytes, struct dict_trainer **out)
{
    uint8_t pk[32], sk[64];
    *out = NULL;
    if (sodium_init() < 0)
        return DICT_ENOMEM;
    struct dict_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return DICT_ENOMEM;
    t->sample_raw_bytes = sample_raw_bytes ? sample_raw_bytes : DICT_DEFAULT_SAMPLE_RAW_BYTES;
    crypto_sign_keypair(pk, sk);
    struct batch_builder_config cfg = {
        .device_id = "d-dict-training", .secret_key = sk, .no_compression = true};
    int rc = batch_builder_new(&cfg, &t->b);
    sodium_memzero(sk, sizeof sk);
    if (rc < 0) {
        free(t);
        return DICT_ENOMEM;
    }
    *out = t;
    return 0;
}

void dict_trainer_free(struct dict_trainer *t)
{
    if (!t)
        return;
    batch_builder_free(t->b);
    ferry_buf_free(&t->samples);
    free(t->sizes);
    free(t);
}

/* Moves the builder's records into one sample body. */
static int flush_sample(struct dict_trainer *t)
{
    if (batch_builder_count(t->b) == 0)
        return 0;
    if (t->n_sizes == t->cap_sizes) {
        size_t ncap = t->cap_sizes ? t->cap_sizes * 2 : 256;
        size_t *p = realloc(t->sizes, ncap * sizeof *p);
        if (!p)
            return DICT_ENOMEM;
        t->sizes = p;
        t->cap_sizes = ncap;
    }
    size_t before = t->samples.len;
    if (batch_builder_body(t->b, &t->samples) < 0)
        return DICT_ENOMEM;
    t->sizes[t->n_sizes++] = t->samples.len - before;
    batch_builder_reset(t->b);
    return 0;
}

int dict_trainer_add(struct dict_trainer *t, const struct record *r)
{
    if (t->samples.len >= DICT_MAX_SAMPLE_BYTES)
        return DICT_EFULL;
    if (batch_builder_raw_bytes(t->b) >= t->sample_raw_bytes) {
        int rc = flush_sample(t);
        if (rc < 0)
            return rc;
    }
    int rc = batch_builder_add(t->b, r);
    if (rc == BATCH_EFULL) {
        if ((rc = flush_sample(t)) < 0)
            return rc;
        rc = batch_builder_add(t->b, r);
    }
    if (rc == BATCH_ENOMEM)
        return DICT_ENOMEM;
    return rc < 0 ? DICT_EINVAL : 0;
}

size_t dict_trainer_samples(const struct dict_trainer *t)
{
    return t->n_sizes + (batch_builder_count(t->b) > 0);
}

int dict_trainer_train(struct dict_trainer *t, size_t capacity, struct ferry_buf *out, uint32_t *id,
                       char *why, size_t why_len)
{
    int rc = flush_sample(t);
    if (rc < 0)
        return rc;
    if (capacity == 0)
        capacity = DICT_DEFAULT_SIZE;
    if (capacity > DICT_MAX_SIZE || capacity < 256)
        return DICT_EINVAL;
    if (t->n_sizes == 0) {
        if (why && why_len)
            snprintf(why, why_len, "no samples");
        return DICT_ETRAIN;
    }
    size_t start = out->len;
    if (ferry_buf_reserve(out, capacity) < 0)
        return DICT_ENOMEM;
    size_t n = ZDICT_trainFromBuffer(out->data + start, capacity, t->samples.data, t->sizes,
                                     (unsigned)t->n_sizes);
    if (ZDICT_isError(n)) {
        if (why && why_len)
            snprintf(why, why_len, "zstd: %s (%zu samples, %zu bytes)", ZDICT_getErrorName(n),
                     t->n_sizes, t->samples.len);
        return DICT_ETRAIN;
    }
    out->len = start + n;
    *id = dict_id_of(out->data + start, n);
    return 0;
}
