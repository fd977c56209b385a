/*
 * cli.c - `ferry-ingest rollout create|list|status|pause|resume|abort|promote|compare`
 * (docs/rollouts.md). Runs on the ingest's host against its store, like the other operator
 * commands; `create` verifies and stores the release like `release publish` but does not make it
 * current. Every change is in the audit log with the operator's name.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/ingest.h"
#include "cloud-ingest/release/release.h"
#include "cloud-ingest/rollout/rollout.h"
#include "cloud-ingest/rollout/rollout_int.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"
#include "transport/manifest.h"

#define CLI_MAX_KEYS 8

static int usage(FILE *out)
{
    fprintf(
        out,
        "usage: ferry-ingest [options] rollout create --manifest M.json\n"
        "           [--rollback-manifest R.json] [--selector S] [--waves 1%%,10%%,50%%,100%%]\n"
        "           [--min-devices 1] [--soak 10m] [--deadline 30m] [--gate 'GATE']...\n"
        "           [--on-fail pause|abort] [--window HH:MM-HH:MM] [--name NAME]\n"
        "           --pub RELEASE.pub [--pub ...] ARTIFACT|DIR...\n"
        "       ferry-ingest [options] rollout list [--json]\n"
        "       ferry-ingest [options] rollout status ID [--json]\n"
        "       ferry-ingest [options] rollout pause|resume|abort|promote ID\n"
        "       ferry-ingest [options] rollout compare ID [--json]\n"
        "Waves are cumulative: a percentage of the eligible devices or a device count.\n"
        "Gates: install_success >= R, rollback_ratio <= R, silent_ratio <= R (R in [0,1]),\n"
        "and metric gates: 'inference.fps p50 >= 0.97 x baseline', 'thermal.gpu p95 <=\n"
        "baseline + 3', 'error_logs <= 2 x baseline', '... x control' (query/compare.h).\n"
        "Selector: terms over class, id, name, labels and version.<component> (for example\n"
        "'site=berlin,hw in (b01,b02),version.model<2.0.0'); empty: every device of the class.\n"
        "create prints the rollout id on stdout. See docs/rollouts.md.\n");
    return out == stdout ? 0 : 2;
}

static void audit(struct ingest_store *st, const char *actor, const char *action,
                  const char *target)
{
    struct ingest_audit_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.ts_ns = ferry_realtime_ns();
    ferry_strlcpy(ev.actor, actor, sizeof(ev.actor));
    ferry_strlcpy(ev.action, action, sizeof(ev.action));
    ferry_strlcpy(ev.target, target, sizeof(ev.target));
    ferry_strlcpy(ev.source, "cli", sizeof(ev.source));
    if (ingest_store_audit_append(st, &ev) != 0)
        fprintf(stderr, "ferry-ingest: warning: the audit log could not be written\n");
}

static void artifact_list(const struct manifest *m, char (*out)[65], size_t *n)
{
    *n = 0;
    for (size_t i = 0; i < manifest_artifact_count(m) && i < ROLLOUT_ARTIFACTS_MAX; i++)
        ferry_hex_encode(manifest_artifact(m, i)->sha256, 32, out[(*n)++]);
}

_Static_assert(ROLLOUT_GATES_MAX == 16, "rollout_create_args.gates (rollout.h)");

/* The command line of `create` (argv's strings, borrowed) plus the release keys and sources. */
struct create_cli {
    struct rollout_create_args a;
    uint8_t keys[CLI_MAX_KEYS][32];
    size_t n_keys;
    char *sources[ROLLOUT_SOURCES_MAX];
    int n_sources;
};

