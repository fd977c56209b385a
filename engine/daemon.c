/*
 * daemon.c - ferryd's wiring: config, journal, waiter, sync engine, inputs, signals, systemd.
 *
 * States (d->state), each with the function behind its transitions:
 *
 *   STARTING --ferryd_new() succeeded, READY=1 sent-------------------> RUNNING
 *   RUNNING  --SIGTERM/SIGINT: begin_stop() (STOPPING=1, inputs closed)--> DRAINING
 *   DRAINING --on_drain_tick(): no request pending, or FERRYD_DRAIN_MAX_MS--> loop exits
 *   DRAINING --second SIGTERM/SIGINT--------------------------------------> loop exits at once
 *   (any)    --ferryd_free(): stop event, sync_free, durable_free, inputs, journal_close
 *
 * Invariants:
 *  1. Teardown order is fixed by ownership of callbacks: durable_free() (which answers the last
 *     writes) runs before the HTTP listener is freed, and everything that appends runs before
 *     journal_close().
 *  2. Nothing here blocks the loop on the network. Appending ferryd's own events may wait for
 *     queue space (rare, small), never for a commit.
 */
#include "engine/daemon.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "engine/collect/collect.h"
#include "engine/config.h"
#include "engine/durable.h"
#include "engine/http_input.h"
#include "engine/input.h"
#include "engine/line_input.h"
#include "engine/status.h"
#include "journal/journal.h"
#include "engine/sync.h"
#include "engine/action/agent.h"
#include "engine/ota/ota.h"
#include "transport/http_client.h"

#ifndef FERRY_VERSION
#define FERRY_VERSION "0"
#endif

#define MAINTENANCE_INTERVAL_S 10
#define DRAIN_TICK_MS 10

enum ferryd_state { FERRYD_STARTING, FERRYD_RUNNING, FERRYD_DRAINING };

struct ferryd {
    enum ferryd_state state;
    struct ferryd_config cfg;
    char *config_path; /* NULL: built-in defaults */
    char *data_dir_override;
    struct event_base *base;
    struct journal *journal;
    struct durable *durable;
    struct sync *sync;
    bool collected_waiting, collected_again; /* on_collected(): a durable wait is out / wanted */
    struct http_input *http;
    struct line_input *udp;
    struct line_input *unix_in;
    struct collect_set *collect;          /* built-in collectors: [collect.*] */
    struct tail *tails[FERRYD_MAX_TAILS]; /* [input.tail.NAME] */
    size_t n_tails;
    struct scrape *scrapes[FERRYD_MAX_SCRAPES]; /* [input.prometheus.NAME] */
    size_t n_scrapes;
    struct journald *journalds[FERRYD_MAX_JOURNALDS]; /* [input.journald.NAME] */
    size_t n_journalds;
    unsigned inventory_ticks;
    struct event *sig_term, *sig_int, *sig_hup;
    struct event *watchdog_timer, *maintenance_timer, *drain_timer;
    int64_t drain_started_ms;
    const char *stop_reason;
    uint64_t last_gap_event_id;
    struct status_sources status;
    char addr_file[PATH_MAX];
    bool addr_file_written;
    /* The OTA agent starts once the device has an id (after enrollment); its configuration
     * strings are copies in `ota_strings`, so a SIGHUP that replaces d->cfg cannot pull them
     * from under it. */
    struct event *ota_timer;
    struct http_client *ota_http;
    struct ota_agent *ota[FERRYD_MAX_COMPONENTS]; /* one per component ([update.NAME]) */
    size_t n_ota;
    bool ota_failed;
    char *ota_strings[FERRYD_MAX_COMPONENTS * 24]; /* every string the agents keep (<= 20 each) */
    size_t n_ota_strings;
    uint8_t release_keys[FERRYD_MAX_RELEASE_KEYS][32];
    const char *health_commands[FERRYD_MAX_COMPONENTS][1];
    /* Device actions ([actions], engine/action/agent.h): started like the OTA agent once the
     * device has an id, with copies of its configuration strings. */
    struct event *actions_timer;
    struct http_client *actions_http;
    struct action_agent *actions;
    bool actions_failed;
    char *actions_strings[10];
    size_t n_actions_strings;
    uint8_t action_keys[FERRYD_MAX_ACTION_KEYS][32];
};

/* ---- Own events ------------------------------------------------------------------------- */

static void on_collected(void *arg);

/* Appends one of ferryd's own events (string fields as key/value pairs). Logs failures. */
static void append_event(struct ferryd *d, const char *type, const char *message,
                         const char *const *kv, size_t n_pairs)
{
    struct ferry_buf b = FERRY_BUF_INIT;
    int64_t now = ferry_realtime_ns();
    int rc = input_pack_event(type, message, now, kv, n_pairs, &b);
    if (rc != 0) {
        log_error("ferryd", "event %s: cannot pack: %s", type, record_strerror(rc));
        goto out;
    }
    /* Flags 0: may wait for queue space (a rare, short wait), never for the commit. */
    rc = journal_append(d->journal, RECORD_EVENT, now, b.data, b.len, 0, NULL);
    if (rc != 0) {
        log_error("ferryd", "event %s: journal: %s", type, journal_strerror(rc));
        goto out;
    }
    d->status.events_appended++;
    on_collected(d); /* the sync engine is woken once the event is durable (see there) */
out:
    ferry_buf_free(&b);
}

/* The journal's encoder for the events it appends about itself ("journal.recovered"). */
static int encode_journal_event(void *arg, const char *event_type, const char *message,
                                int64_t ts_ns, uint8_t *out, size_t cap, size_t *out_len)
{
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = input_pack_event(event_type, message, ts_ns, NULL, 0, &b);
    if (rc == 0 && b.len <= cap) {
        memcpy(out, b.data, b.len);
        *out_len = b.len;
    } else {
        rc = -1;
    }
    ferry_buf_free(&b);
    return rc;
}

/* Emits a "journal.gap" event for every gap not seen before (maintenance timer). Gaps stay in
 * the journal until the sync engine reports them; this only makes the loss visible locally and
 * in the event stream. After a restart a still-unreported gap is announced again. */
