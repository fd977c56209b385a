/*
 * journal.h - the device journal: ferry's store of record while a device is offline.
 *
 * One LMDB environment in a data directory holds three streams of records (event, metric, log;
 * the ids are enum record_stream from transport/record.h), a small key-value state table, the
 * acknowledgement ranges, the eviction gaps and the journal's own meta data. The on-disk layout,
 * the durability modes and the quota accounting are specified in docs/journal.md.
 *
 * Records are opaque to the journal: a payload of bytes (record_pack() in transport/record.c
 * makes them) plus the device's wall-clock timestamp in nanoseconds. Each stream numbers its
 * records with its own 64-bit sequence: 1, 2, 3, ... strictly increasing, never reused for a
 * record that was ever committed (the next sequence is persisted with every commit, and a
 * reservation file beside the journal carries the high-water mark across a journal that had to
 * be recreated after damage). A sequence handed out for a record that never committed (the
 * process died first, or the commit failed) may be reused after a restart by a different
 * record, or (commit failure) is reported as a gap: nothing outside the process ever saw it
 * durable.
 *
 * Life of a record:
 *
 *   journal_append()  -> queued in memory, sequence assigned          (not yet durable)
 *   group commit      -> written by the committer thread in one write transaction together with
 *                        every other queued record, then synced as the durability mode says
 *   journal_read()    -> handed to the sync engine, oldest first or newest first
 *   journal_ack()     -> the cloud stored it; marked acknowledged, deleted in bounded chunks
 *   quota eviction    -> if the journal is full: acknowledged records first, then the oldest
 *                        unsent log records, then the oldest unsent metric records; never unsent
 *                        events. Every evicted unsent range becomes a gap entry that stays until
 *                        journal_gaps_mark_reported().
 *
 * THREADS. Every function may be called from any thread, concurrently, on the same handle,
 * except journal_open() and journal_close() (one thread, nothing else running on the handle at
 * close). The journal runs one thread of its own, the committer, started by journal_open() for a
 * writable journal and joined by journal_close(). No function calls back into the caller except
 * journal_read()/journal_state_foreach() (their callback runs on the calling thread, inside a
 * read transaction, and must not call any journal function) and the event encoder given in the
 * config (called from journal_open() on the opening thread).
 *
 * BLOCKING. journal_append() without JOURNAL_APPEND_WAIT returns after a memcpy into the queue
 * unless the queue is full (then it waits for the committer, or fails with JOURNAL_EAGAIN under
 * JOURNAL_APPEND_NONBLOCK). Every other writing function waits for a commit, which in the default
 * mode includes an fsync: do not call them on an event-loop thread that must never block, or
 * call them where a few milliseconds are acceptable. Reads never wait for writers.
 *
 * PROCESSES. One process writes a data directory (an advisory lock enforces it: a second writable
 * journal_open() fails with JOURNAL_EBUSY after retrying for about a second). Any number of
 * processes may open it read-only at the same time (journal_config.read_only), e.g. `ferry journal
 * stats` while ferryd runs.
 *
 * ERRORS. Functions return 0 or a negative enum journal_error. Functions that take an errbuf
 * write a one-line description of what failed and where (path, LMDB error text) into it.
 */
#ifndef FERRY_JOURNAL_JOURNAL_H
#define FERRY_JOURNAL_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/record.h"

#define JOURNAL_WUR __attribute__((warn_unused_result))

/* The on-disk format this code reads and writes (meta key "format_version", docs/journal.md). */
#define JOURNAL_FORMAT_VERSION 1

/* File names inside the data directory. */
#define JOURNAL_FILE_NAME "journal.mdb"           /* the LMDB data file (MDB_NOSUBDIR) */
#define JOURNAL_LOCK_FILE_NAME "journal.mdb-lock" /* LMDB's reader table */
#define JOURNAL_OWNER_FILE_NAME "journal.owner"   /* flock()ed by the one writing process */
#define JOURNAL_HWM_FILE_NAME "journal.hwm"       /* sequence reservations (survive recreation) */

/* Largest state key, in bytes (LMDB's default key limit). */
#define JOURNAL_STATE_KEY_MAX 511

