/*
 * rollout_bench.c - what a canary rollout costs the ingest: one evaluator round (rollout.h,
 * engine.c) over N devices of a 100 % wave, and one manifest offer decision (serve.c), on the
 * LMDB store (or PostgreSQL with --pg, e.g. under tests/unit/ingest/with-postgres.sh).
 *
 *   build/bin/rollout-bench [--devices N] [--pg]
 *
 * Prints "name: value" lines: the round that assigns every device (first), the round that moves
 * every device to committed from its reported update state (moving), a round with nothing to
 * change (steady), and the mean time of an offer decision for a device of the wave: its first
 * fetch (which writes its `offered` mark, one durable store transaction) and later ones.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/ingest.h"
#include "cloud-ingest/release/release.h"
#include "cloud-ingest/rollout/rollout.h"
#include "cloud-ingest/rollout/rollout_int.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "transport/manifest.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int die(const char *what)
{
    fprintf(stderr, "rollout-bench: %s\n", what);
    return 1;
}

/* A signed release of component model 2.0.0 for class c1 in dir (manifest.json, art.bin). */
static int make_release(const char *dir, const uint8_t sk[64])
{
    char art[600], man[600];
    snprintf(art, sizeof(art), "%s/art.bin", dir);
    snprintf(man, sizeof(man), "%s/manifest.json", dir);
    uint8_t bytes[4096];
    randombytes_buf(bytes, sizeof(bytes));
    if (ferry_write_file_atomic(art, bytes, sizeof(bytes), 0644) != 0)
        return -1;
    struct manifest_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.component = "model";
    spec.version = "2.0.0";
    spec.device_class = "c1";
    spec.serial = 10;
    spec.target_size = sizeof(bytes);
    char err[256];
    struct ferry_buf payload = FERRY_BUF_INIT, env = FERRY_BUF_INIT;
    int rc = manifest_spec_add_file(&spec, art, MANIFEST_ARTIFACT_FULL, 4096, err, sizeof(err));
    if (rc == 0) {
        memcpy(spec.target_sha256, spec.artifacts[0].sha256, 32);
        rc = manifest_build_payload(&spec, &payload, err, sizeof(err));
    }
    if (rc == 0)
        rc = manifest_sign(payload.data, payload.len, sk, &env);
    if (rc == 0)
        rc = ferry_write_file_atomic(man, env.data, env.len, 0644);
    ferry_buf_free(&payload);
    ferry_buf_free(&env);
    manifest_spec_clear(&spec);
    return rc;
}