static void announce_gaps(struct ferryd *d)
{
    struct journal_gap gaps[32];
    size_t n = 0;
    /* journal_gaps() waits for a commit in progress (its snapshot must hold every committed
     * gap), and this timer fires with the collection round that has just queued one: ask the
     * lock-free snapshot first, so the loop sleeps on no disk sync (the idle wake-up budget). */
    uint64_t newest = 0;
    if (journal_gaps_newest_id(d->journal, &newest) != 0 || newest <= d->last_gap_event_id)
        return;
    if (journal_gaps(d->journal, gaps, 32, &n) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        const struct journal_gap *g = &gaps[i];
        if (g->id <= d->last_gap_event_id)
            continue;
        d->last_gap_event_id = g->id;
        char first[24], last[24], msg[160];
        snprintf(first, sizeof first, "%llu", (unsigned long long)g->first);
        snprintf(last, sizeof last, "%llu", (unsigned long long)g->last);
        snprintf(msg, sizeof msg, "%llu %s record(s) lost: %s",
                 (unsigned long long)(g->last - g->first + 1), record_stream_name(g->stream),
                 journal_gap_reason_name(g->reason));
        const char *kv[] = {
            "stream", record_stream_name(g->stream),     "first", first, "last", last,
            "reason", journal_gap_reason_name(g->reason)};
        log_warn("ferryd", "journal gap: %s, sequences %s..%s", msg, first, last);
        append_event(d, "journal.gap", msg, kv, 4);
    }
}

/* ---- Callbacks the inputs and the status page use ---------------------------------------- */

static void on_records_durable(void *arg)
{
    struct ferryd *d = arg;
    if (d->sync)
        sync_wake(d->sync);
}

/*
 * Records a collector (built-in collectors, tail, scrape, journald) or ferryd itself (its own
 * events: versions, inventory, journal gaps) queued without waiting for their commit. The sync
 * engine reads committed records only: woken now it would find nothing new and sleep until its next
 * timer (a tailed file's last lines then waited minutes). So it is woken once they are durable,
 * through the durable helper; one wait is outstanding at a time, and appends meanwhile arm the next
 * one when it ends.
 */
static void collected_durable(void *arg, int journal_err);

static void arm_collected_wait(struct ferryd *d)
{
    struct durable_point p[RECORD_STREAM_COUNT];
    size_t n = 0;
    /* The last sequence *assigned* per stream, not journal_stats()' committed next_seq: that
     * one is behind while the records just queued wait for their commit, and waiting for it
     * woke the engine before they were readable (found by an own event that stayed unsent). */
    for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
        uint64_t last = journal_last_assigned(d->journal, (enum record_stream)st);
        if (last > 0)
            p[n++] = (struct durable_point){(enum record_stream)st, last};
    }
    if (n == 0 || durable_wait(d->durable, p, n, collected_durable, d) != 0) {
        sync_wake(d->sync); /* cannot wait: wake now, the engine's timers do the rest */
        return;
    }
    d->collected_waiting = true;
}

static void collected_durable(void *arg, int journal_err)
{
    struct ferryd *d = arg;
    (void)journal_err; /* a failed commit is reported by the collector's own append */
    d->collected_waiting = false;
    if (!d->sync)
        return;
    sync_wake(d->sync);
    if (d->collected_again) {
        d->collected_again = false;
        arm_collected_wait(d);
    }
}

static void on_collected(void *arg)
{
    struct ferryd *d = arg;
    if (!d->sync || !d->durable)
        return;
    /* No server, or a backoff that outlasts the commit: the wake-up would find nothing to do,
     * and the engine's own timer reads what is committed when it can send. */
    if (!sync_wants_commit_wake(d->sync))
        return;
    if (d->collected_waiting) {
        d->collected_again = true;
        return;
    }
    arm_collected_wait(d);
}

/* The OTA agent committed an ota.* event (it waits for the commit itself): wake the engine. */
static void on_ota_appended(void *arg)
{
    struct ferryd *d = arg;
    if (d->sync)
        sync_wake(d->sync);
}

/* Every metric record an input accepts: the OTA agent's health gates watch them (loop thread). */
static void observe_record(void *arg, const struct record *r)
{
    struct ferryd *d = arg;
    for (size_t i = 0; i < d->n_ota; i++)
        ota_agent_observe(d->ota[i], r);
}

static int render_status(void *arg, bool prometheus, struct ferry_buf *out)
{
    struct ferryd *d = arg;
    return prometheus ? status_render_prometheus(&d->status, out)
                      : status_render_json(&d->status, out);
}

/* ---- OTA agent --------------------------------------------------------------------------- */

/* Keeps a copy of a config string for the agent's lifetime; NULL for "" (means "not set"). */
static const char *ota_keep(struct ferryd *d, const char *s, bool empty_is_null)
{
    if (!s || (empty_is_null && !s[0]))
        return NULL;
    if (d->n_ota_strings == sizeof d->ota_strings / sizeof d->ota_strings[0]) {
        log_error("ferryd", "update: too many [update] strings kept; \"%s\" ignored", s);
        return NULL;
    }
    char *copy = strdup(s);
    if (copy)
        d->ota_strings[d->n_ota_strings++] = copy;
    return copy;
}

_Static_assert(FERRYD_MAX_COMPONENTS == STATUS_MAX_OTA, "one status slot per component");

/* Starts one component's agent. Returns 0 or -1 (logged). */
static int start_component(struct ferryd *d, const struct ferryd_update_effective *e,
                           const char *device_id, size_t n_keys)
{
    const struct ferryd_config *c = &d->cfg;
    struct ota_config oc;
    memset(&oc, 0, sizeof oc);
    char slot_dir[PATH_MAX];
    bool file = e->install_path[0] != 0;
    if (!file && ferryd_config_path(c, e->slot_dir, slot_dir, sizeof slot_dir) != 0) {
        log_error("ferryd", "update: %s: slot_dir too long", e->component);
        return -1;
    }
    size_t i = d->n_ota;
    oc.data_dir = ota_keep(d, c->data_dir, false);
    oc.server_url = ota_keep(d, c->server_url, false);
    oc.device_id = ota_keep(d, device_id, false);
    oc.device_class = ota_keep(d, c->device_class, false);
    oc.component = ota_keep(d, e->component, true);
    oc.ca_file = ota_keep(d, c->ca_file, true);
    oc.pinned_public_key = ota_keep(d, c->pinned_public_key, true);
    oc.release_keys = (const uint8_t(*)[32])d->release_keys;
    oc.n_release_keys = n_keys;
    oc.install_path = ota_keep(d, e->install_path, true);
    if (!file) {
        oc.slots.backend = ota_keep(d, e->slot_backend, false);
        oc.slots.dir = ota_keep(d, slot_dir, false);
        oc.slots.cmd_current = ota_keep(d, e->cmd_current, true);
        oc.slots.cmd_set_next = ota_keep(d, e->cmd_set_next, true);
        oc.slots.cmd_mark_good = ota_keep(d, e->cmd_mark_good, true);
        oc.slots.cmd_rollback = ota_keep(d, e->cmd_rollback, true);
        oc.slots.slot_path = ota_keep(d, e->slot_path, true);
        if (ferry_mkdir_p(slot_dir, 0700) != 0)
            log_warn("ferryd", "update: cannot create %s", slot_dir);
    }
    oc.check_interval_ms = e->check_interval_ms;
    oc.max_bytes_per_s = c->update_max_download_bytes_per_s;
    int policy = ota_metered_policy_parse(c->update_metered_policy); /* validated on load */
    oc.metered_policy = policy < 0 ? OTA_METERED_ALLOW : (enum ota_metered_policy)policy;
    oc.metered_interfaces = ota_keep(d, c->update_metered_interfaces, true);
    oc.metered_max_bytes_per_s = c->update_metered_max_download_bytes_per_s;
    d->health_commands[i][0] = ota_keep(d, e->health_command, true);
    oc.health_gates = ota_keep(d, e->health_gates, true);
    oc.health_commands = d->health_commands[i];
    oc.n_health_commands = d->health_commands[i][0] ? 1 : 0;
    oc.health_timeout_ms = e->health_timeout_ms;
    oc.trial_deadline_ms = e->trial_deadline_ms;
    oc.reboot_command = ota_keep(d, e->reboot_command, true);
    oc.initial_version = ota_keep(d, e->initial_version, true);
    oc.sign_request = sync_sign_request; /* manifest and artifact GETs signed by the device key */
    oc.sign_arg = d->sync;
    oc.appended = on_ota_appended;
    oc.appended_arg = d;
    char err[256] = "";
    int rc = ota_agent_new(d->base, d->ota_http, d->journal, &oc, &d->ota[i], err, sizeof err);
    if (rc != 0) {
        log_error("ferryd", "update: the OTA agent of %s did not start (%d: %s)", e->component, rc,
                  err);
        return -1;
    }
    d->n_ota++;
    struct ota_status os;
    ota_agent_status(d->ota[i], &os);
    log_info("ferryd", "update: OTA agent of %s started (state %s, running %s%s%s)", e->component,
             os.state, os.running_version, file ? ", file " : "", file ? e->install_path : "");
    return 0;
}

