/*
 * tls.c - ferry-ingest's TLS context, its reload, and session-ticket keys (see tls.h).
 *
 * Defaults, chosen for devices that are ours to configure (no legacy clients to keep):
 *   - TLS 1.2 at least (server.tls_min_version 1.3 raises it); TLS 1.2 only with ECDHE key
 *     exchange and AEAD ciphers (AES-GCM, ChaCha20-Poly1305): forward secrecy, no CBC, no RSA
 *     key transport, no SHA-1 MACs. TLS 1.3's suites are OpenSSL's defaults (all AEAD).
 *   - No renegotiation, no compression.
 *   - SSL_MODE_RELEASE_BUFFERS: an idle connection gives its 2 x ~17 KiB record buffers back, which
 *     is what a fleet of mostly idle keep-alive connections needs.
 *   - No server-side session cache: resumption is by stateless tickets only, so it works across
 *     worker threads, across reloads, and costs no memory per device.
 *   - One ticket per handshake (OpenSSL sends two by default; a device resumes one connection).
 *
 * Ticket keys: a ring of ticket_lifetime / ticket_rotation + 1 slots; the key of period p (the
 * wall clock divided by the rotation) lives in slot p % n. Without a ticket key file it is made
 * from random bytes the first time period p encrypts a ticket; with one
 * (server.tls_ticket_key_file, 32 secret bytes as hex) it is derived from the file's secret and p
 * (libsodium's crypto_kdf, BLAKE2b), so every process that reads the same file, and a restarted
 * one, computes the same keys and resumes the others' sessions. Periods follow the wall clock for
 * that reason. A ticket names its key (16 random bytes); decryption looks the name up among the
 * slots whose period is within the lifetime, and a ticket made with an older key is renewed under
 * the current one (callback result 2). Invariant: a slot holds the key of one period only, and no
 * key older than the lifetime is ever found.
 */
#include "cloud-ingest/tls.h"

#include <ctype.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "common/util.h"

#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static const unsigned char session_id_context[] = "ferry-ingest";

struct ticket_key {
    uint64_t period;
    bool used;
    unsigned char name[16];
    unsigned char aes_key[32];
    unsigned char hmac_key[32];
};

struct ingest_tls {
    char *cert_file, *key_file, *ticket_key_file;
    int min_version;
    int64_t rotation_ms, lifetime_ms;
    pthread_mutex_t lock; /* guards ctx, the secret and the ticket keys */
    SSL_CTX *ctx;
    bool have_secret;
    unsigned char secret[crypto_kdf_KEYBYTES];
    struct ticket_key *keys;
    size_t n_keys;
};

/* Writes what, the file and OpenSSL's first queued error into err; clears the error queue. */
static void ssl_error(char *err, size_t err_len, const char *what, const char *file)
{
    char reason[256] = "unknown error";
    unsigned long e = ERR_peek_error(); /* the first: the cause, not the caller */
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    snprintf(err, err_len, "%s %s: %s", what, file, reason);
}

/* ---- Session-ticket keys -------------------------------------------------------------------- */

static uint64_t current_period(const struct ingest_tls *t)
{
    return (uint64_t)(ferry_realtime_ns() / 1000000) / (uint64_t)t->rotation_ms;
}

/* The key of `period` from the secret into its slot. Caller holds the lock. */
static void ticket_key_derive(struct ingest_tls *t, uint64_t period)
{
    static const char context[crypto_kdf_CONTEXTBYTES] = {'f', 'e', 'r', 'r', 'y', 't', 'k', 't'};
    struct ticket_key *k = &t->keys[period % t->n_keys];
    k->period = period;
    k->used = true;
    /* Three subkeys per period; period * 3 + 2 cannot overflow for any wall-clock period. */
    crypto_kdf_derive_from_key(k->name, sizeof(k->name), period * 3, context, t->secret);
    crypto_kdf_derive_from_key(k->aes_key, sizeof(k->aes_key), period * 3 + 1, context, t->secret);
    crypto_kdf_derive_from_key(k->hmac_key, sizeof(k->hmac_key), period * 3 + 2, context,
                               t->secret);
}

