/*
 * query.h - read endpoints that answer questions about stored data rather than hand records out
 * one by one: the downsampled metric series the console charts (GET /v1/series), and the metric
 * comparison and version benchmark of compare.h (GET /v1/versions/compare).
 *
 * A chart of a week at 10 s resolution is 60,480 samples; the browser needs at most a few
 * thousand points. The ingest therefore buckets the samples itself: each bucket carries min, max,
 * mean and count, so that a spike survives downsampling (min/max) and the mean stays honest.
 *
 * The work is bounded: one request scans at most INGEST_SERIES_SCAN_MAX records of the device's
 * metric stream (the most recent ones by sequence), and the answer says how many it scanned and
 * whether older records were left unscanned ("truncated"), so a chart never silently lies.
 *
 * It uses only the router (router.h) and the store interface (store.h).
 */
#ifndef FERRY_INGEST_QUERY_H
#define FERRY_INGEST_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "cloud-ingest/store.h"

struct ingest_router;
struct ferry_buf;

#define INGEST_SERIES_POINTS_DEFAULT 1000
#define INGEST_SERIES_POINTS_MAX 5000
#define INGEST_SERIES_SCAN_MAX 1000000 /* metric records read by one request, at most */
#define INGEST_SERIES_METRIC_MAX 256   /* bytes of MEASUREMENT.FIELD */

/* One request, parsed: the field `field` of measurement `measurement`, samples with
 * from_ns <= ts_corrected < to_ns, in at most `points` buckets. */
struct ingest_series_req {
    char device[INGEST_DEVICE_ID_MAX + 1];
    char measurement[INGEST_SERIES_METRIC_MAX + 1];
    char field[INGEST_SERIES_METRIC_MAX + 1];
    int64_t from_ns;
    int64_t to_ns;
    uint32_t points;
};

/*
 * Parses the query string of GET /v1/series (device=ID&metric=MEASUREMENT.FIELD[&from=NS]
 * [&to=NS][&points=N]; `to` defaults to `now_ns`, `from` to one hour before `to`, `points` to
 * INGEST_SERIES_POINTS_DEFAULT). The metric is split at its LAST dot, so a measurement may hold
 * dots and a field may not; from < to, and the range is at most ten years. Returns 0, or -1
 * with a message for the client in err (what is wrong with which parameter).
 */
int ingest_series_parse(const char *query, int64_t now_ns, struct ingest_series_req *req, char *err,
                        size_t err_len) __attribute__((warn_unused_result));

/*
 * Computes the series from the store and appends its JSON object to `out`:
 *   {"device":..,"metric":..,"from":NS,"to":NS,"bucket_ns":NS,
 *    "points":[{"t":NS,"min":X,"max":X,"mean":X,"count":N}...],
 *    "scanned":N,"scan_limit":N,"truncated":BOOL}
 * Only buckets holding at least one sample are listed, in time order; `t` is the bucket's start.
 * Non-numeric values and NaN/infinite floats are skipped (a bool counts as 0 or 1).
 * Returns 0 or a negative enum ingest_store_err (ENOTFOUND: no such device).
 */
int ingest_series_json(struct ingest_store *store, const struct ingest_series_req *req,
                       struct ferry_buf *out) __attribute__((warn_unused_result));

/* Adds GET /v1/series and GET /v1/versions/compare (compare.h) to `router`; `store` is borrowed and
 * must outlive it. Returns 0 or -1. */
int ingest_query_register(struct ingest_router *router, struct ingest_store *store)
    __attribute__((warn_unused_result));

#endif
