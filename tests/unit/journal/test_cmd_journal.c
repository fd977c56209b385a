/*
 * test_cmd_journal.c - `ferry journal stats|tail|dump` against a journal that another handle
 * (this process) keeps open for writing, as ferryd would: records made with record_pack(), the
 * real `ferry` binary run with popen(), its JSON parsed with jansson.
 *
 *   test_cmd_journal PATH_TO_FERRY
 */
#include "jtest.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "common/buf.h"
#include "journal/journal.h"
#include "transport/record.h"

static const char *ferry_bin;

/* Runs `ferry journal ARGS`; returns its exit status and its stdout (malloc'd). */
static int run(const char *args, char **out)
{
    char cmd[8192];
    /* FERRY_TEST_EXEC_PREFIX: the emulator of a cross build tested without binfmt_misc
     * (scripts/cross-arm64.sh). */
    const char *pre = getenv("FERRY_TEST_EXEC_PREFIX");
    snprintf(cmd, sizeof(cmd), "%s%s%s journal %s 2>/dev/null", pre ? pre : "", pre ? " " : "",
             ferry_bin, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    int status = pclose(p);
    *out = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void append_log(struct journal *j, int i)
{
    char msg[64];
    snprintf(msg, sizeof(msg), "line %d", i);
    struct record_tag tag = {{"host", 4}, {"jetson-1", 8}};
    struct record_field field = {{"n", 1}, RECORD_FIELD_INT, {.i = i}};
    struct record r = {RECORD_LOG,         0,    1000 + i, {"app", 3}, RECORD_LEVEL_WARN,
                       {msg, strlen(msg)}, &tag, 1,        &field,     1};
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(record_pack(&r, &b), 0);
    assert_int_equal(
        journal_append(j, RECORD_LOG, r.ts_ns, b.data, b.len, JOURNAL_APPEND_WAIT, NULL), 0);
    ferry_buf_free(&b);
}

static void test_cli_reads_while_writer_is_open(void **state)
{
    (void)state;
    char *dir = jtest_tmpdir();
    struct journal_config cfg;
    journal_config_init(&cfg);
    cfg.quota_bytes = 8ull * 1024 * 1024;
    struct journal *j = NULL;
    assert_int_equal(journal_open(dir, &cfg, &j, NULL, NULL, 0), 0);
    for (int i = 1; i <= 5; i++)
        append_log(j, i);
    assert_int_equal(
        journal_append(j, RECORD_EVENT, 7, "\xff\x01garbage", 9, JOURNAL_APPEND_WAIT, NULL), 0);
    struct journal_range r = {1, 1};
    assert_int_equal(journal_ack(j, RECORD_LOG, &r, 1), 0);

    char args[4200], *out = NULL;
    /* dump --json: one object per unsent record, in order, decoded */
    snprintf(args, sizeof(args), "dump %s --stream log --json", dir);
    assert_int_equal(run(args, &out), 0);
    int lines = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        assert_non_null(o);
        lines++;
        assert_int_equal(json_integer_value(json_object_get(o, "seq")), lines + 1);
        assert_string_equal(json_string_value(json_object_get(o, "stream")), "log");
        assert_string_equal(json_string_value(json_object_get(o, "name")), "app");
        assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
        assert_string_equal(json_string_value(json_object_get(json_object_get(o, "tags"), "host")),
                            "jetson-1");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "fields"), "n")),
                         lines + 1);
        json_decref(o);
    }
    assert_int_equal(lines, 4);
    free(out);

    /* a payload that is not a record is shown, not fatal */
    snprintf(args, sizeof(args), "dump %s --stream event --json", dir);
    assert_int_equal(run(args, &out), 0);
    assert_non_null(strstr(out, "\"undecodable\""));
    assert_non_null(strstr(out, "\"payload_len\":9"));
    free(out);

    /* tail: the newest two, printed oldest first */
    snprintf(args, sizeof(args), "tail %s --stream log -n 2", dir);
    assert_int_equal(run(args, &out), 0);
    char *l4 = strstr(out, "line 4"), *l5 = strstr(out, "line 5");
    assert_non_null(l4);
    assert_non_null(l5);
    assert_true(l4 < l5);
    assert_null(strstr(out, "line 3"));
    /* device time for a person: UTC with milliseconds (these records say 1,004 ns after 1970) */
    assert_non_null(strstr(out, " 1970-01-01T00:00:00.000Z "));
    free(out);

    /* stats --json while the writer keeps going */
    append_log(j, 6);
    snprintf(args, sizeof(args), "stats %s --json", dir);
    assert_int_equal(run(args, &out), 0);
    json_error_t err;
    json_t *st = json_loads(out, 0, &err);
    assert_non_null(st);
    json_t *log = json_object_get(json_object_get(st, "streams"), "log");
    assert_int_equal(json_integer_value(json_object_get(log, "records")), 5);
    assert_int_equal(json_integer_value(json_object_get(log, "unsent_records")), 5);
    assert_int_equal(json_integer_value(json_object_get(log, "next_seq")), 7);
    assert_int_equal(json_integer_value(json_object_get(log, "oldest_unsent_seq")), 2);
    json_decref(st);
    free(out);

    /* human stats */
    snprintf(args, sizeof(args), "stats %s", dir);
    assert_int_equal(run(args, &out), 0);
    assert_non_null(strstr(out, "metric"));
    free(out);

    /* CLI conventions (ferry(1)): --data-dir in both forms, options before or after the
     * subcommand give the same answer as the older positional form */
    char *ref = NULL;
    snprintf(args, sizeof(args), "stats %s --json", dir);
    assert_int_equal(run(args, &ref), 0);
    const char *forms[][2] = {{"stats --data-dir=", " --json"},
                              {"--json stats -d ", ""},
                              {"--data-dir ", " --json stats"}};
    for (size_t k = 0; k < sizeof forms / sizeof forms[0]; k++) {
        snprintf(args, sizeof(args), "%s%s%s", forms[k][0], dir, forms[k][1]);
        assert_int_equal(run(args, &out), 0);
        json_error_t e1, e2;
        json_t *a = json_loads(ref, 0, &e1), *b = json_loads(out, 0, &e2);
        assert_non_null(a);
        assert_non_null(b);
        /* the same counts (ages move on between the runs) */
        const char *names[] = {"event", "metric", "log"};
        for (int si = 0; si < 3; si++) {
            json_t *x = json_object_get(json_object_get(a, "streams"), names[si]);
            json_t *y = json_object_get(json_object_get(b, "streams"), names[si]);
            assert_non_null(x);
            assert_non_null(y);
            assert_true(json_equal(json_object_get(x, "records"), json_object_get(y, "records")));
            assert_true(json_equal(json_object_get(x, "unsent_records"),
                                   json_object_get(y, "unsent_records")));
        }
        json_decref(a);
        json_decref(b);
        free(out);
    }
    free(ref);
    assert_int_equal(run("--version", &out), 0);
    assert_non_null(strstr(out, "ferry "));
    free(out);

    assert_int_equal(journal_close(j), 0);

    /* errors: no journal there (1), usage (2) */
    char *empty = jtest_tmpdir();
    snprintf(args, sizeof(args), "stats %s", empty);
    assert_int_equal(run(args, &out), 1);
    free(out);
    snprintf(args, sizeof(args), "frobnicate %s", empty);
    assert_int_equal(run(args, &out), 2);
    free(out);
    assert_int_equal(run("--help", &out), 0);
    assert_non_null(strstr(out, "usage: ferry journal"));
    free(out);
    jtest_rm_rf(empty);
    free(empty);
    jtest_rm_rf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_cmd_journal PATH_TO_FERRY\n");
        return 2;
    }
    ferry_bin = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_reads_while_writer_is_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
