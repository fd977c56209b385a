/*
 * nonce.c - the replay cache of device-signed requests (auth.h, "Replay cache";
 * docs/wire-format.md section 12, docs/security.md).
 *
 * A signed GET carries a random 128-bit nonce and is accepted while its time is within the
 * window of the ingest's clock. Without memory, whoever captured one (a proxy that terminates
 * TLS, a log of headers) could send it again inside the window. This cache remembers every
 * accepted (device, nonce) until the request's time leaves the window, so the same request a
 * second time is refused.
 *
 * Layout: a set-associative table, like a CPU cache. An entry is a 16-byte fingerprint
 * (BLAKE2b-128 of device id and nonce, keyed with a random per-process key, so that nobody can
 * aim many nonces at one set) and the second at which it expires: 24 bytes. Sets of
 * NONCE_WAYS entries; the number of sets is the largest power of two the configured bytes hold.
 * An insert takes an empty or expired way of its set, else evicts the way that expires first:
 * memory is fixed, whatever the request rate, and eviction goes by time. An eviction of a way
 * that had not expired yet is reported to the caller (a replay of that request inside its window
 * would no longer be detected: the cache is too small for the rate; the operator is told).
 *
 * Invariants:
 *   1. n_sets is a power of two; every set has NONCE_WAYS entries; expires_s 0 means empty.
 *   2. A set is only read or written under its stripe lock (set index % NONCE_STRIPES).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cloud-ingest/auth/auth.h"

#define NONCE_WAYS 8
#define NONCE_STRIPES 64
#define NONCE_FP_BYTES 16

struct nonce_entry {
    uint8_t fp[NONCE_FP_BYTES];
    int64_t expires_s;
};

struct ingest_nonce_cache {
    struct nonce_entry *entries; /* n_sets * NONCE_WAYS */
    size_t n_sets;
    uint8_t key[crypto_generichash_KEYBYTES];
    pthread_mutex_t stripes[NONCE_STRIPES];
};

int ingest_nonce_cache_new(uint64_t max_bytes, struct ingest_nonce_cache **out)
{
    *out = NULL;
    const uint64_t set_bytes = NONCE_WAYS * sizeof(struct nonce_entry);
    if (max_bytes < set_bytes)
        return 0; /* disabled */
    if (sodium_init() < 0)
        return -1;
    size_t n_sets = 1;
    while ((uint64_t)n_sets * 2 * set_bytes <= max_bytes && n_sets < ((size_t)1 << 30))
        n_sets *= 2;
    struct ingest_nonce_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->entries = calloc(n_sets * NONCE_WAYS, sizeof(struct nonce_entry));
    if (c->entries == NULL) {
        free(c);
        return -1;
    }
    c->n_sets = n_sets;
    randombytes_buf(c->key, sizeof(c->key));
    for (size_t i = 0; i < NONCE_STRIPES; i++)
        pthread_mutex_init(&c->stripes[i], NULL);
    *out = c;
    return 0;
}

void ingest_nonce_cache_free(struct ingest_nonce_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < NONCE_STRIPES; i++)
        pthread_mutex_destroy(&c->stripes[i]);
    sodium_memzero(c->key, sizeof(c->key));
    free(c->entries);
    free(c);
}

size_t ingest_nonce_cache_capacity(const struct ingest_nonce_cache *c)
{
    return c != NULL ? c->n_sets * NONCE_WAYS : 0;
}

enum ingest_nonce_result ingest_nonce_cache_check(struct ingest_nonce_cache *c, const char *device,
                                                  const char *nonce, int64_t expires_s,
                                                  int64_t now_s)
{
    if (c == NULL)
        return INGEST_NONCE_FRESH;
    /* The nonce's hex case does not make another request: fold it (the signature covers the
     * text as sent, so a case change fails there anyway; this keeps the cache exact). */
    char folded[REQSIGN_NONCE_TEXT_MAX + 1];
    size_t n = strnlen(nonce, REQSIGN_NONCE_TEXT_MAX);
    for (size_t i = 0; i < n; i++)
        folded[i] = nonce[i] >= 'A' && nonce[i] <= 'Z' ? (char)(nonce[i] - 'A' + 'a') : nonce[i];
    crypto_generichash_state st;
    uint8_t fp[NONCE_FP_BYTES];
    crypto_generichash_init(&st, c->key, sizeof(c->key), sizeof(fp));
    crypto_generichash_update(&st, (const uint8_t *)device, strlen(device) + 1); /* with NUL */
    crypto_generichash_update(&st, (const uint8_t *)folded, n);
    crypto_generichash_final(&st, fp, sizeof(fp));
    uint64_t h;
    memcpy(&h, fp, sizeof(h));
    size_t set = (size_t)(h & (c->n_sets - 1));
    struct nonce_entry *e = &c->entries[set * NONCE_WAYS];
    pthread_mutex_t *lock = &c->stripes[set % NONCE_STRIPES];
    pthread_mutex_lock(lock);
    size_t victim = 0;
    for (size_t w = 0; w < NONCE_WAYS; w++) {
        if (e[w].expires_s > now_s && sodium_memcmp(e[w].fp, fp, sizeof(fp)) == 0) {
            pthread_mutex_unlock(lock);
            return INGEST_NONCE_REPLAY;
        }
        if (e[w].expires_s < e[victim].expires_s)
            victim = w;
    }
    bool live = e[victim].expires_s > now_s;
    memcpy(e[victim].fp, fp, sizeof(fp));
    e[victim].expires_s = expires_s > now_s ? expires_s : now_s + 1;
    pthread_mutex_unlock(lock);
    return live ? INGEST_NONCE_FRESH_EVICTED : INGEST_NONCE_FRESH;
}
