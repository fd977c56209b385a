/*
 * rollout.h - canary rollouts in ferry-ingest: a signed release goes out to the devices of a
 * class (and a selector) in waves chosen by a stable hash of the device id; gates on what the
 * devices report decide after each wave's soak whether the next wave starts, the rollout pauses
 * or it aborts (devices of started waves then get a signed rollback release). docs/rollouts.md.
 *
 * Parts:
 *   model.c   the rollout record and its JSON, wave membership, the device state machine, gates,
 *             operator commands, and which manifest a device is offered: pure functions, what the
 *             unit tests drive.
 *   engine.c  the evaluator: a thread that, every second and soon after a commit of this
 *             process, reads every running rollout from the store, moves device states from the
 *             devices' reported update states, decides gates and waves, and commits each
 *             rollout's changes in ONE store transaction. Only the holder of the store lease
 *             "rollouts" evaluates (several ingests on one PostgreSQL).
 *   serve.c   the offerer the release handlers call (release.h, struct ingest_release_offerer).
 *   cli.c     `ferry-ingest rollout ...`; api.c: /v1/rollouts.
 *
 * Store keys (the ingest's key/value table, store.h):
 *   rollout/<id>              the rollout record (JSON): written by `create`, then only by the
 *                             evaluator
 *   rolldev/<id>/<device>     a device of a started wave: its wave and state (evaluator only)
 *   rolloffer/<id>/<device>   the device fetched the rollout's manifest (manifest handler)
 *   rollop/<id>/<time>-<rand> an operator command not yet applied by the evaluator (CLI, API)
 *   rollidx/<class>/<component>  the newest rollout of a class and component (create)
 * Each key has one writer, so no transaction has to compare-and-swap: operator commands are
 * appended and the evaluator applies them and deletes them in the transaction that stores their
 * effect; readers (status, serving) apply the pending ones themselves, so a command takes effect
 * at once for every reader, with or without a running evaluator.
 */
#ifndef FERRY_INGEST_ROLLOUT_H
#define FERRY_INGEST_ROLLOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct ingest_config;
struct ingest_store;
struct ingest_router;
struct ingest_release_offerer;
struct ferry_buf;
struct rollouts;
struct rollout;
struct manifest;

/* Creates the evaluator (thread not started). `cfg` and `store` are borrowed until rollouts_free;
 * `owner` names this process for the store lease (host:pid). Returns 0 or -1 with err. */
int rollouts_new(const struct ingest_config *cfg, struct ingest_store *store, const char *owner,
                 struct rollouts **out, char *err, size_t err_len)
    __attribute__((warn_unused_result));
/* Starts the evaluation thread. Returns 0 or -1. */
int rollouts_start(struct rollouts *r) __attribute__((warn_unused_result));
/* Tells the evaluator that this process committed records (any thread, cheap): the next round
 * starts within 50 ms. NULL is allowed. */
void rollouts_committed(struct rollouts *r);
/* Stops the thread and frees. NULL is allowed. */
void rollouts_free(struct rollouts *r);
/* One evaluation round now on the calling thread (tests): every rollout at `now_ns`. Returns 0
 * or a store error. */
int rollouts_eval_once(struct rollouts *r, int64_t now_ns) __attribute__((warn_unused_result));
/* The offerer to install in ingest_ctx.offerer (valid until rollouts_free). */
const struct ingest_release_offerer *rollouts_offerer(struct rollouts *r);
/* Registers GET /v1/rollouts, GET /v1/rollouts/{id}, GET /v1/rollouts/{id}/compare (viewer) and
 * POST /v1/rollouts/{id}/pause|resume|abort|promote (operator). */
int rollouts_register(struct ingest_router *router, struct rollouts *r)
    __attribute__((warn_unused_result));
/* Appends the Prometheus lines (ferry_rollouts{state=...}) to `out`. */
int rollouts_expose(struct ingest_store *store, struct ferry_buf *out)
    __attribute__((warn_unused_result));
