/*
 * auth.h - who may call ferry-ingest: operator API tokens with roles, the access check the
 * server runs at dispatch before any handler, the audit log, and their operator commands
 * (docs/security.md).
 *
 * API tokens. A token's text is "fyt_<id>_<secret>": <id> is 16 hex digits (8 random bytes), its
 * public name in the store and in logs; <secret> is 64 hex digits (32 random bytes from
 * libsodium's randombytes_buf). It is shown once, when made; the store keeps only
 * BLAKE2b-256(key = "ferry-api-token-v1", message = the whole token text) and compares in constant
 * time (sodium_memcmp). Requests present it as "Authorization: Bearer <token>".
 *
 * Roles: a route declares the access it needs (router.h, enum ingest_access); viewer satisfies
 * VIEWER, operator VIEWER and OPERATOR, admin all three. /metrics needs a viewer token unless
 * [server] metrics_public = true. A missing, malformed, unknown, expired or revoked token is 401
 * (with WWW-Authenticate: Bearer), a valid token of a lower role 403.
 *
 * The audit log: every operator command that changes something (token create/revoke, device
 * add/revoke, enrolment tokens), every API request that is not a read (any method but GET/HEAD),
 * and every request refused for its role (403) are appended to the store as events (enrolments
 * are not: the device table records them); GET
 * /v1/audit (admin) and `ferry-ingest audit list` read them.
 *
 * This part uses router.h and store.h only. Functions are thread-safe (the store is).
 */
#ifndef FERRY_INGEST_AUTH_H
#define FERRY_INGEST_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloud-ingest/router.h"
#include "cloud-ingest/store.h"

#define INGEST_AUTH_TOKEN_PREFIX "fyt_"
#define INGEST_AUTH_SECRET_HEX 64
/* "fyt_" + id + "_" + secret + NUL */
#define INGEST_AUTH_TOKEN_TEXT_MAX (4 + INGEST_API_TOKEN_ID_LEN + 1 + INGEST_AUTH_SECRET_HEX + 1)
/* The longest Authorization header value looked at (longer: malformed, never copied). */
#define INGEST_AUTH_HEADER_MAX 256

enum ingest_auth_result {
    INGEST_AUTH_OK = 0,
    INGEST_AUTH_MISSING = 1,   /* 401: no Authorization header */
    INGEST_AUTH_MALFORMED = 2, /* 401: not "Bearer fyt_<16 hex>_<64 hex>" */
    INGEST_AUTH_UNKNOWN = 3,   /* 401: no such token, or the secret does not match */
    INGEST_AUTH_EXPIRED = 4,   /* 401 */
    INGEST_AUTH_REVOKED = 5,   /* 401 */
    INGEST_AUTH_FORBIDDEN = 6, /* 403: the token's role is below the route's access */
    INGEST_AUTH_ERROR = 7,     /* 503: the store failed */
};
/* A short text for a result ("token expired"), safe to send to the client. */
const char *ingest_auth_result_text(enum ingest_auth_result r);
/* The HTTP status of a result: 200 (OK), 401, 403 or 503. */
int ingest_auth_result_status(enum ingest_auth_result r);

/* "viewer", "operator", "admin" (NULL for anything else) and back (0 when unknown). */
const char *ingest_role_name(int role);
int ingest_role_parse(const char *name);
/* Whether `role` may call a route of access `need` (PUBLIC always; DEVICE and DEVICE_BODY never:
 * they need a device signature; METRICS as VIEWER). */
bool ingest_auth_role_allows(int role, enum ingest_access need);

/*
 * Makes a new token: random id and secret, the hash, name, role, created_ns = now_ns,
 * expires_ns (0: never). Writes its text into text[INGEST_AUTH_TOKEN_TEXT_MAX] and the record
 * to store into *out. Returns 0, or -1 when the name or role is invalid or libsodium failed to
 * initialise. Nothing is stored.
 */
int ingest_auth_token_new(const char *name, int role, int64_t now_ns, int64_t expires_ns,
                          struct ingest_api_token *out, char text[INGEST_AUTH_TOKEN_TEXT_MAX])
    __attribute__((warn_unused_result));

/* The stored hash of a token text (`len` bytes). */
void ingest_auth_token_hash(const char *text, size_t len, uint8_t out[32]);

/*
 * Parses an Authorization header value: the scheme "Bearer" (any case), one or more spaces or
 * tabs, a token of the form above, optional trailing spaces or tabs; nothing else. On success
 * copies the token's id into id[] and the token text into text[]. Reads at most
 * INGEST_AUTH_HEADER_MAX bytes of `value` (`len` of them). Returns 0, or MISSING (value NULL) or
 * MALFORMED.
 */
enum ingest_auth_result ingest_auth_parse_bearer(const char *value, size_t len,
                                                 char id[INGEST_API_TOKEN_ID_LEN + 1],
                                                 char text[INGEST_AUTH_TOKEN_TEXT_MAX]);

/*
 * The whole check for a token route: parses `authorization` (NULL: absent), looks the token up,
 * compares its hash in constant time, checks expiry (at now_ns) and revocation, then the role
 * against `need`. *who is the token as stored whenever it was found (for the audit log; its
 * hash is zeroed). Returns the result.
 */
enum ingest_auth_result ingest_auth_check_bearer(struct ingest_store *store,
                                                 const char *authorization, enum ingest_access need,
                                                 int64_t now_ns, struct ingest_api_token *who);

