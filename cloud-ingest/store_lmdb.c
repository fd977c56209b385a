/*
 * store_lmdb.c - the embedded LMDB store (see store.h for what a store keeps).
 *
 * Layout (one environment in the data directory, named databases; layout version 2 is recorded
 * in meta/"layout"). Integers in keys are big-endian so that LMDB's byte order is numeric order;
 * values are host order (the data directory is not portable between architectures):
 *
 *   meta     "layout" -> u32 1; "next_idx" -> u32 next device index
 *   devices  device id -> struct lmdb_device_val { u32 layout, u32 idx, struct ingest_device }
 *            (values written before device labels end where `labels` starts: read as "{}")
 *   keys     key id (8 bytes) -> device id
 *   tokens   token text -> struct lmdb_token_val, then the token's labels as JSON text (no NUL;
 *            absent in values written before labels: none)
 *   records  idx(u32 BE) stream(u8) first_seq(u64 BE) -> a chunk: the new records of one
 *            stream of one batch, sorted by seq:
 *              u32 count, u32 0, u64 last_seq,
 *              count x {u64 seq, i64 ts_corrected, u32 offset, u32 length}  (24 bytes each)
 *              payloads (record_pack(), transport/record.h; offsets from the payload start)
 *   gaps     idx(u32 BE) stream(u8) first(u64 BE) -> last u64
 *   api_tokens  token id (16 hex chars) -> struct ingest_api_token (host order; names are unique,
 *               checked by a scan: an installation has tens of tokens, not thousands)
 *   audit    seq (u64 BE) -> struct ingest_audit_event; seq is the last key + 1
 * (api_tokens and audit were added beside layout 2: an older data directory gains them empty.)
 *   commits  the commit log (store.h, "Commit order"): number of the entry's first record (u64
 *            BE, from 1) -> one entry per (write, stream) with new records:
 *              i64 committed_ns, u32 count, u8 stream, u8 id_len, u16 n_ranges, id bytes,
 *              n_ranges x {u64 first_seq, u64 last_seq}  (the new records' seqs, ascending)
 *            Added beside layout 2 (created when missing; records stored before it have no
 *            entries and are not forwarded).
 *   cursors  cursor name -> struct ingest_store_cursor (forwarders' durable positions)
 *
 * Records are stored in chunks, one LMDB value per (batch, stream), not one per record: a
 * 1,000-record batch is one put instead of a thousand, which is what lets one storage thread keep
 * up with a million records per second (per-record puts cost ~1 us each in B-tree work alone).
 * Identity stays per record: before a chunk is written, the chunks of that device and stream whose
 * [first, last] overlaps the new records are read and every seq already in one is dropped (a
 * retried batch therefore writes nothing). Chunks of one stream normally follow each other;
 * when they interleave (a device filled a hole later) export merges them by seq.
 *
 * Invariants:
 *   1. A (device, stream, seq) is stored at most once: a record whose seq is in an overlapping
 *      chunk (or earlier in the same batch) is counted as a duplicate and not written; chunks are
 *      never rewritten, so a stored record never changes.
 *   2. A device's counters change in the same transaction as its records, so they always agree.
 *   3. ingest_store_write() returns after mdb_txn_commit(), which fsyncs (the environment is
 *      opened without MDB_NOSYNC/MDB_NOMETASYNC): an acknowledged record survives power loss.
 * Only one write transaction exists at a time (LMDB's rule); the group committer is the only
 * writer on the hot path, operator commands write rarely.
 */
#include <errno.h>
#include <lmdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud-ingest/store_impl.h"
#include "common/buf.h"
#include "common/util.h"

#define LMDB_LAYOUT 2u
#define CHUNK_HEADER 16
#define CHUNK_ENTRY 24

struct lmdb_store {
    struct ingest_store base;
    MDB_env *env;
    MDB_dbi meta, devices, keys, tokens, records, gaps, updates, api_tokens, audit, commits,
        cursors, kv, inventory;
};

#define COMMIT_HEADER 16
#define COMMIT_RANGES_MAX 4096

struct lmdb_device_val {
    uint32_t layout;
    uint32_t idx;
    struct ingest_device dev;
};

/* 16 bytes in directories made before use limits; 32 since (the tail reads as 0: no limit). */
struct lmdb_token_val {
    uint8_t one_time;
    uint8_t used;
    uint8_t pad[6];
    int64_t expires_ns;
    uint64_t uses;     /* new keys enrolled with it */
    uint64_t max_uses; /* 0: no limit */
};
#define LMDB_TOKEN_VAL_V1 16
/* A device value written before labels: everything up to the labels member. */
#define LMDB_DEVICE_VAL_V1                                                                         \
    (offsetof(struct lmdb_device_val, dev) + offsetof(struct ingest_device, labels))

/* Copies a device value of either size into *out (labels "{}" for the older one). */
static int dev_decode(const MDB_val *v, struct lmdb_device_val *out)
{
    if (v->mv_size == sizeof(*out)) {
        memcpy(out, v->mv_data, sizeof(*out));
        out->dev.labels[INGEST_LABELS_MAX] = '\0';
    } else if (v->mv_size == LMDB_DEVICE_VAL_V1) {
        memcpy(out, v->mv_data, LMDB_DEVICE_VAL_V1);
        memcpy(out->dev.labels, "{}", 3);
    } else {
        return INGEST_STORE_EIO;
    }
    return out->layout == LMDB_LAYOUT ? 0 : INGEST_STORE_EIO;
}

static int map_err(int rc)
{
    if (rc == 0)
        return 0;
    if (rc == MDB_MAP_FULL)
        return INGEST_STORE_EFULL;
    if (rc == MDB_NOTFOUND)
        return INGEST_STORE_ENOTFOUND;
    if (rc == ENOMEM)
        return INGEST_STORE_ENOMEM;
    return INGEST_STORE_EIO;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void rec_key(uint8_t key[13], uint32_t idx, uint8_t stream, uint64_t seq)
{
    put_be32(key, idx);
    key[4] = stream;
    put_be64(key + 5, seq);
}

static MDB_val str_val(const char *s)
{
    return (MDB_val){strlen(s), (void *)s};
}

/* Reads a device value inside `txn`. Returns 0, ENOTFOUND or EIO (corrupt value). */
static int dev_read(struct lmdb_store *s, MDB_txn *txn, const char *id, struct lmdb_device_val *out)
{
    MDB_val k = str_val(id), v;
    int rc = mdb_get(txn, s->devices, &k, &v);
    if (rc != 0)
        return map_err(rc);
    return dev_decode(&v, out);
}

static int dev_write(struct lmdb_store *s, MDB_txn *txn, const struct lmdb_device_val *dv)
{
    MDB_val k = str_val(dv->dev.id), v = {sizeof(*dv), (void *)dv};
    return map_err(mdb_put(txn, s->devices, &k, &v, 0));
}

/* Reads the device's update states inside `txn` into out (at least INGEST_UPDATES_MAX + 1
 * bytes); "{}" when it has none. */
static int updates_read(struct lmdb_store *s, MDB_txn *txn, const char *id, char *out)
{
    MDB_val k = str_val(id), v;
    int rc = mdb_get(txn, s->updates, &k, &v);
    if (rc == MDB_NOTFOUND) {
        memcpy(out, "{}", 3);
        return 0;
    }
    if (rc != 0)
        return map_err(rc);
    if (v.mv_size == 0 || v.mv_size > INGEST_UPDATES_MAX)
        return INGEST_STORE_EIO;
    memcpy(out, v.mv_data, v.mv_size);
    out[v.mv_size] = '\0';
    return 0;
}

/* Merges a batch's update states into the stored ones (newest sequence wins per component). A
 * merge that would not fit keeps what was stored. */
static int updates_write(struct lmdb_store *s, MDB_txn *txn, const char *id, const char *patch)
{
    char stored[INGEST_UPDATES_MAX + 1], merged[INGEST_UPDATES_MAX + 1];
    int rc = updates_read(s, txn, id, stored);
    if (rc == INGEST_STORE_EIO)
        memcpy(stored, "{}", 3); /* a corrupt value is replaced */
    else if (rc != 0)
        return rc;
    if (ingest_updates_merge(stored, patch, merged, sizeof(merged)) != 0)
        return 0;
    MDB_val k = str_val(id), v = str_val(merged);
    return map_err(mdb_put(txn, s->updates, &k, &v, 0));
}

/* Reads the device's inventory inside `txn`: the value is the device time (8 bytes, little
 * endian) followed by the JSON object text. Leaves out "" and *ts_ns 0 when there is none. */
static int inventory_read(struct lmdb_store *s, MDB_txn *txn, const char *id, char *out,
                          size_t out_len, int64_t *ts_ns)
{
    MDB_val k = str_val(id), v;
    int rc = mdb_get(txn, s->inventory, &k, &v);
    out[0] = '\0';
    *ts_ns = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return map_err(rc);
    if (v.mv_size <= 8 || v.mv_size - 8 >= out_len)
        return INGEST_STORE_EIO;
    uint64_t t = 0;
    for (int i = 7; i >= 0; i--)
        t = t << 8 | ((const uint8_t *)v.mv_data)[i];
    *ts_ns = (int64_t)t;
    memcpy(out, (const uint8_t *)v.mv_data + 8, v.mv_size - 8);
    out[v.mv_size - 8] = '\0';
    return 0;
}

/* Replaces the device's inventory with the write's when the write's is newer by device time
 * (a resent older batch keeps the newer one; an equal time keeps what is stored). A corrupt
 * stored value is replaced. */
static int inventory_write(struct lmdb_store *s, MDB_txn *txn, const struct ingest_write *w)
{
    char stored[INGEST_INVENTORY_MAX + 1];
    int64_t stored_ts = 0;
    int rc = inventory_read(s, txn, w->device_id, stored, sizeof(stored), &stored_ts);
    if (rc != 0 && rc != INGEST_STORE_EIO)
        return rc;
    if (rc == 0 && stored[0] != '\0' && stored_ts >= w->inventory_ts_ns)
        return 0;
    size_t len = strlen(w->inventory_json);
    if (len == 0 || len > INGEST_INVENTORY_MAX)
        return 0; /* batches.c bounds it; never stored otherwise */
    uint8_t val[8 + INGEST_INVENTORY_MAX];
    uint64_t t = (uint64_t)w->inventory_ts_ns;
    for (int i = 0; i < 8; i++)
        val[i] = (uint8_t)(t >> (8 * i));
    memcpy(val + 8, w->inventory_json, len);
    MDB_val k = str_val(w->device_id), v = {8 + len, val};
    return map_err(mdb_put(txn, s->inventory, &k, &v, 0));
}

static void lmdb_close(struct ingest_store *base)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    if (s->env != NULL)
        mdb_env_close(s->env);
    free(s);
}

