/*
 * manifest.c - signed release manifests and the device's acceptance policy (see manifest.h,
 * docs/ota.md "Release manifest" and "Security policy").
 *
 * Order of checks in manifest_parse_verified (invariant 4, nothing unverified is trusted):
 *   1. size limit of the envelope;
 *   2. envelope JSON: format tag, base64 payload (decoded size bounded), signatures array;
 *   3. signatures: a signature whose key id names a trusted key must verify over
 *      MANIFEST_SIGN_CONTEXT || payload; only then
 *   4. the payload JSON is parsed, every field type- and range-checked; only then
 *   5. the envelope's unsigned "mirrors" list is read (bounded, each URL checked): it may only
 *      add places to fetch from, and every byte fetched is checked against the signed hashes.
 */
#include "transport/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "common/util.h"

struct manifest {
    char component[MANIFEST_MAX_STRING + 1];
    char version[MANIFEST_MAX_STRING + 1];
    char device_class[MANIFEST_MAX_STRING + 1];
    uint64_t serial;
    int rollback;
    uint8_t target_sha256[32];
    uint64_t target_size;
    size_t artifact_count;
    struct manifest_artifact artifacts[MANIFEST_MAX_ARTIFACTS];
    uint8_t *chunks[MANIFEST_MAX_ARTIFACTS];
    uint8_t *payload;
    size_t payload_len;
    int condition_state; /* 0 none, 1 read into `condition`, -1 unreadable (condition_error) */
    struct manifest_condition condition;
    char condition_error[200];
    /* artifact mirrors: the payload's (signed) first, then the envelope's */
    size_t mirror_count, mirror_signed_count;
    char mirrors[2 * MANIFEST_MAX_MIRRORS][MANIFEST_MAX_MIRROR_URL + 1];
};

const char *manifest_strerror(int err)
{
    switch (err) {
    case MANIFEST_OK: return "ok";
    case MANIFEST_E_ARG: return "invalid argument";
    case MANIFEST_E_NOMEM: return "out of memory";
    case MANIFEST_E_FORMAT: return "malformed manifest";
    case MANIFEST_E_LIMIT: return "manifest limit exceeded";
    case MANIFEST_E_UNSIGNED: return "manifest not signed";
    case MANIFEST_E_UNKNOWN_KEY: return "manifest signed by an unknown key";
    case MANIFEST_E_SIGNATURE: return "bad manifest signature";
    case MANIFEST_E_DEVICE_CLASS: return "wrong device class";
    case MANIFEST_E_COMPONENT: return "wrong component";
    case MANIFEST_E_DOWNGRADE: return "downgrade refused";
    case MANIFEST_E_STALE: return "stale manifest (serial replay)";
    case MANIFEST_E_IO: return "I/O error";
    default: return "unknown manifest error";
    }
}

static int fail(char *err, size_t err_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t err_len, int code, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

void manifest_key_id(const uint8_t public_key[32], char out_hex[17])
{
    uint8_t h[32];
    crypto_generichash(h, sizeof(h), public_key, 32, NULL, 0);
    ferry_hex_encode(h, 8, out_hex);
}

/* ---------------------------------------------------------------------------------------- */
/* Payload parsing                                                                            */

static int valid_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_' || c == '+';
}

/* Copies a required short string field made of [A-Za-z0-9._+-]. */
static int get_name(json_t *obj, const char *key, char *out, const char *where, char *err,
                    size_t err_len)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return fail(err, err_len, MANIFEST_E_FORMAT, "%s: \"%s\" missing or not a string", where,
                    key);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > MANIFEST_MAX_STRING)
        return fail(err, err_len, MANIFEST_E_FORMAT, "%s: \"%s\" length %zu not in 1..%u", where,
                    key, n, MANIFEST_MAX_STRING);
    for (size_t i = 0; i < n; i++)
        if (!valid_name_char(s[i]))
            return fail(err, err_len, MANIFEST_E_FORMAT, "%s: \"%s\" has a bad character", where,
                        key);
    memcpy(out, s, n);
    out[n] = '\0';
    return MANIFEST_OK;
}

static int get_hash(json_t *obj, const char *key, uint8_t out[32], const char *where, char *err,
                    size_t err_len)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v) || json_string_length(v) != 64 ||
        ferry_hex_decode(json_string_value(v), out, 32) != 0)
        return fail(err, err_len, MANIFEST_E_FORMAT, "%s: \"%s\" is not 64 hex digits", where, key);
    return MANIFEST_OK;
}

static int get_u64(json_t *obj, const char *key, uint64_t min, uint64_t max, uint64_t *out,
                   const char *where, char *err, size_t err_len)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < min ||
        (uint64_t)json_integer_value(v) > max)
        return fail(err, err_len, MANIFEST_E_FORMAT, "%s: \"%s\" missing or out of range", where,
                    key);
    *out = (uint64_t)json_integer_value(v);
    return MANIFEST_OK;
}

static const char *component_names[] = {"rootfs", "app", "model", "config", NULL};

int manifest_name_valid(const char *s)
{
    size_t n = s != NULL ? strnlen(s, MANIFEST_MAX_STRING + 1) : 0;
    if (n == 0 || n > MANIFEST_MAX_STRING)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!valid_name_char(s[i]))
            return 0;
    return 1;
}

int manifest_spec_check_names(const struct manifest_spec *spec, char *err, size_t err_len)
{
    int known = 0;
    for (const char **c = component_names; *c && spec->component; c++)
        known |= strcmp(*c, spec->component) == 0;
    if (!known)
        return fail(err, err_len, MANIFEST_E_FORMAT,
                    "component: expected rootfs, app, model or config");
    if (!manifest_name_valid(spec->version))
        return fail(err, err_len, MANIFEST_E_FORMAT, "version: 1..%u of [A-Za-z0-9._+-]",
                    MANIFEST_MAX_STRING);
    if (!manifest_name_valid(spec->device_class))
        return fail(err, err_len, MANIFEST_E_FORMAT, "device class: 1..%u of [A-Za-z0-9._+-]",
                    MANIFEST_MAX_STRING);
    return MANIFEST_OK;
}

