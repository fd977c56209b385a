/*
 * actions_cli.c - `ferry-ingest action keygen|send|list` (docs/actions.md).
 *
 * keygen makes an operator action key pair (Ed25519; PREFIX.key secret, PREFIX.pub for the
 * devices' [actions] keys), like `ferry release keygen` makes release keys: on the operator's
 * machine, never on the ingest. send signs an action with such a key and queues it in the store
 * (an operator without access to the store signs the same way and POSTs the envelope to
 * /v1/devices/{id}/actions: `send --print` writes the envelope instead of queueing it).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/actions/actions.h"
#include "cloud-ingest/auth/auth.h"
#include "cloud-ingest/store.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"
#include "transport/action.h"

static int usage(FILE *out)
{
    fprintf(out,
            "usage: ferry-ingest action keygen PREFIX\n"
            "       ferry-ingest [options] action send --key FILE [--expires DURATION] [--print]\n"
            "                    [--idempotency-key TEXT]\n"
            "                    DEVICE restart_unit UNIT | reboot | run PROGRAM [ARG...] |\n"
            "                    upload_logs MINUTES [UNIT...]\n"
            "       ferry-ingest [options] action list [--device ID] [--state pending|done] "
            "[--json]\n"
            "\n"
            "keygen writes PREFIX.key (Ed25519 secret, mode 0600: keep it off the ingest) and\n"
            "PREFIX.pub (64 hex, for the devices' [actions] keys). send signs the action with\n"
            "FILE and queues it for DEVICE (it runs at its next poll, at most once; --expires,\n"
            "default 24h, bounds how long it may wait); --print writes the signed envelope to\n"
            "stdout instead (for POST /v1/devices/DEVICE/actions). run asks for an exact command\n"
            "line of the device's [actions] commands; upload_logs sends the device's systemd\n"
            "journal entries of the last MINUTES (1..1440), debug level included, of the UNITs\n"
            "or of all. --idempotency-key makes the id a hash of DEVICE and TEXT: sending again\n"
            "queues nothing and prints the same id (for callers that may run twice). list shows\n"
            "the queued actions and their results.\n");
    return out == stdout ? 0 : 2;
}

static int read_secret(const char *path, uint8_t sk[64])
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (ferry_read_file(path, 1024, &data, &len) != 0) {
        fprintf(stderr, "ferry-ingest: action: cannot read %s\n", path);
        return -1;
    }
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' '))
        data[--len] = '\0';
    int rc = len == 128 ? ferry_hex_decode((const char *)data, sk, 64) : -1;
    sodium_memzero(data, len);
    free(data);
    if (rc != 0)
        fprintf(stderr,
                "ferry-ingest: action: %s does not hold 64 hex bytes (a .key of "
                "`action keygen`)\n",
                path);
    return rc;
}

static int cmd_keygen(int argc, char **argv)
{
    if (argc != 2)
        return usage(stderr);
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    char skhex[130], pkhex[66], path[4096];
    ferry_hex_encode(sk, 64, skhex);
    sodium_memzero(sk, sizeof(sk));
    skhex[128] = '\n';
    skhex[129] = '\0';
    ferry_hex_encode(pk, 32, pkhex);
    pkhex[64] = '\n';
    pkhex[65] = '\0';
    int rc = 0;
    if ((size_t)snprintf(path, sizeof(path), "%s.key", argv[1]) >= sizeof(path) ||
        ferry_write_file_atomic(path, skhex, 129, 0600) != 0) {
        fprintf(stderr, "ferry-ingest: action keygen: cannot write %s\n", path);
        rc = 1;
    }
    sodium_memzero(skhex, sizeof(skhex));
    if (rc == 0 && ((size_t)snprintf(path, sizeof(path), "%s.pub", argv[1]) >= sizeof(path) ||
                    ferry_write_file_atomic(path, pkhex, 65, 0644) != 0)) {
        fprintf(stderr, "ferry-ingest: action keygen: cannot write %s\n", path);
        rc = 1;
    }
    if (rc == 0)
        printf("operator action key: %s.key (secret, keep offline), %s.pub (for the devices' "
               "[actions] keys)\n",
               argv[1], argv[1]);
    return rc;
}

int actions_cli_sign(int argc, char **argv, struct ferry_buf *env, struct action *a, bool *print)
{
    static const struct option opts[] = {
        {"key", required_argument, NULL, 'k'}, {"expires", required_argument, NULL, 'e'},
        {"print", no_argument, NULL, 'p'},     {"idempotency-key", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},      {NULL, 0, NULL, 0}};
    const char *key = NULL, *expires = "24h", *idem = NULL;
    *print = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (c == 'k')
            key = optarg;
        else if (c == 'e')
            expires = optarg;
        else if (c == 'p')
            *print = true;
        else if (c == 'i')
            idem = optarg;
        else
            return usage(c == 'h' ? stdout : stderr);
    }
    if (key == NULL || argc - optind < 2)
        return usage(stderr);
    memset(a, 0, sizeof(*a));
    const char *device = argv[optind], *kind = argv[optind + 1];
    int k = action_kind_parse(kind);
    if (k < 0) {
        fprintf(stderr,
                "ferry-ingest: action send: kind \"%s\": restart_unit, reboot, run or "
                "upload_logs\n",
                kind);
        return 2;
    }
    a->kind = (enum action_kind)k;
    if (ferry_strlcpy(a->device, device, sizeof(a->device)) >= sizeof(a->device)) {
        fprintf(stderr, "ferry-ingest: action send: device id too long\n");
        return 2;
    }
    if ((size_t)(argc - optind - 2) > ACTION_ARGS_MAX) {
        fprintf(stderr, "ferry-ingest: action send: more than %d arguments\n", ACTION_ARGS_MAX);
        return 2;
    }
    for (int i = optind + 2; i < argc; i++)
        if (ferry_strlcpy(a->args[a->n_args++], argv[i], ACTION_ARG_MAX + 1) > ACTION_ARG_MAX) {
            fprintf(stderr, "ferry-ingest: action send: argument %d longer than %d bytes\n",
                    i - optind - 1, ACTION_ARG_MAX);
            return 2;
        }
    int64_t now_ns = ferry_realtime_ns(), exp_ns = 0;
    if (ingest_auth_parse_expiry(expires, now_ns, &exp_ns) != 0) {
        fprintf(stderr,
                "ferry-ingest: action send: --expires \"%s\": a duration (30m, 24h, 7d) "
                "or a date in the future\n",
                expires);
        return 2;
    }
    if (idem != NULL) {
        /* the same key for the same device gives the same id: a second send is a 409 that
         * `send` reports as done, so a caller that runs at least once (an alert's command
         * action) queues the action once */
        uint8_t h[ACTION_ID_HEX / 2];
        crypto_generichash_state st;
        crypto_generichash_init(&st, NULL, 0, sizeof(h));
        crypto_generichash_update(&st, (const uint8_t *)"ferry-action-id-v1\n", 19);
        crypto_generichash_update(&st, (const uint8_t *)a->device, strlen(a->device) + 1);
        crypto_generichash_update(&st, (const uint8_t *)idem, strlen(idem));
        crypto_generichash_final(&st, h, sizeof(h));
        ferry_hex_encode(h, sizeof(h), a->id);
        a->id[ACTION_ID_HEX] = '\0';
    } else
        action_new_id(a->id);
    a->created_s = now_ns / 1000000000;
    a->expires_s = exp_ns / 1000000000;
    uint8_t sk[64];
    if (read_secret(key, sk) != 0)
        return 1;
    char why[200] = "";
    int rc = action_sign(a, sk, env, why, sizeof(why));
    sodium_memzero(sk, sizeof(sk));
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: action send: %s%s%s\n", action_strerror(rc),
                why[0] ? ": " : "", why);
        return 2;
    }
    return 0;
}

