/*
 * rollout_int.h - internal to cloud-ingest/rollout/: the rollout record, device states, gates
 * and the pure functions over them (model.c), and the store helpers shared by the evaluator, the
 * offerer, the CLI and the API (store.c).
 */
#ifndef FERRY_INGEST_ROLLOUT_INT_H
#define FERRY_INGEST_ROLLOUT_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cloud-ingest/release/release.h"

#include "cloud-ingest/store.h"

struct ingest_config;

#define ROLLOUT_ID_LEN 12 /* hex digits of a rollout id */
#define ROLLOUT_WAVES_MAX 16
#define ROLLOUT_GATES_MAX 16
#define ROLLOUT_GATE_TEXT_MAX 160
#define ROLLOUT_SELECTOR_MAX 4096 /* INGEST_SELECTOR_TEXT_MAX */
#define ROLLOUT_NAME_MAX 64
#define ROLLOUT_STR_MAX 64 /* component, version (manifest strings) */
#define ROLLOUT_ARTIFACTS_MAX 16
#define ROLLOUT_REASON_MAX 256
#define ROLLOUT_LEASE "rollouts"

enum rollout_state {
    ROLLOUT_RUNNING = 0,
    ROLLOUT_PAUSED = 1,
    ROLLOUT_ABORTED = 2,
    ROLLOUT_COMPLETED = 3,
};
#define ROLLOUT_STATE_COUNT 4
const char *rollout_state_name(enum rollout_state s);

/* A device's state in a rollout. Order matters: a device only moves forward through
 * PENDING..INSTALLED; COMMITTED, ROLLED_BACK and FAILED are final; SILENT (no final state by the
 * wave's deadline) is replaced only by a final state reported later. */
enum rollout_dev {
    RDEV_PENDING = 0,
    RDEV_OFFERED = 1,
    RDEV_DOWNLOADING = 2,
    RDEV_INSTALLED = 3,
    RDEV_COMMITTED = 4,
    RDEV_ROLLED_BACK = 5,
    RDEV_FAILED = 6,
    RDEV_SILENT = 7,
};
#define RDEV_COUNT 8
const char *rollout_dev_name(enum rollout_dev s);
int rollout_dev_parse(const char *name);    /* -1 when unknown */
bool rollout_dev_final(enum rollout_dev s); /* committed, rolled_back, failed */

enum rollout_gate_kind {
    RGATE_INSTALL_SUCCESS = 0, /* committed / devices of the wave */
    RGATE_ROLLBACK_RATIO = 1,  /* rolled_back / devices */
    RGATE_SILENT_RATIO = 2,    /* silent / devices */
    RGATE_METRIC = 3,          /* a metric gate of cloud-ingest/query/compare.h (engine.c) */
};

enum rollout_cmp { RCMP_GE = 0, RCMP_LE, RCMP_GT, RCMP_LT };

struct rollout_gate {
    enum rollout_gate_kind kind;
    enum rollout_cmp cmp;
    double threshold;
    char text[ROLLOUT_GATE_TEXT_MAX + 1]; /* as given */
};

/* A gate's outcome for one wave. */
struct rollout_gate_result {
    double value;
    double threshold;
    bool pass;
};

struct rollout_wave {
    bool is_percent; /* cumulative share of the eligible devices, else a cumulative count */
    double value;
};

struct rollout {
    char id[ROLLOUT_ID_LEN + 1];
    char name[ROLLOUT_NAME_MAX + 1];
    int64_t created_ns;
    char device_class[INGEST_NAME_MAX + 1];
    char component[ROLLOUT_STR_MAX + 1];
    char version[ROLLOUT_STR_MAX + 1];
    uint64_t serial;
    bool has_rollback;
    char rollback_version[ROLLOUT_STR_MAX + 1];
    uint64_t rollback_serial;
    /* artifacts each manifest names (a device may download only these): SHA-256 in hex */
    size_t n_artifacts, n_rollback_artifacts;
    char artifacts[ROLLOUT_ARTIFACTS_MAX][65];
    char rollback_artifacts[ROLLOUT_ARTIFACTS_MAX][65];
    char selector[ROLLOUT_SELECTOR_MAX + 1];
    size_t n_waves;
    struct rollout_wave waves[ROLLOUT_WAVES_MAX];
    uint32_t min_devices;
    int64_t soak_ns, deadline_ns;
    size_t n_gates;
    struct rollout_gate gates[ROLLOUT_GATES_MAX];
    bool abort_on_fail; /* --on-fail abort (else pause) */
    bool has_window;
    int window_start_min, window_end_min; /* device-local minutes of the day, [start, end) */
    /* state */
    enum rollout_state state;
    uint32_t wave; /* the current (latest started) wave */
    int64_t wave_started_ns[ROLLOUT_WAVES_MAX];
    int64_t soak_from_ns; /* the current wave's soak counts from here (wave start or resume) */
    int64_t updated_ns;
    int64_t completed_ns;
    char reason[ROLLOUT_REASON_MAX + 1]; /* why the last state change happened */
    /* gate outcomes per wave, once decided */
    bool decided[ROLLOUT_WAVES_MAX];
    struct rollout_gate_result results[ROLLOUT_WAVES_MAX][ROLLOUT_GATES_MAX];
};

