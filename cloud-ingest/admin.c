/*
 * admin.c - operator commands of ferry-ingest: register and revoke devices, list them, create
 * enrolment tokens (for devices), and hand `token` (operator API tokens) and `audit` to
 * cloud-ingest/auth/. They open the configured store directly (for LMDB, while the server runs
 * too: LMDB allows one writer process at a time and serialises them with its lock file), so they
 * run on the ingest's host as a user who can read its store; every change is in the audit log as
 * "cli:<user>". `device label` changes a device's labels (store.h, "Device labels").
 */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdbool.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cloud-ingest/ingest.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"
#include "transport/batch.h"
#include "transport/manifest.h"

#include "cloud-ingest/actions/actions.h"
#include "transport/action.h"
#include "cloud-ingest/auth/auth.h"
#include "common/buf.h"
#include "cloud-ingest/query/compare.h"
#include "cloud-ingest/release/release.h"
#include "cloud-ingest/rollout/rollout.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: ferry-ingest [options] device add ID PUBLIC_KEY_HEX [NAME [CLASS]]\n"
            "       ferry-ingest [options] device list [--json]\n"
            "       ferry-ingest [options] device revoke ID\n"
            "       ferry-ingest [options] device label ID KEY=VALUE... KEY-...\n"
            "       ferry-ingest [options] enroll-token create [--fleet] [--expires DURATION]\n"
            "                                                 [--max-uses N] [--label K=V]...\n"
            "       ferry-ingest [options] token create --role viewer|operator|admin --name NAME\n"
            "                                          [--expires DURATION|DATE]\n"
            "       ferry-ingest [options] token list [--json] | token revoke NAME|ID\n"
            "       ferry-ingest [options] audit list [--after-seq N] [--limit N] [--json]\n"
            "       ferry-ingest [options] alerts list|silence|silences|unsilence ...\n"
            "       ferry-ingest [options] rollout create|list|status|pause|resume|abort|promote\n"
            "       ferry-ingest [options] action keygen|send|list ...\n"
            "       ferry-ingest [options] versions compare --component C [--metrics a.b,c.d]\n"
            "                                               [--since 24h|NS] [--json]\n"
            "       ferry-ingest --url URL --token T|--token-file F device list|add|revoke|label "
            "...\n"
            "       ferry-ingest --url URL --token T|--token-file F versions compare ...\n"
            "       ferry-ingest --url URL --token T|--token-file F rollout create|list|status|\n"
            "                                       compare|pause|resume|abort|promote ...\n"
            "       ferry-ingest --url URL --token T|--token-file F release publish --pub K\n"
            "                                       [--force] MANIFEST.json ARTIFACT|DIR...\n"

            "       ferry-ingest --url URL --token T|--token-file F action send|list ...\n");
    return 2;
}

/* "2026-12-07T08:47:23Z (3m ago)", or "never" for 0. */
static void human_time(int64_t ns, int64_t now_ns, char *out, size_t out_len)
{
    if (ns <= 0) {
        snprintf(out, out_len, "never");
        return;
    }
    time_t secs = (time_t)(ns / 1000000000);
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&secs, &tm) != NULL)
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    int64_t ago = (now_ns - ns) / 1000000000;
    if (ago < 0)
        snprintf(out, out_len, "%s (in the future)", when);
    else if (ago < 120)
        snprintf(out, out_len, "%s (%llds ago)", when, (long long)ago);
    else if (ago < 7200)
        snprintf(out, out_len, "%s (%lldm ago)", when, (long long)(ago / 60));
    else if (ago < 172800)
        snprintf(out, out_len, "%s (%lldh ago)", when, (long long)(ago / 3600));
    else
        snprintf(out, out_len, "%s (%lldd ago)", when, (long long)(ago / 86400));
}

/* Who runs a command, for the audit log: "cli:<login name>". */
static void cli_actor(char *out, size_t out_len)
{
    struct passwd *pw = getpwuid(geteuid());
    snprintf(out, out_len, "cli:%s", pw != NULL && pw->pw_name != NULL ? pw->pw_name : "?");
}

static void audit_cli(struct ingest_store *st, const char *action, const char *target)
{
    char actor[80];
    cli_actor(actor, sizeof(actor));
    if (ingest_auth_audit(st, actor, action, target, "cli", 0) != 0)
        fprintf(stderr, "ferry-ingest: warning: the audit log could not be written\n");
}

/* One device per line for a person: names and classes come from devices and operators, so they
 * are escaped (control characters, invalid UTF-8: common/utf8.h) and cannot drive the terminal
 * or break the columns. */
static int print_device(const struct ingest_device *d, void *arg)
{
    (void)arg;
    char kid[17], name[4 * INGEST_NAME_MAX + 1], cls[4 * INGEST_NAME_MAX + 1], seen[64];
    char labels[4 * INGEST_LABELS_MAX + 1];
    ferry_escape_str(labels, sizeof(labels), d->labels, strlen(d->labels));
    ferry_hex_encode(d->key_id, 8, kid);
    ferry_escape_str(name, sizeof(name), d->name, strlen(d->name));
    ferry_escape_str(cls, sizeof(cls), d->device_class, strlen(d->device_class));
    human_time(d->last_seen_ns, ferry_realtime_ns(), seen, sizeof(seen));
    printf("%s\t%s\t%s\t%s\t%s\t%s\trecords=%" PRIu64 "/%" PRIu64 "/%" PRIu64 "\tgaps=%" PRIu64
           "\t%s\n",
           d->id, kid, d->revoked ? "revoked" : "active", name[0] ? name : "-", cls[0] ? cls : "-",
           seen, d->streams[0].records, d->streams[1].records, d->streams[2].records,
           d->streams[0].gap_ranges + d->streams[1].gap_ranges + d->streams[2].gap_ranges,
           labels[0] ? labels : "{}");
    return 0;
}

