/*
 * test_manifest.c - unit tests of transport/manifest.{h,c}: a manifest built, signed and verified
 * round trip; each rejection (bad signature, tampered payload, unknown key, unsigned, wrong device
 * class, wrong component, downgrade, stale serial) and the signed-rollback exception; artifact
 * mirrors from the payload and the envelope.
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
#include <sodium.h>

#include "common/buf.h"
#include "transport/manifest.h"

static uint8_t pk_release[32], sk_release[64], pk_other[32], sk_other[64];
static char art_path[64];

/* Builds and signs a manifest for version `ver`, serial `serial`, class `cls`. */
static void build(struct ferry_buf *env, const char *ver, uint64_t serial, const char *cls,
                  int rollback, const uint8_t *sk)
{
    struct manifest_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.component = "rootfs";
    spec.version = ver;
    spec.device_class = cls;
    spec.serial = serial;
    spec.rollback = rollback;
    spec.target_size = 12345;
    memset(spec.target_sha256, 0xab, 32);
    char err[256] = "";
    assert_int_equal(
        manifest_spec_add_file(&spec, art_path, MANIFEST_ARTIFACT_FULL, 4096, err, sizeof(err)), 0);
    assert_int_equal(
        manifest_spec_add_file(&spec, art_path, MANIFEST_ARTIFACT_DELTA, 8192, err, sizeof(err)),
        0);
    snprintf(spec.artifacts[1].base_version, sizeof(spec.artifacts[1].base_version), "1.0.0");
    memset(spec.artifacts[1].base_sha256, 0x11, 32);
    spec.artifacts[1].base_size = 999;
    struct ferry_buf payload = FERRY_BUF_INIT;
    assert_int_equal(manifest_build_payload(&spec, &payload, err, sizeof(err)), 0);
    ferry_buf_reset(env);
    assert_int_equal(manifest_sign(payload.data, payload.len, sk, env), 0);
    ferry_buf_free(&payload);
    manifest_spec_clear(&spec);
}

static int parse(const struct ferry_buf *env, const uint8_t (*keys)[32], size_t n,
                 struct manifest **m)
{
    struct manifest_keys k = {keys, n};
    char err[256];
    return manifest_parse_verified(env->data, env->len, &k, m, err, sizeof(err));
}

static void test_roundtrip_signed_manifest(void **state)
{
    (void)state;
    struct ferry_buf env = FERRY_BUF_INIT;
    build(&env, "2.0.0", 5, "jetson-orin-nano", 0, sk_release);
    uint8_t keys[2][32];
    memcpy(keys[0], pk_other, 32);
    memcpy(keys[1], pk_release, 32);
    struct manifest *m = NULL;
    assert_int_equal(parse(&env, (const uint8_t(*)[32])keys, 2, &m), MANIFEST_OK);
    assert_string_equal(manifest_version(m), "2.0.0");
    assert_string_equal(manifest_component(m), "rootfs");
    assert_string_equal(manifest_device_class(m), "jetson-orin-nano");
    assert_int_equal(manifest_serial(m), 5);
    assert_int_equal(manifest_target_size(m), 12345);
    assert_int_equal(manifest_artifact_count(m), 2);
    const struct manifest_artifact *full = manifest_find_full(m);
    assert_non_null(full);
    assert_int_equal(full->size, 10000);
    assert_int_equal(full->chunk_count, 3); /* 4096 + 4096 + 1808 */
    uint8_t base[32];
    memset(base, 0x11, 32);
    const struct manifest_artifact *d = manifest_find_delta(m, base);
    assert_non_null(d);
    assert_string_equal(d->base_version, "1.0.0");
    assert_int_equal(d->chunk_count, 2);
    memset(base, 0x12, 32);
    assert_null(manifest_find_delta(m, base));
    struct manifest_policy p = {.device_class = "jetson-orin-nano",
                                .component = "rootfs",
                                .running_version = "1.9.9",
                                .highest_serial = 4};
    char err[256];
    assert_int_equal(manifest_check(m, &p, err, sizeof(err)), MANIFEST_OK);
    manifest_free(m);
    ferry_buf_free(&env);
}

