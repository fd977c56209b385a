/*
 * fleet_main.c - the ferry-fleet program: parses arguments and profile mixes, runs the fleet
 * (fleet.c) on one event loop, and prints the totals.
 */
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "journal/journal.h"
#include "simulators/fleet/fleet.h"
#include "simulators/fleet/fleet_scenario.h"
#include "simulators/fleet/fleet_workers.h"
#include "transport/manifest.h"

#ifndef FLAKY_PROFILE_DIR
#define FLAKY_PROFILE_DIR "/usr/share/ferry/profiles"
#endif
#define FLEET_MAX_SHARES 16

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: ferry-fleet --ingest HOST:PORT --token TOKEN --api-token TOKEN --data-dir DIR\n"
        "                   [options]\n"
        "\n"
        "Many virtual devices against a real ferry-ingest: each has its own key, enrollment,\n"
        "LMDB journal, sync engine and in-process ferry-flaky link. A fleet larger than one\n"
        "process's descriptor limit allows (about 20 per device) is split across worker\n"
        "processes that start together and report one sum.\n"
        "\n"
        "  --token TOKEN          fleet enrolment token (ferry-ingest enroll-token create "
        "--fleet)\n"
        "  --api-token TOKEN      viewer API token, to count the records found in the ingest\n"
        "                         (ferry-ingest token create --role viewer --name ...)\n"
        "  --devices N            virtual devices (default 10)\n"
        "  --processes N          worker processes (default: as few as the descriptor limit\n"
        "                         allows; 1 = everything in this process)\n"
        "  --tick DURATION        one tick of metrics per device this often (default 10s)\n"
        "  --metrics-per-tick N   metric records per tick (default 10, at most 64)\n"
        "  --logs-per-tick P      probability of a log record per tick (default 0.1)\n"
        "  --duration DURATION    generate this long (default 60s)\n"
        "  --drain DURATION       then wait at most this long for backlogs (default 60s)\n"
        "  --outage-at DURATION   cloud outage: every link goes down at this time...\n"
        "  --outage DURATION      ...for this long (default: no outage)\n"
        "  --profiles MIX         link profiles and weights, e.g. lte-good:6,lte-poor:3,tunnel:1\n"
        "                         (names from --profile-dir, or .ini paths; default lte-good)\n"
        "  --profile-dir DIR      default %s\n"
        "  --quota SIZE           journal quota per device (default 4MiB)\n"
        "  --seed N               profiles, links and data are drawn from it (default 1)\n"
        "  --backoff-max DURATION the engines' retry cap (default 30s)\n"
        "  --durability MODE      every journal's mode: os (default), periodic or commit.\n"
        "                         The virtual devices share this machine's one disk: with\n"
        "                         periodic, 10,000 journals fsync 10,000 times a second and the\n"
        "                         run measures the disk; a real device has its own flash\n"
        "  --report DURATION      progress line on stderr this often (default 5s, 0 = none)\n"
        "  --devices-out FILE     one JSON line per device at the end\n"
        "  --offline-share P      this share of the devices (stable hash of the name) is\n"
        "                         switched off: no records, no requests (default 0)...\n"
        "  --offline-after DURATION ...from this time of the run on (default 0: never connects;\n"
        "                         later: they enroll and report first, then go silent)\n"
        "\n"
        "Alert scenarios (exact device sets drawn by --seed; docs/testing.md, \"Alert "
        "scenarios\"):\n"
        "  --outage-devices N     the outage (--outage-at, --outage) takes down the links of N\n"
        "                         devices only; the rest stays online\n"
        "  --overheat N           N of the outage devices overheat (implies --thermal)...\n"
        "  --overheat-at DURATION ...from this time of the run (default: 1/5 into the outage)\n"
        "  --overheat-for DURATION ...for this long (default: 3/5 of the outage)\n"
        "  --overheat-temp C      their temperature then (default 92, plus up to 2 of noise)\n"
        "  --stay-offline N       N other devices are switched off at --offline-after (default:\n"
        "                         the outage's start) and never come back\n"
        "  --thermal              every tick also carries the Jetson collector's thermal record:\n"
        "                         measurement temp, tag sensor=GPU-therm, field temp (about 50 C)\n"
        "  --scenario-out FILE    the sets and times as JSON, written when the run starts\n"
        "\n"
        "Simulated OTA (each device runs ferryd's OTA agent, one per component, on simulated\n"
        "A/B slots; device-signed manifest polls, signature check, Range download, install,\n"
        "virtual reboot, trial, commit or roll back, the same ota.* events as ferryd):\n"
        "  --ota-pub FILE         release public key (ferry release keygen); enables OTA;\n"
        "                         repeatable (up to 8)\n"
        "  --ota-component C      a component to update (repeatable, up to 4; default rootfs)\n"
        "  --ota-initial-version V  what every component runs at first start (default 1.0.0)\n"
        "  --ota-check DURATION   manifest poll period (default 10s)\n"
        "  --ota-reboot DURATION  how long a virtual reboot keeps a device down (default 2s)\n"
        "  --ota-trial DURATION   trial deadline (default 60s)\n"
        "  --ota-health-gate G    the agents' health gate (default 'inference.fps >= 1 for 3s';\n"
        "                         'none' for no gate)\n"
        "  --ota-crashloop V:S    share S (0..1) of the devices, chosen by a stable hash of the\n"
        "                         device name and V, crash as soon as V's trial begins and after\n"
        "                         every reboot: the boot loader falls back and the agent rolls\n"
        "                         back (repeatable)\n"
        "  --ota-fps V:F          inference.fps multiplied by F while V runs (repeatable)\n"
        "  --fps N                inference.fps baseline (default 30)\n"
        "  --fps-noise R          relative standard deviation of each fps sample (default 0.02)\n"
        "  --gpu-temp N           thermal.gpu baseline in degrees C (default 55)\n"
        "  --help                 this text\n"
        "  --version              print the version\n"
        "\n"
        "Prints one JSON object with the totals on stdout: devices, enrolled, generated,\n"
        "acked, found_in_ingest, backlog, delay percentiles (generation to cloud ack, 1 s\n"
        "resolution), steady and post-outage peak request rates, drain time, and with OTA the\n"
        "agents' final states. Exit 0 when every generated record was acknowledged and found in\n"
        "the ingest, 1 otherwise (devices switched off by --offline-share with records still\n"
        "unsent make it 1). SIGTERM or SIGINT ends the run early with the totals printed.\n",
        FLAKY_PROFILE_DIR);
}

