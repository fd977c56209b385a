/*
 * journal_crash.c - crash test of the journal: SIGKILL at random moments loses nothing durable.
 *
 * The parent forks a child that opens the journal (cycling through the three durability modes;
 * a SIGKILL is a process crash, which every mode survives), appends records from two threads
 * and reports every record whose append returned with JOURNAL_APPEND_WAIT over a pipe: (stream,
 * seq, id). It also acknowledges old records (announcing the range on the pipe before the call)
 * and now and then compacts the file. The parent kills it with SIGKILL after a random delay,
 * then opens the journal read-only and checks, per stream:
 *   - every reported, unacknowledged record is there, once, with the payload its id defines;
 *   - records appear in strictly increasing sequence order, each payload intact (every payload
 *     is derived from its id, so even records committed but not yet reported are checked);
 *   - the next sequence is above every reported one (no reuse after the crash);
 *   - the child's open never needed recovery (a kill must not damage the file);
 *   - temporary files of killed writers (journal.hwm.tmp.*, journal.mdb.compact) do not pile up.
 *
 *   journal-crash [--kills N] [--min-kills N] [--max-seconds S] [--seed N] [--dir D] [--verbose]
 *
 * Exit 0 when at least --min-kills kills were checked without a failure.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "journal/journal.h"
#include "tests/unit/journal/jtest.h"

#define MSG_OPEN 1
#define MSG_RECORD 2
#define MSG_ACK 3

struct msg {
    uint32_t type;
    uint32_t stream;
    uint64_t a; /* record: seq; ack: first; open: recovered */
    uint64_t b; /* record: id; ack: last */
};

/* ---- payloads ------------------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Payload of record `id`: the id (8 bytes LE), then 0..299 bytes derived from it. */
static size_t make_payload(uint64_t id, uint8_t *out)
{
    uint64_t st = id;
    size_t len = 8 + (size_t)(splitmix(&st) % 300);
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(id >> (8 * i));
    for (size_t i = 8; i < len; i++)
        out[i] = (uint8_t)splitmix(&st);
    return len;
}

static bool payload_ok(const uint8_t *p, size_t len, uint64_t *id_out)
{
    if (len < 8)
        return false;
    uint64_t id = 0;
    for (int i = 0; i < 8; i++)
        id |= (uint64_t)p[i] << (8 * i);
    uint8_t expect[400];
    size_t elen = make_payload(id, expect);
    *id_out = id;
    return elen == len && memcmp(expect, p, len) == 0;
}

/* ---- child --------------------------------------------------------------------------------- */

struct child {
    struct journal *j;
    int fd;
    uint64_t iteration;
    pthread_mutex_t mu;
    uint64_t reported_max[RECORD_STREAM_COUNT];
    uint64_t acked[RECORD_STREAM_COUNT];
    uint64_t counter;
};

static void send_msg(struct child *c, const struct msg *m)
{
    /* 24-byte writes are atomic on a pipe (< PIPE_BUF), so two threads cannot interleave. */
    if (write(c->fd, m, sizeof(*m)) != (ssize_t)sizeof(*m))
        _exit(3);
}

static void *child_thread(void *arg)
{
    struct child *c = arg;
    uint8_t payload[400];
    uint64_t rnd = c->iteration * 7919 + (uint64_t)pthread_self();
    for (;;) {
        pthread_mutex_lock(&c->mu);
        uint64_t id = (c->iteration << 32) | ++c->counter;
        pthread_mutex_unlock(&c->mu);
        enum record_stream s = (enum record_stream)(splitmix(&rnd) % RECORD_STREAM_COUNT);
        size_t len = make_payload(id, payload);
        uint64_t seq = 0;
        unsigned flags = splitmix(&rnd) % 4 ? JOURNAL_APPEND_WAIT : 0;
        int rc = journal_append(c->j, s, (int64_t)id, payload, len, flags, &seq);
        if (rc == 0 && !(flags & JOURNAL_APPEND_WAIT))
            rc = journal_wait(c->j, s, seq);
        if (rc) {
            fprintf(stderr, "child: append: %s\n", journal_strerror(rc));
            _exit(4);
        }
        struct msg m = {MSG_RECORD, (uint32_t)s, seq, id};
        pthread_mutex_lock(&c->mu);
        send_msg(c, &m);
        if (seq > c->reported_max[s])
            c->reported_max[s] = seq;
        /* keep the journal small: acknowledge all but the newest 300 of a stream */
        if (c->reported_max[s] > c->acked[s] + 600) {
            struct journal_range r = {c->acked[s] + 1, c->reported_max[s] - 300};
            struct msg am = {MSG_ACK, (uint32_t)s, r.first, r.last};
            send_msg(c, &am); /* announced first: the parent must allow it to be gone */
            c->acked[s] = r.last;
            pthread_mutex_unlock(&c->mu);
            rc = journal_ack(c->j, s, &r, 1);
            if (rc) {
                fprintf(stderr, "child: ack: %s\n", journal_strerror(rc));
                _exit(5);
            }
            if (splitmix(&rnd) % 16 == 0 && journal_gc(c->j, 0, NULL, NULL) != 0)
                _exit(6);
            if (splitmix(&rnd) % 64 == 0) {
                char err[256];
                rc = journal_compact(c->j, err, sizeof(err));
                if (rc) {
                    fprintf(stderr, "child: compact: %s\n", err);
                    _exit(7);
                }
            }
        } else {
            pthread_mutex_unlock(&c->mu);
        }
    }
    return NULL;
}

