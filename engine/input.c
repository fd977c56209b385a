/*
 * input.c - input jobs: line protocol and log lines into journal records (see input.h).
 *
 * Design: a job alternates between two states.
 *
 *   PARSING  : lines are parsed from `pos` and packed into `packed` (with their stream and
 *              timestamp in `pending`) until the chunk holds INPUT_CHUNK_BYTES or the text ends
 *              (parse_lineproto() / parse_logs()).
 *   FLUSHING : the pending chunk is appended with one journal_appendv(NONBLOCK) (flush_chunk());
 *              on success the last sequence of each stream becomes a durable_point and the chunk
 *              is emptied; on JOURNAL_EAGAIN the chunk stays and the job reports INPUT_BUSY.
 *
 * Invariants:
 *  1. `pos` only moves past lines that were either packed into the pending chunk or rejected.
 *  2. The pending chunk is appended as one unit or not at all, so a retry never duplicates.
 *  3. Line numbers in errors are 1-based over the whole text: line_base counts the lines before
 *     `pos`.
 */
#include "engine/input.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/utf8.h"
#include "journal/journal.h"

struct pending_rec {
    enum record_stream stream;
    int64_t ts_ns;
    size_t offset; /* into packed */
    size_t len;
};

struct input_job {
    struct input_opts opts;
    char *source; /* default log source, owned */
    const char *text;
    char *owned_text;
    size_t len;
    size_t pos;
    size_t line_base;

    struct ferry_buf packed;
    struct pending_rec *pending;
    size_t n_pending, cap_pending;
    struct journal_append_req *reqs; /* cap_pending entries */
    bool chunk_full;

    struct durable_point *points;
    size_t n_points, cap_points;

    uint64_t accepted, rejected;
    struct ferry_buf errors; /* NUL-terminated text */
    int journal_err;
    char pack_why[160]; /* the reason a record could not be packed (callback status 2) */
    bool pack_failed_enomem;

    /* Logs: arrays for one JSON line's tags and fields. */
    struct record_tag *tags;
    struct record_field *fields;
};

const char *input_strerror(int err)
{
    switch (err) {
    case INPUT_OK: return "success";
    case INPUT_MORE: return "more to parse";
    case INPUT_BUSY: return "journal queue full";
    case INPUT_ENOMEM: return "out of memory";
    case INPUT_EJOURNAL: return "journal refused the records";
    case INPUT_EINVAL: return "invalid input option";
    default: return "unknown input error";
    }
}

int input_job_new(const struct input_opts *opts, const char *text, size_t len,
                  struct input_job **out)
{
    struct input_job *job = calloc(1, sizeof *job);
    if (!job)
        return INPUT_ENOMEM;
    job->opts = *opts;
    job->source = strdup(opts->default_source ? opts->default_source : "app");
    if (!job->source)
        goto fail;
    job->opts.default_source = job->source;
    if (opts->copy_text) {
        job->owned_text = malloc(len ? len : 1);
        if (!job->owned_text)
            goto fail;
        if (len)
            memcpy(job->owned_text, text, len);
        job->text = job->owned_text;
    } else {
        job->text = text;
    }
    job->len = len;
    /* Packed records take about as many bytes as their text: reserving the chunk once saves the
     * copies of a buffer grown by doubling (measured: a few % of the loop's CPU on big bodies). */
    size_t want = len + len / 4 + 256;
    if (want > INPUT_CHUNK_BYTES + 64 * 1024)
        want = INPUT_CHUNK_BYTES + 64 * 1024;
    if (ferry_buf_reserve(&job->packed, want) != 0)
        goto fail;
    if (ferry_buf_append_u8(&job->errors, 0) != 0)
        goto fail;
    job->errors.len = 0;
    *out = job;
    return 0;
fail:
    input_job_free(job);
    return INPUT_ENOMEM;
}

