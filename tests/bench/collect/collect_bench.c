/*
 * collect_bench.c - collect-bench: what ferryd's collectors cost (issue "ferryd is the one agent
 * on the device", budget section).
 *
 *   1. CPU time per collection round and records per round of each collector (the system
 *      collector on this machine's /proc; the Jetson collector on this machine when it is a
 *      Jetson, else on a fixture tree given with --jetson-root), and of all of them together,
 *      with the share of one core at the default 10 s interval.
 *   2. Idle wakeups of a real ferryd (--ferryd PATH) running the default collectors and one idle
 *      tail: context switches of all its threads per second, after a warm-up.
 *   3. Tail throughput: a writer appends 100-byte lines at up to 50 MB/s to a file that a tail
 *      follows into a journal in durable (commit) mode; `cat FILE > /dev/null` reads the same
 *      file in the same run. Lines per second from the first line written to the last committed.
 *      Then "catch-up": the tail reads an already written file of the same lines from its start,
 *      timed against `cat` of that file just before (the tail's capacity and its ratio to cat,
 *      which stays meaningful on a shared, loaded machine).
 *
 * Prints a table, then "name: value" lines (the figures docs cite). --quick: a short run for
 * the test suite (bench.collect.quick), whose figures mean nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "engine/collect/collect.h"
#include "journal/journal.h"

static void die(const char *what)
{
    fprintf(stderr, "collect-bench: %s\n", what);
    exit(1);
}

struct per {
    const char *name;
    double cpu_us_per_round;
    double records_per_round;
};

static struct per run_rounds(struct collector *c, const char *name, int rounds)
{
    struct collect_out out;
    collect_out_init(&out);
    char err[COLLECT_ERRBUF];
    /* One warm-up round (cpu usage needs two samples, page cache, first allocation). */
    (void)collect_run(c, 1, &out, err, sizeof err);
    uint64_t cpu0 = c->cpu_ns, rec0 = c->records;
    for (int i = 0; i < rounds; i++) {
        collect_out_reset(&out);
        (void)collect_run(c, 2 + i, &out, err, sizeof err);
    }
    struct per p = {name, (double)(c->cpu_ns - cpu0) / 1000.0 / rounds,
                    (double)(c->records - rec0) / rounds};
    collect_out_free(&out);
    return p;
}

/* Context switches of one thread: voluntary ones (the thread slept and was woken: a timer, a
 * futex, an I/O completion) and involuntary ones (preempted: these grow with the machine's load,
 * not with ferryd's work), with the thread's name (pthread_setname_np, /proc/PID/task/TID/comm). */
struct thread_ctxt {
    int tid;
    char name[32];
    long long vol, invol;
};

#define MAX_THREADS 64

/* Snapshot of every thread of pid into t (at most MAX_THREADS). Returns the count, -1 when pid
 * is gone. */
static int ctxt_switches(pid_t pid, struct thread_ctxt *t)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < MAX_THREADS) {
        if (e->d_name[0] == '.')
            continue;
        char path[600], buf[4096];
        if (snprintf(path, sizeof path, "%s/%s/status", dir, e->d_name) >= (int)sizeof path)
            continue;
        long len = collect_read_file("", path, buf, sizeof buf);
        if (len <= 0)
            continue;
        struct thread_ctxt *c = &t[n];
        memset(c, 0, sizeof *c);
        c->tid = (int)strtol(e->d_name, NULL, 10);
        const char *nm = strncmp(buf, "Name:", 5) == 0 ? buf + 5 : NULL;
        if (nm) {
            nm += strspn(nm, " \t");
            size_t l = strcspn(nm, "\n");
            if (l >= sizeof c->name)
                l = sizeof c->name - 1;
            memcpy(c->name, nm, l);
        }
        const char *v = strstr(buf, "\nvoluntary_ctxt_switches:");
        const char *nv = strstr(buf, "\nnonvoluntary_ctxt_switches:");
        if (v)
            c->vol = strtoll(v + strlen("\nvoluntary_ctxt_switches:"), NULL, 10);
        if (nv)
            c->invol = strtoll(nv + strlen("\nnonvoluntary_ctxt_switches:"), NULL, 10);
        n++;
    }
    closedir(d);
    return n;
}

