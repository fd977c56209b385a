/*
 * test_collect_tail.c - the file tail: lines into log records exactly once, through files that
 * appear later, rename and copytruncate rotations (also while the tailer is stopped), multi-line
 * records, over-long lines, levels, and the offset committed with the lines it covers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "collect_testlib.h"
#include "journal/journal.h"

struct env {
    char dir[256];  /* scratch */
    char logs[300]; /* watched directory */
    struct event_base *base;
    struct journal *j;
    struct tail *t;
    /* every log record read back: message, level, file tag, truncated flag */
    char **msgs;
    int *levels;
    bool *cut;
    size_t n;
};

static void env_open(struct env *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/ferry-tail-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->logs, sizeof e->logs, "%s/logs", e->dir);
    assert_int_equal(mkdir(e->logs, 0700), 0);
    char jdir[300];
    snprintf(jdir, sizeof jdir, "%s/journal", e->dir);
    assert_int_equal(journal_open(jdir, NULL, &e->j, NULL, NULL, 0), 0);
    e->base = event_base_new();
}

static void tail_start(struct env *e, const char *pattern, const char *multiline, size_t max_line,
                       bool from_beginning)
{
    char paths[600];
    snprintf(paths, sizeof paths, "%s/%s", e->logs, pattern);
    struct tail_opts o = {"app", paths, NULL, multiline, max_line, from_beginning, true, 200};
    char err[COLLECT_ERRBUF] = "";
    int rc = tail_new(e->base, e->j, &o, NULL, NULL, &e->t, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "tail_new: %s\n", err);
    assert_int_equal(rc, 0);
}

static void tail_stop(struct env *e)
{
    tail_free(e->t);
    e->t = NULL;
}

static void spin(struct env *e, int ms)
{
    struct timeval tv = {0, ms * 1000};
    event_base_loopexit(e->base, &tv);
    event_base_dispatch(e->base);
}

static void append(struct env *e, const char *name, const char *text)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", e->logs, name);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void rename_log(struct env *e, const char *from, const char *to)
{
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/%s", e->logs, from);
    snprintf(b, sizeof b, "%s/%s", e->logs, to);
    assert_int_equal(rename(a, b), 0);
}

/* logrotate's copytruncate: copy the file, then truncate it in place. */
static void copytruncate(struct env *e, const char *name, const char *copy)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s/%s' '%s/%s' && truncate -s 0 '%s/%s'", e->logs, name, e->logs,
             copy, e->logs, name);
    assert_int_equal(system(cmd), 0);
}

static void clear_read(struct env *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->msgs[i]);
    free(e->msgs);
    free(e->levels);
    free(e->cut);
    e->msgs = NULL;
    e->levels = NULL;
    e->cut = NULL;
    e->n = 0;
}

static int read_cb(void *arg, const struct journal_entry *je)
{
    struct env *e = arg;
    static struct record_scratch sc;
    struct record r;
    if (record_unpack(je->payload, je->len, &sc, &r, NULL, 0) != 0)
        return 1;
    e->msgs = realloc(e->msgs, (e->n + 1) * sizeof *e->msgs);
    e->levels = realloc(e->levels, (e->n + 1) * sizeof *e->levels);
    e->cut = realloc(e->cut, (e->n + 1) * sizeof *e->cut);
    e->msgs[e->n] = strndup(r.message.ptr, r.message.len);
    e->levels[e->n] = r.level;
    e->cut[e->n] = rec_field(&r, "truncated") != NULL;
    e->n++;
    return 0;
}

/* Reads back every log record committed so far. */
static void read_back(struct env *e)
{
    clear_read(e);
    assert_int_equal(journal_flush(e->j), 0);
    assert_int_equal(journal_read(e->j, RECORD_LOG, NULL, read_cb, e, NULL), 0);
}

