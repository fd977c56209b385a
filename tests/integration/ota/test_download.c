/*
 * test_download.c - transport/download.c against a real ferry-ingest (release routes, LMDB,
 * loopback, port 0) and, for the no-Range case, a plain evhttp server that ignores Range:
 * complete download, resume after an interruption fetching only missing chunks, a corrupted chunk
 * on the server rejected before it is written, a truncated artifact, a server without Range
 * support, a link that cuts every other response halfway (the next request asks for the rest of
 * the chunk only), the bandwidth cap, and artifact mirrors tried before the ingest (a closed
 * port, a server ignoring Range, a server with a corrupted chunk: each given up, the corrupted
 * chunk never written, the ingest finishing the download; mirror requests carry no device
 * signature and no If-Range). Every range request to the ingest is signed as the device
 * (transport/reqsign.h), whose class's manifest names the artifact, as the ingest requires.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>

#include "cloud-ingest/ingest.h"
#include "cloud-ingest/release/release.h"
#include "common/buf.h"
#include "common/util.h"
#include "transport/download.h"
#include "transport/http_client.h"
#include "transport/manifest.h"
#include "transport/reqsign.h"

#define ART_BYTES (10 * 65536 + 1234) /* 11 chunks of 64 KiB, the last one short */
#define CHUNK 65536u

static char tmpdir[256];
static struct ingest_config cfg;
static struct ingest_store *store;
static struct ingest_server *server;
static pthread_t server_thread;
static uint16_t port;
static uint8_t artifact[ART_BYTES];
static struct manifest_spec spec;
static char art_hex[65];
static uint8_t dev_sk[64]; /* the key of "dev-1", the device downloading */

/* The download's signer, as ferryd's OTA agent does it (engine/ota). */
static int sign_as_device(void *arg, const char *method, const char *target,
                          struct reqsign_headers *out)
{
    (void)arg;
    return reqsign_sign(dev_sk, method, target, "dev-1", ferry_realtime_ns() / 1000000000, out);
}

/* Registers dev-1 (class c1) and publishes a manifest of that class naming the artifact, so that
 * the ingest lets dev-1 download it (release.c serves only artifacts a device's manifests name).
 * The file is written directly: the server reads manifests that `release publish` verified. */
static int register_device_and_manifest(void)
{
    char err[256];
    struct ingest_device dev;
    memset(&dev, 0, sizeof(dev));
    ferry_strlcpy(dev.id, "dev-1", sizeof(dev.id));
    ferry_strlcpy(dev.device_class, "c1", sizeof(dev.device_class));
    crypto_sign_keypair(dev.public_key, dev_sk);
    uint8_t kh[32];
    crypto_generichash(kh, 32, dev.public_key, 32, NULL, 0);
    memcpy(dev.key_id, kh, 8);
    if (ingest_store_device_add(store, &dev, err, sizeof(err)) != 0)
        return -1;
    uint8_t rpk[32], rsk[64];
    crypto_sign_keypair(rpk, rsk);
    spec.component = "rootfs";
    spec.version = "2.0.0";
    spec.device_class = "c1";
    spec.serial = 1;
    spec.target_size = sizeof(artifact);
    memcpy(spec.target_sha256, spec.artifacts[0].sha256, 32);
    struct ferry_buf payload = FERRY_BUF_INIT, env = FERRY_BUF_INIT;
    char dir[600], path[700];
    snprintf(dir, sizeof(dir), "%s/releases/manifests/c1", tmpdir);
    snprintf(path, sizeof(path), "%s/rootfs.json", dir);
    int rc = manifest_build_payload(&spec, &payload, err, sizeof(err)) != 0 ||
                     manifest_sign(payload.data, payload.len, rsk, &env) != 0 ||
                     ferry_mkdir_p(dir, 0755) != 0 ||
                     ferry_write_file_atomic(path, env.data, env.len, 0644) != 0
                 ? -1
                 : 0;
    ferry_buf_free(&payload);
    ferry_buf_free(&env);
    return rc;
}

static void *run_server(void *arg)
{
    (void)arg;
    int rc = ingest_server_run(server, false);
    (void)rc;
    return NULL;
}

