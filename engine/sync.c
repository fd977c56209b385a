/*
 * sync.c - the sync engine, loop side (design: docs/sync.md; API: engine/sync.h).
 *
 * Design block
 * ------------
 * Everything here runs on ferryd's event loop. Work that may take milliseconds (journal reads,
 * encoding, zstd, signing, journal acks with their fsync) goes to the helper thread
 * (sync_worker.c) as jobs whose results come back here. The network is libcurl multi on the same
 * loop (transport/http_client.c): nothing here waits.
 *
 * One function, evaluate(), decides what to do next. It runs after every wake-up (sync_wake,
 * the timer, a finished job, a finished request, a netlink change), coalesced through one
 * deferred event, and ends by arming the single timer for the earliest next deadline (a
 * stream's latency target, the heartbeat, the end of a backoff) - so an idle engine has exactly
 * one timer pending: the heartbeat.
 *
 * States (per engine):
 *   NO_SERVER   server_url empty: records stay in the journal; nothing is armed.
 *   ENROLLING   no device id: POST /v1/enroll (start_enroll -> on_enroll_done), retried with
 *               backoff like any request; 200 stores the id in the journal's state table.
 *   RUNNING     batches: start_build -> (worker) sync_batch_build_run -> on_build_done ->
 *               send_batch -> on_batch_done -> classify -> ack job / backoff / split / re-enroll.
 *   BACKOFF     next_attempt_ms in the future: no new request starts (in-flight ones finish).
 *
 * Invariants
 *   I1. At most one build job is with the worker (s->building); at most max_in_flight batch
 *       requests are in flight; a build starts only when a request slot is free.
 *   I2. A record leaves the journal only through journal_ack() of a range the ingest
 *       acknowledged (intersected with the range the batch itself covered) or of a batch the
 *       ingest rejected with 400 (then an event says so).
 *   I3. Any failure resets every stream's read cursor to 0, so everything unacknowledged is read
 *       again (the ingest deduplicates by (device, stream, seq)).
 *   I4. Gaps travel in at most one batch at a time and are marked reported only after the
 *       ack of the batch that carried them.
 */
#include "engine/sync.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "engine/netlink.h"
#include "engine/sync_int.h"
#include "engine/sync_policy.h"
#include "transport/http_client.h"
#include "transport/reqsign.h"

#define SYNC_MAX_ACK_RANGES 4096
#define SYNC_MIN_SPLIT_BYTES 1024
/* sync_wants_commit_wake(): a backoff ending sooner than this still wants the commit wake-up. */
#define SYNC_COMMIT_WAKE_MARGIN_MS 1000

static void evaluate(struct sync *s);

const char *sync_error_name(int err)
{
    switch (err) {
    case SYNC_OK: return "SYNC_OK";
    case SYNC_EINVAL: return "SYNC_EINVAL";
    case SYNC_ENOMEM: return "SYNC_ENOMEM";
    case SYNC_EIO: return "SYNC_EIO";
    case SYNC_EKEY: return "SYNC_EKEY";
    case SYNC_EJOURNAL: return "SYNC_EJOURNAL";
    case SYNC_ETHREAD: return "SYNC_ETHREAD";
    case SYNC_EHTTP: return "SYNC_EHTTP";
    default: return "SYNC_E?";
    }
}

const char *sync_strerror(int err)
{
    switch (err) {
    case SYNC_OK: return "ok";
    case SYNC_EINVAL: return "invalid sync configuration";
    case SYNC_ENOMEM: return "out of memory";
    case SYNC_EIO: return "device key file error";
    case SYNC_EKEY: return "device key file is not a valid key";
    case SYNC_EJOURNAL: return "journal state error";
    case SYNC_ETHREAD: return "cannot start the sync helper thread";
    case SYNC_EHTTP: return "cannot create the HTTP client";
    default: return "unknown sync error";
    }
}

void sync_config_init(struct sync_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->latency_ms[RECORD_EVENT] = 1000;
    cfg->latency_ms[RECORD_METRIC] = 10000;
    cfg->latency_ms[RECORD_LOG] = 60000;
    cfg->threshold_bytes[RECORD_EVENT] = 16 * 1024;
    cfg->threshold_bytes[RECORD_METRIC] = 256 * 1024;
    cfg->threshold_bytes[RECORD_LOG] = 512 * 1024;
    cfg->max_batch_bytes = 4 * 1024 * 1024;
    cfg->min_batch_bytes = 16 * 1024;
    cfg->heartbeat_ms = 5 * 60 * 1000;
    cfg->backoff_min_ms = 1000;
    cfg->backoff_max_ms = 5 * 60 * 1000;
    cfg->request_deadline_ms = 30000;
}

/* ---- configuration copy ---------------------------------------------------------------------- */

static void config_free_strings(struct sync_config *c)
{
    free((char *)c->data_dir);
    free((char *)c->server_url);
    free((char *)c->enroll_token);
    free((char *)c->ca_file);
    free((char *)c->pinned_public_key);
    free((char *)c->device_name);
    free((char *)c->device_class);
    memset(c, 0, sizeof(*c));
}

static int dup_str(const char *in, const char **out)
{
    *out = strdup(in ? in : "");
    return *out ? 0 : SYNC_ENOMEM;
}

static int config_copy(const struct sync_config *in, struct sync_config *out, char *errbuf,
                       size_t errlen)
{
    if (!in->data_dir || !in->data_dir[0]) {
        snprintf(errbuf, errlen, "sync: data_dir is required");
        return SYNC_EINVAL;
    }
    if (in->max_batch_bytes < in->min_batch_bytes || in->min_batch_bytes == 0 ||
        in->backoff_min_ms <= 0 || in->backoff_max_ms < in->backoff_min_ms ||
        in->request_deadline_ms <= 0 || in->heartbeat_ms <= 0) {
        snprintf(errbuf, errlen,
                 "sync: inconsistent limits (min/max batch, backoff, deadline, "
                 "heartbeat must be positive and ordered)");
        return SYNC_EINVAL;
    }
    if (in->server_url && in->server_url[0] && strncmp(in->server_url, "http://", 7) != 0 &&
        strncmp(in->server_url, "https://", 8) != 0) {
        snprintf(errbuf, errlen, "sync: server url \"%s\" is not http:// or https://",
                 in->server_url);
        return SYNC_EINVAL;
    }
    *out = *in;
    out->data_dir = out->server_url = out->enroll_token = out->ca_file = NULL;
    out->pinned_public_key = NULL;
    out->device_name = out->device_class = NULL;
    if (dup_str(in->data_dir, &out->data_dir) || dup_str(in->server_url, &out->server_url) ||
        dup_str(in->enroll_token, &out->enroll_token) || dup_str(in->ca_file, &out->ca_file) ||
        dup_str(in->pinned_public_key, &out->pinned_public_key) ||
        dup_str(in->device_name, &out->device_name) ||
        dup_str(in->device_class, &out->device_class)) {
        config_free_strings(out);
        snprintf(errbuf, errlen, "sync: out of memory");
        return SYNC_ENOMEM;
    }
    if (out->max_batch_bytes > BATCH_MAX_BODY_RAW / 2)
        out->max_batch_bytes = BATCH_MAX_BODY_RAW / 2;
    if (out->min_batch_bytes > out->max_batch_bytes)
        out->min_batch_bytes = out->max_batch_bytes;
    if (out->low_speed_bytes_per_s <= 0)
        out->low_speed_bytes_per_s = 100;
    if (out->low_speed_time_s <= 0)
        out->low_speed_time_s = 20;
    if (out->max_in_flight == 0)
        out->max_in_flight = 4;
    return 0;
}

