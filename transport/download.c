/*
 * download.c - chunked resumable verified downloads (see download.h).
 *
 * State machine of one download (all on the loop thread):
 *
 *   WAITING --timer--> REQUESTING --on_data: chunk complete + hash ok--> write, fdatasync,
 *      ^                    |                                            on_chunk, cur++
 *      |                    +--on_done--> decide():
 *      |                                   all chunks      -> whole-hash check -> FINISHED
 *      +---- backoff / pacing ------------ transient error, bad chunk, progress
 *                                          permanent error -> FINISHED(err)
 *
 * Invariants
 *   D1. A byte reaches the destination file only inside a chunk whose SHA-256 matched.
 *   D2. on_chunk(i) is called only after chunk i is synced, so a persisted "next chunk" never
 *       points past data that is not durable.
 *   D3. on_done runs exactly once; d->req is non-NULL exactly while a request is in flight.
 *   D4. The bytes of chunk `cur` received so far (d->chunk, chunk_len) survive a failed
 *       request: the next one asks for the rest of the chunk only. They are dropped when the
 *       assembled chunk fails its hash (it is then fetched whole) and do not survive the
 *       process (a restart fetches the chunk in flight again).
 *   D5. Sources are tried in order, mirrors first and the ingest (d->url) last, never backwards:
 *       d->source only grows (mirror_failed), so a download ends on the ingest at worst.
 */
#include "transport/download.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "common/util.h"
#include "transport/http_client.h"
#include "transport/manifest.h"

struct download {
    struct http_client *client;
    struct event_base *base;
    struct event *timer;
    struct http_request *req;
    const struct manifest_artifact *art;
    char *url, *path, *validator, *ca_file, *pinned_public_key;
    char *mirrors[DOWNLOAD_MAX_MIRRORS];
    size_t n_mirrors, source; /* D5: source == n_mirrors is the ingest */
    long mirror_status;       /* status of a mirror's answer that on_data refused */
    download_mirror_fn on_mirror_failed;
    char if_range_header[128];
    reqsign_request_fn sign;
    void *sign_arg;
    download_chunk_fn on_chunk;
    download_done_fn on_done;
    void *arg;
    uint64_t max_bytes_per_s;
    int64_t chunk_deadline_ms, backoff_min_ms, backoff_max_ms, backoff_ms;
    int fd;
    uint32_t cur;   /* next chunk to fetch */
    uint8_t *chunk; /* bytes of chunk `cur` received so far */
    size_t chunk_len;
    uint64_t stream_pos; /* absolute artifact offset of the next byte of the response */
    int stream_started;
    long stream_status;
    int hash_failed, io_failed, stop_requested, canceled, finished;
    uint32_t progress_in_request; /* chunks completed by the current request */
    uint64_t bytes_in_request;    /* chunk bytes it delivered */
    uint32_t bad_in_row, short_in_row;
    int64_t session_start_ms;
    uint64_t session_bytes;
    struct download_stats stats;
};

const char *download_strerror(int err)
{
    switch (err) {
    case DOWNLOAD_OK: return "ok";
    case DOWNLOAD_E_ARG: return "invalid argument";
    case DOWNLOAD_E_NOMEM: return "out of memory";
    case DOWNLOAD_E_IO: return "cannot write the download";
    case DOWNLOAD_E_HTTP: return "server refused the artifact";
    case DOWNLOAD_E_CHANGED: return "artifact changed on the server";
    case DOWNLOAD_E_TRUNCATED: return "artifact truncated on the server";
    case DOWNLOAD_E_CHUNK_HASH: return "chunk hash mismatch, repeatedly";
    case DOWNLOAD_E_CANCELED: return "canceled";
    default: return "unknown download error";
    }
}

static uint64_t chunk_start(const struct download *d, uint32_t i)
{
    return (uint64_t)i * d->art->chunk_bytes;
}

static size_t chunk_size(const struct download *d, uint32_t i)
{
    uint64_t s = chunk_start(d, i), left = d->art->size - s;
    return left < d->art->chunk_bytes ? (size_t)left : d->art->chunk_bytes;
}

static bool on_mirror(const struct download *d)
{
    return d->source < d->n_mirrors;
}

