/*
 * codec_bench.c - codec-bench: how small and how fast the ferry batch codec is on realistic data,
 * beside InfluxDB line protocol + zstd, the raw text + zstd, and JSON lines + gzip of the same
 * records in the same run.
 *
 * Input: a generated Jetson corpus (corpus.h), or a line-protocol file and/or a log file given on
 * the command line. Records are cut into batches of 4 KiB, 64 KiB and 1 MiB of raw text (the
 * input lines as they arrived) and each batch goes the device's real path: journal payload
 * (record_pack) -> batch_builder_add_packed -> finish (encode + zstd + Ed25519), and the cloud's:
 * batch_decode (verify + bounded decompression + decode). Every batch is then decoded once more,
 * untimed, and compared record by record with its input, so the figures are of a lossless codec.
 *
 * Output: a table, then one `name: value` line per figure (the last lines).
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>

#include "common/buf.h"
#include "common/util.h"
#include "corpus.h"
#include "transport/batch.h"
#include "transport/dict.h"
#include "common/utf8.h"
#include "transport/lineproto.h"
#include "transport/record.h"

struct item {
    size_t off; /* payload offset in the corpus arena */
    uint32_t len;
    uint32_t raw_off_len; /* raw text length */
    size_t raw_off;       /* raw text offset in the corpus text */
    uint8_t stream;
    uint64_t seq;
};

struct corpus {
    const char *name;       /* "metrics" or "logs" */
    const char *unit;       /* "sample" or "line" */
    struct ferry_buf text;  /* the raw input text */
    struct ferry_buf arena; /* packed payloads */
    struct item *items;
    size_t n_items, cap_items;
    uint64_t seq[RECORD_STREAM_COUNT];
    size_t bad_lines;
};

static int add_item(struct corpus *c, const struct record *r, size_t raw_off, size_t raw_len)
{
    if (c->n_items == c->cap_items) {
        size_t ncap = c->cap_items ? c->cap_items * 2 : 4096;
        struct item *p = realloc(c->items, ncap * sizeof *p);
        if (!p)
            return -1;
        c->items = p;
        c->cap_items = ncap;
    }
    struct item *it = &c->items[c->n_items];
    it->off = c->arena.len;
    if (record_pack(r, &c->arena) != 0)
        return -1;
    it->len = (uint32_t)(c->arena.len - it->off);
    it->raw_off = raw_off;
    it->raw_off_len = (uint32_t)raw_len;
    it->stream = (uint8_t)r->stream;
    it->seq = ++c->seq[r->stream];
    c->n_items++;
    return 0;
}

struct lp_ctx {
    struct corpus *c;
    size_t off, len;
};

static int on_lp(void *arg, const struct record *r)
{
    struct lp_ctx *x = arg;
    return add_item(x->c, r, x->off, x->len);
}

static int count_lp(void *arg, const struct record *r)
{
    (void)arg;
    (void)r;
    return 0;
}

static int load_metrics(struct corpus *c)
{
    const char *t = (const char *)c->text.data;
    size_t pos = 0;
    while (pos < c->text.len) {
        const char *nl = memchr(t + pos, '\n', c->text.len - pos);
        size_t len = nl ? (size_t)(nl - (t + pos)) + 1 : c->text.len - pos;
        struct lp_ctx x = {c, pos, len};
        struct lineproto_error err;
        int rc = lineproto_parse(t + pos, len, LINEPROTO_NS, ferry_realtime_ns(), on_lp, &x, &err);
        if (rc == LINEPROTO_ECALLBACK)
            return -1;
        if (rc != 0)
            c->bad_lines++;
        pos += len;
    }
    return 0;
}

/* Parses "YYYY-MM-DDTHH:MM:SS[.fff...]Z LEVEL source: message" (the same rule as
 * `ferry dict train`); returns 0 when the line matched. */
