/*
 * batch_decode.c - the receive path: verify, bounded decompression, body decoding
 * (docs/wire-format.md §4-§6).
 *
 * Order of operations (ARCHITECTURE.md invariant 4): batch_peek_header() bounds and parses the
 * header; batch_verify() checks key id, signature and body hash; only then is a buffer of the
 * declared raw size allocated (at most BATCH_MAX_BODY_RAW) and the body decompressed into it,
 * with zstd unable to write past it (a frame that wants more is BATCH_EBOMB).
 *
 * Body decoding is one pass: the series and template dictionaries and the column directory are
 * read and checked first (every count against §6 and against the bytes that remain, before the
 * arrays they size are allocated), then each record is rebuilt from per-column cursors. Strings
 * in records point into the decompressed body; rebuilt log messages into a scratch buffer.
 * At the end every column must be consumed exactly.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "common/buf.h"
#include "transport/batch.h"
#include "transport/batch_internal.h"

/* A cursor over one column. */
struct cur {
    const uint8_t *p, *end;
};

struct dcol {
    struct cur c;
    uint64_t len; /* from the directory, until the column is cut */
    uint8_t enc, k, order;
    int64_t prev, prev_d;
    uint64_t prev_bits;
    uint32_t row;
    const char *sprev;
    size_t sprev_len;
    bool has_sprev;
};

struct dseries {
    uint8_t stream, flags;
    struct record_str name;
    uint32_t tag_first, n_tags, field_first, n_fields;
    uint32_t n_rows, rows_left;
    struct cur ts;
    uint64_t ts_len; /* from the directory (ts_mode 1) */
    int64_t ts_prev, ts_delta;
    uint32_t ts_row;
};

struct dtemplate {
    const char *text;
    uint32_t len;
    uint32_t slot_first, n_slots;
};

struct batch_decoder {
    ZSTD_DCtx *dctx;
    ZSTD_DDict *ddict;
    uint32_t ddict_id;
    const void *ddict_src;
    size_t ddict_len;
    batch_dict_lookup_fn dict_fn;
    void *dict_arg;
    uint8_t *raw;
    size_t raw_cap;
    struct dseries *series;
    uint32_t cap_series;
    struct record_tag *tags;
    uint32_t cap_tags;
    struct record_field *fields;
    struct dcol *cols;
    uint32_t cap_fields;
    struct dtemplate *tmpls;
    uint32_t cap_tmpls;
    int64_t *slot_prev;
    uint32_t cap_slots;
    char *msg;
    int callback_status;
};

int batch_decoder_new(struct batch_decoder **out)
{
    struct batch_decoder *d = calloc(1, sizeof *d);
    *out = NULL;
    if (!d)
        return BATCH_ENOMEM;
    d->dctx = ZSTD_createDCtx();
    d->msg = malloc(RECORD_MAX_VALUE_LEN + 32);
    if (!d->dctx || !d->msg) {
        batch_decoder_free(d);
        return BATCH_ENOMEM;
    }
    *out = d;
    return 0;
}

void batch_decoder_free(struct batch_decoder *d)
{
    if (!d)
        return;
    ZSTD_freeDCtx(d->dctx);
    ZSTD_freeDDict(d->ddict);
    free(d->raw);
    free(d->series);
    free(d->tags);
    free(d->fields);
    free(d->cols);
    free(d->tmpls);
    free(d->slot_prev);
    free(d->msg);
    free(d);
}

void batch_decoder_set_dict_lookup(struct batch_decoder *d, batch_dict_lookup_fn fn, void *arg)
{
    d->dict_fn = fn;
    d->dict_arg = arg;
}

int batch_decoder_callback_status(const struct batch_decoder *d)
{
    return d->callback_status;
}

static int reserve(void **arr, uint32_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, ncap * size);
    if (!p)
        return BATCH_ENOMEM;
    *arr = p;
    *cap = (uint32_t)ncap;
    return 0;
}

/* ---- Decompression (§4, §6) ------------------------------------------------------------------ */

