/*
 * logs.c - the upload_logs action (agent.h): the systemd journal's entries of the last N minutes,
 * at every priority (debug included, whatever the [input.journald.NAME] sections keep), appended
 * to ferryd's log stream with the tag action=<id>, so the ingest gets them with the next batches.
 *
 * Record mapping as [input.journald.NAME] (engine/collect/journald.c): name = SYSLOG_IDENTIFIER
 * (else the unit, else "journal"), level = PRIORITY, message = MESSAGE, tag unit = _SYSTEMD_UNIT,
 * field pid = _PID, time = the entry's realtime stamp. Bounded by ACTION_LOGS_MAX_ENTRIES and
 * ACTION_LOGS_MAX_BYTES (what is left out is counted in the result).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-journal.h>

#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"
#include "engine/action/agent.h"
#include "journal/journal.h"
#include "transport/record.h"

#define CHUNK 512 /* records per journal unit */

/* Copies the value of "FIELD=value" into buf (NUL-terminated, cut at cap - 1); its length. */
static size_t field(sd_journal *sj, const char *name, char *buf, size_t cap)
{
    const void *data;
    size_t len;
    buf[0] = '\0';
    if (sd_journal_get_data(sj, name, &data, &len) < 0)
        return 0;
    size_t nl = strlen(name) + 1;
    if (len < nl)
        return 0;
    len -= nl;
    if (len > cap - 1)
        len = cap - 1;
    memcpy(buf, (const char *)data + nl, len);
    buf[len] = '\0';
    return len;
}

struct batch {
    struct ferry_buf packed;
    size_t offs[CHUNK], lens[CHUNK];
    int64_t ts[CHUNK];
    size_t n;
};

static int flush(struct journal *j, struct batch *b)
{
    if (b->n == 0)
        return 0;
    struct journal_append_req reqs[CHUNK];
    for (size_t i = 0; i < b->n; i++) {
        reqs[i].stream = RECORD_LOG;
        reqs[i].ts_ns = b->ts[i];
        reqs[i].payload = (const uint8_t *)b->packed.data + b->offs[i];
        reqs[i].len = b->lens[i];
        reqs[i].seq = 0;
    }
    int rc = journal_appendv(j, reqs, b->n, 0);
    b->n = 0;
    ferry_buf_reset(&b->packed);
    return rc;
}

/* Packs the current entry into the batch. Returns 0, or -1 when it broke a record limit. */
static int pack(sd_journal *sj, const char *action_id, struct batch *b, struct ferry_buf *text,
                size_t *bytes)
{
    static __thread char msg[RECORD_MAX_VALUE_LEN + 1];
    char ident[256], unit[256], prio[8], pid[32];
    size_t mlen = field(sj, "MESSAGE", msg, sizeof msg);
    field(sj, "SYSLOG_IDENTIFIER", ident, sizeof ident);
    field(sj, "_SYSTEMD_UNIT", unit, sizeof unit);
    field(sj, "PRIORITY", prio, sizeof prio);
    field(sj, "_PID", pid, sizeof pid);
    uint64_t usec = 0;
    if (sd_journal_get_realtime_usec(sj, &usec) < 0)
        usec = (uint64_t)(ferry_realtime_ns() / 1000);
    struct record_tag tags[2] = {{{"action", 6}, {action_id, strlen(action_id)}},
                                 {{"unit", 4}, {unit, strlen(unit)}}};
    struct record r;
    memset(&r, 0, sizeof r);
    r.stream = RECORD_LOG;
    r.ts_ns = (int64_t)usec * 1000;
    const char *name = ident[0] ? ident : unit[0] ? unit : "journal";
    r.name = (struct record_str){name, strlen(name)};
    r.level = (prio[0] >= '0' && prio[0] <= '7' && !prio[1]) ? (uint8_t)(prio[0] - '0')
                                                             : RECORD_LEVEL_INFO;
    /* journal messages may hold anything: made valid UTF-8 (U+FFFD), as every input does */
    ferry_buf_reset(text);
    if (ferry_buf_append_utf8(text, msg, mlen) != 0)
        return -1;
    r.message = (struct record_str){text->data ? (const char *)text->data : "", text->len};
    r.tags = tags;
    r.n_tags = unit[0] ? 2 : 1;
    struct record_field pf;
    int64_t pidv;
    if (pid[0] && ferry_parse_i64(pid, 0, INT32_MAX, &pidv) == 0) {
        pf.key = (struct record_str){"pid", 3};
        pf.type = RECORD_FIELD_INT;
        pf.v.i = pidv;
        r.fields = &pf;
        r.n_fields = 1;
    }
    size_t start = b->packed.len;
    if (record_pack(&r, &b->packed) != 0) {
        b->packed.len = start;
        return -1;
    }
    b->offs[b->n] = start;
    b->lens[b->n] = b->packed.len - start;
    b->ts[b->n] = r.ts_ns;
    b->n++;
    *bytes += b->packed.len - start;
    return 0;
}

int action_upload_logs(struct journal *j, const char *directory, int64_t since_ns, int64_t until_ns,
                       const char *const *units, size_t n_units, const char *action_id,
                       struct action_logs_result *out)
{
    memset(out, 0, sizeof(*out));
    sd_journal *sj = NULL;
    int rc = directory && directory[0] ? sd_journal_open_directory(&sj, directory, 0)
                                       : sd_journal_open(&sj, SD_JOURNAL_LOCAL_ONLY);
    if (rc < 0) {
        snprintf(out->error, sizeof(out->error), "cannot open the systemd journal: %s",
                 strerror(-rc));
        return -1;
    }
    for (size_t i = 0; i < n_units; i++) {
        char m[320];
        if ((size_t)snprintf(m, sizeof m, "_SYSTEMD_UNIT=%s", units[i]) >= sizeof m ||
            sd_journal_add_match(sj, m, 0) < 0) {
            snprintf(out->error, sizeof(out->error), "unit %s: cannot match it", units[i]);
            sd_journal_close(sj);
            return -1;
        }
    }
    struct batch *b = calloc(1, sizeof(*b));
    struct ferry_buf text = FERRY_BUF_INIT;
    if (b == NULL) {
        sd_journal_close(sj);
        snprintf(out->error, sizeof(out->error), "out of memory");
        return -1;
    }
    size_t bytes = 0;
    int jrc = 0;
    rc = sd_journal_seek_realtime_usec(sj, (uint64_t)(since_ns > 0 ? since_ns / 1000 : 0));
    while (rc >= 0 && (rc = sd_journal_next(sj)) > 0) {
        uint64_t usec = 0;
        if (sd_journal_get_realtime_usec(sj, &usec) == 0 && (int64_t)usec * 1000 > until_ns)
            break;
        if (out->records >= ACTION_LOGS_MAX_ENTRIES || bytes >= ACTION_LOGS_MAX_BYTES) {
            out->left_out++;
            continue;
        }
        if (pack(sj, action_id, b, &text, &bytes) != 0) {
            out->left_out++;
            continue;
        }
        out->records++;
        if (b->n == CHUNK && (jrc = flush(j, b)) != 0)
            break;
    }
    if (jrc == 0)
        jrc = flush(j, b);
    sd_journal_close(sj);
    ferry_buf_free(&b->packed);
    ferry_buf_free(&text);
    free(b);
    if (jrc != 0) {
        snprintf(out->error, sizeof(out->error), "ferry's journal refused the records (%d)", jrc);
        return -1;
    }
    if (rc < 0) {
        snprintf(out->error, sizeof(out->error), "reading the systemd journal: %s", strerror(-rc));
        return -1;
    }
    return 0;
}
