/*
 * test_ferryd.c - ferryd as a real process: its HTTP, UDP and Unix inputs, its status pages,
 * its signals and its configuration errors. Records are checked by reading ferryd's journal
 * with the journal API (read-only, beside the running daemon, or after it was killed).
 *
 * Usage: test_ferryd PATH_TO_FERRYD PATH_TO_FERRY
 * Every daemon binds port 0 and publishes its addresses in DATA_DIR/ferryd.addr; every child is
 * killed in the test's teardown, also when the test failed.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"
#include "journal/journal.h"
#include "transport/record.h"

static const char *ferryd_bin;
static const char *ferry_bin;
static const char *ingest_bin; /* optional third argument: enables the tests with an ingest */

struct daemon {
    pid_t pid;
    char dir[64];
    char cfg[128];
    char data[128];
    char log[128];
    char http[80]; /* "127.0.0.1:port" */
    char udp[80];
    char unix_path[200];
    const char *env[4]; /* "NAME=value" set in the child, NULL-terminated */
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void write_config(struct daemon *d, const char *extra)
{
    char text[4096];
    snprintf(text, sizeof text,
             "[device]\ndata_dir = %s\n"
             "[listen]\nhttp = 127.0.0.1:0\nudp = 127.0.0.1:0\nunix = ferryd.sock\n"
             "[sync]\nnetlink = false\n"
             "[collect.system]\nenabled = false\n[collect.jetson]\nenabled = false\n"
             "%s",
             d->data, extra ? extra : "");
    write_text(d->cfg, text);
}

/* Reads DATA_DIR/ferryd.addr; returns 0 when it has the http line. */
static int read_addr_file(struct daemon *d)
{
    char path[200];
    snprintf(path, sizeof path, "%s/ferryd.addr", d->data);
    uint8_t *text;
    size_t len;
    if (ferry_read_file(path, 4096, &text, &len) != 0)
        return -1;
    int found = -1;
    for (char *line = strtok((char *)text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "http=", 5) == 0 && line[5])
            snprintf(d->http, sizeof d->http, "%s", line + 5), found = 0;
        else if (strncmp(line, "udp=", 4) == 0)
            snprintf(d->udp, sizeof d->udp, "%s", line + 4);
        else if (strncmp(line, "unix=", 5) == 0)
            snprintf(d->unix_path, sizeof d->unix_path, "%s", line + 5);
    }
    free(text);
    return found;
}

static void daemon_init(struct daemon *d)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "/tmp/ferryd-it-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->cfg, sizeof d->cfg, "%s/ferryd.ini", d->dir);
    snprintf(d->data, sizeof d->data, "%s/data", d->dir);
    snprintf(d->log, sizeof d->log, "%s/ferryd.log", d->dir);
}

/* Runs ferryd in place of this process. In a cross build tested under qemu-user without
 * binfmt_misc (scripts/cross-arm64.sh), FERRY_TEST_EXEC_PREFIX names the emulator that runs the
 * aarch64 programs this test starts; the ingest, a build-machine program, runs directly. */
static void exec_ferry_program(const char *const *args)
{
    const char *pre = getenv("FERRY_TEST_EXEC_PREFIX");
    if (pre != NULL && pre[0] != '\0') {
        const char *argv2[16];
        size_t n = 0;
        argv2[n++] = pre;
        for (size_t i = 0; args[i] != NULL && n + 1 < sizeof(argv2) / sizeof(argv2[0]); i++)
            argv2[n++] = args[i];
        argv2[n] = NULL;
        execv(pre, (char *const *)argv2);
        return;
    }
    execv(args[0], (char *const *)args);
}

/* Starts ferryd with d->cfg; waits (10 s at most) for its address file. */
static void daemon_start(struct daemon *d)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        for (int i = 0; i < 4 && d->env[i]; i++)
            putenv((char *)d->env[i]);
        const char *argv[] = {ferryd_bin, "--config", d->cfg, NULL};
        exec_ferry_program(argv);
        _exit(127);
    }
    d->pid = pid;
    for (int i = 0; i < 1000; i++) {
        if (read_addr_file(d) == 0)
            return;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            d->pid = 0;
            fail_msg("ferryd exited during startup (status %d); see %s", status, d->log);
        }
        sleep_ms(10);
    }
    fail_msg("ferryd did not write its address file within 10 s; see %s", d->log);
}

/* Sends `sig` and waits for the exit (10 s, then SIGKILL). Returns the wait status. */
static int daemon_stop(struct daemon *d, int sig)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, sig);
    int status = -1;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            return status;
        }
        sleep_ms(10);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &status, 0);
    d->pid = 0;
    return -1;
}

static int teardown_daemon(void **state)
{
    struct daemon *d = *state;
    if (!d)
        return 0;
    if (d->pid > 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d->dir);
    int rc = system(cmd);
    free(d);
    return rc == 0 ? 0 : -1;
}

static int setup_daemon(void **state)
{
    struct daemon *d = malloc(sizeof *d);
    daemon_init(d);
    *state = d;
    return 0;
}

/* ---- HTTP -------------------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    return ferry_buf_append(arg, p, size * n) == 0 ? size * n : 0;
}

static const char *extra_header; /* one more request header for the next http() call */