static void child_main(const char *dir, int fd, uint64_t iteration, const uint64_t *acked,
                       const uint64_t *reported_max)
{
    struct journal_config cfg;
    journal_config_init(&cfg);
    cfg.quota_bytes = 64ull * 1024 * 1024;
    cfg.durability = (enum journal_durability)(iteration % 3);
    cfg.sync_interval_ms = 5;
    struct child c;
    memset(&c, 0, sizeof(c));
    c.fd = fd;
    c.iteration = iteration;
    pthread_mutex_init(&c.mu, NULL);
    for (int s = 0; s < RECORD_STREAM_COUNT; s++) {
        c.acked[s] = acked[s];
        c.reported_max[s] = reported_max[s];
    }
    struct journal_open_info info;
    char err[512];
    int rc = journal_open(dir, &cfg, &c.j, &info, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "child: open: %s: %s\n", journal_strerror(rc), err);
        _exit(2);
    }
    if (info.recovered)
        fprintf(stderr, "child: journal needed recovery: %s\n", info.reason);
    struct msg m = {MSG_OPEN, 0, info.recovered ? 1 : 0, 0};
    send_msg(&c, &m);
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, &c) != 0)
        _exit(8);
    child_thread(&c);
}

/* ---- parent -------------------------------------------------------------------------------- */

struct expected {
    uint64_t *ids; /* ids[seq]: reported id, 0 when not reported */
    size_t cap;
    uint64_t reported_max;
    uint64_t acked; /* everything <= this may be gone */
};

static void expect_record(struct expected *e, uint64_t seq, uint64_t id)
{
    if (seq >= e->cap) {
        size_t cap = e->cap ? e->cap : 1024;
        while (cap <= seq)
            cap *= 2;
        uint64_t *p = realloc(e->ids, cap * sizeof(*p));
        if (!p)
            abort();
        memset(p + e->cap, 0, (cap - e->cap) * sizeof(*p));
        e->ids = p;
        e->cap = cap;
    }
    e->ids[seq] = id;
    if (seq > e->reported_max)
        e->reported_max = seq;
}

struct check {
    struct expected *e;
    uint64_t prev_seq;
    uint64_t next_expected; /* next reported, unacked seq we must meet */
    int failures;
    int stream;
};

static void advance_expected(struct check *k)
{
    while (k->next_expected <= k->e->reported_max &&
           (k->next_expected <= k->e->acked || k->next_expected >= k->e->cap ||
            k->e->ids[k->next_expected] == 0))
        k->next_expected++;
}

static int check_cb(void *arg, const struct journal_entry *en)
{
    struct check *k = arg;
    uint64_t id;
    if (en->seq <= k->prev_seq) {
        fprintf(stderr, "FAIL stream %d: seq %" PRIu64 " after %" PRIu64 "\n", k->stream, en->seq,
                k->prev_seq);
        k->failures++;
    }
    k->prev_seq = en->seq;
    if (!payload_ok(en->payload, en->len, &id)) {
        fprintf(stderr, "FAIL stream %d seq %" PRIu64 ": payload damaged (%zu bytes)\n", k->stream,
                en->seq, en->len);
        k->failures++;
        return 0;
    }
    if (en->seq < k->e->cap && k->e->ids[en->seq] && k->e->ids[en->seq] != id) {
        fprintf(stderr, "FAIL stream %d seq %" PRIu64 ": id %" PRIx64 ", reported %" PRIx64 "\n",
                k->stream, en->seq, id, k->e->ids[en->seq]);
        k->failures++;
    }
    advance_expected(k);
    if (k->next_expected < en->seq && k->next_expected <= k->e->reported_max) {
        fprintf(stderr,
                "FAIL stream %d: reported seq %" PRIu64 " missing (next present %" PRIu64 ")\n",
                k->stream, k->next_expected, en->seq);
        k->failures++;
        k->next_expected = en->seq;
    }
    if (k->next_expected == en->seq)
        k->next_expected++;
    return 0;
}