enum journal_error {
    JOURNAL_OK = 0,
    JOURNAL_EINVAL = -1,     /* an argument is out of range (stream id, NULL, zero length key) */
    JOURNAL_ENOMEM = -2,     /* memory allocation failed */
    JOURNAL_EIO = -3,        /* a file operation failed (errbuf or stats say which) */
    JOURNAL_ELMDB = -4,      /* LMDB returned an unexpected error */
    JOURNAL_EFULL = -5,      /* quota reached and nothing this append may evict is left; for
                                metric/log this happens when unsent events fill the journal */
    JOURNAL_ECLOSED = -6,    /* the journal is closing (or its committer stopped after an error) */
    JOURNAL_EAGAIN = -7,     /* queue full and JOURNAL_APPEND_NONBLOCK was given */
    JOURNAL_ETOOBIG = -8,    /* record larger than max_record_bytes, or a state value larger than
                                the caller's buffer (journal_state_get sets *out_len) */
    JOURNAL_ECORRUPT = -9,   /* the file is damaged (only returned when it is not recovered:
                                read_only or no_recovery) */
    JOURNAL_EVERSION = -10,  /* the file has another format version (same condition) */
    JOURNAL_ENOTFOUND = -11, /* no such state key; or no journal in a read-only open's dir */
    JOURNAL_ERANGE = -12,    /* an ack range names sequences never assigned, or first > last */
    JOURNAL_ERDONLY = -13,   /* a write on a journal opened read_only */
    JOURNAL_EBUSY = -14,     /* another process has the data directory open for writing */
};

/* A static, human-readable name for an error code ("quota reached..."); never NULL. */
const char *journal_strerror(int err);

/*
 * Durability modes: what a committed record survives (docs/journal.md, "Durability").
 *
 * JOURNAL_SYNC_COMMIT (default): every group commit is followed by fdatasync of the data file
 *   (LMDB's normal synchronous commit). A record whose append waited (JOURNAL_APPEND_WAIT)
 *   survives process crash, kernel crash and power loss. Throughput comes from group commit:
 *   all records queued while one commit syncs go into the next commit (see group_window_us).
 * JOURNAL_SYNC_PERIODIC: commits are written without sync (MDB_NOSYNC); the committer calls
 *   mdb_env_sync() every sync_interval_ms. A committed record survives a process crash at once
 *   and power loss after the next periodic sync; a power loss may lose the last interval (LMDB
 *   then opens the last synced state; the file stays consistent).
 * JOURNAL_SYNC_OS: commits are never synced by the journal (MDB_NOSYNC; journal_flush() and
 *   journal_close() still sync). Survives a process crash (the data is in the kernel's page
 *   cache); the kernel writes it back when it likes, so a power loss may lose any amount of
 *   recent data, never corrupting what was synced before.
 *
 * In every mode JOURNAL_APPEND_WAIT returns after the record's transaction committed, i.e. when
 * the record has the durability its mode promises.
 */
enum journal_durability {
    JOURNAL_SYNC_COMMIT = 0,
    JOURNAL_SYNC_PERIODIC = 1,
    JOURNAL_SYNC_OS = 2,
};
/* "commit", "periodic", "os"; NULL for an unknown value. */
const char *journal_durability_name(enum journal_durability mode);
/* Parses the names above. Returns 0 or JOURNAL_EINVAL. */
int journal_durability_parse(const char *name, enum journal_durability *out) JOURNAL_WUR;

/*
 * Encodes the event the journal appends about itself (today: "journal.recovered" after a damaged
 * file was moved aside). The journal does not know the record payload format, so the program
 * supplies this (ferryd wraps record_pack()). Write at most `cap` bytes to `out`, set *out_len,
 * return 0; or return nonzero to skip the event (the information stays in journal_open_info).
 * `event_type` and `message` are NUL-terminated and borrowed for the call.
 */
typedef int (*journal_event_encoder_fn)(void *arg, const char *event_type, const char *message,
                                        int64_t ts_ns, uint8_t *out, size_t cap, size_t *out_len);