/* One request; returns the status; the body (NUL-terminated) goes to resp. */
static long http(const struct daemon *d, const char *method, const char *path, const char *body,
                 size_t body_len, struct ferry_buf *resp)
{
    char url[256];
    snprintf(url, sizeof url, "http://%s%s", d->http, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    struct curl_slist *headers = NULL;
    if (extra_header) {
        headers = curl_slist_append(NULL, extra_header);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        extra_header = NULL;
    }
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    CURLcode cc = curl_easy_perform(c);
    long status = -1;
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else
        fprintf(stderr, "curl %s: %s\n", url, curl_easy_strerror(cc));
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    assert_int_equal(ferry_buf_append_u8(resp, 0), 0);
    resp->len--;
    return status;
}

/* ---- Journal reading --------------------------------------------------------------------- */

struct rec {
    char name[64];
    char message[256];
    int64_t ts_ns;
    uint8_t level;
    char fields[512]; /* "k=v;k=v" for string fields */
};

struct recs {
    size_t n;
    struct rec r[256];
};

static int collect(void *arg, const struct journal_entry *e)
{
    struct recs *c = arg;
    struct record_scratch *scratch = malloc(sizeof *scratch);
    struct record r;
    if (record_unpack(e->payload, e->len, scratch, &r, NULL, 0) == 0 && c->n < 256) {
        struct rec *o = &c->r[c->n];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%.*s", (int)r.name.len, r.name.ptr);
        snprintf(o->message, sizeof o->message, "%.*s", (int)r.message.len, r.message.ptr);
        o->ts_ns = r.ts_ns;
        o->level = r.level;
        size_t used = 0;
        for (size_t i = 0; i < r.n_fields && used < sizeof o->fields; i++) {
            const struct record_field *f = &r.fields[i];
            if (f->type == RECORD_FIELD_STRING)
                used += (size_t)snprintf(o->fields + used, sizeof o->fields - used, "%.*s=%.*s;",
                                         (int)f->key.len, f->key.ptr, (int)f->v.s.len, f->v.s.ptr);
        }
    }
    c->n++;
    free(scratch);
    return 0;
}

/* Reads a stream of the daemon's journal read-only (works beside the running daemon). */
static void read_stream(const struct daemon *d, enum record_stream stream, struct recs *out,
                        uint64_t *unsent)
{
    struct journal_config jc;
    journal_config_init(&jc);
    jc.read_only = true;
    struct journal *j;
    char err[256];
    int rc = journal_open(d->data, &jc, &j, NULL, err, sizeof err);
    if (rc != 0)
        fail_msg("journal_open(%s, read-only): %s: %s", d->data, journal_strerror(rc), err);
    memset(out, 0, sizeof *out);
    assert_int_equal(journal_read(j, stream, NULL, collect, out, NULL), 0);
    if (unsent) {
        struct journal_stats st;
        assert_int_equal(journal_stats(j, &st), 0);
        *unsent = st.stream[stream].unsent_records;
    }
    assert_int_equal(journal_close(j), 0);
}

static const struct rec *find_event(const struct recs *r, const char *name)
{
    for (size_t i = 0; i < r->n && i < 256; i++)
        if (strcmp(r->r[i].name, name) == 0)
            return &r->r[i];
    return NULL;
}

/* Polls the journal until `stream` has at least `want` records (5 s at most). */
static void wait_records(const struct daemon *d, enum record_stream stream, size_t want,
                         struct recs *out)
{
    for (int i = 0; i < 500; i++) {
        read_stream(d, stream, out, NULL);
        if (out->n >= want)
            return;
        sleep_ms(10);
    }
    fail_msg("stream %s has %zu records, expected %zu", record_stream_name(stream), out->n, want);
}

static const struct rec *wait_event(const struct daemon *d, const char *name, struct recs *out)
{
    for (int i = 0; i < 500; i++) {
        read_stream(d, RECORD_EVENT, out, NULL);
        const struct rec *e = find_event(out, name);
        if (e)
            return e;
        sleep_ms(10);
    }
    fail_msg("no event %s in the journal", name);
    return NULL;
}

/* ---- Tests ------------------------------------------------------------------------------- */

/* Every 204 from /write means committed: SIGKILL right after the last answer loses nothing. */
static void test_write_204_means_durable_even_after_sigkill(void **state)
{
    struct daemon *d = *state;
    write_config(d, NULL);
    daemon_start(d);
    const int requests = 20, per_request = 500;
    struct ferry_buf body = FERRY_BUF_INIT;
    for (int r = 0; r < requests; r++) {
        body.len = 0;
        for (int i = 0; i < per_request; i++)
            assert_int_equal(ferry_buf_printf(&body, "gpu,host=nano,req=%d temp=%d.5,idx=%di\n", r,
                                              i, r * per_request + i),
                             0);
        struct ferry_buf resp = FERRY_BUF_INIT;
        assert_int_equal(http(d, "POST", "/write", (const char *)body.data, body.len, &resp), 204);
        ferry_buf_free(&resp);
    }
    ferry_buf_free(&body);
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
    struct recs recs;
    uint64_t unsent = 0;
    read_stream(d, RECORD_METRIC, &recs, &unsent);
    assert_int_equal(recs.n, requests * per_request);
    assert_int_equal(unsent, requests * per_request);
    assert_string_equal(recs.r[0].name, "gpu");
}

static void test_partial_bad_write_is_400_with_line_and_valid_lines_written(void **state)
{
    struct daemon *d = *state;
    write_config(d, NULL);
    daemon_start(d);
    const char *body = "good1 v=1\n"
                       "good2 v=2\n"
                       "bad v=oops\n"
                       "good3 v=3\n"
                       "bad2\n";
    struct ferry_buf resp = FERRY_BUF_INIT;
    assert_int_equal(http(d, "POST", "/write", body, strlen(body), &resp), 400);
    json_t *j = json_loads((const char *)resp.data, 0, NULL);
    assert_non_null(j);
    const char *err = json_string_value(json_object_get(j, "error"));
    assert_non_null(err);
    assert_non_null(strstr(err, "line 3: "));
    assert_non_null(strstr(err, "line 5: "));
    assert_non_null(strstr(err, "2 line(s) rejected, 3 written"));
    json_decref(j);
    ferry_buf_free(&resp);
    /* The 400 came after the valid lines were durable: they are readable right away. */
    struct recs recs;
    read_stream(d, RECORD_METRIC, &recs, NULL);
    assert_int_equal(recs.n, 3);
    assert_string_equal(recs.r[0].name, "good1");
    assert_string_equal(recs.r[1].name, "good2");
    assert_string_equal(recs.r[2].name, "good3");
}

static void test_precision_parameter(void **state)
{
    struct daemon *d = *state;
    write_config(d, NULL);
    daemon_start(d);
    struct ferry_buf resp = FERRY_BUF_INIT;
    const char *ms = "p v=1 1700000000123\n";
    assert_int_equal(http(d, "POST", "/write?precision=ms", ms, strlen(ms), &resp), 204);
    const char *s = "p v=2 1700000000\n";
    assert_int_equal(http(d, "POST", "/write?db=x&precision=s", s, strlen(s), &resp), 204);
    const char *u = "p v=3 1700000000000001\n";
    assert_int_equal(http(d, "POST", "/write?precision=u", u, strlen(u), &resp), 204);
    const char *v2 = "p v=4 1700000000\n";
    assert_int_equal(
        http(d, "POST", "/api/v2/write?org=o&bucket=b&precision=s", v2, strlen(v2), &resp), 204);
    resp.len = 0;
    assert_int_equal(http(d, "POST", "/write?precision=fortnight", s, strlen(s), &resp), 400);
    assert_non_null(strstr((const char *)resp.data, "precision"));
    ferry_buf_free(&resp);
    struct recs recs;
    read_stream(d, RECORD_METRIC, &recs, NULL);
    assert_int_equal(recs.n, 4);
    assert_true(recs.r[0].ts_ns == 1700000000123LL * 1000000);
    assert_true(recs.r[1].ts_ns == 1700000000LL * 1000000000);
    assert_true(recs.r[2].ts_ns == 1700000000000001LL * 1000);
    assert_true(recs.r[3].ts_ns == 1700000000LL * 1000000000);
}

/* gzip-compresses `in` (what Telegraf sends by default). */
static void gzip_text(const char *in, struct ferry_buf *out)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t bound = deflateBound(&zs, strlen(in));
    assert_int_equal(ferry_buf_reserve(out, bound), 0);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)strlen(in);
    zs.next_out = out->data;
    zs.avail_out = (uInt)bound;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    out->len = bound - zs.avail_out;
    deflateEnd(&zs);
}