/* `ferry-ingest rollout ...` (argv starts after "rollout"); `actor` names the operator for the
 * audit log ("cli:USER"). Returns the process exit status. */
int rollout_cli_main(const struct ingest_config *cfg, struct ingest_store *store, const char *actor,
                     int argc, char **argv);

/*
 * Creating a rollout, from the CLI (`rollout create`, on the ingest's host) or the API
 * (POST /v1/rollouts, operator; api.c). The settings as the operator wrote them (strings
 * borrowed from argv or a JSON body; NULL window/name/rollback: none):
 */
#define ROLLOUT_SOURCES_MAX 64
struct rollout_create_args {
    const char *manifest, *rollback, *selector, *waves, *on_fail, *window, *name;
    const char *soak, *deadline, *min_devices;
    const char *gates[16]; /* ROLLOUT_GATES_MAX */
    size_t n_gates;
};
/* The defaults of `rollout create` (waves 1%,10%,50%,100%, soak 10m, deadline 30m, ...). */
void rollout_create_args_defaults(struct rollout_create_args *a);
/* The verified release(s) of a new rollout: the manifest and its envelope bytes, the optional
 * rollback release, and where the artifacts come from: files and directories (CLI), or none
 * (they must be stored already: PUT /v1/artifacts). Owned: rollout_create_release_free. */
struct rollout_create_release {
    struct manifest *m, *rb;
    uint8_t *data, *rdata;
    size_t len, rlen;
    char *sources[ROLLOUT_SOURCES_MAX]; /* borrowed */
    int n_sources;
};
void rollout_create_release_free(struct rollout_create_release *rel);
/* Fills the record's settings from `a` (waves, window, selector, gates, min devices, soak,
 * deadline, on-fail, name). Returns 0, or -1 with err naming the setting. */
int rollout_create_settings(const struct rollout_create_args *a, struct rollout *r, char *err,
                            size_t err_len) __attribute__((warn_unused_result));
/* Creates the rollout `r` (settings filled) of `rel`: checks the rollback release, the serial
 * against the published one and the previous rollout of the class and component, stores (CLI)
 * or checks (API) the artifacts, writes the manifests and the record. Returns 0 with r->id,
 * -1 refused (err says why: the caller's 400), -3 refused because the published serial or a
 * running, paused or aborted rollout is in the way (409), -2 the store or the disk failed. Not
 * audited: the caller writes "rollout.create" with rollout_create_audit_target. */
int rollout_create_verified(const struct ingest_config *cfg, struct ingest_store *st,
                            struct rollout *r, struct rollout_create_release *rel, char *err,
                            size_t err_len) __attribute__((warn_unused_result));
void rollout_create_audit_target(const struct rollout *r, char *out, size_t out_len);
/* For `--url ... rollout create` (admin.c): parses the same arguments as the local command,
 * verifies the manifests with the --pub keys, and returns *rel (whose artifacts the caller
 * uploads from rel->sources) and the JSON body of POST /v1/rollouts in *body (free). Returns
 * 0, or the exit status (2: usage, 1: failed) with the reason printed. */
int rollout_create_remote_prepare(int argc, char **argv, struct rollout_create_release *rel,
                                  char **body);
/* Parses a POST /v1/rollouts body (JSON object; see docs/rollouts.md) into `a`, whose strings
 * point into *root (json_decref it after use). Unknown members, wrong types and a body that is
 * not an object are refused. Returns 0, or -1 with err. */
int rollout_create_args_from_json(const char *body, size_t len, struct rollout_create_args *a,
                                  json_t **root, char *err, size_t err_len);

/* Prints an API answer (text[len], JSON) of `cmd` ("list", "status", "compare", or an operator
 * command) as the local command prints it: the `--url` form of `rollout` (cloud-ingest/admin.c).
 * Returns 0, or -1 when the text is not such a document. */
int rollout_print_doc(const char *cmd, const void *text, size_t len, bool as_json);

#endif
