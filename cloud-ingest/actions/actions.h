/*
 * actions.h - the ingest's queue of signed device actions (docs/actions.md).
 *
 * An operator signs an action on their own machine with an operator action key (transport/
 * action.h; `ferry-ingest action keygen|send`): the ingest never holds that key and cannot make or
 * change an action, it only keeps envelopes in order and hands each to its device. It checks an
 * envelope's form and that its device is known before it queues it.
 *
 * Store entries (the store's kv table, one transaction per change):
 *   action.pending/<device>/<queued_ns: 20 digits>/<id>
 *                                 the envelope, while no result came back (in queue order)
 *   action/<id>                   {"id","device","kind","args","created","expires","queued_ns",
 *                                  "by","state":"pending"|"done", "pending_key" while pending, and
 * when done "status", "exit_code","output","reason","result_ns"} A device fetches its pending
 * envelopes with GET /v1/devices/{id}/actions (device-signed); its "action.result" event, stored
 * with its batch, moves the action to "done" and drops the pending entry (actions_take_results,
 * called after the batch's durable commit, idempotent: a batch sent again changes nothing).
 *
 * HTTP: GET /v1/devices/{id}/actions (device)  {"actions":["<envelope>",...]} (oldest first, at
 *       most ACTIONS_DELIVER_MAX)
 *       POST /v1/devices/{id}/actions (operator) body: one envelope -> {"id": "..."}
 *       GET /v1/actions[?device=ID&state=pending|done] (viewer) -> [ {...}, ... ]
 */
#ifndef FERRY_INGEST_ACTIONS_H
#define FERRY_INGEST_ACTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ferry_buf;
struct ingest_router;
struct ingest_store;
struct json_t;

#define ACTIONS_DELIVER_MAX 16  /* envelopes per GET */
#define ACTIONS_OUTPUT_MAX 4096 /* bytes of a result's output kept (its tail) */

/* Queues `envelope` (checked: form, known device, not already queued). `by` names who queued it
 * (audit). On success the id goes to id_out (33 bytes). Returns 0, or the HTTP status that fits
 * the error (400 malformed, 404 unknown device, 409 id already used, 503 store) with err. */
int actions_queue(struct ingest_store *store, const char *envelope, size_t len, const char *by,
                  char id_out[33], char *err, size_t err_len);

/* The stored actions as a JSON array (newest data per action), optionally only those of `device`
 * and/or in `state` ("pending" or "done"). Returns 0 or a store error. */
int actions_list_json(struct ingest_store *store, const char *device, const char *state,
                      struct ferry_buf *out);

/* The results of a stored batch of `device`: a JSON array of {"id","status","exit_code",
 * "output","reason","ts"} (from its "action.result" events). Results for actions that are not
 * this device's or already done are ignored. Returns 0 or a store error. */
int actions_take_results(struct ingest_store *store, const char *device,
                         const struct json_t *results);

/* Adds the three routes above. `store` must outlive the router. */
int actions_register(struct ingest_router *router, struct ingest_store *store);

/* `ferry-ingest action keygen|send|list ...` (docs/actions.md); `actor` for the audit log
 * ("cli:<user>"). `store` may be NULL for keygen. Returns the exit status. */
int actions_cli_main(struct ingest_store *store, const char *actor, int argc, char **argv);
/* `action send` without the store: parses argv (after "action", so argv[0] is "send"), signs
 * the action into `env` and fills *a and *print (--print). Returns 0 or the exit status after
 * a message on stderr. For the CLI's remote mode (--url: POST /v1/devices/{id}/actions). */
struct action;
int actions_cli_sign(int argc, char **argv, struct ferry_buf *env, struct action *a, bool *print);
/* Whether `action send` argv carries --idempotency-key (a 409 then means: already queued). */
int actions_cli_idempotent(int argc, char **argv);
/* Whether argv (after "action") is a command that needs no store (keygen, --help). */
int actions_cli_needs_store(int argc, char **argv);

#endif