static int parse_create(int argc, char **argv, struct create_cli *c)
{
    memset(c, 0, sizeof(*c));
    struct rollout_create_args *a = &c->a;
    rollout_create_args_defaults(a);
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **slot = strcmp(o, "--manifest") == 0            ? &a->manifest
                            : strcmp(o, "--rollback-manifest") == 0 ? &a->rollback
                            : strcmp(o, "--selector") == 0          ? &a->selector
                            : strcmp(o, "--waves") == 0             ? &a->waves
                            : strcmp(o, "--min-devices") == 0       ? &a->min_devices
                            : strcmp(o, "--soak") == 0              ? &a->soak
                            : strcmp(o, "--deadline") == 0          ? &a->deadline
                            : strcmp(o, "--on-fail") == 0           ? &a->on_fail
                            : strcmp(o, "--window") == 0            ? &a->window
                            : strcmp(o, "--name") == 0              ? &a->name
                                                                    : NULL;
        if (slot != NULL && v != NULL) {
            *slot = v;
            i++;
        } else if (strcmp(o, "--gate") == 0 && v != NULL) {
            if (a->n_gates == ROLLOUT_GATES_MAX) {
                fprintf(stderr, "ferry-ingest: at most %d gates\n", ROLLOUT_GATES_MAX);
                return -1;
            }
            a->gates[a->n_gates++] = v;
            i++;
        } else if (strcmp(o, "--pub") == 0 && v != NULL) {
            if (c->n_keys == CLI_MAX_KEYS || ingest_release_read_pub(v, c->keys[c->n_keys]) != 0) {
                fprintf(stderr, "ferry-ingest: %s is not a release public key (or too many)\n", v);
                return -1;
            }
            c->n_keys++;
            i++;
        } else if (o[0] == '-') {
            fprintf(stderr, "ferry-ingest: rollout create: unknown or incomplete option %s\n", o);
            return -1;
        } else if (c->n_sources < ROLLOUT_SOURCES_MAX) {
            c->sources[c->n_sources++] = argv[i];
        }
    }
    if (a->manifest == NULL || c->n_keys == 0 || c->n_sources == 0) {
        fprintf(stderr, "ferry-ingest: rollout create needs --manifest, --pub and the artifacts\n");
        return -1;
    }
    return 0;
}

void rollout_create_args_defaults(struct rollout_create_args *a)
{
    memset(a, 0, sizeof(*a));
    a->waves = "1%,10%,50%,100%";
    a->soak = "10m";
    a->deadline = "30m";
    a->min_devices = "1";
    a->on_fail = "pause";
    a->selector = "";
}

static int duration_arg(const char *opt, const char *s, int64_t *out, char *err, size_t err_len)
{
    int64_t ms;
    if (ferry_parse_duration_ms(s, &ms) != 0 || ms < 0 || ms > INT64_MAX / 1000000) {
        snprintf(err, err_len, "%s \"%.64s\": expected a duration such as 30s, 10m, 2h", opt, s);
        return -1;
    }
    *out = ms * 1000000;
    return 0;
}

int rollout_create_settings(const struct rollout_create_args *a, struct rollout *r, char *err,
                            size_t err_len)
{
    uint64_t mind = 0;
    if (rollout_parse_waves(a->waves, r, err, err_len) != 0 ||
        (a->window != NULL && rollout_parse_window(a->window, r, err, err_len) != 0) ||
        rollout_selector_check(a->selector, err, err_len) != 0)
        return -1;
    for (size_t g = 0; g < a->n_gates; g++) {
        if (rollout_parse_gate(a->gates[g], &r->gates[g], err, err_len) != 0)
            return -1;
        r->n_gates++;
    }
    if (ferry_parse_u64(a->min_devices, 1000000, &mind) != 0) {
        snprintf(err, err_len, "--min-devices \"%.32s\": expected 0..1000000", a->min_devices);
        return -1;
    }
    r->min_devices = (uint32_t)mind;
    if (duration_arg("--soak", a->soak, &r->soak_ns, err, err_len) != 0 ||
        duration_arg("--deadline", a->deadline, &r->deadline_ns, err, err_len) != 0)
        return -1;
    if (r->deadline_ns > 0 && r->deadline_ns < r->soak_ns) {
        snprintf(err, err_len, "--deadline must not be shorter than --soak");
        return -1;
    }
    if (strcmp(a->on_fail, "pause") != 0 && strcmp(a->on_fail, "abort") != 0) {
        snprintf(err, err_len, "--on-fail: pause or abort");
        return -1;
    }
    r->abort_on_fail = strcmp(a->on_fail, "abort") == 0;
    if (a->name != NULL && (strlen(a->name) > ROLLOUT_NAME_MAX ||
                            !ferry_utf8_valid((const uint8_t *)a->name, strlen(a->name)))) {
        snprintf(err, err_len, "--name: at most %d bytes of UTF-8", ROLLOUT_NAME_MAX);
        return -1;
    }
    ferry_strlcpy(r->name, a->name != NULL ? a->name : "", sizeof(r->name));
    ferry_strlcpy(r->selector, a->selector, sizeof(r->selector));
    return 0;
}

