/*
 * test_release_api.c - operator actions that change the fleet over the API, through the real
 * ferry-ingest process (LMDB, loopback, port 0) and its CLI as a client on "another host" (the
 * --url form, which never opens the store):
 *   - `--url ... release publish` with an operator token uploads the artifact in pieces but the
 *     publish is 403 (admin only): devices still get 204; with an admin token it is published
 *     and a device-signed GET serves exactly the manifest and the artifact;
 *   - POST /v1/releases without a token 401; a manifest signed by another key, one whose class
 *     is "..", one naming an artifact not uploaded: 400 with the reason and nothing written;
 *     an envelope above the manifest limit 413; an artifact upload above limits.max_artifact 413;
 *     a piece whose bytes are not its name's SHA-256: 400, nothing stored;
 *   - `--url ... rollout create` (operator) uploads and creates: visible in GET /v1/rollouts;
 *     a viewer token is 403; both actions are in the audit log (release.publish,
 *     rollout.create) with the token's name;
 *   - a device-signed GET sent twice (a captured request replayed) is 401 the second time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "ingest_harness.h"
#include "release_harness.h"
#include "transport/manifest.h"
#include "transport/reqsign.h"

static const char *g_bin;
static char g_tmp[128], g_data[192], g_pub[200];
static struct ih_server g_srv;
static struct ih_device g_dev;
static uint8_t rel_pk[32], rel_sk[64];
static char g_admin[128], g_oper[128], g_viewer[128];

/* Runs `ferry-ingest ARGS` (no data directory: the --url form must not need one) and returns
 * its exit status; the last stdout line in out. */
static int run_cli(const char *args, char *out, size_t out_len)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s %s 2>>%s/cli.err", g_bin, args, g_tmp);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[8192];
    if (out != NULL)
        out[0] = '\0';
    while (fgets(line, sizeof(line), p) != NULL)
        if (out != NULL) {
            line[strcspn(line, "\n")] = '\0';
            ferry_strlcpy(out, line, out_len);
        }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A release of `size` random bytes in 256 KiB chunks signed with `sk` (release_harness.h). */
static void make_release(const char *name, const char *cls, const char *version, uint64_t serial,
                         bool rollback, size_t size, const uint8_t *sk, char sha_hex[65])
{
    rh_make_release(g_tmp, name, cls, version, serial, rollback, size, 256 << 10, sk, sha_hex);
}

static struct ferry_buf file_bytes(const char *rel)
{
    return rh_file_bytes(g_tmp, rel);
}

static bool exists(const char *rel)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/releases/%s", g_data, rel);
    return access(path, F_OK) == 0;
}

/* A device-signed GET of `path` with the headers in *sig (made by the caller, so that a test
 * can send the same ones twice). */
static void signed_get(const char *path, const struct reqsign_headers *sig, struct ih_resp *r)
{
    const char *h[] = {sig->device, sig->time, sig->nonce, sig->signature, NULL};
    assert_int_equal(ih_http_h(g_srv.port, "GET", path, NULL, 0, h, r), 0);
}

static void device_get(const char *path, struct ih_resp *r)
{
    struct reqsign_headers sig;
    assert_int_equal(
        reqsign_sign(g_dev.sk, "GET", path, g_dev.id, ferry_realtime_ns() / 1000000000, &sig), 0);
    signed_get(path, &sig, r);
}

/* An API call with `token` ("" none); checks the status and that the error names `why`. */
static void api_expect(const char *token, const char *method, const char *path, const void *body,
                       size_t len, long want, const char *why)
{
    struct ih_resp r;
    ih_set_token(token);
    assert_int_equal(ih_http(g_srv.port, method, path, body, len, &r), 0);
    if (r.status != want || (why != NULL && strstr((char *)r.body.data, why) == NULL))
        fail_msg("%s %s: %ld %s (wanted %ld with \"%s\")", method, path, r.status,
                 (char *)r.body.data, want, why != NULL ? why : "");
    ih_resp_free(&r);
}