int actions_cli_idempotent(int argc, char **argv)
{
    /* the options before DEVICE (getopt stops there: what follows is the action's) */
    for (int i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--idempotency-key") == 0 ||
            strncmp(argv[i], "--idempotency-key=", 18) == 0)
            return 1;
        if (strcmp(argv[i], "--key") == 0 || strcmp(argv[i], "--expires") == 0)
            i++;
    }
    return 0;
}

static int cmd_send(struct ingest_store *st, const char *actor, int argc, char **argv)
{
    struct ferry_buf env = FERRY_BUF_INIT;
    struct action a;
    bool print;
    int status = actions_cli_sign(argc, argv, &env, &a, &print);
    if (status != 0 || print) {
        if (status == 0) {
            fwrite(env.data, 1, env.len, stdout);
            fputc('\n', stdout);
        }
        ferry_buf_free(&env);
        return status;
    }
    char id[33], err[300];
    int code = actions_queue(st, (const char *)env.data, env.len, actor, id, err, sizeof(err));
    ferry_buf_free(&env);
    if (code == 409 && actions_cli_idempotent(argc, argv)) {
        printf("%s\n", a.id); /* queued before with this --idempotency-key */
        return 0;
    }
    if (code != 0) {
        fprintf(stderr, "ferry-ingest: %s\n", err);
        return 1;
    }
    char target[160];
    snprintf(target, sizeof(target), "%s %s %s", a.device, action_kind_name(a.kind), id);
    if (ingest_auth_audit(st, actor, "action.send", target, "cli", 0) != 0)
        fprintf(stderr, "ferry-ingest: warning: the audit log could not be written\n");
    printf("%s\n", id);
    return 0;
}

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
    static const struct option opts[] = {{"device", required_argument, NULL, 'd'},
                                         {"state", required_argument, NULL, 's'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *device = NULL, *state = NULL;
    bool as_json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd')
            device = optarg;
        else if (c == 's')
            state = optarg;
        else if (c == 'j')
            as_json = true;
        else
            return usage(c == 'h' ? stdout : stderr);
    }
    if (optind != argc ||
        (state != NULL && strcmp(state, "pending") != 0 && strcmp(state, "done") != 0))
        return usage(stderr);
    struct ferry_buf b = FERRY_BUF_INIT;
    int rc = actions_list_json(st, device, state, &b);
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: action list: %s\n", ingest_store_strerror(rc));
        ferry_buf_free(&b);
        return 1;
    }
    if (as_json) {
        fwrite(b.data, 1, b.len, stdout);
        ferry_buf_free(&b);
        return 0;
    }
    json_t *list = json_loadb((const char *)b.data, b.len, 0, NULL);
    ferry_buf_free(&b);
    printf("%-32s %-20s %-12s %-7s %-11s %-4s %-21s %s\n", "ID", "DEVICE", "KIND", "STATE",
           "STATUS", "EXIT", "QUEUED", "ARGS / REASON / OUTPUT");
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *o = json_array_get(list, i);
        char queued[32], dev[80], detail[400];
        human_time(json_integer_value(json_object_get(o, "queued_ns")), queued);
        const char *d = json_string_value(json_object_get(o, "device"));
        ferry_escape_str(dev, sizeof(dev), d ? d : "", d ? strlen(d) : 0);
        /* arguments and output come from operators and devices: escaped for the terminal */
        struct ferry_buf t = FERRY_BUF_INIT;
        json_t *args = json_object_get(o, "args");
        for (size_t j = 0; j < json_array_size(args); j++)
            if (ferry_buf_printf(&t, "%s%s", j ? " " : "",
                                 json_string_value(json_array_get(args, j))) != 0)
                break;
        const char *reason = json_string_value(json_object_get(o, "reason"));
        const char *output = json_string_value(json_object_get(o, "output"));
        if (reason && reason[0] && ferry_buf_printf(&t, " / %s", reason) != 0)
            t.len = 0;
        if (output && output[0] && ferry_buf_printf(&t, " / %s", output) != 0)
            t.len = 0;
        ferry_escape_str(detail, sizeof(detail), t.data ? (const char *)t.data : "", t.len);
        ferry_buf_free(&t);
        const char *state_s = json_string_value(json_object_get(o, "state"));
        const char *status = json_string_value(json_object_get(o, "status"));
        char exitc[16] = "-";
        if (json_object_get(o, "exit_code"))
            snprintf(exitc, sizeof(exitc), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(json_object_get(o, "exit_code")));
        printf("%-32s %-20s %-12s %-7s %-11s %-4s %-21s %s\n",
               json_string_value(json_object_get(o, "id")), dev,
               json_string_value(json_object_get(o, "kind")), state_s ? state_s : "?",
               status ? status : "-", exitc, queued, detail);
    }
    json_decref(list);
    return 0;
}

int actions_cli_needs_store(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "keygen") == 0 || strcmp(argv[0], "--help") == 0)
        return 0;
    /* the options before DEVICE (getopt stops there: what follows is the action's) */
    for (int i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--print") == 0 || strcmp(argv[i], "--help") == 0)
            return 0;
        if (strcmp(argv[i], "--key") == 0 || strcmp(argv[i], "--expires") == 0 ||
            strcmp(argv[i], "--device") == 0 || strcmp(argv[i], "--state") == 0 ||
            strcmp(argv[i], "--idempotency-key") == 0)
            i++;
    }
    return 1;
}

int actions_cli_main(struct ingest_store *store, const char *actor, int argc, char **argv)
{
    if (argc < 1)
        return usage(stderr);
    if (strcmp(argv[0], "--help") == 0)
        return usage(stdout);
    if (strcmp(argv[0], "keygen") == 0)
        return cmd_keygen(argc, argv);
    if (strcmp(argv[0], "send") == 0 && (store != NULL || !actions_cli_needs_store(argc, argv)))
        return cmd_send(store, actor, argc, argv);
    if (strcmp(argv[0], "list") == 0 && store != NULL)
        return cmd_list(store, argc, argv);
    return usage(stderr);
}