void input_job_free(struct input_job *job)
{
    if (!job)
        return;
    free(job->source);
    free(job->owned_text);
    ferry_buf_free(&job->packed);
    free(job->pending);
    free(job->reqs);
    free(job->points);
    ferry_buf_free(&job->errors);
    free(job->tags);
    free(job->fields);
    free(job);
}

const struct durable_point *input_job_points(const struct input_job *job, size_t *n)
{
    *n = job->n_points;
    return job->points;
}

uint64_t input_job_accepted(const struct input_job *job)
{
    return job->accepted;
}
uint64_t input_job_rejected(const struct input_job *job)
{
    return job->rejected;
}
int input_job_journal_error(const struct input_job *job)
{
    return job->journal_err;
}
size_t input_job_remaining(const struct input_job *job)
{
    return job->len - job->pos;
}

const char *input_job_errors(const struct input_job *job)
{
    return job->errors.data ? (const char *)job->errors.data : "";
}

/* Records a rejected line. The text stays NUL-terminated; only the first few are described. */
static void reject_line(struct input_job *job, size_t line, const char *reason)
{
    job->rejected++;
    if (job->rejected > INPUT_MAX_ERRORS_LISTED)
        return;
    /* Out of memory here loses only the description; the count above is what matters. */
    int rc = line ? ferry_buf_printf(&job->errors, "%sline %zu: %s", job->errors.len ? "\n" : "",
                                     line, reason)
                  : ferry_buf_printf(&job->errors, "%s%s", job->errors.len ? "\n" : "", reason);
    if (rc != 0)
        return;
    if (ferry_buf_reserve(&job->errors, 1) == 0)
        job->errors.data[job->errors.len] = 0;
}

/* Byte offset just past line `n` (1-based) of text[from, len), or len when it is the last. */
static size_t skip_lines(const struct input_job *job, size_t from, size_t n)
{
    size_t p = from;
    while (n > 0 && p < job->len) {
        const char *nl = memchr(job->text + p, '\n', job->len - p);
        if (!nl)
            return job->len;
        p = (size_t)(nl - job->text) + 1;
        n--;
    }
    return p;
}

/* Packs `r` into the pending chunk. Returns 0, or a negative enum record_error (why in
 * job->pack_why). */
static int pack_record(struct input_job *job, const struct record *r)
{
    if (job->n_pending == job->cap_pending) {
        size_t cap = job->cap_pending ? job->cap_pending * 2 : 256;
        struct pending_rec *p = realloc(job->pending, cap * sizeof *p);
        if (!p)
            return RECORD_ENOMEM;
        job->pending = p;
        struct journal_append_req *q = realloc(job->reqs, cap * sizeof *q);
        if (!q)
            return RECORD_ENOMEM;
        job->reqs = q;
        job->cap_pending = cap;
    }
    size_t start = job->packed.len;
    int rc = record_pack(r, &job->packed);
    if (rc < 0) {
        if (rc != RECORD_ENOMEM && record_check(r, job->pack_why, sizeof job->pack_why) == 0)
            snprintf(job->pack_why, sizeof job->pack_why, "%s", record_strerror(rc));
        else if (rc == RECORD_ENOMEM)
            snprintf(job->pack_why, sizeof job->pack_why, "out of memory");
        return rc;
    }
    struct pending_rec *p = &job->pending[job->n_pending++];
    p->stream = r->stream;
    p->ts_ns = r->ts_ns;
    p->offset = start;
    p->len = job->packed.len - start;
    if (job->packed.len >= INPUT_CHUNK_BYTES)
        job->chunk_full = true;
    return 0;
}

static int add_point(struct input_job *job, enum record_stream stream, uint64_t seq)
{
    if (job->n_points == job->cap_points) {
        size_t cap = job->cap_points ? job->cap_points * 2 : 4;
        struct durable_point *p = realloc(job->points, cap * sizeof *p);
        if (!p)
            return -1;
        job->points = p;
        job->cap_points = cap;
    }
    job->points[job->n_points].stream = stream;
    job->points[job->n_points].seq = seq;
    job->n_points++;
    return 0;
}