static int make_url(const char *base, const char *path, char **out)
{
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    size_t pl = strlen(path);
    char *u = malloc(bl + pl + 1);
    if (!u)
        return SYNC_ENOMEM;
    memcpy(u, base, bl);
    memcpy(u + bl, path, pl + 1);
    *out = u;
    return 0;
}

static int apply_urls(struct sync *s)
{
    free(s->url_batches);
    free(s->url_enroll);
    s->url_batches = s->url_enroll = NULL;
    if (!s->cfg.server_url[0])
        return 0;
    if (make_url(s->cfg.server_url, "/v1/batches", &s->url_batches) ||
        make_url(s->cfg.server_url, "/v1/enroll", &s->url_enroll))
        return SYNC_ENOMEM;
    return 0;
}

/* ---- small helpers --------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    return ferry_monotonic_ms();
}

static double jitter(struct sync *s)
{
    /* xorshift64*: jitter needs spread, not secrecy */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (double)((s->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static void set_error(struct sync *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct sync *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->status.last_error, sizeof(s->status.last_error), fmt, ap);
    va_end(ap);
    /* /status shows the latest; the log keeps a trace without flooding it during an outage. */
    log_limited(30, FERRY_LOG_WARN, "sync", "%s", s->status.last_error);
}

static void schedule_eval(struct sync *s)
{
    if (!s->freeing)
        event_active(s->eval_ev, EV_TIMEOUT, 0);
}

static void reset_cursors(struct sync *s)
{
    s->cursor_epoch++;
    for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
        s->stream[st].cursor = 0;
        /* After a failure the newest records go first again (catch-up policy). */
        s->stream[st].live_high = 0;
        s->stream[st].live_sent_ms = 0;
        /* what was in flight newest-first is read again by the backfill (I3) */
        s->stream[st].n_ahead = 0;
    }
}

static void note_failure(struct sync *s, int64_t retry_after_ms, bool network, bool revoked)
{
    s->failures++;
    s->status.consecutive_failures = s->failures;
    int64_t delay = revoked ? s->cfg.backoff_max_ms
                            : sync_backoff_ms(s->failures, s->cfg.backoff_min_ms,
                                              s->cfg.backoff_max_ms, jitter(s), retry_after_ms);
    s->next_attempt_ms = now_ms() + delay;
    s->last_failure_network = network;
    reset_cursors(s);
}

static void note_success(struct sync *s)
{
    bool was_failing = s->failures > 0;
    s->failures_before_success = s->failures;
    s->failures = 0;
    s->status.consecutive_failures = 0;
    s->next_attempt_ms = 0;
    s->status.link_up = true;
    s->status.last_success_unix_ms = ferry_realtime_ns() / 1000000;
    s->status.last_error[0] = '\0';
    s->last_send_ok_ms = now_ms();
    if (was_failing) {
        log_info("sync", "link to %s is back after %u failed attempt(s)", s->cfg.server_url,
                 s->failures_before_success);
        /* The link is back: whatever waits goes now, not at its latency target. */
        for (int st = 0; st < RECORD_STREAM_COUNT; st++)
            if (s->stream[st].pending_since_ms > 0)
                s->stream[st].pending_since_ms = 1;
    }
}

int sync_append_event(struct sync *s, const char *name, const char *const *keys,
                      const char *const *values, size_t n, unsigned flags)
{
    struct record_field fields[8];
    if (n > 8)
        n = 8;
    for (size_t i = 0; i < n; i++) {
        fields[i].key.ptr = keys[i];
        fields[i].key.len = strlen(keys[i]);
        fields[i].type = RECORD_FIELD_STRING;
        fields[i].v.s.ptr = values[i];
        fields[i].v.s.len = strlen(values[i]);
    }
    struct record r;
    memset(&r, 0, sizeof(r));
    r.stream = RECORD_EVENT;
    r.ts_ns = ferry_realtime_ns();
    r.name.ptr = name;
    r.name.len = strlen(name);
    r.fields = fields;
    r.n_fields = n;
    struct ferry_buf buf = FERRY_BUF_INIT;
    int rc = record_pack(&r, &buf);
    if (rc == 0)
        rc = journal_append(s->journal, RECORD_EVENT, r.ts_ns, buf.data, buf.len, flags, NULL);
    ferry_buf_free(&buf);
    return rc;
}

/* ---- enrollment ------------------------------------------------------------------------------ */

int sync_parse_enroll_response(const uint8_t *body, size_t body_len, char *id, size_t id_cap)
{
    json_error_t jerr;
    json_t *root = body ? json_loadb((const char *)body, body_len, 0, &jerr) : NULL;
    const char *v = root ? json_string_value(json_object_get(root, "device_id")) : NULL;
    int rc = -1;
    if (v && batch_device_id_valid(v, strlen(v)) && strlen(v) < id_cap) {
        memcpy(id, v, strlen(v) + 1);
        rc = 0;
    }
    json_decref(root);
    return rc;
}