static void test_gzip_write_body(void **state)
{
    struct daemon *d = *state;
    write_config(d, "[listen]\nhttp_max_body = 64KiB\n");
    daemon_start(d);
    struct ferry_buf gz = FERRY_BUF_INIT, resp = FERRY_BUF_INIT;
    gzip_text("zipped,host=a v=1\nzipped,host=b v=2\n", &gz);
    extra_header = "Content-Encoding: gzip";
    assert_int_equal(http(d, "POST", "/write", (const char *)gz.data, gz.len, &resp), 204);
    /* Not gzip at all */
    extra_header = "Content-Encoding: gzip";
    assert_int_equal(http(d, "POST", "/write", "plain v=1\n", 10, &resp), 400);
    /* A small body that inflates past http_max_body: 413, nothing written */
    char *big = malloc(200 * 1024 + 1);
    for (size_t i = 0; i < 200 * 1024; i += 10)
        memcpy(big + i, "bomb v=1\n\n", 10);
    big[200 * 1024] = 0;
    gz.len = 0;
    gzip_text(big, &gz);
    free(big);
    assert_true(gz.len < 64 * 1024);
    extra_header = "Content-Encoding: gzip";
    assert_int_equal(http(d, "POST", "/write", (const char *)gz.data, gz.len, &resp), 413);
    extra_header = "Content-Encoding: br";
    assert_int_equal(http(d, "POST", "/write", "x v=1\n", 6, &resp), 415);
    ferry_buf_free(&gz);
    ferry_buf_free(&resp);
    struct recs recs;
    read_stream(d, RECORD_METRIC, &recs, NULL);
    assert_int_equal(recs.n, 2);
    assert_string_equal(recs.r[1].name, "zipped");
}

static void test_logs_plain_and_json_lines(void **state)
{
    struct daemon *d = *state;
    write_config(d, NULL);
    daemon_start(d);
    const char *body = "disk almost full\n"
                       "{\"level\":\"error\",\"source\":\"camera\",\"message\":\"no frames\","
                       "\"fields\":{\"device\":\"/dev/video0\"}}\n";
    struct ferry_buf resp = FERRY_BUF_INIT;
    assert_int_equal(http(d, "POST", "/logs?level=warn&source=storage", body, strlen(body), &resp),
                     204);
    resp.len = 0;
    const char *bad = "{\"level\":\"shouting\"}\n";
    assert_int_equal(http(d, "POST", "/logs", bad, strlen(bad), &resp), 400);
    assert_non_null(strstr((const char *)resp.data, "line 1"));
    ferry_buf_free(&resp);
    struct recs recs;
    read_stream(d, RECORD_LOG, &recs, NULL);
    assert_int_equal(recs.n, 2);
    assert_string_equal(recs.r[0].name, "storage");
    assert_string_equal(recs.r[0].message, "disk almost full");
    assert_int_equal(recs.r[0].level, RECORD_LEVEL_WARN);
    assert_string_equal(recs.r[1].name, "camera");
    assert_string_equal(recs.r[1].message, "no frames");
    assert_int_equal(recs.r[1].level, RECORD_LEVEL_ERROR);
    assert_non_null(strstr(recs.r[1].fields, "device=/dev/video0"));
}

