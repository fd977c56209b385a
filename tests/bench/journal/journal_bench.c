/*
 * journal_bench.c - journal-bench: append, read and ack/delete rates of the journal, beside raw
 * LMDB at the same transaction size, in one run on the same disk.
 *
 * What is compared:
 *   raw     one LMDB env, one table, MDB_APPEND puts of (8-byte BE key, 8-byte ts + payload),
 *           a commit every --batch records; synced (default LMDB) or MDB_NOSYNC
 *   journal journal_appendv() of --batch records with JOURNAL_APPEND_WAIT from one thread, so
 *           every group commit holds exactly one batch: the same commit size as raw; the group
 *           window is 0 here (nothing else to wait for)
 *   producers  --producers threads calling journal_append() one record at a time in the default
 *           mode (synced group commit, default group window), waiting for durability every
 *           --wait-every records: the "many producers" figure (producers offering more than
 *           one commit can take, which is when group commit matters)
 *   read    journal_read() of every record, oldest first
 *   ack     journal_ack() of 1000-record ranges followed by journal_gc() (deletion)
 *
 * Output: a table, then one `name: value` line per figure. Numbers depend on the disk and the
 * load of the machine; run it on an idle one to compare.
 *
 *   journal-bench [--records N] [--batch N] [--producers N] [--dir DIR] [--quick]
 */
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "journal/journal.h"
#include "tests/unit/journal/jtest.h"

struct figure {
    char name[64];
    double value;
    const char *unit;
};

static struct figure figures[64];
static size_t n_figures;

static void add_figure(const char *name, double value, const char *unit)
{
    if (n_figures < 64) {
        snprintf(figures[n_figures].name, sizeof(figures[n_figures].name), "%s", name);
        figures[n_figures].value = value;
        figures[n_figures].unit = unit;
        n_figures++;
    }
}

static double now_s(void)
{
    return (double)ferry_monotonic_ns() / 1e9;
}

static char *subdir(const char *base, const char *name)
{
    size_t n = strlen(base) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p)
        abort();
    snprintf(p, n, "%s/%s", base, name);
    if (ferry_mkdir_p(p, 0700) != 0)
        abort();
    return p;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "journal-bench: %s: %d\n", what, rc);
    exit(1);
}

/* Raw LMDB: returns records/s; *commits_per_s too. */
static double bench_raw(const char *dir, size_t payload, size_t records, size_t batch, bool sync,
                        double *commits_per_s)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    char path[4200];
    snprintf(path, sizeof(path), "%s/raw.mdb", dir);
    if (mdb_env_create(&env) || mdb_env_set_mapsize(env, 1ull << 32) ||
        mdb_env_set_maxdbs(env, 4) ||
        mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOTLS | (sync ? 0 : MDB_NOSYNC), 0600))
        die("raw env", 0);
    if (mdb_txn_begin(env, NULL, 0, &txn) || mdb_dbi_open(txn, "log", MDB_CREATE, &dbi) ||
        mdb_txn_commit(txn))
        die("raw dbi", 0);
    uint8_t val[8 + 1024];
    memset(val, 'x', sizeof(val));
    uint64_t seq = 1;
    double t0 = now_s();
    size_t commits = 0;
    for (size_t done = 0; done < records;) {
        if (mdb_txn_begin(env, NULL, 0, &txn))
            die("raw begin", 0);
        MDB_cursor *c;
        if (mdb_cursor_open(txn, dbi, &c))
            die("raw cursor", 0);
        for (size_t i = 0; i < batch && done < records; i++, done++, seq++) {
            uint8_t key[8];
            for (int b = 7, s = 0; b >= 0; b--, s += 8)
                key[b] = (uint8_t)(seq >> s);
            memcpy(val, &seq, 8);
            MDB_val k = {8, key}, v = {8 + payload, val};
            int rc = mdb_cursor_put(c, &k, &v, MDB_APPEND);
            if (rc)
                die("raw put", rc);
        }
        mdb_cursor_close(c);
        if (mdb_txn_commit(txn))
            die("raw commit", 0);
        commits++;
    }
    double dt = now_s() - t0;
    mdb_env_close(env);
    *commits_per_s = (double)commits / dt;
    return (double)records / dt;
}

