/*
 * alerts_config.c - the [alerts], [alert.NAME] and [receiver.NAME] sections of ferry-ingest's
 * configuration (docs/alerts.md). Values are checked as they are set, so an error names the
 * section and key; alerts_config_finish() checks what only the whole file can tell.
 */
#include "cloud-ingest/alerts/alerts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud-ingest/alerts/alerts_int.h"
#include "cloud-ingest/selector.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"

#define NS_PER_MS 1000000LL

void alerts_config_defaults(struct alerts_config *c)
{
    memset(c, 0, sizeof(*c));
    c->late_after_ns = 60000 * NS_PER_MS;
    c->eval_interval_ns = 1000 * NS_PER_MS;
    c->repeat_interval_ns = 4LL * 3600 * 1000 * NS_PER_MS;
    c->resend_interval_ns = 60000 * NS_PER_MS;
    c->lease_ns = 30000 * NS_PER_MS;
}

const char *alerts_config_help(void)
{
    return "  [alerts] late_after D            arrival this long after device time marks an alert "
           "late (60s)\n"
           "  [alerts] eval_interval D         how often rules look at new records and last-seen "
           "times (1s)\n"
           "  [alerts] repeat_interval D       a firing alert is notified again after this (4h; 0: "
           "never)\n"
           "  [alerts] resend_interval D       Alertmanager: firing alerts re-sent this often "
           "(60s)\n"
           "  [alert.NAME] kind threshold|offline|update|absent|gap|backlog\n"
           "  [alert.NAME] metric MEAS.FIELD   threshold, absent: the metric (\"thermal.gpu\")\n"
           "  [alert.NAME] condition \"OP VALUE\"  > >= < <= == != and a number (\"> 85\");\n"
           "                                   backlog: records unsent; gap: records lost at once\n"
           "  [alert.NAME] for D               threshold: held this long on device time; offline: "
           "silent this long;\n"
           "                                   absent: missing this long on device time; "
           "backlog: breached this\n"
           "                                   long; update: in one state this long (stuck)\n"
           "  [alert.NAME] growing true|false  backlog: fire when it keeps growing for `for`\n"
           "  [alert.NAME] resolve_after D     offline: back this long before resolved (0); gap: "
           "no new loss\n"
           "                                   this long (1h)\n"
           "  [alert.NAME] device_class C      only devices of this class\n"
           "  [alert.NAME] selector S          only devices the selector matches (labels, class,\n"
           "                                   versions: \"site=berlin,version.model>=2.0.0\")\n"
           "  [alert.NAME] severity S          the severity label (warning)\n"
           "  [alert.NAME] summary TEXT        the summary annotation\n"
           "  [alert.NAME] receivers A, B      receivers to notify (and actions to run)\n"
           "  [alert.NAME] actions A, B        the same list by another name, for command "
           "receivers\n"
           "  [receiver.NAME] type alertmanager|slack|webhook|command\n"
           "  [receiver.NAME] url URL          Alertmanager: its base URL; others: the webhook "
           "URL\n"
           "  [receiver.NAME] command PATH ARG...  command: run with the alert as JSON on stdin "
           "(no shell)\n"
           "  [receiver.NAME] timeout D        per request (10s)\n"
           "  [receiver.NAME] resolve_delay D  Alertmanager: a resolution waits this long after "
           "its\n"
           "                                   firing was delivered; above the route's group_wait "
           "(35s)\n";
}

static int fail(char *err, size_t err_len, const char *section, const char *key, const char *why)
{
    snprintf(err, err_len, "[%s] %s: %s", section, key, why);
    return -1;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ALERTS_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return false;
    return true;
}

static int duration_ns(const char *v, int64_t *out)
{
    int64_t ms;
    if (ferry_parse_duration_ms(v, &ms) != 0 || ms < 0 || ms > INT64_MAX / NS_PER_MS)
        return -1;
    *out = ms * NS_PER_MS;
    return 0;
}

static struct alerts_rule *rule_for(struct alerts_config *c, const char *name, size_t *idx)
{
    for (size_t i = 0; i < c->n_rules; i++)
        if (strcmp(c->rules[i].name, name) == 0) {
            *idx = i;
            return &c->rules[i];
        }
    if (c->n_rules >= ALERTS_RULES_MAX)
        return NULL;
    struct alerts_rule *r = &c->rules[c->n_rules];
    memset(r, 0, sizeof(*r));
    ferry_strlcpy(r->name, name, sizeof(r->name));
    ferry_strlcpy(r->severity, "warning", sizeof(r->severity));
    r->kind = ALERTS_RULE_THRESHOLD;
    r->for_ns = -1;           /* required: checked by finish */
    r->resolve_after_ns = -1; /* a default per kind: set by finish */
    *idx = c->n_rules++;
    return r;
}

