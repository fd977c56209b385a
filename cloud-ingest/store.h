/*
 * store.h - the one storage interface of ferry-ingest, with two implementations:
 *
 *   LMDB (store_lmdb.c)      the embedded default: one data directory, no setup, one process.
 *   PostgreSQL (store_pg.c)  several ferry-ingest processes share one database; the unique key
 *                            (device, stream, seq) is what makes their writes exactly-once.
 *
 * What a store keeps:
 *   devices   id, Ed25519 public key, key id, name, device class, revoked flag, enrolment time,
 *             last seen, last clock offset, versions it reported, per-stream counters (records
 *             stored, highest sequence, gap ranges and gap records, backlog it reported)
 *   tokens    enrolment tokens: one-time (consumed by the first enrolment) or fleet (reusable
 *             until it expires or has enrolled its maximum number of keys)
 *   records   keyed by (device, stream, seq); a repeated key is never stored twice
 *   gaps      eviction gaps a device reported, keyed by (device, stream, first seq)
 *   api tokens operator API tokens (cloud-ingest/auth/): public id, unique name, role, a hash of
 *             the secret (never the secret), creation, expiry and revocation times
 *   audit     the audit log: who did what, when, from where, in append order (never rewritten)
 *
 * Durability rule: ingest_store_write() returns only after the write is durable (LMDB: the
 * commit's fsync; PostgreSQL: COMMIT with synchronous_commit as the server has it, which is on by
 * default). The caller acknowledges nothing before that.
 *
 * Threads: a store handle may be used from several threads at once. Writes are meant to come from
 * the storage thread(s) of the group committer (committer.c), reads from anywhere.
 *
 * Errors: functions return 0 or a negative enum ingest_store_err; *_strerror names them. Functions
 * that take `err`/`err_len` also write a one-line explanation (what and where) there.
 */
#ifndef FERRY_INGEST_STORE_H
#define FERRY_INGEST_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/record.h"

enum ingest_store_err {
    INGEST_STORE_OK = 0,
    INGEST_STORE_ENOMEM = -1,    /* out of memory */
    INGEST_STORE_EIO = -2,       /* the backend failed (LMDB error, lost PostgreSQL connection) */
    INGEST_STORE_ENOTFOUND = -3, /* no such device / token */
    INGEST_STORE_EEXIST = -4,    /* device id or key already registered to another device */
    INGEST_STORE_EINVAL = -5,    /* an argument is malformed (device id, key) */
    INGEST_STORE_EREVOKED = -6,  /* the device is revoked */
    INGEST_STORE_ETOKEN = -7,    /* enrolment token unknown, used or expired */
    INGEST_STORE_EFULL = -8,     /* LMDB map full */
    INGEST_STORE_EHELD = -9,     /* a lease is held by another process */
};
const char *ingest_store_strerror(int err);

enum ingest_store_kind {
    INGEST_STORE_LMDB = 0,
    INGEST_STORE_PG = 1,
};

struct ingest_store_config {
    enum ingest_store_kind kind;
    const char *lmdb_dir;    /* LMDB: data directory, created if missing */
    uint64_t lmdb_map_size;  /* LMDB: map size in bytes (0: 64 GiB) */
    const char *pg_conninfo; /* PostgreSQL: libpq connection string */
    unsigned pg_connections; /* PostgreSQL: connections in the pool (0: 4) */
    /* PostgreSQL: also write the dashboard tables (metrics, logs, events; docs/dashboards.md)
     * in each write's transaction, and keep their day partitions */
    bool pg_dashboard_tables;
    unsigned pg_retention_days; /* PostgreSQL: drop dashboard partitions older (0: keep all) */
};

