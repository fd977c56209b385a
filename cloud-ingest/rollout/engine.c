/*
 * engine.c - the rollout evaluator: every second, and within 50 ms of a commit of this process,
 * a round reads every running, paused or just-finished rollout from the store and moves it on
 * (rollout.h; the state machines are in model.c).
 *
 * One round for one rollout:
 *   1. the record with the pending operator commands applied (rollout_load);
 *   2. running: devices of the class that match the selector are ranked by the rollout's hash and
 *      the members of started waves that have no device entry yet get one (late enrolments join
 *      the current wave);
 *   3. every member's state moves from its reported update state (ingest_store_device_updates),
 *      its `offered` mark and its wave's deadline (silent);
 *   4. running: when the current wave's soak has elapsed and all its devices are final (or its
 *      deadline passed), the gates decide: next wave, completion (the release is installed as
 *      the class's current manifest first, then the state says completed), or pause / abort
 *      per on_fail;
 *   5. ONE kv_apply stores the record, the changed device entries and deletes the applied
 *      commands.
 *
 * Invariants:
 *   1. Nothing is kept in memory between rounds: every round starts from the store, so a restart
 *      (or a failed commit) continues exactly where the store says.
 *   2. Only the holder of the store lease "rollouts" runs rounds; the keys it writes (rollout/,
 *      rolldev/) have no other writer after creation, so no other process's write is lost.
 *   3. A device without a final state when its wave's deadline passes is silent, which fails
 *      install_success: a wave never waits longer than its deadline.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/ingest.h"
#include "cloud-ingest/release/release.h"
#include "cloud-ingest/rollout/rollout.h"
#include "cloud-ingest/rollout/rollout_int.h"
#include "cloud-ingest/selector.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "transport/manifest.h"

#define EVAL_INTERVAL_NS 1000000000LL
#define MIN_GAP_NS 50000000LL
#define LEASE_NS 30000000000LL

/* The changes of one round for one rollout, committed together. */
struct round {
    struct ingest_kv_op *ops;
    char **owned; /* keys and values this round allocated */
    size_t n, cap, n_owned, cap_owned;
};

static int round_own(struct round *rd, char *p)
{
    if (p == NULL)
        return -1;
    if (rd->n_owned == rd->cap_owned) {
        size_t cap = rd->cap_owned ? rd->cap_owned * 2 : 64;
        char **v = realloc(rd->owned, cap * sizeof(*v));
        if (v == NULL) {
            free(p);
            return -1;
        }
        rd->owned = v;
        rd->cap_owned = cap;
    }
    rd->owned[rd->n_owned++] = p;
    return 0;
}

static int round_add(struct round *rd, char *key, char *value, bool del)
{
    if (round_own(rd, key) != 0 || (value != NULL && round_own(rd, value) != 0))
        return -1;
    if (rd->n == rd->cap) {
        size_t cap = rd->cap ? rd->cap * 2 : 64;
        struct ingest_kv_op *v = realloc(rd->ops, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        rd->ops = v;
        rd->cap = cap;
    }
    rd->ops[rd->n++] = (struct ingest_kv_op){key, value, value != NULL ? strlen(value) : 0, del};
    return 0;
}

static void round_free(struct round *rd)
{
    for (size_t i = 0; i < rd->n_owned; i++)
        free(rd->owned[i]);
    free(rd->owned);
    free(rd->ops);
}

/* "<kind>/<id>[/<device>]" in a new string. */
static char *key_of(const char *kind, const char *id, const char *device)
{
    size_t n = strlen(kind) + strlen(id) + (device != NULL ? strlen(device) : 0) + 3;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s%s%s", kind, id, device != NULL ? "/" : "", device ? device : "");
    return p;
}

/* A device entry: wave, state, since when, and (committed) the corrected device time it
 * switched to the release. */
static int put_device(struct round *rd, const char *id, const char *dev, uint32_t wave,
                      enum rollout_dev s, int64_t since_ns, int64_t switched_ns)
{
    char val[160];
    snprintf(val, sizeof(val), "{\"w\":%u,\"s\":\"%s\",\"t\":%lld,\"c\":%lld}", wave,
             rollout_dev_name(s), (long long)since_ns, (long long)switched_ns);
    char *v = strdup(val);
    if (v == NULL)
        return -1;
    char *key = key_of("rolldev", id, dev);
    if (key == NULL) {
        free(v);
        return -1;
    }
    return round_add(rd, key, v, false);
}

/* ---- Membership ------------------------------------------------------------------------------
 */

struct eligible {
    const struct rollout *r;
    const struct ingest_selector *sel;
    char **ids;
    size_t n, cap;
    int rc;
};

static int eligible_cb(const struct ingest_device *d, void *arg)
{
    struct eligible *e = arg;
    if (d->revoked || strcmp(d->device_class, e->r->device_class) != 0 ||
        !ingest_selector_match(e->sel, d))
        return 0;
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 256;
        char **v = realloc(e->ids, cap * sizeof(*v));
        if (v == NULL) {
            e->rc = INGEST_STORE_ENOMEM;
            return 1;
        }
        e->ids = v;
        e->cap = cap;
    }
    if ((e->ids[e->n] = strdup(d->id)) == NULL) {
        e->rc = INGEST_STORE_ENOMEM;
        return 1;
    }
    e->n++;
    return 0;
}

