/*
 * test_rollout.c - canary rollouts (cloud-ingest/rollout/): wave membership (stable, uniform,
 * exact proportions on 10,000 ids, min devices), the device state machine, gates, operator
 * commands, which manifest a device is offered, and the evaluator against a real store (LMDB, or
 * PostgreSQL through with-postgres.sh): waves, a failing gate that pauses, abort with a rollback
 * release, state kept across a restart, one evaluator per store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/ingest.h"
#include "cloud-ingest/release/release.h"
#include "cloud-ingest/rollout/rollout.h"
#include "cloud-ingest/rollout/rollout_int.h"
#include "common/buf.h"
#include "common/util.h"
#include "transport/manifest.h"
#include "transport/record.h"

#define MIN_NS (60LL * 1000000000LL)

static struct ingest_config g_cfg;
static char g_dir[256];
static bool g_pg;

/* ---- Pure parts --------------------------------------------------------------------------- */

static void waves(struct rollout *r, const char *text, uint32_t min_devices)
{
    char err[256];
    memset(r, 0, sizeof(*r));
    ferry_strlcpy(r->id, "0123456789ab", sizeof(r->id));
    assert_int_equal(rollout_parse_waves(text, r, err, sizeof(err)), 0);
    r->min_devices = min_devices;
}

