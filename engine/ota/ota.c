/*
 * ota.c - the OTA agent (see ota.h; docs/ota.md "Device state machine").
 *
 * Transitions and the function behind each:
 *   idle        --poll_done: new verified manifest-->  downloading   (start_update: worker picks
 *                                                                     delta or full by base hash)
 *   downloading --dl_done ok-->                         downloaded -> applying (start_apply)
 *   applying    --job_done ok-->                        installed     (slot set_next; reboot hook)
 *   applying    --base mismatch on a delta-->           downloading   (full artifact fallback)
 *   installed   --boot into target slot-->              trial         (start_trial: health checks)
 *   installed   --boot came back on the old slot-->     rolled_back   ("trial boot failed")
 *   trial       --checks pass-->                        committed     (mark_good)
 *   trial       --check fails / deadline-->             rolled_back   (rollback; reboot hook)
 *   any         --permanent error-->                    failed
 * Invariants
 *   A1. The state in the journal is changed only together with the event reporting it.
 *   A2. The target slot is written only after the manifest verified (signature, policy) and the
 *       artifact's every chunk verified; delta_apply() checks the target hash before the switch.
 *   A3. The running slot is never written.
 *   A4. At most one worker job runs; the loop never blocks on the network or a long computation.
 */
#include "engine/ota/ota.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "engine/ota/condition.h"
#include "engine/ota/gate.h"
#include "engine/ota/metered.h"
#include "journal/journal.h"
#include "transport/delta.h"
#include "transport/download.h"
#include "transport/http_client.h"
#include "transport/manifest.h"
#include "transport/record.h"

enum job_kind { JOB_NONE, JOB_SELECT, JOB_APPLY, JOB_HEALTH, JOB_CONDITION };

struct ota_agent {
    int64_t server_offset_s; /* ingest clock - device clock, learned from a 401's X-Ferry-Time */
    struct event_base *base;
    struct http_client *http;
    struct journal *journal;
    struct ota_config cfg;
    struct ota_slots *slots;
    struct ota_status st;
    char state_key[96], manifest_key[96];
    struct manifest *manifest; /* the release being installed (verified) */
    const struct manifest_artifact *artifact;
    struct event *poll_timer;
    struct http_request *poll_req;
    char etag[80];
    struct download *dl;
    int last_progress_decile;
    /* worker */
    int job_pipe[2];
    struct event *job_event;
    pthread_t job_thread;
    int job_running;
    enum job_kind job;
    int job_result;
    char job_reason[256];
    char job_base_path[1100], job_delta_path[1100], job_target_path[1100];
    uint8_t job_expect[32];
    /* trial: metric gates after the health commands (gate.h) */
    struct ota_gate gates[OTA_MAX_GATES];
    size_t n_gates;
    bool in_trial;            /* samples are shown to the gates */
    bool gating;              /* commands passed; waiting for the gates */
    int64_t trial_started_ms; /* monotonic */
    struct event *gate_timer;
    /* release condition (condition.h): the verified manifest waiting for its evaluation, and the
     * raw bytes of one whose condition was not met, evaluated again at every poll (a 304 keeps
     * it; a new manifest or a 204 replaces it) */
    struct manifest *cond_manifest;
    uint8_t *cond_raw;
    size_t cond_raw_len;
    struct manifest_condition cond;
    struct ota_condition_result cond_result;
    /* mirror counters of earlier download runs of this update (ota_status has the total) */
    uint32_t mirror_chunks_before;
    uint64_t mirror_bytes_before;
    /* metered links */
    bool deferred; /* a download waits for an unmetered link */
    struct event *metered_timer;
};

/* ---------------------------------------------------------------------------------------- */
/* State persistence and events (A1)                                                          */

int ota_status_parse(const void *data, size_t len, struct ota_status *o)
{
    memset(o, 0, sizeof(*o));
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return -1;
    }
#define S(field, key)                                                                              \
    do {                                                                                           \
        json_t *v = json_object_get(j, key);                                                       \
        if (json_is_string(v))                                                                     \
            ferry_strlcpy(o->field, json_string_value(v), sizeof(o->field));                       \
    } while (0)
#define N(field, key)                                                                              \
    do {                                                                                           \
        json_t *v = json_object_get(j, key);                                                       \
        if (json_is_integer(v))                                                                    \
            o->field = (__typeof__(o->field))json_integer_value(v);                                \
    } while (0)
    S(state, "state");
    S(running_version, "running_version");
    S(target_version, "target_version");
    S(artifact_kind, "artifact_kind");
    S(target_slot, "target_slot");
    S(reason, "reason");
    N(bytes_done, "bytes_done");
    N(bytes_total, "bytes_total");
    N(next_chunk, "next_chunk");
    N(chunks, "chunks");
    N(download_started_ns, "download_started_ns");
    N(updated_ns, "updated_ns");
    N(bytes_at_start, "bytes_at_start");
    N(highest_serial, "highest_serial");
    N(mirror_chunks, "mirror_chunks");
    N(mirror_failures, "mirror_failures");
    N(mirror_bytes, "mirror_bytes");
    S(mirror_error, "mirror_error");
#undef S
#undef N
    json_decref(j);
    return 0;
}

/* The reqsign_request_fn of this agent's requests: the configured signer at the device's clock
 * corrected by the offset the ingest reported (a Jetson without an RTC battery boots in 1970). */
static int ota_sign(void *arg, const char *method, const char *target, struct reqsign_headers *out)
{
    struct ota_agent *a = arg;
    if (a->cfg.sign_request == NULL)
        return -1;
    int64_t now_s = ferry_realtime_ns() / 1000000000 + a->server_offset_s;
    return a->cfg.sign_request(a->cfg.sign_arg, method, target, now_s, out);
}

static char *status_json(const struct ota_status *s)
{
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "state", s->state,
                  "running_version", s->running_version, "target_version", s->target_version,
                  "artifact_kind", s->artifact_kind, "target_slot", s->target_slot, "reason",
                  s->reason, "bytes_done", (json_int_t)s->bytes_done, "bytes_total",
                  (json_int_t)s->bytes_total, "next_chunk", (json_int_t)s->next_chunk, "chunks",
                  (json_int_t)s->chunks, "download_started_ns", (json_int_t)s->download_started_ns,
                  "updated_ns", (json_int_t)s->updated_ns, "bytes_at_start",
                  (json_int_t)s->bytes_at_start, "highest_serial", (json_int_t)s->highest_serial);
    if (!j)
        return NULL;
    if (s->mirror_chunks || s->mirror_failures) { /* only once mirrors were used */
        json_object_set_new(j, "mirror_chunks", json_integer((json_int_t)s->mirror_chunks));
        json_object_set_new(j, "mirror_failures", json_integer((json_int_t)s->mirror_failures));
        json_object_set_new(j, "mirror_bytes", json_integer((json_int_t)s->mirror_bytes));
        json_object_set_new(j, "mirror_error", json_string(s->mirror_error));
    }
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return text;
}