static int parse_artifact(json_t *a, size_t idx, struct manifest *m, char *err, size_t err_len)
{
    char where[48];
    snprintf(where, sizeof(where), "artifacts[%zu]", idx);
    if (!json_is_object(a))
        return fail(err, err_len, MANIFEST_E_FORMAT, "%s: not an object", where);
    struct manifest_artifact *art = &m->artifacts[idx];
    memset(art, 0, sizeof(*art));
    json_t *kind = json_object_get(a, "kind");
    const char *ks = json_is_string(kind) ? json_string_value(kind) : "";
    if (strcmp(ks, "full") == 0)
        art->kind = MANIFEST_ARTIFACT_FULL;
    else if (strcmp(ks, "delta") == 0)
        art->kind = MANIFEST_ARTIFACT_DELTA;
    else
        return fail(err, err_len, MANIFEST_E_FORMAT, "%s: \"kind\" must be full or delta", where);
    int rc;
    uint64_t v = 0; /* fail() never returns 0, which the compiler cannot see */
    if ((rc = get_hash(a, "sha256", art->sha256, where, err, err_len)) != 0 ||
        (rc = get_u64(a, "size", 1, UINT64_C(1) << 44, &art->size, where, err, err_len)) != 0 ||
        (rc = get_u64(a, "chunk_bytes", MANIFEST_MIN_CHUNK_BYTES, MANIFEST_MAX_CHUNK_BYTES, &v,
                      where, err, err_len)) != 0)
        return rc;
    art->chunk_bytes = (uint32_t)v;
    uint64_t want = art->size / art->chunk_bytes + (art->size % art->chunk_bytes != 0);
    json_t *chunks = json_object_get(a, "chunks");
    if (!json_is_array(chunks) || json_array_size(chunks) != want || want > MANIFEST_MAX_CHUNKS)
        return fail(err, err_len, MANIFEST_E_FORMAT,
                    "%s: \"chunks\" must list %llu hashes (at most %u)", where,
                    (unsigned long long)want, MANIFEST_MAX_CHUNKS);
    art->chunk_count = (uint32_t)want;
    m->chunks[idx] = malloc(want * 32 + 1);
    if (!m->chunks[idx])
        return fail(err, err_len, MANIFEST_E_NOMEM, "out of memory");
    for (size_t i = 0; i < want; i++) {
        json_t *h = json_array_get(chunks, i);
        if (!json_is_string(h) || json_string_length(h) != 64 ||
            ferry_hex_decode(json_string_value(h), m->chunks[idx] + 32 * i, 32) != 0)
            return fail(err, err_len, MANIFEST_E_FORMAT, "%s: chunks[%zu] is not a hash", where, i);
    }
    art->chunk_sha256 = (const uint8_t(*)[32])m->chunks[idx];
    if (art->kind == MANIFEST_ARTIFACT_DELTA) {
        if ((rc = get_name(a, "base_version", art->base_version, where, err, err_len)) != 0 ||
            (rc = get_hash(a, "base_sha256", art->base_sha256, where, err, err_len)) != 0 ||
            (rc = get_u64(a, "base_size", 0, UINT64_C(1) << 44, &art->base_size, where, err,
                          err_len)) != 0)
            return rc;
    }
    return MANIFEST_OK;
}

static void read_condition(json_t *c, struct manifest *m);
int manifest_mirror_check(const char *url, size_t len, char *err, size_t err_len)
{
    if (!url || len == 0 || len > MANIFEST_MAX_MIRROR_URL)
        return fail(err, err_len, MANIFEST_E_FORMAT, "mirror URL length %zu not in 1..%u", len,
                    MANIFEST_MAX_MIRROR_URL);
    size_t scheme = len >= 8 && memcmp(url, "https://", 8) == 0  ? 8
                    : len >= 7 && memcmp(url, "http://", 7) == 0 ? 7
                                                                 : 0;
    if (scheme == 0)
        return fail(err, err_len, MANIFEST_E_FORMAT,
                    "mirror URL must start with http:// or https://");
    if (scheme == len || url[scheme] == '/')
        return fail(err, err_len, MANIFEST_E_FORMAT, "mirror URL has no host");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f || strchr("\"<>\\^`{|}?#@", c) != NULL)
            return fail(err, err_len, MANIFEST_E_FORMAT,
                        "mirror URL: byte %zu is not allowed (no spaces, quotes, user info, query "
                        "or fragment)",
                        i);
    }
    if (url[len - 1] != '/')
        return fail(err, err_len, MANIFEST_E_FORMAT,
                    "mirror URL must end in '/' (the artifact's hash is appended)");
    return MANIFEST_OK;
}

/* Appends the mirrors of the JSON array `list` (absent: none) to m->mirrors, skipping ones
 * already listed. `where` names the list in errors ("payload" or "envelope"). */
static int parse_mirrors(json_t *list, struct manifest *m, const char *where, char *err,
                         size_t err_len)
{
    if (list == NULL)
        return MANIFEST_OK;
    if (!json_is_array(list) || json_array_size(list) > MANIFEST_MAX_MIRRORS)
        return fail(err, err_len, MANIFEST_E_FORMAT, "%s: \"mirrors\" must be an array of 0..%u",
                    where, MANIFEST_MAX_MIRRORS);
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *u = json_array_get(list, i);
        char why[160];
        if (!json_is_string(u))
            return fail(err, err_len, MANIFEST_E_FORMAT, "%s: mirrors[%zu] is not a string", where,
                        i);
        const char *url = json_string_value(u);
        size_t len = json_string_length(u);
        if (manifest_mirror_check(url, len, why, sizeof(why)) != 0)
            return fail(err, err_len, MANIFEST_E_FORMAT, "%s: mirrors[%zu]: %s", where, i, why);
        bool known = false;
        for (size_t k = 0; k < m->mirror_count && !known; k++)
            known = strcmp(m->mirrors[k], url) == 0;
        if (known || m->mirror_count >= 2 * MANIFEST_MAX_MIRRORS)
            continue;
        memcpy(m->mirrors[m->mirror_count], url, len + 1);
        m->mirror_count++;
    }
    return MANIFEST_OK;
}

