/*
 * sync_worker.c - the sync engine's one helper thread.
 *
 * Why a thread: building a full batch means reading up to max_batch bytes from LMDB, encoding
 * them, compressing with zstd and signing - measured at several milliseconds to tens of
 * milliseconds for a 4 MiB batch - and acknowledging means a journal commit with an fsync. The
 * event loop also serves the local inputs (/write), so it must not wait for either. The thread
 * takes jobs from a queue (struct sync_job: `run` here, `done` back on the loop) and hands
 * results back through an eventfd the loop watches. It sleeps on a condition variable when there
 * is nothing to do: no timer, no polling, no wake-ups while idle.
 *
 * Threads and ownership: a job belongs to the worker from submit until its `done` is called on
 * the loop. The batch builder (s->builder) and the gap scratch are touched only here.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/util.h"
#include "engine/sync_int.h"

/* ---- the thread and its queues ------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct sync_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->todo_head && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop)
            break;
        struct sync_job *job = w->todo_head;
        w->todo_head = job->next;
        if (!w->todo_head)
            w->todo_tail = NULL;
        job->next = NULL;
        pthread_mutex_unlock(&w->mu);

        job->run(job);

        pthread_mutex_lock(&w->mu);
        bool was_empty = w->done_head == NULL;
        if (w->done_tail)
            w->done_tail->next = job;
        else
            w->done_head = job;
        w->done_tail = job;
        if (was_empty) {
            uint64_t one = 1;
            /* eventfd write cannot fail short; EAGAIN only if the counter would overflow */
            ssize_t wr = write(w->efd, &one, sizeof(one));
            (void)wr;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void on_results(evutil_socket_t fd, short what, void *arg)
{
    struct sync_worker *w = arg;
    (void)what;
    uint64_t v;
    ssize_t rd = read(fd, &v, sizeof(v));
    (void)rd;
    pthread_mutex_lock(&w->mu);
    struct sync_job *list = w->done_head;
    w->done_head = w->done_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    while (list) {
        struct sync_job *next = list->next;
        list->next = NULL;
        list->done(list);
        list = next;
    }
}

int sync_worker_start(struct sync_worker *w, struct event_base *base)
{
    memset(w, 0, sizeof(*w));
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0)
        return SYNC_ETHREAD;
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        close(w->efd);
        return SYNC_ETHREAD;
    }
    if (pthread_cond_init(&w->cv, NULL) != 0)
        goto fail_mutex;
    w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, on_results, w);
    if (!w->ev || event_add(w->ev, NULL) != 0)
        goto fail_cond;
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        goto fail_cond;
    /* A name for top/perf/ps -L: "which thread is busy" should not need a debugger. */
    (void)pthread_setname_np(w->thread, "ferryd-sync");
    w->started = true;
    return 0;
fail_cond:
    if (w->ev)
        event_free(w->ev);
    pthread_cond_destroy(&w->cv);
fail_mutex:
    pthread_mutex_destroy(&w->mu);
    close(w->efd);
    return SYNC_ETHREAD;
}

void sync_worker_submit(struct sync_worker *w, struct sync_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->todo_tail)
        w->todo_tail->next = job;
    else
        w->todo_head = job;
    w->todo_tail = job;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void sync_worker_stop(struct sync_worker *w)
{
    if (!w->started)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    /* Everything left (never run, or run but not delivered) is released by its done(), which
     * sees s->freeing. */
    struct sync_job *lists[2] = {w->todo_head, w->done_head};
    w->todo_head = w->todo_tail = w->done_head = w->done_tail = NULL;
    for (int i = 0; i < 2; i++) {
        struct sync_job *job = lists[i];
        while (job) {
            struct sync_job *next = job->next;
            job->next = NULL;
            job->done(job);
            job = next;
        }
    }
    event_free(w->ev);
    close(w->efd);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    w->started = false;
}

/* ---- building a batch ------------------------------------------------------------------------ */

