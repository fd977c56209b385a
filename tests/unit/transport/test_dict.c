/*
 * test_dict.c - zstd dictionaries: training on batch bodies from the Jetson corpus, ids, loading,
 * that small batches get smaller with a dictionary trained on other data of the same kind, that
 * they decode with it and fail with BATCH_EDICT without it.
 */
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/util.h"
#include "corpus.h"
#include "transport/batch.h"
#include "transport/dict.h"
#include "transport/lineproto.h"

static uint8_t pk[32], sk[64];

struct feed {
    struct dict_trainer *t;
    struct batch_builder *b;
    struct ferry_buf *out;
    uint64_t seq;
    size_t batches;
    size_t ends[8192]; /* end offset of each batch in *out */
};

static int to_trainer(void *arg, const struct record *r)
{
    struct dict_trainer *t = arg;
    return dict_trainer_add(t, r);
}

/* Adds records to a builder and finishes a batch every ~4 KiB of packed records. */
static int to_batches(void *arg, const struct record *r)
{
    struct feed *f = arg;
    struct record c = *r;
    c.seq = ++f->seq;
    if (batch_builder_add(f->b, &c) != 0)
        return -1;
    if (batch_builder_raw_bytes(f->b) >= 4096) {
        if (f->batches >= 8192 || batch_builder_finish(f->b, 1, f->out) != 0)
            return -1;
        f->ends[f->batches++] = f->out->len;
    }
    return 0;
}

static void metrics_text(struct ferry_buf *t, unsigned seconds, uint64_t seed)
{
    assert_int_equal(
        corpus_metrics(t, 1764070000000000000ll + (int64_t)seed * 86400000000000ll, seconds, seed),
        0);
}

static struct ferry_buf g_dict = FERRY_BUF_INIT;
static uint32_t g_id;

static int lookup(void *arg, uint32_t id, const void **dict, size_t *len)
{
    (void)arg;
    if (id != g_id)
        return -1;
    *dict = g_dict.data;
    *len = g_dict.len;
    return 0;
}

static size_t wire_size(const struct ferry_buf *lp, bool with_dict, size_t *batches)
{
    struct batch_builder_config cfg = {.device_id = "d-dict", .secret_key = sk};
    if (with_dict) {
        cfg.dict = g_dict.data;
        cfg.dict_len = g_dict.len;
        cfg.dict_id = g_id;
    }
    struct ferry_buf out = FERRY_BUF_INIT;
    struct feed *fp = calloc(1, sizeof *fp);
    struct feed f0 = {.out = &out};
    *fp = f0;
    struct feed *const pf = fp;
#define f (*pf)
    assert_int_equal(batch_builder_new(&cfg, &f.b), 0);
    assert_int_equal(
        lineproto_parse((const char *)lp->data, lp->len, LINEPROTO_NS, 0, to_batches, &f, NULL), 0);
    batch_builder_free(f.b);
    /* every batch decodes with the dictionary */
    struct batch_decoder *d;
    assert_int_equal(batch_decoder_new(&d), 0);
    batch_decoder_set_dict_lookup(d, lookup, NULL);
    size_t off = 0;
    for (size_t i = 0; i < f.batches; i++) {
        struct batch_header h;
        size_t len = f.ends[i] - off;
        assert_int_equal(batch_decode(d, out.data + off, len, pk, &h, NULL, NULL, NULL), 0);
        assert_int_equal(h.dict_id, with_dict ? g_id : 0);
        off += len;
    }
    batch_decoder_free(d);
    *batches = f.batches;
#undef f
    free(fp);
    size_t total = out.len;
    ferry_buf_free(&out);
    return total;
}

