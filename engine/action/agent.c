/*
 * agent.c - ferryd's device actions: poll, verify, run at most once, report (agent.h).
 */
#include "engine/action/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "journal/journal.h"
#include "transport/http_client.h"
#include "transport/record.h"

extern char **environ;

#define POLL_BODY_MAX (256u * 1024u)
#define REFUSED_KEEP_S (7 * 86400) /* how long a refused id whose expiry is unknown is kept */

struct action_agent {
    struct event_base *base;
    struct http_client *http;
    struct journal *journal;
    struct action_agent_config cfg;
    struct event *poll_timer, *done_ev;
    struct http_request *poll_req;
    int64_t server_offset_s;             /* the ingest's clock minus ours (from X-Ferry-Time) */
    char *queue[ACTION_AGENT_QUEUE_MAX]; /* envelopes received, not yet looked at */
    size_t n_queue;
    /* the action running on the worker thread */
    bool running;
    pthread_t thread;
    int pipe_fd[2];
    volatile pid_t child;
    struct action cur;
    char words[4096];
    char *argv[ACTION_ARGV_MAX + 1];
    struct action_run_result result;
};

/* ---- Allow-list ------------------------------------------------------------------------- */

/* Splits `text` (copied to words) on whitespace into argv from *n. -1 when it does not fit. */
static int split_words(const char *text, size_t text_len, char **words, size_t *words_left,
                       char *argv[], size_t *n)
{
    size_t i = 0;
    while (i < text_len) {
        while (i < text_len && (text[i] == ' ' || text[i] == '\t'))
            i++;
        size_t start = i;
        while (i < text_len && text[i] != ' ' && text[i] != '\t')
            i++;
        if (i == start)
            break;
        size_t len = i - start;
        if (*n >= ACTION_ARGV_MAX || len + 1 > *words_left)
            return -1;
        memcpy(*words, text + start, len);
        (*words)[len] = '\0';
        argv[(*n)++] = *words;
        *words += len + 1;
        *words_left -= len + 1;
    }
    return 0;
}

/* Whether `item` is one of the entries of `list` separated by any of `seps`. */
static bool in_list(const char *list, const char *seps, const char *item)
{
    size_t n = strlen(item);
    for (const char *p = list ? list : ""; *p;) {
        size_t len = strcspn(p, seps);
        if (len == n && memcmp(p, item, n) == 0)
            return true;
        p += len;
        p += strspn(p, seps);
    }
    return false;
}

/* Whether one ';'-separated command line of `commands`, split on whitespace, is exactly args. */
static bool command_allowed(const char *commands, const struct action *a)
{
    for (const char *p = commands ? commands : ""; *p;) {
        size_t len = strcspn(p, ";");
        char words[4096], *argv[ACTION_ARGV_MAX + 1], *w = words;
        size_t left = sizeof(words), n = 0;
        if (split_words(p, len, &w, &left, argv, &n) == 0 && n == a->n_args && n > 0) {
            bool same = true;
            for (size_t i = 0; i < n && same; i++)
                same = strcmp(argv[i], a->args[i]) == 0;
            if (same)
                return true;
        }
        p += len;
        if (*p == ';')
            p++;
    }
    return false;
}