struct read_ctx {
    struct sync *s;
    struct sync_batch *b;
    enum record_stream stream;
    uint64_t stop_at_or_below; /* NEWEST reads stop here */
    uint64_t stop_before;      /* OLDEST reads stop here (0 = no stop) */
    bool at_skip;              /* ... and did */
    bool newest;
    bool full;
    uint64_t first, last;
    uint64_t count, raw;
    uint64_t last_visited; /* highest seq consumed by an OLDEST read (cursor) */
    size_t rejected_gaps;
};

static int read_one(void *arg, const struct journal_entry *e)
{
    struct read_ctx *c = arg;
    if (c->newest && e->seq <= c->stop_at_or_below)
        return 1;
    if (!c->newest && c->stop_before != 0 && e->seq >= c->stop_before) {
        c->at_skip = true;
        return 1;
    }
    int rc = batch_builder_add_packed(c->s->builder, c->stream, e->seq, e->payload, e->len);
    if (rc == BATCH_EFULL) {
        c->full = true;
        return 1;
    }
    if (rc == BATCH_EINVAL) {
        /* A payload the codec cannot carry (it does not unpack, or breaks a limit) would block
         * its stream forever: report it as a rejected gap and let the range cover it, so the
         * ack sets it aside. */
        if (batch_builder_add_gap(c->s->builder, c->stream, e->seq, e->seq, BATCH_GAP_REJECTED) !=
            0)
            return 1; /* no room for another gap: end this batch here */
        c->rejected_gaps++;
    } else if (rc != 0) {
        return rc < 0 ? rc : -1;
    } else {
        c->count++;
        c->raw += e->len;
    }
    if (c->first == 0 || e->seq < c->first)
        c->first = e->seq;
    if (e->seq > c->last)
        c->last = e->seq;
    if (!c->newest)
        c->last_visited = e->seq;
    return 0;
}

static uint8_t map_gap_reason(enum journal_gap_reason r)
{
    switch (r) {
    case JOURNAL_GAP_QUOTA: return BATCH_GAP_EVICTED;
    case JOURNAL_GAP_WRITE_FAILED:
    case JOURNAL_GAP_RECOVERY: return BATCH_GAP_CORRUPT;
    }
    return BATCH_GAP_CORRUPT;
}

static int ensure_builder(struct sync *s, struct sync_batch *b)
{
    if (s->builder && strcmp(s->builder_device_id, b->device_id) == 0)
        return 0;
    batch_builder_free(s->builder);
    s->builder = NULL;
    struct batch_builder_config bc;
    memset(&bc, 0, sizeof(bc));
    bc.device_id = b->device_id;
    bc.secret_key = s->sk;
    bc.zstd_level = s->zstd_level;
    int rc = batch_builder_new(&bc, &s->builder);
    if (rc != 0)
        return rc;
    ferry_strlcpy(s->builder_device_id, b->device_id, sizeof(s->builder_device_id));
    return 0;
}

