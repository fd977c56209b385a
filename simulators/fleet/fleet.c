/*
 * fleet.c - many virtual devices on one event loop (see fleet.h).
 *
 * Per device: journal + sync engine + flaky proxy + a tick timer. One fleet-wide 1-second timer
 * samples every engine's status: acknowledged counts advance a per-device FIFO of ticks, each
 * tick's delay (acknowledged-at minus generated-at, 1 s resolution) goes into the delay list
 * weighted by its record count; request counts give the per-second request rate; the outage
 * starts and ends on this timer too.
 *
 * Lifecycle: RUNNING (ticks append) -> DRAINING (ticks stopped at run_ms; ends when no device
 * has a backlog or drain_ms passed) -> DONE (loop broken). fleet_free() tears down in reverse.
 */
#include "simulators/fleet/fleet.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"
#include "engine/sync.h"
#include "journal/journal.h"
#include "simulators/flaky/flaky_proxy.h"
#include "simulators/flaky/flaky_rng.h"
#include "simulators/fleet/fleet_scenario.h"
#include "transport/record.h"

enum fleet_phase { PHASE_RUNNING, PHASE_DRAINING, PHASE_DONE };

struct tick_mark {
    uint64_t upto; /* cumulative generated count after this tick */
    int64_t at_ms;
};

struct fleet_device {
    struct fleet *fleet;
    unsigned index;
    char name[32];
    char dir[4096];
    char url[64];
    const char *profile_name;
    struct flaky_profile saved_profile; /* the device's own profile during a cloud outage */
    struct flaky_rng rng;
    struct journal *journal;
    struct sync *sync;
    struct flaky_proxy *proxy;
    struct event *tick;
    uint64_t generated;
    uint64_t append_errors;
    uint64_t acked; /* metric + log records acknowledged, from the journal (device_acked) */
    struct tick_mark *marks;
    size_t mark_head, mark_count, mark_cap;
    double cpu[4];
    double temp;
    uint64_t found;
    int64_t first_tick_ms;
    struct fleet_ota_device ota;
    int chosen_offline; /* in offline_share, or FLEET_ROLE_GONE */
    int offline;        /* switched off now */
    int role;           /* enum fleet_role */
    int in_outage;      /* its link is down for the outage now */
    /* Wall-clock times of the scenario, for the test's exact checks (0: did not happen). */
    int64_t outage_down_ns, outage_up_ns, offline_ns;
    int64_t hot_first_ns, hot_last_ns, cool_after_ns;
};

struct fleet {
    struct event_base *base;
    struct fleet_config cfg;
    struct fleet_device *devs;
    unsigned n_devs;
    struct event *sampler;
    int64_t start_ms;
    int64_t drain_start_ms;
    int64_t drain_end_ms;
    enum fleet_phase phase;
    int outage_started, outage_ended;
    int64_t outage_end_ms;
    struct fleet_delay *delays;
    size_t n_delays, cap_delays;
    double *rate_before; /* per-second request rates before the outage */
    size_t n_before, cap_before;
    double peak_after;
    uint64_t last_batches;
    int64_t last_report_ms;
    uint32_t seconds; /* sampler runs so far */
    int started;
};

/* ---- helpers ----------------------------------------------------------------------------- */

static int push_delay(struct fleet *f, uint32_t ms, uint32_t records)
{
    if (f->n_delays == f->cap_delays) {
        size_t cap = f->cap_delays ? f->cap_delays * 2 : 1024;
        struct fleet_delay *n = realloc(f->delays, cap * sizeof *n);
        if (!n)
            return -1;
        f->delays = n;
        f->cap_delays = cap;
    }
    f->delays[f->n_delays++] = (struct fleet_delay){ms, records};
    return 0;
}

static int push_rate(struct fleet *f, double rate)
{
    if (f->n_before == f->cap_before) {
        size_t cap = f->cap_before ? f->cap_before * 2 : 256;
        double *n = realloc(f->rate_before, cap * sizeof *n);
        if (!n)
            return -1;
        f->rate_before = n;
        f->cap_before = cap;
    }
    f->rate_before[f->n_before++] = rate;
    return 0;
}

static int push_mark(struct fleet_device *d, uint64_t upto, int64_t at_ms)
{
    if (d->mark_count == d->mark_cap) {
        size_t cap = d->mark_cap ? d->mark_cap * 2 : 64;
        struct tick_mark *n = calloc(cap, sizeof *n);
        if (!n)
            return -1;
        for (size_t i = 0; i < d->mark_count; i++)
            n[i] = d->marks[(d->mark_head + i) % d->mark_cap];
        free(d->marks);
        d->marks = n;
        d->mark_cap = cap;
        d->mark_head = 0;
    }
    d->marks[(d->mark_head + d->mark_count) % d->mark_cap] = (struct tick_mark){upto, at_ms};
    d->mark_count++;
    return 0;
}