static int write_manifest_file(const struct ingest_config *cfg, const char *id, bool rollback,
                               const uint8_t *data, size_t len, char *err, size_t err_len)
{
    char path[1600], dir[1600];
    if (rollout_manifest_path(cfg, id, rollback, path, sizeof(path)) != 0) {
        snprintf(err, err_len, "rollout %s: manifest path too long", id);
        return -1;
    }
    ferry_strlcpy(dir, path, sizeof(dir));
    char *slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    if (ferry_mkdir_p(dir, 0755) != 0 || ferry_write_file_atomic(path, data, len, 0644) != 0) {
        snprintf(err, err_len, "cannot write %.1000s", path);
        return -1;
    }
    return 0;
}

/* The checks of a new rollout against the published release and the previous rollout of the
 * same class and component. Returns 0, -1 (the rollback release does not fit) or -3 (the
 * published serial or the previous rollout is in the way) with err. */
static int check_new_release(const struct ingest_config *cfg, struct ingest_store *st,
                             const struct manifest *m, const struct manifest *rb, char *err,
                             size_t err_len)
{
    if (rb != NULL && (!manifest_is_rollback(rb) ||
                       strcmp(manifest_device_class(rb), manifest_device_class(m)) != 0 ||
                       strcmp(manifest_component(rb), manifest_component(m)) != 0 ||
                       manifest_serial(rb) <= manifest_serial(m))) {
        snprintf(err, err_len,
                 "a rollback release must say \"rollback\": true, be for the same class and "
                 "component, and have a serial above the release's (devices refuse anything "
                 "else)");
        return -1;
    }
    uint64_t cur =
        ingest_release_current_serial(cfg, manifest_device_class(m), manifest_component(m));
    if (cur >= manifest_serial(m)) {
        snprintf(err, err_len,
                 "serial %llu is not above the published %llu for %s/%s (devices would refuse "
                 "it)",
                 (unsigned long long)manifest_serial(m), (unsigned long long)cur,
                 manifest_device_class(m), manifest_component(m));
        return -3;
    }
    char prev[ROLLOUT_ID_LEN + 1], why[256];
    if (rollout_index_get(st, manifest_device_class(m), manifest_component(m), prev) != 0)
        return 0;
    struct rollout p;
    if (rollout_load(st, prev, ferry_realtime_ns(), &p, NULL, why, sizeof(why)) != 0)
        return 0;
    if (p.state == ROLLOUT_RUNNING || p.state == ROLLOUT_PAUSED) {
        snprintf(err, err_len, "rollout %s of %s/%s is %s: abort it or let it finish first", prev,
                 manifest_device_class(m), manifest_component(m), rollout_state_name(p.state));
        return -3;
    }
    /* devices of an aborted rollout accepted its rollback's serial: a new release must be
     * above it, or they would refuse it as a replay (docs/ota.md, anti-rollback) */
    if (p.state == ROLLOUT_ABORTED && p.has_rollback && p.rollback_serial >= manifest_serial(m)) {
        snprintf(err, err_len,
                 "serial %llu is not above %llu, the rollback release of rollout %s that "
                 "devices may have installed",
                 (unsigned long long)manifest_serial(m), (unsigned long long)p.rollback_serial,
                 prev);
        return -3;
    }
    return 0;
}