void sync_batch_build_run(struct sync_job *job)
{
    struct sync_batch *b = (struct sync_batch *)job;
    struct sync *s = job->s;
    int rc = ensure_builder(s, b);
    if (rc != 0) {
        b->err = rc;
        snprintf(b->errmsg, sizeof(b->errmsg), "batch builder: %s", batch_strerror(rc));
        return;
    }
    batch_builder_reset(s->builder);

    size_t gaps_room = BATCH_MAX_GAPS;
    /* Gaps first: they are few, small, and must be reported in the next batch. */
    if (b->include_gaps) {
        size_t n = 0;
        rc = journal_gaps(s->journal, s->gap_scratch, BATCH_MAX_GAPS / 2, &n);
        if (rc == 0) {
            for (size_t i = 0; i < n; i++) {
                const struct journal_gap *g = &s->gap_scratch[i];
                if (batch_builder_add_gap(s->builder, g->stream, g->first, g->last,
                                          map_gap_reason(g->reason)) != 0)
                    break;
                b->n_gaps++;
                if (g->id > b->gaps_max_id)
                    b->gaps_max_id = g->id;
            }
        }
        gaps_room -= b->n_gaps;
    }
    (void)gaps_room;

    /* Weighted budget (docs/sync.md "Order"): events first, but at most half the batch when
     * other streams wait; metrics next, at most three quarters of what is left when logs wait;
     * logs get the rest. No stream is starved while another is busy. */
    uint64_t remaining = b->budget_bytes;
    for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
        if (b->mode[st] == SYNC_READ_NONE || remaining == 0)
            continue;
        bool later_waiting = false;
        for (int k = st + 1; k < RECORD_STREAM_COUNT; k++)
            if (b->mode[k] != SYNC_READ_NONE)
                later_waiting = true;
        uint64_t cap = remaining;
        if (later_waiting)
            cap = st == RECORD_EVENT ? remaining / 2 : remaining * 3 / 4;
        if (cap == 0)
            cap = 1;

        struct read_ctx c;
        memset(&c, 0, sizeof(c));
        c.s = s;
        c.b = b;
        c.stream = (enum record_stream)st;
        c.newest = b->mode[st] == SYNC_READ_NEWEST;
        c.stop_at_or_below = c.newest ? b->from_seq[st] : 0;
        c.stop_before = c.newest ? 0 : b->stop_before[st];
        struct journal_read_opts ro;
        memset(&ro, 0, sizeof(ro));
        ro.from_seq = c.newest ? 0 : b->from_seq[st];
        ro.byte_budget = (size_t)cap;
        ro.flags = c.newest ? JOURNAL_READ_NEWEST_FIRST : 0;
        struct journal_read_result res;
        rc = journal_read(s->journal, (enum record_stream)st, &ro, read_one, &c, &res);
        if (rc < 0) {
            b->err = rc;
            snprintf(b->errmsg, sizeof(b->errmsg), "journal read of %s: %s",
                     record_stream_name((enum record_stream)st), journal_strerror(rc));
            batch_builder_reset(s->builder);
            return;
        }
        if (c.last > 0) {
            b->has_range[st] = true;
            b->range[st].first = c.first;
            b->range[st].last = c.last;
            b->records[st] = c.count;
            b->raw_bytes[st] = c.raw;
            b->total_records += (uint32_t)c.count;
            b->total_raw_bytes += c.raw;
        }
        b->last_read_seq[st] = c.newest ? 0 : c.last_visited;
        b->more[st] = !c.newest && (c.full || res.more);
        b->at_skip[st] = c.at_skip;
        remaining = c.raw >= remaining ? 0 : remaining - c.raw;
        if (c.full)
            break;
    }

    if (b->total_records == 0 && b->n_gaps == 0) {
        bool any_range = false;
        for (int st = 0; st < RECORD_STREAM_COUNT; st++)
            any_range |= b->has_range[st];
        if (!any_range)
            return; /* nothing to send: wire stays empty */
    }
    /* How far behind the device is, for the ingest's device view: records not yet acknowledged
     * beyond this batch's own (other batches in flight included). */
    struct journal_stats js;
    if (journal_stats(s->journal, &js) == 0) {
        uint64_t backlog[RECORD_STREAM_COUNT];
        for (int st = 0; st < RECORD_STREAM_COUNT; st++)
            backlog[st] = js.stream[st].unsent_records > b->records[st]
                              ? js.stream[st].unsent_records - b->records[st]
                              : 0;
        batch_builder_set_backlog(s->builder, backlog);
    }
    rc = batch_builder_finish(s->builder, ferry_realtime_ns(), &b->wire);
    if (rc != 0) {
        b->err = rc;
        snprintf(b->errmsg, sizeof(b->errmsg), "batch finish: %s (%s)", batch_strerror(rc),
                 batch_builder_error(s->builder));
        batch_builder_reset(s->builder);
    }
}

