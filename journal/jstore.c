/*
 * jstore.c - the journal's work inside one LMDB transaction.
 *
 * Everything here runs inside a transaction the caller began and will commit or abort; nothing
 * here takes a lock. The caller holds write_mu for write transactions, so `struct jcounters`
 * changes happen in the same transaction as the records they count and are stored by the caller
 * with j_counters_store() before it commits (docs/journal.md, "Counters").
 *
 * Invariants:
 *   1. Ack ranges of one stream never overlap and are never adjacent (j_ack_add merges).
 *   2. An ack range is deleted once no stored record lies inside it, so the acks table stays as
 *      small as the number of holes the cloud left, usually empty or one range.
 *   3. counters.acked_records[s] == number of stored records of s inside ack ranges.
 *   4. Gap entries describe only sequences that were assigned and will never be readable.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "journal/journal_int.h"

int j_lmdb_err(int rc)
{
    switch (rc) {
    case 0: return 0;
    case MDB_NOTFOUND: return JOURNAL_ENOTFOUND;
    case MDB_MAP_FULL: return JOURNAL_EFULL;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_BAD_TXN: return JOURNAL_ECORRUPT;
    case MDB_VERSION_MISMATCH: return JOURNAL_EVERSION;
    case ENOMEM: return JOURNAL_ENOMEM;
    case EACCES:
    case EIO:
    case ENOSPC:
    case EROFS: return JOURNAL_EIO;
    default: return JOURNAL_ELMDB;
    }
}

/* ---- counters ---------------------------------------------------------------------------- */

static void counters_to_array(const struct jcounters *c, uint64_t a[J_COUNTERS_U64])
{
    size_t k = 0;
    for (int s = 0; s < J_STREAMS; s++) {
        a[k++] = c->next_seq[s];
        a[k++] = c->bytes[s];
        a[k++] = c->acked_records[s];
        a[k++] = c->acked_bytes[s];
        a[k++] = c->evicted[s];
        a[k++] = c->evicted_acked[s];
    }
    a[k++] = c->evictions;
    a[k++] = c->gap_next_id;
}

static void counters_from_array(struct jcounters *c, const uint64_t a[J_COUNTERS_U64])
{
    size_t k = 0;
    for (int s = 0; s < J_STREAMS; s++) {
        c->next_seq[s] = a[k++];
        c->bytes[s] = a[k++];
        c->acked_records[s] = a[k++];
        c->acked_bytes[s] = a[k++];
        c->evicted[s] = a[k++];
        c->evicted_acked[s] = a[k++];
    }
    c->evictions = a[k++];
    c->gap_next_id = a[k++];
}

int j_counters_load(struct journal *j, MDB_txn *txn, struct jcounters *out)
{
    MDB_val k = {sizeof("counters") - 1, (void *)"counters"}, v;
    int rc = mdb_get(txn, j->dbi_meta, &k, &v);
    if (rc)
        return rc == MDB_NOTFOUND ? JOURNAL_ECORRUPT : j_lmdb_err(rc);
    if (v.mv_size != J_COUNTERS_U64 * 8)
        return JOURNAL_ECORRUPT;
    uint64_t a[J_COUNTERS_U64];
    for (size_t i = 0; i < J_COUNTERS_U64; i++)
        a[i] = j_get_le64((const uint8_t *)v.mv_data + 8 * i);
    counters_from_array(out, a);
    for (int s = 0; s < J_STREAMS; s++) {
        if (out->next_seq[s] == 0)
            return JOURNAL_ECORRUPT;
    }
    return 0;
}

int j_counters_store(struct journal *j, MDB_txn *txn, const struct jcounters *c)
{
    uint64_t a[J_COUNTERS_U64];
    uint8_t buf[J_COUNTERS_U64 * 8];
    counters_to_array(c, a);
    for (size_t i = 0; i < J_COUNTERS_U64; i++)
        j_le64(buf + 8 * i, a[i]);
    MDB_val k = {sizeof("counters") - 1, (void *)"counters"}, v = {sizeof(buf), buf};
    return j_lmdb_err(mdb_put(txn, j->dbi_meta, &k, &v, 0));
}

/* ---- quota accounting -------------------------------------------------------------------- */

