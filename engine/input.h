/*
 * input.h - turns what local producers send into journal records.
 *
 * Every local input of ferryd (HTTP /write and /logs, the UDP port, the Unix socket) hands its
 * bytes to an input job. A job parses them line by line (InfluxDB line protocol, or log lines:
 * plain text or JSON objects), packs each good line with record_pack() and appends the records
 * to the journal in units of about INPUT_CHUNK_BYTES (journal_appendv, never waiting for queue
 * space: JOURNAL_APPEND_NONBLOCK, so the event loop never blocks). A bad line does not stop the
 * job: it is counted, its line number and reason are kept, and parsing resumes on the next line,
 * which is what InfluxDB 1.x does for a partly bad write.
 *
 * A job remembers the last sequence of every unit it appended (durable_point), so the HTTP input
 * can wait for all of them with durable_wait() before it answers.
 *
 * Run a job with input_job_run() until it returns 0. It may return INPUT_MORE (its byte budget
 * for this call is spent: call again from the next loop iteration, so one big request cannot
 * starve the others) or INPUT_BUSY (the journal's queue is full: call again in a few ms). Both
 * keep every bit of progress.
 */
#ifndef FERRY_ENGINE_INPUT_H
#define FERRY_ENGINE_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/durable.h"
#include "transport/lineproto.h"
#include "transport/record.h"

struct journal;
struct input_job;

enum input_error {
    INPUT_OK = 0,
    INPUT_MORE = 1, /* not an error: budget spent, call input_job_run() again */
    INPUT_BUSY = 2, /* not an error: journal queue full, call again a little later */
    INPUT_ENOMEM = -1,
    INPUT_EJOURNAL = -2, /* the journal refused an append: input_job_journal_error() says why */
    INPUT_EINVAL = -3,   /* bad option (e.g. unknown precision) */
};
const char *input_strerror(int err);

enum input_format {
    INPUT_LINEPROTO = 0, /* InfluxDB line protocol -> metric records */
    INPUT_LOGS = 1,      /* plain text or JSON lines -> log records */
};

/* Appended records per journal_appendv() unit (packed payload bytes). */
#define INPUT_CHUNK_BYTES (1024 * 1024)
/* At most this many bad lines are described in input_job_errors(); all are counted. */
#define INPUT_MAX_ERRORS_LISTED 20

struct input_opts {
    enum input_format format;
    enum lineproto_precision precision; /* line protocol timestamps */
    int64_t default_ts_ns;              /* lines without a timestamp (normally "now") */
    /* Logs: used for plain-text lines and JSON lines without "level"/"source". */
    enum record_log_level default_level;
    const char *default_source; /* copied; NULL means "app" */
    int copy_text; /* nonzero: the job copies `text`; zero: the caller keeps it alive */
    /* Optional: shown every metric record accepted into the job (before it is durable), on the
     * thread that runs the job. The record is valid only during the call. ferryd's OTA health
     * gates watch metrics through it. */
    void (*observe)(void *arg, const struct record *r);
    void *observe_arg;
};

/* Makes a job over len bytes of text. Returns 0 or INPUT_ENOMEM. */
int input_job_new(const struct input_opts *opts, const char *text, size_t len,
                  struct input_job **out) __attribute__((warn_unused_result));

/*
 * Parses and appends until the text is consumed (returns 0), `budget_bytes` of text were parsed
 * in this call (INPUT_MORE; 0 = no budget), or the journal's queue is full (INPUT_BUSY).
 * INPUT_EJOURNAL for any other journal error (the job stops; what was appended before stays
 * appended), INPUT_ENOMEM.
 */
int input_job_run(struct input_job *job, struct journal *j, size_t budget_bytes)
    __attribute__((warn_unused_result));

/* The units appended so far: wait for these to know the job's records are durable. */
const struct durable_point *input_job_points(const struct input_job *job, size_t *n);
/* Lines turned into records and appended, and lines rejected. */
uint64_t input_job_accepted(const struct input_job *job);
uint64_t input_job_rejected(const struct input_job *job);
/* Description of the rejected lines ("line 3: reason\n..."), "" when none; owned by the job. */
const char *input_job_errors(const struct input_job *job);
/* The journal error behind INPUT_EJOURNAL (negative enum journal_error), else 0. */
int input_job_journal_error(const struct input_job *job);
/* Text bytes not yet parsed. */
size_t input_job_remaining(const struct input_job *job);

void input_job_free(struct input_job *job);

/* Counters every input keeps (GET /status, GET /metrics). Loop thread only. */
struct input_stats {
    uint64_t requests;       /* HTTP requests, datagrams, or stream reads handled */
    uint64_t bytes;          /* bytes received */
    uint64_t records;        /* records appended to the journal */
    uint64_t rejected_lines; /* lines that did not parse or pack */
    uint64_t dropped;        /* UDP datagrams (or their rest) dropped: journal queue full */
    uint64_t journal_errors; /* appends the journal refused */
};

/*
 * Packs one event record (stream event, name = event_type, optional message, string fields
 * given as key/value pairs) into `out` (appended). Used for ferryd's own events and by the
 * journal's event encoder. Returns 0 or a negative enum record_error.
 */
int input_pack_event(const char *event_type, const char *message, int64_t ts_ns,
                     const char *const *kv, size_t n_kv_pairs, struct ferry_buf *out)
    __attribute__((warn_unused_result));

#endif
