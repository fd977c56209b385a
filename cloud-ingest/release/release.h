/*
 * release.h - releases inside ferry-ingest: publishing signed manifests and their artifacts, and
 * serving them to devices over HTTP (docs/ota.md, "Serving").
 *
 * Storage (under the ingest's data directory, store.lmdb_dir, in releases/):
 *   artifacts/<sha256 hex>                    artifact bytes, content addressed, immutable
 *   manifests/<device_class>/<component>.json the current signed manifest of that class/component
 *   manifests/<device_class>/latest.json      the most recently published one of the class
 * Every file is written to a temporary name, fsync'd and renamed, so a reader never sees a
 * partial file. Because artifacts are plain immutable files named by hash, the same tree can be
 * served by nginx or any CDN.
 *
 * Endpoints (registered into the ingest's router by ingest_release_register):
 *   GET /v1/devices/{id}/manifest[?component=C]
 *       200 with the signed manifest for the device's class (ETag; If-None-Match -> 304),
 *       204 when no release is meant for it, 404 for an unknown device.
 *   GET /v1/artifacts/{sha256 hex}
 *       200 the whole artifact, or 206 for one "Range: bytes=a-b" / "a-" / "-n" (Content-Range),
 *       416 for a range beyond the end; "If-Range" with the artifact's ETag (or its exact
 *       Last-Modified date) keeps the range, anything else answers 200 with the whole body.
 *       Several ranges in one header are not supported and answered with the whole artifact.
 */
#ifndef FERRY_INGEST_RELEASE_H
#define FERRY_INGEST_RELEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct manifest_artifact;
struct ingest_router;
struct ingest_ctx;
struct ingest_config;
struct ingest_device;
struct manifest;

/*
 * Who decides, per device, which manifest it is offered instead of the class's current one: the
 * rollouts (cloud-ingest/rollout/rollout.h) install one in ingest_ctx.offerer. A hook rather than
 * a call so that the release library does not depend on the rollout library (which publishes
 * through this one). Both functions are called on worker threads and must be thread-safe.
 */
struct ingest_release_offerer {
    /* For a GET of `component` by `dev`: returns 1 with the path of the manifest file to serve
     * in file[file_len] (the device was offered it: the offerer records that), 0 when no
     * rollout concerns the device (the current manifest is served), or a negative value when it
     * cannot decide now (the store failed: 503, the device retries). */
    int (*manifest)(void *arg, const struct ingest_device *dev, const char *component, char *file,
                    size_t file_len);
    /* True when a manifest `dev` is offered by a rollout names the artifact `sha256`. */
    bool (*artifact)(void *arg, const struct ingest_device *dev, const uint8_t sha256[32]);
    void *arg;
};

/* Adds the two routes above, and those of publishing over the API (release_api.c, admin and
 * operator tokens):
 *   PUT  /v1/artifacts/{sha256}?offset=N&size=T  one piece of an artifact (operator): 202 with
 *        {"received":N} while incomplete, 201 when all bytes are there and their SHA-256 is the
 *        name (400 and discarded otherwise), 200 when already stored, 409 with "received" for a
 *        piece at another offset than the bytes held, 413 above limits.max_artifact/max_body.
 *   POST /v1/releases[?force=1]  body: a signed manifest envelope (admin): verified with
 *        release.public_keys, every artifact it names stored and matching, then made current;
 *        201 {"id","device_class","component","version","serial"}; 400 with the reason and
 *        nothing written; 409 for a serial not above the published one (without force) or no
 *        release keys configured; audited as release.publish.
 * to `router`, using ctx->cfg (data directory) and ctx->store (device
 * classes). `ctx` must outlive the server. Returns 0 or the router's error. Handlers are
 * thread-safe; they read small files and reply at once (artifact bodies go out with sendfile). */
int ingest_release_register(struct ingest_router *router, struct ingest_ctx *ctx)
    __attribute__((warn_unused_result));

/*
 * `ferry-ingest release ...` (argv starts at "release"):
 *   release publish --pub RELEASE.pub [--pub ...] [--force] MANIFEST.json ARTIFACT|DIR...
 *       verifies the manifest against the given release keys, copies every artifact it names
 *       (found among the files given, or in the directories by hash name) after checking its
 *       SHA-256, size and chunk hashes, then installs the manifest. A serial not above the one
 *       published for the same class and component is refused unless --force.
 *   release list
 * Prints to stdout/stderr; returns the process exit status.
 */
