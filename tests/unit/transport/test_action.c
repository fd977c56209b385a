/*
 * test_action.c - signed device actions (transport/action.h): sign -> verify round trip, every
 * field bound by the signature, untrusted keys, another context's signature, form and limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "common/buf.h"
#include "common/util.h"
#include "transport/action.h"

#define SET(dst, src) ferry_strlcpy((dst), (src), sizeof(dst))

static uint8_t pk[32], sk[64], pk2[32], sk2[64];

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(pk2, sk2);
    return 0;
}

static void make(struct action *a, enum action_kind kind)
{
    memset(a, 0, sizeof(*a));
    action_new_id(a->id);
    SET(a->device, "dev-1");
    a->kind = kind;
    if (kind == ACTION_RUN) {
        SET(a->args[0], "/bin/echo");
        SET(a->args[1], "hi");
        a->n_args = 2;
    } else if (kind == ACTION_UPLOAD_LOGS) {
        SET(a->args[0], "30");
        SET(a->args[1], "app.service");
        a->n_args = 2;
    } else if (kind == ACTION_RESTART_UNIT) {
        SET(a->args[0], "app.service");
        a->n_args = 1;
    }
    a->created_s = 1800000000;
    a->expires_s = 1800086400;
}

static void sign(const struct action *a, const uint8_t *key, struct ferry_buf *out)
{
    char why[200] = "";
    ferry_buf_reset(out);
    assert_int_equal(action_sign(a, key, out, why, sizeof(why)), 0);
}

static void test_roundtrip(void **state)
{
    (void)state;
    const uint8_t(*keys)[32] = (const uint8_t(*)[32])pk;
    for (int k = ACTION_RESTART_UNIT; k <= ACTION_UPLOAD_LOGS; k++) {
        struct action a, b;
        make(&a, (enum action_kind)k);
        struct ferry_buf env = FERRY_BUF_INIT;
        sign(&a, sk, &env);
        char why[200] = "";
        assert_int_equal(action_parse_verified(env.data, env.len, keys, 1, &b, why, sizeof(why)),
                         0);
        assert_string_equal(a.id, b.id);
        assert_string_equal(b.device, "dev-1");
        assert_int_equal(b.kind, k);
        assert_int_equal(b.n_args, a.n_args);
        for (size_t i = 0; i < a.n_args; i++)
            assert_string_equal(a.args[i], b.args[i]);
        assert_int_equal(b.created_s, a.created_s);
        assert_int_equal(b.expires_s, a.expires_s);
        assert_memory_equal(b.key, pk, 32);
        /* the ingest's unverified view agrees */
        assert_int_equal(action_parse_unverified(env.data, env.len, &b, why, sizeof(why)), 0);
        assert_string_equal(a.id, b.id);
        ferry_buf_free(&env);
    }
}

/* Changing any byte of the payload breaks the signature; the claimed id is still reported. */
static void test_every_field_bound(void **state)
{
    (void)state;
    const uint8_t(*keys)[32] = (const uint8_t(*)[32])pk;
    struct action a, b;
    make(&a, ACTION_RUN);
    struct ferry_buf env = FERRY_BUF_INIT;
    sign(&a, sk, &env);
    json_t *o = json_loadb((const char *)env.data, env.len, 0, NULL);
    assert_non_null(o);
    const char *payload = json_string_value(json_object_get(o, "action"));
    const char *edits[][2] = {{"dev-1", "dev-2"},           {"\"run\"", "\"reb\""},
                              {"/bin/echo", "/bin/echx"},   {"1800000000", "1800000001"},
                              {"1800086400", "1900086400"}, {"\"hi\"", "\"ho\""}};
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        char *p = strdup(payload), *at = strstr(p, edits[i][0]);
        assert_non_null(at);
        memcpy(at, edits[i][1], strlen(edits[i][1]));
        json_t *o2 = json_deep_copy(o);
        json_object_set_new(o2, "action", json_string(p));
        char *text = json_dumps(o2, JSON_COMPACT);
        char why[200] = "";
        assert_int_equal(action_parse_verified(text, strlen(text), keys, 1, &b, why, sizeof(why)),
                         ACTION_E_SIG);
        assert_string_equal(b.id, a.id); /* for the "refused" report */
        free(text);
        json_decref(o2);
        free(p);
    }
    json_decref(o);
    ferry_buf_free(&env);
}

