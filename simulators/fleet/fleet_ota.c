/*
 * fleet_ota.c - simulated OTA of ferry-fleet's virtual devices (see fleet_ota.h).
 *
 * The device's life around its real agents, once a second (fleet_ota_step):
 *
 *   not enrolled -> (enrolled) start: one agent per component, a "versions" event
 *   up: agent "installed"                          -> reboot
 *       agent "trial", crash-looping on its target -> crash = reboot (the boot loader falls back)
 *       agent "trial" -> "rolled_back" in this boot -> reboot into the good slot
 *   rebooting (reboot_ms) -> start again (ota_slots_boot plays the boot loader)
 *
 * A reboot frees every agent of the device (their state is in the journal, as on a real device)
 * and keeps the sync engine running: the fleet simulates what the agent sees, not ferryd's own
 * restart, which the engine's tests cover.
 */
#include "simulators/fleet/fleet_ota.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "engine/input.h"
#include "engine/ota/ota.h"
#include "engine/sync.h"
#include "journal/journal.h"
#include "transport/http_client.h"
#include "transport/manifest.h"

int fleet_ota_parse_rule(const char *text, double lo, double hi, struct fleet_ota_rule *rules,
                         size_t *n, char *err, size_t err_len)
{
    const char *colon = strrchr(text, ':');
    if (*n >= FLEET_OTA_MAX_RULES) {
        snprintf(err, err_len, "at most %d rules", FLEET_OTA_MAX_RULES);
        return -1;
    }
    if (!colon || colon == text || (size_t)(colon - text) >= sizeof rules[0].version) {
        snprintf(err, err_len, "'%s': expected VERSION:VALUE", text);
        return -1;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(colon + 1, &end);
    if (errno || end == colon + 1 || *end || !(v >= lo && v <= hi)) {
        snprintf(err, err_len, "'%s': the value must be a number from %g to %g", text, lo, hi);
        return -1;
    }
    struct fleet_ota_rule *r = &rules[*n];
    memcpy(r->version, text, (size_t)(colon - text));
    r->version[colon - text] = '\0';
    if (!manifest_name_valid(r->version)) {
        snprintf(err, err_len, "'%s': a version is 1..64 of [A-Za-z0-9._+-]", r->version);
        return -1;
    }
    r->value = v;
    (*n)++;
    return 0;
}

int fleet_ota_add_key_file(struct fleet_ota_config *cfg, const char *path, char *err,
                           size_t err_len)
{
    if (cfg->n_release_keys >= FLEET_OTA_MAX_KEYS) {
        snprintf(err, err_len, "at most %d release keys", FLEET_OTA_MAX_KEYS);
        return -1;
    }
    uint8_t *text = NULL;
    size_t len = 0;
    int rc = ferry_read_file(path, 256, &text, &len);
    if (rc < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(-rc));
        return -1;
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        text[--len] = '\0';
    rc = len == 64
             ? ferry_hex_decode((const char *)text, cfg->release_keys[cfg->n_release_keys], 32)
             : -1;
    free(text);
    if (rc != 0) {
        snprintf(err, err_len, "%s: not a release public key (64 hex digits)", path);
        return -1;
    }
    cfg->n_release_keys++;
    return 0;
}

/* FNV-1a over both strings (with a separator), then splitmix64's finalizer: uniform enough for
 * shares of a fleet, and the same on every machine. */
double fleet_ota_stable_unit(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = a; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *p = b; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return (double)(h >> 11) / 9007199254740992.0;
}

static const struct fleet_ota_rule *find_rule(const struct fleet_ota_rule *rules, size_t n,
                                              const char *version)
{
    for (size_t i = 0; version[0] && i < n; i++)
        if (strcmp(rules[i].version, version) == 0)
            return &rules[i];
    return NULL;
}

void fleet_ota_device_init(struct fleet_ota_device *o, const struct fleet_ota_config *cfg,
                           struct event_base *base, struct journal *journal, struct sync *sync,
                           const char *name, const char *dir, const char *server_url)
{
    memset(o, 0, sizeof *o);
    o->cfg = cfg;
    o->base = base;
    o->journal = journal;
    o->sync = sync;
    o->name = name;
    o->dir = dir;
    o->server_url = server_url;
    for (size_t i = 0; i < cfg->n_components; i++)
        ferry_strlcpy(o->running[i], cfg->initial_version ? cfg->initial_version : "",
                      sizeof o->running[i]);
}

/* ferryd's "versions" event at start: the running version of every component. */
static void send_versions(struct fleet_ota_device *o)
{
    const char *kv[2 * FLEET_OTA_MAX_COMPONENTS];
    size_t n = 0;
    for (size_t i = 0; i < o->cfg->n_components; i++) {
        if (!o->running[i][0])
            continue;
        kv[2 * n] = o->cfg->components[i];
        kv[2 * n + 1] = o->running[i];
        n++;
    }
    if (n == 0)
        return;
    struct ferry_buf b = FERRY_BUF_INIT;
    int64_t now = ferry_realtime_ns();
    if (input_pack_event("versions", "versions running", now, kv, n, &b) == 0 &&
        journal_append(o->journal, RECORD_EVENT, now, b.data, b.len, 0, NULL) == 0)
        sync_wake(o->sync);
    else
        log_warn("fleet", "%s: versions event not appended", o->name);
    ferry_buf_free(&b);
}

static void stop_agents(struct fleet_ota_device *o)
{
    for (size_t i = 0; i < o->cfg->n_components; i++) {
        ota_agent_free(o->agents[i]);
        o->agents[i] = NULL;
        o->seen_state[i][0] = '\0';
    }
}

/* As ferryd: each committed ota.* event wakes the sync engine, so the ingest learns the state
 * within the event latency. */
static void on_appended(void *arg)
{
    struct fleet_ota_device *o = arg;
    sync_wake(o->sync);
}

static int start_agents(struct fleet_ota_device *o, char *err, size_t err_len)
{
    if (!o->http && !(o->http = http_client_new(o->base))) {
        snprintf(err, err_len, "%s: http_client_new failed", o->name);
        return -1;
    }
    for (size_t i = 0; i < o->cfg->n_components; i++) {
        char slot_dir[4200];
        snprintf(slot_dir, sizeof slot_dir, "%s/slots-%s", o->dir, o->cfg->components[i]);
        int mk = ferry_mkdir_p(slot_dir, 0700);
        if (mk < 0) {
            snprintf(err, err_len, "%s: %s: %s", o->name, slot_dir, strerror(-mk));
            return -1;
        }
        struct ota_config oc;
        memset(&oc, 0, sizeof oc);
        oc.data_dir = o->dir;
        oc.server_url = o->server_url;
        oc.device_id = o->device_id;
        oc.device_class = "ferry-fleet";
        oc.component = o->cfg->components[i];
        oc.release_keys = (const uint8_t(*)[32])o->cfg->release_keys;
        oc.n_release_keys = o->cfg->n_release_keys;
        oc.slots.backend = "simulated";
        oc.slots.dir = slot_dir; /* copied by ota_slots_open */
        oc.slots.max_trial_boots = 1;
        oc.check_interval_ms = o->cfg->check_interval_ms;
        oc.health_gates = o->cfg->health_gates;
        oc.trial_deadline_ms = o->cfg->trial_deadline_ms;
        oc.initial_version = o->cfg->initial_version;
        oc.sign_request = sync_sign_request; /* as ferryd: every GET signed by the device key */
        oc.sign_arg = o->sync;
        oc.appended = on_appended;
        oc.appended_arg = o;
        char aerr[256] = "";
        int rc = ota_agent_new(o->base, o->http, o->journal, &oc, &o->agents[i], aerr, sizeof aerr);
        if (rc != 0) {
            snprintf(err, err_len, "%s: OTA agent for %s: %d %s", o->name, oc.component, rc, aerr);
            stop_agents(o);
            return -1;
        }
        struct ota_status st;
        ota_agent_status(o->agents[i], &st);
        ferry_strlcpy(o->running[i], st.running_version, sizeof o->running[i]);
        ferry_strlcpy(o->target[i], st.target_version, sizeof o->target[i]);
    }
    o->started = 1;
    o->down_until_ms = 0;
    send_versions(o);
    return 0;
}

static void reboot(struct fleet_ota_device *o, int64_t now_ms)
{
    stop_agents(o);
    o->reboots++;
    o->down_until_ms = now_ms + (o->cfg->reboot_ms > 0 ? o->cfg->reboot_ms : 1);
}

/* Whether this device crash-loops when it runs `version` (the crashloop rule's share, chosen by
 * the stable hash of the device name and the version). */
static int crash_loops(const struct fleet_ota_device *o, const char *version)
{
    const struct fleet_ota_rule *r = find_rule(o->cfg->crashloop, o->cfg->n_crashloop, version);
    return r && fleet_ota_stable_unit(o->name, version) < r->value;
}

int fleet_ota_step(struct fleet_ota_device *o, int64_t now_ms, char *err, size_t err_len)
{
    if (!o->cfg->enabled)
        return 0;
    if (o->down_until_ms) {
        if (now_ms < o->down_until_ms)
            return 0;
        return start_agents(o, err, err_len);
    }
    if (!o->started) {
        struct sync_status ss;
        sync_get_status(o->sync, &ss);
        if (!ss.enrolled || !ss.device_id[0])
            return 0; /* the manifest URL needs the device id */
        ferry_strlcpy(o->device_id, ss.device_id, sizeof o->device_id);
        return start_agents(o, err, err_len);
    }
    int want_reboot = 0;
    for (size_t i = 0; i < o->cfg->n_components; i++) {
        if (!o->agents[i])
            continue;
        struct ota_status st;
        ota_agent_status(o->agents[i], &st);
        ferry_strlcpy(o->running[i], st.running_version, sizeof o->running[i]);
        ferry_strlcpy(o->target[i], st.target_version, sizeof o->target[i]);
        if (strcmp(st.state, "installed") == 0) {
            want_reboot = 1; /* into the new slot */
        } else if (strcmp(st.state, "trial") == 0 && crash_loops(o, st.target_version)) {
            want_reboot = 1; /* the new version crashes: the watchdog reboots */
            o->crashes++;
        } else if (strcmp(st.state, "rolled_back") == 0 && strcmp(o->seen_state[i], "trial") == 0) {
            want_reboot = 1; /* a failed trial: back into the good slot */
        }
        ferry_strlcpy(o->seen_state[i], st.state, sizeof o->seen_state[i]);
    }
    if (want_reboot)
        reboot(o, now_ms);
    return 0;
}

int fleet_ota_rebooting(const struct fleet_ota_device *o, int64_t now_ms)
{
    return o->down_until_ms != 0 && now_ms < o->down_until_ms;
}

double fleet_ota_fps_factor(const struct fleet_ota_device *o)
{
    double factor = 1.0;
    for (size_t i = 0; i < o->cfg->n_components; i++) {
        const char *v = o->running[i];
        if (o->agents[i]) {
            struct ota_status st;
            ota_agent_status(o->agents[i], &st);
            /* during the trial the new slot (or file) is what runs */
            if (strcmp(st.state, "trial") == 0) {
                const struct fleet_ota_rule *r =
                    find_rule(o->cfg->fps, o->cfg->n_fps, st.target_version);
                factor *= r ? r->value : 1.0;
                continue;
            }
        }
        const struct fleet_ota_rule *r = find_rule(o->cfg->fps, o->cfg->n_fps, v);
        if (r)
            factor *= r->value;
    }
    return factor;
}

void fleet_ota_observe(struct fleet_ota_device *o, const struct record *r)
{
    for (size_t i = 0; i < o->cfg->n_components; i++)
        if (o->agents[i])
            ota_agent_observe(o->agents[i], r);
}

void fleet_ota_component(const struct fleet_ota_device *o, size_t i, char state[24],
                         char running[65], char target[65])
{
    ferry_strlcpy(running, o->running[i], 65);
    ferry_strlcpy(target, o->target[i], 65);
    if (o->agents[i]) {
        struct ota_status st;
        ota_agent_status(o->agents[i], &st);
        ferry_strlcpy(state, st.state, 24);
    } else {
        ferry_strlcpy(state, o->down_until_ms ? "rebooting" : "", 24);
    }
}

void fleet_ota_device_free(struct fleet_ota_device *o)
{
    if (!o->cfg)
        return;
    stop_agents(o);
    http_client_free(o->http);
    o->http = NULL;
}
