/*
 * model.c - the rollout record and everything decided from it without I/O: the JSON form,
 * parsing of waves, gates and windows, wave membership, the device state machine, gates,
 * operator commands and which manifest a device is offered (rollout_int.h; docs/rollouts.md).
 *
 * Rollout states and the function behind each transition:
 *
 *   running --gates of the last wave pass (engine.c)------------------> completed
 *   running --gates of a wave pass: next wave starts (engine.c)--------> running
 *   running --a gate fails, on_fail pause (engine.c) | pause ----------> paused
 *   running|paused --a gate fails, on_fail abort (engine.c) | abort ---> aborted
 *   paused  --resume: the wave's soak starts again---------------------> running
 *   running|paused --promote: next wave now, gates skipped--------------> running | completed
 *   (operator commands: rollout_apply_op)
 *
 * Device states (rollout_dev_next), from the device's reported update state for the rollout's
 * version (rollout_dev_from_update):
 *
 *   pending --fetched the manifest--> offered --available/downloading/applying--> downloading
 *     --installed/trial--> installed --committed--> committed
 *   any non-final --rolled_back--> rolled_back;  --failed--> failed
 *   any non-final --wave deadline passed--> silent --a final state reported later--> it
 *
 * Invariants: a device never moves back to an earlier non-final state; a silent device never
 * counts as a success (install_success counts committed devices only).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/query/compare.h"
#include "cloud-ingest/rollout/rollout_int.h"
#include "common/util.h"

static const char *const state_names[ROLLOUT_STATE_COUNT] = {"running", "paused", "aborted",
                                                             "completed"};
static const char *const dev_names[RDEV_COUNT] = {"pending",   "offered",   "downloading",
                                                  "installed", "committed", "rolled_back",
                                                  "failed",    "silent"};
static const char *const op_names[] = {"pause", "resume", "abort", "promote"};
static const char *const gate_names[] = {"install_success", "rollback_ratio", "silent_ratio"};
static const char *const cmp_names[] = {">=", "<=", ">", "<"};

const char *rollout_state_name(enum rollout_state s)
{
    return (unsigned)s < ROLLOUT_STATE_COUNT ? state_names[s] : "?";
}

static int state_parse(const char *s)
{
    for (int i = 0; s != NULL && i < ROLLOUT_STATE_COUNT; i++)
        if (strcmp(s, state_names[i]) == 0)
            return i;
    return -1;
}

const char *rollout_dev_name(enum rollout_dev s)
{
    return (unsigned)s < RDEV_COUNT ? dev_names[s] : "?";
}

int rollout_dev_parse(const char *name)
{
    for (int i = 0; name != NULL && i < RDEV_COUNT; i++)
        if (strcmp(name, dev_names[i]) == 0)
            return i;
    return -1;
}

bool rollout_dev_final(enum rollout_dev s)
{
    return s == RDEV_COMMITTED || s == RDEV_ROLLED_BACK || s == RDEV_FAILED;
}

const char *rollout_op_name(enum rollout_op op)
{
    return (unsigned)op < 4 ? op_names[op] : "?";
}

int rollout_op_parse(const char *name)
{
    for (int i = 0; name != NULL && i < 4; i++)
        if (strcmp(name, op_names[i]) == 0)
            return i;
    return -1;
}

/* ---- Parsing what an operator gives ------------------------------------------------------- */

