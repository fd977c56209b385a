/*
 * http_client.h - an HTTP client on libcurl's multi interface, driven by a libevent loop.
 *
 * Every transfer of ferryd (batch uploads, enrollment, manifest polls, chunk downloads) goes
 * through one struct http_client bound to the daemon's event_base. libcurl never blocks here: its
 * sockets are watched by libevent (CURLMOPT_SOCKETFUNCTION) and its timeouts by one libevent
 * timer (CURLMOPT_TIMERFUNCTION); the loop calls curl_multi_socket_action() when either fires.
 * There is no curl_multi_perform() loop and no thread (DNS uses libcurl's threaded resolver).
 *
 * Each request has a total deadline, an optional connect timeout and a low-speed limit (a
 * transfer moving fewer than low_speed_bytes_per_s for low_speed_time_s is abandoned: on a
 * flaky 4G link a stalled TCP connection otherwise holds a request until its deadline).
 * The response body goes either into a bounded buffer owned by the request (max_response_bytes;
 * a larger body fails the request with HTTP_CLIENT_ETOOBIG) or, for downloads, to a write callback.
 * Response headers of the final response are captured and can be looked up by name; Retry-After
 * is parsed for the caller (seconds or HTTP-date).
 *
 * Callback contract (STYLE rule 16): http_request_start() either returns a negative error and
 * never calls back, or returns 0 and calls on_done exactly once - when the transfer ends, when it
 * is cancelled (err = HTTP_CLIENT_ECANCELED), or when the client is freed. on_done runs on the loop
 * thread, never from inside a libcurl callback, so it may start new requests or cancel others.
 *
 * TLS: the client's transfers share one TLS session cache, so a new connection to a server
 * seen before resumes its session (a ticket) instead of a full handshake; a request may pin the
 * server's public key (pinned_public_key) on top of verifying its certificate.
 *
 * Threading: all functions must be called from the thread running the event_base.
 */
#ifndef FERRY_TRANSPORT_HTTP_CLIENT_H
#define FERRY_TRANSPORT_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct http_client;
struct http_request;

/* Prefixed HTTP_CLIENT_ because libevent's <event2/http.h> defines HTTP_OK etc. as macros. */
enum http_err {
    HTTP_CLIENT_OK = 0,
    HTTP_CLIENT_EINVAL = -1,    /* bad argument (no url, unknown method, bad range) */
    HTTP_CLIENT_ENOMEM = -2,    /* out of memory */
    HTTP_CLIENT_ECONNECT = -3,  /* could not resolve or connect (link down, server down) */
    HTTP_CLIENT_ETIMEOUT = -4,  /* the request's total deadline passed */
    HTTP_CLIENT_ESTALLED = -5,  /* below the low-speed limit for too long: abandoned */
    HTTP_CLIENT_ETOOBIG = -6,   /* response body larger than max_response_bytes */
    HTTP_CLIENT_ENETWORK = -7,  /* the transfer failed midway (reset, TLS error, bad response) */
    HTTP_CLIENT_ECANCELED = -8, /* http_request_cancel() or http_client_free() */
    HTTP_CLIENT_EABORTED = -9,  /* the write callback asked to stop */
    HTTP_CLIENT_ECURL = -10,    /* libcurl failed in a way none of the above describes */
    HTTP_CLIENT_EPINNED = -11,  /* https: the server's public key is not the pinned one */
};

/* A short constant name for an http_err ("connect failed", ...). */
const char *http_strerror(int err);

/* The outcome handed to on_done. Everything it points to is owned by the request and valid only
 * during the on_done call; copy what you keep. */
struct http_response {
    int err;             /* HTTP_CLIENT_OK when an HTTP response arrived, whatever its status */
    long status;         /* HTTP status of the final response; 0 when none arrived */
    const uint8_t *body; /* buffered body (NULL when on_data consumed it); NUL-terminated */
    size_t body_len;
    int64_t retry_after_ms;  /* parsed Retry-After (delta or date), -1 when absent/invalid */
    int64_t elapsed_ms;      /* from start to completion */
    uint64_t bytes_sent;     /* request body bytes uploaded */
    uint64_t bytes_received; /* response body bytes downloaded */
    uint64_t header_bytes;   /* request + response header bytes (wire overhead) */
    const char *error_text;  /* libcurl's message for a failed transfer, "" otherwise */
};

