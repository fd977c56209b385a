/*
 * cmd_journal.c - `ferry journal stats|tail|dump DATA_DIR [--json]`: look into a journal.
 *
 * Opens the journal read-only (MDB_RDONLY, journal_config.read_only), so it works while ferryd
 * writes the same directory and never changes anything. Records are decoded with
 * record_unpack() (transport/record.h); a payload that does not decode is shown as its length
 * and the first bytes in hex, with the decoder's reason, so a damaged or foreign record is still
 * visible. JSON output uses the same record shape as the ingest's export (docs/ingest.md): one
 * object per line for tail/dump, one object for stats.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "engine/cli/cli.h"
#include "journal/journal.h"
#include "transport/record.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferry journal stats --data-dir DIR [--json]\n"
            "       ferry journal tail  --data-dir DIR [--stream S] [-n N] [--json]\n"
            "       ferry journal dump  --data-dir DIR [--stream S] [--from SEQ] [--limit N]\n"
            "                                          [--include-acked] [--json]\n"
            "\n"
            "Reads the journal in DIR read-only (safe while ferryd runs). The older form with DIR\n"
            "as the argument after the subcommand is still accepted.\n"
            "  --data-dir DIR   ferryd's data directory (-d DIR)\n"
            "  stats            records, bytes, unsent records and the oldest one's age per\n"
            "                   stream, evictions, gaps, file size against the quota\n"
            "  tail             the newest N unsent records (default 10) of each stream, or of S\n"
            "  dump             every unsent record in sequence order (with --include-acked\n"
            "                   also those acknowledged but not yet deleted)\n"
            "  --stream S       event, metric or log\n"
            "  --from SEQ       dump records after SEQ\n"
            "  --limit N        at most N records per stream\n"
            "  --json           JSON: stats as one object, records one object per line\n");
}

struct opts {
    const char *cmd;
    const char *dir;
    bool json;
    bool include_acked;
    int stream; /* -1: all */
    uint64_t from;
    uint64_t limit;
};

/* ---- record rendering ------------------------------------------------------------------------ */

static json_t *jstr(struct record_str s)
{
    return json_stringn(s.ptr ? s.ptr : "", s.len);
}

static json_t *field_json(const struct record_field *f)
{
    switch (f->type) {
    case RECORD_FIELD_FLOAT: return json_real(f->v.f);
    case RECORD_FIELD_INT: return json_integer(f->v.i);
    case RECORD_FIELD_UINT:
        return f->v.u > (uint64_t)INT64_MAX ? json_real((double)f->v.u)
                                            : json_integer((json_int_t)f->v.u);
    case RECORD_FIELD_STRING: return jstr(f->v.s);
    case RECORD_FIELD_BOOL: return json_boolean(f->v.b);
    }
    return json_null();
}

/* A record's device time for a person: UTC with milliseconds ("2026-12-07T09:26:19.123Z"), the
 * raw nanoseconds when the time is outside what gmtime can show. --json keeps "ts" in ns. */
static void format_time(int64_t ns, char *buf, size_t cap)
{
    time_t sec = (time_t)(ns / 1000000000);
    long ms = (long)((ns % 1000000000) / 1000000);
    if (ms < 0) {
        ms += 1000;
        sec--;
    }
    struct tm tm;
    if (!gmtime_r(&sec, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0 ||
        snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms) >= (int)cap)
        snprintf(buf, cap, "%" PRId64 "ns", ns);
}

static void print_hex_prefix(const uint8_t *p, size_t len, char *out, size_t cap)
{
    size_t n = len < 32 ? len : 32;
    if (cap < 2 * n + 1)
        n = (cap - 1) / 2;
    ferry_hex_encode(p, n, out);
}