static void test_wave_membership_stable_uniform_and_exact(void **state)
{
    (void)state;
    enum { N = 10000 };
    static char idbuf[N][16];
    static const char *ids[N], *rev[N];
    static uint8_t w1[N], w2[N], w3[N];
    for (int i = 0; i < N; i++) {
        snprintf(idbuf[i], sizeof(idbuf[i]), "dev-%05d", i);
        ids[i] = idbuf[i];
        rev[N - 1 - i] = idbuf[i];
    }
    struct rollout r;
    waves(&r, "1%,10%,50%,100%", 1);
    assert_int_equal(rollout_assign_waves(&r, ids, N, w1), 0);
    size_t count[4] = {0};
    for (int i = 0; i < N; i++) {
        assert_true(w1[i] < 4);
        count[w1[i]]++;
    }
    /* ceil of the cumulative percentages: 100, 1000, 5000, 10000 */
    assert_int_equal(count[0], 100);
    assert_int_equal(count[1], 900);
    assert_int_equal(count[2], 4000);
    assert_int_equal(count[3], 5000);
    /* stable: the order the devices come in does not matter */
    assert_int_equal(rollout_assign_waves(&r, rev, N, w2), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(w1[i], w2[N - 1 - i]);
    /* another rollout picks an independent first wave (expected overlap 1 of 100) */
    ferry_strlcpy(r.id, "ba9876543210", sizeof(r.id));
    assert_int_equal(rollout_assign_waves(&r, ids, N, w3), 0);
    size_t both = 0;
    for (int i = 0; i < N; i++)
        both += w1[i] == 0 && w3[i] == 0;
    assert_true(both < 10);
    /* the hash is uniform: a tenth of the ids fall below a tenth of its range (+-1 %) */
    size_t below = 0;
    for (int i = 0; i < N; i++)
        below += rollout_hash("0123456789ab", ids[i]) < UINT64_MAX / 10;
    assert_true(below > 900 && below < 1100);
}

static void test_wave_targets_min_devices_and_counts(void **state)
{
    (void)state;
    struct rollout r;
    size_t t[ROLLOUT_WAVES_MAX];
    waves(&r, "1%,100%", 3);
    rollout_wave_targets(&r, 50, t);
    assert_int_equal(t[0], 3); /* 1 % of 50 is 1 device: raised to --min-devices */
    assert_int_equal(t[1], 50);
    waves(&r, "1%,2%,100%", 5);
    rollout_wave_targets(&r, 8, t);
    assert_int_equal(t[0], 5);
    assert_int_equal(t[1], 8); /* never above the devices there are */
    assert_int_equal(t[2], 8);
    waves(&r, "5,20", 1);
    rollout_wave_targets(&r, 30, t);
    assert_int_equal(t[0], 5);
    assert_int_equal(t[1], 20);
    const char *ids[30];
    char buf[30][8];
    uint8_t w[30];
    for (int i = 0; i < 30; i++) {
        snprintf(buf[i], sizeof(buf[i]), "d%d", i);
        ids[i] = buf[i];
    }
    assert_int_equal(rollout_assign_waves(&r, ids, 30, w), 0);
    size_t none = 0;
    for (int i = 0; i < 30; i++)
        none += w[i] == UINT8_MAX;
    assert_int_equal(none, 10); /* counts that stop at 20: ten devices are in no wave */
}

static void test_parsers(void **state)
{
    (void)state;
    struct rollout r;
    char err[512];
    memset(&r, 0, sizeof(r));
    assert_int_equal(rollout_parse_waves("10%,5%", &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "does not grow"));
    assert_int_equal(rollout_parse_waves("101%", &r, err, sizeof(err)), -1);
    assert_int_equal(rollout_parse_waves("1%,,5%", &r, err, sizeof(err)), -1);
    assert_int_equal(rollout_parse_waves("abc", &r, err, sizeof(err)), -1);
    assert_int_equal(rollout_parse_waves("0.5%,10,100%", &r, err, sizeof(err)), 0);
    assert_int_equal(r.n_waves, 3);
    struct rollout_gate g;
    assert_int_equal(rollout_parse_gate("install_success >= 0.95", &g, err, sizeof(err)), 0);
    assert_int_equal(g.kind, RGATE_INSTALL_SUCCESS);
    assert_int_equal(g.cmp, RCMP_GE);
    assert_int_equal(rollout_parse_gate("silent_ratio<=0.2", &g, err, sizeof(err)), 0);
    assert_int_equal(rollout_parse_gate("rollback_ratio <= 1.5", &g, err, sizeof(err)), -1);
    assert_int_equal(rollout_parse_gate("rollback_ratio == 0.1", &g, err, sizeof(err)), -1);
    assert_int_equal(
        rollout_parse_gate("inference.fps p50 >= 0.97 x baseline", &g, err, sizeof(err)), 0);
    assert_int_equal(g.kind, RGATE_METRIC);
    assert_int_equal(rollout_parse_gate("error_logs <= 2 x baseline", &g, err, sizeof(err)), 0);
    assert_int_equal(rollout_parse_gate("thermal.gpu p95 <= baseline + 3", &g, err, sizeof(err)),
                     0);
    assert_int_equal(rollout_parse_gate("inference.fps p50 >=", &g, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "metric gate"));
    assert_int_equal(rollout_parse_window("22:00-02:00", &r, err, sizeof(err)), 0);
    assert_true(rollout_window_open(&r, 23 * 60));
    assert_true(rollout_window_open(&r, 60));
    assert_false(rollout_window_open(&r, 12 * 60));
    assert_false(rollout_window_open(&r, 2 * 60)); /* the end is excluded */
    assert_int_equal(rollout_parse_window("2:00-05:00", &r, err, sizeof(err)), -1);
    assert_int_equal(rollout_parse_window("02:00-02:00", &r, err, sizeof(err)), -1);
    assert_int_equal(rollout_device_utc_offset_min("{\"utc_offset\":\"+02:00\"}"), 120);
    assert_int_equal(rollout_device_utc_offset_min("{\"utc_offset\":\"-0530\"}"), -330);
    assert_int_equal(rollout_device_utc_offset_min("{\"utc_offset\":\"+99:00\"}"), 0);
    assert_int_equal(rollout_device_utc_offset_min("{}"), 0);
    assert_int_equal(rollout_device_utc_offset_min("not json"), 0);
}

static void test_device_state_machine(void **state)
{
    (void)state;
    const char *v = "2.0.0";
    assert_int_equal(rollout_dev_from_update("downloading", v, "1.0.0", NULL, v), RDEV_DOWNLOADING);
    assert_int_equal(rollout_dev_from_update("applying", v, "1.0.0", NULL, v), RDEV_DOWNLOADING);
    assert_int_equal(rollout_dev_from_update("trial", v, "1.0.0", NULL, v), RDEV_INSTALLED);
    assert_int_equal(rollout_dev_from_update("committed", v, v, NULL, v), RDEV_COMMITTED);
    assert_int_equal(rollout_dev_from_update("rolled_back", v, "1.0.0", "crash loop", v),
                     RDEV_ROLLED_BACK);
    assert_int_equal(rollout_dev_from_update("failed", v, "1.0.0", "fallback", v),
                     RDEV_DOWNLOADING);
    assert_int_equal(rollout_dev_from_update("failed", v, "1.0.0", "no space", v), RDEV_FAILED);
    /* about another release: nothing to say about this one */
    assert_int_equal(rollout_dev_from_update("downloading", "1.5.0", "1.0.0", NULL, v),
                     RDEV_PENDING);
    assert_int_equal(rollout_dev_from_update("committed", "1.0.0", "1.0.0", NULL, v), RDEV_PENDING);
    assert_int_equal(rollout_dev_from_update(NULL, NULL, NULL, NULL, v), RDEV_PENDING);

    assert_int_equal(rollout_dev_next(RDEV_PENDING, RDEV_PENDING, true, false), RDEV_OFFERED);
    assert_int_equal(rollout_dev_next(RDEV_OFFERED, RDEV_INSTALLED, true, false), RDEV_INSTALLED);
    /* never backwards */
    assert_int_equal(rollout_dev_next(RDEV_INSTALLED, RDEV_DOWNLOADING, true, false),
                     RDEV_INSTALLED);
    assert_int_equal(rollout_dev_next(RDEV_INSTALLED, RDEV_COMMITTED, true, false), RDEV_COMMITTED);
    assert_int_equal(rollout_dev_next(RDEV_COMMITTED, RDEV_DOWNLOADING, true, true),
                     RDEV_COMMITTED);
    /* nothing final by the deadline: silent, also never offered */
    assert_int_equal(rollout_dev_next(RDEV_PENDING, RDEV_PENDING, false, true), RDEV_SILENT);
    assert_int_equal(rollout_dev_next(RDEV_DOWNLOADING, RDEV_DOWNLOADING, true, true), RDEV_SILENT);
    /* silent stays silent unless a final state arrives later */
    assert_int_equal(rollout_dev_next(RDEV_SILENT, RDEV_INSTALLED, true, true), RDEV_SILENT);
    assert_int_equal(rollout_dev_next(RDEV_SILENT, RDEV_ROLLED_BACK, true, true), RDEV_ROLLED_BACK);
}

static void test_gates(void **state)
{
    (void)state;
    struct rollout r;
    char err[256];
    waves(&r, "100%", 1);
    assert_int_equal(rollout_parse_gate("install_success >= 0.9", &r.gates[0], err, sizeof(err)),
                     0);
    assert_int_equal(rollout_parse_gate("rollback_ratio <= 0.05", &r.gates[1], err, sizeof(err)),
                     0);
    assert_int_equal(rollout_parse_gate("silent_ratio < 0.2", &r.gates[2], err, sizeof(err)), 0);
    r.n_gates = 3;
    struct rollout_gate_result res[ROLLOUT_GATES_MAX];
    uint64_t c[RDEV_COUNT] = {0};
    c[RDEV_COMMITTED] = 95;
    c[RDEV_ROLLED_BACK] = 3;
    c[RDEV_SILENT] = 2;
    assert_true(rollout_gates_eval(&r, c, res));
    assert_float_equal(res[0].value, 0.95, 1e-9);
    assert_float_equal(res[1].value, 0.03, 1e-9);
    /* silent devices are failures for install_success */
    c[RDEV_COMMITTED] = 80;
    c[RDEV_SILENT] = 17;
    assert_false(rollout_gates_eval(&r, c, res));
    assert_false(res[0].pass);
    assert_true(res[1].pass);
    assert_true(res[2].pass);
    c[RDEV_SILENT] = 30;
    assert_false(rollout_gates_eval(&r, c, res));
    assert_false(res[2].pass);
    /* a wave without devices has nothing to fail */
    uint64_t zero[RDEV_COUNT] = {0};
    assert_true(rollout_gates_eval(&r, zero, res));
}

static void test_operator_commands(void **state)
{
    (void)state;
    struct rollout r;
    char why[256];
    waves(&r, "10%,100%", 1);
    r.state = ROLLOUT_RUNNING;
    assert_int_equal(rollout_apply_op(&r, ROP_RESUME, 1, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "running"));
    assert_int_equal(rollout_apply_op(&r, ROP_PAUSE, 2, why, sizeof(why)), 0);
    assert_int_equal(r.state, ROLLOUT_PAUSED);
    assert_int_equal(rollout_apply_op(&r, ROP_PAUSE, 3, why, sizeof(why)), -1);
    assert_int_equal(rollout_apply_op(&r, ROP_RESUME, 4, why, sizeof(why)), 0);
    assert_int_equal(r.state, ROLLOUT_RUNNING);
    assert_int_equal(r.soak_from_ns, 4);
    assert_int_equal(rollout_apply_op(&r, ROP_PROMOTE, 5, why, sizeof(why)), 0);
    assert_int_equal(r.wave, 1);
    assert_int_equal(r.wave_started_ns[1], 5);
    assert_int_equal(rollout_apply_op(&r, ROP_PROMOTE, 6, why, sizeof(why)), 0);
    assert_int_equal(r.state, ROLLOUT_COMPLETED);
    assert_int_equal(rollout_apply_op(&r, ROP_ABORT, 7, why, sizeof(why)), -1);
    waves(&r, "10%,100%", 1);
    r.state = ROLLOUT_PAUSED;
    assert_int_equal(rollout_apply_op(&r, ROP_ABORT, 8, why, sizeof(why)), 0);
    assert_int_equal(r.state, ROLLOUT_ABORTED);
    assert_int_equal(rollout_apply_op(&r, ROP_RESUME, 9, why, sizeof(why)), -1);
}

static void test_offer_decision(void **state)
{
    (void)state;
    struct rollout r;
    waves(&r, "10%,100%", 1);
    r.state = ROLLOUT_RUNNING;
    assert_int_equal(rollout_offer_decide(&r, false, false, true, true, false), ROFFER_NONE);
    assert_int_equal(rollout_offer_decide(&r, true, false, true, true, false), ROFFER_RELEASE);
    /* outside the window: not offered now, unless it already has it */
    assert_int_equal(rollout_offer_decide(&r, true, false, true, false, false), ROFFER_NONE);
    assert_int_equal(rollout_offer_decide(&r, true, true, true, false, false), ROFFER_RELEASE);
    r.state = ROLLOUT_PAUSED; /* only devices already offered keep it */
    assert_int_equal(rollout_offer_decide(&r, true, false, true, true, false), ROFFER_NONE);
    assert_int_equal(rollout_offer_decide(&r, true, true, true, true, false), ROFFER_RELEASE);
    r.state = ROLLOUT_ABORTED;
    assert_int_equal(rollout_offer_decide(&r, true, true, true, true, false), ROFFER_NONE);
    r.has_rollback = true;
    assert_int_equal(rollout_offer_decide(&r, true, false, true, true, false), ROFFER_ROLLBACK);
    assert_int_equal(rollout_offer_decide(&r, false, false, true, true, false), ROFFER_NONE);
    r.state = ROLLOUT_COMPLETED;
    assert_int_equal(rollout_offer_decide(&r, false, false, true, true, false), ROFFER_RELEASE);
    assert_int_equal(rollout_offer_decide(&r, false, false, true, true, true), ROFFER_NONE);
}

static void test_record_json_round_trip(void **state)
{
    (void)state;
    struct rollout r, back;
    char err[256];
    waves(&r, "1%,10%,100%", 2);
    ferry_strlcpy(r.device_class, "jetson", sizeof(r.device_class));
    ferry_strlcpy(r.component, "model", sizeof(r.component));
    ferry_strlcpy(r.version, "2.0.0", sizeof(r.version));
    ferry_strlcpy(r.name, "caf\xc3\xa9 \"q\"", sizeof(r.name));
    assert_int_equal(rollout_parse_gate("silent_ratio <= 0.2", &r.gates[0], err, sizeof(err)), 0);
    r.n_gates = 1;
    assert_int_equal(rollout_parse_window("02:00-05:00", &r, err, sizeof(err)), 0);
    r.state = ROLLOUT_PAUSED;
    r.wave = 1;
    r.wave_started_ns[0] = 11;
    r.wave_started_ns[1] = 22;
    r.decided[0] = true;
    r.results[0][0] = (struct rollout_gate_result){0.1, 0.2, true};
    char *text = rollout_to_json(&r);
    assert_non_null(text);
    assert_int_equal(rollout_from_json(text, strlen(text), &back, err, sizeof(err)), 0);
    free(text);
    assert_string_equal(back.name, r.name);
    assert_int_equal(back.state, ROLLOUT_PAUSED);
    assert_int_equal(back.wave, 1);
    assert_int_equal(back.wave_started_ns[1], 22);
    assert_int_equal(back.min_devices, 2);
    assert_true(back.has_window);
    assert_int_equal(back.window_start_min, 120);
    assert_true(back.decided[0]);
    assert_false(back.decided[1]);
    assert_float_equal(back.results[0][0].value, 0.1, 1e-9);
    assert_int_equal(rollout_from_json("{\"id\":1}", 8, &back, err, sizeof(err)), -1);
    assert_int_equal(rollout_from_json("[", 1, &back, err, sizeof(err)), -1);
}

/* ---- The evaluator against a store -------------------------------------------------------- */

static uint8_t rel_pk[32], rel_sk[64];

static struct ingest_store *open_store(void)
{
    struct ingest_store *s = NULL;
    char err[512] = "";
    int rc = ingest_store_open(&g_cfg.store, &s, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "open: %s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static void add_device(struct ingest_store *s, const char *id)
{
    struct ingest_device d;
    memset(&d, 0, sizeof(d));
    ferry_strlcpy(d.id, id, sizeof(d.id));
    crypto_generichash(d.public_key, 32, (const uint8_t *)id, strlen(id), NULL, 0);
    memcpy(d.key_id, d.public_key, 8);
    ferry_strlcpy(d.device_class, "c1", sizeof(d.device_class));
    ferry_strlcpy(d.versions, "{}", sizeof(d.versions));
    char err[256];
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
}

/* Stores an update state of component "model" for `dev`, as a batch with ota.* events does. */
static void report_at(struct ingest_store *s, const char *dev, const char *state,
                      const char *running, const char *target, uint64_t seq, int64_t ts_ns)
{
    char updates[512];
    snprintf(updates, sizeof(updates),
             "{\"model\":{\"state\":\"%s\",\"running_version\":\"%s\",\"target_version\":\"%s\","
             "\"ts\":%lld,\"seq\":%llu}}",
             state, running, target, (long long)ts_ns, (unsigned long long)seq);
    struct ingest_write w;
    memset(&w, 0, sizeof(w));
    w.device_id = dev;
    w.received_ns = ferry_realtime_ns();
    w.updates_json = updates;
    struct ingest_write *ws[1] = {&w};
    char err[256] = "";
    assert_int_equal(ingest_store_write(s, ws, 1, err, sizeof(err)), 0);
    assert_int_equal(w.result, 0);
}

static void report(struct ingest_store *s, const char *dev, const char *state, const char *running,
                   const char *target, uint64_t seq)
{
    report_at(s, dev, state, running, target, seq, 1);
}

/* Stores `n` inference.fps samples of `dev`, one a minute from t0, seq first.. (metric stream). */
static void write_fps(struct ingest_store *s, const char *dev, uint64_t first_seq, int64_t t0,
                      size_t n, double fps)
{
    struct ferry_buf arena = FERRY_BUF_INIT;
    size_t offs[32];
    struct ingest_rec recs[32];
    assert_true(n <= 32);
    for (size_t i = 0; i < n; i++) {
        struct record_field f = {.key = {"fps", 3}, .type = RECORD_FIELD_FLOAT, .v.f = fps};
        struct record r = {.stream = RECORD_METRIC,
                           .ts_ns = t0 + (int64_t)i * MIN_NS,
                           .name = {"inference", 9},
                           .fields = &f,
                           .n_fields = 1};
        offs[i] = arena.len;
        assert_int_equal(record_pack(&r, &arena), 0);
        recs[i] = (struct ingest_rec){.stream = RECORD_METRIC,
                                      .seq = first_seq + i,
                                      .ts_ns = r.ts_ns,
                                      .ts_corrected_ns = r.ts_ns,
                                      .packed_len = arena.len - offs[i]};
    }
    for (size_t i = 0; i < n; i++)
        recs[i].packed = arena.data + offs[i];
    struct ingest_write w;
    memset(&w, 0, sizeof(w));
    w.device_id = dev;
    w.received_ns = ferry_realtime_ns();
    w.recs = recs;
    w.n_recs = n;
    struct ingest_write *ws[1] = {&w};
    char err[256] = "";
    assert_int_equal(ingest_store_write(s, ws, 1, err, sizeof(err)), 0);
    assert_int_equal(w.result, 0);
    ferry_buf_free(&arena);
}

/* A signed release of component model for class c1 and its artifact in g_dir/<name>/. */
static void make_release(const char *name, const char *version, uint64_t serial, bool rollback,
                         char *man_out, size_t man_len)
{
    char dir[512], art[600], pub[600];
    snprintf(dir, sizeof(dir), "%s/%s", g_dir, name);
    assert_int_equal(ferry_mkdir_p(dir, 0755), 0);
    snprintf(art, sizeof(art), "%s/art.bin", dir);
    snprintf(man_out, man_len, "%s/manifest.json", dir);
    snprintf(pub, sizeof(pub), "%s/rel.pub", g_dir);
    uint8_t bytes[5000];
    randombytes_buf(bytes, sizeof(bytes));
    assert_int_equal(ferry_write_file_atomic(art, bytes, sizeof(bytes), 0644), 0);
    char hex[65];
    ferry_hex_encode(rel_pk, 32, hex);
    assert_int_equal(ferry_write_file_atomic(pub, hex, 64, 0644), 0);
    struct manifest_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.component = "model";
    spec.version = version;
    spec.device_class = "c1";
    spec.serial = serial;
    spec.rollback = rollback;
    spec.target_size = sizeof(bytes);
    char err[256];
    assert_int_equal(
        manifest_spec_add_file(&spec, art, MANIFEST_ARTIFACT_FULL, 4096, err, sizeof(err)), 0);
    memcpy(spec.target_sha256, spec.artifacts[0].sha256, 32);
    struct ferry_buf payload = FERRY_BUF_INIT, env = FERRY_BUF_INIT;
    assert_int_equal(manifest_build_payload(&spec, &payload, err, sizeof(err)), 0);
    assert_int_equal(manifest_sign(payload.data, payload.len, rel_sk, &env), 0);
    assert_int_equal(ferry_write_file_atomic(man_out, env.data, env.len, 0644), 0);
    ferry_buf_free(&payload);
    ferry_buf_free(&env);
    manifest_spec_clear(&spec);
}

static int reset_store(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s/*", g_dir);
    if (system(cmd) != 0)
        return -1;
    if (g_pg) {
        /* every test starts from empty tables (the schema is made by the first open) */
        ingest_store_close(open_store());
        if (system("psql -q -c 'TRUNCATE ingest_kv, ingest_leases, devices CASCADE' >/dev/null") !=
            0)
            return -1;
    }
    return 0;
}

static int create(struct ingest_store *s, const char *extra_gate, const char *on_fail,
                  char id[ROLLOUT_ID_LEN + 1])
{
    char man[600], rb[600], pub[600], src1[600], src2[600];
    make_release("r2", "2.0.0", 10, false, man, sizeof(man));
    make_release("r1b", "1.0.0", 11, true, rb, sizeof(rb));
    snprintf(pub, sizeof(pub), "%s/rel.pub", g_dir);
    snprintf(src1, sizeof(src1), "%s/r2/art.bin", g_dir);
    snprintf(src2, sizeof(src2), "%s/r1b/art.bin", g_dir);
    char *argv[] = {"create",
                    "--manifest",
                    man,
                    "--rollback-manifest",
                    rb,
                    "--waves",
                    "10%,100%",
                    "--soak",
                    "10m",
                    "--deadline",
                    "30m",
                    "--gate",
                    (char *)extra_gate,
                    "--on-fail",
                    (char *)on_fail,
                    "--pub",
                    pub,
                    src1,
                    src2,
                    NULL};
    int rc = rollout_cli_main(&g_cfg, s, "cli:test", 19, argv);
    if (rc != 0)
        return rc;
    json_t *ids = NULL;
    assert_int_equal(rollout_list_ids(s, &ids), 0);
    assert_true(json_array_size(ids) >= 1);
    ferry_strlcpy(id, json_string_value(json_array_get(ids, 0)), ROLLOUT_ID_LEN + 1);
    json_decref(ids);
    return 0;
}

static size_t count_in(json_t *devs, int wave, const char *state_name)
{
    size_t n = 0;
    const char *k;
    json_t *d;
    json_object_foreach(devs, k, d)
    {
        if ((wave < 0 || json_integer_value(json_object_get(d, "w")) == wave) &&
            (state_name == NULL ||
             strcmp(json_string_value(json_object_get(d, "s")), state_name) == 0))
            n++;
    }
    return n;
}

static struct ingest_device get_dev(struct ingest_store *s, const char *id)
{
    struct ingest_device d;
    assert_int_equal(ingest_store_device_get(s, id, &d), 0);
    return d;
}

static void test_engine_waves_gate_pause_abort_restart(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    char id[ROLLOUT_ID_LEN + 1], name[16], err[256];
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "d%02d", i);
        add_device(s, name);
    }
    /* a gate that is none is refused before anything is stored */
    assert_int_equal(create(s, "install_success >= lots", "pause", id), 2);
    assert_int_equal(create(s, "install_success >= 0.75", "pause", id), 0);
    /* a second live rollout of the same class and component is refused */
    char other[ROLLOUT_ID_LEN + 1];
    assert_int_equal(create(s, "install_success >= 0.75", "pause", other), 1);

    struct rollouts *ro = NULL;
    assert_int_equal(rollouts_new(&g_cfg, s, "test:1", &ro, err, sizeof(err)), 0);
    const struct ingest_release_offerer *of = rollouts_offerer(ro);
    int64_t t0 = ferry_realtime_ns();
    assert_int_equal(rollouts_eval_once(ro, t0), 0);
    json_t *devs = NULL;
    assert_int_equal(rollout_load_devices(s, id, &devs), 0);
    assert_int_equal(json_object_size(devs), 4); /* 10 % of 40 */
    assert_int_equal(count_in(devs, 0, "pending"), 4);

    /* members get the rollout's manifest (and are marked offered), the others the current one */
    char file[1600];
    const char *member[4];
    size_t m = 0;
    const char *k;
    json_t *d;
    json_object_foreach(devs, k, d) member[m++] = k;
    struct ingest_device dm = get_dev(s, member[0]);
    assert_int_equal(of->manifest(of->arg, &dm, "model", file, sizeof(file)), 1);
    assert_non_null(strstr(file, "/rollouts/"));
    assert_non_null(strstr(file, "manifest.json"));
    const char *outsider = NULL;
    for (int i = 0; i < 40 && outsider == NULL; i++) {
        snprintf(name, sizeof(name), "d%02d", i);
        if (json_object_get(devs, name) == NULL)
            outsider = name;
    }
    struct ingest_device dout = get_dev(s, outsider);
    assert_int_equal(of->manifest(of->arg, &dout, "model", file, sizeof(file)), 0);
    assert_int_equal(of->manifest(of->arg, &dm, "rootfs", file, sizeof(file)), 0);

    /* three members commit 2.0.0, one rolls back */
    for (size_t i = 0; i < 4; i++) {
        struct ingest_device di = get_dev(s, member[i]);
        assert_int_equal(of->manifest(of->arg, &di, "model", file, sizeof(file)), 1);
        if (i < 3)
            report(s, member[i], "committed", "2.0.0", "2.0.0", 5);
        else
            report(s, member[i], "rolled_back", "1.0.0", "2.0.0", 5);
    }
    char keep[4][16];
    for (size_t i = 0; i < 4; i++)
        ferry_strlcpy(keep[i], member[i], sizeof(keep[i]));
    json_decref(devs);
    assert_int_equal(rollouts_eval_once(ro, t0 + MIN_NS), 0);
    assert_int_equal(rollout_load_devices(s, id, &devs), 0);
    assert_int_equal(count_in(devs, 0, "committed"), 3);
    assert_int_equal(count_in(devs, 0, "rolled_back"), 1);
    assert_int_equal(json_object_size(devs), 4); /* soak not over: wave 2 has not started */
    json_decref(devs);

    /* after the soak the gate (0.75 >= 0.75) passes: wave 2 takes every device */
    assert_int_equal(rollouts_eval_once(ro, t0 + 11 * MIN_NS), 0);
    struct rollout r;
    assert_int_equal(rollout_load(s, id, t0, &r, NULL, err, sizeof(err)), 0);
    assert_int_equal(r.state, ROLLOUT_RUNNING);
    assert_int_equal(r.wave, 1);
    assert_true(r.decided[0]);
    assert_int_equal(rollout_load_devices(s, id, &devs), 0);
    assert_int_equal(json_object_size(devs), 40);
    assert_int_equal(count_in(devs, 1, NULL), 36);
    json_decref(devs);
    assert_int_equal(of->manifest(of->arg, &dout, "model", file, sizeof(file)), 1);

    /* nobody of wave 2 says anything by its deadline: silent, the gate fails, it pauses */
    assert_int_equal(rollouts_eval_once(ro, t0 + 11 * MIN_NS + 31 * MIN_NS), 0);
    assert_int_equal(rollout_load(s, id, t0, &r, NULL, err, sizeof(err)), 0);
    assert_int_equal(r.state, ROLLOUT_PAUSED);
    assert_non_null(strstr(r.reason, "install_success"));
    assert_int_equal(rollout_load_devices(s, id, &devs), 0);
    assert_int_equal(count_in(devs, 1, "silent"), 36);
    json_decref(devs);
    /* paused: a device of a started wave that was offered keeps it, one that was not does not */
    struct ingest_device d2 = get_dev(s, outsider);
    assert_int_equal(of->manifest(of->arg, &d2, "model", file, sizeof(file)), 1);
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "d%02d", i);
        if (strcmp(name, outsider) == 0 || strcmp(name, keep[0]) == 0 ||
            strcmp(name, keep[1]) == 0 || strcmp(name, keep[2]) == 0 || strcmp(name, keep[3]) == 0)
            continue;
        struct ingest_device dn = get_dev(s, name);
        assert_int_equal(of->manifest(of->arg, &dn, "model", file, sizeof(file)), 0);
        break;
    }

    /* restart: a new evaluator on a reopened store sees the same rollout */
    rollouts_free(ro);
    ingest_store_close(s);
    s = open_store();
    assert_int_equal(rollouts_new(&g_cfg, s, "test:2", &ro, err, sizeof(err)), 0);
    of = rollouts_offerer(ro);
    assert_int_equal(rollouts_eval_once(ro, t0 + 43 * MIN_NS), 0);
    assert_int_equal(rollout_load(s, id, t0, &r, NULL, err, sizeof(err)), 0);
    assert_int_equal(r.state, ROLLOUT_PAUSED);
    assert_int_equal(r.wave, 1);

    /* abort: at once for every reader, before the evaluator ran; members get the rollback */
    char why[256];
    assert_int_equal(rollout_command(s, id, ROP_ABORT, "cli:test", why, sizeof(why)), 0);
    assert_int_equal(rollout_command(s, id, ROP_RESUME, "cli:test", why, sizeof(why)), -1);
    struct ingest_device d3 = get_dev(s, keep[0]);
    assert_int_equal(of->manifest(of->arg, &d3, "model", file, sizeof(file)), 1);
    assert_non_null(strstr(file, "rollback.json"));
    uint8_t *bytes = NULL;
    size_t len = 0;
    assert_int_equal(ferry_read_file(file, 1 << 20, &bytes, &len), 0);
    free(bytes);
    /* the rollback's artifact is downloadable by that device, the release's no longer */
    struct rollout now;
    assert_int_equal(rollout_load(s, id, t0, &now, NULL, err, sizeof(err)), 0);
    uint8_t sha[32];
    assert_int_equal(ferry_hex_decode(now.rollback_artifacts[0], sha, 32), 0);
    assert_true(of->artifact(of->arg, &d3, sha));
    assert_int_equal(ferry_hex_decode(now.artifacts[0], sha, 32), 0);
    assert_false(of->artifact(of->arg, &d3, sha));
    assert_int_equal(rollouts_eval_once(ro, t0 + 44 * MIN_NS), 0);
    assert_int_equal(rollout_load(s, id, t0, &r, NULL, err, sizeof(err)), 0);
    assert_int_equal(r.state, ROLLOUT_ABORTED);
    json_t *ops = NULL;
    assert_int_equal(rollout_load(s, id, t0, &r, &ops, err, sizeof(err)), 0);
    assert_int_equal(json_array_size(ops), 0); /* applied and deleted in one transaction */
    json_decref(ops);
    /* a new rollout of the same component: its serial must be above the rollback's (11) */
    assert_int_equal(create(s, "install_success >= 0.75", "pause", other), 1);
    rollouts_free(ro);
    ingest_store_close(s);
}

