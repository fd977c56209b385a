/*
 * test_agent.c - the OTA agent end to end: a real ferry-ingest serving signed releases, a real
 * journal, simulated A/B slots (files; a "reboot" is a new agent after ota_slots_boot), the
 * downloader on libcurl multi + libevent. Proves: delta install → reboot → trial → commit;
 * a failing health check rolls back to the good slot with the reason; a modified running image
 * makes the agent take the full artifact; a manifest signed by an unknown key is refused and
 * nothing is written; two components (a model and an app file) update and roll back
 * independently; a release condition on local metrics is evaluated from the journal before any
 * download (insufficient, not met, met; an unreadable one is never installed).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <sodium.h>

#include "cloud-ingest/ingest.h"
#include "cloud-ingest/release/release.h"
#include "common/buf.h"
#include "common/util.h"
#include "engine/ota/ota.h"
#include "journal/journal.h"
#include "transport/delta.h"
#include "transport/http_client.h"
#include "transport/manifest.h"
#include "transport/record.h"
#include "transport/reqsign.h"

#define IMG_BYTES (3u << 20)

static char tmpdir[256];
static struct ingest_config icfg;
static struct ingest_store *store;
static struct ingest_server *server;
static pthread_t server_thread;
static uint16_t port;
static uint8_t pk[32], sk[64], other_pk[32], other_sk[64];
static struct journal *journal;
static uint64_t serial = 1;
static const char *component = "rootfs"; /* what release() publishes and run_agent() installs */
static const char *install_path;         /* file components: the file, NULL for slots */
static enum ota_metered_policy metered_policy; /* and where the agent reads the default route */
static const char *route_file;
static const char *want_reason; /* run_agent*() also waits for this in the state's reason */
static const char *ferry_cli; /* path of the `ferry` binary (argv[1]), for `ferry update status` */
static const struct manifest_condition *release_condition; /* release() adds it when set */
static const char *sabotage_from, *sabotage_to; /* release() edits the payload before signing */
static struct journal *journal2;                /* the two-component device's journal */

static void *run_server(void *arg)
{
    (void)arg;
    int rc = ingest_server_run(server, false);
    (void)rc;
    return NULL;
}

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

/* Image of version `v`: deterministic bytes, each version changing a few regions. */
static void make_image(const char *path, int v)
{
    uint8_t *p = malloc(IMG_BYTES);
    assert_non_null(p);
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < IMG_BYTES; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
    /* Region k starts at k * 300000, wrapped so that every version fits in the image (version
     * 11 would start past its end); its length grows with k and stays below 64 KiB to v = 44. */
    const size_t span = IMG_BYTES - (64u << 10);
    for (int k = 1; k <= v; k++) {
        size_t len = 20000 + (size_t)k * 1000;
        assert_true(len <= (64u << 10));
        memset(p + ((size_t)k * 300000) % span, k, len);
    }
    assert_int_equal(ferry_write_file_atomic(path, p, IMG_BYTES, 0644), 0);
    free(p);
}

/* Creates and publishes release `version` (image v) with a delta from base image `base_v` (or
 * none when base_v < 0), signed with `key`. */
