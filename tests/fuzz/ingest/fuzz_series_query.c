/*
 * fuzz_series_query.c - libFuzzer target of GET /v1/series's query-string parser
 * (ingest_series_parse, cloud-ingest/query/query.h): any bytes either fail with a message or give
 * a request that holds the documented bounds.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "cloud-ingest/query/query.h"

#define FUZZ_QUERY_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char query[FUZZ_QUERY_MAX + 1];
    if (size > FUZZ_QUERY_MAX)
        size = FUZZ_QUERY_MAX;
    memcpy(query, data, size);
    query[size] = '\0';
    struct ingest_series_req req;
    char err[512];
    err[0] = '\0';
    if (ingest_series_parse(query, 1800000000000000000LL, &req, err, sizeof(err)) != 0) {
        assert(err[0] != '\0');
        return 0;
    }
    assert(ingest_device_id_valid(req.device));
    assert(req.measurement[0] != '\0' && req.field[0] != '\0');
    assert(strchr(req.field, '.') == NULL);
    assert(req.from_ns >= 0 && req.from_ns < req.to_ns);
    assert(req.points >= 1 && req.points <= INGEST_SERIES_POINTS_MAX);
    return 0;
}