static struct journal *open_journal(const char *dir, enum journal_durability mode,
                                    uint32_t window_us)
{
    struct journal_config cfg;
    journal_config_init(&cfg);
    cfg.quota_bytes = 4ull << 30;
    cfg.durability = mode;
    cfg.group_window_us = window_us;
    cfg.sync_interval_ms = 1000;
    struct journal *j = NULL;
    char err[512];
    int rc = journal_open(dir, &cfg, &j, NULL, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "journal-bench: open %s: %s\n", dir, err);
        exit(1);
    }
    return j;
}

/* The first commit of a stream writes journal.hwm (sequence reservation, three fsyncs; again
 * only every 2^20 records): commit one record before the clock starts, as a running daemon
 * would have done long before. */
static void warm_up(struct journal *j, enum record_stream s, const void *buf, size_t len)
{
    if (journal_append(j, s, 0, buf, len, JOURNAL_APPEND_WAIT, NULL))
        die("warm-up append", 0);
}

/* One producer, appendv of `batch` records with WAIT: one commit per batch. */
static double bench_journal_batches(const char *dir, enum journal_durability mode, size_t payload,
                                    size_t records, size_t batch, double *commits_per_s)
{
    struct journal *j = open_journal(dir, mode, 0);
    struct journal_append_req *reqs = calloc(batch, sizeof(*reqs));
    uint8_t *buf = malloc(payload);
    if (!reqs || !buf)
        die("malloc", 0);
    memset(buf, 'x', payload);
    warm_up(j, RECORD_LOG, buf, payload);
    struct journal_stats st0, st1;
    if (journal_stats(j, &st0))
        die("stats", 0);
    double t0 = now_s();
    for (size_t done = 0; done < records;) {
        size_t n = records - done < batch ? records - done : batch;
        for (size_t i = 0; i < n; i++)
            reqs[i] = (struct journal_append_req){RECORD_LOG, (int64_t)(done + i), buf, payload, 0};
        int rc = journal_appendv(j, reqs, n, JOURNAL_APPEND_WAIT);
        if (rc)
            die("appendv", rc);
        done += n;
    }
    double dt = now_s() - t0;
    if (journal_stats(j, &st1))
        die("stats", 0);
    *commits_per_s = (double)(st1.commits - st0.commits) / dt;
    if (journal_close(j))
        die("close", 0);
    free(reqs);
    free(buf);
    return (double)records / dt;
}

struct producer {
    struct journal *j;
    size_t records;
    size_t payload;
    size_t wait_every;
    int rc;
};

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    uint8_t buf[1024];
    memset(buf, 'p', sizeof(buf));
    for (size_t i = 0; i < p->records; i++) {
        unsigned flags = (i % p->wait_every == p->wait_every - 1 || i + 1 == p->records)
                             ? JOURNAL_APPEND_WAIT
                             : 0;
        int rc = journal_append(p->j, RECORD_METRIC, (int64_t)i, buf, p->payload, flags, NULL);
        if (rc) {
            p->rc = rc;
            break;
        }
    }
    return NULL;
}

static double bench_producers(const char *dir, enum journal_durability mode, size_t payload,
                              size_t records, int producers, size_t wait_every,
                              double *commits_per_s, double *avg_group)
{
    struct journal *j = open_journal(dir, mode, 200);
    struct producer p[64];
    pthread_t t[64];
    static uint8_t wbuf[100];
    warm_up(j, RECORD_METRIC, wbuf, payload < sizeof(wbuf) ? payload : sizeof(wbuf));
    struct journal_stats st0, st1;
    if (journal_stats(j, &st0))
        die("stats", 0);
    double t0 = now_s();
    for (int i = 0; i < producers; i++) {
        p[i] = (struct producer){j, records / (size_t)producers, payload, wait_every, 0};
        if (pthread_create(&t[i], NULL, producer_main, &p[i]))
            die("pthread_create", 0);
    }
    for (int i = 0; i < producers; i++) {
        pthread_join(t[i], NULL);
        if (p[i].rc)
            die("producer append", p[i].rc);
    }
    double dt = now_s() - t0;
    if (journal_stats(j, &st1))
        die("stats", 0);
    uint64_t commits = st1.commits - st0.commits;
    *commits_per_s = (double)commits / dt;
    *avg_group =
        commits ? (double)(st1.committed_records - st0.committed_records) / (double)commits : 0;
    if (journal_close(j))
        die("close", 0);
    return (double)(records / (size_t)producers * (size_t)producers) / dt;
}

