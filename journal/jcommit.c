/*
 * jcommit.c - the append queue and the committer thread: group commit.
 *
 * Producers copy their record into the `fill` arena under q_mu (one memcpy, no allocation once
 * the arena has grown), get their sequence numbers there and then, and either return or wait on
 * done_cv for the commit. The committer swaps `fill` with the empty `spare` arena, releases the
 * queue lock, and writes the whole arena in ONE write transaction with MDB_APPEND cursors (the
 * sequences of a stream are increasing, so every put goes to the rightmost leaf). Records queued
 * while that transaction commits and syncs form the next group: the slower the sync, the bigger
 * the group, which is why the synced mode reaches high rates with many producers.
 *
 * Invariants:
 *   1. Sequences of a stream are assigned in queue order under q_mu and written in that order,
 *      so MDB_APPEND never sees a smaller key (a KEYEXIST from it means a broken file).
 *   2. A unit (one append call: records, or an event plus its state changes) is copied into one
 *      arena as a whole, so it commits in one transaction (atomicity of event + state).
 *   3. done_seq[s] only grows; a waiter is released only after its transaction committed (and,
 *      for flush entries, after mdb_env_sync returned).
 *   4. Before a transaction takes a stream past its reserved sequence (journal.hwm), the
 *      reservation file is rewritten and synced, so a recreated journal never reuses a
 *      committed sequence.
 *
 * States of the committer: idle (waiting on commit_cv) -> gathering (group window) ->
 * committing (commit_arena) -> resolving (waiters released) -> idle; `stopping` drains the
 * queue and exits (j_committer_stop).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "journal/journal_int.h"

/* A journal that committed nothing for this long is idle: its next commit starts at once,
 * without the group window (see committer_main). */
#define J_IDLE_MS 1000

#define ENT_LAST_IN_UNIT 0x1u
#define ENT_FAILED 0x2u

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static size_t entry_size(size_t klen, size_t vlen)
{
    return sizeof(struct jqent) + align8(klen + vlen);
}

/* ---- journal.hwm ------------------------------------------------------------------------- */

int j_hwm_write(struct journal *j, const uint64_t reserved[J_STREAMS],
                const uint64_t oldest_unsent[J_STREAMS])
{
    char text[256];
    int n = snprintf(text, sizeof(text),
                     "ferry-journal-hwm 1\n%" PRIu64 " %" PRIu64 "\n%" PRIu64 " %" PRIu64
                     "\n%" PRIu64 " %" PRIu64 "\n",
                     reserved[0], oldest_unsent[0], reserved[1], oldest_unsent[1], reserved[2],
                     oldest_unsent[2]);
    if (n < 0 || (size_t)n >= sizeof(text))
        return JOURNAL_EIO;
    return ferry_write_file_atomic(j->hwm_path, text, (size_t)n, 0600) ? JOURNAL_EIO : 0;
}

int j_hwm_read(const char *path, uint64_t reserved[J_STREAMS], uint64_t oldest[J_STREAMS])
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = ferry_read_file(path, 4096, &data, &len);
    if (rc)
        return rc == -ENOENT ? JOURNAL_ENOTFOUND : JOURNAL_EIO;
    char *save = NULL;
    char *line = strtok_r((char *)data, "\n", &save);
    rc = JOURNAL_ECORRUPT;
    if (!line || strcmp(line, "ferry-journal-hwm 1") != 0)
        goto out;
    for (int s = 0; s < J_STREAMS; s++) {
        line = strtok_r(NULL, "\n", &save);
        if (!line)
            goto out;
        char *sp = strchr(line, ' ');
        if (!sp)
            goto out;
        *sp = '\0';
        if (ferry_parse_u64(line, UINT64_MAX, &reserved[s]) ||
            ferry_parse_u64(sp + 1, UINT64_MAX, &oldest[s]))
            goto out;
    }
    rc = 0;
out:
    free(data);
    return rc;
}

/* ---- producers --------------------------------------------------------------------------- */

struct jq_item {
    uint8_t kind;
    uint8_t stream;
    const void *key;
    size_t klen;
    int64_t ts_ns;
    const void *val;
    size_t vlen; /* payload length (records: without the ts header) */
    uint64_t *seq_out;
};

static int arena_reserve(struct jarena *a, size_t extra)
{
    if (a->len + extra <= a->cap)
        return 0;
    size_t cap = a->cap ? a->cap : 64 * 1024;
    while (cap < a->len + extra) {
        if (cap > SIZE_MAX / 2)
            return JOURNAL_ENOMEM;
        cap *= 2;
    }
    uint8_t *p = realloc(a->data, cap);
    if (!p)
        return JOURNAL_ENOMEM;
    a->data = p;
    a->cap = cap;
    return 0;
}