/* Gives every eligible device of a started wave without an entry one (in `devs` and `rd`). */
static int assign_members(struct ingest_store *st, const struct rollout *r, json_t *devs,
                          json_t *offers, struct round *rd, int64_t now_ns)
{
    struct ingest_selector *sel = NULL;
    char why[512];
    if (ingest_selector_parse(r->selector, &sel, why, sizeof(why)) != 0) {
        log_limited(10, FERRY_LOG_ERROR, "rollout", "rollout %s: selector: %s", r->id, why);
        return INGEST_STORE_EINVAL;
    }
    struct eligible e = {r, sel, NULL, 0, 0, 0};
    int rc = ingest_store_device_list(st, eligible_cb, &e);
    ingest_selector_free(sel);
    if (rc == 0)
        rc = e.rc;
    uint8_t *waves = rc == 0 && e.n > 0 ? malloc(e.n) : NULL;
    if (rc == 0 && e.n > 0 &&
        (waves == NULL || rollout_assign_waves(r, (const char *const *)e.ids, e.n, waves) != 0))
        rc = INGEST_STORE_ENOMEM;
    size_t added = 0;
    for (size_t i = 0; rc == 0 && i < e.n; i++) {
        if (waves[i] == UINT8_MAX || waves[i] > r->wave || json_object_get(devs, e.ids[i]))
            continue;
        /* a device that joined after its wave started belongs to the current wave */
        uint32_t w = r->wave;
        enum rollout_dev s = json_object_get(offers, e.ids[i]) ? RDEV_OFFERED : RDEV_PENDING;
        json_object_set_new(devs, e.ids[i],
                            json_pack("{s:I, s:s, s:I}", "w", (json_int_t)w, "s",
                                      rollout_dev_name(s), "t", (json_int_t)now_ns));
        if (put_device(rd, r->id, e.ids[i], w, s, now_ns, 0) != 0)
            rc = INGEST_STORE_ENOMEM;
        added++;
    }
    if (added > 0)
        log_info("rollout", "rollout %s: %zu device(s) join wave %u (%zu eligible)", r->id, added,
                 r->wave + 1, e.n);
    for (size_t i = 0; i < e.n; i++)
        free(e.ids[i]);
    free(e.ids);
    free(waves);
    return rc;
}

/* ---- Device states -------------------------------------------------------------------------- */

/* The device's reported state for the rollout, and in *switched_ns the corrected device time of
 * that report (its clock offset added when the ingest found its clock wrong: more than a minute
 * off, as batches.c corrects record times). */
static enum rollout_dev reported_state(struct ingest_store *st, const struct rollout *r,
                                       const char *dev, int64_t *switched_ns)
{
    char text[INGEST_UPDATES_MAX + 1];
    *switched_ns = 0;
    if (ingest_store_device_updates(st, dev, text, sizeof(text)) != 0)
        return RDEV_PENDING;
    json_t *u = json_loads(text, 0, NULL);
    json_t *e = json_object_get(u, r->component);
    enum rollout_dev s =
        rollout_dev_from_update(json_string_value(json_object_get(e, "state")),
                                json_string_value(json_object_get(e, "target_version")),
                                json_string_value(json_object_get(e, "running_version")),
                                json_string_value(json_object_get(e, "reason")), r->version);
    int64_t ts = (int64_t)json_integer_value(json_object_get(e, "ts"));
    json_decref(u);
    struct ingest_device d;
    if (ts > 0 && ingest_store_device_get(st, dev, &d) == 0 &&
        (d.clock_offset_ns > 60000000000LL || d.clock_offset_ns < -60000000000LL))
        ts += d.clock_offset_ns;
    *switched_ns = ts;
    return s;
}