static void test_train_and_use(void **state)
{
    (void)state;
    struct dict_trainer *t;
    struct ferry_buf train = FERRY_BUF_INIT, test = FERRY_BUF_INIT;
    metrics_text(&train, 600, 11);
    metrics_text(&test, 300, 12); /* other seed, other day: not the training data */
    assert_int_equal(dict_trainer_new(4096, &t), 0);
    assert_int_equal(
        lineproto_parse((const char *)train.data, train.len, LINEPROTO_NS, 0, to_trainer, t, NULL),
        0);
    assert_true(dict_trainer_samples(t) > 100);
    char why[200];
    assert_int_equal(dict_trainer_train(t, 16384, &g_dict, &g_id, why, sizeof why), 0);
    assert_true(g_dict.len > 1000 && g_dict.len <= 16384);
    assert_int_equal(dict_check(g_dict.data, g_dict.len), 0);
    assert_int_equal(g_id, dict_id_of(g_dict.data, g_dict.len));
    assert_int_not_equal(g_id, 0);
    dict_trainer_free(t);

    size_t nb_plain, nb_dict;
    size_t plain = wire_size(&test, false, &nb_plain);
    size_t with = wire_size(&test, true, &nb_dict);
    fprintf(stderr, "4 KiB batches: %zu bytes without, %zu with the dictionary (%zu batches)\n",
            plain, with, nb_plain);
    assert_int_equal(nb_plain, nb_dict);
    assert_true(with * 10 < plain * 8); /* at least 20% smaller */

    /* a decoder without the dictionary says which one it lacks */
    struct batch_builder_config cfg = {.device_id = "d-dict",
                                       .secret_key = sk,
                                       .dict = g_dict.data,
                                       .dict_len = g_dict.len,
                                       .dict_id = g_id};
    struct batch_builder *b;
    struct ferry_buf out = FERRY_BUF_INIT;
    assert_int_equal(batch_builder_new(&cfg, &b), 0);
    struct record_field fl[1] = {{{"v", 1}, RECORD_FIELD_FLOAT, {.f = 1.5}}};
    struct record r = {RECORD_METRIC, 1, 1, {"m", 1}, 0, {"", 0}, NULL, 0, fl, 1};
    assert_int_equal(batch_builder_add(b, &r), 0);
    assert_int_equal(batch_builder_finish(b, 1, &out), 0);
    struct batch_decoder *d;
    struct batch_errinfo ei;
    assert_int_equal(batch_decoder_new(&d), 0);
    assert_int_equal(batch_decode(d, out.data, out.len, pk, NULL, NULL, NULL, &ei), BATCH_EDICT);
    batch_decoder_free(d);
    batch_builder_free(b);
    ferry_buf_free(&out);
    ferry_buf_free(&train);
    ferry_buf_free(&test);
}

static void test_load_and_errors(void **state)
{
    (void)state;
    char dir[] = "/tmp/ferry-dict-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], bad[256];
    snprintf(path, sizeof path, "%s/d.zdict", dir);
    snprintf(bad, sizeof bad, "%s/bad", dir);
    assert_int_equal(ferry_write_file_atomic(path, g_dict.data, g_dict.len, 0644), 0);
    assert_int_equal(ferry_write_file_atomic(bad, "not a dictionary", 16, 0644), 0);
    struct ferry_buf d = FERRY_BUF_INIT;
    uint32_t id;
    assert_int_equal(dict_load(path, &d, &id), 0);
    assert_int_equal(id, g_id);
    assert_int_equal(d.len, g_dict.len);
    assert_int_equal(dict_load(bad, &d, &id), DICT_EFORMAT);
    snprintf(bad, sizeof bad, "%s/missing", dir);
    assert_int_equal(dict_load(bad, &d, &id), DICT_EIO);
    ferry_buf_free(&d);
    unlink(path);
    snprintf(bad, sizeof bad, "%s/bad", dir);
    unlink(bad);
    rmdir(dir);

    /* training with nothing, or with too little, says so */
    struct dict_trainer *t;
    struct ferry_buf out = FERRY_BUF_INIT;
    char why[200] = "";
    assert_int_equal(dict_trainer_new(0, &t), 0);
    assert_int_equal(dict_trainer_train(t, 0, &out, &id, why, sizeof why), DICT_ETRAIN);
    assert_non_null(strstr(why, "no samples"));
    struct record r = {RECORD_LOG, 1, 1, {"app", 3}, 6, {"hello 1", 7}, NULL, 0, NULL, 0};
    assert_int_equal(dict_trainer_add(t, &r), 0);
    assert_int_equal(dict_trainer_train(t, 0, &out, &id, why, sizeof why), DICT_ETRAIN);
    assert_true(strlen(why) > 0);
    struct record bad_r = r;
    bad_r.level = 12;
    assert_int_equal(dict_trainer_add(t, &bad_r), DICT_EINVAL);
    dict_trainer_free(t);
    ferry_buf_free(&out);
    for (int e = -7; e <= 0; e++)
        assert_non_null(dict_strerror(e));
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    crypto_sign_keypair(pk, sk);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_and_use),
        cmocka_unit_test(test_load_and_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ferry_buf_free(&g_dict);
    return rc;
}
