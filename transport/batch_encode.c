/*
 * batch_encode.c - the batch builder: records in, one signed compressed batch out
 * (docs/wire-format.md §5 for the body it writes).
 *
 * Design:
 *  - Records are split into a per-batch *series* dictionary (stream, name, tags, field keys and
 *    types: everything that repeats) and per-series *value columns*. A metric sample then costs
 *    its series id, a seq delta (almost always 1), a timestamp delta and its values.
 *  - Columns whose best encoding depends on all their values (timestamps, floats, integers) keep
 *    the raw 64-bit values until finish, where each column picks its encoding by exact size:
 *    floats that are decimals in disguise (value * 10^k is an integer and converts back to the
 *    same bits) become integers; integers are delta or delta-of-delta coded as zigzag varints;
 *    other floats are XOR-coded against their predecessor or stored raw.
 *  - Log messages are split into a template (the text with every plain decimal number replaced by
 *    a slot byte) and the numbers, which are delta-coded per template slot: frame counters and
 *    similar ids then cost a byte.
 *  - Columns of the same kind are laid out next to each other so that zstd sees similar bytes
 *    together.
 *
 * Invariants:
 *  1. `bound` is an upper bound of the uncompressed body size of what was added; add() refuses
 *     (BATCH_EFULL) a record that would take it past max_body_raw, so finish never exceeds §6.
 *  2. Every value round-trips bit for bit: each lossy-looking transformation (decimal scaling,
 *     timestamp units) is verified on every value before it is chosen.
 *  3. After finish or reset the builder holds no records; allocations are kept for reuse.
 */
#include <math.h>
#include <stddef.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common/buf.h"
#include "transport/batch.h"
#include "transport/batch_internal.h"

struct bcol {
    enum record_field_type type;
    uint64_t *v; /* float bits, int, uint or bool values */
    uint32_t n, cap;
    struct ferry_buf s; /* string columns are encoded as they come */
    size_t prev_off, prev_len;
    bool has_prev;
    size_t enc_len; /* finish: encoded length */
};

struct bseries {
    uint32_t def_off, def_len; /* the encoded definition in b->defs */
    uint64_t hash;
    uint32_t n_rows;
    uint32_t first_col;
    uint32_t n_fields;
    /* finish-time scratch for per-series timestamps */
    int64_t ts_prev, ts_delta;
    size_t ts_len, ts_pos;
};

struct btemplate {
    uint32_t off, len; /* in b->tmpl_text */
    uint64_t hash;
    uint32_t first_slot, n_slots;
};

struct batch_builder {
    char device_id[BATCH_MAX_DEVICE_ID + 1];
    size_t device_id_len;
    uint8_t *sk; /* sodium_malloc'd secret key */
    uint8_t key_id[BATCH_KEY_ID_LEN];
    uint32_t dict_id;
    int zstd_level;
    size_t max_body_raw;
    uint32_t max_records;
    bool no_compression;
    ZSTD_CCtx *cctx;
    ZSTD_CDict *cdict;

    struct ferry_buf defs;
    struct bseries *series;
    uint32_t n_series, cap_series;
    uint32_t *stab; /* open addressing: series index + 1, 0 = empty */
    uint32_t stab_cap;
    struct bcol *cols;
    uint32_t n_cols, cap_cols;
    uint32_t n_tags_total; /* tags summed over all series (§6) */

    struct ferry_buf tmpl_text;
    struct btemplate *tmpls;
    uint32_t n_tmpls, cap_tmpls;
    uint32_t *ttab;
    uint32_t ttab_cap;
    int64_t *slot_prev;
    uint32_t n_slots, cap_slots;

    uint32_t *rec_series;
    int64_t *rec_ts;
    uint32_t n_records, cap_records;
    struct ferry_buf c_seq, c_levels, c_kinds, c_raw, c_numbers;
    uint64_t prev_seq[RECORD_STREAM_COUNT];
    bool has_range[RECORD_STREAM_COUNT];
    struct batch_range ranges[RECORD_STREAM_COUNT];
    struct batch_gap gaps[BATCH_MAX_GAPS];
    size_t n_gaps;
    uint64_t backlog[RECORD_STREAM_COUNT]; /* kept across batches (batch_builder_set_backlog) */
    size_t packed_bytes;
    size_t bound;

    /* scratch */
    struct ferry_buf key, tmpl, body, sec[5], c_ids, c_ts, zbuf;
    int64_t *ints;
    size_t ints_cap;
    struct record_scratch rs;
    char err[200];
};

#define BODY_FIXED_OVERHEAD 128 /* format byte, counts, ts params, fixed directory */

static int set_err(struct batch_builder *b, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_err(struct batch_builder *b, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, sizeof b->err, fmt, ap);
    va_end(ap);
    return code;
}

const char *batch_builder_error(const struct batch_builder *b)
{
    return b->err;
}

/* Grows *arr (elements of `size` bytes) to hold at least `need`. */
static int grow(void **arr, uint32_t *cap, uint32_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    uint32_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * size);
    if (!p)
        return BATCH_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    while (n--)
        h = (h ^ *p++) * 0x100000001b3ull;
    return h ^ (h >> 32);
}