static struct record_str str_of(const char *s)
{
    return (struct record_str){s, strlen(s)};
}

/* ---- generating -------------------------------------------------------------------------- */

#define FLEET_MAX_PER_TICK 64

/* inference.fps and thermal.gpu of a device with simulated OTA: what the rollout gates and the
 * agents' health gates read. Noise is normal (Box-Muller) with the configured relative spread. */
static size_t pack_ota_metrics(struct fleet_device *d, int64_t ts_ns, struct ferry_buf *packed,
                               size_t *offsets, struct journal_append_req *reqs)
{
    const struct fleet_ota_config *oc = &d->fleet->cfg.ota;
    double u1 = flaky_rng_uniform(&d->rng), u2 = flaky_rng_uniform(&d->rng);
    double z = sqrt(-2.0 * log(u1 > 1e-12 ? u1 : 1e-12)) * cos(6.283185307179586 * u2);
    double fps = oc->fps_baseline * fleet_ota_fps_factor(&d->ota) * (1.0 + oc->fps_noise * z);
    if (fps < 0)
        fps = 0;
    d->ota.fps_last = fps;
    double gpu = oc->gpu_baseline + (d->temp - 45) + (flaky_rng_uniform(&d->rng) - 0.5);
    struct record_tag tags[1] = {{str_of("host"), str_of(d->name)}};
    struct record_field f_fps = {str_of("fps"), RECORD_FIELD_FLOAT, {.f = fps}};
    struct record_field f_gpu = {str_of("gpu"), RECORD_FIELD_FLOAT, {.f = gpu}};
    struct record recs[2] = {
        {.stream = RECORD_METRIC,
         .ts_ns = ts_ns,
         .name = str_of("inference"),
         .tags = tags,
         .n_tags = 1,
         .fields = &f_fps,
         .n_fields = 1},
        {.stream = RECORD_METRIC,
         .ts_ns = ts_ns,
         .name = str_of("thermal"),
         .tags = tags,
         .n_tags = 1,
         .fields = &f_gpu,
         .n_fields = 1},
    };
    size_t n = 0;
    for (int i = 0; i < 2; i++) {
        offsets[n] = packed->len;
        if (record_pack(&recs[i], packed) != 0)
            return n;
        reqs[n] = (struct journal_append_req){.stream = RECORD_METRIC, .ts_ns = ts_ns};
        n++;
        fleet_ota_observe(&d->ota, &recs[i]); /* as ferryd's inputs show them to the gates */
    }
    return n;
}

/* The Jetson collector's thermal record (engine/collect/jetson.c: measurement `temp`, tag
 * `sensor` = the zone's type, field `temp` in degrees C), so that a rule written for real devices
 * (`metric = temp.temp`) reads the fleet unchanged. An overheating device reports overheat_temp
 * (plus up to 2 degrees of noise) from overheat_at_ms for overheat_ms of the run; its first and
 * last hot sample and its first cool one after them are kept for the test's exact window check. */
static int pack_thermal(struct fleet_device *d, int64_t ts_ns, struct ferry_buf *packed)
{
    const struct fleet_config *cfg = &d->fleet->cfg;
    int64_t t_ms = ferry_monotonic_ms() - d->fleet->start_ms;
    bool hot = d->role == FLEET_ROLE_OVERHEAT && t_ms >= cfg->overheat_at_ms &&
               t_ms < cfg->overheat_at_ms + cfg->overheat_ms;
    double temp = hot ? cfg->overheat_temp + flaky_rng_uniform(&d->rng) * 2
                      : cfg->thermal_baseline + (flaky_rng_uniform(&d->rng) - 0.5) * 4;
    if (hot) {
        if (!d->hot_first_ns)
            d->hot_first_ns = ts_ns;
        d->hot_last_ns = ts_ns;
    } else if (d->hot_first_ns && !d->cool_after_ns) {
        d->cool_after_ns = ts_ns;
    }
    struct record_tag tags[1] = {{str_of("sensor"), str_of("GPU-therm")}};
    struct record_field field = {str_of("temp"), RECORD_FIELD_FLOAT, {.f = temp}};
    struct record r = {.stream = RECORD_METRIC,
                       .ts_ns = ts_ns,
                       .name = str_of("temp"),
                       .tags = tags,
                       .n_tags = 1,
                       .fields = &field,
                       .n_fields = 1};
    return record_pack(&r, packed);
}

/* Appends one tick: metrics_per_tick metric records cycling through a Jetson's usual
 * measurements (random walks, so they compress like real data), and sometimes a log line. */