static void finish(struct download *d, int err, const char *reason)
{
    if (d->finished)
        return;
    d->finished = 1;
    d->stats.next_chunk = d->cur;
    d->on_done(d->arg, err, reason ? reason : download_strerror(err));
}

static void schedule(struct download *d, int64_t delay_ms)
{
    struct timeval tv = {(time_t)(delay_ms / 1000), (suseconds_t)((delay_ms % 1000) * 1000)};
    evtimer_add(d->timer, &tv);
}

static void retry_later(struct download *d, int64_t hint_ms)
{
    d->stats.retries++;
    int64_t delay = d->backoff_ms;
    if (hint_ms > delay)
        delay = hint_ms;
    /* jitter: 50..100 % of the delay, so a fleet coming back online does not arrive at once */
    delay = delay / 2 + (int64_t)(randombytes_uniform((uint32_t)(delay / 2 + 1)));
    d->backoff_ms = d->backoff_ms * 2 > d->backoff_max_ms ? d->backoff_max_ms : d->backoff_ms * 2;
    schedule(d, delay);
}

/* The whole artifact as written, hashed back from the file (D1 holds chunk by chunk; this checks
 * the manifest's chunk list and whole hash agree and that the file holds what was written). */
static int verify_whole(struct download *d)
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    uint8_t *buf = malloc(1u << 20);
    if (!buf)
        return DOWNLOAD_E_NOMEM;
    uint64_t off = 0;
    int rc = DOWNLOAD_OK;
    while (off < d->art->size) {
        size_t want = d->art->size - off < (1u << 20) ? (size_t)(d->art->size - off) : 1u << 20;
        ssize_t n = pread(d->fd, buf, want, (off_t)off);
        if (n <= 0) {
            rc = DOWNLOAD_E_IO;
            break;
        }
        crypto_hash_sha256_update(&st, buf, (unsigned long long)n);
        off += (uint64_t)n;
    }
    free(buf);
    if (rc != DOWNLOAD_OK)
        return rc;
    uint8_t h[32];
    crypto_hash_sha256_final(&st, h);
    return sodium_memcmp(h, d->art->sha256, 32) == 0 ? DOWNLOAD_OK : DOWNLOAD_E_CHANGED;
}

/* A complete chunk in d->chunk: verify (D1), write, sync, report (D2). Returns 0 to go on. */
static int chunk_complete(struct download *d)
{
    uint8_t h[32];
    crypto_hash_sha256(h, d->chunk, d->chunk_len);
    if (sodium_memcmp(h, d->art->chunk_sha256[d->cur], 32) != 0) {
        d->hash_failed = 1;
        d->stats.bad_chunks++;
        return -1;
    }
    if (on_mirror(d)) {
        d->stats.mirror_chunks++;
        d->stats.mirror_bytes += d->chunk_len;
    }
    size_t done = 0;
    while (done < d->chunk_len) {
        ssize_t n = pwrite(d->fd, d->chunk + done, d->chunk_len - done,
                           (off_t)(chunk_start(d, d->cur) + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            d->io_failed = 1;
            return -1;
        }
        done += (size_t)n;
    }
    if (fdatasync(d->fd) != 0) {
        d->io_failed = 1;
        return -1;
    }
    uint32_t index = d->cur++;
    d->stats.bytes_done += d->chunk_len;
    d->chunk_len = 0;
    d->progress_in_request++;
    d->bad_in_row = 0;
    d->short_in_row = 0;
    if (d->on_chunk && d->on_chunk(d->arg, index, d->cur, d->stats.bytes_done) != 0) {
        d->stop_requested = 1;
        return -1;
    }
    return 0;
}

static int on_data(void *arg, const uint8_t *data, size_t len)
{
    struct download *d = arg;
    d->stats.bytes_received += len;
    d->session_bytes += len;
    if (!d->stream_started) {
        d->stream_started = 1;
        d->stream_status = d->req ? http_request_status(d->req) : 0;
        /* 206: the body starts at our range; 200: the server sent the whole artifact */
        d->stream_pos = d->stream_status == 206 ? chunk_start(d, d->cur) + d->chunk_len : 0;
        if (on_mirror(d) && d->stream_status != 206) {
            d->mirror_status = d->stream_status; /* a mirror must honour the Range: next one */
            return 1;
        }
    }
    if (d->stream_status != 200 && d->stream_status != 206)
        return 0; /* an error body: let it finish, decide() looks at the status */
    while (len > 0 && d->cur < d->art->chunk_count) {
        uint64_t want_pos = chunk_start(d, d->cur) + d->chunk_len;
        if (d->stream_pos < want_pos) { /* skip what we already have */
            uint64_t skip = want_pos - d->stream_pos;
            size_t s = skip < len ? (size_t)skip : len;
            data += s;
            len -= s;
            d->stream_pos += s;
            continue;
        }
        if (d->stream_pos > want_pos)
            return 1; /* a gap: cannot happen with a sane server; retry */
        size_t need = chunk_size(d, d->cur) - d->chunk_len;
        size_t take = need < len ? need : len;
        memcpy(d->chunk + d->chunk_len, data, take);
        d->chunk_len += take;
        d->bytes_in_request += take;
        d->stream_pos += take;
        data += take;
        len -= take;
        if (d->chunk_len == chunk_size(d, d->cur) && chunk_complete(d) != 0)
            return 1;
        if (d->stream_status == 206 && d->chunk_len == 0)
            return 0; /* one chunk per ranged request; ignore anything after it */
    }
    return 0;
}

static void start_request(struct download *d);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_request(arg);
}