static int decompress(struct batch_decoder *d, const struct batch_header *h, const uint8_t *body,
                      const uint8_t **raw_out, struct batch_errinfo *ei)
{
    size_t body_off = h->header_len + BATCH_SIGNATURE_LEN;
    if (h->compression == BATCH_COMPRESSION_NONE) {
        *raw_out = body;
        return 0;
    }
    unsigned long long fcs = ZSTD_getFrameContentSize(body, h->body_len);
    if (fcs == ZSTD_CONTENTSIZE_ERROR)
        return batch__fail(ei, BATCH_EDECOMPRESS, body_off, 0, "body is not a zstd frame");
    if (fcs == ZSTD_CONTENTSIZE_UNKNOWN)
        return batch__fail(ei, BATCH_EDECOMPRESS, body_off, 0,
                           "zstd frame does not declare its content size");
    if (fcs > h->body_raw_len)
        return batch__fail(ei, BATCH_EBOMB, body_off, 0,
                           "zstd frame declares %llu bytes, header %u", fcs, h->body_raw_len);
    if (fcs != h->body_raw_len)
        return batch__fail(ei, BATCH_EDECOMPRESS, body_off, 0,
                           "zstd frame declares %llu bytes, header %u", fcs, h->body_raw_len);
    if (ZSTD_isError(ZSTD_DCtx_reset(d->dctx, ZSTD_reset_session_and_parameters)))
        return batch__fail(ei, BATCH_EDECOMPRESS, body_off, 0, "zstd reset failed");
    if (h->dict_id) {
        const void *dict = NULL;
        size_t dict_len = 0;
        if (!d->dict_fn || d->dict_fn(d->dict_arg, h->dict_id, &dict, &dict_len) != 0 || !dict)
            return batch__fail(ei, BATCH_EDICT, BH_DICT_ID, 0, "dictionary %u is unknown",
                               h->dict_id);
        if (!d->ddict || d->ddict_id != h->dict_id || d->ddict_src != dict ||
            d->ddict_len != dict_len) {
            ZSTD_freeDDict(d->ddict);
            d->ddict = ZSTD_createDDict(dict, dict_len);
            d->ddict_id = h->dict_id;
            d->ddict_src = dict;
            d->ddict_len = dict_len;
            if (!d->ddict)
                return batch__fail(ei, BATCH_EDICT, BH_DICT_ID, 0, "dictionary %u cannot be loaded",
                                   h->dict_id);
        }
        if (ZSTD_isError(ZSTD_DCtx_refDDict(d->dctx, d->ddict)))
            return batch__fail(ei, BATCH_EDICT, BH_DICT_ID, 0, "dictionary %u not usable",
                               h->dict_id);
    }
    size_t need = h->body_raw_len ? h->body_raw_len : 1;
    if (need > d->raw_cap) {
        uint8_t *p = realloc(d->raw, need);
        if (!p)
            return batch__fail(ei, BATCH_ENOMEM, body_off, 0, "out of memory for %zu bytes", need);
        d->raw = p;
        d->raw_cap = need;
    }
    /* One-shot decompression into a buffer of exactly the declared size: zstd cannot write
     * past it, so a bomb (or a second frame) ends as dstSize_tooSmall. */
    size_t n = ZSTD_decompressDCtx(d->dctx, d->raw, h->body_raw_len, body, h->body_len);
    if (ZSTD_isError(n)) {
        if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
            return batch__fail(ei, BATCH_EBOMB, body_off, 0,
                               "body decompresses to more than the declared %u bytes",
                               h->body_raw_len);
        if (ZSTD_getErrorCode(n) == ZSTD_error_dictionary_wrong)
            return batch__fail(ei, BATCH_EDICT, BH_DICT_ID, 0, "dictionary %u does not match",
                               h->dict_id);
        return batch__fail(ei, BATCH_EDECOMPRESS, body_off, 0, "zstd: %s", ZSTD_getErrorName(n));
    }
    if (n != h->body_raw_len)
        return batch__fail(ei, BATCH_EDECOMPRESS, body_off, 0,
                           "body decompressed to %zu bytes, header says %u", n, h->body_raw_len);
    *raw_out = d->raw;
    return 0;
}

static int decode_common(struct batch_decoder *d, const void *batch, size_t len, const uint8_t *pk,
                         struct batch_header *h_out, batch_record_fn fn, void *arg,
                         struct batch_errinfo *ei)
{
    struct batch_header *h = h_out ? h_out : malloc(sizeof *h);
    const uint8_t *raw = NULL;
    int rc;
    if (ei)
        memset(ei, 0, sizeof *ei);
    if (!h)
        return batch__fail(ei, BATCH_ENOMEM, 0, 0, "out of memory");
    d->callback_status = 0;
    if ((rc = batch_peek_header(batch, len, h, ei)) < 0)
        goto out;
    if (pk && (rc = batch_verify(batch, len, h, pk, ei)) < 0)
        goto out;
    const uint8_t *body = (const uint8_t *)batch + h->header_len + BATCH_SIGNATURE_LEN;
    if ((rc = decompress(d, h, body, &raw, ei)) < 0)
        goto out;
    rc = batch__decode_body(d, h, raw, h->body_raw_len, fn, arg, ei);
out:
    if (h != h_out)
        free(h);
    return rc;
}