static void test_engine_completes_and_installs(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    char id[ROLLOUT_ID_LEN + 1], err[256];
    add_device(s, "a1");
    add_device(s, "a2");
    assert_int_equal(create(s, "rollback_ratio <= 0.5", "abort", id), 0);
    struct rollouts *ro = NULL;
    assert_int_equal(rollouts_new(&g_cfg, s, "test:1", &ro, err, sizeof(err)), 0);
    int64_t t0 = ferry_realtime_ns();
    assert_int_equal(rollouts_eval_once(ro, t0), 0);
    report(s, "a1", "committed", "2.0.0", "2.0.0", 3);
    report(s, "a2", "committed", "2.0.0", "2.0.0", 3);
    /* wave 1 holds 1 device (10 % of 2, at least 1); promote skips its soak */
    char why[256];
    assert_int_equal(rollout_command(s, id, ROP_PROMOTE, "cli:test", why, sizeof(why)), 0);
    assert_int_equal(rollouts_eval_once(ro, t0 + MIN_NS), 0);
    assert_int_equal(rollouts_eval_once(ro, t0 + 12 * MIN_NS), 0);
    struct rollout r;
    assert_int_equal(rollout_load(s, id, t0, &r, NULL, err, sizeof(err)), 0);
    assert_int_equal(r.state, ROLLOUT_COMPLETED);
    assert_int_equal(ingest_release_current_serial(&g_cfg, "c1", "model"), 10);
    /* completed and installed: the class's current manifest serves everyone */
    struct ingest_device d = get_dev(s, "a1");
    char file[1600];
    const struct ingest_release_offerer *of = rollouts_offerer(ro);
    assert_int_equal(of->manifest(of->arg, &d, "model", file, sizeof(file)), 0);
    /* metrics */
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(rollouts_expose(s, &b), 0);
    assert_non_null(strstr((const char *)b.data, "ferry_rollouts{state=\"completed\"} 1"));
    ferry_buf_free(&b);
    rollouts_free(ro);
    ingest_store_close(s);
}

