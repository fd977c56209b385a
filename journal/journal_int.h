/*
 * journal_int.h - internals shared by the journal's source files (not a public header).
 *
 *   journal.c  open/close, recovery of damaged files, stats, compaction, state, reads, acks
 *   jstore.c   what happens inside one LMDB transaction: key encoding, persisted counters,
 *              acknowledgement ranges, deletion of acknowledged records, eviction, gaps
 *   jcommit.c  the append queue and the committer thread (group commit, durability modes)
 *
 * Layout of the LMDB environment (docs/journal.md, "On-disk layout"):
 *   "meta"    "format_version" -> u32 LE; "counters" -> struct jcounters as LE u64s
 *   "event", "metric", "log"   key: seq as 8 bytes big-endian; value: ts_ns (8 bytes LE) + payload
 *   "acks"    key: stream (1 byte) + first seq (8 bytes BE); value: last seq (8 bytes LE)
 *   "gaps"    key: id (8 bytes BE); value: stream u8, reason u8, first LE64, last LE64, ts LE64
 *   "state"   key: caller's bytes; value: caller's bytes
 *
 * Locks, always taken in this order: env_lock (rwlock: shared by every LMDB user, exclusive for
 * compaction, which closes and reopens the environment) -> write_mu (one write transaction of
 * ours at a time; guards `counters` and the quota flags) -> q_mu (the append queue).
 */
#ifndef FERRY_JOURNAL_INT_H
#define FERRY_JOURNAL_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "journal/journal.h"

#define J_STREAMS RECORD_STREAM_COUNT
#define J_VALUE_HDR 8           /* ts_ns before the payload in a stream value */
#define J_HWM_STEP (1ull << 20) /* sequences reserved per write of journal.hwm */

/* Persisted in meta "counters"; changed only under write_mu inside a write transaction. */
struct jcounters {
    uint64_t next_seq[J_STREAMS];      /* next sequence not yet committed (or burned) */
    uint64_t bytes[J_STREAMS];         /* payload bytes stored */
    uint64_t acked_records[J_STREAMS]; /* stored records inside ack ranges */
    uint64_t acked_bytes[J_STREAMS];
    uint64_t evicted[J_STREAMS];       /* unsent records evicted */
    uint64_t evicted_acked[J_STREAMS]; /* acknowledged records evicted before gc */
    uint64_t evictions;                /* eviction passes that removed unsent records */
    uint64_t gap_next_id;
};
#define J_COUNTERS_U64 (6 * J_STREAMS + 2)

/* One waiting producer; lives on its stack, resolved by the committer under q_mu. */
struct jwaiter {
    int done;
    int err;
};

/* Queue entry kinds. */
enum { JQ_RECORD = 1, JQ_STATE_PUT = 2, JQ_STATE_DEL = 3, JQ_FLUSH = 4 };

/* Entry header in a queue arena; followed by klen key bytes, then vlen value bytes (for a
 * record: 8 bytes ts then the payload, exactly the LMDB value), padded to 8. */
struct jqent {
    uint8_t kind;
    uint8_t stream;
    uint16_t pad;
    uint32_t klen;
    uint32_t vlen;
    uint32_t pad2;
    uint64_t seq;
    struct jwaiter *waiter; /* on the last entry of a unit, or NULL */
};

struct jarena {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t records;
};

/* A failed commit's sequence range, remembered for journal_wait(). */
struct jfail {
    uint8_t stream;
    uint64_t first, last;
    int err;
};
#define J_FAIL_RING 64

struct journal {
    char *dir, *path, *lock_path, *hwm_path, *owner_path;
    struct journal_config cfg;
    int owner_fd;
    MDB_env *env;
    MDB_dbi dbi_stream[J_STREAMS], dbi_meta, dbi_acks, dbi_gaps, dbi_state;
    unsigned psize;
    uint64_t mapsize;
    uint64_t soft_limit;  /* evict above this many used bytes */
    uint64_t low_limit;   /* ... down to this */
    uint64_t event_limit; /* no record is committed above this: the rest is for acks and gc */

    pthread_rwlock_t env_lock;
    pthread_mutex_t write_mu;
    struct jcounters counters; /* under write_mu */
    uint64_t used_bytes;       /* under write_mu: after the last write txn */
    /* under write_mu: highest gap id journal_gaps() has handed out in this process; such
     * entries may travel in a batch in flight and are never widened (j_gap_add) */
    uint64_t gaps_handed_max_id;
    atomic_bool refuse_nonevent;      /* metric/log appends fail JOURNAL_EFULL */
    uint64_t hwm_reserved[J_STREAMS]; /* committer only (and open) */