static void release(const char *version, int v, int base_v, const uint8_t *key)
{
    char tgt[512], base[512], full[512], delta[512], man[512], pub[512], err[256], hex[65];
    path_in(tgt, sizeof(tgt), "rel-target.img");
    path_in(base, sizeof(base), "rel-base.img");
    path_in(full, sizeof(full), "rel-full.fdl");
    path_in(delta, sizeof(delta), "rel-delta.fdl");
    path_in(man, sizeof(man), "rel-manifest.json");
    path_in(pub, sizeof(pub), "rel.pub");
    make_image(tgt, v);
    struct delta_make_options o;
    delta_make_options_default(&o);
    o.level = 3;
    o.window_bytes = 1u << 20;
    struct manifest_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.component = component;
    spec.version = version;
    spec.device_class = "c1";
    spec.serial = serial++;
    spec.condition = release_condition;
    uint64_t tsize;
    assert_int_equal(delta_sha256_file(tgt, UINT64_MAX, spec.target_sha256, &tsize), 0);
    spec.target_size = tsize;
    assert_int_equal(delta_make(NULL, tgt, full, &o, NULL, err, sizeof(err)), 0);
    assert_int_equal(
        manifest_spec_add_file(&spec, full, MANIFEST_ARTIFACT_FULL, 65536, err, sizeof(err)), 0);
    if (base_v >= 0) {
        make_image(base, base_v);
        assert_int_equal(delta_make(base, tgt, delta, &o, NULL, err, sizeof(err)), 0);
        assert_int_equal(
            manifest_spec_add_file(&spec, delta, MANIFEST_ARTIFACT_DELTA, 65536, err, sizeof(err)),
            0);
        struct delta_info in;
        assert_int_equal(delta_read_info(delta, &in, err, sizeof(err)), 0);
        struct manifest_artifact *a = &spec.artifacts[1];
        snprintf(a->base_version, sizeof(a->base_version), "base-%d", base_v);
        memcpy(a->base_sha256, in.base_sha256, 32);
        a->base_size = in.base_size;
    }
    struct ferry_buf payload = FERRY_BUF_INIT, env = FERRY_BUF_INIT;
    assert_int_equal(manifest_build_payload(&spec, &payload, err, sizeof(err)), 0);
    if (sabotage_from) { /* what a newer release tool might write: signed, but not understood */
        char *at = strstr((char *)payload.data, sabotage_from);
        assert_non_null(at);
        struct ferry_buf edited = FERRY_BUF_INIT;
        assert_int_equal(
            ferry_buf_append(&edited, payload.data, (size_t)(at - (char *)payload.data)), 0);
        assert_int_equal(ferry_buf_append(&edited, sabotage_to, strlen(sabotage_to)), 0);
        size_t rest = strlen(at) - strlen(sabotage_from);
        assert_int_equal(ferry_buf_append(&edited, at + strlen(sabotage_from), rest), 0);
        ferry_buf_free(&payload);
        payload = edited;
    }
    assert_int_equal(manifest_sign(payload.data, payload.len, key, &env), 0);
    assert_int_equal(ferry_write_file_atomic(man, env.data, env.len, 0644), 0);
    uint8_t pkey[32];
    crypto_sign_ed25519_sk_to_pk(pkey, key);
    ferry_hex_encode(pkey, 32, hex);
    assert_int_equal(ferry_write_file_atomic(pub, hex, 64, 0644), 0);
    char *argv[] = {"release", "publish", "--pub", pub, man, full, delta, NULL};
    assert_int_equal(ingest_release_main(&icfg, base_v >= 0 ? 7 : 6, argv), 0);
    ferry_buf_free(&payload);
    ferry_buf_free(&env);
    manifest_spec_clear(&spec);
}

/* ---- running an agent until it reaches a state ---- */

struct runner {
    struct event_base *base;
    struct http_client *http;
    struct ota_agent *agent;
    struct event *tick;
    const char *want;
    int reached;
    double fps; /* < 0: none; else an "inference fps=<fps>" sample every tick (the CV app) */
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct runner *r = arg;
    if (r->fps >= 0) {
        struct record_field f = {{"fps", 3}, RECORD_FIELD_FLOAT, {.f = r->fps}};
        struct record rec = {
            RECORD_METRIC, 0, ferry_realtime_ns(), {"inference", 9}, 0, {"", 0}, NULL, 0, &f, 1};
        ota_agent_observe(r->agent, &rec);
    }
    struct ota_status st;
    ota_agent_status(r->agent, &st);
    if (strcmp(st.state, r->want) == 0 && (!want_reason || strstr(st.reason, want_reason))) {
        r->reached = 1;
        event_base_loopbreak(r->base);
    }
}

static const char *health_ok[] = {"true", "test -d /"};
static const char *health_fail[] = {"true", "exit 3"};

static uint8_t dev_sk[64]; /* the key of "dev-1" as the ingest knows it */

/* What ferryd wires to sync_sign_request(): the device's manifest and artifact requests signed
 * with its key (transport/reqsign.h). */
static int sign_as_device(void *arg, const char *method, const char *target, int64_t time_s,
                          struct reqsign_headers *out)
{
    (void)arg;
    return reqsign_sign(dev_sk, method, target, "dev-1", time_s, out);
}

/* Boots (simulated) an agent and runs the loop until state `want` or 60 s; with `gates`, a CV
 * application reports `fps` every 50 ms meanwhile. */
