/*
 * committer.c - the group committer: a bounded queue between the HTTP workers and the store.
 *
 * Workers submit verified jobs; storage threads take everything that is queued (up to
 * limits.group_max_records records, at least one job) and write it in ONE store transaction, so
 * that thousands of devices sending small batches cost one fsync per group instead of one per
 * batch. While a group commits, the next one accumulates: under load, groups grow by themselves.
 *
 * Invariants:
 *   1. A job's done callback runs exactly once, after the store call for its group returned,
 *      with job->commit_result 0 only when that call made the job's writes durable.
 *   2. The queue never holds more than limits.queue_max jobs, and the jobs accepted and not yet
 *      answered (queued or being committed) never hold more than limits.queue_max_bytes (a job's
 *      held_bytes: its request body and decoded records) unless a single job does alone: submit
 *      fails with INGEST_EBUSY instead (the worker answers 503 + Retry-After), so memory under
 *      overload is bounded in batches and in bytes, whatever the number of devices sending.
 *   3. ingest_committer_free() commits what is queued before the threads exit: a job accepted
 *      into the queue is always answered.
 *
 * LMDB has one writer at a time, so one storage thread; PostgreSQL gets store.storage_threads
 * (each with its own connection from the store's pool), which overlaps network round trips.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "cloud-ingest/actions/actions.h"
#include "cloud-ingest/ingest.h"
#include "common/log.h"
#include "common/util.h"

struct ingest_committer {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct ingest_job *head, *tail;
    size_t depth;
    size_t queue_max;
    uint64_t held_bytes, queue_max_bytes; /* jobs accepted and not yet answered */
    size_t group_max_records;
    bool stopping;
    struct ingest_store *store;
    struct ingest_metrics *metrics;
    ingest_commit_done_fn done;
    void *arg;
    pthread_t *threads;
    size_t n_threads;
};

/* The jobs of a group are answered from here on: their bytes no longer count. (The worker frees
 * the request body when it replies, moments later; the bound is on what waits for storage.) */
static void release_bytes(struct ingest_committer *c, uint64_t bytes)
{
    pthread_mutex_lock(&c->lock);
    c->held_bytes = bytes <= c->held_bytes ? c->held_bytes - bytes : 0;
    pthread_mutex_unlock(&c->lock);
}

static void commit_group(struct ingest_committer *c, struct ingest_job *group, size_t n,
                         struct ingest_write **writes)
{
    size_t i = 0;
    for (struct ingest_job *j = group; j != NULL; j = j->next)
        writes[i++] = &j->write;
    char err[256] = "";
    int64_t t0 = ferry_monotonic_ns();
    int rc = ingest_store_write(c->store, writes, n, err, sizeof(err));
    ingest_metrics_observe(c->metrics, INGEST_H_COMMIT_SECONDS,
                           (double)(ferry_monotonic_ns() - t0) / 1e9);
    ingest_metrics_add(c->metrics, INGEST_C_COMMIT_GROUPS, 1);
    if (rc != 0) {
        ingest_metrics_add(c->metrics, INGEST_C_STORE_ERRORS, 1);
        log_limited(5, FERRY_LOG_ERROR, "ingest", "group commit of %zu batches failed: %s", n, err);
    }
    /* Results of device actions move their actions to "done" once their events are durable and
     * before the device hears the ack: a crash in between only makes the batch come again. */
    for (struct ingest_job *j = group; rc == 0 && j != NULL; j = j->next)
        if (j->action_results != NULL && j->write.result == 0 &&
            actions_take_results(c->store, j->device_id, j->action_results) != 0)
            log_limited(5, FERRY_LOG_ERROR, "ingest", "device %s: action results not recorded",
                        j->device_id);
    uint64_t bytes = 0;
    for (struct ingest_job *j = group; j != NULL; j = j->next)
        bytes += j->held_bytes;
    release_bytes(c, bytes);
    struct ingest_job *j = group;
    while (j != NULL) {
        struct ingest_job *next = j->next;
        j->next = NULL;
        j->commit_result = rc;
        c->done(j, c->arg); /* may free or reuse j */
        j = next;
    }
}