int rollout_parse_waves(const char *text, struct rollout *r, char *err, size_t err_len)
{
    r->n_waves = 0;
    const char *p = text;
    double prev_pct = 0, prev_count = 0;
    while (*p) {
        size_t n = strcspn(p, ",");
        char item[32];
        if (n == 0 || n >= sizeof(item)) {
            snprintf(err, err_len, "--waves: empty or too long item at column %zu",
                     (size_t)(p - text) + 1);
            return -1;
        }
        if (r->n_waves == ROLLOUT_WAVES_MAX) {
            snprintf(err, err_len, "--waves: at most %d waves", ROLLOUT_WAVES_MAX);
            return -1;
        }
        memcpy(item, p, n);
        item[n] = '\0';
        struct rollout_wave *w = &r->waves[r->n_waves];
        w->is_percent = item[n - 1] == '%';
        if (w->is_percent)
            item[n - 1] = '\0';
        char *end = NULL;
        errno = 0;
        double v = strtod(item, &end);
        if (errno != 0 || end == item || *end != '\0' || !(v > 0) || (w->is_percent && v > 100) ||
            (!w->is_percent && (v > 1e9 || v != floor(v)))) {
            snprintf(err, err_len,
                     "--waves: \"%s\" at column %zu is not a percentage in (0, 100] or a device "
                     "count",
                     item, (size_t)(p - text) + 1);
            return -1;
        }
        if ((w->is_percent && v <= prev_pct) || (!w->is_percent && v <= prev_count)) {
            snprintf(err, err_len,
                     "--waves: \"%s\" at column %zu does not grow (waves are cumulative)", item,
                     (size_t)(p - text) + 1);
            return -1;
        }
        if (w->is_percent)
            prev_pct = v;
        else
            prev_count = v;
        w->value = v;
        r->n_waves++;
        p += n;
        if (*p == ',')
            p++;
    }
    if (r->n_waves == 0) {
        snprintf(err, err_len, "--waves: no wave given");
        return -1;
    }
    return 0;
}

void rollout_wave_text(const struct rollout_wave *w, char *out, size_t out_len)
{
    if (w->is_percent)
        snprintf(out, out_len, "%g%%", w->value);
    else
        snprintf(out, out_len, "%.0f", w->value);
}

int rollout_parse_gate(const char *text, struct rollout_gate *g, char *err, size_t err_len)
{
    memset(g, 0, sizeof(*g));
    if (strlen(text) > ROLLOUT_GATE_TEXT_MAX) {
        snprintf(err, err_len, "--gate: longer than %d bytes", ROLLOUT_GATE_TEXT_MAX);
        return -1;
    }
    ferry_strlcpy(g->text, text, sizeof(g->text));
    char name[64], op[4], num[64], extra[2];
    int n = sscanf(text, " %63[a-z_.0-9] %3[<>=] %63s %1s", name, op, num, extra);
    int kind = -1;
    for (int i = 0; n >= 1 && i < 3; i++)
        if (strcmp(name, gate_names[i]) == 0)
            kind = i;
    if (kind < 0) {
        /* not a ratio gate: a metric gate (cloud-ingest/query/compare.h) or nothing */
        struct compare_gate *cg = NULL;
        char why[400];
        if (compare_gate_parse(text, &cg, why, sizeof(why)) != 0) {
            snprintf(err, err_len,
                     "--gate \"%s\": not install_success, rollback_ratio or silent_ratio, nor a "
                     "metric gate: %s",
                     text, why);
            return -1;
        }
        compare_gate_free(cg);
        g->kind = RGATE_METRIC;
        g->threshold = NAN;
        return 0;
    }
    int cmp = -1;
    for (int i = 0; n >= 2 && i < 4; i++)
        if (strcmp(op, cmp_names[i]) == 0)
            cmp = i;
    char *end = NULL;
    errno = 0;
    double v = n >= 3 ? strtod(num, &end) : NAN;
    if (n != 3 || cmp < 0 || errno != 0 || end == num || *end != '\0' || !(v >= 0 && v <= 1)) {
        snprintf(err, err_len,
                 "--gate \"%s\": expected \"%s OP RATIO\" with OP one of >= <= > < and RATIO in "
                 "[0, 1]",
                 text, gate_names[kind]);
        return -1;
    }
    g->kind = (enum rollout_gate_kind)kind;
    g->cmp = (enum rollout_cmp)cmp;
    g->threshold = v;
    return 0;
}

static int parse_hhmm(const char *s, size_t n, int *out)
{
    if (n != 5 || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) || s[2] != ':' ||
        !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
        return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 24 || m > 59 || (h == 24 && m != 0))
        return -1;
    *out = h * 60 + m;
    return 0;
}

int rollout_parse_window(const char *text, struct rollout *r, char *err, size_t err_len)
{
    const char *dash = strchr(text, '-');
    if (dash == NULL || parse_hhmm(text, (size_t)(dash - text), &r->window_start_min) != 0 ||
        parse_hhmm(dash + 1, strlen(dash + 1), &r->window_end_min) != 0 ||
        r->window_start_min == r->window_end_min) {
        snprintf(err, err_len, "--window \"%s\": expected HH:MM-HH:MM (device-local, start != end)",
                 text);
        return -1;
    }
    r->has_window = true;
    return 0;
}