static int parse_log_line(const char *line, size_t n, struct record *r)
{
    char stamp[20];
    struct tm tm;
    if (n < 22 || line[4] != '-' || line[10] != 'T')
        return -1;
    memcpy(stamp, line, 19);
    stamp[19] = '\0';
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end || *end)
        return -1;
    size_t i = 19;
    int64_t frac_ns = 0, scale = 100000000;
    if (line[i] == '.')
        for (i++; i < n && line[i] >= '0' && line[i] <= '9'; i++) {
            frac_ns += (line[i] - '0') * scale;
            scale /= 10;
        }
    if (i + 1 >= n || line[i] != 'Z' || line[i + 1] != ' ')
        return -1;
    const char *p = line + i + 2, *e = line + n;
    const char *sp = memchr(p, ' ', (size_t)(e - p));
    char lv[16];
    enum record_log_level level;
    if (!sp || (size_t)(sp - p) >= sizeof lv)
        return -1;
    memcpy(lv, p, (size_t)(sp - p));
    lv[sp - p] = '\0';
    if (record_level_parse(lv, &level) < 0)
        return -1;
    p = sp + 1;
    r->level = (uint8_t)level;
    r->ts_ns = (int64_t)timegm(&tm) * 1000000000ll + frac_ns;
    const char *colon = memchr(p, ':', (size_t)(e - p));
    if (colon && colon + 1 < e && colon[1] == ' ' && colon - p <= 64 &&
        !memchr(p, ' ', (size_t)(colon - p))) {
        r->name = (struct record_str){p, (size_t)(colon - p)};
        p = colon + 2;
    }
    r->message = (struct record_str){p, (size_t)(e - p)};
    return 0;
}

/* Log lines as parse_log_line() reads them; any other line is a whole message of source "log"
 * at level info with the previous line's timestamp (and is counted as not parsed). */
static int load_logs(struct corpus *c)
{
    const char *t = (const char *)c->text.data;
    size_t pos = 0;
    int64_t last_ts = 0;
    while (pos < c->text.len) {
        const char *line = t + pos;
        const char *nl = memchr(line, '\n', c->text.len - pos);
        size_t len = nl ? (size_t)(nl - line) + 1 : c->text.len - pos;
        size_t n = nl ? len - 1 : len;
        if (n > RECORD_MAX_VALUE_LEN)
            n = RECORD_MAX_VALUE_LEN; /* the rest of a giant line is not part of the record */
        struct record r = {.stream = RECORD_LOG, .level = RECORD_LEVEL_INFO, .ts_ns = last_ts};
        r.name = (struct record_str){"log", 3};
        r.message = (struct record_str){line, n};
        if (parse_log_line(line, n, &r) != 0)
            c->bad_lines++;
        last_ts = r.ts_ns;
        if (n > 0 && add_item(c, &r, pos, len) < 0)
            return -1;
        pos += len;
    }
    return 0;
}

/* CPU time of this thread: the rates are "per second of one core". The bench is single
 * threaded and runs on machines shared with builds, where wall-clock rates would measure the
 * neighbours as much as the codec. */
