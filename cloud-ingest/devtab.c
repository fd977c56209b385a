/*
 * devtab.c - the in-memory device table of the hot path (see ingest.h).
 *
 * One chained hash table under one mutex: every operation holds it for a few hundred
 * nanoseconds, never across a store call (a cache miss looks the device up with the lock released
 * and then inserts). Only devices the store knows get an entry, so a flood of batches naming
 * made-up devices cannot grow the table; it costs one store lookup each, which is what /v1/batches
 * would do anyway.
 *
 * Fair share: a token bucket per device (limits.device_rate batches/s, limits.device_burst) and
 * a cap on its batches in the commit queue (limits.device_max_inflight). Either answers 429 with
 * the seconds until the device may try again.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud-ingest/ingest.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"

#define DEVTAB_MAX_HEALTH 64
#define DEVTAB_HEALTH_NAME 120

/* The name is bytes with a length: it comes from a device and may hold a NUL. */
struct health_value {
    char name[DEVTAB_HEALTH_NAME];
    size_t name_len;
    int64_t ts_ns; /* corrected device time of the value */
    double value;
};

struct dev_entry {
    struct dev_entry *next;
    char id[INGEST_DEVICE_ID_MAX + 1];
    uint8_t public_key[32];
    bool revoked;
    long long fetched_ms;
    double tokens;
    long long tokens_ms;
    unsigned inflight;
    struct health_value *health;
    size_t n_health;
};

struct ingest_devtab {
    pthread_mutex_t lock;
    struct dev_entry **buckets;
    size_t n_buckets;
    size_t n_entries;
    struct ingest_store *store;
    const struct ingest_config *cfg;
};

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s)
        h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