static void test_engine_selector_limits_the_waves(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    char err[256], man[600], pub[600], src[600];
    const char *names[4] = {"s1", "s2", "s3", "s4"};
    for (int i = 0; i < 4; i++) {
        add_device(s, names[i]);
        assert_int_equal(ingest_store_device_set_labels(
                             s, names[i], i < 2 ? "{\"site\":\"berlin\"}" : "{\"site\":\"lyon\"}"),
                         0);
    }
    make_release("r2", "2.0.0", 10, false, man, sizeof(man));
    snprintf(pub, sizeof(pub), "%s/rel.pub", g_dir);
    snprintf(src, sizeof(src), "%s/r2/art.bin", g_dir);
    char *bad[] = {"create", "--manifest", man, "--selector", "site in (berlin",
                   "--pub",  pub,          src, NULL};
    assert_int_equal(rollout_cli_main(&g_cfg, s, "cli:test", 8, bad), 2);
    char *argv[] = {"create", "--manifest", man, "--selector", "site=berlin", "--waves",
                    "100%",   "--pub",      pub, src,          NULL};
    assert_int_equal(rollout_cli_main(&g_cfg, s, "cli:test", 10, argv), 0);
    json_t *ids = NULL;
    assert_int_equal(rollout_list_ids(s, &ids), 0);
    char id[ROLLOUT_ID_LEN + 1];
    ferry_strlcpy(id, json_string_value(json_array_get(ids, 0)), sizeof(id));
    json_decref(ids);
    struct rollouts *ro = NULL;
    assert_int_equal(rollouts_new(&g_cfg, s, "test:1", &ro, err, sizeof(err)), 0);
    assert_int_equal(rollouts_eval_once(ro, ferry_realtime_ns()), 0);
    json_t *devs = NULL;
    assert_int_equal(rollout_load_devices(s, id, &devs), 0);
    assert_int_equal(json_object_size(devs), 2);
    assert_non_null(json_object_get(devs, "s1"));
    assert_non_null(json_object_get(devs, "s2"));
    json_decref(devs);
    const struct ingest_release_offerer *of = rollouts_offerer(ro);
    char file[1600];
    struct ingest_device d1 = get_dev(s, "s1"), d3 = get_dev(s, "s3");
    assert_int_equal(of->manifest(of->arg, &d1, "model", file, sizeof(file)), 1);
    assert_int_equal(of->manifest(of->arg, &d3, "model", file, sizeof(file)), 0);
    rollouts_free(ro);
    ingest_store_close(s);
}

