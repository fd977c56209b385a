/*
 * agent.h - ferryd's device actions (docs/actions.md): fetch the signed actions the ingest queued
 * for this device, verify them, execute each at most once, and report every result as an event.
 *
 * The agent runs on ferryd's event loop. It polls GET /v1/devices/{id}/actions (a device-signed
 * request, transport/reqsign.h) every poll_interval and whenever ferryd asks
 * (action_agent_check_now). An action runs on one worker thread at a time; the loop never waits
 * for a command.
 *
 * At most once, across crashes: each action id has a journal state entry "action/<id>". Before
 * anything runs, {"state":"started"} is committed (with an "action.started" event); after it ran,
 * {"state":"done"} is committed together with the "action.result" event - one transaction. An id
 * with an entry is never run again. At start the agent reports every entry still "started" as
 * status "interrupted" (a reboot action whose boot id changed as "ok": the reboot happened) and
 * never runs it. Entries are kept until their action expired (an expired action is refused
 * anyway), so the set of seen ids stays bounded.
 *
 * upload_logs runs no command: the worker copies the systemd journal's entries of the last N
 * minutes, debug included, into the log stream (action_upload_logs); the result's output says
 * how many. It is always allowed: it reads what the device already logged.
 *
 * Results (event "action.result", fields id, kind, status, exit_code, output, reason):
 *   ok           ran and exited 0           failed       ran and exited non-zero, or a signal
 *   timeout      killed after `timeout`     interrupted  ferryd stopped while it ran
 *   refused      not run: untrusted key, bad signature, another device's, expired, not in the
 *                allow-list, or a kind this ferryd does not run (reason says which)
 */
#ifndef FERRY_ENGINE_ACTION_AGENT_H
#define FERRY_ENGINE_ACTION_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "transport/action.h"
#include "transport/reqsign.h"

struct event_base;
struct http_client;
struct journal;
struct action_agent;

#define ACTION_STATE_PREFIX "action/"
#define ACTION_ARGV_MAX 32 /* words of a command line (configured command + action arguments) */

struct action_agent_config {
    const char *server_url; /* base URL, no trailing slash */
    const char *device_id;
    const char *ca_file;
    const char *pinned_public_key;
    const uint8_t (*keys)[32]; /* trusted operator action keys ([actions] keys) */
    size_t n_keys;
    const char *units;           /* units restart_unit may name, separated by commas/spaces */
    const char *commands;        /* exact command lines `run` may ask for, separated by ';' */
    const char *restart_command; /* the unit is added as its last argument */
    const char *reboot_command;  /* "" : reboot refused */
    int64_t poll_interval_ms;
    int64_t timeout_ms;       /* per command */
    size_t output_max;        /* bytes of output kept (the tail) */
    const char *boot_id_file; /* NULL: /proc/sys/kernel/random/boot_id (tests point elsewhere) */
    const char
        *logs_directory; /* upload_logs: NULL = the local systemd journal; else files there */
    int (*sign_request)(void *arg, const char *method, const char *target, int64_t time_s,
                        struct reqsign_headers *out);
    void *sign_arg;
    void (*wake)(void *arg); /* called after an event was appended (ferryd: sync_wake) */
    void *wake_arg;
};

/*
 * Whether the device may run `a` as configured: fills argv (pointers into `a` and into `words`,
 * a buffer of words_len bytes the split configuration goes to) with the command line and returns
 * 0; -1 with `why` when it is not allowed. Pure (unit-tested).
 */
int action_agent_command(const struct action_agent_config *cfg, const struct action *a, char *words,
                         size_t words_len, char *argv[ACTION_ARGV_MAX + 1], char *why,
                         size_t why_len);

/* What running a command gave. */
struct action_run_result {
    int exit_code;  /* 0..255; -1 when it did not exit by itself */
    int signal;     /* the signal that ended it, 0 if none */
    bool timed_out; /* killed (its process group) at the deadline */
    bool not_run;   /* could not be started (output says why) */
    char *output;   /* the last output_max bytes of stdout and stderr, NUL-terminated; owned */
    size_t output_len;
};

/* Runs argv (argv[0] a path; no shell) with stdin from /dev/null, stdout and stderr captured,
 * in its own process group; kills the group at timeout_ms. *pid (may be NULL) holds the child's
 * pid while it runs (0 otherwise), so another thread can kill it. Blocking. */
void action_run(char *const argv[], int64_t timeout_ms, size_t output_max, volatile pid_t *pid,
                struct action_run_result *out);
void action_run_result_free(struct action_run_result *r);

/* upload_logs: what was appended. */
#define ACTION_LOGS_MAX_ENTRIES 20000
#define ACTION_LOGS_MAX_BYTES (8u << 20)
struct action_logs_result {
    uint64_t records;  /* log records appended */
    uint64_t left_out; /* entries over the limits above or over the record limits */
    char error[160];
};

/* Appends the systemd journal's entries from since_ns to until_ns (realtime), of `units` (or of
 * every unit when n_units is 0), at every priority, to ferry's log stream with the tag
 * action=<action_id> (logs.c). `directory`: NULL for the local journal. Blocking (worker
 * thread). Returns 0, or -1 with out->error (records appended before an error stay). */
int action_upload_logs(struct journal *j, const char *directory, int64_t since_ns, int64_t until_ns,
                       const char *const *units, size_t n_units, const char *action_id,
                       struct action_logs_result *out);

/*
 * Creates the agent: reports actions a crash interrupted (see above), drops expired entries,
 * and schedules the first poll. Strings of cfg must outlive the agent. Returns 0 or -1 with err.
 */
int action_agent_new(struct event_base *base, struct http_client *http, struct journal *journal,
                     const struct action_agent_config *cfg, struct action_agent **out, char *err,
                     size_t err_len) __attribute__((warn_unused_result));
/* Takes an envelope (NUL-terminated, len its length) as a poll brings it: queued, then verified,
 * refused or run in turn (a copy is made). Returns 0, or -1 when the queue is full
 * (ACTION_AGENT_QUEUE_MAX; it comes again with a later poll). Loop thread. */
#define ACTION_AGENT_QUEUE_MAX 16
int action_agent_offer(struct action_agent *a, const char *envelope, size_t len);
/* Polls now (unless a poll or an action is under way). Loop thread. */
void action_agent_check_now(struct action_agent *a);
/* Stops: cancels the poll, kills a running command's process group and waits for its thread
 * (its action stays "started": reported as interrupted at the next start), frees. */
void action_agent_free(struct action_agent *a);

#endif
