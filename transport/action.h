/*
 * action.h - signed device actions: what an operator asks one device to do (docs/actions.md).
 *
 * An action travels from the operator's machine (where it is signed) through the ingest's queue
 * to the device, which verifies it before it reads any of it. On the wire it is one JSON object,
 * the envelope:
 *
 *   {"action": "<payload: JSON text, as a string>", "key": "<64 hex: the operator's public key>",
 *    "signature": "<128 hex: Ed25519 over ACTION_SIGN_CONTEXT followed by the payload bytes>"}
 *
 * and the payload (signed as the exact bytes of the "action" string) is
 *
 *   {"v": 1, "id": "<32 lowercase hex, random>", "device": "<device id>",
 *    "kind": "restart_unit" | "reboot" | "run" | "upload_logs", "args": ["...", ...],
 *    "created": <unix seconds>, "expires": <unix seconds>}
 *
 * Every field is bound by the signature. The signing context (ACTION_SIGN_CONTEXT) differs from
 * every other signed message of ferry (batches, manifests, device requests, enrolment), so no
 * other signature ever verifies as an action, and the operator action keys are their own keys:
 * a device trusts only the keys of its [actions] keys. The ingest never holds an action's secret
 * key; it queues envelopes as they were signed.
 *
 * Limits: envelope ACTION_ENVELOPE_MAX bytes, payload ACTION_PAYLOAD_MAX, at most ACTION_ARGS_MAX
 * arguments of 1..ACTION_ARG_MAX bytes of printable UTF-8 (no control characters).
 *   restart_unit: args = [UNIT]          reboot: args = []
 *   run: args = [PROGRAM, ARG...]        (an exact command line of the device's allow-list)
 *   upload_logs: args = [MINUTES, UNIT...] (MINUTES 1..ACTION_LOGS_MINUTES_MAX, decimal; the
 *                systemd journal's entries of the last MINUTES at every priority, debug
 *                included, of the UNITs or of every unit)
 */
#ifndef FERRY_TRANSPORT_ACTION_H
#define FERRY_TRANSPORT_ACTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ferry_buf;

#define ACTION_SIGN_CONTEXT "ferry-action-v1\n"
#define ACTION_ENVELOPE_MAX 8192
#define ACTION_PAYLOAD_MAX 4096
#define ACTION_ARGS_MAX 16
#define ACTION_ARG_MAX 256
#define ACTION_ID_HEX 32
#define ACTION_DEVICE_MAX 64
#define ACTION_LOGS_MINUTES_MAX 1440

enum action_kind {
    ACTION_RESTART_UNIT = 0,
    ACTION_REBOOT = 1,
    ACTION_RUN = 2,
    ACTION_UPLOAD_LOGS = 3,
};

enum action_err {
    ACTION_OK = 0,
    ACTION_E_FORMAT = -1, /* malformed envelope or payload, or a field out of its limits */
    ACTION_E_KEY = -2,    /* signed by a key the device does not trust */
    ACTION_E_SIG = -3,    /* the signature does not verify */
    ACTION_E_NOMEM = -4,
};
const char *action_strerror(int err);

/* "restart_unit", "reboot", "run", "upload_logs". */
const char *action_kind_name(enum action_kind kind);
/* The kind of `name`; -1 when it is none. */
int action_kind_parse(const char *name);

struct action {
    char id[ACTION_ID_HEX + 1];
    char device[ACTION_DEVICE_MAX + 1];
    enum action_kind kind;
    char args[ACTION_ARGS_MAX][ACTION_ARG_MAX + 1];
    size_t n_args;
    int64_t created_s;
    int64_t expires_s;
    uint8_t key[32]; /* the key that signed it (set by the parsers) */
};

/* A fresh random id (ACTION_ID_HEX lowercase hex digits and a NUL). */
void action_new_id(char out[ACTION_ID_HEX + 1]);

/*
 * Checks `a` against the limits above and writes its signed envelope into `out` (appended).
 * Returns 0, ACTION_E_FORMAT (`why` says which field) or ACTION_E_NOMEM.
 */
int action_sign(const struct action *a, const uint8_t secret_key[64], struct ferry_buf *out,
                char *why, size_t why_len) __attribute__((warn_unused_result));

/*
 * Verifies an envelope against the trusted `keys` and only then parses its payload into `out`.
 * Returns 0, ACTION_E_FORMAT, ACTION_E_KEY or ACTION_E_SIG, with `why` (at least 128 bytes)
 * saying what is wrong. On an error `out->id` holds the id the envelope claims when it could be
 * read (for the report; "" otherwise) - never trust anything else of it.
 */
int action_parse_verified(const void *envelope, size_t len, const uint8_t (*keys)[32],
                          size_t n_keys, struct action *out, char *why, size_t why_len)
    __attribute__((warn_unused_result));

/*
 * Parses an envelope without verifying it (the ingest, which queues and lists actions it does not
 * execute): the form of the envelope and of its payload are checked as for a verified one.
 * Returns 0 or ACTION_E_FORMAT with `why`.
 */
int action_parse_unverified(const void *envelope, size_t len, struct action *out, char *why,
                            size_t why_len) __attribute__((warn_unused_result));

#endif