/* Registers PUT /v1/artifacts/{sha256} and POST /v1/releases (called by
 * ingest_release_register). */
int ingest_release_api_register(struct ingest_router *router, struct ingest_ctx *ctx)
    __attribute__((warn_unused_result));

/* Whether a manifest's device class or component may name a directory of the releases tree: a
 * manifest name (manifest_name_valid) that does not start with '.' (no "..", no hidden file). */
bool ingest_release_path_name_ok(const char *s);

/* Parses and verifies an envelope (data[len]) against `keys` and checks that its class and
 * component are path-safe. Returns 0 with *out (manifest_free), or -1 with err saying why. */
int ingest_release_parse_verified(const uint8_t *data, size_t len, const uint8_t (*keys)[32],
                                  size_t nkeys, struct manifest **out, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* Checks that every artifact `m` names is stored (artifacts/<sha256>) with its size, chunk
 * hashes and SHA-256 (reads them all). Returns 0, or -1 with err naming the first one missing
 * or different. */
int ingest_release_check_stored(const struct ingest_config *cfg, const struct manifest *m,
                                char *err, size_t err_len) __attribute__((warn_unused_result));

/* For `release publish` over the API: finds the file among `sources` (files, or directories of
 * hash-named files) whose content is the artifact `sha256` (its hex in hex). Returns 0 with the
 * path in out, or -1. */
int ingest_release_find_source(char **sources, int nsources, const char *hex,
                               const uint8_t sha256[32], char *out, size_t out_len);

int ingest_release_main(const struct ingest_config *cfg, int argc, char **argv);

/* Reads chunk `c` of artifact `a` (it starts at byte `off` of `fd`, read with pread) into `buf`
 * (a->chunk_bytes large) and checks it against the manifest's chunk hash; the bytes are added to
 * `whole` (the running SHA-256 of the artifact, a crypto_hash_sha256_state *). Returns the
 * chunk's length, or -1 when the file is short there or the bytes differ. Shared by `release
 * publish` (copying a source file) and PUT/POST over the API (checking a stored one). */
long long ingest_release_read_chunk(int fd, const struct manifest_artifact *a, uint32_t c,
                                    uint64_t off, uint8_t *buf, void *whole);

/* The releases directory for a configuration ("<store.lmdb_dir>/releases"). Returns 0 or -1. */
int ingest_release_dir(const struct ingest_config *cfg, char *out, size_t out_len);

/* ---- The steps of `release publish`, for the rollouts (cloud-ingest/rollout/) ---------------
 * Each prints what it did to stdout and what went wrong to stderr (they serve commands). */

/* Reads a release public key file (64 hex digits). Returns 0 or -1. */
int ingest_release_read_pub(const char *path, uint8_t out[32]);
/* Reads `manifest_path` and verifies it against `keys`: on success *out (free with
 * manifest_free) and the envelope bytes *data[*len] (free) are the caller's. Returns 0 or -1. */
int ingest_release_verify(const char *manifest_path, const uint8_t (*keys)[32], size_t nkeys,
                          struct manifest **out, uint8_t **data, size_t *len);
/* Stores every artifact `m` names, found among `sources` (files or directories of hash-named
 * files), after checking size, chunk hashes and SHA-256; already stored ones are kept. Does NOT
 * make the manifest current. What it stored is written to `info` (stdout for `release publish`,
 * stderr for `rollout create`, whose stdout is the id alone). Returns 0 or -1. */
int ingest_release_store_artifacts(const struct ingest_config *cfg, const struct manifest *m,
                                   char **sources, int nsources, FILE *info);
/* Makes `m` (envelope data[len]) the current manifest of its class and component (and the class's
 * latest.json). Artifacts must be stored first. Returns 0 or -1. */
int ingest_release_install(const struct ingest_config *cfg, const struct manifest *m,
                           const uint8_t *data, size_t len);
/* Serial of the current manifest of (class, component); 0 when none. */
uint64_t ingest_release_current_serial(const struct ingest_config *cfg, const char *device_class,
                                       const char *component);

#endif