static void device_tick(evutil_socket_t fd, short what, void *arg)
{
    struct fleet_device *d = arg;
    struct fleet *f = d->fleet;
    if (f->phase != PHASE_RUNNING)
        return;
    struct timeval period = {(time_t)(f->cfg.tick_ms / 1000),
                             (suseconds_t)(f->cfg.tick_ms % 1000 * 1000)};
    event_add(d->tick, &period);
    if (d->offline || fleet_ota_rebooting(&d->ota, ferry_monotonic_ms()))
        return; /* switched off, or down for a reboot: nothing to measure */
    static const char *const names[] = {"cpu", "mem", "temp", "gpu", "disk", "net", "power"};
    int64_t now_ns = ferry_realtime_ns();
    struct ferry_buf packed = FERRY_BUF_INIT;
    /* metrics, a log line, two OTA metrics, a thermal record */
    struct journal_append_req reqs[FLEET_MAX_PER_TICK + 4];
    size_t offsets[FLEET_MAX_PER_TICK + 4];
    size_t n = 0;
    unsigned want = f->cfg.metrics_per_tick;
    if (want > FLEET_MAX_PER_TICK)
        want = FLEET_MAX_PER_TICK;
    for (unsigned i = 0; i < want; i++) {
        int c = (int)(i % 4);
        d->cpu[c] += (flaky_rng_uniform(&d->rng) - 0.5) * 8;
        if (d->cpu[c] < 0.5)
            d->cpu[c] = 0.5;
        if (d->cpu[c] > 100)
            d->cpu[c] = 100;
        d->temp += (flaky_rng_uniform(&d->rng) - 0.5) * 0.6;
        if (d->temp < 35 || d->temp > 70) /* a random walk: kept in a plausible band */
            d->temp = d->temp < 35 ? 35 : 70;
        char core[8];
        snprintf(core, sizeof core, "c%d", c);
        struct record_tag tags[2] = {{str_of("host"), str_of(d->name)},
                                     {str_of("unit"), str_of(core)}};
        struct record_field fields[3] = {
            {str_of("value"), RECORD_FIELD_FLOAT, {.f = d->cpu[c]}},
            {str_of("temp"), RECORD_FIELD_FLOAT, {.f = d->temp}},
            {str_of("count"), RECORD_FIELD_INT, {.i = (int64_t)(d->generated + i)}},
        };
        struct record r = {.stream = RECORD_METRIC,
                           .ts_ns = now_ns + i,
                           .name = str_of(names[i % 7]),
                           .tags = tags,
                           .n_tags = 2,
                           .fields = fields,
                           .n_fields = 3};
        offsets[n] = packed.len;
        if (record_pack(&r, &packed) != 0)
            goto out;
        reqs[n] = (struct journal_append_req){.stream = RECORD_METRIC, .ts_ns = r.ts_ns};
        n++;
    }
    if (flaky_rng_chance(&d->rng, f->cfg.logs_per_tick)) {
        struct record_tag tags[1] = {{str_of("host"), str_of(d->name)}};
        struct record r = {.stream = RECORD_LOG,
                           .ts_ns = now_ns,
                           .name = str_of("app"),
                           .level = RECORD_LEVEL_INFO,
                           .message = str_of("pipeline restarted after dropped frames"),
                           .tags = tags,
                           .n_tags = 1};
        offsets[n] = packed.len;
        if (record_pack(&r, &packed) != 0)
            goto out;
        reqs[n] = (struct journal_append_req){.stream = RECORD_LOG, .ts_ns = now_ns};
        n++;
    }
    if (f->cfg.ota.enabled)
        n += pack_ota_metrics(d, now_ns, &packed, offsets + n, reqs + n);
    if (f->cfg.thermal) {
        offsets[n] = packed.len;
        if (pack_thermal(d, now_ns, &packed) != 0)
            goto out;
        reqs[n] = (struct journal_append_req){.stream = RECORD_METRIC, .ts_ns = now_ns};
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        size_t end = i + 1 < n ? offsets[i + 1] : packed.len;
        reqs[i].payload = packed.data + offsets[i];
        reqs[i].len = end - offsets[i];
    }
    /* Queued, not waited for: a producer that needs durability would pass WAIT; the fleet only
     * needs the records in the journal's order. */
    int rc = journal_appendv(d->journal, reqs, n, JOURNAL_APPEND_NONBLOCK);
    if (rc != 0) {
        d->append_errors += n;
        goto out;
    }
    d->generated += n;
    if (push_mark(d, d->generated, ferry_monotonic_ms()) < 0)
        d->append_errors++;
    sync_wake(d->sync);
out:
    ferry_buf_free(&packed);
}

