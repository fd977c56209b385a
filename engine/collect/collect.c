/*
 * collect.c - the collect set: collectors on shared timers, one journal unit per round.
 *
 * Design: the set groups collectors by interval; each group has one persistent libevent timer.
 * When it fires, every collector of the group runs into one struct collect_out, and the round
 * goes to the journal as one journal_appendv() with JOURNAL_APPEND_NONBLOCK: the loop never waits
 * for the journal. A round the journal cannot take (queue full, or an error) is dropped whole,
 * counted (collect_set_dropped_rounds) and logged, rate-limited: a sample of device health is
 * worth less than the loop's latency, and the drop is never silent.
 *
 * Invariants:
 *  1. One timer per distinct interval (the idle wakeup budget: < 1 per second with the
 *     defaults), and no other event of the set.
 *  2. A round is appended as one unit or not at all.
 *  3. collect_run() is the only place that updates a collector's counters.
 */
#include "engine/collect/collect.h"

#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/utf8.h"
#include "common/util.h"
#include "journal/journal.h"

const char *collect_strerror(int err)
{
    switch (err) {
    case COLLECT_OK: return "success";
    case COLLECT_ENOMEM: return "out of memory";
    case COLLECT_EINVAL: return "invalid collector option";
    case COLLECT_EREAD: return "cannot read a kernel file";
    case COLLECT_EFORMAT: return "unexpected kernel file format";
    case COLLECT_EJOURNAL: return "journal refused the round";
    case COLLECT_ENOTFOUND: return "hardware not found";
    default: return "unknown collect error";
    }
}

/* ---- Records -------------------------------------------------------------------------------- */

static struct record_str str_of(const char *s)
{
    struct record_str r = {s, strlen(s)};
    return r;
}

void collect_rec_begin(struct collect_rec *rec, const char *measurement, int64_t ts_ns)
{
    memset(&rec->r, 0, sizeof rec->r);
    rec->r.stream = RECORD_METRIC;
    rec->r.ts_ns = ts_ns;
    rec->r.name = str_of(measurement);
    rec->r.tags = rec->tags;
    rec->r.fields = rec->fields;
}

void collect_tag(struct collect_rec *rec, const char *key, const char *value)
{
    assert(rec->r.n_tags < COLLECT_MAX_TAGS);
    struct record_tag *t = &rec->tags[rec->r.n_tags++];
    t->key = str_of(key);
    t->value = str_of(value);
}

static struct record_field *next_field(struct collect_rec *rec, const char *key)
{
    assert(rec->r.n_fields < COLLECT_MAX_FIELDS);
    struct record_field *f = &rec->fields[rec->r.n_fields++];
    f->key = str_of(key);
    return f;
}

void collect_float(struct collect_rec *rec, const char *key, double v)
{
    struct record_field *f = next_field(rec, key);
    f->type = RECORD_FIELD_FLOAT;
    f->v.f = v;
}

void collect_int(struct collect_rec *rec, const char *key, int64_t v)
{
    struct record_field *f = next_field(rec, key);
    f->type = RECORD_FIELD_INT;
    f->v.i = v;
}

void collect_string(struct collect_rec *rec, const char *key, const char *v)
{
    struct record_field *f = next_field(rec, key);
    f->type = RECORD_FIELD_STRING;
    f->v.s = str_of(v);
}

void collect_out_init(struct collect_out *out)
{
    memset(out, 0, sizeof *out);
}

void collect_out_reset(struct collect_out *out)
{
    out->packed.len = 0;
    out->n = 0;
}

void collect_out_free(struct collect_out *out)
{
    ferry_buf_free(&out->packed);
    free(out->recs);
    memset(out, 0, sizeof *out);
}

int collect_emit(struct collect_out *out, const struct collect_rec *rec)
{
    if (rec->r.n_fields == 0)
        return 0;
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 64;
        struct collect_packed *p = realloc(out->recs, cap * sizeof *p);
        if (!p)
            return COLLECT_ENOMEM;
        out->recs = p;
        out->cap = cap;
    }
    size_t start = out->packed.len;
    int rc = record_pack(&rec->r, &out->packed);
    if (rc == RECORD_ENOMEM)
        return COLLECT_ENOMEM;
    if (rc != 0)
        return COLLECT_EFORMAT;
    out->recs[out->n].offset = start;
    out->recs[out->n].len = out->packed.len - start;
    out->recs[out->n].ts_ns = rec->r.ts_ns;
    out->n++;
    return 0;
}