    pthread_mutex_t q_mu;
    pthread_cond_t commit_cv; /* committer waits for work */
    pthread_cond_t space_cv;  /* producers wait for queue space */
    pthread_cond_t done_cv;   /* producers wait for their commit */
    struct jarena fill, spare;
    uint64_t q_next_seq[J_STREAMS]; /* next sequence to assign */
    uint64_t done_seq[J_STREAMS];   /* every seq <= this is resolved */
    struct jfail fails[J_FAIL_RING];
    unsigned fail_pos;
    bool stopping;
    bool committing;          /* a commit (committer thread or a leading producer) is running */
    long long last_commit_ms; /* monotonic end of the last commit (0: none yet), under q_mu */
    bool committer_running;
    bool thread_started;
    int sticky_err; /* first committer error, returned by journal_close */
    pthread_t thread;
    int64_t next_sync_ms; /* periodic mode */
    bool dirty_since_sync;
    journal_commit_hook commit_hook; /* under q_mu; called under q_mu after resolve() */
    void *commit_hook_arg;

    atomic_uint_fast64_t commits, committed_records, failed_appends, syncs;
};

/* ---- jstore.c: inside a transaction -------------------------------------------------- */
/* Fixed-width integers in the file: keys big-endian (so memcmp order is numeric order and
 * MDB_APPEND works), values little-endian. Inline: they run once or twice per record. */
static inline void j_be64(uint8_t out[8], uint64_t v)
{
    v = __builtin_bswap64(v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(out, &v, 8);
}
static inline uint64_t j_get_be64(const uint8_t in[8])
{
    uint64_t v;
    memcpy(&v, in, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}
static inline void j_le64(uint8_t out[8], uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(out, &v, 8);
}
static inline uint64_t j_get_le64(const uint8_t in[8])
{
    uint64_t v;
    memcpy(&v, in, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

int j_lmdb_err(int rc); /* LMDB/errno code -> enum journal_error */

int j_counters_load(struct journal *j, MDB_txn *txn, struct jcounters *out);
int j_counters_store(struct journal *j, MDB_txn *txn, const struct jcounters *c);

/* Bytes in pages used by every tree of the environment, as this transaction sees them. */
int j_used_bytes(struct journal *j, MDB_txn *txn, uint64_t *out);

/* Smallest ack range of `stream` with last >= seq: *found false when none. */
int j_ack_find_ge(struct journal *j, MDB_txn *txn, int stream, uint64_t seq, bool *found,
                  uint64_t *first, uint64_t *last);
/* Largest ack range of `stream` with first <= seq. */
int j_ack_find_le(struct journal *j, MDB_txn *txn, int stream, uint64_t seq, bool *found,
                  uint64_t *first, uint64_t *last);
/* Merges [first,last] into the ack set, counting newly acknowledged stored records into c. */
int j_ack_add(struct journal *j, MDB_txn *txn, struct jcounters *c, int stream, uint64_t first,
              uint64_t last);
/* Deletes up to `limit` acknowledged records of `stream`, in sequence order, stopping at the
 * first whose timestamp is above keep_newer_than_ns (INT64_MAX: no retention, as eviction uses);
 * *deleted, *more. */
int j_gc_stream(struct journal *j, MDB_txn *txn, struct jcounters *c, int stream, size_t limit,
                int64_t keep_newer_than_ns, size_t *deleted, bool *more);
/* The retention bound j_gc_stream() takes for `stream` now (keep_acked_metrics_ms). */
int64_t j_keep_newer_than(const struct journal *j, int stream);
/* Evicts until used <= target: acked, then unsent log, then unsent metric. *reached says
 * whether the target was reached. */
int j_evict(struct journal *j, MDB_txn *txn, struct jcounters *c, uint64_t target, bool *reached);
/* Records [first,last] of `stream` as a gap (merged with the newest unreported one when
 * adjacent with the same reason). */
int j_gap_add(struct journal *j, MDB_txn *txn, struct jcounters *c, int stream, uint64_t first,
              uint64_t last, enum journal_gap_reason reason);
/* First stored, unacknowledged record of `stream`: *found, *seq, *ts_ns. */
int j_oldest_unsent(struct journal *j, MDB_txn *txn, int stream, bool *found, uint64_t *seq,
                    int64_t *ts_ns);

/* ---- jcommit.c: queue and committer ---------------------------------------------------- */
int j_committer_start(struct journal *j);
/* Commits what is queued, stops and joins the committer. */
void j_committer_stop(struct journal *j);
/* Writes journal.hwm (the caller holds write_mu or is the committer). */
int j_hwm_write(struct journal *j, const uint64_t reserved[J_STREAMS],
                const uint64_t oldest_unsent[J_STREAMS]);
int j_hwm_read(const char *path, uint64_t reserved[J_STREAMS], uint64_t oldest[J_STREAMS]);
void j_recompute_limits(struct journal *j, MDB_txn *txn);

#endif