/* ---- sampling ---------------------------------------------------------------------------- */

static uint64_t device_backlog(struct sync_status *st)
{
    return st->stream[RECORD_METRIC].backlog_records + st->stream[RECORD_LOG].backlog_records;
}

/*
 * Records of this device the cloud acknowledged, counted from the journal: everything generated
 * that is neither unsent nor evicted. The engine's own sent_records counts a record again when a
 * retried batch is acknowledged again, so it can exceed what was generated; the journal cannot.
 * (A record appended but not yet committed counts as acknowledged for the few hundred
 * microseconds of the commit window.)
 */
static uint64_t device_acked(struct fleet_device *d)
{
    struct journal_stats js;
    if (journal_stats(d->journal, &js) != 0)
        return d->acked;
    uint64_t gone = 0;
    for (int s = RECORD_METRIC; s <= RECORD_LOG; s++)
        gone += js.stream[s].unsent_records + js.stream[s].evicted_records;
    return d->generated > gone ? d->generated - gone : 0;
}

static void sampler_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fleet *f = arg;
    int64_t now = ferry_monotonic_ms();
    int64_t t = now - f->start_ms;
    uint64_t backlog = 0, batches = 0, acked = 0, generated = 0;
    unsigned enrolled = 0;
    for (unsigned i = 0; i < f->n_devs; i++) {
        struct fleet_device *d = &f->devs[i];
        struct sync_status st;
        sync_get_status(d->sync, &st);
        d->acked = device_acked(d);
        while (d->mark_count && d->marks[d->mark_head].upto <= d->acked) {
            struct tick_mark *m = &d->marks[d->mark_head];
            (void)push_delay(f, (uint32_t)(now - m->at_ms), 1);
            d->mark_head = (d->mark_head + 1) % d->mark_cap;
            d->mark_count--;
        }
        /* The tick wakes the engine right after a queued (not yet committed) append; an
         * engine that evaluates before the commit sees nothing to send, and after the last
         * tick nothing would wake it again (ferryd wakes it after durability instead). So
         * every device with unacknowledged records is woken once a second here. */
        if (d->generated > d->acked)
            sync_wake(d->sync);
        char oerr[512];
        if (fleet_ota_step(&d->ota, now, oerr, sizeof oerr) < 0)
            fprintf(stderr, "fleet: %s\n", oerr);
        if (d->chosen_offline && !d->offline && t >= f->cfg.offline_after_ms) {
            d->offline = 1; /* switched off: its link goes down and stays down */
            d->offline_ns = ferry_realtime_ns();
            flaky_proxy_force_down(d->proxy, 1);
        }
        backlog += device_backlog(&st);
        batches += st.batches_sent;
        acked += d->acked;
        generated += d->generated;
        enrolled += st.enrolled;
    }
    double rate = (double)(batches - f->last_batches);
    f->last_batches = batches;
    if (!f->outage_started)
        (void)push_rate(f, rate);
    else if (f->outage_ended && now - f->outage_end_ms <= 120000 && rate > f->peak_after)
        f->peak_after = rate;

    if (f->cfg.outage_ms > 0 && !f->outage_started && t >= f->cfg.outage_at_ms) {
        f->outage_started = 1;
        /* A cloud outage refuses: the ingest is gone, not the device's radio, so open
         * requests are reset and new connections refused (instead of the profile's own
         * down behaviour, which for a radio link holds them). */
        int64_t wall_ns = ferry_realtime_ns();
        for (unsigned i = 0; i < f->n_devs; i++) {
            struct fleet_device *d = &f->devs[i];
            /* With a scenario, only its outage devices lose their link. */
            if (f->cfg.roles && d->role != FLEET_ROLE_OUTAGE && d->role != FLEET_ROLE_OVERHEAT)
                continue;
            struct flaky_profile p = *flaky_proxy_profile(d->proxy);
            d->saved_profile = p;
            p.down_existing = FLAKY_DOWN_RESET;
            p.down_new = FLAKY_DOWN_REFUSE;
            flaky_proxy_set_profile(d->proxy, &p);
            flaky_proxy_force_down(d->proxy, 1);
            d->in_outage = 1;
            d->outage_down_ns = wall_ns;
        }
        if (!f->cfg.on_second)
            fprintf(stderr, "fleet: t=%llds %s outage begins (%llds)\n", (long long)(t / 1000),
                    f->cfg.roles ? "partial" : "cloud", (long long)(f->cfg.outage_ms / 1000));
    } else if (f->outage_started && !f->outage_ended &&
               t >= f->cfg.outage_at_ms + f->cfg.outage_ms) {
        f->outage_ended = 1;
        f->outage_end_ms = now;
        int64_t wall_ns = ferry_realtime_ns();
        for (unsigned i = 0; i < f->n_devs; i++) {
            struct fleet_device *d = &f->devs[i];
            if (!d->in_outage)
                continue;
            d->in_outage = 0;
            d->outage_up_ns = wall_ns;
            flaky_proxy_set_profile(d->proxy, &d->saved_profile);
            if (!d->offline)
                flaky_proxy_force_down(d->proxy, 0);
        }
        if (!f->cfg.on_second)
            fprintf(stderr, "fleet: t=%llds cloud outage ends\n", (long long)(t / 1000));
    }
    if (f->cfg.on_second) {
        struct fleet_second sec = {.index = ++f->seconds,
                                   .t_ms = t,
                                   .enrolled = enrolled,
                                   .generated = generated,
                                   .acked = acked,
                                   .backlog = backlog,
                                   .batches = batches,
                                   .outage = f->outage_ended     ? 2
                                             : f->outage_started ? 1
                                                                 : 0};
        f->cfg.on_second(f->cfg.on_second_arg, &sec);
    } else if (f->cfg.report_ms > 0 && now - f->last_report_ms >= f->cfg.report_ms) {
        f->last_report_ms = now;
        fprintf(stderr,
                "fleet: t=%llds enrolled=%u/%u generated=%llu acked=%llu backlog=%llu "
                "requests/s=%.0f\n",
                (long long)(t / 1000), enrolled, f->n_devs, (unsigned long long)generated,
                (unsigned long long)acked, (unsigned long long)backlog, rate);
    }
    if (f->phase == PHASE_RUNNING && t >= f->cfg.run_ms) {
        f->phase = PHASE_DRAINING;
        f->drain_start_ms = now;
    }
    if (f->phase == PHASE_DRAINING) {
        int outage_pending = f->cfg.outage_ms > 0 && !f->outage_ended;
        if ((backlog == 0 && acked >= generated && !outage_pending) ||
            now - f->drain_start_ms >= f->cfg.drain_ms) {
            f->phase = PHASE_DONE;
            f->drain_end_ms = now;
            event_base_loopbreak(f->base);
        }
    }
}