static int parse_ms(const char *opt, const char *v, int64_t *out)
{
    if (ferry_parse_duration_ms(v, out) < 0) {
        fprintf(stderr, "ferry-fleet: %s '%s': expected a duration such as 10s or 500ms\n", opt, v);
        return -1;
    }
    return 0;
}

static int parse_number(const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "ferry-fleet: %s '%s': expected a number from %g to %g\n", opt, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_shares(const char *mix, const char *dir, struct fleet_profile_share *shares,
                        size_t *n)
{
    char buf[2048];
    if (ferry_strlcpy(buf, mix, sizeof buf) >= sizeof buf)
        return -1;
    *n = 0;
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (*n == FLEET_MAX_SHARES) {
            fprintf(stderr, "ferry-fleet: --profiles: at most %d profiles\n", FLEET_MAX_SHARES);
            return -1;
        }
        double weight = 1;
        char *colon = strrchr(item, ':');
        if (colon) {
            *colon = 0;
            char *end;
            weight = strtod(colon + 1, &end);
            if (*end || !(weight > 0)) {
                fprintf(stderr, "ferry-fleet: --profiles: bad weight '%s'\n", colon + 1);
                return -1;
            }
        }
        char path[4096], err[512];
        if (strcmp(item, "none") == 0) {
            flaky_profile_defaults(&shares[*n].profile);
        } else if (flaky_profile_resolve(item, dir, path, sizeof path) < 0 ||
                   flaky_profile_load(path, &shares[*n].profile, err, sizeof err) < 0) {
            fprintf(stderr, "ferry-fleet: --profiles: %s\n", item);
            return -1;
        }
        shares[*n].weight = weight;
        (*n)++;
    }
    return *n ? 0 : -1;
}