static struct alerts_receiver *receiver_for(struct alerts_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_receivers; i++)
        if (strcmp(c->receivers[i].name, name) == 0)
            return &c->receivers[i];
    if (c->n_receivers >= ALERTS_RECEIVERS_MAX)
        return NULL;
    struct alerts_receiver *r = &c->receivers[c->n_receivers++];
    memset(r, 0, sizeof(*r));
    ferry_strlcpy(r->name, name, sizeof(r->name));
    r->kind = ALERTS_RECEIVER_WEBHOOK;
    r->timeout_ns = 10000 * NS_PER_MS;
    r->resolve_delay_ns = 35000 * NS_PER_MS; /* Alertmanager's default group_wait is 30 s */
    return r;
}

/* "> 85", ">=0.5", "!= 0": an operator and a finite number. */
static int parse_condition(const char *v, enum alerts_op *op, double *value)
{
    static const struct {
        const char *text;
        enum alerts_op op;
    } ops[] = {{">=", ALERTS_OP_GE}, {"<=", ALERTS_OP_LE}, {"==", ALERTS_OP_EQ},
               {"!=", ALERTS_OP_NE}, {">", ALERTS_OP_GT},  {"<", ALERTS_OP_LT}};
    while (*v == ' ')
        v++;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        size_t n = strlen(ops[i].text);
        if (strncmp(v, ops[i].text, n) != 0)
            continue;
        const char *num = v + n;
        while (*num == ' ')
            num++;
        char *end;
        double d = strtod(num, &end);
        while (*end == ' ')
            end++;
        if (end == num || *end != '\0' || d != d || d > 1e300 || d < -1e300)
            return -1;
        *op = ops[i].op;
        *value = d;
        return 0;
    }
    return -1;
}

static int set_rule(struct alerts_config *c, const char *section, const char *name, const char *key,
                    const char *v, char *err, size_t err_len)
{
    size_t idx;
    struct alerts_rule *r = rule_for(c, name, &idx);
    if (r == NULL)
        return fail(err, err_len, section, key, "too many alert rules (64 at most)");
    if (strcmp(key, "kind") == 0) {
        if (strcmp(v, "threshold") == 0)
            r->kind = ALERTS_RULE_THRESHOLD;
        else if (strcmp(v, "offline") == 0)
            r->kind = ALERTS_RULE_OFFLINE;
        else if (strcmp(v, "update") == 0)
            r->kind = ALERTS_RULE_UPDATE;
        else if (strcmp(v, "absent") == 0)
            r->kind = ALERTS_RULE_ABSENT;
        else if (strcmp(v, "gap") == 0)
            r->kind = ALERTS_RULE_GAP;
        else if (strcmp(v, "backlog") == 0)
            r->kind = ALERTS_RULE_BACKLOG;
        else
            return fail(err, err_len, section, key,
                        "must be threshold, offline, update, absent, gap or backlog");
    } else if (strcmp(key, "metric") == 0) {
        const char *dot = strrchr(v, '.');
        if (dot == NULL || dot == v || dot[1] == '\0' ||
            (size_t)(dot - v) >= sizeof(r->measurement) || strlen(dot + 1) >= sizeof(r->field))
            return fail(err, err_len, section, key,
                        "must be MEASUREMENT.FIELD (\"thermal.gpu\", \"inference.fps\")");
        memcpy(r->measurement, v, (size_t)(dot - v));
        r->measurement[dot - v] = '\0';
        ferry_strlcpy(r->field, dot + 1, sizeof(r->field));
    } else if (strcmp(key, "condition") == 0) {
        if (parse_condition(v, &r->op, &r->value) != 0)
            return fail(err, err_len, section, key,
                        "must be an operator (> >= < <= == !=) and a number, as in \"> 85\"");
        r->has_condition = true;
    } else if (strcmp(key, "for") == 0) {
        if (duration_ns(v, &r->for_ns) != 0)
            return fail(err, err_len, section, key, "must be a duration (30s, 5m, 1h)");
    } else if (strcmp(key, "growing") == 0) {
        if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
            return fail(err, err_len, section, key, "must be true or false");
        r->growing = strcmp(v, "true") == 0;
    } else if (strcmp(key, "resolve_after") == 0) {
        if (duration_ns(v, &r->resolve_after_ns) != 0)
            return fail(err, err_len, section, key, "must be a duration (30s, 5m, 1h)");
    } else if (strcmp(key, "selector") == 0) {
        char why[256];
        struct ingest_selector *sel = NULL;
        if (ferry_strlcpy(r->selector, v, sizeof(r->selector)) >= sizeof(r->selector))
            return fail(err, err_len, section, key, "too long (511 bytes at most)");
        if (ingest_selector_parse(v, &sel, why, sizeof(why)) != 0)
            return fail(err, err_len, section, key, why);
        ingest_selector_free(sel);
    } else if (strcmp(key, "device_class") == 0) {
        if (ferry_strlcpy(r->device_class, v, sizeof(r->device_class)) >= sizeof(r->device_class))
            return fail(err, err_len, section, key, "too long");
    } else if (strcmp(key, "severity") == 0) {
        if (!name_ok(v) || strlen(v) >= sizeof(r->severity))
            return fail(err, err_len, section, key, "must be a short word ([A-Za-z0-9._-])");
        ferry_strlcpy(r->severity, v, sizeof(r->severity));
    } else if (strcmp(key, "summary") == 0) {
        if (ferry_strlcpy(r->summary, v, sizeof(r->summary)) >= sizeof(r->summary))
            return fail(err, err_len, section, key, "too long (255 bytes at most)");
    } else if (strcmp(key, "receivers") == 0 || strcmp(key, "actions") == 0) {
        /* Both name receivers (actions are receivers of type command); both lists count. */
        char *list = c->rule_receivers[idx];
        size_t cap = sizeof(c->rule_receivers[idx]), used = strlen(list);
        if (used + (used ? 2 : 0) + strlen(v) >= cap)
            return fail(err, err_len, section, key, "too long");
        if (used > 0)
            ferry_strlcpy(list + used, ", ", cap - used);
        ferry_strlcpy(list + strlen(list), v, cap - strlen(list));
    } else {
        return fail(err, err_len, section, key, "unknown key (see ferry-ingest --help)");
    }
    return 0;
}