static void test_engine_metric_gate_pauses_on_lower_fps(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    char id[ROLLOUT_ID_LEN + 1], err[256], name[16];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        add_device(s, name);
    }
    assert_int_equal(create(s, "inference.fps p50 >= 0.97 x baseline", "pause", id), 0);
    struct rollouts *ro = NULL;
    assert_int_equal(rollouts_new(&g_cfg, s, "test:1", &ro, err, sizeof(err)), 0);
    int64_t t0 = ferry_realtime_ns();
    assert_int_equal(rollouts_eval_once(ro, t0), 0);
    json_t *devs = NULL;
    assert_int_equal(rollout_load_devices(s, id, &devs), 0);
    assert_int_equal(json_object_size(devs), 1); /* 10 % of 10 */
    json_decref(devs);
    /* promote to wave 2 (all ten) and let every device run the release: 30 fps before its switch
     * at t0 + 1 min, 25 after (-17 %); the devices that are not updated have no control role */
    char why[256];
    assert_int_equal(rollout_command(s, id, ROP_PROMOTE, "cli:test", why, sizeof(why)), 0);
    assert_int_equal(rollouts_eval_once(ro, t0), 0);
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        write_fps(s, name, 1, t0 - 9 * MIN_NS, 9, 30.0);
        write_fps(s, name, 100, t0 + 2 * MIN_NS, 9, 25.0);
        report_at(s, name, "committed", "2.0.0", "2.0.0", 7, t0 + MIN_NS);
    }
    assert_int_equal(rollouts_eval_once(ro, t0 + 2 * MIN_NS), 0);
    struct rollout r;
    assert_int_equal(rollout_load(s, id, t0, &r, NULL, err, sizeof(err)), 0);
    assert_int_equal(r.state, ROLLOUT_RUNNING); /* soak not over */
    assert_int_equal(rollouts_eval_once(ro, t0 + 11 * MIN_NS), 0);
    assert_int_equal(rollout_load(s, id, t0, &r, NULL, err, sizeof(err)), 0);
    assert_int_equal(r.state, ROLLOUT_PAUSED);
    assert_non_null(strstr(r.reason, "inference.fps"));
    assert_true(r.decided[1]);
    assert_float_equal(r.results[1][0].value, 25.0, 1e-9);
    assert_float_equal(r.results[1][0].threshold, 0.97 * 30.0, 1e-9);
    assert_false(r.results[1][0].pass);
    /* the comparison: before 30, after 25 on the same devices, larger than the noise */
    json_t *cmp = NULL;
    assert_int_equal(rollout_compare_json(s, id, t0 + 11 * MIN_NS, &cmp, err, sizeof(err)), 0);
    assert_int_equal(json_integer_value(json_object_get(cmp, "updated_devices")), 10);
    json_t *row = json_array_get(json_object_get(cmp, "metrics"), 0);
    assert_string_equal(json_string_value(json_object_get(row, "metric")), "inference.fps");
    assert_float_equal(json_number_value(json_object_get(json_object_get(row, "before"), "mean")),
                       30.0, 1e-9);
    assert_float_equal(json_number_value(json_object_get(json_object_get(row, "after"), "mean")),
                       25.0, 1e-9);
    assert_true(json_is_true(json_object_get(row, "significant_before_after")));
    json_decref(cmp);
    rollouts_free(ro);
    ingest_store_close(s);
}