struct journal_config {
    /* Byte limit on the data file (default 256 MiB, minimum 1 MiB). The LMDB map size is set to
     * it, so the file can never grow larger; eviction starts at a soft limit below it (quota
     * minus a reserve for LMDB's copy-on-write pages, docs/journal.md "Quota"). */
    uint64_t quota_bytes;
    enum journal_durability durability; /* default JOURNAL_SYNC_COMMIT */
    /* How long the committer thread waits for more records after the first one before it
     * starts a commit of records whose producers did not wait (default 200 us; 0 = at once; it
     * never waits once group_max_bytes are queued, nor after an idle second without a commit),
     * in every mode. A producer waiting for its
     * record (JOURNAL_APPEND_WAIT) commits the queue itself as soon as no commit is running:
     * groups then form from what arrives while the previous commit syncs. */
    uint32_t group_window_us;
    uint32_t sync_interval_ms;     /* JOURNAL_SYNC_PERIODIC only (default 1000) */
    size_t group_max_bytes;        /* queued bytes that end the group window early (default 4 MiB,
                                      never more than a sixteenth of the quota); one commit takes
                                      everything queued, up to queue_max_bytes */
    size_t queue_max_bytes;        /* queued, uncommitted bytes at most; appends wait beyond it
                                      (default 16 MiB, never more than an eighth of the quota,
                                      since what is queued while a commit runs is the next
                                      commit, and eviction makes room for it in advance) */
    size_t max_record_bytes;       /* largest payload accepted (default 1 MiB) */
    uint32_t delete_chunk_records; /* acknowledged records deleted per write transaction
                                      (default 10000) */
    /* Acknowledged METRIC records are kept (not deleted by journal_ack()/journal_gc()) while
     * their timestamp is less than this old, so the device can still read its recent metrics
     * after they were sent (JOURNAL_READ_INCLUDE_ACKED; ferryd's release conditions,
     * engine/ota/condition.h). 0 (default): deleted once acknowledged. Quota eviction removes
     * them first all the same: they were sent, so they never cost an unsent record its place.
     * At most 366 days. */
    int64_t keep_acked_metrics_ms;
    bool read_only;   /* MDB_RDONLY: no committer thread, every write fails JOURNAL_ERDONLY, and a
                         damaged file fails the open instead of being recovered */
    bool no_recovery; /* writable, but a damaged file fails the open (JOURNAL_ECORRUPT /
                         JOURNAL_EVERSION) instead of being moved aside */
    journal_event_encoder_fn encode_event; /* may be NULL: no event is appended */
    void *encode_event_arg;
};

/* Fills every field with its default. */
void journal_config_init(struct journal_config *cfg);

/* What journal_open() found. */
struct journal_open_info {
    bool created;   /* there was no journal; a new one was made */
    bool recovered; /* the old file could not be used and was moved aside */
    /* When recovered: why (e.g. "mdb_env_open: MDB_INVALID: File is not an LMDB file" or
     * "format version 7, expected 1") and where the old file went (same directory, name
     * journal.mdb.broken-<unix seconds>). Log both; the event appended says the same. */
    char reason[256];
    char moved_to[4096];
    bool recovery_event_appended; /* the encoder made an event and it was committed */
};

struct journal;

/*
 * Opens (creating when missing, mode 0700 for the directory and 0600 for files) the journal in
 * `data_dir`. On success *out is a handle the caller owns and must give to journal_close().
 *
 * A writable open that finds a file it cannot use (truncated, not an LMDB file, corrupted pages,
 * missing tables, another format version) moves it aside, starts a fresh journal whose sequences
 * continue above the old file's reservations (journal.hwm), records a JOURNAL_GAP_RECOVERY gap
 * per stream for what may have been lost, appends a "journal.recovered" event (when
 * cfg->encode_event is set) and returns 0 with info->recovered set. It never refuses to start
 * because of the file's contents; only OS errors (permissions, a full disk) fail it.
 *
 * cfg may be NULL for defaults; info and errbuf may be NULL. Errors: JOURNAL_EINVAL,
 * JOURNAL_ENOMEM, JOURNAL_EIO, JOURNAL_ELMDB, JOURNAL_EBUSY, and for read_only/no_recovery
 * JOURNAL_ECORRUPT, JOURNAL_EVERSION, JOURNAL_ENOTFOUND (read_only and no journal there).
 */
int journal_open(const char *data_dir, const struct journal_config *cfg, struct journal **out,
                 struct journal_open_info *info, char *errbuf, size_t errlen) JOURNAL_WUR;

/*
 * Commits everything still queued, syncs the file (every mode), stops the committer and frees
 * the handle. Returns the first error the committer met since the open (0 if none); the handle
 * is freed in every case. NULL is a no-op. No other call may run on the handle during or after.
 */