int batch_builder_new(const struct batch_builder_config *cfg, struct batch_builder **out)
{
    *out = NULL;
    if (!cfg || !cfg->device_id || !cfg->secret_key)
        return BATCH_EINVAL;
    size_t dlen = strlen(cfg->device_id);
    if (!batch_device_id_valid(cfg->device_id, dlen))
        return BATCH_EINVAL;
    if ((cfg->dict_id != 0) != (cfg->dict != NULL && cfg->dict_len > 0))
        return BATCH_EINVAL;
    if (sodium_init() < 0)
        return BATCH_ECRYPTO;
    struct batch_builder *b = calloc(1, sizeof *b);
    if (!b)
        return BATCH_ENOMEM;
    memcpy(b->device_id, cfg->device_id, dlen);
    b->device_id_len = dlen;
    b->sk = sodium_malloc(BATCH_SECRET_KEY_LEN);
    b->cctx = ZSTD_createCCtx();
    if (!b->sk || !b->cctx)
        goto nomem;
    memcpy(b->sk, cfg->secret_key, BATCH_SECRET_KEY_LEN);
    batch_key_id(b->sk + 32, b->key_id); /* libsodium sk = seed || public key */
    b->zstd_level = cfg->zstd_level ? cfg->zstd_level : BATCH_DEFAULT_ZSTD_LEVEL;
    b->max_body_raw = cfg->max_body_raw && cfg->max_body_raw < BATCH_MAX_BODY_RAW
                          ? cfg->max_body_raw
                          : BATCH_MAX_BODY_RAW;
    b->max_records = cfg->max_records && cfg->max_records < BATCH_MAX_RECORDS ? cfg->max_records
                                                                              : BATCH_MAX_RECORDS;
    b->no_compression = cfg->no_compression;
    b->dict_id = cfg->dict_id;
    if (cfg->dict_id) {
        b->cdict = ZSTD_createCDict(cfg->dict, cfg->dict_len, b->zstd_level);
        if (!b->cdict)
            goto nomem;
    }
    batch_builder_reset(b);
    *out = b;
    return 0;
nomem:
    batch_builder_free(b);
    return BATCH_ENOMEM;
}

static void free_cols(struct batch_builder *b)
{
    for (uint32_t i = 0; i < b->n_cols; i++) {
        free(b->cols[i].v);
        ferry_buf_free(&b->cols[i].s);
    }
}

void batch_builder_free(struct batch_builder *b)
{
    if (!b)
        return;
    free_cols(b);
    /* columns beyond n_cols were freed by reset */
    free(b->cols);
    free(b->series);
    free(b->stab);
    free(b->tmpls);
    free(b->ttab);
    free(b->slot_prev);
    free(b->rec_series);
    free(b->rec_ts);
    free(b->ints);
    struct ferry_buf *bufs[] = {&b->defs,   &b->tmpl_text, &b->c_seq,  &b->c_levels, &b->c_kinds,
                                &b->c_raw,  &b->c_numbers, &b->key,    &b->tmpl,     &b->body,
                                &b->sec[0], &b->sec[1],    &b->sec[2], &b->sec[3],   &b->sec[4],
                                &b->c_ids,  &b->c_ts,      &b->zbuf};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        ferry_buf_free(bufs[i]);
    ZSTD_freeCCtx(b->cctx);
    ZSTD_freeCDict(b->cdict);
    if (b->sk)
        sodium_free(b->sk);
    free(b);
}

void batch_builder_reset(struct batch_builder *b)
{
    /* Column value arrays are kept only as allocations of the column slots; simplest is to
     * free them: a batch's columns rarely match the next batch's in number. */
    free_cols(b);
    b->n_cols = 0;
    b->n_tags_total = 0;
    b->defs.len = 0;
    b->n_series = 0;
    if (b->stab)
        memset(b->stab, 0, (size_t)b->stab_cap * sizeof *b->stab);
    b->tmpl_text.len = 0;
    b->n_tmpls = 0;
    if (b->ttab)
        memset(b->ttab, 0, (size_t)b->ttab_cap * sizeof *b->ttab);
    b->n_slots = 0;
    b->n_records = 0;
    b->c_seq.len = b->c_levels.len = b->c_kinds.len = b->c_raw.len = b->c_numbers.len = 0;
    memset(b->prev_seq, 0, sizeof b->prev_seq);
    memset(b->has_range, 0, sizeof b->has_range);
    b->n_gaps = 0;
    b->packed_bytes = 0;
    b->bound = BODY_FIXED_OVERHEAD;
    b->err[0] = '\0';
}

uint32_t batch_builder_count(const struct batch_builder *b)
{
    return b->n_records;
}

size_t batch_builder_raw_bytes(const struct batch_builder *b)
{
    return b->packed_bytes;
}

size_t batch_builder_bound_bytes(const struct batch_builder *b)
{
    return batch__header_len(BATCH_VERSION, b->device_id_len, RECORD_STREAM_COUNT, b->n_gaps) +
           BATCH_SIGNATURE_LEN + ZSTD_compressBound(b->bound);
}

/* ---- Adding records -------------------------------------------------------------------------- */

static int put_str(struct ferry_buf *o, const struct record_str *s)
{
    if (ferry_buf_append_uvarint(o, s->len) < 0)
        return -1;
    return s->len ? ferry_buf_append(o, s->ptr, s->len) : 0;
}

static uint8_t *put_str_at(uint8_t *p, const struct record_str *s)
{
    p = batch__put_uv(p, s->len);
    if (s->len)
        memcpy(p, s->ptr, s->len);
    return p + s->len;
}

/* Appends a uvarint / svarint / byte to a column buffer; the hot path of add() avoids the
 * out-of-line ferry_buf calls. */
static inline int col_uv(struct ferry_buf *o, uint64_t v)
{
    if (o->cap - o->len < 10 && ferry_buf_reserve(o, 10) < 0)
        return -1;
    o->len = (size_t)(batch__put_uv(o->data + o->len, v) - o->data);
    return 0;
}

static inline int col_sv(struct ferry_buf *o, int64_t v)
{
    return col_uv(o, batch__zigzag(v));
}

/* The series definition of r (§5.2) into b->key: written straight into reserved memory, since
 * this runs for every record. */
static int series_key(struct batch_builder *b, const struct record *r, uint8_t flags)
{
    struct ferry_buf *k = &b->key;
    size_t need = 2 + 10 + r->name.len + 10 + 10;
    for (size_t i = 0; i < r->n_tags; i++)
        need += 20 + r->tags[i].key.len + r->tags[i].value.len;
    for (size_t i = 0; i < r->n_fields; i++)
        need += 11 + r->fields[i].key.len;
    k->len = 0;
    if (ferry_buf_reserve(k, need) < 0)
        return BATCH_ENOMEM;
    uint8_t *p = k->data;
    *p++ = (uint8_t)r->stream;
    *p++ = flags;
    p = put_str_at(p, &r->name);
    p = batch__put_uv(p, r->n_tags);
    for (size_t i = 0; i < r->n_tags; i++) {
        p = put_str_at(p, &r->tags[i].key);
        p = put_str_at(p, &r->tags[i].value);
    }
    p = batch__put_uv(p, r->n_fields);
    for (size_t i = 0; i < r->n_fields; i++) {
        p = put_str_at(p, &r->fields[i].key);
        *p++ = (uint8_t)r->fields[i].type;
    }
    k->len = (size_t)(p - k->data);
    return 0;
}