static void commit_one(struct journal *j);

/* Under q_mu: waits for the waiter's commit, leading one whenever none is running. */
static int wait_done(struct journal *j, struct jwaiter *w)
{
    while (!w->done) {
        if (!j->committing && j->fill.len > 0)
            commit_one(j);
        else
            pthread_cond_wait(&j->done_cv, &j->q_mu);
    }
    return w->err;
}

static int enqueue(struct journal *j, struct jq_item *items, size_t n, unsigned flags)
{
    if (j->cfg.read_only)
        return JOURNAL_ERDONLY;
    size_t total = 0;
    bool nonevent = false;
    for (size_t i = 0; i < n; i++) {
        if (items[i].kind == JQ_RECORD) {
            if (items[i].stream >= J_STREAMS)
                return JOURNAL_EINVAL;
            if (items[i].vlen == 0 || (items[i].vlen && !items[i].val))
                return JOURNAL_EINVAL;
            if (items[i].vlen > j->cfg.max_record_bytes)
                return JOURNAL_ETOOBIG;
            if (items[i].stream != RECORD_EVENT)
                nonevent = true;
            total += entry_size(0, items[i].vlen + J_VALUE_HDR);
        } else if (items[i].kind == JQ_STATE_PUT || items[i].kind == JQ_STATE_DEL) {
            if (items[i].klen == 0 || items[i].klen > JOURNAL_STATE_KEY_MAX || !items[i].key)
                return JOURNAL_EINVAL;
            if (items[i].vlen > j->cfg.max_record_bytes)
                return JOURNAL_ETOOBIG;
            if (items[i].vlen && !items[i].val)
                return JOURNAL_EINVAL;
            total += entry_size(items[i].klen, items[i].vlen);
        } else {
            total += entry_size(0, 0);
        }
    }
    if (nonevent && atomic_load(&j->refuse_nonevent))
        return JOURNAL_EFULL;

    struct jwaiter waiter = {0, 0};
    int rc = 0;
    pthread_mutex_lock(&j->q_mu);
    for (;;) {
        if (j->stopping || !j->committer_running) {
            rc = JOURNAL_ECLOSED;
            goto out;
        }
        /* An empty arena always accepts one unit, however large, so no unit waits forever. */
        if (j->fill.len == 0 || j->fill.len + total <= j->cfg.queue_max_bytes)
            break;
        if (flags & JOURNAL_APPEND_NONBLOCK) {
            rc = JOURNAL_EAGAIN;
            goto out;
        }
        if (!j->committing)
            commit_one(j); /* lead: the queue is full and nobody is committing it */
        else
            pthread_cond_wait(&j->space_cv, &j->q_mu);
    }
    rc = arena_reserve(&j->fill, total);
    if (rc)
        goto out;
    bool was_empty = j->fill.len == 0;
    for (size_t i = 0; i < n; i++) {
        struct jq_item *it = &items[i];
        size_t vlen = it->kind == JQ_RECORD ? it->vlen + J_VALUE_HDR : it->vlen;
        struct jqent *e = (struct jqent *)(j->fill.data + j->fill.len);
        memset(e, 0, sizeof(*e));
        e->kind = it->kind;
        e->stream = it->stream;
        e->klen = (uint32_t)it->klen;
        e->vlen = (uint32_t)vlen;
        uint8_t *p = (uint8_t *)(e + 1);
        if (it->klen)
            memcpy(p, it->key, it->klen);
        p += it->klen;
        if (it->kind == JQ_RECORD) {
            e->seq = j->q_next_seq[it->stream]++;
            if (it->seq_out)
                *it->seq_out = e->seq;
            j_le64(p, (uint64_t)it->ts_ns);
            memcpy(p + J_VALUE_HDR, it->val, it->vlen);
            j->fill.records++;
        } else if (it->vlen) {
            memcpy(p, it->val, it->vlen);
        }
        if (i == n - 1) {
            e->pad = ENT_LAST_IN_UNIT;
            if (flags & JOURNAL_APPEND_WAIT)
                e->waiter = &waiter;
        }
        j->fill.len += entry_size(it->klen, vlen);
    }
    if (!(flags & JOURNAL_APPEND_WAIT) && (was_empty || j->fill.len >= j->cfg.group_max_bytes))
        pthread_cond_signal(&j->commit_cv);
    if (flags & JOURNAL_APPEND_WAIT)
        rc = wait_done(j, &waiter);
out:
    pthread_mutex_unlock(&j->q_mu);
    return rc;
}