int j_used_bytes(struct journal *j, MDB_txn *txn, uint64_t *out)
{
    MDB_dbi dbis[] = {0 /* FREE_DBI: the freelist's own pages */,
                      1 /* MAIN_DBI */,
                      j->dbi_stream[0],
                      j->dbi_stream[1],
                      j->dbi_stream[2],
                      j->dbi_meta,
                      j->dbi_acks,
                      j->dbi_gaps,
                      j->dbi_state};
    uint64_t pages = 2; /* the two meta pages */
    for (size_t i = 0; i < sizeof(dbis) / sizeof(dbis[0]); i++) {
        MDB_stat st;
        int rc = mdb_stat(txn, dbis[i], &st);
        if (rc)
            return j_lmdb_err(rc);
        pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    }
    *out = pages * j->psize;
    return 0;
}

/* ---- ack ranges -------------------------------------------------------------------------- */

static void ack_key(uint8_t key[9], int stream, uint64_t first)
{
    key[0] = (uint8_t)stream;
    j_be64(key + 1, first);
}

static int ack_decode(const MDB_val *k, const MDB_val *v, int stream, bool *ours, uint64_t *first,
                      uint64_t *last)
{
    if (k->mv_size != 9 || v->mv_size != 8)
        return JOURNAL_ECORRUPT;
    const uint8_t *kb = k->mv_data;
    *ours = kb[0] == stream;
    *first = j_get_be64(kb + 1);
    *last = j_get_le64(v->mv_data);
    return 0;
}

int j_ack_find_ge(struct journal *j, MDB_txn *txn, int stream, uint64_t seq, bool *found,
                  uint64_t *first, uint64_t *last)
{
    MDB_cursor *c;
    uint8_t key[9];
    bool ours = false;
    int rc = mdb_cursor_open(txn, j->dbi_acks, &c);
    if (rc)
        return j_lmdb_err(rc);
    *found = false;
    ack_key(key, stream, seq);
    MDB_val k = {9, key}, v;
    /* The range containing seq starts at or before it: look at the one before SET_RANGE. */
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (rc == 0 || rc == MDB_NOTFOUND) {
        int prc =
            rc == 0 ? mdb_cursor_get(c, &k, &v, MDB_PREV) : mdb_cursor_get(c, &k, &v, MDB_LAST);
        if (prc == 0) {
            rc = ack_decode(&k, &v, stream, &ours, first, last);
            if (rc)
                goto out;
            if (ours && *last >= seq) {
                *found = true;
                goto out;
            }
        } else if (prc != MDB_NOTFOUND) {
            rc = j_lmdb_err(prc);
            goto out;
        }
        k.mv_size = 9;
        k.mv_data = key;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            goto out;
        }
        if (rc) {
            rc = j_lmdb_err(rc);
            goto out;
        }
        rc = ack_decode(&k, &v, stream, &ours, first, last);
        if (rc == 0 && ours)
            *found = true;
        goto out;
    }
    rc = j_lmdb_err(rc);
out:
    mdb_cursor_close(c);
    return rc;
}

int j_ack_find_le(struct journal *j, MDB_txn *txn, int stream, uint64_t seq, bool *found,
                  uint64_t *first, uint64_t *last)
{
    MDB_cursor *c;
    uint8_t key[9];
    bool ours = false;
    int rc = mdb_cursor_open(txn, j->dbi_acks, &c);
    if (rc)
        return j_lmdb_err(rc);
    *found = false;
    if (seq == UINT64_MAX) {
        key[0] = (uint8_t)(stream + 1);
        memset(key + 1, 0, 8);
    } else {
        ack_key(key, stream, seq + 1);
    }
    MDB_val k = {9, key}, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    int prc = rc == 0 ? mdb_cursor_get(c, &k, &v, MDB_PREV)
                      : (rc == MDB_NOTFOUND ? mdb_cursor_get(c, &k, &v, MDB_LAST) : rc);
    if (prc == MDB_NOTFOUND) {
        rc = 0;
    } else if (prc) {
        rc = j_lmdb_err(prc);
    } else {
        rc = ack_decode(&k, &v, stream, &ours, first, last);
        if (rc == 0 && ours)
            *found = true;
    }
    mdb_cursor_close(c);
    return rc;
}

/* Counts stored records of `stream` in [first,last] (and their payload bytes). */
static int count_stored(struct journal *j, MDB_txn *txn, int stream, uint64_t first, uint64_t last,
                        uint64_t *records, uint64_t *bytes)
{
    MDB_cursor *c;
    uint8_t key[8];
    int rc = mdb_cursor_open(txn, j->dbi_stream[stream], &c);
    if (rc)
        return j_lmdb_err(rc);
    j_be64(key, first);
    MDB_val k = {8, key}, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
        if (k.mv_size != 8 || v.mv_size < J_VALUE_HDR) {
            rc = JOURNAL_ECORRUPT;
            goto out;
        }
        if (j_get_be64(k.mv_data) > last)
            break;
        *records += 1;
        *bytes += v.mv_size - J_VALUE_HDR;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    rc = (rc == 0 || rc == MDB_NOTFOUND) ? 0 : j_lmdb_err(rc);
out:
    mdb_cursor_close(c);
    return rc;
}