int journal_close(struct journal *j);

/* ---- Appending -------------------------------------------------------------------------- */

/* Flags for the append functions. */
#define JOURNAL_APPEND_WAIT                                                                        \
    0x1u /* return only after the record committed (durable as the                                 \
            mode says); without it, return once it is queued */
#define JOURNAL_APPEND_NONBLOCK                                                                    \
    0x2u /* fail with JOURNAL_EAGAIN instead of waiting for queue                                  \
            space (may be combined with WAIT: then only the commit                                 \
            is waited for) */

/*
 * Appends one record to `stream`. The payload (len bytes, 1..max_record_bytes) is copied before
 * the call returns; the caller keeps ownership of it. *out_seq (may be NULL) receives the
 * record's sequence, assigned at once, even without WAIT.
 *
 * Errors: JOURNAL_EINVAL, JOURNAL_ETOOBIG, JOURNAL_EAGAIN, JOURNAL_ECLOSED, JOURNAL_ERDONLY;
 * JOURNAL_EFULL when the stream is refused because the quota is full of records it may not
 * evict (checked when queuing; with WAIT also when committing). With WAIT: any commit error
 * (JOURNAL_ELMDB, JOURNAL_EIO, JOURNAL_EFULL); the sequence is then never used again and is
 * reported as a JOURNAL_GAP_WRITE_FAILED gap. Without WAIT a commit error is counted in
 * journal_stats.failed_appends and reported the same way as a gap.
 */
int journal_append(struct journal *j, enum record_stream stream, int64_t ts_ns, const void *payload,
                   size_t len, unsigned flags, uint64_t *out_seq) JOURNAL_WUR;

/* One record of journal_appendv(). */
struct journal_append_req {
    enum record_stream stream;
    int64_t ts_ns;
    const void *payload; /* borrowed; copied before journal_appendv returns */
    size_t len;
    uint64_t seq; /* out: the assigned sequence */
};

/*
 * Appends n records (any mix of streams) as one unit: all are queued or none (the first error
 * is returned and no sequence is consumed), records of one stream get consecutive sequences in
 * array order, and all of them commit in the same transaction when the group allows (a unit
 * larger than group_max_bytes may span commits). Flags and errors as journal_append(). Cheaper
 * per record than n calls of journal_append().
 */
int journal_appendv(struct journal *j, struct journal_append_req *reqs, size_t n,
                    unsigned flags) JOURNAL_WUR;

/* A change to the state table made with an event (journal_append_event_with_state). */
struct journal_state_op {
    const char *key; /* 1..JOURNAL_STATE_KEY_MAX bytes, any bytes (not NUL-terminated) */
    size_t key_len;
    const void *value; /* ignored when del is set */
    size_t value_len;  /* 0..max_record_bytes */
    bool del;          /* delete the key (no error if missing) */
};

/*
 * Appends one event record and applies n_ops state changes in the same LMDB transaction, so a
 * state change and the event that reports it are committed together or not at all (the OTA
 * agent records "slot B written" this way). Everything is copied before the call returns. Flags
 * and errors as journal_append(); the stream is RECORD_EVENT. n_ops may be 0 and at most 1024
 * (JOURNAL_EINVAL beyond).
 */
int journal_append_event_with_state(struct journal *j, int64_t ts_ns, const void *payload,
                                    size_t len, const struct journal_state_op *ops, size_t n_ops,
                                    unsigned flags, uint64_t *out_seq) JOURNAL_WUR;

/*
 * Appends n records (as journal_appendv()) and applies n_ops state changes, all as ONE unit:
 * the records and the state changes commit in the same LMDB transaction or not at all. An input
 * that reads from a source with a position (a log file's offset, a journald cursor) writes the
 * position with the records it covers, so a crash never repeats or skips them. n may be 0 (state
 * only, ordered with the appends before it); n_ops at most 1024. When the quota forces the
 * journal to refuse the unit's metric/log records at commit time, they become a write-failed gap
 * and the state changes still commit (the loss is reported, never repeated). Flags and errors as
 * journal_appendv().
 */
int journal_appendv_state(struct journal *j, struct journal_append_req *reqs, size_t n,
                          const struct journal_state_op *ops, size_t n_ops,
                          unsigned flags) JOURNAL_WUR;