/* `device list --json`: the JSON of GET /v1/devices, one document. Ids are collected first (a
 * store call from inside the list callback could wait for the connection the list holds). */
struct json_list {
    char (*ids)[INGEST_DEVICE_ID_MAX + 1];
    size_t n, cap;
};

static int collect_id(const struct ingest_device *d, void *arg)
{
    struct json_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *ids = realloc(l->ids, cap * sizeof(*l->ids));
        if (ids == NULL)
            return 1;
        l->ids = ids;
        l->cap = cap;
    }
    memcpy(l->ids[l->n++], d->id, sizeof(l->ids[0]));
    return 0;
}

static int device_list_json(struct ingest_store *st)
{
    struct json_list l = {NULL, 0, 0};
    struct ferry_buf b = FERRY_BUF_INIT;
    char updates[INGEST_UPDATES_MAX + 1];
    int rc = ingest_store_device_list(st, collect_id, &l);
    int e = ferry_buf_append(&b, "{\"devices\":[", 12);
    size_t shown = 0;
    for (size_t i = 0; i < l.n && rc == 0 && e == 0; i++) {
        struct ingest_device d;
        rc = ingest_store_device_get(st, l.ids[i], &d);
        if (rc == 0)
            rc = ingest_store_device_updates(st, l.ids[i], updates, sizeof(updates));
        if (rc == INGEST_STORE_ENOTFOUND) {
            rc = 0;
            continue;
        }
        if (rc == 0)
            e |= ferry_buf_append(&b, ",", shown++ > 0 ? 1 : 0) |
                 ingest_device_json(&b, &d, updates);
    }
    e |= ferry_buf_append(&b, "]}\n", 3);
    free(l.ids);
    if (rc != 0 || e != 0) {
        fprintf(stderr, "ferry-ingest: device list: %s\n",
                ingest_store_strerror(rc != 0 ? rc : INGEST_STORE_ENOMEM));
        ferry_buf_free(&b);
        return 1;
    }
    fwrite(b.data, 1, b.len, stdout);
    ferry_buf_free(&b);
    return 0;
}

static int device_add(struct ingest_store *st, int argc, char **argv)
{
    if (argc < 2 || argc > 4)
        return usage();
    struct ingest_device d;
    memset(&d, 0, sizeof(d));
    if (!ingest_device_id_valid(argv[0])) {
        fprintf(stderr, "ferry-ingest: device id \"%s\": 1..64 of [A-Za-z0-9._-]\n", argv[0]);
        return 1;
    }
    if (strlen(argv[1]) != 64 || ferry_hex_decode(argv[1], d.public_key, 32) != 0) {
        fprintf(stderr, "ferry-ingest: public key: expected 64 hex digits\n");
        return 1;
    }
    ferry_strlcpy(d.id, argv[0], sizeof(d.id));
    batch_key_id(d.public_key, d.key_id);
    if (argc > 2)
        ferry_strlcpy(d.name, argv[2], sizeof(d.name));
    if (argc > 3)
        ferry_strlcpy(d.device_class, argv[3], sizeof(d.device_class));
    ferry_strlcpy(d.versions, "{}", sizeof(d.versions));
    d.enrolled_ns = ferry_realtime_ns();
    char err[256] = "";
    int rc = ingest_store_device_add(st, &d, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: device add: %s (%s)\n", ingest_store_strerror(rc), err);
        return 1;
    }
    audit_cli(st, "device.add", d.id);
    printf("%s\n", d.id);
    return 0;
}

/* One `KEY=VALUE` (into `set`) or `KEY-` (into `remove`, when not NULL) argument of `device
 * label` / `enroll-token create --label`. Returns 0, or -1 with the reason in why. */
static int label_arg_add(const char *arg, json_t *set, json_t *remove, char *why, size_t why_len)
{
    const char *eq = strchr(arg, '=');
    size_t len = strlen(arg);
    char key[INGEST_LABEL_KEY_MAX + 2], shown[80];
    ferry_escape_str(shown, sizeof(shown), arg, len > 60 ? 60 : len);
    size_t key_len = eq != NULL ? (size_t)(eq - arg) : len > 0 && arg[len - 1] == '-' ? len - 1 : 0;
    if ((eq == NULL && (remove == NULL || key_len == 0)) || key_len == 0 ||
        key_len > INGEST_LABEL_KEY_MAX) {
        snprintf(why, why_len, "\"%s\": expected KEY=VALUE%s (KEY: 1..%d of [a-z0-9_.-])", shown,
                 remove != NULL ? " or KEY-" : "", INGEST_LABEL_KEY_MAX);
        return -1;
    }
    memcpy(key, arg, key_len);
    key[key_len] = '\0';
    if (!ingest_label_key_valid(key)) {
        snprintf(why, why_len,
                 "\"%s\": label key must be 1..%d bytes of [a-z0-9_.-] starting with a letter, "
                 "not class, id, name or version.*",
                 shown, INGEST_LABEL_KEY_MAX);
        return -1;
    }
    if (json_object_get(set, key) != NULL) {
        snprintf(why, why_len, "\"%s\": label %s given twice", shown, key);
        return -1;
    }
    if (eq == NULL) {
        json_t *k = json_string(key);
        return k != NULL && json_array_append_new(remove, k) == 0 ? 0 : -1;
    }
    json_t *v = json_string(eq + 1); /* NULL when not valid UTF-8 */
    if (v == NULL) {
        snprintf(why, why_len, "\"%s\": the value is not valid UTF-8", shown);
        return -1;
    }
    return json_object_set_new(set, key, v) == 0 ? 0 : -1;
}

