/*
 * ota.h - the OTA agent of ferryd: poll → verify → download → apply → switch → trial → commit or
 * roll back (docs/ota.md, "Device state machine").
 *
 * The agent runs on ferryd's event loop: the manifest poll and the chunk downloads go through the
 * daemon's http_client (libcurl multi on libevent); work that takes long (hashing a slot, applying
 * a delta, running health checks) runs on one worker thread at a time and reports back to the loop
 * through a pipe. Its whole state is one JSON value under the journal state key "ota/state"
 * (plus the signed manifest under "ota/manifest"), and every change of it is committed together
 * with the `event` record that reports it (journal_append_event_with_state), so after a SIGKILL or
 * a power cut the agent continues from the last committed state and the cloud hears the same story.
 *
 * States: idle → available → downloading → downloaded → applying → switching → installed →
 *         (reboot) → trial → committed
 *         any state → failed (with reason); trial → rolled_back (with reason)
 */
#ifndef FERRY_ENGINE_OTA_H
#define FERRY_ENGINE_OTA_H

#include <stddef.h>
#include <stdint.h>

#include "engine/ota/slot.h"
#include "transport/reqsign.h"

struct event_base;
struct http_client;
struct journal;
struct ota_agent;
struct record;

/* Journal state keys, one pair per component: "ota/state/<component>", "ota/manifest/<component>".
 * One agent per component; each has its own versions, serials and state machine. */
#define OTA_STATE_PREFIX "ota/state/"
#define OTA_MANIFEST_PREFIX "ota/manifest/"

enum ota_metered_policy {
    OTA_METERED_ALLOW = 0,
    OTA_METERED_CAP = 1,
    OTA_METERED_DEFER = 2,
};
/* "allow", "cap", "defer" -> the policy; -1 for anything else. */
int ota_metered_policy_parse(const char *s);

enum ota_error {
    OTA_OK = 0,
    OTA_E_ARG = -1,
    OTA_E_NOMEM = -2,
    OTA_E_SLOT = -3,
    OTA_E_JOURNAL = -4,
};

struct ota_config {
    const char *data_dir;   /* downloads go to <data_dir>/ota/ */
    const char *server_url; /* e.g. http://ingest:8480 (no trailing slash) */
    const char *device_id;
    const char *device_class;
    const char *component; /* "rootfs" (slots); default rootfs */
    const char *ca_file;
    const char *pinned_public_key;     /* https pin (transport/http_client.h); NULL = none */
    const uint8_t (*release_keys)[32]; /* trusted release public keys */
    size_t n_release_keys;
    struct ota_slot_config slots; /* slot components (rootfs, app) */
    /* File components (model, config): when set, the component is this file instead of a slot.
     * The new version is written to <path>.new, verified, then the current file is hard-linked
     * to <path>.prev and <path>.new renamed over <path> (atomic; the previous one kept for
     * rollback). No reboot: reboot_command (if any) restarts what uses the file, then the trial
     * runs at once. */
    const char *install_path;
    int64_t check_interval_ms; /* manifest poll period (default 1 h) */
    uint64_t max_bytes_per_s;  /* download cap, 0 = none */
    /* Metered links (metered.h): the default route's interface matched against these globs
     * (NULL: OTA_METERED_DEFAULT_GLOBS). ALLOW downloads anyway; CAP downloads at most
     * metered_max_bytes_per_s (0: max_bytes_per_s); DEFER waits for an unmetered link, checked
     * on every connectivity change and every min(check_interval, 60 s), and pauses a running
     * download (its progress kept) when the link becomes metered. */
    enum ota_metered_policy metered_policy;
    const char *metered_interfaces;
    uint64_t metered_max_bytes_per_s;
    const char *route_file;             /* NULL: /proc/net/route (tests point it elsewhere) */
    const char *const *health_commands; /* each must exit 0 within health_timeout_ms */
    size_t n_health_commands;
    int64_t health_timeout_ms;   /* per command (default 30 s) */
    const char *health_gates;    /* metric gates after the commands (gate.h); NULL: none */
    int64_t trial_deadline_ms;   /* all checks must pass within this (default 10 min) */
    const char *reboot_command;  /* run after install/rollback; NULL: wait for a reboot */
    const char *initial_version; /* version of the factory image when the journal has none */
    /* Signs the device's manifest and artifact requests with its key (transport/reqsign.h,
     * docs/wire-format.md "Device-signed requests"): `time_s` is the time to sign with (the
     * device clock corrected by what the ingest said its clock was). NULL: requests go unsigned
     * and an ingest that checks them answers 401. ferryd wires this to sync_sign_request(). */
    int (*sign_request)(void *arg, const char *method, const char *target, int64_t time_s,
                        struct reqsign_headers *out);
    void *sign_arg;
    /* Called on the loop thread after each ota.* event committed (its state change is durable):
     * ferryd wakes its sync engine, so the ingest learns a device's update state within the
     * event latency, not at the next heartbeat. NULL: nobody is told. */
    void (*appended)(void *arg);
    void *appended_arg;
};

/* What `ferry update status` shows: a copy of the persisted state. */
struct ota_status {
    char state[24];
    char running_version[65];
    char target_version[65];
    char artifact_kind[8];
    char target_slot[4]; /* slot the update is written to ("a"/"b") */
    char reason[256];
    uint64_t bytes_done, bytes_total;
    uint32_t next_chunk, chunks;
    int64_t download_started_ns, updated_ns;
    uint64_t bytes_at_start;
    uint64_t highest_serial;
    /* Artifact mirrors during the current update (docs/ota.md "Mirrors"): chunks and bytes that
     * came from a mirror, mirrors given up, and the last of those failures ("<url>: <reason>"). */
    uint32_t mirror_chunks, mirror_failures;
    uint64_t mirror_bytes;
    char mirror_error[256];
};

/* Parses the JSON value stored under OTA_STATE_KEY. Returns 0 or -1. */
int ota_status_parse(const void *json, size_t len, struct ota_status *out);

/* Creates the agent: opens the slots, plays the boot loader (simulated backend), loads the state
 * and continues it (a trial after a switch, an interrupted download or apply). The config strings
 * must outlive the agent. Returns 0 or an ota_error with a message in err. */
int ota_agent_new(struct event_base *base, struct http_client *http, struct journal *journal,
                  const struct ota_config *cfg, struct ota_agent **out, char *err, size_t err_len)
    __attribute__((warn_unused_result));
/* Polls the manifest now (on connectivity, or `ferry update check`). Loop thread only. */
void ota_agent_check_now(struct ota_agent *a);
/* Shows an accepted metric record to the trial's health gates (loop thread; cheap when no
 * trial is waiting on gates). */
void ota_agent_observe(struct ota_agent *a, const struct record *r);
/* The component this agent manages ("rootfs", "model", ...); valid while the agent lives. */
const char *ota_agent_component(const struct ota_agent *a);
/* Current state (loop thread). */
void ota_agent_status(const struct ota_agent *a, struct ota_status *out);
/* Stops the agent: cancels a download (its progress stays persisted), waits for a running worker
 * job, frees. */
void ota_agent_free(struct ota_agent *a);

#endif