/* Asserts the records are exactly "line 1".."line n" of a writer, once each, in order. */
static void expect_lines(struct env *e, const char *prefix, int n)
{
    read_back(e);
    size_t k = 0;
    for (int i = 1; i <= n; i++) {
        char want[64];
        snprintf(want, sizeof want, "%s %d", prefix, i);
        while (k < e->n && strncmp(e->msgs[k], prefix, strlen(prefix)) != 0)
            k++;
        if (k == e->n || strcmp(e->msgs[k], want) != 0)
            fail_msg("expected \"%s\" at record %zu, found \"%s\"", want, k,
                     k < e->n ? e->msgs[k] : "(end)");
        k++;
    }
    for (; k < e->n; k++)
        if (strncmp(e->msgs[k], prefix, strlen(prefix)) == 0)
            fail_msg("extra record \"%s\"", e->msgs[k]);
}

static void write_lines(struct env *e, const char *name, const char *prefix, int from, int to)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", e->logs, name);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    for (int i = from; i <= to; i++)
        fprintf(f, "%s %d\n", prefix, i);
    assert_int_equal(fclose(f), 0);
}

static void env_close(struct env *e)
{
    tail_stop(e);
    clear_read(e);
    assert_int_equal(journal_close(e->j), 0);
    event_base_free(e->base);
    dir_remove(e->dir);
}

