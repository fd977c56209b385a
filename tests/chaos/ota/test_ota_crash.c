/*
 * test_ota_crash.c - SIGKILL the OTA agent at random points of an update and check that the
 * device always ends on a working slot with the right version and state (invariant 5).
 *
 * The parent runs a real ferry-ingest (thread, loopback, port 0) serving a signed release; the
 * device is this binary re-executed with --agent: it opens the journal, plays the boot loader
 * (simulated slots), runs the agent and exits when the update needs a reboot (installed) or
 * ended (committed, rolled back, failed). The parent kills it with SIGKILL after a random delay
 * in most runs, so kills land in polling, selection, every part of the download (capped to make
 * it last), applying, the trial and the commit; every restart is a reboot. At the end:
 *   committed   -> running slot holds the new image, bootctl good = current, version 2.0.0
 *   rolled_back -> running slot holds the old image, version 1.0.0
 * and no other outcome is allowed. Run for both the delta and the full-artifact path; the seed is
 * printed so a failure can be replayed (FERRY_CHAOS_SEED).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <sodium.h>

#include "cloud-ingest/ingest.h"
#include "cloud-ingest/release/release.h"
#include "common/buf.h"
#include "common/util.h"
#include "engine/ota/ota.h"
#include "journal/journal.h"
#include "transport/delta.h"
#include "transport/http_client.h"
#include "transport/manifest.h"
#include "transport/reqsign.h"

#define IMG_BYTES (6u << 20)

enum { EXIT_COMMITTED = 10, EXIT_ROLLED_BACK = 11, EXIT_INSTALLED = 12, EXIT_FAILED = 13 };

static void make_image(const char *path, int v)
{
    uint8_t *p = malloc(IMG_BYTES);
    uint64_t x = 0x243f6a8885a308d3ULL;
    for (size_t i = 0; i < IMG_BYTES; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
    for (int k = 1; k <= v; k++)
        memset(p + (size_t)k * 700000, k, 50000);
    if (ferry_write_file_atomic(path, p, IMG_BYTES, 0644) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    free(p);
}

static int same_as_image(const char *path, int v, const char *scratch)
{
    make_image(scratch, v);
    uint8_t a[32], b[32];
    return delta_sha256_file(path, UINT64_MAX, a, NULL) == 0 &&
           delta_sha256_file(scratch, UINT64_MAX, b, NULL) == 0 && memcmp(a, b, 32) == 0;
}

/* ---- device side (child) ---- */

/* The device key of "dev-1": made from a fixed seed, so that the agent in the child process and
 * the ingest in the parent agree without passing a secret between them (a test only). */
static uint8_t device_sk[64];

static void device_key(uint8_t pk_out[32], uint8_t sk_out[64])
{
    uint8_t seed[32], pk_tmp[32];
    memset(seed, 'd', sizeof(seed));
    crypto_sign_seed_keypair(pk_out != NULL ? pk_out : pk_tmp, sk_out, seed);
}

/* The agent's signer, as ferryd wires sync_sign_request(). */
static int sign_as_device(void *arg, const char *method, const char *target, int64_t time_s,
                          struct reqsign_headers *out)
{
    (void)arg;
    return reqsign_sign(device_sk, method, target, "dev-1", time_s, out);
}

struct child {
    struct event_base *base;
    struct ota_agent *agent;
    int exit_code;
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct child *c = arg;
    struct ota_status st;
    ota_agent_status(c->agent, &st);
    int code = strcmp(st.state, "committed") == 0     ? EXIT_COMMITTED
               : strcmp(st.state, "rolled_back") == 0 ? EXIT_ROLLED_BACK
               : strcmp(st.state, "installed") == 0   ? EXIT_INSTALLED
               : strcmp(st.state, "failed") == 0 && strstr(st.reason, "fallback") == NULL &&
                       strstr(st.reason, "base mismatch") == NULL
                   ? EXIT_FAILED
                   : 0;
    if (code) {
        if (code == EXIT_FAILED)
            fprintf(stderr, "agent failed: %s\n", st.reason);
        c->exit_code = code;
        event_base_loopbreak(c->base);
    }
}