#define INGEST_DEVICE_ID_MAX 64
#define INGEST_NAME_MAX 128
#define INGEST_VERSIONS_MAX 1024
#define INGEST_VERSIONS_KEYS_MAX 16     /* string fields taken from one "versions" event */
#define INGEST_VERSION_STR_MAX 64       /* bytes of one key or value in it */
#define INGEST_UPDATE_COMPONENTS_MAX 16 /* components with an update state per device */
#define INGEST_UPDATES_MAX 8192         /* JSON text of a device's update states */
#define INGEST_LABELS_MAX 1024          /* JSON text of a device's labels */
#define INGEST_LABELS_COUNT_MAX 32      /* labels per device */
#define INGEST_LABEL_KEY_MAX 63         /* bytes of a label key: [a-z0-9_.-], a letter first */
#define INGEST_LABEL_VALUE_MAX 128      /* bytes of a label value: any UTF-8 */
#define INGEST_INVENTORY_MAX 4096       /* JSON text of a device's newest inventory */
#define INGEST_INVENTORY_FIELDS_MAX 32  /* fields taken from one "inventory" event */
#define INGEST_INVENTORY_STR_MAX 256    /* bytes of one key or string value in it */

struct ingest_stream_stats {
    uint64_t records;     /* records stored (each once) */
    uint64_t max_seq;     /* highest sequence number stored (0: none) */
    uint64_t gap_ranges;  /* distinct gap ranges reported */
    uint64_t gap_records; /* sequence numbers covered by those gaps */
    uint64_t backlog;     /* unsent records the device last reported (0 if it never did) */
};

/* A device as the store knows it. Plain data, copied in and out. */
struct ingest_device {
    char id[INGEST_DEVICE_ID_MAX + 1];
    uint8_t public_key[32];
    uint8_t key_id[8];
    char name[INGEST_NAME_MAX + 1];
    char device_class[INGEST_NAME_MAX + 1];
    bool revoked;
    int64_t enrolled_ns;
    int64_t last_seen_ns;                   /* ingest clock at the last stored batch (0: never) */
    int64_t clock_offset_ns;                /* ingest receive time - device send time, last batch */
    char versions[INGEST_VERSIONS_MAX + 1]; /* JSON object text of reported versions, "{}" */
    struct ingest_stream_stats streams[RECORD_STREAM_COUNT];
    /* JSON object text of string labels, "{}" when none ("Device labels" below). Last member:
     * LMDB device values written before labels existed are this struct without it. */
    char labels[INGEST_LABELS_MAX + 1];
};

/* One record to store: its identity, its corrected time and the record itself as a
 * record_pack() payload (transport/record.h; it carries ts, name, level, message, tags, fields).
 * Pointers are borrowed for the duration of ingest_store_write(). */
struct ingest_rec {
    uint8_t stream; /* enum record_stream */
    uint64_t seq;
    int64_t ts_ns;
    int64_t ts_corrected_ns;
    const uint8_t *packed;
    size_t packed_len;
};

/* One stored record as export hands it out: every value rendered, tags and fields as JSON
 * objects (NaN and infinities as null; a float always with a fraction or an exponent, "3.0", so
 * that it reads back as a float). field_types_json is the object naming each field's type
 * ("float", "int", "uint", "bool", "string"), or NULL when the store does not know them (the
 * reader then infers them from fields_json). Strings are not NUL-terminated, may hold any bytes
 * (writers of an output make them valid: common/utf8.h), and are valid only during the export
 * callback. */
struct ingest_row {
    uint8_t stream;
    uint8_t level;
    uint64_t seq;
    int64_t ts_ns;
    int64_t ts_corrected_ns;
    const char *name;
    size_t name_len;
    const char *message;
    size_t message_len;
    const char *tags_json;
    size_t tags_json_len;
    const char *fields_json;
    size_t fields_json_len;
    const char *field_types_json; /* NULL: unknown */
    size_t field_types_json_len;
};

/* Renders a stored record into a row: unpacks its payload and writes the tags and fields JSON
 * into `scratch` (reset first); row strings point into the payload and `scratch`. Returns 0 or
 * INGEST_STORE_EIO when the payload does not unpack. */
struct ferry_buf;
int ingest_rec_render(const struct ingest_rec *rec, struct ingest_row *row,
                      struct ferry_buf *scratch) __attribute__((warn_unused_result));

struct ingest_gap {
    uint8_t stream;
    uint64_t first_seq;
    uint64_t last_seq;
};

