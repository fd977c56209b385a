/*
 * forward.c - the forwarder loop (forward.h): one thread per [forward.NAME] section follows the
 * store in commit order from its durable cursor, encodes what its filter keeps, sends it with
 * libcurl and stores the cursor after the sink accepted it.
 *
 * Two threads per forwarder, so that encoding the next batch overlaps sending this one:
 *
 *   reader  cursor_load() -> read_batch() -> (nothing new: sleep `idle`) | hand_over():
 *           encode into a free one of two slots and queue it for the sender -> read_batch() ...
 *   sender  post_body(): send the oldest queued slot; no answer, 408, 429, 5xx: wait (backoff
 *           with jitter, at least Retry-After) and send again; 2xx: delivered; other: refused
 *           for good, counted, passed -> `delivered` moves past the slot, the slot is freed ->
 *           cursor_save() at most once a second, and whenever the queue runs empty.
 *   stop    both threads leave at their next wait; queued slots are abandoned (their records
 *           are after the stored cursor and are sent again at the next start).
 *   lease   at the top of every turn the reader checks the lease "fwd.NAME" (forward_lease.c,
 *           forward_lease_check()): without it, state "standby" and no read; on taking it, the
 *           reader continues from the durable cursor.
 *
 * Blocking is fine here: these are the forwarder's own threads, never an event loop. Waits are
 * on condition variables, so stopping is prompt; a request in flight ends by its timeout.
 *
 * Invariant: the cursor stored never passes a record whose batch the sink has not accepted (or
 * refused for good); see forward.h for what that means for delivery.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/http.h>
#include <sodium.h>

#include "cloud-ingest/forward/forward.h"
#include "cloud-ingest/forward/forward_impl.h"
#include "cloud-ingest/router.h"
#include "cloud-ingest/store.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

/* Longest time the stored cursor trails the sent batches while they follow each other. */
#define FWD_CURSOR_SAVE_MS 1000

enum fwd_outcome {
    FWD_SENT = 0,   /* the sink accepted the batch */
    FWD_RETRY = 1,  /* try again later: 408, 429, 5xx, no answer */
    FWD_REJECT = 2, /* refused for good: other 4xx (and 3xx: a wrong URL) */
};

/* One encoded batch on its way from the reader to the sender (two, so that the reader encodes
 * the next batch while the sender posts this one). */
struct fwd_job {
    struct ferry_buf body;          /* request body (empty: nothing in the batch to send) */
    struct ingest_store_cursor end; /* the cursor after the batch */
    uint64_t records;               /* records the batch passed */
    size_t samples;                 /* samples or lines in the body */
    bool busy;                      /* handed to the sender and not yet delivered */
};

struct fwd {
    struct ingest_forward_config cfg;
    struct ingest_store *store;
    struct ingest_forwarders *set;
    char cursor_name[INGEST_CURSOR_NAME_MAX + 1];
    pthread_t thread;
    bool started;
    /* reader state (reader thread only): read_cursor is where reading continues */
    struct ingest_store_cursor read_cursor, batch_end;
    struct fwd_prom *prom;
    struct ferry_buf lines;
    struct record_scratch *rs;
    uint64_t batch_read, batch_lines;
    int64_t last_lag_ms;
    int next_slot;
    /* hand-off between the reader and the sender (q_lock) */
    pthread_t sender;
    bool sender_started;
    pthread_mutex_t q_lock;
    pthread_cond_t q_cond;
    struct fwd_job jobs[2];
    struct fwd_job *queue[2]; /* handed over, in order; the sender pops after delivery */
    size_t queued;
    struct ingest_store_cursor delivered; /* everything up to here is in the sink */
    /* sender state (sender thread only) */
    CURL *curl;
    long long cursor_saved_ms;
    bool cursor_dirty; /* delivered is ahead of the stored cursor */
    /* status, read by other threads */
    _Atomic uint64_t records_passed, samples_sent, batches_sent, retries, rejected, lag_records,
        cursor_records, skipped_values, dropped_samples, series, undecodable;
    _Atomic int64_t lag_ns, last_success_ns;
    _Atomic int state;      /* 0 starting, 1 idle, 2 sending, 3 retrying, 4 standby */
    struct fwd_lease lease; /* several ingests on one PostgreSQL: who runs this forwarder */
    pthread_mutex_t err_lock;
    char last_error[256];
};

