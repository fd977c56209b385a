/*
 * collect.h - ferryd's built-in collectors: what the device knows about itself.
 *
 * A collector reads the kernel's own accounting (/proc, /sys) and turns it into metric records
 * with the measurement and field names of the Telegraf input that reads the same thing, so that
 * dashboards made for Telegraf data keep working (docs/configuration.md, "[collect.*]", has the
 * mapping table). Each collector is one file behind this header:
 *
 *   system.c  cpu, mem, swap, disk, diskio, net, system, processes   (on by default, 10 s)
 *   jetson.c  temp, linux_cpu, jetson_gpu, jetson_emc, jetson_fan,
 *             jetson_power, jetson                                   (when a Jetson is detected)
 *
 * Every collector has the same shape (struct collector): a state, a collect function that
 * appends one round of records to a struct collect_out, and a free function. The collect set
 * (collect.c) runs them on ferryd's event loop: collectors with the same interval share ONE
 * timer, so an idle ferryd with the default collectors wakes up once per interval, and one
 * round of a timer becomes one journal_appendv() (one unit, one commit).
 *
 * Paths: every collector reads below a `root` prefix ("" or "/" for the real system). Tests point
 * it at fixture trees (tests/unit/engine/fixtures/); in a container, a host mounted at /host is
 * read with root = /host (Telegraf's HOST_PROC/HOST_SYS).
 *
 * Threads: everything here runs on the loop thread; a collect function reads small kernel files
 * (no blocking device or network I/O: network filesystems are never statvfs()ed).
 */
#ifndef FERRY_ENGINE_COLLECT_COLLECT_H
#define FERRY_ENGINE_COLLECT_COLLECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "transport/record.h"

struct event_base;
struct journal;

enum collect_error {
    COLLECT_OK = 0,
    COLLECT_ENOMEM = -1,   /* allocation failed */
    COLLECT_EINVAL = -2,   /* bad argument (interval, root path too long) */
    COLLECT_EREAD = -3,    /* a file every round needs could not be read (errbuf says which) */
    COLLECT_EFORMAT = -4,  /* a kernel file did not have the expected shape (errbuf: file, line) */
    COLLECT_EJOURNAL = -5, /* the journal refused a round */
    COLLECT_ENOTFOUND = -6 /* the hardware a collector is for is not there (Jetson) */
};
const char *collect_strerror(int err);

#define COLLECT_ERRBUF 256

/* ---- Building records ----------------------------------------------------------------------- */

#define COLLECT_MAX_TAGS 8
#define COLLECT_MAX_FIELDS 48

/* One metric record being built. Strings are borrowed until collect_emit() packs it. */
struct collect_rec {
    struct record r;
    struct record_tag tags[COLLECT_MAX_TAGS];
    struct record_field fields[COLLECT_MAX_FIELDS];
};

void collect_rec_begin(struct collect_rec *rec, const char *measurement, int64_t ts_ns);
/* Adding more than COLLECT_MAX_TAGS tags or COLLECT_MAX_FIELDS fields is a programming error
 * (asserted); the collectors' record shapes are fixed. */
void collect_tag(struct collect_rec *rec, const char *key, const char *value);
void collect_float(struct collect_rec *rec, const char *key, double v);
void collect_int(struct collect_rec *rec, const char *key, int64_t v);
void collect_string(struct collect_rec *rec, const char *key, const char *v);

/* The records of one round, packed (record_pack) and ready for one journal_appendv(). */
struct collect_out {
    struct ferry_buf packed;
    struct collect_packed {
        size_t offset, len;
        int64_t ts_ns;
    } * recs;
    size_t n, cap;
};

void collect_out_init(struct collect_out *out);
void collect_out_reset(struct collect_out *out);
void collect_out_free(struct collect_out *out);
/* Packs rec into out. A record without fields is skipped (returns 0). Returns 0, COLLECT_ENOMEM,
 * or COLLECT_EFORMAT when record_pack refuses it (a value over the record limits). */
int collect_emit(struct collect_out *out, const struct collect_rec *rec)
    __attribute__((warn_unused_result));

/* ---- Collectors ----------------------------------------------------------------------------- */

/* One round: append records stamped ts_ns to out. Returns 0 or a negative enum collect_error
 * (errbuf says what and where); records appended before an error are kept. */
typedef int (*collect_fn)(void *state, int64_t ts_ns, struct collect_out *out, char *errbuf,
                          size_t errlen);