static void test_engine_one_evaluator_per_store(void **state)
{
    (void)state;
    if (!g_pg)
        skip(); /* LMDB is one process: its evaluator always holds the lease */
    struct ingest_store *s1 = open_store(), *s2 = open_store();
    char id[ROLLOUT_ID_LEN + 1], err[256];
    add_device(s1, "b1");
    assert_int_equal(create(s1, "rollback_ratio <= 0.5", "pause", id), 0);
    struct rollouts *a = NULL, *b = NULL;
    assert_int_equal(rollouts_new(&g_cfg, s1, "host:1", &a, err, sizeof(err)), 0);
    assert_int_equal(rollouts_new(&g_cfg, s2, "host:2", &b, err, sizeof(err)), 0);
    int64_t t0 = ferry_realtime_ns();
    assert_int_equal(ingest_store_lease(s1, ROLLOUT_LEASE, "host:1", t0, 30000000000LL), 0);
    assert_int_equal(rollouts_eval_once(b, t0), 0); /* not the lease holder: does nothing */
    json_t *devs = NULL;
    assert_int_equal(rollout_load_devices(s2, id, &devs), 0);
    assert_int_equal(json_object_size(devs), 0);
    json_decref(devs);
    assert_int_equal(rollouts_eval_once(a, t0), 0);
    assert_int_equal(rollout_load_devices(s2, id, &devs), 0);
    assert_int_equal(json_object_size(devs), 1);
    json_decref(devs);
    rollouts_free(a);
    rollouts_free(b);
    ingest_store_close(s1);
    ingest_store_close(s2);
}