/* ---- model.c ---------------------------------------------------------------------------------
 */

/* The record as JSON (compact text, caller frees) and back. from_json returns 0 or -1 with err. */
char *rollout_to_json(const struct rollout *r);
json_t *rollout_to_json_obj(const struct rollout *r);
int rollout_from_json(const void *text, size_t len, struct rollout *r, char *err, size_t err_len);

/* "--waves 1%,10%,50%,100%" (cumulative; a number without % is a cumulative device count).
 * Returns 0 or -1 with err. */
int rollout_parse_waves(const char *text, struct rollout *r, char *err, size_t err_len);
/* One --gate: "install_success >= 0.95", "rollback_ratio <= 0.05", "silent_ratio <= 0.2", or a
 * metric gate of compare_gate_parse ("inference.fps p50 >= 0.97 x baseline", "error_logs <= 2 x
 * baseline"; checked here, evaluated by the evaluator). Returns 0 or -1 with err. */
int rollout_parse_gate(const char *text, struct rollout_gate *g, char *err, size_t err_len);
/* "02:00-05:00" (device-local; start > end wraps midnight). Returns 0 or -1. */
int rollout_parse_window(const char *text, struct rollout *r, char *err, size_t err_len);
/* The wave text for output ("10%", "25"). */
void rollout_wave_text(const struct rollout_wave *w, char *out, size_t out_len);

/* The stable hash that orders devices within a rollout: the first 64 bits of BLAKE2b-128 of
 * "<rollout id>/<device>". */
uint64_t rollout_hash(const char *rollout_id, const char *device_id);
/* Cumulative device counts of the waves for `n` eligible devices: ceil of each percentage, at
 * least min_devices more than the previous wave (while devices remain), never above n; a last
 * wave of 100% is n. */
void rollout_wave_targets(const struct rollout *r, size_t n, size_t out[ROLLOUT_WAVES_MAX]);
/* The wave of each of `n` eligible devices: devices ranked by rollout_hash, rank i in the first
 * wave whose cumulative target exceeds i. The result does not depend on the order of `ids`.
 * Returns 0 or -1 (out of memory). */
int rollout_assign_waves(const struct rollout *r, const char *const *ids, size_t n,
                         uint8_t *wave_out);

/* What a device's reported update state (store.h, ingest_store_device_updates: one component's
 * entry) means for a rollout of `version`: RDEV_PENDING when the entry is about another version. */
enum rollout_dev rollout_dev_from_update(const char *state, const char *target_version,
                                         const char *running_version, const char *reason,
                                         const char *version);
/* The next state of a device in `cur` given what its update state says (`reported`), whether
 * it fetched the manifest (`offered`) and whether its wave's deadline has passed. */
enum rollout_dev rollout_dev_next(enum rollout_dev cur, enum rollout_dev reported, bool offered,
                                  bool deadline_passed);

/* Evaluates the ratio gates over the counts of one wave's devices. Returns true when all pass;
 * results[i] for gate i. A wave with no device passes (there is nothing to judge). Metric gates
 * are left to the evaluator: value and threshold NAN, pass true here. */
bool rollout_gates_eval(const struct rollout *r, const uint64_t counts[RDEV_COUNT],
                        struct rollout_gate_result *results);

enum rollout_op {
    ROP_PAUSE = 0,
    ROP_RESUME = 1,
    ROP_ABORT = 2,
    ROP_PROMOTE = 3,
};
const char *rollout_op_name(enum rollout_op op);
int rollout_op_parse(const char *name); /* -1 when unknown */
/* Applies an operator command at now_ns. Returns 0, or -1 with why when the command does not
 * apply in the rollout's state (pause of a paused rollout...): the rollout is then unchanged.
 * promote starts the next wave now without its gates (on the last wave: completes). */
int rollout_apply_op(struct rollout *r, enum rollout_op op, int64_t now_ns, char *why,
                     size_t why_len);

/* Whether minute-of-day `local_min` is inside the rollout's window (true without a window). */
bool rollout_window_open(const struct rollout *r, int local_min);
/* The device's UTC offset in minutes from its versions object's "utc_offset" ("+02:00",
 * "-0530", "Z"); 0 (UTC) when absent or malformed. */
int rollout_device_utc_offset_min(const char *versions_json);

