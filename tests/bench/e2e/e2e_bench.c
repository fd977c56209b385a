/*
 * e2e_bench.c - `e2e-bench`: end-to-end throughput and idle cost of ferryd + ferry-ingest.
 *
 * Starts a real ferry-ingest (LMDB store) and a real ferryd in a temporary directory (ports 0,
 * read back), lets ferryd enroll, then writes InfluxDB line protocol to ferryd's POST /write as
 * fast as it is accepted (several writer threads, keep-alive) and measures until the ingest's
 * store holds every record (GET /v1/devices/{id}: streams.metric.records). Prints:
 *
 *   records/s end to end, bytes on the wire per record (ferryd's sync counters: request and
 *   response bodies plus headers), CPU per record of each process (utime+stime from
 *   /proc/PID/stat), ferryd's peak RSS (VmHWM);
 *   then idle for --idle-seconds: ferryd's RSS (and its anonymous part) and wake-ups per second
 *   (voluntary + involuntary context switches summed over all of ferryd's threads,
 *   /proc/PID/task/TID/status).
 *
 * Every process started is killed by PID at exit. Figures depend on the machine and its load.
 */
#include <curl/curl.h>
#include <jansson.h>

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/util.h"

struct opts {
    char bin_dir[PATH_MAX];
    uint64_t records;
    unsigned batch_lines;
    unsigned writers;
    unsigned idle_s;
    bool keep;
    char durability[32];
};

static pid_t ingest_pid = -1, ferryd_pid = -1;
static char tmpdir[PATH_MAX];

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: e2e-bench [options]\n"
        "End-to-end benchmark: line protocol into ferryd's /write, measured until the\n"
        "records are in ferry-ingest's store; then ferryd's idle RSS and wake-ups.\n\n"
        "  --bin-dir DIR       where ferryd and ferry-ingest are (default: beside e2e-bench)\n"
        "  --records N         points to write (default 2000000)\n"
        "  --batch-lines N     points per /write request (default 5000)\n"
        "  --writers N         concurrent writer connections (default 2)\n"
        "  --idle-seconds N    idle measurement (default 60; 0 skips it)\n"
        "  --durability MODE   ferryd [journal] durability: commit|periodic|os (default commit)\n"
        "  --keep              keep the temporary directory\n"
        "  -h, --help          this text\n");
}

static void cleanup(void)
{
    if (ferryd_pid > 0) {
        kill(ferryd_pid, SIGKILL);
        waitpid(ferryd_pid, NULL, 0);
        ferryd_pid = -1;
    }
    if (ingest_pid > 0) {
        kill(ingest_pid, SIGKILL);
        waitpid(ingest_pid, NULL, 0);
        ingest_pid = -1;
    }
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "e2e-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    cleanup();
    exit(1);
}