/* Starts the agents (one per component) when updates are enabled and the device id is known.
 * Loop thread. */
static void maybe_start_ota(struct ferryd *d)
{
    if (!d->cfg.update_enabled || d->n_ota || d->ota_failed || !d->sync)
        return;
    struct sync_status ss;
    sync_get_status(d->sync, &ss);
    if (!ss.enrolled || !ss.device_id[0])
        return; /* the manifest URL needs the device id: try again on the next tick */
    const struct ferryd_config *c = &d->cfg;
    size_t n_keys = 0;
    if (ferryd_config_release_keys(c, d->release_keys, FERRYD_MAX_RELEASE_KEYS, &n_keys) != 0) {
        log_error("ferryd", "update: invalid [update] release_keys; updates off");
        d->ota_failed = true;
        return;
    }
    d->ota_http = http_client_new(d->base);
    if (!d->ota_http) {
        log_error("ferryd", "update: out of memory; updates off until restart");
        d->ota_failed = true;
        return;
    }
    struct ferryd_update_effective comps[FERRYD_MAX_COMPONENTS];
    size_t n = ferryd_config_components(c, comps);
    for (size_t i = 0; i < n; i++)
        if (start_component(d, &comps[i], ss.device_id, n_keys) != 0)
            d->ota_failed = true; /* the others run; this one stays off until restart */
    for (size_t i = 0; i < d->n_ota; i++)
        d->status.ota[i] = d->ota[i];
    d->status.n_ota = d->n_ota;
    event_del(d->ota_timer);
    /* The ingest merges "versions" events per key (docs/ingest.md), so this one adds each
     * component's running version next to the ferryd version reported at start. */
    const char *kv[2 * FERRYD_MAX_COMPONENTS];
    struct ota_status os[FERRYD_MAX_COMPONENTS];
    size_t pairs = 0;
    for (size_t i = 0; i < d->n_ota; i++) {
        ota_agent_status(d->ota[i], &os[i]);
        if (!os[i].running_version[0])
            continue;
        kv[2 * pairs] = ota_agent_component(d->ota[i]);
        kv[2 * pairs + 1] = os[i].running_version;
        pairs++;
    }
    if (pairs)
        append_event(d, "versions", "versions running", kv, pairs);
}

static void on_ota_timer(evutil_socket_t fd, short what, void *arg)
{
    maybe_start_ota(arg);
}

static const char *actions_keep(struct ferryd *d, const char *s)
{
    if (!s || d->n_actions_strings == sizeof d->actions_strings / sizeof d->actions_strings[0])
        return NULL;
    char *copy = strdup(s);
    if (copy)
        d->actions_strings[d->n_actions_strings++] = copy;
    return copy;
}

static void wake_sync(void *arg)
{
    struct ferryd *d = arg;
    if (d->sync)
        sync_wake(d->sync);
}

/* [actions] commands and the lines of commands_file as one ';'-separated list (malloc'd), or
 * NULL with a message logged. */
static char *action_commands(const struct ferryd_config *c)
{
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = ferry_buf_append(&b, c->actions_commands, strlen(c->actions_commands));
    if (rc == 0 && c->actions_commands_file[0]) {
        char path[PATH_MAX];
        uint8_t *data = NULL;
        size_t len = 0;
        if (ferryd_config_path(c, c->actions_commands_file, path, sizeof path) != 0 ||
            ferry_read_file(path, 64 * 1024, &data, &len) != 0) {
            log_error("ferryd", "actions: cannot read [actions] commands_file %s (at most 64 KiB)",
                      c->actions_commands_file);
            ferry_buf_free(&b);
            return NULL;
        }
        unsigned line = 0;
        for (char *p = (char *)data, *nl; rc == 0 && p < (char *)data + len; p = nl + 1) {
            nl = memchr(p, '\n', len - (size_t)(p - (char *)data));
            if (nl == NULL)
                nl = (char *)data + len;
            line++;
            size_t n = (size_t)(nl - p);
            while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
                n--;
            while (n > 0 && (*p == ' ' || *p == '\t')) {
                p++;
                n--;
            }
            if (n == 0 || *p == '#')
                continue;
            if (memchr(p, ';', n) != NULL) {
                log_error("ferryd", "actions: %s:%u: a command line must not hold ';'", path, line);
                rc = -1;
                break;
            }
            rc = ferry_buf_append(&b, ";", 1) != 0 || ferry_buf_append(&b, p, n) != 0 ? -1 : 0;
        }
        free(data);
    }
    if (rc != 0 || ferry_buf_append(&b, "", 1) != 0) {
        ferry_buf_free(&b);
        return NULL;
    }
    return (char *)b.data; /* a ferry_buf's data is malloc'd: free() releases it */
}