/* Looks up b->key in the series table: returns the slot of the table where it is or would go. */
static uint32_t series_slot(struct batch_builder *b, uint64_t h)
{
    uint32_t mask = b->stab_cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        uint32_t e = b->stab[i];
        if (e == 0)
            return i;
        struct bseries *s = &b->series[e - 1];
        if (s->hash == h && s->def_len == b->key.len &&
            memcmp(b->defs.data + s->def_off, b->key.data, b->key.len) == 0)
            return i;
    }
}

/* Rehashes a table of indexes when it is more than half full. */
static int table_grow(uint32_t **tab, uint32_t *cap, uint32_t n_used, const void *items,
                      size_t item_size, size_t hash_off)
{
    if ((n_used + 1) * 2 <= *cap)
        return 0;
    uint32_t ncap = *cap ? *cap * 2 : 64;
    uint32_t *nt = calloc(ncap, sizeof *nt);
    if (!nt)
        return BATCH_ENOMEM;
    for (uint32_t k = 0; k < n_used; k++) {
        uint64_t h;
        memcpy(&h, (const uint8_t *)items + k * item_size + hash_off, sizeof h);
        uint32_t i = (uint32_t)h & (ncap - 1);
        while (nt[i])
            i = (i + 1) & (ncap - 1);
        nt[i] = k + 1;
    }
    free(*tab);
    *tab = nt;
    *cap = ncap;
    return 0;
}

static uint32_t tmpl_slot(struct batch_builder *b, uint64_t h)
{
    uint32_t mask = b->ttab_cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        uint32_t e = b->ttab[i];
        if (e == 0)
            return i;
        struct btemplate *t = &b->tmpls[e - 1];
        if (t->hash == h && t->len == b->tmpl.len &&
            memcmp(b->tmpl_text.data + t->off, b->tmpl.data, t->len) == 0)
            return i;
    }
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * Splits `msg` into a template (in b->tmpl) and its numbers (§5.6). Returns the number of slots,
 * or -1 when the message is sent raw (it contains the slot byte, or too many numbers).
 */
static int split_message(struct batch_builder *b, const struct record_str *msg, int64_t *nums)
{
    struct ferry_buf *t = &b->tmpl;
    t->len = 0;
    if (msg->len == 0 || memchr(msg->ptr, BODY_TEMPLATE_SLOT, msg->len))
        return -1;
    if (ferry_buf_reserve(t, msg->len) < 0)
        return -1;
    int slots = 0;
    size_t i = 0;
    const char *m = msg->ptr;
    while (i < msg->len) {
        if (!is_digit(m[i])) {
            t->data[t->len++] = (uint8_t)m[i++];
            continue;
        }
        size_t j = i;
        while (j < msg->len && is_digit(m[j]))
            j++;
        size_t nd = j - i;
        if (nd > BODY_MAX_NUMBER_DIGITS || (nd > 1 && m[i] == '0')) {
            memcpy(t->data + t->len, m + i, nd); /* kept literally: leading zero or too long */
            t->len += nd;
        } else {
            if (slots == (int)BATCH_MAX_TEMPLATE_SLOTS)
                return -1;
            int64_t v = 0;
            for (size_t q = i; q < j; q++)
                v = v * 10 + (m[q] - '0');
            nums[slots++] = v;
            t->data[t->len++] = (uint8_t)BODY_TEMPLATE_SLOT;
        }
        i = j;
    }
    return slots;
}

static size_t packed_size(const struct record *r)
{
    size_t n = 3 + batch__uvarint_len(batch__zigzag(r->ts_ns)) + batch__uvarint_len(r->name.len) +
               r->name.len + batch__uvarint_len(r->message.len) + r->message.len +
               batch__uvarint_len(r->n_tags) + batch__uvarint_len(r->n_fields);
    for (size_t i = 0; i < r->n_tags; i++)
        n += batch__uvarint_len(r->tags[i].key.len) + r->tags[i].key.len +
             batch__uvarint_len(r->tags[i].value.len) + r->tags[i].value.len;
    for (size_t i = 0; i < r->n_fields; i++) {
        const struct record_field *f = &r->fields[i];
        n += batch__uvarint_len(f->key.len) + f->key.len + 1;
        switch (f->type) {
        case RECORD_FIELD_FLOAT: n += 8; break;
        case RECORD_FIELD_INT: n += batch__uvarint_len(batch__zigzag(f->v.i)); break;
        case RECORD_FIELD_UINT: n += batch__uvarint_len(f->v.u); break;
        case RECORD_FIELD_BOOL: n += 1; break;
        case RECORD_FIELD_STRING: n += batch__uvarint_len(f->v.s.len) + f->v.s.len; break;
        }
    }
    return n;
}

static int col_push(struct bcol *c, uint64_t v)
{
    if (c->n == c->cap) {
        uint32_t ncap = c->cap ? c->cap * 2 : 8;
        uint64_t *p = realloc(c->v, (size_t)ncap * sizeof *p);
        if (!p)
            return BATCH_ENOMEM;
        c->v = p;
        c->cap = ncap;
    }
    c->v[c->n++] = v;
    return 0;
}

static int col_push_string(struct bcol *c, const struct record_str *s)
{
    /* §5.7: 0 = same as the previous value of this column, else length + 1 and the bytes. */
    if (c->has_prev && c->prev_len == s->len &&
        (s->len == 0 || memcmp(c->s.data + c->prev_off, s->ptr, s->len) == 0)) {
        c->n++;
        return ferry_buf_append_u8(&c->s, 0) < 0 ? BATCH_ENOMEM : 0;
    }
    if (ferry_buf_append_uvarint(&c->s, (uint64_t)s->len + 1) < 0)
        return BATCH_ENOMEM;
    c->prev_off = c->s.len;
    c->prev_len = s->len;
    c->has_prev = true;
    if (s->len && ferry_buf_append(&c->s, s->ptr, s->len) < 0)
        return BATCH_ENOMEM;
    c->n++;
    return 0;
}