static void on_enroll_done(void *arg, struct http_request *req, const struct http_response *resp)
{
    struct sync *s = arg;
    (void)req;
    s->enroll_req = NULL;
    if (s->freeing)
        return;
    s->status.last_attempt_unix_ms = ferry_realtime_ns() / 1000000;
    enum sync_outcome o = sync_classify(resp->err, resp->status);
    if (o == SYNC_OUTCOME_SENT) {
        char id[BATCH_MAX_DEVICE_ID + 1];
        if (sync_parse_enroll_response(resp->body, resp->body_len, id, sizeof(id)) == 0) {
            int rc = journal_state_put(s->journal, SYNC_STATE_DEVICE_ID,
                                       strlen(SYNC_STATE_DEVICE_ID), id, strlen(id));
            if (rc == 0) {
                ferry_strlcpy(s->device_id, id, sizeof(s->device_id));
                s->enrolled = true;
                log_info("sync", "enrolled with %s: device id %s", s->cfg.server_url, id);
                note_success(s);
                reset_cursors(s);
            } else {
                set_error(s, "enroll: storing device id: %s", journal_strerror(rc));
                note_failure(s, -1, false, false);
            }
        } else {
            set_error(s, "enroll: 200 without a valid device_id");
            note_failure(s, -1, false, false);
        }
    } else {
        s->status.link_up = resp->status != 0;
        set_error(s, "enroll: %s (HTTP %ld): %.80s",
                  resp->err ? http_strerror(resp->err) : "refused", resp->status,
                  resp->body ? (const char *)resp->body : resp->error_text);
        note_failure(s, resp->retry_after_ms, sync_outcome_is_network(resp->err, resp->status),
                     o == SYNC_OUTCOME_REVOKED);
    }
    schedule_eval(s);
}

static void start_enroll(struct sync *s)
{
    char pk_hex[2 * crypto_sign_PUBLICKEYBYTES + 1];
    ferry_hex_encode(s->pk, sizeof(s->pk), pk_hex);
    char host[256] = "";
    const char *name = s->cfg.device_name;
    if (!name[0]) {
        if (gethostname(host, sizeof(host) - 1) != 0)
            ferry_strlcpy(host, "unknown", sizeof(host));
        name = host;
    }
    /* Proof of possession: the enrolled key signs the request (transport/reqsign.h). */
    char sig_hex[REQSIGN_SIG_HEX + 1] = "";
    if (reqsign_enroll_sign(s->sk, pk_hex, s->cfg.enroll_token, sig_hex) != 0) {
        set_error(s, "enroll: enroll_token is longer than %d characters", REQSIGN_ENROLL_TOKEN_MAX);
        note_failure(s, -1, false, false);
        return;
    }
    json_t *body =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "token", s->cfg.enroll_token, "public_key", pk_hex,
                  "name", name, "device_class", s->cfg.device_class, "signature", sig_hex);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        set_error(s, "enroll: out of memory");
        note_failure(s, -1, false, false);
        return;
    }
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    struct http_request_opts o;
    http_request_opts_init(&o);
    o.method = "POST";
    o.url = s->url_enroll;
    o.headers = headers;
    o.body = text;
    o.body_len = strlen(text);
    o.deadline_ms = s->cfg.request_deadline_ms;
    o.connect_timeout_ms = s->cfg.request_deadline_ms / 2;
    o.low_speed_bytes_per_s = s->cfg.low_speed_bytes_per_s;
    o.low_speed_time_s = s->cfg.low_speed_time_s;
    o.ca_file = s->cfg.ca_file[0] ? s->cfg.ca_file : NULL;
    o.pinned_public_key = s->cfg.pinned_public_key[0] ? s->cfg.pinned_public_key : NULL;
    o.max_response_bytes = 64 * 1024;
    o.on_done = on_enroll_done;
    o.arg = s;
    /* The body is borrowed by the request until on_done: the engine owns it meanwhile. */
    free(s->enroll_body);
    s->enroll_body = text;
    int rc = http_request_start(s->http, &o, &s->enroll_req);
    if (rc != 0) {
        s->enroll_req = NULL;
        set_error(s, "enroll: %s", http_strerror(rc));
        note_failure(s, -1, false, false);
    }
}

/* ---- batches --------------------------------------------------------------------------------- */

static void on_ack_done(struct sync_job *job)
{
    struct sync_ack *a = (struct sync_ack *)job;
    struct sync *s = job->s;
    if (!s->freeing) {
        s->acks_pending--;
        for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
            if (a->reject)
                s->stream[st].st.rejected_records += a->records[st];
            else
                s->stream[st].st.sent_records += a->records[st];
        }
        if (!a->reject)
            s->status.gaps_reported += a->n_gaps;
        if (a->n_gaps > 0 && a->gaps_max_id > 0)
            log_info("sync", "%zu journal gap(s) up to id %llu %s", a->n_gaps,
                     (unsigned long long)a->gaps_max_id,
                     a->reject ? "set aside with a rejected batch" : "reported to the cloud");
        if (a->n_gaps > 0)
            s->gaps_in_flight = false; /* marked reported now (I4) */
        if (a->err != 0) {
            set_error(s, "%s", a->errmsg);
            reset_cursors(s);
        }
        schedule_eval(s);
    }
    sync_ack_free(a);
}

/* Parses {"acked":{"event":[[f,l],...],...}} and intersects each range with what the batch
 * covered (I2). Streams whose range is not fully covered get their cursor reset (I3). */
/* Orders ack ranges by their first sequence (qsort). */
static int range_cmp(const void *pa, const void *pb)
{
    const struct journal_range *a = pa, *b = pb;
    return a->first < b->first ? -1 : a->first > b->first;
}

/* Records covered by the union of `n` ranges: an ingest may list overlapping or repeated ranges,
 * and counting each would take a partly acknowledged batch for a complete one (found by
 * fuzz.sync.sync_response). Sorts the ranges in place. */
static uint64_t ranges_union_count(struct journal_range *r, size_t n)
{
    if (n == 0)
        return 0;
    qsort(r, n, sizeof(*r), range_cmp);
    uint64_t covered = 0, cur_first = r[0].first, cur_last = r[0].last;
    for (size_t i = 1; i < n; i++) {
        if (r[i].first <= cur_last + 1) {
            if (r[i].last > cur_last)
                cur_last = r[i].last;
            continue;
        }
        covered += cur_last - cur_first + 1;
        cur_first = r[i].first;
        cur_last = r[i].last;
    }
    return covered + (cur_last - cur_first + 1);
}

