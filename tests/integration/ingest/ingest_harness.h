/*
 * ingest_harness.h - what the ingest integration tests, fuzz target and benchmark share: start
 * and stop a real ferry-ingest process, talk HTTP to it with libcurl, make device keys and signed
 * batches with the real codec. Header-only (static functions) so each test stays one file.
 */
#ifndef FERRY_TESTS_INGEST_HARNESS_H
#define FERRY_TESTS_INGEST_HARNESS_H

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/util.h"
#include "transport/batch.h"

struct ih_server {
    pid_t pid;
    unsigned port;
    char dir[128];
    char port_file[192];
};

/* Starts `bin` with the given extra arguments (NULL-terminated) plus --server.listen
 * 127.0.0.1:0 and a port file in `dir`; waits up to 20 s for the port. Returns 0 or -1. */
__attribute__((unused)) static int ih_start(struct ih_server *s, const char *bin, const char *dir,
                                            const char *const *extra)
{
    memset(s, 0, sizeof(*s));
    ferry_strlcpy(s->dir, dir, sizeof(s->dir));
    snprintf(s->port_file, sizeof(s->port_file), "%s/port.%d", dir, (int)time(NULL) ^ rand());
    unlink(s->port_file);
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--server.listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--server.port_file";
    argv[n++] = s->port_file;
    argv[n++] = "--log.level";
    argv[n++] = "warn";
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t parent = getpid();
    s->pid = fork();
    if (s->pid < 0)
        return -1;
    if (s->pid == 0) {
        /* The server dies with the test, whatever way the test ends. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 2000; i++) {
        uint8_t *data = NULL;
        size_t len = 0;
        if (ferry_read_file(s->port_file, 64, &data, &len) == 0) {
            uint64_t port = 0;
            data[strcspn((char *)data, "\n")] = '\0';
            int ok = ferry_parse_u64((char *)data, 65535, &port) == 0;
            free(data);
            if (ok) {
                s->port = (unsigned)port;
                return 0;
            }
        }
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            return -1;
        }
        usleep(10000);
    }
    return -1;
}

/* SIGTERM, then SIGKILL after 10 s. Returns the exit status (or -1). */
__attribute__((unused)) static int ih_stop(struct ih_server *s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    int status = -1;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
    return -1;
}

struct ih_resp {
    long status;
    struct ferry_buf body;
    char retry_after[32];
    char content_type[64];
    char www_authenticate[96];
    char ferry_time[32];
};

/* The "Authorization: Bearer <token>" line ih_http sends ("" = none): tests set it once with
 * ih_set_token() after making an API token (ferry-ingest token create). */
static char ih_auth_line[160];

__attribute__((unused)) static void ih_set_token(const char *token)
{
    if (token == NULL || token[0] == '\0')
        ih_auth_line[0] = '\0';
    else
        snprintf(ih_auth_line, sizeof(ih_auth_line), "Authorization: Bearer %s", token);
}

static size_t ih_write_cb(char *p, size_t size, size_t n, void *arg)
{
    struct ferry_buf *b = arg;
    return ferry_buf_append(b, p, size * n) == 0 ? size * n : 0;
}

static size_t ih_header_cb(char *p, size_t size, size_t n, void *arg)
{
    struct ih_resp *r = arg;
    size_t len = size * n;
    if (len > 13 && strncasecmp(p, "Retry-After: ", 13) == 0)
        snprintf(r->retry_after, sizeof(r->retry_after), "%.*s", (int)strcspn(p + 13, "\r\n"),
                 p + 13);
    if (len > 14 && strncasecmp(p, "Content-Type: ", 14) == 0)
        snprintf(r->content_type, sizeof(r->content_type), "%.*s", (int)strcspn(p + 14, "\r\n"),
                 p + 14);
    if (len > 18 && strncasecmp(p, "WWW-Authenticate: ", 18) == 0)
        snprintf(r->www_authenticate, sizeof(r->www_authenticate), "%.*s",
                 (int)strcspn(p + 18, "\r\n"), p + 18);
    if (len > 14 && strncasecmp(p, "X-Ferry-Time: ", 14) == 0)
        snprintf(r->ferry_time, sizeof(r->ferry_time), "%.*s", (int)strcspn(p + 14, "\r\n"),
                 p + 14);
    return len;
}

/* One HTTP request with extra header lines (NULL-terminated, may be NULL) and no
 * Authorization unless one of them is; body NULL for GET. The response body is NUL-terminated. */
__attribute__((unused)) static int ih_http_h(unsigned port, const char *method, const char *path,
                                             const void *body, size_t len,
                                             const char *const *headers, struct ih_resp *r)
{
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    if (c == NULL)
        return -1;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ih_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, ih_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    h = curl_slist_append(h, "Expect:");
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        h = curl_slist_append(h, headers[i]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (ferry_buf_append_u8(&r->body, 0) != 0)
        return -1;
    r->body.len--;
    return rc == CURLE_OK ? 0 : -1;
}

/* One HTTP request as the test's operator: with the token set by ih_set_token (if any). */
__attribute__((unused)) static int ih_http(unsigned port, const char *method, const char *path,
                                           const void *body, size_t len, struct ih_resp *r)
{
    const char *headers[] = {ih_auth_line, NULL};
    return ih_http_h(port, method, path, body, len, ih_auth_line[0] ? headers : NULL, r);
}

__attribute__((unused)) static void ih_resp_free(struct ih_resp *r)
{
    ferry_buf_free(&r->body);
}

struct ih_device {
    uint8_t pk[32];
    uint8_t sk[64];
    char pk_hex[65];
    char id[65];
};

__attribute__((unused)) static void ih_device_new(struct ih_device *d)
{
    crypto_sign_keypair(d->pk, d->sk);
    ferry_hex_encode(d->pk, 32, d->pk_hex);
    d->id[0] = '\0';
}

/* Adds `n` records seq first..first+n-1 to a builder and finishes the batch into `out`, with
 * build/send time `now_ns`. Returns 0 or a batch error. */
__attribute__((unused)) static int ih_batch_with(struct batch_builder *b, enum record_stream stream,
                                                 uint64_t first, size_t n, int64_t now_ns,
                                                 int64_t ts0_ns, struct ferry_buf *out)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char core[8];
        snprintf(core, sizeof(core), "%zu", i % 4);
        struct record_tag t = {.key = {"core", 4}, .value = {core, strlen(core)}};
        struct record_field f[2] = {
            {.key = {"usage", 5}, .type = RECORD_FIELD_FLOAT, .v.f = (double)(i % 100) / 4},
            {.key = {"temp_mc", 7}, .type = RECORD_FIELD_INT, .v.i = 41000 + (int64_t)(i % 7)},
        };
        struct record r = {.stream = stream,
                           .seq = first + i,
                           .ts_ns = ts0_ns + (int64_t)i * 1000000000,
                           .name = {"cpu", 3},
                           .tags = &t,
                           .n_tags = 1,
                           .fields = f,
                           .n_fields = 2};
        if (stream == RECORD_LOG) {
            r.name = (struct record_str){"app", 3};
            r.level = RECORD_LEVEL_WARN;
            r.message = (struct record_str){"frame dropped", 13};
            r.n_tags = 0;
            r.n_fields = 0;
        }
        rc = batch_builder_add(b, &r);
    }
    if (rc == 0)
        rc = batch_builder_finish(b, now_ns, out);
    return rc;
}

/* Builds a signed batch of `n` records seq first..first+n-1 of `stream` (metrics: cpu usage and
 * temperature per core; logs: a warning). Returns 0 or a batch error. */
__attribute__((unused)) static int ih_batch(const struct ih_device *d, enum record_stream stream,
                                            uint64_t first, size_t n, int64_t now_ns,
                                            int64_t ts0_ns, bool compress, struct ferry_buf *out)
{
    struct batch_builder_config cfg = {
        .device_id = d->id, .secret_key = d->sk, .no_compression = !compress, .zstd_level = 1};
    struct batch_builder *b = NULL;
    int rc = batch_builder_new(&cfg, &b);
    if (rc != 0)
        return rc;
    rc = ih_batch_with(b, stream, first, n, now_ns, ts0_ns, out);
    batch_builder_free(b);
    return rc;
}

#endif