/* ---- setup and teardown ------------------------------------------------------------------ */

static const struct flaky_profile *pick_profile(const struct fleet_config *cfg,
                                                struct flaky_rng *rng)
{
    double total = 0;
    for (size_t i = 0; i < cfg->n_shares; i++)
        total += cfg->shares[i].weight;
    double x = flaky_rng_uniform(rng) * total;
    for (size_t i = 0; i < cfg->n_shares; i++) {
        if (x < cfg->shares[i].weight)
            return &cfg->shares[i].profile;
        x -= cfg->shares[i].weight;
    }
    return &cfg->shares[cfg->n_shares - 1].profile;
}

static int device_init(struct fleet *f, struct fleet_device *d, unsigned index, char *err,
                       size_t err_len)
{
    const struct fleet_config *cfg = &f->cfg;
    d->fleet = f;
    d->index = index;
    snprintf(d->name, sizeof d->name, "fleet-%05u", index);
    flaky_rng_seed(&d->rng, cfg->seed, 0xf1ee70000000ULL + index);
    d->cpu[0] = d->cpu[1] = d->cpu[2] = d->cpu[3] = 20;
    d->temp = 45;
    if ((size_t)snprintf(d->dir, sizeof d->dir, "%s/dev-%05u", cfg->data_dir, index) >=
        sizeof d->dir) {
        snprintf(err, err_len, "data dir too long");
        return FLAKY_ERR_INVALID;
    }
    const struct flaky_profile *prof = pick_profile(cfg, &d->rng);
    struct flaky_proxy_config pc = {.listen = "127.0.0.1:0",
                                    .upstream = cfg->ingest,
                                    .seed = cfg->seed * 1000003u + index,
                                    .profile = prof};
    int rc = flaky_proxy_new(f->base, &pc, &d->proxy, err, err_len);
    if (rc < 0)
        return rc;
    d->profile_name = flaky_proxy_profile(d->proxy)->name;
    snprintf(d->url, sizeof d->url, "http://127.0.0.1:%d", flaky_proxy_listen_port(d->proxy));

    struct journal_config jc;
    journal_config_init(&jc);
    jc.quota_bytes = cfg->quota_bytes;
    jc.durability = (enum journal_durability)cfg->durability;
    char jerr[256] = "";
    rc = journal_open(d->dir, &jc, &d->journal, NULL, jerr, sizeof jerr);
    if (rc != 0) {
        snprintf(err, err_len, "%s: journal: %s: %s", d->name, journal_strerror(rc), jerr);
        return FLAKY_ERR_IO;
    }
    struct sync_config sc;
    sync_config_init(&sc);
    sc.data_dir = d->dir;
    sc.server_url = d->url;
    sc.enroll_token = cfg->token;
    sc.device_name = d->name;
    sc.device_class = "ferry-fleet";
    sc.no_netlink = true;
    sc.no_process_release = true; /* a thousand engines share this process */
    /* Metrics within a tick's time, so the delay measures the link and the engine. */
    sc.latency_ms[RECORD_METRIC] = cfg->tick_ms;
    sc.latency_ms[RECORD_LOG] = cfg->tick_ms * 3;
    if (cfg->backoff_max_ms > 0)
        sc.backoff_max_ms = cfg->backoff_max_ms;
    char serr[256] = "";
    rc = sync_new(f->base, d->journal, &sc, &d->sync, serr, sizeof serr);
    if (rc != 0) {
        snprintf(err, err_len, "%s: sync: %s: %s", d->name, sync_strerror(rc), serr);
        return FLAKY_ERR_EVENT;
    }
    d->tick = evtimer_new(f->base, device_tick, d);
    if (!d->tick) {
        snprintf(err, err_len, "%s: event_new failed", d->name);
        return FLAKY_ERR_EVENT;
    }
    fleet_ota_device_init(&d->ota, &f->cfg.ota, f->base, d->journal, d->sync, d->name, d->dir,
                          d->url);
    d->role = cfg->roles && index < cfg->roles_len ? cfg->roles[index] : FLEET_ROLE_NONE;
    d->chosen_offline =
        d->role == FLEET_ROLE_GONE ||
        (cfg->offline_share > 0 && fleet_ota_stable_unit(d->name, "offline") < cfg->offline_share);
    /* Spread the first ticks over one period so the fleet does not march in step. */
    d->first_tick_ms = 1 + (int64_t)(flaky_rng_uniform(&d->rng) * (double)cfg->tick_ms);
    return FLAKY_OK;
}

