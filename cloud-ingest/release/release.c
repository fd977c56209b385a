/*
 * release.c - the HTTP side of releases in ferry-ingest: the device manifest and the artifact
 * bytes with single-range requests (see release.h, docs/ota.md "Serving").
 *
 * Both handlers are stateless over the releases directory, so several worker threads (and several
 * ingest processes sharing the directory) serve the same files without coordination: publishing
 * replaces files by rename, which readers see either before or after, never half way.
 * Artifact bodies are handed to libevent as a file segment (sendfile), so a 2 GiB image costs no
 * user-space copy and no memory beyond the socket buffers.
 */
#include "cloud-ingest/release/release.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/ingest.h"
#include "common/util.h"
#include "transport/manifest.h"

int ingest_release_dir(const struct ingest_config *cfg, char *out, size_t out_len)
{
    int n = snprintf(out, out_len, "%s/releases", cfg->lmdb_dir);
    return n > 0 && (size_t)n < out_len ? 0 : -1;
}

static int valid_segment(const char *s, size_t n)
{
    if (n == 0 || n > INGEST_NAME_MAX || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == '+'))
            return 0;
    }
    return 1;
}

/* ---- GET /v1/devices/{id}/manifest ------------------------------------------------------------
 */

/* The ingest's configured mirrors ([release] mirrors) go into the envelope as an unsigned
 * "mirrors" array, replacing one the published file may hold. Unsigned is safe: a mirror can
 * only serve bytes that must match the signed chunk hashes (docs/ota.md "Mirrors"), so the list
 * steers where a device fetches, never what it installs; and whoever could rewrite the envelope
 * in transit could as well drop the manifest. Keeping it out of the signed payload lets an
 * operator move artifacts to a CDN without re-signing releases. On success *data and *len are
 * replaced by a new allocation (the old one freed); on failure they are left as they were.
 * A parse and a dump per poll: manifests are small (a 2 GiB image in 1 MiB chunks lists 2048
 * hashes, about 190 KB of envelope), and a 304 costs the same work as before plus this. */
static int add_envelope_mirrors(const struct ingest_config *cfg, uint8_t **data, size_t *len)
{
    json_t *env = json_loadb((const char *)*data, *len, JSON_REJECT_DUPLICATES, NULL);
    json_t *list = json_array();
    int rc = -1;
    if (!json_is_object(env) || list == NULL)
        goto out;
    for (size_t i = 0; i < cfg->n_release_mirrors; i++)
        if (json_array_append_new(list, json_string(cfg->release_mirrors[i])) != 0)
            goto out;
    if (json_object_set(env, "mirrors", list) != 0)
        goto out;
    char *text = json_dumps(env, JSON_COMPACT);
    if (text == NULL)
        goto out;
    free(*data);
    *len = strlen(text);
    *data = (uint8_t *)text;
    rc = 0;
out:
    json_decref(list);
    json_decref(env);
    return rc;
}