static void run_agent_gated(const char *want, const char *const *health, const char *gates,
                            double fps, int64_t trial_deadline_ms, struct ota_status *out)
{
    char slots[512];
    path_in(slots, sizeof(slots), "slots");
    struct runner r = {0};
    r.base = event_base_new();
    r.http = http_client_new(r.base);
    assert_non_null(r.http);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", port);
    struct ota_config c = {0};
    c.data_dir = tmpdir;
    c.server_url = url;
    c.device_id = "dev-1";
    c.device_class = "c1";
    c.component = component;
    c.install_path = install_path;
    c.release_keys = (const uint8_t(*)[32])pk;
    c.n_release_keys = 1;
    c.slots.backend = "simulated";
    c.slots.dir = slots;
    c.check_interval_ms = 300;
    c.health_commands = health;
    c.n_health_commands = 2;
    c.health_timeout_ms = 5000;
    c.trial_deadline_ms = trial_deadline_ms;
    c.health_gates = gates;
    c.metered_policy = metered_policy;
    c.route_file = route_file;
    c.initial_version = "1.0.0";
    c.sign_request = sign_as_device;
    char err[256] = "";
    assert_int_equal(ota_agent_new(r.base, r.http, journal, &c, &r.agent, err, sizeof(err)), 0);
    r.want = want;
    r.fps = fps;
    r.tick = event_new(r.base, -1, EV_PERSIST, on_tick, &r);
    struct timeval tv = {0, 50000};
    event_add(r.tick, &tv);
    long long deadline = ferry_monotonic_ms() + 60000;
    while (!r.reached && ferry_monotonic_ms() < deadline) {
        struct timeval one = {1, 0};
        event_base_loopexit(r.base, &one);
        event_base_dispatch(r.base);
    }
    ota_agent_status(r.agent, out);
    if (!r.reached)
        print_message("agent is in state %s (%s), wanted %s\n", out->state, out->reason, want);
    ota_agent_free(r.agent); /* = the device goes down (a reboot follows in the next call) */
    event_free(r.tick);
    http_client_free(r.http);
    event_base_free(r.base);
    assert_true(r.reached);
}

static void run_agent(const char *want, const char *const *health, struct ota_status *out)
{
    run_agent_gated(want, health, NULL, -1, 20000, out);
}

/* Whether the file at `path` holds test image `v`. */
static int file_equals_image(const char *path, int v)
{
    char ip[512];
    path_in(ip, sizeof(ip), "expect.img");
    make_image(ip, v);
    uint8_t a[32], b[32];
    if (delta_sha256_file(path, UINT64_MAX, a, NULL) != 0 ||
        delta_sha256_file(ip, UINT64_MAX, b, NULL) != 0)
        return 0;
    return memcmp(a, b, 32) == 0;
}

static int slot_equals_image(const char *slot, int v)
{
    char sp[512];
    snprintf(sp, sizeof(sp), "%s/slots/slot-%s.img", tmpdir, slot);
    return file_equals_image(sp, v);
}

static void read_bootctl(char *out, size_t n)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/slots/bootctl", tmpdir);
    uint8_t *d = NULL;
    size_t len = 0;
    assert_int_equal(ferry_read_file(p, 4096, &d, &len), 0);
    ferry_strlcpy(out, (char *)d, n);
    free(d);
}

static void test_delta_install_trial_commit(void **state)
{
    (void)state;
    char slot_a[512];
    path_in(slot_a, sizeof(slot_a), "slots/slot-a.img");
    char dir[512];
    path_in(dir, sizeof(dir), "slots");
    assert_int_equal(ferry_mkdir_p(dir, 0755), 0);
    make_image(slot_a, 1); /* the factory image, version 1.0.0 */
    release("2.0.0", 2, 1, sk);
    struct ota_status st;
    run_agent("installed", health_ok, &st);
    assert_string_equal(st.artifact_kind, "delta");
    assert_string_equal(st.target_version, "2.0.0");
    assert_true(slot_equals_image("b", 2));
    run_agent("committed", health_ok, &st); /* reboot into b, trial, commit */
    assert_string_equal(st.running_version, "2.0.0");
    char boot[256];
    read_bootctl(boot, sizeof(boot));
    assert_non_null(strstr(boot, "current=b"));
    assert_non_null(strstr(boot, "good=b"));
    if (ferry_cli) { /* `ferry update status` reads the same state from the journal, read-only */
        char cmd[1024], out[2048] = "";
        snprintf(cmd, sizeof(cmd), "%s update status %s/journal", ferry_cli, tmpdir);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        size_t n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = '\0';
        assert_int_equal(pclose(p), 0);
        print_message("%s", out);
        assert_non_null(strstr(out, "state:    committed"));
        assert_non_null(strstr(out, "running:  2.0.0"));
        assert_non_null(strstr(out, "[########################################] 100%"));
    }
}

