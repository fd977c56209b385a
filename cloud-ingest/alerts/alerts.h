/*
 * alerts.h - ferry-ingest's alerts: rules evaluated on device time as records are stored, alert
 * state kept in the store, and notifications to Alertmanager, Slack-compatible and generic JSON
 * webhooks through a durable queue.
 *
 * Why device time: a device that was offline delivers the hour in which it overheated later.
 * Rules here see each record with its corrected device time, so that hour still raises an alert,
 * marked `late`, with its true start and end and the time it arrived (ARCHITECTURE.md, invariant
 * 7).
 *
 * Parts:
 *   rule evaluation (rules.c)   pure functions over one (rule, device, series) state: no I/O, no
 *                               clock; what the unit tests drive directly.
 *   the engine (engine.c)       a thread that follows the store in commit order from the durable
 *                               cursor "alerts" (store.h, "Commit order"), runs the rules, and
 *                               commits the changed alert states, the notifications they raise and
 *                               the cursor in ONE store transaction: a restart neither forgets nor
 *                               repeats an alert. A timer evaluates `offline` rules from the
 *                               devices' last-seen times. With several ingests on one PostgreSQL,
 *                               only the holder of the store lease "alerts" evaluates and notifies.
 *   notifications (notify.c)    deliver the queue in order per receiver, retry with backoff and
 *                               jitter (Retry-After honoured), delete an entry only after its
 *                               receiver answered 2xx. A receiver that is down never slows
 *                               ingestion: the queue is in the store.
 *
 * Configuration: [alerts], [alert.NAME] and [receiver.NAME] sections of the ingest's INI file,
 * documented in docs/alerts.md.
 */
#ifndef FERRY_INGEST_ALERTS_H
#define FERRY_INGEST_ALERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ALERTS_RULES_MAX 64
#define ALERTS_RECEIVERS_MAX 16
#define ALERTS_NAME_MAX 64

enum alerts_rule_kind {
    ALERTS_RULE_THRESHOLD = 0, /* a metric field compared with a value, held for a duration */
    ALERTS_RULE_OFFLINE = 1,   /* no stored batch from a device for longer than a duration */
    ALERTS_RULE_UPDATE = 2,    /* an update failed, rolled back, or stayed in one state */
    ALERTS_RULE_ABSENT = 3,    /* a series stopped while its device still sends metrics */
    ALERTS_RULE_GAP = 4,       /* a device reported records lost to eviction */
    ALERTS_RULE_BACKLOG = 5,   /* a device's unsent backlog above a size or growing */
};

enum alerts_op {
    ALERTS_OP_GT = 0,
    ALERTS_OP_GE,
    ALERTS_OP_LT,
    ALERTS_OP_LE,
    ALERTS_OP_EQ,
    ALERTS_OP_NE,
};

struct alerts_rule {
    char name[ALERTS_NAME_MAX + 1];
    enum alerts_rule_kind kind;
    char severity[32];        /* a label: "warning" unless set */
    char measurement[128];    /* threshold, absent: the record name ("thermal") */
    char field[128];          /* threshold, absent: the field key ("gpu") */
    enum alerts_op op;        /* threshold; backlog: records; gap: records lost at once */
    double value;             /* threshold, backlog, gap */
    bool has_condition;       /* a condition was set */
    bool growing;             /* backlog: fire when it grows for `for` (also without a size) */
    int64_t for_ns;           /* threshold: held this long on device time; offline:
                               * silent this long; absent: missing this long on device time;
                               * backlog: breached this long; update: one state this long
                               * (0: no stuck check) */
    int64_t resolve_after_ns; /* offline: back this long before resolved (flapping); gap: no
                               * new loss this long before resolved (1h) */
    char device_class[128];   /* only devices of this class ("" = all) */
    char selector[512];       /* only devices this selector matches (cloud-ingest/selector.h:
                               * labels, class, id, name, versions; "" = all) */
    uint32_t receivers;       /* bit i: receiver i of the configuration */
    char summary[256];        /* annotation text ("" = a generated one) */
};

enum alerts_receiver_kind {
    ALERTS_RECEIVER_ALERTMANAGER = 0, /* POST {url}/api/v2/alerts */
    ALERTS_RECEIVER_SLACK = 1,        /* a Slack-compatible incoming webhook */
    ALERTS_RECEIVER_WEBHOOK = 2,      /* generic JSON: one alert per POST */
    ALERTS_RECEIVER_COMMAND = 3,      /* an action: a command run with the alert on stdin */
};

struct alerts_receiver {
    char name[ALERTS_NAME_MAX + 1];
    enum alerts_receiver_kind kind;
    char url[512]; /* command: the absolute path and its arguments, split on spaces */
    int64_t timeout_ns;
    int64_t resolve_delay_ns; /* Alertmanager: a resolution waits this long after its firing
                               * was delivered (more than the route's group_wait; 35 s) */
};