static bool audit_has(const char *action, const char *actor)
{
    struct ih_resp r;
    ih_set_token(g_admin);
    assert_int_equal(ih_http(g_srv.port, "GET", "/v1/audit?limit=1000", NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *o = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    ih_resp_free(&r);
    bool found = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(o, "events"), i, e)
    {
        found |= strcmp(json_string_value(json_object_get(e, "action")), action) == 0 &&
                 strcmp(json_string_value(json_object_get(e, "actor")), actor) == 0;
    }
    json_decref(o);
    return found;
}

static void setup_ingest(void)
{
    char args[1024], hex[65];
    crypto_sign_keypair(rel_pk, rel_sk);
    snprintf(g_pub, sizeof(g_pub), "%s/rel.pub", g_tmp);
    ferry_hex_encode(rel_pk, 32, hex);
    assert_int_equal(ferry_write_file_atomic(g_pub, hex, 64, 0644), 0);
    ih_device_new(&g_dev);
    snprintf(g_dev.id, sizeof(g_dev.id), "dev-1");
    snprintf(args, sizeof(args), "-d %s device add %s %s n1 c1", g_data, g_dev.id, g_dev.pk_hex);
    assert_int_equal(run_cli(args, NULL, 0), 0);
    const char *roles[] = {"admin", "operator", "viewer"};
    char *tokens[] = {g_admin, g_oper, g_viewer};
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof(args), "-d %s token create --role %s --name t-%s", g_data, roles[i],
                 roles[i]);
        assert_int_equal(run_cli(args, tokens[i], 128), 0);
    }
    const char *extra[] = {"-d",
                           g_data,
                           "--release.public_keys",
                           hex,
                           "--limits.max_artifact",
                           "8MiB",
                           "--limits.max_body",
                           "1MiB",
                           NULL};
    assert_int_equal(ih_start(&g_srv, g_bin, g_tmp, extra), 0);
}