int batch_decode(struct batch_decoder *d, const void *batch, size_t len,
                 const uint8_t public_key[BATCH_PUBLIC_KEY_LEN], struct batch_header *h_out,
                 batch_record_fn fn, void *arg, struct batch_errinfo *ei)
{
    if (!public_key)
        return batch__fail(ei, BATCH_EINVAL, 0, 0, "no public key");
    return decode_common(d, batch, len, public_key, h_out, fn, arg, ei);
}

int batch_decode_unverified(struct batch_decoder *d, const void *batch, size_t len,
                            struct batch_header *h_out, batch_record_fn fn, void *arg,
                            struct batch_errinfo *ei)
{
    return decode_common(d, batch, len, NULL, h_out, fn, arg, ei);
}

/* ---- Body (§5) ---------------------------------------------------------------------------- */

static inline int cur_uv(struct cur *c, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (c->p >= c->end)
            return -1;
        uint8_t byte = *c->p++;
        if (shift == 63 && byte > 1)
            return -1;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static inline int cur_sv(struct cur *c, int64_t *out)
{
    uint64_t z;
    if (cur_uv(c, &z) < 0)
        return -1;
    *out = batch__unzigzag(z);
    return 0;
}

struct bodyctx {
    struct batch_decoder *d;
    const uint8_t *base;
    size_t len;
    struct batch_errinfo *ei;
};

#define BFAIL(bc, at, ...)                                                                         \
    batch__fail((bc)->ei, BATCH_EBODY, (size_t)((at) - (bc)->base), 1, __VA_ARGS__)

static int get_str(struct bodyctx *bc, struct cur *c, size_t max, struct record_str *out,
                   const char *what)
{
    const uint8_t *at = c->p;
    uint64_t n;
    if (cur_uv(c, &n) < 0)
        return BFAIL(bc, at, "%s: truncated length", what);
    if (n > max)
        return batch__fail(bc->ei, BATCH_ELIMIT, (size_t)(at - bc->base), 1,
                           "%s: %llu bytes (max %zu)", what, (unsigned long long)n, max);
    if (n > (size_t)(c->end - c->p))
        return BFAIL(bc, at, "%s: %llu bytes but %zu remain", what, (unsigned long long)n,
                     (size_t)(c->end - c->p));
    out->ptr = n ? (const char *)c->p : "";
    out->len = (size_t)n;
    c->p += n;
    return 0;
}

/* Reads a count and checks it against `max` and against the bytes left (each item needs at
 * least `min_item` bytes), before anything is allocated for it. */
static int get_count(struct bodyctx *bc, struct cur *c, uint64_t max, size_t min_item,
                     const char *what, uint64_t *out)
{
    const uint8_t *at = c->p;
    if (cur_uv(c, out) < 0)
        return BFAIL(bc, at, "%s: truncated", what);
    if (*out > max)
        return batch__fail(bc->ei, BATCH_ELIMIT, (size_t)(at - bc->base), 1, "%s: %llu (max %llu)",
                           what, (unsigned long long)*out, (unsigned long long)max);
    if (min_item && *out > (uint64_t)(c->end - c->p) / min_item)
        return BFAIL(bc, at, "%s: %llu cannot fit in %zu bytes", what, (unsigned long long)*out,
                     (size_t)(c->end - c->p));
    return 0;
}

static int parse_series(struct bodyctx *bc, struct cur *c, uint32_t n_series, uint32_t n_records)
{
    struct batch_decoder *d = bc->d;
    int rc;
    uint32_t n_tags_total = 0, n_fields_total = 0;
    uint64_t rows_total = 0;
    if (reserve((void **)&d->series, &d->cap_series, n_series, sizeof *d->series) < 0)
        return batch__fail(bc->ei, BATCH_ENOMEM, 0, 1, "out of memory");
    for (uint32_t s = 0; s < n_series; s++) {
        struct dseries *se = &d->series[s];
        const uint8_t *at = c->p;
        uint64_t n;
        memset(se, 0, sizeof *se);
        if (c->end - c->p < 2)
            return BFAIL(bc, at, "series %u: truncated", s);
        se->stream = *c->p++;
        se->flags = *c->p++;
        if (se->stream >= RECORD_STREAM_COUNT || (se->flags & ~BODY_SERIES_FLAGS_KNOWN))
            return BFAIL(bc, at, "series %u: stream %u or flags 0x%02x unknown", s, se->stream,
                         se->flags);
        if ((rc = get_str(bc, c, RECORD_MAX_KEY_LEN, &se->name, "series name")) < 0)
            return rc;
        if ((rc = get_count(bc, c, BATCH_MAX_TAGS, 2, "tag count", &n)) < 0)
            return rc;
        if (n_tags_total + n > BATCH_MAX_TOTAL_TAGS)
            return batch__fail(bc->ei, BATCH_ELIMIT, (size_t)(c->p - bc->base), 1,
                               "series %u: more than %u tags in all series", s,
                               BATCH_MAX_TOTAL_TAGS);
        se->tag_first = n_tags_total;
        se->n_tags = (uint32_t)n;
        if (reserve((void **)&d->tags, &d->cap_tags, (size_t)n_tags_total + n, sizeof *d->tags) < 0)
            return batch__fail(bc->ei, BATCH_ENOMEM, 0, 1, "out of memory");
        for (uint32_t i = 0; i < se->n_tags; i++) {
            struct record_tag *t = &d->tags[n_tags_total + i];
            if ((rc = get_str(bc, c, RECORD_MAX_KEY_LEN, &t->key, "tag key")) < 0 ||
                (rc = get_str(bc, c, RECORD_MAX_KEY_LEN, &t->value, "tag value")) < 0)
                return rc;
        }
        n_tags_total += se->n_tags;
        if ((rc = get_count(bc, c, BATCH_MAX_FIELDS, 2, "field count", &n)) < 0)
            return rc;
        if (n_fields_total + n > BATCH_MAX_TOTAL_FIELDS)
            return batch__fail(bc->ei, BATCH_ELIMIT, (size_t)(c->p - bc->base), 1,
                               "series %u: more than %u fields in all series", s,
                               BATCH_MAX_TOTAL_FIELDS);
        se->field_first = n_fields_total;
        se->n_fields = (uint32_t)n;
        uint32_t cap_before = d->cap_fields;
        if (reserve((void **)&d->fields, &d->cap_fields, (size_t)n_fields_total + n,
                    sizeof *d->fields) < 0)
            return batch__fail(bc->ei, BATCH_ENOMEM, 0, 1, "out of memory");
        if (d->cap_fields != cap_before) {
            struct dcol *nc = realloc(d->cols, (size_t)d->cap_fields * sizeof *nc);
            if (!nc) {
                d->cap_fields = cap_before; /* keep fields and cols capacities in step */
                return batch__fail(bc->ei, BATCH_ENOMEM, 0, 1, "out of memory");
            }
            d->cols = nc;
        }
        for (uint32_t i = 0; i < se->n_fields; i++) {
            struct record_field *f = &d->fields[n_fields_total + i];
            memset(f, 0, sizeof *f);
            if ((rc = get_str(bc, c, RECORD_MAX_KEY_LEN, &f->key, "field key")) < 0)
                return rc;
            if (c->p >= c->end || *c->p > RECORD_FIELD_BOOL)
                return BFAIL(bc, c->p, "field type missing or unknown");
            f->type = (enum record_field_type) * c->p++;
        }
        n_fields_total += se->n_fields;
        at = c->p;
        if ((rc = get_count(bc, c, n_records, 0, "series rows", &n)) < 0)
            return rc;
        if (n == 0)
            return BFAIL(bc, at, "series %u has no rows", s);
        se->n_rows = se->rows_left = (uint32_t)n;
        rows_total += n;
    }
    if (rows_total != n_records)
        return BFAIL(bc, c->p, "series rows add up to %llu, records %u",
                     (unsigned long long)rows_total, n_records);
    return 0;
}

static int parse_templates(struct bodyctx *bc, struct cur *c, uint32_t *n_out)
{
    struct batch_decoder *d = bc->d;
    uint64_t n;
    int rc;
    if ((rc = get_count(bc, c, BATCH_MAX_TEMPLATES, 1, "template count", &n)) < 0)
        return rc;
    if (reserve((void **)&d->tmpls, &d->cap_tmpls, n, sizeof *d->tmpls) < 0)
        return batch__fail(bc->ei, BATCH_ENOMEM, 0, 1, "out of memory");
    uint32_t slots = 0;
    for (uint32_t t = 0; t < n; t++) {
        struct record_str s;
        const uint8_t *at = c->p;
        if ((rc = get_str(bc, c, RECORD_MAX_VALUE_LEN, &s, "template")) < 0)
            return rc;
        uint32_t k = 0;
        for (size_t i = 0; i < s.len; i++)
            k += s.ptr[i] == BODY_TEMPLATE_SLOT;
        if (k > BATCH_MAX_TEMPLATE_SLOTS)
            return batch__fail(bc->ei, BATCH_ELIMIT, (size_t)(at - bc->base), 1,
                               "template %u has %u number slots (max %u)", t, k,
                               BATCH_MAX_TEMPLATE_SLOTS);
        if (slots + k > BATCH_MAX_TOTAL_SLOTS)
            return batch__fail(bc->ei, BATCH_ELIMIT, (size_t)(at - bc->base), 1,
                               "templates have more than %u number slots in all",
                               BATCH_MAX_TOTAL_SLOTS);
        d->tmpls[t] = (struct dtemplate){s.ptr, (uint32_t)s.len, slots, k};
        slots += k;
    }
    if (reserve((void **)&d->slot_prev, &d->cap_slots, slots ? slots : 1, sizeof *d->slot_prev) < 0)
        return batch__fail(bc->ei, BATCH_ENOMEM, 0, 1, "out of memory");
    memset(d->slot_prev, 0, (size_t)slots * sizeof *d->slot_prev);
    *n_out = (uint32_t)n;
    return 0;
}

/* Cuts `len` bytes off the front of *rest as a column. */
static int take(struct bodyctx *bc, struct cur *rest, uint64_t len, struct cur *out,
                const char *what)
{
    if (len > (uint64_t)(rest->end - rest->p))
        return BFAIL(bc, rest->p, "%s column of %llu bytes but %zu remain", what,
                     (unsigned long long)len, (size_t)(rest->end - rest->p));
    out->p = rest->p;
    out->end = rest->p + len;
    rest->p += len;
    return 0;
}

static int col_header(struct bodyctx *bc, struct dcol *dc, enum record_field_type type)
{
    memset(&dc->enc, 0, sizeof *dc - offsetof(struct dcol, enc));
    const uint8_t *at = dc->c.p;
    if (dc->c.p >= dc->c.end)
        return BFAIL(bc, at, "empty value column");
    dc->enc = *dc->c.p++;
    switch (type) {
    case RECORD_FIELD_FLOAT:
        if (dc->enc > BODY_FLOAT_DECIMAL)
            return BFAIL(bc, at, "float encoding %u unknown", dc->enc);
        if (dc->enc == BODY_FLOAT_DECIMAL) {
            if (dc->c.end - dc->c.p < 2)
                return BFAIL(bc, at, "decimal column header truncated");
            dc->k = *dc->c.p++;
            dc->order = *dc->c.p++;
            if (dc->k > BODY_MAX_DECIMAL_EXP || dc->order > BODY_INT_DOD)
                return BFAIL(bc, at, "decimal exponent %u or order %u out of range", dc->k,
                             dc->order);
        }
        return 0;
    case RECORD_FIELD_INT:
    case RECORD_FIELD_UINT:
        if (dc->enc > BODY_INT_DOD)
            return BFAIL(bc, at, "integer order %u unknown", dc->enc);
        dc->order = dc->enc;
        return 0;
    case RECORD_FIELD_BOOL:
    case RECORD_FIELD_STRING:
        if (dc->enc != 0)
            return BFAIL(bc, at, "column encoding %u unknown", dc->enc);
        return 0;
    }
    return BFAIL(bc, at, "field type unknown");
}

/* Next integer of a delta / delta-of-delta sequence (§5.5). */
static inline int next_int(struct dcol *dc, int64_t *out)
{
    int64_t x;
    if (cur_sv(&dc->c, &x) < 0)
        return -1;
    int64_t dlt = (dc->order == BODY_INT_DOD && dc->row >= 1) ? batch__add(dc->prev_d, x) : x;
    dc->prev = batch__add(dc->prev, dlt);
    dc->prev_d = dlt;
    dc->row++;
    *out = dc->prev;
    return 0;
}

static int next_value(struct bodyctx *bc, struct dcol *dc, struct record_field *f)
{
    const uint8_t *at = dc->c.p;
    int64_t v;
    switch (f->type) {
    case RECORD_FIELD_FLOAT:
        if (dc->enc == BODY_FLOAT_DECIMAL) {
            if (next_int(dc, &v) < 0)
                break;
            f->v.f = dc->k ? (double)v / batch__pow10[dc->k] : (double)v;
            return 0;
        }
        if (dc->enc == BODY_FLOAT_RAW) {
            if (dc->c.end - dc->c.p < 8)
                break;
            uint64_t bits = 0;
            for (int i = 0; i < 8; i++)
                bits |= (uint64_t)dc->c.p[i] << (8 * i);
            dc->c.p += 8;
            memcpy(&f->v.f, &bits, 8);
            return 0;
        }
        {
            if (dc->c.p >= dc->c.end)
                break;
            uint8_t ctl = *dc->c.p++;
            uint64_t x = 0;
            if (ctl != 0x80) {
                unsigned lz = ctl >> 4, tz = ctl & 15;
                if (lz + tz > 7)
                    return BFAIL(bc, at, "XOR control byte 0x%02x invalid", ctl);
                size_t m = 8 - lz - tz;
                if ((size_t)(dc->c.end - dc->c.p) < m)
                    break;
                for (size_t q = 0; q < m; q++)
                    x |= (uint64_t)dc->c.p[q] << (8 * (tz + q));
                dc->c.p += m;
            }
            dc->prev_bits ^= x;
            memcpy(&f->v.f, &dc->prev_bits, 8);
            return 0;
        }
    case RECORD_FIELD_INT:
        if (next_int(dc, &v) < 0)
            break;
        f->v.i = v;
        return 0;
    case RECORD_FIELD_UINT:
        if (next_int(dc, &v) < 0)
            break;
        f->v.u = (uint64_t)v;
        return 0;
    case RECORD_FIELD_BOOL:
        if (dc->c.p >= dc->c.end)
            break;
        if (*dc->c.p > 1)
            return BFAIL(bc, at, "bool value %u", *dc->c.p);
        f->v.b = *dc->c.p++ == 1;
        return 0;
    case RECORD_FIELD_STRING: {
        uint64_t tag;
        if (cur_uv(&dc->c, &tag) < 0)
            break;
        if (tag == 0) {
            if (!dc->has_sprev)
                return BFAIL(bc, at, "string repeats a value that does not exist");
            f->v.s.ptr = dc->sprev;
            f->v.s.len = dc->sprev_len;
            return 0;
        }
        if (tag - 1 > RECORD_MAX_VALUE_LEN)
            return batch__fail(bc->ei, BATCH_ELIMIT, (size_t)(at - bc->base), 1,
                               "string of %llu bytes (max %d)", (unsigned long long)(tag - 1),
                               RECORD_MAX_VALUE_LEN);
        if (tag - 1 > (uint64_t)(dc->c.end - dc->c.p))
            break;
        dc->sprev = tag - 1 ? (const char *)dc->c.p : "";
        dc->sprev_len = (size_t)(tag - 1);
        dc->has_sprev = true;
        dc->c.p += tag - 1;
        f->v.s.ptr = dc->sprev;
        f->v.s.len = dc->sprev_len;
        return 0;
    }
    }
    return BFAIL(bc, at, "value column truncated");
}

static size_t u64_to_dec(uint64_t v, char *out)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* Rebuilds a templated message into d->msg (§5.6). */
static int build_message(struct bodyctx *bc, const struct dtemplate *t, struct cur *numbers,
                         struct record_str *out)
{
    struct batch_decoder *d = bc->d;
    size_t n = 0;
    uint32_t slot = 0;
    const char *p = t->text, *end = t->text + t->len;
    while (p < end) {
        const char *q = memchr(p, BODY_TEMPLATE_SLOT, (size_t)(end - p));
        size_t lit = q ? (size_t)(q - p) : (size_t)(end - p);
        if (n + lit > RECORD_MAX_VALUE_LEN)
            return BFAIL(bc, numbers->p, "message longer than %d bytes", RECORD_MAX_VALUE_LEN);
        memcpy(d->msg + n, p, lit);
        n += lit;
        if (!q)
            break;
        const uint8_t *at = numbers->p;
        int64_t x;
        if (cur_sv(numbers, &x) < 0)
            return BFAIL(bc, at, "message number column truncated");
        int64_t *prev = &d->slot_prev[t->slot_first + slot++];
        *prev = batch__add(*prev, x);
        if (*prev < 0)
            return BFAIL(bc, at, "message number %lld negative", (long long)*prev);
        if (n + 20 > RECORD_MAX_VALUE_LEN)
            return BFAIL(bc, at, "message longer than %d bytes", RECORD_MAX_VALUE_LEN);
        n += u64_to_dec((uint64_t)*prev, d->msg + n);
        p = q + 1;
    }
    out->ptr = d->msg;
    out->len = n;
    return 0;
}

int batch__decode_body(struct batch_decoder *d, const struct batch_header *h, const uint8_t *raw,
                       size_t raw_len, batch_record_fn fn, void *arg, struct batch_errinfo *ei)
{
    struct bodyctx bcx = {d, raw, raw_len, ei}, *bc = &bcx;
    struct cur c = {raw, raw + raw_len};
    uint64_t n;
    int rc;
    if (c.p >= c.end || *c.p != BODY_FORMAT)
        return BFAIL(bc, c.p, "body format %d unknown", c.p < c.end ? *c.p : -1);
    c.p++;
    uint64_t n_records, n_series;
    if ((rc = get_count(bc, &c, BATCH_MAX_RECORDS, 0, "record count", &n_records)) < 0)
        return rc;
    if (n_records != h->record_count)
        return BFAIL(bc, c.p, "body has %llu records, header %u", (unsigned long long)n_records,
                     h->record_count);
    if ((rc = get_count(bc, &c, BATCH_MAX_SERIES, 4, "series count", &n_series)) < 0)
        return rc;
    if ((rc = parse_series(bc, &c, (uint32_t)n_series, (uint32_t)n_records)) < 0)
        return rc;
    uint32_t n_tmpls = 0;
    if ((rc = parse_templates(bc, &c, &n_tmpls)) < 0)
        return rc;
    if (c.end - c.p < 2)
        return BFAIL(bc, c.p, "timestamp parameters truncated");
    uint8_t ts_mode = *c.p++, ts_exp = *c.p++;
    if (ts_mode > BODY_TS_SERIES_DOD || ts_exp > BODY_MAX_TS_UNIT_EXP)
        return BFAIL(bc, c.p - 2, "timestamp mode %u or unit 10^%u unknown", ts_mode, ts_exp);
    int64_t ts_base;
    if (cur_sv(&c, &ts_base) < 0)
        return BFAIL(bc, c.p, "timestamp base truncated");
    uint64_t unit = (uint64_t)batch__pow10_i[ts_exp];

    /* Directory (§5.3): read every length first, then cut the columns. */
    uint64_t fixed_len[BODY_FIXED_COLUMNS];
    for (int i = 0; i < BODY_FIXED_COLUMNS; i++)
        if (cur_uv(&c, &fixed_len[i]) < 0)
            return BFAIL(bc, c.p, "column directory truncated");
    struct dseries *S = d->series;
    if (ts_mode == BODY_TS_SERIES_DOD)
        for (uint32_t s = 0; s < n_series; s++) {
            if (cur_uv(&c, &n) < 0 || n > raw_len)
                return BFAIL(bc, c.p, "timestamp directory truncated or too large");
            S[s].ts_len = n;
        }
    uint64_t type_total[5] = {0};
    for (uint32_t s = 0; s < n_series; s++)
        for (uint32_t f = 0; f < S[s].n_fields; f++) {
            uint32_t fi = S[s].field_first + f;
            if (cur_uv(&c, &n) < 0 || n > raw_len)
                return BFAIL(bc, c.p, "value directory truncated or too large");
            d->cols[fi].len = n;
            type_total[d->fields[fi].type] += n;
        }
    struct cur fixed[BODY_FIXED_COLUMNS];
    static const char *const fixed_names[BODY_FIXED_COLUMNS] = {
        "series id", "seq", "timestamp", "level", "message kind", "raw message", "number"};
    for (int i = 0; i < BODY_FIXED_COLUMNS; i++)
        if ((rc = take(bc, &c, fixed_len[i], &fixed[i], fixed_names[i])) < 0)
            return rc;
    if (ts_mode == BODY_TS_SERIES_DOD) {
        struct cur tsrest = fixed[2];
        for (uint32_t s = 0; s < n_series; s++) {
            if ((rc = take(bc, &tsrest, S[s].ts_len, &S[s].ts, "series timestamp")) < 0)
                return rc;
        }
        if (tsrest.p != tsrest.end)
            return BFAIL(bc, tsrest.p, "timestamp column has unassigned bytes");
    }
    struct cur sec[5];
    for (int t = 0; t < 5; t++)
        if ((rc = take(bc, &c, type_total[t], &sec[t], "value section")) < 0)
            return rc;
    if (c.p != c.end)
        return BFAIL(bc, c.p, "%zu bytes after the last column", (size_t)(c.end - c.p));
    for (uint32_t s = 0; s < n_series; s++)
        for (uint32_t f = 0; f < S[s].n_fields; f++) {
            uint32_t fi = S[s].field_first + f;
            if ((rc = take(bc, &sec[d->fields[fi].type], d->cols[fi].len, &d->cols[fi].c,
                           "value")) < 0 ||
                (rc = col_header(bc, &d->cols[fi], d->fields[fi].type)) < 0)
                return rc;
        }

    /* Records (§5.4). */
    uint64_t prev_seq[RECORD_STREAM_COUNT] = {0};
    const struct batch_range *range_of[RECORD_STREAM_COUNT] = {NULL};
    for (size_t i = 0; i < h->n_ranges; i++)
        range_of[h->ranges[i].stream] = &h->ranges[i];
    int64_t ts_prev = ts_base;
    for (uint64_t ri = 0; ri < n_records; ri++) {
        struct record r;
        const uint8_t *at = fixed[0].p;
        uint64_t sid;
        if (cur_uv(&fixed[0], &sid) < 0)
            return BFAIL(bc, at, "series id column truncated at record %llu",
                         (unsigned long long)ri);
        if (sid >= n_series || S[sid].rows_left == 0)
            return BFAIL(bc, at, "record %llu: series id %llu invalid or exhausted",
                         (unsigned long long)ri, (unsigned long long)sid);
        struct dseries *se = &S[sid];
        se->rows_left--;
        r.stream = (enum record_stream)se->stream;
        at = fixed[1].p;
        int64_t sd;
        if (cur_sv(&fixed[1], &sd) < 0)
            return BFAIL(bc, at, "seq column truncated at record %llu", (unsigned long long)ri);
        r.seq = prev_seq[r.stream] = prev_seq[r.stream] + (uint64_t)sd;
        const struct batch_range *rg = range_of[r.stream];
        if (!rg || r.seq < rg->first || r.seq > rg->last)
            return BFAIL(bc, at, "record %llu: %s seq %llu outside the header's range",
                         (unsigned long long)ri, record_stream_name(r.stream),
                         (unsigned long long)r.seq);
        int64_t u, x;
        if (ts_mode == BODY_TS_RECORD_DELTA) {
            at = fixed[2].p;
            if (cur_sv(&fixed[2], &x) < 0)
                return BFAIL(bc, at, "timestamp column truncated");
            u = ts_prev = batch__add(ts_prev, x);
        } else {
            at = se->ts.p;
            if (cur_sv(&se->ts, &x) < 0)
                return BFAIL(bc, at, "series timestamp column truncated");
            if (se->ts_row == 0) {
                u = batch__add(ts_base, x);
            } else {
                int64_t dl = se->ts_row == 1 ? x : batch__add(se->ts_delta, x);
                u = batch__add(se->ts_prev, dl);
                se->ts_delta = dl;
            }
            se->ts_prev = u;
            se->ts_row++;
        }
        r.ts_ns = (int64_t)((uint64_t)u * unit);
        r.name = se->name;
        r.level = 0;
        r.message.ptr = "";
        r.message.len = 0;
        if (se->flags & BODY_SERIES_HAS_MESSAGE) {
            at = fixed[3].p;
            if (fixed[3].p >= fixed[3].end || *fixed[3].p > RECORD_LEVEL_DEBUG)
                return BFAIL(bc, at, "level column truncated or level > 7");
            r.level = *fixed[3].p++;
            uint64_t kind;
            at = fixed[4].p;
            if (cur_uv(&fixed[4], &kind) < 0 || kind > n_tmpls)
                return BFAIL(bc, at, "message kind truncated or template unknown");
            if (kind == 0) {
                if ((rc = get_str(bc, &fixed[5], RECORD_MAX_VALUE_LEN, &r.message, "raw message")) <
                    0)
                    return rc;
            } else if ((rc = build_message(bc, &d->tmpls[kind - 1], &fixed[6], &r.message)) < 0) {
                return rc;
            }
        }
        r.tags = se->n_tags ? &d->tags[se->tag_first] : NULL;
        r.n_tags = se->n_tags;
        r.fields = se->n_fields ? &d->fields[se->field_first] : NULL;
        r.n_fields = se->n_fields;
        for (uint32_t f = 0; f < se->n_fields; f++) {
            uint32_t fi = se->field_first + f;
            if ((rc = next_value(bc, &d->cols[fi], &d->fields[fi])) < 0)
                return rc;
        }
        if (fn) {
            int cb = fn(arg, &r);
            if (cb != 0) {
                d->callback_status = cb;
                return batch__fail(ei, BATCH_ECALLBACK, 0, 1,
                                   "callback returned %d at record "
                                   "%llu",
                                   cb, (unsigned long long)ri);
            }
        }
    }
    for (int i = 0; i < BODY_FIXED_COLUMNS; i++)
        if (i != 2 && fixed[i].p != fixed[i].end)
            return BFAIL(bc, fixed[i].p, "%s column has %zu bytes left", fixed_names[i],
                         (size_t)(fixed[i].end - fixed[i].p));
    if (ts_mode == BODY_TS_RECORD_DELTA && fixed[2].p != fixed[2].end)
        return BFAIL(bc, fixed[2].p, "timestamp column has bytes left");
    for (uint32_t s = 0; s < n_series; s++) {
        if (ts_mode == BODY_TS_SERIES_DOD && S[s].ts.p != S[s].ts.end)
            return BFAIL(bc, S[s].ts.p, "series %u timestamps have bytes left", s);
        for (uint32_t f = 0; f < S[s].n_fields; f++) {
            struct dcol *dc = &d->cols[S[s].field_first + f];
            if (dc->c.p != dc->c.end)
                return BFAIL(bc, dc->c.p, "series %u field %u has bytes left", s, f);
        }
    }
    return 0;
}