static double now_s(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return (double)ferry_monotonic_ns() / 1e9;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define BENCH_REPEATS 3

struct result {
    size_t batches, records, units, raw_bytes;
    size_t ferry_bytes, lp_zstd_bytes, text_zstd_bytes, json_gz_bytes;
    double enc_s, dec_s;
    int verified;
};

static uint8_t g_pk[32], g_sk[64];
static struct ferry_buf g_dict = FERRY_BUF_INIT;
static uint32_t g_dict_id;

static int dict_lookup(void *arg, uint32_t id, const void **dict, size_t *len)
{
    (void)arg;
    if (id != g_dict_id || g_dict.len == 0)
        return -1;
    *dict = g_dict.data;
    *len = g_dict.len;
    return 0;
}

struct count_ctx {
    size_t records, units;
};

static int count_cb(void *arg, const struct record *r)
{
    struct count_ctx *c = arg;
    c->records++;
    c->units += r->stream == RECORD_METRIC ? r->n_fields : 1;
    return 0;
}

struct verify_ctx {
    const struct corpus *c;
    size_t next;
    struct ferry_buf tmp;
    int bad;
};

static int verify_cb(void *arg, const struct record *r)
{
    struct verify_ctx *v = arg;
    const struct item *it = &v->c->items[v->next++];
    v->tmp.len = 0;
    if (record_pack(r, &v->tmp) != 0 || v->tmp.len != it->len || r->seq != it->seq ||
        memcmp(v->tmp.data, v->c->arena.data + it->off, it->len) != 0)
        v->bad++;
    return 0;
}

static int gzip_size(const uint8_t *p, size_t n, size_t *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t cap = deflateBound(&z, n);
    uint8_t *buf = malloc(cap);
    if (!buf) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = (Bytef *)p;
    z.avail_in = (uInt)n;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    *out = z.total_out;
    deflateEnd(&z);
    free(buf);
    return rc == Z_STREAM_END ? 0 : -1;
}

static int json_line(const struct record *r, struct ferry_buf *o)
{
    int ok = ferry_buf_printf(o, "{\"stream\":\"%s\",\"seq\":%llu,\"ts\":%lld,\"name\":",
                              record_stream_name(r->stream), (unsigned long long)r->seq,
                              (long long)r->ts_ns) == 0 &&
             ferry_buf_append_json_string(o, r->name.ptr, r->name.len) == 0;
    if (ok && r->stream == RECORD_LOG)
        ok = ferry_buf_printf(o, ",\"level\":\"%s\",\"message\":",
                              record_level_name((enum record_log_level)r->level)) == 0 &&
             ferry_buf_append_json_string(o, r->message.ptr, r->message.len) == 0;
    ok = ok && ferry_buf_append(o, ",\"tags\":{", 9) == 0;
    for (size_t i = 0; ok && i < r->n_tags; i++)
        ok = (i == 0 || ferry_buf_append_u8(o, ',') == 0) &&
             ferry_buf_append_json_string(o, r->tags[i].key.ptr, r->tags[i].key.len) == 0 &&
             ferry_buf_append_u8(o, ':') == 0 &&
             ferry_buf_append_json_string(o, r->tags[i].value.ptr, r->tags[i].value.len) == 0;
    ok = ok && ferry_buf_append(o, "},\"fields\":{", 12) == 0;
    for (size_t i = 0; ok && i < r->n_fields; i++) {
        const struct record_field *f = &r->fields[i];
        ok = (i == 0 || ferry_buf_append_u8(o, ',') == 0) &&
             ferry_buf_append_json_string(o, f->key.ptr, f->key.len) == 0 &&
             ferry_buf_append_u8(o, ':') == 0;
        switch (f->type) {
        case RECORD_FIELD_FLOAT: ok = ok && ferry_buf_printf(o, "%.17g", f->v.f) == 0; break;
        case RECORD_FIELD_INT:
            ok = ok && ferry_buf_printf(o, "%lld", (long long)f->v.i) == 0;
            break;
        case RECORD_FIELD_UINT:
            ok = ok && ferry_buf_printf(o, "%llu", (unsigned long long)f->v.u) == 0;
            break;
        case RECORD_FIELD_BOOL:
            ok = ok && ferry_buf_printf(o, "%s", f->v.b ? "true" : "false") == 0;
            break;
        case RECORD_FIELD_STRING:
            ok = ok && ferry_buf_append_json_string(o, f->v.s.ptr, f->v.s.len) == 0;
            break;
        }
    }
    return ok && ferry_buf_append(o, "}}\n", 3) == 0 ? 0 : -1;
}

static int run(const struct corpus *c, size_t batch_raw, int level, const void *dict,
               size_t dict_len, uint32_t dict_id, struct result *res)
{
    memset(res, 0, sizeof *res);
    struct batch_builder_config cfg = {
        .device_id = "d-bench", .secret_key = g_sk, .zstd_level = level};
    if (dict) {
        cfg.dict = dict;
        cfg.dict_len = dict_len;
        cfg.dict_id = dict_id;
    }
    struct batch_builder *b = NULL;
    struct batch_decoder *d = NULL;
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    struct ferry_buf wire = FERRY_BUF_INIT, lp = FERRY_BUF_INIT, js = FERRY_BUF_INIT,
                     zbuf = FERRY_BUF_INIT;
    size_t *bounds = NULL; /* batch i covers items [bounds[i], bounds[i+1]) */
    size_t *wire_off = NULL;
    struct record_scratch *sc = malloc(sizeof *sc);
    int rc = -1;
    if (!zc || !sc || batch_builder_new(&cfg, &b) != 0 || batch_decoder_new(&d) != 0)
        goto out;
    bounds = malloc((c->n_items + 2) * sizeof *bounds);
    wire_off = malloc((c->n_items + 2) * sizeof *wire_off);
    if (!bounds || !wire_off)
        goto out;
    /* cut batches by raw text size */
    size_t nb = 0, i = 0;
    while (i < c->n_items) {
        bounds[nb++] = i;
        size_t raw = 0;
        do {
            raw += c->items[i].raw_off_len;
            i++;
        } while (i < c->n_items && raw + c->items[i].raw_off_len <= batch_raw);
    }
    bounds[nb] = c->n_items;
    res->batches = nb;

    /* encode + compress + sign, timed in CPU time; best of BENCH_REPEATS runs (caches, page
     * faults of the first run) */
    res->enc_s = 1e30;
    for (int rep = 0; rep < BENCH_REPEATS; rep++) {
        wire.len = 0;
        double t0 = now_s();
        for (size_t k = 0; k < nb; k++) {
            wire_off[k] = wire.len;
            for (size_t j = bounds[k]; j < bounds[k + 1]; j++) {
                const struct item *it = &c->items[j];
                int arc = batch_builder_add_packed(b, (enum record_stream)it->stream, it->seq,
                                                   c->arena.data + it->off, it->len);
                if (arc != 0) {
                    fprintf(stderr, "codec-bench: add: %s: %s\n", batch_strerror(arc),
                            batch_builder_error(b));
                    goto out;
                }
            }
            if (batch_builder_finish(b, 1, &wire) != 0) {
                fprintf(stderr, "codec-bench: finish: %s\n", batch_builder_error(b));
                goto out;
            }
        }
        double dt = now_s() - t0;
        if (dt < res->enc_s)
            res->enc_s = dt;
    }
    wire_off[nb] = wire.len;
    res->ferry_bytes = wire.len;

    /* verify + decompress + decode, timed, best of BENCH_REPEATS */
    batch_decoder_set_dict_lookup(d, dict_lookup, NULL);
    res->dec_s = 1e30;
    for (int rep = 0; rep < BENCH_REPEATS; rep++) {
        struct count_ctx cc = {0, 0};
        double t0 = now_s();
        for (size_t k = 0; k < nb; k++) {
            struct batch_errinfo ei;
            int drc = batch_decode(d, wire.data + wire_off[k], wire_off[k + 1] - wire_off[k], g_pk,
                                   NULL, count_cb, &cc, &ei);
            if (drc != 0) {
                fprintf(stderr, "codec-bench: decode batch %zu: %s: %s\n", k, batch_strerror(drc),
                        ei.msg);
                goto out;
            }
        }
        double dt = now_s() - t0;
        if (dt < res->dec_s)
            res->dec_s = dt;
        res->records = cc.records;
        res->units = cc.units;
    }

    /* untimed: exact comparison with the input */
    struct verify_ctx v = {c, 0, FERRY_BUF_INIT, 0};
    for (size_t k = 0; k < nb; k++)
        if (batch_decode(d, wire.data + wire_off[k], wire_off[k + 1] - wire_off[k], g_pk, NULL,
                         verify_cb, &v, NULL) != 0)
            v.bad++;
    ferry_buf_free(&v.tmp);
    res->verified = v.bad == 0 && v.next == c->n_items;

    /* baselines on the same batches (once: not again for the dictionary run) */
    for (size_t k = 0; k < nb && !dict; k++) {
        lp.len = js.len = 0;
        size_t raw = 0;
        const uint8_t *raw_start = c->text.data + c->items[bounds[k]].raw_off;
        for (size_t j = bounds[k]; j < bounds[k + 1]; j++) {
            const struct item *it = &c->items[j];
            struct record r;
            if (record_unpack(c->arena.data + it->off, it->len, sc, &r, NULL, 0) != 0)
                goto out;
            r.seq = it->seq;
            raw += it->raw_off_len;
            if (lineproto_format(&r, &lp) != 0 || json_line(&r, &js) != 0)
                goto out;
        }
        res->raw_bytes += raw;
        size_t cap = ZSTD_compressBound(lp.len > raw ? lp.len : raw);
        zbuf.len = 0;
        if (ferry_buf_reserve(&zbuf, cap) != 0)
            goto out;
        size_t zn = ZSTD_compressCCtx(zc, zbuf.data, cap, lp.data, lp.len, level);
        if (ZSTD_isError(zn))
            goto out;
        res->lp_zstd_bytes += zn;
        /* raw text: items of a batch are contiguous in the text */
        zn = ZSTD_compressCCtx(zc, zbuf.data, cap, raw_start, raw, level);
        if (ZSTD_isError(zn))
            goto out;
        res->text_zstd_bytes += zn;
        size_t gz;
        if (gzip_size(js.data, js.len, &gz) != 0)
            goto out;
        res->json_gz_bytes += gz;
    }
    rc = 0;
out:
    free(sc);
    free(bounds);
    free(wire_off);
    ferry_buf_free(&wire);
    ferry_buf_free(&lp);
    ferry_buf_free(&js);
    ferry_buf_free(&zbuf);
    ZSTD_freeCCtx(zc);
    batch_builder_free(b);
    batch_decoder_free(d);
    return rc;
}

/* Trains the dictionary of the "+dict" rows: on separately generated data (other seeds, another
 * day) for the generated corpus, or on the first quarter of each input file's records. */
static int train_dict(const struct corpus *cs, int generated, int64_t start_ns)
{
    struct dict_trainer *t;
    struct record_scratch *sc = malloc(sizeof *sc);
    int rc = -1;
    if (!sc || dict_trainer_new(DICT_DEFAULT_SAMPLE_RAW_BYTES, &t) != 0) {
        free(sc);
        return -1;
    }
    struct corpus train[2] = {{.name = "metrics"}, {.name = "logs"}};
    const struct corpus *src = cs;
    if (generated) {
        int64_t other_day = start_ns - 86400ll * 7 * 1000000000ll;
        if (corpus_metrics(&train[0].text, other_day, 900, 101) != 0 ||
            corpus_logs(&train[1].text, other_day, 900, 102) != 0 || load_metrics(&train[0]) != 0 ||
            load_logs(&train[1]) != 0)
            goto out;
        src = train;
    }
    for (int k = 0; k < 2; k++) {
        size_t n = generated ? src[k].n_items : src[k].n_items / 4;
        for (size_t i = 0; i < n; i++) {
            struct record r;
            const struct item *it = &src[k].items[i];
            if (record_unpack(src[k].arena.data + it->off, it->len, sc, &r, NULL, 0) != 0 ||
                dict_trainer_add(t, &r) != 0)
                goto out;
        }
    }
    char why[200] = "";
    if (dict_trainer_train(t, DICT_DEFAULT_SIZE, &g_dict, &g_dict_id, why, sizeof why) != 0) {
        fprintf(stderr, "codec-bench: dictionary training failed: %s\n", why);
        goto out;
    }
    rc = 0;
out:
    for (int k = 0; k < 2; k++) {
        ferry_buf_free(&train[k].text);
        ferry_buf_free(&train[k].arena);
        free(train[k].items);
    }
    free(sc);
    dict_trainer_free(t);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: codec-bench [--seconds N] [--metrics FILE.lp] [--logs FILE.log]\n"
        "                   [--level N] [--write-corpus DIR]\n"
        "\n"
        "Measures the ferry batch codec (bytes on the wire per metric sample and per log\n"
        "line, compression ratio, encode+compress+sign and verify+decompress+decode rates)\n"
        "for batches of 4 KiB, 64 KiB and 1 MiB of raw text, beside line protocol + zstd,\n"
        "the raw text + zstd and JSON lines + gzip of the same records.\n"
        "\n"
        "  --seconds N       generate N seconds of Jetson metrics and CV-app logs (default 3600)\n"
        "  --metrics FILE    use this InfluxDB line-protocol file instead of generated metrics\n"
        "  --logs FILE       use this log file instead of generated logs (lines of\n"
        "                    'YYYY-MM-DDTHH:MM:SS[.fff]Z LEVEL source: message'; other lines are\n"
        "                    taken whole as messages)\n"
        "  --level N         zstd level for ferry and the zstd baselines (default %d)\n"
        "  --write-corpus D  write the generated corpus to D/metrics.lp and D/app.log and exit\n"
        "\n"
        "Rows '+dict' repeat the ferry run with a zstd dictionary (transport/dict.h) trained on\n"
        "separately generated data, or on the first quarter of the given files.\n"
        "\n"
        "The last lines are `name: value`, one per figure.\n",
        BATCH_DEFAULT_ZSTD_LEVEL);
}

