/*
 * test_input.c - line protocol and log line handling of ferryd's inputs (engine/input.c),
 * against a real journal in a temporary directory: good lines become records with the right
 * content, bad lines are rejected with their line number while the good lines around them are
 * still written, big bodies are appended in several units, and every unit's last sequence is
 * reported for the durability wait.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "engine/input.h"
#include "journal/journal.h"

struct fixture {
    char dir[64];
    struct journal *j;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ferry-input-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    struct journal_config jc;
    journal_config_init(&jc);
    jc.quota_bytes = 64ULL * 1024 * 1024;
    char err[256];
    if (journal_open(f->dir, &jc, &f->j, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "journal_open: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(journal_close(f->j), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* Runs a job to completion and waits until its records committed. */
static struct input_job *run_job(struct journal *j, const struct input_opts *opts, const char *text,
                                 size_t len)
{
    struct input_job *job;
    assert_int_equal(input_job_new(opts, text, len, &job), 0);
    int rc;
    while ((rc = input_job_run(job, j, 64 * 1024)) == INPUT_MORE || rc == INPUT_BUSY)
        usleep(rc == INPUT_BUSY ? 1000 : 0);
    assert_int_equal(rc, 0);
    size_t n;
    const struct durable_point *p = input_job_points(job, &n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(journal_wait(j, p[i].stream, p[i].seq), 0);
    return job;
}

struct collected {
    size_t n;
    char names[64][64];
    int64_t ts[64];
    uint8_t level[64];
    char message[64][128];
    size_t n_fields[64];
    double first_float[64];
};

static int collect(void *arg, const struct journal_entry *e)
{
    struct collected *c = arg;
    struct record_scratch *scratch = malloc(sizeof *scratch);
    struct record r;
    char why[128];
    assert_int_equal(record_unpack(e->payload, e->len, scratch, &r, why, sizeof why), 0);
    if (c->n < 64) {
        snprintf(c->names[c->n], 64, "%.*s", (int)r.name.len, r.name.ptr);
        snprintf(c->message[c->n], 128, "%.*s", (int)r.message.len, r.message.ptr);
        c->ts[c->n] = r.ts_ns;
        c->level[c->n] = r.level;
        c->n_fields[c->n] = r.n_fields;
        c->first_float[c->n] =
            r.n_fields && r.fields[0].type == RECORD_FIELD_FLOAT ? r.fields[0].v.f : 0;
    }
    c->n++;
    free(scratch);
    return 0;
}

static void default_opts(struct input_opts *o, enum input_format format)
{
    memset(o, 0, sizeof *o);
    o->format = format;
    o->precision = LINEPROTO_NS;
    o->default_ts_ns = 42;
    o->default_level = RECORD_LEVEL_INFO;
}

static void test_lineproto_lines_become_metric_records(void **state)
{
    struct fixture *f = *state;
    struct input_opts o;
    default_opts(&o, INPUT_LINEPROTO);
    o.precision = LINEPROTO_S;
    const char *text = "cpu,host=a usage=0.5 1700000000\n\n# comment\nmem free=3i\n";
    struct input_job *job = run_job(f->j, &o, text, strlen(text));
    assert_int_equal(input_job_accepted(job), 2);
    assert_int_equal(input_job_rejected(job), 0);
    assert_string_equal(input_job_errors(job), "");
    size_t n;
    const struct durable_point *p = input_job_points(job, &n);
    assert_int_equal(n, 1);
    assert_int_equal(p[0].stream, RECORD_METRIC);
    assert_int_equal(p[0].seq, 2);
    input_job_free(job);

    struct collected c = {0};
    assert_int_equal(journal_read(f->j, RECORD_METRIC, NULL, collect, &c, NULL), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.names[0], "cpu");
    assert_true(c.ts[0] == 1700000000LL * 1000000000LL); /* precision=s */
    assert_true(c.first_float[0] == 0.5);
    assert_string_equal(c.names[1], "mem");
    assert_int_equal(c.ts[1], 42); /* no timestamp: the default ("now") */
}

/* The observer (ferryd's OTA health gates) sees each accepted metric record, not the bad ones. */
struct seen {
    int n;
    char names[4][16];
};

static void on_observe(void *arg, const struct record *r)
{
    struct seen *s = arg;
    if (s->n < 4)
        snprintf(s->names[s->n], sizeof s->names[0], "%.*s", (int)r->name.len, r->name.ptr);
    s->n++;
}

static void test_observer_sees_accepted_metric_records(void **state)
{
    struct fixture *f = *state;
    struct input_opts o;
    default_opts(&o, INPUT_LINEPROTO);
    struct seen s = {0};
    o.observe = on_observe;
    o.observe_arg = &s;
    const char *text = "inference fps=29.5\nbad line\ngpu temp=61i\n";
    struct input_job *job = run_job(f->j, &o, text, strlen(text));
    assert_int_equal(input_job_accepted(job), 2);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.names[0], "inference");
    assert_string_equal(s.names[1], "gpu");
    input_job_free(job);
}

