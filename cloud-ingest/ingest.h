/*
 * ingest.h - ferry-ingest's internal API: configuration, the HTTP server and its router, the
 * batch receive path, the group committer, and the in-memory device table.
 *
 * How a batch travels (POST /v1/batches):
 *
 *   worker thread (one of N, each with its own event_base + evhttp on a SO_REUSEPORT socket)
 *     ingest_batch_prepare(): size -> header -> device known/not revoked -> signature ->
 *                             fair share -> bounded decompression + decode -> struct ingest_job
 *     ingest_committer_submit(): bounded queue (full: 503 + Retry-After)
 *   storage thread(s)
 *     pops every queued job (up to group_max_records), ingest_store_write() in ONE transaction,
 *     then hands each job back to its worker's event loop (event_active on a per-worker event)
 *   worker thread
 *     sends the 200 JSON acknowledgement - only now, after the commit was durable.
 *
 * The router (router.h, a leaf library) is how other parts add endpoints: cloud-ingest/release/
 * registers its routes with ingest_router_add() from ingest_release_register(), called from
 * ingest_server_new(). Handlers run on worker threads, several at once: they must be
 * thread-safe and must not block (reply from the handler, or later from the same worker's loop).
 */
#ifndef FERRY_INGEST_INGEST_H
#define FERRY_INGEST_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/http.h>

#include "cloud-ingest/alerts/alerts.h"
#include "cloud-ingest/forward/forward.h"
#include "cloud-ingest/router.h"

#include "cloud-ingest/store.h"
#include "common/log.h"
#include "transport/manifest.h"

struct evhttp_request;
struct batch_decoder;
struct ingest_dicts;
struct ingest_committer;

/* ---- Errors of this module ------------------------------------------------------------------ */

enum ingest_err {
    INGEST_OK = 0,
    INGEST_ENOMEM = -1,
    INGEST_EINVAL = -2, /* bad configuration value or argument */
    INGEST_EIO = -3,    /* socket, thread or store failure */
    INGEST_EBUSY = -4,  /* the commit queue is full */
};
const char *ingest_strerror(int err);

/* ---- Configuration (config.c) --------------------------------------------------------------- */

#define INGEST_DEFAULT_LISTEN "127.0.0.1:8480"
#define INGEST_DEFAULT_DATA_DIR "./ferry-ingest-data"

#define INGEST_RELEASE_KEYS_MAX 8

struct ingest_config {
    char listen_host[256];
    uint16_t listen_port;               /* 0: any free port (see port_file) */
    char port_file[1024];               /* write the bound port here once listening ("" = don't) */
    unsigned workers;                   /* HTTP worker threads (0: number of CPUs) */
    unsigned max_connections;           /* open connections across all workers */
    int64_t timeout_ms;                 /* read/write timeout of a connection */
    uint64_t max_body_bytes;            /* POST /v1/batches body limit (413 above) */
    uint64_t max_enroll_bytes;          /* POST /v1/enroll body limit */
    unsigned queue_max;                 /* commit queue: batches waiting for storage (503 above) */
    uint64_t queue_max_bytes;           /* and the bytes they hold, body and records (503 above) */
    unsigned group_max_records;         /* records per group commit (a soft limit) */
    unsigned storage_threads;           /* PostgreSQL: parallel committers (LMDB always uses 1) */
    double device_rate;                 /* fair share: batches/s per device (0: unlimited) */
    double device_burst;                /* fair share: bucket size in batches */
    unsigned device_max_inflight;       /* fair share: a device's batches in the queue at once */
    int64_t clock_threshold_ms;         /* |offset| above this corrects timestamps */
    int64_t device_cache_ms;            /* how long a cached device key/revocation is trusted */
    char dict_dir[1024];                /* zstd dictionaries as <dict_id>.dict ("" = none) */
    bool metrics_public;                /* /metrics without a token (docs/security.md) */
    int64_t device_request_window_ms;   /* |ingest time - X-Ferry-Time| accepted on device GETs */
    double enroll_failures_per_address; /* failed enrolments per minute per address (429) */
    double enroll_failures_global;      /* failed enrolments per minute, all addresses */
    enum ferry_log_level log_level;
    struct ingest_store_config store;