static void test_untrusted_key(void **state)
{
    (void)state;
    struct action a, b;
    make(&a, ACTION_REBOOT);
    struct ferry_buf env = FERRY_BUF_INIT;
    sign(&a, sk2, &env);
    char why[200] = "";
    assert_int_equal(
        action_parse_verified(env.data, env.len, (const uint8_t(*)[32])pk, 1, &b, why, sizeof(why)),
        ACTION_E_KEY);
    assert_non_null(strstr(why, "not one of [actions] keys"));
    assert_string_equal(b.id, a.id);
    /* no keys at all: nothing is trusted */
    assert_int_equal(action_parse_verified(env.data, env.len, NULL, 0, &b, why, sizeof(why)),
                     ACTION_E_KEY);
    /* the envelope claims the trusted key but was signed by another: bad signature */
    json_t *o = json_loadb((const char *)env.data, env.len, 0, NULL);
    char pkhex[65];
    ferry_hex_encode(pk, 32, pkhex);
    pkhex[64] = '\0';
    json_object_set_new(o, "key", json_string(pkhex));
    char *text = json_dumps(o, JSON_COMPACT);
    assert_int_equal(action_parse_verified(text, strlen(text), (const uint8_t(*)[32])pk, 1, &b, why,
                                           sizeof(why)),
                     ACTION_E_SIG);
    free(text);
    json_decref(o);
    ferry_buf_free(&env);
}

/* A signature of the same bytes without the action context (as another ferry message would
 * carry) does not verify as an action. */
static void test_context_separation(void **state)
{
    (void)state;
    struct action a, b;
    make(&a, ACTION_REBOOT);
    struct ferry_buf env = FERRY_BUF_INIT;
    sign(&a, sk, &env);
    json_t *o = json_loadb((const char *)env.data, env.len, 0, NULL);
    const char *payload = json_string_value(json_object_get(o, "action"));
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, (const uint8_t *)payload, strlen(payload), sk);
    char sighex[129];
    ferry_hex_encode(sig, 64, sighex);
    sighex[128] = '\0';
    json_object_set_new(o, "signature", json_string(sighex));
    char *text = json_dumps(o, JSON_COMPACT);
    char why[200];
    assert_int_equal(action_parse_verified(text, strlen(text), (const uint8_t(*)[32])pk, 1, &b, why,
                                           sizeof(why)),
                     ACTION_E_SIG);
    free(text);
    json_decref(o);
    ferry_buf_free(&env);
}

static void test_form_and_limits(void **state)
{
    (void)state;
    struct action a;
    struct ferry_buf env = FERRY_BUF_INIT;
    char why[200];
    make(&a, ACTION_RUN);
    SET(a.args[1], "a\nb"); /* control character */
    assert_int_equal(action_sign(&a, sk, &env, why, sizeof(why)), ACTION_E_FORMAT);
    make(&a, ACTION_RUN);
    a.n_args = 0;
    assert_int_equal(action_sign(&a, sk, &env, why, sizeof(why)), ACTION_E_FORMAT);
    make(&a, ACTION_RESTART_UNIT);
    a.n_args = 2;
    SET(a.args[1], "x");
    assert_int_equal(action_sign(&a, sk, &env, why, sizeof(why)), ACTION_E_FORMAT);
    make(&a, ACTION_REBOOT);
    a.expires_s = a.created_s;
    assert_int_equal(action_sign(&a, sk, &env, why, sizeof(why)), ACTION_E_FORMAT);
    make(&a, ACTION_REBOOT);
    SET(a.device, "bad/device");
    assert_int_equal(action_sign(&a, sk, &env, why, sizeof(why)), ACTION_E_FORMAT);
    make(&a, ACTION_REBOOT);
    a.id[3] = 'G';
    assert_int_equal(action_sign(&a, sk, &env, why, sizeof(why)), ACTION_E_FORMAT);
    const char *minutes[] = {"0", "1441", "abc", "-5", "30m"};
    for (size_t i = 0; i < sizeof(minutes) / sizeof(minutes[0]); i++) {
        make(&a, ACTION_UPLOAD_LOGS);
        SET(a.args[0], minutes[i]);
        assert_int_equal(action_sign(&a, sk, &env, why, sizeof(why)), ACTION_E_FORMAT);
    }
    assert_int_equal(env.len, 0);
    /* malformed envelopes */
    struct action b;
    const char *bad[] = {"",
                         "{}",
                         "[]",
                         "{\"action\":\"x\",\"key\":\"00\",\"signature\":\"00\"}",
                         "{\"action\":1,\"key\":2,\"signature\":3}",
                         "not json"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(action_parse_unverified(bad[i], strlen(bad[i]), &b, why, sizeof(why)),
                         ACTION_E_FORMAT);
    char *big = malloc(ACTION_ENVELOPE_MAX + 2);
    memset(big, ' ', ACTION_ENVELOPE_MAX + 1);
    big[ACTION_ENVELOPE_MAX + 1] = '\0';
    assert_int_equal(action_parse_unverified(big, ACTION_ENVELOPE_MAX + 1, &b, why, sizeof(why)),
                     ACTION_E_FORMAT);
    free(big);
    ferry_buf_free(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),       cmocka_unit_test(test_every_field_bound),
        cmocka_unit_test(test_untrusted_key),   cmocka_unit_test(test_context_separation),
        cmocka_unit_test(test_form_and_limits),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