static void maybe_start_actions(struct ferryd *d)
{
    if (!d->cfg.actions_keys[0] || d->actions || d->actions_failed || !d->sync ||
        !d->cfg.server_url[0])
        return;
    struct sync_status ss;
    sync_get_status(d->sync, &ss);
    if (!ss.enrolled || !ss.device_id[0])
        return; /* the actions URL needs the device id: the timer tries again */
    const struct ferryd_config *c = &d->cfg;
    struct action_agent_config ac;
    memset(&ac, 0, sizeof ac);
    size_t n_keys = 0;
    if (ferryd_config_action_keys(c, d->action_keys, FERRYD_MAX_ACTION_KEYS, &n_keys) != 0) {
        d->actions_failed = true; /* checked on load: cannot happen */
        return;
    }
    ac.server_url = actions_keep(d, c->server_url);
    ac.device_id = actions_keep(d, ss.device_id);
    ac.ca_file = c->ca_file[0] ? actions_keep(d, c->ca_file) : NULL;
    ac.pinned_public_key = c->pinned_public_key[0] ? actions_keep(d, c->pinned_public_key) : NULL;
    ac.keys = (const uint8_t(*)[32])d->action_keys;
    ac.n_keys = n_keys;
    ac.units = actions_keep(d, c->actions_units);
    char *commands = action_commands(c);
    ac.commands = commands ? actions_keep(d, commands) : NULL;
    free(commands);
    ac.restart_command = actions_keep(d, c->actions_restart_command);
    ac.reboot_command = actions_keep(d, c->actions_reboot_command);
    ac.poll_interval_ms = c->actions_poll_interval_ms;
    ac.timeout_ms = c->actions_timeout_ms;
    ac.output_max = (size_t)c->actions_output_max_bytes;
    ac.sign_request = sync_sign_request;
    ac.sign_arg = d->sync;
    ac.wake = wake_sync;
    ac.wake_arg = d;
    char err[256] = "";
    d->actions_http = http_client_new(d->base);
    if (!d->actions_http || !ac.server_url || !ac.device_id || !ac.units || !ac.commands ||
        !ac.restart_command || !ac.reboot_command ||
        action_agent_new(d->base, d->actions_http, d->journal, &ac, &d->actions, err, sizeof err) !=
            0) {
        log_error("ferryd", "actions: the agent did not start (%s); actions off until restart",
                  err[0] ? err : "out of memory");
        d->actions_failed = true;
        return;
    }
    event_del(d->actions_timer);
    log_info("ferryd", "actions: agent started (%zu trusted key%s, poll every %lld ms)", n_keys,
             n_keys == 1 ? "" : "s", (long long)ac.poll_interval_ms);
}

static void on_actions_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maybe_start_actions(arg);
}

static void free_actions(struct ferryd *d)
{
    action_agent_free(d->actions);
    d->actions = NULL;
    http_client_free(d->actions_http);
    d->actions_http = NULL;
    if (d->actions_timer)
        event_free(d->actions_timer);
    d->actions_timer = NULL;
    for (size_t i = 0; i < d->n_actions_strings; i++)
        free(d->actions_strings[i]);
    d->n_actions_strings = 0;
}

static void free_ota(struct ferryd *d)
{
    for (size_t i = 0; i < d->n_ota; i++) {
        ota_agent_free(d->ota[i]);
        d->ota[i] = NULL;
        d->status.ota[i] = NULL;
    }
    d->n_ota = 0;
    d->status.n_ota = 0;
    http_client_free(d->ota_http);
    d->ota_http = NULL;
    if (d->ota_timer)
        event_free(d->ota_timer);
    d->ota_timer = NULL;
    for (size_t i = 0; i < d->n_ota_strings; i++)
        free(d->ota_strings[i]);
    d->n_ota_strings = 0;
}

/* ---- Timers and signals ------------------------------------------------------------------ */

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    /* The timer runs on the loop, so a keep-alive proves the loop turns. */
    sd_notify(0, "WATCHDOG=1");
}

#define INVENTORY_KEY "inventory/fingerprint"
#define INVENTORY_CHECK_TICKS 60 /* maintenance ticks (10 s) between inventory checks */

/* Appends an `inventory` event when what the device is differs from the last one announced
 * (the fingerprint in the state table, written with the event in one transaction). */
static void check_inventory(struct ferryd *d)
{
    struct inventory inv;
    inventory_collect(d->cfg.collect_root, d->cfg.data_dir, FERRY_VERSION, &inv);
    uint64_t fp = inventory_fingerprint(&inv), old = 0;
    size_t got = 0;
    if (journal_state_get(d->journal, INVENTORY_KEY, strlen(INVENTORY_KEY), &old, sizeof old,
                          &got) == 0 &&
        got == sizeof old && old == fp)
        return;
    const char *kv[2 * INVENTORY_FIELDS];
    size_t n = inventory_kv(&inv, kv);
    struct ferry_buf b = FERRY_BUF_INIT;
    int64_t now = ferry_realtime_ns();
    if (input_pack_event("inventory", "device inventory", now, kv, n, &b) != 0) {
        log_error("ferryd", "inventory: cannot pack the event");
        ferry_buf_free(&b);
        return;
    }
    struct journal_state_op op = {INVENTORY_KEY, strlen(INVENTORY_KEY), &fp, sizeof fp, false};
    int rc = journal_append_event_with_state(d->journal, now, b.data, b.len, &op, 1, 0, NULL);
    ferry_buf_free(&b);
    if (rc != 0) {
        log_error("ferryd", "inventory: journal: %s", journal_strerror(rc));
        return;
    }
    d->status.events_appended++;
    log_info("ferryd", "inventory: %s, %s%s%s, kernel %s", inv.hostname,
             inv.model[0] ? inv.model : "no device-tree model", inv.l4t[0] ? ", L4T " : "", inv.l4t,
             inv.kernel);
    on_collected(d);
}

/* The maintenance tick is on the grid of its interval (ferry_us_to_grid), like the collection
 * rounds: with the default 10 s rounds both run in the same wake-up. */
static int arm_maintenance(struct ferryd *d)
{
    (void)event_base_update_cache_time(d->base); /* the deadline counts from now, not the wake */
    int64_t us = ferry_us_to_grid(MAINTENANCE_INTERVAL_S * 1000);
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    return event_add(d->maintenance_timer, &tv);
}

static void on_maintenance(evutil_socket_t fd, short what, void *arg)
{
    struct ferryd *d = arg;
    (void)arm_maintenance(d);
    announce_gaps(d);
    if (++d->inventory_ticks >= INVENTORY_CHECK_TICKS) {
        d->inventory_ticks = 0;
        check_inventory(d);
    }
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct ferryd *d = arg;
    size_t pending = (d->http ? http_input_pending(d->http) : 0) + durable_pending(d->durable);
    long long waited = ferry_monotonic_ms() - d->drain_started_ms;
    if (pending && waited < FERRYD_DRAIN_MAX_MS)
        return;
    if (pending)
        log_warn("ferryd", "stopping with %zu request(s) unanswered after %lld ms", pending,
                 waited);
    event_del(d->drain_timer);
    /* A short grace period lets the last replies leave their socket buffers. */
    struct timeval grace = {0, 50000};
    event_base_loopexit(d->base, &grace);
}