/* A chunk value, checked: every entry's payload lies inside the value. */
struct chunk {
    const uint8_t *p;
    size_t size;
    uint32_t count;
    uint64_t last;
};

static int chunk_parse(const MDB_val *v, struct chunk *c)
{
    c->p = v->mv_data;
    c->size = v->mv_size;
    if (c->size < CHUNK_HEADER)
        return INGEST_STORE_EIO;
    memcpy(&c->count, c->p, 4);
    memcpy(&c->last, c->p + 8, 8);
    if (c->count == 0 || (c->size - CHUNK_HEADER) / CHUNK_ENTRY < c->count)
        return INGEST_STORE_EIO;
    return 0;
}

/* Entry i as a record; EIO when its payload is outside the value. */
static int chunk_rec(const struct chunk *c, uint32_t i, struct ingest_rec *r)
{
    const uint8_t *e = c->p + CHUNK_HEADER + (size_t)i * CHUNK_ENTRY;
    uint32_t off, len;
    size_t base = CHUNK_HEADER + (size_t)c->count * CHUNK_ENTRY;
    memcpy(&r->seq, e, 8);
    memcpy(&r->ts_corrected_ns, e + 8, 8);
    memcpy(&off, e + 16, 4);
    memcpy(&len, e + 20, 4);
    if (off > c->size - base || len > c->size - base - off)
        return INGEST_STORE_EIO;
    r->packed = c->p + base + off;
    r->packed_len = len;
    return 0;
}

struct seq_ref {
    uint64_t seq;
    size_t index; /* into the write's recs */
};