struct alerts_config {
    struct alerts_rule rules[ALERTS_RULES_MAX];
    size_t n_rules;
    struct alerts_receiver receivers[ALERTS_RECEIVERS_MAX];
    size_t n_receivers;
    int64_t late_after_ns;      /* arrival - device time above this marks an alert late (60 s) */
    int64_t eval_interval_ns;   /* how often the engine polls the store and offline rules (1 s) */
    int64_t repeat_interval_ns; /* a firing alert is notified again after this (4 h; 0 never) */
    int64_t resend_interval_ns; /* Alertmanager: firing alerts re-sent this often (60 s) */
    int64_t lease_ns;           /* PostgreSQL: the evaluating process's lease (30 s) */
    /* Receiver names of each rule as written, resolved by alerts_config_finish(). */
    char rule_receivers[ALERTS_RULES_MAX][256];
};

/* Fills the defaults (no rules, no receivers). */
void alerts_config_defaults(struct alerts_config *c);
/*
 * Sets `key` = `value` of INI section `section` ("alerts", "alert.NAME" or "receiver.NAME").
 * Returns 0, 1 when the section is not one of these (not an error here), or -1 with err saying
 * what is wrong (unknown key, bad value, too many rules).
 */
int alerts_config_set(struct alerts_config *c, const char *section, const char *key,
                      const char *value, char *err, size_t err_len);
/* Checks the whole configuration once every key is set (each rule complete, every receiver a
 * rule names exists). Returns 0 or -1 with err naming the rule and what is missing. */
int alerts_config_finish(struct alerts_config *c, char *err, size_t err_len);
/* Help text of the keys, for --help and docs. */
const char *alerts_config_help(void);

/* ---- Rule evaluation (rules.c): pure, one series at a time --------------------------------- */

/* What happened to an alert when a sample or a check was applied. */
enum alerts_change {
    ALERTS_NONE = 0,
    ALERTS_FIRED = 1,
    ALERTS_RESOLVED = 2,
};

/* The state of one (rule, device, series): plain data, kept in the store as JSON. */
struct alerts_state {
    bool firing;
    bool pending;    /* threshold: the condition holds since pending_since_ns */
    bool recovering; /* offline: the device is back since recovering_since_ns */
    bool late;       /* the alert fired from data that arrived late */
    int64_t pending_since_ns;
    int64_t recovering_since_ns;
    int64_t last_sample_ns; /* device time of the newest sample applied (threshold) */
    int64_t starts_ns;      /* when the condition began, device time (offline: last seen) */
    int64_t ends_ns;        /* when it ended (0 while firing) */
    int64_t arrived_ns;     /* when the data that fired it arrived (ingest clock) */
    int64_t notified_ns;    /* when it was last queued for notification */
    double value;           /* the value that fired it (threshold; offline: seconds silent;
                             * absent: seconds missing; gap: records lost; backlog: records) */
    double base;            /* backlog: the backlog when the growth began */
    uint64_t seen;          /* gap: records lost that were already accounted for */
};

/* True when `v op threshold` holds. */
bool alerts_compare(enum alerts_op op, double v, double threshold);

/*
 * Applies one sample of a threshold rule's series: value `v` at device time `ts_ns`, arrived at
 * `arrived_ns`. A sample older than the newest applied one is ignored (the state follows device
 * time); a silence in the series longer than the rule's duration restarts the pending time (the
 * condition was not observed meanwhile). Returns FIRED when the condition has now held for the
 * rule's duration (st->starts_ns = when it began; late when the sample arrived more than
 * late_after_ns after its device time), RESOLVED when a firing alert's condition stopped
 * (st->ends_ns = that sample's device time), NONE otherwise.
 */
enum alerts_change alerts_threshold_apply(const struct alerts_rule *r, struct alerts_state *st,
                                          double v, int64_t ts_ns, int64_t arrived_ns,
                                          int64_t late_after_ns);

/*
 * Checks an offline rule for a device last seen at `last_seen_ns` (ingest clock; 0: never, which
 * never fires) at `now_ns`. FIRED when silent longer than the rule's duration (starts_ns = last
 * seen); RESOLVED when a firing device has been back for resolve_after_ns (ends_ns = when it came
 * back; value = the outage in seconds). A device that goes silent again while recovering stays
 * firing without a new notification (flapping suppression).
 */
enum alerts_change alerts_offline_check(const struct alerts_rule *r, struct alerts_state *st,
                                        int64_t last_seen_ns, int64_t now_ns);

/*
 * Applies an ota.* event of an update rule: `state` is the event's state field ("failed",
 * "rolled_back", "committed", ...) at device time ts_ns. FIRED for failed / rolled_back (a firing
 * alert stays firing), RESOLVED for committed while firing.
 */