static int agent_main(const char *dir, const char *url, const char *pubhex)
{
    uint8_t pk[32];
    if (ferry_hex_decode(pubhex, pk, 32) != 0)
        return 2;
    ferry_log_init(FERRY_LOG_WARN, 2);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char jdir[600], slots[600];
    snprintf(jdir, sizeof(jdir), "%s/journal", dir);
    snprintf(slots, sizeof(slots), "%s/slots", dir);
    struct journal *j = NULL;
    char err[256];
    if (journal_open(jdir, NULL, &j, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "journal: %s\n", err);
        return 2;
    }
    struct child c = {0};
    c.base = event_base_new();
    device_key(NULL, device_sk);
    struct http_client *http = http_client_new(c.base);
    static const char *health[] = {"true"};
    struct ota_config cfg = {0};
    cfg.data_dir = dir;
    cfg.server_url = url;
    cfg.device_id = "dev-1";
    cfg.device_class = "c1";
    cfg.release_keys = (const uint8_t(*)[32])pk;
    cfg.n_release_keys = 1;
    cfg.slots.backend = "simulated";
    cfg.slots.dir = slots;
    cfg.slots.max_trial_boots = 3;
    cfg.check_interval_ms = 200;
    cfg.max_bytes_per_s = 3u << 20; /* so the download lasts long enough to be killed in */
    cfg.health_commands = health;
    cfg.n_health_commands = 1;
    cfg.health_timeout_ms = 5000;
    cfg.trial_deadline_ms = 20000;
    cfg.initial_version = "1.0.0";
    cfg.sign_request = sign_as_device;
    if (!http || ota_agent_new(c.base, http, j, &cfg, &c.agent, err, sizeof(err)) != 0) {
        fprintf(stderr, "agent: %s\n", err);
        return 2;
    }
    struct event *tick = event_new(c.base, -1, EV_PERSIST, on_tick, &c);
    struct timeval tv = {0, 20000};
    event_add(tick, &tv);
    event_base_dispatch(c.base);
    ota_agent_free(c.agent);
    event_free(tick);
    http_client_free(http);
    event_base_free(c.base);
    (void)journal_close(j);
    return c.exit_code ? c.exit_code : 2;
}

/* ---- cloud side and harness (parent) ---- */

static struct ingest_server *server;

static void *run_server(void *arg)
{
    (void)arg;
    int rc = ingest_server_run(server, false);
    (void)rc;
    return NULL;
}

static void publish(const struct ingest_config *icfg, const char *dir, const uint8_t *sk,
                    const char *pubpath)
{
    char v1[600], v2[600], full[600], delta[600], man[600], err[256];
    snprintf(v1, sizeof(v1), "%s/v1.img", dir);
    snprintf(v2, sizeof(v2), "%s/v2.img", dir);
    snprintf(full, sizeof(full), "%s/full.fdl", dir);
    snprintf(delta, sizeof(delta), "%s/delta.fdl", dir);
    snprintf(man, sizeof(man), "%s/manifest.json", dir);
    make_image(v1, 1);
    make_image(v2, 2);
    struct delta_make_options o;
    delta_make_options_default(&o);
    o.level = 1;
    o.window_bytes = 1u << 20;
    struct manifest_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.component = "rootfs";
    spec.version = "2.0.0";
    spec.device_class = "c1";
    spec.serial = 1;
    uint64_t tsize = 0;
    struct delta_info in;
    if (delta_sha256_file(v2, UINT64_MAX, spec.target_sha256, &tsize) != 0 ||
        delta_make(NULL, v2, full, &o, NULL, err, sizeof(err)) != 0 ||
        delta_make(v1, v2, delta, &o, NULL, err, sizeof(err)) != 0 ||
        delta_read_info(delta, &in, err, sizeof(err)) != 0 ||
        manifest_spec_add_file(&spec, full, MANIFEST_ARTIFACT_FULL, 65536, err, sizeof(err)) ||
        manifest_spec_add_file(&spec, delta, MANIFEST_ARTIFACT_DELTA, 4096, err, sizeof(err))) {
        fprintf(stderr, "release: %s\n", err);
        exit(2);
    }
    spec.target_size = tsize;
    snprintf(spec.artifacts[1].base_version, sizeof(spec.artifacts[1].base_version), "1.0.0");
    memcpy(spec.artifacts[1].base_sha256, in.base_sha256, 32);
    spec.artifacts[1].base_size = in.base_size;
    struct ferry_buf payload = FERRY_BUF_INIT, env = FERRY_BUF_INIT;
    if (manifest_build_payload(&spec, &payload, err, sizeof(err)) != 0 ||
        manifest_sign(payload.data, payload.len, sk, &env) != 0 ||
        ferry_write_file_atomic(man, env.data, env.len, 0644) != 0) {
        fprintf(stderr, "manifest: %s\n", err);
        exit(2);
    }
    char *argv[] = {"release", "publish", "--pub", (char *)pubpath, man, full, delta, NULL};
    if (ingest_release_main(icfg, 7, argv) != 0)
        exit(2);
    ferry_buf_free(&payload);
    ferry_buf_free(&env);
    manifest_spec_clear(&spec);
}

