/*
 * batches.c - the receive path of POST /v1/batches, from body bytes to a job ready to commit,
 * and the acknowledgement once it is committed.
 *
 * The order of the checks is the contract (ARCHITECTURE.md, invariant 4: nothing unverified is
 * trusted): size -> header -> device known, not revoked -> signature and body hash -> fair share
 * -> bounded decompression and decode. Fair share comes after the signature so that forged
 * batches naming a device cannot spend its budget. Nothing of the body is decompressed or parsed
 * before the signature verified; the header parse itself is bounded by BATCH_MAX_HEADER_LEN.
 *
 * Clock correction (docs/ingest.md "Clock correction"): offset = ingest receive time - the
 * device's send-time clock from the header. When |offset| > clock.threshold (default 60 s, far
 * above network and queueing delays) the device clock is considered wrong and every record gets
 * ts_corrected = ts + offset; otherwise ts_corrected = ts. Both are stored; ts is never changed.
 *
 * This file runs on worker threads (and in the fuzz target); it never blocks on the network.
 * The only store access is the device lookup on a cache miss (devtab.c).
 */
#include <dirent.h>
#include <jansson.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud-ingest/ingest.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/utf8.h"
#include "common/util.h"
#include "transport/batch.h"

#define HEALTH_TAIL_RECORDS 16 /* health values are taken from a batch's last metric records */

struct ingest_job *ingest_job_new(void)
{
    struct ingest_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return NULL;
    job->arena = calloc(1, sizeof(*job->arena));
    job->versions_json = calloc(1, sizeof(*job->versions_json));
    if (job->arena == NULL || job->versions_json == NULL) {
        ingest_job_free(job);
        return NULL;
    }
    /* Payloads are bounded by what one batch may decompress to, plus per-record overhead. */
    job->arena->max = (size_t)BATCH_MAX_BODY_RAW * 4;
    return job;
}

void ingest_job_free(struct ingest_job *job)
{
    if (job == NULL)
        return;
    if (job->arena != NULL)
        ferry_buf_free(job->arena);
    if (job->versions_json != NULL)
        ferry_buf_free(job->versions_json);
    free(job->arena);
    free(job->versions_json);
    json_decref(job->updates);
    json_decref(job->action_results);
    free(job->updates_json);
    free(job->inventory_json);
    free(job->recs);
    free(job->offs);
    free(job->scratch);
    free(job);
}

void ingest_job_reset(struct ingest_job *job)
{
    memset(&job->write, 0, sizeof(job->write));
    job->device_id[0] = '\0';
    job->batch_id_hex[0] = '\0';
    job->n_gaps_reported = 0;
    ferry_buf_reset(job->arena);
    ferry_buf_reset(job->versions_json);
    json_decref(job->updates);
    job->updates = NULL;
    json_decref(job->action_results);
    job->action_results = NULL;
    free(job->updates_json);
    job->updates_json = NULL;
    free(job->inventory_json);
    job->inventory_json = NULL;
    job->inventory_ts_ns = 0;
    job->decode_status = 0;
    job->decode_msg[0] = '\0';
    job->next = NULL;
    job->commit_result = 0;
    job->req = NULL;
    job->worker = NULL;
}

/* Saturating arithmetic: device clocks and timestamps come from outside and may be anything. */
static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_sub(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r))
        return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

struct decode_state {
    struct ingest_job *job;
    const struct batch_header *h;
    int64_t offset_ns;
    bool correct;
};