static void str_field(struct record_field *f, const char *key, const char *value)
{
    f->key = (struct record_str){key, strlen(key)};
    f->type = RECORD_FIELD_STRING;
    f->v.s = (struct record_str){value, strlen(value)};
}

/* Commits the state (and optionally the manifest) with an event "ota.<event>" (A1). */
static int persist(struct ota_agent *a, const char *event, const uint8_t *manifest,
                   size_t manifest_len)
{
    a->st.updated_ns = ferry_realtime_ns();
    char *state = status_json(&a->st);
    if (!state)
        return OTA_E_NOMEM;
    char name[64];
    snprintf(name, sizeof(name), "ota.%s", event);
    const char *component = a->cfg.component;
    struct record_field f[6];
    size_t nf = 0;
    str_field(&f[nf++], "component", component);
    str_field(&f[nf++], "state", a->st.state);
    str_field(&f[nf++], "running_version", a->st.running_version);
    str_field(&f[nf++], "target_version", a->st.target_version);
    str_field(&f[nf++], "reason", a->st.reason);
    f[nf].key = (struct record_str){"bytes_done", 10};
    f[nf].type = RECORD_FIELD_UINT;
    f[nf].v.u = a->st.bytes_done;
    nf++;
    struct record r = {0};
    r.stream = RECORD_EVENT;
    r.ts_ns = a->st.updated_ns;
    r.name = (struct record_str){name, strlen(name)};
    r.fields = f;
    r.n_fields = nf;
    struct ferry_buf payload = FERRY_BUF_INIT;
    int rc = record_pack(&r, &payload);
    struct journal_state_op ops[2] = {
        {a->state_key, strlen(a->state_key), state, strlen(state), false},
        {a->manifest_key, strlen(a->manifest_key), manifest, manifest_len, false},
    };
    if (rc == 0)
        rc = journal_append_event_with_state(a->journal, r.ts_ns, payload.data, payload.len, ops,
                                             manifest ? 2 : 1, JOURNAL_APPEND_WAIT, NULL);
    ferry_buf_free(&payload);
    free(state);
    if (rc != 0) {
        log_error("ota", "cannot persist state %s: journal error %d", a->st.state, rc);
        return OTA_E_JOURNAL;
    }
    log_info("ota", "%s: %s %s%s%s", name, a->cfg.component, a->st.target_version,
             a->st.reason[0] ? " - " : "", a->st.reason);
    if (a->cfg.appended)
        a->cfg.appended(a->cfg.appended_arg);
    return OTA_OK;
}

static void set_state(struct ota_agent *a, const char *state, const char *event, const char *reason)
{
    ferry_strlcpy(a->st.state, state, sizeof(a->st.state));
    ferry_strlcpy(a->st.reason, reason ? reason : "", sizeof(a->st.reason));
    if (persist(a, event ? event : state, NULL, 0) != OTA_OK)
        log_error("ota", "state %s not persisted", state);
}

/* ---------------------------------------------------------------------------------------- */
/* Worker thread (A4)                                                                         */

static void *job_main(void *arg)
{
    struct ota_agent *a = arg;
    char err[256] = "";
    a->job_result = 0;
    a->job_reason[0] = '\0';
    if (a->job == JOB_SELECT) {
        /* Pick the delta whose base is the running slot's content, else the full image. */
        a->job_result = -1;
        for (size_t i = 0; a->manifest && i < manifest_artifact_count(a->manifest); i++) {
            const struct manifest_artifact *art = manifest_artifact(a->manifest, i);
            uint8_t h[32];
            if (art->kind != MANIFEST_ARTIFACT_DELTA ||
                delta_sha256_file(a->job_base_path, art->base_size, h, NULL) != DELTA_OK)
                continue;
            if (memcmp(h, art->base_sha256, 32) == 0) {
                a->job_result = (int)i;
                break;
            }
        }
    } else if (a->job == JOB_APPLY) {
        struct delta_apply_options o = {.expect_target_sha256 = a->job_expect};
        a->job_result = delta_apply(a->job_base_path, a->job_delta_path, a->job_target_path, &o,
                                    err, sizeof(err));
        ferry_strlcpy(a->job_reason, err, sizeof(a->job_reason));
    } else if (a->job == JOB_CONDITION) {
        a->job_result = ota_condition_eval(a->journal, &a->cond, ferry_realtime_ns(), 0,
                                           &a->cond_result, a->job_reason, sizeof(a->job_reason));
    } else if (a->job == JOB_HEALTH) {
        long long deadline = ferry_monotonic_ms() + a->cfg.trial_deadline_ms;
        for (size_t i = 0; i < a->cfg.n_health_commands; i++) {
            long long left = deadline - ferry_monotonic_ms();
            if (left <= 0) {
                a->job_result = -1;
                snprintf(a->job_reason, sizeof(a->job_reason),
                         "health check deadline of %lld ms passed",
                         (long long)a->cfg.trial_deadline_ms);
                break;
            }
            int timeout = (int)(left < a->cfg.health_timeout_ms ? left : a->cfg.health_timeout_ms);
            int rc = ota_run_command(a->cfg.health_commands[i], timeout, NULL, 0);
            if (rc != 0) {
                a->job_result = -1;
                snprintf(a->job_reason, sizeof(a->job_reason), "health check '%s' %s %d",
                         a->cfg.health_commands[i], rc < 0 ? "timed out" : "exited", rc);
                break;
            }
        }
    }
    char c = 1;
    ssize_t w = write(a->job_pipe[1], &c, 1);
    (void)w;
    return NULL;
}

