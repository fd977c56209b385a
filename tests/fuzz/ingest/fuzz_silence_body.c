/*
 * fuzz_silence_body.c - libFuzzer target of POST /v1/silences's body parser
 * (alerts_silence_parse_body, cloud-ingest/alerts/alerts.h): any bytes either fail with a message
 * or give a silence that holds the documented rules (rule and/or device, bounded valid UTF-8
 * comment, a duration above 0 and at most a year).
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "cloud-ingest/alerts/alerts.h"
#include "cloud-ingest/store.h"
#include "common/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct alerts_silence_req req;
    json_t *doc = NULL;
    char err[256];
    err[0] = '\0';
    int rc = alerts_silence_parse_body(data, size, &req, &doc, err, sizeof(err));
    if (rc != 0) {
        assert(err[0] != '\0' && doc == NULL);
        assert(rc == ALERTS_SILENCE_EINVAL || rc == ALERTS_SILENCE_ETOOBIG);
        assert(rc != ALERTS_SILENCE_ETOOBIG || size > ALERTS_SILENCE_BODY_MAX);
        return 0;
    }
    assert(doc != NULL && size <= ALERTS_SILENCE_BODY_MAX);
    assert(req.rule[0] != '\0' || req.device[0] != '\0');
    assert(strlen(req.rule) <= ALERTS_NAME_MAX);
    assert(req.device[0] == '\0' || ingest_device_id_valid(req.device));
    assert(req.for_ms > 0 && req.for_ms <= ALERTS_SILENCE_FOR_MAX_MS);
    assert(strlen(req.comment) <= ALERTS_SILENCE_COMMENT_MAX);
    assert(ferry_utf8_valid(req.comment, strlen(req.comment)));
    json_decref(doc);
    return 0;
}