int fleet_new(struct event_base *base, const struct fleet_config *cfg, struct fleet **out,
              char *err, size_t err_len)
{
    if (cfg->devices == 0 || cfg->n_shares == 0 || cfg->tick_ms <= 0) {
        snprintf(err, err_len, "need at least one device, one profile and a positive tick");
        return FLAKY_ERR_INVALID;
    }
    struct fleet *f = calloc(1, sizeof *f);
    if (!f)
        return FLAKY_ERR_NOMEM;
    f->base = base;
    f->cfg = *cfg; /* shares are read by device_init only; cleared below */
    f->devs = calloc(cfg->devices, sizeof *f->devs);
    int rc = FLAKY_ERR_NOMEM;
    if (!f->devs)
        goto fail;
    int mk = ferry_mkdir_p(cfg->data_dir, 0700);
    if (mk < 0) {
        snprintf(err, err_len, "%s: %s", cfg->data_dir, strerror(-mk));
        rc = FLAKY_ERR_IO;
        goto fail;
    }
    for (unsigned i = 0; i < cfg->devices; i++) {
        f->n_devs = i + 1;
        rc = device_init(f, &f->devs[i], cfg->first_device + i, err, err_len);
        if (rc < 0)
            goto fail;
    }
    f->cfg.shares = NULL; /* each proxy holds a copy of its profile */
    f->sampler = event_new(base, -1, EV_PERSIST, sampler_cb, f);
    if (!f->sampler) {
        rc = FLAKY_ERR_EVENT;
        goto fail;
    }
    *out = f;
    return FLAKY_OK;
fail:
    fleet_free(f);
    return rc;
}

void fleet_start(struct fleet *f)
{
    if (f->started)
        return;
    f->started = 1;
    f->start_ms = ferry_monotonic_ms();
    f->last_report_ms = f->start_ms;
    for (unsigned i = 0; i < f->n_devs; i++) {
        if (f->devs[i].chosen_offline && f->cfg.offline_after_ms <= 0) {
            f->devs[i].offline = 1; /* never connects */
            f->devs[i].offline_ns = ferry_realtime_ns();
            flaky_proxy_force_down(f->devs[i].proxy, 1);
        }
        int64_t ms = f->devs[i].first_tick_ms;
        struct timeval first = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000 * 1000)};
        event_add(f->devs[i].tick, &first);
    }
    struct timeval sec = {1, 0};
    event_add(f->sampler, &sec);
}

void fleet_delays(const struct fleet *f, const struct fleet_delay **out, size_t *n)
{
    *out = f->delays;
    *n = f->n_delays;
}