static int load_file(const char *path, struct ferry_buf *out)
{
    uint8_t *data;
    size_t len;
    int rc = ferry_read_file(path, (size_t)2 << 30, &data, &len);
    if (rc != 0) {
        fprintf(stderr, "codec-bench: %s: %s\n", path, strerror(-rc));
        return -1;
    }
    out->data = data;
    out->len = len;
    out->cap = len + 1;
    return 0;
}

struct figure {
    char name[96];
    double value;
};

int main(int argc, char **argv)
{
    int64_t seconds = 3600;
    int level = BATCH_DEFAULT_ZSTD_LEVEL;
    const char *metrics_file = NULL, *logs_file = NULL, *write_dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--seconds") == 0 && v && ferry_parse_i64(v, 1, 86400 * 30, &n) == 0) {
            seconds = n;
            i++;
        } else if (strcmp(a, "--level") == 0 && v && ferry_parse_i64(v, 1, 22, &n) == 0) {
            level = (int)n;
            i++;
        } else if (strcmp(a, "--metrics") == 0 && v) {
            metrics_file = v;
            i++;
        } else if (strcmp(a, "--logs") == 0 && v) {
            logs_file = v;
            i++;
        } else if (strcmp(a, "--write-corpus") == 0 && v) {
            write_dir = v;
            i++;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (sodium_init() < 0)
        return 1;
    crypto_sign_keypair(g_pk, g_sk);
    struct corpus cs[2] = {{.name = "metrics", .unit = "sample"}, {.name = "logs", .unit = "line"}};
    int status = 1;
    const int64_t start_ns = 1764070000000000000ll; /* 2025-11-25, a fixed day */
    if (metrics_file ? load_file(metrics_file, &cs[0].text)
                     : corpus_metrics(&cs[0].text, start_ns, (unsigned)seconds, 1)) {
        fprintf(stderr, "codec-bench: cannot get the metrics corpus\n");
        goto out;
    }
    if (logs_file ? load_file(logs_file, &cs[1].text)
                  : corpus_logs(&cs[1].text, start_ns, (unsigned)seconds, 2)) {
        fprintf(stderr, "codec-bench: cannot get the log corpus\n");
        goto out;
    }
    if (write_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/metrics.lp", write_dir);
        int rc = ferry_write_file_atomic(path, cs[0].text.data, cs[0].text.len, 0644);
        if (rc == 0) {
            snprintf(path, sizeof path, "%s/app.log", write_dir);
            rc = ferry_write_file_atomic(path, cs[1].text.data, cs[1].text.len, 0644);
        }
        if (rc != 0)
            fprintf(stderr, "codec-bench: writing %s: %s\n", path, strerror(-rc));
        status = rc != 0;
        goto out;
    }
    if (load_metrics(&cs[0]) != 0 || load_logs(&cs[1]) != 0) {
        fprintf(stderr, "codec-bench: out of memory loading the corpus\n");
        goto out;
    }
    if (train_dict(cs, !metrics_file && !logs_file, start_ns) != 0)
        goto out;
    for (int k = 0; k < 2; k++)
        printf("%s: %zu records from %zu bytes of text%s (%zu lines not parsed)\n", cs[k].name,
               cs[k].n_items, cs[k].text.len, (k ? logs_file : metrics_file) ? "" : " (generated)",
               cs[k].bad_lines);
    printf("dictionary %u: %zu bytes, trained on %s\n", g_dict_id, g_dict.len,
           !metrics_file && !logs_file ? "separately generated data (other seeds, other day)"
                                       : "the first quarter of each input's records");
    printf("zstd level %d for ferry and the zstd baselines; gzip level 6. Figures are from a\n"
           "shared, possibly loaded machine. Per-unit columns: bytes per metric sample (field\n"
           "value) or per log line. Rates: records and MB of raw text per second of CPU time\n"
           "of this single thread (CLOCK_THREAD_CPUTIME_ID), best of %d runs.\n\n",
           level, BENCH_REPEATS);
    printf("%-8s %6s %7s %8s %9s %11s | %9s %7s | %9s %9s %9s | %7s %6s %7s %6s\n", "corpus",
           "batch", "batches", "records", "units", "raw_bytes", "ferry/u", "ratio", "lp+zstd/u",
           "text+zst/u", "json+gz/u", "enc Mr/s", "MB/s", "dec Mr/s", "MB/s");
    static const size_t sizes[3] = {4096, 65536, 1048576};
    static const char *const size_names[3] = {"4k", "64k", "1m"};
    struct figure figs[128];
    size_t nf = 0;
    int all_ok = 1;
#define FIG(fmt, val, ...)                                                                         \
    do {                                                                                           \
        snprintf(figs[nf].name, sizeof figs[nf].name, "%s_%s_" fmt, cs[k].name, size_names[s],     \
                 ##__VA_ARGS__);                                                                   \
        figs[nf++].value = (val);                                                                  \
    } while (0)
    for (int k = 0; k < 2; k++) {
        if (cs[k].n_items == 0)
            continue;
        for (int s = 0; s < 3; s++) {
            struct result r;
            if (run(&cs[k], sizes[s], level, NULL, 0, 0, &r) != 0) {
                fprintf(stderr, "codec-bench: run failed\n");
                goto out;
            }
            double u = r.units ? (double)r.units : 1;
            printf("%-8s %6s %7zu %8zu %9zu %11zu | %9.3f %7.2f | %9.3f %9.3f %9.3f | %7.3f %6.1f "
                   "%7.3f %6.1f %s\n",
                   cs[k].name, size_names[s], r.batches, r.records, r.units, r.raw_bytes,
                   r.ferry_bytes / u, (double)r.raw_bytes / r.ferry_bytes, r.lp_zstd_bytes / u,
                   r.text_zstd_bytes / u, r.json_gz_bytes / u, r.records / r.enc_s / 1e6,
                   r.raw_bytes / r.enc_s / 1e6, r.records / r.dec_s / 1e6,
                   r.raw_bytes / r.dec_s / 1e6, r.verified ? "" : "LOSSY!");
            all_ok &= r.verified && r.records == cs[k].n_items;
            struct result rd;
            if (run(&cs[k], sizes[s], level, g_dict.data, g_dict.len, g_dict_id, &rd) != 0) {
                fprintf(stderr, "codec-bench: run with the dictionary failed\n");
                goto out;
            }
            printf("%-8s %6s %7zu %8zu %9zu %11s | %9.3f %7.2f | %9s %9s %9s | %7.3f %6.1f "
                   "%7.3f %6.1f %s\n",
                   "  +dict", size_names[s], rd.batches, rd.records, rd.units, "",
                   rd.ferry_bytes / u, (double)r.raw_bytes / rd.ferry_bytes, "", "", "",
                   rd.records / rd.enc_s / 1e6, r.raw_bytes / rd.enc_s / 1e6,
                   rd.records / rd.dec_s / 1e6, r.raw_bytes / rd.dec_s / 1e6,
                   rd.verified ? "" : "LOSSY!");
            all_ok &= rd.verified && rd.records == cs[k].n_items;
            const char *un = cs[k].unit;
            char nm[64];
            snprintf(nm, sizeof nm, "ferry_bytes_per_%s", un);
            FIG("%s", r.ferry_bytes / u, nm);
            snprintf(nm, sizeof nm, "lp_zstd_bytes_per_%s", un);
            FIG("%s", r.lp_zstd_bytes / u, nm);
            snprintf(nm, sizeof nm, "text_zstd_bytes_per_%s", un);
            FIG("%s", r.text_zstd_bytes / u, nm);
            snprintf(nm, sizeof nm, "json_gzip_bytes_per_%s", un);
            FIG("%s", r.json_gz_bytes / u, nm);
            snprintf(nm, sizeof nm, "ferry_dict_bytes_per_%s", un);
            FIG("%s", rd.ferry_bytes / u, nm);
            FIG("ratio_vs_raw_text%s", (double)r.raw_bytes / r.ferry_bytes, "");
            FIG("dict_ratio_vs_raw_text%s", (double)r.raw_bytes / rd.ferry_bytes, "");
            FIG("text_zstd_ratio_vs_raw_text%s", (double)r.raw_bytes / r.text_zstd_bytes, "");
            FIG("encode_records_per_s%s", r.records / r.enc_s, "");
            FIG("encode_mb_per_s%s", r.raw_bytes / r.enc_s / 1e6, "");
            FIG("decode_records_per_s%s", r.records / r.dec_s, "");
            FIG("decode_mb_per_s%s", r.raw_bytes / r.dec_s / 1e6, "");
        }
    }
    printf("\n");
    for (size_t i = 0; i < nf; i++)
        printf("%s: %.3f\n", figs[i].name, figs[i].value);
    /* What the text-encoding rule costs the line-protocol inputs (docs/wire-format.md §6.1): the
     * parse rate of the metrics text (the check included) beside the rate of the check alone. */
    double parse_s = 1e30, check_s = 1e30;
    size_t checked = 0;
    for (int i = 0; i < BENCH_REPEATS; i++) {
        double t0 = now_s();
        struct lineproto_error err;
        if (lineproto_parse((const char *)cs[0].text.data, cs[0].text.len, LINEPROTO_NS, 0,
                            count_lp, NULL, &err) < 0 &&
            err.line == 0)
            break;
        double t1 = now_s();
        checked += ferry_utf8_find_invalid(cs[0].text.data, cs[0].text.len, false);
        double t2 = now_s();
        parse_s = t1 - t0 < parse_s ? t1 - t0 : parse_s;
        check_s = t2 - t1 < check_s ? t2 - t1 : check_s;
    }
    printf("lineproto_parse_mb_per_s: %.1f\n", (double)cs[0].text.len / parse_s / 1e6);
    printf("utf8_check_mb_per_s: %.1f\n", (double)cs[0].text.len / check_s / 1e6);
    if (checked == 0)
        printf("(empty metrics text)\n");
    printf("lossless_roundtrip: %s\n", all_ok ? "yes" : "NO");
    status = all_ok ? 0 : 1;
out:
    for (int k = 0; k < 2; k++) {
        ferry_buf_free(&cs[k].text);
        ferry_buf_free(&cs[k].arena);
        free(cs[k].items);
    }
    ferry_buf_free(&g_dict);
    return status;
}