bool rollout_window_open(const struct rollout *r, int local_min)
{
    if (!r->has_window)
        return true;
    int s = r->window_start_min % 1440, e = r->window_end_min % 1440;
    local_min = ((local_min % 1440) + 1440) % 1440;
    return s < e ? local_min >= s && local_min < e : local_min >= s || local_min < e;
}

int rollout_device_utc_offset_min(const char *versions_json)
{
    json_t *v = versions_json != NULL ? json_loads(versions_json, 0, NULL) : NULL;
    const char *s = json_string_value(json_object_get(v, "utc_offset"));
    int out = 0;
    if (s != NULL && (s[0] == '+' || s[0] == '-')) {
        int sign = s[0] == '-' ? -1 : 1;
        const char *p = s + 1;
        int digits[4], nd = 0;
        for (; *p && nd < 4; p++) {
            if (isdigit((unsigned char)*p))
                digits[nd++] = *p - '0';
            else if (*p != ':' || nd != 2)
                break;
        }
        if (*p == '\0' && nd == 4) {
            int h = digits[0] * 10 + digits[1], m = digits[2] * 10 + digits[3];
            if (h <= 14 && m <= 59)
                out = sign * (h * 60 + m);
        }
    }
    json_decref(v);
    return out;
}

/* ---- Wave membership ---------------------------------------------------------------------- */

uint64_t rollout_hash(const char *rollout_id, const char *device_id)
{
    /* the first 64 bits of BLAKE2b-128 */
    crypto_generichash_state st;
    uint8_t h[16]; /* libsodium's shortest BLAKE2b output (crypto_generichash_BYTES_MIN) */
    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, (const uint8_t *)rollout_id, strlen(rollout_id));
    crypto_generichash_update(&st, (const uint8_t *)"/", 1);
    crypto_generichash_update(&st, (const uint8_t *)device_id, strlen(device_id));
    crypto_generichash_final(&st, h, sizeof(h));
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | h[i];
    return v;
}

void rollout_wave_targets(const struct rollout *r, size_t n, size_t out[ROLLOUT_WAVES_MAX])
{
    size_t prev = 0;
    for (size_t k = 0; k < r->n_waves; k++) {
        const struct rollout_wave *w = &r->waves[k];
        double want = w->is_percent ? ceil(w->value * (double)n / 100.0 - 1e-9) : w->value;
        size_t t = want >= (double)n ? n : (size_t)want;
        size_t floor_t = prev + r->min_devices;
        if (t < floor_t)
            t = floor_t;
        if (t > n)
            t = n;
        if (k + 1 == r->n_waves && w->is_percent && w->value >= 100)
            t = n;
        out[k] = t;
        prev = t;
    }
}

struct ranked {
    uint64_t h;
    size_t i;
    const char *id;
};

static int ranked_cmp(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return strcmp(x->id, y->id); /* a tie of 64-bit hashes: the id decides, still stable */
}