static void begin_stop(struct ferryd *d, const char *reason)
{
    if (d->state == FERRYD_DRAINING) {
        log_warn("ferryd", "%s again: stopping without waiting", reason);
        event_base_loopexit(d->base, NULL);
        return;
    }
    d->state = FERRYD_DRAINING;
    d->stop_reason = reason;
    log_info("ferryd", "%s: stopping (answering pending writes first)", reason);
    sd_notify(0, "STOPPING=1\nSTATUS=stopping");
    if (d->http)
        http_input_stop_accepting(d->http);
    if (d->udp)
        line_input_stop(d->udp);
    if (d->unix_in)
        line_input_stop(d->unix_in);
    d->drain_started_ms = ferry_monotonic_ms();
    struct timeval tick = {0, DRAIN_TICK_MS * 1000};
    event_add(d->drain_timer, &tick);
}

static void fill_sync_config(const struct ferryd_config *c, struct sync_config *sc)
{
    sync_config_init(sc);
    sc->data_dir = c->data_dir;
    sc->server_url = c->server_url;
    sc->enroll_token = c->enroll_token;
    sc->ca_file = c->ca_file;
    sc->pinned_public_key = c->pinned_public_key;
    sc->device_name = c->device_name;
    sc->device_class = c->device_class;
    for (int s = 0; s < RECORD_STREAM_COUNT; s++) {
        sc->latency_ms[s] = c->latency_ms[s];
        sc->threshold_bytes[s] = c->threshold_bytes[s];
    }
    sc->max_batch_bytes = c->max_batch_bytes;
    sc->min_batch_bytes = c->min_batch_bytes;
    sc->heartbeat_ms = c->heartbeat_ms;
    sc->backoff_min_ms = c->backoff_min_ms;
    sc->backoff_max_ms = c->backoff_max_ms;
    sc->request_deadline_ms = c->request_deadline_ms;
    sc->low_speed_bytes_per_s = (long)c->low_speed_bytes_per_s;
    sc->low_speed_time_s = (long)(c->low_speed_time_ms / 1000);
    sc->max_in_flight = (unsigned)c->max_in_flight;
    sc->zstd_level = (int)c->zstd_level;
    sc->no_netlink = !c->netlink;
}

struct reload_diff {
    struct ferry_buf applied;
    struct ferry_buf restart;
};

static void on_key_changed(const char *section, const char *key, bool reloadable, void *arg)
{
    struct reload_diff *rd = arg;
    struct ferry_buf *b = reloadable ? &rd->applied : &rd->restart;
    if (ferry_buf_printf(b, "%s%s.%s", b->len ? " " : "", section, key) != 0)
        return; /* the description is best effort */
}