static void test_release_publish_over_the_api(void **state)
{
    (void)state;
    char args[2048], sha[65];
    setup_ingest();
    /* 2.5 MiB: the CLI's 4 MiB pieces are 413 (limits.max_body 1 MiB), it halves them */
    make_release("r1", "c1", "1.0.0", 5, false, (5u << 20) / 2, rel_sk, sha);
    struct ih_resp r;
    char mpath[128];
    snprintf(mpath, sizeof(mpath), "/v1/devices/%s/manifest?component=model", g_dev.id);

    /* operator: the artifact goes up, the publish is the admin's */
    snprintf(args, sizeof(args),
             "--url http://127.0.0.1:%u --token %s release publish --pub %s %s/r1/manifest.json "
             "%s/r1/art.bin",
             g_srv.port, g_oper, g_pub, g_tmp, g_tmp);
    assert_int_equal(run_cli(args, NULL, 0), 1);
    char art[100];
    snprintf(art, sizeof(art), "artifacts/%s", sha);
    assert_true(exists(art));
    assert_false(exists("manifests/c1/model.json"));
    device_get(mpath, &r);
    assert_int_equal(r.status, 204);
    ih_resp_free(&r);

    /* admin: published (the artifact is already there: 200 for its first piece) */
    snprintf(args, sizeof(args),
             "--url http://127.0.0.1:%u --token %s release publish --pub %s %s/r1/manifest.json "
             "%s/r1/art.bin",
             g_srv.port, g_admin, g_pub, g_tmp, g_tmp);
    char out[256];
    assert_int_equal(run_cli(args, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "published model 1.0.0 for c1 (serial 5)"));
    struct ferry_buf man = file_bytes("r1/manifest.json"), bytes = file_bytes("r1/art.bin");
    device_get(mpath, &r);
    assert_int_equal(r.status, 200);
    assert_true(r.body.len == man.len && memcmp(r.body.data, man.data, man.len) == 0);
    ih_resp_free(&r);
    char apath[100];
    snprintf(apath, sizeof(apath), "/v1/artifacts/%s", sha);
    device_get(apath, &r);
    assert_int_equal(r.status, 200);
    assert_true(r.body.len == bytes.len && memcmp(r.body.data, bytes.data, bytes.len) == 0);
    ih_resp_free(&r);
    assert_true(audit_has("release.publish", "token:t-admin"));

    /* the same serial again: 409 unless force */
    api_expect(g_admin, "POST", "/v1/releases", man.data, man.len, 409, "not above");
    api_expect(g_admin, "POST", "/v1/releases?force=1", man.data, man.len, 201, NULL);
    /* no token 401, viewer/operator 403 */
    api_expect("", "POST", "/v1/releases", man.data, man.len, 401, NULL);
    api_expect(g_oper, "POST", "/v1/releases", man.data, man.len, 403, NULL);
    api_expect(g_viewer, "PUT", apath, bytes.data, 10, 403, NULL);

    /* forged: signed by another key, its artifact uploaded: 400 and the served one unchanged */
    uint8_t pk2[32], sk2[64];
    crypto_sign_keypair(pk2, sk2);
    char sha2[65], put[200];
    make_release("forged", "c1", "6.6.6", 66, false, 4000, sk2, sha2);
    struct ferry_buf forged = file_bytes("forged/manifest.json"),
                     fart = file_bytes("forged/art.bin");
    snprintf(put, sizeof(put), "/v1/artifacts/%s?offset=0&size=%zu", sha2, fart.len);
    api_expect(g_oper, "PUT", put, fart.data, fart.len, 201, NULL);
    api_expect(g_admin, "POST", "/v1/releases", forged.data, forged.len, 400, "unknown key");
    /* the right key's signature over another payload (one bit of the signature flipped) */
    json_t *env = json_loadb((const char *)man.data, man.len, 0, NULL);
    json_t *sig0 = json_array_get(json_object_get(env, "signatures"), 0);
    char *sig = strdup(json_string_value(json_object_get(sig0, "sig")));
    /* a hex digit: '0' <-> '1' always changes it ('a' -> 'A' would not: hex is read in either
     * case, which made this check pass the untampered signature once in 16 runs) */
    sig[10] = sig[10] == '0' ? '1' : '0';
    json_object_set_new(sig0, "sig", json_string(sig));
    char *tampered = json_dumps(env, JSON_COMPACT);
    api_expect(g_admin, "POST", "/v1/releases?force=1", tampered, strlen(tampered), 400,
               "manifest:");
    free(tampered);
    free(sig);
    json_decref(env);
    device_get(mpath, &r);
    assert_true(r.body.len == man.len && memcmp(r.body.data, man.data, man.len) == 0);
    ih_resp_free(&r);

    /* a class ".." (signed by the right key): 400, nothing outside manifests/ */
    make_release("dots", "..", "1.0.1", 7, false, 3000, rel_sk, NULL);
    struct ferry_buf dots = file_bytes("dots/manifest.json");
    api_expect(g_admin, "POST", "/v1/releases", dots.data, dots.len, 400, "start with '.'");
    assert_false(exists("manifests/model.json"));
    assert_false(exists("model.json"));

    /* a manifest whose artifact was never uploaded: 400 naming it */
    char sha3[65];
    make_release("r3", "c1", "3.0.0", 30, false, 5000, rel_sk, sha3);
    struct ferry_buf r3 = file_bytes("r3/manifest.json");
    api_expect(g_admin, "POST", "/v1/releases", r3.data, r3.len, 400, sha3);
    device_get(mpath, &r);
    assert_true(r.body.len == man.len && memcmp(r.body.data, man.data, man.len) == 0);
    ih_resp_free(&r);

    /* bytes that are not their name's SHA-256: 400 when complete, nothing stored */
    struct ferry_buf r3art = file_bytes("r3/art.bin");
    r3art.data[100] ^= 1;
    snprintf(put, sizeof(put), "/v1/artifacts/%s?offset=0&size=%zu", sha3, r3art.len);
    api_expect(g_oper, "PUT", put, r3art.data, r3art.len, 400, "discarded");
    snprintf(art, sizeof(art), "artifacts/%s", sha3);
    assert_false(exists(art));
    snprintf(art, sizeof(art), "artifacts/.part-%s", sha3);
    assert_false(exists(art));
    /* a piece at the wrong offset: 409 with what is held */
    snprintf(put, sizeof(put), "/v1/artifacts/%s?offset=0&size=%zu", sha3, r3art.len);
    api_expect(g_oper, "PUT", put, r3art.data, 1000, 202, "\"received\":1000");
    snprintf(put, sizeof(put), "/v1/artifacts/%s?offset=2000&size=%zu", sha3, r3art.len);
    api_expect(g_oper, "PUT", put, r3art.data, 1000, 409, "\"received\":1000");
    /* oversize: an artifact above limits.max_artifact, a piece above limits.max_body */
    uint8_t *zeros = calloc(1, 2u << 20);
    assert_non_null(zeros);
    snprintf(put, sizeof(put), "/v1/artifacts/%s?offset=0&size=%llu", sha3, 9ull << 20);
    api_expect(g_oper, "PUT", put, zeros, 10, 413, "limits.max_artifact");
    snprintf(put, sizeof(put), "/v1/artifacts/%s?offset=0&size=%llu", sha3, 3ull << 20);
    api_expect(g_oper, "PUT", put, zeros, (1u << 20) + 1, 413, "limits.max_body");
    free(zeros);
    /* a body above what the ingest reads at all (limits.max_body + 64 KiB: evhttp refuses it
     * before dispatch): 413 */
    uint8_t *huge = calloc(1, (1u << 20) + 70000);
    assert_non_null(huge);
    struct ih_resp hr;
    ih_set_token(g_admin);
    assert_int_equal(ih_http(g_srv.port, "POST", "/v1/releases", huge, (1u << 20) + 70000, &hr), 0);
    assert_int_equal(hr.status, 413);
    ih_resp_free(&hr);
    free(huge);

    ferry_buf_free(&man);
    ferry_buf_free(&bytes);
    ferry_buf_free(&forged);
    ferry_buf_free(&fart);
    ferry_buf_free(&dots);
    ferry_buf_free(&r3);
    ferry_buf_free(&r3art);
}

