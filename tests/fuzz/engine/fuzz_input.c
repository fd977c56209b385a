/*
 * fuzz_input.c - libFuzzer target: ferryd's input path for POST /write and POST /logs bodies
 * (engine/input.c), from the body bytes into a real journal.
 *
 * One journal lives in a temporary directory for the whole process (OS durability, no group
 * window, a 16 MiB quota that an input never comes near). Each input runs one input job to
 * completion exactly as the HTTP input does, waits for the units it appended, reads every
 * unacknowledged record back, and then acknowledges them, so the journal never grows beyond a few
 * pages.
 *
 * Input layout: byte 0 = options, byte 1 = default level (low 3 bits) and length of a default
 * log source (high 5 bits, 0 = none, i.e. "app"); then that many source bytes; the rest is the
 * body.
 *   byte 0 bit 0     format: 0 line protocol (/write), 1 logs (/logs)
 *   byte 0 bits 1-2  line protocol precision (enum lineproto_precision)
 *   byte 0 bit 3     copy_text
 *   byte 0 bits 4-7  budget per input_job_run() call: 0 none, else 1 << k bytes
 *
 * Properties checked (abort() on violation):
 *   - the job finishes (0) and consumed the whole text; the journal never refuses the append;
 *   - accepted + rejected lines never exceed the body's line count;
 *   - exactly `accepted` new records are in the journal, all on the right stream (metric for
 *     line protocol, log for logs), and every payload unpacks with record_unpack();
 *   - a rejected line always leaves a description in input_job_errors().
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/input.h"
#include "journal/journal.h"
#include "transport/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char journal_dir[64];
static struct journal *journal;
static struct record_scratch scratch;

/* Removes the journal's files and directory at exit (libFuzzer exits through exit()). */
static void remove_journal(void)
{
    if (journal) {
        (void)journal_close(journal);
        journal = NULL;
    }
    static const char *const names[] = {JOURNAL_FILE_NAME, JOURNAL_LOCK_FILE_NAME,
                                        JOURNAL_OWNER_FILE_NAME, JOURNAL_HWM_FILE_NAME};
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", journal_dir, names[i]);
        (void)unlink(path);
    }
    (void)rmdir(journal_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* /dev/shm when there is one: the journal is scratch and tmpfs keeps LMDB's msync cheap. */
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(journal_dir, sizeof journal_dir, "%s/ferry-fuzz-input-XXXXXX", base);
    if (!mkdtemp(journal_dir)) {
        perror("mkdtemp");
        abort();
    }
    struct journal_config jc;
    journal_config_init(&jc);
    jc.quota_bytes = 16ULL * 1024 * 1024; /* queue room for a full 1 MiB input unit */
    jc.durability = JOURNAL_SYNC_OS;
    jc.group_window_us = 0;
    char err[256];
    if (journal_open(journal_dir, &jc, &journal, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "journal_open %s: %s\n", journal_dir, err);
        abort();
    }
    atexit(remove_journal);
    return 0;
}

struct readback {
    enum record_stream want_stream;
    size_t records;
    uint64_t last_seq;
};

static int on_entry(void *arg, const struct journal_entry *e)
{
    struct readback *rb = arg;
    struct record r;
    char why[160];
    if (e->stream != rb->want_stream)
        abort();
    int rc = record_unpack(e->payload, e->len, &scratch, &r, why, sizeof why);
    if (rc != 0) {
        fprintf(stderr, "journaled payload does not unpack: %s\n", why);
        abort();
    }
    if (r.stream != rb->want_stream || r.ts_ns != e->ts_ns)
        abort();
    rb->records++;
    rb->last_seq = e->seq;
    return 0;
}

static size_t count_lines(const char *p, size_t n)
{
    size_t lines = 1;
    for (size_t i = 0; i < n; i++)
        lines += p[i] == '\n';
    return lines;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    size_t source_len = data[1] >> 3;
    if (size - 2 < source_len)
        return 0;
    char source[32];
    memcpy(source, data + 2, source_len);
    source[source_len] = '\0';
    const char *text = (const char *)data + 2 + source_len;
    size_t len = size - 2 - source_len;

    struct input_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.format = (flags & 1) ? INPUT_LOGS : INPUT_LINEPROTO;
    opts.precision = (enum lineproto_precision)((flags >> 1) & 3);
    opts.copy_text = (flags >> 3) & 1;
    opts.default_ts_ns = 1700000000123456789LL;
    opts.default_level = (enum record_log_level)(data[1] & 7);
    /* An empty source is refused by the HTTP input; here it means "not given". */
    opts.default_source = source[0] ? source : NULL;
    size_t budget = (flags >> 4) ? (size_t)1 << (flags >> 4) : 0;
    enum record_stream stream = opts.format == INPUT_LOGS ? RECORD_LOG : RECORD_METRIC;

    struct input_job *job;
    if (input_job_new(&opts, text, len, &job) != 0)
        abort();
    int rc;
    while ((rc = input_job_run(job, journal, budget)) == INPUT_MORE || rc == INPUT_BUSY) {
        if (rc == INPUT_BUSY)
            usleep(100);
    }
    if (rc != 0) {
        fprintf(stderr, "input_job_run: %s (journal: %s)\n", input_strerror(rc),
                journal_strerror(input_job_journal_error(job)));
        abort();
    }
    if (input_job_remaining(job) != 0)
        abort();
    uint64_t accepted = input_job_accepted(job), rejected = input_job_rejected(job);
    if (accepted + rejected > count_lines(text, len))
        abort();
    const char *errors = input_job_errors(job);
    if (!errors || (rejected > 0) != (errors[0] != '\0'))
        abort();

    size_t n_points;
    const struct durable_point *points = input_job_points(job, &n_points);
    for (size_t i = 0; i < n_points; i++) {
        if (points[i].stream != stream || journal_wait(journal, points[i].stream, points[i].seq))
            abort();
    }

    /* Everything unacknowledged is this job's: the previous input acknowledged all of its own. */
    struct readback rb = {stream, 0, 0};
    struct journal_read_result res;
    if (journal_read(journal, stream, NULL, on_entry, &rb, &res) != 0)
        abort();
    if (rb.records != accepted)
        abort();
    if (rb.records > 0) {
        struct journal_range all = {1, rb.last_seq};
        if (journal_ack(journal, stream, &all, 1) != 0)
            abort();
    }
    input_job_free(job);
    return 0;
}
