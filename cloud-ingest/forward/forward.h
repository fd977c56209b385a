/*
 * forward.h - forwarders: ferry-ingest feeding the user's time-series servers (docs/forwarding.md).
 *
 * A forwarder is one `[forward.NAME]` section of the configuration: a sink type (Prometheus
 * remote write 1.0, or InfluxDB 1.x /write), its URL and a filter of devices and streams. Each
 * has a reader thread that follows the store in commit order (store.h, "Commit order") from a
 * durable cursor kept in the store under "fwd.NAME", and `workers` threads that encode and send
 * its batches at once (forward.c):
 *
 *   load cursor -> read up to batch_records records after it, keep copies of the ones the
 *   filter keeps -> a worker encodes and sends them (retry with backoff and jitter while the sink
 *   answers 429, 5xx or not at all, honouring Retry-After) -> the cursor moves past the batch
 *   once it and every earlier batch were accepted, and is stored -> again; sleep a little when
 *   there is nothing new.
 *
 * Invariants:
 *   1. The cursor is stored only after the sink accepted everything before it, so after any
 *      crash the forwarder resends what was in flight or delivered since the last store (about
 *      a second): delivery is at least once, and exactly once in sinks where writing the same
 *      sample again is harmless (same series, same timestamp, same value: Prometheus,
 *      VictoriaMetrics with deduplication, InfluxDB).
 *   2. Ingestion never waits for a forwarder: the store is the buffer, forwarders only read it
 *      (LMDB readers never block the writer; PostgreSQL reads are plain index scans).
 *   3. Memory is bounded: at most 4 x workers batches per forwarder, and the series guard
 *      (Prometheus) keeps at most series_limit series per forwarder (shared by its workers);
 *      samples of further series are dropped and counted.
 *   4. A batch the sink refuses for good (4xx other than 408/429) is logged, counted as
 *      rejected and passed, so one malformed sample cannot stop a forwarder forever.
 *   5. With workers > 1, requests of one forwarder may reach the sink out of order; the sinks
 *      accept that (Prometheus with its out-of-order window, docs/forwarding.md).
 *
 * Several ingest processes on one PostgreSQL: each configured with [forward.NAME] competes for
 * the store lease "fwd.NAME" (lease_ttl); only the holder reads and sends, the others stand by
 * and take over from the durable cursor within lease_ttl when the holder dies
 * (forward_lease.c). With LMDB the one process always holds it.
 *
 * Threads: ingest_forwarders_start() starts the reader thread of each forwarder, which starts
 * its workers; the status functions (expose, the /v1/forwarders handler) read atomics and a
 * mutex-guarded error text, never the store or the network, so they are safe on the ingest's
 * worker threads.
 */
#ifndef FERRY_INGEST_FORWARD_H
#define FERRY_INGEST_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ingest_store;
struct ingest_router;
struct ferry_buf;

#define INGEST_FORWARD_MAX 16      /* [forward.NAME] sections */
#define INGEST_FORWARD_NAME_MAX 48 /* NAME: 1..48 of [A-Za-z0-9_-] */
#define INGEST_FORWARD_URL_MAX 1024
#define INGEST_FORWARD_FILTER_MAX 1024
#define INGEST_FORWARD_WORKERS_MAX 16 /* workers = N: 1..16 */

enum ingest_forward_type {
    INGEST_FORWARD_PROM_RW = 0,  /* Prometheus remote write 1.0 (protobuf + snappy) */
    INGEST_FORWARD_INFLUXDB = 1, /* InfluxDB 1.x /write (line protocol, gzip) */
};

enum ingest_forward_uint {
    INGEST_FORWARD_UINT_INTEGER = 0,  /* 3u written as 3i (InfluxDB 1.x OSS has no unsigned) */
    INGEST_FORWARD_UINT_UNSIGNED = 1, /* 3u kept (InfluxDB 1.8+ built with it, 2.x) */
};

/* One [forward.NAME] section. Plain data (copied with the ingest's configuration). */
struct ingest_forward_config {
    char name[INGEST_FORWARD_NAME_MAX + 1];
    bool has_type;
    enum ingest_forward_type type;
    char url[INGEST_FORWARD_URL_MAX];
    /* devices: comma-separated ids, each may end in '*' (prefix); "" = every device */
    char devices[INGEST_FORWARD_FILTER_MAX];
    unsigned streams_mask;  /* bit (1 << enum record_stream); default: metrics only */
    unsigned batch_records; /* records read per batch (5000) */
    unsigned series_limit;  /* Prometheus: distinct series kept (100000) */
    unsigned workers;       /* batches encoded and sent at once (0: auto, from the cores) */
    int64_t timeout_ms;     /* one request (10s) */
    int64_t max_backoff_ms; /* longest wait between retries (30s) */
    int64_t idle_ms;        /* wait when nothing is new (200ms) */
    int64_t lease_ttl_ms;   /* the lease "fwd.NAME" among ingests on one PostgreSQL (15s) */
    char precision[3];      /* InfluxDB: ns, us, ms or s (ns) */
    bool gzip;              /* InfluxDB: gzip the body (on) */
    enum ingest_forward_uint uint_as;
};

struct ingest_forward_set {
    struct ingest_forward_config f[INGEST_FORWARD_MAX];
    size_t n;
};

/*
 * Sets `key` of forwarder `name` from the INI section [forward.NAME] (or --forward.NAME.key);
 * a new name adds a forwarder with the defaults. Keys: type, url, devices, streams, batch_records,
 * series_limit, workers, timeout, max_backoff, idle, lease_ttl, precision, gzip, uint. Returns 0 or
 * -1 with err saying which key and why.
 */
int ingest_forward_config_set(struct ingest_forward_set *set, const char *name, const char *key,
                              const char *value, char *err, size_t err_len)
    __attribute__((warn_unused_result));
/* Checks every forwarder is complete (type and url set). Returns 0 or -1 with err. */
int ingest_forward_config_check(const struct ingest_forward_set *set, char *err, size_t err_len)
    __attribute__((warn_unused_result));
/* The --help lines of the keys above. */
const char *ingest_forward_config_help(void);

struct ingest_forwarders;

/*
 * Starts one thread per configured forwarder (none configured: an empty set, no threads). The
 * store is borrowed and must outlive ingest_forwarders_stop(). Returns 0 or -1 with err.
 */
int ingest_forwarders_start(const struct ingest_forward_set *cfg, struct ingest_store *store,
                            struct ingest_forwarders **out, char *err, size_t err_len)
    __attribute__((warn_unused_result));
/* Stops the threads (an unfinished send is abandoned; its records are sent again next start)
 * and frees. NULL is allowed. */
void ingest_forwarders_stop(struct ingest_forwarders *f);

/* Adds GET /v1/forwarders to `router` (the JSON status of every forwarder). `f` must outlive
 * the router's use. Returns 0 or -1. */
int ingest_forwarders_register(struct ingest_forwarders *f, struct ingest_router *router)
    __attribute__((warn_unused_result));

/* Appends the ferry_forward_* series (Prometheus text format) to `out`. NULL f: nothing. */
int ingest_forwarders_expose(struct ingest_forwarders *f, struct ferry_buf *out)
    __attribute__((warn_unused_result));

#endif