static void handle_manifest(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_ctx *ctx = arg;
    const char *id = path + strlen("/v1/devices/");
    const char *slash = strchr(id, '/');
    if (!slash || !valid_segment(id, (size_t)(slash - id)) ||
        (size_t)(slash - id) > INGEST_DEVICE_ID_MAX) {
        ingest_reply_error(req, 400, "manifest: malformed device id in %s", path);
        return;
    }
    char device_id[INGEST_DEVICE_ID_MAX + 1];
    memcpy(device_id, id, (size_t)(slash - id));
    device_id[slash - id] = '\0';

    char component[MANIFEST_MAX_STRING + 1] = "latest";
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (query) {
        struct evkeyvalq q = {0}; /* evhttp_parse_query_str initialises it */
        if (evhttp_parse_query_str(query, &q) != 0) {
            ingest_reply_error(req, 400, "manifest: malformed query");
            return;
        }
        const char *c = evhttp_find_header(&q, "component");
        int ok = !c || (valid_segment(c, strlen(c)) && strlen(c) <= MANIFEST_MAX_STRING);
        if (c && ok)
            ferry_strlcpy(component, c, sizeof(component));
        evhttp_clear_headers(&q);
        if (!ok) {
            ingest_reply_error(req, 400, "manifest: bad component");
            return;
        }
    }
    /* The device's class decides which release is meant for it. A store lookup: LMDB answers
     * from memory-mapped pages; PostgreSQL is one indexed query. */
    struct ingest_device dev;
    int rc = ingest_store_device_get(ctx->store, device_id, &dev);
    if (rc == INGEST_STORE_ENOTFOUND) {
        ingest_reply_error(req, 404, "manifest: unknown device %s", device_id);
        return;
    }
    if (rc != 0) {
        ingest_reply_error(req, 503, "manifest: store lookup of %s failed", device_id);
        return;
    }
    if (dev.revoked) {
        ingest_reply_error(req, 403, "manifest: device %s is revoked", device_id);
        return;
    }
    if (!valid_segment(dev.device_class, strlen(dev.device_class))) {
        ingest_reply(req, 204, NULL, NULL, 0); /* no class, no release meant for it */
        return;
    }
    char dir[1200], file[1600];
    /* A rollout of this class and component may offer this device another manifest (its
     * release while its wave runs, the rollback after an abort): cloud-ingest/rollout/. */
    int offered = ctx->offerer != NULL ? ctx->offerer->manifest(ctx->offerer->arg, &dev, component,
                                                                file, sizeof(file))
                                       : 0;
    if (offered < 0) {
        ingest_reply_retry(req, 503, 1, "manifest: rollout state unavailable, retry");
        return;
    }
    if (offered == 0 && (ingest_release_dir(ctx->cfg, dir, sizeof(dir)) != 0 ||
                         snprintf(file, sizeof(file), "%s/manifests/%s/%s.json", dir,
                                  dev.device_class, component) >= (int)sizeof(file))) {
        ingest_reply_error(req, 500, "manifest: path too long");
        return;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    rc = ferry_read_file(file, MANIFEST_MAX_BYTES, &data, &len);
    if (rc == -ENOENT) {
        ingest_reply(req, 204, NULL, NULL, 0);
        return;
    }
    if (rc != 0) {
        ingest_reply_error(req, 500, "manifest: cannot read the release of class %s",
                           dev.device_class);
        return;
    }
    if (ctx->cfg->n_release_mirrors > 0 && add_envelope_mirrors(ctx->cfg, &data, &len) != 0) {
        free(data);
        ingest_reply_error(req, 500, "manifest: cannot add the mirrors to the release of class %s",
                           dev.device_class);
        return;
    }
    /* ETag (after the mirrors are added, so a changed mirror list is a changed manifest): a hash of
     * the bytes, so it changes exactly when the manifest does. */
    uint8_t h[32];
    crypto_hash_sha256(h, data, len);
    char etag[40];
    etag[0] = '"';
    ferry_hex_encode(h, 16, etag + 1);
    etag[33] = '"';
    etag[34] = '\0';
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "ETag", etag);
    evhttp_add_header(out, "Cache-Control", "no-cache");
    const char *inm = evhttp_find_header(evhttp_request_get_input_headers(req), "If-None-Match");
    if (inm && (strstr(inm, etag) || strcmp(inm, "*") == 0)) {
        free(data);
        evhttp_send_reply(req, 304, NULL, NULL);
        return;
    }
    ingest_reply(req, 200, "application/json", data, len);
    free(data);
}

/* ---- GET /v1/artifacts/{sha256} ---------------------------------------------------------------
 */

/* Whether the published manifest file `file` (an envelope verified when it was published) names
 * an artifact with this SHA-256. The payload is read without a key, as release_publish.c does. */