/* Builds the label change {"set":{...},"remove":[...]} of `device label` arguments into a new
 * JSON text (*out, freed by the caller). Returns 0, or -1 with the reason in why. */
static int label_patch_from_args(int argc, char **argv, char **out, char *why, size_t why_len)
{
    json_t *set = json_object(), *remove = json_array();
    json_t *patch = json_pack("{s:o,s:o}", "set", set, "remove", remove);
    *out = NULL;
    if (patch == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    for (int i = 0; i < argc; i++)
        if (label_arg_add(argv[i], set, remove, why, why_len) != 0) {
            json_decref(patch);
            return -1;
        }
    *out = json_dumps(patch, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(patch);
    if (*out == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    return 0;
}

/* `device label ID KEY=VALUE... KEY-...`: sets and removes labels of one device. */
static int device_label(struct ingest_store *st, int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *id = argv[0];
    char why[256] = "", *patch = NULL;
    if (label_patch_from_args(argc - 1, argv + 1, &patch, why, sizeof(why)) != 0) {
        fprintf(stderr, "ferry-ingest: device label: %s\n", why);
        return 1;
    }
    struct ingest_device d;
    char labels[INGEST_LABELS_MAX + 1];
    int rc = ingest_store_device_get(st, id, &d);
    if (rc != 0) {
        char shown[80];
        fprintf(stderr, "ferry-ingest: device label %s: %s\n",
                ferry_escape_str(shown, sizeof(shown), id, strlen(id)),
                rc == INGEST_STORE_ENOTFOUND ? "no such device" : ingest_store_strerror(rc));
        free(patch);
        return 1;
    }
    rc = ingest_labels_patch(d.labels, patch, labels, sizeof(labels), why, sizeof(why));
    free(patch);
    if (rc == 0)
        rc = ingest_store_device_set_labels(st, id, labels);
    else
        fprintf(stderr, "ferry-ingest: device label %s: %s\n", id, why);
    if (rc != 0) {
        if (why[0] == '\0')
            fprintf(stderr, "ferry-ingest: device label %s: %s\n", id, ingest_store_strerror(rc));
        return 1;
    }
    char target[INGEST_AUDIT_TARGET_MAX + 1];
    size_t n = (size_t)snprintf(target, sizeof(target), "%s", id);
    for (int i = 1; i < argc && n + 1 < sizeof(target); i++)
        n += (size_t)snprintf(target + n, sizeof(target) - n, " %s", argv[i]);
    audit_cli(st, "device.label", target);
    char shown[4 * INGEST_LABELS_MAX + 1];
    printf("%s\t%s\n", id, ferry_escape_str(shown, sizeof(shown), labels, strlen(labels)));
    return 0;
}

/* `enroll-token create`: a token a device shows to POST /v1/enroll (not an API token). */
static int enroll_token_create(struct ingest_store *st, int argc, char **argv)
{
    bool one_time = true;
    int64_t expires_ns = 0;
    uint64_t max_uses = 0;
    json_t *set = json_object();
    if (set == NULL)
        return 1;
    for (int i = 0; i < argc; i++) {
        int64_t ms;
        if (strcmp(argv[i], "--label") == 0 && i + 1 < argc) {
            char why[256];
            if (label_arg_add(argv[++i], set, NULL, why, sizeof(why)) != 0) {
                fprintf(stderr, "ferry-ingest: enroll-token create: %s\n", why);
                json_decref(set);
                return 1;
            }
        } else if (strcmp(argv[i], "--fleet") == 0)
            one_time = false;
        else if (strcmp(argv[i], "--max-uses") == 0 && i + 1 < argc &&
                 ferry_parse_u64(argv[i + 1], INT64_MAX, &max_uses) == 0 && max_uses > 0)
            i++;
        else if (strcmp(argv[i], "--one-time") == 0)
            one_time = true;
        else if (strcmp(argv[i], "--expires") == 0 && i + 1 < argc &&
                 ferry_parse_duration_ms(argv[i + 1], &ms) == 0 && ms > 0) {
            expires_ns = ferry_realtime_ns() + ms * 1000000;
            i++;
        } else {
            json_decref(set);
            return usage();
        }
    }
    char labels[INGEST_LABELS_MAX + 1], why[256] = "";
    char *set_text = json_dumps(set, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(set);
    int rc = set_text != NULL
                 ? ingest_labels_check(set_text, labels, sizeof(labels), why, sizeof(why))
                 : INGEST_STORE_ENOMEM;
    free(set_text);
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: enroll-token create: labels: %s\n",
                why[0] ? why : "out of memory");
        return 1;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "ferry-ingest: libsodium failed to initialise\n");
        return 1;
    }
    uint8_t raw[20];
    char token[41];
    randombytes_buf(raw, sizeof(raw));
    ferry_hex_encode(raw, sizeof(raw), token);
    rc = ingest_store_token_add_labeled(st, token, one_time, expires_ns, max_uses, labels);
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: enroll-token create: %s\n", ingest_store_strerror(rc));
        return 1;
    }
    /* The audit log names the token by a prefix only: the log is readable by admins, the token
     * must stay a secret of whoever provisions devices. */
    char target[INGEST_AUDIT_TARGET_MAX + 1];
    snprintf(target, sizeof(target), "%.8s... (%s, max uses %llu, labels %.150s)", token,
             one_time ? "one-time" : "fleet", (unsigned long long)max_uses, labels);
    audit_cli(st, "enroll-token.create", target);
    printf("%s\n", token);
    return 0;
}