static int parse_payload_json(struct manifest *m, char *err, size_t err_len)
{
    json_error_t jerr;
    json_t *root =
        json_loadb((const char *)m->payload, m->payload_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fail(err, err_len, MANIFEST_E_FORMAT, "payload: JSON error at byte %d: %s",
                    jerr.position, jerr.text);
    int rc = MANIFEST_OK;
    if (!json_is_object(root)) {
        rc = fail(err, err_len, MANIFEST_E_FORMAT, "payload: not an object");
        goto out;
    }
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "ferry-release-1") != 0) {
        rc = fail(err, err_len, MANIFEST_E_FORMAT, "payload: \"format\" is not ferry-release-1");
        goto out;
    }
    if ((rc = get_name(root, "component", m->component, "payload", err, err_len)) != 0 ||
        (rc = get_name(root, "version", m->version, "payload", err, err_len)) != 0 ||
        (rc = get_name(root, "device_class", m->device_class, "payload", err, err_len)) != 0 ||
        (rc = get_u64(root, "serial", 1, INT64_MAX, &m->serial, "payload", err, err_len)) != 0)
        goto out;
    int known = 0;
    for (const char **c = component_names; *c; c++)
        known |= strcmp(*c, m->component) == 0;
    if (!known) {
        rc = fail(err, err_len, MANIFEST_E_FORMAT, "payload: unknown component \"%s\"",
                  m->component);
        goto out;
    }
    json_t *rb = json_object_get(root, "rollback");
    if (rb && !json_is_boolean(rb)) {
        rc = fail(err, err_len, MANIFEST_E_FORMAT, "payload: \"rollback\" is not a boolean");
        goto out;
    }
    m->rollback = json_is_true(rb);
    read_condition(json_object_get(root, "condition"), m); /* never refuses the manifest */
    json_t *target = json_object_get(root, "target");
    if (!json_is_object(target)) {
        rc = fail(err, err_len, MANIFEST_E_FORMAT, "payload: \"target\" missing");
        goto out;
    }
    if ((rc = get_hash(target, "sha256", m->target_sha256, "target", err, err_len)) != 0 ||
        (rc = get_u64(target, "size", 0, UINT64_C(1) << 44, &m->target_size, "target", err,
                      err_len)) != 0)
        goto out;
    json_t *arts = json_object_get(root, "artifacts");
    if (!json_is_array(arts) || json_array_size(arts) == 0 ||
        json_array_size(arts) > MANIFEST_MAX_ARTIFACTS) {
        rc = fail(err, err_len, MANIFEST_E_FORMAT, "payload: \"artifacts\" must have 1..%u",
                  MANIFEST_MAX_ARTIFACTS);
        goto out;
    }
    int have_full = 0;
    for (size_t i = 0; i < json_array_size(arts); i++) {
        m->artifact_count = i + 1; /* so manifest_free releases chunk lists on failure */
        if ((rc = parse_artifact(json_array_get(arts, i), i, m, err, err_len)) != 0)
            goto out;
        have_full |= m->artifacts[i].kind == MANIFEST_ARTIFACT_FULL;
    }
    if (!have_full) {
        rc = fail(err, err_len, MANIFEST_E_FORMAT,
                  "payload: no full artifact (every release needs the full-image fallback)");
        goto out;
    }
    rc = parse_mirrors(json_object_get(root, "mirrors"), m, "payload", err, err_len);
    m->mirror_signed_count = m->mirror_count;
out:
    json_decref(root);
    return rc;
}

static int manifest_new_with_payload(const uint8_t *payload, size_t len, struct manifest **out)
{
    struct manifest *m = calloc(1, sizeof(*m));
    if (!m)
        return MANIFEST_E_NOMEM;
    m->payload = malloc(len + 1);
    if (!m->payload) {
        free(m);
        return MANIFEST_E_NOMEM;
    }
    memcpy(m->payload, payload, len);
    m->payload[len] = '\0';
    m->payload_len = len;
    *out = m;
    return MANIFEST_OK;
}

int manifest_parse_payload(const uint8_t *payload, size_t len, struct manifest **out, char *err,
                           size_t err_len)
{
    if (!payload || !out)
        return MANIFEST_E_ARG;
    *out = NULL;
    if (len > MANIFEST_MAX_BYTES)
        return fail(err, err_len, MANIFEST_E_LIMIT, "payload of %zu bytes over %u", len,
                    MANIFEST_MAX_BYTES);
    struct manifest *m;
    if (manifest_new_with_payload(payload, len, &m) != 0)
        return fail(err, err_len, MANIFEST_E_NOMEM, "out of memory");
    int rc = parse_payload_json(m, err, err_len);
    if (rc != MANIFEST_OK) {
        manifest_free(m);
        return rc;
    }
    *out = m;
    return MANIFEST_OK;
}

void manifest_free(struct manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < MANIFEST_MAX_ARTIFACTS; i++)
        free(m->chunks[i]);
    free(m->payload);
    free(m);
}

/* ---------------------------------------------------------------------------------------- */
/* Envelope and signatures                                                                    */

static int verify_sig(const uint8_t *payload, size_t len, const uint8_t sig[64],
                      const uint8_t pk[32])
{
    crypto_sign_state st;
    crypto_sign_init(&st);
    crypto_sign_update(&st, (const unsigned char *)MANIFEST_SIGN_CONTEXT,
                       strlen(MANIFEST_SIGN_CONTEXT));
    crypto_sign_update(&st, payload, len);
    return crypto_sign_final_verify(&st, sig, pk);
}