/* Gives up the current mirror (D5): reported once, partial chunk bytes from it dropped, the next
 * source asked at once (another server, so no backoff). */
static void mirror_failed(struct download *d, const char *reason)
{
    d->stats.mirror_failures++;
    if (d->on_mirror_failed)
        d->on_mirror_failed(d->arg, d->mirrors[d->source], reason);
    d->chunk_len = 0;
    d->source++;
    d->stats.source = (uint32_t)d->source;
    d->backoff_ms = d->backoff_min_ms;
    schedule(d, 0);
}

/* decide() for a mirror's request that did not finish the artifact: success goes on with the
 * same mirror, anything else moves to the next source. */
static bool decide_mirror(struct download *d, const struct http_response *resp)
{
    char why[320];
    if (d->hash_failed)
        snprintf(why, sizeof(why), "chunk %u failed its SHA-256", d->cur);
    else if (d->mirror_status == 200)
        snprintf(why, sizeof(why), "200 instead of 206: the Range was ignored");
    else if (d->mirror_status != 0)
        snprintf(why, sizeof(why), "HTTP %ld", d->mirror_status);
    else if (resp->err != HTTP_CLIENT_OK)
        snprintf(why, sizeof(why), "%s%s%s", http_strerror(resp->err),
                 resp->error_text && resp->error_text[0] ? ": " : "",
                 resp->error_text ? resp->error_text : "");
    else if (resp->status != 206)
        snprintf(why, sizeof(why), "HTTP %ld", resp->status);
    else if (d->progress_in_request == 0)
        snprintf(why, sizeof(why), "short answer: %llu bytes of chunk %u",
                 (unsigned long long)d->bytes_in_request, d->cur);
    else
        return false;
    mirror_failed(d, why);
    return true;
}