void fleet_free(struct fleet *f)
{
    if (!f)
        return;
    if (f->sampler)
        event_free(f->sampler);
    for (unsigned i = 0; i < f->n_devs; i++) {
        struct fleet_device *d = &f->devs[i];
        if (d->tick)
            event_free(d->tick);
        fleet_ota_device_free(&d->ota); /* before the engine its requests are signed by */
        sync_free(d->sync);
        if (d->journal)
            (void)journal_close(d->journal);
        flaky_proxy_free(d->proxy);
        free(d->marks);
    }
    free(f->devs);
    free(f->delays);
    free(f->rate_before);
    free(f);
}

int fleet_done(const struct fleet *f)
{
    return f->phase == PHASE_DONE;
}

static int cmp_delay(const void *a, const void *b)
{
    const struct fleet_delay *x = a, *y = b;
    return (x->ms > y->ms) - (x->ms < y->ms);
}

static double percentile(const struct fleet_delay *s, size_t n, double p)
{
    if (!n)
        return 0;
    size_t idx = (size_t)(p * (double)(n - 1) + 0.5);
    return s[idx].ms;
}

void fleet_summarize(struct fleet_delay *delays, size_t n_delays, const double *rates_before,
                     size_t n_before, struct fleet_totals *out)
{
    qsort(delays, n_delays, sizeof *delays, cmp_delay);
    out->delay_p50_ms = percentile(delays, n_delays, 0.50);
    out->delay_p90_ms = percentile(delays, n_delays, 0.90);
    out->delay_p99_ms = percentile(delays, n_delays, 0.99);
    out->delay_max_ms = n_delays ? delays[n_delays - 1].ms : 0;
    out->steady_requests_per_s = 0;
    if (n_before) {
        /* Skip the first seconds (enrollment) when there is enough history. */
        size_t skip = n_before > 10 ? 5 : 0;
        double sum = 0;
        for (size_t i = skip; i < n_before; i++)
            sum += rates_before[i];
        out->steady_requests_per_s = sum / (double)(n_before - skip);
    }
}

void fleet_totals(struct fleet *f, struct fleet_totals *out)
{
    memset(out, 0, sizeof *out);
    out->devices = f->n_devs;
    for (unsigned i = 0; i < f->n_devs; i++) {
        struct fleet_device *d = &f->devs[i];
        struct sync_status st;
        sync_get_status(d->sync, &st);
        out->enrolled += st.enrolled;
        out->generated += d->generated;
        out->append_errors += d->append_errors;
        out->acked += device_acked(d);
        out->engine_sent +=
            st.stream[RECORD_METRIC].sent_records + st.stream[RECORD_LOG].sent_records;
        out->backlog += device_backlog(&st);
        out->batches += st.batches_sent;
        out->found_in_ingest += d->found;
        out->offline += (unsigned)d->offline;
        out->ota_reboots += d->ota.reboots;
        out->ota_crashes += d->ota.crashes;
        for (size_t c = 0; f->cfg.ota.enabled && c < f->cfg.ota.n_components; c++) {
            char state[24], running[65], target[65];
            fleet_ota_component(&d->ota, c, state, running, target);
            if (strcmp(state, "committed") == 0)
                out->ota_committed++;
            else if (strcmp(state, "rolled_back") == 0)
                out->ota_rolled_back++;
            else if (strcmp(state, "failed") == 0)
                out->ota_failed++;
            else if (strcmp(state, "idle") == 0 || state[0] == '\0')
                out->ota_idle++;
            else
                out->ota_other++;
        }
    }
    fleet_summarize(f->delays, f->n_delays, f->rate_before, f->n_before, out);
    out->peak_requests_per_s = f->peak_after;
    out->drain_ms = f->drain_end_ms ? (double)(f->drain_end_ms - f->drain_start_ms) : 0;
}

static size_t collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct ferry_buf *b = arg;
    size_t n = size * nmemb;
    if (b->len + n > (64u << 20) || ferry_buf_append(b, ptr, n) != 0)
        return 0;
    return n;
}