int ingest_devtab_new(struct ingest_store *store, const struct ingest_config *cfg,
                      struct ingest_devtab **out)
{
    struct ingest_devtab *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return INGEST_ENOMEM;
    t->n_buckets = 4096;
    t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
    if (t->buckets == NULL) {
        free(t);
        return INGEST_ENOMEM;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->store = store;
    t->cfg = cfg;
    *out = t;
    return 0;
}

void ingest_devtab_free(struct ingest_devtab *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n_buckets; i++) {
        struct dev_entry *e = t->buckets[i];
        while (e != NULL) {
            struct dev_entry *next = e->next;
            free(e->health);
            free(e);
            e = next;
        }
    }
    free(t->buckets);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static struct dev_entry *find(struct ingest_devtab *t, const char *id)
{
    struct dev_entry *e = t->buckets[hash_id(id) & (t->n_buckets - 1)];
    while (e != NULL && strcmp(e->id, id) != 0)
        e = e->next;
    return e;
}

/* Doubles the bucket array when the table is twice as full as it is wide. Under the lock. */
static void maybe_grow(struct ingest_devtab *t)
{
    if (t->n_entries < 2 * t->n_buckets)
        return;
    size_t n = t->n_buckets * 2;
    struct dev_entry **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < t->n_buckets; i++) {
        struct dev_entry *e = t->buckets[i];
        while (e != NULL) {
            struct dev_entry *next = e->next;
            size_t h = hash_id(e->id) & (n - 1);
            e->next = b[h];
            b[h] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = n;
}

static struct dev_entry *insert(struct ingest_devtab *t, const char *id)
{
    struct dev_entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    ferry_strlcpy(e->id, id, sizeof(e->id));
    e->tokens = t->cfg->device_burst;
    e->tokens_ms = ferry_monotonic_ms();
    maybe_grow(t);
    size_t h = hash_id(id) & (t->n_buckets - 1);
    e->next = t->buckets[h];
    t->buckets[h] = e;
    t->n_entries++;
    return e;
}

/* Finds the entry of a device the store knows, refreshing it when older than device_cache_ms.
 * Returns with the lock held and *out set, or without the lock and a non-OK result. */
static enum ingest_admit entry_locked(struct ingest_devtab *t, const char *device_id,
                                      struct dev_entry **out)
{
    long long now = ferry_monotonic_ms();
    pthread_mutex_lock(&t->lock);
    struct dev_entry *e = find(t, device_id);
    if (e == NULL || now - e->fetched_ms > t->cfg->device_cache_ms) {
        pthread_mutex_unlock(&t->lock);
        struct ingest_device dev;
        int rc = ingest_store_device_get(t->store, device_id, &dev);
        if (rc == INGEST_STORE_ENOTFOUND)
            return INGEST_ADMIT_UNKNOWN;
        if (rc != 0)
            return INGEST_ADMIT_ERROR;
        pthread_mutex_lock(&t->lock);
        e = find(t, device_id);
        if (e == NULL)
            e = insert(t, device_id);
        if (e == NULL) {
            pthread_mutex_unlock(&t->lock);
            return INGEST_ADMIT_ERROR;
        }
        memcpy(e->public_key, dev.public_key, 32);
        e->revoked = dev.revoked;
        e->fetched_ms = now;
    }
    *out = e;
    return INGEST_ADMIT_OK;
}

enum ingest_admit ingest_devtab_lookup(struct ingest_devtab *t, const char *device_id,
                                       uint8_t public_key[32])
{
    struct dev_entry *e;
    enum ingest_admit res = entry_locked(t, device_id, &e);
    if (res != INGEST_ADMIT_OK)
        return res;
    if (e->revoked)
        res = INGEST_ADMIT_REVOKED;
    else
        memcpy(public_key, e->public_key, 32);
    pthread_mutex_unlock(&t->lock);
    return res;
}

enum ingest_admit ingest_devtab_acquire(struct ingest_devtab *t, const char *device_id,
                                        unsigned *retry_after_s)
{
    long long now = ferry_monotonic_ms();
    *retry_after_s = 0;
    pthread_mutex_lock(&t->lock);
    struct dev_entry *e = find(t, device_id);
    enum ingest_admit res = INGEST_ADMIT_OK;
    double rate = t->cfg->device_rate;
    if (e == NULL) {
        res = INGEST_ADMIT_ERROR; /* looked up just before: only a failed insert gets here */
    } else if (e->inflight >= t->cfg->device_max_inflight) {
        res = INGEST_ADMIT_LIMITED;
        *retry_after_s = 1;
    } else if (rate > 0) {
        e->tokens += (double)(now - e->tokens_ms) * rate / 1000.0;
        if (e->tokens > t->cfg->device_burst)
            e->tokens = t->cfg->device_burst;
        e->tokens_ms = now;
        if (e->tokens < 1.0) {
            res = INGEST_ADMIT_LIMITED;
            double wait = ceil((1.0 - e->tokens) / rate);
            *retry_after_s = wait < 1 ? 1 : wait > 3600 ? 3600 : (unsigned)wait;
        } else {
            e->tokens -= 1.0;
        }
    }
    if (res == INGEST_ADMIT_OK)
        e->inflight++;
    pthread_mutex_unlock(&t->lock);
    return res;
}

void ingest_devtab_done(struct ingest_devtab *t, const char *device_id)
{
    pthread_mutex_lock(&t->lock);
    struct dev_entry *e = find(t, device_id);
    if (e != NULL && e->inflight > 0)
        e->inflight--;
    pthread_mutex_unlock(&t->lock);
}

void ingest_devtab_invalidate(struct ingest_devtab *t, const char *device_id)
{
    pthread_mutex_lock(&t->lock);
    struct dev_entry *e = find(t, device_id);
    if (e != NULL)
        e->fetched_ms = -(1ll << 60);
    pthread_mutex_unlock(&t->lock);
}

void ingest_devtab_health(struct ingest_devtab *t, const char *device_id, const char *name,
                          size_t name_len, int64_t ts_ns, double value)
{
    if (name_len > DEVTAB_HEALTH_NAME)
        name_len = DEVTAB_HEALTH_NAME;
    pthread_mutex_lock(&t->lock);
    struct dev_entry *e = find(t, device_id);
    if (e == NULL)
        goto out;
    for (size_t i = 0; i < e->n_health; i++) {
        struct health_value *h = &e->health[i];
        if (h->name_len == name_len && memcmp(h->name, name, name_len) == 0) {
            /* Newest by device time (ARCHITECTURE.md invariant 7): a backlog delivered late
             * must not replace a value the device measured after it. */
            if (ts_ns >= h->ts_ns) {
                h->value = value;
                h->ts_ns = ts_ns;
            }
            goto out;
        }
    }
    if (e->n_health >= DEVTAB_MAX_HEALTH)
        goto out; /* bounded: the first 64 series a device reports */
    if (e->health == NULL) {
        e->health = calloc(DEVTAB_MAX_HEALTH, sizeof(*e->health));
        if (e->health == NULL)
            goto out;
    }
    struct health_value *h = &e->health[e->n_health++];
    memcpy(h->name, name, name_len);
    h->name_len = name_len;
    h->ts_ns = ts_ns;
    h->value = value;
out:
    pthread_mutex_unlock(&t->lock);
}

int ingest_devtab_expose(struct ingest_devtab *t, struct ferry_buf *out)
{
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    rc |= ferry_buf_printf(out, "# HELP ferry_device_health Newest value by device time of each "
                                "health metric a device reported (measurement.field,tags), as "
                                "received by this process.\n"
                                "# TYPE ferry_device_health gauge\n");
    for (size_t b = 0; b < t->n_buckets && rc == 0; b++) {
        for (struct dev_entry *e = t->buckets[b]; e != NULL && rc == 0; e = e->next) {
            for (size_t i = 0; i < e->n_health && rc == 0; i++) {
                const struct health_value *h = &e->health[i];
                rc |= ferry_buf_printf(out, "ferry_device_health{device=\"%s\",metric=\"", e->id);
                rc |= ferry_buf_append_prom_label(out, h->name, h->name_len);
                double v = h->value;
                if (v != v)
                    rc |= ferry_buf_append(out, "\"} NaN\n", 7);
                else if (v > 1.7976931348623157e308 || v < -1.7976931348623157e308)
                    rc |= ferry_buf_printf(out, "\"} %cInf\n", v > 0 ? '+' : '-');
                else
                    rc |= ferry_buf_printf(out, "\"} %.17g\n", v);
            }
        }
    }
    pthread_mutex_unlock(&t->lock);
    return rc != 0 ? INGEST_ENOMEM : 0;
}
