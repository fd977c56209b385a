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

#include <stddef.h>

struct ingest_router;
struct ingest_ctx;
struct ingest_config;

/* Adds the two routes above to `router`, using ctx->cfg (data directory) and ctx->store (device
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
int ingest_release_main(const struct ingest_config *cfg, int argc, char **argv);

/* The releases directory for a configuration ("<store.lmdb_dir>/releases"). Returns 0 or -1. */
int ingest_release_dir(const struct ingest_config *cfg, char *out, size_t out_len);

#endif