/* One verified batch's worth of writes. Inputs are borrowed; the store fills the outputs. */
struct ingest_write {
    const char *device_id;
    int64_t received_ns;
    int64_t clock_offset_ns;
    const struct ingest_rec *recs;
    size_t n_recs;
    const struct ingest_gap *gaps;
    size_t n_gaps;
    const char *versions_json; /* NULL: the batch reported none */
    /* NULL: none; else {"<component>":{"state",...,"ts","seq"}} from the batch's ota.* events,
     * merged into the stored update states newest-sequence-wins (ingest_updates_merge) */
    const char *updates_json;
    /* NULL: none; else the JSON object of the batch's newest "inventory" event (by device
     * time) and that time: it replaces the stored one only when newer (docs/ingest.md "Inventory")
     */
    const char *inventory_json;
    int64_t inventory_ts_ns;
    bool has_backlog;
    uint64_t backlog[RECORD_STREAM_COUNT];
    /* outputs */
    int result;           /* 0, or why this write was refused (ENOTFOUND, EREVOKED) */
    uint64_t new_records; /* records stored now for the first time */
    uint64_t dup_records; /* records that were already stored */
    uint64_t new_gaps;    /* gap ranges not seen before */
};

/*
 * Merges the versions object `patch` (JSON object text) into `stored` (JSON object text; NULL or
 * "" as "{}") per key, the patch winning, and writes the compact result into out[out_len].
 * Returns 0; EINVAL when `patch` is not a JSON object; EFULL when the result would exceed
 * INGEST_VERSIONS_MAX bytes (out untouched: the caller keeps `stored`); ENOMEM.
 */
int ingest_versions_merge(const char *stored, const char *patch, char *out, size_t out_len)
    __attribute__((warn_unused_result));

/*
 * Merges update states (`patch`, JSON object text keyed by component) into `stored` (NULL or ""
 * as "{}"): per component the entry with the higher "seq" wins (equal: the patch); a new
 * component is added only while fewer than INGEST_UPDATE_COMPONENTS_MAX are kept. Writes the
 * compact result into out[out_len]. Returns 0, EINVAL (patch not an object), EFULL (result over
 * INGEST_UPDATES_MAX bytes; out untouched) or ENOMEM.
 */
int ingest_updates_merge(const char *stored, const char *patch, char *out, size_t out_len)
    __attribute__((warn_unused_result));
/* The same rule on parsed objects: merges `patch` into `base` (jansson json_t objects). */
struct json_t;
int ingest_updates_merge_json(struct json_t *base, const struct json_t *patch)
    __attribute__((warn_unused_result));

struct ingest_store;

/* Opens (and creates or migrates) a store. On failure *out is NULL and err says why. */
int ingest_store_open(const struct ingest_store_config *cfg, struct ingest_store **out, char *err,
                      size_t err_len) __attribute__((warn_unused_result));
/* Closes a store; NULL is allowed. No call may be in progress. */
void ingest_store_close(struct ingest_store *store);
enum ingest_store_kind ingest_store_kind(const struct ingest_store *store);

/* Writes many batches in one transaction (the group commit). Each write's `result` says whether
 * that write was applied (0) or refused because its device is unknown/revoked; records of one
 * write that are already stored are counted in dup_records and left untouched. Returns 0 when
 * everything applied is durable, or a negative error when nothing was (the caller fails every
 * write of the group). */
int ingest_store_write(struct ingest_store *store, struct ingest_write *const *writes, size_t n,
                       char *err, size_t err_len) __attribute__((warn_unused_result));

/* Registers a device with a given id and key (operator `device add`). EEXIST if the id or key
 * is taken by another device; registering the same id with the same key again is a success. */
int ingest_store_device_add(struct ingest_store *store, const struct ingest_device *dev, char *err,
                            size_t err_len) __attribute__((warn_unused_result));
/* Registers many devices in one transaction (operator import, benchmarks): all or none, with
 * the rules of ingest_store_device_add for each. */
int ingest_store_device_add_many(struct ingest_store *store, const struct ingest_device *devs,
                                 size_t n, char *err, size_t err_len)
    __attribute__((warn_unused_result));