static void test_bad_lines_rejected_with_line_numbers_good_lines_written(void **state)
{
    struct fixture *f = *state;
    struct input_opts o;
    default_opts(&o, INPUT_LINEPROTO);
    const char *text = "a v=1\n"
                       "b v=\n" /* line 2: missing value */
                       "c v=3\n"
                       "d\n"                /* line 4: no fields */
                       "e v=5 notanumber\n" /* line 5: bad timestamp */
                       "f v=6";             /* last line without newline */
    struct input_job *job = run_job(f->j, &o, text, strlen(text));
    assert_int_equal(input_job_accepted(job), 3);
    assert_int_equal(input_job_rejected(job), 3);
    const char *errs = input_job_errors(job);
    assert_non_null(strstr(errs, "line 2: "));
    assert_non_null(strstr(errs, "line 4: "));
    assert_non_null(strstr(errs, "line 5: "));
    assert_null(strstr(errs, "line 1:"));
    assert_null(strstr(errs, "line 3:"));
    input_job_free(job);
    struct collected c = {0};
    assert_int_equal(journal_read(f->j, RECORD_METRIC, NULL, collect, &c, NULL), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.names[0], "a");
    assert_string_equal(c.names[1], "c");
    assert_string_equal(c.names[2], "f");
}

static void test_big_body_is_appended_in_several_units(void **state)
{
    struct fixture *f = *state;
    struct input_opts o;
    default_opts(&o, INPUT_LINEPROTO);
    struct ferry_buf b = FERRY_BUF_INIT;
    const size_t lines = 60000;
    for (size_t i = 0; i < lines; i++)
        assert_int_equal(ferry_buf_printf(&b,
                                          "measurement_%zu,host=device-%zu,region=eu "
                                          "value=%zu.5,count=%zui %zu\n",
                                          i % 7, i % 13, i, i, 1000000 + i),
                         0);
    /* one bad line in the middle, past the first unit */
    assert_int_equal(ferry_buf_printf(&b, "broken line\n"), 0);
    assert_int_equal(ferry_buf_printf(&b, "tail v=1\n"), 0);
    struct input_job *job = run_job(f->j, &o, (const char *)b.data, b.len);
    assert_int_equal(input_job_accepted(job), lines + 1);
    assert_int_equal(input_job_rejected(job), 1);
    char expect[64];
    snprintf(expect, sizeof expect, "line %zu: ", lines + 1);
    assert_non_null(strstr(input_job_errors(job), expect));
    size_t n;
    const struct durable_point *p = input_job_points(job, &n);
    assert_true(n >= 2); /* more than INPUT_CHUNK_BYTES of packed records */
    assert_int_equal(p[n - 1].seq, lines + 1);
    input_job_free(job);
    ferry_buf_free(&b);
    struct journal_stats st;
    assert_int_equal(journal_stats(f->j, &st), 0);
    assert_int_equal(st.stream[RECORD_METRIC].unsent_records, lines + 1);
}

/* A quoted string holding a newline that straddles the parser's slice boundary (256 KiB) is
 * still one good record, and no record is written twice. */
