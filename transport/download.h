/*
 * download.h - chunked, resumable, verified artifact download over transport/http_client.h.
 *
 * An artifact (transport/manifest.h) is fetched one chunk at a time with a single HTTP Range
 * request per chunk ("Range: bytes=a-b", never several ranges in one header) carrying
 * "If-Range: <validator>" so a changed artifact is noticed instead of mixing two versions. Each
 * chunk is checked against its SHA-256 from the signed manifest *before* it is written; it is
 * then written at its offset and fdatasync'd, and only then reported through on_chunk, whose job
 * is to persist progress (the OTA agent stores "next chunk" in the journal's state table). After a
 * cut, a SIGKILL or a reboot the download is started again with first_chunk = the persisted
 * value, so at most the one chunk in flight is fetched again per interruption. Within one run a
 * cut costs nothing again: the part of the chunk already received is kept in memory and the next
 * request asks only for the rest of it ("Range: bytes=<first missing byte>-<chunk end>"), so a
 * link that is up for seconds at a time still moves a large chunk forward; the chunk is verified
 * and written only when it is whole.
 *
 * A server that ignores Range (answers 200 with the whole body) still works: the stream is read
 * from the start, bytes before the first missing chunk are skipped and every following chunk is
 * verified and written as it passes by. A 200 whose chunks do not match the manifest means the
 * artifact changed on the server: DOWNLOAD_E_CHANGED. 416, or a chunk shorter than the manifest
 * says more than twice, means the served artifact is truncated: DOWNLOAD_E_TRUNCATED.
 * Transient failures (connect, reset, stall, 5xx, 429 with Retry-After, a corrupted chunk) are
 * retried with exponential backoff; a chunk failing its hash DOWNLOAD_MAX_BAD_CHUNK times in a row
 * ends the download with DOWNLOAD_E_CHUNK_HASH.
 *
 * Mirrors (docs/ota.md, "Mirrors"): before `url` (the ingest) the download may try a list of
 * mirror URLs of the same artifact, in order. A mirror is untrusted and plain: its requests carry
 * only "Range" (no If-Range, whose validator a static server does not share; no device signature,
 * which is for the ingest alone; no TLS pin, which is the ingest's; the CA file applies). Any
 * failure of a mirror (connect error, timeout, stall, a status other than 206, a 200 that ignored
 * the Range, a short answer, a chunk failing its hash) is reported once through on_mirror_failed
 * and the download moves on to the next source for the rest of this run, the ingest last; bytes
 * of an unfinished chunk received from the failing mirror are dropped. The failing chunk is never
 * written (D1). A new download_start (a restart, a resumed download) begins at the first mirror
 * again. Redirects are not followed: a 3xx is a failure of that mirror.
 *
 * Bandwidth cap: after each chunk the next request waits until the average rate since the start
 * is back under max_bytes_per_s (coarse pacing per chunk; a chunk itself goes at link speed).
 *
 * Callback contract: download_start() returns an error and never calls back, or returns 0 and
 * calls on_done exactly once (also on download_cancel/download_free of a running download).
 * Everything runs on the event loop thread of the http_client. on_chunk is called from inside the
 * transfer's data callback: it may block briefly (a journal commit) but must not call http_* or
 * download_* functions other than download_get_stats.
 */
#ifndef FERRY_TRANSPORT_DOWNLOAD_H
#define FERRY_TRANSPORT_DOWNLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "transport/reqsign.h"

struct event_base;
struct http_client;
struct manifest_artifact;
struct download;

enum download_error {
    DOWNLOAD_OK = 0,
    DOWNLOAD_E_ARG = -1,
    DOWNLOAD_E_NOMEM = -2,
    DOWNLOAD_E_IO = -3,         /* the destination file could not be written or synced */
    DOWNLOAD_E_HTTP = -4,       /* a permanent HTTP status (404, 403, 410, other 4xx) */
    DOWNLOAD_E_CHANGED = -5,    /* the server's artifact is not the manifest's */
    DOWNLOAD_E_TRUNCATED = -6,  /* the server's artifact is shorter than the manifest's */
    DOWNLOAD_E_CHUNK_HASH = -7, /* the same chunk failed its hash too many times in a row */
    DOWNLOAD_E_CANCELED = -8,
};

const char *download_strerror(int err);

#define DOWNLOAD_MAX_BAD_CHUNK 5
#define DOWNLOAD_MAX_MIRRORS 16u

/* Called after chunk `index` was verified, written and synced; `next_chunk` = index + 1 is what
 * to persist. Return non-zero to stop the download (on_done then gets DOWNLOAD_E_CANCELED). */
typedef int (*download_chunk_fn)(void *arg, uint32_t index, uint32_t next_chunk,
                                 uint64_t bytes_done);
/* A mirror failed (`url`, why in `reason`); the download goes on with the next source. Called on
 * the loop thread from the request's completion; must not call download_* functions. */
typedef void (*download_mirror_fn)(void *arg, const char *url, const char *reason);
/* End of the download: err 0 when every chunk and the whole artifact hash are verified. */
typedef void (*download_done_fn)(void *arg, int err, const char *reason);

struct download_opts {
    const char *url;                          /* copied */
    const char *path;                         /* destination file (created); copied */
    const struct manifest_artifact *artifact; /* borrowed until on_done */
    uint32_t first_chunk;                     /* chunks before it are already in `path` */
    const char *validator;                    /* If-Range value; NULL: "\"<sha256 hex>\"" */
    uint64_t max_bytes_per_s;                 /* 0: no cap */
    int64_t chunk_deadline_ms;                /* per request; 0: 120 s */
    int64_t backoff_min_ms, backoff_max_ms;   /* 0: 500 ms and 60 s */
    const char *ca_file;                      /* copied */
    const char *pinned_public_key;            /* https pin (http_client.h); copied */
    /* Signs every range request as the device (transport/reqsign.h); NULL: unsigned. Called on
     * the loop thread before each request, so each carries a fresh time and nonce. */
    reqsign_request_fn sign;
    void *sign_arg;
    /* Mirror URLs of this artifact (<base><sha256 hex>), tried in order before `url`; copied;
     * at most DOWNLOAD_MAX_MIRRORS. */
    const char *const *mirror_urls;
    size_t mirror_count;
    download_mirror_fn on_mirror_failed; /* may be NULL */
    download_chunk_fn on_chunk;          /* may be NULL */
    download_done_fn on_done;            /* required */
    void *arg;
};

/* What a running or finished download did (for status output and tests). */
struct download_stats {
    uint32_t next_chunk; /* first chunk not yet verified and written */
    uint32_t chunk_count;
    uint64_t bytes_done;     /* artifact bytes verified and written, including resumed ones */
    uint64_t bytes_received; /* response body bytes received, all attempts (wire cost) */
    uint32_t requests;
    uint32_t retries;
    uint32_t bad_chunks;      /* chunks that failed their hash (and were fetched again) */
    uint32_t mirror_failures; /* mirrors given up (each reported through on_mirror_failed) */
    uint32_t mirror_chunks;   /* chunks verified and written from a mirror */
    uint64_t mirror_bytes;    /* their bytes */
    uint32_t source;          /* current source: < mirror_count a mirror, == mirror_count url */
};

int download_start(struct http_client *client, struct event_base *base,
                   const struct download_opts *opts, struct download **out)
    __attribute__((warn_unused_result));
void download_get_stats(const struct download *d, struct download_stats *out);
/* Cancels a running download (on_done with DOWNLOAD_E_CANCELED before it returns) and frees it;
 * frees a finished one. Not from inside on_chunk or on_done. */
void download_free(struct download *d);

#endif