static void print_entry(const struct opts *o, const struct journal_entry *e)
{
    static struct record_scratch scratch; /* large: not on the stack; the CLI is one thread */
    struct record r;
    char why[160] = "";
    int rc = record_unpack(e->payload, e->len, &scratch, &r, why, sizeof(why));
    const char *stream = record_stream_name(e->stream);
    if (o->json) {
        json_t *obj = json_object();
        json_object_set_new(obj, "stream", json_string(stream));
        json_object_set_new(obj, "seq", json_integer((json_int_t)e->seq));
        json_object_set_new(obj, "ts", json_integer(e->ts_ns));
        if (e->acked)
            json_object_set_new(obj, "acked", json_true());
        if (rc == 0) {
            json_object_set_new(obj, "name", jstr(r.name));
            if (e->stream == RECORD_LOG) {
                json_object_set_new(obj, "level", json_string(record_level_name(r.level)));
                json_object_set_new(obj, "message", jstr(r.message));
            }
            json_t *tags = json_object(), *fields = json_object();
            for (size_t i = 0; i < r.n_tags; i++) {
                char key[RECORD_MAX_KEY_LEN + 1];
                size_t kl =
                    r.tags[i].key.len < RECORD_MAX_KEY_LEN ? r.tags[i].key.len : RECORD_MAX_KEY_LEN;
                memcpy(key, r.tags[i].key.ptr, kl);
                key[kl] = '\0';
                json_object_set_new(tags, key, jstr(r.tags[i].value));
            }
            for (size_t i = 0; i < r.n_fields; i++) {
                char key[RECORD_MAX_KEY_LEN + 1];
                size_t kl = r.fields[i].key.len < RECORD_MAX_KEY_LEN ? r.fields[i].key.len
                                                                     : RECORD_MAX_KEY_LEN;
                memcpy(key, r.fields[i].key.ptr, kl);
                key[kl] = '\0';
                json_object_set_new(fields, key, field_json(&r.fields[i]));
            }
            json_object_set_new(obj, "tags", tags);
            json_object_set_new(obj, "fields", fields);
        } else {
            char hex[65];
            print_hex_prefix(e->payload, e->len, hex, sizeof(hex));
            json_object_set_new(obj, "undecodable", json_string(why));
            json_object_set_new(obj, "payload_len", json_integer((json_int_t)e->len));
            json_object_set_new(obj, "payload_hex_prefix", json_string(hex));
        }
        char *line = json_dumps(obj, JSON_COMPACT);
        if (line)
            printf("%s\n", line);
        free(line);
        json_decref(obj);
        return;
    }
    char when[40];
    format_time(e->ts_ns, when, sizeof when);
    printf("%-6s %10" PRIu64 " %24s%s ", stream, e->seq, when, e->acked ? " (acked)" : "");
    if (rc != 0) {
        char hex[65];
        print_hex_prefix(e->payload, e->len, hex, sizeof(hex));
        printf("<%zu bytes, not a record: %s> %s%s\n", e->len, why, hex, e->len > 32 ? "..." : "");
        return;
    }
    printf("%.*s", (int)r.name.len, r.name.ptr ? r.name.ptr : "");
    if (e->stream == RECORD_LOG)
        printf(" [%s] %.*s", record_level_name(r.level), (int)r.message.len,
               r.message.ptr ? r.message.ptr : "");
    for (size_t i = 0; i < r.n_tags; i++)
        printf(",%.*s=%.*s", (int)r.tags[i].key.len, r.tags[i].key.ptr, (int)r.tags[i].value.len,
               r.tags[i].value.ptr);
    for (size_t i = 0; i < r.n_fields; i++) {
        const struct record_field *f = &r.fields[i];
        printf("%s%.*s=", i ? "," : " ", (int)f->key.len, f->key.ptr);
        switch (f->type) {
        case RECORD_FIELD_FLOAT: printf("%.17g", f->v.f); break;
        case RECORD_FIELD_INT: printf("%" PRId64 "i", f->v.i); break;
        case RECORD_FIELD_UINT: printf("%" PRIu64 "u", f->v.u); break;
        case RECORD_FIELD_STRING: printf("\"%.*s\"", (int)f->v.s.len, f->v.s.ptr); break;
        case RECORD_FIELD_BOOL: printf("%s", f->v.b ? "true" : "false"); break;
        }
    }
    printf("\n");
}

/* ---- commands -------------------------------------------------------------------------------- */

static int fmt_age(char *buf, size_t cap, int64_t ms)
{
    if (ms < 0)
        return snprintf(buf, cap, "%" PRId64 "ms (clock ahead)", ms);
    if (ms < 10000)
        return snprintf(buf, cap, "%" PRId64 "ms", ms);
    if (ms < 3600 * 1000)
        return snprintf(buf, cap, "%" PRId64 "s", ms / 1000);
    return snprintf(buf, cap, "%.1fh", (double)ms / 3600000.0);
}