/* Copies the key of the current period into *out, making it first if its period just began. */
static int ticket_key_current(struct ingest_tls *t, struct ticket_key *out)
{
    uint64_t period = current_period(t);
    struct ticket_key *k = &t->keys[period % t->n_keys];
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    if (t->have_secret && (!k->used || k->period != period))
        ticket_key_derive(t, period);
    if (!k->used || k->period != period) {
        struct ticket_key fresh = {.period = period, .used = true};
        if (RAND_bytes(fresh.name, sizeof(fresh.name)) != 1 ||
            RAND_bytes(fresh.aes_key, sizeof(fresh.aes_key)) != 1 ||
            RAND_bytes(fresh.hmac_key, sizeof(fresh.hmac_key)) != 1)
            rc = -1;
        else
            *k = fresh;
        OPENSSL_cleanse(&fresh, sizeof(fresh));
    }
    if (rc == 0)
        *out = *k;
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* Finds the key a ticket names among the live ones. Returns 1 (current key), 2 (an older key:
 * renew the ticket) or 0 (unknown or expired: full handshake). */
static int ticket_key_find(struct ingest_tls *t, const unsigned char name[16],
                           struct ticket_key *out)
{
    uint64_t period = current_period(t);
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    /* The live periods, newest first: period, period - 1, ..., period - (n_keys - 1). */
    for (uint64_t age = 0; age < t->n_keys && age <= period && rc == 0; age++) {
        uint64_t p = period - age;
        const struct ticket_key *k = &t->keys[p % t->n_keys];
        if (t->have_secret && (!k->used || k->period != p))
            ticket_key_derive(t, p);
        if (!k->used || k->period != p || CRYPTO_memcmp(k->name, name, sizeof(k->name)) != 0)
            continue;
        *out = *k;
        rc = age == 0 ? 1 : 2;
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* SSL_CTX_set_tlsext_ticket_key_evp_cb: sets up the cipher (AES-256-CBC) and MAC (HMAC-SHA256)
 * contexts with the key for a new ticket (enc = 1) or with the key a presented ticket names. */
static int ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    struct ingest_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    struct ticket_key k;
    int rc = 1;
    if (enc) {
        if (ticket_key_current(t, &k) != 0 || RAND_bytes(iv, 16) != 1)
            return -1;
        memcpy(key_name, k.name, sizeof(k.name));
    } else if ((rc = ticket_key_find(t, key_name, &k)) == 0) {
        return 0;
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac_key, sizeof(k.hmac_key)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_MAC_CTX_set_params(hctx, params) == 1 &&
             (enc ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes_key, iv)
                  : EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes_key, iv)) == 1;
    OPENSSL_cleanse(&k, sizeof(k));
    return ok ? rc : -1;
}

/* Reads server.tls_ticket_key_file: 64 hex digits (32 bytes), surrounding whitespace allowed. */
static int load_secret(const char *path, unsigned char out[crypto_kdf_KEYBYTES], char *err,
                       size_t err_len)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = ferry_read_file(path, 4096, &data, &len);
    if (rc != 0) {
        snprintf(err, err_len, "server.tls_ticket_key_file %s: %s", path,
                 rc == -EFBIG ? "larger than 4 KiB" : strerror(-rc));
        return -1;
    }
    size_t b = 0, e = len;
    while (b < e && isspace(data[b]))
        b++;
    while (e > b && isspace(data[e - 1]))
        e--;
    char hex[2 * crypto_kdf_KEYBYTES + 1];
    bool ok = e - b == 2 * crypto_kdf_KEYBYTES;
    if (ok) {
        memcpy(hex, data + b, e - b);
        hex[e - b] = '\0';
        ok = ferry_hex_decode(hex, out, crypto_kdf_KEYBYTES) == 0;
    }
    sodium_memzero(data, len);
    sodium_memzero(hex, sizeof(hex));
    free(data);
    if (!ok) {
        snprintf(err, err_len,
                 "server.tls_ticket_key_file %s: expected 64 hex digits (openssl rand -hex 32)",
                 path);
        return -1;
    }
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
        log_warn("ingest",
                 "server.tls_ticket_key_file %s is readable by group or others: whoever "
                 "reads it can decrypt resumed TLS sessions (chmod 600)",
                 path);
    return 0;
}

/* ---- The context ---------------------------------------------------------------------------- */

