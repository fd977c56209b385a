/*
 * condition_bench.c - what a release condition's evaluation costs (engine/ota/condition.c): a
 * journal filled with N metric records over the last 24 h (one in ten the condition's metric,
 * the rest other measurements, as a device running the system collector has), then the
 * evaluation of "detector.confidence mean 24h < 0.6" and of its p95 (which sorts), timed.
 *
 *   build/bin/condition-bench [--records N] [--quick]      (default N = 500000, the scan bound)
 *
 * Prints one line per stat: records scanned, samples, milliseconds, records per second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"
#include "engine/ota/condition.h"
#include "journal/journal.h"
#include "transport/record.h"

static int fill(struct journal *j, long n, int64_t now_ns)
{
    const char *names[] = {"detector", "cpu", "mem",       "disk",   "net",
                           "thermal",  "gpu", "inference", "system", "diskio"};
    struct ferry_buf b = FERRY_BUF_INIT;
    for (long i = 0; i < n; i++) {
        const char *name = names[i % 10];
        struct record_tag tag = {{"host", 4}, {"nano-17", 7}};
        struct record_field f[2] = {{{"confidence", 10}, RECORD_FIELD_FLOAT, {.f = 0.4}},
                                    {{"value", 5}, RECORD_FIELD_FLOAT, {.f = (double)i}}};
        if (i % 10 != 0)
            f[0].key = (struct record_str){"usage", 5};
        f[0].v.f = 0.3 + (double)(i % 7) / 10;
        int64_t ts = now_ns - (n - i) * (86400LL * 1000000000 / n);
        struct record r = {RECORD_METRIC, 0, ts, {name, strlen(name)}, 0, {"", 0}, &tag, 1, f, 2};
        b.len = 0;
        if (record_pack(&r, &b) != 0 ||
            journal_append(j, RECORD_METRIC, ts, b.data, b.len, 0, NULL) != 0) {
            ferry_buf_free(&b);
            return -1;
        }
    }
    ferry_buf_free(&b);
    return journal_flush(j);
}

int main(int argc, char **argv)
{
    long n = 500000;
    for (int i = 1; i < argc; i++) {
        int64_t v;
        if (strcmp(argv[i], "--quick") == 0)
            n = 20000;
        else if (strcmp(argv[i], "--records") == 0 && i + 1 < argc &&
                 ferry_parse_i64(argv[i + 1], 100, 5000000, &v) == 0) {
            n = (long)v;
            i++;
        } else {
            fprintf(stderr, "usage: condition-bench [--records N] [--quick]\n");
            return 2;
        }
    }
    char dir[] = "/tmp/ferry-condition-bench-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    struct journal_config jc;
    journal_config_init(&jc);
    jc.quota_bytes = 2ull << 30;
    jc.durability = JOURNAL_SYNC_OS;
    struct journal *j = NULL;
    char err[512] = "";
    int rc = journal_open(dir, &jc, &j, NULL, err, sizeof err);
    int64_t now = ferry_realtime_ns();
    if (rc == 0 && fill(j, n, now) != 0)
        rc = -1;
    const char *conds[] = {"detector.confidence mean 24h < 0.6",
                           "detector.confidence p95 24h < 0.9"};
    for (size_t c = 0; rc == 0 && c < 2; c++) {
        struct manifest_condition mc;
        struct ota_condition_result r;
        if (manifest_condition_parse_text(conds[c], &mc, err, sizeof err) != 0) {
            rc = -1;
            break;
        }
        long long t0 = ferry_monotonic_ms();
        rc = ota_condition_eval(j, &mc, now, 0, &r, err, sizeof err);
        long long ms = ferry_monotonic_ms() - t0;
        if (rc == 0)
            printf("%-40s scanned %llu records, %llu samples, value %.4g, %s: %lld ms (%.0f "
                   "records/s)\n",
                   conds[c], (unsigned long long)r.scanned, (unsigned long long)r.samples, r.value,
                   ota_condition_outcome_name(r.outcome), ms,
                   ms > 0 ? (double)r.scanned * 1000.0 / (double)ms : 0.0);
    }
    if (rc != 0)
        fprintf(stderr, "condition-bench: failed: %s\n", err);
    if (j)
        (void)journal_close(j);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "condition-bench: could not remove %s\n", dir);
    return rc == 0 ? 0 : 1;
}
