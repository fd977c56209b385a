/*
 * fuzz_action.c - libFuzzer target: the signed device action parser (transport/action.h) on
 * arbitrary bytes. Properties: neither parser crashes or reads past the input; an envelope the
 * unverified parser accepts holds an action that passes every limit, and signing that action
 * with the target's own key gives an envelope the verifying parser accepts with the same fields;
 * the verifying parser never accepts the raw input (no input can hold a signature by the
 * target's random key).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/buf.h"
#include "transport/action.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t pk[32], sk[64];
static int ready;

static void same(const struct action *a, const struct action *b)
{
    if (strcmp(a->id, b->id) != 0 || strcmp(a->device, b->device) != 0 || a->kind != b->kind ||
        a->n_args != b->n_args || a->created_s != b->created_s || a->expires_s != b->expires_s)
        abort();
    for (size_t i = 0; i < a->n_args; i++)
        if (strcmp(a->args[i], b->args[i]) != 0)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        crypto_sign_keypair(pk, sk);
        ready = 1;
    }
    struct action a, b;
    char why[256];
    const uint8_t(*keys)[32] = (const uint8_t(*)[32])pk;
    if (action_parse_verified(data, size, keys, 1, &a, why, sizeof(why)) == ACTION_OK)
        abort();
    if (action_parse_unverified(data, size, &a, why, sizeof(why)) != ACTION_OK)
        return 0;
    struct ferry_buf env = FERRY_BUF_INIT;
    if (action_sign(&a, sk, &env, why, sizeof(why)) != ACTION_OK)
        abort(); /* an accepted action passes the limits action_sign checks */
    if (action_parse_verified(env.data, env.len, keys, 1, &b, why, sizeof(why)) != ACTION_OK)
        abort();
    same(&a, &b);
    ferry_buf_free(&env);
    return 0;
}
