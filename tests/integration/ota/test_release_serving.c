/*
 * test_release_serving.c - the release endpoints of a real ferry-ingest server (LMDB store,
 * libevent HTTP on loopback, port 0) spoken to with libcurl: publish through
 * ingest_release_main(), then the manifest (ETag, If-None-Match -> 304, 204, 404) and artifact
 * bytes (200, 206 for each range form, 416, If-Range kept and dropped, several ranges ignored),
 * every request signed by a device key (transport/reqsign.h) as ferryd signs it; a device reads
 * only its own manifest and the artifacts its class's manifests name; the configured artifact
 * mirrors ([release] mirrors) ride in the served envelope, unsigned, and it still verifies.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <sodium.h>

#include "cloud-ingest/ingest.h"
#include "cloud-ingest/release/release.h"
#include "common/buf.h"
#include "common/util.h"
#include "transport/manifest.h"
#include "transport/reqsign.h"

static char tmpdir[256];
static struct ingest_config cfg;
static struct ingest_store *store;
static struct ingest_server *server;
static pthread_t server_thread;
static uint16_t port;
static uint8_t artifact[300000];
static uint8_t dev_pk[2][32], dev_sk[2][64]; /* dev-1 (class c1) and dev-2 (class c2) */
static char artifact_hex[65];

struct reply {
    long code;
    struct ferry_buf body;
    char etag[128];
    char content_range[128];
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    return ferry_buf_append(&r->body, p, size * n) == 0 ? size * n : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t len = size * n;
    char line[256];
    if (len >= sizeof(line))
        return len;
    memcpy(line, p, len);
    line[len] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (strncasecmp(line, "ETag: ", 6) == 0)
        ferry_strlcpy(r->etag, line + 6, sizeof(r->etag));
    if (strncasecmp(line, "Content-Range: ", 15) == 0)
        ferry_strlcpy(r->content_range, line + 15, sizeof(r->content_range));
    return len;
}

/* GET `path` with up to two extra headers, signed as device `dev` (0: dev-1, 1: dev-2, -1:
 * unsigned). */
static void get_as(int dev, const char *path, const char *h1, const char *h2, struct reply *r)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    struct curl_slist *hs = NULL;
    if (h1)
        hs = curl_slist_append(hs, h1);
    if (h2)
        hs = curl_slist_append(hs, h2);
    struct reqsign_headers sig;
    if (dev >= 0) {
        assert_int_equal(reqsign_sign(dev_sk[dev], "GET", path, dev == 0 ? "dev-1" : "dev-2",
                                      ferry_realtime_ns() / 1000000000, &sig),
                         0);
        hs = curl_slist_append(hs, sig.device);
        hs = curl_slist_append(hs, sig.time);
        hs = curl_slist_append(hs, sig.nonce);
        hs = curl_slist_append(hs, sig.signature);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
}

/* GET signed as dev-1, the device of class c1 the releases are for. */
static void get(const char *path, const char *h1, const char *h2, struct reply *r)
{
    get_as(0, path, h1, h2, r);
}

static void *run_server(void *arg)
{
    (void)arg;
    int rc = ingest_server_run(server, false);
    (void)rc;
    return NULL;
}

static void write_file(const char *path, const void *p, size_t n)
{
    assert_int_equal(ferry_write_file_atomic(path, p, n, 0644), 0);
}

/* Builds a signed release for class c1 whose one (full) artifact is `artifact`, and publishes it
 * with the operator command. */