static void reload(struct ferryd *d)
{
    if (!d->config_path) {
        log_info("ferryd", "SIGHUP: running on built-in defaults, nothing to reload");
        return;
    }
    struct ferryd_config fresh;
    char err[512];
    int rc = ferryd_config_load(d->config_path, &fresh, err, sizeof err);
    if (rc != 0) {
        log_error("ferryd", "SIGHUP: %s; keeping the running configuration", err);
        const char *kv[] = {"error", err};
        append_event(d, "ferryd.config_error", "configuration reload failed", kv, 1);
        return;
    }
    if (d->data_dir_override) {
        char *dd = strdup(d->data_dir_override);
        if (dd) {
            free(fresh.data_dir);
            fresh.data_dir = dd;
        }
    }
    struct reload_diff rd = {FERRY_BUF_INIT, FERRY_BUF_INIT};
    int n = ferryd_config_diff(&d->cfg, &fresh, on_key_changed, &rd);
    if (n == 0) {
        log_info("ferryd", "SIGHUP: %s unchanged", d->config_path);
        ferryd_config_free(&fresh);
        goto out;
    }
    if (d->sync) {
        struct sync_config sc;
        fill_sync_config(&fresh, &sc);
        char serr[256] = "";
        if (sync_reload(d->sync, &sc, serr, sizeof serr) != 0) {
            log_error("ferryd",
                      "SIGHUP: sync engine refused the new [sync] values: %s; keeping "
                      "the running configuration",
                      serr);
            ferryd_config_free(&fresh);
            goto out;
        }
    }
    ferry_log_init(fresh.log_level, 2);
    if (d->http)
        http_input_set_max_body(d->http, fresh.http_max_body_bytes);
    if (ferry_buf_append_u8(&rd.applied, 0) != 0 || ferry_buf_append_u8(&rd.restart, 0) != 0) {
        ferryd_config_free(&fresh);
        goto out;
    }
    const char *applied = (const char *)rd.applied.data;
    const char *restart = (const char *)rd.restart.data;
    log_info("ferryd", "SIGHUP: reloaded %s: applied [%s]%s%s%s", d->config_path, applied,
             restart[0] ? "; changed but need a restart: [" : "", restart, restart[0] ? "]" : "");
    const char *kv[] = {"applied", applied, "restart_needed", restart};
    append_event(d, "ferryd.config_changed", "configuration reloaded", kv, 2);
    /* d->cfg now holds the file's values; keys that need a restart were logged above and
     * keep their old effect (the journal, the sockets) until then. */
    ferryd_config_free(&d->cfg);
    d->cfg = fresh;
out:
    ferry_buf_free(&rd.applied);
    ferry_buf_free(&rd.restart);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct ferryd *d = arg;
    if (sig == SIGHUP)
        reload(d);
    else
        begin_stop(d, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- Setup ------------------------------------------------------------------------------- */

static int write_addr_file(struct ferryd *d)
{
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = ferry_buf_printf(&b, "pid=%d\nhttp=%s\nudp=%s\nunix=%s\n", (int)getpid(),
                              d->http ? http_input_address(d->http) : "",
                              d->udp ? line_input_address(d->udp) : "",
                              d->unix_in ? line_input_address(d->unix_in) : "");
    if (rc == 0)
        rc = ferry_write_file_atomic(d->addr_file, b.data, b.len, 0644);
    ferry_buf_free(&b);
    if (rc == 0)
        d->addr_file_written = true;
    return rc;
}

static int open_journal(struct ferryd *d, char *errbuf, size_t errlen)
{
    struct journal_config jc;
    journal_config_init(&jc);
    jc.quota_bytes = d->cfg.journal_quota_bytes;
    jc.durability = (enum journal_durability)d->cfg.journal_durability;
    jc.group_window_us = (uint32_t)d->cfg.journal_group_window_us;
    jc.sync_interval_ms = (uint32_t)d->cfg.journal_sync_interval_ms;
    jc.keep_acked_metrics_ms = d->cfg.journal_keep_acked_metrics_ms;
    jc.encode_event = encode_journal_event;
    jc.encode_event_arg = d;
    struct journal_open_info info;
    memset(&info, 0, sizeof info);
    char jerr[512] = "";
    int rc = journal_open(d->cfg.data_dir, &jc, &d->journal, &info, jerr, sizeof jerr);
    if (rc == JOURNAL_EBUSY) {
        snprintf(errbuf, errlen, "journal %s: another process (another ferryd?) writes it",
                 d->cfg.data_dir);
        return FERRYD_EXIT_FAILURE;
    }
    if (rc != 0) {
        snprintf(errbuf, errlen, "journal %s: %s: %s", d->cfg.data_dir, journal_strerror(rc), jerr);
        return FERRYD_EXIT_FAILURE;
    }
    if (info.created)
        log_info("ferryd", "journal created in %s", d->cfg.data_dir);
    if (info.recovered)
        log_warn("ferryd", "journal was damaged (%s); moved to %s and started afresh%s",
                 info.reason, info.moved_to,
                 info.recovery_event_appended ? " (event journal.recovered appended)" : "");
    return 0;
}

static int start_inputs(struct ferryd *d, char *errbuf, size_t errlen)
{
    if (d->cfg.listen_http[0]) {
        struct http_input_deps hd = {d->base,
                                     d->journal,
                                     d->durable,
                                     d->cfg.http_max_body_bytes,
                                     on_records_durable,
                                     render_status,
                                     observe_record,
                                     d};
        if (http_input_new(&hd, d->cfg.listen_http, &d->http, errbuf, errlen) != 0)
            return FERRYD_EXIT_FAILURE;
    }
    struct line_input_deps ld = {d->base,        d->journal, d->durable, on_records_durable,
                                 observe_record, d};
    if (d->cfg.listen_udp[0] &&
        line_input_udp_new(&ld, d->cfg.listen_udp, &d->udp, errbuf, errlen) != 0)
        return FERRYD_EXIT_FAILURE;
    if (d->cfg.listen_unix[0]) {
        char path[PATH_MAX];
        if (ferryd_config_path(&d->cfg, d->cfg.listen_unix, path, sizeof path) != 0) {
            snprintf(errbuf, errlen, "[listen] unix: path too long");
            return FERRYD_EXIT_FAILURE;
        }
        if (line_input_unix_new(&ld, path, (unsigned)d->cfg.listen_unix_mode, &d->unix_in, errbuf,
                                errlen) != 0)
            return FERRYD_EXIT_FAILURE;
    }
    struct status_sources *s = &d->status;
    if (d->http) {
        s->input_name[0] = "http_write";
        s->input_address[0] = http_input_address(d->http);
        s->input_stats[0] = http_input_write_stats(d->http);
        s->input_name[1] = "http_logs";
        s->input_address[1] = http_input_address(d->http);
        s->input_stats[1] = http_input_logs_stats(d->http);
    }
    if (d->udp) {
        s->input_name[2] = "udp";
        s->input_address[2] = line_input_address(d->udp);
        s->input_stats[2] = line_input_stats(d->udp);
    }
    if (d->unix_in) {
        s->input_name[3] = "unix";
        s->input_address[3] = line_input_address(d->unix_in);
        s->input_stats[3] = line_input_stats(d->unix_in);
    }
    return 0;
}

/* Adds one collector to the set, logging what it is. */
static int add_collector(struct ferryd *d, struct collector *c, char *errbuf, size_t errlen)
{
    char name[sizeof c->name];
    memcpy(name, c->name, sizeof name);
    long long interval_ms = (long long)c->interval_ms;
    int rc = collect_set_add(d->collect, c); /* owns c from here, also on error */
    if (rc != 0) {
        snprintf(errbuf, errlen, "[collect.%s]: %s", name, collect_strerror(rc));
        return FERRYD_EXIT_FAILURE;
    }
    log_info("ferryd", "collector %s: every %lld ms", name, interval_ms);
    return 0;
}

/* The built-in collectors ([collect.*]). A collector that cannot start is a configuration
 * problem when the operator asked for it, and a logged note when it was only auto-detected. */
static int start_collectors(struct ferryd *d, char *errbuf, size_t errlen)
{
    const struct ferryd_config *c = &d->cfg;
    int rc = collect_set_new(d->base, d->journal, on_collected, d, &d->collect);
    if (rc != 0) {
        snprintf(errbuf, errlen, "collectors: %s", collect_strerror(rc));
        return FERRYD_EXIT_FAILURE;
    }
    char cerr[COLLECT_ERRBUF] = "";
    if (c->collect_system_enabled) {
        struct collect_system_opts so = {c->collect_root, c->collect_system_percpu,
                                         c->collect_system_interval_ms};
        struct collector *sys = NULL;
        rc = collect_system_new(&so, &sys, cerr, sizeof cerr);
        if (rc != 0) {
            snprintf(errbuf, errlen, "[collect.system]: %s: %s", collect_strerror(rc), cerr);
            return FERRYD_EXIT_FAILURE;
        }
        if ((rc = add_collector(d, sys, errbuf, errlen)) != 0)
            return rc;
    }
    bool jetson_auto = strcmp(c->collect_jetson_enabled, "auto") == 0;
    if (strcmp(c->collect_jetson_enabled, "true") == 0 ||
        (jetson_auto && collect_jetson_detect(c->collect_root))) {
        struct collect_jetson_opts jo = {c->collect_root, c->collect_jetson_interval_ms};
        struct collector *jet = NULL;
        struct ferry_buf missing = FERRY_BUF_INIT;
        rc = collect_jetson_new(&jo, &jet, &missing, cerr, sizeof cerr);
        /* What this Jetson does not have is said once, here, and never looked for again. */
        if (missing.len && ferry_buf_append_u8(&missing, 0) == 0) {
            char *save = NULL;
            for (char *line = strtok_r((char *)missing.data, "\n", &save); line;
                 line = strtok_r(NULL, "\n", &save))
                log_info("ferryd", "collector jetson: skipped: %s", line);
        }
        ferry_buf_free(&missing);
        if (rc != 0 && !jetson_auto) {
            snprintf(errbuf, errlen, "[collect.jetson]: %s: %s", collect_strerror(rc), cerr);
            return FERRYD_EXIT_CONFIG;
        }
        if (rc != 0)
            log_warn("ferryd", "collector jetson: detected but not started: %s: %s",
                     collect_strerror(rc), cerr);
        else if ((rc = add_collector(d, jet, errbuf, errlen)) != 0)
            return rc;
    }
    if (collect_set_start(d->collect) != 0) {
        snprintf(errbuf, errlen, "collectors: cannot register their timers");
        return FERRYD_EXIT_FAILURE;
    }
    for (size_t i = 0; i < c->n_tails; i++) {
        const struct ferryd_tail *ft = &c->tails[i];
        struct tail_opts to = {ft->name,
                               ft->path,
                               ft->source,
                               ft->multiline_start,
                               (size_t)ft->max_line_bytes,
                               ft->from_beginning,
                               ft->parse_level,
                               ft->multiline_flush_ms};
        rc = tail_new(d->base, d->journal, &to, on_collected, d, &d->tails[d->n_tails], cerr,
                      sizeof cerr);
        if (rc != 0) {
            snprintf(errbuf, errlen, "%s", cerr);
            return rc == COLLECT_EINVAL ? FERRYD_EXIT_CONFIG : FERRYD_EXIT_FAILURE;
        }
        d->n_tails++;
        struct tail_stats ts;
        tail_get_stats(d->tails[d->n_tails - 1], &ts);
        log_info("ferryd", "tail %s: %s (%llu file(s) now)", ft->name, ft->path,
                 (unsigned long long)ts.files);
    }
    for (size_t i = 0; i < c->n_scrapes; i++) {
        const struct ferryd_scrape *fs = &c->scrapes[i];
        struct scrape_opts so = {fs->name, fs->url, fs->interval_ms, fs->timeout_ms};
        rc = scrape_new(d->base, d->journal, &so, on_collected, d, &d->scrapes[d->n_scrapes], cerr,
                        sizeof cerr);
        if (rc != 0) {
            snprintf(errbuf, errlen, "%s", cerr);
            return rc == COLLECT_EINVAL ? FERRYD_EXIT_CONFIG : FERRYD_EXIT_FAILURE;
        }
        d->n_scrapes++;
        log_info("ferryd", "prometheus %s: %s every %lld ms", fs->name, fs->url,
                 (long long)fs->interval_ms);
    }
    for (size_t i = 0; i < c->n_journalds; i++) {
        const struct ferryd_journald *fj = &c->journalds[i];
        struct journald_opts jo = {fj->name, fj->directory, fj->units, (int)fj->max_priority,
                                   fj->from_beginning};
        rc = journald_new(d->base, d->journal, &jo, on_collected, d, &d->journalds[d->n_journalds],
                          cerr, sizeof cerr);
        if (rc != 0) {
            snprintf(errbuf, errlen, "%s", cerr);
            return rc == COLLECT_EINVAL ? FERRYD_EXIT_CONFIG : FERRYD_EXIT_FAILURE;
        }
        d->n_journalds++;
        log_info("ferryd", "journald %s: %s%s", fj->name,
                 fj->directory[0] ? fj->directory : "the system journal",
                 fj->units[0] ? " (units filtered)" : "");
    }
    return 0;
}

static int start_timers(struct ferryd *d)
{
    d->sig_term = evsignal_new(d->base, SIGTERM, on_signal, d);
    d->sig_int = evsignal_new(d->base, SIGINT, on_signal, d);
    d->sig_hup = evsignal_new(d->base, SIGHUP, on_signal, d);
    d->maintenance_timer = event_new(d->base, -1, 0, on_maintenance, d);
    d->drain_timer = event_new(d->base, -1, EV_PERSIST, on_drain_tick, d);
    if (!d->sig_term || !d->sig_int || !d->sig_hup || !d->maintenance_timer || !d->drain_timer)
        return -1;
    if (event_add(d->sig_term, NULL) || event_add(d->sig_int, NULL) || event_add(d->sig_hup, NULL))
        return -1;
    if (arm_maintenance(d) != 0)
        return -1;
    if (d->cfg.update_enabled) {
        /* Until the agent runs (it waits for the device id), look once a second. */
        struct timeval ota_tick = {1, 0};
        d->ota_timer = event_new(d->base, -1, EV_PERSIST, on_ota_timer, d);
        if (!d->ota_timer || event_add(d->ota_timer, &ota_tick) != 0)
            return -1;
    }
    if (d->cfg.actions_keys[0]) {
        struct timeval tick = {1, 0};
        d->actions_timer = event_new(d->base, -1, EV_PERSIST, on_actions_timer, d);
        if (!d->actions_timer || event_add(d->actions_timer, &tick) != 0)
            return -1;
    }
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        /* Half the watchdog period, as sd_watchdog_enabled(3) recommends. */
        uint64_t half = usec / 2;
        struct timeval tv = {(time_t)(half / 1000000), (suseconds_t)(half % 1000000)};
        d->watchdog_timer = event_new(d->base, -1, EV_PERSIST, on_watchdog, d);
        if (!d->watchdog_timer || event_add(d->watchdog_timer, &tv) != 0)
            return -1;
        log_info("ferryd", "systemd watchdog: keep-alive every %llu ms",
                 (unsigned long long)(half / 1000));
    }
    return 0;
}

static int load_config(struct ferryd *d, const struct ferryd_options *opts, char *errbuf,
                       size_t errlen)
{
    const char *path = opts->config_path;
    if (!path && access(FERRYD_CONFIG_DEFAULT_PATH, F_OK) == 0)
        path = FERRYD_CONFIG_DEFAULT_PATH;
    if (path) {
        d->config_path = strdup(path);
        if (!d->config_path) {
            snprintf(errbuf, errlen, "out of memory");
            return FERRYD_EXIT_FAILURE;
        }
    }
    if (ferryd_config_load(path, &d->cfg, errbuf, errlen) != 0)
        return FERRYD_EXIT_CONFIG;
    if (opts->data_dir) {
        d->data_dir_override = strdup(opts->data_dir);
        if (!d->data_dir_override) {
            snprintf(errbuf, errlen, "out of memory");
            return FERRYD_EXIT_FAILURE;
        }
        free(d->cfg.data_dir);
        d->cfg.data_dir = strdup(opts->data_dir);
        if (!d->cfg.data_dir) {
            snprintf(errbuf, errlen, "out of memory");
            return FERRYD_EXIT_FAILURE;
        }
    }
    return 0;
}

int ferryd_new(const struct ferryd_options *opts, struct ferryd **out, char *errbuf, size_t errlen)
{
    struct ferryd *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(errbuf, errlen, "out of memory");
        return FERRYD_EXIT_FAILURE;
    }
    d->state = FERRYD_STARTING;
    int rc = load_config(d, opts, errbuf, errlen);
    if (rc != 0)
        goto fail;
    ferry_log_init(d->cfg.log_level, 2);
    rc = FERRYD_EXIT_FAILURE;
    int mk = ferry_mkdir_p(d->cfg.data_dir, 0700);
    if (mk != 0) {
        snprintf(errbuf, errlen, "data_dir %s: %s", d->cfg.data_dir, strerror(-mk));
        goto fail;
    }
    if (snprintf(d->addr_file, sizeof d->addr_file, "%s/%s", d->cfg.data_dir, FERRYD_ADDR_FILE) >=
        (int)sizeof d->addr_file) {
        snprintf(errbuf, errlen, "data_dir %s: path too long", d->cfg.data_dir);
        goto fail;
    }
    /* A write to a client that went away must not kill the daemon. */
    signal(SIGPIPE, SIG_IGN);
    /* Precise timers: libevent then keeps time on CLOCK_MONOTONIC, the clock ferry_us_to_grid()
     * aligns the periodic timers to, so the collection rounds and the maintenance tick of one
     * interval fire in one wake-up (the coarse clock lags by up to a jiffy and split them). */
    struct event_config *ecfg = event_config_new();
    if (ecfg) {
        (void)event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
        d->base = event_base_new_with_config(ecfg);
        event_config_free(ecfg);
    }
    if (!d->base) {
        snprintf(errbuf, errlen, "event_base_new failed");
        goto fail;
    }
    if ((rc = open_journal(d, errbuf, errlen)) != 0)
        goto fail;
    rc = FERRYD_EXIT_FAILURE;
    int drc = durable_new(d->base, d->journal, &d->durable);
    if (drc != 0) {
        snprintf(errbuf, errlen, "%s", durable_strerror(drc));
        goto fail;
    }
    struct sync_config sc;
    fill_sync_config(&d->cfg, &sc);
    char serr[256] = "";
    int src = sync_new(d->base, d->journal, &sc, &d->sync, serr, sizeof serr);
    if (src != 0) {
        snprintf(errbuf, errlen, "sync engine: %s: %s", sync_strerror(src), serr);
        goto fail;
    }
    if ((rc = start_inputs(d, errbuf, errlen)) != 0)
        goto fail;
    if ((rc = start_collectors(d, errbuf, errlen)) != 0)
        goto fail;
    rc = FERRYD_EXIT_FAILURE;
    if (start_timers(d) != 0) {
        snprintf(errbuf, errlen, "cannot register signals or timers");
        goto fail;
    }
    int arc = write_addr_file(d);
    if (arc != 0) {
        snprintf(errbuf, errlen, "%s: %s", d->addr_file, strerror(-arc));
        goto fail;
    }
    d->status.version = FERRY_VERSION;
    d->status.started_unix_ms = ferry_realtime_ns() / 1000000;
    d->status.pid = (int)getpid();
    d->status.config_path = d->config_path ? d->config_path : "";
    d->status.data_dir = journal_data_dir(d->journal); /* survives config reloads */
    d->status.journal = d->journal;
    d->status.sync = d->sync;
    d->status.update_enabled = d->cfg.update_enabled;

    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    const char *kv[] = {"version", FERRY_VERSION,
                        "pid",     pid,
                        "config",  d->config_path ? d->config_path : "(built-in defaults)",
                        "http",    d->http ? http_input_address(d->http) : ""};
    append_event(d, "ferryd.start", "ferryd started", kv, 4);
    /* What the device runs, for the ingest's versions object (docs/ingest.md); the OTA agent's
     * component follows in its own "versions" event once the agent runs (maybe_start_ota). */
    /* ...and the device's UTC offset ("+02:00"), which rollout maintenance windows read as the
     * device's local time (docs/rollouts.md); sent again at each start (a DST change shows at the
     * next restart). */
    char offset[8];
    time_t now_s = time(NULL);
    struct tm local;
    long gmtoff = localtime_r(&now_s, &local) != NULL ? local.tm_gmtoff : 0;
    long amin = (gmtoff < 0 ? -gmtoff : gmtoff) / 60;
    snprintf(offset, sizeof offset, "%c%02ld:%02ld", gmtoff < 0 ? '-' : '+', (amin / 60) % 100,
             amin % 60);
    const char *versions_kv[] = {"ferryd", FERRY_VERSION, "utc_offset", offset};
    append_event(d, "versions", "versions running", versions_kv, 2);
    check_inventory(d);
    announce_gaps(d);
    maybe_start_ota(d);
    maybe_start_actions(d);
    log_info("ferryd", "ferryd %s ready: data_dir %s, http %s, udp %s, unix %s, config %s",
             FERRY_VERSION, d->cfg.data_dir, d->http ? http_input_address(d->http) : "off",
             d->udp ? line_input_address(d->udp) : "off",
             d->unix_in ? line_input_address(d->unix_in) : "off",
             d->config_path ? d->config_path : "(built-in defaults)");
    d->state = FERRYD_RUNNING;
    sd_notifyf(0, "READY=1\nSTATUS=accepting records on %s\nMAINPID=%d",
               d->http ? http_input_address(d->http) : "(no http)", (int)getpid());
    *out = d;
    return 0;
fail:
    (void)ferryd_free(d);
    return rc;
}