struct ingest_forwarders {
    struct fwd *f;
    size_t n;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_bool stop;
};

static const char *const state_names[] = {"starting", "idle", "sending", "retrying", "standby"};

static const char *type_name(enum ingest_forward_type t)
{
    return t == INGEST_FORWARD_PROM_RW ? "prometheus_remote_write" : "influxdb";
}

static void set_error(struct fwd *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct fwd *f, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&f->err_lock);
    va_start(ap, fmt);
    vsnprintf(f->last_error, sizeof(f->last_error), fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&f->err_lock);
}

/* Waits up to ms or until stop; returns true when the forwarders are stopping. */
static bool wait_ms(struct ingest_forwarders *set, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&set->lock);
    while (!set->stop && pthread_cond_timedwait(&set->cond, &set->lock, &ts) == 0) {
    }
    bool stop = set->stop;
    pthread_mutex_unlock(&set->lock);
    return stop;
}

static bool stopping(struct ingest_forwarders *set)
{
    return atomic_load(&set->stop);
}

/* ---- Filter ------------------------------------------------------------------------------- */

static bool device_selected(const char *list, const char *id)
{
    if (list[0] == '\0')
        return true;
    size_t id_len = strlen(id);
    for (const char *p = list; *p != '\0';) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t n = strcspn(p, ", ");
        if (n == 0)
            break;
        if (p[n - 1] == '*') {
            if (id_len >= n - 1 && memcmp(id, p, n - 1) == 0)
                return true;
        } else if (n == id_len && memcmp(id, p, n) == 0) {
            return true;
        }
        p += n;
    }
    return false;
}

/* ---- READ: one batch ------------------------------------------------------------------------ */

static int on_record(const struct ingest_committed *rec, const struct ingest_store_cursor *after,
                     void *arg)
{
    struct fwd *f = arg;
    f->batch_end = *after;
    f->batch_read++;
    if ((f->cfg.streams_mask & (1u << rec->stream)) == 0 ||
        !device_selected(f->cfg.devices, rec->device_id))
        return 0;
    struct record r;
    if (rec->packed == NULL ||
        record_unpack(rec->packed, rec->packed_len, f->rs, &r, NULL, 0) != 0) {
        atomic_fetch_add(&f->undecodable, 1);
        return 0;
    }
    int rc;
    if (f->cfg.type == INGEST_FORWARD_PROM_RW) {
        rc = fwd_prom_add(f->prom, rec->device_id, &r, rec->ts_corrected_ns);
    } else {
        uint64_t skipped = 0;
        rc = fwd_influx_line(&f->lines, rec->device_id, &r, rec->ts_corrected_ns, f->cfg.precision,
                             f->cfg.uint_as, &f->batch_lines, &skipped);
        atomic_fetch_add(&f->skipped_values, skipped);
    }
    if (rc != 0) {
        /* Out of memory: stop the batch here; the record is read again in the next one. */
        f->batch_read--;
        return 1;
    }
    return 0;
}

/* Reads the next batch after f->read_cursor into the encoder. Returns 0 or a store error. */
static int read_batch(struct fwd *f)
{
    f->batch_end = f->read_cursor;
    f->batch_read = 0;
    f->batch_lines = 0;
    ferry_buf_reset(&f->lines);
    if (f->prom != NULL)
        fwd_prom_reset(f->prom);
    struct ingest_store_cursor from = f->read_cursor;
    int rc = ingest_store_read_committed(f->store, &from, f->cfg.batch_records, on_record, f);
    if (f->prom != NULL) {
        atomic_store(&f->dropped_samples, fwd_prom_dropped(f->prom));
        atomic_store(&f->skipped_values, fwd_prom_skipped(f->prom));
        atomic_store(&f->series, fwd_prom_series(f->prom));
    }
    return rc;
}

/* ---- SEND ----------------------------------------------------------------------------------- */

struct resp {
    long status;
    int64_t retry_after_ms;
    struct ferry_buf body;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct ferry_buf *b = arg;
    size_t len = size * n;
    /* Only the start of an error body is kept (for last_error); the rest is read and dropped. */
    if (b->len < 512 && ferry_buf_append(b, p, len < 512 - b->len ? len : 512 - b->len) != 0)
        return 0;
    return len;
}