int action_agent_command(const struct action_agent_config *cfg, const struct action *a, char *words,
                         size_t words_len, char *argv[ACTION_ARGV_MAX + 1], char *why,
                         size_t why_len)
{
    size_t n = 0, left = words_len;
    char *w = words;
    const char *base = NULL;
    switch (a->kind) {
    case ACTION_RESTART_UNIT:
        if (a->n_args != 1 || !in_list(cfg->units, ", \t", a->args[0])) {
            snprintf(why, why_len, "unit %s is not in [actions] units", a->args[0]);
            return -1;
        }
        base = cfg->restart_command;
        break;
    case ACTION_REBOOT:
        base = cfg->reboot_command;
        if (base == NULL || !base[0]) {
            snprintf(why, why_len, "reboot is off ([actions] reboot_command is empty)");
            return -1;
        }
        break;
    case ACTION_RUN:
        if (!command_allowed(cfg->commands, a)) {
            snprintf(why, why_len, "the command is not one of [actions] commands");
            return -1;
        }
        break;
    case ACTION_UPLOAD_LOGS:
        argv[0] = NULL; /* no command: the worker reads the systemd journal */
        return 0;
    }
    if (base != NULL && (split_words(base, strlen(base), &w, &left, argv, &n) != 0 || n == 0)) {
        snprintf(why, why_len, "the configured %s command is empty or too long",
                 action_kind_name(a->kind));
        return -1;
    }
    for (size_t i = 0; i < a->n_args && a->kind != ACTION_REBOOT; i++) {
        if (n >= ACTION_ARGV_MAX) {
            snprintf(why, why_len, "more than %d words", ACTION_ARGV_MAX);
            return -1;
        }
        argv[n++] = (char *)a->args[i];
    }
    argv[n] = NULL;
    return 0;
}

/* ---- Running a command ------------------------------------------------------------------ */

static void keep_tail(struct action_run_result *r, size_t cap, const char *p, size_t n)
{
    if (n >= cap) {
        memcpy(r->output, p + n - cap, cap);
        r->output_len = cap;
        return;
    }
    if (r->output_len + n > cap) {
        size_t drop = r->output_len + n - cap;
        memmove(r->output, r->output + drop, r->output_len - drop);
        r->output_len -= drop;
    }
    memcpy(r->output + r->output_len, p, n);
    r->output_len += n;
}

void action_run(char *const argv[], int64_t timeout_ms, size_t output_max, volatile pid_t *pid,
                struct action_run_result *out)
{
    memset(out, 0, sizeof(*out));
    out->exit_code = -1;
    if (output_max == 0)
        output_max = 1;
    out->output = calloc(1, output_max + 1);
    if (out->output == NULL) {
        out->not_run = true;
        return;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        out->not_run = true;
        out->output_len =
            (size_t)snprintf(out->output, output_max + 1, "pipe: %s", strerror(errno));
        return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawnattr_setpgroup(&attr, 0); /* its own group: a timeout kills what it started */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    pid_t child = 0;
    int rc = posix_spawn(&child, argv[0], &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        out->not_run = true;
        out->output_len =
            (size_t)snprintf(out->output, output_max + 1, "%s: %s", argv[0], strerror(rc));
        if (out->output_len > output_max)
            out->output_len = output_max;
        return;
    }
    if (pid != NULL)
        *pid = child;
    int64_t deadline = ferry_monotonic_ms() + timeout_ms;
    bool open = true;
    int status = 0;
    for (;;) {
        int64_t left = deadline - ferry_monotonic_ms();
        if (left <= 0) {
            out->timed_out = true;
            kill(-child, SIGKILL);
            break;
        }
        if (open) {
            struct pollfd p = {fds[0], POLLIN, 0};
            int r = poll(&p, 1, (int)(left > 200 ? 200 : left));
            if (r > 0) {
                char buf[1024];
                ssize_t n = read(fds[0], buf, sizeof(buf));
                if (n > 0)
                    keep_tail(out, output_max, buf, (size_t)n);
                else if (n == 0 || errno != EINTR)
                    open = false;
            }
        } else {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (waitpid(child, &status, WNOHANG) == child) {
            child = 0;
            break;
        }
    }
    if (child != 0)
        waitpid(child, &status, 0);
    /* what is still in the pipe (the group may live on; take what is there without waiting) */
    int fl = fcntl(fds[0], F_GETFL);
    if (fl >= 0 && fcntl(fds[0], F_SETFL, fl | O_NONBLOCK) == 0) {
        char buf[1024];
        ssize_t n;
        while (open && (n = read(fds[0], buf, sizeof(buf))) > 0)
            keep_tail(out, output_max, buf, (size_t)n);
    }
    close(fds[0]);
    if (pid != NULL)
        *pid = 0;
    if (!out->timed_out && WIFEXITED(status))
        out->exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        out->signal = WTERMSIG(status);
    out->output[out->output_len] = '\0';
}

void action_run_result_free(struct action_run_result *r)
{
    free(r->output);
    r->output = NULL;
    r->output_len = 0;
}

/* ---- Journal state and events ----------------------------------------------------------- */

static int64_t now_s(const struct action_agent *a)
{
    return ferry_realtime_ns() / 1000000000 + a->server_offset_s;
}

static void boot_id(const struct action_agent_config *cfg, char out[40])
{
    uint8_t *data = NULL;
    size_t len = 0;
    out[0] = '\0';
    const char *path = cfg->boot_id_file ? cfg->boot_id_file : "/proc/sys/kernel/random/boot_id";
    if (ferry_read_file(path, 64, &data, &len) == 0) {
        while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == ' '))
            len--;
        if (len < 40) {
            memcpy(out, data, len);
            out[len] = '\0';
        }
    }
    free(data);
}