/* Signs `msg` with Ed25519ph as docs/ota.md §2 says: libsodium's multi-part API. */
static void ed25519ph_sign(const uint8_t *msg1, size_t len1, const uint8_t *msg2, size_t len2,
                           const uint8_t sk[64], uint8_t sig[64])
{
    crypto_sign_state st;
    crypto_sign_init(&st);
    crypto_sign_update(&st, msg1, len1);
    crypto_sign_update(&st, msg2, len2);
    assert_int_equal(crypto_sign_final_create(&st, sig, NULL, sk), 0);
}

/* An envelope assembled by hand from docs/ota.md §2 (not by manifest_sign). */
static void envelope_by_hand(const struct ferry_buf *payload, const uint8_t pk[32],
                             const uint8_t sig[64], struct ferry_buf *env)
{
    uint8_t h[32];
    crypto_generichash(h, 32, pk, 32, NULL, 0);
    char kid[17], sighex[129];
    sodium_bin2hex(kid, sizeof(kid), h, 8);
    sodium_bin2hex(sighex, sizeof(sighex), sig, 64);
    size_t cap = sodium_base64_ENCODED_LEN(payload->len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(cap);
    assert_non_null(b64);
    sodium_bin2base64(b64, cap, payload->data, payload->len, sodium_base64_VARIANT_ORIGINAL);
    ferry_buf_reset(env);
    assert_int_equal(ferry_buf_printf(env,
                                      "{\"format\":\"ferry-manifest-1\",\"payload\":\"%s\","
                                      "\"signatures\":[{\"key_id\":\"%s\",\"sig\":\"%s\"}]}",
                                      b64, kid, sighex),
                     0);
    free(b64);
}

/* docs/ota.md §2: the release signature is Ed25519ph (RFC 8032, empty context) over
 * "ferry-release-v1\n" || payload. libsodium's multi-part API is checked against RFC 8032's
 * Ed25519ph test vector, then a manifest signed by the document's recipe verifies, and a pure
 * Ed25519 signature over the same bytes does not. */
static void test_signature_is_ed25519ph_as_documented(void **state)
{
    (void)state;
    /* RFC 8032 section 7.3, "TEST abc" */
    uint8_t seed[32], pk[32], sk[64], sig[64], want[64];
    assert_int_equal(
        sodium_hex2bin(seed, 32, "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
                       64, NULL, NULL, NULL),
        0);
    assert_int_equal(
        sodium_hex2bin(want, 64,
                       "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41"
                       "31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406",
                       128, NULL, NULL, NULL),
        0);
    crypto_sign_seed_keypair(pk, sk, seed);
    ed25519ph_sign((const uint8_t *)"ab", 2, (const uint8_t *)"c", 1, sk, sig);
    assert_memory_equal(sig, want, 64);

    /* A payload, signed by the recipe, in an envelope made by hand. */
    struct ferry_buf env = FERRY_BUF_INIT, mine = FERRY_BUF_INIT, payload = FERRY_BUF_INIT;
    build(&env, "2.0.0", 5, "jetson-orin-nano", 0, sk_release);
    struct manifest *m = NULL;
    assert_int_equal(parse(&env, (const uint8_t(*)[32])pk_release, 1, &m), MANIFEST_OK);
    size_t plen = 0;
    const uint8_t *p = manifest_payload(m, &plen);
    assert_int_equal(ferry_buf_append(&payload, p, plen), 0);
    manifest_free(m);
    const char *prefix = "ferry-release-v1\n";
    ed25519ph_sign((const uint8_t *)prefix, strlen(prefix), payload.data, payload.len, sk_release,
                   sig);
    envelope_by_hand(&payload, pk_release, sig, &mine);
    m = NULL;
    assert_int_equal(parse(&mine, (const uint8_t(*)[32])pk_release, 1, &m), MANIFEST_OK);
    manifest_free(m);
    /* Ed25519 is deterministic: manifest_sign made the very same signature. */
    char sighex[129];
    sodium_bin2hex(sighex, sizeof(sighex), sig, 64);
    assert_non_null(memmem(env.data, env.len, sighex, 128));

    /* Pure Ed25519 over the same message is another signature, and refused. */
    struct ferry_buf msg = FERRY_BUF_INIT;
    assert_int_equal(ferry_buf_append(&msg, prefix, strlen(prefix)), 0);
    assert_int_equal(ferry_buf_append(&msg, payload.data, payload.len), 0);
    crypto_sign_detached(sig, NULL, msg.data, msg.len, sk_release);
    envelope_by_hand(&payload, pk_release, sig, &mine);
    m = NULL;
    assert_int_equal(parse(&mine, (const uint8_t(*)[32])pk_release, 1, &m), MANIFEST_E_SIGNATURE);
    manifest_free(m);
    ferry_buf_free(&msg);
    ferry_buf_free(&payload);
    ferry_buf_free(&mine);
    ferry_buf_free(&env);
}

static void test_bad_signature_rejected(void **state)
{
    (void)state;
    struct ferry_buf env = FERRY_BUF_INIT;
    build(&env, "2.0.0", 5, "jetson-orin-nano", 0, sk_release);
    /* flip one hex digit of the signature */
    char *sig = strstr((char *)env.data, "\"sig\":\"");
    assert_non_null(sig);
    sig += 7;
    sig[10] = sig[10] == '0' ? '1' : '0';
    struct manifest *m = NULL;
    assert_int_equal(parse(&env, (const uint8_t(*)[32]) & pk_release, 1, &m), MANIFEST_E_SIGNATURE);
    assert_null(m);
    ferry_buf_free(&env);
}

/* Changing the payload (here: the version inside the base64) breaks the signature. */
static void test_tampered_payload_rejected(void **state)
{
    (void)state;
    struct ferry_buf env = FERRY_BUF_INIT;
    build(&env, "2.0.0", 5, "jetson-orin-nano", 0, sk_release);
    char *p = strstr((char *)env.data, "\"payload\":\"");
    assert_non_null(p);
    p += 11 + 40;
    *p = *p == 'A' ? 'B' : 'A';
    struct manifest *m = NULL;
    int rc = parse(&env, (const uint8_t(*)[32]) & pk_release, 1, &m);
    assert_true(rc == MANIFEST_E_SIGNATURE);
    ferry_buf_free(&env);
}

static void test_unknown_key_and_unsigned_rejected(void **state)
{
    (void)state;
    struct ferry_buf env = FERRY_BUF_INIT;
    build(&env, "2.0.0", 5, "jetson-orin-nano", 0, sk_other);
    struct manifest *m = NULL;
    assert_int_equal(parse(&env, (const uint8_t(*)[32]) & pk_release, 1, &m),
                     MANIFEST_E_UNKNOWN_KEY);
    /* an envelope whose signature list is empty */
    const char *unsigned_env =
        "{\"format\":\"ferry-manifest-1\",\"payload\":\"e30=\",\"signatures\":[]}";
    struct ferry_buf u = FERRY_BUF_INIT;
    assert_int_equal(ferry_buf_append(&u, unsigned_env, strlen(unsigned_env)), 0);
    assert_int_equal(parse(&u, (const uint8_t(*)[32]) & pk_release, 1, &m), MANIFEST_E_UNSIGNED);
    ferry_buf_free(&u);
    ferry_buf_free(&env);
}

static void test_wrong_device_class_and_component(void **state)
{
    (void)state;
    struct ferry_buf env = FERRY_BUF_INIT;
    build(&env, "2.0.0", 5, "jetson-agx-orin", 0, sk_release);
    struct manifest *m = NULL;
    assert_int_equal(parse(&env, (const uint8_t(*)[32]) & pk_release, 1, &m), MANIFEST_OK);
    char err[256];
    struct manifest_policy p = {.device_class = "jetson-orin-nano"};
    assert_int_equal(manifest_check(m, &p, err, sizeof(err)), MANIFEST_E_DEVICE_CLASS);
    p.device_class = "jetson-agx-orin";
    p.component = "model";
    assert_int_equal(manifest_check(m, &p, err, sizeof(err)), MANIFEST_E_COMPONENT);
    manifest_free(m);
    ferry_buf_free(&env);
}

static void test_downgrade_refused_unless_signed_rollback(void **state)
{
    (void)state;
    struct ferry_buf env = FERRY_BUF_INIT;
    char err[256];
    struct manifest *m = NULL;
    struct manifest_policy p = {
        .device_class = "c1", .running_version = "2.10.0", .highest_serial = 7};
    build(&env, "2.9.0", 8, "c1", 0, sk_release);
    assert_int_equal(parse(&env, (const uint8_t(*)[32]) & pk_release, 1, &m), MANIFEST_OK);
    assert_int_equal(manifest_check(m, &p, err, sizeof(err)), MANIFEST_E_DOWNGRADE);
    manifest_free(m);
    /* the same downgrade as an explicit, newly signed rollback release passes */
    build(&env, "2.9.0", 8, "c1", 1, sk_release);
    assert_int_equal(parse(&env, (const uint8_t(*)[32]) & pk_release, 1, &m), MANIFEST_OK);
    assert_int_equal(manifest_check(m, &p, err, sizeof(err)), MANIFEST_OK);
    manifest_free(m);
    /* a replayed older rollback manifest (serial not above the highest seen) does not */
    build(&env, "2.9.0", 7, "c1", 1, sk_release);
    assert_int_equal(parse(&env, (const uint8_t(*)[32]) & pk_release, 1, &m), MANIFEST_OK);
    assert_int_equal(manifest_check(m, &p, err, sizeof(err)), MANIFEST_E_DOWNGRADE);
    manifest_free(m);
    /* any manifest below the highest serial is stale, even a newer version */
    build(&env, "3.0.0", 6, "c1", 0, sk_release);
    assert_int_equal(parse(&env, (const uint8_t(*)[32]) & pk_release, 1, &m), MANIFEST_OK);
    assert_int_equal(manifest_check(m, &p, err, sizeof(err)), MANIFEST_E_STALE);
    manifest_free(m);
    ferry_buf_free(&env);
}

static void test_version_compare(void **state)
{
    (void)state;
    assert_true(manifest_version_compare("1.10.0", "1.9.3") > 0);
    assert_true(manifest_version_compare("1.9.3", "1.10.0") < 0);
    assert_int_equal(manifest_version_compare("2.0", "2.0"), 0);
    assert_int_equal(manifest_version_compare("2.00", "2.0"), 0);
    assert_true(manifest_version_compare("2.0.1", "2.0") > 0);
    assert_true(manifest_version_compare("2.0", "2.0.1") < 0);
    assert_true(manifest_version_compare("1.0-rc2", "1.0-rc1") > 0);
    /* Semantic Versioning 2.0 precedence, pre-releases included. */
    assert_true(manifest_version_compare("2.0.0-rc1", "2.0.0") < 0);
    assert_true(manifest_version_compare("2.0.0", "2.0.0-rc1") > 0);
    assert_true(manifest_version_compare("1.10.0-rc1", "1.9.0") > 0);
    assert_true(manifest_version_compare("1.9.0", "1.10.0-rc1") < 0);
    assert_true(manifest_version_compare("1.0.0-rc.2", "1.0.0-rc.10") < 0);
    assert_true(manifest_version_compare("1.0.0-alpha", "1.0.0-alpha.1") < 0);
    assert_true(manifest_version_compare("1.0.0-alpha.1", "1.0.0-alpha.beta") < 0);
    assert_true(manifest_version_compare("1.0.0-beta.11", "1.0.0-rc.1") < 0);
    assert_int_equal(manifest_version_compare("1.0.0+build.5", "1.0.0+build.7"), 0);
    assert_true(manifest_version_compare("1.0.0-rc.1+b", "1.0.0") < 0);
    assert_true(manifest_version_compare("1.2.3.4", "1.2.3") > 0);
    /* The spec's own ordering example (semver.org, section 11). */
    static const char *const order[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
                                        "1.0.0-beta",  "1.0.0-beta.2",  "1.0.0-beta.11",
                                        "1.0.0-rc.1",  "1.0.0",         "2.0.0-rc1",
                                        "2.0.0",       "2.1.0",         "2.1.1"};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        for (size_t j = 0; j < sizeof(order) / sizeof(order[0]); j++) {
            int c = manifest_version_compare(order[i], order[j]);
            if (i < j)
                assert_true(c < 0);
            else if (i > j)
                assert_true(c > 0);
            else
                assert_int_equal(c, 0);
        }
}

/* Malformed envelopes and payloads are refused with a format error, never a crash. */
static void test_malformed_rejected(void **state)
{
    (void)state;
    const char *cases[] = {
        "",
        "{",
        "[]",
        "{\"format\":\"ferry-manifest-1\"}",
        "{\"format\":\"other\",\"payload\":\"e30=\",\"signatures\":[{}]}",
        "{\"format\":\"ferry-manifest-1\",\"payload\":\"%%%\",\"signatures\":[]}",
        "{\"format\":\"ferry-manifest-1\",\"payload\":\"e30=\",\"signatures\":[{\"key_id\":1}]}",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct manifest *m = NULL;
        struct manifest_keys k = {(const uint8_t(*)[32]) & pk_release, 1};
        char err[256];
        int rc = manifest_parse_verified((const uint8_t *)cases[i], strlen(cases[i]), &k, &m, err,
                                         sizeof(err));
        assert_true(rc == MANIFEST_E_FORMAT || rc == MANIFEST_E_UNSIGNED);
        assert_null(m);
    }
    const char *payloads[] = {
        "{}",
        ("{\"format\":\"ferry-release-1\",\"component\":\"kernel\",\"version\":\"1\","
         "\"device_class\":\"c\",\"serial\":1,\"target\":{\"sha256\":\"" /* bad component */
         "0000000000000000000000000000000000000000000000000000000000000000\",\"size\":1},"
         "\"artifacts\":[]}"),
        ("{\"format\":\"ferry-release-1\",\"component\":\"app\",\"version\":\"1 2\","
         "\"device_class\":\"c\",\"serial\":1}"),
    };
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        struct manifest *m = NULL;
        char err[256];
        assert_int_equal(manifest_parse_payload((const uint8_t *)payloads[i], strlen(payloads[i]),
                                                &m, err, sizeof(err)),
                         MANIFEST_E_FORMAT);
    }
}