static int count_cb(void *arg, const struct journal_entry *e)
{
    *(size_t *)arg += e->len;
    return 0;
}

/* Reads everything (in 1 MiB budgets, as the sync engine would), then acks and deletes it. */
static void bench_read_ack(const char *dir, size_t payload, size_t records, double *read_rate,
                           double *ack_rate)
{
    struct journal *j = open_journal(dir, JOURNAL_SYNC_COMMIT, 0);
    struct journal_append_req reqs[1000];
    static uint8_t buf[1024];
    for (size_t done = 0; done < records; done += 1000) {
        for (size_t i = 0; i < 1000; i++)
            reqs[i] = (struct journal_append_req){RECORD_LOG, 1, buf, payload, 0};
        if (journal_appendv(j, reqs, 1000, done + 1000 >= records ? JOURNAL_APPEND_WAIT : 0))
            die("fill", 0);
    }
    size_t total = 0, bytes = 0;
    struct journal_read_opts o = {0, 1 << 20, 0, 0};
    struct journal_read_result res;
    double t0 = now_s();
    do {
        if (journal_read(j, RECORD_LOG, &o, count_cb, &bytes, &res))
            die("read", 0);
        total += res.records;
        o.from_seq = res.last_seq;
    } while (res.more);
    *read_rate = (double)total / (now_s() - t0);
    if (total != records)
        die("read count", (int)total);
    t0 = now_s();
    for (uint64_t first = 1; first <= records; first += 1000) {
        struct journal_range r = {first, first + 999};
        if (journal_ack(j, RECORD_LOG, &r, 1))
            die("ack", 0);
    }
    size_t deleted = 0;
    if (journal_gc(j, 0, &deleted, NULL))
        die("gc", 0);
    *ack_rate = (double)records / (now_s() - t0);
    struct journal_stats st;
    if (journal_stats(j, &st) || st.stream[RECORD_LOG].records != 0)
        die("records left after ack", 0);
    if (journal_close(j))
        die("close", 0);
}

/* The machine this runs on is shared: every figure is the best of `repeat` runs. */
static int repeat = 3;

static double best_raw(const char *base, int *run, size_t payload, size_t records, size_t batch,
                       bool sync, double *cps)
{
    double best = 0;
    for (int r = 0; r < repeat; r++) {
        char dname[32];
        snprintf(dname, sizeof(dname), "r%d", (*run)++);
        char *d = subdir(base, dname);
        double c;
        double rate = bench_raw(d, payload, records, batch, sync, &c);
        jtest_rm_rf(d);
        free(d);
        if (rate > best) {
            best = rate;
            *cps = c;
        }
    }
    return best;
}

static double best_journal(const char *base, int *run, enum journal_durability mode, size_t payload,
                           size_t records, size_t batch, double *cps)
{
    double best = 0;
    for (int r = 0; r < repeat; r++) {
        char dname[32];
        snprintf(dname, sizeof(dname), "j%d", (*run)++);
        char *d = subdir(base, dname);
        double c;
        double rate = bench_journal_batches(d, mode, payload, records, batch, &c);
        jtest_rm_rf(d);
        free(d);
        if (rate > best) {
            best = rate;
            *cps = c;
        }
    }
    return best;
}