static int cmp_seq_ref(const void *a, const void *b)
{
    const struct seq_ref *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* The stored records of the chunks a write overlaps, copied out (the chunks are deleted and
 * rewritten merged with the new records, so that chunks of one stream never interleave). */
struct overlap {
    struct ingest_rec *recs; /* packed points into data after collection */
    size_t n, cap;
    size_t *offs;
    struct ferry_buf data;
    uint64_t *firsts; /* keys of the overlapping chunks */
    size_t n_firsts, cap_firsts;
};

static void overlap_free(struct overlap *o)
{
    free(o->recs);
    free(o->offs);
    free(o->firsts);
    ferry_buf_free(&o->data);
}

static int overlap_add(struct overlap *o, uint64_t first, const MDB_val *v)
{
    struct chunk c;
    int rc = chunk_parse(v, &c);
    if (rc != 0)
        return rc;
    if (o->n_firsts == o->cap_firsts) {
        size_t cap = o->cap_firsts ? o->cap_firsts * 2 : 8;
        uint64_t *f = realloc(o->firsts, cap * sizeof(*f));
        if (f == NULL)
            return INGEST_STORE_ENOMEM;
        o->firsts = f;
        o->cap_firsts = cap;
    }
    o->firsts[o->n_firsts++] = first;
    if (o->n + c.count > o->cap) {
        size_t cap = (o->n + c.count) * 2;
        struct ingest_rec *r = realloc(o->recs, cap * sizeof(*r));
        if (r == NULL)
            return INGEST_STORE_ENOMEM;
        o->recs = r;
        size_t *offs = realloc(o->offs, cap * sizeof(*offs));
        if (offs == NULL)
            return INGEST_STORE_ENOMEM;
        o->offs = offs;
        o->cap = cap;
    }
    for (uint32_t i = 0; i < c.count; i++) {
        struct ingest_rec r;
        if ((rc = chunk_rec(&c, i, &r)) != 0)
            return rc;
        o->offs[o->n] = o->data.len;
        if (ferry_buf_append(&o->data, r.packed, r.packed_len) != 0)
            return INGEST_STORE_ENOMEM;
        o->recs[o->n++] = r;
    }
    return 0;
}

/* Collects every chunk of (idx, stream) whose [first, last] meets [min, max]. Chunks of a
 * stream never interleave (write_stream keeps it so), so those are the one before min, if it
 * reaches min, and the ones starting inside [min, max]; they come out in seq order. */
static int collect_overlaps(struct lmdb_store *s, MDB_txn *txn, uint32_t idx, uint8_t stream,
                            uint64_t min, uint64_t max, struct overlap *o)
{
    MDB_cursor *cur = NULL;
    int rc = map_err(mdb_cursor_open(txn, s->records, &cur));
    if (rc != 0)
        return rc;
    uint8_t key[13];
    rec_key(key, idx, stream, min);
    MDB_val k = {13, key}, v, pk, pv;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    int prc = mrc == 0 ? mdb_cursor_get(cur, &pk, &pv, MDB_PREV)
                       : mdb_cursor_get(cur, &pk, &pv, MDB_LAST);
    if (prc == 0 && pk.mv_size == 13 && memcmp(pk.mv_data, key, 5) == 0) {
        struct chunk c;
        if ((rc = chunk_parse(&pv, &c)) != 0)
            goto out;
        if (c.last >= min &&
            (rc = overlap_add(o, get_be64((const uint8_t *)pk.mv_data + 5), &pv)) != 0)
            goto out;
    }
    k = (MDB_val){13, key};
    mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (mrc == 0 && k.mv_size == 13 && memcmp(k.mv_data, key, 5) == 0) {
        uint64_t first = get_be64((const uint8_t *)k.mv_data + 5);
        if (first > max)
            break;
        if ((rc = overlap_add(o, first, &v)) != 0)
            goto out;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        rc = map_err(mrc);
    for (size_t i = 0; rc == 0 && i < o->n; i++)
        o->recs[i].packed = o->data.data + o->offs[i];
out:
    mdb_cursor_close(cur);
    return rc;
}

/* Writes `n` records (sorted by seq, no duplicates) as one chunk keyed by the first. */
static int put_chunk(struct lmdb_store *s, MDB_txn *txn, uint32_t idx, uint8_t stream,
                     const struct ingest_rec *const *recs, size_t n)
{
    size_t size = CHUNK_HEADER + n * CHUNK_ENTRY, payload = 0;
    for (size_t i = 0; i < n; i++)
        payload += recs[i]->packed_len;
    if (payload > UINT32_MAX || size + payload < size)
        return INGEST_STORE_EINVAL;
    uint8_t key[13];
    rec_key(key, idx, stream, recs[0]->seq);
    MDB_val k = {13, key}, v = {size + payload, NULL};
    int mrc = mdb_put(txn, s->records, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE);
    if (mrc != 0)
        return mrc == MDB_KEYEXIST ? INGEST_STORE_EIO : map_err(mrc);
    uint8_t *p = v.mv_data;
    uint32_t count = (uint32_t)n, zero = 0, off = 0;
    uint64_t last = recs[n - 1]->seq;
    memcpy(p, &count, 4);
    memcpy(p + 4, &zero, 4);
    memcpy(p + 8, &last, 8);
    uint8_t *ent = p + CHUNK_HEADER, *data = p + size;
    for (size_t i = 0; i < n; i++, ent += CHUNK_ENTRY) {
        uint32_t len = (uint32_t)recs[i]->packed_len;
        memcpy(ent, &recs[i]->seq, 8);
        memcpy(ent + 8, &recs[i]->ts_corrected_ns, 8);
        memcpy(ent + 16, &off, 4);
        memcpy(ent + 20, &len, 4);
        memcpy(data + off, recs[i]->packed, len);
        off += len;
    }
    return 0;
}

/*
 * Writes the records of one stream of a write (refs sorted by seq). Records whose seq is stored
 * already, or repeated in the batch, are duplicates. The new ones become one chunk; when they
 * fall inside the range of stored chunks, those chunks are merged with them into one (rare: a
 * device filling a hole), which keeps chunks disjoint and export a simple ordered walk.
 */
/* Appends the commit log entry of the new records of one stream of a write (fresh: their seqs,
 * ascending) at *next_pos, which then moves past them. */
static int log_commit(struct lmdb_store *s, MDB_txn *txn, const struct ingest_write *w,
                      uint8_t stream, const uint64_t *fresh, size_t n, uint64_t *next_pos)
{
    size_t n_ranges = 1;
    for (size_t i = 1; i < n; i++)
        if (fresh[i] != fresh[i - 1] + 1)
            n_ranges++;
    size_t id_len = strlen(w->device_id);
    if (n_ranges > COMMIT_RANGES_MAX || n > UINT32_MAX || id_len > INGEST_DEVICE_ID_MAX)
        return INGEST_STORE_EINVAL; /* batches hold far fewer records than this */
    uint8_t key[8];
    put_be64(key, *next_pos);
    MDB_val k = {8, key}, v = {COMMIT_HEADER + id_len + n_ranges * 16, NULL};
    int mrc = mdb_put(txn, s->commits, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE);
    if (mrc != 0)
        return mrc == MDB_KEYEXIST ? INGEST_STORE_EIO : map_err(mrc);
    uint8_t *p = v.mv_data;
    uint32_t count = (uint32_t)n;
    uint16_t nr = (uint16_t)n_ranges;
    memcpy(p, &w->received_ns, 8);
    memcpy(p + 8, &count, 4);
    p[12] = stream;
    p[13] = (uint8_t)id_len;
    memcpy(p + 14, &nr, 2);
    memcpy(p + COMMIT_HEADER, w->device_id, id_len);
    uint8_t *r = p + COMMIT_HEADER + id_len;
    uint64_t first = fresh[0];
    for (size_t i = 1; i <= n; i++) {
        if (i < n && fresh[i] == fresh[i - 1] + 1)
            continue;
        memcpy(r, &first, 8);
        memcpy(r + 8, &fresh[i - 1], 8);
        r += 16;
        if (i < n)
            first = fresh[i];
    }
    *next_pos += n;
    return 0;
}

static int write_stream(struct lmdb_store *s, MDB_txn *txn, struct ingest_write *w,
                        struct lmdb_device_val *dv, uint8_t stream, struct seq_ref *refs, size_t n,
                        uint64_t *next_pos)
{
    uint64_t *fresh_seqs = NULL;
    struct overlap o;
    memset(&o, 0, sizeof(o));
    const struct ingest_rec **out = NULL;
    int rc = collect_overlaps(s, txn, dv->idx, stream, refs[0].seq, refs[n - 1].seq, &o);
    if (rc != 0)
        goto done;
    /* Merge walk: o.recs and refs are both sorted by seq. */
    out = malloc((o.n + n) * sizeof(*out));
    fresh_seqs = malloc(n * sizeof(*fresh_seqs));
    if (out == NULL || fresh_seqs == NULL) {
        rc = INGEST_STORE_ENOMEM;
        goto done;
    }
    size_t n_out = 0, i = 0, j = 0, fresh = 0;
    while (i < o.n || j < n) {
        const struct ingest_rec *nr = j < n ? &w->recs[refs[j].index] : NULL;
        if (nr != NULL && n_out > 0 && out[n_out - 1]->seq == nr->seq) {
            j++; /* stored already, or the same seq earlier in this batch */
            continue;
        }
        if (i < o.n && (nr == NULL || o.recs[i].seq <= nr->seq)) {
            out[n_out++] = &o.recs[i++];
        } else {
            out[n_out++] = nr;
            j++;
            fresh_seqs[fresh++] = nr->seq;
        }
    }
    w->dup_records += n - fresh;
    if (fresh == 0)
        goto done;
    for (size_t f = 0; f < o.n_firsts && rc == 0; f++) {
        uint8_t key[13];
        rec_key(key, dv->idx, stream, o.firsts[f]);
        MDB_val k = {13, key};
        rc = map_err(mdb_del(txn, s->records, &k, NULL));
    }
    if (rc == 0)
        rc = put_chunk(s, txn, dv->idx, stream, out, n_out);
    if (rc == 0)
        rc = log_commit(s, txn, w, stream, fresh_seqs, fresh, next_pos);
    if (rc == 0) {
        w->new_records += fresh;
        struct ingest_stream_stats *st = &dv->dev.streams[stream];
        st->records += fresh;
        if (refs[n - 1].seq > st->max_seq)
            st->max_seq = refs[n - 1].seq;
    }
done:
    free(out);
    free(fresh_seqs);
    overlap_free(&o);
    return rc;
}

/* Merges the reported gap `g` into the device's gap set of its stream, kept as disjoint,
 * non-adjacent ranges: overlapping and adjacent entries become one. *added gets how many
 * sequences no earlier report covered, *ranges_delta the change in the number of entries. A
 * device reports the same loss more than once (a batch whose response was lost is rebuilt, and
 * its builder may join adjacent gap entries), so the set, not the reports, is what counts. */
static int merge_gap(struct lmdb_store *s, MDB_txn *txn, uint32_t idx, const struct ingest_gap *g,
                     uint64_t *added, int64_t *ranges_delta)
{
    uint64_t f = g->first_seq, l = g->last_seq, covered = 0;
    int64_t removed = 0;
    uint8_t key[13], prefix[5];
    rec_key(key, idx, g->stream, 0);
    memcpy(prefix, key, 5);
    MDB_cursor *cur;
    int rc = map_err(mdb_cursor_open(txn, s->gaps, &cur));
    if (rc != 0)
        return rc;
    /* The entry just before f may reach into the range (or end at f - 1). */
    rec_key(key, idx, g->stream, f);
    MDB_val k = {13, key}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    mrc = mdb_cursor_get(cur, &k, &v, mrc == 0 ? MDB_PREV : MDB_LAST);
    /* Then every entry from f on that starts no later than l + 1; each absorbed entry is
     * deleted and the search starts again from f (the cursor is not reused after a delete). */
    bool before = true;
    while (rc == 0) {
        if (mrc == MDB_NOTFOUND)
            goto next;
        if (mrc != 0) {
            rc = map_err(mrc);
            break;
        }
        if (k.mv_size != 13 || memcmp(k.mv_data, prefix, 5) != 0 || v.mv_size != 8)
            goto next;
        uint64_t ef = get_be64((const uint8_t *)k.mv_data + 5), el;
        memcpy(&el, v.mv_data, 8);
        if (ef > l + 1 || el + 1 < f)
            goto next; /* neither overlapping nor adjacent */
        covered += el - ef + 1;
        removed++;
        if (ef < f)
            f = ef;
        if (el > l)
            l = el;
        uint8_t dkey[13];
        memcpy(dkey, k.mv_data, 13);
        MDB_val dk = {13, dkey};
        if ((mrc = mdb_del(txn, s->gaps, &dk, NULL)) != 0) {
            rc = map_err(mrc);
            break;
        }
        if (!before) {
            rec_key(key, idx, g->stream, f);
            k = (MDB_val){13, key};
            mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            continue;
        }
    next:
        if (!before)
            break;
        before = false;
        rec_key(key, idx, g->stream, f);
        k = (MDB_val){13, key};
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    mdb_cursor_close(cur);
    if (rc != 0)
        return rc;
    rec_key(key, idx, g->stream, f);
    MDB_val nk = {13, key}, nv = {8, &l};
    rc = map_err(mdb_put(txn, s->gaps, &nk, &nv, 0));
    if (rc != 0)
        return rc;
    *added = (l - f + 1) - covered;
    *ranges_delta = 1 - removed;
    return 0;
}

/* A commit log entry, checked. */
struct commit_ent {
    uint64_t key;
    int64_t committed_ns;
    uint32_t count;
    uint8_t stream;
    char device_id[INGEST_DEVICE_ID_MAX + 1];
    uint16_t n_ranges;
    const uint8_t *ranges;
};

static int commit_parse(const MDB_val *k, const MDB_val *v, struct commit_ent *e)
{
    const uint8_t *p = v->mv_data;
    if (k->mv_size != 8 || v->mv_size < COMMIT_HEADER)
        return INGEST_STORE_EIO;
    e->key = get_be64(k->mv_data);
    memcpy(&e->committed_ns, p, 8);
    memcpy(&e->count, p + 8, 4);
    e->stream = p[12];
    size_t id_len = p[13];
    memcpy(&e->n_ranges, p + 14, 2);
    if (id_len == 0 || id_len > INGEST_DEVICE_ID_MAX || e->stream >= RECORD_STREAM_COUNT ||
        v->mv_size != COMMIT_HEADER + id_len + (size_t)e->n_ranges * 16 || e->count == 0)
        return INGEST_STORE_EIO;
    memcpy(e->device_id, p + COMMIT_HEADER, id_len);
    e->device_id[id_len] = '\0';
    e->ranges = p + COMMIT_HEADER + id_len;
    return 0;
}

/* The number of the last record in the commit log (0: empty) and the receive time of its entry. */
static int commit_head(struct lmdb_store *s, MDB_txn *txn, uint64_t *last, int64_t *last_ns)
{
    MDB_cursor *cur = NULL;
    *last = 0;
    int rc = map_err(mdb_cursor_open(txn, s->commits, &cur));
    if (rc != 0)
        return rc;
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (mrc == 0) {
        struct commit_ent e;
        rc = commit_parse(&k, &v, &e);
        if (rc == 0) {
            *last = e.key + e.count - 1;
            if (last_ns != NULL)
                *last_ns = e.committed_ns;
        }
    } else if (mrc != MDB_NOTFOUND) {
        rc = map_err(mrc);
    }
    mdb_cursor_close(cur);
    return rc;
}

static int write_one(struct lmdb_store *s, MDB_txn *txn, struct ingest_write *w, uint64_t *next_pos)
{
    struct lmdb_device_val dv;
    int rc = dev_read(s, txn, w->device_id, &dv);
    if (rc == INGEST_STORE_ENOTFOUND) {
        w->result = rc;
        return 0;
    }
    if (rc != 0)
        return rc;
    if (dv.dev.revoked) {
        w->result = INGEST_STORE_EREVOKED;
        return 0;
    }
    if (w->n_recs > 0) {
        struct seq_ref *refs = malloc(w->n_recs * sizeof(*refs));
        if (refs == NULL)
            return INGEST_STORE_ENOMEM;
        for (uint8_t stream = 0; stream < RECORD_STREAM_COUNT && rc == 0; stream++) {
            size_t n = 0;
            bool sorted = true;
            for (size_t i = 0; i < w->n_recs; i++) {
                if (w->recs[i].stream != stream)
                    continue;
                if (n > 0 && w->recs[i].seq <= refs[n - 1].seq)
                    sorted = false;
                refs[n++] = (struct seq_ref){w->recs[i].seq, i};
            }
            if (n == 0)
                continue;
            if (!sorted)
                qsort(refs, n, sizeof(*refs), cmp_seq_ref);
            rc = write_stream(s, txn, w, &dv, stream, refs, n, next_pos);
        }
        free(refs);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < w->n_gaps; i++) {
        const struct ingest_gap *g = &w->gaps[i];
        if (g->stream >= RECORD_STREAM_COUNT || g->first_seq == 0 || g->first_seq > g->last_seq)
            continue; /* batches.c refuses these; never count them */
        uint64_t added = 0;
        int64_t ranges_delta = 0;
        rc = merge_gap(s, txn, dv.idx, g, &added, &ranges_delta);
        if (rc != 0)
            return rc;
        if (added > 0)
            w->new_gaps++;
        struct ingest_stream_stats *st = &dv.dev.streams[g->stream];
        st->gap_records += added;
        st->gap_ranges = (uint64_t)((int64_t)st->gap_ranges + ranges_delta);
    }
    if (w->received_ns > dv.dev.last_seen_ns)
        dv.dev.last_seen_ns = w->received_ns;
    dv.dev.clock_offset_ns = w->clock_offset_ns;
    if (w->versions_json != NULL) {
        /* Merged per key (store_json.c): a batch reporting one component keeps the others. A
         * merge that would not fit, or a malformed patch, keeps what was stored. */
        char merged[INGEST_VERSIONS_MAX + 1];
        if (ingest_versions_merge(dv.dev.versions, w->versions_json, merged, sizeof(merged)) == 0)
            memcpy(dv.dev.versions, merged, sizeof(merged));
    }
    if (w->has_backlog)
        for (int st = 0; st < RECORD_STREAM_COUNT; st++)
            dv.dev.streams[st].backlog = w->backlog[st];
    if (w->updates_json != NULL) {
        int urc = updates_write(s, txn, w->device_id, w->updates_json);
        if (urc != 0)
            return urc;
    }
    if (w->inventory_json != NULL) {
        int irc = inventory_write(s, txn, w);
        if (irc != 0)
            return irc;
    }
    return dev_write(s, txn, &dv);
}

static int lmdb_write(struct ingest_store *base, struct ingest_write *const *writes, size_t n,
                      char *err, size_t err_len)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0) {
        snprintf(err, err_len, "lmdb: begin write txn: %s", mdb_strerror(rc));
        return map_err(rc);
    }
    uint64_t next_pos = 0;
    int hrc = commit_head(s, txn, &next_pos, NULL);
    if (hrc != 0) {
        snprintf(err, err_len, "lmdb: read commit log head: %s", ingest_store_strerror(hrc));
        mdb_txn_abort(txn);
        return hrc;
    }
    next_pos++;
    for (size_t i = 0; i < n; i++) {
        if (writes[i]->result != 0)
            continue;
        int wrc = write_one(s, txn, writes[i], &next_pos);
        if (wrc != 0) {
            snprintf(err, err_len, "lmdb: write of device %s: %s", writes[i]->device_id,
                     ingest_store_strerror(wrc));
            mdb_txn_abort(txn);
            return wrc;
        }
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        snprintf(err, err_len, "lmdb: commit: %s", mdb_strerror(rc));
        return map_err(rc);
    }
    return 0;
}

/* Allocates the next device index; inside a write txn. */
static int next_idx(struct lmdb_store *s, MDB_txn *txn, uint32_t *out)
{
    MDB_val k = str_val("next_idx"), v;
    uint32_t idx = 1;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == 0 && v.mv_size == 4)
        memcpy(&idx, v.mv_data, 4);
    else if (rc != MDB_NOTFOUND && rc != 0)
        return map_err(rc);
    *out = idx;
    uint32_t next = idx + 1;
    v = (MDB_val){4, &next};
    return map_err(mdb_put(txn, s->meta, &k, &v, 0));
}