static void test_failing_health_check_rolls_back(void **state)
{
    (void)state;
    release("3.0.0", 3, 2, sk);
    struct ota_status st;
    run_agent("installed", health_ok, &st);
    assert_true(slot_equals_image("a", 3));
    run_agent("rolled_back", health_fail, &st);
    assert_non_null(strstr(st.reason, "exit 3"));
    assert_string_equal(st.running_version, "2.0.0");
    /* the next boot is back on the good slot b, and the agent stays rolled back */
    run_agent("rolled_back", health_ok, &st);
    char boot[256];
    read_bootctl(boot, sizeof(boot));
    assert_non_null(strstr(boot, "current=b"));
    assert_true(slot_equals_image("b", 2));
}

static void test_modified_base_takes_full_artifact(void **state)
{
    (void)state;
    /* the running slot b (2.0.0) was modified in place: no delta matches it */
    char slot_b[512];
    path_in(slot_b, sizeof(slot_b), "slots/slot-b.img");
    FILE *f = fopen(slot_b, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 1000, SEEK_SET), 0);
    assert_int_equal(fputc(0x42, f), 0x42);
    assert_int_equal(fclose(f), 0);
    release("4.0.0", 4, 2, sk);
    struct ota_status st;
    run_agent("installed", health_ok, &st);
    assert_string_equal(st.artifact_kind, "full");
    assert_true(slot_equals_image("a", 4));
    run_agent("committed", health_ok, &st);
    assert_string_equal(st.running_version, "4.0.0");
}

static void test_unknown_key_manifest_refused(void **state)
{
    (void)state;
    release("5.0.0", 5, 4, other_sk);
    struct ota_status st;
    run_agent("failed", health_ok, &st);
    assert_non_null(strstr(st.reason, "unknown key"));
    assert_string_equal(st.running_version, "4.0.0");
    assert_true(slot_equals_image("a", 4)); /* the running slot is unchanged */
}

/* A model file: replaced atomically, the previous kept as .prev; a failing check restores it. */
static void test_model_file_replaced_atomically_and_rolled_back(void **state)
{
    (void)state;
    char model[512], prev[600], dir[512];
    path_in(dir, sizeof(dir), "models");
    assert_int_equal(ferry_mkdir_p(dir, 0755), 0);
    path_in(model, sizeof(model), "models/detector.bin");
    snprintf(prev, sizeof(prev), "%s.prev", model);
    make_image(model, 1);
    component = "model";
    install_path = model;
    release("7.0.0", 7, 1, sk);
    struct ota_status st;
    run_agent("committed", health_ok, &st);
    assert_string_equal(st.artifact_kind, "delta");
    char expect[512];
    path_in(expect, sizeof(expect), "expect.img");
    uint8_t a[32], b[32];
    make_image(expect, 7);
    assert_int_equal(delta_sha256_file(model, UINT64_MAX, a, NULL), 0);
    assert_int_equal(delta_sha256_file(expect, UINT64_MAX, b, NULL), 0);
    assert_memory_equal(a, b, 32);
    make_image(expect, 1);
    assert_int_equal(delta_sha256_file(prev, UINT64_MAX, a, NULL), 0);
    assert_int_equal(delta_sha256_file(expect, UINT64_MAX, b, NULL), 0);
    assert_memory_equal(a, b, 32);
    /* the next model fails its check: the file is the previous one again */
    release("8.0.0", 8, 7, sk);
    run_agent("rolled_back", health_fail, &st);
    make_image(expect, 7);
    assert_int_equal(delta_sha256_file(model, UINT64_MAX, a, NULL), 0);
    assert_int_equal(delta_sha256_file(expect, UINT64_MAX, b, NULL), 0);
    assert_memory_equal(a, b, 32);
    component = "rootfs";
    install_path = NULL;
}

/* A model gated on what the application measures: at 12 fps the trial deadline passes and the
 * previous model comes back, with the gate and its last value in the reason; at 30 fps for the
 * gate's whole duration the model is committed. */