static double best_producers(const char *base, int *run, enum journal_durability mode,
                             size_t records, int producers, size_t wait_every, double *cps,
                             double *group)
{
    double best = 0;
    for (int r = 0; r < repeat; r++) {
        char dname[32];
        snprintf(dname, sizeof(dname), "p%d", (*run)++);
        char *d = subdir(base, dname);
        double c, g;
        double rate = bench_producers(d, mode, 100, records, producers, wait_every, &c, &g);
        jtest_rm_rf(d);
        free(d);
        if (rate > best) {
            best = rate;
            *cps = c;
            *group = g;
        }
    }
    return best;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: journal-bench [--records N] [--batch N] [--producers N] [--dir DIR] [--quick]\n"
            "Appends 100 B and 1 KiB records in each durability mode beside raw LMDB\n"
            "(MDB_APPEND, same records per commit), many producers in the default mode, and\n"
            "read and ack/delete rates. Prints a table, then `name: value` lines.\n"
            "  --records N    records per measurement (default 300000; --quick: 20000)\n"
            "  --batch N      records per commit for the same-size comparison (default 1000)\n"
            "  --producers N  producer threads for the many-producer figure (default 8)\n"
            "  --wait-every N each producer waits for durability every N records (10000)\n"
            "  --repeat N     best of N runs per figure (default 3; --quick: 1)\n"
            "  --dir DIR      where to put the files (default: a new dir under $TMPDIR)\n");
}