static void test_levels(void **state)
{
    (void)state;
    struct {
        const char *line;
        int level;
    } cases[] = {
        {"2026-12-07 10:00:00 ERROR camera 2 lost", RECORD_LEVEL_ERROR},
        {"[warn] low disk", RECORD_LEVEL_WARN},
        {"ts=1 level=info msg=\"ok\"", RECORD_LEVEL_INFO},
        {"{\"level\":\"debug\",\"msg\":\"x\"}", RECORD_LEVEL_DEBUG},
        {"E1207 10:00:00.000000  123 main.cc:10] boom", RECORD_LEVEL_ERROR},
        {"W1207 10:00:00.000000  123 main.cc:10] hmm", RECORD_LEVEL_WARN},
        {"<FATAL> gpu fell off the bus", RECORD_LEVEL_CRIT},
        {"plain text with nothing", -1},
        {"errors=0 informational", -1}, /* whole words only */
        {"", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(tail_parse_level(cases[i].line, strlen(cases[i].line)), cases[i].level);
}

static void test_lines_partial_and_levels(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    append(&e, "app.log", "old line before start\n");
    tail_start(&e, "*.log", NULL, 1024, false); /* from the end: the old line is not read */
    append(&e, "app.log", "first ERROR here\nsecond\nthird without newline");
    spin(&e, 100);
    read_back(&e);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.msgs[0], "first ERROR here");
    assert_int_equal(e.levels[0], RECORD_LEVEL_ERROR);
    assert_string_equal(e.msgs[1], "second");
    assert_int_equal(e.levels[1], RECORD_LEVEL_INFO);
    append(&e, "app.log", " finished\r\n");
    spin(&e, 100);
    read_back(&e);
    assert_int_equal(e.n, 3);
    assert_string_equal(e.msgs[2], "third without newline finished");
    /* The offset committed is the end of what the records cover. */
    char key[600];
    snprintf(key, sizeof key, "tail/app/%s/app.log", e.logs);
    uint8_t v[64];
    size_t got = 0;
    assert_int_equal(journal_state_get(e.j, key, strlen(key), v, sizeof v, &got), 0);
    uint64_t off;
    memcpy(&off, v + 24, 8); /* struct state_value: u32 magic, u32 fp_len, dev, ino, offset */
    assert_int_equal(off, strlen("old line before start\nfirst ERROR here\nsecond\nthird without "
                                 "newline finished\r\n"));
    /* A file that appears later is read from its start. */
    append(&e, "new.log", "hello from new\n");
    spin(&e, 100);
    read_back(&e);
    assert_int_equal(e.n, 4);
    assert_string_equal(e.msgs[3], "hello from new");
    /* Not matching the glob: not read. */
    append(&e, "other.txt", "nope\n");
    spin(&e, 50);
    read_back(&e);
    assert_int_equal(e.n, 4);
    env_close(&e);
}

static void test_rename_rotation(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    tail_start(&e, "app.log", NULL, 1024, true);
    write_lines(&e, "app.log", "line", 1, 100);
    spin(&e, 50);
    write_lines(&e, "app.log", "line", 101, 150); /* not yet read when the rename happens */
    rename_log(&e, "app.log", "app.log.1");
    write_lines(&e, "app.log", "line", 151, 200);
    spin(&e, 100);
    expect_lines(&e, "line", 200);
    /* Twice more, quickly, without reading in between. */
    rename_log(&e, "app.log", "app.log.2");
    write_lines(&e, "app.log", "line", 201, 210);
    spin(&e, 100);
    expect_lines(&e, "line", 210);
    struct tail_stats st;
    tail_get_stats(e.t, &st);
    assert_true(st.rotations >= 2);
    env_close(&e);
}

static void test_copytruncate_rotation(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    tail_start(&e, "app.log", NULL, 1024, true);
    write_lines(&e, "app.log", "ct", 1, 100);
    spin(&e, 50);
    write_lines(&e, "app.log", "ct", 101, 130); /* only in the copy once truncated */
    copytruncate(&e, "app.log", "app.log.1");
    write_lines(&e, "app.log", "ct", 131, 135); /* shorter than the old offset */
    spin(&e, 100);
    expect_lines(&e, "ct", 135);
    /* Again, with the new content longer than the old offset (the fingerprint tells). */
    write_lines(&e, "app.log", "ct", 136, 140);
    spin(&e, 50);
    write_lines(&e, "app.log", "ct", 141, 150);
    copytruncate(&e, "app.log", "app.log.2");
    write_lines(&e, "app.log", "ct", 151, 400);
    spin(&e, 100);
    expect_lines(&e, "ct", 400);
    struct tail_stats st;
    tail_get_stats(e.t, &st);
    assert_int_equal(st.truncations, 2);
    env_close(&e);
}

static void test_restart_and_rotations_while_stopped(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    tail_start(&e, "*.log", NULL, 1024, true);
    write_lines(&e, "a.log", "ra", 1, 50);
    write_lines(&e, "b.log", "rb", 1, 50);
    spin(&e, 50);
    tail_stop(&e);
    /* While stopped: a.log renamed (and a new one written), b.log copy-truncated. */
    write_lines(&e, "a.log", "ra", 51, 60);
    rename_log(&e, "a.log", "a.log.1");
    write_lines(&e, "a.log", "ra", 61, 70);
    write_lines(&e, "b.log", "rb", 51, 60);
    copytruncate(&e, "b.log", "b.log.1");
    write_lines(&e, "b.log", "rb", 61, 65);
    tail_start(&e, "*.log", NULL, 1024, true);
    spin(&e, 100);
    expect_lines(&e, "ra", 70);
    expect_lines(&e, "rb", 65);
    /* A plain restart continues where it stopped. */
    tail_stop(&e);
    write_lines(&e, "a.log", "ra", 71, 80);
    tail_start(&e, "*.log", NULL, 1024, true);
    spin(&e, 100);
    expect_lines(&e, "ra", 80);
    env_close(&e);
}

static void test_multiline_and_max_line(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    tail_start(&e, "app.log", "^[0-9]{4}-", 128, true);
    append(&e, "app.log",
           "2026-12-07 ERROR boom\n"
           "Traceback (most recent call last):\n"
           "  File \"x.py\", line 1\n"
           "2026-12-07 INFO next\n");
    spin(&e, 50);
    read_back(&e);
    assert_int_equal(e.n, 1); /* the second record is open until a start line or the flush */
    assert_string_equal(e.msgs[0], "2026-12-07 ERROR boom\nTraceback (most recent call last):\n"
                                   "  File \"x.py\", line 1");
    assert_int_equal(e.levels[0], RECORD_LEVEL_ERROR);
    spin(&e, 400); /* multiline_flush_ms = 200 */
    read_back(&e);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.msgs[1], "2026-12-07 INFO next");
    /* A record longer than max_line (128) is cut and marked. */
    char longline[400];
    memset(longline, 'x', 300);
    memcpy(longline, "2026-12-07 ", 11);
    longline[300] = '\n';
    longline[301] = 0;
    append(&e, "app.log", longline);
    append(&e, "app.log", "2026-12-07 after\n");
    spin(&e, 400);
    read_back(&e);
    assert_int_equal(e.n, 4);
    assert_int_equal(strlen(e.msgs[2]), 128);
    assert_true(e.cut[2]);
    assert_string_equal(e.msgs[3], "2026-12-07 after");
    assert_false(e.cut[3]);
    env_close(&e);
}