static size_t field_bound(const struct record_field *f)
{
    return f->type == RECORD_FIELD_STRING ? 10 + f->v.s.len : 10;
}

static int builder_add(struct batch_builder *b, const struct record *r, size_t packed_len);

int batch_builder_add(struct batch_builder *b, const struct record *r)
{
    char why[160];
    if (record_check(r, why, sizeof why) < 0)
        return set_err(b, BATCH_EINVAL, "record: %s", why);
    return builder_add(b, r, 0);
}

/* Adds a record that passed record_check() (or came out of record_unpack(), which enforces the
 * same limits). packed_len: its journal payload size when the caller knows it, else 0. */
static int builder_add(struct batch_builder *b, const struct record *r, size_t packed_len)
{
    int rc;
    int64_t nums[BATCH_MAX_TEMPLATE_SLOTS];
    if (b->n_records >= b->max_records)
        return set_err(b, BATCH_EFULL, "batch holds %u records (max)", b->n_records);
    uint8_t flags =
        (r->stream == RECORD_LOG || r->message.len || r->level) ? BODY_SERIES_HAS_MESSAGE : 0;
    if ((rc = series_key(b, r, flags)) < 0)
        return set_err(b, rc, "out of memory");
    uint64_t h = hash_bytes(b->key.data, b->key.len);
    if ((rc = table_grow(&b->stab, &b->stab_cap, b->n_series, b->series, sizeof *b->series,
                         offsetof(struct bseries, hash))) < 0)
        return set_err(b, rc, "out of memory");
    uint32_t sslot = series_slot(b, h);
    bool new_series = b->stab[sslot] == 0;

    /* Message: template or raw (§5.6). */
    int slots = -1;
    uint32_t tslot = 0;
    bool new_tmpl = false;
    size_t add_bound = 5 + 10 + 10 + b->key.len; /* id, seq, ts; key only if new (below) */
    if (!new_series)
        add_bound -= b->key.len;
    else
        add_bound += 10 + 10 * r->n_fields + 10;
    if (flags) {
        slots = split_message(b, &r->message, nums);
        if (slots >= 0) {
            uint64_t th = hash_bytes(b->tmpl.data, b->tmpl.len);
            if ((rc = table_grow(&b->ttab, &b->ttab_cap, b->n_tmpls, b->tmpls, sizeof *b->tmpls,
                                 offsetof(struct btemplate, hash))) < 0)
                return set_err(b, rc, "out of memory");
            tslot = tmpl_slot(b, th);
            new_tmpl = b->ttab[tslot] == 0;
            if (new_tmpl && (b->n_tmpls >= BATCH_MAX_TEMPLATES ||
                             b->n_slots + (uint32_t)slots > BATCH_MAX_TOTAL_SLOTS))
                slots = -1; /* too many templates or slots: this message goes raw */
        }
        add_bound += 1 + 10;
        if (slots < 0)
            add_bound += 10 + r->message.len;
        else
            add_bound += 10 * (size_t)slots + (new_tmpl ? 10 + b->tmpl.len : 0);
    }
    for (size_t i = 0; i < r->n_fields; i++)
        add_bound += field_bound(&r->fields[i]);
    if (new_series &&
        (b->n_series >= BATCH_MAX_SERIES || b->n_cols + r->n_fields > BATCH_MAX_TOTAL_FIELDS ||
         b->n_tags_total + r->n_tags > BATCH_MAX_TOTAL_TAGS))
        return set_err(b, BATCH_EFULL, "batch holds %u series, %u fields, %u tags (max %u, %u, %u)",
                       b->n_series, b->n_cols, b->n_tags_total, BATCH_MAX_SERIES,
                       BATCH_MAX_TOTAL_FIELDS, BATCH_MAX_TOTAL_TAGS);
    if (b->bound + add_bound > b->max_body_raw)
        return set_err(b, BATCH_EFULL, "batch body would exceed %zu bytes", b->max_body_raw);

    /* Accepted: from here on only allocation can fail (the builder must then be reset). */
    uint32_t sid;
    if (new_series) {
        if ((rc = grow((void **)&b->series, &b->cap_series, b->n_series + 1, sizeof *b->series)) <
                0 ||
            (rc = grow((void **)&b->cols, &b->cap_cols, b->n_cols + (uint32_t)r->n_fields,
                       sizeof *b->cols)) < 0)
            return set_err(b, rc, "out of memory");
        struct bseries *s = &b->series[b->n_series];
        memset(s, 0, sizeof *s);
        s->def_off = (uint32_t)b->defs.len;
        s->def_len = (uint32_t)b->key.len;
        s->hash = h;
        s->first_col = b->n_cols;
        s->n_fields = (uint32_t)r->n_fields;
        if (ferry_buf_append(&b->defs, b->key.data, b->key.len) < 0)
            return set_err(b, BATCH_ENOMEM, "out of memory");
        for (size_t i = 0; i < r->n_fields; i++) {
            struct bcol *c = &b->cols[b->n_cols++];
            memset(c, 0, sizeof *c);
            c->type = r->fields[i].type;
        }
        b->n_tags_total += (uint32_t)r->n_tags;
        b->stab[sslot] = ++b->n_series;
    }
    sid = b->stab[sslot] - 1;
    struct bseries *s = &b->series[sid];

    if (b->n_records == b->cap_records) {
        /* rec_series and rec_ts share one capacity */
        uint32_t ncap = b->cap_records ? b->cap_records * 2 : 256;
        uint32_t *ps = realloc(b->rec_series, (size_t)ncap * sizeof *ps);
        if (ps)
            b->rec_series = ps;
        int64_t *pt = ps ? realloc(b->rec_ts, (size_t)ncap * sizeof *pt) : NULL;
        if (!pt)
            return set_err(b, BATCH_ENOMEM, "out of memory");
        b->rec_ts = pt;
        b->cap_records = ncap;
    }
    b->rec_series[b->n_records] = sid;
    b->rec_ts[b->n_records] = r->ts_ns;

    /* seq: delta to the previous record of the same stream (§5.4) */
    if (col_sv(&b->c_seq, batch__sub((int64_t)r->seq, (int64_t)b->prev_seq[r->stream])) < 0)
        return set_err(b, BATCH_ENOMEM, "out of memory");
    b->prev_seq[r->stream] = r->seq;
    struct batch_range *rg = &b->ranges[r->stream];
    if (!b->has_range[r->stream]) {
        b->has_range[r->stream] = true;
        rg->stream = r->stream;
        rg->first = rg->last = r->seq;
    } else {
        if (r->seq < rg->first)
            rg->first = r->seq;
        if (r->seq > rg->last)
            rg->last = r->seq;
    }

    if (flags) {
        if (col_uv(&b->c_levels, r->level) < 0) /* levels are 0..7: one byte */
            return set_err(b, BATCH_ENOMEM, "out of memory");
        if (slots < 0) {
            if (ferry_buf_append_u8(&b->c_kinds, 0) < 0 || put_str(&b->c_raw, &r->message) < 0)
                return set_err(b, BATCH_ENOMEM, "out of memory");
        } else {
            if (new_tmpl) {
                if ((rc = grow((void **)&b->tmpls, &b->cap_tmpls, b->n_tmpls + 1,
                               sizeof *b->tmpls)) < 0 ||
                    (rc = grow((void **)&b->slot_prev, &b->cap_slots,
                               b->n_slots + (uint32_t)slots + 1, sizeof *b->slot_prev)) < 0)
                    return set_err(b, rc, "out of memory");
                struct btemplate *t = &b->tmpls[b->n_tmpls];
                t->off = (uint32_t)b->tmpl_text.len;
                t->len = (uint32_t)b->tmpl.len;
                t->hash = hash_bytes(b->tmpl.data, b->tmpl.len);
                t->first_slot = b->n_slots;
                t->n_slots = (uint32_t)slots;
                memset(b->slot_prev + b->n_slots, 0, (size_t)slots * sizeof *b->slot_prev);
                b->n_slots += (uint32_t)slots;
                if (ferry_buf_append(&b->tmpl_text, b->tmpl.data, b->tmpl.len) < 0)
                    return set_err(b, BATCH_ENOMEM, "out of memory");
                b->ttab[tslot] = ++b->n_tmpls;
            }
            uint32_t tid = b->ttab[tslot] - 1;
            struct btemplate *t = &b->tmpls[tid];
            if (col_uv(&b->c_kinds, (uint64_t)tid + 1) < 0)
                return set_err(b, BATCH_ENOMEM, "out of memory");
            for (int i = 0; i < slots; i++) {
                int64_t *prev = &b->slot_prev[t->first_slot + (uint32_t)i];
                if (col_sv(&b->c_numbers, batch__sub(nums[i], *prev)) < 0)
                    return set_err(b, BATCH_ENOMEM, "out of memory");
                *prev = nums[i];
            }
        }
    }

    for (size_t i = 0; i < r->n_fields; i++) {
        const struct record_field *f = &r->fields[i];
        struct bcol *c = &b->cols[s->first_col + i];
        switch (f->type) {
        case RECORD_FIELD_FLOAT: {
            uint64_t bits;
            memcpy(&bits, &f->v.f, sizeof bits);
            rc = col_push(c, bits);
            break;
        }
        case RECORD_FIELD_INT: rc = col_push(c, (uint64_t)f->v.i); break;
        case RECORD_FIELD_UINT: rc = col_push(c, f->v.u); break;
        case RECORD_FIELD_BOOL: rc = col_push(c, f->v.b ? 1 : 0); break;
        case RECORD_FIELD_STRING: rc = col_push_string(c, &f->v.s); break;
        }
        if (rc < 0)
            return set_err(b, rc, "out of memory");
    }
    s->n_rows++;
    b->n_records++;
    b->bound += add_bound;
    b->packed_bytes += packed_len ? packed_len : packed_size(r);
    return 0;
}

