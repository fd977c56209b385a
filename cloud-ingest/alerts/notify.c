/*
 * notify.c - delivery of queued alert notifications to their receivers.
 *
 * The queue lives in the store (alertq/<seq>, written by the engine in the same transaction as
 * the alert states), so a receiver that is down costs nothing but queue entries, and a restart
 * loses nothing. Delivery rules, in one place:
 *   2xx                    delivered: the entry is deleted.
 *   408, 429, 5xx, no answer  retried: this receiver waits (Retry-After when given, else 1 s
 *                          doubling to 5 min, with +-20 % jitter); its later entries wait too, so
 *                          a resolution never overtakes its firing.
 *   other 4xx              refused for good (a payload the receiver will never take): the entry is
 *                          deleted and the refusal logged with the receiver's answer.
 * Alertmanager only notifies a resolution it saw firing: a late alert that started and ended in
 * the past is sent firing first and resolved no sooner than the receiver's resolve_delay later
 * (Alertmanager's group_wait must pass in between; see docs/alerts.md).
 *
 * Command receivers (actions): the command runs without a shell with the generic webhook JSON on
 * its stdin; exit 0 is delivered, exit 75 (EX_TEMPFAIL) is retried like a 5xx, anything else and
 * a timeout are recorded as failed and not retried (a command may have done half its work). Each
 * run is recorded in the store (actionlog/<seq>: receiver, rule, device, event, exit code, the
 * first 4 KiB of its output, duration) in the same transaction that removes the queue entry; a
 * crash between the run and that commit runs it again, so commands must be idempotent (the
 * alert's key and event are in their input). The newest ACTIONLOG_KEEP runs are kept.
 *
 * Runs on the notification thread (blocking libcurl calls and commands with timeouts are fine
 * there: nothing else waits on this thread).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/alerts/alerts_int.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/spawn.h"
#include "common/util.h"

#define NOTIFY_BATCH 256
#define BACKOFF_MIN_NS 1000000000LL
#define BACKOFF_MAX_NS 300000000000LL
#define ACTION_OUTPUT_MAX 4096
#define ACTIONLOG_KEEP 1000
#define EX_TEMPFAIL_CODE 75

void alerts_notify_init(struct alerts *a)
{
    pthread_cond_init(&a->notify_cond, NULL);
}

void alerts_notify_cleanup(struct alerts *a)
{
    free(a->delivered);
    a->delivered = NULL;
    a->delivered_n = 0;
    pthread_cond_destroy(&a->notify_cond);
}

void alerts_notify_wake(struct alerts *a)
{
    pthread_mutex_lock(&a->lock);
    a->notify_wanted = true;
    pthread_cond_signal(&a->notify_cond);
    pthread_mutex_unlock(&a->lock);
}

/* ---- Payloads ------------------------------------------------------------------------------- */

/* RFC 3339 UTC with milliseconds. */
static void rfc3339(int64_t ns, char out[32])
{
    time_t s = (time_t)(ns / 1000000000LL);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[24];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", base, (int)((ns % 1000000000LL) / 1000000));
}

static const char *op_text(enum alerts_op op)
{
    static const char *const t[] = {">", ">=", "<", "<=", "==", "!="};
    return (unsigned)op < 6 ? t[op] : "?";
}

/* A person's summary of the alert `alert` of rule `r`. */
static void summary(const struct alerts_rule *r, const json_t *alert, char *out, size_t out_len)
{
    if (r->summary[0]) {
        ferry_strlcpy(out, r->summary, out_len);
        return;
    }
    switch (r->kind) {
    case ALERTS_RULE_THRESHOLD:
        snprintf(out, out_len, "%s.%s %s %g for %llds (device time)", r->measurement, r->field,
                 op_text(r->op), r->value, (long long)(r->for_ns / 1000000000LL));
        break;
    case ALERTS_RULE_OFFLINE:
        snprintf(out, out_len, "no batch stored for more than %llds",
                 (long long)(r->for_ns / 1000000000LL));
        break;
    case ALERTS_RULE_ABSENT:
        snprintf(out, out_len, "no %s.%s sample for more than %llds (device time)", r->measurement,
                 r->field, (long long)(r->for_ns / 1000000000LL));
        break;
    case ALERTS_RULE_GAP:
        snprintf(out, out_len, "%.0f records lost to eviction on the device",
                 json_number_value(json_object_get(alert, "value")));
        break;
    case ALERTS_RULE_BACKLOG:
        snprintf(out, out_len, "backlog of %.0f unsent records%s",
                 json_number_value(json_object_get(alert, "value")),
                 r->growing ? " (growing)" : "");
        break;
    case ALERTS_RULE_UPDATE: {
        const char *comp =
            json_string_value(json_object_get(json_object_get(alert, "labels"), "component"));
        const char *reason = json_string_value(json_object_get(alert, "reason"));
        snprintf(out, out_len, "update of %s %s", comp && comp[0] ? comp : "a component",
                 reason ? reason : "failed");
        break;
    }
    }
}