static void publish(uint64_t serial, int expect_status)
{
    static uint8_t pk[32], sk[64];
    static int have_key;
    if (!have_key) {
        crypto_sign_keypair(pk, sk);
        have_key = 1;
    }
    char art[512], man[512], pub[512], hex[65];
    snprintf(art, sizeof(art), "%s/art.bin", tmpdir);
    snprintf(man, sizeof(man), "%s/manifest.json", tmpdir);
    snprintf(pub, sizeof(pub), "%s/rel.pub", tmpdir);
    write_file(art, artifact, sizeof(artifact));
    ferry_hex_encode(pk, 32, hex);
    write_file(pub, hex, 64);
    struct manifest_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.component = "rootfs";
    spec.version = "2.0.0";
    spec.device_class = "c1";
    spec.serial = serial;
    spec.target_size = sizeof(artifact);
    char err[256];
    assert_int_equal(
        manifest_spec_add_file(&spec, art, MANIFEST_ARTIFACT_FULL, 65536, err, sizeof(err)), 0);
    ferry_hex_encode(spec.artifacts[0].sha256, 32, artifact_hex);
    struct ferry_buf payload = FERRY_BUF_INIT, env = FERRY_BUF_INIT;
    assert_int_equal(manifest_build_payload(&spec, &payload, err, sizeof(err)), 0);
    assert_int_equal(manifest_sign(payload.data, payload.len, sk, &env), 0);
    write_file(man, env.data, env.len);
    char *argv[] = {"release", "publish", "--pub", pub, man, art, NULL};
    assert_int_equal(ingest_release_main(&cfg, 6, argv), expect_status);
    ferry_buf_free(&payload);
    ferry_buf_free(&env);
    manifest_spec_clear(&spec);
}

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return -1;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-release-serving-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    randombytes_buf(artifact, sizeof(artifact));
    ingest_config_defaults(&cfg);
    char err[256];
    if (ingest_config_set(&cfg, "server.listen", "127.0.0.1:0", err, sizeof(err)) != 0 ||
        ingest_config_set(&cfg, "store.lmdb_dir", tmpdir, err, sizeof(err)) != 0 ||
        ingest_config_set(&cfg, "server.workers", "2", err, sizeof(err)) != 0 ||
        ingest_config_set(&cfg, "release.mirrors",
                          " https://cdn.example/ferry/artifacts/ ,http://10.1.2.3:8080/a/", err,
                          sizeof(err)) != 0) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    ingest_config_finish(&cfg);
    if (ingest_store_open(&cfg.store, &store, err, sizeof(err)) != 0) {
        fprintf(stderr, "store: %s\n", err);
        return -1;
    }
    struct ingest_device dev;
    memset(&dev, 0, sizeof(dev));
    ferry_strlcpy(dev.id, "dev-1", sizeof(dev.id));
    ferry_strlcpy(dev.device_class, "c1", sizeof(dev.device_class));
    crypto_sign_keypair(dev_pk[0], dev_sk[0]);
    memcpy(dev.public_key, dev_pk[0], 32);
    uint8_t kh[32];
    crypto_generichash(kh, 32, dev.public_key, 32, NULL, 0);
    memcpy(dev.key_id, kh, 8);
    if (ingest_store_device_add(store, &dev, err, sizeof(err)) != 0) {
        fprintf(stderr, "device add: %s\n", err);
        return -1;
    }
    ferry_strlcpy(dev.id, "dev-2", sizeof(dev.id));
    ferry_strlcpy(dev.device_class, "c2", sizeof(dev.device_class));
    crypto_sign_keypair(dev_pk[1], dev_sk[1]);
    memcpy(dev.public_key, dev_pk[1], 32);
    crypto_generichash(kh, 32, dev.public_key, 32, NULL, 0);
    memcpy(dev.key_id, kh, 8);
    if (ingest_store_device_add(store, &dev, err, sizeof(err)) != 0) {
        fprintf(stderr, "device add: %s\n", err);
        return -1;
    }
    if (ingest_server_new(&cfg, store, &server, err, sizeof(err)) != 0) {
        fprintf(stderr, "server: %s\n", err);
        return -1;
    }
    /* Harmless if server.c registers the routes too: the first registration wins a tie. */
    if (ingest_release_register(ingest_server_router(server), ingest_server_ctx(server)) != 0)
        return -1;
    port = ingest_server_port(server);
    return pthread_create(&server_thread, NULL, run_server, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (server) {
        ingest_server_stop(server);
        pthread_join(server_thread, NULL);
        ingest_server_free(server);
    }
    if (store)
        ingest_store_close(store);
    curl_global_cleanup();
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_manifest_etag_and_conditional_get(void **state)
{
    (void)state;
    struct reply r;
    get("/v1/devices/dev-1/manifest", NULL, NULL, &r);
    assert_int_equal(r.code, 204); /* nothing published yet */
    ferry_buf_free(&r.body);
    publish(3, 0);
    get("/v1/devices/dev-1/manifest", NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_true(r.etag[0] == '"');
    assert_non_null(memmem(r.body.data, r.body.len, "ferry-manifest-1", 16));
    char inm[160];
    snprintf(inm, sizeof(inm), "If-None-Match: %s", r.etag);
    struct reply r2;
    get("/v1/devices/dev-1/manifest", inm, NULL, &r2);
    assert_int_equal(r2.code, 304);
    assert_int_equal(r2.body.len, 0);
    get("/v1/devices/dev-1/manifest?component=rootfs", NULL, NULL, &r2);
    assert_int_equal(r2.code, 200);
    ferry_buf_free(&r2.body);
    get("/v1/devices/dev-1/manifest?component=model", NULL, NULL, &r2);
    assert_int_equal(r2.code, 204);
    get_as(1, "/v1/devices/dev-2/manifest", NULL, NULL, &r2); /* other class */
    assert_int_equal(r2.code, 204);
    /* Device A asking for device B's manifest, signed as itself, and unsigned: refused. */
    get_as(1, "/v1/devices/dev-1/manifest", NULL, NULL, &r2);
    assert_int_equal(r2.code, 403);
    ferry_buf_free(&r2.body);
    get("/v1/devices/dev-2/manifest", NULL, NULL, &r2);
    assert_int_equal(r2.code, 403);
    ferry_buf_free(&r2.body);
    get_as(-1, "/v1/devices/dev-1/manifest", NULL, NULL, &r2);
    assert_int_equal(r2.code, 401);
    ferry_buf_free(&r2.body);
    get("/v1/devices/nobody/manifest", NULL, NULL, &r2); /* unknown signer's id: not dev-1 */
    assert_int_equal(r2.code, 403);
    ferry_buf_free(&r2.body);
    /* a lower or equal serial is refused by publish */
    publish(3, 1);
    publish(2, 1);
    /* a new serial changes the ETag */
    publish(4, 0);
    get("/v1/devices/dev-1/manifest", inm, NULL, &r2);
    assert_int_equal(r2.code, 200);
    assert_string_not_equal(r2.etag, r.etag);
    ferry_buf_free(&r2.body);
    ferry_buf_free(&r.body);
}

/* [release] mirrors: the served envelope carries them, unsigned, and still verifies; the file
 * published stays as it was; the ETag is that of the bytes served. Bad lists are refused. */
static void test_manifest_carries_configured_mirrors(void **state)
{
    (void)state;
    publish(10, 0);
    struct reply r;
    get("/v1/devices/dev-1/manifest", NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    char pub[512], hex[80] = "";
    snprintf(pub, sizeof(pub), "%s/rel.pub", tmpdir);
    FILE *f = fopen(pub, "r");
    assert_non_null(f);
    assert_non_null(fgets(hex, sizeof(hex), f));
    fclose(f);
    uint8_t pk[1][32];
    assert_int_equal(ferry_hex_decode(hex, pk[0], 32), 0);
    struct manifest_keys keys = {(const uint8_t(*)[32])pk, 1};
    struct manifest *m = NULL;
    char err[256] = "";
    assert_int_equal(manifest_parse_verified(r.body.data, r.body.len, &keys, &m, err, sizeof(err)),
                     MANIFEST_OK);
    assert_int_equal(manifest_mirror_count(m), 2);
    assert_int_equal(manifest_mirror_signed_count(m), 0);
    assert_string_equal(manifest_mirror(m, 0), "https://cdn.example/ferry/artifacts/");
    assert_string_equal(manifest_mirror(m, 1), "http://10.1.2.3:8080/a/");
    manifest_free(m);
    /* the ETag hashes what was served, not the file as published */
    uint8_t h[32];
    char etag[40];
    crypto_hash_sha256(h, r.body.data, r.body.len);
    etag[0] = '"';
    ferry_hex_encode(h, 16, etag + 1);
    etag[33] = '"';
    etag[34] = '\0';
    assert_string_equal(r.etag, etag);
    char file[600];
    uint8_t *data = NULL;
    size_t len = 0;
    snprintf(file, sizeof(file), "%s/releases/manifests/c1/rootfs.json", tmpdir);
    assert_int_equal(ferry_read_file(file, 1 << 20, &data, &len), 0);
    assert_null(memmem(data, len, "mirrors", 7));
    free(data);
    ferry_buf_free(&r.body);

    struct ingest_config c;
    ingest_config_defaults(&c);
    static const char *bad[] = {"http://a/, ftp://b/", "http://a", "http://a/,,http://b/",
                                "http://1/,http://2/,http://3/,http://4/,http://5/,http://6/,"
                                "http://7/,http://8/,http://9/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(ingest_config_set(&c, "release.mirrors", bad[i], err, sizeof(err)),
                         INGEST_EINVAL);
        assert_non_null(strstr(err, "release.mirrors"));
    }
    assert_int_equal(ingest_config_set(&c, "release.mirrors", "", err, sizeof(err)), 0);
    assert_int_equal(c.n_release_mirrors, 0);
}

static void test_artifact_ranges(void **state)
{
    (void)state;
    char path[128], hdr[256];
    snprintf(path, sizeof(path), "/v1/artifacts/%s", artifact_hex);
    struct reply r;
    get(path, NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(r.body.len, sizeof(artifact));
    assert_memory_equal(r.body.data, artifact, sizeof(artifact));
    char etag[128];
    ferry_strlcpy(etag, r.etag, sizeof(etag));
    ferry_buf_free(&r.body);

    get(path, "Range: bytes=100-199", NULL, &r);
    assert_int_equal(r.code, 206);
    assert_int_equal(r.body.len, 100);
    assert_memory_equal(r.body.data, artifact + 100, 100);
    snprintf(hdr, sizeof(hdr), "bytes 100-199/%zu", sizeof(artifact));
    assert_string_equal(r.content_range, hdr);
    ferry_buf_free(&r.body);

    get(path, "Range: bytes=299990-", NULL, &r);
    assert_int_equal(r.code, 206);
    assert_int_equal(r.body.len, 10);
    ferry_buf_free(&r.body);
    get(path, "Range: bytes=-20", NULL, &r);
    assert_int_equal(r.code, 206);
    assert_int_equal(r.body.len, 20);
    assert_memory_equal(r.body.data, artifact + sizeof(artifact) - 20, 20);
    ferry_buf_free(&r.body);
    get(path, "Range: bytes=299000-999999999", NULL, &r);
    assert_int_equal(r.code, 206);
    assert_int_equal(r.body.len, 1000);
    ferry_buf_free(&r.body);

    get(path, "Range: bytes=300000-", NULL, &r);
    assert_int_equal(r.code, 416);
    snprintf(hdr, sizeof(hdr), "bytes */%zu", sizeof(artifact));
    assert_string_equal(r.content_range, hdr);
    ferry_buf_free(&r.body);

    snprintf(hdr, sizeof(hdr), "If-Range: %s", etag);
    get(path, "Range: bytes=0-9", hdr, &r);
    assert_int_equal(r.code, 206);
    assert_int_equal(r.body.len, 10);
    ferry_buf_free(&r.body);
    get(path, "Range: bytes=0-9", "If-Range: \"0000\"", &r); /* changed artifact: whole body */
    assert_int_equal(r.code, 200);
    assert_int_equal(r.body.len, sizeof(artifact));
    ferry_buf_free(&r.body);
    get(path, "Range: bytes=0-9,20-29", NULL, &r); /* several ranges: not supported, whole */
    assert_int_equal(r.code, 200);
    assert_int_equal(r.body.len, sizeof(artifact));
    ferry_buf_free(&r.body);

    /* An artifact no manifest of the device's class names (whether it exists or not), one named
     * only for another class, and any artifact unsigned: refused. */
    get("/v1/artifacts/00000000000000000000000000000000000000000000000000000000000000ff", NULL,
        NULL, &r);
    assert_int_equal(r.code, 403);
    ferry_buf_free(&r.body);
    get_as(1, path, NULL, NULL, &r);
    assert_int_equal(r.code, 403);
    assert_null(memmem(r.body.data, r.body.len, artifact, 64));
    ferry_buf_free(&r.body);
    get_as(-1, path, NULL, NULL, &r);
    assert_int_equal(r.code, 401);
    ferry_buf_free(&r.body);
    get("/v1/artifacts/not-a-hash", NULL, NULL, &r);
    assert_int_equal(r.code, 400);
    ferry_buf_free(&r.body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest_etag_and_conditional_get),
        cmocka_unit_test(test_artifact_ranges),
        cmocka_unit_test(test_manifest_carries_configured_mirrors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
