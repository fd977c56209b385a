/*
 * compare_int.h - what compare.c (the comparison, the statistics, the gates) shares with
 * compare_versions.c (the version benchmark, its endpoint and CLI): the sample collector and the
 * distributions. Internal to cloud-ingest/query/; the contract is compare.h.
 */
#ifndef FERRY_INGEST_QUERY_COMPARE_INT_H
#define FERRY_INGEST_QUERY_COMPARE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloud-ingest/query/compare.h"

/* One sample. `dev` is the device index while samples are collected; group_dist() replaces it by
 * the sample's weight once the per-device counts are known. */
struct cmp_sample {
    double v;
    union {
        uint64_t dev;
        double w;
    } u;
};

struct cmp_group {
    struct cmp_sample *s;
    size_t n, cap;
};

struct cmp_metric {
    bool error_logs;
    char measurement[COMPARE_METRIC_MAX + 1];
    char field[COMPARE_METRIC_MAX + 1];
    size_t measurement_len;
};

/* Checks a metric name and splits it ("error_logs", or MEASUREMENT.FIELD at the last dot).
 * Returns 0 or -1 with err. */
int compare__metric_parse(const char *metric, struct cmp_metric *m, char *err, size_t err_len);

/* [from, to) of corrected device time whose samples go to `group`. */
struct cmp_span {
    int64_t from, to;
    uint32_t group;
};

/* What one comparison collects: for each metric m and group g, samples in groups[m * n_groups +
 * g]. error_logs metrics get one sample per (device, group) at the end of the device's scan. */
struct cmp_collect {
    const struct cmp_metric *metrics;
    size_t n_metrics;
    size_t n_groups;
    struct cmp_group *groups;
    uint64_t samples; /* kept, all groups */
    uint64_t scanned; /* records read, all devices */
    bool truncated;   /* a scan did not reach a span's start, or the sample cap was hit */
    uint64_t per_device_scan;
};

/* Prepares a collection of n_metrics x n_groups sample groups for n_devices devices (each
 * device's scan budget is COMPARE_SCAN_MAX / n_devices records per stream, capped at the series
 * limit). Returns 0 or INGEST_STORE_ENOMEM; free with compare__collect_free() either way. */
int compare__collect_init(struct cmp_collect *c, const struct cmp_metric *metrics, size_t n_metrics,
                          size_t n_groups, size_t n_devices);
/* Scans device `dev` (index dev_index) and files its samples over `spans`. Returns 0 or a store
 * error. */
int compare__collect_device(struct ingest_store *store, struct cmp_collect *c, uint64_t dev_index,
                            const struct ingest_device *dev, const struct cmp_span *spans,
                            size_t n_spans);
void compare__collect_free(struct cmp_collect *c);
/* A group's distribution (every device weighs the same) and, when medians is not NULL, the
 * per-device medians (room for g->n values). Reorders the group's samples. */
void compare__group_dist(struct cmp_group *g, struct compare_dist *d, double *medians,
                         size_t *n_medians);

/* Appends {"devices","count","mean","p50","p95"} (NaN as null). Returns 0 or -1. */
struct ferry_buf;
int compare__dist_json(struct ferry_buf *b, const struct compare_dist *d);

#endif
