/*
 * test_action_agent.c - ferryd's device actions (engine/action/agent.h): the allow-list, running
 * a command (exit code, output tail, timeout), and execution at most once across crashes - an
 * action "started" in the journal by a process that died is reported as interrupted and never
 * run; a seen id is never run again; forged, foreign, expired and disallowed actions are refused
 * with a reason. Uses a real journal and event loop; the ingest is absent (polls fail: the
 * envelopes are offered directly, as a poll would).
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
#include <sodium.h>

#include "common/buf.h"
#include "common/util.h"
#include "engine/action/agent.h"
#include "journal/journal.h"
#include "transport/action.h"
#include "transport/http_client.h"
#include "transport/record.h"

#define SET(dst, src) ferry_strlcpy((dst), (src), sizeof(dst))

struct fixture {
    char dir[64], out[128], script[128], boot[128], commands[512];
    struct journal *j;
    struct event_base *base;
    struct http_client *http;
    uint8_t pk[32], sk[64], pk2[32], sk2[64];
    struct action_agent_config cfg;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL || sodium_init() < 0)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/ferry-action-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    struct journal_config jc;
    journal_config_init(&jc);
    jc.quota_bytes = 64ULL * 1024 * 1024;
    char err[256];
    if (journal_open(f->dir, &jc, &f->j, NULL, err, sizeof err) != 0)
        return -1;
    f->base = event_base_new();
    f->http = http_client_new(f->base);
    if (f->base == NULL || f->http == NULL)
        return -1;
    crypto_sign_keypair(f->pk, f->sk);
    crypto_sign_keypair(f->pk2, f->sk2);
    snprintf(f->out, sizeof f->out, "%s/out.txt", f->dir);
    snprintf(f->script, sizeof f->script, "%s/act.sh", f->dir);
    snprintf(f->boot, sizeof f->boot, "%s/boot_id", f->dir);
    FILE *s = fopen(f->script, "w");
    if (s == NULL)
        return -1;
    fprintf(s, "echo \"$1\" >> %s\necho ran \"$1\"\n", f->out);
    fclose(s);
    if (ferry_write_file_atomic(f->boot, "boot-1\n", 7, 0644) != 0)
        return -1;
    snprintf(f->commands, sizeof f->commands, "/bin/sh %s one; /bin/sh %s two", f->script,
             f->script);
    struct action_agent_config *c = &f->cfg;
    c->server_url = "http://127.0.0.1:1"; /* nothing listens: polls fail, offline */
    c->device_id = "dev-1";
    c->keys = (const uint8_t(*)[32])f->pk;
    c->n_keys = 1;
    c->units = "app.service, other.service";
    c->commands = f->commands;
    c->restart_command = "/bin/echo restart";
    c->reboot_command = "/bin/echo rebooting";
    c->poll_interval_ms = 3600 * 1000;
    c->timeout_ms = 10000;
    c->output_max = 64;
    c->boot_id_file = f->boot;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    http_client_free(f->http);
    event_base_free(f->base);
    assert_int_equal(journal_close(f->j), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void make(struct action *a, enum action_kind kind, const char *arg)
{
    memset(a, 0, sizeof(*a));
    action_new_id(a->id);
    SET(a->device, "dev-1");
    a->kind = kind;
    a->created_s = ferry_realtime_ns() / 1000000000;
    a->expires_s = a->created_s + 3600;
    if (kind == ACTION_RESTART_UNIT) {
        SET(a->args[0], arg);
        a->n_args = 1;
    }
}

static void make_run(struct fixture *f, struct action *a, const char *word)
{
    make(a, ACTION_RUN, NULL);
    SET(a->args[0], "/bin/sh");
    SET(a->args[1], f->script);
    SET(a->args[2], word);
    a->n_args = 3;
}

static char *sign(const struct action *a, const uint8_t *sk)
{
    struct ferry_buf b = FERRY_BUF_INIT;
    char why[200];
    assert_int_equal(action_sign(a, sk, &b, why, sizeof why), 0);
    assert_int_equal(ferry_buf_append_u8(&b, 0), 0);
    return (char *)b.data;
}

/* The "action.result" events in the journal for `id`: how many, and the last one's status and
 * reason. */
struct found {
    const char *id;
    int n;
    char status[32], reason[256], output[128];
};

static int read_cb(void *arg, const struct journal_entry *e)
{
    struct found *fd = arg;
    struct record_scratch *sc = malloc(sizeof *sc);
    struct record r;
    char why[128];
    if (sc && record_unpack(e->payload, e->len, sc, &r, why, sizeof why) == 0 && r.name.len == 13 &&
        memcmp(r.name.ptr, "action.result", 13) == 0) {
        bool mine = false;
        char status[32] = "", reason[256] = "", output[128] = "";
        for (size_t i = 0; i < r.n_fields; i++) {
            const struct record_field *x = &r.fields[i];
            if (x->type != RECORD_FIELD_STRING)
                continue;
            char *dst = NULL;
            size_t cap = 0;
            if (x->key.len == 2 && memcmp(x->key.ptr, "id", 2) == 0)
                mine = x->v.s.len == strlen(fd->id) && memcmp(x->v.s.ptr, fd->id, x->v.s.len) == 0;
            else if (x->key.len == 6 && memcmp(x->key.ptr, "status", 6) == 0)
                dst = status, cap = sizeof status;
            else if (x->key.len == 6 && memcmp(x->key.ptr, "reason", 6) == 0)
                dst = reason, cap = sizeof reason;
            else if (x->key.len == 6 && memcmp(x->key.ptr, "output", 6) == 0)
                dst = output, cap = sizeof output;
            if (dst) {
                size_t n = x->v.s.len < cap - 1 ? x->v.s.len : cap - 1;
                memcpy(dst, x->v.s.ptr, n);
                dst[n] = '\0';
            }
        }
        if (mine) {
            fd->n++;
            SET(fd->status, status);
            SET(fd->reason, reason);
            SET(fd->output, output);
        }
    }
    free(sc);
    return 0;
}

static struct found results(struct fixture *f, const char *id)
{
    struct found fd = {id, 0, "", "", ""};
    assert_int_equal(journal_read(f->j, RECORD_EVENT, NULL, read_cb, &fd, NULL), 0);
    return fd;
}

/* Runs the loop until `id` has a result (or 10 s). */
static struct found wait_result(struct fixture *f, const char *id)
{
    struct found fd;
    for (int i = 0; i < 1000; i++) {
        fd = results(f, id);
        if (fd.n > 0)
            return fd;
        struct timeval tv = {0, 10000};
        event_base_loopexit(f->base, &tv);
        event_base_dispatch(f->base);
    }
    return fd;
}

static int count_lines(const char *path, const char *word)
{
    FILE *fp = fopen(path, "r");
    int n = 0;
    char line[128];
    while (fp && fgets(line, sizeof line, fp))
        if (strncmp(line, word, strlen(word)) == 0 && line[strlen(word)] == '\n')
            n++;
    if (fp)
        fclose(fp);
    return n;
}

static void test_allow_list(void **state)
{
    struct fixture *f = *state;
    struct action a;
    char words[512], why[200], *argv[ACTION_ARGV_MAX + 1];
    make(&a, ACTION_RESTART_UNIT, "app.service");
    assert_int_equal(action_agent_command(&f->cfg, &a, words, sizeof words, argv, why, sizeof why),
                     0);
    assert_string_equal(argv[0], "/bin/echo");
    assert_string_equal(argv[1], "restart");
    assert_string_equal(argv[2], "app.service");
    assert_null(argv[3]);
    make(&a, ACTION_RESTART_UNIT, "app");
    assert_int_equal(action_agent_command(&f->cfg, &a, words, sizeof words, argv, why, sizeof why),
                     -1);
    assert_non_null(strstr(why, "not in [actions] units"));
    make_run(f, &a, "one");
    assert_int_equal(action_agent_command(&f->cfg, &a, words, sizeof words, argv, why, sizeof why),
                     0);
    assert_string_equal(argv[2], "one");
    /* exact lines only: another argument, one more or one less are refused */
    make_run(f, &a, "three");
    assert_int_equal(action_agent_command(&f->cfg, &a, words, sizeof words, argv, why, sizeof why),
                     -1);
    make_run(f, &a, "one");
    SET(a.args[3], "extra");
    a.n_args = 4;
    assert_int_equal(action_agent_command(&f->cfg, &a, words, sizeof words, argv, why, sizeof why),
                     -1);
    make_run(f, &a, "one");
    a.n_args = 2;
    assert_int_equal(action_agent_command(&f->cfg, &a, words, sizeof words, argv, why, sizeof why),
                     -1);
    make(&a, ACTION_REBOOT, NULL);
    assert_int_equal(action_agent_command(&f->cfg, &a, words, sizeof words, argv, why, sizeof why),
                     0);
    struct action_agent_config c = f->cfg;
    c.reboot_command = "";
    assert_int_equal(action_agent_command(&c, &a, words, sizeof words, argv, why, sizeof why), -1);
    assert_non_null(strstr(why, "reboot is off"));
}

static void test_run(void **state)
{
    (void)state;
    struct action_run_result r;
    char *seq[] = {"/bin/sh", "-c", "seq 1 1000; exit 3", NULL};
    action_run(seq, 5000, 16, NULL, &r);
    assert_int_equal(r.exit_code, 3);
    assert_false(r.timed_out);
    assert_int_equal(r.output_len, 16);
    assert_string_equal(r.output, "97\n998\n999\n1000\n"); /* the tail: 16 bytes */
    action_run_result_free(&r);
    char *slow[] = {"/bin/sh", "-c", "echo begun; sleep 30", NULL};
    int64_t t0 = ferry_monotonic_ms();
    action_run(slow, 300, 64, NULL, &r);
    assert_true(r.timed_out);
    assert_int_equal(r.exit_code, -1);
    assert_true(ferry_monotonic_ms() - t0 < 5000);
    assert_string_equal(r.output, "begun\n");
    action_run_result_free(&r);
    char *missing[] = {"/nonexistent/program", NULL};
    action_run(missing, 1000, 64, NULL, &r);
    assert_true(r.not_run);
    action_run_result_free(&r);
}

static void test_runs_once_and_refuses(void **state)
{
    struct fixture *f = *state;
    struct action_agent *ag = NULL;
    char err[200];
    assert_int_equal(action_agent_new(f->base, f->http, f->j, &f->cfg, &ag, err, sizeof err), 0);
    struct action a;
    make_run(f, &a, "one");
    char *env = sign(&a, f->sk);
    assert_int_equal(action_agent_offer(ag, env, strlen(env)), 0);
    struct found fd = wait_result(f, a.id);
    assert_int_equal(fd.n, 1);
    assert_string_equal(fd.status, "ok");
    assert_string_equal(fd.output, "ran one\n");
    assert_int_equal(count_lines(f->out, "one"), 1);
    /* delivered again (the result had not reached the ingest yet): nothing runs, no new result */
    assert_int_equal(action_agent_offer(ag, env, strlen(env)), 0);
    action_agent_free(ag);
    assert_int_equal(action_agent_new(f->base, f->http, f->j, &f->cfg, &ag, err, sizeof err), 0);
    assert_int_equal(action_agent_offer(ag, env, strlen(env)), 0);
    struct timeval tv = {0, 200000};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
    assert_int_equal(count_lines(f->out, "one"), 1);
    assert_int_equal(results(f, a.id).n, 1);
    free(env);

    /* refused: forged key, another device, expired, outside the allow-list */
    struct {
        const char *why;
        int what;
    } cases[] = {{"not one of [actions] keys", 0},
                 {"not this one", 1},
                 {"expired", 2},
                 {"not one of [actions] commands", 3}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_run(f, &a, "two");
        const uint8_t *key = f->sk;
        if (cases[i].what == 0)
            key = f->sk2;
        else if (cases[i].what == 1)
            SET(a.device, "dev-2");
        else if (cases[i].what == 2) {
            a.created_s -= 7200;
            a.expires_s = a.created_s + 60;
        } else
            SET(a.args[2], "three");
        env = sign(&a, key);
        assert_int_equal(action_agent_offer(ag, env, strlen(env)), 0);
        fd = wait_result(f, a.id);
        assert_int_equal(fd.n, 1);
        assert_string_equal(fd.status, "refused");
        assert_non_null(strstr(fd.reason, cases[i].why));
        free(env);
    }
    assert_int_equal(count_lines(f->out, "two"), 0);
    action_agent_free(ag);
}

/* A process died after it recorded "started": the next start reports it, and never runs it. */
static void test_crash_between_start_and_result(void **state)
{
    struct fixture *f = *state;
    struct action a, r;
    make_run(f, &a, "two");
    make(&r, ACTION_REBOOT, NULL);
    char key[64], val[256];
    snprintf(key, sizeof key, "%s%s", ACTION_STATE_PREFIX, a.id);
    snprintf(val, sizeof val,
             "{\"state\":\"started\",\"kind\":\"run\",\"expires\":%lld,\"boot_id\":\"boot-1\"}",
             (long long)a.expires_s);
    assert_int_equal(journal_state_put(f->j, key, strlen(key), val, strlen(val)), 0);
    /* a reboot that happened: the boot id changed since it was recorded */
    snprintf(key, sizeof key, "%s%s", ACTION_STATE_PREFIX, r.id);
    snprintf(val, sizeof val,
             "{\"state\":\"started\",\"kind\":\"reboot\",\"expires\":%lld,\"boot_id\":\"boot-0\"}",
             (long long)r.expires_s);
    assert_int_equal(journal_state_put(f->j, key, strlen(key), val, strlen(val)), 0);
    struct action_agent *ag = NULL;
    char err[200];
    assert_int_equal(action_agent_new(f->base, f->http, f->j, &f->cfg, &ag, err, sizeof err), 0);
    struct found fd = results(f, a.id);
    assert_int_equal(fd.n, 1);
    assert_string_equal(fd.status, "interrupted");
    fd = results(f, r.id);
    assert_int_equal(fd.n, 1);
    assert_string_equal(fd.status, "ok");
    assert_non_null(strstr(fd.reason, "rebooted"));
    /* the interrupted action delivered again: not run */
    char *env = sign(&a, f->sk);
    assert_int_equal(action_agent_offer(ag, env, strlen(env)), 0);
    struct timeval tv = {0, 200000};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
    assert_int_equal(count_lines(f->out, "two"), 0);
    action_agent_free(ag);
    /* and a third start reports nothing more */
    assert_int_equal(action_agent_new(f->base, f->http, f->j, &f->cfg, &ag, err, sizeof err), 0);
    assert_int_equal(results(f, a.id).n, 1);
    assert_int_equal(results(f, r.id).n, 1);
    action_agent_free(ag);
    free(env);
}

/* upload_logs: the systemd journal's entries of the last N minutes, debug included, become log
 * records tagged with the action; older entries and other units stay out. Journal files are made
 * by systemd-journal-remote from export text (no running journald needed). */
static int count_logs_cb(void *arg, const struct journal_entry *e)
{
    int *counts = arg; /* [0] records tagged, [1] of them at debug level, [2] "old" ones */
    struct record_scratch *sc = malloc(sizeof *sc);
    struct record r;
    char why[128];
    if (sc && record_unpack(e->payload, e->len, sc, &r, why, sizeof why) == 0) {
        for (size_t i = 0; i < r.n_tags; i++)
            if (r.tags[i].key.len == 6 && memcmp(r.tags[i].key.ptr, "action", 6) == 0) {
                counts[0]++;
                counts[1] += r.level == 7;
                counts[2] += r.message.len >= 3 && memcmp(r.message.ptr, "old", 3) == 0;
            }
    }
    free(sc);
    return 0;
}

static void test_upload_logs(void **state)
{
    struct fixture *f = *state;
    char exp[256], jdir[256], cmd[800];
    snprintf(exp, sizeof exp, "%s/in.export", f->dir);
    snprintf(jdir, sizeof jdir, "%s/sysjournal", f->dir);
    assert_int_equal(mkdir(jdir, 0700), 0);
    FILE *fp = fopen(exp, "w");
    assert_non_null(fp);
    long long now_us = ferry_realtime_ns() / 1000;
    for (int i = 0; i < 30; i++) {
        /* 10 entries two hours old, 20 of the last ten minutes; every third at debug level;
         * the new ones alternate between two units */
        bool old = i < 10;
        long long ts = old ? now_us - 7200000000LL + i : now_us - 600000000LL + i * 1000000LL;
        fprintf(fp,
                "__REALTIME_TIMESTAMP=%lld\n__MONOTONIC_TIMESTAMP=%d\n"
                "_BOOT_ID=0123456789abcdef0123456789abcdef\nMESSAGE=%s %d\nPRIORITY=%d\n"
                "_SYSTEMD_UNIT=%s\nSYSLOG_IDENTIFIER=app\n_PID=42\n\n",
                ts, 1000 + i, old ? "old" : "new", i, i % 3 == 0 ? 7 : 6,
                i % 2 ? "app.service" : "other.service");
    }
    assert_int_equal(fclose(fp), 0);
    snprintf(cmd, sizeof cmd,
             "/lib/systemd/systemd-journal-remote -o %s/remote.journal %s >/dev/null 2>&1", jdir,
             exp);
    assert_int_equal(system(cmd), 0);
    f->cfg.logs_directory = jdir;
    struct action_agent *ag = NULL;
    char err[200];
    assert_int_equal(action_agent_new(f->base, f->http, f->j, &f->cfg, &ag, err, sizeof err), 0);
    struct action a;
    make(&a, ACTION_UPLOAD_LOGS, NULL);
    SET(a.args[0], "30");
    a.n_args = 1;
    char *env = sign(&a, f->sk);
    assert_int_equal(action_agent_offer(ag, env, strlen(env)), 0);
    struct found fd = wait_result(f, a.id);
    assert_int_equal(fd.n, 1);
    assert_string_equal(fd.status, "ok");
    assert_non_null(strstr(fd.output, "20 log records of the last 30 minutes"));
    int counts[3] = {0, 0, 0};
    assert_int_equal(journal_read(f->j, RECORD_LOG, NULL, count_logs_cb, counts, NULL), 0);
    assert_int_equal(counts[0], 20); /* the new ones */
    assert_int_equal(counts[1], 6);  /* i = 12, 15, ..., 27: debug level kept */
    assert_int_equal(counts[2], 0);  /* nothing older than 30 minutes */
    free(env);
    /* one unit only */
    make(&a, ACTION_UPLOAD_LOGS, NULL);
    SET(a.args[0], "30");
    SET(a.args[1], "app.service");
    a.n_args = 2;
    env = sign(&a, f->sk);
    assert_int_equal(action_agent_offer(ag, env, strlen(env)), 0);
    fd = wait_result(f, a.id);
    assert_string_equal(fd.status, "ok");
    assert_non_null(strstr(fd.output, "10 log records"));
    free(env);
    action_agent_free(ag);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_allow_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_once_and_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_between_start_and_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_logs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
