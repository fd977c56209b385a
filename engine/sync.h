/*
 * sync.h - the sync engine: ships the journal to ferry-ingest whenever the link allows.
 *
 * One struct sync lives on ferryd's event loop. It owns the device identity (an Ed25519 key
 * pair made at first start, kept in <data_dir>/device.key, mode 0600, never logged), enrolls
 * with the configured token on first contact (POST /v1/enroll; the device id and the enrollment
 * state are kept in the journal's state table), and then sends batches (POST /v1/batches) built
 * from the journal, most important stream first, acknowledging in the journal what the cloud
 * acknowledged. docs/sync.md is the design: when a batch is sent, in what order, the catch-up
 * policy after an outage, the retry classification table, how the batch size adapts.
 *
 * Threads: every function here must be called on the thread running the event_base. The
 * engine runs one helper thread of its own (reading the journal, encoding, compressing,
 * signing, and the journal acks, all of which may take milliseconds), so the loop never waits
 * for a compression or an fsync; results come back to the loop through an eventfd.
 *
 * Errors: functions return 0 or a negative enum sync_error; sync_strerror() names it and the
 * errbuf (when given) says what and where.
 */
#ifndef FERRY_ENGINE_SYNC_H
#define FERRY_ENGINE_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/record.h"

struct event_base;
struct journal;
struct sync;

enum sync_error {
    SYNC_OK = 0,
    SYNC_EINVAL = -1, /* a config value is missing or out of range */
    SYNC_ENOMEM = -2,
    SYNC_EIO = -3,      /* the key file could not be read or written */
    SYNC_EKEY = -4,     /* the key file exists but is not a valid key (not overwritten) */
    SYNC_EJOURNAL = -5, /* the journal refused a state read/write */
    SYNC_ETHREAD = -6,  /* the helper thread or its eventfd could not be made */
    SYNC_EHTTP = -7,    /* the HTTP client could not be made */
};
const char *sync_error_name(int err);
const char *sync_strerror(int err);

/*
 * What the daemon fills from the [device], [server] and [sync] sections (docs/configuration.md).
 * Strings are borrowed during sync_new()/sync_reload() and copied. Sizes are payload bytes as
 * the journal stores them (record_pack() sizes), durations milliseconds.
 */
struct sync_config {
    const char *data_dir;     /* required: the key file lives here */
    const char *server_url;   /* "http[s]://host:port" of ferry-ingest; NULL or "" = never send */
    const char *enroll_token; /* one-time token for POST /v1/enroll */
    const char *ca_file;      /* CA bundle for https; NULL/"" = system default */
    const char *pinned_public_key; /* https pin (transport/http_client.h); NULL/"" = none */
    const char *device_name;       /* sent at enrollment; NULL/"" = host name */
    const char *device_class;      /* sent at enrollment, e.g. "jetson-orin-nano" */

    int64_t latency_ms[RECORD_STREAM_COUNT];       /* oldest unsent record may wait this long */
    uint64_t threshold_bytes[RECORD_STREAM_COUNT]; /* send once this much is waiting */
    uint64_t max_batch_bytes;    /* largest batch (raw payload bytes); fast links grow to it */
    uint64_t min_batch_bytes;    /* smallest batch the adaptation shrinks to on slow links */
    int64_t heartbeat_ms;        /* a heartbeat event when nothing else was sent this long */
    int64_t backoff_min_ms;      /* first retry delay; doubles per failure, with jitter */
    int64_t backoff_max_ms;      /* cap of the retry delay */
    int64_t request_deadline_ms; /* total time one request may take */
    /* Stall detection: a transfer slower than this many bytes/s for low_speed_time_s is
     * abandoned (0 = defaults: 100 B/s for 20 s). */
    long low_speed_bytes_per_s;
    long low_speed_time_s;
    /* Concurrent batch requests (pipelining while the next batch is built). 0 = 2. */
    unsigned max_in_flight;
    /* zstd level for batches (0 = the codec's default). */
    int zstd_level;
    /* Watch netlink for link/address/route changes (default true; tests may turn it off). */
    bool no_netlink;
    /* The engine shares its process with many others (ferry-fleet): when idle it frees its own
     * builder and collects its journal, but skips the process-wide releases (malloc_trim, and
     * dropping the journal map's pages, which walks /proc/self/maps): with a thousand engines
     * in one process they ran a hundred times a second over thousands of mappings. */
    bool no_process_release;
};

