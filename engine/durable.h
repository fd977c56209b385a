/*
 * durable.h - "tell me on the loop when these records are durable".
 *
 * ferryd answers `POST /write` with 204 only after every point of the request committed in the
 * journal (ARCHITECTURE invariant 1). The event loop must never block, so it never calls
 * journal_wait(): the loop queues a list of (stream, seq) points with durable_wait(); the
 * journal's commit hook (journal_set_commit_hook) writes an eventfd after each commit while a
 * wait is queued; the loop then polls the points with journal_poll() and runs the request's
 * callback, which sends the reply. No helper thread: one loop wake-up per commit that someone
 * waits for (the idle wake-up budget of ferryd).
 *
 * Callback contract (STYLE rule 16): durable_wait() either fails and never calls back, or
 * succeeds and calls back exactly once, on the loop thread (or inside durable_free()).
 */
#ifndef FERRY_ENGINE_DURABLE_H
#define FERRY_ENGINE_DURABLE_H

#include <stddef.h>
#include <stdint.h>

#include "transport/record.h"

struct event_base;
struct journal;
struct durable;

enum durable_error {
    DURABLE_OK = 0,
    DURABLE_ENOMEM = -1,  /* allocation failed */
    DURABLE_ESYS = -2,    /* eventfd or event creation failed */
    DURABLE_ECLOSED = -3, /* durable_free() is running: no new waits */
};
const char *durable_strerror(int err);

/* One record to wait for: the last sequence of an append unit of `stream`. */
struct durable_point {
    enum record_stream stream;
    uint64_t seq;
};

/* Called once with 0 when every point committed, or with the first journal error (negative
 * enum journal_error) a point's commit reported. Runs on the loop thread. */
typedef void (*durable_fn)(void *arg, int journal_err);

/* Registers the wake-up on `base` and the journal's commit hook (one durable per journal). The
 * journal must outlive the returned handle. Returns 0 or DURABLE_ENOMEM / DURABLE_ESYS. */
int durable_new(struct event_base *base, struct journal *j, struct durable **out)
    __attribute__((warn_unused_result));

/* Queues a wait for `n` points (copied; n may be 0: the callback then still comes from the loop,
 * never from inside this call). Loop thread only. Returns 0 or DURABLE_ENOMEM / DURABLE_ECLOSED. */
int durable_wait(struct durable *d, const struct durable_point *points, size_t n, durable_fn fn,
                 void *arg) __attribute__((warn_unused_result));

/* Waits queued and not yet called back. */
size_t durable_pending(const struct durable *d);

/* Waits (blocking) for every queued wait to end (once its records commit, or with the journal's
 * error), runs the remaining callbacks, removes the commit hook and frees the handle. Call it
 * before journal_close(), on the loop thread. NULL is a no-op. */
void durable_free(struct durable *d);

#endif