enum alerts_change alerts_update_apply(struct alerts_state *st, const char *state, int64_t ts_ns,
                                       int64_t arrived_ns, int64_t late_after_ns);

/*
 * Update rules with a `for`: the component's reported `state` (device time `state_ts_ns`,
 * corrected to the ingest's clock) at `now_ns`. FIRED when a state that is not final
 * (downloading, installed, ...) has lasted longer than the rule's duration (reason "stuck in
 * STATE", written into reason[reason_len]); RESOLVED when such an alert's state moved on to
 * anything but failed / rolled_back (which keep it firing as a failure: reason updated).
 */
enum alerts_change alerts_update_stuck_check(const struct alerts_rule *r, struct alerts_state *st,
                                             char *reason, size_t reason_len, const char *state,
                                             int64_t state_ts_ns, int64_t now_ns);

/*
 * Absent rules. A sample of the series at device time ts_ns: remembered; RESOLVED when the alert
 * was firing (ends_ns = that sample). Then, whenever the device's newest metric time moves:
 * alerts_absent_check() with that time: FIRED when the series' last sample is older than the
 * rule's duration on the device's own clock (starts_ns = the last sample; late when the records
 * that showed it arrived more than late_after_ns after that time plus the duration). A device
 * that sends nothing raises no absent alert (that is what `offline` is for).
 */
enum alerts_change alerts_absent_sample(struct alerts_state *st, int64_t ts_ns);
enum alerts_change alerts_absent_check(const struct alerts_rule *r, struct alerts_state *st,
                                       int64_t device_newest_ns, int64_t arrived_ns,
                                       int64_t late_after_ns);

/*
 * Gap rules: `lost_total` is every record the device reported lost to eviction so far. FIRED
 * when new losses (lost_total - st->seen) pass the rule's condition (default: any); while firing
 * further losses add to value and keep it firing; RESOLVED when no loss was reported for
 * resolve_after. The first check of a device also counts losses from before the rule existed.
 */
enum alerts_change alerts_gap_check(const struct alerts_rule *r, struct alerts_state *st,
                                    uint64_t lost_total, int64_t now_ns);

/*
 * Backlog rules: the device's reported backlog (unsent records, all streams) at now_ns. Breached
 * when the condition holds (size) or, with `growing`, when it grew and has not shrunk since;
 * FIRED when breached for the rule's duration (growing: and larger than when it began);
 * RESOLVED when no longer breached.
 */
enum alerts_change alerts_backlog_check(const struct alerts_rule *r, struct alerts_state *st,
                                        uint64_t backlog, int64_t now_ns);

/* ---- The engine (engine.c) ----------------------------------------------------------------- */

struct ingest_store;
struct ingest_router;
struct ferry_buf;
struct alerts;

/* Counters for /metrics. */
struct alerts_counts {
    uint64_t firing;      /* alerts firing now */
    uint64_t fired_total; /* alerts that fired since start */
    uint64_t late_total;  /* of them, late */
    uint64_t resolved_total;
    uint64_t queued;         /* notifications waiting */
    uint64_t sent_total;     /* notifications delivered */
    uint64_t failed_total;   /* delivery attempts that failed */
    uint64_t records_behind; /* records committed that the rules have not seen yet */
};

/* Creates the engine (threads not started). `cfg` is copied; `store` borrowed until
 * alerts_free. `owner` names this process for the store lease (host:pid). Returns 0 or -1 with
 * err. */
int alerts_new(const struct alerts_config *cfg, struct ingest_store *store, const char *owner,
               struct alerts **out, char *err, size_t err_len) __attribute__((warn_unused_result));
/* Starts the evaluation and notification threads (nothing to do when no rule is configured). */
int alerts_start(struct alerts *a) __attribute__((warn_unused_result));
/* Tells the engine that this process committed records (call after a group commit; cheap, any
 * thread): the next round starts within 50 ms instead of at the next eval_interval. */
void alerts_committed(struct alerts *a);
/* Stops the threads (commits what was evaluated) and frees. NULL is allowed. */
void alerts_free(struct alerts *a);
/* Runs one evaluation round now on the calling thread (tests): reads what is committed, applies
 * every rule, checks offline rules at `now_ns`, commits. Returns 0 or a store error. */
int alerts_eval_once(struct alerts *a, int64_t now_ns) __attribute__((warn_unused_result));
/* Delivers what is queued now on the calling thread (tests). Returns the number delivered or a
 * negative store error. */
int alerts_notify_once(struct alerts *a, int64_t now_ns);
void alerts_counts(struct alerts *a, struct alerts_counts *out);
/* Appends the alerts' Prometheus lines to `out` (ferry_alerts_*). */
int alerts_expose(struct alerts *a, struct ferry_buf *out) __attribute__((warn_unused_result));
/* Registers GET /v1/alerts. `a` may be NULL (no rules: the endpoint lists nothing). */
int alerts_register(struct ingest_router *router, struct ingest_store *store)
    __attribute__((warn_unused_result));