static int cmd_stats(struct journal *j, const struct opts *o)
{
    struct journal_stats st;
    int rc = journal_stats(j, &st);
    if (rc) {
        fprintf(stderr, "ferry journal: stats of %s: %s\n", o->dir, journal_strerror(rc));
        return 1;
    }
    struct journal_gap gaps[100];
    size_t n_gaps = 0;
    rc = journal_gaps(j, gaps, 100, &n_gaps);
    if (rc) {
        fprintf(stderr, "ferry journal: gaps of %s: %s\n", o->dir, journal_strerror(rc));
        return 1;
    }
    if (o->json) {
        json_t *obj = json_object(), *streams = json_object(), *jg = json_array();
        for (int s = 0; s < RECORD_STREAM_COUNT; s++) {
            const struct journal_stream_stats *ss = &st.stream[s];
            json_t *x = json_object();
            json_object_set_new(x, "records", json_integer((json_int_t)ss->records));
            json_object_set_new(x, "bytes", json_integer((json_int_t)ss->bytes));
            json_object_set_new(x, "unsent_records", json_integer((json_int_t)ss->unsent_records));
            json_object_set_new(x, "unsent_bytes", json_integer((json_int_t)ss->unsent_bytes));
            json_object_set_new(x, "next_seq", json_integer((json_int_t)ss->next_seq));
            json_object_set_new(x, "oldest_unsent_seq",
                                json_integer((json_int_t)ss->oldest_unsent_seq));
            json_object_set_new(x, "oldest_unsent_age_ms",
                                json_integer((json_int_t)ss->oldest_unsent_age_ms));
            json_object_set_new(x, "evicted_records",
                                json_integer((json_int_t)ss->evicted_records));
            json_object_set_new(x, "evicted_acked_records",
                                json_integer((json_int_t)ss->evicted_acked_records));
            json_object_set_new(streams, record_stream_name((enum record_stream)s), x);
        }
        for (size_t i = 0; i < n_gaps; i++) {
            json_t *g = json_object();
            json_object_set_new(g, "id", json_integer((json_int_t)gaps[i].id));
            json_object_set_new(g, "stream", json_string(record_stream_name(gaps[i].stream)));
            json_object_set_new(g, "first", json_integer((json_int_t)gaps[i].first));
            json_object_set_new(g, "last", json_integer((json_int_t)gaps[i].last));
            json_object_set_new(g, "reason", json_string(journal_gap_reason_name(gaps[i].reason)));
            json_object_set_new(g, "ts", json_integer(gaps[i].ts_ns));
            json_array_append_new(jg, g);
        }
        json_object_set_new(obj, "data_dir", json_string(o->dir));
        json_object_set_new(obj, "streams", streams);
        json_object_set_new(obj, "gaps_pending", json_integer((json_int_t)st.gaps_pending));
        json_object_set_new(obj, "gaps", jg);
        json_object_set_new(obj, "evictions", json_integer((json_int_t)st.evictions));
        json_object_set_new(obj, "used_bytes", json_integer((json_int_t)st.used_bytes));
        json_object_set_new(obj, "file_bytes", json_integer((json_int_t)st.file_bytes));
        json_object_set_new(obj, "map_bytes", json_integer((json_int_t)st.quota_bytes));
        char *text = json_dumps(obj, JSON_INDENT(2));
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(obj);
        return 0;
    }
    printf("journal %s\n", o->dir);
    printf("  file %" PRIu64 " bytes, pages in use %" PRIu64 " bytes, map (quota) %" PRIu64
           " bytes\n",
           st.file_bytes, st.used_bytes, st.quota_bytes);
    printf("  %-7s %10s %12s %10s %12s %10s %14s %10s\n", "stream", "records", "bytes", "unsent",
           "next_seq", "oldest", "oldest_age", "evicted");
    for (int s = 0; s < RECORD_STREAM_COUNT; s++) {
        const struct journal_stream_stats *ss = &st.stream[s];
        char age[48] = "-";
        if (ss->oldest_unsent_seq)
            fmt_age(age, sizeof(age), ss->oldest_unsent_age_ms);
        printf("  %-7s %10" PRIu64 " %12" PRIu64 " %10" PRIu64 " %12" PRIu64 " %10" PRIu64
               " %14s %10" PRIu64 "\n",
               record_stream_name((enum record_stream)s), ss->records, ss->bytes,
               ss->unsent_records, ss->next_seq, ss->oldest_unsent_seq, age, ss->evicted_records);
    }
    printf("  evictions %" PRIu64 ", gaps not yet reported %" PRIu64 "\n", st.evictions,
           st.gaps_pending);
    for (size_t i = 0; i < n_gaps; i++)
        printf("    gap %" PRIu64 ": %s %" PRIu64 "..%" PRIu64 " (%s)\n", gaps[i].id,
               record_stream_name(gaps[i].stream), gaps[i].first, gaps[i].last,
               journal_gap_reason_name(gaps[i].reason));
    return 0;
}

struct tail_ctx {
    struct journal_entry *entries;
    uint8_t **copies;
    size_t n;
};

static int tail_cb(void *arg, const struct journal_entry *e)
{
    struct tail_ctx *t = arg;
    uint8_t *copy = malloc(e->len ? e->len : 1);
    if (!copy)
        return 1;
    memcpy(copy, e->payload, e->len);
    t->entries[t->n] = *e;
    t->entries[t->n].payload = copy;
    t->copies[t->n] = copy;
    t->n++;
    return 0;
}