    /* TLS (tls.h): tls_cert "" = plain HTTP. */
    char tls_cert[1024];        /* PEM certificate chain, re-read on SIGHUP */
    char tls_key[1024];         /* its PEM private key */
    int tls_min_version;        /* TLS1_2_VERSION (0x0303) or TLS1_3_VERSION (0x0304) */
    int64_t tls_ticket_rot_ms;  /* a new session-ticket key this often; 0 = no tickets */
    int64_t tls_ticket_life_ms; /* how long a session ticket is accepted */
    char tls_ticket_key[1024];  /* secret for ticket keys shared by processes ("" = random) */

    char lmdb_dir[1024];
    char pg_conninfo[1024];
    struct ingest_forward_set forward; /* [forward.NAME] sections (forward/forward.h) */
    struct alerts_config alerts; /* [alerts], [alert.NAME], [receiver.NAME] (docs/alerts.md) */
    /* [release] mirrors: artifact mirror base URLs the ingest adds, unsigned, to every manifest
     * envelope it serves (docs/ota.md "Mirrors"); each passed manifest_mirror_check. */
    char release_mirrors[MANIFEST_MAX_MIRRORS][MANIFEST_MAX_MIRROR_URL + 1];
    size_t n_release_mirrors;
    /* [release] public_keys: the release keys POST /v1/releases and POST /v1/rollouts verify
     * manifests with (none: those endpoints answer 409); max_artifact: the largest artifact
     * PUT /v1/artifacts/{sha256} accepts in all its pieces. */
    uint8_t release_keys[INGEST_RELEASE_KEYS_MAX][32];
    size_t n_release_keys;
    uint64_t max_artifact_bytes;
    /* [limits] nonce_cache: memory of the replay cache of device-signed requests (auth/nonce.c). */
    uint64_t nonce_cache_bytes;
};

/* Fills every default (documented in docs/ingest.md and --help). */
void ingest_config_defaults(struct ingest_config *cfg);
/* Sets one key ("listen", "store", "lmdb.dir", ... the same names as the INI file's
 * section.key; see docs/ingest.md). Returns 0 or INGEST_EINVAL with err saying why. */
int ingest_config_set(struct ingest_config *cfg, const char *key, const char *value, char *err,
                      size_t err_len) __attribute__((warn_unused_result));
/* Loads an INI file (sections [server], [store], [limits], [log]; see docs/ingest.md). */
int ingest_config_load(struct ingest_config *cfg, const char *path, char *err, size_t err_len)
    __attribute__((warn_unused_result));
/* Points cfg->store at the strings inside cfg; call after the last ingest_config_set. */
void ingest_config_finish(struct ingest_config *cfg);
/* The help text of every configuration key (for --help); forwarders' keys separately. */
const char *ingest_config_help(void);
const char *ingest_config_help_forward(void);

/* ---- Metrics (metrics.c) -------------------------------------------------------------------- */

enum ingest_counter {
    INGEST_C_REQUESTS,
    INGEST_C_BATCHES_OK,
    INGEST_C_RECORDS_NEW,
    INGEST_C_RECORDS_DUP,
    INGEST_C_GAPS_NEW,
    INGEST_C_BYTES_IN,
    INGEST_C_REJECT_413,
    INGEST_C_REJECT_400,
    INGEST_C_REJECT_401,
    INGEST_C_REJECT_403,
    INGEST_C_REJECT_429,
    INGEST_C_REJECT_503,
    INGEST_C_STORE_ERRORS,
    INGEST_C_COMMIT_GROUPS,
    INGEST_C_ENROLLS,
    INGEST_C_CONN_REFUSED,
    INGEST_C_TLS_FULL,    /* TLS connections that made a full handshake */
    INGEST_C_TLS_RESUMED, /* TLS connections that resumed a session from a ticket */
    INGEST_C_COUNT
};