static int set_receiver(struct alerts_config *c, const char *section, const char *name,
                        const char *key, const char *v, char *err, size_t err_len)
{
    struct alerts_receiver *r = receiver_for(c, name);
    if (r == NULL)
        return fail(err, err_len, section, key, "too many receivers (16 at most)");
    if (strcmp(key, "type") == 0) {
        if (strcmp(v, "alertmanager") == 0)
            r->kind = ALERTS_RECEIVER_ALERTMANAGER;
        else if (strcmp(v, "slack") == 0)
            r->kind = ALERTS_RECEIVER_SLACK;
        else if (strcmp(v, "webhook") == 0)
            r->kind = ALERTS_RECEIVER_WEBHOOK;
        else if (strcmp(v, "command") == 0)
            r->kind = ALERTS_RECEIVER_COMMAND;
        else
            return fail(err, err_len, section, key,
                        "must be alertmanager, slack, webhook or command");
    } else if (strcmp(key, "command") == 0) {
        if (v[0] != '/' || ferry_strlcpy(r->url, v, sizeof(r->url)) >= sizeof(r->url))
            return fail(err, err_len, section, key,
                        "must be an absolute path and its arguments (run without a shell)");
    } else if (strcmp(key, "url") == 0) {
        if ((strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) ||
            ferry_strlcpy(r->url, v, sizeof(r->url)) >= sizeof(r->url))
            return fail(err, err_len, section, key, "must be an http:// or https:// URL");
    } else if (strcmp(key, "timeout") == 0) {
        if (duration_ns(v, &r->timeout_ns) != 0 || r->timeout_ns == 0)
            return fail(err, err_len, section, key, "must be a positive duration");
    } else if (strcmp(key, "resolve_delay") == 0) {
        if (duration_ns(v, &r->resolve_delay_ns) != 0)
            return fail(err, err_len, section, key, "must be a duration (35s)");
    } else {
        return fail(err, err_len, section, key, "unknown key (see ferry-ingest --help)");
    }
    return 0;
}

int alerts_config_set(struct alerts_config *c, const char *section, const char *key,
                      const char *value, char *err, size_t err_len)
{
    if (strcmp(section, "alerts") == 0) {
        int64_t *dst = strcmp(key, "late_after") == 0        ? &c->late_after_ns
                       : strcmp(key, "eval_interval") == 0   ? &c->eval_interval_ns
                       : strcmp(key, "repeat_interval") == 0 ? &c->repeat_interval_ns
                       : strcmp(key, "resend_interval") == 0 ? &c->resend_interval_ns
                                                             : NULL;
        if (dst == NULL)
            return fail(err, err_len, section, key, "unknown key (see ferry-ingest --help)");
        if (duration_ns(value, dst) != 0)
            return fail(err, err_len, section, key, "must be a duration (30s, 5m, 1h)");
        return 0;
    }
    bool rule = strncmp(section, "alert.", 6) == 0;
    bool recv = strncmp(section, "receiver.", 9) == 0;
    if (!rule && !recv)
        return 1;
    const char *name = section + (rule ? 6 : 9);
    if (!name_ok(name))
        return fail(err, err_len, section, key,
                    "the section's name must be 1-64 characters of [A-Za-z0-9._-]");
    return rule ? set_rule(c, section, name, key, value, err, err_len)
                : set_receiver(c, section, name, key, value, err, err_len);
}