/* ---- Collectors ----------------------------------------------------------------------------- */

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int collect_run(struct collector *c, int64_t ts_ns, struct collect_out *out, char *errbuf,
                size_t errlen)
{
    size_t before = out->n;
    uint64_t cpu0 = thread_cpu_ns();
    int rc = c->collect(c->state, ts_ns, out, errbuf, errlen);
    c->cpu_ns += thread_cpu_ns() - cpu0;
    c->rounds++;
    c->last_records = out->n - before;
    c->records += c->last_records;
    if (rc != 0)
        c->errors++;
    return rc;
}

void collector_free(struct collector *c)
{
    if (!c)
        return;
    if (c->free_state)
        c->free_state(c->state);
    free(c);
}

int collect_text(struct ferry_buf *scratch, const char *p, size_t n, const char **out,
                 size_t *out_len)
{
    /* Most lines are ASCII without NUL: checked 8 bytes at a time (this runs on every tailed
     * line); anything else goes through the full UTF-8 check. */
    size_t ascii = 0;
    for (; ascii + 8 <= n; ascii += 8) {
        uint64_t w;
        memcpy(&w, p + ascii, 8);
        /* a byte >= 0x80, or a zero byte (the classic "has a zero byte" test) */
        if ((w & 0x8080808080808080ull) ||
            ((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull))
            break;
    }
    if (ferry_utf8_find_invalid(p + ascii, n - ascii, false) == n - ascii) {
        *out = p;
        *out_len = n;
        return 0;
    }
    scratch->len = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != 0)
            continue;
        if (ferry_buf_append_utf8(scratch, p + start, i - start) != 0)
            return -1;
        if (i < n && ferry_buf_append(scratch, "\xef\xbf\xbd", 3) != 0) /* the NUL */
            return -1;
        start = i + 1;
    }
    /* Each repaired byte may grow to three: stay within the record limit, on a character. */
    size_t len = scratch->len;
    if (len > RECORD_MAX_VALUE_LEN) {
        len = RECORD_MAX_VALUE_LEN;
        while (len > 0 && (scratch->data[len] & 0xC0) == 0x80)
            len--;
    }
    *out = (const char *)scratch->data;
    *out_len = len;
    return 0;
}

/* ---- Files ---------------------------------------------------------------------------------- */