enum ingest_histogram {
    INGEST_H_BATCH_SECONDS,  /* POST /v1/batches: body received -> acknowledgement sent */
    INGEST_H_COMMIT_SECONDS, /* one group commit */
    INGEST_H_COUNT
};

struct ingest_metrics;
int ingest_metrics_new(struct ingest_metrics **out) __attribute__((warn_unused_result));
void ingest_metrics_free(struct ingest_metrics *m);
void ingest_metrics_add(struct ingest_metrics *m, enum ingest_counter c, uint64_t n);
uint64_t ingest_metrics_get(struct ingest_metrics *m, enum ingest_counter c);
void ingest_metrics_observe(struct ingest_metrics *m, enum ingest_histogram h, double seconds);

/* ---- In-memory device table (devtab.c) ------------------------------------------------------ */

/*
 * The hot path's view of devices: public key and revocation cached from the store (trusted for
 * device_cache_ms, so revocation through another process takes effect within that time; local
 * revocation at once), the fair-share token bucket and in-flight count, and the latest value of
 * each device's health metrics (bounded per device) for /metrics.
 */
struct ingest_devtab;

enum ingest_admit {
    INGEST_ADMIT_OK = 0,
    INGEST_ADMIT_UNKNOWN = 1, /* 401 */
    INGEST_ADMIT_REVOKED = 2, /* 403 */
    INGEST_ADMIT_LIMITED = 3, /* 429: *retry_after_s says when */
    INGEST_ADMIT_ERROR = 4,   /* 503: store lookup failed */
};

int ingest_devtab_new(struct ingest_store *store, const struct ingest_config *cfg,
                      struct ingest_devtab **out) __attribute__((warn_unused_result));
void ingest_devtab_free(struct ingest_devtab *t);
/* Looks the device up (cache, then store) and checks revocation: OK (its public key in
 * `public_key`), UNKNOWN, REVOKED or ERROR. Takes nothing from the fair share. */
enum ingest_admit ingest_devtab_lookup(struct ingest_devtab *t, const char *device_id,
                                       uint8_t public_key[32]);
/* Charges one batch to the device's fair share (call after its signature verified, so that
 * forged batches cannot spend a device's budget): OK, counting one batch in flight until
 * ingest_devtab_done, or LIMITED with *retry_after_s. */
enum ingest_admit ingest_devtab_acquire(struct ingest_devtab *t, const char *device_id,
                                        unsigned *retry_after_s);
void ingest_devtab_done(struct ingest_devtab *t, const char *device_id);
/* Forgets a cached device (after revoke/enroll through this process). */
void ingest_devtab_invalidate(struct ingest_devtab *t, const char *device_id);
/* Records a value of a device's health metric `name` ("cpu.usage_idle,cpu=cpu0": name_len bytes,
 * any bytes, NUL included, at most 120 kept) measured at corrected device time ts_ns. It
 * replaces the kept value only when ts_ns is at least the kept one's: the newest by device time
 * wins, whatever order batches arrive in. */
void ingest_devtab_health(struct ingest_devtab *t, const char *device_id, const char *name,
                          size_t name_len, int64_t ts_ns, double value);
/* Appends the Prometheus lines of every device's health values to `out` (label values written
 * with ferry_buf_append_prom_label: valid exposition format whatever the names hold). */
struct ferry_buf;
int ingest_devtab_expose(struct ingest_devtab *t, struct ferry_buf *out)
    __attribute__((warn_unused_result));

/* ---- The batch receive path (batches.c) ------------------------------------------------------ */