/* ---- Device commands over the API (--url URL --token T) ---------------------------------------
 */

#define REMOTE_RESPONSE_MAX (64u << 20)

static size_t remote_collect(char *p, size_t size, size_t n, void *arg)
{
    struct ferry_buf *b = arg;
    if (b->len + size * n > REMOTE_RESPONSE_MAX || ferry_buf_append(b, p, size * n) != 0)
        return 0;
    return size * n;
}

/* One request to the remote ingest with a body of `len` bytes (body NULL: none) of
 * `content_type`; returns the HTTP status (0: no answer, message printed). With `send_failed`
 * not NULL, a body the ingest stopped reading (its limits.max_body: libevent closes the
 * connection, the 413 may not arrive) sets *send_failed instead of printing. */
static long remote_call_n(const struct ingest_admin_remote *r, const char *method, const char *path,
                          const void *body, size_t len, const char *content_type,
                          struct ferry_buf *out, bool *send_failed)
{
    char url[2048], authz[256], ctype[128];
    size_t ulen = strlen(r->url);
    while (ulen > 0 && r->url[ulen - 1] == '/')
        ulen--;
    if (snprintf(url, sizeof(url), "%.*s%s", (int)ulen, r->url, path) >= (int)sizeof(url) ||
        snprintf(authz, sizeof(authz), "Authorization: Bearer %s", r->token) >=
            (int)sizeof(authz)) {
        fprintf(stderr, "ferry-ingest: --url or --token too long\n");
        return 0;
    }
    snprintf(ctype, sizeof(ctype), "Content-Type: %s", content_type);
    CURL *c = curl_easy_init();
    if (c == NULL)
        return 0;
    struct curl_slist *h = curl_slist_append(NULL, authz);
    h = curl_slist_append(h, ctype);
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip for pieces */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, remote_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    if (r->ca_file != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, r->ca_file);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    long status = 0;
    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else if (send_failed != NULL && cc == CURLE_SEND_ERROR)
        *send_failed = true;
    else
        fprintf(stderr, "ferry-ingest: %s %s: %s\n", method, url, curl_easy_strerror(cc));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (ferry_buf_append_u8(out, 0) != 0)
        return 0;
    out->len--;
    return status;
}

/* remote_call_n with a JSON text body (or none). */
static long remote_call(const struct ingest_admin_remote *r, const char *method, const char *path,
                        const char *body, struct ferry_buf *out)
{
    return remote_call_n(r, method, path, body, body != NULL ? strlen(body) : 0, "application/json",
                         out, NULL);
}

/* Prints an error answer's message, escaped for a terminal. */
static void remote_error(const char *what, long status, const struct ferry_buf *b)
{
    json_t *j = json_loadb((const char *)b->data, b->len, 0, NULL);
    const char *msg = json_string_value(json_object_get(j, "error"));
    fprintf(stderr, "ferry-ingest: %s: HTTP %ld: ", what, status);
    for (const char *p = msg != NULL ? msg : ""; *p; p++)
        fputc((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p, stderr);
    fputc('\n', stderr);
    json_decref(j);
}

static void print_field(const char *s)
{
    for (const char *p = s != NULL && s[0] ? s : "-"; *p; p++)
        putchar((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p);
}

static int remote_device_list(const struct ingest_admin_remote *r)
{
    struct ferry_buf b = FERRY_BUF_INIT;
    long status = remote_call(r, "GET", "/v1/devices", NULL, &b);
    json_t *root = status == 200 ? json_loadb((const char *)b.data, b.len, 0, NULL) : NULL;
    json_t *devs = json_object_get(root, "devices");
    if (!json_is_array(devs)) {
        if (status != 0)
            remote_error("device list", status, &b);
        json_decref(root);
        ferry_buf_free(&b);
        return 1;
    }
    printf("# id\tkey_id\tstate\tname\tclass\tlast_seen\tlabels\n");
    size_t i;
    json_t *d;
    json_array_foreach(devs, i, d)
    {
        print_field(json_string_value(json_object_get(d, "id")));
        putchar('\t');
        print_field(json_string_value(json_object_get(d, "key_id")));
        printf("\t%s\t", json_is_true(json_object_get(d, "revoked")) ? "revoked" : "active");
        print_field(json_string_value(json_object_get(d, "name")));
        putchar('\t');
        print_field(json_string_value(json_object_get(d, "device_class")));
        printf("\tlast_seen_ns=%" PRId64 "\t",
               (int64_t)json_integer_value(json_object_get(d, "last_seen_ns")));
        char *labels = json_dumps(json_object_get(d, "labels"), JSON_COMPACT | JSON_ENCODE_ANY);
        print_field(labels != NULL ? labels : "{}");
        putchar('\n');
        free(labels);
    }
    json_decref(root);
    ferry_buf_free(&b);
    return 0;
}

/* `action send|list` over the API: send signs here (the key never leaves this machine) and
 * POSTs the envelope (operator token); list prints GET /v1/actions (viewer) as JSON. */
static int remote_action(const struct ingest_admin_remote *r, int argc, char **argv)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return 1;
    int status = 1;
    struct ferry_buf b = FERRY_BUF_INIT, env = FERRY_BUF_INIT;
    if (strcmp(argv[0], "send") == 0) {
        struct action a;
        bool print = false;
        status = actions_cli_sign(argc, argv, &env, &a, &print);
        char path[128], *text = NULL;
        if (status == 0 && !print && ferry_buf_append_u8(&env, 0) == 0 &&
            (text = (char *)env.data) != NULL) {
            snprintf(path, sizeof(path), "/v1/devices/%s/actions", a.device);
            long code = remote_call(r, "POST", path, text, &b);
            json_t *j = code == 200 ? json_loadb((const char *)b.data, b.len, 0, NULL) : NULL;
            const char *id = json_string_value(json_object_get(j, "id"));
            if (code == 409 && actions_cli_idempotent(argc, argv))
                id = a.id; /* queued before with this --idempotency-key */
            if (id != NULL) {
                printf("%s\n", id);
                status = 0;
            } else {
                if (code != 0)
                    remote_error("action send", code, &b);
                status = 1;
            }
            json_decref(j);
        } else if (status == 0 && print) {
            fwrite(env.data, 1, env.len, stdout);
            fputc('\n', stdout);
        }
    } else if (strcmp(argv[0], "list") == 0 &&
               (argc == 1 || (argc == 2 && strcmp(argv[1], "--json") == 0))) {
        long code = remote_call(r, "GET", "/v1/actions", NULL, &b);
        if (code == 200) {
            fwrite(b.data, 1, b.len, stdout);
            status = 0;
        } else if (code != 0)
            remote_error("action list", code, &b);
    } else {
        fprintf(stderr, "ferry-ingest: with --url: action send --key FILE ... | action list "
                        "[--json]\n");
        status = 2;
    }
    ferry_buf_free(&env);
    ferry_buf_free(&b);
    curl_global_cleanup();
    return status;
}

/* `versions compare` over the API: GET /v1/versions/compare (viewer), printed like the local
 * command. */
static int remote_versions_compare(const struct ingest_admin_remote *r, int argc, char **argv)
{
    static const char *const opts[] = {"--component", "component", "--metrics",
                                       "metrics",     "--since",   "since"};
    struct ferry_buf path = FERRY_BUF_INIT, b = FERRY_BUF_INIT;
    bool json = false;
    int status = 1, e = ferry_buf_printf(&path, "/v1/versions/compare");
    char sep = '?';
    CURL *c = curl_easy_init();
    for (int i = 0; i < argc && c != NULL && e == 0; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
            continue;
        }
        size_t k = 0;
        while (k < 6 && strcmp(argv[i], opts[k]) != 0)
            k += 2;
        if (k == 6 || i + 1 == argc) {
            status = usage();
            goto out;
        }
        char *v = curl_easy_escape(c, argv[++i], 0);
        e |= v == NULL || ferry_buf_printf(&path, "%c%s=%s", sep, opts[k + 1], v) != 0;
        sep = '&';
        curl_free(v);
    }
    if (c == NULL || e != 0 || ferry_buf_append_u8(&path, 0) != 0)
        goto out;
    long code = remote_call(r, "GET", (const char *)path.data, NULL, &b);
    if (code != 200) {
        if (code != 0)
            remote_error("versions compare", code, &b);
        goto out;
    }
    if (json)
        fwrite(b.data, 1, b.len, stdout);
    else if (compare_versions_print((const char *)b.data, b.len, stdout) != 0) {
        fprintf(stderr, "ferry-ingest: versions compare: the answer is not a benchmark\n");
        goto out;
    }
    status = 0;
out:
    curl_easy_cleanup(c);
    ferry_buf_free(&path);
    ferry_buf_free(&b);
    return status;
}