int ingest_store_device_get(struct ingest_store *store, const char *id, struct ingest_device *out)
    __attribute__((warn_unused_result));
int ingest_store_device_by_key(struct ingest_store *store, const uint8_t key_id[8],
                               struct ingest_device *out) __attribute__((warn_unused_result));
/* Copies the device's update states (JSON object text keyed by component, "{}" when none) into
 * out[out_len] (at least INGEST_UPDATES_MAX + 1 bytes). ENOTFOUND: no such device. */
int ingest_store_device_updates(struct ingest_store *store, const char *id, char *out,
                                size_t out_len) __attribute__((warn_unused_result));
/* Copies the device's newest inventory (JSON object text, "" when it never sent one) into
 * out[out_len] (at least INGEST_INVENTORY_MAX + 1 bytes) and its device time into *ts_ns (0
 * when none). The stored inventory is replaced by a write's only when the write's is newer by
 * device time, so a resent older batch never overwrites a newer inventory. ENOTFOUND: no such
 * device. */
int ingest_store_device_inventory(struct ingest_store *store, const char *id, char *out,
                                  size_t out_len, int64_t *ts_ns)
    __attribute__((warn_unused_result));
/* Replaces the device's labels with `labels_json` (a JSON object of string labels that
 * ingest_labels_check accepts; NULL or "" as "{}"). It is stored in the canonical form
 * (compact, keys sorted). ENOTFOUND: no such device; EINVAL: the labels are malformed. */
int ingest_store_device_set_labels(struct ingest_store *store, const char *id,
                                   const char *labels_json) __attribute__((warn_unused_result));
/* Marks a device revoked: its batches and enrolments are refused from then on. */
int ingest_store_device_revoke(struct ingest_store *store, const char *id)
    __attribute__((warn_unused_result));