static void print_totals(const struct fleet_totals *t, int completed)
{
    printf("{\"devices\":%u,\"enrolled\":%u,\"generated\":%llu,\"append_errors\":%llu,"
           "\"acked\":%llu,\"engine_sent_records\":%llu,\"found_in_ingest\":%llu,\"backlog\":%llu,"
           "\"batches\":%llu,"
           "\"delay_ms\":{\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f,\"max\":%.0f},"
           "\"steady_requests_per_s\":%.1f,\"peak_requests_per_s_after_outage\":%.1f,"
           "\"drain_ms\":%.0f,\"offline\":%u,"
           "\"ota\":{\"committed\":%u,\"rolled_back\":%u,\"failed\":%u,\"idle\":%u,\"other\":%u,"
           "\"reboots\":%u,\"crashes\":%u},\"completed\":%s}\n",
           t->devices, t->enrolled, (unsigned long long)t->generated,
           (unsigned long long)t->append_errors, (unsigned long long)t->acked,
           (unsigned long long)t->engine_sent, (unsigned long long)t->found_in_ingest,
           (unsigned long long)t->backlog, (unsigned long long)t->batches, t->delay_p50_ms,
           t->delay_p90_ms, t->delay_p99_ms, t->delay_max_ms, t->steady_requests_per_s,
           t->peak_requests_per_s, t->drain_ms, t->offline, t->ota_committed, t->ota_rolled_back,
           t->ota_failed, t->ota_idle, t->ota_other, t->ota_reboots, t->ota_crashes,
           completed ? "true" : "false");
    fflush(stdout);
}

struct scenario_out {
    const char *path;
    struct fleet_scenario s;
    const uint8_t *roles;
    struct fleet_scenario_times t;
};