/* Builds a payload with `cond_json` spliced in as "condition" (raw JSON text) and parses it. */
static struct manifest *payload_with_condition(const char *cond_json)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "{\"format\":\"ferry-release-1\",\"component\":\"model\",\"version\":\"2.0.0\","
             "\"device_class\":\"c\",\"serial\":3,\"condition\":%s,\"target\":{\"sha256\":\""
             "0000000000000000000000000000000000000000000000000000000000000000\",\"size\":1},"
             "\"artifacts\":[{\"kind\":\"full\",\"sha256\":\""
             "0000000000000000000000000000000000000000000000000000000000000000\",\"size\":1,"
             "\"chunk_bytes\":4096,\"chunks\":[\""
             "0000000000000000000000000000000000000000000000000000000000000000\"]}]}",
             cond_json);
    struct manifest *m = NULL;
    char err[256] = "";
    int rc = manifest_parse_payload((const uint8_t *)text, strlen(text), &m, err, sizeof(err));
    if (rc != 0)
        print_message("parse: %s\n", err);
    assert_int_equal(rc, 0);
    return m;
}

static void test_condition_roundtrip_text_payload_signed(void **state)
{
    (void)state;
    struct manifest_condition c;
    char err[256] = "";
    assert_int_equal(manifest_condition_parse_text("  detector.confidence mean 24h < 0.6 "
                                                   "min_samples 10",
                                                   &c, err, sizeof(err)),
                     0);
    assert_string_equal(c.measurement, "detector");
    assert_string_equal(c.field, "confidence");
    assert_int_equal(c.stat, MANIFEST_STAT_MEAN);
    assert_int_equal(c.window_ms, 24LL * 3600 * 1000);
    assert_int_equal(c.op, MANIFEST_OP_LT);
    assert_true(c.value == 0.6);
    assert_int_equal(c.min_samples, 10);
    /* into a signed release and back */
    struct manifest_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.component = "model";
    spec.version = "2.0.0";
    spec.device_class = "c1";
    spec.serial = 5;
    spec.condition = &c;
    assert_int_equal(
        manifest_spec_add_file(&spec, art_path, MANIFEST_ARTIFACT_FULL, 4096, err, sizeof(err)), 0);
    struct ferry_buf payload = FERRY_BUF_INIT, env = FERRY_BUF_INIT;
    assert_int_equal(manifest_build_payload(&spec, &payload, err, sizeof(err)), 0);
    assert_int_equal(manifest_sign(payload.data, payload.len, sk_release, &env), 0);
    struct manifest *m = NULL;
    assert_int_equal(parse(&env, (const uint8_t(*)[32]) & pk_release, 1, &m), 0);
    struct manifest_condition back;
    assert_int_equal(manifest_condition(m, &back, err, sizeof(err)), 1);
    assert_string_equal(back.metric, "detector.confidence");
    assert_int_equal(back.window_ms, c.window_ms);
    assert_true(back.value == 0.6);
    assert_int_equal(back.min_samples, 10);
    char text[256];
    manifest_condition_describe(&back, text, sizeof(text));
    assert_string_equal(text, "detector.confidence mean 24h < 0.6 (min 10 samples)");
    manifest_free(m);
    ferry_buf_free(&payload);
    ferry_buf_free(&env);
    manifest_spec_clear(&spec);
    /* no condition: 0 */
    build(&env, "1.0.0", 1, "c1", 0, sk_release);
    assert_int_equal(parse(&env, (const uint8_t(*)[32]) & pk_release, 1, &m), 0);
    assert_int_equal(manifest_condition(m, &back, err, sizeof(err)), 0);
    manifest_free(m);
    ferry_buf_free(&env);
}