/*
 * Waits until the record `seq` of `stream` (returned by an append without WAIT) committed.
 * Returns 0, the record's commit error, JOURNAL_ERANGE if the sequence was never assigned, or
 * JOURNAL_ECLOSED.
 */
int journal_wait(struct journal *j, enum record_stream stream, uint64_t seq) JOURNAL_WUR;

/*
 * journal_wait() without the wait: 0 or the record's commit error when it is resolved,
 * JOURNAL_EAGAIN while its commit is still pending, JOURNAL_ERANGE / JOURNAL_ECLOSED as
 * journal_wait(). Never blocks on a commit (only on the queue lock, held for microseconds).
 */
int journal_poll(struct journal *j, enum record_stream stream, uint64_t seq) JOURNAL_WUR;

/*
 * Called after every commit resolved its records (journal_poll() then sees them), and once
 * when the committer stops, on the thread that committed (the committer or a producer that led
 * its own commit), with the queue lock held: it must return at once and must not call the
 * journal (an eventfd write, an atomic flag). This is how an event loop learns that records are
 * durable without a thread of its own that blocks in journal_wait(). One hook per journal; NULL
 * removes it. Set it before the appends it should see, from any thread.
 */
typedef void (*journal_commit_hook)(void *arg);
void journal_set_commit_hook(struct journal *j, journal_commit_hook fn, void *arg);

/*
 * The last sequence assigned to `stream` so far (queued, committed or not; 0 when none): what
 * journal_wait() takes to wait for everything appended until now. journal_stats() counts
 * committed records only, so its next_seq may be behind this while a commit is pending.
 */
uint64_t journal_last_assigned(struct journal *j, enum record_stream stream);

/*
 * Waits until everything queued before the call committed, then syncs the data file to disk
 * (mdb_env_sync(force)) in every durability mode. Use it before a planned shutdown or reboot in
 * the periodic and OS modes.
 */
int journal_flush(struct journal *j) JOURNAL_WUR;

/* ---- State table ------------------------------------------------------------------------ */

/*
 * Sets `key` to `value` (copied; value_len may be 0). Goes through the commit queue, so it is
 * ordered with appends queued before it, and returns after it committed. Errors: JOURNAL_EINVAL
 * (key length), JOURNAL_ETOOBIG, JOURNAL_ERDONLY, JOURNAL_ECLOSED, commit errors.
 */
int journal_state_put(struct journal *j, const char *key, size_t key_len, const void *value,
                      size_t value_len) JOURNAL_WUR;
/* Deletes `key`; 0 also when it did not exist. Same errors as journal_state_put(). */
int journal_state_delete(struct journal *j, const char *key, size_t key_len) JOURNAL_WUR;

/*
 * Copies the committed value of `key` into buf (cap bytes) and sets *out_len to its length.
 * Errors: JOURNAL_ENOTFOUND; JOURNAL_ETOOBIG when cap is too small (*out_len is then the size
 * needed and buf is untouched); JOURNAL_ELMDB.
 */
int journal_state_get(struct journal *j, const char *key, size_t key_len, void *buf, size_t cap,
                      size_t *out_len) JOURNAL_WUR;

/* Called for each key with the given prefix, in key order; key/value borrowed for the call.
 * Return 0 to go on, nonzero to stop (journal_state_foreach then returns that value). */
typedef int (*journal_state_fn)(void *arg, const char *key, size_t key_len, const void *value,
                                size_t value_len);
int journal_state_foreach(struct journal *j, const char *prefix, size_t prefix_len,
                          journal_state_fn fn, void *arg) JOURNAL_WUR;

/* ---- Reading ---------------------------------------------------------------------------- */

/* One record handed to a journal_read() callback. `payload` points into the LMDB map and is
 * valid only during the callback; copy what you keep. */
struct journal_entry {
    enum record_stream stream;
    uint64_t seq;
    int64_t ts_ns;
    const uint8_t *payload;
    size_t len;
    bool acked; /* only with JOURNAL_READ_INCLUDE_ACKED */
};

/* Return 0 to continue, nonzero to stop the read (that record counts as delivered). */
typedef int (*journal_read_fn)(void *arg, const struct journal_entry *entry);