static void test_multiline_string_across_slice_boundary(void **state)
{
    struct fixture *f = *state;
    struct input_opts o;
    default_opts(&o, INPUT_LINEPROTO);
    struct ferry_buf b = FERRY_BUF_INIT;
    size_t lines = 0;
    while (b.len < 256 * 1024 - 8) {
        assert_int_equal(ferry_buf_printf(&b, "m v=1\n"), 0);
        lines++;
    }
    assert_int_equal(ferry_buf_printf(&b, "s text=\"first half\nsecond half\" 5\n"), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(ferry_buf_printf(&b, "t v=2\n"), 0);
    struct input_job *job = run_job(f->j, &o, (const char *)b.data, b.len);
    assert_string_equal(input_job_errors(job), "");
    assert_int_equal(input_job_accepted(job), lines + 1 + 1000);
    input_job_free(job);
    ferry_buf_free(&b);
    struct journal_stats st;
    assert_int_equal(journal_stats(f->j, &st), 0);
    assert_int_equal(st.stream[RECORD_METRIC].unsent_records, lines + 1 + 1000);
}

/* A full journal queue (JOURNAL_EAGAIN) makes the job report INPUT_BUSY and keep its chunk;
 * retrying appends every record exactly once. */
static void test_busy_queue_retries_without_duplicates(void **state)
{
    (void)state;
    char dir[] = "/tmp/ferry-input-busy-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct journal_config jc;
    journal_config_init(&jc);
    jc.quota_bytes = 256ULL * 1024 * 1024;
    jc.queue_max_bytes = 64 * 1024; /* far below one input chunk */
    /* The committer waits 1 s for more before each commit, so the queue stays full while
     * the job produces its next chunk. */
    jc.group_window_us = 1000000;
    jc.group_max_bytes = 8 * 1024 * 1024;
    struct journal *j;
    char err[256];
    assert_int_equal(journal_open(dir, &jc, &j, NULL, err, sizeof err), 0);
    struct ferry_buf b = FERRY_BUF_INIT;
    const size_t lines = 100000;
    for (size_t i = 0; i < lines; i++)
        assert_int_equal(ferry_buf_printf(&b, "busy,host=h%zu v=%zu\n", i % 10, i), 0);
    struct input_opts o;
    default_opts(&o, INPUT_LINEPROTO);
    struct input_job *job;
    assert_int_equal(input_job_new(&o, (const char *)b.data, b.len, &job), 0);
    size_t busy = 0;
    int rc;
    while ((rc = input_job_run(job, j, 0)) == INPUT_BUSY || rc == INPUT_MORE) {
        busy += rc == INPUT_BUSY;
        usleep(200);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(input_job_accepted(job), lines);
    size_t n;
    const struct durable_point *p = input_job_points(job, &n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(journal_wait(j, p[i].stream, p[i].seq), 0);
    assert_int_equal(p[n - 1].seq, lines);
    input_job_free(job);
    ferry_buf_free(&b);
    struct journal_stats st;
    assert_int_equal(journal_stats(j, &st), 0);
    assert_int_equal(st.stream[RECORD_METRIC].unsent_records, lines);
    assert_int_equal(journal_close(j), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    assert_true(busy > 0); /* the path under test was taken */
}

static int count_cb(void *arg, const struct record *r)
{
    (void)r;
    (*(size_t *)arg)++;
    return 0;
}

/* Property: over a body of many slices with good and bad lines at random places, the job
 * accepts exactly the lines that parse on their own and names exactly the others (by line
 * number), whatever the slice boundaries are. Seeded, so a failure replays. */
static void test_random_bodies_match_line_by_line_parse(void **state)
{
    struct fixture *f = *state;
    static const char *const good[] = {"cpu,host=a usage=0.5", "m v=1i 1700000000000000000",
                                       "s text=\"hello world\"", "b ok=true,n=3u",
                                       "esc\\ aped,t\\,k=v\\ x f=1"};
    static const char *const bad[] = {"nofields", "m v=",     "m v=1 notatime",
                                      "m v=1i2",  "m,=x v=1", "m v=\"unterminated"};
    for (unsigned seed = 1; seed <= 3; seed++) {
        srand(seed);
        struct ferry_buf body = FERRY_BUF_INIT;
        size_t expect_good = 0, n_lines = 0;
        size_t bad_lines[64];
        size_t n_bad = 0;
        while (body.len < 700 * 1024) {
            n_lines++;
            int r = rand() % 1000;
            const char *line;
            if (r < 2 && n_bad < 20) {
                line = bad[rand() % 6];
                bad_lines[n_bad++] = n_lines;
            } else if (r < 6) {
                line = ""; /* empty line */
            } else {
                line = good[rand() % 5];
            }
            /* Each line checked on its own: the oracle. */
            size_t ok = 0;
            struct lineproto_error err;
            int prc = lineproto_parse(line, strlen(line), LINEPROTO_NS, 1, count_cb, &ok, &err);
            if (line[0] && prc == 0)
                expect_good += ok;
            assert_true(line[0] == 0 ||
                        (prc == 0) == (line != bad[0] && line != bad[1] && line != bad[2] &&
                                       line != bad[3] && line != bad[4] && line != bad[5]));
            assert_int_equal(ferry_buf_printf(&body, "%s\n", line), 0);
        }
        struct input_opts o;
        default_opts(&o, INPUT_LINEPROTO);
        struct input_job *job = run_job(f->j, &o, (const char *)body.data, body.len);
        assert_int_equal(input_job_accepted(job), expect_good);
        assert_int_equal(input_job_rejected(job), n_bad);
        for (size_t i = 0; i < n_bad; i++) {
            char want[64];
            snprintf(want, sizeof want, "line %zu: ", bad_lines[i]);
            if (!strstr(input_job_errors(job), want))
                fail_msg("seed %u: \"%s\" missing in:\n%s", seed, want, input_job_errors(job));
        }
        input_job_free(job);
        ferry_buf_free(&body);
    }
    struct journal_stats st;
    assert_int_equal(journal_stats(f->j, &st), 0);
    assert_true(st.stream[RECORD_METRIC].unsent_records > 0);
}

static void test_log_lines_plain_and_json(void **state)
{
    struct fixture *f = *state;
    struct input_opts o;
    default_opts(&o, INPUT_LOGS);
    o.default_level = RECORD_LEVEL_WARN;
    o.default_source = "camera";
    const char *text = "plain text line\r\n"
                       "{\"level\":\"error\",\"source\":\"gpu\",\"message\":\"overheat\","
                       "\"fields\":{\"temp\":91.5},"
                       "\"tags\":{\"unit\":\"0\"},\"ts\":123}\n"
                       "{\"level\":\"loud\"}\n" /* line 3: bad level */
                       "{not json\n"            /* line 4 */
                       "{\"msg\":\"short form\",\"pid\":7}\n";
    struct input_job *job = run_job(f->j, &o, text, strlen(text));
    assert_int_equal(input_job_accepted(job), 3);
    assert_int_equal(input_job_rejected(job), 2);
    assert_non_null(strstr(input_job_errors(job), "line 3: \"level\""));
    assert_non_null(strstr(input_job_errors(job), "line 4: invalid JSON"));
    input_job_free(job);
    struct collected c = {0};
    assert_int_equal(journal_read(f->j, RECORD_LOG, NULL, collect, &c, NULL), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.names[0], "camera");
    assert_string_equal(c.message[0], "plain text line"); /* \r removed */
    assert_int_equal(c.level[0], RECORD_LEVEL_WARN);
    assert_string_equal(c.names[1], "gpu");
    assert_string_equal(c.message[1], "overheat");
    assert_int_equal(c.level[1], RECORD_LEVEL_ERROR);
    assert_int_equal(c.ts[1], 123);
    assert_true(c.first_float[1] == 91.5);
    assert_string_equal(c.message[2], "short form");
    assert_int_equal(c.n_fields[2], 1); /* "pid" became a field */
}

static void test_event_packing(void **state)
{
    (void)state;
    struct ferry_buf b = FERRY_BUF_INIT;
    const char *kv[] = {"version", "1.2", "pid", "77"};
    assert_int_equal(input_pack_event("ferryd.start", "started", 5, kv, 2, &b), 0);
    struct record_scratch *scratch = malloc(sizeof *scratch);
    struct record r;
    assert_int_equal(record_unpack(b.data, b.len, scratch, &r, NULL, 0), 0);
    assert_int_equal(r.stream, RECORD_EVENT);
    assert_int_equal(r.n_fields, 2);
    assert_memory_equal(r.name.ptr, "ferryd.start", r.name.len);
    free(scratch);
    ferry_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_observer_sees_accepted_metric_records, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lineproto_lines_become_metric_records, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_bad_lines_rejected_with_line_numbers_good_lines_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_body_is_appended_in_several_units, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_multiline_string_across_slice_boundary, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_random_bodies_match_line_by_line_parse, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_log_lines_plain_and_json, setup, teardown),
        cmocka_unit_test(test_busy_queue_retries_without_duplicates),
        cmocka_unit_test(test_event_packing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
