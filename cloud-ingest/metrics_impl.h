/*
 * metrics_impl.h - internal: the layout of struct ingest_metrics, shared by metrics.c (updates)
 * and server.c (exposition).
 */
#ifndef FERRY_INGEST_METRICS_IMPL_H
#define FERRY_INGEST_METRICS_IMPL_H

#include <stdatomic.h>
#include <stdint.h>

#include "cloud-ingest/ingest.h"

#define INGEST_H_BUCKETS 14
extern const double ingest_histogram_bounds[INGEST_H_BUCKETS];

struct ingest_hist {
    _Atomic uint64_t buckets[INGEST_H_BUCKETS + 1]; /* last one: +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
};

struct ingest_metrics {
    _Atomic uint64_t counters[INGEST_C_COUNT];
    struct ingest_hist hist[INGEST_H_COUNT];
};

#endif