int journal_append(struct journal *j, enum record_stream stream, int64_t ts_ns, const void *payload,
                   size_t len, unsigned flags, uint64_t *out_seq)
{
    if (!j || (unsigned)stream >= J_STREAMS)
        return JOURNAL_EINVAL;
    struct jq_item it = {JQ_RECORD, (uint8_t)stream, NULL, 0, ts_ns, payload, len, out_seq};
    return enqueue(j, &it, 1, flags);
}

#define APPENDV_STACK 64

int journal_appendv(struct journal *j, struct journal_append_req *reqs, size_t n, unsigned flags)
{
    if (!j || !reqs || n == 0)
        return JOURNAL_EINVAL;
    struct jq_item stack_items[APPENDV_STACK];
    struct jq_item *items = stack_items;
    if (n > APPENDV_STACK) {
        if (n > SIZE_MAX / sizeof(*items))
            return JOURNAL_ENOMEM;
        items = malloc(n * sizeof(*items));
        if (!items)
            return JOURNAL_ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned)reqs[i].stream >= J_STREAMS) {
            rc = JOURNAL_EINVAL;
            goto out;
        }
        items[i] =
            (struct jq_item){JQ_RECORD,     (uint8_t)reqs[i].stream, NULL,        0,
                             reqs[i].ts_ns, reqs[i].payload,         reqs[i].len, &reqs[i].seq};
    }
    rc = enqueue(j, items, n, flags);
out:
    if (items != stack_items)
        free(items);
    return rc;
}

int journal_append_event_with_state(struct journal *j, int64_t ts_ns, const void *payload,
                                    size_t len, const struct journal_state_op *ops, size_t n_ops,
                                    unsigned flags, uint64_t *out_seq)
{
    if (!j || (n_ops && !ops) || n_ops > 1024)
        return JOURNAL_EINVAL;
    struct jq_item stack_items[17];
    struct jq_item *items = stack_items;
    if (n_ops + 1 > sizeof(stack_items) / sizeof(stack_items[0])) {
        items = malloc((n_ops + 1) * sizeof(*items));
        if (!items)
            return JOURNAL_ENOMEM;
    }
    for (size_t i = 0; i < n_ops; i++) {
        items[i] = (struct jq_item){ops[i].del ? JQ_STATE_DEL : JQ_STATE_PUT,
                                    0,
                                    ops[i].key,
                                    ops[i].key_len,
                                    0,
                                    ops[i].del ? NULL : ops[i].value,
                                    ops[i].del ? 0 : ops[i].value_len,
                                    NULL};
    }
    items[n_ops] = (struct jq_item){JQ_RECORD, RECORD_EVENT, NULL, 0, ts_ns, payload, len, out_seq};
    int rc = enqueue(j, items, n_ops + 1, flags);
    if (items != stack_items)
        free(items);
    return rc;
}

int journal_appendv_state(struct journal *j, struct journal_append_req *reqs, size_t n,
                          const struct journal_state_op *ops, size_t n_ops, unsigned flags)
{
    if (!j || (n && !reqs) || (n_ops && !ops) || n_ops > 1024 || n + n_ops == 0)
        return JOURNAL_EINVAL;
    if (n + n_ops > SIZE_MAX / sizeof(struct jq_item))
        return JOURNAL_ENOMEM;
    struct jq_item *items = malloc((n + n_ops) * sizeof(*items));
    if (!items)
        return JOURNAL_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n_ops; i++)
        items[i] = (struct jq_item){ops[i].del ? JQ_STATE_DEL : JQ_STATE_PUT,
                                    0,
                                    ops[i].key,
                                    ops[i].key_len,
                                    0,
                                    ops[i].del ? NULL : ops[i].value,
                                    ops[i].del ? 0 : ops[i].value_len,
                                    NULL};
    for (size_t i = 0; i < n; i++) {
        if ((unsigned)reqs[i].stream >= J_STREAMS) {
            rc = JOURNAL_EINVAL;
            goto out;
        }
        items[n_ops + i] =
            (struct jq_item){JQ_RECORD,     (uint8_t)reqs[i].stream, NULL,        0,
                             reqs[i].ts_ns, reqs[i].payload,         reqs[i].len, &reqs[i].seq};
    }
    rc = enqueue(j, items, n + n_ops, flags);
out:
    free(items);
    return rc;
}

int journal_state_put(struct journal *j, const char *key, size_t key_len, const void *value,
                      size_t value_len)
{
    if (!j)
        return JOURNAL_EINVAL;
    struct jq_item it = {JQ_STATE_PUT, 0, key, key_len, 0, value, value_len, NULL};
    return enqueue(j, &it, 1, JOURNAL_APPEND_WAIT);
}