/* Moves every member's state; counts per wave into counts. */
static int move_devices(struct ingest_store *st, const struct rollout *r, json_t *devs,
                        json_t *offers, struct round *rd, int64_t now_ns,
                        uint64_t counts[ROLLOUT_WAVES_MAX][RDEV_COUNT])
{
    const char *dev;
    json_t *d;
    json_object_foreach(devs, dev, d)
    {
        json_int_t w = json_integer_value(json_object_get(d, "w"));
        int cur = rollout_dev_parse(json_string_value(json_object_get(d, "s")));
        if (w < 0 || (size_t)w >= r->n_waves || cur < 0)
            continue;
        enum rollout_dev next = (enum rollout_dev)cur;
        int64_t switched = json_integer_value(json_object_get(d, "c"));
        if (!rollout_dev_final(next)) {
            bool offered = json_object_get(offers, dev) != NULL;
            /* also for devices never offered here: one may have it from another ingest whose
             * offer mark is not read yet, or from an earlier publish */
            int64_t at = 0;
            enum rollout_dev rep = reported_state(st, r, dev, &at);
            bool late = r->deadline_ns > 0 && r->wave_started_ns[w] > 0 &&
                        now_ns >= r->wave_started_ns[w] + r->deadline_ns;
            next = rollout_dev_next(next, rep, offered, late);
            if (next == RDEV_COMMITTED)
                switched = at;
        }
        if (next != (enum rollout_dev)cur) {
            log_info("rollout", "rollout %s: device %s %s -> %s", r->id, dev,
                     rollout_dev_name((enum rollout_dev)cur), rollout_dev_name(next));
            if (put_device(rd, r->id, dev, (uint32_t)w, next, now_ns, switched) != 0)
                return INGEST_STORE_ENOMEM;
            json_object_set_new(d, "s", json_string(rollout_dev_name(next)));
            json_object_set_new(d, "c", json_integer(switched));
        }
        counts[w][next]++;
    }
    return 0;
}

/* ---- Waves and gates ------------------------------------------------------------------------ */

/* Installs the release as the class's current manifest (idempotent: a crash before the state
 * was stored repeats it). Returns 0 or -1. */
static int install_release(const struct ingest_config *cfg, const struct rollout *r)
{
    if (r->selector[0] != '\0')
        return 0; /* a selected group: the rollout keeps offering it (docs/rollouts.md) */
    if (ingest_release_current_serial(cfg, r->device_class, r->component) >= r->serial)
        return 0;
    char path[1600];
    uint8_t *data = NULL;
    size_t len = 0;
    if (rollout_manifest_path(cfg, r->id, false, path, sizeof(path)) != 0 ||
        ferry_read_file(path, MANIFEST_MAX_BYTES, &data, &len) != 0) {
        log_error("rollout", "rollout %s: cannot read its manifest %s", r->id, path);
        return -1;
    }
    struct manifest *m = NULL;
    char err[128];
    /* verified at create; parsed here only for its class and component */
    const char *p = strstr((const char *)data, "\"payload\":\"");
    const char *e = p != NULL ? strchr(p + 11, '"') : NULL;
    int rc = -1;
    if (e != NULL) {
        size_t cap = (size_t)(e - p - 11), plen = 0;
        uint8_t *pl = malloc(cap + 1);
        if (pl != NULL &&
            sodium_base642bin(pl, cap, p + 11, cap, NULL, &plen, NULL,
                              sodium_base64_VARIANT_ORIGINAL) == 0 &&
            manifest_parse_payload(pl, plen, &m, err, sizeof(err)) == 0)
            rc = ingest_release_install(cfg, m, data, len);
        free(pl);
    }
    manifest_free(m);
    free(data);
    if (rc != 0)
        log_error("rollout", "rollout %s: cannot install its release as current", r->id);
    else
        log_info("rollout", "rollout %s: %s %s is now the current release of class %s", r->id,
                 r->component, r->version, r->device_class);
    return rc;
}