/* One device through one update with kills. Returns 0 when the outcome is consistent. */
static int scenario(const char *self, const char *root, const char *name, int modify_base,
                    const char *url, const char *pubhex, unsigned *seed)
{
    char dir[600], slots[700], slot_a[800], cmd[900], scratch[800];
    snprintf(dir, sizeof(dir), "%s/%s", root, name);
    snprintf(slots, sizeof(slots), "%s/slots", dir);
    snprintf(slot_a, sizeof(slot_a), "%s/slot-a.img", slots);
    snprintf(scratch, sizeof(scratch), "%s/expect.img", dir);
    if (ferry_mkdir_p(slots, 0755) != 0)
        return -1;
    make_image(slot_a, 1);
    if (modify_base) { /* a locally modified rootfs: the agent must take the full image */
        FILE *f = fopen(slot_a, "r+b");
        fseek(f, 4242, SEEK_SET);
        fputc(0x77, f);
        fclose(f);
        make_image(scratch, 1); /* what "the old version" means for the final check below */
    }
    int kills = 0, launches = 0, outcome = 0;
    while (launches < 80) {
        launches++;
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            execl(self, self, "--agent", dir, url, pubhex, (char *)NULL);
            _exit(127);
        }
        int status = 0;
        int kill_this = kills < 12 && rand_r(seed) % 6 != 0;
        if (kill_this) {
            /* spread over a launch's life: the full path downloads for ~2 s at the cap */
            long delay_ms = 5 + rand_r(seed) % (modify_base ? 2000 : 500);
            long long until = ferry_monotonic_ms() + delay_ms;
            pid_t w = 0;
            while (ferry_monotonic_ms() < until && (w = waitpid(pid, &status, WNOHANG)) == 0) {
                struct timespec ts = {0, 5 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
            if (w == 0) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                kills++;
                continue;
            }
        } else {
            waitpid(pid, &status, 0);
        }
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (code == EXIT_INSTALLED)
            continue; /* reboot */
        if (code == EXIT_COMMITTED || code == EXIT_ROLLED_BACK) {
            outcome = code;
            break;
        }
        fprintf(stderr, "%s: agent exited with %d\n", name, code);
        return -1;
    }
    char boot_path[800];
    snprintf(boot_path, sizeof(boot_path), "%s/bootctl", slots);
    uint8_t *boot = NULL;
    size_t blen = 0;
    if (ferry_read_file(boot_path, 4096, &boot, &blen) != 0)
        return -1;
    char current = strstr((char *)boot, "current=b") ? 'b' : 'a';
    int good = (strstr((char *)boot, "good=b") != NULL) == (current == 'b');
    free(boot);
    char running[800];
    snprintf(running, sizeof(running), "%s/slot-%c.img", slots, current);
    int ok;
    if (outcome == EXIT_COMMITTED)
        ok = good && current == 'b' && same_as_image(running, 2, scratch);
    else
        ok = good && current == 'a' &&
             (modify_base ? 1 : same_as_image(running, 1, scratch)); /* old (possibly modified) */
    printf("%s: %d launches, %d SIGKILLs, outcome %s, running slot %c: %s\n", name, launches, kills,
           outcome == EXIT_COMMITTED ? "committed"
           : outcome                 ? "rolled back"
                                     : "none",
           current, ok ? "consistent" : "INCONSISTENT");
    snprintf(cmd, sizeof(cmd), "%s/journal", dir);
    return outcome && ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--agent") == 0)
        return agent_main(argv[2], argv[3], argv[4]);
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return 2;
    unsigned seed = (unsigned)time(NULL);
    const char *env = getenv("FERRY_CHAOS_SEED");
    uint64_t sv;
    if (env && ferry_parse_u64(env, UINT32_MAX, &sv) == 0)
        seed = (unsigned)sv;
    printf("seed %u (FERRY_CHAOS_SEED to replay)\n", seed);
    char root[] = "/tmp/ferry-ota-crash-XXXXXX";
    if (!mkdtemp(root))
        return 2;
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    char pubhex[65], pubpath[600], err[256];
    ferry_hex_encode(pk, 32, pubhex);
    snprintf(pubpath, sizeof(pubpath), "%s/rel.pub", root);
    struct ingest_config icfg;
    ingest_config_defaults(&icfg);
    if (ferry_write_file_atomic(pubpath, pubhex, 64, 0644) != 0 ||
        ingest_config_set(&icfg, "server.listen", "127.0.0.1:0", err, sizeof(err)) != 0 ||
        ingest_config_set(&icfg, "store.lmdb_dir", root, err, sizeof(err)) != 0 ||
        ingest_config_set(&icfg, "server.workers", "2", err, sizeof(err)) != 0)
        return 2;
    ingest_config_finish(&icfg);
    ferry_log_init(FERRY_LOG_WARN, 2);
    struct ingest_store *store = NULL;
    struct ingest_device dev;
    memset(&dev, 0, sizeof(dev));
    ferry_strlcpy(dev.id, "dev-1", sizeof(dev.id));
    ferry_strlcpy(dev.device_class, "c1", sizeof(dev.device_class));
    device_key(dev.public_key, device_sk);
    uint8_t kh[32];
    crypto_generichash(kh, 32, dev.public_key, 32, NULL, 0);
    memcpy(dev.key_id, kh, 8);
    pthread_t t;
    if (ingest_store_open(&icfg.store, &store, err, sizeof(err)) != 0 ||
        ingest_store_device_add(store, &dev, err, sizeof(err)) != 0 ||
        ingest_server_new(&icfg, store, &server, err, sizeof(err)) != 0 ||
        ingest_release_register(ingest_server_router(server), ingest_server_ctx(server)) != 0 ||
        pthread_create(&t, NULL, run_server, NULL) != 0) {
        fprintf(stderr, "server: %s\n", err);
        return 2;
    }
    publish(&icfg, root, sk, pubpath);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", ingest_server_port(server));
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return 2;
    self[n] = '\0';
    int rc = 0;
    rc |= scenario(self, root, "delta-path-1", 0, url, pubhex, &seed);
    rc |= scenario(self, root, "delta-path-2", 0, url, pubhex, &seed);
    rc |= scenario(self, root, "full-path-1", 1, url, pubhex, &seed);
    rc |= scenario(self, root, "full-path-2", 1, url, pubhex, &seed);
    ingest_server_stop(server);
    pthread_join(t, NULL);
    ingest_server_free(server);
    ingest_store_close(store);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        rc = 1;
    printf("%s\n", rc ? "FAIL" : "ok");
    return rc ? 1 : 0;
}
