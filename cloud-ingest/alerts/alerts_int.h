/*
 * alerts_int.h - internal to cloud-ingest/alerts/: the engine's state shared by engine.c,
 * notify.c and api.c.
 */
#ifndef FERRY_INGEST_ALERTS_INT_H
#define FERRY_INGEST_ALERTS_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <jansson.h>

#include "cloud-ingest/alerts/alerts.h"
#include "cloud-ingest/store.h"

#define ALERTS_CURSOR "alerts" /* the store cursor the engine follows */
#define ALERTS_LEASE "alerts"  /* the store lease of the evaluating process */

/* One (rule, device, series) and its state. */
struct alerts_entry {
    char key[INGEST_KV_KEY_MAX + 1];
    char device[65];
    size_t rule;
    json_t *labels;  /* the series' labels (tags; update: component) */
    char reason[64]; /* update: the state that fired it */
    struct alerts_state st;
    bool dirty; /* changed since the last commit */
};

/* A notification queued in this round, committed with it. */
struct alerts_pending {
    char key[32];
    char *value;
};

/* When a firing notification of an alert reached an Alertmanager receiver (notify.c). */
struct alerts_delivered {
    char key[INGEST_KV_KEY_MAX + 1];
    size_t receiver;
    int64_t at_ns;
};

struct alerts {
    struct alerts_config cfg;
    struct ingest_store *store;
    char owner[256];
    bool has_polled; /* rules checked per device every few seconds (offline, gap, backlog...) */
    bool has_absent;

    /* evaluation thread */
    struct alerts_entry **table; /* open addressing by key */
    size_t cap, n, dirty_n;
    struct alerts_pending *pending;
    size_t pending_n;
    uint64_t queue_next;
    struct ingest_store_cursor cursor;
    bool loaded;
    int64_t offline_checked_ns;
    int64_t am_resent_ns;
    struct record_scratch *scratch;
    struct ingest_selector *selectors[ALERTS_RULES_MAX]; /* parsed rule selectors (NULL: none) */
    json_t *classes;         /* device id -> bit i set when rule i's class and selector match it */
    int64_t classes_read_ns; /* when that cache was started (labels change: it is refreshed) */
    json_t *silences;        /* the stored silences, read every round */
    json_t *active;          /* "rule/device" -> number of its series pending or firing */
    json_t *newest;          /* device id -> newest corrected device time of its metrics (absent) */
    bool newest_moved;

    /* notification thread (notify.c) */
    int64_t retry_at_ns[ALERTS_RECEIVERS_MAX];
    unsigned failures[ALERTS_RECEIVERS_MAX];
    struct alerts_delivered *delivered;
    size_t delivered_n;
    bool notify_wanted;
    uint64_t actionlog_next; /* next actionlog/<seq> (0: not read from the store yet) */
    pthread_cond_t notify_cond;

    /* threads */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping, started;
    bool committed; /* a commit of this process since the round began (alerts_committed) */
    pthread_t eval_thread, notify_thread;

    /* counters */
    _Atomic uint64_t firing, fired_total, late_total, resolved_total, queued, sent_total,
        failed_total, records_behind;
};

const char *alerts_kind_name(enum alerts_rule_kind kind);

/* Bytes from a device or a command as a JSON string: ill-formed UTF-8 replaced by U+FFFD, as
 * every other output of the ingest does (JSON output stays valid whatever was sent). NULL only
 * when out of memory. */
json_t *alerts_json_text(const char *p, size_t n);

/* Index of the rule named `name` in cfg, or -1. */
int alerts_rule_index(const struct alerts_config *cfg, const char *name);

void alerts_notify_init(struct alerts *a);
void alerts_notify_cleanup(struct alerts *a);
/* Wakes the notification thread (something was queued). */
void alerts_notify_wake(struct alerts *a);
void *alerts_notify_main(void *arg);

#endif