/* on_start: the sets and times, with the run's wall-clock start (device time zero). */
static void write_scenario(void *arg)
{
    struct scenario_out *o = arg;
    o->t.start_ns = ferry_realtime_ns();
    if (fleet_scenario_write(o->path, &o->s, o->roles, &o->t) < 0)
        fprintf(stderr, "ferry-fleet: the scenario file was not written\n");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    struct fleet_config cfg = {.devices = 10,
                               .tick_ms = 10000,
                               .metrics_per_tick = 10,
                               .logs_per_tick = 0.1,
                               .run_ms = 60000,
                               .drain_ms = 60000,
                               .report_ms = 5000,
                               .seed = 1,
                               .quota_bytes = 4u << 20,
                               .backoff_max_ms = 30000,
                               .durability = JOURNAL_SYNC_OS,
                               .ota = {.initial_version = "1.0.0",
                                       .check_interval_ms = 10000,
                                       .reboot_ms = 2000,
                                       .trial_deadline_ms = 60000,
                                       .health_gates = "inference.fps >= 1 for 3s",
                                       .fps_baseline = 30,
                                       .fps_noise = 0.02,
                                       .gpu_baseline = 55}};
    const char *mix = "lte-good";
    const char *dir = getenv("FERRY_FLAKY_PROFILE_DIR");
    const char *devices_out = NULL;
    unsigned n_procs = 0;
    struct fleet_scenario scen = {0};
    int64_t overheat_at_ms = -1, overheat_ms = -1;
    int offline_after_given = 0;
    const char *scenario_out = NULL;
    cfg.thermal_baseline = 50;
    cfg.overheat_temp = 92;
    static const struct option opts[] = {
        {"ingest", required_argument, NULL, 'i'},
        {"token", required_argument, NULL, 't'},
        {"api-token", required_argument, NULL, 'A'},
        {"data-dir", required_argument, NULL, 'd'},
        {"devices", required_argument, NULL, 'n'},
        {"tick", required_argument, NULL, 'k'},
        {"metrics-per-tick", required_argument, NULL, 'm'},
        {"logs-per-tick", required_argument, NULL, 'l'},
        {"duration", required_argument, NULL, 'r'},
        {"drain", required_argument, NULL, 'D'},
        {"outage-at", required_argument, NULL, 'a'},
        {"outage", required_argument, NULL, 'o'},
        {"profiles", required_argument, NULL, 'p'},
        {"profile-dir", required_argument, NULL, 'P'},
        {"quota", required_argument, NULL, 'q'},
        {"seed", required_argument, NULL, 's'},
        {"report", required_argument, NULL, 'R'},
        {"devices-out", required_argument, NULL, 'O'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"backoff-max", required_argument, NULL, 'B'},
        {"processes", required_argument, NULL, 'N'},
        {"durability", required_argument, NULL, 'Y'},
        {"offline-share", required_argument, NULL, 1000},
        {"offline-after", required_argument, NULL, 1001},
        {"ota-pub", required_argument, NULL, 1002},
        {"ota-component", required_argument, NULL, 1003},
        {"ota-initial-version", required_argument, NULL, 1004},
        {"ota-check", required_argument, NULL, 1005},
        {"ota-reboot", required_argument, NULL, 1006},
        {"ota-trial", required_argument, NULL, 1007},
        {"ota-health-gate", required_argument, NULL, 1008},
        {"ota-crashloop", required_argument, NULL, 1009},
        {"ota-fps", required_argument, NULL, 1010},
        {"fps", required_argument, NULL, 1011},
        {"fps-noise", required_argument, NULL, 1012},
        {"gpu-temp", required_argument, NULL, 1013},
        {"outage-devices", required_argument, NULL, 1014},
        {"overheat", required_argument, NULL, 1015},
        {"overheat-at", required_argument, NULL, 1016},
        {"overheat-for", required_argument, NULL, 1017},
        {"overheat-temp", required_argument, NULL, 1018},
        {"stay-offline", required_argument, NULL, 1019},
        {"thermal", no_argument, NULL, 1020},
        {"scenario-out", required_argument, NULL, 1021},
        {NULL, 0, NULL, 0},
    };
    int ch;
    uint64_t u;
    char err[512];
    while ((ch = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'V': printf("%s " FERRY_VERSION "\n", "ferry-fleet"); return 0;
        case 'i': cfg.ingest = optarg; break;
        case 't': cfg.token = optarg; break;
        case 'A': cfg.api_token = optarg; break;
        case 'd': cfg.data_dir = optarg; break;
        case 'n':
            if (ferry_parse_u64(optarg, 100000, &u) < 0 || u == 0) {
                fprintf(stderr, "ferry-fleet: --devices: 1..100000\n");
                return 2;
            }
            cfg.devices = (unsigned)u;
            break;
        case 'k':
            if (parse_ms("--tick", optarg, &cfg.tick_ms) < 0)
                return 2;
            break;
        case 'm':
            if (ferry_parse_u64(optarg, 64, &u) < 0 || u == 0) {
                fprintf(stderr, "ferry-fleet: --metrics-per-tick: 1..64\n");
                return 2;
            }
            cfg.metrics_per_tick = (unsigned)u;
            break;
        case 'l': {
            char *end;
            cfg.logs_per_tick = strtod(optarg, &end);
            if (*end || cfg.logs_per_tick < 0 || cfg.logs_per_tick > 1) {
                fprintf(stderr, "ferry-fleet: --logs-per-tick: a probability 0..1\n");
                return 2;
            }
            break;
        }
        case 'r':
            if (parse_ms("--duration", optarg, &cfg.run_ms) < 0)
                return 2;
            break;
        case 'D':
            if (parse_ms("--drain", optarg, &cfg.drain_ms) < 0)
                return 2;
            break;
        case 'a':
            if (parse_ms("--outage-at", optarg, &cfg.outage_at_ms) < 0)
                return 2;
            break;
        case 'o':
            if (parse_ms("--outage", optarg, &cfg.outage_ms) < 0)
                return 2;
            break;
        case 'R':
            if (parse_ms("--report", optarg, &cfg.report_ms) < 0)
                return 2;
            break;
        case 'B':
            if (parse_ms("--backoff-max", optarg, &cfg.backoff_max_ms) < 0)
                return 2;
            break;
        case 'N':
            if (ferry_parse_u64(optarg, 256, &u) < 0) {
                fprintf(stderr, "ferry-fleet: --processes: 0..256 (0 = automatic)\n");
                return 2;
            }
            n_procs = (unsigned)u;
            break;
        case 'Y': {
            enum journal_durability mode;
            if (journal_durability_parse(optarg, &mode) != 0) {
                fprintf(stderr, "ferry-fleet: --durability: os, periodic or commit\n");
                return 2;
            }
            cfg.durability = (int)mode;
            break;
        }
        case 'p': mix = optarg; break;
        case 'P': dir = optarg; break;
        case 'O': devices_out = optarg; break;
        case 'q':
            if (ferry_parse_size(optarg, &cfg.quota_bytes) < 0 || cfg.quota_bytes < (1u << 20)) {
                fprintf(stderr, "ferry-fleet: --quota: a size of at least 1MiB\n");
                return 2;
            }
            break;
        case 's':
            if (ferry_parse_u64(optarg, UINT64_MAX, &cfg.seed) < 0) {
                fprintf(stderr, "ferry-fleet: --seed: a non-negative integer\n");
                return 2;
            }
            break;
        case 1000:
            if (parse_number("--offline-share", optarg, 0, 1, &cfg.offline_share) < 0)
                return 2;
            break;
        case 1001:
            if (parse_ms("--offline-after", optarg, &cfg.offline_after_ms) < 0)
                return 2;
            offline_after_given = 1;
            break;
        case 1002:
            if (fleet_ota_add_key_file(&cfg.ota, optarg, err, sizeof err) < 0) {
                fprintf(stderr, "ferry-fleet: --ota-pub: %s\n", err);
                return 2;
            }
            cfg.ota.enabled = 1;
            break;
        case 1003:
            if (cfg.ota.n_components == FLEET_OTA_MAX_COMPONENTS || !manifest_name_valid(optarg)) {
                fprintf(stderr,
                        "ferry-fleet: --ota-component '%s': at most %d, each 1..64 of "
                        "[A-Za-z0-9._+-]\n",
                        optarg, FLEET_OTA_MAX_COMPONENTS);
                return 2;
            }
            cfg.ota.components[cfg.ota.n_components++] = optarg;
            break;
        case 1004:
            if (!manifest_name_valid(optarg)) {
                fprintf(stderr,
                        "ferry-fleet: --ota-initial-version '%s': 1..64 of "
                        "[A-Za-z0-9._+-]\n",
                        optarg);
                return 2;
            }
            cfg.ota.initial_version = optarg;
            break;
        case 1005:
            if (parse_ms("--ota-check", optarg, &cfg.ota.check_interval_ms) < 0)
                return 2;
            break;
        case 1006:
            if (parse_ms("--ota-reboot", optarg, &cfg.ota.reboot_ms) < 0)
                return 2;
            break;
        case 1007:
            if (parse_ms("--ota-trial", optarg, &cfg.ota.trial_deadline_ms) < 0)
                return 2;
            break;
        case 1008: cfg.ota.health_gates = strcmp(optarg, "none") == 0 ? NULL : optarg; break;
        case 1009:
            if (fleet_ota_parse_rule(optarg, 0, 1, cfg.ota.crashloop, &cfg.ota.n_crashloop, err,
                                     sizeof err) < 0) {
                fprintf(stderr, "ferry-fleet: --ota-crashloop: %s\n", err);
                return 2;
            }
            break;
        case 1010:
            if (fleet_ota_parse_rule(optarg, 0, 100, cfg.ota.fps, &cfg.ota.n_fps, err, sizeof err) <
                0) {
                fprintf(stderr, "ferry-fleet: --ota-fps: %s\n", err);
                return 2;
            }
            break;
        case 1011:
            if (parse_number("--fps", optarg, 0, 100000, &cfg.ota.fps_baseline) < 0)
                return 2;
            break;
        case 1012:
            if (parse_number("--fps-noise", optarg, 0, 1, &cfg.ota.fps_noise) < 0)
                return 2;
            break;
        case 1013:
            if (parse_number("--gpu-temp", optarg, -50, 150, &cfg.ota.gpu_baseline) < 0)
                return 2;
            break;
        case 1014:
        case 1015:
        case 1019:
            if (ferry_parse_u64(optarg, 100000, &u) < 0) {
                fprintf(stderr, "ferry-fleet: %s: 0..100000\n",
                        ch == 1014   ? "--outage-devices"
                        : ch == 1015 ? "--overheat"
                                     : "--stay-offline");
                return 2;
            }
            *(ch == 1014   ? &scen.outage_devices
              : ch == 1015 ? &scen.overheat_devices
                           : &scen.gone_devices) = (unsigned)u;
            break;
        case 1016:
            if (parse_ms("--overheat-at", optarg, &overheat_at_ms) < 0)
                return 2;
            break;
        case 1017:
            if (parse_ms("--overheat-for", optarg, &overheat_ms) < 0)
                return 2;
            break;
        case 1018:
            if (parse_number("--overheat-temp", optarg, -50, 200, &cfg.overheat_temp) < 0)
                return 2;
            break;
        case 1020: cfg.thermal = 1; break;
        case 1021: scenario_out = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!cfg.ingest || !cfg.token || !cfg.data_dir || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (cfg.ota.enabled && cfg.ota.n_components == 0)
        cfg.ota.components[cfg.ota.n_components++] = "rootfs";
    if (!cfg.ota.enabled && (cfg.ota.n_components || cfg.ota.n_crashloop || cfg.ota.n_fps)) {
        fprintf(stderr, "ferry-fleet: the --ota-* options need --ota-pub (the release key)\n");
        return 2;
    }
    uint8_t *roles = NULL;
    struct scenario_out so = {.path = scenario_out};
    if (scen.outage_devices || scen.overheat_devices || scen.gone_devices) {
        if (scen.outage_devices && cfg.outage_ms <= 0) {
            fprintf(stderr, "ferry-fleet: --outage-devices needs --outage-at and --outage\n");
            return 2;
        }
        scen.devices = cfg.devices;
        scen.seed = cfg.seed;
        roles = malloc(cfg.devices);
        if (!roles || fleet_scenario_assign(&scen, roles, err, sizeof err) < 0) {
            fprintf(stderr, "ferry-fleet: %s\n", roles ? err : "out of memory");
            free(roles);
            return 2;
        }
        cfg.roles = roles;
        cfg.roles_len = cfg.devices;
        if (!offline_after_given)
            cfg.offline_after_ms = cfg.outage_ms > 0 ? cfg.outage_at_ms : 0;
        cfg.overheat_at_ms =
            overheat_at_ms >= 0 ? overheat_at_ms : cfg.outage_at_ms + cfg.outage_ms / 5;
        cfg.overheat_ms = overheat_ms >= 0 ? overheat_ms : cfg.outage_ms * 3 / 5;
        if (scen.overheat_devices)
            cfg.thermal = 1;
        so.s = scen;
        so.roles = roles;
        so.t = (struct fleet_scenario_times){.tick_ms = cfg.tick_ms,
                                             .outage_at_ms = cfg.outage_at_ms,
                                             .outage_ms = cfg.outage_ms,
                                             .overheat_at_ms = cfg.overheat_at_ms,
                                             .overheat_ms = cfg.overheat_ms,
                                             .overheat_temp = cfg.overheat_temp,
                                             .gone_at_ms = cfg.offline_after_ms};
    }
    if (scenario_out) {
        if (!roles) {
            fprintf(stderr, "ferry-fleet: --scenario-out needs --outage-devices, --overheat or "
                            "--stay-offline\n");
            return 2;
        }
        cfg.on_start = write_scenario;
        cfg.on_start_arg = &so;
    }
    if (!dir)
        dir = FLAKY_PROFILE_DIR;
    struct fleet_profile_share shares[FLEET_MAX_SHARES];
    size_t n_shares;
    if (parse_shares(mix, dir, shares, &n_shares) < 0)
        return 2;
    cfg.shares = shares;
    cfg.n_shares = n_shares;
    ferry_log_init(FERRY_LOG_WARN, 2);
    signal(SIGPIPE, SIG_IGN);
    /* raises the soft descriptor limit */
    unsigned per_proc = fleet_devices_per_process(cfg.ota.enabled);
    if (n_procs == 0)
        n_procs = (cfg.devices + per_proc - 1) / per_proc;
    if (n_procs > cfg.devices)
        n_procs = cfg.devices;
    if (n_procs > 1) {
        struct fleet_totals t;
        int completed = 0;
        int wrc = fleet_run_workers(&cfg, n_procs, devices_out, &t, &completed);
        free(roles);
        if (wrc < 0)
            return 1;
        print_totals(&t, completed);
        return completed && t.acked == t.generated && t.found_in_ingest == t.acked ? 0 : 1;
    }
    int exit_code = 1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        free(roles);
        return 1;
    }
    struct fleet *fl = NULL;
    struct event *sigint = NULL, *sigterm = NULL;
    struct event_base *base = event_base_new();
    if (!base)
        goto out;
    if (fleet_new(base, &cfg, &fl, err, sizeof err) < 0) {
        fprintf(stderr, "ferry-fleet: %s\n", err);
        goto out;
    }
    sigint = evsignal_new(base, SIGINT, on_signal, base);
    sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    if (!sigint || !sigterm || event_add(sigint, NULL) < 0 || event_add(sigterm, NULL) < 0)
        goto out;
    if (cfg.on_start)
        cfg.on_start(cfg.on_start_arg);
    fleet_start(fl);
    event_base_dispatch(base);
    struct fleet_totals t;
    fleet_totals(fl, &t);
    if (fleet_count_in_ingest(fl, &t, err, sizeof err) < 0)
        fprintf(stderr, "ferry-fleet: %s\n", err);
    print_totals(&t, fleet_done(fl));
    if (devices_out)
        (void)fleet_write_devices(fl, devices_out);
    exit_code = (fleet_done(fl) && t.acked == t.generated && t.found_in_ingest == t.acked) ? 0 : 1;
out:
    if (sigint)
        event_free(sigint);
    if (sigterm)
        event_free(sigterm);
    fleet_free(fl);
    if (base)
        event_base_free(base);
    curl_global_cleanup();
    free(roles);
    return exit_code;
}
