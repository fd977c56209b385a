/*
 * action.c - signed device actions: envelope, payload, signature (action.h, docs/actions.md).
 *
 * The envelope is parsed with jansson only after its size was bounded; the payload is parsed only
 * after its signature verified (parse_verified) - an unverified payload is read by the ingest,
 * which executes nothing, and by the fuzz target.
 */
#include "transport/action.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"

static const char *const kind_names[] = {"restart_unit", "reboot", "run", "upload_logs"};

const char *action_strerror(int err)
{
    switch (err) {
    case ACTION_OK: return "ok";
    case ACTION_E_FORMAT: return "malformed action";
    case ACTION_E_KEY: return "signed by an untrusted key";
    case ACTION_E_SIG: return "bad signature";
    case ACTION_E_NOMEM: return "out of memory";
    default: return "unknown error";
    }
}

const char *action_kind_name(enum action_kind kind)
{
    return (unsigned)kind < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[kind] : "?";
}

int action_kind_parse(const char *name)
{
    for (size_t i = 0; name != NULL && i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
        if (strcmp(name, kind_names[i]) == 0)
            return (int)i;
    return -1;
}

void action_new_id(char out[ACTION_ID_HEX + 1])
{
    uint8_t raw[ACTION_ID_HEX / 2];
    randombytes_buf(raw, sizeof(raw));
    ferry_hex_encode(raw, sizeof(raw), out);
    out[ACTION_ID_HEX] = '\0';
}

__attribute__((format(printf, 3, 4))) static int fail(char *why, size_t why_len, const char *fmt,
                                                      ...)
{
    if (why != NULL && why_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return ACTION_E_FORMAT;
}

static bool id_ok(const char *s)
{
    if (strlen(s) != ACTION_ID_HEX)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static bool device_ok(const char *s)
{
    size_t n = ferry_bounded_len(s, ACTION_DEVICE_MAX + 1);
    if (n == 0 || n > ACTION_DEVICE_MAX)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

/* 1..ACTION_ARG_MAX bytes of UTF-8 without control characters. */
static bool arg_ok(const char *s, size_t n)
{
    if (n == 0 || n > ACTION_ARG_MAX || !ferry_utf8_valid(s, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* The semantic checks every action passes, signed or parsed. */
static int check(const struct action *a, char *why, size_t why_len)
{
    if (!id_ok(a->id))
        return fail(why, why_len, "id: not %d lowercase hex digits", ACTION_ID_HEX);
    if (!device_ok(a->device))
        return fail(why, why_len, "device: not a device id (1..64 of [A-Za-z0-9._-])");
    if ((unsigned)a->kind > ACTION_UPLOAD_LOGS)
        return fail(why, why_len, "kind: unknown");
    if (a->n_args > ACTION_ARGS_MAX)
        return fail(why, why_len, "args: more than %d", ACTION_ARGS_MAX);
    for (size_t i = 0; i < a->n_args; i++)
        if (!arg_ok(a->args[i], ferry_bounded_len(a->args[i], ACTION_ARG_MAX + 1)))
            return fail(why, why_len,
                        "args[%zu]: empty, longer than %d bytes, not UTF-8 or "
                        "holds a control character",
                        i, ACTION_ARG_MAX);
    size_t want_min = a->kind == ACTION_REBOOT ? 0 : 1, want_max = a->kind == ACTION_REBOOT ? 0
                                                                   : a->kind == ACTION_RESTART_UNIT
                                                                       ? 1
                                                                       : ACTION_ARGS_MAX;
    if (a->n_args < want_min || a->n_args > want_max)
        return fail(why, why_len, "args: %s takes %zu..%zu arguments, not %zu",
                    action_kind_name(a->kind), want_min, want_max, a->n_args);
    int64_t minutes = 0;
    if (a->kind == ACTION_UPLOAD_LOGS &&
        ferry_parse_i64(a->args[0], 1, ACTION_LOGS_MINUTES_MAX, &minutes) != 0)
        return fail(why, why_len, "args[0]: upload_logs takes minutes, 1..%d",
                    ACTION_LOGS_MINUTES_MAX);
    if (a->created_s <= 0 || a->expires_s <= a->created_s)
        return fail(why, why_len, "created/expires: expires must come after created (> 0)");
    return ACTION_OK;
}

static int payload_json(const struct action *a, char **out)
{
    json_t *args = json_array(), *o = NULL;
    for (size_t i = 0; args != NULL && i < a->n_args; i++)
        if (json_array_append_new(args, json_string(a->args[i])) != 0) {
            json_decref(args);
            args = NULL;
        }
    if (args != NULL)
        o = json_pack("{s:i,s:s,s:s,s:s,s:o,s:I,s:I}", "v", 1, "id", a->id, "device", a->device,
                      "kind", action_kind_name(a->kind), "args", args, "created",
                      (json_int_t)a->created_s, "expires", (json_int_t)a->expires_s);
    *out = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return *out != NULL ? ACTION_OK : ACTION_E_NOMEM;
}

static void signed_message(const char *payload, size_t len, uint8_t **msg, size_t *msg_len)
{
    size_t clen = strlen(ACTION_SIGN_CONTEXT);
    *msg = malloc(clen + len);
    if (*msg != NULL) {
        memcpy(*msg, ACTION_SIGN_CONTEXT, clen);
        memcpy(*msg + clen, payload, len);
    }
    *msg_len = clen + len;
}

int action_sign(const struct action *a, const uint8_t secret_key[64], struct ferry_buf *out,
                char *why, size_t why_len)
{
    int rc = check(a, why, why_len);
    if (rc != ACTION_OK)
        return rc;
    char *payload = NULL;
    if ((rc = payload_json(a, &payload)) != ACTION_OK)
        return rc;
    size_t plen = strlen(payload);
    if (plen > ACTION_PAYLOAD_MAX) {
        free(payload);
        return fail(why, why_len, "payload: %zu bytes, more than %d", plen, ACTION_PAYLOAD_MAX);
    }
    uint8_t *msg, sig[64];
    size_t msg_len;
    signed_message(payload, plen, &msg, &msg_len);
    if (msg == NULL) {
        free(payload);
        return ACTION_E_NOMEM;
    }
    crypto_sign_detached(sig, NULL, msg, msg_len, secret_key);
    free(msg);
    char sighex[129], pkhex[65];
    ferry_hex_encode(sig, 64, sighex);
    sighex[128] = '\0';
    ferry_hex_encode(secret_key + 32, 32, pkhex); /* libsodium: the public key is the tail */
    pkhex[64] = '\0';
    json_t *env = json_pack("{s:s,s:s,s:s}", "action", payload, "key", pkhex, "signature", sighex);
    free(payload);
    char *text = env != NULL ? json_dumps(env, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(env);
    if (text == NULL)
        return ACTION_E_NOMEM;
    rc = strlen(text) > ACTION_ENVELOPE_MAX               ? fail(why, why_len, "envelope too large")
         : ferry_buf_append(out, text, strlen(text)) != 0 ? ACTION_E_NOMEM
                                                          : ACTION_OK;
    free(text);
    return rc;
}

/* Envelope fields, borrowed from `env`. */
struct envelope {
    const char *payload;
    size_t payload_len;
    uint8_t key[32];
    uint8_t sig[64];
};

static int parse_envelope(const void *data, size_t len, json_t **root, struct envelope *e,
                          char *why, size_t why_len)
{
    if (len == 0 || len > ACTION_ENVELOPE_MAX)
        return fail(why, why_len, "envelope: %zu bytes (1..%d)", len, ACTION_ENVELOPE_MAX);
    json_error_t jerr;
    *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (*root == NULL)
        return fail(why, why_len, "envelope: not JSON (line %d column %d: %s)", jerr.line,
                    jerr.column, jerr.text);
    if (!json_is_object(*root) || json_object_size(*root) != 3)
        return fail(why, why_len, "envelope: not an object of action, key, signature");
    json_t *p = json_object_get(*root, "action"), *k = json_object_get(*root, "key"),
           *s = json_object_get(*root, "signature");
    if (!json_is_string(p) || !json_is_string(k) || !json_is_string(s))
        return fail(why, why_len, "envelope: action, key and signature must be strings");
    e->payload = json_string_value(p);
    e->payload_len = json_string_length(p);
    if (e->payload_len == 0 || e->payload_len > ACTION_PAYLOAD_MAX)
        return fail(why, why_len, "payload: %zu bytes (1..%d)", e->payload_len, ACTION_PAYLOAD_MAX);
    if (json_string_length(k) != 64 || ferry_hex_decode(json_string_value(k), e->key, 32) != 0)
        return fail(why, why_len, "key: not 64 hex digits");
    if (json_string_length(s) != 128 || ferry_hex_decode(json_string_value(s), e->sig, 64) != 0)
        return fail(why, why_len, "signature: not 128 hex digits");
    return ACTION_OK;
}

static int copy_str(json_t *o, const char *name, char *dst, size_t cap, char *why, size_t why_len)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_string(v) || json_string_length(v) >= cap ||
        strlen(json_string_value(v)) != json_string_length(v))
        return fail(why, why_len, "%s: missing, not a string or too long", name);
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return ACTION_OK;
}

static int parse_payload(const char *p, size_t len, struct action *out, char *why, size_t why_len)
{
    json_error_t jerr;
    json_t *o = json_loadb(p, len, JSON_REJECT_DUPLICATES, &jerr);
    int rc = ACTION_OK;
    if (o == NULL) {
        rc = fail(why, why_len, "payload: not JSON (column %d: %s)", jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(o) || json_object_size(o) != 7) {
        rc = fail(why, why_len,
                  "payload: not an object of v, id, device, kind, args, created, "
                  "expires");
        goto out;
    }
    json_t *v = json_object_get(o, "v");
    if (!json_is_integer(v) || json_integer_value(v) != 1) {
        rc = fail(why, why_len, "v: not 1 (a newer format this ferryd does not know)");
        goto out;
    }
    if ((rc = copy_str(o, "id", out->id, sizeof(out->id), why, why_len)) != 0 ||
        (rc = copy_str(o, "device", out->device, sizeof(out->device), why, why_len)) != 0)
        goto out;
    char kind[16];
    if ((rc = copy_str(o, "kind", kind, sizeof(kind), why, why_len)) != 0)
        goto out;
    int k = action_kind_parse(kind);
    if (k < 0) {
        rc = fail(why, why_len, "kind: \"%s\" is not restart_unit, reboot, run or upload_logs",
                  kind);
        goto out;
    }
    out->kind = (enum action_kind)k;
    json_t *args = json_object_get(o, "args");
    if (!json_is_array(args) || json_array_size(args) > ACTION_ARGS_MAX) {
        rc = fail(why, why_len, "args: not an array of at most %d strings", ACTION_ARGS_MAX);
        goto out;
    }
    out->n_args = json_array_size(args);
    for (size_t i = 0; i < out->n_args; i++) {
        json_t *s = json_array_get(args, i);
        size_t n = json_string_length(s);
        if (!json_is_string(s) || !arg_ok(json_string_value(s), n)) {
            rc = fail(why, why_len, "args[%zu]: not a string of 1..%d printable bytes", i,
                      ACTION_ARG_MAX);
            goto out;
        }
        memcpy(out->args[i], json_string_value(s), n + 1);
    }
    json_t *c = json_object_get(o, "created"), *e = json_object_get(o, "expires");
    if (!json_is_integer(c) || !json_is_integer(e)) {
        rc = fail(why, why_len, "created/expires: not integers");
        goto out;
    }
    out->created_s = json_integer_value(c);
    out->expires_s = json_integer_value(e);
    rc = check(out, why, why_len);
out:
    json_decref(o);
    return rc;
}

/* The id an envelope claims, from its unverified payload, for a report ("" when unreadable). */
static void claimed_id(const struct envelope *e, struct action *out)
{
    json_t *o = json_loadb(e->payload, e->payload_len, 0, NULL);
    const char *id = json_string_value(json_object_get(o, "id"));
    if (id != NULL && id_ok(id))
        memcpy(out->id, id, ACTION_ID_HEX + 1);
    json_decref(o);
}

int action_parse_verified(const void *envelope, size_t len, const uint8_t (*keys)[32],
                          size_t n_keys, struct action *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof(*out));
    json_t *root = NULL;
    struct envelope e;
    int rc = parse_envelope(envelope, len, &root, &e, why, why_len);
    if (rc != ACTION_OK)
        goto out;
    bool trusted = false;
    for (size_t i = 0; i < n_keys && !trusted; i++)
        trusted = sodium_memcmp(keys[i], e.key, 32) == 0;
    if (!trusted) {
        char kh[17];
        ferry_hex_encode(e.key, 8, kh);
        kh[16] = '\0';
        claimed_id(&e, out);
        snprintf(why, why_len, "key %s... is not one of [actions] keys", kh);
        rc = ACTION_E_KEY;
        goto out;
    }
    uint8_t *msg;
    size_t msg_len;
    signed_message(e.payload, e.payload_len, &msg, &msg_len);
    if (msg == NULL) {
        rc = ACTION_E_NOMEM;
        goto out;
    }
    int bad = crypto_sign_verify_detached(e.sig, msg, msg_len, e.key);
    free(msg);
    if (bad) {
        claimed_id(&e, out);
        snprintf(why, why_len, "the signature does not verify with key of [actions] keys");
        rc = ACTION_E_SIG;
        goto out;
    }
    rc = parse_payload(e.payload, e.payload_len, out, why, why_len);
    if (rc == ACTION_OK)
        memcpy(out->key, e.key, 32);
out:
    json_decref(root);
    return rc;
}

int action_parse_unverified(const void *envelope, size_t len, struct action *out, char *why,
                            size_t why_len)
{
    memset(out, 0, sizeof(*out));
    json_t *root = NULL;
    struct envelope e;
    int rc = parse_envelope(envelope, len, &root, &e, why, why_len);
    if (rc == ACTION_OK)
        rc = parse_payload(e.payload, e.payload_len, out, why, why_len);
    if (rc == ACTION_OK)
        memcpy(out->key, e.key, 32);
    json_decref(root);
    return rc;
}