static bool manifest_file_names(const char *file, const uint8_t sha[32])
{
    uint8_t *data = NULL, *payload = NULL;
    size_t len = 0, plen = 0;
    bool found = false;
    if (ferry_read_file(file, MANIFEST_MAX_BYTES, &data, &len) != 0)
        return false;
    const char *p = strstr((const char *)data, "\"payload\":\"");
    const char *e = p != NULL ? strchr(p + 11, '"') : NULL;
    if (e == NULL)
        goto out;
    p += 11;
    payload = malloc((size_t)(e - p) + 1);
    if (payload == NULL || sodium_base642bin(payload, (size_t)(e - p), p, (size_t)(e - p), NULL,
                                             &plen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
        goto out;
    struct manifest *m = NULL;
    char err[128];
    if (manifest_parse_payload(payload, plen, &m, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < manifest_artifact_count(m) && !found; i++)
            found = memcmp(manifest_artifact(m, i)->sha256, sha, 32) == 0;
    }
    manifest_free(m);
out:
    free(payload);
    free(data);
    return found;
}

/* Whether a manifest currently published for the class of `device_id` names the artifact: a
 * device may download only what its own manifests point at (docs/security.md). A class has a few
 * components, so this reads a few small files per request. */
static bool artifact_meant_for(struct ingest_ctx *ctx, const char *device_id, const uint8_t sha[32])
{
    struct ingest_device dev;
    if (ingest_store_device_get(ctx->store, device_id, &dev) != 0 ||
        !valid_segment(dev.device_class, strlen(dev.device_class)))
        return false;
    if (ctx->offerer != NULL && ctx->offerer->artifact(ctx->offerer->arg, &dev, sha))
        return true;
    char dir[1200], classdir[1400], file[1700];
    if (ingest_release_dir(ctx->cfg, dir, sizeof(dir)) != 0 ||
        snprintf(classdir, sizeof(classdir), "%s/manifests/%s", dir, dev.device_class) >=
            (int)sizeof(classdir))
        return false;
    DIR *d = opendir(classdir);
    if (d == NULL)
        return false;
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 6 || de->d_name[0] == '.' || strcmp(de->d_name + n - 5, ".json") != 0)
            continue;
        if (snprintf(file, sizeof(file), "%s/%s", classdir, de->d_name) >= (int)sizeof(file))
            continue;
        found = manifest_file_names(file, sha);
    }
    closedir(d);
    return found;
}

/* Parses a single "bytes=" range against `size`. Returns 1 with [*first, *last] for a usable
 * range, 0 when the header is to be ignored (absent, malformed, several ranges), -1 when it is
 * unsatisfiable (416). RFC 9110 section 14. */
static int parse_range(const char *h, uint64_t size, uint64_t *first, uint64_t *last)
{
    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 0;
    const char *p = h + 6;
    char *end;
    if (*p == '-') { /* suffix: the last n bytes */
        if (p[1] < '0' || p[1] > '9')
            return 0;
        errno = 0;
        unsigned long long n = strtoull(p + 1, &end, 10);
        if (errno || *end)
            return 0;
        if (n == 0 || size == 0)
            return -1;
        *first = n >= size ? 0 : size - n;
        *last = size - 1;
        return 1;
    }
    if (*p < '0' || *p > '9')
        return 0;
    errno = 0;
    unsigned long long a = strtoull(p, &end, 10);
    if (errno || *end != '-')
        return 0;
    p = end + 1;
    unsigned long long b = UINT64_MAX;
    if (*p) {
        if (*p < '0' || *p > '9')
            return 0;
        errno = 0;
        b = strtoull(p, &end, 10);
        if (errno || *end || b < a)
            return 0;
    }
    if (a >= size)
        return -1;
    *first = a;
    *last = b >= size ? size - 1 : b;
    return 1;
}