/* Inserts a new device (id and key must both be free); inside a write txn. */
static int insert_device(struct lmdb_store *s, MDB_txn *txn, const struct ingest_device *dev)
{
    struct lmdb_device_val dv;
    memset(&dv, 0, sizeof(dv));
    dv.layout = LMDB_LAYOUT;
    dv.dev = *dev;
    int rc = next_idx(s, txn, &dv.idx);
    if (rc != 0)
        return rc;
    rc = dev_write(s, txn, &dv);
    if (rc != 0)
        return rc;
    MDB_val k = {8, (void *)dev->key_id}, v = str_val(dev->id);
    return map_err(mdb_put(txn, s->keys, &k, &v, 0));
}

static int key_owner(struct lmdb_store *s, MDB_txn *txn, const uint8_t key_id[8], char *id_out)
{
    MDB_val k = {8, (void *)key_id}, v;
    int rc = mdb_get(txn, s->keys, &k, &v);
    if (rc != 0)
        return map_err(rc);
    if (v.mv_size == 0 || v.mv_size > INGEST_DEVICE_ID_MAX)
        return INGEST_STORE_EIO;
    memcpy(id_out, v.mv_data, v.mv_size);
    id_out[v.mv_size] = '\0';
    return 0;
}

/* Adds one device inside a write txn: 0 (added, or already there with the same key), EEXIST. */
static int add_in_txn(struct lmdb_store *s, MDB_txn *txn, const struct ingest_device *dev,
                      char *err, size_t err_len)
{
    struct lmdb_device_val old;
    char owner[INGEST_DEVICE_ID_MAX + 1];
    int rc = dev_read(s, txn, dev->id, &old);
    if (rc == 0) {
        if (memcmp(old.dev.public_key, dev->public_key, 32) == 0)
            return 0;
        snprintf(err, err_len, "device id %s is registered with another key", dev->id);
        return INGEST_STORE_EEXIST;
    }
    if (rc != INGEST_STORE_ENOTFOUND)
        return rc;
    rc = key_owner(s, txn, dev->key_id, owner);
    if (rc == 0) {
        snprintf(err, err_len, "this key is already registered as device %s", owner);
        return INGEST_STORE_EEXIST;
    }
    if (rc != INGEST_STORE_ENOTFOUND)
        return rc;
    return insert_device(s, txn, dev);
}