/* Places `data` as the served artifact file of `spec.artifacts[0]` (bypassing publish, so tests
 * can serve corrupted or truncated bytes under the right name). */
static void serve_bytes(const uint8_t *data, size_t len)
{
    char dir[600], path[700];
    snprintf(dir, sizeof(dir), "%s/releases/artifacts", tmpdir);
    assert_int_equal(ferry_mkdir_p(dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/%s", dir, art_hex);
    assert_int_equal(ferry_write_file_atomic(path, data, len, 0644), 0);
}

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return -1;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-download-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    randombytes_buf(artifact, sizeof(artifact));
    char art[512], err[256];
    snprintf(art, sizeof(art), "%s/art.bin", tmpdir);
    if (ferry_write_file_atomic(art, artifact, sizeof(artifact), 0644) != 0)
        return -1;
    memset(&spec, 0, sizeof(spec));
    if (manifest_spec_add_file(&spec, art, MANIFEST_ARTIFACT_FULL, CHUNK, err, sizeof(err)) != 0)
        return -1;
    ferry_hex_encode(spec.artifacts[0].sha256, 32, art_hex);
    ingest_config_defaults(&cfg);
    if (ingest_config_set(&cfg, "server.listen", "127.0.0.1:0", err, sizeof(err)) != 0 ||
        ingest_config_set(&cfg, "store.lmdb_dir", tmpdir, err, sizeof(err)) != 0 ||
        ingest_config_set(&cfg, "server.workers", "1", err, sizeof(err)) != 0)
        return -1;
    ingest_config_finish(&cfg);
    if (ingest_store_open(&cfg.store, &store, err, sizeof(err)) != 0 ||
        ingest_server_new(&cfg, store, &server, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (ingest_release_register(ingest_server_router(server), ingest_server_ctx(server)) != 0 ||
        register_device_and_manifest() != 0)
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
    manifest_spec_clear(&spec);
    curl_global_cleanup();
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- a download run on a private loop ---- */

struct run {
    struct event_base *base;
    int done, err;
    char reason[128];
    uint32_t stop_after; /* on_chunk returns 1 after this many chunks (0: never) */
    uint32_t chunks_seen;
    uint32_t last_next;
};

static int on_chunk(void *arg, uint32_t index, uint32_t next, uint64_t bytes_done)
{
    (void)index;
    (void)bytes_done;
    struct run *r = arg;
    r->chunks_seen++;
    r->last_next = next;
    return r->stop_after && r->chunks_seen >= r->stop_after;
}

static void on_done(void *arg, int err, const char *reason)
{
    struct run *r = arg;
    r->done = 1;
    r->err = err;
    ferry_strlcpy(r->reason, reason ? reason : "", sizeof(r->reason));
    event_base_loopbreak(r->base);
}

/* Mirror failures seen by a run, and what the destination held at each (D1 checks). */
struct mirror_log {
    const char *dest;
    unsigned count;
    char urls[4][256];
    char reasons[4][160];
    size_t dest_size[4];    /* bytes in the destination when the mirror was given up */
    int dest_consistent[4]; /* and whether they all equal the artifact's */
};

static struct mirror_log *current_mirror_log;

static void on_mirror_failed(void *arg, const char *url, const char *reason)
{
    (void)arg;
    struct mirror_log *ml = current_mirror_log;
    if (ml == NULL || ml->count >= 4)
        return;
    unsigned i = ml->count++;
    ferry_strlcpy(ml->urls[i], url, sizeof(ml->urls[i]));
    ferry_strlcpy(ml->reasons[i], reason, sizeof(ml->reasons[i]));
    uint8_t *data = NULL;
    size_t len = 0;
    if (ferry_read_file(ml->dest, sizeof(artifact), &data, &len) == 0) {
        ml->dest_size[i] = len;
        ml->dest_consistent[i] = memcmp(data, artifact, len) == 0;
        free(data);
    }
    print_message("mirror %s given up: %s (destination holds %zu bytes)\n", url, reason, len);
}

static int run_download_from(const char *url, const char *const *mirrors, size_t n_mirrors,
                             const char *dest, uint32_t first, uint32_t stop_after, uint64_t cap,
                             struct download_stats *st);

static int run_download(const char *url, const char *dest, uint32_t first, uint32_t stop_after,
                        uint64_t cap, struct download_stats *st)
{
    return run_download_from(url, NULL, 0, dest, first, stop_after, cap, st);
}

static int run_download_from(const char *url, const char *const *mirrors, size_t n_mirrors,
                             const char *dest, uint32_t first, uint32_t stop_after, uint64_t cap,
                             struct download_stats *st)
{
    struct run r = {0};
    r.base = event_base_new();
    r.stop_after = stop_after;
    assert_non_null(r.base);
    struct http_client *c = http_client_new(r.base);
    assert_non_null(c);
    struct download_opts o = {0};
    o.url = url;
    o.path = dest;
    o.artifact = &spec.artifacts[0];
    o.first_chunk = first;
    o.max_bytes_per_s = cap;
    o.backoff_min_ms = 20;
    o.backoff_max_ms = 100;
    o.chunk_deadline_ms = 10000;
    o.on_chunk = on_chunk;
    o.on_done = on_done;
    o.arg = &r;
    o.sign = sign_as_device;
    o.mirror_urls = mirrors;
    o.mirror_count = n_mirrors;
    o.on_mirror_failed = on_mirror_failed;
    struct download *d = NULL;
    assert_int_equal(download_start(c, r.base, &o, &d), 0);
    while (!r.done)
        event_base_dispatch(r.base);
    download_get_stats(d, st);
    download_free(d);
    http_client_free(c);
    event_base_free(r.base);
    if (r.err)
        print_message("download ended: %s (%s)\n", download_strerror(r.err), r.reason);
    return r.err;
}

static void artifact_url(char *out, size_t n)
{
    snprintf(out, n, "http://127.0.0.1:%u/v1/artifacts/%s", port, art_hex);
}

static int file_matches(const char *path, const uint8_t *want, size_t len)
{
    uint8_t *data = NULL;
    size_t got = 0;
    if (ferry_read_file(path, len + 1, &data, &got) != 0)
        return 0;
    int ok = got == len && memcmp(data, want, len) == 0;
    free(data);
    return ok;
}

static void test_complete_and_resume(void **state)
{
    (void)state;
    serve_bytes(artifact, sizeof(artifact));
    char url[256], dest[512];
    artifact_url(url, sizeof(url));
    snprintf(dest, sizeof(dest), "%s/dl-1", tmpdir);
    struct download_stats st;
    assert_int_equal(run_download(url, dest, 0, 0, 0, &st), 0);
    assert_true(file_matches(dest, artifact, sizeof(artifact)));
    assert_int_equal(st.requests, 11);
    assert_int_equal(st.bytes_received, sizeof(artifact)); /* nothing fetched twice */

    /* interrupted after 4 chunks (as a kill would), resumed from the persisted next chunk */
    snprintf(dest, sizeof(dest), "%s/dl-2", tmpdir);
    assert_int_equal(run_download(url, dest, 0, 4, 0, &st), DOWNLOAD_E_CANCELED);
    assert_int_equal(st.next_chunk, 4);
    assert_int_equal(run_download(url, dest, 4, 0, 0, &st), 0);
    assert_int_equal(st.requests, 7);
    assert_int_equal(st.bytes_received, sizeof(artifact) - 4 * CHUNK);
    assert_true(file_matches(dest, artifact, sizeof(artifact)));
}

/* A corrupted chunk on the server is never written: the destination keeps zeros there, and the
 * download ends after DOWNLOAD_MAX_BAD_CHUNK attempts. */
static void test_corrupt_chunk_never_written(void **state)
{
    (void)state;
    static uint8_t bad[ART_BYTES];
    memcpy(bad, artifact, sizeof(bad));
    bad[2 * CHUNK + 77] ^= 0xff;
    serve_bytes(bad, sizeof(bad));
    char url[256], dest[512];
    artifact_url(url, sizeof(url));
    snprintf(dest, sizeof(dest), "%s/dl-3", tmpdir);
    struct download_stats st;
    assert_int_equal(run_download(url, dest, 0, 0, 0, &st), DOWNLOAD_E_CHUNK_HASH);
    assert_int_equal(st.next_chunk, 2);
    assert_int_equal(st.bad_chunks, DOWNLOAD_MAX_BAD_CHUNK);
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(ferry_read_file(dest, sizeof(artifact), &data, &len), 0);
    assert_int_equal(len, 2 * CHUNK); /* chunks 0 and 1 only */
    assert_memory_equal(data, artifact, 2 * CHUNK);
    free(data);
    serve_bytes(artifact, sizeof(artifact));
}

static void test_truncated_artifact(void **state)
{
    (void)state;
    serve_bytes(artifact, 5 * CHUNK + 100);
    char url[256], dest[512];
    artifact_url(url, sizeof(url));
    snprintf(dest, sizeof(dest), "%s/dl-4", tmpdir);
    struct download_stats st;
    int rc = run_download(url, dest, 0, 0, 0, &st);
    assert_int_equal(rc, DOWNLOAD_E_TRUNCATED);
    assert_int_equal(st.next_chunk, 5);
    serve_bytes(artifact, sizeof(artifact));
}

/* ---- a server without Range support, on its own thread ---- */

static void norange_cb(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    evbuffer_add(b, artifact, sizeof(artifact));
    evhttp_send_reply(req, 200, "OK", NULL);
}

struct norange {
    struct event_base *base;
    struct evhttp *http;
    uint16_t port;
};

static void *norange_thread(void *arg)
{
    struct norange *n = arg;
    event_base_dispatch(n->base);
    return NULL;
}

static void test_server_without_range_support(void **state)
{
    (void)state;
    struct norange n = {0};
    n.base = event_base_new();
    n.http = evhttp_new(n.base);
    evhttp_set_gencb(n.http, norange_cb, NULL);
    struct evhttp_bound_socket *sock = evhttp_bind_socket_with_handle(n.http, "127.0.0.1", 0);
    assert_non_null(sock);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl), 0);
    n.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, norange_thread, &n), 0);
    char url[256], dest[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/whatever", n.port);
    snprintf(dest, sizeof(dest), "%s/dl-5", tmpdir);
    struct download_stats st;
    /* resumed at chunk 3: the whole body comes, chunks 0-2 are skipped, 3.. written */
    assert_int_equal(run_download(url, dest, 0, 3, 0, &st), DOWNLOAD_E_CANCELED);
    assert_int_equal(run_download(url, dest, 3, 0, 0, &st), 0);
    assert_true(file_matches(dest, artifact, sizeof(artifact)));
    assert_int_equal(st.requests, 1);
    event_base_loopexit(n.base, NULL);
    pthread_join(t, NULL);
    evhttp_free(n.http);
    event_base_free(n.base);
}

/* ---- a server that cuts every other response halfway, on its own thread ---- */

/* A plain socket server (the cut must land inside the body, which evhttp does not do): parses
 * "Range: bytes=a-b", answers 206 with that range and Connection: close; odd requests get only
 * the first half of their body before the connection is closed, as a link that drops. */
struct cutter {
    int lfd;
    uint16_t port;
    int stop;
    unsigned requests;
    uint64_t starts[64]; /* range start of each request */
};

static void *cutter_thread(void *arg)
{
    struct cutter *c = arg;
    while (!c->stop) {
        int fd = accept(c->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        char head[4096];
        size_t got = 0;
        while (got < sizeof(head) - 1) {
            ssize_t r = read(fd, head + got, sizeof(head) - 1 - got);
            if (r <= 0)
                break;
            got += (size_t)r;
            head[got] = 0;
            if (strstr(head, "\r\n\r\n"))
                break;
        }
        head[got] = 0;
        unsigned long long a = 0, b = sizeof(artifact) - 1;
        const char *rg = strcasestr(head, "\r\nRange: bytes=");
        if (rg)
            sscanf(rg + strlen("\r\nRange: bytes="), "%llu-%llu", &a, &b);
        unsigned n = c->requests++;
        if (n < 64)
            c->starts[n] = a;
        if (strstr(head, "GET") != head) { /* the stop connection */
            close(fd);
            continue;
        }
        size_t len = (size_t)(b - a + 1);
        char hdr[256];
        int hl = snprintf(hdr, sizeof(hdr),
                          "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %llu-%llu/%zu\r\n"
                          "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                          a, b, sizeof(artifact), len);
        size_t body = n % 2 == 0 ? len / 2 : len;
        if (write(fd, hdr, (size_t)hl) == hl && write(fd, artifact + a, body) == (ssize_t)body) {
            /* sent */
        }
        shutdown(fd, SHUT_WR);
        close(fd);
    }
    return NULL;
}

static void test_cut_resumes_inside_the_chunk(void **state)
{
    (void)state;
    struct cutter c = {0};
    c.lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c.lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(c.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(c.lfd, 16), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(c.lfd, (struct sockaddr *)&sa, &sl), 0);
    c.port = ntohs(sa.sin_port);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cutter_thread, &c), 0);
    char url[256], dest[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/art", c.port);
    snprintf(dest, sizeof(dest), "%s/dl-7", tmpdir);
    struct download_stats st;
    assert_int_equal(run_download(url, dest, 0, 0, 0, &st), 0);
    assert_true(file_matches(dest, artifact, sizeof(artifact)));
    /* every chunk took two requests, the second asking for the second half only */
    assert_int_equal(st.requests, 22);
    assert_int_equal(c.starts[0], 0);
    assert_int_equal(c.starts[1], CHUNK / 2);
    assert_int_equal(c.starts[2], CHUNK);
    assert_int_equal(c.starts[21], 10 * CHUNK + 1234 / 2);
    assert_int_equal(st.bytes_received, sizeof(artifact)); /* no byte fetched twice */
    c.stop = 1;
    int wake = socket(AF_INET, SOCK_STREAM, 0); /* unblocks accept() */
    assert_int_equal(connect(wake, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(wake);
    pthread_join(t, NULL);
    close(c.lfd);
}

static void test_bandwidth_cap(void **state)
{
    (void)state;
    serve_bytes(artifact, sizeof(artifact));
    char url[256], dest[512];
    artifact_url(url, sizeof(url));
    snprintf(dest, sizeof(dest), "%s/dl-6", tmpdir);
    struct download_stats st;
    long long t0 = ferry_monotonic_ms();
    assert_int_equal(run_download(url, dest, 0, 0, 400 * 1024, &st), 0);
    long long ms = ferry_monotonic_ms() - t0;
    /* 11 chunks, 10 waits: at 400 KiB/s the last request cannot start before ~1.6 s */
    print_message("%d bytes at a 400 KiB/s cap took %lld ms\n", ART_BYTES, ms);
    assert_true(ms >= 1400);
    assert_true(file_matches(dest, artifact, sizeof(artifact)));
}

/* ---- a mirror with ranges that serves given bytes and records what it was sent ---- */

struct mirror_srv {
    struct event_base *base;
    struct evhttp *http;
    uint16_t port;
    const uint8_t *bytes;
    unsigned requests, with_range, with_device_headers, with_if_range;
};

static void mirror_cb(struct evhttp_request *req, void *arg)
{
    struct mirror_srv *m = arg;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    m->requests++;
    for (struct evkeyval *h = in->tqh_first; h; h = h->next.tqe_next)
        if (strncasecmp(h->key, "X-Ferry-", 8) == 0)
            m->with_device_headers++;
    if (evhttp_find_header(in, "If-Range"))
        m->with_if_range++;
    const char *range = evhttp_find_header(in, "Range");
    unsigned long long a = 0, b = 0;
    if (!range || sscanf(range, "bytes=%llu-%llu", &a, &b) != 2 || b < a || b >= sizeof(artifact)) {
        evhttp_send_reply(req, 400, "Bad Range", NULL);
        return;
    }
    m->with_range++;
    char cr[96];
    snprintf(cr, sizeof(cr), "bytes %llu-%llu/%zu", a, b, sizeof(artifact));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Range", cr);
    evbuffer_add(evhttp_request_get_output_buffer(req), m->bytes + a, (size_t)(b - a + 1));
    evhttp_send_reply(req, 206, "Partial Content", NULL);
}

static uint16_t listen_evhttp(struct event_base *base, struct evhttp *http)
{
    struct evhttp_bound_socket *sock = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    assert_non_null(sock);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl), 0);
    (void)base;
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static uint16_t closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd); /* bound, never listened, closed: connections are refused */
    return ntohs(sa.sin_port);
}

/* Mirrors in order: a closed port, a server answering 200 to every Range, a server whose chunk 6
 * is corrupted; then the ingest. Each mirror is given up once with its reason, chunks 0-5 come
 * from the corrupting mirror, its bad chunk is never written, the ingest sends the rest. */
static void test_mirrors_fall_back_to_the_ingest(void **state)
{
    (void)state;
    serve_bytes(artifact, sizeof(artifact));
    static uint8_t bad[ART_BYTES];
    memcpy(bad, artifact, sizeof(bad));
    bad[6 * CHUNK + 5] ^= 0x01;

    struct event_base *base = event_base_new();
    struct norange n = {0};
    n.base = base;
    n.http = evhttp_new(base);
    evhttp_set_gencb(n.http, norange_cb, NULL);
    uint16_t norange_port = listen_evhttp(base, n.http);
    struct mirror_srv m = {0};
    m.http = evhttp_new(base);
    m.bytes = bad;
    evhttp_set_gencb(m.http, mirror_cb, &m);
    m.port = listen_evhttp(base, m.http);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, norange_thread, &n), 0);

    char url[256], dest[512], mirror_urls[3][256];
    artifact_url(url, sizeof(url));
    snprintf(dest, sizeof(dest), "%s/dl-8", tmpdir);
    snprintf(mirror_urls[0], 256, "http://127.0.0.1:%u/ferry/%s", closed_port(), art_hex);
    snprintf(mirror_urls[1], 256, "http://127.0.0.1:%u/ferry/%s", norange_port, art_hex);
    snprintf(mirror_urls[2], 256, "http://127.0.0.1:%u/ferry/%s", m.port, art_hex);
    const char *mirrors[3] = {mirror_urls[0], mirror_urls[1], mirror_urls[2]};
    struct mirror_log ml = {.dest = dest};
    current_mirror_log = &ml;
    struct download_stats st;
    assert_int_equal(run_download_from(url, mirrors, 3, dest, 0, 0, 0, &st), 0);
    current_mirror_log = NULL;
    assert_true(file_matches(dest, artifact, sizeof(artifact)));

    assert_int_equal(ml.count, 3);
    assert_int_equal(st.mirror_failures, 3);
    assert_int_equal(st.source, 3); /* finished on the ingest */
    for (unsigned i = 0; i < 3; i++)
        assert_string_equal(ml.urls[i], mirror_urls[i]);
    assert_non_null(strstr(ml.reasons[0], "connect"));
    assert_non_null(strstr(ml.reasons[1], "200 instead of 206"));
    assert_non_null(strstr(ml.reasons[2], "chunk 6 failed its SHA-256"));
    /* D1: when the bad chunk was refused, the file held chunks 0-5 only, all correct */
    assert_int_equal(ml.dest_size[2], 6 * CHUNK);
    assert_true(ml.dest_consistent[2]);
    assert_int_equal(st.mirror_chunks, 6);
    assert_int_equal(st.mirror_bytes, 6 * CHUNK);
    assert_int_equal(st.bad_chunks, 1);
    /* plain ranged GETs: nothing of the device's identity, no If-Range a static server lacks */
    assert_int_equal(m.requests, 7);
    assert_int_equal(m.with_range, 7);
    assert_int_equal(m.with_device_headers, 0);
    assert_int_equal(m.with_if_range, 0);

    event_base_loopexit(base, NULL);
    pthread_join(t, NULL);
    evhttp_free(n.http);
    evhttp_free(m.http);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete_and_resume),
        cmocka_unit_test(test_corrupt_chunk_never_written),
        cmocka_unit_test(test_truncated_artifact),
        cmocka_unit_test(test_server_without_range_support),
        cmocka_unit_test(test_cut_resumes_inside_the_chunk),
        cmocka_unit_test(test_bandwidth_cap),
        cmocka_unit_test(test_mirrors_fall_back_to_the_ingest),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
