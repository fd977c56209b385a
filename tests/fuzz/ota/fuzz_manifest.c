/*
 * fuzz_manifest.c - libFuzzer target for the release manifest parser (transport/manifest.c).
 *
 * The first input byte picks the entry point: even → the signed envelope path
 * (manifest_parse_verified with a fixed trusted key; reaching the payload needs a valid
 * signature, so this exercises envelope, base64 and signature handling), odd → the payload
 * parser directly (manifest_parse_payload) followed by the policy checks and accessors, the
 * release condition (manifest_condition, read leniently from the payload), and the condition's
 * text form (manifest_condition_parse_text, what `ferry release create --condition` takes) on the
 * same bytes.
 *
 * The trusted key is the Ed25519 key pair of the seed bytes 1, 2, ..., 32
 * (crypto_sign_seed_keypair), so committed seeds signed with it ("mirrors-*", made with
 * `ferry release create --key` from that secret key) pass the signature, and mutations of the
 * envelope outside the signed payload (its unsigned "mirrors" list) reach the parser behind it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "transport/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static uint8_t key[1][32];
    static int have_key;
    if (!have_key) {
        uint8_t seed[32], sk[64];
        for (int i = 0; i < 32; i++)
            seed[i] = (uint8_t)(i + 1);
        if (sodium_init() < 0 || crypto_sign_seed_keypair(key[0], sk, seed) != 0)
            return 0;
        have_key = 1;
    }
    struct manifest_keys keys = {(const uint8_t(*)[32])key, 1};
    struct manifest *m = NULL;
    char err[256];
    int rc;
    if (data[0] % 2 == 0)
        rc = manifest_parse_verified(data + 1, size - 1, &keys, &m, err, sizeof(err));
    else
        rc = manifest_parse_payload(data + 1, size - 1, &m, err, sizeof(err));
    if (rc == MANIFEST_OK) {
        struct manifest_policy p = {
            .device_class = "c1", .running_version = "1.2.3", .highest_serial = 3};
        (void)manifest_check(m, &p, err, sizeof(err));
        for (size_t i = 0; i < manifest_artifact_count(m); i++) {
            const struct manifest_artifact *a = manifest_artifact(m, i);
            volatile uint8_t sink = 0;
            for (uint32_t c = 0; c < a->chunk_count; c++)
                sink ^= a->chunk_sha256[c][0];
            (void)sink;
        }
        (void)manifest_find_full(m);
        struct manifest_condition c;
        char text[400];
        if (manifest_condition(m, &c, err, sizeof(err)) == 1) {
            manifest_condition_describe(&c, text, sizeof(text));
            (void)manifest_condition_holds(c.op, c.value, c.value);
        }
        volatile size_t mirror_bytes = manifest_mirror_signed_count(m);
        for (size_t i = 0; i < manifest_mirror_count(m); i++)
            mirror_bytes += strlen(manifest_mirror(m, i));
        (void)mirror_bytes;
        (void)manifest_version_compare(manifest_version(m), "1.2.3");
    }
    manifest_free(m);
    if (data[0] % 2 == 1 && size - 1 < 1024) {
        char text[1024];
        memcpy(text, data + 1, size - 1);
        text[size - 1] = '\0';
        struct manifest_condition c;
        if (manifest_condition_parse_text(text, &c, err, sizeof(err)) == MANIFEST_OK) {
            char out[400];
            manifest_condition_describe(&c, out, sizeof(out));
        }
    }
    return 0;
}