/* Appends the pending chunk as one unit (invariant 2). Returns 0, INPUT_BUSY, INPUT_EJOURNAL or
 * INPUT_ENOMEM. */
static int flush_chunk(struct input_job *job, struct journal *j)
{
    if (job->n_pending == 0)
        return 0;
    /* Reserve the points first, so that a failure after the append cannot lose one. */
    if (job->cap_points - job->n_points < RECORD_STREAM_COUNT) {
        size_t cap = job->n_points + RECORD_STREAM_COUNT + job->cap_points;
        struct durable_point *p = realloc(job->points, cap * sizeof *p);
        if (!p)
            return INPUT_ENOMEM;
        job->points = p;
        job->cap_points = cap;
    }
    for (size_t i = 0; i < job->n_pending; i++) {
        job->reqs[i].stream = job->pending[i].stream;
        job->reqs[i].ts_ns = job->pending[i].ts_ns;
        job->reqs[i].payload = job->packed.data + job->pending[i].offset;
        job->reqs[i].len = job->pending[i].len;
        job->reqs[i].seq = 0;
    }
    int rc = journal_appendv(j, job->reqs, job->n_pending, JOURNAL_APPEND_NONBLOCK);
    if (rc == JOURNAL_EAGAIN)
        return INPUT_BUSY;
    if (rc < 0) {
        job->journal_err = rc;
        return INPUT_EJOURNAL;
    }
    uint64_t last[RECORD_STREAM_COUNT] = {0};
    for (size_t i = 0; i < job->n_pending; i++)
        if (job->reqs[i].seq > last[job->reqs[i].stream])
            last[job->reqs[i].stream] = job->reqs[i].seq;
    for (int s = 0; s < RECORD_STREAM_COUNT; s++)
        if (last[s] && add_point(job, (enum record_stream)s, last[s]) != 0)
            return INPUT_ENOMEM; /* cannot happen: reserved above */
    job->accepted += job->n_pending;
    job->n_pending = 0;
    job->packed.len = 0;
    job->chunk_full = false;
    return 0;
}

/* ---- Line protocol ---------------------------------------------------------------------- */

/*
 * lineproto_parse() stops at the first bad line and tells its (physical) line number; it does
 * not say where a callback stopped it. So the text is fed in slices of about
 * INPUT_SLICE_BYTES that end at a newline, each parsed to its end: after a clean slice `pos`
 * moves to the slice's end; after an error it moves past the bad line and parsing resumes
 * there. A quoted string may hold a newline, so a slice that fails on its last line is retried
 * once extended to the end of the text before the error counts.
 */
#define INPUT_SLICE_BYTES (256 * 1024)

enum { CB_PACK_FAILED = 1, CB_NOMEM = 2 };

static int on_lineproto_record(void *arg, const struct record *r)
{
    struct input_job *job = arg;
    int rc = pack_record(job, r);
    if (rc == RECORD_ENOMEM)
        return CB_NOMEM;
    if (rc >= 0 && job->opts.observe)
        job->opts.observe(job->opts.observe_arg, r);
    if (rc < 0) {
        /* The parser enforces the record limits, so this is a record too large to pack; the
         * callback is not told its line, and the parse goes on. */
        reject_line(job, 0, job->pack_why);
    }
    return 0;
}

static size_t count_newlines(const char *p, size_t n)
{
    size_t count = 0;
    const char *end = p + n;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        count++;
        p++;
    }
    return count;
}

/* End of a slice starting at `from`: just past a newline about `want` bytes on, or the end. */
static size_t slice_end(const struct input_job *job, size_t from, size_t want)
{
    if (job->len - from <= want)
        return job->len;
    const char *nl = memchr(job->text + from + want, '\n', job->len - from - want);
    return nl ? (size_t)(nl - job->text) + 1 : job->len;
}

