/*
 * alerts_cli.c - `ferry-ingest alerts list|silence|unsilence|silences`: the operator's view of
 * the stored alerts and the silences that mute their notifications. Reads and writes the store
 * directly, like the other operator commands (docs/alerts.md).
 *
 * A silence is a store entry silence/<id> (silences.c writes, reads and removes them for this
 * CLI and for /v1/silences alike); the engine reads them every round and queues no notification for
 * an alert a silence covers while it is in force (the alert's state is still kept and listed).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cloud-ingest/alerts/alerts_int.h"
#include "cloud-ingest/auth/auth.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"

static int usage(FILE *out)
{
    fprintf(out,
            "usage: ferry-ingest [options] alerts list [--state firing|resolved] [--device ID] "
            "[--json]\n"
            "       ferry-ingest [options] alerts silence [--rule RULE] [--device ID] --for "
            "DURATION [--comment TEXT]\n"
            "       ferry-ingest [options] alerts silences [--json]\n"
            "       ferry-ingest [options] alerts unsilence ID\n"
            "       ferry-ingest [options] alerts actions [--json]\n"
            "\n"
            "list shows every alert that fired (state, rule, device, device-time start and end,\n"
            "late or not); silence mutes the notifications of the alerts of RULE and/or DEVICE\n"
            "(at least one) for DURATION from now and prints the silence's id (silence and\n"
            "unsilence are in the audit log; the same silences are GET/POST/DELETE /v1/silences);\n"
            "actions lists the runs of command receivers (newest 1,000: status, exit code,\n"
            "output).\n");
    return out == stdout ? 0 : 2;
}

static int cmd_list(struct ingest_store *st, int argc, char **argv)
{
    static const struct option opts[] = {{"state", required_argument, NULL, 's'},
                                         {"device", required_argument, NULL, 'd'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *state = NULL, *device = NULL;
    bool as_json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 's')
            state = optarg;
        else if (c == 'd')
            device = optarg;
        else if (c == 'j')
            as_json = true;
        else
            return usage(c == 'h' ? stdout : stderr);
    }
    if (optind != argc ||
        (state != NULL && strcmp(state, "firing") != 0 && strcmp(state, "resolved") != 0))
        return usage(stderr);
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = alerts_list_json(st, state, device, &b);
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: alerts list: %s\n", ingest_store_strerror(rc));
        ferry_buf_free(&b);
        return 1;
    }
    if (as_json) {
        fwrite(b.data, 1, b.len, stdout);
        ferry_buf_free(&b);
        return 0;
    }
    json_error_t jerr;
    json_t *arr = json_loadb((const char *)b.data, b.len, 0, &jerr);
    ferry_buf_free(&b);
    printf("%-8s %-20s %-24s %-9s %-21s %-21s %-4s %s\n", "STATE", "RULE", "DEVICE", "SEVERITY",
           "STARTS (device time)", "ENDS (device time)", "LATE", "LABELS");
    size_t i;
    json_t *a;
    json_array_foreach(arr, i, a)
    {
        char starts[32], ends[32];
        ferry_utc_text(json_integer_value(json_object_get(a, "starts_ns")), starts);
        ferry_utc_text(json_integer_value(json_object_get(a, "ends_ns")), ends);
        /* Labels as compact JSON: jansson escapes control characters, so a device's hostile
         * tag value cannot drive the terminal. */
        char *labels = json_dumps(json_object_get(a, "labels"), JSON_COMPACT | JSON_SORT_KEYS);
        printf("%-8s %-20s %-24s %-9s %-21s %-21s %-4s %s\n",
               json_string_value(json_object_get(a, "state")),
               json_string_value(json_object_get(a, "rule")),
               json_string_value(json_object_get(a, "device")),
               json_string_value(json_object_get(a, "severity")), starts, ends,
               json_is_true(json_object_get(a, "late")) ? "yes" : "no", labels ? labels : "{}");
        free(labels);
    }
    json_decref(arr);
    return 0;
}

static void audit(struct ingest_store *st, const char *actor, const char *action, const char *id)
{
    if (ingest_auth_audit(st, actor, action, id, "cli", 0) != 0)
        fprintf(stderr, "ferry-ingest: warning: the audit log could not be written\n");
}

static int cmd_silence(struct ingest_store *st, const char *actor, int argc, char **argv)
{
    static const struct option opts[] = {
        {"rule", required_argument, NULL, 'r'}, {"device", required_argument, NULL, 'd'},
        {"for", required_argument, NULL, 'f'},  {"comment", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
    struct alerts_silence_req req = {"", "", 0, "", actor};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'r')
            req.rule = optarg;
        else if (c == 'd')
            req.device = optarg;
        else if (c == 'c')
            req.comment = optarg;
        else if (c == 'f') {
            if (ferry_parse_duration_ms(optarg, &req.for_ms) != 0 || req.for_ms <= 0) {
                fprintf(stderr, "ferry-ingest: alerts silence: --for %s: not a duration\n", optarg);
                return 2;
            }
        } else
            return usage(c == 'h' ? stdout : stderr);
    }
    if (optind != argc || req.for_ms == 0 || (req.rule[0] == '\0' && req.device[0] == '\0')) {
        fprintf(stderr, "ferry-ingest: alerts silence: needs --for and --rule and/or --device\n");
        return 2;
    }
    char id[ALERTS_SILENCE_ID_LEN + 1], err[256];
    int rc = alerts_silence_add(st, &req, ferry_realtime_ns(), id, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: alerts silence: %s\n", err);
        return rc == ALERTS_SILENCE_EINVAL ? 2 : 1;
    }
    audit(st, actor, "alert.silence", id);
    printf("%s\n", id);
    return 0;
}

