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

struct ingest_config;
struct ingest_store;
struct ingest_router;
struct ingest_release_offerer;
struct ferry_buf;
struct rollouts;

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

/* Prints an API answer (text[len], JSON) of `cmd` ("list", "status", "compare", or an operator
 * command) as the local command prints it: the `--url` form of `rollout` (cloud-ingest/admin.c).
 * Returns 0, or -1 when the text is not such a document. */
int rollout_print_doc(const char *cmd, const void *text, size_t len, bool as_json);

#endif
