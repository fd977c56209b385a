/*
 * durable.c - the waiter thread behind durable_wait() (see durable.h).
 *
 * Invariants:
 *  1. A wait is in exactly one place: `queued` (thread has not finished it) or `done` (result
 *     known, callback not yet run), or it has been called back and freed.
 *  2. Waits complete in the order they were queued, so replies go out in request order.
 *  3. Only the loop thread touches `done` callbacks; the thread only moves items under the lock.
 */
#include "engine/durable.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
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
    int result;
    size_t n;
    struct durable_point points[]; /* n of them */
};

struct durable_list {
    struct durable_wait_item *head;
    struct durable_wait_item *tail;
};

struct durable {
    struct journal *journal;
    struct event *wake_ev;
    int wake_fd;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct durable_list queued; /* under lock */
    struct durable_list done;   /* under lock */
    bool stopping;              /* under lock */
    size_t pending;             /* loop thread only: queued + done, not yet called back */
};

const char *durable_strerror(int err)
{
    switch (err) {
    case DURABLE_OK: return "success";
    case DURABLE_ENOMEM: return "out of memory";
    case DURABLE_ESYS: return "cannot create the durability waiter (eventfd, event or thread)";
    case DURABLE_ECLOSED: return "durability waiter is shutting down";
    default: return "unknown durability waiter error";
    }
}

static void list_push(struct durable_list *l, struct durable_wait_item *it)
{
    it->next = NULL;
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
}

static struct durable_wait_item *list_pop(struct durable_list *l)
{
    struct durable_wait_item *it = l->head;
    if (it) {
        l->head = it->next;
        if (!l->head)
            l->tail = NULL;
    }
    return it;
}

static void wake_loop(struct durable *d)
{
    uint64_t one = 1;
    /* An eventfd write only fails when the counter would overflow, i.e. the loop has a wake-up
     * pending anyway. */
    ssize_t w = write(d->wake_fd, &one, sizeof one);
    (void)w;
}

static void *waiter_main(void *arg)
{
    struct durable *d = arg;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->queued.head && !d->stopping)
            pthread_cond_wait(&d->cond, &d->lock);
        struct durable_wait_item *it = list_pop(&d->queued);
        if (!it)
            break; /* stopping and nothing left */
        pthread_mutex_unlock(&d->lock);
        int result = 0;
        for (size_t i = 0; i < it->n && result == 0; i++)
            result = journal_wait(d->journal, it->points[i].stream, it->points[i].seq);
        it->result = result;
        pthread_mutex_lock(&d->lock);
        list_push(&d->done, it);
        wake_loop(d);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* Runs the callbacks of every finished wait, in order. Loop thread. */
static void run_done(struct durable *d)
{
    pthread_mutex_lock(&d->lock);
    struct durable_wait_item *list = d->done.head;
    d->done.head = d->done.tail = NULL;
    pthread_mutex_unlock(&d->lock);
    while (list) {
        struct durable_wait_item *it = list;
        list = it->next;
        d->pending--;
        it->fn(it->arg, it->result);
        free(it);
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct durable *d = arg;
    uint64_t count;
    ssize_t r = read(fd, &count, sizeof count);
    (void)r; /* EAGAIN: another read drained it; the done list is what counts */
    run_done(d);
}

int durable_new(struct event_base *base, struct journal *j, struct durable **out)
{
    struct durable *d = calloc(1, sizeof *d);
    if (!d)
        return DURABLE_ENOMEM;
    d->journal = j;
    d->wake_fd = -1;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    d->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->wake_fd < 0)
        goto fail;
    d->wake_ev = event_new(base, d->wake_fd, EV_READ | EV_PERSIST, on_wake, d);
    if (!d->wake_ev || event_add(d->wake_ev, NULL) != 0)
        goto fail;
    if (pthread_create(&d->thread, NULL, waiter_main, d) != 0)
        goto fail;
    (void)pthread_setname_np(d->thread, "ferryd-durable");
    d->thread_started = true;
    *out = d;
    return 0;
fail:
    durable_free(d);
    return DURABLE_ESYS;
}

int durable_wait(struct durable *d, const struct durable_point *points, size_t n, durable_fn fn,
                 void *arg)
{
    if (n > (SIZE_MAX - sizeof(struct durable_wait_item)) / sizeof(struct durable_point))
        return DURABLE_ENOMEM;
    struct durable_wait_item *it = malloc(sizeof *it + n * sizeof(struct durable_point));
    if (!it)
        return DURABLE_ENOMEM;
    it->fn = fn;
    it->arg = arg;
    it->result = 0;
    it->n = n;
    if (n)
        memcpy(it->points, points, n * sizeof *points);
    pthread_mutex_lock(&d->lock);
    if (d->stopping) {
        pthread_mutex_unlock(&d->lock);
        free(it);
        return DURABLE_ECLOSED;
    }
    list_push(&d->queued, it);
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    d->pending++;
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
    if (d->thread_started) {
        pthread_mutex_lock(&d->lock);
        d->stopping = true;
        pthread_cond_signal(&d->cond);
        pthread_mutex_unlock(&d->lock);
        pthread_join(d->thread, NULL);
    }
    run_done(d); /* everything the thread finished, including the last waits */
    if (d->wake_ev)
        event_free(d->wake_ev);
    if (d->wake_fd >= 0)
        close(d->wake_fd);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d);
}