/* Parses slices from pos until the chunk is full or the text ends. Returns 0 or INPUT_ENOMEM. */
static int parse_lineproto(struct input_job *job)
{
    while (job->pos < job->len && !job->chunk_full) {
        size_t start = job->pos;
        size_t end = slice_end(job, start, INPUT_SLICE_BYTES);
        size_t packed_before = job->n_pending;
        struct lineproto_error err;
        int rc = lineproto_parse(job->text + start, end - start, job->opts.precision,
                                 job->opts.default_ts_ns, on_lineproto_record, job, &err);
        if (rc < 0 && rc != LINEPROTO_ENOMEM && rc != LINEPROTO_ECALLBACK && end < job->len &&
            err.line >= count_newlines(job->text + start, end - start)) {
            /* Failed on the slice's last line: maybe a quoted string runs on. Parse the rest of
             * the text as one slice instead (dropping what this attempt packed). */
            job->n_pending = packed_before;
            job->packed.len = packed_before ? job->pending[packed_before - 1].offset +
                                                  job->pending[packed_before - 1].len
                                            : 0;
            job->chunk_full = job->packed.len >= INPUT_CHUNK_BYTES;
            end = job->len;
            rc = lineproto_parse(job->text + start, end - start, job->opts.precision,
                                 job->opts.default_ts_ns, on_lineproto_record, job, &err);
        }
        if (rc == LINEPROTO_ENOMEM ||
            (rc == LINEPROTO_ECALLBACK && err.callback_status == CB_NOMEM))
            return INPUT_ENOMEM;
        if (rc == 0) {
            job->line_base += count_newlines(job->text + start, end - start);
            job->pos = end;
            continue;
        }
        size_t line = err.line ? err.line : 1;
        char reason[224];
        snprintf(reason, sizeof reason, "%s (column %zu)",
                 err.reason[0] ? err.reason : lineproto_strerror(rc), err.column);
        reject_line(job, job->line_base + line, reason);
        job->pos = skip_lines(job, start, line);
        job->line_base += line;
    }
    return 0;
}

/* ---- Log lines -------------------------------------------------------------------------- */

static int ensure_log_arrays(struct input_job *job)
{
    if (!job->tags)
        job->tags = calloc(RECORD_MAX_TAGS, sizeof *job->tags);
    if (!job->fields)
        job->fields = calloc(RECORD_MAX_FIELDS, sizeof *job->fields);
    return job->tags && job->fields ? 0 : -1;
}

static void str_of(json_t *s, struct record_str *out)
{
    out->ptr = json_string_value(s);
    out->len = json_string_length(s);
}

/* Sets a field from a JSON scalar. Returns 0, 1 when the value is null (skip), -1 otherwise. */
static int field_of(const char *key, json_t *v, struct record_field *f)
{
    f->key.ptr = key;
    f->key.len = strlen(key);
    switch (json_typeof(v)) {
    case JSON_STRING:
        f->type = RECORD_FIELD_STRING;
        str_of(v, &f->v.s);
        return 0;
    case JSON_INTEGER:
        f->type = RECORD_FIELD_INT;
        f->v.i = (int64_t)json_integer_value(v);
        return 0;
    case JSON_REAL:
        f->type = RECORD_FIELD_FLOAT;
        f->v.f = json_real_value(v);
        return 0;
    case JSON_TRUE:
    case JSON_FALSE:
        f->type = RECORD_FIELD_BOOL;
        f->v.b = json_is_true(v);
        return 0;
    case JSON_NULL: return 1;
    default: return -1;
    }
}

