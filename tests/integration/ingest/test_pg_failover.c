/*
 * PostgreSQL primary failover under a writing fleet. Usage:
 *   with-pg-standby.sh test_pg_failover FERRY_INGEST_BINARY
 *
 * with-pg-standby.sh starts a primary and a synchronous streaming standby on loopback; the
 * ingest's store is the multi-host conninfo (target_session_attrs=read-write). Devices post
 * batches in sequence from a writer thread (a batch is repeated until it gets 200, as ferryd
 * does), so that the primary is killed with requests in flight. Proves:
 *   - after SIGKILL of the primary (all its processes, as a host failure), and until the
 *     standby's promotion is started, the ingest answers 503 with Retry-After and nothing
 *     else: no request started after the kill and answered before that gets 200;
 *   - after `pg_ctl promote` writing resumes without restarting the ingest (it reconnects);
 *   - every record of every batch that got 200 is in the new primary, exactly once
 *     (per device: count = highest seq = the last acknowledged seq).
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ingest_harness.h"

#define DEVICES 4
#define PER_BATCH 50
#define GAP_MS 1500 /* between the primary's death and the promotion */

static const char *g_bin;
static char g_dir[128];
static struct ih_server g_srv;
static struct ih_device g_dev[DEVICES];
static uint64_t g_acked[DEVICES]; /* highest seq acknowledged per device */
static unsigned g_503, g_503_no_retry_after, g_other;
/* Shared with the writer thread. */
static atomic_bool g_stop;
/* 0: not yet. promoting: when `pg_ctl promote` was started (the standby may take writes from
 * then on, before pg_ctl returns); promoted: when it returned. */
static _Atomic long long g_killed_ms, g_promoting_ms, g_promoted_ms;
static atomic_int g_acked_in_gap, g_acked_after;
static _Atomic long long g_resumed_ms = -1;

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL) {
        fprintf(stderr, "%s not set (run through with-pg-standby.sh)\n", name);
        exit(2);
    }
    return v;
}

/* Kills the primary as a host failure would: every process of it at once. SIGKILL of the
 * postmaster alone leaves its backends and WAL sender running for a moment (each in a session
 * of its own, so not a process group), and a backend in the middle of a COMMIT can still finish
 * it and have the standby confirm it: a 200 after the "kill" that is not a fault. The postmaster
 * is stopped first so that it forks nothing while its children are found and killed. */
static void kill_primary(pid_t postmaster)
{
    assert_int_equal(kill(postmaster, SIGSTOP), 0);
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t pid = 0;
        if (ferry_parse_u64(e->d_name, 1u << 30, &pid) != 0)
            continue;
        char path[300], line[512];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue; /* gone meanwhile */
        char *got = fgets(line, sizeof(line), f);
        fclose(f);
        /* pid (comm) state ppid ...: comm may hold spaces, so parse after its last ')' */
        const char *rp = got != NULL ? strrchr(line, ')') : NULL;
        char state;
        int ppid = 0;
        if (rp != NULL && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == postmaster)
            kill((pid_t)pid, SIGKILL);
    }
    closedir(d);
    assert_int_equal(kill(postmaster, SIGKILL), 0);
}

/* Posts device d's next batch once; true when it was acknowledged (200). */
static bool post_next(int d, int64_t now)
{
    uint64_t first = g_acked[d] + 1;
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(ih_batch(&g_dev[d], RECORD_METRIC, first, PER_BATCH, now,
                              now - 3600LL * 1000000000LL + (int64_t)first * 1000000, true, &b),
                     0);
    struct ih_resp r;
    bool acked = false;
    long long started = ferry_monotonic_ms();
    if (ih_http(g_srv.port, "POST", "/v1/batches", b.data, b.len, &r) == 0) {
        if (r.status == 200) {
            g_acked[d] = first + PER_BATCH - 1;
            acked = true;
            long long ended = ferry_monotonic_ms(), killed = atomic_load(&g_killed_ms),
                      promoting = atomic_load(&g_promoting_ms),
                      promoted = atomic_load(&g_promoted_ms);
            if (killed > 0 && started > killed && promoting == 0)
                atomic_fetch_add(&g_acked_in_gap, 1);
            if (promoted > 0 && started > promoted) {
                atomic_fetch_add(&g_acked_after, 1);
                long long none = -1;
                atomic_compare_exchange_strong(&g_resumed_ms, &none, ended - promoted);
            }
        } else if (r.status == 503) {
            g_503++;
            if (r.retry_after[0] == '\0')
                g_503_no_retry_after++;
        } else {
            g_other++;
            fprintf(stderr, "device %d: HTTP %ld %.*s\n", d, r.status, (int)r.body.len,
                    (const char *)r.body.data);
        }
    } else {
        g_other++;
    }
    ih_resp_free(&r);
    ferry_buf_free(&b);
    return acked;
}

/* One round: every device posts its next batch once. Returns how many were acknowledged. */
static int round_once(int64_t now)
{
    int acked = 0;
    for (int d = 0; d < DEVICES; d++)
        acked += post_next(d, now) ? 1 : 0;
    return acked;
}

/* The writer thread: rounds without pause while they succeed, 50 ms apart while they do not. */
static void *writer(void *arg)
{
    int64_t now = *(int64_t *)arg;
    while (!atomic_load(&g_stop))
        if (round_once(now) < DEVICES)
            usleep(50000);
    return NULL;
}