struct collector {
    char name[32]; /* "system", "jetson": the [collect.NAME] section */
    int64_t interval_ms;
    void *state;
    collect_fn collect;
    void (*free_state)(void *state);

    /* Counters kept by collect_run() (and so by the set). */
    uint64_t rounds;
    uint64_t records;      /* records emitted, all rounds */
    uint64_t last_records; /* records of the last round */
    uint64_t errors;       /* rounds that returned an error */
    uint64_t cpu_ns;       /* thread CPU time spent in collect, all rounds */
};

/* Runs one round of c into out and updates its counters. Returns what the collect function did. */
int collect_run(struct collector *c, int64_t ts_ns, struct collect_out *out, char *errbuf,
                size_t errlen);

/* Frees a collector and its state. NULL is a no-op. */
void collector_free(struct collector *c);

/* Options of the system collector ([collect.system]). */
struct collect_system_opts {
    const char *root;    /* "" or "/" = the real system */
    bool percpu;         /* one cpu record per core besides cpu-total (Telegraf's percpu) */
    int64_t interval_ms; /* >= 100 */
};

/*
 * Makes the system collector. It checks that root/proc/stat can be read (COLLECT_EREAD
 * otherwise). The first round emits no cpu records (usage needs two samples, as in Telegraf);
 * everything else is emitted from the first round on. Owned by the caller (collector_free).
 */
int collect_system_new(const struct collect_system_opts *opts, struct collector **out, char *errbuf,
                       size_t errlen) __attribute__((warn_unused_result));

/* Options of the Jetson collector ([collect.jetson]). */
struct collect_jetson_opts {
    const char *root;
    int64_t interval_ms;
};

/* True when root looks like an NVIDIA Jetson: root/etc/nv_tegra_release exists, or
 * root/proc/device-tree/compatible names "nvidia,tegra". */
bool collect_jetson_detect(const char *root);

/*
 * Makes the Jetson collector. It probes every node it knows once: a missing one is described in
 * `missing` (when not NULL: one line per node, "gpu load: /sys/...: not found") for the caller to
 * log once, and skipped in every round. Fails only with COLLECT_ENOMEM, COLLECT_EINVAL, or
 * COLLECT_ENOTFOUND when nothing Jetson-specific was found at all.
 */
int collect_jetson_new(const struct collect_jetson_opts *opts, struct collector **out,
                       struct ferry_buf *missing, char *errbuf, size_t errlen)
    __attribute__((warn_unused_result));

/* ---- The set: timers on the loop, rounds into the journal ----------------------------------- */

struct collect_set;

/* Called on the loop thread after a round was queued in the journal (ferryd wakes the sync
 * engine). */
typedef void (*collect_appended_fn)(void *arg);

/* Makes an empty set on `base` appending to `j` (both must outlive it). */
int collect_set_new(struct event_base *base, struct journal *j, collect_appended_fn appended,
                    void *arg, struct collect_set **out) __attribute__((warn_unused_result));

/* Adds a collector (the set owns it from now on, also on error). Collectors with the same
 * interval share one timer. Call before collect_set_start(). */
int collect_set_add(struct collect_set *set, struct collector *c)
    __attribute__((warn_unused_result));

/* Arms the timers and runs a first round of every collector at once. */
int collect_set_start(struct collect_set *set) __attribute__((warn_unused_result));

/* Rounds whose records were dropped because the journal's queue was full, or it failed. */
uint64_t collect_set_dropped_rounds(const struct collect_set *set);
/* Timers the set uses (one per distinct interval). */
size_t collect_set_timers(const struct collect_set *set);
/* The i-th collector (i < n), for status pages and the benchmark; NULL past the end. */
const struct collector *collect_set_collector(const struct collect_set *set, size_t i);

/* Cancels the timers and frees every collector. NULL is a no-op. */
void collect_set_free(struct collect_set *set);

/* ---- File tail ([input.tail.NAME], tail.c) -------------------------------------------------- */

struct journal;
struct tail;

struct tail_opts {
    const char *name;            /* NAME of [input.tail.NAME]: state keys, default source */
    const char *paths;           /* glob patterns separated by blanks; wildcards only in the file
                                    name (the directory is watched with inotify) */
    const char *source;          /* log record name; NULL or "" = name */
    const char *multiline_start; /* POSIX extended regex a record's first line matches; NULL or ""
                                    = every line is a record */
    size_t max_line_bytes;       /* longer records are cut here and marked (field truncated) */
    bool from_beginning;         /* a file found at the first start with no saved offset is read
                                    from its start (else from its end, like Fluentd's default) */
    bool parse_level;            /* look for a level word (ERROR, warn, level=info...) */
    int64_t multiline_flush_ms;  /* an open multi-line record is emitted after this idle time */
};