int manifest_parse_verified(const uint8_t *data, size_t len, const struct manifest_keys *keys,
                            struct manifest **out, char *err, size_t err_len)
{
    if (!data || !out || !keys)
        return MANIFEST_E_ARG;
    *out = NULL;
    if (sodium_init() < 0)
        return fail(err, err_len, MANIFEST_E_ARG, "libsodium init failed");
    if (len > MANIFEST_MAX_BYTES)
        return fail(err, err_len, MANIFEST_E_LIMIT, "manifest of %zu bytes over %u", len,
                    MANIFEST_MAX_BYTES);
    json_error_t jerr;
    json_t *env = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!env)
        return fail(err, err_len, MANIFEST_E_FORMAT, "envelope: JSON error at byte %d: %s",
                    jerr.position, jerr.text);
    int rc = MANIFEST_OK;
    uint8_t *payload = NULL;
    struct manifest *m = NULL;
    json_t *fmt = json_object_get(env, "format");
    json_t *p64 = json_object_get(env, "payload");
    json_t *sigs = json_object_get(env, "signatures");
    if (!json_is_object(env) || !json_is_string(fmt) ||
        strcmp(json_string_value(fmt), MANIFEST_FORMAT) != 0 || !json_is_string(p64)) {
        rc = fail(err, err_len, MANIFEST_E_FORMAT,
                  "envelope: needs \"format\":\"%s\" and a string \"payload\"", MANIFEST_FORMAT);
        goto out;
    }
    size_t b64_len = json_string_length(p64);
    size_t cap = b64_len / 4 * 3 + 3, plen = 0;
    payload = malloc(cap + 1);
    if (!payload) {
        rc = fail(err, err_len, MANIFEST_E_NOMEM, "out of memory");
        goto out;
    }
    if (sodium_base642bin(payload, cap, json_string_value(p64), b64_len, NULL, &plen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        rc = fail(err, err_len, MANIFEST_E_FORMAT, "envelope: payload is not base64");
        goto out;
    }
    if (!json_is_array(sigs) || json_array_size(sigs) == 0) {
        rc = fail(err, err_len, MANIFEST_E_UNSIGNED, "envelope: no signatures");
        goto out;
    }
    if (json_array_size(sigs) > MANIFEST_MAX_SIGNATURES) {
        rc = fail(err, err_len, MANIFEST_E_LIMIT, "envelope: more than %u signatures",
                  MANIFEST_MAX_SIGNATURES);
        goto out;
    }
    /* One good signature by a trusted key is enough; a trusted key with a bad signature is
     * reported as such (tampering), signatures by unknown keys only as unknown. */
    int verified = 0, bad_trusted = 0;
    for (size_t i = 0; i < json_array_size(sigs) && !verified; i++) {
        json_t *s = json_array_get(sigs, i);
        json_t *kid = json_object_get(s, "key_id"), *sig = json_object_get(s, "sig");
        uint8_t sigb[64];
        if (!json_is_string(kid) || json_string_length(kid) != 16 || !json_is_string(sig) ||
            json_string_length(sig) != 128 || ferry_hex_decode(json_string_value(sig), sigb, 64)) {
            rc = fail(err, err_len, MANIFEST_E_FORMAT, "envelope: signatures[%zu] malformed", i);
            goto out;
        }
        for (size_t k = 0; k < keys->count; k++) {
            char id[17];
            manifest_key_id(keys->public_keys[k], id);
            if (strcmp(id, json_string_value(kid)) != 0)
                continue;
            if (verify_sig(payload, plen, sigb, keys->public_keys[k]) == 0)
                verified = 1;
            else
                bad_trusted = 1;
        }
    }
    if (!verified) {
        rc = bad_trusted ? fail(err, err_len, MANIFEST_E_SIGNATURE,
                                "manifest signature by a trusted release key does not verify")
                         : fail(err, err_len, MANIFEST_E_UNKNOWN_KEY,
                                "manifest is not signed by any of the %zu trusted release keys",
                                keys->count);
        goto out;
    }
    if ((rc = manifest_new_with_payload(payload, plen, &m)) != 0) {
        rc = fail(err, err_len, rc, "out of memory");
        goto out;
    }
    if ((rc = parse_payload_json(m, err, err_len)) != 0 ||
        (rc = parse_mirrors(json_object_get(env, "mirrors"), m, "envelope", err, err_len)) != 0)
        goto out;
    *out = m;
    m = NULL;
out:
    manifest_free(m);
    free(payload);
    json_decref(env);
    return rc;
}

