/*
 * compare.h - metric comparison: the distribution of one metric before and after devices switched
 * to a new version, against devices that did not switch, with a test of whether a difference is
 * larger than the noise; metric gates over such a comparison (what rollout gates call); and the
 * benchmark of every version of a component running in the fleet (GET /v1/versions/compare,
 * `ferry-ingest versions compare`). docs/compare.md is the reference for what is computed.
 *
 * Time is always the corrected device time (ts_corrected) of a record: a backlog that arrives
 * hours late is judged by when it happened on the device (ARCHITECTURE invariant 7).
 *
 * Fairness between devices: devices report different numbers of samples (one was offline half of
 * the window, another runs a collector twice as often). Pooling every sample would let the
 * chattiest devices decide the answer, and samples of one device are not independent of each
 * other (a warm device stays warm), so a test on pooled samples would call noise significant.
 * Therefore:
 *   - mean, p50 and p95 weight every DEVICE equally: each sample of a device that has n samples
 *     in a group weighs 1/n (mean: the mean of the per-device means; percentiles: weighted
 *     percentiles, the smallest sample whose cumulative weight reaches the share);
 *   - count is the number of samples (unweighted), devices the number of devices that had any;
 *   - the noise test (two-sided Mann-Whitney U, normal approximation with tie and continuity
 *     correction) compares the per-device MEDIANS of the two groups: one value per device.
 *
 * Bounded work: at most COMPARE_SCAN_MAX records are read per call (shared between the devices,
 * each scan reading a device's most recent records, query/scan.h) and at most COMPARE_SAMPLES_MAX
 * samples are kept; results say how many records were read and whether data was left out.
 *
 * Threads: no state; every function may run on any thread. The store calls block, so a handler
 * of the event loop runs them the way GET /v1/series does (small, bounded scans).
 */
#ifndef FERRY_INGEST_QUERY_COMPARE_H
#define FERRY_INGEST_QUERY_COMPARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cloud-ingest/store.h"

struct ingest_router;
struct ferry_buf;

#define COMPARE_SCAN_MAX 4000000        /* records read by one comparison, over all devices */
#define COMPARE_SAMPLES_MAX 2000000     /* samples kept by one comparison (16 bytes each) */
#define COMPARE_METRIC_MAX 256          /* bytes of a metric name MEASUREMENT.FIELD */
#define COMPARE_TEST_MIN_DEVICES 3      /* devices per group for a p-value (else NAN) */
#define COMPARE_SIGNIFICANCE 0.05       /* p below this is "significant" */
#define COMPARE_GATE_MIN_SAMPLES 5      /* samples per group a metric gate needs to decide */
#define COMPARE_ERROR_LOGS "error_logs" /* the special metric: error logs per device-hour */

struct compare_dist {
    uint64_t count;
    double mean, p50, p95; /* NAN when count is 0 */
    uint64_t devices;      /* devices with at least one sample (added after the first contract) */
};

struct compare_device {
    const char *device_id;
    int64_t switched_ns; /* corrected device time it started the new version; 0: not updated */
};

struct compare_result {
    struct compare_dist before;  /* updated devices, window before their switch */
    struct compare_dist after;   /* updated devices, after their switch */
    struct compare_dist control; /* devices not updated, same time span as `after` */
    double p_before_after;       /* two-sided p-value (Mann-Whitney U), NAN when too few */
    double p_after_control;
    bool significant_before_after, significant_after_control; /* p < 0.05 and enough samples */
    /* added after the first contract: how much was read */
    uint64_t scanned; /* records read */
    bool truncated;   /* a device's window reached past the records read, or samples capped */
};

/*
 * Compares `metric` over `n` devices.
 *   metric     "measurement.field" (split at the LAST dot: a measurement may hold dots), or
 *              "error_logs": per device, log records at level error or above (syslog severity
 *              0..3) per hour of its window; one value per device, for a device that stored any
 *              log or metric record in that window (a silent device is not a healthy one).
 *   devs       switched_ns > 0: updated at that corrected device time; 0: a control device.
 *   window_ns  "before" of an updated device is [switched - window, switched); its "after" is
 *              [switched, min(switched + window, now)); "control" is, for every control device,
 *              [first switch, last end of an after window), or [now - window, now) when no device
 *              was updated.
 * Fills *out (every dist, NAN p-values when a group has fewer than COMPARE_TEST_MIN_DEVICES
 * devices). Returns 0; INGEST_STORE_EINVAL for a bad metric, window or device id (err says
 * which); INGEST_STORE_ENOTFOUND for an unknown device (err names it); other store errors.
 */