/* `rollout list|status|compare|pause|resume|abort|promote` over the API (/v1/rollouts, viewer
 * for reads, operator for commands), printed like the local commands (rollout.h). */
static int remote_rollout(const struct ingest_admin_remote *r, int argc, char **argv)
{
    bool as_json = argc >= 2 && strcmp(argv[argc - 1], "--json") == 0;
    int n = as_json ? argc - 1 : argc;
    const char *cmd = argc >= 1 ? argv[0] : "";
    bool command = strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0 ||
                   strcmp(cmd, "abort") == 0 || strcmp(cmd, "promote") == 0;
    char path[128];
    if (strcmp(cmd, "list") == 0 && n == 1)
        snprintf(path, sizeof(path), "/v1/rollouts");
    else if (n == 2 && strlen(argv[1]) == 12 && strspn(argv[1], "0123456789abcdef") == 12 &&
             (command || strcmp(cmd, "status") == 0 || strcmp(cmd, "compare") == 0))
        snprintf(path, sizeof(path), "/v1/rollouts/%s%s%s", argv[1],
                 strcmp(cmd, "status") == 0 ? "" : "/", strcmp(cmd, "status") == 0 ? "" : cmd);
    else {
        fprintf(stderr, "ferry-ingest: with --url: rollout create|list|status|compare|pause|"
                        "resume|abort|promote\n");
        return 2;
    }
    struct ferry_buf b = FERRY_BUF_INIT;
    long code = remote_call(r, command ? "POST" : "GET", path, command ? "" : NULL, &b);
    int status = 1;
    if (code == 200 && rollout_print_doc(cmd, b.data, b.len, as_json) == 0)
        status = 0;
    else if (code == 200)
        fprintf(stderr, "ferry-ingest: rollout %s: the answer is not a rollout document\n", cmd);
    else if (code != 0)
        remote_error("rollout", code, &b);
    ferry_buf_free(&b);
    return status;
}

/* The first piece size of an artifact upload; halved on 413 or a connection closed while
 * sending (the ingest's limits.max_body, 8 MiB by default). */
#define REMOTE_PIECE_BYTES (4u << 20)
#define REMOTE_PIECE_MIN (64u << 10)

/* Uploads the artifact `a` from `src` with PUT /v1/artifacts/{sha256} in pieces. A 409 that says
 * how many bytes the ingest holds resumes there. Returns 0 or -1 (message printed). */