static int lmdb_device_add(struct ingest_store *base, const struct ingest_device *devs, size_t n,
                           char *err, size_t err_len)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = add_in_txn(s, txn, &devs[i], err, err_len);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return map_err(mdb_txn_commit(txn));
}

static int lmdb_device_get(struct ingest_store *base, const char *id, struct ingest_device *out)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    struct lmdb_device_val dv;
    rc = dev_read(s, txn, id, &dv);
    mdb_txn_abort(txn);
    if (rc == 0)
        *out = dv.dev;
    return rc;
}

static int lmdb_device_by_key(struct ingest_store *base, const uint8_t key_id[8],
                              struct ingest_device *out)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    char id[INGEST_DEVICE_ID_MAX + 1];
    struct lmdb_device_val dv;
    rc = key_owner(s, txn, key_id, id);
    if (rc == 0)
        rc = dev_read(s, txn, id, &dv);
    mdb_txn_abort(txn);
    if (rc == 0)
        *out = dv.dev;
    return rc;
}

static int lmdb_device_revoke(struct ingest_store *base, const char *id)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    struct lmdb_device_val dv;
    rc = dev_read(s, txn, id, &dv);
    if (rc == 0) {
        dv.dev.revoked = true;
        rc = dev_write(s, txn, &dv);
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return map_err(mdb_txn_commit(txn));
}

static int lmdb_device_set_labels(struct ingest_store *base, const char *id,
                                  const char *labels_json)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    struct lmdb_device_val dv;
    rc = dev_read(s, txn, id, &dv);
    if (rc == 0) {
        if (ferry_strlcpy(dv.dev.labels, labels_json, sizeof(dv.dev.labels)) >=
            sizeof(dv.dev.labels))
            rc = INGEST_STORE_EINVAL;
        else
            rc = dev_write(s, txn, &dv);
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return map_err(mdb_txn_commit(txn));
}

static int lmdb_device_updates(struct ingest_store *base, const char *id, char *out, size_t out_len)
{
    (void)out_len; /* store.c checked it holds INGEST_UPDATES_MAX + 1 */
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return map_err(rc);
    struct lmdb_device_val dv;
    rc = dev_read(s, txn, id, &dv);
    if (rc == 0)
        rc = updates_read(s, txn, id, out);
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_device_inventory(struct ingest_store *base, const char *id, char *out,
                                 size_t out_len, int64_t *ts_ns)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return map_err(rc);
    struct lmdb_device_val dv;
    rc = dev_read(s, txn, id, &dv);
    if (rc == 0)
        rc = inventory_read(s, txn, id, out, out_len, ts_ns);
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_device_list(struct ingest_store *base, ingest_device_cb cb, void *arg)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    rc = map_err(mdb_cursor_open(txn, s->devices, &cur));
    if (rc != 0)
        goto out;
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (mrc == 0) {
        struct lmdb_device_val dv;
        if ((rc = dev_decode(&v, &dv)) != 0)
            goto out;
        if (cb(&dv.dev, arg) != 0)
            goto out;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (mrc != MDB_NOTFOUND)
        rc = map_err(mrc);
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_token_add(struct ingest_store *base, const char *token, bool one_time,
                          int64_t expires_ns, uint64_t max_uses, const char *labels_json)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    /* The fixed part, then the labels' text (none when there are none). */
    uint8_t buf[sizeof(struct lmdb_token_val) + INGEST_LABELS_MAX];
    struct lmdb_token_val tv;
    memset(&tv, 0, sizeof(tv));
    tv.one_time = one_time;
    tv.expires_ns = expires_ns;
    tv.max_uses = max_uses;
    size_t labels_len = strcmp(labels_json, "{}") == 0 ? 0 : strlen(labels_json);
    if (labels_len > INGEST_LABELS_MAX) {
        mdb_txn_abort(txn);
        return INGEST_STORE_EINVAL;
    }
    memcpy(buf, &tv, sizeof(tv));
    memcpy(buf + sizeof(tv), labels_json, labels_len);
    MDB_val k = str_val(token), v = {sizeof(tv) + labels_len, buf};
    int mrc = mdb_put(txn, s->tokens, &k, &v, MDB_NOOVERWRITE);
    if (mrc != 0) {
        mdb_txn_abort(txn);
        return mrc == MDB_KEYEXIST ? INGEST_STORE_EEXIST : map_err(mrc);
    }
    return map_err(mdb_txn_commit(txn));
}

static int lmdb_enroll(struct ingest_store *base, const char *token,
                       const struct ingest_device *dev, int64_t now_ns, struct ingest_device *out,
                       char *err, size_t err_len)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    MDB_val tk = str_val(token), tv;
    struct lmdb_token_val tok;
    uint8_t tbuf[sizeof(struct lmdb_token_val) + INGEST_LABELS_MAX];
    char labels[INGEST_LABELS_MAX + 1] = "{}";
    int mrc = mdb_get(txn, s->tokens, &tk, &tv);
    if (mrc != 0 || (tv.mv_size < sizeof(tok) && tv.mv_size != LMDB_TOKEN_VAL_V1) ||
        tv.mv_size > sizeof(tbuf)) {
        snprintf(err, err_len, "token: unknown");
        rc = mrc == MDB_NOTFOUND || mrc == 0 ? INGEST_STORE_ETOKEN : map_err(mrc);
        goto fail;
    }
    memset(&tok, 0, sizeof(tok));
    memcpy(&tok, tv.mv_data, tv.mv_size < sizeof(tok) ? tv.mv_size : sizeof(tok));
    size_t labels_len = tv.mv_size > sizeof(tok) ? tv.mv_size - sizeof(tok) : 0;
    if (labels_len > 0) {
        memcpy(labels, (const uint8_t *)tv.mv_data + sizeof(tok), labels_len);
        labels[labels_len] = '\0';
    }
    if (tok.expires_ns != 0 && now_ns > tok.expires_ns) {
        snprintf(err, err_len, "token: expired");
        rc = INGEST_STORE_ETOKEN;
        goto fail;
    }
    /* The same key enrolling again gets its id back, whatever token it shows now (but a valid
     * one: knowing a public key must not be enough to learn its id). */
    char owner[INGEST_DEVICE_ID_MAX + 1];
    struct lmdb_device_val dv;
    rc = key_owner(s, txn, dev->key_id, owner);
    if (rc == 0) {
        rc = dev_read(s, txn, owner, &dv);
        if (rc != 0)
            goto fail;
        if (dv.dev.revoked) {
            snprintf(err, err_len, "device %s is revoked", owner);
            rc = INGEST_STORE_EREVOKED;
            goto fail;
        }
        *out = dv.dev;
        mdb_txn_abort(txn);
        return 0;
    }
    if (rc != INGEST_STORE_ENOTFOUND)
        goto fail;
    if (tok.one_time && tok.used) {
        snprintf(err, err_len, "token: already used");
        rc = INGEST_STORE_ETOKEN;
        goto fail;
    }
    if (tok.max_uses != 0 && tok.uses >= tok.max_uses) {
        snprintf(err, err_len, "token: used up (%llu keys enrolled)", (unsigned long long)tok.uses);
        rc = INGEST_STORE_ETOKEN;
        goto fail;
    }
    rc = dev_read(s, txn, dev->id, &dv);
    if (rc == 0) {
        snprintf(err, err_len, "device id %s is taken by another key", dev->id);
        rc = INGEST_STORE_EEXIST;
        goto fail;
    }
    if (rc != INGEST_STORE_ENOTFOUND)
        goto fail;
    struct ingest_device nd = *dev;
    nd.enrolled_ns = now_ns;
    memcpy(nd.labels, labels, sizeof(nd.labels)); /* the token's labels */
    rc = insert_device(s, txn, &nd);
    if (rc != 0)
        goto fail;
    /* Every new key counts a use (in the same transaction as the device it registers). */
    tok.used = 1;
    tok.uses++;
    memcpy(tbuf, &tok, sizeof(tok));
    memcpy(tbuf + sizeof(tok), labels, labels_len);
    tv = (MDB_val){sizeof(tok) + labels_len, tbuf};
    rc = map_err(mdb_put(txn, s->tokens, &tk, &tv, 0));
    if (rc != 0)
        goto fail;
    rc = map_err(mdb_txn_commit(txn));
    if (rc == 0)
        *out = nd;
    return rc;
fail:
    mdb_txn_abort(txn);
    return rc;
}