static void test_model_gated_on_fps(void **state)
{
    (void)state;
    char model[512];
    path_in(model, sizeof(model), "models/detector.bin");
    component = "model";
    install_path = model;
    struct ota_status st;
    release("9.0.0", 9, 7, sk);
    long long t0 = ferry_monotonic_ms();
    run_agent_gated("rolled_back", health_ok, "inference.fps >= 25 for 2s", 12.0, 4000, &st);
    assert_true(ferry_monotonic_ms() - t0 >= 4000); /* not before the deadline */
    print_message("rolled back: %s\n", st.reason);
    assert_non_null(strstr(st.reason, "health gate not met"));
    assert_non_null(strstr(st.reason, "inference.fps >= 25 for 2s: last value 12"));
    assert_true(file_equals_image(model, 7));

    release("10.0.0", 10, 7, sk);
    t0 = ferry_monotonic_ms();
    run_agent_gated("committed", health_ok,
                    "inference.fps >= 25 for 2s; inference.fps < 1000 for 1s", 30.0, 20000, &st);
    assert_true(ferry_monotonic_ms() - t0 >= 2000); /* the gate's duration was waited for */
    assert_string_equal(st.running_version, "10.0.0");
    assert_true(file_equals_image(model, 10));
    component = "rootfs";
    install_path = NULL;
}

/* ---- several components on one device ---- */

struct comp_run {
    const char *component;
    const char *install_path;
    const char *const *health;
    struct ota_agent *agent;
    struct ota_status st;
};

struct multi_runner {
    struct event_base *base;
    struct comp_run *comps;
    size_t n;
    int (*done)(struct multi_runner *m);
    int reached;
};

static void on_multi_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct multi_runner *m = arg;
    for (size_t i = 0; i < m->n; i++)
        ota_agent_status(m->comps[i].agent, &m->comps[i].st);
    if (m->done(m)) {
        m->reached = 1;
        event_base_loopbreak(m->base);
    }
}

/* Boots one agent per component, all on one loop and journal2 (as ferryd runs them), until
 * done() or 60 s. */
static void run_components(struct comp_run *comps, size_t n, int (*done)(struct multi_runner *))
{
    struct multi_runner m = {0};
    m.base = event_base_new();
    m.comps = comps;
    m.n = n;
    m.done = done;
    struct http_client *http = http_client_new(m.base);
    assert_non_null(http);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", port);
    for (size_t i = 0; i < n; i++) {
        struct ota_config c = {0};
        c.data_dir = tmpdir;
        c.server_url = url;
        c.device_id = "dev-1";
        c.device_class = "c1";
        c.component = comps[i].component;
        c.install_path = comps[i].install_path;
        c.release_keys = (const uint8_t(*)[32])pk;
        c.n_release_keys = 1;
        c.check_interval_ms = 300;
        c.health_commands = comps[i].health;
        c.n_health_commands = 2;
        c.health_timeout_ms = 5000;
        c.trial_deadline_ms = 20000;
        c.initial_version = "1.0.0";
        c.sign_request = sign_as_device;
        char err[256] = "";
        assert_int_equal(
            ota_agent_new(m.base, http, journal2, &c, &comps[i].agent, err, sizeof(err)), 0);
    }
    struct event *tick = event_new(m.base, -1, EV_PERSIST, on_multi_tick, &m);
    struct timeval tv = {0, 50000};
    event_add(tick, &tv);
    long long deadline = ferry_monotonic_ms() + 60000;
    while (!m.reached && ferry_monotonic_ms() < deadline) {
        struct timeval one = {1, 0};
        event_base_loopexit(m.base, &one);
        event_base_dispatch(m.base);
    }
    for (size_t i = 0; i < n; i++) {
        ota_agent_status(comps[i].agent, &comps[i].st);
        if (!m.reached)
            print_message("%s is in state %s (%s)\n", comps[i].component, comps[i].st.state,
                          comps[i].st.reason);
        ota_agent_free(comps[i].agent);
        comps[i].agent = NULL;
    }
    event_free(tick);
    http_client_free(http);
    event_base_free(m.base);
    assert_true(m.reached);
}

static int is(const struct comp_run *c, const char *state, const char *running)
{
    return strcmp(c->st.state, state) == 0 && strcmp(c->st.running_version, running) == 0;
}

static int both_committed_2(struct multi_runner *m)
{
    return is(&m->comps[0], "committed", "2.0.0") && is(&m->comps[1], "committed", "2.0.0");
}

static int app_rolled_back(struct multi_runner *m)
{
    return is(&m->comps[1], "rolled_back", "2.0.0");
}

/* Events of journal2 named `name` whose string field `key` is `value`: how many, and the uint
 * field `samples` of the last one (0 when none). */
