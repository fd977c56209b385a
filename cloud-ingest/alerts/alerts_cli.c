/*
 * alerts_cli.c - `ferry-ingest alerts list|silence|unsilence|silences`: the operator's view of
 * the stored alerts and the silences that mute their notifications. Reads and writes the store
 * directly, like the other operator commands (docs/alerts.md).
 *
 * A silence is a store entry silence/<id> = {"id", "rule", "device", "starts_ns", "ends_ns",
 * "comment", "created_ns"}; the engine reads them every round and queues no notification for an
 * alert a silence covers while it is in force (the alert's state is still kept and listed).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/alerts/alerts_int.h"
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
            "(at least one) for DURATION from now and prints the silence's id; actions lists the\n"
            "runs of command receivers (newest 1,000: status, exit code, output).\n");
    return out == stdout ? 0 : 2;
}

/* A time for a person: UTC, seconds ("-" for none). */
static void human_time(int64_t ns, char out[32])
{
    if (ns <= 0) {
        ferry_strlcpy(out, "-", 32);
        return;
    }
    time_t s = (time_t)(ns / 1000000000LL);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, 32, "%Y-%m-%d %H:%M:%SZ", &tm);
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
        human_time(json_integer_value(json_object_get(a, "starts_ns")), starts);
        human_time(json_integer_value(json_object_get(a, "ends_ns")), ends);
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

static int cmd_silence(struct ingest_store *st, int argc, char **argv)
{
    static const struct option opts[] = {
        {"rule", required_argument, NULL, 'r'}, {"device", required_argument, NULL, 'd'},
        {"for", required_argument, NULL, 'f'},  {"comment", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
    const char *rule = "", *device = "", *comment = "";
    int64_t for_ms = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'r')
            rule = optarg;
        else if (c == 'd')
            device = optarg;
        else if (c == 'c')
            comment = optarg;
        else if (c == 'f') {
            if (ferry_parse_duration_ms(optarg, &for_ms) != 0 || for_ms <= 0) {
                fprintf(stderr, "ferry-ingest: alerts silence: --for %s: not a duration\n", optarg);
                return 2;
            }
        } else
            return usage(c == 'h' ? stdout : stderr);
    }
    if (optind != argc || for_ms == 0 || (rule[0] == '\0' && device[0] == '\0')) {
        fprintf(stderr, "ferry-ingest: alerts silence: needs --for and --rule and/or --device\n");
        return 2;
    }
    if (strlen(rule) > ALERTS_NAME_MAX || (device[0] && !ingest_device_id_valid(device)) ||
        strlen(comment) > 1024) {
        fprintf(stderr, "ferry-ingest: alerts silence: rule, device id or comment malformed\n");
        return 2;
    }
    uint8_t raw[8];
    randombytes_buf(raw, sizeof(raw));
    char id[17], key[64];
    ferry_hex_encode(raw, sizeof(raw), id);
    snprintf(key, sizeof(key), "silence/%s", id);
    int64_t now = ferry_realtime_ns();
    json_t *s = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "id", id, "rule", rule, "device",
                          device, "starts_ns", (json_int_t)now, "ends_ns",
                          (json_int_t)(now + for_ms * 1000000LL), "created_ns", (json_int_t)now);
    json_t *cm = s ? json_string(comment) : NULL;
    if (cm == NULL || json_object_set_new(s, "comment", cm) != 0) {
        json_decref(s);
        fprintf(stderr, "ferry-ingest: alerts silence: the comment is not valid UTF-8\n");
        return 2;
    }
    char *text = json_dumps(s, JSON_COMPACT);
    json_decref(s);
    struct ingest_kv_op op = {key, text, text ? strlen(text) : 0, false};
    int rc = text ? ingest_store_kv_apply(st, &op, 1, NULL, NULL) : INGEST_STORE_ENOMEM;
    free(text);
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: alerts silence: %s\n", ingest_store_strerror(rc));
        return 1;
    }
    printf("%s\n", id);
    return 0;
}

static int silences_cb(const char *key, const void *value, size_t len, void *arg)
{
    json_error_t jerr;
    json_t *o = json_loadb(value, len, 0, &jerr);
    (void)key;
    if (o != NULL && json_array_append_new(arg, o) != 0)
        return 1;
    return 0;
}

