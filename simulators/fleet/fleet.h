/*
 * fleet.h - ferry-fleet: many virtual devices in one process against a real ferry-ingest.
 *
 * Each virtual device is the real device stack minus the local inputs: its own Ed25519 key and
 * enrollment, its own LMDB journal (journal_open in <data_dir>/dev-NNNNN), and its own sync
 * engine (engine/sync.h) on the fleet's one event loop. Its connectivity is its own in-process
 * ferry-flaky proxy (simulators/flaky/flaky_proxy.h) with a profile drawn from a weighted mix and
 * a seed derived from the fleet's seed, so one device can be always on while another lives in a
 * tunnel. A timer per device appends a tick of realistic metrics (and now and then a log line)
 * to its journal and wakes its engine.
 *
 * Measurements: generated, acknowledged (the engine's sent_records: the cloud's durable ack) and,
 * at the end, found in the ingest (GET /v1/devices); the delay from generation to acknowledgement
 * per tick, sampled once a second; backlog and request rate over time; and around a simulated
 * cloud outage (every proxy forced down), the peak request rate after it against the steady
 * rate before it.
 *
 * Costs: every device has two threads (journal committer, sync helper), an LMDB map of
 * `quota_bytes` and up to 20 file descriptors; past one process's descriptor limit the program
 * runs several fleets, one per worker process (fleet_workers.h). All functions run on the loop
 * thread.
 */
#ifndef FERRY_SIMULATORS_FLEET_H
#define FERRY_SIMULATORS_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "simulators/flaky/flaky_profile.h"
#include "simulators/fleet/fleet_ota.h"

struct event_base;
struct fleet;

struct fleet_profile_share {
    struct flaky_profile profile;
    double weight;
};

/* One sampling second: running totals of this fleet (or slice of it). */
struct fleet_second {
    uint32_t index; /* 1, 2, ... seconds since fleet_start() */
    int64_t t_ms;
    unsigned enrolled;
    uint64_t generated, acked, backlog;
    uint64_t batches; /* requests acknowledged so far */
    int outage;       /* 0 before the cloud outage, 1 during, 2 after */
};

/* A delay sample: generation to cloud acknowledgement of one tick. */
struct fleet_delay {
    uint32_t ms;
    uint32_t records;
};

struct fleet_config {
    const char *ingest;    /* "HOST:PORT" of ferry-ingest */
    const char *token;     /* fleet enrollment token */
    const char *api_token; /* viewer API token for GET /v1/devices (docs/security.md); NULL: none */
    const char *data_dir;  /* devices live in <data_dir>/dev-NNNNN */
    unsigned devices;
    int64_t tick_ms;           /* one tick of metrics per device this often */
    unsigned metrics_per_tick; /* records per tick */
    double logs_per_tick;      /* expected log records per tick (Poisson-ish) */
    int64_t run_ms;            /* generating for this long */
    int64_t drain_ms;          /* then at most this long for the backlog to drain */
    int64_t outage_at_ms;      /* 0: no outage; else every link goes down at this time */
    int64_t outage_ms;         /* for this long */
    int64_t report_ms;         /* a progress line this often (0: none) */
    uint64_t seed;
    uint64_t quota_bytes;   /* journal quota per device */
    int64_t backoff_max_ms; /* the engines' retry cap (ferryd's default is 5 min) */
    int durability;         /* enum journal_durability of every device's journal */
    const struct fleet_profile_share *shares; /* borrowed during fleet_new */
    size_t n_shares;
    unsigned first_device;       /* devices are fleet-<first_device> .. (one process's slice) */
    struct fleet_ota_config ota; /* simulated OTA (fleet_ota.h); ota.enabled 0: none */
    /* This share of the devices, chosen by a stable hash of their names, is switched off at
     * offline_after_ms into the run (0: from the start, never enrolled) and stays off: no
     * records, no requests, its link down. */
    double offline_share;
    int64_t offline_after_ms;
    /* Alert scenario (fleet_scenario.h): the role of every device by its global index (NULL:
     * none; borrowed, outlives the fleet). With roles, the outage above takes down only the
     * links of FLEET_ROLE_OUTAGE and FLEET_ROLE_OVERHEAT devices, the rest stays online, and
     * FLEET_ROLE_GONE devices are switched off at offline_after_ms as offline_share's are. */
    const uint8_t *roles;
    unsigned roles_len;
    /* One Jetson thermal record per tick (measurement `temp`, tag sensor=GPU-therm, field
     * `temp` in degrees C: what ferryd's [collect.jetson] writes) at thermal_baseline plus
     * noise; FLEET_ROLE_OVERHEAT devices report overheat_temp instead from overheat_at_ms for
     * overheat_ms of the run. */
    int thermal;
    double thermal_baseline, overheat_temp;
    int64_t overheat_at_ms, overheat_ms;
    /* If set, called once a second with the running totals instead of the progress lines
     * (ferry-fleet's worker processes send them to the parent, which prints the sum). */
    void (*on_second)(void *arg, const struct fleet_second *s);
    void *on_second_arg;
    /* If set, called once by the process that starts the run, right before the devices' clocks
     * start (ferry-fleet writes its --scenario-out file with the run's wall-clock start). */
    void (*on_start)(void *arg);
    void *on_start_arg;
};