int manifest_sign(const uint8_t *payload, size_t len, const uint8_t secret_key[64],
                  struct ferry_buf *out)
{
    if (sodium_init() < 0)
        return MANIFEST_E_ARG;
    uint8_t sig[64];
    crypto_sign_state st;
    crypto_sign_init(&st);
    crypto_sign_update(&st, (const unsigned char *)MANIFEST_SIGN_CONTEXT,
                       strlen(MANIFEST_SIGN_CONTEXT));
    crypto_sign_update(&st, payload, len);
    crypto_sign_final_create(&st, sig, NULL, secret_key);
    uint8_t pk[32];
    crypto_sign_ed25519_sk_to_pk(pk, secret_key);
    char kid[17], sighex[129];
    manifest_key_id(pk, kid);
    ferry_hex_encode(sig, 64, sighex);
    size_t b64cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(b64cap);
    if (!b64)
        return MANIFEST_E_NOMEM;
    sodium_bin2base64(b64, b64cap, payload, len, sodium_base64_VARIANT_ORIGINAL);
    int bad = ferry_buf_printf(out,
                               "{\"format\":\"%s\",\"payload\":\"%s\",\"signatures\":"
                               "[{\"key_id\":\"%s\",\"sig\":\"%s\"}]}\n",
                               MANIFEST_FORMAT, b64, kid, sighex);
    free(b64);
    return bad ? MANIFEST_E_NOMEM : MANIFEST_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Accessors and policy                                                                       */

const char *manifest_component(const struct manifest *m)
{
    return m->component;
}
const char *manifest_version(const struct manifest *m)
{
    return m->version;
}
const char *manifest_device_class(const struct manifest *m)
{
    return m->device_class;
}
uint64_t manifest_serial(const struct manifest *m)
{
    return m->serial;
}
int manifest_is_rollback(const struct manifest *m)
{
    return m->rollback;
}
const uint8_t *manifest_target_sha256(const struct manifest *m)
{
    return m->target_sha256;
}
uint64_t manifest_target_size(const struct manifest *m)
{
    return m->target_size;
}
size_t manifest_artifact_count(const struct manifest *m)
{
    return m->artifact_count;
}

const struct manifest_artifact *manifest_artifact(const struct manifest *m, size_t i)
{
    return i < m->artifact_count ? &m->artifacts[i] : NULL;
}

size_t manifest_mirror_count(const struct manifest *m)
{
    return m->mirror_count;
}

const char *manifest_mirror(const struct manifest *m, size_t i)
{
    return i < m->mirror_count ? m->mirrors[i] : NULL;
}

size_t manifest_mirror_signed_count(const struct manifest *m)
{
    return m->mirror_signed_count;
}

const uint8_t *manifest_payload(const struct manifest *m, size_t *len)
{
    *len = m->payload_len;
    return m->payload;
}

const struct manifest_artifact *manifest_find_delta(const struct manifest *m,
                                                    const uint8_t base_sha256[32])
{
    for (size_t i = 0; i < m->artifact_count; i++)
        if (m->artifacts[i].kind == MANIFEST_ARTIFACT_DELTA &&
            memcmp(m->artifacts[i].base_sha256, base_sha256, 32) == 0)
            return &m->artifacts[i];
    return NULL;
}

const struct manifest_artifact *manifest_find_full(const struct manifest *m)
{
    for (size_t i = 0; i < m->artifact_count; i++)
        if (m->artifacts[i].kind == MANIFEST_ARTIFACT_FULL)
            return &m->artifacts[i];
    return NULL;
}

/* One dot-separated identifier of a version: [p, p + len). */
static bool ident_numeric(const char *p, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

/* Compares two identifiers: numbers numerically (leading zeros do not count), a number below
 * text, text as ASCII. An empty identifier (a missing one in the release part) counts as 0. */
static int ident_compare(const char *a, size_t la, const char *b, size_t lb)
{
    bool na = la == 0 || ident_numeric(a, la), nb = lb == 0 || ident_numeric(b, lb);
    if (na != nb)
        return na ? -1 : 1;
    if (na) {
        while (la > 0 && *a == '0') {
            a++;
            la--;
        }
        while (lb > 0 && *b == '0') {
            b++;
            lb--;
        }
        if (la != lb)
            return la < lb ? -1 : 1;
    }
    int c = strncmp(a, b, la < lb ? la : lb);
    if (c == 0 && la != lb)
        c = la < lb ? -1 : 1;
    return c < 0 ? -1 : c > 0;
}

/* Compares two lists of dot-separated identifiers. `pad`: a missing identifier counts as 0 (the
 * release part: "2.0" == "2.0.0"); otherwise the shorter list is lower (pre-release part). */
static int idents_compare(const char *a, size_t la, const char *b, size_t lb, bool pad)
{
    const char *ea = a + la, *eb = b + lb;
    while (a < ea || b < eb) {
        if (!pad && (a >= ea || b >= eb))
            return a >= ea ? -1 : 1;
        const char *da = memchr(a, '.', (size_t)(ea - a)), *db = memchr(b, '.', (size_t)(eb - b));
        size_t ia = (size_t)((da ? da : ea) - a), ib = (size_t)((db ? db : eb) - b);
        int c = ident_compare(a, ia, b, ib);
        if (c != 0)
            return c;
        a = da ? da + 1 : ea;
        b = db ? db + 1 : eb;
    }
    return 0;
}

int manifest_version_compare(const char *a, const char *b)
{
    /* Semantic Versioning 2.0 precedence (section 11), tolerant of other dotted versions:
     * build metadata after '+' is ignored; the release parts compare identifier by identifier;
     * with equal release parts a pre-release ("-rc.1") is lower than the release itself. */
    size_t la = strcspn(a, "+"), lb = strcspn(b, "+");
    size_t ra = strcspn(a, "-+"), rb = strcspn(b, "-+");
    int c = idents_compare(a, ra, b, rb, true);
    if (c != 0)
        return c;
    bool pa = ra < la, pb = rb < lb;
    if (pa != pb)
        return pa ? -1 : 1;
    if (!pa)
        return 0;
    return idents_compare(a + ra + 1, la - ra - 1, b + rb + 1, lb - rb - 1, false);
}

int manifest_check(const struct manifest *m, const struct manifest_policy *p, char *err,
                   size_t err_len)
{
    if (!m || !p || !p->device_class)
        return MANIFEST_E_ARG;
    if (strcmp(m->device_class, p->device_class) != 0)
        return fail(err, err_len, MANIFEST_E_DEVICE_CLASS,
                    "release %s is for device class %s, this device is %s", m->version,
                    m->device_class, p->device_class);
    if (p->component && strcmp(m->component, p->component) != 0)
        return fail(err, err_len, MANIFEST_E_COMPONENT, "release is for %s, not %s", m->component,
                    p->component);
    if (m->serial < p->highest_serial)
        return fail(err, err_len, MANIFEST_E_STALE,
                    "release serial %llu is below %llu already accepted (replayed manifest)",
                    (unsigned long long)m->serial, (unsigned long long)p->highest_serial);
    if (p->running_version && manifest_version_compare(m->version, p->running_version) < 0) {
        /* A rollback must be a fresh decision: a new serial, not a replay of an old one. */
        if (!m->rollback || m->serial <= p->highest_serial)
            return fail(err, err_len, MANIFEST_E_DOWNGRADE,
                        "release %s is older than running %s and not a signed rollback with a "
                        "new serial",
                        m->version, p->running_version);
    }
    return MANIFEST_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Building                                                                                   */

int manifest_spec_add_file(struct manifest_spec *spec, const char *path,
                           enum manifest_artifact_kind kind, uint32_t chunk_bytes, char *err,
                           size_t err_len)
{
    if (spec->artifact_count >= MANIFEST_MAX_ARTIFACTS || chunk_bytes < MANIFEST_MIN_CHUNK_BYTES ||
        chunk_bytes > MANIFEST_MAX_CHUNK_BYTES)
        return fail(err, err_len, MANIFEST_E_ARG, "too many artifacts or bad chunk size");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, err_len, MANIFEST_E_IO, "open %s: %s", path, strerror(errno));
    int rc = MANIFEST_OK;
    uint8_t *buf = malloc(chunk_bytes);
    struct ferry_buf hashes = FERRY_BUF_INIT;
    crypto_hash_sha256_state whole;
    crypto_hash_sha256_init(&whole);
    uint64_t size = 0;
    if (!buf) {
        rc = fail(err, err_len, MANIFEST_E_NOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        size_t got = 0;
        while (got < chunk_bytes) {
            ssize_t n = read(fd, buf + got, chunk_bytes - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                rc = fail(err, err_len, MANIFEST_E_IO, "read %s: %s", path, strerror(errno));
                goto out;
            }
            if (n == 0)
                break;
            got += (size_t)n;
        }
        if (got == 0)
            break;
        uint8_t h[32];
        crypto_hash_sha256(h, buf, got);
        crypto_hash_sha256_update(&whole, buf, got);
        if (ferry_buf_append(&hashes, h, 32) != 0) {
            rc = fail(err, err_len, MANIFEST_E_NOMEM, "out of memory");
            goto out;
        }
        size += got;
        if (hashes.len / 32 > MANIFEST_MAX_CHUNKS) {
            rc = fail(err, err_len, MANIFEST_E_LIMIT, "%s: more than %u chunks", path,
                      MANIFEST_MAX_CHUNKS);
            goto out;
        }
        if (got < chunk_bytes)
            break;
    }
    if (size == 0) {
        rc = fail(err, err_len, MANIFEST_E_ARG, "%s is empty", path);
        goto out;
    }
    struct manifest_artifact *a = &spec->artifacts[spec->artifact_count];
    memset(a, 0, sizeof(*a));
    a->kind = kind;
    crypto_hash_sha256_final(&whole, a->sha256);
    a->size = size;
    a->chunk_bytes = chunk_bytes;
    a->chunk_count = (uint32_t)(hashes.len / 32);
    spec->chunk_storage[spec->artifact_count] = hashes.data;
    a->chunk_sha256 = (const uint8_t(*)[32])hashes.data;
    hashes.data = NULL;
    spec->artifact_count++;
out:
    ferry_buf_free(&hashes);
    free(buf);
    close(fd);
    return rc;
}

void manifest_spec_clear(struct manifest_spec *spec)
{
    for (size_t i = 0; i < MANIFEST_MAX_ARTIFACTS; i++) {
        free(spec->chunk_storage[i]);
        spec->chunk_storage[i] = NULL;
    }
    spec->artifact_count = 0;
}

static int build_condition(const struct manifest_condition *c, struct ferry_buf *out, char *err,
                           size_t err_len);

int manifest_build_payload(const struct manifest_spec *s, struct ferry_buf *out, char *err,
                           size_t err_len)
{
    if (!s->component || !s->version || !s->device_class || s->serial == 0)
        return fail(err, err_len, MANIFEST_E_ARG,
                    "a release needs component, version, device class and a serial >= 1");
    char hex[65];
    int bad = 0;
    ferry_hex_encode(s->target_sha256, 32, hex);
    bad |= ferry_buf_printf(out, "{\"format\":\"ferry-release-1\",\"component\":");
    bad |= ferry_buf_append_json_string(out, s->component, strlen(s->component));
    bad |= ferry_buf_printf(out, ",\"version\":");
    bad |= ferry_buf_append_json_string(out, s->version, strlen(s->version));
    bad |= ferry_buf_printf(out, ",\"device_class\":");
    bad |= ferry_buf_append_json_string(out, s->device_class, strlen(s->device_class));
    bad |= ferry_buf_printf(out, ",\"serial\":%llu,\"rollback\":%s", (unsigned long long)s->serial,
                            s->rollback ? "true" : "false");
    if (s->condition && build_condition(s->condition, out, err, err_len) != 0)
        return MANIFEST_E_FORMAT;
    bad |= ferry_buf_printf(out, ",\"target\":{\"sha256\":\"%s\",\"size\":%llu},\"artifacts\":[",
                            hex, (unsigned long long)s->target_size);
    for (size_t i = 0; i < s->artifact_count; i++) {
        const struct manifest_artifact *a = &s->artifacts[i];
        ferry_hex_encode(a->sha256, 32, hex);
        bad |= ferry_buf_printf(out,
                                "%s{\"kind\":\"%s\",\"sha256\":\"%s\",\"size\":%llu,"
                                "\"chunk_bytes\":%u,",
                                i ? "," : "", a->kind == MANIFEST_ARTIFACT_FULL ? "full" : "delta",
                                hex, (unsigned long long)a->size, a->chunk_bytes);
        if (a->kind == MANIFEST_ARTIFACT_DELTA) {
            ferry_hex_encode(a->base_sha256, 32, hex);
            bad |= ferry_buf_printf(out, "\"base_version\":");
            bad |= ferry_buf_append_json_string(out, a->base_version, strlen(a->base_version));
            bad |= ferry_buf_printf(out, ",\"base_sha256\":\"%s\",\"base_size\":%llu,", hex,
                                    (unsigned long long)a->base_size);
        }
        bad |= ferry_buf_printf(out, "\"chunks\":[");
        for (uint32_t c = 0; c < a->chunk_count; c++) {
            ferry_hex_encode(a->chunk_sha256[c], 32, hex);
            bad |= ferry_buf_printf(out, "%s\"%s\"", c ? "," : "", hex);
        }
        bad |= ferry_buf_printf(out, "]}");
    }
    bad |= ferry_buf_printf(out, "]");
    if (s->mirror_count > MANIFEST_MAX_MIRRORS)
        return fail(err, err_len, MANIFEST_E_LIMIT, "more than %u mirrors", MANIFEST_MAX_MIRRORS);
    for (size_t i = 0; i < s->mirror_count; i++) {
        if (manifest_mirror_check(s->mirrors[i], strlen(s->mirrors[i]), err, err_len) != 0)
            return MANIFEST_E_FORMAT;
        bad |= ferry_buf_printf(out, "%s", i ? "," : ",\"mirrors\":[");
        bad |= ferry_buf_append_json_string(out, s->mirrors[i], strlen(s->mirrors[i]));
        bad |= ferry_buf_printf(out, "%s", i + 1 == s->mirror_count ? "]" : "");
    }
    bad |= ferry_buf_printf(out, "}\n");
    if (bad)
        return fail(err, err_len, MANIFEST_E_NOMEM, "out of memory");
    /* What we write must be what a device accepts. */
    struct manifest *m = NULL;
    int rc = manifest_parse_payload(out->data, out->len, &m, err, err_len);
    manifest_free(m);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Release conditions (docs/ota.md "Release conditions")                                      */

static const char *const stat_names[] = {"count", "mean", "min", "max", "p50", "p95"};
static const char *const op_names[] = {"<", "<=", ">", ">="};

const char *manifest_condition_stat_name(enum manifest_condition_stat stat)
{
    return (unsigned)stat < sizeof(stat_names) / sizeof(stat_names[0]) ? stat_names[stat] : "?";
}

const char *manifest_condition_op_name(enum manifest_condition_op op)
{
    return (unsigned)op < sizeof(op_names) / sizeof(op_names[0]) ? op_names[op] : "?";
}

int manifest_condition_holds(enum manifest_condition_op op, double value, double threshold)
{
    switch (op) {
    case MANIFEST_OP_LT: return value < threshold;
    case MANIFEST_OP_LE: return value <= threshold;
    case MANIFEST_OP_GT: return value > threshold;
    case MANIFEST_OP_GE: return value >= threshold;
    }
    return 0;
}

/* Characters a condition's metric may hold: printable ASCII without the line-protocol
 * delimiters and quotes (the same rule as the health gates', engine/ota/gate.h). */
static int metric_char_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != ',' && c != '=' && c != '"' && c != '\\' && c != '!';
}

static int set_metric(struct manifest_condition *c, const char *s, size_t n, char *err,
                      size_t err_len)
{
    if (n < 3 || n > MANIFEST_CONDITION_METRIC_MAX)
        return fail(err, err_len, MANIFEST_E_FORMAT,
                    "condition: \"metric\" must be MEASUREMENT.FIELD of 3..%u characters",
                    MANIFEST_CONDITION_METRIC_MAX);
    size_t dot = n;
    for (size_t i = 0; i < n; i++) {
        if (!metric_char_ok((unsigned char)s[i]))
            return fail(err, err_len, MANIFEST_E_FORMAT,
                        "condition: \"metric\" has a bad character at offset %zu", i);
        if (s[i] == '.')
            dot = i;
    }
    if (dot == n || dot == 0 || dot == n - 1)
        return fail(err, err_len, MANIFEST_E_FORMAT,
                    "condition: \"metric\" must be MEASUREMENT.FIELD (e.g. detector.confidence)");
    memcpy(c->metric, s, n);
    c->metric[n] = '\0';
    memcpy(c->measurement, s, dot);
    c->measurement[dot] = '\0';
    memcpy(c->field, s + dot + 1, n - dot - 1);
    c->field[n - dot - 1] = '\0';
    return MANIFEST_OK;
}

/* A short, printable copy of outside text for an error message (events and logs carry it):
 * printable ASCII except quotes and backslashes; anything else becomes '?'. */
static const char *shown(const char *s, char *out, size_t n)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\' ? s[i] : '?';
    out[i] = '\0';
    return out;
}

static int set_stat(struct manifest_condition *c, const char *s, char *err, size_t err_len)
{
    char shown_text[33];
    for (size_t i = 0; i < sizeof(stat_names) / sizeof(stat_names[0]); i++)
        if (strcmp(s, stat_names[i]) == 0) {
            c->stat = (enum manifest_condition_stat)i;
            return MANIFEST_OK;
        }
    return fail(err, err_len, MANIFEST_E_FORMAT,
                "condition: stat \"%s\" is not one of count, mean, min, max, p50, p95",
                shown(s, shown_text, sizeof(shown_text)));
}

static int set_op(struct manifest_condition *c, const char *s, char *err, size_t err_len)
{
    char shown_text[9];
    for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
        if (strcmp(s, op_names[i]) == 0) {
            c->op = (enum manifest_condition_op)i;
            return MANIFEST_OK;
        }
    return fail(err, err_len, MANIFEST_E_FORMAT, "condition: op \"%s\" is not one of < <= > >=",
                shown(s, shown_text, sizeof(shown_text)));
}

static int set_window(struct manifest_condition *c, const char *s, char *err, size_t err_len)
{
    char shown_text[33];
    int64_t ms = 0;
    if (ferry_parse_duration_ms(s, &ms) != 0 || ms < 1000 || ms > MANIFEST_CONDITION_MAX_WINDOW_MS)
        return fail(err, err_len, MANIFEST_E_FORMAT,
                    "condition: window \"%s\" is not a duration from 1s to 30d (e.g. 24h)",
                    shown(s, shown_text, sizeof(shown_text)));
    c->window_ms = ms;
    return MANIFEST_OK;
}

static int set_value(struct manifest_condition *c, double v, char *err, size_t err_len)
{
    if (!(v == v) || v > 1e300 || v < -1e300)
        return fail(err, err_len, MANIFEST_E_FORMAT, "condition: value is not a finite number");
    c->value = v;
    return MANIFEST_OK;
}

static int parse_condition_json(json_t *j, struct manifest_condition *c, char *err, size_t err_len)
{
    memset(c, 0, sizeof(*c));
    c->min_samples = 1;
    if (!json_is_object(j))
        return fail(err, err_len, MANIFEST_E_FORMAT, "condition: not an object");
    const char *key;
    json_t *v;
    char shown_text[41];
    json_object_foreach(j, key, v)
    {
        if (strcmp(key, "metric") != 0 && strcmp(key, "stat") != 0 && strcmp(key, "window") != 0 &&
            strcmp(key, "op") != 0 && strcmp(key, "value") != 0 && strcmp(key, "min_samples") != 0)
            return fail(err, err_len, MANIFEST_E_FORMAT, "condition: unknown key \"%s\"",
                        shown(key, shown_text, sizeof(shown_text)));
    }
    json_t *metric = json_object_get(j, "metric"), *stat = json_object_get(j, "stat"),
           *window = json_object_get(j, "window"), *op = json_object_get(j, "op"),
           *value = json_object_get(j, "value"), *min = json_object_get(j, "min_samples");
    if (!json_is_string(metric) || !json_is_string(stat) || !json_is_string(window) ||
        !json_is_string(op) || !json_is_number(value))
        return fail(err, err_len, MANIFEST_E_FORMAT,
                    "condition: needs strings \"metric\", \"stat\", \"window\", \"op\" and a "
                    "number \"value\"");
    int rc;
    if ((rc = set_metric(c, json_string_value(metric), json_string_length(metric), err, err_len)) !=
            0 ||
        (rc = set_stat(c, json_string_value(stat), err, err_len)) != 0 ||
        (rc = set_window(c, json_string_value(window), err, err_len)) != 0 ||
        (rc = set_op(c, json_string_value(op), err, err_len)) != 0 ||
        (rc = set_value(c, json_number_value(value), err, err_len)) != 0)
        return rc;
    if (min) {
        if (!json_is_integer(min) || json_integer_value(min) < 0 ||
            json_integer_value(min) > (json_int_t)MANIFEST_CONDITION_MAX_SAMPLES)
            return fail(err, err_len, MANIFEST_E_FORMAT,
                        "condition: \"min_samples\" is not an integer from 0 to %u",
                        MANIFEST_CONDITION_MAX_SAMPLES);
        c->min_samples = (uint32_t)json_integer_value(min);
    }
    return MANIFEST_OK;
}

static void read_condition(json_t *c, struct manifest *m)
{
    if (c == NULL)
        return;
    if (parse_condition_json(c, &m->condition, m->condition_error, sizeof(m->condition_error)) ==
        MANIFEST_OK)
        m->condition_state = 1;
    else
        m->condition_state = -1;
}

int manifest_condition(const struct manifest *m, struct manifest_condition *out, char *err,
                       size_t err_len)
{
    if (m->condition_state < 0) {
        fail(err, err_len, MANIFEST_E_FORMAT, "%s", m->condition_error);
        return -1;
    }
    if (m->condition_state > 0)
        *out = m->condition;
    return m->condition_state;
}

int manifest_condition_parse_text(const char *text, struct manifest_condition *out, char *err,
                                  size_t err_len)
{
    if (!text || !out)
        return MANIFEST_E_ARG;
    /* Words separated by blanks; at most 7 ("... min_samples N"). */
    char words[7][MANIFEST_CONDITION_METRIC_MAX + 1];
    char shown_value[41];
    size_t n = 0;
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        size_t len = 0;
        while (p[len] && p[len] != ' ' && p[len] != '\t')
            len++;
        if (n == 7)
            return fail(err, err_len, MANIFEST_E_FORMAT,
                        "condition: more than 7 words (METRIC STAT WINDOW OP VALUE "
                        "[min_samples N])");
        if (len > MANIFEST_CONDITION_METRIC_MAX)
            return fail(err, err_len, MANIFEST_E_FORMAT, "condition: word %zu is too long", n + 1);
        memcpy(words[n], p, len);
        words[n][len] = '\0';
        n++;
        p += len;
    }
    if (n != 5 && n != 7)
        return fail(err, err_len, MANIFEST_E_FORMAT,
                    "condition: expected METRIC STAT WINDOW OP VALUE [min_samples N], e.g. "
                    "'detector.confidence mean 24h < 0.6'");
    memset(out, 0, sizeof(*out));
    out->min_samples = 1;
    int rc;
    if ((rc = set_metric(out, words[0], strlen(words[0]), err, err_len)) != 0 ||
        (rc = set_stat(out, words[1], err, err_len)) != 0 ||
        (rc = set_window(out, words[2], err, err_len)) != 0 ||
        (rc = set_op(out, words[3], err, err_len)) != 0)
        return rc;
    char *end = NULL;
    errno = 0;
    double v = strtod(words[4], &end);
    if (end == words[4] || *end || errno)
        return fail(err, err_len, MANIFEST_E_FORMAT, "condition: value \"%s\" is not a number",
                    shown(words[4], shown_value, sizeof(shown_value)));
    if ((rc = set_value(out, v, err, err_len)) != 0)
        return rc;
    if (n == 7) {
        uint64_t ms = 0;
        if (strcmp(words[5], "min_samples") != 0 ||
            ferry_parse_u64(words[6], MANIFEST_CONDITION_MAX_SAMPLES, &ms) != 0)
            return fail(err, err_len, MANIFEST_E_FORMAT,
                        "condition: after the value only \"min_samples N\" (N from 0 to %u)",
                        MANIFEST_CONDITION_MAX_SAMPLES);
        out->min_samples = (uint32_t)ms;
    }
    return MANIFEST_OK;
}

static void window_text(int64_t ms, char *buf, size_t len)
{
    if (ms % 86400000 == 0 && ms > 3 * 86400000LL) /* "24h" reads better than "1d" */
        snprintf(buf, len, "%lldd", (long long)(ms / 86400000));
    else if (ms % 3600000 == 0)
        snprintf(buf, len, "%lldh", (long long)(ms / 3600000));
    else if (ms % 60000 == 0)
        snprintf(buf, len, "%lldm", (long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(buf, len, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, len, "%lldms", (long long)ms);
}

void manifest_condition_describe(const struct manifest_condition *c, char *buf, size_t len)
{
    char w[32];
    window_text(c->window_ms, w, sizeof(w));
    snprintf(buf, len, "%s %s %s %s %.15g (min %u samples)", c->metric,
             manifest_condition_stat_name(c->stat), w, manifest_condition_op_name(c->op), c->value,
             c->min_samples);
}

static int build_condition(const struct manifest_condition *c, struct ferry_buf *out, char *err,
                           size_t err_len)
{
    struct manifest_condition check;
    char w[32];
    window_text(c->window_ms, w, sizeof(w));
    /* what goes into a signed release must read back the same: check it with the parser's rules */
    int rc = set_metric(&check, c->metric, strlen(c->metric), err, err_len);
    if (rc == 0)
        rc = set_window(&check, w, err, err_len);
    if (rc == 0)
        rc = set_value(&check, c->value, err, err_len);
    if (rc == 0 && c->min_samples > MANIFEST_CONDITION_MAX_SAMPLES)
        rc = fail(err, err_len, MANIFEST_E_FORMAT, "condition: min_samples over %u",
                  MANIFEST_CONDITION_MAX_SAMPLES);
    if (rc != 0)
        return rc;
    int bad = ferry_buf_printf(out, ",\"condition\":{\"metric\":");
    bad |= ferry_buf_append_json_string(out, c->metric, strlen(c->metric));
    bad |= ferry_buf_printf(out,
                            ",\"stat\":\"%s\",\"window\":\"%s\",\"op\":\"%s\",\"value\":%.17g,"
                            "\"min_samples\":%u}",
                            manifest_condition_stat_name(c->stat), w,
                            manifest_condition_op_name(c->op), c->value, c->min_samples);
    return bad ? fail(err, err_len, MANIFEST_E_NOMEM, "out of memory") : MANIFEST_OK;
}