static void http_date(time_t t, char *out, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static void handle_artifact(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_ctx *ctx = arg;
    const char *hex = path + strlen("/v1/artifacts/");
    uint8_t bin[32];
    if (strlen(hex) != 64 || ferry_hex_decode(hex, bin, 32) != 0) {
        ingest_reply_error(req, 400, "artifact: %s is not a SHA-256 in hex", hex);
        return;
    }
    char lower[65];
    ferry_hex_encode(bin, 32, lower); /* canonical file name, whatever the case asked */
    /* Dispatch verified the device's signed request, so its id header is the signer's. */
    const char *device =
        evhttp_find_header(evhttp_request_get_input_headers(req), INGEST_DEVICE_HEADER);
    if (device == NULL || !artifact_meant_for(ctx, device, bin)) {
        ingest_reply_error(req, 403, "artifact %s is not named by a manifest of device %s", lower,
                           device != NULL ? device : "?");
        return;
    }
    char dir[1200], file[1400];
    if (ingest_release_dir(ctx->cfg, dir, sizeof(dir)) != 0 ||
        snprintf(file, sizeof(file), "%s/artifacts/%s", dir, lower) >= (int)sizeof(file)) {
        ingest_reply_error(req, 500, "artifact: path too long");
        return;
    }
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        ingest_reply_error(req, 404, "artifact %s not found", lower);
        return;
    }
    uint64_t size = (uint64_t)st.st_size;
    char etag[68], lastmod[64], v[96];
    snprintf(etag, sizeof(etag), "\"%s\"", lower);
    http_date(st.st_mtime, lastmod, sizeof(lastmod));
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    evhttp_add_header(out, "ETag", etag);
    evhttp_add_header(out, "Last-Modified", lastmod);
    evhttp_add_header(out, "Accept-Ranges", "bytes");
    evhttp_add_header(out, "Content-Type", "application/octet-stream");
    /* Content addressed: the bytes behind a name never change, caches may keep them. */
    evhttp_add_header(out, "Cache-Control", "public, max-age=31536000, immutable");

    uint64_t first = 0, last = size ? size - 1 : 0;
    const char *range = evhttp_find_header(in, "Range");
    const char *if_range = evhttp_find_header(in, "If-Range");
    int r = parse_range(range, size, &first, &last);
    /* If-Range: keep the range only when the validator is the current one; otherwise the client
     * has bytes of another artifact and gets the whole current one. */
    if (r != 0 && if_range && strcmp(if_range, etag) != 0 && strcmp(if_range, lastmod) != 0) {
        r = 0;
        first = 0;
        last = size ? size - 1 : 0;
    }
    if (r < 0) {
        close(fd);
        snprintf(v, sizeof(v), "bytes */%" PRIu64, size);
        evhttp_add_header(out, "Content-Range", v);
        ingest_reply_error(req, 416, "artifact %s: range %s beyond %" PRIu64 " bytes", lower, range,
                           size);
        return;
    }
    int code = 200;
    if (r > 0) {
        code = 206;
        snprintf(v, sizeof(v), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, last, size);
        evhttp_add_header(out, "Content-Range", v);
    }
    uint64_t len = size ? last - first + 1 : 0;
    struct evbuffer *body = evhttp_request_get_output_buffer(req);
    if (len == 0) {
        close(fd);
    } else {
        /* The segment owns fd (closed when the last reference goes); sendfile when possible. */
        struct evbuffer_file_segment *seg =
            evbuffer_file_segment_new(fd, (ev_off_t)first, (ev_off_t)len, EVBUF_FS_CLOSE_ON_FREE);
        if (!seg) {
            close(fd);
            ingest_reply_error(req, 500, "artifact %s: cannot map for sending", lower);
            return;
        }
        int added = evbuffer_add_file_segment(body, seg, 0, (ev_off_t)len);
        evbuffer_file_segment_free(seg); /* drops our reference; the buffer holds its own */
        if (added != 0) {
            ingest_reply_error(req, 500, "artifact %s: cannot send", lower);
            return;
        }
    }
    evhttp_send_reply(req, code, code == 206 ? "Partial Content" : "OK", NULL);
}

int ingest_release_register(struct ingest_router *router, struct ingest_ctx *ctx)
{
    /* Device routes: dispatch verified the device's signed request (and that the manifest path
     * names the signing device) before these handlers run. */
    int rc = ingest_router_add(router, EVHTTP_REQ_GET, "/v1/devices/*/manifest",
                               INGEST_ACCESS_DEVICE, handle_manifest, ctx);
    if (rc == 0)
        rc = ingest_router_add(router, EVHTTP_REQ_GET, "/v1/artifacts/*", INGEST_ACCESS_DEVICE,
                               handle_artifact, ctx);
    if (rc == 0)
        rc = ingest_release_api_register(router, ctx);
    return rc;
}