/* Fills the defaults of docs/configuration.md (event 1 s / metric 10 s / log 60 s latency,
 * 16/256/512 KiB thresholds, 4 MiB max batch, 16 KiB min, 5 min heartbeat, 1 s..5 min backoff,
 * 30 s deadline). Strings are left NULL. */
void sync_config_init(struct sync_config *cfg);

/* Per-stream counters in struct sync_status. */
struct sync_stream_status {
    uint64_t sent_records;     /* acknowledged by the cloud since start */
    uint64_t rejected_records; /* set aside after a 400 since start */
    uint64_t backlog_records;  /* unsent in the journal (last journal stats read) */
    uint64_t backlog_bytes;
    int64_t oldest_unsent_age_ms; /* 0 when nothing is unsent */
};

struct sync_status {
    char device_id[65]; /* "" until enrolled */
    bool enrolled;
    bool link_up;                 /* the last request reached the server */
    bool catching_up;             /* newest-first / backfill mode (docs/sync.md) */
    int64_t last_success_unix_ms; /* 0 = never */
    int64_t last_attempt_unix_ms;
    char last_error[160]; /* "" after a success */
    unsigned consecutive_failures;
    int64_t next_attempt_in_ms;    /* > 0 while backing off */
    uint64_t batch_budget_bytes;   /* current adaptive batch size (raw bytes) */
    double throughput_bytes_per_s; /* raw payload bytes/s of recent requests (EWMA) */
    double throughput_records_per_s;
    uint64_t batches_sent;
    uint64_t bytes_on_wire;   /* request + response bytes, headers included */
    uint64_t records_on_wire; /* records carried by acknowledged batches */
    uint64_t gaps_reported;   /* gap entries acknowledged by the cloud */
    unsigned in_flight;
    struct sync_stream_status stream[RECORD_STREAM_COUNT];
};

/*
 * Creates the engine on `base` with the journal `journal` (both borrowed; they must outlive the
 * engine). Loads or creates the device key in cfg->data_dir, reads the device id from the
 * journal's state table, starts the helper thread, the netlink watcher and the first send
 * attempt. Returns 0 and *out, or a negative sync_error (errbuf says what and where).
 * Call curl_global_init() once in main before.
 */
int sync_new(struct event_base *base, struct journal *journal, const struct sync_config *cfg,
             struct sync **out, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Cancels requests in flight (their records stay unsent in the journal and go next time),
 * stops the helper thread after its current job, and frees everything. NULL is a no-op. */
void sync_free(struct sync *s);

/* Tells the engine that records were appended (or anything else worth a look). Cheap: many
 * calls within one loop iteration cost one evaluation. */
void sync_wake(struct sync *s);

/*
 * Whether waking the engine once records just appended are durable could make it act before
 * the timer it has armed anyway: false while it has no server to send to, or while it backs off
 * a failure for at least another second (the timer that ends the backoff reads every committed
 * record then; netlink's connectivity events still wake it at once). ferryd asks it before it
 * waits for a collection round's commit, so an offline device does not wake its loop for every
 * round (the idle wake-up budget).
 */
bool sync_wants_commit_wake(const struct sync *s);

/* Fills *out with the engine's current state (for GET /status and /metrics). */
void sync_get_status(struct sync *s, struct sync_status *out);

/* Applies a new configuration (SIGHUP). Everything can change except data_dir (the key stays
 * where it is). A changed server_url or enroll_token re-enrolls when needed. Returns 0 or
 * SYNC_EINVAL/SYNC_ENOMEM (the old configuration stays in force). */
int sync_reload(struct sync *s, const struct sync_config *cfg, char *errbuf, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Signs a request of the device (manifest and artifact GETs; transport/reqsign.h) with the
 * device key at `time_s`, as the enrolled device id. `sync` is a struct sync (void * so that it
 * fits struct ota_config's sign_request). The key never leaves the engine. Returns 0, or -1 when
 * the device is not enrolled yet or the request cannot be signed. Loop thread.
 */
struct reqsign_headers;
int sync_sign_request(void *sync, const char *method, const char *target, int64_t time_s,
                      struct reqsign_headers *out) __attribute__((warn_unused_result));

/* Key file name inside data_dir. */
#define SYNC_KEY_FILE "device.key"
/* State table keys (journal state) the engine owns. */
#define SYNC_STATE_DEVICE_ID "sync.device_id"

#endif