/* An Alertmanager label name: [a-zA-Z_][a-zA-Z0-9_]*, other characters as '_'. */
static void label_name(const char *in, char *out, size_t out_len)
{
    size_t n = 0;
    for (const char *p = in; *p && n + 1 < out_len; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (n > 0 && c >= '0' && c <= '9');
        out[n++] = ok ? c : '_';
    }
    out[n] = '\0';
    if (n == 0)
        ferry_strlcpy(out, "_", out_len);
}

static json_t *am_payload(const struct alerts_rule *r, const char *event, const json_t *alert)
{
    char starts[32], ends[32], arrived[32], text[512];
    rfc3339(json_integer_value(json_object_get(alert, "starts_ns")), starts);
    rfc3339(json_integer_value(json_object_get(alert, "ends_ns")), ends);
    rfc3339(json_integer_value(json_object_get(alert, "arrived_ns")), arrived);
    summary(r, alert, text, sizeof(text));
    bool late = json_is_true(json_object_get(alert, "late"));
    json_t *labels = json_pack("{s:s, s:O, s:s}", "alertname", r->name, "device",
                               json_object_get(alert, "device"), "severity", r->severity);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(alert, "labels"), k, v)
    {
        char name[128];
        label_name(k, name, sizeof(name));
        if (json_object_get(labels, name) != NULL) {
            char prefixed[140];
            snprintf(prefixed, sizeof(prefixed), "tag_%s", name);
            json_object_set(labels, prefixed, v);
        } else {
            json_object_set(labels, name, v);
        }
    }
    json_t *ann =
        json_pack("{s:s, s:s, s:s, s:s}", "summary", text, "late", late ? "true" : "false",
                  "device_starts_at", starts, "arrived_at", arrived);
    json_t *one =
        json_pack("{s:o, s:o, s:s}", "labels", labels, "annotations", ann, "startsAt", starts);
    if (one != NULL && strcmp(event, "resolved") == 0) {
        json_object_set_new(one, "endsAt", json_string(ends));
        json_object_set_new(ann, "device_ends_at", json_string(ends));
    }
    return one ? json_pack("[o]", one) : NULL;
}

static json_t *slack_payload(const struct alerts_rule *r, const char *event, const json_t *alert)
{
    char starts[32], ends[32], arrived[32], text[512], msg[1400];
    rfc3339(json_integer_value(json_object_get(alert, "starts_ns")), starts);
    rfc3339(json_integer_value(json_object_get(alert, "ends_ns")), ends);
    rfc3339(json_integer_value(json_object_get(alert, "arrived_ns")), arrived);
    summary(r, alert, text, sizeof(text));
    const char *device = json_string_value(json_object_get(alert, "device"));
    bool late = json_is_true(json_object_get(alert, "late"));
    if (strcmp(event, "resolved") == 0)
        snprintf(msg, sizeof(msg),
                 ":white_check_mark: *RESOLVED* `%s` on *%s*: %s (from %s to %s, device time)",
                 r->name, device ? device : "?", text, starts, ends);
    else
        snprintf(msg, sizeof(msg),
                 ":rotating_light: *FIRING* `%s` on *%s* (%s): %s since %s (device time)%s%s",
                 r->name, device ? device : "?", r->severity, text, starts,
                 late ? "; late: the data arrived at " : "", late ? arrived : "");
    return json_pack("{s:s}", "text", msg);
}

static json_t *webhook_payload(const struct alerts_rule *r, const char *event, const json_t *alert)
{
    char starts[32], ends[32], arrived[32], text[512];
    rfc3339(json_integer_value(json_object_get(alert, "starts_ns")), starts);
    rfc3339(json_integer_value(json_object_get(alert, "ends_ns")), ends);
    rfc3339(json_integer_value(json_object_get(alert, "arrived_ns")), arrived);
    summary(r, alert, text, sizeof(text));
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:O, s:O, s:s, s:O, s:s, s:s, s:O}", "version", "1", "status",
                  event, "rule", r->name, "device", json_object_get(alert, "device"), "labels",
                  json_object_get(alert, "labels"), "severity", r->severity, "late",
                  json_object_get(alert, "late"), "starts_at", starts, "arrived_at", arrived,
                  "value", json_object_get(alert, "value"));
    if (o != NULL) {
        json_object_set_new(o, "summary", json_string(text));
        json_object_set_new(o, "ends_at",
                            strcmp(event, "resolved") == 0 ? json_string(ends) : json_null());
    }
    return o;
}

