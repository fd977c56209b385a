/*
 * forward.c - the forwarder pipeline (forward.h): per [forward.NAME] section, N worker threads
 * each read a batch from the store in turn (in commit order, from the durable cursor), encode it
 * and send it, so N batches are encoded and in flight at once; the cursor is stored only past
 * batches the sink took, in order.
 *
 *   main    cursor_load() -> start the N workers -> join them at stop -> store the cursor.
 *   worker  read_next() (under read_lock: wait for a free slot of the ring of 2N batches ->
 *           read_batch(): up to batch_records records after read_cursor, copies of the ones the
 *           filter keeps -> nothing new: store the cursor if the ring has drained, sleep `idle`,
 *           read again | take the slot) -> encode_job() (unpack, remote write or line protocol,
 *           snappy or gzip) -> post_body(): no answer, 408, 429, 5xx: wait (backoff with
 *           jitter, at least Retry-After) and send again; 2xx: delivered; other: refused for
 *           good, counted, passed -> job_done(): marks it done, and while the oldest batch of
 *           the ring is done, moves `delivered` past it and frees its slot -> cursor_flush():
 *           stores `delivered` at most once a second while batches follow each other.
 *   stop    every thread leaves at its next wait; batches in the ring are abandoned (their
 *           records are after the stored cursor and are sent again at the next start).
 *
 * Why this shape (measured with tests/bench/forward/, docs/forwarding.md "Figures"): one thread
 * that reads, unpacks, encodes and compresses was bound near 400,000 samples/s, below what
 * VictoriaMetrics takes; N workers encode on N cores and keep N requests in flight, hiding the
 * sink's latency. The worker that reads a batch sends it: an earlier version handed batches from
 * a reader thread to the workers, and on a loaded machine every such wake-up of another thread
 * cost a scheduling delay per batch. read_next() is the one place that reads the store (a check
 * that must pass before each read, such as a lease, goes at the top of its loop).
 *
 * Invariants:
 *   1. The cursor stored never passes a record whose batch the sink has not accepted (or refused
 *      for good), nor one of an earlier batch: batches complete in any order, `delivered` moves
 *      over the ring's done prefix only. A crash re-sends, it never skips.
 *   2. Memory is bounded: 2N batches of at most batch_records records each, N encoders.
 *   3. Requests of one forwarder may reach the sink out of order (two batches holding samples of
 *      one series): the sinks accept that (Prometheus with its out-of-order window, which late
 *      data needs anyway; VictoriaMetrics and InfluxDB always). workers = 1 keeps order.
 *   4. The series guard is one per forwarder, shared by its workers (fwd_guard, own mutex): the
 *      limit and the dropped count hold whatever worker meets a series first.
 *   5. Several ingests on one PostgreSQL: before each read, read_next() checks the lease
 *      "fwd.NAME" (forward_lease.c, forward_lease_check()): without it, state "standby" and no
 *      read; on taking it, the ring drains and reading continues from the durable cursor.
 *
 * Blocking is fine here: these are the forwarder's own threads, never an event loop. Waits are
 * on condition variables, so stopping is prompt; a request in flight ends by its timeout.
 */
#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

enum fwd_job_state {
    JOB_FREE = 0,    /* read_next() may fill it */
    JOB_WORKING = 1, /* read; the worker that read it encodes and sends it */
    JOB_DONE = 2,    /* delivered (or refused for good), an earlier batch is not yet */
};

/* One batch of the ring: the reader fills it with copies of the records the filter keeps (a
 * struct fwd_raw each, then the device id and its NUL, then the payload), a worker encodes and
 * sends it. */
struct fwd_job {
    struct ferry_buf raw;
    size_t n_raw;                   /* records in raw */
    struct ingest_store_cursor end; /* the cursor after the batch */
    uint64_t records;               /* records the batch passed (kept or filtered out) */
    enum fwd_job_state state;       /* q_lock */
};

struct fwd_raw {
    int64_t ts_corrected_ns;
    size_t device_len, packed_len;
};

/* A worker: its own encoder, buffers and connection. */
struct fwd_worker {
    struct fwd *f;
    pthread_t thread;
    bool started;
    CURL *curl;
    struct fwd_prom *prom;
    struct ferry_buf lines, body;
    struct record_scratch *rs;
};