int journal_state_delete(struct journal *j, const char *key, size_t key_len)
{
    if (!j)
        return JOURNAL_EINVAL;
    struct jq_item it = {JQ_STATE_DEL, 0, key, key_len, 0, NULL, 0, NULL};
    return enqueue(j, &it, 1, JOURNAL_APPEND_WAIT);
}

int journal_flush(struct journal *j)
{
    if (!j)
        return JOURNAL_EINVAL;
    if (j->cfg.read_only)
        return JOURNAL_ERDONLY;
    struct jq_item it = {JQ_FLUSH, 0, NULL, 0, 0, NULL, 0, NULL};
    return enqueue(j, &it, 1, JOURNAL_APPEND_WAIT);
}

uint64_t journal_last_assigned(struct journal *j, enum record_stream stream)
{
    if (!j || (unsigned)stream >= J_STREAMS)
        return 0;
    pthread_mutex_lock(&j->q_mu);
    uint64_t next = j->q_next_seq[stream];
    pthread_mutex_unlock(&j->q_mu);
    return next > 0 ? next - 1 : 0;
}

/* Under q_mu: the outcome of a resolved record (0 or its commit error). */
static int resolved_err(const struct journal *j, enum record_stream stream, uint64_t seq)
{
    for (unsigned i = 0; i < J_FAIL_RING; i++) {
        const struct jfail *f = &j->fails[i];
        if (f->err && f->stream == stream && f->first <= seq && seq <= f->last)
            return f->err;
    }
    return 0;
}

/* Under q_mu: JOURNAL_EAGAIN while seq is pending, else its outcome (see journal_poll). */
static int poll_locked(const struct journal *j, enum record_stream stream, uint64_t seq)
{
    if (seq >= j->q_next_seq[stream])
        return JOURNAL_ERANGE;
    if (j->done_seq[stream] >= seq)
        return resolved_err(j, stream, seq);
    return j->committer_running ? JOURNAL_EAGAIN : JOURNAL_ECLOSED;
}

int journal_wait(struct journal *j, enum record_stream stream, uint64_t seq)
{
    if (!j || (unsigned)stream >= J_STREAMS || seq == 0)
        return JOURNAL_EINVAL;
    pthread_mutex_lock(&j->q_mu);
    int rc;
    while ((rc = poll_locked(j, stream, seq)) == JOURNAL_EAGAIN)
        pthread_cond_wait(&j->done_cv, &j->q_mu);
    pthread_mutex_unlock(&j->q_mu);
    return rc;
}

int journal_poll(struct journal *j, enum record_stream stream, uint64_t seq)
{
    if (!j || (unsigned)stream >= J_STREAMS || seq == 0)
        return JOURNAL_EINVAL;
    pthread_mutex_lock(&j->q_mu);
    int rc = poll_locked(j, stream, seq);
    pthread_mutex_unlock(&j->q_mu);
    return rc;
}

void journal_set_commit_hook(struct journal *j, journal_commit_hook fn, void *arg)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->q_mu);
    j->commit_hook = fn;
    j->commit_hook_arg = arg;
    pthread_mutex_unlock(&j->q_mu);
}

/* ---- the committer ----------------------------------------------------------------------- */

#define ENT_NEXT(e) ((struct jqent *)((uint8_t *)(e) + entry_size((e)->klen, (e)->vlen)))

/* What write_arena leaves out (marked failed with JOURNAL_EFULL, their sequences recorded as
 * write-failed gaps in the same transaction). */
enum { SKIP_NONE = 0, SKIP_NONEVENT = 1, SKIP_ALL = 2 };

static bool skipped(const struct jqent *e, int skip)
{
    if (skip == SKIP_ALL)
        return e->kind == JQ_RECORD || e->kind == JQ_STATE_PUT || e->kind == JQ_STATE_DEL;
    return skip == SKIP_NONEVENT && e->kind == JQ_RECORD && e->stream != RECORD_EVENT;
}

