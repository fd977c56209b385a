/*
 * test_collect_journald.c - [input.journald.NAME] on real journal files: systemd-journal-remote
 * (Debian's systemd-journal-remote) turns export-format text into journal files, which the input
 * reads with sd_journal_open_directory (no running journald). Proves the record mapping, the
 * unit and priority filters, entries of files that appear later, and that the cursor committed
 * with the records makes a restart continue exactly where it stopped.
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

#define JOURNAL_REMOTE "/lib/systemd/systemd-journal-remote"

struct env {
    char dir[256], jdir[300];
    struct event_base *base;
    struct journal *j;
    int files;
    char msgs[64][128];
    int levels[64];
    char names[64][64];
    size_t n;
};

/* Writes entries "<prefix> <i>" for i in [from, to] as a new journal file. */
static void make_file(struct env *e, const char *unit, int prio, const char *prefix, int from,
                      int to)
{
    char exp[400], cmd[1200];
    snprintf(exp, sizeof exp, "%s/in-%d.export", e->dir, e->files);
    FILE *f = fopen(exp, "w");
    assert_non_null(f);
    for (int i = from; i <= to; i++)
        fprintf(f,
                "__REALTIME_TIMESTAMP=%lld\n__MONOTONIC_TIMESTAMP=%d\n"
                "_BOOT_ID=0123456789abcdef0123456789abcdef\nMESSAGE=%s %d\nPRIORITY=%d\n"
                "_SYSTEMD_UNIT=%s\nSYSLOG_IDENTIFIER=%s\n_PID=42\n\n",
                1700000000000000LL + e->files * 1000000LL + i, 1000 + e->files * 1000 + i, prefix,
                i, prio, unit, prefix);
    assert_int_equal(fclose(f), 0);
    snprintf(cmd, sizeof cmd, JOURNAL_REMOTE " -o %s/remote-%d.journal %s >/dev/null 2>&1", e->jdir,
             e->files, exp);
    assert_int_equal(system(cmd), 0);
    e->files++;
}

static void env_open(struct env *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/ferry-journald-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->jdir, sizeof e->jdir, "%s/journal-files", e->dir);
    assert_int_equal(mkdir(e->jdir, 0700), 0);
    char fj[300];
    snprintf(fj, sizeof fj, "%s/ferry", e->dir);
    assert_int_equal(journal_open(fj, NULL, &e->j, NULL, NULL, 0), 0);
    e->base = event_base_new();
}

static void spin(struct env *e, int ms)
{
    struct timeval tv = {0, ms * 1000};
    event_base_loopexit(e->base, &tv);
    event_base_dispatch(e->base);
}

static int read_cb(void *arg, const struct journal_entry *je)
{
    struct env *e = arg;
    static struct record_scratch sc;
    struct record r;
    if (record_unpack(je->payload, je->len, &sc, &r, NULL, 0) != 0 || e->n == 64)
        return 1;
    snprintf(e->msgs[e->n], sizeof e->msgs[0], "%.*s", (int)r.message.len, r.message.ptr);
    snprintf(e->names[e->n], sizeof e->names[0], "%.*s", (int)r.name.len, r.name.ptr);
    e->levels[e->n] = r.level;
    e->n++;
    return 0;
}

static void read_back(struct env *e)
{
    e->n = 0;
    assert_int_equal(journal_flush(e->j), 0);
    assert_int_equal(journal_read(e->j, RECORD_LOG, NULL, read_cb, e, NULL), 0);
}

static struct journald *start(struct env *e, const char *units, int max_prio)
{
    struct journald_opts o = {"sys", e->jdir, units, max_prio, true};
    struct journald *jd = NULL;
    char err[COLLECT_ERRBUF] = "";
    int rc = journald_new(e->base, e->j, &o, NULL, NULL, &jd, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "journald_new: %s\n", err);
    assert_int_equal(rc, 0);
    return jd;
}

static void test_mapping_filters_restart(void **state)
{
    (void)state;
    if (access(JOURNAL_REMOTE, X_OK) != 0)
        fail_msg(JOURNAL_REMOTE " is missing (scripts/install-deps.sh installs "
                                "systemd-journal-remote)");
    struct env e;
    env_open(&e);
    make_file(&e, "app.service", 3, "app", 1, 3);
    make_file(&e, "other.service", 3, "other", 1, 2); /* filtered out by unit */
    make_file(&e, "app.service", 7, "debug", 1, 2);   /* filtered out by priority */
    struct journald *jd = start(&e, "app.service", 6);
    spin(&e, 100);
    read_back(&e);
    assert_int_equal(e.n, 3);
    assert_string_equal(e.msgs[0], "app 1");
    assert_string_equal(e.msgs[2], "app 3");
    assert_string_equal(e.names[0], "app");
    assert_int_equal(e.levels[0], RECORD_LEVEL_ERROR);
    /* A file that appears later is picked up through sd-journal's descriptor. */
    make_file(&e, "app.service", 4, "app", 4, 5);
    spin(&e, 300);
    read_back(&e);
    assert_int_equal(e.n, 5);
    assert_string_equal(e.msgs[4], "app 5");
    assert_int_equal(e.levels[4], RECORD_LEVEL_WARN);
    /* Restart: continues after the committed cursor, nothing twice. */
    journald_free(jd);
    make_file(&e, "app.service", 6, "app", 6, 7);
    jd = start(&e, "app.service", 6);
    spin(&e, 100);
    read_back(&e);
    assert_int_equal(e.n, 7);
    for (size_t i = 0; i < 7; i++) {
        char want[32];
        snprintf(want, sizeof want, "app %zu", i + 1);
        assert_string_equal(e.msgs[i], want);
    }
    journald_free(jd);
    /* No filter: every entry, from the beginning for a new NAME. */
    struct journald_opts o = {"all", e.jdir, "", 7, true};
    char err[COLLECT_ERRBUF];
    assert_int_equal(journald_new(e.base, e.j, &o, NULL, NULL, &jd, err, sizeof err), 0);
    spin(&e, 100);
    read_back(&e);
    assert_int_equal(e.n, 7 + 11);
    journald_free(jd);
    /* A directory that does not exist is an error that names it. */
    o.directory = "/nonexistent-journal-dir";
    int rc = journald_new(e.base, e.j, &o, NULL, NULL, &jd, err, sizeof err);
    if (rc == 0)
        journald_free(jd); /* sd-journal may accept an empty directory: then it reads nothing */
    else
        assert_non_null(strstr(err, "/nonexistent-journal-dir"));
    assert_int_equal(journal_close(e.j), 0);
    event_base_free(e.base);
    dir_remove(e.dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mapping_filters_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