struct event_match {
    const char *name, *key, *value;
    size_t count;
    uint64_t samples;
    char detail[256];
};

static int match_event(void *arg, const struct journal_entry *e)
{
    struct event_match *em = arg;
    struct record_scratch *scratch = malloc(sizeof(*scratch));
    struct record r;
    if (!scratch || record_unpack(e->payload, e->len, scratch, &r, NULL, 0) != 0 ||
        r.name.len != strlen(em->name) || memcmp(r.name.ptr, em->name, r.name.len) != 0) {
        free(scratch);
        return 0;
    }
    int hit = 0;
    uint64_t samples = 0;
    char detail[256] = "";
    for (size_t i = 0; i < r.n_fields; i++) {
        const struct record_field *f = &r.fields[i];
        if (f->type == RECORD_FIELD_STRING && f->key.len == strlen(em->key) &&
            memcmp(f->key.ptr, em->key, f->key.len) == 0 && f->v.s.len == strlen(em->value) &&
            memcmp(f->v.s.ptr, em->value, f->v.s.len) == 0)
            hit = 1;
        if (f->type == RECORD_FIELD_UINT && f->key.len == 7 &&
            memcmp(f->key.ptr, "samples", 7) == 0)
            samples = f->v.u;
        if (f->type == RECORD_FIELD_STRING && f->key.len == 6 &&
            memcmp(f->key.ptr, "detail", 6) == 0)
            snprintf(detail, sizeof(detail), "%.*s", (int)f->v.s.len, f->v.s.ptr);
    }
    if (hit) {
        em->count++;
        em->samples = samples;
        ferry_strlcpy(em->detail, detail, sizeof(em->detail));
    }
    free(scratch);
    return 0;
}

static struct event_match find_events(const char *name, const char *key, const char *value)
{
    struct event_match em = {name, key, value, 0, 0, ""};
    struct journal_read_opts o = {0};
    o.flags = JOURNAL_READ_INCLUDE_ACKED;
    assert_int_equal(journal_read(journal2, RECORD_EVENT, &o, match_event, &em, NULL), 0);
    return em;
}

static void run_cli(const char *args, char *out, size_t n)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s %s", ferry_cli, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    assert_int_equal(pclose(p), 0);
}

static char model_x[512], app_y[512];

/* A model at X and an app at Y, from signed releases of their own: both install; then an app
 * release fails its health check and rolls back while the model stays as it is. */
static void test_two_components_update_and_roll_back_independently(void **state)
{
    (void)state;
    char jdir[512], dir[512];
    path_in(jdir, sizeof(jdir), "journal-two");
    char err[256] = "";
    assert_int_equal(journal_open(jdir, NULL, &journal2, NULL, err, sizeof(err)), 0);
    path_in(dir, sizeof(dir), "opt/models");
    assert_int_equal(ferry_mkdir_p(dir, 0755), 0);
    path_in(dir, sizeof(dir), "opt/app");
    assert_int_equal(ferry_mkdir_p(dir, 0755), 0);
    path_in(model_x, sizeof(model_x), "opt/models/detector.onnx");
    path_in(app_y, sizeof(app_y), "opt/app/cv-app");
    make_image(model_x, 21);
    make_image(app_y, 25);
    component = "model";
    release("2.0.0", 22, -1, sk);
    component = "app";
    release("2.0.0", 26, -1, sk);
    component = "rootfs";
    struct comp_run comps[2];
    memset(comps, 0, sizeof(comps));
    comps[0].component = "model";
    comps[0].install_path = model_x;
    comps[0].health = health_ok;
    comps[1].component = "app";
    comps[1].install_path = app_y;
    comps[1].health = health_ok;
    run_components(comps, 2, both_committed_2);
    assert_true(file_equals_image(model_x, 22));
    assert_true(file_equals_image(app_y, 26));

    component = "app";
    release("3.0.0", 27, -1, sk);
    component = "rootfs";
    comps[1].health = health_fail; /* the new app does not come up */
    run_components(comps, 2, app_rolled_back);
    assert_non_null(strstr(comps[1].st.reason, "exit 3"));
    assert_string_equal(comps[1].st.target_version, "3.0.0");
    assert_true(file_equals_image(app_y, 26)); /* the previous app is back */
    assert_true(is(&comps[0], "committed", "2.0.0"));
    assert_true(file_equals_image(model_x, 22)); /* the model was not touched */
    assert_int_equal(find_events("ota.committed", "component", "model").count, 1);
    assert_int_equal(find_events("ota.rolled_back", "component", "app").count, 1);
    assert_int_equal(find_events("ota.rolled_back", "component", "model").count, 0);
    if (ferry_cli) {
        char args[700], out[4096];
        snprintf(args, sizeof(args), "update status --data-dir %s", jdir);
        run_cli(args, out, sizeof(out));
        print_message("%s", out);
        const char *m = strstr(out, "model\nstate:    committed\nrunning:  2.0.0\n");
        const char *a = strstr(out, "app\nstate:    rolled_back\nrunning:  2.0.0\n");
        assert_non_null(m);
        assert_non_null(a);
        assert_non_null(strstr(a, "target:   3.0.0"));
        assert_non_null(strstr(a, "exit 3"));
    }
}

