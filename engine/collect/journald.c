/*
 * journald.c - [input.journald.NAME]: systemd's journal into `log` records, through sd-journal.
 *
 * Design: sd_journal's descriptor (inotify on the journal files) is watched by ferryd's loop;
 * when it is readable, sd_journal_process() and then up to BATCH entries are read and appended
 * as ONE journal unit together with the cursor of the last one (state key "journald/NAME"), like
 * the file tail does with offsets (journal_appendv_state), so a crash neither repeats nor skips
 * an entry. Filters: units (_SYSTEMD_UNIT, OR'ed) and a maximum priority (PRIORITY <= N), which
 * sd-journal ANDs across fields.
 *
 * Record: name = SYSLOG_IDENTIFIER (else the unit, else NAME), level = PRIORITY (syslog levels
 * are the record levels), message = MESSAGE, tag unit = _SYSTEMD_UNIT, field pid = _PID, time =
 * the entry's realtime stamp.
 *
 * Invariant: `committed` is the cursor of the last entry in a committed (queued) unit; a unit
 * the journal queue refuses is re-read from there (sd_journal_seek_cursor + skip it).
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-journal.h>

#include "common/log.h"
#include "common/util.h"
#include "engine/collect/collect.h"
#include "journal/journal.h"

#define BATCH 4096
#define CURSOR_MAX 512

struct journald {
    struct event_base *base;
    struct journal *journal;
    collect_appended_fn appended;
    void *arg;
    char name[64];
    sd_journal *sj;
    struct event *ev_fd, *ev_retry;
    char committed[CURSOR_MAX]; /* "" : none yet */
    struct collect_out out;
    struct journal_append_req *reqs;
    size_t cap_reqs;
    struct journald_stats stats;
    struct ferry_buf text_scratch; /* a message repaired to valid UTF-8 (collect_text) */
};

/* Copies sd_journal_get_data's "FIELD=value" value into buf (NUL-terminated, cut at cap-1). */
static size_t field(sd_journal *sj, const char *name, char *buf, size_t cap)
{
    const void *data;
    size_t len;
    buf[0] = 0;
    if (sd_journal_get_data(sj, name, &data, &len) < 0)
        return 0;
    size_t nl = strlen(name) + 1;
    if (len < nl)
        return 0;
    len -= nl;
    if (len > cap - 1)
        len = cap - 1;
    memcpy(buf, (const char *)data + nl, len);
    buf[len] = 0;
    return len;
}

/* Packs the current entry. Returns 0, or COLLECT_ENOMEM. */
static int pack_entry(struct journald *d)
{
    static char msg[RECORD_MAX_VALUE_LEN + 1];
    char ident[256], unit[256], prio[8], pid[32];
    size_t mlen = field(d->sj, "MESSAGE", msg, sizeof msg);
    field(d->sj, "SYSLOG_IDENTIFIER", ident, sizeof ident);
    field(d->sj, "_SYSTEMD_UNIT", unit, sizeof unit);
    field(d->sj, "PRIORITY", prio, sizeof prio);
    field(d->sj, "_PID", pid, sizeof pid);
    uint64_t usec = 0;
    if (sd_journal_get_realtime_usec(d->sj, &usec) < 0)
        usec = (uint64_t)(ferry_realtime_ns() / 1000);
    struct record_tag tag = {{"unit", 4}, {unit, strlen(unit)}};
    struct record_field pf;
    int64_t pidv;
    struct record r;
    memset(&r, 0, sizeof r);
    r.stream = RECORD_LOG;
    r.ts_ns = (int64_t)usec * 1000;
    const char *name = ident[0] ? ident : unit[0] ? unit : d->name;
    r.name.ptr = name;
    r.name.len = strlen(name);
    r.level = (prio[0] >= '0' && prio[0] <= '7' && !prio[1]) ? (uint8_t)(prio[0] - '0')
                                                             : RECORD_LEVEL_INFO;
    const char *text;
    size_t text_len;
    if (collect_text(&d->text_scratch, msg, mlen, &text, &text_len) != 0)
        return COLLECT_ENOMEM;
    r.message.ptr = text;
    r.message.len = text_len;
    if (unit[0]) {
        r.tags = &tag;
        r.n_tags = 1;
    }
    if (pid[0] && ferry_parse_i64(pid, 0, INT32_MAX, &pidv) == 0) {
        pf.key.ptr = "pid";
        pf.key.len = 3;
        pf.type = RECORD_FIELD_INT;
        pf.v.i = pidv;
        r.fields = &pf;
        r.n_fields = 1;
    }
    struct collect_out *o = &d->out;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        struct collect_packed *np = realloc(o->recs, cap * sizeof *np);
        if (!np)
            return COLLECT_ENOMEM;
        o->recs = np;
        o->cap = cap;
    }
    size_t start = o->packed.len;
    int rc = record_pack(&r, &o->packed);
    if (rc == RECORD_ENOMEM)
        return COLLECT_ENOMEM;
    if (rc != 0) {
        d->stats.skipped++;
        return 0;
    }
    o->recs[o->n].offset = start;
    o->recs[o->n].len = o->packed.len - start;
    o->recs[o->n].ts_ns = r.ts_ns;
    o->n++;
    return 0;
}

