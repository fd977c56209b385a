/*
 * manifest.h - signed release manifests: what a device may install, and the policy that decides
 * whether it will.
 *
 * A release manifest names a component (rootfs | app | model | config), a version, the device
 * class it is for, the SHA-256 and size of the target, a monotonic release serial, and its
 * artifacts: deltas from named base versions (by base hash) and always a full-image fallback.
 * Every artifact is downloaded as fixed-size chunks, each with its SHA-256 in the manifest, so a
 * device verifies every chunk before it writes it (invariant 4).
 *
 * On the wire a manifest is an envelope (docs/ota.md, "Release manifest"):
 *   {"format":"ferry-manifest-1","payload":"<base64 of the payload JSON>",
 *    "signatures":[{"key_id":"<16 hex>","sig":"<128 hex>"}]}
 * The Ed25519 signature covers "ferry-release-v1\n" followed by the exact payload bytes, so the
 * payload is verified before it is parsed, and a signature made for anything else (a device's
 * batch, an ingest key) can never pass as a release signature. Release keys are separate keys.
 *
 * Policy (manifest_check()):
 *   - authenticity: at least one signature by a trusted release key; unknown key and bad
 *     signature are distinct errors;
 *   - device class and component must match;
 *   - anti-rollback: the version must not be older than the running one, unless the manifest is
 *     an explicitly signed rollback release ("rollback": true) with a serial above any seen;
 *   - freshness without expiry: no time limit, so a device offline for weeks is never stranded;
 *     instead a serial lower than the highest the device has accepted is refused (replay of an
 *     older manifest). See docs/ota.md, "Security policy".
 *
 * Artifact mirrors (docs/ota.md, "Mirrors"): base URLs a device tries, in order, before the
 * ingest, fetching <base><artifact sha256 hex>. They come from the signed payload ("mirrors")
 * and from an unsigned "mirrors" array in the envelope, which the ingest adds from its
 * configuration. Both are untrusted: every chunk is checked against the signed chunk hashes, so
 * a mirror (or whoever rewrote the envelope's list) can only make a download slower, never
 * change what is installed.
 */
#ifndef FERRY_TRANSPORT_MANIFEST_H
#define FERRY_TRANSPORT_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

enum manifest_error {
    MANIFEST_OK = 0,
    MANIFEST_E_ARG = -1,          /* invalid argument */
    MANIFEST_E_NOMEM = -2,        /* allocation failed */
    MANIFEST_E_FORMAT = -3,       /* malformed envelope or payload (message says where) */
    MANIFEST_E_LIMIT = -4,        /* too large, too many artifacts or chunks */
    MANIFEST_E_UNSIGNED = -5,     /* no signature at all */
    MANIFEST_E_UNKNOWN_KEY = -6,  /* signed, but by no trusted release key */
    MANIFEST_E_SIGNATURE = -7,    /* a trusted key's signature does not verify */
    MANIFEST_E_DEVICE_CLASS = -8, /* meant for another device class */
    MANIFEST_E_COMPONENT = -9,    /* another component than asked for */
    MANIFEST_E_DOWNGRADE = -10,   /* older than the running version and not a signed rollback */
    MANIFEST_E_STALE = -11,       /* serial below the highest already accepted (replay) */
    MANIFEST_E_IO = -12,          /* reading a file failed */
};

/* Static name of a manifest_error value. */
const char *manifest_strerror(int err);

#define MANIFEST_FORMAT "ferry-manifest-1"
#define MANIFEST_SIGN_CONTEXT "ferry-release-v1\n"
#define MANIFEST_MAX_BYTES (4u << 20) /* whole envelope */
#define MANIFEST_MAX_ARTIFACTS 16u
#define MANIFEST_MAX_CHUNKS 65536u /* per artifact */
#define MANIFEST_MAX_SIGNATURES 8u
#define MANIFEST_MIN_CHUNK_BYTES 4096u
#define MANIFEST_MAX_CHUNK_BYTES (16u << 20)
#define MANIFEST_DEFAULT_CHUNK_BYTES (1u << 20)
#define MANIFEST_MAX_STRING 64u      /* version, device class, component */
#define MANIFEST_MAX_MIRRORS 8u      /* per list: the payload's and the envelope's each */
#define MANIFEST_MAX_MIRROR_URL 512u /* bytes of one mirror base URL */