/* Writes the arena in one transaction, leaving out what `skip` says. */
static int write_arena(struct journal *j, struct jarena *a, int skip, bool *had_flush)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur[J_STREAMS] = {NULL, NULL, NULL};
    struct jcounters c = j->counters;
    uint64_t skip_first[J_STREAMS] = {0}, skip_last[J_STREAMS] = {0};
    int rc = j_lmdb_err(mdb_txn_begin(j->env, NULL, 0, &txn));
    if (rc)
        return rc;
    uint8_t *end = a->data + a->len;
    for (struct jqent *e = (struct jqent *)a->data; (uint8_t *)e < end; e = ENT_NEXT(e)) {
        uint8_t *p = (uint8_t *)(e + 1);
        if (e->pad & ENT_FAILED)
            continue;
        if (skipped(e, skip) && e->kind != JQ_RECORD)
            continue;
        switch (e->kind) {
        case JQ_RECORD: {
            int s = e->stream;
            if (e->seq + 1 > c.next_seq[s])
                c.next_seq[s] = e->seq + 1;
            if (skipped(e, skip)) {
                if (skip_last[s] && skip_last[s] + 1 == e->seq) {
                    skip_last[s] = e->seq;
                } else {
                    if (skip_last[s]) {
                        rc = j_gap_add(j, txn, &c, s, skip_first[s], skip_last[s],
                                       JOURNAL_GAP_WRITE_FAILED);
                        if (rc)
                            goto fail;
                    }
                    skip_first[s] = skip_last[s] = e->seq;
                }
                continue;
            }
            if (!cur[s]) {
                rc = j_lmdb_err(mdb_cursor_open(txn, j->dbi_stream[s], &cur[s]));
                if (rc)
                    goto fail;
            }
            uint8_t key[8];
            j_be64(key, e->seq);
            MDB_val k = {8, key}, v = {e->vlen, p + e->klen};
            int mrc = mdb_cursor_put(cur[s], &k, &v, MDB_APPEND);
            if (mrc) {
                rc = mrc == MDB_KEYEXIST ? JOURNAL_ECORRUPT : j_lmdb_err(mrc);
                goto fail;
            }
            c.bytes[s] += e->vlen - J_VALUE_HDR;
            break;
        }
        case JQ_STATE_PUT: {
            MDB_val k = {e->klen, p}, v = {e->vlen, p + e->klen};
            rc = j_lmdb_err(mdb_put(txn, j->dbi_state, &k, &v, 0));
            if (rc)
                goto fail;
            break;
        }
        case JQ_STATE_DEL: {
            MDB_val k = {e->klen, p};
            int mrc = mdb_del(txn, j->dbi_state, &k, NULL);
            if (mrc && mrc != MDB_NOTFOUND) {
                rc = j_lmdb_err(mrc);
                goto fail;
            }
            break;
        }
        case JQ_FLUSH: *had_flush = true; break;
        default: break;
        }
    }
    for (int s = 0; s < J_STREAMS; s++) {
        if (skip_last[s]) {
            rc = j_gap_add(j, txn, &c, s, skip_first[s], skip_last[s], JOURNAL_GAP_WRITE_FAILED);
            if (rc)
                goto fail;
        }
    }
    /* Invariant 4: reserve sequences in journal.hwm before committing past the reservation. */
    bool need_hwm = false;
    for (int s = 0; s < J_STREAMS; s++) {
        if (c.next_seq[s] - 1 > j->hwm_reserved[s])
            need_hwm = true;
    }
    if (need_hwm) {
        uint64_t reserved[J_STREAMS], oldest[J_STREAMS];
        for (int s = 0; s < J_STREAMS; s++) {
            reserved[s] = c.next_seq[s] - 1 > j->hwm_reserved[s] ? c.next_seq[s] - 1 + J_HWM_STEP
                                                                 : j->hwm_reserved[s];
            bool found;
            int64_t ts;
            rc = j_oldest_unsent(j, txn, s, &found, &oldest[s], &ts);
            if (rc)
                goto fail;
            if (!found)
                oldest[s] = c.next_seq[s];
        }
        rc = j_hwm_write(j, reserved, oldest);
        if (rc)
            goto fail;
        memcpy(j->hwm_reserved, reserved, sizeof(reserved));
    }
    uint64_t used;
    rc = j_counters_store(j, txn, &c);
    if (rc == 0)
        rc = j_used_bytes(j, txn, &used);
    if (rc)
        goto fail;
    for (int s = 0; s < J_STREAMS; s++) {
        if (cur[s])
            mdb_cursor_close(cur[s]);
        cur[s] = NULL;
    }
    rc = j_lmdb_err(mdb_txn_commit(txn));
    txn = NULL;
    if (rc)
        return rc;
    j->counters = c;
    j->used_bytes = used;
    if (skip != SKIP_NONE) {
        for (struct jqent *e = (struct jqent *)a->data; (uint8_t *)e < end; e = ENT_NEXT(e)) {
            if (skipped(e, skip))
                e->pad |= ENT_FAILED;
        }
    }
    return 0;
fail:
    for (int s = 0; s < J_STREAMS; s++) {
        if (cur[s])
            mdb_cursor_close(cur[s]);
    }
    if (txn)
        mdb_txn_abort(txn);
    return rc;
}