static int ack_put(struct journal *j, MDB_txn *txn, int stream, uint64_t first, uint64_t last)
{
    uint8_t key[9], val[8];
    ack_key(key, stream, first);
    j_le64(val, last);
    MDB_val k = {9, key}, v = {8, val};
    return j_lmdb_err(mdb_put(txn, j->dbi_acks, &k, &v, 0));
}

static int ack_del(struct journal *j, MDB_txn *txn, int stream, uint64_t first)
{
    uint8_t key[9];
    ack_key(key, stream, first);
    MDB_val k = {9, key};
    int rc = mdb_del(txn, j->dbi_acks, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : j_lmdb_err(rc);
}

int j_ack_add(struct journal *j, MDB_txn *txn, struct jcounters *c, int stream, uint64_t first,
              uint64_t last)
{
    /* Walk the existing ranges that overlap or touch [first-1, last+1]: the parts of
     * [first,last] between them are newly acknowledged; count their stored records. */
    uint64_t merged_first = first, merged_last = last;
    uint64_t pos = first; /* next sequence of [first,last] not yet classified */
    uint64_t probe = first > 1 ? first - 1 : first;
    for (;;) {
        bool found;
        uint64_t rf, rl;
        int rc = j_ack_find_ge(j, txn, stream, probe, &found, &rf, &rl);
        if (rc)
            return rc;
        if (!found || (last != UINT64_MAX && rf > last + 1))
            break;
        if (rf < merged_first)
            merged_first = rf;
        if (rl > merged_last)
            merged_last = rl;
        if (rf > pos) {
            uint64_t new_last = rf - 1 < last ? rf - 1 : last;
            rc = count_stored(j, txn, stream, pos, new_last, &c->acked_records[stream],
                              &c->acked_bytes[stream]);
            if (rc)
                return rc;
        }
        if (rl >= pos)
            pos = rl == UINT64_MAX ? UINT64_MAX : rl + 1;
        rc = ack_del(j, txn, stream, rf);
        if (rc)
            return rc;
        if (rl >= last || rl == UINT64_MAX)
            break;
        probe = rl + 1;
    }
    if (pos <= last) {
        int rc = count_stored(j, txn, stream, pos, last, &c->acked_records[stream],
                              &c->acked_bytes[stream]);
        if (rc)
            return rc;
    }
    return ack_put(j, txn, stream, merged_first, merged_last);
}

int64_t j_keep_newer_than(const struct journal *j, int stream)
{
    if (stream != RECORD_METRIC || j->cfg.keep_acked_metrics_ms <= 0)
        return INT64_MAX;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return INT64_MAX;
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    return now - j->cfg.keep_acked_metrics_ms * 1000000;
}

int j_gc_stream(struct journal *j, MDB_txn *txn, struct jcounters *c, int stream, size_t limit,
                int64_t keep_newer_than_ns, size_t *deleted, bool *more)
{
    MDB_cursor *rc_cur = NULL;
    int rc = mdb_cursor_open(txn, j->dbi_stream[stream], &rc_cur);
    if (rc)
        return j_lmdb_err(rc);
    *more = false;
    uint64_t probe = 1;
    for (;;) {
        bool found;
        uint64_t rf, rl;
        rc = j_ack_find_ge(j, txn, stream, probe, &found, &rf, &rl);
        if (rc || !found)
            goto out;
        uint8_t key[8];
        j_be64(key, rf);
        MDB_val k = {8, key}, v;
        int grc = mdb_cursor_get(rc_cur, &k, &v, MDB_SET_RANGE);
        bool exhausted = false;
        while (grc == 0) {
            if (k.mv_size != 8 || v.mv_size < J_VALUE_HDR) {
                rc = JOURNAL_ECORRUPT;
                goto out;
            }
            if (j_get_be64(k.mv_data) > rl) {
                exhausted = true;
                break;
            }
            if (*deleted >= limit) {
                *more = true;
                goto out;
            }
            /* retention (keep_acked_metrics_ms): stop at the first record young enough to keep;
             * the rest of the stream waits for a later call (not "more": nothing to do now) */
            if (keep_newer_than_ns != INT64_MAX &&
                (int64_t)j_get_le64(v.mv_data) > keep_newer_than_ns)
                goto out;
            size_t plen = v.mv_size - J_VALUE_HDR;
            grc = mdb_cursor_del(rc_cur, 0);
            if (grc)
                break;
            c->acked_records[stream]--;
            c->acked_bytes[stream] -= plen;
            c->bytes[stream] -= plen;
            (*deleted)++;
            grc = mdb_cursor_get(rc_cur, &k, &v, MDB_NEXT);
        }
        if (grc == MDB_NOTFOUND)
            exhausted = true;
        else if (grc && !exhausted) {
            rc = j_lmdb_err(grc);
            goto out;
        }
        if (exhausted) {
            rc = ack_del(j, txn, stream, rf);
            if (rc)
                goto out;
        }
        if (rl == UINT64_MAX)
            goto out;
        probe = rl + 1;
    }
out:
    mdb_cursor_close(rc_cur);
    return rc;
}

/* ---- gaps -------------------------------------------------------------------------------- */

#define GAP_VALUE_SIZE 26

int j_gap_add(struct journal *j, MDB_txn *txn, struct jcounters *c, int stream, uint64_t first,
              uint64_t last, enum journal_gap_reason reason)
{
    uint8_t key[8], val[GAP_VALUE_SIZE];
    int64_t now = 0;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
        now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, j->dbi_gaps, &cur);
    if (rc)
        return j_lmdb_err(rc);
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == 8 && v.mv_size == GAP_VALUE_SIZE &&
        j_get_be64(k.mv_data) > j->gaps_handed_max_id) {
        /* Widen the newest gap when this range continues it, so a long outage is one entry,
         * but only while no journal_gaps() call has handed it out: an entry in a batch in
         * flight is deleted by id when that batch is acknowledged, which would drop the
         * widening unreported (found by chaos.simulators.disk_quota_seed108). */
        const uint8_t *o = v.mv_data;
        if (o[0] == stream && o[1] == reason && j_get_le64(o + 10) + 1 == first) {
            memcpy(val, o, GAP_VALUE_SIZE);
            j_le64(val + 10, last);
            j_le64(val + 18, (uint64_t)now);
            memcpy(key, k.mv_data, 8);
            MDB_val nk = {8, key}, nv = {GAP_VALUE_SIZE, val};
            rc = j_lmdb_err(mdb_put(txn, j->dbi_gaps, &nk, &nv, 0));
            mdb_cursor_close(cur);
            return rc;
        }
    } else if (rc && rc != MDB_NOTFOUND) {
        mdb_cursor_close(cur);
        return j_lmdb_err(rc);
    }
    mdb_cursor_close(cur);
    if (c->gap_next_id == 0)
        c->gap_next_id = 1;
    j_be64(key, c->gap_next_id++);
    val[0] = (uint8_t)stream;
    val[1] = (uint8_t)reason;
    j_le64(val + 2, first);
    j_le64(val + 10, last);
    j_le64(val + 18, (uint64_t)now);
    MDB_val nk = {8, key}, nv = {GAP_VALUE_SIZE, val};
    return j_lmdb_err(mdb_put(txn, j->dbi_gaps, &nk, &nv, MDB_APPEND));
}