int batch_builder_add_packed(struct batch_builder *b, enum record_stream stream, uint64_t seq,
                             const void *payload, size_t len)
{
    struct record r;
    char why[160];
    int rc = record_unpack(payload, len, &b->rs, &r, why, sizeof why);
    if (rc < 0)
        return set_err(b, BATCH_EINVAL, "journal payload of %s seq %llu: %s",
                       record_stream_name(stream) ? record_stream_name(stream) : "?",
                       (unsigned long long)seq, why);
    if (r.stream != stream)
        return set_err(b, BATCH_EINVAL, "payload says stream %s, journal says %s",
                       record_stream_name(r.stream),
                       record_stream_name(stream) ? record_stream_name(stream) : "?");
    r.seq = seq;
    return builder_add(b, &r, len);
}

void batch_builder_set_backlog(struct batch_builder *b, const uint64_t backlog[RECORD_STREAM_COUNT])
{
    if (b && backlog)
        memcpy(b->backlog, backlog, sizeof b->backlog);
}

int batch_builder_add_gap(struct batch_builder *b, enum record_stream stream, uint64_t first,
                          uint64_t last, uint8_t reason)
{
    if ((unsigned)stream >= RECORD_STREAM_COUNT || first > last)
        return set_err(b, BATCH_EINVAL, "gap: bad stream or first > last");
    for (size_t i = 0; i < b->n_gaps; i++) {
        struct batch_gap *g = &b->gaps[i];
        if (g->stream != stream || g->reason != reason)
            continue;
        /* merge when overlapping or adjacent (careful with UINT64_MAX) */
        if ((first <= g->last || first - 1 == g->last) &&
            (last >= g->first || last + 1 == g->first)) {
            if (first < g->first)
                g->first = first;
            if (last > g->last)
                g->last = last;
            return 0;
        }
    }
    if (b->n_gaps >= BATCH_MAX_GAPS)
        return set_err(b, BATCH_EFULL, "batch holds %u gaps (max)", BATCH_MAX_GAPS);
    b->gaps[b->n_gaps++] = (struct batch_gap){stream, reason, first, last};
    return 0;
}

/* ---- Finish: column encodings (§5.5, §5.7) ----------------------------------------------------
 */