int rollout_create_verified(const struct ingest_config *cfg, struct ingest_store *st,
                            struct rollout *r, struct rollout_create_release *rel, char *err,
                            size_t err_len)
{
    const struct manifest *m = rel->m, *rb = rel->rb;
    int rc = check_new_release(cfg, st, m, rb, err, err_len);
    if (rc != 0)
        return rc;
    /* the artifacts: from the CLI's sources, or already uploaded (PUT /v1/artifacts) */
    if (rel->n_sources > 0) {
        if (ingest_release_store_artifacts(cfg, m, rel->sources, rel->n_sources, stderr) != 0 ||
            (rb != NULL &&
             ingest_release_store_artifacts(cfg, rb, rel->sources, rel->n_sources, stderr) != 0)) {
            snprintf(err, err_len, "the artifacts could not be stored");
            return -1;
        }
    } else if (ingest_release_check_stored(cfg, m, err, err_len) != 0 ||
               (rb != NULL && ingest_release_check_stored(cfg, rb, err, err_len) != 0))
        return -1;
    uint8_t rnd[ROLLOUT_ID_LEN / 2];
    randombytes_buf(rnd, sizeof(rnd));
    ferry_hex_encode(rnd, sizeof(rnd), r->id);
    if (write_manifest_file(cfg, r->id, false, rel->data, rel->len, err, err_len) != 0 ||
        (rb != NULL &&
         write_manifest_file(cfg, r->id, true, rel->rdata, rel->rlen, err, err_len) != 0))
        return -2;
    int64_t now = ferry_realtime_ns();
    r->created_ns = now;
    ferry_strlcpy(r->device_class, manifest_device_class(m), sizeof(r->device_class));
    ferry_strlcpy(r->component, manifest_component(m), sizeof(r->component));
    ferry_strlcpy(r->version, manifest_version(m), sizeof(r->version));
    r->serial = manifest_serial(m);
    artifact_list(m, r->artifacts, &r->n_artifacts);
    if (rb != NULL) {
        r->has_rollback = true;
        ferry_strlcpy(r->rollback_version, manifest_version(rb), sizeof(r->rollback_version));
        r->rollback_serial = manifest_serial(rb);
        artifact_list(rb, r->rollback_artifacts, &r->n_rollback_artifacts);
    }
    r->state = ROLLOUT_RUNNING;
    r->wave = 0;
    r->wave_started_ns[0] = now;
    r->soak_from_ns = now;
    r->updated_ns = now;
    snprintf(r->reason, sizeof(r->reason), "created");
    char *text = rollout_to_json(r);
    char k1[INGEST_KV_KEY_MAX + 1], k2[INGEST_KV_KEY_MAX + 1], k3[INGEST_KV_KEY_MAX + 1];
    snprintf(k1, sizeof(k1), "rollout/%s", r->id);
    snprintf(k2, sizeof(k2), "rollidx/%s/%s", r->device_class, r->component);
    snprintf(k3, sizeof(k3), "rollidx/%s/latest", r->device_class);
    struct ingest_kv_op ops[3] = {{k1, text, text != NULL ? strlen(text) : 0, false},
                                  {k2, r->id, strlen(r->id), false},
                                  {k3, r->id, strlen(r->id), false}};
    rc = text != NULL ? ingest_store_kv_apply(st, ops, 3, NULL, NULL) : INGEST_STORE_ENOMEM;
    free(text);
    if (rc != 0) {
        snprintf(err, err_len, "store: %s", ingest_store_strerror(rc));
        return -2;
    }
    return 0;
}

void rollout_create_audit_target(const struct rollout *r, char *out, size_t out_len)
{
    snprintf(out, out_len, "%s %.128s/%s %s serial %llu", r->id, r->device_class, r->component,
             r->version, (unsigned long long)r->serial);
}

