/*
 * release_harness.h - what the ingest tests that publish releases share: a signed release of
 * random bytes made with the real manifest code, and reading a file of the test's directory.
 * Header-only (static functions), like ingest_harness.h, with cmocka's assertions.
 */
#ifndef FERRY_TESTS_RELEASE_HARNESS_H
#define FERRY_TESTS_RELEASE_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/buf.h"
#include "common/util.h"
#include "transport/manifest.h"

/* A release of component "model" for class `cls`: `size` random bytes in chunks of `chunk`,
 * signed with `sk`, as <root>/<name>/art.bin and manifest.json; the artifact's SHA-256 hex in
 * sha_hex when not NULL. */
__attribute__((unused)) static void rh_make_release(const char *root, const char *name,
                                                    const char *cls, const char *version,
                                                    uint64_t serial, bool rollback, size_t size,
                                                    uint32_t chunk, const uint8_t *sk,
                                                    char sha_hex[65])
{
    char dir[256], art[320], man[320];
    snprintf(dir, sizeof(dir), "%s/%s", root, name);
    assert_int_equal(ferry_mkdir_p(dir, 0755), 0);
    snprintf(art, sizeof(art), "%s/art.bin", dir);
    snprintf(man, sizeof(man), "%s/manifest.json", dir);
    uint8_t *bytes = malloc(size);
    assert_non_null(bytes);
    randombytes_buf(bytes, size);
    assert_int_equal(ferry_write_file_atomic(art, bytes, size, 0644), 0);
    free(bytes);
    struct manifest_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.component = "model";
    spec.version = version;
    spec.device_class = cls;
    spec.serial = serial;
    spec.rollback = rollback;
    spec.target_size = size;
    char err[256];
    assert_int_equal(
        manifest_spec_add_file(&spec, art, MANIFEST_ARTIFACT_FULL, chunk, err, sizeof(err)), 0);
    memcpy(spec.target_sha256, spec.artifacts[0].sha256, 32);
    if (sha_hex != NULL)
        ferry_hex_encode(spec.artifacts[0].sha256, 32, sha_hex);
    struct ferry_buf payload = FERRY_BUF_INIT, env = FERRY_BUF_INIT;
    assert_int_equal(manifest_build_payload(&spec, &payload, err, sizeof(err)), 0);
    assert_int_equal(manifest_sign(payload.data, payload.len, sk, &env), 0);
    assert_int_equal(ferry_write_file_atomic(man, env.data, env.len, 0644), 0);
    ferry_buf_free(&payload);
    ferry_buf_free(&env);
    manifest_spec_clear(&spec);
}

/* The bytes of <root>/<rel> (at most 64 MiB). */
__attribute__((unused)) static struct ferry_buf rh_file_bytes(const char *root, const char *rel)
{
    char path[320];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(ferry_read_file(path, 64 << 20, &data, &len), 0);
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(ferry_buf_append(&b, data, len), 0);
    free(data);
    return b;
}

#endif
