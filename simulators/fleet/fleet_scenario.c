/*
 * fleet_scenario.c - role sets of an alert scenario (see fleet_scenario.h).
 *
 * Exact counts, not shares: the alert proof asserts that exactly 20 devices raise a temperature
 * alert and exactly 50 stay offline, so the sets are a prefix of one seeded permutation of the
 * fleet rather than a per-device coin flip.
 */
#include "simulators/fleet/fleet_scenario.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simulators/flaky/flaky_rng.h"

int fleet_scenario_assign(const struct fleet_scenario *s, uint8_t *roles, char *err, size_t err_len)
{
    if (s->overheat_devices > s->outage_devices) {
        snprintf(err, err_len,
                 "%u overheating devices but only %u in the outage: they overheat "
                 "while offline, so they are part of it",
                 s->overheat_devices, s->outage_devices);
        return -1;
    }
    if ((uint64_t)s->outage_devices + s->gone_devices > s->devices) {
        snprintf(err, err_len, "%u outage + %u switched-off devices > %u devices",
                 s->outage_devices, s->gone_devices, s->devices);
        return -1;
    }
    unsigned *order = malloc((size_t)s->devices * sizeof *order);
    if (!order) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < s->devices; i++)
        order[i] = i;
    struct flaky_rng rng;
    flaky_rng_seed(&rng, s->seed, 0xa1e47500000000ULL);
    for (unsigned i = s->devices; i > 1; i--) {
        unsigned j = (unsigned)(flaky_rng_next(&rng) % i);
        unsigned t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    memset(roles, FLEET_ROLE_NONE, s->devices);
    for (unsigned k = 0; k < s->outage_devices; k++)
        roles[order[k]] = k < s->overheat_devices ? FLEET_ROLE_OVERHEAT : FLEET_ROLE_OUTAGE;
    for (unsigned k = 0; k < s->gone_devices; k++)
        roles[order[s->outage_devices + k]] = FLEET_ROLE_GONE;
    free(order);
    return 0;
}

const char *fleet_role_name(int role)
{
    switch (role) {
    case FLEET_ROLE_OUTAGE: return "outage";
    case FLEET_ROLE_OVERHEAT: return "overheat";
    case FLEET_ROLE_GONE: return "gone";
    default: return "none";
    }
}

/* The names of the devices whose role is one of `a` or `b`, as a JSON array. */
static void write_names(FILE *f, const struct fleet_scenario *s, const uint8_t *roles, int a, int b)
{
    fputc('[', f);
    int first = 1;
    for (unsigned i = 0; i < s->devices; i++) {
        if (roles[i] != a && roles[i] != b)
            continue;
        fprintf(f, "%s\"fleet-%05u\"", first ? "" : ",", i);
        first = 0;
    }
    fputc(']', f);
}

int fleet_scenario_write(const char *path, const struct fleet_scenario *s, const uint8_t *roles,
                         const struct fleet_scenario_times *t)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        fprintf(stderr, "ferry-fleet: --scenario-out: path too long\n");
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "ferry-fleet: %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    fprintf(f, "{\"devices\":%u,\"seed\":%llu,\"start_ns\":%lld,\"tick_ms\":%lld,", s->devices,
            (unsigned long long)s->seed, (long long)t->start_ns, (long long)t->tick_ms);
    fprintf(f,
            "\"outage\":{\"at_ms\":%lld,\"for_ms\":%lld,\"devices\":", (long long)t->outage_at_ms,
            (long long)t->outage_ms);
    write_names(f, s, roles, FLEET_ROLE_OUTAGE, FLEET_ROLE_OVERHEAT);
    fprintf(f, "},\"overheat\":{\"at_ms\":%lld,\"for_ms\":%lld,\"temp\":%.1f,\"devices\":",
            (long long)t->overheat_at_ms, (long long)t->overheat_ms, t->overheat_temp);
    write_names(f, s, roles, FLEET_ROLE_OVERHEAT, FLEET_ROLE_OVERHEAT);
    fprintf(f, "},\"stay_offline\":{\"at_ms\":%lld,\"devices\":", (long long)t->gone_at_ms);
    write_names(f, s, roles, FLEET_ROLE_GONE, FLEET_ROLE_GONE);
    fputs("}}\n", f);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "ferry-fleet: %s: write failed: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}