static int remote_upload_artifact(const struct ingest_admin_remote *r, const char *src,
                                  const struct manifest_artifact *a, const char *hex)
{
    FILE *f = fopen(src, "rb");
    size_t piece = REMOTE_PIECE_BYTES;
    uint8_t *buf = malloc(piece);
    struct ferry_buf b = FERRY_BUF_INIT;
    uint64_t offset = 0;
    int rc = -1, resumes = 0;
    if (f == NULL || buf == NULL) {
        fprintf(stderr, "ferry-ingest: cannot read %s\n", src);
        goto out;
    }
    for (;;) {
        uint64_t left = a->size - offset;
        size_t want = left < piece ? (size_t)left : piece;
        if (fseeko(f, (off_t)offset, SEEK_SET) != 0 || fread(buf, 1, want, f) != want) {
            fprintf(stderr, "ferry-ingest: %s is shorter than the manifest's %llu bytes\n", src,
                    (unsigned long long)a->size);
            goto out;
        }
        char path[200];
        snprintf(path, sizeof(path), "/v1/artifacts/%s?offset=%llu&size=%llu", hex,
                 (unsigned long long)offset, (unsigned long long)a->size);
        b.len = 0;
        bool send_failed = false;
        long code =
            remote_call_n(r, "PUT", path, buf, want, "application/octet-stream", &b, &send_failed);
        if (send_failed && piece > REMOTE_PIECE_MIN) {
            piece /= 2; /* above the ingest's limits.max_body: smaller pieces */
            continue;
        }
        if (send_failed)
            fprintf(stderr, "ferry-ingest: artifact %s: the ingest closed the upload\n", hex);
        json_t *j = json_loadb((const char *)b.data, b.len, 0, NULL);
        json_t *received = json_object_get(j, "received");
        if (code == 200 || code == 201) {
            json_decref(j);
            printf("artifact %s %s (%llu bytes)\n", hex, code == 200 ? "already stored" : "stored",
                   (unsigned long long)a->size);
            rc = 0;
            goto out;
        }
        if (code == 202 && json_is_integer(received)) {
            offset = (uint64_t)json_integer_value(received);
        } else if (code == 409 && json_is_integer(received) && resumes++ < 3) {
            offset = (uint64_t)json_integer_value(received);
        } else if (code == 413 && piece > REMOTE_PIECE_MIN) {
            piece /= 2;
        } else {
            json_decref(j);
            if (code != 0)
                remote_error("artifact upload", code, &b);
            goto out;
        }
        json_decref(j);
        if (offset >= a->size) {
            fprintf(stderr, "ferry-ingest: artifact %s: the ingest holds %llu of %llu bytes\n", hex,
                    (unsigned long long)offset, (unsigned long long)a->size);
            goto out;
        }
    }
out:
    if (f != NULL)
        fclose(f);
    free(buf);
    ferry_buf_free(&b);
    return rc;
}

/* Uploads every artifact `m` names, found among `sources` as the local command finds them. */
static int remote_upload_artifacts(const struct ingest_admin_remote *r, const struct manifest *m,
                                   char **sources, int nsources)
{
    for (size_t i = 0; i < manifest_artifact_count(m); i++) {
        const struct manifest_artifact *a = manifest_artifact(m, i);
        char hex[65], src[1600];
        ferry_hex_encode(a->sha256, 32, hex);
        if (ingest_release_find_source(sources, nsources, hex, a->sha256, src, sizeof(src)) != 0) {
            fprintf(stderr, "ferry-ingest: artifact %s not found among the sources\n", hex);
            return -1;
        }
        if (remote_upload_artifact(r, src, a, hex) != 0)
            return -1;
    }
    return 0;
}

/* `release publish` over the API: the same arguments as the local command. The manifest is
 * verified here with the --pub keys (a wrong key fails before any upload) and again by the
 * ingest with its own release.public_keys; artifacts go up with PUT /v1/artifacts (operator),
 * the manifest with POST /v1/releases (admin). */
static int remote_release_publish(const struct ingest_admin_remote *r, int argc, char **argv)
{
    uint8_t keys[8][32];
    size_t nkeys = 0;
    bool force = false;
    char *sources[64];
    int nsources = 0;
    const char *manifest_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--pub") == 0 && i + 1 < argc && nkeys < 8) {
            if (ingest_release_read_pub(argv[++i], keys[nkeys]) != 0) {
                fprintf(stderr, "ferry-ingest: %s is not a release public key\n", argv[i]);
                return 1;
            }
            nkeys++;
        } else if (strcmp(argv[i], "--force") == 0)
            force = true;
        else if (argv[i][0] == '-')
            return usage();
        else if (manifest_path == NULL)
            manifest_path = argv[i];
        else if (nsources < 64)
            sources[nsources++] = argv[i];
    }
    if (manifest_path == NULL || nkeys == 0 || nsources == 0)
        return usage();
    struct manifest *m = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    if (ingest_release_verify(manifest_path, (const uint8_t(*)[32])keys, nkeys, &m, &data, &len) !=
        0)
        return 1;
    int status = 1;
    struct ferry_buf b = FERRY_BUF_INIT;
    if (remote_upload_artifacts(r, m, sources, nsources) == 0) {
        long code = remote_call_n(r, "POST", force ? "/v1/releases?force=1" : "/v1/releases", data,
                                  len, "application/json", &b, NULL);
        if (code == 201) {
            printf("published %s %s for %s (serial %llu)\n", manifest_component(m),
                   manifest_version(m), manifest_device_class(m),
                   (unsigned long long)manifest_serial(m));
            status = 0;
        } else if (code != 0)
            remote_error("release publish", code, &b);
    }
    ferry_buf_free(&b);
    manifest_free(m);
    free(data);
    return status;
}