static int job_fail(struct ingest_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int job_fail(struct ingest_job *job, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    job->decode_status = 400;
    vsnprintf(job->decode_msg, sizeof(job->decode_msg), fmt, ap);
    va_end(ap);
    return 1;
}

/* True when a string the device reported may enter the versions object: 1..64 bytes of
 * printable ASCII. Anything else (control bytes, NUL, non-UTF-8) is skipped rather than stored:
 * PostgreSQL's jsonb refuses \u0000, and one such value must not fail a whole group commit. */
static bool versions_str_ok(const char *p, size_t len)
{
    if (len == 0 || len > INGEST_VERSION_STR_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e)
            return false;
    return true;
}

/* Merges a versions patch (JSON object text) into the batch's versions object; a merge that
 * would not fit INGEST_VERSIONS_MAX is dropped whole. */
static void merge_versions(struct ingest_job *job, const char *patch)
{
    char merged[INGEST_VERSIONS_MAX + 1];
    const char *before =
        job->versions_json->len > 0 ? (const char *)job->versions_json->data : "{}";
    if (ingest_versions_merge(before, patch, merged, sizeof(merged)) != 0)
        return;
    ferry_buf_reset(job->versions_json);
    if (ferry_buf_append(job->versions_json, merged, strlen(merged) + 1) != 0)
        ferry_buf_reset(job->versions_json);
}

/* Merges one "versions" event into the batch's versions object: at most INGEST_VERSIONS_KEYS_MAX
 * string fields are taken, each key and value checked by versions_str_ok(). A later event of
 * the same batch wins per key; an event whose merge would not fit INGEST_VERSIONS_MAX is
 * dropped whole. */
static void take_versions(struct ingest_job *job, const struct record *r)
{
    char event_json[INGEST_VERSIONS_MAX + 1];
    struct ferry_buf b = {0};
    b.max = INGEST_VERSIONS_MAX + 1;
    int e = ferry_buf_append_u8(&b, '{');
    size_t taken = 0;
    for (size_t i = 0; i < r->n_fields && e == 0 && taken < INGEST_VERSIONS_KEYS_MAX; i++) {
        const struct record_field *f = &r->fields[i];
        if (f->type != RECORD_FIELD_STRING || !versions_str_ok(f->key.ptr, f->key.len) ||
            !versions_str_ok(f->v.s.ptr, f->v.s.len))
            continue;
        if (taken++ > 0)
            e |= ferry_buf_append_u8(&b, ',');
        e |= ferry_buf_append_json_string(&b, f->key.ptr, f->key.len);
        e |= ferry_buf_append_u8(&b, ':');
        e |= ferry_buf_append_json_string(&b, f->v.s.ptr, f->v.s.len);
    }
    e |= ferry_buf_append(&b, "}", 2); /* with the NUL */
    if (e != 0 || taken == 0 || b.len > sizeof(event_json)) {
        ferry_buf_free(&b);
        return;
    }
    memcpy(event_json, b.data, b.len);
    ferry_buf_free(&b);
    merge_versions(job, event_json);
}

/* Takes one "ota.<state>" event of the OTA agent (docs/ota.md) into the batch's update states:
 * the entry {"state","running_version","target_version","reason","bytes_done","ts","seq"} of
 * its `component`. Strings must pass versions_str_ok() (1..64 printable ASCII bytes), others are
 * left out; `state` defaults to the name's suffix; bytes_done is taken when it is a decimal
 * number (string field, as the agent sends it) or an integer field. An event without a valid
 * component is ignored. Newest sequence wins per component (ingest_updates_merge_json). */
/* An "action.result" event: kept for actions_take_results() after the batch's commit. Fields
 * are copied as they are (bounded by the record limits); actions.c cleans and caps them. */
static void take_action_result(struct ingest_job *job, const struct record *r)
{
    json_t *o = json_object();
    if (o == NULL)
        return;
    for (size_t i = 0; i < r->n_fields; i++) {
        const struct record_field *f = &r->fields[i];
        char key[16];
        if (f->key.len == 0 || f->key.len >= sizeof(key))
            continue;
        memcpy(key, f->key.ptr, f->key.len);
        key[f->key.len] = '\0';
        if (f->type == RECORD_FIELD_STRING &&
            (strcmp(key, "id") == 0 || strcmp(key, "status") == 0 || strcmp(key, "output") == 0 ||
             strcmp(key, "reason") == 0)) {
            struct ferry_buf b = FERRY_BUF_INIT;
            if (ferry_buf_append_utf8(&b, f->v.s.ptr, f->v.s.len) == 0)
                json_object_set_new(o, key,
                                    json_stringn(b.data ? (const char *)b.data : "", b.len));
            ferry_buf_free(&b);
        } else if (f->type == RECORD_FIELD_INT && strcmp(key, "exit_code") == 0)
            json_object_set_new(o, key, json_integer(f->v.i));
    }
    json_object_set_new(o, "ts", json_integer(r->ts_ns));
    if (!json_is_string(json_object_get(o, "id")) ||
        (job->action_results == NULL && (job->action_results = json_array()) == NULL) ||
        json_array_append(job->action_results, o) != 0)
        log_limited(5, FERRY_LOG_WARN, "ingest", "device %s: an action.result event not taken",
                    job->device_id);
    json_decref(o);
}

static void take_ota_event(struct ingest_job *job, const struct record *r)
{
    static const char *const keys[] = {"state", "running_version", "target_version", "reason"};
    json_t *entry = json_object(), *patch = json_object();
    const struct record_str *component = NULL;
    if (entry == NULL || patch == NULL)
        goto out;
    for (size_t i = 0; i < r->n_fields; i++) {
        const struct record_field *f = &r->fields[i];
        if (f->key.len == 10 && memcmp(f->key.ptr, "bytes_done", 10) == 0) {
            uint64_t v = 0;
            char num[24];
            if (f->type == RECORD_FIELD_INT && f->v.i >= 0)
                json_object_set_new(entry, "bytes_done", json_integer(f->v.i));
            else if (f->type == RECORD_FIELD_STRING && f->v.s.len > 0 && f->v.s.len < sizeof(num)) {
                memcpy(num, f->v.s.ptr, f->v.s.len);
                num[f->v.s.len] = '\0';
                if (ferry_parse_u64(num, INT64_MAX, &v) == 0)
                    json_object_set_new(entry, "bytes_done", json_integer((json_int_t)v));
            }
            continue;
        }
        if (f->type != RECORD_FIELD_STRING || !versions_str_ok(f->v.s.ptr, f->v.s.len))
            continue;
        if (f->key.len == 9 && memcmp(f->key.ptr, "component", 9) == 0) {
            component = &f->v.s;
            continue;
        }
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
            if (f->key.len == strlen(keys[k]) && memcmp(f->key.ptr, keys[k], f->key.len) == 0)
                json_object_set_new(entry, keys[k], json_stringn(f->v.s.ptr, f->v.s.len));
    }
    if (component == NULL)
        goto out;
    if (json_object_get(entry, "state") == NULL &&
        versions_str_ok(r->name.ptr + 4, r->name.len - 4))
        json_object_set_new(entry, "state", json_stringn(r->name.ptr + 4, r->name.len - 4));
    json_object_set_new(entry, "ts", json_integer(r->ts_ns));
    json_object_set_new(entry, "seq", json_integer((json_int_t)r->seq));
    char name[INGEST_VERSION_STR_MAX + 1];
    memcpy(name, component->ptr, component->len);
    name[component->len] = '\0';
    if (json_object_set(patch, name, entry) != 0)
        goto out;
    if (job->updates == NULL && (job->updates = json_object()) == NULL)
        goto out;
    if (ingest_updates_merge_json(job->updates, patch) != 0)
        goto out;
    /* A committed update changes what the device runs: its component's running version goes
     * into the versions object at once (docs/ingest.md), not only at ferryd's next start. */
    json_t *state = json_object_get(entry, "state"),
           *running = json_object_get(entry, "running_version");
    if (json_is_string(state) && strcmp(json_string_value(state), "committed") == 0 &&
        json_is_string(running)) {
        json_t *v = json_object();
        char *text = NULL;
        if (v != NULL && json_object_set(v, name, running) == 0 &&
            (text = json_dumps(v, JSON_COMPACT)) != NULL)
            merge_versions(job, text);
        free(text);
        json_decref(v);
    }
out:
    json_decref(entry);
    json_decref(patch);
}

/* Sets `key` (sanitised to UTF-8) in `o` to the field's value: strings sanitised to valid UTF-8
 * (common/utf8.h), integers, finite floats and booleans as JSON values. Keys and strings longer
 * than INGEST_INVENTORY_STR_MAX bytes, non-finite floats and unsigned values beyond int64 are
 * left out. */
static void inventory_set_field(json_t *o, const struct record_field *f)
{
    if (f->key.len == 0 || f->key.len > INGEST_INVENTORY_STR_MAX)
        return;
    struct ferry_buf key = FERRY_BUF_INIT, str = FERRY_BUF_INIT;
    json_t *v = NULL;
    switch (f->type) {
    case RECORD_FIELD_STRING:
        if (f->v.s.len <= INGEST_INVENTORY_STR_MAX &&
            ferry_buf_append_utf8(&str, f->v.s.ptr, f->v.s.len) == 0)
            v = json_stringn(str.data ? (const char *)str.data : "", str.len);
        break;
    case RECORD_FIELD_INT: v = json_integer(f->v.i); break;
    case RECORD_FIELD_UINT:
        if (f->v.u <= INT64_MAX)
            v = json_integer((json_int_t)f->v.u);
        break;
    case RECORD_FIELD_FLOAT: v = isfinite(f->v.f) ? json_real(f->v.f) : NULL; break;
    case RECORD_FIELD_BOOL: v = json_boolean(f->v.b); break;
    }
    if (v != NULL && ferry_buf_append_utf8(&key, f->key.ptr, f->key.len) == 0 &&
        ferry_buf_append_u8(&key, '\0') == 0)
        json_object_set(o, (const char *)key.data, v);
    json_decref(v);
    ferry_buf_free(&key);
    ferry_buf_free(&str);
}

/* Takes an "inventory" event (what the device is: docs/ingest.md "Inventory") when it is the
 * batch's newest by device time (equal times: the later sequence). At most
 * INGEST_INVENTORY_FIELDS_MAX fields are taken (inventory_set_field); an event whose JSON text
 * exceeds INGEST_INVENTORY_MAX bytes is left out with a warning. */
static void take_inventory(struct ingest_job *job, const struct record *r)
{
    if (job->inventory_json != NULL && r->ts_ns < job->inventory_ts_ns)
        return;
    json_t *o = json_object();
    if (o == NULL)
        return;
    for (size_t i = 0; i < r->n_fields && json_object_size(o) < INGEST_INVENTORY_FIELDS_MAX; i++)
        inventory_set_field(o, &r->fields[i]);
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (text == NULL || strlen(text) > INGEST_INVENTORY_MAX) {
        log_limited(5, FERRY_LOG_WARN, "ingest",
                    "device %s: inventory event seq %" PRIu64 " left out (%s)", job->device_id,
                    r->seq, text == NULL ? "out of memory" : "larger than 4096 bytes");
        free(text);
        return;
    }
    free(job->inventory_json);
    job->inventory_json = text;
    job->inventory_ts_ns = r->ts_ns;
}

/* Record callback of batch_decode: checks the record's sequence against the header and keeps a
 * packed copy. */
static int on_record(void *arg, const struct record *r)
{
    struct decode_state *st = arg;
    struct ingest_job *job = st->job;
    size_t n = job->write.n_recs;
    if ((unsigned)r->stream >= RECORD_STREAM_COUNT)
        return job_fail(job, "body: record %zu has stream %d", n, (int)r->stream);
    const struct batch_range *range = NULL;
    for (size_t i = 0; i < st->h->n_ranges; i++)
        if (st->h->ranges[i].stream == r->stream)
            range = &st->h->ranges[i];
    if (r->seq == 0 || r->seq > INT64_MAX || range == NULL || r->seq < range->first ||
        r->seq > range->last)
        return job_fail(
            job, "body: record %zu has seq %" PRIu64 " outside the header's range for its stream",
            n, r->seq);
    if (n == job->recs_cap) {
        size_t cap = job->recs_cap ? job->recs_cap * 2 : 256;
        struct ingest_rec *recs = realloc(job->recs, cap * sizeof(*recs));
        if (recs == NULL)
            return job_fail(job, "out of memory at record %zu", n);
        job->recs = recs;
        size_t *offs = realloc(job->offs, cap * sizeof(*offs));
        if (offs == NULL)
            return job_fail(job, "out of memory at record %zu", n);
        job->offs = offs;
        job->recs_cap = cap;
    }
    size_t off = job->arena->len;
    if (record_pack(r, job->arena) != 0)
        return job_fail(job, "body: record %zu (seq %" PRIu64 ") breaks a record limit", n, r->seq);
    struct ingest_rec *rec = &job->recs[n];
    rec->stream = (uint8_t)r->stream;
    rec->seq = r->seq;
    rec->ts_ns = r->ts_ns;
    rec->ts_corrected_ns = st->correct ? sat_add(r->ts_ns, st->offset_ns) : r->ts_ns;
    rec->packed = NULL;
    rec->packed_len = job->arena->len - off;
    job->offs[n] = off;
    job->write.n_recs = n + 1;
    /* An event named "versions" reports what the device runs: its string fields are merged per
     * key into the device's versions object (docs/ingest.md "Versions and update state"). */
    if (r->stream == RECORD_EVENT && r->name.len == 8 && memcmp(r->name.ptr, "versions", 8) == 0)
        take_versions(job, r);
    else if (r->stream == RECORD_EVENT && r->name.len > 4 && memcmp(r->name.ptr, "ota.", 4) == 0)
        take_ota_event(job, r);
    else if (r->stream == RECORD_EVENT && r->name.len == 13 &&
             memcmp(r->name.ptr, "action.result", 13) == 0)
        take_action_result(job, r);
    else if (r->stream == RECORD_EVENT && r->name.len == 9 &&
             memcmp(r->name.ptr, "inventory", 9) == 0)
        take_inventory(job, r);
    return 0;
}

static int status_of_batch_error(int err)
{
    switch (err) {
    case BATCH_EKEY:
    case BATCH_ESIG: return 401;
    case BATCH_ELIMIT: return 413;
    default: return 400;
    }
}

int ingest_batch_prepare(struct ingest_ctx *ctx, struct batch_decoder *dec, const uint8_t *body,
                         size_t len, int64_t now_ns, struct ingest_job *job, char *msg,
                         size_t msg_len, unsigned *retry_after_s)
{
    struct batch_errinfo ei;
    struct batch_header h;
    uint8_t pk[32];
    *retry_after_s = 0;
    ingest_job_reset(job);
    if (len > ctx->cfg->max_body_bytes) {
        snprintf(msg, msg_len, "body of %zu bytes exceeds the limit of %" PRIu64, len,
                 ctx->cfg->max_body_bytes);
        return 413;
    }
    memset(&ei, 0, sizeof(ei));
    int rc = batch_peek_header(body, len, &h, &ei);
    if (rc != 0) {
        snprintf(msg, msg_len, "header: %s (%s)", batch_strerror(rc), ei.msg);
        return rc == BATCH_ELIMIT ? 413 : 400;
    }
    ferry_strlcpy(job->device_id, h.device_id, sizeof(job->device_id));
    switch (ingest_devtab_lookup(ctx->devtab, job->device_id, pk)) {
    case INGEST_ADMIT_OK: break;
    case INGEST_ADMIT_UNKNOWN:
        snprintf(msg, msg_len, "unknown device %s: enroll first", job->device_id);
        return 401;
    case INGEST_ADMIT_REVOKED:
        snprintf(msg, msg_len, "device %s is revoked", job->device_id);
        return 403;
    case INGEST_ADMIT_LIMITED:
    case INGEST_ADMIT_ERROR:
        *retry_after_s = 1;
        snprintf(msg, msg_len, "device lookup failed");
        return 503;
    }
    memset(&ei, 0, sizeof(ei));
    rc = batch_verify(body, len, &h, pk, &ei);
    if (rc != 0) {
        snprintf(msg, msg_len, "signature: %s (%s)", batch_strerror(rc), ei.msg);
        return 401;
    }
    /* Only a verified batch is charged to the device's fair share. */
    switch (ingest_devtab_acquire(ctx->devtab, job->device_id, retry_after_s)) {
    case INGEST_ADMIT_OK: break;
    case INGEST_ADMIT_LIMITED:
        snprintf(msg, msg_len, "device %s exceeds its fair share", job->device_id);
        return 429;
    default:
        *retry_after_s = 1;
        snprintf(msg, msg_len, "device table error");
        return 503;
    }
    /* From here on the device holds one in-flight slot: every failure gives it back. */
    int status = 200;
    struct decode_state st = {job, &h, sat_sub(now_ns, h.send_time_ns), false};
    st.correct = st.offset_ns > ctx->cfg->clock_threshold_ms * 1000000 ||
                 st.offset_ns < -ctx->cfg->clock_threshold_ms * 1000000;
    memset(&ei, 0, sizeof(ei));
    struct batch_header h_again; /* given, so that the decoder does not allocate one */
    rc = batch_decode_unverified(dec, body, len, &h_again, on_record, &st, &ei);
    if (rc == BATCH_ECALLBACK && job->decode_status != 0) {
        snprintf(msg, msg_len, "%s", job->decode_msg);
        status = job->decode_status;
        goto fail;
    }
    if (rc != 0) {
        snprintf(msg, msg_len, "%s: %s (%s, byte %zu)", ei.in_body ? "body" : "batch",
                 batch_strerror(rc), ei.msg, ei.offset);
        status = status_of_batch_error(rc);
        if (status == 401)
            status = 400;
        goto fail;
    }
    for (size_t i = 0; i < job->write.n_recs; i++)
        job->recs[i].packed = job->arena->data + job->offs[i];
    for (size_t i = 0; i < h.n_gaps; i++) {
        job->gaps[i].stream = (uint8_t)h.gaps[i].stream;
        job->gaps[i].first_seq = h.gaps[i].first;
        job->gaps[i].last_seq = h.gaps[i].last;
        if (h.gaps[i].last > INT64_MAX) {
            snprintf(msg, msg_len, "header: gap %zu ends beyond the largest sequence", i);
            status = 400;
            goto fail;
        }
    }
    job->n_gaps_reported = h.n_gaps;
    ferry_hex_encode(h.batch_id, BATCH_ID_LEN, job->batch_id_hex);
    job->write.device_id = job->device_id;
    job->write.received_ns = now_ns;
    job->write.clock_offset_ns = st.offset_ns;
    job->write.recs = job->recs;
    job->write.gaps = job->gaps;
    job->write.n_gaps = h.n_gaps;
    job->write.has_backlog = h.has_backlog; /* wire version 2 */
    for (int k = 0; k < RECORD_STREAM_COUNT; k++)
        job->write.backlog[k] = h.backlog[k] > INT64_MAX ? INT64_MAX : h.backlog[k];
    job->write.versions_json =
        job->versions_json->len > 0 ? (const char *)job->versions_json->data : NULL;
    if (job->updates != NULL && json_object_size(job->updates) > 0) {
        job->updates_json = json_dumps(job->updates, JSON_COMPACT | JSON_SORT_KEYS);
        if (job->updates_json == NULL) {
            snprintf(msg, msg_len, "out of memory rendering update states");
            status = 503;
            *retry_after_s = 1;
            goto fail;
        }
    }
    job->write.updates_json = job->updates_json;
    job->write.inventory_json = job->inventory_json;
    job->write.inventory_ts_ns = job->inventory_ts_ns;
    return 200;
fail:
    ingest_devtab_done(ctx->devtab, job->device_id);
    return status;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int ingest_batch_ack(const struct ingest_job *job, struct ferry_buf *out)
{
    int e = ferry_buf_printf(out, "{\"batch_id\":\"%s\",\"acked\":{", job->batch_id_hex);
    uint64_t *seqs = malloc((job->write.n_recs ? job->write.n_recs : 1) * sizeof(*seqs));
    if (seqs == NULL)
        return INGEST_ENOMEM;
    for (int s = 0; s < RECORD_STREAM_COUNT && e == 0; s++) {
        size_t n = 0;
        bool sorted = true;
        for (size_t i = 0; i < job->write.n_recs; i++) {
            if (job->recs[i].stream != s)
                continue;
            if (n > 0 && job->recs[i].seq < seqs[n - 1])
                sorted = false;
            seqs[n++] = job->recs[i].seq;
        }
        if (!sorted)
            qsort(seqs, n, sizeof(*seqs), cmp_u64);
        e |= ferry_buf_printf(out, "%s\"%s\":[", s ? "," : "",
                              record_stream_name((enum record_stream)s));
        size_t i = 0;
        bool first = true;
        while (i < n && e == 0) {
            uint64_t lo = seqs[i], hi = seqs[i];
            while (i + 1 < n && (seqs[i + 1] == hi || seqs[i + 1] == hi + 1))
                hi = seqs[++i];
            i++;
            e |= ferry_buf_printf(out, "%s[%" PRIu64 ",%" PRIu64 "]", first ? "" : ",", lo, hi);
            first = false;
        }
        e |= ferry_buf_append_u8(out, ']');
    }
    free(seqs);
    e |= ferry_buf_printf(out, "},\"gaps\":%zu}\n", job->n_gaps_reported);
    return e != 0 ? INGEST_ENOMEM : 0;
}

/* Appends `sep` and at most `max` bytes of p[0..n) to name[*len], as far as name_size allows. */
static void health_name_put(char *name, size_t name_size, size_t *len, const char *sep,
                            size_t sep_len, const char *p, size_t n, size_t max)
{
    if (n > max)
        n = max;
    if (*len + sep_len + n > name_size)
        return;
    memcpy(name + *len, sep, sep_len);
    memcpy(name + *len + sep_len, p, n);
    *len += sep_len + n;
}

void ingest_batch_committed(struct ingest_ctx *ctx, struct ingest_job *job)
{
    struct ingest_metrics *m = ctx->metrics;
    ingest_metrics_add(m, INGEST_C_BATCHES_OK, 1);
    ingest_metrics_add(m, INGEST_C_RECORDS_NEW, job->write.new_records);
    ingest_metrics_add(m, INGEST_C_RECORDS_DUP, job->write.dup_records);
    ingest_metrics_add(m, INGEST_C_GAPS_NEW, job->write.new_gaps);
    /* Health values: the numeric fields of the batch's last few metric records (the newest
     * sample of each series a collector sends per interval); the device table keeps the newest
     * by device time, so neither the order within the batch nor a backfilled batch arriving
     * after newer ones can put an older value in place of a newer one. */
    size_t seen = 0;
    for (size_t i = job->write.n_recs; i > 0 && seen < HEALTH_TAIL_RECORDS; i--) {
        const struct ingest_rec *rec = &job->recs[i - 1];
        if (rec->stream != RECORD_METRIC)
            continue;
        seen++;
        if (job->scratch == NULL && (job->scratch = malloc(sizeof(*job->scratch))) == NULL)
            return;
        struct record r;
        if (record_unpack(rec->packed, rec->packed_len, job->scratch, &r, NULL, 0) != 0)
            continue;
        for (size_t f = 0; f < r.n_fields; f++) {
            const struct record_field *fd = &r.fields[f];
            double v;
            if (record_field_number(fd, &v) != 0)
                continue;
            /* "measurement.field,tag=value...", each part bounded; bytes are copied with their
             * lengths (a NUL in a name must not cut the label short). */
            char name[120];
            size_t len = 0;
            health_name_put(name, sizeof(name), &len, "", 0, r.name.ptr, r.name.len, 50);
            health_name_put(name, sizeof(name), &len, ".", 1, fd->key.ptr, fd->key.len, 30);
            for (size_t t = 0; t < r.n_tags; t++) {
                health_name_put(name, sizeof(name), &len, ",", 1, r.tags[t].key.ptr,
                                r.tags[t].key.len, 20);
                health_name_put(name, sizeof(name), &len, "=", 1, r.tags[t].value.ptr,
                                r.tags[t].value.len, 20);
            }
            ingest_devtab_health(ctx->devtab, job->device_id, name, len, rec->ts_corrected_ns, v);
        }
    }
}

/* ---- Dictionaries --------------------------------------------------------------------------- */

#define DICTS_MAX 256
#define DICT_MAX_BYTES (4u * 1024 * 1024)

struct ingest_dicts {
    pthread_mutex_t lock;
    char dir[1024];
    size_t n;
    struct {
        uint32_t id;
        uint8_t *bytes;
        size_t len;
    } d[DICTS_MAX];
};

int ingest_dicts_new(const char *dir, struct ingest_dicts **out)
{
    struct ingest_dicts *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return INGEST_ENOMEM;
    pthread_mutex_init(&d->lock, NULL);
    ferry_strlcpy(d->dir, dir != NULL ? dir : "", sizeof(d->dir));
    *out = d;
    return 0;
}

void ingest_dicts_free(struct ingest_dicts *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++)
        free(d->d[i].bytes);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* Dictionaries are never freed while the process runs, so the bytes stay valid for any
 * decode that borrowed them. */
static int dict_lookup(void *arg, uint32_t dict_id, const void **dict, size_t *dict_len)
{
    struct ingest_dicts *d = arg;
    int rc = -1;
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n; i++) {
        if (d->d[i].id == dict_id) {
            *dict = d->d[i].bytes;
            *dict_len = d->d[i].len;
            rc = 0;
            goto out;
        }
    }
    if (d->dir[0] == '\0' || d->n >= DICTS_MAX)
        goto out;
    char path[1200];
    snprintf(path, sizeof(path), "%s/%" PRIu32 ".dict", d->dir, dict_id);
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (ferry_read_file(path, DICT_MAX_BYTES, &bytes, &len) != 0)
        goto out;
    d->d[d->n].id = dict_id;
    d->d[d->n].bytes = bytes;
    d->d[d->n].len = len;
    d->n++;
    *dict = bytes;
    *dict_len = len;
    rc = 0;
out:
    pthread_mutex_unlock(&d->lock);
    return rc;
}

void ingest_dicts_attach(struct ingest_dicts *d, struct batch_decoder *dec)
{
    batch_decoder_set_dict_lookup(dec, dict_lookup, d);
}