static int verify(const char *dir, struct expected *exp)
{
    struct journal_config ro;
    journal_config_init(&ro);
    ro.read_only = true;
    struct journal *j = NULL;
    char err[512] = "";
    int rc = journal_open(dir, &ro, &j, NULL, err, sizeof(err));
    if (rc == JOURNAL_ENOTFOUND)
        return 0;
    if (rc) {
        fprintf(stderr, "FAIL read-only open: %s: %s\n", journal_strerror(rc), err);
        return 1;
    }
    int failures = 0;
    struct journal_stats st;
    if (journal_stats(j, &st) != 0)
        failures++;
    for (int s = 0; s < RECORD_STREAM_COUNT; s++) {
        struct check k = {&exp[s], 0, exp[s].acked + 1, 0, s};
        rc = journal_read(j, (enum record_stream)s, NULL, check_cb, &k, NULL);
        if (rc) {
            fprintf(stderr, "FAIL read stream %d: %s\n", s, journal_strerror(rc));
            failures++;
        }
        advance_expected(&k);
        if (k.next_expected <= exp[s].reported_max) {
            fprintf(stderr, "FAIL stream %d: reported seq %" PRIu64 " missing at the end\n", s,
                    k.next_expected);
            failures++;
        }
        if (st.stream[s].next_seq <= exp[s].reported_max) {
            fprintf(stderr, "FAIL stream %d: next_seq %" PRIu64 " <= reported %" PRIu64 "\n", s,
                    st.stream[s].next_seq, exp[s].reported_max);
            failures++;
        }
        failures += k.failures;
    }
    (void)journal_close(j);
    return failures;
}

/* Counts leftovers of killed writers that the next writable open must have removed. */
static int stale_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strstr(e->d_name, ".tmp.") || strstr(e->d_name, ".compact"))
            n++;
    }
    closedir(d);
    return n;
}

/* Reads messages until EOF; returns -1 if the child said its open needed recovery. */
static int drain(int fd, struct expected *exp, bool *opened)
{
    struct msg m;
    size_t got = 0;
    uint8_t *buf = (uint8_t *)&m;
    int rc = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, sizeof(m) - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got < sizeof(m))
            continue;
        got = 0;
        if (m.stream >= RECORD_STREAM_COUNT)
            return -1;
        if (m.type == MSG_OPEN) {
            *opened = true;
            if (m.a)
                rc = -1;
        } else if (m.type == MSG_RECORD) {
            expect_record(&exp[m.stream], m.a, m.b);
        } else if (m.type == MSG_ACK) {
            if (m.b > exp[m.stream].acked)
                exp[m.stream].acked = m.b;
        }
    }
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: journal-crash [--kills N] [--min-kills N] [--max-seconds S] [--seed N]\n"
                 "                     [--dir DIR] [--verbose]\n"
                 "Appends in a child, SIGKILLs it at random moments, and checks after each kill\n"
                 "that every record the child saw durable is in the journal, intact, once, in\n"
                 "order. --max-seconds 0 means no time limit. Exit 0 on success.\n");
}