int compare_devices(struct ingest_store *store, const char *metric,
                    const struct compare_device *devs, size_t n, int64_t window_ns, int64_t now_ns,
                    struct compare_result *out, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/*
 * Appends a comparison as one JSON object to `out` (what `rollout compare` and
 * GET /v1/rollouts/{id}/compare show per metric):
 *   {"metric":M,"before":D,"after":D,"control":D,"p_before_after":P,"p_after_control":P,
 *    "significant_before_after":B,"significant_after_control":B,"scanned":N,"truncated":B}
 * with D = {"devices":N,"count":N,"mean":X,"p50":X,"p95":X}; NaN is written as null.
 * Returns 0 or -1 (out of memory).
 */
int compare_result_json(struct ferry_buf *out, const char *metric, const struct compare_result *r)
    __attribute__((warn_unused_result));

/*
 * A metric gate (docs/compare.md "Gates"), terms separated by blanks:
 *   <metric> [<stat>] <op> <rhs>
 *   stat  count | mean | p50 | p95 (default: mean)
 *   op    >= | <= | > | <
 *   rhs   <k> x <ref>  (also <k> * <ref>)    k times the reference's stat
 *         <ref> + <d>  |  <ref> - <d>  |  <ref>     the reference's stat plus or minus d
 *         <number>                                  an absolute threshold (no reference)
 *   ref   baseline (the same devices before their switch) | control (devices not updated)
 * Examples: "inference.fps p50 >= 0.97 x baseline", "thermal.gpu p95 <= baseline + 3",
 * "error_logs <= 2 x baseline", "inference.latency_ms p95 < control + 5".
 * Text is at most COMPARE_GATE_TEXT_MAX bytes. On error *out is NULL and err says which term at
 * which column (1-based) is wrong and what was expected. Returns 0 or -1.
 */
#define COMPARE_GATE_TEXT_MAX 512
struct compare_gate;
int compare_gate_parse(const char *text, struct compare_gate **out, char *err, size_t err_len)
    __attribute__((warn_unused_result));
/* The gate's metric ("inference.fps", "error_logs"); owned by the gate. */
const char *compare_gate_metric(const struct compare_gate *g);
/*
 * Evaluates a gate over a comparison of its metric. value: the after stat; threshold: what it is
 * compared with; *pass whether the comparison holds. Returns 0, or -1 (with err) when there are
 * too few samples to decide: fewer than COMPARE_GATE_MIN_SAMPLES after (and in the reference
 * group), or for error_logs no device in either; or a reference stat that is not a number. The
 * caller waits, then counts it per its policy. The p-values are not part of the decision: the
 * margin written in the gate (0.97 x, + 3) is the operator's allowance for noise.
 */
int compare_gate_eval(const struct compare_gate *g, const struct compare_result *r, double *value,
                      double *threshold, bool *pass, char *err, size_t err_len)
    __attribute__((warn_unused_result));
/* Writes the gate back as canonical text ("inference.fps p50 >= 0.97 x baseline"). */
int compare_gate_format(const struct compare_gate *g, char *out, size_t out_len);
void compare_gate_free(struct compare_gate *g);

/*
 * The Mann-Whitney U test of two samples, two-sided, normal approximation with the tie
 * correction of the variance and a continuity correction of 0.5 (as scipy.stats.mannwhitneyu
 * with method="asymptotic", use_continuity=True). *u is U of sample a (the number of pairs where
 * a wins, ties counting half). Returns the p-value, NAN when a sample is empty or every value is
 * tied (no variance). Sorts copies; ENOMEM is NAN too.
 */
double compare_mann_whitney(const double *a, size_t na, const double *b, size_t nb, double *u);

/* ---- The version benchmark (GET /v1/versions/compare) ------------------------------------- */

#define COMPARE_METRICS_MAX 16
#define COMPARE_VERSIONS_MAX 64
#define COMPARE_DEFAULT_METRICS "inference.fps,inference.latency_ms,thermal.gpu,power.total"
#define COMPARE_DEFAULT_SINCE_NS ((int64_t)24 * 3600 * 1000000000LL)

/* A request: component, metrics (comma-separated text as given, checked), since (corrected
 * device time the benchmark starts; the end is now). */
struct compare_versions_req {
    char component[INGEST_VERSION_STR_MAX + 1];
    char metrics[COMPARE_METRICS_MAX][COMPARE_METRIC_MAX + 1];
    size_t n_metrics;
    int64_t since_ns;
};

/*
 * Fills a request from its parts (the CLI's options): `metrics` NULL for the default list,
 * `since` NULL for 24 hours, else nanoseconds since the epoch (digits only) or a duration back
 * from now ("90m", "6h", "7d"). Returns 0 or -1 with a message naming the part.
 */
int compare_versions_set(struct compare_versions_req *req, const char *component,
                         const char *metrics, const char *since, int64_t now_ns, char *err,
                         size_t err_len) __attribute__((warn_unused_result));

/*
 * Parses the query string of GET /v1/versions/compare (unknown parameters are refused):
 *   component=C [&metrics=a.b,c.d] [&since=NS|DURATION]
 * metrics default to COMPARE_DEFAULT_METRICS; "error_logs" is always reported and may not be
 * listed; since is nanoseconds since the epoch, or a duration back from now ("6h", "7d"),
 * default 24 hours. Returns 0 or -1 with a message naming the parameter.
 */
int compare_versions_parse(const char *query, int64_t now_ns, struct compare_versions_req *req,
                           char *err, size_t err_len) __attribute__((warn_unused_result));

/*
 * Computes the benchmark and appends its JSON to `out` (docs/compare.md "Versions"): which
 * version of the component each device ran when is read from its event stream (`versions` events
 * and `ota.committed` events of the component, at most COMPARE_EVENTS_SCAN_MAX per device), else
 * from its current versions object. Returns 0 or a negative enum ingest_store_err (err says why).
 */
#define COMPARE_EVENTS_SCAN_MAX 100000
int compare_versions_json(struct ingest_store *store, const struct compare_versions_req *req,
                          int64_t now_ns, struct ferry_buf *out, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* Prints the JSON of compare_versions_json as a table for a person (values escaped). Returns 0,
 * or -1 when the text is not such a document. */
int compare_versions_print(const char *json, size_t len, FILE *f);

/* `ferry-ingest versions compare --component C [--metrics a.b,..] [--since D] [--json]` on a
 * local store. Returns the process exit status. */
int compare_cli_main(struct ingest_store *store, int argc, char **argv);

/* Adds GET /v1/versions/compare (viewer) to `router`; `store` is borrowed. Returns 0 or -1. */
int compare_register(struct ingest_router *router, struct ingest_store *store)
    __attribute__((warn_unused_result));

#endif