static void decide(struct download *d, const struct http_response *resp)
{
    if (d->canceled)
        return finish(d, DOWNLOAD_E_CANCELED, NULL);
    if (d->io_failed)
        return finish(d, DOWNLOAD_E_IO, "writing or syncing the download failed");
    if (d->stop_requested)
        return finish(d, DOWNLOAD_E_CANCELED, "stopped after a chunk");
    if (d->cur == d->art->chunk_count) {
        int rc = verify_whole(d);
        return finish(d, rc, rc ? "whole-artifact hash differs from the manifest" : NULL);
    }
    if (on_mirror(d) && decide_mirror(d, resp))
        return;
    if (d->hash_failed) {
        d->chunk_len = 0; /* a chunk that failed its hash is fetched again from its start */
        if (++d->bad_in_row >= DOWNLOAD_MAX_BAD_CHUNK)
            return finish(d, DOWNLOAD_E_CHUNK_HASH, NULL);
        if (d->stream_status == 200 && d->bad_in_row >= 2)
            return finish(d, DOWNLOAD_E_CHANGED, "the full body does not match the manifest");
        return retry_later(d, 0);
    }
    if (resp->err != HTTP_CLIENT_OK) {
        /* A cut after progress (bytes of the chunk kept in d->chunk) is a short window of
         * coverage, not a failing server: come back at the shortest delay. */
        if (d->bytes_in_request > 0)
            d->backoff_ms = d->backoff_min_ms;
        return retry_later(d, 0);
    }
    long st = resp->status;
    if (st == 416)
        return finish(d, DOWNLOAD_E_TRUNCATED, "416: range beyond the served artifact");
    if (st == 408 || st == 425 || st == 429 || st >= 500)
        return retry_later(d, resp->retry_after_ms);
    if (st != 200 && st != 206)
        return finish(d, DOWNLOAD_E_HTTP, "permanent HTTP status for the artifact");
    if (d->progress_in_request == 0) {
        if (++d->short_in_row > 2)
            return finish(d, DOWNLOAD_E_TRUNCATED, "the server keeps sending short chunks");
        return retry_later(d, 0);
    }
    d->backoff_ms = d->backoff_min_ms;
    int64_t delay = 0;
    if (d->max_bytes_per_s > 0) { /* pacing: average since start back under the cap */
        int64_t should_ms = (int64_t)(d->session_bytes * 1000 / d->max_bytes_per_s);
        int64_t elapsed = ferry_monotonic_ms() - d->session_start_ms;
        if (should_ms > elapsed)
            delay = should_ms - elapsed;
    }
    schedule(d, delay);
}

static void on_done(void *arg, struct http_request *req, const struct http_response *resp)
{
    (void)req;
    struct download *d = arg;
    d->req = NULL;
    decide(d, resp);
}