/* Streams response body bytes (for downloads). Return 0 to continue, non-zero to abort the
 * transfer (it then completes with HTTP_CLIENT_EABORTED). Called from inside libcurl: it must not
 * call any http_* function except http_response_status(). */
typedef int (*http_data_fn)(void *arg, const uint8_t *data, size_t len);
/* Completion; see the callback contract above. The request handle is dead after it returns. */
typedef void (*http_done_fn)(void *arg, struct http_request *req, const struct http_response *resp);

struct http_request_opts {
    const char *method;         /* "GET" (default when NULL), "POST", "PUT", "HEAD", "DELETE" */
    const char *url;            /* required; copied */
    const char *const *headers; /* NULL-terminated "Name: value" lines; copied */
    const void *body;           /* borrowed: must stay valid until on_done has run */
    size_t body_len;
    int64_t deadline_ms;        /* total time limit; 0 = none (not recommended) */
    int64_t connect_timeout_ms; /* 0 = libcurl's default (300 s), capped by the deadline */
    long low_speed_bytes_per_s; /* 0 = no stall detection */
    long low_speed_time_s;      /* how long below the limit counts as stalled */
    size_t max_response_bytes;  /* bound of the buffered body (ignored with on_data); 0 = 1 MiB */
    int64_t range_start;        /* Range: bytes=start-[end]; -1 = no Range header */
    int64_t range_end;          /* inclusive; -1 = to the end */
    const char *ca_file;        /* CA bundle for https; NULL = system default; copied */
    const char *pinned_public_key; /* https: "sha256//BASE64[;sha256//BASE64...]", the SHA-256
                                      of the server's SubjectPublicKeyInfo; the certificate is
                                      still verified against ca_file; NULL = no pin; copied */
    http_data_fn on_data;          /* NULL = buffer the body */
    http_done_fn on_done;          /* required */
    void *arg;                     /* passed to both callbacks */
};

/* Fills opts with defaults: GET, no body, deadline 30 s, no Range, 1 MiB body bound. */
void http_request_opts_init(struct http_request_opts *opts);

/* Makes a client bound to `base`. Returns NULL when libcurl or memory fails. The base must
 * outlive the client. Call curl_global_init() once in main before (libcurl requires it). */
struct http_client *http_client_new(struct event_base *base) __attribute__((warn_unused_result));

/* Cancels every request still running (each on_done is called with HTTP_CLIENT_ECANCELED before
 * this returns), then frees the client. Must not be called from inside an on_done or on_data. */
void http_client_free(struct http_client *client);

/* Starts a request. On success returns 0 and, when out_req is non-NULL, stores a handle valid
 * until on_done runs (use it only for http_request_cancel). On failure returns a negative
 * http_err and on_done is never called. */
int http_request_start(struct http_client *client, const struct http_request_opts *opts,
                       struct http_request **out_req) __attribute__((warn_unused_result));

/* Cancels a running request: its on_done is called with HTTP_CLIENT_ECANCELED before this returns.
 * Must not be called for a request whose on_done already ran. */
void http_request_cancel(struct http_request *req);

/* Status of the response being received (0 before the status line); for on_data, e.g. to tell
 * a 206 from a 200 before writing anything. */
long http_request_status(const struct http_request *req);

/* Looks up a header of the final response by name (case-insensitive). Returns a pointer to its
 * value (not NUL-terminated, surrounding whitespace trimmed) and its length in *len, or NULL.
 * Only valid inside on_done, with the request handed to it. */
const char *http_response_header(const struct http_request *req, const char *name, size_t *len);

/* Number of requests in flight (for status and tests). */
size_t http_client_in_flight(const struct http_client *client);

/* Parses a Retry-After value: delta-seconds or an HTTP-date (relative to now_s, wall clock).
 * Returns milliseconds >= 0, or -1 when the value is neither. Capped at one day. */
int64_t http_parse_retry_after(const char *value, size_t len, int64_t now_s);

#endif