int collect_path(const char *root, const char *rel, char *out, size_t cap)
{
    size_t rl = strlen(root);
    while (rl > 0 && root[rl - 1] == '/')
        rl--; /* "/" and "" both mean the real root */
    int n = snprintf(out, cap, "%.*s%s", (int)rl, root, rel);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

static long read_fd_all(int fd, char *buf, size_t cap)
{
    size_t used = 0;
    while (used + 1 < cap) {
        ssize_t n = read(fd, buf + used, cap - 1 - used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    buf[used] = 0;
    return (long)used;
}

long collect_read_file(const char *root, const char *rel, char *buf, size_t cap)
{
    char path[4096];
    if (cap == 0)
        return -EINVAL;
    buf[0] = 0;
    if (collect_path(root, rel, path, sizeof path) != 0)
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    long n = read_fd_all(fd, buf, cap);
    close(fd); /* read-only: nothing to lose */
    return n;
}

int collect_read_i64(const char *path, int64_t *out)
{
    char buf[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long n = read_fd_all(fd, buf, sizeof buf);
    close(fd);
    if (n <= 0)
        return -1;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    return ferry_parse_i64(buf, INT64_MIN, INT64_MAX, out) == 0 ? 0 : -1;
}

/* ---- The set -------------------------------------------------------------------------------- */

struct collect_group {
    struct collect_set *set;
    int64_t interval_ms;
    struct event *timer;
};

#define COLLECT_SET_MAX 16

struct collect_set {
    struct event_base *base;
    struct journal *journal;
    collect_appended_fn appended;
    void *arg;
    struct collector *collectors[COLLECT_SET_MAX];
    size_t n;
    struct collect_group groups[COLLECT_SET_MAX];
    size_t n_groups;
    struct collect_out out;
    struct journal_append_req *reqs;
    size_t cap_reqs;
    uint64_t dropped_rounds;
};

int collect_set_new(struct event_base *base, struct journal *j, collect_appended_fn appended,
                    void *arg, struct collect_set **out)
{
    struct collect_set *set = calloc(1, sizeof *set);
    if (!set)
        return COLLECT_ENOMEM;
    set->base = base;
    set->journal = j;
    set->appended = appended;
    set->arg = arg;
    collect_out_init(&set->out);
    *out = set;
    return 0;
}

int collect_set_add(struct collect_set *set, struct collector *c)
{
    if (set->n == COLLECT_SET_MAX || c->interval_ms < 100) {
        collector_free(c);
        return COLLECT_EINVAL;
    }
    set->collectors[set->n++] = c;
    for (size_t i = 0; i < set->n_groups; i++)
        if (set->groups[i].interval_ms == c->interval_ms)
            return 0;
    struct collect_group *g = &set->groups[set->n_groups++];
    g->set = set;
    g->interval_ms = c->interval_ms;
    return 0;
}

/* Appends the round in set->out as one unit (invariant 2). */
static void append_round(struct collect_set *set)
{
    struct collect_out *o = &set->out;
    if (o->n == 0)
        return;
    if (o->n > set->cap_reqs) {
        struct journal_append_req *r = realloc(set->reqs, o->n * sizeof *r);
        if (!r) {
            set->dropped_rounds++;
            log_limited(60, FERRY_LOG_WARN, "collect",
                        "round of %zu records dropped: out of memory", o->n);
            return;
        }
        set->reqs = r;
        set->cap_reqs = o->n;
    }
    for (size_t i = 0; i < o->n; i++) {
        set->reqs[i].stream = RECORD_METRIC;
        set->reqs[i].ts_ns = o->recs[i].ts_ns;
        set->reqs[i].payload = o->packed.data + o->recs[i].offset;
        set->reqs[i].len = o->recs[i].len;
        set->reqs[i].seq = 0;
    }
    int rc = journal_appendv(set->journal, set->reqs, o->n, JOURNAL_APPEND_NONBLOCK);
    if (rc != 0) {
        set->dropped_rounds++;
        log_limited(60, FERRY_LOG_WARN, "collect",
                    "round of %zu records dropped: journal: %s (%llu rounds dropped so far)", o->n,
                    journal_strerror(rc), (unsigned long long)set->dropped_rounds);
        return;
    }
    if (set->appended)
        set->appended(set->arg);
}

static void run_group(struct collect_set *set, int64_t interval_ms)
{
    collect_out_reset(&set->out);
    int64_t now = ferry_realtime_ns();
    for (size_t i = 0; i < set->n; i++) {
        struct collector *c = set->collectors[i];
        if (c->interval_ms != interval_ms)
            continue;
        char err[COLLECT_ERRBUF] = "";
        int rc = collect_run(c, now, &set->out, err, sizeof err);
        if (rc != 0)
            log_limited(300, FERRY_LOG_WARN, "collect", "[collect.%s]: %s: %s", c->name,
                        collect_strerror(rc), err);
    }
    append_round(set);
}

/* Every group's timer is on the grid of its interval (ferry_us_to_grid): rounds of one interval
 * and ferryd's own ticks of that interval share one wake-up, wherever each was started. */
static int arm_group(struct collect_group *g)
{
    (void)event_base_update_cache_time(g->set->base); /* count from now, not from the wake */
    int64_t us = ferry_us_to_grid(g->interval_ms);
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    return event_add(g->timer, &tv);
}

static void on_group_timer(evutil_socket_t fd, short what, void *arg)
{
    struct collect_group *g = arg;
    if (arm_group(g) != 0)
        log_limited(300, FERRY_LOG_WARN, "collect", "cannot re-arm the %lld ms round timer",
                    (long long)g->interval_ms);
    run_group(g->set, g->interval_ms);
}

int collect_set_start(struct collect_set *set)
{
    for (size_t i = 0; i < set->n_groups; i++) {
        struct collect_group *g = &set->groups[i];
        g->timer = event_new(set->base, -1, 0, on_group_timer, g);
        if (!g->timer || arm_group(g) != 0)
            return COLLECT_ENOMEM;
        run_group(set, g->interval_ms);
    }
    return 0;
}

uint64_t collect_set_dropped_rounds(const struct collect_set *set)
{
    return set->dropped_rounds;
}

size_t collect_set_timers(const struct collect_set *set)
{
    return set->n_groups;
}

const struct collector *collect_set_collector(const struct collect_set *set, size_t i)
{
    return i < set->n ? set->collectors[i] : NULL;
}

void collect_set_free(struct collect_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n_groups; i++)
        if (set->groups[i].timer)
            event_free(set->groups[i].timer);
    for (size_t i = 0; i < set->n; i++)
        collector_free(set->collectors[i]);
    collect_out_free(&set->out);
    free(set->reqs);
    free(set);
}