static int cmd_create(const struct ingest_config *cfg, struct ingest_store *st, const char *actor,
                      int argc, char **argv)
{
    struct create_cli c;
    struct rollout *r = calloc(1, sizeof(*r));
    struct rollout_create_release rel;
    memset(&rel, 0, sizeof(rel));
    char err[1024] = "";
    int status = 1;
    if (r == NULL)
        return 1;
    if (parse_create(argc, argv, &c) != 0) {
        status = 2;
        goto out;
    }
    if (rollout_create_settings(&c.a, r, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferry-ingest: %s\n", err);
        status = 2;
        goto out;
    }
    if (ingest_release_verify(c.a.manifest, (const uint8_t(*)[32])c.keys, c.n_keys, &rel.m,
                              &rel.data, &rel.len) != 0 ||
        (c.a.rollback != NULL &&
         ingest_release_verify(c.a.rollback, (const uint8_t(*)[32])c.keys, c.n_keys, &rel.rb,
                               &rel.rdata, &rel.rlen) != 0))
        goto out;
    memcpy(rel.sources, c.sources, sizeof(rel.sources));
    rel.n_sources = c.n_sources;
    if (rollout_create_verified(cfg, st, r, &rel, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferry-ingest: rollout create: %s\n", err);
        goto out;
    }
    char target[512];
    rollout_create_audit_target(r, target, sizeof(target));
    audit(st, actor, "rollout.create", target);
    fprintf(stderr, "rollout %s of %s %s for class %s created: wave 1 of %zu starts now\n", r->id,
            r->component, r->version, r->device_class, r->n_waves);
    printf("%s\n", r->id);
    status = 0;
out:
    rollout_create_release_free(&rel);
    free(r);
    return status;
}

void rollout_create_release_free(struct rollout_create_release *rel)
{
    manifest_free(rel->m);
    manifest_free(rel->rb);
    free(rel->data);
    free(rel->rdata);
    memset(rel, 0, sizeof(*rel));
}

int rollout_create_remote_prepare(int argc, char **argv, struct rollout_create_release *rel,
                                  char **body)
{
    struct create_cli c;
    struct rollout *r = calloc(1, sizeof(*r));
    char err[1024];
    int status = 2;
    *body = NULL;
    memset(rel, 0, sizeof(*rel));
    if (r == NULL)
        return 1;
    if (parse_create(argc, argv, &c) != 0)
        goto out;
    if (rollout_create_settings(&c.a, r, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferry-ingest: %s\n", err);
        goto out;
    }
    status = 1;
    if (ingest_release_verify(c.a.manifest, (const uint8_t(*)[32])c.keys, c.n_keys, &rel->m,
                              &rel->data, &rel->len) != 0 ||
        (c.a.rollback != NULL &&
         ingest_release_verify(c.a.rollback, (const uint8_t(*)[32])c.keys, c.n_keys, &rel->rb,
                               &rel->rdata, &rel->rlen) != 0))
        goto out;
    memcpy(rel->sources, c.sources, sizeof(rel->sources));
    rel->n_sources = c.n_sources;
    json_t *gates = json_array();
    for (size_t g = 0; g < c.a.n_gates && gates != NULL; g++)
        json_array_append_new(gates, json_string(c.a.gates[g]));
    json_t *o = json_pack("{s:s%, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "manifest", rel->data,
                          rel->len, "selector", c.a.selector, "waves", c.a.waves, "min_devices",
                          c.a.min_devices, "soak", c.a.soak, "deadline", c.a.deadline, "on_fail",
                          c.a.on_fail, "gates", gates);
    if (o != NULL && rel->rb != NULL)
        json_object_set_new(o, "rollback_manifest",
                            json_stringn((const char *)rel->rdata, rel->rlen));
    if (o != NULL && c.a.window != NULL)
        json_object_set_new(o, "window", json_string(c.a.window));
    if (o != NULL && c.a.name != NULL)
        json_object_set_new(o, "name", json_string(c.a.name));
    *body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (*body == NULL) {
        fprintf(stderr, "ferry-ingest: rollout create: the manifests are not UTF-8 JSON text\n");
        goto out;
    }
    status = 0;
out:
    if (status != 0)
        rollout_create_release_free(rel);
    free(r);
    return status;
}

/* ---- list / status ---------------------------------------------------------------------------
 */

static void print_escaped(const char *s)
{
    char buf[4 * ROLLOUT_SELECTOR_MAX + 1];
    ferry_escape_str(buf, sizeof(buf), s != NULL ? s : "", s != NULL ? strlen(s) : 0);
    fputs(buf, stdout);
}

static void when(int64_t ns, char *out, size_t out_len)
{
    time_t secs = (time_t)(ns / 1000000000);
    struct tm tm;
    if (ns <= 0 || gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, out_len, "-");
        return;
    }
    strftime(out, out_len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Prints a document as compact JSON on one line. */
static void print_json(json_t *o)
{
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text != NULL)
        printf("%s\n", text);
    free(text);
}

static void print_list(json_t *doc)
{
    printf("# id\tstate\twave\tclass\tcomponent\tversion\tcreated\tname\n");
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(doc, "rollouts"), i, r)
    {
        char c[32];
        const char *name = json_string_value(json_object_get(r, "name"));
        when(json_integer_value(json_object_get(r, "created_ns")), c, sizeof(c));
        printf("%s\t%s\t%" JSON_INTEGER_FORMAT "/%zu\t",
               json_string_value(json_object_get(r, "id")),
               json_string_value(json_object_get(r, "state")),
               json_integer_value(json_object_get(r, "wave")) + 1,
               json_array_size(json_object_get(r, "waves")));
        print_escaped(json_string_value(json_object_get(r, "device_class")));
        printf("\t%s\t%s\t%s\t", json_string_value(json_object_get(r, "component")),
               json_string_value(json_object_get(r, "version")), c);
        print_escaped(name != NULL && name[0] ? name : "-");
        putchar('\n');
    }
}

static int cmd_list(struct ingest_store *st, bool as_json)
{
    json_t *ids = NULL, *all = json_array();
    int rc = rollout_list_ids(st, &ids);
    if (rc != 0 || all == NULL) {
        fprintf(stderr, "ferry-ingest: rollout list: %s\n", ingest_store_strerror(rc));
        json_decref(all);
        return 1;
    }
    size_t i;
    json_t *id;
    int64_t now = ferry_realtime_ns();
    json_array_foreach(ids, i, id)
    {
        struct rollout r;
        char err[256];
        if (rollout_load(st, json_string_value(id), now, &r, NULL, err, sizeof(err)) != 0) {
            fprintf(stderr, "ferry-ingest: %s\n", err);
            continue;
        }
        json_array_append_new(all, rollout_to_json_obj(&r));
    }
    json_decref(ids);
    json_t *doc = json_pack("{s:o}", "rollouts", all);
    if (as_json)
        print_json(doc);
    else
        print_list(doc);
    json_decref(doc);
    return 0;
}

static const char bar_chars[RDEV_COUNT] = {' ', '.', '-', '=', '#', 'R', 'F', 'S'};

static void print_bar(json_t *counts, json_int_t total)
{
    const int width = 40;
    int used = 0;
    putchar('[');
    for (int s = RDEV_COUNT - 1; s >= 1 && total > 0; s--) {
        json_int_t n = json_integer_value(json_object_get(counts, rollout_dev_name(s)));
        int cells = (int)((n * width + total / 2) / total);
        if (n > 0 && cells == 0)
            cells = 1;
        for (int i = 0; i < cells && used < width; i++, used++)
            putchar(bar_chars[s]);
    }
    for (; used < width; used++)
        putchar(' ');
    putchar(']');
}

static void print_status(json_t *o)
{
    char c[32];
    printf("rollout %s", json_string_value(json_object_get(o, "id")));
    const char *name = json_string_value(json_object_get(o, "name"));
    if (name != NULL && name[0]) {
        printf(" \"");
        print_escaped(name);
        printf("\"");
    }
    printf(": %s %s for class %s (serial %" JSON_INTEGER_FORMAT ")\n",
           json_string_value(json_object_get(o, "component")),
           json_string_value(json_object_get(o, "version")),
           json_string_value(json_object_get(o, "device_class")),
           json_integer_value(json_object_get(o, "serial")));
    printf("  state %s, wave %" JSON_INTEGER_FORMAT " of %zu: ",
           json_string_value(json_object_get(o, "state")),
           json_integer_value(json_object_get(o, "wave")) + 1,
           json_array_size(json_object_get(o, "waves")));
    print_escaped(json_string_value(json_object_get(o, "reason")));
    putchar('\n');
    const char *sel = json_string_value(json_object_get(o, "selector"));
    const char *win = json_string_value(json_object_get(o, "window"));
    printf("  selector ");
    print_escaped(sel != NULL && sel[0] ? sel : "(every device of the class)");
    printf(", soak %" JSON_INTEGER_FORMAT "s, deadline %" JSON_INTEGER_FORMAT
           "s, on failure %s, window %s, rollback %s\n",
           json_integer_value(json_object_get(o, "soak_ns")) / 1000000000,
           json_integer_value(json_object_get(o, "deadline_ns")) / 1000000000,
           json_string_value(json_object_get(o, "on_fail")), win != NULL ? win : "none",
           json_is_true(json_object_get(o, "has_rollback"))
               ? json_string_value(json_object_get(o, "rollback_version"))
               : "none");
    printf("  bar: '.' offered  '-' downloading  '=' installed  '#' committed  'R' rolled back  "
           "'F' failed  'S' silent\n");
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(o, "wave_status"), i, w)
    {
        json_t *counts = json_object_get(w, "counts");
        json_int_t total = json_integer_value(json_object_get(w, "devices"));
        when(json_integer_value(json_object_get(w, "started_ns")), c, sizeof(c));
        printf("  wave %zu %-6s %5" JSON_INTEGER_FORMAT " devices ", i + 1,
               json_string_value(json_object_get(w, "target")), total);
        print_bar(counts, total);
        printf(" %s\n", json_is_true(json_object_get(w, "started")) ? c : "not started");
        if (!json_is_true(json_object_get(w, "started")))
            continue;
        printf("    ");
        for (int s = 1; s < RDEV_COUNT; s++)
            printf("%s%s %" JSON_INTEGER_FORMAT, s > 1 ? ", " : "", rollout_dev_name(s),
                   json_integer_value(json_object_get(counts, rollout_dev_name(s))));
        printf(", pending %" JSON_INTEGER_FORMAT "\n",
               json_integer_value(json_object_get(counts, "pending")));
        size_t g;
        json_t *gate;
        json_array_foreach(json_object_get(w, "gates"), g, gate)
        {
            json_t *v = json_object_get(gate, "value");
            json_t *t = json_object_get(gate, "threshold");
            char val[32] = "-", thr[32] = "-";
            if (json_is_number(v))
                snprintf(val, sizeof(val), "%.3f", json_number_value(v));
            if (json_is_number(t))
                snprintf(thr, sizeof(thr), "%.3f", json_number_value(t));
            printf("    gate %-32s value %-8s threshold %-8s %s%s\n",
                   json_string_value(json_object_get(gate, "gate")), val, thr,
                   !json_is_true(json_object_get(gate, "decided")) && !json_is_number(v) ? "waiting"
                   : json_is_true(json_object_get(gate, "pass"))                         ? "pass"
                                                                                         : "FAIL",
                   json_is_true(json_object_get(gate, "decided")) ? " (decided)" : " (so far)");
        }
    }
}

static int cmd_status(struct ingest_store *st, const char *id, bool as_json)
{
    json_t *o = NULL;
    char err[256] = "";
    int rc = rollout_status_json(st, id, ferry_realtime_ns(), &o, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: rollout status: %s\n",
                err[0] ? err : ingest_store_strerror(rc));
        return 1;
    }
    if (as_json)
        print_json(o);
    else
        print_status(o);
    json_decref(o);
    return 0;
}

