/*
 * release_api.c - publishing a release over the API, so that `ferry-ingest --url URL --token T
 * release publish` (and `rollout create`) can run on another host than the ingest
 * (docs/ingest.md, "Publishing over the API"):
 *
 *   PUT  /v1/artifacts/{sha256}?offset=N&size=T   (operator) one piece of an artifact's bytes
 *   POST /v1/releases[?force=1]                    (admin) a signed manifest envelope, made the
 *                                                  current release of its class and component
 *
 * Two steps rather than one body holding everything: an artifact may be far larger than any body
 * the ingest should buffer (evhttp reads a whole body into memory before dispatch, before the
 * token is even looked at, so the body limit, limits.max_body, stays what batches need). An
 * artifact goes up in pieces appended to artifacts/.part-<sha256>; only when all `size` bytes
 * are there and their SHA-256 equals the name is it renamed to artifacts/<sha256>, so the
 * content-addressed tree never holds a byte that does not match its name. A piece at an offset
 * other than the bytes held is refused with 409 and "received" (the client resumes there).
 *
 * The manifest is the last step and the one that matters: it must verify against a configured
 * release key (release.public_keys), its class and component must be path-safe names, its serial
 * above the published one (unless force), and every artifact it names must be stored and match
 * its size and every chunk hash, as `release publish` checks. Nothing is written before all of
 * that passed; the manifest files are then written atomically (ingest_release_install).
 *
 * These handlers run on a worker's event loop and do file I/O there (hashing a stored artifact
 * again at publish): publishing is rare and done by an operator, and the batch path of other
 * workers is not held. Piece sizes are bounded by limits.max_body.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>

#include "cloud-ingest/auth/auth.h"
#include "cloud-ingest/ingest.h"
#include "cloud-ingest/release/release.h"
#include "common/log.h"
#include "common/util.h"
#include "transport/manifest.h"

bool ingest_release_path_name_ok(const char *s)
{
    return manifest_name_valid(s) && s[0] != '.';
}

int ingest_release_parse_verified(const uint8_t *data, size_t len, const uint8_t (*keys)[32],
                                  size_t nkeys, struct manifest **out, char *err, size_t err_len)
{
    *out = NULL;
    struct manifest_keys mk = {keys, nkeys};
    char why[512] = "";
    int rc = manifest_parse_verified(data, len, &mk, out, why, sizeof(why));
    if (rc != 0) {
        snprintf(err, err_len, "manifest: %s (%s)", manifest_strerror(rc), why);
        return -1;
    }
    if (!ingest_release_path_name_ok(manifest_device_class(*out)) ||
        !ingest_release_path_name_ok(manifest_component(*out))) {
        snprintf(err, err_len,
                 "manifest: device class and component must be names that do not start "
                 "with '.' (they name directories)");
        manifest_free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* Reads `fd` from its start and checks it against `a`: its size, each chunk hash and the whole
 * SHA-256. Returns 0, or -1 with err saying what differs. */
static int check_artifact_fd(int fd, const struct manifest_artifact *a, const char *hex, char *err,
                             size_t err_len)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != a->size) {
        snprintf(err, err_len, "artifact %s: stored size %lld, the manifest says %llu", hex,
                 (long long)st.st_size, (unsigned long long)a->size);
        return -1;
    }
    uint8_t *buf = malloc(a->chunk_bytes);
    if (buf == NULL) {
        snprintf(err, err_len, "artifact %s: out of memory", hex);
        return -1;
    }
    crypto_hash_sha256_state whole;
    crypto_hash_sha256_init(&whole);
    uint64_t total = 0;
    int rc = 0;
    for (uint32_t c = 0; c < a->chunk_count && rc == 0; c++) {
        long long len = ingest_release_read_chunk(fd, a, c, total, buf, &whole);
        if (len < 0) {
            snprintf(err, err_len, "artifact %s: chunk %u does not match the manifest", hex, c);
            rc = -1;
        } else {
            total += (uint64_t)len;
        }
    }
    uint8_t h[32];
    crypto_hash_sha256_final(&whole, h);
    if (rc == 0 && (total != a->size || memcmp(h, a->sha256, 32) != 0)) {
        snprintf(err, err_len, "artifact %s: its SHA-256 does not match the manifest", hex);
        rc = -1;
    }
    free(buf);
    return rc;
}