struct fwd {
    struct ingest_forward_config cfg;
    struct ingest_store *store;
    struct ingest_forwarders *set;
    char cursor_name[INGEST_CURSOR_NAME_MAX + 1];
    pthread_t thread;
    bool started;
    /* reader state (read_lock): read_cursor is where reading continues */
    pthread_mutex_t read_lock;
    struct ingest_store_cursor read_cursor;
    struct fwd_job *filling; /* the batch read_batch() fills */
    int64_t last_lag_ms;
    /* the ring (q_lock): jobs[head % n_jobs] is the oldest batch not yet delivered, tail the
     * next to fill; head <= tail <= head + n_jobs */
    pthread_mutex_t q_lock;
    pthread_cond_t q_cond;
    struct fwd_job *jobs;
    size_t n_jobs;
    uint64_t head, tail;
    struct ingest_store_cursor delivered; /* everything up to here is in the sink */
    uint64_t delivered_gen;               /* moves with delivered */
    /* workers */
    struct fwd_worker *workers;
    size_t n_workers;
    struct fwd_guard *guard;
    /* cursor storing (save_lock) */
    pthread_mutex_t save_lock;
    _Atomic uint64_t saved_gen;
    long long cursor_saved_ms;
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

/* Copies a record the filter keeps into the batch being filled (read_lock held). The payload is
 * not decoded here: that is the workers' part. */
static int on_record(const struct ingest_committed *rec, const struct ingest_store_cursor *after,
                     void *arg)
{
    struct fwd *f = arg;
    struct fwd_job *job = f->filling;
    if ((f->cfg.streams_mask & (1u << rec->stream)) == 0 ||
        !device_selected(f->cfg.devices, rec->device_id)) {
        job->end = *after;
        job->records++;
        return 0;
    }
    if (rec->packed == NULL) {
        atomic_fetch_add(&f->undecodable, 1);
        job->end = *after;
        job->records++;
        return 0;
    }
    struct fwd_raw h = {rec->ts_corrected_ns, strlen(rec->device_id), rec->packed_len};
    if (h.packed_len > RECORD_MAX_PACKED_LEN || h.device_len > INGEST_DEVICE_ID_MAX ||
        ferry_buf_reserve(&job->raw, sizeof(h) + h.device_len + 1 + h.packed_len) != 0) {
        if (h.packed_len > RECORD_MAX_PACKED_LEN || h.device_len > INGEST_DEVICE_ID_MAX) {
            atomic_fetch_add(&f->undecodable, 1); /* cannot be a record_pack() payload */
            job->end = *after;
            job->records++;
            return 0;
        }
        /* Out of memory: stop the batch here; the record is read again in the next one. */
        set_error(f, "out of memory reading a batch");
        return 1;
    }
    uint8_t *o = job->raw.data + job->raw.len;
    memcpy(o, &h, sizeof(h));
    memcpy(o + sizeof(h), rec->device_id, h.device_len + 1);
    memcpy(o + sizeof(h) + h.device_len + 1, rec->packed, h.packed_len);
    job->raw.len += sizeof(h) + h.device_len + 1 + h.packed_len;
    job->n_raw++;
    job->end = *after;
    job->records++;
    return 0;
}

/* Reads the next batch after f->read_cursor into `job`. Returns 0 or a store error. */
static int read_batch(struct fwd *f, struct fwd_job *job)
{
    f->filling = job;
    ferry_buf_reset(&job->raw);
    job->n_raw = 0;
    job->records = 0;
    job->end = f->read_cursor;
    struct ingest_store_cursor from = f->read_cursor;
    return ingest_store_read_committed(f->store, &from, f->cfg.batch_records, on_record, f);
}

/* ---- ENCODE (worker) ------------------------------------------------------------------------ */

/* Encodes the batch into w->body; *samples: samples or lines in it. 0 or -1 (memory). Counters
 * (skipped, undecodable) are added only for an encoding that succeeded. */
static int encode_job(struct fwd_worker *w, const struct fwd_job *job, size_t *samples)
{
    struct fwd *f = w->f;
    bool prom = f->cfg.type == INGEST_FORWARD_PROM_RW;
    uint64_t skipped = 0, undecodable = 0, lines = 0;
    uint64_t prom_skipped0 = prom ? fwd_prom_skipped(w->prom) : 0;
    if (prom)
        fwd_prom_reset(w->prom);
    ferry_buf_reset(&w->lines);
    ferry_buf_reset(&w->body);
    const uint8_t *p = job->raw.data;
    for (size_t i = 0; i < job->n_raw; i++) {
        struct fwd_raw h;
        memcpy(&h, p, sizeof(h));
        const char *device = (const char *)p + sizeof(h);
        const uint8_t *packed = p + sizeof(h) + h.device_len + 1;
        p = packed + h.packed_len;
        struct record r;
        if (record_unpack(packed, h.packed_len, w->rs, &r, NULL, 0) != 0) {
            undecodable++;
            continue;
        }
        int rc = prom ? fwd_prom_add(w->prom, device, &r, h.ts_corrected_ns)
                      : fwd_influx_line(&w->lines, device, &r, h.ts_corrected_ns, f->cfg.precision,
                                        f->cfg.uint_as, &lines, &skipped);
        if (rc != 0)
            return -1;
    }
    int rc;
    if (prom) {
        *samples = fwd_prom_samples(w->prom);
        skipped = fwd_prom_skipped(w->prom) - prom_skipped0;
        rc = *samples > 0 ? fwd_prom_finish(w->prom, &w->body) : 0;
    } else {
        *samples = (size_t)lines;
        if (lines == 0)
            rc = 0;
        else if (f->cfg.gzip)
            rc = fwd_gzip(w->lines.data, w->lines.len, &w->body);
        else
            rc = ferry_buf_append(&w->body, w->lines.data, w->lines.len);
    }
    if (rc != 0)
        return -1;
    atomic_fetch_add(&f->skipped_values, skipped);
    atomic_fetch_add(&f->undecodable, undecodable);
    if (prom) {
        atomic_store(&f->dropped_samples, fwd_guard_dropped(f->guard));
        atomic_store(&f->series, fwd_guard_series(f->guard));
    }
    return 0;
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

static enum fwd_outcome post_once(struct fwd *f, CURL *c, const struct ferry_buf *body,
                                  struct resp *r)
{
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

/* Sends a body until the sink takes or refuses it (worker thread). Returns SENT, REJECT, or -1
 * when the forwarders are stopping. */
static int post_body(struct fwd *f, CURL *c, const struct ferry_buf *body, uint64_t records)
{
    int64_t backoff_ms = 100;
    for (;;) {
        atomic_store(&f->state, 2);
        struct resp r;
        enum fwd_outcome out = post_once(f, c, body, &r);
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

/* Stores `delivered` when it moved since the last store and `force` is set or the last store is
 * FWD_CURSOR_SAVE_MS old: a store commit is an fsync, which costs more than sending a batch, so
 * while batches follow each other a crash re-sends at most about a second of them. Any thread;
 * stores never go backwards (save_lock, delivered only grows). False when the store failed. */
static bool cursor_flush(struct fwd *f, bool force)
{
    /* A periodic store while another thread stores: that one will do (a worker must not wait
     * for an fsync between two batches). */
    if (!force) {
        if (pthread_mutex_trylock(&f->save_lock) != 0)
            return true;
    } else {
        pthread_mutex_lock(&f->save_lock);
    }
    pthread_mutex_lock(&f->q_lock);
    struct ingest_store_cursor c = f->delivered;
    uint64_t gen = f->delivered_gen;
    pthread_mutex_unlock(&f->q_lock);
    bool ok = true;
    if (gen != atomic_load(&f->saved_gen) &&
        (force || ferry_monotonic_ms() - f->cursor_saved_ms >= FWD_CURSOR_SAVE_MS)) {
        int rc = ingest_store_cursor_set(f->store, f->cursor_name, &c);
        if (rc == 0) {
            atomic_store(&f->saved_gen, gen);
            f->cursor_saved_ms = ferry_monotonic_ms();
        } else {
            set_error(f, "store cursor: %s", ingest_store_strerror(rc));
            ok = false;
        }
    }
    pthread_mutex_unlock(&f->save_lock);
    return ok;
}

static bool cursor_load(struct fwd *f)
{
    for (int64_t backoff = 100;; backoff = backoff < 5000 ? backoff * 2 : 5000) {
        int rc = ingest_store_cursor_get(f->store, f->cursor_name, &f->read_cursor);
        if (rc == 0 || rc == INGEST_STORE_ENOTFOUND) {
            if (rc == INGEST_STORE_ENOTFOUND)
                memset(&f->read_cursor, 0, sizeof(f->read_cursor));
            pthread_mutex_lock(&f->q_lock);
            f->delivered = f->read_cursor;
            pthread_mutex_unlock(&f->q_lock);
            return true;
        }
        set_error(f, "load cursor: %s", ingest_store_strerror(rc));
        if (wait_ms(f->set, backoff))
            return false;
    }
}

/* Marks `job` done and moves `delivered` over the ring's done prefix, in order (invariant 1). */
static void job_done(struct fwd *f, struct fwd_job *job)
{
    pthread_mutex_lock(&f->q_lock);
    job->state = JOB_DONE;
    while (f->head < f->tail && f->jobs[f->head % f->n_jobs].state == JOB_DONE) {
        struct fwd_job *j = &f->jobs[f->head % f->n_jobs];
        f->delivered = j->end;
        f->delivered_gen++;
        atomic_fetch_add(&f->records_passed, j->records);
        atomic_store(&f->cursor_records, j->end.records);
        j->state = JOB_FREE;
        f->head++;
    }
    pthread_cond_broadcast(&f->q_cond);
    pthread_mutex_unlock(&f->q_lock);
}

/* The free slot at the ring's tail, waiting for one; NULL when stopping (read_lock held). */
static struct fwd_job *free_job(struct fwd *f)
{
    pthread_mutex_lock(&f->q_lock);
    while (f->tail - f->head >= f->n_jobs && !stopping(f->set))
        pthread_cond_wait(&f->q_cond, &f->q_lock);
    struct fwd_job *job = stopping(f->set) ? NULL : &f->jobs[f->tail % f->n_jobs];
    pthread_mutex_unlock(&f->q_lock);
    return job;
}

/* Takes the batch just read (the slot at the tail) for the calling worker (read_lock held). */
static void take(struct fwd *f, struct fwd_job *job)
{
    pthread_mutex_lock(&f->q_lock);
    assert(job == &f->jobs[f->tail % f->n_jobs] && job->state == JOB_FREE);
    job->state = JOB_WORKING;
    f->tail++;
    atomic_store(&f->state, 2);
    pthread_mutex_unlock(&f->q_lock);
}

/* The lease (forward_lease.c), checked before every read (read_lock held): true when this
 * process holds it and may read. On taking it over, the reader waits until the batches still in
 * the ring are delivered and continues from the durable cursor (another process may have moved
 * it). Without it: state "standby", a wait, false. */
static bool forward_lease_check(struct fwd *f)
{
    switch (fwd_lease_poll(&f->lease, f->store)) {
    case FWD_LEASE_HELD: return true;
    case FWD_LEASE_ACQUIRED:
        pthread_mutex_lock(&f->q_lock);
        while (f->head != f->tail && !stopping(f->set))
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

/*
 * READ: the one place that reads the store, one call per batch, under read_lock (so batches
 * take ring slots in commit order). Reads the next batch after read_cursor into the ring's tail
 * slot and takes it for the calling worker; returns it, or NULL when stopping. When the store
 * has nothing new, it stores the cursor if the ring has drained and pauses `idle` holding
 * read_lock, so that one worker polls the store, not all of them. A check that must pass before
 * each read (a lease, when several ingests share one store) belongs at the top of its loop.
 */
static struct fwd_job *read_next(struct fwd *f)
{
    pthread_mutex_lock(&f->read_lock);
    struct fwd_job *out = NULL;
    while (out == NULL && !stopping(f->set)) {
        if (!forward_lease_check(f))
            continue;
        struct fwd_job *job = free_job(f);
        if (job == NULL)
            break;
        int rc = read_batch(f, job);
        if (rc != 0) {
            set_error(f, "read store: %s", ingest_store_strerror(rc));
            if (wait_ms(f->set, 1000))
                break;
            continue;
        }
        if (job->records == 0) {
            /* Caught up: once the ring has drained, store the cursor of what was delivered (a
             * failed store is tried again at the next pause). */
            pthread_mutex_lock(&f->q_lock);
            bool drained = f->head == f->tail;
            pthread_mutex_unlock(&f->q_lock);
            if (drained) {
                atomic_store(&f->state, 1);
                (void)cursor_flush(f, true);
            }
            update_lag(f, true);
            if (wait_ms(f->set, f->cfg.idle_ms))
                break;
            continue;
        }
        f->read_cursor = job->end;
        take(f, job);
        update_lag(f, false);
        out = job;
    }
    pthread_mutex_unlock(&f->read_lock);
    return out;
}

/* A worker thread: reads the next batch (read_next), encodes and sends it, marks it done; until
 * stop. The worker that reads a batch is the one that sends it: no hand-over between threads on
 * the way (on a busy machine every wake-up of another thread costs a scheduling delay). */
static void *fwd_worker_main(void *arg)
{
    struct fwd_worker *w = arg;
    struct fwd *f = w->f;
    for (;;) {
        struct fwd_job *job = read_next(f);
        if (job == NULL)
            break; /* stopping */
        size_t samples = 0;
        while (encode_job(w, job, &samples) != 0) {
            set_error(f, "out of memory encoding a batch");
            if (wait_ms(f->set, 1000))
                return NULL;
        }
        if (samples > 0) {
            int out = post_body(f, w->curl, &w->body, job->records);
            if (out == -1)
                break;
            if (out == FWD_REJECT) {
                atomic_fetch_add(&f->rejected, 1);
            } else {
                atomic_fetch_add(&f->batches_sent, 1);
                atomic_fetch_add(&f->samples_sent, samples);
            }
        }
        job_done(f, job);
        (void)cursor_flush(f, false); /* a failure is retried at the next batch or when idle */
    }
    return NULL;
}

/* The forwarder's thread: loads the cursor, starts the workers, waits for them to leave (stop)
 * and stores the cursor of what was delivered. */
static void *fwd_main(void *arg)
{
    struct fwd *f = arg;
    if (!cursor_load(f))
        return NULL;
    log_info("forward", "%s: %s to %s from record %" PRIu64 " (%zu workers)", f->cfg.name,
             type_name(f->cfg.type), f->cfg.url, f->read_cursor.records, f->n_workers);
    update_lag(f, true);
    for (size_t i = 0; i < f->n_workers; i++) {
        if (pthread_create(&f->workers[i].thread, NULL, fwd_worker_main, &f->workers[i]) != 0) {
            set_error(f, "cannot start a worker thread");
            log_error("forward", "%s: cannot start worker %zu of %zu", f->cfg.name, i + 1,
                      f->n_workers);
            break;
        }
        f->workers[i].started = true;
    }
    for (size_t i = 0; i < f->n_workers; i++)
        if (f->workers[i].started)
            pthread_join(f->workers[i].thread, NULL);
    (void)cursor_flush(f, true);
    return NULL;
}

/* ---- Lifecycle ------------------------------------------------------------------------------ */

static void fwd_free(struct fwd *f)
{
    for (size_t i = 0; f->workers != NULL && i < f->n_workers; i++) {
        struct fwd_worker *w = &f->workers[i];
        fwd_prom_free(w->prom);
        ferry_buf_free(&w->lines);
        ferry_buf_free(&w->body);
        free(w->rs);
        if (w->curl != NULL)
            curl_easy_cleanup(w->curl);
    }
    free(f->workers);
    for (size_t i = 0; f->jobs != NULL && i < f->n_jobs; i++)
        ferry_buf_free(&f->jobs[i].raw);
    free(f->jobs);
    fwd_guard_free(f->guard);
    pthread_mutex_destroy(&f->q_lock);
    pthread_cond_destroy(&f->q_cond);
    pthread_mutex_destroy(&f->save_lock);
    pthread_mutex_destroy(&f->read_lock);
    pthread_mutex_destroy(&f->err_lock);
}

/* workers = auto: one per online core, at least 2 (requests in flight pay even on one core: the
 * sink works while we encode), at most 4 (beyond that the reader and the sink bound it). */
static size_t workers_for(const struct ingest_forward_config *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores < 2 ? 2 : cores > 4 ? 4 : (size_t)cores;
}

/* Allocates a forwarder's ring, workers and encoders. 0 or -1 (memory). */
static int fwd_alloc(struct fwd *f)
{
    f->n_workers = workers_for(&f->cfg);
    f->n_jobs = 2 * f->n_workers;
    f->workers = calloc(f->n_workers, sizeof(*f->workers));
    f->jobs = calloc(f->n_jobs, sizeof(*f->jobs));
    if (f->workers == NULL || f->jobs == NULL)
        return -1;
    if (f->cfg.type == INGEST_FORWARD_PROM_RW && fwd_guard_new(f->cfg.series_limit, &f->guard) != 0)
        return -1;
    for (size_t i = 0; i < f->n_workers; i++) {
        struct fwd_worker *w = &f->workers[i];
        w->f = f;
        w->rs = malloc(sizeof(*w->rs));
        w->curl = curl_easy_init();
        if (w->rs == NULL || w->curl == NULL ||
            (f->guard != NULL && fwd_prom_new_shared(f->guard, &w->prom) != 0))
            return -1;
    }
    return 0;
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
        pthread_mutex_init(&f->save_lock, NULL);
        pthread_mutex_init(&f->read_lock, NULL);
        pthread_cond_init(&f->q_cond, NULL);
        set->n++;
        snprintf(f->cursor_name, sizeof(f->cursor_name), "fwd.%s", f->cfg.name);
        fwd_lease_init(&f->lease, f->cfg.name, f->cfg.lease_ttl_ms);
        if (fwd_alloc(f) != 0) {
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