static void test_rollout_create_over_the_api(void **state)
{
    (void)state;
    char args[2048], id[64];
    make_release("r4", "c1", "4.0.0", 40, false, 300000, rel_sk, NULL);
    make_release("r4b", "c1", "1.0.0", 41, true, 200000, rel_sk, NULL);
    for (int as_operator = 0; as_operator < 2; as_operator++) {
        snprintf(args, sizeof(args),
                 "--url http://127.0.0.1:%u --token %s rollout create --manifest "
                 "%s/r4/manifest.json --rollback-manifest %s/r4b/manifest.json --waves "
                 "50%%,100%% --soak 1m --gate 'install_success >= 0.9' --name api-canary "
                 "--pub %s %s/r4/art.bin %s/r4b/art.bin",
                 g_srv.port, as_operator ? g_oper : g_viewer, g_tmp, g_tmp, g_pub, g_tmp, g_tmp);
        assert_int_equal(run_cli(args, id, sizeof(id)), as_operator ? 0 : 1);
    }
    assert_int_equal(strlen(id), 12);
    struct ih_resp r;
    ih_set_token(g_viewer);
    assert_int_equal(ih_http(g_srv.port, "GET", "/v1/rollouts", NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *o = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    ih_resp_free(&r);
    bool found = false;
    size_t i;
    json_t *ro;
    json_array_foreach(json_object_get(o, "rollouts"), i, ro)
    {
        if (strcmp(json_string_value(json_object_get(ro, "id")), id) == 0) {
            found = true;
            assert_string_equal(json_string_value(json_object_get(ro, "name")), "api-canary");
            assert_string_equal(json_string_value(json_object_get(ro, "version")), "4.0.0");
        }
    }
    json_decref(o);
    assert_true(found);
    assert_true(audit_has("rollout.create", "token:t-operator"));
    /* a second one while it runs: 409 naming it; a bad setting: 400 naming it */
    struct ferry_buf m4 = file_bytes("r4/manifest.json");
    json_t *body = json_pack("{s:s%}", "manifest", (const char *)m4.data, m4.len);
    char *text = json_dumps(body, JSON_COMPACT);
    api_expect(g_oper, "POST", "/v1/rollouts", text, strlen(text), 409, id);
    free(text);
    json_object_set_new(body, "soak", json_string("soon"));
    text = json_dumps(body, JSON_COMPACT);
    api_expect(g_oper, "POST", "/v1/rollouts", text, strlen(text), 400, "--soak");
    free(text);
    json_object_set_new(body, "surprise", json_true());
    text = json_dumps(body, JSON_COMPACT);
    api_expect(g_oper, "POST", "/v1/rollouts", text, strlen(text), 400, "unknown member");
    free(text);
    json_decref(body);
    ferry_buf_free(&m4);
}

static void test_replayed_device_request_is_refused(void **state)
{
    (void)state;
    char mpath[128];
    snprintf(mpath, sizeof(mpath), "/v1/devices/%s/manifest?component=model", g_dev.id);
    struct reqsign_headers sig;
    assert_int_equal(
        reqsign_sign(g_dev.sk, "GET", mpath, g_dev.id, ferry_realtime_ns() / 1000000000, &sig), 0);
    struct ih_resp r;
    signed_get(mpath, &sig, &r);
    assert_int_equal(r.status, 200);
    ih_resp_free(&r);
    signed_get(mpath, &sig, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr((char *)r.body.data, "replayed request"));
    ih_resp_free(&r);
    /* a fresh signature of the same request is fine */
    device_get(mpath, &r);
    assert_int_equal(r.status, 200);
    ih_resp_free(&r);
}

int main(int argc, char **argv)
{
    if (argc < 2 || sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return 2;
    g_bin = argv[1];
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/ferry-release-api-XXXXXX");
    if (mkdtemp(g_tmp) == NULL)
        return 2;
    snprintf(g_data, sizeof(g_data), "%s/data", g_tmp);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_release_publish_over_the_api),
        cmocka_unit_test(test_rollout_create_over_the_api),
        cmocka_unit_test(test_replayed_device_request_is_refused),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (g_srv.pid > 0)
        ih_stop(&g_srv);
    if (failed == 0) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", g_tmp);
        if (system(cmd) != 0)
            failed++;
    } else
        fprintf(stderr, "kept %s for inspection\n", g_tmp);
    curl_global_cleanup();
    return failed;
}