enum rollout_offer {
    ROFFER_NONE = 0,     /* the class's current manifest */
    ROFFER_RELEASE = 1,  /* the rollout's manifest */
    ROFFER_ROLLBACK = 2, /* the rollout's rollback manifest */
};
/* Which manifest a device is offered: `member` (in a started wave), `offered` (fetched the
 * rollout's manifest before), `selected` (matches class and selector), `window_open` (its local
 * time is in the window), `installed` (the release is already the class's current manifest). */
enum rollout_offer rollout_offer_decide(const struct rollout *r, bool member, bool offered,
                                        bool selected, bool window_open, bool installed);

/* ---- store.c: the keys and their reads ------------------------------------------------------
 */

/* Reads rollout/<id> and applies the pending operator commands (rollop/<id>/...) in key order.
 * When `ops_keys` is not NULL it receives the keys of the commands (a JSON array of strings,
 * caller decrefs). Returns 0, ENOTFOUND, EIO or EINVAL (unreadable record, err says why). */
int rollout_load(struct ingest_store *st, const char *id, int64_t now_ns, struct rollout *r,
                 json_t **ops_keys, char *err, size_t err_len);
/* Appends an operator command (after checking it applies to the rollout as it is now).
 * Returns 0, or -1 with why. */
int rollout_command(struct ingest_store *st, const char *id, enum rollout_op op, const char *actor,
                    char *why, size_t why_len);
/* The ids of all rollouts (JSON array of strings, newest first by creation). */
int rollout_list_ids(struct ingest_store *st, json_t **out);
/* The device table of a rollout: object device -> {"w": wave, "s": state name, "t": since}. */
int rollout_load_devices(struct ingest_store *st, const char *id, json_t **out);
/* The devices that fetched the manifest: object device -> time. */
int rollout_load_offers(struct ingest_store *st, const char *id, json_t **out);
/* The before/after/control comparison of a rollout (rollout compare, GET /v1/rollouts/{id}/
 * compare): for every metric of its metric gates, error_logs and the default metrics of
 * compare.h, over the devices of its started waves (updated: from their commit) and up to
 * ROLLOUT_CONTROL_MAX eligible devices outside them (control). */
int rollout_compare_json(struct ingest_store *st, const char *id, int64_t now_ns, json_t **out,
                         char *err, size_t err_len);
#define ROLLOUT_CONTROL_MAX 500
struct compare_device;
/* The devices of a comparison (gates.c): members of wave `wave` (-1: every started wave) that
 * committed the release, switched at their commit ("c" of their entry); then up to
 * ROLLOUT_CONTROL_MAX eligible devices in no started wave (switched 0). Free with
 * rollout_devlist_free. */
int rollout_compare_devices(struct ingest_store *st, const struct rollout *r, json_t *members,
                            int wave, struct compare_device **out, size_t *n);
void rollout_devlist_free(struct compare_device *v, size_t n);
/* Evaluates metric gate `g` over `devs`: 0 with *res, or -1 with err when it cannot decide yet
 * (too few samples: compare_gate_eval) or the comparison failed. */
int rollout_metric_gate(struct ingest_store *st, const struct rollout *r,
                        const struct rollout_gate *g, const struct compare_device *devs, size_t n,
                        int64_t now_ns, struct rollout_gate_result *res, char *err, size_t err_len);
/* The comparison's window: the soak (at least a minute) before and after each device's switch. */
int64_t rollout_compare_window_ns(const struct rollout *r);
/* The status document of a rollout (status --json, GET /v1/rollouts/{id}). */
int rollout_status_json(struct ingest_store *st, const char *id, int64_t now_ns, json_t **out,
                        char *err, size_t err_len);
/* The releases directory file of a rollout's manifest ("manifest.json" / "rollback.json"). */
int rollout_manifest_path(const struct ingest_config *cfg, const char *id, bool rollback, char *out,
                          size_t out_len);

/* Selectors (cloud-ingest/selector.h): checks an operator's text (valid UTF-8 that parses;
 * 0 or -1 with err naming the term and column), and matches a stored one against a device (the
 * evaluator parses once per round instead). The empty selector matches every device. */
int rollout_selector_check(const char *text, char *err, size_t err_len);
bool rollout_selector_match(const char *text, const struct ingest_device *dev);

/* ---- The evaluator object (engine.c; serve.c and api.c borrow its store and config) ------- */

struct rollouts {
    const struct ingest_config *cfg;
    struct ingest_store *store;
    char owner[256];
    struct ingest_release_offerer offerer; /* serve.c */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping, started, committed;
};

/* serve.c: fills r->offerer. */
void rollout_offerer_init(struct rollouts *r);
/* Reads the rollidx/<class>/<component> entry: the newest rollout of a class and component.
 * Returns 0 with id, ENOTFOUND or a store error. */
int rollout_index_get(struct ingest_store *st, const char *device_class, const char *component,
                      char id[ROLLOUT_ID_LEN + 1]);

#endif