/* One eviction transaction down to `target` used bytes; updates the refusal flag. */
static int evict_to(struct journal *j, uint64_t target)
{
    MDB_txn *txn;
    struct jcounters c = j->counters;
    int rc = j_lmdb_err(mdb_txn_begin(j->env, NULL, 0, &txn));
    if (rc)
        return rc;
    bool reached = false;
    uint64_t used = 0;
    rc = j_evict(j, txn, &c, target, &reached);
    if (rc == 0)
        rc = j_counters_store(j, txn, &c);
    if (rc == 0)
        rc = j_used_bytes(j, txn, &used);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = j_lmdb_err(mdb_txn_commit(txn));
    if (rc)
        return rc;
    j->counters = c;
    j->used_bytes = used;
    atomic_store(&j->refuse_nonevent, !reached && used > j->soft_limit);
    return 0;
}

/* Records failed sequences that write_arena could not commit as gaps, burning them. */
static void record_failed(struct journal *j, struct jarena *a)
{
    MDB_txn *txn;
    struct jcounters c = j->counters;
    if (mdb_txn_begin(j->env, NULL, 0, &txn))
        return;
    uint8_t *end = a->data + a->len;
    uint64_t first[J_STREAMS] = {0}, last[J_STREAMS] = {0};
    int rc = 0;
    for (struct jqent *e = (struct jqent *)a->data; (uint8_t *)e < end && !rc; e = ENT_NEXT(e)) {
        if (e->kind != JQ_RECORD || !(e->pad & ENT_FAILED))
            continue;
        int s = e->stream;
        if (e->seq + 1 > c.next_seq[s])
            c.next_seq[s] = e->seq + 1;
        if (last[s] && last[s] + 1 == e->seq) {
            last[s] = e->seq;
            continue;
        }
        if (last[s])
            rc = j_gap_add(j, txn, &c, s, first[s], last[s], JOURNAL_GAP_WRITE_FAILED);
        first[s] = last[s] = e->seq;
    }
    for (int s = 0; s < J_STREAMS && !rc; s++) {
        if (last[s])
            rc = j_gap_add(j, txn, &c, s, first[s], last[s], JOURNAL_GAP_WRITE_FAILED);
    }
    if (!rc)
        rc = j_counters_store(j, txn, &c);
    if (rc || mdb_txn_commit(txn)) {
        if (rc)
            mdb_txn_abort(txn);
        return;
    }
    j->counters = c;
}

void j_recompute_limits(struct journal *j, MDB_txn *txn)
{
    uint64_t used;
    if (j_used_bytes(j, txn, &used) == 0) {
        j->used_bytes = used;
        if (used <= j->soft_limit)
            atomic_store(&j->refuse_nonevent, false);
    }
}

/* Commits one arena: evict first when it would not fit, retry after a full map with a deeper
 * eviction, and as a last resort commit only its events and state changes. Returns the error
 * for the entries that are marked ENT_FAILED (or all entries when nonzero and none is). */
static int commit_arena(struct journal *j, struct jarena *a, bool *had_flush)
{
    pthread_rwlock_rdlock(&j->env_lock);
    pthread_mutex_lock(&j->write_mu);
    int rc = 0;
    if (!j->env) {
        rc = JOURNAL_ECLOSED;
        goto out;
    }
    uint64_t estimate = (uint64_t)a->len + a->len / 4 + 4ull * j->psize;
    if (j->used_bytes + estimate > j->soft_limit) {
        uint64_t target = j->low_limit > estimate ? j->low_limit - estimate : 0;
        rc = evict_to(j, target);
        if (rc && rc != JOURNAL_EFULL)
            goto out;
    }
    /* Metric/log are refused while only events fill the journal; everything is refused when
     * even events would eat the last reserve, which acks and gc need to free space. */
    int skip = atomic_load(&j->refuse_nonevent) ? SKIP_NONEVENT : SKIP_NONE;
    if (j->used_bytes + estimate > j->event_limit)
        skip = SKIP_ALL;
    rc = write_arena(j, a, skip, had_flush);
    if (rc == JOURNAL_EFULL && skip < SKIP_ALL) {
        (void)evict_to(j, j->low_limit > 2 * estimate ? j->low_limit - 2 * estimate : 0);
        rc = write_arena(j, a, skip, had_flush);
        if (rc == JOURNAL_EFULL && skip < SKIP_NONEVENT) {
            atomic_store(&j->refuse_nonevent, true);
            skip = SKIP_NONEVENT;
            rc = write_arena(j, a, skip, had_flush);
        }
        if (rc == JOURNAL_EFULL)
            rc = write_arena(j, a, SKIP_ALL, had_flush);
    }
    if (rc == 0 && atomic_load(&j->refuse_nonevent) && j->used_bytes <= j->soft_limit)
        atomic_store(&j->refuse_nonevent, false);
out:
    if (rc) {
        uint8_t *end = a->data + a->len;
        for (struct jqent *e = (struct jqent *)a->data; (uint8_t *)e < end; e = ENT_NEXT(e))
            e->pad |= ENT_FAILED;
        if (j->env)
            record_failed(j, a);
    }
    pthread_mutex_unlock(&j->write_mu);
    pthread_rwlock_unlock(&j->env_lock);
    return rc;
}