/* Hostile bytes at the edge (docs/wire-format.md "Text encoding"): lines holding invalid UTF-8
 * (a stray byte, an overlong, a surrogate) or a NUL are refused over HTTP, UDP and the log input
 * with their line and column, the well-formed lines around them are written, the 400 body is
 * valid JSON, and ferryd's own log (which quotes bad lines) holds no raw control or invalid
 * byte. */
static void test_invalid_utf8_and_nul_are_refused_with_line_and_column(void **state)
{
    struct daemon *d = *state;
    write_config(d, NULL);
    daemon_start(d);
    static const char body[] = "ok1 v=1\n"
                               "m,host=a\xff v=1\n"
                               "m\xc0\xaf v=1\n"
                               "m v=\"\xed\xa0\x80\"\n"
                               "m,t=a\0b v=1\n"
                               "esc\x1b[31m v=1\n";
    struct ferry_buf resp = FERRY_BUF_INIT;
    assert_int_equal(http(d, "POST", "/write", body, sizeof body - 1, &resp), 400);
    json_error_t jerr;
    json_t *j = json_loadb((const char *)resp.data, resp.len, 0, &jerr);
    if (!j)
        fail_msg("400 body is not valid JSON: %s", jerr.text);
    const char *err = json_string_value(json_object_get(j, "error"));
    assert_non_null(err);
    assert_non_null(strstr(err, "line 2: invalid UTF-8 (\\xff) (column 9)"));
    assert_non_null(strstr(err, "line 3: invalid UTF-8 (\\xc0) (column 2)"));
    assert_non_null(strstr(err, "line 4: invalid UTF-8 (\\xed) (column 6)"));
    assert_non_null(strstr(err, "line 5: NUL byte (\\x00) (column 6)"));
    assert_non_null(strstr(err, "4 line(s) rejected, 2 written"));
    json_decref(j);
    resp.len = 0;
    static const char logs[] = "fine\nbad \xfe here\n";
    assert_int_equal(http(d, "POST", "/logs", logs, sizeof logs - 1, &resp), 400);
    assert_non_null(strstr((const char *)resp.data, "line 2: invalid UTF-8 (\\\\xfe) (column 5)"));
    resp.len = 0;
    assert_int_equal(http(d, "POST", "/logs?source=%ff", "x\n", 2, &resp), 400);
    ferry_buf_free(&resp);
    struct recs recs;
    read_stream(d, RECORD_METRIC, &recs, NULL);
    assert_int_equal(recs.n, 2);
    assert_string_equal(recs.r[0].name, "ok1");
    assert_string_equal(recs.r[1].name, "esc\x1b[31m"); /* valid UTF-8: escaped on output */
    /* UDP: the bad line is logged, escaped */
    char host[sizeof d->udp];
    memcpy(host, d->udp, sizeof host);
    char *colon = strrchr(host, ':');
    assert_non_null(colon);
    *colon = 0;
    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    assert_int_equal(getaddrinfo(host, colon + 1, &hints, &res), 0);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    static const char dgram[] = "udp_ok v=1\nudp\x1b]0;x\x07 v=\x1b\xff\n";
    assert_int_equal(sendto(fd, dgram, sizeof dgram - 1, 0, res->ai_addr, res->ai_addrlen),
                     (ssize_t)(sizeof dgram - 1));
    close(fd);
    freeaddrinfo(res);
    wait_records(d, RECORD_METRIC, 3, &recs);
    uint8_t *log = NULL;
    size_t log_len = 0;
    for (int i = 0; i < 200; i++) {
        free(log);
        log = NULL;
        assert_int_equal(ferry_read_file(d->log, 1 << 20, &log, &log_len), 0);
        if (strstr((const char *)log, "bad line"))
            break;
        sleep_ms(10);
    }
    assert_non_null(strstr((const char *)log, "bad line"));
    assert_non_null(strstr((const char *)log, "\\xff"));
    assert_true(ferry_utf8_valid(log, log_len));
    for (size_t i = 0; i < log_len; i++)
        assert_true(log[i] == '\n' || (log[i] >= 0x20 && log[i] != 0x7f));
    free(log);
}

static void test_udp_line_protocol(void **state)
{
    struct daemon *d = *state;
    write_config(d, NULL);
    daemon_start(d);
    char host[sizeof d->udp];
    memcpy(host, d->udp, sizeof host);
    char *colon = strrchr(host, ':');
    assert_non_null(colon);
    *colon = 0;
    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    assert_int_equal(getaddrinfo(host, colon + 1, &hints, &res), 0);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    const char *dgram = "udp_metric,src=test v=1\nudp_metric,src=test v=2\nnot valid\n";
    assert_int_equal(sendto(fd, dgram, strlen(dgram), 0, res->ai_addr, res->ai_addrlen),
                     (ssize_t)strlen(dgram));
    close(fd);
    freeaddrinfo(res);
    struct recs recs;
    wait_records(d, RECORD_METRIC, 2, &recs);
    assert_int_equal(recs.n, 2);
    assert_string_equal(recs.r[0].name, "udp_metric");
}

static void test_unix_socket_line_protocol(void **state)
{
    struct daemon *d = *state;
    write_config(d, "[listen]\nunix_mode = 0666\n");
    daemon_start(d);
    struct stat sst;
    assert_int_equal(stat(d->unix_path, &sst), 0);
    assert_true(S_ISSOCK(sst.st_mode));
    assert_int_equal(sst.st_mode & 0777, 0666);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {0};
    sun.sun_family = AF_UNIX;
    assert_true(strlen(d->unix_path) < sizeof sun.sun_path);
    memcpy(sun.sun_path, d->unix_path, strlen(d->unix_path));
    assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    /* 100 lines written in pieces that split lines, the last one without a newline. */
    struct ferry_buf b = FERRY_BUF_INIT;
    for (int i = 0; i < 100; i++)
        assert_int_equal(ferry_buf_printf(&b, "sock,i=%d v=%d%s", i, i, i < 99 ? "\n" : ""), 0);
    for (size_t off = 0; off < b.len; off += 37) {
        size_t n = b.len - off < 37 ? b.len - off : 37;
        assert_int_equal(write(fd, b.data + off, n), (ssize_t)n);
        if (off % 370 == 0)
            sleep_ms(2);
    }
    close(fd);
    ferry_buf_free(&b);
    struct recs recs;
    wait_records(d, RECORD_METRIC, 100, &recs);
    assert_int_equal(recs.n, 100);
    assert_string_equal(recs.r[99].name, "sock");
}