struct fleet_totals {
    unsigned devices;
    unsigned enrolled;
    uint64_t generated;
    uint64_t append_errors;
    uint64_t acked;       /* from the journals: generated minus unsent minus evicted */
    uint64_t engine_sent; /* the engines' sent_records (counts re-acknowledged records again) */
    uint64_t backlog;
    uint64_t found_in_ingest; /* filled by fleet_count_in_ingest() */
    uint64_t batches;
    double delay_p50_ms;
    double delay_p90_ms;
    double delay_p99_ms;
    double delay_max_ms;
    double steady_requests_per_s; /* mean per-second request rate before the outage */
    double peak_requests_per_s;   /* highest per-second rate in the 2 minutes after it */
    double drain_ms;              /* from the end of generation until nothing was left */
    /* Simulated OTA at the end, per device and component: the agents' last states. */
    unsigned ota_committed, ota_rolled_back, ota_failed, ota_idle, ota_other;
    unsigned ota_reboots, ota_crashes;
    unsigned offline; /* devices switched off by offline_share */
};

/* Creates the devices (journals, engines, proxies) and their timers on `base`; the run starts
 * with fleet_start(). Errors: FLAKY_ERR_* (err says which device and why). */
int fleet_new(struct event_base *base, const struct fleet_config *cfg, struct fleet **out,
              char *err, size_t err_len) __attribute__((warn_unused_result));
/* Starts the clock: the devices' tick timers and the sampler (the run's t = 0). Separate from
 * fleet_new() so that worker processes that create their slices at different speeds start
 * together. */
void fleet_start(struct fleet *f);
/* Fills out's delay percentiles and maximum from `delays` (sorted in place) and its steady
 * request rate from the per-second rates before the outage (the first 5 s, enrollment, left
 * out when there are more than 10): what fleet_totals() and the multi-process merge share. */
void fleet_summarize(struct fleet_delay *delays, size_t n_delays, const double *rates_before,
                     size_t n_before, struct fleet_totals *out);
/* The delay samples so far (unsorted until fleet_totals()). */
void fleet_delays(const struct fleet *f, const struct fleet_delay **out, size_t *n);
/* Stops every engine, closes every journal and proxy. NULL is fine. */
void fleet_free(struct fleet *f);
/* Whether the run (generation plus drain) is over; the loop is broken when it is. */
int fleet_done(const struct fleet *f);
/* Current totals (delay percentiles over everything acknowledged so far). */
void fleet_totals(struct fleet *f, struct fleet_totals *out);
/* Asks the ingest (blocking, after the loop ended) how many metric+log records it holds for
 * each device and fills out->found_in_ingest. Returns 0 or -1 (err says why). */
int fleet_count_in_ingest(struct fleet *f, struct fleet_totals *out, char *err, size_t err_len);
/* fleet_print_devices() into a new file at `path`; 0, or -1 with the reason on stderr. */
int fleet_write_devices(struct fleet *f, const char *path);
/* Writes one JSON line per device (id, profile, generated, acked, found, backlog; with roles,
 * its role and the wall-clock times of its scenario: outage_down_ns, outage_up_ns, offline_ns,
 * and for an overheating device hot_first_ns, hot_last_ns (its first and last hot sample) and
 * cool_after_ns (its first sample below the overheat again)). */
void fleet_print_devices(struct fleet *f, void *file);

#endif
