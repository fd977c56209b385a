/*
 * reqsign.c - device-signed HTTP requests (reqsign.h; docs/wire-format.md, "Device-signed
 * requests"). The message is rebuilt from the request on both sides, never sent, so a proxy that
 * rewrote the method or target breaks the signature rather than redirecting it.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "common/util.h"
#include "transport/reqsign.h"

#define MAGIC "ferry-request-v1"
#define TIME_DIGITS_MAX 19
#define MESSAGE_MAX                                                                                \
    (sizeof(MAGIC) + 16 + REQSIGN_TARGET_MAX + REQSIGN_DEVICE_MAX + TIME_DIGITS_MAX +              \
     REQSIGN_NONCE_HEX + 8)

const char *reqsign_strerror(int err)
{
    switch (err) {
    case REQSIGN_OK: return "ok";
    case REQSIGN_EINVAL: return "malformed signed-request header";
    case REQSIGN_ESTALE: return "request time outside the accepted window";
    case REQSIGN_EBADSIG: return "request signature does not verify";
    case REQSIGN_EMISSING: return "no device signature";
    default: return "unknown error";
    }
}

const char *reqsign_target_of_url(const char *url)
{
    const char *p = strstr(url, "://");
    p = p != NULL ? p + 3 : url;
    const char *slash = strchr(p, '/');
    return slash != NULL ? slash : "/";
}

static bool device_id_ok(const char *id)
{
    size_t n = ferry_bounded_len(id, REQSIGN_DEVICE_MAX);
    if (n == 0 || n > REQSIGN_DEVICE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool method_ok(const char *m)
{
    size_t n = ferry_bounded_len(m, 16);
    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++)
        if (m[i] < 'A' || m[i] > 'Z')
            return false;
    return true;
}

/* Builds the message; returns its length or 0 when a field does not fit. */
static size_t message(char *out, size_t out_len, const char *method, const char *target,
                      const char *device_id, const char *time, const char *nonce)
{
    if (!method_ok(method) || target[0] != '/' ||
        ferry_bounded_len(target, REQSIGN_TARGET_MAX) > REQSIGN_TARGET_MAX)
        return 0;
    int n = snprintf(out, out_len, MAGIC "\n%s\n%s\n%s\n%s\n%s", method, target, device_id, time,
                     nonce);
    return n > 0 && (size_t)n < out_len ? (size_t)n : 0;
}

int reqsign_sign(const uint8_t secret_key[64], const char *method, const char *target,
                 const char *device_id, int64_t time_s, struct reqsign_headers *out)
{
    if (!device_id_ok(device_id) || time_s < 0)
        return REQSIGN_EINVAL;
    uint8_t raw[16];
    char nonce[REQSIGN_NONCE_HEX + 1], time[24];
    randombytes_buf(raw, sizeof(raw));
    ferry_hex_encode(raw, sizeof(raw), nonce);
    snprintf(time, sizeof(time), "%lld", (long long)time_s);
    char msg[MESSAGE_MAX];
    size_t len = message(msg, sizeof(msg), method, target, device_id, time, nonce);
    if (len == 0)
        return REQSIGN_EINVAL;
    uint8_t sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, (const uint8_t *)msg, len, secret_key);
    char sighex[REQSIGN_SIG_HEX + 1];
    ferry_hex_encode(sig, sizeof(sig), sighex);
    snprintf(out->device, sizeof(out->device), "X-Ferry-Device: %s", device_id);
    snprintf(out->time, sizeof(out->time), "X-Ferry-Time: %s", time);
    snprintf(out->nonce, sizeof(out->nonce), "X-Ferry-Nonce: %s", nonce);
    snprintf(out->signature, sizeof(out->signature), "X-Ferry-Signature: %s", sighex);
    return 0;
}

