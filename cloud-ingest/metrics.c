/*
 * metrics.c - the service's own counters and latency histograms, lock-free (relaxed atomics),
 * exposed in Prometheus text format by server.c's /metrics handler.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "cloud-ingest/ingest.h"
#include "cloud-ingest/metrics_impl.h"

const double ingest_histogram_bounds[INGEST_H_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

int ingest_metrics_new(struct ingest_metrics **out)
{
    *out = calloc(1, sizeof(**out));
    return *out != NULL ? 0 : INGEST_ENOMEM;
}

void ingest_metrics_free(struct ingest_metrics *m)
{
    free(m);
}

void ingest_metrics_add(struct ingest_metrics *m, enum ingest_counter c, uint64_t n)
{
    atomic_fetch_add_explicit(&m->counters[c], n, memory_order_relaxed);
}

uint64_t ingest_metrics_get(struct ingest_metrics *m, enum ingest_counter c)
{
    return atomic_load_explicit(&m->counters[c], memory_order_relaxed);
}

void ingest_metrics_observe(struct ingest_metrics *m, enum ingest_histogram h, double seconds)
{
    struct ingest_hist *hist = &m->hist[h];
    size_t b = 0;
    while (b < INGEST_H_BUCKETS && seconds > ingest_histogram_bounds[b])
        b++;
    atomic_fetch_add_explicit(&hist->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hist->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hist->sum_ns, (uint64_t)(seconds * 1e9), memory_order_relaxed);
}