int ferryd_run(struct ferryd *d)
{
    int rc = event_base_dispatch(d->base);
    if (rc < 0) {
        log_error("ferryd", "event loop failed");
        return FERRYD_EXIT_FAILURE;
    }
    return FERRYD_EXIT_OK;
}

int ferryd_free(struct ferryd *d)
{
    if (!d)
        return FERRYD_EXIT_OK;
    int rc = FERRYD_EXIT_OK;
    if (d->journal && d->state != FERRYD_STARTING) {
        const char *kv[] = {"reason", d->stop_reason ? d->stop_reason : "exit"};
        append_event(d, "ferryd.stop", "ferryd stopping", kv, 1);
    }
    collect_set_free(d->collect); /* appends to the journal: before journal_close */
    d->collect = NULL;
    for (size_t i = 0; i < d->n_tails; i++)
        tail_free(d->tails[i]);
    d->n_tails = 0;
    for (size_t i = 0; i < d->n_scrapes; i++)
        scrape_free(d->scrapes[i]);
    d->n_scrapes = 0;
    for (size_t i = 0; i < d->n_journalds; i++)
        journald_free(d->journalds[i]);
    d->n_journalds = 0;
    free_actions(d); /* before the sync engine and the journal it uses */
    free_ota(d);
    sync_free(d->sync);
    d->sync = NULL;
    durable_free(d->durable); /* answers the last writes (invariant 1) */
    http_input_free(d->http);
    line_input_free(d->udp);
    line_input_free(d->unix_in);
    if (d->addr_file_written && unlink(d->addr_file) != 0)
        log_warn("ferryd", "%s: cannot remove: %s", d->addr_file, strerror(errno));
    if (d->journal) {
        int jrc = journal_close(d->journal);
        if (jrc != 0) {
            log_error("ferryd", "journal close: %s", journal_strerror(jrc));
            rc = FERRYD_EXIT_FAILURE;
        } else if (d->state != FERRYD_STARTING) {
            log_info("ferryd", "journal closed cleanly");
        }
    }
    struct event *evs[] = {d->sig_term,       d->sig_int,           d->sig_hup,
                           d->watchdog_timer, d->maintenance_timer, d->drain_timer};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    if (d->base)
        event_base_free(d->base);
    ferryd_config_free(&d->cfg);
    free(d->config_path);
    free(d->data_dir_override);
    free(d);
    return rc;
}