static void put_confidence(double v, int n)
{
    int64_t now = ferry_realtime_ns();
    for (int i = 0; i < n; i++) {
        struct record_field f = {{"confidence", 10}, RECORD_FIELD_FLOAT, {.f = v}};
        struct record r = {RECORD_METRIC,
                           0,
                           now - (int64_t)i * 60000000000LL,
                           {"detector", 8},
                           0,
                           {"", 0},
                           NULL,
                           0,
                           &f,
                           1};
        struct ferry_buf b = FERRY_BUF_INIT;
        assert_int_equal(record_pack(&r, &b), 0);
        assert_int_equal(journal_append(journal2, RECORD_METRIC, r.ts_ns, b.data, b.len,
                                        JOURNAL_APPEND_WAIT, NULL),
                         0);
        ferry_buf_free(&b);
    }
}

static int condition_insufficient(struct multi_runner *m)
{
    (void)m;
    return find_events("ota.condition", "result", "insufficient").count >= 1;
}

static int condition_not_met_twice(struct multi_runner *m)
{
    (void)m; /* the second evaluation comes from the 304 of the next poll */
    return find_events("ota.condition", "result", "not_met").count >= 2;
}

static int model_committed_3(struct multi_runner *m)
{
    return is(&m->comps[0], "committed", "3.0.0");
}

static int condition_unreadable(struct multi_runner *m)
{
    (void)m;
    return find_events("ota.condition", "result", "unreadable").count >= 1;
}

/* "Install this model only where the mean detection confidence over 24 hours fell below 0.6":
 * no samples, then high confidence, keep the model where it is, without a download and without
 * a failure; low confidence installs it. A condition the device cannot read is never installed. */
static void test_condition_on_local_metrics_gates_the_download(void **state)
{
    (void)state;
    assert_non_null(journal2); /* made by the test before */
    struct manifest_condition c;
    char err[256] = "";
    assert_int_equal(manifest_condition_parse_text("detector.confidence mean 24h < 0.6 "
                                                   "min_samples 5",
                                                   &c, err, sizeof(err)),
                     0);
    component = "model";
    release_condition = &c;
    release("3.0.0", 23, -1, sk);
    release_condition = NULL;
    component = "rootfs";
    struct comp_run model;
    memset(&model, 0, sizeof(model));
    model.component = "model";
    model.install_path = model_x;
    model.health = health_ok;

    run_components(&model, 1, condition_insufficient);
    assert_true(is(&model, "committed", "2.0.0"));
    assert_string_equal(model.st.target_version, "2.0.0"); /* nothing started */
    assert_true(file_equals_image(model_x, 22));

    put_confidence(0.9, 10);
    run_components(&model, 1, condition_not_met_twice);
    assert_true(is(&model, "committed", "2.0.0"));
    assert_string_equal(model.st.target_version, "2.0.0");
    struct event_match em = find_events("ota.condition", "result", "not_met");
    assert_int_equal(em.samples, 10);
    assert_non_null(strstr(em.detail, "detector.confidence mean 24h < 0.6"));
    assert_int_equal(find_events("ota.failed", "component", "model").count, 0);

    put_confidence(0.1, 30); /* mean (10 x 0.9 + 30 x 0.1) / 40 = 0.3 */
    run_components(&model, 1, model_committed_3);
    em = find_events("ota.condition", "result", "met");
    assert_int_equal(em.count, 1);
    assert_int_equal(em.samples, 40);
    assert_true(file_equals_image(model_x, 23));

    /* signed, but with a stat this ferryd does not know: never installed, and said why */
    c.stat = MANIFEST_STAT_MIN;
    component = "model";
    release_condition = &c;
    sabotage_from = "\"stat\":\"min\"";
    sabotage_to = "\"stat\":\"p99\"";
    release("4.0.0", 24, -1, sk);
    sabotage_from = sabotage_to = NULL;
    release_condition = NULL;
    component = "rootfs";
    run_components(&model, 1, condition_unreadable);
    assert_true(is(&model, "committed", "3.0.0"));
    em = find_events("ota.condition", "result", "unreadable");
    print_message("unreadable: %s\n", em.detail);
    assert_non_null(strstr(em.detail, "stat \"p99\""));
    assert_true(file_equals_image(model_x, 23));
}