int fleet_count_in_ingest(struct fleet *f, struct fleet_totals *out, char *err, size_t err_len)
{
    char url[512];
    snprintf(url, sizeof url, "http://%s/v1/devices", f->cfg.ingest);
    struct ferry_buf body = FERRY_BUF_INIT;
    CURL *c = curl_easy_init();
    int rc = -1;
    json_t *root = NULL;
    if (!c)
        goto out;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    /* The read API needs a viewer token (ferry-ingest token create --role viewer). */
    char authz[256];
    struct curl_slist *hdrs = NULL;
    if (f->cfg.api_token != NULL) {
        snprintf(authz, sizeof authz, "Authorization: Bearer %s", f->cfg.api_token);
        hdrs = curl_slist_append(NULL, authz);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    }
    CURLcode cc = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    if (cc != CURLE_OK) {
        snprintf(err, err_len, "GET %s: %s", url, curl_easy_strerror(cc));
        goto out;
    }
    json_error_t jerr;
    root = json_loadb((const char *)body.data, body.len, 0, &jerr);
    json_t *devs = root ? json_object_get(root, "devices") : NULL;
    if (!json_is_array(devs)) {
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        snprintf(err, err_len, "GET %s: HTTP %ld, not a device list%s", url, status,
                 status == 401 ? " (give a viewer token with --api-token)" : "");
        goto out;
    }
    out->found_in_ingest = 0;
    size_t i;
    json_t *dv;
    json_array_foreach(devs, i, dv)
    {
        /* By name, then by id: an ingest that served an earlier fleet holds other devices of
         * the same names, and a worker process holds only its slice. */
        const char *name = json_string_value(json_object_get(dv, "name"));
        const char *id = json_string_value(json_object_get(dv, "id"));
        unsigned idx;
        if (!name || !id || sscanf(name, "fleet-%5u", &idx) != 1 || idx < f->cfg.first_device ||
            idx - f->cfg.first_device >= f->n_devs)
            continue;
        idx -= f->cfg.first_device;
        struct sync_status st;
        sync_get_status(f->devs[idx].sync, &st);
        if (strcmp(st.device_id, id) != 0)
            continue;
        json_t *streams = json_object_get(dv, "streams");
        uint64_t n = 0;
        const char *keys[2] = {"metric", "log"};
        for (int k = 0; k < 2; k++)
            n += (uint64_t)json_integer_value(
                json_object_get(json_object_get(streams, keys[k]), "records"));
        f->devs[idx].found = n;
        out->found_in_ingest += n;
    }
    rc = 0;
out:
    json_decref(root);
    if (c)
        curl_easy_cleanup(c);
    ferry_buf_free(&body);
    return rc;
}

int fleet_write_devices(struct fleet *f, const char *path)
{
    FILE *fp = fopen(path, "w");
    if (!fp) {
        fprintf(stderr, "ferry-fleet: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fleet_print_devices(f, fp);
    if (fclose(fp) != 0) {
        fprintf(stderr, "ferry-fleet: %s: write failed\n", path);
        return -1;
    }
    return 0;
}

void fleet_print_devices(struct fleet *f, void *file)
{
    FILE *fp = file;
    for (unsigned i = 0; i < f->n_devs; i++) {
        struct fleet_device *d = &f->devs[i];
        struct sync_status st;
        sync_get_status(d->sync, &st);
        fprintf(fp,
                "{\"device\":\"%s\",\"id\":\"%s\",\"profile\":\"%s\",\"generated\":%llu,"
                "\"acked\":%llu,\"found\":%llu,\"backlog\":%llu,\"append_errors\":%llu,"
                "\"in_flight\":%u,\"failures\":%u,\"next_attempt_in_ms\":%lld,"
                "\"last_error\":\"%s\",\"offline\":%s",
                d->name, st.device_id, d->profile_name, (unsigned long long)d->generated,
                (unsigned long long)device_acked(d), (unsigned long long)d->found,
                (unsigned long long)device_backlog(&st), (unsigned long long)d->append_errors,
                st.in_flight, st.consecutive_failures, (long long)st.next_attempt_in_ms,
                st.last_error, d->offline ? "true" : "false");
        if (f->cfg.roles)
            fprintf(fp,
                    ",\"role\":\"%s\",\"outage_down_ns\":%lld,\"outage_up_ns\":%lld,"
                    "\"offline_ns\":%lld,\"hot_first_ns\":%lld,\"hot_last_ns\":%lld,"
                    "\"cool_after_ns\":%lld",
                    fleet_role_name(d->role), (long long)d->outage_down_ns,
                    (long long)d->outage_up_ns, (long long)d->offline_ns,
                    (long long)d->hot_first_ns, (long long)d->hot_last_ns,
                    (long long)d->cool_after_ns);
        if (f->cfg.ota.enabled) {
            fprintf(fp, ",\"fps\":%.2f,\"reboots\":%u,\"crashes\":%u,\"ota\":{", d->ota.fps_last,
                    d->ota.reboots, d->ota.crashes);
            for (size_t c = 0; c < f->cfg.ota.n_components; c++) {
                char state[24], running[65], target[65];
                fleet_ota_component(&d->ota, c, state, running, target);
                /* versions and states are the manifest's [A-Za-z0-9._+-] names: no escaping */
                fprintf(fp, "%s\"%s\":{\"state\":\"%s\",\"running\":\"%s\",\"target\":\"%s\"}",
                        c ? "," : "", f->cfg.ota.components[c], state, running, target);
            }
            fputc('}', fp);
        }
        fputs("}\n", fp);
    }
}