struct export_ent {
    uint64_t seq;
    int64_t ts_corrected_ns;
    const uint8_t *packed;
    size_t packed_len;
};

static int cmp_export_ent(const void *a, const void *b)
{
    uint64_t x = ((const struct export_ent *)a)->seq, y = ((const struct export_ent *)b)->seq;
    return x < y ? -1 : x > y;
}

struct export_set {
    struct export_ent *e;
    size_t n, cap;
    bool sorted;
};

/* Adds the entries of chunk `v` with seq > after_seq. */
static int export_add(struct export_set *set, const MDB_val *v, uint64_t after_seq)
{
    struct chunk c;
    int rc = chunk_parse(v, &c);
    if (rc != 0)
        return rc;
    if (set->n + c.count > set->cap) {
        size_t cap = (set->n + c.count) * 2;
        struct export_ent *e = realloc(set->e, cap * sizeof(*e));
        if (e == NULL)
            return INGEST_STORE_ENOMEM;
        set->e = e;
        set->cap = cap;
    }
    for (uint32_t i = 0; i < c.count; i++) {
        struct ingest_rec r;
        if ((rc = chunk_rec(&c, i, &r)) != 0)
            return rc;
        if (r.seq <= after_seq)
            continue;
        if (set->n > 0 && r.seq < set->e[set->n - 1].seq)
            set->sorted = false;
        set->e[set->n++] = (struct export_ent){r.seq, r.ts_corrected_ns, r.packed, r.packed_len};
    }
    return 0;
}

/*
 * Export merges chunks by seq: it collects entries (pointers into the read transaction's map)
 * from the chunk that may hold after_seq + 1 onwards, and stops at a chunk whose first seq is
 * above the limit-th smallest seq collected, since no later chunk can hold a smaller one.
 */
static int lmdb_export(struct ingest_store *base, const char *device_id, uint8_t stream,
                       uint64_t after_seq, uint64_t limit, ingest_export_cb cb, void *arg)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    struct export_set set = {NULL, 0, 0, true};
    struct ferry_buf scratch = FERRY_BUF_INIT;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    struct lmdb_device_val dv;
    rc = dev_read(s, txn, device_id, &dv);
    if (rc != 0 || after_seq == UINT64_MAX || limit == 0)
        goto out;
    rc = map_err(mdb_cursor_open(txn, s->records, &cur));
    if (rc != 0)
        goto out;
    uint8_t key[13];
    rec_key(key, dv.idx, stream, after_seq + 1);
    MDB_val k = {13, key}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    MDB_val pk, pv;
    int prc = mrc == 0 ? mdb_cursor_get(cur, &pk, &pv, MDB_PREV)
                       : mdb_cursor_get(cur, &pk, &pv, MDB_LAST);
    if (prc == 0 && pk.mv_size == 13 && memcmp(pk.mv_data, key, 5) == 0) {
        if ((rc = export_add(&set, &pv, after_seq)) != 0)
            goto out;
    }
    k = (MDB_val){13, key};
    mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (mrc == 0 && k.mv_size == 13 && memcmp(k.mv_data, key, 5) == 0) {
        uint64_t first = get_be64((const uint8_t *)k.mv_data + 5);
        if (set.n >= limit) {
            if (!set.sorted) {
                qsort(set.e, set.n, sizeof(*set.e), cmp_export_ent);
                set.sorted = true;
            }
            if (set.e[limit - 1].seq < first)
                break;
        }
        if ((rc = export_add(&set, &v, after_seq)) != 0)
            goto out;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = map_err(mrc);
        goto out;
    }
    if (!set.sorted)
        qsort(set.e, set.n, sizeof(*set.e), cmp_export_ent);
    for (size_t i = 0; i < set.n && i < limit; i++) {
        struct ingest_rec r = {.stream = stream,
                               .seq = set.e[i].seq,
                               .ts_corrected_ns = set.e[i].ts_corrected_ns,
                               .packed = set.e[i].packed,
                               .packed_len = set.e[i].packed_len};
        struct ingest_row row;
        if ((rc = ingest_rec_render(&r, &row, &scratch)) != 0 || cb(&row, arg) != 0)
            break;
    }