static size_t seq_size(const int64_t *v, size_t n, int order)
{
    size_t size = 0;
    int64_t prev = 0, prev_d = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t d = batch__sub(v[i], prev);
        int64_t x = (order == BODY_INT_DOD && i >= 1) ? batch__sub(d, prev_d) : d;
        size += batch__uvarint_len(batch__zigzag(x));
        prev = v[i];
        prev_d = d;
    }
    return size;
}

static int seq_encode(const int64_t *v, size_t n, int order, struct ferry_buf *o)
{
    int64_t prev = 0, prev_d = 0;
    if (ferry_buf_reserve(o, n * 10) < 0)
        return BATCH_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int64_t d = batch__sub(v[i], prev);
        int64_t x = (order == BODY_INT_DOD && i >= 1) ? batch__sub(d, prev_d) : d;
        uint64_t z = batch__zigzag(x);
        uint8_t *p = o->data + o->len;
        while (z >= 0x80) {
            *p++ = (uint8_t)(z | 0x80);
            z >>= 7;
        }
        *p++ = (uint8_t)z;
        o->len = (size_t)(p - o->data);
        prev = v[i];
        prev_d = d;
    }
    return 0;
}

static int ensure_ints(struct batch_builder *b, size_t n)
{
    if (n <= b->ints_cap)
        return 0;
    int64_t *p = realloc(b->ints, n * sizeof *p);
    if (!p)
        return BATCH_ENOMEM;
    b->ints = p;
    b->ints_cap = n;
    return 0;
}

/* Finds the smallest k such that every value is n / 10^k for an integer n (bit-exact). */
static int decimal_scale(const uint64_t *bits, size_t n, int64_t *out)
{
    for (int k = 0; k <= BODY_MAX_DECIMAL_EXP; k++) {
        size_t i;
        for (i = 0; i < n; i++) {
            double v;
            memcpy(&v, &bits[i], sizeof v);
            double s = v * batch__pow10[k];
            if (!(s < 9007199254740992.0 && s > -9007199254740992.0)) /* 2^53; NaN, inf */
                break;
            /* Round half away from zero without libm; the bit-exact check below catches the
             * rare value this rounds wrongly (it then falls back to XOR). */
            int64_t q = (int64_t)(s < 0 ? s - 0.5 : s + 0.5);
            double back = k ? (double)q / batch__pow10[k] : (double)q;
            uint64_t bb;
            memcpy(&bb, &back, sizeof bb);
            if (bb != bits[i])
                break;
            out[i] = q;
        }
        if (i == n)
            return k;
    }
    return -1;
}

static size_t xor_size(const uint64_t *bits, size_t n)
{
    size_t size = 0;
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = bits[i] ^ prev;
        prev = bits[i];
        if (x == 0) {
            size += 1;
            continue;
        }
        int lz = __builtin_clzll(x) / 8, tz = __builtin_ctzll(x) / 8;
        size += 1 + (size_t)(8 - lz - tz);
    }
    return size;
}

static int xor_encode(const uint64_t *bits, size_t n, struct ferry_buf *o)
{
    uint64_t prev = 0;
    if (ferry_buf_reserve(o, n * 9) < 0)
        return BATCH_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = bits[i] ^ prev;
        prev = bits[i];
        if (x == 0) {
            o->data[o->len++] = 0x80; /* lz = 8: same value */
            continue;
        }
        int lz = __builtin_clzll(x) / 8, tz = __builtin_ctzll(x) / 8;
        o->data[o->len++] = (uint8_t)(lz << 4 | tz);
        for (int q = tz; q < 8 - lz; q++)
            o->data[o->len++] = (uint8_t)(x >> (8 * q));
    }
    return 0;
}

static int encode_float_col(struct batch_builder *b, const struct bcol *c, struct ferry_buf *o)
{
    if (ensure_ints(b, c->n) < 0)
        return BATCH_ENOMEM;
    int k = decimal_scale(c->v, c->n, b->ints);
    if (k >= 0) {
        size_t d1 = seq_size(b->ints, c->n, BODY_INT_DELTA);
        size_t d2 = seq_size(b->ints, c->n, BODY_INT_DOD);
        int order = d2 < d1 ? BODY_INT_DOD : BODY_INT_DELTA;
        if (ferry_buf_append_u8(o, BODY_FLOAT_DECIMAL) < 0 ||
            ferry_buf_append_u8(o, (uint8_t)k) < 0 || ferry_buf_append_u8(o, (uint8_t)order) < 0)
            return BATCH_ENOMEM;
        return seq_encode(b->ints, c->n, order, o);
    }
    if (xor_size(c->v, c->n) < 8 * (size_t)c->n) {
        if (ferry_buf_append_u8(o, BODY_FLOAT_XOR) < 0)
            return BATCH_ENOMEM;
        return xor_encode(c->v, c->n, o);
    }
    if (ferry_buf_append_u8(o, BODY_FLOAT_RAW) < 0)
        return BATCH_ENOMEM;
    for (uint32_t i = 0; i < c->n; i++)
        if (ferry_buf_append_le64(o, c->v[i]) < 0)
            return BATCH_ENOMEM;
    return 0;
}

static int encode_col(struct batch_builder *b, struct bcol *c, struct ferry_buf *o)
{
    size_t start = o->len;
    int rc = 0;
    switch (c->type) {
    case RECORD_FIELD_FLOAT: rc = encode_float_col(b, c, o); break;
    case RECORD_FIELD_INT:
    case RECORD_FIELD_UINT: {
        /* uints use the same wrapping arithmetic: the bit pattern round-trips */
        const int64_t *v = (const int64_t *)(const void *)c->v;
        size_t d1 = seq_size(v, c->n, BODY_INT_DELTA), d2 = seq_size(v, c->n, BODY_INT_DOD);
        int order = d2 < d1 ? BODY_INT_DOD : BODY_INT_DELTA;
        if (ferry_buf_append_u8(o, (uint8_t)order) < 0)
            return BATCH_ENOMEM;
        rc = seq_encode(v, c->n, order, o);
        break;
    }
    case RECORD_FIELD_BOOL:
        if (ferry_buf_append_u8(o, 0) < 0 || ferry_buf_reserve(o, c->n) < 0)
            return BATCH_ENOMEM;
        for (uint32_t i = 0; i < c->n; i++)
            o->data[o->len++] = (uint8_t)c->v[i];
        break;
    case RECORD_FIELD_STRING:
        if (ferry_buf_append_u8(o, 0) < 0 || ferry_buf_append(o, c->s.data, c->s.len) < 0)
            return BATCH_ENOMEM;
        break;
    }
    c->enc_len = o->len - start;
    return rc;
}