/* Logs what certificate a context serves, so that an operator sees a reload take effect. */
static void log_certificate(SSL_CTX *ctx, const char *file)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    if (cert == NULL)
        return;
    char subject[256] = "?";
    X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
    char until[64] = "?";
    BIO *b = BIO_new(BIO_s_mem());
    if (b != NULL && ASN1_TIME_print(b, X509_get0_notAfter(cert)) == 1) {
        int n = BIO_read(b, until, (int)sizeof(until) - 1);
        until[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
    log_info("ingest", "TLS certificate %s: %s, valid until %s", file, subject, until);
}

static SSL_CTX *make_ctx(struct ingest_tls *t, char *err, size_t err_len)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        ssl_error(err, err_len, "TLS context for", t->cert_file);
        return NULL;
    }
    SSL_CTX_set_app_data(ctx, t);
    if (SSL_CTX_set_min_proto_version(ctx, t->min_version) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set_session_id_context(ctx, session_id_context, sizeof(session_id_context) - 1) !=
            1) {
        ssl_error(err, err_len, "TLS settings for", t->cert_file);
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (t->rotation_ms > 0) {
        /* The session timeout is the ticket lifetime hint the client is told. */
        SSL_CTX_set_timeout(ctx, (long)(t->lifetime_ms / 1000));
        SSL_CTX_set_num_tickets(ctx, 1);
        if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1) {
            ssl_error(err, err_len, "TLS session tickets for", t->cert_file);
            goto fail;
        }
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1) {
        ssl_error(err, err_len, "server.tls_cert", t->cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1) {
        ssl_error(err, err_len, "server.tls_key", t->key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_error(err, err_len, "server.tls_key does not match server.tls_cert", t->key_file);
        goto fail;
    }
    log_certificate(ctx, t->cert_file);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int ingest_tls_new(const struct ingest_tls_config *cfg, struct ingest_tls **out, char *err,
                   size_t err_len)
{
    *out = NULL;
    if (cfg->cert_file == NULL || cfg->cert_file[0] == '\0' || cfg->key_file == NULL ||
        cfg->key_file[0] == '\0') {
        snprintf(err, err_len, "TLS needs both server.tls_cert and server.tls_key");
        return -1;
    }
    size_t n_keys = 1;
    if (cfg->ticket_rotation_ms > 0) {
        if (cfg->ticket_lifetime_ms < cfg->ticket_rotation_ms ||
            cfg->ticket_lifetime_ms / cfg->ticket_rotation_ms + 1 > INGEST_TLS_MAX_TICKET_KEYS) {
            snprintf(err, err_len,
                     "server.tls_ticket_lifetime must be between server.tls_ticket_rotation and "
                     "%d times it",
                     INGEST_TLS_MAX_TICKET_KEYS - 1);
            return -1;
        }
        n_keys = (size_t)(cfg->ticket_lifetime_ms / cfg->ticket_rotation_ms) + 1;
    }
    struct ingest_tls *t = calloc(1, sizeof(*t));
    if (t != NULL)
        pthread_mutex_init(&t->lock, NULL);
    if (t == NULL || (t->keys = calloc(n_keys, sizeof(*t->keys))) == NULL ||
        (t->cert_file = strdup(cfg->cert_file)) == NULL ||
        (t->key_file = strdup(cfg->key_file)) == NULL ||
        (cfg->ticket_key_file != NULL && cfg->ticket_key_file[0] != '\0' &&
         (t->ticket_key_file = strdup(cfg->ticket_key_file)) == NULL)) {
        snprintf(err, err_len, "out of memory");
        ingest_tls_free(t);
        return -1;
    }
    t->n_keys = n_keys;
    t->min_version = cfg->min_version;
    t->rotation_ms = cfg->ticket_rotation_ms;
    t->lifetime_ms = cfg->ticket_lifetime_ms;
    if (t->ticket_key_file != NULL && t->rotation_ms > 0) {
        if (load_secret(t->ticket_key_file, t->secret, err, err_len) != 0) {
            ingest_tls_free(t);
            return -1;
        }
        t->have_secret = true;
    }
    if ((t->ctx = make_ctx(t, err, err_len)) == NULL) {
        ingest_tls_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void ingest_tls_free(struct ingest_tls *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    if (t->keys != NULL)
        OPENSSL_cleanse(t->keys, t->n_keys * sizeof(*t->keys));
    free(t->keys);
    pthread_mutex_destroy(&t->lock);
    sodium_memzero(t->secret, sizeof(t->secret));
    free(t->cert_file);
    free(t->key_file);
    free(t->ticket_key_file);
    free(t);
}

int ingest_tls_reload(struct ingest_tls *t, char *err, size_t err_len)
{
    unsigned char secret[crypto_kdf_KEYBYTES];
    if (t->have_secret && load_secret(t->ticket_key_file, secret, err, err_len) != 0)
        return -1;
    SSL_CTX *fresh = make_ctx(t, err, err_len);
    if (fresh == NULL) {
        sodium_memzero(secret, sizeof(secret));
        return -1;
    }
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = fresh;
    if (t->have_secret && sodium_memcmp(secret, t->secret, sizeof(secret)) != 0) {
        /* A new secret: the keys derived from the old one are forgotten with it. */
        memcpy(t->secret, secret, sizeof(secret));
        sodium_memzero(t->keys, t->n_keys * sizeof(*t->keys));
    }
    pthread_mutex_unlock(&t->lock);
    sodium_memzero(secret, sizeof(secret));
    SSL_CTX_free(old); /* connections made from it hold their own references */
    return 0;
}

struct bufferevent *ingest_tls_bufferevent(struct event_base *base, void *arg)
{
    struct ingest_tls *t = arg;
    pthread_mutex_lock(&t->lock);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->lock);
    if (ssl == NULL) {
        ERR_clear_error();
        log_error("ingest", "TLS: out of memory for a new connection");
        return NULL;
    }
    /* The bufferevent owns ssl from here on (freed with it: BEV_OPT_CLOSE_ON_FREE). */
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        log_error("ingest", "TLS: out of memory for a new connection");
        return NULL;
    }
    /* A device on a flaky link often vanishes without close_notify: that is a closed
     * connection, not an error worth a log line. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

bool ingest_tls_is_tls(struct bufferevent *bev)
{
    return bev != NULL && bufferevent_openssl_get_ssl(bev) != NULL;
}

int ingest_tls_resumed(struct bufferevent *bev)
{
    SSL *ssl = bev != NULL ? bufferevent_openssl_get_ssl(bev) : NULL;
    if (ssl == NULL)
        return -1;
    return SSL_session_reused(ssl) ? 1 : 0;
}