static void test_condition_text_errors_name_the_word(void **state)
{
    (void)state;
    struct {
        const char *text, *want;
    } cases[] = {
        {"detector.confidence mean 24h", "expected METRIC STAT WINDOW OP VALUE"},
        {"confidence mean 24h < 0.6", "MEASUREMENT.FIELD"},
        {"detector.confidence p99 24h < 0.6", "stat \"p99\""},
        {"detector.confidence mean 24x < 0.6", "window \"24x\""},
        {"detector.confidence mean 31d < 0.6", "window \"31d\""},
        {"detector.confidence mean 24h == 0.6", "op \"==\""},
        {"detector.confidence mean 24h < abc", "value \"abc\""},
        {"detector.confidence mean 24h < nan", "finite"},
        {"detector.confidence mean 24h < 0.6 samples 3", "min_samples"},
        {"detector.confidence mean 24h < 0.6 min_samples 2000000", "min_samples"},
        {"detector,x.confidence mean 24h < 0.6", "bad character"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct manifest_condition c;
        char err[256] = "";
        assert_int_equal(manifest_condition_parse_text(cases[i].text, &c, err, sizeof(err)),
                         MANIFEST_E_FORMAT);
        if (!strstr(err, cases[i].want))
            fail_msg("'%s': error '%s' lacks '%s'", cases[i].text, err, cases[i].want);
    }
}

/* A condition the device cannot read keeps the manifest (it is signed and valid otherwise) and
 * says why: the agent then does not install it. */
static void test_unreadable_condition_is_kept_with_reason(void **state)
{
    (void)state;
    struct {
        const char *json, *want;
    } cases[] = {
        {"\"mean<0.6\"", "not an object"},
        {"{\"metric\":\"a.b\",\"stat\":\"p99\",\"window\":\"1h\",\"op\":\"<\",\"value\":1}",
         "stat \"p99\""},
        {"{\"metric\":\"a.b\",\"stat\":\"mean\",\"window\":\"1h\",\"op\":\"<\"}", "needs"},
        {"{\"metric\":\"a.b\",\"stat\":\"mean\",\"window\":\"1h\",\"op\":\"<\",\"value\":1,"
         "\"min_samples\":-1}",
         "min_samples"},
        {"{\"metric\":\"a.b\",\"stat\":\"mean\",\"window\":\"0s\",\"op\":\"<\",\"value\":1}",
         "window"},
        {"{\"metric\":\"a.b\",\"stat\":\"mean\",\"window\":\"1h\",\"op\":\"<\",\"value\":1,"
         "\"when\":\"night\"}",
         "unknown key \"when\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct manifest *m = payload_with_condition(cases[i].json);
        struct manifest_condition c;
        char err[256] = "";
        assert_int_equal(manifest_condition(m, &c, err, sizeof(err)), -1);
        if (!strstr(err, cases[i].want))
            fail_msg("%s: error '%s' lacks '%s'", cases[i].json, err, cases[i].want);
        manifest_free(m);
    }
    struct manifest *m = payload_with_condition(
        "{\"metric\":\"gpu.temp\",\"stat\":\"p95\",\"window\":\"90m\",\"op\":\">=\","
        "\"value\":80}");
    struct manifest_condition c;
    char err[256] = "";
    assert_int_equal(manifest_condition(m, &c, err, sizeof(err)), 1);
    assert_int_equal(c.stat, MANIFEST_STAT_P95);
    assert_int_equal(c.op, MANIFEST_OP_GE);
    assert_int_equal(c.window_ms, 90LL * 60000);
    assert_int_equal(c.min_samples, 1);
    assert_true(manifest_condition_holds(c.op, 80, c.value));
    assert_false(manifest_condition_holds(c.op, 79.9, c.value));
    manifest_free(m);
}

/* The envelope `env` with `extra` (a JSON member, e.g. "\"mirrors\":[...]") added last. */
static void envelope_with(const struct ferry_buf *env, const char *extra, struct ferry_buf *out)
{
    const char *text = (const char *)env->data;
    const char *end = strrchr(text, '}');
    assert_non_null(end);
    ferry_buf_reset(out);
    assert_int_equal(ferry_buf_append(out, text, (size_t)(end - text)), 0);
    assert_int_equal(ferry_buf_printf(out, ",%s}\n", extra), 0);
}

/* Mirrors: the signed payload's first, then the envelope's (unsigned) ones not already listed;
 * every URL checked, lists bounded; a bad list refuses the manifest with where it is wrong. */
static void test_mirrors(void **state)
{
    (void)state;
    struct manifest_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.component = "model";
    spec.version = "3.1.0";
    spec.device_class = "c1";
    spec.serial = 9;
    spec.target_size = 10000;
    spec.mirrors[0] = "https://cdn.example/ferry/artifacts/";
    spec.mirrors[1] = "http://10.0.0.5:8080/a/";
    spec.mirror_count = 2;
    char err[256] = "";
    assert_int_equal(
        manifest_spec_add_file(&spec, art_path, MANIFEST_ARTIFACT_FULL, 4096, err, sizeof(err)), 0);
    struct ferry_buf payload = FERRY_BUF_INIT, env = FERRY_BUF_INIT, env2 = FERRY_BUF_INIT;
    assert_int_equal(manifest_build_payload(&spec, &payload, err, sizeof(err)), 0);
    assert_int_equal(manifest_sign(payload.data, payload.len, sk_release, &env), 0);
    struct manifest *m = NULL;
    assert_int_equal(parse(&env, (const uint8_t(*)[32])pk_release, 1, &m), MANIFEST_OK);
    assert_int_equal(manifest_mirror_count(m), 2);
    assert_int_equal(manifest_mirror_signed_count(m), 2);
    assert_string_equal(manifest_mirror(m, 0), "https://cdn.example/ferry/artifacts/");
    assert_string_equal(manifest_mirror(m, 1), "http://10.0.0.5:8080/a/");
    assert_null(manifest_mirror(m, 2));
    manifest_free(m);

    envelope_with(
        &env, "\"mirrors\":[\"http://lan.example/x/\",\"https://cdn.example/ferry/artifacts/\"]",
        &env2);
    assert_int_equal(parse(&env2, (const uint8_t(*)[32])pk_release, 1, &m), MANIFEST_OK);
    assert_int_equal(manifest_mirror_count(m), 3); /* the repeated one once */
    assert_int_equal(manifest_mirror_signed_count(m), 2);
    assert_string_equal(manifest_mirror(m, 2), "http://lan.example/x/");
    manifest_free(m);

    static const char *bad[] = {
        "\"mirrors\":\"http://a/\"",
        "\"mirrors\":[1]",
        "\"mirrors\":[\"ftp://a/b/\"]",
        "\"mirrors\":[\"http://a/b\"]",
        "\"mirrors\":[\"http:///b/\"]",
        "\"mirrors\":[\"https://\"]",
        "\"mirrors\":[\"http://a/b/?x=/\"]",
        "\"mirrors\":[\"http://a/b#/\"]",
        "\"mirrors\":[\"http://user:pw@a/b/\"]",
        "\"mirrors\":[\"http://a/b c/\"]",
        "\"mirrors\":[\"http://a/\\u0000/\"]",
        "\"mirrors\":[\"http://a/\\u00e9/\"]",
        "\"mirrors\":[\"http://a/\",\"http://b/\",\"http://c/\",\"http://d/\",\"http://e/\","
        "\"http://f/\",\"http://g/\",\"http://h/\",\"http://i/\"]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        envelope_with(&env, bad[i], &env2);
        struct manifest_keys k = {(const uint8_t(*)[32])pk_release, 1};
        m = NULL;
        err[0] = '\0';
        int rc = manifest_parse_verified(env2.data, env2.len, &k, &m, err, sizeof(err));
        if (rc != MANIFEST_E_FORMAT)
            print_message("case %zu: %s -> %d\n", i, bad[i], rc);
        assert_int_equal(rc, MANIFEST_E_FORMAT);
        assert_null(m);
        assert_non_null(strstr(err, "envelope"));
    }

    /* the builder refuses what a device would refuse; one URL at the length limit passes */
    char url[MANIFEST_MAX_MIRROR_URL + 2];
    memset(url, 'a', sizeof(url));
    memcpy(url, "http://", 7);
    url[MANIFEST_MAX_MIRROR_URL - 1] = '/';
    url[MANIFEST_MAX_MIRROR_URL] = '\0';
    assert_int_equal(manifest_mirror_check(url, strlen(url), err, sizeof(err)), MANIFEST_OK);
    url[MANIFEST_MAX_MIRROR_URL] = '/';
    url[MANIFEST_MAX_MIRROR_URL + 1] = '\0';
    assert_int_equal(manifest_mirror_check(url, strlen(url), err, sizeof(err)), MANIFEST_E_FORMAT);
    spec.mirrors[1] = "http://no-slash";
    ferry_buf_reset(&payload);
    assert_int_equal(manifest_build_payload(&spec, &payload, err, sizeof(err)), MANIFEST_E_FORMAT);
    assert_non_null(strstr(err, "end in '/'"));
    ferry_buf_free(&payload);
    ferry_buf_free(&env);
    ferry_buf_free(&env2);
    manifest_spec_clear(&spec);
}

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    crypto_sign_keypair(pk_release, sk_release);
    crypto_sign_keypair(pk_other, sk_other);
    snprintf(art_path, sizeof(art_path), "/tmp/ferry-manifest-test-XXXXXX");
    int fd = mkstemp(art_path);
    if (fd < 0)
        return -1;
    uint8_t buf[10000];
    randombytes_buf(buf, sizeof(buf));
    ssize_t w = write(fd, buf, sizeof(buf));
    close(fd);
    return w == (ssize_t)sizeof(buf) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    unlink(art_path);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_signed_manifest),
        cmocka_unit_test(test_signature_is_ed25519ph_as_documented),
        cmocka_unit_test(test_bad_signature_rejected),
        cmocka_unit_test(test_tampered_payload_rejected),
        cmocka_unit_test(test_unknown_key_and_unsigned_rejected),
        cmocka_unit_test(test_wrong_device_class_and_component),
        cmocka_unit_test(test_downgrade_refused_unless_signed_rollback),
        cmocka_unit_test(test_version_compare),
        cmocka_unit_test(test_malformed_rejected),
        cmocka_unit_test(test_condition_roundtrip_text_payload_signed),
        cmocka_unit_test(test_condition_text_errors_name_the_word),
        cmocka_unit_test(test_unreadable_condition_is_kept_with_reason),
        cmocka_unit_test(test_mirrors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