/* Retry-After: delay-seconds or an HTTP-date (RFC 9110 10.2.3). */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct resp *r = arg;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        char v[64];
        size_t vl = len - 12;
        if (vl >= sizeof(v))
            vl = sizeof(v) - 1;
        memcpy(v, p + 12, vl);
        v[vl] = '\0';
        char *s = v + strspn(v, " \t");
        s[strcspn(s, "\r\n")] = '\0';
        uint64_t secs;
        if (ferry_parse_u64(s, 86400, &secs) == 0) {
            r->retry_after_ms = (int64_t)secs * 1000;
        } else {
            time_t when = curl_getdate(s, NULL);
            time_t now = time(NULL);
            if (when != -1 && when > now)
                r->retry_after_ms = (int64_t)(when - now) * 1000;
        }
    }
    return len;
}

/* The one place that decides what an answer means (STYLE.md rule 20). */
static enum fwd_outcome classify(CURLcode cc, long status)
{
    if (cc != CURLE_OK)
        return FWD_RETRY; /* no answer: connection refused, timeout, reset */
    if (status >= 200 && status < 300)
        return FWD_SENT;
    if (status == 408 || status == 429 || status >= 500)
        return FWD_RETRY;
    return FWD_REJECT;
}

static enum fwd_outcome post_once(struct fwd *f, const struct ferry_buf *body, struct resp *r)
{
    CURL *c = f->curl;
    struct curl_slist *h = NULL;
    char url[INGEST_FORWARD_URL_MAX + 32];
    if (f->cfg.type == INGEST_FORWARD_PROM_RW) {
        ferry_strlcpy(url, f->cfg.url, sizeof(url));
        h = curl_slist_append(h, "Content-Type: application/x-protobuf");
        h = curl_slist_append(h, "Content-Encoding: snappy");
        h = curl_slist_append(h, "X-Prometheus-Remote-Write-Version: 0.1.0");
    } else {
        snprintf(url, sizeof(url), "%s%sprecision=%s", f->cfg.url,
                 strchr(f->cfg.url, '?') != NULL ? "&" : "?",
                 strcmp(f->cfg.precision, "us") == 0 ? "u" : f->cfg.precision);
        h = curl_slist_append(h, "Content-Type: text/plain; charset=utf-8");
        if (f->cfg.gzip)
            h = curl_slist_append(h, "Content-Encoding: gzip");
    }
    h = curl_slist_append(h, "User-Agent: ferry-ingest");
    h = curl_slist_append(h, "Expect:");
    memset(r, 0, sizeof(*r));
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)f->cfg.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)f->cfg.timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    enum fwd_outcome out = classify(cc, r->status);
    if (out != FWD_SENT) {
        struct ferry_buf clean = FERRY_BUF_INIT;
        if (fwd_utf8_append(&clean, (const char *)r->body.data, r->body.len) == 0 &&
            ferry_buf_append_u8(&clean, 0) == 0) {
            for (size_t i = 0; i + 1 < clean.len; i++)
                if (clean.data[i] < 0x20)
                    clean.data[i] = ' ';
        }
        if (cc != CURLE_OK)
            set_error(f, "POST %s: %s", f->cfg.url, curl_easy_strerror(cc));
        else
            set_error(f, "POST %s: HTTP %ld %.160s", f->cfg.url, r->status,
                      clean.data != NULL ? (const char *)clean.data : "");
        ferry_buf_free(&clean);
    }
    ferry_buf_free(&r->body);
    return out;
}

/* Encodes the batch the reader holds into `out` (reader thread). 0 or -1 (memory). */
static int encode_body(struct fwd *f, struct ferry_buf *out)
{
    if (f->cfg.type == INGEST_FORWARD_PROM_RW)
        return fwd_prom_finish(f->prom, out);
    if (f->cfg.gzip)
        return fwd_gzip(f->lines.data, f->lines.len, out);
    ferry_buf_reset(out);
    return ferry_buf_append(out, f->lines.data, f->lines.len);
}

/* Sends a body until the sink takes or refuses it (sender thread). Returns SENT, REJECT, or -1
 * when the forwarders are stopping. */