/* One batch between its worker and the storage thread. Owned by the worker that made it. */
struct ingest_job {
    struct ingest_write write; /* what the store gets (points into the fields below) */
    char device_id[INGEST_DEVICE_ID_MAX + 1];
    char batch_id_hex[33];
    size_t n_gaps_reported;
    /* owned storage */
    struct ingest_rec *recs;
    size_t recs_cap;
    size_t *offs;                /* arena offset of each record's payload (arena grows) */
    struct ingest_gap gaps[128]; /* BATCH_MAX_GAPS */
    struct ferry_buf *arena;     /* the records' record_pack() payloads */
    struct ferry_buf *versions_json;
    struct json_t *updates;        /* update states from the batch's ota.* events, or NULL */
    struct json_t *action_results; /* its "action.result" events (cloud-ingest/actions/), or NULL */
    char *updates_json;            /* their JSON text (json_dumps), the write's updates_json */
    char *inventory_json;          /* the batch's newest "inventory" event as JSON text, or NULL */
    int64_t inventory_ts_ns;       /* its device time */
    struct record_scratch *scratch; /* record_unpack room for health values, kept with the job */
    int decode_status;              /* HTTP status a record check failed with (0: none) */
    char decode_msg[200];
    /* committer bookkeeping */
    struct ingest_job *next;
    int commit_result; /* 0 or the store's error for the whole group */
    int64_t received_mono_ns;
    uint64_t held_bytes; /* request body + decoded records: what the job keeps in memory */
    /* server bookkeeping */
    struct evhttp_request *req;
    void *worker;
};

/* The shared state the receive path needs. */
struct ingest_release_offerer;

struct ingest_ctx {
    const struct ingest_config *cfg;
    struct ingest_store *store;
    struct ingest_devtab *devtab;
    struct ingest_metrics *metrics;
    struct ingest_committer *committer;
    struct ingest_dicts *dicts; /* zstd dictionaries from cfg->dict_dir, loaded on demand */
    struct ingest_enroll_limiter *enroll_limiter; /* failed enrolments (cloud-ingest/auth/) */
    struct ingest_forwarders *forwarders; /* forward/forward.h; NULL in tools without a server */
    struct alerts *alerts;                /* the alert engine (cloud-ingest/alerts/) */
    /* which manifest a device is offered when a rollout concerns it (cloud-ingest/rollout/);
     * NULL: always the class's current one */
    const struct ingest_release_offerer *offerer;
};

struct ingest_job *ingest_job_new(void);
void ingest_job_free(struct ingest_job *job);
void ingest_job_reset(struct ingest_job *job);

/*
 * Runs every check of POST /v1/batches up to (not including) the commit, in the order of
 * ARCHITECTURE.md: size (413), header (400), device known (401) and not revoked (403), signature
 * (401), fair share (429), bounded decompression and decode (400). On success fills `job` and
 * returns 200; otherwise returns the HTTP status and writes the reason to `msg` (and
 * *retry_after_s for 429/503). On 200 the device's in-flight count is held: the caller calls
 * ingest_devtab_done() after the commit. `dec` is the calling thread's decoder.
 */
int ingest_batch_prepare(struct ingest_ctx *ctx, struct batch_decoder *dec, const uint8_t *body,
                         size_t len, int64_t now_ns, struct ingest_job *job, char *msg,
                         size_t msg_len, unsigned *retry_after_s);
/* Writes the 200 acknowledgement of a committed job (INTERFACES.md) into `out`. */
int ingest_batch_ack(const struct ingest_job *job, struct ferry_buf *out)
    __attribute__((warn_unused_result));
/* After a successful commit: counters, health values. */
void ingest_batch_committed(struct ingest_ctx *ctx, struct ingest_job *job);
/* Dictionaries: <dict_dir>/<dict_id>.dict files, read on first use and kept until freed.
 * ingest_dicts_new never fails for a missing directory (batches naming a dictionary then fail
 * with 400). */
struct ingest_dicts;
int ingest_dicts_new(const char *dir, struct ingest_dicts **out)
    __attribute__((warn_unused_result));
void ingest_dicts_free(struct ingest_dicts *d);
/* Makes `dec` find dictionaries in `d`. */
void ingest_dicts_attach(struct ingest_dicts *d, struct batch_decoder *dec);

/* ---- Group committer (committer.c) ---------------------------------------------------------- */