/* ---- eviction ---------------------------------------------------------------------------- */

/* Deletes up to `limit` of the oldest records of `stream` (acknowledged or not), recording
 * the unsent ones as quota gaps. */
static int evict_oldest(struct journal *j, MDB_txn *txn, struct jcounters *c, int stream,
                        size_t limit, size_t *evicted)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, j->dbi_stream[stream], &cur);
    if (rc)
        return j_lmdb_err(rc);
    bool have_range = false, range_found = false, in_ack = false;
    uint64_t rf = 0, rl = 0, gap_first = 0, gap_last = 0;
    bool gap_open = false;
    MDB_val k, v;
    int grc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (grc == 0 && *evicted < limit) {
        if (k.mv_size != 8 || v.mv_size < J_VALUE_HDR) {
            rc = JOURNAL_ECORRUPT;
            goto out;
        }
        uint64_t seq = j_get_be64(k.mv_data);
        if (!have_range || (range_found && seq > rl)) {
            rc = j_ack_find_ge(j, txn, stream, seq, &range_found, &rf, &rl);
            if (rc)
                goto out;
            have_range = true;
        }
        in_ack = range_found && rf <= seq && seq <= rl;
        size_t plen = v.mv_size - J_VALUE_HDR;
        grc = mdb_cursor_del(cur, 0);
        if (grc)
            break;
        c->bytes[stream] -= plen;
        if (in_ack) {
            c->acked_records[stream]--;
            c->acked_bytes[stream] -= plen;
            c->evicted_acked[stream]++;
        } else {
            c->evicted[stream]++;
            if (gap_open && gap_last + 1 == seq) {
                gap_last = seq;
            } else {
                if (gap_open) {
                    rc = j_gap_add(j, txn, c, stream, gap_first, gap_last, JOURNAL_GAP_QUOTA);
                    if (rc)
                        goto out;
                }
                gap_open = true;
                gap_first = gap_last = seq;
            }
        }
        (*evicted)++;
        grc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (grc && grc != MDB_NOTFOUND) {
        rc = j_lmdb_err(grc);
        goto out;
    }
    if (gap_open)
        rc = j_gap_add(j, txn, c, stream, gap_first, gap_last, JOURNAL_GAP_QUOTA);
out:
    mdb_cursor_close(cur);
    return rc;
}