/* Timestamps (§5.5): unit exponent, mode and the column. */
static int encode_ts(struct batch_builder *b, uint8_t *mode_out, uint8_t *exp_out,
                     int64_t *base_out)
{
    uint32_t n = b->n_records;
    int e = BODY_MAX_TS_UNIT_EXP;
    for (uint32_t i = 0; i < n && e > 0; i++)
        while (e > 0 && b->rec_ts[i] % batch__pow10_i[e] != 0)
            e--;
    int64_t unit = batch__pow10_i[e];
    int64_t base = n ? b->rec_ts[0] / unit : 0;
    /* cost of both modes */
    size_t size0 = 0, size1 = 0;
    int64_t prev = base;
    for (uint32_t s = 0; s < b->n_series; s++) {
        b->series[s].ts_len = 0;
        b->series[s].ts_pos = 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        int64_t u = b->rec_ts[i] / unit;
        size0 += batch__uvarint_len(batch__zigzag(batch__sub(u, prev)));
        prev = u;
        struct bseries *s = &b->series[b->rec_series[i]];
        int64_t x;
        if (s->ts_pos == 0) {
            x = batch__sub(u, base);
        } else {
            int64_t d = batch__sub(u, s->ts_prev);
            x = s->ts_pos == 1 ? d : batch__sub(d, s->ts_delta);
            s->ts_delta = d;
        }
        s->ts_prev = u;
        s->ts_pos++;
        size_t l = batch__uvarint_len(batch__zigzag(x));
        s->ts_len += l;
        size1 += l;
    }
    uint8_t mode = size1 < size0 ? BODY_TS_SERIES_DOD : BODY_TS_RECORD_DELTA;
    struct ferry_buf *o = &b->c_ts;
    o->len = 0;
    if (ferry_buf_reserve(o, (size_t)n * 10) < 0)
        return BATCH_ENOMEM;
    if (mode == BODY_TS_RECORD_DELTA) {
        prev = base;
        for (uint32_t i = 0; i < n; i++) {
            int64_t u = b->rec_ts[i] / unit;
            o->len = (size_t)(batch__put_uv(o->data + o->len, batch__zigzag(batch__sub(u, prev))) -
                              o->data);
            prev = u;
        }
    } else {
        size_t off = 0;
        for (uint32_t s = 0; s < b->n_series; s++) {
            b->series[s].ts_pos = off; /* now: write position */
            off += b->series[s].ts_len;
        }
        /* second pass: recompute the values and write each at its series' position */
        uint32_t *rows = calloc(b->n_series ? b->n_series : 1, sizeof *rows);
        if (!rows)
            return BATCH_ENOMEM;
        for (uint32_t i = 0; i < n; i++) {
            int64_t u = b->rec_ts[i] / unit;
            struct bseries *s = &b->series[b->rec_series[i]];
            uint32_t row = rows[b->rec_series[i]]++;
            int64_t x;
            if (row == 0) {
                x = batch__sub(u, base);
            } else {
                int64_t d = batch__sub(u, s->ts_prev);
                x = row == 1 ? d : batch__sub(d, s->ts_delta);
                s->ts_delta = d;
            }
            s->ts_prev = u;
            uint64_t z = batch__zigzag(x);
            uint8_t *p = o->data + s->ts_pos;
            while (z >= 0x80) {
                *p++ = (uint8_t)(z | 0x80);
                z >>= 7;
            }
            *p++ = (uint8_t)z;
            s->ts_pos = (size_t)(p - o->data);
        }
        free(rows);
        o->len = off;
    }
    *mode_out = mode;
    *exp_out = (uint8_t)e;
    *base_out = base;
    return 0;
}

static int append_col(struct ferry_buf *o, const struct ferry_buf *c)
{
    return ferry_buf_append(o, c->data, c->len) < 0 ? BATCH_ENOMEM : 0;
}

static int type_section(enum record_field_type t)
{
    return (int)t; /* float, int, uint, string, bool: the sections' order is fixed in §5.7 */
}

