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

/* Context switches of every thread of pid: voluntary ones (the thread slept and was woken: a
 * timer, a futex, an I/O completion) into *vol, involuntary ones (preempted: these grow with the
 * machine's load, not with ferryd's work) into *invol. Returns -1 when pid is gone. */
static int ctxt_switches(pid_t pid, long long *vol, long long *invol)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    *vol = *invol = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[600], buf[4096];
        if (snprintf(path, sizeof path, "%s/%s/status", dir, e->d_name) >= (int)sizeof path)
            continue;
        long n = collect_read_file("", path, buf, sizeof buf);
        if (n <= 0)
            continue;
        const char *v = strstr(buf, "\nvoluntary_ctxt_switches:");
        const char *nv = strstr(buf, "\nnonvoluntary_ctxt_switches:");
        if (v)
            *vol += strtoll(v + strlen("\nvoluntary_ctxt_switches:"), NULL, 10);
        if (nv)
            *invol += strtoll(nv + strlen("\nnonvoluntary_ctxt_switches:"), NULL, 10);
    }
    closedir(d);
    return 0;
}

/* Context switches per second of an idle ferryd (all threads, voluntary + involuntary); the
 * voluntary ones alone into *voluntary_per_s. -1 when it could not be measured. */
static double idle_wakeups(const char *ferryd, const char *tmp, int seconds,
                           double *voluntary_per_s)
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
    long long va, ia, vb, ib;
    int ra = ctxt_switches(pid, &va, &ia);
    sleep((unsigned)seconds);
    int rb = ctxt_switches(pid, &vb, &ib);
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    if (ra < 0 || rb < 0)
        return -1;
    *voluntary_per_s = (double)(vb - va) / seconds;
    return (double)(vb - va + ib - ia) / seconds;
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
    bool tail_only = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--tail-only") == 0)
            tail_only = true;
        else if (strcmp(argv[i], "--jetson-root") == 0 && i + 1 < argc)
            jetson_root = argv[++i];
        else if (strcmp(argv[i], "--ferryd") == 0 && i + 1 < argc)
            ferryd = argv[++i];
        else {
            fprintf(stderr,
                    "usage: collect-bench [--quick] [--jetson-root DIR] [--ferryd PATH]\n"
                    "  --jetson-root DIR  run the Jetson collector on DIR (a fixture tree) when\n"
                    "                     this machine is not a Jetson\n"
                    "  --ferryd PATH      also measure an idle ferryd's wakeups per second\n"
                    "  --tail-only        only the tail throughput section\n");
            return 2;
        }
    }
    int rounds = quick ? 5 : 500;
    if (quick) {
        idle_s = 2;
        tail_lines = 20000;
    }
    char tmp[] = "/tmp/collect-bench-XXXXXX";
    if (!mkdtemp(tmp))
        die("mkdtemp");
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
    double voluntary = -1, wakeups = ferryd ? idle_wakeups(ferryd, tmp, idle_s, &voluntary) : -1;
    tail_sections(tmp, tail_lines);
    if (ferryd)
        printf("idle ferryd (system collector + one idle tail): %.2f context switches/s over %d s, "
               "%.2f/s voluntary (the rest: preemption by the machine's load)\n",
               wakeups, idle_s, voluntary);
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
    if (ferryd)
        printf("idle_wakeups_per_s: %.2f\nidle_voluntary_wakeups_per_s: %.2f\n", wakeups,
               voluntary);
    collector_free(sys);
    collector_free(jet);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "collect-bench: cannot remove %s\n", tmp);
    return 0;
}
