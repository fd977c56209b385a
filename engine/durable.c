/*
 * durable.c - durable_wait() on the event loop, woken by the journal's commit hook (see
 * durable.h).
 *
 * There is no thread: the journal calls commit_hook() after each commit, on the thread that
 * committed; while a wait is queued the hook writes the eventfd, the loop wakes, polls the head
 * waits with journal_poll() and calls back those whose records are resolved. An idle ferryd so
 * pays one loop wake-up per durable commit, and no helper thread's sleeps and lock hand-offs
 * (the idle wake-up budget).
 *
 * Invariants:
 *  1. The queue is touched by the loop thread only; the hook reads `armed` alone.
 *  2. Waits complete in the order they were queued, so replies go out in request order.
 *  3. `armed` is set before the loop polls a new head, and the journal resolves a commit before
 *     it calls the hook: a commit either is seen by that poll or its hook finds armed set and
 *     wakes the loop. No commit is missed, none is waited for on the loop.
 */
#include "engine/durable.h"

#include <errno.h>
#include <event2/event.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "journal/journal.h"

struct durable_wait_item {
    struct durable_wait_item *next;
    durable_fn fn;
    void *arg;
    size_t n;
    size_t done_points;            /* points[0..done_points) resolved without error */
    struct durable_point points[]; /* n of them */
};

struct durable {
    struct journal *journal;
    struct event *wake_ev;
    int wake_fd;
    struct durable_wait_item *head, *tail; /* loop thread only */
    size_t pending;                        /* loop thread only: queued, not yet called back */
    bool stopping;                         /* loop thread only */
    atomic_bool armed;                     /* a wait is queued: the hook wakes the loop */
};

const char *durable_strerror(int err)
{
    switch (err) {
    case DURABLE_OK: return "success";
    case DURABLE_ENOMEM: return "out of memory";
    case DURABLE_ESYS: return "cannot create the durability waiter (eventfd or event)";
    case DURABLE_ECLOSED: return "durability waiter is shutting down";
    default: return "unknown durability waiter error";
    }
}

/* The journal's commit hook: any thread, queue lock held; must not block. */
static void commit_hook(void *arg)
{
    struct durable *d = arg;
    if (!atomic_load(&d->armed))
        return;
    uint64_t one = 1;
    /* An eventfd write only fails when the counter would overflow, i.e. the loop has a wake-up
     * pending anyway. */
    ssize_t w = write(d->wake_fd, &one, sizeof one);
    (void)w;
}

/* Polls the head wait: 1 when it is finished (*result set), 0 while a point is pending. With
 * `block`, waits for the commit instead (durable_free only). */
static int head_finished(struct durable *d, bool block, int *result)
{
    struct durable_wait_item *it = d->head;
    while (it->done_points < it->n) {
        const struct durable_point *p = &it->points[it->done_points];
        int rc = block ? journal_wait(d->journal, p->stream, p->seq)
                       : journal_poll(d->journal, p->stream, p->seq);
        if (rc == JOURNAL_EAGAIN)
            return 0;
        if (rc != 0) {
            *result = rc;
            return 1;
        }
        it->done_points++;
    }
    *result = 0;
    return 1;
}

/* Calls back every finished wait at the head, in order. Loop thread. */
static void run_done(struct durable *d, bool block)
{
    for (;;) {
        if (!d->head) {
            atomic_store(&d->armed, false);
            return;
        }
        /* Invariant 3: armed before the poll. */
        atomic_store(&d->armed, true);
        int result = 0;
        if (!head_finished(d, block, &result))
            return;
        struct durable_wait_item *it = d->head;
        d->head = it->next;
        if (!d->head)
            d->tail = NULL;
        d->pending--;
        it->fn(it->arg, result);
        free(it);
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct durable *d = arg;
    uint64_t count;
    ssize_t r = read(fd, &count, sizeof count);
    (void)r; /* EAGAIN: woken by event_active(); the queue is what counts */
    run_done(d, false);
}

int durable_new(struct event_base *base, struct journal *j, struct durable **out)
{
    struct durable *d = calloc(1, sizeof *d);
    if (!d)
        return DURABLE_ENOMEM;
    d->journal = j;
    atomic_init(&d->armed, false);
    d->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->wake_fd < 0)
        goto fail;
    d->wake_ev = event_new(base, d->wake_fd, EV_READ | EV_PERSIST, on_wake, d);
    if (!d->wake_ev || event_add(d->wake_ev, NULL) != 0)
        goto fail;
    journal_set_commit_hook(j, commit_hook, d);
    *out = d;
    return 0;
fail:
    if (d->wake_ev)
        event_free(d->wake_ev);
    if (d->wake_fd >= 0)
        close(d->wake_fd);
    free(d);
    return DURABLE_ESYS;
}

int durable_wait(struct durable *d, const struct durable_point *points, size_t n, durable_fn fn,
                 void *arg)
{
    if (d->stopping)
        return DURABLE_ECLOSED;
    if (n > (SIZE_MAX - sizeof(struct durable_wait_item)) / sizeof(struct durable_point))
        return DURABLE_ENOMEM;
    struct durable_wait_item *it = malloc(sizeof *it + n * sizeof(struct durable_point));
    if (!it)
        return DURABLE_ENOMEM;
    it->next = NULL;
    it->fn = fn;
    it->arg = arg;
    it->n = n;
    it->done_points = 0;
    if (n)
        memcpy(it->points, points, n * sizeof *points);
    bool was_empty = !d->head;
    if (d->tail)
        d->tail->next = it;
    else
        d->head = it;
    d->tail = it;
    d->pending++;
    if (was_empty) {
        /* Invariant 3, and the callback never comes from inside this call: arm, then let the
         * loop poll the new head in its next turn (it may be committed already). */
        atomic_store(&d->armed, true);
        event_active(d->wake_ev, EV_READ, 0);
    }
    return 0;
}

size_t durable_pending(const struct durable *d)
{
    return d->pending;
}

void durable_free(struct durable *d)
{
    if (!d)
        return;
    d->stopping = true;
    run_done(d, true); /* every queued wait ends once its records commit, or with an error */
    journal_set_commit_hook(d->journal, NULL, NULL);
    if (d->wake_ev)
        event_free(d->wake_ev);
    if (d->wake_fd >= 0)
        close(d->wake_fd);
    free(d);
}