/* Builds a log record from one JSON object line. Returns 0 or -1 with a reason in why. */
static int log_from_json(struct input_job *job, json_t *obj, struct record *r, char *why,
                         size_t why_len)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (strcmp(key, "level") == 0) {
            enum record_log_level lvl;
            if (json_is_string(v) && record_level_parse(json_string_value(v), &lvl) == 0) {
                r->level = (uint8_t)lvl;
            } else if (json_is_integer(v) && json_integer_value(v) >= 0 &&
                       json_integer_value(v) <= RECORD_LEVEL_DEBUG) {
                r->level = (uint8_t)json_integer_value(v);
            } else {
                snprintf(why, why_len,
                         "\"level\": not a log level (debug, info, notice, warn, "
                         "error, crit, alert, emerg or 0..7)");
                return -1;
            }
        } else if (strcmp(key, "source") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0) {
                snprintf(why, why_len, "\"source\": not a non-empty string");
                return -1;
            }
            str_of(v, &r->name);
        } else if (strcmp(key, "message") == 0 || strcmp(key, "msg") == 0) {
            if (!json_is_string(v)) {
                snprintf(why, why_len, "\"%s\": not a string", key);
                return -1;
            }
            str_of(v, &r->message);
        } else if (strcmp(key, "ts") == 0) {
            if (!json_is_integer(v)) {
                snprintf(why, why_len, "\"ts\": not an integer (nanoseconds since the epoch)");
                return -1;
            }
            r->ts_ns = (int64_t)json_integer_value(v);
        } else if (strcmp(key, "tags") == 0) {
            if (!json_is_object(v)) {
                snprintf(why, why_len, "\"tags\": not an object");
                return -1;
            }
            const char *tk;
            json_t *tv;
            json_object_foreach(v, tk, tv)
            {
                if (!json_is_string(tv)) {
                    snprintf(why, why_len, "tags.%.64s: not a string", tk);
                    return -1;
                }
                if (r->n_tags == RECORD_MAX_TAGS) {
                    snprintf(why, why_len, "more than %d tags", RECORD_MAX_TAGS);
                    return -1;
                }
                struct record_tag *t = &job->tags[r->n_tags++];
                t->key.ptr = tk;
                t->key.len = strlen(tk);
                str_of(tv, &t->value);
            }
        } else if (strcmp(key, "fields") == 0) {
            if (!json_is_object(v)) {
                snprintf(why, why_len, "\"fields\": not an object");
                return -1;
            }
            const char *fk;
            json_t *fv;
            json_object_foreach(v, fk, fv)
            {
                if (r->n_fields == RECORD_MAX_FIELDS) {
                    snprintf(why, why_len, "more than %d fields", RECORD_MAX_FIELDS);
                    return -1;
                }
                int rc = field_of(fk, fv, &job->fields[r->n_fields]);
                if (rc < 0) {
                    snprintf(why, why_len, "fields.%.64s: objects and arrays are not supported",
                             fk);
                    return -1;
                }
                if (rc == 0)
                    r->n_fields++;
            }
        } else {
            /* Other top-level scalars (structured loggers add "time", "pid"...) become fields. */
            if (r->n_fields == RECORD_MAX_FIELDS) {
                snprintf(why, why_len, "more than %d fields", RECORD_MAX_FIELDS);
                return -1;
            }
            int rc = field_of(key, v, &job->fields[r->n_fields]);
            if (rc < 0) {
                snprintf(why, why_len,
                         "\"%.64s\": objects and arrays are only allowed in "
                         "\"fields\"/\"tags\"",
                         key);
                return -1;
            }
            if (rc == 0)
                r->n_fields++;
        }
    }
    return 0;
}

