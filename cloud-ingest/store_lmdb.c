/*
 * store_lmdb.c - the embedded LMDB store (see store.h for what a store keeps).
 *
 * Layout (one environment in the data directory, named databases; layout version 1 is recorded
 * in meta/"layout"). Integers in keys are big-endian so that LMDB's byte order is numeric order;
 * values are host order (the data directory is not portable between architectures):
 *
 *   meta     "layout" -> u32 1; "next_idx" -> u32 next device index
 *   devices  device id -> struct lmdb_device_val { u32 layout, u32 idx, struct ingest_device }
 *   keys     key id (8 bytes) -> device id
 *   tokens   token text -> struct lmdb_token_val
 *   records  idx(u32 BE) stream(u8) seq(u64 BE) -> ts_corrected i64, then the record as
 *            record_pack() made it (transport/record.h, docs/wire-format.md §7)
 *   gaps     idx(u32 BE) stream(u8) first(u64 BE) -> last u64
 *
 * Records are keyed by a 4-byte device index instead of the id string: 13-byte keys keep the
 * B-tree shallow, which is most of the cost of a million puts per second.
 *
 * Invariants:
 *   1. A (device, stream, seq) key is written once: puts use MDB_NOOVERWRITE, so a repeat is
 *      counted as a duplicate and never changes the stored record.
 *   2. A device's counters change in the same transaction as its records, so they always agree.
 *   3. ingest_store_write() returns after mdb_txn_commit(), which fsyncs (the environment is
 *      opened without MDB_NOSYNC/MDB_NOMETASYNC): an acknowledged record survives power loss.
 * Only one write transaction exists at a time (LMDB's rule); the group committer is the only
 * writer on the hot path, operator commands write rarely.
 */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud-ingest/store_impl.h"
#include "common/buf.h"
#include "common/util.h"

#define LMDB_LAYOUT 1u

struct lmdb_store {
    struct ingest_store base;
    MDB_env *env;
    MDB_dbi meta, devices, keys, tokens, records, gaps;
};

struct lmdb_device_val {
    uint32_t layout;
    uint32_t idx;
    struct ingest_device dev;
};

struct lmdb_token_val {
    uint8_t one_time;
    uint8_t used;
    uint8_t pad[6];
    int64_t expires_ns;
};

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

static MDB_val str_val(const char *s) { return (MDB_val){strlen(s), (void *)s}; }

/* Reads a device value inside `txn`. Returns 0, ENOTFOUND or EIO (corrupt value). */
static int dev_read(struct lmdb_store *s, MDB_txn *txn, const char *id, struct lmdb_device_val *out)
{
    MDB_val k = str_val(id), v;
    int rc = mdb_get(txn, s->devices, &k, &v);
    if (rc != 0)
        return map_err(rc);
    if (v.mv_size != sizeof(*out))
        return INGEST_STORE_EIO;
    memcpy(out, v.mv_data, sizeof(*out));
    if (out->layout != LMDB_LAYOUT)
        return INGEST_STORE_EIO;
    return 0;
}

static int dev_write(struct lmdb_store *s, MDB_txn *txn, const struct lmdb_device_val *dv)
{
    MDB_val k = str_val(dv->dev.id), v = {sizeof(*dv), (void *)dv};
    return map_err(mdb_put(txn, s->devices, &k, &v, 0));
}

static void lmdb_close(struct ingest_store *base)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    if (s->env != NULL)
        mdb_env_close(s->env);
    free(s);
}

/* Decodes a stored record value (ts_corrected i64 + packed record). */
static int decode_rec(const MDB_val *v, struct ingest_rec *r)
{
    if (v->mv_size < 8)
        return INGEST_STORE_EIO;
    memcpy(&r->ts_corrected_ns, v->mv_data, 8);
    r->packed = (const uint8_t *)v->mv_data + 8;
    r->packed_len = v->mv_size - 8;
    return 0;
}