/* Goes back to just after the last committed entry (or the start of what matched). */
static void rewind_to_committed(struct journald *d)
{
    if (d->committed[0] && sd_journal_seek_cursor(d->sj, d->committed) >= 0) {
        if (sd_journal_next(d->sj) > 0 && sd_journal_test_cursor(d->sj, d->committed) <= 0)
            sd_journal_previous(d->sj); /* the entry is gone (rotated away): stay before it */
    }
}

/* Reads and appends what is new. Returns 1 when more remains or the queue was full. */
static int drain(struct journald *d)
{
    collect_out_reset(&d->out);
    char *cursor = NULL;
    int n = 0, rc;
    while (n < BATCH && (rc = sd_journal_next(d->sj)) > 0) {
        if (pack_entry(d) != 0)
            break;
        n++;
    }
    if (n == 0)
        return 0;
    if (sd_journal_get_cursor(d->sj, &cursor) < 0 || strlen(cursor) >= CURSOR_MAX) {
        free(cursor);
        rewind_to_committed(d);
        return 1;
    }
    char key[80];
    int kl = snprintf(key, sizeof key, "journald/%s", d->name);
    struct journal_state_op op = {key, (size_t)kl, cursor, strlen(cursor), false};
    struct collect_out *o = &d->out;
    if (o->n > d->cap_reqs) {
        struct journal_append_req *r = realloc(d->reqs, o->n * sizeof *r);
        if (!r) {
            free(cursor);
            rewind_to_committed(d);
            return 1;
        }
        d->reqs = r;
        d->cap_reqs = o->n;
    }
    for (size_t i = 0; i < o->n; i++) {
        d->reqs[i].stream = RECORD_LOG;
        d->reqs[i].ts_ns = o->recs[i].ts_ns;
        d->reqs[i].payload = o->packed.data + o->recs[i].offset;
        d->reqs[i].len = o->recs[i].len;
        d->reqs[i].seq = 0;
    }
    rc = journal_appendv_state(d->journal, d->reqs, o->n, &op, 1, JOURNAL_APPEND_NONBLOCK);
    if (rc != 0) {
        if (rc != JOURNAL_EAGAIN)
            log_limited(60, FERRY_LOG_ERROR, "journald", "[input.journald.%s]: journal: %s",
                        d->name, journal_strerror(rc));
        d->stats.busy++;
        free(cursor);
        rewind_to_committed(d); /* invariant: re-read from the last committed entry */
        return 1;
    }
    memcpy(d->committed, cursor, strlen(cursor) + 1);
    free(cursor);
    d->stats.records += o->n;
    if (d->appended)
        d->appended(d->arg);
    return n == BATCH;
}

static void run(struct journald *d)
{
    if (drain(d))
        event_active(d->ev_retry, EV_TIMEOUT, 0);
}

static void on_fd(evutil_socket_t fd, short what, void *arg)
{
    struct journald *d = arg;
    sd_journal_process(d->sj);
    run(d);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct journald *d = arg;
    if (drain(d)) {
        struct timeval tv = {0, 5000};
        event_add(d->ev_retry, &tv);
    }
}