int main(int argc, char **argv)
{
    size_t n = 10000;
    bool pg = false;
    for (int i = 1; i < argc; i++) {
        uint64_t v;
        if (strcmp(argv[i], "--devices") == 0 && i + 1 < argc &&
            ferry_parse_u64(argv[i + 1], 1000000, &v) == 0 && v > 0) {
            n = (size_t)v;
            i++;
        } else if (strcmp(argv[i], "--pg") == 0)
            pg = true;
        else {
            printf("usage: rollout-bench [--devices N] [--pg]\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (sodium_init() < 0)
        return 1;
    ferry_log_init(FERRY_LOG_WARN, 2); /* the per-device transition lines would drown the figures */
    char dir[128] = "/tmp/ferry-rollout-bench-XXXXXX", err[512];
    if (mkdtemp(dir) == NULL)
        return die("mkdtemp");
    struct ingest_config cfg;
    ingest_config_defaults(&cfg);
    if (ingest_config_set(&cfg, "store.lmdb_dir", dir, err, sizeof(err)) != 0)
        return die(err);
    if (pg) {
        const char *ci = getenv("FERRY_TEST_PG");
        if (ci == NULL || ingest_config_set(&cfg, "store.type", "postgresql", err, sizeof(err)) ||
            ingest_config_set(&cfg, "store.pg_conninfo", ci, err, sizeof(err)))
            return die("--pg needs FERRY_TEST_PG (run under with-postgres.sh)");
    }
    ingest_config_finish(&cfg);
    struct ingest_store *st = NULL;
    if (ingest_store_open(&cfg.store, &st, err, sizeof(err)) != 0)
        return die(err);
    struct ingest_device *devs = calloc(n, sizeof(*devs));
    struct ingest_write *w = calloc(n, sizeof(*w));
    struct ingest_write **wp = calloc(n, sizeof(*wp));
    char(*updates)[256] = calloc(n, sizeof(*updates));
    if (devs == NULL || w == NULL || wp == NULL || updates == NULL)
        return die("out of memory");
    for (size_t i = 0; i < n; i++) {
        snprintf(devs[i].id, sizeof(devs[i].id), "bench-%07zu", i);
        crypto_generichash(devs[i].public_key, 32, (const uint8_t *)devs[i].id, strlen(devs[i].id),
                           NULL, 0);
        memcpy(devs[i].key_id, devs[i].public_key, 8);
        ferry_strlcpy(devs[i].device_class, "c1", sizeof(devs[i].device_class));
        ferry_strlcpy(devs[i].versions, "{}", sizeof(devs[i].versions));
        ferry_strlcpy(devs[i].labels, "{}", sizeof(devs[i].labels));
    }
    if (ingest_store_device_add_many(st, devs, n, err, sizeof(err)) != 0)
        return die(err);
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    char rdir[256], pub[256], man[300], art[300], hex[65];
    snprintf(rdir, sizeof(rdir), "%s/r2", dir);
    snprintf(pub, sizeof(pub), "%s/rel.pub", dir);
    snprintf(man, sizeof(man), "%s/manifest.json", rdir);
    snprintf(art, sizeof(art), "%s/art.bin", rdir);
    ferry_hex_encode(pk, 32, hex);
    if (ferry_mkdir_p(rdir, 0755) != 0 || ferry_write_file_atomic(pub, hex, 64, 0644) != 0 ||
        make_release(rdir, sk) != 0)
        return die("cannot make the release");
    char *cargv[] = {"create", "--manifest", man, "--waves", "100%", "--pub", pub, art, NULL};
    if (rollout_cli_main(&cfg, st, "cli:bench", 8, cargv) != 0)
        return die("rollout create failed");
    json_t *ids = NULL;
    if (rollout_list_ids(st, &ids) != 0 || json_array_size(ids) != 1)
        return die("no rollout");
    char id[ROLLOUT_ID_LEN + 1];
    ferry_strlcpy(id, json_string_value(json_array_get(ids, 0)), sizeof(id));
    json_decref(ids);
    struct rollouts *ro = NULL;
    if (rollouts_new(&cfg, st, "bench:1", &ro, err, sizeof(err)) != 0)
        return die(err);
    int64_t t0 = ferry_realtime_ns();
    double a = now_s();
    if (rollouts_eval_once(ro, t0) != 0)
        return die("round 1 failed");
    double first = now_s() - a;
    for (size_t i = 0; i < n; i++) {
        snprintf(updates[i], sizeof(updates[i]),
                 "{\"model\":{\"state\":\"committed\",\"running_version\":\"2.0.0\","
                 "\"target_version\":\"2.0.0\",\"ts\":%lld,\"seq\":3}}",
                 (long long)t0);
        w[i].device_id = devs[i].id;
        w[i].received_ns = t0;
        w[i].updates_json = updates[i];
        wp[i] = &w[i];
    }
    if (ingest_store_write(st, wp, n, err, sizeof(err)) != 0)
        return die(err);
    a = now_s();
    if (rollouts_eval_once(ro, t0 + 1000000000LL) != 0)
        return die("round 2 failed");
    double moving = now_s() - a;
    a = now_s();
    if (rollouts_eval_once(ro, t0 + 2000000000LL) != 0)
        return die("round 3 failed");
    double steady = now_s() - a;
    json_t *table = NULL;
    size_t committed = 0;
    if (rollout_load_devices(st, id, &table) == 0) {
        const char *k;
        json_t *d;
        json_object_foreach(table, k, d) committed +=
            strcmp(json_string_value(json_object_get(d, "s")), "committed") == 0;
    }
    json_decref(table);
    const struct ingest_release_offerer *of = rollouts_offerer(ro);
    size_t probes = n < 2000 ? n : 2000;
    char file[1600];
    a = now_s();
    for (size_t i = 0; i < probes; i++)
        if (of->manifest(of->arg, &devs[i], "model", file, sizeof(file)) != 1)
            return die("a device of the wave was not offered the release");
    double offer = (now_s() - a) / (double)probes;
    /* the same devices again: already offered, no write */
    a = now_s();
    for (size_t i = 0; i < probes; i++)
        if (of->manifest(of->arg, &devs[i], "model", file, sizeof(file)) != 1)
            return die("a device of the wave lost its offer");
    double again = (now_s() - a) / (double)probes;
    printf("store: %s\ndevices: %zu\ncommitted_after_round_2: %zu\n", pg ? "postgresql" : "lmdb", n,
           committed);
    printf("round_first_assign_s: %.3f\nround_moving_s: %.3f\nround_steady_s: %.3f\n", first,
           moving, steady);
    printf("offer_first_us: %.1f\noffer_again_us: %.1f\n", offer * 1e6, again * 1e6);
    rollouts_free(ro);
    ingest_store_close(st);
    free(devs);
    free(w);
    free(wp);
    free(updates);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return committed == n ? 0 : 1;
}