int rollout_assign_waves(const struct rollout *r, const char *const *ids, size_t n,
                         uint8_t *wave_out)
{
    if (n == 0)
        return 0;
    struct ranked *v = malloc(n * sizeof(*v));
    if (v == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        v[i] = (struct ranked){rollout_hash(r->id, ids[i]), i, ids[i]};
    qsort(v, n, sizeof(*v), ranked_cmp);
    size_t targets[ROLLOUT_WAVES_MAX];
    rollout_wave_targets(r, n, targets);
    size_t k = 0;
    for (size_t rank = 0; rank < n; rank++) {
        while (k < r->n_waves && rank >= targets[k])
            k++;
        /* beyond the last wave's target (it is not 100%): in no wave */
        wave_out[v[rank].i] = k < r->n_waves ? (uint8_t)k : UINT8_MAX;
    }
    free(v);
    return 0;
}

/* ---- Device states ------------------------------------------------------------------------ */

enum rollout_dev rollout_dev_from_update(const char *state, const char *target_version,
                                         const char *running_version, const char *reason,
                                         const char *version)
{
    if (state == NULL)
        return RDEV_PENDING;
    bool ours = target_version != NULL && strcmp(target_version, version) == 0;
    if (strcmp(state, "committed") == 0 || strcmp(state, "idle") == 0)
        return running_version != NULL && strcmp(running_version, version) == 0 ? RDEV_COMMITTED
                                                                                : RDEV_PENDING;
    if (!ours)
        return RDEV_PENDING;
    if (strcmp(state, "available") == 0 || strcmp(state, "downloading") == 0 ||
        strcmp(state, "downloaded") == 0 || strcmp(state, "applying") == 0)
        return RDEV_DOWNLOADING;
    if (strcmp(state, "installed") == 0 || strcmp(state, "trial") == 0)
        return RDEV_INSTALLED;
    if (strcmp(state, "rolled_back") == 0)
        return RDEV_ROLLED_BACK;
    if (strcmp(state, "failed") == 0)
        /* a delta whose base did not match falls back to the full artifact: still going */
        return reason != NULL && strstr(reason, "fallback") != NULL ? RDEV_DOWNLOADING
                                                                    : RDEV_FAILED;
    return RDEV_PENDING;
}

enum rollout_dev rollout_dev_next(enum rollout_dev cur, enum rollout_dev reported, bool offered,
                                  bool deadline_passed)
{
    if (rollout_dev_final(reported))
        return reported;
    if (rollout_dev_final(cur) || cur == RDEV_SILENT)
        return cur;
    enum rollout_dev next = cur;
    if (offered && next < RDEV_OFFERED)
        next = RDEV_OFFERED;
    if (reported > next)
        next = reported;
    return deadline_passed ? RDEV_SILENT : next;
}

/* ---- Gates -------------------------------------------------------------------------------- */

static bool cmp_holds(enum rollout_cmp c, double v, double t)
{
    switch (c) {
    case RCMP_GE: return v >= t;
    case RCMP_LE: return v <= t;
    case RCMP_GT: return v > t;
    case RCMP_LT: return v < t;
    }
    return false;
}

bool rollout_gates_eval(const struct rollout *r, const uint64_t counts[RDEV_COUNT],
                        struct rollout_gate_result *results)
{
    uint64_t total = 0;
    for (int i = 0; i < RDEV_COUNT; i++)
        total += counts[i];
    bool all = true;
    for (size_t i = 0; i < r->n_gates; i++) {
        const struct rollout_gate *g = &r->gates[i];
        if (g->kind == RGATE_METRIC) {
            results[i] = (struct rollout_gate_result){NAN, NAN, true};
            continue;
        }
        uint64_t num = g->kind == RGATE_INSTALL_SUCCESS  ? counts[RDEV_COMMITTED]
                       : g->kind == RGATE_ROLLBACK_RATIO ? counts[RDEV_ROLLED_BACK]
                                                         : counts[RDEV_SILENT];
        double v = total > 0 ? (double)num / (double)total : NAN;
        results[i].value = v;
        results[i].threshold = g->threshold;
        results[i].pass = total == 0 || cmp_holds(g->cmp, v, g->threshold);
        all &= results[i].pass;
    }
    return all;
}

/* ---- Operator commands -------------------------------------------------------------------- */

static void start_wave(struct rollout *r, uint32_t k, int64_t now_ns)
{
    r->wave = k;
    r->wave_started_ns[k] = now_ns;
    r->soak_from_ns = now_ns;
}

int rollout_apply_op(struct rollout *r, enum rollout_op op, int64_t now_ns, char *why,
                     size_t why_len)
{
    bool live = r->state == ROLLOUT_RUNNING || r->state == ROLLOUT_PAUSED;
    switch (op) {
    case ROP_PAUSE:
        if (r->state != ROLLOUT_RUNNING)
            goto refused;
        r->state = ROLLOUT_PAUSED;
        snprintf(r->reason, sizeof(r->reason), "paused by an operator");
        break;
    case ROP_RESUME:
        if (r->state != ROLLOUT_PAUSED)
            goto refused;
        r->state = ROLLOUT_RUNNING;
        r->soak_from_ns = now_ns; /* the wave's gates are judged again after a fresh soak */
        snprintf(r->reason, sizeof(r->reason), "resumed by an operator");
        break;
    case ROP_ABORT:
        if (!live)
            goto refused;
        r->state = ROLLOUT_ABORTED;
        snprintf(r->reason, sizeof(r->reason), "aborted by an operator");
        break;
    case ROP_PROMOTE:
        if (!live)
            goto refused;
        r->state = ROLLOUT_RUNNING;
        if (r->wave + 1 < r->n_waves) {
            start_wave(r, r->wave + 1, now_ns);
            snprintf(r->reason, sizeof(r->reason), "promoted by an operator to wave %u",
                     r->wave + 1);
        } else {
            r->state = ROLLOUT_COMPLETED;
            r->completed_ns = now_ns;
            snprintf(r->reason, sizeof(r->reason), "promoted by an operator past its last wave");
        }
        break;
    default: goto refused;
    }
    r->updated_ns = now_ns;
    return 0;
refused:
    snprintf(why, why_len, "cannot %s a rollout that is %s", rollout_op_name(op),
             rollout_state_name(r->state));
    return -1;
}

/* ---- Offers ------------------------------------------------------------------------------- */

enum rollout_offer rollout_offer_decide(const struct rollout *r, bool member, bool offered,
                                        bool selected, bool window_open, bool installed)
{
    switch (r->state) {
    case ROLLOUT_RUNNING:
        /* The window gates the start of an update; a device that already has the manifest keeps
         * it (offering the old one mid-download would look like a new release to it). */
        return member && (offered || window_open) ? ROFFER_RELEASE : ROFFER_NONE;
    case ROLLOUT_PAUSED: return member && offered ? ROFFER_RELEASE : ROFFER_NONE;
    case ROLLOUT_ABORTED: return member && r->has_rollback ? ROFFER_ROLLBACK : ROFFER_NONE;
    case ROLLOUT_COMPLETED:
        if (r->selector[0] != '\0')
            return selected ? ROFFER_RELEASE : ROFFER_NONE;
        /* the release becomes the class's current manifest; until the evaluator installed it,
         * the rollout offers it to every device of the class itself */
        return !installed && selected ? ROFFER_RELEASE : ROFFER_NONE;
    }
    return ROFFER_NONE;
}

/* ---- JSON --------------------------------------------------------------------------------- */

/* A number, or null for NAN (not a JSON number). */
static json_t *num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static double num_or_nan(const json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : NAN;
}

json_t *rollout_to_json_obj(const struct rollout *r)
{
    json_t *o = json_object(), *waves = json_array(), *gates = json_array(),
           *started = json_array(), *arts = json_array(), *rarts = json_array(),
           *results = json_array();
    if (o == NULL || waves == NULL || gates == NULL || started == NULL || arts == NULL ||
        rarts == NULL || results == NULL)
        goto fail;
    for (size_t k = 0; k < r->n_waves; k++) {
        char t[32];
        rollout_wave_text(&r->waves[k], t, sizeof(t));
        json_array_append_new(waves, json_string(t));
        json_array_append_new(started, json_integer(k <= r->wave ? r->wave_started_ns[k] : 0));
        json_t *res = json_array();
        for (size_t g = 0; r->decided[k] && res != NULL && g < r->n_gates; g++) {
            const struct rollout_gate_result *gr = &r->results[k][g];
            json_array_append_new(res, json_pack("{s:o, s:o, s:b}", "value", num_or_null(gr->value),
                                                 "threshold", num_or_null(gr->threshold), "pass",
                                                 gr->pass));
        }
        json_array_append_new(results, r->decided[k] ? res : json_null());
        if (!r->decided[k])
            json_decref(res);
    }
    for (size_t g = 0; g < r->n_gates; g++)
        json_array_append_new(gates, json_string(r->gates[g].text));
    for (size_t i = 0; i < r->n_artifacts; i++)
        json_array_append_new(arts, json_string(r->artifacts[i]));
    for (size_t i = 0; i < r->n_rollback_artifacts; i++)
        json_array_append_new(rarts, json_string(r->rollback_artifacts[i]));
    char window[48] = "";
    if (r->has_window)
        snprintf(window, sizeof(window), "%02d:%02d-%02d:%02d", r->window_start_min / 60,
                 r->window_start_min % 60, r->window_end_min / 60, r->window_end_min % 60);
    /* every string here passed a check of its form (ids, manifest names, parsed texts) except
     * the name, the selector and the reason, which json_string refuses when not UTF-8: those go
     * through json_stringn of checked text in the CLI */
    int e =
        json_object_set_new(o, "id", json_string(r->id)) |
        json_object_set_new(o, "name", json_string(r->name)) |
        json_object_set_new(o, "created_ns", json_integer(r->created_ns)) |
        json_object_set_new(o, "device_class", json_string(r->device_class)) |
        json_object_set_new(o, "component", json_string(r->component)) |
        json_object_set_new(o, "version", json_string(r->version)) |
        json_object_set_new(o, "serial", json_integer((json_int_t)r->serial)) |
        json_object_set_new(o, "has_rollback", json_boolean(r->has_rollback)) |
        json_object_set_new(o, "rollback_version", json_string(r->rollback_version)) |
        json_object_set_new(o, "rollback_serial", json_integer((json_int_t)r->rollback_serial)) |
        json_object_set_new(o, "artifacts", arts) |
        json_object_set_new(o, "rollback_artifacts", rarts) |
        json_object_set_new(o, "selector", json_string(r->selector)) |
        json_object_set_new(o, "waves", waves) |
        json_object_set_new(o, "min_devices", json_integer(r->min_devices)) |
        json_object_set_new(o, "soak_ns", json_integer(r->soak_ns)) |
        json_object_set_new(o, "deadline_ns", json_integer(r->deadline_ns)) |
        json_object_set_new(o, "gates", gates) |
        json_object_set_new(o, "on_fail", json_string(r->abort_on_fail ? "abort" : "pause")) |
        json_object_set_new(o, "window", r->has_window ? json_string(window) : json_null()) |
        json_object_set_new(o, "state", json_string(rollout_state_name(r->state))) |
        json_object_set_new(o, "wave", json_integer(r->wave)) |
        json_object_set_new(o, "wave_started_ns", started) |
        json_object_set_new(o, "soak_from_ns", json_integer(r->soak_from_ns)) |
        json_object_set_new(o, "updated_ns", json_integer(r->updated_ns)) |
        json_object_set_new(o, "completed_ns", json_integer(r->completed_ns)) |
        json_object_set_new(o, "reason", json_string(r->reason)) |
        json_object_set_new(o, "gate_results", results);
    if (e != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
fail:
    json_decref(o);
    json_decref(waves);
    json_decref(gates);
    json_decref(started);
    json_decref(arts);
    json_decref(rarts);
    json_decref(results);
    return NULL;
}

char *rollout_to_json(const struct rollout *r)
{
    json_t *o = rollout_to_json_obj(r);
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

static int copy_str(json_t *o, const char *key, char *out, size_t out_len, bool required)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL)
        return required ? -1 : 0;
    if (strlen(s) >= out_len)
        return -1;
    ferry_strlcpy(out, s, out_len);
    return 0;
}

static int copy_hexes(json_t *a, char (*out)[65], size_t *n)
{
    *n = 0;
    if (!json_is_array(a) || json_array_size(a) > ROLLOUT_ARTIFACTS_MAX)
        return -1;
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (s == NULL || strlen(s) != 64)
            return -1;
        memcpy(out[i], s, 65);
        (*n)++;
    }
    return 0;
}