enum manifest_artifact_kind {
    MANIFEST_ARTIFACT_FULL = 0,  /* ferry-delta full image (transport/delta.h, no base) */
    MANIFEST_ARTIFACT_DELTA = 1, /* ferry-delta from base_version / base_sha256 */
};

/* One artifact, read-only, owned by its struct manifest. */
struct manifest_artifact {
    enum manifest_artifact_kind kind;
    uint8_t sha256[32]; /* whole artifact; also its content address (/v1/artifacts/<hex>) */
    uint64_t size;
    uint32_t chunk_bytes; /* every chunk but the last has this size */
    uint32_t chunk_count; /* == ceil(size / chunk_bytes) */
    const uint8_t (*chunk_sha256)[32];
    char base_version[MANIFEST_MAX_STRING + 1]; /* deltas only */
    uint8_t base_sha256[32];                    /* deltas only */
    uint64_t base_size;                         /* deltas only */
};

struct manifest; /* opaque, parsed and (for manifest_parse_verified) verified */

/* Trusted release public keys of a device. */
struct manifest_keys {
    const uint8_t (*public_keys)[32];
    size_t count;
};

/*
 * Verifies an envelope's signature against `keys` and only then parses its payload. On success
 * *out owns a new manifest (free with manifest_free). Errors: MANIFEST_E_FORMAT/LIMIT for a bad
 * envelope or payload, MANIFEST_E_UNSIGNED, MANIFEST_E_UNKNOWN_KEY, MANIFEST_E_SIGNATURE.
 */