int main(int argc, char **argv)
{
    uint64_t kills = 150, min_kills = 100, max_seconds = 60, seed = (uint64_t)time(NULL);
    const char *dir_arg = NULL;
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--verbose") == 0) {
            verbose = true;
            continue;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        i++;
        int bad = 0;
        if (strcmp(a, "--kills") == 0)
            bad = ferry_parse_u64(v, UINT32_MAX, &kills);
        else if (strcmp(a, "--min-kills") == 0)
            bad = ferry_parse_u64(v, UINT32_MAX, &min_kills);
        else if (strcmp(a, "--max-seconds") == 0)
            bad = ferry_parse_u64(v, 1000000, &max_seconds);
        else if (strcmp(a, "--seed") == 0)
            bad = ferry_parse_u64(v, UINT64_MAX, &seed);
        else if (strcmp(a, "--dir") == 0)
            dir_arg = v;
        else
            bad = 1;
        if (bad) {
            usage(stderr);
            return 2;
        }
    }
    if (min_kills > kills)
        min_kills = kills;
    char *dir = dir_arg ? strdup(dir_arg) : jtest_tmpdir();
    printf("journal-crash: dir %s seed %" PRIu64 "\n", dir, seed);
    fflush(stdout);
    signal(SIGPIPE, SIG_IGN);
    struct expected exp[RECORD_STREAM_COUNT];
    memset(exp, 0, sizeof(exp));
    uint64_t rnd = seed;
    long long start = ferry_monotonic_ms();
    uint64_t done = 0, records = 0;
    int failures = 0;
    while (done < kills && !failures) {
        if (max_seconds && ferry_monotonic_ms() - start > (long long)max_seconds * 1000)
            break;
        int fds[2];
        if (pipe(fds) != 0) {
            perror("pipe");
            return 1;
        }
        uint64_t acked[RECORD_STREAM_COUNT], rmax[RECORD_STREAM_COUNT];
        for (int s = 0; s < RECORD_STREAM_COUNT; s++) {
            acked[s] = exp[s].acked;
            rmax[s] = exp[s].reported_max;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            close(fds[0]);
            child_main(dir, fds[1], done + 1, acked, rmax);
            _exit(0);
        }
        close(fds[1]);
        /* Kill at a random moment: one time in eight during the open (recovery checks,
         * verifier child), otherwise 0-40 ms after the open, while appending. */
        long delay_us = (long)(splitmix(&rnd) % 40000);
        bool opened = false;
        bool open_recovered = false;
        if (splitmix(&rnd) % 8 == 0) {
            delay_us = (long)(splitmix(&rnd) % 5000);
        } else {
            struct pollfd pfd = {fds[0], POLLIN, 0};
            struct msg m;
            if (poll(&pfd, 1, 10000) == 1 && read(fds[0], &m, sizeof(m)) == (ssize_t)sizeof(m) &&
                m.type == MSG_OPEN) {
                opened = true;
                open_recovered = m.a != 0;
            }
        }
        usleep((useconds_t)delay_us);
        kill(pid, SIGKILL);
        uint64_t before = 0;
        for (int s = 0; s < RECORD_STREAM_COUNT; s++)
            before += exp[s].reported_max;
        int drc = drain(fds[0], exp, &opened);
        close(fds[0]);
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
            fprintf(stderr, "FAIL child ended by itself (status %d) before the kill\n", status);
            failures++;
            break;
        }
        /* the last kill may leave one of each; older ones must have been cleaned by opens */
        if (stale_files(dir) > 2) {
            fprintf(stderr, "FAIL temporary files of killed writers pile up in %s\n", dir);
            failures++;
            break;
        }
        if (drc < 0 || open_recovered) {
            fprintf(stderr, "FAIL the child's open needed recovery after a kill\n");
            failures++;
            break;
        }
        failures += verify(dir, exp);
        uint64_t after = 0;
        for (int s = 0; s < RECORD_STREAM_COUNT; s++)
            after += exp[s].reported_max;
        records += after - before;
        done++;
        if (!verbose && done % 1000 == 0) {
            printf("journal-crash: %" PRIu64 " kills checked, %.0f s\n", done,
                   (double)(ferry_monotonic_ms() - start) / 1000.0);
            fflush(stdout);
        }
        if (verbose)
            printf("kill %" PRIu64 ": after %ld us, opened %d, seq now %" PRIu64 "/%" PRIu64
                   "/%" PRIu64 "\n",
                   done, delay_us, opened, exp[0].reported_max, exp[1].reported_max,
                   exp[2].reported_max);
    }
    printf("journal-crash: %" PRIu64 " kills checked in %.1f s, highest seqs %" PRIu64 "/%" PRIu64
           "/%" PRIu64 ", %d failures\n",
           done, (double)(ferry_monotonic_ms() - start) / 1000.0, exp[0].reported_max,
           exp[1].reported_max, exp[2].reported_max, failures);
    (void)records;
    for (int s = 0; s < RECORD_STREAM_COUNT; s++)
        free(exp[s].ids);
    if (!failures && !dir_arg)
        jtest_rm_rf(dir);
    else if (failures)
        printf("journal-crash: journal kept in %s for inspection\n", dir);
    free(dir);
    if (failures)
        return 1;
    if (done < min_kills) {
        fprintf(stderr,
                "journal-crash: only %" PRIu64 " kills in the time allowed (need %" PRIu64 ")\n",
                done, min_kills);
        return 1;
    }
    return 0;
}