/* What an idle ferryd did per second: all threads, and per thread name (threads of one name,
 * e.g. short-lived workers, are summed; a thread that started during the run counts from 0). */
struct idle_result {
    double per_s;           /* voluntary + involuntary, all threads */
    double voluntary_per_s; /* voluntary, all threads */
    size_t n;
    struct {
        char name[32];
        double vol_per_s, invol_per_s;
    } th[MAX_THREADS];
};

static void idle_diff(const struct thread_ctxt *a, int na, const struct thread_ctxt *b, int nb,
                      int seconds, struct idle_result *r)
{
    long long vol = 0, invol = 0;
    r->n = 0;
    for (int i = 0; i < nb; i++) {
        long long v = b[i].vol, iv = b[i].invol;
        for (int k = 0; k < na; k++) {
            if (a[k].tid == b[i].tid) {
                v -= a[k].vol;
                iv -= a[k].invol;
                break;
            }
        }
        vol += v;
        invol += iv;
        size_t slot = r->n;
        for (size_t k = 0; k < r->n; k++) {
            if (strcmp(r->th[k].name, b[i].name) == 0) {
                slot = k;
                break;
            }
        }
        if (slot == r->n) {
            memset(&r->th[slot], 0, sizeof r->th[slot]);
            memcpy(r->th[slot].name, b[i].name, sizeof r->th[slot].name);
            r->n++;
        }
        r->th[slot].vol_per_s += (double)v / seconds;
        r->th[slot].invol_per_s += (double)iv / seconds;
    }
    r->per_s = (double)(vol + invol) / seconds;
    r->voluntary_per_s = (double)vol / seconds;
}

/* Context switches per second of an idle ferryd, all threads and per thread. -1 when it could
 * not be measured. */
static int idle_wakeups(const char *ferryd, const char *tmp, int seconds, struct idle_result *r)
{
    char data[512], logs[512], ini[600], log[600];
    snprintf(data, sizeof data, "%s/idle-data", tmp);
    snprintf(logs, sizeof logs, "%s/idle-logs", tmp);
    snprintf(ini, sizeof ini, "%s/idle.ini", tmp);
    snprintf(log, sizeof log, "%s/idle-ferryd.log", tmp);
    if (mkdir(logs, 0700) != 0)
        die("mkdir");
    FILE *f = fopen(ini, "w");
    if (!f)
        die("cannot write the ferryd config");
    fprintf(f,
            "[device]\ndata_dir = %s\n[listen]\nhttp = 127.0.0.1:0\nudp =\nunix =\n"
            "[sync]\nnetlink = false\n[input.tail.app]\npath = %s/*.log\n",
            data, logs);
    if (fclose(f) != 0)
        die("cannot write the ferryd config");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        FILE *lf = freopen(log, "w", stderr);
        (void)lf;
        execl(ferryd, ferryd, "--config", ini, (char *)NULL);
        _exit(127);
    }
    sleep(2); /* start-up and the first round */
    static struct thread_ctxt a[MAX_THREADS], b[MAX_THREADS];
    int na = ctxt_switches(pid, a);
    sleep((unsigned)seconds);
    int nb = ctxt_switches(pid, b);
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    if (na < 0 || nb < 0)
        return -1;
    idle_diff(a, na, b, nb, seconds, r);
    return 0;
}

static void print_idle(const struct idle_result *r, int seconds)
{
    printf("\nidle ferryd (system collector + one idle tail), %d s: %.2f context switches/s, "
           "%.2f/s voluntary (the rest: preemption by the machine's load)\n",
           seconds, r->per_s, r->voluntary_per_s);
    printf("%-18s %16s %18s\n", "thread", "voluntary/s", "involuntary/s");
    for (size_t i = 0; i < r->n; i++)
        printf("%-18s %16.2f %18.2f\n", r->th[i].name, r->th[i].vol_per_s, r->th[i].invol_per_s);
}