int main(int argc, char **argv)
{
    uint64_t records = 300000, batch = 1000, producers = 8, wait_every = 10000;
    const char *dir_arg = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quick")) {
            records = 20000;
            repeat = 1;
            continue;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        i++;
        int bad = 0;
        if (!strcmp(a, "--records"))
            bad = ferry_parse_u64(v, 100000000, &records) || records < 1000;
        else if (!strcmp(a, "--batch"))
            bad = ferry_parse_u64(v, 100000, &batch) || batch == 0;
        else if (!strcmp(a, "--producers"))
            bad = ferry_parse_u64(v, 64, &producers) || producers == 0;
        else if (!strcmp(a, "--repeat")) {
            uint64_t r;
            bad = ferry_parse_u64(v, 100, &r) || r == 0;
            repeat = (int)r;
        } else if (!strcmp(a, "--wait-every"))
            bad = ferry_parse_u64(v, 100000000, &wait_every) || wait_every == 0;
        else if (!strcmp(a, "--dir"))
            dir_arg = v;
        else
            bad = 1;
        if (bad) {
            usage(stderr);
            return 2;
        }
    }
    char *base = dir_arg ? strdup(dir_arg) : jtest_tmpdir();
    static const size_t sizes[] = {100, 1024};
    static const enum journal_durability modes[] = {JOURNAL_SYNC_COMMIT, JOURNAL_SYNC_PERIODIC,
                                                    JOURNAL_SYNC_OS};
    printf("journal-bench: %" PRIu64 " records per run, %" PRIu64 " records per commit, dir %s\n\n",
           records, batch, base);
    printf("%-34s %14s %14s %10s\n", "measurement", "records/s", "commits/s", "vs raw");
    int run = 0;
    for (size_t si = 0; si < 2; si++) {
        size_t sz = sizes[si];
        size_t n = sz > 100 ? (size_t)records / 2 : (size_t)records;
        /* synced commits are slow on a busy disk: fewer of them, same commit size */
        size_t n_synced = n / 10 > batch * 20 ? n / 10 : batch * 20;
        char name[96];
        /* Interleaved rounds (raw, then the journal in each mode, again and again) so that a
         * burst of load from other processes hits both sides alike; the best round counts. */
        double best[5] = {0}, best_cps[5] = {0};
        int rounds = repeat;
        repeat = 1;
        for (int r = 0; r < rounds; r++) {
            for (int k = 0; k < 5; k++) {
                double c = 0, rate;
                if (k < 2) {
                    rate = best_raw(base, &run, sz, k == 0 ? n_synced : n, batch, k == 0, &c);
                } else {
                    bool synced = modes[k - 2] == JOURNAL_SYNC_COMMIT;
                    rate = best_journal(base, &run, modes[k - 2], sz, synced ? n_synced : n, batch,
                                        &c);
                }
                if (rate > best[k]) {
                    best[k] = rate;
                    best_cps[k] = c;
                }
            }
        }
        repeat = rounds;
        double raw_sync_cps = best_cps[0], raw_nosync_cps = best_cps[1];
        double raw_sync = best[0], raw_nosync = best[1];
        snprintf(name, sizeof(name), "raw lmdb %zuB synced", sz);
        printf("%-34s %14.0f %14.0f %10s\n", name, raw_sync, raw_sync_cps, "-");
        snprintf(name, sizeof(name), "raw lmdb %zuB nosync", sz);
        printf("%-34s %14.0f %14.0f %10s\n", name, raw_nosync, raw_nosync_cps, "-");
        snprintf(name, sizeof(name), "raw_lmdb_%zub_synced_rec_per_s", sz);
        add_figure(name, raw_sync, "");
        snprintf(name, sizeof(name), "raw_lmdb_%zub_synced_commits_per_s", sz);
        add_figure(name, raw_sync_cps, "");
        snprintf(name, sizeof(name), "raw_lmdb_%zub_nosync_rec_per_s", sz);
        add_figure(name, raw_nosync, "");
        for (size_t mi = 0; mi < 3; mi++) {
            double cps = best_cps[2 + mi];
            bool synced = modes[mi] == JOURNAL_SYNC_COMMIT;
            double rate = best[2 + mi];
            double ref = synced ? raw_sync : raw_nosync;
            char ratio[16];
            snprintf(ratio, sizeof(ratio), "%.2fx", rate / ref);
            snprintf(name, sizeof(name), "journal %zuB %s", sz, journal_durability_name(modes[mi]));
            printf("%-34s %14.0f %14.0f %10s\n", name, rate, cps, ratio);
            snprintf(name, sizeof(name), "journal_%zub_%s_rec_per_s", sz,
                     journal_durability_name(modes[mi]));
            add_figure(name, rate, "");
            snprintf(name, sizeof(name), "journal_%zub_%s_vs_raw", sz,
                     journal_durability_name(modes[mi]));
            add_figure(name, rate / ref, "");
        }
    }
    {
        char dname[32], name[96];
        char *d;
        for (int m = 0; m < 2; m++) {
            enum journal_durability mode = m == 0 ? JOURNAL_SYNC_COMMIT : JOURNAL_SYNC_OS;
            double cps = 0, group = 0;
            double rate = best_producers(base, &run, mode, (size_t)records * 4, (int)producers,
                                         (size_t)wait_every, &cps, &group);
            snprintf(name, sizeof(name), "journal 100B %s %" PRIu64 " producers",
                     journal_durability_name(mode), producers);
            printf("%-34s %14.0f %14.0f %10s\n", name, rate, cps, "-");
            snprintf(name, sizeof(name), "journal_100b_%s_many_producers_rec_per_s",
                     journal_durability_name(mode));
            add_figure(name, rate, "");
            snprintf(name, sizeof(name), "journal_100b_%s_many_producers_commits_per_s",
                     journal_durability_name(mode));
            add_figure(name, cps, "");
            snprintf(name, sizeof(name), "journal_100b_%s_many_producers_avg_group",
                     journal_durability_name(mode));
            add_figure(name, group, "");
        }
        add_figure("producers", (double)producers, "");

        snprintf(dname, sizeof(dname), "a%d", run++);
        d = subdir(base, dname);
        double read_rate, ack_rate;
        bench_read_ack(d, 100, (size_t)records, &read_rate, &ack_rate);
        jtest_rm_rf(d);
        free(d);
        printf("%-34s %14.0f %14s %10s\n", "journal 100B read (1 MiB budget)", read_rate, "-", "-");
        printf("%-34s %14.0f %14s %10s\n", "journal 100B ack+delete", ack_rate, "-", "-");
        add_figure("journal_100b_read_rec_per_s", read_rate, "");
        add_figure("journal_100b_ack_delete_rec_per_s", ack_rate, "");
    }
    printf("\n");
    for (size_t i = 0; i < n_figures; i++) {
        if (figures[i].value >= 100)
            printf("%s: %.0f\n", figures[i].name, figures[i].value);
        else
            printf("%s: %.2f\n", figures[i].name, figures[i].value);
    }
    if (!dir_arg)
        jtest_rm_rf(base);
    free(base);
    return 0;
}