static int start_job(struct ota_agent *a, enum job_kind kind)
{
    if (a->job_running)
        return -1;
    a->job = kind;
    a->job_running = 1;
    if (pthread_create(&a->job_thread, NULL, job_main, a) != 0) {
        a->job_running = 0;
        return -1;
    }
    (void)pthread_setname_np(a->job_thread, "ferryd-ota");
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Steps                                                                                      */

static void schedule_poll(struct ota_agent *a, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(a->poll_timer, &tv);
}

static void work_path(const struct ota_agent *a, const struct manifest_artifact *art, char *out,
                      size_t n)
{
    char hex[65];
    ferry_hex_encode(art->sha256, 32, hex);
    snprintf(out, n, "%s/ota/%s.part", a->cfg.data_dir, hex);
}

static void start_apply(struct ota_agent *a);
static void finish_condition(struct ota_agent *a);

static int file_mode(const struct ota_agent *a)
{
    return a->cfg.install_path != NULL;
}

/* Where the running version is: the install path (file) or the running slot. */
static int current_path(const struct ota_agent *a, char *out, size_t n)
{
    if (file_mode(a))
        return snprintf(out, n, "%s", a->cfg.install_path) < (int)n ? 0 : -1;
    return ota_slots_path(a->slots, ota_slots_current(a->slots), out, n) == 0 ? 0 : -1;
}

static int fsync_dir_of(const char *path)
{
    char dir[1100];
    ferry_strlcpy(dir, path, sizeof(dir));
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* File components: <path>.new replaces <path>, the old one kept as <path>.prev. Idempotent, so a
 * crash anywhere in it is repaired by running it again: once .new is gone the swap happened. */
static int file_switch(const struct ota_agent *a)
{
    char prev[1100], next[1100];
    snprintf(prev, sizeof(prev), "%s.prev", a->cfg.install_path);
    snprintf(next, sizeof(next), "%s.new", a->cfg.install_path);
    if (access(next, F_OK) != 0)
        return 0;
    if (unlink(prev) != 0 && errno != ENOENT)
        return -1;
    if (link(a->cfg.install_path, prev) != 0 && errno != ENOENT)
        return -1;
    if (rename(next, a->cfg.install_path) != 0)
        return -1;
    return fsync_dir_of(a->cfg.install_path);
}

static int file_rollback(const struct ota_agent *a)
{
    char prev[1100];
    snprintf(prev, sizeof(prev), "%s.prev", a->cfg.install_path);
    if (rename(prev, a->cfg.install_path) != 0)
        return -1;
    return fsync_dir_of(a->cfg.install_path);
}

/* The trial begins (after a switch, or again after a restart during one): health commands on
 * the worker, then the metric gates, all within trial_deadline from now. */
static void begin_health(struct ota_agent *a)
{
    a->trial_started_ms = ferry_monotonic_ms();
    ota_gates_reset(a->gates, a->n_gates);
    a->in_trial = true;
    a->gating = false;
    set_state(a, "trial", NULL, "running health checks");
    if (start_job(a, JOB_HEALTH) != 0) {
        a->in_trial = false;
        set_state(a, "rolled_back", NULL, "cannot start health checks");
    }
}

static void start_trial(struct ota_agent *a)
{
    begin_health(a);
}

/* A mirror was given up (transport/download.h): logged with its URL and why, counted in the
 * state (persisted with the next chunk). The download goes on with the next source by itself. */
static void on_mirror_failed(void *arg, const char *url, const char *reason)
{
    struct ota_agent *a = arg;
    a->st.mirror_failures++;
    snprintf(a->st.mirror_error, sizeof(a->st.mirror_error), "%s: %s", url, reason);
    log_warn("ota", "%s %s: mirror %s failed at chunk %u: %s; trying the next source",
             a->cfg.component, a->st.target_version, url, a->st.next_chunk, reason);
}

static int on_chunk(void *arg, uint32_t index, uint32_t next, uint64_t bytes_done)
{
    (void)index;
    struct ota_agent *a = arg;
    a->st.next_chunk = next;
    a->st.bytes_done = bytes_done;
    if (a->dl) { /* mirror counters of this run added to those of runs before it */
        struct download_stats ds;
        download_get_stats(a->dl, &ds);
        a->st.mirror_chunks = a->mirror_chunks_before + ds.mirror_chunks;
        a->st.mirror_bytes = a->mirror_bytes_before + ds.mirror_bytes;
    }
    int decile = a->st.bytes_total ? (int)(bytes_done * 10 / a->st.bytes_total) : 10;
    /* every chunk is persisted (resume point); every 10 % also reported as an event */
    if (decile != a->last_progress_decile) {
        a->last_progress_decile = decile;
        return persist(a, "downloading", NULL, 0) == OTA_OK ? 0 : 1;
    }
    a->st.updated_ns = ferry_realtime_ns();
    char *state = status_json(&a->st);
    int rc = state ? journal_state_put(a->journal, a->state_key, strlen(a->state_key), state,
                                       strlen(state))
                   : -1;
    free(state);
    return rc == 0 ? 0 : 1;
}

static void on_download_done(void *arg, int err, const char *reason)
{
    struct ota_agent *a = arg;
    if (err == DOWNLOAD_E_CANCELED)
        return; /* agent stopping: the state keeps the resume point */
    if (err != DOWNLOAD_OK) {
        char why[300];
        snprintf(why, sizeof(why), "download: %s", reason);
        set_state(a, "failed", NULL, why);
        schedule_poll(a, a->cfg.check_interval_ms);
        return;
    }
    set_state(a, "downloaded", NULL, NULL);
    start_apply(a);
}

int ota_metered_policy_parse(const char *s)
{
    if (!s || !strcmp(s, "allow"))
        return OTA_METERED_ALLOW;
    if (!strcmp(s, "cap"))
        return OTA_METERED_CAP;
    if (!strcmp(s, "defer"))
        return OTA_METERED_DEFER;
    return -1;
}

/* Whether the default route goes through a metered interface (its name in ifname). */
static bool link_metered(const struct ota_agent *a, char *ifname, size_t len)
{
    ifname[0] = '\0';
    if (ota_default_route_interface(a->cfg.route_file, ifname, len) != 0)
        return false;
    return ota_interface_metered(a->cfg.metered_interfaces, ifname);
}

static void arm_metered_recheck(struct ota_agent *a)
{
    int64_t ms = a->cfg.check_interval_ms < 60000 ? a->cfg.check_interval_ms : 60000;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(a->metered_timer, &tv);
}

static void start_download(struct ota_agent *a)
{
    if (a->dl) { /* finished (or failed) download of a previous step */
        download_free(a->dl);
        a->dl = NULL;
    }
    char ifname[64];
    bool metered =
        a->cfg.metered_policy != OTA_METERED_ALLOW && link_metered(a, ifname, sizeof(ifname));
    if (metered && a->cfg.metered_policy == OTA_METERED_DEFER) {
        if (!a->deferred) { /* one event per pause, not one per recheck */
            char why[160];
            snprintf(why, sizeof(why), "waiting for an unmetered link (default route via %s)",
                     ifname);
            log_info("ota", "%s: download of %s deferred: %s", a->cfg.component,
                     a->st.target_version, why);
            set_state(a, "downloading", NULL, why);
        }
        a->deferred = true;
        arm_metered_recheck(a);
        return;
    }
    if (a->deferred) {
        a->deferred = false;
        set_state(a, "downloading", NULL, "resumed on an unmetered link");
    }
    char path[1100], url[1200], dir[1100];
    snprintf(dir, sizeof(dir), "%s/ota", a->cfg.data_dir);
    if (ferry_mkdir_p(dir, 0700) != 0) {
        set_state(a, "failed", NULL, "cannot create the download directory");
        return;
    }
    work_path(a, a->artifact, path, sizeof(path));
    char hex[65];
    ferry_hex_encode(a->artifact->sha256, 32, hex);
    snprintf(url, sizeof(url), "%s/v1/artifacts/%s", a->cfg.server_url, hex);
    /* Mirrors first, in the manifest's order, the ingest last (docs/ota.md "Mirrors"). */
    char mirror_urls[DOWNLOAD_MAX_MIRRORS][MANIFEST_MAX_MIRROR_URL + 65];
    const char *mirror_ptrs[DOWNLOAD_MAX_MIRRORS];
    size_t n_mirrors = 0;
    for (size_t i = 0; i < manifest_mirror_count(a->manifest) && n_mirrors < DOWNLOAD_MAX_MIRRORS;
         i++) {
        snprintf(mirror_urls[n_mirrors], sizeof(mirror_urls[0]), "%s%s",
                 manifest_mirror(a->manifest, i), hex);
        mirror_ptrs[n_mirrors] = mirror_urls[n_mirrors];
        n_mirrors++;
    }
    a->mirror_chunks_before = a->st.mirror_chunks;
    a->mirror_bytes_before = a->st.mirror_bytes;
    struct download_opts o = {0};
    o.url = url;
    o.mirror_urls = mirror_ptrs;
    o.mirror_count = n_mirrors;
    o.on_mirror_failed = on_mirror_failed;
    o.path = path;
    o.artifact = a->artifact;
    o.first_chunk = a->st.next_chunk <= a->artifact->chunk_count ? a->st.next_chunk : 0;
    o.max_bytes_per_s = a->cfg.max_bytes_per_s;
    if (metered && a->cfg.metered_policy == OTA_METERED_CAP && a->cfg.metered_max_bytes_per_s &&
        (o.max_bytes_per_s == 0 || a->cfg.metered_max_bytes_per_s < o.max_bytes_per_s))
        o.max_bytes_per_s = a->cfg.metered_max_bytes_per_s;
    o.ca_file = a->cfg.ca_file;
    o.sign = ota_sign;
    o.sign_arg = a;
    o.pinned_public_key = a->cfg.pinned_public_key;
    o.on_chunk = on_chunk;
    o.on_done = on_download_done;
    o.arg = a;
    a->last_progress_decile =
        a->artifact->size ? (int)(a->st.bytes_done * 10 / a->artifact->size) : 0;
    if (download_start(a->http, a->base, &o, &a->dl) != DOWNLOAD_OK) {
        a->dl = NULL;
        set_state(a, "failed", NULL, "cannot start the download");
    }
}

/* Continues after JOB_SELECT: artifact `index` (or the full image when -1). */
static void begin_artifact(struct ota_agent *a, int index)
{
    const struct manifest_artifact *art = index >= 0 ? manifest_artifact(a->manifest, (size_t)index)
                                                     : manifest_find_full(a->manifest);
    a->artifact = art;
    ferry_strlcpy(a->st.artifact_kind, art->kind == MANIFEST_ARTIFACT_DELTA ? "delta" : "full",
                  sizeof(a->st.artifact_kind));
    a->st.next_chunk = 0;
    a->st.chunks = art->chunk_count;
    a->st.bytes_done = 0;
    a->st.bytes_total = art->size;
    a->st.bytes_at_start = 0;
    a->st.download_started_ns = ferry_realtime_ns();
    a->st.mirror_chunks = a->st.mirror_failures = 0;
    a->st.mirror_bytes = 0;
    a->st.mirror_error[0] = '\0';
    set_state(a, "downloading", NULL, index >= 0 ? NULL : "no delta for the running image: full");
    start_download(a);
}

static void start_apply(struct ota_agent *a)
{
    char cur[1100], target[1100];
    if (file_mode(a)) {
        ferry_strlcpy(a->st.target_slot, "f", sizeof(a->st.target_slot));
        snprintf(a->job_base_path, sizeof(a->job_base_path), "%s", a->cfg.install_path);
        snprintf(a->job_target_path, sizeof(a->job_target_path), "%s.new", a->cfg.install_path);
        work_path(a, a->artifact, a->job_delta_path, sizeof(a->job_delta_path));
        memcpy(a->job_expect, manifest_target_sha256(a->manifest), 32);
        set_state(a, "applying", NULL, NULL);
        if (start_job(a, JOB_APPLY) != 0)
            set_state(a, "failed", NULL, "cannot start the apply worker");
        return;
    }
    /* A3: only from a confirmed running slot, and never into it */
    if (!ota_slots_running_is_good(a->slots)) {
        set_state(a, "failed", NULL, "running slot is unconfirmed: not writing the other one");
        return;
    }
    ferry_strlcpy(a->st.target_slot, ota_slots_inactive(a->slots), sizeof(a->st.target_slot));
    if (ota_slots_path(a->slots, ota_slots_current(a->slots), cur, sizeof(cur)) != 0 ||
        ota_slots_path(a->slots, ota_slots_inactive(a->slots), target, sizeof(target)) != 0) {
        set_state(a, "failed", NULL, "slot paths too long");
        return;
    }
    ferry_strlcpy(a->job_base_path, cur, sizeof(a->job_base_path));
    ferry_strlcpy(a->job_target_path, target, sizeof(a->job_target_path));
    work_path(a, a->artifact, a->job_delta_path, sizeof(a->job_delta_path));
    memcpy(a->job_expect, manifest_target_sha256(a->manifest), 32);
    set_state(a, "applying", NULL, NULL);
    if (start_job(a, JOB_APPLY) != 0)
        set_state(a, "failed", NULL, "cannot start the apply worker");
}

static void run_reboot_hook(struct ota_agent *a)
{
    if (!a->cfg.reboot_command)
        return;
    if (ota_run_command(a->cfg.reboot_command, 30000, NULL, 0) != 0)
        log_warn("ota", "reboot command failed: %s", a->cfg.reboot_command);
}

/* "switching" is committed before the boot loader is told, so a crash in between is resolved at
 * the next start: the boot loader either switched (unconfirmed running slot = trial) or not (tell
 * it again). */
static void switch_slots(struct ota_agent *a)
{
    set_state(a, "switching", NULL, NULL);
    if (file_mode(a)) {
        if (file_switch(a) != 0) {
            set_state(a, "failed", NULL, "cannot replace the installed file");
            return;
        }
        set_state(a, "installed", NULL, "file replaced, previous kept as .prev");
        run_reboot_hook(a);
        start_trial(a);
        return;
    }
    if (ota_slots_set_next(a->slots, a->st.target_slot) != 0) {
        set_state(a, "failed", NULL, "boot loader refused to switch slots");
        return;
    }
    set_state(a, "installed", NULL, "waiting for the reboot into the new slot");
    run_reboot_hook(a);
}

static void finish_apply(struct ota_agent *a)
{
    if (a->job_result == DELTA_E_BASE_MISMATCH && a->artifact->kind == MANIFEST_ARTIFACT_DELTA) {
        /* the running image is not the delta's base (e.g. a modified rw rootfs): full image */
        set_state(a, "failed", "fallback", "base mismatch: falling back to the full image");
        begin_artifact(a, -1);
        return;
    }
    if (a->job_result != 0) {
        char why[300];
        snprintf(why, sizeof(why), "apply: %s", a->job_reason);
        set_state(a, "failed", NULL, why);
        schedule_poll(a, a->cfg.check_interval_ms);
        return;
    }
    char part[1100];
    work_path(a, a->artifact, part, sizeof(part));
    unlink(part);
    switch_slots(a);
}

static void finish_health(struct ota_agent *a)
{
    if (a->job_result == 0 && a->n_gates > 0 && !a->gating) {
        a->gating = true;
        char why[200];
        snprintf(why, sizeof(why), "health commands passed; waiting for %zu health gate(s)",
                 a->n_gates);
        set_state(a, "trial", NULL, why);
        struct timeval tv = {1, 0};
        evtimer_add(a->gate_timer, &tv);
        return;
    }
    a->in_trial = false;
    a->gating = false;
    if (a->job_result == 0) {
        if (!file_mode(a) && ota_slots_mark_good(a->slots) != 0) {
            set_state(a, "rolled_back", NULL, "boot loader refused to mark the slot good");
            return;
        }
        ferry_strlcpy(a->st.running_version, a->st.target_version, sizeof(a->st.running_version));
        if (a->manifest)
            a->st.highest_serial = manifest_serial(a->manifest);
        set_state(a, "committed", NULL, NULL);
        schedule_poll(a, a->cfg.check_interval_ms);
        return;
    }
    if (file_mode(a) ? file_rollback(a) != 0 : ota_slots_rollback(a->slots) != 0)
        log_error("ota", "rollback failed (boot loader command or .prev rename)");
    set_state(a, "rolled_back", NULL, a->job_reason);
    run_reboot_hook(a);
}

/* Once a second while gating: all gates passed -> commit; deadline -> roll back. */
static void on_gate_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct ota_agent *a = arg;
    if (!a->gating)
        return;
    int64_t now = ferry_monotonic_ms();
    size_t failing = a->n_gates;
    for (size_t i = 0; i < a->n_gates && failing == a->n_gates; i++)
        if (!ota_gate_passed(&a->gates[i], now))
            failing = i;
    if (failing == a->n_gates) {
        a->job_result = 0;
        finish_health(a);
        return;
    }
    if (now - a->trial_started_ms >= a->cfg.trial_deadline_ms) {
        char desc[200];
        ota_gate_describe(&a->gates[failing], now, desc, sizeof(desc));
        a->job_result = -1;
        snprintf(a->job_reason, sizeof(a->job_reason), "health gate not met within %llds: %s",
                 (long long)(a->cfg.trial_deadline_ms / 1000), desc);
        finish_health(a);
        return;
    }
    struct timeval tv = {1, 0};
    evtimer_add(a->gate_timer, &tv);
}

void ota_agent_observe(struct ota_agent *a, const struct record *r)
{
    if (a && a->in_trial && a->n_gates > 0)
        ota_gates_observe(a->gates, a->n_gates, r, ferry_monotonic_ms());
}

static void on_job_done(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct ota_agent *a = arg;
    char c;
    if (read(fd, &c, 1) != 1)
        return;
    pthread_join(a->job_thread, NULL);
    a->job_running = 0;
    switch (a->job) {
    case JOB_SELECT: begin_artifact(a, a->job_result); break;
    case JOB_APPLY: finish_apply(a); break;
    case JOB_HEALTH: finish_health(a); break;
    case JOB_CONDITION: finish_condition(a); break;
    case JOB_NONE: break;
    }
}

/* A verified manifest naming a version to install. */
static void start_update(struct ota_agent *a, struct manifest *m, const uint8_t *raw, size_t len)
{
    manifest_free(a->manifest);
    a->manifest = m;
    ferry_strlcpy(a->st.target_version, manifest_version(m), sizeof(a->st.target_version));
    a->st.highest_serial =
        a->st.highest_serial > manifest_serial(m) ? a->st.highest_serial : manifest_serial(m);
    ferry_strlcpy(a->st.state, "available", sizeof(a->st.state));
    a->st.reason[0] = '\0';
    if (persist(a, "available", raw, len) != OTA_OK)
        return;
    if (current_path(a, a->job_base_path, sizeof(a->job_base_path)) != 0 ||
        start_job(a, JOB_SELECT) != 0)
        set_state(a, "failed", NULL, "cannot start artifact selection");
}

static int verify_manifest(struct ota_agent *a, const uint8_t *raw, size_t len,
                           struct manifest **out, char *why, size_t why_len)
{
    struct manifest_keys keys = {a->cfg.release_keys, a->cfg.n_release_keys};
    int rc = manifest_parse_verified(raw, len, &keys, out, why, why_len);
    if (rc != 0)
        return rc;
    struct manifest_policy p = {a->cfg.device_class, a->cfg.component,
                                a->st.running_version[0] ? a->st.running_version : NULL,
                                a->st.highest_serial};
    rc = manifest_check(*out, &p, why, why_len);
    if (rc != 0) {
        manifest_free(*out);
        *out = NULL;
    }
    return rc;
}

/* A 401 for a stale signature carries the ingest's clock in X-Ferry-Time: keep the offset.
 * Returns true when it changed (so that a retry can succeed). */
static bool learn_server_time(struct ota_agent *a, struct http_request *req)
{
    size_t len = 0;
    const char *v = http_response_header(req, "X-Ferry-Time", &len);
    char text[24];
    uint64_t server_s = 0;
    if (v == NULL || len == 0 || len >= sizeof(text))
        return false;
    memcpy(text, v, len);
    text[len] = '\0';
    if (ferry_parse_u64(text, (uint64_t)INT64_MAX / 2, &server_s) != 0)
        return false;
    int64_t offset = (int64_t)server_s - ferry_realtime_ns() / 1000000000;
    if (offset == a->server_offset_s)
        return false;
    a->server_offset_s = offset;
    return true;
}

/* Appends the event "ota.condition" (no state change). The ingest replaces its per-component
 * update entry with every ota.* event's state fields, so this one carries the agent's current
 * state unchanged (state, running/target version, reason, bytes_done) and names the release it
 * is about "release_version". result: met, not_met, insufficient, unreadable, error. */
static void condition_event(struct ota_agent *a, const struct manifest *m, const char *result,
                            const char *detail)
{
    const struct manifest_condition *c = &a->cond;
    const struct ota_condition_result *r = &a->cond_result;
    char window[32];
    snprintf(window, sizeof(window), "%lldms", (long long)c->window_ms);
    struct record_field f[20];
    size_t nf = 0;
    str_field(&f[nf++], "component", a->cfg.component);
    str_field(&f[nf++], "state", a->st.state);
    str_field(&f[nf++], "running_version", a->st.running_version);
    str_field(&f[nf++], "target_version", a->st.target_version);
    str_field(&f[nf++], "reason", a->st.reason);
    f[nf].key = (struct record_str){"bytes_done", 10};
    f[nf].type = RECORD_FIELD_UINT;
    f[nf++].v.u = a->st.bytes_done;
    str_field(&f[nf++], "release_version", manifest_version(m));
    str_field(&f[nf++], "result", result);
    if (detail && detail[0])
        str_field(&f[nf++], "detail", detail);
    if (c->metric[0]) {
        str_field(&f[nf++], "metric", c->metric);
        str_field(&f[nf++], "stat", manifest_condition_stat_name(c->stat));
        str_field(&f[nf++], "op", manifest_condition_op_name(c->op));
        str_field(&f[nf++], "window", window);
        f[nf].key = (struct record_str){"threshold", 9};
        f[nf].type = RECORD_FIELD_FLOAT;
        f[nf++].v.f = c->value;
        f[nf].key = (struct record_str){"min_samples", 11};
        f[nf].type = RECORD_FIELD_UINT;
        f[nf++].v.u = c->min_samples;
    }
    if (strcmp(result, "unreadable") != 0 && strcmp(result, "error") != 0) {
        f[nf].key = (struct record_str){"value", 5};
        f[nf].type = RECORD_FIELD_FLOAT;
        f[nf++].v.f = r->value;
        f[nf].key = (struct record_str){"samples", 7};
        f[nf].type = RECORD_FIELD_UINT;
        f[nf++].v.u = r->samples;
        f[nf].key = (struct record_str){"scanned", 7};
        f[nf].type = RECORD_FIELD_UINT;
        f[nf++].v.u = r->scanned;
    }
    struct record rec = {0};
    rec.stream = RECORD_EVENT;
    rec.ts_ns = ferry_realtime_ns();
    rec.name = (struct record_str){"ota.condition", 13};
    rec.fields = f;
    rec.n_fields = nf;
    struct ferry_buf payload = FERRY_BUF_INIT;
    int rc = record_pack(&rec, &payload);
    if (rc == 0)
        rc = journal_append_event_with_state(a->journal, rec.ts_ns, payload.data, payload.len, NULL,
                                             0, JOURNAL_APPEND_WAIT, NULL);
    ferry_buf_free(&payload);
    if (rc != 0)
        log_error("ota", "%s: cannot append ota.condition: error %d", a->cfg.component, rc);
    log_info("ota", "ota.condition: %s %s: %s%s%s", a->cfg.component, manifest_version(m), result,
             detail && detail[0] ? " - " : "", detail ? detail : "");
}

static void drop_pending_condition(struct ota_agent *a)
{
    free(a->cond_raw);
    a->cond_raw = NULL;
    a->cond_raw_len = 0;
}

/* The worker evaluated the condition of a->cond_manifest: install when met; otherwise keep the
 * manifest's bytes for the next poll (not met is not a failure: the state does not change). */
static void finish_condition(struct ota_agent *a)
{
    struct manifest *m = a->cond_manifest;
    a->cond_manifest = NULL;
    if (!m)
        return;
    const char *result =
        a->job_result != 0 ? "error" : ota_condition_outcome_name(a->cond_result.outcome);
    char detail[400] = "";
    if (a->job_result != 0)
        ferry_strlcpy(detail, a->job_reason, sizeof(detail));
    else {
        char cond[300];
        manifest_condition_describe(&a->cond, cond, sizeof(cond));
        snprintf(detail, sizeof(detail), "%s %.6g over %llu samples; condition %s",
                 manifest_condition_stat_name(a->cond.stat), a->cond_result.value,
                 (unsigned long long)a->cond_result.samples, cond);
    }
    condition_event(a, m, result, detail);
    if (a->job_result == 0 && a->cond_result.outcome == OTA_CONDITION_MET) {
        uint8_t *raw = a->cond_raw;
        size_t raw_len = a->cond_raw_len;
        a->cond_raw = NULL;
        a->cond_raw_len = 0;
        start_update(a, m, raw, raw_len); /* takes m */
        free(raw);
        return;
    }
    manifest_free(m); /* evaluated again at the next poll, from a->cond_raw */
}

/* A verified manifest that passed the policy: install it, or first evaluate its condition. Takes
 * m. raw/len are the envelope as received (persisted with the state when an update starts). */
static void consider_manifest(struct ota_agent *a, struct manifest *m, const uint8_t *raw,
                              size_t len)
{
    if (a->st.running_version[0] && strcmp(manifest_version(m), a->st.running_version) == 0) {
        manifest_free(m);
        drop_pending_condition(a);
        return; /* already running it */
    }
    if (strcmp(a->st.state, "rolled_back") == 0 &&
        strcmp(manifest_version(m), a->st.target_version) == 0) {
        manifest_free(m);
        drop_pending_condition(a);
        return; /* the release that just failed here is not retried by itself */
    }
    char why[256] = "";
    memset(&a->cond, 0, sizeof(a->cond));
    memset(&a->cond_result, 0, sizeof(a->cond_result));
    int has = manifest_condition(m, &a->cond, why, sizeof(why));
    if (has == 0) {
        drop_pending_condition(a);
        start_update(a, m, raw, len);
        return;
    }
    if (has < 0) { /* not understood: never installed on it; said once per manifest fetched */
        condition_event(a, m, "unreadable", why);
        manifest_free(m);
        drop_pending_condition(a);
        return;
    }
    if (a->cond_raw != raw) {
        drop_pending_condition(a);
        a->cond_raw = malloc(len ? len : 1);
        if (!a->cond_raw) {
            manifest_free(m);
            return;
        }
        memcpy(a->cond_raw, raw, len);
        a->cond_raw_len = len;
    }
    a->cond_manifest = m;
    if (start_job(a, JOB_CONDITION) != 0) {
        a->cond_manifest = NULL;
        manifest_free(m);
        log_warn("ota", "%s: cannot start the condition evaluation; next poll", a->cfg.component);
    }
}

static void on_poll_done(void *arg, struct http_request *req, const struct http_response *resp)
{
    struct ota_agent *a = arg;
    a->poll_req = NULL;
    int busy = strcmp(a->st.state, "idle") != 0 && strcmp(a->st.state, "committed") != 0 &&
               strcmp(a->st.state, "rolled_back") != 0 && strcmp(a->st.state, "failed") != 0;
    busy |= a->job_running;
    schedule_poll(a, a->cfg.check_interval_ms);
    if (resp->err == HTTP_CLIENT_OK && resp->status == 401 && learn_server_time(a, req))
        schedule_poll(a, 1000); /* signed with a wrong clock: again soon, with the ingest's */
    if (resp->err == HTTP_CLIENT_OK && resp->status == 204)
        drop_pending_condition(a); /* the release was withdrawn */
    if (resp->err == HTTP_CLIENT_OK && resp->status == 304 && a->cond_raw && !busy) {
        /* unchanged release whose condition was not met: evaluate it again */
        uint8_t *raw = a->cond_raw;
        size_t raw_len = a->cond_raw_len;
        a->cond_raw = NULL; /* consider_manifest keeps its own copy again when still not met */
        a->cond_raw_len = 0;
        struct manifest *m = NULL;
        char why[256] = "";
        if (verify_manifest(a, raw, raw_len, &m, why, sizeof(why)) == 0)
            consider_manifest(a, m, raw, raw_len);
        free(raw); /* refused now: e.g. the policy moved on (a higher serial seen) */
        return;
    }
    if (resp->err != HTTP_CLIENT_OK || resp->status != 200 || busy)
        return; /* offline, 204 (nothing for us), 304 (unchanged), or an update under way */
    size_t elen = 0;
    const char *etag = http_response_header(req, "ETag", &elen);
    if (etag && elen < sizeof(a->etag)) {
        memcpy(a->etag, etag, elen);
        a->etag[elen] = '\0';
    }
    struct manifest *m = NULL;
    char why[256] = "";
    int rc = verify_manifest(a, resp->body, resp->body_len, &m, why, sizeof(why));
    if (rc != 0) {
        /* refused manifests are reported (once per ETag, since 304 follows) and never installed */
        char reason[320];
        snprintf(reason, sizeof(reason), "manifest refused: %s (%s)", manifest_strerror(rc), why);
        drop_pending_condition(a);
        set_state(a, "failed", "rejected", reason);
        return;
    }
    consider_manifest(a, m, resp->body, resp->body_len);
}

static void on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ota_agent_check_now(arg);
}