static int post_body(struct fwd *f, const struct ferry_buf *body, uint64_t records)
{
    int64_t backoff_ms = 100;
    for (;;) {
        atomic_store(&f->state, 2);
        struct resp r;
        enum fwd_outcome out = post_once(f, body, &r);
        if (out == FWD_SENT) {
            atomic_store(&f->last_success_ns, ferry_realtime_ns());
            return FWD_SENT;
        }
        if (out == FWD_REJECT) {
            char error[sizeof(f->last_error)];
            pthread_mutex_lock(&f->err_lock);
            ferry_strlcpy(error, f->last_error, sizeof(error));
            pthread_mutex_unlock(&f->err_lock);
            log_warn("forward", "%s: batch of %" PRIu64 " records refused for good: %s",
                     f->cfg.name, records, error);
            return FWD_REJECT;
        }
        atomic_store(&f->state, 3);
        atomic_fetch_add(&f->retries, 1);
        /* Full jitter over the current backoff, at least the sink's Retry-After. */
        int64_t wait = (int64_t)randombytes_uniform((uint32_t)backoff_ms) + 1;
        if (r.retry_after_ms > wait)
            wait = r.retry_after_ms < 3600 * 1000 ? r.retry_after_ms : 3600 * 1000;
        backoff_ms =
            backoff_ms * 2 > f->cfg.max_backoff_ms ? f->cfg.max_backoff_ms : backoff_ms * 2;
        if (wait_ms(f->set, wait))
            return -1;
    }
}

/* ---- The loop ------------------------------------------------------------------------------- */

static void update_lag(struct fwd *f, bool force)
{
    long long now = ferry_monotonic_ms();
    if (!force && now - f->last_lag_ms < 1000)
        return;
    f->last_lag_ms = now;
    uint64_t records = 0;
    int64_t next_ns = 0;
    pthread_mutex_lock(&f->q_lock);
    struct ingest_store_cursor delivered = f->delivered;
    pthread_mutex_unlock(&f->q_lock);
    if (ingest_store_commit_lag(f->store, &delivered, &records, &next_ns) != 0)
        return;
    atomic_store(&f->lag_records, records);
    int64_t lag = records > 0 && next_ns > 0 ? ferry_realtime_ns() - next_ns : 0;
    atomic_store(&f->lag_ns, lag > 0 ? lag : 0);
    atomic_store(&f->cursor_records, delivered.records);
}

/* Stores the cursor once; true on success. */
static bool cursor_save_once(struct fwd *f, const struct ingest_store_cursor *c)
{
    int rc = ingest_store_cursor_set(f->store, f->cursor_name, c);
    if (rc != 0) {
        set_error(f, "store cursor: %s", ingest_store_strerror(rc));
        return false;
    }
    f->cursor_dirty = false;
    f->cursor_saved_ms = ferry_monotonic_ms();
    return true;
}

/* Stores the cursor, retrying while the store fails; false when stopping. */
static bool cursor_save(struct fwd *f, const struct ingest_store_cursor *c)
{
    for (int64_t backoff = 100;; backoff = backoff < 5000 ? backoff * 2 : 5000) {
        int rc = ingest_store_cursor_set(f->store, f->cursor_name, c);
        if (rc == 0) {
            f->cursor_dirty = false;
            f->cursor_saved_ms = ferry_monotonic_ms();
            return true;
        }
        set_error(f, "store cursor: %s", ingest_store_strerror(rc));
        if (wait_ms(f->set, backoff))
            return false;
    }
}

static bool cursor_load(struct fwd *f)
{
    for (int64_t backoff = 100;; backoff = backoff < 5000 ? backoff * 2 : 5000) {
        int rc = ingest_store_cursor_get(f->store, f->cursor_name, &f->read_cursor);
        if (rc == 0 || rc == INGEST_STORE_ENOTFOUND) {
            if (rc == INGEST_STORE_ENOTFOUND)
                memset(&f->read_cursor, 0, sizeof(f->read_cursor));
            pthread_mutex_lock(&f->q_lock); /* the sender reads it (a lease taken over) */
            f->delivered = f->read_cursor;
            pthread_mutex_unlock(&f->q_lock);
            return true;
        }
        set_error(f, "load cursor: %s", ingest_store_strerror(rc));
        if (wait_ms(f->set, backoff))
            return false;
    }
}

/* The sender thread: posts the reader's batches in order, moves `delivered` past each one the
 * sink accepted (or refused for good) and stores it. The cursor is stored at most once a second
 * while batches follow each other, and whenever the sender falls idle and at stop: a store commit
 * is an fsync, which costs more than sending a batch. A crash resends at most that second. */
