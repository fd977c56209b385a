/*
 * condition.h - release conditions on local metrics, evaluated from ferryd's own journal before
 * an update downloads anything (docs/ota.md, "Release conditions"; the condition's format is
 * transport/manifest.h's struct manifest_condition).
 *
 * The evaluation reads the journal's metric stream newest first (unsent records and records
 * acknowledged but not yet deleted: what the device still holds), keeps the values of
 * MEASUREMENT.FIELD (any tags) whose device timestamp lies in [now - window, now], and computes
 * the stat. The scan is bounded: it stops after `max_scan` records, or after
 * OTA_CONDITION_OLD_RUN consecutive records older than the window (records are in arrival order,
 * which follows device time closely, so a run of old ones means the window's start was passed).
 * Fewer than min_samples values, or none at all for a stat other than count: the condition is not
 * met ("insufficient").
 *
 * Reads only (journal_read in its own read transaction), so it may run on any thread; the OTA
 * agent runs it on its worker thread, never on the event loop.
 */
#ifndef FERRY_ENGINE_OTA_CONDITION_H
#define FERRY_ENGINE_OTA_CONDITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/manifest.h"

struct journal;

#define OTA_CONDITION_MAX_SCAN 500000u /* default bound on the metric records read */
#define OTA_CONDITION_OLD_RUN 1000u    /* consecutive records before the window: stop */

enum ota_condition_outcome {
    OTA_CONDITION_MET = 0,
    OTA_CONDITION_NOT_MET = 1,
    OTA_CONDITION_INSUFFICIENT = 2, /* fewer than min_samples values in the window */
};

struct ota_condition_result {
    enum ota_condition_outcome outcome;
    double value;      /* the stat over the window (0 without samples) */
    uint64_t samples;  /* values of the metric in the window */
    uint64_t scanned;  /* metric records read */
    bool scan_limited; /* max_scan stopped the scan before the window's start */
};

/* "met", "not_met", "insufficient". */
const char *ota_condition_outcome_name(enum ota_condition_outcome o);

/* Evaluates `c` at device time now_ns over the journal's metric stream, reading at most max_scan
 * records (0: OTA_CONDITION_MAX_SCAN). Returns 0 with *out filled, or -1 with err saying what
 * failed (a journal read error, out of memory); an unreadable record is skipped, not an error. */
int ota_condition_eval(struct journal *j, const struct manifest_condition *c, int64_t now_ns,
                       size_t max_scan, struct ota_condition_result *out, char *err, size_t err_len)
    __attribute__((warn_unused_result));

#endif