int manifest_parse_verified(const uint8_t *data, size_t len, const struct manifest_keys *keys,
                            struct manifest **out, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* Parses a bare payload JSON without any signature check: for tools (`ferry release sign`) and
 * the fuzzer. Never use it for something a device will install. */
int manifest_parse_payload(const uint8_t *payload, size_t len, struct manifest **out, char *err,
                           size_t err_len) __attribute__((warn_unused_result));

void manifest_free(struct manifest *m);

const char *manifest_component(const struct manifest *m);
const char *manifest_version(const struct manifest *m);
const char *manifest_device_class(const struct manifest *m);
uint64_t manifest_serial(const struct manifest *m);
int manifest_is_rollback(const struct manifest *m);
const uint8_t *manifest_target_sha256(const struct manifest *m);
uint64_t manifest_target_size(const struct manifest *m);
size_t manifest_artifact_count(const struct manifest *m);
const struct manifest_artifact *manifest_artifact(const struct manifest *m, size_t i);
/* Artifact mirrors in the order a device tries them: the signed payload's first, then the
 * envelope's (unsigned, added by the ingest) that are not already listed; at most
 * 2 x MANIFEST_MAX_MIRRORS. Each is a base URL that passed manifest_mirror_check (it ends in
 * '/'); the artifact is at <base><sha256 hex>. Strings valid while m lives. */
size_t manifest_mirror_count(const struct manifest *m);
const char *manifest_mirror(const struct manifest *m, size_t i);
/* How many of the first manifest_mirror_count() come from the signed payload. */
size_t manifest_mirror_signed_count(const struct manifest *m);
/* Checks one mirror base URL of `len` bytes: 1..MANIFEST_MAX_MIRROR_URL bytes, "http://" or
 * "https://" followed by a host, printable ASCII without spaces, quotes, '<' '>' '\\' '^' '`'
 * '{' '|' '}', no user info ('@'), query ('?') or fragment ('#'), and ending in '/'. Returns 0 or
 * MANIFEST_E_FORMAT with err saying what is wrong. */
int manifest_mirror_check(const char *url, size_t len, char *err, size_t err_len)
    __attribute__((warn_unused_result));
/* The payload bytes exactly as signed (valid while m lives). */
const uint8_t *manifest_payload(const struct manifest *m, size_t *len);
/* The delta artifact whose base hash is `base_sha256`, or NULL; and the full artifact. */
const struct manifest_artifact *manifest_find_delta(const struct manifest *m,
                                                    const uint8_t base_sha256[32]);
const struct manifest_artifact *manifest_find_full(const struct manifest *m);

/* What a device knows when it decides about a manifest. */
struct manifest_policy {
    const char *device_class;    /* required */
    const char *component;       /* NULL: any */
    const char *running_version; /* NULL: nothing installed yet */
    uint64_t highest_serial;     /* highest serial accepted so far (0: none) */
};

/* Applies the policy above. Returns 0 or MANIFEST_E_DEVICE_CLASS / _COMPONENT / _DOWNGRADE /
 * _STALE with a message in err. A manifest equal to the running version passes (nothing to do
 * is the caller's decision). */
int manifest_check(const struct manifest *m, const struct manifest_policy *p, char *err,
                   size_t err_len) __attribute__((warn_unused_result));

/* Compares versions by Semantic Versioning 2.0 precedence: release identifiers numerically
 * ("1.10.0" > "1.9.3"; a missing one counts as 0, so "2.0" == "2.0.0"), a pre-release below its
 * release ("2.0.0-rc1" < "2.0.0"), pre-release identifiers numerically when numeric and as ASCII
 * otherwise, a numeric one below text ("1.0-rc.2" < "1.0-rc.10"; "rc10" < "rc9" as text), build
 * metadata after '+' ignored. Non-semver dotted versions ("1.2.3.4") compare the same way.
 * Returns <0, 0, >0. */
int manifest_version_compare(const char *a, const char *b);

/* ---- release conditions on local metrics (docs/ota.md, "Release conditions") ----
 *
 * A release may carry a condition the device evaluates from its own journal before it
 * downloads anything, e.g. "install this model only where the mean detection confidence over
 * the last 24 hours fell below 0.6":
 *
 *   "condition":{"metric":"detector.confidence","stat":"mean","window":"24h","op":"<",
 *                "value":0.6,"min_samples":10}
 *
 * metric is MEASUREMENT.FIELD (split at the last '.'), stat one of count mean min max p50 p95,
 * window a duration from 1s to 30d, op one of < <= > >=, value a finite number, min_samples
 * 0..MANIFEST_CONDITION_MAX_SAMPLES (default 1; fewer samples in the window: not met). The
 * payload parser does NOT refuse a manifest for its condition: a condition this code cannot
 * read (an unknown stat from a newer release tool, a bad window) is kept as "unreadable" with
 * its reason, and the device then does not install the release and says why (never a crash,
 * never an install on a condition it did not understand). Tools refuse such manifests. */
#define MANIFEST_CONDITION_MAX_SAMPLES 1000000u
#define MANIFEST_CONDITION_MAX_WINDOW_MS (30LL * 86400 * 1000)
#define MANIFEST_CONDITION_METRIC_MAX 129u /* "measurement.field" */

enum manifest_condition_stat {
    MANIFEST_STAT_COUNT = 0,
    MANIFEST_STAT_MEAN = 1,
    MANIFEST_STAT_MIN = 2,
    MANIFEST_STAT_MAX = 3,
    MANIFEST_STAT_P50 = 4,
    MANIFEST_STAT_P95 = 5,
};
enum manifest_condition_op {
    MANIFEST_OP_LT = 0,
    MANIFEST_OP_LE = 1,
    MANIFEST_OP_GT = 2,
    MANIFEST_OP_GE = 3,
};

struct manifest_condition {
    char metric[MANIFEST_CONDITION_METRIC_MAX + 1]; /* as written */
    char measurement[MANIFEST_CONDITION_METRIC_MAX + 1];
    char field[MANIFEST_CONDITION_METRIC_MAX + 1];
    enum manifest_condition_stat stat;
    int64_t window_ms;
    enum manifest_condition_op op;
    double value;
    uint32_t min_samples;
};

/* The release's condition: 0 when it has none; 1 with *out filled; -1 when it has one this code
 * cannot read (err says what and where, e.g. "condition: \"stat\" \"p99\" is not one of ..."). */
int manifest_condition(const struct manifest *m, struct manifest_condition *out, char *err,
                       size_t err_len);
/* Parses the text form tools take, "METRIC STAT WINDOW OP VALUE [min_samples N]", e.g.
 * "detector.confidence mean 24h < 0.6 min_samples 10". Returns 0 or MANIFEST_E_FORMAT with err
 * naming the word at fault. */
int manifest_condition_parse_text(const char *text, struct manifest_condition *out, char *err,
                                  size_t err_len) __attribute__((warn_unused_result));
/* Static names: "mean", "<", ... */
const char *manifest_condition_stat_name(enum manifest_condition_stat stat);
const char *manifest_condition_op_name(enum manifest_condition_op op);
/* Whether `value` op `threshold` holds. */
int manifest_condition_holds(enum manifest_condition_op op, double value, double threshold);
/* "detector.confidence mean 24h < 0.6 (min 10 samples)", for events, logs and tools. */
void manifest_condition_describe(const struct manifest_condition *c, char *buf, size_t len);

/* ---- building (release tooling, cloud side) ---- */

/* A release being described; strings are borrowed. */
struct manifest_spec {
    const char *component;
    const char *version;
    const char *device_class;
    uint64_t serial;
    int rollback;
    uint8_t target_sha256[32];
    uint64_t target_size;
    size_t artifact_count;
    struct manifest_artifact artifacts[MANIFEST_MAX_ARTIFACTS];
    uint8_t *chunk_storage[MANIFEST_MAX_ARTIFACTS]; /* owned, see manifest_spec_clear */
    const struct manifest_condition *condition;     /* NULL: unconditional release */
    /* Artifact mirror base URLs written into the payload (manifest_mirror_check each). */
    const char *mirrors[MANIFEST_MAX_MIRRORS];
    size_t mirror_count;
};

/* Whether `s` is a manifest name: 1..MANIFEST_MAX_STRING of [A-Za-z0-9._+-] (what the payload
 * parser accepts for component, version, device_class and base_version). */
int manifest_name_valid(const char *s);
/* Checks a spec's strings before anything is built from it (`ferry release create` runs it
 * before it writes an artifact): component one of rootfs, app, model, config; version and
 * device class valid names. Returns 0 or MANIFEST_E_FORMAT with err saying which. */
int manifest_spec_check_names(const struct manifest_spec *spec, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* Hashes an artifact file into spec->artifacts[spec->artifact_count++] (whole SHA-256 and one
 * per chunk_bytes chunk). For deltas, set base_* afterwards. Returns 0 or an error. */
int manifest_spec_add_file(struct manifest_spec *spec, const char *path,
                           enum manifest_artifact_kind kind, uint32_t chunk_bytes, char *err,
                           size_t err_len) __attribute__((warn_unused_result));
void manifest_spec_clear(struct manifest_spec *spec);

/* Writes the payload JSON of `spec` into `out`. */
int manifest_build_payload(const struct manifest_spec *spec, struct ferry_buf *out, char *err,
                           size_t err_len) __attribute__((warn_unused_result));

/* Signs `payload` with a 64-byte libsodium Ed25519 secret key and writes the envelope JSON into
 * `out` (one signature; the envelope format allows several, see docs/ota.md). */
int manifest_sign(const uint8_t *payload, size_t len, const uint8_t secret_key[64],
                  struct ferry_buf *out) __attribute__((warn_unused_result));

/* Key id of a public key (first 8 bytes of BLAKE2b-256, as for device keys), as 16 hex chars. */
void manifest_key_id(const uint8_t public_key[32], char out_hex[17]);

#endif