static bool hex_ok(const char *s, size_t want)
{
    if (ferry_bounded_len(s, want) != want)
        return false;
    for (size_t i = 0; i < want; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

int reqsign_parse(const struct reqsign_received *r, int64_t *time_s, char *why, size_t why_len)
{
    if (r->device == NULL) {
        snprintf(why, why_len, "no X-Ferry-Device header: a device request must be signed");
        return REQSIGN_EMISSING;
    }
    if (!device_id_ok(r->device)) {
        snprintf(why, why_len, "X-Ferry-Device: expected 1..64 of [A-Za-z0-9._-]");
        return REQSIGN_EINVAL;
    }
    const char *t = r->time;
    size_t tn = t != NULL ? ferry_bounded_len(t, TIME_DIGITS_MAX) : 0;
    int64_t v = 0;
    bool ok = tn > 0 && tn <= TIME_DIGITS_MAX - 1; /* 18 digits: no overflow below */
    for (size_t i = 0; ok && i < tn; i++) {
        ok = t[i] >= '0' && t[i] <= '9';
        v = v * 10 + (t[i] - '0');
    }
    if (!ok) {
        snprintf(why, why_len, "X-Ferry-Time: expected unix seconds (1..18 digits)");
        return REQSIGN_EINVAL;
    }
    if (r->nonce == NULL || !hex_ok(r->nonce, REQSIGN_NONCE_HEX)) {
        snprintf(why, why_len, "X-Ferry-Nonce: expected %d hex digits", REQSIGN_NONCE_HEX);
        return REQSIGN_EINVAL;
    }
    if (r->signature == NULL || !hex_ok(r->signature, REQSIGN_SIG_HEX)) {
        snprintf(why, why_len, "X-Ferry-Signature: expected %d hex digits", REQSIGN_SIG_HEX);
        return REQSIGN_EINVAL;
    }
    *time_s = v;
    return 0;
}

int reqsign_verify(const struct reqsign_received *r, int64_t time_s, const char *method,
                   const char *target, const uint8_t public_key[32], int64_t now_s,
                   int64_t window_s)
{
    int64_t skew = now_s > time_s ? now_s - time_s : time_s - now_s;
    if (skew > window_s)
        return REQSIGN_ESTALE;
    uint8_t sig[crypto_sign_BYTES];
    if (ferry_hex_decode(r->signature, sig, sizeof(sig)) != 0)
        return REQSIGN_EINVAL;
    char msg[MESSAGE_MAX];
    size_t len = message(msg, sizeof(msg), method, target, r->device, r->time, r->nonce);
    if (len == 0)
        return REQSIGN_EINVAL;
    if (crypto_sign_verify_detached(sig, (const uint8_t *)msg, len, public_key) != 0)
        return REQSIGN_EBADSIG;
    return 0;
}

/* ---- Enrolment proof of possession ---------------------------------------------------------- */

#define ENROLL_MAGIC "ferry-enroll-v1"

static size_t enroll_message(char *out, size_t out_len, const char *pk_hex, const char *token)
{
    if (ferry_bounded_len(pk_hex, 64) != 64 ||
        ferry_bounded_len(token, REQSIGN_ENROLL_TOKEN_MAX) > REQSIGN_ENROLL_TOKEN_MAX)
        return 0;
    int n = snprintf(out, out_len, ENROLL_MAGIC "\n%s\n%s", pk_hex, token);
    return n > 0 && (size_t)n < out_len ? (size_t)n : 0;
}

int reqsign_enroll_sign(const uint8_t secret_key[64], const char *public_key_hex, const char *token,
                        char sig_hex[REQSIGN_SIG_HEX + 1])
{
    char msg[sizeof(ENROLL_MAGIC) + 64 + REQSIGN_ENROLL_TOKEN_MAX + 4];
    size_t len = enroll_message(msg, sizeof(msg), public_key_hex, token);
    if (len == 0)
        return REQSIGN_EINVAL;
    uint8_t sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, (const uint8_t *)msg, len, secret_key);
    ferry_hex_encode(sig, sizeof(sig), sig_hex);
    return 0;
}

int reqsign_enroll_verify(const uint8_t public_key[32], const char *public_key_hex,
                          const char *token, const char *sig_hex)
{
    /* All-zero, small-order and non-canonical encodings are refused before any signature
     * check: libsodium's verify would reject some, but not every, such key on its own. */
    if (crypto_core_ed25519_is_valid_point(public_key) != 1)
        return REQSIGN_EINVAL;
    uint8_t sig[crypto_sign_BYTES];
    if (sig_hex == NULL || !hex_ok(sig_hex, REQSIGN_SIG_HEX) ||
        ferry_hex_decode(sig_hex, sig, sizeof(sig)) != 0)
        return REQSIGN_EINVAL;
    char msg[sizeof(ENROLL_MAGIC) + 64 + REQSIGN_ENROLL_TOKEN_MAX + 4];
    size_t len = enroll_message(msg, sizeof(msg), public_key_hex, token);
    if (len == 0)
        return REQSIGN_EINVAL;
    return crypto_sign_verify_detached(sig, (const uint8_t *)msg, len, public_key) == 0
               ? 0
               : REQSIGN_EBADSIG;
}