/* `rollout create` over the API: the same arguments as the local command; artifacts are
 * uploaded first, then POST /v1/rollouts (operator) creates it. Prints the id. */
static int remote_rollout_create(const struct ingest_admin_remote *r, int argc, char **argv)
{
    struct rollout_create_release rel;
    char *body = NULL;
    int status = rollout_create_remote_prepare(argc, argv, &rel, &body);
    if (status != 0)
        return status;
    status = 1;
    struct ferry_buf b = FERRY_BUF_INIT;
    if (remote_upload_artifacts(r, rel.m, rel.sources, rel.n_sources) == 0 &&
        (rel.rb == NULL || remote_upload_artifacts(r, rel.rb, rel.sources, rel.n_sources) == 0)) {
        long code = remote_call(r, "POST", "/v1/rollouts", body, &b);
        json_t *j = code == 201 ? json_loadb((const char *)b.data, b.len, 0, NULL) : NULL;
        const char *id = json_string_value(json_object_get(j, "id"));
        if (id != NULL && strlen(id) == 12 && strspn(id, "0123456789abcdef") == 12) {
            printf("%s\n", id);
            status = 0;
        } else if (code != 0)
            remote_error("rollout create", code, &b);
        json_decref(j);
    }
    ferry_buf_free(&b);
    free(body);
    rollout_create_release_free(&rel);
    return status;
}

static int remote_main(const struct ingest_admin_remote *r, int argc, char **argv)
{
    if (r->token == NULL || r->token[0] == '\0') {
        fprintf(stderr, "ferry-ingest: --url needs an API token: --token, --token-file or "
                        "FERRY_INGEST_TOKEN\n");
        return 2;
    }
    if (argc >= 2 && strcmp(argv[0], "action") == 0)
        return remote_action(r, argc - 1, argv + 1);
    bool publish = argc >= 2 && strcmp(argv[0], "release") == 0 && strcmp(argv[1], "publish") == 0;
    bool create = argc >= 2 && strcmp(argv[0], "rollout") == 0 && strcmp(argv[1], "create") == 0;
    if (publish || create) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
            return 1;
        int st = publish ? remote_release_publish(r, argc - 1, argv + 1)
                         : remote_rollout_create(r, argc - 2, argv + 2);
        curl_global_cleanup();
        return st;
    }
    bool versions =
        argc >= 2 && strcmp(argv[0], "versions") == 0 && strcmp(argv[1], "compare") == 0;
    bool rollout = argc >= 2 && strcmp(argv[0], "rollout") == 0;
    if (argc < 2 || (strcmp(argv[0], "device") != 0 && !versions && !rollout)) {
        fprintf(stderr,
                "ferry-ingest: with --url only device list|add|revoke|label, versions compare, "
                "action send|list, release publish and rollout create|list|status|compare|pause|"
                "resume|abort|promote run over the API; run other commands on the ingest's "
                "host\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return 1;
    if (rollout) {
        int st = remote_rollout(r, argc - 1, argv + 1);
        curl_global_cleanup();
        return st;
    }
    if (versions) {
        int st = remote_versions_compare(r, argc - 2, argv + 2);
        curl_global_cleanup();
        return st;
    }
    int status = 1;
    struct ferry_buf b = FERRY_BUF_INIT;
    if (strcmp(argv[1], "list") == 0 && argc == 2) {
        status = remote_device_list(r);
    } else if (strcmp(argv[1], "revoke") == 0 && argc == 3 && ingest_device_id_valid(argv[2])) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/devices/%s/revoke", argv[2]);
        long code = remote_call(r, "POST", path, "", &b);
        if (code == 200) {
            printf("%s revoked\n", argv[2]);
            status = 0;
        } else if (code != 0)
            remote_error("device revoke", code, &b);
    } else if (strcmp(argv[1], "label") == 0 && argc >= 4 && ingest_device_id_valid(argv[2])) {
        char path[128], why[256], *patch = NULL;
        snprintf(path, sizeof(path), "/v1/devices/%s/labels", argv[2]);
        if (label_patch_from_args(argc - 3, argv + 3, &patch, why, sizeof(why)) != 0) {
            fprintf(stderr, "ferry-ingest: device label: %s\n", why);
        } else {
            long code = remote_call(r, "POST", path, patch, &b);
            json_t *root = code == 200 ? json_loadb((const char *)b.data, b.len, 0, NULL) : NULL;
            char *labels = json_dumps(json_object_get(root, "labels"), JSON_COMPACT);
            if (code == 200 && labels != NULL) {
                printf("%s\t", argv[2]);
                print_field(labels);
                putchar('\n');
                status = 0;
            } else if (code != 0)
                remote_error("device label", code, &b);
            free(labels);
            json_decref(root);
        }
        free(patch);
    } else if (strcmp(argv[1], "add") == 0 && argc >= 4 && argc <= 6) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "id", argv[2], "public_key", argv[3], "name",
                              argc > 4 ? argv[4] : "", "device_class", argc > 5 ? argv[5] : "");
        char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        long code = text != NULL ? remote_call(r, "POST", "/v1/devices", text, &b) : 0;
        free(text);
        if (code == 200) {
            printf("%s\n", argv[2]);
            status = 0;
        } else if (code != 0)
            remote_error("device add", code, &b);
    } else
        status = usage();
    ferry_buf_free(&b);
    curl_global_cleanup();
    return status;
}