/* ---- acknowledgements ------------------------------------------------------------------------ */

void sync_ack_run(struct sync_job *job)
{
    struct sync_ack *a = (struct sync_ack *)job;
    struct sync *s = job->s;
    for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
        if (a->n[st] == 0)
            continue;
        int rc = journal_ack(s->journal, (enum record_stream)st, a->ranges[st], a->n[st]);
        if (rc != 0 && a->err == 0) {
            a->err = rc;
            snprintf(a->errmsg, sizeof(a->errmsg), "journal ack of %s [%llu..%llu]: %s",
                     record_stream_name((enum record_stream)st),
                     (unsigned long long)a->ranges[st][0].first,
                     (unsigned long long)a->ranges[st][a->n[st] - 1].last, journal_strerror(rc));
        }
    }
    /* journal_ack() deleted one chunk; a batch larger than that leaves acknowledged records
     * behind. Up to SYNC_GC_AFTER_ACK more per ack keep deletion ahead of a catch-up; the idle
     * release (sync_release_run) deletes the rest. */
    if (a->err == 0 && journal_gc(s->journal, SYNC_GC_AFTER_ACK, NULL, NULL) != 0)
        log_debug("sync", "journal gc after ack failed; the idle release retries");
    if (a->gaps_max_id > 0) {
        int rc = journal_gaps_mark_reported(s->journal, a->gaps_max_id);
        if (rc != 0 && a->err == 0) {
            a->err = rc;
            snprintf(a->errmsg, sizeof(a->errmsg), "journal gaps_mark_reported: %s",
                     journal_strerror(rc));
        }
    }
    if (a->reject) {
        char ranges[200];
        size_t off = 0;
        ranges[0] = '\0';
        for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
            if (a->n[st] == 0)
                continue;
            int n = snprintf(ranges + off, sizeof(ranges) - off, "%s%s:%llu-%llu", off ? " " : "",
                             record_stream_name((enum record_stream)st),
                             (unsigned long long)a->ranges[st][0].first,
                             (unsigned long long)a->ranges[st][a->n[st] - 1].last);
            if (n < 0 || (size_t)n >= sizeof(ranges) - off)
                break;
            off += (size_t)n;
        }
        const char *keys[] = {"reason", "ranges"};
        const char *values[] = {a->reason, ranges};
        /* Best effort: the rejection itself is already durable in the ack above. */
        (void)sync_append_event(s, "sync.batch_rejected", keys, values, 2, 0);
    }
}

void sync_ack_free(struct sync_ack *a)
{
    for (int st = 0; st < RECORD_STREAM_COUNT; st++)
        free(a->ranges[st]);
    free(a);
}

void sync_batch_free(struct sync_batch *b)
{
    ferry_buf_free(&b->wire);
    free(b);
}

/* ---- idle release ---------------------------------------------------------------------------- */

void sync_release_run(struct sync_job *job)
{
    struct sync *s = job->s;
    batch_builder_free(s->builder);
    s->builder = NULL;
    s->builder_device_id[0] = '\0';
    /* glibc keeps freed memory in its arenas; an idle daemon gives it back (measured: tens of
     * MiB of RSS after a burst otherwise stay with the process). */
    /* Acknowledged records beyond what the acks deleted go now, in bounded transactions. */
    size_t deleted = 0;
    if (journal_gc(s->journal, 0, &deleted, NULL) != 0)
        log_debug("sync", "journal gc failed; acknowledged records stay until the next idle");
    else if (deleted > 0)
        log_debug("sync", "idle: deleted %zu acknowledged records", deleted);
    if (s->no_process_release)
        return;
    malloc_trim(0);
    /* Likewise the journal's map: pages a burst read stay resident until dropped. A failure
     * only means the pages stay resident. */
    if (journal_release_memory(s->journal) != 0)
        log_debug("sync", "journal map pages could not be released (madvise)");
}
