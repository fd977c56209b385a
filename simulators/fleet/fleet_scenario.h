/*
 * fleet_scenario.h - which virtual devices play which part in an alert scenario (docs/testing.md,
 * "Alert scenarios"): a partial outage, overheating while offline, switched off for good.
 *
 * The sets are exact counts, drawn once by the fleet's seed (a Fisher-Yates shuffle of the device
 * indexes), before the fleet is split across worker processes: every worker reads the same role
 * table by the device's global index, and the table is written to a JSON file so that a test can
 * check the ingest's alerts against exactly these devices.
 */
#ifndef FERRY_SIMULATORS_FLEET_SCENARIO_H
#define FERRY_SIMULATORS_FLEET_SCENARIO_H

#include <stddef.h>
#include <stdint.h>

enum fleet_role {
    FLEET_ROLE_NONE = 0, /* online all along */
    FLEET_ROLE_OUTAGE,   /* loses its link during the outage, then recovers */
    FLEET_ROLE_OVERHEAT, /* an outage device whose temperature rises above the threshold */
    FLEET_ROLE_GONE,     /* switched off at offline_after and never back */
};

struct fleet_scenario {
    unsigned devices;          /* the whole fleet */
    unsigned outage_devices;   /* in the outage (the overheating ones included) */
    unsigned overheat_devices; /* of the outage devices */
    unsigned gone_devices;     /* switched off for good, not among the outage devices */
    uint64_t seed;
};

/* The role of each device 0..s->devices-1 into roles[] (s->devices entries): the first
 * outage_devices of a seeded shuffle are the outage set, the first overheat_devices of those
 * overheat, the next gone_devices are switched off. Returns 0, or -1 when the sets do not fit
 * (err says why). */
int fleet_scenario_assign(const struct fleet_scenario *s, uint8_t *roles, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* The name of a role in the JSON outputs: "none", "outage", "overheat", "gone". */
const char *fleet_role_name(int role);

/* The timing of the scenario, written with the sets (all offsets from the run's start). */
struct fleet_scenario_times {
    int64_t start_ns; /* wall clock (device time) at the run's start */
    int64_t tick_ms;
    int64_t outage_at_ms, outage_ms;
    int64_t overheat_at_ms, overheat_ms;
    double overheat_temp;
    int64_t gone_at_ms;
};

/* Writes {"devices":N,"seed":S,"start_ns":...,"tick_ms":...,"outage":{"at_ms","for_ms",
 * "devices":[names]},"overheat":{"at_ms","for_ms","temp","devices":[...]},"stay_offline":{"at_ms",
 * "devices":[...]}} to `path` (replaced atomically). Returns 0, or -1 with the reason on stderr. */
int fleet_scenario_write(const char *path, const struct fleet_scenario *s, const uint8_t *roles,
                         const struct fleet_scenario_times *t) __attribute__((warn_unused_result));

#endif