/* A published release goes into the audit log with its command line (bounded by the event). */
static void audit_release(struct ingest_config *cfg, int argc, char **argv)
{
    struct ingest_store *st = NULL;
    char err[256], target[INGEST_AUDIT_TARGET_MAX + 1] = "";
    if (ingest_store_open(&cfg->store, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferry-ingest: warning: audit log: %s\n", err);
        return;
    }
    size_t n = 0;
    for (int i = 2; i < argc && n + 1 < sizeof(target); i++)
        n += (size_t)snprintf(target + n, sizeof(target) - n, "%s%s", i > 2 ? " " : "", argv[i]);
    audit_cli(st, "release.publish", target);
    ingest_store_close(st);
}

/* Removes the LMDB store a command that did not run created: its two files, and the data
 * directory when the command made it (rmdir leaves a directory holding anything else alone). */
static void remove_new_store(const char *dir, bool made_dir)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock.mdb", dir);
    unlink(path);
    if (made_dir)
        rmdir(dir);
}

int ingest_admin_main(struct ingest_config *cfg, const struct ingest_admin_remote *remote, int argc,
                      char **argv)
{
    if (remote != NULL && remote->url != NULL)
        return remote_main(remote, argc, argv);
    /* `ferry-ingest release ...` belongs to cloud-ingest/release/ (docs/ota.md). */
    if (argc >= 1 && strcmp(argv[0], "release") == 0) {
        ingest_config_finish(cfg);
        int status = ingest_release_main(cfg, argc, argv);
        if (status == 0 && argc >= 2 && strcmp(argv[1], "publish") == 0)
            audit_release(cfg, argc, argv);
        return status;
    }
    /* `action keygen` and `action send --print` sign on the operator's machine: no store. */
    if (argc >= 1 && strcmp(argv[0], "action") == 0 &&
        !actions_cli_needs_store(argc - 1, argv + 1)) {
        char actor[80];
        cli_actor(actor, sizeof(actor));
        return actions_cli_main(NULL, actor, argc - 1, argv + 1);
    }
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "--version") == 0) {
        printf("ferry-ingest %s\n", FERRY_VERSION);
        return 0;
    }
    struct ingest_store *st = NULL;
    char err[512] = "";
    ingest_config_finish(cfg);
    /* A usage error or --help must leave nothing on disk: an LMDB data directory that opening the
     * store creates is removed again when the command did not run (see below). */
    struct stat path_st;
    bool lmdb = cfg->store.kind == INGEST_STORE_LMDB && cfg->store.lmdb_dir != NULL;
    bool made_dir = lmdb && stat(cfg->store.lmdb_dir, &path_st) != 0 && errno == ENOENT;
    bool made_store = made_dir;
    if (lmdb && !made_dir) {
        char data_path[1200];
        snprintf(data_path, sizeof(data_path), "%s/data.mdb", cfg->store.lmdb_dir);
        made_store = stat(data_path, &path_st) != 0 && errno == ENOENT;
    }
    bool asked_help = false;
    for (int k = 1; k < argc; k++)
        if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0)
            asked_help = true;
    int rc = ingest_store_open(&cfg->store, &st, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: %s\n", err);
        return 1;
    }
    int status;
    if (strcmp(argv[0], "device") == 0 && strcmp(argv[1], "add") == 0)
        status = device_add(st, argc - 2, argv + 2);
    else if (strcmp(argv[0], "device") == 0 && strcmp(argv[1], "list") == 0 && argc == 3 &&
             strcmp(argv[2], "--json") == 0)
        status = device_list_json(st);
    else if (strcmp(argv[0], "device") == 0 && strcmp(argv[1], "list") == 0 && argc == 2) {
        printf("# id\tkey_id\tstate\tname\tclass\tlast_seen (UTC)\trecords event/metric/log\t"
               "gap ranges\n");
        status = ingest_store_device_list(st, print_device, NULL) == 0 ? 0 : 1;
    } else if (strcmp(argv[0], "device") == 0 && strcmp(argv[1], "revoke") == 0 && argc == 3) {
        rc = ingest_store_device_revoke(st, argv[2]);
        if (rc == 0)
            audit_cli(st, "device.revoke", argv[2]);
        else
            fprintf(stderr, "ferry-ingest: device revoke %s: %s\n", argv[2],
                    ingest_store_strerror(rc));
        status = rc == 0 ? 0 : 1;
    } else if (strcmp(argv[0], "device") == 0 && strcmp(argv[1], "label") == 0)
        status = device_label(st, argc - 2, argv + 2);
    else if (strcmp(argv[0], "enroll-token") == 0 && strcmp(argv[1], "create") == 0)
        status = enroll_token_create(st, argc - 2, argv + 2);
    else if (strcmp(argv[0], "alerts") == 0) {
        char actor[80];
        cli_actor(actor, sizeof(actor));
        status = alerts_cli_main(st, actor, argc - 1, argv + 1);
    } else if (strcmp(argv[0], "rollout") == 0) {
        char actor[80];
        cli_actor(actor, sizeof(actor));
        status = rollout_cli_main(cfg, st, actor, argc - 1, argv + 1);
    } else if (strcmp(argv[0], "action") == 0) {
        char actor[80];
        cli_actor(actor, sizeof(actor));
        status = actions_cli_main(st, actor, argc - 1, argv + 1);
    } else if (strcmp(argv[0], "versions") == 0)
        status = compare_cli_main(st, argc - 1, argv + 1);
    else if (strcmp(argv[0], "token") == 0) {
        char actor[80];
        cli_actor(actor, sizeof(actor));
        status = ingest_auth_token_main(st, actor, argc - 1, argv + 1);
    } else if (strcmp(argv[0], "audit") == 0)
        status = ingest_auth_audit_main(st, argc - 1, argv + 1);
    else
        status = usage();
    ingest_store_close(st);
    if (made_store && (status == 2 || asked_help))
        remove_new_store(cfg->store.lmdb_dir, made_dir);
    return status;
}