int ingest_release_check_stored(const struct ingest_config *cfg, const struct manifest *m,
                                char *err, size_t err_len)
{
    char dir[1200];
    if (ingest_release_dir(cfg, dir, sizeof(dir)) != 0) {
        snprintf(err, err_len, "releases directory: path too long");
        return -1;
    }
    for (size_t i = 0; i < manifest_artifact_count(m); i++) {
        const struct manifest_artifact *a = manifest_artifact(m, i);
        char hex[65], path[1400];
        ferry_hex_encode(a->sha256, 32, hex);
        snprintf(path, sizeof(path), "%s/artifacts/%s", dir, hex);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(err, err_len,
                     "artifact %s (%llu bytes) is not stored: upload it first with PUT "
                     "/v1/artifacts/%s",
                     hex, (unsigned long long)a->size, hex);
            return -1;
        }
        int rc = check_artifact_fd(fd, a, hex, err, err_len);
        close(fd);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ---- PUT /v1/artifacts/{sha256}?offset=N&size=T ------------------------------------------------
 */

static int query_u64(struct evhttp_request *req, const char *name, uint64_t max, uint64_t *out)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq q = {0};
    if (query == NULL || evhttp_parse_query_str(query, &q) != 0)
        return -1;
    const char *v = evhttp_find_header(&q, name);
    int rc = v != NULL && ferry_parse_u64(v, max, out) == 0 ? 0 : -1;
    evhttp_clear_headers(&q);
    return rc;
}

static bool query_flag(struct evhttp_request *req, const char *name)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq q = {0};
    if (query == NULL || evhttp_parse_query_str(query, &q) != 0)
        return false;
    const char *v = evhttp_find_header(&q, name);
    bool on = v != NULL && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
    evhttp_clear_headers(&q);
    return on;
}

static void reply_received(struct evhttp_request *req, int code, const char *hex, uint64_t have,
                           bool stored)
{
    char out[160];
    int n = snprintf(out, sizeof(out), "{\"sha256\":\"%s\",\"received\":%llu,\"stored\":%s}\n", hex,
                     (unsigned long long)have, stored ? "true" : "false");
    ingest_reply(req, code, "application/json", out, (size_t)n);
}

static int write_all_at(int fd, struct evbuffer *in, uint64_t offset)
{
    struct evbuffer_iovec v[16];
    while (evbuffer_get_length(in) > 0) {
        int n = evbuffer_peek(in, -1, NULL, v, 16);
        if (n <= 0)
            return -1;
        if (n > 16)
            n = 16;
        size_t done_total = 0;
        for (int i = 0; i < n; i++) {
            size_t done = 0;
            while (done < v[i].iov_len) {
                ssize_t w = pwrite(fd, (char *)v[i].iov_base + done, v[i].iov_len - done,
                                   (off_t)(offset + done));
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    return -1;
                done += (size_t)w;
            }
            offset += done;
            done_total += done;
        }
        evbuffer_drain(in, done_total);
    }
    return 0;
}

/* SHA-256 of the first `size` bytes of fd. */
static int hash_fd(int fd, uint64_t size, uint8_t out[32])
{
    crypto_hash_sha256_state s;
    crypto_hash_sha256_init(&s);
    uint8_t buf[65536];
    uint64_t off = 0;
    while (off < size) {
        size_t want = size - off < sizeof(buf) ? (size_t)(size - off) : sizeof(buf);
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        crypto_hash_sha256_update(&s, buf, (unsigned long long)n);
        off += (uint64_t)n;
    }
    crypto_hash_sha256_final(&s, out);
    return 0;
}

/* Appends the piece and, once all `size` bytes are held, checks the hash and renames the part
 * file into place. `fd` is the locked part file. Replies. */