static int env_sync(struct journal *j)
{
    pthread_rwlock_rdlock(&j->env_lock);
    int rc = j->env ? j_lmdb_err(mdb_env_sync(j->env, 1)) : JOURNAL_ECLOSED;
    atomic_fetch_add(&j->syncs, 1);
    pthread_rwlock_unlock(&j->env_lock);
    return rc;
}

/* Under q_mu: releases the waiters of a committed (or failed) arena. */
static void resolve(struct journal *j, struct jarena *a, int group_err, int flush_err)
{
    uint8_t *end = a->data + a->len;
    int unit_err = 0;
    uint64_t committed = 0, failed = 0;
    for (struct jqent *e = (struct jqent *)a->data; (uint8_t *)e < end; e = ENT_NEXT(e)) {
        if (e->pad & ENT_FAILED) {
            int err = group_err ? group_err : JOURNAL_EFULL;
            if (!unit_err)
                unit_err = err;
            if (e->kind == JQ_RECORD) {
                failed++;
                struct jfail *prev = &j->fails[(j->fail_pos + J_FAIL_RING - 1) % J_FAIL_RING];
                if (prev->err == err && prev->stream == e->stream && prev->last + 1 == e->seq) {
                    prev->last = e->seq;
                } else {
                    j->fails[j->fail_pos] = (struct jfail){e->stream, e->seq, e->seq, err};
                    j->fail_pos = (j->fail_pos + 1) % J_FAIL_RING;
                }
            }
        } else if (e->kind == JQ_RECORD) {
            committed++;
        } else if (e->kind == JQ_FLUSH && flush_err && !unit_err) {
            unit_err = flush_err;
        }
        if (e->kind == JQ_RECORD && e->seq > j->done_seq[e->stream])
            j->done_seq[e->stream] = e->seq;
        if (e->pad & ENT_LAST_IN_UNIT) {
            if (e->waiter) {
                e->waiter->err = unit_err;
                e->waiter->done = 1;
            }
            unit_err = 0;
        }
    }
    atomic_fetch_add(&j->committed_records, committed);
    atomic_fetch_add(&j->failed_appends, failed);
    if (group_err && !j->sticky_err && group_err != JOURNAL_EFULL)
        j->sticky_err = group_err;
    pthread_cond_broadcast(&j->done_cv);
}

static void timespec_after_us(struct timespec *ts, uint64_t us)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(us / 1000000);
    ts->tv_nsec += (long)(us % 1000000) * 1000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* Under q_mu, with fill non-empty and no commit running: commits the fill arena (the lock is
 * released meanwhile) and releases its waiters. Called by the committer thread and by a
 * waiting producer that finds no commit running (the leader), so that a lone producer's commit
 * needs no thread hand-off. */
static void commit_one(struct journal *j)
{
    bool periodic = j->cfg.durability == JOURNAL_SYNC_PERIODIC;
    j->committing = true;
    struct jarena tmp = j->fill;
    j->fill = j->spare;
    j->spare = tmp;
    pthread_cond_broadcast(&j->space_cv);
    pthread_mutex_unlock(&j->q_mu);

    bool had_flush = false;
    int rc = commit_arena(j, &j->spare, &had_flush);
    int flush_err = 0;
    if (had_flush && rc == 0)
        flush_err = env_sync(j);
    atomic_fetch_add(&j->commits, 1);

    pthread_mutex_lock(&j->q_mu);
    resolve(j, &j->spare, rc, flush_err);
    j->spare.len = 0;
    j->spare.records = 0;
    if (periodic && had_flush && rc == 0 && flush_err == 0) {
        j->dirty_since_sync = false; /* the flush synced everything committed */
    } else if (periodic && rc == 0) {
        if (!j->dirty_since_sync)
            j->next_sync_ms = ferry_monotonic_ms() + j->cfg.sync_interval_ms;
        j->dirty_since_sync = true;
    }
    j->committing = false;
    j->last_commit_ms = ferry_monotonic_ms();
    /* Whoever is next: a waiter leads (done_cv); the committer thread is woken only when it
     * has something to do (queued records, a periodic sync to time, a stop), which saves a
     * context switch per commit when producers lead their own commits. */
    if (j->fill.len > 0 || j->stopping || (periodic && j->dirty_since_sync))
        pthread_cond_signal(&j->commit_cv);
    pthread_cond_broadcast(&j->done_cv);
    if (j->commit_hook)
        j->commit_hook(j->commit_hook_arg);
}