/* One log line (without its newline). Returns 0 or INPUT_ENOMEM. */
static int parse_log_line(struct input_job *job, const char *line, size_t n, size_t line_no)
{
    if (n && line[n - 1] == '\r')
        n--;
    size_t lead = 0;
    while (lead < n && (line[lead] == ' ' || line[lead] == '\t'))
        lead++;
    if (lead == n)
        return 0; /* empty lines are skipped, like line protocol's */
    struct record r;
    memset(&r, 0, sizeof r);
    r.stream = RECORD_LOG;
    r.ts_ns = job->opts.default_ts_ns;
    r.level = (uint8_t)job->opts.default_level;
    r.name.ptr = job->source;
    r.name.len = strlen(job->source);
    json_t *obj = NULL;
    if (line[lead] == '{') {
        if (ensure_log_arrays(job) != 0)
            return INPUT_ENOMEM;
        json_error_t jerr;
        obj = json_loadb(line, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!obj || !json_is_object(obj)) {
            char why[200], text[160];
            /* jansson quotes the token it stopped at: escaped, it may hold control bytes */
            ferry_escape_str(text, sizeof text, jerr.text, strlen(jerr.text));
            snprintf(why, sizeof why, "invalid JSON: %s (column %d)", obj ? "not an object" : text,
                     obj ? 1 : jerr.column);
            json_decref(obj);
            reject_line(job, line_no, why);
            return 0;
        }
        r.tags = job->tags;
        r.fields = job->fields;
        char why[200];
        if (log_from_json(job, obj, &r, why, sizeof why) != 0) {
            json_decref(obj);
            reject_line(job, line_no, why);
            return 0;
        }
    } else {
        /* A plain line is the message as it is: it must be UTF-8 without NUL (a JSON line is
         * held to that by jansson, which refuses both). */
        size_t bad = ferry_utf8_find_invalid(line, n, false);
        if (bad < n) {
            uint32_t cp;
            char shown[40], why[120];
            ferry_escape_str(shown, sizeof shown, line + bad,
                             ferry_utf8_next(line + bad, n - bad, &cp));
            snprintf(why, sizeof why, "%s (%s) (column %zu)",
                     line[bad] == '\0' ? "NUL byte" : "invalid UTF-8", shown, bad + 1);
            reject_line(job, line_no, why);
            return 0;
        }
        r.message.ptr = line;
        r.message.len = n;
    }
    int rc = pack_record(job, &r);
    json_decref(obj);
    if (rc == RECORD_ENOMEM)
        return INPUT_ENOMEM;
    if (rc < 0)
        reject_line(job, line_no, job->pack_why);
    return 0;
}

static int parse_logs(struct input_job *job)
{
    while (job->pos < job->len && !job->chunk_full) {
        const char *start = job->text + job->pos;
        size_t left = job->len - job->pos;
        const char *nl = memchr(start, '\n', left);
        size_t n = nl ? (size_t)(nl - start) : left;
        job->line_base++;
        int rc = parse_log_line(job, start, n, job->line_base);
        if (rc != 0)
            return rc;
        job->pos += nl ? n + 1 : n;
    }
    return 0;
}

int input_job_run(struct input_job *job, struct journal *j, size_t budget_bytes)
{
    size_t start_pos = job->pos;
    for (;;) {
        if (job->n_pending && (job->chunk_full || job->pos == job->len)) {
            int rc = flush_chunk(job, j);
            if (rc != 0)
                return rc;
        }
        if (job->pos == job->len)
            return 0;
        if (budget_bytes && job->pos - start_pos >= budget_bytes)
            return INPUT_MORE;
        int rc = job->opts.format == INPUT_LOGS ? parse_logs(job) : parse_lineproto(job);
        if (rc != 0)
            return rc;
    }
}

int input_pack_event(const char *event_type, const char *message, int64_t ts_ns,
                     const char *const *kv, size_t n_kv_pairs, struct ferry_buf *out)
{
    struct record_field fields[16];
    if (n_kv_pairs > sizeof fields / sizeof fields[0])
        return RECORD_ELIMIT;
    struct record r;
    memset(&r, 0, sizeof r);
    r.stream = RECORD_EVENT;
    r.ts_ns = ts_ns;
    r.name.ptr = event_type;
    r.name.len = strlen(event_type);
    if (message) {
        r.message.ptr = message;
        r.message.len = strlen(message);
    }
    for (size_t i = 0; i < n_kv_pairs; i++) {
        fields[i].key.ptr = kv[2 * i];
        fields[i].key.len = strlen(kv[2 * i]);
        fields[i].type = RECORD_FIELD_STRING;
        fields[i].v.s.ptr = kv[2 * i + 1];
        fields[i].v.s.len = strlen(kv[2 * i + 1]);
    }
    r.fields = fields;
    r.n_fields = n_kv_pairs;
    return record_pack(&r, out);
}
