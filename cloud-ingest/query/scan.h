/*
 * scan.h - the bounded scan of one device's stored records that the read-side queries share
 * (GET /v1/series, the metric comparison of compare.c): internal to cloud-ingest/query/.
 *
 * A query never reads a device's whole history: it reads at most `limit` records, the most
 * recent ones by sequence (a question is about "now" far more often than about last year), in
 * pages of INGEST_SCAN_PAGE_RECORDS so that a request's memory stays small whatever the limit
 * (PostgreSQL hands a whole result set over at once). The caller learns how many records were
 * read and whether older ones were left unread, and says so in its answer.
 */
#ifndef FERRY_INGEST_QUERY_SCAN_H
#define FERRY_INGEST_QUERY_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloud-ingest/store.h"

#define INGEST_SCAN_PAGE_RECORDS 20000

struct ingest_scan_stats {
    uint64_t scanned;   /* records handed to the callback */
    uint64_t first_seq; /* the scan started after this sequence (0: from the first record) */
    bool truncated;     /* older records exist that were not read (first_seq > 0) */
};

/*
 * Calls `cb` for the records of (device, stream) with seq > max_seq - limit (all of them when
 * max_seq <= limit), in sequence order, at most `limit`. `max_seq` is the stream's highest
 * sequence as the device record says (struct ingest_device streams[].max_seq). A non-zero return
 * of `cb` ends the scan early (not an error). Fills *stats. Returns 0 or a negative enum
 * ingest_store_err.
 */
int ingest_scan_recent(struct ingest_store *store, const char *device_id, uint8_t stream,
                       uint64_t max_seq, uint64_t limit, ingest_export_cb cb, void *arg,
                       struct ingest_scan_stats *stats) __attribute__((warn_unused_result));

/* The numeric value of `field` in a row's fields JSON (fields_json/fields_json_len): 1 with *out
 * set; 0 when the field is absent, a string, or a NaN/infinite float. A bool is 0 or 1. */
int ingest_scan_field_value(const char *fields_json, size_t len, const char *field, double *out);

#endif