static void str_field(struct record_field *f, const char *key, const char *value, size_t len)
{
    f->key = (struct record_str){key, strlen(key)};
    f->type = RECORD_FIELD_STRING;
    f->v.s = (struct record_str){value, len};
}

/* Commits `state_json` under action/<id> together with the event `name`. */
static int persist(struct action_agent *a, const char *id, const char *state_json, const char *name,
                   const char *kind, const char *status, int exit_code, const char *output,
                   size_t output_len, const char *reason)
{
    struct record_field f[6];
    size_t nf = 0;
    str_field(&f[nf++], "id", id, strlen(id));
    str_field(&f[nf++], "kind", kind, strlen(kind));
    if (status != NULL) {
        str_field(&f[nf++], "status", status, strlen(status));
        f[nf].key = (struct record_str){"exit_code", 9};
        f[nf].type = RECORD_FIELD_INT;
        f[nf].v.i = exit_code;
        nf++;
        str_field(&f[nf++], "output", output ? output : "", output ? output_len : 0);
        str_field(&f[nf++], "reason", reason ? reason : "", reason ? strlen(reason) : 0);
    }
    struct record r = {0};
    r.stream = RECORD_EVENT;
    r.ts_ns = ferry_realtime_ns();
    r.name = (struct record_str){name, strlen(name)};
    r.fields = f;
    r.n_fields = nf;
    struct ferry_buf payload = FERRY_BUF_INIT;
    int rc = record_pack(&r, &payload);
    char key[64];
    snprintf(key, sizeof(key), "%s%s", ACTION_STATE_PREFIX, id);
    struct journal_state_op op = {key, strlen(key), state_json, strlen(state_json), false};
    if (rc == 0)
        rc = journal_append_event_with_state(a->journal, r.ts_ns, payload.data, payload.len, &op, 1,
                                             JOURNAL_APPEND_WAIT, NULL);
    ferry_buf_free(&payload);
    if (rc != 0) {
        log_error("action", "%s %s: cannot commit to the journal (%d)", name, id, rc);
        return -1;
    }
    if (a->cfg.wake)
        a->cfg.wake(a->cfg.wake_arg);
    return 0;
}

static int report(struct action_agent *a, const char *id, const char *kind, int64_t expires_s,
                  const char *status, int exit_code, const char *output, size_t output_len,
                  const char *reason)
{
    json_t *st = json_pack("{s:s,s:s,s:s,s:I}", "state", "done", "kind", kind, "status", status,
                           "expires", (json_int_t)expires_s);
    char *text = st ? json_dumps(st, JSON_COMPACT) : NULL;
    json_decref(st);
    if (text == NULL)
        return -1;
    int rc =
        persist(a, id, text, "action.result", kind, status, exit_code, output, output_len, reason);
    free(text);
    log_info("action", "%s %s: %s%s%s", kind, id, status, reason && reason[0] ? " - " : "",
             reason ? reason : "");
    return rc;
}