static void *fwd_sender(void *arg)
{
    struct fwd *f = arg;
    for (;;) {
        pthread_mutex_lock(&f->q_lock);
        while (f->queued == 0 && !stopping(f->set)) {
            if (f->cursor_dirty) {
                struct ingest_store_cursor c = f->delivered;
                pthread_mutex_unlock(&f->q_lock);
                if (!cursor_save_once(f, &c) && wait_ms(f->set, 1000)) {
                    pthread_mutex_lock(&f->q_lock);
                    break; /* stopping */
                }
                pthread_mutex_lock(&f->q_lock);
                continue;
            }
            pthread_cond_wait(&f->q_cond, &f->q_lock);
        }
        if (stopping(f->set)) {
            pthread_mutex_unlock(&f->q_lock);
            break;
        }
        struct fwd_job *job = f->queue[0];
        pthread_mutex_unlock(&f->q_lock);
        if (job->samples > 0) {
            int out = post_body(f, &job->body, job->records);
            if (out == -1)
                break;
            if (out == FWD_REJECT) {
                atomic_fetch_add(&f->rejected, 1);
            } else {
                atomic_fetch_add(&f->batches_sent, 1);
                atomic_fetch_add(&f->samples_sent, job->samples);
            }
        }
        atomic_fetch_add(&f->records_passed, job->records);
        pthread_mutex_lock(&f->q_lock);
        f->delivered = job->end;
        atomic_store(&f->cursor_records, job->end.records);
        f->queue[0] = f->queue[1];
        f->queued--;
        job->busy = false;
        f->cursor_dirty = true;
        struct ingest_store_cursor c = f->delivered;
        pthread_cond_broadcast(&f->q_cond);
        pthread_mutex_unlock(&f->q_lock);
        if (ferry_monotonic_ms() - f->cursor_saved_ms >= FWD_CURSOR_SAVE_MS && !cursor_save(f, &c))
            break;
    }
    if (f->cursor_dirty) {
        pthread_mutex_lock(&f->q_lock);
        struct ingest_store_cursor c = f->delivered;
        pthread_mutex_unlock(&f->q_lock);
        (void)cursor_save_once(f, &c);
    }
    return NULL;
}

/* Hands the batch just read to the sender, waiting for a free slot; false when stopping. */
static bool hand_over(struct fwd *f, size_t samples)
{
    struct fwd_job *job = &f->jobs[f->next_slot];
    pthread_mutex_lock(&f->q_lock);
    while (job->busy && !stopping(f->set))
        pthread_cond_wait(&f->q_cond, &f->q_lock);
    pthread_mutex_unlock(&f->q_lock);
    if (stopping(f->set))
        return false;
    /* The slot is free: the sender is done with its body. */
    job->samples = samples;
    job->records = f->batch_read;
    job->end = f->batch_end;
    ferry_buf_reset(&job->body);
    if (samples > 0) {
        while (encode_body(f, &job->body) != 0) {
            set_error(f, "out of memory encoding a batch");
            if (wait_ms(f->set, 1000))
                return false;
        }
    }
    pthread_mutex_lock(&f->q_lock);
    job->busy = true;
    f->queue[f->queued++] = job;
    pthread_cond_broadcast(&f->q_cond);
    pthread_mutex_unlock(&f->q_lock);
    f->next_slot ^= 1;
    return true;
}

/* The lease (forward_lease.c), checked at the top of every turn of the reader: true when this
 * process holds it and may read. On taking it over, the reader waits until the sender delivered
 * what it still had queued and continues from the durable cursor (another process may have
 * moved it). Without it: state "standby", a wait, false. */
static bool forward_lease_check(struct fwd *f)
{
    switch (fwd_lease_poll(&f->lease, f->store)) {
    case FWD_LEASE_HELD: return true;
    case FWD_LEASE_ACQUIRED:
        pthread_mutex_lock(&f->q_lock);
        while (f->queued > 0 && !stopping(f->set))
            pthread_cond_wait(&f->q_cond, &f->q_lock);
        pthread_mutex_unlock(&f->q_lock);
        if (stopping(f->set) || !cursor_load(f))
            return false;
        atomic_store(&f->state, 0);
        update_lag(f, true);
        return true;
    case FWD_LEASE_NOT_HELD: break;
    }
    atomic_store(&f->state, 4);
    (void)wait_ms(f->set, fwd_lease_poll_ms(&f->lease));
    return false;
}

