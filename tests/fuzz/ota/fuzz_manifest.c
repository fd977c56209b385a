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
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "transport/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const uint8_t key[1][32] = {{1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                        12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                        23, 24, 25, 26, 27, 28, 29, 30, 31, 32}};
    struct manifest_keys keys = {key, 1};
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