static void acknowledged_batches_survive_primary_failover(void **state)
{
    (void)state;
    const char *pg = env("FERRY_TEST_PG"), *promote = env("FERRY_TEST_PG_PROMOTE");
    const char *port2 = env("FERRY_TEST_PG_PORT2");
    uint64_t pid = 0;
    assert_int_equal(ferry_parse_u64(env("FERRY_TEST_PG_PRIMARY_PID"), 1u << 30, &pid), 0);
    snprintf(g_dir, sizeof(g_dir), "/tmp/ferry-failover-test.XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    char ini[192];
    snprintf(ini, sizeof(ini), "%s/ingest.ini", g_dir);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    fprintf(f, "[store]\nlmdb_dir = %s/data\ntype = postgresql\npg_conninfo = %s\n", g_dir, pg);
    assert_int_equal(fclose(f), 0);
    for (int d = 0; d < DEVICES; d++) {
        ih_device_new(&g_dev[d]);
        snprintf(g_dev[d].id, sizeof(g_dev[d].id), "failover-%d", d);
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "'%s' -c '%s' --log.level error device add %s %s >/dev/null",
                 g_bin, ini, g_dev[d].id, g_dev[d].pk_hex);
        assert_int_equal(system(cmd), 0);
    }
    const char *extra[] = {"-c", ini, NULL};
    assert_int_equal(ih_start(&g_srv, g_bin, g_dir, extra), 0);
    int64_t now = ferry_realtime_ns();

    /* Normal operation. */
    for (int round = 0; round < 5; round++)
        assert_int_equal(round_once(now), DEVICES);
    assert_int_equal(g_503 + g_other, 0);

    /* The primary dies with writes in flight: 503 + Retry-After until a primary is back. */
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer, &now), 0);
    usleep(300000);
    kill_primary((pid_t)pid);
    atomic_store(&g_killed_ms, ferry_monotonic_ms());
    usleep(GAP_MS * 1000);

    /* Promote the standby: the ingest reconnects by itself and writing resumes. */
    atomic_store(&g_promoting_ms, ferry_monotonic_ms());
    int promote_rc = system(promote);
    atomic_store(&g_promoted_ms, ferry_monotonic_ms());
    for (int i = 0; i < 400 && atomic_load(&g_acked_after) < 5 * DEVICES; i++)
        usleep(50000);
    atomic_store(&g_stop, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(promote_rc, 0);
    fprintf(stderr,
            "no primary for %d ms: %d batches acknowledged in the gap; writing resumed %lld ms "
            "after the promotion; %u answers 503 in all\n",
            GAP_MS, atomic_load(&g_acked_in_gap), atomic_load(&g_resumed_ms), g_503);
    /* A 200 counts as "in the gap" only if it came before `pg_ctl promote` was even started:
     * the standby takes writes as soon as it is promoted, some time before pg_ctl returns
     * (this once looked like a 200 with no primary: "writing resumed 13 ms after"). */
    assert_int_equal(atomic_load(&g_acked_in_gap), 0);
    assert_true(g_503 > 0);
    assert_true(atomic_load(&g_resumed_ms) >= 0);
    assert_true(atomic_load(&g_acked_after) >= 5 * DEVICES);
    assert_int_equal(g_other, 0);
    assert_int_equal(g_503_no_retry_after, 0);

    /* Every acknowledged record is in the new primary, once. */
    for (int d = 0; d < DEVICES; d++) {
        char cmd[512], line[128] = "";
        snprintf(cmd, sizeof(cmd),
                 "psql -h 127.0.0.1 -p %s -U ferry -d ferry -XtAc \"SELECT count(*) || ' ' ||"
                 " coalesce(max(seq), 0) FROM records WHERE device = '%s' AND stream = %d\"",
                 port2, g_dev[d].id, RECORD_METRIC);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        char *got = fgets(line, sizeof(line), p);
        assert_int_equal(pclose(p), 0);
        assert_non_null(got);
        unsigned long long count = 0, max_seq = 0;
        assert_int_equal(sscanf(line, "%llu %llu", &count, &max_seq), 2);
        /* A batch answered 503 may have been committed after all (its COMMIT's answer was
         * lost): then the device's repeat found it stored. Nothing beyond the last
         * acknowledged batch is possible, since a device sends its next batch only after 200. */
        assert_int_equal(count, max_seq); /* each record once, no hole */
        assert_true(max_seq >= g_acked[d]);
        assert_true(max_seq <= g_acked[d] + PER_BATCH);
    }
    fprintf(stderr, "every acknowledged record (%llu per device) is in the new primary\n",
            (unsigned long long)g_acked[0]);
    assert_int_equal(ih_stop(&g_srv), 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: with-pg-standby.sh test_pg_failover FERRY_INGEST\n");
        return 2;
    }
    g_bin = argv[1];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(acknowledged_batches_survive_primary_failover),
    };
    int rc = cmocka_run_group_tests_name("pg_failover", tests, NULL, NULL);
    if (g_srv.pid > 0) {
        kill(g_srv.pid, SIGKILL);
        waitpid(g_srv.pid, NULL, 0);
    }
    if (g_dir[0] != '\0') {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", g_dir);
    }
    return rc;
}