/* The reader thread: reads and encodes the next batch while the sender posts the previous. */
static void *fwd_main(void *arg)
{
    struct fwd *f = arg;
    if (!cursor_load(f))
        return NULL;
    log_info("forward", "%s: %s to %s from record %" PRIu64, f->cfg.name, type_name(f->cfg.type),
             f->cfg.url, f->read_cursor.records);
    if (pthread_create(&f->sender, NULL, fwd_sender, f) != 0) {
        set_error(f, "cannot start the sender thread");
        log_error("forward", "%s: cannot start its sender thread", f->cfg.name);
        return NULL;
    }
    f->sender_started = true;
    update_lag(f, true);
    while (!stopping(f->set)) {
        if (!forward_lease_check(f))
            continue;
        int rc = read_batch(f);
        if (rc != 0) {
            set_error(f, "read store: %s", ingest_store_strerror(rc));
            if (wait_ms(f->set, 1000))
                break;
            continue;
        }
        if (f->batch_read == 0) {
            pthread_mutex_lock(&f->q_lock);
            bool drained = f->queued == 0;
            pthread_mutex_unlock(&f->q_lock);
            if (drained)
                atomic_store(&f->state, 1);
            update_lag(f, true);
            if (wait_ms(f->set, f->cfg.idle_ms))
                break;
            continue;
        }
        size_t samples = f->cfg.type == INGEST_FORWARD_PROM_RW ? fwd_prom_samples(f->prom)
                                                               : (size_t)f->batch_lines;
        if (!hand_over(f, samples))
            break;
        f->read_cursor = f->batch_end;
        update_lag(f, false);
    }
    return NULL;
}

/* ---- Lifecycle ------------------------------------------------------------------------------ */

static void fwd_free(struct fwd *f)
{
    fwd_prom_free(f->prom);
    ferry_buf_free(&f->lines);
    ferry_buf_free(&f->jobs[0].body);
    ferry_buf_free(&f->jobs[1].body);
    pthread_mutex_destroy(&f->q_lock);
    pthread_cond_destroy(&f->q_cond);
    free(f->rs);
    if (f->curl != NULL)
        curl_easy_cleanup(f->curl);
    pthread_mutex_destroy(&f->err_lock);
}