static void gate_text(const struct rollout *r, const struct rollout_gate_result *res, char *out,
                      size_t out_len)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t g = 0; g < r->n_gates && n + 1 < out_len; g++)
        if (!res[g].pass)
            n += (size_t)snprintf(out + n, out_len - n, "%s%s (value %.3f%s)", n ? "; " : "",
                                  r->gates[g].text, res[g].value,
                                  isfinite(res[g].value) ? "" : ": too few samples");
}

/* Evaluates the metric gates of wave k into res. Returns false when one cannot decide yet
 * (too few samples) and the deadline has not passed; at the deadline such a gate fails: a
 * comparison without data never counts as a pass. */
static bool metric_gates(struct ingest_store *st, const struct rollout *r, json_t *devs, uint32_t k,
                         bool deadline, int64_t now_ns, struct rollout_gate_result *res)
{
    bool any = false;
    for (size_t g = 0; g < r->n_gates; g++)
        any |= r->gates[g].kind == RGATE_METRIC;
    if (!any)
        return true;
    struct compare_device *cd = NULL;
    size_t n = 0;
    if (rollout_compare_devices(st, r, devs, (int)k, &cd, &n) != 0)
        return false; /* store trouble: next round */
    bool decided = true;
    for (size_t g = 0; g < r->n_gates && decided; g++) {
        if (r->gates[g].kind != RGATE_METRIC)
            continue;
        char err[256] = "";
        if (rollout_metric_gate(st, r, &r->gates[g], cd, n, now_ns, &res[g], err, sizeof(err)) == 0)
            continue;
        if (!deadline) {
            decided = false;
            break;
        }
        log_info("rollout", "rollout %s: gate %s undecided at the deadline (%s): fails", r->id,
                 r->gates[g].text, err);
        res[g] = (struct rollout_gate_result){NAN, NAN, false};
    }
    rollout_devlist_free(cd, n);
    return decided;
}

/* Decides the current wave when its time has come. Returns true when the record changed. */
static bool decide_wave(struct rollouts *ro, struct rollout *r, json_t *devs,
                        uint64_t counts[ROLLOUT_WAVES_MAX][RDEV_COUNT], int64_t now_ns)
{
    const struct ingest_config *cfg = ro->cfg;
    uint32_t k = r->wave;
    int64_t start = r->wave_started_ns[k];
    int64_t soak_from = r->soak_from_ns > start ? r->soak_from_ns : start;
    uint64_t open = 0;
    for (int s = 0; s < RDEV_COUNT; s++)
        if (!rollout_dev_final((enum rollout_dev)s) && s != RDEV_SILENT)
            open += counts[k][s];
    bool deadline = r->deadline_ns > 0 && now_ns >= start + r->deadline_ns;
    if (now_ns < soak_from + r->soak_ns || (open > 0 && !deadline))
        return false;
    struct rollout_gate_result res[ROLLOUT_GATES_MAX];
    bool pass = rollout_gates_eval(r, counts[k], res);
    if (!metric_gates(ro->store, r, devs, k, deadline, now_ns, res))
        return false; /* a metric gate waits for samples */
    for (size_t g = 0; g < r->n_gates; g++)
        pass &= res[g].pass;
    memcpy(r->results[k], res, sizeof(res));
    r->decided[k] = true;
    r->updated_ns = now_ns;
    if (!pass) {
        char why[ROLLOUT_REASON_MAX - 32]; /* with "wave N failed: " it fits the reason */
        gate_text(r, res, why, sizeof(why));
        r->state = r->abort_on_fail ? ROLLOUT_ABORTED : ROLLOUT_PAUSED;
        snprintf(r->reason, sizeof(r->reason), "wave %u failed: %s", k + 1, why);
        log_info("rollout", "rollout %s: %s -> %s", r->id, r->reason, rollout_state_name(r->state));
        return true;
    }
    if (k + 1 < r->n_waves) {
        r->wave = k + 1;
        r->wave_started_ns[k + 1] = now_ns;
        r->soak_from_ns = now_ns;
        snprintf(r->reason, sizeof(r->reason), "wave %u passed its gates", k + 1);
        log_info("rollout", "rollout %s: wave %u passed its gates; wave %u starts", r->id, k + 1,
                 k + 2);
        return true;
    }
    if (install_release(cfg, r) != 0)
        return false; /* tried again next round */
    r->state = ROLLOUT_COMPLETED;
    r->completed_ns = now_ns;
    snprintf(r->reason, sizeof(r->reason), "wave %u (the last) passed its gates", k + 1);
    log_info("rollout", "rollout %s: completed", r->id);
    return true;
}