static void print_stat(json_t *d, const char *k)
{
    json_t *v = json_object_get(d, k);
    if (json_is_number(v))
        printf(" %10.3f", json_number_value(v));
    else
        printf(" %10s", "-");
}

static void print_p(json_t *row, const char *k, const char *sig)
{
    json_t *v = json_object_get(row, k);
    if (json_is_number(v))
        printf("  p=%.4f%s", json_number_value(v),
               json_is_true(json_object_get(row, sig)) ? " (larger than the noise)" : "");
    else
        printf("  p=-");
}

static void print_compare(json_t *o);

static int cmd_compare(struct ingest_store *st, const char *id, bool as_json)
{
    json_t *o = NULL;
    char err[256] = "";
    int rc = rollout_compare_json(st, id, ferry_realtime_ns(), &o, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: rollout compare: %s\n",
                err[0] ? err : ingest_store_strerror(rc));
        return 1;
    }
    if (as_json)
        print_json(o);
    else
        print_compare(o);
    json_decref(o);
    return 0;
}

static void print_compare(json_t *o)
{
    const char *id = json_string_value(json_object_get(o, "id"));
    printf("rollout %s: %s %s, %" JSON_INTEGER_FORMAT " updated device(s) against their own "
           "baseline, %" JSON_INTEGER_FORMAT " control device(s), window %" JSON_INTEGER_FORMAT
           "s\n",
           id, json_string_value(json_object_get(o, "component")),
           json_string_value(json_object_get(o, "version")),
           json_integer_value(json_object_get(o, "updated_devices")),
           json_integer_value(json_object_get(o, "control_devices")),
           json_integer_value(json_object_get(o, "window_ns")) / 1000000000);
    printf("%-28s %-8s %10s %10s %10s %10s %10s\n", "metric", "group", "count", "devices", "mean",
           "p50", "p95");
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(o, "metrics"), i, row)
    {
        const char *metric = json_string_value(json_object_get(row, "metric"));
        const char *e = json_string_value(json_object_get(row, "error"));
        if (e != NULL) {
            printf("%-28s ", metric);
            print_escaped(e);
            putchar('\n');
            continue;
        }
        static const char *const groups[] = {"before", "after", "control"};
        for (int g = 0; g < 3; g++) {
            json_t *d = json_object_get(row, groups[g]);
            printf("%-28s %-8s %10" JSON_INTEGER_FORMAT " %10" JSON_INTEGER_FORMAT,
                   g == 0 ? metric : "", groups[g], json_integer_value(json_object_get(d, "count")),
                   json_integer_value(json_object_get(d, "devices")));
            print_stat(d, "mean");
            print_stat(d, "p50");
            print_stat(d, "p95");
            putchar('\n');
        }
        printf("%-28s after vs before:", "");
        print_p(row, "p_before_after", "significant_before_after");
        printf("; after vs control:");
        print_p(row, "p_after_control", "significant_after_control");
        putchar('\n');
    }
}