static void test_status_json_and_prometheus_metrics(void **state)
{
    struct daemon *d = *state;
    write_config(d, NULL);
    daemon_start(d);
    struct ferry_buf resp = FERRY_BUF_INIT;
    const char *body = "a v=1\nb v=2\nc v=3\n";
    assert_int_equal(http(d, "POST", "/write", body, strlen(body), &resp), 204);
    resp.len = 0;
    assert_int_equal(http(d, "GET", "/status", NULL, 0, &resp), 200);
    json_error_t jerr;
    json_t *st = json_loads((const char *)resp.data, 0, &jerr);
    if (!st)
        fail_msg("status is not JSON: %s: %s", jerr.text, (const char *)resp.data);
    assert_true(json_is_string(json_object_get(st, "device_id")));
    json_t *metric = json_object_get(json_object_get(st, "streams"), "metric");
    assert_int_equal(json_integer_value(json_object_get(metric, "backlog_records")), 3);
    /* three records just written wait (no server is configured): their age is a number of
     * milliseconds, present, not negative and not older than this test */
    json_t *age = json_object_get(metric, "oldest_unsent_age_ms");
    assert_true(json_is_integer(age));
    assert_in_range(json_integer_value(age), 0, 60000);
    /* ... so not everything is acknowledged */
    assert_true(json_is_false(json_object_get(st, "all_acknowledged")));
    json_t *link = json_object_get(st, "link");
    assert_non_null(link);
    assert_non_null(json_object_get(link, "last_success_unix_ms"));
    assert_non_null(json_object_get(link, "up"));
    json_t *batch = json_object_get(st, "batch");
    assert_non_null(json_object_get(batch, "size_bytes"));
    assert_non_null(json_object_get(batch, "throughput_records_per_s"));
    assert_non_null(json_object_get(json_object_get(st, "gaps"), "pending"));
    json_t *w = json_object_get(json_object_get(st, "inputs"), "http_write");
    assert_int_equal(json_integer_value(json_object_get(w, "records")), 3);
    json_decref(st);
    resp.len = 0;
    assert_int_equal(http(d, "GET", "/metrics", NULL, 0, &resp), 200);
    const char *m = (const char *)resp.data;
    assert_non_null(strstr(m, "# TYPE ferryd_backlog_records gauge\n"));
    assert_non_null(strstr(m, "ferryd_backlog_records{stream=\"metric\"} 3\n"));
    assert_non_null(strstr(m, "ferryd_input_records_total{input=\"http_write\"} 3\n"));
    assert_non_null(strstr(m, "ferryd_link_up 0\n"));
    resp.len = 0;
    assert_int_equal(http(d, "GET", "/nowhere", NULL, 0, &resp), 404);
    assert_int_equal(http(d, "GET", "/write", NULL, 0, &resp), 405);
    ferry_buf_free(&resp);
}

