/*
 * tls.h - TLS for ferry-ingest's listener: the OpenSSL context built from server.tls_cert and
 * server.tls_key, swapped for a new one on SIGHUP, and the session tickets that let a device
 * reconnect without a full handshake.
 *
 * The server (server.c) gives each worker's evhttp ingest_tls_bufferevent() as its bufferevent
 * callback (evhttp_set_bevcb), so every accepted connection gets an OpenSSL bufferevent in
 * accepting state made from the context current at that moment. ingest_tls_reload() builds a
 * new context from the files and swaps it in under a mutex; connections already open keep the
 * context they were made with (SSL_new holds a reference), so nothing in flight breaks, and a
 * reload that fails (a missing file, a key that does not match the certificate) keeps the old
 * context and says why.
 *
 * Session tickets are encrypted with keys this module owns, not the context's, so a reload does
 * not invalidate them: one key per rotation period (server.tls_ticket_rotation), made from
 * random bytes when its period starts; tickets made with an older key are still accepted for
 * server.tls_ticket_lifetime (and renewed under the current key), then the key is overwritten.
 * Without server.tls_ticket_key_file the keys live in this process only (a restarted ingest
 * makes every device pay one full handshake again); with it they are derived from the file's
 * secret and the period, so a restarted process and every process sharing the file accept each
 * other's tickets. SIGHUP re-reads that file too.
 *
 * Threading: ingest_tls_bufferevent() runs on worker threads, several at
 * once; ingest_tls_reload() on any thread. All are thread-safe.
 */
#ifndef FERRY_INGEST_TLS_H
#define FERRY_INGEST_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct event_base;
struct ingest_tls;

/* What the TLS listener needs from the configuration (docs/ingest.md, [server] tls_*). */
struct ingest_tls_config {
    const char *cert_file;       /* PEM: the certificate, then its intermediates */
    const char *key_file;        /* PEM: its private key */
    int min_version;             /* TLS1_2_VERSION or TLS1_3_VERSION */
    int64_t ticket_rotation_ms;  /* a new ticket key this often; 0: no session tickets */
    int64_t ticket_lifetime_ms;  /* a ticket is accepted this long (>= ticket_rotation_ms) */
    const char *ticket_key_file; /* NULL/"": random ticket keys in memory; else 64 hex digits
                                    from which every process derives the same keys */
};

/* The most ticket keys kept at once: ticket_lifetime / ticket_rotation + 1 may not exceed it. */
#define INGEST_TLS_MAX_TICKET_KEYS 256

/* Builds the context from the files named in cfg (copied). Returns 0, or -1 with err naming
 * the file and OpenSSL's reason. */
int ingest_tls_new(const struct ingest_tls_config *cfg, struct ingest_tls **out, char *err,
                   size_t err_len) __attribute__((warn_unused_result));
/* Frees the module; call after every connection made from it is closed. NULL is allowed. */
void ingest_tls_free(struct ingest_tls *t);

/* Reads the certificate and key again into a new context and swaps it in for new connections.
 * On failure returns -1 with err saying why and keeps serving with the old context. */
int ingest_tls_reload(struct ingest_tls *t, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* evhttp_set_bevcb callback (`arg` is the struct ingest_tls): an OpenSSL bufferevent in
 * accepting state for a new connection. NULL when OpenSSL is out of memory; evhttp then makes a
 * plain bufferevent, which ingest_tls_is_tls() tells apart so the server can refuse it. */
struct bufferevent *ingest_tls_bufferevent(struct event_base *base, void *arg);

/* True when bev is an OpenSSL bufferevent. */
bool ingest_tls_is_tls(struct bufferevent *bev);

/* Whether bev's TLS session was resumed from a ticket (1), made by a full handshake (0), or bev is
 * not TLS (-1). Ask after the connection's first request arrived (the handshake is over). */
int ingest_tls_resumed(struct bufferevent *bev);

#endif
