/*
 * fleet_ota.h - simulated OTA of ferry-fleet's virtual devices.
 *
 * Every virtual device runs ferryd's own OTA agent (engine/ota/ota.h), one per component, with
 * the simulated A/B slot backend in <device dir>/slots-<component>: the same device-signed
 * manifest polls and Range downloads (transport/reqsign.h, transport/download.h), the same
 * signature check against the release public keys (transport/manifest.h), the same install into
 * the inactive slot, the same trial and health gates, and the same ota.* events committed with
 * the state in the device's journal. What this file simulates is only what the agent expects
 * from the outside world:
 *
 *   - the reboot: an agent that reached "installed" is freed (the device goes down for
 *     reboot_ms: no metrics, no agent) and created again, whose ota_slots_boot() plays the
 *     boot loader, exactly as a ferryd restart does;
 *   - a crash loop: a device chosen for a release by crashloop rules crashes as soon as its trial
 *     begins, and again after each reboot; the simulated boot loader then falls back to the good
 *     slot and the agent reports rolled_back;
 *   - the application's metrics: inference.fps (baseline with noise, multiplied by the fps rule
 *     of the version each component runs, the trial's version included) and thermal.gpu, which
 *     the device appends to its journal and shows to its agents' health gates as ferryd's inputs
 *     do;
 *   - a "versions" event with the running version of every component at every agent start, as
 *     ferryd sends at start.
 *
 * A device is chosen for a rule by a stable hash of its name and the release version, so a
 * rerun with the same names picks the same devices whatever the process split. All functions run
 * on the fleet's loop thread.
 */
#ifndef FERRY_SIMULATORS_FLEET_OTA_H
#define FERRY_SIMULATORS_FLEET_OTA_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct journal;
struct sync;
struct record;
struct http_client;
struct ota_agent;

#define FLEET_OTA_MAX_COMPONENTS 4
#define FLEET_OTA_MAX_RULES 16
#define FLEET_OTA_MAX_KEYS 8

/* "VERSION:VALUE": for crashloop rules the share (0..1) of devices whose trial of VERSION
 * crash-loops; for fps rules the factor applied to inference.fps while VERSION runs. */
struct fleet_ota_rule {
    char version[65];
    double value;
};

struct fleet_ota_config {
    int enabled;
    const char *components[FLEET_OTA_MAX_COMPONENTS]; /* default {"rootfs"} */
    size_t n_components;
    uint8_t release_keys[FLEET_OTA_MAX_KEYS][32];
    size_t n_release_keys;
    const char *initial_version; /* what every component runs at first start */
    int64_t check_interval_ms;   /* the agents' manifest poll period */
    int64_t reboot_ms;           /* how long a virtual reboot keeps a device down */
    int64_t trial_deadline_ms;   /* the agents' trial deadline */
    const char *health_gates;    /* the agents' health gates (engine/ota/gate.h); NULL: none */
    struct fleet_ota_rule crashloop[FLEET_OTA_MAX_RULES];
    size_t n_crashloop;
    struct fleet_ota_rule fps[FLEET_OTA_MAX_RULES];
    size_t n_fps;
    double fps_baseline; /* inference.fps before any fps rule */
    double fps_noise;    /* relative standard deviation of each sample */
    double gpu_baseline; /* thermal.gpu, degrees C */
};

/* Parses "VERSION:VALUE" into rules[*n] (value in [lo, hi]); 0, or -1 with err filled. */
int fleet_ota_parse_rule(const char *text, double lo, double hi, struct fleet_ota_rule *rules,
                         size_t *n, char *err, size_t err_len);
/* Reads a release public key file (64 hex digits, as `ferry release keygen` writes) into the
 * next key slot of cfg; 0, or -1 with err filled. */
int fleet_ota_add_key_file(struct fleet_ota_config *cfg, const char *path, char *err,
                           size_t err_len);

/* A uniform number in [0, 1) from a stable hash of two strings (device name, version). */
double fleet_ota_stable_unit(const char *a, const char *b);

/* The OTA side of one virtual device (embedded in the fleet's device; zeroed at start). */
struct fleet_ota_device {
    const struct fleet_ota_config *cfg;
    struct event_base *base;
    struct journal *journal;
    struct sync *sync;
    const char *name;       /* "fleet-NNNNN", borrowed */
    const char *dir;        /* the device's data directory, borrowed */
    const char *server_url; /* the device's link (its flaky proxy), borrowed */
    char device_id[65];
    struct http_client *http;
    struct ota_agent *agents[FLEET_OTA_MAX_COMPONENTS];
    char seen_state[FLEET_OTA_MAX_COMPONENTS][24]; /* last state seen in this boot */
    char running[FLEET_OTA_MAX_COMPONENTS][65];    /* last seen, kept across reboots */
    char target[FLEET_OTA_MAX_COMPONENTS][65];
    int started;           /* agents were created at least once */
    int64_t down_until_ms; /* rebooting until then (monotonic); 0 = up */
    unsigned reboots, crashes;
    double fps_last;
};

/* Binds the device's parts (all borrowed, outliving it). */
void fleet_ota_device_init(struct fleet_ota_device *o, const struct fleet_ota_config *cfg,
                           struct event_base *base, struct journal *journal, struct sync *sync,
                           const char *name, const char *dir, const char *server_url);
/* Once a second: starts the agents once the device is enrolled, finishes a reboot, and reacts
 * to the agents' states (reboot after "installed", a crash during a crash-looping trial, the
 * reboot into the good slot after a rollback). Returns 0, or -1 with err filled when an agent
 * could not start. */
int fleet_ota_step(struct fleet_ota_device *o, int64_t now_ms, char *err, size_t err_len);
/* Whether the device is down for a (virtual) reboot. */
int fleet_ota_rebooting(const struct fleet_ota_device *o, int64_t now_ms);
/* The FPS factor of what runs now: the product of the fps rules of each component's running
 * version (the target version during a trial). */
double fleet_ota_fps_factor(const struct fleet_ota_device *o);
/* Shows a metric record the device appended to its agents' health gates. */
void fleet_ota_observe(struct fleet_ota_device *o, const struct record *r);
/* Component i's last seen state ("rebooting" while down), running and target versions. */
void fleet_ota_component(const struct fleet_ota_device *o, size_t i, char state[24],
                         char running[65], char target[65]);
/* Frees the agents and the HTTP client. */
void fleet_ota_device_free(struct fleet_ota_device *o);

#endif