static void start_request(struct download *d)
{
    if (d->cur >= d->art->chunk_count) {
        struct http_response none = {0};
        none.status = 206;
        decide(d, &none);
        return;
    }
    d->stream_started = 0;
    d->stream_status = 0;
    d->hash_failed = 0;
    d->progress_in_request = 0;
    d->bytes_in_request = 0;
    d->mirror_status = 0;
    /* Resume inside the chunk: the bytes already received stay in d->chunk (D1: nothing of the
     * chunk is written before the whole of it matches its hash). */
    uint64_t start = chunk_start(d, d->cur) + d->chunk_len;
    /* A device-signed request (reqsign.h): a fresh signature per range request, so a download that
     * outlasts the server's time window keeps working. */
    struct reqsign_headers sig;
    const char *headers[6] = {d->if_range_header, NULL};
    bool mirror = on_mirror(d);
    if (!mirror && d->sign != NULL &&
        d->sign(d->sign_arg, "GET", reqsign_target_of_url(d->url), &sig) == 0) {
        headers[1] = sig.device;
        headers[2] = sig.time;
        headers[3] = sig.nonce;
        headers[4] = sig.signature;
        headers[5] = NULL;
    }
    struct http_request_opts o;
    http_request_opts_init(&o);
    /* A mirror gets a plain ranged GET: nothing of the device's identity or the ingest's pin. */
    o.url = mirror ? d->mirrors[d->source] : d->url;
    o.headers = mirror ? NULL : headers;
    o.range_start = (int64_t)start;
    o.range_end = (int64_t)(chunk_start(d, d->cur) + chunk_size(d, d->cur) - 1);
    o.deadline_ms = d->chunk_deadline_ms;
    o.connect_timeout_ms = 15000;
    o.low_speed_bytes_per_s = 64;
    o.low_speed_time_s = 30;
    o.ca_file = d->ca_file;
    o.pinned_public_key = mirror ? NULL : d->pinned_public_key;
    o.on_data = on_data;
    o.on_done = on_done;
    o.arg = d;
    d->stats.requests++;
    int rc = http_request_start(d->client, &o, &d->req);
    if (rc != HTTP_CLIENT_OK) {
        d->req = NULL;
        if (rc == HTTP_CLIENT_ENOMEM)
            return finish(d, DOWNLOAD_E_NOMEM, NULL);
        if (mirror)
            return mirror_failed(d, http_strerror(rc));
        retry_later(d, 0);
    }
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int download_start(struct http_client *client, struct event_base *base,
                   const struct download_opts *o, struct download **out)
{
    if (!client || !base || !o || !o->url || !o->path || !o->artifact || !o->on_done || !out ||
        o->artifact->chunk_count == 0 || o->artifact->chunk_bytes == 0 ||
        o->first_chunk > o->artifact->chunk_count || o->mirror_count > DOWNLOAD_MAX_MIRRORS ||
        (o->mirror_count > 0 && !o->mirror_urls))
        return DOWNLOAD_E_ARG;
    for (size_t i = 0; i < o->mirror_count; i++)
        if (!o->mirror_urls[i])
            return DOWNLOAD_E_ARG;
    if (sodium_init() < 0)
        return DOWNLOAD_E_ARG;
    struct download *d = calloc(1, sizeof(*d));
    if (!d)
        return DOWNLOAD_E_NOMEM;
    d->fd = -1;
    d->client = client;
    d->base = base;
    d->art = o->artifact;
    d->url = strdup(o->url);
    d->path = strdup(o->path);
    d->ca_file = dup_or_null(o->ca_file);
    d->pinned_public_key = dup_or_null(o->pinned_public_key);
    d->chunk = malloc(o->artifact->chunk_bytes);
    d->timer = evtimer_new(base, on_timer, d);
    bool mirrors_ok = true;
    for (size_t i = 0; i < o->mirror_count; i++) {
        d->mirrors[i] = strdup(o->mirror_urls[i]);
        mirrors_ok &= d->mirrors[i] != NULL;
        d->n_mirrors = i + 1; /* so download_free frees what was copied */
    }
    if (!mirrors_ok || !d->url || !d->path || (o->ca_file && !d->ca_file) ||
        (o->pinned_public_key && !d->pinned_public_key) || !d->chunk || !d->timer) {
        download_free(d);
        return DOWNLOAD_E_NOMEM;
    }
    char hex[65];
    ferry_hex_encode(o->artifact->sha256, 32, hex);
    if (o->validator)
        snprintf(d->if_range_header, sizeof(d->if_range_header), "If-Range: %s", o->validator);
    else
        snprintf(d->if_range_header, sizeof(d->if_range_header), "If-Range: \"%s\"", hex);
    d->fd = open(o->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d->fd < 0) {
        download_free(d);
        return DOWNLOAD_E_IO;
    }
    d->sign = o->sign;
    d->sign_arg = o->sign_arg;
    d->on_mirror_failed = o->on_mirror_failed;
    d->on_chunk = o->on_chunk;
    d->on_done = o->on_done;
    d->arg = o->arg;
    d->max_bytes_per_s = o->max_bytes_per_s;
    d->chunk_deadline_ms = o->chunk_deadline_ms > 0 ? o->chunk_deadline_ms : 120000;
    d->backoff_min_ms = o->backoff_min_ms > 0 ? o->backoff_min_ms : 500;
    d->backoff_max_ms = o->backoff_max_ms > 0 ? o->backoff_max_ms : 60000;
    d->backoff_ms = d->backoff_min_ms;
    d->cur = o->first_chunk;
    d->stats.chunk_count = o->artifact->chunk_count;
    for (uint32_t i = 0; i < d->cur; i++)
        d->stats.bytes_done += chunk_size(d, i);
    d->session_start_ms = ferry_monotonic_ms();
    *out = d;
    schedule(d, 0); /* first request from the loop, never from inside the caller */
    return DOWNLOAD_OK;
}

void download_get_stats(const struct download *d, struct download_stats *out)
{
    *out = d->stats;
    out->next_chunk = d->cur;
}

void download_free(struct download *d)
{
    if (!d)
        return;
    if (!d->finished && d->on_done) {
        d->canceled = 1;
        if (d->req)
            http_request_cancel(d->req); /* on_done -> decide -> finish(CANCELED) */
        else
            finish(d, DOWNLOAD_E_CANCELED, NULL);
    }
    if (d->timer)
        event_free(d->timer);
    if (d->fd >= 0)
        close(d->fd);
    free(d->chunk);
    free(d->url);
    free(d->path);
    free(d->ca_file);
    free(d->pinned_public_key);
    for (size_t i = 0; i < d->n_mirrors; i++)
        free(d->mirrors[i]);
    free(d);
}