static int make_ack(struct sync *s, struct sync_batch *b, const struct http_response *resp,
                    struct sync_ack *a)
{
    json_error_t jerr;
    json_t *root =
        resp->body ? json_loadb((const char *)resp->body, resp->body_len, 0, &jerr) : NULL;
    json_t *acked = root ? json_object_get(root, "acked") : NULL;
    for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
        if (!b->has_range[st])
            continue;
        json_t *arr =
            acked ? json_object_get(acked, record_stream_name((enum record_stream)st)) : NULL;
        size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
        if (n > SYNC_MAX_ACK_RANGES)
            n = SYNC_MAX_ACK_RANGES;
        if (n > 0) {
            a->ranges[st] = calloc(n, sizeof(struct journal_range));
            if (!a->ranges[st]) {
                json_decref(root);
                return SYNC_ENOMEM;
            }
        }
        for (size_t i = 0; i < n; i++) {
            json_t *pair = json_array_get(arr, i);
            json_t *jf = json_array_get(pair, 0), *jl = json_array_get(pair, 1);
            if (!json_is_integer(jf) || !json_is_integer(jl))
                continue;
            json_int_t f = json_integer_value(jf), l = json_integer_value(jl);
            if (f <= 0 || l < f)
                continue;
            uint64_t first = (uint64_t)f, last = (uint64_t)l;
            if (first < b->range[st].first)
                first = b->range[st].first;
            if (last > b->range[st].last)
                last = b->range[st].last;
            if (first > last)
                continue;
            a->ranges[st][a->n[st]].first = first;
            a->ranges[st][a->n[st]].last = last;
            a->n[st]++;
        }
        /* The ingest acknowledges the records it received, in runs of seqs. A batch's range
         * may span records acknowledged (and deleted) before, which it did not carry: a range
         * sent newest-first that the backfill's range spans. Those holes in the ack are not a
         * partial store; counting them as one reset the cursor and sent every batch in flight
         * again (e2e-bench: 5,748 of 20,000 records twice). Every record carried is covered
         * when the ack covers as many seqs as the batch carried records. */
        uint64_t covered = ranges_union_count(a->ranges[st], a->n[st]);
        if (covered >= b->range[st].last - b->range[st].first + 1 || covered >= b->records[st])
            a->records[st] = b->records[st];
        else {
            /* Partly stored: what was acked goes; the rest is read again. */
            s->stream[st].cursor = 0;
            s->cursor_epoch++;
            a->records[st] = 0;
        }
    }
    json_decref(root);
    return 0;
}

int sync_parse_ack(struct sync *s, struct sync_batch *b, const struct http_response *resp,
                   struct sync_ack *a)
{
    return make_ack(s, b, resp, a);
}

static void submit_ack(struct sync *s, struct sync_ack *a)
{
    a->job.s = s;
    a->job.run = sync_ack_run;
    a->job.done = on_ack_done;
    s->acks_pending++;
    sync_worker_submit(&s->worker, &a->job);
}

/* A newest-first range goes out: the backfill reads around it until it is answered. Kept
 * ascending (newest-first reads go up: each stops at live_high, above the previous one). */
static void ahead_add(struct sync_stream_state *ss, const struct journal_range *r)
{
    if (ss->n_ahead >= SYNC_MAX_AHEAD)
        return; /* start_build never reads newest-first then */
    unsigned i = ss->n_ahead;
    while (i > 0 && ss->ahead[i - 1].first > r->first) {
        ss->ahead[i] = ss->ahead[i - 1];
        i--;
    }
    ss->ahead[i] = *r;
    ss->n_ahead++;
}

/* Its answer came (the ack job is submitted before any later build, so that build's journal
 * read no longer sees acknowledged records) or it failed (then the cursors were reset). */
static void ahead_remove(struct sync_stream_state *ss, const struct journal_range *r)
{
    for (unsigned i = 0; i < ss->n_ahead; i++) {
        if (ss->ahead[i].first != r->first || ss->ahead[i].last != r->last)
            continue;
        memmove(&ss->ahead[i], &ss->ahead[i + 1], (ss->n_ahead - i - 1) * sizeof(ss->ahead[0]));
        ss->n_ahead--;
        return;
    }
}

static void finish_batch_accounting(struct sync *s, struct sync_batch *b)
{
    struct sync_batch **pp = &s->in_flight;
    while (*pp && *pp != b)
        pp = &(*pp)->next_in_flight;
    if (*pp)
        *pp = b->next_in_flight;
    s->n_in_flight--;
    for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
        uint64_t r = b->raw_bytes[st];
        s->stream[st].in_flight_bytes =
            s->stream[st].in_flight_bytes > r ? s->stream[st].in_flight_bytes - r : 0;
        if (b->mode[st] == SYNC_READ_NEWEST && b->has_range[st])
            ahead_remove(&s->stream[st], &b->range[st]);
    }
}

