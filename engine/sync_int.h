/*
 * sync_int.h - internals shared by the sync engine's files (not a public header):
 *   sync.c          the loop side: scheduling, enrollment, requests, outcomes, status
 *   sync_worker.c   the helper thread: journal reads + batch encode/compress/sign, journal acks
 *   sync_identity.c the device key file
 */
#ifndef FERRY_ENGINE_SYNC_INT_H
#define FERRY_ENGINE_SYNC_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "common/buf.h"
#include "engine/sync.h"
#include "journal/journal.h"
#include "transport/batch.h"

/* Acknowledged records deleted after each ack beyond what journal_ack() deleted itself (see
 * sync_ack_run); bounded so that an ack never holds the helper thread for long. */
#define SYNC_GC_AFTER_ACK 16384

/* Ranges of one stream sent newest-first and not answered yet (catch-up); no newest-first read
 * starts while this many are out. */
#define SYNC_MAX_AHEAD 8

struct event;
struct http_client;
struct http_request;
struct netlink_watch;

/* ---- identity (sync_identity.c) ------------------------------------------------------------ */

/* Loads <data_dir>/device.key (64-byte Ed25519 secret key, which embeds the public key) or
 * creates it (mode 0600) when missing. A file that exists but is not a valid key is an error,
 * never overwritten: the device's identity is what the cloud knows it by. */
int sync_identity_load(const char *data_dir, uint8_t sk[crypto_sign_SECRETKEYBYTES],
                       uint8_t pk[crypto_sign_PUBLICKEYBYTES], char *errbuf, size_t errlen)
    __attribute__((warn_unused_result));

/* ---- helper thread (sync_worker.c) ----------------------------------------------------------- */

struct sync_job;
typedef void (*sync_job_fn)(struct sync_job *job);

/* A unit of work: `run` on the helper thread, then `done` on the loop thread (also when the
 * engine is being freed: `done` must then only release the job). */
struct sync_job {
    struct sync_job *next;
    struct sync *s;
    sync_job_fn run;
    sync_job_fn done;
};

struct sync_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sync_job *todo_head, *todo_tail;
    struct sync_job *done_head, *done_tail;
    bool stop;
    bool started;
    int efd; /* eventfd: "done list not empty", watched by the loop */
    struct event *ev;
};

int sync_worker_start(struct sync_worker *w, struct event_base *base)
    __attribute__((warn_unused_result));
void sync_worker_submit(struct sync_worker *w, struct sync_job *job);
/* Joins the thread; jobs not run yet and results not delivered get `done` with s->freeing. */
void sync_worker_stop(struct sync_worker *w);

/* How one stream is read into a batch. */
enum sync_read_mode {
    SYNC_READ_NONE = 0,
    SYNC_READ_OLDEST = 1, /* oldest first, seq > from_seq (backfill / normal) */
    SYNC_READ_NEWEST = 2, /* newest first, stop at seq <= from_seq (catch-up: current state) */
};

/* A batch being built or sent. */
struct sync_batch {
    struct sync_job job;
    /* in (loop -> worker) */
    char device_id[BATCH_MAX_DEVICE_ID + 1];
    enum sync_read_mode mode[RECORD_STREAM_COUNT];
    uint64_t from_seq[RECORD_STREAM_COUNT];
    /* OLDEST reads: stop before this seq (0 = no stop): it starts a range sent newest-first
     * that is still in flight, and the backfill must not send it again. */
    uint64_t stop_before[RECORD_STREAM_COUNT];
    uint64_t skip_to[RECORD_STREAM_COUNT]; /* that range's last seq */
    uint64_t budget_bytes;
    bool include_gaps;
    uint64_t cursor_epoch; /* s->cursor_epoch when the build started */
    /* out (worker -> loop) */
    int err; /* 0 or a batch/journal error */
    char errmsg[200];
    struct ferry_buf wire; /* the signed batch */
    bool has_range[RECORD_STREAM_COUNT];
    struct journal_range range[RECORD_STREAM_COUNT];
    uint64_t records[RECORD_STREAM_COUNT];
    uint64_t raw_bytes[RECORD_STREAM_COUNT];
    uint64_t last_read_seq[RECORD_STREAM_COUNT]; /* cursor after an OLDEST read */
    bool more[RECORD_STREAM_COUNT];    /* the read stopped at the budget: older records wait */
    bool at_skip[RECORD_STREAM_COUNT]; /* the read reached stop_before: continue after skip_to */
    uint32_t total_records;
    uint64_t total_raw_bytes;
    size_t n_gaps;
    uint64_t gaps_max_id; /* journal gap id to mark reported after the ack */
    /* while in flight */
    struct http_request *req;
    struct sync_batch *next_in_flight;
    int64_t sent_at_ms;
};

/* Acknowledgement / rejection applied to the journal on the helper thread. */
struct sync_ack {
    struct sync_job job;
    bool reject; /* 400: set aside, append an event saying why */
    char reason[200];
    size_t n[RECORD_STREAM_COUNT];
    struct journal_range *ranges[RECORD_STREAM_COUNT]; /* malloc'd */
    uint64_t gaps_max_id;
    size_t n_gaps;
    uint64_t records[RECORD_STREAM_COUNT]; /* for counters */
    int err;
    char errmsg[200];
};