/* `ferry-ingest alerts list|silence|silences|unsilence` (argv starts after "alerts"): returns
 * the process exit status. `actor` ("cli:USER") is the silence's created_by and the audit log's
 * actor. */
int alerts_cli_main(struct ingest_store *st, const char *actor, int argc, char **argv);
/* Writes the stored alerts as a JSON array (the body of GET /v1/alerts) into `out`: `state`
 * "firing", "resolved" or NULL for both; `device` one device or NULL for all. */
int alerts_list_json(struct ingest_store *store, const char *state, const char *device,
                     struct ferry_buf *out) __attribute__((warn_unused_result));

/* ---- Silences (silences.c; docs/alerts.md "Silences") ------------------------------------ */

#define ALERTS_SILENCE_ID_LEN 16                         /* hex digits */
#define ALERTS_SILENCE_COMMENT_MAX 1024                  /* bytes */
#define ALERTS_SILENCE_FOR_MAX_MS (365LL * 86400 * 1000) /* a silence lasts at most a year */
#define ALERTS_SILENCE_BODY_MAX 8192                     /* POST /v1/silences body */
#define ALERTS_SILENCE_EINVAL (-1000)  /* a silence's fields are malformed (err says which) */
#define ALERTS_SILENCE_ETOOBIG (-1001) /* a body over ALERTS_SILENCE_BODY_MAX */

struct json_t;

/* A new silence. Strings borrowed; NULL is "". */
struct alerts_silence_req {
    const char *rule;       /* a rule name (1-64 of [A-Za-z0-9._-]) or "" for any rule */
    const char *device;     /* a device id or "" for any device; rule and/or device needed */
    int64_t for_ms;         /* from now; 1 ms .. 365 days */
    const char *comment;    /* at most 1024 bytes of valid UTF-8 */
    const char *created_by; /* "token:NAME" or "cli:USER" (valid UTF-8) */
};

/* Checks a silence's fields (the rules above): 0 or ALERTS_SILENCE_EINVAL with err naming the
 * field. */
int alerts_silence_check(const struct alerts_silence_req *req, char *err, size_t err_len);
/*
 * Parses a POST /v1/silences body {"rule","device","for","comment"} (strings; no other member;
 * at most ALERTS_SILENCE_BODY_MAX bytes, checked before anything is read: `body` may be NULL
 * then) into *req and checks it. On success *doc holds the parsed JSON that req's strings point
 * into (the caller decrefs it after use; created_by is left NULL). Returns 0,
 * ALERTS_SILENCE_ETOOBIG or ALERTS_SILENCE_EINVAL with err saying what is wrong.
 */
int alerts_silence_parse_body(const void *body, size_t len, struct alerts_silence_req *req,
                              struct json_t **doc, char *err, size_t err_len)
    __attribute__((warn_unused_result));
/*
 * Validates `req` and stores silence/<id> starting at now_ns; the new id (16 hex digits) is
 * written to id. Returns 0, ALERTS_SILENCE_EINVAL with err saying which field is wrong, or a
 * store error (err holds its text). The engine applies it from its next round.
 */
int alerts_silence_add(struct ingest_store *st, const struct alerts_silence_req *req,
                       int64_t now_ns, char id[ALERTS_SILENCE_ID_LEN + 1], char *err,
                       size_t err_len) __attribute__((warn_unused_result));
/* Removes silence `id`: 0, ALERTS_SILENCE_EINVAL (not an id), INGEST_STORE_ENOTFOUND or a store
 * error. */
int alerts_silence_remove(struct ingest_store *st, const char *id)
    __attribute__((warn_unused_result));
/* True when `id` has the form of a silence id. */
bool alerts_silence_id_valid(const char *id);
/* The stored entries as a new JSON array of objects (caller decrefs *out). Returns 0 or a store
 * error. */
int alerts_silences_read(struct ingest_store *st, struct json_t **out)
    __attribute__((warn_unused_result));
/* The body of GET /v1/silences: {"silences":[{"id","rule","device","starts","ends" (RFC 3339
 * UTC), "starts_ns","ends_ns","comment","created_by","active"}]}, active at now_ns. */
int alerts_silences_json(struct ingest_store *st, int64_t now_ns, struct ferry_buf *out)
    __attribute__((warn_unused_result));
/* Registers GET /v1/silences (viewer), POST /v1/silences and DELETE /v1/silences/{id}
 * (operator; both audited as alert.silence / alert.unsilence with the token's name). */
int alerts_silences_register(struct ingest_router *router, struct ingest_store *store)
    __attribute__((warn_unused_result));

#endif