int ingest_forwarders_start(const struct ingest_forward_set *cfg, struct ingest_store *store,
                            struct ingest_forwarders **out, char *err, size_t err_len)
{
    *out = NULL;
    if (ingest_forward_config_check(cfg, err, err_len) != 0)
        return -1;
    struct ingest_forwarders *set = calloc(1, sizeof(*set));
    if (set == NULL || (cfg->n > 0 && (set->f = calloc(cfg->n, sizeof(*set->f))) == NULL)) {
        free(set);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    if (sodium_init() < 0) {
        free(set->f);
        free(set);
        snprintf(err, err_len, "libsodium: cannot initialise");
        return -1;
    }
    pthread_mutex_init(&set->lock, NULL);
    pthread_cond_init(&set->cond, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (size_t i = 0; i < cfg->n; i++) {
        struct fwd *f = &set->f[i];
        f->cfg = cfg->f[i];
        f->store = store;
        f->set = set;
        pthread_mutex_init(&f->err_lock, NULL);
        pthread_mutex_init(&f->q_lock, NULL);
        pthread_cond_init(&f->q_cond, NULL);
        set->n++;
        snprintf(f->cursor_name, sizeof(f->cursor_name), "fwd.%s", f->cfg.name);
        fwd_lease_init(&f->lease, f->cfg.name, f->cfg.lease_ttl_ms);
        f->rs = malloc(sizeof(*f->rs));
        f->curl = curl_easy_init();
        if (f->rs == NULL || f->curl == NULL ||
            (f->cfg.type == INGEST_FORWARD_PROM_RW &&
             fwd_prom_new(f->cfg.series_limit, &f->prom) != 0)) {
            snprintf(err, err_len, "forward.%s: out of memory", f->cfg.name);
            ingest_forwarders_stop(set);
            return -1;
        }
    }
    for (size_t i = 0; i < set->n; i++) {
        if (pthread_create(&set->f[i].thread, NULL, fwd_main, &set->f[i]) != 0) {
            snprintf(err, err_len, "forward.%s: cannot start its thread", set->f[i].cfg.name);
            ingest_forwarders_stop(set);
            return -1;
        }
        set->f[i].started = true;
    }
    *out = set;
    return 0;
}

void ingest_forwarders_stop(struct ingest_forwarders *set)
{
    if (set == NULL)
        return;
    pthread_mutex_lock(&set->lock);
    atomic_store(&set->stop, true);
    pthread_cond_broadcast(&set->cond);
    pthread_mutex_unlock(&set->lock);
    for (size_t i = 0; i < set->n; i++) {
        pthread_mutex_lock(&set->f[i].q_lock);
        pthread_cond_broadcast(&set->f[i].q_cond);
        pthread_mutex_unlock(&set->f[i].q_lock);
    }
    for (size_t i = 0; i < set->n; i++) {
        if (set->f[i].started)
            pthread_join(set->f[i].thread, NULL);
        if (set->f[i].sender_started)
            pthread_join(set->f[i].sender, NULL);
        fwd_free(&set->f[i]);
    }
    pthread_mutex_destroy(&set->lock);
    pthread_cond_destroy(&set->cond);
    free(set->f);
    free(set);
}

/* ---- Status: /metrics and GET /v1/forwarders ----------------------------------------------- */

int ingest_forwarders_expose(struct ingest_forwarders *set, struct ferry_buf *b)
{
    if (set == NULL || set->n == 0)
        return 0;
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } series[] = {
        {"ferry_forward_lag_records", "gauge", "records committed but not yet forwarded",
         offsetof(struct fwd, lag_records)},
        {"ferry_forward_records_total", "counter", "records passed (forwarded or filtered out)",
         offsetof(struct fwd, records_passed)},
        {"ferry_forward_samples_total", "counter", "samples or lines the sink accepted",
         offsetof(struct fwd, samples_sent)},
        {"ferry_forward_batches_total", "counter", "requests the sink accepted",
         offsetof(struct fwd, batches_sent)},
        {"ferry_forward_retries_total", "counter", "requests retried (429, 5xx, no answer)",
         offsetof(struct fwd, retries)},
        {"ferry_forward_rejected_batches_total", "counter", "batches the sink refused for good",
         offsetof(struct fwd, rejected)},
        {"ferry_forward_dropped_samples_total", "counter", "samples dropped by the series limit",
         offsetof(struct fwd, dropped_samples)},
        {"ferry_forward_skipped_values_total", "counter",
         "values the sink cannot carry (strings in Prometheus, NaN in InfluxDB)",
         offsetof(struct fwd, skipped_values)},
        {"ferry_forward_series", "gauge", "series admitted by the series limit",
         offsetof(struct fwd, series)},
    };
    int e = 0;
    for (size_t s = 0; s < sizeof(series) / sizeof(series[0]); s++) {
        e |= ferry_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", series[s].name, series[s].help,
                              series[s].name, series[s].type);
        for (size_t i = 0; i < set->n; i++) {
            _Atomic uint64_t *v = (_Atomic uint64_t *)((char *)&set->f[i] + series[s].off);
            e |= ferry_buf_printf(b, "%s{forwarder=\"%s\"} %" PRIu64 "\n", series[s].name,
                                  set->f[i].cfg.name, atomic_load(v));
        }
    }
    e |= ferry_buf_printf(b, "# HELP ferry_forward_lag_seconds age of the oldest record not yet "
                             "forwarded (by ingest receive time)\n"
                             "# TYPE ferry_forward_lag_seconds gauge\n");
    for (size_t i = 0; i < set->n; i++)
        e |= ferry_buf_printf(b, "ferry_forward_lag_seconds{forwarder=\"%s\"} %.3f\n",
                              set->f[i].cfg.name, (double)atomic_load(&set->f[i].lag_ns) / 1e9);
    e |= ferry_buf_printf(b, "# HELP ferry_forward_lease_held 1 when this process holds the "
                             "forwarder's lease and runs it, 0 when another ingest does\n"
                             "# TYPE ferry_forward_lease_held gauge\n");
    for (size_t i = 0; i < set->n; i++)
        e |= ferry_buf_printf(b, "ferry_forward_lease_held{forwarder=\"%s\"} %d\n",
                              set->f[i].cfg.name, atomic_load(&set->f[i].lease.held) ? 1 : 0);
    e |= ferry_buf_printf(b, "# HELP ferry_forward_lease_acquired_total times this process "
                             "took the forwarder's lease\n"
                             "# TYPE ferry_forward_lease_acquired_total counter\n");
    for (size_t i = 0; i < set->n; i++)
        e |= ferry_buf_printf(b,
                              "ferry_forward_lease_acquired_total{forwarder=\"%s\"} %" PRIu64 "\n",
                              set->f[i].cfg.name, atomic_load(&set->f[i].lease.acquired));
    return e != 0 ? -1 : 0;
}