static void artifact_piece(struct evhttp_request *req, int fd, const char *part, const char *final,
                           const char *hex, const uint8_t sha[32], uint64_t offset, uint64_t size)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        ingest_reply_error(req, 500, "artifact %s: cannot stat the upload: %s", hex,
                           strerror(errno));
        return;
    }
    uint64_t have = (uint64_t)st.st_size;
    if (offset == 0 && have != 0) {
        if (ftruncate(fd, 0) != 0) {
            ingest_reply_error(req, 500, "artifact %s: cannot restart the upload", hex);
            return;
        }
        have = 0;
    }
    if (offset != have || have > size) {
        char msg[200];
        int n = snprintf(msg, sizeof(msg),
                         "{\"error\":\"artifact %s: piece at offset %llu, but %llu bytes are "
                         "held: send the piece at offset %llu (or 0 to restart)\",\"received\":"
                         "%llu}\n",
                         hex, (unsigned long long)offset, (unsigned long long)have,
                         (unsigned long long)have, (unsigned long long)have);
        ingest_reply(req, 409, "application/json", msg, (size_t)n);
        return;
    }
    if (write_all_at(fd, in, offset) != 0) {
        ingest_reply_error(req, 500, "artifact %s: cannot write the upload: %s", hex,
                           strerror(errno));
        return;
    }
    have += len;
    if (have < size) {
        reply_received(req, 202, hex, have, false);
        return;
    }
    uint8_t h[32];
    if (fsync(fd) != 0 || hash_fd(fd, size, h) != 0) {
        ingest_reply_error(req, 500, "artifact %s: cannot read the upload back", hex);
        return;
    }
    if (memcmp(h, sha, 32) != 0) {
        char got[65];
        ferry_hex_encode(h, 32, got);
        unlink(part);
        ingest_reply_error(req, 400,
                           "artifact %s: the %llu bytes uploaded have SHA-256 %s: discarded", hex,
                           (unsigned long long)size, got);
        return;
    }
    if (rename(part, final) != 0) {
        ingest_reply_error(req, 500, "artifact %s: cannot store it: %s", hex, strerror(errno));
        return;
    }
    reply_received(req, 201, hex, size, true);
}

static void handle_artifact_put(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_ctx *ctx = arg;
    const struct ingest_config *cfg = ctx->cfg;
    const char *hex = path + strlen("/v1/artifacts/");
    uint8_t sha[32];
    if (strlen(hex) != 64 || strspn(hex, "0123456789abcdef") != 64 ||
        ferry_hex_decode(hex, sha, 32) != 0) {
        ingest_reply_error(req, 400, "artifact name: its SHA-256 in 64 lowercase hex digits");
        return;
    }
    uint64_t offset = 0, size = 0;
    if (query_u64(req, "offset", UINT64_MAX, &offset) != 0 ||
        query_u64(req, "size", UINT64_MAX, &size) != 0) {
        ingest_reply_error(req, 400, "artifact %s: ?offset=N&size=TOTAL required", hex);
        return;
    }
    size_t len = evbuffer_get_length(evhttp_request_get_input_buffer(req));
    if (size > cfg->max_artifact_bytes) {
        ingest_reply_error(req, 413, "artifact %s: %llu bytes exceed limits.max_artifact (%llu)",
                           hex, (unsigned long long)size,
                           (unsigned long long)cfg->max_artifact_bytes);
        return;
    }
    if (len > cfg->max_body_bytes) {
        ingest_reply_error(req, 413, "artifact %s: a piece of %zu bytes exceeds limits.max_body",
                           hex, len);
        return;
    }
    if (offset > size || len > size - offset || (len == 0 && offset < size)) {
        ingest_reply_error(req, 400,
                           "artifact %s: a piece of %zu bytes at offset %llu does not fit in "
                           "%llu bytes",
                           hex, len, (unsigned long long)offset, (unsigned long long)size);
        return;
    }
    char dir[1200], adir[1300], final[1400], part[1400];
    if (ingest_release_dir(cfg, dir, sizeof(dir)) != 0 ||
        snprintf(adir, sizeof(adir), "%s/artifacts", dir) >= (int)sizeof(adir) ||
        ferry_mkdir_p(adir, 0755) != 0) {
        ingest_reply_error(req, 500, "artifact %s: cannot create the artifacts directory", hex);
        return;
    }
    snprintf(final, sizeof(final), "%s/%s", adir, hex);
    snprintf(part, sizeof(part), "%s/.part-%s", adir, hex);
    if (access(final, F_OK) == 0) {
        reply_received(req, 200, hex, size, true); /* content addressed: already there */
        return;
    }
    int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        ingest_reply_error(req, 500, "artifact %s: cannot open the upload: %s", hex,
                           strerror(errno));
        return;
    }
    /* One upload of an artifact at a time, across workers and processes sharing the tree. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        ingest_reply_error(req, 409, "artifact %s: another upload of it is in progress", hex);
        return;
    }
    artifact_piece(req, fd, part, final, hex, sha, offset, size);
    close(fd);
}

/* ---- POST /v1/releases -------------------------------------------------------------------------
 */