struct tail_stats {
    uint64_t files;       /* files followed now */
    uint64_t records;     /* log records appended */
    uint64_t bytes;       /* bytes consumed */
    uint64_t truncated;   /* records cut at max_line_bytes */
    uint64_t rotations;   /* renamed-away files drained */
    uint64_t truncations; /* copytruncate (or truncation) seen */
    uint64_t busy;        /* appends refused for a full journal queue (retried) */
    uint64_t lost_bytes;  /* bytes a truncation made unreadable (no copy found) */
};

/*
 * Starts following the files `opts->paths` matches, now and later (inotify on their
 * directories: no polling). Each read becomes ONE journal unit holding its log records and the
 * file's new offset in the state table (key "tail/NAME/PATH", journal_appendv_state()), so a
 * crash or SIGKILL at any moment neither repeats nor skips a line. Rotation by rename (the old
 * file is read to its end first) and by copytruncate (the rest of the old content is read from
 * the copy, found in the same directory by its first bytes) are followed, also across a restart.
 * Loop thread only. Returns 0 or COLLECT_EINVAL (bad pattern or regex), COLLECT_ENOMEM,
 * COLLECT_EREAD (inotify, a directory that cannot be watched); errbuf says which.
 */
int tail_new(struct event_base *base, struct journal *j, const struct tail_opts *opts,
             collect_appended_fn appended, void *arg, struct tail **out, char *errbuf,
             size_t errlen) __attribute__((warn_unused_result));
void tail_get_stats(const struct tail *t, struct tail_stats *out);
/* Stops following and frees everything (what was appended stays). NULL is a no-op. */
void tail_free(struct tail *t);

/* The level of a log line from common formats ("ERROR ...", "[warn]", "level=info",
 * "\"level\":\"debug\"", "E0102 ..." glog), looked for in its first 160 bytes: an enum
 * record_log_level, or -1 when none is found. */
int tail_parse_level(const char *line, size_t len);

/* ---- Prometheus exposition (promparse.c) ---------------------------------------------------- */

struct prom_stats {
    uint64_t lines;   /* non-empty lines */
    uint64_t samples; /* sample lines turned into records or record fields */
    uint64_t skipped; /* sample lines that did not parse, or records over the record limits */
};

/*
 * Parses a Prometheus text exposition (format 0.0.4, or OpenMetrics 1.0 when `openmetrics`:
 * timestamps in seconds, "# EOF") into metric records appended to out, named as Telegraf's
 * prometheus input (metric_version 1) names them: counter -> field "counter", gauge -> "gauge",
 * untyped -> "value"; a histogram or summary family becomes one record per label set with
 * fields "count", "sum" and one per bucket bound / quantile. Labels are tags. Samples without a
 * timestamp get now_ns. Lines that do not parse are skipped and counted in *stats. Returns 0 or
 * COLLECT_ENOMEM.
 */
int prom_parse(const char *text, size_t len, bool openmetrics, int64_t now_ns,
               struct collect_out *out, struct prom_stats *stats)
    __attribute__((warn_unused_result));

/* ---- Prometheus scrape ([input.prometheus.NAME], scrape.c) ---------------------------------- */

struct scrape;

struct scrape_opts {
    const char *name;    /* NAME of the section */
    const char *url;     /* http://host:port/path of the exporter */
    int64_t interval_ms; /* >= 100 */
    int64_t timeout_ms;  /* 10 ms .. interval */
};

struct scrape_stats {
    uint64_t scrapes;       /* answered with 200 and parsed */
    uint64_t failures;      /* no answer in time, refused, or not 200 */
    uint64_t overlapping;   /* skipped: the previous scrape was still running */
    uint64_t records;       /* metric records appended */
    uint64_t dropped;       /* scrapes whose records the journal refused (queue full) */
    uint64_t skipped_lines; /* exposition lines that did not parse */
};

/*
 * Scrapes `opts->url` every interval on the loop (libevent's HTTP client, with the timeout; a
 * hung exporter never blocks the loop) and appends each scrape's records (prom_parse()) as one
 * journal unit. The first scrape starts at once. Loop thread only. Returns 0, COLLECT_EINVAL
 * (bad URL or durations; errbuf says which) or COLLECT_ENOMEM.
 */