static pid_t spawn(char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        FILE *lf = fopen(log_path, "a");
        if (lf) {
            dup2(fileno(lf), 1);
            dup2(fileno(lf), 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Reads a small file whole (/proc files report size 0, so read until EOF). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *nb = cap < (1u << 20) ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* ---- tiny HTTP helpers (libcurl easy: this is a benchmark driver, not the daemon) ----------- */

static size_t collect(char *p, size_t sz, size_t n, void *arg)
{
    struct ferry_buf *b = arg;
    return ferry_buf_append(b, p, sz * n) == 0 ? sz * n : 0;
}

static long http_call(CURL *c, const char *url, const char *body, size_t body_len,
                      struct ferry_buf *out)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    if (curl_easy_perform(c) != CURLE_OK)
        return 0;
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

/* GET a JSON document; `api_token` (NULL: none) goes as "Authorization: Bearer" (the ingest's
 * read API needs a viewer token, docs/security.md). */
static json_t *get_json(const char *url, const char *api_token)
{
    CURL *c = curl_easy_init();
    struct ferry_buf b = FERRY_BUF_INIT;
    json_t *root = NULL;
    char authz[256];
    struct curl_slist *h = NULL;
    if (api_token != NULL) {
        snprintf(authz, sizeof(authz), "Authorization: Bearer %s", api_token);
        h = curl_slist_append(NULL, authz);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    }
    long code = http_call(c, url, NULL, 0, &b);
    curl_slist_free_all(h);
    if (code == 200) {
        json_error_t err;
        root = json_loadb((const char *)b.data, b.len, 0, &err);
    }
    ferry_buf_free(&b);
    curl_easy_cleanup(c);
    return root;
}

/* ---- /proc ----------------------------------------------------------------------------------- */

static double proc_cpu_s(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *s = slurp(path);
    if (!s)
        return 0;
    char *p = strrchr(s, ')');
    unsigned long long ut = 0, st = 0;
    /* fields after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime */
    if (p)
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st);
    free(s);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long long proc_status_kb(pid_t pid, const char *key)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    char *s = slurp(path);
    if (!s)
        return -1;
    long long v = -1;
    char *p = strstr(s, key);
    if (p)
        sscanf(p + strlen(key), ": %lld", &v);
    free(s);
    return v;
}

static unsigned long long proc_ctxt_switches(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    unsigned long long total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sp[384];
        snprintf(sp, sizeof(sp), "/proc/%d/task/%s/status", (int)pid, e->d_name);
        char *s = slurp(sp);
        if (!s)
            continue;
        unsigned long long v = 0, nv = 0;
        char *p = strstr(s, "voluntary_ctxt_switches");
        if (p)
            sscanf(p, "voluntary_ctxt_switches: %llu", &v);
        p = strstr(s, "nonvoluntary_ctxt_switches");
        if (p)
            sscanf(p, "nonvoluntary_ctxt_switches: %llu", &nv);
        total += v + nv;
        free(s);
    }
    closedir(d);
    return total;
}

/* ---- writers --------------------------------------------------------------------------------- */

#define N_BODIES 32

struct shared {
    char write_url[256];
    struct ferry_buf bodies[N_BODIES];
    unsigned lines_per_body;
    uint64_t target;
    atomic_uint_fast64_t claimed;
    atomic_uint_fast64_t accepted;
    atomic_uint_fast64_t failed_requests;
};

static void make_bodies(struct shared *sh)
{
    uint64_t x = 88172645463325252ULL;
    int64_t ts = ferry_realtime_ns();
    for (int b = 0; b < N_BODIES; b++) {
        struct ferry_buf *buf = &sh->bodies[b];
        for (unsigned i = 0; i < sh->lines_per_body; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            unsigned core = (unsigned)(x % 8), host = (unsigned)((x >> 8) % 4);
            double user = (double)(x % 10000) / 100.0, sys = (double)((x >> 16) % 5000) / 100.0;
            if (ferry_buf_printf(buf,
                                 "cpu,host=jetson-%u,core=%u usage_user=%.2f,usage_system=%.2f,"
                                 "temp_c=%ui %" PRId64 "\n",
                                 host, core, user, sys, 40 + (unsigned)((x >> 24) % 30),
                                 ts + (int64_t)(b * sh->lines_per_body + i) * 1000000) != 0)
                die("out of memory making bodies");
        }
    }
}

static void *writer_main(void *arg)
{
    struct shared *sh = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    struct ferry_buf out = FERRY_BUF_INIT;
    unsigned k = 0;
    for (;;) {
        uint64_t start = atomic_fetch_add(&sh->claimed, sh->lines_per_body);
        if (start >= sh->target)
            break;
        struct ferry_buf *body = &sh->bodies[k++ % N_BODIES];
        for (int attempt = 0;; attempt++) {
            ferry_buf_reset(&out);
            long code = http_call(c, sh->write_url, (const char *)body->data, body->len, &out);
            if (code == 204) {
                atomic_fetch_add(&sh->accepted, sh->lines_per_body);
                break;
            }
            atomic_fetch_add(&sh->failed_requests, 1);
            if (attempt > 50)
                die("/write keeps failing (HTTP %ld): %.*s", code, (int)out.len,
                    out.data ? (const char *)out.data : "");
            usleep(20000);
        }
    }
    ferry_buf_free(&out);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

/* ---- main ----------------------------------------------------------------------------------- */

static void parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->records = 2000000;
    o->batch_lines = 5000;
    o->writers = 2;
    o->idle_s = 60;
    ferry_strlcpy(o->durability, "commit", sizeof(o->durability));
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash)
            *slash = '\0';
        ferry_strlcpy(o->bin_dir, self, sizeof(o->bin_dir));
    }
    static const struct option lo[] = {{"bin-dir", required_argument, 0, 'b'},
                                       {"records", required_argument, 0, 'r'},
                                       {"batch-lines", required_argument, 0, 'l'},
                                       {"writers", required_argument, 0, 'w'},
                                       {"idle-seconds", required_argument, 0, 'i'},
                                       {"durability", required_argument, 0, 'D'},
                                       {"keep", no_argument, 0, 'k'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'b': ferry_strlcpy(o->bin_dir, optarg, sizeof(o->bin_dir)); break;
        case 'r':
            if (ferry_parse_u64(optarg, 1000000000ULL, &v) != 0 || v == 0)
                die("--records: a number 1..1e9");
            o->records = v;
            break;
        case 'l':
            if (ferry_parse_u64(optarg, 1000000, &v) != 0 || v == 0)
                die("--batch-lines: a number 1..1e6");
            o->batch_lines = (unsigned)v;
            break;
        case 'w':
            if (ferry_parse_u64(optarg, 64, &v) != 0 || v == 0)
                die("--writers: 1..64");
            o->writers = (unsigned)v;
            break;
        case 'i':
            if (ferry_parse_u64(optarg, 3600, &v) != 0)
                die("--idle-seconds: 0..3600");
            o->idle_s = (unsigned)v;
            break;
        case 'D': ferry_strlcpy(o->durability, optarg, sizeof(o->durability)); break;
        case 'k': o->keep = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
}

static int wait_file(const char *path, char *out, size_t cap, int timeout_ms)
{
    int64_t end = ferry_monotonic_ms() + timeout_ms;
    while (ferry_monotonic_ms() < end) {
        char *s = slurp(path);
        if (s && s[0]) {
            ferry_strlcpy(out, s, cap);
            free(s);
            return 0;
        }
        free(s);
        usleep(20000);
    }
    return -1;
}

static uint64_t ingest_records(const char *ingest_url, const char *api_token, const char *device)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/v1/devices/%s", ingest_url, device);
    json_t *root = get_json(url, api_token);
    if (!root)
        return 0;
    json_t *dev = json_object_get(root, "device");
    if (!dev)
        dev = root;
    json_int_t n = json_integer_value(
        json_object_get(json_object_get(json_object_get(dev, "streams"), "metric"), "records"));
    json_decref(root);
    return (uint64_t)n;
}

