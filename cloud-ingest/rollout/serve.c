/*
 * serve.c - the offerer the release handlers call (release.h, struct ingest_release_offerer):
 * which manifest a device gets while a rollout of its class and component exists, and which
 * artifacts it may download for it. Runs on the ingest's worker threads: it only reads the store
 * (a few key lookups per poll) and writes the device's `offered` mark the first time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloud-ingest/ingest.h"
#include "cloud-ingest/rollout/rollout.h"
#include "cloud-ingest/rollout/rollout_int.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

int rollout_index_get(struct ingest_store *st, const char *device_class, const char *component,
                      char id[ROLLOUT_ID_LEN + 1])
{
    char key[INGEST_KV_KEY_MAX + 1];
    if (snprintf(key, sizeof(key), "rollidx/%s/%s", device_class, component) >= (int)sizeof(key))
        return INGEST_STORE_ENOTFOUND;
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = ingest_store_kv_get(st, key, &b);
    if (rc == 0 && (b.len == 0 || b.len > ROLLOUT_ID_LEN))
        rc = INGEST_STORE_ENOTFOUND;
    if (rc == 0) {
        memcpy(id, b.data, b.len);
        id[b.len] = '\0';
    }
    ferry_buf_free(&b);
    return rc;
}

static int key_exists(struct ingest_store *st, const char *kind, const char *id, const char *device,
                      bool *out)
{
    char key[INGEST_KV_KEY_MAX + 1];
    snprintf(key, sizeof(key), "%s/%s/%s", kind, id, device);
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = ingest_store_kv_get(st, key, &b);
    ferry_buf_free(&b);
    *out = rc == 0;
    return rc == INGEST_STORE_ENOTFOUND ? 0 : rc;
}

/* The device's local minute of the day: its reported UTC offset (versions "utc_offset"), else
 * UTC. */
static int local_minute(const struct ingest_device *dev, int64_t now_ns)
{
    int64_t mins = now_ns / 60000000000LL + rollout_device_utc_offset_min(dev->versions);
    return (int)(((mins % 1440) + 1440) % 1440);
}

/* What rollout `id` offers `dev`; *offered says whether it fetched the release before. */
static int decide(struct rollouts *ro, const struct ingest_device *dev, const char *id,
                  struct rollout *r, enum rollout_offer *out, bool *offered)
{
    char err[160];
    int64_t now = ferry_realtime_ns();
    int rc = rollout_load(ro->store, id, now, r, NULL, err, sizeof(err));
    if (rc != 0) {
        log_limited(10, FERRY_LOG_ERROR, "rollout", "%s", err);
        return rc;
    }
    bool member = false;
    *offered = false;
    if ((rc = key_exists(ro->store, "rolldev", id, dev->id, &member)) != 0 ||
        (rc = key_exists(ro->store, "rolloffer", id, dev->id, offered)) != 0)
        return rc;
    bool selected = strcmp(dev->device_class, r->device_class) == 0 && !dev->revoked &&
                    rollout_selector_match(r->selector, dev);
    bool installed =
        r->state == ROLLOUT_COMPLETED &&
        ingest_release_current_serial(ro->cfg, r->device_class, r->component) >= r->serial;
    *out = rollout_offer_decide(r, member, *offered, selected,
                                rollout_window_open(r, local_minute(dev, now)), installed);
    return 0;
}

static int offer_manifest(void *arg, const struct ingest_device *dev, const char *component,
                          char *file, size_t file_len)
{
    struct rollouts *ro = arg;
    char id[ROLLOUT_ID_LEN + 1];
    int rc = rollout_index_get(ro->store, dev->device_class, component, id);
    if (rc == INGEST_STORE_ENOTFOUND)
        return 0;
    if (rc != 0)
        return -1;
    struct rollout r;
    enum rollout_offer o;
    bool offered;
    rc = decide(ro, dev, id, &r, &o, &offered);
    if (rc == INGEST_STORE_EINVAL || rc == INGEST_STORE_ENOTFOUND)
        return 0; /* an unreadable (logged) or vanished record: the current manifest, not a 503 */
    if (rc != 0)
        return -1;
    if (o == ROFFER_NONE)
        return 0;
    if (rollout_manifest_path(ro->cfg, id, o == ROFFER_ROLLBACK, file, file_len) != 0)
        return -1;
    if (o == ROFFER_RELEASE && !offered) {
        /* The first fetch marks the device offered (its own key: only this handler writes it,
         * so a concurrent evaluator round never overwrites it). */
        char key[INGEST_KV_KEY_MAX + 1], val[64];
        snprintf(key, sizeof(key), "rolloffer/%s/%s", id, dev->id);
        int n = snprintf(val, sizeof(val), "{\"ns\":%lld}", (long long)ferry_realtime_ns());
        struct ingest_kv_op op = {key, val, (size_t)n, false};
        if (ingest_store_kv_apply(ro->store, &op, 1, NULL, NULL) != 0)
            return -1; /* not served unrecorded: the device asks again */
        log_info("rollout", "rollout %s: device %s offered %s %s", id, dev->id, r.component,
                 r.version);
    }
    return 1;
}

struct idx_ctx {
    char ids[8][ROLLOUT_ID_LEN + 1];
    size_t n;
};

static int idx_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct idx_ctx *c = arg;
    (void)key;
    if (len == 0 || len > ROLLOUT_ID_LEN)
        return 0;
    char id[ROLLOUT_ID_LEN + 1];
    memcpy(id, value, len);
    id[len] = '\0';
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->ids[i], id) == 0)
            return 0;
    if (c->n < 8)
        ferry_strlcpy(c->ids[c->n++], id, sizeof(c->ids[0]));
    return 0;
}

static bool offer_artifact(void *arg, const struct ingest_device *dev, const uint8_t sha256[32])
{
    struct rollouts *ro = arg;
    char prefix[INGEST_KV_KEY_MAX + 1], hex[65];
    snprintf(prefix, sizeof(prefix), "rollidx/%s/", dev->device_class);
    struct idx_ctx c = {.n = 0};
    if (ingest_store_kv_scan(ro->store, prefix, 64, idx_cb, &c) != 0)
        return false;
    ferry_hex_encode(sha256, 32, hex);
    for (size_t i = 0; i < c.n; i++) {
        struct rollout r;
        enum rollout_offer o;
        bool offered;
        if (decide(ro, dev, c.ids[i], &r, &o, &offered) != 0 || o == ROFFER_NONE)
            continue;
        size_t n = o == ROFFER_RELEASE ? r.n_artifacts : r.n_rollback_artifacts;
        for (size_t k = 0; k < n; k++)
            if (strcmp(o == ROFFER_RELEASE ? r.artifacts[k] : r.rollback_artifacts[k], hex) == 0)
                return true;
    }
    return false;
}

void rollout_offerer_init(struct rollouts *r)
{
    r->offerer.manifest = offer_manifest;
    r->offerer.artifact = offer_artifact;
    r->offerer.arg = r;
}