int scrape_new(struct event_base *base, struct journal *j, const struct scrape_opts *opts,
               collect_appended_fn appended, void *arg, struct scrape **out, char *errbuf,
               size_t errlen) __attribute__((warn_unused_result));
void scrape_get_stats(const struct scrape *s, struct scrape_stats *out);
/* Cancels a scrape in flight (no callback after it) and frees everything. NULL is a no-op. */
void scrape_free(struct scrape *s);

/* ---- journald ([input.journald.NAME], journald.c) ------------------------------------------- */

struct journald;

struct journald_opts {
    const char *name;      /* NAME of the section: the state key "journald/NAME" */
    const char *directory; /* NULL or "": the local system journal; else journal files there */
    const char *units;     /* _SYSTEMD_UNIT values separated by blanks; "" = every unit */
    int max_priority;      /* entries with PRIORITY <= this (0 emerg .. 7 debug = all) */
    bool from_beginning;   /* without a saved cursor: from the oldest entry (else new ones) */
};

struct journald_stats {
    uint64_t records; /* log records appended */
    uint64_t busy;    /* units the journal queue refused (re-read from the cursor) */
    uint64_t skipped; /* entries over the record limits */
};

/*
 * Follows systemd's journal through sd-journal on the loop (its descriptor is watched, no
 * polling). Each batch of entries is ONE journal unit with the cursor of the last one in the
 * state table (key "journald/NAME"), so a crash neither repeats nor skips an entry. Loop thread
 * only. Returns 0, COLLECT_EINVAL, COLLECT_EREAD (the journal cannot be opened), COLLECT_ENOMEM.
 */
int journald_new(struct event_base *base, struct journal *j, const struct journald_opts *opts,
                 collect_appended_fn appended, void *arg, struct journald **out, char *errbuf,
                 size_t errlen) __attribute__((warn_unused_result));
void journald_get_stats(const struct journald *jd, struct journald_stats *out);
void journald_free(struct journald *jd);

/* ---- Inventory (inventory.c) ----------------------------------------------------------------- */

#define INVENTORY_FIELDS 8

/* What the device is: the fields of the `inventory` event ("" when unknown). */
struct inventory {
    char hostname[256];
    char machine_id[64]; /* /etc/machine-id */
    char model[128];     /* /proc/device-tree/model */
    char l4t[32];        /* /etc/nv_tegra_release: "36.3.0" */
    char kernel[128];    /* uname -r */
    char root_bytes[24]; /* size of the filesystem at root "/" */
    char data_bytes[24]; /* size of the filesystem of data_dir */
    char ferryd[32];     /* ferryd's version */
};

/* Fills *inv from root (the [collect] root prefix), data_dir and the version string. */
void inventory_collect(const char *root, const char *data_dir, const char *version,
                       struct inventory *inv);
/* Key/value pairs of the known fields into kv (2 * INVENTORY_FIELDS entries, borrowed from
 * inv); returns the number of pairs. */
size_t inventory_kv(const struct inventory *inv, const char **kv);
/* FNV-1a over the pairs: changes when any field changes. */
uint64_t inventory_fingerprint(const struct inventory *inv);

/* ---- Helpers shared by the collectors (collect.c) ------------------------------------------- */

/* Reads root + rel (rel starts with '/') into buf (NUL-terminated, at most cap-1 bytes; a longer
 * file is cut). Returns the length, or -errno. */
long collect_read_file(const char *root, const char *rel, char *buf, size_t cap);
/* Writes root + rel into out. Returns 0 or -1 when it does not fit. */
int collect_path(const char *root, const char *rel, char *out, size_t cap);
/*
 * Text read from outside (a log line, a journal entry) made valid for a record: when p[0, n) is
 * well-formed UTF-8 without NUL bytes, *out = p; else every ill-formed subpart and every NUL is
 * replaced by U+FFFD into `scratch` (reset first) and *out points there (docs/wire-format.md,
 * "Text encoding": a log file cannot be told its line was refused, so the bytes are repaired).
 * Returns 0, or -1 when out of memory.
 */
int collect_text(struct ferry_buf *scratch, const char *p, size_t n, const char **out,
                 size_t *out_len) __attribute__((warn_unused_result));

/* Reads a file holding one integer (sysfs style, trailing newline allowed). Returns 0 or -1. */
int collect_read_i64(const char *path, int64_t *out);

#endif