#define JOURNAL_READ_NEWEST_FIRST 0x1u  /* descending sequence from `from_seq` */
#define JOURNAL_READ_INCLUDE_ACKED 0x2u /* also records acknowledged but not yet deleted */

struct journal_read_opts {
    /* Cursor. Oldest first: records with seq > from_seq (0 = from the oldest). Newest first:
     * records with seq < from_seq (0 = from the newest). */
    uint64_t from_seq;
    /* Stop before the record that would take the delivered payload bytes past this (0 = no
     * limit). The first record is always delivered, even when it alone is larger, so one big
     * record cannot stall a stream. */
    size_t byte_budget;
    size_t max_records; /* 0 = no limit */
    unsigned flags;     /* JOURNAL_READ_* */
};

struct journal_read_result {
    size_t records;    /* delivered */
    size_t bytes;      /* payload bytes delivered */
    uint64_t last_seq; /* sequence of the last delivered record (the next call's from_seq);
                          from_seq when nothing was delivered */
    bool more;         /* another matching record exists beyond the last one delivered */
};

/*
 * Reads unacknowledged records of `stream` in one read transaction (a consistent snapshot that
 * writers do not block), calling fn for each in sequence order (ascending, or descending with
 * JOURNAL_READ_NEWEST_FIRST). Acknowledged records still waiting for deletion are skipped unless
 * JOURNAL_READ_INCLUDE_ACKED. Records appended but not yet committed are not visible. opts may
 * be NULL (oldest first, no limits); res may be NULL.
 *
 * Returns 0, the callback's nonzero value when it stopped the read, JOURNAL_EINVAL,
 * JOURNAL_ECORRUPT (a stored value shorter than its header), JOURNAL_ELMDB.
 */
int journal_read(struct journal *j, enum record_stream stream, const struct journal_read_opts *opts,
                 journal_read_fn fn, void *arg, struct journal_read_result *res) JOURNAL_WUR;

/* ---- Acknowledging and deleting --------------------------------------------------------- */

/* An inclusive range of sequences. */
struct journal_range {
    uint64_t first;
    uint64_t last;
};

/*
 * Marks the ranges of `stream` as stored by the cloud. Ranges may be in any order, overlap each
 * other or earlier acks, and leave holes (they are merged). Sequences whose records were
 * already evicted or deleted are accepted. Acknowledged records are no longer read, and are
 * deleted: up to delete_chunk_records of them in this call's transaction, the rest by
 * journal_gc() (or by eviction when space is needed). Returns after the commit.
 *
 * Errors: JOURNAL_EINVAL (stream, n == 0 with ranges NULL), JOURNAL_ERANGE (first == 0,
 * first > last, or last not yet assigned), JOURNAL_ERDONLY, JOURNAL_ELMDB, JOURNAL_EIO.
 */
int journal_ack(struct journal *j, enum record_stream stream, const struct journal_range *ranges,
                size_t n) JOURNAL_WUR;

/*
 * Deletes acknowledged records, at most delete_chunk_records per write transaction and at most
 * max_records in total (0 = until none is left). *out_deleted (may be NULL) gets the count and
 * *out_more (may be NULL) whether acknowledged records remain. Call it from a timer or when idle.
 */
int journal_gc(struct journal *j, size_t max_records, size_t *out_deleted,
               bool *out_more) JOURNAL_WUR;

/* ---- Gaps ------------------------------------------------------------------------------- */

enum journal_gap_reason {
    JOURNAL_GAP_QUOTA = 1,        /* evicted unsent because the quota was reached */
    JOURNAL_GAP_WRITE_FAILED = 2, /* sequence assigned but its commit failed */
    JOURNAL_GAP_RECOVERY = 3,     /* the journal file was damaged and recreated; the range is an
                                     upper bound of what was lost (some may have been stored) */
};
/* "quota", "write-failed", "recovery"; "unknown" otherwise. */
const char *journal_gap_reason_name(enum journal_gap_reason reason);

struct journal_gap {
    uint64_t id; /* increasing; pass the last one reported to journal_gaps_mark_reported() */
    enum record_stream stream;
    uint64_t first; /* inclusive */
    uint64_t last;  /* inclusive */
    enum journal_gap_reason reason;
    int64_t ts_ns; /* wall clock when the gap was recorded (updated when a gap is extended) */
};