static void on_batch_done(void *arg, struct http_request *req, const struct http_response *resp)
{
    struct sync_batch *b = arg;
    struct sync *s = b->job.s;
    (void)req;
    b->req = NULL;
    finish_batch_accounting(s, b);
    if (s->freeing) {
        sync_batch_free(b);
        return;
    }
    s->status.last_attempt_unix_ms = ferry_realtime_ns() / 1000000;
    s->status.bytes_on_wire += resp->bytes_sent + resp->bytes_received + resp->header_bytes;
    enum sync_outcome o = sync_classify(resp->err, resp->status);
    const char *body_text = resp->body && resp->body_len ? (const char *)resp->body : "";
    bool gaps_ack_submitted = false;

    switch (o) {
    case SYNC_OUTCOME_SENT: {
        struct sync_ack *a = calloc(1, sizeof(*a));
        if (!a || make_ack(s, b, resp, a) != 0) {
            if (a)
                sync_ack_free(a);
            set_error(s, "ack: out of memory");
            reset_cursors(s);
            break;
        }
        a->gaps_max_id = b->gaps_max_id;
        a->n_gaps = b->n_gaps;
        s->status.batches_sent++;
        s->status.records_on_wire += b->total_records;
        note_success(s);
        s->budget_bytes = sync_next_batch_bytes(
            s->budget_bytes, b->total_raw_bytes, resp->elapsed_ms, s->cfg.request_deadline_ms,
            s->split_cap_bytes ? SYNC_MIN_SPLIT_BYTES : s->cfg.min_batch_bytes,
            s->split_cap_bytes ? s->split_cap_bytes : s->cfg.max_batch_bytes, &s->throughput_bps);
        /* What /status shows: every acknowledged request counts, in records and in payload
         * bytes alike (throughput_bps above is the link estimate that sizes batches, updated
         * only by full batches: it stayed 0 B/s beside a non-zero records/s). */
        if (resp->elapsed_ms > 0 && b->total_records > 0) {
            double rps = (double)b->total_records * 1000.0 / (double)resp->elapsed_ms;
            double bps = (double)b->total_raw_bytes * 1000.0 / (double)resp->elapsed_ms;
            s->throughput_rps = s->throughput_rps > 0 ? (s->throughput_rps + rps) / 2 : rps;
            s->shown_bps = s->shown_bps > 0 ? (s->shown_bps + bps) / 2 : bps;
        }
        gaps_ack_submitted = a->n_gaps > 0;
        submit_ack(s, a);
        break;
    }
    case SYNC_OUTCOME_REJECT: {
        struct sync_ack *a = calloc(1, sizeof(*a));
        if (!a) {
            reset_cursors(s);
            break;
        }
        a->reject = true;
        snprintf(a->reason, sizeof(a->reason), "HTTP %ld: %.160s", resp->status, body_text);
        bool ok = true;
        for (int st = 0; st < RECORD_STREAM_COUNT && ok; st++) {
            if (!b->has_range[st])
                continue;
            a->ranges[st] = calloc(1, sizeof(struct journal_range));
            if (!a->ranges[st]) {
                ok = false;
                break;
            }
            a->ranges[st][0] = b->range[st];
            a->n[st] = 1;
            a->records[st] = b->records[st];
        }
        if (!ok) {
            sync_ack_free(a);
            reset_cursors(s);
            break;
        }
        /* The ingest stored nothing of this batch, its gap reports included: they go again
         * with the next batch, unless they were all the batch held (then they may be the
         * cause, and are set aside with it rather than refused forever). */
        a->gaps_max_id = b->total_records == 0 ? b->gaps_max_id : 0;
        a->n_gaps = b->n_gaps;
        set_error(s, "batch rejected: %s", a->reason);
        s->status.link_up = true;
        gaps_ack_submitted = a->n_gaps > 0;
        submit_ack(s, a);
        break;
    }
    case SYNC_OUTCOME_REENROLL:
        set_error(s, "batch: HTTP 401 (%.100s): enrolling again", body_text);
        if (s->enrolled) {
            s->enrolled = false;
            s->device_id[0] = '\0';
            /* a rare, small commit: acceptable on the loop */
            int drc = journal_state_delete(s->journal, SYNC_STATE_DEVICE_ID,
                                           strlen(SYNC_STATE_DEVICE_ID));
            if (drc != 0)
                set_error(s, "forgetting the device id: %s (enrolling again anyway)",
                          journal_strerror(drc));
        }
        reset_cursors(s);
        break;
    case SYNC_OUTCOME_SPLIT:
        if (b->total_records <= 1) {
            /* one record the ingest will never take: set it aside like a 400 */
            set_error(s, "batch of one record too large (HTTP 413)");
            struct sync_ack *a = calloc(1, sizeof(*a));
            if (a) {
                a->reject = true;
                snprintf(a->reason, sizeof(a->reason), "HTTP 413 for a single record");
                for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
                    if (!b->has_range[st])
                        continue;
                    a->ranges[st] = calloc(1, sizeof(struct journal_range));
                    if (a->ranges[st]) {
                        a->ranges[st][0] = b->range[st];
                        a->n[st] = 1;
                        a->records[st] = b->records[st];
                    }
                }
                submit_ack(s, a);
            }
        } else {
            uint64_t half = b->total_raw_bytes / 2;
            if (half < SYNC_MIN_SPLIT_BYTES)
                half = SYNC_MIN_SPLIT_BYTES;
            /* Only ever lower: the 413 of a larger batch built before an earlier halving may
             * come back after it, and must not raise the cap back to a refused size. */
            if (s->split_cap_bytes == 0 || half < s->split_cap_bytes)
                s->split_cap_bytes = half;
            if (half < s->budget_bytes)
                s->budget_bytes = half;
            set_error(s, "batch too large (HTTP 413): halved to %llu bytes",
                      (unsigned long long)half);
        }
        reset_cursors(s);
        break;
    case SYNC_OUTCOME_REVOKED:
    case SYNC_OUTCOME_RETRY: {
        bool network = sync_outcome_is_network(resp->err, resp->status);
        s->status.link_up = resp->status != 0;
        set_error(s, "batch: %s (HTTP %ld) %.100s",
                  resp->err ? http_strerror(resp->err) : "server busy/error", resp->status,
                  resp->err ? resp->error_text : body_text);
        if (resp->err == HTTP_CLIENT_ETIMEOUT || resp->err == HTTP_CLIENT_ESTALLED) {
            /* the link is slower than the batch assumed: halve it now */
            s->budget_bytes = s->budget_bytes / 2 > s->cfg.min_batch_bytes ? s->budget_bytes / 2
                                                                           : s->cfg.min_batch_bytes;
            s->throughput_bps = 0;
        }
        note_failure(s, resp->retry_after_ms, network, o == SYNC_OUTCOME_REVOKED);
        break;
    }
    }
    /* I4: gaps stay "in flight" until the ack job marked them reported; without one, now. */
    if (b->n_gaps > 0 && !gaps_ack_submitted)
        s->gaps_in_flight = false;
    sync_batch_free(b);
    schedule_eval(s);
}

static void send_batch(struct sync *s, struct sync_batch *b)
{
    /* The device clock at send time, re-signed (ARCHITECTURE.md: clock correction). */
    int rc = batch_patch_send_time(b->wire.data, b->wire.len, ferry_realtime_ns(), s->sk);
    if (rc != 0) {
        set_error(s, "patch send time: %s", batch_strerror(rc));
        sync_batch_free(b);
        return;
    }
    static const char *const headers[] = {"Content-Type: application/octet-stream", NULL};
    struct http_request_opts o;
    http_request_opts_init(&o);
    o.method = "POST";
    o.url = s->url_batches;
    o.headers = headers;
    o.body = b->wire.data;
    o.body_len = b->wire.len;
    o.deadline_ms = s->cfg.request_deadline_ms;
    o.connect_timeout_ms = s->cfg.request_deadline_ms / 2;
    o.low_speed_bytes_per_s = s->cfg.low_speed_bytes_per_s;
    o.low_speed_time_s = s->cfg.low_speed_time_s;
    o.ca_file = s->cfg.ca_file[0] ? s->cfg.ca_file : NULL;
    o.pinned_public_key = s->cfg.pinned_public_key[0] ? s->cfg.pinned_public_key : NULL;
    o.max_response_bytes = 1024 * 1024;
    o.on_done = on_batch_done;
    o.arg = b;
    b->sent_at_ms = now_ms();
    b->next_in_flight = s->in_flight;
    s->in_flight = b;
    s->n_in_flight++;
    for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
        s->stream[st].in_flight_bytes += b->raw_bytes[st];
        if (b->mode[st] == SYNC_READ_NEWEST && b->has_range[st])
            ahead_add(&s->stream[st], &b->range[st]);
    }
    if (b->n_gaps > 0)
        s->gaps_in_flight = true;
    rc = http_request_start(s->http, &o, &b->req);
    if (rc != 0) {
        finish_batch_accounting(s, b);
        if (b->n_gaps > 0)
            s->gaps_in_flight = false;
        set_error(s, "batch request: %s", http_strerror(rc));
        note_failure(s, -1, false, false);
        sync_batch_free(b);
    }
}