int main(int argc, char **argv)
{
    if (argc < 2 || sodium_init() < 0)
        return 2;
    crypto_sign_keypair(rel_pk, rel_sk);
    snprintf(g_dir, sizeof(g_dir), "/tmp/ferry-rollout-test.%ld", (long)getpid());
    if (ferry_mkdir_p(g_dir, 0755) != 0)
        return 2;
    ingest_config_defaults(&g_cfg);
    char err[256];
    if (ingest_config_set(&g_cfg, "store.lmdb_dir", g_dir, err, sizeof(err)) != 0)
        return 2;
    if (strcmp(argv[1], "pg") == 0) {
        const char *ci = getenv("FERRY_TEST_PG");
        if (ci == NULL) {
            fprintf(stderr, "FERRY_TEST_PG not set (run through with-postgres.sh)\n");
            return 2;
        }
        g_pg = true;
        if (ingest_config_set(&g_cfg, "store.type", "postgresql", err, sizeof(err)) != 0 ||
            ingest_config_set(&g_cfg, "store.pg_conninfo", ci, err, sizeof(err)) != 0)
            return 2;
    }
    ingest_config_finish(&g_cfg);
    g_cfg.store.lmdb_map_size = 64 << 20;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wave_membership_stable_uniform_and_exact),
        cmocka_unit_test(test_wave_targets_min_devices_and_counts),
        cmocka_unit_test(test_parsers),
        cmocka_unit_test(test_device_state_machine),
        cmocka_unit_test(test_gates),
        cmocka_unit_test(test_operator_commands),
        cmocka_unit_test(test_offer_decision),
        cmocka_unit_test(test_record_json_round_trip),
        cmocka_unit_test_setup(test_engine_waves_gate_pause_abort_restart, reset_store),
        cmocka_unit_test_setup(test_engine_completes_and_installs, reset_store),
        cmocka_unit_test_setup(test_engine_selector_limits_the_waves, reset_store),
        cmocka_unit_test_setup(test_engine_metric_gate_pauses_on_lower_fps, reset_store),
        cmocka_unit_test_setup(test_engine_one_evaluator_per_store, reset_store),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        failed++;
    return failed;
}