static int cmd_silences(struct ingest_store *st, int argc, char **argv)
{
    bool as_json = argc == 2 && strcmp(argv[1], "--json") == 0;
    if (argc > 2 || (argc == 2 && !as_json))
        return usage(stderr);
    json_t *arr = json_array();
    int rc = arr ? ingest_store_kv_scan(st, "silence/", 0, silences_cb, arr) : -1;
    if (rc != 0) {
        json_decref(arr);
        fprintf(stderr, "ferry-ingest: alerts silences: %s\n", ingest_store_strerror(rc));
        return 1;
    }
    if (as_json) {
        char *t = json_dumps(arr, JSON_COMPACT);
        printf("%s\n", t ? t : "[]");
        free(t);
        json_decref(arr);
        return 0;
    }
    printf("%-16s %-20s %-24s %-21s %s\n", "ID", "RULE", "DEVICE", "UNTIL", "COMMENT");
    size_t i;
    json_t *s;
    json_array_foreach(arr, i, s)
    {
        char until[32];
        human_time(json_integer_value(json_object_get(s, "ends_ns")), until);
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

static int actions_cb(const char *key, const void *value, size_t len, void *arg)
{
    json_error_t jerr;
    json_t *o = json_loadb(value, len, 0, &jerr);
    (void)key;
    if (o != NULL && json_array_append_new(arg, o) != 0)
        return 1;
    return 0;
}

static int cmd_actions(struct ingest_store *st, int argc, char **argv)
{
    bool as_json = argc == 2 && strcmp(argv[1], "--json") == 0;
    if (argc > 2 || (argc == 2 && !as_json))
        return usage(stderr);
    json_t *arr = json_array();
    int rc = arr ? ingest_store_kv_scan(st, "actionlog/", 0, actions_cb, arr) : -1;
    if (rc != 0) {
        json_decref(arr);
        fprintf(stderr, "ferry-ingest: alerts actions: %s\n", ingest_store_strerror(rc));
        return 1;
    }
    if (as_json) {
        char *t = json_dumps(arr, JSON_COMPACT);
        printf("%s\n", t ? t : "[]");
        free(t);
        json_decref(arr);
        return 0;
    }
    printf("%-21s %-16s %-20s %-24s %-9s %-8s %5s %s\n", "AT", "ACTION", "RULE", "DEVICE", "EVENT",
           "STATUS", "EXIT", "OUTPUT");
    size_t i;
    json_t *r;
    json_array_foreach(arr, i, r)
    {
        char at[32];
        human_time(json_integer_value(json_object_get(r, "at_ns")), at);
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

static int cmd_unsilence(struct ingest_store *st, int argc, char **argv)
{
    if (argc != 2 || strlen(argv[1]) != 16 || strspn(argv[1], "0123456789abcdef") != 16) {
        fprintf(stderr, "ferry-ingest: alerts unsilence: needs a silence id (16 hex digits)\n");
        return 2;
    }
    char key[64];
    snprintf(key, sizeof(key), "silence/%s", argv[1]);
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = ingest_store_kv_get(st, key, &b);
    ferry_buf_free(&b);
    if (rc == INGEST_STORE_ENOTFOUND) {
        fprintf(stderr, "ferry-ingest: alerts unsilence: no silence %s\n", argv[1]);
        return 1;
    }
    struct ingest_kv_op op = {key, NULL, 0, true};
    if (rc == 0)
        rc = ingest_store_kv_apply(st, &op, 1, NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: alerts unsilence: %s\n", ingest_store_strerror(rc));
        return 1;
    }
    return 0;
}

int alerts_cli_main(struct ingest_store *st, int argc, char **argv)
{
    if (argc < 1)
        return usage(stderr);
    if (strcmp(argv[0], "list") == 0)
        return cmd_list(st, argc, argv);
    if (strcmp(argv[0], "silence") == 0)
        return cmd_silence(st, argc, argv);
    if (strcmp(argv[0], "silences") == 0)
        return cmd_silences(st, argc, argv);
    if (strcmp(argv[0], "actions") == 0)
        return cmd_actions(st, argc, argv);
    if (strcmp(argv[0], "unsilence") == 0)
        return cmd_unsilence(st, argc, argv);
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)
        return usage(stdout);
    return usage(stderr);
}