int main(int argc, char **argv)
{
    struct opts o;
    parse_args(argc, argv, &o);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        die("curl_global_init failed");
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-e2e-bench-XXXXXX");
    if (!mkdtemp(tmpdir))
        die("mkdtemp: %s", strerror(errno));
    atexit(cleanup);

    char ingest_bin[PATH_MAX + 32], ferryd_bin[PATH_MAX + 32], path[PATH_MAX + 64];
    snprintf(ingest_bin, sizeof(ingest_bin), "%s/ferry-ingest", o.bin_dir);
    snprintf(ferryd_bin, sizeof(ferryd_bin), "%s/ferryd", o.bin_dir);
    if (access(ingest_bin, X_OK) != 0 || access(ferryd_bin, X_OK) != 0)
        die("ferry-ingest and ferryd must be in %s (--bin-dir)", o.bin_dir);

    /* the ingest, and an enrollment token */
    char ing_dir[PATH_MAX + 16], port_file[PATH_MAX + 16], ing_log[PATH_MAX + 16];
    snprintf(ing_dir, sizeof(ing_dir), "%s/ingest", tmpdir);
    snprintf(port_file, sizeof(port_file), "%s/ingest.port", tmpdir);
    snprintf(ing_log, sizeof(ing_log), "%s/ingest.log", tmpdir);
    char cmd[4 * PATH_MAX + 128];
    snprintf(cmd, sizeof(cmd), "'%s' -d '%s' enroll-token create 2>>'%s'", ingest_bin, ing_dir,
             ing_log);
    FILE *p = popen(cmd, "r");
    char token[128] = "";
    if (!p)
        die("enroll-token create: %s", strerror(errno));
    char line[256];
    while (fgets(line, sizeof(line), p))
        ferry_strlcpy(token, line, sizeof(token));
    if (pclose(p) != 0 || !token[0])
        die("ferry-ingest enroll-token create failed (see %s)", ing_log);
    token[strcspn(token, "\r\n")] = '\0';
    /* and a viewer API token to read the device's record count */
    char viewer[128] = "";
    snprintf(cmd, sizeof(cmd), "'%s' -d '%s' token create --role viewer --name e2e-bench 2>>'%s'",
             ingest_bin, ing_dir, ing_log);
    if (!(p = popen(cmd, "r")))
        die("token create: %s", strerror(errno));
    while (fgets(line, sizeof(line), p))
        ferry_strlcpy(viewer, line, sizeof(viewer));
    if (pclose(p) != 0 || !viewer[0])
        die("ferry-ingest token create failed (see %s)", ing_log);
    viewer[strcspn(viewer, "\r\n")] = '\0';
    char *iargv[] = {ingest_bin,           "-d",      ing_dir,       "-l",   "127.0.0.1:0",
                     "--server.port_file", port_file, "--log.level", "warn", NULL};
    ingest_pid = spawn(iargv, ing_log);
    char port[32];
    if (wait_file(port_file, port, sizeof(port), 20000) != 0)
        die("ferry-ingest did not start (see %s)", ing_log);
    port[strcspn(port, "\r\n")] = '\0';
    char ingest_url[64];
    snprintf(ingest_url, sizeof(ingest_url), "http://127.0.0.1:%s", port);

    /* ferryd */
    char dev_dir[PATH_MAX + 16], ini[PATH_MAX + 16], dlog[PATH_MAX + 16];
    snprintf(dev_dir, sizeof(dev_dir), "%s/dev", tmpdir);
    snprintf(ini, sizeof(ini), "%s/ferryd.ini", tmpdir);
    snprintf(dlog, sizeof(dlog), "%s/ferryd.log", tmpdir);
    struct ferry_buf cfg = FERRY_BUF_INIT;
    if (ferry_buf_printf(&cfg,
                         "[device]\ndata_dir = %s\ndevice_class = bench\nname = bench\n"
                         "[server]\nurl = %s\nenroll_token = %s\n"
                         "[listen]\nhttp = 127.0.0.1:0\nudp =\nunix =\n"
                         "[journal]\ndurability = %s\n"
                         "[log]\nlevel = warn\n",
                         dev_dir, ingest_url, token, o.durability) != 0 ||
        ferry_write_file_atomic(ini, cfg.data, cfg.len, 0600) != 0)
        die("writing %s", ini);
    ferry_buf_free(&cfg);
    char *dargv[] = {ferryd_bin, "-c", ini, NULL};
    ferryd_pid = spawn(dargv, dlog);
    snprintf(path, sizeof(path), "%s/ferryd.addr", dev_dir);
    char addr[512];
    if (wait_file(path, addr, sizeof(addr), 20000) != 0)
        die("ferryd did not start (see %s)", dlog);
    char *h = strstr(addr, "http=");
    if (!h)
        die("no http= in %s", path);
    h += 5;
    h[strcspn(h, "\r\n")] = '\0';
    char ferryd_url[128];
    snprintf(ferryd_url, sizeof(ferryd_url), "http://%s", h);

    /* wait for the enrollment */
    char device[80] = "";
    char status_url[160];
    snprintf(status_url, sizeof(status_url), "%s/status", ferryd_url);
    for (int i = 0; i < 400 && !device[0]; i++) {
        json_t *st = get_json(status_url, NULL);
        const char *id = st ? json_string_value(json_object_get(st, "device_id")) : NULL;
        if (id && id[0])
            ferry_strlcpy(device, id, sizeof(device));
        json_decref(st);
        if (!device[0])
            usleep(50000);
    }
    if (!device[0])
        die("ferryd did not enroll (see %s and %s)", dlog, ing_log);
    uint64_t base_records = ingest_records(ingest_url, viewer, device);

    struct shared *sh = calloc(1, sizeof(*sh));
    if (!sh)
        die("out of memory");
    snprintf(sh->write_url, sizeof(sh->write_url), "%s/write", ferryd_url);
    sh->lines_per_body = o.batch_lines;
    sh->target = o.records;
    make_bodies(sh);
    uint64_t body_bytes = 0;
    for (int b = 0; b < N_BODIES; b++)
        body_bytes += sh->bodies[b].len;

    printf("e2e-bench: %" PRIu64 " points, %u per /write, %u writers, ferryd durability %s, "
           "device %s\n",
           o.records, o.batch_lines, o.writers, o.durability, device);
    printf("(line protocol: %.1f bytes per point)\n",
           (double)body_bytes / (double)(N_BODIES * o.batch_lines));
    fflush(stdout);

    double cpu_d0 = proc_cpu_s(ferryd_pid), cpu_i0 = proc_cpu_s(ingest_pid);
    int64_t t0 = ferry_monotonic_ms();
    pthread_t th[64];
    for (unsigned i = 0; i < o.writers; i++)
        if (pthread_create(&th[i], NULL, writer_main, sh) != 0)
            die("pthread_create");
    for (unsigned i = 0; i < o.writers; i++)
        pthread_join(th[i], NULL);
    int64_t t_written = ferry_monotonic_ms();
    uint64_t accepted = atomic_load(&sh->accepted);
    uint64_t want = base_records + accepted;
    uint64_t have = 0;
    while ((have = ingest_records(ingest_url, viewer, device)) < want) {
        if (ferry_monotonic_ms() - t_written > 600000)
            die("only %" PRIu64 " of %" PRIu64 " records reached the ingest after 10 min", have,
                want);
        usleep(20000);
    }
    int64_t t_stored = ferry_monotonic_ms();
    double cpu_d1 = proc_cpu_s(ferryd_pid), cpu_i1 = proc_cpu_s(ingest_pid);
    long long hwm_kb = proc_status_kb(ferryd_pid, "VmHWM");

    json_t *st = get_json(status_url, NULL);
    json_t *batch = st ? json_object_get(st, "batch") : NULL;
    double wire = (double)json_integer_value(json_object_get(batch, "bytes_on_wire"));
    double wire_recs = (double)json_integer_value(json_object_get(batch, "records_on_wire"));
    json_int_t batches = json_integer_value(json_object_get(batch, "batches_sent"));
    /* every record ferryd's journal holds or held (points, and its own events) */
    json_int_t written = 0;
    const char *names[] = {"event", "metric", "log"};
    for (int k = 0; k < 3; k++) {
        json_int_t next = json_integer_value(
            json_object_get(json_object_get(json_object_get(st, "streams"), names[k]), "next_seq"));
        written += next > 0 ? next - 1 : 0;
    }
    json_decref(st);

    double secs = (double)(t_stored - t0) / 1000.0;
    printf("accepted by /write:   %" PRIu64 " points in %.2f s (%.0f points/s; %" PRIu64
           " retried requests)\n",
           accepted, (double)(t_written - t0) / 1000.0,
           (double)accepted * 1000.0 / (double)(t_written - t0 > 0 ? t_written - t0 : 1),
           (uint64_t)atomic_load(&sh->failed_requests));
    printf("in the ingest store:  %.2f s after the first write\n", secs);
    printf("records/s end to end: %.0f\n", (double)accepted / secs);
    printf("bytes on wire/record: %.2f (%lld batches)\n", wire_recs > 0 ? wire / wire_recs : 0.0,
           (long long)batches);
    /* nothing failed in this run: a record sent more than once is a wasted byte on the link */
    printf("records on the wire:  %.0f for %lld written (%.0f sent more than once)\n", wire_recs,
           (long long)written, wire_recs > (double)written ? wire_recs - (double)written : 0.0);
    printf("CPU per record:       ferryd %.2f us, ferry-ingest %.2f us\n",
           (cpu_d1 - cpu_d0) * 1e6 / (double)accepted, (cpu_i1 - cpu_i0) * 1e6 / (double)accepted);
    printf("ferryd peak RSS:      %.1f MiB\n", (double)hwm_kb / 1024.0);
    fflush(stdout);

    if (o.idle_s > 0) {
        sleep(2); /* let the last acks and deletions settle */
        unsigned long long cs0 = proc_ctxt_switches(ferryd_pid);
        int64_t i0 = ferry_monotonic_ms();
        sleep(o.idle_s);
        unsigned long long cs1 = proc_ctxt_switches(ferryd_pid);
        double idle_secs = (double)(ferry_monotonic_ms() - i0) / 1000.0;
        long long rss = proc_status_kb(ferryd_pid, "VmRSS");
        long long anon = proc_status_kb(ferryd_pid, "RssAnon");
        long long file = proc_status_kb(ferryd_pid, "RssFile");
        printf("idle %u s:            ferryd RSS %.1f MiB (anon %.1f MiB, file-backed %.1f MiB), "
               "%.2f wakeups/s\n",
               o.idle_s, (double)rss / 1024.0, (double)anon / 1024.0, (double)file / 1024.0,
               (double)(cs1 - cs0) / idle_secs);
    }
    for (int b = 0; b < N_BODIES; b++)
        ferry_buf_free(&sh->bodies[b]);
    free(sh);
    cleanup();
    if (!o.keep) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "e2e-bench: could not remove %s\n", tmpdir);
    } else {
        printf("kept %s\n", tmpdir);
    }
    curl_global_cleanup();
    return 0;
}