/* Whether the id has a journal entry (started or done). Errors count as seen: never run twice. */
static bool seen(struct action_agent *a, const char *id)
{
    char key[64];
    size_t len = 0;
    snprintf(key, sizeof(key), "%s%s", ACTION_STATE_PREFIX, id);
    int rc = journal_state_get(a->journal, key, strlen(key), NULL, 0, &len);
    return rc != JOURNAL_ENOTFOUND;
}

/* ---- Start-up: what a crash left ---------------------------------------------------------- */

struct entry {
    char id[ACTION_ID_HEX + 1];
    char kind[16];
    char boot_id[40];
    int64_t expires_s;
    bool started;
};

struct scan {
    struct entry *e;
    size_t n, cap;
};

static int scan_cb(void *arg, const char *key, size_t key_len, const void *value, size_t len)
{
    struct scan *s = arg;
    size_t plen = strlen(ACTION_STATE_PREFIX);
    if (key_len != plen + ACTION_ID_HEX)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct entry *e = realloc(s->e, cap * sizeof(*e));
        if (e == NULL)
            return 1;
        s->e = e;
        s->cap = cap;
    }
    struct entry *e = &s->e[s->n];
    memset(e, 0, sizeof(*e));
    memcpy(e->id, key + plen, ACTION_ID_HEX);
    json_t *o = json_loadb(value, len, 0, NULL);
    const char *state = json_string_value(json_object_get(o, "state"));
    const char *kind = json_string_value(json_object_get(o, "kind"));
    const char *boot = json_string_value(json_object_get(o, "boot_id"));
    e->started = state != NULL && strcmp(state, "started") == 0;
    ferry_strlcpy(e->kind, kind ? kind : "?", sizeof(e->kind));
    ferry_strlcpy(e->boot_id, boot ? boot : "", sizeof(e->boot_id));
    e->expires_s = json_integer_value(json_object_get(o, "expires"));
    json_decref(o);
    s->n++;
    return 0;
}

static int recover(struct action_agent *a)
{
    struct scan s = {0};
    int rc = journal_state_foreach(a->journal, ACTION_STATE_PREFIX, strlen(ACTION_STATE_PREFIX),
                                   scan_cb, &s);
    if (rc != 0) {
        free(s.e);
        return -1;
    }
    char boot[40];
    boot_id(&a->cfg, boot);
    int64_t now = ferry_realtime_ns() / 1000000000;
    for (size_t i = 0; i < s.n; i++) {
        struct entry *e = &s.e[i];
        if (e->started) {
            bool rebooted = strcmp(e->kind, "reboot") == 0 && e->boot_id[0] && boot[0] &&
                            strcmp(e->boot_id, boot) != 0;
            if (rebooted)
                report(a, e->id, e->kind, e->expires_s, "ok", 0, NULL, 0, "the device rebooted");
            else
                report(a, e->id, e->kind, e->expires_s, "interrupted", -1, NULL, 0,
                       "ferryd stopped while it ran; not run again");
        } else if (e->expires_s > 0 && e->expires_s + 3600 < now) {
            /* expired (an hour's slack for the clock): a copy would be refused as expired */
            char key[64];
            snprintf(key, sizeof(key), "%s%s", ACTION_STATE_PREFIX, e->id);
            if (journal_state_delete(a->journal, key, strlen(key)) != 0)
                log_warn("action", "cannot drop the expired entry %s", e->id);
        }
    }
    free(s.e);
    return 0;
}

/* ---- Executing ---------------------------------------------------------------------------- */