static void arm_timer(struct sync *s, int64_t at_ms);

static void on_build_done(struct sync_job *job)
{
    struct sync_batch *b = (struct sync_batch *)job;
    struct sync *s = job->s;
    if (s->freeing) {
        sync_batch_free(b);
        return;
    }
    s->building = false;
    if (b->err != 0) {
        set_error(s, "%s", b->errmsg);
        note_failure(s, -1, false, false);
        sync_batch_free(b);
        schedule_eval(s);
        return;
    }
    /* A reset while this batch was built (a failed or partly acknowledged request) wins: the
     * cursor stays where the reset put it and the records are read again (I3). Moving it past
     * them here stranded them: unsent in the journal, never read again, and the engine building
     * empty batches in a loop (found by a 10,000-device ferry-fleet run: 50 devices). */
    bool stale = b->cursor_epoch != s->cursor_epoch;
    for (int st = 0; st < RECORD_STREAM_COUNT && !stale; st++) {
        if (b->mode[st] == SYNC_READ_OLDEST && b->last_read_seq[st] > s->stream[st].cursor)
            s->stream[st].cursor = b->last_read_seq[st];
        /* Everything below the newest-first range in flight was read: continue after it. */
        if (b->mode[st] == SYNC_READ_OLDEST && b->at_skip[st] &&
            b->skip_to[st] > s->stream[st].cursor)
            s->stream[st].cursor = b->skip_to[st];
        /* Records the budget left behind are older than any latency clock started now: the
         * stream stays due. */
        if (b->more[st])
            s->stream[st].pending_since_ms = 1;
        if (b->mode[st] == SYNC_READ_NEWEST && b->has_range[st] &&
            b->range[st].last > s->stream[st].live_high)
            s->stream[st].live_high = b->range[st].last;
    }
    if (b->wire.len == 0 || !s->enrolled || strcmp(b->device_id, s->device_id) != 0) {
        bool empty = b->wire.len == 0;
        sync_batch_free(b);
        if (empty && ++s->empty_builds >= 2) {
            /* The journal says records wait, reading from the cursor found none: read
             * everything unacknowledged again (safe, I3), and never spin on it: the next
             * evaluation waits a second. */
            if (s->empty_builds == 2)
                log_warn("sync", "nothing to send although the journal has unsent records; "
                                 "reading them again from the start");
            reset_cursors(s);
            arm_timer(s, now_ms() + 1000);
            return;
        }
        schedule_eval(s);
        return;
    }
    s->empty_builds = 0;
    send_batch(s, b);
    schedule_eval(s);
}

/* ---- the scheduler --------------------------------------------------------------------------- */

static void arm_timer(struct sync *s, int64_t at_ms)
{
    if (at_ms <= 0) {
        event_del(s->timer_ev);
        return;
    }
    int64_t d = at_ms - now_ms();
    if (d < 0)
        d = 0;
    struct timeval tv = {.tv_sec = d / 1000, .tv_usec = (d % 1000) * 1000};
    evtimer_add(s->timer_ev, &tv);
}

static int64_t earliest(int64_t a, int64_t b)
{
    if (a <= 0)
        return b;
    if (b <= 0)
        return a;
    return a < b ? a : b;
}

/* The backfill reads oldest-first from the cursor, around the ranges in flight newest-first:
 * from after any that the cursor reached, up to the next one (sync_worker.c stops there). */
static void oldest_read_around_ahead(const struct sync_stream_state *ss, struct sync_batch *b,
                                     int st)
{
    uint64_t from = ss->cursor;
    b->stop_before[st] = 0;
    b->skip_to[st] = 0;
    for (unsigned i = 0; i < ss->n_ahead; i++) {
        const struct journal_range *r = &ss->ahead[i];
        if (r->last <= from)
            continue;
        if (r->first <= from + 1) {
            from = r->last;
            continue;
        }
        b->stop_before[st] = r->first;
        b->skip_to[st] = r->last;
        break;
    }
    b->from_seq[st] = from;
}

static void start_build(struct sync *s, const struct journal_stats *js, const bool due[])
{
    struct sync_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return;
    b->job.s = s;
    b->job.run = sync_batch_build_run;
    b->job.done = on_build_done;
    ferry_strlcpy(b->device_id, s->device_id, sizeof(b->device_id));
    b->budget_bytes = s->budget_bytes;
    b->include_gaps = js->gaps_pending > 0 && !s->gaps_in_flight;
    b->cursor_epoch = s->cursor_epoch;
    int64_t now = now_ms();
    bool catching = false;
    for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
        struct sync_stream_state *ss = &s->stream[st];
        const struct journal_stream_stats *jst = &js->stream[st];
        uint64_t beyond =
            jst->unsent_bytes > ss->in_flight_bytes ? jst->unsent_bytes - ss->in_flight_bytes : 0;
        /* Piggyback: a batch that goes anyway carries every stream that has something. */
        if (beyond == 0 && !due[st])
            continue;
        /* Catch-up (docs/sync.md): more than two batches waiting means the device was offline
         * or the link is slow. Then the newest records go first (one budget's worth, again
         * every latency target while the backfill runs), and the rest oldest-first. */
        if (!ss->catching_up && beyond > 2 * s->budget_bytes) {
            ss->catching_up = true;
            ss->live_high = 0;
            ss->live_sent_ms = 0;
            log_info("sync", "catch-up of %s: %llu records (%llu bytes) wait; newest first",
                     record_stream_name((enum record_stream)st),
                     (unsigned long long)jst->unsent_records, (unsigned long long)beyond);
        } else if (ss->catching_up && beyond <= s->budget_bytes) {
            ss->catching_up = false;
            log_info("sync", "catch-up of %s finished", record_stream_name((enum record_stream)st));
        }
        b->mode[st] = SYNC_READ_OLDEST;
        oldest_read_around_ahead(ss, b, st);
        /* A newest-first read stops above both what went newest-first before and what the
         * backfill already read (in flight or acknowledged): no record is read twice. */
        uint64_t newest = jst->next_seq > 0 ? jst->next_seq - 1 : 0;
        uint64_t floor = ss->live_high > ss->cursor ? ss->live_high : ss->cursor;
        if (ss->catching_up && newest > floor && ss->n_ahead < SYNC_MAX_AHEAD &&
            (ss->live_sent_ms == 0 || now - ss->live_sent_ms >= s->cfg.latency_ms[st])) {
            b->mode[st] = SYNC_READ_NEWEST;
            b->from_seq[st] = floor;
            b->stop_before[st] = 0;
            b->skip_to[st] = 0;
            ss->live_sent_ms = now;
        }
        catching |= ss->catching_up;
        ss->pending_since_ms = 0;
    }
    s->status.catching_up = catching;
    s->building = true;
    sync_worker_submit(&s->worker, &b->job);
}