static int resolve_receivers(struct alerts_config *c, size_t i, char *err, size_t err_len)
{
    char list[256];
    ferry_strlcpy(list, c->rule_receivers[i], sizeof(list));
    char *save = NULL;
    for (char *t = strtok_r(list, ", ", &save); t != NULL; t = strtok_r(NULL, ", ", &save)) {
        size_t j = 0;
        while (j < c->n_receivers && strcmp(c->receivers[j].name, t) != 0)
            j++;
        if (j == c->n_receivers) {
            snprintf(err, err_len, "[alert.%s] receivers: no [receiver.%s] section",
                     c->rules[i].name, t);
            return -1;
        }
        c->rules[i].receivers |= 1u << j;
    }
    return 0;
}

int alerts_config_finish(struct alerts_config *c, char *err, size_t err_len)
{
    for (size_t j = 0; j < c->n_receivers; j++) {
        const struct alerts_receiver *rv = &c->receivers[j];
        bool command = rv->kind == ALERTS_RECEIVER_COMMAND;
        if (rv->url[0] == '\0' || (command ? rv->url[0] != '/' : rv->url[0] == '/')) {
            snprintf(err, err_len, "[receiver.%s] %s: missing", rv->name,
                     command ? "command" : "url");
            return -1;
        }
    }
    for (size_t i = 0; i < c->n_rules; i++) {
        struct alerts_rule *r = &c->rules[i];
        if ((r->kind == ALERTS_RULE_THRESHOLD || r->kind == ALERTS_RULE_ABSENT) &&
            r->measurement[0] == '\0') {
            snprintf(err, err_len, "[alert.%s] metric: missing (%s rules need one)", r->name,
                     alerts_kind_name(r->kind));
            return -1;
        }
        if (r->kind == ALERTS_RULE_BACKLOG && !r->has_condition && !r->growing) {
            snprintf(err, err_len,
                     "[alert.%s] condition: missing (a size as in \"> 100000\", or growing = "
                     "true)",
                     r->name);
            return -1;
        }
        if (r->kind == ALERTS_RULE_THRESHOLD && !r->has_condition) {
            snprintf(err, err_len, "[alert.%s] condition: missing (as in \"> 85\")", r->name);
            return -1;
        }
        if (r->kind != ALERTS_RULE_UPDATE && r->kind != ALERTS_RULE_GAP && r->for_ns < 0) {
            snprintf(err, err_len, "[alert.%s] for: missing (a duration such as 5m)", r->name);
            return -1;
        }
        if (r->for_ns < 0)
            r->for_ns = 0;
        if (r->resolve_after_ns < 0)
            r->resolve_after_ns = r->kind == ALERTS_RULE_GAP ? 3600 * 1000 * NS_PER_MS : 0;
        r->receivers = 0;
        if (resolve_receivers(c, i, err, err_len) != 0)
            return -1;
    }
    return 0;
}

const char *alerts_kind_name(enum alerts_rule_kind kind)
{
    switch (kind) {
    case ALERTS_RULE_THRESHOLD: return "threshold";
    case ALERTS_RULE_OFFLINE: return "offline";
    case ALERTS_RULE_UPDATE: return "update";
    case ALERTS_RULE_ABSENT: return "absent";
    case ALERTS_RULE_GAP: return "gap";
    case ALERTS_RULE_BACKLOG: return "backlog";
    }
    return "unknown";
}

json_t *alerts_json_text(const char *p, size_t n)
{
    json_t *s = json_stringn(p, n);
    if (s != NULL)
        return s;
    struct ferry_buf b = FERRY_BUF_INIT;
    if (ferry_buf_append_utf8(&b, p, n) != 0) {
        ferry_buf_free(&b);
        return NULL;
    }
    s = json_stringn(b.data ? (const char *)b.data : "", b.len);
    ferry_buf_free(&b);
    return s;
}

int alerts_rule_index(const struct alerts_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_rules; i++)
        if (strcmp(cfg->rules[i].name, name) == 0)
            return (int)i;
    return -1;
}