/* ---- One rollout ---------------------------------------------------------------------------- */

static int eval_rollout(struct rollouts *ro, const char *id, int64_t now_ns)
{
    struct rollout r;
    json_t *ops = NULL, *devs = NULL, *offers = NULL;
    char err[256];
    struct round rd = {0};
    int rc = rollout_load(ro->store, id, now_ns, &r, &ops, err, sizeof(err));
    if (rc != 0) {
        log_limited(10, FERRY_LOG_ERROR, "rollout", "%s", err);
        return rc;
    }
    size_t n_ops = json_array_size(ops);
    if (n_ops > 0)
        log_info("rollout", "rollout %s: %zu operator command(s) applied: now %s (%s)", id, n_ops,
                 rollout_state_name(r.state), r.reason);
    bool changed = n_ops > 0;
    if (r.state == ROLLOUT_COMPLETED && install_release(ro->cfg, &r) != 0) {
        rc = INGEST_STORE_EIO; /* keep the commands until the release is installed */
        goto out;
    }
    if (r.state == ROLLOUT_RUNNING || r.state == ROLLOUT_PAUSED) {
        uint64_t counts[ROLLOUT_WAVES_MAX][RDEV_COUNT];
        memset(counts, 0, sizeof(counts));
        if ((rc = rollout_load_devices(ro->store, id, &devs)) != 0 ||
            (rc = rollout_load_offers(ro->store, id, &offers)) != 0)
            goto out;
        if (r.state == ROLLOUT_RUNNING &&
            (rc = assign_members(ro->store, &r, devs, offers, &rd, now_ns)) != 0)
            goto out;
        if ((rc = move_devices(ro->store, &r, devs, offers, &rd, now_ns, counts)) != 0)
            goto out;
        if (r.state == ROLLOUT_RUNNING && decide_wave(ro, &r, devs, counts, now_ns)) {
            changed = true;
            if (r.state == ROLLOUT_RUNNING && r.wave > 0 && r.wave_started_ns[r.wave] == now_ns)
                rc = assign_members(ro->store, &r, devs, offers, &rd, now_ns);
        }
        if (rc != 0)
            goto out;
    }
    if (changed) {
        char *text = rollout_to_json(&r);
        if (text == NULL || round_add(&rd, key_of("rollout", id, NULL), text, false) != 0) {
            rc = INGEST_STORE_ENOMEM;
            goto out;
        }
    }
    size_t i;
    json_t *k;
    json_array_foreach(ops, i, k)
    {
        char *key = strdup(json_string_value(k));
        if (key == NULL || round_add(&rd, key, NULL, true) != 0) {
            rc = INGEST_STORE_ENOMEM;
            goto out;
        }
    }
    if (rd.n > 0)
        rc = ingest_store_kv_apply(ro->store, rd.ops, rd.n, NULL, NULL);
    if (rc != 0)
        log_limited(10, FERRY_LOG_ERROR, "rollout", "rollout %s: commit failed (%s)", id,
                    ingest_store_strerror(rc));
out:
    json_decref(ops);
    json_decref(devs);
    json_decref(offers);
    round_free(&rd);
    return rc;
}

int rollouts_eval_once(struct rollouts *ro, int64_t now_ns)
{
    int rc = ingest_store_lease(ro->store, ROLLOUT_LEASE, ro->owner, now_ns, LEASE_NS);
    if (rc == INGEST_STORE_EHELD)
        return 0;
    if (rc != 0)
        return rc;
    json_t *ids = NULL;
    if ((rc = rollout_list_ids(ro->store, &ids)) != 0)
        return rc;
    size_t i;
    json_t *id;
    int first = 0;
    json_array_foreach(ids, i, id)
    {
        /* finished rollouts are skipped cheaply: only their pending commands matter */
        int e = eval_rollout(ro, json_string_value(id), now_ns);
        if (e != 0 && first == 0)
            first = e;
    }
    json_decref(ids);
    return first;
}