struct ingest_committer;
/* Called on a storage thread when a job's group committed (job->commit_result 0) or failed. */
typedef void (*ingest_commit_done_fn)(struct ingest_job *job, void *arg);
int ingest_committer_new(struct ingest_store *store, struct ingest_metrics *metrics,
                         const struct ingest_config *cfg, ingest_commit_done_fn done, void *arg,
                         struct ingest_committer **out) __attribute__((warn_unused_result));
/* Queues a job. INGEST_EBUSY when the queue holds queue_max jobs already, or when the jobs not
 * yet answered hold queue_max_bytes with this one's job->held_bytes (answer 503). */
int ingest_committer_submit(struct ingest_committer *c, struct ingest_job *job)
    __attribute__((warn_unused_result));
size_t ingest_committer_depth(struct ingest_committer *c);
/* Bytes held by jobs accepted and not yet answered. */
uint64_t ingest_committer_held_bytes(struct ingest_committer *c);
/* Commits everything still queued, then stops the threads and frees. */
void ingest_committer_free(struct ingest_committer *c);

/* ---- Router and server (server.c) ------------------------------------------------------------ */

/* Appends the JSON object of one device as GET /v1/devices shows it (docs/ingest.md), with
 * `updates` its update states JSON text (NULL: "{}"); valid UTF-8 JSON whatever the store holds.
 * Returns 0 or non-zero when out of memory. */
int ingest_device_json(struct ferry_buf *b, const struct ingest_device *d, const char *updates)
    __attribute__((warn_unused_result));
/* The same with the device's newest inventory (JSON object text from
 * ingest_store_device_inventory, and its device time): "inventory" and "inventory_time"
 * (RFC 3339 UTC) are added when `inventory` is a non-empty JSON object, left out otherwise. */
int ingest_device_json_inventory(struct ferry_buf *b, const struct ingest_device *d,
                                 const char *updates, const char *inventory,
                                 int64_t inventory_ts_ns) __attribute__((warn_unused_result));

/* Registers the built-in read/enrol endpoints (api.c). */
int ingest_api_register(struct ingest_router *r, struct ingest_ctx *ctx)
    __attribute__((warn_unused_result));

/* Registers the operator actions on devices (admin_api.c): POST /v1/devices and
 * POST /v1/devices/{id}/revoke, role admin. */
int ingest_admin_api_register(struct ingest_router *r, struct ingest_ctx *ctx)
    __attribute__((warn_unused_result));

struct ingest_server;
/* Binds the listening socket(s), opens the committer and device table and registers every
 * route. The store is borrowed until ingest_server_free. */
int ingest_server_new(const struct ingest_config *cfg, struct ingest_store *store,
                      struct ingest_server **out, char *err, size_t err_len)
    __attribute__((warn_unused_result));
uint16_t ingest_server_port(const struct ingest_server *s);
struct ingest_router *ingest_server_router(struct ingest_server *s);
struct ingest_ctx *ingest_server_ctx(struct ingest_server *s);
/* Runs the workers until ingest_server_stop() (or SIGINT/SIGTERM when handle_signals).
 * Returns 0 or INGEST_EIO. */
int ingest_server_run(struct ingest_server *s, bool handle_signals)
    __attribute__((warn_unused_result));
/* Asks a running server to stop; thread-safe. */
void ingest_server_stop(struct ingest_server *s);
void ingest_server_free(struct ingest_server *s);

/* ---- Operator commands (admin.c) ------------------------------------------------------------ */

/* Where operator commands go: NULL url = the configured store on this host; otherwise the API of
 * the ingest at `url` with the API token `token` (device commands only; docs/ingest.md). */
struct ingest_admin_remote {
    const char *url;   /* "https://ingest.example.com:8480" (no trailing slash needed) */
    const char *token; /* "fyt_..." */
    const char *ca_file;
};

/* `ferry-ingest device add|list|revoke`, `enroll-token create`, `token ...`, `audit list`,
 * `release ...`: argv starts at the subcommand. Prints to stdout; returns the process exit
 * status. `remote` may be NULL (local). */
int ingest_admin_main(struct ingest_config *cfg, const struct ingest_admin_remote *remote, int argc,
                      char **argv);

#endif