/* upload_logs on the worker: the result's output says what was appended. */
static void upload_logs(struct action_agent *a)
{
    struct action_run_result *r = &a->result;
    memset(r, 0, sizeof(*r));
    r->exit_code = -1;
    r->output = calloc(1, 256);
    if (r->output == NULL) {
        r->not_run = true;
        return;
    }
    int64_t minutes = 0;
    (void)ferry_parse_i64(a->cur.args[0], 1, ACTION_LOGS_MINUTES_MAX, &minutes); /* checked */
    const char *units[ACTION_ARGS_MAX];
    for (size_t i = 1; i < a->cur.n_args; i++)
        units[i - 1] = a->cur.args[i];
    int64_t now = ferry_realtime_ns();
    struct action_logs_result lr;
    int rc = action_upload_logs(a->journal, a->cfg.logs_directory, now - minutes * 60000000000LL,
                                now, units, a->cur.n_args - 1, a->cur.id, &lr);
    int n = rc == 0 ? snprintf(r->output, 256,
                               "%llu log records of the last %lld minutes appended, %llu left out",
                               (unsigned long long)lr.records, (long long)minutes,
                               (unsigned long long)lr.left_out)
                    : snprintf(r->output, 256, "%s (%llu records appended before)", lr.error,
                               (unsigned long long)lr.records);
    r->output_len = n > 0 && n < 256 ? (size_t)n : strlen(r->output);
    r->exit_code = rc == 0 ? 0 : 1;
}