/* ---- Thread --------------------------------------------------------------------------------- */

static void wait_ns(struct rollouts *ro, int64_t ns, bool until_commit)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    ns += until.tv_nsec;
    until.tv_sec += (time_t)(ns / 1000000000LL);
    until.tv_nsec = (long)(ns % 1000000000LL);
    while (!ro->stopping && !(until_commit && ro->committed))
        if (pthread_cond_timedwait(&ro->cond, &ro->lock, &until) != 0)
            break;
}

static void *eval_main(void *arg)
{
    struct rollouts *ro = arg;
    pthread_mutex_lock(&ro->lock);
    while (!ro->stopping) {
        ro->committed = false;
        pthread_mutex_unlock(&ro->lock);
        int rc = rollouts_eval_once(ro, ferry_realtime_ns()); /* logged inside; next round */
        (void)rc;
        pthread_mutex_lock(&ro->lock);
        wait_ns(ro, MIN_GAP_NS, false);
        wait_ns(ro, EVAL_INTERVAL_NS - MIN_GAP_NS, true);
    }
    pthread_mutex_unlock(&ro->lock);
    return NULL;
}

int rollouts_new(const struct ingest_config *cfg, struct ingest_store *store, const char *owner,
                 struct rollouts **out, char *err, size_t err_len)
{
    struct rollouts *ro = calloc(1, sizeof(*ro));
    *out = NULL;
    if (ro == NULL) {
        snprintf(err, err_len, "rollouts: out of memory");
        return -1;
    }
    ro->cfg = cfg;
    ro->store = store;
    ferry_strlcpy(ro->owner, owner, sizeof(ro->owner));
    pthread_mutex_init(&ro->lock, NULL);
    pthread_cond_init(&ro->cond, NULL);
    rollout_offerer_init(ro);
    *out = ro;
    return 0;
}

int rollouts_start(struct rollouts *ro)
{
    ro->started = true;
    if (pthread_create(&ro->thread, NULL, eval_main, ro) != 0) {
        ro->started = false;
        return -1;
    }
    return 0;
}

void rollouts_committed(struct rollouts *ro)
{
    if (ro == NULL || !ro->started)
        return;
    pthread_mutex_lock(&ro->lock);
    if (!ro->committed) {
        ro->committed = true;
        pthread_cond_signal(&ro->cond);
    }
    pthread_mutex_unlock(&ro->lock);
}

void rollouts_free(struct rollouts *ro)
{
    if (ro == NULL)
        return;
    pthread_mutex_lock(&ro->lock);
    ro->stopping = true;
    pthread_cond_broadcast(&ro->cond);
    pthread_mutex_unlock(&ro->lock);
    if (ro->started)
        pthread_join(ro->thread, NULL);
    pthread_cond_destroy(&ro->cond);
    pthread_mutex_destroy(&ro->lock);
    free(ro);
}

const struct ingest_release_offerer *rollouts_offerer(struct rollouts *ro)
{
    return ro != NULL ? &ro->offerer : NULL;
}

/* ---- /metrics ------------------------------------------------------------------------------- */

int rollouts_expose(struct ingest_store *store, struct ferry_buf *out)
{
    json_t *ids = NULL;
    uint64_t n[ROLLOUT_STATE_COUNT] = {0};
    if (rollout_list_ids(store, &ids) == 0) {
        size_t i;
        json_t *id;
        int64_t now = ferry_realtime_ns();
        json_array_foreach(ids, i, id)
        {
            struct rollout r;
            char err[160];
            if (rollout_load(store, json_string_value(id), now, &r, NULL, err, sizeof(err)) == 0)
                n[r.state]++;
        }
    }
    json_decref(ids);
    int e = ferry_buf_printf(out, "# HELP ferry_rollouts Rollouts by state\n"
                                  "# TYPE ferry_rollouts gauge\n");
    for (int s = 0; s < ROLLOUT_STATE_COUNT; s++)
        e |= ferry_buf_printf(out, "ferry_rollouts{state=\"%s\"} %" PRIu64 "\n",
                              rollout_state_name((enum rollout_state)s), n[s]);
    return e;
}