out:
    free(set.e);
    ferry_buf_free(&scratch);
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_gap_count(struct ingest_store *base, const char *device_id, uint8_t stream,
                          uint64_t *out)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    *out = 0;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    struct lmdb_device_val dv;
    rc = dev_read(s, txn, device_id, &dv);
    if (rc != 0)
        goto out;
    rc = map_err(mdb_cursor_open(txn, s->gaps, &cur));
    if (rc != 0)
        goto out;
    uint8_t key[13];
    rec_key(key, dv.idx, stream, 0);
    MDB_val k = {13, key}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (mrc == 0 && k.mv_size == 13 && memcmp(k.mv_data, key, 5) == 0) {
        (*out)++;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

/* ---- API tokens and audit ------------------------------------------------------------------ */

static int api_token_read(const MDB_val *v, struct ingest_api_token *out)
{
    if (v->mv_size != sizeof(*out))
        return INGEST_STORE_EIO;
    memcpy(out, v->mv_data, sizeof(*out));
    out->id[INGEST_API_TOKEN_ID_LEN] = '\0';
    out->name[INGEST_API_TOKEN_NAME_MAX] = '\0';
    return 0;
}

/* Finds the token named (or with id) `name_or_id` inside `txn`: 0, ENOTFOUND or EIO. */
static int api_token_find(struct lmdb_store *s, MDB_txn *txn, const char *name_or_id,
                          struct ingest_api_token *out)
{
    MDB_cursor *cur = NULL;
    int rc = map_err(mdb_cursor_open(txn, s->api_tokens, &cur));
    if (rc != 0)
        return rc;
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    rc = INGEST_STORE_ENOTFOUND;
    while (mrc == 0) {
        struct ingest_api_token t;
        if (api_token_read(&v, &t) != 0) {
            rc = INGEST_STORE_EIO;
            break;
        }
        if (strcmp(t.name, name_or_id) == 0 || strcmp(t.id, name_or_id) == 0) {
            *out = t;
            rc = 0;
            break;
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        rc = map_err(mrc);
    mdb_cursor_close(cur);
    return rc;
}

static int lmdb_api_token_add(struct ingest_store *base, const struct ingest_api_token *t)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    struct ingest_api_token other;
    rc = api_token_find(s, txn, t->name, &other);
    if (rc == 0)
        rc = INGEST_STORE_EEXIST;
    if (rc != INGEST_STORE_ENOTFOUND)
        goto fail;
    struct ingest_api_token copy = *t;
    MDB_val k = str_val(t->id), v = {sizeof(copy), &copy};
    int mrc = mdb_put(txn, s->api_tokens, &k, &v, MDB_NOOVERWRITE);
    if (mrc != 0) {
        rc = mrc == MDB_KEYEXIST ? INGEST_STORE_EEXIST : map_err(mrc);
        goto fail;
    }
    return map_err(mdb_txn_commit(txn));
fail:
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_api_token_get(struct ingest_store *base, const char *id,
                              struct ingest_api_token *out)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    MDB_val k = str_val(id), v;
    rc = map_err(mdb_get(txn, s->api_tokens, &k, &v));
    if (rc == 0)
        rc = api_token_read(&v, out);
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_api_token_revoke(struct ingest_store *base, const char *name_or_id, int64_t now_ns,
                                 struct ingest_api_token *out)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    struct ingest_api_token t;
    rc = api_token_find(s, txn, name_or_id, &t);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    if (t.revoked_ns == 0)
        t.revoked_ns = now_ns;
    MDB_val k = str_val(t.id), v = {sizeof(t), &t};
    rc = map_err(mdb_put(txn, s->api_tokens, &k, &v, 0));
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = map_err(mdb_txn_commit(txn));
    if (rc == 0)
        *out = t;
    return rc;
}

static int lmdb_api_token_list(struct ingest_store *base, ingest_api_token_cb cb, void *arg)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    if ((rc = map_err(mdb_cursor_open(txn, s->api_tokens, &cur))) != 0)
        goto out;
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (mrc == 0) {
        struct ingest_api_token t;
        if ((rc = api_token_read(&v, &t)) != 0 || cb(&t, arg) != 0)
            goto out;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (mrc != MDB_NOTFOUND)
        rc = map_err(mrc);
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_audit_append(struct ingest_store *base, struct ingest_audit_event *ev)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    if ((rc = map_err(mdb_cursor_open(txn, s->audit, &cur))) != 0)
        goto fail;
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    uint64_t last = 0;
    if (mrc == 0 && k.mv_size == 8)
        last = get_be64(k.mv_data);
    else if (mrc != MDB_NOTFOUND) {
        rc = mrc == 0 ? INGEST_STORE_EIO : map_err(mrc);
        goto fail;
    }
    mdb_cursor_close(cur);
    cur = NULL;
    ev->seq = last + 1;
    uint8_t key[8];
    put_be64(key, ev->seq);
    k = (MDB_val){8, key};
    v = (MDB_val){sizeof(*ev), ev};
    if ((rc = map_err(mdb_put(txn, s->audit, &k, &v, MDB_APPEND))) != 0)
        goto fail;
    return map_err(mdb_txn_commit(txn));
fail:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_audit_list(struct ingest_store *base, uint64_t after_seq, uint64_t limit,
                           ingest_audit_cb cb, void *arg)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    if ((rc = map_err(mdb_cursor_open(txn, s->audit, &cur))) != 0)
        goto out;
    uint8_t key[8];
    put_be64(key, after_seq == UINT64_MAX ? after_seq : after_seq + 1);
    MDB_val k = {8, key}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (uint64_t n = 0; mrc == 0 && n < limit; n++) {
        struct ingest_audit_event ev;
        if (v.mv_size != sizeof(ev)) {
            rc = INGEST_STORE_EIO;
            goto out;
        }
        memcpy(&ev, v.mv_data, sizeof(ev));
        ev.actor[sizeof(ev.actor) - 1] = ev.action[sizeof(ev.action) - 1] = '\0';
        ev.target[sizeof(ev.target) - 1] = ev.source[sizeof(ev.source) - 1] = '\0';
        if (ev.seq <= after_seq)
            break;
        if (cb(&ev, arg) != 0)
            goto out;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        rc = map_err(mrc);
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

/* ---- Commit order (store.h) ----------------------------------------------------------------- */

struct range_read {
    const struct commit_ent *e;
    const struct ingest_store_cursor *from;
    uint64_t number; /* number of the next record of the entry */
    size_t left;     /* records the caller still wants */
    ingest_committed_cb cb;
    void *arg;
    bool stop;
};

/* Hands out the stored records of (idx, stream) with seq in [first, last], in seq order. Chunks of
 * a stream are disjoint and sorted (write_stream keeps them so): the one before `first`, if it
 * reaches it, then those starting inside the range. */
static int read_range(struct lmdb_store *s, MDB_txn *txn, uint32_t idx, uint64_t first,
                      uint64_t last, struct range_read *rr)
{
    MDB_cursor *cur = NULL;
    int rc = map_err(mdb_cursor_open(txn, s->records, &cur));
    if (rc != 0)
        return rc;
    uint8_t key[13];
    rec_key(key, idx, rr->e->stream, first);
    MDB_val k = {13, key}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    bool exact = mrc == 0 && k.mv_size == 13 && memcmp(k.mv_data, key, 13) == 0;
    if (!exact) {
        /* The chunk before `first` may hold it; when it is of another stream (or there is
         * none), start again at the first chunk from `first` on. */
        int prc = mdb_cursor_get(cur, &k, &v, mrc == 0 ? MDB_PREV : MDB_LAST);
        if (prc != 0 || k.mv_size != 13 || memcmp(k.mv_data, key, 5) != 0) {
            k = (MDB_val){13, key};
            mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        } else {
            mrc = 0;
        }
    }
    while (mrc == 0 && rc == 0 && !rr->stop && rr->left > 0 && k.mv_size == 13 &&
           memcmp(k.mv_data, key, 5) == 0 && get_be64((const uint8_t *)k.mv_data + 5) <= last) {
        struct chunk c;
        if ((rc = chunk_parse(&v, &c)) != 0)
            break;
        for (uint32_t i = 0; i < c.count && rc == 0 && !rr->stop && rr->left > 0; i++) {
            struct ingest_rec r;
            if ((rc = chunk_rec(&c, i, &r)) != 0)
                break;
            if (r.seq < first || r.seq > last)
                continue;
            uint64_t number = rr->number++;
            if (rr->from->pos == rr->e->key && r.seq <= rr->from->seq)
                continue; /* passed already */
            struct ingest_store_cursor after;
            memset(&after, 0, sizeof(after));
            after.records = number;
            after.pos = rr->e->key;
            after.seq = r.seq;
            after.stream = rr->e->stream;
            ferry_strlcpy(after.device, rr->e->device_id, sizeof(after.device));
            struct ingest_committed rec = {rr->e->device_id,  rr->e->stream,       r.seq,
                                           r.ts_corrected_ns, rr->e->committed_ns, r.packed,
                                           r.packed_len};
            rr->left--;
            if (rr->cb(&rec, &after, rr->arg) != 0)
                rr->stop = true;
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = map_err(mrc);
    mdb_cursor_close(cur);
    return rc;
}

static int lmdb_read_committed(struct ingest_store *base, const struct ingest_store_cursor *from,
                               size_t limit, ingest_committed_cb cb, void *arg)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    rc = map_err(mdb_cursor_open(txn, s->commits, &cur));
    if (rc != 0)
        goto out;
    uint8_t key[8];
    put_be64(key, from->pos);
    MDB_val k = {8, key}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    struct range_read rr = {.from = from, .left = limit, .cb = cb, .arg = arg};
    while (mrc == 0 && rc == 0 && !rr.stop && rr.left > 0) {
        struct commit_ent e;
        if ((rc = commit_parse(&k, &v, &e)) != 0)
            break;
        bool current = e.key == from->pos;
        if (!current || from->records < e.key + e.count - 1) {
            struct lmdb_device_val dv;
            rc = dev_read(s, txn, e.device_id, &dv);
            if (rc != 0)
                break;
            rr.e = &e;
            rr.number = e.key;
            for (uint16_t i = 0; i < e.n_ranges && rc == 0 && !rr.stop && rr.left > 0; i++) {
                uint64_t f, l;
                memcpy(&f, e.ranges + (size_t)i * 16, 8);
                memcpy(&l, e.ranges + (size_t)i * 16 + 8, 8);
                rc = read_range(s, txn, dv.idx, f, l, &rr);
            }
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = map_err(mrc);
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_cursor_get(struct ingest_store *base, const char *name,
                           struct ingest_store_cursor *out)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    MDB_val k = str_val(name), v;
    rc = map_err(mdb_get(txn, s->cursors, &k, &v));
    if (rc == 0 && v.mv_size != sizeof(*out))
        rc = INGEST_STORE_EIO;
    if (rc == 0) {
        memcpy(out, v.mv_data, sizeof(*out));
        out->device[INGEST_DEVICE_ID_MAX] = '\0';
    }
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_cursor_set(struct ingest_store *base, const char *name,
                           const struct ingest_store_cursor *c)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    MDB_val k = str_val(name), v = {sizeof(*c), (void *)c};
    rc = map_err(mdb_put(txn, s->cursors, &k, &v, 0));
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return map_err(mdb_txn_commit(txn));
}

static int lmdb_commit_lag(struct ingest_store *base, const struct ingest_store_cursor *c,
                           uint64_t *records, int64_t *next_committed_ns)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    uint64_t head = 0;
    rc = commit_head(s, txn, &head, NULL);
    if (rc != 0 || head <= c->records)
        goto out;
    *records = head - c->records;
    rc = map_err(mdb_cursor_open(txn, s->commits, &cur));
    if (rc != 0)
        goto out;
    /* The entry holding record c->records + 1: the last one whose key is not above it. */
    uint8_t key[8];
    put_be64(key, c->records + 1);
    MDB_val k = {8, key}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (mrc == 0 && get_be64(k.mv_data) != c->records + 1)
        mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    else if (mrc == MDB_NOTFOUND)
        mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    struct commit_ent e;
    if (mrc == 0 && commit_parse(&k, &v, &e) == 0)
        *next_committed_ns = e.committed_ns;
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

/* ---- The key/value table ------------------------------------------------------------------ */

static int lmdb_kv_get(struct ingest_store *base, const char *key, struct ferry_buf *out)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    MDB_val k = str_val(key), v;
    rc = map_err(mdb_get(txn, s->kv, &k, &v));
    if (rc == 0 && ferry_buf_append(out, v.mv_data, v.mv_size) != 0)
        rc = INGEST_STORE_ENOMEM;
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_kv_scan(struct ingest_store *base, const char *prefix, size_t limit,
                        ingest_kv_cb cb, void *arg)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    if ((rc = map_err(mdb_cursor_open(txn, s->kv, &cur))) != 0)
        goto out;
    size_t plen = strlen(prefix), n = 0;
    MDB_val k = {plen, (void *)prefix}, v;
    int mrc = plen > 0 ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                       : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    char key[INGEST_KV_KEY_MAX + 1];
    for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0 ||
            k.mv_size > INGEST_KV_KEY_MAX)
            break;
        memcpy(key, k.mv_data, k.mv_size);
        key[k.mv_size] = '\0';
        if (cb(key, v.mv_data, v.mv_size, arg) != 0 || (limit > 0 && ++n >= limit))
            break;
    }
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        rc = map_err(mrc);
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_kv_apply(struct ingest_store *base, const struct ingest_kv_op *ops, size_t n,
                         const char *cursor_name, const struct ingest_store_cursor *cursor)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        MDB_val k = str_val(ops[i].key), v = {ops[i].len, (void *)ops[i].value};
        int mrc = ops[i].del ? mdb_del(txn, s->kv, &k, NULL) : mdb_put(txn, s->kv, &k, &v, 0);
        if (mrc != 0 && !(ops[i].del && mrc == MDB_NOTFOUND))
            rc = map_err(mrc);
    }
    if (rc == 0 && cursor_name != NULL) {
        MDB_val k = str_val(cursor_name), v = {sizeof(*cursor), (void *)cursor};
        rc = map_err(mdb_put(txn, s->cursors, &k, &v, 0));
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return map_err(mdb_txn_commit(txn));
}

/* The LMDB store is the single-process deployment (docs/ingest.md): its one ingest process
 * always holds every lease. */
static int lmdb_lease(struct ingest_store *base, const char *name, const char *owner,
                      int64_t now_ns, int64_t ttl_ns)
{
    (void)base;
    (void)name;
    (void)owner;
    (void)now_ns;
    (void)ttl_ns;
    return 0;
}

static const struct ingest_store_ops lmdb_ops = {
    .close = lmdb_close,
    .write = lmdb_write,
    .device_add = lmdb_device_add,
    .device_get = lmdb_device_get,
    .device_by_key = lmdb_device_by_key,
    .device_revoke = lmdb_device_revoke,
    .device_set_labels = lmdb_device_set_labels,
    .device_list = lmdb_device_list,
    .token_add = lmdb_token_add,
    .enroll = lmdb_enroll,
    .export_records = lmdb_export,
    .gap_count = lmdb_gap_count,
    .device_updates = lmdb_device_updates,
    .device_inventory = lmdb_device_inventory,
    .api_token_add = lmdb_api_token_add,
    .api_token_get = lmdb_api_token_get,
    .api_token_revoke = lmdb_api_token_revoke,
    .api_token_list = lmdb_api_token_list,
    .audit_append = lmdb_audit_append,
    .audit_list = lmdb_audit_list,
    .read_committed = lmdb_read_committed,
    .cursor_get = lmdb_cursor_get,
    .cursor_set = lmdb_cursor_set,
    .commit_lag = lmdb_commit_lag,
    .kv_get = lmdb_kv_get,
    .kv_scan = lmdb_kv_scan,
    .kv_apply = lmdb_kv_apply,
    .lease = lmdb_lease,
};

int ingest_store_lmdb_open(const struct ingest_store_config *cfg, struct ingest_store **out,
                           char *err, size_t err_len)
{
    struct lmdb_store *s = calloc(1, sizeof(*s));
    MDB_txn *txn = NULL;
    int rc;
    if (s == NULL)
        return INGEST_STORE_ENOMEM;
    s->base.ops = &lmdb_ops;
    s->base.kind = INGEST_STORE_LMDB;
    const char *dir = cfg->lmdb_dir != NULL ? cfg->lmdb_dir : "ferry-ingest-data";
    int mk = ferry_mkdir_p(dir, 0700);
    if (mk != 0) {
        snprintf(err, err_len, "lmdb: mkdir %s: %s", dir, strerror(-mk));
        rc = INGEST_STORE_EIO;
        goto fail;
    }
    if ((rc = mdb_env_create(&s->env)) != 0 || (rc = mdb_env_set_maxdbs(s->env, 16)) != 0 ||
        (rc = mdb_env_set_maxreaders(s->env, 1024)) != 0 ||
        (rc = mdb_env_set_mapsize(s->env, cfg->lmdb_map_size ? cfg->lmdb_map_size
                                                             : (size_t)64 << 30)) != 0 ||
        (rc = mdb_env_open(s->env, dir, MDB_NOTLS | MDB_NORDAHEAD, 0600)) != 0) {
        snprintf(err, err_len, "lmdb: open %s: %s", dir, mdb_strerror(rc));
        rc = map_err(rc);
        goto fail;
    }
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
        goto lmdb_fail;
    struct {
        const char *name;
        MDB_dbi *dbi;
    } dbs[] = {{"meta", &s->meta},
               {"devices", &s->devices},
               {"keys", &s->keys},
               {"tokens", &s->tokens},
               {"records", &s->records},
               {"gaps", &s->gaps},
               /* device id -> update states JSON text; added beside layout 2 (a missing
                * entry reads as "{}"), so older data directories open unchanged */
               {"updates", &s->updates},
               {"api_tokens", &s->api_tokens},
               {"audit", &s->audit},
               /* the commit log and forwarder cursors, also added beside layout 2 */
               {"commits", &s->commits},
               {"cursors", &s->cursors},
               /* the ingest's own state (store.h, "a small durable key/value table") */
               {"kv", &s->kv},
               /* device id -> its newest inventory: device time (8 bytes LE) + JSON text; also
                * beside layout 2 (a missing entry: no inventory) */
               {"inventory", &s->inventory}};
    for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++)
        if ((rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, dbs[i].dbi)) != 0)
            goto lmdb_fail;
    MDB_val k = str_val("layout"), v;
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        uint32_t layout = LMDB_LAYOUT;
        v = (MDB_val){4, &layout};
        if ((rc = mdb_put(txn, s->meta, &k, &v, 0)) != 0)
            goto lmdb_fail;
    } else if (rc != 0) {
        goto lmdb_fail;
    } else {
        uint32_t layout = 0;
        if (v.mv_size == 4)
            memcpy(&layout, v.mv_data, 4);
        if (layout != LMDB_LAYOUT) {
            snprintf(err, err_len, "lmdb: %s has layout %u, this build reads layout %u", dir,
                     layout, LMDB_LAYOUT);
            rc = INGEST_STORE_EIO;
            goto fail;
        }
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0)
        goto lmdb_fail;
    *out = &s->base;
    return 0;
lmdb_fail:
    snprintf(err, err_len, "lmdb: initialise %s: %s", dir, mdb_strerror(rc));
    rc = map_err(rc);
fail:
    if (txn != NULL)
        mdb_txn_abort(txn);
    lmdb_close(&s->base);
    return rc;
}