static void print_idle_keys(const struct idle_result *r)
{
    printf("idle_wakeups_per_s: %.2f\nidle_voluntary_wakeups_per_s: %.2f\n", r->per_s,
           r->voluntary_per_s);
    for (size_t i = 0; i < r->n; i++) {
        char key[40];
        snprintf(key, sizeof key, "%s", r->th[i].name);
        for (char *p = key; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
                *p = '_';
        printf("idle_thread_%s_voluntary_per_s: %.2f\n", key, r->th[i].vol_per_s);
    }
}

/* ---- Tail throughput ------------------------------------------------------------------------ */

struct writer {
    char path[700];
    long long lines;
    double mb_per_s_cap;
    volatile bool done;
    double seconds;
};

static void *write_lines(void *arg)
{
    struct writer *w = arg;
    FILE *f = fopen(w->path, "a");
    if (!f)
        die("writer: fopen");
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    long long t0 = ferry_monotonic_ms();
    char line[128];
    for (long long i = 0; i < w->lines; i++) {
        /* 100 bytes with the newline */
        int n = snprintf(line, sizeof line,
                         "2026-12-07T10:00:00.000Z info camera=3 frame=%012lld "
                         "latency_ms=31 fps=29.5 detections=4 ok...\n",
                         i);
        if (n != 100)
            die("writer: line is not 100 bytes");
        fwrite(line, 1, 100, f);
        if ((i & 4095) == 4095) {
            fflush(f);
            /* Pace to the cap: bytes so far / cap = the time it should have taken. */
            double should_ms = (double)(i + 1) * 100 / (w->mb_per_s_cap * 1e6) * 1000;
            long long ahead = (long long)should_ms - (ferry_monotonic_ms() - t0);
            if (ahead > 0)
                usleep((useconds_t)ahead * 1000);
        }
    }
    if (fclose(f) != 0)
        die("writer: fclose");
    w->seconds = (double)(ferry_monotonic_ms() - t0) / 1000.0;
    w->done = true;
    return NULL;
}

struct tail_run {
    struct event_base *base;
    struct journal *j;
    long long want;
    long long start_ms, end_ms;
};

static void on_check(evutil_socket_t fd, short what, void *arg)
{
    struct tail_run *r = arg;
    struct journal_stats st;
    if (journal_stats(r->j, &st) != 0)
        return;
    if ((long long)st.stream[RECORD_LOG].next_seq - 1 >= r->want &&
        (long long)st.committed_records >= r->want) {
        r->end_ms = ferry_monotonic_ms();
        event_base_loopbreak(r->base);
    }
}

/* Follows `lines` 100-byte lines into a durable journal. Live (prewritten false): a writer
 * appends at up to 50 MB/s while the tail follows and `cat` reads the same file; lines/s is from
 * the first line written to the last committed, so it cannot exceed the writer's rate. Catch-up
 * (prewritten true): the file is written first, then `cat FILE > /dev/null` is timed, then the
 * tail reads it from the beginning: lines/s from the tail's start to the last committed, which
 * is the tail's own capacity, and *cat_s the time cat needed for the same bytes just before. */
static void tail_throughput(const char *tmp, long long lines, bool prewritten, double *lines_per_s,
                            double *writer_mb_s, double *cat_s)
{
    char jdir[512], logs[512];
    const char *tag = prewritten ? "catchup" : "live";
    snprintf(jdir, sizeof jdir, "%s/tail-journal-%s", tmp, tag);
    snprintf(logs, sizeof logs, "%s/tail-logs-%s", tmp, tag);
    if (mkdir(logs, 0700) != 0)
        die("mkdir");
    struct journal_config jc;
    journal_config_init(&jc);
    jc.quota_bytes = 2ull << 30;
    jc.durability = JOURNAL_SYNC_COMMIT;
    struct tail_run r = {event_base_new(), NULL, lines, 0, 0};
    char err[512];
    if (journal_open(jdir, &jc, &r.j, NULL, err, sizeof err) != 0)
        die(err);
    char pattern[600];
    snprintf(pattern, sizeof pattern, "%s/*.log", logs);
    struct writer w;
    memset(&w, 0, sizeof w);
    if (snprintf(w.path, sizeof w.path, "%s/app.log", logs) >= (int)sizeof w.path)
        die("path too long");
    w.lines = lines;
    w.mb_per_s_cap = prewritten ? 1e6 : 50.0;
    char cmd[800];
    if (snprintf(cmd, sizeof cmd, "%scat '%s' > /dev/null", prewritten ? "" : "sleep 0.5; ",
                 w.path) >= (int)sizeof cmd)
        die("path too long");
    if (prewritten) {
        write_lines(&w);
        long long cat0 = ferry_monotonic_ms();
        if (system(cmd) != 0)
            die("cat");
        *cat_s = (double)(ferry_monotonic_ms() - cat0) / 1000.0;
    }
    struct tail_opts o = {"bench", pattern, NULL, NULL, 16384, true, true, 1000};
    struct tail *t = NULL;
    r.start_ms = ferry_monotonic_ms();
    if (tail_new(r.base, r.j, &o, NULL, NULL, &t, err, sizeof err) != 0)
        die(err);
    struct event *check = event_new(r.base, -1, EV_PERSIST, on_check, &r);
    struct timeval tv = {0, 20000};
    event_add(check, &tv);
    pthread_t th;
    FILE *cat = NULL;
    long long cat0 = ferry_monotonic_ms();
    if (!prewritten) {
        if (pthread_create(&th, NULL, write_lines, &w) != 0)
            die("pthread_create");
        /* cat on the same file, in the same run, while it grows. */
        cat = popen(cmd, "r");
    }
    event_base_dispatch(r.base);
    if (!prewritten) {
        if (pclose(cat) == -1)
            die("cat");
        *cat_s = (double)(ferry_monotonic_ms() - cat0) / 1000.0 - 0.5;
        pthread_join(th, NULL);
    }
    *lines_per_s = (double)lines / ((double)(r.end_ms - r.start_ms) / 1000.0);
    *writer_mb_s = (double)lines * 100 / 1e6 / w.seconds;
    event_free(check);
    tail_free(t);
    if (journal_close(r.j) != 0)
        die("journal_close");
    event_base_free(r.base);
}

/* Runs both tail sections and prints them. */
static void tail_sections(const char *tmp, long long lines)
{
    double lps = 0, wmb = 0, cat_s = 0, c_lps = 0, c_wmb = 0, c_cat_s = 0;
    tail_throughput(tmp, lines, false, &lps, &wmb, &cat_s);
    tail_throughput(tmp, lines, true, &c_lps, &c_wmb, &c_cat_s);
    double cat_lps = c_cat_s > 0 ? (double)lines / c_cat_s : 0;
    printf("\ntail live: %lld lines of 100 bytes, writer at %.1f MB/s, %.0f lines/s into the "
           "journal (commit mode); cat of the same file in the same run took %.2f s\n",
           lines, wmb, lps, cat_s);
    printf("tail catch-up: %.0f lines/s into the journal (commit mode) from a written file; cat "
           "of it just before: %.2f s (%.0f lines/s); tail/cat = %.3f\n",
           c_lps, c_cat_s, cat_lps, cat_lps > 0 ? c_lps / cat_lps : 0);
    printf("tail_lines_per_s: %.0f\ntail_writer_mb_per_s: %.1f\ntail_cat_seconds: %.2f\n", lps, wmb,
           cat_s);
    printf("tail_catchup_lines_per_s: %.0f\ntail_catchup_cat_lines_per_s: %.0f\n"
           "tail_catchup_ratio_to_cat: %.3f\n",
           c_lps, cat_lps, cat_lps > 0 ? c_lps / cat_lps : 0);
}

int main(int argc, char **argv)
{
    bool quick = false;
    const char *jetson_root = NULL, *ferryd = NULL;
    int idle_s = 60;
    long long tail_lines = 3000000;
    bool tail_only = false, idle_only = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--tail-only") == 0)
            tail_only = true;
        else if (strcmp(argv[i], "--idle-only") == 0)
            idle_only = true;
        else if (strcmp(argv[i], "--idle-seconds") == 0 && i + 1 < argc) {
            int64_t v;
            if (ferry_parse_i64(argv[++i], 1, 3600, &v) != 0) {
                fprintf(stderr, "collect-bench: --idle-seconds wants 1..3600\n");
                return 2;
            }
            idle_s = (int)v;
        } else if (strcmp(argv[i], "--jetson-root") == 0 && i + 1 < argc)
            jetson_root = argv[++i];
        else if (strcmp(argv[i], "--ferryd") == 0 && i + 1 < argc)
            ferryd = argv[++i];
        else {
            fprintf(stderr,
                    "usage: collect-bench [--quick] [--jetson-root DIR] [--ferryd PATH]\n"
                    "  --jetson-root DIR  run the Jetson collector on DIR (a fixture tree) when\n"
                    "                     this machine is not a Jetson\n"
                    "  --ferryd PATH      also measure an idle ferryd's wakeups per second\n"
                    "  --tail-only        only the tail throughput section\n"
                    "  --idle-only        only the idle ferryd section (needs --ferryd)\n"
                    "  --idle-seconds N   how long the idle ferryd is measured (default 60)\n");
            return 2;
        }
    }
    int rounds = quick ? 5 : 500;
    if (idle_only && !ferryd) {
        fprintf(stderr, "collect-bench: --idle-only needs --ferryd PATH\n");
        return 2;
    }
    if (quick) {
        idle_s = 2;
        tail_lines = 20000;
    }
    char tmp[] = "/tmp/collect-bench-XXXXXX";
    if (!mkdtemp(tmp))
        die("mkdtemp");
    if (idle_only) {
        static struct idle_result r;
        if (idle_wakeups(ferryd, tmp, idle_s, &r) != 0)
            die("the idle ferryd exited early (see its log)");
        print_idle(&r, idle_s);
        printf("\n");
        print_idle_keys(&r);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        return system(cmd) == 0 ? 0 : 1;
    }
    if (tail_only) {
        tail_sections(tmp, tail_lines);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        return system(cmd) == 0 ? 0 : 1;
    }

    struct per rows[4];
    size_t n = 0;
    char err[COLLECT_ERRBUF];
    struct collect_system_opts so = {"/", true, 10000};
    struct collector *sys = NULL;
    if (collect_system_new(&so, &sys, err, sizeof err) != 0)
        die(err);
    rows[n++] = run_rounds(sys, "system", rounds);
    const char *jroot = collect_jetson_detect("/") ? "/" : jetson_root;
    struct collector *jet = NULL;
    if (jroot) {
        struct collect_jetson_opts jo = {jroot, 10000};
        if (collect_jetson_new(&jo, &jet, NULL, err, sizeof err) != 0)
            die(err);
        rows[n++] = run_rounds(jet, strcmp(jroot, "/") ? "jetson (fixture)" : "jetson", rounds);
    }
    struct per all = {"all defaults", 0, 0};
    for (size_t i = 0; i < n; i++) {
        all.cpu_us_per_round += rows[i].cpu_us_per_round;
        all.records_per_round += rows[i].records_per_round;
    }
    rows[n++] = all;
    printf("%-18s %16s %18s %22s\n", "collector", "cpu us/round", "records/round",
           "% of one core @10s");
    for (size_t i = 0; i < n; i++)
        printf("%-18s %16.1f %18.1f %22.4f\n", rows[i].name, rows[i].cpu_us_per_round,
               rows[i].records_per_round, rows[i].cpu_us_per_round / 1e4);
    static struct idle_result idle;
    bool have_idle = ferryd && idle_wakeups(ferryd, tmp, idle_s, &idle) == 0;
    if (ferryd && !have_idle)
        fprintf(stderr, "collect-bench: the idle ferryd exited early (see its log)\n");
    tail_sections(tmp, tail_lines);
    if (have_idle)
        print_idle(&idle, idle_s);
    printf("\n");
    for (size_t i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s", rows[i].name);
        for (char *p = key; *p; p++)
            if (*p == ' ' || *p == '(' || *p == ')')
                *p = '_';
        printf("%s_cpu_us_per_round: %.1f\n", key, rows[i].cpu_us_per_round);
        printf("%s_records_per_round: %.1f\n", key, rows[i].records_per_round);
    }
    printf("all_defaults_core_percent_at_10s: %.4f\n", all.cpu_us_per_round / 1e4);
    if (have_idle)
        print_idle_keys(&idle);
    collector_free(sys);
    collector_free(jet);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "collect-bench: cannot remove %s\n", tmp);
    return 0;
}