static void handle_release_post(struct evhttp_request *req, const char *path, void *arg)
{
    (void)path;
    struct ingest_ctx *ctx = arg;
    const struct ingest_config *cfg = ctx->cfg;
    if (cfg->n_release_keys == 0) {
        ingest_reply_error(req, 409,
                           "publishing over the API needs release.public_keys in the "
                           "ingest's configuration");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > MANIFEST_MAX_BYTES) {
        ingest_reply_error(req, 413, "manifest of %zu bytes exceeds %u", len,
                           (unsigned)MANIFEST_MAX_BYTES);
        return;
    }
    const uint8_t *data = len > 0 ? evbuffer_pullup(in, -1) : (const uint8_t *)"";
    struct manifest *m = NULL;
    char err[640];
    if (data == NULL ||
        ingest_release_parse_verified(data, len, (const uint8_t(*)[32])cfg->release_keys,
                                      cfg->n_release_keys, &m, err, sizeof(err)) != 0) {
        ingest_reply_error(req, 400, "%s", data == NULL ? "out of memory" : err);
        return;
    }
    const char *cls = manifest_device_class(m), *comp = manifest_component(m);
    uint64_t cur = ingest_release_current_serial(cfg, cls, comp);
    if (cur >= manifest_serial(m) && !query_flag(req, "force")) {
        ingest_reply_error(req, 409,
                           "serial %llu is not above the published %llu for %s/%s (devices "
                           "would refuse it; ?force=1 to publish anyway)",
                           (unsigned long long)manifest_serial(m), (unsigned long long)cur, cls,
                           comp);
        goto out;
    }
    if (ingest_release_check_stored(cfg, m, err, sizeof(err)) != 0) {
        ingest_reply_error(req, 400, "%s", err);
        goto out;
    }
    if (ingest_release_install(cfg, m, data, len) != 0) {
        ingest_reply_error(req, 500, "cannot write the manifest of %s/%s", cls, comp);
        goto out;
    }
    /* The release's id is the ETag devices see for it (release.c): the envelope's hash. */
    uint8_t h[32];
    char id[33], target[INGEST_AUDIT_TARGET_MAX + 1];
    crypto_hash_sha256(h, data, len);
    ferry_hex_encode(h, 16, id);
    snprintf(target, sizeof(target), "%s %s/%s %s serial %llu", id, cls, comp, manifest_version(m),
             (unsigned long long)manifest_serial(m));
    if (ingest_auth_audit_request(ctx->store, req, "release.publish", target, 201) != 0)
        log_warn("ingest", "audit log: cannot record release.publish %s", target);
    char out[512];
    int n = snprintf(out, sizeof(out),
                     "{\"id\":\"%s\",\"device_class\":\"%s\",\"component\":\"%s\",\"version\":"
                     "\"%s\",\"serial\":%llu}\n",
                     id, cls, comp, manifest_version(m), (unsigned long long)manifest_serial(m));
    ingest_reply(req, 201, "application/json", out, (size_t)n);
out:
    manifest_free(m);
}

int ingest_release_api_register(struct ingest_router *router, struct ingest_ctx *ctx)
{
    int rc = ingest_router_add(router, EVHTTP_REQ_PUT, "/v1/artifacts/*", INGEST_ACCESS_OPERATOR,
                               handle_artifact_put, ctx);
    if (rc == 0)
        rc = ingest_router_add(router, EVHTTP_REQ_POST, "/v1/releases", INGEST_ACCESS_ADMIN,
                               handle_release_post, ctx);
    return rc;
}