static void periodic_sync(struct journal *j)
{
    j->dirty_since_sync = false;
    j->next_sync_ms = ferry_monotonic_ms() + j->cfg.sync_interval_ms;
    pthread_mutex_unlock(&j->q_mu);
    int src = env_sync(j);
    pthread_mutex_lock(&j->q_mu);
    if (src && !j->sticky_err)
        j->sticky_err = src;
}

static void *committer_main(void *arg)
{
    struct journal *j = arg;
    bool periodic = j->cfg.durability == JOURNAL_SYNC_PERIODIC;
    pthread_mutex_lock(&j->q_mu);
    for (;;) {
        bool sync_due = false;
        while ((j->fill.len == 0 || j->committing) && !j->stopping) {
            if (periodic && j->dirty_since_sync && !j->committing) {
                long long now = ferry_monotonic_ms();
                if (now >= j->next_sync_ms) {
                    sync_due = true;
                    break;
                }
                struct timespec ts;
                timespec_after_us(&ts, (uint64_t)(j->next_sync_ms - now) * 1000);
                pthread_cond_timedwait(&j->commit_cv, &j->q_mu, &ts);
            } else {
                pthread_cond_wait(&j->commit_cv, &j->q_mu);
            }
        }
        if (sync_due) {
            periodic_sync(j);
            continue;
        }
        if (j->committing) {
            /* stopping while a leader commits: wait for it */
            pthread_cond_wait(&j->commit_cv, &j->q_mu);
            continue;
        }
        if (j->fill.len == 0 && j->stopping)
            break;
        /* The group window gathers producers that come in a burst. After an idle spell (a
         * collection round every 10 s) nobody else is coming: waiting would only cost the
         * thread one more sleep and wakeup per commit (the idle wakeup budget of ferryd), and
         * producers arriving meanwhile still form the next group during this commit. */
        bool idle = ferry_monotonic_ms() - j->last_commit_ms >= J_IDLE_MS;
        if (j->cfg.group_window_us && !idle && !j->stopping &&
            j->fill.len < j->cfg.group_max_bytes) {
            struct timespec ts;
            timespec_after_us(&ts, j->cfg.group_window_us);
            while (!j->stopping && j->fill.len < j->cfg.group_max_bytes) {
                if (pthread_cond_timedwait(&j->commit_cv, &j->q_mu, &ts) == ETIMEDOUT)
                    break;
            }
            if (j->committing || j->fill.len == 0)
                continue; /* a leader took it meanwhile */
        }
        commit_one(j);
        if (periodic && j->dirty_since_sync && ferry_monotonic_ms() >= j->next_sync_ms)
            periodic_sync(j);
    }
    j->committer_running = false;
    pthread_cond_broadcast(&j->done_cv);
    pthread_cond_broadcast(&j->space_cv);
    if (j->commit_hook)
        j->commit_hook(j->commit_hook_arg); /* pending records now poll JOURNAL_ECLOSED */
    pthread_mutex_unlock(&j->q_mu);
    return NULL;
}

int j_committer_start(struct journal *j)
{
    pthread_mutex_lock(&j->q_mu);
    for (int s = 0; s < J_STREAMS; s++) {
        j->q_next_seq[s] = j->counters.next_seq[s];
        j->done_seq[s] = j->counters.next_seq[s] - 1;
    }
    j->stopping = false;
    j->committer_running = true;
    pthread_mutex_unlock(&j->q_mu);
    if (pthread_create(&j->thread, NULL, committer_main, j) != 0) {
        j->committer_running = false;
        return JOURNAL_ENOMEM;
    }
    /* A name for top/perf/ps -L and collect-bench's per-thread wake-ups. */
    (void)pthread_setname_np(j->thread, "journal-commit");
    j->thread_started = true;
    return 0;
}

void j_committer_stop(struct journal *j)
{
    if (!j->thread_started)
        return;
    pthread_mutex_lock(&j->q_mu);
    j->stopping = true;
    pthread_cond_broadcast(&j->commit_cv);
    pthread_cond_broadcast(&j->space_cv);
    pthread_mutex_unlock(&j->q_mu);
    pthread_join(j->thread, NULL);
    j->thread_started = false;
}