static void test_sigterm_exits_cleanly_with_stop_event(void **state)
{
    struct daemon *d = *state;
    write_config(d, NULL);
    daemon_start(d);
    struct ferry_buf resp = FERRY_BUF_INIT;
    const char *body = "x v=1\n";
    assert_int_equal(http(d, "POST", "/write", body, strlen(body), &resp), 204);
    ferry_buf_free(&resp);
    int status = daemon_stop(d, SIGTERM);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    char path[200];
    snprintf(path, sizeof path, "%s/ferryd.addr", d->data);
    assert_int_equal(access(path, F_OK), -1); /* removed on a clean stop */
    struct recs ev;
    read_stream(d, RECORD_EVENT, &ev, NULL);
    const struct rec *start = find_event(&ev, "ferryd.start");
    const struct rec *stop = find_event(&ev, "ferryd.stop");
    assert_non_null(start);
    assert_non_null(stop);
    assert_non_null(strstr(stop->fields, "reason=SIGTERM"));
    /* The "versions" event at start reports ferryd's version, the same as ferryd.start's. */
    const struct rec *versions = find_event(&ev, "versions");
    assert_non_null(versions);
    const char *v = strstr(start->fields, "version=");
    assert_non_null(v);
    char want[128];
    snprintf(want, sizeof want, "ferryd=%.*s", (int)strcspn(v + 8, ";"), v + 8);
    assert_non_null(strstr(versions->fields, want));
    /* SIGINT too, and a restart on the same data dir works (the journal lock was released). */
    daemon_start(d);
    status = daemon_stop(d, SIGINT);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_sighup_reloads_and_keeps_running_on_bad_file(void **state)
{
    struct daemon *d = *state;
    write_config(d, "[log]\nlevel = info\n");
    daemon_start(d);
    write_config(d, "[log]\nlevel = debug\n[sync]\nheartbeat = 7m\n[journal]\nquota = 2GiB\n");
    kill(d->pid, SIGHUP);
    struct recs ev;
    const struct rec *e = wait_event(d, "ferryd.config_changed", &ev);
    assert_non_null(strstr(e->fields, "log.level"));
    assert_non_null(strstr(e->fields, "sync.heartbeat"));
    assert_non_null(strstr(e->fields, "restart_needed=journal.quota"));
    /* A broken file: logged, an event, and the daemon goes on serving. */
    write_config(d, "[sync]\nheartbeat = whenever\n");
    kill(d->pid, SIGHUP);
    e = wait_event(d, "ferryd.config_error", &ev);
    assert_non_null(strstr(e->fields, "heartbeat"));
    struct ferry_buf resp = FERRY_BUF_INIT;
    assert_int_equal(http(d, "GET", "/status", NULL, 0, &resp), 200);
    ferry_buf_free(&resp);
    int status = daemon_stop(d, SIGTERM);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Receives one sd_notify datagram (timeout_ms); returns its length or -1. */
static ssize_t recv_notify(int fd, char *buf, size_t len, int timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = recv(fd, buf, len - 1, 0);
    if (n >= 0)
        buf[n] = 0;
    return n;
}

/* systemd: READY=1 after startup, WATCHDOG=1 every half WATCHDOG_USEC, STOPPING=1 on SIGTERM. */
static void test_systemd_ready_watchdog_stopping(void **state)
{
    struct daemon *d = *state;
    write_config(d, NULL);
    char sock_path[128], env_sock[160];
    snprintf(sock_path, sizeof sock_path, "%s/notify.sock", d->dir);
    snprintf(env_sock, sizeof env_sock, "NOTIFY_SOCKET=%s", sock_path);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sun = {0};
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, sock_path, strlen(sock_path));
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    d->env[0] = env_sock;
    d->env[1] = "WATCHDOG_USEC=200000"; /* keep-alives every 100 ms */
    daemon_start(d);
    char msg[512];
    bool ready = false;
    int watchdogs = 0;
    long long t0 = ferry_monotonic_ms();
    while (ferry_monotonic_ms() - t0 < 3000 && !(ready && watchdogs >= 3)) {
        if (recv_notify(fd, msg, sizeof msg, 500) < 0)
            continue;
        if (strstr(msg, "READY=1"))
            ready = true;
        if (strstr(msg, "WATCHDOG=1"))
            watchdogs++;
    }
    assert_true(ready);
    assert_true(watchdogs >= 3);
    kill(d->pid, SIGTERM);
    bool stopping = false;
    for (int i = 0; i < 50 && !stopping; i++)
        if (recv_notify(fd, msg, sizeof msg, 100) >= 0 && strstr(msg, "STOPPING=1"))
            stopping = true;
    assert_true(stopping);
    int status = daemon_stop(d, SIGTERM);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(fd);
}

/* A damaged journal file is moved aside at start and reported as an event. */
static void test_damaged_journal_is_recovered_with_event(void **state)
{
    struct daemon *d = *state;
    write_config(d, NULL);
    assert_int_equal(ferry_mkdir_p(d->data, 0700), 0);
    char path[200];
    snprintf(path, sizeof path, "%s/journal.mdb", d->data);
    write_text(path, "this is not an LMDB file, just garbage left by a bad power cut\n");
    daemon_start(d);
    struct recs ev;
    assert_non_null(wait_event(d, "journal.recovered", &ev));
    assert_non_null(wait_event(d, "ferryd.start", &ev)); /* appended without waiting: poll */
    struct ferry_buf resp = FERRY_BUF_INIT;
    const char *body = "after_recovery v=1\n";
    assert_int_equal(http(d, "POST", "/write", body, strlen(body), &resp), 204);
    ferry_buf_free(&resp);
}

/* A full journal evicts unsent logs; the loss becomes a journal.gap event and shows in /status. */
static void test_full_journal_gap_becomes_event_and_status(void **state)
{
    struct daemon *d = *state;
    write_config(d, "[journal]\nquota = 1MiB\n");
    daemon_start(d);
    struct ferry_buf body = FERRY_BUF_INIT, resp = FERRY_BUF_INIT;
    char filler[1001];
    memset(filler, 'x', 1000);
    filler[1000] = 0;
    for (int r = 0; r < 30; r++) {
        body.len = 0;
        for (int i = 0; i < 100; i++)
            assert_int_equal(ferry_buf_printf(&body, "log line %d.%d %s\n", r, i, filler), 0);
        resp.len = 0;
        long st = http(d, "POST", "/logs", (const char *)body.data, body.len, &resp);
        if (st != 204)
            fail_msg("POST /logs: %ld %s", st, (const char *)resp.data);
    }
    resp.len = 0;
    assert_int_equal(http(d, "GET", "/status", NULL, 0, &resp), 200);
    json_t *stj = json_loads((const char *)resp.data, 0, NULL);
    assert_non_null(stj);
    json_t *gaps = json_object_get(stj, "gaps");
    assert_true(json_integer_value(json_object_get(gaps, "pending")) >= 1);
    assert_true(json_array_size(json_object_get(gaps, "list")) >= 1);
    json_t *log = json_object_get(json_object_get(stj, "streams"), "log");
    assert_true(json_integer_value(json_object_get(log, "evicted_records")) > 0);
    json_decref(stj);
    /* The event comes from the maintenance pass (every 10 s) or at the next start. */
    int status = daemon_stop(d, SIGTERM);
    assert_int_equal(WEXITSTATUS(status), 0);
    daemon_start(d);
    struct recs ev;
    const struct rec *e = wait_event(d, "journal.gap", &ev);
    assert_non_null(strstr(e->fields, "stream=log"));
    assert_non_null(strstr(e->fields, "reason=quota"));
    ferry_buf_free(&body);
    ferry_buf_free(&resp);
}

/* Runs ferryd with args; returns its exit status and its stderr in out. */
static int run_ferryd(const char *const *args, char *out, size_t out_len)
{
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], 2);
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        exec_ferry_program(args);
        _exit(127);
    }
    close(pipefd[1]);
    size_t used = 0;
    ssize_t n;
    while (used + 1 < out_len && (n = read(pipefd[0], out + used, out_len - used - 1)) > 0)
        used += (size_t)n;
    out[used] = 0;
    close(pipefd[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_bad_config_is_a_clear_error_and_exit_code(void **state)
{
    struct daemon *d = *state;
    write_text(d->cfg, "[device]\ndata_dir = /tmp/never-used\n[sync]\nheartbeat = soon\n");
    char out[2048];
    const char *args[] = {ferryd_bin, "--config", d->cfg, NULL};
    assert_int_equal(run_ferryd(args, out, sizeof out), 3);
    char expect[256];
    snprintf(expect, sizeof expect, "%s:4: [sync] heartbeat = \"soon\": not a duration", d->cfg);
    if (!strstr(out, expect))
        fail_msg("expected \"%s\" in: %s", expect, out);
    write_text(d->cfg, "[device]\nbogus_key = 1\n");
    assert_int_equal(run_ferryd(args, out, sizeof out), 3);
    assert_non_null(strstr(out, ":2: [device] bogus_key: unknown key"));
    const char *missing[] = {ferryd_bin, "--config", "/nonexistent/ferryd.ini", NULL};
    assert_int_equal(run_ferryd(missing, out, sizeof out), 3);
    assert_non_null(strstr(out, "/nonexistent/ferryd.ini: cannot open"));
    const char *help[] = {ferryd_bin, "--help", NULL};
    assert_int_equal(run_ferryd(help, out, sizeof out), 0);
    assert_non_null(strstr(out, "usage: ferryd"));
    const char *version[] = {ferryd_bin, "--version", NULL};
    assert_int_equal(run_ferryd(version, out, sizeof out), 0);
    const char *bad_opt[] = {ferryd_bin, "--no-such-option", NULL};
    assert_int_equal(run_ferryd(bad_opt, out, sizeof out), 2);
}

static void test_second_ferryd_on_same_data_dir_fails(void **state)
{
    struct daemon *d = *state;
    write_config(d, NULL);
    daemon_start(d);
    char out[2048];
    const char *args[] = {ferryd_bin, "--config", d->cfg, NULL};
    assert_int_equal(run_ferryd(args, out, sizeof out), 1);
    assert_non_null(strstr(out, "another process"));
}

static void test_cli_put_log_status(void **state)
{
    struct daemon *d = *state;
    write_config(d, NULL);
    daemon_start(d);
    char out[8192];
    const char *put[] = {ferry_bin,         "put", "--data-dir", d->data, "cli_metric,k=v x=1",
                         "cli_metric y=2i", NULL};
    assert_int_equal(run_ferryd(put, out, sizeof out), 0);
    const char *bad[] = {ferry_bin, "put", "--data-dir", d->data, "good v=1", "bad v=", NULL};
    assert_int_equal(run_ferryd(bad, out, sizeof out), 1);
    assert_non_null(strstr(out, "line 2"));
    const char *log[] = {ferry_bin, "log",      "--data-dir", d->data,   "--level",
                         "warn",    "--source", "deploy",     "--field", "step=3",
                         "rollout", "paused",   NULL};
    assert_int_equal(run_ferryd(log, out, sizeof out), 0);
    const char *status[] = {ferry_bin, "status", "--data-dir", d->data, "--json", NULL};
    assert_int_equal(run_ferryd(status, out, sizeof out), 0);
    json_t *st = json_loads(out, 0, NULL);
    assert_non_null(st);
    json_t *metric = json_object_get(json_object_get(st, "streams"), "metric");
    assert_int_equal(json_integer_value(json_object_get(metric, "backlog_records")), 3);
    json_decref(st);
    const char *human[] = {ferry_bin, "status", "--data-dir", d->data, NULL};
    assert_int_equal(run_ferryd(human, out, sizeof out), 0);
    assert_non_null(strstr(out, "metric"));
    assert_non_null(strstr(out, "backlog"));
    assert_non_null(strstr(out, "update     off"));
    struct recs recs;
    read_stream(d, RECORD_LOG, &recs, NULL);
    assert_int_equal(recs.n, 1);
    assert_string_equal(recs.r[0].name, "deploy");
    assert_string_equal(recs.r[0].message, "rollout paused");
    assert_int_equal(recs.r[0].level, RECORD_LEVEL_WARN);
    assert_non_null(strstr(recs.r[0].fields, "step=3"));
    /* No daemon there: a clear failure, exit 1. */
    const char *nowhere[] = {ferry_bin, "status", "--url", "http://127.0.0.1:1", NULL};
    assert_int_equal(run_ferryd(nowhere, out, sizeof out), 1);
    assert_non_null(strstr(out, "is ferryd running?"));
}

/* ---- With a real ferry-ingest ------------------------------------------------------------ */

static json_t *get_status(const struct daemon *d)
{
    struct ferry_buf resp = FERRY_BUF_INIT;
    long st = http(d, "GET", "/status", NULL, 0, &resp);
    json_t *j = st == 200 ? json_loads((const char *)resp.data, 0, NULL) : NULL;
    ferry_buf_free(&resp);
    return j;
}

/* ferryd against ferry-ingest: enrollment gives /status a device id, the link goes up, the
 * records written drain from the backlog, and the OTA agent starts once the id is known. */
static void test_with_ingest_enrolls_drains_and_starts_ota(void **state)
{
    struct daemon *d = *state;
    if (!ingest_bin)
        skip();
    char ing_dir[128], port_file[128], ing_log[128], cmd[512];
    snprintf(ing_dir, sizeof ing_dir, "%s/ingest", d->dir);
    snprintf(port_file, sizeof port_file, "%s/ingest.port", d->dir);
    snprintf(ing_log, sizeof ing_log, "%s/ingest.log", d->dir);
    snprintf(cmd, sizeof cmd, "'%s' -d '%s' enroll-token create 2>>'%s'", ingest_bin, ing_dir,
             ing_log);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char token[128] = "";
    assert_non_null(fgets(token, sizeof token, p));
    assert_int_equal(pclose(p), 0);
    token[strcspn(token, "\r\n")] = 0;
    pid_t ingest = fork();
    if (ingest == 0) {
        int fd = open(ing_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(ingest_bin, ingest_bin, "-d", ing_dir, "-l", "127.0.0.1:0", "--server.port_file",
              port_file, "--log.level", "warn", (char *)NULL);
        _exit(127);
    }
    char port[32] = "";
    for (int i = 0; i < 1000 && !port[0]; i++) {
        uint8_t *text;
        size_t len;
        if (ferry_read_file(port_file, 64, &text, &len) == 0) {
            snprintf(port, sizeof port, "%.*s", (int)strcspn((char *)text, "\r\n"), (char *)text);
            free(text);
        }
        if (!port[0])
            sleep_ms(10);
    }
    if (!port[0]) {
        kill(ingest, SIGKILL);
        waitpid(ingest, NULL, 0);
        fail_msg("ferry-ingest did not start; see %s", ing_log);
    }
    char extra[2048];
    /* two components: rootfs in slots and a model file, each with its own agent */
    snprintf(extra, sizeof extra,
             "[server]\nurl = http://127.0.0.1:%s\nenroll_token = %s\n"
             "[sync]\nmetric_latency = 100ms\n"
             "[update]\nenabled = true\ncheck_interval = 1h\ninitial_version = 1.2.3\n"
             "release_keys = %064d\n[update.rootfs]\nslot_dir = slots-rootfs\n"
             "[update.model]\ninstall_path = %s/detector.onnx\ninitial_version = 0.5.0\n",
             port, token, 7, d->dir);
    write_config(d, extra);
    daemon_start(d);
    struct ferry_buf body = FERRY_BUF_INIT, resp = FERRY_BUF_INIT;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(ferry_buf_printf(&body, "drain,i=%d v=%d\n", i, i), 0);
    assert_int_equal(http(d, "POST", "/write", (const char *)body.data, body.len, &resp), 204);
    bool enrolled = false, drained = false, ota = false;
    json_t *st = NULL;
    for (int i = 0; i < 300 && !(enrolled && drained && ota); i++) {
        json_decref(st);
        st = get_status(d);
        assert_non_null(st);
        const char *id = json_string_value(json_object_get(st, "device_id"));
        enrolled = id && id[0] && json_is_true(json_object_get(st, "enrolled"));
        json_t *metric = json_object_get(json_object_get(st, "streams"), "metric");
        json_t *link = json_object_get(st, "link");
        drained = json_integer_value(json_object_get(metric, "backlog_records")) == 0 &&
                  json_integer_value(json_object_get(metric, "sent_records")) >= 1000 &&
                  json_is_true(json_object_get(link, "up")) &&
                  json_integer_value(json_object_get(link, "last_success_unix_ms")) > 0;
        json_t *update = json_object_get(st, "update");
        const char *ustate = json_string_value(json_object_get(update, "state"));
        const char *mstate = json_string_value(json_object_get(
            json_object_get(json_object_get(update, "components"), "model"), "state"));
        ota = ustate && strcmp(ustate, "idle") == 0 && mstate && strcmp(mstate, "idle") == 0;
        if (!(enrolled && drained && ota))
            sleep_ms(50);
    }
    char *dump = st ? json_dumps(st, JSON_COMPACT) : NULL;
    kill(ingest, SIGTERM);
    waitpid(ingest, NULL, 0);
    if (!(enrolled && drained && ota))
        fail_msg("enrolled %d drained %d ota %d: %s", enrolled, drained, ota, dump ? dump : "");
    json_t *update = json_object_get(st, "update");
    assert_string_equal(json_string_value(json_object_get(update, "running_version")), "1.2.3");
    assert_string_equal(json_string_value(json_object_get(update, "component")), "rootfs");
    json_t *comps = json_object_get(update, "components");
    assert_int_equal(json_object_size(comps), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(comps, "rootfs"), "running_version")),
        "1.2.3");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(comps, "model"), "running_version")),
        "0.5.0");
    free(dump);
    json_decref(st);
    ferry_buf_free(&body);
    ferry_buf_free(&resp);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PATH_TO_FERRYD PATH_TO_FERRY\n", argv[0]);
        return 2;
    }
    ferryd_bin = argv[1];
    ferry_bin = argv[2];
    ingest_bin = argc > 3 ? argv[3] : NULL;
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_daemon, teardown_daemon)
    const struct CMUnitTest tests[] = {
        T(test_write_204_means_durable_even_after_sigkill),
        T(test_partial_bad_write_is_400_with_line_and_valid_lines_written),
        T(test_precision_parameter),
        T(test_gzip_write_body),
        T(test_logs_plain_and_json_lines),
        T(test_invalid_utf8_and_nul_are_refused_with_line_and_column),
        T(test_udp_line_protocol),
        T(test_unix_socket_line_protocol),
        T(test_status_json_and_prometheus_metrics),
        T(test_sigterm_exits_cleanly_with_stop_event),
        T(test_sighup_reloads_and_keeps_running_on_bad_file),
        T(test_bad_config_is_a_clear_error_and_exit_code),
        T(test_second_ferryd_on_same_data_dir_fails),
        T(test_cli_put_log_status),
        T(test_systemd_ready_watchdog_stopping),
        T(test_damaged_journal_is_recovered_with_event),
        T(test_full_journal_gap_becomes_event_and_status),
        T(test_with_ingest_enrolls_drains_and_starts_ota),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