/*
 * Parses an expiry for `token create --expires`: a duration ("90d", "12h", "30m"; relative to
 * now_ns), a date "YYYY-MM-DD" (its midnight UTC) or "YYYY-MM-DDTHH:MM:SSZ". Returns 0 with
 * *expires_ns, or -1 (malformed, or not in the future).
 */
int ingest_auth_parse_expiry(const char *arg, int64_t now_ns, int64_t *expires_ns)
    __attribute__((warn_unused_result));

/* Appends an audit event (ts = now); strings may be NULL (""). Returns the store's result. */
int ingest_auth_audit(struct ingest_store *store, const char *actor, const char *action,
                      const char *target, const char *source, int status)
    __attribute__((warn_unused_result));

/*
 * Appends an audit event for an API request a handler serves (`action` such as
 * "release.publish", `target` what it changed): the actor is "token:<name>" of the request's
 * bearer token (dispatch checked it before the handler ran), the source the peer's address.
 * Call it from the request's own thread (it reads `req`). Returns the store's result.
 */
struct evhttp_request;
int ingest_auth_audit_request(struct ingest_store *store, struct evhttp_request *req,
                              const char *action, const char *target, int status)
    __attribute__((warn_unused_result));

/* Adds GET /v1/audit?after_seq=N&limit=L (admin): {"events":[...],"next_after_seq":N}.
 * `store` must outlive the router. */
int ingest_auth_register(struct ingest_router *router, struct ingest_store *store)
    __attribute__((warn_unused_result));

/*
 * Failed-enrolment rate limit (POST /v1/enroll): token buckets of failures per source address
 * and for the whole process. Each bucket holds up to `per_min` failures and refills at per_min
 * per minute; while a bucket is empty, enrolments from that address (or, for the global one,
 * from anyone) are answered 429 with Retry-After before the token is even looked at. Addresses
 * share a fixed table of INGEST_ENROLL_LIMITER_SLOTS buckets (a new address may take over the
 * bucket of another: memory stays bounded whatever the number of addresses; the global bucket
 * still holds an attacker with many addresses). Thread-safe. 0 disables a limit.
 */
#define INGEST_ENROLL_LIMITER_SLOTS 4096
struct ingest_enroll_limiter;
int ingest_enroll_limiter_new(double per_address_per_min, double global_per_min,
                              struct ingest_enroll_limiter **out)
    __attribute__((warn_unused_result));
void ingest_enroll_limiter_free(struct ingest_enroll_limiter *l);
/* 0 when an enrolment from `addr` may be tried at now_ms; otherwise the seconds to wait. */
unsigned ingest_enroll_limiter_check(struct ingest_enroll_limiter *l, const char *addr,
                                     int64_t now_ms);
/* Counts one failed enrolment from `addr`. */
void ingest_enroll_limiter_failed(struct ingest_enroll_limiter *l, const char *addr,
                                  int64_t now_ms);

/*
 * Replay cache of device-signed requests (nonce.c; docs/security.md "Replayed device
 * requests"). Dispatch checks every request whose signature verified: the same (device, nonce)
 * seen again before it expires is a replay (401). Memory is fixed at creation: `max_bytes`
 * (limits.nonce_cache) holds at most max_bytes / 24 entries (a power-of-two number of sets of 8);
 * below 192 bytes the cache is disabled (*out NULL, every check FRESH). An entry expires at the
 * second the request's own time leaves the accepted window. Per process: several ingest
 * processes behind one address each have their own, so a replay sent to another process inside
 * the window is not detected (see docs/security.md). Thread-safe (striped locks).
 */
#define REQSIGN_NONCE_TEXT_MAX 64
struct ingest_nonce_cache;
enum ingest_nonce_result {
    INGEST_NONCE_FRESH = 0,         /* first time: recorded */
    INGEST_NONCE_FRESH_EVICTED = 1, /* first time, recorded over an unexpired entry: too small */
    INGEST_NONCE_REPLAY = 2,        /* seen before, inside its window: refuse */
};
int ingest_nonce_cache_new(uint64_t max_bytes, struct ingest_nonce_cache **out)
    __attribute__((warn_unused_result));
void ingest_nonce_cache_free(struct ingest_nonce_cache *c);
/* Entries the cache holds at most (0 when disabled). */
size_t ingest_nonce_cache_capacity(const struct ingest_nonce_cache *c);
/* Looks up and records the nonce of `device` (a verified request), remembered until
 * `expires_s` (request time + window). `c` NULL: always FRESH. */
enum ingest_nonce_result ingest_nonce_cache_check(struct ingest_nonce_cache *c, const char *device,
                                                  const char *nonce, int64_t expires_s,
                                                  int64_t now_s);

/*
 * Operator commands, argv starting at the subcommand's word:
 *   token create --role viewer|operator|admin --name NAME [--expires DURATION|DATE]
 *   token list [--json]
 *   token revoke NAME|ID
 *   audit list [--after-seq N] [--limit N] [--json]
 * `actor` names who runs them in the audit log ("cli:<user>"). Print to stdout/stderr and return
 * the process exit status.
 */
int ingest_auth_token_main(struct ingest_store *store, const char *actor, int argc, char **argv);
int ingest_auth_audit_main(struct ingest_store *store, int argc, char **argv);

#endif