static int json_value_cb(const char *key, const void *value, size_t len, void *arg)
{
    json_error_t jerr;
    json_t *o = json_loadb(value, len, 0, &jerr);
    (void)key;
    if (o != NULL && json_array_append_new(arg, o) != 0)
        return 1;
    return 0;
}

/*
 * The listing commands' common part: `cmd [--json]` over the store entries under `prefix`.
 * Returns the entries as a JSON array for a table, or NULL when the command is done (usage
 * error, store error, or --json printed): *status is then its exit status.
 */
static json_t *list_entries(struct ingest_store *st, const char *what, const char *prefix, int argc,
                            char **argv, int *status)
{
    bool as_json = argc == 2 && strcmp(argv[1], "--json") == 0;
    if (argc > 2 || (argc == 2 && !as_json)) {
        *status = usage(stderr);
        return NULL;
    }
    json_t *arr = json_array();
    int rc = arr ? ingest_store_kv_scan(st, prefix, 0, json_value_cb, arr) : -1;
    if (rc != 0) {
        json_decref(arr);
        fprintf(stderr, "ferry-ingest: alerts %s: %s\n", what, ingest_store_strerror(rc));
        *status = 1;
        return NULL;
    }
    *status = 0;
    if (!as_json)
        return arr;
    char *t = json_dumps(arr, JSON_COMPACT);
    printf("%s\n", t ? t : "[]");
    free(t);
    json_decref(arr);
    return NULL;
}

static int cmd_silences(struct ingest_store *st, int argc, char **argv)
{
    int status;
    json_t *arr = list_entries(st, "silences", "silence/", argc, argv, &status);
    if (arr == NULL)
        return status;
    printf("%-16s %-20s %-24s %-21s %s\n", "ID", "RULE", "DEVICE", "UNTIL", "COMMENT");
    size_t i;
    json_t *s;
    json_array_foreach(arr, i, s)
    {
        char until[32];
        ferry_utc_text(json_integer_value(json_object_get(s, "ends_ns")), until);
        const char *rule = json_string_value(json_object_get(s, "rule"));
        const char *dev = json_string_value(json_object_get(s, "device"));
        json_t *cm = json_object_get(s, "comment");
        char *comment = json_dumps(cm ? cm : json_null(), JSON_ENCODE_ANY); /* escaped */
        printf("%-16s %-20s %-24s %-21s %s\n", json_string_value(json_object_get(s, "id")),
               rule && rule[0] ? rule : "*", dev && dev[0] ? dev : "*", until,
               comment ? comment : "");
        free(comment);
    }
    json_decref(arr);
    return 0;
}

static int cmd_actions(struct ingest_store *st, int argc, char **argv)
{
    int status;
    json_t *arr = list_entries(st, "actions", "actionlog/", argc, argv, &status);
    if (arr == NULL)
        return status;
    printf("%-21s %-16s %-20s %-24s %-9s %-8s %5s %s\n", "AT", "ACTION", "RULE", "DEVICE", "EVENT",
           "STATUS", "EXIT", "OUTPUT");
    size_t i;
    json_t *r;
    json_array_foreach(arr, i, r)
    {
        char at[32];
        ferry_utc_text(json_integer_value(json_object_get(r, "at_ns")), at);
        const char *out = json_string_value(json_object_get(r, "output"));
        struct ferry_buf line = FERRY_BUF_INIT; /* the first line, escaped for a terminal */
        size_t n = out ? strcspn(out, "\n") : 0;
        if (ferry_buf_append_escaped(&line, out ? out : "", n) != 0 ||
            ferry_buf_append(&line, "", 1) != 0) {
            ferry_buf_free(&line);
            json_decref(arr);
            return 1;
        }
        printf("%-21s %-16s %-20s %-24s %-9s %-8s %5lld %s\n", at,
               json_string_value(json_object_get(r, "receiver")),
               json_string_value(json_object_get(r, "rule")),
               json_string_value(json_object_get(r, "device")),
               json_string_value(json_object_get(r, "event")),
               json_string_value(json_object_get(r, "status")),
               (long long)json_integer_value(json_object_get(r, "exit_code")),
               (const char *)line.data);
        ferry_buf_free(&line);
    }
    json_decref(arr);
    return 0;
}

static int cmd_unsilence(struct ingest_store *st, const char *actor, int argc, char **argv)
{
    if (argc != 2 || !alerts_silence_id_valid(argv[1])) {
        fprintf(stderr, "ferry-ingest: alerts unsilence: needs a silence id (16 hex digits)\n");
        return 2;
    }
    int rc = alerts_silence_remove(st, argv[1]);
    if (rc == INGEST_STORE_ENOTFOUND) {
        fprintf(stderr, "ferry-ingest: alerts unsilence: no silence %s\n", argv[1]);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: alerts unsilence: %s\n", ingest_store_strerror(rc));
        return 1;
    }
    audit(st, actor, "alert.unsilence", argv[1]);
    return 0;
}

int alerts_cli_main(struct ingest_store *st, const char *actor, int argc, char **argv)
{
    if (argc < 1)
        return usage(stderr);
    if (strcmp(argv[0], "list") == 0)
        return cmd_list(st, argc, argv);
    if (strcmp(argv[0], "silence") == 0)
        return cmd_silence(st, actor, argc, argv);
    if (strcmp(argv[0], "silences") == 0)
        return cmd_silences(st, argc, argv);
    if (strcmp(argv[0], "actions") == 0)
        return cmd_actions(st, argc, argv);
    if (strcmp(argv[0], "unsilence") == 0)
        return cmd_unsilence(st, actor, argc, argv);
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)
        return usage(stdout);
    return usage(stderr);
}