static int write_one(struct lmdb_store *s, MDB_txn *txn, struct ingest_write *w)
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
    uint8_t key[13];
    for (size_t i = 0; i < w->n_recs; i++) {
        const struct ingest_rec *r = &w->recs[i];
        size_t size = 8 + r->packed_len;
        rec_key(key, dv.idx, r->stream, r->seq);
        MDB_val k = {13, key}, v = {size, NULL};
        int mrc = mdb_put(txn, s->records, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE);
        if (mrc == MDB_KEYEXIST) {
            w->dup_records++;
            continue;
        }
        if (mrc != 0)
            return map_err(mrc);
        memcpy(v.mv_data, &r->ts_corrected_ns, 8);
        memcpy((uint8_t *)v.mv_data + 8, r->packed, r->packed_len);
        w->new_records++;
        struct ingest_stream_stats *st = &dv.dev.streams[r->stream];
        st->records++;
        if (r->seq > st->max_seq)
            st->max_seq = r->seq;
    }
    for (size_t i = 0; i < w->n_gaps; i++) {
        const struct ingest_gap *g = &w->gaps[i];
        rec_key(key, dv.idx, g->stream, g->first_seq);
        MDB_val k = {13, key}, v = {8, (void *)&g->last_seq};
        int mrc = mdb_put(txn, s->gaps, &k, &v, MDB_NOOVERWRITE);
        if (mrc == MDB_KEYEXIST)
            continue;
        if (mrc != 0)
            return map_err(mrc);
        w->new_gaps++;
        dv.dev.streams[g->stream].gap_ranges++;
        dv.dev.streams[g->stream].gap_records += g->last_seq - g->first_seq + 1;
    }
    if (w->received_ns > dv.dev.last_seen_ns)
        dv.dev.last_seen_ns = w->received_ns;
    dv.dev.clock_offset_ns = w->clock_offset_ns;
    if (w->versions_json != NULL)
        ferry_strlcpy(dv.dev.versions, w->versions_json, sizeof(dv.dev.versions));
    if (w->has_backlog)
        for (int st = 0; st < RECORD_STREAM_COUNT; st++)
            dv.dev.streams[st].backlog = w->backlog[st];
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
    for (size_t i = 0; i < n; i++) {
        if (writes[i]->result != 0)
            continue;
        int wrc = write_one(s, txn, writes[i]);
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
static int add_in_txn(struct lmdb_store *s, MDB_txn *txn, const struct ingest_device *dev, char *err,
                      size_t err_len)
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
        if (v.mv_size != sizeof(dv)) {
            rc = INGEST_STORE_EIO;
            goto out;
        }
        memcpy(&dv, v.mv_data, sizeof(dv));
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
                          int64_t expires_ns)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    struct lmdb_token_val tv;
    memset(&tv, 0, sizeof(tv));
    tv.one_time = one_time;
    tv.expires_ns = expires_ns;
    MDB_val k = str_val(token), v = {sizeof(tv), &tv};
    int mrc = mdb_put(txn, s->tokens, &k, &v, MDB_NOOVERWRITE);
    if (mrc != 0) {
        mdb_txn_abort(txn);
        return mrc == MDB_KEYEXIST ? INGEST_STORE_EEXIST : map_err(mrc);
    }
    return map_err(mdb_txn_commit(txn));
}

static int lmdb_enroll(struct ingest_store *base, const char *token, const struct ingest_device *dev,
                       int64_t now_ns, struct ingest_device *out, char *err, size_t err_len)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    MDB_val tk = str_val(token), tv;
    struct lmdb_token_val tok;
    int mrc = mdb_get(txn, s->tokens, &tk, &tv);
    if (mrc != 0 || tv.mv_size != sizeof(tok)) {
        snprintf(err, err_len, "token: unknown");
        rc = mrc == MDB_NOTFOUND || mrc == 0 ? INGEST_STORE_ETOKEN : map_err(mrc);
        goto fail;
    }
    memcpy(&tok, tv.mv_data, sizeof(tok));
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
    rc = insert_device(s, txn, &nd);
    if (rc != 0)
        goto fail;
    if (tok.one_time) {
        tok.used = 1;
        tv = (MDB_val){sizeof(tok), &tok};
        rc = map_err(mdb_put(txn, s->tokens, &tk, &tv, 0));
        if (rc != 0)
            goto fail;
    }
    rc = map_err(mdb_txn_commit(txn));
    if (rc == 0)
        *out = nd;
    return rc;
fail:
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_export(struct ingest_store *base, const char *device_id, uint8_t stream,
                       uint64_t after_seq, uint64_t limit, ingest_export_cb cb, void *arg)
{
    struct lmdb_store *s = (struct lmdb_store *)base;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    struct lmdb_device_val dv;
    rc = dev_read(s, txn, device_id, &dv);
    if (rc != 0)
        goto out;
    rc = map_err(mdb_cursor_open(txn, s->records, &cur));
    if (rc != 0)
        goto out;
    if (after_seq == UINT64_MAX)
        goto out;
    uint8_t key[13];
    rec_key(key, dv.idx, stream, after_seq + 1);
    MDB_val k = {13, key}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    uint64_t n = 0;
    struct ferry_buf scratch = FERRY_BUF_INIT;
    while (mrc == 0 && n < limit) {
        const uint8_t *kp = k.mv_data;
        if (k.mv_size != 13 || memcmp(kp, key, 5) != 0)
            break;
        struct ingest_rec r;
        struct ingest_row row;
        memset(&r, 0, sizeof(r));
        r.stream = stream;
        r.seq = get_be64(kp + 5);
        rc = decode_rec(&v, &r);
        if (rc == 0)
            rc = ingest_rec_render(&r, &row, &scratch);
        if (rc != 0 || cb(&row, arg) != 0)
            break;
        n++;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    ferry_buf_free(&scratch);
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        rc = map_err(mrc);
out:
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

static const struct ingest_store_ops lmdb_ops = {
    .close = lmdb_close,
    .write = lmdb_write,
    .device_add = lmdb_device_add,
    .device_get = lmdb_device_get,
    .device_by_key = lmdb_device_by_key,
    .device_revoke = lmdb_device_revoke,
    .device_list = lmdb_device_list,
    .token_add = lmdb_token_add,
    .enroll = lmdb_enroll,
    .export_records = lmdb_export,
    .gap_count = lmdb_gap_count,
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
    if ((rc = mdb_env_create(&s->env)) != 0 ||
        (rc = mdb_env_set_maxdbs(s->env, 8)) != 0 ||
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
    } dbs[] = {{"meta", &s->meta},     {"devices", &s->devices}, {"keys", &s->keys},
               {"tokens", &s->tokens}, {"records", &s->records}, {"gaps", &s->gaps}};
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