/* The link may have changed: a deferred download starts when it is unmetered now; a running one
 * pauses (progress kept) when the policy defers and the link became metered. */
static void recheck_metered(struct ota_agent *a)
{
    if (a->cfg.metered_policy != OTA_METERED_DEFER || !a->artifact ||
        strcmp(a->st.state, "downloading") != 0)
        return;
    char ifname[64];
    if (a->deferred) {
        if (!link_metered(a, ifname, sizeof(ifname)))
            start_download(a);
        else
            arm_metered_recheck(a);
    } else if (a->dl && link_metered(a, ifname, sizeof(ifname))) {
        download_free(a->dl); /* on_done(CANCELED): the state keeps the resume point */
        a->dl = NULL;
        start_download(a);
    }
}

static void on_metered_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    recheck_metered(arg);
}

void ota_agent_check_now(struct ota_agent *a)
{
    recheck_metered(a);
    if (a->poll_req)
        return;
    char url[1200], inm[128];
    snprintf(url, sizeof(url), "%s/v1/devices/%s/manifest?component=%s", a->cfg.server_url,
             a->cfg.device_id, a->cfg.component);
    snprintf(inm, sizeof(inm), "If-None-Match: %s", a->etag);
    struct reqsign_headers sig;
    const char *headers[6];
    size_t nh = 0;
    if (a->etag[0])
        headers[nh++] = inm;
    if (ota_sign(a, "GET", reqsign_target_of_url(url), &sig) == 0) {
        headers[nh++] = sig.device;
        headers[nh++] = sig.time;
        headers[nh++] = sig.nonce;
        headers[nh++] = sig.signature;
    }
    headers[nh] = NULL;
    struct http_request_opts o;
    http_request_opts_init(&o);
    o.url = url;
    o.headers = nh ? headers : NULL;
    o.max_response_bytes = MANIFEST_MAX_BYTES;
    o.deadline_ms = 60000;
    o.ca_file = a->cfg.ca_file;
    o.pinned_public_key = a->cfg.pinned_public_key;
    o.on_done = on_poll_done;
    o.arg = a;
    if (http_request_start(a->http, &o, &a->poll_req) != HTTP_CLIENT_OK) {
        a->poll_req = NULL;
        schedule_poll(a, a->cfg.check_interval_ms);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Start-up: continue whatever the journal says was going on                                  */

static int load_manifest(struct ota_agent *a)
{
    size_t len = 0;
    int rc = journal_state_get(a->journal, a->manifest_key, strlen(a->manifest_key), NULL, 0, &len);
    if (rc != JOURNAL_ETOOBIG || len == 0 || len > MANIFEST_MAX_BYTES)
        return -1;
    uint8_t *raw = malloc(len);
    if (!raw)
        return -1;
    rc = journal_state_get(a->journal, a->manifest_key, strlen(a->manifest_key), raw, len, &len);
    struct manifest_keys keys = {a->cfg.release_keys, a->cfg.n_release_keys};
    char why[128];
    if (rc == 0)
        rc = manifest_parse_verified(raw, len, &keys, &a->manifest, why, sizeof(why));
    free(raw);
    return rc == 0 ? 0 : -1;
}

static void resume(struct ota_agent *a)
{
    const char *s = a->st.state;
    int needs_manifest = strcmp(s, "downloading") == 0 || strcmp(s, "downloaded") == 0 ||
                         strcmp(s, "switching") == 0 || strcmp(s, "applying") == 0 ||
                         strcmp(s, "available") == 0 || strcmp(s, "trial") == 0 ||
                         strcmp(s, "installed") == 0;
    if (needs_manifest && load_manifest(a) != 0) {
        set_state(a, "failed", NULL, "stored manifest unreadable after restart");
        schedule_poll(a, 0);
        return;
    }
    if (file_mode(a) &&
        (strcmp(s, "switching") == 0 || strcmp(s, "installed") == 0 || strcmp(s, "trial") == 0)) {
        if (file_switch(a) != 0) { /* finish an interrupted swap */
            set_state(a, "failed", NULL, "cannot replace the installed file");
            return;
        }
        start_trial(a); /* a kill during the trial runs the checks again */
        return;
    }
    int on_target = !file_mode(a) && strcmp(ota_slots_current(a->slots), a->st.target_slot) == 0;
    if (strcmp(s, "switching") == 0) {
        if (!ota_slots_running_is_good(a->slots) && on_target)
            s = "installed"; /* the switch happened and this is the trial boot */
        else {
            switch_slots(a);
            return;
        }
    }
    if ((strcmp(s, "installed") == 0 || strcmp(s, "trial") == 0) &&
        ota_slots_running_is_good(a->slots) && on_target) {
        /* killed between marking the slot good and committing the state: it is committed */
        ferry_strlcpy(a->st.running_version, a->st.target_version, sizeof(a->st.running_version));
        if (a->manifest)
            a->st.highest_serial = manifest_serial(a->manifest);
        set_state(a, "committed", NULL, NULL);
        schedule_poll(a, a->cfg.check_interval_ms);
        return;
    }
    if (strcmp(s, "installed") == 0 || strcmp(s, "trial") == 0) {
        /* after the reboot: did the boot loader bring up the new slot, unconfirmed? */
        if (ota_slots_running_is_good(a->slots)) {
            set_state(a, "rolled_back", NULL,
                      strcmp(s, "trial") == 0 ? "crash or reboot during the trial: boot loader "
                                                "went back to the good slot"
                                              : "trial boot failed: boot loader went back to "
                                                "the good slot");
            schedule_poll(a, a->cfg.check_interval_ms);
            return;
        }
        begin_health(a);
        return;
    }
    if (strcmp(s, "available") == 0) {
        if (current_path(a, a->job_base_path, sizeof(a->job_base_path)) == 0)
            (void)start_job(a, JOB_SELECT);
        return;
    }
    if (strcmp(s, "downloading") == 0 || strcmp(s, "downloaded") == 0 ||
        strcmp(s, "applying") == 0) {
        a->artifact = NULL;
        for (size_t i = 0; i < manifest_artifact_count(a->manifest); i++) {
            const struct manifest_artifact *art = manifest_artifact(a->manifest, i);
            if ((strcmp(a->st.artifact_kind, "delta") == 0) ==
                    (art->kind == MANIFEST_ARTIFACT_DELTA) &&
                art->chunk_count == a->st.chunks) {
                a->artifact = art;
                break;
            }
        }
        if (!a->artifact) {
            set_state(a, "failed", NULL, "artifact of the stored state not in the manifest");
            return;
        }
        if (strcmp(s, "downloading") == 0)
            start_download(a);
        else
            start_apply(a); /* the target slot is not running, so applying again is safe */
        return;
    }
    schedule_poll(a, 0);
}

int ota_agent_new(struct event_base *base, struct http_client *http, struct journal *journal,
                  const struct ota_config *cfg, struct ota_agent **out, char *err, size_t err_len)
{
    if (!base || !http || !journal || !cfg || !cfg->data_dir || !cfg->server_url ||
        !cfg->device_id || !cfg->device_class || !out)
        return OTA_E_ARG;
    struct ota_agent *a = calloc(1, sizeof(*a));
    if (!a)
        return OTA_E_NOMEM;
    a->base = base;
    a->http = http;
    a->journal = journal;
    a->cfg = *cfg;
    a->job_pipe[0] = a->job_pipe[1] = -1;
    if (!a->cfg.component)
        a->cfg.component = "rootfs";
    if (a->cfg.check_interval_ms <= 0)
        a->cfg.check_interval_ms = 3600 * 1000;
    if (a->cfg.health_timeout_ms <= 0)
        a->cfg.health_timeout_ms = 30000;
    if (a->cfg.trial_deadline_ms <= 0)
        a->cfg.trial_deadline_ms = 600000;
    if (ota_gates_parse(cfg->health_gates, a->gates, OTA_MAX_GATES, &a->n_gates, err, err_len) !=
        0) {
        free(a);
        return OTA_E_ARG;
    }
    int rc = 0;
    if (!cfg->install_path) {
        rc = ota_slots_open(&cfg->slots, &a->slots, err, err_len);
        if (rc == 0)
            rc = ota_slots_boot(a->slots);
    }
    if (rc != 0) {
        ota_agent_free(a);
        return OTA_E_SLOT;
    }
    if (pipe2(a->job_pipe, O_CLOEXEC | O_NONBLOCK) != 0 ||
        !(a->job_event = event_new(base, a->job_pipe[0], EV_READ | EV_PERSIST, on_job_done, a)) ||
        !(a->poll_timer = evtimer_new(base, on_poll_timer, a)) ||
        !(a->gate_timer = evtimer_new(base, on_gate_timer, a)) ||
        !(a->metered_timer = evtimer_new(base, on_metered_timer, a)) ||
        event_add(a->job_event, NULL)) {
        ota_agent_free(a);
        return OTA_E_NOMEM;
    }
    char buf[4096];
    size_t len = 0;
    snprintf(a->state_key, sizeof(a->state_key), "%s%s", OTA_STATE_PREFIX, a->cfg.component);
    snprintf(a->manifest_key, sizeof(a->manifest_key), "%s%s", OTA_MANIFEST_PREFIX,
             a->cfg.component);
    if (journal_state_get(journal, a->state_key, strlen(a->state_key), buf, sizeof(buf) - 1,
                          &len) == 0) {
        buf[len] = '\0';
        ota_status_parse(buf, len, &a->st);
    } else {
        ferry_strlcpy(a->st.state, "idle", sizeof(a->st.state));
        ferry_strlcpy(a->st.running_version, cfg->initial_version ? cfg->initial_version : "",
                      sizeof(a->st.running_version));
    }
    *out = a;
    resume(a);
    return OTA_OK;
}

const char *ota_agent_component(const struct ota_agent *a)
{
    return a->cfg.component;
}

void ota_agent_status(const struct ota_agent *a, struct ota_status *out)
{
    *out = a->st;
}

void ota_agent_free(struct ota_agent *a)
{
    if (!a)
        return;
    if (a->poll_req)
        http_request_cancel(a->poll_req);
    if (a->dl)
        download_free(a->dl);
    if (a->job_running)
        pthread_join(a->job_thread, NULL);
    if (a->job_event)
        event_free(a->job_event);
    if (a->poll_timer)
        event_free(a->poll_timer);
    if (a->gate_timer)
        event_free(a->gate_timer);
    if (a->metered_timer)
        event_free(a->metered_timer);
    if (a->job_pipe[0] >= 0)
        close(a->job_pipe[0]);
    if (a->job_pipe[1] >= 0)
        close(a->job_pipe[1]);
    manifest_free(a->manifest);
    manifest_free(a->cond_manifest);
    free(a->cond_raw);
    ota_slots_close(a->slots);
    free(a);
}