/* ---- Delivery ------------------------------------------------------------------------------- */

struct queued {
    char key[INGEST_KV_KEY_MAX + 1];
    json_t *entry;
};

struct scan_ctx {
    struct queued *items;
    size_t n;
};

static int scan_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct scan_ctx *s = arg;
    json_error_t jerr;
    json_t *entry = json_loadb(value, len, 0, &jerr);
    ferry_strlcpy(s->items[s->n].key, key, sizeof(s->items[s->n].key));
    s->items[s->n].entry = entry; /* NULL: unreadable, deleted below */
    s->n++;
    return 0;
}

static int receiver_index(const struct alerts_config *c, const char *name)
{
    for (size_t i = 0; name != NULL && i < c->n_receivers; i++)
        if (strcmp(c->receivers[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void delivered_note(struct alerts *a, const char *alert_key, size_t receiver, int64_t now_ns)
{
    size_t keep = 0;
    for (size_t i = 0; i < a->delivered_n; i++) /* forget what is past its delay */
        if (now_ns - a->delivered[i].at_ns <
            a->cfg.receivers[a->delivered[i].receiver].resolve_delay_ns)
            a->delivered[keep++] = a->delivered[i];
    a->delivered_n = keep;
    struct alerts_delivered *d = realloc(a->delivered, (keep + 1) * sizeof(*d));
    if (d == NULL)
        return; /* at worst the resolution is not delayed */
    a->delivered = d;
    ferry_strlcpy(d[keep].key, alert_key, sizeof(d[keep].key));
    d[keep].receiver = receiver;
    d[keep].at_ns = now_ns;
    a->delivered_n++;
}

static bool resolve_too_soon(const struct alerts *a, const char *alert_key, size_t receiver,
                             int64_t now_ns)
{
    for (size_t i = 0; i < a->delivered_n; i++)
        if (a->delivered[i].receiver == receiver && strcmp(a->delivered[i].key, alert_key) == 0 &&
            now_ns - a->delivered[i].at_ns < a->cfg.receivers[receiver].resolve_delay_ns)
            return true;
    return false;
}

/* POSTs `body` as JSON; returns the HTTP status (0 when no answer) and *retry_after_s. */
static long post_json(CURL *curl, const struct alerts_receiver *r, const char *body,
                      long *retry_after_s, char *answer, size_t answer_len)
{
    char url[600];
    if (r->kind == ALERTS_RECEIVER_ALERTMANAGER) {
        size_t n = strlen(r->url);
        snprintf(url, sizeof(url), "%s%s", r->url,
                 n > 0 && r->url[n - 1] == '/' ? "api/v2/alerts" : "/api/v2/alerts");
    } else {
        ferry_strlcpy(url, r->url, sizeof(url));
    }
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(r->timeout_ns / 1000000));
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, answer);
    answer[0] = '\0';
    (void)answer_len;
    CURLcode cc = curl_easy_perform(curl);
    long code = 0;
    curl_off_t ra = 0;
    if (cc == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
        if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
            *retry_after_s = (long)(ra > 3600 ? 3600 : ra);
    }
    curl_slist_free_all(hdr);
    return code;
}

static void backoff(struct alerts *a, size_t ri, long retry_after_s, int64_t now_ns)
{
    unsigned f = a->failures[ri] < 20 ? a->failures[ri] : 20;
    int64_t wait = BACKOFF_MIN_NS << f;
    if (wait > BACKOFF_MAX_NS || wait <= 0)
        wait = BACKOFF_MAX_NS;
    wait = wait / 10 * 8 + (int64_t)(randombytes_uniform(1000) * (uint64_t)(wait / 10 * 4) / 1000);
    if (retry_after_s > 0)
        wait = (int64_t)retry_after_s * 1000000000LL;
    a->failures[ri]++;
    a->retry_at_ns[ri] = now_ns + wait;
}

static int actionlog_tail_cb(const char *key, const void *value, size_t len, void *arg)
{
    uint64_t *next = arg, seq;
    (void)value;
    (void)len;
    if (strlen(key) == 10 + 16 && sscanf(key + 10, "%16" SCNx64, &seq) == 1 && seq >= *next)
        *next = seq + 1;
    return 0;
}

/* Runs a command receiver for one notification. Returns the "HTTP-like" outcome the delivery
 * loop understands (200 done, 503 retry, 422 failed for good: dropped like a refused payload)
 * and fills *log with the record of
 * the run (NULL when out of memory). */
static long run_command(const struct alerts_receiver *recv, const struct alerts_rule *r,
                        const char *event, const json_t *alert, const char *body, int64_t now_ns,
                        char **log)
{
    char storage[sizeof(recv->url)], err[256] = "";
    char *argv[FERRY_SPAWN_ARGS_MAX + 1];
    struct ferry_buf out = FERRY_BUF_INIT;
    struct ferry_spawn_result res = {.exit_code = -1};
    int ran = ferry_spawn_split(recv->url, storage, sizeof(storage), argv) > 0
                  ? ferry_spawn_run(argv, body, strlen(body), recv->timeout_ns / 1000000, &out,
                                    ACTION_OUTPUT_MAX, &res, err, sizeof(err))
                  : (snprintf(err, sizeof(err), "command cannot be split"), -1);
    const char *status = ran != 0                            ? "not_run"
                         : res.timed_out                     ? "timeout"
                         : res.exit_code == 0                ? "ok"
                         : res.exit_code == EX_TEMPFAIL_CODE ? "retry"
                                                             : "failed";
    json_t *o =
        json_pack("{s:s, s:s, s:O, s:s, s:s, s:i, s:s, s:I, s:I}", "receiver", recv->name, "rule",
                  r->name, "device", json_object_get(alert, "device"), "event", event, "status",
                  status, "exit_code", res.exit_code, "output", "", "duration_ms",
                  (json_int_t)(res.duration_ns / 1000000), "at_ns", (json_int_t)now_ns);
    if (o != NULL) {
        json_object_set_new(o, "alert",
                            json_string(json_string_value(json_object_get(alert, "key"))));
        json_object_set_new(o, "output",
                            alerts_json_text(out.data ? (const char *)out.data : "", out.len));
        if (err[0])
            json_object_set_new(o, "error", json_string(err));
        if (res.truncated)
            json_object_set_new(o, "output_truncated", json_true());
    }
    *log = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    ferry_buf_free(&out);
    if (strcmp(status, "ok") == 0) {
        log_info("alerts", "action %s for %s (%s) ran: exit 0 in %lld ms", recv->name, r->name,
                 event, (long long)(res.duration_ns / 1000000));
        return 200;
    }
    if (strcmp(status, "retry") == 0)
        return 503;
    log_error("alerts", "action %s for %s (%s) %s%s%s (exit %d): not retried", recv->name, r->name,
              event, status, err[0] ? ": " : "", err, res.exit_code);
    return 422;
}

int alerts_notify_once(struct alerts *a, int64_t now_ns)
{
    int rc = ingest_store_lease(a->store, ALERTS_LEASE, a->owner, now_ns, a->cfg.lease_ns);
    if (rc == INGEST_STORE_EHELD)
        return 0;
    if (rc != 0)
        return rc;
    struct scan_ctx sc = {calloc(NOTIFY_BATCH, sizeof(struct queued)), 0};
    if (sc.items == NULL)
        return INGEST_STORE_ENOMEM;
    rc = ingest_store_kv_scan(a->store, "alertq/", NOTIFY_BATCH, scan_cb, &sc);
    atomic_store(&a->queued, sc.n);
    CURL *curl = rc == 0 && sc.n > 0 ? curl_easy_init() : NULL;
    bool blocked[ALERTS_RECEIVERS_MAX] = {false};
    int delivered = 0;
    for (size_t i = 0; rc == 0 && curl != NULL && i < sc.n; i++) {
        json_t *entry = sc.items[i].entry;
        const char *event = json_string_value(json_object_get(entry, "event"));
        json_t *alert = json_object_get(entry, "alert");
        int ri = receiver_index(&a->cfg, json_string_value(json_object_get(entry, "receiver")));
        const char *rule_name = json_string_value(json_object_get(alert, "rule"));
        int rule = rule_name ? alerts_rule_index(&a->cfg, rule_name) : -1;
        const char *alert_key = json_string_value(json_object_get(alert, "key"));
        bool drop = entry == NULL || event == NULL || ri < 0 || rule < 0 || alert_key == NULL;
        if (!drop && (blocked[ri] || a->retry_at_ns[ri] > now_ns))
            continue;
        const struct alerts_receiver *recv = drop ? NULL : &a->cfg.receivers[ri];
        if (!drop && recv->kind == ALERTS_RECEIVER_ALERTMANAGER && strcmp(event, "resolved") == 0 &&
            resolve_too_soon(a, alert_key, (size_t)ri, now_ns)) {
            blocked[ri] = true; /* keep this receiver's order */
            continue;
        }
        long code = 0, retry_after_s = 0;
        char answer[CURL_ERROR_SIZE];
        char *action_log = NULL; /* the record of a command receiver's run */
        if (!drop) {
            const struct alerts_rule *r = &a->cfg.rules[rule];
            json_t *payload =
                recv->kind == ALERTS_RECEIVER_ALERTMANAGER ? am_payload(r, event, alert)
                : recv->kind == ALERTS_RECEIVER_SLACK      ? slack_payload(r, event, alert)
                                                           : webhook_payload(r, event, alert);
            char *body = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
            json_decref(payload);
            if (body == NULL) {
                rc = INGEST_STORE_ENOMEM;
                break;
            }
            if (recv->kind == ALERTS_RECEIVER_COMMAND) {
                code = run_command(recv, r, event, alert, body, now_ns, &action_log);
                ferry_strlcpy(answer, "the command asked to be retried (exit 75)", sizeof(answer));
            } else {
                code = post_json(curl, recv, body, &retry_after_s, answer, sizeof(answer));
            }
            free(body);
            bool retry = code == 0 || code == 408 || code == 429 || code >= 500;
            if (retry) {
                atomic_fetch_add(&a->failed_total, 1);
                backoff(a, (size_t)ri, retry_after_s, now_ns);
                blocked[ri] = true;
                if (code != 0)
                    log_limited(10, FERRY_LOG_WARN, "alerts", "receiver %s answered %ld; retrying",
                                recv->name, code);
                else
                    log_limited(10, FERRY_LOG_WARN, "alerts",
                                "receiver %s: no answer (%s); retrying", recv->name, answer);
                free(action_log); /* a retried command run is not recorded, only its last run */
                continue;
            }
            if (code < 200 || code > 299) {
                atomic_fetch_add(&a->failed_total, 1);
                if (recv->kind != ALERTS_RECEIVER_COMMAND)
                    log_error("alerts",
                              "receiver %s refused a notification of %s with %ld: dropped",
                              recv->name, r->name, code);
            } else {
                a->failures[ri] = 0;
                atomic_fetch_add(&a->sent_total, 1);
                delivered++;
                if (recv->kind == ALERTS_RECEIVER_ALERTMANAGER && strcmp(event, "firing") == 0)
                    delivered_note(a, alert_key, (size_t)ri, now_ns);
            }
        } else {
            log_warn("alerts",
                     "queued notification %s names no configured receiver or rule: dropped",
                     sc.items[i].key);
        }
        struct ingest_kv_op ops[3] = {{sc.items[i].key, NULL, 0, true}};
        size_t n_ops = 1;
        char log_key[32], old_key[32];
        if (action_log != NULL) {
            if (a->actionlog_next == 0 &&
                (rc = ingest_store_kv_scan(a->store, "actionlog/", 0, actionlog_tail_cb,
                                           &a->actionlog_next)) != 0) {
                free(action_log);
                break;
            }
            snprintf(log_key, sizeof(log_key), "actionlog/%016" PRIx64, a->actionlog_next);
            ops[n_ops++] = (struct ingest_kv_op){log_key, action_log, strlen(action_log), false};
            if (a->actionlog_next >= ACTIONLOG_KEEP) {
                snprintf(old_key, sizeof(old_key), "actionlog/%016" PRIx64,
                         a->actionlog_next - ACTIONLOG_KEEP);
                ops[n_ops++] = (struct ingest_kv_op){old_key, NULL, 0, true};
            }
        }
        rc = ingest_store_kv_apply(a->store, ops, n_ops, NULL, NULL);
        free(action_log);
        if (rc != 0)
            break;
        if (n_ops > 1)
            a->actionlog_next++;
        atomic_fetch_sub(&a->queued, 1);
    }
    if (curl != NULL)
        curl_easy_cleanup(curl);
    for (size_t i = 0; i < sc.n; i++)
        json_decref(sc.items[i].entry);
    free(sc.items);
    return rc != 0 ? rc : delivered;
}

void *alerts_notify_main(void *arg)
{
    struct alerts *a = arg;
    pthread_mutex_lock(&a->lock);
    while (!a->stopping) {
        a->notify_wanted = false;
        pthread_mutex_unlock(&a->lock);
        (void)alerts_notify_once(a, ferry_realtime_ns());
        pthread_mutex_lock(&a->lock);
        if (a->stopping || a->notify_wanted)
            continue;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        (void)pthread_cond_timedwait(&a->notify_cond, &a->lock, &until);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}