/* A C string (no NUL inside) as JSON: ferry_buf_append_json_string already replaces ill-formed
 * UTF-8 (common/utf8.c), so no cleaned copy is made first. */
static int json_str(struct ferry_buf *b, const char *s)
{
    return ferry_buf_append_json_string(b, s, strlen(s));
}

static void handle_forwarders(struct evhttp_request *req, const char *path, void *arg)
{
    (void)path;
    struct ingest_forwarders *set = arg;
    struct ferry_buf b = FERRY_BUF_INIT;
    int e = ferry_buf_append(&b, "{\"forwarders\":[", 15);
    for (size_t i = 0; i < set->n && e == 0; i++) {
        struct fwd *f = &set->f[i];
        char url[INGEST_FORWARD_URL_MAX], error[sizeof(f->last_error)];
        /* Without the query string and user info: InfluxDB credentials may be in either. */
        ferry_strlcpy(url, f->cfg.url, sizeof(url));
        url[strcspn(url, "?#")] = '\0';
        char *at = strchr(url, '@'), *scheme = strstr(url, "://");
        if (at != NULL && scheme != NULL && at > scheme)
            memmove(scheme + 3, at + 1, strlen(at + 1) + 1);
        pthread_mutex_lock(&f->err_lock);
        ferry_strlcpy(error, f->last_error, sizeof(error));
        pthread_mutex_unlock(&f->err_lock);
        int st = atomic_load(&f->state);
        e |= ferry_buf_printf(&b, "%s{\"name\":\"%s\",\"type\":\"%s\",\"url\":", i ? "," : "",
                              f->cfg.name, type_name(f->cfg.type));
        e |= json_str(&b, url);
        e |= ferry_buf_printf(
            &b,
            ",\"state\":\"%s\",\"cursor_records\":%" PRIu64 ",\"lag_records\":%" PRIu64
            ",\"lag_seconds\":%.3f,\"records_passed\":%" PRIu64 ",\"samples_sent\":%" PRIu64
            ",\"batches_sent\":%" PRIu64 ",\"retries\":%" PRIu64 ",\"rejected_batches\":%" PRIu64
            ",\"dropped_samples\":%" PRIu64 ",\"skipped_values\":%" PRIu64 ",\"series\":%" PRIu64
            ",\"undecodable_records\":%" PRIu64 ",\"last_success_unix_ms\":%" PRId64
            ",\"last_error\":",
            state_names[st >= 0 && st < 5 ? st : 0], atomic_load(&f->cursor_records),
            atomic_load(&f->lag_records), (double)atomic_load(&f->lag_ns) / 1e9,
            atomic_load(&f->records_passed), atomic_load(&f->samples_sent),
            atomic_load(&f->batches_sent), atomic_load(&f->retries), atomic_load(&f->rejected),
            atomic_load(&f->dropped_samples), atomic_load(&f->skipped_values),
            atomic_load(&f->series), atomic_load(&f->undecodable),
            atomic_load(&f->last_success_ns) / 1000000);
        e |= json_str(&b, error);
        e |= ferry_buf_printf(&b, ",\"lease_held\":%s,\"lease_owner\":",
                              atomic_load(&f->lease.held) ? "true" : "false");
        e |= json_str(&b, f->lease.owner);
        e |= ferry_buf_printf(&b,
                              ",\"lease_ttl_seconds\":%.3f,\"lease_acquired\":%" PRIu64
                              ",\"lease_lost\":%" PRIu64 "}",
                              (double)f->lease.ttl_ms / 1000, atomic_load(&f->lease.acquired),
                              atomic_load(&f->lease.lost));
    }
    e |= ferry_buf_append(&b, "]}\n", 3);
    if (e != 0)
        ingest_reply_error(req, 503, "out of memory");
    else
        ingest_reply(req, 200, "application/json", b.data, b.len);
    ferry_buf_free(&b);
}

int ingest_forwarders_register(struct ingest_forwarders *set, struct ingest_router *router)
{
    return ingest_router_add(router, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/v1/forwarders",
                             INGEST_ACCESS_VIEWER, handle_forwarders, set);
}