/* Drops ack ranges of `stream` that no longer hold a stored record (invariant 2) after
 * evict_oldest removed records from the front. */
static int prune_front_ranges(struct journal *j, MDB_txn *txn, int stream)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, j->dbi_stream[stream], &cur);
    if (rc)
        return j_lmdb_err(rc);
    MDB_val k, v;
    uint64_t oldest = UINT64_MAX;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    mdb_cursor_close(cur);
    if (rc == 0 && k.mv_size == 8)
        oldest = j_get_be64(k.mv_data);
    else if (rc && rc != MDB_NOTFOUND)
        return j_lmdb_err(rc);
    for (;;) {
        bool found;
        uint64_t rf, rl;
        rc = j_ack_find_ge(j, txn, stream, 1, &found, &rf, &rl);
        if (rc || !found || (oldest != UINT64_MAX && rl >= oldest))
            return rc;
        rc = ack_del(j, txn, stream, rf);
        if (rc)
            return rc;
    }
}

#define EVICT_CHUNK 256

int j_evict(struct journal *j, MDB_txn *txn, struct jcounters *c, uint64_t target, bool *reached)
{
    uint64_t used;
    int rc = j_used_bytes(j, txn, &used);
    if (rc)
        return rc;
    *reached = used <= target;
    /* 1. acknowledged records of every stream, least important stream first */
    for (int s = J_STREAMS - 1; s >= 0 && !*reached; s--) {
        bool more = true;
        while (more && !*reached) {
            size_t deleted = 0;
            rc = j_gc_stream(j, txn, c, s, EVICT_CHUNK, INT64_MAX, &deleted, &more);
            if (rc)
                return rc;
            if (deleted == 0)
                break;
            c->evicted_acked[s] += deleted;
            rc = j_used_bytes(j, txn, &used);
            if (rc)
                return rc;
            *reached = used <= target;
        }
    }
    /* 2. the oldest unsent log records, 3. the oldest unsent metric records; never events */
    bool counted_pass = false;
    for (int s = RECORD_LOG; s >= RECORD_METRIC && !*reached; s--) {
        for (;;) {
            size_t evicted = 0;
            rc = evict_oldest(j, txn, c, s, EVICT_CHUNK, &evicted);
            if (rc)
                return rc;
            if (evicted == 0)
                break;
            if (!counted_pass) {
                c->evictions++;
                counted_pass = true;
            }
            rc = j_used_bytes(j, txn, &used);
            if (rc)
                return rc;
            *reached = used <= target;
            if (*reached)
                break;
        }
        rc = prune_front_ranges(j, txn, s);
        if (rc)
            return rc;
    }
    return 0;
}

int j_oldest_unsent(struct journal *j, MDB_txn *txn, int stream, bool *found, uint64_t *seq,
                    int64_t *ts_ns)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, j->dbi_stream[stream], &cur);
    if (rc)
        return j_lmdb_err(rc);
    *found = false;
    uint8_t key[8];
    uint64_t probe = 1;
    for (;;) {
        j_be64(key, probe);
        MDB_val k = {8, key}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        if (rc) {
            rc = j_lmdb_err(rc);
            break;
        }
        if (k.mv_size != 8 || v.mv_size < J_VALUE_HDR) {
            rc = JOURNAL_ECORRUPT;
            break;
        }
        uint64_t s = j_get_be64(k.mv_data);
        bool in;
        uint64_t rf, rl;
        rc = j_ack_find_ge(j, txn, stream, s, &in, &rf, &rl);
        if (rc)
            break;
        if (in && rf <= s) {
            if (rl == UINT64_MAX)
                break;
            probe = rl + 1;
            continue;
        }
        *found = true;
        *seq = s;
        *ts_ns = (int64_t)j_get_le64(v.mv_data);
        break;
    }
    mdb_cursor_close(cur);
    return rc;
}