static void *worker(void *arg)
{
    struct action_agent *a = arg;
    if (a->cur.kind == ACTION_UPLOAD_LOGS)
        upload_logs(a);
    else
        action_run(a->argv, a->cfg.timeout_ms, a->cfg.output_max, &a->child, &a->result);
    char b = 1;
    while (write(a->pipe_fd[1], &b, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

static void process_queue(struct action_agent *a);

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct action_agent *a = arg;
    char b;
    (void)what;
    if (read(fd, &b, 1) != 1 || !a->running)
        return;
    pthread_join(a->thread, NULL);
    a->running = false;
    struct action_run_result *r = &a->result;
    const char *status = r->not_run          ? "failed"
                         : r->timed_out      ? "timeout"
                         : r->exit_code == 0 ? "ok"
                                             : "failed";
    char reason[96] = "";
    if (r->not_run)
        snprintf(reason, sizeof(reason), "could not start the command");
    else if (r->timed_out)
        snprintf(reason, sizeof(reason), "killed after %" PRId64 " ms", a->cfg.timeout_ms);
    else if (r->signal)
        snprintf(reason, sizeof(reason), "ended by signal %d", r->signal);
    report(a, a->cur.id, action_kind_name(a->cur.kind), a->cur.expires_s, status, r->exit_code,
           r->output, r->output_len, reason);
    action_run_result_free(r);
    process_queue(a);
}

/* Looks at one envelope: refuses it, skips it (seen), or starts it. Returns true when it started
 * (the worker runs). */
static bool take(struct action_agent *a, const char *env)
{
    char why[256] = "";
    struct action *act = &a->cur;
    int rc =
        action_parse_verified(env, strlen(env), a->cfg.keys, a->cfg.n_keys, act, why, sizeof(why));
    int64_t now = now_s(a);
    if (rc != ACTION_OK) {
        if (!act->id[0]) {
            log_limited(300, FERRY_LOG_WARN, "action",
                        "an action without a readable id refused: %s", why);
            return false;
        }
        if (!seen(a, act->id)) {
            char reason[320];
            snprintf(reason, sizeof(reason), "%s: %s", action_strerror(rc), why);
            report(a, act->id, "?", now + REFUSED_KEEP_S, "refused", -1, NULL, 0, reason);
        }
        return false;
    }
    if (seen(a, act->id))
        return false; /* started or done before: never again */
    const char *kind = action_kind_name(act->kind);
    if (strcmp(act->device, a->cfg.device_id) != 0) {
        snprintf(why, sizeof(why), "for device %s, not this one", act->device);
        report(a, act->id, kind, act->expires_s, "refused", -1, NULL, 0, why);
        return false;
    }
    if (act->expires_s <= now) {
        snprintf(why, sizeof(why), "expired %" PRId64 " s ago", now - act->expires_s);
        report(a, act->id, kind, act->expires_s, "refused", -1, NULL, 0, why);
        return false;
    }
    if (action_agent_command(&a->cfg, act, a->words, sizeof(a->words), a->argv, why, sizeof(why)) !=
        0) {
        report(a, act->id, kind, act->expires_s, "refused", -1, NULL, 0, why);
        return false;
    }
    /* "started" is durable before anything runs: after a crash it is reported, never rerun. */
    char boot[40];
    boot_id(&a->cfg, boot);
    json_t *st = json_pack("{s:s,s:s,s:I,s:s}", "state", "started", "kind", kind, "expires",
                           (json_int_t)act->expires_s, "boot_id", boot);
    char *text = st ? json_dumps(st, JSON_COMPACT) : NULL;
    json_decref(st);
    rc = text ? persist(a, act->id, text, "action.started", kind, NULL, 0, NULL, 0, NULL) : -1;
    free(text);
    /* on disk in every durability mode ([journal] durability = periodic or os only commit to
     * the page cache): a power cut must not forget that it started */
    if (rc == 0 && journal_flush(a->journal) != 0)
        rc = -1;
    if (rc != 0)
        return false; /* not recorded: not run (it comes again with the next poll) */
    log_info("action", "%s %s: running %s", kind, act->id, a->argv[0] ? a->argv[0] : kind);
    a->running = true;
    if (pthread_create(&a->thread, NULL, worker, a) != 0) {
        a->running = false;
        report(a, act->id, kind, act->expires_s, "failed", -1, NULL, 0, "cannot start a thread");
        return false;
    }
    (void)pthread_setname_np(a->thread, "ferryd-action");
    return true;
}

static void process_queue(struct action_agent *a)
{
    while (!a->running && a->n_queue > 0) {
        char *env = a->queue[0];
        memmove(a->queue, a->queue + 1, (a->n_queue - 1) * sizeof(a->queue[0]));
        a->n_queue--;
        take(a, env);
        free(env);
    }
}

/* ---- Polling ------------------------------------------------------------------------------ */

static void schedule_poll(struct action_agent *a, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(a->poll_timer, &tv);
}

static void learn_server_time(struct action_agent *a, struct http_request *req)
{
    size_t len = 0;
    const char *v = http_response_header(req, "X-Ferry-Time", &len);
    char text[24];
    uint64_t server_s = 0;
    if (v == NULL || len == 0 || len >= sizeof(text))
        return;
    memcpy(text, v, len);
    text[len] = '\0';
    if (ferry_parse_u64(text, (uint64_t)INT64_MAX / 2, &server_s) == 0)
        a->server_offset_s = (int64_t)server_s - ferry_realtime_ns() / 1000000000;
}

static void on_poll_done(void *arg, struct http_request *req, const struct http_response *resp)
{
    struct action_agent *a = arg;
    a->poll_req = NULL;
    if (resp->err == HTTP_CLIENT_ECANCELED)
        return;
    schedule_poll(a, a->cfg.poll_interval_ms);
    if (resp->err != HTTP_CLIENT_OK)
        return; /* offline: the next poll */
    learn_server_time(a, req);
    if (resp->status == 401) {
        schedule_poll(a, 1000); /* maybe signed with a wrong clock: again, with the ingest's */
        return;
    }
    if (resp->status != 200) {
        if (resp->status != 204)
            log_limited(300, FERRY_LOG_WARN, "action", "GET actions: HTTP %ld", resp->status);
        return;
    }
    json_error_t jerr;
    json_t *o = json_loadb((const char *)resp->body, resp->body_len, 0, &jerr);
    json_t *list = json_object_get(o, "actions");
    if (!json_is_array(list)) {
        log_limited(300, FERRY_LOG_WARN, "action", "GET actions: not {\"actions\":[...]}");
        json_decref(o);
        return;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        if (json_is_string(e) &&
            action_agent_offer(a, json_string_value(e), json_string_length(e)) != 0)
            break;
    }
    json_decref(o);
}

int action_agent_offer(struct action_agent *a, const char *envelope, size_t len)
{
    if (a->n_queue >= ACTION_AGENT_QUEUE_MAX)
        return -1;
    if (len == 0 || len > ACTION_ENVELOPE_MAX || strlen(envelope) != len)
        return 0; /* cannot be an envelope (NUL inside, too long): dropped */
    char *copy = strdup(envelope);
    if (copy == NULL)
        return -1;
    a->queue[a->n_queue++] = copy;
    process_queue(a);
    return 0;
}

static void on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    action_agent_check_now(arg);
}

void action_agent_check_now(struct action_agent *a)
{
    if (a->poll_req != NULL || a->running || a->n_queue > 0)
        return; /* one thing at a time: the queue empties before the next poll */
    char url[1200];
    snprintf(url, sizeof(url), "%s/v1/devices/%s/actions", a->cfg.server_url, a->cfg.device_id);
    struct reqsign_headers sig;
    const char *headers[5];
    size_t nh = 0;
    if (a->cfg.sign_request != NULL &&
        a->cfg.sign_request(a->cfg.sign_arg, "GET", reqsign_target_of_url(url), now_s(a), &sig) ==
            0) {
        headers[nh++] = sig.device;
        headers[nh++] = sig.time;
        headers[nh++] = sig.nonce;
        headers[nh++] = sig.signature;
    }
    headers[nh] = NULL;
    struct http_request_opts o;
    http_request_opts_init(&o);
    o.url = url;
    o.headers = nh ? headers : NULL;
    o.max_response_bytes = POLL_BODY_MAX;
    o.deadline_ms = 60000;
    o.ca_file = a->cfg.ca_file;
    o.pinned_public_key = a->cfg.pinned_public_key;
    o.on_done = on_poll_done;
    o.arg = a;
    if (http_request_start(a->http, &o, &a->poll_req) != HTTP_CLIENT_OK) {
        a->poll_req = NULL;
        schedule_poll(a, a->cfg.poll_interval_ms);
    }
}

int action_agent_new(struct event_base *base, struct http_client *http, struct journal *journal,
                     const struct action_agent_config *cfg, struct action_agent **out, char *err,
                     size_t err_len)
{
    struct action_agent *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    a->base = base;
    a->http = http;
    a->journal = journal;
    a->cfg = *cfg;
    a->pipe_fd[0] = a->pipe_fd[1] = -1;
    if (a->cfg.poll_interval_ms <= 0)
        a->cfg.poll_interval_ms = 300000;
    if (a->cfg.timeout_ms <= 0)
        a->cfg.timeout_ms = 300000;
    if (pipe2(a->pipe_fd, O_CLOEXEC | O_NONBLOCK) != 0 ||
        (a->poll_timer = evtimer_new(base, on_poll_timer, a)) == NULL ||
        (a->done_ev = event_new(base, a->pipe_fd[0], EV_READ | EV_PERSIST, on_done, a)) == NULL ||
        event_add(a->done_ev, NULL) != 0) {
        snprintf(err, err_len, "cannot set up the action agent's events");
        action_agent_free(a);
        return -1;
    }
    if (recover(a) != 0) {
        snprintf(err, err_len, "cannot read the action entries of the journal");
        action_agent_free(a);
        return -1;
    }
    schedule_poll(a, 0);
    *out = a;
    return 0;
}

void action_agent_free(struct action_agent *a)
{
    if (a == NULL)
        return;
    if (a->poll_req != NULL)
        http_request_cancel(a->poll_req);
    if (a->running) {
        /* the command dies with its group; its action stays "started" (interrupted) */
        pid_t child = a->child;
        if (child > 0)
            kill(-child, SIGKILL);
        pthread_join(a->thread, NULL);
        action_run_result_free(&a->result);
    }
    for (size_t i = 0; i < a->n_queue; i++)
        free(a->queue[i]);
    if (a->poll_timer)
        event_free(a->poll_timer);
    if (a->done_ev)
        event_free(a->done_ev);
    if (a->pipe_fd[0] >= 0)
        close(a->pipe_fd[0]);
    if (a->pipe_fd[1] >= 0)
        close(a->pipe_fd[1]);
    free(a);
}