static void write_route(const char *path, const char *ifname)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
            "%s\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
            "eth1\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n",
            ifname);
    assert_int_equal(fclose(f), 0);
}

/* metered_policy = defer: on LTE (default route via wwan0) the download waits, with the reason
 * in the state; after a restart on Ethernet it resumes and the update completes. */
static void test_metered_link_defers_download(void **state)
{
    (void)state;
    char model[512], routes[512];
    path_in(model, sizeof(model), "models/detector.bin");
    path_in(routes, sizeof(routes), "route");
    component = "model";
    install_path = model;
    metered_policy = OTA_METERED_DEFER;
    route_file = routes;
    write_route(routes, "wwan0");
    release("11.0.0", 11, 10, sk);
    struct ota_status st;
    want_reason = "waiting for an unmetered link (default route via wwan0)";
    run_agent("downloading", health_ok, &st);
    assert_int_equal(st.bytes_done, 0);
    want_reason = NULL;
    write_route(routes, "eth0");
    run_agent("committed", health_ok, &st);
    assert_string_equal(st.running_version, "11.0.0");
    assert_true(file_equals_image(model, 11));
    metered_policy = OTA_METERED_ALLOW;
    route_file = NULL;
    component = "rootfs";
    install_path = NULL;
}

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return -1;
    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(other_pk, other_sk);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-agent-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    char err[256];
    ingest_config_defaults(&icfg);
    if (ingest_config_set(&icfg, "server.listen", "127.0.0.1:0", err, sizeof(err)) != 0 ||
        ingest_config_set(&icfg, "store.lmdb_dir", tmpdir, err, sizeof(err)) != 0 ||
        ingest_config_set(&icfg, "server.workers", "1", err, sizeof(err)) != 0)
        return -1;
    ingest_config_finish(&icfg);
    if (ingest_store_open(&icfg.store, &store, err, sizeof(err)) != 0)
        return -1;
    struct ingest_device dev;
    memset(&dev, 0, sizeof(dev));
    ferry_strlcpy(dev.id, "dev-1", sizeof(dev.id));
    ferry_strlcpy(dev.device_class, "c1", sizeof(dev.device_class));
    crypto_sign_keypair(dev.public_key, dev_sk);
    uint8_t kh[32];
    crypto_generichash(kh, 32, dev.public_key, 32, NULL, 0);
    memcpy(dev.key_id, kh, 8);
    if (ingest_store_device_add(store, &dev, err, sizeof(err)) != 0 ||
        ingest_server_new(&icfg, store, &server, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (ingest_release_register(ingest_server_router(server), ingest_server_ctx(server)) != 0)
        return -1;
    port = ingest_server_port(server);
    char jdir[512];
    path_in(jdir, sizeof(jdir), "journal");
    if (journal_open(jdir, NULL, &journal, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "journal: %s\n", err);
        return -1;
    }
    return pthread_create(&server_thread, NULL, run_server, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (journal)
        (void)journal_close(journal);
    if (journal2)
        (void)journal_close(journal2);
    if (server) {
        ingest_server_stop(server);
        pthread_join(server_thread, NULL);
        ingest_server_free(server);
    }
    if (store)
        ingest_store_close(store);
    curl_global_cleanup();
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        ferry_cli = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delta_install_trial_commit),
        cmocka_unit_test(test_failing_health_check_rolls_back),
        cmocka_unit_test(test_modified_base_takes_full_artifact),
        cmocka_unit_test(test_unknown_key_manifest_refused),
        cmocka_unit_test(test_model_file_replaced_atomically_and_rolled_back),
        cmocka_unit_test(test_model_gated_on_fps),
        cmocka_unit_test(test_metered_link_defers_download),
        cmocka_unit_test(test_two_components_update_and_roll_back_independently),
        cmocka_unit_test(test_condition_on_local_metrics_gates_the_download),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