static int add_matches(struct journald *d, const struct journald_opts *o, char *errbuf,
                       size_t errlen)
{
    const char *p = o->units ? o->units : "";
    char m[300];
    for (;;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, " ,");
        if (len > 250) {
            snprintf(errbuf, errlen, "[input.journald.%s] units: a name over 250 bytes", d->name);
            return COLLECT_EINVAL;
        }
        int n = snprintf(m, sizeof m, "_SYSTEMD_UNIT=%.*s", (int)len, p);
        if (sd_journal_add_match(d->sj, m, (size_t)n) < 0)
            return COLLECT_EINVAL;
        p += len;
    }
    if (o->max_priority >= 0 && o->max_priority < 7)
        for (int prio = 0; prio <= o->max_priority; prio++) {
            int n = snprintf(m, sizeof m, "PRIORITY=%d", prio);
            if (sd_journal_add_match(d->sj, m, (size_t)n) < 0)
                return COLLECT_EINVAL;
        }
    return 0;
}

int journald_new(struct event_base *base, struct journal *j, const struct journald_opts *o,
                 collect_appended_fn appended, void *arg, struct journald **out, char *errbuf,
                 size_t errlen)
{
    if (!o->name || !o->name[0] || strlen(o->name) >= 64 || o->max_priority > 7) {
        snprintf(errbuf, errlen, "[input.journald]: a name, max_priority 0..7");
        return COLLECT_EINVAL;
    }
    struct journald *d = calloc(1, sizeof *d);
    if (!d)
        return COLLECT_ENOMEM;
    d->base = base;
    d->journal = j;
    d->appended = appended;
    d->arg = arg;
    snprintf(d->name, sizeof d->name, "%s", o->name);
    collect_out_init(&d->out);
    int rc = o->directory && o->directory[0] ? sd_journal_open_directory(&d->sj, o->directory, 0)
                                             : sd_journal_open(&d->sj, SD_JOURNAL_LOCAL_ONLY);
    if (rc < 0) {
        snprintf(errbuf, errlen, "[input.journald.%s]: cannot open the journal%s%s: %s", d->name,
                 o->directory && o->directory[0] ? " in " : "", o->directory ? o->directory : "",
                 strerror(-rc));
        free(d);
        return COLLECT_EREAD;
    }
    int err = add_matches(d, o, errbuf, errlen);
    if (err != 0) {
        journald_free(d);
        return err;
    }
    /* Where to start: after the saved cursor, else the start or the end of what matches. */
    char key[80];
    int kl = snprintf(key, sizeof key, "journald/%s", d->name);
    size_t got = 0;
    if (journal_state_get(j, key, (size_t)kl, d->committed, CURSOR_MAX - 1, &got) == 0) {
        d->committed[got] = 0;
        if (sd_journal_seek_cursor(d->sj, d->committed) < 0)
            d->committed[0] = 0;
        else if (sd_journal_next(d->sj) > 0 && sd_journal_test_cursor(d->sj, d->committed) <= 0)
            sd_journal_previous(d->sj);
    } else if (!o->from_beginning) {
        sd_journal_seek_tail(d->sj);
        sd_journal_previous(d->sj); /* positioned on the last entry: next() gives new ones */
    }
    int fd = sd_journal_get_fd(d->sj);
    d->ev_fd = fd >= 0 ? event_new(base, fd, EV_READ | EV_PERSIST, on_fd, d) : NULL;
    d->ev_retry = evtimer_new(base, on_retry, d);
    if (!d->ev_fd || !d->ev_retry || event_add(d->ev_fd, NULL) != 0) {
        snprintf(errbuf, errlen, "[input.journald.%s]: cannot watch the journal", d->name);
        journald_free(d);
        return COLLECT_EREAD;
    }
    run(d);
    *out = d;
    return 0;
}

void journald_get_stats(const struct journald *jd, struct journald_stats *out)
{
    *out = jd->stats;
}

void journald_free(struct journald *jd)
{
    struct journald *d = jd;
    if (!d)
        return;
    if (d->ev_fd)
        event_free(d->ev_fd);
    if (d->ev_retry)
        event_free(d->ev_retry);
    if (d->sj)
        sd_journal_close(d->sj);
    collect_out_free(&d->out);
    ferry_buf_free(&d->text_scratch);
    free(d->reqs);
    free(d);
}