static int cmd_tail(struct journal *j, const struct opts *o)
{
    uint64_t n = o->limit ? o->limit : 10;
    if (n > 100000)
        n = 100000;
    int failures = 0;
    for (int s = 0; s < RECORD_STREAM_COUNT; s++) {
        if (o->stream >= 0 && s != o->stream)
            continue;
        struct tail_ctx t = {calloc(n, sizeof(struct journal_entry)), calloc(n, sizeof(uint8_t *)),
                             0};
        if (!t.entries || !t.copies) {
            free(t.entries);
            free(t.copies);
            fprintf(stderr, "ferry journal: out of memory\n");
            return 1;
        }
        struct journal_read_opts ro = {0, 0, n, JOURNAL_READ_NEWEST_FIRST};
        int rc = journal_read(j, (enum record_stream)s, &ro, tail_cb, &t, NULL);
        if (rc) {
            fprintf(stderr, "ferry journal: reading %s of %s: %s\n",
                    record_stream_name((enum record_stream)s), o->dir,
                    rc > 0 ? "out of memory" : journal_strerror(rc));
            failures++;
        }
        for (size_t i = t.n; i > 0; i--)
            print_entry(o, &t.entries[i - 1]);
        for (size_t i = 0; i < t.n; i++)
            free(t.copies[i]);
        free(t.entries);
        free(t.copies);
    }
    return failures ? 1 : 0;
}

static int dump_cb(void *arg, const struct journal_entry *e)
{
    print_entry(arg, e);
    return 0;
}

static int cmd_dump(struct journal *j, const struct opts *o)
{
    for (int s = 0; s < RECORD_STREAM_COUNT; s++) {
        if (o->stream >= 0 && s != o->stream)
            continue;
        struct journal_read_opts ro = {o->from, 0, (size_t)o->limit,
                                       o->include_acked ? JOURNAL_READ_INCLUDE_ACKED : 0};
        int rc = journal_read(j, (enum record_stream)s, &ro, dump_cb, (void *)o, NULL);
        if (rc) {
            fprintf(stderr, "ferry journal: reading %s of %s: %s\n",
                    record_stream_name((enum record_stream)s), o->dir, journal_strerror(rc));
            return 1;
        }
    }
    return 0;
}

int cli_journal(int argc, char **argv)
{
    struct opts o = {NULL, NULL, false, false, -1, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--data-dir") || !strcmp(a, "-d")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ferry journal: %s needs a value\n", a);
                return 2;
            }
            if (o.dir) {
                fprintf(stderr, "ferry journal: the data directory is given twice\n");
                return 2;
            }
            o.dir = argv[++i];
        } else if (!strcmp(a, "--json")) {
            o.json = true;
        } else if (!strcmp(a, "--include-acked")) {
            o.include_acked = true;
        } else if (!strcmp(a, "--stream") || !strcmp(a, "--from") || !strcmp(a, "--limit") ||
                   !strcmp(a, "-n")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ferry journal: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--stream")) {
                enum record_stream s;
                if (record_stream_parse(v, &s) != 0) {
                    fprintf(stderr, "ferry journal: unknown stream '%s' (event, metric, log)\n", v);
                    return 2;
                }
                o.stream = (int)s;
            } else if (ferry_parse_u64(v, UINT64_MAX, !strcmp(a, "--from") ? &o.from : &o.limit)) {
                fprintf(stderr, "ferry journal: %s: '%s' is not a number\n", a, v);
                return 2;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "ferry journal: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!o.cmd) {
            o.cmd = a;
        } else if (!o.dir) {
            o.dir = a;
        } else {
            fprintf(stderr, "ferry journal: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!o.cmd || !o.dir ||
        (strcmp(o.cmd, "stats") && strcmp(o.cmd, "tail") && strcmp(o.cmd, "dump"))) {
        usage(stderr);
        return 2;
    }
    struct journal_config cfg;
    journal_config_init(&cfg);
    cfg.read_only = true;
    struct journal *j = NULL;
    char err[512] = "";
    int rc = journal_open(o.dir, &cfg, &j, NULL, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "ferry journal: cannot open the journal in %s: %s (%s)\n", o.dir,
                journal_strerror(rc), err);
        return 1;
    }
    int status;
    if (!strcmp(o.cmd, "stats"))
        status = cmd_stats(j, &o);
    else if (!strcmp(o.cmd, "tail"))
        status = cmd_tail(j, &o);
    else
        status = cmd_dump(j, &o);
    (void)journal_close(j);
    return status;
}