static void *storage_thread(void *arg)
{
    struct ingest_committer *c = arg;
    size_t writes_cap = 64;
    struct ingest_write **writes = malloc(writes_cap * sizeof(*writes));
    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (c->head == NULL && !c->stopping)
            pthread_cond_wait(&c->cond, &c->lock);
        if (c->head == NULL && c->stopping) {
            pthread_mutex_unlock(&c->lock);
            break;
        }
        struct ingest_job *group = c->head, *last = c->head;
        size_t n = 1, records = group->write.n_recs;
        while (last->next != NULL && records + last->next->write.n_recs <= c->group_max_records) {
            last = last->next;
            records += last->write.n_recs;
            n++;
        }
        c->head = last->next;
        if (c->head == NULL)
            c->tail = NULL;
        last->next = NULL;
        c->depth -= n;
        pthread_mutex_unlock(&c->lock);
        if (n > writes_cap || writes == NULL) {
            free(writes);
            writes_cap = n * 2;
            writes = malloc(writes_cap * sizeof(*writes));
        }
        if (writes == NULL) {
            /* No memory for the pointer array: fail the group rather than lose track of it. */
            uint64_t bytes = 0;
            for (struct ingest_job *j = group; j != NULL; j = j->next)
                bytes += j->held_bytes;
            release_bytes(c, bytes);
            for (struct ingest_job *j = group, *next; j != NULL; j = next) {
                next = j->next;
                j->next = NULL;
                j->commit_result = INGEST_STORE_ENOMEM;
                c->done(j, c->arg);
            }
            writes_cap = 0;
            continue;
        }
        commit_group(c, group, n, writes);
    }
    free(writes);
    return NULL;
}

int ingest_committer_new(struct ingest_store *store, struct ingest_metrics *metrics,
                         const struct ingest_config *cfg, ingest_commit_done_fn done, void *arg,
                         struct ingest_committer **out)
{
    struct ingest_committer *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return INGEST_ENOMEM;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->queue_max = cfg->queue_max;
    c->queue_max_bytes = cfg->queue_max_bytes;
    c->group_max_records = cfg->group_max_records;
    c->store = store;
    c->metrics = metrics;
    c->done = done;
    c->arg = arg;
    c->n_threads = ingest_store_kind(store) == INGEST_STORE_LMDB ? 1 : cfg->storage_threads;
    c->threads = calloc(c->n_threads, sizeof(*c->threads));
    if (c->threads == NULL) {
        free(c);
        return INGEST_ENOMEM;
    }
    for (size_t i = 0; i < c->n_threads; i++) {
        if (pthread_create(&c->threads[i], NULL, storage_thread, c) != 0) {
            c->n_threads = i;
            ingest_committer_free(c);
            return INGEST_EIO;
        }
    }
    *out = c;
    return 0;
}

int ingest_committer_submit(struct ingest_committer *c, struct ingest_job *job)
{
    pthread_mutex_lock(&c->lock);
    if (c->depth >= c->queue_max || c->stopping ||
        (c->held_bytes > 0 && c->held_bytes + job->held_bytes > c->queue_max_bytes)) {
        pthread_mutex_unlock(&c->lock);
        return INGEST_EBUSY;
    }
    c->held_bytes += job->held_bytes;
    job->next = NULL;
    if (c->tail != NULL)
        c->tail->next = job;
    else
        c->head = job;
    c->tail = job;
    c->depth++;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

uint64_t ingest_committer_held_bytes(struct ingest_committer *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t b = c->held_bytes;
    pthread_mutex_unlock(&c->lock);
    return b;
}

size_t ingest_committer_depth(struct ingest_committer *c)
{
    pthread_mutex_lock(&c->lock);
    size_t d = c->depth;
    pthread_mutex_unlock(&c->lock);
    return d;
}

void ingest_committer_free(struct ingest_committer *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < c->n_threads; i++)
        pthread_join(c->threads[i], NULL);
    free(c->threads);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}