/* ---- the engine ------------------------------------------------------------------------------ */

struct sync_stream_state {
    uint64_t cursor;    /* OLDEST reads continue after this (pipelining); 0 = oldest */
    uint64_t live_high; /* catch-up: highest seq sent newest-first */
    /* catch-up: ranges sent newest-first, in flight (ascending); the backfill reads around
     * them so that no record goes twice while nothing fails (docs/sync.md "Catch-up") */
    struct journal_range ahead[SYNC_MAX_AHEAD];
    unsigned n_ahead;
    int64_t live_sent_ms; /* when the last newest-first read was built */
    bool catching_up;
    int64_t pending_since_ms; /* monotonic: when we first saw unsent records (latency timer) */
    uint64_t in_flight_bytes; /* raw bytes of this stream in batches built or in flight */
    struct sync_stream_status st;
};

struct sync {
    struct event_base *base;
    struct journal *journal;
    /* configuration (strings owned) */
    struct sync_config cfg;
    char *url_batches;
    char *url_enroll;
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    char device_id[BATCH_MAX_DEVICE_ID + 1];
    bool enrolled;

    struct http_client *http;
    struct netlink_watch *netlink;
    struct sync_worker worker;
    struct event *eval_ev;  /* deferred evaluation (coalesces wakes) */
    struct event *timer_ev; /* next latency deadline / heartbeat / backoff end */

    /* helper-thread-only state */
    struct batch_builder *builder;
    char builder_device_id[BATCH_MAX_DEVICE_ID + 1];
    struct journal_gap *gap_scratch;
    int zstd_level;          /* copied at start: the thread never reads s->cfg */
    bool no_process_release; /* likewise */

    /* loop state */
    bool freeing;
    bool building; /* a build job is with the worker */
    /* Bumped by every cursor reset: a build that started before a reset must not move the
     * cursor forward past the records the reset means to read again. */
    uint64_t cursor_epoch;
    unsigned empty_builds;        /* builds in a row that found nothing to send */
    unsigned acks_pending;        /* ack jobs with the worker */
    bool builder_live;            /* a builder may exist on the worker (released when idle) */
    bool releasing;               /* a release job is with the worker */
    struct sync_batch *in_flight; /* list of batches being sent */
    unsigned n_in_flight;
    bool gaps_in_flight;
    struct http_request *enroll_req;
    char *enroll_body;       /* borrowed by enroll_req until its on_done */
    int64_t next_attempt_ms; /* monotonic; 0 = now */
    bool last_failure_network;
    unsigned failures;
    unsigned failures_before_success; /* for the "link is back" line */
    uint64_t budget_bytes;            /* adaptive batch size */
    uint64_t split_cap_bytes;         /* after 413: below min_batch if needed; 0 = none */
    double throughput_bps;            /* link estimate (sync_next_batch_bytes): full batches only */
    double throughput_rps;            /* shown in /status: every acknowledged request */
    double shown_bps;                 /* likewise, payload bytes */
    int64_t last_send_ok_ms;          /* monotonic: heartbeat reference */
    int64_t start_ms;
    bool heartbeat_pending;
    struct sync_stream_state stream[RECORD_STREAM_COUNT];
    struct sync_status status;
    uint64_t rng;
};

/* Appends an event record (name + string fields) to the journal. Safe on any thread; used by the
 * loop (heartbeat) without waiting and by the helper thread (rejections). */
int sync_append_event(struct sync *s, const char *name, const char *const *keys,
                      const char *const *values, size_t n, unsigned flags);

/* Parsers of the ingest's answers (in sync.c; non-static so that tests/fuzz/sync reaches them).
 *
 * sync_parse_enroll_response: the 200 body of POST /v1/enroll, {"device_id":"..."}. Copies a valid
 * device id (batch_device_id_valid) NUL-terminated into id (id_cap bytes, at least
 * BATCH_MAX_DEVICE_ID + 1) and returns 0; -1 for anything else (no JSON, no string device_id, an
 * invalid id). body may be NULL.
 *
 * sync_parse_ack: fills `a` from the 200 body of POST /v1/batches,
 * {"acked":{"event":[[first,last],...],...}}, keeping only the parts of each range inside what
 * batch `b` covered; resets the cursor in `s` of a stream the ack does not fully cover. Only
 * reads b->has_range/range/records and writes s->stream[].cursor. Returns 0 or SYNC_ENOMEM;
 * a->ranges[] are then malloc'd (sync_ack_free). */
struct http_response;
int sync_parse_enroll_response(const uint8_t *body, size_t body_len, char *id, size_t id_cap)
    __attribute__((warn_unused_result));
int sync_parse_ack(struct sync *s, struct sync_batch *b, const struct http_response *resp,
                   struct sync_ack *a) __attribute__((warn_unused_result));

/* Worker jobs. */
void sync_batch_build_run(struct sync_job *job);
void sync_ack_run(struct sync_job *job);
void sync_batch_free(struct sync_batch *b);
/* Idle: frees the batch builder (its zstd context and buffers, megabytes after a big batch) and
 * returns freed heap to the kernel; the next batch makes a new builder. */
void sync_release_run(struct sync_job *job);
void sync_ack_free(struct sync_ack *a);

#endif