static void test_long_line_without_newline_is_cut_once(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    tail_start(&e, "app.log", NULL, 100, true);
    char big[5000];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = 0;
    append(&e, "app.log", big); /* no newline yet */
    spin(&e, 50);
    append(&e, "app.log", big);
    spin(&e, 50);
    append(&e, "app.log", "\nnext\n");
    spin(&e, 50);
    read_back(&e);
    assert_int_equal(e.n, 2);
    assert_int_equal(strlen(e.msgs[0]), 100);
    assert_true(e.cut[0]);
    assert_string_equal(e.msgs[1], "next");
    /* The skip survives a restart: a new tailer does not emit the rest of the long line. */
    tail_stop(&e);
    append(&e, "app.log", big);
    tail_start(&e, "app.log", NULL, 100, true);
    spin(&e, 50);
    append(&e, "app.log", "\nlast\n");
    spin(&e, 50);
    read_back(&e);
    assert_int_equal(e.n, 4);
    assert_true(e.cut[2]);
    assert_string_equal(e.msgs[3], "last");
    tail_stop(&e);
    tail_start(&e, "app.log", NULL, 100, true);
    spin(&e, 50);
    read_back(&e);
    assert_int_equal(e.n, 4);
    env_close(&e);
}

/* Bytes that are not UTF-8 (and NULs) are repaired with U+FFFD, never refused or stalled on. */
static void test_invalid_utf8_is_repaired(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    tail_start(&e, "app.log", NULL, 1024, true);
    char path[400];
    snprintf(path, sizeof path, "%s/app.log", e.logs);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fwrite("bad \xff\xfe and \0 nul\nok \xc3\xa9\n", 1, 23, f);
    assert_int_equal(fclose(f), 0);
    spin(&e, 100);
    read_back(&e);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.msgs[0], "bad \xef\xbf\xbd\xef\xbf\xbd and \xef\xbf\xbd nul");
    assert_string_equal(e.msgs[1], "ok \xc3\xa9");
    env_close(&e);
}

static void test_bad_options(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    char err[COLLECT_ERRBUF];
    struct tail_opts o = {"x", "/tmp/*/app.log", NULL, NULL, 1024, true, true, 200};
    assert_int_equal(tail_new(e.base, e.j, &o, NULL, NULL, &e.t, err, sizeof err), COLLECT_EINVAL);
    assert_non_null(strstr(err, "wildcards only in the file name"));
    o.paths = "relative.log";
    assert_int_equal(tail_new(e.base, e.j, &o, NULL, NULL, &e.t, err, sizeof err), COLLECT_EINVAL);
    o.paths = "/tmp/x.log";
    o.multiline_start = "([";
    assert_int_equal(tail_new(e.base, e.j, &o, NULL, NULL, &e.t, err, sizeof err), COLLECT_EINVAL);
    assert_non_null(strstr(err, "multiline_start"));
    o.multiline_start = NULL;
    o.paths = "/nonexistent-dir-ferry/x.log";
    assert_int_equal(tail_new(e.base, e.j, &o, NULL, NULL, &e.t, err, sizeof err), COLLECT_EREAD);
    assert_non_null(strstr(err, "/nonexistent-dir-ferry"));
    e.t = NULL;
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_lines_partial_and_levels),
        cmocka_unit_test(test_rename_rotation),
        cmocka_unit_test(test_copytruncate_rotation),
        cmocka_unit_test(test_restart_and_rotations_while_stopped),
        cmocka_unit_test(test_multiline_and_max_line),
        cmocka_unit_test(test_long_line_without_newline_is_cut_once),
        cmocka_unit_test(test_invalid_utf8_is_repaired),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