/*
 * Copies up to `cap` unreported gaps, oldest first, into out and sets *out_n. Adjacent evictions
 * of one stream with the same reason are merged into one entry while it is unreported.
 */
int journal_gaps(struct journal *j, struct journal_gap *out, size_t cap, size_t *out_n) JOURNAL_WUR;

/*
 * The id of the newest unreported gap (0 when there is none) into *out, from a read snapshot:
 * unlike journal_gaps() it never waits for a commit in progress, so a loop can ask every few
 * seconds whether anything new is there before it lists the gaps.
 */
int journal_gaps_newest_id(struct journal *j, uint64_t *out) JOURNAL_WUR;

/* Forgets every gap with id <= up_to_id (the cloud acknowledged a batch that listed them). */
int journal_gaps_mark_reported(struct journal *j, uint64_t up_to_id) JOURNAL_WUR;

/* ---- Stats and maintenance -------------------------------------------------------------- */

struct journal_stream_stats {
    uint64_t records;        /* stored records, acknowledged-but-undeleted included */
    uint64_t bytes;          /* their payload bytes */
    uint64_t unsent_records; /* stored and not acknowledged */
    uint64_t unsent_bytes;
    uint64_t next_seq;            /* the sequence the next append will get */
    uint64_t oldest_unsent_seq;   /* 0 when nothing is unsent */
    int64_t oldest_unsent_ts_ns;  /* its timestamp; 0 when nothing is unsent */
    int64_t oldest_unsent_age_ms; /* now - its timestamp (can be negative with a wrong clock);
                                     0 when nothing is unsent */
    uint64_t evicted_records;     /* unsent records evicted for quota since the journal was made */
    uint64_t evicted_acked_records; /* acknowledged records deleted early by eviction */
};

struct journal_stats {
    struct journal_stream_stats stream[RECORD_STREAM_COUNT]; /* indexed by enum record_stream */
    uint64_t gaps_pending;                                   /* unreported gap entries */
    uint64_t evictions; /* eviction passes that removed unsent records */
    uint64_t quota_bytes;
    uint64_t used_bytes;        /* pages in use by all LMDB trees x page size */
    uint64_t file_bytes;        /* size of journal.mdb on disk (st_size) */
    uint64_t commits;           /* group commits since open */
    uint64_t committed_records; /* records committed since open */
    uint64_t failed_appends;    /* records whose commit failed since open */
    uint64_t queued_bytes;      /* waiting for the committer now */
    enum journal_durability durability;
    uint64_t syncs; /* mdb_env_sync() calls of the journal since open: periodic syncs and
                       journal_flush(); commits synced by LMDB itself (commit mode) not counted */
};

/* Fills *out from one read transaction plus the in-memory counters. */
int journal_stats(struct journal *j, struct journal_stats *out) JOURNAL_WUR;

/*
 * Rewrites the data file without free pages (mdb_env_copy2 with MDB_CP_COMPACT into
 * journal.mdb.compact, fsync, rename over journal.mdb, fsync of the directory) and reopens it.
 * Appends queued meanwhile wait; reads wait. Only useful after a large deletion: freed pages
 * are reused anyway, this returns them to the filesystem. Read-only openers in other processes
 * keep reading the old file until they reopen. Errors: JOURNAL_ERDONLY, JOURNAL_EIO,
 * JOURNAL_ELMDB (errbuf says what). After a failure the journal stays usable on the old file,
 * except when reopening failed (then JOURNAL_ECLOSED from every later call).
 */
int journal_compact(struct journal *j, char *errbuf, size_t errlen) JOURNAL_WUR;

/*
 * Drops this process's resident pages of the data file's memory map (madvise MADV_DONTNEED on
 * LMDB's read-only shared map, found in /proc/self/maps by the file's device and inode). Nothing
 * is lost: the pages stay in the kernel's page cache and the next read faults them back in. An
 * idle daemon calls it so that its resident set does not keep every page a past burst touched
 * (measured: ~100 MiB after 2 million records). Cheap; may be called from any thread.
 * Errors: JOURNAL_ECLOSED, JOURNAL_EIO (no mapping found, /proc not mounted, madvise failed).
 */
int journal_release_memory(struct journal *j) JOURNAL_WUR;

/* The data directory and the data file's path, owned by the handle. */
const char *journal_data_dir(const struct journal *j);
const char *journal_file_path(const struct journal *j);

#endif
