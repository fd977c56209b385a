/*
 * reqsign.h - device-signed HTTP requests: how a device proves, on a plain GET, that it is the
 * device it says (docs/wire-format.md §12, "Device-signed requests").
 *
 * A device's manifest and artifact GETs carry four headers:
 *   X-Ferry-Device: <device id>
 *   X-Ferry-Time: <unix seconds, decimal>
 *   X-Ferry-Nonce: <32 lowercase hex digits, 16 random bytes>
 *   X-Ferry-Signature: <128 lowercase hex digits: Ed25519 by the device key over the message>
 * where the message is, bytes joined by '\n' (no trailing newline):
 *   "ferry-request-v1", METHOD, TARGET, DEVICE_ID, TIME, NONCE
 * TARGET is the request-target as sent on the request line (path and "?query", no host). The
 * ingest accepts a request whose TIME is within its window (server.device_request_window, 5 min)
 * of its own clock, so a captured request can be replayed only inside that window, only for the
 * same method and target, and only to get the same bytes its device got. No bearer secret ever
 * travels: the device key stays on the device.
 *
 * Used by ferryd (engine/ota, transport/download.c) to sign and by ferry-ingest to verify.
 */
#ifndef FERRY_TRANSPORT_REQSIGN_H
#define FERRY_TRANSPORT_REQSIGN_H

#include <stddef.h>
#include <stdint.h>

#define REQSIGN_TARGET_MAX 2048 /* longest TARGET signed or verified */
#define REQSIGN_DEVICE_MAX 64
#define REQSIGN_NONCE_HEX 32
#define REQSIGN_SIG_HEX 128
#define REQSIGN_LINE_MAX 160 /* one "Name: value" header line, NUL included */

enum reqsign_err {
    REQSIGN_OK = 0,
    REQSIGN_EINVAL = -1,   /* a field is malformed or too long (says which in `why`) */
    REQSIGN_ESTALE = -2,   /* TIME outside the window */
    REQSIGN_EBADSIG = -3,  /* the signature does not verify with the key */
    REQSIGN_EMISSING = -4, /* no X-Ferry-Device header at all */
};
const char *reqsign_strerror(int err);

/* The four header lines of a signed request, ready for libcurl ("Name: value"). */
struct reqsign_headers {
    char device[REQSIGN_LINE_MAX];
    char time[REQSIGN_LINE_MAX];
    char nonce[REQSIGN_LINE_MAX];
    char signature[REQSIGN_LINE_MAX];
};

/* A signer: fills `out` for a request of `method` to `target` (the device's key and clock are
 * the signer's business). Returns 0, or non-zero when it cannot sign (the request then goes out
 * unsigned and the server answers 401). Used by transport/download.c and engine/ota. */
typedef int (*reqsign_request_fn)(void *arg, const char *method, const char *target,
                                  struct reqsign_headers *out);

/* The request-target of an absolute URL ("http://h:1/a?b" -> "/a?b"; "/" when it has no path).
 * Returns a pointer into `url`. */
const char *reqsign_target_of_url(const char *url);

/*
 * Signs a request with the device's Ed25519 secret key (libsodium layout, 64 bytes) at
 * `time_s`, with a fresh random nonce, and fills `out`. Returns 0 or REQSIGN_EINVAL (method,
 * target or device id empty or too long).
 */
int reqsign_sign(const uint8_t secret_key[64], const char *method, const char *target,
                 const char *device_id, int64_t time_s, struct reqsign_headers *out)
    __attribute__((warn_unused_result));

/* The header values of a received request (NULL where absent), borrowed. */
struct reqsign_received {
    const char *device;
    const char *time;
    const char *nonce;
    const char *signature;
};

/*
 * Checks the form of received headers (device id 1..64 of [A-Za-z0-9._-], time 1..19 digits,
 * nonce and signature lowercase or uppercase hex of the right length) and returns the time in
 * *time_s. Does not verify anything. Returns 0, REQSIGN_EMISSING (no device header) or
 * REQSIGN_EINVAL with `why` (at least 96 bytes) saying which header is wrong.
 */
int reqsign_parse(const struct reqsign_received *r, int64_t *time_s, char *why, size_t why_len)
    __attribute__((warn_unused_result));

/*
 * Verifies a parsed request against the device's public key at `now_s`: REQSIGN_ESTALE when
 * |now_s - time| > window_s, REQSIGN_EBADSIG when the signature does not verify, 0 when it
 * does. Call reqsign_parse first.
 */
int reqsign_verify(const struct reqsign_received *r, int64_t time_s, const char *method,
                   const char *target, const uint8_t public_key[32], int64_t now_s,
                   int64_t window_s) __attribute__((warn_unused_result));

/*
 * Proof of possession for POST /v1/enroll (docs/wire-format.md, "Enrolment"): the request's
 * "signature" is 128 hex digits, Ed25519 by the key being enrolled over
 *   "ferry-enroll-v1" '\n' PUBLIC_KEY_HEX '\n' TOKEN
 * (PUBLIC_KEY_HEX lowercase, exactly as in the request's "public_key"). An ingest refuses a key
 * that is not a valid point of the main subgroup (all-zero, low order, non-canonical), and a
 * signature that does not verify, so nobody can enrol a key they do not hold.
 */
#define REQSIGN_ENROLL_TOKEN_MAX 128

/* Writes the signature's hex (REQSIGN_SIG_HEX + 1 bytes) into sig_hex. Returns 0 or EINVAL. */
int reqsign_enroll_sign(const uint8_t secret_key[64], const char *public_key_hex, const char *token,
                        char sig_hex[REQSIGN_SIG_HEX + 1]) __attribute__((warn_unused_result));
/* 0 when `public_key` is a usable Ed25519 key and `sig_hex` signs the enrolment with it;
 * REQSIGN_EINVAL (malformed key or signature text, or a key that is not a valid point) or
 * REQSIGN_EBADSIG. */
int reqsign_enroll_verify(const uint8_t public_key[32], const char *public_key_hex,
                          const char *token, const char *sig_hex)
    __attribute__((warn_unused_result));

#endif