int batch_builder_body(struct batch_builder *b, struct ferry_buf *o)
{
    int rc;
    uint8_t ts_mode, ts_exp;
    int64_t ts_base;
    size_t start = o->len;
    if ((rc = encode_ts(b, &ts_mode, &ts_exp, &ts_base)) < 0)
        goto fail;
    b->c_ids.len = 0;
    if (ferry_buf_reserve(&b->c_ids, (size_t)b->n_records * 5) < 0)
        goto nomem;
    for (uint32_t i = 0; i < b->n_records; i++)
        b->c_ids.len =
            (size_t)(batch__put_uv(b->c_ids.data + b->c_ids.len, b->rec_series[i]) - b->c_ids.data);
    for (int t = 0; t < 5; t++)
        b->sec[t].len = 0;
    for (uint32_t s = 0; s < b->n_series; s++)
        for (uint32_t f = 0; f < b->series[s].n_fields; f++) {
            struct bcol *c = &b->cols[b->series[s].first_col + f];
            if ((rc = encode_col(b, c, &b->sec[type_section(c->type)])) < 0)
                goto fail;
        }
    /* §5.1 layout */
    if (ferry_buf_append_u8(o, BODY_FORMAT) < 0 || ferry_buf_append_uvarint(o, b->n_records) < 0 ||
        ferry_buf_append_uvarint(o, b->n_series) < 0)
        goto nomem;
    for (uint32_t s = 0; s < b->n_series; s++) {
        const struct bseries *se = &b->series[s];
        if (ferry_buf_append(o, b->defs.data + se->def_off, se->def_len) < 0 ||
            ferry_buf_append_uvarint(o, se->n_rows) < 0)
            goto nomem;
    }
    if (ferry_buf_append_uvarint(o, b->n_tmpls) < 0)
        goto nomem;
    for (uint32_t t = 0; t < b->n_tmpls; t++) {
        const struct btemplate *tp = &b->tmpls[t];
        if (ferry_buf_append_uvarint(o, tp->len) < 0 ||
            ferry_buf_append(o, b->tmpl_text.data + tp->off, tp->len) < 0)
            goto nomem;
    }
    if (ferry_buf_append_u8(o, ts_mode) < 0 || ferry_buf_append_u8(o, ts_exp) < 0 ||
        ferry_buf_append_svarint(o, ts_base) < 0)
        goto nomem;
    const struct ferry_buf *fixed[BODY_FIXED_COLUMNS] = {
        &b->c_ids, &b->c_seq, &b->c_ts, &b->c_levels, &b->c_kinds, &b->c_raw, &b->c_numbers};
    for (int i = 0; i < BODY_FIXED_COLUMNS; i++)
        if (ferry_buf_append_uvarint(o, fixed[i]->len) < 0)
            goto nomem;
    if (ts_mode == BODY_TS_SERIES_DOD)
        for (uint32_t s = 0; s < b->n_series; s++)
            if (ferry_buf_append_uvarint(o, b->series[s].ts_len) < 0)
                goto nomem;
    for (uint32_t s = 0; s < b->n_series; s++)
        for (uint32_t f = 0; f < b->series[s].n_fields; f++)
            if (ferry_buf_append_uvarint(o, b->cols[b->series[s].first_col + f].enc_len) < 0)
                goto nomem;
    for (int i = 0; i < BODY_FIXED_COLUMNS; i++)
        if ((rc = append_col(o, fixed[i])) < 0)
            goto fail;
    for (int t = 0; t < 5; t++)
        if ((rc = append_col(o, &b->sec[t])) < 0)
            goto fail;
    return 0;
nomem:
    rc = BATCH_ENOMEM;
fail:
    o->len = start;
    return rc;
}

int batch_builder_finish(struct batch_builder *b, int64_t build_time_ns, struct ferry_buf *out)
{
    int rc;
    struct batch_header *h = calloc(1, sizeof *h);
    if (!h)
        return set_err(b, BATCH_ENOMEM, "out of memory");
    b->body.len = 0;
    if ((rc = batch_builder_body(b, &b->body)) < 0) {
        set_err(b, rc, "encoding the body: %s", batch_strerror(rc));
        goto out;
    }
    if (b->body.len > b->max_body_raw || b->body.len > BATCH_MAX_BODY_RAW) {
        rc = set_err(b, BATCH_EFULL, "body of %zu bytes exceeds its limit", b->body.len);
        goto out;
    }
    const uint8_t *body = b->body.data;
    size_t body_len = b->body.len;
    h->compression = BATCH_COMPRESSION_NONE;
    if (!b->no_compression) {
        size_t cap = ZSTD_compressBound(b->body.len);
        b->zbuf.len = 0;
        if (ferry_buf_reserve(&b->zbuf, cap) < 0) {
            rc = set_err(b, BATCH_ENOMEM, "out of memory");
            goto out;
        }
        ZSTD_CCtx_reset(b->cctx, ZSTD_reset_session_and_parameters);
        size_t zr = ZSTD_CCtx_setParameter(b->cctx, ZSTD_c_compressionLevel, b->zstd_level);
        if (!ZSTD_isError(zr))
            zr = ZSTD_CCtx_setParameter(b->cctx, ZSTD_c_contentSizeFlag, 1);
        if (!ZSTD_isError(zr))
            zr = ZSTD_CCtx_setParameter(b->cctx, ZSTD_c_dictIDFlag, 0);
        if (!ZSTD_isError(zr) && b->cdict)
            zr = ZSTD_CCtx_refCDict(b->cctx, b->cdict);
        if (!ZSTD_isError(zr))
            zr = ZSTD_compress2(b->cctx, b->zbuf.data, cap, b->body.data, b->body.len);
        if (ZSTD_isError(zr)) {
            rc = set_err(b, BATCH_ECOMPRESS, "zstd: %s", ZSTD_getErrorName(zr));
            goto out;
        }
        /* A body that does not shrink travels uncompressed (unless a dictionary was asked
         * for: then the batch still names it, which the ingest tracks). */
        if (zr < b->body.len || b->cdict) {
            b->zbuf.len = zr;
            body = b->zbuf.data;
            body_len = zr;
            h->compression = BATCH_COMPRESSION_ZSTD;
            h->dict_id = b->cdict ? b->dict_id : 0;
        }
    }
    h->version = BATCH_VERSION;
    h->body_len = (uint32_t)body_len;
    h->body_raw_len = (uint32_t)b->body.len;
    h->record_count = b->n_records;
    h->packed_bytes = b->packed_bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)b->packed_bytes;
    memcpy(h->key_id, b->key_id, sizeof h->key_id);
    randombytes_buf(h->batch_id, sizeof h->batch_id);
    h->build_time_ns = build_time_ns;
    h->send_time_ns = build_time_ns;
    memcpy(h->device_id, b->device_id, b->device_id_len);
    h->device_id_len = b->device_id_len;
    for (int s = 0; s < RECORD_STREAM_COUNT; s++)
        if (b->has_range[s])
            h->ranges[h->n_ranges++] = b->ranges[s];
    memcpy(h->gaps, b->gaps, b->n_gaps * sizeof *b->gaps);
    h->n_gaps = b->n_gaps;
    h->has_backlog = true;
    memcpy(h->backlog, b->backlog, sizeof h->backlog);
    h->header_len = batch__header_len(h->version, h->device_id_len, h->n_ranges, h->n_gaps);
    crypto_generichash(h->body_hash, sizeof h->body_hash, body, body_len, NULL, 0);
    size_t start = out->len;
    if ((rc = batch__header_encode(h, out)) < 0 || ferry_buf_append(out, body, body_len) < 0) {
        out->len = start;
        rc = set_err(b, BATCH_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = batch__sign(out->data + start, h->header_len, b->sk)) < 0) {
        out->len = start;
        set_err(b, rc, "Ed25519 signing failed");
        goto out;
    }
    batch_builder_reset(b);
    rc = 0;
out:
    free(h);
    return rc;
}