int rollout_from_json(const void *text, size_t len, struct rollout *r, char *err, size_t err_len)
{
    memset(r, 0, sizeof(*r));
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    const char *what = "not a JSON object";
    if (!json_is_object(o))
        goto bad;
    what = "a string field";
    if (copy_str(o, "id", r->id, sizeof(r->id), true) != 0 ||
        copy_str(o, "name", r->name, sizeof(r->name), false) != 0 ||
        copy_str(o, "device_class", r->device_class, sizeof(r->device_class), true) != 0 ||
        copy_str(o, "component", r->component, sizeof(r->component), true) != 0 ||
        copy_str(o, "version", r->version, sizeof(r->version), true) != 0 ||
        copy_str(o, "rollback_version", r->rollback_version, sizeof(r->rollback_version), false) !=
            0 ||
        copy_str(o, "selector", r->selector, sizeof(r->selector), false) != 0 ||
        copy_str(o, "reason", r->reason, sizeof(r->reason), false) != 0)
        goto bad;
    r->created_ns = json_integer_value(json_object_get(o, "created_ns"));
    r->serial = (uint64_t)json_integer_value(json_object_get(o, "serial"));
    r->has_rollback = json_is_true(json_object_get(o, "has_rollback"));
    r->rollback_serial = (uint64_t)json_integer_value(json_object_get(o, "rollback_serial"));
    what = "artifacts";
    if (copy_hexes(json_object_get(o, "artifacts"), r->artifacts, &r->n_artifacts) != 0 ||
        copy_hexes(json_object_get(o, "rollback_artifacts"), r->rollback_artifacts,
                   &r->n_rollback_artifacts) != 0)
        goto bad;
    what = "waves";
    json_t *waves = json_object_get(o, "waves");
    if (!json_is_array(waves) || json_array_size(waves) == 0 ||
        json_array_size(waves) > ROLLOUT_WAVES_MAX)
        goto bad;
    char wtext[ROLLOUT_WAVES_MAX * 24] = "";
    size_t wl = 0;
    for (size_t k = 0; k < json_array_size(waves); k++) {
        const char *s = json_string_value(json_array_get(waves, k));
        if (s == NULL || strlen(s) > 20)
            goto bad;
        wl += (size_t)snprintf(wtext + wl, sizeof(wtext) - wl, "%s%s", k ? "," : "", s);
    }
    char perr[160];
    if (rollout_parse_waves(wtext, r, perr, sizeof(perr)) != 0)
        goto bad;
    r->min_devices = (uint32_t)json_integer_value(json_object_get(o, "min_devices"));
    r->soak_ns = json_integer_value(json_object_get(o, "soak_ns"));
    r->deadline_ns = json_integer_value(json_object_get(o, "deadline_ns"));
    what = "gates";
    json_t *gates = json_object_get(o, "gates");
    if (!json_is_array(gates) || json_array_size(gates) > ROLLOUT_GATES_MAX)
        goto bad;
    for (size_t g = 0; g < json_array_size(gates); g++) {
        const char *s = json_string_value(json_array_get(gates, g));
        if (s == NULL || rollout_parse_gate(s, &r->gates[g], perr, sizeof(perr)) != 0)
            goto bad;
        r->n_gates++;
    }
    const char *of = json_string_value(json_object_get(o, "on_fail"));
    r->abort_on_fail = of != NULL && strcmp(of, "abort") == 0;
    what = "window";
    const char *win = json_string_value(json_object_get(o, "window"));
    if (win != NULL && rollout_parse_window(win, r, perr, sizeof(perr)) != 0)
        goto bad;
    what = "state";
    int st = state_parse(json_string_value(json_object_get(o, "state")));
    json_int_t wave = json_integer_value(json_object_get(o, "wave"));
    if (st < 0 || wave < 0 || (size_t)wave >= r->n_waves)
        goto bad;
    r->state = (enum rollout_state)st;
    r->wave = (uint32_t)wave;
    json_t *started = json_object_get(o, "wave_started_ns");
    for (size_t k = 0; k < r->n_waves; k++)
        r->wave_started_ns[k] = json_integer_value(json_array_get(started, k));
    r->soak_from_ns = json_integer_value(json_object_get(o, "soak_from_ns"));
    r->updated_ns = json_integer_value(json_object_get(o, "updated_ns"));
    r->completed_ns = json_integer_value(json_object_get(o, "completed_ns"));
    json_t *results = json_object_get(o, "gate_results");
    for (size_t k = 0; k < r->n_waves; k++) {
        json_t *res = json_array_get(results, k);
        if (!json_is_array(res) || json_array_size(res) != r->n_gates)
            continue;
        r->decided[k] = true;
        for (size_t g = 0; g < r->n_gates; g++) {
            json_t *x = json_array_get(res, g);
            r->results[k][g].value = num_or_nan(json_object_get(x, "value"));
            r->results[k][g].threshold = num_or_nan(json_object_get(x, "threshold"));
            r->results[k][g].pass = json_is_true(json_object_get(x, "pass"));
        }
    }
    json_decref(o);
    return 0;
bad:
    snprintf(err, err_len, "rollout record: bad %s%s%s", what, o == NULL ? ": " : "",
             o == NULL ? je.text : "");
    json_decref(o);
    return -1;
}