/* Calls `cb` for every device in id order; stops early when cb returns non-zero. */
typedef int (*ingest_device_cb)(const struct ingest_device *dev, void *arg);
int ingest_store_device_list(struct ingest_store *store, ingest_device_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* Creates an enrolment token (`token` is the secret text, 16..128 chars). A one-time token is
 * consumed by its first successful enrolment; a fleet token is reusable. expires_ns 0: never. */
int ingest_store_token_add(struct ingest_store *store, const char *token, bool one_time,
                           int64_t expires_ns) __attribute__((warn_unused_result));
/* The same with a use limit: a fleet token enrols at most `max_uses` new keys (0: no limit; a
 * key enrolling again is not a new use). */
int ingest_store_token_add_limited(struct ingest_store *store, const char *token, bool one_time,
                                   int64_t expires_ns, uint64_t max_uses)
    __attribute__((warn_unused_result));
/* The same with labels (a label object as ingest_labels_check accepts; NULL: none) that every
 * device newly enrolled with the token gets (a key enrolling again keeps the labels it has).
 * EINVAL: malformed labels. */
int ingest_store_token_add_labeled(struct ingest_store *store, const char *token, bool one_time,
                                   int64_t expires_ns, uint64_t max_uses, const char *labels_json)
    __attribute__((warn_unused_result));

/*
 * Enrols a key with a token, atomically: the same key enrolling again gets its existing id (and
 * consumes nothing); a new key consumes a one-time token (or one use of a fleet token) and is
 * registered as `dev` says (its id is `dev->id`) with the token's labels (dev->labels is
 * ignored: a device does not choose its own labels). ETOKEN: the token is unknown, used, used up
 * or expired; EREVOKED: the key's device is
 * revoked. On success *out is the device as stored.
 */
int ingest_store_enroll(struct ingest_store *store, const char *token,
                        const struct ingest_device *dev, int64_t now_ns, struct ingest_device *out,
                        char *err, size_t err_len) __attribute__((warn_unused_result));

/* Calls `cb` for each stored record of (device, stream) with seq > after_seq in seq order, at
 * most `limit` of them. The record's strings are valid only during the callback. */
typedef int (*ingest_export_cb)(const struct ingest_row *row, void *arg);
int ingest_store_export(struct ingest_store *store, const char *device_id, uint8_t stream,
                        uint64_t after_seq, uint64_t limit, ingest_export_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* Fills `out` (count) with the number of gap ranges stored for (device, stream); used by tests
 * and /v1/devices. */
int ingest_store_gap_count(struct ingest_store *store, const char *device_id, uint8_t stream,
                           uint64_t *out) __attribute__((warn_unused_result));

/* ---- Operator API tokens (cloud-ingest/auth/auth.h says how they are made and checked) ----- */

#define INGEST_API_TOKEN_ID_LEN 16   /* hex characters of a token's public id */
#define INGEST_API_TOKEN_NAME_MAX 64 /* bytes of a token's name: [A-Za-z0-9._@-] */

enum ingest_role {
    INGEST_ROLE_VIEWER = 1,
    INGEST_ROLE_OPERATOR = 2,
    INGEST_ROLE_ADMIN = 3,
};

/* An API token as stored: plain data. `hash` is what auth.h derives from the secret. */
struct ingest_api_token {
    char id[INGEST_API_TOKEN_ID_LEN + 1];
    char name[INGEST_API_TOKEN_NAME_MAX + 1];
    uint8_t role; /* enum ingest_role */
    uint8_t hash[32];
    int64_t created_ns;
    int64_t expires_ns; /* 0: never */
    int64_t revoked_ns; /* 0: not revoked */
};

/* Stores a new token. EEXIST: its id or name is taken (revoked tokens keep their name);
 * EINVAL: malformed id, name or role. */
int ingest_store_api_token_add(struct ingest_store *store, const struct ingest_api_token *t)
    __attribute__((warn_unused_result));
/* Looks a token up by its public id. ENOTFOUND: none. */
int ingest_store_api_token_get(struct ingest_store *store, const char *id,
                               struct ingest_api_token *out) __attribute__((warn_unused_result));
/* Revokes the token whose name or id is `name_or_id` (at `now_ns`; revoking twice keeps the first
 * time). ENOTFOUND: none. On success *out (if not NULL) is the token as stored. */
int ingest_store_api_token_revoke(struct ingest_store *store, const char *name_or_id,
                                  int64_t now_ns, struct ingest_api_token *out)
    __attribute__((warn_unused_result));
/* Calls `cb` for every token in id order; stops early when cb returns non-zero. */
typedef int (*ingest_api_token_cb)(const struct ingest_api_token *t, void *arg);
int ingest_store_api_token_list(struct ingest_store *store, ingest_api_token_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* ---- Audit log --------------------------------------------------------------------------------
 */

#define INGEST_AUDIT_ACTOR_MAX 96
#define INGEST_AUDIT_ACTION_MAX 64
#define INGEST_AUDIT_TARGET_MAX 256
#define INGEST_AUDIT_SOURCE_MAX 64

/* One audit event. Strings are NUL-terminated text as given (writers escape them for output). */
struct ingest_audit_event {
    uint64_t seq;                             /* assigned by the store: 1, 2, ... in append order */
    int64_t ts_ns;                            /* wall clock of the ingest (or the CLI's host) */
    char actor[INGEST_AUDIT_ACTOR_MAX + 1];   /* "token:NAME", "device:ID", "cli:USER" */
    char action[INGEST_AUDIT_ACTION_MAX + 1]; /* "token.create", "http.POST", "enroll" ... */
    char target[INGEST_AUDIT_TARGET_MAX + 1]; /* what it acted on: a path, a name, an id */
    char source[INGEST_AUDIT_SOURCE_MAX + 1]; /* peer address, or "cli" */
    int status;                               /* HTTP status decided (0: not an HTTP request) */
};

/* Appends an event (ev->seq is set). Durable on return like every store write. */
int ingest_store_audit_append(struct ingest_store *store, struct ingest_audit_event *ev)
    __attribute__((warn_unused_result));
/* Calls `cb` for events with seq > after_seq in seq order, at most `limit`. */
typedef int (*ingest_audit_cb)(const struct ingest_audit_event *ev, void *arg);
int ingest_store_audit_list(struct ingest_store *store, uint64_t after_seq, uint64_t limit,
                            ingest_audit_cb cb, void *arg) __attribute__((warn_unused_result));

/* ---- Device labels (cloud-ingest/labels.c; docs/ingest.md "Labels and selectors") ---------
 *
 * Labels are string key/value pairs an operator (or the enrolment token) puts on a device: site,
 * customer, hardware revision... Rules: at most INGEST_LABELS_COUNT_MAX labels; a key is 1..63
 * bytes of [a-z0-9_.-] starting with a letter, and not one of the names a selector gives another
 * meaning ("class", "id", "name", "version" and keys starting with "version."); a value is 0..128
 * bytes of valid UTF-8 without control characters; the canonical JSON text fits
 * INGEST_LABELS_MAX bytes.
 */
bool ingest_label_key_valid(const char *key);
/* Checks a label object (JSON text) against the rules above and writes its canonical form
 * (compact, keys sorted) into out[out_len] (out may be NULL). Returns 0, or EINVAL with err
 * naming the offending key and rule, or ENOMEM. */
int ingest_labels_check(const char *labels_json, char *out, size_t out_len, char *err,
                        size_t err_len) __attribute__((warn_unused_result));
/* Applies a change to stored labels: `patch` is {"set":{"k":"v",...},"remove":["k2",...]}
 * (either member may be absent; a key both set and removed is an error). Removing an absent key
 * is not an error. The result is checked like ingest_labels_check and written canonical into
 * out[out_len]. Returns 0, EINVAL (err says what and where) or ENOMEM. */
int ingest_labels_patch(const char *stored, const char *patch, char *out, size_t out_len, char *err,
                        size_t err_len) __attribute__((warn_unused_result));

/* Token names: 1..64 bytes of [A-Za-z0-9._@-]. */
bool ingest_api_token_name_valid(const char *name);
/* ---- Commit order: what forwarders follow (cloud-ingest/forward/) ---------------------------
 *
 * Every record a write stores for the first time gets a place in one total order that only grows
 * at its end and in which a record appears only once it is durable, so that a reader that
 * remembers where it stopped (a cursor) never skips a record and never sees one twice:
 *
 *   LMDB        a commit log written in the same transaction as the records: one entry per
 *               (write, stream) keyed by the number of records committed before it (there is
 *               one writer, so the order of the keys is the commit order).
 *   PostgreSQL  sequence values are not commit order (a transaction that took smaller values may
 *               commit later), so rows carry the id of the transaction that wrote them (xid8,
 *               pg_current_xact_id()) and a reader only reads rows whose transaction id is below
 *               the xmin of a current snapshot (pg_snapshot_xmin(pg_current_snapshot())): every
 *               transaction below it has ended, so no row can appear there later. The order is
 *               (txid, device, stream, seq) with txid compared as a number (xid8), never as its
 *               decimal text ("1000" sorts before "999" as text: a reader ordering so skipped
 *               the rest of a transaction whose page spanned a power of ten); a long
 *               transaction delays the readers, it never makes them skip. A transaction that
 *               took a lower id but commits after higher ones is read before them, because
 *               until it ends the watermark stays at or below its id.
 *
 * A cursor is plain data, kept durably in the store under a name (ingest_store_cursor_get/set).
 */
struct ingest_store_cursor {
    uint64_t records; /* records passed since the start of the order (delivered or filtered) */
    uint64_t pos;     /* LMDB: key of the current commit log entry; PostgreSQL: txid */
    char device[INGEST_DEVICE_ID_MAX + 1]; /* the last record passed (PostgreSQL) */
    uint8_t stream;
    uint64_t seq; /* LMDB: seq of the last record passed inside entry `pos` */
};
#define INGEST_CURSOR_NAME_MAX 64

/* One record in commit order. Pointers are valid only during the callback. */
struct ingest_committed {
    const char *device_id;
    uint8_t stream;
    uint64_t seq;
    int64_t ts_corrected_ns; /* device time, corrected for a wrong device clock */
    int64_t committed_ns;    /* ingest clock when the batch was received */
    const uint8_t *packed;   /* record_pack() payload (transport/record.h) */
    size_t packed_len;
};

/* Called for each record after `from`; `after` is the cursor that points just past it. A
 * non-zero return stops the read (and is not an error). */
typedef int (*ingest_committed_cb)(const struct ingest_committed *rec,
                                   const struct ingest_store_cursor *after, void *arg);

/* Calls `cb` for up to `limit` records that follow `from` in commit order (a zeroed cursor: from
 * the start). Returns 0 (also when there was nothing to read) or EIO/ENOMEM. */
int ingest_store_read_committed(struct ingest_store *store, const struct ingest_store_cursor *from,
                                size_t limit, ingest_committed_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* The cursor stored under `name` (1..INGEST_CURSOR_NAME_MAX of [A-Za-z0-9._-]); ENOTFOUND when
 * none was stored yet (*out is then zeroed: the start). */
int ingest_store_cursor_get(struct ingest_store *store, const char *name,
                            struct ingest_store_cursor *out) __attribute__((warn_unused_result));
/* Stores a cursor durably (returns after the commit). */
int ingest_store_cursor_set(struct ingest_store *store, const char *name,
                            const struct ingest_store_cursor *c)
    __attribute__((warn_unused_result));

/* How far `c` is behind: *records committed after it, and *next_committed_ns the receive time
 * of the first of them (0 when none). */
int ingest_store_commit_lag(struct ingest_store *store, const struct ingest_store_cursor *c,
                            uint64_t *records, int64_t *next_committed_ns)
    __attribute__((warn_unused_result));

/* ---- The ingest's own state: a small durable key/value table -------------------------------
 *
 * For what parts of the ingest keep across restarts (alert states and their notification queue):
 * keys are 1..INGEST_KV_KEY_MAX bytes of printable ASCII without spaces, values at most
 * INGEST_KV_VALUE_MAX bytes. Keys sort bytewise; a part prefixes its keys with its name.
 */
#define INGEST_KV_KEY_MAX 255
#define INGEST_KV_VALUE_MAX 65536

/* One change: put `value`[len] under `key`, or delete `key` (`del`; no error when absent). */
struct ingest_kv_op {
    const char *key;
    const void *value;
    size_t len;
    bool del;
};

/* Copies the value of `key` into `out` (reset first). ENOTFOUND when there is none. */
int ingest_store_kv_get(struct ingest_store *store, const char *key, struct ferry_buf *out)
    __attribute__((warn_unused_result));
/* Calls `cb` for every key that starts with `prefix`, in key order, at most `limit` (0: all);
 * stops early when cb returns non-zero. Values are valid only during the callback. */
typedef int (*ingest_kv_cb)(const char *key, const void *value, size_t len, void *arg);
int ingest_store_kv_scan(struct ingest_store *store, const char *prefix, size_t limit,
                         ingest_kv_cb cb, void *arg) __attribute__((warn_unused_result));
/* Applies `ops` in ONE durable transaction, together with storing `cursor` under
 * `cursor_name` when that is not NULL: state derived from records and the position up to which
 * the records were read commit together. EINVAL for a bad key or value size. */
int ingest_store_kv_apply(struct ingest_store *store, const struct ingest_kv_op *ops, size_t n,
                          const char *cursor_name, const struct ingest_store_cursor *cursor)
    __attribute__((warn_unused_result));
/*
 * Takes or renews the lease `name` for `owner` until now_ns + ttl_ns: 0 when `owner` holds it
 * now, INGEST_STORE_EHELD when another owner's lease has not expired. With several ingest
 * processes on one PostgreSQL, the holder of a lease is the one that does the leased work
 * (alerts, notifications); LMDB has one process, which always gets it.
 */
int ingest_store_lease(struct ingest_store *store, const char *name, const char *owner,
                       int64_t now_ns, int64_t ttl_ns) __attribute__((warn_unused_result));

/* Device ids: 1..64 bytes of [A-Za-z0-9._-]. Returns true when `id` is one. */
bool ingest_device_id_valid(const char *id);

#endif
