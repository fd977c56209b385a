/*
 * fuzz_compare_gate.c - libFuzzer target of the parsers of cloud-ingest/query/compare.h that read
 * outside input: metric gates (compare_gate_parse: rollout gates an operator types, stored and
 * read back) and the query string of GET /v1/versions/compare (compare_versions_parse). Any bytes
 * either fail with a message or give a gate whose canonical text parses back to itself and that
 * evaluates without touching memory it should not, and a request within its documented bounds.
 */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cloud-ingest/query/compare.h"

#define FUZZ_INPUT_MAX 4096
#define FUZZ_NOW_NS 1800000000000000000LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_gate(const char *text)
{
    struct compare_gate *g = NULL, *again = NULL;
    char err[512] = "", canon[2 * COMPARE_GATE_TEXT_MAX], canon2[2 * COMPARE_GATE_TEXT_MAX];
    if (compare_gate_parse(text, &g, err, sizeof(err)) != 0) {
        assert(g == NULL && err[0] != '\0');
        return;
    }
    assert(compare_gate_metric(g)[0] != '\0');
    assert(compare_gate_format(g, canon, sizeof(canon)) == 0);
    assert(compare_gate_parse(canon, &again, err, sizeof(err)) == 0);
    assert(compare_gate_format(again, canon2, sizeof(canon2)) == 0);
    assert(strcmp(canon, canon2) == 0);
    struct compare_result r = {
        .before = {100, 30.0, 30.1, 31.0, 10},
        .after = {100, 27.0, 27.1, 28.0, 10},
        .control = {3, NAN, NAN, NAN, 0},
        .p_before_after = 0.01,
        .p_after_control = NAN,
    };
    double value, threshold;
    bool pass;
    err[0] = '\0';
    if (compare_gate_eval(g, &r, &value, &threshold, &pass, err, sizeof(err)) != 0)
        assert(err[0] != '\0' && !pass);
    else
        assert(isfinite(value) && isfinite(threshold));
    compare_gate_free(g);
    compare_gate_free(again);
}

static void fuzz_versions_query(const char *text)
{
    struct compare_versions_req req;
    char err[512] = "";
    if (compare_versions_parse(text, FUZZ_NOW_NS, &req, err, sizeof(err)) != 0) {
        assert(err[0] != '\0');
        return;
    }
    assert(req.component[0] != '\0' && strlen(req.component) <= INGEST_VERSION_STR_MAX);
    assert(req.n_metrics >= 1 && req.n_metrics <= COMPARE_METRICS_MAX);
    for (size_t i = 0; i < req.n_metrics; i++)
        assert(strchr(req.metrics[i], '.') != NULL && strchr(req.metrics[i], ',') == NULL);
    assert(req.since_ns < FUZZ_NOW_NS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[FUZZ_INPUT_MAX + 1];
    if (size > FUZZ_INPUT_MAX)
        size = FUZZ_INPUT_MAX;
    memcpy(text, data, size);
    text[size] = '\0';
    fuzz_gate(text);
    fuzz_versions_query(text);
    return 0;
}