static void on_release_done(struct sync_job *job)
{
    struct sync *s = job->s;
    if (!s->freeing) {
        s->releasing = false;
        schedule_eval(s);
    }
    free(job);
}

/* Nothing waits and nothing is in flight: give the builder's memory back (sync_release_run). */
static void release_builder(struct sync *s)
{
    struct sync_job *job = calloc(1, sizeof(*job));
    if (!job)
        return;
    job->s = s;
    job->run = sync_release_run;
    job->done = on_release_done;
    s->builder_live = false;
    s->releasing = true;
    sync_worker_submit(&s->worker, job);
}

static void heartbeat(struct sync *s)
{
    char uptime[32];
    snprintf(uptime, sizeof(uptime), "%lld", (long long)((now_ms() - s->start_ms) / 1000));
    const char *keys[] = {"uptime_s"};
    const char *values[] = {uptime};
    /* NONBLOCK: a full queue must not stall the loop; the next heartbeat tries again. */
    (void)sync_append_event(s, "heartbeat", keys, values, 1, JOURNAL_APPEND_NONBLOCK);
    s->last_send_ok_ms = now_ms();
    s->heartbeat_pending = true;
}

static void evaluate(struct sync *s)
{
    if (s->freeing)
        return;
    if (!s->url_batches) {
        arm_timer(s, 0);
        return;
    }
    int64_t now = now_ms();
    if (s->next_attempt_ms > now) {
        arm_timer(s, s->next_attempt_ms);
        return;
    }
    if (!s->enrolled) {
        if (!s->enroll_req)
            start_enroll(s);
        arm_timer(s, s->next_attempt_ms > now ? s->next_attempt_ms : 0);
        return;
    }
    if (now - s->last_send_ok_ms >= s->cfg.heartbeat_ms)
        heartbeat(s);

    struct journal_stats js;
    if (journal_stats(s->journal, &js) != 0) {
        arm_timer(s, now + 1000);
        return;
    }
    bool due[RECORD_STREAM_COUNT] = {false};
    bool any_due = false, any_beyond = false;
    int64_t next_deadline = s->last_send_ok_ms + s->cfg.heartbeat_ms;
    for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
        struct sync_stream_state *ss = &s->stream[st];
        const struct journal_stream_stats *jst = &js.stream[st];
        ss->st.backlog_records = jst->unsent_records;
        ss->st.backlog_bytes = jst->unsent_bytes;
        ss->st.oldest_unsent_age_ms = jst->oldest_unsent_age_ms;
        uint64_t beyond =
            jst->unsent_bytes > ss->in_flight_bytes ? jst->unsent_bytes - ss->in_flight_bytes : 0;
        if (beyond == 0) {
            ss->pending_since_ms = 0;
            continue;
        }
        any_beyond = true;
        if (ss->pending_since_ms == 0) {
            /* The journal's oldest unsent record is the clock's start, unless it is one already
             * in flight: then the waiting ones arrived after that batch was built. */
            int64_t age = ss->in_flight_bytes > 0 ? 0 : jst->oldest_unsent_age_ms;
            if (age < 0)
                age = 0; /* a clock that jumped back: count from now */
            ss->pending_since_ms = now - age > 1 ? now - age : 1;
        }
        int64_t deadline = ss->pending_since_ms + s->cfg.latency_ms[st];
        if (beyond >= s->cfg.threshold_bytes[st] || now >= deadline || ss->catching_up ||
            (st == RECORD_EVENT && s->heartbeat_pending))
            due[st] = true;
        else
            next_deadline = earliest(next_deadline, deadline);
        any_due |= due[st];
    }
    if (js.gaps_pending > 0 && !s->gaps_in_flight)
        any_due = true;

    if (any_due && !s->building && !s->releasing && s->n_in_flight < s->cfg.max_in_flight) {
        s->heartbeat_pending = false;
        s->builder_live = true;
        start_build(s, &js, due);
    } else if (!any_beyond && !s->building && s->n_in_flight == 0 && s->acks_pending == 0 &&
               s->builder_live && !s->releasing) {
        release_builder(s);
    }
    /* When a build or request finishes, evaluate() runs again; the timer only needs to cover
     * deadlines that nothing else will wake us for. */
    arm_timer(s, next_deadline);
}

static void on_eval(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evaluate(arg);
}

static void on_netlink(void *arg)
{
    struct sync *s = arg;
    /* Connectivity may have appeared: a backoff that began because the network was down ends
     * now. A server's Retry-After is not cut short. */
    if (s->failures > 0 && s->last_failure_network)
        s->next_attempt_ms = 0;
    for (int st = 0; st < RECORD_STREAM_COUNT; st++)
        if (s->stream[st].pending_since_ms > 0)
            s->stream[st].pending_since_ms = 1;
    schedule_eval(s);
}

/* ---- public API ------------------------------------------------------------------------------ */