static bool id_valid(const char *id)
{
    if (strlen(id) != ROLLOUT_ID_LEN)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

int rollout_print_doc(const char *cmd, const void *text, size_t len, bool as_json)
{
    json_t *o = json_loadb(text, len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return -1;
    }
    if (as_json)
        print_json(o);
    else if (strcmp(cmd, "list") == 0)
        print_list(o);
    else if (strcmp(cmd, "status") == 0)
        print_status(o);
    else if (strcmp(cmd, "compare") == 0)
        print_compare(o);
    else
        printf("rollout %s: %s\n", json_string_value(json_object_get(o, "id")),
               json_string_value(json_object_get(o, "state")));
    json_decref(o);
    return 0;
}

int rollout_cli_main(const struct ingest_config *cfg, struct ingest_store *st, const char *actor,
                     int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    if (argc < 1)
        return usage(stderr);
    const char *cmd = argv[0];
    bool as_json = argc >= 2 && strcmp(argv[argc - 1], "--json") == 0;
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0)
        return usage(stdout);
    if (strcmp(cmd, "create") == 0)
        return cmd_create(cfg, st, actor, argc - 1, argv + 1);
    if (strcmp(cmd, "list") == 0 && argc == (as_json ? 2 : 1))
        return cmd_list(st, as_json);
    if (argc < 2 || argc > 3 || (argc == 3 && !as_json))
        return usage(stderr);
    const char *id = argv[1];
    if (!id_valid(id)) {
        fprintf(stderr, "ferry-ingest: \"%s\" is not a rollout id (%d hex digits)\n", id,
                ROLLOUT_ID_LEN);
        return 2;
    }
    if (strcmp(cmd, "status") == 0)
        return cmd_status(st, id, as_json);
    if (strcmp(cmd, "compare") == 0)
        return cmd_compare(st, id, as_json);
    int op = rollout_op_parse(cmd);
    if (op < 0 || argc != 2)
        return usage(stderr);
    char why[256];
    if (rollout_command(st, id, (enum rollout_op)op, actor, why, sizeof(why)) != 0) {
        fprintf(stderr, "ferry-ingest: rollout %s %s: %s\n", cmd, id, why);
        return 1;
    }
    char action[32];
    snprintf(action, sizeof(action), "rollout.%s", cmd);
    audit(st, actor, action, id);
    struct rollout r;
    if (rollout_load(st, id, ferry_realtime_ns(), &r, NULL, why, sizeof(why)) == 0)
        printf("rollout %s: %s\n", id, rollout_state_name(r.state));
    return 0;
}
