/*
 * scan.c - the bounded, paged scan of one device's most recent records (scan.h says why).
 */
#include "cloud-ingest/query/scan.h"

#include <math.h>

#include <jansson.h>

struct scan_page {
    ingest_export_cb cb;
    void *arg;
    uint64_t seen;     /* records of this page */
    uint64_t last_seq; /* where the next page starts */
    bool stopped;      /* the caller's callback asked to stop */
};

static int page_cb(const struct ingest_row *row, void *arg)
{
    struct scan_page *p = arg;
    p->seen++;
    p->last_seq = row->seq;
    if (p->cb(row, p->arg) != 0) {
        p->stopped = true;
        return 1;
    }
    return 0;
}

int ingest_scan_recent(struct ingest_store *store, const char *device_id, uint8_t stream,
                       uint64_t max_seq, uint64_t limit, ingest_export_cb cb, void *arg,
                       struct ingest_scan_stats *stats)
{
    stats->scanned = 0;
    stats->first_seq = max_seq > limit ? max_seq - limit : 0;
    stats->truncated = stats->first_seq > 0;
    struct scan_page p = {.cb = cb, .arg = arg, .last_seq = stats->first_seq};
    while (stats->scanned < limit && !p.stopped) {
        uint64_t left = limit - stats->scanned;
        uint64_t page = left < INGEST_SCAN_PAGE_RECORDS ? left : INGEST_SCAN_PAGE_RECORDS;
        p.seen = 0;
        int rc = ingest_store_export(store, device_id, stream, p.last_seq, page, page_cb, &p);
        stats->scanned += p.seen;
        if (rc != 0)
            return rc;
        if (p.seen < page)
            break;
    }
    return 0;
}

int ingest_scan_field_value(const char *fields_json, size_t len, const char *field, double *out)
{
    json_t *o = json_loadb(fields_json, len, 0, NULL);
    json_t *v = o != NULL ? json_object_get(o, field) : NULL;
    int found = 0;
    if (v != NULL && (json_is_integer(v) || json_is_real(v))) {
        *out = json_number_value(v);
        found = isfinite(*out) ? 1 : 0;
    } else if (v != NULL && json_is_boolean(v)) {
        *out = json_is_true(v) ? 1.0 : 0.0;
        found = 1;
    }
    json_decref(o);
    return found;
}