int sync_new(struct event_base *base, struct journal *journal, const struct sync_config *cfg,
             struct sync **out, char *errbuf, size_t errlen)
{
    char dummy[2];
    if (!errbuf || errlen == 0) {
        errbuf = dummy;
        errlen = sizeof(dummy);
    }
    errbuf[0] = '\0';
    if (!base || !journal || !cfg || !out) {
        snprintf(errbuf, errlen, "sync_new: missing argument");
        return SYNC_EINVAL;
    }
    if (sodium_init() < 0) {
        snprintf(errbuf, errlen, "sync_new: libsodium failed to initialise");
        return SYNC_EKEY;
    }
    struct sync *s = calloc(1, sizeof(*s));
    if (!s)
        return SYNC_ENOMEM;
    s->base = base;
    s->journal = journal;
    int rc = config_copy(cfg, &s->cfg, errbuf, errlen);
    if (rc != 0) {
        free(s);
        return rc;
    }
    rc = apply_urls(s);
    if (rc != 0)
        goto fail;
    rc = sync_identity_load(s->cfg.data_dir, s->sk, s->pk, errbuf, errlen);
    if (rc != 0)
        goto fail;
    size_t idlen = 0;
    int jrc = journal_state_get(journal, SYNC_STATE_DEVICE_ID, strlen(SYNC_STATE_DEVICE_ID),
                                s->device_id, sizeof(s->device_id) - 1, &idlen);
    if (jrc == 0 && batch_device_id_valid(s->device_id, idlen)) {
        s->device_id[idlen] = '\0';
        s->enrolled = true;
    } else if (jrc != 0 && jrc != JOURNAL_ENOTFOUND && jrc != JOURNAL_ETOOBIG) {
        snprintf(errbuf, errlen, "journal state %s: %s", SYNC_STATE_DEVICE_ID,
                 journal_strerror(jrc));
        rc = SYNC_EJOURNAL;
        goto fail;
    } else {
        s->device_id[0] = '\0';
    }
    s->zstd_level = s->cfg.zstd_level;
    s->no_process_release = s->cfg.no_process_release;
    s->gap_scratch = calloc(BATCH_MAX_GAPS, sizeof(struct journal_gap));
    s->eval_ev = event_new(base, -1, 0, on_eval, s);
    s->timer_ev = evtimer_new(base, on_eval, s);
    if (!s->gap_scratch || !s->eval_ev || !s->timer_ev) {
        rc = SYNC_ENOMEM;
        goto fail;
    }
    s->http = http_client_new(base);
    if (!s->http) {
        snprintf(errbuf, errlen, "sync: cannot create the HTTP client (libcurl)");
        rc = SYNC_EHTTP;
        goto fail;
    }
    rc = sync_worker_start(&s->worker, base);
    if (rc != 0) {
        snprintf(errbuf, errlen, "sync: cannot start the helper thread: %s", strerror(errno));
        goto fail;
    }
    if (!s->cfg.no_netlink) {
        /* Without netlink (a sandbox) the engine still works, on timers only. */
        if (netlink_watch_new(base, on_netlink, s, &s->netlink) != 0)
            s->netlink = NULL;
    }
    s->budget_bytes = s->cfg.min_batch_bytes * 4 < s->cfg.max_batch_bytes
                          ? s->cfg.min_batch_bytes * 4
                          : s->cfg.max_batch_bytes;
    s->start_ms = now_ms();
    s->last_send_ok_ms = s->start_ms;
    randombytes_buf(&s->rng, sizeof(s->rng));
    s->rng |= 1;
    s->status.enrolled = s->enrolled;
    schedule_eval(s);
    *out = s;
    return 0;
fail:
    sync_free(s);
    return rc;
}

void sync_free(struct sync *s)
{
    if (!s)
        return;
    s->freeing = true;
    /* Cancels in-flight requests: their callbacks see `freeing` and only release. */
    http_client_free(s->http);
    s->http = NULL;
    sync_worker_stop(&s->worker);
    netlink_watch_free(s->netlink);
    if (s->eval_ev)
        event_free(s->eval_ev);
    if (s->timer_ev)
        event_free(s->timer_ev);
    batch_builder_free(s->builder);
    free(s->gap_scratch);
    free(s->url_batches);
    free(s->url_enroll);
    free(s->enroll_body);
    sodium_memzero(s->sk, sizeof(s->sk));
    config_free_strings(&s->cfg);
    free(s);
}

void sync_wake(struct sync *s)
{
    if (s)
        schedule_eval(s);
}

bool sync_wants_commit_wake(const struct sync *s)
{
    if (!s || s->freeing || !s->url_batches)
        return false;
    return s->next_attempt_ms <= now_ms() + SYNC_COMMIT_WAKE_MARGIN_MS;
}

void sync_get_status(struct sync *s, struct sync_status *out)
{
    *out = s->status;
    ferry_strlcpy(out->device_id, s->device_id, sizeof(out->device_id));
    out->enrolled = s->enrolled;
    int64_t now = now_ms();
    out->next_attempt_in_ms = s->next_attempt_ms > now ? s->next_attempt_ms - now : 0;
    out->batch_budget_bytes = s->budget_bytes;
    out->throughput_bytes_per_s = s->shown_bps;
    out->throughput_records_per_s = s->throughput_rps;
    out->in_flight = s->n_in_flight;
    struct journal_stats js;
    bool have = journal_stats(s->journal, &js) == 0;
    for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
        out->stream[st] = s->stream[st].st;
        if (have) {
            out->stream[st].backlog_records = js.stream[st].unsent_records;
            out->stream[st].backlog_bytes = js.stream[st].unsent_bytes;
            out->stream[st].oldest_unsent_age_ms = js.stream[st].oldest_unsent_age_ms;
        }
    }
}

int sync_reload(struct sync *s, const struct sync_config *cfg, char *errbuf, size_t errlen)
{
    char dummy[2];
    if (!errbuf || errlen == 0) {
        errbuf = dummy;
        errlen = sizeof(dummy);
    }
    struct sync_config fresh;
    int rc = config_copy(cfg, &fresh, errbuf, errlen);
    if (rc != 0)
        return rc;
    /* The key stays where it was loaded from. */
    free((char *)fresh.data_dir);
    fresh.data_dir = strdup(s->cfg.data_dir);
    if (!fresh.data_dir) {
        config_free_strings(&fresh);
        return SYNC_ENOMEM;
    }
    bool server_changed = strcmp(fresh.server_url, s->cfg.server_url) != 0;
    bool token_changed = strcmp(fresh.enroll_token, s->cfg.enroll_token) != 0;
    config_free_strings(&s->cfg);
    s->cfg = fresh;
    rc = apply_urls(s);
    if (rc != 0)
        return rc;
    if (s->budget_bytes > s->cfg.max_batch_bytes)
        s->budget_bytes = s->cfg.max_batch_bytes;
    if (s->budget_bytes < s->cfg.min_batch_bytes)
        s->budget_bytes = s->cfg.min_batch_bytes;
    if (server_changed || token_changed) {
        /* A new server or token: try at once (an enrollment that failed may succeed now). */
        s->next_attempt_ms = 0;
        s->failures = 0;
    }
    schedule_eval(s);
    return 0;
}
